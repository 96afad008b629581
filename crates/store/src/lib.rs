//! The event store: an append-only, hash-chained, per-school log of immutable events.
//!
//! [`EventStore`] is the port; [`postgres::PgStore`] (production) and [`sqlite::SqliteStore`]
//! (the embedded default) are its adapters, held to the same conformance suite
//! (`tests/conformance`). [`open`] picks one from configuration.
//!
//! Guarantees every adapter gives:
//! * an append is atomic, checks the stream's expected version, and with an idempotency key is
//!   safe to retry (the first result is returned, nothing is appended again);
//! * each school has a dense sequence `school_seq` (1, 2, 3...) and a SHA-256 hash chain over
//!   the canonical bytes of its events ([`canonical`], `docs/event-format.md`);
//! * [`EventStore::read_all`] delivers every committed event exactly once, in an order that
//!   never lets a late-committing transaction slip behind a reader ([`subscription`]);
//! * sealed fields are encrypted per data subject and erasable by destroying a key ([`seal`]);
//! * attachments (files) are stored beside the log, once per school, under the SHA-256 of their
//!   bytes, which events use to name them ([`attachment`]);
//! * a projection (read model) commits its rows and its checkpoint in one transaction, checked
//!   against the checkpoint it started from, so every event takes effect exactly once through
//!   crashes ([`projection`]), and is rebuilt apart from its live tables, then swapped in with
//!   its checkpoint in one transaction ([`EventStore::begin_rebuild`]).

pub mod attachment;
pub mod bundle;
pub mod canonical;
pub mod envelope;
pub mod error;
pub mod migrate;
mod plan;
pub mod portable;
pub mod postgres;
pub mod projection;
pub mod reads;
mod rows;
pub mod seal;
pub mod sqlite;
pub mod subscription;
#[cfg(feature = "testing")]
pub mod testing;
pub mod verify;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use registro_domain::{ContentHash, PersonId, SchoolId};
use tokio::sync::watch;

pub use attachment::{AttachmentMeta, MAX_MEDIA_TYPE_CHARS};
pub use envelope::{
    AppendOutcome, AppendRequest, CommandMetadata, EventType, ExpectedVersion, Hash,
    IdempotencyKey, NewEvent, Position, RecordedEvent, SchoolHead, SealedField, StreamGuard,
    StreamId,
};
pub use error::StoreError;
pub use migrate::MigrationStatus;
pub use plan::command_fingerprint;
pub use projection::{
    Cell, CellType, MAX_REBUILT_NAME_CHARS, ProjectionLag, ProjectionLease, ProjectionSchema,
    ProjectionStop, RowOp, decode_rows,
};
pub use reads::{Answers, Batch, ProjectionQuery, Read, Ticket};
pub use seal::{KeyState, MasterKey};

/// The most events one read returns; larger `limit`s are lowered to this.
pub const MAX_PAGE: usize = 10_000;

/// What an idempotency record holds: the request's fingerprint, the stream version, and the
/// first and last `school_seq` of the append.
type IdempotencyRecord = (Vec<u8>, i64, i64, i64);

/// The outcome stored with an idempotency key, as a replay, if its fingerprint matches.
fn stored_replay(
    key: &IdempotencyKey,
    fingerprint: &[u8; 32],
    stored: Option<IdempotencyRecord>,
) -> Result<Option<AppendOutcome>, StoreError> {
    let Some((stored_fp, version, first, last)) = stored else {
        return Ok(None);
    };
    if stored_fp != fingerprint {
        return Err(StoreError::IdempotencyMismatch {
            key: key.as_str().to_owned(),
        });
    }
    Ok(Some(AppendOutcome {
        stream_version: rows::to_u64(version),
        first_seq: rows::to_u64(first),
        last_seq: rows::to_u64(last),
        replayed: true,
    }))
}

