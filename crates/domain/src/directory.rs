//! The school directory (anagrafica): its people (by fiscal code) and their roles, the guardian
//! links, its classes, the teachers assigned to them (cattedre) and the students enrolled in
//! them. The access rules of the API are decided from this state.
//!
//! A school's directory is one stream ([`STREAM`]), because its invariants span it: one person
//! per fiscal code; a guardian is linked only to a student; a teacher is assigned and a student
//! enrolled only in an existing class. The secretary (segreteria) or the principal changes it;
//! everything is an event, nothing is edited.
//!
//! One person may hold several roles in one school (a teacher who is also a parent there), and
//! separated parents are two people, each with their own link to the child. The register issue
//! extends the structure (school years, subjects, transfers, timetables); the shape here is the
//! part that authorisation needs.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};
use time::Date;

use crate::calendar::{CalendarError, SchoolYear, Term, Terms};
use crate::grade::Scale;
use crate::justification::JustificationSettings;
use crate::retention::{MAX_YEARS_AFTER, RetentionSettings};
use crate::scrutiny::Settings as ScrutinySettings;
use crate::timetable::{LessonHour, Timetable, TimetableError};
use crate::{ClassId, FiscalCode, PersonId, Role};

/// The name of the stream that holds a school's directory (stream ids are per school).
pub const STREAM: &str = "directory";
/// The longest name accepted (of a person, a class or a subject), in characters.
pub const MAX_NAME_CHARS: usize = 100;

/// What the secretary or the principal asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum DirectoryCommand {
    /// Registers a person with a first role.
    Register {
        /// The new person's id, chosen by the caller.
        person: PersonId,
        /// Their fiscal code.
        fiscal_code: FiscalCode,
        /// Cognome.
        family_name: String,
        /// Nome.
        given_name: String,
        /// The role they are registered in.
        role: Role,
        /// Their date of birth, when known (needed for students: an adult student justifies
        /// their own absences).
        #[serde(default, with = "crate::iso_date::option")]
        birth_date: Option<Date>,
    },
    /// Gives a registered person another role.
    GrantRole {
        /// The person.
        person: PersonId,
        /// The role.
        role: Role,
    },
    /// Takes a role away (the person and their history stay).
    RevokeRole {
        /// The person.
        person: PersonId,
        /// The role.
        role: Role,
    },
    /// Links a guardian (genitore / tutore) to a student.
    LinkGuardian {
        /// The guardian.
        guardian: PersonId,
        /// The student.
        student: PersonId,
    },
    /// Ends a guardian's link to a student (e.g. by a court order).
    UnlinkGuardian {
        /// The guardian.
        guardian: PersonId,
        /// The student.
        student: PersonId,
    },
    /// Creates a class (classe).
    CreateClass {
        /// The new class's id, chosen by the caller.
        class: ClassId,
        /// Its name, unique in the school, e.g. "3A liceo scientifico".
        name: String,
    },
    /// Assigns a teacher to teach a subject in a class (cattedra).
    AssignTeacher {
        /// The teacher.
        teacher: PersonId,
        /// The class.
        class: ClassId,
        /// The subject (materia), e.g. "Matematica".
        subject: String,
    },
    /// Enrols a student in a class (iscrizione).
    EnrolStudent {
        /// The student.
        student: PersonId,
        /// The class.
        class: ClassId,
    },
    /// Sets a class's weekly timetable (orario delle lezioni), replacing the one it had.
    SetTimetable {
        /// The class.
        class: ClassId,
        /// Its weekly lesson hours.
        hours: Vec<LessonHour>,
    },
    /// Exempts a student from a subject (e.g. religion without an alternative activity): its
    /// hours leave the student's personalised annual hours and are never missed.
    ExemptFromSubject {
        /// The student.
        student: PersonId,
        /// The subject.
        subject: String,
    },
    /// Ends a student's exemption from a subject.
    EndExemption {
        /// The student.
        student: PersonId,
        /// The subject.
        subject: String,
    },
    /// Moves an enrolled student to another class of the school (trasferimento di classe).
    TransferStudent {
        /// The student.
        student: PersonId,
        /// The class they move to.
        class: ClassId,
    },
    /// A student leaves the school (ritiro, or transfer to another school): they stay in the
    /// history, in no class.
    WithdrawStudent {
        /// The student.
        student: PersonId,
        /// Why (ritiro, nulla osta to another school...).
        reason: String,
    },
    /// Names a teacher of a class its coordinator (coordinatore di classe).
    AppointCoordinator {
        /// The class.
        class: ClassId,
        /// A teacher assigned to the class.
        teacher: PersonId,
    },
    /// Registers and enrols students from a list (a CSV file): all rows or none.
    EnrolList {
        /// The rows, with their line numbers in the file.
        rows: Vec<EnrolmentRow>,
    },
    /// Sets the terms (periodi) of a school year; planning a year again replaces its terms.
    PlanSchoolYear {
        /// The school year.
        year: SchoolYear,
        /// Its terms, in order.
        terms: Vec<Term>,
        /// The days without lessons (giorni di sospensione delle lezioni).
        #[serde(with = "crate::iso_dates")]
        holidays: Vec<Date>,
    },
    /// Defines a subject (materia) of the school, with the scale its grades are on. Teachers
    /// are assigned, timetables set and exemptions granted only for defined subjects.
    DefineSubject {
        /// Its name, as the register shows it ("Matematica", "Religione cattolica").
        subject: String,
        /// The scale its grades are on.
        scale: Scale,
    },
    /// Sets the school's rules for justifications (`rules.md` section 5), from now on.
    SetJustificationSettings {
        /// The settings.
        settings: JustificationSettings,
    },
    /// Sets the school's rules for scrutini (`rules.md` section 4), from now on.
    SetScrutinySettings {
        /// The settings.
        settings: ScrutinySettings,
    },
    /// Sets how long the school keeps special-category details (`rules.md` section 7).
    SetRetentionSettings {
        /// The settings.
        settings: RetentionSettings,
    },
}

/// One row of an enrolment list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EnrolmentRow {
    /// Its line in the file (1 is the header).
    pub line: usize,
    /// The id a new student gets (unused when the fiscal code is registered already).
    pub person: PersonId,
    /// The student's fiscal code.
    pub fiscal_code: FiscalCode,
    /// Cognome.
    pub family_name: String,
    /// Nome.
    pub given_name: String,
    /// The date of birth, when given.
    #[serde(with = "crate::iso_date::option")]
    pub birth_date: Option<Date>,
    /// The class's name.
    pub class: String,
}

/// A row of an enrolment list that cannot be applied, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowProblem {
    /// The line in the file.
    pub line: usize,
    /// Why, in Italian.
    pub reason: String,
}

