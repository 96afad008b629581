//! The command executor's guards, on both stores: a decision that read another stream (the
//! directory, a class's scrutini) is appended only while that stream stands as it was read;
//! when it moved, the command is decided again on what it reads now, and after the last
//! attempt the conflict names the stream.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use registro_api::command::{self, CommandError, Decision, new_events};
use registro_domain::{PersonId, Role, SchoolId};
use registro_store::{CommandMetadata, EventStore, StoreError, StreamGuard, StreamId};
use registro_testkit::append_json;
use registro_testkit::pg::TestDb;
use serde_json::json;

fn stream(name: &str) -> StreamId {
    StreamId::parse(name).unwrap()
}

async fn version(store: &dyn EventStore, school: SchoolId, name: &str) -> u64 {
    store
        .read_stream(school, &stream(name), 1, 1000)
        .await
        .unwrap()
        .last()
        .map_or(0, |e| e.stream_version)
}

async fn guards_are_checked_and_decided_again(store: Arc<dyn EventStore>) {
    let s = store.as_ref();
    let school = SchoolId::new();
    append_json(s, school, "lock", &[("Closed", json!({}))]).await;
    let metadata = CommandMetadata::by(PersonId::new(), Role::Teacher);
    let target = stream("record");
    // A decision that always reads the lock at a version it no longer has: every attempt is a
    // conflict on the lock, and nothing is written.
    let attempts = AtomicUsize::new(0);
    let stale = || async {
        attempts.fetch_add(1, Ordering::Relaxed);
        Ok::<_, CommandError<()>>(Decision {
            version: 0,
            guards: vec![StreamGuard {
                stream: stream("lock"),
                version: 0,
            }],
            events: new_events([("Graded", json!({}))])?,
        })
    };
    let result = command::execute(s, school, &target, metadata.clone(), &"a", None, stale).await;
    match result {
        Err(CommandError::Store(StoreError::Conflict { stream, actual, .. })) => {
            assert_eq!((stream.as_str(), actual), ("lock", 1));
        }
        other => panic!("expected a conflict on the lock, got {other:?}"),
    }
    assert_eq!(attempts.load(Ordering::Relaxed), command::ATTEMPTS);
    assert_eq!(version(s, school, "record").await, 0, "nothing was written");
    // A decision that reads the lock when it decides: the lock moves after the first read, the
    // second attempt reads it again and is appended.
    let attempts = AtomicUsize::new(0);
    let fresh = || async {
        let read = version(s, school, "lock").await;
        if attempts.fetch_add(1, Ordering::Relaxed) == 0 {
            append_json(s, school, "lock", &[("Reopened", json!({}))]).await;
        }
        Ok::<_, CommandError<()>>(Decision {
            version: 0,
            guards: vec![StreamGuard {
                stream: stream("lock"),
                version: read,
            }],
            events: new_events([("Graded", json!({}))])?,
        })
    };
    command::execute(s, school, &target, metadata, &"b", None, fresh)
        .await
        .unwrap();
    assert_eq!(attempts.load(Ordering::Relaxed), 2);
    assert_eq!(version(s, school, "record").await, 1);
}

#[tokio::test]
async fn sqlite_guards_are_checked_and_decided_again() {
    let (_dir, store) = registro_testkit::sqlite_store().await;
    guards_are_checked_and_decided_again(store).await;
}

#[tokio::test]
async fn postgres_guards_are_checked_and_decided_again() {
    let db = TestDb::new().await;
    guards_are_checked_and_decided_again(Arc::new(db.store().await)).await;
}
