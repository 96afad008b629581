//! Reading the family view: one school's rows at a time (row-level security on PostgreSQL),
//! newest first, a page at a time where lists grow long.

use registro_domain::SchoolId;
use registro_store::{Cell, CellType as T, ProjectionQuery, Read, StoreError, decode_rows};
use serde_json::Value;
use time::{Date, OffsetDateTime, Time};
use uuid::Uuid;

/// A date as the view stores it: `YYYY-MM-DD`.
#[must_use]
pub fn iso(d: Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

/// `HH:MM`.
pub(crate) fn hhmm(t: Time) -> String {
    format!("{:02}:{:02}", t.hour(), t.minute())
}

/// Where a page of a list starts: after the item with this date and id (lists go newest
/// first). Written as `<date>.<id>` in the API's `cursor` parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    /// The last item's date (`YYYY-MM-DD`).
    pub date: String,
    /// The last item's id.
    pub id: Uuid,
}

impl Cursor {
    /// The cursor after an item.
    #[must_use]
    pub fn after(date: &str, id: Uuid) -> Self {
        Self {
            date: date.to_owned(),
            id,
        }
    }

    /// Parses `<date>.<id>`; `None` for anything else.
    #[must_use]
    pub fn parse(text: &str) -> Option<Self> {
        let (date, id) = text.split_once('.')?;
        let format = time::macros::format_description!("[year]-[month]-[day]");
        Date::parse(date, format).ok()?;
        Some(Self {
            date: date.to_owned(),
            id: Uuid::parse_str(id).ok()?,
        })
    }
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.date, self.id)
    }
}

/// A page: the items after `after`, at most `limit` (1 to 500).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// Where it starts (none: the newest).
    pub after: Option<Cursor>,
    /// How many at most.
    pub limit: u32,
}

/// A grade as the family sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GradeRow {
    /// The grade.
    pub id: Uuid,
    /// The subject.
    pub subject: String,
    /// The day of the test (`YYYY-MM-DD`).
    pub date: String,
    /// written, oral, practical, …
    pub kind: String,
    /// numeric, judgement or level.
    pub scale: String,
    /// The mark as written (`7½`, `buono`).
    pub mark: String,
    /// A numeric mark in hundredths.
    pub hundredths: Option<u16>,
    /// The weight in hundredths.
    pub weight: u16,
    /// Whether it counts in the average.
    pub counted: bool,
    /// What it is for.
    pub description: String,
    /// Whether it was corrected.
    pub corrected: bool,
    /// Why it was annulled, if it was.
    pub annulled: Option<String>,
}

/// An absence, late entry or early exit as the family sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttendanceRow {
    /// The entry.
    pub id: Uuid,
    /// The day.
    pub date: String,
    /// absence, late_entry or early_exit.
    pub kind: String,
    /// The time of a late entry or early exit (`HH:MM`).
    pub at: Option<String>,
    /// The lesson hours missed.
    pub hours: u32,
    /// Why it was cancelled, if it was.
    pub cancelled: Option<String>,
    /// missing, submitted, accepted or rejected.
    pub justification: String,
    /// Who submitted the justification: guardian or student.
    pub justifier: Option<String>,
}

/// A note to the student or to their whole class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteRow {
    /// The note.
    pub id: Uuid,
    /// The day.
    pub date: String,
    /// disciplinary, annotation or sanction.
    pub kind: String,
    /// What happened.
    pub text: String,
    /// Whether it was written to the whole class.
    pub whole_class: bool,
    /// Why it was annulled, if it was.
    pub annulled: Option<String>,
}

/// Homework or a test of the class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgendaRow {
    /// The homework or test.
    pub id: Uuid,
    /// homework or test.
    pub kind: String,
    /// When it is due, or the test's day.
    pub date: String,
    /// When homework was given.
    pub assigned_on: Option<String>,
    /// The subject.
    pub subject: String,
    /// What to do, or what the test is on.
    pub text: String,
}

