//! A school set up and a school day run through the API alone, with the real binary, on the
//! embedded SQLite default and on PostgreSQL: the first principal from the command line, then
//! only HTTP calls, as an office, a teacher and a family would make them; the family view
//! follows the writes within moments (its projector in-process on SQLite, a process of its own on
//! PostgreSQL); then the class's first scrutinio is taken through open, deliberation, close,
//! publication and reopening, and the family sees and prints the report card.

use registro_domain::{FiscalCode, SchoolId};
use registro_testkit::TempDir;
use registro_testkit::pg::TestDb;
use serde_json::{Value, json};

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::support::{PATIENCE, Server, add_principal, registro, run, stderr, stdout};

/// A synthetic fiscal code (surname XXX, name YYY, "born" in Z999, which does not exist).
fn code(date: &str) -> FiscalCode {
    FiscalCode::with_check_character(&format!("XXXYYY{date}Z999")).unwrap()
}

struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Client {
    async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(body) = &body {
            request = request.json(body);
        }
        let r = request.send().await.unwrap();
        let status = r.status();
        let text = r.text().await.unwrap();
        assert!(status.is_success(), "{method} {path}: {status} {text}");
        serde_json::from_str(&text).unwrap()
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }

    async fn put(&self, path: &str, body: Value) -> Value {
        self.send(reqwest::Method::PUT, path, Some(body)).await
    }

    async fn get(&self, path: &str) -> Value {
        self.send(reqwest::Method::GET, path, None).await
    }
}

/// The latest Monday-to-Friday day up to today (Italian time) in the current school
/// year (from 1 September), if there is one: not when today is a weekend 1 or 2 September.
fn latest_weekday_of_this_school_year() -> Option<time::Date> {
    use time::{Month, Weekday};
    let today = registro_domain::calendar::italian_date(time::OffsetDateTime::now_utc());
    let start_year = if today.month() >= Month::September {
        today.year()
    } else {
        today.year() - 1
    };
    let first = time::Date::from_calendar_date(start_year, Month::September, 1).unwrap();
    let weekend = |d: time::Date| matches!(d.weekday(), Weekday::Saturday | Weekday::Sunday);
    let mut day = today;
    while weekend(day) {
        day = day.previous_day().filter(|d| *d >= first)?;
    }
    Some(day)
}

