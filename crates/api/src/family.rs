//! The family view over HTTP, read from its projection (`projections/family`, ADR 0020): one
//! student's school year as the family sees it, for the student's guardians, the student and
//! the staff who may read the record (a staff read goes to the access log). An overview, and
//! its long lists a page at a time, newest first. Responses carry an `ETag`; a request with a
//! matching `If-None-Match` is answered `304 Not Modified` without a body.

// utoipa's expansion of `params(...)` names the parameter types by path.
#![allow(unused_qualifications)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse as _, Response};
use registro_domain::attendance::AnnualLimit;
use registro_domain::calendar::SchoolYear;
use registro_domain::grade::{Average, GradeValue, Weight};
use registro_domain::{PersonId, Role, SchoolId};
use registro_projection_family as view;
use registro_store::Batch;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, Problem};
use crate::json::{PathIds, QueryOf};
use crate::overview_cache::{OverviewCopy, OverviewKey};
use crate::projections::read_projection;

use crate::register::{italian_today, periods, school_year, term_name};
use crate::school::{known_student, record_read};

/// How many upcoming homework, tests and meetings the overview shows.
const UPCOMING: u32 = 10;

/// A term's weighted average of one subject.
#[derive(Debug, Serialize, ToSchema)]
pub struct TermAverage {
    /// The term (or `anno` when the school year has no terms planned).
    #[schema(example = "primo trimestre")]
    pub term: String,
    /// The weighted average of the counted numeric grades, two decimals (rule 2).
    #[schema(example = "6.50")]
    pub average: String,
    /// The same, in hundredths.
    #[schema(example = 650)]
    pub hundredths: u16,
    /// The whole grade it rounds to (the teacher's proposal at the scrutinio starts here).
    #[schema(example = 7)]
    pub proposal: u8,
}

/// One subject's grades in brief.
#[derive(Debug, Serialize, ToSchema)]
pub struct SubjectSummary {
    /// The subject.
    #[schema(example = "Matematica")]
    pub subject: String,
    /// How many grades it has (annulled ones left out).
    #[schema(example = 4)]
    pub grades: u32,
    /// The latest grade, as written.
    #[schema(example = "7½")]
    pub latest: Option<String>,
    /// The averages of the terms that have numeric grades.
    pub averages: Vec<TermAverage>,
}

/// Absences against the annual limit (rules.md section 1).
#[derive(Debug, Serialize, ToSchema)]
pub struct AttendanceSummary {
    /// Whole-day absences (cancelled entries left out).
    #[schema(example = 3)]
    pub absences: u32,
    /// Late entries.
    #[schema(example = 1)]
    pub late_entries: u32,
    /// Early exits.
    #[schema(example = 0)]
    pub early_exits: u32,
    /// The lesson hours missed that count toward the limit (hours the council exempted left
    /// out).
    #[schema(example = 17)]
    pub missed_hours: u32,
    /// Entries whose justification is still to be given or was rejected.
    #[schema(example = 1)]
    pub to_justify: u32,
    /// The personalised annual hours (monte ore), when the class has a timetable.
    #[schema(example = 1056)]
    pub annual_hours: Option<u32>,
    /// The most hours that may be missed (a quarter of the annual hours).
    #[schema(example = 264)]
    pub max_absence_hours: Option<u32>,
    /// The hours missed in percent of the annual hours, one decimal.
    #[schema(example = "1.6")]
    pub percent: Option<String>,
    /// The highest warning passed: 10, 15 or 20 (percent).
    #[schema(example = 10)]
    pub warning_percent: Option<u8>,
    /// Whether the limit is passed: the year cannot be validated without an exemption.
    #[schema(example = false)]
    pub over_limit: bool,
}

/// Homework or a test of the class.
#[derive(Debug, Serialize, ToSchema)]
pub struct AgendaItem {
    /// The homework or test.
    #[schema(example = "0199b3a4-7c1e-7d2a-9f00-3b5c2e8d4a10")]
    pub id: Uuid,
    /// homework or test.
    #[schema(example = "homework")]
    pub kind: String,
    /// When homework is due, or the test's day.
    #[schema(example = "2025-10-08", format = Date)]
    pub date: String,
    /// When homework was given.
    #[schema(example = "2025-10-06", format = Date)]
    pub assigned_on: Option<String>,
    /// The subject.
    #[schema(example = "Matematica")]
    pub subject: String,
    /// What to do, or what the test is on.
    #[schema(example = "Esercizi a pagina 42")]
    pub text: String,
}

