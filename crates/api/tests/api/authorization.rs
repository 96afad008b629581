//! Authorisation over real HTTP on real stores: the generated matrix of `docs/authorization.md`,
//! bad tokens, the read-access log, idempotent commands, rate limits, an external provider.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use registro_api::ApiDoc;
use registro_api::auth::{LOCAL_AUDIENCE, LOCAL_ISSUER, LocalIssuer};
use registro_api::ratelimit::RateLimit;
use registro_domain::{ClassId, FiscalCode, PersonId, Role, SchoolId};
use reqwest::Method;
use serde_json::{Value, json};
use utoipa::OpenApi as _;

use crate::world::{ROLES, World};

/// The three kinds of target of `docs/authorization.md`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    Own,
    Other,
    Foreign,
}

const TARGETS: [Target; 3] = [Target::Own, Target::Other, Target::Foreign];

/// One row of the policy table: the route and, per role, the status for each target (`None`
/// where the route names no such target).
#[derive(Debug)]
struct Row {
    method: Method,
    path: String,
    expected: Vec<[Option<u16>; 3]>,
}

/// The policy table and the public routes, read from `docs/authorization.md`.
fn policy_table() -> (Vec<Row>, Vec<(Method, String)>) {
    let doc = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/authorization.md"),
    )
    .unwrap();
    let (mut rows, mut public) = (Vec::new(), Vec::new());
    for line in doc.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        let route = cells[0].trim_matches('`');
        if cells.len() != 1 + ROLES.len() && cells[1] != "public" {
            continue; // another table (the access log's)
        }
        let (method, path) = route.split_once(' ').unwrap();
        let method: Method = method.parse().unwrap();
        if cells[1] == "public" {
            public.push((method, path.to_owned()));
            continue;
        }
        let expected = cells[1..]
            .iter()
            .map(|cell| {
                let parts: Vec<Option<u16>> = cell
                    .split('/')
                    .map(|p| match p.trim() {
                        "-" => None,
                        n => Some(n.parse().unwrap_or_else(|_| panic!("{n:?} in {line}"))),
                    })
                    .collect();
                <[Option<u16>; 3]>::try_from(parts).unwrap()
            })
            .collect();
        rows.push(Row {
            method,
            path: path.to_owned(),
            expected,
        });
    }
    (rows, public)
}

/// The detail of a 404 that hides a resource: the same as for an address that does not exist.
const NOTHING_HERE: &str = "There is nothing at this address.";

