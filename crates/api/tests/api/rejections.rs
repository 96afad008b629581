//! Every refusal of the domain that a request can meet, over HTTP on both stores: each variant
//! of the domain's error enums triggered through the real API answers the status the API maps
//! it to, as `application/problem+json`, with the variant's reason (in Italian) in `detail`, and
//! the school's log does not move.
//!
//! Covered elsewhere, with their reason checked: `RecordError::{OutsideYear, Holiday,
//! ScaleMismatch, NoHoursMissed, AlreadyRecorded, NotThePrincipal}`,
//! `JustificationError::MinorCannotJustify` (register.rs); `CommunicationError::{NotYours,
//! NotYourClass, UnknownClass, BadAudience, Text, PastDeadline, Withdrawn, AlreadyAcknowledged}`
//! (communications.rs); `RecordError::Closed` and the scrutini's refusals that a council
//! meets on its way (scrutiny.rs); `DirectoryError::{FiscalCodeTaken, UnknownSubject, Calendar}`
//! (authorization.rs, register.rs); `DirectoryError::BadRows` (the CSV test, line by line).
//! Refusals those tests check by status only are checked here again with their reason.
//!
//! Not reachable over HTTP:
//! - `RecordError::{GradeExists, NoteExists}`, `ClassError::Exists` for homework, tests and
//!   class notes, `MeetingError::Exists`, `CommunicationError::Exists`,
//!   `DirectoryError::{AlreadyRegistered, ClassExists}`: the server makes every new id (a UUIDv7,
//!   or one derived from the caller's idempotency key, whose reuse is a replay or a 422 before
//!   anything is decided); a class test's retry takes `GradeExists` as its grade already given.
//! - `DirectoryError::UnknownClassName`: only in an enrolment list, as the reason of one of its
//!   lines (`BadRows`, covered by the CSV test).
//! - `CommunicationError::DeadlinePassed` needs a deadline already past, which publishing refuses
//!   (`PastDeadline`) and the tests' fixed "today" never reaches: the communication is put in the
//!   store directly, and only the answer goes through HTTP.

use std::collections::BTreeSet;
use std::time::Duration;

use registro_api::ratelimit::RateLimit;
use registro_domain::StoredEvent as _;
use registro_domain::communications::{Audience, CATALOGUE_STREAM, CatalogueEvent, Group, Kind};
use registro_domain::directory::DirectoryCommand;
use registro_domain::justification::JustificationSettings;
use registro_domain::{CommunicationId, PersonId, Role};
use registro_store::{
    AppendRequest, CommandMetadata, EventType, ExpectedVersion, NewEvent, StreamId,
};
use reqwest::Method;
use serde_json::{Value, json};
use time::macros::date;
use uuid::Uuid;

use crate::world::{World, grade_body};

/// The detail of a plain 404 (`ApiError::NotFound`).
const NOTHING_HERE: &str = "There is nothing at this address.";

/// A request: what is sent, and as whom.
struct Call<'a> {
    method: Method,
    path: String,
    token: &'a str,
    body: Option<Value>,
}

fn post<'a>(path: &str, token: &'a str, body: Value) -> Call<'a> {
    Call {
        method: Method::POST,
        path: path.to_owned(),
        token,
        body: Some(body),
    }
}

fn put<'a>(path: &str, token: &'a str, body: Value) -> Call<'a> {
    Call {
        method: Method::PUT,
        path: path.to_owned(),
        token,
        body: Some(body),
    }
}

fn delete<'a>(path: &str, token: &'a str) -> Call<'a> {
    Call {
        method: Method::DELETE,
        path: path.to_owned(),
        token,
        body: None,
    }
}

/// Sends requests to a world and collects every refusal that is not as expected.
struct Checker<'w> {
    w: &'w World,
    failures: Vec<String>,
    checked: usize,
}

impl<'w> Checker<'w> {
    fn new(w: &'w World) -> Self {
        Self {
            w,
            failures: Vec::new(),
            checked: 0,
        }
    }

    async fn head(&self) -> Option<u64> {
        self.w
            .store
            .school_head(self.w.a)
            .await
            .unwrap()
            .map(|h| h.last_seq)
    }

    /// A set-up step that must succeed; its body.
    async fn ok(&self, call: Call<'_>) -> Value {
        let r = self
            .w
            .call(
                call.method.clone(),
                &call.path,
                Some(call.token),
                call.body.as_ref(),
            )
            .await;
        let status = r.status();
        let text = r.text().await.unwrap();
        assert!(
            status.is_success(),
            "set-up {} {}: {status} {text}",
            call.method,
            call.path
        );
        serde_json::from_str(&text).unwrap()
    }

    /// A string field of a set-up step's answer (`id`, `hash`).
    async fn ok_field(&self, call: Call<'_>, field: &str) -> String {
        self.ok(call).await[field].as_str().unwrap().to_owned()
    }

