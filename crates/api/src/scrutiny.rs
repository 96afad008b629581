//! Scrutini over HTTP (issue 6): the class council of each term, on the stream
//! `scrutiny-<class>-<year>` (`registro_domain::scrutiny`). The principal or the class
//! coordinator opens the term's scrutinio, records the council's session, its deliberations,
//! absence exemptions and year-end outcomes, and closes it; teachers enter their proposals; the
//! principal reopens a closed one with a reason. Closing locks the term's grades and absences of
//! the class (rule 6): the record's commands check the closed terms of the student's class.

// utoipa's expansion of `params(...)` names the parameter types by path.
#![allow(unused_qualifications)]

use std::collections::{BTreeMap, BTreeSet};

use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use registro_domain::StoredEvent as _;
use registro_domain::attendance::AnnualLimit;
use registro_domain::attendance::{Exemption, ExemptionReason};
use registro_domain::calendar::SchoolYear;
use registro_domain::directory::Directory;
use registro_domain::record::Mark;
use registro_domain::scrutiny::{
    self, Outcome, SchoolLevel, Scrutiny, ScrutinyCommand, ScrutinyError, ScrutinyEvent, Settings,
    Vote,
};
use registro_domain::{ClassId, PersonId, SchoolId};
use registro_projection_scrutiny as report;
use registro_store::{RecordedEvent, StreamId};
use serde::{Deserialize, Serialize};
use time::Date;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::AppState;
use crate::auth::Caller;
use crate::cache::{Fold, Snapshot};
use crate::command::{self, new_events};
use crate::error::ApiError;
use crate::error::Problem;
use crate::json::{Json, PathIds, QueryOf};
use crate::projections::read_projection;
use crate::register::{mark, periods, read_record_at, school_year, stream_command_with, term_name};
use crate::school::{Written, command_response, idempotency_key, record_read};

impl Fold for Scrutiny {
    fn apply(&mut self, event: &RecordedEvent) -> anyhow::Result<()> {
        scrutiny::evolve(
            self,
            &ScrutinyEvent::from_stored(event.event_type.as_str(), &event.data)?,
        );
        Ok(())
    }
}

impl From<command::CommandError<ScrutinyError>> for ApiError {
    fn from(e: command::CommandError<ScrutinyError>) -> Self {
        use ScrutinyError as S;
        match e {
            command::CommandError::Store(e) => e.into(),
            command::CommandError::Refused(e) => {
                let detail = e.to_string();
                match e {
                    S::NotTheChair | S::NotThePrincipal | S::NotTheSubjectTeacher => {
                        ApiError::Forbidden(detail)
                    }
                    S::UnknownTerm => ApiError::NotFoundDetail(detail),
                    S::AlreadyOpen
                    | S::NotOpen
                    | S::NotClosed
                    | S::NothingSuspended
                    | S::AlreadyPublished
                    | S::NoSession
                    | S::NoIntegrationSession
                    | S::IntegrationDecided
                    | S::NoOutcome
                    | S::Incomplete(_)
                    | S::OutcomeDecided => ApiError::Conflict(detail),
                    S::NotInClass
                    | S::BadMark(_)
                    | S::MissingGrade(_)
                    | S::Conduct
                    | S::BadSession
                    | S::BadVote
                    | S::NotFinal
                    | S::OverLimit { .. }
                    | S::ConductBelowSix
                    | S::ConductSix
                    | S::BadSubjects(_)
                    | S::NoSuspension
                    | S::ReasonsRequired
                    | S::LevelChanged
                    | S::Text
                    | S::IntegrationTooEarly
                    | S::BadExemption => ApiError::Unprocessable(detail),
                }
            }
        }
    }
}

/// The class's scrutini of a school year as they stand.
pub(crate) async fn scrutiny_of(
    state: &AppState,
    school: SchoolId,
    class: ClassId,
    year: SchoolYear,
) -> Result<(StreamId, Snapshot<Scrutiny>), registro_store::StoreError> {
    let stream = StreamId::parse(scrutiny::stream(class, year))?;
    let found = state
        .streams
        .current(state.store.as_ref(), school, &stream)
        .await?;
    Ok((stream, found))
}

/// The terms locked for a student's record of `year`: those whose scrutinio is closed for the
/// student's class in `directory` (rule 6), as indexes in the year's terms; with the class's
/// scrutiny stream at the version read, for the record's append to be checked against (a term
/// closed meanwhile makes it decided again, and refused).
pub(crate) async fn closed_terms(
    state: &AppState,
    school: SchoolId,
    directory: &Directory,
    student: PersonId,
    year: SchoolYear,
) -> Result<(BTreeSet<usize>, Vec<registro_store::StreamGuard>), registro_store::StoreError> {
    let Some(class) = directory.class_of(student) else {
        return Ok((BTreeSet::new(), Vec::new()));
    };
    let (stream, found) = scrutiny_of(state, school, class, year).await?;
    let guard = registro_store::StreamGuard {
        stream,
        version: found.version,
    };
    Ok((found.state.closed_terms(), vec![guard]))
}

/// Runs a scrutiny command on the class's stream of `year`; for an outcome, `record_of` is the
/// student whose record gives the hours missed this year, read by every attempt and checked at
/// the append (an absence recorded meanwhile makes the outcome decided again).
async fn run(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    (class, year): (ClassId, SchoolYear),
    cmd: ScrutinyCommand,
    record_of: Option<PersonId>,
) -> Result<Response, ApiError> {
    let school = caller.school;
    let reads = |_: std::sync::Arc<Directory>| async move {
        match record_of {
            Some(student) => {
                let (record, guard) = read_record_at(state, school, student, year).await?;
                Ok((record.missed_hours(), vec![guard]))
            }
            None => Ok((Vec::new(), Vec::new())),
        }
    };
    let key = idempotency_key(headers, caller)?;
    let stream = StreamId::parse(scrutiny::stream(class, year))?;
    let actor = caller.person;
    let decide =
        |current: &Scrutiny, directory: &Directory, _today: Date, absences: &Vec<(Date, u32)>| {
            let ctx = scrutiny::Context {
                class,
                year,
                actor,
                directory,
                settings: directory.scrutiny_settings(),
                absences,
            };
            let events =
                scrutiny::decide(current, &cmd, &ctx).map_err(command::CommandError::Refused)?;
            Ok(new_events(
                events.iter().map(|e| (e.type_name(), e.data())),
            )?)
        };
    let digest = serde_json::to_value(&cmd).map_err(|e| ApiError::Internal(e.into()))?;
    let outcome = stream_command_with(state, caller, key, &stream, &digest, reads, decide).await?;
    Ok(command_response(StatusCode::CREATED, &outcome, None))
}

