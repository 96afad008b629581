//! The family view (la vista della famiglia): what a student's guardians, the student and the
//! staff allowed to read the record see of one student and school year: grades, absences, late
//! entries and early exits with their justification state, notes, the class's homework and
//! tests, the communications to the family with their receipts and consents, and the booked
//! meetings ([ADR 0020](../../../docs/decisions/0020-family-view.md)).
//!
//! Built by its projector from the events, one row per fact. What depends on the school's
//! directory as it stands (the student's class, the terms of the year, the timetable and the
//! exemptions that give the annual hours) is joined when read, and derived figures (term
//! averages, hours against the limit) are computed when read with the domain's own rules
//! (rules.md sections 1 and 2). Reasons for absences are sealed personal data and never copied
//! here: the view shows a justification's state and who submitted it.

mod read;
mod schema;

pub use read::{
    Addressees, AgendaRow, AttendanceRow, BookingRow, CommunicationRow, ConsentRow, Cursor,
    GradeRow, NoteRow, Page, ReportCardRow, agenda, attendance, bookings, communications,
    exemptions, grades, iso, notes, report_cards, stamp, upcoming_agenda, upcoming_bookings,
};

use registro_domain::StoredEvent as _;
use registro_domain::calendar::SchoolYear;
use registro_domain::class_register::ClassEvent;
use registro_domain::communications::{CatalogueEvent, ReplyEvent};
use registro_domain::meetings::MeetingEvent;
use registro_domain::record::{Mark, RecordEvent};
use registro_domain::scrutiny::{Outcome, ScrutinyEvent};
use registro_domain::timetable::Missed;
use registro_projector::Projection;
use registro_store::{Cell, ProjectionSchema, RecordedEvent, RowOp};
use serde_json::Value;
use time::Date;
use uuid::Uuid;

/// The projection's name.
pub const NAME: &str = "family";

/// Its tables.
pub const TABLES: &[&str] = &[
    "family_grades",
    "family_attendance",
    "family_notes",
    "family_agenda",
    "family_communications",
    "family_receipts",
    "family_consents",
    "family_slots",
    "family_bookings",
    "family_scrutini",
    "family_report_grades",
    "family_outcomes",
    "family_exemptions",
    STAMPS,
];

/// The table of stamps: per school and scope (a student, a person, a class or the school
/// itself), the `school_seq` of the last event that changed a row the overview of a student
/// reads through that scope. A copy of an overview made when the greatest stamp of its scopes
/// was `s` is still what a read would compute while that greatest stamp is `s`
/// ([`stamp`], ADR 0035).
pub const STAMPS: &str = "family_stamps";

/// The family view.
#[derive(Debug, Clone, Copy, Default)]
pub struct FamilyView;

impl Projection for FamilyView {
    fn schema(&self) -> ProjectionSchema {
        ProjectionSchema {
            name: NAME,
            tables: TABLES,
            postgres: schema::POSTGRES,
            sqlite: schema::SQLITE,
        }
    }

    fn apply(&self, event: &RecordedEvent) -> anyhow::Result<Vec<RowOp>> {
        let (mut ops, scope) = facts_of(event)?;
        let stamps = stamps_of(event, &ops, scope)?;
        ops.extend(stamps);
        Ok(ops)
    }
}

/// What an event's rows concern when they do not say: the student of a record, the class of
/// its register, else the whole school; or no overview at all.
#[derive(Debug, Clone, Copy)]
enum Scope {
    Student(Uuid),
    Class(Uuid),
    School,
    Nothing,
}