    /// `call` must be refused as `variant` is: `status`, a problem whose detail contains
    /// `detail`, nothing written.
    async fn refuse(&mut self, variant: &str, call: Call<'_>, status: u16, detail: &str) {
        self.checked += 1;
        let before = self.head().await;
        let r = self
            .w
            .call(
                call.method.clone(),
                &call.path,
                Some(call.token),
                call.body.as_ref(),
            )
            .await;
        let got = r.status().as_u16();
        let content_type = r
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let text = r.text().await.unwrap_or_default();
        let problem: Value = serde_json::from_str(&text).unwrap_or_default();
        let got_detail = problem["detail"].as_str().unwrap_or_default();
        let mut wrong = Vec::new();
        if got != status {
            wrong.push(format!("status {got}, expected {status}"));
        }
        if content_type != "application/problem+json" {
            wrong.push(format!("content-type {content_type:?}"));
        }
        if problem["status"] != status {
            wrong.push(format!("problem status {}", problem["status"]));
        }
        if !got_detail.contains(detail) {
            wrong.push(format!("detail lacks {detail:?}"));
        }
        if self.head().await != before {
            wrong.push("something was written".to_owned());
        }
        if !wrong.is_empty() {
            self.failures.push(format!(
                "{variant} ({} {}): {}; answer: {text}",
                call.method,
                call.path,
                wrong.join(", ")
            ));
        }
    }

    fn finish(self, at_least: usize) {
        assert!(self.failures.is_empty(), "{}", self.failures.join("\n"));
        assert!(self.checked >= at_least, "{}", self.checked);
    }
}

/// A new person of school A holding `role`, with a token.
async fn person_with_token(w: &World, role: Role) -> (PersonId, String) {
    let code = w.code();
    let person = w.register_with_code(w.a, role, code.clone()).await;
    let token = w
        .issuer
        .issue_with(None, &code, Duration::from_secs(600))
        .unwrap();
    (person, token)
}

/// A new student of class 1A born in 2005 (of age all 2025/26), with a token.
async fn adult_pupil(w: &World) -> (PersonId, String) {
    let (person, code) = (PersonId::new(), w.code());
    w.run(
        w.a,
        DirectoryCommand::Register {
            person,
            fiscal_code: code.clone(),
            family_name: "Prova".into(),
            given_name: "Maggiorenne".into(),
            role: Role::Student,
            birth_date: Some(date!(2005 - 01 - 01)),
        },
    )
    .await;
    w.enrol(w.a, person, w.c1).await;
    let token = w
        .issuer
        .issue_with(None, &code, Duration::from_secs(600))
        .unwrap();
    (person, token)
}

/// A new class of A without a timetable, where the world's teacher teaches mathematics.
async fn class_without_timetable(w: &World) -> registro_domain::ClassId {
    let class = w.class(w.a, "2C").await;
    w.run(
        w.a,
        DirectoryCommand::AssignTeacher {
            teacher: w.person(Role::Teacher),
            class,
            subject: "Matematica".into(),
        },
    )
    .await;
    class
}

fn absence(date: &str) -> Value {
    json!({"date": date, "kind": "absence"})
}

