//! Communications (comunicazioni): circulars (circolari, numbered per school year) and notices
//! (avvisi) to an audience of families, students or staff, with attachments (allegati) named by
//! their content hash, a read receipt (presa visione) and, where asked, a consent (adesione, e.g.
//! to a school trip) with a deadline.
//!
//! Two kinds of stream: the school's `communications` catalogue holds what was published and
//! withdrawn (a few events a day, and the circulars' numbering is a local invariant there);
//! each communication's `communication-<id>` stream holds its receipts and consents, so that a
//! thousand families acknowledging one circular contend only with each other, never with new
//! publications.
//!
//! The audience is kept as published (groups and classes) and resolved against the directory
//! when it is read: a student who joins a class after a notice to its families was published
//! finds it, as they would on the class's notice board.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use time::{Date, OffsetDateTime};

use crate::calendar::SchoolYear;
use crate::directory::Directory;
use crate::justification::is_adult_on;
use crate::{ClassId, CommunicationId, ContentHash, PersonId, Role};

/// The school's catalogue of communications.
pub const CATALOGUE_STREAM: &str = "communications";

/// The most attachments one communication carries.
pub const MAX_ATTACHMENTS: usize = 10;
/// The longest title, in characters.
pub const MAX_TITLE: usize = 200;
/// The longest text, in characters.
pub const MAX_BODY: usize = 20_000;

/// The stream of one communication's receipts and consents.
#[must_use]
pub fn replies_stream(communication: CommunicationId) -> String {
    format!("communication-{communication}")
}

/// What a communication is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Circolare: an official act of the school, numbered per school year; the principal's or
    /// the office's.
    Circular,
    /// Avviso: a notice, from the office or from a teacher to the families or students of the
    /// classes they teach.
    Notice,
}

/// A group of people a communication is addressed to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Group {
    /// The guardians of the students (famiglie).
    Families,
    /// The students.
    Students,
    /// The staff: teachers, the office, the principal (personale).
    Staff,
}

/// Who a communication is addressed to: some groups, of the whole school or of some classes
/// (for staff: the teachers of those classes).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Audience {
    /// The groups.
    pub groups: BTreeSet<Group>,
    /// The classes; none means the whole school.
    pub classes: BTreeSet<ClassId>,
}

impl Audience {
    /// Whether the audience covers `student`'s class (every enrolled student, school-wide).
    fn covers_student(&self, dir: &Directory, student: PersonId) -> bool {
        dir.class_of(student)
            .is_some_and(|c| self.classes.is_empty() || self.classes.contains(&c))
    }

    /// Whether `person` is addressed by the audience, as the directory stands.
    #[must_use]
    pub fn reaches(&self, dir: &Directory, person: PersonId) -> bool {
        self.groups.iter().any(|group| match group {
            Group::Families => {
                dir.has_role(person, Role::Guardian)
                    && dir.students_of(person).any(|s| self.covers_student(dir, s))
            }
            Group::Students => {
                dir.has_role(person, Role::Student) && self.covers_student(dir, person)
            }
            Group::Staff => {
                if self.classes.is_empty() {
                    [Role::Principal, Role::Secretary, Role::Teacher]
                        .into_iter()
                        .any(|r| dir.has_role(person, r))
                } else {
                    dir.has_role(person, Role::Teacher)
                        && self.classes.iter().any(|c| dir.teaches_class(person, *c))
                }
            }
        })
    }

    /// The students the communication is about, for consent: the enrolled students of its
    /// classes (or of the school), when it is addressed to families or students.
    pub fn students<'a>(&'a self, dir: &'a Directory) -> impl Iterator<Item = PersonId> + 'a {
        let concerned =
            self.groups.contains(&Group::Families) || self.groups.contains(&Group::Students);
        dir.enrolled_students()
            .filter(move |s| concerned && self.covers_student(dir, *s))
    }
}

/// An attachment as a communication names it: the file is stored apart, under its hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// The SHA-256 of its bytes.
    pub hash: ContentHash,
    /// Its file name, as shown (`gita-firenze.pdf`).
    pub name: String,
    /// Its media type (`application/pdf`).
    pub media_type: String,
    /// Its size in bytes.
    pub size: u64,
}

/// A consent (adesione) answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Consent {
    /// Aderisce: yes.
    Given,
    /// Non aderisce: no.
    Refused,
}

/// What staff ask of the catalogue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CatalogueCommand {
    /// Publish a communication.
    Publish {
        /// The new communication's id.
        communication: CommunicationId,
        /// Circular or notice.
        kind: Kind,
        /// Its title (oggetto).
        title: String,
        /// Its text.
        body: String,
        /// Who it is for.
        audience: Audience,
        /// Its attachments, already stored.
        attachments: Vec<Attachment>,
        /// When consent is asked, the last day to answer.
        #[serde(with = "crate::iso_date::option")]
        consent_deadline: Option<Date>,
    },
    /// Withdraw (annullare) a communication, with a reason: it stays readable, marked so, and
    /// takes no more receipts or consents.
    Withdraw {
        /// The communication.
        communication: CommunicationId,
        /// Why.
        reason: String,
    },
}

