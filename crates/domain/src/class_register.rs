//! A class's register (registro di classe), the stream `class-<class>`: lesson hours signed by
//! their teachers (firma) with the topic taught, the substitutes the office records, homework
//! (compiti assegnati) and scheduled tests (verifiche programmate, the agenda). The scrutini
//! that close the class's terms are to join it.
//!
//! A teacher signs an hour of the class's timetable only when assigned to the class for that
//! hour's subject (co-teachers of the subject too), as a support teacher of the class (an
//! assignment for [`SUPPORT_SUBJECT`]), or as the substitute recorded for that hour; each
//! teacher once per date and hour, and only in the current school year (`rules.md` section 6).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use time::Date;

use crate::calendar::SchoolYear;
use crate::directory::Directory;
use crate::record::NoteKind;
use crate::{ClassId, HomeworkId, NoteId, PersonId, Role, TestId};

/// The subject name of a support teacher's assignment (sostegno): they sign any hour of the
/// class.
pub const SUPPORT_SUBJECT: &str = "Sostegno";

/// The longest topic, activity, homework or test description, in characters.
pub const MAX_TEXT_CHARS: usize = 1000;

/// The stream of a class's register.
#[must_use]
pub fn stream(class: ClassId) -> String {
    format!("class-{class}")
}

/// What a teacher or the office asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClassCommand {
    /// Signs a lesson hour, with what was taught.
    SignLesson {
        /// The day.
        #[serde(with = "crate::iso_date")]
        date: Date,
        /// The hour's number in the class's timetable for that weekday.
        hour: u8,
        /// The topic taught (argomento).
        topic: String,
        /// The activity (attività svolta).
        activity: String,
    },
    /// Records who substitutes an absent teacher for an hour (supplenza).
    AssignSubstitute {
        /// The day.
        #[serde(with = "crate::iso_date")]
        date: Date,
        /// The hour.
        hour: u8,
        /// The substitute.
        teacher: PersonId,
    },
    /// Sets homework.
    AssignHomework {
        /// The new homework's id.
        homework: HomeworkId,
        /// The subject.
        subject: String,
        /// What to do.
        text: String,
        /// When it is due.
        #[serde(with = "crate::iso_date")]
        due: Date,
    },
    /// Schedules a test.
    ScheduleTest {
        /// The new test's id.
        test: TestId,
        /// The subject.
        subject: String,
        /// The day.
        #[serde(with = "crate::iso_date")]
        date: Date,
        /// What it covers.
        description: String,
    },
    /// A note to the whole class (nota di classe): disciplinary, or an annotation.
    WriteClassNote {
        /// The new note's id.
        note: NoteId,
        /// Disciplinary or annotation (sanctions are individual: a student's record).
        kind: NoteKind,
        /// What happened.
        text: String,
        /// The day.
        #[serde(with = "crate::iso_date")]
        date: Date,
    },
    /// Annul a class note, with a reason.
    AnnulClassNote {
        /// The note.
        note: NoteId,
        /// Why.
        reason: String,
    },
}

