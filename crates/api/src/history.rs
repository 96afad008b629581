//! Time travel (issue 7): the family view and the scrutiny report as they stood at a past
//! `school_seq` or at the end of a past day, for the principal and the auditors. The view is
//! built again by replaying the school's events up to that point through the projection's own
//! `apply`, into a scratch SQLite file of its own that is deleted after the answer, and read
//! with the same code as the live one, against the directory as it stood then. The live views
//! are never touched.

// utoipa's expansion of `params(...)` names the parameter types by path.
#![allow(unused_qualifications)]

use std::path::PathBuf;
use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse as _, Response};
use registro_domain::calendar::italian_date;
use registro_domain::directory::Directory;
use registro_domain::{ClassId, PersonId, SchoolId};
use registro_projector::Projection;
use registro_store::sqlite::SqliteStore;
use registro_store::{EventStore, MasterKey, Position, Sealed, StreamId};
use serde::Deserialize;
use time::Date;
use utoipa::IntoParams;
use uuid::Uuid;

use crate::AppState;
use crate::auth::Caller;
use crate::cache::Fold as _;
use crate::error::{ApiError, Problem};
use crate::json::{PathIds, QueryOf};
use crate::school::record_read;

/// How many events a replay reads and applies at a time.
const PAGE: usize = 1_000;

/// The point in the past.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AsOf {
    /// As the view stood once this event of the school's log was recorded.
    #[param(example = 1042)]
    #[serde(default, deserialize_with = "crate::json::position")]
    pub school_seq: Option<u64>,
    /// As the view stood at the end of this day (Italian time).
    #[param(value_type = Option<String>, format = Date, example = "2026-01-31")]
    pub date: Option<Date>,
}

/// The last `school_seq` of the point asked for, and its day (the view's "today" then).
async fn position(
    state: &AppState,
    school: SchoolId,
    as_of: &AsOf,
) -> Result<(u64, Date), ApiError> {
    let head = state
        .store
        .school_head(school)
        .await?
        .map_or(0, |h| h.last_seq);
    match (as_of.school_seq, as_of.date) {
        (Some(0), None) => Err(ApiError::BadRequest("school_seq starts at 1".into())),
        (Some(seq), None) if seq <= head => {
            let page = state
                .store
                .read_school(school, seq, 1, Sealed::Keep)
                .await?;
            let day = page
                .first()
                .map(|e| italian_date(e.recorded_at))
                .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("event {seq} is missing")))?;
            Ok((seq, day))
        }
        (Some(seq), None) => Err(ApiError::Unprocessable(format!(
            "school_seq {seq} va oltre il registro della scuola ({head} eventi)"
        ))),
        (None, Some(day)) => {
            // The events are in recording order: the last one recorded on or before the day.
            let mut last = 0;
            let mut from = 1;
            loop {
                let page = state
                    .store
                    .read_school(school, from, PAGE, Sealed::Keep)
                    .await?;
                for e in &page {
                    if italian_date(e.recorded_at) > day {
                        return Ok((last, day));
                    }
                    last = e.school_seq;
                }
                match page.last() {
                    Some(e) if page.len() == PAGE => from = e.school_seq + 1,
                    _ => return Ok((last, day)),
                }
            }
        }
        _ => Err(ApiError::BadRequest(
            "give exactly one of `school_seq` and `date`".into(),
        )),
    }
}

/// A scratch store, deleted when dropped.
#[derive(Debug)]
struct Scratch {
    dir: PathBuf,
    store: Arc<SqliteStore>,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `projection` built from the school's events up to `upto`, in a scratch store.
async fn replay(
    state: &AppState,
    school: SchoolId,
    upto: u64,
    projection: &dyn Projection,
) -> Result<Scratch, ApiError> {
    // The replayed view holds personal data: a directory only this process's user can read.
    let dir = std::env::temp_dir().join(format!("registro-history-{}", Uuid::now_v7().simple()));
    {
        use std::os::unix::fs::DirBuilderExt as _;
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|e| ApiError::Internal(e.into()))?;
    }
    let store = SqliteStore::open(&dir.join("past.db"), MasterKey::generate()).await?;
    let scratch = Scratch {
        dir,
        store: Arc::new(store),
    };
    scratch.store.migrate().await?;
    let schema = projection.schema();
    scratch.store.prepare_projection(&schema).await?;
    let mut checkpoint = Position::START;
    let mut from = 1;
    while from <= upto {
        let page = state
            .store
            .read_school(school, from, PAGE, Sealed::Open)
            .await?;
        let mut ops = Vec::new();
        let mut to = checkpoint;
        for e in page.iter().take_while(|e| e.school_seq <= upto) {
            ops.extend(projection.apply(e).map_err(ApiError::Internal)?);
            to = e.position;
        }
        if to != checkpoint {
            scratch
                .store
                .commit_projection(schema.name, checkpoint, to, &ops)
                .await?;
            checkpoint = to;
        }
        match page.last() {
            Some(e) if page.len() == PAGE => from = e.school_seq + 1,
            _ => break,
        }
    }
    Ok(scratch)
}

