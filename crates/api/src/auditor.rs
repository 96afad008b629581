//! What auditors read of the log itself (issue 7): a range of the school's events by
//! `school_seq`, one stream's history, and the state of the hash chain, checked now and against
//! a head published earlier. Events are shown as stored (sealed fields as ciphertext), in the
//! export's CloudEvents form (`docs/export-format.md`), so an auditor can recompute every hash
//! without any key. For the principal and the auditors; a read of events about students goes to
//! the access log.

// utoipa's expansion of `params(...)` names the parameter types by path.
#![allow(unused_qualifications)]

use axum::Extension;
use axum::extract::State;
use registro_domain::{PersonId, SchoolId};
use registro_store::verify::{Verification, find_hash, verify_school};
use registro_store::{Hash, RecordedEvent, Sealed, StreamId};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, Problem};
use crate::json::{PathIds, QueryOf};
use crate::school::record_read;

/// The most events one page holds.
const MAX_LIMIT: usize = 1_000;

/// A page of the log.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LogQuery {
    /// The first position (`school_seq`, or the stream's version) to read; default 1.
    #[param(example = 1)]
    #[serde(default, deserialize_with = "crate::json::position")]
    pub from: Option<u64>,
    /// How many events at most, 1 to 1000; default 100.
    #[param(example = 100)]
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
}

/// Events as stored, in the export's CloudEvents form.
#[derive(Debug, Serialize, ToSchema)]
pub struct LogPage {
    /// The events, in order.
    #[schema(value_type = Vec<Object>, example = json!([{"specversion": "1.0",
        "id": "0199b3a4-7c1e-7d2a-9f00-3b5c2e8d4a10", "type": "it.registro.GradeRecorded",
        "schoolseq": 1, "hash": "7fa6…"}]))]
    pub events: Vec<Value>,
    /// Where the next page starts, when there may be one.
    #[schema(example = 101)]
    pub next: Option<u64>,
}

fn page_of(query: &LogQuery) -> Result<(u64, usize), ApiError> {
    let from = query.from.unwrap_or(1).max(1);
    let limit = query.limit.unwrap_or(100);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::BadRequest(format!(
            "limit must be from 1 to {MAX_LIMIT}"
        )));
    }
    Ok((from, limit))
}

/// The page, with the read recorded for the students its events concern.
async fn answer(
    state: &AppState,
    caller: &Caller,
    events: &[RecordedEvent],
    next: Option<u64>,
    view: &str,
) -> Result<LogPage, ApiError> {
    let students: Vec<PersonId> = events
        .iter()
        .flat_map(registro_projection_audit::students)
        .map(PersonId::from_uuid)
        .collect();
    record_read(state, caller, students, view).await?;
    let events = events
        .iter()
        .map(|e| {
            let line = registro_store::portable::event_line(e)?;
            serde_json::from_str(&line).map_err(registro_store::StoreError::internal)
        })
        .collect::<Result<Vec<Value>, _>>()?;
    Ok(LogPage { events, next })
}

/// A range of the school's log by `school_seq`, as stored. For the principal and the auditors.
#[utoipa::path(get, path = "/schools/{school}/log", tag = "audit",
    params(("school" = Uuid, Path, description = "The school"), LogQuery),
    responses((status = 200, description = "The events", body = LogPage),
        (status = 400, description = "A limit out of range", body = Problem,
            content_type = "application/problem+json")))]
pub async fn log(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    QueryOf(query): QueryOf<LogQuery>,
) -> Result<axum::Json<LogPage>, ApiError> {
    let (from, limit) = page_of(&query)?;
    let events = state
        .store
        .read_school(caller.school, from, limit, Sealed::Keep)
        .await?;
    let next = (events.len() == limit).then(|| from + limit as u64);
    Ok(axum::Json(
        answer(&state, &caller, &events, next, "school.log").await?,
    ))
}

