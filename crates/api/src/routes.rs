//! The routes and their OpenAPI description.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::handler::Handler;
use axum::http::Method;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{MethodFilter, on};
use serde::Serialize;
use utoipa::openapi::Required;
use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::{AnyOf, ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{Modify, OpenApi, ToSchema};

use crate::context::REQUEST_ID;
use crate::error::{ApiError, PROBLEM_JSON, Problem, problem_response};
use crate::policy::{Access, Permission, ResourceKind, Rule};
use crate::projections::{ProjectionReport, ProjectionState};
use crate::{
    AppState, audit, auditor, communications, docs, enrolment, family, history, metrics,
    portability, register, retention, school, scrutiny, subject_access,
};

/// The OpenAPI document of the API.
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "registro",
        description = "The API of registro, the event-sourced Italian school electronic register \
                       (registro elettronico). Errors are RFC 9457 problem details; every \
                       response carries an `x-request-id` header."
    ),
    paths(healthz, readyz, metrics_text, openapi_json, docs_page, jwks,
        school::me, school::register_person, school::grant_role, school::revoke_role,
        school::link_guardian, school::unlink_guardian, school::create_class,
        school::assign_teacher, school::enrol_student, school::class_roster,
        school::student_record, school::student_access_log, school::school_access_log,
        register::plan_year, register::year_plan, register::set_justification_rules,
        register::justification_rules, register::overdue_justifications,
        register::write_class_note, register::annul_class_note, register::define_subject,
        register::subjects, audit::school_audit, audit::student_audit, family::overview, family::list,
        scrutiny::open, scrutiny::view, scrutiny::propose, scrutiny::session,
        scrutiny::deliberate, scrutiny::exempt, scrutiny::decide_outcome, scrutiny::close,
        scrutiny::reopen, scrutiny::integrate, scrutiny::publish, family::report_card, scrutiny::minutes,
        scrutiny::set_scrutiny_rules, scrutiny::scrutiny_rules, scrutiny::integration_session,
        scrutiny::withdraw_outcome, portability::export, portability::key_bundle, retention::run_now,
        retention::set_rules, retention::rules, auditor::log, auditor::stream, auditor::chain,
        subject_access::personal_data, history::family, history::scrutiny,
        register::give_grade, register::correct_grade,
        register::annul_grade, register::student_grades, register::set_timetable,
        register::timetable, register::record_attendance, register::cancel_attendance,
        register::student_attendance, register::submit_justification,
        register::decide_justification, register::sign_lesson, register::assign_substitute,
        register::assign_homework, register::schedule_test, register::class_day,
        register::exempt_from_subject, register::end_exemption, register::write_note,
        register::decide_sanction, register::annul_note, register::student_notes,
        enrolment::enrol_from_csv, register::offer_slot, register::teacher_slots,
        register::cancel_slot, register::book_slot, register::cancel_booking,
        school::transfer_student, school::withdraw_student, school::appoint_coordinator,
        register::give_class_grades, communications::upload_attachment,
        communications::publish, communications::list, communications::communication,
        communications::withdraw, communications::acknowledge, communications::answer_consent,
        communications::download_attachment),
    components(schemas(Problem, crate::error::LineError, Health, Readiness, Checks,
        ProjectionReport, ProjectionState, family::Section)),
    modifiers(&EveryOperation),
    tags(
        (name = "operations", description = "Health, readiness, metrics and the API's own description"),
        (name = "directory", description = "The school's people, roles, guardian links, classes, \
            teacher assignments and enrolments (anagrafica)"),
        (name = "access log", description = "Who read which student's data (GDPR accountability)"),
        (name = "calendar", description = "School years and their terms (periodi); the classes' timetables"),
        (name = "grades", description = "Grades (voti), their corrections and annulments, and averages"),
        (name = "attendance", description = "Absences, late entries and early exits, and the attendance limit"),
        (name = "class register", description = "Lesson signatures and topics, substitutes, homework and tests"),
        (name = "discipline", description = "Disciplinary notes, annotations and sanctions"),
        (name = "meetings", description = "Parent-teacher meetings (colloqui)"),
        (name = "communications", description = "Circulars and notices (circolari, avvisi) with \
            attachments, read receipts (presa visione) and consent (adesione)"),
        (name = "scrutini", description = "The class council at the end of each term: proposals, \
            deliberations with their vote, exemptions, outcomes, closing (which locks the term) \
            and reopening"),
        (name = "family", description = "One student's school year as the family sees it, from \
            the family view's projection"),
        (name = "portability", description = "The school's whole log and its key bundle, to \
            move it to another instance (docs/export-format.md)"),
    )
)]
pub struct ApiDoc;

