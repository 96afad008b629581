//! The event catalogue: every event registro stores, with its fields, the Italian term, who may
//! cause it and its schema version. `docs/events.md` is generated from [`CATALOGUE`] (a test
//! fails when it is out of date), and each entry's sample event proves its field list: the test
//! checks that the sample's stored data has exactly the fields documented.

use serde_json::Value;

use crate::StoredEvent as _;
use time::macros::date;

use crate::access::StudentDataRead;
use crate::attendance::{Exemption, ExemptionReason};
use crate::calendar::{SchoolYear, Term};
use crate::class_register::ClassEvent;
use crate::communications::{
    Attachment, Audience, CatalogueEvent, Consent, Group, Kind, ReplyEvent,
};
use crate::directory::DirectoryEvent;
use crate::grade::{GradeKind, GradeValue, Weight};
use crate::justification::{Justifier, ReasonCategory};
use crate::meetings::MeetingEvent;
use crate::record::{Mark, NoteKind, Reason, RecordEvent, Sealable};
use crate::scrutiny::{Outcome, SchoolLevel, ScrutinyEvent, Vote};
use crate::timetable::{LessonHour, Missed};
use crate::{
    AttendanceId, ClassId, FiscalCode, GradeId, HomeworkId, NoteId, PersonId, Role, SlotId, TestId,
};

/// One event type of the catalogue.
#[derive(Debug, Clone, Copy)]
pub struct EventDoc {
    /// The stored type name.
    pub name: &'static str,
    /// The stream it is stored in.
    pub stream: &'static str,
    /// The Italian term of art.
    pub italian: &'static str,
    /// What it records.
    pub meaning: &'static str,
    /// Who may cause it.
    pub who: &'static str,
    /// The version of its data schema.
    pub schema_version: u32,
    /// Its data's fields: name, type, meaning.
    pub fields: &'static [(&'static str, &'static str, &'static str)],
    /// A sample of its stored data.
    pub sample: fn() -> Value,
}

const DIRECTORY: &str = "`directory`";
const RECORD: &str = "`student-<student>-<year>`";
const CLASS: &str = "`class-<class>`";
const MEETINGS: &str = "`meetings-<teacher>`";
const COMMUNICATIONS: &str = "`communications`";
const REPLIES: &str = "`communication-<communication>`";
const SCRUTINY: &str = "`scrutiny-<class>-<year>`";

fn communication() -> crate::CommunicationId {
    crate::CommunicationId::from_uuid(uuid::Uuid::nil())
}

fn person() -> PersonId {
    PersonId::from_uuid(uuid::Uuid::nil())
}

fn directory(e: &DirectoryEvent) -> Value {
    e.data()
}

fn record(e: &RecordEvent) -> Value {
    e.data()
}

fn class(e: &ClassEvent) -> Value {
    e.data()
}

fn scrutiny(e: &ScrutinyEvent) -> Value {
    e.data()
}

fn meeting(e: &MeetingEvent) -> Value {
    e.data()
}

