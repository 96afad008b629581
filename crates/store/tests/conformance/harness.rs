//! One store per test, with a back door for the few cases that must act as a tamperer.
//!
//! On PostgreSQL the store connects either as the server's administrator (a superuser, which
//! row-level security does not hold) or as an ordinary role that it holds
//! ([`registro_testkit::pg::APP_ROLE`]), as registro runs in production. The back door is the
//! administrator in both cases.

use std::sync::Arc;

use registro_domain::SchoolId;
use registro_store::postgres::PgStore;
use registro_store::sqlite::SqliteStore;
use registro_store::testing::HoldAppends;
use registro_store::{Backend, EventStore, MasterKey, ProjectionSchema};
use registro_testkit::TempDir;
use registro_testkit::pg::{APP_ROLE, TestDb};

/// What a test holds.
pub struct Harness {
    /// The store under test.
    pub store: Arc<dyn EventStore>,
    /// The same store, able to hold an append open.
    pub held: Arc<dyn HoldAppends + Send + Sync>,
    /// The master key the store was opened with.
    pub master: MasterKey,
    place: Place,
}

enum Place {
    /// The database and the URL the store connects with.
    Postgres(TestDb, String),
    Sqlite(TempDir),
}

impl Harness {
    /// PostgreSQL, connected as the administrator.
    pub async fn postgres() -> Self {
        let db = TestDb::new().await;
        let url = db.url().to_owned();
        Self::postgres_as(db, url).await
    }

    /// PostgreSQL, connected as an ordinary role, held by row-level security.
    pub async fn postgres_rls() -> Self {
        let db = TestDb::new().await;
        let url = db.app_url().await;
        Self::postgres_as(db, url).await
    }

    async fn postgres_as(db: TestDb, url: String) -> Self {
        let master = MasterKey::generate();
        let store = PgStore::connect(&url, 20, master.clone())
            .await
            .expect("connect to the test database");
        Self {
            store: Arc::new(store.clone()),
            held: Arc::new(store),
            master,
            place: Place::Postgres(db, url),
        }
    }

    pub async fn sqlite() -> Self {
        let dir = TempDir::new();
        let master = MasterKey::generate();
        let store = SqliteStore::open(&dir.path().join("events.db"), master.clone())
            .await
            .expect("open sqlite");
        store.migrate().await.expect("migrate sqlite");
        Self {
            store: Arc::new(store.clone()),
            held: Arc::new(store),
            master,
            place: Place::Sqlite(dir),
        }
    }

    pub fn backend(&self) -> Backend {
        self.store.backend()
    }

    /// Another store on the same database, opened with `master`.
    pub async fn reopen_with(&self, master: MasterKey) -> Arc<dyn EventStore> {
        match &self.place {
            Place::Postgres(_, url) => Arc::new(
                PgStore::connect(url, 20, master)
                    .await
                    .expect("reconnect to the test database"),
            ),
            Place::Sqlite(dir) => Arc::new(
                SqliteStore::open(&dir.path().join("events.db"), master)
                    .await
                    .expect("reopen sqlite"),
            ),
        }
    }

    /// Prepares a projection as its tables' owner does. The ordinary role that row-level
    /// security holds may not create tables (as in production, where the owner migrates): on
    /// PostgreSQL as that role, the administrator prepares the projection and grants the role
    /// the rows of `tables`, and the store's own `prepare_projection` then only checks.
    pub async fn prepare_projection(&self, schema: &ProjectionSchema, tables: &[&str]) {
        match &self.place {
            Place::Postgres(db, url) if url != db.url() => {
                db.store()
                    .await
                    .prepare_projection(schema)
                    .await
                    .expect("prepare the projection as the administrator");
                for table in tables {
                    db.client()
                        .await
                        .batch_execute(&format!(
                            "GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO {APP_ROLE}"
                        ))
                        .await
                        .expect("grant the projection's table");
                }
            }
            _ => self
                .store
                .prepare_projection(schema)
                .await
                .expect("prepare the projection"),
        }
    }

    /// The store as the owner of the projections' tables, which may create a schema: the
    /// administrator on PostgreSQL when the store under test is the ordinary role (which may
    /// not, as in production, where the owner migrates and rebuilds), the store itself
    /// otherwise. What it builds is read through [`Harness::store`], which shows that the live
    /// tables keep their grants.
    pub async fn owner(&self) -> Arc<dyn EventStore> {
        match &self.place {
            Place::Postgres(db, url) if url != db.url() => Arc::new(db.store().await),
            _ => Arc::clone(&self.store),
        }
    }

    /// Runs raw SQL beside the store, as an operator (or a tamperer) with database access.
    pub async fn raw(&self, sql: &str) {
        match &self.place {
            Place::Postgres(db, _) => db.client().await.batch_execute(sql).await.expect("raw sql"),
            Place::Sqlite(dir) => {
                let conn = rusqlite::Connection::open(dir.path().join("events.db")).unwrap();
                conn.execute_batch(sql).expect("raw sql");
            }
        }
    }

    /// Changes the stored data of one event by hand, getting past the immutability trigger
    /// first as a tamperer would.
    pub async fn tamper_data(&self, school: SchoolId, seq: u64, data: &str) {
        let disable = match self.backend() {
            Backend::Postgres => "ALTER TABLE events DISABLE TRIGGER events_immutable;",
            Backend::Sqlite => "DROP TRIGGER events_no_update;",
        };
        self.raw(&format!(
            "{disable} UPDATE events SET data = '{}' WHERE school_id = '{school}' AND school_seq = {seq};",
            data.replace('\'', "''")
        ))
        .await;
    }

    /// Removes one event by hand, getting past the immutability trigger first.
    pub async fn tamper_delete(&self, school: SchoolId, seq: u64) {
        let disable = match self.backend() {
            Backend::Postgres => "ALTER TABLE events DISABLE TRIGGER events_immutable;",
            Backend::Sqlite => "DROP TRIGGER events_no_delete;",
        };
        self.raw(&format!(
            "{disable} DELETE FROM events WHERE school_id = '{school}' AND school_seq = {seq};"
        ))
        .await;
    }
}
