//! The school's routes: the directory (people, roles, guardian links, classes, teacher
//! assignments, enrolments) and the access log. Every route here is protected: the guard
//! ([`crate::auth::guard`]) has authenticated the caller and checked the policy before a handler
//! runs, and put the [`Caller`] in the request.

// utoipa's expansion of `params(...)` names the parameter types by path.
#![allow(unused_qualifications)]

use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use registro_domain::directory::{Directory, DirectoryCommand};
use registro_domain::{ClassId, FiscalCode, PersonId, Role, SchoolId};
use registro_store::{AppendOutcome, CommandMetadata, IdempotencyKey};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::access_log::{self, AccessEntry};
use crate::auth::Caller;
use crate::directory::execute;
use crate::error::ApiError;
use crate::json::{Json, PathIds, QueryOf};
use crate::{AppState, context};

/// The header that makes a command safe to retry.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// Set to `true` on the answer to a retried command: nothing new was written.
pub const IDEMPOTENT_REPLAYED: &str = "idempotent-replayed";
/// The most access-log entries one answer carries.
pub const MAX_ENTRIES: usize = 1000;

/// The outcome of a command.
#[derive(Debug, Serialize, ToSchema)]
pub struct Written {
    /// The `school_seq` of the last event written: the position to wait for when reading
    /// one's own writes (`min_position` on the reads of read models, such as the audit
    /// trail).
    #[schema(example = 1042)]
    pub position: u64,
    /// The id of what was created, when something was.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "0199b3a4-7c1e-7d2a-9f00-3b5c2e8d4a10")]
    pub id: Option<Uuid>,
    /// Things to know, the command done all the same (a second test on the same day).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(example = json!([]))]
    pub warnings: Vec<String>,
}

/// Registers a person.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterPerson {
    /// Their fiscal code (codice fiscale), checked with its check character; an omocodic
    /// variant of a registered code is the same person.
    #[schema(value_type = String, example = "XXXYYY80A01Z999N")]
    pub fiscal_code: FiscalCode,
    /// Cognome.
    #[schema(example = "Ferrari")]
    pub family_name: String,
    /// Nome.
    #[schema(example = "Sofia")]
    pub given_name: String,
    /// The first role: principal, secretary, teacher, guardian, student, auditor or admin.
    #[schema(value_type = String, example = "guardian")]
    pub role: Role,
    /// Their date of birth (for students: an adult student justifies their own absences).
    #[schema(value_type = Option<String>, format = Date, example = "2010-05-01")]
    #[serde(default, with = "registro_domain::iso_date::option")]
    pub birth_date: Option<time::Date>,
}

/// A role to give.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GrantRole {
    /// The role.
    #[schema(value_type = String, example = "teacher")]
    pub role: Role,
}

/// A guardian to link to the student in the path.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkGuardian {
    /// The guardian (a person holding the guardian role).
    #[schema(value_type = Uuid, example = "0199b3a4-7c1e-7d2a-9f00-3b5c2e8d4a10")]
    pub guardian: PersonId,
}

/// A class to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateClass {
    /// Its name, unique in the school.
    #[schema(example = "3A liceo scientifico")]
    pub name: String,
}

/// A teacher to assign to the class in the path.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssignTeacher {
    /// The teacher.
    #[schema(value_type = Uuid, example = "0199b3a4-7c1e-7d2a-9f00-3b5c2e8d4a10")]
    pub teacher: PersonId,
    /// The subject (materia).
    #[schema(example = "Matematica")]
    pub subject: String,
}

/// A student to enrol in the class in the path.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnrolStudent {
    /// The student.
    #[schema(value_type = Uuid, example = "0199b3a4-7c1e-7d2a-9f00-3b5c2e8d4a10")]
    pub student: PersonId,
}

