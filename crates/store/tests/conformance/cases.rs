//! The cases, each written once against the port.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use registro_domain::{CausationId, ContentHash, PersonId, Role, SchoolId};
use registro_store::seal::{ERASED_TAG, SEALED_TAG, is_erased};
use registro_store::subscription::Subscription;
use registro_store::verify::{Verification, verify_school};
use registro_store::{
    AppendOutcome, AppendRequest, AttachmentMeta, Backend, Batch, Cell, CellType, CommandMetadata,
    EventStore, EventType, ExpectedVersion, IdempotencyKey, MAX_MEDIA_TYPE_CHARS, MasterKey,
    NewEvent, Position, ProjectionLease, ProjectionQuery, ProjectionSchema, Read, RecordedEvent,
    RowOp, Sealed, StoreError, StreamGuard, StreamId,
};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use time::OffsetDateTime;
use time::macros::datetime;
use uuid::Uuid;

use crate::harness::Harness;

/// A bound for waits that must end; reaching it is a failure, not a speed measure.
const PATIENCE: Duration = Duration::from_secs(30);

fn event(kind: &str, data: Value) -> NewEvent {
    NewEvent::new(
        EventType::parse(kind).unwrap(),
        data,
        datetime!(2025-09-15 08:00:00.123456789 UTC),
    )
}

fn stream(name: &str) -> StreamId {
    StreamId::parse(name).unwrap()
}

fn request(
    school: SchoolId,
    s: &str,
    expected: ExpectedVersion,
    events: Vec<NewEvent>,
) -> AppendRequest {
    AppendRequest {
        guards: Vec::new(),
        school,
        stream: stream(s),
        expected,
        events,
        metadata: CommandMetadata::system(),
        idempotency_key: None,
        command_digest: None,
    }
}

async fn append_n(h: &Harness, school: SchoolId, s: &str, n: usize) -> AppendOutcome {
    let events = (0..n)
        .map(|i| event("Numbered", json!({ "n": i })))
        .collect();
    h.store
        .append(request(school, s, ExpectedVersion::Any, events))
        .await
        .unwrap()
}

async fn whole_stream(h: &Harness, school: SchoolId, s: &str) -> Vec<RecordedEvent> {
    h.store
        .read_stream(school, &stream(s), 1, 10_000)
        .await
        .unwrap()
}

/// Follows the log from the start until `n` events have come. On PostgreSQL the fence is
/// cluster-wide: an open transaction anywhere (another test's database included) holds delivery
/// back until it ends, so delivery is awaited, never assumed immediate.
async fn read_all_eventually(h: &Harness, n: usize) -> Vec<RecordedEvent> {
    let mut sub = Subscription::new(
        Arc::clone(&h.store),
        Position::START,
        1_000,
        Duration::from_millis(20),
    );
    let mut out = Vec::new();
    while out.len() < n {
        let batch = tokio::time::timeout(PATIENCE, sub.next_batch())
            .await
            .unwrap_or_else(|_| panic!("only {} of {n} events were delivered", out.len()))
            .unwrap();
        out.extend(batch);
    }
    assert_eq!(out.len(), n, "more events than expected");
    out
}

async fn head_seq(h: &Harness, school: SchoolId) -> u64 {
    h.store
        .school_head(school)
        .await
        .unwrap()
        .map_or(0, |h| h.last_seq)
}

pub async fn appended_events_read_back_exactly(h: &Harness) {
    let school = SchoolId::new();
    let actor = PersonId::new();
    let mut metadata = CommandMetadata::by(actor, Role::Teacher);
    metadata.causation_id = Some(CausationId::new());
    let events = vec![
        event(
            "AbsenceRecorded",
            json!({"student": "s1", "hours": 5, "note": "é \"q\" \n"}),
        ),
        event(
            "LateEntryRecorded",
            json!({"student": "s1", "at": "09:10", "list": [1, -2, null, true]}),
        ),
    ];
    let req = AppendRequest {
        guards: Vec::new(),
        school,
        stream: stream("student-s1-2025"),
        expected: ExpectedVersion::NoStream,
        events: events.clone(),
        metadata: metadata.clone(),
        idempotency_key: Some(IdempotencyKey::parse("k-1").unwrap()),
        command_digest: None,
    };
    let before = OffsetDateTime::now_utc();
    let outcome = h.store.append(req).await.unwrap();
    assert_eq!(
        outcome,
        AppendOutcome {
            stream_version: 2,
            first_seq: 1,
            last_seq: 2,
            replayed: false
        }
    );

    let read = whole_stream(h, school, "student-s1-2025").await;
    assert_eq!(read.len(), 2);
    for (i, (got, sent)) in read.iter().zip(&events).enumerate() {
        let n = i as u64 + 1;
        assert_eq!(got.event_id, sent.event_id);
        assert_eq!(got.school_id, school);
        assert_eq!((got.school_seq, got.stream_version), (n, n));
        assert_eq!(got.event_type, sent.event_type);
        assert_eq!(got.schema_version, 1);
        assert_eq!(got.data, sent.data);
        assert_eq!(got.actor_id, Some(actor));
        assert_eq!(got.actor_role, Role::Teacher);
        assert_eq!(got.correlation_id, metadata.correlation_id);
        assert_eq!(got.causation_id, metadata.causation_id);
        assert_eq!(
            got.idempotency_key.as_ref().map(|k| k.as_str()),
            Some("k-1")
        );
        // Business time is kept to the microsecond; server time is the append's.
        assert_eq!(got.occurred_at, datetime!(2025-09-15 08:00:00.123456 UTC));
        assert!(got.recorded_at >= before - Duration::from_secs(1));
    }
    assert_eq!(read[0].prev_hash, registro_store::Hash::GENESIS);
    assert_eq!(read[1].prev_hash, read[0].hash);
    assert_eq!(
        read[0].stored_data,
        r#"{"hours":5,"note":"é \"q\" \n","student":"s1"}"#
    );
    let head = h.store.school_head(school).await.unwrap().unwrap();
    assert_eq!((head.last_seq, head.hash), (2, read[1].hash));
    // Other schools see nothing of it.
    assert!(
        whole_stream(h, SchoolId::new(), "student-s1-2025")
            .await
            .is_empty()
    );
    assert_eq!(h.store.school_head(SchoolId::new()).await.unwrap(), None);
}

pub async fn two_writers_with_the_same_expected_version_exactly_one_wins(h: &Harness) {
    let school = SchoolId::new();
    append_n(h, school, "class-3a", 1).await;
    let writers = (0..8).map(|i| {
        let store = Arc::clone(&h.store);
        tokio::spawn(async move {
            store
                .append(request(
                    school,
                    "class-3a",
                    ExpectedVersion::Exact(1),
                    vec![event("Signed", json!({"w": i}))],
                ))
                .await
        })
    });
    let results: Vec<_> = futures_util::future::join_all(writers)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let winners = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(winners, 1, "exactly one writer wins: {results:?}");
    for r in &results {
        if let Err(e) = r {
            assert!(
                matches!(e, StoreError::Conflict { actual: 2, .. }),
                "losers get a typed conflict: {e:?}"
            );
        }
    }
    assert_eq!(whole_stream(h, school, "class-3a").await.len(), 2);
    assert_eq!(head_seq(h, school).await, 2);
}

pub async fn a_wrong_expected_version_is_a_conflict_and_writes_nothing(h: &Harness) {
    let school = SchoolId::new();
    append_n(h, school, "s", 2).await;
    for expected in [
        ExpectedVersion::NoStream,
        ExpectedVersion::Exact(1),
        ExpectedVersion::Exact(3),
    ] {
        let err = h
            .store
            .append(request(school, "s", expected, vec![event("X", json!({}))]))
            .await
            .unwrap_err();
        match err {
            StoreError::Conflict {
                stream: s,
                expected: e,
                actual,
            } => {
                assert_eq!((s.as_str(), e, actual), ("s", expected, 2));
            }
            other => panic!("expected a conflict, got {other:?}"),
        }
    }
    let err = h
        .store
        .append(request(
            school,
            "new",
            ExpectedVersion::Exact(1),
            vec![event("X", json!({}))],
        ))
        .await;
    assert!(matches!(err, Err(StoreError::Conflict { actual: 0, .. })));
    assert_eq!(head_seq(h, school).await, 2, "nothing was written");
    let ok = h
        .store
        .append(request(
            school,
            "s",
            ExpectedVersion::Exact(2),
            vec![event("X", json!({}))],
        ))
        .await
        .unwrap();
    assert_eq!((ok.stream_version, ok.last_seq), (3, 3));
}

/// Fifty appends at once to one stream, all expecting the version they read: exactly one is
/// written, the others are conflicts, and the stream has no duplicate.
pub async fn fifty_writers_at_one_expected_version_one_wins(h: &Harness) {
    let school = SchoolId::new();
    append_n(h, school, "s", 3).await;
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let store = Arc::clone(&h.store);
            tokio::spawn(async move {
                store
                    .append(request(
                        school,
                        "s",
                        ExpectedVersion::Exact(3),
                        vec![event("Raced", json!({ "writer": i }))],
                    ))
                    .await
            })
        })
        .collect();
    let (mut won, mut conflicts) = (0, 0);
    for task in tasks {
        match task.await.unwrap() {
            Ok(outcome) => {
                won += 1;
                assert_eq!(outcome.stream_version, 4);
            }
            Err(StoreError::Conflict { actual: 4, .. }) => conflicts += 1,
            Err(other) => panic!("neither written nor a conflict: {other:?}"),
        }
    }
    assert_eq!((won, conflicts), (1, 49));
    let events = whole_stream(h, school, "s").await;
    assert_eq!(events.len(), 4, "one event more, no duplicate");
    assert_eq!(head_seq(h, school).await, 4);
}

/// A decision that read other streams appends only while they stand as it read them: a moved
/// guard stream is a conflict naming it, and nothing is written; guards of streams with no
/// events are at version 0.
pub async fn a_moved_guard_stream_is_a_conflict_and_writes_nothing(h: &Harness) {
    let school = SchoolId::new();
    append_n(h, school, "lock", 2).await;
    let guarded = |version: u64| {
        let mut r = request(
            school,
            "record",
            ExpectedVersion::Any,
            vec![event("X", json!({}))],
        );
        r.guards = vec![
            StreamGuard {
                stream: stream("lock"),
                version,
            },
            StreamGuard {
                stream: stream("never-written"),
                version: 0,
            },
        ];
        r
    };
    for stale in [1, 3] {
        match h.store.append(guarded(stale)).await {
            Err(StoreError::Conflict {
                stream: s,
                expected,
                actual,
            }) => assert_eq!(
                (s.as_str(), expected, actual),
                ("lock", ExpectedVersion::Exact(stale), 2)
            ),
            other => panic!("expected a conflict on the guard, got {other:?}"),
        }
    }
    assert_eq!(head_seq(h, school).await, 2, "nothing was written");
    let ok = h.store.append(guarded(2)).await.unwrap();
    assert_eq!((ok.stream_version, ok.last_seq), (1, 3));
    // Another school's stream of the same name is not this school's.
    let other = SchoolId::new();
    let mut r = request(
        other,
        "record",
        ExpectedVersion::Any,
        vec![event("X", json!({}))],
    );
    r.guards = vec![StreamGuard {
        stream: stream("lock"),
        version: 0,
    }];
    h.store.append(r).await.unwrap();
}

