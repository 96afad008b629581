//! The PostgreSQL adapter (production).
//!
//! * Appends of one school are serialised by a transaction-scoped advisory lock keyed by the
//!   school, which makes `school_seq` dense and lets the append extend the school's hash chain
//!   inside its own transaction. Appends of different schools take different locks and never
//!   wait for each other.
//! * Row-level security (migration 0002, `docs/decisions/0009-row-level-security.md`): every
//!   statement runs in a transaction that first names its school (`set_config('registro.school',
//!   ..., true)`, transaction-local because connections are pooled) and sees only that school's
//!   rows; only the subscription read and the migration runner declare that they work across
//!   schools. `in_scope` is the one way this adapter opens a transaction: `BEGIN` and the
//!   setting are pipelined with the work's first statements, so they cost no round trip.
//! * The statements of an append are pipelined: one round trip begins the transaction, names
//!   the school, takes the lock and reads the idempotency record, the stream's version and the
//!   school's head; a second inserts the events, the head and the idempotency record; then
//!   `COMMIT`. The notification follows the commit, from one task per process (ADR 0003).
//! * Subscriptions read in `(tx, id)` order below the fence
//!   `pg_snapshot_xmin(pg_current_snapshot())` (see [`crate::subscription`]); `NOTIFY
//!   registro_events` wakes them, polling is the fallback.
//! * Every pooled connection sets `idle_in_transaction_session_timeout`, so that one stuck
//!   transaction cannot hold the fence (and with it every subscriber) for long.
//! * Projections commit their rows and checkpoint across schools (`registro.all_schools`), the
//!   checkpoint update first: it locks the checkpoint row, so that of two instances committing
//!   from the same checkpoint the second waits, finds it moved, and writes nothing. Their row
//!   operations are pipelined. A projection's lease is a session-level advisory lock on a
//!   connection of its own, outside the pool, which frees it when the process dies.
//! * A projection is rebuilt in the schema `registro_rebuild_<name>`, its DDL run with that
//!   schema first on the transaction's `search_path` and its row operations naming the tables in
//!   full; the swap locks the checkpoint's row first, then replaces the live tables' rows and
//!   drops the schema, in one transaction (`docs/decisions/0021-projection-rebuild.md`).

use std::collections::{BTreeSet, HashMap};
use std::error::Error as StdError;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{
    ClientWrapper, Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime,
};
use futures_util::{FutureExt, StreamExt as _};
use registro_domain::{ContentHash, PersonId, Role, SchoolId};
use sha2::{Digest as _, Sha256};
use time::{OffsetDateTime, PrimitiveDateTime, UtcOffset};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::private::BytesMut;
use tokio_postgres::types::{FromSql, IsNull, ToSql, Type, to_sql_checked};
use tokio_postgres::{AsyncMessage, Client, NoTls, Row, Statement};
use uuid::Uuid;

use crate::attachment::{AttachmentMeta, check_media_type, content_hash};
use crate::canonical::truncate_to_micros;
use crate::envelope::{
    AppendOutcome, AppendRequest, EventType, ExpectedVersion, Hash, IdempotencyKey, Position,
    RecordedEvent, SchoolHead, StreamId,
};
use crate::error::StoreError;
use crate::migrate::{self, AppliedMigration, MigrationStatus};
use crate::plan::{AppendPlan, school_lock_key};
use crate::projection::{
    self, Cell, CellType, Hold, ProjectionLag, ProjectionLease, ProjectionSchema, ProjectionStop,
    RenderedOp, RowOp, check_identifier, check_rebuilt_tables, pending_steps, rebuild_target,
    step_checksum, step_number, stored_position,
};
use crate::reads::{ProjectionQuery, Rows};
use crate::rows::{open_school_events, page, subjects_by_school, to_i64, to_u64};
use crate::seal::{KeyState, MasterKey, SubjectKey};
use crate::verify::ChainCheck;
use crate::{Backend, EventStore, ImportItem, Sealed};

/// The channel `NOTIFY`ed after every append.
pub const NOTIFY_CHANNEL: &str = "registro_events";
/// How long a session may sit idle inside a transaction before PostgreSQL ends it.
pub const IDLE_IN_TRANSACTION_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a request waits for a pooled connection before answering "unavailable".
pub const POOL_WAIT: Duration = Duration::from_secs(5);
/// The advisory lock (two-key form, apart from the per-school one-key locks) held while
/// migrating.
const MIGRATION_LOCK: (i32, i32) = (0x7265_6769, 1);
/// The first half of the session-level advisory locks (two-key form) that hold projection
/// leases; the second half is [`projection_lock_key`] of the projection's name.
const PROJECTION_LEASE_LOCK: i32 = 0x7072_6f6a;
/// The first half of the transaction-level advisory locks that serialise the preparing of one
/// projection (apart from its lease, which a running instance holds meanwhile).
const PROJECTION_PREPARE_LOCK: i32 = 0x7072_6570;

/// A projection's checkpoint, by name.
const CHECKPOINT: &str = "SELECT tx, id FROM projection_checkpoints WHERE name = $1";
/// Creates a projection's checkpoint at the start if it has none.
const CHECKPOINT_AT_START: &str = "INSERT INTO projection_checkpoints (name, tx, id) \
    VALUES ($1, 0, 0) ON CONFLICT (name) DO NOTHING";

/// Clears a projection's recorded stop when the checkpoint reaches it (`$2`, `$3`: the new
/// checkpoint). Rows compared with NULL match nothing: no stop, nothing cleared.
const CLEAR_STOP: &str = "UPDATE projection_checkpoints SET stopped_tx = NULL, \
    stopped_id = NULL, stopped_reason = NULL, stopped_since = NULL \
    WHERE name = $1 AND (stopped_tx, stopped_id) <= ($2, $3)";

/// An attachment's description, by school and hash.
const ATTACHMENT_META: &str =
    "SELECT media_type, size, stored_at FROM attachments WHERE school_id = $1 AND hash = $2";

const COLUMNS: &str = "(tx::text)::bigint, id, school_id, school_seq, stream_id, stream_version, \
    event_id, event_type, schema_version, data, actor_id, actor_role, correlation_id, \
    causation_id, occurred_at, recorded_at, idempotency_key, prev_hash, hash";

/// The PostgreSQL event store. Cheap to clone.
#[derive(Clone, Debug)]
pub struct PgStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    pool: Pool,
    /// How to open a connection outside the pool (projection leases).
    config: tokio_postgres::Config,
    master: MasterKey,
    wake: watch::Sender<u64>,
    listener: JoinHandle<()>,
    /// Asks the notifier to tell other processes' subscribers that events were committed.
    notify: Arc<tokio::sync::Notify>,
    notifier: JoinHandle<()>,
    /// Each school's head as this process last appended it: the state a predicted append
    /// chains from (ADR 0036). Only a prediction: the database checks it under the lock.
    /// Whether an append of the school is being predicted in this process: the next one then
    /// goes the long way rather than predict the same head and fail behind it.
    heads: std::sync::Mutex<HashMap<SchoolId, Remembered>>,
    /// The appends written by [`PgStore::append_predicted`].
    predicted: std::sync::atomic::AtomicU64,
}

/// A school's head as this process last appended it, and whether a predicted append of it is
/// under way.
#[derive(Debug, Clone, Copy)]
struct Remembered {
    head: SchoolHead,
    predicting: bool,
}

/// The most schools whose heads a process remembers; past it, it forgets them all (the next
/// append of each takes the long way once).
const REMEMBERED_HEADS: usize = 10_000;

impl Drop for Inner {
    fn drop(&mut self) {
        self.listener.abort();
        self.notifier.abort();
    }
}

/// The least time between two notifications of this process's appends.
const NOTIFY_EVERY: Duration = Duration::from_millis(10);