/// What happened in the catalogue. Stored as events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum CatalogueEvent {
    /// A communication was published.
    CommunicationPublished {
        /// The communication.
        communication: CommunicationId,
        /// Circular or notice.
        kind: Kind,
        /// A circular's number in its school year; none for a notice.
        number: Option<u32>,
        /// Its title.
        title: String,
        /// Its text.
        body: String,
        /// Who it is for.
        audience: Audience,
        /// Its attachments.
        attachments: Vec<Attachment>,
        /// When consent is asked, the last day to answer.
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            with = "crate::iso_date::option"
        )]
        consent_deadline: Option<Date>,
        /// Its date.
        #[serde(with = "crate::iso_date")]
        date: Date,
        /// Who published it.
        author: PersonId,
    },
    /// A communication was withdrawn.
    CommunicationWithdrawn {
        /// The communication.
        communication: CommunicationId,
        /// Why.
        reason: String,
    },
}

impl crate::StoredEvent for CatalogueEvent {}

impl CatalogueEvent {
    /// Every event type name, as stored.
    pub const TYPE_NAMES: [&'static str; 2] = ["CommunicationPublished", "CommunicationWithdrawn"];

    /// The event's type name, as stored.
    #[must_use]
    pub const fn type_name(&self) -> &'static str {
        match self {
            Self::CommunicationPublished { .. } => Self::TYPE_NAMES[0],
            Self::CommunicationWithdrawn { .. } => Self::TYPE_NAMES[1],
        }
    }
}

/// What a recipient asks of one communication.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ReplyCommand {
    /// Presa visione: the caller has read it.
    Acknowledge,
    /// Answer the consent asked, for a student: their guardian while a minor, the student once
    /// of age. A later answer before the deadline replaces an earlier one.
    AnswerConsent {
        /// The student.
        student: PersonId,
        /// Yes or no.
        consent: Consent,
    },
}

/// What happened on one communication. Stored as events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum ReplyEvent {
    /// Presa visione: a recipient read it.
    CommunicationAcknowledged {
        /// The communication.
        communication: CommunicationId,
        /// Who read it.
        reader: PersonId,
    },
    /// Adesione: a consent was answered for a student.
    ConsentAnswered {
        /// The communication.
        communication: CommunicationId,
        /// The student.
        student: PersonId,
        /// Who answered.
        by: PersonId,
        /// Yes or no.
        consent: Consent,
    },
}

impl crate::StoredEvent for ReplyEvent {}

impl ReplyEvent {
    /// Every event type name, as stored.
    pub const TYPE_NAMES: [&'static str; 2] = ["CommunicationAcknowledged", "ConsentAnswered"];

    /// The event's type name, as stored.
    #[must_use]
    pub const fn type_name(&self) -> &'static str {
        match self {
            Self::CommunicationAcknowledged { .. } => Self::TYPE_NAMES[0],
            Self::ConsentAnswered { .. } => Self::TYPE_NAMES[1],
        }
    }
}

/// Why a command was refused. Shown to staff and families, in Italian.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommunicationError {
    /// Circulars and communications to the staff or the whole school are the office's.
    #[error(
        "circolari e comunicazioni al personale o a tutta la scuola sono del dirigente o della \
         segreteria"
    )]
    NotYours,
    /// A teacher writes only to the classes they teach.
    #[error("un docente scrive solo alle classi in cui insegna")]
    NotYourClass,
    /// A class of the audience does not exist.
    #[error("classe sconosciuta")]
    UnknownClass,
    /// No group, or consent asked of the staff.
    #[error("destinatari non validi: almeno un gruppo; l'adesione si chiede a famiglie o studenti")]
    BadAudience,
    /// Title or text missing or too long.
    #[error("oggetto (fino a {MAX_TITLE} caratteri) e testo (fino a {MAX_BODY}) sono obbligatori")]
    Text,
    /// Too many attachments, a repeated one, or a bad file name.
    #[error(
        "allegati non validi: al massimo {MAX_ATTACHMENTS}, senza ripetizioni, con un nome di file \
         (senza / o \\) fino a 200 caratteri"
    )]
    BadAttachments,
    /// The consent deadline is past.
    #[error("il termine per l'adesione è già passato")]
    PastDeadline,
    /// The id is used already.
    #[error("questa comunicazione esiste già")]
    Exists,
    /// No such communication (or not addressed to the caller).
    #[error("comunicazione sconosciuta")]
    Unknown,
    /// Withdrawn already.
    #[error("la comunicazione è stata annullata")]
    Withdrawn,
    /// Only its author or the principal withdraws it.
    #[error("solo chi l'ha pubblicata o il dirigente può annullare la comunicazione")]
    NotTheAuthor,
    /// A reason is required.
    #[error("serve una motivazione (fino a 500 caratteri)")]
    Reason,
    /// Read already.
    #[error("la presa visione è già registrata")]
    AlreadyAcknowledged,
    /// No consent was asked.
    #[error("questa comunicazione non chiede un'adesione")]
    NoConsentAsked,
    /// The deadline has passed.
    #[error("il termine per l'adesione è scaduto")]
    DeadlinePassed,
    /// The student is not among those the communication is about.
    #[error("lo studente non è tra i destinatari della comunicazione")]
    NotConcerned,
    /// The caller does not answer for this student.
    #[error(
        "l'adesione è data da un genitore o tutore dello studente minorenne, o dallo studente \
         maggiorenne"
    )]
    NotYourStudent,
}