/// What every operation shares, added to each: the `x-request-id` header on every response,
/// `Retry-After` on every 503, and the 500 problem that any route answers when something breaks
/// (a panic included).
#[derive(Debug)]
struct EveryOperation;

impl Modify for EveryOperation {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        // A family list's item has the shape its section names; the shapes overlap (an item
        // of one may also fit another), so "any of", not "exactly one of".
        if let Some(components) = openapi.components.as_mut()
            && let Some(RefOr::T(Schema::OneOf(one))) = components.schemas.get("FamilyItem")
        {
            let mut any = AnyOf::new();
            any.items.clone_from(&one.items);
            any.description.clone_from(&one.description);
            components
                .schemas
                .insert("FamilyItem".to_owned(), RefOr::T(Schema::AnyOf(any)));
        }
        let internal = ResponseBuilder::new()
            .description(
                "Internal error: the cause is logged; the problem carries only the request id",
            )
            .content(
                PROBLEM_JSON,
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("Problem")))
                    .build(),
            )
            .build();
        let request_id = HeaderBuilder::new()
            .schema(ObjectBuilder::new().schema_type(Type::String))
            .description(Some(
                "The request id: the client's own `x-request-id` when it is short visible \
                 ASCII, otherwise a new UUIDv7. It is on every log line of the request.",
            ))
            .build();
        let retry_after = HeaderBuilder::new()
            .schema(ObjectBuilder::new().schema_type(Type::Integer))
            .description(Some("Seconds to wait before trying again"))
            .build();
        let problem = |description: &str| {
            RefOr::T(
                ResponseBuilder::new()
                    .description(description)
                    .content(
                        PROBLEM_JSON,
                        ContentBuilder::new()
                            .schema(Some(Ref::from_schema_name("Problem")))
                            .build(),
                    )
                    .build(),
            )
        };
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                BEARER,
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .bearer_format("JWT")
                        .description(Some(
                            "An OpenID Connect ID token from the identity gateway (SPID, CIE, \
                             eIDAS), or in embedded mode from `registro token`",
                        ))
                        .build(),
                ),
            );
        let idempotency_key = ParameterBuilder::new()
            .name("Idempotency-Key")
            .parameter_in(ParameterIn::Header)
            .required(Required::False)
            .description(Some(format!(
                "Makes the command safe to retry: a retry with the same key by the same person \
                 answers the first result (with `Idempotent-Replayed: true`) and writes nothing; \
                 the same key with another command is refused (422). 1 to {} characters of \
                 A-Z a-z 0-9 - _ . :",
                school::MAX_IDEMPOTENCY_KEY
            )))
            .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
            .build();
        for (path, item) in &mut openapi.paths.paths {
            if !path.starts_with("/schools/") {
                continue;
            }
            let has_body = item.post.is_some() || item.put.is_some();
            let operations = [
                &mut item.get,
                &mut item.post,
                &mut item.delete,
                &mut item.put,
            ];
            for (i, operation) in operations.into_iter().enumerate() {
                let Some(operation) = operation else { continue };
                operation.security =
                    Some(vec![SecurityRequirement::new(BEARER, Vec::<String>::new())]);
                if i > 0 {
                    operation
                        .parameters
                        .get_or_insert_with(Vec::new)
                        .push(idempotency_key.clone());
                }
                let responses = &mut operation.responses.responses;
                let mut add = |status: &str, description: &str| {
                    responses
                        .entry(status.to_owned())
                        .or_insert_with(|| problem(description));
                };
                add("401", "No valid bearer token (`WWW-Authenticate` is set)");
                add("403", "None of the caller's roles allows this");
                add(
                    "404",
                    "No such resource, or one the caller may not know exists (another school's, \
                     another family's)",
                );
                add(
                    "503",
                    "The service or the identity provider is unavailable; retry later",
                );
                if i == 0 {
                    add(
                        "429",
                        "Too many reads with this token; `Retry-After` says when to retry",
                    );
                    add("400", "A malformed query");
                    add(
                        "422",
                        "A well-formed query that cannot be answered: a value out of its range, \
                         a position beyond the school's log (the detail says which)",
                    );
                } else {
                    add("400", "A malformed body or `Idempotency-Key`");
                    add(
                        "409",
                        "The command conflicts with the current state: a concurrent change to the \
                         same records (retry it), or records not in the state it needs (the \
                         detail says which, in Italian)",
                    );
                    add(
                        "422",
                        "The body does not fit the schema, or the command breaks a rule (the \
                         detail says which, in Italian), or the idempotency key was used by \
                         another command",
                    );
                    if (i == 1 || i == 3) && has_body {
                        add("415", "The body is not JSON");
                        add("413", "The body is too large");
                    }
                }
            }
        }
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.options,
                &mut item.head,
                &mut item.patch,
                &mut item.trace,
            ];
            for operation in operations.into_iter().flatten() {
                let responses = &mut operation.responses.responses;
                responses
                    .entry("500".to_owned())
                    .or_insert_with(|| RefOr::T(internal.clone()));
                for (status, response) in responses.iter_mut() {
                    if let RefOr::T(response) = response {
                        response
                            .headers
                            .insert(REQUEST_ID.to_owned(), request_id.clone());
                        if status == "503" || status == "429" {
                            response
                                .headers
                                .insert("retry-after".to_owned(), retry_after.clone());
                        }
                    }
                }
            }
        }
    }
}

