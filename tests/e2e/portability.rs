//! A school taken to another vendor with the real binary: a school day (grades, absences, a
//! justification with its sealed reason, a circular with a PDF, the first scrutinio) run on the
//! embedded SQLite default, exported with its key bundle, imported into an empty PostgreSQL
//! database, exported from there and imported into another: every time the chain verifies with
//! the same head and every projection holds the same rows. A changed byte in the file stops the
//! import at its `school_seq` with nothing of the school left behind.

use std::collections::BTreeMap;
use std::path::Path;

use registro_domain::SchoolId;
use registro_store::postgres::PgStore;
use registro_store::sqlite::SqliteStore;
use registro_store::{Cell, CellType, EventStore, MasterKey};
use registro_testkit::TempDir;
use registro_testkit::pg::TestDb;

use crate::school_day::a_school_day;
use crate::support::{registro, stderr, stdout};

const PASSPHRASE: &str = "una passphrase abbastanza lunga";

fn run_with_passphrase(args: &[&str]) -> std::process::Output {
    registro()
        .args(args)
        .env("REGISTRO_BUNDLE_PASSPHRASE", PASSPHRASE)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

/// `registro verify` of the school: its `OK <n> events, head <hash>` line.
fn verified(school: SchoolId, storage: &[&str]) -> String {
    let school = school.to_string();
    let mut args = vec!["verify", "--school", school.as_str()];
    args.extend(storage);
    let out = crate::support::run(&args);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    stdout(&out).trim().to_owned()
}

fn export(school: SchoolId, storage: &[&str], out: &Path) {
    let (school, out) = (school.to_string(), out.to_str().unwrap().to_owned());
    let mut args = vec!["export", "--school", school.as_str(), "--out", out.as_str()];
    args.extend(storage);
    let done = run_with_passphrase(&args);
    assert!(done.status.success(), "{}{}", stdout(&done), stderr(&done));
    assert!(
        stdout(&done).contains("exported school"),
        "{}",
        stdout(&done)
    );
}

fn import(file: &Path, storage: &[&str]) -> std::process::Output {
    let keys = format!("{}.keys", file.display());
    let input = file.to_str().unwrap().to_owned();
    let mut args = vec!["import", "--in", input.as_str(), "--keys", keys.as_str()];
    args.extend(storage);
    run_with_passphrase(&args)
}

/// Every projection table's rows of `school`, each row as text, sorted: read through the store
/// with the column types PostgreSQL declares, so that both backends give the same cells.
async fn projections(
    store: &dyn EventStore,
    school: SchoolId,
    columns: &BTreeMap<String, Vec<(String, CellType)>>,
) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    for (table, cols) in columns {
        let names: Vec<&str> = cols.iter().map(|(n, _)| n.as_str()).collect();
        let types: Vec<CellType> = cols.iter().map(|(_, t)| *t).collect();
        let sql = format!(
            "SELECT {} FROM {table} WHERE school_id = $1",
            names.join(", ")
        );
        let rows = store
            .query_projection(school, &sql, &[Cell::Uuid(*school.as_uuid())], &types)
            .await
            .unwrap();
        let mut rows: Vec<String> = rows.iter().map(|r| format!("{r:?}")).collect();
        rows.sort();
        out.insert(table.clone(), rows);
    }
    out
}

/// The projections' tables and their columns, as PostgreSQL declares them.
async fn projection_columns(db: &TestDb) -> BTreeMap<String, Vec<(String, CellType)>> {
    let client = db.client().await;
    let rows = client
        .query(
            "SELECT c.table_name::text, c.column_name::text, c.data_type::text \
             FROM information_schema.columns c \
             WHERE c.table_schema = 'public' AND (c.table_name LIKE 'audit\\_%' \
                OR c.table_name LIKE 'family\\_%' OR c.table_name LIKE 'scrutiny\\_%') \
             ORDER BY c.table_name, c.ordinal_position",
            &[],
        )
        .await
        .unwrap();
    let mut tables: BTreeMap<String, Vec<(String, CellType)>> = BTreeMap::new();
    for r in rows {
        let (table, column, kind): (String, String, String) = (r.get(0), r.get(1), r.get(2));
        let cell = match kind.as_str() {
            "uuid" => CellType::Uuid,
            "integer" | "bigint" | "smallint" => CellType::Int,
            "boolean" => CellType::Bool,
            "jsonb" | "json" => CellType::Json,
            "timestamp with time zone" => CellType::Time,
            _ => CellType::Text,
        };
        tables.entry(table).or_default().push((column, cell));
    }
    assert!(tables.len() >= 20, "the projections' tables: {tables:?}");
    tables
}

