//! A generated world for authorisation tests: two schools, a person of each role in school A,
//! two classes and two students there, and a class and a student in school B, all registered
//! through the real directory commands on a real store; and an API serving it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use registro_api::ProjectionConfig;
use registro_api::auth::LocalIssuer;
use registro_api::directory::execute_as_system;
use registro_api::ratelimit::RateLimit;
use registro_domain::calendar::{SchoolYear, Term};
use registro_domain::directory::DirectoryCommand;
use registro_domain::grade::Scale;
use registro_domain::{ClassId, FiscalCode, PersonId, Role, SchoolId};
use registro_projector::Projection as _;
use registro_store::sqlite::SqliteStore;
use registro_store::{EventStore, MasterKey, ProjectionSchema};
use registro_testkit::TempDir;
use registro_testkit::pg::TestDb;
use serde_json::Value;
use tokio::sync::oneshot;

/// The roles a person can hold, in the order of the policy table's columns.
pub const ROLES: [Role; 7] = Role::PERSON_ROLES;

const MONTHS: &[u8] = b"ABCDEHLMPRST";

/// The world.
pub struct World {
    pub store: Arc<dyn EventStore>,
    pub issuer: LocalIssuer,
    pub base: String,
    pub client: reqwest::Client,
    /// School A, where every caller is registered.
    pub a: SchoolId,
    /// School B, where none of them is.
    pub b: SchoolId,
    /// A's people by role; the student is `x`.
    pub people: BTreeMap<Role, (PersonId, FiscalCode)>,
    /// The teacher's class in A, where `x` is enrolled.
    pub c1: ClassId,
    /// Another class of A, where `y` is enrolled.
    pub c2: ClassId,
    /// A class of B, where `z` is enrolled.
    pub c3: ClassId,
    /// The guardian's child, the teacher's pupil, the student caller.
    pub x: PersonId,
    /// Another student of A: nobody's child, in a class the teacher does not teach.
    pub y: PersonId,
    /// A student of B.
    pub z: PersonId,
    /// A teacher of B.
    pub teacher_b: PersonId,
    codes: AtomicU32,
    _stop: oneshot::Sender<()>,
    _dir: Option<TempDir>,
    _db: Option<TestDb>,
}

/// The projections the API reads, whose tables every world prepares.
fn projections() -> [ProjectionSchema; 3] {
    [
        registro_projection_audit::AuditTrail.schema(),
        registro_projection_family::FamilyView.schema(),
        registro_projection_scrutiny::ScrutinyReport.schema(),
    ]
}

/// The read models the API knows by default: those it reads.
pub fn read_models() -> ProjectionConfig {
    ProjectionConfig::new(projections().map(|p| p.name))
}

impl World {
    /// The world on a SQLite file of its own.
    pub async fn sqlite(limit: RateLimit) -> Self {
        Self::sqlite_with(limit, read_models(), &[]).await
    }

    /// The world on a SQLite file of its own, the API knowing the read models of `config`; the
    /// projections the API reads and `more` are prepared.
    pub async fn sqlite_with(
        limit: RateLimit,
        config: ProjectionConfig,
        more: &[ProjectionSchema],
    ) -> Self {
        let dir = TempDir::new();
        let store = SqliteStore::open(&dir.path().join("registro.db"), MasterKey::generate())
            .await
            .unwrap();
        store.migrate().await.unwrap();
        for schema in projections().iter().chain(more) {
            store.prepare_projection(schema).await.unwrap();
        }
        Self::new(Arc::new(store), limit, config, Some(dir), None).await
    }

    /// The world on a PostgreSQL database of its own, connected as an ordinary role, so that
    /// row-level security holds every query the API makes.
    pub async fn postgres(limit: RateLimit) -> Self {
        Self::postgres_with(limit, read_models(), &[]).await
    }