/// Runs the day against a server started with `storage` (the data directory holds the local
/// token issuer's key in both cases); the school's id.
pub async fn a_school_day(storage: &[&str], dir: &str) -> SchoolId {
    let school = SchoolId::new();
    let s = format!("/schools/{school}");
    let principal_code = code("66A41");
    add_principal(school, principal_code.as_str(), dir, storage);
    let mut serve_args = vec!["--data-dir", dir];
    serve_args.extend(storage);
    let server = Server::start(&serve_args).await;
    let client = |code: &FiscalCode| {
        let mut args = vec!["token", "--school"];
        let school = school.to_string();
        args.extend([
            school.as_str(),
            "--fiscal-code",
            code.as_str(),
            "--data-dir",
            dir,
        ]);
        let out = run(&args);
        assert!(out.status.success(), "{}", stderr(&out));
        Client {
            http: reqwest::Client::new(),
            base: server.base.clone(),
            token: stdout(&out).trim().to_owned(),
        }
    };
    let principal = client(&principal_code);

    // The office: a secretary, then the people of one class, its year and its timetable.
    let register = |fiscal: &FiscalCode, family: &str, given: &str, role: &str| {
        json!({"fiscal_code": fiscal.as_str(), "family_name": family, "given_name": given,
            "role": role})
    };
    principal
        .post(
            &format!("{s}/people"),
            register(&code("70B01"), "Segreteria", "Sara", "secretary"),
        )
        .await;
    let office = client(&code("70B01"));
    let teacher_id = office
        .post(
            &format!("{s}/people"),
            register(&code("78C45"), "Russo", "Giulia", "teacher"),
        )
        .await["id"]
        .clone();
    let guardian_id = office
        .post(
            &format!("{s}/people"),
            register(&code("75D10"), "Ferrari", "Paolo", "guardian"),
        )
        .await["id"]
        .clone();
    let mut student = register(&code("12E50"), "Ferrari", "Sofia", "student");
    student["birth_date"] = json!("2012-05-10");
    let student_id = office.post(&format!("{s}/people"), student).await["id"].clone();
    for subject in ["Matematica", "Italiano", "Storia", "Inglese", "Arte"] {
        office
            .post(
                &format!("{s}/subjects"),
                json!({"name": subject, "scale": "numeric"}),
            )
            .await;
    }
    let subjects = office.get(&format!("{s}/subjects")).await;
    assert_eq!(subjects.as_array().unwrap().len(), 5);
    let class = office
        .post(&format!("{s}/classes"), json!({"name": "1A"}))
        .await["id"]
        .clone();
    let class = class.as_str().unwrap();
    office
        .post(
            &format!("{s}/classes/{class}/teachers"),
            json!({"teacher": teacher_id, "subject": "Matematica"}),
        )
        .await;
    office
        .post(
            &format!("{s}/classes/{class}/students"),
            json!({"student": student_id}),
        )
        .await;
    let student_id = student_id.as_str().unwrap();
    office
        .post(
            &format!("{s}/students/{student_id}/guardians"),
            json!({"guardian": guardian_id}),
        )
        .await;
    office
        .put(
            &format!("{s}/years/2025"),
            json!({"terms": [
                {"name": "trimestre", "start": "2025-09-15", "end": "2025-12-20"},
                {"name": "pentamestre", "start": "2026-01-07", "end": "2026-06-10"},
            ]}),
        )
        .await;
    let mut hours = Vec::new();
    for day in ["monday", "tuesday", "wednesday", "thursday", "friday"] {
        for (n, subject) in (1..).zip(["Matematica", "Italiano", "Storia", "Inglese", "Arte"]) {
            hours.push(json!({"weekday": day, "number": n, "subject": subject,
                "start": format!("{:02}:00", 7 + n), "end": format!("{:02}:00", 8 + n)}));
        }
    }
    office
        .put(
            &format!("{s}/classes/{class}/timetable"),
            json!({ "hours": hours }),
        )
        .await;

    // The day, Monday 6 October 2025: the student comes in at 9:40; the teacher gives a grade.
    let teacher = client(&code("78C45"));
    let record = format!("{s}/students/{student_id}/years/2025");
    let late = teacher
        .post(
            &format!("{record}/attendance"),
            json!({"date": "2025-10-06", "kind": "late_entry", "at": "09:40"}),
        )
        .await;
    teacher
        .post(
            &format!("{record}/grades"),
            json!({"subject": "Matematica", "kind": "oral", "mark": "7½", "date": "2025-10-06"}),
        )
        .await;

    // The family justifies the late entry; the teacher accepts it.
    let family = client(&code("75D10"));
    let late = late["id"].as_str().unwrap();
    family
        .post(
            &format!("{record}/attendance/{late}/justification"),
            json!({"category": "transport", "text": "sciopero dei treni"}),
        )
        .await;
    teacher
        .post(
            &format!("{record}/attendance/{late}/justification/decision"),
            json!({"accept": true}),
        )
        .await;

    // The teacher signs the first hour (mathematics) of the latest school day: lessons are
    // signed in the current school year, on the server's clock.
    if let Some(lesson_day) = latest_weekday_of_this_school_year() {
        let signed = teacher
            .post(
                &format!("{s}/classes/{class}/lessons"),
                json!({"date": lesson_day.to_string(), "hour": 1, "topic": "Le frazioni"}),
            )
            .await;
        assert!(signed["position"].as_u64().unwrap() > 0);
        let day = teacher
            .get(&format!("{s}/classes/{class}/days/{lesson_day}"))
            .await;
        assert_eq!(day["lessons"][0]["topic"], "Le frazioni");
        assert_eq!(day["lessons"][0]["subject"], "Matematica");
    } else {
        // A weekend at the very start of the year: no lesson has happened yet to sign, and
        // tomorrow's cannot be signed in advance.
        let tomorrow = (time::OffsetDateTime::now_utc() + time::Duration::days(1)).date();
        let refused = reqwest::Client::new()
            .post(format!("{}{s}/classes/{class}/lessons", teacher.base))
            .bearer_auth(&teacher.token)
            .json(&json!({"date": tomorrow.to_string(), "hour": 1, "topic": "Le frazioni"}))
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 422);
    }

    // The principal publishes a circular to the families with a PDF attached; the family
    // finds it, downloads the attachment and confirms they read it (presa visione).
    let pdf = b"%PDF-1.4\n% circolare\n%%EOF\n".to_vec();
    let upload = reqwest::Client::new()
        .post(format!("{}{s}/attachments", principal.base))
        .bearer_auth(&principal.token)
        .header("content-type", "application/pdf")
        .body(pdf.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(upload.status(), 201);
    let hash = upload.json::<Value>().await.unwrap()["hash"].clone();
    let circular = principal
        .post(
            &format!("{s}/communications"),
            json!({"kind": "circular", "title": "Ricevimento dei genitori",
                "body": "I docenti ricevono su prenotazione.",
                "audience": {"groups": ["families"]},
                "attachments": [{"hash": hash, "name": "calendario.pdf"}]}),
        )
        .await;
    let circular = circular["id"].as_str().unwrap();
    let inbox = family.get(&format!("{s}/communications")).await;
    assert_eq!(inbox[0]["title"], "Ricevimento dei genitori");
    assert_eq!(inbox[0]["number"], 1);
    assert_eq!(inbox[0]["acknowledged_at"], Value::Null);
    let hash = hash.as_str().unwrap();
    let file = reqwest::Client::new()
        .get(format!(
            "{}{s}/communications/{circular}/attachments/{hash}",
            family.base
        ))
        .bearer_auth(&family.token)
        .send()
        .await
        .unwrap();
    assert_eq!(file.status(), 200);
    assert_eq!(file.bytes().await.unwrap().to_vec(), pdf);
    family
        .send(
            reqwest::Method::POST,
            &format!("{s}/communications/{circular}/receipt"),
            None,
        )
        .await;
    let read = principal
        .get(&format!("{s}/communications/{circular}"))
        .await;
    assert_eq!(read["replies"]["recipients"], 1);
    assert_eq!(read["replies"]["receipts"][0]["person"], guardian_id);

    // The family view, built by the projectors (in-process on SQLite, processes of their own
    // on PostgreSQL), shows the day within moments of the writes: the record of 2025/26, and
    // the circular in the school year it was published in (today's).
    let this_year = registro_domain::calendar::SchoolYear::of(
        registro_domain::calendar::italian_date(time::OffsetDateTime::now_utc()),
    )
    .start_year();
    let overview = format!("{record}/family");
    let now = format!("{s}/students/{student_id}/years/{this_year}/family");
    let deadline = Instant::now() + PATIENCE;
    let (view, current) = loop {
        let view = family.get(&overview).await;
        let current = family.get(&now).await;
        let caught_up = view["subjects"][0]["latest"] == "7½"
            && view["attendance"]["late_entries"] == 1
            && view["attendance"]["to_justify"] == 0
            && current["communications"]["total"] == 1
            && current["communications"]["unread"] == 0;
        if caught_up {
            break (view, current);
        }
        assert!(
            Instant::now() < deadline,
            "the family view did not catch up: {view} {current}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(view["subjects"][0]["averages"][0]["average"], "7.50");
    assert_eq!(view["attendance"]["missed_hours"], 2);
    let entries = family.get(&format!("{overview}/attendance")).await;
    assert_eq!(entries["items"][0]["justification"], "accepted");
    let circulars = family.get(&format!("{now}/communications")).await;
    assert_eq!(circulars["items"][0]["title"], "Ricevimento dei genitori");
    assert_eq!(circulars["items"][0]["read_by"], json!([guardian_id]));
    assert_eq!(current["communications"]["consents_pending"], 0);

    // The family reads it all, and sees who read their child's record.
    let grades = family.get(&format!("{record}/grades")).await;
    assert_eq!(grades["grades"][0]["mark"], "7½");
    assert_eq!(grades["averages"][0]["average"], "7.50");
    let attendance = family.get(&format!("{record}/attendance")).await;
    assert_eq!(attendance["entries"][0]["hours"], json!([1, 2]));
    assert_eq!(
        attendance["entries"][0]["justification"]["state"],
        "accepted"
    );
    assert_eq!(attendance["missed_hours"], 2);
    assert_eq!(attendance["annual_hours"], 825);
    teacher.get(&format!("{s}/students/{student_id}")).await;
    let log = family
        .get(&format!("{s}/students/{student_id}/access-log"))
        .await;
    assert_eq!(log["entries"][0]["reader"]["family_name"], "Russo");
    assert_eq!(log["entries"][0]["view"], "student.record");

    // The first term's scrutinio: the class council opens it, finds the proposal pre-filled
    // from the average in the scrutiny report, deliberates, closes and publishes; the family
    // finds the report card and prints it; the principal reopens it, which withdraws it.
    let principal_id = principal.get(&format!("{s}/me")).await["person"]["id"].clone();
    let scrutini = format!("{s}/classes/{class}/years/2025/scrutini");
    let opened = principal
        .post(&scrutini, json!({"term": 1, "level": "lower_secondary"}))
        .await;
    let report = teacher
        .get(&format!("{scrutini}/1?min_position={}", opened["position"]))
        .await;
    let line = &report["students"][0];
    assert_eq!(line["student"], student_id, "{report}");
    assert_eq!(
        (
            &line["subjects"][0]["average"],
            &line["subjects"][0]["proposal"]
        ),
        (&json!("7.50"), &json!("8")),
        "{report}"
    );
    assert_eq!(line["absence_hours"], 2, "{report}");
    principal
        .post(
            &format!("{scrutini}/1/session"),
            json!({"date": "2025-12-22", "attendees": [principal_id, teacher_id]}),
        )
        .await;
    principal
        .post(
            &format!("{scrutini}/1/deliberations"),
            json!({"student": student_id, "grades": {"Matematica": "8"}, "conduct": "9"}),
        )
        .await;
    principal
        .post(&format!("{scrutini}/1/closure"), json!(null))
        .await;
    let published = principal
        .post(&format!("{scrutini}/1/publication"), json!(null))
        .await;
    let closed = principal
        .get(&format!(
            "{scrutini}/1?min_position={}",
            published["position"]
        ))
        .await;
    assert_eq!(
        (&closed["status"], &closed["published"]),
        (&json!("closed"), &json!(true)),
        "{closed}"
    );
    assert_eq!(closed["students"][0]["subjects"][0]["final_grade"], "8");
    let cards = family
        .get(&format!(
            "{overview}/report_cards?min_position={}",
            published["position"]
        ))
        .await;
    assert_eq!(
        (&cards["items"][0]["grades"], &cards["items"][0]["conduct"]),
        (&json!({"Matematica": "8"}), &json!(9)),
        "{cards}"
    );
    let page = reqwest::Client::new()
        .get(format!("{}{record}/report-cards/1", family.base))
        .bearer_auth(&family.token)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        page.text()
            .await
            .unwrap()
            .contains("<td>Matematica</td><td>8</td>")
    );
    let reopened = principal
        .post(
            &format!("{scrutini}/1/reopening"),
            json!({"reason": "errore materiale"}),
        )
        .await;
    let cards = family
        .get(&format!(
            "{overview}/report_cards?min_position={}",
            reopened["position"]
        ))
        .await;
    assert_eq!(
        cards["items"],
        json!([]),
        "withdrawn while reopened: {cards}"
    );
    assert!(server.terminate().await.success());

    // And the day's log verifies.
    let mut args = vec!["verify", "--school"];
    let school = school.to_string();
    args.extend([school.as_str(), "--data-dir", dir]);
    args.extend(storage);
    let verified = run(&args);
    assert!(verified.status.success(), "{}", stderr(&verified));
    assert!(
        stdout(&verified).starts_with("OK "),
        "{}",
        stdout(&verified)
    );
    SchoolId::from_uuid(school.parse().unwrap())
}

#[tokio::test]
async fn a_school_day_through_the_api_on_sqlite() {
    let data = TempDir::new();
    a_school_day(&[], data.path().to_str().unwrap()).await;
}

#[tokio::test]
async fn a_school_day_through_the_api_on_postgres() {
    let db = TestDb::new().await;
    let key = registro_store::MasterKey::generate().to_base64();
    // The projectors run as processes of their own, each under the role that owns the schema
    // (they create their tables on their first start); the API connects as an ordinary role,
    // granted the tables once they exist.
    let projectors: Vec<Child> = ["family", "audit", "scrutiny"]
        .into_iter()
        .map(|name| {
            registro()
                .args([
                    "project",
                    name,
                    "--database-url",
                    db.url(),
                    "--master-key",
                    &key,
                ])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    let admin = db.client().await;
    let deadline = Instant::now() + PATIENCE;
    loop {
        // Every table of both, all their steps applied.
        let tables: Vec<&str> = registro_projection_family::TABLES
            .iter()
            .chain(registro_projection_scrutiny::TABLES)
            .chain(&["audit_entries", "audit_subjects"])
            .copied()
            .collect();
        let ready: bool = admin
            .query_one(
                "SELECT bool_and(to_regclass(t) IS NOT NULL) FROM unnest($1::text[]) AS t",
                &[&tables],
            )
            .await
            .unwrap()
            .get(0);
        if ready {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the projectors did not prepare their tables"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let url = db.app_url().await;
    let data = TempDir::new();
    a_school_day(
        &["--database-url", &url, "--master-key", &key],
        data.path().to_str().unwrap(),
    )
    .await;
    for mut projector in projectors {
        let pid = projector.id().to_string();
        let term = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status();
        assert!(term.unwrap().success());
        assert!(projector.wait().unwrap().success(), "a projector failed");
    }
}