/// A student's record: grades, attendance and its justifications, notes and sanctions.
async fn record_refusals(w: World) {
    let (teacher, guardian, principal) = (
        w.token(Role::Teacher),
        w.token(Role::Guardian),
        w.token(Role::Principal),
    );
    let s = format!("/schools/{}", w.a);
    let year = format!("{s}/students/{}/years/2025", w.x);
    let mut c = Checker::new(&w);

    // Grades.
    let grades = format!("{year}/grades");
    let mut history = grade_body("6");
    history["subject"] = json!("Storia");
    c.refuse(
        "RecordError::NotYourSubject",
        post(&grades, &teacher, history),
        403,
        "non insegna questa materia nella classe dello studente",
    )
    .await;
    let mut christmas = grade_body("6");
    christmas["date"] = json!("2025-12-22");
    c.refuse(
        "RecordError::NotInTerm",
        post(&grades, &teacher, christmas),
        422,
        "non cade in nessun periodo",
    )
    .await;
    let mut tomorrow = grade_body("6");
    tomorrow["date"] = json!("2026-07-01");
    c.refuse(
        "RecordError::FutureDate",
        post(&grades, &teacher, tomorrow),
        422,
        "la data è nel futuro",
    )
    .await;
    c.refuse(
        "RecordError::UnknownGrade",
        post(
            &format!("{grades}/{}/corrections", Uuid::now_v7()),
            &teacher,
            json!({"mark": "6", "reason": "errore di trascrizione"}),
        ),
        404,
        "voto sconosciuto",
    )
    .await;
    let grade = c
        .ok_field(post(&grades, &teacher, grade_body("7")), "id")
        .await;
    let grade = format!("{grades}/{grade}");
    c.refuse(
        "RecordError::SameMark",
        post(
            &format!("{grade}/corrections"),
            &teacher,
            json!({"mark": "7", "reason": "errore di trascrizione"}),
        ),
        422,
        "la correzione non cambia il voto",
    )
    .await;
    c.refuse(
        "RecordError::Text",
        post(
            &format!("{grade}/annulment"),
            &teacher,
            json!({"reason": "  "}),
        ),
        422,
        "testo mancante",
    )
    .await;
    let annul = json!({"reason": "prova da ripetere"});
    c.ok(post(&format!("{grade}/annulment"), &teacher, annul.clone()))
        .await;
    c.refuse(
        "RecordError::Annulled",
        post(&format!("{grade}/annulment"), &teacher, annul),
        409,
        "il voto è stato annullato",
    )
    .await;

    // A student in no class: the principal passes the policy for any student.
    let unenrolled = w.register(w.a, Role::Student).await;
    c.refuse(
        "RecordError::NotEnrolled",
        post(
            &format!("{s}/students/{unenrolled}/years/2025/sanctions"),
            &principal,
            json!({"text": "Ammonizione scritta", "date": "2025-10-07"}),
        ),
        422,
        "lo studente non è iscritto a una classe",
    )
    .await;

    // Attendance in a class without a timetable.
    let class = class_without_timetable(&w).await;
    let pupil = w.register(w.a, Role::Student).await;
    w.enrol(w.a, pupil, class).await;
    c.refuse(
        "RecordError::NoTimetable",
        post(
            &format!("{s}/students/{pupil}/years/2025/attendance"),
            &teacher,
            absence("2025-10-06"),
        ),
        422,
        "la classe non ha ancora un orario delle lezioni",
    )
    .await;

    // Attendance entries and their justifications.
    let attendance = format!("{year}/attendance");
    let reason = json!({"reason": "registrata per errore"});
    c.refuse(
        "RecordError::UnknownEntry",
        post(
            &format!("{attendance}/{}/cancellation", Uuid::now_v7()),
            &teacher,
            reason.clone(),
        ),
        404,
        "registrazione di presenza sconosciuta",
    )
    .await;
    let monday = c
        .ok_field(post(&attendance, &teacher, absence("2025-10-06")), "id")
        .await;
    let justification = format!("{attendance}/{monday}/justification");
    let decision = format!("{justification}/decision");
    c.refuse(
        "JustificationError::NothingToDecide",
        post(&decision, &teacher, json!({"accept": true})),
        409,
        "non c'è una giustificazione da valutare",
    )
    .await;
    let health = json!({"category": "health", "text": "febbre"});
    c.ok(post(&justification, &guardian, health.clone())).await;
    // A teacher of the class who is also the student's parent.
    let (parent_teacher, parent_teacher_token) = person_with_token(&w, Role::Teacher).await;
    w.run(
        w.a,
        DirectoryCommand::GrantRole {
            person: parent_teacher,
            role: Role::Guardian,
        },
    )
    .await;
    w.run(
        w.a,
        DirectoryCommand::AssignTeacher {
            teacher: parent_teacher,
            class: w.c1,
            subject: "Arte".into(),
        },
    )
    .await;
    w.link(w.a, parent_teacher, w.x).await;
    c.refuse(
        "RecordError::OwnChild",
        post(&decision, &parent_teacher_token, json!({"accept": true})),
        403,
        "il docente è genitore o tutore dello studente",
    )
    .await;
    c.refuse(
        "JustificationError::ReasonRequired",
        post(&decision, &teacher, json!({"accept": false})),
        422,
        "il rifiuto di una giustificazione richiede una motivazione",
    )
    .await;
    c.ok(post(&decision, &teacher, json!({"accept": true})))
        .await;
    c.refuse(
        "JustificationError::AlreadyDecided",
        post(&justification, &guardian, health.clone()),
        409,
        "già stata valutata dal docente",
    )
    .await;
    let tuesday = c
        .ok_field(post(&attendance, &teacher, absence("2025-10-07")), "id")
        .await;
    let cancellation = format!("{attendance}/{tuesday}/cancellation");
    c.ok(post(&cancellation, &teacher, reason.clone())).await;
    c.refuse(
        "RecordError::Cancelled (cancelled again)",
        post(&cancellation, &teacher, reason.clone()),
        409,
        "la registrazione è già stata annullata",
    )
    .await;
    c.refuse(
        "RecordError::Cancelled (justified)",
        post(
            &format!("{attendance}/{tuesday}/justification"),
            &guardian,
            health.clone(),
        ),
        409,
        "la registrazione è già stata annullata",
    )
    .await;

    // Notes.
    let notes = format!("{year}/notes");
    let annulment = json!({"reason": "scritta per errore"});
    c.refuse(
        "RecordError::UnknownNote",
        post(
            &format!("{notes}/{}/annulment", Uuid::now_v7()),
            &teacher,
            annulment.clone(),
        ),
        404,
        "nota sconosciuta",
    )
    .await;
    let note = c
        .ok_field(
            post(
                &notes,
                &teacher,
                json!({"kind": "annotation", "text": "Dimentica il materiale",
                    "date": "2025-10-06"}),
            ),
            "id",
        )
        .await;
    let note = format!("{notes}/{note}/annulment");
    c.ok(post(&note, &teacher, annulment.clone())).await;
    c.refuse(
        "RecordError::NoteAnnulled",
        post(&note, &teacher, annulment),
        409,
        "la nota è già stata annullata",
    )
    .await;

    // An adult student: they justify themselves, unless the school wants their guardians to.
    let (adult, adult_token) = adult_pupil(&w).await;
    w.link(w.a, w.person(Role::Guardian), adult).await;
    let adult_attendance = format!("{s}/students/{adult}/years/2025/attendance");
    let entry = c
        .ok_field(
            post(&adult_attendance, &teacher, absence("2025-10-06")),
            "id",
        )
        .await;
    let adult_justification = format!("{adult_attendance}/{entry}/justification");
    c.refuse(
        "JustificationError::AdultJustifiesOwn",
        post(&adult_justification, &guardian, health.clone()),
        403,
        "lo studente maggiorenne giustifica da sé",
    )
    .await;
    w.run(
        w.a,
        DirectoryCommand::SetJustificationSettings {
            settings: JustificationSettings {
                adults_justify_themselves: false,
                due_within_school_days: 5,
            },
        },
    )
    .await;
    c.refuse(
        "JustificationError::GuardiansJustifyAdults",
        post(&adult_justification, &adult_token, health),
        403,
        "anche le assenze degli studenti maggiorenni",
    )
    .await;

    c.finish(20);
}

