//! Row-level security on PostgreSQL (migration 0002, and 0003 for attachments,
//! `docs/decisions/0009-row-level-security.md`): a connection sees and writes only the rows of
//! the school that its transaction names in `registro.school`, or of every school when the
//! transaction sets `registro.all_schools`; naming none, it sees nothing.
//!
//! PostgreSQL only: SQLite has no row-level security. The cases connect as an ordinary role
//! ([`APP_ROLE`]), since superusers and roles with `BYPASSRLS` are never held by it; the
//! administrator's client ([`TestDb::client`]) counts what is really there.
//!
//! Each case says what it fails without; every one of those was checked by removing that part
//! of migration 0002 (or of the adapter) and running the cases.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use registro_domain::{PersonId, SchoolId};
use registro_store::seal::is_erased;
use registro_store::subscription::Subscription;
use registro_store::verify::{Verification, verify_school};
use registro_store::{
    AppendOutcome, AppendRequest, CommandMetadata, EventStore, EventType, ExpectedVersion,
    IdempotencyKey, MasterKey, NewEvent, Position, Sealed, StreamId,
};
use registro_testkit::pg::{APP_ROLE, TestDb};
use serde_json::json;
use time::OffsetDateTime;
use tokio_postgres::GenericClient;
use tokio_postgres::error::SqlState;

/// Every table that carries `school_id`.
const TABLES: [&str; 5] = [
    "events",
    "school_heads",
    "idempotency_keys",
    "subject_keys",
    "attachments",
];

/// The projection runtime's tables, which belong to no school.
const RUNTIME_TABLES: [&str; 2] = ["projection_checkpoints", "projection_steps"];

/// A bound for waits that must end; reaching it is a failure, not a speed measure.
const PATIENCE: Duration = Duration::from_secs(30);

/// An append of `n` events to `school`, each with a sealed field of its own subject (so that
/// every table gets rows), under an idempotency key.
fn sealed_append(school: SchoolId, n: usize) -> AppendRequest {
    let events = (0..n)
        .map(|i| {
            NewEvent::new(
                EventType::parse("AbsenceJustified").unwrap(),
                json!({"n": i, "reason": "visita medica"}),
                OffsetDateTime::now_utc(),
            )
            .seal("/reason", PersonId::new())
        })
        .collect();
    AppendRequest {
        guards: Vec::new(),
        school,
        stream: StreamId::parse("student-1-2025").unwrap(),
        expected: ExpectedVersion::Any,
        events,
        metadata: CommandMetadata::system(),
        idempotency_key: Some(IdempotencyKey::parse("justify-1").unwrap()),
        command_digest: None,
    }
}

/// A test database where school `a` has three events and school `b` two, and each an
/// attachment (the same bytes), written through the store connected as the ordinary role.
struct TwoSchools {
    db: TestDb,
    a: SchoolId,
    b: SchoolId,
}

impl TwoSchools {
    async fn new() -> Self {
        let db = TestDb::new().await;
        let store = db.app_store_with_key(MasterKey::generate()).await;
        let (a, b) = (SchoolId::new(), SchoolId::new());
        store.append(sealed_append(a, 3)).await.unwrap();
        store.append(sealed_append(b, 2)).await.unwrap();
        for school in [a, b] {
            store
                .put_attachment(school, "application/pdf", b"%PDF-1.7 circolare")
                .await
                .unwrap();
        }
        let two = Self { db, a, b };
        // What is really there, seen by the administrator: rows of both schools everywhere.
        let admin = two.db.client().await;
        for table in TABLES {
            let schools: i64 = admin
                .query_one(
                    &format!("SELECT count(DISTINCT school_id) FROM {table}"),
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            assert_eq!(schools, 2, "{table} holds rows of both schools");
        }
        two
    }

    /// How many rows of `school` `table` holds, as the administrator counts them.
    async fn rows_of(&self, table: &str, school: SchoolId) -> i64 {
        self.db
            .client()
            .await
            .query_one(
                &format!("SELECT count(*) FROM {table} WHERE school_id = $1"),
                &[school.as_uuid()],
            )
            .await
            .unwrap()
            .get(0)
    }
}

async fn count(client: &impl GenericClient, table: &str) -> i64 {
    client
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .unwrap()
        .get(0)
}

/// Every table that has a `school_id`, today's and those that later migrations (projections'
/// read models) add, is held: row-level security enabled and forced, under a policy on the
/// transaction's school for reads and writes alike. Fails when a migration creates such a table
/// without the three statements of migration 0002.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_table_with_a_school_id_is_held() {
    let db = TestDb::new().await;
    let rows = db
        .client()
        .await
        .query(
            "SELECT c.oid::regclass::text, c.relrowsecurity, c.relforcerowsecurity, \
                    coalesce(bool_and(p.cmd = 'ALL' \
                        AND p.qual LIKE '%registro_school()%' \
                        AND p.with_check LIKE '%registro_school()%'), false) \
                    AND count(p.policyname) = 1 \
             FROM pg_attribute a \
             JOIN pg_class c ON c.oid = a.attrelid \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             LEFT JOIN pg_policies p ON p.schemaname = n.nspname AND p.tablename = c.relname \
             WHERE a.attname = 'school_id' AND NOT a.attisdropped AND c.relkind IN ('r', 'p') \
               AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
             GROUP BY 1, 2, 3 ORDER BY 1",
            &[],
        )
        .await
        .unwrap();
    let tables: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    for table in TABLES {
        assert!(tables.iter().any(|t| t == table), "{table} has a school_id");
    }
    // The projection runtime's tables (migration 0004) work across schools: no school_id, so
    // no policy. A projection's own tables are created by its steps, not by migrations; the
    // conformance cases run one under row-level security (`postgres_rls::*projection*`).
    for table in RUNTIME_TABLES {
        assert!(
            !tables.iter().any(|t| t == table),
            "{table} belongs to no school"
        );
    }
    for row in rows {
        let table: String = row.get(0);
        assert_eq!(
            (
                row.get::<_, bool>(1),
                row.get::<_, bool>(2),
                row.get::<_, bool>(3)
            ),
            (true, true, true),
            "{table}: row-level security enabled, forced, and exactly one policy, on \
             registro_school() (a second, permissive one would open the table)"
        );
    }
}

