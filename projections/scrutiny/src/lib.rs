//! The scrutiny report (il prospetto dello scrutinio): for a class and term, per student, the
//! term's averages, the teachers' proposals, the final grades, conduct, the hours of absence
//! against the annual limit with those exempted (deroghe), and at the final scrutinio the
//! outcome registro proposes beside the one deliberated, with the subjects to recover
//! ([ADR 0024](../../../docs/decisions/0024-scrutiny-report.md)).
//!
//! Built by its projector from the events, one row per fact: the scrutiny stream's (the
//! council's session, proposals, deliberations, exemptions, outcomes, closing, reopenings,
//! publication) and, from the students' records, the grades and absences the figures come from.
//! What depends on the school's directory as it stands (the class's students and subjects, the
//! term's dates, each student's annual hours, the school's settings) is joined when read, and
//! the figures are computed when read with the domain's own rules (rules.md sections 1, 2 and
//! 4), like the family view's ([ADR 0020](../../../docs/decisions/0020-family-view.md)).
//! Primary schools show the judgement levels and no numeric averages.

mod read;
mod schema;

pub use read::{Roster, StudentReport, SubjectReport, TermReport, TermRows, report, term_rows};

use registro_domain::StoredEvent as _;
use registro_domain::record::{Mark, RecordEvent};
use registro_domain::scrutiny::ScrutinyEvent;
use registro_projector::Projection;
use registro_store::{Cell, ProjectionSchema, RecordedEvent, RowOp};
use time::Date;
use uuid::Uuid;

/// The projection's name.
pub const NAME: &str = "scrutiny";

/// Its tables.
pub const TABLES: &[&str] = &[
    "scrutiny_terms",
    "scrutiny_reopenings",
    "scrutiny_proposals",
    "scrutiny_deliberations",
    "scrutiny_outcomes",
    "scrutiny_exemptions",
    "scrutiny_grades",
    "scrutiny_absences",
];

/// The scrutiny report.
#[derive(Debug, Clone, Copy, Default)]
pub struct ScrutinyReport;

impl Projection for ScrutinyReport {
    fn schema(&self) -> ProjectionSchema {
        ProjectionSchema {
            name: NAME,
            tables: TABLES,
            postgres: schema::POSTGRES,
            sqlite: schema::SQLITE,
        }
    }

    fn apply(&self, event: &RecordedEvent) -> anyhow::Result<Vec<RowOp>> {
        let kind = event.event_type.as_str();
        let stream = event.stream_id.as_str();
        let facts = Facts {
            school: Cell::Uuid(*event.school_id.as_uuid()),
            school_seq: event.school_seq,
        };
        if RecordEvent::TYPE_NAMES.contains(&kind) {
            let (student, year) = stream_of(stream, "student-")?;
            return facts.record(student, year, RecordEvent::from_stored(kind, &event.data)?);
        }
        if ScrutinyEvent::TYPE_NAMES.contains(&kind) {
            let (class, year) = stream_of(stream, "scrutiny-")?;
            return facts.scrutiny(class, year, ScrutinyEvent::from_stored(kind, &event.data)?);
        }
        Ok(Vec::new())
    }
}

/// The id and school year of a stream named `<prefix><id>-<year>`.
fn stream_of(stream: &str, prefix: &str) -> anyhow::Result<(Uuid, i32)> {
    let rest = stream
        .strip_prefix(prefix)
        .ok_or_else(|| anyhow::anyhow!("expected a stream {prefix}<id>-<year>, found {stream}"))?;
    let (id, year) = rest
        .rsplit_once('-')
        .ok_or_else(|| anyhow::anyhow!("a stream without a year: {stream}"))?;
    Ok((Uuid::parse_str(id)?, year.parse()?))
}

fn date(d: Date) -> Cell {
    Cell::Text(read::iso(d))
}

fn int(n: impl Into<i64>) -> Cell {
    Cell::Int(n.into())
}

fn id(u: impl Into<Uuid>) -> Cell {
    Cell::Uuid(u.into())
}

fn json(value: &impl serde::Serialize) -> anyhow::Result<Cell> {
    Ok(Cell::Json(serde_json::to_value(value)?))
}

/// A numeric mark's hundredths; none for judgements and levels, which are never averaged.
fn hundredths(mark: &Mark) -> Cell {
    match mark {
        Mark::Numeric(v) => int(v.hundredths()),
        Mark::Judgement(_) | Mark::Level(_) => Cell::Null,
    }
}

struct Facts {
    school: Cell,
    school_seq: u64,
}

