//! `registro migrate`, and the refusal to run on a database whose applied migration was edited.

use registro_testkit::TempDir;
use registro_testkit::pg::TestDb;

use crate::support::{run, sqlite_file, stderr, stdout};

#[tokio::test]
async fn migrate_applies_once_and_an_edited_migration_stops_everything_on_sqlite() {
    let data = TempDir::new();
    let dir = data.path().to_str().unwrap();
    let first = run(&["migrate", "--data-dir", dir]);
    assert!(first.status.success(), "{}", stderr(&first));
    assert!(
        stdout(&first).contains("applied migrations [1, 2, 3, 4]"),
        "{}",
        stdout(&first)
    );
    let second = run(&["migrate", "--data-dir", dir]);
    assert!(
        stdout(&second).contains("up to date"),
        "{}",
        stdout(&second)
    );

    let conn = rusqlite::Connection::open(sqlite_file(data.path())).unwrap();
    conn.execute(
        "UPDATE registro_migrations SET checksum = 'edited' WHERE version = 1",
        [],
    )
    .unwrap();
    drop(conn);
    for args in [
        vec!["migrate", "--data-dir", dir],
        vec!["serve", "--listen", "127.0.0.1:0", "--data-dir", dir],
    ] {
        let out = run(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            stderr(&out).contains("was edited after it was applied"),
            "{args:?}: {}",
            stderr(&out)
        );
    }
}

#[tokio::test]
async fn migrate_on_postgres_is_idempotent_and_refuses_an_edited_migration() {
    let db = TestDb::new().await; // cloned from a migrated template
    let out = run(&["migrate", "--database-url", db.url()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("up to date"), "{}", stdout(&out));
    db.client()
        .await
        .batch_execute("UPDATE registro_migrations SET checksum = 'edited' WHERE version = 1")
        .await
        .unwrap();
    let refused = run(&["migrate", "--database-url", db.url()]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        stderr(&refused).contains("was edited after it was applied"),
        "{}",
        stderr(&refused)
    );
}