/// One published communication as it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Communication {
    /// Circular or notice.
    pub kind: Kind,
    /// A circular's number in its school year.
    pub number: Option<u32>,
    /// Its title.
    pub title: String,
    /// Its text.
    pub body: String,
    /// Who it is for.
    pub audience: Audience,
    /// Its attachments.
    pub attachments: Vec<Attachment>,
    /// When consent is asked, the last day to answer.
    pub consent_deadline: Option<Date>,
    /// Its date.
    pub date: Date,
    /// Who published it.
    pub author: PersonId,
    /// Why it was withdrawn, if it was.
    pub withdrawn: Option<String>,
}

impl Communication {
    /// Whether `person`, holding `roles`, may read it: the principal and the office read every
    /// one; its author; the people it reaches; the teachers of the classes it is addressed to.
    #[must_use]
    pub fn visible_to(&self, dir: &Directory, person: PersonId, roles: &BTreeSet<Role>) -> bool {
        roles.contains(&Role::Principal)
            || roles.contains(&Role::Secretary)
            || self.author == person
            || self.audience.reaches(dir, person)
            || (roles.contains(&Role::Teacher)
                && self
                    .audience
                    .classes
                    .iter()
                    .any(|c| dir.teaches_class(person, *c)))
    }
}

/// The school's communications.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Catalogue {
    communications: BTreeMap<CommunicationId, Communication>,
    /// How many circulars each school year has.
    circulars: BTreeMap<SchoolYear, u32>,
}

impl Catalogue {
    /// One communication.
    #[must_use]
    pub fn get(&self, id: CommunicationId) -> Option<&Communication> {
        self.communications.get(&id)
    }

    /// Every communication, oldest first (ids are time-ordered).
    pub fn all(&self) -> impl DoubleEndedIterator<Item = (CommunicationId, &Communication)> {
        self.communications.iter().map(|(id, c)| (*id, c))
    }
}

/// The facts a catalogue decision needs from outside its stream.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// Who acts.
    pub actor: PersonId,
    /// In which role the policy let them.
    pub role: Role,
    /// Today.
    pub today: Date,
    /// The school directory, now.
    pub directory: &'a Directory,
}

fn valid_file_name(name: &str) -> bool {
    let n = name.chars().count();
    n > 0
        && n <= 200
        && name.trim() == name
        && !name
            .chars()
            .any(|c| c == '/' || c == '\\' || c.is_control())
        && name != "."
        && name != ".."
}

/// Decides what a catalogue command means. Pure: no clock, no IO.
///
/// # Errors
/// [`CommunicationError`] when the command breaks a rule; nothing is to be written then.
pub fn decide(
    state: &Catalogue,
    command: &CatalogueCommand,
    ctx: &Context<'_>,
) -> Result<Vec<CatalogueEvent>, CommunicationError> {
    use CommunicationError as Err;
    let office = matches!(ctx.role, Role::Principal | Role::Secretary);
    match command {
        CatalogueCommand::Publish {
            communication,
            kind,
            title,
            body,
            audience,
            attachments,
            consent_deadline,
        } => {
            if !office && !matches!(ctx.role, Role::Teacher) {
                return Err(Err::NotYours);
            }
            if state.communications.contains_key(communication) {
                return Err(Err::Exists);
            }
            if audience.groups.is_empty()
                || (consent_deadline.is_some()
                    && !audience.groups.contains(&Group::Families)
                    && !audience.groups.contains(&Group::Students))
            {
                return Err(Err::BadAudience);
            }
            if audience
                .classes
                .iter()
                .any(|c| ctx.directory.class(*c).is_none())
            {
                return Err(Err::UnknownClass);
            }
            if !office {
                if *kind == Kind::Circular
                    || audience.groups.contains(&Group::Staff)
                    || audience.classes.is_empty()
                {
                    return Err(Err::NotYours);
                }
                if !audience
                    .classes
                    .iter()
                    .all(|c| ctx.directory.teaches_class(ctx.actor, *c))
                {
                    return Err(Err::NotYourClass);
                }
            }
            let (title, body) = (title.trim(), body.trim());
            if title.is_empty()
                || body.is_empty()
                || title.chars().count() > MAX_TITLE
                || body.chars().count() > MAX_BODY
            {
                return Err(Err::Text);
            }
            let distinct: BTreeSet<_> = attachments.iter().map(|a| a.hash).collect();
            if attachments.len() > MAX_ATTACHMENTS
                || distinct.len() != attachments.len()
                || !attachments.iter().all(|a| valid_file_name(&a.name))
            {
                return Err(Err::BadAttachments);
            }
            if consent_deadline.is_some_and(|d| d < ctx.today) {
                return Err(Err::PastDeadline);
            }
            let number = (*kind == Kind::Circular).then(|| {
                state
                    .circulars
                    .get(&SchoolYear::of(ctx.today))
                    .copied()
                    .unwrap_or(0)
                    + 1
            });
            Ok(vec![CatalogueEvent::CommunicationPublished {
                communication: *communication,
                kind: *kind,
                number,
                title: title.to_owned(),
                body: body.to_owned(),
                audience: audience.clone(),
                attachments: attachments.clone(),
                consent_deadline: *consent_deadline,
                date: ctx.today,
                author: ctx.actor,
            }])
        }
        CatalogueCommand::Withdraw {
            communication,
            reason,
        } => {
            let c = state
                .communications
                .get(communication)
                .ok_or(Err::Unknown)?;
            if c.author != ctx.actor && ctx.role != Role::Principal {
                return Err(Err::NotTheAuthor);
            }
            if c.withdrawn.is_some() {
                return Err(Err::Withdrawn);
            }
            let reason = reason.trim();
            if reason.is_empty() || reason.chars().count() > 500 {
                return Err(Err::Reason);
            }
            Ok(vec![CatalogueEvent::CommunicationWithdrawn {
                communication: *communication,
                reason: reason.to_owned(),
            }])
        }
    }
}

