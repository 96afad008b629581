//! The HTTP API of registro (axum).
//!
//! [`build`] wires the routes, the middleware and the state into an [`App`] bound to its
//! address (port 0 picks a free one: tests use it), and [`App::run_until_stopped`] serves until
//! the shutdown future completes, finishing the requests in flight.
//!
//! Every response carries an `x-request-id` (the client's, when sane, or a new UUIDv7), which
//! also appears on every log line of the request; every error is an RFC 9457 problem
//! ([`ApiError`]).

pub mod auth;
mod context;
mod docs;
mod error;
mod metrics;
mod routes;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use registro_store::EventStore;
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;

pub use error::{ApiError, Problem};
pub use routes::ApiDoc;

/// How the API is served.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// The address to listen on; port 0 picks a free port.
    pub listen: SocketAddr,
    /// The public keys of registro's local token issuer, served at `/.well-known/jwks.json`
    /// (embedded mode, when no external identity provider is configured).
    pub local_jwks: Option<jsonwebtoken::jwk::JwkSet>,
}

/// What every handler can reach. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The event store.
    pub store: Arc<dyn EventStore>,
    /// The Prometheus metrics of this process.
    pub metrics: Arc<metrics::Metrics>,
    /// The local issuer's public keys, if it is in use.
    pub local_jwks: Option<Arc<jsonwebtoken::jwk::JwkSet>>,
}

/// The API, bound to its address and ready to serve.
#[derive(Debug)]
pub struct App {
    listener: TcpListener,
    router: Router,
    local_addr: SocketAddr,
}

/// Binds the listener and builds the router.
///
/// # Errors
/// When the address cannot be bound.
pub async fn build(config: ApiConfig, store: Arc<dyn EventStore>) -> anyhow::Result<App> {
    let state = AppState {
        store,
        metrics: Arc::new(metrics::Metrics::new()),
        local_jwks: config.local_jwks.map(Arc::new),
    };
    let router = router(state);
    let listener = TcpListener::bind(config.listen).await?;
    let local_addr = listener.local_addr()?;
    Ok(App {
        listener,
        router,
        local_addr,
    })
}

/// The routes with their middleware, outermost first: request context (id, span, log line),
/// metrics, panic catching.
fn router(state: AppState) -> Router {
    routes::routes()
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(CatchPanicLayer::custom(error::panic_response))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        .layer(axum::middleware::from_fn(context::request_context))
        .with_state(state)
}

impl App {
    /// The port the API listens on.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.local_addr.port()
    }

    /// The address the API listens on.
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until `shutdown` completes, then stops accepting and finishes the requests in
    /// flight.
    ///
    /// # Errors
    /// When serving fails.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        tracing::info!(address = %self.local_addr, "listening");
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown)
            .await?;
        tracing::info!("stopped");
        Ok(())
    }
}
