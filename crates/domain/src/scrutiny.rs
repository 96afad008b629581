//! Scrutini: the class council (consiglio di classe) at the end of each term, the stream
//! `scrutiny-<class>-<year>`. The principal or the class coordinator opens a term's scrutinio;
//! each teacher enters their proposals (proposte di voto, pre-filled from the averages, rule 2);
//! the council's session records who sat (with substitutes); per student it deliberates the
//! final grades and conduct, exempts documented absences from the limit (deroghe) and, at the
//! final scrutinio, the outcome (esito) with the subjects to recover; every deliberation records
//! the vote. Closing locks the term's grades and absences (rule 6); the principal may reopen it
//! with a reason; the integration scrutinio resolves suspended judgements (rules.md sections 1,
//! 3, 4 and 6).
//!
//! The rules are enforced, not only shown: an outcome the law forbids is refused with its
//! reason ([`ScrutinyError`]), and [`propose_outcome`] gives the outcome of rule 4.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use time::Date;

use crate::attendance::{AnnualLimit, Exemption, counted_hours};
use crate::calendar::SchoolYear;
use crate::directory::Directory;
use crate::grade::GradeValue;
use crate::record::Mark;
use crate::{ClassId, PersonId, Role};

/// The stream of a class's scrutini for a school year.
#[must_use]
pub fn stream(class: ClassId, year: SchoolYear) -> String {
    format!("scrutiny-{class}-{}", year.start_year())
}

/// The longest reason or minute text, in characters.
pub const MAX_TEXT_CHARS: usize = 2000;

/// The school level of a class: the rules of conduct and outcome differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SchoolLevel {
    /// Scuola primaria: judgement levels, no numeric averages, no conduct grade.
    Primary,
    /// Scuola secondaria di primo grado.
    LowerSecondary,
    /// Scuola secondaria di secondo grado.
    UpperSecondary,
}

impl SchoolLevel {
    /// Its name as stored and shown: `primary`, `lower_secondary`, `upper_secondary`.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Primary => "primary",
            Self::LowerSecondary => "lower_secondary",
            Self::UpperSecondary => "upper_secondary",
        }
    }
}

/// How the council voted on a deliberation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Vote {
    /// All in favour (all'unanimità).
    Unanimous,
    /// By majority (a maggioranza), naming who voted against.
    Majority {
        /// The members who voted against.
        dissenting: BTreeSet<PersonId>,
    },
}

/// The year-end outcome (esito) of a student.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Outcome {
    /// Ammesso alla classe successiva (or to the exam).
    Admitted,
    /// Giudizio sospeso: the subjects to recover (debiti formativi) and, for conduct 6 in upper
    /// secondary, the assignment on active citizenship (elaborato di cittadinanza attiva), all
    /// assessed at the integration scrutinio before the next year.
    JudgementSuspended {
        /// The subjects to recover.
        subjects: BTreeSet<String>,
        /// Whether the citizenship assignment is due (conduct 6, rule 3).
        citizenship: bool,
    },
    /// Non ammesso.
    NotAdmitted,
}

impl Outcome {
    /// Its kind as stored and shown: `admitted`, `judgement_suspended`, `not_admitted`.
    #[must_use]
    pub const fn kind(&self) -> &'static str {
        match self {
            Self::Admitted => "admitted",
            Self::JudgementSuspended { .. } => "judgement_suspended",
            Self::NotAdmitted => "not_admitted",
        }
    }
}

/// The school's settings for scrutini.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Settings {
    /// The most subjects to recover with a suspended judgement (default 3, rule 4).
    pub max_subjects_to_recover: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            max_subjects_to_recover: 3,
        }
    }
}

/// What the principal, the coordinator or a teacher asks of a class's scrutini.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ScrutinyCommand {
    /// Opens the scrutinio of a term (its number in the year, from 1).
    Open {
        /// The term.
        term: u8,
        /// The class's school level.
        level: SchoolLevel,
    },
    /// A teacher enters the proposal for their subject.
    Propose {
        /// The term.
        term: u8,
        /// The student.
        student: PersonId,
        /// The subject.
        subject: String,
        /// The proposed grade, on the subject's scale.
        mark: Mark,
    },
    /// Records the council's session: who sat, and who substituted whom.
    RecordSession {
        /// The term.
        term: u8,
        /// The day.
        #[serde(with = "crate::iso_date")]
        date: Date,
        /// The members present.
        attendees: BTreeSet<PersonId>,
        /// Absent member → their substitute (who is among the attendees).
        substitutes: BTreeMap<PersonId, PersonId>,
    },
    /// The council deliberates a student's final grades and conduct.
    Deliberate {
        /// The term.
        term: u8,
        /// The student.
        student: PersonId,
        /// A final grade for every subject the class is taught.
        grades: BTreeMap<String, Mark>,
        /// Conduct, a whole grade out of 10 (secondary schools).
        conduct: Option<GradeValue>,
        /// The vote.
        vote: Vote,
    },
    /// The council exempts documented, continuous absences from the limit (deroga).
    Exempt {
        /// The term whose council decides it.
        term: u8,
        /// The student.
        student: PersonId,
        /// The exemption.
        exemption: Exemption,
        /// The vote.
        vote: Vote,
    },
    /// The council deliberates the year-end outcome (final scrutinio only).
    DecideOutcome {
        /// The student.
        student: PersonId,
        /// The outcome.
        outcome: Outcome,
        /// The vote.
        vote: Vote,
        /// The reasons (required when admitting with subjects below 6).
        reasons: String,
    },
    /// Closes the term's scrutinio: its grades and absences are locked (rule 6).
    Close {
        /// The term.
        term: u8,
    },
    /// The principal reopens a closed scrutinio, with a reason.
    Reopen {
        /// The term.
        term: u8,
        /// Why.
        reason: String,
    },
    /// The principal publishes the term's report cards to the families (a closed scrutinio).
    Publish {
        /// The term.
        term: u8,
    },
    /// Withdraws a student's year-end outcome at the final scrutinio while it is open (once
    /// reopened, after closing), with the reason: the council can then correct the grades it
    /// was decided on and decide it again.
    WithdrawOutcome {
        /// The student.
        student: PersonId,
        /// Why.
        reason: String,
    },
    /// Records the integration scrutinio's session (the council that resolves the suspended
    /// judgements before the new year): who sat, and who substituted an absent member.
    /// Recording it again replaces it.
    RecordIntegrationSession {
        /// The day.
        #[serde(with = "crate::iso_date")]
        date: Date,
        /// The members present.
        attendees: BTreeSet<PersonId>,
        /// Absent member → their substitute.
        substitutes: BTreeMap<PersonId, PersonId>,
    },
    /// The integration scrutinio resolves a suspended judgement.
    ResolveSuspended {
        /// The student.
        student: PersonId,
        /// Admitted (true) or not admitted.
        admitted: bool,
        /// The vote.
        vote: Vote,
    },
}

/// What happened. Stored as events (`event_type` = the variant name, `data` = its fields).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum ScrutinyEvent {
    /// A term's scrutinio was opened.
    ScrutinyOpened {
        /// The term (from 1).
        term: u8,
        /// The class's school level.
        level: SchoolLevel,
        /// Whether it is the final scrutinio (the year's last term).
        #[serde(rename = "final")]
        is_final: bool,
    },
    /// A teacher entered a proposal.
    ProposalEntered {
        /// The term.
        term: u8,
        /// The student.
        student: PersonId,
        /// The subject.
        subject: String,
        /// The proposed grade.
        mark: Mark,
        /// The teacher.
        teacher: PersonId,
    },
    /// The council sat.
    CouncilConvened {
        /// The term.
        term: u8,
        /// The day.
        #[serde(with = "crate::iso_date")]
        date: Date,
        /// The members present.
        attendees: BTreeSet<PersonId>,
        /// Absent member → their substitute.
        substitutes: BTreeMap<PersonId, PersonId>,
    },
    /// The council deliberated a student's final grades and conduct.
    GradesDeliberated {
        /// The term.
        term: u8,
        /// The student.
        student: PersonId,
        /// The final grades.
        grades: BTreeMap<String, Mark>,
        /// Conduct (secondary schools).
        conduct: Option<GradeValue>,
        /// The vote.
        vote: Vote,
    },
    /// The council exempted absences from the limit.
    AbsencesExempted {
        /// The term whose council decided it.
        term: u8,
        /// The student.
        student: PersonId,
        /// The exemption.
        exemption: Exemption,
        /// The vote.
        vote: Vote,
    },
    /// The council deliberated the year-end outcome.
    OutcomeDeliberated {
        /// The student.
        student: PersonId,
        /// The outcome.
        outcome: Outcome,
        /// What the software proposed (rule 4).
        proposed: Outcome,
        /// The vote.
        vote: Vote,
        /// The reasons.
        reasons: String,
    },
    /// The term's scrutinio was closed: its grades and absences are locked.
    ScrutinyClosed {
        /// The term.
        term: u8,
    },
    /// The principal reopened a closed scrutinio.
    ScrutinyReopened {
        /// The term.
        term: u8,
        /// Why.
        reason: String,
    },
    /// The term's report cards were published to the families.
    ReportCardsPublished {
        /// The term.
        term: u8,
    },
    /// A deliberated outcome was withdrawn at the reopened final scrutinio.
    OutcomeWithdrawn {
        /// The student.
        student: PersonId,
        /// Why.
        reason: String,
    },
    /// The integration scrutinio's council sat.
    IntegrationConvened {
        /// The day.
        #[serde(with = "crate::iso_date")]
        date: Date,
        /// The members present.
        attendees: BTreeSet<PersonId>,
        /// Absent member → their substitute.
        substitutes: BTreeMap<PersonId, PersonId>,
    },
    /// The integration scrutinio resolved a suspended judgement.
    SuspensionResolved {
        /// The student.
        student: PersonId,
        /// Admitted, or not.
        admitted: bool,
        /// The vote.
        vote: Vote,
    },
}