/// Sends `NOTIFY` on the events' channel after appends commit, one at a time: the appends that
/// commit while one is sent are told by the next. Outside the appends' transactions, because
/// PostgreSQL serialises the commits of every transaction that notifies behind one lock (with
/// its WAL flush), which would make concurrent appends of different schools queue behind each
/// other; a notification is only a wake-up hint (subscribers also poll), so a late or coalesced
/// one loses nothing.
///
/// Once asked, it waits [`NOTIFY_EVERY`] before sending, so that the appends committed meanwhile
/// share one `NOTIFY` (a commit of its own, serialised with every other notifying commit)
/// instead of one each: a subscriber in another process learns of the events at most that much
/// later.
async fn notifier(pool: Pool, notify: Arc<tokio::sync::Notify>) {
    loop {
        notify.notified().await;
        tokio::time::sleep(NOTIFY_EVERY).await;
        let sent = match pool.get().await {
            Ok(client) => client
                .execute("SELECT pg_notify($1, '')", &[&NOTIFY_CHANNEL])
                .await
                .map(drop)
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(error) = sent {
            tracing::debug!(%error, "cannot notify subscribers: they find the events by polling");
        }
    }
}

impl PgStore {
    /// Connects a pool of at most `max_connections` to `url` and starts listening for
    /// notifications.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the URL is malformed or the database cannot be reached.
    pub async fn connect(
        url: &str,
        max_connections: usize,
        master: MasterKey,
    ) -> Result<Self, StoreError> {
        let mut config = tokio_postgres::Config::from_str(url)
            .map_err(|e| StoreError::unavailable(format!("invalid database URL: {e}")))?;
        config
            .application_name("registro")
            .connect_timeout(Duration::from_secs(5))
            .options(format!(
                "-c idle_in_transaction_session_timeout={}",
                IDLE_IN_TRANSACTION_TIMEOUT.as_millis()
            ));
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(max_connections.max(1))
            .wait_timeout(Some(POOL_WAIT))
            .create_timeout(Some(Duration::from_secs(5)))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(StoreError::internal)?;
        let (wake, _) = watch::channel(0);
        let listener = tokio::spawn(listen(config.clone(), wake.clone()));
        let notify = Arc::new(tokio::sync::Notify::new());
        let notifier = tokio::spawn(notifier(pool.clone(), Arc::clone(&notify)));
        let store = Self {
            inner: Arc::new(Inner {
                pool,
                config,
                master,
                wake,
                listener,
                notify,
                notifier,
                heads: std::sync::Mutex::default(),
                predicted: std::sync::atomic::AtomicU64::new(0),
            }),
        };
        store.ping().await?;
        if !store.held_by_row_security().await? {
            tracing::warn!(
                "connected to PostgreSQL as a superuser or a role with BYPASSRLS: row-level \
                 security does not hold it, so one school's requests are kept from another's \
                 rows by registro's queries alone; connect as an ordinary role \
                 (docs/operations.md)"
            );
        }
        Ok(store)
    }

    /// Whether row-level security holds the role this store connects as: false for
    /// superusers and roles with `BYPASSRLS`, which it never holds. (A table's owner is held,
    /// since migration 0002 forces it.)
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the database cannot be reached.
    pub async fn held_by_row_security(&self) -> Result<bool, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_one(
                "SELECT NOT (rolsuper OR rolbypassrls) FROM pg_roles WHERE rolname = current_user",
                &[],
            )
            .await
            .map_err(pg_err)?;
        Ok(row.get(0))
    }

    /// How many appends this store wrote in one statement, on a predicted state (ADR 0036);
    /// the others took the long way.
    #[must_use]
    pub fn predicted_appends(&self) -> u64 {
        self.inner
            .predicted
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    async fn client(&self) -> Result<Object, StoreError> {
        self.inner.pool.get().await.map_err(pool_err)
    }

    /// Appends, optionally holding the transaction open at `gate` before committing.
    async fn append_gated(
        &self,
        request: AppendRequest,
        #[cfg(feature = "testing")] gate: Option<crate::testing::Gate>,
    ) -> Result<AppendOutcome, StoreError> {
        let plan = AppendPlan::new(request)?;
        let school = plan.school();
        #[cfg(feature = "testing")]
        let predict = gate.is_none();
        #[cfg(not(feature = "testing"))]
        let predict = true;
        if predict && let Some((outcome, head)) = self.append_predicted(&plan).await? {
            self.appended(school, head);
            return Ok(outcome);
        }

        let r = &plan.request;
        let school_uuid = *school.as_uuid();
        let stream = r.stream.as_str();
        let idem_key = r.idempotency_key.as_ref().map(IdempotencyKey::as_str);

        let client = self.client().await?;
        let (lock_st, idem_st, version_st, head_st, insert_st, head_up_st, idem_up_st) =
            tokio::try_join!(
                client.prepare_cached("SELECT pg_advisory_xact_lock($1)"),
                client.prepare_cached(
                    "SELECT fingerprint, stream_version, first_seq, last_seq \
                     FROM idempotency_keys WHERE school_id = $1 AND key = $2"
                ),
                // The last version by the index read backwards: one entry. `max()` was planned
                // as a scan of the whole stream while the statistics said streams are short
                // (every append read its stream whole: quadratic in the stream's length).
                client.prepare_cached(
                    "SELECT coalesce((SELECT stream_version FROM events \
                     WHERE school_id = $1 AND stream_id = $2 \
                     ORDER BY stream_version DESC LIMIT 1), 0)"
                ),
                client.prepare_cached(
                    "SELECT last_seq, last_hash FROM school_heads WHERE school_id = $1"
                ),
                client.prepare_cached(
                    "INSERT INTO events (school_id, stream_id, actor_id, actor_role, \
                     correlation_id, causation_id, recorded_at, idempotency_key, school_seq, \
                     stream_version, event_id, event_type, schema_version, data, occurred_at, \
                     prev_hash, hash) \
                     SELECT $1, $2, $3, $4, $5, $6, $7, $8, u.* FROM unnest($9::bigint[], \
                     $10::bigint[], $11::uuid[], $12::text[], $13::int[], $14::text[], \
                     $15::timestamptz[], $16::bytea[], $17::bytea[]) AS u"
                ),
                client.prepare_cached(
                    "INSERT INTO school_heads (school_id, last_seq, last_hash) VALUES ($1, $2, $3) \
                     ON CONFLICT (school_id) DO UPDATE \
                     SET last_seq = excluded.last_seq, last_hash = excluded.last_hash"
                ),
                client.prepare_cached(
                    "INSERT INTO idempotency_keys (school_id, key, fingerprint, stream_version, \
                     first_seq, last_seq) VALUES ($1, $2, $3, $4, $5, $6)"
                ),
            )
            .map_err(pg_err)?;

        let lock_key = school_lock_key(school);
        let outcome = in_scope(&client, Scope::School(school), End::Commit, async |tx| {
            // One round trip, together with `BEGIN` and the school's setting (see `in_scope`):
            // the lock first (statements run in order), then the reads under it. `join!`, not
            // `try_join!`: once one statement fails the later ones report "transaction
            // aborted", so errors are taken in statement order to keep the root cause.
            let (lock, idem, version, head) = tokio::join!(
                async { tx.execute(&lock_st, &[&lock_key]).await },
                async {
                    match idem_key {
                        Some(k) => tx.query_opt(&idem_st, &[&school_uuid, &k]).await,
                        None => Ok(None),
                    }
                },
                async { tx.query_one(&version_st, &[&school_uuid, &stream]).await },
                async { tx.query_opt(&head_st, &[&school_uuid]).await },
            );
            lock.map_err(pg_err)?;
            let (idem, version, head) = (
                idem.map_err(pg_err)?,
                version.map_err(pg_err)?,
                head.map_err(pg_err)?,
            );

            if let (Some(row), Some(key)) = (idem, &r.idempotency_key) {
                let stored = (row.get(0), row.get(1), row.get(2), row.get(3));
                if let Some(outcome) = crate::stored_replay(key, &plan.fingerprint, Some(stored))? {
                    return Ok((outcome, None));
                }
            }
            let current = to_u64(version.get(0));
            if !r.expected.admits(current) {
                return Err(StoreError::Conflict {
                    stream: r.stream.clone(),
                    expected: r.expected,
                    actual: current,
                });
            }
            // Under the school's lock: no append to the guarded streams can commit meanwhile.
            for guard in &r.guards {
                let row = tx
                    .query_one(&version_st, &[&school_uuid, &guard.stream.as_str()])
                    .await
                    .map_err(pg_err)?;
                guard.check(to_u64(row.get(0)))?;
            }
            // Keys inside the transaction, after the checks: a replay or a conflict creates
            // none, and `FOR SHARE` makes a concurrent erasure wait for this commit (or be seen
            // first).
            let keys = self.keys_for_sealing(tx, school, &plan.subjects).await?;
            let stored = plan.seal(&keys)?;
            let head = head
                .map(|row| -> Result<SchoolHead, StoreError> {
                    Ok(SchoolHead {
                        last_seq: to_u64(row.get(0)),
                        hash: Hash::from_slice(row.get(1))?,
                    })
                })
                .transpose()?;
            let rows = plan.rows(stored, head, current, OffsetDateTime::now_utc())?;
            let (outcome, recorded_at, last_hash) = match (rows.first(), rows.last()) {
                (Some(f), Some(l)) => (
                    AppendOutcome {
                        stream_version: l.stream_version,
                        first_seq: f.school_seq,
                        last_seq: l.school_seq,
                        replayed: false,
                    },
                    f.recorded_at,
                    l.hash,
                ),
                _ => return Err(StoreError::internal("an append planned no rows")),
            };

            let RowArrays {
                seqs,
                versions,
                ids,
                types,
                schemas,
                datas,
                occurred,
                prevs,
                hashes,
            } = RowArrays::of(&rows);
            let actor = r.metadata.actor_id.map(Uuid::from);
            let role = r.metadata.actor_role.as_str();
            let correlation = Uuid::from(r.metadata.correlation_id);
            let causation = r.metadata.causation_id.map(Uuid::from);
            let last_seq = to_i64(outcome.last_seq);
            let last_version = to_i64(outcome.stream_version);
            let first_seq = to_i64(outcome.first_seq);
            let fingerprint = plan.fingerprint.as_slice();

            // Second round trip: everything the append writes.
            let (inserted, head_written, idem_written) = tokio::join!(
                async {
                    tx.execute(
                        &insert_st,
                        &[
                            &school_uuid,
                            &stream,
                            &actor,
                            &role,
                            &correlation,
                            &causation,
                            &recorded_at,
                            &idem_key,
                            &seqs,
                            &versions,
                            &ids,
                            &types,
                            &schemas,
                            &datas,
                            &occurred,
                            &prevs,
                            &hashes,
                        ],
                    )
                    .await
                },
                async {
                    tx.execute(
                        &head_up_st,
                        &[&school_uuid, &last_seq, &last_hash.0.as_slice()],
                    )
                    .await
                },
                async {
                    match idem_key {
                        Some(k) => {
                            tx.execute(
                                &idem_up_st,
                                &[
                                    &school_uuid,
                                    &k,
                                    &fingerprint,
                                    &last_version,
                                    &first_seq,
                                    &last_seq,
                                ],
                            )
                            .await
                        }
                        None => Ok(0),
                    }
                },
            );
            let unique_to_conflict = conflict_on_unique(r, current);
            inserted.map_err(&unique_to_conflict)?;
            head_written.map_err(&unique_to_conflict)?;
            idem_written.map_err(&unique_to_conflict)?;

            #[cfg(feature = "testing")]
            if let Some(gate) = gate {
                let _ = gate.appended.send(());
                let _ = gate.release.await;
            }
            let head = SchoolHead {
                last_seq: outcome.last_seq,
                hash: last_hash,
            };
            Ok((outcome, Some(head)))
        })
        .await?;
        let (outcome, head) = outcome;
        if let Some(head) = head {
            self.appended(school, head);
        }
        Ok(outcome)
    }

    /// After an append committed with `head` as the school's new head: wakes this process's
    /// subscribers, asks the notifier to tell the others, and remembers the head for the next
    /// prediction (unless a later one is remembered already).
    fn appended(&self, school: SchoolId, head: SchoolHead) {
        self.inner.wake.send_modify(|v| *v = v.wrapping_add(1));
        self.inner.notify.notify_one();
        let mut heads = self
            .inner
            .heads
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if heads.len() >= REMEMBERED_HEADS && !heads.contains_key(&school) {
            heads.clear();
        }
        match heads.get_mut(&school) {
            Some(kept) if kept.head.last_seq >= head.last_seq => {}
            Some(kept) => kept.head = head,
            None => {
                heads.insert(
                    school,
                    Remembered {
                        head,
                        predicting: false,
                    },
                );
            }
        }
    }

    /// The remembered head of `school` to predict an append on, unless none is remembered or
    /// another append of the school is being predicted; marks it as being predicted.
    fn take_prediction(&self, school: SchoolId) -> Option<SchoolHead> {
        let mut heads = self
            .inner
            .heads
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let kept = heads.get_mut(&school).filter(|k| !k.predicting)?;
        kept.predicting = true;
        Some(kept.head)
    }

    /// Ends the prediction `take_prediction` began.
    fn end_prediction(&self, school: SchoolId) {
        if let Some(kept) = self
            .inner
            .heads
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get_mut(&school)
        {
            kept.predicting = false;
        }
    }

    /// The append in one statement and one round trip (`registro_append_predicted`, migration
    /// 0006; ADR 0036), when its state can be predicted: the school's head as this process last
    /// appended it, the stream at the version the request expects, no keys to create for sealed
    /// fields. `None` when it cannot be predicted or a prediction did not hold (nothing was
    /// written: the caller appends the long way); the outcome and the new head when written.
    async fn append_predicted(
        &self,
        plan: &AppendPlan,
    ) -> Result<Option<(AppendOutcome, SchoolHead)>, StoreError> {
        let r = &plan.request;
        let current = match r.expected {
            ExpectedVersion::NoStream => 0,
            ExpectedVersion::Exact(n) => n,
            ExpectedVersion::Any => return Ok(None),
        };
        if !plan.subjects.is_empty() {
            return Ok(None);
        }
        let school = plan.school();
        let Some(head) = self.take_prediction(school) else {
            return Ok(None);
        };
        let predicted = self.predict_on(plan, head, current).await;
        self.end_prediction(school);
        predicted
    }

    /// The predicted append of `plan` on `head`, with its stream at `current`.
    async fn predict_on(
        &self,
        plan: &AppendPlan,
        head: SchoolHead,
        current: u64,
    ) -> Result<Option<(AppendOutcome, SchoolHead)>, StoreError> {
        let (r, school) = (&plan.request, plan.school());
        let stored = plan.seal(&HashMap::new())?;
        let rows = plan.rows(stored, Some(head), current, OffsetDateTime::now_utc())?;
        let (Some(first), Some(last)) = (rows.first(), rows.last()) else {
            return Err(StoreError::internal("an append planned no rows"));
        };
        let outcome = AppendOutcome {
            stream_version: last.stream_version,
            first_seq: first.school_seq,
            last_seq: last.school_seq,
            replayed: false,
        };
        let new_head = SchoolHead {
            last_seq: last.school_seq,
            hash: last.hash,
        };
        let a = RowArrays::of(&rows);
        let guard_streams: Vec<&str> = r.guards.iter().map(|g| g.stream.as_str()).collect();
        let guard_versions: Vec<i64> = r.guards.iter().map(|g| to_i64(g.version)).collect();
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "SELECT registro_append_predicted($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, \
                 $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24)",
            )
            .await;
        let statement = match statement {
            Err(e) if e.code() == Some(&SqlState::UNDEFINED_FUNCTION) => return Ok(missing()),
            statement => statement.map_err(pg_err)?,
        };
        let written = client
            .query_one(
                &statement,
                &[
                    school.as_uuid(),
                    &school_lock_key(school),
                    &r.stream.as_str(),
                    &to_i64(current),
                    &guard_streams,
                    &guard_versions,
                    &to_i64(head.last_seq),
                    &head.hash.0.as_slice(),
                    &r.idempotency_key.as_ref().map(IdempotencyKey::as_str),
                    &plan.fingerprint.as_slice(),
                    &r.metadata.actor_id.map(Uuid::from),
                    &r.metadata.actor_role.as_str(),
                    &Uuid::from(r.metadata.correlation_id),
                    &r.metadata.causation_id.map(Uuid::from),
                    &first.recorded_at,
                    &a.seqs,
                    &a.versions,
                    &a.ids,
                    &a.types,
                    &a.schemas,
                    &a.datas,
                    &a.occurred,
                    &a.prevs,
                    &a.hashes,
                ],
            )
            .await;
        let written = match written {
            // A database without migration 0006 (a store opened without migrating): the long way.
            Err(e) if e.code() == Some(&SqlState::UNDEFINED_FUNCTION) => return Ok(missing()),
            written => written.map_err(conflict_on_unique(r, current))?,
        };
        let written: bool = written.get(0);
        if written {
            self.inner
                .predicted
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(written.then_some((outcome, new_head)))
    }

    /// The keys of `subjects`, created where missing, locked against erasure until the
    /// transaction on `tx` ends. Refuses subjects whose key was destroyed.
    async fn keys_for_sealing(
        &self,
        tx: &ClientWrapper,
        school: SchoolId,
        subjects: &BTreeSet<PersonId>,
    ) -> Result<HashMap<PersonId, SubjectKey>, StoreError> {
        if subjects.is_empty() {
            return Ok(HashMap::new());
        }
        let mut ids = Vec::with_capacity(subjects.len());
        let mut wrapped = Vec::with_capacity(subjects.len());
        for s in subjects {
            ids.push(*s.as_uuid());
            wrapped.push(self.inner.master.new_subject_key(school, *s)?.1);
        }
        let insert = tx
            .prepare_cached(
                "INSERT INTO subject_keys (school_id, subject_id, wrapped_key) \
                 SELECT $1, s, w FROM unnest($2::uuid[], $3::bytea[]) AS u(s, w) \
                 ON CONFLICT (school_id, subject_id) DO NOTHING",
            )
            .await
            .map_err(pg_err)?;
        tx.execute(&insert, &[school.as_uuid(), &ids, &wrapped])
            .await
            .map_err(pg_err)?;
        let states = self.key_states(tx, school, &ids, true).await?;
        let mut keys = HashMap::with_capacity(states.len());
        for (subject, state) in states {
            match state {
                KeyState::Present(k) => {
                    keys.insert(subject, k);
                }
                KeyState::Erased => return Err(StoreError::SubjectErased { school, subject }),
            }
        }
        Ok(keys)
    }

    async fn key_states(
        &self,
        tx: &ClientWrapper,
        school: SchoolId,
        subjects: &[Uuid],
        lock: bool,
    ) -> Result<HashMap<PersonId, KeyState>, StoreError> {
        let sql = if lock {
            "SELECT subject_id, wrapped_key FROM subject_keys \
             WHERE school_id = $1 AND subject_id = ANY($2) FOR SHARE"
        } else {
            "SELECT subject_id, wrapped_key FROM subject_keys \
             WHERE school_id = $1 AND subject_id = ANY($2)"
        };
        let stmt = tx.prepare_cached(sql).await.map_err(pg_err)?;
        let rows = tx
            .query(&stmt, &[school.as_uuid(), &subjects])
            .await
            .map_err(pg_err)?;
        rows.iter()
            .map(|row| {
                let subject = PersonId::from_uuid(row.get(0));
                let wrapped = row.get::<_, Option<&[u8]>>(1);
                Ok((
                    subject,
                    self.inner.master.key_state(school, subject, wrapped)?,
                ))
            })
            .collect()
    }

    /// Maps rows to events and opens their sealed fields, reading the keys in the same
    /// transaction on `tx`.
    async fn events(
        &self,
        tx: &ClientWrapper,
        rows: Vec<Row>,
        sealed: Sealed,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let mut events = rows
            .iter()
            .map(row_to_event)
            .collect::<Result<Vec<_>, _>>()?;
        if sealed == Sealed::Keep {
            return Ok(events);
        }
        for (school, subjects) in subjects_by_school(&events) {
            let ids: Vec<Uuid> = subjects.iter().map(|s| *s.as_uuid()).collect();
            let keys = self.key_states(tx, school, &ids, false).await?;
            open_school_events(&mut events, school, &keys)?;
        }
        Ok(events)
    }

    /// Events selected by `sql`, read in a transaction limited to `scope`.
    async fn select_events(
        &self,
        scope: Scope,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        sealed: Sealed,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(sql).await.map_err(pg_err)?;
        in_scope(&client, scope, End::ReadOnly, async |tx| {
            let rows = tx.query(&stmt, params).await.map_err(pg_err)?;
            self.events(tx, rows, sealed).await
        })
        .await
    }
}

/// The subscription read: committed events after `($1, $2)` below the fence, `$3` at most, in
/// `(tx, id)` order.
///
/// `events.tx`, qualified: a bare `tx` in `ORDER BY` names the output column
/// `(tx::text)::bigint` (a cast keeps its argument's name), which no index orders, so every page
/// sorted every event after the checkpoint (issue 8: a quadratic catch-up).
pub(crate) fn subscription_sql() -> String {
    format!(
        "SELECT {COLUMNS} FROM events \
         WHERE (tx, id) > ($1::text::xid8, $2) \
           AND tx < pg_snapshot_xmin(pg_current_snapshot()) \
         ORDER BY events.tx, events.id LIMIT $3"
    )
}

/// Whose rows a transaction may see and write. Row-level security (migration 0002,
/// `docs/decisions/0009-row-level-security.md`) admits only the rows of the school named by the
/// transaction's setting `registro.school`, or every row when `registro.all_schools` is on.
#[derive(Clone, Copy, Debug)]
enum Scope {
    /// One school: everything done for a school's request.
    School(SchoolId),
    /// Every school: only the subscription read and the migration runner.
    AllSchools,
}

/// Sets the scope for the current transaction only (`is_local`): connections are pooled, so a
/// session-wide setting would outlive the request. Both settings are always set, so a scope
/// never depends on what the session did before.
const SET_SCOPE: &str = "SELECT set_config('registro.school', $1, true), \
    set_config('registro.all_schools', $2, true)";

/// How a scoped transaction ends once its work has succeeded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    /// `COMMIT`, waiting for the server's answer: the work wrote.
    Commit,
    /// `COMMIT` sent without waiting: the work only read and its rows are already here. The
    /// connection runs the `COMMIT` before anything it is asked later, so the pool can hand it
    /// out at once, and a read costs no round trip for ending its transaction.
    ReadOnly,
    /// As [`End::ReadOnly`], in a `REPEATABLE READ, READ ONLY` transaction: every statement of
    /// the work sees the one snapshot its first statement took (under the default `READ
    /// COMMITTED` each statement takes its own).
    Snapshot,
}