/// One stream's history, by version, as stored (`student-<id>-<year>`, `directory`,
/// `scrutiny-<class>-<year>`...). For the principal and the auditors.
#[utoipa::path(get, path = "/schools/{school}/log/streams/{stream}", tag = "audit",
    params(("school" = Uuid, Path, description = "The school"),
        ("stream" = String, Path, description = "The stream"), LogQuery),
    responses((status = 200, description = "The stream's events", body = LogPage),
        (status = 400, description = "A limit out of range", body = Problem,
            content_type = "application/problem+json")))]
pub async fn stream(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    PathIds(ids): PathIds<(SchoolId, String)>,
    QueryOf(query): QueryOf<LogQuery>,
) -> Result<axum::Json<LogPage>, ApiError> {
    let (_, stream) = ids;
    let stream = StreamId::parse(stream).map_err(|_| ApiError::NotFound)?;
    let (from, limit) = page_of(&query)?;
    let mut events = state
        .store
        .read_stream(caller.school, &stream, from, limit)
        .await?;
    // As stored: the stream read opens sealed fields, the log shows them sealed.
    for e in &mut events {
        e.data =
            serde_json::from_str(&e.stored_data).map_err(registro_store::StoreError::internal)?;
    }
    let next = (events.len() == limit).then(|| from + limit as u64);
    Ok(axum::Json(
        answer(&state, &caller, &events, next, "school.log").await?,
    ))
}

/// Checking the chain.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ChainQuery {
    /// A head published earlier (64 hex digits) that the log must still hold.
    #[param(example = "7fa62ffad9c3e98f78e3eb8cc99ff690bad684294d32b97b787702a485e77ef4")]
    pub head: Option<String>,
}

/// The state of the school's hash chain.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChainStatus {
    /// intact or broken.
    #[schema(example = "intact")]
    pub status: String,
    /// How many events verify.
    #[schema(example = 1532)]
    pub events: u64,
    /// The last event's hash, when intact.
    #[schema(example = "7fa62ffad9c3e98f78e3eb8cc99ff690bad684294d32b97b787702a485e77ef4")]
    pub head: Option<String>,
    /// The first position that does not verify, when broken.
    #[schema(example = json!(null))]
    pub broken_at: Option<u64>,
    /// What is wrong there.
    #[schema(example = json!(null))]
    pub reason: Option<String>,
    /// With `head`, when the chain is intact: the position of the published head in the log,
    /// if the log holds it.
    #[schema(example = json!(null))]
    pub published_head_at: Option<u64>,
}

/// Verifies the school's hash chain now, as `registro verify` does: every position, link and
/// hash, and the recorded head; with `head`, whether the log still holds a head published
/// earlier (`published_head_at` null: it does not, the log up to it was rewritten). Reads the
/// whole log. For the principal and the auditors.
#[utoipa::path(get, path = "/schools/{school}/chain", tag = "audit",
    params(("school" = Uuid, Path, description = "The school"), ChainQuery),
    responses((status = 200, description = "The chain's state", body = ChainStatus),
        (status = 400, description = "A head that is not 64 hex digits", body = Problem,
            content_type = "application/problem+json")))]
pub async fn chain(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    QueryOf(query): QueryOf<ChainQuery>,
) -> Result<axum::Json<ChainStatus>, ApiError> {
    let published = query
        .head
        .as_deref()
        .map(|h| {
            Hash::from_hex(h.trim())
                .map_err(|_| ApiError::BadRequest("head must be 64 hex digits".into()))
        })
        .transpose()?;
    let store = state.store.as_ref();
    let mut status = match verify_school(store, caller.school).await? {
        Verification::Intact { events, head } => ChainStatus {
            status: "intact".into(),
            events,
            head: head.map(|h| h.to_hex()),
            broken_at: None,
            reason: None,
            published_head_at: None,
        },
        Verification::Broken { school_seq, reason } => ChainStatus {
            status: "broken".into(),
            events: school_seq - 1,
            head: None,
            broken_at: Some(school_seq),
            reason: Some(reason),
            published_head_at: None,
        },
    };
    // Only a log that verifies says anything about a head published earlier.
    if let (Some(published), None) = (published, status.broken_at) {
        status.published_head_at = find_hash(store, caller.school, &published).await?;
    }
    Ok(axum::Json(status))
}
