//! The SQLite adapter: the embedded default, one file in the data directory.
//!
//! WAL mode with `synchronous = FULL` (an acknowledged append survives a power cut). SQLite has
//! one writer per file, so appends of all schools are serialised (by a mutex in this process,
//! by `BEGIN IMMEDIATE` and the busy timeout across processes) and run on a blocking thread.
//! Because there is one writer, rows commit in `id` order and `id` alone orders subscriptions
//! without gaps. Reads use a small pool of their own connections and never wait for a write.
//!
//! Projections commit through the same writer. Their leases are held within the process (one
//! process embeds the file); two processes on one file are still kept correct by the checkpoint
//! check of each commit, under `BEGIN IMMEDIATE`. SQLite has no row-level security: a query of
//! a projection names its school itself. A projection is rebuilt in a file of its own beside the
//! database (`<database>.rebuild-<name>`, written without syncing: it is thrown away on
//! failure), attached to the writer for the swap (`docs/decisions/0021-projection-rebuild.md`).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, LazyLock, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use registro_domain::{ContentHash, PersonId, Role, SchoolId};
use rusqlite::types::{ToSqlOutput, Value as SqlValue, ValueRef};
use rusqlite::{
    Connection, ErrorCode, OpenFlags, OptionalExtension, Row, TransactionBehavior, params,
};
use time::OffsetDateTime;
use tokio::sync::watch;

use crate::attachment::{AttachmentMeta, check_media_type, content_hash};
use crate::canonical::{format_timestamp, parse_timestamp};
use crate::envelope::{
    AppendOutcome, AppendRequest, EventType, Hash, IdempotencyKey, Position, RecordedEvent,
    SchoolHead, StreamId,
};
use crate::error::StoreError;
use crate::migrate::{self, AppliedMigration, MigrationStatus};
use crate::plan::AppendPlan;
use crate::projection::{
    self, Cell, CellType, Hold, ProjectionLag, ProjectionLease, ProjectionSchema, ProjectionStop,
    RowOp, check_identifier, check_rebuilt_tables, pending_steps, rebuild_target, render,
    step_checksum, step_number, stored_position,
};
use crate::reads::{ProjectionQuery, Rows};
use crate::rows::{open_school_events, page, subjects_by_school, to_i64, to_u64};
use crate::seal::{KeyState, MasterKey, SubjectKey};
use crate::verify::ChainCheck;
use crate::{Backend, EventStore, ImportItem, Sealed};

/// How long a statement waits for another process's write lock before giving up.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// How many idle read connections are kept.
const READERS_KEPT: usize = 8;

/// An attachment's description, by school and hash.
const ATTACHMENT_META: &str =
    "SELECT media_type, size, stored_at FROM attachments WHERE school_id = ?1 AND hash = ?2";

const COLUMNS: &str = "id, school_id, school_seq, stream_id, stream_version, event_id, \
    event_type, schema_version, data, actor_id, actor_role, correlation_id, causation_id, \
    occurred_at, recorded_at, idempotency_key, prev_hash, hash";

/// The SQLite event store. Cheap to clone.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    /// The file's canonical path: what projection leases are keyed by.
    canonical_path: PathBuf,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
    master: MasterKey,
    wake: watch::Sender<u64>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file at `path`, and its directory.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the file cannot be created or opened.
    pub async fn open(path: &Path, master: MasterKey) -> Result<Self, StoreError> {
        let path = path.to_path_buf();
        blocking(move || {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| {
                    StoreError::unavailable(format!("cannot create {}: {e}", dir.display()))
                })?;
            }
            let writer = connect(&path, false)?;
            writer
                .pragma_update(None, "journal_mode", "WAL")
                .map_err(sqlite_err)?;
            let (wake, _) = watch::channel(0);
            let canonical_path = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
            Ok(Self {
                inner: Arc::new(Inner {
                    path,
                    canonical_path,
                    writer: Mutex::new(writer),
                    readers: Mutex::new(Vec::new()),
                    master,
                    wake,
                }),
            })
        })
        .await
    }

    /// The database file.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The build file of a rebuild of projection `name`: `<database>.rebuild-<name>`, beside
    /// the database.
    #[must_use]
    pub fn rebuild_path(&self, name: &str) -> PathBuf {
        let mut path = self.inner.path.as_os_str().to_owned();
        path.push(format!(".rebuild-{name}"));
        PathBuf::from(path)
    }

    /// Runs `f` with the writer connection on a blocking thread.
    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Inner, &mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let inner = Arc::clone(&self.inner);
        blocking(move || {
            let mut conn = inner.writer.lock().unwrap_or_else(PoisonError::into_inner);
            f(&inner, &mut conn)
        })
        .await
    }

    /// Runs `f` with a read connection on a blocking thread.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Inner, &Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let inner = Arc::clone(&self.inner);
        blocking(move || {
            let pooled = inner
                .readers
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop();
            let conn = match pooled {
                Some(c) => c,
                None => connect(&inner.path, true)?,
            };
            let result = f(&inner, &conn);
            let mut readers = inner.readers.lock().unwrap_or_else(PoisonError::into_inner);
            if readers.len() < READERS_KEPT {
                readers.push(conn);
            }
            result
        })
        .await
    }

    async fn append_gated(
        &self,
        request: AppendRequest,
        #[cfg(feature = "testing")] gate: Option<crate::testing::Gate>,
    ) -> Result<AppendOutcome, StoreError> {
        let plan = AppendPlan::new(request)?;
        let outcome = self
            .write(move |inner, conn| {
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(sqlite_err)?;
                let outcome = append_in(inner, &tx, &plan)?;
                if outcome.replayed {
                    return Ok(outcome);
                }
                #[cfg(feature = "testing")]
                if let Some(gate) = gate {
                    let _ = gate.appended.send(());
                    let _ = gate.release.blocking_recv();
                }
                tx.commit().map_err(sqlite_err)?;
                Ok(outcome)
            })
            .await?;
        if !outcome.replayed {
            self.inner.wake.send_modify(|v| *v = v.wrapping_add(1));
        }
        Ok(outcome)
    }

    fn select_events(
        inner: &Inner,
        conn: &Connection,
        sql: &str,
        params: impl rusqlite::Params,
        sealed: Sealed,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let mut stmt = conn.prepare_cached(sql).map_err(sqlite_err)?;
        let mut events = stmt
            .query_map(params, |row| Ok(row_to_event(row)))
            .map_err(sqlite_err)?
            .map(|r| r.map_err(sqlite_err).and_then(|e| e))
            .collect::<Result<Vec<_>, _>>()?;
        if sealed == Sealed::Keep {
            return Ok(events);
        }
        for (school, subjects) in subjects_by_school(&events) {
            let keys = key_states(inner, conn, school, &subjects)?;
            open_school_events(&mut events, school, &keys)?;
        }
        Ok(events)
    }
}

/// The body of an append, inside the writer's transaction.
/// The fingerprint and outcome stored with an idempotency key.
fn idempotency_record(
    conn: &Connection,
    school: &str,
    key: &IdempotencyKey,
) -> Result<Option<crate::IdempotencyRecord>, StoreError> {
    conn.query_row(
        "SELECT fingerprint, stream_version, first_seq, last_seq FROM idempotency_keys \
         WHERE school_id = ?1 AND key = ?2",
        params![school, key.as_str()],
        |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
    )
    .optional()
    .map_err(sqlite_err)
}

