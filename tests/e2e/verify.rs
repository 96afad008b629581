//! `registro verify`: intact chains, and a byte changed by hand found at its `school_seq`.

use std::process::Command;

use registro_store::MasterKey;
use registro_store::postgres::PgStore;
use registro_store::sqlite::SqliteStore;
use registro_testkit::TempDir;
use registro_testkit::pg::TestDb;

use crate::support::{run, school_with_events, sqlite_file, stderr, stdout};

/// Runs `registro verify` and checks that it reports `events` intact events; returns its line.
fn assert_intact(school: &str, storage: &[&str], events: u64) -> String {
    let out = run(&[&["verify", "--school", school], storage].concat());
    assert!(out.status.success(), "{}", stderr(&out));
    let line = stdout(&out).trim().to_owned();
    assert!(
        line.starts_with(&format!("OK {events} events, head ")),
        "{line}"
    );
    line
}

/// Runs `registro verify` and checks that it names `school_seq` as the first broken event.
fn assert_broken_at(school: &str, storage: &[&str], school_seq: u64) {
    let out = run(&[&["verify", "--school", school], storage].concat());
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let line = stdout(&out);
    assert!(
        line.starts_with(&format!("BROKEN at school_seq {school_seq}: ")),
        "{line}"
    );
}

#[tokio::test]
async fn verify_names_the_event_changed_by_hand_in_sqlite() {
    let data = TempDir::new();
    let dir = data.path().to_str().unwrap();
    let school = {
        let store = SqliteStore::open(&sqlite_file(data.path()), MasterKey::generate())
            .await
            .unwrap();
        registro_store::EventStore::migrate(&store).await.unwrap();
        school_with_events(&store, 3).await
    };
    let school = school.to_string();

    let line = assert_intact(&school, &["--data-dir", dir], 3);
    assert_eq!(
        line.rsplit(' ').next().unwrap().len(),
        64,
        "the head is a SHA-256 in hex"
    );

    // A tamperer with the file: gets past the immutability trigger and changes one byte.
    let conn = rusqlite::Connection::open(sqlite_file(data.path())).unwrap();
    conn.execute_batch("DROP TRIGGER events_no_update").unwrap();
    let changed = conn
        .execute(
            "UPDATE events SET data = replace(data, 'Inferno', 'Infernx') WHERE school_id = ?1 AND school_seq = 2",
            [&school],
        )
        .unwrap();
    assert_eq!(changed, 1);
    drop(conn);

    assert_broken_at(&school, &["--data-dir", dir], 2);
}

#[tokio::test]
async fn verify_names_the_event_changed_by_hand_in_postgres() {
    let db = TestDb::new().await;
    let school = {
        let store = PgStore::connect(db.url(), 2, MasterKey::generate())
            .await
            .unwrap();
        school_with_events(&store, 3).await
    };
    let school = school.to_string();
    assert_intact(&school, &["--database-url", db.url()], 3);

    let tamper = format!(
        "ALTER TABLE events DISABLE TRIGGER events_immutable; \
         UPDATE events SET data = replace(data, 'Inferno', 'Infernx') \
         WHERE school_id = '{school}' AND school_seq = 2;"
    );
    let by_psql = Command::new("psql")
        .args([db.url(), "-v", "ON_ERROR_STOP=1", "-q", "-c", &tamper])
        .status();
    match by_psql {
        Ok(status) => assert!(status.success(), "psql failed"),
        // No psql on this machine: the same statement over a plain connection.
        Err(_) => db.client().await.batch_execute(&tamper).await.unwrap(),
    }

    assert_broken_at(&school, &["--database-url", db.url()], 2);
}

#[tokio::test]
async fn verify_of_an_unknown_school_or_a_missing_database_fails_clearly() {
    let data = TempDir::new();
    let dir = data.path().to_str().unwrap();
    let school = uuid::Uuid::now_v7().to_string();
    let missing = run(&["verify", "--school", &school, "--data-dir", dir]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(
        stderr(&missing).contains("no database"),
        "{}",
        stderr(&missing)
    );
    assert!(!sqlite_file(data.path()).exists(), "verify creates nothing");

    assert!(run(&["migrate", "--data-dir", dir]).status.success());
    let unknown = run(&["verify", "--school", &school, "--data-dir", dir]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(
        stderr(&unknown).contains("has no events"),
        "{}",
        stderr(&unknown)
    );
}

/// A head published earlier must still be in the log: found when the log only grew since, and
/// refused (exit 1) when the log that verifies on its own does not hold it.
#[tokio::test]
async fn verify_checks_a_head_published_earlier() {
    let data = TempDir::new();
    let dir = data.path().to_str().unwrap();
    let store = SqliteStore::open(&sqlite_file(data.path()), MasterKey::generate())
        .await
        .unwrap();
    registro_store::EventStore::migrate(&store).await.unwrap();
    let school = school_with_events(&store, 3).await;
    let id = school.to_string();
    let line = assert_intact(&id, &["--data-dir", dir], 3);
    let published = line.rsplit(' ').next().unwrap().to_owned();
    registro_testkit::append_json(&store, school, "more", &[("Later", serde_json::json!({}))])
        .await;
    let out = run(&[
        "verify",
        "--school",
        &id,
        "--data-dir",
        dir,
        "--head",
        &published,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(&format!("the published head {published} is event 3")),
        "{}",
        stdout(&out)
    );
    let elsewhere = "ab".repeat(32);
    let out = run(&[
        "verify",
        "--school",
        &id,
        "--data-dir",
        dir,
        "--head",
        &elsewhere,
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with(&format!(
            "BROKEN: the published head {elsewhere} is not in the log"
        )),
        "{}",
        stdout(&out)
    );
    let out = run(&[
        "verify",
        "--school",
        &id,
        "--data-dir",
        dir,
        "--head",
        "nothex",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}