/// Exports a school's log from a SQLite instance of its own (with sealed data, an erased
/// subject and an attachment) and imports it here: a changed byte stops the import at its
/// `school_seq`, a truncated file, sealed data without its key and an existing school are
/// refused, and each time nothing of the school is left; the import that succeeds verifies
/// with the same head, opens the sealed data with the bundle's keys and keeps the erasure.
pub async fn an_export_imported_elsewhere_verifies_with_the_same_head(h: &Harness) {
    use registro_store::portable::{Exporter, import};
    let (_dir, source) = registro_testkit::sqlite_store().await;
    let school = SchoolId::new();
    let (anna, marco) = (PersonId::new(), PersonId::new());
    let pdf = b"%PDF-1.4 circolare".to_vec();
    let attachment = source
        .put_attachment(school, "application/pdf", &pdf)
        .await
        .unwrap();
    let sealed = event("JustificationSubmitted", json!({"text": "visita"})).seal("/text", anna);
    let erased = event("NoteRecorded", json!({"plan": {"pei": true}})).seal("/plan", marco);
    source
        .append(request(
            school,
            "record-a",
            ExpectedVersion::Any,
            vec![sealed, erased],
        ))
        .await
        .unwrap();
    let published =
        json!({"attachments": [{"hash": attachment.hash.to_string(), "name": "c.pdf"}]});
    source
        .append(request(
            school,
            "communications",
            ExpectedVersion::Any,
            vec![event("CommunicationPublished", published)],
        ))
        .await
        .unwrap();
    for n in 0..3 {
        source
            .append(request(
                school,
                "record-a",
                ExpectedVersion::Any,
                vec![event("X", json!({"n": n}))],
            ))
            .await
            .unwrap();
    }
    assert!(source.destroy_subject_key(school, marco).await.unwrap());
    // Luca's erasure is in the log, but the bundle below was taken while his key still lived.
    let luca = PersonId::new();
    let therapy = event("JustificationSubmitted", json!({"text": "terapia"})).seal("/text", luca);
    let erasure = event(
        "SealedDataErased",
        json!({"subject": luca.to_string(), "reason": "retention"}),
    );
    source
        .append(request(
            school,
            "record-b",
            ExpectedVersion::Any,
            vec![therapy, erasure],
        ))
        .await
        .unwrap();
    let mut exporter = Exporter::new(Arc::clone(&source), school, "test")
        .await
        .unwrap();
    let mut text = String::new();
    while let Some(chunk) = exporter.next_chunk().await.unwrap() {
        text.push_str(&chunk);
    }
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines.len(),
        1 + 8 + 1,
        "manifest, events, attachment: {text}"
    );
    let source_head = source.school_head(school).await.unwrap().unwrap();
    let keys = || async { source.subject_keys(school).await.unwrap() };
    let run = |file: String, keys: Vec<_>| async move {
        let read = Arc::new(std::sync::atomic::AtomicU64::new(0));
        import(h.store.as_ref(), std::io::Cursor::new(file), keys, read).await
    };
    let nothing_left = || async {
        assert_eq!(h.store.school_head(school).await.unwrap(), None);
        assert!(h.store.subject_keys(school).await.unwrap().is_empty());
        assert_eq!(
            h.store
                .attachment_meta(school, &attachment.hash)
                .await
                .unwrap(),
            None
        );
        assert!(
            h.store
                .read_school(school, 1, 10, Sealed::Keep)
                .await
                .unwrap()
                .is_empty()
        );
    };
    // A changed byte in event 3's data: the chain breaks there.
    let changed = text.replacen("\"n\":0", "\"n\":7", 1);
    assert_ne!(changed, text);
    match run(changed, keys().await).await {
        Err(StoreError::ChainBroken { school_seq, .. }) => assert_eq!(school_seq, 4),
        other => panic!("expected a broken chain, got {other:?}"),
    }
    nothing_left().await;
    // Truncated: the last event is missing.
    let truncated: String = lines[..8]
        .iter()
        .chain(&lines[9..])
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(matches!(
        run(truncated, keys().await).await,
        Err(StoreError::ImportRefused(_))
    ));
    nothing_left().await;
    // Cut after the events: the attachment they name never came.
    let without_attachment: String = lines[..9].iter().map(|l| format!("{l}\n")).collect();
    match run(without_attachment, keys().await).await {
        Err(StoreError::ImportRefused(why)) => assert!(why.contains("attachment"), "{why}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    nothing_left().await;
    // Sealed data without its key bundle.
    match run(text.clone(), Vec::new()).await {
        Err(StoreError::ImportRefused(why)) => assert!(why.contains("key bundle"), "{why}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    nothing_left().await;

    let imported = run(text.clone(), keys().await).await.unwrap();
    assert_eq!((imported.events, imported.attachments), (8, 1));
    assert_eq!(
        verify_school(h.store.as_ref(), school).await.unwrap(),
        Verification::Intact {
            events: 8,
            head: Some(source_head.hash)
        }
    );
    let here = whole_stream(h, school, "record-a").await;
    assert_eq!(
        here[0].data,
        json!({"text": "visita"}),
        "opened with the bundle's key"
    );
    assert!(is_erased(&here[1].data["plan"]), "still erased");
    let luca_here = whole_stream(h, school, "record-b").await;
    assert!(
        is_erased(&luca_here[0].data["text"]),
        "the log's erasure wins over the bundle's live key: {}",
        luca_here[0].data
    );
    let there = source
        .read_school(school, 1, 10, Sealed::Keep)
        .await
        .unwrap();
    let kept = h
        .store
        .read_school(school, 1, 10, Sealed::Keep)
        .await
        .unwrap();
    let envelope = |e: &RecordedEvent| {
        (
            e.event_id,
            e.school_seq,
            e.stream_id.clone(),
            e.stream_version,
            e.stored_data.clone(),
            e.recorded_at,
            e.hash,
        )
    };
    assert_eq!(
        kept.iter().map(envelope).collect::<Vec<_>>(),
        there.iter().map(envelope).collect::<Vec<_>>()
    );
    let (_, bytes) = h
        .store
        .attachment(school, &attachment.hash)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(bytes, pdf);
    // Appends go on from the imported head.
    let next = h
        .store
        .append(request(
            school,
            "record-a",
            ExpectedVersion::Exact(5),
            vec![event("X", json!({}))],
        ))
        .await
        .unwrap();
    assert_eq!(next.last_seq, 9);
    assert!(matches!(
        verify_school(h.store.as_ref(), school).await.unwrap(),
        Verification::Intact { events: 9, .. }
    ));
    // A school that is here already is not imported again.
    match run(text, keys().await).await {
        Err(StoreError::ImportRefused(why)) => assert!(why.contains("already"), "{why}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

pub async fn an_idempotent_retry_returns_the_first_result_and_appends_nothing(h: &Harness) {
    let school = SchoolId::new();
    append_n(h, school, "s", 1).await;
    let justify = event(
        "JustificationSubmitted",
        json!({"absence": "a1", "reason": "family"}),
    );
    let mut req = request(
        school,
        "s",
        ExpectedVersion::Exact(1),
        vec![justify.clone()],
    );
    req.idempotency_key = Some(IdempotencyKey::parse("tap-1").unwrap());
    let first = h.store.append(req.clone()).await.unwrap();
    assert!(!first.replayed);

    // The double tap: same key, same request, even with the now stale expected version.
    let again = h.store.append(req.clone()).await.unwrap();
    assert_eq!(
        again,
        AppendOutcome {
            replayed: true,
            ..first.clone()
        }
    );
    assert_eq!(whole_stream(h, school, "s").await.len(), 2);

    // Concurrent retries: still one append.
    let retries = (0..6).map(|_| {
        let (store, req) = (Arc::clone(&h.store), req.clone());
        tokio::spawn(async move { store.append(req).await })
    });
    for r in futures_util::future::join_all(retries).await {
        assert_eq!(r.unwrap().unwrap().last_seq, first.last_seq);
    }
    assert_eq!(head_seq(h, school).await, 2);

    // The same key for another request is refused.
    let mut other = request(
        school,
        "s",
        ExpectedVersion::Any,
        vec![event("JustificationSubmitted", json!({"absence": "a2"}))],
    );
    other.idempotency_key = req.idempotency_key.clone();
    assert!(
        matches!(h.store.append(other).await, Err(StoreError::IdempotencyMismatch { key }) if key == "tap-1")
    );
    // ... and so is the same request under the same key from another person.
    let mut someone_else = req.clone();
    someone_else.metadata = CommandMetadata::by(PersonId::new(), Role::Guardian);
    assert!(matches!(
        h.store.append(someone_else).await,
        Err(StoreError::IdempotencyMismatch { .. })
    ));
    // Keys belong to a school: another school may use the same key.
    let mut elsewhere = req.clone();
    elsewhere.school = SchoolId::new();
    elsewhere.expected = ExpectedVersion::Any;
    assert!(!h.store.append(elsewhere).await.unwrap().replayed);
    assert_eq!(head_seq(h, school).await, 2);
}

/// A command executor decides again on a retry, against a stream that may have moved on; with
/// the command's digest the retry is still the same request, and `replay_of` finds it first.
pub async fn a_command_digest_makes_a_re_decided_retry_a_replay(h: &Harness) {
    let school = SchoolId::new();
    let key = IdempotencyKey::parse("register-1").unwrap();
    let digest = [7u8; 32];
    let mut req = request(
        school,
        "directory",
        ExpectedVersion::NoStream,
        vec![event("PersonRegistered", json!({"n": 1}))],
    );
    req.idempotency_key = Some(key.clone());
    req.command_digest = Some(digest);
    let fingerprint = registro_store::command_fingerprint(&req.stream, &req.metadata, &digest);
    assert_eq!(
        h.store.replay_of(school, &key, &fingerprint).await.unwrap(),
        None
    );
    let first = h.store.append(req.clone()).await.unwrap();
    assert_eq!(
        h.store.replay_of(school, &key, &fingerprint).await.unwrap(),
        Some(AppendOutcome {
            replayed: true,
            ..first.clone()
        })
    );
    // Re-decided: other events, another expected version, the same digest: a replay.
    let mut retry = req.clone();
    retry.expected = ExpectedVersion::Exact(1);
    retry.events = vec![event("SomethingElse", json!({"n": 2}))];
    let again = h.store.append(retry).await.unwrap();
    assert!(again.replayed);
    assert_eq!(again.last_seq, first.last_seq);
    assert_eq!(head_seq(h, school).await, 1);
    // Another command under the same key is refused, by the look-up and by the append.
    let other = registro_store::command_fingerprint(&req.stream, &req.metadata, &[8u8; 32]);
    assert!(matches!(
        h.store.replay_of(school, &key, &other).await,
        Err(StoreError::IdempotencyMismatch { .. })
    ));
    let mut different = req.clone();
    different.command_digest = Some([8u8; 32]);
    assert!(matches!(
        h.store.append(different).await,
        Err(StoreError::IdempotencyMismatch { .. })
    ));
    // Another school never sees the key.
    assert_eq!(
        h.store
            .replay_of(SchoolId::new(), &key, &fingerprint)
            .await
            .unwrap(),
        None
    );
}

pub async fn an_append_is_atomic(h: &Harness) {
    let school = SchoolId::new();
    let first = event("X", json!({}));
    h.store
        .append(request(
            school,
            "a",
            ExpectedVersion::Any,
            vec![first.clone()],
        ))
        .await
        .unwrap();
    // The second event reuses a stored event id: the whole batch fails, nothing of it stays.
    let batch = vec![
        event("Y", json!({"i": 1})),
        NewEvent {
            event_id: first.event_id,
            ..event("Y", json!({"i": 2}))
        },
    ];
    let err = h
        .store
        .append(request(school, "b", ExpectedVersion::Any, batch))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict { .. }),
        "a unique violation is a conflict: {err:?}"
    );
    assert!(whole_stream(h, school, "b").await.is_empty());
    assert_eq!(head_seq(h, school).await, 1);
    // The chain goes on from where it was.
    append_n(h, school, "b", 2).await;
    assert!(matches!(
        verify_school(h.store.as_ref(), school).await.unwrap(),
        Verification::Intact { events: 3, .. }
    ));
}

pub async fn invalid_events_are_rejected_and_nothing_is_written(h: &Harness) {
    let school = SchoolId::new();
    append_n(h, school, "s", 1).await;
    let bad: Vec<(Vec<NewEvent>, &str)> = vec![
        (vec![], "at least one event"),
        (vec![event("Graded", json!({"value": 6.25}))], "integer"),
        (
            vec![event("Graded", json!({"value": 9_007_199_254_740_992_u64}))],
            "integer",
        ),
        (vec![event("Noted", json!({"text": "a\u{0}b"}))], "U+0000"),
        (
            vec![event("Noted", json!(["not", "an", "object"]))],
            "object",
        ),
        (
            vec![event("Noted", json!({"text": "x".repeat(300 * 1024)}))],
            "bytes",
        ),
        (
            vec![event("Noted", json!({"a": 1})).seal("/missing", PersonId::new())],
            "points at nothing",
        ),
        (
            vec![event("Ok", json!({})), event("Graded", json!({"v": 0.5}))],
            "integer",
        ),
        // Only the store writes sealed and erased markers: a forged one would make every read
        // of the log fail on a key that does not exist.
        (
            vec![event(
                "Forged",
                json!({"r": {"$sealed": {"subject": PersonId::new().to_string()}}}),
            )],
            "reserved",
        ),
        (
            vec![event("Forged", json!({"list": [{"$erased": {}}]}))],
            "reserved",
        ),
        (
            vec![NewEvent {
                schema_version: 0,
                ..event("Versioned", json!({}))
            }],
            "schema_version",
        ),
        (
            vec![NewEvent {
                schema_version: u32::MAX,
                ..event("Versioned", json!({}))
            }],
            "schema_version",
        ),
    ];
    for (events, why) in bad {
        match h
            .store
            .append(request(school, "s", ExpectedVersion::Any, events))
            .await
        {
            Err(StoreError::InvalidEvent(msg)) => {
                assert!(msg.contains(why), "{msg:?} should mention {why:?}")
            }
            other => panic!("expected InvalidEvent ({why}), got {other:?}"),
        }
    }
    assert_eq!(head_seq(h, school).await, 1);
}

pub async fn school_sequences_are_dense_under_concurrency(h: &Harness) {
    let schools = [SchoolId::new(), SchoolId::new(), SchoolId::new()];
    let events_of = |i: usize| 1 + (i / 3) % 3;
    let tasks = (0..30).map(|i| {
        let store = Arc::clone(&h.store);
        let school = schools[i % 3];
        tokio::spawn(async move {
            let events = (0..events_of(i))
                .map(|j| event("E", json!({"i": i, "j": j})))
                .collect();
            store
                .append(request(
                    school,
                    &format!("s{}", i % 5),
                    ExpectedVersion::Any,
                    events,
                ))
                .await
                .unwrap()
        })
    });
    futures_util::future::join_all(tasks).await;
    let mut all = Vec::new();
    for (k, school) in schools.into_iter().enumerate() {
        let expected: usize = (0..30).filter(|i| i % 3 == k).map(events_of).sum();
        let events = h
            .store
            .read_school(school, 1, 10_000, Sealed::Keep)
            .await
            .unwrap();
        let seqs: Vec<u64> = events.iter().map(|e| e.school_seq).collect();
        assert_eq!(
            seqs,
            (1..=seqs.len() as u64).collect::<Vec<_>>(),
            "dense from 1"
        );
        assert_eq!(seqs.len(), expected, "10 appends of 1, 2 or 3 events");
        let verified = verify_school(h.store.as_ref(), school).await.unwrap();
        assert!(
            matches!(verified, Verification::Intact { events, .. } if events == expected as u64)
        );
        all.extend(events.into_iter().map(|e| e.event_id));
    }
    // The subscription sees each of the 60 events once, in strictly increasing positions.
    let read = read_all_eventually(h, all.len()).await;
    assert!(read.windows(2).all(|w| w[0].position < w[1].position));
    assert_eq!(
        read.iter().map(|e| e.event_id).collect::<HashSet<_>>(),
        all.into_iter().collect()
    );
}

pub async fn the_chain_verifies_and_a_changed_byte_is_found_at_its_school_seq(h: &Harness) {
    let school = SchoolId::new();
    let other = SchoolId::new();
    append_n(h, school, "a", 3).await;
    append_n(h, other, "a", 2).await;
    append_n(h, school, "b", 2).await;
    let head = h.store.school_head(school).await.unwrap().unwrap();
    assert_eq!(
        verify_school(h.store.as_ref(), school).await.unwrap(),
        Verification::Intact {
            events: 5,
            head: Some(head.hash)
        }
    );
    assert_eq!(
        verify_school(h.store.as_ref(), SchoolId::new())
            .await
            .unwrap(),
        Verification::Intact {
            events: 0,
            head: None
        }
    );
    // One byte: "n":2 becomes "n":3 in the third event.
    let third = &h
        .store
        .read_school(school, 3, 1, Sealed::Keep)
        .await
        .unwrap()[0];
    assert_eq!(third.stored_data, r#"{"n":2}"#);
    h.tamper_data(school, 3, r#"{"n":3}"#).await;
    match verify_school(h.store.as_ref(), school).await.unwrap() {
        Verification::Broken { school_seq, reason } => {
            assert_eq!(school_seq, 3);
            assert!(reason.contains("altered"), "{reason}");
        }
        intact => panic!("tampering went unnoticed: {intact:?}"),
    }
    // The other school's chain is its own and still verifies.
    assert!(matches!(
        verify_school(h.store.as_ref(), other).await.unwrap(),
        Verification::Intact { events: 2, .. }
    ));
}

pub async fn a_removed_last_event_is_found(h: &Harness) {
    let school = SchoolId::new();
    append_n(h, school, "a", 4).await;
    h.tamper_delete(school, 4).await;
    match verify_school(h.store.as_ref(), school).await.unwrap() {
        Verification::Broken { school_seq, reason } => {
            assert_eq!(school_seq, 4);
            assert!(reason.contains("removed"), "{reason}");
        }
        intact => panic!("a removed event went unnoticed: {intact:?}"),
    }
    append_n(h, SchoolId::new(), "x", 1).await; // the store still works
}

/// On PostgreSQL an append held open in school A does not stop school B: B commits while A
/// waits. SQLite has one writer per file: B waits for A's commit, and still succeeds after it.
pub async fn an_open_append_in_one_school_and_an_append_in_another(h: &Harness) {
    let (a, b) = (SchoolId::new(), SchoolId::new());
    let mut held = h
        .held
        .append_held(request(
            a,
            "s",
            ExpectedVersion::Any,
            vec![event("A", json!({}))],
        ))
        .await;
    held.wait_appended().await;
    let store = Arc::clone(&h.store);
    let b_append = tokio::spawn(async move {
        store
            .append(request(
                b,
                "s",
                ExpectedVersion::Any,
                vec![event("B", json!({}))],
            ))
            .await
    });
    match h.backend() {
        Backend::Postgres => {
            let b_outcome = tokio::time::timeout(PATIENCE, b_append)
                .await
                .expect("school B waited for school A's open transaction")
                .unwrap()
                .unwrap();
            assert_eq!(b_outcome.last_seq, 1);
            assert_eq!(held.commit().await.unwrap().last_seq, 1);
        }
        Backend::Sqlite => {
            assert_eq!(held.commit().await.unwrap().last_seq, 1);
            let b_outcome = tokio::time::timeout(PATIENCE, b_append)
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            assert_eq!(b_outcome.last_seq, 1);
            // One writer: A committed first, so A comes first in the log.
            let all = read_all_eventually(h, 2).await;
            assert_eq!(
                all.iter().map(|e| e.school_id).collect::<Vec<_>>(),
                vec![a, b]
            );
        }
    }
    assert_eq!(head_seq(h, a).await, 1);
    assert_eq!(head_seq(h, b).await, 1);
}

/// The delayed-commit case. Transaction A appends (school A) and waits before committing;
/// B appends (school B) and commits meanwhile (on SQLite, B waits for A: one writer). A
/// subscriber polling meanwhile must not pass A's event, and must deliver both, each once,
/// after A commits.
///
/// This test fails when the fence `tx < pg_snapshot_xmin(pg_current_snapshot())` is removed
/// from the PostgreSQL subscription read: the subscriber then delivers B, moves its checkpoint
/// past B's `(tx, id)`, and A, whose transaction id is lower, is skipped forever once it
/// commits.
pub async fn a_subscriber_never_passes_a_transaction_that_commits_late(h: &Harness) {
    let (a, b) = (SchoolId::new(), SchoolId::new());
    let mut sub = Subscription::new(
        Arc::clone(&h.store),
        Position::START,
        100,
        Duration::from_millis(20),
    );
    assert!(sub.try_next_batch().await.unwrap().is_none());

    let event_a = event("A", json!({}));
    let event_b = event("B", json!({}));
    let mut held = h
        .held
        .append_held(request(a, "s", ExpectedVersion::Any, vec![event_a.clone()]))
        .await;
    held.wait_appended().await;
    let store = Arc::clone(&h.store);
    let req_b = request(b, "s", ExpectedVersion::Any, vec![event_b.clone()]);
    let b_append = tokio::spawn(async move { store.append(req_b).await });
    if h.backend() == Backend::Postgres {
        tokio::time::timeout(PATIENCE, b_append)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        // B is committed, A is not: the subscriber must deliver nothing yet.
        for _ in 0..5 {
            assert!(
                sub.try_next_batch().await.unwrap().is_none(),
                "the subscriber passed the open transaction A"
            );
        }
        held.commit().await.unwrap();
    } else {
        assert!(sub.try_next_batch().await.unwrap().is_none());
        held.commit().await.unwrap();
        tokio::time::timeout(PATIENCE, b_append)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }

    let mut delivered = Vec::new();
    while delivered.len() < 2 {
        let batch = tokio::time::timeout(PATIENCE, sub.next_batch())
            .await
            .expect("the subscriber never delivered both events")
            .unwrap();
        delivered.extend(batch.into_iter().map(|e| e.event_id));
    }
    assert_eq!(
        delivered,
        vec![event_a.event_id, event_b.event_id],
        "both, once, in commit-safe order"
    );
    assert!(
        sub.try_next_batch().await.unwrap().is_none(),
        "nothing is delivered twice"
    );
}

pub async fn large_reads_come_in_pages(h: &Harness) {
    let school = SchoolId::new();
    for _ in 0..5 {
        append_n(h, school, "big", 500).await;
    }
    let mut seen = Vec::new();
    let mut from = 1;
    loop {
        let page = h
            .store
            .read_school(school, from, 1_000, Sealed::Open)
            .await
            .unwrap();
        assert!(page.len() <= 1_000);
        if page.is_empty() {
            break;
        }
        from = page.last().unwrap().school_seq + 1;
        seen.extend(page.iter().map(|e| e.school_seq));
    }
    assert_eq!(seen, (1..=2_500).collect::<Vec<_>>());
    let stream_page = h
        .store
        .read_stream(school, &stream("big"), 2_001, 300)
        .await
        .unwrap();
    assert_eq!(stream_page.len(), 300);
    assert_eq!(stream_page[0].stream_version, 2_001);
    // A limit beyond the maximum page is lowered, not an error.
    assert_eq!(
        h.store
            .read_school(school, 1, 1_000_000, Sealed::Keep)
            .await
            .unwrap()
            .len(),
        2_500
    );

    let mut sub = Subscription::new(
        Arc::clone(&h.store),
        Position::START,
        700,
        Duration::from_millis(20),
    );
    let mut count = 0;
    while count < 2_500 {
        let batch = tokio::time::timeout(PATIENCE, sub.next_batch())
            .await
            .unwrap()
            .unwrap();
        assert!(batch.len() <= 700);
        count += batch.len();
    }
    assert_eq!(count, 2_500);
    assert!(sub.try_next_batch().await.unwrap().is_none());
    assert!(matches!(
        verify_school(h.store.as_ref(), school).await.unwrap(),
        Verification::Intact { events: 2_500, .. }
    ));
}

pub async fn sealed_fields_round_trip_and_erasure_keeps_the_chain_verifiable(h: &Harness) {
    let school = SchoolId::new();
    let (anna, marco) = (PersonId::new(), PersonId::new());
    let justification =
        json!({"absence": "a1", "category": "health", "text": "visita specialistica"});
    let e1 = event("JustificationSubmitted", justification.clone()).seal("/text", anna);
    let e2 = event(
        "NoteRecorded",
        json!({"student": "m", "disability": {"plan": "PEI"}}),
    )
    .seal("/disability", marco);
    let mut sealed_request = request(school, "s", ExpectedVersion::Any, vec![e1, e2]);
    sealed_request.idempotency_key = Some(IdempotencyKey::parse("justify-1").unwrap());
    let first = h.store.append(sealed_request.clone()).await.unwrap();

    let read = whole_stream(h, school, "s").await;
    assert_eq!(read[0].data, justification, "opened with the key");
    assert_eq!(read[1].data["disability"], json!({"plan": "PEI"}));
    assert!(
        !read[0].stored_data.contains("specialistica"),
        "stored in clear: {}",
        read[0].stored_data
    );
    let kept = h
        .store
        .read_school(school, 1, 10, Sealed::Keep)
        .await
        .unwrap();
    assert!(kept[0].data["text"].get(SEALED_TAG).is_some());
    assert_eq!(
        kept[0].data["category"], "health",
        "only the sealed field is hidden"
    );
    let before = verify_school(h.store.as_ref(), school).await.unwrap();

    assert!(h.store.destroy_subject_key(school, anna).await.unwrap());
    assert!(
        !h.store.destroy_subject_key(school, anna).await.unwrap(),
        "already destroyed"
    );
    let read = whole_stream(h, school, "s").await;
    assert!(is_erased(&read[0].data["text"]), "{}", read[0].data);
    assert_eq!(
        read[0].data["text"][ERASED_TAG]["subject"],
        anna.to_string()
    );
    assert_eq!(read[0].data["category"], "health");
    assert_eq!(
        read[1].data["disability"],
        json!({"plan": "PEI"}),
        "other subjects are untouched"
    );
    assert_eq!(
        verify_school(h.store.as_ref(), school).await.unwrap(),
        before,
        "erasure never breaks the chain"
    );
    let all = read_all_eventually(h, 2).await;
    assert!(is_erased(&all[0].data["text"]));

    // A retry of the original append still gets its first result.
    assert_eq!(
        h.store.append(sealed_request).await.unwrap(),
        AppendOutcome {
            replayed: true,
            ..first
        }
    );
    // No new sealed data for an erased subject; nothing is written.
    let again = event("JustificationSubmitted", json!({"text": "x"})).seal("/text", anna);
    let err = h
        .store
        .append(request(school, "s", ExpectedVersion::Any, vec![again]))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::SubjectErased { subject, .. } if subject == anna));
    // Erasing a subject who never had sealed data also bars it for the future.
    let luca = PersonId::new();
    assert!(!h.store.destroy_subject_key(school, luca).await.unwrap());
    let err = h
        .store
        .append(request(
            school,
            "s",
            ExpectedVersion::Any,
            vec![event("N", json!({"t": 1})).seal("/t", luca)],
        ))
        .await;
    assert!(matches!(err, Err(StoreError::SubjectErased { .. })));
    assert_eq!(head_seq(h, school).await, 2);
    // Keys belong to a school: the same person id elsewhere has a key of its own.
    let other = SchoolId::new();
    h.store
        .append(request(
            other,
            "s",
            ExpectedVersion::Any,
            vec![event("N", json!({"t": 1})).seal("/t", anna)],
        ))
        .await
        .unwrap();
    assert_eq!(whole_stream(h, other, "s").await[0].data["t"], 1);
}

pub async fn sealed_data_does_not_open_with_another_master_key(h: &Harness) {
    let school = SchoolId::new();
    let subject = PersonId::new();
    h.store
        .append(request(
            school,
            "s",
            ExpectedVersion::Any,
            vec![event("N", json!({"t": "x"})).seal("/t", subject)],
        ))
        .await
        .unwrap();
    let stranger = h.reopen_with(MasterKey::generate()).await;
    let err = stranger
        .read_stream(school, &stream("s"), 1, 10)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Internal(_)), "{err:?}");
    assert!(err.to_string().contains("master key"), "{err}");
    // Verification needs no key at all.
    assert!(matches!(
        verify_school(stranger.as_ref(), school).await.unwrap(),
        Verification::Intact { events: 1, .. }
    ));
    let friend = h.reopen_with(h.master.clone()).await;
    assert_eq!(
        friend
            .read_stream(school, &stream("s"), 1, 10)
            .await
            .unwrap()[0]
            .data["t"],
        "x"
    );
}

pub async fn migrations_are_recorded_and_an_edited_one_is_refused(h: &Harness) {
    let status = h.store.migration_status().await.unwrap();
    assert!(status.is_current());
    let known: Vec<u32> = match h.backend() {
        Backend::Postgres => registro_store::migrate::POSTGRES,
        Backend::Sqlite => registro_store::migrate::SQLITE,
    }
    .iter()
    .map(|m| m.version)
    .collect();
    assert_eq!(status.applied, known);
    assert!(
        h.store.migrate().await.unwrap().is_empty(),
        "nothing left to apply"
    );
    h.raw("UPDATE registro_migrations SET checksum = 'edited' WHERE version = 1")
        .await;
    for err in [
        h.store.migration_status().await.unwrap_err(),
        h.store.migrate().await.unwrap_err(),
    ] {
        assert!(
            matches!(err, StoreError::Migration(ref m) if m.contains("was edited")),
            "{err:?}"
        );
    }
}

/// A commit wakes subscribers: on PostgreSQL through LISTEN/NOTIFY, so a store in another
/// process (here: another instance with its own connections) is woken too; on SQLite through
/// the in-process signal (other processes poll).
pub async fn a_commit_wakes_subscribers(h: &Harness) {
    let school = SchoolId::new();
    let watcher = match h.backend() {
        Backend::Postgres => h.reopen_with(h.master.clone()).await,
        Backend::Sqlite => Arc::clone(&h.store),
    };
    let mut wake = watcher.wake_signal();
    // The listener connects in the background: a commit before it listens is only seen by
    // polling. Commit until one wakes the watcher; each wait is short, the whole is bounded.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        wake.borrow_and_update();
        append_n(h, school, "s", 1).await;
        if tokio::time::timeout(Duration::from_millis(500), wake.changed())
            .await
            .is_ok()
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no wake-up after a commit"
        );
    }
    // That wake-up may have been the listener's own (it wakes everyone when it connects); now
    // that it listens, one more commit must wake the watcher by itself.
    wake.borrow_and_update();
    append_n(h, school, "s", 1).await;
    tokio::time::timeout(PATIENCE, wake.changed())
        .await
        .expect("no wake-up after a commit")
        .unwrap();
}