/// Fails without row-level security on any of the tables (no migration 0002, or a policy that
/// admits every row): the role then counts both schools' rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_names_no_school_sees_no_row() {
    let two = TwoSchools::new().await;
    let mut app = two.db.app_client().await;
    // The role is one that row-level security holds.
    let role = app
        .query_one(
            "SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (role.get::<_, bool>(0), role.get::<_, bool>(1)),
        (false, false)
    );
    for table in TABLES {
        assert_eq!(count(&app, table).await, 0, "{table} without a school");
    }
    // An empty school is no school either.
    let tx = app.transaction().await.unwrap();
    tx.execute("SELECT set_config('registro.school', '', true)", &[])
        .await
        .unwrap();
    for table in TABLES {
        assert_eq!(count(&tx, table).await, 0, "{table} with an empty school");
    }
}

/// Fails when the policies do not compare `school_id` with the transaction's school (a policy
/// that admits every row, or no policy at all, which admits none), when `WITH CHECK` admits
/// other schools, or when the setting outlives its transaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_for_one_school_sees_and_writes_only_that_school() {
    let two = TwoSchools::new().await;
    let mut app = two.db.app_client().await;
    let mut tx = app.transaction().await.unwrap();
    tx.execute(
        "SELECT set_config('registro.school', $1, true)",
        &[&two.a.to_string()],
    )
    .await
    .unwrap();
    for table in TABLES {
        let expected = two.rows_of(table, two.a).await;
        assert!(expected > 0, "{table} has rows of school a");
        let row = tx
            .query_one(
                &format!("SELECT count(*), count(*) FILTER (WHERE school_id = $1) FROM {table}"),
                &[two.a.as_uuid()],
            )
            .await
            .unwrap();
        assert_eq!(
            (row.get::<_, i64>(0), row.get::<_, i64>(1)),
            (expected, expected),
            "{table} shows exactly school a's rows"
        );
    }

    // Writing a row of school b is refused, in every table; so is moving a row of a to b.
    let refused = [
        "INSERT INTO events (school_id, school_seq, stream_id, stream_version, event_id, \
         event_type, schema_version, data, actor_role, correlation_id, occurred_at, \
         recorded_at, prev_hash, hash) VALUES ($1, 1000, 'forged', 1, gen_random_uuid(), 'X', \
         1, '{}', 'system', gen_random_uuid(), now(), now(), sha256(''), sha256(''))",
        "INSERT INTO school_heads (school_id, last_seq, last_hash) \
         VALUES ($1, 1000, sha256(''))",
        "INSERT INTO idempotency_keys (school_id, key, fingerprint, stream_version, \
         first_seq, last_seq) VALUES ($1, 'forged', '', 1, 1, 1)",
        "INSERT INTO subject_keys (school_id, subject_id, wrapped_key, erased_at) \
         VALUES ($1, gen_random_uuid(), NULL, now())",
        "INSERT INTO attachments (school_id, hash, media_type, size, content, stored_at) \
         VALUES ($1, sha256('forged'), 'text/plain', 6, 'forged', now())",
        "UPDATE school_heads SET school_id = $1",
        "UPDATE attachments SET school_id = $1",
    ];
    for sql in refused {
        let savepoint = tx.transaction().await.unwrap();
        let err = savepoint
            .execute(sql, &[two.b.as_uuid()])
            .await
            .unwrap_err();
        let message = err.as_db_error().map(|e| e.message().to_owned());
        assert_eq!(
            err.code(),
            Some(&SqlState::INSUFFICIENT_PRIVILEGE),
            "{sql}: {message:?}"
        );
        assert!(
            message
                .as_deref()
                .is_some_and(|m| m.contains("row-level security")),
            "{sql}: {message:?}"
        );
    }
    // The same write for school a passes: it is the school that is refused, not the write.
    tx.execute(
        "INSERT INTO subject_keys (school_id, subject_id, wrapped_key, erased_at) \
         VALUES ($1, gen_random_uuid(), NULL, now())",
        &[two.a.as_uuid()],
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        two.rows_of("subject_keys", two.a).await,
        4,
        "three subjects and the new one"
    );
    assert_eq!(
        two.rows_of("subject_keys", two.b).await,
        2,
        "b is untouched"
    );

    // The setting lasted one transaction: the same session sees nothing again.
    for table in TABLES {
        assert_eq!(count(&app, table).await, 0, "{table} after the transaction");
    }
}

