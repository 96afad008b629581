//! Reading the scrutiny report: a term's rows for one class ([`term_rows`], one school's rows
//! at a time, under row-level security on PostgreSQL), and the report computed from them and
//! the directory's facts ([`report`], pure).

use std::collections::{BTreeMap, BTreeSet};

use registro_domain::SchoolId;
use registro_domain::attendance::{AnnualLimit, Exemption, counted_hours};
use registro_domain::grade::{Average, GradeValue, Weight};
use registro_domain::record::Mark;
use registro_domain::scrutiny::{Outcome, SchoolLevel, below_six, propose_outcome};
use registro_store::{Cell, CellType as T, EventStore, ProjectionQuery, StoreError, decode_rows};
use serde_json::Value;
use time::Date;
use uuid::Uuid;

/// A date as the report stores it: `YYYY-MM-DD`.
#[must_use]
pub(crate) fn iso(d: Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

fn parse_date(text: &str) -> Option<Date> {
    Date::parse(
        text,
        time::macros::format_description!("[year]-[month]-[day]"),
    )
    .ok()
}

/// An enum's stored name (`"upper_secondary"`), as serde writes it.
pub(crate) fn name_of(value: &impl serde::Serialize) -> anyhow::Result<Cell> {
    match serde_json::to_value(value)? {
        Value::String(s) => Ok(Cell::Text(s)),
        other => anyhow::bail!("expected a name, found {other}"),
    }
}

/// A grade that counts in an average.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Counted {
    subject: String,
    date: Date,
    value: GradeValue,
    weight: Weight,
}

/// A student's year-end outcome as deliberated.
#[derive(Debug, Clone, PartialEq, Eq)]
struct OutcomeRow {
    outcome: Outcome,
    resolved: Option<String>,
}

/// A term's rows for one class, as stored: read with [`term_rows`], made a report with
/// [`report`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TermRows {
    level: SchoolLevel,
    is_final: bool,
    status: String,
    published: bool,
    session_date: Option<String>,
    attendees: Vec<Uuid>,
    reopened: Vec<String>,
    /// (student, subject) → the teacher's proposal and the teacher.
    proposals: BTreeMap<(Uuid, String), (Mark, Uuid)>,
    /// student → the final grades and conduct.
    deliberations: BTreeMap<Uuid, (BTreeMap<String, Mark>, Option<GradeValue>)>,
    outcomes: BTreeMap<Uuid, OutcomeRow>,
    exemptions: BTreeMap<Uuid, Vec<Exemption>>,
    grades: BTreeMap<Uuid, Vec<Counted>>,
    absences: BTreeMap<Uuid, Vec<(Date, u32)>>,
}

impl TermRows {
    /// A term as its row gives it, with no facts yet.
    fn new(
        level: SchoolLevel,
        is_final: bool,
        status: String,
        published: bool,
        session_date: Option<String>,
        attendees: Vec<Uuid>,
    ) -> Self {
        Self {
            level,
            is_final,
            status,
            published,
            session_date,
            attendees,
            reopened: Vec::new(),
            proposals: BTreeMap::new(),
            deliberations: BTreeMap::new(),
            outcomes: BTreeMap::new(),
            exemptions: BTreeMap::new(),
            grades: BTreeMap::new(),
            absences: BTreeMap::new(),
        }
    }
}

fn int<N: TryFrom<i64>>(c: &Cell) -> Option<N> {
    N::try_from(c.int()?).ok()
}

/// Rows read as (student, item), grouped by student.
fn by_student<R>(items: Vec<(Uuid, R)>) -> BTreeMap<Uuid, Vec<R>> {
    let mut map: BTreeMap<Uuid, Vec<R>> = BTreeMap::new();
    for (student, item) in items {
        map.entry(student).or_default().push(item);
    }
    map
}

fn from_json<V: serde::de::DeserializeOwned>(c: &Cell) -> Option<V> {
    serde_json::from_value(c.json()?).ok()
}

