//! Fault tests of the projector processes (issue 5; ADR 0019): `registro project` killed with
//! SIGKILL at random moments while it catches up builds exactly the tables one uninterrupted
//! run builds (and `registro rebuild family` then swaps in the same view); a standby process
//! takes over when the active one is killed; an event one projection cannot apply stops that
//! projector alone.
//!
//! A failure names the seed of its random choices; `REGISTRO_FAULT_SEED=<seed>` replays them
//! (the moments of the kills, not the scheduling of the machine).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use registro_domain::StoredEvent as _;
use registro_domain::calendar::SchoolYear;
use registro_domain::class_register::{self, ClassEvent};
use registro_domain::directory::{self, DirectoryEvent};
use registro_domain::grade::{GradeKind, GradeValue, Weight};
use registro_domain::justification::{Justifier, ReasonCategory};
use registro_domain::record::{self, Mark, NoteKind, Reason, RecordEvent, Sealable};
use registro_domain::timetable::Missed;
use registro_domain::{
    AttendanceId, ClassId, FiscalCode, GradeId, HomeworkId, NoteId, PersonId, Role, SchoolId,
};
use registro_store::{
    AppendRequest, CommandMetadata, EventStore, EventType, ExpectedVersion, MasterKey, NewEvent,
    Position, StreamId,
};
use registro_testkit::TempDir;
use registro_testkit::pg::TestDb;
use time::{Date, Month, OffsetDateTime};

use crate::support::{PATIENCE, registro, school_with_events, stderr};

/// How many times the projector is killed while it catches up.
const KILLS: usize = 60;

/// Events a projector applies per transaction while it is being killed: small, so that the
/// catch-up takes many commits and the kills fall between and inside them.
const KILL_BATCH: &str = "1";

/// Kills are spread from this many milliseconds...
const SHORTEST_MS: u64 = 3;
/// ...doubling up to this many times (so up to about 2 × 3 × 2⁶ ms).
const DOUBLINGS: u64 = 6;

// ---------------------------------------------------------------------------------------------
// 1. Kill and compare.

