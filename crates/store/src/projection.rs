//! Storage for projections: read models built from the events by projector processes
//! (`docs/decisions/0019-projection-runtime.md`).
//!
//! A projection declares its tables ([`ProjectionSchema`]: DDL steps per backend, applied once
//! each, in order, and recorded with a checksum like migrations) and turns events into row
//! changes ([`RowOp`]). The store applies a batch of row changes together with the projection's
//! checkpoint in one transaction, after checking that the checkpoint is still where the batch
//! started ([`crate::EventStore::commit_projection`]): every event takes effect exactly once,
//! through crashes and with two instances running. A lease
//! ([`crate::EventStore::try_lock_projection`]) lets one instance apply while the others wait.
//!
//! Row changes are rendered once as SQL that both backends accept (`INSERT ... ON CONFLICT ...
//! DO UPDATE SET c = excluded.c`, `$n` placeholders). Table and column names come from the code
//! and must be plain identifiers (`[a-z_][a-z0-9_]*`); values are always bound as parameters,
//! never spliced.
//!
//! A rebuild runs the same steps into a build target of its own and swaps its rows in with the
//! checkpoint in one transaction ([`crate::EventStore::begin_rebuild`],
//! `docs/decisions/0021-projection-rebuild.md`).
//!
//! The runtime's tables (`projection_checkpoints`, `projection_steps`) belong to no school. A
//! projection's own tables carry `school_id` and, on PostgreSQL, are under row-level security
//! like the event tables (their DDL enables and forces it with the `school_isolation` policy of
//! migration 0002): the projector commits across schools, reads run in one school's scope.

use std::collections::BTreeSet;
use std::fmt;

use serde_json::Value;
use sha2::{Digest as _, Sha256};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::Backend;
use crate::envelope::{ExpectedVersion, Position, StreamId};
use crate::error::StoreError;

/// The longest table, column or projection name, in characters (PostgreSQL's limit for
/// identifiers).
pub const MAX_IDENTIFIER_CHARS: usize = 63;

/// A value bound to a read-model column.
///
/// Stored on PostgreSQL as `boolean`, `bigint` (or `integer`, `smallint` when in range),
/// `text`, `uuid`, `jsonb` (or `json`, or text), `timestamptz`; on SQLite as `INTEGER` 0/1,
/// `INTEGER`, `TEXT`, `TEXT` (hyphenated lowercase), `TEXT` (JSON), `TEXT` (RFC 3339 UTC with
/// microseconds, as the events' times). Times keep microseconds: finer digits are dropped.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// SQL `NULL`.
    Null,
    /// A boolean.
    Bool(bool),
    /// A 64-bit integer.
    Int(i64),
    /// Text.
    Text(String),
    /// A UUID.
    Uuid(Uuid),
    /// A JSON document.
    Json(Value),
    /// An instant, to the microsecond; read back in UTC.
    Time(OffsetDateTime),
}

impl Cell {
    /// The type of the value; `None` for [`Cell::Null`].
    #[must_use]
    pub fn cell_type(&self) -> Option<CellType> {
        match self {
            Self::Null => None,
            Self::Bool(_) => Some(CellType::Bool),
            Self::Int(_) => Some(CellType::Int),
            Self::Text(_) => Some(CellType::Text),
            Self::Uuid(_) => Some(CellType::Uuid),
            Self::Json(_) => Some(CellType::Json),
            Self::Time(_) => Some(CellType::Time),
        }
    }

    /// The text of a [`Cell::Text`].
    #[must_use]
    pub fn text(&self) -> Option<String> {
        match self {
            Self::Text(s) => Some(s.clone()),
            _ => None,
        }
    }

    /// The id of a [`Cell::Uuid`].
    #[must_use]
    pub const fn uuid(&self) -> Option<Uuid> {
        match self {
            Self::Uuid(u) => Some(*u),
            _ => None,
        }
    }