/// The name of the bearer security scheme in the OpenAPI document.
const BEARER: &str = "bearer";

/// Routes being mounted, each with its policy: the only way to mount a route, so none can be
/// mounted without one.
#[derive(Debug, Default)]
pub struct Routes {
    router: Router<AppState>,
    rules: Vec<Rule>,
}

impl Routes {
    /// Mounts `handler` at `method path`, callable as `access` says.
    ///
    /// # Panics
    /// On a method axum cannot route, or the same method and path mounted twice (both are
    /// programming errors found by every test that builds the API).
    #[must_use]
    pub fn add<H, T>(
        mut self,
        method: Method,
        path: &'static str,
        access: Access,
        handler: H,
    ) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        #[allow(clippy::expect_used)] // a programming error, found by every test
        let filter = MethodFilter::try_from(method.clone()).expect("a routable method");
        self.router = self.router.route(path, on(filter, handler));
        self.rules.push(Rule {
            method,
            path,
            access,
        });
        self
    }

    /// The router and the policy of each of its routes.
    pub fn into_parts(self) -> (Router<AppState>, Vec<Rule>) {
        (self.router, self.rules)
    }
}

/// A route for members holding `permission` on the resource named by the path.
const fn member(permission: Permission, resource: ResourceKind) -> Access {
    Access::Member {
        permission,
        resource,
    }
}