fn known_class(caller: &Caller, class: ClassId) -> Result<(), ApiError> {
    caller
        .directory
        .class(class)
        .map(|_| ())
        .ok_or(ApiError::NotFound)
}

/// The school's rules for scrutini (`rules.md` section 4).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScrutinyRules {
    /// The most subjects, 1 to 6, that a suspended judgement (giudizio sospeso) may leave to
    /// recover in upper secondary: with more subjects below 6, registro proposes not admitted.
    /// Default 3.
    #[schema(example = 3)]
    pub max_subjects_to_recover: u8,
}

/// Sets the school's rules for scrutini, from now on (as the collegio dei docenti decided
/// them): the principal or the office.
#[utoipa::path(put, path = "/schools/{school}/settings/scrutini", tag = "scrutini",
    params(("school" = Uuid, Path, description = "The school")),
    request_body = ScrutinyRules,
    responses((status = 200, description = "Set", body = Written)))]
pub async fn set_scrutiny_rules(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Json(body): Json<ScrutinyRules>,
) -> Result<Response, ApiError> {
    let cmd = registro_domain::directory::DirectoryCommand::SetScrutinySettings {
        settings: Settings {
            max_subjects_to_recover: usize::from(body.max_subjects_to_recover),
        },
    };
    crate::school::command(&state, &caller, &headers, cmd, StatusCode::OK, None).await
}

/// The school's rules for scrutini: every member may read them.
#[utoipa::path(get, path = "/schools/{school}/settings/scrutini", tag = "scrutini",
    params(("school" = Uuid, Path, description = "The school")),
    responses((status = 200, description = "The rules (the defaults until set)",
        body = ScrutinyRules)))]
pub async fn scrutiny_rules(Extension(caller): Extension<Caller>) -> axum::Json<ScrutinyRules> {
    let max = caller.directory.scrutiny_settings().max_subjects_to_recover;
    axum::Json(ScrutinyRules {
        max_subjects_to_recover: u8::try_from(max).unwrap_or(u8::MAX),
    })
}

/// The path of a class's scrutini of a year.
type YearPath = PathIds<(SchoolId, ClassId, i32)>;
/// The path of one term's scrutinio.
type TermPath = PathIds<(SchoolId, ClassId, i32, u8)>;

/// Opens a term's scrutinio.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenScrutiny {
    /// The term's number in the year, from 1 (the last is the final scrutinio).
    #[schema(example = 1)]
    pub term: u8,
    /// The class's school level: primary, lower_secondary or upper_secondary.
    #[schema(value_type = String, example = "upper_secondary")]
    pub level: SchoolLevel,
}

/// Opens the scrutinio of a class's term (apertura dello scrutinio): for the principal and
/// the class coordinator.
#[utoipa::path(post, path = "/schools/{school}/classes/{class}/years/{year}/scrutini",
    tag = "scrutini",
    params(("school" = Uuid, Path, description = "The school"),
        ("class" = Uuid, Path, description = "The class"),
        ("year" = i32, Path, description = "The year the school year starts in")),
    request_body = OpenScrutiny,
    responses((status = 201, description = "Opened", body = Written)))]
pub async fn open(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    PathIds(ids): YearPath,
    headers: HeaderMap,
    Json(body): Json<OpenScrutiny>,
) -> Result<Response, ApiError> {
    let (_, class, year) = ids;
    known_class(&caller, class)?;
    let cmd = ScrutinyCommand::Open {
        term: body.term,
        level: body.level,
    };
    run(
        &state,
        &caller,
        &headers,
        (class, school_year(year)?),
        cmd,
        None,
    )
    .await
}

/// A proposal of a grade (proposta di voto).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Propose {
    /// The student.
    #[schema(example = "0199b3a4-7c1e-7d2a-9f00-3b5c2e8d4a10")]
    pub student: Uuid,
    /// The subject, as assigned to the teacher in the class.
    #[schema(example = "Matematica")]
    pub subject: String,
    /// The proposed grade as written, on the subject's scale (`7`, `6½`, `buono`).
    #[schema(example = "7")]
    pub mark: String,
}

/// Enters a teacher's proposal for a student in their subject; a later one replaces it. The
/// scrutinio's view pre-fills it from the term's average (rule 2).
#[utoipa::path(post, path = "/schools/{school}/classes/{class}/years/{year}/scrutini/{term}/proposals",
    tag = "scrutini",
    params(("school" = Uuid, Path, description = "The school"),
        ("class" = Uuid, Path, description = "The class"),
        ("year" = i32, Path, description = "The year the school year starts in"),
        ("term" = u8, Path, description = "The term's number, from 1")),
    request_body = Propose,
    responses((status = 201, description = "Entered", body = Written)))]
pub async fn propose(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    PathIds(ids): TermPath,
    headers: HeaderMap,
    Json(body): Json<Propose>,
) -> Result<Response, ApiError> {
    let (_, class, year, term) = ids;
    known_class(&caller, class)?;
    let subject = body.subject.trim().to_owned();
    let cmd = ScrutinyCommand::Propose {
        term,
        student: PersonId::from_uuid(body.student),
        mark: mark_on_scale(&caller, &subject, &body.mark)?,
        subject,
    };
    run(
        &state,
        &caller,
        &headers,
        (class, school_year(year)?),
        cmd,
        None,
    )
    .await
}

fn mark_on_scale(caller: &Caller, subject: &str, text: &str) -> Result<Mark, ApiError> {
    let scale = caller
        .directory
        .subject_scale(subject)
        .ok_or_else(|| ApiError::Unprocessable(format!("materia sconosciuta: {subject}")))?;
    mark(scale.into(), text)
}

