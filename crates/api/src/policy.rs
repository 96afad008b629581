//! The authorisation policy: one place that says who may do what to which resource.
//!
//! Every route is mounted together with its [`Access`] ([`crate::routes::Routes::add`]): there
//! is no other way to mount one, so a route without a declared policy cannot exist, and
//! [`check_documented`] refuses to start when a mounted route and the OpenAPI document
//! disagree. Requests are authorised by [`decide`] from the school's directory (people, roles,
//! guardian links, teacher assignments, enrolments), a read model kept current by the events.
//!
//! **403 or 404.** A caller who may not know that a resource exists gets 404, exactly as if it
//! did not exist: another school's anything; a student who is not the caller's child, pupil or
//! self; a class the teacher does not teach. A caller who may see the resource but lacks the
//! permission for the action, in every role they hold, gets 403 (a guardian calling a
//! secretary's command, an auditor reading a student's record): that the route exists is public
//! (it is in the OpenAPI document), so the 403 reveals nothing. See `docs/authorization.md`.

use std::collections::BTreeSet;

use axum::http::Method;
use registro_domain::directory::Directory;
use registro_domain::{ClassId, PersonId, Role};
use serde::Serialize;

/// What an action needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    /// Read one's own profile in the school: any member.
    ReadOwnProfile,
    /// Change the directory (people, roles, guardian links, classes, assignments, enrolments):
    /// principal and secretary.
    ManageDirectory,
    /// Read a student's record: principal and secretary; the student's teachers, guardians, and
    /// the student.
    ReadStudent,
    /// Read a class and its roster: principal and secretary; the class's teachers.
    ReadClass,
    /// Read who accessed a student's data: principal and auditor; the student's guardians and
    /// the student.
    ReadStudentAccessLog,
    /// Query the school's whole access log: principal and auditor.
    ReadAccessLog,
    /// Read the school calendar (years and terms): any member.
    ReadCalendar,
    /// Give, correct and annul a student's grades: the student's teachers (and only for the
    /// subjects they teach in the student's class, which the command itself checks).
    WriteGrades,
    /// Record a student's absences, late entries and early exits, and decide on their
    /// justifications: the student's teachers.
    WriteAttendance,
    /// Justify a student's absences, late entries and early exits: the student's guardians, and
    /// the student (whether they may, by age, the command itself checks: `rules.md` section 5).
    Justify,
    /// Read a student's record for a year (grades, attendance): the principal; the student's
    /// teachers, guardians, and the student.
    ReadRecord,
    /// Sign a lesson hour of a class: any teacher of the school (whether assigned to the class
    /// or its recorded substitute, the command itself checks).
    SignLessons,
    /// Set homework and schedule tests for a class: its teachers (the command checks the
    /// subject).
    WriteClassRegister,
    /// Write and annul a student's notes and sanctions, and a class's notes: the teachers of the
    /// student or the class (notes) and the principal (sanctions, annulments; the command checks
    /// which).
    WriteNotes,
    /// A teacher's parent-teacher meetings: the teacher (offers, cancels, reads), the guardians
    /// of the students they teach (book, cancel their bookings, read), the principal (reads);
    /// the command checks who does what.
    Meetings,
    /// Upload attachments, publish and withdraw communications: the principal and the office
    /// (anything), the teachers (notices to the families or students of their classes; the
    /// command checks which).
    PublishCommunications,
    /// Read the communications addressed to one, acknowledge them and answer their consents:
    /// every member but the auditor and the admin (the command and the catalogue check which
    /// communications reach whom).
    ReadCommunications,
    /// Run a class's scrutini (open, session, deliberations, close, reopen): the principal,
    /// and the class's teachers, of whom the domain lets only the coordinator act.
    RunScrutiny,
    /// Enter proposals of grades at a scrutinio: the class's teachers.
    ProposeGrades,
    /// Read a class's scrutinio: the principal and the class's teachers.
    ReadScrutiny,
    /// Download the school's whole log and its key bundle, to move it to another instance: the
    /// administrator.
    ExportSchool,
    /// Run the retention now (erase the special-category details whose retention ended): the
    /// administrator.
    RunRetention,
    /// Read the log itself (events as stored, a stream's history) and check the chain: the
    /// principal and the auditors.
    AuditLog,
    /// Download everything the school holds about a student (GDPR art. 15 and 20): the
    /// principal, the student's guardians and the student (once of age, which the route checks).
    SubjectAccess,
}

