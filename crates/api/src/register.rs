//! The register over HTTP: the school calendar (a school year's terms) and the classes'
//! timetables; a student's grades (given, corrected, annulled; read with their averages per
//! subject and term, `rules.md` section 2) and attendance (absences, late entries, early exits
//! with the hours missed; read against the annual limit, `rules.md` section 1).

// utoipa's expansion of `params(...)` names the parameter types by path.
#![allow(unused_qualifications)]

use std::collections::{BTreeMap, BTreeSet};

use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse as _, Response};
use registro_domain::calendar::{SchoolYear, Term};
use registro_domain::directory::{Directory, DirectoryCommand};
use registro_domain::grade::{GradeKind, GradeValue, Judgement, PrimaryLevel, Weight};
use registro_domain::record::{self, Mark, Record, RecordCommand, RecordError, RecordEvent};
use registro_domain::{GradeId, PersonId, SchoolId};
use registro_store::{CommandMetadata, RecordedEvent, StreamId};
use serde::{Deserialize, Serialize};
use time::Date;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::AppState;
use crate::auth::Caller;
use crate::cache::{Fold, Snapshot, fold_stream};
use crate::command::{self, Decision, new_events};
use crate::error::{ApiError, LineError};
use crate::json::{Json, PathIds};
use crate::school::{
    Written, command_response, idempotency_key, known_student, new_id, record_read,
};
use registro_domain::StoredEvent as _;

impl Fold for Record {
    fn apply(&mut self, event: &RecordedEvent) -> anyhow::Result<()> {
        let e = RecordEvent::from_stored(event.event_type.as_str(), &event.data)?;
        record::evolve(self, &e);
        Ok(())
    }
}

impl From<command::CommandError<RecordError>> for ApiError {
    fn from(e: command::CommandError<RecordError>) -> Self {
        match e {
            command::CommandError::Store(e) => e.into(),
            command::CommandError::Refused(e) => {
                let detail = e.to_string();
                match e {
                    RecordError::NotYourSubject
                    | RecordError::NotThePrincipal
                    | RecordError::OwnChild => ApiError::Forbidden(detail),
                    RecordError::UnknownGrade
                    | RecordError::UnknownEntry
                    | RecordError::UnknownNote => ApiError::NotFoundDetail(detail),
                    RecordError::NoteAnnulled | RecordError::NoteExists => {
                        ApiError::Conflict(detail)
                    }
                    RecordError::Closed(_)
                    | RecordError::GradeExists
                    | RecordError::Annulled
                    | RecordError::AlreadyRecorded
                    | RecordError::Cancelled => ApiError::Conflict(detail),
                    RecordError::NotEnrolled
                    | RecordError::OutsideYear(_)
                    | RecordError::SameMark
                    | RecordError::Text
                    | RecordError::NoTimetable
                    | RecordError::NoHoursMissed
                    | RecordError::NotInTerm
                    | RecordError::Holiday
                    | RecordError::FutureDate
                    | RecordError::ScaleMismatch => ApiError::Unprocessable(detail),
                    RecordError::Justification(j) => {
                        use registro_domain::justification::JustificationError as J;
                        match j {
                            J::MinorCannotJustify
                            | J::AdultJustifiesOwn
                            | J::GuardiansJustifyAdults => ApiError::Forbidden(detail),
                            J::AlreadyDecided | J::NothingToDecide => ApiError::Conflict(detail),
                            J::ReasonRequired => ApiError::Unprocessable(detail),
                        }
                    }
                }
            }
        }
    }
}

/// Today in Italy (Central European Time and its summer time, by the EU rule); a fixed date
/// when the API was built with one (tests).
pub(crate) fn italian_today(state: &AppState) -> Date {
    state
        .today
        .unwrap_or_else(|| registro_domain::calendar::italian_date(time::OffsetDateTime::now_utc()))
}

/// A school year from the path (the year it starts in); anything else names nothing.
pub(crate) fn school_year(year: i32) -> Result<SchoolYear, ApiError> {
    if (2000..=2200).contains(&year) {
        Ok(SchoolYear::starting(year))
    } else {
        Err(ApiError::NotFound)
    }
}

/// A term of a school year.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TermBody {
    /// Its name, e.g. "trimestre", "pentamestre".
    #[schema(example = "trimestre")]
    pub name: String,
    /// Its first day.
    #[schema(value_type = String, format = Date, example = "2025-09-15")]
    #[serde(with = "registro_domain::iso_date")]
    pub start: Date,
    /// Its last day.
    #[schema(value_type = String, format = Date, example = "2025-12-20")]
    #[serde(with = "registro_domain::iso_date")]
    pub end: Date,
}

/// A school year's terms.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct YearPlan {
    /// The terms, in order, inside the year (1 September to 31 August), not overlapping.
    pub terms: Vec<TermBody>,
    /// The days without lessons (national and regional holidays, the school's closures), in
    /// the year: no absence is recorded and no lesson signed on them, and they are not school
    /// days for a justification's term.
    #[serde(default, with = "registro_domain::iso_dates")]
    #[schema(value_type = Vec<String>, example = json!(["2025-11-01", "2025-12-08"]))]
    pub holidays: Vec<Date>,
}

/// Sets a school year's terms (periodi); setting them again replaces them.
#[utoipa::path(put, path = "/schools/{school}/years/{year}", tag = "calendar",
    params(("school" = Uuid, Path, description = "The school"),
        ("year" = i32, Path, description = "The year the school year starts in: 2025 is 2025/26")),
    request_body = YearPlan,
    responses((status = 200, description = "Planned", body = Written)))]
pub async fn plan_year(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    PathIds(ids): PathIds<(SchoolId, i32)>,
    headers: HeaderMap,
    Json(body): Json<YearPlan>,
) -> Result<Response, ApiError> {
    let (_, year) = ids;
    let cmd = DirectoryCommand::PlanSchoolYear {
        year: school_year(year)?,
        terms: body
            .terms
            .into_iter()
            .map(|t| Term {
                name: t.name,
                start: t.start,
                end: t.end,
            })
            .collect(),
        holidays: body.holidays,
    };
    crate::school::command(&state, &caller, &headers, cmd, StatusCode::OK, None).await
}

/// The school's rules for justifications (`rules.md` section 5).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JustificationRules {
    /// Whether a student of 18 or over justifies their own absences, late entries and early
    /// exits (and their guardians do not). Default true.
    #[schema(example = true)]
    pub adults_justify_themselves: bool,
    /// Within how many school days a justification is due, 1 to 30. Default 5.
    #[schema(example = 5)]
    pub due_within_school_days: u8,
}

/// Sets the school's rules for justifications, from now on: the principal or the office.
#[utoipa::path(put, path = "/schools/{school}/settings/justifications", tag = "calendar",
    params(("school" = Uuid, Path, description = "The school")),
    request_body = JustificationRules,
    responses((status = 200, description = "Set", body = Written)))]
pub async fn set_justification_rules(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Json(body): Json<JustificationRules>,
) -> Result<Response, ApiError> {
    let cmd = DirectoryCommand::SetJustificationSettings {
        settings: registro_domain::justification::JustificationSettings {
            adults_justify_themselves: body.adults_justify_themselves,
            due_within_school_days: body.due_within_school_days,
        },
    };
    crate::school::command(&state, &caller, &headers, cmd, StatusCode::OK, None).await
}

/// The school's rules for justifications: every member may read them.
#[utoipa::path(get, path = "/schools/{school}/settings/justifications", tag = "calendar",
    params(("school" = Uuid, Path, description = "The school")),
    responses((status = 200, description = "The rules (the defaults until set)",
        body = JustificationRules)))]
pub async fn justification_rules(Extension(caller): Extension<Caller>) -> Json<JustificationRules> {
    let s = caller.directory.justification_settings();
    Json(JustificationRules {
        adults_justify_themselves: s.adults_justify_themselves,
        due_within_school_days: s.due_within_school_days,
    })
}

/// A school year's terms.
#[utoipa::path(get, path = "/schools/{school}/years/{year}", tag = "calendar",
    params(("school" = Uuid, Path, description = "The school"),
        ("year" = i32, Path, description = "The year the school year starts in")),
    responses((status = 200, description = "The terms", body = YearPlan)))]
pub async fn year_plan(
    Extension(caller): Extension<Caller>,
    PathIds(ids): PathIds<(SchoolId, i32)>,
) -> Result<Json<YearPlan>, ApiError> {
    let (_, year) = ids;
    let terms = caller
        .directory
        .terms(school_year(year)?)
        .ok_or(ApiError::NotFound)?;
    Ok(Json(YearPlan {
        terms: terms
            .terms()
            .iter()
            .map(|t| TermBody {
                name: t.name.clone(),
                start: t.start,
                end: t.end,
            })
            .collect(),
        holidays: terms.holidays().collect(),
    }))
}

/// The scale a mark is written on, and a subject's grades are on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Scale {
    /// 1 to 10 with +, -, ½ or decimals (`7+`, `6½`, `6-`, `7.5`).
    #[default]
    Numeric,
    /// Religion and its alternative: insufficiente ... ottimo.
    Judgement,
    /// Primary school: non sufficiente ... ottimo.
    Level,
}

impl From<registro_domain::grade::Scale> for Scale {
    fn from(s: registro_domain::grade::Scale) -> Self {
        use registro_domain::grade::Scale as S;
        match s {
            S::Numeric => Self::Numeric,
            S::Judgement => Self::Judgement,
            S::Level => Self::Level,
        }
    }
}

impl From<Scale> for registro_domain::grade::Scale {
    fn from(s: Scale) -> Self {
        match s {
            Scale::Numeric => Self::Numeric,
            Scale::Judgement => Self::Judgement,
            Scale::Level => Self::Level,
        }
    }
}

/// The scale a mark for `subject` is written on: the one given, else the subject's.
fn scale_of(caller: &Caller, given: Option<Scale>, subject: &str) -> Scale {
    given
        .or_else(|| {
            caller
                .directory
                .subject_scale(subject.trim())
                .map(Scale::from)
        })
        .unwrap_or_default()
}

/// A subject to define.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubjectBody {
    /// Its name, as the register shows it.
    #[schema(example = "Religione cattolica")]
    pub name: String,
    /// The scale its grades are on: numeric (1 to 10, averaged), judgement (religion and its
    /// alternative) or level (primary school).
    pub scale: Scale,
}

/// Defines a subject (materia) of the school with the scale of its grades: the principal or
/// the office. Teachers are assigned, timetables set and exemptions granted only for defined
/// subjects.
#[utoipa::path(post, path = "/schools/{school}/subjects", tag = "directory",
    params(("school" = Uuid, Path, description = "The school")),
    request_body = SubjectBody,
    responses(
        (status = 201, description = "Defined", body = Written),
        (status = 409, description = "Defined already",
            body = crate::Problem, content_type = "application/problem+json"),
    ))]
pub async fn define_subject(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Json(body): Json<SubjectBody>,
) -> Result<Response, ApiError> {
    let cmd = DirectoryCommand::DefineSubject {
        subject: body.name,
        scale: body.scale.into(),
    };
    crate::school::command(&state, &caller, &headers, cmd, StatusCode::CREATED, None).await
}

/// The school's subjects, by name: every member may read them.
#[utoipa::path(get, path = "/schools/{school}/subjects", tag = "directory",
    params(("school" = Uuid, Path, description = "The school")),
    responses((status = 200, description = "The subjects", body = Vec<SubjectBody>)))]
pub async fn subjects(Extension(caller): Extension<Caller>) -> Json<Vec<SubjectBody>> {
    Json(
        caller
            .directory
            .subjects()
            .map(|(name, scale)| SubjectBody {
                name: name.to_owned(),
                scale: scale.into(),
            })
            .collect(),
    )
}

