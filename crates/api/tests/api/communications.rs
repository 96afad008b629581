//! Communications over HTTP on both stores: attachments uploaded and checked, a teacher's
//! notice with consent to the families and students of their class, the principal's numbered
//! circulars, receipts (presa visione), consents (adesione), what each caller sees, withdrawal,
//! and every refusal writing nothing.

use registro_api::ratelimit::RateLimit;
use registro_domain::Role;
use reqwest::Method;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use crate::world::{World, body};

/// Sends `method path` as the holder of `token`, with an optional JSON body; checks the status
/// and returns the body.
async fn expect(
    w: &World,
    method: Method,
    path: &str,
    token: &str,
    json: Option<Value>,
    status: u16,
) -> Value {
    body(
        w.call(method, path, Some(token), json.as_ref()).await,
        status,
    )
    .await
}

/// Uploads `bytes` as `media_type`.
async fn upload(w: &World, token: &str, media_type: &str, bytes: Vec<u8>) -> reqwest::Response {
    w.client
        .post(format!("{}/schools/{}/attachments", w.base, w.a))
        .bearer_auth(token)
        .header("content-type", media_type)
        .body(bytes)
        .send()
        .await
        .unwrap()
}

fn pdf() -> Vec<u8> {
    b"%PDF-1.4\n% programma della gita\n%%EOF\n".to_vec()
}