const NO_LIMIT: RateLimit = RateLimit {
    per_minute: 0,
    burst: 0,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_the_policy_table_holds_for_every_route_role_and_target() {
    the_policy_table_holds(World::sqlite(NO_LIMIT).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_the_policy_table_holds_for_every_route_role_and_target() {
    the_policy_table_holds(World::postgres(NO_LIMIT).await).await;
}

/// Every operation of the OpenAPI document, as `METHOD path`.
fn documented_operations() -> BTreeSet<String> {
    let spec = serde_json::to_value(ApiDoc::openapi()).unwrap();
    let mut ops = BTreeSet::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            ops.insert(format!("{} {path}", method.to_uppercase()));
        }
    }
    ops
}

/// The request that exercises `row` as `role` on `target`: the path and the body, with whatever
/// it needs made fresh first (so that each call can succeed when the policy allows it).
async fn prepare(w: &World, row: &Row, target: Target, role: Role) -> (String, Option<Value>) {
    let school = if target == Target::Foreign { w.b } else { w.a };
    let student = match target {
        Target::Own => w.x,
        Target::Other => w.y,
        Target::Foreign => w.z,
    };
    let class = match target {
        Target::Own => w.c1,
        Target::Other => w.c2,
        Target::Foreign => w.c3,
    };
    let s = format!("/schools/{school}");
    let fresh = w.code();
    match (row.method.as_str(), row.path.as_str()) {
        ("GET", "/schools/{school}/me") => (format!("{s}/me"), None),
        ("POST", "/schools/{school}/people") => (
            format!("{s}/people"),
            Some(
                json!({"fiscal_code": fresh.as_str(), "family_name": "Nuova",
                "given_name": "Persona", "role": "guardian"}),
            ),
        ),
        ("POST", "/schools/{school}/people/{person}/roles") => {
            let person = w.register(school, Role::Guardian).await;
            (
                format!("{s}/people/{person}/roles"),
                Some(json!({"role": "teacher"})),
            )
        }
        ("DELETE", "/schools/{school}/people/{person}/roles/{role}") => {
            let person = w.register(school, Role::Guardian).await;
            w.run(
                school,
                registro_domain::directory::DirectoryCommand::GrantRole {
                    person,
                    role: Role::Teacher,
                },
            )
            .await;
            (format!("{s}/people/{person}/roles/teacher"), None)
        }
        ("POST", "/schools/{school}/students/{student}/guardians") => {
            let guardian = w.register(school, Role::Guardian).await;
            (
                format!("{s}/students/{student}/guardians"),
                Some(json!({"guardian": guardian})),
            )
        }
        ("DELETE", "/schools/{school}/students/{student}/guardians/{guardian}") => {
            let guardian = w.register(school, Role::Guardian).await;
            w.link(school, guardian, student).await;
            (format!("{s}/students/{student}/guardians/{guardian}"), None)
        }
        ("POST", "/schools/{school}/classes") => (
            format!("{s}/classes"),
            Some(json!({"name": format!("Classe {fresh}")})),
        ),
        ("POST", "/schools/{school}/classes/{class}/teachers") => {
            // A new teacher: the callers' own assignments stay as the world made them.
            let teacher = w.register(school, Role::Teacher).await;
            let subject = format!("Materia {fresh}");
            w.define(w.a, &subject, registro_domain::grade::Scale::Numeric)
                .await;
            (
                format!("{s}/classes/{class}/teachers"),
                Some(json!({"teacher": teacher, "subject": subject})),
            )
        }
        ("POST", "/schools/{school}/classes/{class}/students") => {
            let new_student = w.register(school, Role::Student).await;
            (
                format!("{s}/classes/{class}/students"),
                Some(json!({"student": new_student})),
            )
        }
        ("GET", "/schools/{school}/classes/{class}") => (format!("{s}/classes/{class}"), None),
        ("POST", "/schools/{school}/classes/{class}/notes") => (
            format!("{s}/classes/{class}/notes"),
            Some(json!({"kind": "annotation", "text": "Classe agitata", "date": "2025-10-06"})),
        ),
        ("POST", "/schools/{school}/classes/{class}/notes/{note}/annulment") => {
            let note = prepared_class_note(w, target).await;
            (
                format!("{s}/classes/{class}/notes/{note}/annulment"),
                Some(json!({"reason": "scritta per errore"})),
            )
        }
        ("GET", "/schools/{school}/classes/{class}/overdue-justifications") => {
            (format!("{s}/classes/{class}/overdue-justifications"), None)
        }
        ("GET", "/schools/{school}/students/{student}") => {
            (format!("{s}/students/{student}"), None)
        }
        ("GET", "/schools/{school}/students/{student}/access-log") => {
            (format!("{s}/students/{student}/access-log"), None)
        }
        ("GET", "/schools/{school}/students/{student}/personal-data") => {
            (format!("{s}/students/{student}/personal-data"), None)
        }
        ("GET", "/schools/{school}/access-log") => (format!("{s}/access-log"), None),
        ("GET", "/schools/{school}/audit") => (format!("{s}/audit"), None),
        ("GET", "/schools/{school}/students/{student}/audit") => {
            (format!("{s}/students/{student}/audit"), None)
        }
        ("POST", "/schools/{school}/subjects") => (
            format!("{s}/subjects"),
            Some(json!({"name": format!("Materia {fresh}"), "scale": "numeric"})),
        ),
        ("GET", "/schools/{school}/subjects") => (format!("{s}/subjects"), None),
        ("PUT", "/schools/{school}/settings/justifications") => (
            format!("{s}/settings/justifications"),
            Some(json!({"adults_justify_themselves": true, "due_within_school_days": 5})),
        ),
        ("GET", "/schools/{school}/settings/justifications") => {
            (format!("{s}/settings/justifications"), None)
        }
        ("GET", "/schools/{school}/history/students/{student}/years/{year}/family") => (
            format!("{s}/history/students/{student}/years/2025/family?date=2199-12-31"),
            None,
        ),
        ("GET", "/schools/{school}/history/classes/{class}/years/{year}/scrutini/{term}") => {
            // Set up by the principal for those who may read it (the auditors too); the others
            // are refused before, whatever the year.
            let setup = if matches!(role, Role::Principal | Role::Auditor) {
                Role::Principal
            } else {
                Role::Secretary
            };
            let year = scrutiny_at(w, target, setup, class, student, Stage::Open(1)).await;
            (
                format!("{s}/history/classes/{class}/years/{year}/scrutini/1?date=2199-12-31"),
                None,
            )
        }
        ("GET", "/schools/{school}/log") => (format!("{s}/log?from=1&limit=5"), None),
        ("GET", "/schools/{school}/log/streams/{stream}") => {
            (format!("{s}/log/streams/directory"), None)
        }
        ("GET", "/schools/{school}/chain") => (format!("{s}/chain"), None),
        ("POST", "/schools/{school}/retention/run") => (format!("{s}/retention/run"), None),
        ("PUT", "/schools/{school}/settings/retention") => (
            format!("{s}/settings/retention"),
            Some(json!({"years_after": 2})),
        ),
        ("GET", "/schools/{school}/settings/retention") => {
            (format!("{s}/settings/retention"), None)
        }
        ("GET", "/schools/{school}/export") => (format!("{s}/export"), None),
        ("POST", "/schools/{school}/export/keys") => (
            format!("{s}/export/keys"),
            Some(json!({"passphrase": "una passphrase abbastanza lunga"})),
        ),
        ("PUT", "/schools/{school}/settings/scrutini") => (
            format!("{s}/settings/scrutini"),
            Some(json!({"max_subjects_to_recover": 3})),
        ),
        ("GET", "/schools/{school}/settings/scrutini") => (format!("{s}/settings/scrutini"), None),
        ("POST", "/schools/{school}/classes/{class}/lessons") => (
            format!("{s}/classes/{class}/lessons"),
            Some(json!({"date": next_school_day().to_string(), "hour": 1, "topic": "Frazioni"})),
        ),
        ("POST", "/schools/{school}/classes/{class}/substitutions") => (
            format!("{s}/classes/{class}/substitutions"),
            Some(json!({"date": next_school_day().to_string(), "hour": 2,
                "teacher": w.person(Role::Teacher)})),
        ),
        ("POST", "/schools/{school}/classes/{class}/homework") => (
            format!("{s}/classes/{class}/homework"),
            Some(json!({"subject": "Matematica", "text": "Esercizi", "due": "2099-05-20"})),
        ),
        ("POST", "/schools/{school}/classes/{class}/tests") => (
            format!("{s}/classes/{class}/tests"),
            Some(json!({"subject": "Matematica", "date": "2099-05-20"})),
        ),
        ("GET", "/schools/{school}/classes/{class}/days/{date}") => {
            (format!("{s}/classes/{class}/days/2025-10-06"), None)
        }
        ("POST", "/schools/{school}/students/{student}/exemptions") => {
            let subject = format!("Materia {fresh}");
            w.define(w.a, &subject, registro_domain::grade::Scale::Numeric)
                .await;
            (
                format!("{s}/students/{student}/exemptions"),
                Some(json!({ "subject": subject })),
            )
        }
        ("DELETE", "/schools/{school}/students/{student}/exemptions/{subject}") => {
            let subject = format!("Materia{fresh}");
            w.define(school, &subject, registro_domain::grade::Scale::Numeric)
                .await;
            w.run(
                school,
                registro_domain::directory::DirectoryCommand::ExemptFromSubject {
                    student,
                    subject: subject.clone(),
                },
            )
            .await;
            (format!("{s}/students/{student}/exemptions/{subject}"), None)
        }
        ("POST", "/schools/{school}/students/{student}/years/{year}/notes") => (
            format!("{s}/students/{student}/years/2025/notes"),
            Some(
                json!({"kind": "annotation", "text": "Dimentica il materiale",
                "date": "2025-10-06"}),
            ),
        ),
        ("GET", "/schools/{school}/students/{student}/years/{year}/notes") => {
            (format!("{s}/students/{student}/years/2025/notes"), None)
        }
        ("POST", "/schools/{school}/students/{student}/years/{year}/sanctions") => (
            format!("{s}/students/{student}/years/2025/sanctions"),
            Some(json!({"text": "Ammonizione scritta", "date": "2025-10-07"})),
        ),
        ("POST", "/schools/{school}/students/{student}/years/{year}/notes/{note}/annulment") => {
            let note = prepared_note(w, target).await;
            (
                format!("{s}/students/{student}/years/2025/notes/{note}/annulment"),
                Some(json!({"reason": "scritta per errore"})),
            )
        }
        ("POST", "/schools/{school}/enrolments") => (
            format!("{s}/enrolments"),
            Some(Value::String(format!(
                "fiscal_code;family_name;given_name;birth_date;class\n{fresh};Nuovo;Alunno;;1A\n"
            ))),
        ),
        ("POST", "/schools/{school}/attachments") => (
            format!("{s}/attachments"),
            Some(Value::String(format!("%PDF-1.4 allegato {fresh}"))),
        ),
        ("POST", "/schools/{school}/communications") => (
            format!("{s}/communications"),
            Some(json!({"kind": "notice", "title": "Uscita", "body": "Testo",
                "audience": {"groups": ["families"], "classes": [w.c1]}})),
        ),
        ("GET", "/schools/{school}/communications") => (format!("{s}/communications"), None),
        ("GET", "/schools/{school}/communications/{communication}") => {
            let (id, _) = prepared_communication(w, target, false).await;
            (format!("{s}/communications/{id}"), None)
        }
        ("POST", "/schools/{school}/communications/{communication}/withdrawal") => {
            let (id, _) = prepared_communication(w, target, false).await;
            (
                format!("{s}/communications/{id}/withdrawal"),
                Some(json!({"reason": "errore"})),
            )
        }
        ("POST", "/schools/{school}/communications/{communication}/receipt") => {
            let (id, _) = prepared_communication(w, target, false).await;
            (format!("{s}/communications/{id}/receipt"), None)
        }
        ("POST", "/schools/{school}/communications/{communication}/consents") => {
            let (id, _) = prepared_communication(w, target, true).await;
            (
                format!("{s}/communications/{id}/consents"),
                Some(json!({"student": w.x, "consent": "given"})),
            )
        }
        ("GET", "/schools/{school}/communications/{communication}/attachments/{hash}") => {
            let (id, hash) = prepared_communication(w, target, false).await;
            (format!("{s}/communications/{id}/attachments/{hash}"), None)
        }
        ("POST", "/schools/{school}/teachers/{person}/meetings") => {
            let teacher = meeting_teacher(w, target).await.0;
            (
                format!("{s}/teachers/{teacher}/meetings"),
                Some(
                    json!({"date": "2099-10-15", "start": "16:00", "end": "16:30",
                    "capacity": 3}),
                ),
            )
        }
        ("GET", "/schools/{school}/teachers/{person}/meetings") => {
            let teacher = meeting_teacher(w, target).await.0;
            (format!("{s}/teachers/{teacher}/meetings"), None)
        }
        ("POST", "/schools/{school}/teachers/{person}/meetings/{slot}/cancellation") => {
            let (teacher, slot) = meeting_slot(w, target, false).await;
            (
                format!("{s}/teachers/{teacher}/meetings/{slot}/cancellation"),
                Some(json!({"reason": "riunione"})),
            )
        }
        ("POST", "/schools/{school}/teachers/{person}/meetings/{slot}/bookings") => {
            let (teacher, slot) = meeting_slot(w, target, false).await;
            (
                format!("{s}/teachers/{teacher}/meetings/{slot}/bookings"),
                Some(json!({"student": w.x})),
            )
        }
        ("DELETE", "/schools/{school}/teachers/{person}/meetings/{slot}/bookings/{student}") => {
            let (teacher, slot) = meeting_slot(w, target, true).await;
            (
                format!("{s}/teachers/{teacher}/meetings/{slot}/bookings/{}", w.x),
                None,
            )
        }
        ("POST", "/schools/{school}/students/{student}/transfer") => {
            let moving = enrolled_student(w, target).await;
            let to = if target == Target::Own { w.c2 } else { w.c1 };
            (
                format!("{s}/students/{moving}/transfer"),
                Some(json!({"class": to})),
            )
        }
        ("POST", "/schools/{school}/students/{student}/withdrawal") => {
            let leaving = enrolled_student(w, target).await;
            (
                format!("{s}/students/{leaving}/withdrawal"),
                Some(json!({"reason": "nulla osta verso altro istituto"})),
            )
        }
        ("PUT", "/schools/{school}/classes/{class}/coordinator") => {
            let teacher = match target {
                Target::Own => w.person(Role::Teacher),
                Target::Other => {
                    let t = w.register(w.a, Role::Teacher).await;
                    w.run(
                        w.a,
                        registro_domain::directory::DirectoryCommand::AssignTeacher {
                            teacher: t,
                            class: w.c2,
                            subject: "Storia".into(),
                        },
                    )
                    .await;
                    t
                }
                Target::Foreign => w.teacher_b,
            };
            (
                format!("{s}/classes/{class}/coordinator"),
                Some(json!({"teacher": teacher})),
            )
        }
        ("POST", "/schools/{school}/classes/{class}/years/{year}/grades") => (
            format!("{s}/classes/{class}/years/2025/grades"),
            Some(
                json!({"subject": "Matematica", "kind": "written", "date": "2025-10-06",
                "marks": [{"student": student, "mark": "6"}]}),
            ),
        ),
        ("PUT", "/schools/{school}/years/{year}") => {
            (format!("{s}/years/2025"), Some(crate::world::year_plan()))
        }
        ("GET", "/schools/{school}/years/{year}") => (format!("{s}/years/2025"), None),
        ("PUT", "/schools/{school}/classes/{class}/timetable") => (
            format!("{s}/classes/{class}/timetable"),
            Some(crate::world::timetable()),
        ),
        ("GET", "/schools/{school}/classes/{class}/timetable") => {
            (format!("{s}/classes/{class}/timetable"), None)
        }
        ("POST", "/schools/{school}/students/{student}/years/{year}/attendance") => (
            format!("{s}/students/{student}/years/2025/attendance"),
            Some(json!({"date": "2025-10-06", "kind": "early_exit", "at": "12:10"})),
        ),
        ("GET", "/schools/{school}/students/{student}/years/{year}/attendance") => (
            format!("{s}/students/{student}/years/2025/attendance"),
            None,
        ),
        (
            "POST",
            "/schools/{school}/students/{student}/years/{year}/attendance/{entry}/justification",
        ) => {
            let entry = prepared_absence(w, target).await;
            (
                format!("{s}/students/{student}/years/2025/attendance/{entry}/justification"),
                Some(json!({"category": "health", "text": "febbre"})),
            )
        }
        (
            "POST",
            "/schools/{school}/students/{student}/years/{year}/attendance/{entry}/justification/decision",
        ) => {
            let entry = prepared_absence(w, target).await;
            let path =
                format!("{s}/students/{student}/years/2025/attendance/{entry}/justification");
            if target == Target::Own {
                let r = w
                    .call(
                        Method::POST,
                        &path,
                        Some(&w.token(Role::Guardian)),
                        Some(&json!({"category": "family"})),
                    )
                    .await;
                assert_eq!(r.status(), 201);
            }
            (format!("{path}/decision"), Some(json!({"accept": true})))
        }
        (
            "POST",
            "/schools/{school}/students/{student}/years/{year}/attendance/{entry}/cancellation",
        ) => {
            let entry = prepared_absence(w, target).await;
            (
                format!("{s}/students/{student}/years/2025/attendance/{entry}/cancellation"),
                Some(json!({"reason": "registrata per errore"})),
            )
        }
        ("POST", "/schools/{school}/students/{student}/years/{year}/grades") => (
            format!("{s}/students/{student}/years/2025/grades"),
            Some(crate::world::grade_body("7")),
        ),
        ("GET", "/schools/{school}/students/{student}/years/{year}/grades") => {
            (format!("{s}/students/{student}/years/2025/grades"), None)
        }
        ("POST", "/schools/{school}/classes/{class}/years/{year}/scrutini") => {
            let year = scrutiny_at(w, target, role, class, student, Stage::Planned).await;
            (
                format!("{s}/classes/{class}/years/{year}/scrutini"),
                Some(json!({"term": 1, "level": "upper_secondary"})),
            )
        }
        ("GET", "/schools/{school}/classes/{class}/years/{year}/scrutini/{term}/minutes") => {
            let year = scrutiny_at(w, target, role, class, student, Stage::Closed(1)).await;
            (
                format!("{s}/classes/{class}/years/{year}/scrutini/1/minutes"),
                None,
            )
        }
        ("GET", "/schools/{school}/classes/{class}/years/{year}/scrutini/{term}") => {
            let year = scrutiny_at(w, target, role, class, student, Stage::Open(1)).await;
            scrutiny_report_caught_up(w).await;
            (format!("{s}/classes/{class}/years/{year}/scrutini/1"), None)
        }
        ("POST", "/schools/{school}/classes/{class}/years/{year}/scrutini/{term}/proposals") => {
            let year = scrutiny_at(w, target, role, class, student, Stage::Open(1)).await;
            (
                format!("{s}/classes/{class}/years/{year}/scrutini/1/proposals"),
                Some(json!({"student": student, "subject": "Matematica", "mark": "7"})),
            )
        }
        ("POST", "/schools/{school}/classes/{class}/years/{year}/scrutini/{term}/session") => {
            let year = scrutiny_at(w, target, role, class, student, Stage::Open(1)).await;
            (
                format!("{s}/classes/{class}/years/{year}/scrutini/1/session"),
                Some(session_body(w)),
            )
        }
        (
            "POST",
            "/schools/{school}/classes/{class}/years/{year}/scrutini/{term}/deliberations",
        ) => {
            let year = scrutiny_at(w, target, role, class, student, Stage::Sitting(1)).await;
            (
                format!("{s}/classes/{class}/years/{year}/scrutini/1/deliberations"),
                Some(if target == Target::Foreign {
                    json!({"student": student, "grades": {}, "conduct": "8"})
                } else {
                    deliberation_body(w, class, &json!(student), false, "8").await
                }),
            )
        }
        ("POST", "/schools/{school}/classes/{class}/years/{year}/scrutini/{term}/exemptions") => {
            let year = scrutiny_at(w, target, role, class, student, Stage::Sitting(1)).await;
            (
                format!("{s}/classes/{class}/years/{year}/scrutini/1/exemptions"),
                Some(json!({"student": student, "from": format!("{year}-10-01"),
                    "to": format!("{year}-10-10"), "reason": "health"})),
            )
        }
        ("POST", "/schools/{school}/classes/{class}/years/{year}/scrutini/{term}/outcomes") => {
            let year = scrutiny_at(w, target, role, class, student, Stage::Deliberated(2)).await;
            (
                format!("{s}/classes/{class}/years/{year}/scrutini/2/outcomes"),
                Some(json!({"student": student, "outcome": "admitted"})),
            )
        }
        ("POST", "/schools/{school}/classes/{class}/years/{year}/scrutini/{term}/closure") => {
            let year = scrutiny_at(w, target, role, class, student, Stage::Deliberated(1)).await;
            (
                format!("{s}/classes/{class}/years/{year}/scrutini/1/closure"),
                None,
            )
        }
        ("POST", "/schools/{school}/classes/{class}/years/{year}/scrutini/{term}/reopening") => {
            let year = scrutiny_at(w, target, role, class, student, Stage::Closed(1)).await;
            (
                format!("{s}/classes/{class}/years/{year}/scrutini/1/reopening"),
                Some(json!({"reason": "errore materiale"})),
            )
        }
        ("POST", "/schools/{school}/classes/{class}/years/{year}/scrutini/{term}/integration") => {
            let year = scrutiny_at(w, target, role, class, student, Stage::Suspended).await;
            (
                format!("{s}/classes/{class}/years/{year}/scrutini/2/integration"),
                Some(json!({"student": student, "admitted": true})),
            )
        }
        (
            "POST",
            "/schools/{school}/classes/{class}/years/{year}/scrutini/{term}/integration-session",
        ) => {
            let year = scrutiny_at(w, target, role, class, student, Stage::Suspended).await;
            (
                format!("{s}/classes/{class}/years/{year}/scrutini/2/integration-session"),
                Some(integration_body(w, year)),
            )
        }
        (
            "POST",
            "/schools/{school}/classes/{class}/years/{year}/scrutini/{term}/outcomes/withdrawal",
        ) => {
            let year = scrutiny_at(w, target, role, class, student, Stage::Reopened).await;
            (
                format!("{s}/classes/{class}/years/{year}/scrutini/2/outcomes/withdrawal"),
                Some(json!({"student": student, "reason": "errore materiale"})),
            )
        }
        ("POST", "/schools/{school}/classes/{class}/years/{year}/scrutini/{term}/publication") => {
            let year = scrutiny_at(w, target, role, class, student, Stage::Closed(1)).await;
            (
                format!("{s}/classes/{class}/years/{year}/scrutini/1/publication"),
                None,
            )
        }
        ("GET", "/schools/{school}/students/{student}/years/{year}/report-cards/{term}") => {
            let year = published_report_card(w, target, class, student).await;
            (
                format!("{s}/students/{student}/years/{year}/report-cards/1"),
                None,
            )
        }
        ("GET", "/schools/{school}/students/{student}/years/{year}/family") => {
            (format!("{s}/students/{student}/years/2025/family"), None)
        }
        ("GET", "/schools/{school}/students/{student}/years/{year}/family/{section}") => (
            format!("{s}/students/{student}/years/2025/family/grades"),
            None,
        ),
        (
            "POST",
            "/schools/{school}/students/{student}/years/{year}/grades/{grade}/corrections",
        ) => {
            let grade = prepared_grade(w, target).await;
            (
                format!("{s}/students/{student}/years/2025/grades/{grade}/corrections"),
                Some(json!({"mark": "8", "reason": "errore di trascrizione"})),
            )
        }
        ("POST", "/schools/{school}/students/{student}/years/{year}/grades/{grade}/annulment") => {
            let grade = prepared_grade(w, target).await;
            (
                format!("{s}/students/{student}/years/2025/grades/{grade}/annulment"),
                Some(json!({"reason": "prova da ripetere"})),
            )
        }
        (m, p) => panic!(
            "{m} {p} is in docs/authorization.md but this test cannot exercise it: add it to \
             `prepare`"
        ),
    }
}

/// A grade to correct or annul: for the caller's own student, a new one the teacher gives
/// through the API; for other targets, an id (the policy answers before looking at it).
/// Where a class's scrutini stand when a call about them is made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    /// The year planned, nothing opened.
    Planned,
    /// The term opened.
    Open(u8),
    /// The term opened and the council's session recorded.
    Sitting(u8),
    /// Every student of the class deliberated in the term.
    Deliberated(u8),
    /// The term closed.
    Closed(u8),
    /// The final scrutinio closed with the student's judgement suspended, and the integration
    /// scrutinio's session recorded.
    Suspended,
    /// As `Suspended`, then the final scrutinio reopened by the principal.
    Reopened,
}