/// A grade to give.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GiveGrade {
    /// The subject, as assigned to the teacher in the student's class.
    #[schema(example = "Matematica")]
    pub subject: String,
    /// written, oral, practical or graphic.
    #[schema(value_type = String, example = "written")]
    pub kind: GradeKind,
    /// The scale (default: the subject's).
    #[serde(default)]
    pub scale: Option<Scale>,
    /// The mark as written: `7+`, `6½`, `distinto`, `non sufficiente`.
    #[schema(example = "7+")]
    pub mark: String,
    /// Its weight in the average as written (default `1`; `0.5`, `2`...).
    #[schema(example = "1")]
    pub weight: Option<String>,
    /// Whether it counts in the average (default true).
    #[serde(default = "yes")]
    #[schema(example = true)]
    pub counted: bool,
    /// What it is for.
    #[serde(default)]
    #[schema(example = "Verifica sulle equazioni")]
    pub description: String,
    /// The day of the test, in the school year of the path.
    #[schema(value_type = String, format = Date, example = "2025-10-06")]
    #[serde(with = "registro_domain::iso_date")]
    pub date: Date,
}

const fn yes() -> bool {
    true
}

/// A correction of a grade's value.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CorrectGrade {
    /// The scale of the right value (default numeric).
    #[serde(default)]
    pub scale: Scale,
    /// The right value, as written.
    #[schema(example = "6½")]
    pub mark: String,
    /// Why (kept in the history).
    #[schema(example = "errore di trascrizione")]
    pub reason: String,
}

/// An annulment.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AnnulGrade {
    /// Why (kept in the history).
    #[schema(example = "prova da ripetere")]
    pub reason: String,
}

pub(crate) fn mark(scale: Scale, text: &str) -> Result<Mark, ApiError> {
    let parsed = match scale {
        Scale::Numeric => GradeValue::parse(text).map(Mark::Numeric),
        Scale::Judgement => text.parse::<Judgement>().map(Mark::Judgement),
        Scale::Level => text.parse::<PrimaryLevel>().map(Mark::Level),
    };
    parsed.map_err(|e| ApiError::Unprocessable(format!("mark: {e}")))
}

/// Runs a record command for the caller on the student's record of `year`.
async fn record_command(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    student: PersonId,
    year: SchoolYear,
    cmd: RecordCommand,
    id: Option<Uuid>,
) -> Result<Response, ApiError> {
    let key = idempotency_key(headers, caller)?;
    let outcome = record_command_keyed(state, caller, key, student, year, cmd).await?;
    Ok(command_response(StatusCode::CREATED, &outcome, id))
}

/// Runs a record command for the caller with an idempotency key already scoped.
async fn record_command_keyed(
    state: &AppState,
    caller: &Caller,
    key: Option<registro_store::IdempotencyKey>,
    student: PersonId,
    year: SchoolYear,
    cmd: RecordCommand,
) -> Result<registro_store::AppendOutcome, ApiError> {
    known_student(caller, student)?;
    let stream = StreamId::parse(record::stream(student, year))?;
    let (teacher, as_principal) = (
        caller.person,
        caller.role == registro_domain::Role::Principal,
    );
    // The terms whose scrutinio is closed for the student's class are locked (rule 6): read
    // with the directory each attempt decides with, and checked at the append.
    let school = caller.school;
    let reads = |directory: std::sync::Arc<Directory>| async move {
        crate::scrutiny::closed_terms(state, school, &directory, student, year).await
    };
    // A justification's reason is sealed with the key of the student's record for the year
    // (crypto-shredding, one year at a time).
    let subject = record::sealing_subject(student, year);
    let decide =
        |current: &Record, directory: &Directory, today: Date, closed: &BTreeSet<usize>| {
            let exempt_subjects = directory.exempt_subjects(student);
            let ctx = record::Context {
                student,
                year,
                teacher,
                today,
                as_principal,
                exempt_subjects: &exempt_subjects,
                directory,
                closed_terms: closed,
            };
            let events =
                record::decide(current, &cmd, &ctx).map_err(command::CommandError::Refused)?;
            Ok(
                new_events(events.iter().map(|e| (e.type_name(), e.data())))?
                    .into_iter()
                    .zip(&events)
                    .map(|(new, e)| match e.sealed_field() {
                        Some(pointer) => new.seal(pointer, subject),
                        None => new,
                    })
                    .collect(),
            )
        };
    Ok(stream_command_with(
        state,
        caller,
        key,
        &stream,
        &cmd.digest_form(),
        reads,
        decide,
    )
    .await?)
}

/// Runs a command on one stream for the caller: folds the stream into `S`, takes the school's
/// directory and today's date, lets `decide` turn them into events, and goes through the
/// executor (replay, append at the folded version, decide again on a conflict).
pub(crate) async fn stream_command<S, E, D>(
    state: &AppState,
    caller: &Caller,
    key: Option<registro_store::IdempotencyKey>,
    stream: &StreamId,
    digest: &serde_json::Value,
    decide: D,
) -> Result<registro_store::AppendOutcome, command::CommandError<E>>
where
    S: Fold,
    D: Fn(&S, &Directory, Date) -> Result<Vec<registro_store::NewEvent>, command::CommandError<E>>,
{
    let no_reads = |_: std::sync::Arc<Directory>| std::future::ready(Ok(((), Vec::new())));
    let decide = |current: &S, directory: &Directory, today: Date, (): &()| {
        decide(current, directory, today)
    };
    stream_command_with(state, caller, key, stream, digest, no_reads, decide).await
}

/// As [`stream_command`], for a decision that also reads other streams: `reads` takes them
/// from the directory the attempt decides with and gives the facts with the streams' versions.
/// Every attempt reads them again, and the append is checked against those versions and the
/// directory's ([ADR 0026](../../../docs/decisions/0026-stream-guards.md)): a fact that moved
/// meanwhile makes the command decided again on what it reads now.
pub(crate) async fn stream_command_with<S, E, T, R, F, D>(
    state: &AppState,
    caller: &Caller,
    key: Option<registro_store::IdempotencyKey>,
    stream: &StreamId,
    digest: &serde_json::Value,
    reads: R,
    decide: D,
) -> Result<registro_store::AppendOutcome, command::CommandError<E>>
where
    S: Fold,
    R: Fn(std::sync::Arc<Directory>) -> F,
    F: Future<Output = Result<(T, Vec<registro_store::StreamGuard>), registro_store::StoreError>>,
    D: Fn(
        &S,
        &Directory,
        Date,
        &T,
    ) -> Result<Vec<registro_store::NewEvent>, command::CommandError<E>>,
{
    let store = state.store.as_ref();
    let (directory, streams, school) = (&state.directory, &state.streams, caller.school);
    let today = italian_today(state);
    let (decide, reads) = (&decide, &reads);
    let attempt = move || async move {
        let Snapshot {
            version,
            state: current,
        } = streams.current::<S>(store, school, stream).await?;
        let directory = directory.current(store, school).await?;
        let (facts, mut guards) = reads(std::sync::Arc::clone(&directory.state)).await?;
        guards.push(crate::directory::guard(directory.version));
        Ok(Decision {
            version,
            guards,
            events: decide(&current, &directory.state, today, &facts)?,
        })
    };
    let metadata = CommandMetadata::by(caller.person, caller.role);
    command::execute(store, school, stream, metadata, digest, key, attempt).await
}

/// Gives a grade (voto). Only a teacher of the subject in the student's class; never dated in
/// a term whose scrutinio is closed.
#[utoipa::path(post, path = "/schools/{school}/students/{student}/years/{year}/grades",
    tag = "grades",
    params(("school" = Uuid, Path, description = "The school"),
        ("student" = Uuid, Path, description = "The student"),
        ("year" = i32, Path, description = "The year the school year starts in")),
    request_body = GiveGrade,
    responses(
        (status = 201, description = "Given; `id` is the grade's", body = Written),
        (status = 409, description = "The term is closed",
            body = crate::Problem, content_type = "application/problem+json"),
    ))]
pub async fn give_grade(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    PathIds(ids): PathIds<(SchoolId, PersonId, i32)>,
    headers: HeaderMap,
    Json(body): Json<GiveGrade>,
) -> Result<Response, ApiError> {
    let (_, student, year) = ids;
    let year = school_year(year)?;
    let weight = match &body.weight {
        Some(w) => Weight::parse(w).map_err(|e| ApiError::Unprocessable(format!("weight: {e}")))?,
        None => Weight::ONE,
    };
    let grade = GradeId::from_uuid(new_id(&caller, &headers, "grade")?);
    let cmd = RecordCommand::RecordGrade {
        grade,
        subject: body.subject.trim().to_owned(),
        kind: body.kind,
        mark: mark(scale_of(&caller, body.scale, &body.subject), &body.mark)?,
        weight,
        counted: body.counted,
        description: body.description,
        date: body.date,
    };
    record_command(
        &state,
        &caller,
        &headers,
        student,
        year,
        cmd,
        Some(grade.into()),
    )
    .await
}

/// Corrects a grade's value; the history keeps both, with the reason.
#[utoipa::path(post,
    path = "/schools/{school}/students/{student}/years/{year}/grades/{grade}/corrections",
    tag = "grades",
    params(("school" = Uuid, Path, description = "The school"),
        ("student" = Uuid, Path, description = "The student"),
        ("year" = i32, Path, description = "The year the school year starts in"),
        ("grade" = Uuid, Path, description = "The grade")),
    request_body = CorrectGrade,
    responses((status = 201, description = "Corrected", body = Written)))]
pub async fn correct_grade(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    PathIds(ids): PathIds<(SchoolId, PersonId, i32, GradeId)>,
    headers: HeaderMap,
    Json(body): Json<CorrectGrade>,
) -> Result<Response, ApiError> {
    let (_, student, year, grade) = ids;
    let cmd = RecordCommand::CorrectGrade {
        grade,
        mark: mark(body.scale, &body.mark)?,
        reason: body.reason,
    };
    record_command(
        &state,
        &caller,
        &headers,
        student,
        school_year(year)?,
        cmd,
        None,
    )
    .await
}

/// Annuls a grade; the history keeps it, with the reason.
#[utoipa::path(post,
    path = "/schools/{school}/students/{student}/years/{year}/grades/{grade}/annulment",
    tag = "grades",
    params(("school" = Uuid, Path, description = "The school"),
        ("student" = Uuid, Path, description = "The student"),
        ("year" = i32, Path, description = "The year the school year starts in"),
        ("grade" = Uuid, Path, description = "The grade")),
    request_body = AnnulGrade,
    responses((status = 201, description = "Annulled", body = Written)))]
pub async fn annul_grade(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    PathIds(ids): PathIds<(SchoolId, PersonId, i32, GradeId)>,
    headers: HeaderMap,
    Json(body): Json<AnnulGrade>,
) -> Result<Response, ApiError> {
    let (_, student, year, grade) = ids;
    let cmd = RecordCommand::AnnulGrade {
        grade,
        reason: body.reason,
    };
    record_command(
        &state,
        &caller,
        &headers,
        student,
        school_year(year)?,
        cmd,
        None,
    )
    .await
}