/// No prediction: the database lacks `registro_append_predicted` (a store opened without
/// migrating to 0006), so appends take the long way.
fn missing<T>() -> Option<T> {
    tracing::warn!("registro_append_predicted is missing: migrate the database (registro migrate)");
    None
}

/// An append's write error: a unique violation (a concurrent writer, or a reused event id) is a
/// conflict on the request's stream, found at `current`.
fn conflict_on_unique(
    r: &AppendRequest,
    current: u64,
) -> impl Fn(tokio_postgres::Error) -> StoreError + '_ {
    move |e| {
        if e.code() == Some(&SqlState::UNIQUE_VIOLATION) {
            StoreError::Conflict {
                stream: r.stream.clone(),
                expected: r.expected,
                actual: current,
            }
        } else {
            pg_err(e)
        }
    }
}

/// The columns of an append's rows, as the arrays the `INSERT ... SELECT ... FROM unnest(...)`
/// of both append paths take.
struct RowArrays<'a> {
    seqs: Vec<i64>,
    versions: Vec<i64>,
    ids: Vec<Uuid>,
    types: Vec<&'a str>,
    schemas: Vec<i32>,
    datas: Vec<&'a str>,
    occurred: Vec<OffsetDateTime>,
    prevs: Vec<&'a [u8]>,
    hashes: Vec<&'a [u8]>,
}

impl<'a> RowArrays<'a> {
    fn of(rows: &'a [RecordedEvent]) -> Self {
        Self {
            seqs: rows.iter().map(|e| to_i64(e.school_seq)).collect(),
            versions: rows.iter().map(|e| to_i64(e.stream_version)).collect(),
            ids: rows.iter().map(|e| *e.event_id.as_uuid()).collect(),
            types: rows.iter().map(|e| e.event_type.as_str()).collect(),
            schemas: rows
                .iter()
                .map(|e| i32::try_from(e.schema_version).unwrap_or(i32::MAX))
                .collect(),
            datas: rows.iter().map(|e| e.stored_data.as_str()).collect(),
            occurred: rows.iter().map(|e| e.occurred_at).collect(),
            prevs: rows.iter().map(|e| e.prev_hash.0.as_slice()).collect(),
            hashes: rows.iter().map(|e| e.hash.0.as_slice()).collect(),
        }
    }
}

