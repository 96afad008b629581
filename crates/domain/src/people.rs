//! The people of a school as domain facts (anagrafica): who they are (by fiscal code), which
//! roles they hold, and which guardians are linked to which students.
//!
//! All of a school's people live in one stream (`people-<school>`), because the invariant "one
//! person per fiscal code" spans all of them. The secretary (segreteria) registers people and
//! links guardians; everything is an event, nothing is edited.
//!
//! One person may hold several roles in one school (a teacher who is also a parent there), and
//! separated parents are two people, each with their own link to the child.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use crate::{FiscalCode, PersonId, Role};

/// The longest name accepted, in characters.
pub const MAX_NAME_CHARS: usize = 100;

/// What the secretary asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeopleCommand {
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
}

/// What happened. Stored as events (`event_type` = the variant name, `data` = its fields).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum PeopleEvent {
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
}

impl PeopleEvent {
    /// The event's type name, as stored.
    #[must_use]
    pub const fn type_name(&self) -> &'static str {
        match self {
            Self::PersonRegistered { .. } => "PersonRegistered",
            Self::RoleGranted { .. } => "RoleGranted",
            Self::RoleRevoked { .. } => "RoleRevoked",
            Self::GuardianLinked { .. } => "GuardianLinked",
            Self::GuardianUnlinked { .. } => "GuardianUnlinked",
        }
    }
}

/// Why a command was refused. Shown to the secretary, in Italian.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeopleError {
    /// The fiscal code (or an omocodic variant of it) belongs to someone already registered.
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
    #[error("nome o cognome mancante o più lungo di {MAX_NAME_CHARS} caratteri")]
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
}

/// One registered person, as the decisions need them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    /// Their fiscal code, as issued.
    pub fiscal_code: FiscalCode,
    /// The roles they hold now.
    pub roles: BTreeSet<Role>,
}

/// The state of a school's people stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SchoolPeople {
    people: BTreeMap<PersonId, Person>,
    /// Fiscal codes without omocodia, to find the same person under a variant code.
    by_code: HashMap<String, PersonId>,
    links: BTreeSet<(PersonId, PersonId)>,
}

impl SchoolPeople {
    /// The person, if registered.
    #[must_use]
    pub fn person(&self, id: PersonId) -> Option<&Person> {
        self.people.get(&id)
    }

    /// Who has this fiscal code (or an omocodic variant of it).
    #[must_use]
    pub fn by_fiscal_code(&self, code: &FiscalCode) -> Option<PersonId> {
        self.by_code.get(&code.without_omocodia()).copied()
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

    fn holds(&self, id: PersonId, role: Role) -> Result<bool, PeopleError> {
        self.people
            .get(&id)
            .map(|p| p.roles.contains(&role))
            .ok_or(PeopleError::UnknownPerson(id))
    }
}

fn clean_name(name: &str) -> Result<String, PeopleError> {
    let name = name.split_whitespace().collect::<Vec<_>>().join(" ");
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
        return Err(PeopleError::BadName);
    }
    Ok(name)
}

