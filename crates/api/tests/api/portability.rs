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

/// Rule 7: with the tests' "today" (30 June 2026), the details of 2022/23 are past their
/// retention (the end of 2024/25) and those of 2025/26 are not. The administrator's run erases
/// the old year's sealed reason, records it on the record, and leaves the chain verifiable; no
/// read shows the reason any more; a second run erases nothing.
async fn the_retention_erases_what_it_no_longer_keeps(w: World) {
    let s = format!("/schools/{}", w.a);
    let teacher = w.token(Role::Teacher);
    let guardian = w.token(Role::Guardian);
    let justified = |year: i32, date: &'static str, text: &'static str| {
        let attendance = format!("{s}/students/{}/years/{year}/attendance", w.x);
        let (w, teacher, guardian) = (&w, teacher.clone(), guardian.clone());
        async move {
            let absence = json!({"date": date, "kind": "absence"});
            let r = w.call(Method::POST, &attendance, Some(&teacher), Some(&absence));
            let id = body(r.await, 201).await["id"].as_str().unwrap().to_owned();
            let reason = json!({"category": "health", "text": text});
            let justification = format!("{attendance}/{id}/justification");
            let r = w.call(Method::POST, &justification, Some(&guardian), Some(&reason));
            body(r.await, 201).await;
            attendance
        }
    };
    let old = justified(2022, "2022-10-10", "ricovero in ospedale").await;
    let recent = justified(2025, "2025-10-10", "visita cardiologica").await;
    let read = |path: String| {
        let (w, guardian) = (&w, guardian.clone());
        async move { body(w.call(Method::GET, &path, Some(&guardian), None).await, 200).await }
    };
    assert!(
        read(old.clone())
            .await
            .to_string()
            .contains("ricovero in ospedale")
    );

    let admin = w.token(Role::Admin);
    let run = format!("{s}/retention/run");
    let done = body(w.call(Method::POST, &run, Some(&admin), None).await, 200).await;
    assert_eq!(
        done["erased"],
        json!([{"student": w.x, "year": 2022}]),
        "{done}"
    );
    let view = read(old.clone()).await;
    assert!(!view.to_string().contains("ricovero"), "{view}");
    assert_eq!(
        view["entries"][0]["justification"]["state"], "submitted",
        "{view}"
    );
    assert!(
        read(recent)
            .await
            .to_string()
            .contains("visita cardiologica")
    );
    let events = w
        .store
        .read_school(w.a, 1, 100_000, registro_store::Sealed::Open)
        .await
        .unwrap();
    assert!(
        events
            .iter()
            .all(|e| !e.data.to_string().contains("ricovero")),
        "no read of the log shows it either"
    );
    let erasure = events
        .iter()
        .find(|e| e.event_type.as_str() == "SealedDataErased")
        .unwrap();
    assert_eq!(erasure.stream_id.as_str(), format!("student-{}-2022", w.x));
    assert!(matches!(
        registro_store::verify::verify_school(w.store.as_ref(), w.a)
            .await
            .unwrap(),
        registro_store::verify::Verification::Intact { .. }
    ));
    let again = body(w.call(Method::POST, &run, Some(&admin), None).await, 200).await;
    assert_eq!(again["erased"], json!([]));
    // The school's setting: 0 to 10 years, read by every member.
    let rules = format!("{s}/settings/retention");
    let principal = w.token(Role::Principal);
    let keep = json!({"years_after": 11});
    body(
        w.call(Method::PUT, &rules, Some(&principal), Some(&keep))
            .await,
        422,
    )
    .await;
    let keep = json!({"years_after": 5});
    body(
        w.call(Method::PUT, &rules, Some(&principal), Some(&keep))
            .await,
        200,
    )
    .await;
    let read_rules = body(w.call(Method::GET, &rules, Some(&teacher), None).await, 200).await;
    assert_eq!(read_rules, json!({"years_after": 5}));
}

#[tokio::test]
async fn sqlite_the_retention_erases_what_it_no_longer_keeps() {
    the_retention_erases_what_it_no_longer_keeps(World::sqlite(RateLimit::default()).await).await;
}

#[tokio::test]
async fn postgres_the_retention_erases_what_it_no_longer_keeps() {
    the_retention_erases_what_it_no_longer_keeps(World::postgres(RateLimit::default()).await).await;
}