    /// The world on PostgreSQL, the API knowing the read models of `config`; the projections
    /// the API reads and `more` (projections without tables of their own) are prepared.
    pub async fn postgres_with(
        limit: RateLimit,
        config: ProjectionConfig,
        more: &[ProjectionSchema],
    ) -> Self {
        let db = TestDb::new().await;
        // The ordinary role may not create tables: the administrator prepares the projections'
        // (as the role that ran the migrations does in production) and grants them.
        let admin = db.store().await;
        for schema in projections() {
            admin.prepare_projection(&schema).await.unwrap();
        }
        // The application's store first: it creates the role (on a fresh server, the first
        // test to get here would otherwise grant to a role that does not exist yet).
        let store = db.app_store_with_key(MasterKey::generate()).await;
        let tables = projections()
            .iter()
            .flat_map(|p| p.tables.iter().copied())
            .collect::<Vec<_>>()
            .join(", ");
        db.client()
            .await
            .batch_execute(&format!(
                "GRANT SELECT, INSERT, UPDATE, DELETE ON {tables} TO {}",
                registro_testkit::pg::APP_ROLE
            ))
            .await
            .unwrap();
        assert_eq!(store.row_security().await.unwrap(), Some(true));
        for schema in more {
            store.prepare_projection(schema).await.unwrap();
        }
        Self::new(Arc::new(store), limit, config, None, Some(db)).await
    }

    async fn new(
        store: Arc<dyn EventStore>,
        limit: RateLimit,
        config: ProjectionConfig,
        dir: Option<TempDir>,
        db: Option<TestDb>,
    ) -> Self {
        let issuer = LocalIssuer::generate();
        let (base, stop) = crate::spawn_with(Arc::clone(&store), &issuer, limit, config).await;
        let mut w = Self {
            store,
            issuer,
            base,
            client: reqwest::Client::new(),
            a: SchoolId::new(),
            b: SchoolId::new(),
            people: BTreeMap::new(),
            c1: ClassId::new(),
            c2: ClassId::new(),
            c3: ClassId::new(),
            x: PersonId::new(),
            y: PersonId::new(),
            z: PersonId::new(),
            teacher_b: PersonId::new(),
            codes: AtomicU32::new(0),
            _stop: stop,
            _dir: dir,
            _db: db,
        };
        for role in ROLES {
            let code = w.code();
            let id = w.register_with_code(w.a, role, code.clone()).await;
            w.people.insert(role, (id, code));
        }
        w.x = w.people[&Role::Student].0;
        w.y = w.register(w.a, Role::Student).await;
        w.z = w.register(w.b, Role::Student).await;
        w.teacher_b = w.register(w.b, Role::Teacher).await;
        w.c1 = w.class(w.a, "1A").await;
        w.c2 = w.class(w.a, "1B").await;
        w.c3 = w.class(w.b, "1A").await;
        let teacher = w.person(Role::Teacher);
        let guardian = w.person(Role::Guardian);
        let (a, b) = (w.a, w.b);
        for school in [a, b] {
            for subject in [
                "Matematica",
                "Italiano",
                "Storia",
                "Inglese",
                "Scienze",
                "Arte",
            ] {
                w.define(school, subject, Scale::Numeric).await;
            }
            w.define(school, "Religione", Scale::Judgement).await;
        }
        w.run(a, assign(teacher, w.c1)).await;
        w.run(b, assign(w.teacher_b, w.c3)).await;
        w.enrol(a, w.x, w.c1).await;
        w.enrol(a, w.y, w.c2).await;
        w.enrol(b, w.z, w.c3).await;
        w.link(a, guardian, w.x).await;
        let hours: Vec<registro_domain::timetable::LessonHour> =
            serde_json::from_value(timetable()["hours"].clone()).unwrap();
        for class in [w.c1, w.c2] {
            w.run(
                a,
                DirectoryCommand::SetTimetable {
                    class,
                    hours: hours.clone(),
                },
            )
            .await;
        }
        w.run(
            a,
            DirectoryCommand::PlanSchoolYear {
                year: SchoolYear::starting(2025),
                terms: vec![
                    Term {
                        name: "trimestre".into(),
                        start: time::macros::date!(2025 - 09 - 15),
                        end: time::macros::date!(2025 - 12 - 20),
                    },
                    Term {
                        name: "pentamestre".into(),
                        start: time::macros::date!(2026 - 01 - 07),
                        end: time::macros::date!(2026 - 06 - 10),
                    },
                ],
                holidays: vec![],
            },
        )
        .await;
        w
    }

    /// A new synthetic fiscal code, never used in this world.
    pub fn code(&self) -> FiscalCode {
        let n = self.codes.fetch_add(1, Ordering::Relaxed);
        let month = MONTHS[(n / 28 % 12) as usize] as char;
        let date = format!("{:02}{month}{:02}", n / (28 * 12) % 100, n % 28 + 1);
        FiscalCode::with_check_character(&format!("XXXYYY{date}Z999")).unwrap()
    }

    /// Runs a directory command as the software.
    pub async fn run(&self, school: SchoolId, command: DirectoryCommand) {
        execute_as_system(self.store.as_ref(), school, &command)
            .await
            .unwrap();
    }