/// A booked parent-teacher meeting (colloquio).
#[derive(Debug, Serialize, ToSchema)]
pub struct MeetingItem {
    /// The slot.
    #[schema(example = "0199b3a4-7c1e-7d2a-9f00-3b5c2e8d4a10")]
    pub slot: Uuid,
    /// The teacher.
    #[schema(example = "0199b3a4-7c1e-7d2a-9f00-3b5c2e8d4a10")]
    pub teacher: Option<Uuid>,
    /// The day.
    #[schema(example = "2025-10-15", format = Date)]
    pub date: String,
    /// When it starts, HH:MM.
    #[schema(example = "16:00")]
    pub start: String,
    /// When it ends, HH:MM.
    #[schema(example = "16:30")]
    pub end: String,
    /// Where.
    #[schema(example = "Aula 12")]
    pub place: String,
    /// The guardian who booked it.
    #[schema(example = "0199b3a4-7c1e-7d2a-9f00-3b5c2e8d4a10")]
    pub guardian: Uuid,
    /// Why the teacher cancelled it, if they did.
    #[schema(example = json!(null))]
    pub cancelled: Option<String>,
}

/// A published report card (pagella, documento di valutazione) of one term.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReportCardItem {
    /// The class it was deliberated in.
    #[schema(example = "0199b3a4-7c1e-7d2a-9f00-3b5c2e8d4a10")]
    pub class: Uuid,
    /// The term's number, from 1.
    #[schema(example = 2)]
    pub term: u8,
    /// Whether it is the year's final one.
    #[schema(example = true)]
    pub is_final: bool,
    /// Subject → final grade as written.
    #[schema(example = json!({"Matematica": "6", "Religione": "buono"}))]
    pub grades: BTreeMap<String, String>,
    /// Conduct (secondary schools).
    #[schema(example = 8)]
    pub conduct: Option<u8>,
    /// The final one's outcome: admitted, judgement_suspended or not_admitted.
    #[schema(example = "admitted")]
    pub outcome: Option<String>,
    /// With a suspended judgement: the subjects to recover.
    #[schema(example = json!([]))]
    pub subjects_to_recover: Vec<String>,
    /// With a suspended judgement: whether the active-citizenship assignment is due.
    #[schema(example = false)]
    pub citizenship: bool,
    /// The integration scrutinio's outcome, once it resolved a suspended judgement.
    #[schema(example = json!(null))]
    pub resolved: Option<String>,
}

fn report_card_item(r: view::ReportCardRow) -> ReportCardItem {
    ReportCardItem {
        class: r.class,
        term: r.term,
        is_final: r.is_final,
        grades: r.grades,
        conduct: r.conduct,
        outcome: r.outcome,
        subjects_to_recover: r.subjects_to_recover,
        citizenship: r.citizenship,
        resolved: r.resolved,
    }
}

/// The communications to the family in brief.
#[derive(Debug, Serialize, ToSchema)]
pub struct CommunicationsSummary {
    /// How many this school year (withdrawn ones left out).
    #[schema(example = 12)]
    pub total: u32,
    /// How many the caller has not read (presa visione).
    #[schema(example = 2)]
    pub unread: u32,
    /// How many ask a consent for the student that is not answered, before their deadline.
    #[schema(example = 1)]
    pub consents_pending: u32,
}

/// One student's school year, as the family sees it.
#[derive(Debug, Serialize, ToSchema)]
pub struct FamilyOverview {
    /// The student.
    #[schema(example = "0199b3a4-7c1e-7d2a-9f00-3b5c2e8d4a10")]
    pub student: Uuid,
    /// The school year.
    #[schema(example = "2025/26")]
    pub year: String,
    /// The student's class now.
    #[schema(example = "0199b3a4-7c1e-7d2a-9f00-3b5c2e8d4a10")]
    pub class: Option<Uuid>,
    /// Grades and averages per subject, by subject name.
    pub subjects: Vec<SubjectSummary>,
    /// Absences, late entries and early exits against the annual limit.
    pub attendance: AttendanceSummary,
    /// Notes to the student or their class (annulled ones left out).
    #[schema(example = 1)]
    pub notes: u32,
    /// The class's homework and tests from today on, soonest first (at most ten).
    pub upcoming: Vec<AgendaItem>,
    /// Communications to the family.
    pub communications: CommunicationsSummary,
    /// Booked meetings from today on, soonest first (at most ten).
    pub meetings: Vec<MeetingItem>,
    /// The year's published report cards, latest term first.
    pub report_cards: Vec<ReportCardItem>,
}

fn agenda_item(a: view::AgendaRow) -> AgendaItem {
    AgendaItem {
        id: a.id,
        kind: a.kind,
        date: a.date,
        assigned_on: a.assigned_on,
        subject: a.subject,
        text: a.text,
    }
}

fn meeting_item(b: view::BookingRow) -> MeetingItem {
    MeetingItem {
        slot: b.slot,
        teacher: b.teacher,
        date: b.date,
        start: b.start,
        end: b.end,
        place: b.place,
        guardian: b.guardian,
        cancelled: b.cancelled,
    }
}

