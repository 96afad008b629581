//! The family view built by its projector from real events, on SQLite and on PostgreSQL (as
//! the ordinary role that row-level security holds): corrections, annulments, cancellations
//! and justifications change the rows they name; class items, notes to the class and
//! communications reach the students of their class; one school never sees another's rows;
//! lists page newest first.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::sync::Arc;

use registro_domain::SchoolId;
use registro_projection_family::{
    Addressees, Cursor, FamilyView, Page, agenda, attendance, bookings, communications, grades,
    notes, report_cards, stamp, upcoming_agenda, upcoming_bookings,
};
use registro_projector::{Projection as _, Projector};
use registro_store::EventStore;
use registro_testkit::pg::TestDb;
use registro_testkit::{append_json, sqlite_store};
use serde_json::{Value, json};
use uuid::Uuid;

fn grade(id: Uuid, class: Uuid, subject: &str, date: &str, value: u16) -> (&'static str, Value) {
    (
        "GradeRecorded",
        json!({"grade": id, "class": class, "subject": subject, "kind": "written",
            "mark": {"scale": "numeric", "value": value}, "weight": 100, "counted": true,
            "description": "", "date": date}),
    )
}

struct Ids {
    x: Uuid,
    y: Uuid,
    class: Uuid,
    other_class: Uuid,
    guardian: Uuid,
    teacher: Uuid,
    g1: Uuid,
    g2: Uuid,
    g3: Uuid,
    absence: Uuid,
    late: Uuid,
    note: Uuid,
    class_note: Uuid,
    homework: Uuid,
    test: Uuid,
    to_class: Uuid,
    to_staff: Uuid,
    to_other: Uuid,
    slot: Uuid,
    slot2: Uuid,
}

fn ids() -> Ids {
    let v = Uuid::now_v7;
    Ids {
        x: v(),
        y: v(),
        class: v(),
        other_class: v(),
        guardian: v(),
        teacher: v(),
        g1: v(),
        g2: v(),
        g3: v(),
        absence: v(),
        late: v(),
        note: v(),
        class_note: v(),
        homework: v(),
        test: v(),
        to_class: v(),
        to_staff: v(),
        to_other: v(),
        slot: v(),
        slot2: v(),
    }
}