/// All routes, each with its policy.
pub fn routes() -> Routes {
    use Permission as P;
    use ResourceKind as R;
    let manage = |r| member(P::ManageDirectory, r);
    Routes::default()
        .add(Method::GET, "/healthz", Access::Public, healthz)
        .add(Method::GET, "/readyz", Access::Public, readyz)
        .add(Method::GET, "/metrics", Access::Public, metrics_text)
        .add(Method::GET, "/openapi.json", Access::Public, openapi_json)
        .add(Method::GET, "/docs", Access::Public, docs_page)
        .add(Method::GET, "/.well-known/jwks.json", Access::Public, jwks)
        .add(
            Method::GET,
            "/schools/{school}/me",
            member(P::ReadOwnProfile, R::School),
            school::me,
        )
        .add(
            Method::POST,
            "/schools/{school}/people",
            manage(R::School),
            school::register_person,
        )
        .add(
            Method::POST,
            "/schools/{school}/people/{person}/roles",
            manage(R::Person),
            school::grant_role,
        )
        .add(
            Method::DELETE,
            "/schools/{school}/people/{person}/roles/{role}",
            manage(R::Person),
            school::revoke_role,
        )
        .add(
            Method::POST,
            "/schools/{school}/students/{student}/guardians",
            manage(R::Student),
            school::link_guardian,
        )
        .add(
            Method::DELETE,
            "/schools/{school}/students/{student}/guardians/{guardian}",
            manage(R::Student),
            school::unlink_guardian,
        )
        .add(
            Method::POST,
            "/schools/{school}/classes",
            manage(R::School),
            school::create_class,
        )
        .add(
            Method::POST,
            "/schools/{school}/classes/{class}/teachers",
            manage(R::Class),
            school::assign_teacher,
        )
        .add(
            Method::POST,
            "/schools/{school}/classes/{class}/students",
            manage(R::Class),
            school::enrol_student,
        )
        .add(
            Method::GET,
            "/schools/{school}/classes/{class}",
            member(P::ReadClass, R::Class),
            school::class_roster,
        )
        .add(
            Method::GET,
            "/schools/{school}/students/{student}",
            member(P::ReadStudent, R::Student),
            school::student_record,
        )
        .add(
            Method::GET,
            "/schools/{school}/students/{student}/access-log",
            member(P::ReadStudentAccessLog, R::Student),
            school::student_access_log,
        )
        .add(
            Method::GET,
            "/schools/{school}/access-log",
            member(P::ReadAccessLog, R::School),
            school::school_access_log,
        )
        .add(
            Method::GET,
            "/schools/{school}/audit",
            member(P::ReadAccessLog, R::School),
            audit::school_audit,
        )
        .add(
            Method::GET,
            "/schools/{school}/students/{student}/audit",
            member(P::ReadStudentAccessLog, R::Student),
            audit::student_audit,
        )
        .add(
            Method::GET,
            "/schools/{school}/students/{student}/years/{year}/family",
            member(P::ReadRecord, R::Student),
            family::overview,
        )
        .add(
            Method::GET,
            "/schools/{school}/students/{student}/years/{year}/family/{section}",
            member(P::ReadRecord, R::Student),
            family::list,
        )
        .add(
            Method::POST,
            "/schools/{school}/classes/{class}/years/{year}/scrutini",
            member(P::RunScrutiny, R::Class),
            scrutiny::open,
        )
        .add(
            Method::GET,
            "/schools/{school}/classes/{class}/years/{year}/scrutini/{term}",
            member(P::ReadScrutiny, R::Class),
            scrutiny::view,
        )
        .add(
            Method::POST,
            "/schools/{school}/classes/{class}/years/{year}/scrutini/{term}/proposals",
            member(P::ProposeGrades, R::Class),
            scrutiny::propose,
        )
        .add(
            Method::POST,
            "/schools/{school}/classes/{class}/years/{year}/scrutini/{term}/session",
            member(P::RunScrutiny, R::Class),
            scrutiny::session,
        )
        .add(
            Method::POST,
            "/schools/{school}/classes/{class}/years/{year}/scrutini/{term}/deliberations",
            member(P::RunScrutiny, R::Class),
            scrutiny::deliberate,
        )
        .add(
            Method::POST,
            "/schools/{school}/classes/{class}/years/{year}/scrutini/{term}/exemptions",
            member(P::RunScrutiny, R::Class),
            scrutiny::exempt,
        )
        .add(
            Method::POST,
            "/schools/{school}/classes/{class}/years/{year}/scrutini/{term}/outcomes",
            member(P::RunScrutiny, R::Class),
            scrutiny::decide_outcome,
        )
        .add(
            Method::POST,
            "/schools/{school}/classes/{class}/years/{year}/scrutini/{term}/closure",
            member(P::RunScrutiny, R::Class),
            scrutiny::close,
        )
        .add(
            Method::POST,
            "/schools/{school}/classes/{class}/years/{year}/scrutini/{term}/reopening",
            member(P::RunScrutiny, R::Class),
            scrutiny::reopen,
        )
        .add(
            Method::POST,
            "/schools/{school}/classes/{class}/years/{year}/scrutini/{term}/integration",
            member(P::RunScrutiny, R::Class),
            scrutiny::integrate,
        )
        .add(
            Method::POST,
            "/schools/{school}/classes/{class}/years/{year}/scrutini/{term}/integration-session",
            member(P::RunScrutiny, R::Class),
            scrutiny::integration_session,
        )
        .add(
            Method::POST,
            "/schools/{school}/classes/{class}/years/{year}/scrutini/{term}/outcomes/withdrawal",
            member(P::RunScrutiny, R::Class),
            scrutiny::withdraw_outcome,
        )
        .add(
            Method::POST,
            "/schools/{school}/classes/{class}/years/{year}/scrutini/{term}/publication",
            member(P::RunScrutiny, R::Class),
            scrutiny::publish,
        )
        .add(
            Method::GET,
            "/schools/{school}/classes/{class}/years/{year}/scrutini/{term}/minutes",
            member(P::ReadScrutiny, R::Class),
            scrutiny::minutes,
        )
        .add(
            Method::GET,
            "/schools/{school}/students/{student}/years/{year}/report-cards/{term}",
            member(P::ReadRecord, R::Student),
            family::report_card,
        )
        .add(
            Method::PUT,
            "/schools/{school}/years/{year}",
            manage(R::School),
            register::plan_year,
        )
        .add(
            Method::GET,
            "/schools/{school}/years/{year}",
            member(P::ReadCalendar, R::School),
            register::year_plan,
        )
        .add(
            Method::POST,
            "/schools/{school}/subjects",
            manage(R::School),
            register::define_subject,
        )
        .add(
            Method::GET,
            "/schools/{school}/subjects",
            member(P::ReadCalendar, R::School),
            register::subjects,
        )
        .add(
            Method::PUT,
            "/schools/{school}/settings/justifications",
            manage(R::School),
            register::set_justification_rules,
        )
        .add(
            Method::GET,
            "/schools/{school}/settings/justifications",
            member(P::ReadCalendar, R::School),
            register::justification_rules,
        )
        .add(
            Method::GET,
            "/schools/{school}/students/{student}/personal-data",
            member(P::SubjectAccess, R::Student),
            subject_access::personal_data,
        )
        .add(
            Method::GET,
            "/schools/{school}/history/students/{student}/years/{year}/family",
            member(P::AuditLog, R::Student),
            history::family,
        )
        .add(
            Method::GET,
            "/schools/{school}/history/classes/{class}/years/{year}/scrutini/{term}",
            member(P::AuditLog, R::Class),
            history::scrutiny,
        )
        .add(
            Method::GET,
            "/schools/{school}/log",
            member(P::AuditLog, R::School),
            auditor::log,
        )
        .add(
            Method::GET,
            "/schools/{school}/log/streams/{stream}",
            member(P::AuditLog, R::School),
            auditor::stream,
        )
        .add(
            Method::GET,
            "/schools/{school}/chain",
            member(P::AuditLog, R::School),
            auditor::chain,
        )
        .add(
            Method::POST,
            "/schools/{school}/retention/run",
            member(P::RunRetention, R::School),
            retention::run_now,
        )
        .add(
            Method::PUT,
            "/schools/{school}/settings/retention",
            manage(R::School),
            retention::set_rules,
        )
        .add(
            Method::GET,
            "/schools/{school}/settings/retention",
            member(P::ReadCalendar, R::School),
            retention::rules,
        )
        .add(
            Method::GET,
            "/schools/{school}/export",
            member(P::ExportSchool, R::School),
            portability::export,
        )
        .add(
            Method::POST,
            "/schools/{school}/export/keys",
            member(P::ExportSchool, R::School),
            portability::key_bundle,
        )
        .add(
            Method::PUT,
            "/schools/{school}/settings/scrutini",
            manage(R::School),
            scrutiny::set_scrutiny_rules,
        )
        .add(
            Method::GET,
            "/schools/{school}/settings/scrutini",
            member(P::ReadCalendar, R::School),
            scrutiny::scrutiny_rules,
        )
        .add(
            Method::POST,
            "/schools/{school}/students/{student}/years/{year}/grades",
            member(P::WriteGrades, R::Student),
            register::give_grade,
        )
        .add(
            Method::GET,
            "/schools/{school}/students/{student}/years/{year}/grades",
            member(P::ReadRecord, R::Student),
            register::student_grades,
        )
        .add(
            Method::POST,
            "/schools/{school}/students/{student}/years/{year}/grades/{grade}/corrections",
            member(P::WriteGrades, R::Student),
            register::correct_grade,
        )
        .add(
            Method::POST,
            "/schools/{school}/students/{student}/years/{year}/grades/{grade}/annulment",
            member(P::WriteGrades, R::Student),
            register::annul_grade,
        )
        .add(
            Method::PUT,
            "/schools/{school}/classes/{class}/timetable",
            manage(R::Class),
            register::set_timetable,
        )
        .add(
            Method::GET,
            "/schools/{school}/classes/{class}/timetable",
            member(P::ReadCalendar, R::Class),
            register::timetable,
        )
        .add(
            Method::POST,
            "/schools/{school}/students/{student}/years/{year}/attendance",
            member(P::WriteAttendance, R::Student),
            register::record_attendance,
        )
        .add(
            Method::GET,
            "/schools/{school}/students/{student}/years/{year}/attendance",
            member(P::ReadRecord, R::Student),
            register::student_attendance,
        )
        .add(
            Method::POST,
            "/schools/{school}/students/{student}/years/{year}/attendance/{entry}/cancellation",
            member(P::WriteAttendance, R::Student),
            register::cancel_attendance,
        )
        .add(
            Method::POST,
            "/schools/{school}/students/{student}/years/{year}/attendance/{entry}/justification",
            member(P::Justify, R::Student),
            register::submit_justification,
        )
        .add(
            Method::POST,
            "/schools/{school}/students/{student}/years/{year}/attendance/{entry}/justification/decision",
            member(P::WriteAttendance, R::Student),
            register::decide_justification,
        )
        .add(
            Method::POST,
            "/schools/{school}/classes/{class}/lessons",
            member(P::SignLessons, R::Class),
            register::sign_lesson,
        )
        .add(
            Method::POST,
            "/schools/{school}/classes/{class}/substitutions",
            manage(R::Class),
            register::assign_substitute,
        )
        .add(
            Method::POST,
            "/schools/{school}/classes/{class}/homework",
            member(P::WriteClassRegister, R::Class),
            register::assign_homework,
        )
        .add(
            Method::POST,
            "/schools/{school}/classes/{class}/tests",
            member(P::WriteClassRegister, R::Class),
            register::schedule_test,
        )
        .add(
            Method::POST,
            "/schools/{school}/classes/{class}/notes",
            member(P::WriteNotes, R::Class),
            register::write_class_note,
        )
        .add(
            Method::POST,
            "/schools/{school}/classes/{class}/notes/{note}/annulment",
            member(P::WriteNotes, R::Class),
            register::annul_class_note,
        )
        .add(
            Method::GET,
            "/schools/{school}/classes/{class}/overdue-justifications",
            member(P::ReadClass, R::Class),
            register::overdue_justifications,
        )
        .add(
            Method::GET,
            "/schools/{school}/classes/{class}/days/{date}",
            member(P::ReadClass, R::Class),
            register::class_day,
        )
        .add(
            Method::POST,
            "/schools/{school}/students/{student}/exemptions",
            manage(R::Student),
            register::exempt_from_subject,
        )
        .add(
            Method::DELETE,
            "/schools/{school}/students/{student}/exemptions/{subject}",
            manage(R::Student),
            register::end_exemption,
        )
        .add(
            Method::POST,
            "/schools/{school}/students/{student}/years/{year}/notes",
            member(P::WriteNotes, R::Student),
            register::write_note,
        )
        .add(
            Method::GET,
            "/schools/{school}/students/{student}/years/{year}/notes",
            member(P::ReadRecord, R::Student),
            register::student_notes,
        )
        .add(
            Method::POST,
            "/schools/{school}/students/{student}/years/{year}/sanctions",
            member(P::WriteNotes, R::Student),
            register::decide_sanction,
        )
        .add(
            Method::POST,
            "/schools/{school}/students/{student}/years/{year}/notes/{note}/annulment",
            member(P::WriteNotes, R::Student),
            register::annul_note,
        )
        .add(
            Method::POST,
            "/schools/{school}/enrolments",
            manage(R::School),
            enrolment::enrol_from_csv,
        )
        .add(
            Method::POST,
            "/schools/{school}/attachments",
            member(P::PublishCommunications, R::School),
            communications::upload_attachment,
        )
        .add(
            Method::POST,
            "/schools/{school}/communications",
            member(P::PublishCommunications, R::School),
            communications::publish,
        )
        .add(
            Method::GET,
            "/schools/{school}/communications",
            member(P::ReadCommunications, R::School),
            communications::list,
        )
        .add(
            Method::GET,
            "/schools/{school}/communications/{communication}",
            member(P::ReadCommunications, R::School),
            communications::communication,
        )
        .add(
            Method::POST,
            "/schools/{school}/communications/{communication}/withdrawal",
            member(P::PublishCommunications, R::School),
            communications::withdraw,
        )
        .add(
            Method::POST,
            "/schools/{school}/communications/{communication}/receipt",
            member(P::ReadCommunications, R::School),
            communications::acknowledge,
        )
        .add(
            Method::POST,
            "/schools/{school}/communications/{communication}/consents",
            member(P::ReadCommunications, R::School),
            communications::answer_consent,
        )
        .add(
            Method::GET,
            "/schools/{school}/communications/{communication}/attachments/{hash}",
            member(P::ReadCommunications, R::School),
            communications::download_attachment,
        )
        .add(
            Method::POST,
            "/schools/{school}/teachers/{person}/meetings",
            member(P::Meetings, R::Person),
            register::offer_slot,
        )
        .add(
            Method::GET,
            "/schools/{school}/teachers/{person}/meetings",
            member(P::Meetings, R::Person),
            register::teacher_slots,
        )
        .add(
            Method::POST,
            "/schools/{school}/teachers/{person}/meetings/{slot}/cancellation",
            member(P::Meetings, R::Person),
            register::cancel_slot,
        )
        .add(
            Method::POST,
            "/schools/{school}/teachers/{person}/meetings/{slot}/bookings",
            member(P::Meetings, R::Person),
            register::book_slot,
        )
        .add(
            Method::DELETE,
            "/schools/{school}/teachers/{person}/meetings/{slot}/bookings/{student}",
            member(P::Meetings, R::Person),
            register::cancel_booking,
        )
        .add(
            Method::POST,
            "/schools/{school}/students/{student}/transfer",
            manage(R::Student),
            school::transfer_student,
        )
        .add(
            Method::POST,
            "/schools/{school}/students/{student}/withdrawal",
            manage(R::Student),
            school::withdraw_student,
        )
        .add(
            Method::PUT,
            "/schools/{school}/classes/{class}/coordinator",
            manage(R::Class),
            school::appoint_coordinator,
        )
        .add(
            Method::POST,
            "/schools/{school}/classes/{class}/years/{year}/grades",
            member(P::WriteClassRegister, R::Class),
            register::give_class_grades,
        )
}