/// A consent answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentRow {
    /// given or refused.
    pub consent: String,
    /// Who answered.
    pub by: Uuid,
    /// When.
    pub at: OffsetDateTime,
}

/// A communication, with who has read it and the consent for one student.
#[derive(Debug, Clone, PartialEq)]
pub struct CommunicationRow {
    /// The communication.
    pub id: Uuid,
    /// circular or notice.
    pub kind: String,
    /// A circular's number.
    pub number: Option<u32>,
    /// Its title.
    pub title: String,
    /// Its text.
    pub body: String,
    /// Its date.
    pub date: String,
    /// The groups it is addressed to (families, students, staff).
    pub groups: Vec<String>,
    /// The classes it is addressed to (none: the whole school).
    pub classes: Vec<Uuid>,
    /// The last day to answer the consent asked, if any.
    pub consent_deadline: Option<String>,
    /// Its attachments, as published (hash, name, media type, size).
    pub attachments: Value,
    /// Why it was withdrawn, if it was.
    pub withdrawn: Option<String>,
    /// Who read it, and when: filled by [`communications`] for the people asked.
    pub receipts: Vec<(Uuid, OffsetDateTime)>,
    /// The student's consent, when asked for one.
    pub consent: Option<ConsentRow>,
}

/// A meeting booked for the student.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BookingRow {
    /// The slot.
    pub slot: Uuid,
    /// The teacher.
    pub teacher: Option<Uuid>,
    /// The day.
    pub date: String,
    /// When it starts (`HH:MM`).
    pub start: String,
    /// When it ends.
    pub end: String,
    /// Where.
    pub place: String,
    /// The guardian who booked.
    pub guardian: Uuid,
    /// Why the teacher cancelled the slot, if they did.
    pub cancelled: Option<String>,
}

fn shape(what: &str, row: &[Cell]) -> StoreError {
    StoreError::internal(format!("a {what} row of an unexpected shape: {row:?}"))
}

/// Builds the SQL of a page: `base` (with its `WHERE`) then, after a cursor, only older items,
/// newest first.
fn paged(base: &str, params: &mut Vec<Cell>, id_column: &str, page: Option<&Page>) -> String {
    let mut sql = base.to_owned();
    let limit = page.map_or(10_000, |p| p.limit.clamp(1, 500));
    if let Some(Cursor { date, id }) = page.and_then(|p| p.after.as_ref()) {
        params.push(Cell::Text(date.clone()));
        let d = params.len();
        params.push(Cell::Uuid(*id));
        let i = params.len();
        sql.push_str(&format!(
            " AND (date < ${d} OR (date = ${d} AND {id_column} < ${i}))"
        ));
    }
    sql.push_str(&format!(
        " ORDER BY date DESC, {id_column} DESC LIMIT {limit}"
    ));
    sql
}

fn key(school: SchoolId, student: Uuid, year: i32) -> Vec<Cell> {
    vec![
        Cell::Uuid(*school.as_uuid()),
        Cell::Uuid(student),
        Cell::Int(i64::from(year)),
    ]
}

/// The student's grades of the school year (`year` its first calendar year), newest first;
/// all of them without a page.
///
/// Read it alone with [`Read::run`], or with others from one snapshot in a
/// [`registro_store::Batch`].
pub fn grades(
    school: SchoolId,
    student: Uuid,
    year: i32,
    page: Option<&Page>,
) -> Read<Vec<GradeRow>> {
    let mut params = key(school, student, year);
    let sql = paged(
        "SELECT grade_id, subject, date, kind, scale, mark, hundredths, weight, counted, \
         description, corrected, annulled FROM family_grades \
         WHERE school_id = $1 AND student = $2 AND year = $3",
        &mut params,
        "grade_id",
        page,
    );
    let columns = [
        T::Uuid,
        T::Text,
        T::Text,
        T::Text,
        T::Text,
        T::Text,
        T::Int,
        T::Int,
        T::Bool,
        T::Text,
        T::Bool,
        T::Text,
    ];
    Read::one(ProjectionQuery::new(sql, params, &columns), move |rows| {
        decode_rows("grade", rows, |r| {
            Some(GradeRow {
                id: r[0].uuid()?,
                subject: r[1].text()?,
                date: r[2].text()?,
                kind: r[3].text()?,
                scale: r[4].text()?,
                mark: r[5].text()?,
                hundredths: r[6].int().and_then(|h| u16::try_from(h).ok()),
                weight: u16::try_from(r[7].int()?).ok()?,
                counted: r[8].bool()?,
                description: r[9].text()?,
                corrected: r[10].bool()?,
                annulled: r[11].text(),
            })
        })
    })
}