/// The SHA-256 of `content`, computed here rather than by the store.
fn sha256(content: &[u8]) -> ContentHash {
    ContentHash::from_bytes(Sha256::digest(content).into())
}

/// A PDF-like payload of `len` bytes holding every byte value (NUL included).
fn payload(len: usize, salt: u8) -> Vec<u8> {
    let mut bytes = b"%PDF-1.7\n".to_vec();
    bytes.extend((0..len.saturating_sub(bytes.len())).map(|i| (i % 251) as u8 ^ salt));
    bytes.truncate(len);
    bytes
}

/// Stored under the SHA-256 of its bytes, with their size; read back byte for byte, the
/// description alone or with the bytes. Attachments are not events: the school's log stays
/// empty.
pub async fn an_attachment_is_stored_under_its_sha256_and_reads_back(h: &Harness) {
    let school = SchoolId::new();
    for content in [payload(300, 0), payload(3 * 1024 * 1024, 7)] {
        let before = OffsetDateTime::now_utc();
        let meta = h
            .store
            .put_attachment(school, "application/pdf", &content)
            .await
            .unwrap();
        assert_eq!(meta.hash, sha256(&content));
        assert_eq!(meta.hash.to_string(), hex::encode(Sha256::digest(&content)));
        assert_eq!(meta.size, content.len() as u64);
        assert_eq!(meta.media_type, "application/pdf");
        let slack = Duration::from_millis(1);
        assert!(
            meta.stored_at + slack >= before && meta.stored_at <= OffsetDateTime::now_utc(),
            "stored_at {} is now",
            meta.stored_at
        );
        assert_eq!(
            h.store.attachment_meta(school, &meta.hash).await.unwrap(),
            Some(meta.clone())
        );
        let (read_meta, bytes) = h
            .store
            .attachment(school, &meta.hash)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(read_meta, meta);
        assert!(bytes == content, "the bytes read back are the bytes stored");
    }
    assert_eq!(h.store.school_head(school).await.unwrap(), None, "no event");
}

