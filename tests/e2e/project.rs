//! `registro project <name>` as a process of its own against PostgreSQL, and the projectors
//! `registro serve` runs in-process in embedded mode: the audit trail fills with the school's
//! events, and SIGTERM stops the process cleanly.

use std::process::Stdio;
use std::time::{Duration, Instant};

use registro_store::MasterKey;
use registro_testkit::TempDir;
use registro_testkit::pg::TestDb;

use crate::support::{PATIENCE, Server, registro, run, school_with_events, sqlite_file, stderr};

#[tokio::test]
async fn project_audit_runs_as_its_own_process_against_postgres() {
    let db = TestDb::new().await;
    let key = MasterKey::generate();
    let store = db.store_with_key(key.clone()).await;
    let school = school_with_events(&store, 7).await;
    let key = key.to_base64();
    let mut child = registro()
        .args([
            "project",
            "audit",
            "--database-url",
            db.url(),
            "--master-key",
            &key,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let client = db.client().await;
    let deadline = Instant::now() + PATIENCE;
    loop {
        let rows = client
            .query_opt(
                "SELECT count(*) FROM audit_entries WHERE school_id = $1",
                &[school.as_uuid()],
            )
            .await;
        if let Ok(Some(row)) = rows
            && row.get::<_, i64>(0) == 7
        {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "registro project exited early"
        );
        assert!(
            Instant::now() < deadline,
            "the audit trail did not fill in time"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A new event arrives within moments, through LISTEN/NOTIFY or the poll.
    school_with_events(&store, 1).await;
    let deadline = Instant::now() + PATIENCE;
    while client
        .query_one("SELECT count(*) FROM audit_entries", &[])
        .await
        .unwrap()
        .get::<_, i64>(0)
        < 8
    {
        assert!(
            Instant::now() < deadline,
            "the new event was not projected in time"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pid = child.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + PATIENCE;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "registro project did not stop on SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn an_unknown_projection_is_named_with_the_ones_there_are() {
    let data = TempDir::new();
    let out = run(&[
        "project",
        "family-tree",
        "--data-dir",
        data.path().to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("there are: audit, family"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn serve_runs_the_projectors_in_process_in_embedded_mode() {
    let data = TempDir::new();
    let dir = data.path().to_str().unwrap();
    let added = run(&[
        "add-person",
        "--school",
        &uuid::Uuid::now_v7().to_string(),
        "--data-dir",
        dir,
        "--fiscal-code",
        "XXXYYY66A41Z999N",
        "--family-name",
        "Bianchi",
        "--given-name",
        "Marco",
        "--role",
        "principal",
    ]);
    assert!(added.status.success(), "{}", stderr(&added));
    let server = Server::start(&["--data-dir", dir]).await;
    let deadline = Instant::now() + PATIENCE;
    loop {
        let conn = rusqlite::Connection::open(sqlite_file(data.path())).unwrap();
        let rows: Result<i64, _> =
            conn.query_row("SELECT count(*) FROM audit_entries", [], |r| r.get(0));
        if rows.is_ok_and(|n| n >= 1) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the audit trail did not fill in time"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(server.terminate().await.success());
}