/// A grade as it stands.
#[derive(Debug, Serialize, ToSchema)]
pub struct GradeView {
    /// The grade's id.
    #[schema(example = "0199b3a4-7c1e-7d2a-9f00-3b5c2e8d4a10")]
    pub id: Uuid,
    /// The subject.
    #[schema(example = "Matematica")]
    pub subject: String,
    /// written, oral, practical, graphic.
    #[schema(example = "written", value_type = String)]
    pub kind: GradeKind,
    /// numeric, judgement or level.
    #[schema(example = "numeric")]
    pub scale: &'static str,
    /// The current value as written (`7+`, `distinto`).
    #[schema(example = "7+")]
    pub mark: String,
    /// For numeric grades, the value in hundredths (725 is 7.25).
    #[schema(example = 725)]
    pub hundredths: Option<u16>,
    /// The weight as written.
    #[schema(example = "1")]
    pub weight: String,
    /// Whether it counts in the average.
    #[schema(example = true)]
    pub counted: bool,
    /// What it was for.
    #[schema(example = "Verifica sulle equazioni")]
    pub description: String,
    /// The day of the test.
    #[schema(example = "2025-10-06", value_type = String, format = Date)]
    #[serde(with = "registro_domain::iso_date")]
    pub date: Date,
    /// How many times its value was corrected.
    #[schema(example = json!([]))]
    pub corrections: u32,
    /// Why it was annulled, when it was (it then counts in no average).
    #[schema(example = json!(null))]
    pub annulled: Option<String>,
}

/// The average of a subject in a term.
#[derive(Debug, Serialize, ToSchema)]
pub struct AverageView {
    /// The subject.
    #[schema(example = "Matematica")]
    pub subject: String,
    /// The term ("anno" when the year's terms are not planned).
    #[schema(example = "trimestre")]
    pub term: String,
    /// With two decimals, as shown: `6.53`.
    #[schema(example = "6.50")]
    pub average: String,
    /// In hundredths.
    #[schema(example = 650)]
    pub hundredths: u16,
    /// The whole grade a proposal is pre-filled with (the average rounded half up).
    #[schema(example = 7)]
    pub proposal: u8,
}

/// A student's grades for a school year.
#[derive(Debug, Serialize, ToSchema)]
pub struct GradesView {
    /// The school year, `2025/26`.
    #[schema(example = "2025/26")]
    pub year: String,
    /// The grades, oldest first.
    pub grades: Vec<GradeView>,
    /// The weighted averages of the counted numeric grades, per subject and term.
    pub averages: Vec<AverageView>,
}

/// A student's grades for a school year, with the averages per subject and term. A read by the
/// principal or a teacher is recorded in the access log.
#[utoipa::path(get, path = "/schools/{school}/students/{student}/years/{year}/grades",
    tag = "grades",
    params(("school" = Uuid, Path, description = "The school"),
        ("student" = Uuid, Path, description = "The student"),
        ("year" = i32, Path, description = "The year the school year starts in")),
    responses((status = 200, description = "The grades", body = GradesView)))]
pub async fn student_grades(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    PathIds(ids): PathIds<(SchoolId, PersonId, i32)>,
) -> Result<Json<GradesView>, ApiError> {
    let (_, student, year) = ids;
    let year = school_year(year)?;
    let record = student_record(&state, &caller, student, year).await?;
    let grades = record
        .grades()
        .map(|(id, g)| {
            let (scale, hundredths) = match g.mark {
                Mark::Numeric(v) => ("numeric", Some(v.hundredths())),
                Mark::Judgement(_) => ("judgement", None),
                Mark::Level(_) => ("level", None),
            };
            GradeView {
                id: id.into(),
                subject: g.subject.clone(),
                kind: g.kind,
                scale,
                mark: g.mark.to_string(),
                hundredths,
                weight: g.weight.to_string(),
                counted: g.counted,
                description: g.description.clone(),
                date: g.date,
                corrections: g.corrections,
                annulled: g.annulled.clone(),
            }
        })
        .collect();
    let periods = periods(&caller, year);
    let subjects: BTreeMap<&str, ()> = record
        .grades()
        .map(|(_, g)| (g.subject.as_str(), ()))
        .collect();
    let mut averages = Vec::new();
    for (term, from, to) in &periods {
        for subject in subjects.keys() {
            if let Some(avg) = record.average(subject, *from, *to) {
                averages.push(AverageView {
                    subject: (*subject).to_owned(),
                    term: term.clone(),
                    average: avg.to_string(),
                    hundredths: avg.hundredths(),
                    proposal: avg.proposal(),
                });
            }
        }
    }
    record_read(&state, &caller, [student], "student.grades").await?;
    Ok(Json(GradesView {
        year: year.to_string(),
        grades,
        averages,
    }))
}

/// The terms of the year as (name, first day, last day); the whole year, named `anno`, when
/// none are planned.
pub(crate) fn periods(caller: &Caller, year: SchoolYear) -> Vec<(String, Date, Date)> {
    caller.directory.terms(year).map_or_else(
        || vec![("anno".to_owned(), year.first_day(), year.last_day())],
        |terms| {
            terms
                .terms()
                .iter()
                .map(|t| (t.name.clone(), t.start, t.end))
                .collect()
        },
    )
}

/// The name of a term of the year (its number from 1), as planned; `periodo <n>` otherwise.
pub(crate) fn term_name(caller: &Caller, year: SchoolYear, term: u8) -> String {
    periods(caller, year)
        .into_iter()
        .nth(usize::from(term).saturating_sub(1))
        .map_or_else(|| format!("periodo {term}"), |(n, _, _)| n)
}

/// One weekly lesson hour.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HourBody {
    /// monday to sunday.
    #[schema(value_type = String, example = "monday")]
    #[serde(with = "registro_domain::weekday_name")]
    pub weekday: time::Weekday,
    /// Its number in the day, from 1.
    #[schema(example = 1)]
    pub number: u8,
    /// When it starts, HH:MM.
    #[schema(value_type = String, example = "08:00")]
    #[serde(with = "registro_domain::hour_minute")]
    pub start: time::Time,
    /// When it ends, HH:MM.
    #[schema(value_type = String, example = "09:00")]
    #[serde(with = "registro_domain::hour_minute")]
    pub end: time::Time,
    /// The subject.
    #[schema(example = "Matematica")]
    pub subject: String,
    /// The teacher, when known.
    #[schema(value_type = Option<Uuid>, example = "0199b3a4-7c1e-7d2a-9f00-3b5c2e8d4a10")]
    #[serde(default)]
    pub teacher: Option<PersonId>,
}

/// A class's weekly timetable.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TimetableBody {
    /// The weekly lesson hours.
    pub hours: Vec<HourBody>,
}

/// Sets a class's weekly timetable (orario delle lezioni), replacing the one it had. The
/// hours students miss are derived from it.
#[utoipa::path(put, path = "/schools/{school}/classes/{class}/timetable", tag = "calendar",
    params(("school" = Uuid, Path, description = "The school"),
        ("class" = Uuid, Path, description = "The class")),
    request_body = TimetableBody,
    responses((status = 200, description = "Set", body = Written)))]
pub async fn set_timetable(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    PathIds(ids): PathIds<(SchoolId, registro_domain::ClassId)>,
    headers: HeaderMap,
    Json(body): Json<TimetableBody>,
) -> Result<Response, ApiError> {
    let (_, class) = ids;
    let cmd = DirectoryCommand::SetTimetable {
        class,
        hours: body
            .hours
            .into_iter()
            .map(|h| registro_domain::timetable::LessonHour {
                weekday: h.weekday,
                number: h.number,
                start: h.start,
                end: h.end,
                subject: h.subject.trim().to_owned(),
                teacher: h.teacher,
            })
            .collect(),
    };
    crate::school::command(&state, &caller, &headers, cmd, StatusCode::OK, None).await
}

/// A class's weekly timetable.
#[utoipa::path(get, path = "/schools/{school}/classes/{class}/timetable", tag = "calendar",
    params(("school" = Uuid, Path, description = "The school"),
        ("class" = Uuid, Path, description = "The class")),
    responses((status = 200, description = "The timetable", body = TimetableBody)))]
pub async fn timetable(
    Extension(caller): Extension<Caller>,
    PathIds(ids): PathIds<(SchoolId, registro_domain::ClassId)>,
) -> Result<Json<TimetableBody>, ApiError> {
    let (_, class) = ids;
    let timetable = caller
        .directory
        .timetable(class)
        .ok_or(ApiError::NotFound)?;
    Ok(Json(TimetableBody {
        hours: timetable
            .hours()
            .iter()
            .map(|h| HourBody {
                weekday: h.weekday,
                number: h.number,
                start: h.start,
                end: h.end,
                subject: h.subject.clone(),
                teacher: h.teacher,
            })
            .collect(),
    }))
}

/// What was missed.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AttendanceKind {
    /// Absent the whole day (assenza).
    Absence,
    /// Came in late, at `at` (ritardo, entrata posticipata).
    LateEntry,
    /// Left early, at `at` (uscita anticipata).
    EarlyExit,
}

/// An absence, late entry or early exit to record.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordAttendance {
    /// The day, in the school year of the path.
    #[schema(value_type = String, format = Date, example = "2025-10-06")]
    #[serde(with = "registro_domain::iso_date")]
    pub date: Date,
    /// absence, late_entry or early_exit.
    pub kind: AttendanceKind,
    /// For a late entry or an early exit, the time, HH:MM.
    #[schema(value_type = Option<String>, example = "09:10")]
    #[serde(default, with = "registro_domain::hour_minute::option")]
    pub at: Option<time::Time>,
}

/// A cancellation.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelAttendance {
    /// Why (kept in the history).
    #[schema(example = "registrata per errore")]
    pub reason: String,
}

/// Records an absence, a late entry or an early exit; the lesson hours missed come from the
/// class's timetable. Only a teacher of the student's class.
#[utoipa::path(post, path = "/schools/{school}/students/{student}/years/{year}/attendance",
    tag = "attendance",
    params(("school" = Uuid, Path, description = "The school"),
        ("student" = Uuid, Path, description = "The student"),
        ("year" = i32, Path, description = "The year the school year starts in")),
    request_body = RecordAttendance,
    responses(
        (status = 201, description = "Recorded; `id` is the entry's", body = Written),
        (status = 409, description = "The day already has such an entry, or its term is closed",
            body = crate::Problem, content_type = "application/problem+json"),
    ))]
pub async fn record_attendance(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    PathIds(ids): PathIds<(SchoolId, PersonId, i32)>,
    headers: HeaderMap,
    Json(body): Json<RecordAttendance>,
) -> Result<Response, ApiError> {
    use registro_domain::timetable::Missed;
    let (_, student, year) = ids;
    let missed = match (body.kind, body.at) {
        (AttendanceKind::Absence, None) => Missed::WholeDay,
        (AttendanceKind::LateEntry, Some(at)) => Missed::LateEntry(at),
        (AttendanceKind::EarlyExit, Some(at)) => Missed::EarlyExit(at),
        (AttendanceKind::Absence, Some(_)) => {
            return Err(ApiError::Unprocessable(
                "at: a whole-day absence has no time".into(),
            ));
        }
        (_, None) => {
            return Err(ApiError::Unprocessable(
                "at: a late entry or an early exit needs the time (HH:MM)".into(),
            ));
        }
    };
    let entry = registro_domain::AttendanceId::from_uuid(new_id(&caller, &headers, "attendance")?);
    let cmd = RecordCommand::RecordAttendance {
        entry,
        date: body.date,
        missed,
    };
    let year = school_year(year)?;
    record_command(
        &state,
        &caller,
        &headers,
        student,
        year,
        cmd,
        Some(entry.into()),
    )
    .await
}

/// Cancels an attendance entry recorded by mistake; the history keeps it, with the reason.
#[utoipa::path(post,
    path = "/schools/{school}/students/{student}/years/{year}/attendance/{entry}/cancellation",
    tag = "attendance",
    params(("school" = Uuid, Path, description = "The school"),
        ("student" = Uuid, Path, description = "The student"),
        ("year" = i32, Path, description = "The year the school year starts in"),
        ("entry" = Uuid, Path, description = "The entry")),
    request_body = CancelAttendance,
    responses((status = 201, description = "Cancelled", body = Written)))]