/// A person, by name.
#[derive(Debug, Serialize, ToSchema)]
pub struct PersonRef {
    /// The person's id.
    #[schema(example = "0199b3a4-7c1e-7d2a-9f00-3b5c2e8d4a10")]
    pub id: Uuid,
    /// Cognome.
    #[schema(example = "Russo")]
    pub family_name: String,
    /// Nome.
    #[schema(example = "Giulia")]
    pub given_name: String,
}

/// A class, by name.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClassRef {
    /// The class's id.
    #[schema(example = "0199b3a4-7c1e-7d2a-9f00-3b5c2e8d4a10")]
    pub id: Uuid,
    /// Its name.
    #[schema(example = "1A")]
    pub name: String,
}

/// The caller as the school knows them.
#[derive(Debug, Serialize, ToSchema)]
pub struct Me {
    /// The school.
    #[schema(example = "0199b3a4-7c1e-7d2a-9f00-3b5c2e8d4a10")]
    pub school: Uuid,
    /// The caller.
    pub person: PersonRef,
    /// Every role they hold in the school.
    #[schema(example = json!(["teacher"]))]
    pub roles: Vec<String>,
    /// The students they are a guardian of.
    pub children: Vec<PersonRef>,
    /// The classes they teach.
    pub classes: Vec<ClassRef>,
}

/// A student's record (anagrafica).
#[derive(Debug, Serialize, ToSchema)]
pub struct StudentRecord {
    /// The student.
    pub student: PersonRef,
    /// Their class, once enrolled.
    pub class: Option<ClassRef>,
    /// Their linked guardians.
    pub guardians: Vec<PersonRef>,
}

/// A teacher of a class.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClassTeacher {
    /// The teacher.
    pub teacher: PersonRef,
    /// The subject.
    #[schema(example = "Matematica")]
    pub subject: String,
}

/// A class with its teachers and students.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClassRoster {
    /// The class.
    pub class: ClassRef,
    /// Its teachers with their subjects.
    pub teachers: Vec<ClassTeacher>,
    /// Its students.
    pub students: Vec<PersonRef>,
}

/// One recorded read of students' data.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccessRecord {
    /// Its place in the school's log.
    #[schema(example = 1042)]
    pub school_seq: u64,
    /// When.
    #[schema(example = "2025-10-06T08:15:00Z", value_type = String, format = DateTime)]
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// Who read.
    pub reader: Option<PersonRef>,
    /// In which role.
    #[schema(example = "teacher")]
    pub role: String,
    /// Whose data.
    #[schema(example = json!(["0199b3a4-7c1e-7d2a-9f00-3b5c2e8d4a10"]))]
    pub students: Vec<Uuid>,
    /// Which view.
    #[schema(example = "student.grades")]
    pub view: String,
    /// The request that read it, as in the server's logs.
    #[schema(example = "01a20a58-15f7-77ab-a3f2-43ff9ddafb33")]
    pub request_id: String,
}

/// Recorded reads, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccessRecords {
    /// The entries, newest first.
    pub entries: Vec<AccessRecord>,
    /// Pass as `before` to get the next, older, page; absent on the last page.
    #[schema(example = 1042)]
    pub next_before: Option<u64>,
}

/// Which recorded reads to list.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AccessQuery {
    /// Only reads of this student's data.
    #[param(value_type = Option<Uuid>)]
    pub student: Option<PersonId>,
    /// Only reads by this person.
    #[param(value_type = Option<Uuid>)]
    pub reader: Option<PersonId>,
    /// Only reads of this view.
    pub view: Option<String>,
    /// Only reads at or after this time (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub from: Option<OffsetDateTime>,
    /// Only reads before this time (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub to: Option<OffsetDateTime>,
    /// Only entries with a `school_seq` below this (the previous page's `next_before`).
    #[serde(default, deserialize_with = "crate::json::position")]
    pub before: Option<u64>,
    /// At most this many entries (default 100, at most 1000).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
}

/// A page of the school's access log.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Only entries with a `school_seq` below this (the previous page's `next_before`).
    #[serde(default, deserialize_with = "crate::json::position")]
    pub before: Option<u64>,
    /// At most this many entries (default 100, at most 1000).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
}