impl crate::StoredEvent for ScrutinyEvent {}

impl ScrutinyEvent {
    /// Every event type name, as stored.
    pub const TYPE_NAMES: [&'static str; 12] = [
        "ScrutinyOpened",
        "ProposalEntered",
        "CouncilConvened",
        "GradesDeliberated",
        "AbsencesExempted",
        "OutcomeDeliberated",
        "ScrutinyClosed",
        "ScrutinyReopened",
        "SuspensionResolved",
        "ReportCardsPublished",
        "OutcomeWithdrawn",
        "IntegrationConvened",
    ];

    /// The event's type name, as stored.
    #[must_use]
    pub const fn type_name(&self) -> &'static str {
        match self {
            Self::ScrutinyOpened { .. } => Self::TYPE_NAMES[0],
            Self::ProposalEntered { .. } => Self::TYPE_NAMES[1],
            Self::CouncilConvened { .. } => Self::TYPE_NAMES[2],
            Self::GradesDeliberated { .. } => Self::TYPE_NAMES[3],
            Self::AbsencesExempted { .. } => Self::TYPE_NAMES[4],
            Self::OutcomeDeliberated { .. } => Self::TYPE_NAMES[5],
            Self::ScrutinyClosed { .. } => Self::TYPE_NAMES[6],
            Self::ScrutinyReopened { .. } => Self::TYPE_NAMES[7],
            Self::SuspensionResolved { .. } => Self::TYPE_NAMES[8],
            Self::ReportCardsPublished { .. } => Self::TYPE_NAMES[9],
            Self::OutcomeWithdrawn { .. } => Self::TYPE_NAMES[10],
            Self::IntegrationConvened { .. } => Self::TYPE_NAMES[11],
        }
    }
}

/// Why a command was refused. Shown to the principal and teachers, in Italian.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScrutinyError {
    /// Only the principal or the class coordinator runs the council.
    #[error("solo il dirigente o il coordinatore di classe conduce lo scrutinio")]
    NotTheChair,
    /// Only the principal reopens, and publishes report cards.
    #[error("solo il dirigente riapre uno scrutinio chiuso e pubblica le pagelle")]
    NotThePrincipal,
    /// The school level differs from the one the year's scrutini were opened with.
    #[error("il grado scolastico della classe è quello dei periodi già aperti")]
    LevelChanged,
    /// The student's outcome was deliberated on these grades.
    #[error("l'esito dello studente è già deliberato: i voti finali non cambiano più")]
    OutcomeDecided,
    /// The report cards are published already.
    #[error("le pagelle di questo periodo sono già pubblicate")]
    AlreadyPublished,
    /// Only a teacher of the subject in the class proposes its grade.
    #[error("solo un docente della materia nella classe propone il voto")]
    NotTheSubjectTeacher,
    /// The class, or the term in the planned year, is unknown.
    #[error("classe o periodo sconosciuti (il periodo è il numero del trimestre o quadrimestre)")]
    UnknownTerm,
    /// Opened already (or closed: reopen it instead).
    #[error("lo scrutinio di questo periodo è già aperto o chiuso")]
    AlreadyOpen,
    /// Not open: not opened yet, or closed.
    #[error("lo scrutinio di questo periodo non è aperto")]
    NotOpen,
    /// Not closed.
    #[error("lo scrutinio di questo periodo non è chiuso")]
    NotClosed,
    /// The student is not in the class.
    #[error("lo studente non è della classe")]
    NotInClass,
    /// The subject is not taught in the class, or a mark is off its scale.
    #[error("materia non insegnata nella classe, o voto non nella sua scala ({0})")]
    BadMark(String),
    /// A final grade is missing for a subject of the class.
    #[error("manca il voto finale di {0}")]
    MissingGrade(String),
    /// Conduct is required (secondary) or not graded (primary), and is a whole grade.
    #[error("il voto di comportamento è obbligatorio nella scuola secondaria, intero da 1 a 10")]
    Conduct,
    /// The council has not sat yet.
    #[error("registrare prima la seduta del consiglio (presenti e sostituti)")]
    NoSession,
    /// The session's members do not fit.
    #[error("presenti e sostituti non validi: docenti della classe o il dirigente")]
    BadSession,
    /// The vote's dissenting members are not all present, or are everyone.
    #[error("i contrari devono essere tra i presenti, e non tutti")]
    BadVote,
    /// The outcome is deliberated at the final scrutinio, after the grades.
    #[error("l'esito si delibera allo scrutinio finale, dopo i voti dello studente")]
    NotFinal,
    /// Over the absence limit without exemption: only not admitted (rule 1).
    #[error(
        "assenze oltre il limite ({counted} ore su un massimo di {max}) senza deroga: \
         lo studente non può essere ammesso"
    )]
    OverLimit {
        /// The hours that count.
        counted: u32,
        /// The most that may be missed.
        max: u32,
    },
    /// Conduct below 6: only not admitted (rule 3).
    #[error("comportamento inferiore a 6: lo studente non può essere ammesso")]
    ConductBelowSix,
    /// Conduct 6 in upper secondary: only judgement suspended with the citizenship assignment.
    #[error(
        "comportamento 6: giudizio sospeso con l'elaborato di cittadinanza attiva \
         (scuola secondaria di secondo grado)"
    )]
    ConductSix,
    /// The subjects to recover are not those below 6, or too many.
    #[error("materie da recuperare non valide: solo materie sotto il 6, al massimo {0}")]
    BadSubjects(usize),
    /// A suspended judgement does not exist here (primary and lower secondary).
    #[error("il giudizio sospeso esiste solo nella scuola secondaria di secondo grado")]
    NoSuspension,
    /// Admitting with subjects below 6 needs the reasons.
    #[error("ammissione con materie insufficienti: indicare la motivazione")]
    ReasonsRequired,
    /// Students are still to be deliberated.
    #[error("mancano le deliberazioni di {0} studenti")]
    Incomplete(usize),
    /// No suspended judgement to resolve, or resolved already.
    #[error("nessun giudizio sospeso da risolvere per lo studente")]
    NothingSuspended,
    /// The integration scrutinio's session is not recorded.
    #[error("registrare prima la seduta dello scrutinio integrativo (presenti e sostituti)")]
    NoIntegrationSession,
    /// The integration scrutinio sits after the final one.
    #[error("lo scrutinio integrativo si tiene dopo lo scrutinio finale")]
    IntegrationTooEarly,
    /// The integration scrutinio's session has resolutions voted by its members.
    #[error("lo scrutinio integrativo ha già deliberato: la sua seduta non si sostituisce")]
    IntegrationDecided,
    /// No outcome to withdraw.
    #[error("lo studente non ha un esito deliberato")]
    NoOutcome,
    /// A reason is required, or a text is too long.
    #[error("testo mancante o troppo lungo")]
    Text,
    /// The exemption's dates are not in the school year.
    #[error("le date della deroga non sono nell'anno scolastico")]
    BadExemption,
}

/// The facts a decision needs from outside the stream.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The class.
    pub class: ClassId,
    /// The school year.
    pub year: SchoolYear,
    /// Who acts.
    pub actor: PersonId,
    /// The school directory, now.
    pub directory: &'a Directory,
    /// The school's settings.
    pub settings: Settings,
    /// For an outcome: the student's hours missed this year, day by day (from the record).
    pub absences: &'a [(Date, u32)],
}

impl Context<'_> {
    fn is_principal(&self) -> bool {
        self.directory.has_role(self.actor, Role::Principal)
    }

    fn is_chair(&self) -> bool {
        self.is_principal()
            || self
                .directory
                .class(self.class)
                .is_some_and(|c| c.coordinator == Some(self.actor))
    }

    fn in_class(&self, student: PersonId) -> bool {
        self.directory
            .class(self.class)
            .is_some_and(|c| c.students.contains(&student))
    }

    /// The subjects taught in the class.
    fn subjects(&self) -> BTreeSet<String> {
        self.directory
            .class(self.class)
            .map(|c| c.teachers.iter().map(|(_, s)| s.clone()).collect())
            .unwrap_or_default()
    }

    /// The student's annual limit (rule 1), when the class has a timetable.
    #[must_use]
    pub fn limit(&self, student: PersonId) -> Option<AnnualLimit> {
        self.directory.timetable(self.class).map(|t| {
            AnnualLimit::for_weekly_hours(t.weekly_hours(&self.directory.exempt_subjects(student)))
        })
    }
}

