//! A student's record for one school year (the stream `student-<id>-<year>`): their grades
//! (voti) with corrections and annulments (`rules.md` section 2), and their attendance:
//! absences, late entries and early exits with the lesson hours they missed, derived from the
//! class's timetable (`rules.md` section 1). Justifications and notes join it with the rest of
//! the register.
//!
//! A grade is never edited: a correction is a new event naming the grade and why, an annulment
//! likewise. The family sees the current value; auditors see the whole chain.
//!
//! Decisions need facts from outside the stream, passed in a [`Context`]: the school directory
//! (who teaches which subject in which class, who is enrolled where, the school year's terms)
//! and which terms of the class are closed by their scrutinio (`rules.md` section 6).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use time::Date;

use crate::calendar::{SchoolYear, TermClosed};
use crate::directory::Directory;
use crate::grade::{Average, GradeKind, GradeValue, Judgement, PrimaryLevel, Weight};
use crate::justification::{
    JustificationError, JustificationState, Justifier, ReasonCategory, may_justify,
};
use crate::timetable::Missed;
use crate::{AttendanceId, ClassId, GradeId, NoteId, PersonId};

/// The longest description or reason, in characters.
pub const MAX_TEXT_CHARS: usize = 500;

/// The data subject whose key seals the special-category data of a student's record for a
/// school year (a justification's reason): one per student and year, so that erasing a year's
/// details when their retention ends (`rules.md` section 7) leaves the other years, and the
/// justifications still to come, untouched. Derived (UUIDv5) from the student and the year.
#[must_use]
pub fn sealing_subject(student: PersonId, year: SchoolYear) -> PersonId {
    PersonId::from_uuid(uuid::Uuid::new_v5(
        student.as_uuid(),
        format!("registro/record/{}", year.start_year()).as_bytes(),
    ))
}

/// The stream of a student's record for a school year.
#[must_use]
pub fn stream(student: PersonId, year: SchoolYear) -> String {
    format!("student-{student}-{}", year.start_year())
}

/// A grade's value on its scale.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "scale", content = "value", rename_all = "snake_case")]
pub enum Mark {
    /// A number from 1 to 10 (hundredths), averaged.
    Numeric(GradeValue),
    /// A judgement (religion, alternative activity), never averaged.
    Judgement(Judgement),
    /// A primary-school level, never averaged.
    Level(PrimaryLevel),
}

/// The mark as written: `7½`, `buono`, `non sufficiente`.
impl std::fmt::Display for Mark {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Numeric(v) => v.fmt(f),
            Self::Judgement(j) => j.fmt(f),
            Self::Level(l) => l.fmt(f),
        }
    }
}

impl Mark {
    /// The scale the mark is on.
    #[must_use]
    pub const fn scale(&self) -> crate::grade::Scale {
        match self {
            Self::Numeric(_) => crate::grade::Scale::Numeric,
            Self::Judgement(_) => crate::grade::Scale::Judgement,
            Self::Level(_) => crate::grade::Scale::Level,
        }
    }
}

/// What a teacher asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RecordCommand {
    /// Gives a grade.
    RecordGrade {
        /// The new grade's id.
        grade: GradeId,
        /// The subject (materia), as assigned to the teacher.
        subject: String,
        /// Written, oral, practical, graphic.
        kind: GradeKind,
        /// The value.
        mark: Mark,
        /// Its weight in the average (default 1).
        weight: Weight,
        /// Whether it counts in the average.
        counted: bool,
        /// What it is for.
        description: String,
        /// The day of the test.
        #[serde(with = "crate::iso_date")]
        date: Date,
    },
    /// Corrects a grade's value.
    CorrectGrade {
        /// The grade.
        grade: GradeId,
        /// The right value.
        mark: Mark,
        /// Why.
        reason: String,
    },
    /// Annuls a grade.
    AnnulGrade {
        /// The grade.
        grade: GradeId,
        /// Why.
        reason: String,
    },
    /// Records an absence, a late entry or an early exit.
    RecordAttendance {
        /// The new entry's id.
        entry: AttendanceId,
        /// The day.
        #[serde(with = "crate::iso_date")]
        date: Date,
        /// What was missed.
        missed: Missed,
    },
    /// Cancels an attendance entry recorded by mistake (a correction is a new entry).
    CancelAttendance {
        /// The entry.
        entry: AttendanceId,
        /// Why.
        reason: String,
    },
    /// Submits (or changes, until a teacher decides) the justification of an entry.
    SubmitJustification {
        /// The entry.
        entry: AttendanceId,
        /// Who submits it: a guardian, or the student when of age.
        justifier: Justifier,
        /// The reason.
        reason: Reason,
    },
    /// A teacher writes a note about the student (nota disciplinare) or an annotation.
    RecordNote {
        /// The new note's id.
        note: NoteId,
        /// Disciplinary note or annotation.
        kind: NoteKind,
        /// What happened.
        text: String,
        /// The day.
        #[serde(with = "crate::iso_date")]
        date: Date,
    },
    /// The principal decides a sanction (provvedimento disciplinare).
    DecideSanction {
        /// The new sanction's id.
        note: NoteId,
        /// The sanction and its reasons.
        text: String,
        /// The day it was decided.
        #[serde(with = "crate::iso_date")]
        date: Date,
    },
    /// Annuls a note or a sanction, with a reason: a teacher of the class for a note, the
    /// principal for a sanction.
    AnnulNote {
        /// The note or sanction.
        note: NoteId,
        /// Why.
        reason: String,
    },
    /// A teacher accepts or rejects the submitted justification.
    DecideJustification {
        /// The entry.
        entry: AttendanceId,
        /// Accepted (true) or rejected.
        accept: bool,
        /// Why (required for a rejection).
        reason: String,
    },
}

/// What kind of note.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoteKind {
    /// Nota disciplinare.
    Disciplinary,
    /// Annotazione (a remark, not disciplinary).
    Annotation,
    /// Provvedimento disciplinare, decided by the principal.
    Sanction,
}

impl RecordCommand {
    /// What identifies the command for idempotency: the command itself, without the sealed
    /// contents (a justification's reason, a teacher's decision note), so that the digest kept
    /// with an idempotency key, which outlives any erasure, holds no trace of them. (The same
    /// key sent again with another reason is then answered as a retry.)
    #[must_use]
    pub fn digest_form(&self) -> serde_json::Value {
        match self {
            Self::SubmitJustification {
                entry, justifier, ..
            } => serde_json::json!({
                "type": "submit_justification", "entry": entry, "justifier": justifier
            }),
            Self::DecideJustification { entry, accept, .. } => serde_json::json!({
                "type": "decide_justification", "entry": entry, "accept": accept
            }),
            other => serde_json::to_value(other).unwrap_or_default(),
        }
    }
}

/// The reason given for an absence, late entry or early exit. Stored sealed with the student's
/// key (the category may be health, special-category data), and erasable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reason {
    /// The category.
    pub category: ReasonCategory,
    /// Free text, possibly empty.
    pub text: String,
}

/// A sealed value as read back: open, or erased when its key was destroyed (crypto-shredding).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Sealable<T> {
    /// The value.
    Open(T),
    /// Erased: what the store shows once the data subject's key is destroyed.
    Erased {
        /// The store's marker.
        #[serde(rename = "$erased")]
        erased: serde_json::Value,
    },
}