#[tokio::test]
async fn a_school_moves_from_sqlite_to_postgresql_and_on_with_the_same_chain_and_views() {
    // The school, on the embedded default.
    let data = TempDir::new();
    let dir = data.path().to_str().unwrap().to_owned();
    let source = ["--data-dir", dir.as_str()];
    let school = a_school_day(&[], &dir).await;
    // Its read models, built again from the first event (the in-process projectors of `serve`
    // may not have applied the last events when it stopped).
    let rebuilt = crate::support::run(&["rebuild", "--all", "--data-dir", &dir]);
    assert!(rebuilt.status.success(), "{}", stderr(&rebuilt));
    let head = verified(school, &source);
    assert!(head.starts_with("OK "), "{head}");

    let files = TempDir::new();
    let first = files.path().join("school.ndjson");
    export(school, &source, &first);
    let text = std::fs::read_to_string(&first).unwrap();
    assert!(text.lines().count() > 30, "{text}");
    assert!(
        !text.contains("sciopero dei treni"),
        "the justification's reason travels sealed"
    );
    let bundle = std::fs::read_to_string(format!("{}.keys", first.display())).unwrap();
    assert!(bundle.contains("argon2id"), "{bundle}");

    // A changed byte: the import stops at its school_seq and leaves nothing.
    let target = TestDb::new().await;
    let key = MasterKey::generate().to_base64();
    let pg = ["--database-url", target.url(), "--master-key", key.as_str()];
    let changed = files.path().join("changed.ndjson");
    let tampered = text.replacen("\"Matematica\"", "\"Matematicb\"", 1);
    assert_ne!(tampered, text);
    std::fs::write(&changed, tampered).unwrap();
    std::fs::copy(
        format!("{}.keys", first.display()),
        format!("{}.keys", changed.display()),
    )
    .unwrap();
    let refused = import(&changed, &pg);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("does not verify at school_seq"),
        "{}",
        stderr(&refused)
    );
    let pg_store = PgStore::connect(target.url(), 4, MasterKey::parse(&key).unwrap())
        .await
        .unwrap();
    assert_eq!(pg_store.school_head(school).await.unwrap(), None);

    // The real file: the same head, the same views.
    let imported = import(&first, &pg);
    assert!(imported.status.success(), "{}", stderr(&imported));
    for name in ["audit", "family", "scrutiny"] {
        assert!(
            stdout(&imported).contains(&format!("projection {name}: up to")),
            "{}",
            stdout(&imported)
        );
    }
    assert_eq!(verified(school, &pg), head);
    let columns = projection_columns(&target).await;
    let sqlite_store = SqliteStore::open(
        &data.path().join("registro.db"),
        MasterKey::parse(
            std::fs::read_to_string(data.path().join("master.key"))
                .unwrap()
                .trim(),
        )
        .unwrap(),
    )
    .await
    .unwrap();
    let from_sqlite = projections(&sqlite_store, school, &columns).await;
    assert!(!from_sqlite["family_grades"].is_empty());
    assert!(!from_sqlite["scrutiny_terms"].is_empty());
    assert_eq!(projections(&pg_store, school, &columns).await, from_sqlite);
    // The sealed reason opens here with the bundle's key.
    let events = pg_store
        .read_school(school, 1, 10_000, registro_store::Sealed::Open)
        .await
        .unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.data.to_string().contains("sciopero dei treni")),
        "the reason opens with the imported key"
    );

    // And on again, from PostgreSQL to PostgreSQL.
    let second = files.path().join("again.ndjson");
    export(school, &pg, &second);
    let again = TestDb::new().await;
    let key2 = MasterKey::generate().to_base64();
    let pg2 = ["--database-url", again.url(), "--master-key", key2.as_str()];
    let imported = import(&second, &pg2);
    assert!(imported.status.success(), "{}", stderr(&imported));
    assert_eq!(verified(school, &pg2), head);
    let pg2_store = PgStore::connect(again.url(), 4, MasterKey::parse(&key2).unwrap())
        .await
        .unwrap();
    assert_eq!(projections(&pg2_store, school, &columns).await, from_sqlite);
    // The two exports hold the same lines but for the manifest's time.
    let body = |t: &str| t.lines().skip(1).map(str::to_owned).collect::<Vec<_>>();
    assert_eq!(
        body(&std::fs::read_to_string(&second).unwrap()),
        body(&text)
    );
}

