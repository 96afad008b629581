//! The register over HTTP on both stores: grades given by the subject's teacher, read by the
//! family with their averages per term, corrected and annulled with their history; absences,
//! late entries and early exits with the hours they miss against the annual limit; the class
//! register (signatures, substitutes, homework, tests); notes and sanctions; refusals with
//! their reasons.

use std::time::Duration;

use registro_api::ratelimit::RateLimit;
use registro_domain::Role;
use registro_domain::directory::DirectoryCommand;
use reqwest::Method;
use serde_json::{Value, json};

use crate::world::{World, body, grade_body};

async fn grades_are_given_read_corrected_and_annulled(w: World) {
    let teacher = w.token(Role::Teacher);
    let grades = format!("/schools/{}/students/{}/years/2025/grades", w.a, w.x);
    let head = || async { w.store.school_head(w.a).await.unwrap().unwrap().last_seq };

    // Two numeric grades in the trimestre (one weighing half), one in the pentamestre, a
    // judgement that is never averaged.
    let seven_plus = body(
        w.call(
            Method::POST,
            &grades,
            Some(&teacher),
            Some(&grade_body("7+")),
        )
        .await,
        201,
    )
    .await;
    let mut half = grade_body("5");
    half["weight"] = json!("0,5");
    half["kind"] = json!("oral");
    body(
        w.call(Method::POST, &grades, Some(&teacher), Some(&half))
            .await,
        201,
    )
    .await;
    let mut later = grade_body("6½");
    later["date"] = json!("2026-02-02");
    let later = body(
        w.call(Method::POST, &grades, Some(&teacher), Some(&later))
            .await,
        201,
    )
    .await;
    // Religion is graded by judgement, never averaged; a judgement in mathematics, whose grades
    // are numbers, is refused.
    let mut judgement = grade_body("distinto");
    judgement["scale"] = json!("judgement");
    let problem = body(
        w.call(Method::POST, &grades, Some(&teacher), Some(&judgement))
            .await,
        422,
    )
    .await;
    assert!(
        problem["detail"].as_str().unwrap().contains("scala"),
        "{problem}"
    );
    w.run(
        w.a,
        DirectoryCommand::AssignTeacher {
            teacher: w.person(Role::Teacher),
            class: w.c1,
            subject: "Religione".into(),
        },
    )
    .await;
    judgement["subject"] = json!("Religione");
    body(
        w.call(Method::POST, &grades, Some(&teacher), Some(&judgement))
            .await,
        201,
    )
    .await;

    // The guardian reads them: (7.25 x 1 + 5 x 0.5) / 1.5 = 6.50 in the trimestre.
    let before = head().await;
    let view = body(
        w.call(Method::GET, &grades, Some(&w.token(Role::Guardian)), None)
            .await,
        200,
    )
    .await;
    assert_eq!(head().await, before, "the family's reads are not recorded");
    assert_eq!(view["year"], "2025/26");
    assert_eq!(view["grades"].as_array().unwrap().len(), 4);
    assert_eq!(view["grades"][0]["mark"], "7+");
    assert_eq!(view["grades"][0]["hundredths"], 725);
    assert_eq!(view["grades"][1]["weight"], "0.5");
    assert_eq!(view["grades"][3]["mark"], "distinto");
    assert!(view["grades"][3]["hundredths"].is_null());
    assert_eq!(
        view["averages"],
        json!([
            {"subject": "Matematica", "term": "trimestre", "average": "6.50", "hundredths": 650,
             "proposal": 7},
            {"subject": "Matematica", "term": "pentamestre", "average": "6.50",
             "hundredths": 650, "proposal": 7},
        ])
    );

    // Corrected: 7+ was a transcription error for 8-.
    let first = seven_plus["id"].as_str().unwrap();
    let correction = json!({"mark": "8-", "reason": "errore di trascrizione"});
    body(
        w.call(
            Method::POST,
            &format!("{grades}/{first}/corrections"),
            Some(&teacher),
            Some(&correction),
        )
        .await,
        201,
    )
    .await;
    // Annulled: the pentamestre test is to be repeated.
    let second = later["id"].as_str().unwrap();
    body(
        w.call(
            Method::POST,
            &format!("{grades}/{second}/annulment"),
            Some(&teacher),
            Some(&json!({"reason": "prova da ripetere"})),
        )
        .await,
        201,
    )
    .await;
    let before = head().await;
    let view = body(
        w.call(Method::GET, &grades, Some(&w.token(Role::Student)), None)
            .await,
        200,
    )
    .await;
    assert_eq!(head().await, before, "nor the student's own");
    assert_eq!(view["grades"][0]["mark"], "8-");
    assert_eq!(view["grades"][0]["corrections"], 1);
    assert_eq!(view["grades"][2]["annulled"], "prova da ripetere");
    // (7.75 + 2.5) / 1.5 = 6.833.. -> 6.83; nothing left in the pentamestre.
    assert_eq!(
        view["averages"],
        json!([{"subject": "Matematica", "term": "trimestre", "average": "6.83",
            "hundredths": 683, "proposal": 7}])
    );

    // The teacher's read is in the child's access log.
    let before = head().await;
    body(
        w.call(Method::GET, &grades, Some(&teacher), None).await,
        200,
    )
    .await;
    assert_eq!(head().await, before + 1);
    let log = body(
        w.call(
            Method::GET,
            &format!("/schools/{}/students/{}/access-log", w.a, w.x),
            Some(&w.token(Role::Guardian)),
            None,
        )
        .await,
        200,
    )
    .await;
    assert_eq!(log["entries"][0]["view"], "student.grades");
    assert_eq!(log["entries"][0]["role"], "teacher");

    // Refusals write nothing and say why.
    let before = head().await;
    let history_teacher_code = w.code();
    let history_teacher = w
        .register_with_code(w.a, Role::Teacher, history_teacher_code.clone())
        .await;
    w.run(
        w.a,
        DirectoryCommand::AssignTeacher {
            teacher: history_teacher,
            class: w.c1,
            subject: "Storia".into(),
        },
    )
    .await;
    let before = before + 2;
    let history = w
        .issuer
        .issue_with(None, &history_teacher_code, Duration::from_secs(60))
        .unwrap();
    let r = w
        .call(
            Method::POST,
            &grades,
            Some(&history),
            Some(&grade_body("6")),
        )
        .await;
    assert_eq!(r.status(), 403, "a grade in another teacher's subject");
    let r = w
        .call(
            Method::POST,
            &format!("{grades}/{first}/corrections"),
            Some(&history),
            Some(&json!({"mark": "4", "reason": "x"})),
        )
        .await;
    assert_eq!(r.status(), 403, "a correction of another teacher's subject");
    for (bad, field) in [
        (grade_body("11"), "mark"),
        (grade_body("sei"), "mark"),
        (
            {
                let mut b = grade_body("6");
                b["weight"] = json!("0");
                b
            },
            "weight",
        ),
        (
            {
                let mut b = grade_body("6");
                b["date"] = json!("2026-10-06");
                b
            },
            "2025/26",
        ),
        (
            {
                let mut b = grade_body("6");
                b["kind"] = json!("sung");
                b
            },
            "kind",
        ),
        (
            {
                let mut b = grade_body("6");
                b["extra"] = json!(1);
                b
            },
            "extra",
        ),
    ] {
        let problem = body(
            w.call(Method::POST, &grades, Some(&teacher), Some(&bad))
                .await,
            422,
        )
        .await;
        assert!(
            problem["detail"].as_str().unwrap().contains(field),
            "{field}: {problem}"
        );
    }
    let r = w
        .call(
            Method::POST,
            &format!("{grades}/{}/corrections", uuid::Uuid::now_v7()),
            Some(&teacher),
            Some(&json!({"mark": "6", "reason": "x"})),
        )
        .await;
    assert_eq!(r.status(), 404);
    let r = w
        .call(
            Method::POST,
            &format!("{grades}/{second}/annulment"),
            Some(&teacher),
            Some(&json!({"reason": "di nuovo"})),
        )
        .await;
    assert_eq!(r.status(), 409, "already annulled");
    assert_eq!(head().await, before, "a refused command wrote something");

    // A double tap gives one grade.
    let tap = || {
        w.client
            .post(format!("{}{grades}", w.base))
            .bearer_auth(&teacher)
            .header("idempotency-key", "grade-tap")
            .json(&grade_body("9"))
            .send()
    };
    let first_tap = body(tap().await.unwrap(), 201).await;
    let again = tap().await.unwrap();
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(body(again, 201).await, first_tap);
    assert_eq!(head().await, before + 1);

    // The subject's scale is the default: a judgement needs no scale named; a number in
    // religion is refused.
    let mut plain = grade_body("ottimo");
    plain["subject"] = json!("Religione");
    body(
        w.call(Method::POST, &grades, Some(&teacher), Some(&plain))
            .await,
        201,
    )
    .await;
    plain["mark"] = json!("8");
    body(
        w.call(Method::POST, &grades, Some(&teacher), Some(&plain))
            .await,
        422,
    )
    .await;
    // Subjects are the school's: defined once by the office, listed for everyone; a class is
    // taught only defined subjects.
    let subjects = format!("/schools/{}/subjects", w.a);
    let office = w.token(Role::Secretary);
    let listed = body(
        w.call(Method::GET, &subjects, Some(&teacher), None).await,
        200,
    )
    .await;
    assert!(
        listed
            .as_array()
            .unwrap()
            .contains(&json!({"name": "Religione", "scale": "judgement"}))
    );
    let latin = json!({"name": "Latino", "scale": "numeric"});
    let assign = json!({"teacher": w.person(Role::Teacher), "subject": "Latino"});
    let teachers = format!("/schools/{}/classes/{}/teachers", w.a, w.c1);
    let problem = body(
        w.call(Method::POST, &teachers, Some(&office), Some(&assign))
            .await,
        422,
    )
    .await;
    assert!(
        problem["detail"].as_str().unwrap().contains("Latino"),
        "{problem}"
    );
    body(
        w.call(Method::POST, &subjects, Some(&office), Some(&latin))
            .await,
        201,
    )
    .await;
    body(
        w.call(Method::POST, &subjects, Some(&office), Some(&latin))
            .await,
        409,
    )
    .await;
    body(
        w.call(
            Method::POST,
            &subjects,
            Some(&office),
            Some(&json!({"name": "Arte", "scale": "colours"})),
        )
        .await,
        422,
    )
    .await;
    body(
        w.call(Method::POST, &teachers, Some(&office), Some(&assign))
            .await,
        201,
    )
    .await;
}