/// The stamps of the scopes `ops` change (see [`STAMPS`]): a row naming a student is the
/// student's, one naming a person (a receipt) the person's; any other row is the scope the
/// event's stream gives. Each scope once, in a stable order.
fn stamps_of(event: &RecordedEvent, ops: &[RowOp], scope: Scope) -> anyhow::Result<Vec<RowOp>> {
    let school = *event.school_id.as_uuid();
    let seq = Cell::Int(i64::try_from(event.school_seq)?);
    let mut scopes: Vec<Uuid> = Vec::new();
    for op in ops {
        let (key, values): (&[_], &[_]) = match op {
            RowOp::Upsert { key, values, .. } => (key, values),
            RowOp::Delete { key, .. } => (key, &[]),
        };
        let named = |column: &str| {
            key.iter().chain(values).find_map(|(c, v)| match v {
                Cell::Uuid(u) if *c == column => Some(*u),
                _ => None,
            })
        };
        let found = named("student")
            .or_else(|| named("person"))
            .or(match scope {
                Scope::Student(s) | Scope::Class(s) => Some(s),
                Scope::School => Some(school),
                Scope::Nothing => None,
            });
        if let Some(found) = found
            && !scopes.contains(&found)
        {
            scopes.push(found);
        }
    }
    Ok(scopes
        .into_iter()
        .map(|s| RowOp::Upsert {
            table: STAMPS,
            key: vec![("school_id", Cell::Uuid(school)), ("scope", Cell::Uuid(s))],
            values: vec![("seq", seq.clone())],
        })
        .collect())
}

/// The rows of an event, and the scope they concern when they do not name it.
fn facts_of(event: &RecordedEvent) -> anyhow::Result<(Vec<RowOp>, Scope)> {
    let kind = event.event_type.as_str();
    let stream = event.stream_id.as_str();
    let school = Cell::Uuid(*event.school_id.as_uuid());
    let facts = Facts { school, event };
    if RecordEvent::TYPE_NAMES.contains(&kind) {
        let (student, year) = record_stream(stream)?;
        let ops = facts.record(student, year, RecordEvent::from_stored(kind, &event.data)?);
        return Ok((ops, Scope::Student(student)));
    }
    // The class register's signatures and substitutions are not the family's: left
    // unread, so that nothing about them can stop the view.
    if matches!(kind, "LessonSigned" | "SubstituteAssigned") {
        return Ok((Vec::new(), Scope::School));
    }
    if ClassEvent::TYPE_NAMES.contains(&kind) {
        let class = stream_id(stream, "class-")?;
        let ops = facts.class(class, ClassEvent::from_stored(kind, &event.data)?);
        return Ok((ops, Scope::Class(class)));
    }
    if MeetingEvent::TYPE_NAMES.contains(&kind) {
        let teacher = stream_id(stream, "meetings-")?;
        let ops = facts.meeting(teacher, MeetingEvent::from_stored(kind, &event.data)?);
        // A slot just offered has no bookings, and overviews read slots only through their
        // bookings: it changes no overview (teachers offer them by the dozen).
        let scope = if kind == "SlotOffered" {
            Scope::Nothing
        } else {
            Scope::School
        };
        return Ok((ops, scope));
    }
    if CatalogueEvent::TYPE_NAMES.contains(&kind) {
        let ops = facts.catalogue(CatalogueEvent::from_stored(kind, &event.data)?)?;
        return Ok((ops, Scope::School));
    }
    if ReplyEvent::TYPE_NAMES.contains(&kind) {
        let ops = facts.reply(ReplyEvent::from_stored(kind, &event.data)?);
        return Ok((ops, Scope::School));
    }
    if ScrutinyEvent::TYPE_NAMES.contains(&kind) {
        let (class, year) = class_year_stream(stream, "scrutiny-")?;
        let ops = facts.scrutiny(class, year, ScrutinyEvent::from_stored(kind, &event.data)?)?;
        // The council's rows that name no student (a term published) are the school's:
        // a student who changed class still reads their old class's report cards.
        return Ok((ops, Scope::School));
    }
    Ok((Vec::new(), Scope::School))
}

/// The student and school year of a record stream, `student-<student>-<year>`.
fn record_stream(stream: &str) -> anyhow::Result<(Uuid, i32)> {
    let rest = stream
        .strip_prefix("student-")
        .ok_or_else(|| anyhow::anyhow!("a record event on stream {stream}"))?;
    let (student, year) = rest
        .rsplit_once('-')
        .ok_or_else(|| anyhow::anyhow!("a record stream without a year: {stream}"))?;
    Ok((Uuid::parse_str(student)?, year.parse()?))
}