/// What happened. Stored as events (`event_type` = the variant name, `data` = its fields).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum DirectoryEvent {
    /// A person was registered.
    PersonRegistered {
        /// The person.
        person: PersonId,
        /// Their fiscal code, as issued.
        fiscal_code: FiscalCode,
        /// Cognome.
        family_name: String,
        /// Nome.
        given_name: String,
        /// Their first role.
        role: Role,
        /// Their date of birth, when known.
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            with = "crate::iso_date::option"
        )]
        birth_date: Option<Date>,
    },
    /// A person was given a role.
    RoleGranted {
        /// The person.
        person: PersonId,
        /// The role.
        role: Role,
    },
    /// A person's role was taken away.
    RoleRevoked {
        /// The person.
        person: PersonId,
        /// The role.
        role: Role,
    },
    /// A guardian was linked to a student.
    GuardianLinked {
        /// The guardian.
        guardian: PersonId,
        /// The student.
        student: PersonId,
    },
    /// A guardian's link to a student ended.
    GuardianUnlinked {
        /// The guardian.
        guardian: PersonId,
        /// The student.
        student: PersonId,
    },
    /// A class was created (classe).
    ClassCreated {
        /// The class.
        class: ClassId,
        /// Its name.
        name: String,
    },
    /// A teacher was assigned to a subject in a class (cattedra).
    TeacherAssigned {
        /// The teacher.
        teacher: PersonId,
        /// The class.
        class: ClassId,
        /// The subject (materia).
        subject: String,
    },
    /// A student was enrolled in a class (iscrizione).
    StudentEnrolled {
        /// The student.
        student: PersonId,
        /// The class.
        class: ClassId,
    },
    /// A class's weekly timetable was set (or set again).
    TimetableSet {
        /// The class.
        class: ClassId,
        /// Its weekly lesson hours.
        hours: Vec<LessonHour>,
    },
    /// A student moved to another class (trasferimento di classe).
    StudentTransferred {
        /// The student.
        student: PersonId,
        /// The class they left.
        from: ClassId,
        /// The class they joined.
        to: ClassId,
    },
    /// A student left the school (ritiro).
    StudentWithdrawn {
        /// The student.
        student: PersonId,
        /// The class they left.
        class: ClassId,
        /// Why.
        reason: String,
    },
    /// A teacher became the class's coordinator (the previous one, if any, no longer is).
    CoordinatorAppointed {
        /// The class.
        class: ClassId,
        /// The teacher.
        teacher: PersonId,
    },
    /// A student was exempted from a subject (esonero).
    SubjectExemptionGranted {
        /// The student.
        student: PersonId,
        /// The subject.
        subject: String,
    },
    /// A student's exemption from a subject ended.
    SubjectExemptionEnded {
        /// The student.
        student: PersonId,
        /// The subject.
        subject: String,
    },
    /// A school year's terms were set (or set again).
    SchoolYearPlanned {
        /// The school year.
        year: SchoolYear,
        /// Its terms, in order.
        terms: Vec<Term>,
        /// The days without lessons, in order (absent in events written before holidays were
        /// planned: none).
        #[serde(
            default,
            skip_serializing_if = "Vec::is_empty",
            with = "crate::iso_dates"
        )]
        holidays: Vec<Date>,
    },
    /// A subject was defined.
    SubjectDefined {
        /// Its name.
        subject: String,
        /// The scale its grades are on.
        scale: Scale,
    },
    /// The school's rules for justifications were set.
    JustificationSettingsSet {
        /// Whether an adult student justifies their own absences (and their guardians do not).
        adults_justify_themselves: bool,
        /// Within how many school days a justification is due.
        due_within_school_days: u8,
    },
    /// The school's rules for scrutini were set.
    ScrutinySettingsSet {
        /// The most subjects a suspended judgement may leave to recover.
        max_subjects_to_recover: u8,
    },
    /// The school's retention of special-category details was set.
    RetentionSettingsSet {
        /// The school years after a record's own during which its details are kept.
        years_after: u8,
    },
}

impl crate::StoredEvent for DirectoryEvent {}

impl DirectoryEvent {
    /// Every event type name, as stored.
    pub const TYPE_NAMES: [&'static str; 19] = [
        "PersonRegistered",
        "RoleGranted",
        "RoleRevoked",
        "GuardianLinked",
        "GuardianUnlinked",
        "ClassCreated",
        "TeacherAssigned",
        "StudentEnrolled",
        "SchoolYearPlanned",
        "TimetableSet",
        "SubjectExemptionGranted",
        "SubjectExemptionEnded",
        "StudentTransferred",
        "StudentWithdrawn",
        "CoordinatorAppointed",
        "JustificationSettingsSet",
        "SubjectDefined",
        "ScrutinySettingsSet",
        "RetentionSettingsSet",
    ];

    /// The event's type name, as stored.
    #[must_use]
    pub const fn type_name(&self) -> &'static str {
        let i = match self {
            Self::PersonRegistered { .. } => 0,
            Self::RoleGranted { .. } => 1,
            Self::RoleRevoked { .. } => 2,
            Self::GuardianLinked { .. } => 3,
            Self::GuardianUnlinked { .. } => 4,
            Self::ClassCreated { .. } => 5,
            Self::TeacherAssigned { .. } => 6,
            Self::StudentEnrolled { .. } => 7,
            Self::SchoolYearPlanned { .. } => 8,
            Self::TimetableSet { .. } => 9,
            Self::SubjectExemptionGranted { .. } => 10,
            Self::SubjectExemptionEnded { .. } => 11,
            Self::StudentTransferred { .. } => 12,
            Self::StudentWithdrawn { .. } => 13,
            Self::CoordinatorAppointed { .. } => 14,
            Self::JustificationSettingsSet { .. } => 15,
            Self::SubjectDefined { .. } => 16,
            Self::ScrutinySettingsSet { .. } => 17,
            Self::RetentionSettingsSet { .. } => 18,
        };
        Self::TYPE_NAMES[i]
    }
}

/// Why a command was refused. Shown to the secretary, in Italian.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DirectoryError {
    /// The fiscal code belongs to someone already registered.
    #[error("il codice fiscale è già registrato in questa scuola")]
    FiscalCodeTaken {
        /// Who has it.
        existing: PersonId,
    },
    /// The person id is already used.
    #[error("questa persona è già registrata")]
    AlreadyRegistered,
    /// No such person in this school.
    #[error("persona sconosciuta")]
    UnknownPerson(PersonId),
    /// A name is empty or too long.
    #[error("nome mancante o più lungo di {MAX_NAME_CHARS} caratteri")]
    BadName,
    /// The software's own role cannot be given to a person.
    #[error("ruolo non assegnabile a una persona")]
    NotAPersonRole,
    /// The person already holds the role.
    #[error("la persona ha già questo ruolo")]
    RoleHeld,
    /// The person does not hold the role.
    #[error("la persona non ha questo ruolo")]
    RoleNotHeld,
    /// Linking needs a guardian and a student, two different people.
    #[error("il collegamento richiede un genitore/tutore e uno studente")]
    NotGuardianAndStudent,
    /// The link already exists.
    #[error("il genitore/tutore è già collegato a questo studente")]
    AlreadyLinked,
    /// There is no such link.
    #[error("il genitore/tutore non è collegato a questo studente")]
    NotLinked,
    /// The class id is already used.
    #[error("questa classe esiste già")]
    ClassExists,
    /// Another class has this name.
    #[error("esiste già una classe con questo nome")]
    ClassNameTaken,
    /// No such class in this school.
    #[error("classe sconosciuta")]
    UnknownClass(ClassId),
    /// No class of that name in this school.
    #[error("nessuna classe con questo nome")]
    UnknownClassName,
    /// Only a person holding the teacher role can be assigned to a class.
    #[error("la persona non è un docente")]
    NotATeacher,
    /// Only a person holding the student role can be enrolled.
    #[error("la persona non è uno studente")]
    NotAStudent,
    /// The teacher already teaches that subject in that class.
    #[error("il docente ha già questa cattedra")]
    AlreadyAssigned,
    /// The student is already enrolled in a class (transfers come with the register).
    #[error("lo studente è già iscritto a una classe")]
    AlreadyEnrolled,
    /// The school year's terms do not fit.
    #[error(transparent)]
    Calendar(#[from] CalendarError),
    /// The timetable does not fit.
    #[error(transparent)]
    Timetable(#[from] TimetableError),
    /// The student is in no class.
    #[error("lo studente non è iscritto a nessuna classe")]
    NotEnrolled,
    /// The student is in that class already.
    #[error("lo studente è già in questa classe")]
    SameClass,
    /// The coordinator must teach in the class.
    #[error("il coordinatore deve essere un docente della classe")]
    NotTheClassTeacher,
    /// A reason is required.
    #[error("motivo mancante o troppo lungo")]
    Reason,
    /// Rows of an enrolment list cannot be applied: nothing is.
    #[error("{} righe non valide: nessuna applicata", .0.len())]
    BadRows(Vec<RowProblem>),
    /// The student is already exempt from the subject.
    #[error("lo studente è già esonerato da questa materia")]
    AlreadyExempt,
    /// The student is not exempt from the subject.
    #[error("lo studente non è esonerato da questa materia")]
    NotExempt,
    /// The subject is not defined.
    #[error("la materia «{0}» non è definita: la segreteria la aggiunge prima")]
    UnknownSubject(String),
    /// The subject is defined already.
    #[error("la materia è già definita")]
    SubjectExists,
    /// A justification's term is out of range.
    #[error("il termine per giustificare va da 1 a {MAX_DUE_DAYS} giorni di scuola")]
    BadDueDays,
    /// The most subjects to recover is out of range.
    #[error(
        "il numero massimo di materie con giudizio sospeso va da 1 a {MAX_SUBJECTS_TO_RECOVER}"
    )]
    BadMaxSubjects,
    /// The retention is out of range.
    #[error(
        "i dati particolari si conservano da 0 a {MAX_YEARS_AFTER} anni scolastici dopo il loro"
    )]
    BadRetention,
}