/// Fails when the policies ignore `registro.all_schools` (the subscription read would see
/// nothing), or when the switch outlives its transaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_all_schools_switch_sees_every_school_for_one_transaction() {
    let two = TwoSchools::new().await;
    let mut app = two.db.app_client().await;
    let tx = app.transaction().await.unwrap();
    tx.execute("SELECT set_config('registro.all_schools', 'on', true)", &[])
        .await
        .unwrap();
    for table in TABLES {
        let expected = two.rows_of(table, two.a).await + two.rows_of(table, two.b).await;
        assert_eq!(count(&tx, table).await, expected, "{table} across schools");
    }
    tx.commit().await.unwrap();
    for table in TABLES {
        assert_eq!(count(&app, table).await, 0, "{table} after the transaction");
    }
}

/// Fails without `FORCE ROW LEVEL SECURITY`: row-level security otherwise exempts a table's
/// owner, and in production registro owns its tables (it runs the migrations). Giving the
/// tables to the role takes an administrator that is a superuser (as the local server's and the
/// private cluster's are).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tables_owner_is_held_too() {
    let two = TwoSchools::new().await;
    let admin = two.db.client().await;
    for table in TABLES {
        admin
            .batch_execute(&format!("ALTER TABLE {table} OWNER TO {APP_ROLE}"))
            .await
            .unwrap();
    }
    let app = two.db.app_client().await;
    for table in TABLES {
        let owner: String = app
            .query_one(
                "SELECT tableowner::text FROM pg_tables WHERE tablename = $1",
                &[&table],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(owner, APP_ROLE);
        assert_eq!(count(&app, table).await, 0, "{table} seen by its owner");
    }
}