/// Applies a catalogue event. Events are facts: applying never fails.
pub fn evolve(state: &mut Catalogue, event: &CatalogueEvent) {
    match event {
        CatalogueEvent::CommunicationPublished {
            communication,
            kind,
            number,
            title,
            body,
            audience,
            attachments,
            consent_deadline,
            date,
            author,
        } => {
            if let Some(n) = number {
                let year = state.circulars.entry(SchoolYear::of(*date)).or_default();
                *year = (*year).max(*n);
            }
            state.communications.insert(
                *communication,
                Communication {
                    kind: *kind,
                    number: *number,
                    title: title.clone(),
                    body: body.clone(),
                    audience: audience.clone(),
                    attachments: attachments.clone(),
                    consent_deadline: *consent_deadline,
                    date: *date,
                    author: *author,
                    withdrawn: None,
                },
            );
        }
        CatalogueEvent::CommunicationWithdrawn {
            communication,
            reason,
        } => {
            if let Some(c) = state.communications.get_mut(communication) {
                c.withdrawn = Some(reason.clone());
            }
        }
    }
}

/// A consent as answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsentAnswer {
    /// Yes or no.
    pub consent: Consent,
    /// Who answered.
    pub by: PersonId,
    /// When it was recorded.
    pub at: OffsetDateTime,
}

/// The receipts and consents of one communication.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Replies {
    /// Who read it, and when it was recorded.
    pub receipts: BTreeMap<PersonId, OffsetDateTime>,
    /// Each student's latest consent answer.
    pub consents: BTreeMap<PersonId, ConsentAnswer>,
}

/// The facts a reply decision needs: the communication (from the catalogue) and who acts.
#[derive(Debug, Clone, Copy)]
pub struct ReplyContext<'a> {
    /// The communication's id.
    pub id: CommunicationId,
    /// The communication, if published.
    pub communication: Option<&'a Communication>,
    /// Who acts.
    pub actor: PersonId,
    /// Today.
    pub today: Date,
    /// The school directory, now.
    pub directory: &'a Directory,
}

/// Decides a receipt or a consent. Pure: no clock, no IO.
///
/// # Errors
/// [`CommunicationError`] when the command breaks a rule; nothing is to be written then.
pub fn decide_reply(
    state: &Replies,
    command: &ReplyCommand,
    ctx: &ReplyContext<'_>,
) -> Result<Vec<ReplyEvent>, CommunicationError> {
    use CommunicationError as Err;
    let dir = ctx.directory;
    let c = ctx.communication.ok_or(Err::Unknown)?;
    if c.withdrawn.is_some() {
        return Err(Err::Withdrawn);
    }
    match command {
        ReplyCommand::Acknowledge => {
            if !c.audience.reaches(dir, ctx.actor) {
                return Err(Err::Unknown);
            }
            if state.receipts.contains_key(&ctx.actor) {
                return Err(Err::AlreadyAcknowledged);
            }
            Ok(vec![ReplyEvent::CommunicationAcknowledged {
                communication: ctx.id,
                reader: ctx.actor,
            }])
        }
        ReplyCommand::AnswerConsent { student, consent } => {
            let deadline = c.consent_deadline.ok_or(Err::NoConsentAsked)?;
            if !c.audience.students(dir).any(|s| s == *student) {
                return Err(Err::NotConcerned);
            }
            let adult = dir
                .person(*student)
                .and_then(|p| p.birth_date)
                .is_some_and(|b| is_adult_on(b, ctx.today));
            let answers_for = if adult {
                ctx.actor == *student
            } else {
                dir.is_linked(ctx.actor, *student)
            };
            if !answers_for {
                return Err(Err::NotYourStudent);
            }
            if ctx.today > deadline {
                return Err(Err::DeadlinePassed);
            }
            Ok(vec![ReplyEvent::ConsentAnswered {
                communication: ctx.id,
                student: *student,
                by: ctx.actor,
                consent: *consent,
            }])
        }
    }
}