pub async fn cancel_attendance(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    PathIds(ids): PathIds<(SchoolId, PersonId, i32, registro_domain::AttendanceId)>,
    headers: HeaderMap,
    Json(body): Json<CancelAttendance>,
) -> Result<Response, ApiError> {
    let (_, student, year, entry) = ids;
    let cmd = RecordCommand::CancelAttendance {
        entry,
        reason: body.reason,
    };
    record_command(
        &state,
        &caller,
        &headers,
        student,
        school_year(year)?,
        cmd,
        None,
    )
    .await
}

/// One attendance entry.
#[derive(Debug, Serialize, ToSchema)]
pub struct AttendanceEntryView {
    /// The entry's id.
    #[schema(example = "0199b3a4-7c1e-7d2a-9f00-3b5c2e8d4a10")]
    pub id: Uuid,
    /// The day.
    #[schema(example = "2025-10-06", value_type = String, format = Date)]
    #[serde(with = "registro_domain::iso_date")]
    pub date: Date,
    /// absence, late_entry or early_exit.
    pub kind: AttendanceKind,
    /// The time of a late entry or early exit.
    #[schema(example = "09:40", value_type = Option<String>)]
    #[serde(with = "registro_domain::hour_minute::option")]
    pub at: Option<time::Time>,
    /// The numbers of the lesson hours missed.
    #[schema(example = json!([1, 2]))]
    pub hours: Vec<u8>,
    /// Why it was cancelled, when it was (its hours then count no more).
    #[schema(example = json!(null))]
    pub cancelled: Option<String>,
    /// Its justification.
    pub justification: JustificationView,
}

/// Where a justification stands.
#[derive(Debug, Serialize, ToSchema)]
pub struct JustificationView {
    /// missing, submitted, accepted or rejected.
    #[schema(example = "submitted", value_type = String)]
    pub state: registro_domain::justification::JustificationState,
    /// Who submitted it: guardian or student.
    #[schema(example = "guardian", value_type = Option<String>)]
    pub justifier: Option<registro_domain::justification::Justifier>,
    /// The reason's category, unless erased (or the reason is an adult student's own and the
    /// reader their guardian).
    #[schema(example = "health", value_type = Option<String>)]
    pub category: Option<registro_domain::justification::ReasonCategory>,
    /// The reason's text, unless erased.
    #[schema(example = "febbre")]
    pub text: Option<String>,
    /// Whether the reason was erased (its retention ended).
    #[schema(example = false)]
    pub erased: bool,
    /// The teacher's note, or why they rejected it.
    #[schema(example = json!(null))]
    pub decision: Option<String>,
    /// The last day it is due: the fifth school day after the entry's day.
    #[schema(example = "2025-10-13", value_type = Option<String>, format = Date)]
    #[serde(with = "registro_domain::iso_date::option")]
    pub due: Option<Date>,
    /// Whether it is overdue (flagged to the class coordinator).
    #[schema(example = false)]
    pub overdue: bool,
}

/// A student's attendance for a school year, against the annual limit.
#[derive(Debug, Serialize, ToSchema)]
pub struct AttendanceView {
    /// The school year, `2025/26`.
    #[schema(example = "2025/26")]
    pub year: String,
    /// The entries, oldest first.
    pub entries: Vec<AttendanceEntryView>,
    /// The lesson hours missed that count toward the limit.
    #[schema(example = 42)]
    pub missed_hours: u32,
    /// The personalised annual hours (weekly hours of the class's timetable times 33), when the
    /// class has a timetable.
    #[schema(example = 1056)]
    pub annual_hours: Option<u32>,
    /// The most hours of absence that keep the year valid (a quarter of the annual hours).
    #[schema(example = 264)]
    pub max_absence_hours: Option<u32>,
    /// Whether the missed hours are over that limit.
    #[schema(example = false)]
    pub over_limit: bool,
    /// The highest warning passed: 10, 15 or 20 (per cent of the annual hours).
    #[schema(example = json!(null))]
    pub warning_percent: Option<u8>,
}

/// A student's absences, late entries and early exits for a school year, with the hours
/// missed against the annual limit (`rules.md` section 1). A read by the principal or a teacher
/// is recorded in the access log.
#[utoipa::path(get, path = "/schools/{school}/students/{student}/years/{year}/attendance",
    tag = "attendance",
    params(("school" = Uuid, Path, description = "The school"),
        ("student" = Uuid, Path, description = "The student"),
        ("year" = i32, Path, description = "The year the school year starts in")),
    responses((status = 200, description = "The attendance", body = AttendanceView)))]
pub async fn student_attendance(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    PathIds(ids): PathIds<(SchoolId, PersonId, i32)>,
) -> Result<Json<AttendanceView>, ApiError> {
    use registro_domain::attendance::{AnnualLimit, counted_hours};
    use registro_domain::timetable::Missed;
    let (_, student, year) = ids;
    let year = school_year(year)?;
    let record = student_record(&state, &caller, student, year).await?;
    let entries = record
        .attendance()
        .map(|(id, a)| {
            let (kind, at) = match a.missed {
                Missed::WholeDay => (AttendanceKind::Absence, None),
                Missed::LateEntry(t) => (AttendanceKind::LateEntry, Some(t)),
                Missed::EarlyExit(t) => (AttendanceKind::EarlyExit, Some(t)),
            };
            let j = &a.justification;
            // An adult student's own reason is theirs: their guardians see that they justified,
            // not why.
            let private = caller.role == registro_domain::Role::Guardian
                && j.justifier == Some(registro_domain::justification::Justifier::Student);
            let (category, text, erased) = match &j.reason {
                Some(record::Sealable::Open(_)) if private => (None, None, false),
                Some(record::Sealable::Open(r)) => (Some(r.category), Some(r.text.clone()), false),
                Some(record::Sealable::Erased { .. }) => (None, None, true),
                None => (None, None, false),
            };
            let decision = match &j.decision {
                Some(record::Sealable::Open(note)) if !private => Some(note.clone()),
                _ => None,
            };
            let (due, overdue) = due_and_overdue(&state, &caller.directory, year, a);
            AttendanceEntryView {
                id: id.into(),
                date: a.date,
                kind,
                at,
                hours: a.hours.clone(),
                cancelled: a.cancelled.clone(),
                justification: JustificationView {
                    state: j.state,
                    justifier: j.justifier,
                    category,
                    text,
                    erased,
                    decision,
                    due,
                    overdue,
                },
            }
        })
        .collect();
    // No exemption from the limit (deroghe) can be recorded yet: the scrutini issue.
    let missed_hours = counted_hours(&record.missed_hours(), &[]);
    let limit = caller
        .directory
        .class_of(student)
        .and_then(|c| caller.directory.timetable(c))
        .map(|t| {
            AnnualLimit::for_weekly_hours(
                t.weekly_hours(&caller.directory.exempt_subjects(student)),
            )
        });
    record_read(&state, &caller, [student], "student.attendance").await?;
    Ok(Json(AttendanceView {
        year: year.to_string(),
        entries,
        missed_hours,
        annual_hours: limit.map(|l| l.annual_hours),
        max_absence_hours: limit.map(|l| l.max_absence_hours),
        over_limit: limit.is_some_and(|l| l.is_over(missed_hours)),
        warning_percent: limit
            .and_then(|l| l.warning(missed_hours))
            .map(|w| w.percent()),
    }))
}

/// The class's school days after `day` (the days its timetable has lessons, inside the year's
/// terms when they are planned), up to two months on: where a justification's due day falls.
/// When an entry's justification is due (its school days counted on the class's timetable and
/// terms, as the school sets them), and whether it is overdue today: not cancelled, not
/// justified, past its day.
fn due_and_overdue(
    state: &AppState,
    directory: &registro_domain::directory::Directory,
    year: SchoolYear,
    a: &record::AttendanceEntry,
) -> (Option<Date>, bool) {
    use registro_domain::justification::{due_on, is_overdue};
    let due = due_on(
        a.date,
        directory.justification_settings().due_within_school_days,
        lesson_days_after(directory, a.class, year, a.date),
    );
    let overdue = a.cancelled.is_none()
        && due.is_some_and(|d| is_overdue(a.justification.state, d, italian_today(state)));
    (due, overdue)
}

/// One overdue justification of a class.
#[derive(Debug, Serialize, ToSchema)]
pub struct OverdueView {
    /// The student.
    #[schema(value_type = Uuid, example = "0199b3a4-7c1e-7d2a-9f00-3b5c2e8d4a10")]
    pub student: PersonId,
    /// The attendance entry.
    #[schema(example = "0199b3a4-7c1e-7d2a-9f00-3b5c2e8d4a10")]
    pub entry: Uuid,
    /// Its day.
    #[schema(example = "2025-10-06", value_type = String, format = Date)]
    #[serde(with = "registro_domain::iso_date")]
    pub date: Date,
    /// absence, late_entry or early_exit.
    pub kind: AttendanceKind,
    /// When its justification was due.
    #[schema(example = "2025-10-13", value_type = String, format = Date)]
    #[serde(with = "registro_domain::iso_date")]
    pub due: Date,
}

/// The class's overdue justifications this school year (rules.md section 5: flagged to the
/// class coordinator), oldest first: for the coordinator and the class's teachers, the
/// principal and the office.
#[utoipa::path(get, path = "/schools/{school}/classes/{class}/overdue-justifications",
    tag = "attendance",
    params(("school" = Uuid, Path, description = "The school"),
        ("class" = Uuid, Path, description = "The class")),
    responses((status = 200, description = "The overdue justifications", body = Vec<OverdueView>)))]
pub async fn overdue_justifications(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    PathIds(ids): PathIds<(SchoolId, registro_domain::ClassId)>,
) -> Result<Json<Vec<OverdueView>>, ApiError> {
    use registro_domain::timetable::Missed;
    let (_, class) = ids;
    let dir = &caller.directory;
    let students = dir.class(class).ok_or(ApiError::NotFound)?.students.clone();
    let year = SchoolYear::of(italian_today(&state));
    let mut overdue = Vec::new();
    for &student in &students {
        let record = student_record(&state, &caller, student, year).await?;
        for (id, a) in record.attendance() {
            if let (Some(due), true) = due_and_overdue(&state, dir, year, a) {
                overdue.push(OverdueView {
                    student,
                    entry: id.into(),
                    date: a.date,
                    kind: match a.missed {
                        Missed::WholeDay => AttendanceKind::Absence,
                        Missed::LateEntry(_) => AttendanceKind::LateEntry,
                        Missed::EarlyExit(_) => AttendanceKind::EarlyExit,
                    },
                    due,
                });
            }
        }
    }
    overdue.sort_by_key(|o| (o.date, o.student));
    record_read(
        &state,
        &caller,
        overdue.iter().map(|o| o.student).collect::<BTreeSet<_>>(),
        "class.overdue_justifications",
    )
    .await?;
    Ok(Json(overdue))
}

fn lesson_days_after(
    directory: &registro_domain::directory::Directory,
    class: registro_domain::ClassId,
    year: SchoolYear,
    day: Date,
) -> Vec<Date> {
    let Some(timetable) = directory.timetable(class) else {
        return Vec::new();
    };
    let terms = directory.terms(year);
    (1..=60)
        .map(|n| day + time::Duration::days(n))
        .filter(|d| timetable.hours_on(d.weekday()).next().is_some())
        .filter(|d| terms.is_none_or(|t| t.term_of(*d).is_some() && !t.is_holiday(*d)))
        .collect()
}

/// A student's record for a year, for a read; 404 for anyone who is not a student.
async fn student_record(
    state: &AppState,
    caller: &Caller,
    student: PersonId,
    year: SchoolYear,
) -> Result<std::sync::Arc<Record>, ApiError> {
    known_student(caller, student)?;
    record_of(state, caller.school, student, year).await
}