    /// The number of a [`Cell::Int`].
    #[must_use]
    pub const fn int(&self) -> Option<i64> {
        match self {
            Self::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The value of a [`Cell::Bool`].
    #[must_use]
    pub const fn bool(&self) -> Option<bool> {
        match self {
            Self::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// The document of a [`Cell::Json`].
    #[must_use]
    pub fn json(&self) -> Option<Value> {
        match self {
            Self::Json(v) => Some(v.clone()),
            _ => None,
        }
    }
}

/// Each row of a projection query as `read` makes it; the error names the first row it cannot
/// read (`what`: what a row is, for the message), as a bug, not the caller's fault.
///
/// # Errors
/// [`StoreError::Internal`] for a row of an unexpected shape.
pub fn decode_rows<R>(
    what: &str,
    rows: &[Vec<Cell>],
    mut read: impl FnMut(&[Cell]) -> Option<R>,
) -> Result<Vec<R>, StoreError> {
    rows.iter()
        .map(|r| {
            read(r).ok_or_else(|| {
                StoreError::internal(format!("a {what} row of an unexpected shape: {r:?}"))
            })
        })
        .collect()
}

/// The type of a column read back by [`crate::EventStore::query_projection`]. SQL `NULL` reads
/// as [`Cell::Null`] whatever the type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CellType {
    /// [`Cell::Bool`].
    Bool,
    /// [`Cell::Int`].
    Int,
    /// [`Cell::Text`].
    Text,
    /// [`Cell::Uuid`].
    Uuid,
    /// [`Cell::Json`].
    Json,
    /// [`Cell::Time`].
    Time,
}

/// One change to a projection's table. Names are plain identifiers (`[a-z_][a-z0-9_]*`, at
/// most [`MAX_IDENTIFIER_CHARS`]); a key has at least one column and no [`Cell::Null`].
#[derive(Debug, Clone, PartialEq)]
pub enum RowOp {
    /// Inserts a row; when a row with the same key exists, updates its `values` columns instead.
    /// The key's columns must be the table's primary key (or another unique constraint).
    Upsert {
        /// The table.
        table: &'static str,
        /// The row's key: its columns and values.
        key: Vec<(&'static str, Cell)>,
        /// The other columns written (none: an existing row is left as it is).
        values: Vec<(&'static str, Cell)>,
    },
    /// Deletes the rows equal to `key` on all its columns.
    Delete {
        /// The table.
        table: &'static str,
        /// The columns and values that the rows deleted have.
        key: Vec<(&'static str, Cell)>,
    },
}

/// A projection's tables: DDL steps per backend, applied once each, in order (like migrations,
/// recorded with a checksum; an applied step that changed is refused with
/// [`StoreError::Migration`]). A released step is never edited: a change is a new step.
///
/// Every table holding a school's data carries `school_id`, and its PostgreSQL DDL enables and
/// forces row-level security with the `school_isolation` policy of migration 0002.
///
/// The steps name their tables unqualified: a rebuild runs the same steps into a build target of
/// its own (a schema on PostgreSQL, a file on SQLite) before swapping its rows in
/// ([`crate::EventStore::begin_rebuild`]).
#[derive(Debug, Clone, Copy)]
pub struct ProjectionSchema {
    /// The projection's name, a plain identifier: it keys its checkpoint, steps and lease. A
    /// projection that is rebuilt has at most [`MAX_REBUILT_NAME_CHARS`] characters.
    pub name: &'static str,
    /// Every table the steps create, in an order safe for copying rows: a table before those
    /// whose rows refer to it. A rebuild swaps exactly these tables' rows in, and refuses a
    /// projection whose steps create other tables than these.
    pub tables: &'static [&'static str],
    /// The PostgreSQL steps (each may hold several statements).
    pub postgres: &'static [&'static str],
    /// The SQLite steps (each may hold several statements).
    pub sqlite: &'static [&'static str],
}

impl ProjectionSchema {
    /// The steps for `backend`.
    #[must_use]
    pub fn steps(&self, backend: Backend) -> &'static [&'static str] {
        match backend {
            Backend::Postgres => self.postgres,
            Backend::Sqlite => self.sqlite,
        }
    }
}

/// The longest name of a projection that can be rebuilt: its PostgreSQL build schema,
/// [`REBUILD_SCHEMA_PREFIX`] and the name, must be an identifier too.
pub const MAX_REBUILT_NAME_CHARS: usize = MAX_IDENTIFIER_CHARS - REBUILD_SCHEMA_PREFIX.len();

/// The prefix of the PostgreSQL schema a projection is rebuilt in.
pub const REBUILD_SCHEMA_PREFIX: &str = "registro_rebuild_";

/// The build target of a rebuild of `name`: on PostgreSQL the schema
/// `registro_rebuild_<name>`, on SQLite the suffix `.rebuild-<name>` of a file beside the
/// database. Refuses a name that is not a plain identifier or is too long for the schema.
pub(crate) fn rebuild_target(name: &str) -> Result<String, StoreError> {
    check_identifier("projection", name)?;
    if name.len() > MAX_REBUILT_NAME_CHARS {
        return Err(StoreError::internal(format!(
            "projection {name} cannot be rebuilt: its name is longer than \
             {MAX_REBUILT_NAME_CHARS} characters"
        )));
    }
    Ok(format!("{REBUILD_SCHEMA_PREFIX}{name}"))
}

/// Checks that a rebuild's steps created exactly the tables the projection declares.
pub(crate) fn check_rebuilt_tables(
    schema: &ProjectionSchema,
    created: &BTreeSet<String>,
) -> Result<(), StoreError> {
    for table in schema.tables {
        check_identifier("table", table)?;
    }
    let declared: BTreeSet<String> = schema.tables.iter().map(|t| (*t).to_owned()).collect();
    if declared.len() != schema.tables.len() {
        return Err(StoreError::internal(format!(
            "projection {} declares a table twice: {:?}",
            schema.name, schema.tables
        )));
    }
    if declared != *created {
        return Err(StoreError::internal(format!(
            "projection {} declares the tables {:?} but its steps create {:?}: a rebuild would \
             leave some rows behind",
            schema.name, declared, created
        )));
    }
    Ok(())
}

/// How far a projection is behind the log, and whether its projector stopped
/// ([`crate::EventStore::projection_lag`]). Read from the database, so any process sees it,
/// whichever process runs the projector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectionLag {
    /// Whether the projection was prepared (its tables made and its checkpoint created): until
    /// then its tables may not exist.
    pub prepared: bool,
    /// The position of the last event applied ([`Position::START`] before the first).
    pub checkpoint: Position,
    /// How many committed events come after the checkpoint, across schools. On PostgreSQL this
    /// counts every committed event, those the subscription's fence still holds back included
    /// (a long transaction elsewhere delays the projection, and that is lag too).
    pub events: u64,
    /// When the first event after the checkpoint (the next to apply) was recorded; `None` when
    /// there is none.
    pub oldest: Option<OffsetDateTime>,
    /// The event the projector stopped at, if it stopped.
    pub stopped: Option<ProjectionStop>,
}

impl ProjectionLag {
    /// Seconds between `now` and the recording of the next event to apply; 0 when none waits.
    #[must_use]
    pub fn seconds_behind(&self, now: OffsetDateTime) -> f64 {
        self.oldest
            .map_or(0.0, |oldest| (now - oldest).as_seconds_f64().max(0.0))
    }
}

/// A projector's stop at an event its projection cannot apply (a poison event), as recorded by
/// [`crate::EventStore::record_projection_stop`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectionStop {
    /// The event's position: the checkpoint stays before it.
    pub at: Position,
    /// Why, as the projector reported it (for operators: it may name the event's school).
    pub reason: String,
    /// When the projector first stopped at this event, to the microsecond.
    pub since: OffsetDateTime,
}

