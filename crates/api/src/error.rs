//! One error type for the whole API, rendered as RFC 9457 problem details.

use std::any::Any;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use registro_store::StoreError;
use serde::Serialize;
use utoipa::ToSchema;

use crate::context;

/// The media type of problem details.
pub const PROBLEM_JSON: &str = "application/problem+json";
/// Seconds a client should wait before retrying a 503.
const RETRY_AFTER_SECONDS: &str = "5";
/// Seconds a client should wait before reading again from a read model catching up.
const CATCHING_UP_RETRY_AFTER_SECONDS: &str = "1";

/// An RFC 9457 problem details document.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem (`about:blank` when the status says it all).
    #[serde(rename = "type")]
    pub kind: String,
    /// A short summary of the kind of problem.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What went wrong with this request, for a person to read.
    pub detail: String,
    /// The path of the request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// The request id, also in the `x-request-id` header and the server's logs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// For a file refused line by line: every bad line and why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(default)]
    pub errors: Vec<LineError>,
}

/// A line of an uploaded file that cannot be taken, and why.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LineError {
    /// The line's number in the file (1 is the header), or the item's place in a list (from
    /// 1).
    pub line: usize,
    /// Why, in Italian.
    pub reason: String,
}

/// Everything a handler can fail with. Each variant's status is in its doc.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 401: no valid bearer token (`WWW-Authenticate: Bearer` is set).
    #[error("{0}")]
    Unauthorized(String),
    /// 403: the caller may see the resource but none of their roles allows the action.
    #[error("{0}")]
    Forbidden(String),
    /// 404: no such route or resource, or one the caller may not know exists.
    #[error("not found")]
    NotFound,
    /// 404 with a reason the caller may know (an unknown person named in a command's body).
    #[error("{0}")]
    NotFoundDetail(String),
    /// 429: too many requests with this token; `Retry-After` says when to come back.
    #[error("too many requests")]
    TooManyRequests {
        /// Seconds to wait.
        retry_after: u64,
    },
    /// 405: the route exists but not with this method.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// 400: the request is malformed (for instance, its body is not well-formed JSON).
    #[error("{0}")]
    BadRequest(String),
    /// 413: the request's body is larger than the API accepts.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// 431: the request's headers are too many or too large.
    #[error("{0}")]
    HeadersTooLarge(String),
    /// 415: the request's body is not of a media type the route accepts.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 422: lines of an uploaded file cannot be taken; the problem lists them all.
    #[error("{} righe non valide", .0.len())]
    BadLines(Vec<LineError>),
    /// 409: the request conflicts with the current state (a concurrent write; erased data).
    #[error("{0}")]
    Conflict(String),
    /// 422: the request is well formed but cannot be accepted (JSON of the wrong shape, an
    /// invalid event, a reused idempotency key).
    #[error("{0}")]
    Unprocessable(String),
    /// 503: the service cannot answer now; retry later (`Retry-After` is set).
    #[error("{0}")]
    Unavailable(String),
    /// 503: a read model has not yet caught up with the position the read asked for; retry in
    /// a second (`Retry-After: 1`).
    #[error("{0}")]
    CatchingUp(String),
    /// 500: a bug or an unexpected failure. The cause is logged; the client is told nothing
    /// about it.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    /// The HTTP status of this error.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound | Self::NotFoundDetail(_) => StatusCode::NOT_FOUND,
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::HeadersTooLarge(_) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::BadLines(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Unavailable(_) | Self::CatchingUp(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn detail(&self) -> String {
        match self {
            Self::NotFound => "There is nothing at this address.".into(),
            Self::MethodNotAllowed => "This address does not accept this method.".into(),
            Self::Internal(_) => {
                "Something went wrong on our side. It has been logged; quote the request id if you \
                 report it."
                    .into()
            }
            Self::TooManyRequests { retry_after } => {
                format!("Too many requests with this token: try again in {retry_after} s.")
            }
            Self::BadLines(lines) => format!(
                "{} righe del file non sono valide: nessuna è stata applicata (vedi `errors`).",
                lines.len()
            ),
            Self::Unauthorized(d)
            | Self::Forbidden(d)
            | Self::NotFoundDetail(d)
            | Self::BadRequest(d)
            | Self::PayloadTooLarge(d)
            | Self::HeadersTooLarge(d)
            | Self::UnsupportedMediaType(d)
            | Self::Conflict(d)
            | Self::Unprocessable(d)
            | Self::Unavailable(d)
            | Self::CatchingUp(d) => d.clone(),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict { .. } | StoreError::SubjectErased { .. } => {
                Self::Conflict(e.to_string())
            }
            StoreError::IdempotencyMismatch { .. } => Self::Unprocessable(
                "This Idempotency-Key was already used for another request: use a new key for a \
                 new request."
                    .into(),
            ),
            StoreError::InvalidEvent(_)
            | StoreError::InvalidAttachment(_)
            | StoreError::ChainBroken { .. }
            | StoreError::ImportRefused(_) => Self::Unprocessable(e.to_string()),
            StoreError::Unavailable(_) | StoreError::Migration(_) => {
                tracing::warn!(error = %e, "store unavailable");
                Self::Unavailable("The register's database is unavailable; retry shortly.".into())
            }
            StoreError::Internal(_) => Self::Internal(e.into()),
        }
    }
}

impl From<JsonRejection> for ApiError {
    /// A body that could not be taken as JSON. The detail describes the client's own input
    /// (which field, which line), never the server.
    fn from(rejection: JsonRejection) -> Self {
        match rejection.status() {
            StatusCode::UNSUPPORTED_MEDIA_TYPE => Self::UnsupportedMediaType(
                "The body must be JSON, sent with `Content-Type: application/json`.".into(),
            ),
            StatusCode::PAYLOAD_TOO_LARGE => {
                Self::PayloadTooLarge("The body is larger than this API accepts.".into())
            }
            StatusCode::UNPROCESSABLE_ENTITY => Self::Unprocessable(rejection.body_text()),
            _ => Self::BadRequest(rejection.body_text()),
        }
    }
}

/// A problem response for `status` with `detail`, in the current request's context.
pub fn problem_response(status: StatusCode, detail: String) -> Response {
    problem_with_errors(status, detail, Vec::new())
}

/// As [`problem_response`], listing the bad lines of an uploaded file.
fn problem_with_errors(status: StatusCode, detail: String, errors: Vec<LineError>) -> Response {
    let ctx = context::current();
    let problem = Problem {
        kind: "about:blank".into(),
        title: status.canonical_reason().unwrap_or("Error").to_owned(),
        status: status.as_u16(),
        detail,
        instance: ctx.as_ref().map(|c| c.path.clone()),
        request_id: ctx.map(|c| c.id),
        errors,
    };
    let mut response = (status, Json(problem)).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from_static(RETRY_AFTER_SECONDS),
        );
    }
    response
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Self::Internal(cause) = &self {
            tracing::error!(error = ?cause, "internal error");
        }
        let errors = match &self {
            Self::BadLines(lines) => lines.clone(),
            _ => Vec::new(),
        };
        let mut response = problem_with_errors(self.status(), self.detail(), errors);
        match self {
            Self::Unauthorized(_) => {
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"registro\""),
                );
            }
            Self::TooManyRequests { retry_after } => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
            }
            Self::CatchingUp(_) => {
                response.headers_mut().insert(
                    header::RETRY_AFTER,
                    HeaderValue::from_static(CATCHING_UP_RETRY_AFTER_SECONDS),
                );
            }
            _ => {}
        }
        response
    }
}