/// Every event registro stores.
pub const CATALOGUE: &[EventDoc] = &[
    EventDoc {
        name: "PersonRegistered",
        stream: DIRECTORY,
        italian: "registrazione in anagrafica",
        meaning: "A person became known to the school, in a first role.",
        who: "principal; secretary (not for the privileged roles); the software (`registro add-person`)",
        schema_version: 1,
        fields: &[
            ("person", "uuid", "the person's id"),
            ("fiscal_code", "string", "codice fiscale, exactly as issued"),
            ("family_name", "string", "cognome"),
            ("given_name", "string", "nome"),
            ("role", "role", "the first role"),
            (
                "birth_date",
                "date, optional",
                "the date of birth (ISO 8601), when known",
            ),
        ],
        sample: || {
            directory(&DirectoryEvent::PersonRegistered {
                person: person(),
                #[allow(clippy::unwrap_used)] // a constant, valid
                fiscal_code: FiscalCode::with_check_character("XXXYYY80A01Z999").unwrap(),
                family_name: "Rossi".into(),
                given_name: "Anna".into(),
                role: Role::Teacher,
                birth_date: Some(date!(1980 - 01 - 01)),
            })
        },
    },
    EventDoc {
        name: "RoleGranted",
        stream: DIRECTORY,
        italian: "assegnazione di un ruolo",
        meaning: "A person was given another role.",
        who: "principal; secretary (not the privileged roles); never on oneself",
        schema_version: 1,
        fields: &[
            ("person", "uuid", "the person"),
            ("role", "role", "the role"),
        ],
        sample: || {
            directory(&DirectoryEvent::RoleGranted {
                person: person(),
                role: Role::Guardian,
            })
        },
    },
    EventDoc {
        name: "RoleRevoked",
        stream: DIRECTORY,
        italian: "revoca di un ruolo",
        meaning: "A person's role was taken away; the person and their history stay.",
        who: "principal; secretary (not the privileged roles); never on oneself",
        schema_version: 1,
        fields: &[
            ("person", "uuid", "the person"),
            ("role", "role", "the role"),
        ],
        sample: || {
            directory(&DirectoryEvent::RoleRevoked {
                person: person(),
                role: Role::Guardian,
            })
        },
    },
    EventDoc {
        name: "GuardianLinked",
        stream: DIRECTORY,
        italian: "collegamento genitore/tutore",
        meaning: "A guardian was linked to a student (each parent has a link of their own).",
        who: "principal; secretary; never on oneself",
        schema_version: 1,
        fields: &[
            ("guardian", "uuid", "the guardian"),
            ("student", "uuid", "the student"),
        ],
        sample: || {
            directory(&DirectoryEvent::GuardianLinked {
                guardian: person(),
                student: person(),
            })
        },
    },
    EventDoc {
        name: "GuardianUnlinked",
        stream: DIRECTORY,
        italian: "scollegamento genitore/tutore",
        meaning: "A guardian's link to a student ended (a court order, say); other links stay.",
        who: "principal; secretary; never on oneself",
        schema_version: 1,
        fields: &[
            ("guardian", "uuid", "the guardian"),
            ("student", "uuid", "the student"),
        ],
        sample: || {
            directory(&DirectoryEvent::GuardianUnlinked {
                guardian: person(),
                student: person(),
            })
        },
    },
    EventDoc {
        name: "ClassCreated",
        stream: DIRECTORY,
        italian: "classe",
        meaning: "A class was created.",
        who: "principal; secretary",
        schema_version: 1,
        fields: &[
            ("class", "uuid", "the class's id"),
            ("name", "string", "its name, unique in the school"),
        ],
        sample: || {
            directory(&DirectoryEvent::ClassCreated {
                class: ClassId::from_uuid(uuid::Uuid::nil()),
                name: "3A".into(),
            })
        },
    },
    EventDoc {
        name: "TeacherAssigned",
        stream: DIRECTORY,
        italian: "cattedra",
        meaning: "A teacher was assigned to teach a subject in a class.",
        who: "principal; secretary; never on oneself",
        schema_version: 1,
        fields: &[
            ("teacher", "uuid", "the teacher"),
            ("class", "uuid", "the class"),
            ("subject", "string", "the subject (materia)"),
        ],
        sample: || {
            directory(&DirectoryEvent::TeacherAssigned {
                teacher: person(),
                class: ClassId::from_uuid(uuid::Uuid::nil()),
                subject: "Matematica".into(),
            })
        },
    },
    EventDoc {
        name: "StudentEnrolled",
        stream: DIRECTORY,
        italian: "iscrizione",
        meaning: "A student was enrolled in a class.",
        who: "principal; secretary",
        schema_version: 1,
        fields: &[
            ("student", "uuid", "the student"),
            ("class", "uuid", "the class"),
        ],
        sample: || {
            directory(&DirectoryEvent::StudentEnrolled {
                student: person(),
                class: ClassId::from_uuid(uuid::Uuid::nil()),
            })
        },
    },
    EventDoc {
        name: "SchoolYearPlanned",
        stream: DIRECTORY,
        italian: "anno scolastico e periodi (trimestri, quadrimestri)",
        meaning: "A school year's terms were set, or set again (the last one counts).",
        who: "principal; secretary",
        schema_version: 1,
        fields: &[
            (
                "year",
                "integer",
                "the calendar year the school year starts in (2025 is 2025/26)",
            ),
            (
                "terms",
                "array",
                "the terms in order: name, start and end dates (ISO 8601)",
            ),
            (
                "holidays",
                "array of date, optional",
                "the days without lessons (giorni di sospensione delle lezioni), in order; \
                 absent when none (and in events written before holidays were planned)",
            ),
        ],
        sample: || {
            directory(&DirectoryEvent::SchoolYearPlanned {
                year: SchoolYear::starting(2025),
                terms: vec![Term {
                    name: "trimestre".into(),
                    start: date!(2025 - 09 - 15),
                    end: date!(2025 - 12 - 20),
                }],
                holidays: vec![date!(2025 - 11 - 01), date!(2025 - 12 - 08)],
            })
        },
    },
    EventDoc {
        name: "TimetableSet",
        stream: DIRECTORY,
        italian: "orario delle lezioni",
        meaning: "A class's weekly timetable was set, or set again (the last one counts).",
        who: "principal; secretary",
        schema_version: 1,
        fields: &[
            ("class", "uuid", "the class"),
            (
                "hours",
                "array",
                "the weekly lesson hours: `weekday` (monday..sunday), `number` (from 1), `start` \
                 and `end` (HH:MM), `subject`, `teacher` (uuid or null)",
            ),
        ],
        sample: || {
            directory(&DirectoryEvent::TimetableSet {
                class: ClassId::from_uuid(uuid::Uuid::nil()),
                hours: vec![LessonHour {
                    weekday: time::Weekday::Monday,
                    number: 1,
                    start: time::macros::time!(8:00),
                    end: time::macros::time!(9:00),
                    subject: "Italiano".into(),
                    teacher: None,
                }],
            })
        },
    },
    EventDoc {
        name: "SubjectExemptionGranted",
        stream: DIRECTORY,
        italian: "esonero (ad esempio da religione senza attività alternativa)",
        meaning: "A student was exempted from a subject: its hours leave their personalised \
                  annual hours and are never missed.",
        who: "principal; secretary",
        schema_version: 1,
        fields: &[
            ("student", "uuid", "the student"),
            ("subject", "string", "the subject"),
        ],
        sample: || {
            directory(&DirectoryEvent::SubjectExemptionGranted {
                student: person(),
                subject: "Religione".into(),
            })
        },
    },
    EventDoc {
        name: "SubjectExemptionEnded",
        stream: DIRECTORY,
        italian: "fine dell'esonero",
        meaning: "A student's exemption from a subject ended.",
        who: "principal; secretary",
        schema_version: 1,
        fields: &[
            ("student", "uuid", "the student"),
            ("subject", "string", "the subject"),
        ],
        sample: || {
            directory(&DirectoryEvent::SubjectExemptionEnded {
                student: person(),
                subject: "Religione".into(),
            })
        },
    },
    EventDoc {
        name: "StudentTransferred",
        stream: DIRECTORY,
        italian: "trasferimento di classe",
        meaning: "A student moved to another class of the school.",
        who: "principal; secretary",
        schema_version: 1,
        fields: &[
            ("student", "uuid", "the student"),
            ("from", "uuid", "the class they left"),
            ("to", "uuid", "the class they joined"),
        ],
        sample: || {
            directory(&DirectoryEvent::StudentTransferred {
                student: person(),
                from: ClassId::from_uuid(uuid::Uuid::nil()),
                to: ClassId::from_uuid(uuid::Uuid::nil()),
            })
        },
    },
    EventDoc {
        name: "StudentWithdrawn",
        stream: DIRECTORY,
        italian: "ritiro (o trasferimento ad altro istituto)",
        meaning: "A student left the school; they stay in the history, in no class.",
        who: "principal; secretary",
        schema_version: 1,
        fields: &[
            ("student", "uuid", "the student"),
            ("class", "uuid", "the class they left"),
            ("reason", "string", "why"),
        ],
        sample: || {
            directory(&DirectoryEvent::StudentWithdrawn {
                student: person(),
                class: ClassId::from_uuid(uuid::Uuid::nil()),
                reason: "nulla osta verso altro istituto".into(),
            })
        },
    },
    EventDoc {
        name: "CoordinatorAppointed",
        stream: DIRECTORY,
        italian: "coordinatore di classe",
        meaning: "A teacher of the class became its coordinator (the previous one no longer is).",
        who: "principal; secretary",
        schema_version: 1,
        fields: &[
            ("class", "uuid", "the class"),
            ("teacher", "uuid", "the teacher"),
        ],
        sample: || {
            directory(&DirectoryEvent::CoordinatorAppointed {
                class: ClassId::from_uuid(uuid::Uuid::nil()),
                teacher: person(),
            })
        },
    },
    EventDoc {
        name: "SubjectDefined",
        stream: DIRECTORY,
        italian: "materia",
        meaning: "A subject became part of the school's curriculum, with the scale its grades are \
                  on; teachers are assigned, timetables set and exemptions granted only for \
                  defined subjects.",
        who: "principal; secretary",
        schema_version: 1,
        fields: &[
            ("subject", "string", "its name, as the register shows it"),
            (
                "scale",
                "string",
                "`numeric` (1 to 10, averaged), `judgement` (religion and its alternative) or \
                 `level` (primary school)",
            ),
        ],
        sample: || {
            directory(&DirectoryEvent::SubjectDefined {
                subject: "Religione cattolica".into(),
                scale: crate::grade::Scale::Judgement,
            })
        },
    },
    EventDoc {
        name: "JustificationSettingsSet",
        stream: DIRECTORY,
        italian: "regolamento delle giustificazioni",
        meaning: "The school set its rules for justifications (`rules.md` section 5), from now on.",
        who: "principal; secretary",
        schema_version: 1,
        fields: &[
            (
                "adults_justify_themselves",
                "boolean",
                "whether a student of 18 or over justifies their own absences (and their \
                 guardians do not); default true",
            ),
            (
                "due_within_school_days",
                "integer",
                "within how many school days a justification is due (1 to 30); default 5",
            ),
        ],
        sample: || {
            directory(&DirectoryEvent::JustificationSettingsSet {
                adults_justify_themselves: true,
                due_within_school_days: 5,
            })
        },
    },
    EventDoc {
        name: "ScrutinySettingsSet",
        stream: DIRECTORY,
        italian: "criteri dello scrutinio (numero massimo di debiti formativi)",
        meaning: "The school set its rules for scrutini (`rules.md` section 4), from now on.",
        who: "principal; secretary",
        schema_version: 1,
        fields: &[(
            "max_subjects_to_recover",
            "integer",
            "the most subjects (1 to 6) a suspended judgement may leave to recover; with more \
             below 6 registro proposes not admitted; default 3",
        )],
        sample: || {
            directory(&DirectoryEvent::ScrutinySettingsSet {
                max_subjects_to_recover: 3,
            })
        },
    },
    EventDoc {
        name: "RetentionSettingsSet",
        stream: DIRECTORY,
        italian: "tempi di conservazione dei dati particolari",
        meaning: "The school set how long it keeps special-category details (`rules.md` section \
                  7), from now on.",
        who: "principal; secretary",
        schema_version: 1,
        fields: &[(
            "years_after",
            "integer",
            "the school years (0 to 10) after a record's own during which its special-category \
             details are kept; default 2 (to the end of the school year after next)",
        )],
        sample: || directory(&DirectoryEvent::RetentionSettingsSet { years_after: 2 }),
    },
    EventDoc {
        name: "GradeRecorded",
        stream: RECORD,
        italian: "voto",
        meaning: "A grade was given.",
        who: "a teacher of the subject in the student's class",
        schema_version: 1,
        fields: &[
            ("grade", "uuid", "the grade's id"),
            ("class", "uuid", "the student's class"),
            ("subject", "string", "the subject"),
            ("kind", "string", "written, oral, practical or graphic"),
            (
                "mark",
                "object",
                "`{scale, value}`: numeric in hundredths (625 is 6+), judgement or level",
            ),
            ("weight", "integer", "its weight in hundredths (100 is 1)"),
            ("counted", "boolean", "whether it counts in the average"),
            ("description", "string", "what it is for"),
            ("date", "date", "the day of the test (ISO 8601)"),
        ],
        sample: || {
            record(&RecordEvent::GradeRecorded {
                grade: GradeId::from_uuid(uuid::Uuid::nil()),
                class: ClassId::from_uuid(uuid::Uuid::nil()),
                subject: "Matematica".into(),
                kind: GradeKind::Written,
                mark: Mark::Numeric(GradeValue::PASS),
                weight: Weight::ONE,
                counted: true,
                description: String::new(),
                date: date!(2025 - 10 - 06),
            })
        },
    },
    EventDoc {
        name: "GradeCorrected",
        stream: RECORD,
        italian: "correzione di un voto",
        meaning: "A grade's value was corrected; the history keeps both values.",
        who: "a teacher of the grade's subject in its class, while its term is open",
        schema_version: 1,
        fields: &[
            ("grade", "uuid", "the grade"),
            ("mark", "object", "the right value, as in `GradeRecorded`"),
            ("reason", "string", "why"),
        ],
        sample: || {
            record(&RecordEvent::GradeCorrected {
                grade: GradeId::from_uuid(uuid::Uuid::nil()),
                mark: Mark::Numeric(GradeValue::PASS),
                reason: "errore di trascrizione".into(),
            })
        },
    },
    EventDoc {
        name: "GradeAnnulled",
        stream: RECORD,
        italian: "annullamento di un voto",
        meaning: "A grade was annulled; it stays in the history and leaves every average.",
        who: "a teacher of the grade's subject in its class, while its term is open",
        schema_version: 1,
        fields: &[("grade", "uuid", "the grade"), ("reason", "string", "why")],
        sample: || {
            record(&RecordEvent::GradeAnnulled {
                grade: GradeId::from_uuid(uuid::Uuid::nil()),
                reason: "prova da ripetere".into(),
            })
        },
    },
    EventDoc {
        name: "AttendanceRecorded",
        stream: RECORD,
        italian: "assenza, ritardo (entrata posticipata), uscita anticipata",
        meaning: "An absence, a late entry or an early exit was recorded, with the lesson hours \
                  it missed, derived from the class's timetable.",
        who: "a teacher of the student's class, while the day's term is open",
        schema_version: 1,
        fields: &[
            ("entry", "uuid", "the entry's id"),
            ("class", "uuid", "the student's class"),
            ("date", "date", "the day (ISO 8601)"),
            (
                "missed",
                "object",
                "`{kind}`: `whole_day`, or `late_entry` / `early_exit` with `at` (HH:MM)",
            ),
            (
                "hours",
                "array of integer",
                "the numbers of the lesson hours missed",
            ),
        ],
        sample: || {
            record(&RecordEvent::AttendanceRecorded {
                entry: AttendanceId::from_uuid(uuid::Uuid::nil()),
                class: ClassId::from_uuid(uuid::Uuid::nil()),
                date: date!(2025 - 10 - 06),
                missed: Missed::LateEntry(time::macros::time!(9:40)),
                hours: vec![1, 2],
            })
        },
    },
    EventDoc {
        name: "AttendanceCancelled",
        stream: RECORD,
        italian: "annullamento di un'assenza o di un ritardo",
        meaning: "An attendance entry recorded by mistake was cancelled; it stays in the history \
                  and its hours no longer count.",
        who: "a teacher of the student's class, while the day's term is open",
        schema_version: 1,
        fields: &[("entry", "uuid", "the entry"), ("reason", "string", "why")],
        sample: || {
            record(&RecordEvent::AttendanceCancelled {
                entry: AttendanceId::from_uuid(uuid::Uuid::nil()),
                reason: "registrata per errore".into(),
            })
        },
    },
    EventDoc {
        name: "JustificationSubmitted",
        stream: RECORD,
        italian: "giustificazione",
        meaning: "A justification of an absence, late entry or early exit was submitted, or \
                  changed before a teacher decided. Its reason is sealed with the student's key \
                  (health is special-category data) and erased when its retention ends.",
        who: "a guardian of a minor student; the student when of age (a school setting, on by default)",
        schema_version: 1,
        fields: &[
            ("entry", "uuid", "the attendance entry"),
            ("justifier", "string", "`guardian` or `student`"),
            (
                "reason",
                "sealed object",
                "`{category, text}`: category `health`, `family`, `sport`, `transport`, \
                 `religious` or `other`, and free text; stored sealed, read as \
                 `{\"$erased\": ...}` after erasure",
            ),
        ],
        sample: || {
            record(&RecordEvent::JustificationSubmitted {
                entry: AttendanceId::from_uuid(uuid::Uuid::nil()),
                justifier: Justifier::Guardian,
                reason: Sealable::Open(Reason {
                    category: ReasonCategory::Family,
                    text: String::new(),
                }),
            })
        },
    },
    EventDoc {
        name: "JustificationAccepted",
        stream: RECORD,
        italian: "giustificazione accettata",
        meaning: "A teacher accepted the submitted justification; it can no longer change.",
        who: "a teacher of the student's class",
        schema_version: 1,
        fields: &[
            ("entry", "uuid", "the attendance entry"),
            (
                "reason",
                "sealed string",
                "a note, possibly empty; sealed with the student's key",
            ),
        ],
        sample: || {
            record(&RecordEvent::JustificationAccepted {
                entry: AttendanceId::from_uuid(uuid::Uuid::nil()),
                reason: Sealable::Open(String::new()),
            })
        },
    },
    EventDoc {
        name: "JustificationRejected",
        stream: RECORD,
        italian: "giustificazione respinta",
        meaning: "A teacher rejected the submitted justification, with a reason; a new one may \
                  be submitted.",
        who: "a teacher of the student's class",
        schema_version: 1,
        fields: &[
            ("entry", "uuid", "the attendance entry"),
            (
                "reason",
                "sealed string",
                "why; sealed with the student's key",
            ),
        ],
        sample: || {
            record(&RecordEvent::JustificationRejected {
                entry: AttendanceId::from_uuid(uuid::Uuid::nil()),
                reason: Sealable::Open("manca la firma".into()),
            })
        },
    },
    EventDoc {
        name: "NoteRecorded",
        stream: RECORD,
        italian: "nota disciplinare, annotazione, provvedimento disciplinare",
        meaning: "A note about the student, an annotation, or a sanction was written.",
        who: "a teacher of the student's class (notes, annotations); the principal (sanctions)",
        schema_version: 1,
        fields: &[
            ("note", "uuid", "the note's id"),
            (
                "kind",
                "string",
                "`disciplinary`, `annotation` or `sanction`",
            ),
            ("class", "uuid", "the student's class"),
            (
                "text",
                "string",
                "what happened, or the sanction and its reasons",
            ),
            ("date", "date", "the day (ISO 8601)"),
        ],
        sample: || {
            record(&RecordEvent::NoteRecorded {
                note: NoteId::from_uuid(uuid::Uuid::nil()),
                kind: NoteKind::Disciplinary,
                class: ClassId::from_uuid(uuid::Uuid::nil()),
                text: "Disturba la lezione".into(),
                date: date!(2025 - 10 - 06),
            })
        },
    },
    EventDoc {
        name: "NoteAnnulled",
        stream: RECORD,
        italian: "annullamento di una nota",
        meaning: "A note or a sanction was annulled, with a reason; it stays in the history.",
        who: "a teacher of the class or the principal (notes); the principal (sanctions)",
        schema_version: 1,
        fields: &[("note", "uuid", "the note"), ("reason", "string", "why")],
        sample: || {
            record(&RecordEvent::NoteAnnulled {
                note: NoteId::from_uuid(uuid::Uuid::nil()),
                reason: "scritta per errore".into(),
            })
        },
    },
    EventDoc {
        name: "SealedDataErased",
        stream: RECORD,
        italian: "cancellazione dei dati particolari (fine della conservazione)",
        meaning: "The record's special-category details (the sealed reasons of its \
                  justifications) were erased by destroying their key (`rules.md` section 7); \
                  the history stays intact and verifiable, the reasons read as erased.",
        who: "the software (`registro retention run`), or the school's administrator",
        schema_version: 1,
        fields: &[
            (
                "subject",
                "uuid",
                "the data subject whose key was destroyed: the record's own",
            ),
            ("reason", "string", "why: `retention`"),
        ],
        sample: || {
            record(&RecordEvent::SealedDataErased {
                subject: person(),
                reason: "retention".into(),
            })
        },
    },
    EventDoc {
        name: "LessonSigned",
        stream: CLASS,
        italian: "firma (registro di classe), argomento, attività",
        meaning: "A teacher signed a lesson hour of the class, with the topic taught.",
        who: "a teacher assigned to the class (co-teachers and support teachers too), or the \
              substitute recorded for the hour; once per teacher, date and hour",
        schema_version: 1,
        fields: &[
            ("date", "date", "the day (ISO 8601)"),
            (
                "hour",
                "integer",
                "the hour's number in the class's timetable",
            ),
            ("teacher", "uuid", "who signed"),
            ("subject", "string", "the hour's subject in the timetable"),
            ("topic", "string", "the topic taught (argomento)"),
            ("activity", "string", "the activity (attività svolta)"),
            (
                "substitute",
                "boolean",
                "whether they signed as the recorded substitute",
            ),
        ],
        sample: || {
            class(&ClassEvent::LessonSigned {
                date: date!(2025 - 10 - 06),
                hour: 1,
                teacher: person(),
                subject: "Matematica".into(),
                topic: "Equazioni".into(),
                activity: "Lezione frontale".into(),
                substitute: false,
            })
        },
    },
    EventDoc {
        name: "SubstituteAssigned",
        stream: CLASS,
        italian: "supplenza",
        meaning: "A teacher was recorded as the substitute for an hour of the class.",
        who: "principal; secretary",
        schema_version: 1,
        fields: &[
            ("date", "date", "the day (ISO 8601)"),
            ("hour", "integer", "the hour"),
            ("teacher", "uuid", "the substitute"),
        ],
        sample: || {
            class(&ClassEvent::SubstituteAssigned {
                date: date!(2025 - 10 - 06),
                hour: 2,
                teacher: person(),
            })
        },
    },
    EventDoc {
        name: "HomeworkAssigned",
        stream: CLASS,
        italian: "compiti assegnati",
        meaning: "Homework was set for the class.",
        who: "a teacher of the subject in the class",
        schema_version: 1,
        fields: &[
            ("homework", "uuid", "the homework's id"),
            ("subject", "string", "the subject"),
            ("text", "string", "what to do"),
            ("assigned_on", "date", "the day it was set"),
            ("due", "date", "when it is due"),
        ],
        sample: || {
            class(&ClassEvent::HomeworkAssigned {
                homework: HomeworkId::from_uuid(uuid::Uuid::nil()),
                subject: "Matematica".into(),
                text: "Esercizi a pagina 42".into(),
                assigned_on: date!(2025 - 10 - 06),
                due: date!(2025 - 10 - 08),
            })
        },
    },
    EventDoc {
        name: "TestScheduled",
        stream: CLASS,
        italian: "verifica programmata (agenda)",
        meaning: "A test was scheduled for the class; scheduling a second one on the same day \
                  warns, but is allowed.",
        who: "a teacher of the subject in the class",
        schema_version: 1,
        fields: &[
            ("test", "uuid", "the test's id"),
            ("subject", "string", "the subject"),
            ("date", "date", "the day (ISO 8601)"),
            ("description", "string", "what it covers"),
        ],
        sample: || {
            class(&ClassEvent::TestScheduled {
                test: TestId::from_uuid(uuid::Uuid::nil()),
                subject: "Matematica".into(),
                date: date!(2025 - 10 - 20),
                description: "Equazioni".into(),
            })
        },
    },
    EventDoc {
        name: "ClassNoteRecorded",
        stream: CLASS,
        italian: "nota di classe / annotazione",
        meaning: "A teacher of the class wrote a note to the whole class.",
        who: "a teacher of the class",
        schema_version: 1,
        fields: &[
            ("note", "uuid", "the note's id"),
            (
                "kind",
                "string",
                "`disciplinary` (nota disciplinare) or `annotation`",
            ),
            ("text", "string", "what happened"),
            ("date", "date", "the day (ISO 8601)"),
            ("teacher", "uuid", "the teacher who wrote it"),
        ],
        sample: || {
            class(&ClassEvent::ClassNoteRecorded {
                note: NoteId::from_uuid(uuid::Uuid::nil()),
                kind: NoteKind::Disciplinary,
                text: "La classe disturba la lezione".into(),
                date: date!(2025 - 10 - 06),
                teacher: person(),
            })
        },
    },
    EventDoc {
        name: "ClassNoteAnnulled",
        stream: CLASS,
        italian: "annullamento della nota di classe",
        meaning: "A class note was annulled, with a reason; it stays in the history.",
        who: "a teacher of the class; the principal",
        schema_version: 1,
        fields: &[("note", "uuid", "the note"), ("reason", "string", "why")],
        sample: || {
            class(&ClassEvent::ClassNoteAnnulled {
                note: NoteId::from_uuid(uuid::Uuid::nil()),
                reason: "scritta per errore".into(),
            })
        },
    },
    EventDoc {
        name: "SlotOffered",
        stream: MEETINGS,
        italian: "colloquio (disponibilità del docente)",
        meaning: "A teacher offered a slot for parent-teacher meetings.",
        who: "the teacher",
        schema_version: 1,
        fields: &[
            ("slot", "uuid", "the slot's id"),
            ("date", "date", "the day (ISO 8601)"),
            ("start", "time", "when it starts (HH:MM)"),
            ("end", "time", "when it ends (HH:MM)"),
            ("capacity", "integer", "how many bookings it takes"),
            ("place", "string", "where"),
        ],
        sample: || {
            meeting(&MeetingEvent::SlotOffered {
                slot: SlotId::from_uuid(uuid::Uuid::nil()),
                date: date!(2025 - 10 - 15),
                start: time::macros::time!(16:00),
                end: time::macros::time!(16:30),
                capacity: 3,
                place: "Aula 12".into(),
            })
        },
    },
    EventDoc {
        name: "SlotCancelled",
        stream: MEETINGS,
        italian: "colloquio annullato",
        meaning: "A teacher cancelled a slot, with a reason; its bookings fall with it.",
        who: "the teacher",
        schema_version: 1,
        fields: &[("slot", "uuid", "the slot"), ("reason", "string", "why")],
        sample: || {
            meeting(&MeetingEvent::SlotCancelled {
                slot: SlotId::from_uuid(uuid::Uuid::nil()),
                reason: "consiglio di classe straordinario".into(),
            })
        },
    },
    EventDoc {
        name: "MeetingBooked",
        stream: MEETINGS,
        italian: "prenotazione del colloquio",
        meaning: "A guardian booked a slot about their child.",
        who: "a guardian of a student the teacher teaches",
        schema_version: 1,
        fields: &[
            ("slot", "uuid", "the slot"),
            ("guardian", "uuid", "the guardian"),
            ("student", "uuid", "the student"),
        ],
        sample: || {
            meeting(&MeetingEvent::MeetingBooked {
                slot: SlotId::from_uuid(uuid::Uuid::nil()),
                guardian: person(),
                student: person(),
            })
        },
    },
    EventDoc {
        name: "BookingCancelled",
        stream: MEETINGS,
        italian: "prenotazione annullata",
        meaning: "A guardian cancelled their booking; the place is free again.",
        who: "the guardian who booked",
        schema_version: 1,
        fields: &[
            ("slot", "uuid", "the slot"),
            ("guardian", "uuid", "the guardian"),
            ("student", "uuid", "the student"),
        ],
        sample: || {
            meeting(&MeetingEvent::BookingCancelled {
                slot: SlotId::from_uuid(uuid::Uuid::nil()),
                guardian: person(),
                student: person(),
            })
        },
    },
    EventDoc {
        name: "CommunicationPublished",
        stream: COMMUNICATIONS,
        italian: "circolare / avviso",
        meaning: "A circular or a notice was published to an audience, with its attachments and, \
                  where asked, a consent deadline.",
        who: "principal, secretary (any audience); a teacher (notices to the families or \
              students of the classes they teach)",
        schema_version: 1,
        fields: &[
            ("communication", "uuid", "the communication's id"),
            (
                "kind",
                "string",
                "`circular` (circolare) or `notice` (avviso)",
            ),
            (
                "number",
                "integer or null",
                "a circular's number in its school year (from 1); null for a notice",
            ),
            ("title", "string", "the title (oggetto)"),
            ("body", "string", "the text"),
            (
                "audience",
                "object",
                "`groups` (`families`, `students`, `staff`) and `classes` (uuids; empty: the \
                 whole school; for staff, the teachers of those classes)",
            ),
            (
                "attachments",
                "array of object",
                "each `hash` (SHA-256 of the bytes, hex), `name`, `media_type`, `size` (bytes)",
            ),
            (
                "consent_deadline",
                "date, optional",
                "when consent (adesione) is asked, the last day to answer",
            ),
            ("date", "date", "the day it was published"),
            ("author", "uuid", "who published it"),
        ],
        sample: || {
            CatalogueEvent::CommunicationPublished {
                communication: communication(),
                kind: Kind::Circular,
                number: Some(12),
                title: "Uscita didattica a Firenze".into(),
                body: "Si comunica che...".into(),
                audience: Audience {
                    groups: [Group::Families].into(),
                    classes: [ClassId::from_uuid(uuid::Uuid::nil())].into(),
                },
                attachments: vec![Attachment {
                    hash: crate::ContentHash::from_bytes([0; 32]),
                    name: "programma.pdf".into(),
                    media_type: "application/pdf".into(),
                    size: 48_213,
                }],
                consent_deadline: Some(date!(2025 - 10 - 20)),
                date: date!(2025 - 10 - 06),
                author: person(),
            }
            .data()
        },
    },
    EventDoc {
        name: "CommunicationWithdrawn",
        stream: COMMUNICATIONS,
        italian: "comunicazione annullata",
        meaning: "A communication was withdrawn, with a reason: it stays readable, marked so, and \
                  takes no more receipts or consents.",
        who: "its author; the principal",
        schema_version: 1,
        fields: &[
            ("communication", "uuid", "the communication"),
            ("reason", "string", "why"),
        ],
        sample: || {
            CatalogueEvent::CommunicationWithdrawn {
                communication: communication(),
                reason: "data errata".into(),
            }
            .data()
        },
    },
    EventDoc {
        name: "CommunicationAcknowledged",
        stream: REPLIES,
        italian: "presa visione",
        meaning: "A recipient confirmed they read a communication (the time is the envelope's).",
        who: "a person the communication is addressed to",
        schema_version: 1,
        fields: &[
            ("communication", "uuid", "the communication"),
            ("reader", "uuid", "who read it"),
        ],
        sample: || {
            ReplyEvent::CommunicationAcknowledged {
                communication: communication(),
                reader: person(),
            }
            .data()
        },
    },
    EventDoc {
        name: "ConsentAnswered",
        stream: REPLIES,
        italian: "adesione",
        meaning: "A consent asked by a communication was answered for a student, before its \
                  deadline; a later answer replaces an earlier one.",
        who: "a guardian of a minor student; the student once of age",
        schema_version: 1,
        fields: &[
            ("communication", "uuid", "the communication"),
            ("student", "uuid", "the student"),
            ("by", "uuid", "who answered"),
            (
                "consent",
                "string",
                "`given` (aderisce) or `refused` (non aderisce)",
            ),
        ],
        sample: || {
            ReplyEvent::ConsentAnswered {
                communication: communication(),
                student: person(),
                by: person(),
                consent: Consent::Given,
            }
            .data()
        },
    },
    EventDoc {
        name: "StudentDataRead",
        stream: "`access-log`",
        italian: "registro degli accessi",
        meaning: "Somebody other than the student and their guardians read students' personal data \
                  (who, in which role and when are the envelope's actor, role and time).",
        who: "recorded by registro on every such read",
        schema_version: 1,
        fields: &[
            ("students", "array of uuid", "whose data"),
            (
                "view",
                "string",
                "which view: `student.record`, `class.roster`, `student.grades`, `student.access_log`",
            ),
            (
                "request_id",
                "string",
                "the request that read it, as in the server's logs",
            ),
        ],
        sample: || {
            serde_json::to_value(StudentDataRead {
                students: vec![person()],
                view: "student.record".into(),
                request_id: "r-1".into(),
            })
            .unwrap_or_default()
        },
    },
    EventDoc {
        name: "ScrutinyOpened",
        stream: SCRUTINY,
        italian: "apertura dello scrutinio",
        meaning: "The scrutinio of a class's term was opened: proposals and deliberations are \
                  taken until it is closed.",
        who: "the principal; the class coordinator",
        schema_version: 1,
        fields: &[
            ("term", "integer", "the term's number in the year, from 1"),
            (
                "level",
                "string",
                "the class's school level: `primary`, `lower_secondary`, `upper_secondary`",
            ),
            (
                "final",
                "boolean",
                "whether it is the final scrutinio (the year's last term)",
            ),
        ],
        sample: || {
            scrutiny(&ScrutinyEvent::ScrutinyOpened {
                term: 2,
                level: SchoolLevel::UpperSecondary,
                is_final: true,
            })
        },
    },
    EventDoc {
        name: "ProposalEntered",
        stream: SCRUTINY,
        italian: "proposta di voto",
        meaning: "A teacher proposed a student's grade in their subject; a later proposal \
                  replaces it.",
        who: "a teacher of the subject in the class, while the scrutinio is open",
        schema_version: 1,
        fields: &[
            ("term", "integer", "the term"),
            ("student", "uuid", "the student"),
            ("subject", "string", "the subject"),
            ("mark", "mark", "the proposed grade, on the subject's scale"),
            ("teacher", "uuid", "the teacher"),
        ],
        sample: || {
            scrutiny(&ScrutinyEvent::ProposalEntered {
                term: 1,
                student: person(),
                subject: "Matematica".into(),
                mark: Mark::Numeric(GradeValue::parse("7").unwrap_or(GradeValue::MIN)),
                teacher: person(),
            })
        },
    },
    EventDoc {
        name: "CouncilConvened",
        stream: SCRUTINY,
        italian: "seduta del consiglio di classe (presenti e sostituti)",
        meaning: "The class council sat for the scrutinio: who was present, and who substituted \
                  an absent member.",
        who: "the principal; the class coordinator",
        schema_version: 1,
        fields: &[
            ("term", "integer", "the term"),
            ("date", "date", "the day (ISO 8601)"),
            ("attendees", "array of uuid", "the members present"),
            (
                "substitutes",
                "object",
                "absent member's id → the id of their substitute (who is present)",
            ),
        ],
        sample: || {
            scrutiny(&ScrutinyEvent::CouncilConvened {
                term: 1,
                date: date!(2025 - 12 - 22),
                attendees: [person()].into(),
                substitutes: std::collections::BTreeMap::new(),
            })
        },
    },
    EventDoc {
        name: "GradesDeliberated",
        stream: SCRUTINY,
        italian: "voti deliberati dal consiglio (voti finali e comportamento)",
        meaning: "The council deliberated a student's final grades and conduct, with its vote; \
                  a later deliberation in the same scrutinio replaces it.",
        who: "the principal; the class coordinator, for the council",
        schema_version: 1,
        fields: &[
            ("term", "integer", "the term"),
            ("student", "uuid", "the student"),
            ("grades", "object", "subject → its final mark"),
            (
                "conduct",
                "integer, optional",
                "conduct in hundredths (a whole grade: 800 is 8); none in primary schools",
            ),
            (
                "vote",
                "vote",
                "`{\"kind\":\"unanimous\"}` or `{\"kind\":\"majority\",\"dissenting\":[ids]}`",
            ),
        ],
        sample: || {
            scrutiny(&ScrutinyEvent::GradesDeliberated {
                term: 1,
                student: person(),
                grades: [(
                    "Matematica".to_owned(),
                    Mark::Numeric(GradeValue::parse("6").unwrap_or(GradeValue::MIN)),
                )]
                .into(),
                conduct: GradeValue::parse("8").ok(),
                vote: Vote::Unanimous,
            })
        },
    },
    EventDoc {
        name: "AbsencesExempted",
        stream: SCRUTINY,
        italian: "deroga al limite delle assenze",
        meaning: "The council exempted a student's documented, continuous absences from the \
                  attendance limit (rule 1): their hours do not count.",
        who: "the principal; the class coordinator, for the council",
        schema_version: 1,
        fields: &[
            ("term", "integer", "the term whose council decided it"),
            ("student", "uuid", "the student"),
            (
                "exemption",
                "object",
                "`from`, `to` (dates) and `reason`: `health`, `therapy`, `sport`, `religious`, `family`",
            ),
            ("vote", "vote", "the council's vote"),
        ],
        sample: || {
            scrutiny(&ScrutinyEvent::AbsencesExempted {
                term: 2,
                student: person(),
                exemption: Exemption {
                    from: date!(2026 - 02 - 02),
                    to: date!(2026 - 03 - 03),
                    reason: ExemptionReason::Health,
                },
                vote: Vote::Unanimous,
            })
        },
    },
    EventDoc {
        name: "OutcomeDeliberated",
        stream: SCRUTINY,
        italian: "esito dello scrutinio finale (ammissione, giudizio sospeso, non ammissione)",
        meaning: "The council deliberated a student's year-end outcome, beside what registro \
                  proposed (rule 4); outcomes the law forbids are refused.",
        who: "the principal; the class coordinator, for the council, at the final scrutinio",
        schema_version: 1,
        fields: &[
            ("student", "uuid", "the student"),
            (
                "outcome",
                "outcome",
                "`{\"kind\":\"admitted\"}`, `{\"kind\":\"not_admitted\"}` or \
                 `{\"kind\":\"judgement_suspended\",\"subjects\":[...],\"citizenship\":bool}`",
            ),
            ("proposed", "outcome", "what registro proposed"),
            ("vote", "vote", "the council's vote"),
            (
                "reasons",
                "string",
                "the reasons (required to admit with subjects below 6)",
            ),
        ],
        sample: || {
            scrutiny(&ScrutinyEvent::OutcomeDeliberated {
                student: person(),
                outcome: Outcome::JudgementSuspended {
                    subjects: ["Matematica".to_owned()].into(),
                    citizenship: false,
                },
                proposed: Outcome::JudgementSuspended {
                    subjects: ["Matematica".to_owned()].into(),
                    citizenship: false,
                },
                vote: Vote::Unanimous,
                reasons: String::new(),
            })
        },
    },
    EventDoc {
        name: "ScrutinyClosed",
        stream: SCRUTINY,
        italian: "chiusura dello scrutinio",
        meaning: "The scrutinio was closed: the class's grades and absences dated in the term \
                  are locked (rule 6).",
        who: "the principal; the class coordinator, once every student is deliberated",
        schema_version: 1,
        fields: &[("term", "integer", "the term")],
        sample: || scrutiny(&ScrutinyEvent::ScrutinyClosed { term: 1 }),
    },
    EventDoc {
        name: "ScrutinyReopened",
        stream: SCRUTINY,
        italian: "riapertura dello scrutinio",
        meaning: "The principal reopened a closed scrutinio, with a reason; the term is \
                  unlocked until it is closed again.",
        who: "the principal",
        schema_version: 1,
        fields: &[("term", "integer", "the term"), ("reason", "string", "why")],
        sample: || {
            scrutiny(&ScrutinyEvent::ScrutinyReopened {
                term: 1,
                reason: "errore materiale nel voto di Storia".into(),
            })
        },
    },
    EventDoc {
        name: "ReportCardsPublished",
        stream: SCRUTINY,
        italian: "pubblicazione delle pagelle (documento di valutazione)",
        meaning: "The principal published the term's report cards to the families; reopening \
                  the scrutinio withdraws them until they are published again.",
        who: "the principal, once the scrutinio is closed",
        schema_version: 1,
        fields: &[("term", "integer", "the term")],
        sample: || scrutiny(&ScrutinyEvent::ReportCardsPublished { term: 1 }),
    },
    EventDoc {
        name: "SuspensionResolved",
        stream: SCRUTINY,
        italian: "scrutinio integrativo (esito del giudizio sospeso)",
        meaning: "The integration scrutinio resolved a suspended judgement: admitted or not.",
        who: "the principal; the class coordinator, for the council, after the final scrutinio",
        schema_version: 1,
        fields: &[
            ("student", "uuid", "the student"),
            ("admitted", "boolean", "admitted, or not"),
            ("vote", "vote", "the council's vote"),
        ],
        sample: || {
            scrutiny(&ScrutinyEvent::SuspensionResolved {
                student: person(),
                admitted: true,
                vote: Vote::Unanimous,
            })
        },
    },
    EventDoc {
        name: "OutcomeWithdrawn",
        stream: SCRUTINY,
        italian: "ritiro dell'esito (scrutinio finale riaperto)",
        meaning: "A student's deliberated outcome was withdrawn at the reopened final scrutinio, \
                  with the reason, so that the council can correct the grades it was decided on \
                  and decide it again.",
        who: "the principal; the class coordinator, while the final scrutinio is open",
        schema_version: 1,
        fields: &[
            ("student", "uuid", "the student"),
            ("reason", "string", "why"),
        ],
        sample: || {
            scrutiny(&ScrutinyEvent::OutcomeWithdrawn {
                student: person(),
                reason: "voto trascritto male".into(),
            })
        },
    },
    EventDoc {
        name: "IntegrationConvened",
        stream: SCRUTINY,
        italian: "seduta dello scrutinio integrativo (presenti e sostituti)",
        meaning: "The class council sat for the integration scrutinio, after the final one, to \
                  resolve the suspended judgements: who was present, and who substituted an \
                  absent member. Its votes are checked against these members.",
        who: "the principal; the class coordinator, once the final scrutinio is closed",
        schema_version: 1,
        fields: &[
            ("date", "date", "the day (ISO 8601)"),
            ("attendees", "array of uuid", "the members present"),
            (
                "substitutes",
                "object",
                "absent member's id → the id of their substitute (who is present)",
            ),
        ],
        sample: || {
            scrutiny(&ScrutinyEvent::IntegrationConvened {
                date: date!(2026 - 08 - 31),
                attendees: [person()].into(),
                substitutes: std::collections::BTreeMap::new(),
            })
        },
    },
];