#[tokio::test]
async fn a_projector_killed_at_random_while_catching_up_builds_what_one_clean_run_builds() {
    let seed = seed();
    let mut rng = Rng(seed);
    let ctx = format!("(seed {seed}; replay with REGISTRO_FAULT_SEED={seed})");
    eprintln!("projector kill test {ctx}");
    // For the reader of the output: where the time goes (nothing is asserted about it).
    let started = Instant::now();
    let phase = |what: &str| eprintln!("{:>8.1?} {what}", started.elapsed());

    let killed_db = TestDb::new().await;
    let key = MasterKey::generate();
    let appended = {
        let store = Arc::new(killed_db.store_with_key(key.clone()).await);
        let appended = workload(&store, seed).await;
        // Every event must be readable through the subscription before the copy (ADR 0003's
        // fence may hold them back a moment on a busy server).
        wait_until_all_readable(store.as_ref(), appended).await;
        appended
        // The store, and its connections, go here: a database is copied with nobody on it.
    };
    // The reference: the same events, before any projector ran.
    let clean_db = killed_db.duplicate().await;
    phase(&format!(
        "{appended} events appended and the database copied"
    ));

    let store = killed_db.store_with_key(key.clone()).await;
    let positions = all_positions(&store).await;
    assert_eq!(positions.len(), appended, "{ctx}");
    let head = *positions.last().unwrap();
    let names = projection_names();
    let key = key.to_base64();
    let logs = TempDir::new();
    let log = logs.path().join("project.log");
    let client = killed_db.client().await;
    let ours = own_sessions(&client).await;
    let mut lingered = 0;

    // Killed again and again while it catches up.
    let mut applied: BTreeMap<&str, usize> = names.iter().map(|n| (n.as_str(), 0)).collect();
    let (mut killed_before_head, mut killed_after_progress) = (0, 0);
    for run in 1..=KILLS {
        let mut child = project(
            killed_db.url(),
            &key,
            &["--all", "--batch", KILL_BATCH],
            &log,
        );
        // Half the runs are timed from the start of the process (some die while it starts,
        // prepares its tables or takes the lease), half from the moment it is active, so that
        // a slow start on a busy machine does not leave only the start to be killed.
        let from = if rng.one_in(2) {
            "it started"
        } else {
            wait_for_log(&mut child, &log, "audit", "active").await;
            "it became active"
        };
        let delay = rng.delay();
        tokio::time::sleep(delay).await;
        if let Some(status) = child.exited() {
            panic!(
                "run {run}: registro project exited by itself with {status} {ctx}:\n{}",
                read(&log)
            );
        }
        child.kill();
        // Its sessions end a moment after it dies; a commit it had sent may still land
        // meanwhile. Once they are gone nothing more of this run can change the tables.
        lingered += usize::from(wait_for_sessions_to_end(&client, &ours, &ctx).await);
        let (checkpoints, audit_rows) = settled_state(&client).await;
        let mut behind = false;
        let mut progressed = false;
        for name in &names {
            let checkpoint = checkpoints.get(name).copied().unwrap_or(Position::START);
            let now = applied_count(&positions, checkpoint, name, &ctx);
            let before = applied[name.as_str()];
            assert!(
                now >= before,
                "run {run}: the checkpoint of {name} went back from {before} to {now} events {ctx}"
            );
            behind |= now < positions.len();
            progressed |= now > before && now < positions.len();
            applied.insert(name, now);
        }
        // The rows are those of the events up to the checkpoint: committed together.
        assert_eq!(
            audit_rows, applied["audit"],
            "run {run}: the audit trail has {audit_rows} entries but its checkpoint is after {} \
             events {ctx}",
            applied["audit"]
        );
        killed_before_head += usize::from(behind);
        killed_after_progress += usize::from(progressed);
        eprintln!("run {run}: killed {delay:?} after {from}, applied {applied:?} of {appended}");
    }
    phase(&format!(
        "{KILLS} runs killed: {killed_before_head} before the head, {killed_after_progress} of \
         them after committing something; sessions outlived the process {lingered} times"
    ));
    assert!(
        killed_before_head >= KILLS * 5 / 6,
        "only {killed_before_head} of {KILLS} kills came before the checkpoints reached the head \
         ({appended} events): the catch-up is too short for the test to mean anything {ctx}"
    );
    assert!(
        killed_after_progress >= KILLS / 5,
        "only {killed_after_progress} of {KILLS} runs were killed after committing something \
         and before the head: the kills do not fall inside the catch-up {ctx}"
    );

    // Then left to finish.
    let mut finisher = project(killed_db.url(), &key, &["--all"], &log);
    wait_for_head(&store, &names, head, &mut finisher, &log, &ctx).await;
    finisher.terminate(&log).await;

    phase("the last run reached the head");
    // The reference, in one uninterrupted run on the copy.
    let clean_store = clean_db
        .store_with_key(MasterKey::parse(&key).unwrap())
        .await;
    assert_eq!(
        clean_store.projection_checkpoint("audit").await.unwrap(),
        Position::START,
        "the copy was taken after a projector ran {ctx}"
    );
    let clean_log = logs.path().join("clean.log");
    let mut clean = project(clean_db.url(), &key, &["--all"], &clean_log);
    wait_for_head(&clean_store, &names, head, &mut clean, &clean_log, &ctx).await;
    clean.terminate(&clean_log).await;

    phase("the clean run reached the head");
    // Every table of both databases, row by row.
    let clean_client = clean_db.client().await;
    let killed = dump(&client).await;
    let reference = dump(&clean_client).await;
    assert_eq!(
        killed.keys().collect::<Vec<_>>(),
        reference.keys().collect::<Vec<_>>(),
        "the two databases have different tables {ctx}"
    );
    for (table, rows) in &reference {
        let got = &killed[table];
        if let Some(i) = (0..rows.len().max(got.len())).find(|&i| rows.get(i) != got.get(i)) {
            panic!(
                "table {table} differs from the clean build: {} rows against {}; the first \
                 difference, row {i}:\n  killed: {:?}\n  clean:  {:?}\n{ctx}",
                got.len(),
                rows.len(),
                got.get(i),
                rows.get(i)
            );
        }
    }
    assert_eq!(
        reference["audit_entries"].len(),
        appended,
        "the audit trail should have one entry per event {ctx}"
    );
    for name in &names {
        assert_eq!(
            store.projection_checkpoint(name).await.unwrap(),
            head,
            "{name} {ctx}"
        );
    }
    phase(&format!("{} tables compared", reference.len()));

    // And `registro rebuild family` on the populated database swaps in the same view, built
    // from the first event, with its progress shown.
    for table in [
        "family_grades",
        "family_attendance",
        "family_notes",
        "family_agenda",
    ] {
        assert!(
            !reference[table].is_empty(),
            "the workload should fill {table} {ctx}"
        );
    }
    let out = crate::support::run(&[
        "rebuild",
        "family",
        "--database-url",
        killed_db.url(),
        "--master-key",
        &key,
    ]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(&format!(
            "rebuild family: 0/{appended} events (0.0%), starting"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "rebuild family: {appended}/{appended} events (100.0%), swapped in after "
        )),
        "{err}"
    );
    assert!(
        crate::support::stdout(&out).starts_with(&format!("rebuilt family: {appended} events")),
        "{}",
        crate::support::stdout(&out)
    );
    let rebuilt = dump(&client).await;
    for (table, rows) in reference.iter().filter(|(t, _)| t.starts_with("family_")) {
        assert_eq!(&rebuilt[table], rows, "{table} after the rebuild {ctx}");
    }
    assert_eq!(
        store.projection_checkpoint("family").await.unwrap(),
        head,
        "{ctx}"
    );
    phase("the family view rebuilt and compared");
}

