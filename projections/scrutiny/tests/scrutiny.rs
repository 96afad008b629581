//! The scrutiny report built by its projector from real events, on SQLite and on PostgreSQL
//! (as the ordinary role that row-level security holds): a class's term with its session,
//! proposals, deliberations, exemptions, outcome, closing, publication and reopening; grade
//! corrections and annulments and cancelled absences change the figures; another school's rows
//! are never read.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use registro_domain::SchoolId;
use registro_domain::attendance::AnnualLimit;
use registro_domain::record::Mark;
use registro_domain::scrutiny::{Outcome, SchoolLevel};
use registro_projection_scrutiny::{NAME, Roster, ScrutinyReport, TermReport, report, term_rows};
use registro_projector::{Projection as _, Projector};
use registro_store::EventStore;
use registro_testkit::pg::TestDb;
use registro_testkit::{append_json, sqlite_store};
use serde_json::{Value, json};
use time::macros::date;
use uuid::Uuid;

fn grade(id: Uuid, class: Uuid, subject: &str, date: &str, value: u16) -> (&'static str, Value) {
    (
        "GradeRecorded",
        json!({"grade": id, "class": class, "subject": subject, "kind": "written",
            "mark": {"scale": "numeric", "value": value}, "weight": 100, "counted": true,
            "description": "", "date": date}),
    )
}

fn absence(id: Uuid, class: Uuid, date: &str, hours: usize) -> (&'static str, Value) {
    (
        "AttendanceRecorded",
        json!({"entry": id, "class": class, "date": date, "missed": {"kind": "whole_day"},
            "hours": (1..=hours).collect::<Vec<_>>()}),
    )
}

fn numeric(hundredths: u16) -> Value {
    json!({"scale": "numeric", "value": hundredths})
}

fn mark(text: &str) -> Mark {
    Mark::Numeric(registro_domain::grade::GradeValue::parse(text).unwrap())
}

struct Class {
    school: SchoolId,
    class: Uuid,
    x: Uuid,
    y: Uuid,
    teacher: Uuid,
}

