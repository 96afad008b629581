//! Scrutini over HTTP on both stores: a class taken through open, proposals (pre-filled from
//! the averages), session, deliberation, close (which locks the term's grades and absences),
//! reopening by the principal, and the final scrutinio, where an outcome the law forbids is
//! refused with its reason; the principal publishes the report cards, which the family then
//! finds in the family view and prints.

use std::sync::Arc;

use registro_api::ratelimit::RateLimit;
use registro_domain::Role;
use registro_domain::directory::DirectoryCommand;
use registro_projection_family::FamilyView;
use registro_projection_scrutiny::ScrutinyReport;
use registro_projector::Projector;
use reqwest::Method;
use serde_json::{Value, json};

use crate::world::{World, body, grade_body};

async fn a_class_goes_through_its_scrutini(w: World) {
    let s = format!("/schools/{}", w.a);
    let teacher = w.token(Role::Teacher);
    let principal = w.token(Role::Principal);
    w.run(
        w.a,
        DirectoryCommand::AppointCoordinator {
            class: w.c1,
            teacher: w.person(Role::Teacher),
        },
    )
    .await;
    let grades = format!("{s}/students/{}/years/2025/grades", w.x);
    for (mark, date) in [("6", "2025-10-06"), ("8", "2025-10-13")] {
        let mut grade = grade_body(mark);
        grade["date"] = json!(date);
        let r = w.call(Method::POST, &grades, Some(&teacher), Some(&grade));
        body(r.await, 201).await;
    }
    let scrutini = format!("{s}/classes/{}/years/2025/scrutini", w.c1);
    let post = |path: String, token: String, request: Value| {
        let w = &w;
        async move {
            w.call(Method::POST, &path, Some(&token), Some(&request))
                .await
        }
    };
    // The scrutiny report, built by its projector as the API writes: a read names the
    // position of the last write it must include.
    let projector = Projector::new(Arc::clone(&w.store), Arc::new(ScrutinyReport));
    let running = tokio::spawn(async move { projector.run(std::future::pending()).await });
    let report = |term: u8, token: &str, position: u64| {
        let path = format!("{scrutini}/{term}?min_position={position}");
        let (w, token) = (&w, token.to_owned());
        async move { body(w.call(Method::GET, &path, Some(&token), None).await, 200).await }
    };
    let position = |response: Value| response["position"].as_u64().unwrap();

    // Term 1: opened by the coordinator; the proposal is pre-filled from the average (7.00).
    let open = json!({"term": 1, "level": "upper_secondary"});
    let r = post(scrutini.clone(), teacher.clone(), open.clone()).await;
    let opened = position(body(r, 201).await);
    let r = post(scrutini.clone(), principal.clone(), open).await;
    body(r, 409).await;
    let view = report(1, &teacher, opened).await;
    assert_eq!(
        (&view["level"], &view["status"], &view["published"]),
        (&json!("upper_secondary"), &json!("open"), &json!(false)),
        "{view}"
    );
    let line = &view["students"][0];
    assert_eq!(line["student"], json!(w.x), "{view}");
    assert_eq!(
        line["subjects"][0],
        json!({"subject": "Matematica", "average": "7.00", "proposal": "7",
            "proposed_by_teacher": false, "final_grade": null}),
        "{view}"
    );
    let proposal = json!({"student": w.x, "subject": "Matematica", "mark": "7½"});
    let r = post(format!("{scrutini}/1/proposals"), teacher.clone(), proposal);
    body(r.await, 201).await;
    let attendees = json!({"date": "2025-12-22",
        "attendees": [w.person(Role::Principal), w.person(Role::Teacher)]});
    let r = post(format!("{scrutini}/1/session"), teacher.clone(), attendees);
    body(r.await, 201).await;
    let deliberation = json!({"student": w.x, "grades": {"Matematica": "7"}, "conduct": "9",
        "vote": {"dissenting": [w.person(Role::Principal)]}});
    let r = post(
        format!("{scrutini}/1/deliberations"),
        teacher.clone(),
        deliberation,
    );
    body(r.await, 201).await;
    let r = post(
        format!("{scrutini}/1/closure"),
        teacher.clone(),
        json!(null),
    );
    let closed = position(body(r.await, 201).await);
    let view = report(1, &principal, closed).await;
    assert_eq!(view["status"], "closed", "{view}");
    assert_eq!(view["session_date"], "2025-12-22", "{view}");
    assert_eq!(view["students"][0]["deliberated"], true, "{view}");
    assert_eq!(
        view["students"][0]["subjects"][0]["proposal"], "7½",
        "{view}"
    );
    assert_eq!(view["students"][0]["subjects"][0]["final_grade"], "7");
    assert_eq!(view["students"][0]["conduct"], "9");

    // Published, then withdrawn below by the reopening.
    let r = post(
        format!("{scrutini}/1/publication"),
        principal.clone(),
        json!(null),
    );
    body(r.await, 201).await;

    // Closed: the term's grades and absences are locked until the principal reopens.
    let mut late = grade_body("5");
    late["date"] = json!("2025-11-10");
    let problem = body(
        w.call(Method::POST, &grades, Some(&teacher), Some(&late))
            .await,
        409,
    )
    .await;
    assert!(
        problem["detail"].as_str().unwrap().contains("trimestre"),
        "{problem}"
    );
    let absence = json!({"date": "2025-11-10", "kind": "absence"});
    let attendance = format!("{s}/students/{}/years/2025/attendance", w.x);
    let r = w.call(Method::POST, &attendance, Some(&teacher), Some(&absence));
    body(r.await, 409).await;
    let reason = json!({"reason": "errore materiale nel voto"});
    let r = post(
        format!("{scrutini}/1/reopening"),
        teacher.clone(),
        reason.clone(),
    );
    body(r.await, 403).await;
    let r = post(format!("{scrutini}/1/reopening"), principal.clone(), reason);
    let reopened = position(body(r.await, 201).await);
    let view = report(1, &teacher, reopened).await;
    assert_eq!(
        (&view["status"], &view["published"], &view["reopened"]),
        (
            &json!("open"),
            &json!(false),
            &json!(["errore materiale nel voto"])
        ),
        "{view}"
    );
    let r = w.call(Method::POST, &grades, Some(&teacher), Some(&late));
    body(r.await, 201).await;

    // The final scrutinio: conduct 5 admits nobody.
    let open = json!({"term": 2, "level": "upper_secondary"});
    body(post(scrutini.clone(), teacher.clone(), open).await, 201).await;
    let session = json!({"date": "2026-06-12", "attendees": [w.person(Role::Principal)]});
    let r = post(format!("{scrutini}/2/session"), teacher.clone(), session);
    body(r.await, 201).await;
    let deliberation = json!({"student": w.x, "grades": {"Matematica": "6"}, "conduct": "5"});
    let r = post(
        format!("{scrutini}/2/deliberations"),
        teacher.clone(),
        deliberation,
    );
    body(r.await, 201).await;
    let admitted = json!({"student": w.x, "outcome": "admitted"});
    let r = post(
        format!("{scrutini}/2/outcomes"),
        teacher.clone(),
        admitted.clone(),
    );
    let problem = body(r.await, 422).await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("comportamento inferiore a 6"),
        "{problem}"
    );
    let r = post(format!("{scrutini}/1/outcomes"), teacher.clone(), admitted);
    body(r.await, 422).await;
    let refused = json!({"student": w.x, "outcome": "not_admitted"});
    let r = post(format!("{scrutini}/2/outcomes"), teacher.clone(), refused);
    let decided = position(body(r.await, 201).await);
    let view = report(2, &principal, decided).await;
    assert_eq!(view["is_final"], true);
    assert_eq!(view["students"][0]["proposed_outcome"], "not_admitted");
    assert_eq!(view["students"][0]["outcome"], "not_admitted");
    assert_eq!(view["students"][0]["max_absence_hours"], 206);
    let r = post(
        format!("{scrutini}/2/closure"),
        teacher.clone(),
        json!(null),
    );
    body(r.await, 201).await;
    // The minutes of both scrutini, generated from the deliberations.
    let minutes = |term: u8| {
        let path = format!("{scrutini}/{term}/minutes");
        let principal = principal.clone();
        let w = &w;
        async move {
            body(
                w.call(Method::GET, &path, Some(&principal), None).await,
                200,
            )
            .await
        }
    };
    let first = minutes(1).await;
    assert_eq!(first["term"], "trimestre", "{first}");
    assert_eq!(first["status"], "open", "reopened: {first}");
    assert_eq!(first["reopened"], json!(["errore materiale nel voto"]));
    assert_eq!(first["present"].as_array().unwrap().len(), 2, "{first}");
    let vote = &first["deliberations"][0]["vote"];
    assert_eq!(vote["kind"], "majority", "{first}");
    assert_eq!(
        vote["dissenting"][0]["id"],
        json!(w.person(Role::Principal))
    );
    let last = minutes(2).await;
    let entry = &last["deliberations"][0];
    assert_eq!(
        (
            &entry["outcome"],
            &entry["proposed_outcome"],
            &entry["conduct"]
        ),
        (&json!("not_admitted"), &json!("not_admitted"), &json!("5")),
        "{last}"
    );
    assert_eq!(last["date"], "2026-06-12");

    // Published by the principal, the report card reaches the family view and prints.
    let r = post(
        format!("{scrutini}/2/publication"),
        teacher.clone(),
        json!(null),
    );
    body(r.await, 403).await;
    let r = post(
        format!("{scrutini}/2/publication"),
        principal.clone(),
        json!(null),
    );
    let position = body(r.await, 201).await["position"].as_u64().unwrap();
    let projector = Projector::new(Arc::clone(&w.store), Arc::new(FamilyView));
    let guardian = w.token(Role::Guardian);
    let overview = format!("{s}/students/{}/years/2025/family", w.x);
    let mut view = Value::Null;
    for _ in 0..200 {
        projector.catch_up().await.unwrap();
        view = body(
            w.call(Method::GET, &overview, Some(&guardian), None).await,
            200,
        )
        .await;
        if !view["report_cards"].as_array().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let fresh = format!("{overview}?min_position={position}");
    body(
        w.call(Method::GET, &fresh, Some(&guardian), None).await,
        200,
    )
    .await;
    let cards = &view["report_cards"];
    assert_eq!(
        cards.as_array().unwrap().len(),
        1,
        "term 1 was reopened: {view}"
    );
    assert_eq!(
        cards[0],
        json!({"class": w.c1, "term": 2, "is_final": true, "grades": {"Matematica": "6"},
            "conduct": 5, "outcome": "not_admitted", "subjects_to_recover": [],
            "citizenship": false, "resolved": null}),
        "{view}"
    );
    let page = w
        .call(
            Method::GET,
            &format!("{s}/students/{}/years/2025/report-cards/2", w.x),
            Some(&guardian),
            None,
        )
        .await;
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    let html = page.text().await.unwrap();
    assert!(html.contains("Documento di valutazione"), "{html}");
    assert!(html.contains("<td>Matematica</td><td>6</td>"), "{html}");
    assert!(html.contains("non ammesso/a"), "{html}");
    let unpublished = w
        .call(
            Method::GET,
            &format!("{s}/students/{}/years/2025/report-cards/1", w.x),
            Some(&guardian),
            None,
        )
        .await;
    assert_eq!(unpublished.status(), 404);

    // The principal reopens the final scrutinio: the council withdraws the outcome, corrects
    // conduct, and decides again; the integration scrutinio, on a day of its own, resolves
    // the suspended judgement.
    let reason = json!({"reason": "comportamento trascritto male"});
    let r = post(
        format!("{scrutini}/2/reopening"),
        principal.clone(),
        reason.clone(),
    );
    body(r.await, 201).await;
    let deliberation = json!({"student": w.x, "grades": {"Matematica": "6"}, "conduct": "6"});
    let r = post(
        format!("{scrutini}/2/deliberations"),
        teacher.clone(),
        deliberation.clone(),
    );
    body(r.await, 409).await;
    let withdrawal = json!({"student": w.x, "reason": "comportamento trascritto male"});
    let r = post(
        format!("{scrutini}/2/outcomes/withdrawal"),
        teacher.clone(),
        withdrawal.clone(),
    );
    body(r.await, 201).await;
    let r = post(
        format!("{scrutini}/2/outcomes/withdrawal"),
        teacher.clone(),
        withdrawal,
    );
    body(r.await, 409).await;
    let r = post(
        format!("{scrutini}/2/deliberations"),
        teacher.clone(),
        deliberation,
    );
    body(r.await, 201).await;
    let suspended = json!({"student": w.x, "outcome": "judgement_suspended", "citizenship": true});
    let r = post(format!("{scrutini}/2/outcomes"), teacher.clone(), suspended);
    body(r.await, 201).await;
    let r = post(
        format!("{scrutini}/2/closure"),
        teacher.clone(),
        json!(null),
    );
    body(r.await, 201).await;
    let admitted = json!({"student": w.x, "admitted": true});
    let r = post(
        format!("{scrutini}/2/integration"),
        teacher.clone(),
        admitted.clone(),
    );
    body(r.await, 409).await;
    let early = json!({"date": "2026-06-12", "attendees": [w.person(Role::Principal)]});
    let r = post(
        format!("{scrutini}/2/integration-session"),
        teacher.clone(),
        early,
    );
    body(r.await, 422).await;
    let sitting = json!({"date": "2026-08-31", "attendees": [w.person(Role::Principal)]});
    let r = post(
        format!("{scrutini}/2/integration-session"),
        teacher.clone(),
        sitting,
    );
    body(r.await, 201).await;
    let r = post(
        format!("{scrutini}/2/integration"),
        teacher.clone(),
        admitted,
    );
    let resolved = body(r.await, 201).await["position"].as_u64().unwrap();
    let last = minutes(2).await;
    assert_eq!(
        last["withdrawn_outcomes"][0]["reason"], "comportamento trascritto male",
        "{last}"
    );
    assert_eq!(last["deliberations"][0]["outcome"], "judgement_suspended");
    let integration = &last["integration"];
    assert_eq!(integration["date"], "2026-08-31", "{last}");
    assert_eq!(
        integration["present"][0]["id"],
        json!(w.person(Role::Principal))
    );
    assert_eq!(integration["resolutions"][0]["outcome"], "admitted");
    assert_eq!(integration["resolutions"][0]["vote"]["kind"], "unanimous");
    let view = report(2, &principal, resolved).await;
    let line = &view["students"][0];
    assert_eq!(
        (&line["outcome"], &line["resolved"], &line["conduct"]),
        (
            &json!("judgement_suspended"),
            &json!("admitted"),
            &json!("6")
        ),
        "{view}"
    );
    running.abort();
}