/// The longest `Idempotency-Key` accepted, in characters.
pub const MAX_IDEMPOTENCY_KEY: usize = 200;

/// The request's idempotency key, scoped to the caller: keys are the client's own, so one
/// person's key never meets another's (nor tells them it was used).
pub(crate) fn idempotency_key(
    headers: &HeaderMap,
    caller: &Caller,
) -> Result<Option<IdempotencyKey>, ApiError> {
    let Some(value) = headers.get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    let bad = || {
        ApiError::BadRequest(format!(
            "The Idempotency-Key header must be 1 to {MAX_IDEMPOTENCY_KEY} characters of \
             A-Z a-z 0-9 - _ . :"
        ))
    };
    let text = value.to_str().map_err(|_| bad())?;
    if text.len() > MAX_IDEMPOTENCY_KEY || IdempotencyKey::parse(text).is_err() {
        return Err(bad());
    }
    IdempotencyKey::parse(format!("{}:{text}", caller.person))
        .map(Some)
        .map_err(|_| bad())
}

/// Runs a directory command for the caller and answers with its outcome.
pub(crate) async fn command(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    command: DirectoryCommand,
    status: StatusCode,
    id: Option<Uuid>,
) -> Result<Response, ApiError> {
    let key = idempotency_key(headers, caller)?;
    let metadata = CommandMetadata::by(caller.person, caller.role);
    let outcome: AppendOutcome = execute(
        state.store.as_ref(),
        &state.directory,
        caller.school,
        metadata,
        &command,
        key,
    )
    .await?;
    Ok(command_response(status, &outcome, id))
}

/// The answer to a command: its position (and the id of what it created), marked as a replay
/// when it is the first attempt's outcome.
pub(crate) fn command_response(
    status: StatusCode,
    outcome: &AppendOutcome,
    id: Option<Uuid>,
) -> Response {
    command_response_warning(status, outcome, id, Vec::new())
}

/// As [`command_response`], with warnings (the command was done all the same).
pub(crate) fn command_response_warning(
    status: StatusCode,
    outcome: &AppendOutcome,
    id: Option<Uuid>,
    warnings: Vec<String>,
) -> Response {
    let mut response = (
        status,
        Json(Written {
            position: outcome.last_seq,
            id,
            warnings,
        }),
    )
        .into_response();
    if outcome.replayed {
        response
            .headers_mut()
            .insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    }
    response
}

/// Refuses an id that names no student of the school: 404, as for one that does not exist.
/// The principal and the office pass the policy for any id, so every student route checks it.
pub(crate) fn known_student(caller: &Caller, student: PersonId) -> Result<(), ApiError> {
    if caller.directory.has_role(student, Role::Student) {
        Ok(())
    } else {
        Err(ApiError::NotFound)
    }
}

/// Refuses a command about the caller's own roles or relationships (see
/// [`crate::policy::may_change_relationships_of`]).
fn not_about_oneself(caller: &Caller, subject: PersonId) -> Result<(), ApiError> {
    if crate::policy::may_change_relationships_of(caller.person, subject) {
        Ok(())
    } else {
        Err(ApiError::Forbidden(
            "Nessuno può modificare i propri ruoli o collegamenti: deve farlo un'altra persona \
             della segreteria o il dirigente."
                .into(),
        ))
    }
}

/// Refuses to give or take away a privileged role unless the caller is a principal (see
/// [`crate::policy::may_assign`]).
fn may_assign(caller: &Caller, role: Role) -> Result<(), ApiError> {
    if crate::policy::may_assign(&caller.roles, role) {
        Ok(())
    } else {
        Err(ApiError::Forbidden(format!(
            "Solo il dirigente scolastico può assegnare o togliere il ruolo {role}."
        )))
    }
}