/// The session of a term's council.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The day.
    pub date: Date,
    /// The members present.
    pub attendees: BTreeSet<PersonId>,
    /// Absent member → substitute.
    pub substitutes: BTreeMap<PersonId, PersonId>,
}

/// A student's deliberated grades.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deliberation {
    /// The final grades.
    pub grades: BTreeMap<String, Mark>,
    /// Conduct.
    pub conduct: Option<GradeValue>,
    /// The vote.
    pub vote: Vote,
}

impl Deliberation {
    /// The subjects with a numeric final grade below 6.
    #[must_use]
    pub fn below_six(&self) -> BTreeSet<String> {
        below_six(&self.grades)
    }
}

/// The subjects of `grades` with a numeric grade below 6 (judgements and levels never are).
#[must_use]
pub fn below_six(grades: &BTreeMap<String, Mark>) -> BTreeSet<String> {
    grades
        .iter()
        .filter(|(_, m)| matches!(m, Mark::Numeric(v) if !v.is_pass()))
        .map(|(s, _)| s.clone())
        .collect()
}

/// Where a term's scrutinio stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Open: proposals and deliberations are taken.
    Open,
    /// Closed: the term is locked.
    Closed,
}

impl Status {
    /// `open` or `closed`.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Closed => "closed",
        }
    }
}

/// A term's scrutinio.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TermScrutiny {
    /// The class's school level.
    pub level: SchoolLevel,
    /// Whether it is the final scrutinio.
    pub is_final: bool,
    /// Open or closed.
    pub status: Status,
    /// The proposals: (student, subject) → (mark, teacher).
    pub proposals: BTreeMap<(PersonId, String), (Mark, PersonId)>,
    /// The council's session, once recorded.
    pub session: Option<Session>,
    /// Each student's deliberation.
    pub deliberations: BTreeMap<PersonId, Deliberation>,
    /// The reasons it was reopened for, in order.
    pub reopened: Vec<String>,
    /// Whether its report cards are published (until it is reopened).
    pub published: bool,
}

/// A deliberated outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutcomeRecord {
    /// The outcome.
    pub outcome: Outcome,
    /// What the software proposed.
    pub proposed: Outcome,
    /// The vote.
    pub vote: Vote,
    /// The reasons.
    pub reasons: String,
    /// The integration scrutinio's decision on a suspended judgement: admitted or not.
    pub resolved: Option<bool>,
    /// The integration scrutinio's vote on it.
    pub resolution_vote: Option<Vote>,
}

/// The state of a class's scrutini for a school year.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scrutiny {
    terms: BTreeMap<u8, TermScrutiny>,
    exemptions: BTreeMap<PersonId, Vec<(u8, Exemption)>>,
    outcomes: BTreeMap<PersonId, OutcomeRecord>,
    withdrawn: Vec<(PersonId, String)>,
    integration: Option<Session>,
}

impl Scrutiny {
    /// A term's scrutinio, if opened.
    #[must_use]
    pub fn term(&self, term: u8) -> Option<&TermScrutiny> {
        self.terms.get(&term)
    }

    /// The terms whose scrutinio is closed, as indexes in the year's terms (from 0), the form
    /// the record's lock check takes ([`crate::calendar::Terms::check_open`]).
    #[must_use]
    pub fn closed_terms(&self) -> BTreeSet<usize> {
        self.terms
            .iter()
            .filter(|(_, t)| t.status == Status::Closed)
            .map(|(n, _)| usize::from(*n) - 1)
            .collect()
    }

    /// A student's exemptions from the absence limit.
    #[must_use]
    pub fn exemptions(&self, student: PersonId) -> Vec<Exemption> {
        self.exemptions_with_terms(student)
            .map(|(_, e)| e)
            .collect()
    }

    /// A student's exemptions, each with the term whose council granted it.
    pub fn exemptions_with_terms(
        &self,
        student: PersonId,
    ) -> impl Iterator<Item = (u8, Exemption)> + '_ {
        self.exemptions.get(&student).into_iter().flatten().copied()
    }

    /// A student's outcome, once deliberated.
    #[must_use]
    pub fn outcome(&self, student: PersonId) -> Option<&OutcomeRecord> {
        self.outcomes.get(&student)
    }

    /// The outcomes withdrawn, each student with the reason, in order.
    #[must_use]
    pub fn withdrawn_outcomes(&self) -> &[(PersonId, String)] {
        &self.withdrawn
    }

    /// The integration scrutinio's session, once recorded.
    #[must_use]
    pub const fn integration(&self) -> Option<&Session> {
        self.integration.as_ref()
    }
}

/// The outcome rule 4 proposes: not admitted when over the absence limit or with conduct
/// below 6; judgement suspended with the citizenship assignment for conduct 6 in upper
/// secondary (with the subjects below 6 to recover, if few enough); admitted when every subject
/// is at 6 or more; otherwise judgement suspended when at most `max_subjects` are below 6 (upper
/// secondary), else not admitted. Primary and lower secondary know no suspended judgement: a
/// council admits with gaps by vote, so the proposal there is admitted.
#[must_use]
pub fn propose_outcome(
    level: SchoolLevel,
    over_limit: bool,
    conduct: Option<GradeValue>,
    below_six: &BTreeSet<String>,
    max_subjects: usize,
) -> Outcome {
    let conduct_whole = conduct.map(|c| c.hundredths() / 100);
    if over_limit || conduct_whole.is_some_and(|c| c < 6) {
        return Outcome::NotAdmitted;
    }
    if level != SchoolLevel::UpperSecondary {
        return Outcome::Admitted;
    }
    let citizenship = conduct_whole == Some(6);
    if below_six.len() > max_subjects {
        return Outcome::NotAdmitted;
    }
    if below_six.is_empty() && !citizenship {
        return Outcome::Admitted;
    }
    Outcome::JudgementSuspended {
        subjects: below_six.clone(),
        citizenship,
    }
}

fn text(t: &str, required: bool) -> Result<String, ScrutinyError> {
    let t = t.trim();
    if (required && t.is_empty()) || t.chars().count() > MAX_TEXT_CHARS {
        return Err(ScrutinyError::Text);
    }
    Ok(t.to_owned())
}

fn check_vote(vote: &Vote, session: &Session) -> Result<(), ScrutinyError> {
    match vote {
        Vote::Unanimous => Ok(()),
        Vote::Majority { dissenting } => {
            let fits = !dissenting.is_empty()
                && dissenting.is_subset(&session.attendees)
                && dissenting.len() < session.attendees.len();
            if fits {
                Ok(())
            } else {
                Err(ScrutinyError::BadVote)
            }
        }
    }
}