/// The school's most subjects to recover (rule 4): 3 until the principal or the office sets
/// it, within 1 to 6; every member reads it.
async fn the_school_sets_its_scrutiny_rules(w: World) {
    let rules = format!("/schools/{}/settings/scrutini", w.a);
    let teacher = w.token(Role::Teacher);
    let principal = w.token(Role::Principal);
    let read = body(w.call(Method::GET, &rules, Some(&teacher), None).await, 200).await;
    assert_eq!(read, json!({"max_subjects_to_recover": 3}));
    for bad in [
        json!({"max_subjects_to_recover": 0}),
        json!({"max_subjects_to_recover": 7}),
    ] {
        let problem = body(
            w.call(Method::PUT, &rules, Some(&principal), Some(&bad))
                .await,
            422,
        )
        .await;
        assert!(
            problem["detail"].as_str().unwrap().contains("da 1 a 6"),
            "{problem}"
        );
    }
    let four = json!({"max_subjects_to_recover": 4});
    body(
        w.call(Method::PUT, &rules, Some(&teacher), Some(&four))
            .await,
        403,
    )
    .await;
    body(
        w.call(Method::PUT, &rules, Some(&principal), Some(&four))
            .await,
        200,
    )
    .await;
    let read = body(w.call(Method::GET, &rules, Some(&teacher), None).await, 200).await;
    assert_eq!(read, four);
}

#[tokio::test]
async fn sqlite_the_school_sets_its_scrutiny_rules() {
    the_school_sets_its_scrutiny_rules(World::sqlite(RateLimit::default()).await).await;
}

#[tokio::test]
async fn postgres_the_school_sets_its_scrutiny_rules() {
    the_school_sets_its_scrutiny_rules(World::postgres(RateLimit::default()).await).await;
}

#[tokio::test]
async fn sqlite_a_class_goes_through_its_scrutini() {
    a_class_goes_through_its_scrutini(World::sqlite(RateLimit::default()).await).await;
}

#[tokio::test]
async fn postgres_a_class_goes_through_its_scrutini() {
    a_class_goes_through_its_scrutini(World::postgres(RateLimit::default()).await).await;
}