/// Runs `work` in a transaction limited to `scope`, the one way this adapter opens a
/// transaction.
///
/// `BEGIN` and the scope's settings are pipelined with `work`'s first statements: a
/// tokio-postgres request is sent when its future is first polled, and `join!(biased; ...)`
/// polls `BEGIN`, then the settings, then `work`, so the server receives them in that order,
/// in one round trip. `work` must run its statements on the client it is given.
///
/// When `work` fails, or this future is dropped half-way, the transaction is rolled back
/// before the connection serves anyone else (as `tokio_postgres::Transaction` does).
async fn in_scope<T>(
    client: &ClientWrapper,
    scope: Scope,
    end: End,
    work: impl AsyncFnOnce(&ClientWrapper) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let set_scope = client.prepare_cached(SET_SCOPE).await.map_err(pg_err)?;
    let (school, all_schools) = match scope {
        Scope::School(school) => (school.to_string(), "off"),
        Scope::AllSchools => (String::new(), "on"),
    };
    let open = OpenTransaction {
        client,
        done: false,
    };
    let (begun, scoped, result) = tokio::join!(
        biased;
        client.batch_execute(match end {
            End::Snapshot => "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY",
            End::Commit | End::ReadOnly => "BEGIN",
        }),
        async { client.execute(&set_scope, &[&school, &all_schools]).await },
        work(client),
    );
    // Errors in statement order: after the first one, the others only say "transaction
    // aborted".
    begun.map_err(pg_err)?;
    scoped.map_err(pg_err)?;
    let value = result?;
    open.end(end).await?;
    Ok(value)
}

/// A transaction begun on a pooled connection, rolled back if dropped before it ends.
struct OpenTransaction<'a> {
    client: &'a Client,
    done: bool,
}

impl OpenTransaction<'_> {
    async fn end(mut self, end: End) -> Result<(), StoreError> {
        self.done = true;
        match end {
            End::Commit => self.client.batch_execute("COMMIT").await.map_err(pg_err),
            End::ReadOnly | End::Snapshot => {
                send_only(self.client, "COMMIT");
                Ok(())
            }
        }
    }
}

impl Drop for OpenTransaction<'_> {
    fn drop(&mut self) {
        if !self.done {
            send_only(self.client, "ROLLBACK");
        }
    }
}

/// Queues `sql` on the connection without waiting for its answer, which is discarded. The
/// first poll of a request puts it on the connection's queue, ahead of every later request;
/// `tokio_postgres::Transaction` rolls back on drop the same way.
fn send_only(client: &Client, sql: &str) {
    let _ = client.batch_execute(sql).now_or_never();
}

#[async_trait]
impl EventStore for PgStore {
    fn backend(&self) -> Backend {
        Backend::Postgres
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
        let sql = format!(
            "SELECT {COLUMNS} FROM events WHERE school_id = $1 AND stream_id = $2 \
             AND stream_version >= $3 ORDER BY stream_version LIMIT $4"
        );
        self.select_events(
            Scope::School(school),
            &sql,
            &[
                school.as_uuid(),
                &stream.as_str(),
                &to_i64(from_version),
                &page(limit),
            ],
            Sealed::Open,
        )
        .await
    }