/// Decides what a command means, given the class's scrutini and the context. Pure: no clock,
/// no IO.
///
/// # Errors
/// [`ScrutinyError`] when the command breaks a rule; nothing is to be written then.
pub fn decide(
    state: &Scrutiny,
    command: &ScrutinyCommand,
    ctx: &Context<'_>,
) -> Result<Vec<ScrutinyEvent>, ScrutinyError> {
    use ScrutinyCommand as C;
    use ScrutinyEvent as E;
    let open = |term: u8| -> Result<&TermScrutiny, ScrutinyError> {
        match state.terms.get(&term) {
            Some(t) if t.status == Status::Open => Ok(t),
            _ => Err(ScrutinyError::NotOpen),
        }
    };
    let sitting = |term: u8| -> Result<(&TermScrutiny, &Session), ScrutinyError> {
        let t = open(term)?;
        let session = t.session.as_ref().ok_or(ScrutinyError::NoSession)?;
        Ok((t, session))
    };
    let chair = || {
        if ctx.is_chair() {
            Ok(())
        } else {
            Err(ScrutinyError::NotTheChair)
        }
    };
    let event = match command {
        C::Open { term, level } => {
            chair()?;
            let terms = ctx
                .directory
                .terms(ctx.year)
                .filter(|_| ctx.directory.class(ctx.class).is_some())
                .ok_or(ScrutinyError::UnknownTerm)?;
            let count = terms.terms().len();
            if *term == 0 || usize::from(*term) > count {
                return Err(ScrutinyError::UnknownTerm);
            }
            if state.terms.contains_key(term) {
                return Err(ScrutinyError::AlreadyOpen);
            }
            if state.terms.values().any(|t| t.level != *level) {
                return Err(ScrutinyError::LevelChanged);
            }
            E::ScrutinyOpened {
                term: *term,
                level: *level,
                is_final: usize::from(*term) == count,
            }
        }
        C::Propose {
            term,
            student,
            subject,
            mark,
        } => {
            open(*term)?;
            if !ctx.directory.teaches_subject(ctx.actor, ctx.class, subject) {
                return Err(ScrutinyError::NotTheSubjectTeacher);
            }
            if !ctx.in_class(*student) {
                return Err(ScrutinyError::NotInClass);
            }
            check_mark(ctx, subject, mark)?;
            E::ProposalEntered {
                term: *term,
                student: *student,
                subject: subject.clone(),
                mark: *mark,
                teacher: ctx.actor,
            }
        }
        C::RecordSession {
            term,
            date,
            attendees,
            substitutes,
        } => {
            chair()?;
            open(*term)?;
            check_session(ctx, attendees, substitutes)?;
            E::CouncilConvened {
                term: *term,
                date: *date,
                attendees: attendees.clone(),
                substitutes: substitutes.clone(),
            }
        }
        C::Deliberate {
            term,
            student,
            grades,
            conduct,
            vote,
        } => {
            chair()?;
            let (t, session) = sitting(*term)?;
            if !ctx.in_class(*student) {
                return Err(ScrutinyError::NotInClass);
            }
            // The outcome was decided on these grades: they no longer change under it.
            if t.is_final && state.outcomes.contains_key(student) {
                return Err(ScrutinyError::OutcomeDecided);
            }
            check_vote(vote, session)?;
            let subjects = ctx.subjects();
            if let Some(missing) = subjects
                .iter()
                .find(|s| !grades.contains_key(*s) && !is_exempt(ctx, *student, s))
            {
                return Err(ScrutinyError::MissingGrade(missing.clone()));
            }
            for (subject, mark) in grades {
                if !subjects.contains(subject) {
                    return Err(ScrutinyError::BadMark(subject.clone()));
                }
                check_mark(ctx, subject, mark)?;
            }
            let whole = conduct.is_none_or(|c| c.hundredths() % 100 == 0);
            let required = t.level != SchoolLevel::Primary;
            if conduct.is_some() != required || !whole {
                return Err(ScrutinyError::Conduct);
            }
            E::GradesDeliberated {
                term: *term,
                student: *student,
                grades: grades.clone(),
                conduct: *conduct,
                vote: vote.clone(),
            }
        }
        C::Exempt {
            term,
            student,
            exemption,
            vote,
        } => {
            chair()?;
            let (_, session) = sitting(*term)?;
            if !ctx.in_class(*student) {
                return Err(ScrutinyError::NotInClass);
            }
            check_vote(vote, session)?;
            let within = ctx.year.contains(exemption.from) && ctx.year.contains(exemption.to);
            if !within || exemption.to < exemption.from {
                return Err(ScrutinyError::BadExemption);
            }
            E::AbsencesExempted {
                term: *term,
                student: *student,
                exemption: *exemption,
                vote: vote.clone(),
            }
        }
        C::DecideOutcome {
            student,
            outcome,
            vote,
            reasons,
        } => {
            chair()?;
            let (term, t) = state
                .terms
                .iter()
                .find(|(_, t)| t.is_final)
                .ok_or(ScrutinyError::NotFinal)?;
            let (_, session) = sitting(*term)?;
            let deliberation = t
                .deliberations
                .get(student)
                .ok_or(ScrutinyError::NotFinal)?;
            check_vote(vote, session)?;
            let reasons = text(reasons, false)?;
            let proposed = check_outcome(state, ctx, t.level, *student, deliberation, outcome)?;
            if matches!(outcome, Outcome::Admitted)
                && !deliberation.below_six().is_empty()
                && reasons.is_empty()
            {
                return Err(ScrutinyError::ReasonsRequired);
            }
            E::OutcomeDeliberated {
                student: *student,
                outcome: outcome.clone(),
                proposed,
                vote: vote.clone(),
                reasons,
            }
        }
        C::Close { term } => {
            chair()?;
            let t = open(*term)?;
            let students = ctx
                .directory
                .class(ctx.class)
                .map(|c| c.students.clone())
                .unwrap_or_default();
            let missing = students
                .iter()
                .filter(|s| {
                    !t.deliberations.contains_key(s)
                        || (t.is_final && !state.outcomes.contains_key(s))
                })
                .count();
            if missing > 0 {
                return Err(ScrutinyError::Incomplete(missing));
            }
            E::ScrutinyClosed { term: *term }
        }
        C::Reopen { term, reason } => {
            if !ctx.is_principal() {
                return Err(ScrutinyError::NotThePrincipal);
            }
            match state.terms.get(term) {
                Some(t) if t.status == Status::Closed => {}
                _ => return Err(ScrutinyError::NotClosed),
            }
            E::ScrutinyReopened {
                term: *term,
                reason: text(reason, true)?,
            }
        }
        C::Publish { term } => {
            if !ctx.is_principal() {
                return Err(ScrutinyError::NotThePrincipal);
            }
            match state.terms.get(term) {
                Some(t) if t.status == Status::Closed && !t.published => {}
                Some(t) if t.published => return Err(ScrutinyError::AlreadyPublished),
                _ => return Err(ScrutinyError::NotClosed),
            }
            E::ReportCardsPublished { term: *term }
        }
        C::WithdrawOutcome { student, reason } => {
            chair()?;
            let (term, _) = state
                .terms
                .iter()
                .find(|(_, t)| t.is_final)
                .ok_or(ScrutinyError::NotFinal)?;
            open(*term)?;
            if !state.outcomes.contains_key(student) {
                return Err(ScrutinyError::NoOutcome);
            }
            E::OutcomeWithdrawn {
                student: *student,
                reason: text(reason, true)?,
            }
        }
        C::RecordIntegrationSession {
            date,
            attendees,
            substitutes,
        } => {
            chair()?;
            let t = state
                .terms
                .values()
                .find(|t| t.is_final && t.status == Status::Closed)
                .ok_or(ScrutinyError::NotClosed)?;
            let pending = state.outcomes.values().any(|o| {
                matches!(o.outcome, Outcome::JudgementSuspended { .. }) && o.resolved.is_none()
            });
            if !pending {
                return Err(ScrutinyError::NothingSuspended);
            }
            if t.session.as_ref().is_some_and(|s| *date <= s.date) {
                return Err(ScrutinyError::IntegrationTooEarly);
            }
            // Its resolutions were voted by its members: the sitting stays as recorded.
            if state.integration.is_some() && state.outcomes.values().any(|o| o.resolved.is_some())
            {
                return Err(ScrutinyError::IntegrationDecided);
            }
            check_session(ctx, attendees, substitutes)?;
            E::IntegrationConvened {
                date: *date,
                attendees: attendees.clone(),
                substitutes: substitutes.clone(),
            }
        }
        C::ResolveSuspended {
            student,
            admitted,
            vote,
        } => {
            chair()?;
            if !state
                .terms
                .values()
                .any(|t| t.is_final && t.status == Status::Closed)
            {
                return Err(ScrutinyError::NothingSuspended);
            }
            let suspended = state.outcomes.get(student).is_some_and(|o| {
                matches!(o.outcome, Outcome::JudgementSuspended { .. }) && o.resolved.is_none()
            });
            if !suspended {
                return Err(ScrutinyError::NothingSuspended);
            }
            let session = state
                .integration
                .as_ref()
                .ok_or(ScrutinyError::NoIntegrationSession)?;
            check_vote(vote, session)?;
            E::SuspensionResolved {
                student: *student,
                admitted: *admitted,
                vote: vote.clone(),
            }
        }
    };
    Ok(vec![event])
}

/// Refuses a council whose members are not the class's teachers or the principal, or whose
/// substitutes do not stand for an absent teacher of the class.
fn check_session(
    ctx: &Context<'_>,
    attendees: &BTreeSet<PersonId>,
    substitutes: &BTreeMap<PersonId, PersonId>,
) -> Result<(), ScrutinyError> {
    let dir = ctx.directory;
    let member =
        |p: &PersonId| dir.teaches_class(*p, ctx.class) || dir.has_role(*p, Role::Principal);
    let substitutes_fit = substitutes.iter().all(|(absent, substitute)| {
        dir.teaches_class(*absent, ctx.class)
            && !attendees.contains(absent)
            && attendees.contains(substitute)
            && dir.has_role(*substitute, Role::Teacher)
    });
    let members_fit = attendees
        .iter()
        .all(|p| member(p) || substitutes.values().any(|s| s == p));
    if attendees.is_empty() || !members_fit || !substitutes_fit {
        return Err(ScrutinyError::BadSession);
    }
    Ok(())
}

fn is_exempt(ctx: &Context<'_>, student: PersonId, subject: &str) -> bool {
    ctx.directory.exempt_subjects(student).contains(subject)
}

fn check_mark(ctx: &Context<'_>, subject: &str, mark: &Mark) -> Result<(), ScrutinyError> {
    match ctx.directory.subject_scale(subject) {
        Some(scale) if scale == mark.scale() => Ok(()),
        _ => Err(ScrutinyError::BadMark(subject.to_owned())),
    }
}

