//! PostgreSQL only: an append whose state the adapter predicts is written in one statement
//! (`registro_append_predicted`, ADR 0036), and whenever a prediction does not hold (another
//! process appended, the stream moved, a guard moved, the key was used) nothing of it is
//! written and the append takes the long way, with the same outcome and errors as ever. As the
//! ordinary role that row-level security holds.

use registro_domain::SchoolId;
use registro_store::verify::{Verification, verify_school};
use registro_store::{
    AppendOutcome, AppendRequest, CommandMetadata, EventStore as _, EventType, ExpectedVersion,
    IdempotencyKey, MasterKey, NewEvent, StoreError, StreamGuard, StreamId,
};
use registro_testkit::pg::TestDb;
use serde_json::json;

fn request(school: SchoolId, stream: &str, expected: ExpectedVersion, n: u64) -> AppendRequest {
    AppendRequest {
        guards: Vec::new(),
        school,
        stream: StreamId::parse(stream).unwrap(),
        expected,
        events: vec![NewEvent::new(
            EventType::parse("Numbered").unwrap(),
            json!({ "n": n }),
            time::OffsetDateTime::now_utc(),
        )],
        metadata: CommandMetadata::system(),
        idempotency_key: None,
        command_digest: None,
    }
}

#[tokio::test]
async fn a_predicted_append_is_written_only_when_every_prediction_holds() {
    let db = TestDb::new().await;
    db.store().await.migrate().await.unwrap();
    let key = MasterKey::generate();
    let (a, b) = (
        db.app_store_with_key(key.clone()).await,
        db.app_store_with_key(key).await,
    );
    let school = SchoolId::new();
    let exact = ExpectedVersion::Exact;

    // The first append of a school in a process reads its head; the next ones predict it.
    a.append(request(school, "s-1", ExpectedVersion::NoStream, 1))
        .await
        .unwrap();
    assert_eq!(a.predicted_appends(), 0);
    let second = a.append(request(school, "s-1", exact(1), 2)).await.unwrap();
    assert_eq!(a.predicted_appends(), 1);
    assert_eq!((second.stream_version, second.last_seq), (2, 2));

    // Another process appends: this one's head is stale, so it takes the long way once.
    b.append(request(school, "s-2", ExpectedVersion::NoStream, 3))
        .await
        .unwrap();
    let after = a.append(request(school, "s-1", exact(2), 4)).await.unwrap();
    assert_eq!(a.predicted_appends(), 1);
    assert_eq!((after.stream_version, after.last_seq), (3, 4));
    a.append(request(school, "s-1", exact(3), 5)).await.unwrap();
    assert_eq!(a.predicted_appends(), 2);

    // A wrong expected version: refused as a conflict, nothing written.
    let stale = a.append(request(school, "s-1", exact(1), 6)).await;
    assert!(
        matches!(stale, Err(StoreError::Conflict { actual: 4, .. })),
        "{stale:?}"
    );
    // A guard on a stream that moved: refused, naming the guarded stream.
    let mut guarded = request(school, "s-1", exact(4), 7);
    guarded.guards = vec![StreamGuard {
        stream: StreamId::parse("s-2").unwrap(),
        version: 0,
    }];
    let refused = a.append(guarded).await;
    assert!(
        matches!(&refused, Err(StoreError::Conflict { stream, actual: 1, .. }) if stream.as_str() == "s-2"),
        "{refused:?}"
    );
    assert_eq!(a.predicted_appends(), 2);

    // An idempotent append: predicted the first time, replayed (not written again) the second.
    let mut keyed = request(school, "s-1", exact(4), 8);
    keyed.idempotency_key = Some(IdempotencyKey::parse("k-1").unwrap());
    let first: AppendOutcome = a.append(keyed.clone()).await.unwrap();
    assert_eq!(a.predicted_appends(), 3);
    assert!(!first.replayed);
    let replayed = a.append(keyed).await.unwrap();
    assert!(replayed.replayed);
    assert_eq!(
        (replayed.first_seq, replayed.last_seq),
        (first.first_seq, first.last_seq)
    );
    assert_eq!(a.predicted_appends(), 3);

    // Fifty appends at one expected version at once: exactly one is written.
    let results = futures_util::future::join_all(
        (0..50).map(|i| a.append(request(school, "s-1", exact(5), 100 + i))),
    )
    .await;
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1);
    assert!(
        results
            .iter()
            .all(|r| matches!(r, Ok(_) | Err(StoreError::Conflict { .. })))
    );

    // The log: every event once, dense, chained.
    let head = a.school_head(school).await.unwrap().unwrap();
    assert_eq!(head.last_seq, 7);
    let verified = verify_school(&a, school).await.unwrap();
    assert!(
        matches!(verified, Verification::Intact { events: 7, .. }),
        "{verified:?}"
    );

    // Rows that do not chain from the head they name are refused, whoever calls.
    let admin = db.client().await;
    let refused = admin
        .execute(
            "SELECT registro_append_predicted($1::uuid, 1::bigint, 's-1'::text, 5::bigint, \
             '{}'::text[], '{}'::bigint[], 7::bigint, $2::bytea, NULL::text, $2::bytea, \
             NULL::uuid, 'system'::text, gen_random_uuid(), NULL::uuid, now(), \
             '{9}'::bigint[], '{6}'::bigint[], ARRAY[gen_random_uuid()], \
             '{Numbered}'::text[], '{1}'::integer[], ARRAY['{}']::text[], ARRAY[now()], \
             ARRAY[$2::bytea], ARRAY[$2::bytea])",
            &[school.as_uuid(), &head.hash.0.as_slice()],
        )
        .await;
    let refused = refused.expect_err("a seq that does not follow the head was accepted");
    assert!(
        format!("{refused:?}").contains("do not chain from the head"),
        "{refused:?}"
    );
    assert_eq!(a.school_head(school).await.unwrap().unwrap().last_seq, 7);

    // A database without the function (not migrated to 0006): appends take the long way.
    admin
        .batch_execute("DROP FUNCTION registro_append_predicted")
        .await
        .unwrap();
    let (before, last) = (a.predicted_appends(), a.school_head(school).await.unwrap());
    let version = results
        .iter()
        .find_map(|r| r.as_ref().ok())
        .unwrap()
        .stream_version;
    let long_way = a
        .append(request(school, "s-1", exact(version), 200))
        .await
        .unwrap();
    assert_eq!(long_way.last_seq, last.unwrap().last_seq + 1);
    assert_eq!(a.predicted_appends(), before);
}