fn subjects(caller: &Caller, year: SchoolYear, grades: &[view::GradeRow]) -> Vec<SubjectSummary> {
    let periods = periods(caller, year);
    let mut by_subject: BTreeMap<&str, Vec<&view::GradeRow>> = BTreeMap::new();
    for g in grades.iter().filter(|g| g.annulled.is_none()) {
        by_subject.entry(g.subject.as_str()).or_default().push(g);
    }
    by_subject
        .into_iter()
        .map(|(subject, rows)| {
            let averages = periods
                .iter()
                .filter_map(|(term, from, to)| {
                    let (from, to) = (view::iso(*from), view::iso(*to));
                    let average = Average::of(rows.iter().filter_map(|g| {
                        let dated = from.as_str() <= g.date.as_str() && g.date <= to;
                        let value = GradeValue::from_hundredths(g.hundredths?).ok()?;
                        let weight = Weight::from_hundredths(g.weight).ok()?;
                        (g.counted && dated).then_some((value, weight))
                    }))?;
                    Some(TermAverage {
                        term: term.clone(),
                        average: average.to_string(),
                        hundredths: average.hundredths(),
                        proposal: average.proposal(),
                    })
                })
                .collect();
            SubjectSummary {
                subject: subject.to_owned(),
                grades: u32::try_from(rows.len()).unwrap_or(u32::MAX),
                // Rows come newest first.
                latest: rows.first().map(|g| g.mark.clone()),
                averages,
            }
        })
        .collect()
}

fn attendance_summary(
    caller: &Caller,
    student: PersonId,
    entries: &[view::AttendanceRow],
    exempted: &[registro_domain::attendance::Exemption],
) -> AttendanceSummary {
    let kept: Vec<_> = entries.iter().filter(|e| e.cancelled.is_none()).collect();
    let count = |kind: &str| {
        u32::try_from(kept.iter().filter(|e| e.kind == kind).count()).unwrap_or(u32::MAX)
    };
    // The hours that count: those missed, less those the council exempted (deroghe, rule 1).
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let days: Vec<(time::Date, u32)> = kept
        .iter()
        .filter_map(|e| Some((time::Date::parse(&e.date, format).ok()?, e.hours)))
        .collect();
    let missed_hours = registro_domain::attendance::counted_hours(&days, exempted);
    let limit = caller
        .directory
        .class_of(student)
        .and_then(|c| caller.directory.timetable(c))
        .map(|t| {
            AnnualLimit::for_weekly_hours(
                t.weekly_hours(&caller.directory.exempt_subjects(student)),
            )
        })
        .filter(|l| l.annual_hours > 0);
    AttendanceSummary {
        absences: count("absence"),
        late_entries: count("late_entry"),
        early_exits: count("early_exit"),
        missed_hours,
        to_justify: u32::try_from(
            kept.iter()
                .filter(|e| matches!(e.justification.as_str(), "missing" | "rejected"))
                .count(),
        )
        .unwrap_or(u32::MAX),
        annual_hours: limit.map(|l| l.annual_hours),
        max_absence_hours: limit.map(|l| l.max_absence_hours),
        percent: limit.map(|l| {
            let tenths = u64::from(missed_hours) * 1000 / u64::from(l.annual_hours);
            format!("{}.{}", tenths / 10, tenths % 10)
        }),
        warning_percent: limit
            .and_then(|l| l.warning(missed_hours))
            .map(|w| w.percent()),
        over_limit: limit.is_some_and(|l| l.is_over(missed_hours)),
    }
}

/// The people of the student's family whose receipts are shown: their guardians and the
/// student.
fn family_of(caller: &Caller, student: PersonId) -> Vec<Uuid> {
    let mut people: BTreeSet<Uuid> = caller
        .directory
        .guardians_of(student)
        .map(|g| *g.as_uuid())
        .collect();
    people.insert(*student.as_uuid());
    people.into_iter().collect()
}

/// The communications a reader of the view sees: to the families when a guardian reads, to
/// the students when the student does, to either when staff read what the family sees.
fn addressees<'a>(
    caller: &Caller,
    student: PersonId,
    class: Option<Uuid>,
    family: &'a [Uuid],
) -> view::Addressees<'a> {
    let groups: &'static [&'static str] = match caller.role {
        Role::Guardian => &["families"],
        Role::Student => &["students"],
        _ => &["families", "students"],
    };
    view::Addressees {
        student: *student.as_uuid(),
        class,
        groups,
        readers: family,
    }
}

/// The family view's rows an overview is made of, and the stamp they stand at.
struct Rows {
    stamp: u64,
    grades: Vec<view::GradeRow>,
    entries: Vec<view::AttendanceRow>,
    notes: Vec<view::NoteRow>,
    agenda: Vec<view::AgendaRow>,
    communications: Vec<view::CommunicationRow>,
    meetings: Vec<view::BookingRow>,
    cards: Vec<view::ReportCardRow>,
    exempted: Vec<registro_domain::attendance::Exemption>,
}