fn append_in(
    inner: &Inner,
    tx: &rusqlite::Transaction<'_>,
    plan: &AppendPlan,
) -> Result<AppendOutcome, StoreError> {
    let r = &plan.request;
    let school = r.school.to_string();
    if let Some(key) = &r.idempotency_key {
        let found = idempotency_record(tx, &school, key)?;
        if let Some(outcome) = crate::stored_replay(key, &plan.fingerprint, found)? {
            return Ok(outcome);
        }
    }
    let current: i64 = tx
        .query_row(
            "SELECT coalesce(max(stream_version), 0) FROM events WHERE school_id = ?1 AND stream_id = ?2",
            params![school, r.stream.as_str()],
            |row| row.get(0),
        )
        .map_err(sqlite_err)?;
    let current = to_u64(current);
    if !r.expected.admits(current) {
        return Err(StoreError::Conflict {
            stream: r.stream.clone(),
            expected: r.expected,
            actual: current,
        });
    }
    for guard in &r.guards {
        let version: i64 = tx
            .query_row(
                "SELECT coalesce(max(stream_version), 0) FROM events WHERE school_id = ?1 AND stream_id = ?2",
                params![school, guard.stream.as_str()],
                |row| row.get(0),
            )
            .map_err(sqlite_err)?;
        guard.check(to_u64(version))?;
    }
    let keys = keys_for_sealing(inner, tx, r.school, &plan.subjects)?;
    let stored = plan.seal(&keys)?;
    let head = tx
        .query_row(
            "SELECT last_seq, last_hash FROM school_heads WHERE school_id = ?1",
            params![school],
            |row| Ok((row.get::<_, i64>(0)?, row.get::<_, Vec<u8>>(1)?)),
        )
        .optional()
        .map_err(sqlite_err)?
        .map(|(seq, hash)| -> Result<SchoolHead, StoreError> {
            Ok(SchoolHead {
                last_seq: to_u64(seq),
                hash: Hash::from_slice(&hash)?,
            })
        })
        .transpose()?;
    let rows = plan.rows(stored, head, current, OffsetDateTime::now_utc())?;
    let conflict = |e: rusqlite::Error| match &e {
        rusqlite::Error::SqliteFailure(f, _)
            if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY =>
        {
            StoreError::Conflict {
                stream: r.stream.clone(),
                expected: r.expected,
                actual: current,
            }
        }
        _ => sqlite_err(e),
    };
    {
        let mut insert = tx
            .prepare_cached(
                "INSERT INTO events (school_id, school_seq, stream_id, stream_version, event_id, \
                 event_type, schema_version, data, actor_id, actor_role, correlation_id, \
                 causation_id, occurred_at, recorded_at, idempotency_key, prev_hash, hash) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
            )
            .map_err(sqlite_err)?;
        let actor = r.metadata.actor_id.map(|a| a.to_string());
        let correlation = r.metadata.correlation_id.to_string();
        let causation = r.metadata.causation_id.map(|c| c.to_string());
        for e in &rows {
            insert
                .execute(params![
                    school,
                    to_i64(e.school_seq),
                    r.stream.as_str(),
                    to_i64(e.stream_version),
                    e.event_id.to_string(),
                    e.event_type.as_str(),
                    e.schema_version,
                    e.stored_data,
                    actor,
                    r.metadata.actor_role.as_str(),
                    correlation,
                    causation,
                    format_timestamp(e.occurred_at),
                    format_timestamp(e.recorded_at),
                    r.idempotency_key.as_ref().map(IdempotencyKey::as_str),
                    e.prev_hash.0.as_slice(),
                    e.hash.0.as_slice(),
                ])
                .map_err(conflict)?;
        }
    }
    let (first, last) = match (rows.first(), rows.last()) {
        (Some(f), Some(l)) => (f, l),
        _ => return Err(StoreError::internal("an append planned no rows")),
    };
    tx.execute(
        "INSERT INTO school_heads (school_id, last_seq, last_hash) VALUES (?1, ?2, ?3) \
         ON CONFLICT (school_id) DO UPDATE SET last_seq = excluded.last_seq, last_hash = excluded.last_hash",
        params![school, to_i64(last.school_seq), last.hash.0.as_slice()],
    )
    .map_err(sqlite_err)?;
    if let Some(key) = &r.idempotency_key {
        tx.execute(
            "INSERT INTO idempotency_keys (school_id, key, fingerprint, stream_version, first_seq, last_seq) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                school,
                key.as_str(),
                plan.fingerprint.as_slice(),
                to_i64(last.stream_version),
                to_i64(first.school_seq),
                to_i64(last.school_seq)
            ],
        )
        .map_err(conflict)?;
    }
    Ok(AppendOutcome {
        stream_version: last.stream_version,
        first_seq: first.school_seq,
        last_seq: last.school_seq,
        replayed: false,
    })
}

fn keys_for_sealing(
    inner: &Inner,
    conn: &Connection,
    school: SchoolId,
    subjects: &BTreeSet<PersonId>,
) -> Result<HashMap<PersonId, SubjectKey>, StoreError> {
    if subjects.is_empty() {
        return Ok(HashMap::new());
    }
    let mut insert = conn
        .prepare_cached(
            "INSERT INTO subject_keys (school_id, subject_id, wrapped_key) VALUES (?1, ?2, ?3) \
             ON CONFLICT (school_id, subject_id) DO NOTHING",
        )
        .map_err(sqlite_err)?;
    for s in subjects {
        let (_, wrapped) = inner.master.new_subject_key(school, *s)?;
        insert
            .execute(params![school.to_string(), s.to_string(), wrapped])
            .map_err(sqlite_err)?;
    }
    key_states(inner, conn, school, subjects)?
        .into_iter()
        .map(|(subject, state)| match state {
            KeyState::Present(k) => Ok((subject, k)),
            KeyState::Erased => Err(StoreError::SubjectErased { school, subject }),
        })
        .collect()
}

fn key_states(
    inner: &Inner,
    conn: &Connection,
    school: SchoolId,
    subjects: &BTreeSet<PersonId>,
) -> Result<HashMap<PersonId, KeyState>, StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT wrapped_key FROM subject_keys WHERE school_id = ?1 AND subject_id = ?2",
        )
        .map_err(sqlite_err)?;
    let mut states = HashMap::with_capacity(subjects.len());
    for s in subjects {
        let wrapped: Option<Option<Vec<u8>>> = stmt
            .query_row(params![school.to_string(), s.to_string()], |row| row.get(0))
            .optional()
            .map_err(sqlite_err)?;
        match wrapped {
            Some(Some(w)) => {
                states.insert(
                    *s,
                    KeyState::Present(inner.master.unwrap_subject_key(school, *s, &w)?),
                );
            }
            Some(None) => {
                states.insert(*s, KeyState::Erased);
            }
            None => {}
        }
    }
    Ok(states)
}

