//! The HTTP API of registro (axum).
//!
//! [`build`] wires the routes, the middleware and the state into an [`App`] bound to its
//! address (port 0 picks a free one: tests use it), and [`App::run_until_stopped`] serves until
//! the shutdown future completes, finishing the requests in flight.
//!
//! Every response carries an `x-request-id` (the client's, when sane, or a new UUIDv7), which
//! also appears on every log line of the request; every error is an RFC 9457 problem
//! ([`ApiError`]).

mod access_log;
mod audit;
mod auditor;
pub mod auth;
mod cache;
pub mod command;
mod communications;
mod context;
pub mod directory;
mod docs;
mod enrolment;
mod error;
mod family;
pub mod hardening;
mod history;
mod json;
mod metrics;
pub mod overview_cache;
pub mod policy;
mod portability;
mod projections;
pub mod ratelimit;
mod register;
pub mod retention;
mod routes;
mod school;
mod scrutiny;
mod subject_access;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use registro_domain::directory::Directory;
use registro_store::EventStore;
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;
use utoipa::OpenApi as _;

use crate::auth::{Policies, TokenVerifier};
use crate::policy::Rule;
use crate::ratelimit::{RateLimit, RateLimiter};

pub use access_log::{AccessEntry, AccessLog};
pub use cache::{SchoolCache, Snapshot, StreamCache};
pub use error::{ApiError, PROBLEM_JSON, Problem};
pub use json::Json;
pub use metrics::Metrics;
pub use projections::{ProjectionConfig, ProjectionReport, ProjectionState};
pub use routes::{ApiDoc, Routes, routes};

/// How the API is served.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// The address to listen on; port 0 picks a free port.
    pub listen: SocketAddr,
    /// The public keys of registro's local token issuer, served at `/.well-known/jwks.json`
    /// (embedded mode, when no external identity provider is configured).
    pub local_jwks: Option<jsonwebtoken::jwk::JwkSet>,
    /// Verifies the bearer tokens: the identity provider's, or the local issuer's.
    pub verifier: TokenVerifier,
    /// The rate limit on reads, per token holder.
    pub read_limit: RateLimit,
    /// A fixed "today" instead of the clock's (tests of a school year that is not the current
    /// one); `None` in service.
    pub today: Option<time::Date>,
    /// The read models: which there are (reported on `/metrics` and `/readyz`), and how long a
    /// read waits for one to include a position.
    pub projections: ProjectionConfig,
    /// The origins browsers may call the API from (`https://app.example.it`); none: no
    /// cross-origin calls.
    pub cors_origins: Vec<String>,
    /// The most bytes of family overviews kept to answer reads whose rows have not changed
    /// ([`overview_cache::OverviewCache`]); 0 keeps none.
    pub overview_cache_bytes: usize,
}

/// The software and its version, as an export's manifest names it.
pub const SOFTWARE: &str = concat!("registro ", env!("CARGO_PKG_VERSION"));

/// What every handler can reach. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The event store.
    pub store: Arc<dyn EventStore>,
    /// The Prometheus metrics of this process.
    pub metrics: Arc<Metrics>,
    /// The local issuer's public keys, if it is in use.
    pub local_jwks: Option<Arc<jsonwebtoken::jwk::JwkSet>>,
    /// Verifies bearer tokens.
    pub verifier: TokenVerifier,
    /// The policy of every mounted route, for the guard.
    pub policies: Arc<Policies>,
    /// Each school's directory, from which authorisation decides.
    pub directory: Arc<SchoolCache<Directory>>,
    /// Each school's access log.
    pub access_log: Arc<SchoolCache<AccessLog>>,
    /// Each school's catalogue of communications.
    pub communications: Arc<SchoolCache<registro_domain::communications::Catalogue>>,
    /// The states of the streams commands were decided on lately.
    pub streams: Arc<StreamCache>,
    /// Copies of family overviews, used while their stamp stands.
    pub overview: Arc<overview_cache::OverviewCache>,
    /// The rate limiter of reads.
    pub limiter: Arc<RateLimiter>,
    /// A fixed "today", for tests; `None`: the clock.
    pub today: Option<time::Date>,
    /// The read models and how long a read waits for one.
    pub projections: Arc<ProjectionConfig>,
}