/// The student's school year as the family sees it: grades and term averages per subject,
/// absences against the annual limit with its warnings, notes, the coming homework, tests and
/// meetings, and the communications still to read or answer. For the student's guardians, the
/// student, and the staff who may read the record (recorded in the access log).
#[utoipa::path(get, path = "/schools/{school}/students/{student}/years/{year}/family",
    tag = "family",
    params(("school" = Uuid, Path, description = "The school"),
        ("student" = Uuid, Path, description = "The student"),
        ("year" = i32, Path, description = "The year the school year starts in"),
        OverviewQuery,
        ("If-None-Match" = Option<String>, Header, description = "The ETag of a copy the client holds")),
    responses(
        (status = 200, description = "The overview", body = FamilyOverview,
            headers(("ETag" = String, description = "This version of the view"))),
        (status = 304, description = "Not modified since the ETag given"),
        (status = 422, description = "A `min_position` beyond the school's log", body = Problem,
            content_type = "application/problem+json"),
        (status = 503, description = "The view has not caught up with `min_position` yet \
            (`Retry-After: 1`) or is not ready; or the service or the identity provider is \
            unavailable", body = Problem, content_type = "application/problem+json")))]
pub async fn overview(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    PathIds(ids): PathIds<(SchoolId, PersonId, i32)>,
    QueryOf(query): QueryOf<OverviewQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (_, student, year) = ids;
    let year = school_year(year)?;
    known_student(&caller, student)?;
    let store = state.store.as_ref();
    let (school, id, y) = (caller.school, *student.as_uuid(), year.start_year());
    let class = caller.directory.class_of(student).map(|c| *c.as_uuid());
    let today = italian_today(&state);
    let today_iso = view::iso(today);
    let family = family_of(&caller, student);
    let to = addressees(&caller, student, class, &family);
    // The scopes whose stamps say whether a copy is current: every row the overview reads
    // belongs to one of them (projections/family, `STAMPS`).
    let mut scopes = vec![id, *school.as_uuid(), *caller.person.as_uuid()];
    scopes.extend(class);
    scopes.extend(family.iter().copied());
    scopes.sort_unstable();
    scopes.dedup();
    let key = OverviewKey {
        school,
        student,
        year: y,
        reader: caller.person,
        role: caller.role,
        today,
        directory: caller.directory_version,
    };
    if let Some(copy) = state.overview.get(&key, Instant::now()) {
        let read = view::stamp(school, &scopes).run(store, school);
        let stamp = read_projection(&state, view::NAME, school, query.min_position, read).await?;
        if stamp == copy.stamp {
            record_read(&state, &caller, [student], "family.overview").await?;
            state.metrics.overview(true);
            return tagged_bytes(&headers, &copy.etag, copy.body.to_vec());
        }
    }
    // One snapshot, one round trip.
    let reads = async {
        let mut batch = Batch::default();
        let stamp = batch.add(view::stamp(school, &scopes));
        let grades = batch.add(view::grades(school, id, y, None));
        let entries = batch.add(view::attendance(school, id, y, None));
        let notes = batch.add(view::notes(school, id, class, y, None));
        let agenda = class.map(|c| batch.add(view::upcoming_agenda(school, c, y, today, UPCOMING)));
        let communications = batch.add(view::communications(school, y, to, None));
        let meetings = batch.add(view::upcoming_bookings(school, id, y, today, UPCOMING));
        let cards = batch.add(view::report_cards(school, id, y));
        let exempted = batch.add(view::exemptions(school, id, y));
        let answers = batch.run(store, school).await?;
        Ok(Rows {
            stamp: answers.take(stamp)?,
            grades: answers.take(grades)?,
            entries: answers.take(entries)?,
            notes: answers.take(notes)?,
            agenda: match agenda {
                Some(agenda) => answers.take(agenda)?,
                None => Vec::new(),
            },
            communications: answers.take(communications)?,
            meetings: answers.take(meetings)?,
            cards: answers.take(cards)?,
            exempted: answers.take(exempted)?,
        })
    };
    let Rows {
        stamp,
        grades,
        entries,
        notes,
        agenda,
        communications,
        meetings,
        cards,
        exempted,
    } = read_projection(&state, view::NAME, school, query.min_position, reads).await?;
    let me = *caller.person.as_uuid();
    let live: Vec<_> = communications
        .iter()
        .filter(|c| c.withdrawn.is_none())
        .collect();
    let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    let body = FamilyOverview {
        student: id,
        year: year.to_string(),
        class,
        subjects: subjects(&caller, year, &grades),
        attendance: attendance_summary(&caller, student, &entries, &exempted),
        notes: count(notes.iter().filter(|n| n.annulled.is_none()).count()),
        upcoming: agenda.into_iter().map(agenda_item).collect(),
        communications: CommunicationsSummary {
            total: count(live.len()),
            unread: count(
                live.iter()
                    .filter(|c| !c.receipts.iter().any(|(p, _)| *p == me))
                    .count(),
            ),
            consents_pending: count(
                live.iter()
                    .filter(|c| {
                        c.consent.is_none()
                            && c.consent_deadline
                                .as_deref()
                                .is_some_and(|d| d >= today_iso.as_str())
                    })
                    .count(),
            ),
        },
        meetings: meetings.into_iter().map(meeting_item).collect(),
        report_cards: cards.into_iter().map(report_card_item).collect(),
    };
    record_read(&state, &caller, [student], "family.overview").await?;
    let bytes = serde_json::to_vec(&body).map_err(|e| ApiError::Internal(e.into()))?;
    let etag = etag_of(&bytes);
    let copy = OverviewCopy {
        stamp,
        body: Arc::from(bytes.as_slice()),
        etag: Arc::from(etag.as_str()),
    };
    state.overview.put(key, copy, Instant::now());
    state.metrics.overview(false);
    tagged_bytes(&headers, &etag, bytes)
}

