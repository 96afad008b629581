//! `registro rebuild audit` against a populated PostgreSQL database and a populated embedded
//! SQLite file: the trail, damaged by hand first, is rebuilt from the events and swapped in
//! identical to what the live projector built; the output shows the progress and a summary;
//! the build target is gone afterwards, and on PostgreSQL the ordinary role still reads the
//! tables (their grants were kept).

use std::sync::Arc;
use std::time::{Duration, Instant};

use registro_domain::{PersonId, Role, SchoolId};
use registro_projection_audit::AuditTrail;
use registro_projector::Projector;
use registro_store::sqlite::SqliteStore;
use registro_store::{
    AppendRequest, CommandMetadata, EventStore, EventType, ExpectedVersion, MasterKey, NewEvent,
    Position, StreamId,
};
use registro_testkit::TempDir;
use registro_testkit::pg::TestDb;
use serde_json::json;
use time::OffsetDateTime;

use crate::support::{PATIENCE, run, sqlite_file, stderr, stdout};

/// The audit trail's tables, each with its key, the order its rows are compared in.
const TABLES: [(&str, &str); 2] = [
    ("audit_entries", "school_id, school_seq"),
    ("audit_subjects", "school_id, student, school_seq"),
];

/// How many events the database holds: more than one batch of the projector (1000).
const EVENTS: u64 = 2_400;

/// Two schools' events, 40 to an append: grades in students' streams, and reads of two
/// students' data in the access log, so that both tables of the trail fill.
async fn populate(store: &dyn EventStore) -> [SchoolId; 2] {
    let schools = [SchoolId::new(), SchoolId::new()];
    let teacher = PersonId::new();
    let per_append = 40;
    for round in 0..EVENTS / per_append {
        let school = schools[usize::from(round % 2 == 1)];
        let (x, y) = (PersonId::new(), PersonId::new());
        let (stream, event_type, data) = if round % 3 == 0 {
            (
                "access-log".to_owned(),
                "StudentDataRead",
                json!({"students": [x, y], "view": "student.grades", "request_id": "r"}),
            )
        } else {
            (
                format!("student-{x}-2025"),
                "GradeRecorded",
                json!({"grade": PersonId::new(), "subject": "Matematica"}),
            )
        };
        let events = (0..per_append)
            .map(|_| {
                NewEvent::new(
                    EventType::parse(event_type).unwrap(),
                    data.clone(),
                    OffsetDateTime::now_utc(),
                )
            })
            .collect();
        store
            .append(AppendRequest {
                guards: Vec::new(),
                school,
                stream: StreamId::parse(stream).unwrap(),
                expected: ExpectedVersion::Any,
                events,
                metadata: CommandMetadata::by(teacher, Role::Teacher),
                idempotency_key: None,
                command_digest: None,
            })
            .await
            .unwrap();
    }
    schools
}