impl AppState {
    /// The state for `store` with these routes' policies.
    #[must_use]
    pub fn new(
        store: Arc<dyn EventStore>,
        verifier: TokenVerifier,
        read_limit: RateLimit,
        rules: &[Rule],
    ) -> Self {
        Self {
            store,
            metrics: Arc::new(Metrics::new()),
            local_jwks: None,
            verifier,
            policies: Arc::new(
                rules
                    .iter()
                    .map(|r| ((r.method.clone(), r.path), r.access))
                    .collect(),
            ),
            directory: Arc::default(),
            access_log: Arc::default(),
            communications: Arc::default(),
            streams: Arc::default(),
            overview: Arc::default(),
            limiter: Arc::new(RateLimiter::new(read_limit)),
            today: None,
            projections: Arc::default(),
        }
    }
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
/// When the address cannot be bound, or when a mounted route and the OpenAPI document disagree
/// (deny by default: nothing is served that the policy and the documentation do not both know).
pub async fn build(config: ApiConfig, store: Arc<dyn EventStore>) -> anyhow::Result<App> {
    let (routes, mut state) = documented_routes(store, config.verifier, config.read_limit)?;
    state.local_jwks = config.local_jwks.map(Arc::new);
    state.today = config.today;
    state.projections = Arc::new(config.projections);
    state.overview = Arc::new(overview_cache::OverviewCache::new(
        config.overview_cache_bytes,
    ));
    StreamCache::sweep_idle(&state.streams);
    let mut router = with_middleware(routes, state);
    // Outermost: a preflight is answered before the guard asks for a token.
    if let Some(cors) = hardening::cors(&config.cors_origins)? {
        router = router.layer(cors);
    }
    let listener = TcpListener::bind(config.listen).await?;
    let local_addr = listener.local_addr()?;
    Ok(App {
        listener,
        router,
        local_addr,
    })
}

/// The routes and the state their policies and `verifier` decide with, once the mounted routes
/// and the OpenAPI document are found to agree (deny by default: nothing is served that the
/// policy and the documentation do not both know).
fn documented_routes(
    store: Arc<dyn EventStore>,
    verifier: TokenVerifier,
    read_limit: RateLimit,
) -> anyhow::Result<(Router<AppState>, AppState)> {
    let (routes, rules) = routes().into_parts();
    policy::check_documented(&rules, &ApiDoc::openapi()).map_err(anyhow::Error::msg)?;
    let state = AppState::new(store, verifier, read_limit, &rules);
    Ok((routes, state))
}

/// The API without a listener: the same routes, guard and middleware as [`build`]'s, called
/// in-process (`tower::ServiceExt::oneshot`) with the requests a client would send. The
/// generator of demo and benchmark schools drives it, one simulated school day after another.
#[derive(Debug, Clone)]
pub struct LocalApi {
    routes: Router<AppState>,
    state: AppState,
}

impl LocalApi {
    /// The API over `store`, trusting the tokens `verifier` accepts, with no limit on reads.
    ///
    /// # Errors
    /// When a mounted route and the OpenAPI document disagree (as [`build`]).
    pub fn new(store: Arc<dyn EventStore>, verifier: TokenVerifier) -> anyhow::Result<Self> {
        let (routes, state) = documented_routes(store, verifier, RateLimit::OFF)?;
        Ok(Self { routes, state })
    }

    /// The API as it answers on `today` (a fixed date, as [`ApiConfig::today`]).
    pub fn on(&self, today: time::Date) -> Router {
        let mut state = self.state.clone();
        state.today = Some(today);
        with_middleware(self.routes.clone(), state)
    }
}

/// `routes` with the fallbacks and the middleware, outermost first: request context (id, span,
/// log line), limits and security headers, the body limit, metrics, panic catching, then the
/// guard (authentication and authorisation).
fn with_middleware(routes: Router<AppState>, state: AppState) -> Router {
    routes
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::guard,
        ))
        .layer(CatchPanicLayer::custom(error::panic_response))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        .layer(axum::extract::DefaultBodyLimit::max(
            hardening::MAX_BODY_BYTES,
        ))
        .layer(axum::middleware::from_fn(hardening::harden))
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

#[cfg(test)]
mod tests {
    //! The middleware stack around routes that only tests have: a panicking handler and a JSON
    //! body.

