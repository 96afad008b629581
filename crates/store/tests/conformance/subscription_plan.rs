//! PostgreSQL only: the subscription read walks the `(tx, id)` index in order and stops at its
//! limit, whatever the log's size. It once sorted every event after the checkpoint on every
//! page (its `ORDER BY tx` named the output column `(tx::text)::bigint`), which made catching up
//! on a backlog quadratic: a projector rebuild of a school year ran at a fifth of its speed.

use registro_store::EventStore as _;
use registro_store::testing::subscription_sql;
use registro_testkit::pg::TestDb;

#[tokio::test]
async fn the_subscription_read_follows_the_index_without_sorting() {
    let db = TestDb::new().await;
    db.store().await.migrate().await.unwrap();
    let client = db.client().await;
    // An empty table would rightly be sorted in memory: plan it as a backlog is planned, where
    // reading the index in order is the cheap way. Reading it in order only spares the sort if
    // the sort is on the index's columns; on the output column `(tx::text)::bigint` it is not.
    client
        .batch_execute("SET enable_seqscan = off; SET enable_bitmapscan = off")
        .await
        .unwrap();
    let sql = subscription_sql()
        .replace("$1", "'0'")
        .replace("$2", "0")
        .replace("$3", "1000");
    let plan: Vec<String> = client
        .query(&format!("EXPLAIN {sql}"), &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let plan = plan.join("\n");
    assert!(plan.contains("events_subscription_idx"), "{plan}");
    assert!(!plan.contains("Sort"), "the read sorts: {plan}");
}