/// The council's session.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordSession {
    /// The day it sat.
    #[schema(value_type = String, format = Date, example = "2025-12-22")]
    #[serde(with = "registro_domain::iso_date")]
    pub date: Date,
    /// The members present: the class's teachers, the principal, and substitutes.
    #[schema(example = json!(["0199b3a4-7c1e-7d2a-9f00-3b5c2e8d4a10"]))]
    pub attendees: BTreeSet<Uuid>,
    /// Absent teacher → their substitute (who is among the attendees).
    #[serde(default)]
    #[schema(example = json!({}))]
    pub substitutes: BTreeMap<Uuid, Uuid>,
}

impl RecordSession {
    /// The day, the members present and absent member → substitute, as the domain takes them.
    fn members(self) -> (Date, BTreeSet<PersonId>, BTreeMap<PersonId, PersonId>) {
        (
            self.date,
            self.attendees
                .into_iter()
                .map(PersonId::from_uuid)
                .collect(),
            self.substitutes
                .into_iter()
                .map(|(a, s)| (PersonId::from_uuid(a), PersonId::from_uuid(s)))
                .collect(),
        )
    }
}

/// Records the council's session (seduta): who sat, and who substituted an absent member.
/// Recording it again replaces it.
#[utoipa::path(post, path = "/schools/{school}/classes/{class}/years/{year}/scrutini/{term}/session",
    tag = "scrutini",
    params(("school" = Uuid, Path, description = "The school"),
        ("class" = Uuid, Path, description = "The class"),
        ("year" = i32, Path, description = "The year the school year starts in"),
        ("term" = u8, Path, description = "The term's number, from 1")),
    request_body = RecordSession,
    responses((status = 201, description = "Recorded", body = Written)))]
pub async fn session(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    PathIds(ids): TermPath,
    headers: HeaderMap,
    Json(body): Json<RecordSession>,
) -> Result<Response, ApiError> {
    let (_, class, year, term) = ids;
    known_class(&caller, class)?;
    let (date, attendees, substitutes) = body.members();
    let cmd = ScrutinyCommand::RecordSession {
        term,
        date,
        attendees,
        substitutes,
    };
    run(
        &state,
        &caller,
        &headers,
        (class, school_year(year)?),
        cmd,
        None,
    )
    .await
}

/// The council's vote.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VoteBody {
    /// Who voted against (none: unanimous).
    #[serde(default)]
    #[schema(example = json!([]))]
    pub dissenting: BTreeSet<Uuid>,
}

impl VoteBody {
    fn vote(self) -> Vote {
        if self.dissenting.is_empty() {
            Vote::Unanimous
        } else {
            Vote::Majority {
                dissenting: self
                    .dissenting
                    .into_iter()
                    .map(PersonId::from_uuid)
                    .collect(),
            }
        }
    }
}

/// A student's deliberated grades.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Deliberate {
    /// The student.
    #[schema(example = "0199b3a4-7c1e-7d2a-9f00-3b5c2e8d4a10")]
    pub student: Uuid,
    /// Subject → final grade as written, for every subject the class is taught.
    #[schema(example = json!({"Matematica": "6", "Religione": "buono"}))]
    pub grades: BTreeMap<String, String>,
    /// Conduct, a whole grade out of 10 (secondary schools; none in primary).
    #[serde(default)]
    #[schema(example = "8")]
    pub conduct: Option<String>,
    /// The vote.
    #[serde(default)]
    pub vote: VoteBody,
}

/// Deliberates a student's final grades and conduct, with the council's vote; a later
/// deliberation in the same scrutinio replaces it.
#[utoipa::path(post, path = "/schools/{school}/classes/{class}/years/{year}/scrutini/{term}/deliberations",
    tag = "scrutini",
    params(("school" = Uuid, Path, description = "The school"),
        ("class" = Uuid, Path, description = "The class"),
        ("year" = i32, Path, description = "The year the school year starts in"),
        ("term" = u8, Path, description = "The term's number, from 1")),
    request_body = Deliberate,
    responses((status = 201, description = "Deliberated", body = Written)))]
pub async fn deliberate(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    PathIds(ids): TermPath,
    headers: HeaderMap,
    Json(body): Json<Deliberate>,
) -> Result<Response, ApiError> {
    let (_, class, year, term) = ids;
    known_class(&caller, class)?;
    let mut grades = BTreeMap::new();
    for (subject, text) in body.grades {
        let subject = subject.trim().to_owned();
        grades.insert(subject.clone(), mark_on_scale(&caller, &subject, &text)?);
    }
    let conduct = match body.conduct {
        None => None,
        Some(text) => match mark(crate::register::Scale::Numeric, &text)? {
            Mark::Numeric(v) => Some(v),
            _ => None,
        },
    };
    let cmd = ScrutinyCommand::Deliberate {
        term,
        student: PersonId::from_uuid(body.student),
        grades,
        conduct,
        vote: body.vote.vote(),
    };
    run(
        &state,
        &caller,
        &headers,
        (class, school_year(year)?),
        cmd,
        None,
    )
    .await
}

/// An exemption of absences from the limit (deroga).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Exempt {
    /// The student.
    #[schema(example = "0199b3a4-7c1e-7d2a-9f00-3b5c2e8d4a10")]
    pub student: Uuid,
    /// The first day covered.
    #[schema(value_type = String, format = Date, example = "2026-02-02")]
    #[serde(with = "registro_domain::iso_date")]
    pub from: Date,
    /// The last day covered.
    #[schema(value_type = String, format = Date, example = "2026-03-03")]
    #[serde(with = "registro_domain::iso_date")]
    pub to: Date,
    /// health, therapy, sport, religious or family.
    #[schema(value_type = String, example = "health")]
    pub reason: ExemptionReason,
    /// The vote.
    #[serde(default)]
    pub vote: VoteBody,
}

/// Exempts a student's documented, continuous absences from the attendance limit (rule 1):
/// their hours no longer count.
#[utoipa::path(post, path = "/schools/{school}/classes/{class}/years/{year}/scrutini/{term}/exemptions",
    tag = "scrutini",
    params(("school" = Uuid, Path, description = "The school"),
        ("class" = Uuid, Path, description = "The class"),
        ("year" = i32, Path, description = "The year the school year starts in"),
        ("term" = u8, Path, description = "The term's number, from 1")),
    request_body = Exempt,
    responses((status = 201, description = "Exempted", body = Written)))]