/// Storing the same bytes again, even with another media type, returns the first record (media
/// type and `stored_at` included) and changes nothing.
pub async fn storing_the_same_bytes_again_returns_the_first_record(h: &Harness) {
    let school = SchoolId::new();
    let content = payload(1000, 1);
    let first = h
        .store
        .put_attachment(school, "application/pdf", &content)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    for media_type in ["application/pdf", "application/octet-stream"] {
        let again = h
            .store
            .put_attachment(school, media_type, &content)
            .await
            .unwrap();
        assert_eq!(again, first, "stored again as {media_type}");
    }
    let (meta, bytes) = h
        .store
        .attachment(school, &first.hash)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(meta, first);
    assert!(bytes == content);
}

/// Concurrent puts of the same bytes all succeed, and all return the one record that was
/// written (whichever media type won).
pub async fn concurrent_puts_of_the_same_bytes_all_succeed_with_one_record(h: &Harness) {
    let school = SchoolId::new();
    let content = Arc::new(payload(64 * 1024, 2));
    let puts: Vec<_> = (0..8)
        .map(|i| {
            let (store, content) = (Arc::clone(&h.store), Arc::clone(&content));
            tokio::spawn(async move {
                store
                    .put_attachment(school, &format!("image/x-test-{i}"), &content)
                    .await
            })
        })
        .collect();
    let mut metas: Vec<AttachmentMeta> = Vec::new();
    for put in puts {
        metas.push(
            tokio::time::timeout(PATIENCE, put)
                .await
                .expect("a put did not end")
                .unwrap()
                .unwrap(),
        );
    }
    let stored = h
        .store
        .attachment_meta(school, &sha256(&content))
        .await
        .unwrap()
        .unwrap();
    assert!(stored.media_type.starts_with("image/x-test-"));
    assert!(metas.iter().all(|m| *m == stored), "{metas:#?}");
}

/// A school sees only its own attachments: another school gets `None` for the description and
/// the bytes, and storing the same bytes there makes a record of its own. An unknown hash is
/// `None` too.
pub async fn another_school_cannot_see_an_attachment_and_an_unknown_hash_is_none(h: &Harness) {
    let (a, b) = (SchoolId::new(), SchoolId::new());
    let content = payload(500, 3);
    let in_a = h
        .store
        .put_attachment(a, "application/pdf", &content)
        .await
        .unwrap();
    assert_eq!(h.store.attachment_meta(b, &in_a.hash).await.unwrap(), None);
    assert_eq!(h.store.attachment(b, &in_a.hash).await.unwrap(), None);

    let unknown = sha256(b"never stored");
    assert_eq!(h.store.attachment_meta(a, &unknown).await.unwrap(), None);
    assert_eq!(h.store.attachment(a, &unknown).await.unwrap(), None);

    tokio::time::sleep(Duration::from_millis(5)).await;
    let in_b = h
        .store
        .put_attachment(b, "image/png", &content)
        .await
        .unwrap();
    assert_eq!((in_b.hash, in_b.size), (in_a.hash, in_a.size));
    assert_eq!(in_b.media_type, "image/png", "b's own record, not a's");
    assert!(in_b.stored_at > in_a.stored_at);
    assert_eq!(
        h.store.attachment_meta(a, &in_a.hash).await.unwrap(),
        Some(in_a),
        "a's record is untouched"
    );
    assert_eq!(
        h.store.attachment_meta(b, &in_b.hash).await.unwrap(),
        Some(in_b)
    );
}

/// Empty content is stored like any other (refusing it is the caller's call): under the
/// SHA-256 of nothing, size 0, read back empty.
pub async fn an_empty_attachment_is_stored(h: &Harness) {
    let school = SchoolId::new();
    let meta = h
        .store
        .put_attachment(school, "text/plain", &[])
        .await
        .unwrap();
    assert_eq!(
        meta.hash.to_string(),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    assert_eq!(meta.size, 0);
    let (read_meta, bytes) = h
        .store
        .attachment(school, &meta.hash)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read_meta, meta);
    assert!(bytes.is_empty());
}

/// An empty media type, or one longer than [`MAX_MEDIA_TYPE_CHARS`] characters, is refused with
/// [`StoreError::InvalidAttachment`] and nothing is stored. The limit counts characters, not
/// bytes, in the store and in the schema alike.
pub async fn an_empty_or_too_long_media_type_is_refused_and_nothing_is_written(h: &Harness) {
    let school = SchoolId::new();
    let content = payload(100, 4);
    for media_type in [
        String::new(),
        "a".repeat(MAX_MEDIA_TYPE_CHARS + 1),
        "è".repeat(MAX_MEDIA_TYPE_CHARS + 1),
    ] {
        let err = h
            .store
            .put_attachment(school, &media_type, &content)
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::InvalidAttachment(_)),
            "{media_type:?}: {err:?}"
        );
        assert!(!err.is_transient());
    }
    assert_eq!(
        h.store
            .attachment_meta(school, &sha256(&content))
            .await
            .unwrap(),
        None,
        "nothing was stored"
    );
    // The longest media type passes, even when its characters take two bytes each.
    let longest = "è".repeat(MAX_MEDIA_TYPE_CHARS);
    let meta = h
        .store
        .put_attachment(school, &longest, &content)
        .await
        .unwrap();
    assert_eq!(meta.media_type, longest);
}

// Projections: the test projection keeps one row per school and item, with a column of every
// cell type, under row-level security on PostgreSQL like every table with a school_id.

/// The test projection.
const VIEW: &str = "conformance_view";
/// Its table.
const VIEW_TABLE: &str = "conformance_rows";
/// Its table on PostgreSQL. `label = 'refused'` breaks a constraint, for the atomicity case.
const VIEW_POSTGRES: &str = "CREATE TABLE conformance_rows (
    school_id  uuid NOT NULL,
    item       text NOT NULL,
    flag       boolean,
    amount     bigint,
    label      text CHECK (label <> 'refused'),
    other_id   uuid,
    doc        jsonb,
    seen_at    timestamptz,
    PRIMARY KEY (school_id, item)
);
ALTER TABLE conformance_rows ENABLE ROW LEVEL SECURITY;
ALTER TABLE conformance_rows FORCE ROW LEVEL SECURITY;
CREATE POLICY school_isolation ON conformance_rows
    USING (school_id = (SELECT registro_school()) OR (SELECT registro_all_schools()))
    WITH CHECK (school_id = (SELECT registro_school()) OR (SELECT registro_all_schools()));";
/// Its table on SQLite.
const VIEW_SQLITE: &str = "CREATE TABLE conformance_rows (
    school_id  TEXT NOT NULL,
    item       TEXT NOT NULL,
    flag       INTEGER,
    amount     INTEGER,
    label      TEXT CHECK (label <> 'refused'),
    other_id   TEXT,
    doc        TEXT,
    seen_at    TEXT,
    PRIMARY KEY (school_id, item)
) STRICT;";
/// A second step, the same on both backends.
const VIEW_INDEX: &str =
    "CREATE INDEX conformance_rows_by_label ON conformance_rows (school_id, label)";

