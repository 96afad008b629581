//! What auditors read of the log itself, on both stores: a range by `school_seq` and a stream's
//! history as stored (a sealed reason stays ciphertext), each line recomputing to its hash; the
//! chain's state, with a head published earlier held or not; reads of students' events go to
//! the access log.

use registro_api::ratelimit::RateLimit;
use registro_domain::Role;
use registro_store::portable::{Line, parse_line};
use registro_store::verify::ChainCheck;
use reqwest::Method;
use serde_json::json;

use crate::world::{World, body};

async fn auditors_read_the_log_as_stored(w: World) {
    let s = format!("/schools/{}", w.a);
    let teacher = w.token(Role::Teacher);
    let guardian = w.token(Role::Guardian);
    let attendance = format!("{s}/students/{}/years/2025/attendance", w.x);
    let absence = json!({"date": "2025-10-10", "kind": "absence"});
    let r = w.call(Method::POST, &attendance, Some(&teacher), Some(&absence));
    let id = body(r.await, 201).await["id"].as_str().unwrap().to_owned();
    let reason = json!({"category": "health", "text": "visita oculistica"});
    let justification = format!("{attendance}/{id}/justification");
    let r = w.call(Method::POST, &justification, Some(&guardian), Some(&reason));
    body(r.await, 201).await;

    let auditor = w.token(Role::Auditor);
    let get = |path: String| {
        let (w, auditor) = (&w, auditor.clone());
        async move { body(w.call(Method::GET, &path, Some(&auditor), None).await, 200).await }
    };
    // The whole log, a page at a time: every line verifies in order.
    let mut chain = ChainCheck::new(w.a);
    let mut from = 1;
    loop {
        let page = get(format!("{s}/log?from={from}&limit=7")).await;
        for e in page["events"].as_array().unwrap() {
            let Line::Event(e) = parse_line(w.a, &e.to_string()).unwrap() else {
                panic!("not an event: {e}");
            };
            chain.check(&e).unwrap();
        }
        match page["next"].as_u64() {
            Some(next) => from = next,
            None => break,
        }
    }
    let (events, head) = chain.head();
    assert!(events > 7, "several pages");
    // The record's history as stored: the reason stays sealed.
    let stream = format!("student-{}-2025", w.x);
    let history = get(format!("{s}/log/streams/{stream}")).await;
    let text = history.to_string();
    assert!(
        text.contains("$sealed") && !text.contains("oculistica"),
        "{text}"
    );
    let access = get(format!("{s}/access-log")).await;
    assert!(access.to_string().contains("school.log"), "{access}");
    // The chain, and heads published earlier.
    let status = get(format!("{s}/chain")).await;
    assert_eq!(status["status"], "intact");
    assert!(status["events"].as_u64().unwrap() >= events);
    let published = head.unwrap().to_hex();
    let held = get(format!("{s}/chain?head={published}")).await;
    assert_eq!(held["published_head_at"], events, "{held}");
    let elsewhere = "ab".repeat(32);
    let lost = get(format!("{s}/chain?head={elsewhere}")).await;
    assert_eq!(lost["published_head_at"], json!(null));
    let refusals = [
        (format!("{s}/chain?head=xyz"), &auditor, 400),
        (format!("{s}/log?limit=0"), &auditor, 400),
        (format!("{s}/log"), &teacher, 403),
    ];
    for (path, token, status) in refusals {
        let r = w.call(Method::GET, &path, Some(token), None);
        body(r.await, status).await;
    }
}

#[tokio::test]
async fn sqlite_auditors_read_the_log_as_stored() {
    auditors_read_the_log_as_stored(World::sqlite(RateLimit::default()).await).await;
}

#[tokio::test]
async fn postgres_auditors_read_the_log_as_stored() {
    auditors_read_the_log_as_stored(World::postgres(RateLimit::default()).await).await;
}

/// GDPR art. 15 and 20: the guardian downloads everything about the student: who they are,
/// every event about them (the reason the family gave, opened), the family view of each year of
/// their record and who read their data; a minor student asks through their guardians.
async fn a_guardian_downloads_everything_about_the_student(w: World) {
    let s = format!("/schools/{}", w.a);
    let teacher = w.token(Role::Teacher);
    let guardian = w.token(Role::Guardian);
    let attendance = format!("{s}/students/{}/years/2025/attendance", w.x);
    let absence = json!({"date": "2025-10-10", "kind": "absence"});
    let r = w.call(Method::POST, &attendance, Some(&teacher), Some(&absence));
    let id = body(r.await, 201).await["id"].as_str().unwrap().to_owned();
    let reason = json!({"category": "health", "text": "visita oculistica"});
    let justification = format!("{attendance}/{id}/justification");
    let r = w.call(Method::POST, &justification, Some(&guardian), Some(&reason));
    body(r.await, 201).await;
    // A staff read, which the download lists.
    body(
        w.call(Method::GET, &attendance, Some(&teacher), None).await,
        200,
    )
    .await;
    let path = format!("{s}/students/{}/personal-data", w.x);
    let r = w.call(Method::GET, &path, Some(&guardian), None).await;
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .contains("personal-data")
    );
    let document: serde_json::Value = r.json().await.unwrap();
    assert_eq!(document["person"]["id"], json!(w.x));
    assert!(
        document["person"]["guardians"]
            .as_array()
            .unwrap()
            .contains(&json!(w.person(Role::Guardian)))
    );
    let events = document["events"].as_array().unwrap();
    assert!(
        events.iter().any(|e| e["type"] == "StudentEnrolled"),
        "{document}"
    );
    assert!(
        events.iter().any(|e| e["type"] == "JustificationSubmitted"
            && e["data"].to_string().contains("visita oculistica")),
        "the family's own reason, opened"
    );
    assert!(
        document["family_view"]["2025"]["attendance"].is_object(),
        "{document}"
    );
    assert!(
        events.iter().all(|e| e["stream"] != "access-log"),
        "the reads are listed apart, without the classmates they name: {document}"
    );
    assert!(
        document["access_log"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["view"] == "student.attendance"),
        "{document}"
    );
    let student = w.token(Role::Student);
    body(w.call(Method::GET, &path, Some(&student), None).await, 403).await;
}