impl Permission {
    /// Every permission.
    pub const ALL: [Permission; 24] = [
        Permission::ReadOwnProfile,
        Permission::ManageDirectory,
        Permission::ReadStudent,
        Permission::ReadClass,
        Permission::ReadStudentAccessLog,
        Permission::ReadAccessLog,
        Permission::ReadCalendar,
        Permission::WriteGrades,
        Permission::WriteAttendance,
        Permission::Justify,
        Permission::ReadRecord,
        Permission::SignLessons,
        Permission::WriteClassRegister,
        Permission::WriteNotes,
        Permission::Meetings,
        Permission::PublishCommunications,
        Permission::ReadCommunications,
        Permission::RunScrutiny,
        Permission::ProposeGrades,
        Permission::ReadScrutiny,
        Permission::ExportSchool,
        Permission::RunRetention,
        Permission::AuditLog,
        Permission::SubjectAccess,
    ];

    /// Whether `role` holds this permission for some resource of its school.
    #[must_use]
    pub fn held_by(self, role: Role) -> bool {
        use Permission as P;
        use Role as R;
        match self {
            P::ReadOwnProfile | P::ReadCalendar => role != R::System,
            P::WriteGrades | P::WriteAttendance => role == R::Teacher,
            P::Justify => matches!(role, R::Guardian | R::Student),
            P::SignLessons | P::WriteClassRegister => role == R::Teacher,
            P::WriteNotes => matches!(role, R::Teacher | R::Principal),
            P::Meetings => matches!(role, R::Teacher | R::Principal | R::Guardian),
            P::PublishCommunications => matches!(role, R::Principal | R::Secretary | R::Teacher),
            P::ReadCommunications => matches!(
                role,
                R::Principal | R::Secretary | R::Teacher | R::Guardian | R::Student
            ),
            P::ReadRecord => matches!(role, R::Principal | R::Teacher | R::Guardian | R::Student),
            P::ManageDirectory => matches!(role, R::Principal | R::Secretary),
            P::ReadStudent => matches!(
                role,
                R::Principal | R::Secretary | R::Teacher | R::Guardian | R::Student
            ),
            P::ReadClass => matches!(role, R::Principal | R::Secretary | R::Teacher),
            P::ReadStudentAccessLog => {
                matches!(role, R::Principal | R::Auditor | R::Guardian | R::Student)
            }
            P::ReadAccessLog => matches!(role, R::Principal | R::Auditor),
            P::RunScrutiny | P::ReadScrutiny => matches!(role, R::Principal | R::Teacher),
            P::ProposeGrades => role == R::Teacher,
            P::ExportSchool | P::RunRetention => role == R::Admin,
            P::AuditLog => matches!(role, R::Principal | R::Auditor),
            P::SubjectAccess => matches!(role, R::Principal | R::Guardian | R::Student),
        }
    }
}

/// The kind of resource a route touches, named by its path parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ResourceKind {
    /// The school itself (`{school}`).
    School,
    /// A person of the school (`{person}`), as the directory's managers see them.
    Person,
    /// A student (`{student}`).
    Student,
    /// A class (`{class}`).
    Class,
}

impl ResourceKind {
    /// The path parameter that names the resource.
    #[must_use]
    pub const fn parameter(self) -> &'static str {
        match self {
            Self::School => "school",
            Self::Person => "person",
            Self::Student => "student",
            Self::Class => "class",
        }
    }
}

/// Who may call a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Anyone, without a token (health, metrics, the API's description, the local JWKS).
    Public,
    /// A member of the school in the path holding `permission` for the resource.
    Member {
        /// The permission needed.
        permission: Permission,
        /// The resource it is checked against.
        resource: ResourceKind,
    },
}

/// A mounted route and its policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// The method.
    pub method: Method,
    /// The path template, as axum and OpenAPI write it (`/schools/{school}/me`).
    pub path: &'static str,
    /// Who may call it.
    pub access: Access,
}

