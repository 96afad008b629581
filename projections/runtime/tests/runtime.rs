//! The projector runtime on SQLite and on PostgreSQL: a poison event stops its projector at that
//! event, with the events before it applied and nothing skipped; a second instance waits as a
//! standby and takes over when the active one stops; a rebuild swaps in the rows the live
//! projector built, and a poison event stops it with the live view untouched.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::sync::Arc;
use std::time::Duration;

use registro_domain::SchoolId;
use registro_projector::{Progress, Projection, Projector, ProjectorError, Stage};
use registro_store::{
    AppendRequest, Cell, CellType, CommandMetadata, EventStore, EventType, ExpectedVersion,
    NewEvent, Position, ProjectionSchema, RecordedEvent, RowOp, Sealed, StoreError, StreamId,
};
use registro_testkit::pg::TestDb;
use time::OffsetDateTime;

/// Records each school's events by type in its table; `Seen::STRICT` refuses any event of
/// type `Poison`, `Seen::TOLERANT` records it like any other.
#[derive(Debug)]
struct Seen {
    name: &'static str,
    table: &'static str,
    tables: &'static [&'static str],
    postgres: &'static [&'static str],
    sqlite: &'static [&'static str],
    refuses_poison: bool,
}

macro_rules! ddl {
    ($table:literal) => {
        (
            &[concat!(
                "CREATE TABLE ", $table, " (school_id uuid NOT NULL, school_seq bigint NOT NULL, ",
                "event_type text NOT NULL, PRIMARY KEY (school_id, school_seq)); ",
                "ALTER TABLE ", $table, " ENABLE ROW LEVEL SECURITY; ",
                "ALTER TABLE ", $table, " FORCE ROW LEVEL SECURITY; ",
                "CREATE POLICY school_isolation ON ", $table,
                " USING (school_id = (SELECT registro_school()) OR (SELECT registro_all_schools()))",
                " WITH CHECK (school_id = (SELECT registro_school()) OR (SELECT registro_all_schools()))"
            )],
            &[concat!(
                "CREATE TABLE ", $table, " (school_id TEXT NOT NULL, school_seq INTEGER NOT NULL, ",
                "event_type TEXT NOT NULL, PRIMARY KEY (school_id, school_seq)) STRICT"
            )],
        )
    };
}

impl Seen {
    const STRICT: Seen = Seen {
        name: "seen",
        table: "seen_events",
        tables: &["seen_events"],
        postgres: ddl!("seen_events").0,
        sqlite: ddl!("seen_events").1,
        refuses_poison: true,
    };
    /// `STRICT` once fixed: the same projection, tables and checkpoint, that now applies
    /// every event.
    const FIXED: Seen = Seen {
        refuses_poison: false,
        ..Seen::STRICT
    };
    const TOLERANT: Seen = Seen {
        name: "tolerant",
        table: "tolerant_events",
        tables: &["tolerant_events"],
        postgres: ddl!("tolerant_events").0,
        sqlite: ddl!("tolerant_events").1,
        refuses_poison: false,
    };
}

impl Projection for Seen {
    fn schema(&self) -> ProjectionSchema {
        ProjectionSchema {
            name: self.name,
            tables: self.tables,
            postgres: self.postgres,
            sqlite: self.sqlite,
        }
    }

    fn apply(&self, event: &RecordedEvent) -> anyhow::Result<Vec<RowOp>> {
        anyhow::ensure!(
            !(self.refuses_poison && event.event_type.as_str() == "Poison"),
            "a poison event"
        );
        Ok(vec![RowOp::Upsert {
            table: self.table,
            key: vec![
                ("school_id", Cell::Uuid(*event.school_id.as_uuid())),
                ("school_seq", Cell::Int(i64::try_from(event.school_seq)?)),
            ],
            values: vec![("event_type", Cell::Text(event.event_type.as_str().into()))],
        }])
    }
}

async fn append(store: &dyn EventStore, school: SchoolId, event_type: &str) {
    store
        .append(AppendRequest {
            guards: Vec::new(),
            school,
            stream: StreamId::parse("things").unwrap(),
            expected: ExpectedVersion::Any,
            events: vec![NewEvent::new(
                EventType::parse(event_type).unwrap(),
                serde_json::json!({}),
                OffsetDateTime::now_utc(),
            )],
            metadata: CommandMetadata::system(),
            idempotency_key: None,
            command_digest: None,
        })
        .await
        .unwrap();
}

