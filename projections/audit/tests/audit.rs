//! The audit trail built by its projector from real events, on SQLite and on PostgreSQL (as
//! the ordinary role that row-level security holds): one row per event, found by student, by
//! actor and by action; every event applied once, however often the projector catches up.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::sync::Arc;

use registro_domain::{PersonId, Role, SchoolId};
use registro_projection_audit::AuditTrail;
use registro_projector::Projector;
use registro_store::sqlite::SqliteStore;
use registro_store::{
    AppendRequest, Cell, CellType, CommandMetadata, EventStore, EventType, ExpectedVersion,
    NewEvent, StreamId,
};
use registro_testkit::TempDir;
use registro_testkit::pg::TestDb;
use serde_json::json;
use time::OffsetDateTime;

async fn append(
    store: &dyn EventStore,
    school: SchoolId,
    stream: &str,
    event_type: &str,
    data: serde_json::Value,
    actor: PersonId,
    role: Role,
) {
    store
        .append(AppendRequest {
            guards: Vec::new(),
            school,
            stream: StreamId::parse(stream).unwrap(),
            expected: ExpectedVersion::Any,
            events: vec![NewEvent::new(
                EventType::parse(event_type).unwrap(),
                data,
                OffsetDateTime::now_utc(),
            )],
            metadata: CommandMetadata::by(actor, role),
            idempotency_key: None,
            command_digest: None,
        })
        .await
        .unwrap();
}

/// The trail's rows about `student` in `school`: (school_seq, action, summary, role).
async fn about(
    store: &dyn EventStore,
    school: SchoolId,
    student: PersonId,
) -> Vec<(i64, String, String, String)> {
    store
        .query_projection(
            school,
            "SELECT e.school_seq, e.action, e.summary, e.actor_role \
             FROM audit_entries e JOIN audit_subjects s \
               ON s.school_id = e.school_id AND s.school_seq = e.school_seq \
             WHERE s.school_id = $1 AND s.student = $2 ORDER BY e.school_seq",
            &[
                Cell::Uuid(*school.as_uuid()),
                Cell::Uuid(*student.as_uuid()),
            ],
            &[
                CellType::Int,
                CellType::Text,
                CellType::Text,
                CellType::Text,
            ],
        )
        .await
        .unwrap()
        .into_iter()
        .map(|row| match &row[..] {
            [Cell::Int(seq), Cell::Text(a), Cell::Text(s), Cell::Text(r)] => {
                (*seq, a.clone(), s.clone(), r.clone())
            }
            other => panic!("{other:?}"),
        })
        .collect()
}

async fn count(store: &dyn EventStore, school: SchoolId, where_: &str, param: Cell) -> i64 {
    let sql = format!("SELECT count(*) FROM audit_entries WHERE school_id = $1 AND {where_}");
    let rows = store
        .query_projection(
            school,
            &sql,
            &[Cell::Uuid(*school.as_uuid()), param],
            &[CellType::Int],
        )
        .await
        .unwrap();
    match rows[0][0] {
        Cell::Int(n) => n,
        ref other => panic!("{other:?}"),
    }
}