#[tokio::test]
async fn sqlite_grades_are_given_read_corrected_and_annulled() {
    grades_are_given_read_corrected_and_annulled(World::sqlite(RateLimit::default()).await).await;
}

#[tokio::test]
async fn postgres_grades_are_given_read_corrected_and_annulled() {
    grades_are_given_read_corrected_and_annulled(World::postgres(RateLimit::default()).await).await;
}

/// The school calendar: planned by the secretary, read by every member, checked.
#[tokio::test]
async fn a_school_year_is_planned_and_read() {
    let w = World::sqlite(RateLimit::default()).await;
    let year = format!("/schools/{}/years/2026", w.a);
    let r = w
        .call(Method::GET, &year, Some(&w.token(Role::Student)), None)
        .await;
    assert_eq!(r.status(), 404, "not planned yet");
    let plan = json!({"terms": [
        {"name": "primo quadrimestre", "start": "2026-09-14", "end": "2027-01-31"},
        {"name": "secondo quadrimestre", "start": "2027-02-01", "end": "2027-06-09"},
    ], "holidays": ["2026-11-02", "2026-12-08"]});
    let r = w
        .call(
            Method::PUT,
            &year,
            Some(&w.token(Role::Secretary)),
            Some(&plan),
        )
        .await;
    assert_eq!(r.status(), 200);
    let read = body(
        w.call(Method::GET, &year, Some(&w.token(Role::Student)), None)
            .await,
        200,
    )
    .await;
    assert_eq!(read, plan);
    let overlapping = json!({"terms": [
        {"name": "a", "start": "2026-09-14", "end": "2027-01-31"},
        {"name": "b", "start": "2027-01-31", "end": "2027-06-09"},
    ]});
    let problem = body(
        w.call(
            Method::PUT,
            &year,
            Some(&w.token(Role::Secretary)),
            Some(&overlapping),
        )
        .await,
        422,
    )
    .await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("sovrappongono"),
        "{problem}"
    );
    let r = w
        .call(
            Method::GET,
            &format!("/schools/{}/years/1900", w.a),
            Some(&w.token(Role::Student)),
            None,
        )
        .await;
    assert_eq!(r.status(), 404);

    let stray = json!({"terms": plan["terms"], "holidays": ["2027-09-01"]});
    let r = w
        .call(
            Method::PUT,
            &year,
            Some(&w.token(Role::Secretary)),
            Some(&stray),
        )
        .await;
    assert_eq!(r.status(), 422);

    // This year's holidays: no absence on one, and a justification's school days skip it.
    // Thursday 4 December 2025: five school days are 5, 9, 10, 11 and 12 December, since
    // Monday 8 December (Immacolata) has no lessons.
    let mut this_year = crate::world::year_plan();
    this_year["holidays"] = json!(["2025-12-08"]);
    let secretary = w.token(Role::Secretary);
    let year_2025 = format!("/schools/{}/years/2025", w.a);
    let put = w.call(Method::PUT, &year_2025, Some(&secretary), Some(&this_year));
    assert_eq!(put.await.status(), 200);
    let attendance = format!("/schools/{}/students/{}/years/2025/attendance", w.a, w.x);
    let teacher = w.token(Role::Teacher);
    let holiday = json!({"date": "2025-12-08", "kind": "absence"});
    let problem = body(
        w.call(Method::POST, &attendance, Some(&teacher), Some(&holiday))
            .await,
        422,
    )
    .await;
    assert!(
        problem["detail"].as_str().unwrap().contains("vacanza"),
        "{problem}"
    );
    let thursday = json!({"date": "2025-12-04", "kind": "absence"});
    body(
        w.call(Method::POST, &attendance, Some(&teacher), Some(&thursday))
            .await,
        201,
    )
    .await;
    let view = body(
        w.call(
            Method::GET,
            &attendance,
            Some(&w.token(Role::Guardian)),
            None,
        )
        .await,
        200,
    )
    .await;
    assert_eq!(view["entries"][0]["justification"]["due"], "2025-12-12");
}