const VIEW_SCHEMA: ProjectionSchema = ProjectionSchema {
    name: VIEW,
    tables: &[VIEW_TABLE],
    postgres: &[VIEW_POSTGRES],
    sqlite: &[VIEW_SQLITE],
};

/// Every column but the school, as read back.
const VIEW_COLUMNS: [CellType; 7] = [
    CellType::Text,
    CellType::Bool,
    CellType::Int,
    CellType::Text,
    CellType::Uuid,
    CellType::Json,
    CellType::Time,
];

/// A position in the log, as a projector would commit it.
fn at(id: u64) -> Position {
    Position { tx: 1_000 + id, id }
}

fn row_key(school: SchoolId, item: &str) -> Vec<(&'static str, Cell)> {
    vec![
        ("school_id", Cell::Uuid(*school.as_uuid())),
        ("item", Cell::Text(item.to_owned())),
    ]
}

fn upsert(school: SchoolId, item: &str, values: Vec<(&'static str, Cell)>) -> RowOp {
    RowOp::Upsert {
        table: VIEW_TABLE,
        key: row_key(school, item),
        values,
    }
}

fn upsert_amount(school: SchoolId, item: &str, amount: i64) -> RowOp {
    upsert(school, item, vec![("amount", Cell::Int(amount))])
}

fn delete(school: SchoolId, item: &str) -> RowOp {
    RowOp::Delete {
        table: VIEW_TABLE,
        key: row_key(school, item),
    }
}

async fn prepare_view(h: &Harness) {
    h.prepare_projection(&VIEW_SCHEMA, &[VIEW_TABLE]).await;
}

/// A school's rows, by item: every column but the school.
async fn view_rows(h: &Harness, school: SchoolId) -> Vec<Vec<Cell>> {
    h.store
        .query_projection(
            school,
            "SELECT item, flag, amount, label, other_id, doc, seen_at FROM conformance_rows \
             WHERE school_id = $1 ORDER BY item",
            &[Cell::Uuid(*school.as_uuid())],
            &VIEW_COLUMNS,
        )
        .await
        .unwrap()
}

/// A school's items with their amounts.
async fn view_amounts(h: &Harness, school: SchoolId) -> Vec<(String, Option<i64>)> {
    view_rows(h, school)
        .await
        .into_iter()
        .map(|row| match (&row[0], &row[2]) {
            (Cell::Text(item), Cell::Int(n)) => (item.clone(), Some(*n)),
            (Cell::Text(item), Cell::Null) => (item.clone(), None),
            other => panic!("unexpected row {other:?}"),
        })
        .collect()
}

fn amounts(rows: &[(&str, i64)]) -> Vec<(String, Option<i64>)> {
    rows.iter()
        .map(|(item, n)| ((*item).to_owned(), Some(*n)))
        .collect()
}

async fn checkpoint(h: &Harness) -> Position {
    h.store.projection_checkpoint(VIEW).await.unwrap()
}

fn is_migration_error(err: &StoreError, says: &str) -> bool {
    matches!(err, StoreError::Migration(m) if m.contains(says))
}

/// Preparing twice applies nothing the second time and keeps the checkpoint; an applied step
/// that was edited, or one the binary no longer declares, is refused with
/// [`StoreError::Migration`]; a new step is applied once. On PostgreSQL as the ordinary role, a
/// prepared projection's `prepare_projection` only reads (the role may not create tables).
pub async fn preparing_a_projection_is_idempotent_and_an_edited_step_is_refused(h: &Harness) {
    prepare_view(h).await;
    h.store.prepare_projection(&VIEW_SCHEMA).await.unwrap();
    h.store.prepare_projection(&VIEW_SCHEMA).await.unwrap();
    assert_eq!(checkpoint(h).await, Position::START);

    let school = SchoolId::new();
    h.store
        .commit_projection(
            VIEW,
            Position::START,
            at(1),
            &[upsert_amount(school, "x", 1)],
        )
        .await
        .unwrap();
    h.store.prepare_projection(&VIEW_SCHEMA).await.unwrap();
    assert_eq!(
        checkpoint(h).await,
        at(1),
        "preparing again keeps the checkpoint"
    );
    assert_eq!(
        view_amounts(h, school).await,
        amounts(&[("x", 1)]),
        "and the rows"
    );

    let edited = ProjectionSchema {
        name: VIEW,
        tables: &[VIEW_TABLE],
        postgres: &["CREATE TABLE conformance_rows (school_id uuid, item text)"],
        sqlite: &["CREATE TABLE conformance_rows (school_id TEXT, item TEXT)"],
    };
    let err = h.store.prepare_projection(&edited).await.unwrap_err();
    assert!(is_migration_error(&err, "was edited"), "{err:?}");
    assert!(!err.is_transient());

    let extended = ProjectionSchema {
        name: VIEW,
        tables: &[VIEW_TABLE],
        postgres: &[VIEW_POSTGRES, VIEW_INDEX],
        sqlite: &[VIEW_SQLITE, VIEW_INDEX],
    };
    h.prepare_projection(&extended, &[]).await;
    h.store.prepare_projection(&extended).await.unwrap();
    assert_eq!(checkpoint(h).await, at(1));
    // The binary that knows one step is older than the database.
    let err = h.store.prepare_projection(&VIEW_SCHEMA).await.unwrap_err();
    assert!(is_migration_error(&err, "newer version"), "{err:?}");
    assert_eq!(view_amounts(h, school).await, amounts(&[("x", 1)]));
}

/// The checkpoint of an unknown projection, and of a prepared one never run, is the start; it
/// moves to each commit's `to`, with row operations or without.
pub async fn a_projection_checkpoint_starts_at_start_and_moves_with_each_commit(h: &Harness) {
    assert_eq!(
        h.store
            .projection_checkpoint("never_prepared")
            .await
            .unwrap(),
        Position::START
    );
    prepare_view(h).await;
    assert_eq!(checkpoint(h).await, Position::START);
    let school = SchoolId::new();
    h.store
        .commit_projection(
            VIEW,
            Position::START,
            at(3),
            &[upsert_amount(school, "x", 1)],
        )
        .await
        .unwrap();
    assert_eq!(checkpoint(h).await, at(3));
    h.store
        .commit_projection(VIEW, at(3), at(7), &[])
        .await
        .unwrap();
    assert_eq!(checkpoint(h).await, at(7));
    let big = Position {
        tx: i64::MAX as u64,
        id: i64::MAX as u64,
    };
    h.store
        .commit_projection(VIEW, at(7), big, &[upsert_amount(school, "y", 2)])
        .await
        .unwrap();
    assert_eq!(checkpoint(h).await, big, "positions keep all 63 bits");
    assert_eq!(
        view_amounts(h, school).await,
        amounts(&[("x", 1), ("y", 2)])
    );
    assert_eq!(
        h.store
            .projection_checkpoint("never_prepared")
            .await
            .unwrap(),
        Position::START,
        "other projections keep their own"
    );
}

/// A commit from a checkpoint that has moved is a [`StoreError::Conflict`] on
/// `projection:<name>`, and writes nothing: neither its rows nor its checkpoint.
pub async fn a_commit_from_a_moved_checkpoint_is_a_conflict_and_writes_nothing(h: &Harness) {
    prepare_view(h).await;
    let school = SchoolId::new();
    h.store
        .commit_projection(
            VIEW,
            Position::START,
            at(1),
            &[upsert_amount(school, "x", 1)],
        )
        .await
        .unwrap();
    for stale in [Position::START, at(0), at(2), Position { tx: 0, id: 1 }] {
        let err = h
            .store
            .commit_projection(
                VIEW,
                stale,
                at(5),
                &[
                    upsert_amount(school, "x", 2),
                    upsert_amount(school, "new", 3),
                    delete(school, "x"),
                ],
            )
            .await
            .unwrap_err();
        match &err {
            StoreError::Conflict {
                stream, actual: 1, ..
            } => assert_eq!(stream.as_str(), format!("projection:{VIEW}")),
            other => panic!("from {stale}: {other:?}"),
        }
        assert!(!err.is_transient());
        assert_eq!(checkpoint(h).await, at(1), "the checkpoint did not move");
        assert_eq!(
            view_amounts(h, school).await,
            amounts(&[("x", 1)]),
            "no row was written"
        );
    }
    // A commit that never prepared its checkpoint starts from the start like any other.
    let err = h
        .store
        .commit_projection("conformance_unprepared", at(1), at(2), &[])
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict { actual: 0, .. }),
        "{err:?}"
    );
    assert_eq!(
        h.store
            .projection_checkpoint("conformance_unprepared")
            .await
            .unwrap(),
        Position::START
    );
    // From where it is, the commit passes.
    h.store
        .commit_projection(VIEW, at(1), at(5), &[upsert_amount(school, "x", 2)])
        .await
        .unwrap();
    assert_eq!(view_amounts(h, school).await, amounts(&[("x", 2)]));
}

/// Two instances commit the same batch from the same checkpoint at the same moment: exactly one
/// commits, the other is a conflict, and only the winner's rows are there.
pub async fn two_instances_committing_from_the_same_checkpoint_exactly_one_wins(h: &Harness) {
    prepare_view(h).await;
    let school = SchoolId::new();
    let mut from = Position::START;
    for round in 1..=10_u64 {
        let (first_to, second_to) = (at(round * 10), at(round * 10 + 1));
        let first_ops = [
            upsert_amount(school, "shared", 1),
            upsert_amount(school, &format!("first-{round}"), 1),
        ];
        let second_ops = [
            upsert_amount(school, "shared", 2),
            upsert_amount(school, &format!("second-{round}"), 2),
        ];
        let (first, second) = tokio::join!(
            h.store.commit_projection(VIEW, from, first_to, &first_ops),
            h.store
                .commit_projection(VIEW, from, second_to, &second_ops),
        );
        let (winner, to, loser) = match (first, second) {
            (Ok(()), Err(e)) => (1, first_to, e),
            (Err(e), Ok(())) => (2, second_to, e),
            other => panic!("round {round}: not exactly one winner: {other:?}"),
        };
        assert!(matches!(loser, StoreError::Conflict { .. }), "{loser:?}");
        assert_eq!(checkpoint(h).await, to);
        let rows = view_amounts(h, school).await;
        assert!(
            rows.contains(&("shared".to_owned(), Some(winner))),
            "{rows:?}"
        );
        let (won, lost) = if winner == 1 {
            ("first", "second")
        } else {
            ("second", "first")
        };
        assert!(
            rows.iter()
                .any(|(item, _)| *item == format!("{won}-{round}"))
        );
        assert!(
            !rows
                .iter()
                .any(|(item, _)| *item == format!("{lost}-{round}")),
            "round {round}: the loser wrote nothing: {rows:?}"
        );
        from = to;
    }
}

/// Row operations apply in the order given, within one commit and across commits: an upsert
/// inserts, then updates only its `values` columns; one without values leaves an existing row
/// alone; a delete removes the rows equal to its key (none: nothing happens).
pub async fn row_operations_apply_in_order(h: &Harness) {
    prepare_view(h).await;
    let school = SchoolId::new();
    let ops = [
        upsert(
            school,
            "x",
            vec![
                ("amount", Cell::Int(1)),
                ("label", Cell::Text("uno".into())),
            ],
        ),
        // Updates amount only: the label stays.
        upsert_amount(school, "x", 2),
        upsert_amount(school, "y", 10),
        delete(school, "y"),
        upsert(school, "z", vec![]),
        upsert(school, "z", vec![]),
        upsert_amount(school, "w", 5),
        delete(school, "never-there"),
        upsert_amount(school, "y", 11),
    ];
    h.store
        .commit_projection(VIEW, Position::START, at(1), &ops)
        .await
        .unwrap();
    let rows = view_rows(h, school).await;
    let items: Vec<&Cell> = rows.iter().map(|r| &r[0]).collect();
    assert_eq!(
        items,
        [
            &Cell::Text("w".into()),
            &Cell::Text("x".into()),
            &Cell::Text("y".into()),
            &Cell::Text("z".into())
        ]
    );
    assert_eq!(
        (&rows[1][2], &rows[1][3]),
        (&Cell::Int(2), &Cell::Text("uno".into())),
        "x inserted, then its amount updated"
    );
    assert_eq!(rows[2][2], Cell::Int(11), "y deleted, then inserted again");
    assert_eq!(rows[3][2], Cell::Null, "z inserted once, with no values");

    h.store
        .commit_projection(
            VIEW,
            at(1),
            at(2),
            &[
                upsert(school, "z", vec![]),
                upsert(school, "w", vec![("label", Cell::Text("cinque".into()))]),
                delete(school, "x"),
            ],
        )
        .await
        .unwrap();
    let rows = view_rows(h, school).await;
    assert_eq!(rows.len(), 3);
    assert_eq!(
        (&rows[0][0], &rows[0][2], &rows[0][3]),
        (
            &Cell::Text("w".into()),
            &Cell::Int(5),
            &Cell::Text("cinque".into())
        )
    );
    assert_eq!(rows[1][0], Cell::Text("y".into()));
    assert_eq!(rows[2][0], Cell::Text("z".into()));
}