/// What keeps a projection's lease, held by an adapter.
pub(crate) trait Hold: fmt::Debug + Send + Sync {
    /// False once the lock is known to be lost.
    fn is_held(&self) -> bool;
}

/// The lease of one active instance of a projection
/// ([`crate::EventStore::try_lock_projection`]); dropping it releases the lease.
///
/// On PostgreSQL it is a session-level advisory lock on a connection of its own: when the
/// process dies the connection closes and the lock is freed, so a standby takes over. On SQLite
/// it is held within the process. Either way, the lease only keeps instances from doing the
/// same work twice: correctness comes from the checkpoint check of
/// [`crate::EventStore::commit_projection`].
#[derive(Debug)]
pub struct ProjectionLease {
    name: String,
    hold: Box<dyn Hold>,
}

impl ProjectionLease {
    pub(crate) fn new(name: &str, hold: impl Hold + 'static) -> Self {
        Self {
            name: name.to_owned(),
            hold: Box::new(hold),
        }
    }

    /// The projection leased.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// False once the lease is known to be lost (on PostgreSQL: its connection closed, and with
    /// it the lock). The holder should then stop and try to lock again; a commit made meanwhile
    /// is still checked against the checkpoint.
    #[must_use]
    pub fn is_held(&self) -> bool {
        self.hold.is_held()
    }
}