pub async fn exempt(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    PathIds(ids): TermPath,
    headers: HeaderMap,
    Json(body): Json<Exempt>,
) -> Result<Response, ApiError> {
    let (_, class, year, term) = ids;
    known_class(&caller, class)?;
    let cmd = ScrutinyCommand::Exempt {
        term,
        student: PersonId::from_uuid(body.student),
        exemption: Exemption {
            from: body.from,
            to: body.to,
            reason: body.reason,
        },
        vote: body.vote.vote(),
    };
    run(
        &state,
        &caller,
        &headers,
        (class, school_year(year)?),
        cmd,
        None,
    )
    .await
}

/// A year-end outcome.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecideOutcome {
    /// The student.
    #[schema(example = "0199b3a4-7c1e-7d2a-9f00-3b5c2e8d4a10")]
    pub student: Uuid,
    /// admitted, judgement_suspended or not_admitted.
    #[schema(example = "judgement_suspended")]
    pub outcome: OutcomeKind,
    /// With a suspended judgement: the subjects to recover.
    #[serde(default)]
    #[schema(example = json!(["Matematica"]))]
    pub subjects: BTreeSet<String>,
    /// With a suspended judgement: whether the citizenship assignment is due (conduct 6).
    #[serde(default)]
    #[schema(example = false)]
    pub citizenship: bool,
    /// The reasons (required to admit with subjects below 6).
    #[serde(default)]
    #[schema(example = "")]
    pub reasons: String,
    /// The vote.
    #[serde(default)]
    pub vote: VoteBody,
}

/// An outcome's kind.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeKind {
    /// Ammesso.
    Admitted,
    /// Giudizio sospeso.
    JudgementSuspended,
    /// Non ammesso.
    NotAdmitted,
}

/// Deliberates a student's year-end outcome at the final scrutinio (`term` is the year's
/// last). Outcomes the law forbids are refused with the reason: over the absence limit without
/// exemption, or conduct below 6, only not admitted; conduct 6 in upper secondary, only
/// judgement suspended with the citizenship assignment.
#[utoipa::path(post, path = "/schools/{school}/classes/{class}/years/{year}/scrutini/{term}/outcomes",
    tag = "scrutini",
    params(("school" = Uuid, Path, description = "The school"),
        ("class" = Uuid, Path, description = "The class"),
        ("year" = i32, Path, description = "The year the school year starts in"),
        ("term" = u8, Path, description = "The final term's number")),
    request_body = DecideOutcome,
    responses((status = 201, description = "Deliberated", body = Written)))]
pub async fn decide_outcome(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    PathIds(ids): TermPath,
    headers: HeaderMap,
    Json(body): Json<DecideOutcome>,
) -> Result<Response, ApiError> {
    let (_, class, year, term) = ids;
    let year = final_scrutinio(&caller, class, year, term)?;
    let student = PersonId::from_uuid(body.student);
    let outcome = match body.outcome {
        OutcomeKind::Admitted => Outcome::Admitted,
        OutcomeKind::NotAdmitted => Outcome::NotAdmitted,
        OutcomeKind::JudgementSuspended => Outcome::JudgementSuspended {
            subjects: body.subjects,
            citizenship: body.citizenship,
        },
    };
    let cmd = ScrutinyCommand::DecideOutcome {
        student,
        outcome,
        vote: body.vote.vote(),
        reasons: body.reasons,
    };
    run(&state, &caller, &headers, (class, year), cmd, Some(student)).await
}

/// The school year of a command of the final scrutinio: the class must be the school's, the
/// year a school year, and `term` the year's last.
fn final_scrutinio(
    caller: &Caller,
    class: ClassId,
    year: i32,
    term: u8,
) -> Result<SchoolYear, ApiError> {
    known_class(caller, class)?;
    let year = school_year(year)?;
    final_term(caller, year, term)?;
    Ok(year)
}

/// Refuses a term that is not the year's last: outcomes are the final scrutinio's.
fn final_term(caller: &Caller, year: SchoolYear, term: u8) -> Result<(), ApiError> {
    let count = caller.directory.terms(year).map_or(0, |t| t.terms().len());
    if usize::from(term) == count {
        Ok(())
    } else {
        Err(ApiError::Unprocessable(ScrutinyError::NotFinal.to_string()))
    }
}

/// Closes a term's scrutinio (chiusura): every student deliberated (and, at the final one,
/// every outcome). The class's grades and absences dated in the term are then locked.
#[utoipa::path(post, path = "/schools/{school}/classes/{class}/years/{year}/scrutini/{term}/closure",
    tag = "scrutini",
    params(("school" = Uuid, Path, description = "The school"),
        ("class" = Uuid, Path, description = "The class"),
        ("year" = i32, Path, description = "The year the school year starts in"),
        ("term" = u8, Path, description = "The term's number, from 1")),
    responses((status = 201, description = "Closed", body = Written)))]
pub async fn close(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    PathIds(ids): TermPath,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (_, class, year, term) = ids;
    known_class(&caller, class)?;
    let cmd = ScrutinyCommand::Close { term };
    run(
        &state,
        &caller,
        &headers,
        (class, school_year(year)?),
        cmd,
        None,
    )
    .await
}

/// A reopening.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Reopen {
    /// Why (kept in the history).
    #[schema(example = "errore materiale nel voto di Storia")]
    pub reason: String,
}

/// Reopens a closed scrutinio (riapertura): the principal only, with a reason. The term is
/// unlocked until it is closed again; both stay in the history.
#[utoipa::path(post, path = "/schools/{school}/classes/{class}/years/{year}/scrutini/{term}/reopening",
    tag = "scrutini",
    params(("school" = Uuid, Path, description = "The school"),
        ("class" = Uuid, Path, description = "The class"),
        ("year" = i32, Path, description = "The year the school year starts in"),
        ("term" = u8, Path, description = "The term's number, from 1")),
    request_body = Reopen,
    responses((status = 201, description = "Reopened", body = Written)))]