async fn communications_are_published_read_acknowledged_and_answered(w: World) {
    let (teacher, principal, secretary, guardian, student) = (
        w.token(Role::Teacher),
        w.token(Role::Principal),
        w.token(Role::Secretary),
        w.token(Role::Guardian),
        w.token(Role::Student),
    );
    let head = || async { w.store.school_head(w.a).await.unwrap().unwrap().last_seq };
    let s = format!("/schools/{}", w.a);

    // Attachments: stored by their SHA-256, once; only allowed types, whose bytes match them,
    // up to 10 MiB; never by families.
    let stored = body(upload(&w, &teacher, "application/pdf", pdf()).await, 201).await;
    let hash: String = Sha256::digest(pdf())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(stored["hash"], json!(hash));
    assert_eq!(stored["size"], json!(pdf().len()));
    let again = body(upload(&w, &principal, "application/pdf", pdf()).await, 201).await;
    assert_eq!(again, stored);
    let before = head().await;
    let html = body(
        upload(&w, &teacher, "text/html", b"<p>x</p>".to_vec()).await,
        415,
    )
    .await;
    assert!(
        html["detail"].as_str().unwrap().contains("application/pdf"),
        "{html}"
    );
    body(upload(&w, &teacher, "image/png", pdf()).await, 415).await;
    body(
        upload(&w, &teacher, "application/pdf", Vec::new()).await,
        422,
    )
    .await;
    // A 3 MiB scan is taken (above axum's 2 MB default for bodies); one byte over 10 MiB is not.
    let mut scan = pdf();
    scan.resize(3 * 1024 * 1024, b' ');
    body(upload(&w, &teacher, "application/pdf", scan).await, 201).await;
    let mut huge = pdf();
    huge.resize(10 * 1024 * 1024 + 1, b' ');
    body(upload(&w, &teacher, "application/pdf", huge).await, 413).await;
    body(upload(&w, &guardian, "application/pdf", pdf()).await, 403).await;
    assert_eq!(head().await, before, "an upload is not an event");

    // The teacher's notice to the families and students of their class, asking consent.
    let notice = json!({
        "kind": "notice",
        "title": "Uscita didattica a Firenze",
        "body": "Il 3 luglio la classe visiterà gli Uffizi.",
        "audience": {"groups": ["families", "students"], "classes": [w.c1]},
        "attachments": [{"hash": hash, "name": "programma gita.pdf"}],
        "consent_deadline": "2026-07-03",
    });
    // Refusals first: none of them writes anything.
    let refused = |changes: Value, status: u16, contains: &'static str| {
        let mut b = notice.clone();
        for (k, v) in changes.as_object().unwrap() {
            b[k] = v.clone();
        }
        let (w, teacher, s) = (&w, &teacher, &s);
        async move {
            let p = body(
                w.call(
                    Method::POST,
                    &format!("{s}/communications"),
                    Some(teacher),
                    Some(&b),
                )
                .await,
                status,
            )
            .await;
            assert!(p["detail"].as_str().unwrap().contains(contains), "{p}");
        }
    };
    refused(
        json!({"attachments": [{"hash": "ab".repeat(32), "name": "x.pdf"}]}),
        422,
        "attachments[0].hash",
    )
    .await;
    refused(
        json!({"attachments": [{"hash": "zz", "name": "x.pdf"}]}),
        422,
        "hash",
    )
    .await;
    refused(
        json!({"audience": {"groups": ["families"], "classes": [w.c2]}}),
        403,
        "classi in cui insegna",
    )
    .await;
    refused(json!({"kind": "circular"}), 403, "circolari").await;
    refused(
        json!({"audience": {"groups": ["staff"], "classes": [w.c1]}, "consent_deadline": null}),
        403,
        "personale",
    )
    .await;
    refused(
        json!({"audience": {"groups": ["families"], "classes": [uuid::Uuid::now_v7()]}}),
        404,
        "classe",
    )
    .await;
    refused(json!({"consent_deadline": "2026-06-29"}), 422, "termine").await;
    refused(json!({"title": " "}), 422, "oggetto").await;
    refused(
        json!({"audience": {"groups": [], "classes": [w.c1]}}),
        422,
        "destinatari",
    )
    .await;
    refused(json!({"colour": "red"}), 422, "colour").await;
    assert_eq!(head().await, before);
    let published = expect(
        &w,
        Method::POST,
        &format!("{s}/communications"),
        &teacher,
        Some(notice),
        201,
    )
    .await;
    let id = published["id"].as_str().unwrap().to_owned();
    let one = format!("{s}/communications/{id}");

    // The principal's circulars to every family are numbered.
    let circular = |title: &str| {
        json!({"kind": "circular", "title": title, "body": "Si comunica...",
            "audience": {"groups": ["families"]}})
    };
    for (n, title) in [(1, "Sciopero del 12"), (2, "Assemblea dei genitori")] {
        let c = expect(
            &w,
            Method::POST,
            &format!("{s}/communications"),
            &principal,
            Some(circular(title)),
            201,
        )
        .await;
        let read = body(
            w.call(
                Method::GET,
                &format!("{s}/communications/{}", c["id"].as_str().unwrap()),
                Some(&guardian),
                None,
            )
            .await,
            200,
        )
        .await;
        assert_eq!(read["number"], json!(n));
    }
    // A note to the staff only.
    body(
        w.call(
            Method::POST,
            &format!("{s}/communications"),
            Some(&secretary),
            Some(
                &json!({"kind": "notice", "title": "Collegio docenti", "body": "Alle 15.",
                "audience": {"groups": ["staff"]}}),
            ),
        )
        .await,
        201,
    )
    .await;

    // What each sees, newest first: the guardian the family ones; the student the notice;
    // the teacher their notice and the staff one; the secretary all four.
    let titles = |token: String| {
        let (w, s) = (&w, &s);
        async move {
            let list = expect(
                w,
                Method::GET,
                &format!("{s}/communications"),
                &token,
                None,
                200,
            )
            .await;
            list.as_array()
                .unwrap()
                .iter()
                .map(|c| c["title"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        titles(guardian.clone()).await,
        [
            "Assemblea dei genitori",
            "Sciopero del 12",
            "Uscita didattica a Firenze"
        ]
    );
    assert_eq!(
        titles(student.clone()).await,
        ["Uscita didattica a Firenze"]
    );
    assert_eq!(
        titles(teacher.clone()).await,
        ["Collegio docenti", "Uscita didattica a Firenze"]
    );
    assert_eq!(titles(secretary.clone()).await.len(), 4);
    let page = expect(
        &w,
        Method::GET,
        &format!("{s}/communications?limit=1"),
        &guardian,
        None,
        200,
    )
    .await;
    let next = body(
        w.call(
            Method::GET,
            &format!(
                "{s}/communications?limit=2&before={}",
                page[0]["id"].as_str().unwrap()
            ),
            Some(&guardian),
            None,
        )
        .await,
        200,
    )
    .await;
    assert_eq!(next[1]["title"], json!("Uscita didattica a Firenze"));
    expect(
        &w,
        Method::GET,
        &format!("{s}/communications?limit=0"),
        &guardian,
        None,
        422,
    )
    .await;
    // Not addressed, not visible: the same 404 as an unknown id.
    body(
        w.call(Method::GET, &one, Some(&w.token(Role::Auditor)), None)
            .await,
        403,
    )
    .await;
    let staff_only = expect(
        &w,
        Method::GET,
        &format!("{s}/communications"),
        &secretary,
        None,
        200,
    )
    .await;
    let staff_id = staff_only[0]["id"].as_str().unwrap();
    expect(
        &w,
        Method::GET,
        &format!("{s}/communications/{staff_id}"),
        &guardian,
        None,
        404,
    )
    .await;
    body(
        w.call(
            Method::GET,
            &format!("{s}/communications/{}", uuid::Uuid::now_v7()),
            Some(&guardian),
            None,
        )
        .await,
        404,
    )
    .await;

    // The family reads it and downloads the attachment.
    let read = expect(&w, Method::GET, &one, &guardian, None, 200).await;
    assert_eq!(read["attachments"][0]["name"], json!("programma gita.pdf"));
    assert_eq!(
        read["attachments"][0]["media_type"],
        json!("application/pdf")
    );
    assert_eq!(read["acknowledged_at"], Value::Null);
    assert_eq!(
        read["replies"],
        Value::Null,
        "families do not see the others' replies"
    );
    let file = w
        .call(
            Method::GET,
            &format!("{one}/attachments/{hash}"),
            Some(&guardian),
            None,
        )
        .await;
    assert_eq!(file.status().as_u16(), 200);
    assert_eq!(file.headers()["content-type"], "application/pdf");
    assert_eq!(file.headers()["x-content-type-options"], "nosniff");
    assert!(
        file.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .contains("programma%20gita.pdf")
    );
    assert_eq!(file.bytes().await.unwrap().to_vec(), pdf());
    body(
        w.call(
            Method::GET,
            &format!("{one}/attachments/{}", "ab".repeat(32)),
            Some(&guardian),
            None,
        )
        .await,
        404,
    )
    .await;
    expect(
        &w,
        Method::GET,
        &format!("{one}/attachments/not-a-hash"),
        &guardian,
        None,
        404,
    )
    .await;
    expect(
        &w,
        Method::GET,
        &format!("{s}/communications/{staff_id}/attachments/{hash}"),
        &guardian,
        None,
        404,
    )
    .await;

    // Presa visione, once; consent, by the guardian of the minor student, changeable until the
    // deadline; not by the student themself, nor for a student the notice is not about.
    let before = head().await;
    expect(
        &w,
        Method::POST,
        &format!("{one}/receipt"),
        &guardian,
        None,
        201,
    )
    .await;
    let twice = expect(
        &w,
        Method::POST,
        &format!("{one}/receipt"),
        &guardian,
        None,
        409,
    )
    .await;
    assert!(
        twice["detail"].as_str().unwrap().contains("presa visione"),
        "{twice}"
    );
    expect(
        &w,
        Method::POST,
        &format!("{one}/receipt"),
        &student,
        None,
        201,
    )
    .await;
    expect(
        &w,
        Method::POST,
        &format!("{one}/receipt"),
        &teacher,
        None,
        404,
    )
    .await;
    let consents = format!("{one}/consents");
    let x = w.x.to_string();
    let y = w.y.to_string();
    for consent in ["refused", "given"] {
        expect(
            &w,
            Method::POST,
            &consents,
            &guardian,
            Some(json!({"student": x, "consent": consent})),
            201,
        )
        .await;
    }
    expect(
        &w,
        Method::POST,
        &consents,
        &student,
        Some(json!({"student": x, "consent": "given"})),
        403,
    )
    .await;
    expect(
        &w,
        Method::POST,
        &consents,
        &guardian,
        Some(json!({"student": y, "consent": "given"})),
        422,
    )
    .await;
    expect(
        &w,
        Method::POST,
        &consents,
        &guardian,
        Some(json!({"student": x, "consent": "maybe"})),
        422,
    )
    .await;
    assert_eq!(head().await, before + 4, "two receipts and two answers");

    // The guardian sees their own receipt and their child's answer; the author sees everyone's.
    let read = expect(&w, Method::GET, &one, &guardian, None, 200).await;
    assert!(read["acknowledged_at"].is_string(), "{read}");
    assert_eq!(read["my_consents"][0]["consent"], json!("given"));
    let as_author = expect(&w, Method::GET, &one, &teacher, None, 200).await;
    let replies = &as_author["replies"];
    assert_eq!(
        replies["recipients"],
        json!(2),
        "the guardian and the student: {replies}"
    );
    assert_eq!(replies["receipts"].as_array().unwrap().len(), 2);
    assert_eq!(replies["consents"][0]["student"], json!(x));
    assert_eq!(
        replies["consents"][0]["by"],
        json!(w.person(Role::Guardian).to_string())
    );
    assert_eq!(replies["awaiting_consent"], json!([]));
    // The teacher's read of the student's answer is in the student's access log.
    let log = expect(
        &w,
        Method::GET,
        &format!("{s}/students/{x}/access-log"),
        &guardian,
        None,
        200,
    )
    .await;
    assert!(log.to_string().contains("communication.replies"), "{log}");

    // Withdrawal: by its author (or the principal) with a reason; then no more replies.
    for (token, reason, status) in [
        (&secretary, "errore", 403),
        (&teacher, " ", 422),
        (&teacher, "gita rinviata", 201),
        (&teacher, "ancora", 409),
    ] {
        let withdrawal = Some(json!({ "reason": reason }));
        let path = format!("{one}/withdrawal");
        expect(&w, Method::POST, &path, token, withdrawal, status).await;
    }
    let read = expect(&w, Method::GET, &one, &guardian, None, 200).await;
    assert_eq!(read["withdrawn"], json!("gita rinviata"));
    let late = expect(
        &w,
        Method::POST,
        &consents,
        &guardian,
        Some(json!({"student": x, "consent": "refused"})),
        409,
    )
    .await;
    assert!(
        late["detail"].as_str().unwrap().contains("annullata"),
        "{late}"
    );
}

#[tokio::test]
async fn sqlite_communications_are_published_read_acknowledged_and_answered() {
    communications_are_published_read_acknowledged_and_answered(
        World::sqlite(RateLimit::default()).await,
    )
    .await;
}

#[tokio::test]
async fn postgres_communications_are_published_read_acknowledged_and_answered() {
    communications_are_published_read_acknowledged_and_answered(
        World::postgres(RateLimit::default()).await,
    )
    .await;
}
