//! Retention (rules.md section 7, issue 7): each student's record of a school year seals its
//! special-category details (a justification's reason) with a key of its own
//! ([`registro_domain::record::sealing_subject`]); once the school's retention of that year ends
//! ([`RetentionSettings`]), the key is destroyed and the erasure recorded as a
//! `SealedDataErased` event on the record. The history stays whole and verifiable (the chain
//! covers the ciphertext); every read shows the reasons as erased. Run by `registro retention
//! run` or by the school's administrator over HTTP.

// utoipa's expansion of `params(...)` names the parameter types by path.
#![allow(unused_qualifications)]

use std::collections::HashSet;

use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use registro_domain::StoredEvent as _;
use registro_domain::calendar::SchoolYear;
use registro_domain::directory::{Directory, DirectoryCommand};
use registro_domain::record::{self, RecordEvent};
use registro_domain::retention::RetentionSettings;
use registro_domain::{PersonId, SchoolId};
use registro_store::{
    AppendRequest, CommandMetadata, EventStore, EventType, ExpectedVersion, IdempotencyKey,
    KeyState, NewEvent, StoreError, StreamId,
};
use serde::{Deserialize, Serialize};
use time::Date;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::json::Json;
use crate::register::italian_today;
use crate::school::Written;

/// How many school years back a run looks for records to erase.
const YEARS_BACK: i32 = 50;

/// A record whose special-category details a run erased.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Erasure {
    /// The student.
    #[schema(example = "0199b3a4-7c1e-7d2a-9f00-3b5c2e8d4a10")]
    pub student: Uuid,
    /// The school year of the record (the year it starts in).
    #[schema(example = 2022)]
    pub year: i32,
}

/// Erases the special-category details of every record of `school` whose retention ended by
/// `today`, as `metadata`'s actor: for each, first the `SealedDataErased` event on the record
/// (idempotent: a run that stopped half-way records it once), then the key. Records without
/// sealed data have no key and are left alone.
///
/// # Errors
/// The store's.
pub async fn run(
    store: &dyn EventStore,
    school: SchoolId,
    directory: &Directory,
    today: Date,
    metadata: &CommandMetadata,
) -> Result<Vec<Erasure>, StoreError> {
    let settings = directory.retention_settings();
    let live: HashSet<PersonId> = store
        .subject_keys(school)
        .await?
        .into_iter()
        .filter(|(_, k)| matches!(k, KeyState::Present(_)))
        .map(|(s, _)| s)
        .collect();
    let this_year = SchoolYear::of(today).start_year();
    let mut erased = Vec::new();
    for (student, _) in directory.people() {
        for start in (this_year - YEARS_BACK)..=this_year {
            let year = SchoolYear::starting(start);
            let subject = record::sealing_subject(student, year);
            if !settings.erasure_due(year, today) || !live.contains(&subject) {
                continue;
            }
            let event = RecordEvent::SealedDataErased {
                subject,
                reason: "retention".into(),
            };
            let request = AppendRequest {
                school,
                stream: StreamId::parse(record::stream(student, year))?,
                expected: ExpectedVersion::Any,
                guards: Vec::new(),
                events: vec![NewEvent::new(
                    EventType::parse(event.type_name())?,
                    event.data(),
                    time::OffsetDateTime::now_utc(),
                )],
                metadata: metadata.clone(),
                idempotency_key: Some(IdempotencyKey::parse(format!("retention-{subject}"))?),
                command_digest: None,
            };
            match store.append(request).await {
                // Recorded by an earlier run (perhaps by another actor) that stopped before
                // destroying the key.
                Ok(_) | Err(StoreError::IdempotencyMismatch { .. }) => {}
                Err(e) => return Err(e),
            }
            store.destroy_subject_key(school, subject).await?;
            tracing::info!(%school, %student, year = start, "special-category details erased");
            erased.push(Erasure {
                student: *student.as_uuid(),
                year: start,
            });
        }
    }
    Ok(erased)
}

/// What a retention run erased.
#[derive(Debug, Serialize, ToSchema)]
pub struct RetentionRun {
    /// The records whose special-category details were erased now.
    pub erased: Vec<Erasure>,
}

/// Runs the retention now (rules.md section 7): the special-category details of every record
/// whose retention ended are erased by destroying their key, and each erasure is recorded on
/// its record. For the school's administrator; `registro retention run` does the same.
#[utoipa::path(post, path = "/schools/{school}/retention/run", tag = "portability",
    params(("school" = Uuid, Path, description = "The school")),
    responses((status = 200, description = "What was erased", body = RetentionRun)))]
pub async fn run_now(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<axum::Json<RetentionRun>, ApiError> {
    let metadata = CommandMetadata::by(caller.person, caller.role);
    let today = italian_today(&state);
    let erased = run(
        state.store.as_ref(),
        caller.school,
        &caller.directory,
        today,
        &metadata,
    )
    .await?;
    Ok(axum::Json(RetentionRun { erased }))
}

/// The school's retention of special-category details.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetentionRules {
    /// The school years, 0 to 10, after a record's own during which its special-category
    /// details are kept. Default 2: to the end of the school year after next.
    #[schema(example = 2)]
    pub years_after: u8,
}

/// Sets the school's retention of special-category details, from now on: the principal or the
/// office.
#[utoipa::path(put, path = "/schools/{school}/settings/retention", tag = "portability",
    params(("school" = Uuid, Path, description = "The school")),
    request_body = RetentionRules,
    responses((status = 200, description = "Set", body = Written)))]
pub async fn set_rules(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Json(body): Json<RetentionRules>,
) -> Result<Response, ApiError> {
    let cmd = DirectoryCommand::SetRetentionSettings {
        settings: RetentionSettings {
            years_after: body.years_after,
        },
    };
    crate::school::command(&state, &caller, &headers, cmd, StatusCode::OK, None).await
}

/// The school's retention of special-category details: every member may read it.
#[utoipa::path(get, path = "/schools/{school}/settings/retention", tag = "portability",
    params(("school" = Uuid, Path, description = "The school")),
    responses((status = 200, description = "The rules (the defaults until set)",
        body = RetentionRules)))]
pub async fn rules(Extension(caller): Extension<Caller>) -> axum::Json<RetentionRules> {
    axum::Json(RetentionRules {
        years_after: caller.directory.retention_settings().years_after,
    })
}