async fn write_school(store: &dyn EventStore, a: SchoolId, i: &Ids) {
    let x_record = format!("student-{}-2025", i.x);
    append_json(
        store,
        a,
        &x_record,
        &[
            grade(i.g1, i.class, "Matematica", "2025-10-06", 700),
            grade(i.g2, i.class, "Matematica", "2025-10-10", 800),
            grade(i.g3, i.class, "Italiano", "2025-10-08", 400),
            (
                "GradeCorrected",
                json!({"grade": i.g2, "mark": {"scale": "numeric", "value": 600},
                    "reason": "errore di trascrizione"}),
            ),
            (
                "GradeAnnulled",
                json!({"grade": i.g3, "reason": "prova da ripetere"}),
            ),
            (
                "AttendanceRecorded",
                json!({"entry": i.absence, "class": i.class, "date": "2025-10-07",
                    "missed": {"kind": "whole_day"}, "hours": [1, 2, 3, 4, 5]}),
            ),
            (
                "JustificationSubmitted",
                json!({"entry": i.absence, "justifier": "guardian",
                    "reason": {"category": "health", "text": "febbre"}}),
            ),
            (
                "JustificationAccepted",
                json!({"entry": i.absence, "reason": ""}),
            ),
            (
                "AttendanceRecorded",
                json!({"entry": i.late, "class": i.class, "date": "2025-10-09",
                    "missed": {"kind": "late_entry", "at": "09:40"}, "hours": [1]}),
            ),
            (
                "AttendanceCancelled",
                json!({"entry": i.late, "reason": "registrata per errore"}),
            ),
            (
                "NoteRecorded",
                json!({"note": i.note, "kind": "disciplinary", "class": i.class,
                    "text": "Disturba la lezione", "date": "2025-10-08"}),
            ),
        ],
    )
    .await;
    append_json(
        store,
        a,
        &format!("student-{}-2025", i.y),
        &[grade(
            Uuid::now_v7(),
            i.class,
            "Matematica",
            "2025-10-06",
            900,
        )],
    )
    .await;
    append_json(
        store,
        a,
        &format!("class-{}", i.class),
        &[
            (
                "HomeworkAssigned",
                json!({"homework": i.homework, "subject": "Matematica",
                    "text": "Esercizi a pagina 42", "assigned_on": "2025-10-06",
                    "due": "2025-10-08"}),
            ),
            (
                "TestScheduled",
                json!({"test": i.test, "subject": "Matematica", "date": "2025-10-20",
                    "description": "Equazioni"}),
            ),
            (
                "ClassNoteRecorded",
                json!({"note": i.class_note, "kind": "annotation", "teacher": i.teacher,
                    "text": "La classe dimentica i libri", "date": "2025-10-09"}),
            ),
            (
                "LessonSigned",
                json!({"date": "2025-10-09", "hour": 1, "teacher": i.teacher,
                    "subject": "Matematica", "topic": "Equazioni", "activity": "",
                    "substitute": false}),
            ),
        ],
    )
    .await;
    let published = |id: Uuid, groups: Value, classes: Value, date: &str| {
        (
            "CommunicationPublished",
            json!({"communication": id, "kind": "notice", "title": "Uscita",
                "body": "Si comunica che...", "audience": {"groups": groups, "classes": classes},
                "attachments": [], "consent_deadline": "2025-10-20", "date": date,
                "author": i.teacher}),
        )
    };
    append_json(
        store,
        a,
        "communications",
        &[
            published(
                i.to_class,
                json!(["families"]),
                json!([i.class]),
                "2025-10-06",
            ),
            published(i.to_staff, json!(["staff"]), json!([]), "2025-10-07"),
            published(
                i.to_other,
                json!(["families"]),
                json!([i.other_class]),
                "2025-10-08",
            ),
        ],
    )
    .await;
    append_json(
        store,
        a,
        &format!("communication-{}", i.to_class),
        &[
            (
                "CommunicationAcknowledged",
                json!({"communication": i.to_class, "reader": i.guardian}),
            ),
            (
                "ConsentAnswered",
                json!({"communication": i.to_class, "student": i.x, "by": i.guardian,
                    "consent": "given"}),
            ),
            (
                "ConsentAnswered",
                json!({"communication": i.to_class, "student": i.x, "by": i.guardian,
                    "consent": "refused"}),
            ),
        ],
    )
    .await;
    let slot = |id: Uuid, start: &str| {
        (
            "SlotOffered",
            json!({"slot": id, "date": "2025-10-15", "start": start, "end": "16:30",
                "capacity": 3, "place": "Aula 12"}),
        )
    };
    append_json(
        store,
        a,
        &format!("meetings-{}", i.teacher),
        &[
            slot(i.slot, "16:00"),
            slot(i.slot2, "16:10"),
            (
                "MeetingBooked",
                json!({"slot": i.slot, "guardian": i.guardian, "student": i.x}),
            ),
            (
                "MeetingBooked",
                json!({"slot": i.slot2, "guardian": i.guardian, "student": i.x}),
            ),
            (
                "BookingCancelled",
                json!({"slot": i.slot2, "guardian": i.guardian, "student": i.x}),
            ),
            (
                "SlotCancelled",
                json!({"slot": i.slot, "reason": "consiglio straordinario"}),
            ),
        ],
    )
    .await;
}