/// An attachment's description selected by `sql` (its columns start with `media_type, size,
/// stored_at`; parameters: school and hash), with what `rest` takes from the row.
fn read_attachment<T>(
    conn: &Connection,
    sql: &str,
    school: SchoolId,
    hash: &ContentHash,
    rest: impl FnOnce(&Row<'_>) -> rusqlite::Result<T>,
) -> Result<Option<(AttachmentMeta, T)>, StoreError> {
    let found = conn
        .prepare_cached(sql)
        .map_err(sqlite_err)?
        .query_row(
            params![school.to_string(), hash.as_bytes().as_slice()],
            |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, i64>(1)?,
                    row.get::<_, String>(2)?,
                    rest(row)?,
                ))
            },
        )
        .optional()
        .map_err(sqlite_err)?;
    found
        .map(|(media_type, size, stored_at, rest)| {
            let meta = AttachmentMeta {
                hash: *hash,
                media_type,
                size: to_u64(size),
                stored_at: parse_timestamp(&stored_at)?,
            };
            Ok((meta, rest))
        })
        .transpose()
}

#[async_trait]
impl EventStore for SqliteStore {
    fn backend(&self) -> Backend {
        Backend::Sqlite
    }

    #[tracing::instrument(skip_all, fields(school = %request.school, stream = %request.stream))]
    async fn append(&self, request: AppendRequest) -> Result<AppendOutcome, StoreError> {
        self.append_gated(
            request,
            #[cfg(feature = "testing")]
            None,
        )
        .await
    }

    async fn read_stream(
        &self,
        school: SchoolId,
        stream: &StreamId,
        from_version: u64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let stream = stream.as_str().to_owned();
        self.read(move |inner, conn| {
            SqliteStore::select_events(
                inner,
                conn,
                &format!(
                    "SELECT {COLUMNS} FROM events WHERE school_id = ?1 AND stream_id = ?2 \
                     AND stream_version >= ?3 ORDER BY stream_version LIMIT ?4"
                ),
                params![
                    school.to_string(),
                    stream,
                    to_i64(from_version),
                    page(limit)
                ],
                Sealed::Open,
            )
        })
        .await
    }

    async fn read_school(
        &self,
        school: SchoolId,
        from_seq: u64,
        limit: usize,
        sealed: Sealed,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.read(move |inner, conn| {
            SqliteStore::select_events(
                inner,
                conn,
                &format!(
                    "SELECT {COLUMNS} FROM events WHERE school_id = ?1 AND school_seq >= ?2 \
                     ORDER BY school_seq LIMIT ?3"
                ),
                params![school.to_string(), to_i64(from_seq), page(limit)],
                sealed,
            )
        })
        .await
    }

    async fn read_all(
        &self,
        after: Position,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        // One writer commits in id order: id alone is a gap-free order.
        self.read(move |inner, conn| {
            SqliteStore::select_events(
                inner,
                conn,
                &format!("SELECT {COLUMNS} FROM events WHERE id > ?1 ORDER BY id LIMIT ?2"),
                params![to_i64(after.id), page(limit)],
                Sealed::Open,
            )
        })
        .await
    }

    async fn replay_of(
        &self,
        school: SchoolId,
        key: &IdempotencyKey,
        fingerprint: &[u8; 32],
    ) -> Result<Option<AppendOutcome>, StoreError> {
        let (key, fingerprint) = (key.clone(), *fingerprint);
        self.read(move |_, conn| {
            let stored = idempotency_record(conn, &school.to_string(), &key)?;
            crate::stored_replay(&key, &fingerprint, stored)
        })
        .await
    }

    async fn school_head(&self, school: SchoolId) -> Result<Option<SchoolHead>, StoreError> {
        self.read(move |_, conn| {
            conn.query_row(
                "SELECT last_seq, last_hash FROM school_heads WHERE school_id = ?1",
                params![school.to_string()],
                |row| Ok((row.get::<_, i64>(0)?, row.get::<_, Vec<u8>>(1)?)),
            )
            .optional()
            .map_err(sqlite_err)?
            .map(|(seq, hash)| {
                Ok(SchoolHead {
                    last_seq: to_u64(seq),
                    hash: Hash::from_slice(&hash)?,
                })
            })
            .transpose()
        })
        .await
    }

    async fn destroy_subject_key(
        &self,
        school: SchoolId,
        subject: PersonId,
    ) -> Result<bool, StoreError> {
        self.write(move |_, conn| {
            let tx = conn.transaction().map_err(sqlite_err)?;
            let now = format_timestamp(OffsetDateTime::now_utc());
            let destroyed = tx
                .execute(
                    "UPDATE subject_keys SET wrapped_key = NULL, erased_at = ?3 \
                     WHERE school_id = ?1 AND subject_id = ?2 AND wrapped_key IS NOT NULL",
                    params![school.to_string(), subject.to_string(), now],
                )
                .map_err(sqlite_err)?;
            tx.execute(
                "INSERT INTO subject_keys (school_id, subject_id, wrapped_key, erased_at) \
                 VALUES (?1, ?2, NULL, ?3) ON CONFLICT DO NOTHING",
                params![school.to_string(), subject.to_string(), now],
            )
            .map_err(sqlite_err)?;
            tx.commit().map_err(sqlite_err)?;
            Ok(destroyed == 1)
        })
        .await
    }