    async fn read_school(
        &self,
        school: SchoolId,
        from_seq: u64,
        limit: usize,
        sealed: Sealed,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM events WHERE school_id = $1 AND school_seq >= $2 \
             ORDER BY school_seq LIMIT $3"
        );
        self.select_events(
            Scope::School(school),
            &sql,
            &[school.as_uuid(), &to_i64(from_seq), &page(limit)],
            sealed,
        )
        .await
    }

    async fn read_all(
        &self,
        after: Position,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        // The fence: only transactions older than every running one are final. See
        // docs/decisions/0003-subscription-fence.md. The one school-crossing read: it declares
        // so to row-level security.
        let sql = subscription_sql();
        self.select_events(
            Scope::AllSchools,
            &sql,
            &[&after.tx.to_string(), &to_i64(after.id), &page(limit)],
            Sealed::Open,
        )
        .await
    }

    async fn replay_of(
        &self,
        school: SchoolId,
        key: &IdempotencyKey,
        fingerprint: &[u8; 32],
    ) -> Result<Option<AppendOutcome>, StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "SELECT fingerprint, stream_version, first_seq, last_seq \
                 FROM idempotency_keys WHERE school_id = $1 AND key = $2",
            )
            .await
            .map_err(pg_err)?;
        let row = in_scope(&client, Scope::School(school), End::ReadOnly, async |tx| {
            tx.query_opt(&stmt, &[school.as_uuid(), &key.as_str()])
                .await
                .map_err(pg_err)
        })
        .await?;
        let stored = row.map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)));
        crate::stored_replay(key, fingerprint, stored)
    }

    async fn school_head(&self, school: SchoolId) -> Result<Option<SchoolHead>, StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached("SELECT last_seq, last_hash FROM school_heads WHERE school_id = $1")
            .await
            .map_err(pg_err)?;
        let row = in_scope(&client, Scope::School(school), End::ReadOnly, async |tx| {
            tx.query_opt(&stmt, &[school.as_uuid()])
                .await
                .map_err(pg_err)
        })
        .await?;
        row.map(|row| {
            Ok(SchoolHead {
                last_seq: to_u64(row.get(0)),
                hash: Hash::from_slice(row.get(1))?,
            })
        })
        .transpose()
    }

    async fn destroy_subject_key(
        &self,
        school: SchoolId,
        subject: PersonId,
    ) -> Result<bool, StoreError> {
        let client = self.client().await?;
        let (destroy, tombstone) = tokio::try_join!(
            client.prepare_cached(
                "UPDATE subject_keys SET wrapped_key = NULL, erased_at = now() \
                 WHERE school_id = $1 AND subject_id = $2 AND wrapped_key IS NOT NULL"
            ),
            // A subject with no key yet gets an erased one, so nothing is sealed for them later.
            client.prepare_cached(
                "INSERT INTO subject_keys (school_id, subject_id, wrapped_key, erased_at) \
                 VALUES ($1, $2, NULL, now()) ON CONFLICT DO NOTHING"
            ),
        )
        .map_err(pg_err)?;
        let ids: [&(dyn ToSql + Sync); 2] = [school.as_uuid(), subject.as_uuid()];
        in_scope(&client, Scope::School(school), End::Commit, async |tx| {
            let (destroyed, tombstoned) =
                tokio::join!(async { tx.execute(&destroy, &ids).await }, async {
                    tx.execute(&tombstone, &ids).await
                },);
            let destroyed = destroyed.map_err(pg_err)?;
            tombstoned.map_err(pg_err)?;
            Ok(destroyed == 1)
        })
        .await
    }

    async fn subject_keys(
        &self,
        school: SchoolId,
    ) -> Result<Vec<(PersonId, KeyState)>, StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "SELECT subject_id, wrapped_key FROM subject_keys WHERE school_id = $1 \
                 ORDER BY subject_id",
            )
            .await
            .map_err(pg_err)?;
        let rows = in_scope(&client, Scope::School(school), End::ReadOnly, async |tx| {
            tx.query(&stmt, &[school.as_uuid()]).await.map_err(pg_err)
        })
        .await?;
        rows.iter()
            .map(|row| {
                let subject = PersonId::from_uuid(row.get(0));
                let wrapped = row.get::<_, Option<&[u8]>>(1);
                Ok((
                    subject,
                    self.inner.master.key_state(school, subject, wrapped)?,
                ))
            })
            .collect()
    }

    async fn import_school(
        &self,
        school: SchoolId,
        keys: Vec<(PersonId, KeyState)>,
        expected: (u64, Option<Hash>),
        mut items: tokio::sync::mpsc::Receiver<ImportItem>,
    ) -> Result<u64, StoreError> {
        let client = self.client().await?;
        let school_uuid = *school.as_uuid();
        let lock_key = school_lock_key(school);
        let imported = in_scope(&client, Scope::School(school), End::Commit, async |tx| {
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&lock_key])
                .await
                .map_err(pg_err)?;
            let exists = tx
                .query_opt(
                    "SELECT 1 FROM events WHERE school_id = $1 LIMIT 1",
                    &[&school_uuid],
                )
                .await
                .map_err(pg_err)?;
            if exists.is_some() {
                return Err(StoreError::ImportRefused(format!(
                    "school {school} has events here already"
                )));
            }
            let key_st = tx
                .prepare_cached(
                    "INSERT INTO subject_keys (school_id, subject_id, wrapped_key, erased_at) \
                     VALUES ($1, $2, $3, CASE WHEN $3::bytea IS NULL THEN now() END)",
                )
                .await
                .map_err(pg_err)?;
            for (subject, state) in &keys {
                let wrapped = match state {
                    KeyState::Present(k) => {
                        Some(self.inner.master.wrap_subject_key(school, *subject, k)?)
                    }
                    KeyState::Erased => None,
                };
                tx.execute(&key_st, &[&school_uuid, subject.as_uuid(), &wrapped])
                    .await
                    .map_err(|e| match e.code() {
                        Some(&SqlState::UNIQUE_VIOLATION) => StoreError::ImportRefused(format!(
                            "school {school} has subject keys here already"
                        )),
                        _ => pg_err(e),
                    })?;
            }
            let insert_st = tx
                .prepare_cached(
                    "INSERT INTO events (school_id, school_seq, stream_id, stream_version, \
                     event_id, event_type, schema_version, data, actor_id, actor_role, \
                     correlation_id, causation_id, occurred_at, recorded_at, idempotency_key, \
                     prev_hash, hash) \
                     SELECT $1, u.* FROM unnest($2::bigint[], $3::text[], $4::bigint[], \
                     $5::uuid[], $6::text[], $7::int[], $8::text[], $9::uuid[], $10::text[], \
                     $11::uuid[], $12::uuid[], $13::timestamptz[], $14::timestamptz[], \
                     $15::text[], $16::bytea[], $17::bytea[]) AS u",
                )
                .await
                .map_err(pg_err)?;
            let attachment_st = tx
                .prepare_cached(
                    "INSERT INTO attachments (school_id, hash, media_type, size, content, \
                     stored_at) VALUES ($1, $2, $3, $4, $5, $6) \
                     ON CONFLICT (school_id, hash) DO NOTHING",
                )
                .await
                .map_err(pg_err)?;
            if expected.0 == 0 {
                return Err(StoreError::ImportRefused("the export holds no events".into()));
            }
            let mut chain = ChainCheck::new(school);
            let mut erased = Vec::new();
            while let Some(item) = items.recv().await {
                match item {
                    ImportItem::Failed(reason) => return Err(StoreError::ImportRefused(reason)),
                    ImportItem::Attachment {
                        media_type,
                        stored_at,
                        content,
                    } => {
                        check_media_type(&media_type)?;
                        let hash = content_hash(&content);
                        let size = i64::try_from(content.len()).map_err(StoreError::internal)?;
                        tx.execute(
                            &attachment_st,
                            &[
                                &school_uuid,
                                &hash.as_bytes().as_slice(),
                                &media_type,
                                &size,
                                &content,
                                &truncate_to_micros(stored_at),
                            ],
                        )
                        .await
                        .map_err(pg_err)?;
                    }
                    ImportItem::Events(batch) => {
                        for e in &batch {
                            chain.check(e)?;
                            erased.extend(crate::verify::erased_subject(e));
                        }
                        let col = |f: fn(&RecordedEvent) -> i64| -> Vec<i64> {
                            batch.iter().map(f).collect()
                        };
                        let seqs = col(|e| to_i64(e.school_seq));
                        let versions = col(|e| to_i64(e.stream_version));
                        let streams: Vec<&str> =
                            batch.iter().map(|e| e.stream_id.as_str()).collect();
                        let ids: Vec<Uuid> = batch.iter().map(|e| *e.event_id.as_uuid()).collect();
                        let types: Vec<&str> =
                            batch.iter().map(|e| e.event_type.as_str()).collect();
                        let schemas: Vec<i32> = batch
                            .iter()
                            .map(|e| i32::try_from(e.schema_version).unwrap_or(i32::MAX))
                            .collect();
                        let datas: Vec<&str> =
                            batch.iter().map(|e| e.stored_data.as_str()).collect();
                        let actors: Vec<Option<Uuid>> =
                            batch.iter().map(|e| e.actor_id.map(Uuid::from)).collect();
                        let roles: Vec<&str> =
                            batch.iter().map(|e| e.actor_role.as_str()).collect();
                        let correlations: Vec<Uuid> =
                            batch.iter().map(|e| Uuid::from(e.correlation_id)).collect();
                        let causations: Vec<Option<Uuid>> = batch
                            .iter()
                            .map(|e| e.causation_id.map(Uuid::from))
                            .collect();
                        let occurred: Vec<OffsetDateTime> =
                            batch.iter().map(|e| e.occurred_at).collect();
                        let recorded: Vec<OffsetDateTime> =
                            batch.iter().map(|e| e.recorded_at).collect();
                        let keys: Vec<Option<&str>> = batch
                            .iter()
                            .map(|e| e.idempotency_key.as_ref().map(IdempotencyKey::as_str))
                            .collect();
                        let prevs: Vec<&[u8]> =
                            batch.iter().map(|e| e.prev_hash.0.as_slice()).collect();
                        let hashes: Vec<&[u8]> =
                            batch.iter().map(|e| e.hash.0.as_slice()).collect();
                        tx.execute(
                            &insert_st,
                            &[
                                &school_uuid,
                                &seqs,
                                &streams,
                                &versions,
                                &ids,
                                &types,
                                &schemas,
                                &datas,
                                &actors,
                                &roles,
                                &correlations,
                                &causations,
                                &occurred,
                                &recorded,
                                &keys,
                                &prevs,
                                &hashes,
                            ],
                        )
                        .await
                        .map_err(|e| match e.code() {
                            Some(&SqlState::UNIQUE_VIOLATION) => StoreError::ImportRefused(
                                "an event id appears twice in the log".into(),
                            ),
                            _ => pg_err(e),
                        })?;
                    }
                }
            }
            let (events, head) = chain.finish(expected)?;
            // A key the log records destroyed stays destroyed, whatever the bundle held.
            for subject in &erased {
                tx.execute(
                    "INSERT INTO subject_keys (school_id, subject_id, wrapped_key, erased_at) \
                     VALUES ($1, $2, NULL, now()) ON CONFLICT (school_id, subject_id) \
                     DO UPDATE SET wrapped_key = NULL, erased_at = coalesce(subject_keys.erased_at, now())",
                    &[&school_uuid, subject.as_uuid()],
                )
                .await
                .map_err(pg_err)?;
            }
            if let Some(head) = head {
                tx.execute(
                    "INSERT INTO school_heads (school_id, last_seq, last_hash) VALUES ($1, $2, $3)",
                    &[&school_uuid, &to_i64(events), &head.0.as_slice()],
                )
                .await
                .map_err(pg_err)?;
                tx.execute("SELECT pg_notify($1, '')", &[&NOTIFY_CHANNEL])
                    .await
                    .map_err(pg_err)?;
            }
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
        let hash_bytes = hash.as_bytes().as_slice();
        let size = i64::try_from(content.len()).map_err(StoreError::internal)?;
        let stored_at = truncate_to_micros(OffsetDateTime::now_utc());
        let client = self.client().await?;
        let (insert, select) = tokio::try_join!(
            // The same bytes stored again, or concurrently, keep the first record.
            client.prepare_cached(
                "INSERT INTO attachments (school_id, hash, media_type, size, content, stored_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (school_id, hash) DO NOTHING"
            ),
            client.prepare_cached(ATTACHMENT_META),
        )
        .map_err(pg_err)?;
        let row = in_scope(&client, Scope::School(school), End::Commit, async |tx| {
            // One round trip, the insert sent first (`biased`). The read runs after it, with a
            // snapshot of its own (read committed): it sees the row whether this insert or a
            // concurrent one wrote it (the insert waits for a concurrent one to commit before
            // doing nothing).
            let (inserted, row) = tokio::join!(
                biased;
                async {
                    tx.execute(
                        &insert,
                        &[
                            school.as_uuid(),
                            &hash_bytes,
                            &media_type,
                            &size,
                            &content,
                            &stored_at,
                        ],
                    )
                    .await
                },
                async {
                    tx.query_opt(&select, &[school.as_uuid(), &hash_bytes])
                        .await
                },
            );
            inserted.map_err(pg_err)?;
            row.map_err(pg_err)
        })
        .await?;
        row.map(|row| attachment_meta(hash, &row))
            .ok_or_else(|| StoreError::internal("an attachment just stored cannot be read back"))
    }

    async fn attachment_meta(
        &self,
        school: SchoolId,
        hash: &ContentHash,
    ) -> Result<Option<AttachmentMeta>, StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(ATTACHMENT_META)
            .await
            .map_err(pg_err)?;
        let row = in_scope(&client, Scope::School(school), End::ReadOnly, async |tx| {
            tx.query_opt(&stmt, &[school.as_uuid(), &hash.as_bytes().as_slice()])
                .await
                .map_err(pg_err)
        })
        .await?;
        Ok(row.map(|row| attachment_meta(*hash, &row)))
    }

    async fn attachment(
        &self,
        school: SchoolId,
        hash: &ContentHash,
    ) -> Result<Option<(AttachmentMeta, Vec<u8>)>, StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "SELECT media_type, size, stored_at, content FROM attachments \
                 WHERE school_id = $1 AND hash = $2",
            )
            .await
            .map_err(pg_err)?;
        let row = in_scope(&client, Scope::School(school), End::ReadOnly, async |tx| {
            tx.query_opt(&stmt, &[school.as_uuid(), &hash.as_bytes().as_slice()])
                .await
                .map_err(pg_err)
        })
        .await?;
        Ok(row.map(|row| (attachment_meta(*hash, &row), row.get(3))))
    }

    fn wake_signal(&self) -> watch::Receiver<u64> {
        self.inner.wake.subscribe()
    }

    async fn migration_status(&self) -> Result<MigrationStatus, StoreError> {
        let client = self.client().await?;
        let applied = applied_migrations(&client).await?;
        migrate::check(migrate::POSTGRES, &applied)
    }

    async fn migrate(&self) -> Result<Vec<u32>, StoreError> {
        let client = self.client().await?;
        client
            .execute(
                "SELECT pg_advisory_lock($1, $2)",
                &[&MIGRATION_LOCK.0, &MIGRATION_LOCK.1],
            )
            .await
            .map_err(pg_err)?;
        let result = migrate_locked(&client).await;
        let unlock = client
            .execute(
                "SELECT pg_advisory_unlock($1, $2)",
                &[&MIGRATION_LOCK.0, &MIGRATION_LOCK.1],
            )
            .await;
        let applied = result?;
        unlock.map_err(pg_err)?;
        Ok(applied)
    }

    async fn row_security(&self) -> Result<Option<bool>, StoreError> {
        self.held_by_row_security().await.map(Some)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let client = self.client().await?;
        client.simple_query("SELECT 1").await.map_err(pg_err)?;
        Ok(())
    }

    async fn prepare_projection(&self, schema: &ProjectionSchema) -> Result<(), StoreError> {
        let (name, steps) = (schema.name, schema.postgres);
        check_identifier("projection", name)?;
        let client = self.client().await?;
        // Nothing to do, nothing to create: a role without the right to create tables can run
        // a prepared projection.
        let (applied, checkpoint) = tokio::try_join!(applied_steps(&client, name), async {
            client.query_opt(CHECKPOINT, &[&name]).await.map_err(pg_err)
        })?;
        if pending_steps(name, steps, &applied)?.is_empty() && checkpoint.is_some() {
            return Ok(());
        }
        let key = projection_lock_key(name);
        loop {
            // One step per transaction, each checked again under the lock: concurrent
            // preparers wait for each other and apply each step once.
            let prepared = in_scope(&client, Scope::AllSchools, End::Commit, async |tx| {
                tx.execute(
                    "SELECT pg_advisory_xact_lock($1, $2)",
                    &[&PROJECTION_PREPARE_LOCK, &key],
                )
                .await
                .map_err(pg_err)?;
                let pending = pending_steps(name, steps, &applied_steps(tx, name).await?)?;
                let Some(&i) = pending.first() else {
                    tx.execute(CHECKPOINT_AT_START, &[&name])
                        .await
                        .map_err(pg_err)?;
                    return Ok(true);
                };
                let (step, sql) = (step_number(i), steps[i]);
                tx.batch_execute(sql).await.map_err(|e| {
                    StoreError::Migration(format!(
                        "step {step} of projection {name} failed: {}",
                        describe(&e)
                    ))
                })?;
                tx.execute(
                    "INSERT INTO projection_steps (name, step, checksum) VALUES ($1, $2, $3)",
                    &[&name, &step, &step_checksum(sql)],
                )
                .await
                .map_err(pg_err)?;
                Ok(false)
            })
            .await?;
            if prepared {
                return Ok(());
            }
        }
    }

    async fn projection_checkpoint(&self, name: &str) -> Result<Position, StoreError> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(CHECKPOINT).await.map_err(pg_err)?;
        let row = client.query_opt(&stmt, &[&name]).await.map_err(pg_err)?;
        Ok(row.map_or(Position::START, |r| stored_position(r.get(0), r.get(1))))
    }

    async fn commit_projection(
        &self,
        name: &str,
        from: Position,
        to: Position,
        ops: &[RowOp],
    ) -> Result<(), StoreError> {
        check_identifier("projection", name)?;
        // Everything is checked before anything is written: names, keys, and each value's type
        // against its column's.
        let rendered = projection::render_batched(ops, None)?;
        let client = self.client().await?;
        let (at_start, moved_st, current_st, clear_st) = tokio::try_join!(
            client.prepare_cached(CHECKPOINT_AT_START),
            client.prepare_cached(
                "UPDATE projection_checkpoints SET tx = $2, id = $3, updated_at = now() \
                 WHERE name = $1 AND tx = $4 AND id = $5"
            ),
            client.prepare_cached(CHECKPOINT),
            client.prepare_cached(CLEAR_STOP),
        )
        .map_err(pg_err)?;
        let statements = prepare_ops(&client, name, &rendered).await?;
        let (from_tx, from_id, to_tx, to_id) = (
            to_i64(from.tx),
            to_i64(from.id),
            to_i64(to.tx),
            to_i64(to.id),
        );
        // The projector applies the whole log: it works across schools.
        in_scope(&client, Scope::AllSchools, End::Commit, async |tx| {
            // With `BEGIN` and the scope, in one round trip: the compare-and-set of the
            // checkpoint, which locks its row until the commit, and the clearing of a stop the
            // new checkpoint reaches (undone with the rest if the checkpoint moved).
            let (created, moved, cleared) = tokio::join!(
                biased;
                async { tx.execute(&at_start, &[&name]).await },
                async {
                    tx.execute(&moved_st, &[&name, &to_tx, &to_id, &from_tx, &from_id])
                        .await
                },
                async { tx.execute(&clear_st, &[&name, &to_tx, &to_id]).await },
            );
            created.map_err(pg_err)?;
            let moved = moved.map_err(pg_err)?;
            cleared.map_err(pg_err)?;
            if moved != 1 {
                // Rolled back when this returns: nothing is written.
                let row = tx.query_opt(&current_st, &[&name]).await.map_err(pg_err)?;
                let actual = row.map_or(Position::START, |r| stored_position(r.get(0), r.get(1)));
                return Err(projection::checkpoint_moved(name, from, actual));
            }
            // Then every row operation, in order, in one round trip.
            execute_ops(tx, name, &rendered, &statements).await
        })
        .await
    }

    async fn count_events_after(&self, after: Position) -> Result<u64, StoreError> {
        let client = self.client().await?;
        // The subscription read's condition and fence (`read_all`), across schools.
        let stmt = client
            .prepare_cached(
                "SELECT count(*) FROM events \
                 WHERE (tx, id) > ($1::text::xid8, $2) \
                   AND tx < pg_snapshot_xmin(pg_current_snapshot())",
            )
            .await
            .map_err(pg_err)?;
        let row = in_scope(&client, Scope::AllSchools, End::ReadOnly, async |tx| {
            tx.query_one(&stmt, &[&after.tx.to_string(), &to_i64(after.id)])
                .await
                .map_err(pg_err)
        })
        .await?;
        Ok(to_u64(row.get(0)))
    }

    async fn begin_rebuild(&self, schema: &ProjectionSchema) -> Result<(), StoreError> {
        let target = rebuild_target(schema.name)?;
        let (name, steps) = (schema.name, schema.postgres);
        let client = self.client().await?;
        // One transaction: a failed step leaves no schema behind. The steps name their tables
        // unqualified: the build schema comes first on the search path, for this transaction
        // only, before the connection's own (where the database's functions are).
        in_scope(&client, Scope::AllSchools, End::Commit, async |tx| {
            tx.batch_execute(&format!(
                "DROP SCHEMA IF EXISTS {target} CASCADE; CREATE SCHEMA {target}"
            ))
            .await
            .map_err(|e| {
                if e.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE) {
                    StoreError::Migration(format!(
                        "projection {name} cannot be rebuilt by this role: {}; rebuild as the \
                         role that owns the database",
                        describe(&e)
                    ))
                } else {
                    pg_err(e)
                }
            })?;
            tx.execute(SEARCH_BUILD_FIRST, &[&target])
                .await
                .map_err(pg_err)?;
            for (i, sql) in steps.iter().enumerate() {
                tx.batch_execute(sql).await.map_err(|e| {
                    StoreError::Migration(format!(
                        "step {} of projection {name} failed in its rebuild: {}",
                        step_number(i),
                        describe(&e)
                    ))
                })?;
            }
            let created: BTreeSet<String> = tx
                .query(
                    "SELECT tablename::text FROM pg_tables WHERE schemaname = $1",
                    &[&target],
                )
                .await
                .map_err(pg_err)?
                .iter()
                .map(|r| r.get(0))
                .collect();
            check_rebuilt_tables(schema, &created)
        })
        .await
    }

    async fn commit_rebuild(&self, name: &str, ops: &[RowOp]) -> Result<(), StoreError> {
        let target = rebuild_target(name)?;
        // The build schema's tables, named in full: never the live ones.
        let rendered = projection::render_batched(ops, Some(&target))?;
        let client = self.client().await?;
        if !schema_exists(&client, &target).await? {
            return Err(no_rebuild(name));
        }
        let statements = prepare_ops(&client, name, &rendered).await?;
        in_scope(&client, Scope::AllSchools, End::Commit, async |tx| {
            let (searched, executed) = tokio::join!(
                biased;
                async { tx.execute(SEARCH_BUILD_FIRST, &[&target]).await },
                execute_ops(tx, name, &rendered, &statements),
            );
            searched.map_err(pg_err)?;
            executed
        })
        .await
    }

    async fn swap_rebuild(
        &self,
        schema: &ProjectionSchema,
        position: Position,
    ) -> Result<(), StoreError> {
        let target = rebuild_target(schema.name)?;
        for table in schema.tables {
            check_identifier("table", table)?;
        }
        let name = schema.name;
        let client = self.client().await?;
        let (pos_tx, pos_id) = (to_i64(position.tx), to_i64(position.id));
        in_scope(&client, Scope::AllSchools, End::Commit, async |tx| {
            // The checkpoint first: it locks its row until the commit, so a projector committing
            // meanwhile waits, then finds it moved and writes nothing; one that committed before
            // has its rows replaced below.
            tx.execute(
                "INSERT INTO projection_checkpoints (name, tx, id) VALUES ($1, $2, $3) \
                 ON CONFLICT (name) DO UPDATE \
                 SET tx = excluded.tx, id = excluded.id, updated_at = now()",
                &[&name, &pos_tx, &pos_id],
            )
            .await
            .map_err(pg_err)?;
            // The rebuilt view applied the event a recorded stop names, if it reaches it.
            tx.execute(CLEAR_STOP, &[&name, &pos_tx, &pos_id])
                .await
                .map_err(pg_err)?;
            if !schema_exists(tx, &target).await? {
                return Err(no_rebuild(name));
            }
            // Rows, not tables: the live tables keep their grants, policies and indexes, and
            // readers see the old rows until the commit (MVCC).
            let mut sql: String = schema
                .tables
                .iter()
                .rev()
                .map(|table| format!("DELETE FROM {table};\n"))
                .collect();
            for table in schema.tables {
                // The live table as every statement of this adapter finds it (the search path).
                let columns: Vec<String> = tx
                    .query(
                        "SELECT a.attname::text FROM pg_attribute a \
                         JOIN pg_class c ON c.oid = a.attrelid \
                         WHERE c.relname = $1 AND c.relkind IN ('r', 'p') \
                           AND pg_table_is_visible(c.oid) \
                           AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = '' \
                         ORDER BY a.attnum",
                        &[table],
                    )
                    .await
                    .map_err(pg_err)?
                    .iter()
                    .map(|r| r.get(0))
                    .collect();
                if columns.is_empty() {
                    return Err(StoreError::internal(format!(
                        "projection {name} has no live table {table} to swap its rebuild into: \
                         prepare the projection first"
                    )));
                }
                let columns = columns
                    .iter()
                    .map(|c| format!("\"{}\"", c.replace('"', "\"\"")))
                    .collect::<Vec<_>>()
                    .join(", ");
                sql.push_str(&format!(
                    "INSERT INTO {table} ({columns}) OVERRIDING SYSTEM VALUE \
                     SELECT {columns} FROM {target}.{table};\n"
                ));
            }
            // Statistics of the new rows, for the planner from the first read on (autovacuum
            // would take them only later, and until then a read may take a plan for empty
            // tables).
            for table in schema.tables {
                sql.push_str(&format!("ANALYZE {table};\n"));
            }
            sql.push_str(&format!("DROP SCHEMA {target} CASCADE;"));
            tx.batch_execute(&sql).await.map_err(|e| {
                let why = describe(&e);
                match pg_err(e) {
                    StoreError::Internal(_) => StoreError::internal(format!(
                        "projection {name}: swapping its rebuild in failed: {why}"
                    )),
                    transient => transient,
                }
            })
        })
        .await
    }

    async fn discard_rebuild(&self, name: &str) -> Result<(), StoreError> {
        let target = rebuild_target(name)?;
        let client = self.client().await?;
        client
            .batch_execute(&format!("DROP SCHEMA IF EXISTS {target} CASCADE"))
            .await
            .map_err(pg_err)
    }

    async fn query_projections(
        &self,
        school: SchoolId,
        queries: &[ProjectionQuery],
    ) -> Result<Vec<Rows>, StoreError> {
        if queries.is_empty() {
            return Ok(Vec::new());
        }
        let client = self.client().await?;
        let statements = futures_util::future::try_join_all(queries.iter().map(|q| async {
            let stmt = client.prepare_cached(&q.sql).await.map_err(|e| {
                let why = describe(&e);
                match pg_err(e) {
                    StoreError::Internal(_) => StoreError::internal(format!(
                        "projection query {:?} is invalid: {why}",
                        q.sql
                    )),
                    transient => transient,
                }
            })?;
            if stmt.columns().len() != q.columns.len() {
                return Err(StoreError::internal(format!(
                    "projection query {:?} has {} columns, {} were expected",
                    q.sql,
                    stmt.columns().len(),
                    q.columns.len()
                )));
            }
            let cells: Vec<&Cell> = q.params.iter().collect();
            check_params(&stmt, &cells)
                .map_err(|e| StoreError::internal(format!("projection query {:?}: {e}", q.sql)))?;
            Ok(stmt)
        }))
        .await?;
        let bound: Vec<Vec<PgCell<'_>>> = queries
            .iter()
            .map(|q| q.params.iter().map(PgCell).collect())
            .collect();
        let refs: Vec<Vec<&(dyn ToSql + Sync)>> = bound
            .iter()
            .map(|cells| cells.iter().map(|c| c as &(dyn ToSql + Sync)).collect())
            .collect();
        // One snapshot, and a read whatever the queries say (`REPEATABLE READ, READ ONLY`);
        // all of them sent at once.
        let answers = in_scope(&client, Scope::School(school), End::Snapshot, async |tx| {
            futures_util::future::join_all(
                statements
                    .iter()
                    .zip(&refs)
                    .map(|(stmt, params)| tx.query(stmt, params)),
            )
            .await
            .into_iter()
            // Errors in statement order: after the first one, the others only say
            // "transaction aborted".
            .collect::<Result<Vec<_>, _>>()
            .map_err(pg_err)
        })
        .await?;
        answers
            .iter()
            .zip(queries)
            .map(|(rows, q)| {
                rows.iter()
                    .map(|row| {
                        q.columns
                            .iter()
                            .enumerate()
                            .map(|(i, ty)| read_cell(row, i, *ty))
                            .collect()
                    })
                    .collect()
            })
            .collect()
    }

    async fn try_lock_projection(&self, name: &str) -> Result<Option<ProjectionLease>, StoreError> {
        check_identifier("projection", name)?;
        // A connection of its own, outside the pool: the lock lives as long as its session.
        let (client, connection) = self.inner.config.connect(NoTls).await.map_err(pg_err)?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "a projection lease's connection failed");
            }
        });
        let held: bool = client
            .query_one(
                "SELECT pg_try_advisory_lock($1, $2)",
                &[&PROJECTION_LEASE_LOCK, &projection_lock_key(name)],
            )
            .await
            .map_err(pg_err)?
            .get(0);
        // Not held: dropping the client closes the connection.
        Ok(held.then(|| ProjectionLease::new(name, PgLease { client })))
    }

    async fn projection_lag(&self, name: &str) -> Result<ProjectionLag, StoreError> {
        let client = self.client().await?;
        // Every committed event after the checkpoint, the fence aside: the count reads the
        // subscription's index only; the next event's time costs one row.
        let stmt = client
            .prepare_cached(
                "SELECT c.name IS NOT NULL, coalesce(c.tx, 0), coalesce(c.id, 0), \
                 c.stopped_tx, c.stopped_id, c.stopped_reason, c.stopped_since, \
                 (SELECT count(*) FROM events e \
                  WHERE (e.tx, e.id) > (coalesce(c.tx, 0)::text::xid8, coalesce(c.id, 0))), \
                 (SELECT e.recorded_at FROM events e \
                  WHERE (e.tx, e.id) > (coalesce(c.tx, 0)::text::xid8, coalesce(c.id, 0)) \
                  ORDER BY e.tx, e.id LIMIT 1) \
                 FROM (SELECT $1::text AS name) AS n \
                 LEFT JOIN projection_checkpoints c ON c.name = n.name",
            )
            .await
            .map_err(pg_err)?;
        // The log of every school: it declares so to row-level security.
        let row = in_scope(&client, Scope::AllSchools, End::ReadOnly, async |tx| {
            tx.query_one(&stmt, &[&name]).await.map_err(pg_err)
        })
        .await?;
        let stopped = match (
            row.get::<_, Option<i64>>(3),
            row.get::<_, Option<i64>>(4),
            row.get::<_, Option<OffsetDateTime>>(6),
        ) {
            (Some(tx), Some(id), Some(since)) => Some(ProjectionStop {
                at: stored_position(tx, id),
                reason: row.get::<_, Option<String>>(5).unwrap_or_default(),
                since,
            }),
            _ => None,
        };
        Ok(ProjectionLag {
            prepared: row.get(0),
            checkpoint: stored_position(row.get(1), row.get(2)),
            events: to_u64(row.get(7)),
            oldest: row.get(8),
            stopped,
        })
    }

    async fn record_projection_stop(
        &self,
        name: &str,
        at: Position,
        reason: &str,
    ) -> Result<(), StoreError> {
        check_identifier("projection", name)?;
        let client = self.client().await?;
        // The same event again keeps its first time (the SET reads the row as it was).
        let stmt = client
            .prepare_cached(
                "UPDATE projection_checkpoints SET stopped_since = CASE \
                 WHEN stopped_tx = $2 AND stopped_id = $3 THEN stopped_since ELSE now() END, \
                 stopped_tx = $2, stopped_id = $3, stopped_reason = $4 \
                 WHERE name = $1 AND (tx, id) < ($2, $3)",
            )
            .await
            .map_err(pg_err)?;
        client
            .execute(&stmt, &[&name, &to_i64(at.tx), &to_i64(at.id), &reason])
            .await
            .map_err(pg_err)?;
        Ok(())
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
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM events e \
                 JOIN projection_checkpoints c ON c.name = $1 \
                 WHERE e.school_id = $2 AND e.school_seq = $3 \
                 AND (e.tx, e.id) <= (c.tx::text::xid8, c.id))",
            )
            .await
            .map_err(pg_err)?;
        let seq = to_i64(school_seq);
        in_scope(&client, Scope::School(school), End::ReadOnly, async |tx| {
            let row = tx
                .query_one(&stmt, &[&name, school.as_uuid(), &seq])
                .await
                .map_err(pg_err)?;
            Ok(row.get(0))
        })
        .await
    }
}