/// What happened. Stored as events (`event_type` = the variant name, `data` = its fields).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum ClassEvent {
    /// A teacher signed a lesson hour (firma).
    LessonSigned {
        /// The day.
        #[serde(with = "crate::iso_date")]
        date: Date,
        /// The hour.
        hour: u8,
        /// The teacher who signed.
        teacher: PersonId,
        /// The hour's subject in the timetable.
        subject: String,
        /// The topic taught.
        topic: String,
        /// The activity.
        activity: String,
        /// Whether they signed as the recorded substitute.
        substitute: bool,
    },
    /// A substitute was recorded for an hour (supplenza).
    SubstituteAssigned {
        /// The day.
        #[serde(with = "crate::iso_date")]
        date: Date,
        /// The hour.
        hour: u8,
        /// The substitute.
        teacher: PersonId,
    },
    /// Homework was set (compiti assegnati).
    HomeworkAssigned {
        /// The homework.
        homework: HomeworkId,
        /// The subject.
        subject: String,
        /// What to do.
        text: String,
        /// The day it was set.
        #[serde(with = "crate::iso_date")]
        assigned_on: Date,
        /// When it is due.
        #[serde(with = "crate::iso_date")]
        due: Date,
    },
    /// A test was scheduled (verifica programmata).
    TestScheduled {
        /// The test.
        test: TestId,
        /// The subject.
        subject: String,
        /// The day.
        #[serde(with = "crate::iso_date")]
        date: Date,
        /// What it covers.
        description: String,
    },
    /// A note to the whole class was written.
    ClassNoteRecorded {
        /// The note.
        note: NoteId,
        /// Disciplinary or annotation.
        kind: NoteKind,
        /// What happened.
        text: String,
        /// The day.
        #[serde(with = "crate::iso_date")]
        date: Date,
        /// The teacher who wrote it.
        teacher: PersonId,
    },
    /// A class note was annulled.
    ClassNoteAnnulled {
        /// The note.
        note: NoteId,
        /// Why.
        reason: String,
    },
}

impl crate::StoredEvent for ClassEvent {}

impl ClassEvent {
    /// Every event type name, as stored.
    pub const TYPE_NAMES: [&'static str; 6] = [
        "LessonSigned",
        "SubstituteAssigned",
        "HomeworkAssigned",
        "TestScheduled",
        "ClassNoteRecorded",
        "ClassNoteAnnulled",
    ];

    /// The event's type name, as stored.
    #[must_use]
    pub const fn type_name(&self) -> &'static str {
        match self {
            Self::LessonSigned { .. } => Self::TYPE_NAMES[0],
            Self::SubstituteAssigned { .. } => Self::TYPE_NAMES[1],
            Self::HomeworkAssigned { .. } => Self::TYPE_NAMES[2],
            Self::TestScheduled { .. } => Self::TYPE_NAMES[3],
            Self::ClassNoteRecorded { .. } => Self::TYPE_NAMES[4],
            Self::ClassNoteAnnulled { .. } => Self::TYPE_NAMES[5],
        }
    }
}

/// Why a command was refused. Shown to teachers and the office, in Italian.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClassError {
    /// No such class.
    #[error("classe sconosciuta")]
    UnknownClass,
    /// The class has no timetable yet.
    #[error("la classe non ha ancora un orario delle lezioni")]
    NoTimetable,
    /// The timetable has no such hour that day.
    #[error("l'orario della classe non ha quest'ora in quel giorno")]
    NoSuchHour,
    /// The teacher is neither assigned to the class nor its recorded substitute for the hour.
    #[error(
        "il docente non insegna in questa classe e non è il supplente registrato per quest'ora"
    )]
    NotYourClass,
    /// The teacher does not teach the subject in the class.
    #[error("il docente non insegna questa materia in questa classe")]
    NotYourSubject,
    /// Already signed by this teacher.
    #[error("il docente ha già firmato quest'ora")]
    AlreadySigned,
    /// Only teachers substitute.
    #[error("il supplente deve essere un docente")]
    NotATeacher,
    /// A lesson signed before it happens, or homework due before it is set.
    #[error("la data non è valida: {0}")]
    BadDate(&'static str),
    /// A text that is missing where required, or too long.
    #[error("testo mancante o più lungo di {MAX_TEXT_CHARS} caratteri")]
    Text,
    /// The id is used already.
    #[error("questo elemento esiste già")]
    Exists,
    /// Sanctions are decided for a student, never for a class.
    #[error("i provvedimenti disciplinari sono individuali: si registrano sullo studente")]
    SanctionForClass,
    /// No such class note.
    #[error("nota di classe sconosciuta")]
    UnknownNote,
    /// Annulled already.
    #[error("la nota è già stata annullata")]
    AlreadyAnnulled,
    /// The actor is not a teacher of the class (nor the principal, to annul).
    #[error("solo i docenti della classe scrivono le sue note; il dirigente può annullarle")]
    NotTheClassTeacher,
}