/// Builds the live trail with its projector until it has every event, and returns the
/// checkpoint. On PostgreSQL events reach subscribers once older transactions on the server
/// have ended (ADR 0003): the wait is bounded.
async fn project_everything(store: Arc<dyn EventStore>) -> Position {
    let projector = Projector::new(Arc::clone(&store), Arc::new(AuditTrail));
    projector.prepare().await.unwrap();
    let deadline = Instant::now() + PATIENCE;
    loop {
        projector.catch_up().await.unwrap();
        if store.count_events_after(Position::START).await.unwrap() == EVENTS
            && store
                .count_events_after(store.projection_checkpoint("audit").await.unwrap())
                .await
                .unwrap()
                == 0
        {
            return store.projection_checkpoint("audit").await.unwrap();
        }
        assert!(Instant::now() < deadline, "the trail did not fill in time");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every row of the trail's tables on PostgreSQL, as text, ordered by key.
async fn dump_postgres(db: &TestDb) -> Vec<Vec<String>> {
    let client = db.client().await;
    let mut tables = Vec::new();
    for (table, key) in TABLES {
        let rows = client
            .query(
                &format!("SELECT t::text FROM {table} t ORDER BY {key}"),
                &[],
            )
            .await
            .unwrap();
        tables.push(rows.iter().map(|r| r.get(0)).collect());
    }
    tables
}

/// Every row of the trail's tables in an SQLite file, each value as read, ordered by key.
fn dump_sqlite(data_dir: &std::path::Path) -> Vec<Vec<String>> {
    let conn = rusqlite::Connection::open(sqlite_file(data_dir)).unwrap();
    TABLES
        .iter()
        .map(|(table, key)| {
            let mut stmt = conn
                .prepare(&format!("SELECT * FROM {table} ORDER BY {key}"))
                .unwrap();
            let columns = stmt.column_count();
            stmt.query_map([], |row| {
                Ok((0..columns)
                    .map(|i| format!("{:?}", row.get_ref(i).unwrap()))
                    .collect::<Vec<_>>()
                    .join("|"))
            })
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap()
        })
        .collect()
}

/// Damages the live trail as a bug (or a hand) could: a summary changed, a student lost.
const DAMAGE: &str = "UPDATE audit_entries SET summary = 'damaged' WHERE school_seq = 1; \
    DELETE FROM audit_subjects WHERE school_seq = 2;";

/// What `registro rebuild audit` prints for `EVENTS` events when its standard error is not a
/// terminal: plain progress lines, then the summary.
fn assert_reported(out: &std::process::Output, checkpoint: Position) {
    let (err, out_text) = (stderr(out), stdout(out));
    assert!(out.status.success(), "{err}");
    for line in [
        format!("rebuild audit: 0/{EVENTS} events (0.0%), starting"),
        format!("rebuild audit: {EVENTS}/{EVENTS} events (100.0%), swapping the new rows in"),
        format!("rebuild audit: {EVENTS}/{EVENTS} events (100.0%), swapped in after "),
    ] {
        assert!(err.contains(&line), "{line:?} not in:\n{err}");
    }
    assert!(!err.contains('\r'), "no redrawn bar off a terminal:\n{err}");
    assert!(
        out_text.starts_with(&format!("rebuilt audit: {EVENTS} events in ")),
        "{out_text}"
    );
    assert!(
        out_text
            .trim_end()
            .ends_with(&format!("checkpoint {checkpoint}")),
        "{out_text}"
    );
}

#[tokio::test]
async fn rebuild_audit_swaps_in_an_identical_trail_on_postgres() {
    let db = TestDb::new().await;
    let key = MasterKey::generate();
    let store: Arc<dyn EventStore> = Arc::new(db.store_with_key(key.clone()).await);
    let [school, _] = populate(store.as_ref()).await;
    let checkpoint = project_everything(Arc::clone(&store)).await;
    // The ordinary role, granted the tables as they are now (the trail's included).
    let app = db.app_client().await;
    let original = dump_postgres(&db).await;
    assert_eq!(original[0].len(), usize::try_from(EVENTS).unwrap());
    assert!(!original[1].is_empty());
    db.client().await.batch_execute(DAMAGE).await.unwrap();
    assert_ne!(dump_postgres(&db).await, original);

    let out = run(&[
        "rebuild",
        "audit",
        "--database-url",
        db.url(),
        "--master-key",
        &key.to_base64(),
    ]);
    assert_reported(&out, checkpoint);
    assert_eq!(dump_postgres(&db).await, original, "an identical trail");
    assert_eq!(
        store.projection_checkpoint("audit").await.unwrap(),
        checkpoint
    );
    let left: i64 = db
        .client()
        .await
        .query_one(
            "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'registro_rebuild%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0, "the build schema is dropped");
    // The ordinary role still reads the trail, one school at a time.
    app.batch_execute(&format!("SET registro.school = '{school}'"))
        .await
        .unwrap();
    let seen: i64 = app
        .query_one("SELECT count(*) FROM audit_entries", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(seen, i64::try_from(EVENTS / 2).unwrap());
}

#[tokio::test]
async fn rebuild_audit_swaps_in_an_identical_trail_in_embedded_mode() {
    let data = TempDir::new();
    let key = MasterKey::generate();
    let store = SqliteStore::open(&sqlite_file(data.path()), key.clone())
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let store: Arc<dyn EventStore> = Arc::new(store);
    populate(store.as_ref()).await;
    let checkpoint = project_everything(Arc::clone(&store)).await;
    let original = dump_sqlite(data.path());
    assert_eq!(original[0].len(), usize::try_from(EVENTS).unwrap());
    assert!(!original[1].is_empty());
    rusqlite::Connection::open(sqlite_file(data.path()))
        .unwrap()
        .execute_batch(DAMAGE)
        .unwrap();
    assert_ne!(dump_sqlite(data.path()), original);

    let out = run(&[
        "rebuild",
        "audit",
        "--data-dir",
        data.path().to_str().unwrap(),
        "--master-key",
        &key.to_base64(),
    ]);
    assert_reported(&out, checkpoint);
    assert_eq!(dump_sqlite(data.path()), original, "an identical trail");
    assert_eq!(
        store.projection_checkpoint("audit").await.unwrap(),
        checkpoint
    );
    let files: Vec<String> = std::fs::read_dir(data.path())
        .unwrap()
        .map(|f| f.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !files.iter().any(|f| f.contains("rebuild")),
        "the build file is removed: {files:?}"
    );
}

#[tokio::test]
async fn rebuild_refuses_an_unknown_projection_and_a_missing_database() {
    let data = TempDir::new();
    let dir = data.path().to_str().unwrap();
    let out = run(&["rebuild", "family-tree", "--data-dir", dir]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("there are: audit"),
        "{}",
        stderr(&out)
    );
    let out = run(&["rebuild", "audit", "--data-dir", dir]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("there is no database at"),
        "{}",
        stderr(&out)
    );
    assert!(
        !sqlite_file(data.path()).exists(),
        "nothing is created in the data directory"
    );
}