/// The process is alive.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok`.
    #[schema(example = "ok")]
    status: &'static str,
}

/// The outcome of each readiness check.
#[derive(Debug, Serialize, ToSchema)]
pub struct Checks {
    /// `ok` when the database answers.
    #[schema(example = "ok")]
    database: &'static str,
    /// `ok` when every migration is applied.
    #[schema(example = "ok")]
    migrations: &'static str,
    /// `ok` when every projection is `ok`, `degraded` otherwise (see `projections`).
    #[schema(example = "ok")]
    projections: &'static str,
}

/// The service can take traffic.
#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    /// `ready`; `degraded` when a read model is stopped, far behind, not prepared or cannot
    /// be checked: the service still takes writes and the other reads, but the reads of that
    /// model answer stale data or 503.
    #[schema(example = "ready")]
    status: &'static str,
    /// The checks.
    checks: Checks,
    /// Each read model (projection): its state and how far behind the log it is.
    projections: Vec<ProjectionReport>,
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "The process is alive", body = Health)))]
pub(crate) async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// Readiness: the database answers and every migration is applied. The detail reports each
/// read model (projection): its lag and whether its projector stopped. A stopped or lagging
/// read model does not make the service unready (writes and the other reads work): it makes
/// it `degraded` (ADR 0022).
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready to take traffic: `ready`, or `degraded` when a read \
            model is stopped, behind or not prepared", body = Readiness),
        (status = 503, description = "Not ready: the database does not answer or migrations are \
            pending; `Retry-After` is set", body = Problem, content_type = "application/problem+json"),
    ))]