/// The facts a decision needs from outside the class's stream.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The class.
    pub class: ClassId,
    /// Who acts.
    pub actor: PersonId,
    /// Whether they act as the principal.
    pub as_principal: bool,
    /// Today, in the school's time zone.
    pub today: Date,
    /// The school directory, now.
    pub directory: &'a Directory,
}

/// A signed lesson hour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lesson {
    /// The day.
    pub date: Date,
    /// The hour.
    pub hour: u8,
    /// Who signed.
    pub teacher: PersonId,
    /// The subject.
    pub subject: String,
    /// The topic.
    pub topic: String,
    /// The activity.
    pub activity: String,
    /// As the recorded substitute.
    pub substitute: bool,
}

/// Homework.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Homework {
    /// Its id.
    pub id: HomeworkId,
    /// The subject.
    pub subject: String,
    /// What to do.
    pub text: String,
    /// The day it was set.
    pub assigned_on: Date,
    /// When it is due.
    pub due: Date,
}

/// A note to the whole class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassNote {
    /// Its id.
    pub id: NoteId,
    /// Disciplinary or annotation.
    pub kind: NoteKind,
    /// What happened.
    pub text: String,
    /// The day.
    pub date: Date,
    /// Who wrote it.
    pub teacher: PersonId,
    /// Why it was annulled, if it was.
    pub annulled: Option<String>,
}

/// A scheduled test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Test {
    /// Its id.
    pub id: TestId,
    /// The subject.
    pub subject: String,
    /// The day.
    pub date: Date,
    /// What it covers.
    pub description: String,
}

/// The state of a class's register.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClassRegister {
    lessons: Vec<Lesson>,
    substitutes: BTreeSet<(Date, u8, PersonId)>,
    homework: Vec<Homework>,
    tests: Vec<Test>,
    notes: Vec<ClassNote>,
}

impl ClassRegister {
    /// The lessons signed on `date`, in hour order.
    #[must_use]
    pub fn lessons_on(&self, date: Date) -> Vec<&Lesson> {
        let mut lessons: Vec<&Lesson> = self.lessons.iter().filter(|l| l.date == date).collect();
        lessons.sort_by_key(|l| l.hour);
        lessons
    }

    /// The homework set on `date` or due on it.
    pub fn homework_around(&self, date: Date) -> impl Iterator<Item = &Homework> {
        self.homework
            .iter()
            .filter(move |h| h.assigned_on == date || h.due == date)
    }

    /// The tests scheduled on `date`.
    pub fn tests_on(&self, date: Date) -> impl Iterator<Item = &Test> {
        self.tests.iter().filter(move |t| t.date == date)
    }

    /// The teachers recorded as substitutes for `date` and `hour`.
    /// The class notes, in the order written.
    pub fn notes(&self) -> impl Iterator<Item = &ClassNote> {
        self.notes.iter()
    }

    pub fn substitutes_for(&self, date: Date, hour: u8) -> impl Iterator<Item = PersonId> + '_ {
        self.substitutes
            .iter()
            .filter(move |(d, h, _)| *d == date && *h == hour)
            .map(|(_, _, t)| *t)
    }
}

fn text(t: &str, required: bool) -> Result<String, ClassError> {
    let t = t.trim();
    if (required && t.is_empty()) || t.chars().count() > MAX_TEXT_CHARS {
        return Err(ClassError::Text);
    }
    Ok(t.to_owned())
}