/// What happened. Stored as events (`event_type` = the variant name, `data` = its fields).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum RecordEvent {
    /// A grade was given (voto).
    GradeRecorded {
        /// The grade.
        grade: GradeId,
        /// The class the student was in.
        class: ClassId,
        /// The subject.
        subject: String,
        /// The kind of test.
        kind: GradeKind,
        /// The value.
        mark: Mark,
        /// The weight.
        weight: Weight,
        /// Whether it counts in the average.
        counted: bool,
        /// What it is for.
        description: String,
        /// The day of the test.
        #[serde(with = "crate::iso_date")]
        date: Date,
    },
    /// A grade's value was corrected.
    GradeCorrected {
        /// The grade.
        grade: GradeId,
        /// The new value.
        mark: Mark,
        /// Why.
        reason: String,
    },
    /// A grade was annulled.
    GradeAnnulled {
        /// The grade.
        grade: GradeId,
        /// Why.
        reason: String,
    },
    /// An absence (assenza), late entry (ritardo) or early exit (uscita anticipata) was
    /// recorded, with the lesson hours it missed.
    AttendanceRecorded {
        /// The entry.
        entry: AttendanceId,
        /// The class the student was in.
        class: ClassId,
        /// The day.
        #[serde(with = "crate::iso_date")]
        date: Date,
        /// What was missed.
        missed: Missed,
        /// The numbers of the lesson hours missed, from the class's timetable.
        hours: Vec<u8>,
    },
    /// An attendance entry was cancelled.
    AttendanceCancelled {
        /// The entry.
        entry: AttendanceId,
        /// Why.
        reason: String,
    },
    /// A justification was submitted, or changed (giustificazione).
    JustificationSubmitted {
        /// The entry.
        entry: AttendanceId,
        /// Who submitted it.
        justifier: Justifier,
        /// The reason, sealed with the student's key.
        reason: Sealable<Reason>,
    },
    /// A teacher accepted the justification.
    JustificationAccepted {
        /// The entry.
        entry: AttendanceId,
        /// A note, possibly empty; sealed with the student's key like the justification's
        /// reason, which it may echo.
        reason: Sealable<String>,
    },
    /// A teacher rejected the justification, with a reason.
    JustificationRejected {
        /// The entry.
        entry: AttendanceId,
        /// Why; sealed with the student's key.
        reason: Sealable<String>,
    },
    /// A note, an annotation or a sanction was recorded (nota disciplinare, annotazione,
    /// provvedimento disciplinare).
    NoteRecorded {
        /// The note.
        note: NoteId,
        /// Its kind.
        kind: NoteKind,
        /// The class the student was in.
        class: ClassId,
        /// What happened, or the sanction.
        text: String,
        /// The day.
        #[serde(with = "crate::iso_date")]
        date: Date,
    },
    /// A note or sanction was annulled; it stays in the history.
    NoteAnnulled {
        /// The note.
        note: NoteId,
        /// Why.
        reason: String,
    },
    /// The record's special-category details (the sealed reasons of its justifications) were
    /// erased: their key was destroyed (rules.md section 7). Recorded by the software.
    SealedDataErased {
        /// The data subject whose key was destroyed ([`sealing_subject`] of the record).
        subject: PersonId,
        /// Why: `retention`, when the retention period ended.
        reason: String,
    },
}

impl crate::StoredEvent for RecordEvent {}

impl RecordEvent {
    /// Every event type name, as stored.
    pub const TYPE_NAMES: [&'static str; 11] = [
        "GradeRecorded",
        "GradeCorrected",
        "GradeAnnulled",
        "AttendanceRecorded",
        "AttendanceCancelled",
        "JustificationSubmitted",
        "JustificationAccepted",
        "JustificationRejected",
        "NoteRecorded",
        "NoteAnnulled",
        "SealedDataErased",
    ];

    /// The event's type name, as stored.
    #[must_use]
    pub const fn type_name(&self) -> &'static str {
        match self {
            Self::GradeRecorded { .. } => Self::TYPE_NAMES[0],
            Self::GradeCorrected { .. } => Self::TYPE_NAMES[1],
            Self::GradeAnnulled { .. } => Self::TYPE_NAMES[2],
            Self::AttendanceRecorded { .. } => Self::TYPE_NAMES[3],
            Self::AttendanceCancelled { .. } => Self::TYPE_NAMES[4],
            Self::JustificationSubmitted { .. } => Self::TYPE_NAMES[5],
            Self::JustificationAccepted { .. } => Self::TYPE_NAMES[6],
            Self::JustificationRejected { .. } => Self::TYPE_NAMES[7],
            Self::NoteRecorded { .. } => Self::TYPE_NAMES[8],
            Self::NoteAnnulled { .. } => Self::TYPE_NAMES[9],
            Self::SealedDataErased { .. } => Self::TYPE_NAMES[10],
        }
    }

    /// The JSON pointer of the event's field to seal with the student's key, if any: the
    /// reason of a justification (special-category data when it is health).
    #[must_use]
    pub const fn sealed_field(&self) -> Option<&'static str> {
        match self {
            Self::JustificationSubmitted { .. }
            | Self::JustificationAccepted { .. }
            | Self::JustificationRejected { .. } => Some("/reason"),
            _ => None,
        }
    }
}

/// Why a command was refused. Shown to teachers, in Italian.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The teacher does not teach that subject in the student's class.
    #[error("il docente non insegna questa materia nella classe dello studente")]
    NotYourSubject,
    /// The student is in no class.
    #[error("lo studente non è iscritto a una classe")]
    NotEnrolled,
    /// The date is not in the record's school year.
    #[error("la data non è nell'anno scolastico {0}")]
    OutsideYear(SchoolYear),
    /// The date is in a term whose scrutinio is closed.
    #[error(transparent)]
    Closed(#[from] TermClosed),
    /// The school year's terms are planned and the date falls in none of them (a holiday).
    #[error("la data non cade in nessun periodo dell'anno scolastico")]
    NotInTerm,
    /// No lessons are held that day: nobody is absent.
    #[error("in quel giorno non ci sono lezioni (vacanza o sospensione delle lezioni)")]
    Holiday,
    /// The date is after today.
    #[error("la data è nel futuro")]
    FutureDate,
    /// The grade is on another scale than the subject's other grades (or than the grade it
    /// corrects).
    #[error("il voto è su una scala diversa da quella della materia e dei suoi altri voti")]
    ScaleMismatch,
    /// The grade id is used already.
    #[error("questo voto esiste già")]
    GradeExists,
    /// No such grade in this record.
    #[error("voto sconosciuto")]
    UnknownGrade,
    /// The grade was annulled.
    #[error("il voto è stato annullato")]
    Annulled,
    /// A correction that changes nothing.
    #[error("la correzione non cambia il voto")]
    SameMark,
    /// A description or reason that is empty where one is required, or too long.
    #[error("testo mancante o più lungo di {MAX_TEXT_CHARS} caratteri")]
    Text,
    /// The class has no timetable, so the hours missed cannot be known.
    #[error("la classe non ha ancora un orario delle lezioni")]
    NoTimetable,
    /// The class has no lesson hour that would be missed (no lessons that day, an entry before
    /// the first hour, an exit after the last).
    #[error("nessuna ora di lezione persa in quel giorno a quell'ora")]
    NoHoursMissed,
    /// The day already has an entry that this one contradicts (an absence and a late entry).
    #[error("per quel giorno è già registrata un'assenza, un ritardo o un'uscita incompatibile")]
    AlreadyRecorded,
    /// No such attendance entry in this record.
    #[error("registrazione di presenza sconosciuta")]
    UnknownEntry,
    /// The entry was cancelled already.
    #[error("la registrazione è già stata annullata")]
    Cancelled,
    /// No such note in this record.
    #[error("nota sconosciuta")]
    UnknownNote,
    /// The note was annulled already.
    #[error("la nota è già stata annullata")]
    NoteAnnulled,
    /// Sanctions are the principal's, notes the class's teachers'.
    #[error("solo il dirigente scolastico decide e annulla i provvedimenti disciplinari")]
    NotThePrincipal,
    /// The id is used already.
    #[error("questa nota esiste già")]
    NoteExists,
    /// The teacher is the student's guardian: another teacher of the class decides.
    #[error("il docente è genitore o tutore dello studente: decide un altro docente della classe")]
    OwnChild,
    /// A justification rule refused it (`rules.md` section 5).
    #[error(transparent)]
    Justification(#[from] JustificationError),
}

/// The facts a decision needs from outside the record.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The student whose record it is.
    pub student: PersonId,
    /// The record's school year.
    pub year: SchoolYear,
    /// The teacher acting (or, for sanctions, the principal).
    pub teacher: PersonId,
    /// Whether the person acting does so as the principal.
    pub as_principal: bool,
    /// Today, in the school's time zone: nothing is dated after it.
    pub today: Date,
    /// The subjects the student is exempt from (their hours are never missed).
    pub exempt_subjects: &'a BTreeSet<String>,
    /// The school directory, now.
    pub directory: &'a Directory,
    /// The terms (indexes into the year's terms) closed by the class's scrutinio.
    pub closed_terms: &'a BTreeSet<usize>,
}

impl Context<'_> {
    /// Whether something dated `date` may be written: in the record's year, not after today,
    /// in one of the year's terms once they are planned, and not in a closed one.
    fn check_open(&self, date: Date) -> Result<(), RecordError> {
        if !self.year.contains(date) {
            return Err(RecordError::OutsideYear(self.year));
        }
        if date > self.today {
            return Err(RecordError::FutureDate);
        }
        match self.directory.terms(self.year) {
            Some(terms) if terms.term_of(date).is_none() => Err(RecordError::NotInTerm),
            Some(terms) => Ok(terms.check_open(self.closed_terms, date)?),
            None => Ok(()),
        }
    }
}