/// The longest a school may give families to justify, in school days.
pub const MAX_DUE_DAYS: u8 = 30;

/// The most subjects a school may let a suspended judgement leave to recover.
pub const MAX_SUBJECTS_TO_RECOVER: u8 = 6;

/// One registered person, as the decisions and the access rules need them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    /// Their fiscal code, as issued.
    pub fiscal_code: FiscalCode,
    /// Cognome.
    pub family_name: String,
    /// Nome.
    pub given_name: String,
    /// The roles they hold now.
    pub roles: BTreeSet<Role>,
    /// Their date of birth, when known.
    pub birth_date: Option<Date>,
}

/// One class.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Class {
    /// Its name.
    pub name: String,
    /// Its coordinator (coordinatore di classe), once appointed.
    pub coordinator: Option<PersonId>,
    /// Its teachers with their subjects.
    pub teachers: BTreeSet<(PersonId, String)>,
    /// Its students.
    pub students: BTreeSet<PersonId>,
}

/// The state of a school's directory stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Directory {
    people: BTreeMap<PersonId, Person>,
    /// People by fiscal code, exactly as issued: an omocodic variant is another person.
    by_code: HashMap<FiscalCode, PersonId>,
    /// (guardian, student) pairs.
    links: BTreeSet<(PersonId, PersonId)>,
    classes: BTreeMap<ClassId, Class>,
    /// Each enrolled student's class.
    enrolment: HashMap<PersonId, ClassId>,
    /// Each planned school year's terms.
    calendars: BTreeMap<SchoolYear, Terms>,
    /// Each class's weekly timetable.
    timetables: HashMap<ClassId, Timetable>,
    /// Each student's exempt subjects.
    exemptions: HashMap<PersonId, BTreeSet<String>>,
    /// The school's rules for justifications.
    justification_settings: JustificationSettings,
    scrutiny_settings: ScrutinySettings,
    retention_settings: RetentionSettings,
    /// The subjects, with the scale of their grades.
    subjects: BTreeMap<String, Scale>,
}

impl Directory {
    /// The person, if registered.
    #[must_use]
    pub fn person(&self, id: PersonId) -> Option<&Person> {
        self.people.get(&id)
    }

    /// Who has this fiscal code. Codes are compared exactly as issued: an omocodic variant of a
    /// code is the code of another person, never the same one.
    #[must_use]
    pub fn by_fiscal_code(&self, code: &FiscalCode) -> Option<PersonId> {
        self.by_code.get(code).copied()
    }

    /// Whether `person` is registered and holds `role` now.
    #[must_use]
    pub fn has_role(&self, person: PersonId, role: Role) -> bool {
        self.people
            .get(&person)
            .is_some_and(|p| p.roles.contains(&role))
    }

    /// Whether `guardian` is linked to `student`.
    #[must_use]
    pub fn is_linked(&self, guardian: PersonId, student: PersonId) -> bool {
        self.links.contains(&(guardian, student))
    }

    /// The students a guardian is linked to.
    pub fn students_of(&self, guardian: PersonId) -> impl Iterator<Item = PersonId> + '_ {
        self.links
            .range((guardian, PersonId::from_uuid(uuid::Uuid::nil()))..)
            .take_while(move |(g, _)| *g == guardian)
            .map(|(_, s)| *s)
    }

    /// The guardians linked to a student.
    pub fn guardians_of(&self, student: PersonId) -> impl Iterator<Item = PersonId> + '_ {
        self.links
            .iter()
            .filter(move |(_, s)| *s == student)
            .map(|(g, _)| *g)
    }

    /// The class, if it exists.
    #[must_use]
    pub fn class(&self, id: ClassId) -> Option<&Class> {
        self.classes.get(&id)
    }

    /// The class a student is enrolled in.
    #[must_use]
    pub fn class_of(&self, student: PersonId) -> Option<ClassId> {
        self.enrolment.get(&student).copied()
    }

    /// The school's rules for justifications (`rules.md` section 5), the defaults until set.
    #[must_use]
    pub const fn justification_settings(&self) -> JustificationSettings {
        self.justification_settings
    }

    /// The school's rules for scrutini (the defaults of `rules.md` until set).
    #[must_use]
    pub const fn scrutiny_settings(&self) -> ScrutinySettings {
        self.scrutiny_settings
    }

    /// The school's retention of special-category details (the default of `rules.md` until
    /// set).
    #[must_use]
    pub const fn retention_settings(&self) -> RetentionSettings {
        self.retention_settings
    }

    /// The scale of a defined subject's grades; `None` for a subject not defined.
    #[must_use]
    pub fn subject_scale(&self, subject: &str) -> Option<Scale> {
        self.subjects.get(subject).copied()
    }

    /// Every defined subject with its scale, by name.
    pub fn subjects(&self) -> impl Iterator<Item = (&str, Scale)> {
        self.subjects.iter().map(|(s, scale)| (s.as_str(), *scale))
    }

    /// Refuses a subject that is not defined.
    fn defined(&self, subject: &str) -> Result<(), DirectoryError> {
        if self.subjects.contains_key(subject) {
            Ok(())
        } else {
            Err(DirectoryError::UnknownSubject(subject.to_owned()))
        }
    }

    /// Every registered person.
    pub fn people(&self) -> impl Iterator<Item = (PersonId, &Person)> + '_ {
        self.people.iter().map(|(id, p)| (*id, p))
    }

    /// Every student enrolled in a class.
    pub fn enrolled_students(&self) -> impl Iterator<Item = PersonId> + '_ {
        self.enrolment.keys().copied()
    }

    /// Whether `teacher` is assigned to `class` (for any subject).
    #[must_use]
    pub fn teaches_class(&self, teacher: PersonId, class: ClassId) -> bool {
        self.classes
            .get(&class)
            .is_some_and(|c| c.teachers.iter().any(|(t, _)| *t == teacher))
    }

    /// Whether `teacher` is assigned to the class `student` is enrolled in.
    #[must_use]
    pub fn teaches_student(&self, teacher: PersonId, student: PersonId) -> bool {
        self.class_of(student)
            .is_some_and(|c| self.teaches_class(teacher, c))
    }

    /// The classes a teacher is assigned to.
    pub fn classes_of(&self, teacher: PersonId) -> impl Iterator<Item = ClassId> + '_ {
        self.classes
            .iter()
            .filter(move |(_, c)| c.teachers.iter().any(|(t, _)| *t == teacher))
            .map(|(id, _)| *id)
    }

    /// The terms of a school year, once planned.
    #[must_use]
    pub fn terms(&self, year: SchoolYear) -> Option<&Terms> {
        self.calendars.get(&year)
    }

    /// The class with this name (letter case aside).
    #[must_use]
    pub fn class_by_name(&self, name: &str) -> Option<ClassId> {
        let name = name.split_whitespace().collect::<Vec<_>>().join(" ");
        self.classes
            .iter()
            .find(|(_, c)| c.name.eq_ignore_ascii_case(&name))
            .map(|(id, _)| *id)
    }

    /// The subjects a student is exempt from.
    #[must_use]
    pub fn exempt_subjects(&self, student: PersonId) -> BTreeSet<String> {
        self.exemptions.get(&student).cloned().unwrap_or_default()
    }

    /// A class's weekly timetable, once set.
    #[must_use]
    pub fn timetable(&self, class: ClassId) -> Option<&Timetable> {
        self.timetables.get(&class)
    }

    /// Whether `teacher` teaches `subject` in `class`.
    #[must_use]
    pub fn teaches_subject(&self, teacher: PersonId, class: ClassId, subject: &str) -> bool {
        self.classes.get(&class).is_some_and(|c| {
            c.teachers
                .iter()
                .any(|(t, s)| *t == teacher && s == subject)
        })
    }

    fn holds(&self, id: PersonId, role: Role) -> Result<bool, DirectoryError> {
        self.people
            .get(&id)
            .map(|p| p.roles.contains(&role))
            .ok_or(DirectoryError::UnknownPerson(id))
    }

    fn existing_class(&self, id: ClassId) -> Result<&Class, DirectoryError> {
        self.classes
            .get(&id)
            .ok_or(DirectoryError::UnknownClass(id))
    }
}