/// A student's record for a year as it stands (empty for anyone without one), for a read.
///
/// Folded from the store every time, not from the states kept for commands: a read shows the
/// justifications' sealed reasons, and one whose key was destroyed must read as erased at once,
/// however it was destroyed ([ADR 0033](../../../docs/decisions/0033-stream-state-cache.md)).
pub(crate) async fn record_of(
    state: &AppState,
    school: SchoolId,
    student: PersonId,
    year: SchoolYear,
) -> Result<std::sync::Arc<Record>, ApiError> {
    let stream = StreamId::parse(record::stream(student, year))?;
    let store = state.store.as_ref();
    Ok(
        fold_stream::<Record>(store, school, &stream, Snapshot::default())
            .await?
            .state,
    )
}

/// A student's record of `year` with its stream at the version read, for a decision on
/// another stream that depends on it.
pub(crate) async fn read_record_at(
    state: &AppState,
    school: SchoolId,
    student: PersonId,
    year: SchoolYear,
) -> Result<(std::sync::Arc<Record>, registro_store::StreamGuard), registro_store::StoreError> {
    let stream = StreamId::parse(record::stream(student, year))?;
    let found = state
        .streams
        .current::<Record>(state.store.as_ref(), school, &stream)
        .await?;
    let guard = registro_store::StreamGuard {
        stream,
        version: found.version,
    };
    Ok((found.state, guard))
}

/// A justification.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitJustification {
    /// health, family, sport, transport, religious or other. Stored sealed with the student's
    /// key (health is special-category data), erased when its retention ends.
    #[schema(value_type = String, example = "health")]
    pub category: registro_domain::justification::ReasonCategory,
    /// Free text (optional), sealed likewise.
    #[serde(default)]
    #[schema(example = "visita medica")]
    pub text: String,
}

/// A teacher's decision on a justification.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecideJustification {
    /// Accepted (true) or rejected (false).
    #[schema(example = true)]
    pub accept: bool,
    /// Why; required for a rejection.
    #[serde(default)]
    #[schema(example = "manca la firma")]
    pub reason: String,
}

/// Justifies an absence, late entry or early exit, or changes the justification until a
/// teacher decides: a guardian for a minor; the student, when of age on the day, for
/// themself (`rules.md` section 5).
#[utoipa::path(post,
    path = "/schools/{school}/students/{student}/years/{year}/attendance/{entry}/justification",
    tag = "attendance",
    params(("school" = Uuid, Path, description = "The school"),
        ("student" = Uuid, Path, description = "The student"),
        ("year" = i32, Path, description = "The year the school year starts in"),
        ("entry" = Uuid, Path, description = "The attendance entry")),
    request_body = SubmitJustification,
    responses(
        (status = 201, description = "Submitted", body = Written),
        (status = 409, description = "A teacher has already accepted it",
            body = crate::Problem, content_type = "application/problem+json"),
    ))]
pub async fn submit_justification(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    PathIds(ids): PathIds<(SchoolId, PersonId, i32, registro_domain::AttendanceId)>,
    headers: HeaderMap,
    Json(body): Json<SubmitJustification>,
) -> Result<Response, ApiError> {
    use registro_domain::justification::Justifier;
    let (_, student, year, entry) = ids;
    let justifier = if caller.role == registro_domain::Role::Student {
        Justifier::Student
    } else {
        Justifier::Guardian
    };
    let cmd = RecordCommand::SubmitJustification {
        entry,
        justifier,
        reason: record::Reason {
            category: body.category,
            text: body.text,
        },
    };
    record_command(
        &state,
        &caller,
        &headers,
        student,
        school_year(year)?,
        cmd,
        None,
    )
    .await
}

/// A teacher of the class accepts or rejects a submitted justification (a rejection with a
/// reason).
#[utoipa::path(post,
    path = "/schools/{school}/students/{student}/years/{year}/attendance/{entry}/justification/decision",
    tag = "attendance",
    params(("school" = Uuid, Path, description = "The school"),
        ("student" = Uuid, Path, description = "The student"),
        ("year" = i32, Path, description = "The year the school year starts in"),
        ("entry" = Uuid, Path, description = "The attendance entry")),
    request_body = DecideJustification,
    responses(
        (status = 201, description = "Decided", body = Written),
        (status = 409, description = "Nothing submitted to decide on",
            body = crate::Problem, content_type = "application/problem+json"),
    ))]
pub async fn decide_justification(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    PathIds(ids): PathIds<(SchoolId, PersonId, i32, registro_domain::AttendanceId)>,
    headers: HeaderMap,
    Json(body): Json<DecideJustification>,
) -> Result<Response, ApiError> {
    let (_, student, year, entry) = ids;
    let cmd = RecordCommand::DecideJustification {
        entry,
        accept: body.accept,
        reason: body.reason,
    };
    record_command(
        &state,
        &caller,
        &headers,
        student,
        school_year(year)?,
        cmd,
        None,
    )
    .await
}

impl Fold for registro_domain::class_register::ClassRegister {
    fn apply(&mut self, event: &RecordedEvent) -> anyhow::Result<()> {
        use registro_domain::class_register::{ClassEvent, evolve};
        evolve(
            self,
            &ClassEvent::from_stored(event.event_type.as_str(), &event.data)?,
        );
        Ok(())
    }
}

impl From<command::CommandError<registro_domain::class_register::ClassError>> for ApiError {
    fn from(e: command::CommandError<registro_domain::class_register::ClassError>) -> Self {
        use registro_domain::class_register::ClassError as C;
        match e {
            command::CommandError::Store(e) => e.into(),
            command::CommandError::Refused(e) => {
                let detail = e.to_string();
                match e {
                    C::NotYourClass | C::NotYourSubject | C::NotTheClassTeacher => {
                        ApiError::Forbidden(detail)
                    }
                    C::UnknownClass => ApiError::NotFound,
                    C::UnknownNote => ApiError::NotFoundDetail(detail),
                    C::AlreadySigned | C::Exists | C::AlreadyAnnulled => ApiError::Conflict(detail),
                    C::NoTimetable
                    | C::NoSuchHour
                    | C::NotATeacher
                    | C::BadDate(_)
                    | C::Text
                    | C::SanctionForClass => ApiError::Unprocessable(detail),
                }
            }
        }
    }
}

/// The class's register as it is now.
async fn class_register(
    state: &AppState,
    school: SchoolId,
    class: registro_domain::ClassId,
) -> Result<Snapshot<registro_domain::class_register::ClassRegister>, ApiError> {
    let stream = StreamId::parse(registro_domain::class_register::stream(class))?;
    Ok(state
        .streams
        .current(state.store.as_ref(), school, &stream)
        .await?)
}

/// Runs a class-register command for the caller.
async fn class_command(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    class: registro_domain::ClassId,
    cmd: registro_domain::class_register::ClassCommand,
) -> Result<registro_store::AppendOutcome, ApiError> {
    use registro_domain::class_register;
    let key = idempotency_key(headers, caller)?;
    let stream = StreamId::parse(class_register::stream(class))?;
    let actor = caller.person;
    let as_principal = caller.role == registro_domain::Role::Principal;
    let decide = |register: &class_register::ClassRegister, directory: &Directory, today| {
        let ctx = class_register::Context {
            class,
            actor,
            as_principal,
            today,
            directory,
        };
        let events =
            class_register::decide(register, &cmd, &ctx).map_err(command::CommandError::Refused)?;
        Ok(new_events(
            events.iter().map(|e| (e.type_name(), e.data())),
        )?)
    };
    let digest = serde_json::to_value(&cmd).map_err(|e| ApiError::Internal(e.into()))?;
    Ok(stream_command(state, caller, key, &stream, &digest, decide).await?)
}

/// A lesson hour to sign.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignLesson {
    /// The day (today or before).
    #[schema(value_type = String, format = Date, example = "2025-10-06")]
    #[serde(with = "registro_domain::iso_date")]
    pub date: Date,
    /// The hour's number in the class's timetable for that weekday.
    #[schema(example = 1)]
    pub hour: u8,
    /// The topic taught (argomento).
    #[serde(default)]
    #[schema(example = "Equazioni di primo grado")]
    pub topic: String,
    /// The activity (attività svolta).
    #[serde(default)]
    #[schema(example = "Lezione frontale ed esercizi")]
    pub activity: String,
}

/// Signs a lesson hour of the class (firma), with the topic taught: a teacher assigned to the
/// class (co-teachers and support teachers too), or the substitute recorded for the hour; once
/// per teacher and hour.
#[utoipa::path(post, path = "/schools/{school}/classes/{class}/lessons", tag = "class register",
    params(("school" = Uuid, Path, description = "The school"),
        ("class" = Uuid, Path, description = "The class")),
    request_body = SignLesson,
    responses(
        (status = 201, description = "Signed", body = Written),
        (status = 409, description = "Already signed by this teacher",
            body = crate::Problem, content_type = "application/problem+json"),
    ))]
pub async fn sign_lesson(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    PathIds(ids): PathIds<(SchoolId, registro_domain::ClassId)>,
    headers: HeaderMap,
    Json(body): Json<SignLesson>,
) -> Result<Response, ApiError> {
    let (_, class) = ids;
    let cmd = registro_domain::class_register::ClassCommand::SignLesson {
        date: body.date,
        hour: body.hour,
        topic: body.topic,
        activity: body.activity,
    };
    let outcome = class_command(&state, &caller, &headers, class, cmd).await?;
    Ok(command_response(StatusCode::CREATED, &outcome, None))
}

/// A substitute for an hour.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssignSubstitute {
    /// The day.
    #[schema(value_type = String, format = Date, example = "2025-10-06")]
    #[serde(with = "registro_domain::iso_date")]
    pub date: Date,
    /// The hour.
    #[schema(example = 2)]
    pub hour: u8,
    /// The substitute teacher.
    #[schema(value_type = Uuid, example = "0199b3a4-7c1e-7d2a-9f00-3b5c2e8d4a10")]
    pub teacher: PersonId,
}

/// Records the substitute for an hour of the class (supplenza): they may then sign it.
#[utoipa::path(post, path = "/schools/{school}/classes/{class}/substitutions",
    tag = "class register",
    params(("school" = Uuid, Path, description = "The school"),
        ("class" = Uuid, Path, description = "The class")),
    request_body = AssignSubstitute,
    responses((status = 201, description = "Recorded", body = Written)))]
pub async fn assign_substitute(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    PathIds(ids): PathIds<(SchoolId, registro_domain::ClassId)>,
    headers: HeaderMap,
    Json(body): Json<AssignSubstitute>,
) -> Result<Response, ApiError> {
    let (_, class) = ids;
    let cmd = registro_domain::class_register::ClassCommand::AssignSubstitute {
        date: body.date,
        hour: body.hour,
        teacher: body.teacher,
    };
    let outcome = class_command(&state, &caller, &headers, class, cmd).await?;
    Ok(command_response(StatusCode::CREATED, &outcome, None))
}

/// Homework to set.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssignHomework {
    /// The subject, as assigned to the teacher in the class.
    #[schema(example = "Matematica")]
    pub subject: String,
    /// What to do.
    #[schema(example = "Esercizi 1-10 a pagina 42")]
    pub text: String,
    /// When it is due (today or after).
    #[schema(value_type = String, format = Date, example = "2025-10-08")]
    #[serde(with = "registro_domain::iso_date")]
    pub due: Date,
}

/// Sets homework for the class (compiti assegnati).
#[utoipa::path(post, path = "/schools/{school}/classes/{class}/homework", tag = "class register",
    params(("school" = Uuid, Path, description = "The school"),
        ("class" = Uuid, Path, description = "The class")),
    request_body = AssignHomework,
    responses((status = 201, description = "Set; `id` is the homework's", body = Written)))]