/// Catches up until the view holds the student's grades of both schools. On PostgreSQL an
/// event reaches subscribers once every older transaction on the server has ended (ADR 0003),
/// which other tests may delay a little: the wait is bounded.
async fn catch_up(
    projector: &Projector,
    store: &dyn EventStore,
    a: SchoolId,
    b: SchoolId,
    x: Uuid,
) {
    for _ in 0..200 {
        projector.catch_up().await.unwrap();
        let done = grades(a, x, 2025, None).run(store, a).await.unwrap().len() == 3
            && grades(b, x, 2025, None).run(store, b).await.unwrap().len() == 1
            && !bookings(a, x, 2025).run(store, a).await.unwrap().is_empty()
            && bookings(a, x, 2025).run(store, a).await.unwrap()[0]
                .cancelled
                .is_some();
        if done {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the family view did not catch up");
}

async fn the_view_follows_the_events(store: Arc<dyn EventStore>) {
    let s = store.as_ref();
    let (a, b) = (SchoolId::new(), SchoolId::new());
    let i = ids();
    write_school(s, a, &i).await;
    // The same student id in another school: never seen from the first.
    append_json(
        s,
        b,
        &format!("student-{}-2025", i.x),
        &[grade(Uuid::now_v7(), i.class, "Storia", "2025-10-06", 1000)],
    )
    .await;
    let projector = Projector::new(Arc::clone(&store), Arc::new(FamilyView));
    projector.prepare().await.unwrap();
    catch_up(&projector, s, a, b, i.x).await;

    let g = grades(a, i.x, 2025, None).run(s, a).await.unwrap();
    let shown: Vec<_> = g
        .iter()
        .map(|g| {
            (
                g.id,
                g.mark.as_str(),
                g.hundredths,
                g.corrected,
                g.annulled.is_some(),
            )
        })
        .collect();
    assert_eq!(
        shown,
        [
            (i.g2, "6", Some(600), true, false),
            (i.g3, "4", Some(400), false, true),
            (i.g1, "7", Some(700), false, false),
        ],
        "newest first; the correction and the annulment applied"
    );
    assert_eq!(
        grades(b, i.x, 2025, None).run(s, b).await.unwrap()[0].subject,
        "Storia"
    );
    assert!(
        grades(a, i.x, 2024, None)
            .run(s, a)
            .await
            .unwrap()
            .is_empty()
    );

    // Pages: one at a time, then after the cursor.
    let first = Page {
        after: None,
        limit: 1,
    };
    let page1 = grades(a, i.x, 2025, Some(&first)).run(s, a).await.unwrap();
    assert_eq!(page1.len(), 1);
    let cursor = Cursor::after(&page1[0].date, page1[0].id);
    assert_eq!(Cursor::parse(&cursor.to_string()), Some(cursor.clone()));
    let next = Page {
        after: Some(cursor),
        limit: 5,
    };
    let rest: Vec<_> = grades(a, i.x, 2025, Some(&next))
        .run(s, a)
        .await
        .unwrap()
        .into_iter()
        .map(|g| g.id)
        .collect();
    assert_eq!(rest, [i.g3, i.g1]);

    let entries = attendance(a, i.x, 2025, None).run(s, a).await.unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(
        (
            entries[0].id,
            entries[0].kind.as_str(),
            entries[0].at.as_deref()
        ),
        (i.late, "late_entry", Some("09:40"))
    );
    assert!(entries[0].cancelled.is_some());
    assert_eq!(entries[0].justification, "missing");
    assert_eq!(
        (
            entries[1].hours,
            entries[1].justification.as_str(),
            entries[1].justifier.as_deref()
        ),
        (5, "accepted", Some("guardian"))
    );

    let with_class = notes(a, i.x, Some(i.class), 2025, None)
        .run(s, a)
        .await
        .unwrap();
    assert_eq!(
        with_class
            .iter()
            .map(|n| (n.id, n.whole_class))
            .collect::<Vec<_>>(),
        [(i.class_note, true), (i.note, false)]
    );
    assert_eq!(
        notes(a, i.y, Some(i.class), 2025, None)
            .run(s, a)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        notes(a, i.x, None, 2025, None)
            .run(s, a)
            .await
            .unwrap()
            .len(),
        1
    );

    let items = agenda(a, i.class, 2025, None, None)
        .run(s, a)
        .await
        .unwrap();
    assert_eq!(
        items
            .iter()
            .map(|x| (x.id, x.kind.as_str()))
            .collect::<Vec<_>>(),
        [(i.test, "test"), (i.homework, "homework")]
    );
    let from = time::macros::date!(2025 - 10 - 10);
    assert_eq!(
        agenda(a, i.class, 2025, Some(from), None)
            .run(s, a)
            .await
            .unwrap()
            .len(),
        1
    );

    let to_family = |student: Uuid, class: Uuid, groups: &'static [&'static str]| Addressees {
        student,
        class: Some(class),
        groups,
        readers: &[],
    };
    let comms = communications(
        a,
        2025,
        Addressees {
            readers: &[i.guardian],
            ..to_family(i.x, i.class, &["families"])
        },
        None,
    )
    .run(s, a)
    .await
    .unwrap();
    assert_eq!(comms.len(), 1, "only the one to the families of the class");
    assert_eq!(comms[0].id, i.to_class);
    assert_eq!(comms[0].receipts.len(), 1);
    assert_eq!(comms[0].receipts[0].0, i.guardian);
    let consent = comms[0].consent.as_ref().unwrap();
    assert_eq!(
        (consent.consent.as_str(), consent.by),
        ("refused", i.guardian)
    );
    assert!(
        communications(a, 2025, to_family(i.y, i.other_class, &["families"]), None)
            .run(s, a)
            .await
            .unwrap()
            .iter()
            .all(|c| c.id == i.to_other && c.consent.is_none())
    );
    assert!(
        communications(a, 2025, to_family(i.x, i.class, &["students"]), None)
            .run(s, a)
            .await
            .unwrap()
            .is_empty(),
        "a notice to the families is not the students'"
    );

    let booked = bookings(a, i.x, 2025).run(s, a).await.unwrap();
    assert!(
        bookings(a, i.x, 2024).run(s, a).await.unwrap().is_empty(),
        "another year's"
    );
    assert_eq!(booked.len(), 1, "the cancelled booking is gone");
    assert_eq!(
        (booked[0].slot, booked[0].teacher, booked[0].start.as_str()),
        (i.slot, Some(i.teacher), "16:00")
    );
    assert_eq!(
        booked[0].cancelled.as_deref(),
        Some("consiglio straordinario")
    );

    // Applying again changes nothing: the checkpoint holds.
    let at = projector.catch_up().await.unwrap();
    assert_eq!(projector.catch_up().await.unwrap(), at);
    assert_eq!(grades(a, i.x, 2025, None).run(s, a).await.unwrap(), g);
}

#[tokio::test]
async fn sqlite_the_view_follows_the_events() {
    let (_dir, store) = sqlite_store().await;
    the_view_follows_the_events(store).await;
}

#[tokio::test]
async fn postgres_the_view_follows_the_events() {
    let db = TestDb::new().await;
    // The ordinary test role may not create tables: the administrator prepares them and
    // grants them, as in production.
    let store = db.app_store_with_projection(&FamilyView.schema()).await;
    assert_eq!(store.row_security().await.unwrap(), Some(true));
    the_view_follows_the_events(Arc::new(store)).await;
}

/// Each scope's stamp is the `school_seq` of the last event that changed one of its rows: the
/// student's (their record, consents and bookings), the class's (its register), a person's
/// (their receipts), the school's (communications, meeting slots); per school.
async fn stamps_follow_each_scope(store: Arc<dyn EventStore>) {
    let s = store.as_ref();
    let (a, b) = (SchoolId::new(), SchoolId::new());
    let i = ids();
    write_school(s, a, &i).await;
    append_json(
        s,
        b,
        &format!("student-{}-2025", i.x),
        &[grade(Uuid::now_v7(), i.class, "Storia", "2025-10-06", 1000)],
    )
    .await;
    let projector = Projector::new(Arc::clone(&store), Arc::new(FamilyView));
    projector.prepare().await.unwrap();
    catch_up(&projector, s, a, b, i.x).await;
    let log = s
        .read_school(a, 1, 1000, registro_store::Sealed::Keep)
        .await
        .unwrap();
    // The last event of `kind` (or the only one) on a stream starting with `stream`.
    let seq = |kind: &str, stream: &str| {
        log.iter()
            .rev()
            .find(|e| e.event_type.as_str() == kind && e.stream_id.as_str().starts_with(stream))
            .unwrap()
            .school_seq
    };
    let at = |school: SchoolId, scopes: Vec<Uuid>| async move {
        stamp(school, &scopes).run(s, school).await.unwrap()
    };
    let x = seq("BookingCancelled", "meetings-");
    assert_eq!(at(a, vec![i.x]).await, x);
    let y = seq("GradeRecorded", &format!("student-{}", i.y));
    assert_eq!(at(a, vec![i.y]).await, y);
    let class = seq("ClassNoteRecorded", "class-");
    assert_eq!(at(a, vec![i.class]).await, class);
    let guardian = seq("CommunicationAcknowledged", "communication-");
    assert_eq!(at(a, vec![i.guardian]).await, guardian);
    let school = seq("SlotCancelled", "meetings-");
    assert_eq!(at(a, vec![*a.as_uuid()]).await, school);
    // An overview's stamp is the greatest of its scopes'.
    let all = vec![i.x, i.class, i.guardian, *a.as_uuid()];
    assert_eq!(at(a, all).await, x.max(class).max(guardian).max(school));
    assert_eq!(at(a, vec![Uuid::now_v7()]).await, 0);
    // The other school's student of the same id: only their own school's event.
    assert_eq!(at(b, vec![i.x]).await, 1);
    assert_eq!(at(b, vec![i.class, *a.as_uuid()]).await, 0);
}

#[tokio::test]
async fn sqlite_stamps_follow_each_scope() {
    let (_dir, store) = sqlite_store().await;
    stamps_follow_each_scope(store).await;
}

#[tokio::test]
async fn postgres_stamps_follow_each_scope() {
    let db = TestDb::new().await;
    let store = db.app_store_with_projection(&FamilyView.schema()).await;
    stamps_follow_each_scope(Arc::new(store)).await;
}

/// The overview's coming homework and meetings: from a day on, soonest first, as many as asked,
/// read without the rest of the year (the soak piled thousands of them on one class).
async fn upcoming_reads_take_the_soonest_only(store: Arc<dyn EventStore>) {
    let s = store.as_ref();
    let a = SchoolId::new();
    let (class, teacher, x, guardian) = (
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
    );
    // Homework due 1 to 12 October, written in no order; two due on the 5th.
    let days = [9, 3, 12, 5, 1, 7, 5, 11, 2, 8, 4, 10, 6];
    let homework: Vec<(Uuid, u8)> = days.iter().map(|d| (Uuid::now_v7(), *d)).collect();
    let items: Vec<(&str, Value)> = homework
        .iter()
        .map(|(id, day)| {
            (
                "HomeworkAssigned",
                json!({"homework": id, "subject": "Matematica", "text": "Esercizi",
                    "assigned_on": "2025-09-20", "due": format!("2025-10-{day:02}")}),
            )
        })
        .collect();
    append_json(s, a, &format!("class-{class}"), &items).await;
    // Meetings booked on 2 to 7 October, and one in the next school year.
    let slots: Vec<(Uuid, String)> = ["2025-10-06", "2025-10-02", "2026-09-15", "2025-10-04"]
        .iter()
        .chain(&["2025-10-07", "2025-10-03", "2025-10-05"])
        .map(|d| (Uuid::now_v7(), (*d).to_owned()))
        .collect();
    let mut meetings: Vec<(&str, Value)> = Vec::new();
    for (slot, date) in &slots {
        meetings.push((
            "SlotOffered",
            json!({"slot": slot, "date": date, "start": "16:00", "end": "16:30",
                "capacity": 1, "place": "Aula 3"}),
        ));
        meetings.push((
            "MeetingBooked",
            json!({"slot": slot, "guardian": guardian, "student": x}),
        ));
    }
    append_json(s, a, &format!("meetings-{teacher}"), &meetings).await;

    let projector = Projector::new(Arc::clone(&store), Arc::new(FamilyView));
    projector.prepare().await.unwrap();
    for _ in 0..200 {
        projector.catch_up().await.unwrap();
        let agenda_done = agenda(a, class, 2025, None, None)
            .run(s, a)
            .await
            .unwrap()
            .len();
        let booked = bookings(a, x, 2025).run(s, a).await.unwrap().len();
        if (agenda_done, booked) == (homework.len(), 6) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    let from = time::macros::date!(2025 - 10 - 04);
    let coming = upcoming_agenda(a, class, 2025, from, 4)
        .run(s, a)
        .await
        .unwrap();
    let mut expected: Vec<&(Uuid, u8)> = homework.iter().filter(|(_, d)| *d >= 4).collect();
    expected.sort_by_key(|(id, d)| (*d, *id));
    assert_eq!(
        coming.iter().map(|h| h.id).collect::<Vec<_>>(),
        expected
            .iter()
            .take(4)
            .map(|(id, _)| *id)
            .collect::<Vec<_>>()
    );
    assert_eq!(
        coming.iter().map(|h| h.date.as_str()).collect::<Vec<_>>(),
        ["2025-10-04", "2025-10-05", "2025-10-05", "2025-10-06"]
    );
    let booked = upcoming_bookings(a, x, 2025, from, 2)
        .run(s, a)
        .await
        .unwrap();
    assert_eq!(
        booked.iter().map(|b| b.date.as_str()).collect::<Vec<_>>(),
        ["2025-10-04", "2025-10-05"]
    );
    // Past the year's last meeting: only the year's, never the next one's.
    let late = time::macros::date!(2025 - 10 - 07);
    let last = upcoming_bookings(a, x, 2025, late, 10)
        .run(s, a)
        .await
        .unwrap();
    assert_eq!(
        last.iter().map(|b| b.date.as_str()).collect::<Vec<_>>(),
        ["2025-10-07"]
    );
}

#[tokio::test]
async fn sqlite_upcoming_reads_take_the_soonest_only() {
    let (_dir, store) = sqlite_store().await;
    upcoming_reads_take_the_soonest_only(store).await;
}

#[tokio::test]
async fn postgres_upcoming_reads_take_the_soonest_only() {
    let db = TestDb::new().await;
    let store = db.app_store_with_projection(&FamilyView.schema()).await;
    upcoming_reads_take_the_soonest_only(Arc::new(store)).await;
}

/// A term's report cards show once the principal publishes them, with the final one's outcome,
/// and no longer while the scrutinio is reopened.
async fn report_cards_follow_their_publication(store: Arc<dyn EventStore>) {
    let s = store.as_ref();
    let school = SchoolId::new();
    let (x, class, teacher) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let stream = format!("scrutiny-{class}-2025");
    append_json(
        s,
        school,
        &stream,
        &[
            (
                "ScrutinyOpened",
                json!({"term": 2, "level": "upper_secondary", "final": true}),
            ),
            (
                "GradesDeliberated",
                json!({"term": 2, "student": x, "grades": {"Matematica": {"scale": "numeric", "value": 500},
                    "Religione": {"scale": "judgement", "value": "buono"}},
                    "conduct": 800, "vote": {"kind": "majority", "dissenting": [teacher]}}),
            ),
            (
                "OutcomeDeliberated",
                json!({"student": x, "outcome": {"kind": "judgement_suspended",
                    "subjects": ["Matematica"], "citizenship": false},
                    "proposed": {"kind": "judgement_suspended", "subjects": ["Matematica"],
                    "citizenship": false}, "vote": {"kind": "unanimous"}, "reasons": ""}),
            ),
            (
                "AbsencesExempted",
                json!({"term": 2, "student": x, "exemption": {"from": "2026-02-02",
                    "to": "2026-03-03", "reason": "health"}, "vote": {"kind": "unanimous"}}),
            ),
            ("ScrutinyClosed", json!({"term": 2})),
        ],
    )
    .await;
    let projector = Projector::new(Arc::clone(&store), Arc::new(FamilyView));
    projector.prepare().await.unwrap();
    // Caught up with everything the school wrote (on PostgreSQL an event reaches subscribers
    // once older transactions on the server have ended: the wait is bounded), then read.
    let until = |wanted: usize| {
        let projector = projector.clone();
        async move {
            let head = s.school_head(school).await.unwrap().unwrap().last_seq;
            for _ in 0..200 {
                projector.catch_up().await.unwrap();
                if s.projection_reached("family", school, head).await.unwrap() {
                    let found = report_cards(school, x, 2025).run(s, school).await.unwrap();
                    assert_eq!(found.len(), wanted, "{found:?}");
                    return found;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            panic!("the family view did not catch up");
        }
    };
    assert!(until(0).await.is_empty(), "not published yet");
    let exempted = registro_projection_family::exemptions(school, x, 2025)
        .run(s, school)
        .await
        .unwrap();
    assert_eq!(exempted.len(), 1);
    assert_eq!(
        (exempted[0].from, exempted[0].to),
        (
            time::macros::date!(2026 - 02 - 02),
            time::macros::date!(2026 - 03 - 03)
        )
    );
    append_json(
        s,
        school,
        &stream,
        &[("ReportCardsPublished", json!({"term": 2}))],
    )
    .await;
    let cards = until(1).await;
    let card = &cards[0];
    assert_eq!((card.class, card.term, card.is_final), (class, 2, true));
    assert_eq!(card.grades["Matematica"], "5");
    assert_eq!(card.grades["Religione"], "buono");
    assert_eq!(card.conduct, Some(8));
    assert_eq!(card.outcome.as_deref(), Some("judgement_suspended"));
    assert_eq!(card.subjects_to_recover, ["Matematica"]);
    append_json(
        s,
        school,
        &stream,
        &[(
            "SuspensionResolved",
            json!({"student": x, "admitted": true, "vote": {"kind": "unanimous"}}),
        )],
    )
    .await;
    for _ in 0..200 {
        projector.catch_up().await.unwrap();
        if report_cards(school, x, 2025).run(s, school).await.unwrap()[0]
            .resolved
            .is_some()
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let cards = report_cards(school, x, 2025).run(s, school).await.unwrap();
    assert_eq!(cards[0].resolved.as_deref(), Some("admitted"));
    append_json(
        s,
        school,
        &stream,
        &[(
            "ScrutinyReopened",
            json!({"term": 2, "reason": "errore materiale"}),
        )],
    )
    .await;
    assert!(until(0).await.is_empty(), "withdrawn while reopened");
    // Decided again and published again: the earlier integration no longer stands.
    append_json(
        s,
        school,
        &stream,
        &[
            (
                "OutcomeDeliberated",
                json!({"student": x, "outcome": {"kind": "admitted"},
                    "proposed": {"kind": "admitted"}, "vote": {"kind": "unanimous"},
                    "reasons": "recuperato"}),
            ),
            ("ScrutinyClosed", json!({"term": 2})),
            ("ReportCardsPublished", json!({"term": 2})),
        ],
    )
    .await;
    let cards = until(1).await;
    assert_eq!(
        (cards[0].outcome.as_deref(), cards[0].resolved.as_deref()),
        (Some("admitted"), None)
    );
    // Withdrawn at the reopened final scrutinio: the report card shows no outcome until it is
    // decided again.
    append_json(
        s,
        school,
        &stream,
        &[
            ("ScrutinyReopened", json!({"term": 2, "reason": "errore"})),
            (
                "OutcomeWithdrawn",
                json!({"student": x, "reason": "errore"}),
            ),
            ("ScrutinyClosed", json!({"term": 2})),
            ("ReportCardsPublished", json!({"term": 2})),
        ],
    )
    .await;
    let cards = until(1).await;
    assert_eq!(cards[0].outcome, None);
}

#[tokio::test]
async fn sqlite_report_cards_follow_their_publication() {
    let (_dir, store) = sqlite_store().await;
    report_cards_follow_their_publication(store).await;
}

#[tokio::test]
async fn postgres_report_cards_follow_their_publication() {
    let db = TestDb::new().await;
    let store = db.app_store_with_projection(&FamilyView.schema()).await;
    report_cards_follow_their_publication(Arc::new(store)).await;
}

/// An event of a type the view knows but whose data it cannot read stops the projector there
/// (a poison event), after the events before it; events of other types change nothing.
#[tokio::test]
async fn an_unreadable_event_stops_the_view_there() {
    let (_dir, store) = sqlite_store().await;
    let school = SchoolId::new();
    let student = Uuid::now_v7();
    let record = format!("student-{student}-2025");
    append_json(
        store.as_ref(),
        school,
        "directory",
        &[("RoleGranted", json!({"person": student, "role": "student"}))],
    )
    .await;
    append_json(
        store.as_ref(),
        school,
        &record,
        &[grade(
            Uuid::now_v7(),
            Uuid::now_v7(),
            "Storia",
            "2025-10-06",
            600,
        )],
    )
    .await;
    append_json(
        store.as_ref(),
        school,
        &record,
        &[("GradeRecorded", json!({"grade": "not an id"}))],
    )
    .await;
    let projector = Projector::new(Arc::clone(&store), Arc::new(FamilyView));
    projector.prepare().await.unwrap();
    let error = projector.catch_up().await.unwrap_err();
    assert!(
        matches!(&error, registro_projector::ProjectorError::Poison { school_seq: 3, event_type, .. } if event_type == "GradeRecorded"),
        "{error}"
    );
    assert_eq!(
        grades(school, student, 2025, None)
            .run(store.as_ref(), school)
            .await
            .unwrap()
            .len(),
        1,
        "the events before it are applied"
    );
    assert!(
        projector.catch_up().await.is_err(),
        "it never skips the event"
    );
}