/// The report of term `term` of the class, once the projection holds everything the school
/// wrote (on PostgreSQL an event reaches subscribers once older transactions on the server
/// have ended: the wait is bounded).
async fn read(
    store: &dyn EventStore,
    projector: &Projector,
    c: &Class,
    term: u8,
    max: usize,
) -> Option<TermReport> {
    let head = store.school_head(c.school).await.unwrap().unwrap().last_seq;
    for _ in 0..200 {
        projector.catch_up().await.unwrap();
        if store
            .projection_reached(NAME, c.school, head)
            .await
            .unwrap()
        {
            let students = [c.x, c.y];
            let subjects: BTreeSet<String> = ["Italiano", "Matematica"].map(str::to_owned).into();
            let limits: BTreeMap<Uuid, AnnualLimit> = [
                (c.x, AnnualLimit::for_weekly_hours(32)),
                (c.y, AnnualLimit::for_weekly_hours(32)),
            ]
            .into();
            let rows = term_rows(store, c.school, c.class, 2025, term, &students)
                .await
                .unwrap()?;
            return Some(report(
                &rows,
                &Roster {
                    students: &students,
                    subjects: &subjects,
                    period: Some((date!(2025 - 09 - 15), date!(2026 - 01 - 31))),
                    limits: &limits,
                    max_subjects_to_recover: max,
                },
            ));
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the scrutiny report did not catch up");
}

async fn the_report_follows_the_events(store: Arc<dyn EventStore>) {
    let s = store.as_ref();
    let c = Class {
        school: SchoolId::new(),
        class: Uuid::now_v7(),
        x: Uuid::now_v7(),
        y: Uuid::now_v7(),
        teacher: Uuid::now_v7(),
    };
    let projector = Projector::new(Arc::clone(&store), Arc::new(ScrutinyReport));
    projector.prepare().await.unwrap();
    let (g1, g2, g3, g4) = (
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
    );
    let (a1, a2) = (Uuid::now_v7(), Uuid::now_v7());
    append_json(
        s,
        c.school,
        &format!("student-{}-2025", c.x),
        &[
            grade(g1, c.class, "Matematica", "2025-10-06", 700),
            grade(g2, c.class, "Matematica", "2025-11-06", 400),
            grade(g3, c.class, "Italiano", "2025-10-08", 500),
            // Second term: not in the first term's average.
            grade(g4, c.class, "Matematica", "2026-02-10", 1000),
            (
                "GradeCorrected",
                json!({"grade": g2, "mark": numeric(800), "reason": "errore"}),
            ),
            absence(a1, c.class, "2025-10-20", 6),
            absence(a2, c.class, "2025-10-21", 5),
            (
                "AttendanceCancelled",
                json!({"entry": a2, "reason": "registrata per errore"}),
            ),
        ],
    )
    .await;
    // Another school's class with the same ids is never read.
    let other = SchoolId::new();
    append_json(
        s,
        other,
        &format!("student-{}-2025", c.x),
        &[grade(
            Uuid::now_v7(),
            c.class,
            "Italiano",
            "2025-10-09",
            100,
        )],
    )
    .await;
    let stream = format!("scrutiny-{}-2025", c.class);
    assert_eq!(read(s, &projector, &c, 1, 3).await, None, "not opened yet");
    append_json(
        s,
        c.school,
        &stream,
        &[
            (
                "ScrutinyOpened",
                json!({"term": 1, "level": "upper_secondary", "final": false}),
            ),
            (
                "ProposalEntered",
                json!({"term": 1, "student": c.x, "subject": "Italiano", "mark": numeric(600),
                    "teacher": c.teacher}),
            ),
        ],
    )
    .await;
    let open = read(s, &projector, &c, 1, 3).await.unwrap();
    assert_eq!(
        (open.level, open.is_final, open.status.as_str()),
        (SchoolLevel::UpperSecondary, false, "open")
    );
    let x = &open.students[0];
    assert_eq!(x.student, c.x);
    let (italiano, matematica) = (&x.subjects[0], &x.subjects[1]);
    // Matematica: 7 and 8 (corrected from 4): 7.50, proposes 8; February's 10 is term 2's.
    assert_eq!(matematica.average.unwrap().to_string(), "7.50");
    assert_eq!(
        (matematica.proposal, matematica.proposed_by),
        (Some(mark("8")), None)
    );
    // Italiano: the teacher's 6 over the average's 5.
    assert_eq!(italiano.average.unwrap().to_string(), "5.00");
    assert_eq!(
        (italiano.proposal, italiano.proposed_by),
        (Some(mark("6")), Some(c.teacher))
    );
    // 6 hours missed; the cancelled day does not count.
    assert_eq!((x.absence_hours, x.exempted_hours), (6, 0));
    assert_eq!(x.limit.map(|l| l.max_absence_hours), Some(264));
    assert!(!x.deliberated);
    let y = &open.students[1];
    assert_eq!(
        (y.student, y.subjects[0].average, y.absence_hours),
        (c.y, None, 0)
    );

    append_json(
        s,
        c.school,
        &format!("student-{}-2025", c.x),
        &[(
            "GradeAnnulled",
            json!({"grade": g1, "reason": "prova non valida"}),
        )],
    )
    .await;
    append_json(
        s,
        c.school,
        &stream,
        &[
            (
                "CouncilConvened",
                json!({"term": 1, "date": "2026-02-05", "attendees": [c.teacher], "substitutes": {}}),
            ),
            (
                "GradesDeliberated",
                json!({"term": 1, "student": c.x, "grades": {"Italiano": numeric(600),
                    "Matematica": numeric(800)}, "conduct": 900, "vote": {"kind": "unanimous"}}),
            ),
            (
                "AbsencesExempted",
                json!({"term": 1, "student": c.x, "exemption": {"from": "2025-10-20",
                    "to": "2025-10-20", "reason": "health"}, "vote": {"kind": "unanimous"}}),
            ),
            ("ScrutinyClosed", json!({"term": 1})),
            ("ReportCardsPublished", json!({"term": 1})),
        ],
    )
    .await;
    let closed = read(s, &projector, &c, 1, 3).await.unwrap();
    assert_eq!((closed.status.as_str(), closed.published), ("closed", true));
    assert_eq!(closed.session_date.as_deref(), Some("2026-02-05"));
    assert_eq!(closed.attendees, [c.teacher]);
    let x = &closed.students[0];
    // The annulled 7 leaves the 8 alone.
    assert_eq!(x.subjects[1].average.unwrap().to_string(), "8.00");
    assert_eq!(x.subjects[1].final_grade, Some(mark("8")));
    assert_eq!(x.conduct.map(|c| c.hundredths()), Some(900));
    assert_eq!((x.absence_hours, x.exempted_hours), (0, 6));
    assert!(x.deliberated);
    assert_eq!(
        x.proposed_outcome, None,
        "the first term decides no outcome"
    );

    append_json(
        s,
        c.school,
        &stream,
        &[(
            "ScrutinyReopened",
            json!({"term": 1, "reason": "errore materiale"}),
        )],
    )
    .await;
    let reopened = read(s, &projector, &c, 1, 3).await.unwrap();
    assert_eq!(
        (
            reopened.status.as_str(),
            reopened.published,
            reopened.reopened.clone()
        ),
        ("open", false, vec!["errore materiale".to_owned()])
    );

    // The final scrutinio: registro's proposal beside the council's outcome.
    append_json(
        s,
        c.school,
        &stream,
        &[
            (
                "ScrutinyOpened",
                json!({"term": 2, "level": "upper_secondary", "final": true}),
            ),
            (
                "GradesDeliberated",
                json!({"term": 2, "student": c.y, "grades": {"Italiano": numeric(500),
                    "Matematica": numeric(400)}, "conduct": 600, "vote": {"kind": "unanimous"}}),
            ),
            (
                "OutcomeDeliberated",
                json!({"student": c.y, "outcome": {"kind": "judgement_suspended",
                    "subjects": ["Italiano", "Matematica"], "citizenship": true},
                    "proposed": {"kind": "judgement_suspended", "subjects": ["Italiano", "Matematica"],
                    "citizenship": true}, "vote": {"kind": "unanimous"}, "reasons": ""}),
            ),
            (
                "SuspensionResolved",
                json!({"student": c.y, "admitted": true, "vote": {"kind": "unanimous"}}),
            ),
        ],
    )
    .await;
    let last = read(s, &projector, &c, 2, 3).await.unwrap();
    assert!(last.is_final);
    let y = &last.students[1];
    let suspended = Outcome::JudgementSuspended {
        subjects: ["Italiano", "Matematica"].map(str::to_owned).into(),
        citizenship: true,
    };
    assert_eq!(y.proposed_outcome.as_ref(), Some(&suspended));
    assert_eq!(y.outcome.as_ref(), Some(&suspended));
    assert_eq!(y.subjects_to_recover(), ["Italiano", "Matematica"]);
    assert_eq!(y.resolved.as_deref(), Some("admitted"));
    // A school that allows one subject to recover: registro proposes not admitted.
    let strict = read(s, &projector, &c, 2, 1).await.unwrap();
    assert_eq!(
        strict.students[1].proposed_outcome,
        Some(Outcome::NotAdmitted)
    );
    // Withdrawn at the reopened final scrutinio: no outcome until it is decided again, while
    // registro's proposal stands.
    append_json(
        s,
        c.school,
        &stream,
        &[(
            "OutcomeWithdrawn",
            json!({"student": c.y, "reason": "comportamento trascritto male"}),
        )],
    )
    .await;
    let withdrawn = read(s, &projector, &c, 2, 3).await.unwrap();
    let y = &withdrawn.students[1];
    assert_eq!((&y.outcome, &y.resolved), (&None, &None));
    assert!(y.subjects_to_recover().is_empty());
    assert_eq!(y.proposed_outcome.as_ref(), Some(&suspended));
    // Term 1 still stands as it was.
    assert_eq!(read(s, &projector, &c, 1, 3).await.unwrap(), reopened);
    // Caught up: nothing more to apply.
    let at = projector.catch_up().await.unwrap();
    assert_eq!(projector.catch_up().await.unwrap(), at);
}

#[tokio::test]
async fn sqlite_the_report_follows_the_events() {
    let (_dir, store) = sqlite_store().await;
    the_report_follows_the_events(store).await;
}

#[tokio::test]
async fn postgres_the_report_follows_the_events() {
    let db = TestDb::new().await;
    // The ordinary test role may not create tables: the administrator prepares them and
    // grants them, as in production.
    let store = db.app_store_with_projection(&ScrutinyReport.schema()).await;
    assert_eq!(store.row_security().await.unwrap(), Some(true));
    the_report_follows_the_events(Arc::new(store)).await;
}