/// A grade as it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grade {
    /// The class the student was in.
    pub class: ClassId,
    /// The subject.
    pub subject: String,
    /// The kind of test.
    pub kind: GradeKind,
    /// The current value (after corrections).
    pub mark: Mark,
    /// The weight.
    pub weight: Weight,
    /// Whether it counts in the average.
    pub counted: bool,
    /// What it is for.
    pub description: String,
    /// The day of the test.
    pub date: Date,
    /// How many times it was corrected.
    pub corrections: u32,
    /// Why it was annulled, if it was.
    pub annulled: Option<String>,
}

/// An attendance entry as it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttendanceEntry {
    /// The class the student was in.
    pub class: ClassId,
    /// The day.
    pub date: Date,
    /// What was missed.
    pub missed: Missed,
    /// The lesson hours missed.
    pub hours: Vec<u8>,
    /// Why it was cancelled, if it was.
    pub cancelled: Option<String>,
    /// Its justification.
    pub justification: Justification,
}

/// An entry's justification as it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Justification {
    /// Where it stands.
    pub state: JustificationState,
    /// Who submitted the last one.
    pub justifier: Option<Justifier>,
    /// The reason given (sealed; erased once its retention ends).
    pub reason: Option<Sealable<Reason>>,
    /// The teacher's note or reason for rejecting it (sealed; erased with the reason).
    pub decision: Option<Sealable<String>>,
}

impl Default for Justification {
    fn default() -> Self {
        Self {
            state: JustificationState::Missing,
            justifier: None,
            reason: None,
            decision: None,
        }
    }
}

/// A note as it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// Its kind.
    pub kind: NoteKind,
    /// The class the student was in.
    pub class: ClassId,
    /// What happened.
    pub text: String,
    /// The day.
    pub date: Date,
    /// Why it was annulled, if it was.
    pub annulled: Option<String>,
}

/// The state of a student's record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record {
    notes: BTreeMap<NoteId, Note>,
    /// The notes in the order they were written.
    note_order: Vec<NoteId>,
    grades: BTreeMap<GradeId, Grade>,
    /// The grades in the order they were given.
    grade_order: Vec<GradeId>,
    attendance: BTreeMap<AttendanceId, AttendanceEntry>,
    /// The entries in the order they were recorded.
    attendance_order: Vec<AttendanceId>,
}

impl Record {
    /// The grade, annulled or not.
    #[must_use]
    pub fn grade(&self, id: GradeId) -> Option<&Grade> {
        self.grades.get(&id)
    }

    /// Every grade, annulled ones included, in the order they were given.
    pub fn grades(&self) -> impl Iterator<Item = (GradeId, &Grade)> {
        self.grade_order
            .iter()
            .filter_map(|id| self.grades.get(id).map(|g| (*id, g)))
    }

    /// Every note and sanction, annulled ones included, in the order they were written.
    pub fn notes(&self) -> impl Iterator<Item = (NoteId, &Note)> {
        self.note_order
            .iter()
            .filter_map(|id| self.notes.get(id).map(|n| (*id, n)))
    }

    /// Every attendance entry, cancelled ones included, in the order they were recorded.
    pub fn attendance(&self) -> impl Iterator<Item = (AttendanceId, &AttendanceEntry)> {
        self.attendance_order
            .iter()
            .filter_map(|id| self.attendance.get(id).map(|a| (*id, a)))
    }

    /// The lesson hours missed, entry by entry (cancelled entries left out): each day with
    /// the hours missed on it, for the attendance limit ([`crate::attendance::counted_hours`]).
    #[must_use]
    pub fn missed_hours(&self) -> Vec<(Date, u32)> {
        self.attendance
            .values()
            .filter(|a| a.cancelled.is_none())
            .map(|a| (a.date, u32::try_from(a.hours.len()).unwrap_or(u32::MAX)))
            .collect()
    }

    /// The weighted average of the counted numeric grades of `subject` dated between `from`
    /// and `to` (a term), annulled ones left out; `None` without such grades. Judgements and
    /// levels are never averaged.
    #[must_use]
    pub fn average(&self, subject: &str, from: Date, to: Date) -> Option<Average> {
        Average::of(self.grades.values().filter_map(|g| match g.mark {
            Mark::Numeric(value)
                if g.subject == subject
                    && g.counted
                    && g.annulled.is_none()
                    && from <= g.date
                    && g.date <= to =>
            {
                Some((value, g.weight))
            }
            _ => None,
        }))
    }
}

fn text(t: &str, required: bool) -> Result<String, RecordError> {
    let t = t.trim();
    if (required && t.is_empty()) || t.chars().count() > MAX_TEXT_CHARS {
        return Err(RecordError::Text);
    }
    Ok(t.to_owned())
}

/// Decides what a command means, given the record and the context. Pure: no clock, no IO.
///
/// # Errors
/// [`RecordError`] when the command breaks a rule; nothing is to be written then.
pub fn decide(
    state: &Record,
    command: &RecordCommand,
    ctx: &Context<'_>,
) -> Result<Vec<RecordEvent>, RecordError> {
    use RecordCommand as C;
    use RecordEvent as E;
    let event = match command {
        C::RecordGrade {
            grade,
            subject,
            kind,
            mark,
            weight,
            counted,
            description,
            date,
        } => {
            if state.grades.contains_key(grade) {
                return Err(RecordError::GradeExists);
            }
            let class = ctx
                .directory
                .class_of(ctx.student)
                .ok_or(RecordError::NotEnrolled)?;
            if !ctx.directory.teaches_subject(ctx.teacher, class, subject) {
                return Err(RecordError::NotYourSubject);
            }
            ctx.check_open(*date)?;
            // A subject's grades are on its scale: numbers are averaged, judgements never.
            if ctx
                .directory
                .subject_scale(subject)
                .is_some_and(|s| s != mark.scale())
                || state.grades.values().any(|g| {
                    g.subject == *subject && g.annulled.is_none() && !same_scale(&g.mark, mark)
                })
            {
                return Err(RecordError::ScaleMismatch);
            }
            E::GradeRecorded {
                grade: *grade,
                class,
                subject: subject.clone(),
                kind: *kind,
                mark: *mark,
                weight: *weight,
                counted: *counted,
                description: text(description, false)?,
                date: *date,
            }
        }
        C::CorrectGrade {
            grade,
            mark,
            reason,
        } => {
            let existing = changeable(state, *grade, ctx)?;
            if existing.mark == *mark {
                return Err(RecordError::SameMark);
            }
            if !same_scale(&existing.mark, mark) {
                return Err(RecordError::ScaleMismatch);
            }
            E::GradeCorrected {
                grade: *grade,
                mark: *mark,
                reason: text(reason, true)?,
            }
        }
        C::AnnulGrade { grade, reason } => {
            changeable(state, *grade, ctx)?;
            E::GradeAnnulled {
                grade: *grade,
                reason: text(reason, true)?,
            }
        }
        C::RecordAttendance {
            entry,
            date,
            missed,
        } => {
            if state.attendance.contains_key(entry) {
                return Err(RecordError::AlreadyRecorded);
            }
            let class = ctx
                .directory
                .class_of(ctx.student)
                .ok_or(RecordError::NotEnrolled)?;
            if !ctx.directory.teaches_class(ctx.teacher, class) {
                return Err(RecordError::NotYourSubject);
            }
            ctx.check_open(*date)?;
            if ctx
                .directory
                .terms(ctx.year)
                .is_some_and(|t| t.is_holiday(*date))
            {
                return Err(RecordError::Holiday);
            }
            let timetable = ctx
                .directory
                .timetable(class)
                .ok_or(RecordError::NoTimetable)?;
            let hours = timetable.missed_hours(*date, *missed, ctx.exempt_subjects);
            if hours.is_empty() {
                return Err(RecordError::NoHoursMissed);
            }
            let clashes = |other: &Missed| {
                matches!(
                    (missed, other),
                    (Missed::WholeDay, _)
                        | (_, Missed::WholeDay)
                        | (Missed::LateEntry(_), Missed::LateEntry(_))
                        | (Missed::EarlyExit(_), Missed::EarlyExit(_))
                )
            };
            if state
                .attendance
                .values()
                .any(|a| a.cancelled.is_none() && a.date == *date && clashes(&a.missed))
            {
                return Err(RecordError::AlreadyRecorded);
            }
            E::AttendanceRecorded {
                entry: *entry,
                class,
                date: *date,
                missed: *missed,
                hours,
            }
        }
        C::SubmitJustification {
            entry,
            justifier,
            reason,
        } => {
            let existing = live_entry(state, *entry)?;
            existing.justification.state.may_submit()?;
            let settings = ctx.directory.justification_settings();
            match ctx.directory.person(ctx.student).and_then(|p| p.birth_date) {
                Some(birth) => may_justify(&settings, *justifier, birth, existing.date)?,
                // Without a date of birth the student counts as a minor.
                None if *justifier == Justifier::Guardian => {}
                None => return Err(JustificationError::MinorCannotJustify.into()),
            }
            ctx.check_open(existing.date)?;
            E::JustificationSubmitted {
                entry: *entry,
                justifier: *justifier,
                reason: Sealable::Open(Reason {
                    category: reason.category,
                    text: text(&reason.text, false)?,
                }),
            }
        }
        C::DecideJustification {
            entry,
            accept,
            reason,
        } => {
            let existing = live_entry(state, *entry)?;
            if !ctx.directory.teaches_class(ctx.teacher, existing.class) {
                return Err(RecordError::NotYourSubject);
            }
            // A teacher who is also the student's guardian is a party to the justification:
            // another teacher of the class decides it.
            if ctx.directory.is_linked(ctx.teacher, ctx.student) {
                return Err(RecordError::OwnChild);
            }
            existing.justification.state.may_decide(*accept, reason)?;
            ctx.check_open(existing.date)?;
            let reason = Sealable::Open(text(reason, !*accept)?);
            if *accept {
                E::JustificationAccepted {
                    entry: *entry,
                    reason,
                }
            } else {
                E::JustificationRejected {
                    entry: *entry,
                    reason,
                }
            }
        }
        C::RecordNote {
            note,
            kind,
            text: what,
            date,
        } => {
            if *kind == NoteKind::Sanction {
                return Err(RecordError::NotThePrincipal);
            }
            let class = ctx
                .directory
                .class_of(ctx.student)
                .ok_or(RecordError::NotEnrolled)?;
            if !ctx.directory.teaches_class(ctx.teacher, class) {
                return Err(RecordError::NotYourSubject);
            }
            new_note(state, *note)?;
            ctx.check_open(*date)?;
            E::NoteRecorded {
                note: *note,
                kind: *kind,
                class,
                text: text(what, true)?,
                date: *date,
            }
        }
        C::DecideSanction {
            note,
            text: what,
            date,
        } => {
            if !ctx.as_principal {
                return Err(RecordError::NotThePrincipal);
            }
            let class = ctx
                .directory
                .class_of(ctx.student)
                .ok_or(RecordError::NotEnrolled)?;
            new_note(state, *note)?;
            ctx.check_open(*date)?;
            E::NoteRecorded {
                note: *note,
                kind: NoteKind::Sanction,
                class,
                text: text(what, true)?,
                date: *date,
            }
        }
        C::AnnulNote { note, reason } => {
            let existing = state.notes.get(note).ok_or(RecordError::UnknownNote)?;
            if existing.annulled.is_some() {
                return Err(RecordError::NoteAnnulled);
            }
            let allowed = if existing.kind == NoteKind::Sanction {
                ctx.as_principal
            } else {
                ctx.as_principal || ctx.directory.teaches_class(ctx.teacher, existing.class)
            };
            if !allowed {
                return Err(RecordError::NotThePrincipal);
            }
            E::NoteAnnulled {
                note: *note,
                reason: text(reason, true)?,
            }
        }
        C::CancelAttendance { entry, reason } => {
            let existing = state
                .attendance
                .get(entry)
                .ok_or(RecordError::UnknownEntry)?;
            if existing.cancelled.is_some() {
                return Err(RecordError::Cancelled);
            }
            if !ctx.directory.teaches_class(ctx.teacher, existing.class) {
                return Err(RecordError::NotYourSubject);
            }
            ctx.check_open(existing.date)?;
            E::AttendanceCancelled {
                entry: *entry,
                reason: text(reason, true)?,
            }
        }
    };
    Ok(vec![event])
}

