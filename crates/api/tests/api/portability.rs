//! The school's export over HTTP, on both stores: the administrator downloads the log as
//! CloudEvents NDJSON (the manifest, then every event with its chain attributes) and the key
//! bundle; a line of it reads back as the event stored, with the same hash; nobody else may.

use registro_api::ratelimit::RateLimit;
use registro_domain::Role;
use registro_store::portable::{Line, parse_line, read_manifest};
use registro_store::verify::ChainCheck;
use reqwest::Method;
use serde_json::{Value, json};

use crate::world::{World, body, grade_body};

async fn the_administrator_downloads_the_school(w: World) {
    let s = format!("/schools/{}", w.a);
    let teacher = w.token(Role::Teacher);
    let grades = format!("{s}/students/{}/years/2025/grades", w.x);
    let seven = grade_body("7");
    let r = w.call(Method::POST, &grades, Some(&teacher), Some(&seven));
    body(r.await, 201).await;
    let admin = w.token(Role::Admin);
    let r = w
        .call(Method::GET, &format!("{s}/export"), Some(&admin), None)
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/x-ndjson");
    assert!(
        r.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .contains(".ndjson")
    );
    let text = r.text().await.unwrap();
    let mut lines = text.lines();
    let manifest = read_manifest(lines.next().unwrap()).unwrap();
    assert_eq!(manifest.school, w.a);
    let head = w.store.school_head(w.a).await.unwrap().unwrap();
    assert!(manifest.events >= 1 && manifest.events <= head.last_seq);
    let mut chain = ChainCheck::new(w.a);
    let mut events = 0;
    for line in lines {
        match parse_line(w.a, line).unwrap() {
            Line::Event(e) => {
                chain.check(&e).unwrap();
                events += 1;
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(events, manifest.events);
    assert_eq!(
        chain.head().1.map(|h| h.to_hex()),
        manifest.head,
        "the manifest's head is the last line's hash"
    );
    let cloud: Value = serde_json::from_str(text.lines().nth(1).unwrap()).unwrap();
    assert_eq!(cloud["specversion"], "1.0");
    assert_eq!(cloud["source"], format!("/schools/{}", w.a));
    // The key bundle, with a passphrase long enough.
    let keys = format!("{s}/export/keys");
    let short = json!({"passphrase": "breve"});
    body(
        w.call(Method::POST, &keys, Some(&admin), Some(&short))
            .await,
        422,
    )
    .await;
    let good = json!({"passphrase": "una passphrase abbastanza lunga"});
    let bundle = body(
        w.call(Method::POST, &keys, Some(&admin), Some(&good)).await,
        200,
    )
    .await;
    let (school, _) =
        registro_store::bundle::open_bundle(&bundle.to_string(), "una passphrase abbastanza lunga")
            .unwrap();
    assert_eq!(school, w.a);
    // The principal runs the school, not its move.
    let principal = w.token(Role::Principal);
    let export = format!("{s}/export");
    let r = w.call(Method::GET, &export, Some(&principal), None);
    body(r.await, 403).await;
}

#[tokio::test]
async fn sqlite_the_administrator_downloads_the_school() {
    the_administrator_downloads_the_school(World::sqlite(RateLimit::default()).await).await;
}

#[tokio::test]
async fn postgres_the_administrator_downloads_the_school() {
    the_administrator_downloads_the_school(World::postgres(RateLimit::default()).await).await;
}