#[tokio::test]
async fn sqlite_record_rejections_answer_their_reason_and_write_nothing() {
    record_refusals(World::sqlite(RateLimit::default()).await).await;
}

#[tokio::test]
async fn postgres_record_rejections_answer_their_reason_and_write_nothing() {
    record_refusals(World::postgres(RateLimit::default()).await).await;
}

/// The class register: signatures, substitutes, homework and tests, class notes.
async fn class_register_refusals(w: World) {
    let (teacher, secretary, principal) = (
        w.token(Role::Teacher),
        w.token(Role::Secretary),
        w.token(Role::Principal),
    );
    let s = format!("/schools/{}", w.a);
    let class = format!("{s}/classes/{}", w.c1);
    let lessons = format!("{class}/lessons");
    let sign = |date: &str, hour: u8| json!({"date": date, "hour": hour, "topic": "Frazioni"});
    let mut c = Checker::new(&w);

    // Any teacher of the school passes the policy for signing, in any class.
    c.refuse(
        "ClassError::UnknownClass",
        post(
            &format!("{s}/classes/{}/lessons", Uuid::now_v7()),
            &teacher,
            sign("2025-10-06", 1),
        ),
        404,
        NOTHING_HERE,
    )
    .await;
    let bare = class_without_timetable(&w).await;
    c.refuse(
        "ClassError::NoTimetable",
        post(
            &format!("{s}/classes/{bare}/lessons"),
            &teacher,
            sign("2025-10-06", 1),
        ),
        422,
        "la classe non ha ancora un orario delle lezioni",
    )
    .await;
    c.refuse(
        "ClassError::NoSuchHour",
        post(&lessons, &teacher, sign("2025-10-06", 9)),
        422,
        "l'orario della classe non ha quest'ora in quel giorno",
    )
    .await;
    c.refuse(
        "ClassError::BadDate (last school year)",
        post(&lessons, &teacher, sign("2025-06-02", 1)),
        422,
        "si firmano solo lezioni dell'anno scolastico in corso",
    )
    .await;
    c.ok(post(&lessons, &teacher, sign("2025-10-06", 1))).await;
    c.refuse(
        "ClassError::AlreadySigned",
        post(&lessons, &teacher, sign("2025-10-06", 1)),
        409,
        "il docente ha già firmato quest'ora",
    )
    .await;
    let (outsider, outsider_token) = person_with_token(&w, Role::Teacher).await;
    c.refuse(
        "ClassError::NotYourClass",
        post(&lessons, &outsider_token, sign("2025-10-06", 2)),
        403,
        "non è il supplente registrato per quest'ora",
    )
    .await;

    // Substitutes.
    let substitutions = format!("{class}/substitutions");
    c.refuse(
        "ClassError::NotATeacher",
        post(
            &substitutions,
            &secretary,
            json!({"date": "2025-10-07", "hour": 2, "teacher": w.person(Role::Guardian)}),
        ),
        422,
        "il supplente deve essere un docente",
    )
    .await;
    let substitute = json!({"date": "2025-10-07", "hour": 2, "teacher": outsider});
    c.ok(post(&substitutions, &secretary, substitute.clone()))
        .await;
    c.refuse(
        "ClassError::Exists (the same substitute again)",
        post(&substitutions, &secretary, substitute),
        409,
        "questo elemento esiste già",
    )
    .await;

    // Homework and tests.
    let homework = format!("{class}/homework");
    c.refuse(
        "ClassError::NotYourSubject",
        post(
            &homework,
            &teacher,
            json!({"subject": "Storia", "text": "Leggere il capitolo 3", "due": "2099-10-06"}),
        ),
        403,
        "il docente non insegna questa materia in questa classe",
    )
    .await;
    c.refuse(
        "ClassError::BadDate (homework due yesterday)",
        post(
            &homework,
            &teacher,
            json!({"subject": "Matematica", "text": "Esercizi", "due": "2026-06-29"}),
        ),
        422,
        "i compiti non possono scadere prima di oggi",
    )
    .await;
    c.refuse(
        "ClassError::Text",
        post(
            &homework,
            &teacher,
            json!({"subject": "Matematica", "text": " ", "due": "2099-10-06"}),
        ),
        422,
        "testo mancante",
    )
    .await;
    c.refuse(
        "ClassError::BadDate (a test yesterday)",
        post(
            &format!("{class}/tests"),
            &teacher,
            json!({"subject": "Matematica", "date": "2026-06-29"}),
        ),
        422,
        "una verifica si programma per oggi o dopo",
    )
    .await;

    // Class notes.
    let notes = format!("{class}/notes");
    let note = json!({"kind": "disciplinary", "text": "La classe disturba", "date": "2025-10-08"});
    c.refuse(
        "ClassError::NotTheClassTeacher",
        post(&notes, &principal, note.clone()),
        403,
        "solo i docenti della classe scrivono le sue note",
    )
    .await;
    c.refuse(
        "ClassError::SanctionForClass",
        post(
            &notes,
            &teacher,
            json!({"kind": "sanction", "text": "Sospensione", "date": "2025-10-08"}),
        ),
        422,
        "i provvedimenti disciplinari sono individuali",
    )
    .await;
    let reason = json!({"reason": "nota sbagliata"});
    c.refuse(
        "ClassError::UnknownNote",
        post(
            &format!("{notes}/{}/annulment", Uuid::now_v7()),
            &teacher,
            reason.clone(),
        ),
        404,
        "nota di classe sconosciuta",
    )
    .await;
    let written = c.ok_field(post(&notes, &teacher, note), "id").await;
    let annulment = format!("{notes}/{written}/annulment");
    c.ok(post(&annulment, &principal, reason.clone())).await;
    c.refuse(
        "ClassError::AlreadyAnnulled",
        post(&annulment, &teacher, reason),
        409,
        "la nota è già stata annullata",
    )
    .await;

    c.finish(16);
}