fn named<V: serde::de::DeserializeOwned>(c: &Cell) -> Option<V> {
    serde_json::from_value(Value::String(c.text()?)).ok()
}

/// `$first, $first+1, …` for `n` parameters.
fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The rows of a class's term: its scrutinio, and the grades, absences and exemptions of the
/// school year of `students` (the class's students, from the directory); `None` when the
/// term's scrutinio was never opened.
///
/// # Errors
/// The store's, and an internal error naming a row of an unexpected shape.
pub async fn term_rows(
    store: &dyn EventStore,
    school: SchoolId,
    class: Uuid,
    year: i32,
    term: u8,
    students: &[Uuid],
) -> Result<Option<TermRows>, StoreError> {
    let school_cell = Cell::Uuid(*school.as_uuid());
    let term_key = vec![
        school_cell.clone(),
        Cell::Uuid(class),
        Cell::Int(i64::from(year)),
        Cell::Int(i64::from(term)),
    ];
    let where_term = "WHERE school_id = $1 AND class_id = $2 AND year = $3 AND term = $4";
    let class_year = term_key[..3].to_vec();
    let mut queries = vec![
        ProjectionQuery::new(
            format!(
                "SELECT level, is_final, status, session_date, attendees, published \
                 FROM scrutiny_terms {where_term}"
            ),
            term_key.clone(),
            &[T::Text, T::Bool, T::Text, T::Text, T::Json, T::Bool],
        ),
        ProjectionQuery::new(
            format!("SELECT reason FROM scrutiny_reopenings {where_term} ORDER BY school_seq"),
            term_key.clone(),
            &[T::Text],
        ),
        ProjectionQuery::new(
            format!("SELECT student, subject, mark, teacher FROM scrutiny_proposals {where_term}"),
            term_key.clone(),
            &[T::Uuid, T::Text, T::Json, T::Uuid],
        ),
        ProjectionQuery::new(
            format!("SELECT student, grades, conduct FROM scrutiny_deliberations {where_term}"),
            term_key,
            &[T::Uuid, T::Json, T::Int],
        ),
        // Read for every term, kept for the final one.
        ProjectionQuery::new(
            "SELECT student, outcome, resolved FROM scrutiny_outcomes \
             WHERE school_id = $1 AND class_id = $2 AND year = $3 AND outcome IS NOT NULL",
            class_year.clone(),
            &[T::Uuid, T::Json, T::Text],
        ),
        // The class's council's exemptions (those the domain counts for its outcomes).
        ProjectionQuery::new(
            "SELECT student, from_date, to_date, reason FROM scrutiny_exemptions \
             WHERE school_id = $1 AND class_id = $2 AND year = $3 ORDER BY school_seq",
            class_year,
            &[T::Uuid, T::Text, T::Text, T::Text],
        ),
    ];
    if !students.is_empty() {
        let mut params = vec![school_cell, Cell::Int(i64::from(year))];
        params.extend(students.iter().map(|s| Cell::Uuid(*s)));
        let of_students = format!(
            "school_id = $1 AND year = $2 AND student IN ({})",
            placeholders(3, students.len())
        );
        queries.push(ProjectionQuery::new(
            format!(
                "SELECT student, subject, date, hundredths, weight FROM scrutiny_grades \
                 WHERE {of_students} AND counted AND NOT annulled AND hundredths IS NOT NULL"
            ),
            params.clone(),
            &[T::Uuid, T::Text, T::Text, T::Int, T::Int],
        ));
        queries.push(ProjectionQuery::new(
            format!(
                "SELECT student, date, hours FROM scrutiny_absences \
                 WHERE {of_students} AND NOT cancelled"
            ),
            params,
            &[T::Uuid, T::Text, T::Int],
        ));
    }
    // One snapshot, one round trip.
    let answers = store.query_projections(school, &queries).await?;
    if answers.len() != queries.len() {
        return Err(StoreError::internal(format!(
            "{} scrutiny queries were asked, {} answered",
            queries.len(),
            answers.len()
        )));
    }
    let empty = Vec::new();
    let rows = |i: usize| answers.get(i).unwrap_or(&empty);

    let Some(mut t) = decode_rows("scrutiny term", rows(0), |r| {
        Some(TermRows::new(
            named(&r[0])?,
            r[1].bool()?,
            r[2].text()?,
            r[5].bool()?,
            r[3].text(),
            from_json(&r[4])?,
        ))
    })?
    .pop() else {
        return Ok(None);
    };
    t.reopened = decode_rows("reopening", rows(1), |r| r[0].text())?;
    t.proposals = decode_rows("proposal", rows(2), |r| {
        Some((
            (r[0].uuid()?, r[1].text()?),
            (from_json(&r[2])?, r[3].uuid()?),
        ))
    })?
    .into_iter()
    .collect();
    t.deliberations = decode_rows("deliberation", rows(3), |r| {
        let conduct = match &r[2] {
            Cell::Null => None,
            c => Some(GradeValue::from_hundredths(int(c)?).ok()?),
        };
        Some((r[0].uuid()?, (from_json(&r[1])?, conduct)))
    })?
    .into_iter()
    .collect();
    if t.is_final {
        t.outcomes = decode_rows("outcome", rows(4), |r| {
            let outcome = OutcomeRow {
                outcome: from_json(&r[1])?,
                resolved: r[2].text(),
            };
            Some((r[0].uuid()?, outcome))
        })?
        .into_iter()
        .collect();
    }
    if students.is_empty() {
        return Ok(Some(t));
    }
    t.exemptions = by_student(decode_rows("exemption", rows(5), |r| {
        let exemption = Exemption {
            from: parse_date(&r[1].text()?)?,
            to: parse_date(&r[2].text()?)?,
            reason: named(&r[3])?,
        };
        Some((r[0].uuid()?, exemption))
    })?);
    t.grades = by_student(decode_rows("grade", rows(6), |r| {
        let grade = Counted {
            subject: r[1].text()?,
            date: parse_date(&r[2].text()?)?,
            value: GradeValue::from_hundredths(int(&r[3])?).ok()?,
            weight: Weight::from_hundredths(int(&r[4])?).ok()?,
        };
        Some((r[0].uuid()?, grade))
    })?);
    t.absences = by_student(decode_rows("absence", rows(7), |r| {
        Some((r[0].uuid()?, (parse_date(&r[1].text()?)?, int(&r[2])?)))
    })?);
    Ok(Some(t))
}