async fn readyz(State(state): State<AppState>) -> Response {
    if let Err(e) = state.store.ping().await {
        tracing::warn!(error = %e, "readiness: database does not answer");
        return problem_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "The database does not answer.".into(),
        );
    }
    match state.store.migration_status().await {
        Ok(status) if status.is_current() => {
            let projections = crate::projections::observe(&state).await;
            let degraded = projections.iter().any(|p| p.state != ProjectionState::Ok);
            Json(Readiness {
                status: if degraded { "degraded" } else { "ready" },
                checks: Checks {
                    database: "ok",
                    migrations: "ok",
                    projections: if degraded { "degraded" } else { "ok" },
                },
                projections,
            })
            .into_response()
        }
        Ok(status) => problem_response(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "Migrations {:?} are pending: run `registro migrate`.",
                status.pending
            ),
        ),
        Err(e) => {
            tracing::error!(error = %e, "readiness: migration check failed");
            problem_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "The database schema does not match this version of registro.".into(),
            )
        }
    }
}

/// Prometheus metrics of this process (OpenMetrics text), and of each read model
/// (projection) as the database shows it: `registro_projection_lag_events`,
/// `registro_projection_lag_seconds`, `registro_projection_stopped`.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses(
        (status = 200, description = "The metrics", body = String,
            content_type = "application/openmetrics-text"),
    ))]