/// The student's absences, late entries and early exits of the school year, newest first.
///
/// Read it alone with [`Read::run`], or with others from one snapshot in a
/// [`registro_store::Batch`].
pub fn attendance(
    school: SchoolId,
    student: Uuid,
    year: i32,
    page: Option<&Page>,
) -> Read<Vec<AttendanceRow>> {
    let mut params = key(school, student, year);
    let sql = paged(
        "SELECT entry_id, date, kind, at, hours, cancelled, justification, justifier \
         FROM family_attendance WHERE school_id = $1 AND student = $2 AND year = $3",
        &mut params,
        "entry_id",
        page,
    );
    let columns = [
        T::Uuid,
        T::Text,
        T::Text,
        T::Text,
        T::Int,
        T::Text,
        T::Text,
        T::Text,
    ];
    Read::one(ProjectionQuery::new(sql, params, &columns), move |rows| {
        decode_rows("attendance", rows, |r| {
            Some(AttendanceRow {
                id: r[0].uuid()?,
                date: r[1].text()?,
                kind: r[2].text()?,
                at: r[3].text(),
                hours: u32::try_from(r[4].int()?).ok()?,
                cancelled: r[5].text(),
                justification: r[6].text()?,
                justifier: r[7].text(),
            })
        })
    })
}

/// The notes of the school year to the student and, when `class` is given, to their whole
/// class, newest first.
///
/// Read it alone with [`Read::run`], or with others from one snapshot in a
/// [`registro_store::Batch`].
pub fn notes(
    school: SchoolId,
    student: Uuid,
    class: Option<Uuid>,
    year: i32,
    page: Option<&Page>,
) -> Read<Vec<NoteRow>> {
    let mut params = key(school, student, year);
    let mut base = String::from(
        "SELECT note_id, date, kind, text, student, annulled FROM family_notes \
         WHERE school_id = $1 AND year = $3 AND (student = $2",
    );
    if let Some(class) = class {
        params.push(Cell::Uuid(class));
        base.push_str(&format!(
            " OR (student IS NULL AND class_id = ${})",
            params.len()
        ));
    }
    base.push(')');
    let sql = paged(&base, &mut params, "note_id", page);
    let columns = [T::Uuid, T::Text, T::Text, T::Text, T::Uuid, T::Text];
    Read::one(ProjectionQuery::new(sql, params, &columns), move |rows| {
        decode_rows("note", rows, |r| {
            Some(NoteRow {
                id: r[0].uuid()?,
                date: r[1].text()?,
                kind: r[2].text()?,
                text: r[3].text()?,
                whole_class: r[4] == Cell::Null,
                annulled: r[5].text(),
            })
        })
    })
}

/// The class's homework and tests of the school year, newest first; with `from`, only those
/// due on or after that day.
///
/// Read it alone with [`Read::run`], or with others from one snapshot in a
/// [`registro_store::Batch`].
pub fn agenda(
    school: SchoolId,
    class: Uuid,
    year: i32,
    from: Option<Date>,
    page: Option<&Page>,
) -> Read<Vec<AgendaRow>> {
    let mut params = key(school, class, year);
    let mut base = format!("{AGENDA} WHERE school_id = $1 AND class_id = $2 AND year = $3");
    if let Some(from) = from {
        params.push(Cell::Text(iso(from)));
        base.push_str(&format!(" AND date >= ${}", params.len()));
    }
    let sql = paged(&base, &mut params, "item_id", page);
    agenda_rows(sql, params)
}