async fn seen(store: &dyn EventStore, school: SchoolId) -> Vec<String> {
    seen_in(store, school, "seen_events").await
}

async fn seen_in(store: &dyn EventStore, school: SchoolId, table: &str) -> Vec<String> {
    let sql = format!("SELECT event_type FROM {table} WHERE school_id = $1 ORDER BY school_seq");
    store
        .query_projection(
            school,
            &sql,
            &[Cell::Uuid(*school.as_uuid())],
            &[CellType::Text],
        )
        .await
        .unwrap()
        .into_iter()
        .map(|r| match &r[0] {
            Cell::Text(t) => t.clone(),
            other => panic!("{other:?}"),
        })
        .collect()
}

async fn a_poison_event_stops_its_projector_there_and_is_never_skipped(store: Arc<dyn EventStore>) {
    let school = SchoolId::new();
    let s = store.as_ref();
    for t in ["A", "B", "Poison", "C"] {
        append(s, school, t).await;
    }
    let poison = s
        .read_school(school, 3, 1, Sealed::Keep)
        .await
        .unwrap()
        .remove(0);
    let projector = Projector::new(Arc::clone(&store), Arc::new(Seen::STRICT));
    projector.prepare().await.unwrap();
    let tolerant = Projector::new(Arc::clone(&store), Arc::new(Seen::TOLERANT));
    tolerant.prepare().await.unwrap();
    for _ in 0..2 {
        // Bounded: on PostgreSQL events reach subscribers once older transactions on the
        // server have ended (ADR 0003).
        let mut stopped = None;
        for _ in 0..200 {
            match projector.catch_up().await {
                Err(ProjectorError::Poison {
                    school_seq,
                    event_type,
                    ..
                }) => {
                    stopped = Some((school_seq, event_type));
                    break;
                }
                Ok(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(stopped, Some((3, "Poison".to_owned())));
        // The events before it are applied; it and those after are not.
        assert_eq!(seen(s, school).await, ["A", "B"]);
        assert!(projector.status().stopped.is_some());
        // The stop is in the database, for every process to see.
        let lag = store.projection_lag("seen").await.unwrap();
        let stop = lag.stopped.clone().expect("the stop is recorded");
        assert_eq!(stop.at, poison.position);
        assert!(stop.reason.contains("a poison event"), "{stop:?}");
        assert_eq!(lag.events, 2, "the poison event and the one after it wait");
    }
    // Another projection is not held up by it.
    for _ in 0..200 {
        tolerant.catch_up().await.unwrap();
        if seen_in(s, school, "tolerant_events").await.len() == 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        seen_in(s, school, "tolerant_events").await,
        ["A", "B", "Poison", "C"]
    );
    // Fixed, it applies the poison event and what follows; the stop is over.
    let fixed = Projector::new(Arc::clone(&store), Arc::new(Seen::FIXED));
    fixed.prepare().await.unwrap();
    fixed.catch_up().await.unwrap();
    assert_eq!(seen(s, school).await, ["A", "B", "Poison", "C"]);
    let lag = store.projection_lag("seen").await.unwrap();
    assert_eq!((lag.stopped, lag.events), (None, 0));
}

async fn a_standby_takes_over_when_the_active_instance_stops(store: Arc<dyn EventStore>) {
    let school = SchoolId::new();
    let s = store.as_ref();
    append(s, school, "A").await;
    let first = Projector::new(Arc::clone(&store), Arc::new(Seen::STRICT))
        .with_batches(100, Duration::from_millis(20));
    first.prepare().await.unwrap();
    let second = Projector::new(Arc::clone(&store), Arc::new(Seen::STRICT))
        .with_batches(100, Duration::from_millis(20));
    let (stop_first, first_stops) = tokio::sync::oneshot::channel::<()>();
    let (stop_second, second_stops) = tokio::sync::oneshot::channel::<()>();
    let running_first = {
        let p = first.clone();
        tokio::spawn(async move {
            p.run(async {
                let _ = first_stops.await;
            })
            .await
        })
    };
    wait_for(|| first.status().active).await;
    let running_second = {
        let p = second.clone();
        tokio::spawn(async move {
            p.run(async {
                let _ = second_stops.await;
            })
            .await
        })
    };
    wait_until(s, school, &["A"]).await;
    // The second waits while the first is active.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!second.status().active);
    append(s, school, "B").await;
    wait_until(s, school, &["A", "B"]).await;
    stop_first.send(()).unwrap();
    running_first.await.unwrap().unwrap();
    wait_for(|| second.status().active).await;
    append(s, school, "C").await;
    wait_until(s, school, &["A", "B", "C"]).await;
    stop_second.send(()).unwrap();
    running_second.await.unwrap().unwrap();
}

/// Waits, bounded, until `done` holds.
async fn wait_for(done: impl Fn() -> bool) {
    for _ in 0..500 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("not reached in 5 s");
}

/// Waits, bounded, until the projection shows `expected` for `school`.
async fn wait_until(store: &dyn EventStore, school: SchoolId, expected: &[&str]) {
    for _ in 0..500 {
        if seen(store, school).await == expected {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!(
        "{:?} not reached: {:?}",
        expected,
        seen(store, school).await
    );
}

/// Every row of a school in a projection's table: (school_seq, event_type).
async fn rows_of(store: &dyn EventStore, school: SchoolId, table: &str) -> Vec<(i64, String)> {
    let sql = format!(
        "SELECT school_seq, event_type FROM {table} WHERE school_id = $1 ORDER BY school_seq"
    );
    store
        .query_projection(
            school,
            &sql,
            &[Cell::Uuid(*school.as_uuid())],
            &[CellType::Int, CellType::Text],
        )
        .await
        .unwrap()
        .into_iter()
        .map(|r| match &r[..] {
            [Cell::Int(seq), Cell::Text(t)] => (*seq, t.clone()),
            other => panic!("{other:?}"),
        })
        .collect()
}

/// Catches the projector up until its table holds `n` rows for `school` (bounded: on
/// PostgreSQL events reach subscribers once older transactions on the server have ended).
async fn catch_up_to(projector: &Projector, store: &dyn EventStore, school: SchoolId, n: usize) {
    for _ in 0..200 {
        projector.catch_up().await.unwrap();
        if rows_of(store, school, "tolerant_events").await.len() == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{n} rows not reached");
}

async fn a_rebuild_swaps_in_the_rows_the_live_projector_built(
    store: Arc<dyn EventStore>,
    owner: Arc<dyn EventStore>,
) {
    let (a, b) = (SchoolId::new(), SchoolId::new());
    let s = store.as_ref();
    for t in ["A", "B", "Poison", "C"] {
        append(s, a, t).await;
    }
    for t in ["D", "E", "F"] {
        append(s, b, t).await;
    }
    let live = Projector::new(Arc::clone(&store), Arc::new(Seen::TOLERANT));
    live.prepare().await.unwrap();
    catch_up_to(&live, s, a, 4).await;
    catch_up_to(&live, s, b, 3).await;
    let checkpoint = store.projection_checkpoint("tolerant").await.unwrap();
    let before = (
        rows_of(s, a, "tolerant_events").await,
        rows_of(s, b, "tolerant_events").await,
    );
    assert_eq!(before.0.len() + before.1.len(), 7);
    // A damaged view: a row lost, a row that no event made.
    store
        .commit_projection(
            "tolerant",
            checkpoint,
            checkpoint,
            &[
                RowOp::Delete {
                    table: "tolerant_events",
                    key: vec![
                        ("school_id", Cell::Uuid(*a.as_uuid())),
                        ("school_seq", Cell::Int(2)),
                    ],
                },
                RowOp::Upsert {
                    table: "tolerant_events",
                    key: vec![
                        ("school_id", Cell::Uuid(*b.as_uuid())),
                        ("school_seq", Cell::Int(99)),
                    ],
                    values: vec![("event_type", Cell::Text("Bogus".into()))],
                },
            ],
        )
        .await
        .unwrap();
    assert_ne!(rows_of(s, a, "tolerant_events").await, before.0);

    // Batches of three: seven events take three batches.
    let rebuilder = Projector::new(Arc::clone(&owner), Arc::new(Seen::TOLERANT))
        .with_batches(3, Duration::from_millis(20));
    let mut reports: Vec<Progress> = Vec::new();
    let rebuilt = rebuilder.rebuild(|p| reports.push(*p)).await.unwrap();
    assert_eq!(rebuilt.events, 7);
    assert_eq!(rebuilt.position, checkpoint);
    assert_eq!(
        (
            rows_of(s, a, "tolerant_events").await,
            rows_of(s, b, "tolerant_events").await,
        ),
        before,
        "the same rows as the live projector's, read by the live store's role"
    );
    assert_eq!(
        store.projection_checkpoint("tolerant").await.unwrap(),
        checkpoint
    );

    let dones: Vec<(Stage, u64)> = reports.iter().map(|p| (p.stage, p.done)).collect();
    assert_eq!(
        dones,
        [
            (Stage::Building, 0),
            (Stage::Building, 3),
            (Stage::Building, 6),
            (Stage::Building, 7),
            (Stage::Swapping, 7),
            (Stage::Done, 7),
        ]
    );
    assert!(reports.iter().all(|p| p.total == 7), "{reports:?}");
    let last = reports.last().unwrap();
    assert_eq!(last.permille(), 1000);
    assert_eq!(last.remaining(), Some(Duration::ZERO));
    assert_eq!(reports[0].remaining(), None);
    assert!(reports.windows(2).all(|w| w[0].elapsed <= w[1].elapsed));

    // The live projector goes on from the rebuild's checkpoint.
    append(s, a, "G").await;
    catch_up_to(&live, s, a, 5).await;
    assert_eq!(
        rows_of(s, a, "tolerant_events").await.last().unwrap(),
        &(5, "G".to_owned())
    );

    // One rebuild of a projection at a time.
    let held = owner
        .try_lock_projection("tolerant_rebuild")
        .await
        .unwrap()
        .unwrap();
    let err = rebuilder.rebuild(|_| {}).await.unwrap_err();
    assert!(
        matches!(err, ProjectorError::RebuildRunning { name: "tolerant" }),
        "{err}"
    );
    drop(held);
}

async fn a_poison_event_stops_a_rebuild_and_leaves_the_live_view_untouched(
    store: Arc<dyn EventStore>,
    owner: Arc<dyn EventStore>,
) {
    let school = SchoolId::new();
    let s = store.as_ref();
    for t in ["A", "B", "Poison", "C"] {
        append(s, school, t).await;
    }
    let live = Projector::new(Arc::clone(&store), Arc::new(Seen::STRICT));
    live.prepare().await.unwrap();
    let mut stopped = None;
    for _ in 0..200 {
        match live.catch_up().await {
            Err(e @ ProjectorError::Poison { .. }) => {
                stopped = Some(e.to_string());
                break;
            }
            Ok(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(e) => panic!("{e}"),
        }
    }
    let stopped = stopped.expect("the live projector stops at the poison event");
    let checkpoint = store.projection_checkpoint("seen").await.unwrap();
    assert_eq!(seen(s, school).await, ["A", "B"]);

    let rebuilder = Projector::new(Arc::clone(&owner), Arc::new(Seen::STRICT))
        .with_batches(2, Duration::from_millis(20));
    let mut reports = Vec::new();
    let err = rebuilder.rebuild(|p| reports.push(*p)).await.unwrap_err();
    assert!(
        matches!(err, ProjectorError::Poison { school_seq: 3, .. }),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        stopped,
        "the same stop as the live projector's"
    );
    assert!(reports.iter().all(|p| p.stage == Stage::Building));
    assert_eq!(
        seen(s, school).await,
        ["A", "B"],
        "the live view is untouched"
    );
    assert_eq!(
        store.projection_checkpoint("seen").await.unwrap(),
        checkpoint
    );
    // Its build target was discarded: there is nothing to swap in.
    let err = owner
        .swap_rebuild(&Seen::STRICT.schema(), Position::START)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Internal(_)), "{err:?}");
    assert_eq!(seen(s, school).await, ["A", "B"]);
}

async fn a_projector_running_through_a_rebuild_loses_no_event(
    store: Arc<dyn EventStore>,
    owner: Arc<dyn EventStore>,
) {
    let school = SchoolId::new();
    let s = store.as_ref();
    for _ in 0..20 {
        append(s, school, "Before").await;
    }
    let live = Projector::new(Arc::clone(&store), Arc::new(Seen::TOLERANT))
        .with_batches(5, Duration::from_millis(10));
    live.prepare().await.unwrap();
    let (stop, stops) = tokio::sync::oneshot::channel::<()>();
    let running = {
        let p = live.clone();
        tokio::spawn(async move {
            p.run(async {
                let _ = stops.await;
            })
            .await
        })
    };
    let appending = {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            for _ in 0..20 {
                append(store.as_ref(), school, "During").await;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let rebuilder = Projector::new(Arc::clone(&owner), Arc::new(Seen::TOLERANT))
        .with_batches(4, Duration::from_millis(10));
    rebuilder.rebuild(|_| {}).await.unwrap();
    appending.await.unwrap();
    for _ in 0..500 {
        if rows_of(s, school, "tolerant_events").await.len() == 40 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let rows = rows_of(s, school, "tolerant_events").await;
    let expected: Vec<(i64, String)> = (1..=40)
        .map(|seq| (seq, if seq <= 20 { "Before" } else { "During" }.to_owned()))
        .collect();
    assert_eq!(rows, expected);
    stop.send(()).unwrap();
    running.await.unwrap().unwrap();
}

/// A PostgreSQL store as the ordinary role row-level security holds, with the test
/// projections' tables made by the administrator (the ordinary test role may not create
/// tables) and granted to it.
async fn postgres() -> (TestDb, Arc<dyn EventStore>) {
    let db = TestDb::new().await;
    let admin = db.store().await;
    for p in [Seen::STRICT, Seen::TOLERANT] {
        admin.prepare_projection(&p.schema()).await.unwrap();
        db.client()
            .await
            .batch_execute(&format!(
                "GRANT SELECT, INSERT, UPDATE, DELETE ON {} TO {}",
                p.table,
                registro_testkit::pg::APP_ROLE
            ))
            .await
            .unwrap();
    }
    let store = db.app_store_with_key(registro_testkit::master_key()).await;
    (db, Arc::new(store))
}

/// A PostgreSQL store as in [`postgres`], and the administrator's, which owns the tables and
/// may create the rebuild's schema.
async fn postgres_with_owner() -> (TestDb, Arc<dyn EventStore>, Arc<dyn EventStore>) {
    let (db, store) = postgres().await;
    let owner = Arc::new(db.store().await);
    (db, store, owner)
}

#[tokio::test]
async fn sqlite_a_rebuild_swaps_in_the_rows_the_live_projector_built() {
    let (_dir, store) = registro_testkit::sqlite_store().await;
    a_rebuild_swaps_in_the_rows_the_live_projector_built(Arc::clone(&store), store).await;
}

#[tokio::test]
async fn postgres_a_rebuild_swaps_in_the_rows_the_live_projector_built() {
    let (_db, store, owner) = postgres_with_owner().await;
    a_rebuild_swaps_in_the_rows_the_live_projector_built(store, owner).await;
}

#[tokio::test]
async fn sqlite_a_poison_event_stops_a_rebuild_and_leaves_the_live_view_untouched() {
    let (_dir, store) = registro_testkit::sqlite_store().await;
    a_poison_event_stops_a_rebuild_and_leaves_the_live_view_untouched(Arc::clone(&store), store)
        .await;
}

#[tokio::test]
async fn postgres_a_poison_event_stops_a_rebuild_and_leaves_the_live_view_untouched() {
    let (_db, store, owner) = postgres_with_owner().await;
    a_poison_event_stops_a_rebuild_and_leaves_the_live_view_untouched(store, owner).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_projector_running_through_a_rebuild_loses_no_event() {
    let (_dir, store) = registro_testkit::sqlite_store().await;
    a_projector_running_through_a_rebuild_loses_no_event(Arc::clone(&store), store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_projector_running_through_a_rebuild_loses_no_event() {
    let (_db, store, owner) = postgres_with_owner().await;
    a_projector_running_through_a_rebuild_loses_no_event(store, owner).await;
}

#[tokio::test]
async fn sqlite_a_poison_event_stops_its_projector_there_and_is_never_skipped() {
    let (_dir, store) = registro_testkit::sqlite_store().await;
    a_poison_event_stops_its_projector_there_and_is_never_skipped(store).await;
}

#[tokio::test]
async fn postgres_a_poison_event_stops_its_projector_there_and_is_never_skipped() {
    let (_db, store) = postgres().await;
    a_poison_event_stops_its_projector_there_and_is_never_skipped(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_standby_takes_over_when_the_active_instance_stops() {
    let (_dir, store) = registro_testkit::sqlite_store().await;
    a_standby_takes_over_when_the_active_instance_stops(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_standby_takes_over_when_the_active_instance_stops() {
    let (_db, store) = postgres().await;
    a_standby_takes_over_when_the_active_instance_stops(store).await;
}