pub async fn assign_homework(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    PathIds(ids): PathIds<(SchoolId, registro_domain::ClassId)>,
    headers: HeaderMap,
    Json(body): Json<AssignHomework>,
) -> Result<Response, ApiError> {
    let (_, class) = ids;
    let homework = registro_domain::HomeworkId::from_uuid(new_id(&caller, &headers, "homework")?);
    let cmd = registro_domain::class_register::ClassCommand::AssignHomework {
        homework,
        subject: body.subject.trim().to_owned(),
        text: body.text,
        due: body.due,
    };
    let outcome = class_command(&state, &caller, &headers, class, cmd).await?;
    Ok(command_response(
        StatusCode::CREATED,
        &outcome,
        Some(homework.into()),
    ))
}

/// A test to schedule.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleTest {
    /// The subject, as assigned to the teacher in the class.
    #[schema(example = "Matematica")]
    pub subject: String,
    /// The day (today or after).
    #[schema(value_type = String, format = Date, example = "2025-10-20")]
    #[serde(with = "registro_domain::iso_date")]
    pub date: Date,
    /// What it covers.
    #[serde(default)]
    #[schema(example = "Equazioni di primo grado")]
    pub description: String,
}

/// Schedules a test on the class's agenda (verifica programmata). When the class already has
/// a test that day the test is scheduled all the same, and the answer carries a warning.
#[utoipa::path(post, path = "/schools/{school}/classes/{class}/tests", tag = "class register",
    params(("school" = Uuid, Path, description = "The school"),
        ("class" = Uuid, Path, description = "The class")),
    request_body = ScheduleTest,
    responses((status = 201, description = "Scheduled; `id` is the test's, `warnings` says when \
        the class already has a test that day", body = Written)))]
pub async fn schedule_test(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    PathIds(ids): PathIds<(SchoolId, registro_domain::ClassId)>,
    headers: HeaderMap,
    Json(body): Json<ScheduleTest>,
) -> Result<Response, ApiError> {
    let (_, class) = ids;
    let test = registro_domain::TestId::from_uuid(new_id(&caller, &headers, "test")?);
    let date = body.date;
    let cmd = registro_domain::class_register::ClassCommand::ScheduleTest {
        test,
        subject: body.subject.trim().to_owned(),
        date,
        description: body.description,
    };
    let outcome = class_command(&state, &caller, &headers, class, cmd).await?;
    // The warning counts the other tests of that day, as the register stands after the append.
    let register = class_register(&state, caller.school, class).await?.state;
    let others = register.tests_on(date).filter(|t| t.id != test).count();
    let warnings = if others > 0 {
        vec![format!(
            "la classe ha già {others} {} il {date}",
            if others == 1 { "verifica" } else { "verifiche" }
        )]
    } else {
        Vec::new()
    };
    Ok(crate::school::command_response_warning(
        StatusCode::CREATED,
        &outcome,
        Some(test.into()),
        warnings,
    ))
}

/// A signed lesson hour.
#[derive(Debug, Serialize, ToSchema)]
pub struct LessonView {
    /// The hour.
    #[schema(example = 1)]
    pub hour: u8,
    /// Who signed.
    #[schema(example = "0199b3a4-7c1e-7d2a-9f00-3b5c2e8d4a10")]
    pub teacher: Uuid,
    /// The subject.
    #[schema(example = "Matematica")]
    pub subject: String,
    /// The topic taught.
    #[schema(example = "Equazioni di primo grado")]
    pub topic: String,
    /// The activity.
    #[schema(example = "Lezione frontale")]
    pub activity: String,
    /// Signed as the recorded substitute.
    #[schema(example = false)]
    pub substitute: bool,
}

/// Homework in a day's register.
#[derive(Debug, Serialize, ToSchema)]
pub struct HomeworkView {
    /// Its id.
    #[schema(example = "0199b3a4-7c1e-7d2a-9f00-3b5c2e8d4a10")]
    pub id: Uuid,
    /// The subject.
    #[schema(example = "Matematica")]
    pub subject: String,
    /// What to do.
    #[schema(example = "Esercizi 1-10 a pagina 42")]
    pub text: String,
    /// The day it was set.
    #[schema(example = "2025-10-06", value_type = String, format = Date)]
    #[serde(with = "registro_domain::iso_date")]
    pub assigned_on: Date,
    /// When it is due.
    #[schema(example = "2025-10-08", value_type = String, format = Date)]
    #[serde(with = "registro_domain::iso_date")]
    pub due: Date,
}

/// A test in a day's register.
#[derive(Debug, Serialize, ToSchema)]
pub struct TestView {
    /// Its id.
    #[schema(example = "0199b3a4-7c1e-7d2a-9f00-3b5c2e8d4a10")]
    pub id: Uuid,
    /// The subject.
    #[schema(example = "Matematica")]
    pub subject: String,
    /// What it covers.
    #[schema(example = "Equazioni di primo grado")]
    pub description: String,
}

/// A class note as shown.
fn class_note_view(n: &registro_domain::class_register::ClassNote) -> NoteView {
    NoteView {
        id: n.id.into(),
        kind: n.kind,
        text: n.text.clone(),
        date: n.date,
        annulled: n.annulled.clone(),
        whole_class: true,
    }
}

/// Writes a note to the whole class (nota di classe): a teacher of the class.
#[utoipa::path(post, path = "/schools/{school}/classes/{class}/notes", tag = "discipline",
    params(("school" = Uuid, Path, description = "The school"),
        ("class" = Uuid, Path, description = "The class")),
    request_body = WriteNote,
    responses(
        (status = 201, description = "Written; `id` is the note's", body = Written),
        (status = 403, description = "Not a teacher of the class",
            body = crate::Problem, content_type = "application/problem+json"),
    ))]
pub async fn write_class_note(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    PathIds(ids): PathIds<(SchoolId, registro_domain::ClassId)>,
    headers: HeaderMap,
    Json(body): Json<WriteNote>,
) -> Result<Response, ApiError> {
    let (_, class) = ids;
    let note = registro_domain::NoteId::from_uuid(new_id(&caller, &headers, "class-note")?);
    let cmd = registro_domain::class_register::ClassCommand::WriteClassNote {
        note,
        kind: body.kind,
        text: body.text,
        date: body.date,
    };
    let outcome = class_command(&state, &caller, &headers, class, cmd).await?;
    Ok(command_response(
        StatusCode::CREATED,
        &outcome,
        Some(note.into()),
    ))
}

/// Annuls a class note, with a reason: a teacher of the class or the principal.
#[utoipa::path(post, path = "/schools/{school}/classes/{class}/notes/{note}/annulment",
    tag = "discipline",
    params(("school" = Uuid, Path, description = "The school"),
        ("class" = Uuid, Path, description = "The class"),
        ("note" = Uuid, Path, description = "The note")),
    request_body = AnnulNote,
    responses(
        (status = 201, description = "Annulled", body = Written),
        (status = 409, description = "Annulled already",
            body = crate::Problem, content_type = "application/problem+json"),
    ))]
pub async fn annul_class_note(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    PathIds(ids): PathIds<(SchoolId, registro_domain::ClassId, registro_domain::NoteId)>,
    headers: HeaderMap,
    Json(body): Json<AnnulNote>,
) -> Result<Response, ApiError> {
    let (_, class, note) = ids;
    let cmd = registro_domain::class_register::ClassCommand::AnnulClassNote {
        note,
        reason: body.reason,
    };
    let outcome = class_command(&state, &caller, &headers, class, cmd).await?;
    Ok(command_response(StatusCode::CREATED, &outcome, None))
}

/// A day of the class register.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClassDay {
    /// The day.
    #[schema(example = "2025-10-06", value_type = String, format = Date)]
    #[serde(with = "registro_domain::iso_date")]
    pub date: Date,
    /// The lesson hours signed, by hour.
    pub lessons: Vec<LessonView>,
    /// The homework set that day or due that day.
    pub homework: Vec<HomeworkView>,
    /// The tests scheduled that day.
    pub tests: Vec<TestView>,
    /// The notes to the whole class dated that day.
    pub notes: Vec<NoteView>,
}

/// A day of the class register: the hours signed with their topics, the homework set or due,
/// the tests, the notes to the whole class. It holds no student's personal data.
#[utoipa::path(get, path = "/schools/{school}/classes/{class}/days/{date}", tag = "class register",
    params(("school" = Uuid, Path, description = "The school"),
        ("class" = Uuid, Path, description = "The class"),
        ("date" = String, Path, description = "The day, YYYY-MM-DD")),
    responses((status = 200, description = "The day", body = ClassDay)))]
pub async fn class_day(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    PathIds(ids): PathIds<(SchoolId, registro_domain::ClassId, String)>,
) -> Result<Json<ClassDay>, ApiError> {
    let (_, class, date) = ids;
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let date = Date::parse(&date, &format).map_err(|_| ApiError::NotFound)?;
    if caller.directory.class(class).is_none() {
        return Err(ApiError::NotFound);
    }
    let register = class_register(&state, caller.school, class).await?.state;
    Ok(Json(ClassDay {
        date,
        lessons: register
            .lessons_on(date)
            .into_iter()
            .map(|l| LessonView {
                hour: l.hour,
                teacher: l.teacher.into(),
                subject: l.subject.clone(),
                topic: l.topic.clone(),
                activity: l.activity.clone(),
                substitute: l.substitute,
            })
            .collect(),
        homework: register
            .homework_around(date)
            .map(|h| HomeworkView {
                id: h.id.into(),
                subject: h.subject.clone(),
                text: h.text.clone(),
                assigned_on: h.assigned_on,
                due: h.due,
            })
            .collect(),
        tests: register
            .tests_on(date)
            .map(|t| TestView {
                id: t.id.into(),
                subject: t.subject.clone(),
                description: t.description.clone(),
            })
            .collect(),
        notes: register
            .notes()
            .filter(|n| n.date == date)
            .map(class_note_view)
            .collect(),
    }))
}

/// A subject to exempt a student from.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Exemption {
    /// The subject, as the timetable names it.
    #[schema(example = "Religione")]
    pub subject: String,
}

/// Exempts a student from a subject (esonero, e.g. religion without an alternative activity):
/// its hours leave the student's personalised annual hours and are never missed.
#[utoipa::path(post, path = "/schools/{school}/students/{student}/exemptions", tag = "attendance",
    params(("school" = Uuid, Path, description = "The school"),
        ("student" = Uuid, Path, description = "The student")),
    request_body = Exemption,
    responses((status = 201, description = "Exempted", body = Written)))]
pub async fn exempt_from_subject(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    PathIds(ids): PathIds<(SchoolId, PersonId)>,
    headers: HeaderMap,
    Json(body): Json<Exemption>,
) -> Result<Response, ApiError> {
    let (_, student) = ids;
    let cmd = DirectoryCommand::ExemptFromSubject {
        student,
        subject: body.subject,
    };
    crate::school::command(&state, &caller, &headers, cmd, StatusCode::CREATED, None).await
}

/// Ends a student's exemption from a subject.
#[utoipa::path(delete, path = "/schools/{school}/students/{student}/exemptions/{subject}",
    tag = "attendance",
    params(("school" = Uuid, Path, description = "The school"),
        ("student" = Uuid, Path, description = "The student"),
        ("subject" = String, Path, description = "The subject")),
    responses((status = 200, description = "Ended", body = Written)))]
pub async fn end_exemption(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    PathIds(ids): PathIds<(SchoolId, PersonId, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (_, student, subject) = ids;
    let cmd = DirectoryCommand::EndExemption { student, subject };
    crate::school::command(&state, &caller, &headers, cmd, StatusCode::OK, None).await
}

/// A note to write.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WriteNote {
    /// disciplinary or annotation.
    #[schema(value_type = String, example = "disciplinary")]
    pub kind: record::NoteKind,
    /// What happened.
    #[schema(example = "Disturba ripetutamente la lezione")]
    pub text: String,
    /// The day.
    #[schema(value_type = String, format = Date, example = "2025-10-06")]
    #[serde(with = "registro_domain::iso_date")]
    pub date: Date,
}