// ---------------------------------------------------------------------------------------------
// 2. A standby process takes over.

#[tokio::test]
async fn a_standby_process_takes_over_when_the_active_one_is_killed() {
    let db = TestDb::new().await;
    let key = MasterKey::generate();
    let store = db.store_with_key(key.clone()).await;
    school_with_events(&store, 5).await;
    let key = key.to_base64();
    let logs = TempDir::new();
    let (first_log, second_log) = (
        logs.path().join("first.log"),
        logs.path().join("second.log"),
    );
    let client = db.client().await;

    let mut first = project(db.url(), &key, &["audit"], &first_log);
    wait_for_log(&mut first, &first_log, "audit", "active").await;
    wait_for_rows(&client, 5, &mut first, &first_log).await;
    let mut second = project(db.url(), &key, &["audit"], &second_log);
    wait_for_log(&mut second, &second_log, "audit", "standby").await;
    // One holder of the lease: the first.
    assert!(
        !logged(&second_log, "audit", "active"),
        "the second instance became active while the first ran:\n{}",
        read(&second_log)
    );
    assert_eq!(
        advisory_locks(&client).await,
        1,
        "one projector lease is held, and only one"
    );

    // Still one active and one waiting, once the first has applied everything.
    assert!(first.exited().is_none(), "{}", read(&first_log));
    assert!(second.exited().is_none(), "{}", read(&second_log));
    first.kill();
    // What comes after the active one died is applied by the standby.
    school_with_events(&store, 3).await;
    wait_for_log(&mut second, &second_log, "audit", "active").await;
    wait_for_rows(&client, 8, &mut second, &second_log).await;
    let positions = all_positions(&store).await;
    assert_eq!(positions.len(), 8);
    let head = *positions.last().unwrap();
    let deadline = Instant::now() + PATIENCE;
    while store.projection_checkpoint("audit").await.unwrap() != head {
        assert!(
            Instant::now() < deadline,
            "the standby did not bring the checkpoint to the head in time:\n{}",
            read(&second_log)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(count(&client, "audit_entries").await, 8);
    second.terminate(&second_log).await;
}

// ---------------------------------------------------------------------------------------------
// 3. A poison event stops only its projector.

#[tokio::test]
async fn a_poison_event_stops_only_its_projector() {
    let db = TestDb::new().await;
    let key = MasterKey::generate();
    let store = db.store_with_key(key.clone()).await;
    let school = school_with_events(&store, 3).await;
    // A grade whose data the family view cannot read (as a bug in an older version could
    // have written): the view must stop there, the audit trail must go on.
    let outcome = store
        .append(AppendRequest {
            guards: Vec::new(),
            school,
            stream: StreamId::parse(format!("student-{}-2025", PersonId::new())).unwrap(),
            expected: ExpectedVersion::Any,
            events: vec![new_event(
                "GradeRecorded",
                serde_json::json!({"grade": "not an id"}),
            )],
            metadata: CommandMetadata::system(),
            idempotency_key: None,
            command_digest: None,
        })
        .await
        .unwrap();
    assert_eq!(outcome.last_seq, 4);
    school_with_events(&store, 2).await;
    wait_until_all_readable(&store, 6).await;
    let positions = all_positions(&store).await;
    let key = key.to_base64();
    let logs = TempDir::new();
    let log = logs.path().join("project.log");
    let mut process = project(db.url(), &key, &["--all"], &log);
    wait_for_log(
        &mut process,
        &log,
        "family",
        "stopped at an event it cannot apply",
    )
    .await;
    let line = read(&log)
        .lines()
        .find(|l| l.contains("stopped at an event it cannot apply"))
        .unwrap()
        .to_owned();
    assert!(
        line.contains("school_seq 4") && line.contains("GradeRecorded"),
        "{line}"
    );
    // The audit trail reaches the head, and follows what comes next, while the family view
    // stays before the event.
    wait_for_head(
        &store,
        &["audit".to_owned()],
        positions[5],
        &mut process,
        &log,
        "",
    )
    .await;
    school_with_events(&store, 1).await;
    wait_until_all_readable(&store, 7).await;
    let head = *all_positions(&store).await.last().unwrap();
    wait_for_head(&store, &["audit".to_owned()], head, &mut process, &log, "").await;
    assert_eq!(
        store.projection_checkpoint("family").await.unwrap(),
        positions[2],
        "the family view stops right before the event it cannot apply"
    );
    process.terminate(&log).await;
}

// ---------------------------------------------------------------------------------------------
// The processes.

/// A `registro project` process, killed if the test ends without stopping it.
struct Projector(Child);

impl Projector {
    /// SIGKILL, and wait for it to be gone.
    fn kill(&mut self) {
        self.0.kill().unwrap();
        self.0.wait().unwrap();
    }

    /// SIGTERM: it must stop cleanly.
    async fn terminate(mut self, log: &Path) {
        let pid = self.0.id().to_string();
        assert!(
            std::process::Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        let deadline = Instant::now() + PATIENCE;
        let status = loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "registro project did not stop on SIGTERM:\n{}",
                read(log)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert!(status.success(), "{status}:\n{}", read(log));
    }

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.0.try_wait().unwrap()
    }
}

impl Drop for Projector {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `registro project <args>` on `url`, logging at info level as JSON lines to `log`.
fn project(url: &str, key: &str, args: &[&str], log: &Path) -> Projector {
    let child = registro()
        .env("REGISTRO_LOG", "info")
        .args([
            "--log-json",
            "project",
            "--database-url",
            url,
            "--master-key",
            key,
        ])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    Projector(child)
}

/// Every projection the binary builds, as it names them when asked for one it does not know.
fn projection_names() -> Vec<String> {
    let data = TempDir::new();
    let out = crate::support::run(&[
        "project",
        "no-such-projection",
        "--data-dir",
        data.path().to_str().unwrap(),
    ]);
    let text = stderr(&out);
    let list = text
        .split("there are: ")
        .nth(1)
        .unwrap_or_else(|| panic!("no list of projections in {text:?}"));
    let names: Vec<String> = list.trim().split(", ").map(str::to_owned).collect();
    assert!(names.iter().any(|n| n == "audit"), "{names:?}");
    names
}

/// Waits until every projection's checkpoint is `head`, `process` running meanwhile.
async fn wait_for_head(
    store: &dyn EventStore,
    names: &[String],
    head: Position,
    process: &mut Projector,
    log: &Path,
    ctx: &str,
) {
    let deadline = Instant::now() + PATIENCE;
    for name in names {
        loop {
            let checkpoint = store.projection_checkpoint(name).await.unwrap();
            if checkpoint == head {
                break;
            }
            if let Some(status) = process.exited() {
                panic!(
                    "registro project exited with {status} {ctx}:\n{}",
                    read(log)
                );
            }
            assert!(
                Instant::now() < deadline,
                "{name} did not reach the head {head} in time (at {checkpoint}) {ctx}:\n{}",
                read(log)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Waits until `process` logged `message...` for `projection`.
async fn wait_for_log(process: &mut Projector, log: &Path, projection: &str, message: &str) {
    let deadline = Instant::now() + PATIENCE;
    while !logged(log, projection, message) {
        if let Some(status) = process.exited() {
            panic!("registro project exited with {status}:\n{}", read(log));
        }
        assert!(
            Instant::now() < deadline,
            "registro project did not log {message:?} for {projection} in time:\n{}",
            read(log)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether the JSON log has a line for `projection` whose message starts with `message`.
fn logged(log: &Path, projection: &str, message: &str) -> bool {
    read(log)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .any(|line| {
            let fields = &line["fields"];
            fields["projection"] == projection
                && fields["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with(message))
        })
}

/// Waits until the audit trail has `n` entries, `process` running meanwhile.
async fn wait_for_rows(
    client: &tokio_postgres::Client,
    n: i64,
    process: &mut Projector,
    log: &Path,
) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let rows = client
            .query_one("SELECT count(*) FROM audit_entries", &[])
            .await
            .map(|r| r.get::<_, i64>(0));
        if rows.as_ref().is_ok_and(|&r| r == n) {
            return;
        }
        if let Some(status) = process.exited() {
            panic!("registro project exited with {status}:\n{}", read(log));
        }
        assert!(
            Instant::now() < deadline,
            "the audit trail did not reach {n} entries in time ({rows:?}):\n{}",
            read(log)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn read(log: &Path) -> String {
    std::fs::read_to_string(log).unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// The database.

async fn count(client: &tokio_postgres::Client, table: &str) -> i64 {
    client
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .map_or(0, |r| r.get(0))
}

/// The test's own sessions on the client's database.
async fn own_sessions(client: &tokio_postgres::Client) -> Vec<i32> {
    client
        .query(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// Waits until no session but the test's own (`ours`) is left on the client's database: those
/// of a killed process end a moment after it; returns whether any was still there.
async fn wait_for_sessions_to_end(
    client: &tokio_postgres::Client,
    ours: &[i32],
    ctx: &str,
) -> bool {
    let deadline = Instant::now() + PATIENCE;
    let mut lingered = false;
    loop {
        let sessions: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                 AND backend_type = 'client backend' AND pid <> ALL ($1)",
                &[&ours],
            )
            .await
            .unwrap()
            .get(0);
        if sessions == 0 {
            return lingered;
        }
        lingered = true;
        assert!(
            Instant::now() < deadline,
            "{sessions} sessions of a killed projector are still there {ctx}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The projections' checkpoints and the number of audit entries, read together (one statement,
/// one snapshot); none before the first run prepared the tables.
async fn settled_state(client: &tokio_postgres::Client) -> (BTreeMap<String, Position>, usize) {
    let rows = match client
        .query(
            "SELECT name, tx, id, (SELECT count(*) FROM audit_entries) \
             FROM projection_checkpoints",
            &[],
        )
        .await
    {
        Ok(rows) => rows,
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) => {
            return (BTreeMap::new(), 0);
        }
        Err(e) => panic!("{e}"),
    };
    let position = |tx: i64, id: i64| Position {
        tx: u64::try_from(tx).unwrap(),
        id: u64::try_from(id).unwrap(),
    };
    let checkpoints = rows
        .iter()
        .map(|r| (r.get(0), position(r.get(1), r.get(2))))
        .collect();
    let audit_rows = rows
        .first()
        .map_or(0, |r| usize::try_from(r.get::<_, i64>(3)).unwrap());
    (checkpoints, audit_rows)
}

/// Advisory locks held in the client's database: the projectors' leases.
async fn advisory_locks(client: &tokio_postgres::Client) -> i64 {
    client
        .query_one(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted \
             AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

/// Every event's position, in the order of the log.
async fn all_positions(store: &dyn EventStore) -> Vec<Position> {
    let mut positions = Vec::new();
    let mut after = Position::START;
    loop {
        let events = store
            .read_all(after, registro_store::MAX_PAGE)
            .await
            .unwrap();
        let Some(last) = events.last() else {
            return positions;
        };
        after = last.position;
        positions.extend(events.iter().map(|e| e.position));
    }
}

async fn wait_until_all_readable(store: &dyn EventStore, appended: usize) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let readable = all_positions(store).await.len();
        if readable == appended {
            return;
        }
        assert!(
            readable < appended && Instant::now() < deadline,
            "{readable} events are readable, {appended} were appended"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// How many events a projection whose checkpoint is `checkpoint` has applied.
fn applied_count(positions: &[Position], checkpoint: Position, name: &str, ctx: &str) -> usize {
    if checkpoint == Position::START {
        return 0;
    }
    match positions.binary_search(&checkpoint) {
        Ok(i) => i + 1,
        Err(_) => panic!("the checkpoint of {name}, {checkpoint}, is no event's position {ctx}"),
    }
}

/// Columns that say when the runtime did something, not what: left out of the comparison.
const WHEN: &[(&str, &str)] = &[
    ("projection_checkpoints", "updated_at"),
    ("projection_steps", "applied_at"),
];

/// Every table of the database's public schema, each row as text, ordered by primary key.
async fn dump(client: &tokio_postgres::Client) -> BTreeMap<String, Vec<String>> {
    let tables: Vec<String> = client
        .query(
            "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public' ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut dump = BTreeMap::new();
    for table in tables {
        let quoted = |rows: Vec<tokio_postgres::Row>| -> Vec<String> {
            rows.iter()
                .map(|r| format!("\"{}\"", r.get::<_, String>(0)))
                .collect()
        };
        let columns = quoted(
            client
                .query(
                    "SELECT attname::text FROM pg_attribute \
                     WHERE attrelid = ('public.' || quote_ident($1))::regclass \
                     AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
                    &[&table],
                )
                .await
                .unwrap()
                .into_iter()
                .filter(|r| !WHEN.contains(&(table.as_str(), r.get::<_, &str>(0))))
                .collect(),
        );
        let key = quoted(
            client
                .query(
                    "SELECT a.attname::text FROM pg_index i \
                     JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey) \
                     WHERE i.indrelid = ('public.' || quote_ident($1))::regclass AND i.indisprimary \
                     ORDER BY array_position(i.indkey::int2[], a.attnum)",
                    &[&table],
                )
                .await
                .unwrap(),
        );
        let order = key
            .iter()
            .map(String::as_str)
            .chain(["1"])
            .collect::<Vec<_>>()
            .join(", ");
        let rows = client
            .query(
                &format!(
                    "SELECT ROW({})::text FROM public.\"{table}\" ORDER BY {order}",
                    columns.join(", ")
                ),
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        dump.insert(table, rows);
    }
    dump
}

// ---------------------------------------------------------------------------------------------
// Randomness, seeded so that a failure can be replayed.

fn seed() -> u64 {
    std::env::var("REGISTRO_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap();
            now.as_secs() ^ u64::from(now.subsec_nanos())
        })
}

/// SplitMix64: small, seeded, good enough to choose moments and marks.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number below `n`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// One chance in `n`.
    fn one_in(&mut self, n: u64) -> bool {
        self.below(n) == 0
    }

    /// How long to let a projector run before killing it: spread evenly over the doublings
    /// from [`SHORTEST_MS`], so that short and long runs are equally common.
    fn delay(&mut self) -> Duration {
        let base = SHORTEST_MS << self.below(DOUBLINGS + 1);
        Duration::from_millis(base + self.below(base))
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[usize::try_from(self.below(items.len() as u64)).unwrap()]
    }
}

// ---------------------------------------------------------------------------------------------
// The workload: the first weeks of a school year in a few schools, written as the API writes
// it (the domain's events, their data as stored, sealed where the API seals).

/// Classes and students per class of each school.
const SCHOOLS: &[(usize, usize)] = &[(3, 14), (2, 16), (2, 14), (2, 12)];

/// School days of register entries.
const DAYS: i64 = 20;

const SUBJECTS: &[&str] = &["Italiano", "Matematica", "Storia", "Inglese", "Scienze"];
const FAMILY_NAMES: &[&str] = &["Rossi", "Bianchi", "Esposito", "Romano", "Colombo", "Ricci"];
const GIVEN_NAMES: &[&str] = &["Giulia", "Marco", "Sofia", "Luca", "Aurora", "Matteo"];
const TOPICS: &[&str] = &[
    "Dante, Inferno I",
    "Equazioni di primo grado",
    "La caduta dell'Impero romano",
    "Present perfect",
    "La cellula",
];

/// Appends the workload for every school at once, so that their transactions interleave in
/// the log; returns how many events were appended.
async fn workload(store: &Arc<registro_store::postgres::PgStore>, seed: u64) -> usize {
    let tasks: Vec<_> = SCHOOLS
        .iter()
        .enumerate()
        .map(|(i, &(classes, students))| {
            let store = Arc::clone(store);
            let rng = Rng(seed ^ (i as u64 + 1).wrapping_mul(0x2545_F491_4F6C_DD1D));
            tokio::spawn(async move {
                let mut school = School {
                    store: store.as_ref(),
                    id: SchoolId::new(),
                    rng,
                    appended: 0,
                    people: 0,
                };
                school.write(classes, students).await;
                school.appended
            })
        })
        .collect();
    let mut appended = 0;
    for task in tasks {
        appended += task.await.unwrap();
    }
    appended
}

struct School<'a> {
    store: &'a dyn EventStore,
    id: SchoolId,
    rng: Rng,
    appended: usize,
    people: usize,
}

struct Class {
    id: ClassId,
    students: Vec<Student>,
}

struct Student {
    id: PersonId,
    guardian: PersonId,
    grades: Vec<GradeId>,
    absences: Vec<AttendanceId>,
    notes: Vec<NoteId>,
}

impl School<'_> {
    async fn write(&mut self, classes: usize, per_class: usize) {
        let year = SchoolYear::starting(2025);
        let principal = self.register(None, Role::Principal, None).await;
        let secretary = self
            .register(Some((principal, Role::Principal)), Role::Secretary, None)
            .await;
        let office = Some((secretary, Role::Secretary));
        let mut teachers = Vec::new();
        for _ in SUBJECTS {
            teachers.push(self.register(office, Role::Teacher, None).await);
        }
        let mut register = Vec::new();
        for c in 0..classes {
            let class = ClassId::new();
            self.directory(
                office,
                vec![DirectoryEvent::ClassCreated {
                    class,
                    name: format!("{}A", c + 1),
                }],
            )
            .await;
            let assigned = teachers
                .iter()
                .zip(SUBJECTS)
                .map(|(&teacher, subject)| DirectoryEvent::TeacherAssigned {
                    teacher,
                    class,
                    subject: (*subject).to_owned(),
                })
                .collect();
            self.directory(office, assigned).await;
            let mut students = Vec::new();
            for _ in 0..per_class {
                let born = Date::from_calendar_date(2011, Month::March, 1).unwrap()
                    + time::Duration::days(i64::try_from(self.rng.below(700)).unwrap());
                // The enrolment form: the student, a guardian, the class, in one append.
                let (student, registered) = self.person(Role::Student, Some(born));
                let (guardian, guardian_registered) = self.person(Role::Guardian, None);
                self.directory(
                    office,
                    vec![
                        registered,
                        guardian_registered,
                        DirectoryEvent::StudentEnrolled { student, class },
                        DirectoryEvent::GuardianLinked { guardian, student },
                    ],
                )
                .await;
                students.push(Student {
                    id: student,
                    guardian,
                    grades: Vec::new(),
                    absences: Vec::new(),
                    notes: Vec::new(),
                });
            }
            register.push(Class {
                id: class,
                students,
            });
        }
        let first_monday = Date::from_calendar_date(2025, Month::September, 15).unwrap();
        for day in 0..DAYS {
            let date = first_monday + time::Duration::days(day / 5 * 7 + day % 5);
            for class in &mut register {
                self.school_day(class, &teachers, date, year).await;
            }
        }
    }

    /// One class's day: the lessons signed, perhaps homework, and the students' grades,
    /// absences, justifications and notes, with now and then a correction.
    async fn school_day(
        &mut self,
        class: &mut Class,
        teachers: &[PersonId],
        date: Date,
        year: SchoolYear,
    ) {
        let mut lessons = Vec::new();
        for hour in 1..=4u8 {
            let t = usize::from(hour - 1 + date.weekday().number_from_monday()) % SUBJECTS.len();
            lessons.push((teachers[t], SUBJECTS[t]));
            let topic = (*self.rng.pick(TOPICS)).to_owned();
            self.class_event(
                class.id,
                teachers[t],
                ClassEvent::LessonSigned {
                    date,
                    hour,
                    teacher: teachers[t],
                    subject: SUBJECTS[t].to_owned(),
                    topic,
                    activity: "Lezione frontale".to_owned(),
                    substitute: false,
                },
            )
            .await;
        }
        if self.rng.one_in(2) {
            let (teacher, subject) = *self.rng.pick(&lessons);
            self.class_event(
                class.id,
                teacher,
                ClassEvent::HomeworkAssigned {
                    homework: HomeworkId::new(),
                    subject: subject.to_owned(),
                    text: "Esercizi 1-10 a pagina 42".to_owned(),
                    assigned_on: date,
                    due: date + time::Duration::days(2),
                },
            )
            .await;
        }
        for i in 0..class.students.len() {
            let (teacher, subject) = *self.rng.pick(&lessons);
            let student = class.students[i].id;
            if self.rng.one_in(3) {
                let grade = GradeId::new();
                let mark = self.mark();
                let kind = *self.rng.pick(&[GradeKind::Oral, GradeKind::Written]);
                self.record(
                    student,
                    year,
                    (teacher, Role::Teacher),
                    vec![RecordEvent::GradeRecorded {
                        grade,
                        class: class.id,
                        subject: subject.to_owned(),
                        kind,
                        mark,
                        weight: Weight::ONE,
                        counted: true,
                        description: "Interrogazione".to_owned(),
                        date,
                    }],
                )
                .await;
                class.students[i].grades.push(grade);
            }
            if self.rng.one_in(12) {
                let entry = AttendanceId::new();
                let (missed, hours) = match self.rng.below(3) {
                    0 => (Missed::WholeDay, vec![1, 2, 3, 4]),
                    1 => (
                        Missed::LateEntry(time::Time::from_hms(9, 10, 0).unwrap()),
                        vec![1],
                    ),
                    _ => (
                        Missed::EarlyExit(time::Time::from_hms(11, 5, 0).unwrap()),
                        vec![4],
                    ),
                };
                let first = lessons[0].0;
                self.record(
                    student,
                    year,
                    (first, Role::Teacher),
                    vec![RecordEvent::AttendanceRecorded {
                        entry,
                        class: class.id,
                        date,
                        missed,
                        hours,
                    }],
                )
                .await;
                class.students[i].absences.push(entry);
            }
            if self.rng.one_in(30) {
                let note = NoteId::new();
                let kind = *self
                    .rng
                    .pick(&[NoteKind::Disciplinary, NoteKind::Annotation]);
                self.record(
                    student,
                    year,
                    (teacher, Role::Teacher),
                    vec![RecordEvent::NoteRecorded {
                        note,
                        kind,
                        class: class.id,
                        text: "Disturba la lezione".to_owned(),
                        date,
                    }],
                )
                .await;
                class.students[i].notes.push(note);
            }
            self.follow_up(&mut class.students[i], teacher, year).await;
        }
    }

    /// Now and then, something about an earlier entry: a justification and its decision, a
    /// cancelled absence, a corrected or annulled grade, an annulled note.
    async fn follow_up(&mut self, student: &mut Student, teacher: PersonId, year: SchoolYear) {
        let by_teacher = (teacher, Role::Teacher);
        if !student.absences.is_empty() && self.rng.one_in(3) {
            let entry = student.absences.remove(0);
            if self.rng.one_in(6) {
                let reason = "Inserita per errore".to_owned();
                let events = vec![RecordEvent::AttendanceCancelled { entry, reason }];
                self.record(student.id, year, by_teacher, events).await;
                return;
            }
            let category = *self.rng.pick(&[
                ReasonCategory::Health,
                ReasonCategory::Family,
                ReasonCategory::Transport,
            ]);
            let submitted = RecordEvent::JustificationSubmitted {
                entry,
                justifier: Justifier::Guardian,
                reason: Sealable::Open(Reason {
                    category,
                    text: "Visita medica".to_owned(),
                }),
            };
            let by_guardian = (student.guardian, Role::Guardian);
            self.record(student.id, year, by_guardian, vec![submitted])
                .await;
            let decided = if self.rng.one_in(8) {
                RecordEvent::JustificationRejected {
                    entry,
                    reason: Sealable::Open("Manca la firma".to_owned()),
                }
            } else {
                RecordEvent::JustificationAccepted {
                    entry,
                    reason: Sealable::Open(String::new()),
                }
            };
            self.record(student.id, year, by_teacher, vec![decided])
                .await;
        }
        if !student.grades.is_empty() && self.rng.one_in(15) {
            let grade = *self.rng.pick(&student.grades);
            let event = if self.rng.one_in(3) {
                student.grades.retain(|g| *g != grade);
                RecordEvent::GradeAnnulled {
                    grade,
                    reason: "Prova non valida".to_owned(),
                }
            } else {
                RecordEvent::GradeCorrected {
                    grade,
                    mark: self.mark(),
                    reason: "Errore di trascrizione".to_owned(),
                }
            };
            self.record(student.id, year, by_teacher, vec![event]).await;
        }
        if !student.notes.is_empty() && self.rng.one_in(10) {
            let note = student.notes.remove(0);
            let reason = "Scritta per errore".to_owned();
            let events = vec![RecordEvent::NoteAnnulled { note, reason }];
            self.record(student.id, year, by_teacher, events).await;
        }
    }

    /// A numeric grade from 4 to 10 in quarters.
    fn mark(&mut self) -> Mark {
        let hundredths = 400 + 25 * u16::try_from(self.rng.below(25)).unwrap();
        Mark::Numeric(GradeValue::from_hundredths(hundredths).unwrap())
    }

    /// Registers a person by `by` (the software itself when `None`); returns their id.
    async fn register(
        &mut self,
        by: Option<(PersonId, Role)>,
        role: Role,
        birth_date: Option<Date>,
    ) -> PersonId {
        let (person, registered) = self.person(role, birth_date);
        self.directory(by, vec![registered]).await;
        person
    }

    /// A new person of the school and the event that registers them.
    fn person(&mut self, role: Role, birth_date: Option<Date>) -> (PersonId, DirectoryEvent) {
        let person = PersonId::new();
        let registered = DirectoryEvent::PersonRegistered {
            person,
            fiscal_code: self.fiscal_code(),
            family_name: (*self.rng.pick(FAMILY_NAMES)).to_owned(),
            given_name: (*self.rng.pick(GIVEN_NAMES)).to_owned(),
            role,
            birth_date,
        };
        (person, registered)
    }

    /// A synthetic fiscal code (surname XXX, name YYY, born in "country" Z999, which does not
    /// exist), a different one for each person of the school.
    fn fiscal_code(&mut self) -> FiscalCode {
        let n = self.people;
        self.people += 1;
        let month = b"ABCDEHLMPRST"[n / 100 % 12] as char;
        FiscalCode::with_check_character(&format!(
            "XXXYYY{:02}{month}{:02}Z999",
            n % 100,
            1 + n / 1200 % 28
        ))
        .unwrap()
    }

    async fn directory(&mut self, by: Option<(PersonId, Role)>, events: Vec<DirectoryEvent>) {
        let events = events
            .iter()
            .map(|e| new_event(e.type_name(), e.data()))
            .collect();
        self.append(directory::STREAM, by, events).await;
    }

    async fn class_event(&mut self, class: ClassId, teacher: PersonId, event: ClassEvent) {
        let events = vec![new_event(event.type_name(), event.data())];
        self.append(
            &class_register::stream(class),
            Some((teacher, Role::Teacher)),
            events,
        )
        .await;
    }

    /// Appends to the student's record, sealing what the API seals with the key of the
    /// student's year.
    async fn record(
        &mut self,
        student: PersonId,
        year: SchoolYear,
        by: (PersonId, Role),
        events: Vec<RecordEvent>,
    ) {
        let subject = record::sealing_subject(student, year);
        let events = events
            .iter()
            .map(|e| {
                let new = new_event(e.type_name(), e.data());
                match e.sealed_field() {
                    Some(pointer) => new.seal(pointer, subject),
                    None => new,
                }
            })
            .collect();
        self.append(&record::stream(student, year), Some(by), events)
            .await;
    }

    async fn append(&mut self, stream: &str, by: Option<(PersonId, Role)>, events: Vec<NewEvent>) {
        self.appended += events.len();
        self.store
            .append(AppendRequest {
                guards: Vec::new(),
                school: self.id,
                stream: StreamId::parse(stream).unwrap(),
                expected: ExpectedVersion::Any,
                events,
                metadata: by.map_or_else(CommandMetadata::system, |(actor, role)| {
                    CommandMetadata::by(actor, role)
                }),
                idempotency_key: None,
                command_digest: None,
            })
            .await
            .unwrap();
    }
}

fn new_event(name: &str, data: serde_json::Value) -> NewEvent {
    NewEvent::new(
        EventType::parse(name).unwrap(),
        data,
        OffsetDateTime::now_utc(),
    )
}