fn clean_name(name: &str) -> Result<String, DirectoryError> {
    let name = name.split_whitespace().collect::<Vec<_>>().join(" ");
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
        return Err(DirectoryError::BadName);
    }
    Ok(name)
}

/// Decides what a command means, given the state. Pure: no clock, no IO.
///
/// # Errors
/// [`DirectoryError`] when the command breaks a rule; nothing is to be written then.
pub fn decide(
    state: &Directory,
    command: &DirectoryCommand,
) -> Result<Vec<DirectoryEvent>, DirectoryError> {
    use DirectoryCommand as C;
    use DirectoryError as Error;
    use DirectoryEvent as E;
    let event = match command {
        C::Register {
            person,
            fiscal_code,
            family_name,
            given_name,
            role,
            birth_date,
        } => {
            if state.people.contains_key(person) {
                return Err(Error::AlreadyRegistered);
            }
            if let Some(existing) = state.by_fiscal_code(fiscal_code) {
                return Err(Error::FiscalCodeTaken { existing });
            }
            if *role == Role::System {
                return Err(Error::NotAPersonRole);
            }
            E::PersonRegistered {
                person: *person,
                fiscal_code: fiscal_code.clone(),
                family_name: clean_name(family_name)?,
                given_name: clean_name(given_name)?,
                role: *role,
                birth_date: *birth_date,
            }
        }
        C::GrantRole { person, role } => {
            if *role == Role::System {
                return Err(Error::NotAPersonRole);
            }
            if state.holds(*person, *role)? {
                return Err(Error::RoleHeld);
            }
            E::RoleGranted {
                person: *person,
                role: *role,
            }
        }
        C::RevokeRole { person, role } => {
            if !state.holds(*person, *role)? {
                return Err(Error::RoleNotHeld);
            }
            E::RoleRevoked {
                person: *person,
                role: *role,
            }
        }
        C::LinkGuardian { guardian, student } => {
            let is_guardian = state.holds(*guardian, Role::Guardian)?;
            let is_student = state.holds(*student, Role::Student)?;
            if !is_guardian || !is_student || guardian == student {
                return Err(Error::NotGuardianAndStudent);
            }
            if state.is_linked(*guardian, *student) {
                return Err(Error::AlreadyLinked);
            }
            E::GuardianLinked {
                guardian: *guardian,
                student: *student,
            }
        }
        C::UnlinkGuardian { guardian, student } => {
            if !state.is_linked(*guardian, *student) {
                return Err(Error::NotLinked);
            }
            E::GuardianUnlinked {
                guardian: *guardian,
                student: *student,
            }
        }
        C::CreateClass { class, name } => {
            if state.classes.contains_key(class) {
                return Err(Error::ClassExists);
            }
            let name = clean_name(name)?;
            if state
                .classes
                .values()
                .any(|c| c.name.eq_ignore_ascii_case(&name))
            {
                return Err(Error::ClassNameTaken);
            }
            E::ClassCreated {
                class: *class,
                name,
            }
        }
        C::AssignTeacher {
            teacher,
            class,
            subject,
        } => {
            if !state.holds(*teacher, Role::Teacher)? {
                return Err(Error::NotATeacher);
            }
            let subject = clean_name(subject)?;
            state.defined(&subject)?;
            if state
                .existing_class(*class)?
                .teachers
                .contains(&(*teacher, subject.clone()))
            {
                return Err(Error::AlreadyAssigned);
            }
            E::TeacherAssigned {
                teacher: *teacher,
                class: *class,
                subject,
            }
        }
        C::EnrolStudent { student, class } => {
            if !state.holds(*student, Role::Student)? {
                return Err(Error::NotAStudent);
            }
            state.existing_class(*class)?;
            if state.enrolment.contains_key(student) {
                return Err(Error::AlreadyEnrolled);
            }
            E::StudentEnrolled {
                student: *student,
                class: *class,
            }
        }
        C::SetTimetable { class, hours } => {
            state.existing_class(*class)?;
            for teacher in hours.iter().filter_map(|h| h.teacher) {
                if !state.holds(teacher, Role::Teacher)? {
                    return Err(Error::NotATeacher);
                }
            }
            let timetable = Timetable::new(hours.clone())?;
            for hour in timetable.hours() {
                state.defined(&hour.subject)?;
            }
            E::TimetableSet {
                class: *class,
                hours: timetable.hours().to_vec(),
            }
        }
        C::EnrolList { rows } => return enrol_list(state, rows),
        C::TransferStudent { student, class } => {
            let from = state.class_of(*student).ok_or(Error::NotEnrolled)?;
            state.existing_class(*class)?;
            if from == *class {
                return Err(Error::SameClass);
            }
            E::StudentTransferred {
                student: *student,
                from,
                to: *class,
            }
        }
        C::WithdrawStudent { student, reason } => {
            let class = state.class_of(*student).ok_or(Error::NotEnrolled)?;
            let reason = reason.split_whitespace().collect::<Vec<_>>().join(" ");
            if reason.is_empty() || reason.chars().count() > 500 {
                return Err(Error::Reason);
            }
            E::StudentWithdrawn {
                student: *student,
                class,
                reason,
            }
        }
        C::AppointCoordinator { class, teacher } => {
            state.existing_class(*class)?;
            if !state.teaches_class(*teacher, *class) {
                return Err(Error::NotTheClassTeacher);
            }
            E::CoordinatorAppointed {
                class: *class,
                teacher: *teacher,
            }
        }
        C::ExemptFromSubject { student, subject } => {
            if !state.holds(*student, Role::Student)? {
                return Err(Error::NotAStudent);
            }
            let subject = clean_name(subject)?;
            state.defined(&subject)?;
            if state
                .exemptions
                .get(student)
                .is_some_and(|s| s.contains(&subject))
            {
                return Err(Error::AlreadyExempt);
            }
            E::SubjectExemptionGranted {
                student: *student,
                subject,
            }
        }
        C::EndExemption { student, subject } => {
            let subject = clean_name(subject)?;
            if !state
                .exemptions
                .get(student)
                .is_some_and(|s| s.contains(&subject))
            {
                return Err(Error::NotExempt);
            }
            E::SubjectExemptionEnded {
                student: *student,
                subject,
            }
        }
        C::PlanSchoolYear {
            year,
            terms,
            holidays,
        } => {
            let terms =
                Terms::new(*year, terms.clone())?.with_holidays(holidays.iter().copied())?;
            E::SchoolYearPlanned {
                year: *year,
                terms: terms.terms().to_vec(),
                holidays: terms.holidays().collect(),
            }
        }
        C::DefineSubject { subject, scale } => {
            let subject = clean_name(subject)?;
            if state.subjects.contains_key(&subject) {
                return Err(Error::SubjectExists);
            }
            E::SubjectDefined {
                subject,
                scale: *scale,
            }
        }
        C::SetJustificationSettings { settings } => {
            if !(1..=MAX_DUE_DAYS).contains(&settings.due_within_school_days) {
                return Err(Error::BadDueDays);
            }
            E::JustificationSettingsSet {
                adults_justify_themselves: settings.adults_justify_themselves,
                due_within_school_days: settings.due_within_school_days,
            }
        }
        C::SetScrutinySettings { settings } => {
            match u8::try_from(settings.max_subjects_to_recover) {
                Ok(max @ 1..=MAX_SUBJECTS_TO_RECOVER) => E::ScrutinySettingsSet {
                    max_subjects_to_recover: max,
                },
                _ => return Err(Error::BadMaxSubjects),
            }
        }
        C::SetRetentionSettings { settings } => {
            if settings.years_after > MAX_YEARS_AFTER {
                return Err(Error::BadRetention);
            }
            E::RetentionSettingsSet {
                years_after: settings.years_after,
            }
        }
    };
    Ok(vec![event])
}