    async fn subject_keys(
        &self,
        school: SchoolId,
    ) -> Result<Vec<(PersonId, KeyState)>, StoreError> {
        self.read(move |inner, conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT subject_id, wrapped_key FROM subject_keys WHERE school_id = ?1 \
                     ORDER BY subject_id",
                )
                .map_err(sqlite_err)?;
            let rows = stmt
                .query_map(params![school.to_string()], |row| {
                    Ok((row.get::<_, String>(0)?, row.get::<_, Option<Vec<u8>>>(1)?))
                })
                .map_err(sqlite_err)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(sqlite_err)?;
            rows.into_iter()
                .map(|(subject, wrapped)| {
                    let subject = PersonId::from_uuid(
                        uuid::Uuid::parse_str(&subject).map_err(StoreError::internal)?,
                    );
                    let state = inner
                        .master
                        .key_state(school, subject, wrapped.as_deref())?;
                    Ok((subject, state))
                })
                .collect()
        })
        .await
    }

    async fn import_school(
        &self,
        school: SchoolId,
        keys: Vec<(PersonId, KeyState)>,
        expected: (u64, Option<Hash>),
        mut items: tokio::sync::mpsc::Receiver<ImportItem>,
    ) -> Result<u64, StoreError> {
        let imported = self
            .write(move |inner, conn| {
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(sqlite_err)?;
                let id = school.to_string();
                let exists: Option<i64> = tx
                    .query_row(
                        "SELECT 1 FROM events WHERE school_id = ?1 LIMIT 1",
                        params![id],
                        |row| row.get(0),
                    )
                    .optional()
                    .map_err(sqlite_err)?;
                if exists.is_some() {
                    return Err(StoreError::ImportRefused(format!(
                        "school {school} has events here already"
                    )));
                }
                let now = format_timestamp(OffsetDateTime::now_utc());
                for (subject, state) in &keys {
                    let (wrapped, erased_at) = match state {
                        KeyState::Present(k) => {
                            (Some(inner.master.wrap_subject_key(school, *subject, k)?), None)
                        }
                        KeyState::Erased => (None, Some(now.clone())),
                    };
                    tx.execute(
                        "INSERT INTO subject_keys (school_id, subject_id, wrapped_key, created_at, \
                         erased_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                        params![id, subject.to_string(), wrapped, now, erased_at],
                    )
                    .map_err(|e| match &e {
                        rusqlite::Error::SqliteFailure(f, _)
                            if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY =>
                        {
                            StoreError::ImportRefused(format!(
                                "school {school} has subject keys here already"
                            ))
                        }
                        _ => sqlite_err(e),
                    })?;
                }
                if expected.0 == 0 {
                    return Err(StoreError::ImportRefused("the export holds no events".into()));
                }
                let mut chain = ChainCheck::new(school);
                let mut erased = Vec::new();
                while let Some(item) = items.blocking_recv() {
                    match item {
                        ImportItem::Failed(reason) => {
                            return Err(StoreError::ImportRefused(reason));
                        }
                        ImportItem::Attachment {
                            media_type,
                            stored_at,
                            content,
                        } => {
                            check_media_type(&media_type)?;
                            let hash = content_hash(&content);
                            let size =
                                i64::try_from(content.len()).map_err(StoreError::internal)?;
                            tx.execute(
                                "INSERT INTO attachments (school_id, hash, media_type, size, \
                                 content, stored_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
                                 ON CONFLICT (school_id, hash) DO NOTHING",
                                params![
                                    id,
                                    hash.as_bytes().as_slice(),
                                    media_type,
                                    size,
                                    content,
                                    format_timestamp(stored_at)
                                ],
                            )
                            .map_err(sqlite_err)?;
                        }
                        ImportItem::Events(batch) => {
                            let mut insert = tx
                                .prepare_cached(
                                    "INSERT INTO events (school_id, school_seq, stream_id, \
                                     stream_version, event_id, event_type, schema_version, data, \
                                     actor_id, actor_role, correlation_id, causation_id, \
                                     occurred_at, recorded_at, idempotency_key, prev_hash, hash) \
                                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, \
                                     ?13, ?14, ?15, ?16, ?17)",
                                )
                                .map_err(sqlite_err)?;
                            for e in &batch {
                                chain.check(e)?;
                                erased.extend(crate::verify::erased_subject(e));
                                insert
                                    .execute(params![
                                        id,
                                        to_i64(e.school_seq),
                                        e.stream_id.as_str(),
                                        to_i64(e.stream_version),
                                        e.event_id.to_string(),
                                        e.event_type.as_str(),
                                        e.schema_version,
                                        e.stored_data,
                                        e.actor_id.map(|a| a.to_string()),
                                        e.actor_role.as_str(),
                                        e.correlation_id.to_string(),
                                        e.causation_id.map(|c| c.to_string()),
                                        format_timestamp(e.occurred_at),
                                        format_timestamp(e.recorded_at),
                                        e.idempotency_key.as_ref().map(IdempotencyKey::as_str),
                                        e.prev_hash.0.as_slice(),
                                        e.hash.0.as_slice(),
                                    ])
                                    .map_err(|err| match &err {
                                        rusqlite::Error::SqliteFailure(f, _)
                                            if f.extended_code
                                                == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE =>
                                        {
                                            StoreError::ImportRefused(
                                                "an event id appears twice in the log".into(),
                                            )
                                        }
                                        _ => sqlite_err(err),
                                    })?;
                            }
                        }
                    }
                }
                let (events, head) = chain.finish(expected)?;
                // A key the log records destroyed stays destroyed, whatever the bundle held.
                for subject in &erased {
                    tx.execute(
                        "INSERT INTO subject_keys (school_id, subject_id, wrapped_key, created_at, \
                         erased_at) VALUES (?1, ?2, NULL, ?3, ?3) ON CONFLICT (school_id, \
                         subject_id) DO UPDATE SET wrapped_key = NULL, \
                         erased_at = coalesce(erased_at, ?3)",
                        params![id, subject.to_string(), now],
                    )
                    .map_err(sqlite_err)?;
                }
                if let Some(head) = head {
                    tx.execute(
                        "INSERT INTO school_heads (school_id, last_seq, last_hash) VALUES (?1, ?2, ?3)",
                        params![id, to_i64(events), head.0.as_slice()],
                    )
                    .map_err(sqlite_err)?;
                }
                tx.commit().map_err(sqlite_err)?;
                Ok(events)
            })
            .await?;
        self.inner.wake.send_modify(|v| *v = v.wrapping_add(1));
        Ok(imported)
    }

    async fn put_attachment(
        &self,
        school: SchoolId,
        media_type: &str,
        content: &[u8],
    ) -> Result<AttachmentMeta, StoreError> {
        check_media_type(media_type)?;
        let hash = content_hash(content);
        let size = i64::try_from(content.len()).map_err(StoreError::internal)?;
        let (media_type, content) = (media_type.to_owned(), content.to_vec());
        self.write(move |_, conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(sqlite_err)?;
            // The same bytes stored again keep the first record.
            tx.execute(
                "INSERT INTO attachments (school_id, hash, media_type, size, content, stored_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (school_id, hash) DO NOTHING",
                params![
                    school.to_string(),
                    hash.as_bytes().as_slice(),
                    media_type,
                    size,
                    content,
                    format_timestamp(OffsetDateTime::now_utc()),
                ],
            )
            .map_err(sqlite_err)?;
            let (meta, _) = read_attachment(&tx, ATTACHMENT_META, school, &hash, |_| Ok(()))?
                .ok_or_else(|| {
                    StoreError::internal("an attachment just stored cannot be read back")
                })?;
            tx.commit().map_err(sqlite_err)?;
            Ok(meta)
        })
        .await
    }

    async fn attachment_meta(
        &self,
        school: SchoolId,
        hash: &ContentHash,
    ) -> Result<Option<AttachmentMeta>, StoreError> {
        let hash = *hash;
        self.read(move |_, conn| {
            Ok(
                read_attachment(conn, ATTACHMENT_META, school, &hash, |_| Ok(()))?
                    .map(|(meta, ())| meta),
            )
        })
        .await
    }

    async fn attachment(
        &self,
        school: SchoolId,
        hash: &ContentHash,
    ) -> Result<Option<(AttachmentMeta, Vec<u8>)>, StoreError> {
        let hash = *hash;
        self.read(move |_, conn| {
            read_attachment(
                conn,
                "SELECT media_type, size, stored_at, content FROM attachments \
                 WHERE school_id = ?1 AND hash = ?2",
                school,
                &hash,
                |row| row.get::<_, Vec<u8>>(3),
            )
        })
        .await
    }

    fn wake_signal(&self) -> watch::Receiver<u64> {
        self.inner.wake.subscribe()
    }

    async fn migration_status(&self) -> Result<MigrationStatus, StoreError> {
        self.read(|_, conn| migrate::check(migrate::SQLITE, &applied_migrations(conn)?))
            .await
    }

    async fn migrate(&self) -> Result<Vec<u32>, StoreError> {
        self.write(|_, conn| {
            conn.execute_batch(
                "CREATE TABLE IF NOT EXISTS registro_migrations (
                     version    INTEGER PRIMARY KEY,
                     name       TEXT NOT NULL,
                     checksum   TEXT NOT NULL,
                     applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
                 ) STRICT",
            )
            .map_err(sqlite_err)?;
            let status = migrate::check(migrate::SQLITE, &applied_migrations(conn)?)?;
            let mut done = Vec::new();
            for m in migrate::SQLITE
                .iter()
                .filter(|m| status.pending.contains(&m.version))
            {
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(sqlite_err)?;
                tx.execute_batch(m.sql).map_err(|e| {
                    StoreError::Migration(format!(
                        "migration {} ({}) failed: {e}",
                        m.version, m.name
                    ))
                })?;
                tx.execute(
                    "INSERT INTO registro_migrations (version, name, checksum) VALUES (?1, ?2, ?3)",
                    params![m.version, m.name, m.checksum()],
                )
                .map_err(sqlite_err)?;
                tx.commit().map_err(sqlite_err)?;
                done.push(m.version);
            }
            Ok(done)
        })
        .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.read(|_, conn| {
            conn.query_row("SELECT 1", [], |_| Ok(()))
                .map_err(sqlite_err)
        })
        .await
    }

    async fn prepare_projection(&self, schema: &ProjectionSchema) -> Result<(), StoreError> {
        check_identifier("projection", schema.name)?;
        let (name, steps) = (schema.name, schema.sqlite);
        self.write(move |_, conn| {
            // One step per transaction, each checked again under the write lock, so that
            // another process preparing the same projection never applies a step twice.
            loop {
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(sqlite_err)?;
                let pending = pending_steps(name, steps, &applied_steps(&tx, name)?)?;
                let Some(&i) = pending.first() else {
                    tx.execute(
                        "INSERT INTO projection_checkpoints (name, tx, id, updated_at) \
                         VALUES (?1, 0, 0, ?2) ON CONFLICT (name) DO NOTHING",
                        params![name, format_timestamp(OffsetDateTime::now_utc())],
                    )
                    .map_err(sqlite_err)?;
                    tx.commit().map_err(sqlite_err)?;
                    return Ok(());
                };
                let (step, sql) = (step_number(i), steps[i]);
                tx.execute_batch(sql).map_err(|e| {
                    StoreError::Migration(format!("step {step} of projection {name} failed: {e}"))
                })?;
                tx.execute(
                    "INSERT INTO projection_steps (name, step, checksum) VALUES (?1, ?2, ?3)",
                    params![name, step, step_checksum(sql)],
                )
                .map_err(sqlite_err)?;
                tx.commit().map_err(sqlite_err)?;
            }
        })
        .await
    }

    async fn projection_checkpoint(&self, name: &str) -> Result<Position, StoreError> {
        let name = name.to_owned();
        self.read(move |_, conn| checkpoint(conn, &name)).await
    }

    async fn commit_projection(
        &self,
        name: &str,
        from: Position,
        to: Position,
        ops: &[RowOp],
    ) -> Result<(), StoreError> {
        check_identifier("projection", name)?;
        // Checked and rendered before anything is written.
        let rendered = render_owned(ops)?;
        let name = name.to_owned();
        self.write(move |_, conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(sqlite_err)?;
            let now = format_timestamp(OffsetDateTime::now_utc());
            tx.execute(
                "INSERT INTO projection_checkpoints (name, tx, id, updated_at) \
                 VALUES (?1, 0, 0, ?2) ON CONFLICT (name) DO NOTHING",
                params![name, now],
            )
            .map_err(sqlite_err)?;
            let moved = tx
                .execute(
                    "UPDATE projection_checkpoints SET tx = ?2, id = ?3, updated_at = ?4 \
                     WHERE name = ?1 AND tx = ?5 AND id = ?6",
                    params![
                        name,
                        to_i64(to.tx),
                        to_i64(to.id),
                        now,
                        to_i64(from.tx),
                        to_i64(from.id)
                    ],
                )
                .map_err(sqlite_err)?;
            if moved != 1 {
                // Dropping the transaction rolls it back: nothing is written.
                return Err(projection::checkpoint_moved(
                    &name,
                    from,
                    checkpoint(&tx, &name)?,
                ));
            }
            // A stop the new checkpoint reaches is over.
            tx.execute(
                "UPDATE projection_checkpoints SET stopped_tx = NULL, stopped_id = NULL, \
                 stopped_reason = NULL, stopped_since = NULL \
                 WHERE name = ?1 AND (stopped_tx, stopped_id) <= (?2, ?3)",
                params![name, to_i64(to.tx), to_i64(to.id)],
            )
            .map_err(sqlite_err)?;
            execute_ops(&tx, &name, &rendered)?;
            tx.commit().map_err(sqlite_err)?;
            Ok(())
        })
        .await
    }

    async fn query_projections(
        &self,
        _school: SchoolId,
        queries: &[ProjectionQuery],
    ) -> Result<Vec<Rows>, StoreError> {
        if queries.is_empty() {
            return Ok(Vec::new());
        }
        // No row-level security here: each query names its school itself.
        let queries = queries.to_vec();
        self.read(move |_, conn| {
            // One snapshot for them all (WAL: a read transaction sees one state).
            let tx = conn.unchecked_transaction().map_err(sqlite_err)?;
            let answers = queries
                .iter()
                .map(|q| projection_rows(&tx, q))
                .collect::<Result<Vec<_>, _>>()?;
            tx.rollback().map_err(sqlite_err)?;
            Ok(answers)
        })
        .await
    }

    async fn count_events_after(&self, after: Position) -> Result<u64, StoreError> {
        self.read(move |_, conn| {
            conn.query_row(
                "SELECT count(*) FROM events WHERE id > ?1",
                params![to_i64(after.id)],
                |row| row.get::<_, i64>(0),
            )
            .map(to_u64)
            .map_err(sqlite_err)
        })
        .await
    }

    async fn begin_rebuild(&self, schema: &ProjectionSchema) -> Result<(), StoreError> {
        rebuild_target(schema.name)?;
        let path = self.rebuild_path(schema.name);
        let schema = *schema;
        blocking(move || {
            remove_rebuild(&path)?;
            // One transaction on a new file: a failed step leaves nothing behind.
            let built = (|| {
                let mut conn = connect_rebuild(&path, true)?;
                let tx = conn.transaction().map_err(sqlite_err)?;
                for (i, sql) in schema.sqlite.iter().enumerate() {
                    tx.execute_batch(sql).map_err(|e| {
                        StoreError::Migration(format!(
                            "step {} of projection {} failed in its rebuild: {e}",
                            step_number(i),
                            schema.name
                        ))
                    })?;
                }
                let created = tx
                    .prepare(
                        "SELECT name FROM sqlite_schema \
                         WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'",
                    )
                    .map_err(sqlite_err)?
                    .query_map([], |row| row.get::<_, String>(0))
                    .map_err(sqlite_err)?
                    .collect::<Result<BTreeSet<_>, _>>()
                    .map_err(sqlite_err)?;
                check_rebuilt_tables(&schema, &created)?;
                tx.commit().map_err(sqlite_err)
            })();
            if built.is_err() {
                let _ = remove_rebuild(&path);
            }
            built
        })
        .await
    }

    async fn commit_rebuild(&self, name: &str, ops: &[RowOp]) -> Result<(), StoreError> {
        rebuild_target(name)?;
        let rendered = render_owned(ops)?;
        let path = self.rebuild_path(name);
        let name = name.to_owned();
        // The build file has a connection of its own: the live database's writer is not held.
        blocking(move || {
            if !path.exists() {
                return Err(no_rebuild(&name));
            }
            let mut conn = connect_rebuild(&path, false)?;
            let tx = conn.transaction().map_err(sqlite_err)?;
            execute_ops(&tx, &name, &rendered)?;
            tx.commit().map_err(sqlite_err)
        })
        .await
    }

    async fn swap_rebuild(
        &self,
        schema: &ProjectionSchema,
        position: Position,
    ) -> Result<(), StoreError> {
        rebuild_target(schema.name)?;
        for table in schema.tables {
            check_identifier("table", table)?;
        }
        let path = self.rebuild_path(schema.name);
        let schema = *schema;
        self.write(move |_, conn| {
            if !path.exists() {
                return Err(no_rebuild(schema.name));
            }
            let file = path.to_str().ok_or_else(|| {
                StoreError::internal(format!("{} is not valid UTF-8", path.display()))
            })?;
            // Attached outside the transaction (SQLite requires it), detached whatever happens.
            conn.execute(
                &format!("ATTACH DATABASE ?1 AS {REBUILD_ATTACHED}"),
                params![file],
            )
            .map_err(sqlite_err)?;
            let swapped = swap_attached(conn, &schema, position);
            let detached = conn
                .execute_batch(&format!("DETACH DATABASE {REBUILD_ATTACHED}"))
                .map_err(sqlite_err);
            swapped?;
            detached?;
            // Committed: the file is no longer needed. One left by a crash here is removed by
            // the next rebuild.
            if let Err(e) = remove_rebuild(&path) {
                tracing::warn!(error = %e, path = %path.display(), "cannot remove a swapped rebuild");
            }
            Ok(())
        })
        .await
    }

    async fn discard_rebuild(&self, name: &str) -> Result<(), StoreError> {
        rebuild_target(name)?;
        let path = self.rebuild_path(name);
        blocking(move || remove_rebuild(&path)).await
    }

    async fn try_lock_projection(&self, name: &str) -> Result<Option<ProjectionLease>, StoreError> {
        check_identifier("projection", name)?;
        let key = (self.inner.canonical_path.clone(), name.to_owned());
        let taken = LEASES
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key.clone());
        Ok(taken.then(|| ProjectionLease::new(name, SqliteLease { key })))
    }

    async fn projection_lag(&self, name: &str) -> Result<ProjectionLag, StoreError> {
        let name = name.to_owned();
        self.read(move |_, conn| {
            let row = conn
                .query_row(
                    "SELECT c.name IS NOT NULL, coalesce(c.tx, 0), coalesce(c.id, 0), \
                     c.stopped_tx, c.stopped_id, c.stopped_reason, c.stopped_since, \
                     (SELECT count(*) FROM events e WHERE e.id > coalesce(c.id, 0)), \
                     (SELECT e.recorded_at FROM events e WHERE e.id > coalesce(c.id, 0) \
                      ORDER BY e.id LIMIT 1) \
                     FROM (SELECT ?1 AS name) AS n \
                     LEFT JOIN projection_checkpoints c ON c.name = n.name",
                    params![name],
                    |row| {
                        Ok((
                            row.get::<_, bool>(0)?,
                            stored_position(row.get(1)?, row.get(2)?),
                            (
                                row.get::<_, Option<i64>>(3)?,
                                row.get::<_, Option<i64>>(4)?,
                                row.get::<_, Option<String>>(5)?,
                                row.get::<_, Option<String>>(6)?,
                            ),
                            row.get::<_, i64>(7)?,
                            row.get::<_, Option<String>>(8)?,
                        ))
                    },
                )
                .map_err(sqlite_err)?;
            let (prepared, checkpoint, stop, events, oldest) = row;
            let stopped = match stop {
                (Some(tx), Some(id), reason, Some(since)) => Some(ProjectionStop {
                    at: stored_position(tx, id),
                    reason: reason.unwrap_or_default(),
                    since: parse_timestamp(&since)?,
                }),
                _ => None,
            };
            Ok(ProjectionLag {
                prepared,
                checkpoint,
                events: to_u64(events),
                oldest: oldest.as_deref().map(parse_timestamp).transpose()?,
                stopped,
            })
        })
        .await
    }

    async fn record_projection_stop(
        &self,
        name: &str,
        at: Position,
        reason: &str,
    ) -> Result<(), StoreError> {
        check_identifier("projection", name)?;
        let (name, reason) = (name.to_owned(), reason.to_owned());
        self.write(move |_, conn| {
            // The same event again keeps its first time (the SET reads the row as it was).
            conn.execute(
                "UPDATE projection_checkpoints SET stopped_since = CASE \
                 WHEN stopped_tx = ?2 AND stopped_id = ?3 THEN stopped_since ELSE ?5 END, \
                 stopped_tx = ?2, stopped_id = ?3, stopped_reason = ?4 \
                 WHERE name = ?1 AND (tx, id) < (?2, ?3)",
                params![
                    name,
                    to_i64(at.tx),
                    to_i64(at.id),
                    reason,
                    format_timestamp(OffsetDateTime::now_utc())
                ],
            )
            .map_err(sqlite_err)?;
            Ok(())
        })
        .await
    }

    async fn projection_reached(
        &self,
        name: &str,
        school: SchoolId,
        school_seq: u64,
    ) -> Result<bool, StoreError> {
        if school_seq == 0 {
            return Ok(true);
        }
        let name = name.to_owned();
        self.read(move |_, conn| {
            conn.query_row(
                "SELECT EXISTS (SELECT 1 FROM events e \
                 JOIN projection_checkpoints c ON c.name = ?1 \
                 WHERE e.school_id = ?2 AND e.school_seq = ?3 AND e.id <= c.id)",
                params![name, school.to_string(), to_i64(school_seq)],
                |row| row.get(0),
            )
            .map_err(sqlite_err)
        })
        .await
    }
}