#[tokio::test]
async fn sqlite_a_guardian_downloads_everything_about_the_student() {
    a_guardian_downloads_everything_about_the_student(World::sqlite(RateLimit::default()).await)
        .await;
}

#[tokio::test]
async fn postgres_a_guardian_downloads_everything_about_the_student() {
    a_guardian_downloads_everything_about_the_student(World::postgres(RateLimit::default()).await)
        .await;
}

/// Time travel: the family view and the scrutiny report as they stood at a past position,
/// rebuilt from the events up to it; the live views are not touched.
async fn the_views_as_they_stood(w: World) {
    let s = format!("/schools/{}", w.a);
    let teacher = w.token(Role::Teacher);
    let principal = w.token(Role::Principal);
    let auditor = w.token(Role::Auditor);
    let grades = format!("{s}/students/{}/years/2025/grades", w.x);
    // A justification sealed under the record's key, before both points: the replay opens it
    // as the projector does.
    let attendance = format!("{s}/students/{}/years/2025/attendance", w.x);
    let absence = json!({"date": "2025-10-03", "kind": "absence"});
    let r = w.call(Method::POST, &attendance, Some(&teacher), Some(&absence));
    let id = body(r.await, 201).await["id"].as_str().unwrap().to_owned();
    let reason = json!({"category": "health", "text": "visita oculistica"});
    let justification = format!("{attendance}/{id}/justification");
    let guardian = w.token(Role::Guardian);
    let r = w.call(Method::POST, &justification, Some(&guardian), Some(&reason));
    body(r.await, 201).await;
    let mut positions = Vec::new();
    for (mark, date) in [("7", "2025-10-06"), ("9", "2025-10-13")] {
        let mut grade = crate::world::grade_body(mark);
        grade["date"] = json!(date);
        let r = w.call(Method::POST, &grades, Some(&teacher), Some(&grade));
        positions.push(body(r.await, 201).await["position"].as_u64().unwrap());
    }
    let family = format!("{s}/history/students/{}/years/2025/family", w.x);
    let at = |query: String| {
        let (w, auditor, family) = (&w, auditor.clone(), family.clone());
        async move {
            w.call(
                Method::GET,
                &format!("{family}?{query}"),
                Some(&auditor),
                None,
            )
            .await
        }
    };
    let first = at(format!("school_seq={}", positions[0])).await;
    assert_eq!(
        first.headers()["x-registro-as-of"],
        positions[0].to_string().as_str()
    );
    let first = body(first, 200).await;
    assert_eq!(first["subjects"][0]["grades"], 1, "{first}");
    assert_eq!(first["subjects"][0]["latest"], "7");
    assert_eq!(first["attendance"]["absences"], 1, "{first}");
    let both = body(at(format!("school_seq={}", positions[1])).await, 200).await;
    assert_eq!(both["subjects"][0]["grades"], 2, "{both}");
    assert_eq!(both["subjects"][0]["averages"][0]["average"], "8.00");
    // Before the school existed the student was nobody; one point, not two.
    body(at("date=2000-01-01".into()).await, 404).await;
    body(
        at(format!("date=2000-01-01&school_seq={}", positions[0])).await,
        400,
    )
    .await;
    body(at("school_seq=999999".into()).await, 422).await;

    // The scrutinio of term 1, before and after it was opened.
    w.run(
        w.a,
        registro_domain::directory::DirectoryCommand::AppointCoordinator {
            class: w.c1,
            teacher: w.person(Role::Teacher),
        },
    )
    .await;
    let scrutini = format!("{s}/classes/{}/years/2025/scrutini", w.c1);
    let open = json!({"term": 1, "level": "upper_secondary"});
    let r = w.call(Method::POST, &scrutini, Some(&principal), Some(&open));
    let opened = body(r.await, 201).await["position"].as_u64().unwrap();
    let history = format!("{s}/history/classes/{}/years/2025/scrutini/1", w.c1);
    let before = format!("{history}?school_seq={}", opened - 1);
    body(
        w.call(Method::GET, &before, Some(&auditor), None).await,
        404,
    )
    .await;
    let after = format!("{history}?school_seq={opened}");
    let view = body(
        w.call(Method::GET, &after, Some(&principal), None).await,
        200,
    )
    .await;
    assert_eq!(
        (&view["status"], &view["level"]),
        (&json!("open"), &json!("upper_secondary"))
    );
    assert_eq!(
        view["students"][0]["subjects"][0]["average"], "8.00",
        "{view}"
    );
    let r = w.call(Method::GET, &after, Some(&teacher), None);
    body(r.await, 403).await;
}

#[tokio::test]
async fn sqlite_the_views_as_they_stood() {
    the_views_as_they_stood(World::sqlite(RateLimit::default()).await).await;
}

#[tokio::test]
async fn postgres_the_views_as_they_stood() {
    the_views_as_they_stood(World::postgres(RateLimit::default()).await).await;
}
