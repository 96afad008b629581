//! Versioned SQL migrations, one list per backend (`migrations/postgres`, `migrations/sqlite`).
//!
//! Each applied migration is recorded with its SHA-256 checksum in `registro_migrations`. A
//! migration is never edited once released: an applied migration whose checksum differs from
//! the binary's, or an applied version the binary does not know, stops the service.

use sha2::{Digest, Sha256};

use crate::error::StoreError;

/// One migration, embedded in the binary.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// The version, from the file name's number.
    pub version: u32,
    /// The file name.
    pub name: &'static str,
    /// The SQL.
    pub sql: &'static str,
}

impl Migration {
    /// The SHA-256 of the SQL, in hex.
    #[must_use]
    pub fn checksum(&self) -> String {
        hex::encode(Sha256::digest(self.sql.as_bytes()))
    }
}

/// A migration recorded as applied in a database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedMigration {
    /// Its version.
    pub version: u32,
    /// The checksum recorded when it was applied.
    pub checksum: String,
}

/// Where a database stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationStatus {
    /// The versions applied, in order.
    pub applied: Vec<u32>,
    /// The versions this binary would apply.
    pub pending: Vec<u32>,
}

impl MigrationStatus {
    /// True when nothing is pending.
    #[must_use]
    pub fn is_current(&self) -> bool {
        self.pending.is_empty()
    }
}

/// The PostgreSQL migrations.
pub const POSTGRES: &[Migration] = &[
    Migration {
        version: 1,
        name: "0001_event_store.sql",
        sql: include_str!("../../../migrations/postgres/0001_event_store.sql"),
    },
    Migration {
        version: 2,
        name: "0002_row_level_security.sql",
        sql: include_str!("../../../migrations/postgres/0002_row_level_security.sql"),
    },
    Migration {
        version: 3,
        name: "0003_attachments.sql",
        sql: include_str!("../../../migrations/postgres/0003_attachments.sql"),
    },
    Migration {
        version: 4,
        name: "0004_projections.sql",
        sql: include_str!("../../../migrations/postgres/0004_projections.sql"),
    },
    Migration {
        version: 5,
        name: "0005_projection_stops.sql",
        sql: include_str!("../../../migrations/postgres/0005_projection_stops.sql"),
    },
    Migration {
        version: 6,
        name: "0006_predicted_append.sql",
        sql: include_str!("../../../migrations/postgres/0006_predicted_append.sql"),
    },
];

/// The SQLite migrations.
pub const SQLITE: &[Migration] = &[
    Migration {
        version: 1,
        name: "0001_event_store.sql",
        sql: include_str!("../../../migrations/sqlite/0001_event_store.sql"),
    },
    Migration {
        version: 2,
        name: "0002_attachments.sql",
        sql: include_str!("../../../migrations/sqlite/0002_attachments.sql"),
    },
    Migration {
        version: 3,
        name: "0003_projections.sql",
        sql: include_str!("../../../migrations/sqlite/0003_projections.sql"),
    },
    Migration {
        version: 4,
        name: "0004_projection_stops.sql",
        sql: include_str!("../../../migrations/sqlite/0004_projection_stops.sql"),
    },
];

/// Compares what a database has applied with what the binary knows.
///
/// # Errors
/// [`StoreError::Migration`] when an applied migration's checksum differs (it was edited) or
/// an applied version is unknown (the database was migrated by a newer binary).
pub fn check(
    known: &[Migration],
    applied: &[AppliedMigration],
) -> Result<MigrationStatus, StoreError> {
    for a in applied {
        match known.iter().find(|m| m.version == a.version) {
            None => {
                return Err(StoreError::Migration(format!(
                    "the database has migration {} applied, which this binary does not know: \
                     it was migrated by a newer version of registro",
                    a.version
                )));
            }
            Some(m) if m.checksum() != a.checksum => {
                return Err(StoreError::Migration(format!(
                    "migration {} ({}) was edited after it was applied: its checksum is {} but \
                     the database recorded {}; released migrations must never change",
                    m.version,
                    m.name,
                    m.checksum(),
                    a.checksum
                )));
            }
            Some(_) => {}
        }
    }
    Ok(MigrationStatus {
        applied: applied.iter().map(|a| a.version).collect(),
        pending: known
            .iter()
            .filter(|m| !applied.iter().any(|a| a.version == m.version))
            .map(|m| m.version)
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const KNOWN: &[Migration] = &[
        Migration {
            version: 1,
            name: "0001_a.sql",
            sql: "CREATE TABLE a (x int);",
        },
        Migration {
            version: 2,
            name: "0002_b.sql",
            sql: "CREATE TABLE b (x int);",
        },
    ];

    fn applied(version: u32, sql: &'static str) -> AppliedMigration {
        AppliedMigration {
            version,
            checksum: Migration {
                version,
                name: "",
                sql,
            }
            .checksum(),
        }
    }

    #[test]
    fn pending_migrations_are_those_not_applied() {
        let s = check(KNOWN, &[applied(1, KNOWN[0].sql)]).unwrap();
        assert_eq!(s.applied, vec![1]);
        assert_eq!(s.pending, vec![2]);
        assert!(!s.is_current());
        assert!(
            check(KNOWN, &[applied(1, KNOWN[0].sql), applied(2, KNOWN[1].sql)])
                .unwrap()
                .is_current()
        );
    }

    #[test]
    fn an_edited_migration_is_refused() {
        let err = check(KNOWN, &[applied(1, "CREATE TABLE a (x bigint);")]).unwrap_err();
        assert!(err.to_string().contains("was edited"), "{err}");
    }

    #[test]
    fn an_unknown_applied_migration_is_refused() {
        let err = check(KNOWN, &[applied(3, "x")]).unwrap_err();
        assert!(err.to_string().contains("newer version"), "{err}");
    }

    #[test]
    fn every_migration_file_is_embedded() {
        for (dir, list) in [("postgres", POSTGRES), ("sqlite", SQLITE)] {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../migrations")
                .join(dir);
            let mut files: Vec<String> = std::fs::read_dir(&path)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|name| name.ends_with(".sql"))
                .collect();
            files.sort();
            let embedded: Vec<&str> = list.iter().map(|m| m.name).collect();
            assert_eq!(
                files,
                embedded,
                "every file in {} is in the list",
                path.display()
            );
        }
    }

    #[test]
    fn embedded_migrations_are_numbered_from_one_without_gaps() {
        for list in [POSTGRES, SQLITE] {
            for (i, m) in list.iter().enumerate() {
                assert_eq!(m.version as usize, i + 1);
                assert!(m.name.starts_with(&format!("{:04}_", m.version)));
            }
        }
    }
}