/// Every cell type is stored and read back as it was: booleans, the extreme integers, text
/// with quotes and newlines, UUIDs, JSON documents, times to the microsecond (in UTC, finer
/// digits dropped), and NULL in every column. Every type binds as a query parameter too, and
/// placeholders may come in any order.
pub async fn every_cell_type_round_trips_through_a_projection(h: &Harness) {
    prepare_view(h).await;
    let school = SchoolId::new();
    let other = Uuid::now_v7();
    let doc = json!({"voto": 850, "note": ["è", null, true, -3], "nested": {"a": {}, "b": []}});
    let full = vec![
        ("flag", Cell::Bool(true)),
        ("amount", Cell::Int(i64::MIN)),
        ("label", Cell::Text("l'alunno \"Rossi\";\n-- è".into())),
        ("other_id", Cell::Uuid(other)),
        ("doc", Cell::Json(doc.clone())),
        (
            "seen_at",
            Cell::Time(datetime!(2025-09-15 10:00:00.123456789 +02:00)),
        ),
    ];
    let empty = vec![
        ("flag", Cell::Null),
        ("amount", Cell::Null),
        ("label", Cell::Null),
        ("other_id", Cell::Null),
        ("doc", Cell::Null),
        ("seen_at", Cell::Null),
    ];
    let other_values = vec![
        ("flag", Cell::Bool(false)),
        ("amount", Cell::Int(i64::MAX)),
        ("label", Cell::Text(String::new())),
        ("doc", Cell::Json(json!("solo testo"))),
        (
            "seen_at",
            Cell::Time(datetime!(1999-12-31 23:59:59.000001 UTC)),
        ),
    ];
    h.store
        .commit_projection(
            VIEW,
            Position::START,
            at(1),
            &[
                upsert(school, "a-full", full),
                upsert(school, "b-empty", empty),
                upsert(school, "c-other", other_values),
            ],
        )
        .await
        .unwrap();
    let rows = view_rows(h, school).await;
    assert_eq!(
        rows,
        vec![
            vec![
                Cell::Text("a-full".into()),
                Cell::Bool(true),
                Cell::Int(i64::MIN),
                Cell::Text("l'alunno \"Rossi\";\n-- è".into()),
                Cell::Uuid(other),
                Cell::Json(doc),
                Cell::Time(datetime!(2025-09-15 08:00:00.123456 UTC)),
            ],
            vec![
                Cell::Text("b-empty".into()),
                Cell::Null,
                Cell::Null,
                Cell::Null,
                Cell::Null,
                Cell::Null,
                Cell::Null,
            ],
            vec![
                Cell::Text("c-other".into()),
                Cell::Bool(false),
                Cell::Int(i64::MAX),
                Cell::Text(String::new()),
                Cell::Null,
                Cell::Json(json!("solo testo")),
                Cell::Time(datetime!(1999-12-31 23:59:59.000001 UTC)),
            ],
        ]
    );
    match &rows[0][6] {
        Cell::Time(t) => assert!(t.offset().is_utc(), "read back in UTC: {t}"),
        other => panic!("{other:?}"),
    }

    // Every type as a parameter, the placeholders out of order.
    let found = h
        .store
        .query_projection(
            school,
            "SELECT item FROM conformance_rows WHERE seen_at = $6 AND flag = $2 \
             AND school_id = $1 AND amount = $3 AND label = $4 AND other_id = $5 \
             AND coalesce($7, label) = label",
            &[
                Cell::Uuid(*school.as_uuid()),
                Cell::Bool(true),
                Cell::Int(i64::MIN),
                Cell::Text("l'alunno \"Rossi\";\n-- è".into()),
                Cell::Uuid(other),
                Cell::Time(datetime!(2025-09-15 08:00:00.123456 UTC)),
                Cell::Null,
            ],
            &[CellType::Text],
        )
        .await
        .unwrap();
    assert_eq!(found, vec![vec![Cell::Text("a-full".into())]]);
    // One placeholder used twice.
    let found = h
        .store
        .query_projection(
            school,
            "SELECT count(*) FROM conformance_rows WHERE school_id = $1 \
             AND (item = $2 OR label = $2)",
            &[Cell::Uuid(*school.as_uuid()), Cell::Text(String::new())],
            &[CellType::Int],
        )
        .await
        .unwrap();
    assert_eq!(found, vec![vec![Cell::Int(1)]]);
}

/// A query reads the rows of the school it names. On PostgreSQL as the ordinary role,
/// row-level security holds it to the school given even when its SQL names none (or another);
/// elsewhere (SQLite, the administrator) the query's own `WHERE` is what keeps schools apart.
pub async fn a_projection_query_sees_only_its_school(h: &Harness) {
    prepare_view(h).await;
    let (a, b) = (SchoolId::new(), SchoolId::new());
    h.store
        .commit_projection(
            VIEW,
            Position::START,
            at(1),
            &[
                upsert_amount(a, "a1", 1),
                upsert_amount(b, "b1", 2),
                upsert_amount(a, "a2", 3),
            ],
        )
        .await
        .unwrap();
    assert_eq!(view_amounts(h, a).await, amounts(&[("a1", 1), ("a2", 3)]));
    assert_eq!(view_amounts(h, b).await, amounts(&[("b1", 2)]));

    let items = |rows: Vec<Vec<Cell>>| -> Vec<String> {
        rows.into_iter()
            .map(|r| match &r[0] {
                Cell::Text(t) => t.clone(),
                other => panic!("{other:?}"),
            })
            .collect()
    };
    let unnamed = h
        .store
        .query_projection(
            a,
            "SELECT item FROM conformance_rows ORDER BY item",
            &[],
            &[CellType::Text],
        )
        .await
        .unwrap();
    let other_school = h
        .store
        .query_projection(
            a,
            "SELECT item FROM conformance_rows WHERE school_id = $1 ORDER BY item",
            &[Cell::Uuid(*b.as_uuid())],
            &[CellType::Text],
        )
        .await
        .unwrap();
    if h.store.row_security().await.unwrap() == Some(true) {
        assert_eq!(items(unnamed), ["a1", "a2"], "row-level security");
        assert!(other_school.is_empty(), "row-level security");
    } else {
        assert_eq!(items(unnamed), ["a1", "a2", "b1"], "no row-level security");
        assert_eq!(items(other_school), ["b1"], "no row-level security");
    }
}

/// Table, column and projection names that are not plain identifiers, empty or NULL keys,
/// values of the wrong type, and queries that do not match their parameters or columns are
/// programming errors: [`StoreError::Internal`], with nothing written.
pub async fn a_name_that_is_not_a_plain_identifier_is_refused_and_nothing_is_written(h: &Harness) {
    prepare_view(h).await;
    let school = SchoolId::new();
    let good = upsert_amount(school, "good", 1);
    let bad_ops = [
        RowOp::Upsert {
            table: "conformance_rows; DROP TABLE events; --",
            key: row_key(school, "x"),
            values: vec![],
        },
        RowOp::Delete {
            table: "Conformance_rows",
            key: row_key(school, "x"),
        },
        upsert(school, "x", vec![("amount = 0, label", Cell::Int(1))]),
        upsert(school, "x", vec![("\"label\"", Cell::Text("x".into()))]),
        RowOp::Delete {
            table: VIEW_TABLE,
            key: vec![],
        },
        RowOp::Delete {
            table: VIEW_TABLE,
            key: vec![("school_id", Cell::Null)],
        },
        upsert(school, "x", vec![("amount", Cell::Text("uno".into()))]),
    ];
    for bad in bad_ops {
        let err = h
            .store
            .commit_projection(VIEW, Position::START, at(1), &[good.clone(), bad.clone()])
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Internal(_)), "{bad:?}: {err:?}");
        assert!(!err.is_transient());
    }
    for name in ["", "Conformance", "a-b", "x; DROP TABLE events"] {
        let err = h
            .store
            .commit_projection(name, Position::START, at(1), std::slice::from_ref(&good))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Internal(_)), "{name:?}: {err:?}");
        let schema = ProjectionSchema {
            name,
            ..VIEW_SCHEMA
        };
        let err = h.store.prepare_projection(&schema).await.unwrap_err();
        assert!(matches!(err, StoreError::Internal(_)), "{name:?}: {err:?}");
        let err = h.store.try_lock_projection(name).await.unwrap_err();
        assert!(matches!(err, StoreError::Internal(_)), "{name:?}: {err:?}");
    }
    assert_eq!(checkpoint(h).await, Position::START);
    assert!(view_rows(h, school).await.is_empty(), "nothing was written");

    let by_school = "SELECT item FROM conformance_rows WHERE school_id = $1";
    let uuid = Cell::Uuid(*school.as_uuid());
    let bad_queries: [(&str, Vec<Cell>, Vec<CellType>); 6] = [
        (by_school, vec![], vec![CellType::Text]),
        (
            by_school,
            vec![uuid.clone(), Cell::Int(1)],
            vec![CellType::Text],
        ),
        (by_school, vec![uuid.clone()], vec![]),
        (by_school, vec![uuid.clone()], vec![CellType::Text; 2]),
        (
            "SELEC item FROM conformance_rows",
            vec![],
            vec![CellType::Text],
        ),
        (
            "SELECT item FROM conformance_rows WHERE school_id = $1 AND label = $3",
            vec![uuid.clone(), Cell::Null],
            vec![CellType::Text],
        ),
    ];
    h.store
        .commit_projection(VIEW, Position::START, at(1), &[good])
        .await
        .unwrap();
    for (sql, params, columns) in bad_queries {
        let err = h
            .store
            .query_projection(school, sql, &params, &columns)
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Internal(_)), "{sql}: {err:?}");
    }
    // A column that does not read as the type asked.
    let err = h
        .store
        .query_projection(school, by_school, &[uuid], &[CellType::Int])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Internal(_)), "{err:?}");
}

/// Several reads in one batch answer each its own rows, in order, from one snapshot; one bad
/// query fails the batch; a [`Batch`] hands each read its value.
pub async fn projection_reads_are_batched_from_one_snapshot(h: &Harness) {
    prepare_view(h).await;
    let school = SchoolId::new();
    h.store
        .commit_projection(
            VIEW,
            Position::START,
            at(1),
            &[upsert_amount(school, "a", 1), upsert_amount(school, "b", 2)],
        )
        .await
        .unwrap();
    let uuid = Cell::Uuid(*school.as_uuid());
    let items = ProjectionQuery::new(
        "SELECT item FROM conformance_rows WHERE school_id = $1 ORDER BY item",
        vec![uuid.clone()],
        &[CellType::Text],
    );
    let total = ProjectionQuery::new(
        "SELECT count(*) FROM conformance_rows WHERE school_id = $1",
        vec![uuid.clone()],
        &[CellType::Int],
    );
    let answers = h
        .store
        .query_projections(school, &[total.clone(), items.clone(), total.clone()])
        .await
        .unwrap();
    assert_eq!(
        answers,
        vec![
            vec![vec![Cell::Int(2)]],
            vec![vec![Cell::Text("a".into())], vec![Cell::Text("b".into())]],
            vec![vec![Cell::Int(2)]],
        ]
    );
    assert!(
        h.store
            .query_projections(school, &[])
            .await
            .unwrap()
            .is_empty()
    );
    let bad = ProjectionQuery::new("SELEC 1", vec![], &[CellType::Int]);
    let err = h
        .store
        .query_projections(school, &[items.clone(), bad])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Internal(_)), "{err:?}");

    // On PostgreSQL, a commit landing while the batch runs is seen by none of its queries
    // (SQLite's read transaction is one snapshot by nature; it has no sleep to race with).
    if h.backend() == Backend::Postgres {
        let racing = {
            let store = Arc::clone(&h.store);
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(300)).await;
                store
                    .commit_projection(VIEW, at(1), at(2), &[upsert_amount(school, "c", 3)])
                    .await
            })
        };
        let slow =
            ProjectionQuery::new("SELECT count(*) FROM pg_sleep(1)", vec![], &[CellType::Int]);
        let answers = h
            .store
            .query_projections(school, &[total.clone(), slow, total.clone()])
            .await
            .unwrap();
        racing.await.unwrap().unwrap();
        assert_eq!(answers[0], answers[2], "one snapshot");
        assert_eq!(answers[2], vec![vec![Cell::Int(2)]]);
        let now = h
            .store
            .query_projections(school, std::slice::from_ref(&total))
            .await;
        assert_eq!(now.unwrap()[0], vec![vec![Cell::Int(3)]]);
        // Back to two rows for what follows.
        h.store
            .commit_projection(VIEW, at(2), at(3), &[delete(school, "c")])
            .await
            .unwrap();
    }

    let mut batch = Batch::default();
    let names = batch.add(Read::one(items, |rows| {
        Ok(rows.iter().map(|r| r[0].text()).collect::<Vec<_>>())
    }));
    let count = batch.add(Read::one(total, |rows| Ok(rows[0][0].int())));
    let answers = batch.run(h.store.as_ref(), school).await.unwrap();
    assert_eq!(answers.take(count).unwrap(), Some(2));
    assert_eq!(
        answers.take(names).unwrap(),
        [Some("a".to_owned()), Some("b".to_owned())]
    );
}

