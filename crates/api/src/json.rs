//! The JSON body of requests and responses: like axum's [`axum::Json`], but a body that cannot
//! be taken is answered with a problem ([`ApiError`]) instead of a plain-text error.

use axum::extract::{FromRequest, Request};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// A JSON body. As an extractor it rejects, as RFC 9457 problems: a body without
/// `Content-Type: application/json` (415), malformed JSON (400), a body over the size limit
/// (413), JSON of the wrong shape (422). As a response it is `application/json`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        // Well-formed JSON first (415, 413, 400), then its shape: any JSON that is not what
        // the route takes is 422, naming where (`audience.groups[0]: unknown variant ...`),
        // whether a field is unknown, missing or of the wrong type.
        let axum::Json(value) =
            axum::Json::<serde_json::Value>::from_request(request, state).await?;
        if crate::hardening::json_depth(&value) > crate::hardening::MAX_JSON_DEPTH {
            return Err(ApiError::BadRequest(format!(
                "The body nests arrays and objects deeper than {} levels.",
                crate::hardening::MAX_JSON_DEPTH
            )));
        }
        serde_path_to_error::deserialize(value)
            .map(Self)
            .map_err(|e| {
                let path = e.path().to_string();
                let inner = e.into_inner();
                ApiError::Unprocessable(if path == "." {
                    inner.to_string()
                } else {
                    format!("{path}: {inner}")
                })
            })
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// Ids from the path. A malformed id names nothing the caller can see: 404, like an unknown one.
#[derive(Debug, Clone, Copy)]
pub struct PathIds<T>(pub T);

impl<T, S> axum::extract::FromRequestParts<S> for PathIds<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        let axum::extract::Path(value) = axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::NotFound)?;
        Ok(Self(value))
    }
}

/// A query string. One that does not fit is a 400 problem naming what is wrong.
#[derive(Debug, Clone, Copy, Default)]
pub struct QueryOf<T>(pub T);

impl<T, S> axum::extract::FromRequestParts<S> for QueryOf<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        let axum::extract::Query(value) =
            axum::extract::Query::<T>::from_request_parts(parts, state)
                .await
                .map_err(|e| ApiError::BadRequest(e.body_text()))?;
        Ok(Self(value))
    }
}

/// The largest position of a school's log a query may name: `school_seq` is a signed 64-bit
/// integer in both stores, as the document's `int64` says.
pub const MAX_POSITION: u64 = i64::MAX as u64;

/// Deserializes an optional position of the school's log (`min_position`, `before`, `from`,
/// `school_seq`), refusing one beyond [`MAX_POSITION`] as a malformed query (400).
///
/// # Errors
/// A number that is not a position.
pub fn position<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let value = <Option<u64> as serde::Deserialize>::deserialize(d)?;
    match value {
        Some(v) if v > MAX_POSITION => Err(serde::de::Error::custom(format_args!(
            "a position of the log is at most {MAX_POSITION}"
        ))),
        v => Ok(v),
    }
}