/// The school's directory as it stood once event `upto` was recorded.
async fn directory_at(
    state: &AppState,
    school: SchoolId,
    upto: u64,
) -> Result<Directory, ApiError> {
    let stream = StreamId::parse(registro_domain::directory::STREAM)?;
    let mut directory = Directory::default();
    let mut from = 1;
    loop {
        let page = state.store.read_stream(school, &stream, from, PAGE).await?;
        for e in page.iter().take_while(|e| e.school_seq <= upto) {
            directory.apply(e).map_err(ApiError::Internal)?;
        }
        match page.last() {
            Some(e) if page.len() == PAGE && e.school_seq <= upto => from = e.stream_version + 1,
            _ => return Ok(directory),
        }
    }
}

/// The state and caller of a read of the past: the scratch store, caches of their own (nothing
/// of the past reaches the live caches), the directory as it stood.
fn past(
    state: &AppState,
    caller: &Caller,
    scratch: &Scratch,
    (directory, today): (Directory, Date),
) -> (AppState, Caller) {
    let store: Arc<dyn EventStore> = Arc::clone(&scratch.store) as Arc<dyn EventStore>;
    let state = AppState {
        store,
        directory: Arc::default(),
        access_log: Arc::default(),
        communications: Arc::default(),
        overview: Arc::default(),
        today: Some(today),
        ..state.clone()
    };
    let caller = Caller {
        directory: Arc::new(directory),
        ..caller.clone()
    };
    (state, caller)
}

/// Marks an answer with the position it stood at.
fn as_of(mut response: Response, upto: u64) -> Response {
    response
        .headers_mut()
        .insert("x-registro-as-of", HeaderValue::from(upto));
    response
}

/// A student's family view of a school year (the overview) as it stood at a past `school_seq`
/// or at the end of a past day, rebuilt from the events up to then; the header
/// `x-registro-as-of` gives the last event included. For the principal and the auditors;
/// recorded in the access log.
#[utoipa::path(get, path = "/schools/{school}/history/students/{student}/years/{year}/family",
    tag = "audit",
    params(("school" = Uuid, Path, description = "The school"),
        ("student" = Uuid, Path, description = "The student"),
        ("year" = i32, Path, description = "The year the school year starts in"), AsOf),
    responses((status = 200, description = "The overview as it stood",
            body = crate::family::FamilyOverview),
        (status = 400, description = "Not exactly one of `school_seq` and `date`", body = Problem,
            content_type = "application/problem+json"),
        (status = 404, description = "The student was not in the school then", body = Problem,
            content_type = "application/problem+json")))]
pub async fn family(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    PathIds(ids): PathIds<(SchoolId, PersonId, i32)>,
    QueryOf(query): QueryOf<AsOf>,
) -> Result<Response, ApiError> {
    let (school, student, year) = ids;
    crate::school::known_student(&caller, student)?;
    let (upto, day) = position(&state, school, &query).await?;
    let scratch = replay(
        &state,
        school,
        upto,
        &registro_projection_family::FamilyView,
    )
    .await?;
    let directory = directory_at(&state, school, upto).await?;
    let (past_state, past_caller) = past(&state, &caller, &scratch, (directory, day));
    let response = crate::family::overview(
        State(past_state),
        Extension(past_caller),
        PathIds((school, student, year)),
        QueryOf(crate::family::OverviewQuery::default()),
        HeaderMap::new(),
    )
    .await?;
    record_read(&state, &caller, [student], "history.family").await?;
    Ok(as_of(response.into_response(), upto))
}

/// A class's scrutinio of a term (the scrutiny report) as it stood at a past `school_seq` or at
/// the end of a past day, rebuilt from the events up to then; the header `x-registro-as-of`
/// gives the last event included. For the principal and the auditors; recorded in the access
/// log.
#[utoipa::path(get,
    path = "/schools/{school}/history/classes/{class}/years/{year}/scrutini/{term}",
    tag = "audit",
    params(("school" = Uuid, Path, description = "The school"),
        ("class" = Uuid, Path, description = "The class"),
        ("year" = i32, Path, description = "The year the school year starts in"),
        ("term" = u8, Path, description = "The term's number, from 1"), AsOf),
    responses((status = 200, description = "The scrutinio as it stood",
            body = crate::scrutiny::ScrutinyView),
        (status = 400, description = "Not exactly one of `school_seq` and `date`", body = Problem,
            content_type = "application/problem+json"),
        (status = 404, description = "The class or its scrutinio did not exist then",
            body = Problem, content_type = "application/problem+json")))]
pub async fn scrutiny(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    PathIds(ids): PathIds<(SchoolId, ClassId, i32, u8)>,
    QueryOf(query): QueryOf<AsOf>,
) -> Result<Response, ApiError> {
    let (school, class, year, term) = ids;
    let (upto, day) = position(&state, school, &query).await?;
    let scratch = replay(
        &state,
        school,
        upto,
        &registro_projection_scrutiny::ScrutinyReport,
    )
    .await?;
    let directory = directory_at(&state, school, upto).await?;
    let students = directory
        .class(class)
        .map(|c| c.students.clone())
        .unwrap_or_default();
    let (past_state, past_caller) = past(&state, &caller, &scratch, (directory, day));
    let view = crate::scrutiny::view(
        State(past_state),
        Extension(past_caller),
        PathIds((school, class, year, term)),
        QueryOf(crate::scrutiny::ViewQuery::default()),
    )
    .await?;
    record_read(&state, &caller, students, "history.scrutiny").await?;
    Ok(as_of(view.into_response(), upto))
}