/// The class and school year of a stream named `<prefix><class>-<year>`.
fn class_year_stream(stream: &str, prefix: &str) -> anyhow::Result<(Uuid, i32)> {
    let rest = stream.strip_prefix(prefix).ok_or_else(|| {
        anyhow::anyhow!("expected a stream {prefix}<class>-<year>, found {stream}")
    })?;
    let (class, year) = rest
        .rsplit_once('-')
        .ok_or_else(|| anyhow::anyhow!("a stream without a year: {stream}"))?;
    Ok((Uuid::parse_str(class)?, year.parse()?))
}

/// The id in a stream named `<prefix><id>`.
fn stream_id(stream: &str, prefix: &str) -> anyhow::Result<Uuid> {
    let id = stream
        .strip_prefix(prefix)
        .ok_or_else(|| anyhow::anyhow!("expected a stream {prefix}<id>, found {stream}"))?;
    Ok(Uuid::parse_str(id)?)
}

/// An enum's stored name (`"late_entry"`), as serde writes it.
fn name_of(value: &impl serde::Serialize) -> String {
    match serde_json::to_value(value) {
        Ok(Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => String::new(),
    }
}

fn date(d: Date) -> Cell {
    Cell::Text(iso(d))
}

fn year_cell(year: i32) -> Cell {
    Cell::Int(i64::from(year))
}

fn text(s: &str) -> Cell {
    Cell::Text(s.to_owned())
}

fn id(u: impl Into<Uuid>) -> Cell {
    Cell::Uuid(u.into())
}

/// The scale, the text shown and the hundredths (numeric marks only) of a mark.
fn mark_cells(mark: &Mark) -> Vec<(&'static str, Cell)> {
    let hundredths = match mark {
        Mark::Numeric(v) => Cell::Int(i64::from(v.hundredths())),
        Mark::Judgement(_) | Mark::Level(_) => Cell::Null,
    };
    vec![
        ("scale", Cell::Text(name_of(&mark.scale()))),
        ("mark", Cell::Text(mark.to_string())),
        ("hundredths", hundredths),
    ]
}

struct Facts<'a> {
    school: Cell,
    event: &'a RecordedEvent,
}