/// A projection's lease: the connection whose session holds the advisory lock. Dropping it
/// closes the connection (the client's drop ends the session), which frees the lock.
#[derive(Debug)]
struct PgLease {
    client: Client,
}

impl Hold for PgLease {
    fn is_held(&self) -> bool {
        !self.client.is_closed()
    }
}

/// A projection's half of its advisory lock keys: the first four bytes of the SHA-256 of its
/// name, the same in every build and version. Two names that collide share their lease, which
/// only makes one wait for the other.
fn projection_lock_key(name: &str) -> i32 {
    let digest = Sha256::digest(name.as_bytes());
    i32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}

/// Puts the build schema `$1` first on the search path, for the current transaction only.
const SEARCH_BUILD_FIRST: &str =
    "SELECT set_config('search_path', $1 || ', ' || current_setting('search_path'), true)";

/// Whether the schema exists.
async fn schema_exists(client: &Client, schema: &str) -> Result<bool, StoreError> {
    Ok(client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)",
            &[&schema],
        )
        .await
        .map_err(pg_err)?
        .get(0))
}

/// The refusal of a rebuild's commit or swap when none was begun.
fn no_rebuild(name: &str) -> StoreError {
    StoreError::internal(format!(
        "no rebuild of projection {name} was begun (or it was swapped in or discarded)"
    ))
}