#[tokio::test]
async fn sqlite_class_register_rejections_answer_their_reason_and_write_nothing() {
    class_register_refusals(World::sqlite(RateLimit::default()).await).await;
}

#[tokio::test]
async fn postgres_class_register_rejections_answer_their_reason_and_write_nothing() {
    class_register_refusals(World::postgres(RateLimit::default()).await).await;
}

/// Parent-teacher meetings: slots offered and cancelled, bookings made and cancelled.
async fn meeting_refusals(w: World) {
    let (teacher, guardian, principal) = (
        w.token(Role::Teacher),
        w.token(Role::Guardian),
        w.token(Role::Principal),
    );
    let meetings = format!(
        "/schools/{}/teachers/{}/meetings",
        w.a,
        w.person(Role::Teacher)
    );
    let slot = |date: &str, start: &str, end: &str, capacity: u8| json!({"date": date, "start": start, "end": end, "capacity": capacity, "place": "Aula 12"});
    let mut c = Checker::new(&w);

    c.refuse(
        "MeetingError::NotTheTeacher",
        post(
            &meetings,
            &principal,
            slot("2099-10-15", "16:00", "16:30", 2),
        ),
        403,
        "solo il docente offre e annulla i propri colloqui",
    )
    .await;
    for (what, body) in [
        (
            "ends before it starts",
            slot("2099-10-15", "16:30", "16:00", 2),
        ),
        ("no places", slot("2099-10-15", "16:00", "16:30", 0)),
        ("too many places", slot("2099-10-15", "16:00", "16:30", 51)),
    ] {
        c.refuse(
            &format!("MeetingError::BadSlot ({what})"),
            post(&meetings, &teacher, body),
            422,
            "orario o numero di posti non validi",
        )
        .await;
    }
    c.refuse(
        "MeetingError::Past",
        post(&meetings, &teacher, slot("2026-06-29", "16:00", "16:30", 2)),
        422,
        "la data è già passata",
    )
    .await;
    let mut far = slot("2099-10-15", "16:00", "16:30", 2);
    far["place"] = json!("x".repeat(201));
    c.refuse(
        "MeetingError::Text (place)",
        post(&meetings, &teacher, far),
        422,
        "testo mancante o troppo lungo",
    )
    .await;
    let x = json!({"student": w.x});
    c.refuse(
        "MeetingError::UnknownSlot",
        post(
            &format!("{meetings}/{}/bookings", Uuid::now_v7()),
            &guardian,
            x.clone(),
        ),
        404,
        "colloquio sconosciuto",
    )
    .await;

    let one = c
        .ok_field(
            post(&meetings, &teacher, slot("2099-10-15", "16:00", "16:30", 1)),
            "id",
        )
        .await;
    let many = c
        .ok_field(
            post(&meetings, &teacher, slot("2099-10-15", "17:00", "17:30", 5)),
            "id",
        )
        .await;
    let dropped = c
        .ok_field(
            post(&meetings, &teacher, slot("2099-10-16", "16:00", "16:30", 5)),
            "id",
        )
        .await;
    let cancellation = format!("{meetings}/{dropped}/cancellation");
    c.refuse(
        "MeetingError::Text (no reason)",
        post(&cancellation, &teacher, json!({"reason": " "})),
        422,
        "testo mancante o troppo lungo",
    )
    .await;
    c.ok(post(
        &cancellation,
        &teacher,
        json!({"reason": "consiglio di classe"}),
    ))
    .await;
    c.refuse(
        "MeetingError::Cancelled",
        post(
            &format!("{meetings}/{dropped}/bookings"),
            &guardian,
            x.clone(),
        ),
        409,
        "il colloquio è stato annullato",
    )
    .await;
    let bookings = format!("{meetings}/{many}/bookings");
    c.refuse(
        "MeetingError::NotYourTeacher",
        post(&bookings, &guardian, json!({"student": w.y})),
        403,
        "il docente non insegna allo studente",
    )
    .await;
    let booking = format!("{bookings}/{}", w.x);
    c.refuse(
        "MeetingError::NotBooked",
        delete(&booking, &guardian),
        409,
        "nessuna prenotazione per questo studente",
    )
    .await;
    c.ok(post(&bookings, &guardian, x.clone())).await;
    c.refuse(
        "MeetingError::AlreadyBooked",
        post(&bookings, &guardian, x.clone()),
        409,
        "il colloquio è già prenotato per questo studente",
    )
    .await;
    let (other_parent, other_parent_token) = person_with_token(&w, Role::Guardian).await;
    w.link(w.a, other_parent, w.x).await;
    c.refuse(
        "MeetingError::NotYourBooking",
        delete(&booking, &other_parent_token),
        403,
        "la prenotazione è di un altro genitore",
    )
    .await;
    // A second child in the same class: the one-place slot is full once the first is booked.
    let sibling = w.register(w.a, Role::Student).await;
    w.enrol(w.a, sibling, w.c1).await;
    w.link(w.a, w.person(Role::Guardian), sibling).await;
    let full = format!("{meetings}/{one}/bookings");
    c.ok(post(&full, &guardian, x)).await;
    c.refuse(
        "MeetingError::Full",
        post(&full, &guardian, json!({"student": sibling})),
        409,
        "il colloquio non ha più posti liberi",
    )
    .await;

    c.finish(14);
}