/// Decides what a command means, given the register and the context. Pure: no clock, no IO.
///
/// # Errors
/// [`ClassError`] when the command breaks a rule; nothing is to be written then.
pub fn decide(
    state: &ClassRegister,
    command: &ClassCommand,
    ctx: &Context<'_>,
) -> Result<Vec<ClassEvent>, ClassError> {
    use ClassCommand as C;
    use ClassEvent as E;
    let dir = ctx.directory;
    if dir.class(ctx.class).is_none() {
        return Err(ClassError::UnknownClass);
    }
    let event = match command {
        C::SignLesson {
            date,
            hour,
            topic,
            activity,
        } => {
            if *date > ctx.today {
                return Err(ClassError::BadDate(
                    "una lezione si firma quando è avvenuta",
                ));
            }
            if SchoolYear::of(*date) != SchoolYear::of(ctx.today) {
                return Err(ClassError::BadDate(
                    "si firmano solo lezioni dell'anno scolastico in corso",
                ));
            }
            if dir
                .terms(SchoolYear::of(*date))
                .is_some_and(|t| t.is_holiday(*date))
            {
                return Err(ClassError::BadDate(
                    "in quel giorno non ci sono lezioni (vacanza o sospensione delle lezioni)",
                ));
            }
            let timetable = dir.timetable(ctx.class).ok_or(ClassError::NoTimetable)?;
            let lesson_hour = timetable
                .hours_on(date.weekday())
                .find(|h| h.number == *hour)
                .ok_or(ClassError::NoSuchHour)?;
            let assigned = dir.teaches_subject(ctx.actor, ctx.class, &lesson_hour.subject)
                || dir.teaches_subject(ctx.actor, ctx.class, SUPPORT_SUBJECT);
            let substitute = state.substitutes_for(*date, *hour).any(|t| t == ctx.actor);
            if !assigned && !substitute {
                return Err(ClassError::NotYourClass);
            }
            if state
                .lessons
                .iter()
                .any(|l| l.date == *date && l.hour == *hour && l.teacher == ctx.actor)
            {
                return Err(ClassError::AlreadySigned);
            }
            E::LessonSigned {
                date: *date,
                hour: *hour,
                teacher: ctx.actor,
                subject: lesson_hour.subject.clone(),
                topic: text(topic, false)?,
                activity: text(activity, false)?,
                substitute: substitute && !assigned,
            }
        }
        C::AssignSubstitute {
            date,
            hour,
            teacher,
        } => {
            if !dir.has_role(*teacher, Role::Teacher) {
                return Err(ClassError::NotATeacher);
            }
            let timetable = dir.timetable(ctx.class).ok_or(ClassError::NoTimetable)?;
            if !timetable
                .hours_on(date.weekday())
                .any(|h| h.number == *hour)
            {
                return Err(ClassError::NoSuchHour);
            }
            if state.substitutes.contains(&(*date, *hour, *teacher)) {
                return Err(ClassError::Exists);
            }
            E::SubstituteAssigned {
                date: *date,
                hour: *hour,
                teacher: *teacher,
            }
        }
        C::AssignHomework {
            homework,
            subject,
            text: what,
            due,
        } => {
            if !dir.teaches_subject(ctx.actor, ctx.class, subject) {
                return Err(ClassError::NotYourSubject);
            }
            if state.homework.iter().any(|h| h.id == *homework) {
                return Err(ClassError::Exists);
            }
            if *due < ctx.today {
                return Err(ClassError::BadDate(
                    "i compiti non possono scadere prima di oggi",
                ));
            }
            E::HomeworkAssigned {
                homework: *homework,
                subject: subject.clone(),
                text: text(what, true)?,
                assigned_on: ctx.today,
                due: *due,
            }
        }
        C::ScheduleTest {
            test,
            subject,
            date,
            description,
        } => {
            if !dir.teaches_subject(ctx.actor, ctx.class, subject) {
                return Err(ClassError::NotYourSubject);
            }
            if state.tests.iter().any(|t| t.id == *test) {
                return Err(ClassError::Exists);
            }
            if *date < ctx.today {
                return Err(ClassError::BadDate(
                    "una verifica si programma per oggi o dopo",
                ));
            }
            E::TestScheduled {
                test: *test,
                subject: subject.clone(),
                date: *date,
                description: text(description, false)?,
            }
        }
        C::WriteClassNote {
            note,
            kind,
            text: what,
            date,
        } => {
            if !dir.teaches_class(ctx.actor, ctx.class) {
                return Err(ClassError::NotTheClassTeacher);
            }
            if *kind == NoteKind::Sanction {
                return Err(ClassError::SanctionForClass);
            }
            if state.notes.iter().any(|n| n.id == *note) {
                return Err(ClassError::Exists);
            }
            if *date > ctx.today {
                return Err(ClassError::BadDate(
                    "una nota si scrive quando il fatto è avvenuto",
                ));
            }
            if SchoolYear::of(*date) != SchoolYear::of(ctx.today) {
                return Err(ClassError::BadDate(
                    "le note si scrivono nell'anno scolastico in corso",
                ));
            }
            E::ClassNoteRecorded {
                note: *note,
                kind: *kind,
                text: text(what, true)?,
                date: *date,
                teacher: ctx.actor,
            }
        }
        C::AnnulClassNote { note, reason } => {
            if !ctx.as_principal && !dir.teaches_class(ctx.actor, ctx.class) {
                return Err(ClassError::NotTheClassTeacher);
            }
            let n = state
                .notes
                .iter()
                .find(|n| n.id == *note)
                .ok_or(ClassError::UnknownNote)?;
            if n.annulled.is_some() {
                return Err(ClassError::AlreadyAnnulled);
            }
            E::ClassNoteAnnulled {
                note: *note,
                reason: text(reason, true)?,
            }
        }
    };
    Ok(vec![event])
}

