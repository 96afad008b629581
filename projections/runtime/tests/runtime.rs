//! The projector runtime on SQLite and on PostgreSQL: a poison event stops its projector at that
//! event, with the events before it applied and nothing skipped; a second instance waits as a
//! standby and takes over when the active one stops.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::sync::Arc;
use std::time::Duration;

use registro_domain::SchoolId;
use registro_projector::{Projection, Projector, ProjectorError};
use registro_store::sqlite::SqliteStore;
use registro_store::{
    AppendRequest, Cell, CellType, CommandMetadata, EventStore, EventType, ExpectedVersion,
    NewEvent, ProjectionSchema, RecordedEvent, RowOp, Sealed, StreamId,
};
use registro_testkit::TempDir;
use registro_testkit::pg::TestDb;
use time::OffsetDateTime;

/// Records each school's events by type in its table; `Seen::STRICT` refuses any event of
/// type `Poison`, `Seen::TOLERANT` records it like any other.
#[derive(Debug)]
struct Seen {
    name: &'static str,
    table: &'static str,
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
        postgres: ddl!("tolerant_events").0,
        sqlite: ddl!("tolerant_events").1,
        refuses_poison: false,
    };
}

impl Projection for Seen {
    fn schema(&self) -> ProjectionSchema {
        ProjectionSchema {
            name: self.name,
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

async fn sqlite() -> (TempDir, Arc<dyn EventStore>) {
    let dir = TempDir::new();
    let store = SqliteStore::open(
        &dir.path().join("registro.db"),
        registro_testkit::master_key(),
    )
    .await
    .unwrap();
    store.migrate().await.unwrap();
    (dir, Arc::new(store))
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

#[tokio::test]
async fn sqlite_a_poison_event_stops_its_projector_there_and_is_never_skipped() {
    let (_dir, store) = sqlite().await;
    a_poison_event_stops_its_projector_there_and_is_never_skipped(store).await;
}

#[tokio::test]
async fn postgres_a_poison_event_stops_its_projector_there_and_is_never_skipped() {
    let (_db, store) = postgres().await;
    a_poison_event_stops_its_projector_there_and_is_never_skipped(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_standby_takes_over_when_the_active_instance_stops() {
    let (_dir, store) = sqlite().await;
    a_standby_takes_over_when_the_active_instance_stops(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_standby_takes_over_when_the_active_instance_stops() {
    let (_db, store) = postgres().await;
    a_standby_takes_over_when_the_active_instance_stops(store).await;
}