impl Facts<'_> {
    fn upsert(
        &self,
        table: &'static str,
        key: (&'static str, Cell),
        values: Vec<(&'static str, Cell)>,
    ) -> RowOp {
        RowOp::Upsert {
            table,
            key: vec![("school_id", self.school.clone()), key],
            values,
        }
    }

    fn record(&self, student: Uuid, year: i32, event: RecordEvent) -> Vec<RowOp> {
        use RecordEvent as E;
        let student = Cell::Uuid(student);
        let op = match event {
            E::GradeRecorded {
                grade,
                class,
                subject,
                kind,
                mark,
                weight,
                counted,
                description,
                date: day,
            } => {
                let mut values = vec![
                    ("student", student),
                    ("year", year_cell(year)),
                    ("class_id", id(class)),
                    ("subject", Cell::Text(subject)),
                    ("date", date(day)),
                    ("kind", Cell::Text(name_of(&kind))),
                    ("weight", Cell::Int(i64::from(weight.hundredths()))),
                    ("counted", Cell::Bool(counted)),
                    ("description", Cell::Text(description)),
                ];
                values.extend(mark_cells(&mark));
                self.upsert("family_grades", ("grade_id", id(grade)), values)
            }
            E::GradeCorrected { grade, mark, .. } => {
                let mut values = mark_cells(&mark);
                values.push(("corrected", Cell::Bool(true)));
                self.upsert("family_grades", ("grade_id", id(grade)), values)
            }
            E::GradeAnnulled { grade, reason } => self.upsert(
                "family_grades",
                ("grade_id", id(grade)),
                vec![("annulled", Cell::Text(reason))],
            ),
            E::AttendanceRecorded {
                entry,
                class,
                date: day,
                missed,
                hours,
            } => {
                let (kind, at) = match missed {
                    Missed::WholeDay => ("absence", Cell::Null),
                    Missed::LateEntry(t) => ("late_entry", Cell::Text(read::hhmm(t))),
                    Missed::EarlyExit(t) => ("early_exit", Cell::Text(read::hhmm(t))),
                };
                self.upsert(
                    "family_attendance",
                    ("entry_id", id(entry)),
                    vec![
                        ("student", student),
                        ("year", year_cell(year)),
                        ("class_id", id(class)),
                        ("date", date(day)),
                        ("kind", text(kind)),
                        ("at", at),
                        (
                            "hours",
                            Cell::Int(i64::try_from(hours.len()).unwrap_or(i64::MAX)),
                        ),
                    ],
                )
            }
            E::AttendanceCancelled { entry, reason } => self.upsert(
                "family_attendance",
                ("entry_id", id(entry)),
                vec![("cancelled", Cell::Text(reason))],
            ),
            E::JustificationSubmitted {
                entry, justifier, ..
            } => self.upsert(
                "family_attendance",
                ("entry_id", id(entry)),
                vec![
                    ("justification", text("submitted")),
                    ("justifier", Cell::Text(name_of(&justifier))),
                ],
            ),
            E::JustificationAccepted { entry, .. } => self.upsert(
                "family_attendance",
                ("entry_id", id(entry)),
                vec![("justification", text("accepted"))],
            ),
            E::JustificationRejected { entry, .. } => self.upsert(
                "family_attendance",
                ("entry_id", id(entry)),
                vec![("justification", text("rejected"))],
            ),
            E::NoteRecorded {
                note,
                kind,
                class,
                text: what,
                date: day,
            } => self.upsert(
                "family_notes",
                ("note_id", id(note)),
                vec![
                    ("student", student),
                    ("class_id", id(class)),
                    ("year", year_cell(year)),
                    ("date", date(day)),
                    ("kind", Cell::Text(name_of(&kind))),
                    ("text", Cell::Text(what)),
                ],
            ),
            E::NoteAnnulled { note, reason } => self.upsert(
                "family_notes",
                ("note_id", id(note)),
                vec![("annulled", Cell::Text(reason))],
            ),
            // The view never copies the sealed reasons: nothing to erase here.
            E::SealedDataErased { .. } => return Vec::new(),
        };
        vec![op]
    }

    fn class(&self, class: Uuid, event: ClassEvent) -> Vec<RowOp> {
        use ClassEvent as E;
        let class = Cell::Uuid(class);
        let year = |d: Date| year_cell(SchoolYear::of(d).start_year());
        match event {
            // Left out before they are read (see `apply`).
            E::LessonSigned { .. } | E::SubstituteAssigned { .. } => Vec::new(),
            E::HomeworkAssigned {
                homework,
                subject,
                text: what,
                assigned_on,
                due,
            } => vec![self.upsert(
                "family_agenda",
                ("item_id", id(homework)),
                vec![
                    ("class_id", class),
                    ("year", year(due)),
                    ("kind", text("homework")),
                    ("date", date(due)),
                    ("assigned_on", date(assigned_on)),
                    ("subject", Cell::Text(subject)),
                    ("text", Cell::Text(what)),
                ],
            )],
            E::TestScheduled {
                test,
                subject,
                date: day,
                description,
            } => vec![self.upsert(
                "family_agenda",
                ("item_id", id(test)),
                vec![
                    ("class_id", class),
                    ("year", year(day)),
                    ("kind", text("test")),
                    ("date", date(day)),
                    ("assigned_on", Cell::Null),
                    ("subject", Cell::Text(subject)),
                    ("text", Cell::Text(description)),
                ],
            )],
            E::ClassNoteRecorded {
                note,
                kind,
                text: what,
                date: day,
                ..
            } => vec![self.upsert(
                "family_notes",
                ("note_id", id(note)),
                vec![
                    ("student", Cell::Null),
                    ("class_id", class),
                    ("year", year(day)),
                    ("date", date(day)),
                    ("kind", Cell::Text(name_of(&kind))),
                    ("text", Cell::Text(what)),
                ],
            )],
            E::ClassNoteAnnulled { note, reason } => vec![self.upsert(
                "family_notes",
                ("note_id", id(note)),
                vec![("annulled", Cell::Text(reason))],
            )],
        }
    }

    fn meeting(&self, teacher: Uuid, event: MeetingEvent) -> Vec<RowOp> {
        use MeetingEvent as E;
        let op = match event {
            E::SlotOffered {
                slot,
                date: day,
                start,
                end,
                place,
                ..
            } => self.upsert(
                "family_slots",
                ("slot_id", id(slot)),
                vec![
                    ("teacher", Cell::Uuid(teacher)),
                    ("date", date(day)),
                    ("start_at", Cell::Text(read::hhmm(start))),
                    ("end_at", Cell::Text(read::hhmm(end))),
                    ("place", Cell::Text(place)),
                ],
            ),
            E::SlotCancelled { slot, reason } => self.upsert(
                "family_slots",
                ("slot_id", id(slot)),
                vec![("cancelled", Cell::Text(reason))],
            ),
            E::MeetingBooked {
                slot,
                guardian,
                student,
            } => RowOp::Upsert {
                table: "family_bookings",
                key: vec![
                    ("school_id", self.school.clone()),
                    ("slot_id", id(slot)),
                    ("student", id(student)),
                ],
                values: vec![("guardian", id(guardian))],
            },
            E::BookingCancelled { slot, student, .. } => RowOp::Delete {
                table: "family_bookings",
                key: vec![
                    ("school_id", self.school.clone()),
                    ("slot_id", id(slot)),
                    ("student", id(student)),
                ],
            },
        };
        vec![op]
    }

    fn catalogue(&self, event: CatalogueEvent) -> anyhow::Result<Vec<RowOp>> {
        use CatalogueEvent as E;
        Ok(vec![match event {
            E::CommunicationPublished {
                communication,
                kind,
                number,
                title,
                body,
                audience,
                attachments,
                consent_deadline,
                date: day,
                ..
            } => self.upsert(
                "family_communications",
                ("communication_id", id(communication)),
                vec![
                    ("year", year_cell(SchoolYear::of(day).start_year())),
                    ("kind", Cell::Text(name_of(&kind))),
                    (
                        "number",
                        number.map_or(Cell::Null, |n| Cell::Int(i64::from(n))),
                    ),
                    ("title", Cell::Text(title)),
                    ("body", Cell::Text(body)),
                    ("date", date(day)),
                    (
                        "groups",
                        Cell::Json(serde_json::to_value(&audience.groups)?),
                    ),
                    (
                        "classes",
                        Cell::Json(serde_json::to_value(&audience.classes)?),
                    ),
                    (
                        "consent_deadline",
                        consent_deadline.map_or(Cell::Null, date),
                    ),
                    (
                        "attachments",
                        Cell::Json(serde_json::to_value(&attachments)?),
                    ),
                ],
            ),
            E::CommunicationWithdrawn {
                communication,
                reason,
            } => self.upsert(
                "family_communications",
                ("communication_id", id(communication)),
                vec![("withdrawn", Cell::Text(reason))],
            ),
        }])
    }

    /// The report cards: each term's deliberated grades and conduct, the year's outcome, and
    /// whether the term's report cards are published (the view shows only those).
    fn scrutiny(&self, class: Uuid, year: i32, event: ScrutinyEvent) -> anyhow::Result<Vec<RowOp>> {
        use ScrutinyEvent as E;
        let term_key = |term: u8| {
            vec![
                ("school_id", self.school.clone()),
                ("class_id", Cell::Uuid(class)),
                ("year", year_cell(year)),
                ("term", Cell::Int(i64::from(term))),
            ]
        };
        let student_key = |student: registro_domain::PersonId| {
            vec![
                ("school_id", self.school.clone()),
                ("class_id", Cell::Uuid(class)),
                ("year", year_cell(year)),
                ("student", id(student)),
            ]
        };
        let op = match event {
            E::ScrutinyOpened { term, is_final, .. } => RowOp::Upsert {
                table: "family_scrutini",
                key: term_key(term),
                values: vec![("is_final", Cell::Bool(is_final))],
            },
            E::ReportCardsPublished { term } => RowOp::Upsert {
                table: "family_scrutini",
                key: term_key(term),
                values: vec![("published", Cell::Bool(true))],
            },
            E::ScrutinyReopened { term, .. } => RowOp::Upsert {
                table: "family_scrutini",
                key: term_key(term),
                values: vec![("published", Cell::Bool(false))],
            },
            E::GradesDeliberated {
                term,
                student,
                grades,
                conduct,
                ..
            } => {
                let mut key = term_key(term);
                key.push(("student", id(student)));
                let grades: serde_json::Map<String, Value> = grades
                    .iter()
                    .map(|(subject, mark)| (subject.clone(), Value::String(mark.to_string())))
                    .collect();
                RowOp::Upsert {
                    table: "family_report_grades",
                    key,
                    values: vec![
                        ("grades", Cell::Json(Value::Object(grades))),
                        (
                            "conduct",
                            conduct
                                .map_or(Cell::Null, |c| Cell::Int(i64::from(c.hundredths() / 100))),
                        ),
                    ],
                }
            }
            E::OutcomeDeliberated {
                student, outcome, ..
            } => {
                let kind = outcome.kind();
                let (subjects, citizenship) = match outcome {
                    Outcome::JudgementSuspended {
                        subjects,
                        citizenship,
                    } => (subjects, citizenship),
                    Outcome::Admitted | Outcome::NotAdmitted => (Default::default(), false),
                };
                RowOp::Upsert {
                    table: "family_outcomes",
                    key: student_key(student),
                    values: vec![
                        ("outcome", text(kind)),
                        ("subjects", Cell::Json(serde_json::to_value(&subjects)?)),
                        ("citizenship", Cell::Bool(citizenship)),
                        // A new outcome (after a reopening) awaits its own integration.
                        ("resolved", Cell::Null),
                    ],
                }
            }
            E::SuspensionResolved {
                student, admitted, ..
            } => RowOp::Upsert {
                table: "family_outcomes",
                key: student_key(student),
                values: vec![(
                    "resolved",
                    text(if admitted { "admitted" } else { "not_admitted" }),
                )],
            },
            // The council's exemptions lower the hours that count toward the limit.
            E::AbsencesExempted {
                student, exemption, ..
            } => RowOp::Upsert {
                table: "family_exemptions",
                key: vec![
                    ("school_id", self.school.clone()),
                    ("student", id(student)),
                    ("year", year_cell(year)),
                    ("from_date", date(exemption.from)),
                ],
                values: vec![
                    ("to_date", date(exemption.to)),
                    ("reason", Cell::Text(name_of(&exemption.reason))),
                ],
            },
            // Until it is decided again, the report card shows no outcome.
            E::OutcomeWithdrawn { student, .. } => RowOp::Delete {
                table: "family_outcomes",
                key: student_key(student),
            },
            E::ProposalEntered { .. }
            | E::CouncilConvened { .. }
            | E::IntegrationConvened { .. }
            | E::ScrutinyClosed { .. } => {
                return Ok(Vec::new());
            }
        };
        Ok(vec![op])
    }

    fn reply(&self, event: ReplyEvent) -> Vec<RowOp> {
        let at = Cell::Time(self.event.recorded_at);
        let op = match event {
            // One receipt per reader: the domain refuses a second one.
            ReplyEvent::CommunicationAcknowledged {
                communication,
                reader,
            } => RowOp::Upsert {
                table: "family_receipts",
                key: vec![
                    ("school_id", self.school.clone()),
                    ("communication_id", id(communication)),
                    ("person", id(reader)),
                ],
                values: vec![("at", at)],
            },
            // The latest answer stands.
            ReplyEvent::ConsentAnswered {
                communication,
                student,
                by,
                consent,
            } => RowOp::Upsert {
                table: "family_consents",
                key: vec![
                    ("school_id", self.school.clone()),
                    ("communication_id", id(communication)),
                    ("student", id(student)),
                ],
                values: vec![
                    ("consent", Cell::Text(name_of(&consent))),
                    ("answered_by", id(by)),
                    ("at", at),
                ],
            },
        };
        vec![op]
    }
}