/// The next school year no call has used: each scrutiny call gets a class's scrutini of its
/// own, so that the calls of the matrix do not depend on one another.
static SCRUTINY_YEARS: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(2100);

/// A school year of its own in which the student's report card of term 1 is published, and
/// the family view shows it.
async fn published_report_card(
    w: &World,
    target: Target,
    class: ClassId,
    student: PersonId,
) -> i32 {
    let year = scrutiny_at(w, target, Role::Principal, class, student, Stage::Closed(1)).await;
    if target == Target::Foreign {
        return year;
    }
    let publish = format!(
        "/schools/{}/classes/{class}/years/{year}/scrutini/1/publication",
        w.a
    );
    let r = w
        .call(
            Method::POST,
            &publish,
            Some(&w.token(Role::Principal)),
            None,
        )
        .await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let projector = registro_projector::Projector::new(
        std::sync::Arc::clone(&w.store),
        std::sync::Arc::new(registro_projection_family::FamilyView),
    );
    for _ in 0..200 {
        projector.catch_up().await.unwrap();
        let cards = registro_projection_family::report_cards(w.a, *student.as_uuid(), year)
            .run(w.store.as_ref(), w.a)
            .await
            .unwrap();
        if !cards.is_empty() {
            return year;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the report card of {year} did not reach the family view");
}

/// Waits until the scrutiny report holds everything school A wrote.
async fn scrutiny_report_caught_up(w: &World) {
    let projector = registro_projector::Projector::new(
        std::sync::Arc::clone(&w.store),
        std::sync::Arc::new(registro_projection_scrutiny::ScrutinyReport),
    );
    let head = w
        .store
        .school_head(w.a)
        .await
        .unwrap()
        .map_or(0, |h| h.last_seq);
    for _ in 0..200 {
        projector.catch_up().await.unwrap();
        if w.store
            .projection_reached(registro_projection_scrutiny::NAME, w.a, head)
            .await
            .unwrap()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the scrutiny report did not catch up");
}

/// The integration scrutinio's council of one member, the principal, at the end of August.
fn integration_body(w: &World, year: i32) -> Value {
    json!({"date": format!("{}-08-31", year + 1), "attendees": [w.person(Role::Principal)]})
}

/// The council of one member, the principal: a member of every class.
fn session_body(w: &World) -> Value {
    json!({"date": "2025-12-22", "attendees": [w.person(Role::Principal)]})
}

/// The class's subjects and students now (other rows of the matrix add to them).
async fn roster(w: &World, class: ClassId) -> (BTreeSet<String>, Vec<Value>) {
    let r = w
        .call(
            Method::GET,
            &format!("/schools/{}/classes/{class}", w.a),
            Some(&w.token(Role::Principal)),
            None,
        )
        .await;
    let roster = crate::world::body(r, 200).await;
    let subjects = roster["teachers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["subject"].as_str().unwrap().to_owned())
        .collect();
    let students = roster["students"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].clone())
        .collect();
    (subjects, students)
}

/// A deliberation of `student` with a final grade for each of the class's subjects: 7, or 5
/// in mathematics when `failing` (which the own class is taught).
async fn deliberation_body(
    w: &World,
    class: ClassId,
    student: &Value,
    failing: bool,
    conduct: &str,
) -> Value {
    let (subjects, _) = roster(w, class).await;
    let grades: serde_json::Map<String, Value> = subjects
        .into_iter()
        .map(|s| {
            let mark = if failing && s == "Matematica" {
                "5"
            } else {
                "7"
            };
            (s, json!(mark))
        })
        .collect();
    json!({"student": student, "grades": grades, "conduct": conduct})
}

/// A school year of its own, planned, with the class's scrutini taken to `stage` by the
/// principal (the world's teacher made coordinator of their class); nothing on a foreign
/// school's, which no caller of this world may reach.
async fn scrutiny_at(
    w: &World,
    target: Target,
    role: Role,
    class: ClassId,
    student: PersonId,
    stage: Stage,
) -> i32 {
    use std::sync::atomic::Ordering;
    // Only the principal's and the teachers' calls reach the scrutini; the others' are refused
    // before, whatever the year.
    if target == Target::Foreign || !matches!(role, Role::Principal | Role::Teacher) {
        return 2025;
    }
    let year = SCRUTINY_YEARS.fetch_add(1, Ordering::Relaxed);
    w.run(
        w.a,
        registro_domain::directory::DirectoryCommand::AppointCoordinator {
            class: w.c1,
            teacher: w.person(Role::Teacher),
        },
    )
    .await;
    let principal = w.token(Role::Principal);
    let s = format!("/schools/{}", w.a);
    let call = |method: Method, path: String, body: Value| {
        let principal = principal.clone();
        async move {
            let r = w.call(method, &path, Some(&principal), Some(&body)).await;
            let status = r.status().as_u16();
            assert!(status < 300, "{path}: {status} {}", r.text().await.unwrap());
        }
    };
    let plan = json!({"terms": [
        {"name": "trimestre", "start": format!("{year}-09-15"), "end": format!("{year}-12-20")},
        {"name": "pentamestre", "start": format!("{}-01-07", year + 1),
            "end": format!("{}-06-10", year + 1)},
    ]});
    call(Method::PUT, format!("{s}/years/{year}"), plan).await;
    let scrutini = format!("{s}/classes/{class}/years/{year}/scrutini");
    let term = match stage {
        Stage::Planned => return year,
        Stage::Open(t) | Stage::Sitting(t) | Stage::Deliberated(t) | Stage::Closed(t) => t,
        Stage::Suspended | Stage::Reopened => 2,
    };
    call(
        Method::POST,
        scrutini.clone(),
        json!({"term": term, "level": "upper_secondary"}),
    )
    .await;
    if stage == Stage::Open(term) {
        return year;
    }
    call(
        Method::POST,
        format!("{scrutini}/{term}/session"),
        session_body(w),
    )
    .await;
    if stage == Stage::Sitting(term) {
        return year;
    }
    let me = json!(student);
    let (_, students) = roster(w, class).await;
    // The student whose judgement is suspended fails mathematics in the own class; the other
    // class may have no mathematics, so there it is conduct 6 that suspends it.
    let suspended = matches!(stage, Stage::Suspended | Stage::Reopened);
    let (fails, conduct) = match target {
        Target::Own => (suspended, "8"),
        _ => (false, if suspended { "6" } else { "8" }),
    };
    let everyone = stage != Stage::Deliberated(2);
    for other in students.iter().filter(|p| everyone && **p != me) {
        let body = deliberation_body(w, class, other, false, "8").await;
        call(
            Method::POST,
            format!("{scrutini}/{term}/deliberations"),
            body,
        )
        .await;
    }
    let body = deliberation_body(w, class, &me, fails, conduct).await;
    call(
        Method::POST,
        format!("{scrutini}/{term}/deliberations"),
        body,
    )
    .await;
    if stage == Stage::Deliberated(term) {
        return year;
    }
    if suspended {
        for other in students.iter().filter(|p| **p != me) {
            let admitted = json!({"student": other, "outcome": "admitted"});
            call(
                Method::POST,
                format!("{scrutini}/{term}/outcomes"),
                admitted,
            )
            .await;
        }
        let outcome = if target == Target::Own {
            json!({"student": me, "outcome": "judgement_suspended",
                "subjects": ["Matematica"]})
        } else {
            json!({"student": me, "outcome": "judgement_suspended", "citizenship": true})
        };
        call(Method::POST, format!("{scrutini}/{term}/outcomes"), outcome).await;
    }
    call(
        Method::POST,
        format!("{scrutini}/{term}/closure"),
        json!(null),
    )
    .await;
    if suspended {
        call(
            Method::POST,
            format!("{scrutini}/{term}/integration-session"),
            integration_body(w, year),
        )
        .await;
    }
    if stage == Stage::Reopened {
        call(
            Method::POST,
            format!("{scrutini}/{term}/reopening"),
            json!({"reason": "errore materiale"}),
        )
        .await;
    }
    year
}

async fn prepared_grade(w: &World, target: Target) -> String {
    if target != Target::Own {
        return uuid::Uuid::now_v7().to_string();
    }
    let r = w
        .call(
            Method::POST,
            &format!("/schools/{}/students/{}/years/2025/grades", w.a, w.x),
            Some(&w.token(Role::Teacher)),
            Some(&crate::world::grade_body("7")),
        )
        .await;
    assert_eq!(r.status(), 201);
    r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A communication the principal publishes for the call, with an attachment, to the whole
/// school's staff, families and students (with `consent`: to the families and students of 1A,
/// asking consent); its id and its attachment's hash. For the other school, ids that name nothing.
async fn prepared_communication(w: &World, target: Target, consent: bool) -> (String, String) {
    if target == Target::Foreign {
        return (uuid::Uuid::now_v7().to_string(), "ab".repeat(32));
    }
    let principal = w.token(Role::Principal);
    let s = format!("/schools/{}", w.a);
    let file = Value::String(format!("%PDF-1.4 {}", w.code()));
    let r = w
        .call(
            Method::POST,
            &format!("{s}/attachments"),
            Some(&principal),
            Some(&file),
        )
        .await;
    assert_eq!(r.status(), 201);
    let hash = r.json::<Value>().await.unwrap()["hash"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut body = json!({"kind": "notice", "title": "Avviso", "body": "Testo",
        "audience": {"groups": ["families", "students", "staff"]},
        "attachments": [{"hash": hash, "name": "avviso.pdf"}]});
    if consent {
        body["audience"] = json!({"groups": ["families", "students"], "classes": [w.c1]});
        body["consent_deadline"] = json!("2099-01-01");
    }
    let r = w
        .call(
            Method::POST,
            &format!("{s}/communications"),
            Some(&principal),
            Some(&body),
        )
        .await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    (id, hash)
}

/// The teacher whose meetings a call touches, with a token for them: X's teacher; a new
/// teacher of the school who teaches nobody; the other school's teacher.
async fn meeting_teacher(w: &World, target: Target) -> (PersonId, String) {
    match target {
        Target::Own => (w.person(Role::Teacher), w.token(Role::Teacher)),
        Target::Other => {
            let code = w.code();
            let teacher = w.register_with_code(w.a, Role::Teacher, code.clone()).await;
            let token = w
                .issuer
                .issue_with(None, &code, Duration::from_secs(600))
                .unwrap();
            (teacher, token)
        }
        Target::Foreign => (w.teacher_b, String::new()),
    }
}

/// A slot of the target's teacher, offered through the API (and, with `booked`, booked by
/// X's guardian when the teacher is X's): an id for the other school.
async fn meeting_slot(w: &World, target: Target, booked: bool) -> (PersonId, String) {
    let (teacher, token) = meeting_teacher(w, target).await;
    if target == Target::Foreign {
        return (teacher, uuid::Uuid::now_v7().to_string());
    }
    let path = format!("/schools/{}/teachers/{teacher}/meetings", w.a);
    let r = w
        .call(
            Method::POST,
            &path,
            Some(&token),
            Some(
                &json!({"date": "2099-10-15", "start": "16:00", "end": "16:30",
                "capacity": 50}),
            ),
        )
        .await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
    let slot = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    if booked && target == Target::Own {
        let r = w
            .call(
                Method::POST,
                &format!("{path}/{slot}/bookings"),
                Some(&w.token(Role::Guardian)),
                Some(&json!({"student": w.x})),
            )
            .await;
        assert_eq!(r.status(), 201);
    }
    (teacher, slot)
}

/// A new student enrolled for the call: in 1A for the own target, 1B for the other; for the
/// other school, its student.
async fn enrolled_student(w: &World, target: Target) -> PersonId {
    let class = match target {
        Target::Own => w.c1,
        Target::Other => w.c2,
        Target::Foreign => return w.z,
    };
    let student = w.register(w.a, Role::Student).await;
    w.enrol(w.a, student, class).await;
    student
}

/// A note to annul: on the caller's own student, one the teacher writes; on the other student
/// of the school, a sanction the principal records (nobody teaches that class); elsewhere, an
/// id.
async fn prepared_note(w: &World, target: Target) -> String {
    let (student, role, path, body) = match target {
        Target::Own => (
            w.x,
            Role::Teacher,
            "notes",
            json!({"kind": "disciplinary", "text": "Disturba", "date": "2025-10-06"}),
        ),
        Target::Other => (
            w.y,
            Role::Principal,
            "sanctions",
            json!({"text": "Ammonizione", "date": "2025-10-06"}),
        ),
        Target::Foreign => return uuid::Uuid::now_v7().to_string(),
    };
    let r = w
        .call(
            Method::POST,
            &format!("/schools/{}/students/{student}/years/2025/{path}", w.a),
            Some(&w.token(role)),
            Some(&body),
        )
        .await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
    r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A note to a whole class, written through the API by a teacher of it: on 1A by the world's
/// teacher; on 1B by a teacher assigned to it for the call; an id elsewhere.
async fn prepared_class_note(w: &World, target: Target) -> String {
    let (class, token) = match target {
        Target::Own => (w.c1, w.token(Role::Teacher)),
        Target::Other => {
            let code = w.code();
            let teacher = w.register_with_code(w.a, Role::Teacher, code.clone()).await;
            w.run(
                w.a,
                registro_domain::directory::DirectoryCommand::AssignTeacher {
                    teacher,
                    class: w.c2,
                    subject: "Arte".into(),
                },
            )
            .await;
            let token = w
                .issuer
                .issue_with(None, &code, Duration::from_secs(600))
                .unwrap();
            (w.c2, token)
        }
        Target::Foreign => return uuid::Uuid::now_v7().to_string(),
    };
    let r = w
        .call(
            Method::POST,
            &format!("/schools/{}/classes/{class}/notes", w.a),
            Some(&token),
            Some(&json!({"kind": "disciplinary", "text": "Disturbo", "date": "2025-10-06"})),
        )
        .await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
    r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A school day (Monday to Friday) from 13 October 2025 on, another one each call: all in the
/// trimestre for the few dozen calls of the table, so that writes dated by it never clash.
fn next_school_day() -> time::Date {
    use std::sync::atomic::{AtomicU32, Ordering};
    static DAYS: AtomicU32 = AtomicU32::new(0);
    let n = DAYS.fetch_add(1, Ordering::Relaxed);
    time::macros::date!(2025 - 10 - 13) + time::Duration::days(i64::from(n / 5 * 7 + n % 5))
}

/// An attendance entry to cancel or justify: for the caller's own student, a new absence the
/// teacher records through the API (on a day of its own, so that they never clash); for other
/// targets, an id.
async fn prepared_absence(w: &World, target: Target) -> String {
    if target != Target::Own {
        return uuid::Uuid::now_v7().to_string();
    }
    let day = next_school_day();
    let r = w
        .call(
            Method::POST,
            &format!("/schools/{}/students/{}/years/2025/attendance", w.a, w.x),
            Some(&w.token(Role::Teacher)),
            Some(&json!({"date": day.to_string(), "kind": "absence"})),
        )
        .await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
    r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The generated authorisation matrix: every route the API serves (from its OpenAPI document,
/// which the service checks at start against the routes actually mounted) must have a row in
/// `docs/authorization.md`, and every role on every target gets exactly the answer written
/// there.
///
/// How it was checked that it can fail: deleting the `GET /schools/{school}/me` row from the doc
/// makes it fail with "served but not in docs/authorization.md: [\"GET /schools/{school}/me\"]";
/// changing one cell (a teacher reading another student: 404 to 200) makes it fail naming the
/// route, the role, the target and the answer.
async fn the_policy_table_holds(w: World) {
    let (rows, public) = policy_table();
    let in_doc: BTreeSet<String> = rows
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .chain(public.iter().map(|(m, p)| format!("{m} {p}")))
        .collect();
    let served = documented_operations();
    let missing: Vec<_> = served.difference(&in_doc).collect();
    assert!(
        missing.is_empty(),
        "served but not in docs/authorization.md: {missing:?}"
    );
    let extra: Vec<_> = in_doc.difference(&served).collect();
    assert!(
        extra.is_empty(),
        "in docs/authorization.md but not served: {extra:?}"
    );

    for (method, path) in &public {
        let r = w.call(method.clone(), path, None, None).await;
        // The world's API trusts its issuer without publishing the keys: the one 404.
        let expected = if path == "/.well-known/jwks.json" {
            404
        } else {
            200
        };
        assert_eq!(
            r.status().as_u16(),
            expected,
            "{method} {path} is public, answered without a token"
        );
    }
    let mut checked = 0;
    let mut failures = Vec::new();
    for row in &rows {
        for (role, expected) in ROLES.iter().zip(&row.expected) {
            let token = w.token(*role);
            for (target, expected) in TARGETS.iter().zip(expected) {
                let Some(expected) = expected else { continue };
                let (path, body) = prepare(&w, row, *target, *role).await;
                let r = w
                    .call(row.method.clone(), &path, Some(&token), body.as_ref())
                    .await;
                let status = r.status().as_u16();
                if status >= 400 {
                    assert_eq!(
                        r.headers()["content-type"],
                        "application/problem+json",
                        "{} {path}",
                        row.method
                    );
                }
                let text = r.text().await.unwrap_or_default();
                // A 404 of the policy is the plain "nothing here" of an unknown address, never
                // a reason a command gives after looking (which would mean the policy let the
                // caller through).
                let hidden = status == 404 && text.contains(NOTHING_HERE);
                if status != *expected || (*expected == 404 && !hidden) {
                    failures.push(format!(
                        "{} {} as {role} on {target:?}: expected {expected}, got {status} {text}",
                        row.method, row.path
                    ));
                }
                checked += 1;
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(checked >= rows.len() * ROLES.len() * 2, "{checked}");
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Claims of a valid local token for `code`.
fn claims(w: &World, role: Role) -> Value {
    let now = now();
    json!({
        "iss": LOCAL_ISSUER, "aud": LOCAL_AUDIENCE, "sub": "x", "iat": now, "nbf": now,
        "exp": now + 600,
        "https://attributes.eid.gov.it/fiscal_number": format!("TINIT-{}", w.people[&role].1),
    })
}

/// Every kind of bad token answers 401 with a problem and `WWW-Authenticate: Bearer`, on a
/// read and on a command; the same claims signed properly are accepted.
#[tokio::test]
async fn every_bad_token_answers_401() {
    let w = World::sqlite(RateLimit::default()).await;
    let good = w.issuer.sign(&claims(&w, Role::Guardian)).unwrap();
    let with = |f: &dyn Fn(&mut Value)| {
        let mut c = claims(&w, Role::Guardian);
        f(&mut c);
        w.issuer.sign(&c).unwrap()
    };
    let (header, rest) = good.split_once('.').unwrap();
    let (payload, signature) = rest.split_once('.').unwrap();
    let mut forged_signature = signature.to_owned().into_bytes();
    forged_signature[5] = if forged_signature[5] == b'A' {
        b'B'
    } else {
        b'A'
    };
    let forged = format!(
        "{header}.{payload}.{}",
        String::from_utf8(forged_signature).unwrap()
    );
    let none = format!(
        "{}.{payload}.",
        B64URL.encode(br#"{"alg":"none","typ":"JWT"}"#)
    );
    let hs256 = {
        let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        h.kid = Some(w.issuer.key_id().to_owned());
        jsonwebtoken::encode(
            &h,
            &claims(&w, Role::Guardian),
            &jsonwebtoken::EncodingKey::from_secret(b"the public key, as an HMAC secret"),
        )
        .unwrap()
    };
    let stranger = LocalIssuer::generate()
        .sign(&claims(&w, Role::Guardian))
        .unwrap();
    let cases: Vec<(&str, Option<String>)> = vec![
        ("no token", None),
        ("malformed", Some("not.a.jwt".into())),
        ("garbage", Some("%%%".into())),
        ("wrong signature", Some(forged)),
        ("alg none", Some(none)),
        ("HS256 confusion", Some(hs256)),
        ("unknown kid", Some(stranger)),
        (
            "wrong issuer",
            Some(with(&|c| c["iss"] = json!("https://evil.example"))),
        ),
        (
            "wrong audience",
            Some(with(&|c| c["aud"] = json!("another-service"))),
        ),
        ("expired", Some(with(&|c| c["exp"] = json!(now() - 3600)))),
        (
            "not yet valid",
            Some(with(&|c| c["nbf"] = json!(now() + 3600))),
        ),
        (
            "bad fiscal code",
            Some(with(&|c| {
                c["https://attributes.eid.gov.it/fiscal_number"] = json!("TINIT-XXXYYY80A01Z999A")
            })),
        ),
    ];
    let read = format!("/schools/{}/students/{}", w.a, w.x);
    let write = format!("/schools/{}/classes", w.a);
    for (name, token) in &cases {
        for (method, path, body) in [
            (Method::GET, &read, None),
            (Method::POST, &write, Some(json!({"name": "9Z"}))),
        ] {
            let r = w
                .call(method.clone(), path, token.as_deref(), body.as_ref())
                .await;
            assert_eq!(r.status(), 401, "{name} on {method}");
            assert_eq!(r.headers()["www-authenticate"], "Bearer realm=\"registro\"");
            assert_eq!(r.headers()["content-type"], "application/problem+json");
            let problem: Value = r.json().await.unwrap();
            assert_eq!(problem["status"], 401, "{name}");
        }
    }
    // HEAD is answered by the GET handler, and guarded like GET.
    let r = w.call(Method::HEAD, &read, None, None).await;
    assert_eq!(r.status(), 401);
    // A raw "Basic" scheme is no bearer token either.
    let r = w
        .client
        .get(format!("{}{read}", w.base))
        .header("authorization", "Basic dXNlcjpwYXNz")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // The same claims, properly signed, are accepted: the refusals above were the token's.
    let r = w.call(Method::GET, &read, Some(&good), None).await;
    assert_eq!(r.status(), 200);
}

/// A token that names a school (registro's local tokens do) is good only for that school.
#[tokio::test]
async fn a_token_naming_a_school_is_good_only_there() {
    let w = World::sqlite(RateLimit::default()).await;
    let code = &w.people[&Role::Principal].1;
    let for_b = w.issuer.issue(w.b, code, Duration::from_secs(60)).unwrap();
    let r = w
        .call(
            Method::GET,
            &format!("/schools/{}/me", w.a),
            Some(&for_b),
            None,
        )
        .await;
    assert_eq!(r.status(), 404);
    let for_a = w.issuer.issue(w.a, code, Duration::from_secs(60)).unwrap();
    let r = w
        .call(
            Method::GET,
            &format!("/schools/{}/me", w.a),
            Some(&for_a),
            None,
        )
        .await;
    assert_eq!(r.status(), 200);
    let me: Value = r.json().await.unwrap();
    assert_eq!(me["roles"], json!(["principal"]));
}

async fn access_log_of(w: &World, role: Role, student: PersonId) -> Vec<Value> {
    let r = w
        .call(
            Method::GET,
            &format!("/schools/{}/students/{student}/access-log", w.a),
            Some(&w.token(role)),
            None,
        )
        .await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    body["entries"].as_array().unwrap().clone()
}

/// A teacher's read of a student leaves an entry that the guardian can see; the family's own
/// reads leave none; an auditor finds it in the school's log.
async fn a_teachers_read_is_shown_to_the_guardian(w: World) {
    assert!(access_log_of(&w, Role::Guardian, w.x).await.is_empty());
    let teacher = w.token(Role::Teacher);
    let r = w
        .call(
            Method::GET,
            &format!("/schools/{}/students/{}", w.a, w.x),
            Some(&teacher),
            None,
        )
        .await;
    assert_eq!(r.status(), 200);
    let request_id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    let record: Value = r.json().await.unwrap();
    assert_eq!(record["class"]["name"], "1A");
    assert_eq!(
        record["guardians"][0]["id"],
        json!(w.person(Role::Guardian))
    );

    // The family's own reads are not recorded.
    for role in [Role::Guardian, Role::Student] {
        let r = w
            .call(
                Method::GET,
                &format!("/schools/{}/students/{}", w.a, w.x),
                Some(&w.token(role)),
                None,
            )
            .await;
        assert_eq!(r.status(), 200);
    }
    let entries = access_log_of(&w, Role::Guardian, w.x).await;
    assert_eq!(entries.len(), 1, "{entries:?}");
    let entry = &entries[0];
    assert_eq!(entry["reader"]["id"], json!(w.person(Role::Teacher)));
    assert_eq!(entry["role"], "teacher");
    assert_eq!(entry["view"], "student.record");
    assert_eq!(entry["students"], json!([w.x]));
    assert_eq!(entry["request_id"], request_id.as_str());
    // The student sees the same.
    assert_eq!(access_log_of(&w, Role::Student, w.x).await, entries);

    // A roster read records every student of the class, and the family sees only their child.
    let r = w
        .call(
            Method::GET,
            &format!("/schools/{}/classes/{}", w.a, w.c1),
            Some(&teacher),
            None,
        )
        .await;
    assert_eq!(r.status(), 200);
    let entries = access_log_of(&w, Role::Guardian, w.x).await;
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0]["view"], "class.roster");
    assert_eq!(entries[0]["students"], json!([w.x]));

    // The auditor finds the teacher's reads in the school's log, filtered by reader.
    let r = w
        .call(
            Method::GET,
            &format!(
                "/schools/{}/access-log?reader={}&view=student.record",
                w.a,
                w.person(Role::Teacher)
            ),
            Some(&w.token(Role::Auditor)),
            None,
        )
        .await;
    assert_eq!(r.status(), 200);
    let log: Value = r.json().await.unwrap();
    assert_eq!(log["entries"].as_array().unwrap().len(), 1, "{log}");
    // The auditor's read of the student's log is itself recorded, and the family sees it.
    access_log_of(&w, Role::Auditor, w.x).await;
    let entries = access_log_of(&w, Role::Guardian, w.x).await;
    assert_eq!(entries[0]["view"], "student.access_log");
    assert_eq!(entries[0]["role"], "auditor");
    // Asking the school's log for one student is a read of that student's log too.
    let r = w
        .call(
            Method::GET,
            &format!("/schools/{}/access-log?student={}", w.a, w.x),
            Some(&w.token(Role::Principal)),
            None,
        )
        .await;
    assert_eq!(r.status(), 200);
    let entries = access_log_of(&w, Role::Guardian, w.x).await;
    assert_eq!(entries[0]["role"], "principal");
    assert_eq!(entries[0]["view"], "student.access_log");
    // Pages: two entries at a time, newest first, until the last.
    let r = w
        .call(
            Method::GET,
            &format!("/schools/{}/students/{}/access-log?limit=2", w.a, w.x),
            Some(&w.token(Role::Guardian)),
            None,
        )
        .await;
    let page: Value = r.json().await.unwrap();
    let before = page["next_before"].as_u64().unwrap();
    let r = w
        .call(
            Method::GET,
            &format!(
                "/schools/{}/students/{}/access-log?limit=2&before={before}",
                w.a, w.x
            ),
            Some(&w.token(Role::Guardian)),
            None,
        )
        .await;
    let last: Value = r.json().await.unwrap();
    // Four reads in all: the teacher's two, the auditor's and the principal's.
    assert_eq!(last["entries"].as_array().unwrap().len(), 2);
    assert!(last["next_before"].is_null());
    let seqs: Vec<u64> = page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .chain(last["entries"].as_array().unwrap())
        .map(|e| e["school_seq"].as_u64().unwrap())
        .collect();
    assert!(
        seqs.windows(2).all(|p| p[0] > p[1]),
        "newest first: {seqs:?}"
    );
    // And the guardian still cannot see another child's log.
    let r = w
        .call(
            Method::GET,
            &format!("/schools/{}/students/{}/access-log", w.a, w.y),
            Some(&w.token(Role::Guardian)),
            None,
        )
        .await;
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn sqlite_a_teachers_read_is_shown_to_the_guardian() {
    a_teachers_read_is_shown_to_the_guardian(World::sqlite(RateLimit::default()).await).await;
}

#[tokio::test]
async fn postgres_a_teachers_read_is_shown_to_the_guardian() {
    a_teachers_read_is_shown_to_the_guardian(World::postgres(RateLimit::default()).await).await;
}

/// A command retried with its idempotency key answers the first result and writes nothing; a
/// refused command writes nothing and says why.
async fn commands_are_idempotent_and_refusals_write_nothing(w: World) {
    let secretary = w.token(Role::Secretary);
    let people = format!("/schools/{}/people", w.a);
    let code = w.code();
    let body = json!({"fiscal_code": code.as_str(), "family_name": "Neri",
        "given_name": "Carla", "role": "guardian"});
    let send = |key: &'static str, body: Value| {
        let request = w
            .client
            .post(format!("{}{people}", w.base))
            .bearer_auth(&secretary)
            .header("idempotency-key", key)
            .json(&body);
        async move { request.send().await.unwrap() }
    };
    let first = send("tap-1", body.clone()).await;
    assert_eq!(first.status(), 201);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first: Value = first.json().await.unwrap();
    let head = w.store.school_head(w.a).await.unwrap().unwrap().last_seq;
    assert_eq!(first["position"], head);

    let again = send("tap-1", body.clone()).await;
    assert_eq!(again.status(), 201);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.json::<Value>().await.unwrap(), first);

    let mut other = body.clone();
    other["given_name"] = json!("Carlo");
    let reused = send("tap-1", other).await;
    assert_eq!(reused.status(), 422);

    // The same fiscal code again, without a key: a conflict, in Italian.
    let r = w
        .call(Method::POST, &people, Some(&secretary), Some(&body))
        .await;
    assert_eq!(r.status(), 409);
    let problem: Value = r.json().await.unwrap();
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("codice fiscale"),
        "{problem}"
    );
    for (bad, field) in [
        (
            json!({"fiscal_code": "XXXYYY80A01Z999A", "family_name": "N", "given_name": "C",
            "role": "guardian"}),
            "fiscal_code",
        ),
        (
            json!({"fiscal_code": w.code().as_str(), "family_name": "N", "given_name": "C",
            "role": "janitor"}),
            "role",
        ),
        (
            json!({"fiscal_code": w.code().as_str(), "family_name": "N", "given_name": "C",
            "role": "guardian", "shoe_size": 42}),
            "shoe_size",
        ),
    ] {
        let r = w
            .call(Method::POST, &people, Some(&secretary), Some(&bad))
            .await;
        assert_eq!(r.status(), 422, "{bad}");
        let problem: Value = r.json().await.unwrap();
        assert!(
            problem["detail"].as_str().unwrap().contains(field),
            "{field}: {problem}"
        );
    }
    let r = w
        .call(
            Method::POST,
            &people,
            Some(&secretary),
            Some(
                &json!({"fiscal_code": w.code().as_str(), "family_name": " ",
                "given_name": "C", "role": "guardian"}),
            ),
        )
        .await;
    assert_eq!(r.status(), 422);
    // Linking a guardian to someone who is not a student: refused.
    let r = w
        .call(
            Method::POST,
            &format!(
                "/schools/{}/students/{}/guardians",
                w.a,
                w.person(Role::Teacher)
            ),
            Some(&secretary),
            Some(&json!({"guardian": w.person(Role::Guardian)})),
        )
        .await;
    assert_eq!(r.status(), 422);
    assert_eq!(
        w.store.school_head(w.a).await.unwrap().unwrap().last_seq,
        head,
        "a refused command wrote something"
    );
    // Double taps sent together: one registration, every answer the same, one of them first.
    // (On PostgreSQL, without the executor's second look-up after a refusal, the taps that
    // decided while the first was committing answer 409: checked by disabling it.)
    let tap_code = w.code();
    let body = json!({"fiscal_code": tap_code.as_str(), "family_name": "Gialli",
        "given_name": "Ugo", "role": "student"});
    let taps = (0..6).map(|_| send("tap-2", body.clone()));
    let answers = futures_util::future::join_all(taps).await;
    let mut ids = BTreeSet::new();
    let mut firsts = 0;
    for r in answers {
        assert_eq!(r.status(), 201);
        firsts += usize::from(r.headers().get("idempotent-replayed").is_none());
        ids.insert(r.json::<Value>().await.unwrap()["id"].to_string());
    }
    assert_eq!((firsts, ids.len()), (1, 1));
    let head = w.store.school_head(w.a).await.unwrap().unwrap().last_seq;
    // A retry after the directory moved on is still a replay.
    w.register(w.a, Role::Guardian).await;
    let late = send("tap-2", body.clone()).await;
    assert_eq!(late.headers()["idempotent-replayed"], "true");
    assert_eq!(
        w.store.school_head(w.a).await.unwrap().unwrap().last_seq,
        head + 1
    );
    // Keys are each person's own: the principal's "tap-2" is another request.
    let r = w
        .client
        .post(format!("{}{people}", w.base))
        .bearer_auth(w.token(Role::Principal))
        .header("idempotency-key", "tap-2")
        .json(
            &json!({"fiscal_code": w.code().as_str(), "family_name": "Blu",
            "given_name": "Ada", "role": "teacher"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert!(r.headers().get("idempotent-replayed").is_none());
    let bad_key = w
        .client
        .post(format!("{}{people}", w.base))
        .bearer_auth(&secretary)
        .header("idempotency-key", "has space")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(bad_key.status(), 400);

    // What was registered is there: the new guardian can log in.
    let token = w
        .issuer
        .issue_with(None, &code, Duration::from_secs(60))
        .unwrap();
    let r = w
        .call(
            Method::GET,
            &format!("/schools/{}/me", w.a),
            Some(&token),
            None,
        )
        .await;
    let me: Value = r.json().await.unwrap();
    assert_eq!(me["person"]["id"], first["id"]);
}

#[tokio::test]
async fn sqlite_commands_are_idempotent_and_refusals_write_nothing() {
    commands_are_idempotent_and_refusals_write_nothing(World::sqlite(RateLimit::default()).await)
        .await;
}

#[tokio::test]
async fn postgres_commands_are_idempotent_and_refusals_write_nothing() {
    commands_are_idempotent_and_refusals_write_nothing(World::postgres(RateLimit::default()).await)
        .await;
}

/// Nobody changes their own roles or relationships: a secretary cannot make themself principal
/// nor link themself to a student; another secretary or the principal can.
#[tokio::test]
async fn nobody_changes_their_own_roles_or_relationships() {
    let w = World::sqlite(RateLimit::default()).await;
    let secretary = w.person(Role::Secretary);
    let token = w.token(Role::Secretary);
    let head = w.store.school_head(w.a).await.unwrap().unwrap().last_seq;
    let attempts = [
        (
            Method::POST,
            format!("/schools/{}/people/{secretary}/roles", w.a),
            Some(json!({"role": "principal"})),
        ),
        (
            Method::DELETE,
            format!("/schools/{}/people/{secretary}/roles/secretary", w.a),
            None,
        ),
        (
            Method::POST,
            format!("/schools/{}/students/{}/guardians", w.a, w.y),
            Some(json!({"guardian": secretary})),
        ),
        (
            Method::POST,
            format!("/schools/{}/classes/{}/teachers", w.a, w.c2),
            Some(json!({"teacher": secretary, "subject": "Storia"})),
        ),
    ];
    for (method, path, body) in &attempts {
        let r = w
            .call(method.clone(), path, Some(&token), body.as_ref())
            .await;
        assert_eq!(r.status(), 403, "{method} {path}");
    }
    assert_eq!(
        w.store.school_head(w.a).await.unwrap().unwrap().last_seq,
        head
    );
    // The principal can give the secretary another role.
    let r = w
        .call(
            Method::POST,
            &attempts[0].1,
            Some(&w.token(Role::Principal)),
            Some(&json!({"role": "teacher"})),
        )
        .await;
    assert_eq!(r.status(), 201);
}

/// Only a principal gives or takes away the privileged roles; a secretary gives the others.
#[tokio::test]
async fn only_a_principal_assigns_privileged_roles() {
    let w = World::sqlite(RateLimit::default()).await;
    let secretary = w.token(Role::Secretary);
    let principal = w.token(Role::Principal);
    let teacher = w.person(Role::Teacher);
    let roles = format!("/schools/{}/people/{teacher}/roles", w.a);
    for role in ["principal", "secretary", "auditor", "admin"] {
        let body = json!({"role": role});
        let r = w
            .call(Method::POST, &roles, Some(&secretary), Some(&body))
            .await;
        assert_eq!(r.status(), 403, "secretary grants {role}");
        let register = json!({"fiscal_code": w.code().as_str(), "family_name": "Nuovo",
            "given_name": "Capo", "role": role});
        let r = w
            .call(
                Method::POST,
                &format!("/schools/{}/people", w.a),
                Some(&secretary),
                Some(&register),
            )
            .await;
        assert_eq!(r.status(), 403, "secretary registers a {role}");
    }
    let principal_id = w.person(Role::Principal);
    let r = w
        .call(
            Method::DELETE,
            &format!("/schools/{}/people/{principal_id}/roles/principal", w.a),
            Some(&secretary),
            None,
        )
        .await;
    assert_eq!(r.status(), 403);
    // The principal may; the secretary may give a teacher the guardian role.
    let r = w
        .call(
            Method::POST,
            &roles,
            Some(&principal),
            Some(&json!({"role": "auditor"})),
        )
        .await;
    assert_eq!(r.status(), 201);
    let r = w
        .call(
            Method::POST,
            &roles,
            Some(&secretary),
            Some(&json!({"role": "guardian"})),
        )
        .await;
    assert_eq!(r.status(), 201);
}

/// Somebody whose fiscal code is an omocodic variant of a registered person's code is somebody
/// else: they do not log in as that person.
#[tokio::test]
async fn an_omocodic_variant_of_a_code_is_another_person() {
    let w = World::sqlite(RateLimit::default()).await;
    let code = &w.people[&Role::Principal].1;
    // Replace the last digit of the birthplace (always 9 in these codes) by its letter, V.
    let variant = FiscalCode::with_check_character(&format!("{}V", &code.as_str()[..14])).unwrap();
    assert_ne!(&variant, code);
    let token = w
        .issuer
        .issue_with(None, &variant, Duration::from_secs(60))
        .unwrap();
    let r = w
        .call(
            Method::GET,
            &format!("/schools/{}/me", w.a),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(r.status(), 404);
    // Registered under their own code, they are their own person.
    let id = w.register_with_code(w.a, Role::Teacher, variant).await;
    let r = w
        .call(
            Method::GET,
            &format!("/schools/{}/me", w.a),
            Some(&token),
            None,
        )
        .await;
    let me: Value = r.json().await.unwrap();
    assert_eq!(me["person"]["id"], json!(id));
    assert_eq!(me["roles"], json!(["teacher"]));
}

/// Unlinking a parent (a court order) ends their access at once; the other parent keeps theirs.
#[tokio::test]
async fn an_unlinked_guardian_loses_access_at_once() {
    let w = World::sqlite(RateLimit::default()).await;
    let record = format!("/schools/{}/students/{}", w.a, w.x);
    let guardian = w.token(Role::Guardian);
    // The other parent, with a link of their own.
    let other_code = w.code();
    let other = w
        .register_with_code(w.a, Role::Guardian, other_code.clone())
        .await;
    w.link(w.a, other, w.x).await;
    let other_token = w
        .issuer
        .issue_with(None, &other_code, Duration::from_secs(60))
        .unwrap();
    assert_eq!(
        w.call(Method::GET, &record, Some(&guardian), None)
            .await
            .status(),
        200
    );
    let r = w
        .call(
            Method::DELETE,
            &format!(
                "/schools/{}/students/{}/guardians/{}",
                w.a,
                w.x,
                w.person(Role::Guardian)
            ),
            Some(&w.token(Role::Secretary)),
            None,
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        w.call(Method::GET, &record, Some(&guardian), None)
            .await
            .status(),
        404
    );
    assert_eq!(
        w.call(Method::GET, &record, Some(&other_token), None)
            .await
            .status(),
        200
    );
}

/// A guardian whose guardian role is revoked loses what the link gave, even while the link
/// stays: no child in their profile, no access, and their reads in another role are recorded.
#[tokio::test]
async fn a_revoked_guardian_role_ends_what_the_link_gave() {
    let w = World::sqlite(RateLimit::default()).await;
    let guardian = w.person(Role::Guardian);
    let token = w.token(Role::Guardian);
    w.run(
        w.a,
        registro_domain::directory::DirectoryCommand::GrantRole {
            person: guardian,
            role: Role::Teacher,
        },
    )
    .await;
    w.run(
        w.a,
        registro_domain::directory::DirectoryCommand::AssignTeacher {
            teacher: guardian,
            class: w.c1,
            subject: "Arte".into(),
        },
    )
    .await;
    w.run(
        w.a,
        registro_domain::directory::DirectoryCommand::RevokeRole {
            person: guardian,
            role: Role::Guardian,
        },
    )
    .await;
    let me: Value = w
        .call(
            Method::GET,
            &format!("/schools/{}/me", w.a),
            Some(&token),
            None,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["children"], json!([]));
    // Still linked, now a teacher of the child's class: the read is a teacher's, recorded.
    let r = w
        .call(
            Method::GET,
            &format!("/schools/{}/students/{}", w.a, w.x),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(r.status(), 200);
    let entries = access_log_of(&w, Role::Student, w.x).await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["role"], "teacher");
    assert_eq!(entries[0]["reader"]["id"], json!(guardian));
}

/// Reads are limited per token holder, with `Retry-After`: a fresh token of the same person
/// does not reset the budget, bad tokens do not use it; other people and writes are not
/// affected.
#[tokio::test]
async fn reads_are_rate_limited_per_token_holder() {
    let w = World::sqlite(RateLimit {
        per_minute: 6,
        burst: 2,
    })
    .await;
    let me = format!("/schools/{}/me", w.a);
    let principal = w.token(Role::Principal);
    // Bad tokens use up nothing: they are refused before the limiter.
    for _ in 0..10 {
        let r = w.call(Method::GET, &me, Some("not.a.jwt"), None).await;
        assert_eq!(r.status(), 401);
    }
    for _ in 0..3 {
        assert_eq!(
            w.call(Method::GET, &me, Some(&principal), None)
                .await
                .status(),
            200
        );
    }
    let r = w.call(Method::GET, &me, Some(&principal), None).await;
    assert_eq!(r.status(), 429);
    let wait: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=10).contains(&wait), "{wait}");
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    // A fresh token of the same person buys no more reads.
    let fresh = w
        .issuer
        .issue_with(
            None,
            &w.people[&Role::Principal].1,
            Duration::from_secs(120),
        )
        .unwrap();
    assert_ne!(fresh, principal);
    assert_eq!(
        w.call(Method::GET, &me, Some(&fresh), None).await.status(),
        429
    );
    let other = w.token(Role::Teacher);
    assert_eq!(
        w.call(Method::GET, &me, Some(&other), None).await.status(),
        200
    );
    let r = w
        .call(
            Method::POST,
            &format!("/schools/{}/classes", w.a),
            Some(&principal),
            Some(&json!({"name": "5C"})),
        )
        .await;
    assert_eq!(r.status(), 201);
}

/// An unknown school answers 404 to everyone (that asking for one costs no memory is checked in
/// `cache.rs`).
#[tokio::test]
async fn a_school_nobody_knows_is_not_found() {
    let w = World::sqlite(RateLimit::default()).await;
    let r = w
        .call(
            Method::GET,
            &format!("/schools/{}/me", SchoolId::new()),
            Some(&w.token(Role::Principal)),
            None,
        )
        .await;
    assert_eq!(r.status(), 404);
    let r = w
        .call(
            Method::GET,
            "/schools/not-a-uuid/me",
            Some(&w.token(Role::Principal)),
            None,
        )
        .await;
    assert_eq!(r.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_bad_input_to_every_write_is_refused_naming_the_field_and_writes_nothing() {
    bad_input_is_refused(World::sqlite(NO_LIMIT).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_bad_input_to_every_write_is_refused_naming_the_field_and_writes_nothing() {
    bad_input_is_refused(World::postgres(NO_LIMIT).await).await;
}

/// Every route that takes a JSON body, called by a role the policy lets through with the
/// body the matrix uses, spoiled: an unknown field added; the first field given a value of the
/// wrong type (an object, which fits none of the fields, and an array of arrays, which serde
/// reads as a syntax error for enums unless the whole body is read as JSON first). Each answers 422 problem+json naming the field, and the school's
/// log does not move.
async fn bad_input_is_refused(w: World) {
    let (rows, _) = policy_table();
    let head = || async { w.store.school_head(w.a).await.unwrap().map(|h| h.last_seq) };
    let mut failures = Vec::new();
    let mut checked = 0;
    for row in rows.iter().filter(|r| r.method != Method::GET) {
        let Some(role) = ROLES
            .iter()
            .zip(&row.expected)
            .find(|(_, e)| e[0].is_some_and(|s| (200..300).contains(&s)))
            .map(|(r, _)| *r)
        else {
            continue;
        };
        let (path, body) = prepare(&w, row, Target::Own, role).await;
        let Some(Value::Object(good)) = body else {
            continue; // no body, or a file (CSV, PDF): their own tests cover them
        };
        let first = good.keys().next().cloned();
        let mut spoiled = vec![("unexpected_field".to_owned(), {
            let mut b = good.clone();
            b.insert("unexpected_field".into(), json!(true));
            b
        })];
        if let Some(first) = first {
            for wrong in [json!({ "unexpected_value": [7] }), json!([[]])] {
                let mut b = good.clone();
                b.insert(first.clone(), wrong);
                spoiled.push((first.clone(), b));
            }
        }
        for (field, b) in spoiled {
            let before = head().await;
            let r = w
                .call(
                    row.method.clone(),
                    &path,
                    Some(&w.token(role)),
                    Some(&Value::Object(b)),
                )
                .await;
            let status = r.status().as_u16();
            let content_type = r.headers()["content-type"].to_str().unwrap().to_owned();
            let text = r.text().await.unwrap_or_default();
            if status != 422 || content_type != "application/problem+json" || !text.contains(&field)
            {
                failures.push(format!(
                    "{} {} as {role}, `{field}` spoiled: {status} {content_type} {text}",
                    row.method, row.path
                ));
            }
            if head().await != before {
                failures.push(format!(
                    "{} {}: bad input was written",
                    row.method, row.path
                ));
            }
            checked += 1;
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(checked >= 60, "{checked}");
}