/// What an import delivers to [`EventStore::import_school`], in the file's order.
#[derive(Debug)]
pub enum ImportItem {
    /// The next events, in `school_seq` order, as stored (their `stored_data` and hashes).
    Events(Vec<RecordedEvent>),
    /// An attachment the events name.
    Attachment {
        /// Its media type.
        media_type: String,
        /// When it was first stored (kept as it was).
        stored_at: time::OffsetDateTime,
        /// Its bytes.
        content: Vec<u8>,
    },
    /// The reader failed (a line that is not an event of the export): roll back.
    Failed(String),
}

/// What a read does with sealed fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sealed {
    /// Decrypt them, or mark them erased when their key was destroyed.
    Open,
    /// Leave them as stored (ciphertext).
    Keep,
}

/// Which adapter a store is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// PostgreSQL: concurrent writers, one per school at a time.
    Postgres,
    /// SQLite: one writer for the whole file.
    Sqlite,
}

impl Backend {
    /// `"postgres"` or `"sqlite"`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Postgres => "postgres",
            Self::Sqlite => "sqlite",
        }
    }
}

/// The event store port.
///
/// # Error contract
/// Every method returns [`StoreError`]:
/// * [`StoreError::Conflict`], [`StoreError::IdempotencyMismatch`],
///   [`StoreError::InvalidEvent`], [`StoreError::SubjectErased`]: the request was refused and
///   **nothing was written**; only [`EventStore::append`] returns them, and
///   [`EventStore::commit_projection`] [`StoreError::Conflict`] when the projection's
///   checkpoint moved.
/// * [`StoreError::InvalidAttachment`]: the media type is empty or longer than
///   [`MAX_MEDIA_TYPE_CHARS`] characters; **nothing was written**. Only
///   [`EventStore::put_attachment`] returns it.
/// * [`StoreError::Unavailable`]: the database could not be reached or timed out. An append
///   may or may not have committed; retrying with the same idempotency key is always safe.
/// * [`StoreError::Migration`]: the schema does not match this binary (a migration, or a
///   projection's DDL step, was edited after it was applied, or could not be applied).
/// * [`StoreError::Internal`]: a bug or unreadable stored data; log it, tell the client nothing.
///   The projection methods return it for programming errors too (a table or column name that
///   is not a plain identifier, a value of the wrong type for its column, a query that does not
///   match its parameters or columns); nothing was written then.
///
/// No method ever turns a unique-constraint violation into anything but
/// [`StoreError::Conflict`], except one by a projection's row operation in
/// [`EventStore::commit_projection`]: that is the projection's bug (its keys do not match its
/// tables), and [`StoreError::Internal`], since a conflict there means "read the checkpoint
/// again and retry".
#[async_trait]
pub trait EventStore: Send + Sync + fmt::Debug {
    /// Which adapter this is.
    fn backend(&self) -> Backend;

    /// Appends the request's events atomically, after checking the stream's expected version.
    /// With an idempotency key already used by the same request, returns the first outcome with
    /// `replayed: true` and appends nothing; used by a different request, fails with
    /// [`StoreError::IdempotencyMismatch`]. The key check comes before the version check, so a
    /// retry of a successful `Exact(n)` append is not a conflict.
    async fn append(&self, request: AppendRequest) -> Result<AppendOutcome, StoreError>;

    /// The stored outcome of the idempotent append made with `key`, as a replay, when its
    /// fingerprint is `fingerprint`; `None` when the key was never used. Lets a command executor
    /// answer a retry before deciding again (see [`command_fingerprint`]).
    ///
    /// # Errors
    /// [`StoreError::IdempotencyMismatch`] when the key was used by another request.
    async fn replay_of(
        &self,
        school: SchoolId,
        key: &IdempotencyKey,
        fingerprint: &[u8; 32],
    ) -> Result<Option<AppendOutcome>, StoreError>;