/// Catches up until the trail holds as many rows for each school as given. On PostgreSQL an
/// event reaches subscribers once every older transaction on the server has ended (ADR 0003),
/// which other tests running at the same time may delay a little: the wait is bounded.
async fn catch_up_until(projector: &Projector, store: &dyn EventStore, rows: [(SchoolId, i64); 2]) {
    for _ in 0..200 {
        projector.catch_up().await.unwrap();
        let mut all = true;
        for (school, n) in rows {
            all &= count(store, school, "school_seq > $2", Cell::Int(0)).await == n;
        }
        if all {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the trail did not reach {rows:?} in 10 s");
}

async fn the_trail_is_built_once_and_found_by_student_actor_and_action(store: Arc<dyn EventStore>) {
    let (a, b) = (SchoolId::new(), SchoolId::new());
    let (x, y, z) = (PersonId::new(), PersonId::new(), PersonId::new());
    let (teacher, principal) = (PersonId::new(), PersonId::new());
    let s = store.as_ref();
    append(
        s,
        a,
        &format!("student-{x}-2025"),
        "GradeRecorded",
        json!({"grade": PersonId::new(), "subject": "Matematica"}),
        teacher,
        Role::Teacher,
    )
    .await;
    append(
        s,
        a,
        "access-log",
        "StudentDataRead",
        json!({"students": [x, y], "view": "student.grades", "request_id": "r-1"}),
        principal,
        Role::Principal,
    )
    .await;
    append(
        s,
        a,
        "directory",
        "GuardianLinked",
        json!({"guardian": PersonId::new(), "student": y}),
        principal,
        Role::Principal,
    )
    .await;
    append(
        s,
        b,
        &format!("student-{z}-2025"),
        "GradeRecorded",
        json!({"grade": PersonId::new(), "subject": "Storia"}),
        teacher,
        Role::Teacher,
    )
    .await;

    let projector = Projector::new(Arc::clone(&store), Arc::new(AuditTrail));
    projector.prepare().await.unwrap();
    projector.prepare().await.unwrap(); // idempotent
    catch_up_until(&projector, s, [(a, 3), (b, 1)]).await;
    assert_eq!(
        projector.catch_up().await.unwrap(),
        store.projection_checkpoint("audit").await.unwrap()
    );

    assert_eq!(
        about(s, a, x).await,
        [
            (1, "GradeRecorded".into(), "voto".into(), "teacher".into()),
            (
                2,
                "StudentDataRead".into(),
                "registro degli accessi: student.grades".into(),
                "principal".into()
            ),
        ]
    );
    assert_eq!(
        about(s, a, y).await.iter().map(|r| r.0).collect::<Vec<_>>(),
        [2, 3]
    );
    // Another school's student is not in this school's trail.
    assert!(about(s, a, z).await.is_empty());
    assert_eq!(about(s, b, z).await.len(), 1);
    assert_eq!(
        count(s, a, "actor_id = $2", Cell::Uuid(*principal.as_uuid())).await,
        2
    );
    assert_eq!(
        count(s, a, "action = $2", Cell::Text("GradeRecorded".into())).await,
        1
    );

    // Catching up again applies nothing twice; new events are added once.
    projector.catch_up().await.unwrap();
    assert_eq!(about(s, a, x).await.len(), 2);
    append(
        s,
        a,
        &format!("student-{x}-2025"),
        "GradeAnnulled",
        json!({"grade": PersonId::new(), "reason": "errore"}),
        teacher,
        Role::Teacher,
    )
    .await;
    catch_up_until(&projector, s, [(a, 4), (b, 1)]).await;
    projector.catch_up().await.unwrap();
    let rows = about(s, a, x).await;
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[2].1, "GradeAnnulled");
}

#[tokio::test]
async fn sqlite_the_trail_is_built_once_and_found_by_student_actor_and_action() {
    let dir = TempDir::new();
    let store = SqliteStore::open(
        &dir.path().join("registro.db"),
        registro_testkit::master_key(),
    )
    .await
    .unwrap();
    store.migrate().await.unwrap();
    the_trail_is_built_once_and_found_by_student_actor_and_action(Arc::new(store)).await;
}

#[tokio::test]
async fn postgres_the_trail_is_built_once_and_found_by_student_actor_and_action() {
    let db = TestDb::new().await;
    // The ordinary test role may not create tables: the administrator prepares them (as the
    // role that ran the migrations does in production) and grants them.
    let admin = db.store().await;
    let projector = Projector::new(Arc::new(admin), Arc::new(AuditTrail));
    projector.prepare().await.unwrap();
    db.client()
        .await
        .batch_execute(&format!(
            "GRANT SELECT, INSERT, UPDATE, DELETE ON audit_entries, audit_subjects TO {}",
            registro_testkit::pg::APP_ROLE
        ))
        .await
        .unwrap();
    let store = db.app_store_with_key(registro_testkit::master_key()).await;
    assert_eq!(store.row_security().await.unwrap(), Some(true));
    the_trail_is_built_once_and_found_by_student_actor_and_action(Arc::new(store)).await;
}