/// Prepares the statements of rendered row operations and checks each value's type against its
/// column's, before anything is written.
async fn prepare_ops(
    client: &ClientWrapper,
    name: &str,
    rendered: &[RenderedOp<'_>],
) -> Result<Vec<Statement>, StoreError> {
    let statements = prepare_each(client, rendered.iter().map(|r| r.sql.as_str())).await?;
    for (r, stmt) in rendered.iter().zip(&statements) {
        check_params(stmt, &r.params).map_err(|e| {
            StoreError::internal(format!(
                "projection {name}: a row operation on {}: {e}",
                r.table
            ))
        })?;
    }
    Ok(statements)
}

/// Executes prepared row operations in order, in one round trip, in the transaction open on
/// `tx`; the first failure is the one reported.
async fn execute_ops(
    tx: &ClientWrapper,
    name: &str,
    rendered: &[RenderedOp<'_>],
    statements: &[Statement],
) -> Result<(), StoreError> {
    let cells: Vec<Vec<PgCell<'_>>> = rendered
        .iter()
        .map(|r| r.params.iter().map(|c| PgCell(c)).collect())
        .collect();
    let params: Vec<Vec<&(dyn ToSql + Sync)>> = cells
        .iter()
        .map(|row| row.iter().map(|c| c as &(dyn ToSql + Sync)).collect())
        .collect();
    let results = pipelined(
        statements
            .iter()
            .zip(&params)
            .map(|(stmt, p)| Box::pin(tx.execute(stmt, p.as_slice())))
            .collect(),
    )
    .await;
    for (i, (result, r)) in results.into_iter().zip(rendered).enumerate() {
        result.map_err(|e| {
            let why = describe(&e);
            match pg_err(e) {
                StoreError::Internal(_) => StoreError::internal(format!(
                    "projection {name}: row operation {i} on {} failed: {why}",
                    r.table
                )),
                transient => transient,
            }
        })?;
    }
    Ok(())
}

/// The steps of a projection recorded as applied.
async fn applied_steps(client: &Client, name: &str) -> Result<Vec<(i64, String)>, StoreError> {
    let rows = client
        .query(
            "SELECT step, checksum FROM projection_steps WHERE name = $1 ORDER BY step",
            &[&name],
        )
        .await
        .map_err(pg_err)?;
    Ok(rows
        .iter()
        .map(|r| (i64::from(r.get::<_, i32>(0)), r.get(1)))
        .collect())
}

/// Prepares (or takes from the connection's cache) the statement of each of `sqls`, each
/// distinct one once, all in one round trip.
async fn prepare_each<'a>(
    client: &ClientWrapper,
    sqls: impl Iterator<Item = &'a str> + Clone,
) -> Result<Vec<Statement>, StoreError> {
    let mut distinct: Vec<&str> = sqls.clone().collect();
    distinct.sort_unstable();
    distinct.dedup();
    let prepared =
        futures_util::future::try_join_all(distinct.iter().map(|sql| client.prepare_cached(sql)))
            .await
            .map_err(pg_err)?;
    let by_sql: HashMap<&str, Statement> = distinct.into_iter().zip(prepared).collect();
    sqls.map(|sql| {
        by_sql
            .get(sql)
            .cloned()
            .ok_or_else(|| StoreError::internal("a statement was not prepared"))
    })
    .collect()
}

/// Awaits `futures` in order, after polling each once in that order. A tokio-postgres request
/// is sent when its future is first polled, so the statements reach the server in this order
/// in one round trip; their answers come back in the same order. After a failed statement the
/// later ones fail with "transaction aborted", so the first error is the cause.
async fn pipelined<F: Future + Unpin>(mut futures: Vec<F>) -> Vec<F::Output> {
    let early: Vec<Option<F::Output>> = futures.iter_mut().map(FutureExt::now_or_never).collect();
    let mut out = Vec::with_capacity(futures.len());
    for (future, done) in futures.into_iter().zip(early) {
        out.push(match done {
            Some(output) => output,
            None => future.await,
        });
    }
    out
}

/// Checks that `cells` are exactly the parameters of `stmt`, each of a type its column takes.
fn check_params(stmt: &Statement, cells: &[&Cell]) -> Result<(), String> {
    if stmt.params().len() != cells.len() {
        return Err(format!(
            "the statement has {} parameters but {} values were given",
            stmt.params().len(),
            cells.len()
        ));
    }
    for (i, (ty, cell)) in stmt.params().iter().zip(cells).enumerate() {
        if let Some(why) = binding_error(cell, ty) {
            return Err(format!("${}: {why}", i + 1));
        }
    }
    Ok(())
}

/// Why `cell` cannot be bound to a parameter of type `ty`, if it cannot.
fn binding_error(cell: &Cell, ty: &Type) -> Option<String> {
    let fits = match cell {
        Cell::Null => true,
        Cell::Bool(_) => *ty == Type::BOOL,
        Cell::Int(n) => match *ty {
            Type::INT8 => true,
            Type::INT4 => i32::try_from(*n).is_ok(),
            Type::INT2 => i16::try_from(*n).is_ok(),
            _ => false,
        },
        Cell::Text(_) => <&str as ToSql>::accepts(ty),
        Cell::Uuid(_) => *ty == Type::UUID,
        Cell::Json(_) => matches!(*ty, Type::JSON | Type::JSONB) || <&str as ToSql>::accepts(ty),
        Cell::Time(_) => matches!(*ty, Type::TIMESTAMPTZ | Type::TIMESTAMP),
    };
    (!fits).then(|| {
        let kind = cell
            .cell_type()
            .map_or_else(|| "NULL".to_owned(), |t| format!("{t:?}"));
        format!("a {kind} value does not fit a parameter of type {ty}")
    })
}

/// A cell bound as a parameter: `boolean`; `bigint` (or `integer`, `smallint` in range);
/// `text`; `uuid`; `jsonb` (or `json` or text); `timestamptz` (or `timestamp`, in UTC).
#[derive(Debug)]
struct PgCell<'a>(&'a Cell);