/// A sanction to record.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecideSanction {
    /// The sanction and its reasons.
    #[schema(example = "Sospensione di un giorno con obbligo di frequenza")]
    pub text: String,
    /// The day it was decided.
    #[schema(value_type = String, format = Date, example = "2025-10-07")]
    #[serde(with = "registro_domain::iso_date")]
    pub date: Date,
}

/// An annulment with its reason.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AnnulNote {
    /// Why.
    #[schema(example = "scritta per errore")]
    pub reason: String,
}

/// Writes a disciplinary note (nota disciplinare) or an annotation about a student: a teacher
/// of the student's class.
#[utoipa::path(post, path = "/schools/{school}/students/{student}/years/{year}/notes",
    tag = "discipline",
    params(("school" = Uuid, Path, description = "The school"),
        ("student" = Uuid, Path, description = "The student"),
        ("year" = i32, Path, description = "The year the school year starts in")),
    request_body = WriteNote,
    responses((status = 201, description = "Written; `id` is the note's", body = Written)))]
pub async fn write_note(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    PathIds(ids): PathIds<(SchoolId, PersonId, i32)>,
    headers: HeaderMap,
    Json(body): Json<WriteNote>,
) -> Result<Response, ApiError> {
    let (_, student, year) = ids;
    let note = registro_domain::NoteId::from_uuid(new_id(&caller, &headers, "note")?);
    let cmd = RecordCommand::RecordNote {
        note,
        kind: body.kind,
        text: body.text,
        date: body.date,
    };
    let year = school_year(year)?;
    record_command(
        &state,
        &caller,
        &headers,
        student,
        year,
        cmd,
        Some(note.into()),
    )
    .await
}

/// Records a sanction (provvedimento disciplinare): the principal.
#[utoipa::path(post, path = "/schools/{school}/students/{student}/years/{year}/sanctions",
    tag = "discipline",
    params(("school" = Uuid, Path, description = "The school"),
        ("student" = Uuid, Path, description = "The student"),
        ("year" = i32, Path, description = "The year the school year starts in")),
    request_body = DecideSanction,
    responses((status = 201, description = "Recorded; `id` is the sanction's", body = Written)))]
pub async fn decide_sanction(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    PathIds(ids): PathIds<(SchoolId, PersonId, i32)>,
    headers: HeaderMap,
    Json(body): Json<DecideSanction>,
) -> Result<Response, ApiError> {
    let (_, student, year) = ids;
    let note = registro_domain::NoteId::from_uuid(new_id(&caller, &headers, "sanction")?);
    let cmd = RecordCommand::DecideSanction {
        note,
        text: body.text,
        date: body.date,
    };
    let year = school_year(year)?;
    record_command(
        &state,
        &caller,
        &headers,
        student,
        year,
        cmd,
        Some(note.into()),
    )
    .await
}

/// Annuls a note (a teacher of the class, or the principal) or a sanction (the principal),
/// with a reason; it stays in the history.
#[utoipa::path(post,
    path = "/schools/{school}/students/{student}/years/{year}/notes/{note}/annulment",
    tag = "discipline",
    params(("school" = Uuid, Path, description = "The school"),
        ("student" = Uuid, Path, description = "The student"),
        ("year" = i32, Path, description = "The year the school year starts in"),
        ("note" = Uuid, Path, description = "The note or sanction")),
    request_body = AnnulNote,
    responses((status = 201, description = "Annulled", body = Written)))]
pub async fn annul_note(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    PathIds(ids): PathIds<(SchoolId, PersonId, i32, registro_domain::NoteId)>,
    headers: HeaderMap,
    Json(body): Json<AnnulNote>,
) -> Result<Response, ApiError> {
    let (_, student, year, note) = ids;
    let cmd = RecordCommand::AnnulNote {
        note,
        reason: body.reason,
    };
    record_command(
        &state,
        &caller,
        &headers,
        student,
        school_year(year)?,
        cmd,
        None,
    )
    .await
}

/// A note as it stands.
#[derive(Debug, Serialize, ToSchema)]
pub struct NoteView {
    /// Its id.
    #[schema(example = "0199b3a4-7c1e-7d2a-9f00-3b5c2e8d4a10")]
    pub id: Uuid,
    /// disciplinary, annotation or sanction.
    #[schema(example = "disciplinary", value_type = String)]
    pub kind: record::NoteKind,
    /// What happened.
    #[schema(example = "Disturba ripetutamente la lezione")]
    pub text: String,
    /// The day.
    #[schema(example = "2025-10-06", value_type = String, format = Date)]
    #[serde(with = "registro_domain::iso_date")]
    pub date: Date,
    /// Why it was annulled, when it was.
    #[schema(example = json!(null))]
    pub annulled: Option<String>,
    /// Whether it is a note to the student's whole class (nota di classe).
    #[schema(example = false)]
    pub whole_class: bool,
}

/// A student's notes and sanctions for a school year, in the order written, then the notes to
/// the whole of the class they are in now, dated in that year. A read by the principal or a
/// teacher is recorded in the access log.
#[utoipa::path(get, path = "/schools/{school}/students/{student}/years/{year}/notes",
    tag = "discipline",
    params(("school" = Uuid, Path, description = "The school"),
        ("student" = Uuid, Path, description = "The student"),
        ("year" = i32, Path, description = "The year the school year starts in")),
    responses((status = 200, description = "The notes", body = Vec<NoteView>)))]
pub async fn student_notes(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    PathIds(ids): PathIds<(SchoolId, PersonId, i32)>,
) -> Result<Json<Vec<NoteView>>, ApiError> {
    let (_, student, year) = ids;
    let year = school_year(year)?;
    let record = student_record(&state, &caller, student, year).await?;
    let mut notes: Vec<NoteView> = record
        .notes()
        .map(|(id, n)| NoteView {
            id: id.into(),
            kind: n.kind,
            text: n.text.clone(),
            date: n.date,
            annulled: n.annulled.clone(),
            whole_class: false,
        })
        .collect();
    if let Some(class) = caller.directory.class_of(student) {
        let register = class_register(&state, caller.school, class).await?.state;
        notes.extend(
            register
                .notes()
                .filter(|n| year.contains(n.date))
                .map(class_note_view),
        );
    }
    record_read(&state, &caller, [student], "student.notes").await?;
    Ok(Json(notes))
}

impl Fold for registro_domain::meetings::Meetings {
    fn apply(&mut self, event: &RecordedEvent) -> anyhow::Result<()> {
        use registro_domain::meetings::{MeetingEvent, evolve};
        evolve(
            self,
            &MeetingEvent::from_stored(event.event_type.as_str(), &event.data)?,
        );
        Ok(())
    }
}

impl From<command::CommandError<registro_domain::meetings::MeetingError>> for ApiError {
    fn from(e: command::CommandError<registro_domain::meetings::MeetingError>) -> Self {
        use registro_domain::meetings::MeetingError as M;
        match e {
            command::CommandError::Store(e) => e.into(),
            command::CommandError::Refused(e) => {
                let detail = e.to_string();
                match e {
                    M::NotTheTeacher | M::NotYourTeacher | M::NotYourBooking => {
                        ApiError::Forbidden(detail)
                    }
                    M::UnknownSlot => ApiError::NotFoundDetail(detail),
                    M::Cancelled | M::Full | M::AlreadyBooked | M::NotBooked | M::Exists => {
                        ApiError::Conflict(detail)
                    }
                    M::BadSlot | M::Past | M::Text => ApiError::Unprocessable(detail),
                }
            }
        }
    }
}

/// Runs a meetings command for the caller on `teacher`'s meetings.
async fn meetings_command(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    teacher: PersonId,
    cmd: registro_domain::meetings::MeetingCommand,
) -> Result<registro_store::AppendOutcome, ApiError> {
    use registro_domain::meetings;
    let key = idempotency_key(headers, caller)?;
    let stream = StreamId::parse(meetings::stream(teacher))?;
    let actor = caller.person;
    let decide = |current: &meetings::Meetings, directory: &Directory, today| {
        let ctx = meetings::Context {
            teacher,
            actor,
            today,
            directory,
        };
        let events =
            meetings::decide(current, &cmd, &ctx).map_err(command::CommandError::Refused)?;
        Ok(new_events(
            events.iter().map(|e| (e.type_name(), e.data())),
        )?)
    };
    let digest = serde_json::to_value(&cmd).map_err(|e| ApiError::Internal(e.into()))?;
    Ok(stream_command(state, caller, key, &stream, &digest, decide).await?)
}

/// A slot to offer.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OfferSlot {
    /// The day.
    #[schema(value_type = String, format = Date, example = "2025-10-15")]
    #[serde(with = "registro_domain::iso_date")]
    pub date: Date,
    /// When it starts, HH:MM.
    #[schema(value_type = String, example = "16:00")]
    #[serde(with = "registro_domain::hour_minute")]
    pub start: time::Time,
    /// When it ends, HH:MM.
    #[schema(value_type = String, example = "16:30")]
    #[serde(with = "registro_domain::hour_minute")]
    pub end: time::Time,
    /// How many bookings it takes (1 to 50).
    #[schema(example = 3)]
    pub capacity: u8,
    /// Where.
    #[serde(default)]
    #[schema(example = "Aula 12")]
    pub place: String,
}

/// Offers a slot for parent-teacher meetings (colloqui): the teacher, for themself.
#[utoipa::path(post, path = "/schools/{school}/teachers/{person}/meetings", tag = "meetings",
    params(("school" = Uuid, Path, description = "The school"),
        ("person" = Uuid, Path, description = "The teacher")),
    request_body = OfferSlot,
    responses((status = 201, description = "Offered; `id` is the slot's", body = Written)))]
pub async fn offer_slot(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    PathIds(ids): PathIds<(SchoolId, PersonId)>,
    headers: HeaderMap,
    Json(body): Json<OfferSlot>,
) -> Result<Response, ApiError> {
    let (_, teacher) = ids;
    let slot = registro_domain::SlotId::from_uuid(new_id(&caller, &headers, "slot")?);
    let cmd = registro_domain::meetings::MeetingCommand::OfferSlot {
        slot,
        date: body.date,
        start: body.start,
        end: body.end,
        capacity: body.capacity,
        place: body.place,
    };
    let outcome = meetings_command(&state, &caller, &headers, teacher, cmd).await?;
    Ok(command_response(
        StatusCode::CREATED,
        &outcome,
        Some(slot.into()),
    ))
}

/// A cancellation of a slot.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelSlot {
    /// Why.
    #[schema(example = "consiglio di classe straordinario")]
    pub reason: String,
}

/// Cancels a slot, with a reason: the teacher. Its bookings fall with it.
#[utoipa::path(post, path = "/schools/{school}/teachers/{person}/meetings/{slot}/cancellation",
    tag = "meetings",
    params(("school" = Uuid, Path, description = "The school"),
        ("person" = Uuid, Path, description = "The teacher"),
        ("slot" = Uuid, Path, description = "The slot")),
    request_body = CancelSlot,
    responses((status = 201, description = "Cancelled", body = Written)))]
pub async fn cancel_slot(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    PathIds(ids): PathIds<(SchoolId, PersonId, registro_domain::SlotId)>,
    headers: HeaderMap,
    Json(body): Json<CancelSlot>,
) -> Result<Response, ApiError> {
    let (_, teacher, slot) = ids;
    let cmd = registro_domain::meetings::MeetingCommand::CancelSlot {
        slot,
        reason: body.reason,
    };
    let outcome = meetings_command(&state, &caller, &headers, teacher, cmd).await?;
    Ok(command_response(StatusCode::CREATED, &outcome, None))
}