/// Applies a reply event recorded at `at`. Events are facts: applying never fails.
pub fn evolve_reply(state: &mut Replies, event: &ReplyEvent, at: OffsetDateTime) {
    match event {
        ReplyEvent::CommunicationAcknowledged { reader, .. } => {
            state.receipts.entry(*reader).or_insert(at);
        }
        ReplyEvent::ConsentAnswered {
            student,
            by,
            consent,
            ..
        } => {
            state.consents.insert(
                *student,
                ConsentAnswer {
                    consent: *consent,
                    by: *by,
                    at,
                },
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use time::macros::{date, datetime};

    use super::*;
    use crate::directory::{self, DirectoryCommand};
    use crate::{FiscalCode, StoredEvent as _};

    const TODAY: Date = date!(2025 - 10 - 06);

    /// Two classes: 3C (teacher, guardian of a minor, an adult student) and 4D (another
    /// teacher, another family); a principal and a secretary.
    struct World {
        dir: Directory,
        principal: PersonId,
        secretary: PersonId,
        teacher: PersonId,
        other_teacher: PersonId,
        parent: PersonId,
        minor: PersonId,
        adult: PersonId,
        other_parent: PersonId,
        other_child: PersonId,
        class: ClassId,
        other_class: ClassId,
    }

    fn world() -> World {
        let mut dir = Directory::default();
        let mut run = |c: DirectoryCommand| {
            for e in directory::decide(&dir, &c).unwrap() {
                directory::evolve(&mut dir, &e);
            }
        };
        run(DirectoryCommand::DefineSubject {
            subject: "Storia".into(),
            scale: crate::grade::Scale::Numeric,
        });
        let mut person = |date: &str, role, birth_date| {
            let p = PersonId::new();
            run(DirectoryCommand::Register {
                person: p,
                fiscal_code: FiscalCode::with_check_character(&format!("XXXYYY{date}Z999"))
                    .unwrap(),
                family_name: "Rossi".into(),
                given_name: "Anna".into(),
                role,
                birth_date,
            });
            p
        };
        let principal = person("60A01", Role::Principal, None);
        let secretary = person("61A01", Role::Secretary, None);
        let teacher = person("70A01", Role::Teacher, None);
        let other_teacher = person("70A02", Role::Teacher, None);
        let parent = person("71A01", Role::Guardian, None);
        let other_parent = person("72A01", Role::Guardian, None);
        let minor = person("10A01", Role::Student, Some(date!(2010 - 01 - 01)));
        let adult = person("07A01", Role::Student, Some(date!(2007 - 01 - 01)));
        let other_child = person("10A02", Role::Student, Some(date!(2010 - 02 - 01)));
        let (class, other_class) = (ClassId::new(), ClassId::new());
        for (c, name, t, students) in [
            (class, "3C", teacher, vec![minor, adult]),
            (other_class, "4D", other_teacher, vec![other_child]),
        ] {
            run(DirectoryCommand::CreateClass {
                class: c,
                name: name.into(),
            });
            run(DirectoryCommand::AssignTeacher {
                teacher: t,
                class: c,
                subject: "Storia".into(),
            });
            for s in students {
                run(DirectoryCommand::EnrolStudent {
                    student: s,
                    class: c,
                });
            }
        }
        for (g, s) in [
            (parent, minor),
            (parent, adult),
            (other_parent, other_child),
        ] {
            run(DirectoryCommand::LinkGuardian {
                guardian: g,
                student: s,
            });
        }
        World {
            dir,
            principal,
            secretary,
            teacher,
            other_teacher,
            parent,
            minor,
            adult,
            other_parent,
            other_child,
            class,
            other_class,
        }
    }

    fn audience(groups: &[Group], classes: &[ClassId]) -> Audience {
        Audience {
            groups: groups.iter().copied().collect(),
            classes: classes.iter().copied().collect(),
        }
    }

    fn publish(id: CommunicationId, kind: Kind, audience: Audience) -> CatalogueCommand {
        CatalogueCommand::Publish {
            communication: id,
            kind,
            title: " Uscita didattica a Firenze ".into(),
            body: "Si comunica che...".into(),
            audience,
            attachments: vec![],
            consent_deadline: None,
        }
    }

    /// Runs catalogue commands, each by (actor, role), from an empty catalogue.
    fn run(
        w: &World,
        steps: &[(PersonId, Role, CatalogueCommand)],
        today: Date,
    ) -> Result<(Catalogue, Vec<CatalogueEvent>), CommunicationError> {
        let mut state = Catalogue::default();
        let mut all = Vec::new();
        for (actor, role, c) in steps {
            let ctx = Context {
                actor: *actor,
                role: *role,
                today,
                directory: &w.dir,
            };
            for e in decide(&state, c, &ctx)? {
                evolve(&mut state, &e);
                all.push(e);
            }
        }
        Ok((state, all))
    }

    #[test]
    fn circulars_are_numbered_per_school_year_and_notices_are_not() {
        let w = world();
        let school = audience(&[Group::Families, Group::Students], &[]);
        let (ids, notice) = (
            [CommunicationId::new(), CommunicationId::new()],
            CommunicationId::new(),
        );
        let steps = [
            (
                w.principal,
                Role::Principal,
                publish(ids[0], Kind::Circular, school.clone()),
            ),
            (
                w.secretary,
                Role::Secretary,
                publish(notice, Kind::Notice, school.clone()),
            ),
            (
                w.secretary,
                Role::Secretary,
                publish(ids[1], Kind::Circular, school.clone()),
            ),
        ];
        let (state, events) = run(&w, &steps, TODAY).unwrap();
        assert_eq!(state.get(ids[0]).unwrap().number, Some(1));
        assert_eq!(state.get(notice).unwrap().number, None);
        assert_eq!(state.get(ids[1]).unwrap().number, Some(2));
        assert_eq!(
            state.get(ids[0]).unwrap().title,
            "Uscita didattica a Firenze"
        );
        // A new school year starts again from 1.
        let mut next_year = state.clone();
        let third = CommunicationId::new();
        let ctx = Context {
            actor: w.principal,
            role: Role::Principal,
            today: date!(2026 - 09 - 01),
            directory: &w.dir,
        };
        let e = decide(&next_year, &publish(third, Kind::Circular, school), &ctx).unwrap();
        evolve(&mut next_year, &e[0]);
        assert_eq!(next_year.get(third).unwrap().number, Some(1));
        // Events round-trip through their stored form.
        for e in events {
            assert_eq!(
                CatalogueEvent::from_stored(e.type_name(), &e.data()).unwrap(),
                e
            );
        }
    }

    #[test]
    fn a_teacher_writes_notices_only_to_the_families_and_students_of_their_classes() {
        let w = world();
        let t = |c: CatalogueCommand| run(&w, &[(w.teacher, Role::Teacher, c)], TODAY).map(|_| ());
        let id = CommunicationId::new();
        assert!(
            t(publish(
                id,
                Kind::Notice,
                audience(&[Group::Families], &[w.class])
            ))
            .is_ok()
        );
        for (kind, groups, classes, error) in [
            (
                Kind::Circular,
                &[Group::Families][..],
                &[w.class][..],
                CommunicationError::NotYours,
            ),
            (
                Kind::Notice,
                &[Group::Families],
                &[],
                CommunicationError::NotYours,
            ),
            (
                Kind::Notice,
                &[Group::Staff],
                &[w.class],
                CommunicationError::NotYours,
            ),
            (
                Kind::Notice,
                &[Group::Students],
                &[w.class, w.other_class],
                CommunicationError::NotYourClass,
            ),
            (
                Kind::Notice,
                &[],
                &[w.class],
                CommunicationError::BadAudience,
            ),
            (
                Kind::Notice,
                &[Group::Students],
                &[ClassId::new()],
                CommunicationError::UnknownClass,
            ),
        ] {
            assert_eq!(
                t(publish(id, kind, audience(groups, classes))).unwrap_err(),
                error
            );
        }
        // Guardians and students publish nothing.
        let by_parent = run(
            &w,
            &[(
                w.parent,
                Role::Guardian,
                publish(id, Kind::Notice, audience(&[Group::Families], &[w.class])),
            )],
            TODAY,
        );
        assert_eq!(by_parent.unwrap_err(), CommunicationError::NotYours);
    }

    #[test]
    fn text_attachments_and_deadline_are_checked_at_publication() {
        let w = world();
        let id = CommunicationId::new();
        let attachment = |name: &str, byte: u8| Attachment {
            hash: ContentHash::from_bytes([byte; 32]),
            name: name.into(),
            media_type: "application/pdf".into(),
            size: 10,
        };
        let with = |title: &str,
                    attachments: Vec<Attachment>,
                    deadline: Option<Date>,
                    groups: &[Group]| {
            CatalogueCommand::Publish {
                communication: id,
                kind: Kind::Notice,
                title: title.into(),
                body: "testo".into(),
                audience: audience(groups, &[]),
                attachments,
                consent_deadline: deadline,
            }
        };
        let p = |c| run(&w, &[(w.principal, Role::Principal, c)], TODAY).map(|_| ());
        let fam = &[Group::Families][..];
        assert!(
            p(with(
                "Gita",
                vec![attachment("a.pdf", 1), attachment("b.pdf", 2)],
                Some(TODAY),
                fam
            ))
            .is_ok()
        );
        assert_eq!(
            p(with("  ", vec![], None, fam)).unwrap_err(),
            CommunicationError::Text
        );
        assert_eq!(
            p(with(&"x".repeat(201), vec![], None, fam)).unwrap_err(),
            CommunicationError::Text
        );
        for bad in [
            vec![attachment("a.pdf", 1), attachment("b.pdf", 1)],
            vec![attachment("../a.pdf", 1)],
            vec![attachment("", 1)],
            (0..=10).map(|i| attachment("a.pdf", i)).collect(),
        ] {
            assert_eq!(
                p(with("Gita", bad, None, fam)).unwrap_err(),
                CommunicationError::BadAttachments
            );
        }
        assert_eq!(
            p(with("Gita", vec![], Some(date!(2025 - 10 - 05)), fam)).unwrap_err(),
            CommunicationError::PastDeadline
        );
        assert_eq!(
            p(with("Gita", vec![], Some(TODAY), &[Group::Staff])).unwrap_err(),
            CommunicationError::BadAudience
        );
        // The same id twice.
        let twice = [
            (
                w.principal,
                Role::Principal,
                with("Gita", vec![], None, fam),
            ),
            (
                w.principal,
                Role::Principal,
                with("Gita", vec![], None, fam),
            ),
        ];
        assert_eq!(
            run(&w, &twice, TODAY).unwrap_err(),
            CommunicationError::Exists
        );
    }

    #[test]
    fn an_audience_reaches_its_groups_of_its_classes_as_the_directory_stands() {
        let w = world();
        let class_families = audience(&[Group::Families], &[w.class]);
        assert!(class_families.reaches(&w.dir, w.parent));
        assert!(!class_families.reaches(&w.dir, w.other_parent));
        assert!(!class_families.reaches(&w.dir, w.minor));
        assert!(!class_families.reaches(&w.dir, w.teacher));
        let students = audience(&[Group::Students], &[]);
        assert!(students.reaches(&w.dir, w.minor) && students.reaches(&w.dir, w.other_child));
        assert!(!students.reaches(&w.dir, w.parent));
        let class_staff = audience(&[Group::Staff], &[w.other_class]);
        assert!(class_staff.reaches(&w.dir, w.other_teacher));
        assert!(!class_staff.reaches(&w.dir, w.teacher));
        let staff = audience(&[Group::Staff], &[]);
        assert!(staff.reaches(&w.dir, w.teacher) && staff.reaches(&w.dir, w.secretary));
        assert!(!staff.reaches(&w.dir, w.parent));
        let mut concerned: Vec<_> = class_families.students(&w.dir).collect();
        concerned.sort();
        let mut expected = vec![w.minor, w.adult];
        expected.sort();
        assert_eq!(concerned, expected);
        assert_eq!(staff.students(&w.dir).count(), 0);
    }

    fn trip(w: &World, deadline: Option<Date>) -> (CommunicationId, Catalogue) {
        let id = CommunicationId::new();
        let cmd = CatalogueCommand::Publish {
            communication: id,
            kind: Kind::Notice,
            title: "Gita".into(),
            body: "Adesione entro venerdì".into(),
            audience: audience(&[Group::Families, Group::Students], &[w.class]),
            attachments: vec![],
            consent_deadline: deadline,
        };
        (
            id,
            run(w, &[(w.teacher, Role::Teacher, cmd)], TODAY).unwrap().0,
        )
    }

    fn reply(
        w: &World,
        catalogue: &Catalogue,
        id: CommunicationId,
        steps: &[(PersonId, ReplyCommand)],
        today: Date,
    ) -> Result<Replies, CommunicationError> {
        let mut state = Replies::default();
        for (i, (actor, c)) in steps.iter().enumerate() {
            let ctx = ReplyContext {
                id,
                communication: catalogue.get(id),
                actor: *actor,
                today,
                directory: &w.dir,
            };
            for e in decide_reply(&state, c, &ctx)? {
                assert_eq!(
                    ReplyEvent::from_stored(e.type_name(), &e.data()).unwrap(),
                    e
                );
                let at = datetime!(2025-10-06 08:00 UTC)
                    + time::Duration::minutes(i64::try_from(i).unwrap());
                evolve_reply(&mut state, &e, at);
            }
        }
        Ok(state)
    }

    #[test]
    fn presa_visione_is_recorded_once_per_recipient_and_only_for_recipients() {
        let w = world();
        let (id, catalogue) = trip(&w, None);
        let state = reply(
            &w,
            &catalogue,
            id,
            &[
                (w.parent, ReplyCommand::Acknowledge),
                (w.minor, ReplyCommand::Acknowledge),
            ],
            TODAY,
        )
        .unwrap();
        assert_eq!(state.receipts.len(), 2);
        assert_eq!(state.receipts[&w.parent], datetime!(2025-10-06 08:00 UTC));
        let twice = [
            (w.parent, ReplyCommand::Acknowledge),
            (w.parent, ReplyCommand::Acknowledge),
        ];
        assert_eq!(
            reply(&w, &catalogue, id, &twice, TODAY).unwrap_err(),
            CommunicationError::AlreadyAcknowledged
        );
        // Another class's family is not addressed: to them it does not exist.
        for outsider in [w.other_parent, w.other_teacher] {
            assert_eq!(
                reply(
                    &w,
                    &catalogue,
                    id,
                    &[(outsider, ReplyCommand::Acknowledge)],
                    TODAY
                )
                .unwrap_err(),
                CommunicationError::Unknown
            );
        }
        assert_eq!(
            reply(
                &w,
                &catalogue,
                CommunicationId::new(),
                &[(w.parent, ReplyCommand::Acknowledge)],
                TODAY
            )
            .unwrap_err(),
            CommunicationError::Unknown
        );
    }

    #[test]
    fn consent_is_answered_by_a_minors_guardian_or_an_adult_student_until_the_deadline() {
        let w = world();
        let deadline = date!(2025 - 10 - 10);
        let (id, catalogue) = trip(&w, Some(deadline));
        let answer = |student, consent| ReplyCommand::AnswerConsent { student, consent };
        // The guardian answers for the minor and may change their mind; the adult answers
        // for themself.
        let state = reply(
            &w,
            &catalogue,
            id,
            &[
                (w.parent, answer(w.minor, Consent::Given)),
                (w.adult, answer(w.adult, Consent::Refused)),
                (w.parent, answer(w.minor, Consent::Refused)),
            ],
            deadline,
        )
        .unwrap();
        assert_eq!(state.consents[&w.minor].consent, Consent::Refused);
        assert_eq!(state.consents[&w.minor].by, w.parent);
        assert_eq!(state.consents[&w.adult].consent, Consent::Refused);
        assert_eq!(state.consents[&w.adult].by, w.adult);
        for (actor, student, error) in [
            (w.minor, w.minor, CommunicationError::NotYourStudent),
            (w.parent, w.adult, CommunicationError::NotYourStudent),
            (w.other_parent, w.minor, CommunicationError::NotYourStudent),
            (
                w.other_parent,
                w.other_child,
                CommunicationError::NotConcerned,
            ),
        ] {
            assert_eq!(
                reply(
                    &w,
                    &catalogue,
                    id,
                    &[(actor, answer(student, Consent::Given))],
                    deadline
                )
                .unwrap_err(),
                error
            );
        }
        assert_eq!(
            reply(
                &w,
                &catalogue,
                id,
                &[(w.parent, answer(w.minor, Consent::Given))],
                date!(2025 - 10 - 11)
            )
            .unwrap_err(),
            CommunicationError::DeadlinePassed
        );
        let (plain, catalogue2) = trip(&w, None);
        assert_eq!(
            reply(
                &w,
                &catalogue2,
                plain,
                &[(w.parent, answer(w.minor, Consent::Given))],
                TODAY
            )
            .unwrap_err(),
            CommunicationError::NoConsentAsked
        );
    }

    #[test]
    fn a_withdrawn_communication_stays_readable_and_takes_no_more_replies() {
        let w = world();
        let (id, mut catalogue) = trip(&w, Some(TODAY));
        let withdraw = |reason: &str| CatalogueCommand::Withdraw {
            communication: id,
            reason: reason.into(),
        };
        let ctx = |actor, role| Context {
            actor,
            role,
            today: TODAY,
            directory: &w.dir,
        };
        assert_eq!(
            decide(
                &catalogue,
                &withdraw("errore"),
                &ctx(w.other_teacher, Role::Teacher)
            )
            .unwrap_err(),
            CommunicationError::NotTheAuthor
        );
        assert_eq!(
            decide(&catalogue, &withdraw(" "), &ctx(w.teacher, Role::Teacher)).unwrap_err(),
            CommunicationError::Reason
        );
        // The principal may withdraw anyone's.
        assert!(
            decide(
                &catalogue,
                &withdraw("errore"),
                &ctx(w.principal, Role::Principal)
            )
            .is_ok()
        );
        for e in decide(
            &catalogue,
            &withdraw("data sbagliata"),
            &ctx(w.teacher, Role::Teacher),
        )
        .unwrap()
        {
            evolve(&mut catalogue, &e);
        }
        assert_eq!(
            catalogue.get(id).unwrap().withdrawn.as_deref(),
            Some("data sbagliata")
        );
        assert_eq!(
            decide(
                &catalogue,
                &withdraw("ancora"),
                &ctx(w.teacher, Role::Teacher)
            )
            .unwrap_err(),
            CommunicationError::Withdrawn
        );
        assert_eq!(
            reply(
                &w,
                &catalogue,
                id,
                &[(w.parent, ReplyCommand::Acknowledge)],
                TODAY
            )
            .unwrap_err(),
            CommunicationError::Withdrawn
        );
    }

    #[test]
    fn the_office_the_author_the_audience_and_the_classes_teachers_see_a_communication() {
        let w = world();
        let (id, catalogue) = trip(&w, None);
        let c = catalogue.get(id).unwrap();
        let roles = |r: &[Role]| r.iter().copied().collect::<BTreeSet<_>>();
        assert!(c.visible_to(&w.dir, w.principal, &roles(&[Role::Principal])));
        assert!(c.visible_to(&w.dir, w.secretary, &roles(&[Role::Secretary])));
        assert!(c.visible_to(&w.dir, w.teacher, &roles(&[Role::Teacher])));
        assert!(c.visible_to(&w.dir, w.parent, &roles(&[Role::Guardian])));
        assert!(c.visible_to(&w.dir, w.adult, &roles(&[Role::Student])));
        assert!(!c.visible_to(&w.dir, w.other_parent, &roles(&[Role::Guardian])));
        assert!(!c.visible_to(&w.dir, w.other_teacher, &roles(&[Role::Teacher])));
        assert!(!c.visible_to(&w.dir, w.other_child, &roles(&[Role::Student])));
    }
}