    use axum::body::Body;
    use axum::http::{Request, StatusCode, header};
    use axum::routing::{get, post};
    use registro_store::MasterKey;
    use registro_store::sqlite::SqliteStore;
    use registro_testkit::TempDir;
    use serde::{Deserialize, Serialize};
    use tower::ServiceExt as _;

    use super::*;

    #[derive(Debug, Serialize, Deserialize)]
    struct Probe {
        n: u32,
    }

    async fn boom() -> &'static str {
        panic!("the secret is 42")
    }

    async fn test_router(dir: &TempDir) -> Router {
        let store = SqliteStore::open(&dir.path().join("registro.db"), MasterKey::generate())
            .await
            .unwrap();
        let issuer = auth::LocalIssuer::generate();
        let verifier = TokenVerifier::new(
            auth::LocalIssuer::verifier_config(),
            Arc::new(auth::KeySet::new(Arc::new(issuer))),
        );
        let public = |method, path| Rule {
            method,
            path,
            access: policy::Access::Public,
        };
        let rules = [
            public(axum::http::Method::GET, "/boom"),
            public(axum::http::Method::POST, "/echo"),
        ];
        let state = AppState::new(Arc::new(store), verifier, RateLimit::default(), &rules);
        let routes = Router::new()
            .route("/boom", get(boom))
            .route("/echo", post(|Json(p): Json<Probe>| async move { Json(p) }));
        with_middleware(routes, state)
    }

    async fn call(router: Router, request: Request<Body>) -> (StatusCode, String, String, String) {
        let response = router.oneshot(request).await.unwrap();
        let status = response.status();
        let content_type = response.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .to_owned();
        let request_id = response.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_owned();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (
            status,
            content_type,
            request_id,
            String::from_utf8(body.to_vec()).unwrap(),
        )
    }

    fn post_echo(content_type: Option<&str>, body: impl Into<Body>) -> Request<Body> {
        let mut request = Request::post("/echo");
        if let Some(ct) = content_type {
            request = request.header(header::CONTENT_TYPE, ct);
        }
        request.body(body.into()).unwrap()
    }

    #[tokio::test]
    async fn a_panicking_handler_answers_a_500_problem_that_reveals_nothing() {
        let dir = TempDir::new();
        let router = test_router(&dir).await;
        let request = Request::get("/boom")
            .header("x-request-id", "panic-probe")
            .body(Body::empty())
            .unwrap();
        let (status, content_type, id, body) = call(router, request).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(content_type, PROBLEM_JSON);
        assert_eq!(id, "panic-probe");
        let problem: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(problem["status"], 500);
        assert_eq!(problem["instance"], "/boom");
        assert_eq!(problem["request_id"], "panic-probe");
        assert!(!body.contains("secret") && !body.contains("42"), "{body}");
    }

    #[tokio::test]
    async fn a_json_body_that_cannot_be_taken_is_a_problem_with_the_right_status() {
        let dir = TempDir::new();
        let router = test_router(&dir).await;
        let json = Some("application/json");
        let too_large = format!("{{\"n\": 1, \"pad\": \"{}\"}}", "x".repeat(3 << 20));
        for (request, expected) in [
            (
                post_echo(None, r#"{"n": 1}"#),
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ),
            (
                post_echo(Some("text/plain"), r#"{"n": 1}"#),
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ),
            (post_echo(json, r#"{"n": "#), StatusCode::BAD_REQUEST),
            (
                post_echo(json, r#"{"n": "one"}"#),
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            (post_echo(json, r#"{}"#), StatusCode::UNPROCESSABLE_ENTITY),
            (post_echo(json, too_large), StatusCode::PAYLOAD_TOO_LARGE),
        ] {
            let (status, content_type, _, body) = call(router.clone(), request).await;
            assert_eq!(status, expected, "{body}");
            assert_eq!(content_type, PROBLEM_JSON, "{body}");
            let problem: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(problem["status"], expected.as_u16());
            assert_eq!(problem["instance"], "/echo");
        }
        let (status, content_type, _, body) = call(router, post_echo(json, r#"{"n": 7}"#)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(content_type, "application/json");
        assert_eq!(body, r#"{"n":7}"#);
    }
}
