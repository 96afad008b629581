//! The audit trail over HTTP, read from its projection after the projector has caught up: a
//! family sees every event about their child and who caused it; auditors filter the school's
//! trail; asking for a student's entries is itself recorded.

use std::sync::Arc;
use std::time::Duration;

use registro_api::ratelimit::RateLimit;
use registro_domain::Role;
use registro_projection_audit::AuditTrail;
use registro_projector::Projector;
use reqwest::Method;
use serde_json::Value;

use crate::world::{World, body, grade_body};

async fn the_trail_shows_who_did_what_to_whose_data(w: World) {
    let s = format!("/schools/{}", w.a);
    let grades = format!("{s}/students/{}/years/2025/grades", w.x);
    body(
        w.call(
            Method::POST,
            &grades,
            Some(&w.token(Role::Teacher)),
            Some(&grade_body("7")),
        )
        .await,
        201,
    )
    .await;
    body(
        w.call(Method::GET, &grades, Some(&w.token(Role::Principal)), None)
            .await,
        200,
    )
    .await;
    // The projector catches up (bounded: on PostgreSQL events reach subscribers once older
    // transactions have ended).
    let projector = Projector::new(Arc::clone(&w.store), Arc::new(AuditTrail));
    let trail = format!("{s}/students/{}/audit", w.x);
    let guardian = w.token(Role::Guardian);
    let mut entries = Value::Null;
    for _ in 0..200 {
        projector.catch_up().await.unwrap();
        entries = body(
            w.call(Method::GET, &trail, Some(&guardian), None).await,
            200,
        )
        .await;
        // Until the principal's read (the last event written) is in: the directory's entries
        // about the student may come first.
        if entries["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "StudentDataRead")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let actions: Vec<(&str, &str)> = entries["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["action"].as_str().unwrap(), e["role"].as_str().unwrap()))
        .collect();
    assert!(actions.contains(&("GradeRecorded", "teacher")), "{entries}");
    assert!(
        actions.contains(&("StudentDataRead", "principal")),
        "{entries}"
    );
    let read = entries["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "StudentDataRead")
        .unwrap();
    assert_eq!(read["summary"], "registro degli accessi: student.grades");
    // The student reads their own trail; another student's is hidden from a guardian.
    body(
        w.call(Method::GET, &trail, Some(&w.token(Role::Student)), None)
            .await,
        200,
    )
    .await;
    let other = format!("{s}/students/{}/audit", w.y);
    body(
        w.call(Method::GET, &other, Some(&guardian), None).await,
        404,
    )
    .await;

    // Auditors filter the school's trail by action; pages carry a cursor.
    let auditor = w.token(Role::Auditor);
    let graded = body(
        w.call(
            Method::GET,
            &format!("{s}/audit?action=GradeRecorded"),
            Some(&auditor),
            None,
        )
        .await,
        200,
    )
    .await;
    assert!(
        graded["entries"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["action"] == "GradeRecorded"),
        "{graded}"
    );
    let one = body(
        w.call(
            Method::GET,
            &format!("{s}/audit?limit=1"),
            Some(&auditor),
            None,
        )
        .await,
        200,
    )
    .await;
    assert_eq!(one["entries"].as_array().unwrap().len(), 1);
    assert!(one["next_before"].is_u64(), "{one}");
    body(
        w.call(
            Method::GET,
            &format!("{s}/audit?limit=0"),
            Some(&auditor),
            None,
        )
        .await,
        422,
    )
    .await;
    body(
        w.call(
            Method::GET,
            &format!("{s}/audit?colour=red"),
            Some(&auditor),
            None,
        )
        .await,
        400,
    )
    .await;
    // Asking for one student's entries is a read of their data: the family sees it.
    body(
        w.call(
            Method::GET,
            &format!("{s}/audit?student={}", w.x),
            Some(&auditor),
            None,
        )
        .await,
        200,
    )
    .await;
    let log = body(
        w.call(
            Method::GET,
            &format!("{s}/students/{}/access-log", w.x),
            Some(&guardian),
            None,
        )
        .await,
        200,
    )
    .await;
    assert!(log.to_string().contains("student.audit"), "{log}");
}

#[tokio::test]
async fn sqlite_the_trail_shows_who_did_what_to_whose_data() {
    the_trail_shows_who_did_what_to_whose_data(World::sqlite(RateLimit::default()).await).await;
}

#[tokio::test]
async fn postgres_the_trail_shows_who_did_what_to_whose_data() {
    the_trail_shows_who_did_what_to_whose_data(World::postgres(RateLimit::default()).await).await;
}