impl ToSql for PgCell<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        if let Some(why) = binding_error(self.0, ty) {
            return Err(why.into());
        }
        match self.0 {
            Cell::Null => Ok(IsNull::Yes),
            Cell::Bool(b) => b.to_sql(ty, out),
            Cell::Int(n) => match *ty {
                Type::INT4 => i32::try_from(*n)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(*n)?.to_sql(ty, out),
                _ => n.to_sql(ty, out),
            },
            Cell::Text(t) => t.as_str().to_sql(ty, out),
            Cell::Uuid(u) => u.to_sql(ty, out),
            Cell::Json(v) => {
                if *ty == Type::JSONB {
                    out.extend_from_slice(&[1]); // the jsonb format's version
                }
                out.extend_from_slice(v.to_string().as_bytes());
                Ok(IsNull::No)
            }
            Cell::Time(t) if *ty == Type::TIMESTAMP => {
                let utc = t.to_offset(UtcOffset::UTC);
                PrimitiveDateTime::new(utc.date(), utc.time()).to_sql(ty, out)
            }
            Cell::Time(t) => t.to_sql(ty, out),
        }
    }

    /// Every type: whether the value fits is checked per value, in `to_sql`.
    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

/// A JSON document read from `jsonb`, `json` or text.
struct PgJson(serde_json::Value);

impl<'a> FromSql<'a> for PgJson {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn StdError + Sync + Send>> {
        let text = if *ty == Type::JSONB {
            match raw.split_first() {
                Some((1, text)) => text,
                _ => return Err("unknown jsonb format version".into()),
            }
        } else {
            raw
        };
        Ok(Self(serde_json::from_slice(text)?))
    }

    fn accepts(ty: &Type) -> bool {
        matches!(*ty, Type::JSON | Type::JSONB) || <&str as FromSql>::accepts(ty)
    }
}

/// Reads column `i` of a projection's row as `ty`.
fn read_cell(row: &Row, i: usize, ty: CellType) -> Result<Cell, StoreError> {
    let column = row
        .columns()
        .get(i)
        .ok_or_else(|| StoreError::internal(format!("the row has no column {i}")))?;
    let pg_type = column.type_();
    let read = match ty {
        CellType::Bool => row.try_get::<_, Option<bool>>(i).map(|v| v.map(Cell::Bool)),
        CellType::Int => match *pg_type {
            Type::INT2 => row
                .try_get::<_, Option<i16>>(i)
                .map(|v| v.map(|n| Cell::Int(n.into()))),
            Type::INT4 => row
                .try_get::<_, Option<i32>>(i)
                .map(|v| v.map(|n| Cell::Int(n.into()))),
            _ => row.try_get::<_, Option<i64>>(i).map(|v| v.map(Cell::Int)),
        },
        CellType::Text => row
            .try_get::<_, Option<String>>(i)
            .map(|v| v.map(Cell::Text)),
        CellType::Uuid => row.try_get::<_, Option<Uuid>>(i).map(|v| v.map(Cell::Uuid)),
        CellType::Json => row
            .try_get::<_, Option<PgJson>>(i)
            .map(|v| v.map(|j| Cell::Json(j.0))),
        CellType::Time if *pg_type == Type::TIMESTAMP => row
            .try_get::<_, Option<PrimitiveDateTime>>(i)
            .map(|v| v.map(|t| Cell::Time(t.assume_utc()))),
        CellType::Time => row
            .try_get::<_, Option<OffsetDateTime>>(i)
            .map(|v| v.map(Cell::Time)),
    };
    read.map(|cell| cell.unwrap_or(Cell::Null)).map_err(|e| {
        StoreError::internal(format!(
            "column {} ({pg_type}) does not read as {ty:?}: {e}",
            column.name()
        ))
    })
}

async fn applied_migrations(client: &Object) -> Result<Vec<AppliedMigration>, StoreError> {
    let exists: bool = client
        .query_one("SELECT to_regclass('registro_migrations') IS NOT NULL", &[])
        .await
        .map_err(pg_err)?
        .get(0);
    if !exists {
        return Ok(Vec::new());
    }
    let rows = client
        .query(
            "SELECT version, checksum FROM registro_migrations ORDER BY version",
            &[],
        )
        .await
        .map_err(pg_err)?;
    Ok(rows
        .iter()
        .map(|r| AppliedMigration {
            version: u32::try_from(r.get::<_, i32>(0)).unwrap_or(0),
            checksum: r.get(1),
        })
        .collect())
}

async fn migrate_locked(client: &Object) -> Result<Vec<u32>, StoreError> {
    // Nothing to do, nothing to create: a role without the right to create tables (one that
    // only reads and writes rows) can run an up-to-date registro.
    if migrate::check(migrate::POSTGRES, &applied_migrations(client).await?)?.is_current() {
        return Ok(Vec::new());
    }
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS registro_migrations (
                 version    integer PRIMARY KEY,
                 name       text NOT NULL,
                 checksum   text NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now()
             )",
        )
        .await
        .map_err(pg_err)?;
    let status = migrate::check(migrate::POSTGRES, &applied_migrations(client).await?)?;
    let mut done = Vec::new();
    for m in migrate::POSTGRES
        .iter()
        .filter(|m| status.pending.contains(&m.version))
    {
        // A migration may touch the rows of every school (a backfill): it says so to
        // row-level security, like the subscription read.
        in_scope(client, Scope::AllSchools, End::Commit, async |tx| {
            tx.batch_execute(m.sql).await.map_err(|e| {
                StoreError::Migration(format!(
                    "migration {} ({}) failed: {}",
                    m.version,
                    m.name,
                    describe(&e)
                ))
            })?;
            tx.execute(
                "INSERT INTO registro_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                &[
                    &i32::try_from(m.version).unwrap_or(i32::MAX),
                    &m.name,
                    &m.checksum(),
                ],
            )
            .await
            .map_err(pg_err)
        })
        .await?;
        done.push(m.version);
    }
    Ok(done)
}

/// Keeps a LISTEN connection open, turning notifications into wake-ups; reconnects after
/// failures. Subscribers poll as well, so a gap here only delays them.
async fn listen(config: tokio_postgres::Config, wake: watch::Sender<u64>) {
    loop {
        match config.connect(NoTls).await {
            Ok((client, mut connection)) => {
                let forward = wake.clone();
                let driver = tokio::spawn(async move {
                    let mut messages =
                        futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
                    while let Some(Ok(message)) = messages.next().await {
                        if let AsyncMessage::Notification(_) = message {
                            forward.send_modify(|v| *v = v.wrapping_add(1));
                        }
                    }
                });
                match client
                    .batch_execute(&format!("LISTEN {NOTIFY_CHANNEL}"))
                    .await
                {
                    Ok(()) => {
                        // Wake subscribers once: notifications may have been missed while
                        // (re)connecting.
                        wake.send_modify(|v| *v = v.wrapping_add(1));
                        let _ = driver.await;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "LISTEN failed");
                        driver.abort();
                    }
                }
                tracing::debug!("notification connection closed; reconnecting");
            }
            Err(e) => tracing::debug!(error = %e, "notification connection failed; retrying"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn row_to_event(row: &Row) -> Result<RecordedEvent, StoreError> {
    let stored: String = row.get(9);
    let data = serde_json::from_str(&stored)
        .map_err(|e| StoreError::internal(format!("stored event data is not JSON: {e}")))?;
    let role: &str = row.get(11);
    Ok(RecordedEvent {
        position: Position {
            tx: to_u64(row.get(0)),
            id: to_u64(row.get(1)),
        },
        school_id: SchoolId::from_uuid(row.get(2)),
        school_seq: to_u64(row.get(3)),
        stream_id: StreamId::parse(row.get::<_, String>(4)).map_err(StoreError::internal)?,
        stream_version: to_u64(row.get(5)),
        event_id: row.get::<_, Uuid>(6).into(),
        event_type: EventType::parse(row.get::<_, String>(7)).map_err(StoreError::internal)?,
        schema_version: u32::try_from(row.get::<_, i32>(8)).map_err(StoreError::internal)?,
        data,
        stored_data: stored,
        actor_id: row.get::<_, Option<Uuid>>(10).map(PersonId::from_uuid),
        actor_role: Role::from_str(role).map_err(StoreError::internal)?,
        correlation_id: row.get::<_, Uuid>(12).into(),
        causation_id: row.get::<_, Option<Uuid>>(13).map(Into::into),
        occurred_at: row.get(14),
        recorded_at: row.get(15),
        idempotency_key: row
            .get::<_, Option<String>>(16)
            .map(IdempotencyKey::parse)
            .transpose()
            .map_err(StoreError::internal)?,
        prev_hash: Hash::from_slice(row.get(17))?,
        hash: Hash::from_slice(row.get(18))?,
    })
}

/// An attachment's description from a row that starts with `media_type, size, stored_at`.
fn attachment_meta(hash: ContentHash, row: &Row) -> AttachmentMeta {
    AttachmentMeta {
        hash,
        media_type: row.get(0),
        size: to_u64(row.get(1)),
        stored_at: row.get(2),
    }
}

/// The server's message and code, without the statement or parameters.
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => e.to_string(),
    }
}

/// Maps a driver error: connection trouble, timeouts and overload are
/// [`StoreError::Unavailable`]; everything else is [`StoreError::Internal`].
fn pg_err(e: tokio_postgres::Error) -> StoreError {
    let transient = match e.code() {
        None => true, // I/O, closed connection, timeouts: no server answer at all
        Some(code) => {
            let c = code.code();
            c.starts_with("08") // connection exception
                || c.starts_with("53") // insufficient resources (too many connections...)
                || c.starts_with("57") // operator intervention (shutdown, cancel, timeout)
                || c == SqlState::T_R_SERIALIZATION_FAILURE.code()
                || c == SqlState::T_R_DEADLOCK_DETECTED.code()
        }
    };
    if transient {
        StoreError::unavailable(e)
    } else {
        StoreError::internal(e)
    }
}

fn pool_err(e: PoolError) -> StoreError {
    match e {
        PoolError::Backend(e) => pg_err(e),
        PoolError::Timeout(_) => {
            StoreError::unavailable("timed out waiting for a database connection")
        }
        other => StoreError::unavailable(other.to_string()),
    }
}

#[cfg(feature = "testing")]
#[async_trait]
impl crate::testing::HoldAppends for PgStore {
    async fn append_held(&self, request: AppendRequest) -> crate::testing::HeldAppend {
        let store = self.clone();
        crate::testing::HeldAppend::start(move |gate| async move {
            store.append_gated(request, Some(gate)).await
        })
    }
}