/// The class's homework and tests of the school year due on or after `from`, soonest first, at
/// most `limit` of them: what is coming, read without the rest of the year.
///
/// Read it alone with [`Read::run`], or with others from one snapshot in a
/// [`registro_store::Batch`].
pub fn upcoming_agenda(
    school: SchoolId,
    class: Uuid,
    year: i32,
    from: Date,
    limit: u32,
) -> Read<Vec<AgendaRow>> {
    let mut params = key(school, class, year);
    params.push(Cell::Text(iso(from)));
    let sql = format!(
        "{AGENDA} WHERE school_id = $1 AND class_id = $2 AND year = $3 AND date >= $4 \
         ORDER BY date, item_id LIMIT {limit}"
    );
    agenda_rows(sql, params)
}

const AGENDA: &str = "SELECT item_id, kind, date, assigned_on, subject, text FROM family_agenda";

fn agenda_rows(sql: String, params: Vec<Cell>) -> Read<Vec<AgendaRow>> {
    let columns = [T::Uuid, T::Text, T::Text, T::Text, T::Text, T::Text];
    Read::one(ProjectionQuery::new(sql, params, &columns), move |rows| {
        decode_rows("agenda", rows, |r| {
            Some(AgendaRow {
                id: r[0].uuid()?,
                kind: r[1].text()?,
                date: r[2].text()?,
                assigned_on: r[3].text(),
                subject: r[4].text()?,
                text: r[5].text()?,
            })
        })
    })
}

/// Whose communications to list: those addressed to `groups` (`families`, `students`) of the
/// whole school or of `class`, with the receipts of `readers` and the consent for `student`.
#[derive(Debug, Clone, Copy)]
pub struct Addressees<'a> {
    /// The student.
    pub student: Uuid,
    /// Their class now.
    pub class: Option<Uuid>,
    /// The groups the reader belongs to, as the communications name them.
    pub groups: &'a [&'a str],
    /// Whose receipts to show (the student's family).
    pub readers: &'a [Uuid],
}

