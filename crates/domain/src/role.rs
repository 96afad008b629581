//! The roles of the register (see `docs/glossary.md` for the Italian terms).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// What a person acts as when they use the register.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Dirigente scolastico: everything in their school.
    Principal,
    /// Segreteria didattica: enrolment, classes, timetables, accounts.
    Secretary,
    /// Docente: writes the register for their classes and subjects.
    Teacher,
    /// Genitore / tutore: reads their own children's data, justifies, acknowledges.
    Guardian,
    /// Studente: reads their own data; justifies their own absences when of age.
    Student,
    /// Auditor / DPO (responsabile protezione dati): reads history, writes nothing.
    Auditor,
    /// Amministratore: exports, imports, keys.
    Admin,
    /// The software itself (migrations, scheduled jobs such as retention).
    System,
}

impl Role {
    /// Every role, in a stable order.
    pub const ALL: [Role; 8] = [
        Role::Principal,
        Role::Secretary,
        Role::Teacher,
        Role::Guardian,
        Role::Student,
        Role::Auditor,
        Role::Admin,
        Role::System,
    ];

    /// The roles a person can hold (every role but [`Role::System`]), in [`Role::ALL`] order.
    pub const PERSON_ROLES: [Role; 7] = [
        Role::Principal,
        Role::Secretary,
        Role::Teacher,
        Role::Guardian,
        Role::Student,
        Role::Auditor,
        Role::Admin,
    ];

    /// The stable lowercase name used in events, tokens and the API.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Principal => "principal",
            Role::Secretary => "secretary",
            Role::Teacher => "teacher",
            Role::Guardian => "guardian",
            Role::Student => "student",
            Role::Auditor => "auditor",
            Role::Admin => "admin",
            Role::System => "system",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role name that is not one of [`Role::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role {0:?}")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| UnknownRole(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_role_round_trips_through_its_name() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>().unwrap(), role);
        }
    }

    #[test]
    fn person_roles_are_all_but_the_system() {
        let all: Vec<Role> = Role::ALL
            .into_iter()
            .filter(|r| *r != Role::System)
            .collect();
        assert_eq!(all, Role::PERSON_ROLES);
    }

    #[test]
    fn an_unknown_role_is_rejected() {
        assert_eq!(
            "janitor".parse::<Role>(),
            Err(UnknownRole("janitor".into()))
        );
    }
}