/// A list of the family view.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Section {
    /// The grades.
    Grades,
    /// Absences, late entries and early exits.
    Attendance,
    /// Notes to the student and to their class.
    Notes,
    /// The class's homework and tests.
    Agenda,
    /// The communications to the family.
    Communications,
    /// The booked meetings.
    Meetings,
    /// The published report cards (pagelle) of the year.
    ReportCards,
}

impl Section {
    const fn view(self) -> &'static str {
        match self {
            Self::Grades => "family.grades",
            Self::Attendance => "family.attendance",
            Self::Notes => "family.notes",
            Self::Agenda => "family.agenda",
            Self::Communications => "family.communications",
            Self::Meetings => "family.meetings",
            Self::ReportCards => "family.report_cards",
        }
    }
}

/// Which page of a list.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Where the page starts: the previous page's `next`.
    pub cursor: Option<String>,
    /// At most this many items (default 50, at most 500).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// Read your writes: answer only once the view includes this position of the school's
    /// log (the `position` a command answered); see the overview.
    #[param(example = 1042)]
    #[serde(default, deserialize_with = "crate::json::position")]
    pub min_position: Option<u64>,
}

/// Reading the overview.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct OverviewQuery {
    /// Read your writes: answer only once the view includes this position of the school's
    /// log (the `position` a command answered). The read waits briefly (2 s by default) for
    /// the view to catch up, then answers 503 with `Retry-After: 1`; a position beyond the
    /// school's log is 422.
    #[param(example = 1042)]
    #[serde(default, deserialize_with = "crate::json::position")]
    pub min_position: Option<u64>,
}

/// A grade.
#[derive(Debug, Serialize, ToSchema)]
pub struct GradeItem {
    /// The grade.
    #[schema(example = "0199b3a4-7c1e-7d2a-9f00-3b5c2e8d4a10")]
    pub id: Uuid,
    /// The subject.
    #[schema(example = "Matematica")]
    pub subject: String,
    /// The day of the test.
    #[schema(example = "2025-10-06", format = Date)]
    pub date: String,
    /// written, oral, practical or other.
    #[schema(example = "written")]
    pub kind: String,
    /// numeric, judgement or level.
    #[schema(example = "numeric")]
    pub scale: String,
    /// The mark as written.
    #[schema(example = "7½")]
    pub mark: String,
    /// A numeric mark in hundredths.
    #[schema(example = 750)]
    pub hundredths: Option<u16>,
    /// Its weight in the average, two decimals.
    #[schema(example = "1.00")]
    pub weight: String,
    /// Whether it counts in the average.
    #[schema(example = true)]
    pub counted: bool,
    /// What it is for.
    #[schema(example = "Verifica sulle equazioni")]
    pub description: String,
    /// Whether the teacher corrected it.
    #[schema(example = false)]
    pub corrected: bool,
    /// Why it was annulled, if it was.
    #[schema(example = json!(null))]
    pub annulled: Option<String>,
}

/// An absence, late entry or early exit.
#[derive(Debug, Serialize, ToSchema)]
pub struct AttendanceItem {
    /// The entry.
    #[schema(example = "0199b3a4-7c1e-7d2a-9f00-3b5c2e8d4a10")]
    pub id: Uuid,
    /// The day.
    #[schema(example = "2025-10-07", format = Date)]
    pub date: String,
    /// absence, late_entry or early_exit.
    #[schema(example = "absence")]
    pub kind: String,
    /// The time of a late entry or early exit, HH:MM.
    #[schema(example = json!(null))]
    pub at: Option<String>,
    /// The lesson hours missed.
    #[schema(example = 5)]
    pub hours: u32,
    /// Why it was cancelled, if it was.
    #[schema(example = json!(null))]
    pub cancelled: Option<String>,
    /// missing, submitted, accepted or rejected.
    #[schema(example = "accepted")]
    pub justification: String,
    /// Who justified it: guardian or student.
    #[schema(example = "guardian")]
    pub justifier: Option<String>,
}

/// A note.
#[derive(Debug, Serialize, ToSchema)]
pub struct NoteItem {
    /// The note.
    #[schema(example = "0199b3a4-7c1e-7d2a-9f00-3b5c2e8d4a10")]
    pub id: Uuid,
    /// The day.
    #[schema(example = "2025-10-08", format = Date)]
    pub date: String,
    /// disciplinary, annotation or sanction.
    #[schema(example = "disciplinary")]
    pub kind: String,
    /// What happened.
    #[schema(example = "Disturba la lezione")]
    pub text: String,
    /// Whether it was written to the whole class.
    #[schema(example = false)]
    pub whole_class: bool,
    /// Why it was annulled, if it was.
    #[schema(example = json!(null))]
    pub annulled: Option<String>,
}