async fn attendance_is_recorded_with_the_hours_missed(w: World) {
    let teacher = w.token(Role::Teacher);
    let attendance = format!("/schools/{}/students/{}/years/2025/attendance", w.a, w.x);
    let head = || async { w.store.school_head(w.a).await.unwrap().unwrap().last_seq };
    let record = |body: Value| {
        let (w, teacher, attendance) = (&w, &teacher, &attendance);
        async move {
            w.call(Method::POST, attendance, Some(teacher), Some(&body))
                .await
        }
    };
    // Absent on Monday (five hours); in at 9:40 on Tuesday (two); out at 12:10 on Wednesday
    // (the fifth hour, fifty minutes of sixty).
    let monday = body(
        record(json!({"date": "2025-10-06", "kind": "absence"})).await,
        201,
    )
    .await;
    body(
        record(json!({"date": "2025-10-07", "kind": "late_entry", "at": "09:40"})).await,
        201,
    )
    .await;
    body(
        record(json!({"date": "2025-10-08", "kind": "early_exit", "at": "12:10"})).await,
        201,
    )
    .await;

    let before = head().await;
    let view = body(
        w.call(
            Method::GET,
            &attendance,
            Some(&w.token(Role::Guardian)),
            None,
        )
        .await,
        200,
    )
    .await;
    assert_eq!(head().await, before, "the family's reads are not recorded");
    assert_eq!(view["year"], "2025/26");
    let hours: Vec<Value> = view["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["hours"].clone())
        .collect();
    assert_eq!(hours, [json!([1, 2, 3, 4, 5]), json!([1, 2]), json!([5])]);
    assert_eq!(view["entries"][1]["kind"], "late_entry");
    assert_eq!(view["entries"][1]["at"], "09:40");
    // 25 hours a week: 825 a year, at most 206 of absence.
    assert_eq!(
        (
            &view["missed_hours"],
            &view["annual_hours"],
            &view["max_absence_hours"],
            &view["over_limit"],
            &view["warning_percent"]
        ),
        (
            &json!(8),
            &json!(825),
            &json!(206),
            &json!(false),
            &Value::Null
        )
    );

    // Refused, and nothing written: an absence on a day with a late entry, an absence with a
    // time, a late entry without one, a day without lessons, a day of another year.
    let before = head().await;
    for (bad, status, says) in [
        (
            json!({"date": "2025-10-07", "kind": "absence"}),
            409,
            "già registrata",
        ),
        (
            json!({"date": "2025-10-09", "kind": "absence", "at": "08:00"}),
            422,
            "at",
        ),
        (
            json!({"date": "2025-10-09", "kind": "late_entry"}),
            422,
            "at",
        ),
        (
            json!({"date": "2025-10-11", "kind": "absence"}),
            422,
            "nessuna ora",
        ),
        (
            json!({"date": "2026-10-05", "kind": "absence"}),
            422,
            "2025/26",
        ),
        (json!({"date": "2025-10-09", "kind": "nap"}), 422, "kind"),
    ] {
        let problem = body(record(bad.clone()).await, status).await;
        assert!(
            problem["detail"].as_str().unwrap().contains(says),
            "{bad}: {problem}"
        );
    }
    assert_eq!(head().await, before);

    // Cancelled by mistake: its hours no longer count; the teacher's read is recorded.
    let id = monday["id"].as_str().unwrap();
    body(
        w.call(
            Method::POST,
            &format!("{attendance}/{id}/cancellation"),
            Some(&teacher),
            Some(&json!({"reason": "era in gita"})),
        )
        .await,
        201,
    )
    .await;
    let before = head().await;
    let view = body(
        w.call(Method::GET, &attendance, Some(&teacher), None).await,
        200,
    )
    .await;
    assert_eq!(head().await, before + 1, "the teacher's read is recorded");
    assert_eq!(view["missed_hours"], 3);
    assert_eq!(view["entries"][0]["cancelled"], "era in gita");

    // Justifications (rule 5): the guardian justifies Tuesday's late entry; the minor student
    // cannot; the teacher accepts; the guardian can no longer change it.
    let tuesday = view["entries"][1]["id"].as_str().unwrap().to_owned();
    let justification = format!("{attendance}/{tuesday}/justification");
    let reason = json!({"category": "health", "text": "febbre"});
    let r = w
        .call(
            Method::POST,
            &justification,
            Some(&w.token(Role::Student)),
            Some(&reason),
        )
        .await;
    let problem = body(r, 403).await;
    assert!(
        problem["detail"].as_str().unwrap().contains("minorenne"),
        "{problem}"
    );
    let guardian = w.token(Role::Guardian);
    body(
        w.call(Method::POST, &justification, Some(&guardian), Some(&reason))
            .await,
        201,
    )
    .await;
    let view = body(
        w.call(Method::GET, &attendance, Some(&guardian), None)
            .await,
        200,
    )
    .await;
    let j = &view["entries"][1]["justification"];
    assert_eq!(
        (&j["state"], &j["category"], &j["text"], &j["justifier"]),
        (
            &json!("submitted"),
            &json!("health"),
            &json!("febbre"),
            &json!("guardian")
        )
    );
    // Due on the fifth school day after Tuesday 7 October: Tuesday 14 October; not overdue,
    // since it is submitted. Wednesday's early exit, never justified, is overdue.
    assert_eq!(j["due"], "2025-10-14");
    assert_eq!(j["overdue"], false);
    assert_eq!(view["entries"][2]["justification"]["state"], "missing");
    assert_eq!(view["entries"][2]["justification"]["overdue"], true);
    // The school gives two school days instead (rules.md section 5, a school setting): due on
    // Thursday 9 October. A term out of range is refused and changes nothing.
    let rules = format!("/schools/{}/settings/justifications", w.a);
    let secretary = w.token(Role::Secretary);
    let before = w.store.school_head(w.a).await.unwrap().unwrap().last_seq;
    let bad = json!({"adults_justify_themselves": true, "due_within_school_days": 0});
    body(
        w.call(Method::PUT, &rules, Some(&secretary), Some(&bad))
            .await,
        422,
    )
    .await;
    assert_eq!(
        w.store.school_head(w.a).await.unwrap().unwrap().last_seq,
        before
    );
    let two = json!({"adults_justify_themselves": false, "due_within_school_days": 2});
    body(
        w.call(Method::PUT, &rules, Some(&secretary), Some(&two))
            .await,
        200,
    )
    .await;
    assert_eq!(
        body(
            w.call(Method::GET, &rules, Some(&guardian), None).await,
            200
        )
        .await,
        two
    );
    let view = body(
        w.call(Method::GET, &attendance, Some(&guardian), None)
            .await,
        200,
    )
    .await;
    assert_eq!(view["entries"][1]["justification"]["due"], "2025-10-09");
    // The class's overdue justifications, for its coordinator and teachers: Wednesday's early
    // exit only (Tuesday's absence is justified).
    let overdue = body(
        w.call(
            Method::GET,
            &format!("/schools/{}/classes/{}/overdue-justifications", w.a, w.c1),
            Some(&teacher),
            None,
        )
        .await,
        200,
    )
    .await;
    let wednesday = &view["entries"][2];
    assert_eq!(
        overdue,
        json!([{"student": w.x, "entry": wednesday["id"], "date": wednesday["date"],
            "kind": "early_exit", "due": wednesday["justification"]["due"]}])
    );
    body(
        w.call(
            Method::POST,
            &format!("{justification}/decision"),
            Some(&teacher),
            Some(&json!({"accept": true})),
        )
        .await,
        201,
    )
    .await;
    let r = w
        .call(Method::POST, &justification, Some(&guardian), Some(&reason))
        .await;
    assert_eq!(r.status(), 409, "accepted: no more changes");

    // The reason is stored sealed: the stored bytes hold no trace of it.
    let stored = w
        .store
        .read_school(w.a, 1, 10_000, registro_store::Sealed::Keep)
        .await
        .unwrap();
    let submitted = stored
        .iter()
        .find(|e| e.event_type.as_str() == "JustificationSubmitted")
        .unwrap();
    assert!(
        submitted.stored_data.contains("$sealed"),
        "{}",
        submitted.stored_data
    );
    assert!(!submitted.stored_data.contains("febbre"));
    assert!(!submitted.stored_data.contains("health"));
    // Erased when its retention ends (the key destroyed): the justification stands, its
    // reason reads as erased.
    // (One key per student and school year: erasing 2025/26 leaves the other years alone.)
    let year = registro_domain::calendar::SchoolYear::starting(2025);
    let subject = registro_domain::record::sealing_subject(w.x, year);
    assert!(w.store.destroy_subject_key(w.a, subject).await.unwrap());
    let view = body(
        w.call(Method::GET, &attendance, Some(&guardian), None)
            .await,
        200,
    )
    .await;
    let j = &view["entries"][1]["justification"];
    assert_eq!(
        (&j["state"], &j["erased"], &j["text"]),
        (&json!("accepted"), &json!(true), &Value::Null)
    );

    // Exempt from science (rule 1, personalised hours): 20 hours a week, 660 a year; a whole
    // day now misses the four other hours.
    body(
        w.call(
            Method::POST,
            &format!("/schools/{}/students/{}/exemptions", w.a, w.x),
            Some(&w.token(Role::Secretary)),
            Some(&json!({"subject": "Scienze"})),
        )
        .await,
        201,
    )
    .await;
    let thursday = body(
        record(json!({"date": "2025-10-09", "kind": "absence"})).await,
        201,
    )
    .await;
    let view = body(
        w.call(Method::GET, &attendance, Some(&guardian), None)
            .await,
        200,
    )
    .await;
    assert_eq!(
        (&view["annual_hours"], &view["max_absence_hours"]),
        (&json!(660), &json!(165))
    );
    let last = view["entries"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["id"], thursday["id"]);
    assert_eq!(last["hours"], json!([1, 2, 3, 4]));
}

#[tokio::test]
async fn sqlite_attendance_is_recorded_with_the_hours_missed() {
    attendance_is_recorded_with_the_hours_missed(World::sqlite(RateLimit::default()).await).await;
}

#[tokio::test]
async fn postgres_attendance_is_recorded_with_the_hours_missed() {
    attendance_is_recorded_with_the_hours_missed(World::postgres(RateLimit::default()).await).await;
}

async fn the_class_register_is_signed_and_planned(w: World) {
    let teacher = w.token(Role::Teacher);
    let s = format!("/schools/{}/classes/{}", w.a, w.c1);
    let sign = |hour: u8, date: &str| json!({"date": date, "hour": hour, "topic": "Frazioni"});
    body(
        w.call(
            Method::POST,
            &format!("{s}/lessons"),
            Some(&teacher),
            Some(&sign(1, "2025-10-06")),
        )
        .await,
        201,
    )
    .await;
    for (bad, status) in [
        (sign(1, "2025-10-06"), 409), // signed already
        (sign(9, "2025-10-06"), 422), // no such hour
        (sign(1, "2025-10-11"), 422), // a Saturday: no lessons
        (sign(1, "2099-10-05"), 422), // not yet happened
    ] {
        let r = w
            .call(
                Method::POST,
                &format!("{s}/lessons"),
                Some(&teacher),
                Some(&bad),
            )
            .await;
        assert_eq!(r.status().as_u16(), status, "{bad}");
    }

    // A teacher of another class signs only the hour the office records them for.
    let outsider_code = w.code();
    let outsider = w
        .register_with_code(w.a, Role::Teacher, outsider_code.clone())
        .await;
    let outsider_token = w
        .issuer
        .issue_with(None, &outsider_code, Duration::from_secs(60))
        .unwrap();
    let r = w
        .call(
            Method::POST,
            &format!("{s}/lessons"),
            Some(&outsider_token),
            Some(&sign(2, "2025-10-06")),
        )
        .await;
    assert_eq!(r.status(), 403);
    body(
        w.call(
            Method::POST,
            &format!("{s}/substitutions"),
            Some(&w.token(Role::Secretary)),
            Some(&json!({"date": "2025-10-06", "hour": 2, "teacher": outsider})),
        )
        .await,
        201,
    )
    .await;
    body(
        w.call(
            Method::POST,
            &format!("{s}/lessons"),
            Some(&outsider_token),
            Some(&sign(2, "2025-10-06")),
        )
        .await,
        201,
    )
    .await;

    // Homework and two tests on one day: the second is scheduled, with a warning.
    body(
        w.call(
            Method::POST,
            &format!("{s}/homework"),
            Some(&teacher),
            Some(&json!({"subject": "Matematica", "text": "Esercizi 1-10", "due": "2099-10-06"})),
        )
        .await,
        201,
    )
    .await;
    let test = json!({"subject": "Matematica", "date": "2099-10-06", "description": "Frazioni"});
    let first = body(
        w.call(
            Method::POST,
            &format!("{s}/tests"),
            Some(&teacher),
            Some(&test),
        )
        .await,
        201,
    )
    .await;
    assert!(first.get("warnings").is_none(), "{first}");
    let second = body(
        w.call(
            Method::POST,
            &format!("{s}/tests"),
            Some(&teacher),
            Some(&test),
        )
        .await,
        201,
    )
    .await;
    assert_eq!(
        second["warnings"],
        json!(["la classe ha già 1 verifica il 2099-10-06"])
    );
    let r = w
        .call(
            Method::POST,
            &format!("{s}/homework"),
            Some(&outsider_token),
            Some(&json!({"subject": "Matematica", "text": "x", "due": "2099-10-06"})),
        )
        .await;
    assert_eq!(r.status(), 404, "not a teacher of the class");

    // The day as the register shows it.
    let day = body(
        w.call(
            Method::GET,
            &format!("{s}/days/2025-10-06"),
            Some(&teacher),
            None,
        )
        .await,
        200,
    )
    .await;
    let signed: Vec<(Value, Value)> = day["lessons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| (l["hour"].clone(), l["substitute"].clone()))
        .collect();
    assert_eq!(signed, [(json!(1), json!(false)), (json!(2), json!(true))]);
    assert_eq!(day["lessons"][0]["topic"], "Frazioni");
    let later = body(
        w.call(
            Method::GET,
            &format!("{s}/days/2099-10-06"),
            Some(&teacher),
            None,
        )
        .await,
        200,
    )
    .await;
    assert_eq!(later["homework"].as_array().unwrap().len(), 1);
    assert_eq!(later["tests"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn sqlite_the_class_register_is_signed_and_planned() {
    the_class_register_is_signed_and_planned(World::sqlite(RateLimit::default()).await).await;
}

#[tokio::test]
async fn postgres_the_class_register_is_signed_and_planned() {
    the_class_register_is_signed_and_planned(World::postgres(RateLimit::default()).await).await;
}

async fn notes_and_sanctions_are_written_read_and_annulled(w: World) {
    let notes = format!("/schools/{}/students/{}/years/2025/notes", w.a, w.x);
    let sanctions = format!("/schools/{}/students/{}/years/2025/sanctions", w.a, w.x);
    let (teacher, principal) = (w.token(Role::Teacher), w.token(Role::Principal));
    let note = body(
        w.call(
            Method::POST,
            &notes,
            Some(&teacher),
            Some(
                &json!({"kind": "disciplinary", "text": "Disturba la lezione",
                "date": "2025-10-06"}),
            ),
        )
        .await,
        201,
    )
    .await;
    body(
        w.call(
            Method::POST,
            &sanctions,
            Some(&principal),
            Some(&json!({"text": "Ammonizione scritta", "date": "2025-10-07"})),
        )
        .await,
        201,
    )
    .await;
    // A teacher does not decide sanctions; the principal writes no class notes.
    let r = w
        .call(
            Method::POST,
            &sanctions,
            Some(&teacher),
            Some(&json!({"text": "x", "date": "2025-10-07"})),
        )
        .await;
    let problem = body(r, 403).await;
    assert!(
        problem["detail"].as_str().unwrap().contains("dirigente"),
        "{problem}"
    );
    let r = w
        .call(
            Method::POST,
            &notes,
            Some(&principal),
            Some(&json!({"kind": "annotation", "text": "x", "date": "2025-10-07"})),
        )
        .await;
    assert_eq!(r.status(), 403);
    let id = note["id"].as_str().unwrap();
    body(
        w.call(
            Method::POST,
            &format!("{notes}/{id}/annulment"),
            Some(&teacher),
            Some(&json!({"reason": "scritta per errore"})),
        )
        .await,
        201,
    )
    .await;
    let list = body(
        w.call(Method::GET, &notes, Some(&w.token(Role::Guardian)), None)
            .await,
        200,
    )
    .await;
    let seen: Vec<(Value, Value)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["kind"].clone(), n["annulled"].clone()))
        .collect();
    assert_eq!(
        seen,
        [
            (json!("disciplinary"), json!("scritta per errore")),
            (json!("sanction"), Value::Null)
        ]
    );

    // A note to the whole class: written by a teacher of the class (not the principal, not a
    // sanction, nothing written when refused), seen in the class's day and in each student's
    // notes, annulled by the principal.
    let class_notes = format!("/schools/{}/classes/{}/notes", w.a, w.c1);
    let class_note =
        json!({"kind": "disciplinary", "text": "La classe disturba", "date": "2025-10-08"});
    let before = w.store.school_head(w.a).await.unwrap().unwrap().last_seq;
    for (token, note, status) in [
        (&principal, class_note.clone(), 403),
        (
            &teacher,
            json!({"kind": "sanction", "text": "x", "date": "2025-10-08"}),
            422,
        ),
        (
            &teacher,
            json!({"kind": "disciplinary", "text": " ", "date": "2025-10-08"}),
            422,
        ),
        (
            &teacher,
            json!({"kind": "disciplinary", "text": "x", "date": "2099-10-08"}),
            422,
        ),
        (
            &teacher,
            json!({"kind": "disciplinary", "text": "x", "day": "2025-10-08"}),
            422,
        ),
    ] {
        body(
            w.call(Method::POST, &class_notes, Some(token), Some(&note))
                .await,
            status,
        )
        .await;
    }
    assert_eq!(
        w.store.school_head(w.a).await.unwrap().unwrap().last_seq,
        before
    );
    let written = body(
        w.call(
            Method::POST,
            &class_notes,
            Some(&teacher),
            Some(&class_note),
        )
        .await,
        201,
    )
    .await;
    let day = format!("/schools/{}/classes/{}/days/2025-10-08", w.a, w.c1);
    let day = body(w.call(Method::GET, &day, Some(&teacher), None).await, 200).await;
    assert_eq!(day["notes"][0]["text"], "La classe disturba");
    let list = body(
        w.call(Method::GET, &notes, Some(&w.token(Role::Guardian)), None)
            .await,
        200,
    )
    .await;
    let last = list.as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (&last["whole_class"], &last["id"]),
        (&json!(true), &written["id"])
    );
    let annul = format!(
        "{class_notes}/{}/annulment",
        written["id"].as_str().unwrap()
    );
    let reason = json!({"reason": "nota sbagliata"});
    body(
        w.call(Method::POST, &annul, Some(&principal), Some(&reason))
            .await,
        201,
    )
    .await;
    body(
        w.call(Method::POST, &annul, Some(&teacher), Some(&reason))
            .await,
        409,
    )
    .await;
    // A sanction for an id that names no student: not found, as for a read.
    let nobody = format!(
        "/schools/{}/students/{}/years/2025/sanctions",
        w.a,
        uuid::Uuid::now_v7()
    );
    let sanction = json!({"text": "Ammonizione", "date": "2025-10-07"});
    body(
        w.call(Method::POST, &nobody, Some(&principal), Some(&sanction))
            .await,
        404,
    )
    .await;
    let unknown = format!("{class_notes}/{}/annulment", uuid::Uuid::now_v7());
    body(
        w.call(Method::POST, &unknown, Some(&teacher), Some(&reason))
            .await,
        404,
    )
    .await;
    let list = body(
        w.call(Method::GET, &notes, Some(&w.token(Role::Guardian)), None)
            .await,
        200,
    )
    .await;
    assert_eq!(
        list.as_array().unwrap().last().unwrap()["annulled"],
        "nota sbagliata"
    );
}

#[tokio::test]
async fn sqlite_notes_and_sanctions_are_written_read_and_annulled() {
    notes_and_sanctions_are_written_read_and_annulled(World::sqlite(RateLimit::default()).await)
        .await;
}

#[tokio::test]
async fn postgres_notes_and_sanctions_are_written_read_and_annulled() {
    notes_and_sanctions_are_written_read_and_annulled(World::postgres(RateLimit::default()).await)
        .await;
}

/// Bulk enrolment from CSV: a dry run lists every bad line and writes nothing; a clean file is
/// applied whole, once, even when sent twice.
#[tokio::test]
async fn a_csv_file_enrols_whole_or_lists_every_bad_line() {
    let w = World::sqlite(RateLimit::default()).await;
    let office = w.token(Role::Secretary);
    let url = format!("/schools/{}/enrolments", w.a);
    let head = || async { w.store.school_head(w.a).await.unwrap().unwrap().last_seq };
    let before = head().await;
    let (a, b) = (w.code(), w.code());
    let bad = format!(
        "fiscal_code;family_name;given_name;birth_date;class\n\
         {a};Rossi;Anna;2012-05-10;1A\n\
         XXXYYY12E50Z999A;Verdi;Luca;;1A\n\
         {b};Bianchi;Marta;10/05/2012;1A\n\
         {b};Bianchi;Marta;;9Z\n\
         {a};Rossi;Anna;;1B\n\
         solo;due\n"
    );
    let problem = body(
        w.call(
            Method::POST,
            &format!("{url}?dry_run=true"),
            Some(&office),
            Some(&Value::String(bad.clone())),
        )
        .await,
        422,
    )
    .await;
    let lines: Vec<u64> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["line"].as_u64().unwrap())
        .collect();
    // While lines cannot be read (3: the check character, 4: the date, 7: two fields) only
    // they are listed; the readable ones are checked against the school once all can be read.
    assert_eq!(lines, [3, 4, 7], "{problem}");
    assert!(
        problem["errors"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("fiscal_code")
    );
    let readable = format!(
        "fiscal_code;family_name;given_name;birth_date;class\n\
         {a};Rossi;Anna;2012-05-10;1A\n\
         {b};Bianchi;Marta;;9Z\n\
         {a};Rossi;Anna;;1B\n"
    );
    let problem = body(
        w.call(
            Method::POST,
            &url,
            Some(&office),
            Some(&Value::String(readable)),
        )
        .await,
        422,
    )
    .await;
    let lines: Vec<u64> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["line"].as_u64().unwrap())
        .collect();
    assert_eq!(lines, [3, 4], "{problem}");
    assert_eq!(head().await, before, "a refused file wrote nothing");

    // A clean file: checked, then applied once.
    let clean = format!(
        "fiscal_code,family_name,given_name,birth_date,class\n\
         {a},Rossi,Anna,2012-05-10,1A\n\
         {b},Bianchi,Marta,,1b\n"
    );
    let checked = body(
        w.call(
            Method::POST,
            &format!("{url}?dry_run=true"),
            Some(&office),
            Some(&Value::String(clean.clone())),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(
        (&checked["registered"], &checked["enrolled"]),
        (&json!(2), &json!(2))
    );
    assert_eq!(head().await, before, "a dry run writes nothing");
    let send = || {
        w.client
            .post(format!("{}{url}", w.base))
            .bearer_auth(&office)
            .header("content-type", "text/csv")
            .header("idempotency-key", "iscrizioni-2025")
            .body(clean.clone())
            .send()
    };
    let applied = body(send().await.unwrap(), 201).await;
    assert_eq!(head().await, before + 4);
    let again = send().await.unwrap();
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(body(again, 201).await, applied);
    assert_eq!(head().await, before + 4);
    let roster = body(
        w.call(
            Method::GET,
            &format!("/schools/{}/classes/{}", w.a, w.c2),
            Some(&office),
            None,
        )
        .await,
        200,
    )
    .await;
    assert!(
        roster["students"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["family_name"] == "Bianchi"),
        "{roster}"
    );
    // An empty file, and one that is not UTF-8: refused, saying why.
    let problem = body(
        w.call(
            Method::POST,
            &url,
            Some(&office),
            Some(&Value::String(
                "fiscal_code;family_name;given_name;birth_date;class\n".into(),
            )),
        )
        .await,
        422,
    )
    .await;
    assert!(
        problem["errors"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("non ha righe")
    );
    let latin1 = w
        .client
        .post(format!("{}{url}", w.base))
        .bearer_auth(&office)
        .header("content-type", "text/csv")
        .body(b"fiscal_code;family_name;given_name;birth_date;class\nX;Nicol\xf2;A;;1A\n".to_vec())
        .send()
        .await
        .unwrap();
    let problem = body(latin1, 422).await;
    assert!(
        problem["detail"].as_str().unwrap().contains("UTF-8"),
        "{problem}"
    );
    // Not CSV: 415.
    let r = w
        .call(
            Method::POST,
            &url,
            Some(&office),
            Some(&json!({"csv": clean})),
        )
        .await;
    assert_eq!(r.status(), 415);
}

/// Meetings: the teacher offers, a guardian books, another family sees the free places but not
/// who booked, the teacher sees every booking.
#[tokio::test]
async fn a_meeting_is_offered_booked_and_seen_by_each_as_they_may() {
    let w = World::sqlite(RateLimit::default()).await;
    let teacher = w.person(Role::Teacher);
    let meetings = format!("/schools/{}/teachers/{teacher}/meetings", w.a);
    let slot = body(
        w.call(
            Method::POST,
            &meetings,
            Some(&w.token(Role::Teacher)),
            Some(
                &json!({"date": "2099-10-15", "start": "16:00", "end": "16:30",
                "capacity": 2, "place": "Aula 12"}),
            ),
        )
        .await,
        201,
    )
    .await;
    let slot = slot["id"].as_str().unwrap();
    body(
        w.call(
            Method::POST,
            &format!("{meetings}/{slot}/bookings"),
            Some(&w.token(Role::Guardian)),
            Some(&json!({"student": w.x})),
        )
        .await,
        201,
    )
    .await;
    // A second parent of the same child, with a link of their own, sees one place taken and
    // not by whom.
    let code = w.code();
    let other_parent = w
        .register_with_code(w.a, Role::Guardian, code.clone())
        .await;
    w.link(w.a, other_parent, w.x).await;
    let other = w
        .issuer
        .issue_with(None, &code, Duration::from_secs(60))
        .unwrap();
    let seen = body(
        w.call(Method::GET, &meetings, Some(&other), None).await,
        200,
    )
    .await;
    assert_eq!(seen[0]["free"], 1);
    assert_eq!(seen[0]["booked_students"], json!([]));
    let seen = body(
        w.call(Method::GET, &meetings, Some(&w.token(Role::Teacher)), None)
            .await,
        200,
    )
    .await;
    assert_eq!(seen[0]["booked_students"], json!([w.x]));
    // The other parent cannot cancel the first one's booking.
    let r = w
        .call(
            Method::DELETE,
            &format!("{meetings}/{slot}/bookings/{}", w.x),
            Some(&other),
            None,
        )
        .await;
    assert_eq!(r.status(), 403);
}

/// The grades of a whole class test in one request: every mark checked before any is written;
/// with a key, retried safely.
#[tokio::test]
async fn a_class_test_is_graded_in_one_request() {
    let w = World::sqlite(RateLimit::default()).await;
    let teacher = w.token(Role::Teacher);
    let url = format!("/schools/{}/classes/{}/years/2025/grades", w.a, w.c1);
    let head = || async { w.store.school_head(w.a).await.unwrap().unwrap().last_seq };
    let classmate = w.register(w.a, Role::Student).await;
    w.enrol(w.a, classmate, w.c1).await;
    let before = head().await;
    let request = |marks: Value| {
        json!({"subject": "Matematica", "kind": "written", "date": "2025-10-06",
            "description": "Verifica sulle frazioni", "marks": marks})
    };
    let bad = request(json!([
        {"student": w.x, "mark": "7"},
        {"student": w.y, "mark": "6"},
        {"student": classmate, "mark": "undici"},
    ]));
    let problem = body(
        w.call(Method::POST, &url, Some(&teacher), Some(&bad)).await,
        422,
    )
    .await;
    let lines: Vec<u64> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["line"].as_u64().unwrap())
        .collect();
    assert_eq!(lines, [2, 3], "{problem}");
    assert_eq!(head().await, before, "nothing written");
    let good = request(json!([
        {"student": w.x, "mark": "7"},
        {"student": classmate, "mark": "5½"},
    ]));
    let send = || {
        w.client
            .post(format!("{}{url}", w.base))
            .bearer_auth(&teacher)
            .header("idempotency-key", "verifica-frazioni")
            .json(&good)
            .send()
    };
    let first = body(send().await.unwrap(), 201).await;
    assert_eq!(first["grades"].as_array().unwrap().len(), 2);
    assert_eq!(head().await, before + 2);
    let again = body(send().await.unwrap(), 201).await;
    assert_eq!(again["grades"], first["grades"]);
    assert_eq!(head().await, before + 2, "a retry gives no grade twice");
    let view = body(
        w.call(
            Method::GET,
            &format!("/schools/{}/students/{classmate}/years/2025/grades", w.a),
            Some(&teacher),
            None,
        )
        .await,
        200,
    )
    .await;
    assert_eq!(view["grades"][0]["mark"], "5½");
}