/// The response to a handler that panicked: a 500 problem; the panic is logged.
pub fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response {
    let message = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("(no message)");
    ApiError::Internal(anyhow::anyhow!("handler panicked: {message}")).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_internal_error_tells_the_client_nothing_about_its_cause() {
        let response = ApiError::Internal(anyhow::anyhow!("SELECT secret FROM pg_shadow failed"))
            .into_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(response.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
        let body = axum::body::to_bytes(response.into_body(), 10_000)
            .await
            .unwrap();
        let text = String::from_utf8(body.to_vec()).unwrap();
        assert!(
            !text.contains("secret") && !text.contains("SELECT"),
            "{text}"
        );
        assert!(text.contains("\"status\":500"), "{text}");
    }

    #[tokio::test]
    async fn a_panic_becomes_a_500_problem() {
        let response = panic_response(Box::new("index out of bounds"));
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = axum::body::to_bytes(response.into_body(), 10_000)
            .await
            .unwrap();
        assert!(!String::from_utf8_lossy(&body).contains("index out of bounds"));
    }

    #[test]
    fn store_errors_map_to_their_statuses() {
        use registro_store::{ExpectedVersion, StreamId};
        let conflict = StoreError::Conflict {
            stream: StreamId::parse("s").unwrap(),
            expected: ExpectedVersion::Exact(1),
            actual: 2,
        };
        assert_eq!(ApiError::from(conflict).status(), StatusCode::CONFLICT);
        assert_eq!(
            ApiError::from(StoreError::InvalidEvent("x".into())).status(),
            StatusCode::UNPROCESSABLE_ENTITY
        );
        assert_eq!(
            ApiError::from(StoreError::IdempotencyMismatch { key: "k".into() }).status(),
            StatusCode::UNPROCESSABLE_ENTITY
        );
        assert_eq!(
            ApiError::from(StoreError::unavailable("down")).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            ApiError::from(StoreError::Migration("edited".into())).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            ApiError::from(StoreError::internal("bug")).status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }
}
