//! A school's export over HTTP (issue 7), for the school's administrator: the whole log as
//! CloudEvents NDJSON, streamed a page at a time ([`registro_store::portable`],
//! `docs/export-format.md`), and the key bundle of its data subjects, encrypted with a
//! passphrase the administrator gives. The same as `registro export`, without shell access.

// utoipa's expansion of `params(...)` names the parameter types by path.
#![allow(unused_qualifications)]

use std::sync::Arc;

use axum::Extension;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse as _, Response};
use registro_store::portable::Exporter;
use serde::Deserialize;
use utoipa::ToSchema;

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, Problem};
use crate::json::Json;
use crate::school::record_read;

/// Every student of the school's directory, whose data an export carries.
fn students(caller: &Caller) -> Vec<registro_domain::PersonId> {
    caller
        .directory
        .people()
        .filter(|(_, p)| p.roles.contains(&registro_domain::Role::Student))
        .map(|(id, _)| id)
        .collect()
}

/// The school's whole log as CloudEvents 1.0 NDJSON (`application/x-ndjson`), streamed: the
/// manifest first (its event count and chain head are the log's when the download began), then
/// every event as stored (sealed fields as ciphertext), then the attachments the events name.
/// The format is `docs/export-format.md`. For the school's administrator. A download cut short
/// is found at import: the file then ends before its manifest says.
#[utoipa::path(get, path = "/schools/{school}/export", tag = "portability",
    params(("school" = Uuid, Path, description = "The school")),
    responses(
        (status = 200, description = "The export, one JSON object a line",
            content_type = "application/x-ndjson", body = String),
        (status = 404, description = "The school has no events", body = Problem,
            content_type = "application/problem+json")))]
pub async fn export(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Response, ApiError> {
    let school = caller.school;
    let exporter = Exporter::new(Arc::clone(&state.store), school, crate::SOFTWARE).await?;
    if exporter.manifest().events == 0 {
        return Err(ApiError::NotFound);
    }
    tracing::info!(%school, events = exporter.manifest().events, "export started");
    // Every student's data leaves: the read is recorded for each of them.
    record_read(&state, &caller, students(&caller), "school.export").await?;
    let chunks = futures_util::stream::unfold(Some(exporter), |exporter| async move {
        let mut exporter = exporter?;
        match exporter.next_chunk().await {
            Ok(Some(chunk)) => Some((Ok::<_, std::io::Error>(chunk), Some(exporter))),
            Ok(None) => None,
            Err(e) => {
                // The client's import finds the file short of its manifest.
                tracing::error!(error = %e, "export cut short");
                Some((Err(std::io::Error::other("the export failed")), None))
            }
        }
    });
    let mut response = Body::from_stream(chunks).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    if let Ok(disposition) =
        HeaderValue::from_str(&format!("attachment; filename=\"school-{school}.ndjson\""))
    {
        headers.insert(header::CONTENT_DISPOSITION, disposition);
    }
    Ok(response)
}

/// The passphrase of a key bundle.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BundleRequest {
    /// At least 12 characters; the importing instance needs it to open the bundle.
    #[schema(example = "una passphrase abbastanza lunga")]
    pub passphrase: String,
}

/// The key bundle of the school's data subjects (`docs/export-format.md`, section 5): their
/// keys, encrypted with a key derived from the passphrase (Argon2id, XChaCha20-Poly1305), to
/// import the export's sealed data elsewhere. For the school's administrator.
#[utoipa::path(post, path = "/schools/{school}/export/keys", tag = "portability",
    params(("school" = Uuid, Path, description = "The school")),
    request_body = BundleRequest,
    responses(
        (status = 200, description = "The bundle (JSON)", content_type = "application/json",
            body = Object),
        (status = 422, description = "A passphrase shorter than 12 characters", body = Problem,
            content_type = "application/problem+json")))]
pub async fn key_bundle(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Json(body): Json<BundleRequest>,
) -> Result<Response, ApiError> {
    let (school, keys) = (
        caller.school,
        state.store.subject_keys(caller.school).await?,
    );
    record_read(&state, &caller, students(&caller), "school.export_keys").await?;
    let subjects = keys.len();
    // Argon2id takes 64 MiB and a fraction of a second: not on the request threads.
    let bundle = tokio::task::spawn_blocking(move || {
        registro_store::bundle::seal_bundle(school, &keys, &body.passphrase)
    })
    .await
    .map_err(|e| ApiError::Internal(e.into()))??;
    tracing::info!(%school, subjects, "key bundle exported");
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        bundle,
    )
        .into_response())
}