/// `registro retention run`: a student's justification reason of 2020/21, sealed with the
/// record's key, is past its retention today; the run erases it, records the erasure on the
/// record, and `registro verify` still passes; a second run erases nothing.
#[tokio::test]
async fn the_retention_run_erases_an_old_reason_and_the_chain_still_verifies() {
    use registro_domain::FiscalCode;
    use registro_store::{AppendRequest, CommandMetadata, ExpectedVersion, NewEvent, StreamId};
    let data = TempDir::new();
    let dir = data.path().to_str().unwrap().to_owned();
    let school = SchoolId::new();
    let id = school.to_string();
    let code = FiscalCode::with_check_character("XXXYYY10A41Z999").unwrap();
    let added = crate::support::run(&[
        "add-person",
        "--school",
        &id,
        "--fiscal-code",
        code.as_str(),
        "--family-name",
        "Studente",
        "--given-name",
        "Uno",
        "--role",
        "student",
        "--data-dir",
        &dir,
    ]);
    assert!(added.status.success(), "{}", stderr(&added));
    let student: registro_domain::PersonId = stdout(&added)
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let key = std::fs::read_to_string(data.path().join("master.key")).unwrap();
    let store = SqliteStore::open(
        &data.path().join("registro.db"),
        MasterKey::parse(key.trim()).unwrap(),
    )
    .await
    .unwrap();
    let year = registro_domain::calendar::SchoolYear::starting(2020);
    let subject = registro_domain::record::sealing_subject(student, year);
    let reason = serde_json::json!({"entry": uuid::Uuid::now_v7(), "justifier": "guardian",
        "reason": {"category": "health", "text": "terapia riservata"}});
    store
        .append(AppendRequest {
            school,
            stream: StreamId::parse(registro_domain::record::stream(student, year)).unwrap(),
            expected: ExpectedVersion::Any,
            guards: Vec::new(),
            events: vec![
                NewEvent::new(
                    registro_store::EventType::parse("JustificationSubmitted").unwrap(),
                    reason,
                    time::OffsetDateTime::now_utc(),
                )
                .seal("/reason", subject),
            ],
            metadata: CommandMetadata::system(),
            idempotency_key: None,
            command_digest: None,
        })
        .await
        .unwrap();
    drop(store);

    let ran = crate::support::run(&["retention", "run", "--school", &id, "--data-dir", &dir]);
    assert!(ran.status.success(), "{}", stderr(&ran));
    assert!(
        stdout(&ran).contains(&format!("student {student} in 2020/21")),
        "{}",
        stdout(&ran)
    );
    assert!(verified(school, &["--data-dir", &dir]).starts_with("OK 3 events"));
    let store = SqliteStore::open(
        &data.path().join("registro.db"),
        MasterKey::parse(key.trim()).unwrap(),
    )
    .await
    .unwrap();
    let events = store
        .read_school(school, 1, 100, registro_store::Sealed::Open)
        .await
        .unwrap();
    assert!(
        events
            .iter()
            .all(|e| !e.data.to_string().contains("riservata"))
    );
    assert_eq!(events[2].event_type.as_str(), "SealedDataErased");
    let again = crate::support::run(&["retention", "run", "--school", &id, "--data-dir", &dir]);
    assert!(
        stdout(&again).contains(": 0 records erased"),
        "{}",
        stdout(&again)
    );
}