/// The school's communications of the school year to `to`, newest first. A school publishes
/// some hundreds a year: they are filtered here, then paged.
///
/// Read it alone with [`Read::run`], or with others from one snapshot in a
/// [`registro_store::Batch`].
pub fn communications(
    school: SchoolId,
    year: i32,
    to: Addressees<'_>,
    page: Option<&Page>,
) -> Read<Vec<CommunicationRow>> {
    let Addressees {
        student,
        class,
        groups,
        readers,
    } = to;
    let groups: Vec<String> = groups.iter().map(|g| (*g).to_owned()).collect();
    let page = page.cloned();
    let school_year = vec![Cell::Uuid(*school.as_uuid()), Cell::Int(i64::from(year))];
    let mut queries = vec![ProjectionQuery::new(
        "SELECT communication_id, kind, number, title, body, date, groups, classes, \
         consent_deadline, attachments, withdrawn FROM family_communications \
         WHERE school_id = $1 AND year = $2 ORDER BY date DESC, communication_id DESC",
        school_year.clone(),
        &[
            T::Uuid,
            T::Text,
            T::Int,
            T::Text,
            T::Text,
            T::Text,
            T::Json,
            T::Json,
            T::Text,
            T::Json,
            T::Text,
        ],
    )];
    // The consents for the student and the readers' receipts, of the year's communications
    // (read with them, from the same snapshot; those of the page are kept).
    let mut params = school_year.clone();
    params.push(Cell::Uuid(student));
    queries.push(ProjectionQuery::new(
        "SELECT s.communication_id, s.consent, s.answered_by, s.at FROM family_consents s \
         JOIN family_communications c ON c.school_id = s.school_id \
           AND c.communication_id = s.communication_id \
         WHERE s.school_id = $1 AND c.year = $2 AND s.student = $3",
        params,
        &[T::Uuid, T::Text, T::Uuid, T::Time],
    ));
    if !readers.is_empty() {
        let mut params = school_year;
        let mut marks = Vec::new();
        for person in readers {
            params.push(Cell::Uuid(*person));
            marks.push(format!("${}", params.len()));
        }
        queries.push(ProjectionQuery::new(
            format!(
                "SELECT r.communication_id, r.person, r.at FROM family_receipts r \
                 JOIN family_communications c ON c.school_id = r.school_id \
                   AND c.communication_id = r.communication_id \
                 WHERE r.school_id = $1 AND c.year = $2 AND r.person IN ({}) \
                 ORDER BY r.at, r.person",
                marks.join(", ")
            ),
            params,
            &[T::Uuid, T::Uuid, T::Time],
        ));
    }
    Read::many(queries, move |answers| {
        let (communications, consents, receipts) = match answers {
            [c, s] => (c, s, None),
            [c, s, r] => (c, s, Some(r)),
            _ => {
                return Err(StoreError::internal(
                    "the communications' queries went unanswered",
                ));
            }
        };
        let mut found = Vec::new();
        for r in communications {
            let row = (|| {
                Some(CommunicationRow {
                    id: r[0].uuid()?,
                    kind: r[1].text()?,
                    number: r[2].int().and_then(|n| u32::try_from(n).ok()),
                    title: r[3].text()?,
                    body: r[4].text()?,
                    date: r[5].text()?,
                    groups: serde_json::from_value(r[6].json()?).ok()?,
                    classes: serde_json::from_value(r[7].json()?).ok()?,
                    consent_deadline: r[8].text(),
                    attachments: r[9].json()?,
                    withdrawn: r[10].text(),
                    receipts: Vec::new(),
                    consent: None,
                })
            })()
            .ok_or_else(|| shape("communication", r))?;
            let to_family = row.groups.iter().any(|g| groups.contains(g));
            let reaches = row.classes.is_empty() || class.is_some_and(|c| row.classes.contains(&c));
            let after = page
                .as_ref()
                .and_then(|p| p.after.as_ref())
                .is_none_or(|c| (row.date.as_str(), row.id) < (c.date.as_str(), c.id));
            if to_family && reaches && after {
                found.push(row);
            }
        }
        found.truncate(page.as_ref().map_or(usize::MAX, |p| {
            usize::try_from(p.limit.clamp(1, 500)).unwrap_or(usize::MAX)
        }));
        let at: std::collections::HashMap<Uuid, usize> =
            found.iter().enumerate().map(|(i, c)| (c.id, i)).collect();
        for r in receipts.into_iter().flatten() {
            let (Some(c), Some(p), Cell::Time(when)) = (r[0].uuid(), r[1].uuid(), &r[2]) else {
                return Err(shape("receipt", r));
            };
            if let Some(row) = at.get(&c).and_then(|i| found.get_mut(*i)) {
                row.receipts.push((p, *when));
            }
        }
        for r in consents {
            let (Some(c), Some(consent), Some(by), Cell::Time(when)) =
                (r[0].uuid(), r[1].text(), r[2].uuid(), &r[3])
            else {
                return Err(shape("consent", r));
            };
            if let Some(row) = at.get(&c).and_then(|i| found.get_mut(*i)) {
                row.consent = Some(ConsentRow {
                    consent,
                    by,
                    at: *when,
                });
            }
        }
        Ok(found)
    })
}

