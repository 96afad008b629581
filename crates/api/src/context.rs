//! The request context: a request id on every response and log line, the request's path for
//! problem details, and one log line per request.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument as _;

/// The header that carries the request id, both ways.
pub const REQUEST_ID: &str = "x-request-id";

/// What error responses need to know about the request being answered.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// The request id.
    pub id: String,
    /// The request's path.
    pub path: String,
}

tokio::task_local! {
    static CONTEXT: RequestContext;
}

/// The context of the request being answered, if any.
pub fn current() -> Option<RequestContext> {
    CONTEXT.try_with(Clone::clone).ok()
}

/// A client's request id is kept when it is short visible ASCII (so it can be logged safely);
/// otherwise a new UUIDv7 is used.
fn sane(id: &HeaderValue) -> Option<String> {
    let s = id.to_str().ok()?;
    (!s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_graphic()))
        .then(|| s.to_owned())
}

/// Middleware: sets up the context and the tracing span, logs the outcome, echoes the id.
pub async fn request_context(request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get(REQUEST_ID)
        .and_then(sane)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    // The route template (`/students/{id}`), the same label the metrics use; the raw path stays
    // out of the logs, since paths may carry personal identifiers.
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_owned();
    let span = tracing::info_span!("request", %method, %route, request_id = %id);
    let started = Instant::now();
    let context = RequestContext {
        id: id.clone(),
        path,
    };
    let mut response = CONTEXT
        .scope(context, next.run(request))
        .instrument(span.clone())
        .await;
    span.in_scope(|| {
        tracing::info!(
            status = response.status().as_u16(),
            elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            "answered"
        );
    });
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    response
}