    /// Up to `limit` events of one stream with `stream_version >= from_version`, in order.
    async fn read_stream(
        &self,
        school: SchoolId,
        stream: &StreamId,
        from_version: u64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError>;

    /// Up to `limit` events of one school with `school_seq >= from_seq`, in order (export,
    /// verification). With [`Sealed::Keep`], `data` holds the stored form (sealed fields as
    /// ciphertext) and no key is touched, so an auditor needs no master key to verify.
    async fn read_school(
        &self,
        school: SchoolId,
        from_seq: u64,
        limit: usize,
        sealed: Sealed,
    ) -> Result<Vec<RecordedEvent>, StoreError>;

    /// The subscription read: up to `limit` committed events after `after`, across all
    /// schools, in [`Position`] order. Calling it again with the last returned position never
    /// skips nor repeats an event, even when transactions commit out of order.
    async fn read_all(
        &self,
        after: Position,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError>;

    /// The school's last `school_seq` and chain head, or `None` if it has no events.
    async fn school_head(&self, school: SchoolId) -> Result<Option<SchoolHead>, StoreError>;

    /// Destroys the key of one data subject (crypto-shredding): from now on their sealed fields
    /// read as erased, and sealing new data for them is refused. Returns `false` if there was
    /// no live key. The caller records the erasure as an event.
    async fn destroy_subject_key(
        &self,
        school: SchoolId,
        subject: PersonId,
    ) -> Result<bool, StoreError>;

    /// Every data subject key of the school, opened with the master key (destroyed ones as
    /// [`KeyState::Erased`]), for a key bundle that travels beside an export
    /// ([`bundle::seal_bundle`]).
    async fn subject_keys(&self, school: SchoolId)
    -> Result<Vec<(PersonId, KeyState)>, StoreError>;

    /// Imports a school's whole log (an export of another instance) in ONE transaction: the
    /// school must have no events here; `keys` are its subject keys (wrapped with this store's
    /// master key as they are stored); then `items` as they arrive: events in `school_seq`
    /// order, each checked by [`verify::ChainCheck`] and stored verbatim (ids, times, hashes),
    /// and attachments. Commits when `items` ends, after checking that the log ends at
    /// `expected` (the manifest's count and head); anything else rolls everything back.
    ///
    /// # Errors
    /// [`StoreError::ChainBroken`] at the first event that does not verify;
    /// [`StoreError::ImportRefused`] when the school has events here, an item is
    /// [`ImportItem::Failed`] (the reader's error), or the log does not end at `expected`;
    /// nothing of the school is written then.
    async fn import_school(
        &self,
        school: SchoolId,
        keys: Vec<(PersonId, KeyState)>,
        expected: (u64, Option<Hash>),
        items: tokio::sync::mpsc::Receiver<ImportItem>,
    ) -> Result<u64, StoreError>;

    /// Stores an attachment's bytes under their SHA-256, once per school: storing the same bytes
    /// again returns the first record (its media type included) and writes nothing. Concurrent
    /// puts of the same bytes all succeed, with the same record. The store checks nothing about
    /// the bytes (empty content is stored like any other); limits on size and media type are the
    /// caller's.
    ///
    /// # Errors
    /// [`StoreError::InvalidAttachment`] when `media_type` is empty or longer than
    /// [`MAX_MEDIA_TYPE_CHARS`] characters.
    async fn put_attachment(
        &self,
        school: SchoolId,
        media_type: &str,
        content: &[u8],
    ) -> Result<AttachmentMeta, StoreError>;

    /// An attachment's description, without its bytes; `None` when the school has no such
    /// attachment.
    async fn attachment_meta(
        &self,
        school: SchoolId,
        hash: &ContentHash,
    ) -> Result<Option<AttachmentMeta>, StoreError>;

    /// An attachment's description and bytes; `None` when the school has none with that hash.
    async fn attachment(
        &self,
        school: SchoolId,
        hash: &ContentHash,
    ) -> Result<Option<(AttachmentMeta, Vec<u8>)>, StoreError>;

    /// A hint that new events may have been committed: the value changes after commits that
    /// this process saw or was notified of. Subscribers also poll, so a missed hint only
    /// delays them.
    fn wake_signal(&self) -> watch::Receiver<u64>;

    /// Which migrations are applied and which are pending; fails with
    /// [`StoreError::Migration`] when an applied migration was edited or is unknown.
    async fn migration_status(&self) -> Result<MigrationStatus, StoreError>;

    /// Applies the pending migrations, each in its own transaction, recording version and
    /// checksum; returns the versions applied. Refuses (and applies nothing) when an applied
    /// migration was edited.
    async fn migrate(&self) -> Result<Vec<u32>, StoreError>;

    /// Checks that the database answers.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Applies the projection's pending DDL steps and creates its checkpoint
    /// ([`Position::START`]) if missing. Each step runs once, in order, in its own transaction,
    /// recorded with its checksum; concurrent calls apply each step once. When nothing is
    /// pending it only reads, so a role without the right to create tables (one that only reads
    /// and writes rows) can run a prepared projection; applying a step takes that right, as
    /// [`EventStore::migrate`] does.
    ///
    /// # Errors
    /// [`StoreError::Migration`] when an applied step was edited, an applied step is unknown
    /// (prepared by a newer binary), or a pending step fails (the steps before it stay
    /// applied); [`StoreError::Internal`] when the name is not a plain identifier.
    async fn prepare_projection(&self, schema: &ProjectionSchema) -> Result<(), StoreError>;

    /// The projection's checkpoint: the position of the last event applied; [`Position::START`]
    /// if never run. Unknown projection: [`Position::START`].
    async fn projection_checkpoint(&self, name: &str) -> Result<Position, StoreError>;

    /// In ONE transaction: checks that the checkpoint is still `from`, applies `ops` in order,
    /// and sets the checkpoint to `to` (clearing a stop recorded at or before `to`, see
    /// [`EventStore::record_projection_stop`]). Either all of it is committed or nothing is. On
    /// PostgreSQL the transaction works across schools (`registro.all_schools`); two commits of
    /// one projection are serialised by its checkpoint row.
    ///
    /// # Errors
    /// [`StoreError::Conflict`] when the checkpoint is not `from` (another instance moved it):
    /// nothing is written; its `stream` is `projection:<name>`, its versions the event ids of
    /// `from` ([`ExpectedVersion::NoStream`] for [`Position::START`]) and of the checkpoint
    /// found. The caller reads the checkpoint again and goes on from there.
    /// [`StoreError::Internal`], with nothing written, for a programming error: a name that is
    /// not a plain identifier, an empty key or one with [`Cell::Null`], a value of the wrong
    /// type for its column, or a row operation the database refuses (a constraint, a missing
    /// table).
    async fn commit_projection(
        &self,
        name: &str,
        from: Position,
        to: Position,
        ops: &[RowOp],
    ) -> Result<(), StoreError>;

    /// Reads a projection's rows for one school: `sql` is a SELECT written once for both
    /// backends with `$1`, `$2`... placeholders (SQLite accepts them too, in any order); each
    /// row is decoded by `columns`, SQL `NULL` as [`Cell::Null`]. One query of
    /// [`EventStore::query_projections`], whose rules it follows.
    ///
    /// # Errors
    /// As [`EventStore::query_projections`].
    async fn query_projection(
        &self,
        school: SchoolId,
        sql: &str,
        params: &[Cell],
        columns: &[CellType],
    ) -> Result<Vec<Vec<Cell>>, StoreError> {
        let query = ProjectionQuery::new(sql, params.to_vec(), columns);
        let mut answers = self.query_projections(school, &[query]).await?;
        answers
            .pop()
            .ok_or_else(|| StoreError::internal("a projection query went unanswered"))
    }

    /// Runs projection queries for one school in one read-only transaction, so that they all
    /// see the same committed state (one snapshot), and answers the rows of each, in order. On
    /// PostgreSQL they are sent together (one round trip) and run in the school's
    /// row-level-security scope, so they see only that school's rows; SQLite has no row-level
    /// security, so each query names its school itself (`WHERE school_id = $1`), as it should
    /// on both.
    ///
    /// # Errors
    /// [`StoreError::Internal`] when a query is invalid, its `params` are not exactly its
    /// placeholders, a parameter has the wrong type, its `columns` are not as many as the
    /// query's, or a column cannot be read as its [`CellType`].
    async fn query_projections(
        &self,
        school: SchoolId,
        queries: &[ProjectionQuery],
    ) -> Result<Vec<reads::Rows>, StoreError>;

    /// How many committed events [`EventStore::read_all`] would deliver after `after` if called
    /// now (across all schools; on PostgreSQL, below the same fence). For progress displays:
    /// events committed meanwhile make it grow.
    async fn count_events_after(&self, after: Position) -> Result<u64, StoreError>;

    /// Begins a rebuild of the projection: an empty build target of its own, apart from the live
    /// tables, where the projection's steps have run from the first. On PostgreSQL it is the
    /// schema `registro_rebuild_<name>`, dropped and created again (the steps run with it first
    /// on the `search_path`, so the functions and types of the database are found as usual); on
    /// SQLite a file beside the database, `<database>.rebuild-<name>`, removed and created
    /// again. A target left by an earlier rebuild is discarded. Readers of the live tables see
    /// nothing of it; it takes the right to create a schema (PostgreSQL), as
    /// [`EventStore::prepare_projection`] takes the right to create tables.
    ///
    /// # Errors
    /// [`StoreError::Internal`] when the name is not a plain identifier, is longer than
    /// [`projection::MAX_REBUILT_NAME_CHARS`], or when the steps create other tables than
    /// `schema.tables`; [`StoreError::Migration`] when a step fails or the role may not create
    /// the build schema. Nothing is left behind then.
    async fn begin_rebuild(&self, schema: &ProjectionSchema) -> Result<(), StoreError>;

    /// Applies `ops` in order, in one transaction, to the build target of the rebuild of `name`
    /// (never to the live tables), rendered as [`EventStore::commit_projection`] renders them.
    /// The live checkpoint is not touched.
    ///
    /// # Errors
    /// [`StoreError::Internal`], with nothing written, when no rebuild of `name` was begun, and
    /// for the programming errors [`EventStore::commit_projection`] refuses.
    async fn commit_rebuild(&self, name: &str, ops: &[RowOp]) -> Result<(), StoreError>;

    /// Swaps a rebuild in, in ONE transaction on the live tables: sets the projection's
    /// checkpoint to `position` (creating it if missing, whatever it was; clearing a stop
    /// recorded at or before it), replaces the rows of
    /// each of `schema.tables` with the build target's (deleting in reverse order, copying in
    /// order), and drops the build target. The live tables themselves stay, with their grants,
    /// row-level security and indexes; readers see the old rows until the commit and the new
    /// ones after it, never a mix. A projector of the same projection committing meanwhile
    /// finds its checkpoint moved ([`StoreError::Conflict`]) and goes on from `position`.
    ///
    /// # Errors
    /// [`StoreError::Internal`] when no rebuild of the projection was begun, a live table is
    /// missing (prepare the projection first), or a row cannot be copied: nothing changes then,
    /// and the build target stays until [`EventStore::discard_rebuild`] or the next
    /// [`EventStore::begin_rebuild`].
    async fn swap_rebuild(
        &self,
        schema: &ProjectionSchema,
        position: Position,
    ) -> Result<(), StoreError>;

    /// Drops the build target of a rebuild of `name`, if there is one (a rebuild that failed).
    ///
    /// # Errors
    /// [`StoreError::Internal`] when the name is not a plain identifier.
    async fn discard_rebuild(&self, name: &str) -> Result<(), StoreError>;

    /// Tries to become the one active instance of the projection: `Some(lease)` while held
    /// (dropping it releases), `None` when another instance holds it (a standby then waits and
    /// tries again).
    ///
    /// On PostgreSQL the lease is a session-level advisory lock held by a connection of its
    /// own, outside the pool: if the process dies, the connection closes and the lock is freed
    /// (a release is seen by others once the server has ended that session, a moment after the
    /// drop). On SQLite, which one process embeds, it is held within the process, per database
    /// file and name: two processes on one file may both hold it, and are still kept correct by
    /// the checkpoint check of [`EventStore::commit_projection`].
    ///
    /// # Errors
    /// [`StoreError::Internal`] when the name is not a plain identifier;
    /// [`StoreError::Unavailable`] when no connection can be opened for the lease.
    async fn try_lock_projection(&self, name: &str) -> Result<Option<ProjectionLease>, StoreError>;

    /// Whether the database's row-level security holds this store's connections:
    /// `Some(false)` on PostgreSQL when connected as a superuser or a role with `BYPASSRLS`
    /// (which it never holds), `None` where the backend has none (SQLite).
    async fn row_security(&self) -> Result<Option<bool>, StoreError> {
        Ok(None)
    }

    /// How far the projection is behind the log: its checkpoint, how many committed events
    /// come after it and when the first of them was recorded, and the event its projector
    /// stopped at, if it did ([`ProjectionLag`]). An unknown projection is not prepared, at
    /// [`Position::START`], with every event after it. Read from the database: the projector
    /// may run in another process.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the database cannot be reached.
    async fn projection_lag(&self, name: &str) -> Result<ProjectionLag, StoreError>;

    /// Records that the projector stopped at the event at `at`, which its projection cannot
    /// apply, for every process to see ([`EventStore::projection_lag`]). Recording again the
    /// same event keeps the first time; another event replaces it. Nothing is recorded when
    /// the checkpoint is already at or past `at` (the event was applied meanwhile) or the
    /// projection has no checkpoint. The stop is cleared by the
    /// [`EventStore::commit_projection`] (or the [`EventStore::swap_rebuild`]) that moves the
    /// checkpoint to `at` or past it.
    ///
    /// # Errors
    /// [`StoreError::Internal`] when the name is not a plain identifier;
    /// [`StoreError::Unavailable`] when the database cannot be reached.
    async fn record_projection_stop(
        &self,
        name: &str,
        at: Position,
        reason: &str,
    ) -> Result<(), StoreError>;

    /// Whether the projection has applied the event `school_seq` of `school`: true when that
    /// event exists and its position is at or before the projection's checkpoint (the
    /// subscription is gap-free and in position order, so everything before it is applied
    /// too). `school_seq` 0 (nothing) is always reached; an event the school does not have
    /// (beyond its head) never is. Read in the school's row-level-security scope.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the database cannot be reached.
    async fn projection_reached(
        &self,
        name: &str,
        school: SchoolId,
        school_seq: u64,
    ) -> Result<bool, StoreError>;
}

/// Where the events live.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreLocation {
    /// A PostgreSQL database URL (`postgres://user@host:port/db`).
    Postgres {
        /// The connection URL.
        url: String,
        /// The most connections the pool opens.
        max_connections: usize,
    },
    /// An SQLite file, created if missing.
    Sqlite {
        /// The database file.
        path: PathBuf,
    },
}

/// How to open a store.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// Where the events live.
    pub location: StoreLocation,
    /// The master key that wraps the data subjects' keys.
    pub master_key: MasterKey,
    /// Apply pending migrations when opening.
    pub migrate: bool,
}

/// Opens the configured store, applying pending migrations if asked.
///
/// # Errors
/// [`StoreError::Unavailable`] when the database cannot be reached or the file cannot be
/// opened; [`StoreError::Migration`] when an applied migration was edited.
pub async fn open(config: StoreConfig) -> Result<Arc<dyn EventStore>, StoreError> {
    let store: Arc<dyn EventStore> = match config.location {
        StoreLocation::Postgres {
            url,
            max_connections,
        } => Arc::new(postgres::PgStore::connect(&url, max_connections, config.master_key).await?),
        StoreLocation::Sqlite { path } => {
            Arc::new(sqlite::SqliteStore::open(&path, config.master_key).await?)
        }
    };
    if config.migrate {
        let applied = store.migrate().await?;
        if !applied.is_empty() {
            tracing::info!(
                ?applied,
                backend = store.backend().as_str(),
                "applied migrations"
            );
        }
    } else {
        let status = store.migration_status().await?;
        if !status.pending.is_empty() {
            tracing::warn!(pending = ?status.pending, "migrations are pending; run `registro migrate`");
        }
    }
    Ok(store)
}
