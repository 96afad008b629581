//! The audit trail over HTTP, read from its projection (`projections/audit`): the school's
//! whole trail, filtered, for the principal and auditors; one student's, for them and for the
//! student's guardians and the student. Asking for one student's entries is a read of that
//! student's data, recorded in the access log.

// utoipa's expansion of `params(...)` names the parameter types by path.
#![allow(unused_qualifications)]

use axum::Extension;
use axum::extract::State;
use registro_domain::{PersonId, SchoolId};
use registro_projection_audit::{Entry, Filter, NAME, entries};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, Problem};
use crate::json::{Json, PathIds, QueryOf};
use crate::projections::read_projection;
use crate::school::{known_student, record_read};

/// Which entries of the trail to list, newest first.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Only entries about this student.
    pub student: Option<Uuid>,
    /// Only entries by this person.
    pub actor: Option<Uuid>,
    /// Only this event type (`GradeRecorded`, `StudentDataRead`...).
    pub action: Option<String>,
    /// Only entries recorded at or after this time (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub from: Option<OffsetDateTime>,
    /// Only entries recorded before this time (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub to: Option<OffsetDateTime>,
    /// Only entries with a `school_seq` below this (the previous page's `next_before`).
    #[serde(default, deserialize_with = "crate::json::position")]
    pub before: Option<u64>,
    /// At most this many entries (default 100, at most 1000).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// Read your writes: answer only once the trail includes this position of the school's log
    /// (the `position` a command answered). The read waits briefly (2 s by default) for the
    /// trail to catch up, then answers 503 with `Retry-After: 1`; a position beyond the
    /// school's log is 422.
    #[param(example = 1042)]
    #[serde(default, deserialize_with = "crate::json::position")]
    pub min_position: Option<u64>,
}

/// One entry of the trail.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEntry {
    /// Its place in the school's log.
    #[schema(example = 1042)]
    pub school_seq: u64,
    /// When it was recorded.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime, example = "2025-10-06T08:15:00Z")]
    pub at: OffsetDateTime,
    /// Who; null for the software itself.
    #[schema(example = "0199b3a4-7c1e-7d2a-9f00-3b5c2e8d4a10")]
    pub actor: Option<Uuid>,
    /// In which role.
    #[schema(example = "teacher")]
    pub role: String,
    /// What: the event type.
    #[schema(example = "GradeRecorded")]
    pub action: String,
    /// The stream it is in.
    #[schema(example = "student-0199b3a4-7c1e-7d2a-9f00-3b5c2e8d4a10-2025")]
    pub stream: String,
    /// The request it came from.
    #[schema(example = "0199b3a4-7c1e-7d2a-9f00-3b5c2e8d4a10")]
    pub correlation_id: Uuid,
    /// A short description, without personal data.
    #[schema(example = "voto")]
    pub summary: String,
}

/// A page of the trail.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage {
    /// The entries, newest first.
    pub entries: Vec<AuditEntry>,
    /// The `before` of the next page, when there may be one.
    #[schema(example = 1001)]
    pub next_before: Option<u64>,
}

async fn page(
    state: &AppState,
    caller: &Caller,
    filter: Filter,
    min_position: Option<u64>,
) -> Result<AuditPage, ApiError> {
    let limit = filter.limit;
    let found: Vec<Entry> = read_projection(
        state,
        NAME,
        caller.school,
        min_position,
        entries(state.store.as_ref(), caller.school, &filter),
    )
    .await?;
    let next_before = (found.len() == limit as usize)
        .then(|| found.last().map(|e| e.school_seq))
        .flatten();
    Ok(AuditPage {
        entries: found
            .into_iter()
            .map(|e| AuditEntry {
                school_seq: e.school_seq,
                at: e.recorded_at,
                actor: e.actor,
                role: e.role,
                action: e.action,
                stream: e.stream,
                correlation_id: e.correlation,
                summary: e.summary,
            })
            .collect(),
        next_before,
    })
}

fn filter(query: AuditQuery) -> Result<(Filter, Option<u64>), ApiError> {
    let limit = query.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::Unprocessable("limit: da 1 a 1000".into()));
    }
    let filter = Filter {
        student: query.student,
        actor: query.actor,
        action: query.action,
        from: query.from,
        to: query.to,
        before: query.before,
        limit,
    };
    Ok((filter, query.min_position))
}

/// The school's audit trail (registro delle attività), filtered: for the principal and
/// auditors. Asking for one student's entries is a read of that student's data, recorded.
/// Read from a projection: `min_position` waits for it to include one's own writes.
#[utoipa::path(get, path = "/schools/{school}/audit", tag = "access log",
    params(("school" = Uuid, Path, description = "The school"), AuditQuery),
    responses(
        (status = 200, description = "The entries, newest first", body = AuditPage),
        (status = 422, description = "A `limit` out of range, or a `min_position` beyond the \
            school's log", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The trail has not caught up with `min_position` yet \
            (`Retry-After: 1`) or is not ready; or the service or the identity provider is \
            unavailable",
            body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn school_audit(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    QueryOf(query): QueryOf<AuditQuery>,
) -> Result<Json<AuditPage>, ApiError> {
    let (filter, min_position) = filter(query)?;
    let student = filter.student.map(PersonId::from_uuid);
    let found = page(&state, &caller, filter, min_position).await?;
    record_read(&state, &caller, student, "student.audit").await?;
    Ok(Json(found))
}

/// The audit trail of one student's data: every event about them, who caused it and when (the
/// reads of their data included); for the principal, auditors, the student's guardians and the
/// student. Read from a projection: `min_position` waits for it to include one's own writes.
#[utoipa::path(get, path = "/schools/{school}/students/{student}/audit", tag = "access log",
    params(("school" = Uuid, Path, description = "The school"),
        ("student" = Uuid, Path, description = "The student"), AuditQuery),
    responses(
        (status = 200, description = "The entries, newest first", body = AuditPage),
        (status = 422, description = "A `limit` out of range, or a `min_position` beyond the \
            school's log", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The trail has not caught up with `min_position` yet \
            (`Retry-After: 1`) or is not ready; or the service or the identity provider is \
            unavailable",
            body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn student_audit(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    PathIds(ids): PathIds<(SchoolId, PersonId)>,
    QueryOf(query): QueryOf<AuditQuery>,
) -> Result<Json<AuditPage>, ApiError> {
    let (_, student) = ids;
    known_student(&caller, student)?;
    let (mut filter, min_position) = filter(query)?;
    filter.student = Some(*student.as_uuid());
    let found = page(&state, &caller, filter, min_position).await?;
    record_read(&state, &caller, [student], "student.audit").await?;
    Ok(Json(found))
}