/// Decides what a command means, given the state. Pure: no clock, no IO.
///
/// # Errors
/// [`PeopleError`] when the command breaks a rule; nothing is to be written then.
pub fn decide(
    state: &SchoolPeople,
    command: &PeopleCommand,
) -> Result<Vec<PeopleEvent>, PeopleError> {
    use PeopleCommand as C;
    use PeopleEvent as E;
    let event = match command {
        C::Register {
            person,
            fiscal_code,
            family_name,
            given_name,
            role,
        } => {
            if state.people.contains_key(person) {
                return Err(PeopleError::AlreadyRegistered);
            }
            if let Some(existing) = state.by_fiscal_code(fiscal_code) {
                return Err(PeopleError::FiscalCodeTaken { existing });
            }
            if *role == Role::System {
                return Err(PeopleError::NotAPersonRole);
            }
            E::PersonRegistered {
                person: *person,
                fiscal_code: fiscal_code.clone(),
                family_name: clean_name(family_name)?,
                given_name: clean_name(given_name)?,
                role: *role,
            }
        }
        C::GrantRole { person, role } => {
            if *role == Role::System {
                return Err(PeopleError::NotAPersonRole);
            }
            if state.holds(*person, *role)? {
                return Err(PeopleError::RoleHeld);
            }
            E::RoleGranted {
                person: *person,
                role: *role,
            }
        }
        C::RevokeRole { person, role } => {
            if !state.holds(*person, *role)? {
                return Err(PeopleError::RoleNotHeld);
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
                return Err(PeopleError::NotGuardianAndStudent);
            }
            if state.is_linked(*guardian, *student) {
                return Err(PeopleError::AlreadyLinked);
            }
            E::GuardianLinked {
                guardian: *guardian,
                student: *student,
            }
        }
        C::UnlinkGuardian { guardian, student } => {
            if !state.is_linked(*guardian, *student) {
                return Err(PeopleError::NotLinked);
            }
            E::GuardianUnlinked {
                guardian: *guardian,
                student: *student,
            }
        }
    };
    Ok(vec![event])
}