/// A communication to the family.
#[derive(Debug, Serialize, ToSchema)]
pub struct CommunicationItem {
    /// The communication.
    #[schema(example = "0199b3a4-7c1e-7d2a-9f00-3b5c2e8d4a10")]
    pub id: Uuid,
    /// circular or notice.
    #[schema(example = "circular")]
    pub kind: String,
    /// A circular's number in its school year.
    #[schema(example = 12)]
    pub number: Option<u32>,
    /// Its title.
    #[schema(example = "Uscita didattica a Firenze")]
    pub title: String,
    /// Its date.
    #[schema(example = "2025-10-06", format = Date)]
    pub date: String,
    /// The attachments' names, hashes and sizes (download them from the communication).
    #[schema(value_type = Vec<crate::communications::AttachmentView>, example = json!([{"hash": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", "name": "programma.pdf", "media_type": "application/pdf", "size": 48213}]))]
    pub attachments: serde_json::Value,
    /// Why it was withdrawn, if it was.
    #[schema(example = json!(null))]
    pub withdrawn: Option<String>,
    /// Whether the caller has read it (presa visione).
    #[schema(example = true)]
    pub read_by_me: bool,
    /// Who of the family (the guardians and the student) has read it.
    #[schema(example = json!(["0199b3a4-7c1e-7d2a-9f00-3b5c2e8d4a10"]))]
    pub read_by: Vec<Uuid>,
    /// The last day to answer the consent asked, if one is asked.
    #[schema(example = "2025-10-20", format = Date)]
    pub consent_deadline: Option<String>,
    /// The consent given for the student: given or refused; none while unanswered.
    #[schema(example = "given")]
    pub consent: Option<String>,
    /// Who answered it.
    #[schema(example = "0199b3a4-7c1e-7d2a-9f00-3b5c2e8d4a10")]
    pub consent_by: Option<Uuid>,
}

/// One item of a list: its shape is the section's.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum FamilyItem {
    /// A grade.
    Grade(GradeItem),
    /// An absence, late entry or early exit.
    Attendance(AttendanceItem),
    /// A note.
    Note(NoteItem),
    /// Homework or a test.
    Agenda(AgendaItem),
    /// A communication.
    Communication(CommunicationItem),
    /// A meeting.
    Meeting(MeetingItem),
    /// A report card.
    ReportCard(ReportCardItem),
}

/// A page of a list of the family view.
#[derive(Debug, Serialize, ToSchema)]
pub struct FamilyPage {
    /// The items, newest first.
    pub items: Vec<FamilyItem>,
    /// The `cursor` of the next page, when there may be one.
    #[schema(example = "2025-10-06.0199b3a4-7c1e-7d2a-9f00-3b5c2e8d4a10")]
    pub next: Option<String>,
}

/// A list of the student's school year, a page at a time, newest first: grades, attendance,
/// notes (the student's and the class's), the class's homework and tests, the communications to
/// the family with their receipts and consent, or the booked meetings (all on one page). For
/// the student's guardians, the student, and the staff who may read the record (recorded in
/// the access log).
#[utoipa::path(get, path = "/schools/{school}/students/{student}/years/{year}/family/{section}",
    tag = "family",
    params(("school" = Uuid, Path, description = "The school"),
        ("student" = Uuid, Path, description = "The student"),
        ("year" = i32, Path, description = "The year the school year starts in"),
        ("section" = Section, Path, description = "Which list"),
        PageQuery,
        ("If-None-Match" = Option<String>, Header, description = "The ETag of a copy the client holds")),
    responses(
        (status = 200, description = "A page of the list", body = FamilyPage,
            headers(("ETag" = String, description = "This version of the page"))),
        (status = 304, description = "Not modified since the ETag given"),
        (status = 422, description = "A `limit` out of range, a cursor that is not one, or a \
            `min_position` beyond the school's log", body = Problem,
            content_type = "application/problem+json"),
        (status = 503, description = "The view has not caught up with `min_position` yet \
            (`Retry-After: 1`) or is not ready; or the service or the identity provider is \
            unavailable", body = Problem, content_type = "application/problem+json")))]
pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    PathIds(ids): PathIds<(SchoolId, PersonId, i32, Section)>,
    QueryOf(query): QueryOf<PageQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (_, student, year, section) = ids;
    let year = school_year(year)?;
    known_student(&caller, student)?;
    let limit = query.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::Unprocessable("limit: da 1 a 500".into()));
    }
    let after = match query.cursor.as_deref() {
        None => None,
        Some(c) => Some(view::Cursor::parse(c).ok_or_else(|| {
            ApiError::Unprocessable("cursor: non valido (usare `next` della pagina)".into())
        })?),
    };
    let page = view::Page { after, limit };
    let store = state.store.as_ref();
    let (school, id, y) = (caller.school, *student.as_uuid(), year.start_year());
    let class = caller.directory.class_of(student).map(|c| *c.as_uuid());
    let me = *caller.person.as_uuid();
    // Each item with the cursor after it.
    let reads = async {
        Ok(match section {
            Section::Grades => view::grades(school, id, y, Some(&page))
                .run(store, school)
                .await?
                .into_iter()
                .map(|g| {
                    let (date, key) = (g.date.clone(), g.id);
                    let weight = format!("{}.{:02}", g.weight / 100, g.weight % 100);
                    let item = GradeItem {
                        id: g.id,
                        subject: g.subject,
                        date: g.date,
                        kind: g.kind,
                        scale: g.scale,
                        mark: g.mark,
                        hundredths: g.hundredths,
                        weight,
                        counted: g.counted,
                        description: g.description,
                        corrected: g.corrected,
                        annulled: g.annulled,
                    };
                    (FamilyItem::Grade(item), date, key)
                })
                .collect(),
            Section::Attendance => view::attendance(school, id, y, Some(&page))
                .run(store, school)
                .await?
                .into_iter()
                .map(|a| {
                    let (date, key) = (a.date.clone(), a.id);
                    let item = AttendanceItem {
                        id: a.id,
                        date: a.date,
                        kind: a.kind,
                        at: a.at,
                        hours: a.hours,
                        cancelled: a.cancelled,
                        justification: a.justification,
                        justifier: a.justifier,
                    };
                    (FamilyItem::Attendance(item), date, key)
                })
                .collect(),
            Section::Notes => view::notes(school, id, class, y, Some(&page))
                .run(store, school)
                .await?
                .into_iter()
                .map(|n| {
                    let (date, key) = (n.date.clone(), n.id);
                    let item = NoteItem {
                        id: n.id,
                        date: n.date,
                        kind: n.kind,
                        text: n.text,
                        whole_class: n.whole_class,
                        annulled: n.annulled,
                    };
                    (FamilyItem::Note(item), date, key)
                })
                .collect(),
            Section::Agenda => match class {
                Some(c) => view::agenda(school, c, y, None, Some(&page))
                    .run(store, school)
                    .await?
                    .into_iter()
                    .map(|a| {
                        let (date, key) = (a.date.clone(), a.id);
                        (FamilyItem::Agenda(agenda_item(a)), date, key)
                    })
                    .collect(),
                None => Vec::new(),
            },
            Section::Communications => {
                let family = family_of(&caller, student);
                let to = addressees(&caller, student, class, &family);
                view::communications(school, y, to, Some(&page))
                    .run(store, school)
                    .await?
                    .into_iter()
                    .map(|c| {
                        let (date, key) = (c.date.clone(), c.id);
                        let item = CommunicationItem {
                            id: c.id,
                            kind: c.kind,
                            number: c.number,
                            title: c.title,
                            date: c.date,
                            attachments: c.attachments,
                            withdrawn: c.withdrawn,
                            read_by_me: c.receipts.iter().any(|(p, _)| *p == me),
                            read_by: c.receipts.iter().map(|(p, _)| *p).collect(),
                            consent_deadline: c.consent_deadline,
                            consent: c.consent.as_ref().map(|x| x.consent.clone()),
                            consent_by: c.consent.as_ref().map(|x| x.by),
                        };
                        (FamilyItem::Communication(item), date, key)
                    })
                    .collect()
            }
            Section::Meetings => view::bookings(school, id, y)
                .run(store, school)
                .await?
                .into_iter()
                .map(|b| {
                    let (date, key) = (b.date.clone(), b.slot);
                    (FamilyItem::Meeting(meeting_item(b)), date, key)
                })
                .collect(),
            Section::ReportCards => view::report_cards(school, id, y)
                .run(store, school)
                .await?
                .into_iter()
                .map(|r| {
                    let key = r.class;
                    (
                        FamilyItem::ReportCard(report_card_item(r)),
                        String::new(),
                        key,
                    )
                })
                .collect(),
        })
    };
    let items: Vec<(FamilyItem, String, Uuid)> =
        read_projection(&state, view::NAME, school, query.min_position, reads).await?;
    let paged = !matches!(section, Section::Meetings | Section::ReportCards);
    let next = (paged && items.len() == limit as usize)
        .then(|| {
            items
                .last()
                .map(|(_, date, key)| view::Cursor::after(date, *key).to_string())
        })
        .flatten();
    let body = FamilyPage {
        items: items.into_iter().map(|(item, _, _)| item).collect(),
        next,
    };
    record_read(&state, &caller, [student], section.view()).await?;
    tagged(&headers, &body)
}

/// Escapes text for HTML.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The Italian words of an outcome.
fn outcome_words(outcome: &str) -> &'static str {
    match outcome {
        "admitted" => "ammesso/a alla classe successiva",
        "judgement_suspended" => "giudizio sospeso",
        "not_admitted" => "non ammesso/a",
        _ => "",
    }
}