/// The projection leases held in this process, by database file and projection.
static LEASES: LazyLock<Mutex<HashSet<(PathBuf, String)>>> = LazyLock::new(Mutex::default);

/// A projection lease of this process: released when dropped.
#[derive(Debug)]
struct SqliteLease {
    key: (PathBuf, String),
}

impl Hold for SqliteLease {
    fn is_held(&self) -> bool {
        true
    }
}

impl Drop for SqliteLease {
    fn drop(&mut self) {
        LEASES
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.key);
    }
}

/// A row operation rendered, owning its values: its table, SQL and parameters.
type OwnedOp = (&'static str, String, Vec<Cell>);

/// Checks and renders row operations, before anything is written.
fn render_owned(ops: &[RowOp]) -> Result<Vec<OwnedOp>, StoreError> {
    ops.iter()
        .map(|op| {
            render(op).map(|r| {
                let params: Vec<Cell> = r.params.into_iter().cloned().collect();
                (r.table, r.sql, params)
            })
        })
        .collect()
}

/// Executes rendered row operations in order on `conn` (inside the caller's transaction).
fn execute_ops(conn: &Connection, name: &str, rendered: &[OwnedOp]) -> Result<(), StoreError> {
    for (i, (table, sql, params)) in rendered.iter().enumerate() {
        let mut stmt = conn.prepare_cached(sql).map_err(sqlite_err)?;
        let refs: Vec<&Cell> = params.iter().collect();
        bind_cells(&mut stmt, &refs)?;
        stmt.raw_execute().map_err(|e| match sqlite_err(e) {
            StoreError::Internal(e) => StoreError::internal(format!(
                "projection {name}: row operation {i} on {table} failed: {e}"
            )),
            transient => transient,
        })?;
    }
    Ok(())
}

/// The schema name the build file of a rebuild is attached as, for its swap.
const REBUILD_ATTACHED: &str = "registro_rebuild";

/// The files SQLite may keep beside a database: its journal, write-ahead log and shared memory.
const SIDE_FILES: [&str; 3] = ["-journal", "-wal", "-shm"];

/// Opens the build file of a rebuild (created when `create`). It is thrown away if anything
/// goes wrong, so it is written without syncing and with the rollback journal in memory.
fn connect_rebuild(path: &Path, create: bool) -> Result<Connection, StoreError> {
    let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    if create {
        flags |= OpenFlags::SQLITE_OPEN_CREATE;
    }
    let conn = Connection::open_with_flags(path, flags)
        .map_err(|e| StoreError::unavailable(format!("cannot open {}: {e}", path.display())))?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(sqlite_err)?;
    conn.pragma_update(None, "journal_mode", "MEMORY")
        .map_err(sqlite_err)?;
    conn.pragma_update(None, "synchronous", "OFF")
        .map_err(sqlite_err)?;
    conn.pragma_update(None, "foreign_keys", "ON")
        .map_err(sqlite_err)?;
    Ok(conn)
}

/// Removes the build file of a rebuild and its side files, if there are any.
fn remove_rebuild(path: &Path) -> Result<(), StoreError> {
    let mut files = vec![path.to_path_buf()];
    for suffix in SIDE_FILES {
        let mut side = path.as_os_str().to_owned();
        side.push(suffix);
        files.push(PathBuf::from(side));
    }
    for file in files {
        match std::fs::remove_file(&file) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(StoreError::unavailable(format!(
                    "cannot remove {}: {e}",
                    file.display()
                )));
            }
        }
    }
    Ok(())
}

