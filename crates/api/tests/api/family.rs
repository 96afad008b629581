//! The family view over HTTP, read from its projection after the projector has caught up: the
//! guardian sees grades with their term averages and absences against the annual limit;
//! answers carry an ETag and a matching `If-None-Match` is answered 304; lists page newest
//! first; a teacher's read is recorded in the access log.

use std::sync::Arc;
use std::time::Duration;

use registro_api::ratelimit::RateLimit;
use registro_domain::Role;
use registro_projection_family::FamilyView;
use registro_projector::Projector;
use reqwest::Method;
use serde_json::{Value, json};

use crate::world::{World, body, grade_body, timetable, year_plan};

async fn the_family_sees_the_year_as_it_is_written(w: World) {
    let s = format!("/schools/{}", w.a);
    let secretary = w.token(Role::Secretary);
    let teacher = w.token(Role::Teacher);
    let guardian = w.token(Role::Guardian);
    for (method, path, request) in [
        (
            Method::PUT,
            format!("{s}/classes/{}/timetable", w.c1),
            timetable(),
        ),
        (Method::PUT, format!("{s}/years/2025"), year_plan()),
    ] {
        let status = w
            .call(method, &path, Some(&secretary), Some(&request))
            .await
            .status();
        assert_eq!(status, 200, "{path}");
    }
    let grades = format!("{s}/students/{}/years/2025/grades", w.x);
    let mut second = grade_body("8");
    second["date"] = json!("2025-10-07");
    for grade in [grade_body("7"), second] {
        body(
            w.call(Method::POST, &grades, Some(&teacher), Some(&grade))
                .await,
            201,
        )
        .await;
    }
    let absence = json!({"date": "2025-10-08", "kind": "absence"});
    body(
        w.call(
            Method::POST,
            &format!("{s}/students/{}/years/2025/attendance", w.x),
            Some(&teacher),
            Some(&absence),
        )
        .await,
        201,
    )
    .await;

    // The projector catches up (bounded: on PostgreSQL events reach subscribers once older
    // transactions have ended).
    let projector = Projector::new(Arc::clone(&w.store), Arc::new(FamilyView));
    let overview = format!("{s}/students/{}/years/2025/family", w.x);
    let mut view = Value::Null;
    for _ in 0..200 {
        projector.catch_up().await.unwrap();
        view = body(
            w.call(Method::GET, &overview, Some(&guardian), None).await,
            200,
        )
        .await;
        if view["subjects"][0]["grades"] == 2 && view["attendance"]["absences"] == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(view["class"], json!(w.c1), "{view}");
    let maths = &view["subjects"][0];
    assert_eq!(maths["subject"], "Matematica", "{view}");
    assert_eq!(maths["latest"], "8", "{view}");
    assert_eq!(
        maths["averages"],
        json!([{"term": "trimestre", "average": "7.50", "hundredths": 750, "proposal": 8}]),
        "{view}"
    );
    // 25 hours a week for 33 weeks: 825 hours, at most 206 missed; 5 missed is 0.6 %.
    assert_eq!(
        view["attendance"],
        json!({"absences": 1, "late_entries": 0, "early_exits": 0, "missed_hours": 5,
            "to_justify": 1, "annual_hours": 825, "max_absence_hours": 206, "percent": "0.6",
            "warning_percent": null, "over_limit": false}),
        "{view}"
    );

    // The ETag: the same view again is 304 without a body; a stale tag gets the view.
    let r = w.call(Method::GET, &overview, Some(&guardian), None).await;
    assert_eq!(r.status(), 200);
    let etag = r.headers()["etag"].to_str().unwrap().to_owned();
    assert!(etag.starts_with('"') && etag.len() > 10, "{etag}");
    let conditional = |tag: String| {
        w.client
            .get(format!("{}{overview}", w.base))
            .bearer_auth(&guardian)
            .header("if-none-match", tag)
            .send()
    };
    let r = conditional(etag.clone()).await.unwrap();
    assert_eq!(r.status(), 304);
    assert_eq!(r.headers()["etag"].to_str().unwrap(), etag);
    assert!(r.bytes().await.unwrap().is_empty());
    assert_eq!(conditional("\"stale\"".into()).await.unwrap().status(), 200);

    // Lists page newest first, with a cursor.
    let list = format!("{s}/students/{}/years/2025/family/grades", w.x);
    let page1 = body(
        w.call(
            Method::GET,
            &format!("{list}?limit=1"),
            Some(&guardian),
            None,
        )
        .await,
        200,
    )
    .await;
    assert_eq!(page1["items"][0]["mark"], "8", "{page1}");
    assert_eq!(page1["items"][0]["weight"], "1.00", "{page1}");
    let next = page1["next"].as_str().unwrap();
    let page2 = body(
        w.call(
            Method::GET,
            &format!("{list}?limit=1&cursor={next}"),
            Some(&guardian),
            None,
        )
        .await,
        200,
    )
    .await;
    assert_eq!(page2["items"][0]["mark"], "7", "{page2}");
    let absences = body(
        w.call(
            Method::GET,
            &format!("{s}/students/{}/years/2025/family/attendance", w.x),
            Some(&w.token(Role::Student)),
            None,
        )
        .await,
        200,
    )
    .await;
    assert_eq!(absences["items"][0]["hours"], 5, "{absences}");
    assert_eq!(absences["items"][0]["justification"], "missing");
    for (query, status) in [
        ("family/grades?cursor=yesterday", 422),
        ("family/grades?limit=0", 422),
        ("family/grades?colour=red", 400),
        ("family/marks", 404),
    ] {
        let path = format!("{s}/students/{}/years/2025/{query}", w.x);
        let r = w.call(Method::GET, &path, Some(&guardian), None).await;
        assert_eq!(r.status(), status, "{query}");
    }

    // Read your writes: a new grade's position, asked for while the projector is still to
    // apply it, is waited for; a position beyond the log is refused at once.
    let mut third = grade_body("9");
    third["date"] = json!("2025-10-09");
    let written = body(
        w.call(Method::POST, &grades, Some(&teacher), Some(&third))
            .await,
        201,
    )
    .await;
    let position = written["position"].as_u64().unwrap();
    let catching_up = {
        let projector = projector.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            for _ in 0..40 {
                projector.catch_up().await.unwrap();
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let fresh = body(
        w.call(
            Method::GET,
            &format!("{overview}?min_position={position}"),
            Some(&guardian),
            None,
        )
        .await,
        200,
    )
    .await;
    assert_eq!(fresh["subjects"][0]["latest"], "9", "{fresh}");
    assert_eq!(fresh["subjects"][0]["grades"], 3, "{fresh}");
    catching_up.abort();
    let beyond = format!("{list}?min_position={}", position + 1000);
    let r = w.call(Method::GET, &beyond, Some(&guardian), None).await;
    assert_eq!(r.status(), 422);

    // A teacher's read is recorded; the guardian's is not.
    let before = w.store.school_head(w.a).await.unwrap().unwrap().last_seq;
    body(
        w.call(Method::GET, &overview, Some(&teacher), None).await,
        200,
    )
    .await;
    let events = w
        .store
        .read_school(w.a, before, 10, registro_store::Sealed::Keep)
        .await
        .unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.event_type.as_str() == "StudentDataRead"
                && e.data["view"] == "family.overview"),
        "{events:?}"
    );
}

#[tokio::test]
async fn sqlite_the_family_sees_the_year_as_it_is_written() {
    the_family_sees_the_year_as_it_is_written(World::sqlite(RateLimit::default()).await).await;
}

#[tokio::test]
async fn postgres_the_family_sees_the_year_as_it_is_written() {
    the_family_sees_the_year_as_it_is_written(World::postgres(RateLimit::default()).await).await;
}

/// The overview after the projector has applied `position`: read with `min_position`, the
/// projector caught up before each try (on PostgreSQL events reach subscribers once older
/// transactions have ended, so a try may find it short of the position: 503, tried again).
async fn overview_at(
    w: &World,
    projector: &Projector,
    path: &str,
    token: &str,
    position: u64,
) -> Value {
    for _ in 0..200 {
        projector.catch_up().await.unwrap();
        let r = w
            .call(
                Method::GET,
                &format!("{path}?min_position={position}"),
                Some(token),
                None,
            )
            .await;
        if r.status() != 503 {
            return body(r, 200).await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the family view never reached {position}");
}

/// The overviews the API answered from a copy, as `/metrics` counts them.
async fn copies_used(w: &World) -> u64 {
    let text = w
        .call(Method::GET, "/metrics", None, None)
        .await
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("registro_family_overviews_total{outcome=\"used\"} "))
        .map_or(0, |n| n.trim().parse().unwrap())
}

/// The API keeps a copy of each overview it computed and answers with it while no row the
/// overview reads has changed (ADR 0035): a change in each of the overview's scopes (the
/// student's record, the class's register, the school's communications, the reader's own
/// receipts, the directory) gives the new overview at once.
async fn a_copy_of_the_overview_lasts_until_what_it_shows_changes(w: World) {
    let s = format!("/schools/{}", w.a);
    let (secretary, teacher) = (w.token(Role::Secretary), w.token(Role::Teacher));
    let guardian = w.token(Role::Guardian);
    let projector = Projector::new(Arc::clone(&w.store), Arc::new(FamilyView));
    let overview = format!("{s}/students/{}/years/2025/family", w.x);
    let written = |r: Value| r["position"].as_u64().unwrap();

    // The student's record.
    let grade = body(
        w.call(
            Method::POST,
            &format!("{s}/students/{}/years/2025/grades", w.x),
            Some(&teacher),
            Some(&grade_body("7")),
        )
        .await,
        201,
    )
    .await;
    let first = overview_at(&w, &projector, &overview, &guardian, written(grade)).await;
    assert_eq!(first["subjects"][0]["grades"], 1, "{first}");
    // Nothing changed: the copy answers, the same bytes.
    let used = copies_used(&w).await;
    let again = w.call(Method::GET, &overview, Some(&guardian), None).await;
    let etag = again.headers()["etag"].to_str().unwrap().to_owned();
    assert_eq!(body(again, 200).await, first);
    assert_eq!(copies_used(&w).await, used + 1);
    let r = w.call(Method::GET, &overview, Some(&guardian), None).await;
    assert_eq!(r.headers()["etag"].to_str().unwrap(), etag);

    let mut second = grade_body("9");
    second["date"] = json!("2025-10-07");
    let grade = body(
        w.call(
            Method::POST,
            &format!("{s}/students/{}/years/2025/grades", w.x),
            Some(&teacher),
            Some(&second),
        )
        .await,
        201,
    )
    .await;
    let view = overview_at(&w, &projector, &overview, &guardian, written(grade)).await;
    assert_eq!(view["subjects"][0]["latest"], "9", "{view}");

    // The class's register.
    assert_eq!(view["upcoming"], json!([]), "{view}");
    let homework = json!({"subject": "Matematica", "text": "Esercizi", "due": "2026-07-10"});
    let assigned = body(
        w.call(
            Method::POST,
            &format!("{s}/classes/{}/homework", w.c1),
            Some(&teacher),
            Some(&homework),
        )
        .await,
        201,
    )
    .await;
    let view = overview_at(&w, &projector, &overview, &guardian, written(assigned)).await;
    assert_eq!(view["upcoming"][0]["date"], "2026-07-10", "{view}");

    // The school's communications.
    assert_eq!(view["communications"]["total"], 0, "{view}");
    let notice = json!({"kind": "notice", "title": "Uscita", "body": "Testo",
        "audience": {"groups": ["families"], "classes": [w.c1]}});
    let published = body(
        w.call(
            Method::POST,
            &format!("{s}/communications"),
            Some(&teacher),
            Some(&notice),
        )
        .await,
        201,
    )
    .await;
    let id = published["id"].as_str().unwrap().to_owned();
    let view = overview_at(&w, &projector, &overview, &guardian, written(published)).await;
    assert_eq!(view["communications"]["total"], 1, "{view}");
    assert_eq!(view["communications"]["unread"], 1, "{view}");

    // The reader's own receipt.
    let receipt = body(
        w.call(
            Method::POST,
            &format!("{s}/communications/{id}/receipt"),
            Some(&guardian),
            None,
        )
        .await,
        201,
    )
    .await;
    let view = overview_at(&w, &projector, &overview, &guardian, written(receipt)).await;
    assert_eq!(view["communications"]["unread"], 0, "{view}");

    // The directory: a timetable of four hours a day instead of five.
    assert_eq!(view["attendance"]["annual_hours"], 825, "{view}");
    let mut shorter = timetable();
    let hours: Vec<Value> = shorter["hours"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["number"] != 5)
        .cloned()
        .collect();
    shorter["hours"] = json!(hours);
    let status = w
        .call(
            Method::PUT,
            &format!("{s}/classes/{}/timetable", w.c1),
            Some(&secretary),
            Some(&shorter),
        )
        .await
        .status();
    assert_eq!(status, 200);
    let view = body(
        w.call(Method::GET, &overview, Some(&guardian), None).await,
        200,
    )
    .await;
    assert_eq!(view["attendance"]["annual_hours"], 660, "{view}");

    // A staff read answered from a copy is recorded in the access log all the same.
    for _ in 0..2 {
        let before = w.store.school_head(w.a).await.unwrap().unwrap().last_seq;
        body(
            w.call(Method::GET, &overview, Some(&teacher), None).await,
            200,
        )
        .await;
        let events = w
            .store
            .read_school(w.a, before + 1, 10, registro_store::Sealed::Keep)
            .await
            .unwrap();
        assert!(
            events
                .iter()
                .any(|e| e.event_type.as_str() == "StudentDataRead"
                    && e.data["view"] == "family.overview"),
            "{events:?}"
        );
    }
}

#[tokio::test]
async fn sqlite_a_copy_of_the_overview_lasts_until_what_it_shows_changes() {
    a_copy_of_the_overview_lasts_until_what_it_shows_changes(
        World::sqlite(RateLimit::default()).await,
    )
    .await;
}

#[tokio::test]
async fn postgres_a_copy_of_the_overview_lasts_until_what_it_shows_changes() {
    a_copy_of_the_overview_lasts_until_what_it_shows_changes(
        World::postgres(RateLimit::default()).await,
    )
    .await;
}