/// The resource a request touches, its id read from the path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// The school.
    School,
    /// A person.
    Person(PersonId),
    /// A student.
    Student(PersonId),
    /// A class.
    Class(ClassId),
}

/// The outcome of authorisation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Allowed, acting in this role (the first of the caller's roles that allows it, in
    /// [`Role::ALL`] order).
    Allow(Role),
    /// 403: none of the caller's roles holds the permission.
    Forbidden,
    /// 404: the caller may not know the resource exists.
    Hidden,
}

/// Whether `role` allows `caller` `permission` on `target`.
fn allows(
    dir: &Directory,
    caller: PersonId,
    role: Role,
    permission: Permission,
    target: Target,
) -> bool {
    use Permission as P;
    use Role as R;
    if !permission.held_by(role) {
        return false;
    }
    match (permission, role, target) {
        // School-wide for the principal and the secretary, and for what needs no resource.
        (_, R::Principal | R::Secretary, _)
        | (
            P::ReadOwnProfile
            | P::ReadAccessLog
            | P::ReadCalendar
            | P::PublishCommunications
            | P::ReadCommunications,
            _,
            _,
        ) => true,
        (P::ReadStudentAccessLog, R::Auditor, Target::Student(_)) => true,
        (
            P::ReadStudent | P::ReadRecord | P::WriteGrades | P::WriteAttendance | P::WriteNotes,
            R::Teacher,
            Target::Student(s),
        ) => dir.teaches_student(caller, s),
        (
            P::ReadClass
            | P::WriteClassRegister
            | P::WriteNotes
            | P::RunScrutiny
            | P::ProposeGrades
            | P::ReadScrutiny,
            R::Teacher,
            Target::Class(c),
        ) => dir.teaches_class(caller, c),
        (P::SignLessons, R::Teacher, Target::Class(_)) => true,
        (P::ExportSchool | P::RunRetention, R::Admin, Target::School)
        | (P::AuditLog, R::Auditor, Target::School | Target::Student(_) | Target::Class(_)) => true,
        (P::Meetings, R::Teacher, Target::Person(p)) => p == caller,
        (P::Meetings, R::Guardian, Target::Person(p)) => {
            dir.students_of(caller).any(|s| dir.teaches_student(p, s))
        }
        (
            P::ReadStudent
            | P::ReadStudentAccessLog
            | P::ReadRecord
            | P::Justify
            | P::SubjectAccess,
            R::Guardian,
            Target::Student(s),
        ) => dir.is_linked(caller, s),
        (
            P::ReadStudent
            | P::ReadStudentAccessLog
            | P::ReadRecord
            | P::Justify
            | P::SubjectAccess,
            R::Student,
            Target::Student(s),
        ) => s == caller,
        _ => false,
    }
}

/// Decides whether `caller`, holding `roles` in the school, may use `permission` on `target`.
#[must_use]
pub fn decide(
    dir: &Directory,
    caller: PersonId,
    roles: &BTreeSet<Role>,
    permission: Permission,
    target: Target,
) -> Decision {
    if let Some(role) = Role::ALL
        .into_iter()
        .filter(|r| roles.contains(r))
        .find(|r| allows(dir, caller, *r, permission, target))
    {
        return Decision::Allow(role);
    }
    if roles.iter().any(|r| permission.held_by(*r)) {
        Decision::Hidden
    } else {
        Decision::Forbidden
    }
}

/// Whether `caller` may change the roles and relationships of `subject`: never their own. A
/// secretary cannot make themself principal, nor link themself to a student as a guardian (and
/// so gain a family's rights over the student), nor revoke their own role; someone else must.
/// Checked by the directory's commands on the person each command is about.
#[must_use]
pub fn may_change_relationships_of(caller: PersonId, subject: PersonId) -> bool {
    caller != subject
}

/// Whether a role carries power over the whole school (principal, secretary) or over its
/// accountability (auditor, admin): such roles are given and taken away only by a principal.
#[must_use]
pub const fn is_privileged(role: Role) -> bool {
    matches!(
        role,
        Role::Principal | Role::Secretary | Role::Auditor | Role::Admin | Role::System
    )
}