/// A row operation that the database refuses (here a CHECK constraint) fails the whole commit:
/// the operations before it and the checkpoint are rolled back, and the same batch without it
/// then commits from the same checkpoint.
pub async fn a_failing_row_operation_rolls_back_the_whole_commit(h: &Harness) {
    prepare_view(h).await;
    let school = SchoolId::new();
    h.store
        .commit_projection(
            VIEW,
            Position::START,
            at(1),
            &[upsert_amount(school, "x", 1)],
        )
        .await
        .unwrap();
    let before = [
        upsert_amount(school, "x", 2),
        upsert_amount(school, "y", 3),
        delete(school, "x"),
    ];
    let refused = upsert(school, "z", vec![("label", Cell::Text("refused".into()))]);
    let mut ops = before.to_vec();
    ops.push(refused);
    ops.push(upsert_amount(school, "after", 4));
    let err = h
        .store
        .commit_projection(VIEW, at(1), at(2), &ops)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Internal(_)), "{err:?}");
    assert!(!err.is_transient());
    assert_eq!(checkpoint(h).await, at(1));
    assert_eq!(view_amounts(h, school).await, amounts(&[("x", 1)]));

    h.store
        .commit_projection(VIEW, at(1), at(2), &before)
        .await
        .unwrap();
    assert_eq!(checkpoint(h).await, at(2));
    assert_eq!(view_amounts(h, school).await, amounts(&[("y", 3)]));
}