/// Applies an event to the state. Events are facts: applying never fails.
pub fn evolve(state: &mut ClassRegister, event: &ClassEvent) {
    use ClassEvent as E;
    match event {
        E::LessonSigned {
            date,
            hour,
            teacher,
            subject,
            topic,
            activity,
            substitute,
        } => state.lessons.push(Lesson {
            date: *date,
            hour: *hour,
            teacher: *teacher,
            subject: subject.clone(),
            topic: topic.clone(),
            activity: activity.clone(),
            substitute: *substitute,
        }),
        E::SubstituteAssigned {
            date,
            hour,
            teacher,
        } => {
            state.substitutes.insert((*date, *hour, *teacher));
        }
        E::HomeworkAssigned {
            homework,
            subject,
            text,
            assigned_on,
            due,
        } => state.homework.push(Homework {
            id: *homework,
            subject: subject.clone(),
            text: text.clone(),
            assigned_on: *assigned_on,
            due: *due,
        }),
        E::TestScheduled {
            test,
            subject,
            date,
            description,
        } => state.tests.push(Test {
            id: *test,
            subject: subject.clone(),
            date: *date,
            description: description.clone(),
        }),
        E::ClassNoteRecorded {
            note,
            kind,
            text,
            date,
            teacher,
        } => state.notes.push(ClassNote {
            id: *note,
            kind: *kind,
            text: text.clone(),
            date: *date,
            teacher: *teacher,
            annulled: None,
        }),
        E::ClassNoteAnnulled { note, reason } => {
            if let Some(n) = state.notes.iter_mut().find(|n| n.id == *note) {
                n.annulled = Some(reason.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::StoredEvent as _;
    use time::macros::{date, time};

    use super::*;
    use crate::FiscalCode;
    use crate::directory::{self, DirectoryCommand};
    use crate::timetable::LessonHour;

    const TODAY: Date = date!(2025 - 10 - 06); // a Monday

    struct World {
        dir: Directory,
        class: ClassId,
        maths: PersonId,
        support: PersonId,
        outsider: PersonId,
        /// Teaches history in the class (the second hour).
        history: PersonId,
        /// The principal.
        principal: PersonId,
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
            ("Sostegno", crate::grade::Scale::Numeric),
        ] {
            run(DirectoryCommand::DefineSubject {
                subject: subject.into(),
                scale,
            });
        }
        let teacher = |person, date: &str| DirectoryCommand::Register {
            person,
            fiscal_code: FiscalCode::with_check_character(&format!("XXXYYY{date}Z999")).unwrap(),
            family_name: "Rossi".into(),
            given_name: "Anna".into(),
            role: Role::Teacher,
            birth_date: None,
        };
        let (class, maths, support, outsider, history) = (
            ClassId::new(),
            PersonId::new(),
            PersonId::new(),
            PersonId::new(),
            PersonId::new(),
        );
        run(teacher(maths, "70A01"));
        run(teacher(support, "71A01"));
        run(teacher(outsider, "72A01"));
        run(teacher(history, "73A01"));
        let principal = PersonId::new();
        run(DirectoryCommand::Register {
            person: principal,
            fiscal_code: FiscalCode::with_check_character("XXXYYY60A01Z999").unwrap(),
            family_name: "Bianchi".into(),
            given_name: "Marco".into(),
            role: Role::Principal,
            birth_date: None,
        });
        run(DirectoryCommand::CreateClass {
            class,
            name: "2B".into(),
        });
        run(DirectoryCommand::AssignTeacher {
            teacher: maths,
            class,
            subject: "Matematica".into(),
        });
        run(DirectoryCommand::AssignTeacher {
            teacher: support,
            class,
            subject: "Sostegno".into(),
        });
        run(DirectoryCommand::AssignTeacher {
            teacher: history,
            class,
            subject: "Storia".into(),
        });
        run(DirectoryCommand::SetTimetable {
            class,
            hours: vec![
                LessonHour {
                    weekday: time::Weekday::Monday,
                    number: 1,
                    start: time!(8:00),
                    end: time!(9:00),
                    subject: "Matematica".into(),
                    teacher: Some(maths),
                },
                LessonHour {
                    weekday: time::Weekday::Monday,
                    number: 2,
                    start: time!(9:00),
                    end: time!(10:00),
                    subject: "Storia".into(),
                    teacher: None,
                },
            ],
        });
        World {
            dir,
            class,
            maths,
            support,
            outsider,
            history,
            principal,
        }
    }

    fn given_when(
        w: &World,
        given: &[(PersonId, ClassCommand)],
        actor: PersonId,
        command: &ClassCommand,
    ) -> Result<Vec<ClassEvent>, ClassError> {
        let mut state = ClassRegister::default();
        for (who, c) in given {
            let ctx = Context {
                class: w.class,
                actor: *who,
                as_principal: w.dir.has_role(*who, Role::Principal),
                today: TODAY,
                directory: &w.dir,
            };
            for e in decide(&state, c, &ctx).expect("the given commands succeed") {
                evolve(&mut state, &e);
            }
        }
        let ctx = Context {
            class: w.class,
            actor,
            as_principal: w.dir.has_role(actor, Role::Principal),
            today: TODAY,
            directory: &w.dir,
        };
        decide(&state, command, &ctx)
    }

    fn sign(hour: u8) -> ClassCommand {
        ClassCommand::SignLesson {
            date: TODAY,
            hour,
            topic: "Equazioni di primo grado".into(),
            activity: "Lezione frontale".into(),
        }
    }

    #[test]
    fn rule_6_a_teacher_signs_an_hour_of_their_class_once_and_co_teachers_sign_too() {
        let w = world();
        let events = given_when(&w, &[], w.maths, &sign(1)).unwrap();
        assert!(matches!(
            &events[..],
            [ClassEvent::LessonSigned { subject, substitute: false, .. }] if subject == "Matematica"
        ));
        assert_eq!(
            given_when(&w, &[(w.maths, sign(1))], w.maths, &sign(1)),
            Err(ClassError::AlreadySigned)
        );
        // The support teacher signs the same hour.
        assert!(given_when(&w, &[(w.maths, sign(1))], w.support, &sign(1)).is_ok());
        // The history teacher of the same class signs the history hour, not the maths one.
        assert_eq!(
            given_when(&w, &[], w.history, &sign(1)),
            Err(ClassError::NotYourClass)
        );
        assert!(given_when(&w, &[], w.history, &sign(2)).is_ok());
        // A teacher of another class may not, nor may anyone sign an hour the timetable lacks.
        assert_eq!(
            given_when(&w, &[], w.outsider, &sign(1)),
            Err(ClassError::NotYourClass)
        );
        assert_eq!(
            given_when(&w, &[], w.maths, &sign(7)),
            Err(ClassError::NoSuchHour)
        );
    }

    #[test]
    fn rule_6_a_recorded_substitute_signs_the_hour_they_cover() {
        let w = world();
        let office = PersonId::new();
        let cover = ClassCommand::AssignSubstitute {
            date: TODAY,
            hour: 2,
            teacher: w.outsider,
        };
        let events = given_when(&w, &[(office, cover.clone())], w.outsider, &sign(2)).unwrap();
        assert!(matches!(
            &events[..],
            [ClassEvent::LessonSigned { substitute: true, subject, .. }] if subject == "Storia"
        ));
        // Only that hour.
        assert_eq!(
            given_when(&w, &[(office, cover)], w.outsider, &sign(1)),
            Err(ClassError::NotYourClass)
        );
    }

    #[test]
    fn a_lesson_of_a_past_school_year_is_not_signed() {
        let w = world();
        let last_year = ClassCommand::SignLesson {
            date: date!(2024 - 10 - 07), // a Monday of 2024/25
            hour: 1,
            topic: String::new(),
            activity: String::new(),
        };
        assert!(matches!(
            given_when(&w, &[], w.maths, &last_year),
            Err(ClassError::BadDate(_))
        ));
    }

    #[test]
    fn a_lesson_is_signed_once_it_happened() {
        let w = world();
        let tomorrow = ClassCommand::SignLesson {
            date: date!(2025 - 10 - 13),
            hour: 1,
            topic: String::new(),
            activity: String::new(),
        };
        assert!(matches!(
            given_when(&w, &[], w.maths, &tomorrow),
            Err(ClassError::BadDate(_))
        ));
    }

    #[test]
    fn homework_and_tests_are_set_by_the_subjects_teacher() {
        let w = world();
        let homework = ClassCommand::AssignHomework {
            homework: HomeworkId::new(),
            subject: "Matematica".into(),
            text: "Esercizi 1-10 a pagina 42".into(),
            due: date!(2025 - 10 - 08),
        };
        assert!(matches!(
            &given_when(&w, &[], w.maths, &homework).unwrap()[..],
            [ClassEvent::HomeworkAssigned { assigned_on, .. }] if *assigned_on == TODAY
        ));
        assert_eq!(
            given_when(&w, &[], w.support, &homework),
            Err(ClassError::NotYourSubject)
        );
        let late = ClassCommand::AssignHomework {
            homework: HomeworkId::new(),
            subject: "Matematica".into(),
            text: "x".into(),
            due: date!(2025 - 10 - 01),
        };
        assert!(matches!(
            given_when(&w, &[], w.maths, &late),
            Err(ClassError::BadDate(_))
        ));
        let test = ClassCommand::ScheduleTest {
            test: TestId::new(),
            subject: "Matematica".into(),
            date: date!(2025 - 10 - 20),
            description: "Equazioni".into(),
        };
        let state_events = given_when(&w, &[], w.maths, &test).unwrap();
        let mut state = ClassRegister::default();
        for e in &state_events {
            evolve(&mut state, e);
        }
        assert_eq!(state.tests_on(date!(2025 - 10 - 20)).count(), 1);
    }

    #[test]
    fn every_class_event_round_trips_through_its_stored_form() {
        let events = [
            ClassEvent::LessonSigned {
                date: TODAY,
                hour: 1,
                teacher: PersonId::new(),
                subject: "Matematica".into(),
                topic: "t".into(),
                activity: "a".into(),
                substitute: false,
            },
            ClassEvent::SubstituteAssigned {
                date: TODAY,
                hour: 2,
                teacher: PersonId::new(),
            },
            ClassEvent::HomeworkAssigned {
                homework: HomeworkId::new(),
                subject: "Matematica".into(),
                text: "x".into(),
                assigned_on: TODAY,
                due: TODAY,
            },
            ClassEvent::TestScheduled {
                test: TestId::new(),
                subject: "Matematica".into(),
                date: TODAY,
                description: "d".into(),
            },
        ];
        for (e, name) in events.iter().zip(ClassEvent::TYPE_NAMES) {
            assert_eq!(e.type_name(), name);
            assert_eq!(ClassEvent::from_stored(name, &e.data()).unwrap(), *e);
        }
        assert_eq!(events[0].data()["date"], "2025-10-06");
    }

    fn class_note(note: NoteId, kind: NoteKind, date: Date) -> ClassCommand {
        ClassCommand::WriteClassNote {
            note,
            kind,
            text: "La classe disturba la lezione".into(),
            date,
        }
    }

    #[test]
    fn a_teacher_of_the_class_writes_a_note_to_the_whole_class_and_it_is_annulled_with_a_reason() {
        let w = world();
        let note = NoteId::new();
        let write = class_note(note, NoteKind::Disciplinary, TODAY);
        let events = given_when(&w, &[], w.history, &write).unwrap();
        assert!(matches!(
            &events[..],
            [ClassEvent::ClassNoteRecorded { teacher, .. }] if *teacher == w.history
        ));
        for e in &events {
            assert_eq!(
                ClassEvent::from_stored(e.type_name(), &e.data()).unwrap(),
                *e
            );
        }
        for (actor, command, error) in [
            (w.outsider, write.clone(), ClassError::NotTheClassTeacher),
            (w.principal, write.clone(), ClassError::NotTheClassTeacher),
            (
                w.maths,
                class_note(NoteId::new(), NoteKind::Sanction, TODAY),
                ClassError::SanctionForClass,
            ),
            (
                w.maths,
                class_note(NoteId::new(), NoteKind::Annotation, date!(2025 - 10 - 07)),
                ClassError::BadDate("una nota si scrive quando il fatto è avvenuto"),
            ),
        ] {
            assert_eq!(given_when(&w, &[], actor, &command).unwrap_err(), error);
        }
        assert_eq!(
            given_when(&w, &[(w.maths, write.clone())], w.maths, &write).unwrap_err(),
            ClassError::Exists
        );
        let annul = |reason: &str| ClassCommand::AnnulClassNote {
            note,
            reason: reason.into(),
        };
        let written = [(w.history, write)];
        // Another teacher of the class or the principal annuls it; an outsider cannot; a reason
        // is needed; once.
        assert!(given_when(&w, &written, w.maths, &annul("errore")).is_ok());
        assert!(given_when(&w, &written, w.principal, &annul("errore")).is_ok());
        assert_eq!(
            given_when(&w, &written, w.outsider, &annul("errore")).unwrap_err(),
            ClassError::NotTheClassTeacher
        );
        assert_eq!(
            given_when(&w, &written, w.maths, &annul(" ")).unwrap_err(),
            ClassError::Text
        );
        let annulled = [written[0].clone(), (w.maths, annul("errore"))];
        assert_eq!(
            given_when(&w, &annulled, w.maths, &annul("ancora")).unwrap_err(),
            ClassError::AlreadyAnnulled
        );
        assert_eq!(
            given_when(&w, &[], w.maths, &annul("errore")).unwrap_err(),
            ClassError::UnknownNote
        );
    }

    #[test]
    fn no_lesson_is_signed_on_a_holiday() {
        let mut w = world();
        let plan = DirectoryCommand::PlanSchoolYear {
            year: SchoolYear::of(TODAY),
            terms: vec![crate::calendar::Term {
                name: "anno".into(),
                start: date!(2025 - 09 - 15),
                end: date!(2026 - 06 - 10),
            }],
            holidays: vec![TODAY],
        };
        for e in directory::decide(&w.dir, &plan).unwrap() {
            directory::evolve(&mut w.dir, &e);
        }
        assert!(matches!(
            given_when(&w, &[], w.maths, &sign(1)),
            Err(ClassError::BadDate(reason)) if reason.contains("vacanza")
        ));
    }
}