/// The meetings booked for the student in the school year (`year` its first calendar year),
/// newest first.
///
/// Read it alone with [`Read::run`], or with others from one snapshot in a
/// [`registro_store::Batch`].
pub fn bookings(school: SchoolId, student: Uuid, year: i32) -> Read<Vec<BookingRow>> {
    let span = registro_domain::calendar::SchoolYear::starting(year);
    booking_rows(
        format!("{BOOKINGS} ORDER BY s.date DESC, s.start_at DESC, b.slot_id DESC"),
        school,
        student,
        span.first_day(),
        span.last_day(),
    )
}

/// The meetings booked for the student in the school year from `from` on, soonest first, at
/// most `limit` of them.
///
/// Read it alone with [`Read::run`], or with others from one snapshot in a
/// [`registro_store::Batch`].
pub fn upcoming_bookings(
    school: SchoolId,
    student: Uuid,
    year: i32,
    from: Date,
    limit: u32,
) -> Read<Vec<BookingRow>> {
    let span = registro_domain::calendar::SchoolYear::starting(year);
    booking_rows(
        format!("{BOOKINGS} ORDER BY s.date, s.start_at, b.slot_id LIMIT {limit}"),
        school,
        student,
        from.max(span.first_day()),
        span.last_day(),
    )
}

const BOOKINGS: &str = "SELECT b.slot_id, s.teacher, s.date, s.start_at, s.end_at, s.place, \
                        b.guardian, s.cancelled FROM family_bookings b JOIN family_slots s \
                        ON s.school_id = b.school_id AND s.slot_id = b.slot_id \
                        WHERE b.school_id = $1 AND b.student = $2 AND s.date >= $3 \
                        AND s.date <= $4";

fn booking_rows(
    sql: String,
    school: SchoolId,
    student: Uuid,
    from: Date,
    to: Date,
) -> Read<Vec<BookingRow>> {
    let params = vec![
        Cell::Uuid(*school.as_uuid()),
        Cell::Uuid(student),
        Cell::Text(iso(from)),
        Cell::Text(iso(to)),
    ];
    let columns = [
        T::Uuid,
        T::Uuid,
        T::Text,
        T::Text,
        T::Text,
        T::Text,
        T::Uuid,
        T::Text,
    ];
    Read::one(ProjectionQuery::new(sql, params, &columns), move |rows| {
        decode_rows("booking", rows, |r| {
            Some(BookingRow {
                slot: r[0].uuid()?,
                teacher: r[1].uuid(),
                date: r[2].text()?,
                start: r[3].text()?,
                end: r[4].text()?,
                place: r[5].text()?,
                guardian: r[6].uuid()?,
                cancelled: r[7].text(),
            })
        })
    })
}

/// A published report card (pagella) of one term.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportCardRow {
    /// The class it was deliberated in.
    pub class: Uuid,
    /// The term's number, from 1.
    pub term: u8,
    /// Whether it is the final one.
    pub is_final: bool,
    /// Subject → final grade as written.
    pub grades: std::collections::BTreeMap<String, String>,
    /// Conduct, a whole grade.
    pub conduct: Option<u8>,
    /// The final one's outcome: admitted, judgement_suspended or not_admitted.
    pub outcome: Option<String>,
    /// With a suspended judgement: the subjects to recover.
    pub subjects_to_recover: Vec<String>,
    /// With a suspended judgement: whether the citizenship assignment is due.
    pub citizenship: bool,
    /// The integration scrutinio's outcome, once it resolved the judgement.
    pub resolved: Option<String>,
}