/// `docs/events.md`, generated from [`CATALOGUE`].
#[must_use]
pub fn markdown() -> String {
    let mut out = String::from(
        "# Event catalogue\n\n\
         Every event registro stores, generated from `crates/domain/src/catalogue.rs` (do not edit \
         by hand: `UPDATE_SNAPSHOTS=1 cargo test -p registro-domain catalogue` rewrites it, and \
         the test fails while it is out of date). The envelope every event has (school, \
         `school_seq`, stream, version, actor, role, times, hashes) is in \
         [event-format.md](event-format.md); below is each type's `data`.\n\n\
         | event | Italian term | stream | who may cause it | schema |\n|---|---|---|---|---|\n",
    );
    for e in CATALOGUE {
        out.push_str(&format!(
            "| [`{0}`](#{1}) | {2} | {3} | {4} | {5} |\n",
            e.name,
            e.name.to_lowercase(),
            e.italian,
            e.stream,
            e.who,
            e.schema_version
        ));
    }
    for e in CATALOGUE {
        out.push_str(&format!(
            "\n## {}\n\n{} *{}*. Stream {}. Caused by: {}. Schema version {}.\n\n\
             | field | type | meaning |\n|---|---|---|\n",
            e.name, e.meaning, e.italian, e.stream, e.who, e.schema_version
        ));
        for (name, kind, meaning) in e.fields {
            out.push_str(&format!("| `{name}` | {kind} | {meaning} |\n"));
        }
        let sample = serde_json::to_string(&(e.sample)()).unwrap_or_default();
        out.push_str(&format!("\nExample `data`:\n\n```json\n{sample}\n```\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn every_event_type_is_in_the_catalogue_once() {
        let documented: Vec<&str> = CATALOGUE.iter().map(|e| e.name).collect();
        let unique: BTreeSet<&str> = documented.iter().copied().collect();
        assert_eq!(unique.len(), documented.len(), "a type documented twice");
        let stored: BTreeSet<&str> = DirectoryEvent::TYPE_NAMES
            .iter()
            .chain(&RecordEvent::TYPE_NAMES)
            .chain(&ClassEvent::TYPE_NAMES)
            .chain(&MeetingEvent::TYPE_NAMES)
            .chain(&CatalogueEvent::TYPE_NAMES)
            .chain(&ReplyEvent::TYPE_NAMES)
            .chain(&ScrutinyEvent::TYPE_NAMES)
            .chain(&[crate::access::STUDENT_DATA_READ])
            .copied()
            .collect();
        assert_eq!(unique, stored);
    }

    #[test]
    fn each_entry_documents_exactly_the_fields_its_events_carry() {
        for e in CATALOGUE {
            let sample = (e.sample)();
            let carried: BTreeSet<&str> = sample
                .as_object()
                .unwrap_or_else(|| panic!("{}: data is an object", e.name))
                .keys()
                .map(String::as_str)
                .collect();
            let documented: BTreeSet<&str> = e.fields.iter().map(|f| f.0).collect();
            assert_eq!(carried, documented, "{}", e.name);
        }
    }

    /// `docs/events.md` is the rendering of the catalogue. After a change:
    /// `UPDATE_SNAPSHOTS=1 cargo test -p registro-domain catalogue`.
    #[test]
    fn docs_events_md_is_up_to_date() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/events.md");
        let current = markdown();
        if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
            std::fs::write(&path, &current).unwrap();
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == current,
            "docs/events.md is out of date: run `UPDATE_SNAPSHOTS=1 cargo test -p registro-domain catalogue`"
        );
    }
}