/// A booking.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Booking {
    /// The student the meeting is about: the guardian's child, taught by the teacher.
    #[schema(value_type = Uuid, example = "0199b3a4-7c1e-7d2a-9f00-3b5c2e8d4a10")]
    pub student: PersonId,
}

/// Books a slot: a guardian of a student the teacher teaches.
#[utoipa::path(post, path = "/schools/{school}/teachers/{person}/meetings/{slot}/bookings",
    tag = "meetings",
    params(("school" = Uuid, Path, description = "The school"),
        ("person" = Uuid, Path, description = "The teacher"),
        ("slot" = Uuid, Path, description = "The slot")),
    request_body = Booking,
    responses(
        (status = 201, description = "Booked", body = Written),
        (status = 409, description = "Full, cancelled, or booked already",
            body = crate::Problem, content_type = "application/problem+json"),
    ))]
pub async fn book_slot(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    PathIds(ids): PathIds<(SchoolId, PersonId, registro_domain::SlotId)>,
    headers: HeaderMap,
    Json(body): Json<Booking>,
) -> Result<Response, ApiError> {
    let (_, teacher, slot) = ids;
    let cmd = registro_domain::meetings::MeetingCommand::Book {
        slot,
        student: body.student,
    };
    let outcome = meetings_command(&state, &caller, &headers, teacher, cmd).await?;
    Ok(command_response(StatusCode::CREATED, &outcome, None))
}

/// Cancels a booking: the guardian who made it.
#[utoipa::path(delete,
    path = "/schools/{school}/teachers/{person}/meetings/{slot}/bookings/{student}",
    tag = "meetings",
    params(("school" = Uuid, Path, description = "The school"),
        ("person" = Uuid, Path, description = "The teacher"),
        ("slot" = Uuid, Path, description = "The slot"),
        ("student" = Uuid, Path, description = "The student")),
    responses((status = 200, description = "Cancelled", body = Written)))]
pub async fn cancel_booking(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    PathIds(ids): PathIds<(SchoolId, PersonId, registro_domain::SlotId, PersonId)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (_, teacher, slot, student) = ids;
    let cmd = registro_domain::meetings::MeetingCommand::CancelBooking { slot, student };
    let outcome = meetings_command(&state, &caller, &headers, teacher, cmd).await?;
    Ok(command_response(StatusCode::OK, &outcome, None))
}

/// A slot as the caller may see it.
#[derive(Debug, Serialize, ToSchema)]
pub struct SlotView {
    /// Its id.
    #[schema(example = "0199b3a4-7c1e-7d2a-9f00-3b5c2e8d4a10")]
    pub id: Uuid,
    /// The day.
    #[schema(example = "2025-10-15", value_type = String, format = Date)]
    #[serde(with = "registro_domain::iso_date")]
    pub date: Date,
    /// When it starts.
    #[schema(example = "16:00", value_type = String)]
    #[serde(with = "registro_domain::hour_minute")]
    pub start: time::Time,
    /// When it ends.
    #[schema(example = "16:30", value_type = String)]
    #[serde(with = "registro_domain::hour_minute")]
    pub end: time::Time,
    /// Where.
    #[schema(example = "Aula 12")]
    pub place: String,
    /// How many bookings it takes.
    #[schema(example = 3)]
    pub capacity: u8,
    /// How many places are free.
    #[schema(example = 2)]
    pub free: u8,
    /// Why it was cancelled, if it was.
    #[schema(example = json!(null))]
    pub cancelled: Option<String>,
    /// The students booked: every one for the teacher and the principal; a guardian sees only
    /// their own.
    #[schema(value_type = Vec<Uuid>, example = json!(["0199b3a4-7c1e-7d2a-9f00-3b5c2e8d4a10"]))]
    pub booked_students: Vec<PersonId>,
}

/// A teacher's meeting slots. Guardians see the free places and their own bookings only.
#[utoipa::path(get, path = "/schools/{school}/teachers/{person}/meetings", tag = "meetings",
    params(("school" = Uuid, Path, description = "The school"),
        ("person" = Uuid, Path, description = "The teacher")),
    responses((status = 200, description = "The slots", body = Vec<SlotView>)))]
pub async fn teacher_slots(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    PathIds(ids): PathIds<(SchoolId, PersonId)>,
) -> Result<Json<Vec<SlotView>>, ApiError> {
    let (_, teacher) = ids;
    let stream = StreamId::parse(registro_domain::meetings::stream(teacher))?;
    let meetings = state
        .streams
        .current::<registro_domain::meetings::Meetings>(
            state.store.as_ref(),
            caller.school,
            &stream,
        )
        .await?
        .state;
    let sees_all = caller.role != registro_domain::Role::Guardian;
    Ok(Json(
        meetings
            .slots()
            .map(|(id, s)| SlotView {
                id: id.into(),
                date: s.date,
                start: s.start,
                end: s.end,
                place: s.place.clone(),
                capacity: s.capacity,
                free: s
                    .capacity
                    .saturating_sub(u8::try_from(s.bookings.len()).unwrap_or(u8::MAX)),
                cancelled: s.cancelled.clone(),
                booked_students: s
                    .bookings
                    .iter()
                    .filter(|(guardian, _)| sees_all || *guardian == caller.person)
                    .map(|(_, student)| *student)
                    .collect(),
            })
            .collect(),
    ))
}

/// One student's mark in a class test.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StudentMark {
    /// The student.
    #[schema(value_type = Uuid, example = "0199b3a4-7c1e-7d2a-9f00-3b5c2e8d4a10")]
    pub student: PersonId,
    /// The mark as written (`7+`, `distinto`).
    #[schema(example = "6½")]
    pub mark: String,
}

/// The grades of a whole class test.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GiveClassGrades {
    /// The subject.
    #[schema(example = "Matematica")]
    pub subject: String,
    /// written, oral, practical or graphic.
    #[schema(value_type = String, example = "written")]
    pub kind: GradeKind,
    /// The scale (default: the subject's).
    #[serde(default)]
    pub scale: Option<Scale>,
    /// The weight as written (default `1`).
    #[schema(example = "1")]
    pub weight: Option<String>,
    /// Whether they count in the average (default true).
    #[serde(default = "yes")]
    #[schema(example = true)]
    pub counted: bool,
    /// What the test was.
    #[serde(default)]
    #[schema(example = "Verifica sulle equazioni")]
    pub description: String,
    /// The day of the test.
    #[schema(value_type = String, format = Date, example = "2025-10-06")]
    #[serde(with = "registro_domain::iso_date")]
    pub date: Date,
    /// Each student's mark (students absent from the list get none).
    pub marks: Vec<StudentMark>,
}

/// The grades given, student by student.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClassGrades {
    /// Each student's new grade id, in the order of the request.
    pub grades: Vec<GivenGrade>,
}

/// A grade given to a student.
#[derive(Debug, Serialize, ToSchema)]
pub struct GivenGrade {
    /// The student.
    #[schema(example = "0199b3a4-7c1e-7d2a-9f00-3b5c2e8d4a10")]
    pub student: Uuid,
    /// The grade.
    #[schema(example = "0199b3a4-7c1e-7d2a-9f00-3b5c2e8d4a10")]
    pub id: Uuid,
    /// The `school_seq` of its event.
    #[schema(example = 1042)]
    pub position: u64,
}

/// Gives the grades of a whole class test in one request: every mark is checked first (a bad
/// one refuses the request, `errors` naming each by its place in `marks`, nothing written);
/// then each student's grade is appended to their own record. With an `Idempotency-Key` the
/// request can be retried until it has gone through for every student, none twice.
#[utoipa::path(post, path = "/schools/{school}/classes/{class}/years/{year}/grades",
    tag = "grades",
    params(("school" = Uuid, Path, description = "The school"),
        ("class" = Uuid, Path, description = "The class"),
        ("year" = i32, Path, description = "The year the school year starts in")),
    request_body = GiveClassGrades,
    responses((status = 201, description = "Given", body = ClassGrades)))]
pub async fn give_class_grades(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    PathIds(ids): PathIds<(SchoolId, registro_domain::ClassId, i32)>,
    headers: HeaderMap,
    Json(body): Json<GiveClassGrades>,
) -> Result<Response, ApiError> {
    use sha2::{Digest as _, Sha256};
    let (_, class, year) = ids;
    let year = school_year(year)?;
    let key = idempotency_key(&headers, &caller)?;
    let weight = match &body.weight {
        Some(w) => Weight::parse(w).map_err(|e| ApiError::Unprocessable(format!("weight: {e}")))?,
        None => Weight::ONE,
    };
    let roster = caller
        .directory
        .class(class)
        .map(|c| c.students.clone())
        .unwrap_or_default();
    let mut errors = Vec::new();
    let mut commands = Vec::new();
    for (i, m) in body.marks.iter().enumerate() {
        let line = i + 1;
        if !roster.contains(&m.student) {
            errors.push(LineError {
                line,
                reason: "lo studente non è in questa classe".into(),
            });
            continue;
        }
        let mark = match mark(scale_of(&caller, body.scale, &body.subject), &m.mark) {
            Ok(mark) => mark,
            Err(e) => {
                errors.push(LineError {
                    line,
                    reason: e.to_string(),
                });
                continue;
            }
        };
        // Each student's grade: an id and an idempotency key of its own, derived from the
        // request's key when there is one.
        let (grade, student_key) = match &key {
            Some(k) => {
                let digest = Sha256::digest(format!("{}/{}", k.as_str(), m.student).as_bytes());
                let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
                (
                    GradeId::from_uuid(Uuid::new_v5(caller.school.as_uuid(), hex.as_bytes())),
                    Some(registro_store::IdempotencyKey::parse(format!(
                        "{}:class-grade:{hex}",
                        caller.person
                    ))?),
                )
            }
            None => (GradeId::new(), None),
        };
        commands.push((
            m.student,
            grade,
            student_key,
            RecordCommand::RecordGrade {
                grade,
                subject: body.subject.trim().to_owned(),
                kind: body.kind,
                mark,
                weight,
                counted: body.counted,
                description: body.description.clone(),
                date: body.date,
            },
        ));
    }
    // Every grade is checked against its record before any is written.
    if errors.is_empty() {
        let directory = state
            .directory
            .current(state.store.as_ref(), caller.school)
            .await?
            .state;
        // The class's closed terms are locked (rule 6).
        let closed = crate::scrutiny::scrutiny_of(&state, caller.school, class, year)
            .await?
            .1
            .state
            .closed_terms();
        for (i, (student, _, student_key, cmd)) in commands.iter().enumerate() {
            let stream = StreamId::parse(record::stream(*student, year))?;
            let current = state
                .streams
                .current::<Record>(state.store.as_ref(), caller.school, &stream)
                .await?
                .state;
            let exempt = directory.exempt_subjects(*student);
            let ctx = record::Context {
                student: *student,
                year,
                teacher: caller.person,
                today: italian_today(&state),
                as_principal: false,
                exempt_subjects: &exempt,
                directory: &directory,
                closed_terms: &closed,
            };
            // A retry's grades are in the records already: those are not errors.
            if let Err(e) = record::decide(&current, cmd, &ctx)
                && !(student_key.is_some() && e == RecordError::GradeExists)
            {
                errors.push(LineError {
                    line: i + 1,
                    reason: e.to_string(),
                });
            }
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::BadLines(errors));
    }
    let mut given = Vec::new();
    for (student, grade, student_key, cmd) in commands {
        let outcome =
            record_command_keyed(&state, &caller, student_key, student, year, cmd).await?;
        given.push(GivenGrade {
            student: student.into(),
            id: grade.into(),
            position: outcome.last_seq,
        });
    }
    Ok((StatusCode::CREATED, Json(ClassGrades { grades: given })).into_response())
}