/// Decides an enrolment list row by row against the directory as the earlier rows leave it:
/// every row registers its student (unless their fiscal code is registered already, as a
/// student) and enrols them in the named class. Every problem of every row is reported; nothing
/// is decided unless there is none.
fn enrol_list(
    state: &Directory,
    rows: &[EnrolmentRow],
) -> Result<Vec<DirectoryEvent>, DirectoryError> {
    let mut scratch = state.clone();
    let mut events = Vec::new();
    let mut problems = Vec::new();
    for row in rows {
        // Decided on the scratch directory in place: a row's registration is applied only once
        // its enrolment is sure to follow (the class exists, a new student is in no class).
        let step = |scratch: &mut Directory| -> Result<Vec<DirectoryEvent>, DirectoryError> {
            let class = scratch
                .class_by_name(&row.class)
                .ok_or(DirectoryError::UnknownClassName)?;
            let mut decided = Vec::new();
            let student = match scratch.by_fiscal_code(&row.fiscal_code) {
                Some(existing) if scratch.has_role(existing, Role::Student) => existing,
                Some(_) => return Err(DirectoryError::NotAStudent),
                None => {
                    let registered = decide(
                        scratch,
                        &DirectoryCommand::Register {
                            person: row.person,
                            fiscal_code: row.fiscal_code.clone(),
                            family_name: row.family_name.clone(),
                            given_name: row.given_name.clone(),
                            role: Role::Student,
                            birth_date: row.birth_date,
                        },
                    )?;
                    for e in &registered {
                        evolve(scratch, e);
                    }
                    decided.extend(registered);
                    row.person
                }
            };
            let enrolled = decide(scratch, &DirectoryCommand::EnrolStudent { student, class })?;
            for e in &enrolled {
                evolve(scratch, e);
            }
            decided.extend(enrolled);
            Ok(decided)
        };
        match step(&mut scratch) {
            Ok(decided) => events.extend(decided),
            Err(e) => problems.push(RowProblem {
                line: row.line,
                reason: e.to_string(),
            }),
        }
    }
    if problems.is_empty() {
        Ok(events)
    } else {
        Err(DirectoryError::BadRows(problems))
    }
}