/// Refuses an id already used for a note.
fn new_note(state: &Record, note: NoteId) -> Result<(), RecordError> {
    if state.notes.contains_key(&note) {
        return Err(RecordError::NoteExists);
    }
    Ok(())
}

/// An attendance entry that stands (not cancelled).
fn live_entry(state: &Record, entry: AttendanceId) -> Result<&AttendanceEntry, RecordError> {
    let existing = state
        .attendance
        .get(&entry)
        .ok_or(RecordError::UnknownEntry)?;
    if existing.cancelled.is_some() {
        return Err(RecordError::Cancelled);
    }
    Ok(existing)
}

fn same_scale(a: &Mark, b: &Mark) -> bool {
    a.scale() == b.scale()
}

/// A grade the acting teacher may correct or annul: not annulled, of a subject they teach in
/// the grade's class, dated in a term still open.
fn changeable<'a>(
    state: &'a Record,
    grade: GradeId,
    ctx: &Context<'_>,
) -> Result<&'a Grade, RecordError> {
    let existing = state.grades.get(&grade).ok_or(RecordError::UnknownGrade)?;
    if existing.annulled.is_some() {
        return Err(RecordError::Annulled);
    }
    if !ctx
        .directory
        .teaches_subject(ctx.teacher, existing.class, &existing.subject)
    {
        return Err(RecordError::NotYourSubject);
    }
    ctx.check_open(existing.date)?;
    Ok(existing)
}

