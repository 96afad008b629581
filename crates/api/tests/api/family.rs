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