/// Checks an outcome against the hard limits (rules 1, 3 and 4) and returns what the software
/// proposes.
fn check_outcome(
    state: &Scrutiny,
    ctx: &Context<'_>,
    level: SchoolLevel,
    student: PersonId,
    deliberation: &Deliberation,
    outcome: &Outcome,
) -> Result<Outcome, ScrutinyError> {
    let counted = counted_hours(ctx.absences, &state.exemptions(student));
    let limit = ctx.limit(student);
    let over = limit.is_some_and(|l| l.is_over(counted));
    let below_six = deliberation.below_six();
    let max = ctx.settings.max_subjects_to_recover;
    let proposed = propose_outcome(level, over, deliberation.conduct, &below_six, max);
    let conduct = deliberation.conduct.map(|c| c.hundredths() / 100);
    let not_admitted = matches!(outcome, Outcome::NotAdmitted);
    if over && !not_admitted {
        return Err(ScrutinyError::OverLimit {
            counted,
            max: limit.map_or(0, |l| l.max_absence_hours),
        });
    }
    if conduct.is_some_and(|c| c < 6) && !not_admitted {
        return Err(ScrutinyError::ConductBelowSix);
    }
    let upper = level == SchoolLevel::UpperSecondary;
    let conduct_six = upper && conduct == Some(6);
    match outcome {
        Outcome::JudgementSuspended {
            subjects,
            citizenship,
        } => {
            if !upper {
                return Err(ScrutinyError::NoSuspension);
            }
            if *citizenship != conduct_six {
                return Err(ScrutinyError::ConductSix);
            }
            // Every subject below 6 is to be recovered (the council raises a grade instead
            // of leaving a failing one out), and no more than the school allows.
            if *subjects != below_six || subjects.len() > max {
                return Err(ScrutinyError::BadSubjects(max));
            }
            if subjects.is_empty() && !citizenship {
                return Err(ScrutinyError::BadSubjects(max));
            }
        }
        Outcome::Admitted if conduct_six => return Err(ScrutinyError::ConductSix),
        // Conduct 6 suspends the judgement (rule 3); not admitting stays open only for what
        // would not admit anyway: too many subjects below 6 (the limit was checked above).
        Outcome::NotAdmitted if conduct_six && below_six.len() <= max => {
            return Err(ScrutinyError::ConductSix);
        }
        Outcome::Admitted | Outcome::NotAdmitted => {}
    }
    Ok(proposed)
}

