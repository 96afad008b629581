//! Subject access and portability (GDPR art. 15 and 20, issue 7): everything the school holds
//! about a student, as one JSON document: who they are in the directory, every event about them
//! (opened: the reasons their family gave are theirs), the family view of each school year of
//! their record, and who read their data. For the student's guardians, the student once of age,
//! and the principal (who answers requests made on paper).

// utoipa's expansion of `params(...)` names the parameter types by path.
#![allow(unused_qualifications)]

use std::collections::BTreeSet;

use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse as _, Response};
use registro_domain::justification::is_adult_on;
use registro_domain::{PersonId, Role, SchoolId};
use registro_store::Sealed;
use registro_store::canonical::format_timestamp;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::json::{PathIds, QueryOf};
use crate::register::italian_today;
use crate::school::{AccessQuery, access_records, known_student, record_read};

/// How many events a scan of the school's log reads at a time.
const PAGE: usize = 1_000;

/// Whether an event of `stream` goes into the download. Never the access log's own events (the
/// document lists the reads apart, without the other students each read named). For the family,
/// never the class council's (proposals, votes with the dissenting teachers, deliberations before
/// they are published): the published report cards are in the family view.
fn disclosed(stream: &str, family: bool) -> bool {
    stream != "access-log" && !(family && stream.starts_with("scrutiny-"))
}

/// Everything about the student, as JSON (`application/json`, to keep or to take to another
/// service): `person` (the directory's data: names, fiscal code, date of birth, class,
/// guardians), `events` (every event about the student, opened, oldest first, each with its
/// position, type, stream, time, actor's role and data), `family_view` (the family view of each
/// school year of the student's record), `access_log` (every recorded read of their data). For
/// the student's guardians, the student once 18, and the principal; recorded in the access log.
#[utoipa::path(get, path = "/schools/{school}/students/{student}/personal-data",
    tag = "access log",
    params(("school" = Uuid, Path, description = "The school"),
        ("student" = Uuid, Path, description = "The student")),
    responses((status = 200, description = "The student's data", content_type = "application/json",
        body = Object),
        (status = 403, description = "A student under 18 asks through their guardians",
            body = crate::Problem, content_type = "application/problem+json")))]
pub async fn personal_data(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    PathIds(ids): PathIds<(SchoolId, PersonId)>,
) -> Result<Response, ApiError> {
    let (school, student) = ids;
    known_student(&caller, student)?;
    let dir = &caller.directory;
    let person = dir.person(student).ok_or(ApiError::NotFound)?;
    let today = italian_today(&state);
    if caller.role == Role::Student && !person.birth_date.is_some_and(|b| is_adult_on(b, today)) {
        return Err(ApiError::Forbidden(
            "Uno studente minorenne esercita questo diritto tramite i genitori o tutori. (A \
             student under 18 exercises this right through their guardians.)"
                .into(),
        ));
    }
    // The family gets what the family view shows them; the principal, every event.
    let family = caller.role != Role::Principal;
    let mut events = Vec::new();
    let mut years = BTreeSet::new();
    let mut from = 1;
    loop {
        let page = state
            .store
            .read_school(school, from, PAGE, Sealed::Open)
            .await?;
        for e in &page {
            if !registro_projection_audit::students(e).contains(student.as_uuid())
                || !disclosed(e.stream_id.as_str(), family)
            {
                continue;
            }
            let prefix = format!("student-{student}-");
            if let Some(year) = e.stream_id.as_str().strip_prefix(&prefix) {
                years.extend(year.parse::<i32>().ok());
            }
            events.push(json!({
                "school_seq": e.school_seq,
                "type": e.event_type.as_str(),
                "stream": e.stream_id.as_str(),
                "recorded_at": format_timestamp(e.recorded_at),
                "occurred_at": format_timestamp(e.occurred_at),
                "actor_role": e.actor_role.as_str(),
                "data": e.data,
            }));
        }
        match page.last() {
            Some(last) if page.len() == PAGE => from = last.school_seq + 1,
            _ => break,
        }
    }
    let mut family_view = serde_json::Map::new();
    for year in years {
        let response = crate::family::overview(
            State(state.clone()),
            Extension(caller.clone()),
            PathIds((school, student, year)),
            QueryOf(crate::family::OverviewQuery::default()),
            HeaderMap::new(),
        )
        .await?;
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .map_err(|e| ApiError::Internal(e.into()))?;
        let view: Value =
            serde_json::from_slice(&bytes).map_err(|e| ApiError::Internal(e.into()))?;
        family_view.insert(year.to_string(), view);
    }
    let mut reads = Vec::new();
    let mut before = None;
    loop {
        let query = AccessQuery {
            student: Some(student),
            before,
            limit: Some(1_000),
            ..AccessQuery::default()
        };
        let page = access_records(&state, &caller, &query).await?;
        reads.extend(page.entries);
        match page.next_before {
            Some(next) => before = Some(next),
            None => break,
        }
    }
    let guardians: Vec<Uuid> = dir
        .people()
        .filter(|(g, _)| dir.is_linked(*g, student))
        .map(|(g, _)| *g.as_uuid())
        .collect();
    let document = json!({
        "generated_at": format_timestamp(time::OffsetDateTime::now_utc()),
        "school": school,
        "person": {
            "id": student,
            "family_name": person.family_name,
            "given_name": person.given_name,
            "fiscal_code": person.fiscal_code.as_str(),
            "birth_date": person.birth_date.map(|d| d.to_string()),
            "class": dir.class_of(student).and_then(|c| dir.class(c)).map(|c| c.name.clone()),
            "guardians": guardians,
        },
        "events": events,
        "family_view": family_view,
        "access_log": reads,
    });
    record_read(&state, &caller, [student], "student.personal_data").await?;
    let mut response = axum::Json(document).into_response();
    if let Ok(disposition) = HeaderValue::from_str(&format!(
        "attachment; filename=\"personal-data-{student}.json\""
    )) {
        response
            .headers_mut()
            .insert(header::CONTENT_DISPOSITION, disposition);
    }
    Ok(response)
}
