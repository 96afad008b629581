//! Limits on what a request may be, and the headers every response carries (ADR 0032).
//!
//! - A request's headers: at most [`MAX_HEADERS`] of them and [`MAX_HEADER_BYTES`] in all,
//!   else 431 (hyper refuses a request head over its own, larger, buffer before registro sees
//!   it).
//! - A body taken whole (JSON, a CSV file): at most [`MAX_BODY_BYTES`], else 413; an
//!   attachment has its own limit (10 MiB). JSON nested deeper than [`MAX_JSON_DEPTH`] is 400.
//! - Every response: `X-Content-Type-Options: nosniff`, a `Content-Security-Policy` that lets
//!   nothing load (HTML pages: their own inline style; a route's own policy stands, as the
//!   documentation page's, which runs its inline script) and nothing frame it,
//!   `X-Frame-Options: DENY`, `Referrer-Policy: no-referrer`, `Cross-Origin-Resource-Policy:
//!   same-origin` (cross-origin readers go through CORS), HSTS, and `Cache-Control: no-store`
//!   unless the route set its own (the register's pages are personal data).
//! - CORS: none by default (browsers keep other origins out); the origins configured are
//!   allowed to call the API with a bearer token, never with cookies.

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::error::ApiError;

/// The most headers a request may carry.
pub const MAX_HEADERS: usize = 64;
/// The most bytes a request's headers may take, names and values.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// The largest body taken whole (JSON commands, a CSV enrolment file): 1 MiB.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// The deepest nesting of arrays and objects a JSON body may have.
pub const MAX_JSON_DEPTH: usize = 32;

/// How long a browser may cache a CORS preflight answer, in seconds.
const PREFLIGHT_MAX_AGE: u64 = 600;

/// Refuses requests whose headers are too many or too large, and adds the security headers to
/// every response.
pub async fn harden(request: Request, next: Next) -> Response {
    let headers = request.headers();
    let bytes: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    let mut response = if headers.len() > MAX_HEADERS || bytes > MAX_HEADER_BYTES {
        ApiError::HeadersTooLarge(format!(
            "The request's headers are too many or too large (at most {MAX_HEADERS} headers, \
             {MAX_HEADER_BYTES} bytes in all)."
        ))
        .into_response()
    } else {
        next.run(request).await
    };
    let html = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("text/html"));
    let h = response.headers_mut();
    // A route's own policy stands (the documentation page allows its inline script); else
    // nothing loads, and an HTML page only its inline style: no script runs.
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        let csp = if html {
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; \
             base-uri 'none'; form-action 'none'"
        } else {
            "default-src 'none'; frame-ancestors 'none'"
        };
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(csp),
        );
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        HeaderName::from_static("cross-origin-resource-policy"),
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        header::STRICT_TRANSPORT_SECURITY,
        HeaderValue::from_static("max-age=31536000; includeSubDomains"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// The CORS policy for `origins` (`https://app.example.it`); none when the list is empty.
///
/// # Errors
/// An origin that is not a valid header value, or `*` (a register of personal data names the
/// origins it trusts).
pub fn cors(origins: &[String]) -> anyhow::Result<Option<CorsLayer>> {
    if origins.is_empty() {
        return Ok(None);
    }
    let origins = origins
        .iter()
        .map(|o| {
            let host = o
                .strip_prefix("https://")
                .or_else(|| o.strip_prefix("http://"))
                .map(|h| h.trim_end_matches('/'));
            anyhow::ensure!(
                host.is_some_and(|h| !h.is_empty()
                    && !h.contains('/')
                    && h == h.to_ascii_lowercase()),
                "a CORS origin is a lowercase scheme and host (https://app.example.it), not {o:?}"
            );
            Ok(HeaderValue::from_str(o.trim_end_matches('/'))?)
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                header::IF_NONE_MATCH,
                HeaderName::from_static("idempotency-key"),
                HeaderName::from_static(crate::context::REQUEST_ID),
            ])
            .expose_headers([
                header::ETAG,
                header::LOCATION,
                header::RETRY_AFTER,
                header::CONTENT_DISPOSITION,
                HeaderName::from_static(crate::context::REQUEST_ID),
                HeaderName::from_static("idempotent-replayed"),
                HeaderName::from_static("x-registro-as-of"),
            ])
            .max_age(std::time::Duration::from_secs(PREFLIGHT_MAX_AGE)),
    ))
}

/// How deep `value` nests arrays and objects (a scalar is 0).
#[must_use]
pub fn json_depth(value: &serde_json::Value) -> usize {
    // Iterative: a hostile document must not exhaust the stack here either.
    let mut deepest = 0;
    let mut stack = vec![(value, 0_usize)];
    while let Some((v, depth)) = stack.pop() {
        deepest = deepest.max(depth);
        match v {
            serde_json::Value::Array(items) => stack.extend(items.iter().map(|i| (i, depth + 1))),
            serde_json::Value::Object(map) => stack.extend(map.values().map(|i| (i, depth + 1))),
            _ => {}
        }
    }
    deepest
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn depth_counts_arrays_and_objects() {
        assert_eq!(json_depth(&json!(1)), 0);
        assert_eq!(json_depth(&json!({"a": 1})), 1);
        assert_eq!(json_depth(&json!({"a": [1, {"b": []}]})), 3);
        let mut deep = json!(0);
        for _ in 0..100 {
            deep = json!([deep]);
        }
        assert_eq!(json_depth(&deep), 100);
    }

    #[test]
    fn cors_takes_named_origins_only() {
        assert!(cors(&[]).unwrap().is_none());
        assert!(cors(&["https://app.example.it".into()]).unwrap().is_some());
        assert!(cors(&["*".into()]).is_err());
        assert!(cors(&["app.example.it".into()]).is_err());
        assert!(cors(&["https://".into()]).is_err());
        assert!(cors(&["https://app.example.it/path".into()]).is_err());
        assert!(cors(&["https://App.example.it".into()]).is_err());
    }
}