/// Applies an event to the state. Events are facts: applying never fails.
pub fn evolve(state: &mut Record, event: &RecordEvent) {
    use RecordEvent as E;
    match event {
        E::GradeRecorded {
            grade,
            class,
            subject,
            kind,
            mark,
            weight,
            counted,
            description,
            date,
        } => {
            state.grade_order.push(*grade);
            state.grades.insert(
                *grade,
                Grade {
                    class: *class,
                    subject: subject.clone(),
                    kind: *kind,
                    mark: *mark,
                    weight: *weight,
                    counted: *counted,
                    description: description.clone(),
                    date: *date,
                    corrections: 0,
                    annulled: None,
                },
            );
        }
        E::GradeCorrected { grade, mark, .. } => {
            if let Some(g) = state.grades.get_mut(grade) {
                g.mark = *mark;
                g.corrections += 1;
            }
        }
        E::GradeAnnulled { grade, reason } => {
            if let Some(g) = state.grades.get_mut(grade) {
                g.annulled = Some(reason.clone());
            }
        }
        E::AttendanceRecorded {
            entry,
            class,
            date,
            missed,
            hours,
        } => {
            state.attendance_order.push(*entry);
            state.attendance.insert(
                *entry,
                AttendanceEntry {
                    class: *class,
                    date: *date,
                    missed: *missed,
                    hours: hours.clone(),
                    cancelled: None,
                    justification: Justification::default(),
                },
            );
        }
        E::AttendanceCancelled { entry, reason } => {
            if let Some(a) = state.attendance.get_mut(entry) {
                a.cancelled = Some(reason.clone());
            }
        }
        E::JustificationSubmitted {
            entry,
            justifier,
            reason,
        } => {
            if let Some(a) = state.attendance.get_mut(entry) {
                a.justification = Justification {
                    state: JustificationState::Submitted,
                    justifier: Some(*justifier),
                    reason: Some(reason.clone()),
                    decision: None,
                };
            }
        }
        E::NoteRecorded {
            note,
            kind,
            class,
            text,
            date,
        } => {
            state.note_order.push(*note);
            state.notes.insert(
                *note,
                Note {
                    kind: *kind,
                    class: *class,
                    text: text.clone(),
                    date: *date,
                    annulled: None,
                },
            );
        }
        E::NoteAnnulled { note, reason } => {
            if let Some(n) = state.notes.get_mut(note) {
                n.annulled = Some(reason.clone());
            }
        }
        // The store shows the sealed reasons as erased from now on; so does a state folded
        // before (kept in memory), as a fold from the first event would. Nothing else changes.
        E::SealedDataErased { subject, .. } => {
            let erased = || serde_json::json!({ "subject": subject });
            for entry in state.attendance.values_mut() {
                let j = &mut entry.justification;
                if matches!(j.reason, Some(Sealable::Open(_))) {
                    j.reason = Some(Sealable::Erased { erased: erased() });
                }
                if matches!(j.decision, Some(Sealable::Open(_))) {
                    j.decision = Some(Sealable::Erased { erased: erased() });
                }
            }
        }
        E::JustificationAccepted { entry, reason } | E::JustificationRejected { entry, reason } => {
            if let Some(a) = state.attendance.get_mut(entry) {
                a.justification.state = if matches!(event, E::JustificationAccepted { .. }) {
                    JustificationState::Accepted
                } else {
                    JustificationState::Rejected
                };
                a.justification.decision = Some(reason.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::StoredEvent as _;
    use time::macros::date;

    use super::*;
    use crate::calendar::Term;
    use crate::directory::{self, DirectoryCommand};
    use crate::{FiscalCode, Role};

    static NO_EXEMPTIONS: BTreeSet<String> = BTreeSet::new();
    static NO_CLOSED_TERMS: BTreeSet<usize> = BTreeSet::new();

    /// The mathematics teacher acting on the student's 2025/26 record, no term closed.
    fn ctx(w: &World) -> Context<'_> {
        Context {
            student: w.student,
            year: SchoolYear::starting(2025),
            teacher: w.teacher,
            exempt_subjects: &NO_EXEMPTIONS,
            today: TODAY,
            as_principal: false,
            directory: &w.dir,
            closed_terms: &NO_CLOSED_TERMS,
        }
    }
    /// The day the tests decide on: late in the school year 2025/26.
    const TODAY: Date = date!(2026 - 06 - 30);

    struct World {
        dir: Directory,
        teacher: PersonId,
        other_teacher: PersonId,
        student: PersonId,
        /// A student of the same class, born on 1 January 2007: of age in 2025/26.
        adult: PersonId,
    }

    fn world() -> World {
        let mut dir = Directory::default();
        let mut run = |c: DirectoryCommand| {
            for e in directory::decide(&dir, &c).unwrap() {
                directory::evolve(&mut dir, &e);
            }
        };
        for (subject, scale) in [
            ("Matematica", crate::grade::Scale::Numeric),
            ("Storia", crate::grade::Scale::Numeric),
            ("Religione", crate::grade::Scale::Judgement),
            ("Italiano", crate::grade::Scale::Numeric),
            ("Inglese", crate::grade::Scale::Numeric),
        ] {
            run(DirectoryCommand::DefineSubject {
                subject: subject.into(),
                scale,
            });
        }
        let register = |person, date: &str, role| DirectoryCommand::Register {
            person,
            fiscal_code: FiscalCode::with_check_character(&format!("XXXYYY{date}Z999")).unwrap(),
            family_name: "Rossi".into(),
            given_name: "Anna".into(),
            role,
            birth_date: None,
        };
        let (teacher, other_teacher, student, class) = (
            PersonId::new(),
            PersonId::new(),
            PersonId::new(),
            ClassId::new(),
        );
        run(register(teacher, "70A01", Role::Teacher));
        run(register(other_teacher, "71A01", Role::Teacher));
        run(register(student, "10A01", Role::Student));
        run(DirectoryCommand::CreateClass {
            class,
            name: "2B".into(),
        });
        run(DirectoryCommand::AssignTeacher {
            teacher,
            class,
            subject: "Matematica".into(),
        });
        run(DirectoryCommand::AssignTeacher {
            teacher: other_teacher,
            class,
            subject: "Storia".into(),
        });
        run(DirectoryCommand::AssignTeacher {
            teacher,
            class,
            subject: "Religione".into(),
        });
        run(DirectoryCommand::EnrolStudent { student, class });
        let adult = PersonId::new();
        run(DirectoryCommand::Register {
            person: adult,
            fiscal_code: FiscalCode::with_check_character("XXXYYY07A01Z999").unwrap(),
            family_name: "Bianchi".into(),
            given_name: "Carlo".into(),
            role: Role::Student,
            birth_date: Some(date!(2007 - 01 - 01)),
        });
        run(DirectoryCommand::EnrolStudent {
            student: adult,
            class,
        });
        // Monday and Tuesday, five hours from 8:00, mathematics first on Monday.
        let subjects = ["Matematica", "Italiano", "Storia", "Religione", "Inglese"];
        let mut hours = Vec::new();
        for weekday in [time::Weekday::Monday, time::Weekday::Tuesday] {
            for (subject, n) in subjects.iter().zip(1u8..) {
                hours.push(crate::timetable::LessonHour {
                    weekday,
                    number: n,
                    start: time::Time::from_hms(7 + n, 0, 0).unwrap(),
                    end: time::Time::from_hms(8 + n, 0, 0).unwrap(),
                    subject: (*subject).into(),
                    teacher: None,
                });
            }
        }
        run(DirectoryCommand::SetTimetable { class, hours });
        run(DirectoryCommand::PlanSchoolYear {
            year: SchoolYear::starting(2025),
            terms: vec![
                Term {
                    name: "trimestre".into(),
                    start: date!(2025 - 09 - 15),
                    end: date!(2025 - 12 - 20),
                },
                Term {
                    name: "pentamestre".into(),
                    start: date!(2026 - 01 - 07),
                    end: date!(2026 - 06 - 10),
                },
            ],
            // Immacolata, a Monday.
            holidays: vec![date!(2025 - 12 - 08)],
        });
        World {
            dir,
            teacher,
            other_teacher,
            student,
            adult,
        }
    }

    fn numeric(text: &str) -> Mark {
        Mark::Numeric(GradeValue::parse(text).unwrap())
    }

    fn record(grade: GradeId, mark: Mark, date: Date) -> RecordCommand {
        RecordCommand::RecordGrade {
            grade,
            subject: "Matematica".into(),
            kind: GradeKind::Written,
            mark,
            weight: Weight::ONE,
            counted: true,
            description: "Verifica sulle equazioni".into(),
            date,
        }
    }

    /// Given these commands by the mathematics teacher with every term open (each must
    /// succeed), when `command` by `teacher` with the terms `closed` closed, then the result.
    fn given_when(
        w: &World,
        teacher: PersonId,
        closed: &BTreeSet<usize>,
        given: &[RecordCommand],
        command: &RecordCommand,
    ) -> Result<Vec<RecordEvent>, RecordError> {
        let ctx = ctx(w);
        let mut state = Record::default();
        for c in given {
            for e in decide(&state, c, &ctx).expect("the given commands succeed") {
                evolve(&mut state, &e);
            }
        }
        let ctx = Context {
            teacher,
            closed_terms: closed,
            ..ctx
        };
        decide(&state, command, &ctx)
    }

    #[test]
    fn rule_2_only_the_teacher_of_the_subject_in_the_class_gives_a_grade() {
        let w = world();
        let open = BTreeSet::new();
        let g = GradeId::new();
        let cmd = record(g, numeric("7+"), date!(2025 - 10 - 06));
        let events = given_when(&w, w.teacher, &open, &[], &cmd).unwrap();
        assert!(matches!(
            &events[..],
            [RecordEvent::GradeRecorded { mark, .. }] if *mark == numeric("7+")
        ));
        // The history teacher of the same class cannot grade mathematics.
        assert_eq!(
            given_when(&w, w.other_teacher, &open, &[], &cmd),
            Err(RecordError::NotYourSubject)
        );
    }

    #[test]
    fn rule_2_a_correction_names_the_grade_and_why_and_keeps_the_history() {
        let w = world();
        let open = BTreeSet::new();
        let g = GradeId::new();
        let given = [record(g, numeric("5"), date!(2025 - 10 - 06))];
        let correct = |reason: &str| RecordCommand::CorrectGrade {
            grade: g,
            mark: numeric("6-"),
            reason: reason.into(),
        };
        assert_eq!(
            given_when(
                &w,
                w.teacher,
                &open,
                &given,
                &correct("errore di trascrizione")
            ),
            Ok(vec![RecordEvent::GradeCorrected {
                grade: g,
                mark: numeric("6-"),
                reason: "errore di trascrizione".into()
            }])
        );
        assert_eq!(
            given_when(&w, w.teacher, &open, &given, &correct("  ")),
            Err(RecordError::Text)
        );
        let same = RecordCommand::CorrectGrade {
            grade: g,
            mark: numeric("5"),
            reason: "x".into(),
        };
        assert_eq!(
            given_when(&w, w.teacher, &open, &given, &same),
            Err(RecordError::SameMark)
        );
        assert_eq!(
            given_when(&w, w.other_teacher, &open, &given, &correct("x")),
            Err(RecordError::NotYourSubject)
        );
    }

    #[test]
    fn rule_2_an_annulled_grade_leaves_the_average_and_cannot_change_again() {
        let w = world();
        let ctx = ctx(&w);
        let (a, b, c) = (GradeId::new(), GradeId::new(), GradeId::new());
        let mut state = Record::default();
        let oct = date!(2025 - 10 - 06);
        let apply = |cmd: RecordCommand, state: &mut Record| {
            for e in decide(state, &cmd, &ctx).unwrap() {
                evolve(state, &e);
            }
        };
        apply(record(a, numeric("4"), oct), &mut state);
        apply(record(b, numeric("8"), oct), &mut state);
        let mut not_counted = record(c, numeric("2"), oct);
        if let RecordCommand::RecordGrade { counted, .. } = &mut not_counted {
            *counted = false;
        }
        apply(not_counted, &mut state);
        let (from, to) = (date!(2025 - 09 - 15), date!(2025 - 12 - 20));
        assert_eq!(
            state.average("Matematica", from, to).unwrap().to_string(),
            "6.00"
        );
        apply(
            RecordCommand::AnnulGrade {
                grade: a,
                reason: "compito copiato: si ripete".into(),
            },
            &mut state,
        );
        assert_eq!(
            state.average("Matematica", from, to).unwrap().to_string(),
            "8.00"
        );
        assert_eq!(
            state.grade(a).unwrap().annulled.as_deref(),
            Some("compito copiato: si ripete")
        );
        let again = RecordCommand::CorrectGrade {
            grade: a,
            mark: numeric("5"),
            reason: "x".into(),
        };
        assert_eq!(decide(&state, &again, &ctx), Err(RecordError::Annulled));
        // Averages are per term: the pentamestre has none yet.
        assert_eq!(
            state.average("Matematica", date!(2026 - 01 - 07), date!(2026 - 06 - 10)),
            None
        );
    }

    #[test]
    fn rule_2_judgements_are_recorded_but_never_averaged() {
        let w = world();
        let ctx = ctx(&w);
        let mut state = Record::default();
        let mut religion = record(
            GradeId::new(),
            Mark::Judgement(Judgement::Distinto),
            date!(2025 - 10 - 06),
        );
        if let RecordCommand::RecordGrade { subject, .. } = &mut religion {
            *subject = "Religione".into();
        }
        for e in decide(&state, &religion, &ctx).unwrap() {
            evolve(&mut state, &e);
        }
        assert_eq!(
            state.average("Religione", date!(2025 - 09 - 01), date!(2026 - 08 - 31)),
            None
        );
    }

    #[test]
    fn rule_2_a_subject_is_graded_on_the_scale_the_school_defined_for_it() {
        let w = world();
        let open = BTreeSet::new();
        // Religion is graded by judgement: a number is refused, even as its first grade; and
        // mathematics by numbers.
        let mut number_in_religion = record(GradeId::new(), numeric("8"), date!(2025 - 10 - 06));
        if let RecordCommand::RecordGrade { subject, .. } = &mut number_in_religion {
            *subject = "Religione".into();
        }
        assert_eq!(
            given_when(&w, w.teacher, &open, &[], &number_in_religion),
            Err(RecordError::ScaleMismatch)
        );
        let level_in_maths = record(
            GradeId::new(),
            Mark::Level(PrimaryLevel::Buono),
            date!(2025 - 10 - 06),
        );
        assert_eq!(
            given_when(&w, w.teacher, &open, &[], &level_in_maths),
            Err(RecordError::ScaleMismatch)
        );
    }

    #[test]
    fn rule_6_a_grade_dated_in_a_closed_term_is_refused_until_the_principal_reopens_it() {
        let w = world();
        let g = GradeId::new();
        let november = record(g, numeric("6"), date!(2025 - 11 - 20));
        let first_closed = BTreeSet::from([0]);
        assert_eq!(
            given_when(&w, w.teacher, &first_closed, &[], &november),
            Err(RecordError::Closed(TermClosed {
                term: "trimestre".into()
            }))
        );
        // The second term is still open.
        assert!(
            given_when(
                &w,
                w.teacher,
                &first_closed,
                &[],
                &record(g, numeric("6"), date!(2026 - 02 - 02))
            )
            .is_ok()
        );
        // Corrections and annulments of a grade in a closed term are refused too.
        let open = BTreeSet::new();
        let given = [november.clone()];
        let annul = RecordCommand::AnnulGrade {
            grade: g,
            reason: "x".into(),
        };
        assert!(given_when(&w, w.teacher, &open, &given, &annul).is_ok());
        let ctx = ctx(&w);
        let mut state = Record::default();
        for e in decide(&state, &november, &ctx).unwrap() {
            evolve(&mut state, &e);
        }
        let closed_ctx = Context {
            closed_terms: &first_closed,
            ..ctx
        };
        assert!(matches!(
            decide(&state, &annul, &closed_ctx),
            Err(RecordError::Closed(_))
        ));
        // Reopened: allowed again.
        assert!(decide(&state, &annul, &ctx).is_ok());
    }

    #[test]
    fn a_grade_outside_the_school_year_or_of_a_student_in_no_class_is_refused() {
        let w = world();
        let open = BTreeSet::new();
        assert_eq!(
            given_when(
                &w,
                w.teacher,
                &open,
                &[],
                &record(GradeId::new(), numeric("6"), date!(2026 - 09 - 14))
            ),
            Err(RecordError::OutsideYear(SchoolYear::starting(2025)))
        );
        let ctx = Context {
            student: PersonId::new(),
            ..ctx(&w)
        };
        assert_eq!(
            decide(
                &Record::default(),
                &record(GradeId::new(), numeric("6"), date!(2025 - 10 - 06)),
                &ctx
            ),
            Err(RecordError::NotEnrolled)
        );
    }

    fn attend(entry: AttendanceId, date: Date, missed: Missed) -> RecordCommand {
        RecordCommand::RecordAttendance {
            entry,
            date,
            missed,
        }
    }

    #[test]
    fn rule_1_an_absence_misses_the_hours_of_the_class_timetable() {
        let w = world();
        let open = BTreeSet::new();
        let monday = date!(2025 - 10 - 06);
        let events = given_when(
            &w,
            w.other_teacher,
            &open,
            &[],
            &attend(AttendanceId::new(), monday, Missed::WholeDay),
        )
        .unwrap();
        assert!(matches!(
            &events[..],
            [RecordEvent::AttendanceRecorded { hours, .. }] if *hours == vec![1, 2, 3, 4, 5]
        ));
        // On a holiday no lesson is held: nobody is absent.
        assert_eq!(
            given_when(
                &w,
                w.teacher,
                &open,
                &[],
                &attend(AttendanceId::new(), date!(2025 - 12 - 08), Missed::WholeDay)
            ),
            Err(RecordError::Holiday)
        );
        // In at 9:40: the first hour and most of the second.
        let late = attend(
            AttendanceId::new(),
            monday,
            Missed::LateEntry(time::macros::time!(9:40)),
        );
        assert!(matches!(
            &given_when(&w, w.teacher, &open, &[], &late).unwrap()[..],
            [RecordEvent::AttendanceRecorded { hours, .. }] if *hours == vec![1, 2]
        ));
        // A student exempt from religion misses four hours on a whole day.
        let exempt = BTreeSet::from(["Religione".to_owned()]);
        let ctx = Context {
            exempt_subjects: &exempt,
            ..ctx(&w)
        };
        let events = decide(
            &Record::default(),
            &attend(AttendanceId::new(), monday, Missed::WholeDay),
            &ctx,
        )
        .unwrap();
        assert!(matches!(
            &events[..],
            [RecordEvent::AttendanceRecorded { hours, .. }] if hours.len() == 4
        ));
        // No lessons on Wednesday in this timetable.
        assert_eq!(
            given_when(
                &w,
                w.teacher,
                &open,
                &[],
                &attend(AttendanceId::new(), date!(2025 - 10 - 08), Missed::WholeDay)
            ),
            Err(RecordError::NoHoursMissed)
        );
    }

    #[test]
    fn a_day_has_one_absence_or_one_late_entry_and_one_early_exit() {
        let w = world();
        let open = BTreeSet::new();
        let monday = date!(2025 - 10 - 06);
        let late = attend(
            AttendanceId::new(),
            monday,
            Missed::LateEntry(time::macros::time!(9:00)),
        );
        let early = attend(
            AttendanceId::new(),
            monday,
            Missed::EarlyExit(time::macros::time!(12:00)),
        );
        assert!(given_when(&w, w.teacher, &open, std::slice::from_ref(&late), &early).is_ok());
        assert_eq!(
            given_when(
                &w,
                w.teacher,
                &open,
                std::slice::from_ref(&late),
                &attend(AttendanceId::new(), monday, Missed::WholeDay)
            ),
            Err(RecordError::AlreadyRecorded)
        );
        // Cancelled, the late entry no longer stands in the way of the absence.
        let RecordCommand::RecordAttendance { entry, .. } = late else {
            unreachable!()
        };
        let cancel = RecordCommand::CancelAttendance {
            entry,
            reason: "era assente tutto il giorno".into(),
        };
        assert!(
            given_when(
                &w,
                w.teacher,
                &open,
                &[late.clone(), cancel.clone()],
                &attend(AttendanceId::new(), monday, Missed::WholeDay)
            )
            .is_ok()
        );
        assert_eq!(
            given_when(&w, w.teacher, &open, &[late, cancel.clone()], &cancel),
            Err(RecordError::Cancelled)
        );
    }

    #[test]
    fn rule_6_an_absence_dated_in_a_closed_term_is_refused() {
        let w = world();
        assert!(matches!(
            given_when(
                &w,
                w.teacher,
                &BTreeSet::from([0]),
                &[],
                &attend(AttendanceId::new(), date!(2025 - 10 - 06), Missed::WholeDay)
            ),
            Err(RecordError::Closed(_))
        ));
    }

    #[test]
    fn rule_2_a_subjects_grades_stay_on_one_scale() {
        let w = world();
        let open = BTreeSet::new();
        let g = GradeId::new();
        let given = [record(g, numeric("6"), date!(2025 - 10 - 06))];
        let judgement = record(
            GradeId::new(),
            Mark::Judgement(Judgement::Buono),
            date!(2025 - 10 - 07),
        );
        assert_eq!(
            given_when(&w, w.teacher, &open, &given, &judgement),
            Err(RecordError::ScaleMismatch)
        );
        let to_level = RecordCommand::CorrectGrade {
            grade: g,
            mark: Mark::Level(PrimaryLevel::Buono),
            reason: "x".into(),
        };
        assert_eq!(
            given_when(&w, w.teacher, &open, &given, &to_level),
            Err(RecordError::ScaleMismatch)
        );
    }

    #[test]
    fn nothing_is_dated_in_the_future_or_between_terms() {
        let w = world();
        let open = BTreeSet::new();
        // After "today" (30 June 2026), still in the school year.
        assert_eq!(
            given_when(
                &w,
                w.teacher,
                &open,
                &[],
                &record(GradeId::new(), numeric("6"), date!(2026 - 07 - 01))
            ),
            Err(RecordError::FutureDate)
        );
        // The Christmas holidays fall between the trimestre and the pentamestre.
        assert_eq!(
            given_when(
                &w,
                w.teacher,
                &open,
                &[],
                &record(GradeId::new(), numeric("6"), date!(2025 - 12 - 29))
            ),
            Err(RecordError::NotInTerm)
        );
    }

    #[test]
    fn grades_and_entries_come_in_the_order_they_were_given() {
        let w = world();
        let ctx = ctx(&w);
        // Ids that sort the other way round (as ids derived from idempotency keys may).
        let ids = [
            GradeId::from_uuid(uuid::Uuid::from_u128(3)),
            GradeId::from_uuid(uuid::Uuid::from_u128(1)),
            GradeId::from_uuid(uuid::Uuid::from_u128(2)),
        ];
        let mut state = Record::default();
        for id in ids {
            for e in decide(
                &state,
                &record(id, numeric("6"), date!(2025 - 10 - 06)),
                &ctx,
            )
            .unwrap()
            {
                evolve(&mut state, &e);
            }
        }
        assert_eq!(state.grades().map(|(id, _)| id).collect::<Vec<_>>(), ids);
    }

    /// Runs `commands` on `student`'s record as the mathematics teacher, then returns the state.
    fn run_all(
        w: &World,
        student: PersonId,
        commands: &[RecordCommand],
    ) -> Result<Record, RecordError> {
        let ctx = Context { student, ..ctx(w) };
        let mut state = Record::default();
        for c in commands {
            for e in decide(&state, c, &ctx)? {
                evolve(&mut state, &e);
            }
        }
        Ok(state)
    }

    fn justify(entry: AttendanceId, justifier: Justifier, text: &str) -> RecordCommand {
        RecordCommand::SubmitJustification {
            entry,
            justifier,
            reason: Reason {
                category: ReasonCategory::Health,
                text: text.into(),
            },
        }
    }

    #[test]
    fn a_teacher_who_is_the_students_guardian_does_not_decide_the_justification() {
        let mut w = world();
        let entry = AttendanceId::new();
        let commands = [
            attend(entry, date!(2025 - 10 - 06), Missed::WholeDay),
            justify(entry, Justifier::Guardian, "febbre"),
            RecordCommand::DecideJustification {
                entry,
                accept: true,
                reason: String::new(),
            },
        ];
        // Before the link the class's teacher decides it.
        assert!(run_all(&w, w.student, &commands).is_ok());
        for c in [
            DirectoryCommand::GrantRole {
                person: w.teacher,
                role: Role::Guardian,
            },
            DirectoryCommand::LinkGuardian {
                guardian: w.teacher,
                student: w.student,
            },
        ] {
            for e in directory::decide(&w.dir, &c).unwrap() {
                directory::evolve(&mut w.dir, &e);
            }
        }
        assert_eq!(
            run_all(&w, w.student, &commands).unwrap_err(),
            RecordError::OwnChild
        );
        // The same teacher still decides for the other students of the class.
        let other = AttendanceId::new();
        let adult_commands = [
            attend(other, date!(2025 - 10 - 06), Missed::WholeDay),
            justify(other, Justifier::Student, "visita"),
            RecordCommand::DecideJustification {
                entry: other,
                accept: true,
                reason: String::new(),
            },
        ];
        assert!(run_all(&w, w.adult, &adult_commands).is_ok());
    }

    #[test]
    fn rule_5_a_guardian_justifies_a_minors_absence_changes_it_until_a_teacher_decides() {
        let w = world();
        let entry = AttendanceId::new();
        let absent = attend(entry, date!(2025 - 10 - 06), Missed::WholeDay);
        let state = run_all(
            &w,
            w.student,
            &[
                absent.clone(),
                justify(entry, Justifier::Guardian, "febbre"),
                justify(entry, Justifier::Guardian, "febbre alta"),
            ],
        )
        .unwrap();
        let j = &state.attendance().next().unwrap().1.justification;
        assert_eq!(j.state, JustificationState::Submitted);
        assert_eq!(
            j.reason,
            Some(Sealable::Open(Reason {
                category: ReasonCategory::Health,
                text: "febbre alta".into()
            }))
        );
        // The minor cannot justify their own absence.
        assert_eq!(
            run_all(
                &w,
                w.student,
                &[absent.clone(), justify(entry, Justifier::Student, "x")]
            )
            .unwrap_err(),
            RecordError::Justification(JustificationError::MinorCannotJustify)
        );
        // Accepted by a teacher of the class: no more changes.
        let accept = RecordCommand::DecideJustification {
            entry,
            accept: true,
            reason: String::new(),
        };
        let accepted = [
            absent.clone(),
            justify(entry, Justifier::Guardian, "febbre"),
            accept.clone(),
        ];
        let state = run_all(&w, w.student, &accepted).unwrap();
        assert_eq!(
            state.attendance().next().unwrap().1.justification.state,
            JustificationState::Accepted
        );
        let mut again = accepted.to_vec();
        again.push(justify(entry, Justifier::Guardian, "altro"));
        assert_eq!(
            run_all(&w, w.student, &again).unwrap_err(),
            RecordError::Justification(JustificationError::AlreadyDecided)
        );
        // A rejection needs a reason; after it, a new justification may come.
        let reject = |why: &str| RecordCommand::DecideJustification {
            entry,
            accept: false,
            reason: why.into(),
        };
        assert_eq!(
            run_all(
                &w,
                w.student,
                &[
                    absent.clone(),
                    justify(entry, Justifier::Guardian, "x"),
                    reject(" ")
                ]
            )
            .unwrap_err(),
            RecordError::Justification(JustificationError::ReasonRequired)
        );
        assert!(
            run_all(
                &w,
                w.student,
                &[
                    absent,
                    justify(entry, Justifier::Guardian, "x"),
                    reject("manca la firma"),
                    justify(entry, Justifier::Guardian, "x, firmato")
                ]
            )
            .is_ok()
        );
    }

    #[test]
    fn rule_5_an_adult_student_justifies_their_own_absence_and_the_guardian_does_not() {
        let w = world();
        let entry = AttendanceId::new();
        let absent = attend(entry, date!(2025 - 10 - 06), Missed::WholeDay);
        assert!(
            run_all(
                &w,
                w.adult,
                &[absent.clone(), justify(entry, Justifier::Student, "visita")]
            )
            .is_ok()
        );
        assert_eq!(
            run_all(
                &w,
                w.adult,
                &[absent, justify(entry, Justifier::Guardian, "visita")]
            )
            .unwrap_err(),
            RecordError::Justification(JustificationError::AdultJustifiesOwn)
        );
    }

    #[test]
    fn rule_5_with_the_school_setting_off_an_adult_students_guardian_justifies() {
        let mut w = world();
        let off = DirectoryCommand::SetJustificationSettings {
            settings: crate::justification::JustificationSettings {
                adults_justify_themselves: false,
                due_within_school_days: 3,
            },
        };
        for e in directory::decide(&w.dir, &off).unwrap() {
            directory::evolve(&mut w.dir, &e);
        }
        assert_eq!(w.dir.justification_settings().due_within_school_days, 3);
        let entry = AttendanceId::new();
        let absent = attend(entry, date!(2025 - 10 - 06), Missed::WholeDay);
        assert!(
            run_all(
                &w,
                w.adult,
                &[
                    absent.clone(),
                    justify(entry, Justifier::Guardian, "visita")
                ]
            )
            .is_ok()
        );
        assert_eq!(
            run_all(
                &w,
                w.adult,
                &[absent, justify(entry, Justifier::Student, "visita")]
            )
            .unwrap_err(),
            RecordError::Justification(JustificationError::GuardiansJustifyAdults)
        );
    }

    #[test]
    fn each_year_of_a_record_is_sealed_under_a_key_of_its_own() {
        let student = PersonId::new();
        let (a, b) = (SchoolYear::starting(2025), SchoolYear::starting(2026));
        assert_eq!(sealing_subject(student, a), sealing_subject(student, a));
        assert_ne!(sealing_subject(student, a), sealing_subject(student, b));
        assert_ne!(sealing_subject(student, a), student);
        assert_ne!(
            sealing_subject(PersonId::new(), a),
            sealing_subject(student, a)
        );
    }

    #[test]
    fn the_digest_of_a_justification_holds_no_trace_of_its_reason() {
        let entry = AttendanceId::new();
        let digest = justify(entry, Justifier::Guardian, "febbre")
            .digest_form()
            .to_string();
        assert!(
            !digest.contains("febbre") && !digest.contains("health"),
            "{digest}"
        );
        let decision = RecordCommand::DecideJustification {
            entry,
            accept: false,
            reason: "certificato medico mancante".into(),
        };
        assert!(!decision.digest_form().to_string().contains("certificato"));
    }

    #[test]
    fn a_state_folded_before_the_erasure_forgets_the_sealed_reasons_with_it() {
        let w = world();
        let entry = AttendanceId::new();
        let mut state = run_all(
            &w,
            w.student,
            &[
                attend(entry, date!(2025 - 10 - 06), Missed::WholeDay),
                justify(entry, Justifier::Guardian, "febbre"),
                RecordCommand::DecideJustification {
                    entry,
                    accept: false,
                    reason: "manca il certificato".into(),
                },
            ],
        )
        .unwrap();
        let before = state.attendance().next().unwrap().1.clone();
        assert!(matches!(
            before.justification.decision,
            Some(Sealable::Open(_))
        ));
        let subject = PersonId::new();
        evolve(
            &mut state,
            &RecordEvent::SealedDataErased {
                subject,
                reason: "retention".into(),
            },
        );
        let after = state.attendance().next().unwrap().1;
        let marker = serde_json::json!({ "subject": subject });
        assert_eq!(
            after.justification.reason,
            Some(Sealable::Erased {
                erased: marker.clone()
            })
        );
        assert_eq!(
            after.justification.decision,
            Some(Sealable::Erased { erased: marker })
        );
        assert_eq!(after.justification.state, before.justification.state);
        assert_eq!(after.date, before.date);
    }

    #[test]
    fn an_erased_reason_still_reads_as_a_justification() {
        let entry = AttendanceId::new();
        let data = serde_json::json!({
            "entry": entry, "justifier": "guardian",
            "reason": {"$erased": {"subject": "00000000-0000-0000-0000-000000000000"}}
        });
        let event = RecordEvent::from_stored("JustificationSubmitted", &data).unwrap();
        assert!(matches!(
            event,
            RecordEvent::JustificationSubmitted {
                reason: Sealable::Erased { .. },
                ..
            }
        ));
        assert_eq!(event.sealed_field(), Some("/reason"));
    }

    #[test]
    fn notes_are_written_by_the_class_teachers_and_sanctions_by_the_principal() {
        let w = world();
        let open = BTreeSet::new();
        let note = NoteId::new();
        let write = RecordCommand::RecordNote {
            note,
            kind: NoteKind::Disciplinary,
            text: "Disturba la lezione".into(),
            date: date!(2025 - 10 - 06),
        };
        assert!(given_when(&w, w.other_teacher, &open, &[], &write).is_ok());
        let sanction = RecordCommand::DecideSanction {
            note: NoteId::new(),
            text: "Sospensione di un giorno con obbligo di frequenza".into(),
            date: date!(2025 - 10 - 07),
        };
        assert_eq!(
            given_when(&w, w.teacher, &open, &[], &sanction),
            Err(RecordError::NotThePrincipal)
        );
        let principal = Context {
            teacher: PersonId::new(),
            as_principal: true,
            ..ctx(&w)
        };
        let mut state = Record::default();
        for cmd in [&write, &sanction] {
            let ctx = if matches!(cmd, RecordCommand::DecideSanction { .. }) {
                principal
            } else {
                ctx(&w)
            };
            for e in decide(&state, cmd, &ctx).unwrap() {
                evolve(&mut state, &e);
            }
        }
        let kinds: Vec<NoteKind> = state.notes().map(|(_, n)| n.kind).collect();
        assert_eq!(kinds, [NoteKind::Disciplinary, NoteKind::Sanction]);
        // A teacher annuls a note, with a reason, but not the principal's sanction.
        let teacher = ctx(&w);
        let annul = |note, reason: &str| RecordCommand::AnnulNote {
            note,
            reason: reason.into(),
        };
        assert_eq!(
            decide(&state, &annul(note, " "), &teacher),
            Err(RecordError::Text)
        );
        assert!(decide(&state, &annul(note, "scritta per errore"), &teacher).is_ok());
        let sanction_id = state.notes().nth(1).unwrap().0;
        assert_eq!(
            decide(&state, &annul(sanction_id, "revocata"), &teacher),
            Err(RecordError::NotThePrincipal)
        );
        assert!(decide(&state, &annul(sanction_id, "revocata"), &principal).is_ok());
    }

    #[test]
    fn every_record_event_round_trips_through_its_stored_form() {
        let g = GradeId::new();
        let events = [
            RecordEvent::GradeRecorded {
                grade: g,
                class: ClassId::new(),
                subject: "Matematica".into(),
                kind: GradeKind::Oral,
                mark: numeric("6½"),
                weight: Weight::ONE,
                counted: true,
                description: String::new(),
                date: date!(2025 - 10 - 06),
            },
            RecordEvent::GradeCorrected {
                grade: g,
                mark: Mark::Level(PrimaryLevel::Buono),
                reason: "x".into(),
            },
            RecordEvent::GradeAnnulled {
                grade: g,
                reason: "y".into(),
            },
            RecordEvent::AttendanceRecorded {
                entry: AttendanceId::new(),
                class: ClassId::new(),
                date: date!(2025 - 10 - 06),
                missed: Missed::LateEntry(time::macros::time!(9:10)),
                hours: vec![1],
            },
            RecordEvent::AttendanceCancelled {
                entry: AttendanceId::new(),
                reason: "z".into(),
            },
            RecordEvent::JustificationSubmitted {
                entry: AttendanceId::new(),
                justifier: Justifier::Guardian,
                reason: Sealable::Open(Reason {
                    category: ReasonCategory::Family,
                    text: "matrimonio".into(),
                }),
            },
            RecordEvent::JustificationAccepted {
                entry: AttendanceId::new(),
                reason: Sealable::Open(String::new()),
            },
            RecordEvent::JustificationRejected {
                entry: AttendanceId::new(),
                reason: Sealable::Open("senza firma".into()),
            },
            RecordEvent::NoteRecorded {
                note: NoteId::new(),
                kind: NoteKind::Annotation,
                class: ClassId::new(),
                text: "Dimentica spesso il materiale".into(),
                date: date!(2025 - 10 - 06),
            },
            RecordEvent::NoteAnnulled {
                note: NoteId::new(),
                reason: "x".into(),
            },
        ];
        for (e, name) in events.iter().zip(RecordEvent::TYPE_NAMES) {
            assert_eq!(e.type_name(), name);
            assert_eq!(RecordEvent::from_stored(name, &e.data()).unwrap(), *e);
        }
        // Dates are stored as ISO dates; grades as integers (hundredths), never floats.
        assert_eq!(events[0].data()["date"], "2025-10-06");
        assert_eq!(
            events[0].data()["mark"],
            serde_json::json!({"scale": "numeric", "value": 650})
        );
    }
}