/// Applies an event to the state.
pub fn evolve(state: &mut Scrutiny, event: &ScrutinyEvent) {
    use ScrutinyEvent as E;
    match event {
        E::ScrutinyOpened {
            term,
            level,
            is_final,
        } => {
            state.terms.insert(
                *term,
                TermScrutiny {
                    level: *level,
                    is_final: *is_final,
                    status: Status::Open,
                    proposals: BTreeMap::new(),
                    session: None,
                    deliberations: BTreeMap::new(),
                    reopened: Vec::new(),
                    published: false,
                },
            );
        }
        E::ProposalEntered {
            term,
            student,
            subject,
            mark,
            teacher,
        } => {
            if let Some(t) = state.terms.get_mut(term) {
                t.proposals
                    .insert((*student, subject.clone()), (*mark, *teacher));
            }
        }
        E::CouncilConvened {
            term,
            date,
            attendees,
            substitutes,
        } => {
            if let Some(t) = state.terms.get_mut(term) {
                t.session = Some(Session {
                    date: *date,
                    attendees: attendees.clone(),
                    substitutes: substitutes.clone(),
                });
            }
        }
        E::GradesDeliberated {
            term,
            student,
            grades,
            conduct,
            vote,
        } => {
            if let Some(t) = state.terms.get_mut(term) {
                t.deliberations.insert(
                    *student,
                    Deliberation {
                        grades: grades.clone(),
                        conduct: *conduct,
                        vote: vote.clone(),
                    },
                );
            }
        }
        E::AbsencesExempted {
            term,
            student,
            exemption,
            ..
        } => state
            .exemptions
            .entry(*student)
            .or_default()
            .push((*term, *exemption)),
        E::OutcomeDeliberated {
            student,
            outcome,
            proposed,
            vote,
            reasons,
        } => {
            state.outcomes.insert(
                *student,
                OutcomeRecord {
                    outcome: outcome.clone(),
                    proposed: proposed.clone(),
                    vote: vote.clone(),
                    reasons: reasons.clone(),
                    resolved: None,
                    resolution_vote: None,
                },
            );
        }
        E::ScrutinyClosed { term } => {
            if let Some(t) = state.terms.get_mut(term) {
                t.status = Status::Closed;
            }
        }
        E::ScrutinyReopened { term, reason } => {
            if let Some(t) = state.terms.get_mut(term) {
                t.status = Status::Open;
                t.reopened.push(reason.clone());
                t.published = false;
            }
        }
        E::ReportCardsPublished { term } => {
            if let Some(t) = state.terms.get_mut(term) {
                t.published = true;
            }
        }
        E::SuspensionResolved {
            student,
            admitted,
            vote,
        } => {
            if let Some(o) = state.outcomes.get_mut(student) {
                o.resolved = Some(*admitted);
                o.resolution_vote = Some(vote.clone());
            }
        }
        E::OutcomeWithdrawn { student, reason } => {
            state.outcomes.remove(student);
            state.withdrawn.push((*student, reason.clone()));
        }
        E::IntegrationConvened {
            date,
            attendees,
            substitutes,
        } => {
            state.integration = Some(Session {
                date: *date,
                attendees: attendees.clone(),
                substitutes: substitutes.clone(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use time::macros::date;

    use super::*;
    use crate::attendance::ExemptionReason;
    use crate::calendar::Term;
    use crate::directory::{self, DirectoryCommand};
    use crate::grade::{Judgement, Scale};
    use crate::record::{self, RecordCommand, RecordError};
    use crate::{FiscalCode, GradeId};

    const NUMERIC: [&str; 4] = ["Matematica", "Italiano", "Storia", "Inglese"];

    struct World {
        dir: Directory,
        class: ClassId,
        principal: PersonId,
        /// The coordinator, who teaches mathematics.
        coordinator: PersonId,
        /// Teaches Italian, history, English and religion.
        teacher: PersonId,
        student: PersonId,
        other: PersonId,
    }

    /// A class of two students with 32 lesson hours a week (one of religion), in 2025/26 with
    /// a trimestre and a pentamestre.
    fn world() -> World {
        let mut dir = Directory::default();
        let mut run = |c: DirectoryCommand| {
            for e in directory::decide(&dir, &c).unwrap() {
                directory::evolve(&mut dir, &e);
            }
        };
        for subject in NUMERIC {
            run(DirectoryCommand::DefineSubject {
                subject: subject.into(),
                scale: Scale::Numeric,
            });
        }
        run(DirectoryCommand::DefineSubject {
            subject: "Religione".into(),
            scale: Scale::Judgement,
        });
        let (principal, coordinator, teacher, student, other, class) = (
            PersonId::new(),
            PersonId::new(),
            PersonId::new(),
            PersonId::new(),
            PersonId::new(),
            ClassId::new(),
        );
        for (person, code, role) in [
            (principal, "60A01", Role::Principal),
            (coordinator, "70A01", Role::Teacher),
            (teacher, "71A01", Role::Teacher),
            (student, "08A01", Role::Student),
            (other, "08B01", Role::Student),
        ] {
            run(DirectoryCommand::Register {
                person,
                fiscal_code: FiscalCode::with_check_character(&format!("XXXYYY{code}Z999"))
                    .unwrap(),
                family_name: "Rossi".into(),
                given_name: "Anna".into(),
                role,
                birth_date: None,
            });
        }
        run(DirectoryCommand::CreateClass {
            class,
            name: "4A".into(),
        });
        run(DirectoryCommand::AssignTeacher {
            teacher: coordinator,
            class,
            subject: "Matematica".into(),
        });
        for subject in ["Italiano", "Storia", "Inglese", "Religione"] {
            run(DirectoryCommand::AssignTeacher {
                teacher,
                class,
                subject: subject.into(),
            });
        }
        run(DirectoryCommand::AppointCoordinator {
            class,
            teacher: coordinator,
        });
        for s in [student, other] {
            run(DirectoryCommand::EnrolStudent { student: s, class });
        }
        // Monday to Friday six hours, Saturday two: 32 hours, religion the sixth on Monday.
        let mut hours = Vec::new();
        let days = [
            (time::Weekday::Monday, 6),
            (time::Weekday::Tuesday, 6),
            (time::Weekday::Wednesday, 6),
            (time::Weekday::Thursday, 6),
            (time::Weekday::Friday, 6),
            (time::Weekday::Saturday, 2),
        ];
        for (weekday, count) in days {
            for number in 1..=count {
                let subject = if weekday == time::Weekday::Monday && number == 6 {
                    "Religione"
                } else {
                    NUMERIC[usize::from(number) % 4]
                };
                hours.push(crate::timetable::LessonHour {
                    weekday,
                    number,
                    start: time::Time::from_hms(7 + number, 0, 0).unwrap(),
                    end: time::Time::from_hms(8 + number, 0, 0).unwrap(),
                    subject: subject.into(),
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
            holidays: vec![],
        });
        World {
            dir,
            class,
            principal,
            coordinator,
            teacher,
            student,
            other,
        }
    }

    fn ctx<'a>(w: &'a World, actor: PersonId, absences: &'a [(Date, u32)]) -> Context<'a> {
        Context {
            class: w.class,
            year: SchoolYear::starting(2025),
            actor,
            directory: &w.dir,
            settings: Settings::default(),
            absences,
        }
    }

    /// Decides and applies, as `actor`.
    fn run(
        w: &World,
        state: &mut Scrutiny,
        actor: PersonId,
        command: ScrutinyCommand,
    ) -> Result<(), ScrutinyError> {
        run_with(w, state, actor, &[], command)
    }

    fn run_with(
        w: &World,
        state: &mut Scrutiny,
        actor: PersonId,
        absences: &[(Date, u32)],
        command: ScrutinyCommand,
    ) -> Result<(), ScrutinyError> {
        for e in decide(state, &command, &ctx(w, actor, absences))? {
            evolve(state, &e);
        }
        Ok(())
    }

    fn grade(text: &str) -> Mark {
        Mark::Numeric(GradeValue::parse(text).unwrap())
    }

    /// Final grades: `below` of the numeric subjects at 5, the others at 7, religion "buono".
    fn grades(below: usize) -> BTreeMap<String, Mark> {
        let mut grades: BTreeMap<String, Mark> = NUMERIC
            .iter()
            .enumerate()
            .map(|(i, s)| ((*s).to_owned(), grade(if i < below { "5" } else { "7" })))
            .collect();
        grades.insert("Religione".into(), Mark::Judgement(Judgement::Buono));
        grades
    }

    /// The final scrutinio (term 2) open with its session, the student deliberated with
    /// `below` subjects under 6 and conduct `conduct`.
    fn final_scrutiny(w: &World, below: usize, conduct: &str) -> Scrutiny {
        let mut s = Scrutiny::default();
        let chair = w.coordinator;
        run(
            w,
            &mut s,
            chair,
            ScrutinyCommand::Open {
                term: 2,
                level: SchoolLevel::UpperSecondary,
            },
        )
        .unwrap();
        run(w, &mut s, chair, session(w, 2)).unwrap();
        run(
            w,
            &mut s,
            chair,
            ScrutinyCommand::Deliberate {
                term: 2,
                student: w.student,
                grades: grades(below),
                conduct: Some(GradeValue::parse(conduct).unwrap()),
                vote: Vote::Unanimous,
            },
        )
        .unwrap();
        s
    }

    fn session(w: &World, term: u8) -> ScrutinyCommand {
        ScrutinyCommand::RecordSession {
            term,
            date: date!(2026 - 06 - 12),
            attendees: [w.principal, w.coordinator, w.teacher].into(),
            substitutes: BTreeMap::new(),
        }
    }

    fn decide_outcome(outcome: Outcome, student: PersonId) -> ScrutinyCommand {
        ScrutinyCommand::DecideOutcome {
            student,
            outcome,
            vote: Vote::Unanimous,
            reasons: String::new(),
        }
    }

    #[test]
    fn thirty_two_hours_a_week_give_1056_hours_and_a_limit_of_264() {
        let w = world();
        let limit = ctx(&w, w.coordinator, &[]).limit(w.student).unwrap();
        assert_eq!((limit.annual_hours, limit.max_absence_hours), (1056, 264));
    }

    #[test]
    fn a_religion_exemption_lowers_the_annual_hours() {
        let mut w = world();
        for e in directory::decide(
            &w.dir,
            &DirectoryCommand::ExemptFromSubject {
                student: w.student,
                subject: "Religione".into(),
            },
        )
        .unwrap()
        {
            directory::evolve(&mut w.dir, &e);
        }
        let c = ctx(&w, w.coordinator, &[]);
        let limit = c.limit(w.student).unwrap();
        // 31 hours a week: 1023 hours, at most 255 missed; the other student keeps 1056.
        assert_eq!((limit.annual_hours, limit.max_absence_hours), (1023, 255));
        assert_eq!(c.limit(w.other).unwrap().annual_hours, 1056);
        // And the exempt student's religion needs no final grade.
        let mut s = Scrutiny::default();
        let chair = w.coordinator;
        let open = ScrutinyCommand::Open {
            term: 1,
            level: SchoolLevel::UpperSecondary,
        };
        run(&w, &mut s, chair, open).unwrap();
        run(&w, &mut s, chair, session(&w, 1)).unwrap();
        let mut without_religion = grades(0);
        without_religion.remove("Religione");
        let deliberate = |student| ScrutinyCommand::Deliberate {
            term: 1,
            student,
            grades: without_religion.clone(),
            conduct: Some(GradeValue::parse("8").unwrap()),
            vote: Vote::Unanimous,
        };
        run(&w, &mut s, chair, deliberate(w.student)).unwrap();
        assert_eq!(
            run(&w, &mut s, chair, deliberate(w.other)),
            Err(ScrutinyError::MissingGrade("Religione".into()))
        );
    }

    #[test]
    fn a_date_range_exemption_removes_its_hours() {
        let w = world();
        let mut s = final_scrutiny(&w, 0, "8");
        // 270 hours missed: 45 school days of six hours, 30 of them in one illness.
        let mut absences: Vec<(Date, u32)> = (0..15)
            .map(|i| (date!(2025 - 10 - 01) + time::Duration::days(i), 6))
            .collect();
        absences.extend((0..30).map(|i| (date!(2026 - 02 - 02) + time::Duration::days(i), 6)));
        assert_eq!(absences.iter().map(|a| a.1).sum::<u32>(), 270);
        let chair = w.coordinator;
        let admitted = decide_outcome(Outcome::Admitted, w.student);
        assert_eq!(
            run_with(&w, &mut s, chair, &absences, admitted.clone()),
            Err(ScrutinyError::OverLimit {
                counted: 270,
                max: 264
            })
        );
        let exempt = ScrutinyCommand::Exempt {
            term: 2,
            student: w.student,
            exemption: Exemption {
                from: date!(2026 - 02 - 02),
                to: date!(2026 - 03 - 03),
                reason: ExemptionReason::Health,
            },
            vote: Vote::Unanimous,
        };
        run(&w, &mut s, chair, exempt).unwrap();
        // 180 hours exempted: 90 count, under the limit.
        assert_eq!(counted_hours(&absences, &s.exemptions(w.student)), 90);
        run_with(&w, &mut s, chair, &absences, admitted).unwrap();
        assert_eq!(s.outcome(w.student).unwrap().outcome, Outcome::Admitted);
    }

    #[test]
    fn conduct_5_means_not_admitted() {
        let w = world();
        let mut s = final_scrutiny(&w, 0, "5");
        let chair = w.coordinator;
        assert_eq!(
            run(
                &w,
                &mut s,
                chair,
                decide_outcome(Outcome::Admitted, w.student)
            ),
            Err(ScrutinyError::ConductBelowSix)
        );
        run(
            &w,
            &mut s,
            chair,
            decide_outcome(Outcome::NotAdmitted, w.student),
        )
        .unwrap();
        let record = s.outcome(w.student).unwrap();
        assert_eq!(record.proposed, Outcome::NotAdmitted);
    }

    #[test]
    fn conduct_6_in_upper_secondary_means_judgement_suspended_with_the_citizenship_assignment() {
        let w = world();
        let mut s = final_scrutiny(&w, 0, "6");
        let chair = w.coordinator;
        let suspended = Outcome::JudgementSuspended {
            subjects: BTreeSet::new(),
            citizenship: true,
        };
        for refused in [
            Outcome::Admitted,
            Outcome::NotAdmitted,
            Outcome::JudgementSuspended {
                subjects: BTreeSet::new(),
                citizenship: false,
            },
        ] {
            assert_eq!(
                run(&w, &mut s, chair, decide_outcome(refused, w.student)),
                Err(ScrutinyError::ConductSix)
            );
        }
        run(
            &w,
            &mut s,
            chair,
            decide_outcome(suspended.clone(), w.student),
        )
        .unwrap();
        let record = s.outcome(w.student).unwrap();
        assert_eq!(
            (&record.outcome, &record.proposed),
            (&suspended, &suspended)
        );
        // Not in lower secondary: no suspended judgement there.
        let six = GradeValue::parse("6").unwrap();
        assert_eq!(
            propose_outcome(
                SchoolLevel::LowerSecondary,
                false,
                Some(six),
                &BTreeSet::new(),
                3
            ),
            Outcome::Admitted
        );
    }

    #[test]
    fn four_subjects_below_6_with_a_limit_of_three_proposes_not_admitted() {
        let w = world();
        let four: BTreeSet<String> = NUMERIC.iter().map(|s| (*s).to_owned()).collect();
        let eight = Some(GradeValue::parse("8").unwrap());
        assert_eq!(
            propose_outcome(SchoolLevel::UpperSecondary, false, eight, &four, 3),
            Outcome::NotAdmitted
        );
        let three: BTreeSet<String> = four.iter().take(3).cloned().collect();
        assert_eq!(
            propose_outcome(SchoolLevel::UpperSecondary, false, eight, &three, 3),
            Outcome::JudgementSuspended {
                subjects: three.clone(),
                citizenship: false
            }
        );
        // The council may not suspend four; it may admit by vote, with its reasons.
        let mut s = final_scrutiny(&w, 4, "8");
        let chair = w.coordinator;
        let too_many = Outcome::JudgementSuspended {
            subjects: four,
            citizenship: false,
        };
        assert_eq!(
            run(&w, &mut s, chair, decide_outcome(too_many, w.student)),
            Err(ScrutinyError::BadSubjects(3))
        );
        assert_eq!(
            run(
                &w,
                &mut s,
                chair,
                decide_outcome(Outcome::Admitted, w.student)
            ),
            Err(ScrutinyError::ReasonsRequired)
        );
        let by_majority = ScrutinyCommand::DecideOutcome {
            student: w.student,
            outcome: Outcome::Admitted,
            vote: Vote::Majority {
                dissenting: [w.teacher].into(),
            },
            reasons: "progressi costanti nel secondo periodo".into(),
        };
        run(&w, &mut s, chair, by_majority).unwrap();
        let record = s.outcome(w.student).unwrap();
        assert_eq!(record.proposed, Outcome::NotAdmitted);
        assert_eq!(record.outcome, Outcome::Admitted);
    }

    #[test]
    fn a_grade_dated_in_a_closed_term_is_rejected_until_the_principal_reopens() {
        let w = world();
        let mut s = Scrutiny::default();
        let chair = w.coordinator;
        let open = ScrutinyCommand::Open {
            term: 1,
            level: SchoolLevel::UpperSecondary,
        };
        run(&w, &mut s, chair, open).unwrap();
        run(&w, &mut s, chair, session(&w, 1)).unwrap();
        for student in [w.student, w.other] {
            let deliberate = ScrutinyCommand::Deliberate {
                term: 1,
                student,
                grades: grades(0),
                conduct: Some(GradeValue::parse("9").unwrap()),
                vote: Vote::Unanimous,
            };
            run(&w, &mut s, chair, deliberate).unwrap();
        }
        run(&w, &mut s, chair, ScrutinyCommand::Close { term: 1 }).unwrap();
        assert_eq!(s.closed_terms(), BTreeSet::from([0]));
        let give = |closed: &BTreeSet<usize>| {
            let exempt = BTreeSet::new();
            let context = record::Context {
                student: w.student,
                year: SchoolYear::starting(2025),
                teacher: w.coordinator,
                exempt_subjects: &exempt,
                today: date!(2026 - 01 - 20),
                as_principal: false,
                directory: &w.dir,
                closed_terms: closed,
            };
            record::decide(
                &record::Record::default(),
                &RecordCommand::RecordGrade {
                    grade: GradeId::new(),
                    subject: "Matematica".into(),
                    kind: crate::grade::GradeKind::Written,
                    mark: grade("6"),
                    weight: crate::grade::Weight::from_hundredths(100).unwrap(),
                    counted: true,
                    description: String::new(),
                    date: date!(2025 - 11 - 10),
                },
                &context,
            )
        };
        assert!(matches!(
            give(&s.closed_terms()),
            Err(RecordError::Closed(_))
        ));
        let reopen = |reason: &str| ScrutinyCommand::Reopen {
            term: 1,
            reason: reason.into(),
        };
        assert_eq!(
            run(&w, &mut s, chair, reopen("errore materiale")),
            Err(ScrutinyError::NotThePrincipal)
        );
        assert_eq!(
            run(&w, &mut s, w.principal, reopen(" ")),
            Err(ScrutinyError::Text)
        );
        run(&w, &mut s, w.principal, reopen("errore materiale")).unwrap();
        assert!(s.closed_terms().is_empty());
        assert!(give(&s.closed_terms()).is_ok());
        assert_eq!(s.term(1).unwrap().reopened, ["errore materiale"]);
    }

    #[test]
    fn the_principal_publishes_the_report_cards_of_a_closed_term() {
        let w = world();
        let mut s = Scrutiny::default();
        let chair = w.coordinator;
        let open = ScrutinyCommand::Open {
            term: 1,
            level: SchoolLevel::UpperSecondary,
        };
        run(&w, &mut s, chair, open).unwrap();
        let publish = ScrutinyCommand::Publish { term: 1 };
        assert_eq!(
            run(&w, &mut s, w.principal, publish.clone()),
            Err(ScrutinyError::NotClosed)
        );
        run(&w, &mut s, chair, session(&w, 1)).unwrap();
        for student in [w.student, w.other] {
            let deliberate = ScrutinyCommand::Deliberate {
                term: 1,
                student,
                grades: grades(0),
                conduct: Some(GradeValue::parse("9").unwrap()),
                vote: Vote::Unanimous,
            };
            run(&w, &mut s, chair, deliberate).unwrap();
        }
        run(&w, &mut s, chair, ScrutinyCommand::Close { term: 1 }).unwrap();
        assert_eq!(
            run(&w, &mut s, chair, publish.clone()),
            Err(ScrutinyError::NotThePrincipal)
        );
        run(&w, &mut s, w.principal, publish.clone()).unwrap();
        assert!(s.term(1).unwrap().published);
        assert_eq!(
            run(&w, &mut s, w.principal, publish.clone()),
            Err(ScrutinyError::AlreadyPublished)
        );
        // Reopening withdraws them until the term is closed and published again.
        let reopen = ScrutinyCommand::Reopen {
            term: 1,
            reason: "voto di Storia da correggere".into(),
        };
        run(&w, &mut s, w.principal, reopen).unwrap();
        assert!(!s.term(1).unwrap().published);
        assert_eq!(
            run(&w, &mut s, w.principal, publish),
            Err(ScrutinyError::NotClosed)
        );
    }

    #[test]
    fn the_council_is_run_by_the_chair_and_proposals_by_the_subject_teachers() {
        let w = world();
        let mut s = Scrutiny::default();
        let open = |term| ScrutinyCommand::Open {
            term,
            level: SchoolLevel::UpperSecondary,
        };
        assert_eq!(
            run(&w, &mut s, w.teacher, open(1)),
            Err(ScrutinyError::NotTheChair)
        );
        assert_eq!(
            run(&w, &mut s, w.principal, open(3)),
            Err(ScrutinyError::UnknownTerm)
        );
        run(&w, &mut s, w.principal, open(1)).unwrap();
        assert!(!s.term(1).unwrap().is_final);
        let primary = ScrutinyCommand::Open {
            term: 2,
            level: SchoolLevel::Primary,
        };
        assert_eq!(
            run(&w, &mut s, w.principal, primary),
            Err(ScrutinyError::LevelChanged)
        );
        assert_eq!(
            run(&w, &mut s, w.coordinator, open(1)),
            Err(ScrutinyError::AlreadyOpen)
        );
        let propose = |subject: &str, mark| ScrutinyCommand::Propose {
            term: 1,
            student: w.student,
            subject: subject.into(),
            mark,
        };
        assert_eq!(
            run(&w, &mut s, w.teacher, propose("Matematica", grade("6"))),
            Err(ScrutinyError::NotTheSubjectTeacher)
        );
        assert_eq!(
            run(&w, &mut s, w.teacher, propose("Religione", grade("6"))),
            Err(ScrutinyError::BadMark("Religione".into()))
        );
        run(
            &w,
            &mut s,
            w.coordinator,
            propose("Matematica", grade("6½")),
        )
        .unwrap();
        run(&w, &mut s, w.coordinator, propose("Matematica", grade("7"))).unwrap();
        assert_eq!(
            s.term(1).unwrap().proposals[&(w.student, "Matematica".to_owned())],
            (grade("7"), w.coordinator)
        );
        // No deliberation before the session; a dissenter must have been there.
        let deliberate = |vote| ScrutinyCommand::Deliberate {
            term: 1,
            student: w.student,
            grades: grades(0),
            conduct: Some(GradeValue::parse("8").unwrap()),
            vote,
        };
        assert_eq!(
            run(&w, &mut s, w.coordinator, deliberate(Vote::Unanimous)),
            Err(ScrutinyError::NoSession)
        );
        let stranger = PersonId::new();
        let bad_session = ScrutinyCommand::RecordSession {
            term: 1,
            date: date!(2025 - 12 - 22),
            attendees: [w.coordinator, stranger].into(),
            substitutes: BTreeMap::new(),
        };
        assert_eq!(
            run(&w, &mut s, w.coordinator, bad_session),
            Err(ScrutinyError::BadSession)
        );
        run(&w, &mut s, w.coordinator, session(&w, 1)).unwrap();
        let outsider = Vote::Majority {
            dissenting: [stranger].into(),
        };
        assert_eq!(
            run(&w, &mut s, w.coordinator, deliberate(outsider)),
            Err(ScrutinyError::BadVote)
        );
        // A conduct grade is whole.
        let half = ScrutinyCommand::Deliberate {
            term: 1,
            student: w.student,
            grades: grades(0),
            conduct: Some(GradeValue::parse("7½").unwrap()),
            vote: Vote::Unanimous,
        };
        assert_eq!(
            run(&w, &mut s, w.coordinator, half),
            Err(ScrutinyError::Conduct)
        );
        run(&w, &mut s, w.coordinator, deliberate(Vote::Unanimous)).unwrap();
        // Closing waits for every student.
        assert_eq!(
            run(
                &w,
                &mut s,
                w.coordinator,
                ScrutinyCommand::Close { term: 1 }
            ),
            Err(ScrutinyError::Incomplete(1))
        );
        // No outcome before the final scrutinio.
        assert_eq!(
            run(
                &w,
                &mut s,
                w.coordinator,
                decide_outcome(Outcome::Admitted, w.student)
            ),
            Err(ScrutinyError::NotFinal)
        );
    }

    #[test]
    fn the_integration_scrutinio_resolves_a_suspended_judgement() {
        let w = world();
        let mut s = final_scrutiny(&w, 2, "8");
        let chair = w.coordinator;
        let suspended = Outcome::JudgementSuspended {
            subjects: ["Matematica".to_owned(), "Italiano".to_owned()].into(),
            citizenship: false,
        };
        let partial = Outcome::JudgementSuspended {
            subjects: ["Matematica".to_owned()].into(),
            citizenship: false,
        };
        assert_eq!(
            run(&w, &mut s, chair, decide_outcome(partial, w.student)),
            Err(ScrutinyError::BadSubjects(3)),
            "Italiano is below 6 too"
        );
        run(&w, &mut s, chair, decide_outcome(suspended, w.student)).unwrap();
        // The grades the outcome was decided on no longer change under it.
        let again = ScrutinyCommand::Deliberate {
            term: 2,
            student: w.student,
            grades: grades(0),
            conduct: Some(GradeValue::parse("5").unwrap()),
            vote: Vote::Unanimous,
        };
        assert_eq!(
            run(&w, &mut s, chair, again),
            Err(ScrutinyError::OutcomeDecided)
        );
        let resolve = |student| ScrutinyCommand::ResolveSuspended {
            student,
            admitted: true,
            vote: Vote::Unanimous,
        };
        assert_eq!(
            run(&w, &mut s, chair, resolve(w.student)),
            Err(ScrutinyError::NothingSuspended),
            "not before the final scrutinio is closed"
        );
        // The other student: conduct 6, the citizenship assignment alone.
        let other = ScrutinyCommand::Deliberate {
            term: 2,
            student: w.other,
            grades: grades(0),
            conduct: Some(GradeValue::parse("6").unwrap()),
            vote: Vote::Unanimous,
        };
        run(&w, &mut s, chair, other).unwrap();
        assert_eq!(
            run(&w, &mut s, chair, ScrutinyCommand::Close { term: 2 }),
            Err(ScrutinyError::Incomplete(1)),
            "every outcome first"
        );
        let citizenship = Outcome::JudgementSuspended {
            subjects: BTreeSet::new(),
            citizenship: true,
        };
        run(&w, &mut s, chair, decide_outcome(citizenship, w.other)).unwrap();
        run(&w, &mut s, chair, ScrutinyCommand::Close { term: 2 }).unwrap();
        // The integration scrutinio sits on its own day, after the final one, with its own
        // members: its votes are checked against them.
        assert_eq!(
            run(&w, &mut s, chair, resolve(w.student)),
            Err(ScrutinyError::NoIntegrationSession)
        );
        let integration =
            |date, attendees: &[PersonId]| ScrutinyCommand::RecordIntegrationSession {
                date,
                attendees: attendees.iter().copied().collect(),
                substitutes: BTreeMap::new(),
            };
        assert_eq!(
            run(
                &w,
                &mut s,
                chair,
                integration(date!(2026 - 06 - 12), &[w.principal])
            ),
            Err(ScrutinyError::IntegrationTooEarly)
        );
        assert_eq!(
            run(&w, &mut s, chair, integration(date!(2026 - 08 - 31), &[])),
            Err(ScrutinyError::BadSession)
        );
        run(
            &w,
            &mut s,
            chair,
            integration(date!(2026 - 08 - 31), &[w.principal, w.coordinator]),
        )
        .unwrap();
        assert_eq!(s.integration().unwrap().date, date!(2026 - 08 - 31));
        let against_the_absent = ScrutinyCommand::ResolveSuspended {
            student: w.student,
            admitted: true,
            vote: Vote::Majority {
                dissenting: [w.teacher].into(),
            },
        };
        assert_eq!(
            run(&w, &mut s, chair, against_the_absent),
            Err(ScrutinyError::BadVote),
            "the teacher sat in June, not at the integration"
        );
        run(&w, &mut s, chair, resolve(w.student)).unwrap();
        assert_eq!(s.outcome(w.student).unwrap().resolved, Some(true));
        assert_eq!(
            run(&w, &mut s, chair, resolve(w.student)),
            Err(ScrutinyError::NothingSuspended)
        );
        assert_eq!(
            run(
                &w,
                &mut s,
                chair,
                integration(date!(2026 - 09 - 01), &[w.principal])
            ),
            Err(ScrutinyError::IntegrationDecided),
            "its members voted a resolution already"
        );
        run(&w, &mut s, chair, resolve(w.other)).unwrap();
        assert_eq!(
            run(
                &w,
                &mut s,
                chair,
                integration(date!(2026 - 09 - 01), &[w.principal])
            ),
            Err(ScrutinyError::NothingSuspended),
            "nothing left to resolve"
        );
    }

    #[test]
    fn a_withdrawn_outcome_lets_the_reopened_council_correct_the_grades() {
        let w = world();
        let mut s = final_scrutiny(&w, 2, "8");
        let chair = w.coordinator;
        let suspended = Outcome::JudgementSuspended {
            subjects: ["Matematica".to_owned(), "Italiano".to_owned()].into(),
            citizenship: false,
        };
        let withdraw = |student| ScrutinyCommand::WithdrawOutcome {
            student,
            reason: "voto di Italiano trascritto male".into(),
        };
        assert_eq!(
            run(&w, &mut s, chair, withdraw(w.student)),
            Err(ScrutinyError::NoOutcome)
        );
        run(&w, &mut s, chair, decide_outcome(suspended, w.student)).unwrap();
        let corrected = ScrutinyCommand::Deliberate {
            term: 2,
            student: w.student,
            grades: grades(1),
            conduct: Some(GradeValue::parse("8").unwrap()),
            vote: Vote::Unanimous,
        };
        assert_eq!(
            run(&w, &mut s, chair, corrected.clone()),
            Err(ScrutinyError::OutcomeDecided)
        );
        let other = ScrutinyCommand::Deliberate {
            term: 2,
            student: w.other,
            grades: grades(0),
            conduct: Some(GradeValue::parse("9").unwrap()),
            vote: Vote::Unanimous,
        };
        run(&w, &mut s, chair, other).unwrap();
        run(
            &w,
            &mut s,
            chair,
            decide_outcome(Outcome::Admitted, w.other),
        )
        .unwrap();
        run(&w, &mut s, chair, ScrutinyCommand::Close { term: 2 }).unwrap();
        assert_eq!(
            run(&w, &mut s, chair, withdraw(w.student)),
            Err(ScrutinyError::NotOpen),
            "a closed scrutinio is reopened first"
        );
        run(
            &w,
            &mut s,
            w.principal,
            ScrutinyCommand::Reopen {
                term: 2,
                reason: "errore materiale".into(),
            },
        )
        .unwrap();
        assert_eq!(
            run(&w, &mut s, w.teacher, withdraw(w.student)),
            Err(ScrutinyError::NotTheChair)
        );
        let no_reason = ScrutinyCommand::WithdrawOutcome {
            student: w.student,
            reason: " ".into(),
        };
        assert_eq!(run(&w, &mut s, chair, no_reason), Err(ScrutinyError::Text));
        run(&w, &mut s, chair, withdraw(w.student)).unwrap();
        assert_eq!(s.outcome(w.student), None);
        assert_eq!(
            s.withdrawn_outcomes(),
            [(w.student, "voto di Italiano trascritto male".to_owned())]
        );
        assert_eq!(
            run(&w, &mut s, chair, ScrutinyCommand::Close { term: 2 }),
            Err(ScrutinyError::Incomplete(1)),
            "the outcome is decided again before closing"
        );
        run(&w, &mut s, chair, corrected).unwrap();
        let one_below = Outcome::JudgementSuspended {
            subjects: ["Matematica".to_owned()].into(),
            citizenship: false,
        };
        run(
            &w,
            &mut s,
            chair,
            decide_outcome(one_below.clone(), w.student),
        )
        .unwrap();
        assert_eq!(s.outcome(w.student).unwrap().outcome, one_below);
        run(&w, &mut s, chair, ScrutinyCommand::Close { term: 2 }).unwrap();
    }

    #[test]
    fn events_read_back_as_they_were_written() {
        use crate::StoredEvent as _;
        let w = world();
        let event = ScrutinyEvent::OutcomeDeliberated {
            student: w.student,
            outcome: Outcome::JudgementSuspended {
                subjects: ["Matematica".to_owned()].into(),
                citizenship: false,
            },
            proposed: Outcome::NotAdmitted,
            vote: Vote::Majority {
                dissenting: [w.teacher].into(),
            },
            reasons: "x".into(),
        };
        let back = ScrutinyEvent::from_stored(event.type_name(), &event.data()).unwrap();
        assert_eq!(back, event);
        let opened = ScrutinyEvent::ScrutinyOpened {
            term: 2,
            level: SchoolLevel::UpperSecondary,
            is_final: true,
        };
        assert_eq!(opened.data()["final"], true);
    }
}
