//! The middleware that stands in front of every route: it finds the route's policy, and for a
//! protected route authenticates the bearer token, limits the rate of reads, finds the person
//! in the school named by the path, and asks the policy ([`crate::policy::decide`]). Only then
//! does the handler run, with the [`Caller`] in the request's extensions.
//!
//! The order of the answers: 401 (no valid token) before 429 (too many reads) before 404 / 403
//! (not yours / not allowed) before anything the handler says (400, 422, ...), so a caller
//! learns nothing about a school or a resource they may not see, not even whether their body
//! would have been valid.

use std::collections::{BTreeSet, HashMap};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{FromRequestParts as _, MatchedPath, RawPathParams, Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use registro_domain::directory::Directory;
use registro_domain::{PersonId, Role, SchoolId};
use sha2::{Digest as _, Sha256};

use super::AuthError;
use crate::AppState;
use crate::error::ApiError;
use crate::policy::{self, Access, Decision, ResourceKind, Target};

/// Who is calling, as authorisation found them. In the request's extensions of every
/// protected route.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The school of the request (from the path).
    pub school: SchoolId,
    /// The person.
    pub person: PersonId,
    /// The role the request is allowed in.
    pub role: Role,
    /// Every role the person holds in the school.
    pub roles: BTreeSet<Role>,
    /// The school's directory as authorisation saw it.
    pub directory: Arc<Directory>,
    /// The version of the directory's stream that `directory` is folded to.
    pub directory_version: u64,
}

impl Caller {
    /// Whether the caller is `student`'s guardian now: linked, and holding the guardian role
    /// (a revoked role ends what the link gave).
    #[must_use]
    pub fn is_guardian_of(&self, student: PersonId) -> bool {
        self.roles.contains(&Role::Guardian) && self.directory.is_linked(self.person, student)
    }

    /// Whether reading `student`'s data must be recorded in the access log: by anyone but the
    /// student and their guardians.
    #[must_use]
    pub fn must_record_reading(&self, student: PersonId) -> bool {
        self.person != student && !self.is_guardian_of(student)
    }
}

/// The policies of the mounted routes, by method and path template.
pub type Policies = HashMap<(Method, &'static str), Access>;

/// Middleware: authentication and authorisation, deny by default.
pub async fn guard(State(state): State<AppState>, request: Request, next: Next) -> Response {
    match admit(&state, request).await {
        Ok(request) => next.run(request).await,
        Err(e) => e.into_response(),
    }
}

async fn admit(state: &AppState, request: Request) -> Result<Request, ApiError> {
    let Some(path) = request.extensions().get::<MatchedPath>() else {
        // Not a route: the fallback answers 404.
        return Ok(request);
    };
    // axum answers HEAD with the GET handler: HEAD is guarded as GET.
    let method = match *request.method() {
        Method::HEAD => Method::GET,
        ref m => m.clone(),
    };
    let Some(access) = state.policies.get(&(method, path.as_str())).copied() else {
        if state.policies.keys().any(|(_, p)| *p == path.as_str()) {
            // A known path with a method it is not mounted for: the router answers 405.
            return Ok(request);
        }
        // Cannot happen: routes are mounted only with their policy. Deny all the same.
        tracing::error!(route = path.as_str(), "a route without a policy was called");
        return Err(ApiError::NotFound);
    };
    let Access::Member {
        permission,
        resource,
    } = access
    else {
        return Ok(request);
    };

    let token = bearer(&request)?;
    let identity = state.verifier.verify(token).await.map_err(|e| match e {
        AuthError::KeysUnavailable => ApiError::Unavailable(
            "The identity provider cannot be reached to check the token; try again shortly.".into(),
        ),
        e => ApiError::Unauthorized(format!("{e}.")),
    })?;
    if matches!(*request.method(), Method::GET | Method::HEAD) {
        let mut holder = Sha256::new();
        holder.update(identity.subject.as_bytes());
        holder.update([0]);
        holder.update(identity.fiscal_code.as_str().as_bytes());
        state
            .limiter
            .check(holder.finalize().into(), Instant::now())
            .map_err(|wait| ApiError::TooManyRequests {
                retry_after: wait.as_secs() + u64::from(wait.subsec_nanos() > 0),
            })?;
    }

    let (mut parts, body) = request.into_parts();
    let params = RawPathParams::from_request_parts(&mut parts, &())
        .await
        .map_err(|_| ApiError::NotFound)?;
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_owned())
    };
    let school: SchoolId = parsed(param("school"))?;
    if identity.school.is_some_and(|s| s != school) {
        return Err(ApiError::NotFound);
    }
    let current = state
        .directory
        .current(state.store.as_ref(), school)
        .await?;
    let (directory, directory_version) = (current.state, current.version);
    let person = directory
        .by_fiscal_code(&identity.fiscal_code)
        .ok_or(ApiError::NotFound)?;
    let roles = directory
        .person(person)
        .map(|p| p.roles.clone())
        .unwrap_or_default();
    if roles.is_empty() {
        return Err(ApiError::NotFound);
    }
    let target = match resource {
        ResourceKind::School => Target::School,
        ResourceKind::Person => Target::Person(parsed(param(resource.parameter()))?),
        ResourceKind::Student => Target::Student(parsed(param(resource.parameter()))?),
        ResourceKind::Class => Target::Class(parsed(param(resource.parameter()))?),
    };
    let role = match policy::decide(&directory, person, &roles, permission, target) {
        Decision::Allow(role) => role,
        Decision::Forbidden => {
            return Err(ApiError::Forbidden(
                "None of your roles in this school allows this.".into(),
            ));
        }
        Decision::Hidden => return Err(ApiError::NotFound),
    };
    parts.extensions.insert(Caller {
        school,
        person,
        role,
        roles,
        directory,
        directory_version,
    });
    Ok(Request::from_parts(parts, body))
}

/// The bearer token of the request.
fn bearer(request: &Request) -> Result<&str, ApiError> {
    let missing = || ApiError::Unauthorized(format!("{}.", AuthError::Missing));
    let value = request
        .headers()
        .get(header::AUTHORIZATION)
        .ok_or_else(missing)?
        .to_str()
        .map_err(|_| missing())?;
    let (scheme, token) = value.split_once(' ').ok_or_else(missing)?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(missing());
    }
    Ok(token.trim())
}

/// A path id; one that does not parse names nothing the caller can see.
fn parsed<T: FromStr>(value: Option<String>) -> Result<T, ApiError> {
    value.and_then(|v| v.parse().ok()).ok_or(ApiError::NotFound)
}
