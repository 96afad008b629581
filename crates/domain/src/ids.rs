//! Typed identifiers. Every id is a UUID wrapped in its own type, so a school id can never be
//! passed where a person id is expected.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// A new, time-ordered (UUIDv7) identifier.
            #[must_use]
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }

            /// Wraps an existing UUID.
            #[must_use]
            pub const fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }

            /// The UUID inside.
            #[must_use]
            pub const fn as_uuid(&self) -> &Uuid {
                &self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                // Lowercase, hyphenated: the form used in canonical (hashed) bytes.
                fmt::Display::fmt(&self.0.hyphenated(), f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0.hyphenated())
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }

        impl From<Uuid> for $name {
            fn from(uuid: Uuid) -> Self {
                Self(uuid)
            }
        }

        impl From<$name> for Uuid {
            fn from(id: $name) -> Self {
                id.0
            }
        }
    };
}

uuid_id!(
    /// A school (istituzione scolastica). Every fact belongs to exactly one school and nothing
    /// crosses schools.
    SchoolId
);
uuid_id!(
    /// A person known to a school: staff member, student or family member. Also the data
    /// subject (interessato) whose sealed data is encrypted with a key of its own.
    PersonId
);
uuid_id!(
    /// A class (classe, e.g. "3A liceo scientifico") of one school year.
    ClassId
);
uuid_id!(
    /// One grade (voto) of a student, kept through its corrections and annulment.
    GradeId
);
uuid_id!(
    /// One attendance entry of a student: an absence, a late entry or an early exit.
    AttendanceId
);
uuid_id!(
    /// Homework (compiti assegnati) set for a class.
    HomeworkId
);
uuid_id!(
    /// A test (verifica) scheduled for a class.
    TestId
);
uuid_id!(
    /// A disciplinary note, an annotation or a sanction in a student's record.
    NoteId
);
uuid_id!(
    /// A slot a teacher offers for parent-teacher meetings (colloqui).
    SlotId
);
uuid_id!(
    /// A communication (circolare or avviso) to an audience of families, students or staff.
    CommunicationId
);
uuid_id!(
    /// One stored event.
    EventId
);

/// The SHA-256 of a file's content (an attachment, allegato), as 64 lowercase hex digits.
/// Attachments are stored and referenced by it, so the events that name one pin its bytes.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ContentHash([u8; 32]);

impl ContentHash {
    /// Wraps a digest.
    #[must_use]
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The digest.
    #[must_use]
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

/// A content hash that is not 64 lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a content hash is 64 lowercase hexadecimal digits (SHA-256)")]
pub struct BadContentHash;

impl FromStr for ContentHash {
    type Err = BadContentHash;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let digit = |b: u8| match b {
            b'0'..=b'9' => Ok(b - b'0'),
            b'a'..=b'f' => Ok(b - b'a' + 10),
            _ => Err(BadContentHash),
        };
        let bytes = s.as_bytes();
        if bytes.len() != 64 {
            return Err(BadContentHash);
        }
        let mut out = [0u8; 32];
        for (i, pair) in bytes.chunks_exact(2).enumerate() {
            out[i] = digit(pair[0])? << 4 | digit(pair[1])?;
        }
        Ok(Self(out))
    }
}

impl fmt::Display for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContentHash({self})")
    }
}

impl Serialize for ContentHash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ContentHash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}
uuid_id!(
    /// Ties together all the events caused, directly or not, by one request.
    CorrelationId
);
uuid_id!(
    /// The command or event that directly caused an event.
    CausationId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_their_text_form() {
        let id = SchoolId::new();
        let parsed: SchoolId = id.to_string().parse().unwrap();
        assert_eq!(id, parsed);
        assert_eq!(id.to_string(), id.as_uuid().hyphenated().to_string());
    }

    #[test]
    fn new_ids_are_version_7_and_time_ordered() {
        let a = EventId::new();
        let b = EventId::new();
        assert_eq!(a.as_uuid().get_version_num(), 7);
        assert!(a < b);
    }

    #[test]
    fn content_hashes_round_trip_as_lowercase_hex_and_nothing_else_parses() {
        let text = "00ff10a9".repeat(8);
        let hash: ContentHash = text.parse().unwrap();
        assert_eq!(hash.as_bytes()[1], 0xff);
        assert_eq!(hash.to_string(), text);
        assert_eq!(
            serde_json::to_value(hash).unwrap(),
            serde_json::Value::String(text.clone())
        );
        assert!(text.to_uppercase().parse::<ContentHash>().is_err());
        assert!(text[..62].parse::<ContentHash>().is_err());
        assert!(format!("{}zz", &text[..62]).parse::<ContentHash>().is_err());
    }

    #[test]
    fn a_malformed_id_is_rejected() {
        assert!("not-a-uuid".parse::<PersonId>().is_err());
    }
}