pub async fn reopen(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    PathIds(ids): TermPath,
    headers: HeaderMap,
    Json(body): Json<Reopen>,
) -> Result<Response, ApiError> {
    let (_, class, year, term) = ids;
    known_class(&caller, class)?;
    let cmd = ScrutinyCommand::Reopen {
        term,
        reason: body.reason,
    };
    run(
        &state,
        &caller,
        &headers,
        (class, school_year(year)?),
        cmd,
        None,
    )
    .await
}

/// Publishes the term's report cards to the families (pubblicazione delle pagelle): the
/// principal, once the scrutinio is closed. They then show in the family view; reopening the
/// scrutinio withdraws them until they are published again.
#[utoipa::path(post, path = "/schools/{school}/classes/{class}/years/{year}/scrutini/{term}/publication",
    tag = "scrutini",
    params(("school" = Uuid, Path, description = "The school"),
        ("class" = Uuid, Path, description = "The class"),
        ("year" = i32, Path, description = "The year the school year starts in"),
        ("term" = u8, Path, description = "The term's number, from 1")),
    responses((status = 201, description = "Published", body = Written)))]
pub async fn publish(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    PathIds(ids): TermPath,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (_, class, year, term) = ids;
    known_class(&caller, class)?;
    let cmd = ScrutinyCommand::Publish { term };
    run(
        &state,
        &caller,
        &headers,
        (class, school_year(year)?),
        cmd,
        None,
    )
    .await
}

/// The integration scrutinio's decision.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Resolve {
    /// The student.
    #[schema(example = "0199b3a4-7c1e-7d2a-9f00-3b5c2e8d4a10")]
    pub student: Uuid,
    /// Admitted (true) or not admitted.
    #[schema(example = true)]
    pub admitted: bool,
    /// The vote.
    #[serde(default)]
    pub vote: VoteBody,
}

/// Resolves a suspended judgement at the integration scrutinio (scrutinio integrativo), once
/// the final scrutinio is closed: admitted or not admitted.
#[utoipa::path(post, path = "/schools/{school}/classes/{class}/years/{year}/scrutini/{term}/integration",
    tag = "scrutini",
    params(("school" = Uuid, Path, description = "The school"),
        ("class" = Uuid, Path, description = "The class"),
        ("year" = i32, Path, description = "The year the school year starts in"),
        ("term" = u8, Path, description = "The final term's number")),
    request_body = Resolve,
    responses((status = 201, description = "Resolved", body = Written)))]
pub async fn integrate(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    PathIds(ids): TermPath,
    headers: HeaderMap,
    Json(body): Json<Resolve>,
) -> Result<Response, ApiError> {
    let (_, class, year, term) = ids;
    let year = final_scrutinio(&caller, class, year, term)?;
    let cmd = ScrutinyCommand::ResolveSuspended {
        student: PersonId::from_uuid(body.student),
        admitted: body.admitted,
        vote: body.vote.vote(),
    };
    run(&state, &caller, &headers, (class, year), cmd, None).await
}

/// Records the integration scrutinio's session (seduta dello scrutinio integrativo), once the
/// final scrutinio is closed with suspended judgements to resolve: its day (after the final
/// one), who sat, and who substituted an absent member. Its votes are checked against these
/// members. Recording it again replaces it.
#[utoipa::path(post,
    path = "/schools/{school}/classes/{class}/years/{year}/scrutini/{term}/integration-session",
    tag = "scrutini",
    params(("school" = Uuid, Path, description = "The school"),
        ("class" = Uuid, Path, description = "The class"),
        ("year" = i32, Path, description = "The year the school year starts in"),
        ("term" = u8, Path, description = "The final term's number")),
    request_body = RecordSession,
    responses((status = 201, description = "Recorded", body = Written)))]
pub async fn integration_session(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    PathIds(ids): TermPath,
    headers: HeaderMap,
    Json(body): Json<RecordSession>,
) -> Result<Response, ApiError> {
    let (_, class, year, term) = ids;
    let year = final_scrutinio(&caller, class, year, term)?;
    let (date, attendees, substitutes) = body.members();
    let cmd = ScrutinyCommand::RecordIntegrationSession {
        date,
        attendees,
        substitutes,
    };
    run(&state, &caller, &headers, (class, year), cmd, None).await
}

/// The withdrawal of an outcome.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WithdrawOutcome {
    /// The student.
    #[schema(example = "0199b3a4-7c1e-7d2a-9f00-3b5c2e8d4a10")]
    pub student: Uuid,
    /// Why.
    #[schema(example = "voto di Italiano trascritto male")]
    pub reason: String,
}

/// Withdraws a student's year-end outcome at the final scrutinio while it is open (a closed one
/// is reopened by the principal first), with the reason: the council can then correct the
/// grades it was decided on and decide the outcome again, before closing. The minutes list the
/// withdrawal.
#[utoipa::path(post,
    path = "/schools/{school}/classes/{class}/years/{year}/scrutini/{term}/outcomes/withdrawal",
    tag = "scrutini",
    params(("school" = Uuid, Path, description = "The school"),
        ("class" = Uuid, Path, description = "The class"),
        ("year" = i32, Path, description = "The year the school year starts in"),
        ("term" = u8, Path, description = "The final term's number")),
    request_body = WithdrawOutcome,
    responses((status = 201, description = "Withdrawn", body = Written)))]
pub async fn withdraw_outcome(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    PathIds(ids): TermPath,
    headers: HeaderMap,
    Json(body): Json<WithdrawOutcome>,
) -> Result<Response, ApiError> {
    let (_, class, year, term) = ids;
    let year = final_scrutinio(&caller, class, year, term)?;
    let cmd = ScrutinyCommand::WithdrawOutcome {
        student: PersonId::from_uuid(body.student),
        reason: body.reason,
    };
    run(&state, &caller, &headers, (class, year), cmd, None).await
}