#[tokio::test]
async fn sqlite_meeting_rejections_answer_their_reason_and_write_nothing() {
    meeting_refusals(World::sqlite(RateLimit::default()).await).await;
}

#[tokio::test]
async fn postgres_meeting_rejections_answer_their_reason_and_write_nothing() {
    meeting_refusals(World::postgres(RateLimit::default()).await).await;
}

/// Communications: publishing, withdrawing, receipts and consents.
async fn communication_refusals(w: World) {
    let (principal, secretary, guardian, student) = (
        w.token(Role::Principal),
        w.token(Role::Secretary),
        w.token(Role::Guardian),
        w.token(Role::Student),
    );
    let s = format!("/schools/{}", w.a);
    let communications = format!("{s}/communications");
    let mut c = Checker::new(&w);

    let hash = c
        .ok_field(
            post(
                &format!("{s}/attachments"),
                &principal,
                Value::String("%PDF-1.4 circolare".into()),
            ),
            "hash",
        )
        .await;
    let notice = |attachments: Value| {
        json!({"kind": "notice", "title": "Avviso", "body": "Testo",
            "audience": {"groups": ["families"]}, "attachments": attachments})
    };
    for (what, attachments) in [
        (
            "the same file twice",
            json!([{"hash": hash, "name": "a.pdf"}, {"hash": hash, "name": "b.pdf"}]),
        ),
        (
            "a path as name",
            json!([{"hash": hash, "name": "../a.pdf"}]),
        ),
    ] {
        c.refuse(
            &format!("CommunicationError::BadAttachments ({what})"),
            post(&communications, &principal, notice(attachments)),
            422,
            "attachments: allegati non validi",
        )
        .await;
    }

    let plain = c
        .ok_field(post(&communications, &principal, notice(json!([]))), "id")
        .await;
    let plain = format!("{communications}/{plain}");
    let given = |student: PersonId| json!({"student": student, "consent": "given"});
    c.refuse(
        "CommunicationError::NoConsentAsked",
        post(&format!("{plain}/consents"), &guardian, given(w.x)),
        409,
        "questa comunicazione non chiede un'adesione",
    )
    .await;
    // The principal sees every communication, and is not among this one's recipients.
    c.refuse(
        "CommunicationError::Unknown",
        Call {
            method: Method::POST,
            path: format!("{plain}/receipt"),
            token: &principal,
            body: None,
        },
        404,
        NOTHING_HERE,
    )
    .await;

    let trip = c
        .ok_field(
            post(
                &communications,
                &principal,
                json!({"kind": "notice", "title": "Uscita didattica", "body": "Agli Uffizi.",
                    "audience": {"groups": ["families", "students"], "classes": [w.c1]},
                    "consent_deadline": "2026-07-03"}),
            ),
            "id",
        )
        .await;
    let trip = format!("{communications}/{trip}");
    c.refuse(
        "CommunicationError::NotConcerned",
        post(&format!("{trip}/consents"), &guardian, given(w.y)),
        422,
        "student: lo studente non è tra i destinatari",
    )
    .await;
    c.refuse(
        "CommunicationError::NotYourStudent",
        post(&format!("{trip}/consents"), &student, given(w.x)),
        403,
        "l'adesione è data da un genitore o tutore dello studente minorenne",
    )
    .await;
    c.refuse(
        "CommunicationError::NotTheAuthor",
        post(
            &format!("{trip}/withdrawal"),
            &secretary,
            json!({"reason": "errore"}),
        ),
        403,
        "solo chi l'ha pubblicata o il dirigente",
    )
    .await;
    c.refuse(
        "CommunicationError::Reason",
        post(
            &format!("{trip}/withdrawal"),
            &principal,
            json!({"reason": "  "}),
        ),
        422,
        "reason: serve una motivazione",
    )
    .await;

    // A consent whose deadline has passed: published (in the store) on 1 June, due 29 June.
    let late = CommunicationId::new();
    let published = CatalogueEvent::CommunicationPublished {
        communication: late,
        kind: Kind::Notice,
        number: None,
        title: "Gita di fine anno".into(),
        body: "Al mare.".into(),
        audience: Audience {
            groups: BTreeSet::from([Group::Families]),
            classes: BTreeSet::from([w.c1]),
        },
        attachments: Vec::new(),
        consent_deadline: Some(date!(2026 - 06 - 29)),
        date: date!(2026 - 06 - 01),
        author: w.person(Role::Principal),
    };
    w.store
        .append(AppendRequest {
            guards: Vec::new(),
            school: w.a,
            stream: StreamId::parse(CATALOGUE_STREAM).unwrap(),
            expected: ExpectedVersion::Any,
            events: vec![NewEvent::new(
                EventType::parse(published.type_name()).unwrap(),
                published.data(),
                time::OffsetDateTime::now_utc(),
            )],
            metadata: CommandMetadata::by(w.person(Role::Principal), Role::Principal),
            idempotency_key: None,
            command_digest: None,
        })
        .await
        .unwrap();
    c.refuse(
        "CommunicationError::DeadlinePassed",
        post(
            &format!("{communications}/{late}/consents"),
            &guardian,
            given(w.x),
        ),
        409,
        "il termine per l'adesione è scaduto",
    )
    .await;

    c.finish(9);
}