fn person_ref(dir: &Directory, id: PersonId) -> Option<PersonRef> {
    dir.person(id).map(|p| PersonRef {
        id: id.into(),
        family_name: p.family_name.clone(),
        given_name: p.given_name.clone(),
    })
}

fn class_ref(dir: &Directory, id: ClassId) -> Option<ClassRef> {
    dir.class(id).map(|c| ClassRef {
        id: id.into(),
        name: c.name.clone(),
    })
}

/// Records the caller's read of `students`' data when the policy asks for it; a read that
/// cannot be recorded is refused.
pub(crate) async fn record_read(
    state: &AppState,
    caller: &Caller,
    students: impl IntoIterator<Item = PersonId>,
    view: &str,
) -> Result<(), ApiError> {
    let students: Vec<PersonId> = students
        .into_iter()
        .filter(|s| caller.must_record_reading(*s))
        .collect();
    let request_id = context::current().map(|c| c.id).unwrap_or_default();
    access_log::record(
        state.store.as_ref(),
        caller.school,
        caller.person,
        caller.role,
        students,
        view,
        &request_id,
    )
    .await
    .map_err(|e| {
        tracing::error!(error = %e, "the access log cannot be written: the read is refused");
        ApiError::Unavailable("The read cannot be recorded now; try again shortly.".into())
    })
}

/// Who you are in this school: your roles, your children, your classes.
#[utoipa::path(get, path = "/schools/{school}/me", tag = "directory",
    params(("school" = Uuid, Path, description = "The school")),
    responses((status = 200, description = "The caller", body = Me)))]
pub async fn me(Extension(caller): Extension<Caller>) -> Result<Json<Me>, ApiError> {
    let dir = &caller.directory;
    let person = person_ref(dir, caller.person).ok_or(ApiError::NotFound)?;
    Ok(Json(Me {
        school: caller.school.into(),
        person,
        roles: caller.roles.iter().map(|r| r.as_str().to_owned()).collect(),
        children: dir
            .students_of(caller.person)
            .filter(|s| caller.is_guardian_of(*s))
            .filter_map(|s| person_ref(dir, s))
            .collect(),
        classes: dir
            .classes_of(caller.person)
            .filter_map(|c| class_ref(dir, c))
            .collect(),
    }))
}

/// Registers a person (staff, student or family member) by fiscal code.
#[utoipa::path(post, path = "/schools/{school}/people", tag = "directory",
    params(("school" = Uuid, Path, description = "The school")),
    request_body = RegisterPerson,
    responses(
        (status = 201, description = "Registered; `id` is the new person's", body = Written),
        (status = 409, description = "The fiscal code is already registered",
            body = crate::Problem, content_type = "application/problem+json"),
    ))]
pub async fn register_person(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Json(body): Json<RegisterPerson>,
) -> Result<Response, ApiError> {
    may_assign(&caller, body.role)?;
    let person = PersonId::from_uuid(new_id(&caller, &headers, "person")?);
    let cmd = DirectoryCommand::Register {
        person,
        fiscal_code: body.fiscal_code,
        family_name: body.family_name,
        given_name: body.given_name,
        role: body.role,
        birth_date: body.birth_date,
    };
    command(
        &state,
        &caller,
        &headers,
        cmd,
        StatusCode::CREATED,
        Some(person.into()),
    )
    .await
}

/// The id of something a command creates. With an idempotency key it is derived from the key
/// (and the school and the caller), so that a retry names what the first attempt created and
/// is recognised as the same command; without one it is a new UUIDv7.
pub(crate) fn new_id(caller: &Caller, headers: &HeaderMap, kind: &str) -> Result<Uuid, ApiError> {
    Ok(match idempotency_key(headers, caller)? {
        Some(key) => Uuid::new_v5(
            caller.school.as_uuid(),
            format!("{kind}:{}", key.as_str()).as_bytes(),
        ),
        None => Uuid::now_v7(),
    })
}