/// A subject's line for one student in the scrutinio.
#[derive(Debug, Serialize, ToSchema)]
pub struct SubjectLine {
    /// The subject.
    #[schema(example = "Matematica")]
    pub subject: String,
    /// The term's weighted average, two decimals (numeric subjects with grades; never in
    /// primary schools).
    #[schema(example = "6.50")]
    pub average: Option<String>,
    /// The proposal: the teacher's, else pre-filled from the average rounded half up.
    #[schema(example = "7")]
    pub proposal: Option<String>,
    /// Whether a teacher entered the proposal (false: pre-filled).
    #[schema(example = true)]
    pub proposed_by_teacher: bool,
    /// The final grade deliberated.
    #[schema(example = "7")]
    pub final_grade: Option<String>,
}

/// One student's line in the scrutinio.
#[derive(Debug, Serialize, ToSchema)]
pub struct StudentLine {
    /// The student.
    #[schema(example = "0199b3a4-7c1e-7d2a-9f00-3b5c2e8d4a10")]
    pub student: Uuid,
    /// Per subject.
    pub subjects: Vec<SubjectLine>,
    /// Whether the council deliberated the student's grades in this term.
    #[schema(example = true)]
    pub deliberated: bool,
    /// Conduct deliberated.
    #[schema(example = "8")]
    pub conduct: Option<String>,
    /// The hours missed this year that count toward the limit (exemptions left out).
    #[schema(example = 42)]
    pub absence_hours: u32,
    /// The hours exempted from the limit.
    #[schema(example = 0)]
    pub exempted_hours: u32,
    /// The most hours that may be missed (a quarter of the annual hours).
    #[schema(example = 264)]
    pub max_absence_hours: Option<u32>,
    /// Whether the hours that count are over the limit.
    #[schema(example = false)]
    pub over_limit: bool,
    /// The outcome registro proposes (final scrutinio, once grades are deliberated; rule 4,
    /// with the school's most subjects to recover).
    #[schema(example = "admitted")]
    pub proposed_outcome: Option<String>,
    /// The outcome deliberated.
    #[schema(example = "admitted")]
    pub outcome: Option<String>,
    /// With a suspended judgement: the subjects to recover.
    #[schema(example = json!([]))]
    pub subjects_to_recover: Vec<String>,
    /// The integration scrutinio's result of a suspended judgement: admitted or not_admitted.
    #[schema(example = json!(null))]
    pub resolved: Option<String>,
}

/// A term's scrutinio.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScrutinyView {
    /// The term's number.
    #[schema(example = 1)]
    pub term: u8,
    /// The class's school level: primary, lower_secondary or upper_secondary.
    #[schema(example = "upper_secondary")]
    pub level: String,
    /// open or closed.
    #[schema(example = "open")]
    pub status: String,
    /// Whether it is the final scrutinio.
    #[schema(example = false)]
    pub is_final: bool,
    /// Whether its report cards are published to the families.
    #[schema(example = false)]
    pub published: bool,
    /// The reasons it was reopened for.
    #[schema(example = json!([]))]
    pub reopened: Vec<String>,
    /// The council's session day, once recorded.
    #[schema(example = "2026-02-05")]
    pub session_date: Option<String>,
    /// The council's members present, once the session is recorded.
    #[schema(example = json!(["0199b3a4-7c1e-7d2a-9f00-3b5c2e8d4a10"]))]
    pub attendees: Vec<Uuid>,
    /// Per student of the class.
    pub students: Vec<StudentLine>,
}

/// Reading a term's scrutinio.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ViewQuery {
    /// Read your writes: answer only once the report includes this position of the school's
    /// log (the `position` a command answered). The read waits briefly (2 s by default) for
    /// the report to catch up, then answers 503 with `Retry-After: 1`; a position beyond the
    /// school's log is 422.
    #[param(example = 1042)]
    #[serde(default, deserialize_with = "crate::json::position")]
    pub min_position: Option<u64>,
}

fn student_line(s: report::StudentReport) -> StudentLine {
    let subjects_to_recover = s.subjects_to_recover();
    StudentLine {
        student: s.student,
        subjects: s
            .subjects
            .into_iter()
            .map(|l| SubjectLine {
                subject: l.subject,
                average: l.average.map(|a| a.to_string()),
                proposal: l.proposal.map(|m| m.to_string()),
                proposed_by_teacher: l.proposed_by.is_some(),
                final_grade: l.final_grade.map(|m| m.to_string()),
            })
            .collect(),
        deliberated: s.deliberated,
        conduct: s.conduct.map(|c| c.to_string()),
        absence_hours: s.absence_hours,
        exempted_hours: s.exempted_hours,
        max_absence_hours: s.limit.map(|l| l.max_absence_hours),
        over_limit: s.over_limit,
        proposed_outcome: s.proposed_outcome.as_ref().map(|o| o.kind().to_owned()),
        outcome: s.outcome.as_ref().map(|o| o.kind().to_owned()),
        subjects_to_recover,
        resolved: s.resolved,
    }
}

/// A term's scrutinio as it stands, from the scrutiny report (`projections/scrutiny`), per
/// student and subject: averages, proposals (pre-filled from the averages, rule 2), final
/// grades, conduct, absence hours against the limit with those exempted, and at the final
/// scrutinio the outcome registro proposes beside the one deliberated. For the principal and
/// the class's teachers; recorded in the access log.
#[utoipa::path(get, path = "/schools/{school}/classes/{class}/years/{year}/scrutini/{term}",
    tag = "scrutini",
    params(("school" = Uuid, Path, description = "The school"),
        ("class" = Uuid, Path, description = "The class"),
        ("year" = i32, Path, description = "The year the school year starts in"),
        ("term" = u8, Path, description = "The term's number, from 1"), ViewQuery),
    responses((status = 200, description = "The scrutinio", body = ScrutinyView),
        (status = 422, description = "A `min_position` beyond the school's log", body = Problem,
            content_type = "application/problem+json"),
        (status = 503, description = "The report has not caught up with `min_position` yet \
            (`Retry-After: 1`) or is not ready; or the service or the identity provider is \
            unavailable", body = Problem, content_type = "application/problem+json")))]