async fn metrics_text(State(state): State<AppState>) -> Result<Response, ApiError> {
    crate::projections::observe(&state).await;
    let text = state
        .metrics
        .encode()
        .map_err(|e| ApiError::Internal(e.into()))?;
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(metrics::CONTENT_TYPE),
        )],
        text,
    )
        .into_response())
}

/// This API's OpenAPI 3.1 description.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "The OpenAPI document", body = Object,
        content_type = "application/json")))]
async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

/// A browsable page of the API, self-contained: it loads nothing from other sites.
#[utoipa::path(get, path = "/docs", tag = "operations",
    responses((status = 200, description = "The page", content_type = "text/html")))]
async fn docs_page() -> impl IntoResponse {
    // The page's own inline script renders the document it fetches from this origin.
    (
        [(
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; \
             connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
        )],
        Html(docs::PAGE),
    )
}

/// The public keys of registro's local token issuer (JWKS), used when no external identity
/// provider is configured.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "operations",
    responses(
        (status = 200, description = "The key set (RFC 7517)", body = Object,
            content_type = "application/json"),
        (status = 404, description = "No local issuer: tokens come from the identity provider",
            body = Problem, content_type = "application/problem+json"),
    ))]
async fn jwks(State(state): State<AppState>) -> Result<Response, ApiError> {
    let keys = state.local_jwks.ok_or(ApiError::NotFound)?;
    Ok(Json(&*keys).into_response())
}
