//! The school calendar and the students' grades over HTTP: planning a school year's terms,
//! reading them; giving, correcting and annulling grades; reading a student's grades with their
//! averages per subject and term (`rules.md` section 2).

// utoipa's expansion of `params(...)` names the parameter types by path.
#![allow(unused_qualifications)]

use std::collections::{BTreeMap, BTreeSet};

use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use registro_domain::calendar::{SchoolYear, Term};
use registro_domain::directory::DirectoryCommand;
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
use crate::error::ApiError;
use crate::json::{Json, PathIds};
use crate::school::{Written, command_response, idempotency_key, new_id, record_read};

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
                    RecordError::NotYourSubject => ApiError::Forbidden(detail),
                    RecordError::UnknownGrade => ApiError::NotFoundDetail(detail),
                    RecordError::Closed(_) | RecordError::GradeExists | RecordError::Annulled => {
                        ApiError::Conflict(detail)
                    }
                    RecordError::NotEnrolled
                    | RecordError::OutsideYear(_)
                    | RecordError::SameMark
                    | RecordError::Text => ApiError::Unprocessable(detail),
                }
            }
        }
    }
}

/// A school year from the path (the year it starts in); anything else names nothing.
fn school_year(year: i32) -> Result<SchoolYear, ApiError> {
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
    };
    crate::school::command(&state, &caller, &headers, cmd, StatusCode::OK, None).await
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
    }))
}

/// The scale a mark is written on.
#[derive(Debug, Clone, Copy, Default, Deserialize, ToSchema)]
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
    /// The scale (default numeric).
    #[serde(default)]
    pub scale: Scale,
    /// The mark as written: `7+`, `6½`, `distinto`, `non sufficiente`.
    #[schema(example = "7+")]
    pub mark: String,
    /// Its weight in the average as written (default `1`; `0.5`, `2`...).
    #[schema(example = "1")]
    pub weight: Option<String>,
    /// Whether it counts in the average (default true).
    #[serde(default = "yes")]
    pub counted: bool,
    /// What it is for.
    #[serde(default)]
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

fn mark(scale: Scale, text: &str) -> Result<Mark, ApiError> {
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
    let stream = StreamId::parse(record::stream(student, year))?;
    let store = state.store.as_ref();
    let (directory, school, teacher) = (&state.directory, caller.school, caller.person);
    let (stream_ref, cmd_ref) = (&stream, &cmd);
    // The classes' scrutini cannot be closed yet (the scrutini issue): no term is locked.
    let closed = BTreeSet::new();
    let closed = &closed;
    let decide = move || async move {
        let Snapshot { version, state } =
            fold_stream::<Record>(store, school, stream_ref, Snapshot::default()).await?;
        let directory = directory.current(store, school).await?.state;
        let ctx = record::Context {
            student,
            year,
            teacher,
            directory: &directory,
            closed_terms: closed,
        };
        let events =
            record::decide(&state, cmd_ref, &ctx).map_err(command::CommandError::Refused)?;
        Ok(Decision {
            version,
            events: new_events(events.iter().map(|e| (e.type_name(), e.data())))?,
        })
    };
    let metadata = CommandMetadata::by(caller.person, caller.role);
    let outcome = command::execute(store, school, &stream, metadata, &cmd, key, decide).await?;
    Ok(command_response(StatusCode::CREATED, &outcome, id))
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
        mark: mark(body.scale, &body.mark)?,
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
    pub id: Uuid,
    /// The subject.
    pub subject: String,
    /// written, oral, practical, graphic.
    #[schema(value_type = String)]
    pub kind: GradeKind,
    /// numeric, judgement or level.
    pub scale: &'static str,
    /// The current value as written (`7+`, `distinto`).
    pub mark: String,
    /// For numeric grades, the value in hundredths (725 is 7.25).
    pub hundredths: Option<u16>,
    /// The weight as written.
    pub weight: String,
    /// Whether it counts in the average.
    pub counted: bool,
    /// What it was for.
    pub description: String,
    /// The day of the test.
    #[schema(value_type = String, format = Date)]
    #[serde(with = "registro_domain::iso_date")]
    pub date: Date,
    /// How many times its value was corrected.
    pub corrections: u32,
    /// Why it was annulled, when it was (it then counts in no average).
    pub annulled: Option<String>,
}

/// The average of a subject in a term.
#[derive(Debug, Serialize, ToSchema)]
pub struct AverageView {
    /// The subject.
    pub subject: String,
    /// The term ("anno" when the year's terms are not planned).
    pub term: String,
    /// With two decimals, as shown: `6.53`.
    pub average: String,
    /// In hundredths.
    pub hundredths: u16,
    /// The whole grade a proposal is pre-filled with (the average rounded half up).
    pub proposal: u8,
}

/// A student's grades for a school year.
#[derive(Debug, Serialize, ToSchema)]
pub struct GradesView {
    /// The school year, `2025/26`.
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
    if !caller
        .directory
        .has_role(student, registro_domain::Role::Student)
    {
        return Err(ApiError::NotFound);
    }
    let stream = StreamId::parse(record::stream(student, year))?;
    let record = fold_stream::<Record>(
        state.store.as_ref(),
        caller.school,
        &stream,
        Snapshot::default(),
    )
    .await?
    .state;
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
                mark: match g.mark {
                    Mark::Numeric(v) => v.to_string(),
                    Mark::Judgement(j) => j.to_string(),
                    Mark::Level(l) => l.to_string(),
                },
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
    let periods: Vec<(String, Date, Date)> = match caller.directory.terms(year) {
        Some(terms) => terms
            .terms()
            .iter()
            .map(|t| (t.name.clone(), t.start, t.end))
            .collect(),
        None => vec![("anno".to_owned(), year.first_day(), year.last_day())],
    };
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