pub async fn view(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    PathIds(ids): TermPath,
    QueryOf(query): QueryOf<ViewQuery>,
) -> Result<axum::Json<ScrutinyView>, ApiError> {
    let (_, class, year, term) = ids;
    let dir = &caller.directory;
    let roster = dir.class(class).ok_or(ApiError::NotFound)?;
    let year = school_year(year)?;
    let students: Vec<Uuid> = roster.students.iter().map(|s| *s.as_uuid()).collect();
    let read = report::term_rows(
        state.store.as_ref(),
        caller.school,
        *class.as_uuid(),
        year.start_year(),
        term,
        &students,
    );
    let rows = read_projection(
        &state,
        report::NAME,
        caller.school,
        query.min_position,
        read,
    )
    .await?
    .ok_or_else(|| {
        ApiError::NotFoundDetail("lo scrutinio di questo periodo non è stato aperto".into())
    })?;
    let subjects: BTreeSet<String> = roster.teachers.iter().map(|(_, s)| s.clone()).collect();
    let settings = dir.scrutiny_settings();
    let ctx = scrutiny::Context {
        class,
        year,
        actor: caller.person,
        directory: dir,
        settings,
        absences: &[],
    };
    let limits: BTreeMap<Uuid, AnnualLimit> = roster
        .students
        .iter()
        .filter_map(|s| Some((*s.as_uuid(), ctx.limit(*s)?)))
        .collect();
    let period = periods(&caller, year)
        .into_iter()
        .nth(usize::from(term).saturating_sub(1))
        .map(|(_, from, to)| (from, to));
    let report = report::report(
        &rows,
        &report::Roster {
            students: &students,
            subjects: &subjects,
            period,
            limits: &limits,
            max_subjects_to_recover: settings.max_subjects_to_recover,
        },
    );
    record_read(&state, &caller, roster.students.clone(), "class.scrutiny").await?;
    Ok(axum::Json(ScrutinyView {
        term,
        level: report.level.name().to_owned(),
        status: report.status,
        is_final: report.is_final,
        published: report.published,
        reopened: report.reopened,
        session_date: report.session_date,
        attendees: report.attendees,
        students: report.students.into_iter().map(student_line).collect(),
    }))
}

/// A member of the council, as the minutes name them.
#[derive(Debug, Serialize, ToSchema)]
pub struct Member {
    /// Their id.
    #[schema(example = "0199b3a4-7c1e-7d2a-9f00-3b5c2e8d4a10")]
    pub id: Uuid,
    /// Their name, as the directory has it.
    #[schema(example = "Rossi Anna")]
    pub name: String,
}

/// An absent member and their substitute.
#[derive(Debug, Serialize, ToSchema)]
pub struct Substitution {
    /// The absent member.
    pub absent: Member,
    /// Who sat in their place.
    pub substitute: Member,
}

/// A vote, as the minutes record it.
#[derive(Debug, Serialize, ToSchema)]
pub struct VoteRecord {
    /// unanimous or majority.
    #[schema(example = "majority")]
    pub kind: String,
    /// Who voted against.
    pub dissenting: Vec<Member>,
}

/// One deliberation of the minutes.
#[derive(Debug, Serialize, ToSchema)]
pub struct MinuteEntry {
    /// The student.
    pub student: Member,
    /// Subject → final grade as written.
    #[schema(example = json!({"Matematica": "6"}))]
    pub grades: BTreeMap<String, String>,
    /// Conduct.
    #[schema(example = "8")]
    pub conduct: Option<String>,
    /// The vote on the grades.
    pub vote: VoteRecord,
    /// The outcome deliberated (final scrutinio): admitted, judgement_suspended,
    /// not_admitted.
    #[schema(example = "admitted")]
    pub outcome: Option<String>,
    /// What registro proposed.
    #[schema(example = "admitted")]
    pub proposed_outcome: Option<String>,
    /// The subjects to recover.
    #[schema(example = json!([]))]
    pub subjects_to_recover: Vec<String>,
    /// The vote on the outcome.
    pub outcome_vote: Option<VoteRecord>,
    /// The council's reasons for the outcome.
    #[schema(example = "")]
    pub reasons: String,
    /// The absence exemptions this council granted: from, to, reason.
    #[schema(example = json!([["2026-02-02", "2026-03-03", "health"]]))]
    pub exemptions: Vec<(String, String, String)>,
}

/// The minutes (verbale) of a term's scrutinio.
#[derive(Debug, Serialize, ToSchema)]
pub struct Minutes {
    /// The class's name.
    #[schema(example = "4A")]
    pub class: String,
    /// The school year.
    #[schema(example = "2025/26")]
    pub year: String,
    /// The term's name.
    #[schema(example = "pentamestre")]
    pub term: String,
    /// Whether it is the final scrutinio.
    #[schema(example = true)]
    pub is_final: bool,
    /// open or closed.
    #[schema(example = "closed")]
    pub status: String,
    /// The day the council sat.
    #[schema(example = "2026-06-12", format = Date)]
    pub date: Option<String>,
    /// Who was present.
    pub present: Vec<Member>,
    /// Who substituted an absent member.
    pub substitutes: Vec<Substitution>,
    /// The deliberations, student by student.
    pub deliberations: Vec<MinuteEntry>,
    /// The reasons the scrutinio was reopened for, in order.
    #[schema(example = json!([]))]
    pub reopened: Vec<String>,
    /// The outcomes withdrawn at the reopened final scrutinio, in order.
    pub withdrawn_outcomes: Vec<Withdrawal>,
    /// The integration scrutinio, at the final one once it sat.
    pub integration: Option<IntegrationMinutes>,
    /// Whether the report cards are published.
    #[schema(example = false)]
    pub published: bool,
}

/// An outcome withdrawn, as the minutes record it.
#[derive(Debug, Serialize, ToSchema)]
pub struct Withdrawal {
    /// The student.
    pub student: Member,
    /// Why.
    #[schema(example = "voto di Italiano trascritto male")]
    pub reason: String,
}

/// The integration scrutinio (scrutinio integrativo), as the minutes record it.
#[derive(Debug, Serialize, ToSchema)]
pub struct IntegrationMinutes {
    /// The day the council sat.
    #[schema(example = "2026-08-31", format = Date)]
    pub date: String,
    /// Who was present.
    pub present: Vec<Member>,
    /// Who substituted an absent member.
    pub substitutes: Vec<Substitution>,
    /// Its decisions, student by student.
    pub resolutions: Vec<Resolution>,
}

