//! `registro serve --demo`: a small demo school, created once (found again on later starts),
//! and a ready-to-use token for one person of each role. Everything in it is generated: the
//! fiscal codes are synthetic (`XXXYYY…Z999`, a "birthplace" code no municipality has).

use std::time::Duration;

use anyhow::Context as _;
use registro_api::auth::LocalIssuer;
use registro_api::directory::{execute_as_system, load};
use registro_domain::directory::DirectoryCommand;
use registro_domain::{ClassId, FiscalCode, PersonId, Role, SchoolId};
use registro_store::EventStore;
use uuid::Uuid;

/// The demo school's id: the same on every start, so its data is found again.
pub const SCHOOL: SchoolId =
    SchoolId::from_uuid(Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_de30));
/// How long the printed tokens are valid.
pub const TOKEN_TTL: Duration = Duration::from_secs(12 * 3600);

/// One demo person: who, and the date part of their synthetic fiscal code.
struct DemoPerson {
    role: Role,
    family_name: &'static str,
    given_name: &'static str,
    code_date: &'static str,
    label: &'static str,
}

const PEOPLE: [DemoPerson; 8] = [
    DemoPerson {
        role: Role::Principal,
        family_name: "Bianchi",
        given_name: "Laura",
        code_date: "65A41",
        label: "principal",
    },
    DemoPerson {
        role: Role::Secretary,
        family_name: "Verdi",
        given_name: "Marco",
        code_date: "70B01",
        label: "secretary",
    },
    DemoPerson {
        role: Role::Teacher,
        family_name: "Russo",
        given_name: "Giulia",
        code_date: "78C45",
        label: "teacher (1A, Matematica)",
    },
    DemoPerson {
        role: Role::Guardian,
        family_name: "Ferrari",
        given_name: "Paolo",
        code_date: "75D10",
        label: "guardian (of the 1A student)",
    },
    DemoPerson {
        role: Role::Student,
        family_name: "Ferrari",
        given_name: "Sofia",
        code_date: "12E50",
        label: "student (1A)",
    },
    DemoPerson {
        role: Role::Student,
        family_name: "Esposito",
        given_name: "Luca",
        code_date: "12H15",
        label: "student (1B, nobody's above)",
    },
    DemoPerson {
        role: Role::Auditor,
        family_name: "Romano",
        given_name: "Elena",
        code_date: "68L52",
        label: "auditor",
    },
    DemoPerson {
        role: Role::Admin,
        family_name: "Colombo",
        given_name: "Andrea",
        code_date: "80M20",
        label: "admin",
    },
];

fn fiscal_code(date: &str) -> anyhow::Result<FiscalCode> {
    FiscalCode::with_check_character(&format!("XXXYYY{date}Z999"))
        .map_err(|e| anyhow::anyhow!("demo fiscal code: {e}"))
}

/// Creates the demo school unless it exists, and returns a token for each demo person.
///
/// # Errors
/// When the store fails or a token cannot be signed.
pub async fn ensure(
    store: &dyn EventStore,
    issuer: &LocalIssuer,
) -> anyhow::Result<Vec<(String, String)>> {
    if load(store, SCHOOL)
        .await?
        .by_fiscal_code(&fiscal_code(PEOPLE[0].code_date)?)
        .is_none()
    {
        create(store).await.context("creating the demo school")?;
    }
    PEOPLE
        .iter()
        .map(|p| {
            let token = issuer.issue(SCHOOL, &fiscal_code(p.code_date)?, TOKEN_TTL)?;
            Ok((
                format!("{} {} {}", p.label, p.given_name, p.family_name),
                token,
            ))
        })
        .collect()
}

async fn create(store: &dyn EventStore) -> anyhow::Result<()> {
    let ids: Vec<PersonId> = PEOPLE.iter().map(|_| PersonId::new()).collect();
    let mut commands = Vec::new();
    for (p, id) in PEOPLE.iter().zip(&ids) {
        commands.push(DirectoryCommand::Register {
            person: *id,
            fiscal_code: fiscal_code(p.code_date)?,
            family_name: p.family_name.into(),
            given_name: p.given_name.into(),
            role: p.role,
            birth_date: None,
        });
    }
    let (class_a, class_b) = (ClassId::new(), ClassId::new());
    let (teacher, guardian, child, other) = (ids[2], ids[3], ids[4], ids[5]);
    // The subjects of a first-year liceo class; religion is graded by judgement.
    use registro_domain::grade::Scale;
    commands.extend(
        [
            ("Italiano", Scale::Numeric),
            ("Latino", Scale::Numeric),
            ("Storia e geografia", Scale::Numeric),
            ("Inglese", Scale::Numeric),
            ("Matematica", Scale::Numeric),
            ("Scienze naturali", Scale::Numeric),
            ("Scienze motorie e sportive", Scale::Numeric),
            ("Religione cattolica", Scale::Judgement),
        ]
        .map(|(subject, scale)| DirectoryCommand::DefineSubject {
            subject: subject.into(),
            scale,
        }),
    );
    commands.extend([
        DirectoryCommand::CreateClass {
            class: class_a,
            name: "1A".into(),
        },
        DirectoryCommand::CreateClass {
            class: class_b,
            name: "1B".into(),
        },
        DirectoryCommand::AssignTeacher {
            teacher,
            class: class_a,
            subject: "Matematica".into(),
        },
        DirectoryCommand::EnrolStudent {
            student: child,
            class: class_a,
        },
        DirectoryCommand::EnrolStudent {
            student: other,
            class: class_b,
        },
        DirectoryCommand::LinkGuardian {
            guardian,
            student: child,
        },
    ]);
    for command in &commands {
        execute_as_system(store, SCHOOL, command)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    Ok(())
}