/// Refuses a name that is not a plain identifier (a programming error).
pub(crate) fn check_identifier(what: &str, name: &str) -> Result<(), StoreError> {
    let mut chars = name.chars();
    let plain = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.len() <= MAX_IDENTIFIER_CHARS;
    if plain {
        Ok(())
    } else {
        Err(StoreError::internal(format!(
            "{what} {name:?} is not a plain identifier ([a-z_][a-z0-9_]*, at most \
             {MAX_IDENTIFIER_CHARS} characters)"
        )))
    }
}

/// The SHA-256 of a DDL step, in hex.
pub(crate) fn step_checksum(sql: &str) -> String {
    hex::encode(Sha256::digest(sql.as_bytes()))
}

/// The indexes (from 0) of the steps not yet applied, in order, after checking the applied
/// ones (`(step number from 1, checksum)`) against `steps`.
pub(crate) fn pending_steps(
    name: &str,
    steps: &[&str],
    applied: &[(i64, String)],
) -> Result<Vec<usize>, StoreError> {
    let mut done = BTreeSet::new();
    for (step, checksum) in applied {
        let known = usize::try_from(*step)
            .ok()
            .and_then(|n| n.checked_sub(1))
            .and_then(|i| steps.get(i).map(|sql| (i, sql)));
        let Some((i, sql)) = known else {
            return Err(StoreError::Migration(format!(
                "projection {name} has step {step} applied, which this binary does not know: \
                 it was prepared by a newer version of registro"
            )));
        };
        let expected = step_checksum(sql);
        if expected != *checksum {
            return Err(StoreError::Migration(format!(
                "step {step} of projection {name} was edited after it was applied: its checksum \
                 is {expected} but the database recorded {checksum}; released steps must never \
                 change (add a step instead)"
            )));
        }
        done.insert(i);
    }
    Ok((0..steps.len()).filter(|i| !done.contains(i)).collect())
}

/// The step number (from 1) of the step at `index`, as stored.
pub(crate) fn step_number(index: usize) -> i32 {
    i32::try_from(index + 1).unwrap_or(i32::MAX)
}

/// A row operation as SQL with `$n` placeholders, and the values to bind to them, in order.
#[derive(Debug)]
pub(crate) struct RenderedOp<'a> {
    pub(crate) table: &'static str,
    pub(crate) sql: String,
    pub(crate) params: Vec<&'a Cell>,
}

/// Renders `op` as SQL both backends accept, after checking its names and key.
pub(crate) fn render(op: &RowOp) -> Result<RenderedOp<'_>, StoreError> {
    render_in(op, None)
}