/// Applies an event to the state. Events are facts: applying never fails.
pub fn evolve(state: &mut Directory, event: &DirectoryEvent) {
    use DirectoryEvent as E;
    match event {
        E::PersonRegistered {
            person,
            fiscal_code,
            family_name,
            given_name,
            role,
            birth_date,
        } => {
            state.by_code.insert(fiscal_code.clone(), *person);
            state.people.insert(
                *person,
                Person {
                    fiscal_code: fiscal_code.clone(),
                    family_name: family_name.clone(),
                    given_name: given_name.clone(),
                    roles: BTreeSet::from([*role]),
                    birth_date: *birth_date,
                },
            );
        }
        E::RoleGranted { person, role } => {
            if let Some(p) = state.people.get_mut(person) {
                p.roles.insert(*role);
            }
        }
        E::RoleRevoked { person, role } => {
            if let Some(p) = state.people.get_mut(person) {
                p.roles.remove(role);
            }
        }
        E::GuardianLinked { guardian, student } => {
            state.links.insert((*guardian, *student));
        }
        E::GuardianUnlinked { guardian, student } => {
            state.links.remove(&(*guardian, *student));
        }
        E::ClassCreated { class, name } => {
            state.classes.insert(
                *class,
                Class {
                    name: name.clone(),
                    ..Class::default()
                },
            );
        }
        E::TeacherAssigned {
            teacher,
            class,
            subject,
        } => {
            if let Some(c) = state.classes.get_mut(class) {
                c.teachers.insert((*teacher, subject.clone()));
            }
        }
        E::StudentEnrolled { student, class } => {
            if let Some(c) = state.classes.get_mut(class) {
                c.students.insert(*student);
                state.enrolment.insert(*student, *class);
            }
        }
        E::TimetableSet { class, hours } => {
            // Checked when decided, as the terms are.
            if let Ok(timetable) = Timetable::new(hours.clone()) {
                state.timetables.insert(*class, timetable);
            }
        }
        E::StudentTransferred { student, from, to } => {
            if let Some(c) = state.classes.get_mut(from) {
                c.students.remove(student);
            }
            if let Some(c) = state.classes.get_mut(to) {
                c.students.insert(*student);
                state.enrolment.insert(*student, *to);
            }
        }
        E::StudentWithdrawn { student, class, .. } => {
            if let Some(c) = state.classes.get_mut(class) {
                c.students.remove(student);
            }
            state.enrolment.remove(student);
        }
        E::CoordinatorAppointed { class, teacher } => {
            if let Some(c) = state.classes.get_mut(class) {
                c.coordinator = Some(*teacher);
            }
        }
        E::SubjectExemptionGranted { student, subject } => {
            state
                .exemptions
                .entry(*student)
                .or_default()
                .insert(subject.clone());
        }
        E::SubjectExemptionEnded { student, subject } => {
            if let Some(s) = state.exemptions.get_mut(student) {
                s.remove(subject);
            }
        }
        E::SchoolYearPlanned {
            year,
            terms,
            holidays,
        } => {
            // Checked when decided; an event that does not fit (never written by registro) is
            // left out rather than trusted.
            if let Ok(terms) = Terms::new(*year, terms.clone())
                .and_then(|t| t.with_holidays(holidays.iter().copied()))
            {
                state.calendars.insert(*year, terms);
            }
        }
        E::SubjectDefined { subject, scale } => {
            state.subjects.insert(subject.clone(), *scale);
        }
        E::JustificationSettingsSet {
            adults_justify_themselves,
            due_within_school_days,
        } => {
            state.justification_settings = JustificationSettings {
                adults_justify_themselves: *adults_justify_themselves,
                due_within_school_days: *due_within_school_days,
            };
        }
        E::ScrutinySettingsSet {
            max_subjects_to_recover,
        } => {
            state.scrutiny_settings = ScrutinySettings {
                max_subjects_to_recover: usize::from(*max_subjects_to_recover),
            };
        }
        E::RetentionSettingsSet { years_after } => {
            state.retention_settings = RetentionSettings {
                years_after: *years_after,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn define(subject: &str, scale: Scale) -> DirectoryCommand {
        DirectoryCommand::DefineSubject {
            subject: subject.into(),
            scale,
        }
    }
    use crate::StoredEvent as _;

    /// Synthetic codes: surname XXX, name YYY, born in "country" Z999 (none has that code).
    fn code(date: &str) -> FiscalCode {
        FiscalCode::with_check_character(&format!("XXXYYY{date}Z999")).unwrap()
    }

    fn register(person: PersonId, date: &str, role: Role) -> DirectoryCommand {
        DirectoryCommand::Register {
            person,
            fiscal_code: code(date),
            family_name: "Rossi".into(),
            given_name: "Anna".into(),
            role,
            birth_date: None,
        }
    }

    /// Given these commands (each must succeed), when `command`, then the result.
    fn given_when(
        given: &[DirectoryCommand],
        command: &DirectoryCommand,
    ) -> Result<Vec<DirectoryEvent>, DirectoryError> {
        let mut state = Directory::default();
        for c in given {
            for e in decide(&state, c).expect("the given commands succeed") {
                evolve(&mut state, &e);
            }
        }
        decide(&state, command)
    }

    #[test]
    fn a_person_is_registered_with_clean_names() {
        let p = PersonId::new();
        let mut cmd = register(p, "80A01", Role::Teacher);
        if let DirectoryCommand::Register {
            family_name,
            given_name,
            ..
        } = &mut cmd
        {
            *family_name = "  De   Luca ".into();
            *given_name = "Maria Grazia".into();
        }
        assert_eq!(
            given_when(&[], &cmd),
            Ok(vec![DirectoryEvent::PersonRegistered {
                person: p,
                fiscal_code: code("80A01"),
                family_name: "De Luca".into(),
                given_name: "Maria Grazia".into(),
                role: Role::Teacher,
                birth_date: None,
            }])
        );
    }

    #[test]
    fn a_fiscal_code_is_registered_once_and_an_omocodic_variant_is_another_person() {
        let first = PersonId::new();
        let again = register(PersonId::new(), "80A01", Role::Guardian);
        let given = [register(first, "80A01", Role::Teacher)];
        assert_eq!(
            given_when(&given, &again),
            Err(DirectoryError::FiscalCodeTaken { existing: first })
        );
        // The agency gives the second person born with the same code a variant of it: they
        // are someone else, registered and found under their own code.
        let variant = FiscalCode::with_check_character("XXXYYY80A01Z99V").unwrap();
        let second = PersonId::new();
        let omocodic = DirectoryCommand::Register {
            person: second,
            fiscal_code: variant.clone(),
            family_name: "Rossi".into(),
            given_name: "Anna".into(),
            role: Role::Guardian,
            birth_date: None,
        };
        let mut state = Directory::default();
        for c in given.iter().chain([&omocodic]) {
            for e in decide(&state, c).unwrap() {
                evolve(&mut state, &e);
            }
        }
        assert_eq!(state.by_fiscal_code(&code("80A01")), Some(first));
        assert_eq!(state.by_fiscal_code(&variant), Some(second));
    }

    #[test]
    fn registration_refuses_reused_ids_bad_names_and_the_system_role() {
        let p = PersonId::new();
        assert_eq!(
            given_when(
                &[register(p, "80A01", Role::Teacher)],
                &register(p, "81A01", Role::Teacher)
            ),
            Err(DirectoryError::AlreadyRegistered)
        );
        assert_eq!(
            given_when(&[], &register(p, "80A01", Role::System)),
            Err(DirectoryError::NotAPersonRole)
        );
        let mut blank = register(p, "80A01", Role::Teacher);
        if let DirectoryCommand::Register { given_name, .. } = &mut blank {
            *given_name = "   ".into();
        }
        assert_eq!(given_when(&[], &blank), Err(DirectoryError::BadName));
    }

    #[test]
    fn a_teacher_can_also_be_a_parent_at_the_same_school() {
        let p = PersonId::new();
        let given = [register(p, "80A01", Role::Teacher)];
        let grant = DirectoryCommand::GrantRole {
            person: p,
            role: Role::Guardian,
        };
        assert_eq!(
            given_when(&given, &grant),
            Ok(vec![DirectoryEvent::RoleGranted {
                person: p,
                role: Role::Guardian
            }])
        );
        let twice = [register(p, "80A01", Role::Teacher), grant.clone()];
        assert_eq!(given_when(&twice, &grant), Err(DirectoryError::RoleHeld));
        let revoke = DirectoryCommand::RevokeRole {
            person: p,
            role: Role::Admin,
        };
        assert_eq!(
            given_when(&twice, &revoke),
            Err(DirectoryError::RoleNotHeld)
        );
        let unknown = DirectoryCommand::GrantRole {
            person: PersonId::new(),
            role: Role::Teacher,
        };
        assert!(matches!(
            given_when(&twice, &unknown),
            Err(DirectoryError::UnknownPerson(_))
        ));
    }

    #[test]
    fn separated_parents_each_link_to_their_child() {
        let (mother, father, child) = (PersonId::new(), PersonId::new(), PersonId::new());
        let given = [
            register(mother, "75M45", Role::Guardian),
            register(father, "74C10", Role::Guardian),
            register(child, "12A41", Role::Student),
            DirectoryCommand::LinkGuardian {
                guardian: mother,
                student: child,
            },
        ];
        let link_father = DirectoryCommand::LinkGuardian {
            guardian: father,
            student: child,
        };
        assert_eq!(
            given_when(&given, &link_father),
            Ok(vec![DirectoryEvent::GuardianLinked {
                guardian: father,
                student: child
            }])
        );
        assert_eq!(
            given_when(&given, &given[3]),
            Err(DirectoryError::AlreadyLinked)
        );

        // The state answers who is linked to whom.
        let mut state = Directory::default();
        for c in given.iter().chain([&link_father]) {
            for e in decide(&state, c).unwrap() {
                evolve(&mut state, &e);
            }
        }
        assert!(state.is_linked(mother, child) && state.is_linked(father, child));
        assert_eq!(state.students_of(mother).collect::<Vec<_>>(), vec![child]);
        assert_eq!(state.by_fiscal_code(&code("12A41")), Some(child));

        // A court order ends the father's link; the mother's stays.
        let unlink = DirectoryCommand::UnlinkGuardian {
            guardian: father,
            student: child,
        };
        for e in decide(&state, &unlink).unwrap() {
            evolve(&mut state, &e);
        }
        assert!(!state.is_linked(father, child) && state.is_linked(mother, child));
        assert_eq!(decide(&state, &unlink), Err(DirectoryError::NotLinked));
    }

    #[test]
    fn only_a_guardian_links_to_a_student() {
        let (teacher, student, guardian) = (PersonId::new(), PersonId::new(), PersonId::new());
        let given = [
            register(teacher, "70A01", Role::Teacher),
            register(student, "10A01", Role::Student),
            register(guardian, "71A01", Role::Guardian),
        ];
        for (g, s) in [
            (teacher, student),
            (guardian, teacher),
            (guardian, guardian),
        ] {
            let cmd = DirectoryCommand::LinkGuardian {
                guardian: g,
                student: s,
            };
            assert_eq!(
                given_when(&given, &cmd),
                Err(DirectoryError::NotGuardianAndStudent),
                "{g:?} {s:?}"
            );
        }
    }

    #[test]
    fn events_are_stored_with_their_type_and_fields() {
        let p = PersonId::new();
        let e = DirectoryEvent::RoleGranted {
            person: p,
            role: Role::Auditor,
        };
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["type"], e.type_name());
        assert_eq!(json["data"]["role"], "auditor");
        assert_eq!(serde_json::from_value::<DirectoryEvent>(json).unwrap(), e);
    }

    #[test]
    fn classes_take_assigned_teachers_and_enrolled_students() {
        let (teacher, student, class) = (PersonId::new(), PersonId::new(), ClassId::new());
        let given = [
            register(teacher, "70A01", Role::Teacher),
            register(student, "10A01", Role::Student),
            DirectoryCommand::CreateClass {
                class,
                name: "3A  liceo".into(),
            },
        ];
        let assign = DirectoryCommand::AssignTeacher {
            teacher,
            class,
            subject: "Matematica".into(),
        };
        let enrol = DirectoryCommand::EnrolStudent { student, class };
        let mut state = Directory::default();
        for c in &given {
            for e in decide(&state, c).unwrap() {
                evolve(&mut state, &e);
            }
        }
        // Only a subject the school defined is taught.
        assert_eq!(
            decide(&state, &assign),
            Err(DirectoryError::UnknownSubject("Matematica".into()))
        );
        let maths = define("Matematica", Scale::Numeric);
        assert_eq!(
            decide(&state, &maths),
            Ok(vec![DirectoryEvent::SubjectDefined {
                subject: "Matematica".into(),
                scale: Scale::Numeric
            }])
        );
        for c in [&maths, &assign, &enrol] {
            for e in decide(&state, c).unwrap() {
                evolve(&mut state, &e);
            }
        }
        assert_eq!(state.class(class).unwrap().name, "3A liceo");
        assert!(state.teaches_class(teacher, class));
        assert!(state.teaches_student(teacher, student));
        assert_eq!(state.class_of(student), Some(class));
        assert_eq!(state.classes_of(teacher).collect::<Vec<_>>(), vec![class]);
        assert_eq!(
            decide(&state, &assign),
            Err(DirectoryError::AlreadyAssigned)
        );
        assert_eq!(decide(&state, &enrol), Err(DirectoryError::AlreadyEnrolled));
        // Another subject in the same class is another assignment.
        let physics = DirectoryCommand::AssignTeacher {
            teacher,
            class,
            subject: "Fisica".into(),
        };
        for e in decide(&state, &define("Fisica", Scale::Numeric)).unwrap() {
            evolve(&mut state, &e);
        }
        assert!(decide(&state, &physics).is_ok());
    }

    #[test]
    fn class_commands_check_names_roles_and_existence() {
        let (teacher, student, class) = (PersonId::new(), PersonId::new(), ClassId::new());
        let given = [
            register(teacher, "70A01", Role::Teacher),
            register(student, "10A01", Role::Student),
            DirectoryCommand::CreateClass {
                class,
                name: "3A".into(),
            },
        ];
        let same_name = DirectoryCommand::CreateClass {
            class: ClassId::new(),
            name: "3a".into(),
        };
        assert_eq!(
            given_when(&given, &same_name),
            Err(DirectoryError::ClassNameTaken)
        );
        assert_eq!(
            given_when(&given, &given[2]),
            Err(DirectoryError::ClassExists)
        );
        let nowhere = ClassId::new();
        assert_eq!(
            given_when(
                &given,
                &DirectoryCommand::EnrolStudent {
                    student,
                    class: nowhere
                }
            ),
            Err(DirectoryError::UnknownClass(nowhere))
        );
        assert_eq!(
            given_when(
                &given,
                &DirectoryCommand::EnrolStudent {
                    student: teacher,
                    class
                }
            ),
            Err(DirectoryError::NotAStudent)
        );
        assert_eq!(
            given_when(
                &given,
                &DirectoryCommand::AssignTeacher {
                    teacher: student,
                    class,
                    subject: "Storia".into()
                }
            ),
            Err(DirectoryError::NotATeacher)
        );
        assert_eq!(
            given_when(
                &given,
                &DirectoryCommand::AssignTeacher {
                    teacher,
                    class,
                    subject: " ".into()
                }
            ),
            Err(DirectoryError::BadName)
        );
    }

    #[test]
    fn every_event_round_trips_through_its_stored_form() {
        let (p, c) = (PersonId::new(), ClassId::new());
        let events = [
            DirectoryEvent::PersonRegistered {
                person: p,
                fiscal_code: code("80A01"),
                family_name: "Rossi".into(),
                given_name: "Anna".into(),
                role: Role::Teacher,
                birth_date: None,
            },
            DirectoryEvent::RoleGranted {
                person: p,
                role: Role::Guardian,
            },
            DirectoryEvent::RoleRevoked {
                person: p,
                role: Role::Guardian,
            },
            DirectoryEvent::GuardianLinked {
                guardian: p,
                student: p,
            },
            DirectoryEvent::GuardianUnlinked {
                guardian: p,
                student: p,
            },
            DirectoryEvent::ClassCreated {
                class: c,
                name: "3A".into(),
            },
            DirectoryEvent::TeacherAssigned {
                teacher: p,
                class: c,
                subject: "Latino".into(),
            },
            DirectoryEvent::StudentEnrolled {
                student: p,
                class: c,
            },
            DirectoryEvent::SchoolYearPlanned {
                year: SchoolYear::starting(2025),
                terms: vec![Term {
                    name: "trimestre".into(),
                    start: time::macros::date!(2025 - 09 - 15),
                    end: time::macros::date!(2025 - 12 - 20),
                }],
                holidays: vec![time::macros::date!(2025 - 12 - 08)],
            },
            DirectoryEvent::TimetableSet {
                class: c,
                hours: vec![LessonHour {
                    weekday: time::Weekday::Monday,
                    number: 1,
                    start: time::macros::time!(8:00),
                    end: time::macros::time!(9:00),
                    subject: "Italiano".into(),
                    teacher: None,
                }],
            },
            DirectoryEvent::SubjectExemptionGranted {
                student: p,
                subject: "Religione".into(),
            },
            DirectoryEvent::SubjectExemptionEnded {
                student: p,
                subject: "Religione".into(),
            },
            DirectoryEvent::StudentTransferred {
                student: p,
                from: c,
                to: c,
            },
            DirectoryEvent::StudentWithdrawn {
                student: p,
                class: c,
                reason: "nulla osta".into(),
            },
            DirectoryEvent::CoordinatorAppointed {
                class: c,
                teacher: p,
            },
            DirectoryEvent::JustificationSettingsSet {
                adults_justify_themselves: false,
                due_within_school_days: 3,
            },
            DirectoryEvent::SubjectDefined {
                subject: "Religione".into(),
                scale: Scale::Judgement,
            },
            DirectoryEvent::ScrutinySettingsSet {
                max_subjects_to_recover: 4,
            },
            DirectoryEvent::RetentionSettingsSet { years_after: 3 },
        ];
        assert_eq!(events.len(), DirectoryEvent::TYPE_NAMES.len());
        for (e, name) in events.iter().zip(DirectoryEvent::TYPE_NAMES) {
            assert_eq!(e.type_name(), name);
            assert_eq!(
                DirectoryEvent::from_stored(name, &e.data()).unwrap(),
                *e,
                "{name}"
            );
        }
    }

    #[test]
    fn a_school_year_is_planned_with_checked_terms_and_planned_again_to_change_them() {
        use time::macros::date;
        let year = SchoolYear::starting(2025);
        let term = |name: &str, start, end| Term {
            name: name.into(),
            start,
            end,
        };
        let plan = DirectoryCommand::PlanSchoolYear {
            year,
            terms: vec![
                term("trimestre", date!(2025 - 09 - 15), date!(2025 - 12 - 20)),
                term("pentamestre", date!(2026 - 01 - 07), date!(2026 - 06 - 10)),
            ],
            holidays: vec![date!(2025 - 12 - 08), date!(2025 - 11 - 01)],
        };
        let mut state = Directory::default();
        for e in decide(&state, &plan).unwrap() {
            evolve(&mut state, &e);
        }
        // Holidays are kept in order, and must fall in the year.
        let planned = state.terms(year).unwrap();
        assert_eq!(
            planned.holidays().collect::<Vec<_>>(),
            [date!(2025 - 11 - 01), date!(2025 - 12 - 08)]
        );
        assert!(planned.is_holiday(date!(2025 - 12 - 08)));
        assert!(!planned.is_holiday(date!(2025 - 12 - 09)));
        let stray = DirectoryCommand::PlanSchoolYear {
            year,
            terms: vec![term("anno", date!(2025 - 09 - 15), date!(2026 - 06 - 10))],
            holidays: vec![date!(2026 - 09 - 01)],
        };
        assert_eq!(
            decide(&state, &stray),
            Err(DirectoryError::Calendar(CalendarError::Holidays))
        );
        let terms = state.terms(year).unwrap();
        assert_eq!(
            terms.term_of(date!(2026 - 03 - 02)).unwrap().1.name,
            "pentamestre"
        );
        assert!(state.terms(SchoolYear::starting(2026)).is_none());
        let overlapping = DirectoryCommand::PlanSchoolYear {
            year,
            terms: vec![
                term("a", date!(2025 - 09 - 15), date!(2026 - 01 - 31)),
                term("b", date!(2026 - 01 - 31), date!(2026 - 06 - 10)),
            ],
            holidays: vec![],
        };
        assert!(matches!(
            decide(&state, &overlapping),
            Err(DirectoryError::Calendar(CalendarError::Overlap(..)))
        ));
        let replanned = DirectoryCommand::PlanSchoolYear {
            year,
            terms: vec![term("anno", date!(2025 - 09 - 15), date!(2026 - 06 - 10))],
            holidays: vec![],
        };
        for e in decide(&state, &replanned).unwrap() {
            evolve(&mut state, &e);
        }
        assert_eq!(state.terms(year).unwrap().terms().len(), 1);
    }

    #[test]
    fn rule_1_a_student_is_exempted_from_a_subject_and_the_exemption_ends() {
        let student = PersonId::new();
        let given = [register(student, "10A01", Role::Student)];
        let exempt = DirectoryCommand::ExemptFromSubject {
            student,
            subject: "Religione".into(),
        };
        let end = DirectoryCommand::EndExemption {
            student,
            subject: "Religione".into(),
        };
        let mut state = Directory::default();
        for c in &given {
            for e in decide(&state, c).unwrap() {
                evolve(&mut state, &e);
            }
        }
        assert_eq!(
            decide(&state, &exempt),
            Err(DirectoryError::UnknownSubject("Religione".into()))
        );
        let religion = define("Religione", Scale::Judgement);
        for c in [&religion, &exempt] {
            for e in decide(&state, c).unwrap() {
                evolve(&mut state, &e);
            }
        }
        assert_eq!(
            state.exempt_subjects(student),
            BTreeSet::from(["Religione".to_owned()])
        );
        assert_eq!(decide(&state, &exempt), Err(DirectoryError::AlreadyExempt));
        for e in decide(&state, &end).unwrap() {
            evolve(&mut state, &e);
        }
        assert!(state.exempt_subjects(student).is_empty());
        assert_eq!(decide(&state, &end), Err(DirectoryError::NotExempt));
        // Only students are exempted.
        let teacher = PersonId::new();
        assert_eq!(
            given_when(
                &[register(teacher, "70A01", Role::Teacher)],
                &DirectoryCommand::ExemptFromSubject {
                    student: teacher,
                    subject: "Religione".into()
                }
            ),
            Err(DirectoryError::NotAStudent)
        );
    }

    #[test]
    fn an_enrolment_list_applies_whole_or_reports_every_bad_line() {
        let class = ClassId::new();
        let known = PersonId::new();
        let teacher = PersonId::new();
        let given = [
            DirectoryCommand::CreateClass {
                class,
                name: "1A".into(),
            },
            register(known, "11A01", Role::Student),
            register(teacher, "70A01", Role::Teacher),
        ];
        let mut state = Directory::default();
        for c in &given {
            for e in decide(&state, c).unwrap() {
                evolve(&mut state, &e);
            }
        }
        let row = |line, date: &str, class: &str| EnrolmentRow {
            line,
            person: PersonId::new(),
            fiscal_code: code(date),
            family_name: "Verdi".into(),
            given_name: "Luca".into(),
            birth_date: None,
            class: class.into(),
        };
        // A new student, and one registered already: both enrolled.
        let good = DirectoryCommand::EnrolList {
            rows: vec![row(2, "12A01", "1a"), row(3, "11A01", "1A")],
        };
        let events = decide(&state, &good).unwrap();
        assert_eq!(
            events
                .iter()
                .map(DirectoryEvent::type_name)
                .collect::<Vec<_>>(),
            ["PersonRegistered", "StudentEnrolled", "StudentEnrolled"]
        );
        // Every bad line is named, and nothing is decided.
        let bad = DirectoryCommand::EnrolList {
            rows: vec![
                row(2, "12A01", "1A"),
                row(3, "12A01", "1A"), // the same student twice
                row(4, "13A01", "9Z"), // no such class
                row(5, "70A01", "1A"), // a teacher's code
            ],
        };
        let Err(DirectoryError::BadRows(problems)) = decide(&state, &bad) else {
            panic!("refused")
        };
        assert_eq!(
            problems.iter().map(|p| p.line).collect::<Vec<_>>(),
            [3, 4, 5]
        );
        assert!(problems[0].reason.contains("iscritto"), "{problems:?}");
        assert!(problems[1].reason.contains("classe"), "{problems:?}");
    }

    #[test]
    fn students_move_between_classes_and_leave_and_classes_get_a_coordinator() {
        let (student, teacher, a, b) = (
            PersonId::new(),
            PersonId::new(),
            ClassId::new(),
            ClassId::new(),
        );
        let mut state = Directory::default();
        let run = |c: DirectoryCommand, state: &mut Directory| -> Result<(), DirectoryError> {
            for e in decide(state, &c)? {
                evolve(state, &e);
            }
            Ok(())
        };
        run(register(student, "10A01", Role::Student), &mut state).unwrap();
        run(register(teacher, "70A01", Role::Teacher), &mut state).unwrap();
        for (class, name) in [(a, "1A"), (b, "1B")] {
            run(
                DirectoryCommand::CreateClass {
                    class,
                    name: name.into(),
                },
                &mut state,
            )
            .unwrap();
        }
        let transfer = DirectoryCommand::TransferStudent { student, class: b };
        assert_eq!(
            run(transfer.clone(), &mut state),
            Err(DirectoryError::NotEnrolled)
        );
        run(
            DirectoryCommand::EnrolStudent { student, class: a },
            &mut state,
        )
        .unwrap();
        run(transfer.clone(), &mut state).unwrap();
        assert_eq!(state.class_of(student), Some(b));
        assert!(!state.class(a).unwrap().students.contains(&student));
        assert_eq!(run(transfer, &mut state), Err(DirectoryError::SameClass));
        run(
            DirectoryCommand::WithdrawStudent {
                student,
                reason: "nulla osta verso altro istituto".into(),
            },
            &mut state,
        )
        .unwrap();
        assert_eq!(state.class_of(student), None);
        assert!(state.person(student).is_some(), "they stay in the history");
        // The coordinator teaches in the class.
        let appoint = DirectoryCommand::AppointCoordinator { class: a, teacher };
        assert_eq!(
            run(appoint.clone(), &mut state),
            Err(DirectoryError::NotTheClassTeacher)
        );
        run(define("Latino", Scale::Numeric), &mut state).unwrap();
        assert_eq!(
            run(define(" Latino ", Scale::Numeric), &mut state),
            Err(DirectoryError::SubjectExists)
        );
        run(
            DirectoryCommand::AssignTeacher {
                teacher,
                class: a,
                subject: "Latino".into(),
            },
            &mut state,
        )
        .unwrap();
        run(appoint, &mut state).unwrap();
        assert_eq!(state.class(a).unwrap().coordinator, Some(teacher));
    }

    #[test]
    fn rule_5_the_school_sets_its_justification_rules_within_bounds() {
        let mut dir = Directory::default();
        assert_eq!(
            dir.justification_settings(),
            JustificationSettings::default()
        );
        let set = |adults, days| DirectoryCommand::SetJustificationSettings {
            settings: JustificationSettings {
                adults_justify_themselves: adults,
                due_within_school_days: days,
            },
        };
        for days in [0, MAX_DUE_DAYS + 1] {
            assert_eq!(
                decide(&dir, &set(true, days)).unwrap_err(),
                DirectoryError::BadDueDays
            );
        }
        for e in decide(&dir, &set(false, 10)).unwrap() {
            evolve(&mut dir, &e);
        }
        assert_eq!(
            dir.justification_settings(),
            JustificationSettings {
                adults_justify_themselves: false,
                due_within_school_days: 10,
            }
        );
    }

    #[test]
    fn rule_4_the_school_sets_how_many_subjects_a_suspended_judgement_may_leave() {
        let mut dir = Directory::default();
        assert_eq!(dir.scrutiny_settings().max_subjects_to_recover, 3);
        let set = |max| DirectoryCommand::SetScrutinySettings {
            settings: ScrutinySettings {
                max_subjects_to_recover: max,
            },
        };
        for max in [0, usize::from(MAX_SUBJECTS_TO_RECOVER) + 1, 300] {
            assert_eq!(
                decide(&dir, &set(max)).unwrap_err(),
                DirectoryError::BadMaxSubjects
            );
        }
        for e in decide(&dir, &set(4)).unwrap() {
            evolve(&mut dir, &e);
        }
        assert_eq!(dir.scrutiny_settings().max_subjects_to_recover, 4);
    }

    #[test]
    fn rule_7_the_school_sets_how_long_it_keeps_special_category_details() {
        let mut dir = Directory::default();
        assert_eq!(dir.retention_settings().years_after, 2);
        let set = |years_after| DirectoryCommand::SetRetentionSettings {
            settings: RetentionSettings { years_after },
        };
        assert_eq!(
            decide(&dir, &set(MAX_YEARS_AFTER + 1)).unwrap_err(),
            DirectoryError::BadRetention
        );
        for e in decide(&dir, &set(0)).unwrap() {
            evolve(&mut dir, &e);
        }
        assert_eq!(dir.retention_settings().years_after, 0);
    }
}