/// The refusal of a rebuild's commit or swap when none was begun.
fn no_rebuild(name: &str) -> StoreError {
    StoreError::internal(format!(
        "no rebuild of projection {name} was begun (or it was swapped in or discarded)"
    ))
}

/// The swap of a rebuild attached as [`REBUILD_ATTACHED`], in one transaction: the checkpoint,
/// then each table's rows.
fn swap_attached(
    conn: &mut Connection,
    schema: &ProjectionSchema,
    position: Position,
) -> Result<(), StoreError> {
    let name = schema.name;
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sqlite_err)?;
    tx.execute(
        "INSERT INTO main.projection_checkpoints (name, tx, id, updated_at) \
         VALUES (?1, ?2, ?3, ?4) ON CONFLICT (name) DO UPDATE \
         SET tx = excluded.tx, id = excluded.id, updated_at = excluded.updated_at",
        params![
            name,
            to_i64(position.tx),
            to_i64(position.id),
            format_timestamp(OffsetDateTime::now_utc())
        ],
    )
    .map_err(sqlite_err)?;
    // The rebuilt view applied the event a recorded stop names, if it reaches it.
    tx.execute(
        "UPDATE main.projection_checkpoints SET stopped_tx = NULL, stopped_id = NULL, \
         stopped_reason = NULL, stopped_since = NULL \
         WHERE name = ?1 AND (stopped_tx, stopped_id) <= (?2, ?3)",
        params![name, to_i64(position.tx), to_i64(position.id)],
    )
    .map_err(sqlite_err)?;
    let failed = |e: rusqlite::Error| match sqlite_err(e) {
        StoreError::Internal(e) => StoreError::internal(format!(
            "projection {name}: swapping its rebuild in failed: {e}"
        )),
        transient => transient,
    };
    for table in schema.tables.iter().rev() {
        tx.execute(&format!("DELETE FROM main.{table}"), [])
            .map_err(failed)?;
    }
    for table in schema.tables {
        let columns = tx
            .prepare("SELECT name FROM pragma_table_info(?1, 'main') ORDER BY cid")
            .map_err(sqlite_err)?
            .query_map(params![table], |row| row.get::<_, String>(0))
            .map_err(sqlite_err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(sqlite_err)?;
        if columns.is_empty() {
            return Err(StoreError::internal(format!(
                "projection {name} has no live table {table} to swap its rebuild into: prepare \
                 the projection first"
            )));
        }
        let columns = columns
            .iter()
            .map(|c| format!("\"{}\"", c.replace('"', "\"\"")))
            .collect::<Vec<_>>()
            .join(", ");
        tx.execute(
            &format!(
                "INSERT INTO main.{table} ({columns}) \
                 SELECT {columns} FROM {REBUILD_ATTACHED}.{table}"
            ),
            [],
        )
        .map_err(failed)?;
    }
    tx.commit().map_err(sqlite_err)
}