/// Gives a person another role.
#[utoipa::path(post, path = "/schools/{school}/people/{person}/roles", tag = "directory",
    params(("school" = Uuid, Path, description = "The school"),
        ("person" = Uuid, Path, description = "The person")),
    request_body = GrantRole,
    responses(
        (status = 201, description = "Granted", body = Written),
        (status = 409, description = "The person already holds the role",
            body = crate::Problem, content_type = "application/problem+json"),
    ))]
pub async fn grant_role(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    PathIds(ids): PathIds<(SchoolId, PersonId)>,
    headers: HeaderMap,
    Json(body): Json<GrantRole>,
) -> Result<Response, ApiError> {
    let (_, person) = ids;
    not_about_oneself(&caller, person)?;
    may_assign(&caller, body.role)?;
    let cmd = DirectoryCommand::GrantRole {
        person,
        role: body.role,
    };
    command(&state, &caller, &headers, cmd, StatusCode::CREATED, None).await
}

/// Takes a role away from a person (the person and their history stay).
#[utoipa::path(delete, path = "/schools/{school}/people/{person}/roles/{role}", tag = "directory",
    params(("school" = Uuid, Path, description = "The school"),
        ("person" = Uuid, Path, description = "The person"),
        ("role" = String, Path, description = "The role")),
    responses(
        (status = 200, description = "Revoked", body = Written),
        (status = 409, description = "The person does not hold the role",
            body = crate::Problem, content_type = "application/problem+json"),
    ))]
pub async fn revoke_role(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    PathIds(ids): PathIds<(SchoolId, PersonId, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (_, person, role) = ids;
    let role: Role = role.parse().map_err(|_| ApiError::NotFound)?;
    not_about_oneself(&caller, person)?;
    may_assign(&caller, role)?;
    let cmd = DirectoryCommand::RevokeRole { person, role };
    command(&state, &caller, &headers, cmd, StatusCode::OK, None).await
}

/// Links a guardian (genitore / tutore) to a student.
#[utoipa::path(post, path = "/schools/{school}/students/{student}/guardians", tag = "directory",
    params(("school" = Uuid, Path, description = "The school"),
        ("student" = Uuid, Path, description = "The student")),
    request_body = LinkGuardian,
    responses(
        (status = 201, description = "Linked", body = Written),
        (status = 409, description = "Already linked",
            body = crate::Problem, content_type = "application/problem+json"),
    ))]
pub async fn link_guardian(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    PathIds(ids): PathIds<(SchoolId, PersonId)>,
    headers: HeaderMap,
    Json(body): Json<LinkGuardian>,
) -> Result<Response, ApiError> {
    let (_, student) = ids;
    not_about_oneself(&caller, body.guardian)?;
    not_about_oneself(&caller, student)?;
    let cmd = DirectoryCommand::LinkGuardian {
        guardian: body.guardian,
        student,
    };
    command(&state, &caller, &headers, cmd, StatusCode::CREATED, None).await
}

/// Ends a guardian's link to a student (e.g. by a court order); other guardians keep theirs.
#[utoipa::path(delete, path = "/schools/{school}/students/{student}/guardians/{guardian}",
    tag = "directory",
    params(("school" = Uuid, Path, description = "The school"),
        ("student" = Uuid, Path, description = "The student"),
        ("guardian" = Uuid, Path, description = "The guardian")),
    responses(
        (status = 200, description = "Unlinked", body = Written),
        (status = 409, description = "Not linked",
            body = crate::Problem, content_type = "application/problem+json"),
    ))]
pub async fn unlink_guardian(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    PathIds(ids): PathIds<(SchoolId, PersonId, PersonId)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (_, student, guardian) = ids;
    not_about_oneself(&caller, guardian)?;
    not_about_oneself(&caller, student)?;
    let cmd = DirectoryCommand::UnlinkGuardian { guardian, student };
    command(&state, &caller, &headers, cmd, StatusCode::OK, None).await
}