/// Tries to lock `name` until it is free. On PostgreSQL a dropped lease is freed once the
/// server has ended its session, a moment after the drop.
async fn lock_eventually(h: &Harness, name: &str) -> ProjectionLease {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Some(lease) = h.store.try_lock_projection(name).await.unwrap() {
            return lease;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} was never free again"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// One instance at a time holds a projection's lease, whichever store on the database asks:
/// a second lock is `None` while the first lease lives, and succeeds once it is dropped;
/// another projection locks independently.
pub async fn one_instance_at_a_time_holds_a_projection_lease(h: &Harness) {
    let first = h
        .store
        .try_lock_projection(VIEW)
        .await
        .unwrap()
        .expect("a free projection locks");
    assert_eq!(first.name(), VIEW);
    assert!(first.is_held());
    assert!(h.store.try_lock_projection(VIEW).await.unwrap().is_none());
    let another_store = h.reopen_with(h.master.clone()).await;
    assert!(
        another_store
            .try_lock_projection(VIEW)
            .await
            .unwrap()
            .is_none(),
        "another store on the same database"
    );

    let other = h
        .store
        .try_lock_projection("conformance_other")
        .await
        .unwrap()
        .expect("another projection locks independently");
    assert!(h.store.try_lock_projection(VIEW).await.unwrap().is_none());

    drop(first);
    let again = lock_eventually(h, VIEW).await;
    assert!(again.is_held());
    assert!(
        another_store
            .try_lock_projection(VIEW)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        h.store
            .try_lock_projection("conformance_other")
            .await
            .unwrap()
            .is_none(),
        "the other lease is still held"
    );
    drop(other);
    drop(again);
    let from_another_store = tokio::time::timeout(PATIENCE, async {
        loop {
            if let Some(lease) = another_store.try_lock_projection(VIEW).await.unwrap() {
                return lease;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the lease was never free again");
    assert!(from_another_store.is_held());
}

// Rebuilds: the projection's steps run into a build target of its own, row operations go there,
// and the swap replaces the live rows and the checkpoint in one transaction. On PostgreSQL as
// the ordinary role, the owner rebuilds (it may create a schema) and the ordinary role reads.

/// What a rebuild commits is invisible to readers of the live tables and to the live projector
/// until the swap; the swap replaces every row of the live table and the checkpoint, and then a
/// live commit from its old checkpoint is a conflict. The live table keeps its grants and, on
/// PostgreSQL, its row-level security. The build target is gone after the swap.
pub async fn a_rebuild_is_invisible_until_it_is_swapped_in(h: &Harness) {
    prepare_view(h).await;
    let owner = h.owner().await;
    let (a, b) = (SchoolId::new(), SchoolId::new());
    h.store
        .commit_projection(
            VIEW,
            Position::START,
            at(1),
            &[upsert_amount(a, "x", 1), upsert_amount(b, "y", 2)],
        )
        .await
        .unwrap();
    owner.begin_rebuild(&VIEW_SCHEMA).await.unwrap();
    owner
        .commit_rebuild(
            VIEW,
            &[
                upsert_amount(a, "x", 10),
                upsert_amount(a, "z", 3),
                upsert_amount(b, "v", 4),
            ],
        )
        .await
        .unwrap();
    owner
        .commit_rebuild(
            VIEW,
            &[
                delete(a, "z"),
                upsert(a, "w", vec![("label", Cell::Text("nuovo".into()))]),
            ],
        )
        .await
        .unwrap();
    assert_eq!(view_amounts(h, a).await, amounts(&[("x", 1)]), "not yet");
    assert_eq!(view_amounts(h, b).await, amounts(&[("y", 2)]), "not yet");
    assert_eq!(checkpoint(h).await, at(1));
    // The live projector goes on meanwhile.
    h.store
        .commit_projection(VIEW, at(1), at(2), &[upsert_amount(a, "live", 5)])
        .await
        .unwrap();
    assert_eq!(view_amounts(h, a).await, amounts(&[("live", 5), ("x", 1)]));

    owner.swap_rebuild(&VIEW_SCHEMA, at(7)).await.unwrap();
    assert_eq!(checkpoint(h).await, at(7));
    assert_eq!(
        view_amounts(h, a).await,
        vec![("w".to_owned(), None), ("x".to_owned(), Some(10))],
        "the rebuilt rows, and no others"
    );
    assert_eq!(view_amounts(h, b).await, amounts(&[("v", 4)]));
    let unnamed = h
        .store
        .query_projection(
            a,
            "SELECT count(*) FROM conformance_rows",
            &[],
            &[CellType::Int],
        )
        .await
        .unwrap();
    let expected = if h.store.row_security().await.unwrap() == Some(true) {
        2 // row-level security still holds the table
    } else {
        3
    };
    assert_eq!(unnamed, vec![vec![Cell::Int(expected)]]);

    // The live projector finds its checkpoint moved and goes on from the new one.
    let err = h
        .store
        .commit_projection(VIEW, at(2), at(3), &[upsert_amount(a, "late", 6)])
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict { actual: 7, .. }),
        "{err:?}"
    );
    h.store
        .commit_projection(VIEW, at(7), at(8), &[upsert_amount(a, "after", 6)])
        .await
        .unwrap();
    assert_eq!(view_amounts(h, a).await.len(), 3);

    // The build target went with the swap.
    for err in [
        owner.swap_rebuild(&VIEW_SCHEMA, at(9)).await.unwrap_err(),
        owner.commit_rebuild(VIEW, &[]).await.unwrap_err(),
    ] {
        assert!(matches!(err, StoreError::Internal(_)), "{err:?}");
    }
    assert_eq!(checkpoint(h).await, at(8));
}

/// A swap that fails half-way (a row the live table refuses) changes nothing: neither the rows
/// nor the checkpoint. A discarded rebuild cannot be swapped in; a new one can.
pub async fn a_swap_that_fails_changes_nothing(h: &Harness) {
    prepare_view(h).await;
    let owner = h.owner().await;
    let school = SchoolId::new();
    h.store
        .commit_projection(
            VIEW,
            Position::START,
            at(1),
            &[upsert_amount(school, "x", 1)],
        )
        .await
        .unwrap();
    owner.begin_rebuild(&VIEW_SCHEMA).await.unwrap();
    owner
        .commit_rebuild(
            VIEW,
            &[
                upsert_amount(school, "a", 2),
                upsert(school, "b", vec![("label", Cell::Text("bad".into()))]),
            ],
        )
        .await
        .unwrap();
    // Only the live table refuses the label, so the copy fails after the delete.
    h.raw(match h.backend() {
        Backend::Postgres => {
            "ALTER TABLE conformance_rows ADD CONSTRAINT not_bad CHECK (label <> 'bad')"
        }
        Backend::Sqlite => {
            "CREATE TRIGGER not_bad BEFORE INSERT ON conformance_rows WHEN NEW.label = 'bad' \
             BEGIN SELECT RAISE(ABORT, 'bad'); END"
        }
    })
    .await;
    let err = owner.swap_rebuild(&VIEW_SCHEMA, at(5)).await.unwrap_err();
    assert!(matches!(err, StoreError::Internal(_)), "{err:?}");
    assert_eq!(checkpoint(h).await, at(1));
    assert_eq!(view_amounts(h, school).await, amounts(&[("x", 1)]));

    owner.discard_rebuild(VIEW).await.unwrap();
    owner.discard_rebuild(VIEW).await.unwrap(); // nothing left to discard: fine
    let err = owner.swap_rebuild(&VIEW_SCHEMA, at(5)).await.unwrap_err();
    assert!(matches!(err, StoreError::Internal(_)), "{err:?}");
    assert_eq!(checkpoint(h).await, at(1));

    owner.begin_rebuild(&VIEW_SCHEMA).await.unwrap();
    owner
        .commit_rebuild(VIEW, &[upsert_amount(school, "a", 2)])
        .await
        .unwrap();
    owner.swap_rebuild(&VIEW_SCHEMA, at(5)).await.unwrap();
    assert_eq!(checkpoint(h).await, at(5));
    assert_eq!(view_amounts(h, school).await, amounts(&[("a", 2)]));
}

/// A rebuild with no rows empties the view; the swap creates the checkpoint when it is missing.
pub async fn an_empty_rebuild_empties_the_view(h: &Harness) {
    prepare_view(h).await;
    let owner = h.owner().await;
    let school = SchoolId::new();
    h.store
        .commit_projection(
            VIEW,
            Position::START,
            at(1),
            &[upsert_amount(school, "x", 1), upsert_amount(school, "y", 2)],
        )
        .await
        .unwrap();
    owner.begin_rebuild(&VIEW_SCHEMA).await.unwrap();
    owner.commit_rebuild(VIEW, &[]).await.unwrap();
    owner.swap_rebuild(&VIEW_SCHEMA, at(3)).await.unwrap();
    assert!(view_rows(h, school).await.is_empty());
    assert_eq!(checkpoint(h).await, at(3));

    h.raw("DELETE FROM projection_checkpoints WHERE name = 'conformance_view'")
        .await;
    assert_eq!(checkpoint(h).await, Position::START);
    owner.begin_rebuild(&VIEW_SCHEMA).await.unwrap();
    owner
        .commit_rebuild(VIEW, &[upsert_amount(school, "z", 3)])
        .await
        .unwrap();
    owner.swap_rebuild(&VIEW_SCHEMA, at(4)).await.unwrap();
    assert_eq!(checkpoint(h).await, at(4));
    assert_eq!(view_amounts(h, school).await, amounts(&[("z", 3)]));
}

/// Beginning a rebuild again discards the first one's rows: only the second's are swapped in.
pub async fn beginning_a_rebuild_again_discards_the_first(h: &Harness) {
    prepare_view(h).await;
    let owner = h.owner().await;
    let school = SchoolId::new();
    owner.begin_rebuild(&VIEW_SCHEMA).await.unwrap();
    owner
        .commit_rebuild(
            VIEW,
            &[
                upsert_amount(school, "old", 1),
                upsert_amount(school, "x", 1),
            ],
        )
        .await
        .unwrap();
    owner.begin_rebuild(&VIEW_SCHEMA).await.unwrap();
    owner
        .commit_rebuild(VIEW, &[upsert_amount(school, "x", 2)])
        .await
        .unwrap();
    owner.swap_rebuild(&VIEW_SCHEMA, at(2)).await.unwrap();
    assert_eq!(view_amounts(h, school).await, amounts(&[("x", 2)]));
    assert_eq!(checkpoint(h).await, at(2));
}

/// A rebuild whose steps create other tables than it declares, or whose step fails, is refused
/// and leaves nothing to commit into, as is one by a role that may not create the build target;
/// a row operation the build target refuses fails its whole batch there; names are checked like
/// the live ones'.
pub async fn a_rebuild_that_cannot_be_built_is_refused_and_leaves_nothing(h: &Harness) {
    prepare_view(h).await;
    let owner = h.owner().await;
    let school = SchoolId::new();
    if !Arc::ptr_eq(&owner, &h.store) {
        // The ordinary role may not create the build schema.
        let err = h.store.begin_rebuild(&VIEW_SCHEMA).await.unwrap_err();
        assert!(is_migration_error(&err, "owns the database"), "{err:?}");
    }
    let no_rebuild = async |owner: &Arc<dyn EventStore>| {
        let err = owner.commit_rebuild(VIEW, &[]).await.unwrap_err();
        assert!(matches!(err, StoreError::Internal(_)), "{err:?}");
    };
    let wrong: [&'static [&'static str]; 3] = [
        &[],
        &["conformance_other"],
        &[VIEW_TABLE, "conformance_other"],
    ];
    for tables in wrong {
        let wrong = ProjectionSchema {
            tables,
            ..VIEW_SCHEMA
        };
        let err = owner.begin_rebuild(&wrong).await.unwrap_err();
        assert!(
            matches!(err, StoreError::Internal(_)),
            "{tables:?}: {err:?}"
        );
        no_rebuild(&owner).await;
    }
    let failing = ProjectionSchema {
        postgres: &[VIEW_POSTGRES, "CREATE INDEX broken ON nowhere (x)"],
        sqlite: &[VIEW_SQLITE, "CREATE INDEX broken ON nowhere (x)"],
        ..VIEW_SCHEMA
    };
    let err = owner.begin_rebuild(&failing).await.unwrap_err();
    assert!(is_migration_error(&err, "step 2"), "{err:?}");
    no_rebuild(&owner).await;

    owner.begin_rebuild(&VIEW_SCHEMA).await.unwrap();
    let err = owner
        .commit_rebuild(
            VIEW,
            &[
                upsert_amount(school, "a", 1),
                upsert(school, "b", vec![("label", Cell::Text("refused".into()))]),
            ],
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Internal(_)), "{err:?}");
    owner
        .commit_rebuild(VIEW, &[upsert_amount(school, "c", 3)])
        .await
        .unwrap();
    owner.swap_rebuild(&VIEW_SCHEMA, at(1)).await.unwrap();
    assert_eq!(
        view_amounts(h, school).await,
        amounts(&[("c", 3)]),
        "the refused batch left nothing"
    );

    let too_long: &'static str = "a"
        .repeat(registro_store::MAX_REBUILT_NAME_CHARS + 1)
        .leak();
    for name in ["Conformance", "a-b", "x; DROP TABLE events", too_long] {
        let schema = ProjectionSchema {
            name,
            ..VIEW_SCHEMA
        };
        let errors = [
            owner.begin_rebuild(&schema).await.unwrap_err(),
            owner.commit_rebuild(name, &[]).await.unwrap_err(),
            owner.swap_rebuild(&schema, at(2)).await.unwrap_err(),
            owner.discard_rebuild(name).await.unwrap_err(),
        ];
        for err in errors {
            assert!(matches!(err, StoreError::Internal(_)), "{name:?}: {err:?}");
        }
    }
    assert_eq!(checkpoint(h).await, at(1));
}

/// The count of events after a position is what the subscription read delivers after it.
pub async fn counting_events_after_a_position_matches_the_subscription(h: &Harness) {
    assert_eq!(
        h.store.count_events_after(Position::START).await.unwrap(),
        0
    );
    append_n(h, SchoolId::new(), "counted", 5).await;
    append_n(h, SchoolId::new(), "counted", 3).await;
    let events = read_all_eventually(h, 8).await;
    // Once delivered, the events stay below the fence: counted from wherever.
    assert_eq!(
        h.store.count_events_after(Position::START).await.unwrap(),
        8
    );
    assert_eq!(
        h.store
            .count_events_after(events[2].position)
            .await
            .unwrap(),
        5
    );
    assert_eq!(
        h.store
            .count_events_after(events[7].position)
            .await
            .unwrap(),
        0
    );
}

/// Appends one event to each of `schools` in turn and returns them all, as the subscription
/// delivers them, in position order.
async fn append_in_turn(h: &Harness, schools: &[SchoolId]) -> Vec<RecordedEvent> {
    let before = h
        .store
        .projection_lag("never_prepared")
        .await
        .unwrap()
        .events;
    for school in schools {
        append_n(h, *school, "s", 1).await;
    }
    let all = read_all_eventually(h, usize::try_from(before).unwrap() + schools.len()).await;
    all[all.len() - schools.len()..].to_vec()
}

/// A projection's lag: an unknown one is not prepared and has every event ahead; a prepared
/// one counts the committed events after its checkpoint and knows when the next to apply was
/// recorded; at the head nothing is ahead and it is 0 seconds behind.
pub async fn a_projections_lag_counts_the_events_after_its_checkpoint(h: &Harness) {
    let unknown = h.store.projection_lag("never_prepared").await.unwrap();
    assert_eq!(
        unknown,
        registro_store::ProjectionLag {
            prepared: false,
            checkpoint: Position::START,
            events: 0,
            oldest: None,
            stopped: None,
        }
    );
    assert_eq!(unknown.seconds_behind(OffsetDateTime::now_utc()), 0.0);
    prepare_view(h).await;
    let lag = h.store.projection_lag(VIEW).await.unwrap();
    assert!(
        lag.prepared && lag.events == 0 && lag.oldest.is_none(),
        "{lag:?}"
    );

    let (a, b) = (SchoolId::new(), SchoolId::new());
    let events = append_in_turn(h, &[a, b, a]).await;
    let lag = h.store.projection_lag(VIEW).await.unwrap();
    assert_eq!(lag.checkpoint, Position::START);
    assert_eq!(lag.events, 3, "across schools");
    assert_eq!(lag.oldest, Some(events[0].recorded_at));
    let later = events[0].recorded_at + time::Duration::seconds(90);
    let behind = lag.seconds_behind(later);
    assert!((89.999..=90.001).contains(&behind), "{behind} {lag:?}");
    let unknown = h.store.projection_lag("never_prepared").await.unwrap();
    assert_eq!((unknown.prepared, unknown.events), (false, 3));

    h.store
        .commit_projection(VIEW, Position::START, events[1].position, &[])
        .await
        .unwrap();
    let lag = h.store.projection_lag(VIEW).await.unwrap();
    assert_eq!(lag.checkpoint, events[1].position);
    assert_eq!(lag.events, 1);
    assert_eq!(lag.oldest, Some(events[2].recorded_at));

    h.store
        .commit_projection(VIEW, events[1].position, events[2].position, &[])
        .await
        .unwrap();
    let lag = h.store.projection_lag(VIEW).await.unwrap();
    assert_eq!((lag.events, lag.oldest), (0, None));
    assert_eq!(lag.seconds_behind(later), 0.0);
}

/// A stop at a poison event is recorded for every store on the database to see; recording the
/// same event again keeps the first time, a stop at or before the checkpoint is not recorded,
/// and the commit (or the swap of a rebuild) that moves the checkpoint to the event, not one
/// short of it, clears it.
pub async fn a_recorded_stop_is_seen_and_cleared_by_the_commit_that_reaches_it(h: &Harness) {
    prepare_view(h).await;
    let school = SchoolId::new();
    let events = append_in_turn(h, &[school, school, school]).await;
    let p: Vec<Position> = events.iter().map(|e| e.position).collect();
    h.store
        .commit_projection(VIEW, Position::START, p[0], &[])
        .await
        .unwrap();

    h.store
        .record_projection_stop(
            VIEW,
            p[2],
            "projection conformance_view stops: a poison event",
        )
        .await
        .unwrap();
    let another_store = h.reopen_with(h.master.clone()).await;
    let stop = another_store
        .projection_lag(VIEW)
        .await
        .unwrap()
        .stopped
        .expect("the stop is recorded in the database");
    assert_eq!(stop.at, p[2]);
    assert_eq!(
        stop.reason,
        "projection conformance_view stops: a poison event"
    );
    let age = OffsetDateTime::now_utc() - stop.since;
    assert!(
        age >= time::Duration::ZERO && age < time::Duration::minutes(5),
        "{stop:?}"
    );

    tokio::time::sleep(Duration::from_millis(20)).await;
    h.store
        .record_projection_stop(VIEW, p[2], "again")
        .await
        .unwrap();
    let again = h.store.projection_lag(VIEW).await.unwrap().stopped.unwrap();
    assert_eq!(
        (again.at, again.since),
        (p[2], stop.since),
        "the first time is kept"
    );
    assert_eq!(again.reason, "again");

    // Not at or before the checkpoint.
    h.store
        .record_projection_stop(VIEW, p[0], "already applied")
        .await
        .unwrap();
    assert_eq!(
        h.store
            .projection_lag(VIEW)
            .await
            .unwrap()
            .stopped
            .unwrap()
            .at,
        p[2]
    );
    // Nor for a projection that has no checkpoint.
    h.store
        .record_projection_stop("never_prepared", p[2], "x")
        .await
        .unwrap();
    assert_eq!(
        h.store
            .projection_lag("never_prepared")
            .await
            .unwrap()
            .stopped,
        None
    );
    let err = h
        .store
        .record_projection_stop("Not-A-Name", p[2], "x")
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Internal(_)), "{err:?}");

    // A refused commit clears nothing; one short of the event clears nothing.
    let err = h
        .store
        .commit_projection(VIEW, Position::START, p[2], &[])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err:?}");
    h.store
        .commit_projection(VIEW, p[0], p[1], &[])
        .await
        .unwrap();
    let lag = h.store.projection_lag(VIEW).await.unwrap();
    assert_eq!(lag.stopped.map(|s| s.at), Some(p[2]));
    assert_eq!(lag.events, 1);

    // The commit that reaches it (a fixed projection applied it) clears it.
    h.store
        .commit_projection(VIEW, p[1], p[2], &[])
        .await
        .unwrap();
    let lag = h.store.projection_lag(VIEW).await.unwrap();
    assert_eq!((lag.stopped, lag.events), (None, 0));

    // So does a rebuild swapped in at or past it, and not one swapped in before it.
    let more = append_in_turn(h, &[school, school]).await;
    let (q1, q2) = (more[0].position, more[1].position);
    h.store
        .record_projection_stop(VIEW, q2, "a poison event")
        .await
        .unwrap();
    let owner = h.owner().await;
    owner.begin_rebuild(&VIEW_SCHEMA).await.unwrap();
    owner.swap_rebuild(&VIEW_SCHEMA, q1).await.unwrap();
    let lag = h.store.projection_lag(VIEW).await.unwrap();
    assert_eq!((lag.checkpoint, lag.stopped.map(|s| s.at)), (q1, Some(q2)));
    owner.begin_rebuild(&VIEW_SCHEMA).await.unwrap();
    owner.swap_rebuild(&VIEW_SCHEMA, q2).await.unwrap();
    let lag = h.store.projection_lag(VIEW).await.unwrap();
    assert_eq!((lag.checkpoint, lag.stopped, lag.events), (q2, None, 0));
}

/// A projection has reached a school's event once its checkpoint is at or past that event's
/// position, whatever the other schools' events around it; `school_seq` 0 is always reached,
/// an event beyond the school's head and any event for an unknown projection never.
pub async fn a_projection_has_reached_an_event_once_its_checkpoint_passes_it(h: &Harness) {
    prepare_view(h).await;
    let (a, b) = (SchoolId::new(), SchoolId::new());
    let events = append_in_turn(h, &[a, b, a]).await;
    let reached = |school: SchoolId, seq: u64| {
        let store = Arc::clone(&h.store);
        async move { store.projection_reached(VIEW, school, seq).await.unwrap() }
    };
    assert!(reached(a, 0).await);
    assert!(!reached(a, 1).await);
    assert!(
        !h.store
            .projection_reached("never_prepared", a, 1)
            .await
            .unwrap()
    );

    h.store
        .commit_projection(VIEW, Position::START, events[0].position, &[])
        .await
        .unwrap();
    assert!(reached(a, 1).await);
    assert!(!reached(b, 1).await);
    assert!(!reached(a, 2).await);

    h.store
        .commit_projection(VIEW, events[0].position, events[1].position, &[])
        .await
        .unwrap();
    assert!(reached(b, 1).await);
    assert!(!reached(a, 2).await);

    h.store
        .commit_projection(VIEW, events[1].position, events[2].position, &[])
        .await
        .unwrap();
    assert!(reached(a, 2).await);
    assert!(reached(a, 1).await);
    assert!(!reached(a, 3).await, "beyond the head");
    assert!(
        !reached(SchoolId::new(), 1).await,
        "a school without events"
    );
}