/// The steps of a projection recorded as applied.
fn applied_steps(conn: &Connection, name: &str) -> Result<Vec<(i64, String)>, StoreError> {
    let mut stmt = conn
        .prepare_cached("SELECT step, checksum FROM projection_steps WHERE name = ?1 ORDER BY step")
        .map_err(sqlite_err)?;
    stmt.query_map(params![name], |row| Ok((row.get(0)?, row.get(1)?)))
        .map_err(sqlite_err)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(sqlite_err)
}

/// A projection's checkpoint; [`Position::START`] when it has none.
fn checkpoint(conn: &Connection, name: &str) -> Result<Position, StoreError> {
    conn.query_row(
        "SELECT tx, id FROM projection_checkpoints WHERE name = ?1",
        params![name],
        |row| Ok(stored_position(row.get(0)?, row.get(1)?)),
    )
    .optional()
    .map(Option::unwrap_or_default)
    .map_err(sqlite_err)
}

/// Binds `cells` to a statement written with `$1`, `$2`... placeholders. SQLite numbers named
/// parameters in the order they first appear, so each is bound by its name, not its position:
/// `$2` may come before `$1`. Every placeholder must have a cell and every cell a placeholder.
fn bind_cells(stmt: &mut rusqlite::Statement<'_>, cells: &[&Cell]) -> Result<(), StoreError> {
    let count = stmt.parameter_count();
    if count != cells.len() {
        return Err(StoreError::internal(format!(
            "the statement has {count} parameters but {} values were given",
            cells.len()
        )));
    }
    for index in 1..=count {
        let cell = stmt
            .parameter_name(index)
            .and_then(|n| n.strip_prefix('$'))
            .and_then(|n| n.parse::<usize>().ok())
            .and_then(|n| n.checked_sub(1))
            .and_then(|n| cells.get(n))
            .ok_or_else(|| {
                StoreError::internal(format!(
                    "parameter {:?} is not one of $1 to ${count}",
                    stmt.parameter_name(index).unwrap_or("?")
                ))
            })?;
        stmt.raw_bind_parameter(index, SqlCell(cell))
            .map_err(sqlite_err)?;
    }
    Ok(())
}

/// A cell as SQLite stores it: booleans as 0/1, UUIDs hyphenated lowercase, JSON as text,
/// times as RFC 3339 UTC with microseconds (as the events' times).
struct SqlCell<'a>(&'a Cell);