/// What the report takes from the school's directory as it stands.
#[derive(Debug, Clone, Copy)]
pub struct Roster<'a> {
    /// The class's students, in the order the report lists them.
    pub students: &'a [Uuid],
    /// The subjects taught in the class.
    pub subjects: &'a BTreeSet<String>,
    /// The term's first and last day (none: no averages).
    pub period: Option<(Date, Date)>,
    /// Each student's annual limit (rule 1), when the class has a timetable.
    pub limits: &'a BTreeMap<Uuid, AnnualLimit>,
    /// The most subjects a suspended judgement may leave to recover (rule 4, a school setting).
    pub max_subjects_to_recover: usize,
}

/// One subject of a student in the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectReport {
    /// The subject.
    pub subject: String,
    /// The term's weighted average of counted numeric grades (never in primary schools).
    pub average: Option<Average>,
    /// The proposal: the teacher's, else pre-filled from the average rounded half up (rule 2).
    pub proposal: Option<Mark>,
    /// The teacher who entered the proposal (none: pre-filled, or no proposal).
    pub proposed_by: Option<Uuid>,
    /// The final grade deliberated.
    pub final_grade: Option<Mark>,
}

/// One student in the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StudentReport {
    /// The student.
    pub student: Uuid,
    /// Per subject taught in the class.
    pub subjects: Vec<SubjectReport>,
    /// Whether the council deliberated the student's grades in this term.
    pub deliberated: bool,
    /// Conduct deliberated.
    pub conduct: Option<GradeValue>,
    /// The hours missed this year that count toward the limit (exempted ones left out).
    pub absence_hours: u32,
    /// The hours missed this year that the council exempted (deroghe).
    pub exempted_hours: u32,
    /// The student's annual limit.
    pub limit: Option<AnnualLimit>,
    /// Whether the counted hours are over the limit.
    pub over_limit: bool,
    /// The outcome registro proposes (final scrutinio, once grades are deliberated; rule 4).
    pub proposed_outcome: Option<Outcome>,
    /// The outcome deliberated.
    pub outcome: Option<Outcome>,
    /// The integration scrutinio's result of a suspended judgement: admitted or not_admitted.
    pub resolved: Option<String>,
}