/// Creates a class.
#[utoipa::path(post, path = "/schools/{school}/classes", tag = "directory",
    params(("school" = Uuid, Path, description = "The school")),
    request_body = CreateClass,
    responses(
        (status = 201, description = "Created; `id` is the new class's", body = Written),
        (status = 409, description = "A class has this name",
            body = crate::Problem, content_type = "application/problem+json"),
    ))]
pub async fn create_class(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Json(body): Json<CreateClass>,
) -> Result<Response, ApiError> {
    let class = ClassId::from_uuid(new_id(&caller, &headers, "class")?);
    let cmd = DirectoryCommand::CreateClass {
        class,
        name: body.name,
    };
    command(
        &state,
        &caller,
        &headers,
        cmd,
        StatusCode::CREATED,
        Some(class.into()),
    )
    .await
}

/// Assigns a teacher to teach a subject in a class (cattedra).
#[utoipa::path(post, path = "/schools/{school}/classes/{class}/teachers", tag = "directory",
    params(("school" = Uuid, Path, description = "The school"),
        ("class" = Uuid, Path, description = "The class")),
    request_body = AssignTeacher,
    responses(
        (status = 201, description = "Assigned", body = Written),
        (status = 409, description = "Already assigned",
            body = crate::Problem, content_type = "application/problem+json"),
    ))]
pub async fn assign_teacher(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    PathIds(ids): PathIds<(SchoolId, ClassId)>,
    headers: HeaderMap,
    Json(body): Json<AssignTeacher>,
) -> Result<Response, ApiError> {
    let (_, class) = ids;
    not_about_oneself(&caller, body.teacher)?;
    let cmd = DirectoryCommand::AssignTeacher {
        teacher: body.teacher,
        class,
        subject: body.subject,
    };
    command(&state, &caller, &headers, cmd, StatusCode::CREATED, None).await
}

/// Enrols a student in a class.
#[utoipa::path(post, path = "/schools/{school}/classes/{class}/students", tag = "directory",
    params(("school" = Uuid, Path, description = "The school"),
        ("class" = Uuid, Path, description = "The class")),
    request_body = EnrolStudent,
    responses(
        (status = 201, description = "Enrolled", body = Written),
        (status = 409, description = "Already enrolled in a class",
            body = crate::Problem, content_type = "application/problem+json"),
    ))]
pub async fn enrol_student(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    PathIds(ids): PathIds<(SchoolId, ClassId)>,
    headers: HeaderMap,
    Json(body): Json<EnrolStudent>,
) -> Result<Response, ApiError> {
    let (_, class) = ids;
    not_about_oneself(&caller, body.student)?;
    let cmd = DirectoryCommand::EnrolStudent {
        student: body.student,
        class,
    };
    command(&state, &caller, &headers, cmd, StatusCode::CREATED, None).await
}

/// A class with its teachers and students. A read of the students' names by staff is recorded
/// in the access log.
#[utoipa::path(get, path = "/schools/{school}/classes/{class}", tag = "directory",
    params(("school" = Uuid, Path, description = "The school"),
        ("class" = Uuid, Path, description = "The class")),
    responses((status = 200, description = "The class", body = ClassRoster)))]
pub async fn class_roster(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    PathIds(ids): PathIds<(SchoolId, ClassId)>,
) -> Result<Json<ClassRoster>, ApiError> {
    let (_, class) = ids;
    let dir = &caller.directory;
    let c = dir.class(class).ok_or(ApiError::NotFound)?;
    record_read(&state, &caller, c.students.iter().copied(), "class.roster").await?;
    Ok(Json(ClassRoster {
        class: ClassRef {
            id: class.into(),
            name: c.name.clone(),
        },
        teachers: c
            .teachers
            .iter()
            .filter_map(|(t, subject)| {
                Some(ClassTeacher {
                    teacher: person_ref(dir, *t)?,
                    subject: subject.clone(),
                })
            })
            .collect(),
        students: c
            .students
            .iter()
            .filter_map(|s| person_ref(dir, *s))
            .collect(),
    }))
}

