//! Bulk enrolment from a CSV file (`docs/enrolment-csv.md`): a dry run lists every bad line
//! with its reason and writes nothing; only a clean file is applied, as one idempotent command
//! whose events are appended together or not at all.

// utoipa's expansion of `params(...)` names the parameter types by path.
#![allow(unused_qualifications)]

use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use registro_domain::directory::{self, DirectoryCommand};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, LineError};
use crate::json::{Json, QueryOf};
use crate::school::idempotency_key;

/// Whether to only check the file.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EnrolmentQuery {
    /// Check the file and write nothing (default false).
    #[serde(default)]
    pub dry_run: bool,
}

/// What a clean file does (or would do, in a dry run).
#[derive(Debug, Serialize, ToSchema)]
pub struct EnrolmentSummary {
    /// Whether this was only a check.
    #[schema(example = false)]
    pub dry_run: bool,
    /// The data lines of the file.
    #[schema(example = 24)]
    pub lines: usize,
    /// The students it registers (the others were registered already).
    #[schema(example = 24)]
    pub registered: usize,
    /// The students it enrols.
    #[schema(example = 24)]
    pub enrolled: usize,
    /// The `school_seq` of the last event written (none in a dry run).
    #[schema(example = 1042)]
    pub position: Option<u64>,
}

/// Registers and enrols the students of a CSV file (`text/csv` or `text/plain`, UTF-8, at most
/// 4,000 data lines; header
/// `fiscal_code;family_name;given_name;birth_date;class`, `;` or `,`). With `dry_run=true` it
/// only checks. A file with any bad line is refused whole (422), every bad line listed in
/// `errors` with its reason; a clean one is applied as one command, safe to retry with an
/// `Idempotency-Key`.
#[utoipa::path(post, path = "/schools/{school}/enrolments", tag = "directory",
    params(("school" = Uuid, Path, description = "The school"), EnrolmentQuery),
    request_body(content = String, content_type = "text/csv",
        example = "fiscal_code;family_name;given_name;birth_date;class\nXXXYYY12E50Z999Q;Rossi;Anna;2012-05-10;1A"),
    responses(
        (status = 200, description = "Checked (dry run): the file is clean", body = EnrolmentSummary),
        (status = 201, description = "Applied", body = EnrolmentSummary),
    ))]
pub async fn enrol_from_csv(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    QueryOf(query): QueryOf<EnrolmentQuery>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    let csv = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("text/csv") || t.starts_with("text/plain"));
    if !csv {
        return Err(ApiError::UnsupportedMediaType(
            "The file must be sent as text/csv (UTF-8).".into(),
        ));
    }
    let body = axum::body::to_bytes(body, crate::hardening::MAX_BODY_BYTES)
        .await
        .map_err(|_| {
            ApiError::PayloadTooLarge(format!(
                "Il file può essere al massimo di {} KiB.",
                crate::hardening::MAX_BODY_BYTES / 1024
            ))
        })?;
    let body = std::str::from_utf8(&body).map_err(|_| {
        ApiError::Unprocessable(
            "Il file deve essere in UTF-8 (dal foglio di calcolo: salva come \"CSV UTF-8\")."
                .into(),
        )
    })?;
    let key = idempotency_key(&headers, &caller)?;
    let rows = registro_domain::enrolment::parse(
        body,
        caller.school,
        key.as_ref().map(registro_store::IdempotencyKey::as_str),
    )
    .map_err(|errors| {
        ApiError::BadLines(
            errors
                .into_iter()
                .map(|e| LineError {
                    line: e.line,
                    reason: e.reason,
                })
                .collect(),
        )
    })?;
    let lines = rows.len();
    let cmd = DirectoryCommand::EnrolList { rows };
    let count = |names: &mut dyn Iterator<Item = &str>| {
        names.fold((0, 0), |(r, e), name| match name {
            "PersonRegistered" => (r + 1, e),
            "StudentEnrolled" => (r, e + 1),
            _ => (r, e),
        })
    };
    if query.dry_run {
        let current = state
            .directory
            .current(state.store.as_ref(), caller.school)
            .await?
            .state;
        let events = directory::decide(&current, &cmd)
            .map_err(|e| ApiError::from(crate::command::CommandError::Refused(e)))?;
        let (registered, enrolled) = count(&mut events.iter().map(|e| e.type_name()));
        return Ok((
            StatusCode::OK,
            Json(EnrolmentSummary {
                dry_run: true,
                lines,
                registered,
                enrolled,
                position: None,
            }),
        )
            .into_response());
    }
    let metadata = registro_store::CommandMetadata::by(caller.person, caller.role);
    let outcome = crate::directory::execute(
        state.store.as_ref(),
        &state.directory,
        caller.school,
        metadata,
        &cmd,
        key,
    )
    .await?;
    // What the append wrote (the first attempt's, for a retry).
    let written = state
        .store
        .read_school(
            caller.school,
            outcome.first_seq,
            usize::try_from(outcome.last_seq - outcome.first_seq + 1).unwrap_or(usize::MAX),
            registro_store::Sealed::Keep,
        )
        .await?;
    let (registered, enrolled) = count(&mut written.iter().map(|e| e.event_type.as_str()));
    let mut response = (
        StatusCode::CREATED,
        Json(EnrolmentSummary {
            dry_run: false,
            lines,
            registered,
            enrolled,
            position: Some(outcome.last_seq),
        }),
    )
        .into_response();
    if outcome.replayed {
        response.headers_mut().insert(
            crate::school::IDEMPOTENT_REPLAYED,
            axum::http::HeaderValue::from_static("true"),
        );
    }
    Ok(response)
}