/// The printable report card (pagella) of a published term, as an HTML page to print or save
/// as PDF from the browser: the student, the class, the final grades, conduct and, at the end of
/// the year, the outcome. For the student's guardians, the student and the staff who may read
/// the record (recorded in the access log).
#[utoipa::path(get, path = "/schools/{school}/students/{student}/years/{year}/report-cards/{term}",
    tag = "family",
    params(("school" = Uuid, Path, description = "The school"),
        ("student" = Uuid, Path, description = "The student"),
        ("year" = i32, Path, description = "The year the school year starts in"),
        ("term" = u8, Path, description = "The term's number, from 1")),
    responses(
        (status = 200, description = "The report card, a self-contained HTML page",
            content_type = "text/html"),
        (status = 404, description = "No report card of that term is published",
            body = Problem, content_type = "application/problem+json")))]
pub async fn report_card(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    PathIds(ids): PathIds<(SchoolId, PersonId, i32, u8)>,
) -> Result<Response, ApiError> {
    let (_, student, year, term) = ids;
    let year = school_year(year)?;
    known_student(&caller, student)?;
    let school = caller.school;
    let store = state.store.as_ref();
    let cards = read_projection(
        &state,
        view::NAME,
        school,
        None,
        view::report_cards(school, *student.as_uuid(), year.start_year()).run(store, school),
    )
    .await?;
    let card = cards.into_iter().find(|c| c.term == term).ok_or_else(|| {
        ApiError::NotFoundDetail("la pagella di questo periodo non è pubblicata".into())
    })?;
    let dir = &caller.directory;
    let name = dir
        .person(student)
        .map(|p| format!("{} {}", p.family_name, p.given_name))
        .unwrap_or_default();
    let class = dir
        .class(registro_domain::ClassId::from_uuid(card.class))
        .map(|c| c.name.clone())
        .unwrap_or_default();
    let term_name = term_name(&caller, year, term);
    let mut rows = String::new();
    for (subject, grade) in &card.grades {
        rows.push_str(&format!(
            "<tr><td>{}</td><td>{}</td></tr>\n",
            escape(subject),
            escape(grade)
        ));
    }
    if let Some(conduct) = card.conduct {
        rows.push_str(&format!(
            "<tr><td>Comportamento</td><td>{conduct}</td></tr>\n"
        ));
    }
    let mut outcome = String::new();
    if let Some(o) = &card.outcome {
        outcome.push_str(&format!("<p>Esito: <strong>{}</strong>", outcome_words(o)));
        if !card.subjects_to_recover.is_empty() {
            let subjects: Vec<String> =
                card.subjects_to_recover.iter().map(|s| escape(s)).collect();
            outcome.push_str(&format!(
                " (materie da recuperare: {})",
                subjects.join(", ")
            ));
        }
        if card.citizenship {
            outcome.push_str(" (elaborato di cittadinanza attiva)");
        }
        outcome.push_str("</p>\n");
        if let Some(r) = &card.resolved {
            outcome.push_str(&format!(
                "<p>Scrutinio integrativo: <strong>{}</strong></p>\n",
                outcome_words(r)
            ));
        }
    }
    let page = format!(
        "<!doctype html>\n<html lang=\"it\"><head><meta charset=\"utf-8\">\
         <title>Pagella – {name}</title><style>body{{font-family:serif;margin:2em}}\
         table{{border-collapse:collapse}}td{{border:1px solid #444;padding:.3em .8em}}\
         </style></head><body>\n<h1>Documento di valutazione</h1>\n\
         <p>Alunno/a: <strong>{name}</strong> – classe {class} – anno scolastico {year} – \
         {term_name}</p>\n<table>\n<tr><th>Disciplina</th><th>Voto</th></tr>\n{rows}</table>\n\
         {outcome}</body></html>\n",
        name = escape(&name),
        class = escape(&class),
        term_name = escape(&term_name),
    );
    record_read(&state, &caller, [student], "family.report_card").await?;
    let mut response = page.into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'"),
    );
    Ok(response)
}

/// The body as JSON with a strong `ETag` (a digest of the bytes); `304 Not Modified` when the
/// request's `If-None-Match` names it.
fn tagged<T: Serialize>(headers: &HeaderMap, body: &T) -> Result<Response, ApiError> {
    let bytes = serde_json::to_vec(body).map_err(|e| ApiError::Internal(e.into()))?;
    let etag = etag_of(&bytes);
    tagged_bytes(headers, &etag, bytes)
}

/// The strong `ETag` of a body, quoted: the first half of its SHA-256.
fn etag_of(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    format!("\"{}\"", hex::encode(&digest[..16]))
}

/// JSON `bytes` with their `etag` (see [`tagged`]).
fn tagged_bytes(headers: &HeaderMap, etag: &str, bytes: Vec<u8>) -> Result<Response, ApiError> {
    let matches = headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|tag| tag == "*" || tag.trim_start_matches("W/") == etag);
    let etag = HeaderValue::from_str(etag).map_err(|e| ApiError::Internal(e.into()))?;
    let mut response = if matches {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            bytes,
        )
            .into_response()
    };
    let h = response.headers_mut();
    h.insert(header::ETAG, etag);
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-cache"),
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_on_the_report_card_is_escaped() {
        assert_eq!(
            escape("<script>alert('x')</script> & \"Storia\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;Storia&quot;"
        );
    }
}