/// A student's record: name, class, guardians. A read by anyone but the student and their
/// guardians is recorded in the access log, which the family can see.
#[utoipa::path(get, path = "/schools/{school}/students/{student}", tag = "directory",
    params(("school" = Uuid, Path, description = "The school"),
        ("student" = Uuid, Path, description = "The student")),
    responses((status = 200, description = "The record", body = StudentRecord)))]
pub async fn student_record(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    PathIds(ids): PathIds<(SchoolId, PersonId)>,
) -> Result<Json<StudentRecord>, ApiError> {
    let (_, student) = ids;
    known_student(&caller, student)?;
    let dir = &caller.directory;
    let record = StudentRecord {
        student: person_ref(dir, student).ok_or(ApiError::NotFound)?,
        class: dir.class_of(student).and_then(|c| class_ref(dir, c)),
        guardians: dir
            .guardians_of(student)
            .filter_map(|g| person_ref(dir, g))
            .collect(),
    };
    record_read(&state, &caller, [student], "student.record").await?;
    Ok(Json(record))
}

/// Who read this student's data, when, in which role and which view: for the family (GDPR
/// art. 15), the principal and auditors. Reads by the principal and auditors are recorded too.
#[utoipa::path(get, path = "/schools/{school}/students/{student}/access-log", tag = "access log",
    params(("school" = Uuid, Path, description = "The school"),
        ("student" = Uuid, Path, description = "The student"), PageQuery),
    responses((status = 200, description = "The reads, newest first", body = AccessRecords)))]
pub async fn student_access_log(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    PathIds(ids): PathIds<(SchoolId, PersonId)>,
    QueryOf(page): QueryOf<PageQuery>,
) -> Result<Json<AccessRecords>, ApiError> {
    let (_, student) = ids;
    known_student(&caller, student)?;
    let query = AccessQuery {
        student: Some(student),
        before: page.before,
        limit: page.limit,
        ..AccessQuery::default()
    };
    let records = access_records(&state, &caller, &query).await?;
    record_read(&state, &caller, [student], "student.access_log").await?;
    Ok(Json(records))
}

/// The school's access log, filtered: for the principal and auditors. Asking for one student's
/// entries is a read of that student's log, recorded like the per-student route's.
#[utoipa::path(get, path = "/schools/{school}/access-log", tag = "access log",
    params(("school" = Uuid, Path, description = "The school"), AccessQuery),
    responses((status = 200, description = "The reads, newest first", body = AccessRecords)))]
pub async fn school_access_log(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    QueryOf(query): QueryOf<AccessQuery>,
) -> Result<Json<AccessRecords>, ApiError> {
    let records = access_records(&state, &caller, &query).await?;
    if let Some(student) = query.student {
        record_read(&state, &caller, [student], "student.access_log").await?;
    }
    Ok(Json(records))
}

pub(crate) async fn access_records(
    state: &AppState,
    caller: &Caller,
    q: &AccessQuery,
) -> Result<AccessRecords, ApiError> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=MAX_ENTRIES).contains(&limit) {
        return Err(ApiError::Unprocessable(format!(
            "limit: da 1 a {MAX_ENTRIES}"
        )));
    }
    let log = state
        .access_log
        .current(state.store.as_ref(), caller.school)
        .await?
        .state;
    let wanted = |e: &&AccessEntry| {
        q.before.is_none_or(|b| e.school_seq < b)
            && q.student.is_none_or(|s| e.students.contains(&s))
            && q.reader.is_none_or(|r| e.actor == Some(r))
            && q.view.as_ref().is_none_or(|v| &e.view == v)
            && q.from.is_none_or(|f| e.at >= f)
            && q.to.is_none_or(|t| e.at < t)
    };
    let dir = &caller.directory;
    let mut entries: Vec<AccessRecord> = log
        .newest_first()
        .filter(wanted)
        .take(limit + 1)
        .map(|e| AccessRecord {
            school_seq: e.school_seq,
            at: e.at,
            reader: e.actor.and_then(|a| person_ref(dir, a)),
            role: e.role.as_str().to_owned(),
            // A family sees only their own child among the students read together.
            students: e
                .students
                .iter()
                .filter(|s| q.student.is_none_or(|only| only == **s))
                .map(|s| Uuid::from(*s))
                .collect(),
            view: e.view.clone(),
            request_id: e.request_id.clone(),
        })
        .collect();
    let next_before = (entries.len() > limit).then(|| {
        entries.truncate(limit);
        entries.last().map_or(0, |e| e.school_seq)
    });
    Ok(AccessRecords {
        entries,
        next_before,
    })
}