impl StudentReport {
    /// The subjects to recover, with a suspended judgement.
    #[must_use]
    pub fn subjects_to_recover(&self) -> Vec<String> {
        match &self.outcome {
            Some(Outcome::JudgementSuspended { subjects, .. }) => {
                subjects.iter().cloned().collect()
            }
            _ => Vec::new(),
        }
    }
}

/// A class's term in the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TermReport {
    /// The class's school level.
    pub level: SchoolLevel,
    /// Whether it is the final scrutinio.
    pub is_final: bool,
    /// open or closed.
    pub status: String,
    /// Whether its report cards are published.
    pub published: bool,
    /// The council's session day.
    pub session_date: Option<String>,
    /// The members present at the session.
    pub attendees: Vec<Uuid>,
    /// The reasons it was reopened for, oldest first.
    pub reopened: Vec<String>,
    /// Per student of the class.
    pub students: Vec<StudentReport>,
}

/// The report of a term from its rows and the directory's facts: rules 1, 2 and 4 applied as
/// the domain computes them.
#[must_use]
pub fn report(rows: &TermRows, roster: &Roster<'_>) -> TermReport {
    let primary = rows.level == SchoolLevel::Primary;
    let students = roster
        .students
        .iter()
        .map(|&student| {
            let deliberation = rows.deliberations.get(&student);
            let grades = rows.grades.get(&student).map_or(&[][..], Vec::as_slice);
            let subjects = roster
                .subjects
                .iter()
                .map(|subject| {
                    let average = roster.period.filter(|_| !primary).and_then(|(from, to)| {
                        Average::of(
                            grades
                                .iter()
                                .filter(|g| &g.subject == subject && from <= g.date && g.date <= to)
                                .map(|g| (g.value, g.weight)),
                        )
                    });
                    let entered = rows.proposals.get(&(student, subject.clone()));
                    let prefilled = average
                        .and_then(|a| {
                            GradeValue::from_hundredths(u16::from(a.proposal()) * 100).ok()
                        })
                        .map(Mark::Numeric);
                    SubjectReport {
                        subject: subject.clone(),
                        average,
                        proposal: entered.map(|(m, _)| *m).or(prefilled),
                        proposed_by: entered.map(|(_, t)| *t),
                        final_grade: deliberation.and_then(|(g, _)| g.get(subject)).copied(),
                    }
                })
                .collect();
            let missed = rows.absences.get(&student).map_or(&[][..], Vec::as_slice);
            let exemptions = rows.exemptions.get(&student).map_or(&[][..], Vec::as_slice);
            let all: u32 = missed.iter().map(|(_, h)| h).sum();
            let counted = counted_hours(missed, exemptions);
            let limit = roster.limits.get(&student).copied();
            let over_limit = limit.is_some_and(|l| l.is_over(counted));
            let proposed_outcome = deliberation.filter(|_| rows.is_final).map(|(g, conduct)| {
                propose_outcome(
                    rows.level,
                    over_limit,
                    *conduct,
                    &below_six(g),
                    roster.max_subjects_to_recover,
                )
            });
            let outcome = rows.outcomes.get(&student);
            StudentReport {
                student,
                subjects,
                deliberated: deliberation.is_some(),
                conduct: deliberation.and_then(|(_, c)| *c),
                absence_hours: counted,
                exempted_hours: all.saturating_sub(counted),
                limit,
                over_limit,
                proposed_outcome,
                outcome: outcome.map(|o| o.outcome.clone()),
                resolved: outcome.and_then(|o| o.resolved.clone()),
            }
        })
        .collect();
    TermReport {
        level: rows.level,
        is_final: rows.is_final,
        status: rows.status.clone(),
        published: rows.published,
        session_date: rows.session_date.clone(),
        attendees: rows.attendees.clone(),
        reopened: rows.reopened.clone(),
        students,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests fail loudly by design

    use super::*;
    use registro_domain::attendance::ExemptionReason;
    use time::macros::date;

    fn mark(text: &str) -> Mark {
        Mark::Numeric(GradeValue::parse(text).unwrap())
    }

    fn counted(subject: &str, date: Date, value: &str, weight: u16) -> Counted {
        Counted {
            subject: subject.to_owned(),
            date,
            value: GradeValue::parse(value).unwrap(),
            weight: Weight::from_hundredths(weight).unwrap(),
        }
    }

    fn rows(level: SchoolLevel, is_final: bool) -> TermRows {
        TermRows::new(level, is_final, "open".to_owned(), false, None, Vec::new())
    }

    struct Class {
        students: Vec<Uuid>,
        subjects: BTreeSet<String>,
        limits: BTreeMap<Uuid, AnnualLimit>,
    }

    fn class(subjects: &[&str]) -> Class {
        let s = Uuid::now_v7();
        Class {
            students: vec![s],
            subjects: subjects.iter().map(|s| (*s).to_owned()).collect(),
            // 32 hours a week: 1056 hours, at most 264 missed (rules.md, rule 1).
            limits: [(s, AnnualLimit::for_weekly_hours(32))].into(),
        }
    }

    fn roster(c: &Class, max: usize) -> Roster<'_> {
        Roster {
            students: &c.students,
            subjects: &c.subjects,
            period: Some((date!(2025 - 09 - 15), date!(2026 - 01 - 31))),
            limits: &c.limits,
            max_subjects_to_recover: max,
        }
    }

    #[test]
    fn averages_of_the_term_prefill_the_proposals_and_a_teachers_proposal_wins() {
        let c = class(&["Italiano", "Matematica", "Storia"]);
        let s = c.students[0];
        let mut r = rows(SchoolLevel::UpperSecondary, false);
        r.grades.insert(
            s,
            vec![
                // Matematica: (7 × 1 + 8 × 1) / 2 = 7.50, proposes 8.
                counted("Matematica", date!(2025 - 10 - 06), "7", 100),
                counted("Matematica", date!(2025 - 11 - 06), "8", 100),
                // Out of the term: not averaged.
                counted("Matematica", date!(2026 - 02 - 06), "2", 100),
                // Italiano: (5 × 2 + 6½ × 1) / 3 = 5.50, proposes 6.
                counted("Italiano", date!(2025 - 10 - 08), "5", 200),
                counted("Italiano", date!(2025 - 12 - 08), "6½", 100),
            ],
        );
        let teacher = Uuid::now_v7();
        r.proposals
            .insert((s, "Italiano".to_owned()), (mark("5"), teacher));
        let report = report(&r, &roster(&c, 3));
        let subjects = &report.students[0].subjects;
        let by = |name: &str| subjects.iter().find(|x| x.subject == name).unwrap();
        assert_eq!(by("Matematica").average.unwrap().to_string(), "7.50");
        assert_eq!(by("Matematica").proposal, Some(mark("8")));
        assert_eq!(by("Matematica").proposed_by, None);
        assert_eq!(by("Italiano").average.unwrap().to_string(), "5.50");
        assert_eq!(by("Italiano").proposal, Some(mark("5")));
        assert_eq!(by("Italiano").proposed_by, Some(teacher));
        assert_eq!(by("Storia").average, None);
        assert_eq!(by("Storia").proposal, None);
        assert_eq!(
            report.students[0].proposed_outcome, None,
            "not the final term"
        );
    }

    #[test]
    fn primary_schools_show_no_numeric_averages() {
        let c = class(&["Matematica"]);
        let mut r = rows(SchoolLevel::Primary, false);
        r.grades.insert(
            c.students[0],
            vec![counted("Matematica", date!(2025 - 10 - 06), "7", 100)],
        );
        let report = report(&r, &roster(&c, 3));
        assert_eq!(report.students[0].subjects[0].average, None);
        assert_eq!(report.students[0].subjects[0].proposal, None);
    }

    #[test]
    fn exempted_hours_leave_the_count_and_the_limit_decides_the_proposal() {
        let c = class(&["Matematica"]);
        let s = c.students[0];
        let mut r = rows(SchoolLevel::UpperSecondary, true);
        // 270 hours missed over 45 days of 6 hours: over the 264 allowed.
        let days: Vec<(Date, u32)> = (0..45)
            .map(|i| (date!(2025 - 10 - 01) + time::Duration::days(i), 6))
            .collect();
        r.absences.insert(s, days);
        r.deliberations.insert(
            s,
            (
                [("Matematica".to_owned(), mark("7"))].into(),
                GradeValue::parse("8").ok(),
            ),
        );
        let over = report(&r, &roster(&c, 3));
        let line = &over.students[0];
        assert_eq!((line.absence_hours, line.exempted_hours), (270, 0));
        assert!(line.over_limit);
        assert_eq!(line.proposed_outcome, Some(Outcome::NotAdmitted));
        // An exemption of 2 days (12 hours) brings it to 258, within the limit.
        r.exemptions.insert(
            s,
            vec![Exemption {
                from: date!(2025 - 10 - 01),
                to: date!(2025 - 10 - 02),
                reason: ExemptionReason::Health,
            }],
        );
        let within = report(&r, &roster(&c, 3));
        let line = &within.students[0];
        assert_eq!((line.absence_hours, line.exempted_hours), (258, 12));
        assert!(!line.over_limit);
        assert_eq!(line.proposed_outcome, Some(Outcome::Admitted));
    }

    #[test]
    fn the_schools_maximum_of_subjects_to_recover_decides_the_proposal() {
        let subjects = ["Fisica", "Inglese", "Italiano", "Matematica"];
        let c = class(&subjects);
        let s = c.students[0];
        let mut r = rows(SchoolLevel::UpperSecondary, true);
        let four_below: BTreeMap<String, Mark> = subjects
            .iter()
            .map(|x| ((*x).to_owned(), mark("5")))
            .collect();
        r.deliberations
            .insert(s, (four_below, GradeValue::parse("7").ok()));
        // Four subjects below 6 with a limit of three: not admitted (rules.md, rule 4).
        let three = report(&r, &roster(&c, 3));
        assert_eq!(
            three.students[0].proposed_outcome,
            Some(Outcome::NotAdmitted)
        );
        // A school that allows four: judgement suspended on all four.
        let four = report(&r, &roster(&c, 4));
        assert_eq!(
            four.students[0].proposed_outcome,
            Some(Outcome::JudgementSuspended {
                subjects: subjects.iter().map(|x| (*x).to_owned()).collect(),
                citizenship: false,
            })
        );
    }

    #[test]
    fn a_deliberated_outcome_lists_the_subjects_to_recover() {
        let c = class(&["Matematica"]);
        let s = c.students[0];
        let mut r = rows(SchoolLevel::UpperSecondary, true);
        r.outcomes.insert(
            s,
            OutcomeRow {
                outcome: Outcome::JudgementSuspended {
                    subjects: ["Matematica".to_owned()].into(),
                    citizenship: true,
                },
                resolved: Some("admitted".to_owned()),
            },
        );
        let report = report(&r, &roster(&c, 3));
        assert_eq!(report.students[0].subjects_to_recover(), vec!["Matematica"]);
        assert_eq!(report.students[0].resolved.as_deref(), Some("admitted"));
        assert!(!report.students[0].deliberated);
    }
}