/// The whole store works as the ordinary role, for two schools at once: appends, idempotent
/// retries, reads, the subscription across schools, heads, verification, erasure and
/// attachments. (The whole
/// conformance suite runs as that role too: `postgres_rls::*`.) Fails when a statement of the
/// adapter does not name its school (it then finds nothing, or is refused), or when the
/// subscription read does not declare that it works across schools.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_store_works_for_two_schools_as_an_ordinary_role() {
    let db = TestDb::new().await;
    let app = db.app_store_with_key(MasterKey::generate()).await;
    assert!(app.held_by_row_security().await.unwrap());
    let admin_is_superuser: bool = db
        .client()
        .await
        .query_one("SELECT current_setting('is_superuser') = 'on'", &[])
        .await
        .unwrap()
        .get(0);
    if admin_is_superuser {
        assert!(!db.store().await.held_by_row_security().await.unwrap());
    }
    let store: Arc<dyn EventStore> = Arc::new(app);
    let (a, b) = (SchoolId::new(), SchoolId::new());
    let (request_a, request_b) = (sealed_append(a, 3), sealed_append(b, 2));
    let first_a = store.append(request_a.clone()).await.unwrap();
    let first_b = store.append(request_b.clone()).await.unwrap();
    assert_eq!((first_a.last_seq, first_b.last_seq), (3, 2));
    // The same key in both schools, each retry answered with its own school's first result.
    for (request, first) in [(&request_a, &first_a), (&request_b, &first_b)] {
        assert_eq!(
            store.append(request.clone()).await.unwrap(),
            AppendOutcome {
                replayed: true,
                ..first.clone()
            }
        );
    }

    let stream = &request_a.stream;
    let read_a = store.read_stream(a, stream, 1, 100).await.unwrap();
    let read_b = store.read_stream(b, stream, 1, 100).await.unwrap();
    assert_eq!((read_a.len(), read_b.len()), (3, 2));
    assert!(read_a.iter().all(|e| e.school_id == a));
    assert!(read_b.iter().all(|e| e.school_id == b));
    assert_eq!(
        read_a[0].data["reason"], "visita medica",
        "opened with its key"
    );
    assert_eq!(
        store
            .read_school(b, 1, 100, Sealed::Keep)
            .await
            .unwrap()
            .len(),
        2
    );
    for (school, events) in [(a, 3), (b, 2)] {
        let head = store.school_head(school).await.unwrap().unwrap();
        assert_eq!(head.last_seq, events);
        assert_eq!(
            verify_school(store.as_ref(), school).await.unwrap(),
            Verification::Intact {
                events,
                head: Some(head.hash)
            }
        );
    }

    // The subscription delivers both schools' events.
    let mut subscription = Subscription::new(
        Arc::clone(&store),
        Position::START,
        100,
        Duration::from_millis(20),
    );
    let mut delivered = HashSet::new();
    while delivered.len() < 5 {
        let batch = tokio::time::timeout(PATIENCE, subscription.next_batch())
            .await
            .expect("the subscription did not deliver both schools' events")
            .unwrap();
        delivered.extend(batch.iter().map(|e| (e.school_id, e.event_id)));
    }
    let expected: HashSet<_> = read_a
        .iter()
        .chain(&read_b)
        .map(|e| (e.school_id, e.event_id))
        .collect();
    assert_eq!(delivered, expected);

    // Erasure in school a leaves school b alone, and a's chain still verifies.
    let subject = request_a.events[0].sealed[0].subject;
    assert!(store.destroy_subject_key(a, subject).await.unwrap());
    assert!(!store.destroy_subject_key(a, subject).await.unwrap());
    let read_a = store.read_stream(a, stream, 1, 100).await.unwrap();
    assert!(is_erased(&read_a[0].data["reason"]), "{}", read_a[0].data);
    assert_eq!(read_a[1].data["reason"], "visita medica");
    assert!(
        store
            .read_stream(b, stream, 1, 100)
            .await
            .unwrap()
            .iter()
            .all(|e| e.data["reason"] == "visita medica")
    );
    assert!(matches!(
        verify_school(store.as_ref(), a).await.unwrap(),
        Verification::Intact { events: 3, .. }
    ));

    // The same bytes attached in both schools: a record in each, each read in its own school.
    let content = b"%PDF-1.7 circolare n. 1";
    let in_a = store
        .put_attachment(a, "application/pdf", content)
        .await
        .unwrap();
    let in_b = store.put_attachment(b, "image/png", content).await.unwrap();
    assert_eq!(in_a.hash, in_b.hash);
    for (school, meta) in [(a, &in_a), (b, &in_b)] {
        assert_eq!(
            store
                .put_attachment(school, "text/plain", content)
                .await
                .unwrap(),
            *meta,
            "stored again"
        );
        let (read, bytes) = store.attachment(school, &meta.hash).await.unwrap().unwrap();
        assert_eq!((&read, bytes.as_slice()), (meta, content.as_slice()));
    }
}

/// An append cancelled half-way (its request dropped while its transaction is open, holding the
/// school's lock) leaves nothing behind: its transaction is rolled back before its connection
/// serves anyone else. With a pool of one connection, the next append runs on that very
/// connection: had the old transaction stayed open, it would run inside it, numbered after the
/// cancelled rows and never committed. Fails if `OpenTransaction` stops rolling back on drop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_append_is_rolled_back_before_its_connection_is_reused() {
    use registro_store::testing::HoldAppends as _;
    let db = TestDb::new().await;
    let url = db.app_url().await;
    let master = MasterKey::generate();
    let one = registro_store::postgres::PgStore::connect(&url, 1, master.clone())
        .await
        .unwrap();
    let school = SchoolId::new();
    let mut held = one.append_held(sealed_append(school, 2)).await;
    held.wait_appended().await;
    held.abort().await;

    let outcome = one.append(sealed_append(school, 1)).await.unwrap();
    assert_eq!((outcome.first_seq, outcome.last_seq), (1, 1));
    let other = registro_store::postgres::PgStore::connect(&url, 2, master)
        .await
        .unwrap();
    let events = other
        .read_school(school, 1, 100, Sealed::Open)
        .await
        .unwrap();
    assert_eq!(events.len(), 1, "only the second append, committed");
}