impl Facts {
    fn by_id(
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

    /// The grades and absences the figures come from; the rest of the record is not the
    /// report's.
    fn record(&self, student: Uuid, year: i32, event: RecordEvent) -> anyhow::Result<Vec<RowOp>> {
        use RecordEvent as E;
        let student = Cell::Uuid(student);
        let op = match event {
            E::GradeRecorded {
                grade,
                subject,
                mark,
                weight,
                counted,
                date: day,
                ..
            } => self.by_id(
                "scrutiny_grades",
                ("grade_id", id(grade)),
                vec![
                    ("student", student),
                    ("year", int(year)),
                    ("subject", Cell::Text(subject)),
                    ("date", date(day)),
                    ("hundredths", hundredths(&mark)),
                    ("weight", int(weight.hundredths())),
                    ("counted", Cell::Bool(counted)),
                ],
            ),
            E::GradeCorrected { grade, mark, .. } => self.by_id(
                "scrutiny_grades",
                ("grade_id", id(grade)),
                vec![("hundredths", hundredths(&mark))],
            ),
            E::GradeAnnulled { grade, .. } => self.by_id(
                "scrutiny_grades",
                ("grade_id", id(grade)),
                vec![("annulled", Cell::Bool(true))],
            ),
            E::AttendanceRecorded {
                entry,
                date: day,
                hours,
                ..
            } => self.by_id(
                "scrutiny_absences",
                ("entry_id", id(entry)),
                vec![
                    ("student", student),
                    ("year", int(year)),
                    ("date", date(day)),
                    ("hours", int(i64::try_from(hours.len())?)),
                ],
            ),
            E::AttendanceCancelled { entry, .. } => self.by_id(
                "scrutiny_absences",
                ("entry_id", id(entry)),
                vec![("cancelled", Cell::Bool(true))],
            ),
            E::JustificationSubmitted { .. }
            | E::JustificationAccepted { .. }
            | E::JustificationRejected { .. }
            | E::NoteRecorded { .. }
            | E::NoteAnnulled { .. }
            | E::SealedDataErased { .. } => return Ok(Vec::new()),
        };
        Ok(vec![op])
    }

    fn scrutiny(&self, class: Uuid, year: i32, event: ScrutinyEvent) -> anyhow::Result<Vec<RowOp>> {
        use ScrutinyEvent as E;
        let key = |term: Option<u8>, student: Option<Uuid>| {
            let mut key = vec![
                ("school_id", self.school.clone()),
                ("class_id", Cell::Uuid(class)),
                ("year", int(year)),
            ];
            key.extend(term.map(|t| ("term", int(t))));
            key.extend(student.map(|s| ("student", Cell::Uuid(s))));
            key
        };
        let upsert = |table, key, values| RowOp::Upsert { table, key, values };
        let op = match event {
            E::ScrutinyOpened {
                term,
                level,
                is_final,
            } => upsert(
                "scrutiny_terms",
                key(Some(term), None),
                vec![
                    ("level", read::name_of(&level)?),
                    ("is_final", Cell::Bool(is_final)),
                ],
            ),
            E::ProposalEntered {
                term,
                student,
                subject,
                mark,
                teacher,
            } => {
                let mut k = key(Some(term), Some(student.into()));
                k.push(("subject", Cell::Text(subject)));
                upsert(
                    "scrutiny_proposals",
                    k,
                    vec![("mark", json(&mark)?), ("teacher", id(teacher))],
                )
            }
            E::CouncilConvened {
                term,
                date: day,
                attendees,
                ..
            } => upsert(
                "scrutiny_terms",
                key(Some(term), None),
                vec![
                    ("session_date", date(day)),
                    ("attendees", json(&attendees)?),
                ],
            ),
            E::GradesDeliberated {
                term,
                student,
                grades,
                conduct,
                ..
            } => upsert(
                "scrutiny_deliberations",
                key(Some(term), Some(student.into())),
                vec![
                    ("grades", json(&grades)?),
                    (
                        "conduct",
                        conduct.map_or(Cell::Null, |c| int(c.hundredths())),
                    ),
                ],
            ),
            // Each exemption of the class's council counts, as the domain counts them.
            E::AbsencesExempted {
                student, exemption, ..
            } => {
                let mut k = key(None, Some(student.into()));
                k.push(("school_seq", int(i64::try_from(self.school_seq)?)));
                upsert(
                    "scrutiny_exemptions",
                    k,
                    vec![
                        ("from_date", date(exemption.from)),
                        ("to_date", date(exemption.to)),
                        ("reason", read::name_of(&exemption.reason)?),
                    ],
                )
            }
            E::OutcomeDeliberated {
                student,
                outcome,
                proposed,
                ..
            } => upsert(
                "scrutiny_outcomes",
                key(None, Some(student.into())),
                vec![
                    ("outcome", json(&outcome)?),
                    ("proposed", json(&proposed)?),
                    // A new outcome (after a reopening) awaits its own integration.
                    ("resolved", Cell::Null),
                ],
            ),
            E::SuspensionResolved {
                student, admitted, ..
            } => upsert(
                "scrutiny_outcomes",
                key(None, Some(student.into())),
                vec![(
                    "resolved",
                    Cell::Text(if admitted { "admitted" } else { "not_admitted" }.to_owned()),
                )],
            ),
            E::ScrutinyClosed { term } => upsert(
                "scrutiny_terms",
                key(Some(term), None),
                vec![("status", Cell::Text("closed".to_owned()))],
            ),
            // A reopening withdraws the published report cards until they are published again.
            E::ScrutinyReopened { term, reason } => {
                let mut k = key(Some(term), None);
                k.push(("school_seq", int(i64::try_from(self.school_seq)?)));
                return Ok(vec![
                    upsert(
                        "scrutiny_terms",
                        key(Some(term), None),
                        vec![
                            ("status", Cell::Text("open".to_owned())),
                            ("published", Cell::Bool(false)),
                        ],
                    ),
                    upsert(
                        "scrutiny_reopenings",
                        k,
                        vec![("reason", Cell::Text(reason))],
                    ),
                ]);
            }
            // The outcome is decided again after the reopened council corrects the grades.
            E::OutcomeWithdrawn { student, .. } => RowOp::Delete {
                table: "scrutiny_outcomes",
                key: key(None, Some(student.into())),
            },
            // The report shows the result of each integration, not its session.
            E::IntegrationConvened { .. } => return Ok(Vec::new()),
            E::ReportCardsPublished { term } => upsert(
                "scrutiny_terms",
                key(Some(term), None),
                vec![("published", Cell::Bool(true))],
            ),
        };
        Ok(vec![op])
    }
}