/// Applies an event to the state. Events are facts: applying never fails.
pub fn evolve(state: &mut SchoolPeople, event: &PeopleEvent) {
    use PeopleEvent as E;
    match event {
        E::PersonRegistered {
            person,
            fiscal_code,
            role,
            ..
        } => {
            state
                .by_code
                .insert(fiscal_code.without_omocodia(), *person);
            state.people.insert(
                *person,
                Person {
                    fiscal_code: fiscal_code.clone(),
                    roles: BTreeSet::from([*role]),
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Synthetic codes: surname XXX, name YYY, born in "country" Z999 (none has that code).
    fn code(date: &str) -> FiscalCode {
        FiscalCode::with_check_character(&format!("XXXYYY{date}Z999")).unwrap()
    }

    fn register(person: PersonId, date: &str, role: Role) -> PeopleCommand {
        PeopleCommand::Register {
            person,
            fiscal_code: code(date),
            family_name: "Rossi".into(),
            given_name: "Anna".into(),
            role,
        }
    }

    /// Given these commands (each must succeed), when `command`, then the result.
    fn given_when(
        given: &[PeopleCommand],
        command: &PeopleCommand,
    ) -> Result<Vec<PeopleEvent>, PeopleError> {
        let mut state = SchoolPeople::default();
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
        if let PeopleCommand::Register {
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
            Ok(vec![PeopleEvent::PersonRegistered {
                person: p,
                fiscal_code: code("80A01"),
                family_name: "De Luca".into(),
                given_name: "Maria Grazia".into(),
                role: Role::Teacher,
            }])
        );
    }

    #[test]
    fn a_fiscal_code_is_registered_once_even_under_an_omocodic_variant() {
        let first = PersonId::new();
        let again = register(PersonId::new(), "80A01", Role::Guardian);
        let given = [register(first, "80A01", Role::Teacher)];
        assert_eq!(
            given_when(&given, &again),
            Err(PeopleError::FiscalCodeTaken { existing: first })
        );
        let variant = FiscalCode::with_check_character("XXXYYY80A01Z99V").unwrap();
        let omocodic = PeopleCommand::Register {
            person: PersonId::new(),
            fiscal_code: variant,
            family_name: "Rossi".into(),
            given_name: "Anna".into(),
            role: Role::Guardian,
        };
        assert_eq!(
            given_when(&given, &omocodic),
            Err(PeopleError::FiscalCodeTaken { existing: first })
        );
    }

    #[test]
    fn registration_refuses_reused_ids_bad_names_and_the_system_role() {
        let p = PersonId::new();
        assert_eq!(
            given_when(
                &[register(p, "80A01", Role::Teacher)],
                &register(p, "81A01", Role::Teacher)
            ),
            Err(PeopleError::AlreadyRegistered)
        );
        assert_eq!(
            given_when(&[], &register(p, "80A01", Role::System)),
            Err(PeopleError::NotAPersonRole)
        );
        let mut blank = register(p, "80A01", Role::Teacher);
        if let PeopleCommand::Register { given_name, .. } = &mut blank {
            *given_name = "   ".into();
        }
        assert_eq!(given_when(&[], &blank), Err(PeopleError::BadName));
    }

    #[test]
    fn a_teacher_can_also_be_a_parent_at_the_same_school() {
        let p = PersonId::new();
        let given = [register(p, "80A01", Role::Teacher)];
        let grant = PeopleCommand::GrantRole {
            person: p,
            role: Role::Guardian,
        };
        assert_eq!(
            given_when(&given, &grant),
            Ok(vec![PeopleEvent::RoleGranted {
                person: p,
                role: Role::Guardian
            }])
        );
        let twice = [register(p, "80A01", Role::Teacher), grant.clone()];
        assert_eq!(given_when(&twice, &grant), Err(PeopleError::RoleHeld));
        let revoke = PeopleCommand::RevokeRole {
            person: p,
            role: Role::Admin,
        };
        assert_eq!(given_when(&twice, &revoke), Err(PeopleError::RoleNotHeld));
        let unknown = PeopleCommand::GrantRole {
            person: PersonId::new(),
            role: Role::Teacher,
        };
        assert!(matches!(
            given_when(&twice, &unknown),
            Err(PeopleError::UnknownPerson(_))
        ));
    }

    #[test]
    fn separated_parents_each_link_to_their_child() {
        let (mother, father, child) = (PersonId::new(), PersonId::new(), PersonId::new());
        let given = [
            register(mother, "75M45", Role::Guardian),
            register(father, "74C10", Role::Guardian),
            register(child, "12A41", Role::Student),
            PeopleCommand::LinkGuardian {
                guardian: mother,
                student: child,
            },
        ];
        let link_father = PeopleCommand::LinkGuardian {
            guardian: father,
            student: child,
        };
        assert_eq!(
            given_when(&given, &link_father),
            Ok(vec![PeopleEvent::GuardianLinked {
                guardian: father,
                student: child
            }])
        );
        assert_eq!(
            given_when(&given, &given[3]),
            Err(PeopleError::AlreadyLinked)
        );

        // The state answers who is linked to whom.
        let mut state = SchoolPeople::default();
        for c in given.iter().chain([&link_father]) {
            for e in decide(&state, c).unwrap() {
                evolve(&mut state, &e);
            }
        }
        assert!(state.is_linked(mother, child) && state.is_linked(father, child));
        assert_eq!(state.students_of(mother).collect::<Vec<_>>(), vec![child]);
        assert_eq!(state.by_fiscal_code(&code("12A41")), Some(child));

        // A court order ends the father's link; the mother's stays.
        let unlink = PeopleCommand::UnlinkGuardian {
            guardian: father,
            student: child,
        };
        for e in decide(&state, &unlink).unwrap() {
            evolve(&mut state, &e);
        }
        assert!(!state.is_linked(father, child) && state.is_linked(mother, child));
        assert_eq!(decide(&state, &unlink), Err(PeopleError::NotLinked));
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
            let cmd = PeopleCommand::LinkGuardian {
                guardian: g,
                student: s,
            };
            assert_eq!(
                given_when(&given, &cmd),
                Err(PeopleError::NotGuardianAndStudent),
                "{g:?} {s:?}"
            );
        }
    }

    #[test]
    fn events_are_stored_with_their_type_and_fields() {
        let p = PersonId::new();
        let e = PeopleEvent::RoleGranted {
            person: p,
            role: Role::Auditor,
        };
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["type"], e.type_name());
        assert_eq!(json["data"]["role"], "auditor");
        assert_eq!(serde_json::from_value::<PeopleEvent>(json).unwrap(), e);
    }
}