#[tokio::test]
async fn sqlite_communication_rejections_answer_their_reason_and_write_nothing() {
    communication_refusals(World::sqlite(RateLimit::default()).await).await;
}

#[tokio::test]
async fn postgres_communication_rejections_answer_their_reason_and_write_nothing() {
    communication_refusals(World::postgres(RateLimit::default()).await).await;
}

/// The directory: people and roles, guardian links, classes, assignments, enrolments,
/// timetables, transfers and withdrawals, coordinators, exemptions, subjects, settings.
async fn directory_refusals(w: World) {
    let (secretary, principal) = (w.token(Role::Secretary), w.token(Role::Principal));
    let (teacher, guardian) = (w.person(Role::Teacher), w.person(Role::Guardian));
    let s = format!("/schools/{}", w.a);
    let mut c = Checker::new(&w);

    // People and roles.
    c.refuse(
        "DirectoryError::UnknownPerson",
        post(
            &format!("{s}/people/{}/roles", Uuid::now_v7()),
            &secretary,
            json!({"role": "teacher"}),
        ),
        404,
        "persona sconosciuta",
    )
    .await;
    c.refuse(
        "DirectoryError::NotAPersonRole (registered)",
        post(
            &format!("{s}/people"),
            &principal,
            json!({"fiscal_code": w.code().as_str(), "family_name": "Nuovo",
                "given_name": "Sistema", "role": "system"}),
        ),
        422,
        "ruolo non assegnabile a una persona",
    )
    .await;
    c.refuse(
        "DirectoryError::NotAPersonRole (granted)",
        post(
            &format!("{s}/people/{teacher}/roles"),
            &principal,
            json!({"role": "system"}),
        ),
        422,
        "ruolo non assegnabile a una persona",
    )
    .await;
    c.refuse(
        "DirectoryError::RoleHeld",
        post(
            &format!("{s}/people/{teacher}/roles"),
            &secretary,
            json!({"role": "teacher"}),
        ),
        409,
        "la persona ha già questo ruolo",
    )
    .await;
    c.refuse(
        "DirectoryError::RoleNotHeld",
        delete(&format!("{s}/people/{guardian}/roles/teacher"), &secretary),
        409,
        "la persona non ha questo ruolo",
    )
    .await;
    c.refuse(
        "DirectoryError::BadName",
        post(
            &format!("{s}/people"),
            &secretary,
            json!({"fiscal_code": w.code().as_str(), "family_name": " ",
                "given_name": "Carla", "role": "guardian"}),
        ),
        422,
        "nome mancante",
    )
    .await;

    // Guardian links.
    c.refuse(
        "DirectoryError::AlreadyLinked",
        post(
            &format!("{s}/students/{}/guardians", w.x),
            &secretary,
            json!({ "guardian": guardian }),
        ),
        409,
        "il genitore/tutore è già collegato a questo studente",
    )
    .await;
    c.refuse(
        "DirectoryError::NotLinked",
        delete(
            &format!("{s}/students/{}/guardians/{guardian}", w.y),
            &secretary,
        ),
        409,
        "il genitore/tutore non è collegato a questo studente",
    )
    .await;
    c.refuse(
        "DirectoryError::NotGuardianAndStudent",
        post(
            &format!("{s}/students/{}/guardians", w.x),
            &secretary,
            json!({ "guardian": teacher }),
        ),
        422,
        "il collegamento richiede un genitore/tutore e uno studente",
    )
    .await;

    // Classes, assignments, enrolments.
    c.refuse(
        "DirectoryError::ClassNameTaken",
        post(&format!("{s}/classes"), &secretary, json!({"name": "1a"})),
        409,
        "esiste già una classe con questo nome",
    )
    .await;
    c.refuse(
        "DirectoryError::UnknownClass",
        post(
            &format!("{s}/classes/{}/teachers", Uuid::now_v7()),
            &secretary,
            json!({"teacher": teacher, "subject": "Storia"}),
        ),
        404,
        "classe sconosciuta",
    )
    .await;
    let teachers = format!("{s}/classes/{}/teachers", w.c1);
    c.refuse(
        "DirectoryError::NotATeacher",
        post(
            &teachers,
            &secretary,
            json!({"teacher": guardian, "subject": "Storia"}),
        ),
        422,
        "la persona non è un docente",
    )
    .await;
    c.refuse(
        "DirectoryError::AlreadyAssigned",
        post(
            &teachers,
            &secretary,
            json!({"teacher": teacher, "subject": "Matematica"}),
        ),
        409,
        "il docente ha già questa cattedra",
    )
    .await;
    c.refuse(
        "DirectoryError::NotAStudent",
        post(
            &format!("{s}/classes/{}/students", w.c1),
            &secretary,
            json!({ "student": guardian }),
        ),
        422,
        "la persona non è uno studente",
    )
    .await;
    c.refuse(
        "DirectoryError::AlreadyEnrolled",
        post(
            &format!("{s}/classes/{}/students", w.c2),
            &secretary,
            json!({"student": w.x}),
        ),
        409,
        "lo studente è già iscritto a una classe",
    )
    .await;

    // Timetables.
    let hour = |number: u8, start: &str, end: &str| {
        json!({"weekday": "monday", "number": number, "start": start, "end": end,
            "subject": "Matematica"})
    };
    let timetable = format!("{s}/classes/{}/timetable", w.c1);
    for (what, hours, says) in [
        (
            "two first hours",
            json!([hour(1, "08:00", "09:00"), hour(1, "09:00", "10:00")]),
            "si sovrappongono o hanno lo stesso numero",
        ),
        (
            "backwards",
            json!([hour(1, "09:00", "08:00")]),
            "finisce prima di cominciare",
        ),
        (
            "hour 0",
            json!([hour(0, "08:00", "09:00")]),
            "ogni ora ha un numero da 1",
        ),
    ] {
        c.refuse(
            &format!("DirectoryError::Timetable ({what})"),
            put(&timetable, &secretary, json!({ "hours": hours })),
            422,
            says,
        )
        .await;
    }

    // Transfers, withdrawals, coordinators.
    let unenrolled = w.register(w.a, Role::Student).await;
    c.refuse(
        "DirectoryError::NotEnrolled",
        post(
            &format!("{s}/students/{unenrolled}/transfer"),
            &secretary,
            json!({"class": w.c1}),
        ),
        409,
        "lo studente non è iscritto a nessuna classe",
    )
    .await;
    c.refuse(
        "DirectoryError::SameClass",
        post(
            &format!("{s}/students/{}/transfer", w.x),
            &secretary,
            json!({"class": w.c1}),
        ),
        409,
        "lo studente è già in questa classe",
    )
    .await;
    c.refuse(
        "DirectoryError::Reason",
        post(
            &format!("{s}/students/{}/withdrawal", w.x),
            &secretary,
            json!({"reason": "   "}),
        ),
        422,
        "motivo mancante o troppo lungo",
    )
    .await;
    c.refuse(
        "DirectoryError::NotTheClassTeacher",
        put(
            &format!("{s}/classes/{}/coordinator", w.c2),
            &secretary,
            json!({ "teacher": teacher }),
        ),
        422,
        "il coordinatore deve essere un docente della classe",
    )
    .await;

    // Exemptions.
    let exemptions = format!("{s}/students/{}/exemptions", w.x);
    c.ok(post(&exemptions, &secretary, json!({"subject": "Arte"})))
        .await;
    c.refuse(
        "DirectoryError::AlreadyExempt",
        post(&exemptions, &secretary, json!({"subject": "Arte"})),
        409,
        "lo studente è già esonerato da questa materia",
    )
    .await;
    c.refuse(
        "DirectoryError::NotExempt",
        delete(&format!("{exemptions}/Storia"), &secretary),
        409,
        "lo studente non è esonerato da questa materia",
    )
    .await;

    // Subjects and settings.
    c.refuse(
        "DirectoryError::SubjectExists",
        post(
            &format!("{s}/subjects"),
            &secretary,
            json!({"name": "Arte", "scale": "numeric"}),
        ),
        409,
        "la materia è già definita",
    )
    .await;
    c.refuse(
        "DirectoryError::BadDueDays",
        put(
            &format!("{s}/settings/justifications"),
            &secretary,
            json!({"adults_justify_themselves": true, "due_within_school_days": 31}),
        ),
        422,
        "il termine per giustificare va da 1 a 30 giorni",
    )
    .await;

    c.finish(25);
}

#[tokio::test]
async fn sqlite_directory_rejections_answer_their_reason_and_write_nothing() {
    directory_refusals(World::sqlite(RateLimit::default()).await).await;
}

#[tokio::test]
async fn postgres_directory_rejections_answer_their_reason_and_write_nothing() {
    directory_refusals(World::postgres(RateLimit::default()).await).await;
}