/// A suspended judgement resolved at the integration scrutinio.
#[derive(Debug, Serialize, ToSchema)]
pub struct Resolution {
    /// The student.
    pub student: Member,
    /// admitted or not_admitted.
    #[schema(example = "admitted")]
    pub outcome: String,
    /// The vote.
    pub vote: VoteRecord,
}

/// Who sat at a session, and who substituted whom.
fn sitting(dir: &Directory, session: &scrutiny::Session) -> (Vec<Member>, Vec<Substitution>) {
    (
        session.attendees.iter().map(|p| member(dir, *p)).collect(),
        session
            .substitutes
            .iter()
            .map(|(a, b)| Substitution {
                absent: member(dir, *a),
                substitute: member(dir, *b),
            })
            .collect(),
    )
}

fn member(dir: &Directory, id: PersonId) -> Member {
    Member {
        id: *id.as_uuid(),
        name: dir
            .person(id)
            .map(|p| format!("{} {}", p.family_name, p.given_name))
            .unwrap_or_default(),
    }
}

fn vote_record(dir: &Directory, vote: &Vote) -> VoteRecord {
    match vote {
        Vote::Unanimous => VoteRecord {
            kind: "unanimous".into(),
            dissenting: Vec::new(),
        },
        Vote::Majority { dissenting } => VoteRecord {
            kind: "majority".into(),
            dissenting: dissenting.iter().map(|p| member(dir, *p)).collect(),
        },
    }
}

/// The minutes (verbale) of a term's scrutinio, generated from its deliberations: the session
/// (date, who was present, substitutes), each student's final grades and conduct with the vote,
/// exemptions, and at the final scrutinio the outcome with what registro proposed, the vote and
/// the reasons; the reopenings with their reasons. For the principal and the class's teachers;
/// recorded in the access log.
#[utoipa::path(get, path = "/schools/{school}/classes/{class}/years/{year}/scrutini/{term}/minutes",
    tag = "scrutini",
    params(("school" = Uuid, Path, description = "The school"),
        ("class" = Uuid, Path, description = "The class"),
        ("year" = i32, Path, description = "The year the school year starts in"),
        ("term" = u8, Path, description = "The term's number, from 1")),
    responses((status = 200, description = "The minutes", body = Minutes)))]
pub async fn minutes(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    PathIds(ids): TermPath,
) -> Result<axum::Json<Minutes>, ApiError> {
    let (_, class, year, term) = ids;
    let dir = &caller.directory;
    let roster = dir.class(class).ok_or(ApiError::NotFound)?;
    let year = school_year(year)?;
    let (_, scrutiny) = scrutiny_of(&state, caller.school, class, year).await?;
    let scrutiny = scrutiny.state;
    let t = scrutiny.term(term).ok_or_else(|| {
        ApiError::NotFoundDetail("lo scrutinio di questo periodo non è stato aperto".into())
    })?;
    let term_name = term_name(&caller, year, term);
    let deliberations = t
        .deliberations
        .iter()
        .map(|(student, d)| {
            let outcome = scrutiny.outcome(*student).filter(|_| t.is_final);
            MinuteEntry {
                student: member(dir, *student),
                grades: d
                    .grades
                    .iter()
                    .map(|(s, m)| (s.clone(), m.to_string()))
                    .collect(),
                conduct: d.conduct.map(|c| c.to_string()),
                vote: vote_record(dir, &d.vote),
                outcome: outcome.map(|o| o.outcome.kind().to_owned()),
                proposed_outcome: outcome.map(|o| o.proposed.kind().to_owned()),
                subjects_to_recover: match outcome.map(|o| &o.outcome) {
                    Some(Outcome::JudgementSuspended { subjects, .. }) => {
                        subjects.iter().cloned().collect()
                    }
                    _ => Vec::new(),
                },
                outcome_vote: outcome.map(|o| vote_record(dir, &o.vote)),
                reasons: outcome.map(|o| o.reasons.clone()).unwrap_or_default(),
                // The exemptions this term's council granted.
                exemptions: scrutiny
                    .exemptions_with_terms(*student)
                    .filter(|(granted, _)| *granted == term)
                    .map(|(_, e)| {
                        (
                            e.from.to_string(),
                            e.to.to_string(),
                            serde_json::to_value(e.reason)
                                .ok()
                                .and_then(|v| v.as_str().map(str::to_owned))
                                .unwrap_or_default(),
                        )
                    })
                    .collect(),
            }
        })
        .collect();
    let session = t.session.as_ref();
    let integration = scrutiny.integration().filter(|_| t.is_final).map(|s| {
        let (present, substitutes) = sitting(dir, s);
        IntegrationMinutes {
            date: s.date.to_string(),
            present,
            substitutes,
            resolutions: t
                .deliberations
                .keys()
                .filter_map(|student| {
                    let o = scrutiny.outcome(*student)?;
                    Some(Resolution {
                        student: member(dir, *student),
                        outcome: if o.resolved? {
                            "admitted"
                        } else {
                            "not_admitted"
                        }
                        .to_owned(),
                        vote: vote_record(dir, o.resolution_vote.as_ref()?),
                    })
                })
                .collect(),
        }
    });
    let withdrawn_outcomes = scrutiny
        .withdrawn_outcomes()
        .iter()
        .filter(|_| t.is_final)
        .map(|(student, reason)| Withdrawal {
            student: member(dir, *student),
            reason: reason.clone(),
        })
        .collect();
    let (present, substitutes) = session.map(|s| sitting(dir, s)).unwrap_or_default();
    record_read(
        &state,
        &caller,
        t.deliberations.keys().copied(),
        "class.minutes",
    )
    .await?;
    Ok(axum::Json(Minutes {
        class: roster.name.clone(),
        year: year.to_string(),
        term: term_name,
        is_final: t.is_final,
        status: t.status.name().to_owned(),
        date: session.map(|s| s.date.to_string()),
        present,
        substitutes,
        deliberations,
        reopened: t.reopened.clone(),
        withdrawn_outcomes,
        integration,
        published: t.published,
    }))
}