    /// Registers a new person in `school` with the fiscal code `code`.
    pub async fn register_with_code(
        &self,
        school: SchoolId,
        role: Role,
        code: FiscalCode,
    ) -> PersonId {
        let person = PersonId::new();
        self.run(
            school,
            DirectoryCommand::Register {
                person,
                fiscal_code: code,
                family_name: "Prova".into(),
                given_name: format!("{role}"),
                role,
                birth_date: None,
            },
        )
        .await;
        person
    }

    /// Registers a new person in `school`.
    pub async fn register(&self, school: SchoolId, role: Role) -> PersonId {
        self.register_with_code(school, role, self.code()).await
    }

    /// Defines a subject in `school`.
    pub async fn define(&self, school: SchoolId, subject: &str, scale: Scale) {
        self.run(
            school,
            DirectoryCommand::DefineSubject {
                subject: subject.into(),
                scale,
            },
        )
        .await;
    }

    /// Creates a class in `school`.
    pub async fn class(&self, school: SchoolId, name: &str) -> ClassId {
        let class = ClassId::new();
        self.run(
            school,
            DirectoryCommand::CreateClass {
                class,
                name: name.into(),
            },
        )
        .await;
        class
    }

    /// Enrols `student` in `class`.
    pub async fn enrol(&self, school: SchoolId, student: PersonId, class: ClassId) {
        self.run(school, DirectoryCommand::EnrolStudent { student, class })
            .await;
    }

    /// Links `guardian` to `student`.
    pub async fn link(&self, school: SchoolId, guardian: PersonId, student: PersonId) {
        self.run(school, DirectoryCommand::LinkGuardian { guardian, student })
            .await;
    }

    /// The id of A's person holding `role`.
    pub fn person(&self, role: Role) -> PersonId {
        self.people[&role].0
    }

    /// A gateway-shaped token (no school claim) for A's person holding `role`.
    pub fn token(&self, role: Role) -> String {
        self.issuer
            .issue_with(None, &self.people[&role].1, Duration::from_secs(600))
            .unwrap()
    }

    /// Sends `method path` with `token` and an optional body: JSON, or, for a JSON string, the
    /// string itself as an uploaded file: `application/pdf` when it starts as a PDF does,
    /// `text/csv` otherwise.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> reqwest::Response {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        match body {
            Some(Value::String(text)) => {
                let media_type = if text.starts_with("%PDF-") {
                    "application/pdf"
                } else {
                    "text/csv"
                };
                request = request
                    .header("content-type", media_type)
                    .body(text.clone());
            }
            Some(body) => request = request.json(body),
            None => {}
        }
        request.send().await.unwrap()
    }
}

/// The response's JSON body, after checking its status (the body is shown when it differs).
pub async fn body(r: reqwest::Response, status: u16) -> Value {
    let got = r.status().as_u16();
    let text = r.text().await.unwrap();
    assert_eq!(got, status, "{text}");
    serde_json::from_str(&text).unwrap()
}

/// The body planning school year 2025/26 as the world has it: a trimestre and a pentamestre.
pub fn year_plan() -> Value {
    serde_json::json!({"terms": [
        {"name": "trimestre", "start": "2025-09-15", "end": "2025-12-20"},
        {"name": "pentamestre", "start": "2026-01-07", "end": "2026-06-10"},
    ]})
}

/// A timetable: Monday to Friday, five hours from 8:00, mathematics first.
pub fn timetable() -> Value {
    let subjects = ["Matematica", "Italiano", "Storia", "Inglese", "Scienze"];
    let mut hours = Vec::new();
    for day in ["monday", "tuesday", "wednesday", "thursday", "friday"] {
        for (n, subject) in (1..).zip(subjects) {
            hours.push(serde_json::json!({"weekday": day, "number": n,
                "start": format!("{:02}:00", 7 + n), "end": format!("{:02}:00", 8 + n),
                "subject": subject}));
        }
    }
    serde_json::json!({ "hours": hours })
}

/// A written mathematics grade of `mark` on 6 October 2025.
pub fn grade_body(mark: &str) -> Value {
    serde_json::json!({"subject": "Matematica", "kind": "written", "mark": mark,
        "date": "2025-10-06", "description": "Verifica"})
}

fn assign(teacher: PersonId, class: ClassId) -> DirectoryCommand {
    DirectoryCommand::AssignTeacher {
        teacher,
        class,
        subject: "Matematica".into(),
    }
}