/// Renders `op` as [`render`] does, its table qualified by `schema` when one is given (the
/// build schema of a rebuild on PostgreSQL).
pub(crate) fn render_in<'a>(
    op: &'a RowOp,
    schema: Option<&str>,
) -> Result<RenderedOp<'a>, StoreError> {
    let (table, key, values) = match op {
        RowOp::Upsert { table, key, values } => (*table, key, values.as_slice()),
        RowOp::Delete { table, key } => (*table, key, [].as_slice()),
    };
    check_identifier("table", table)?;
    if key.is_empty() {
        return Err(StoreError::internal(format!(
            "a row operation on {table} has an empty key"
        )));
    }
    let mut seen = BTreeSet::new();
    for (column, cell) in key.iter().chain(values) {
        check_identifier("column", column)?;
        if !seen.insert(*column) {
            return Err(StoreError::internal(format!(
                "a row operation on {table} names column {column} twice"
            )));
        }
        if *cell == Cell::Null && key.iter().any(|(k, _)| k == column) {
            return Err(StoreError::internal(format!(
                "a row operation on {table} has a NULL key column {column}"
            )));
        }
    }
    let key_columns: Vec<&str> = key.iter().map(|(c, _)| *c).collect();
    let params: Vec<&Cell> = key.iter().chain(values).map(|(_, cell)| cell).collect();
    let target = match schema {
        Some(schema) => {
            check_identifier("schema", schema)?;
            format!("{schema}.{table}")
        }
        None => table.to_owned(),
    };
    let sql = match op {
        RowOp::Upsert { .. } => {
            let columns: Vec<&str> = key.iter().chain(values).map(|(c, _)| *c).collect();
            let placeholders: Vec<String> = (1..=columns.len()).map(|n| format!("${n}")).collect();
            let action = if values.is_empty() {
                "DO NOTHING".to_owned()
            } else {
                let sets: Vec<String> = values
                    .iter()
                    .map(|(c, _)| format!("{c} = excluded.{c}"))
                    .collect();
                format!("DO UPDATE SET {}", sets.join(", "))
            };
            format!(
                "INSERT INTO {target} ({}) VALUES ({}) ON CONFLICT ({}) {action}",
                columns.join(", "),
                placeholders.join(", "),
                key_columns.join(", ")
            )
        }
        RowOp::Delete { .. } => {
            let conditions: Vec<String> = key_columns
                .iter()
                .enumerate()
                .map(|(i, c)| format!("{c} = ${}", i + 1))
                .collect();
            format!("DELETE FROM {target} WHERE {}", conditions.join(" AND "))
        }
    };
    Ok(RenderedOp { table, sql, params })
}

/// The most rows one batched upsert writes.
const BATCH_ROWS: usize = 64;

/// `ops` rendered as [`render_in`] does, with the upserts batched: per table, each run of
/// consecutive upserts with the same columns becomes multi-row `INSERT ... VALUES (...), (...)
/// ON CONFLICT` statements, in sizes that are powers of two (so that few distinct statements
/// are prepared), never two rows with the same key in one statement (`ON CONFLICT DO UPDATE`
/// refuses that: of two upserts of one key in a run, the later replaces the earlier, which it
/// overwrites whole). A delete, or an upsert with other columns, ends a run.
///
/// Tables are taken in the order they first appear, each table's operations in their order:
/// row operations are blind writes to tables without foreign keys or triggers, so operations on
/// different tables commute and only each table's order matters.
pub(crate) fn render_batched<'a>(
    ops: &'a [RowOp],
    schema: Option<&str>,
) -> Result<Vec<RenderedOp<'a>>, StoreError> {
    let table_of = |op: &RowOp| match op {
        RowOp::Upsert { table, .. } | RowOp::Delete { table, .. } => *table,
    };
    let mut tables: Vec<&'static str> = Vec::new();
    for op in ops {
        if !tables.contains(&table_of(op)) {
            tables.push(table_of(op));
        }
    }
    let mut out = Vec::new();
    for table in tables {
        let mut run: Vec<&'a RowOp> = Vec::new();
        // The keys in the run (at most BATCH_ROWS, compared one by one: a JSON cell has no order).
        let mut keys: Vec<Vec<&'a Cell>> = Vec::new();
        for op in ops.iter().filter(|op| table_of(op) == table) {
            let continues = match (run.first(), op) {
                (
                    Some(RowOp::Upsert {
                        key: k0,
                        values: v0,
                        ..
                    }),
                    RowOp::Upsert { key, values, .. },
                ) => {
                    let same = |a: &[(&str, Cell)], b: &[(&str, Cell)]| {
                        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.0 == y.0)
                    };
                    same(k0, key) && same(v0, values)
                }
                _ => false,
            };
            let key: Vec<&Cell> = match op {
                RowOp::Upsert { key, .. } | RowOp::Delete { key, .. } => {
                    key.iter().map(|(_, c)| c).collect()
                }
            };
            // The same key again in the run: both write the same columns, so the later
            // upsert alone leaves the row as the two in order would; it takes the earlier's
            // place (a projection's stamps raise one row many times a batch).
            if continues && let Some(at) = keys.iter().position(|k| *k == key) {
                run[at] = op;
                continue;
            }
            if !continues || run.len() == BATCH_ROWS {
                flush(&mut run, schema, &mut out)?;
                keys.clear();
            }
            match op {
                RowOp::Upsert { .. } => {
                    keys.push(key);
                    run.push(op);
                }
                RowOp::Delete { .. } => out.push(render_in(op, schema)?),
            }
        }
        flush(&mut run, schema, &mut out)?;
    }
    Ok(out)
}