/// The student's published report cards of the school year, latest term first. A term's
/// report cards show once the principal publishes them, and no longer while it is reopened.
///
/// Read it alone with [`Read::run`], or with others from one snapshot in a
/// [`registro_store::Batch`].
pub fn report_cards(school: SchoolId, student: Uuid, year: i32) -> Read<Vec<ReportCardRow>> {
    let params = key(school, student, year);
    let sql = "SELECT g.class_id, g.term, s.is_final, g.grades, g.conduct, o.outcome, \
               o.subjects, o.citizenship, o.resolved \
               FROM family_report_grades g \
               JOIN family_scrutini s ON s.school_id = g.school_id AND s.class_id = g.class_id \
                 AND s.year = g.year AND s.term = g.term \
               LEFT JOIN family_outcomes o ON s.is_final AND o.school_id = g.school_id \
                 AND o.class_id = g.class_id AND o.year = g.year AND o.student = g.student \
               WHERE g.school_id = $1 AND g.student = $2 AND g.year = $3 AND s.published \
               ORDER BY g.term DESC, g.class_id DESC";
    let columns = [
        T::Uuid,
        T::Int,
        T::Bool,
        T::Json,
        T::Int,
        T::Text,
        T::Json,
        T::Bool,
        T::Text,
    ];
    Read::one(ProjectionQuery::new(sql, params, &columns), move |rows| {
        decode_rows("report card", rows, |r| {
            Some(ReportCardRow {
                class: r[0].uuid()?,
                term: u8::try_from(r[1].int()?).ok()?,
                is_final: r[2].bool()?,
                grades: serde_json::from_value(r[3].json()?).ok()?,
                conduct: r[4].int().and_then(|c| u8::try_from(c).ok()),
                outcome: r[5].text(),
                subjects_to_recover: r[6]
                    .json()
                    .and_then(|v| serde_json::from_value(v).ok())
                    .unwrap_or_default(),
                citizenship: r[7].bool().unwrap_or(false),
                resolved: r[8].text(),
            })
        })
    })
}

/// The council's exemptions of the student's absences from the limit in the school year.
///
/// Read it alone with [`Read::run`], or with others from one snapshot in a
/// [`registro_store::Batch`].
pub fn exemptions(
    school: SchoolId,
    student: Uuid,
    year: i32,
) -> Read<Vec<registro_domain::attendance::Exemption>> {
    let params = key(school, student, year);
    let sql = "SELECT from_date, to_date, reason FROM family_exemptions \
               WHERE school_id = $1 AND student = $2 AND year = $3 ORDER BY from_date";
    Read::one(
        ProjectionQuery::new(sql, params, &[T::Text, T::Text, T::Text]),
        move |rows| {
            let format = time::macros::format_description!("[year]-[month]-[day]");
            decode_rows("exemption", rows, |r| {
                Some(registro_domain::attendance::Exemption {
                    from: Date::parse(&r[0].text()?, format).ok()?,
                    to: Date::parse(&r[1].text()?, format).ok()?,
                    reason: serde_json::from_value(Value::String(r[2].text()?)).ok()?,
                })
            })
        },
    )
}

/// The greatest stamp of `scopes` in the school ([`crate::STAMPS`]): 0 when none changed yet.
/// Every event that changes a row an overview reads raises the stamp of one of the overview's
/// scopes (the student, the class, the family's people, the school) to its `school_seq`, so
/// an overview computed when this was `s` is current while it is still `s`.
///
/// Read it alone with [`Read::run`], or with others from one snapshot in a
/// [`registro_store::Batch`].
pub fn stamp(school: SchoolId, scopes: &[Uuid]) -> Read<u64> {
    let mut params = vec![Cell::Uuid(*school.as_uuid())];
    params.extend(scopes.iter().map(|s| Cell::Uuid(*s)));
    let placeholders: Vec<String> = (2..=params.len()).map(|i| format!("${i}")).collect();
    // No scope is no stamp: `IN (NULL)` matches no row.
    let sql = format!(
        "SELECT coalesce(max(seq), 0) FROM family_stamps WHERE school_id = $1 AND scope IN ({})",
        if scopes.is_empty() {
            "NULL".to_owned()
        } else {
            placeholders.join(", ")
        }
    );
    Read::one(ProjectionQuery::new(sql, params, &[T::Int]), |rows| {
        Ok(rows
            .first()
            .and_then(|r| r.first())
            .and_then(Cell::int)
            .and_then(|s| u64::try_from(s).ok())
            .unwrap_or(0))
    })
}
