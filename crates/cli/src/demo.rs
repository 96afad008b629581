//! `registro serve --demo`: a small demo school, generated once (found again on later starts)
//! by `registro generate`'s simulation of a school year, and a ready-to-use token for one
//! person of each role. Everything in it is generated: the fiscal codes are synthetic (the
//! "birthplace" code `Z999`, which no municipality has).

use std::sync::Arc;
use std::time::Duration;

use registro_api::auth::LocalIssuer;
use registro_api::directory::load;
use registro_domain::calendar::{SchoolYear, italian_date};
use registro_domain::directory::Directory;
use registro_domain::{FiscalCode, PersonId, Role, SchoolId};
use registro_store::EventStore;

use crate::generate;

/// The demo school's name; with [`SEED`], it gives the school's id, the same on every start.
pub const NAME: &str = "Scuola Demo";
/// The demo's seed.
pub const SEED: u64 = 1;
/// How long the printed tokens are valid.
pub const TOKEN_TTL: Duration = Duration::from_secs(12 * 3600);

/// The demo school's id.
#[must_use]
pub fn school() -> SchoolId {
    generate::school_id(NAME, SEED)
}

/// Generates the demo school unless it exists (a small version of `registro generate`: two
/// classes, a dozen students, ten days of the last school year, its scrutini), and returns a
/// token for one person of each role.
///
/// # Errors
/// When the store fails, the generation fails, or a token cannot be signed.
pub async fn ensure(
    store: Arc<dyn EventStore>,
    issuer: &LocalIssuer,
) -> anyhow::Result<Vec<(String, String)>> {
    let school = school();
    if store.school_head(school).await?.is_none() {
        let this_year = SchoolYear::of(italian_date(time::OffsetDateTime::now_utc())).start_year();
        let sizes = generate::Sizes {
            students: 12,
            classes: 2,
            days: 10,
            seed: SEED,
            year: this_year - 1,
        };
        generate::generate(Arc::clone(&store), NAME, sizes, |_, _| {}).await?;
    }
    let directory = load(store.as_ref(), school).await?;
    people(&directory)
        .map_err(|e| {
            e.context(
                "the demo school is incomplete (was its first start interrupted?): remove the \
                 data directory, or run without --demo",
            )
        })?
        .into_iter()
        .map(|(label, id)| {
            let person = directory
                .person(id)
                .ok_or_else(|| anyhow::anyhow!("the demo's {label} is not in the directory"))?;
            let token = issuer.issue(school, &person.fiscal_code, TOKEN_TTL)?;
            Ok((
                format!("{label} {} {}", person.given_name, person.family_name),
                token,
            ))
        })
        .collect()
}

/// One person of each role, the first by fiscal code: the principal, the office, a teacher of
/// 1A, a guardian of a 1A student and that student, a student of 2A nobody above answers for,
/// an auditor, an administrator.
fn people(dir: &Directory) -> anyhow::Result<Vec<(String, PersonId)>> {
    let mut everyone: Vec<(&FiscalCode, PersonId)> =
        dir.people().map(|(id, p)| (&p.fiscal_code, id)).collect();
    everyone.sort();
    let first = |role: Role, also: &dyn Fn(PersonId) -> bool| {
        everyone
            .iter()
            .map(|(_, id)| *id)
            .find(|id| dir.has_role(*id, role) && also(*id))
            .ok_or_else(|| anyhow::anyhow!("the demo school has no {role}"))
    };
    let any = |_: PersonId| true;
    let class_a = dir.class_by_name("1A");
    let class_b = dir.class_by_name("2A");
    let teacher = first(Role::Teacher, &|t| {
        class_a.is_some_and(|c| dir.teaches_class(t, c))
    })?;
    let child = first(Role::Student, &|s| {
        class_a.is_some() && dir.class_of(s) == class_a
    })?;
    let guardian = first(Role::Guardian, &|g| dir.is_linked(g, child))?;
    let other = first(Role::Student, &|s| {
        class_b.is_some() && dir.class_of(s) == class_b
    })?;
    Ok(vec![
        ("principal".into(), first(Role::Principal, &any)?),
        ("secretary".into(), first(Role::Secretary, &any)?),
        ("teacher (1A)".into(), teacher),
        ("guardian (of the 1A student)".into(), guardian),
        ("student (1A)".into(), child),
        ("student (2A, nobody's above)".into(), other),
        ("auditor".into(), first(Role::Auditor, &any)?),
        ("admin".into(), first(Role::Admin, &any)?),
    ])
}