/// The class a student moves to.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Transfer {
    /// The class.
    #[schema(value_type = Uuid, example = "0199b3a4-7c1e-7d2a-9f00-3b5c2e8d4a10")]
    pub class: ClassId,
}

/// Moves an enrolled student to another class of the school (trasferimento di classe).
#[utoipa::path(post, path = "/schools/{school}/students/{student}/transfer", tag = "directory",
    params(("school" = Uuid, Path, description = "The school"),
        ("student" = Uuid, Path, description = "The student")),
    request_body = Transfer,
    responses((status = 201, description = "Moved", body = Written)))]
pub async fn transfer_student(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    PathIds(ids): PathIds<(SchoolId, PersonId)>,
    headers: HeaderMap,
    Json(body): Json<Transfer>,
) -> Result<Response, ApiError> {
    let (_, student) = ids;
    not_about_oneself(&caller, student)?;
    let cmd = DirectoryCommand::TransferStudent {
        student,
        class: body.class,
    };
    command(&state, &caller, &headers, cmd, StatusCode::CREATED, None).await
}

/// Why a student leaves.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Withdrawal {
    /// Why (ritiro, nulla osta to another school...).
    #[schema(example = "nulla osta verso altro istituto")]
    pub reason: String,
}

/// A student leaves the school (ritiro): they stay in the history, in no class.
#[utoipa::path(post, path = "/schools/{school}/students/{student}/withdrawal", tag = "directory",
    params(("school" = Uuid, Path, description = "The school"),
        ("student" = Uuid, Path, description = "The student")),
    request_body = Withdrawal,
    responses((status = 201, description = "Withdrawn", body = Written)))]
pub async fn withdraw_student(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    PathIds(ids): PathIds<(SchoolId, PersonId)>,
    headers: HeaderMap,
    Json(body): Json<Withdrawal>,
) -> Result<Response, ApiError> {
    let (_, student) = ids;
    not_about_oneself(&caller, student)?;
    let cmd = DirectoryCommand::WithdrawStudent {
        student,
        reason: body.reason,
    };
    command(&state, &caller, &headers, cmd, StatusCode::CREATED, None).await
}

/// A class's coordinator.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Coordinator {
    /// A teacher assigned to the class.
    #[schema(value_type = Uuid, example = "0199b3a4-7c1e-7d2a-9f00-3b5c2e8d4a10")]
    pub teacher: PersonId,
}

/// Names a teacher of the class its coordinator (coordinatore di classe).
#[utoipa::path(put, path = "/schools/{school}/classes/{class}/coordinator", tag = "directory",
    params(("school" = Uuid, Path, description = "The school"),
        ("class" = Uuid, Path, description = "The class")),
    request_body = Coordinator,
    responses((status = 200, description = "Appointed", body = Written)))]
pub async fn appoint_coordinator(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    PathIds(ids): PathIds<(SchoolId, ClassId)>,
    headers: HeaderMap,
    Json(body): Json<Coordinator>,
) -> Result<Response, ApiError> {
    let (_, class) = ids;
    not_about_oneself(&caller, body.teacher)?;
    let cmd = DirectoryCommand::AppointCoordinator {
        class,
        teacher: body.teacher,
    };
    command(&state, &caller, &headers, cmd, StatusCode::OK, None).await
}