impl rusqlite::ToSql for SqlCell<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self.0 {
            Cell::Null => ToSqlOutput::Owned(SqlValue::Null),
            Cell::Bool(b) => ToSqlOutput::Owned(SqlValue::Integer(i64::from(*b))),
            Cell::Int(n) => ToSqlOutput::Owned(SqlValue::Integer(*n)),
            Cell::Text(t) => ToSqlOutput::Borrowed(ValueRef::Text(t.as_bytes())),
            Cell::Uuid(u) => ToSqlOutput::Owned(SqlValue::Text(u.hyphenated().to_string())),
            Cell::Json(v) => ToSqlOutput::Owned(SqlValue::Text(v.to_string())),
            Cell::Time(t) => ToSqlOutput::Owned(SqlValue::Text(format_timestamp(*t))),
        })
    }
}

/// Reads column `i` of a projection's row as `ty`.
fn read_cell(row: &Row<'_>, i: usize, ty: CellType) -> Result<Cell, StoreError> {
    let value = row.get_ref(i).map_err(sqlite_err)?;
    let text = |t: &[u8]| {
        std::str::from_utf8(t)
            .map(str::to_owned)
            .map_err(StoreError::internal)
    };
    let cell = match (ty, value) {
        (_, ValueRef::Null) => Cell::Null,
        (CellType::Bool, ValueRef::Integer(0)) => Cell::Bool(false),
        (CellType::Bool, ValueRef::Integer(1)) => Cell::Bool(true),
        (CellType::Int, ValueRef::Integer(n)) => Cell::Int(n),
        (CellType::Text, ValueRef::Text(t)) => Cell::Text(text(t)?),
        (CellType::Uuid, ValueRef::Text(t)) => {
            Cell::Uuid(uuid::Uuid::parse_str(&text(t)?).map_err(StoreError::internal)?)
        }
        (CellType::Json, ValueRef::Text(t)) => {
            Cell::Json(serde_json::from_slice(t).map_err(StoreError::internal)?)
        }
        (CellType::Time, ValueRef::Text(t)) => Cell::Time(parse_timestamp(&text(t)?)?),
        (ty, value) => {
            return Err(StoreError::internal(format!(
                "column {i} holds a value of type {}, which does not read as {ty:?}",
                value.data_type()
            )));
        }
    };
    Ok(cell)
}

fn applied_migrations(conn: &Connection) -> Result<Vec<AppliedMigration>, StoreError> {
    let exists: bool = conn
        .query_row(
            "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'registro_migrations'",
            [],
            |row| row.get(0),
        )
        .map_err(sqlite_err)?;
    if !exists {
        return Ok(Vec::new());
    }
    let mut stmt = conn
        .prepare("SELECT version, checksum FROM registro_migrations ORDER BY version")
        .map_err(sqlite_err)?;
    stmt.query_map([], |row| {
        Ok(AppliedMigration {
            version: row.get(0)?,
            checksum: row.get(1)?,
        })
    })
    .map_err(sqlite_err)?
    .collect::<Result<Vec<_>, _>>()
    .map_err(sqlite_err)
}

fn connect(path: &Path, read_only: bool) -> Result<Connection, StoreError> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = Connection::open_with_flags(path, flags)
        .map_err(|e| StoreError::unavailable(format!("cannot open {}: {e}", path.display())))?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(sqlite_err)?;
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(sqlite_err)?;
    conn.pragma_update(None, "foreign_keys", "ON")
        .map_err(sqlite_err)?;
    Ok(conn)
}

fn row_to_event(row: &Row<'_>) -> Result<RecordedEvent, StoreError> {
    let text = |i: usize| row.get::<_, String>(i).map_err(sqlite_err);
    let opt_text = |i: usize| row.get::<_, Option<String>>(i).map_err(sqlite_err);
    let int = |i: usize| row.get::<_, i64>(i).map_err(sqlite_err);
    let blob = |i: usize| row.get::<_, Vec<u8>>(i).map_err(sqlite_err);
    let uuid = |s: String| uuid::Uuid::parse_str(&s).map_err(StoreError::internal);
    let stored = text(8)?;
    let data = serde_json::from_str(&stored)
        .map_err(|e| StoreError::internal(format!("stored event data is not JSON: {e}")))?;
    Ok(RecordedEvent {
        position: Position {
            tx: 0,
            id: to_u64(int(0)?),
        },
        school_id: SchoolId::from_uuid(uuid(text(1)?)?),
        school_seq: to_u64(int(2)?),
        stream_id: StreamId::parse(text(3)?).map_err(StoreError::internal)?,
        stream_version: to_u64(int(4)?),
        event_id: uuid(text(5)?)?.into(),
        event_type: EventType::parse(text(6)?).map_err(StoreError::internal)?,
        schema_version: u32::try_from(int(7)?).map_err(StoreError::internal)?,
        data,
        stored_data: stored,
        actor_id: opt_text(9)?.map(uuid).transpose()?.map(PersonId::from_uuid),
        actor_role: Role::from_str(&text(10)?).map_err(StoreError::internal)?,
        correlation_id: uuid(text(11)?)?.into(),
        causation_id: opt_text(12)?.map(uuid).transpose()?.map(Into::into),
        occurred_at: parse_timestamp(&text(13)?)?,
        recorded_at: parse_timestamp(&text(14)?)?,
        idempotency_key: opt_text(15)?
            .map(IdempotencyKey::parse)
            .transpose()
            .map_err(StoreError::internal)?,
        prev_hash: Hash::from_slice(&blob(16)?)?,
        hash: Hash::from_slice(&blob(17)?)?,
    })
}

/// Busy, locked, full or unopenable databases are [`StoreError::Unavailable`]; everything else
/// is [`StoreError::Internal`].
fn sqlite_err(e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(
            ErrorCode::DatabaseBusy
            | ErrorCode::DatabaseLocked
            | ErrorCode::DiskFull
            | ErrorCode::CannotOpen
            | ErrorCode::SystemIoFailure,
        ) => StoreError::unavailable(e),
        _ => StoreError::internal(e),
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::internal(format!("blocking task failed: {e}")))?
}

#[cfg(feature = "testing")]
#[async_trait]
impl crate::testing::HoldAppends for SqliteStore {
    async fn append_held(&self, request: AppendRequest) -> crate::testing::HeldAppend {
        let store = self.clone();
        crate::testing::HeldAppend::start(move |gate| async move {
            store.append_gated(request, Some(gate)).await
        })
    }
}

/// The rows of one projection query, each decoded by its columns.
fn projection_rows(conn: &Connection, q: &ProjectionQuery) -> Result<Rows, StoreError> {
    let sql = &q.sql;
    let mut stmt = conn
        .prepare_cached(sql)
        .map_err(|e| StoreError::internal(format!("projection query {sql:?} is invalid: {e}")))?;
    if stmt.column_count() != q.columns.len() {
        return Err(StoreError::internal(format!(
            "projection query {sql:?} has {} columns, {} were expected",
            stmt.column_count(),
            q.columns.len()
        )));
    }
    let refs: Vec<&Cell> = q.params.iter().collect();
    bind_cells(&mut stmt, &refs)?;
    let mut rows = stmt.raw_query();
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(sqlite_err)? {
        out.push(
            q.columns
                .iter()
                .enumerate()
                .map(|(i, ty)| read_cell(row, i, *ty))
                .collect::<Result<Vec<_>, _>>()?,
        );
    }
    Ok(out)
}