/// Renders a run of upserts of one shape as multi-row statements, largest powers of two first.
fn flush<'a>(
    run: &mut Vec<&'a RowOp>,
    schema: Option<&str>,
    out: &mut Vec<RenderedOp<'a>>,
) -> Result<(), StoreError> {
    let mut rest: &[&'a RowOp] = run;
    while !rest.is_empty() {
        let size = 1 << rest.len().ilog2();
        let (chunk, next) = rest.split_at(size);
        let first = render_in(chunk[0], schema)?;
        if chunk.len() == 1 {
            out.push(first);
        } else {
            let mut params = first.params;
            let width = params.len();
            for op in &chunk[1..] {
                params.extend(render_in(op, schema)?.params);
            }
            let rows: Vec<String> = (0..chunk.len())
                .map(|r| {
                    let cells: Vec<String> =
                        (1..=width).map(|c| format!("${}", r * width + c)).collect();
                    format!("({})", cells.join(", "))
                })
                .collect();
            // The single row's statement, with all the rows in place of its one.
            let one_row = format!(
                "({})",
                (1..=width)
                    .map(|c| format!("${c}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            let sql = first.sql.replacen(&one_row, &rows.join(", "), 1);
            out.push(RenderedOp {
                table: first.table,
                sql,
                params,
            });
        }
        rest = next;
    }
    run.clear();
    Ok(())
}

/// The position stored in a checkpoint row.
pub(crate) fn stored_position(tx: i64, id: i64) -> Position {
    Position {
        tx: crate::rows::to_u64(tx),
        id: crate::rows::to_u64(id),
    }
}

/// The refusal of a commit whose checkpoint moved: a [`StoreError::Conflict`] on the stream
/// `projection:<name>`, with the event ids of the positions as versions (`from` at
/// [`Position::START`] is [`ExpectedVersion::NoStream`]).
pub(crate) fn checkpoint_moved(name: &str, from: Position, actual: Position) -> StoreError {
    match StreamId::parse(format!("projection:{name}")) {
        Ok(stream) => StoreError::Conflict {
            stream,
            expected: if from == Position::START {
                ExpectedVersion::NoStream
            } else {
                ExpectedVersion::Exact(from.id)
            },
            actual: actual.id,
        },
        Err(e) => StoreError::internal(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upsert(values: Vec<(&'static str, Cell)>) -> RowOp {
        RowOp::Upsert {
            table: "family_view",
            key: vec![
                ("school_id", Cell::Uuid(Uuid::nil())),
                ("student", Cell::Text("s1".into())),
            ],
            values,
        }
    }

    #[test]
    fn only_plain_identifiers_pass() {
        for good in [
            "a",
            "_x",
            "family_view",
            "t2",
            &"a".repeat(MAX_IDENTIFIER_CHARS),
        ] {
            assert!(check_identifier("table", good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "2t",
            "Family",
            "a-b",
            "a b",
            "a;drop table events",
            "\"quoted\"",
            "è",
            &"a".repeat(MAX_IDENTIFIER_CHARS + 1),
        ] {
            assert!(
                matches!(check_identifier("table", bad), Err(StoreError::Internal(_))),
                "{bad:?}"
            );
        }
    }

    fn row(table: &'static str, student: &str, grade: i64) -> RowOp {
        RowOp::Upsert {
            table,
            key: vec![("student", Cell::Text(student.into()))],
            values: vec![("grade", Cell::Int(grade))],
        }
    }

    #[test]
    fn batched_upserts_keep_each_tables_order_and_never_repeat_a_key() {
        let ops = vec![
            row("a", "s1", 1),
            row("b", "s1", 2),
            row("a", "s2", 3),
            row("a", "s3", 4),
            // The same key again, same columns: it takes the first one's place.
            row("a", "s1", 5),
            RowOp::Delete {
                table: "a",
                key: vec![("student", Cell::Text("s2".into()))],
            },
            row("a", "s4", 6),
            row("b", "s2", 7),
        ];
        let r = render_batched(&ops, None).unwrap();
        let shape: Vec<(&str, usize, &str)> = r
            .iter()
            .map(|op| (op.table, op.params.len(), &op.sql[..6]))
            .collect();
        assert_eq!(
            shape,
            [
                // s1 (its second value), s2, s3 of table a: two rows then one (powers of
                // two).
                ("a", 4, "INSERT"),
                ("a", 2, "INSERT"),
                ("a", 1, "DELETE"),
                ("a", 2, "INSERT"),
                ("b", 4, "INSERT"),
            ]
        );
        assert_eq!(
            r[0].sql,
            "INSERT INTO a (student, grade) VALUES ($1, $2), ($3, $4) \
             ON CONFLICT (student) DO UPDATE SET grade = excluded.grade"
        );
        let values = |i: usize| -> Vec<&Cell> { r[i].params.clone() };
        assert_eq!(
            values(0),
            [
                &Cell::Text("s1".into()),
                &Cell::Int(5),
                &Cell::Text("s2".into()),
                &Cell::Int(3)
            ]
        );
        assert_eq!(values(1), [&Cell::Text("s3".into()), &Cell::Int(4)]);
        assert_eq!(values(3), [&Cell::Text("s4".into()), &Cell::Int(6)]);
    }

    #[test]
    fn a_long_run_is_cut_at_the_batch_size() {
        let ops: Vec<RowOp> = (0..(BATCH_ROWS + 3))
            .map(|i| row("a", &format!("s{i}"), 1))
            .collect();
        let sizes: Vec<usize> = render_batched(&ops, Some("build"))
            .unwrap()
            .iter()
            .map(|op| op.params.len() / 2)
            .collect();
        assert_eq!(sizes, [BATCH_ROWS, 2, 1]);
    }

    #[test]
    fn an_upsert_updates_its_values_on_conflict() {
        let op = upsert(vec![("grade", Cell::Int(800)), ("note", Cell::Null)]);
        let r = render(&op).unwrap();
        assert_eq!(
            r.sql,
            "INSERT INTO family_view (school_id, student, grade, note) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (school_id, student) DO UPDATE SET grade = excluded.grade, \
             note = excluded.note"
        );
        assert_eq!(r.params.len(), 4);
        assert_eq!(r.params[2], &Cell::Int(800));
    }

    #[test]
    fn an_upsert_without_values_does_nothing_on_conflict() {
        let op = upsert(vec![]);
        let r = render(&op).unwrap();
        assert_eq!(
            r.sql,
            "INSERT INTO family_view (school_id, student) VALUES ($1, $2) \
             ON CONFLICT (school_id, student) DO NOTHING"
        );
    }

    #[test]
    fn a_delete_matches_every_key_column() {
        let op = RowOp::Delete {
            table: "family_view",
            key: vec![
                ("school_id", Cell::Uuid(Uuid::nil())),
                ("student", Cell::Text("s1".into())),
            ],
        };
        let r = render(&op).unwrap();
        assert_eq!(
            r.sql,
            "DELETE FROM family_view WHERE school_id = $1 AND student = $2"
        );
        assert_eq!(r.params.len(), 2);
    }

    #[test]
    fn a_rebuild_renders_into_its_build_schema() {
        let op = upsert(vec![("grade", Cell::Int(800))]);
        let r = render_in(&op, Some("registro_rebuild_family")).unwrap();
        assert_eq!(
            r.sql,
            "INSERT INTO registro_rebuild_family.family_view (school_id, student, grade) \
             VALUES ($1, $2, $3) ON CONFLICT (school_id, student) DO UPDATE SET \
             grade = excluded.grade"
        );
        let op = RowOp::Delete {
            table: "family_view",
            key: vec![("student", Cell::Text("s1".into()))],
        };
        assert_eq!(
            render_in(&op, Some("registro_rebuild_family")).unwrap().sql,
            "DELETE FROM registro_rebuild_family.family_view WHERE student = $1"
        );
        assert!(matches!(
            render_in(&op, Some("public; DROP TABLE events")),
            Err(StoreError::Internal(_))
        ));
    }

    #[test]
    fn a_rebuild_target_is_named_after_its_projection_and_fits_an_identifier() {
        assert_eq!(rebuild_target("family").unwrap(), "registro_rebuild_family");
        let longest = "a".repeat(MAX_REBUILT_NAME_CHARS);
        assert_eq!(
            rebuild_target(&longest).unwrap().len(),
            MAX_IDENTIFIER_CHARS
        );
        for bad in [
            "a".repeat(MAX_REBUILT_NAME_CHARS + 1),
            "Family".to_owned(),
            String::new(),
        ] {
            assert!(
                matches!(rebuild_target(&bad), Err(StoreError::Internal(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_rebuild_must_create_exactly_the_declared_tables() {
        let schema = |tables: &'static [&'static str]| ProjectionSchema {
            name: "p",
            tables,
            postgres: &[],
            sqlite: &[],
        };
        let created: BTreeSet<String> = ["a".to_owned(), "b".to_owned()].into();
        assert!(check_rebuilt_tables(&schema(&["b", "a"]), &created).is_ok());
        let wrong: [&'static [&'static str]; 5] =
            [&["a"], &["a", "b", "c"], &["a", "b", "a"], &[], &["a", "B"]];
        for tables in wrong {
            assert!(
                matches!(
                    check_rebuilt_tables(&schema(tables), &created),
                    Err(StoreError::Internal(_))
                ),
                "{tables:?}"
            );
        }
    }

    #[test]
    fn bad_names_empty_or_null_keys_and_repeated_columns_are_refused() {
        let bad = [
            RowOp::Delete {
                table: "family_view; DROP TABLE events",
                key: vec![("a", Cell::Int(1))],
            },
            RowOp::Delete {
                table: "t",
                key: vec![("a = a OR 1", Cell::Int(1))],
            },
            RowOp::Delete {
                table: "t",
                key: vec![],
            },
            RowOp::Delete {
                table: "t",
                key: vec![("a", Cell::Null)],
            },
            upsert(vec![("student", Cell::Int(1))]),
            upsert(vec![("Grade", Cell::Int(1))]),
        ];
        for op in bad {
            assert!(
                matches!(render(&op), Err(StoreError::Internal(_))),
                "{op:?}"
            );
        }
        // A NULL value (not key) is fine.
        assert!(render(&upsert(vec![("note", Cell::Null)])).is_ok());
    }

    #[test]
    fn steps_are_pending_until_applied_and_an_edited_or_unknown_one_is_refused() {
        let steps = ["CREATE TABLE a (x int)", "CREATE INDEX a_x ON a (x)"];
        let applied = |n: i64, sql: &str| (n, step_checksum(sql));
        assert_eq!(pending_steps("p", &steps, &[]).unwrap(), vec![0, 1]);
        assert_eq!(
            pending_steps("p", &steps, &[applied(1, steps[0])]).unwrap(),
            vec![1]
        );
        assert!(
            pending_steps("p", &steps, &[applied(1, steps[0]), applied(2, steps[1])])
                .unwrap()
                .is_empty()
        );
        let edited = pending_steps("p", &steps, &[applied(1, "CREATE TABLE a (x bigint)")]);
        assert!(
            matches!(edited, Err(StoreError::Migration(ref m)) if m.contains("was edited")),
            "{edited:?}"
        );
        for unknown in [3, 0, -1] {
            let err = pending_steps("p", &steps, &[applied(unknown, "x")]);
            assert!(
                matches!(err, Err(StoreError::Migration(ref m)) if m.contains("newer version")),
                "{err:?}"
            );
        }
    }

    #[test]
    fn a_moved_checkpoint_is_a_conflict_on_the_projection() {
        let err = checkpoint_moved("audit", Position::START, Position { tx: 9, id: 4 });
        assert!(
            matches!(
                &err,
                StoreError::Conflict { stream, expected: ExpectedVersion::NoStream, actual: 4 }
                    if stream.as_str() == "projection:audit"
            ),
            "{err:?}"
        );
        let err = checkpoint_moved(
            "audit",
            Position { tx: 9, id: 4 },
            Position { tx: 9, id: 7 },
        );
        assert!(
            matches!(
                err,
                StoreError::Conflict {
                    expected: ExpectedVersion::Exact(4),
                    actual: 7,
                    ..
                }
            ),
            "{err:?}"
        );
    }
}
