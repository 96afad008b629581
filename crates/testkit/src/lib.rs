//! Test support for integration tests: real databases over real connections.
//!
//! * [`pg::TestDb`]: a fresh PostgreSQL database per test, cloned from a template migrated once
//!   per migration set. The server is, in order: `DATABASE_URL` when set; a server already
//!   listening on 127.0.0.1:5432 that accepts `postgres` without a password; otherwise a private
//!   throwaway cluster started with the machine's `initdb`/`pg_ctl` (as the `postgres` user when
//!   run as root, since PostgreSQL refuses to run as root; `REGISTRO_TEST_PRIVATE_PG=1` forces
//!   this path). Without any of them the tests fail
//!   and say how to install PostgreSQL; they never skip.
//! * [`pg::TestDb::app_url`]: the same database for [`pg::APP_ROLE`], an ordinary login role
//!   that row-level security holds (superusers and `BYPASSRLS` roles are never held by it), as
//!   registro runs in production. [`pg::TestDb::url`] and [`pg::TestDb::client`] stay the
//!   administrator's; the client sees every school's rows. With `DATABASE_URL` naming an
//!   administrator that is not a superuser, it needs `CREATEDB`, `CREATEROLE` (for the role)
//!   and membership in `pg_signal_backend` (to drop a test database while the role's
//!   connections close).
//! * [`TempDir`]: a directory removed when dropped, for SQLite files.

pub mod pg;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use registro_domain::{PersonId, Role, SchoolId};
use registro_store::sqlite::SqliteStore;
use registro_store::{
    AppendRequest, CommandMetadata, EventStore, EventType, ExpectedVersion, MasterKey, NewEvent,
    StreamId,
};

/// A directory under the system's temporary directory, removed with its contents on drop.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    /// Creates a new, empty directory.
    ///
    /// # Panics
    /// If the directory cannot be created.
    #[must_use]
    pub fn new() -> Self {
        let path =
            std::env::temp_dir().join(format!("registro-test-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&path).expect("create a temporary directory");
        Self(path)
    }

    /// The directory.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Default for TempDir {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A fresh random master key for a test.
#[must_use]
pub fn master_key() -> MasterKey {
    MasterKey::generate()
}

/// A migrated SQLite store on a file of its own, kept while the directory lives.
///
/// # Panics
/// If the file cannot be opened or migrated.
pub async fn sqlite_store() -> (TempDir, Arc<dyn EventStore>) {
    let dir = TempDir::new();
    let store = SqliteStore::open(&dir.path().join("registro.db"), master_key())
        .await
        .expect("open a SQLite store");
    store.migrate().await.expect("migrate the SQLite store");
    (dir, Arc::new(store))
}

/// Appends `events` (each a type and its data) to `stream` of `school` in one transaction,
/// whatever the stream's version, as a teacher would: for projection tests that write events
/// without the domain's decisions.
///
/// # Panics
/// If a name is invalid or the append fails.
pub async fn append_json(
    store: &dyn EventStore,
    school: SchoolId,
    stream: &str,
    events: &[(&str, serde_json::Value)],
) {
    let now = time::OffsetDateTime::now_utc();
    store
        .append(AppendRequest {
            guards: Vec::new(),
            school,
            stream: StreamId::parse(stream).expect("a valid stream name"),
            expected: ExpectedVersion::Any,
            events: events
                .iter()
                .map(|(t, data)| {
                    NewEvent::new(
                        EventType::parse(*t).expect("a valid type"),
                        data.clone(),
                        now,
                    )
                })
                .collect(),
            metadata: CommandMetadata::by(PersonId::new(), Role::Teacher),
            idempotency_key: None,
            command_digest: None,
        })
        .await
        .expect("append the events");
}