/// Whether a caller holding `caller_roles` may give or take away `role` (registering a person
/// in it included): anyone who manages the directory for the other roles, only a principal for
/// the privileged ones. So a secretary cannot create an accomplice principal or admin, nor
/// remove the principal or the auditors.
#[must_use]
pub fn may_assign(caller_roles: &BTreeSet<Role>, role: Role) -> bool {
    !is_privileged(role) || caller_roles.contains(&Role::Principal)
}

/// Checks that the mounted routes and the OpenAPI document name the same operations, so that
/// nothing is served that the policy table and the documentation do not both know.
///
/// # Errors
/// A description of every difference.
pub fn check_documented(rules: &[Rule], doc: &utoipa::openapi::OpenApi) -> Result<(), String> {
    let mounted: BTreeSet<(String, String)> = rules
        .iter()
        .map(|r| (r.method.as_str().to_owned(), r.path.to_owned()))
        .collect();
    let mut documented = BTreeSet::new();
    for (path, item) in &doc.paths.paths {
        let ops = [
            ("GET", &item.get),
            ("PUT", &item.put),
            ("POST", &item.post),
            ("DELETE", &item.delete),
            ("PATCH", &item.patch),
            ("HEAD", &item.head),
            ("OPTIONS", &item.options),
            ("TRACE", &item.trace),
        ];
        for (method, op) in ops {
            if op.is_some() {
                documented.insert((method.to_owned(), path.clone()));
            }
        }
    }
    let mut problems = Vec::new();
    for (m, p) in mounted.difference(&documented) {
        problems.push(format!(
            "{m} {p} is mounted but not in the OpenAPI document"
        ));
    }
    for (m, p) in documented.difference(&mounted) {
        problems.push(format!(
            "{m} {p} is documented but not mounted with a policy"
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use registro_domain::directory::{DirectoryCommand, decide as decide_cmd, evolve};
    use registro_domain::{ClassId, FiscalCode};

    use super::*;

    fn code(date: &str) -> FiscalCode {
        FiscalCode::with_check_character(&format!("XXXYYY{date}Z999")).unwrap()
    }

    fn run(dir: &mut Directory, command: DirectoryCommand) {
        for e in decide_cmd(dir, &command).unwrap() {
            evolve(dir, &e);
        }
    }

    fn register(dir: &mut Directory, date: &str, role: Role) -> PersonId {
        let person = PersonId::new();
        run(
            dir,
            DirectoryCommand::Register {
                person,
                fiscal_code: code(date),
                family_name: "Rossi".into(),
                given_name: "Anna".into(),
                role,
                birth_date: None,
            },
        );
        person
    }

    #[test]
    fn guardians_teachers_and_students_see_only_their_own() {
        let mut dir = Directory::default();
        let teacher = register(&mut dir, "70A01", Role::Teacher);
        let guardian = register(&mut dir, "71A01", Role::Guardian);
        let child = register(&mut dir, "10A01", Role::Student);
        let other = register(&mut dir, "10A02", Role::Student);
        let (class, other_class) = (ClassId::new(), ClassId::new());
        for (c, name) in [(class, "1A"), (other_class, "1B")] {
            run(
                &mut dir,
                DirectoryCommand::CreateClass {
                    class: c,
                    name: name.into(),
                },
            );
        }
        run(
            &mut dir,
            DirectoryCommand::DefineSubject {
                subject: "Storia".into(),
                scale: registro_domain::grade::Scale::Numeric,
            },
        );
        run(
            &mut dir,
            DirectoryCommand::AssignTeacher {
                teacher,
                class,
                subject: "Storia".into(),
            },
        );
        run(
            &mut dir,
            DirectoryCommand::EnrolStudent {
                student: child,
                class,
            },
        );
        run(
            &mut dir,
            DirectoryCommand::EnrolStudent {
                student: other,
                class: other_class,
            },
        );
        run(
            &mut dir,
            DirectoryCommand::LinkGuardian {
                guardian,
                student: child,
            },
        );
        let roles = |r: Role| BTreeSet::from([r]);
        let read = |who, role, s| decide(&dir, who, &roles(role), Permission::ReadStudent, s);
        for (who, role) in [
            (teacher, Role::Teacher),
            (guardian, Role::Guardian),
            (child, Role::Student),
        ] {
            assert_eq!(
                read(who, role, Target::Student(child)),
                Decision::Allow(role)
            );
            assert_eq!(read(who, role, Target::Student(other)), Decision::Hidden);
        }
        assert_eq!(
            decide(
                &dir,
                teacher,
                &roles(Role::Teacher),
                Permission::ReadClass,
                Target::Class(other_class)
            ),
            Decision::Hidden
        );
        // An auditor never reads a record, and a guardian never manages the directory.
        let auditor = PersonId::new();
        assert_eq!(
            read(auditor, Role::Auditor, Target::Student(child)),
            Decision::Forbidden
        );
        assert_eq!(
            decide(
                &dir,
                guardian,
                &roles(Role::Guardian),
                Permission::ManageDirectory,
                Target::School
            ),
            Decision::Forbidden
        );
        // A teacher who is also the parent of a student in another class acts as teacher for
        // their pupil and as guardian for their own child; neither role opens the child's
        // access log to them as a teacher, nor the pupil's.
        run(
            &mut dir,
            DirectoryCommand::GrantRole {
                person: teacher,
                role: Role::Guardian,
            },
        );
        run(
            &mut dir,
            DirectoryCommand::LinkGuardian {
                guardian: teacher,
                student: other,
            },
        );
        let both = BTreeSet::from([Role::Teacher, Role::Guardian]);
        let as_both = |permission, student| {
            decide(&dir, teacher, &both, permission, Target::Student(student))
        };
        assert_eq!(
            as_both(Permission::ReadStudent, child),
            Decision::Allow(Role::Teacher)
        );
        assert_eq!(
            as_both(Permission::ReadStudent, other),
            Decision::Allow(Role::Guardian)
        );
        assert_eq!(
            as_both(Permission::ReadStudentAccessLog, other),
            Decision::Allow(Role::Guardian)
        );
        assert_eq!(
            as_both(Permission::ReadStudentAccessLog, child),
            Decision::Hidden
        );
    }

    #[test]
    fn only_principals_and_secretaries_manage_the_directory() {
        let dir = Directory::default();
        for role in Role::ALL {
            let expected = matches!(role, Role::Principal | Role::Secretary);
            assert_eq!(
                Permission::ManageDirectory.held_by(role),
                expected,
                "{role}"
            );
            let decision = decide(
                &dir,
                PersonId::new(),
                &BTreeSet::from([role]),
                Permission::ManageDirectory,
                Target::School,
            );
            assert_eq!(decision == Decision::Allow(role), expected, "{role}");
        }
    }

    #[test]
    fn only_a_principal_assigns_the_privileged_roles() {
        let secretary = BTreeSet::from([Role::Secretary]);
        let principal = BTreeSet::from([Role::Principal]);
        for role in Role::PERSON_ROLES {
            assert!(may_assign(&principal, role), "{role}");
            assert_eq!(
                may_assign(&secretary, role),
                matches!(role, Role::Teacher | Role::Guardian | Role::Student),
                "{role}"
            );
        }
    }

    #[test]
    fn nobody_changes_their_own_roles_or_relationships() {
        let (me, you) = (PersonId::new(), PersonId::new());
        assert!(!may_change_relationships_of(me, me));
        assert!(may_change_relationships_of(me, you));
    }

    #[test]
    fn mounted_and_documented_routes_must_agree() {
        #[derive(utoipa::OpenApi)]
        #[openapi(paths(crate::routes::healthz))]
        struct Doc;
        let healthz = Rule {
            method: Method::GET,
            path: "/healthz",
            access: Access::Public,
        };
        let doc = <Doc as utoipa::OpenApi>::openapi();
        assert_eq!(
            check_documented(std::slice::from_ref(&healthz), &doc),
            Ok(())
        );
        let undocumented = Rule {
            method: Method::POST,
            path: "/healthz",
            access: Access::Public,
        };
        let err = check_documented(&[healthz, undocumented], &doc).unwrap_err();
        assert!(err.contains("POST /healthz is mounted"), "{err}");
        let err = check_documented(&[], &doc).unwrap_err();
        assert!(
            err.contains("GET /healthz is documented but not mounted"),
            "{err}"
        );
    }
}
