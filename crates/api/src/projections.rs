//! The read models (projections) seen from the API
//! ([ADR 0022](../../../docs/decisions/0022-projection-health.md)): how far each is behind the
//! log and whether its projector stopped, for `/metrics` and `/readyz`; and read-your-writes,
//! for the routes that read a projection: a read may name the position it must include
//! (`min_position`, the `position` a command answered) and then waits briefly for the
//! projection to reach it.
//!
//! Everything here is learnt from the database ([`EventStore::projection_lag`],
//! [`EventStore::projection_reached`]), never from this process: the projectors may run in
//! other processes (`registro project`).

use std::time::Duration;

use registro_domain::SchoolId;
use registro_store::{EventStore, ProjectionLag, StoreError};
use serde::Serialize;
use time::OffsetDateTime;
use tokio::time::Instant;
use utoipa::ToSchema;

use crate::AppState;
use crate::error::ApiError;

/// The read models the API knows, and how it waits for them.
#[derive(Debug, Clone)]
pub struct ProjectionConfig {
    /// The projections' names (`audit`...): each one's lag and stop on `/metrics` and
    /// `/readyz`.
    pub names: Vec<String>,
    /// How long a read with `min_position` waits for its projection to reach that position
    /// before answering 503 with `Retry-After: 1`.
    pub read_wait: Duration,
    /// A projection whose next event to apply was recorded longer ago than this is `behind`,
    /// and `/readyz` reports the service `degraded`.
    pub degraded_after: Duration,
}

impl ProjectionConfig {
    /// The default wait for a read (2 s).
    pub const READ_WAIT: Duration = Duration::from_secs(2);
    /// The default lag after which a projection is `behind` (60 s).
    pub const DEGRADED_AFTER: Duration = Duration::from_secs(60);

    /// The projections `names`, with the default wait and lag bound.
    #[must_use]
    pub fn new<S: Into<String>>(names: impl IntoIterator<Item = S>) -> Self {
        Self {
            names: names.into_iter().map(Into::into).collect(),
            read_wait: Self::READ_WAIT,
            degraded_after: Self::DEGRADED_AFTER,
        }
    }
}

impl Default for ProjectionConfig {
    /// No projection known; the default wait and lag bound.
    fn default() -> Self {
        Self::new(Vec::<String>::new())
    }
}

/// The first pause between two checks of a waiting read; each pause doubles, up to
/// [`LONGEST_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(10);
/// The longest pause between two checks of a waiting read.
const LONGEST_PAUSE: Duration = Duration::from_millis(100);

/// Waits until the projection `name` includes the event `min` of `school` (its `school_seq`,
/// the `position` a command answered), for at most the configured wait. `None` or 0: no
/// wait. The projection is checked in the database, at first every 10 ms, then less often.
///
/// # Errors
/// [`ApiError::Unprocessable`] (422) when `min` is beyond the school's log, which the
/// projection can never reach; [`ApiError::CatchingUp`] (503, `Retry-After: 1`) when the
/// projection has not reached it in time; the store's errors.
pub(crate) async fn await_projection(
    state: &AppState,
    name: &str,
    school: SchoolId,
    min: Option<u64>,
) -> Result<(), ApiError> {
    let Some(min) = min.filter(|m| *m > 0) else {
        return Ok(());
    };
    let store = state.store.as_ref();
    if store.projection_reached(name, school, min).await? {
        return Ok(());
    }
    let head = store.school_head(school).await?.map_or(0, |h| h.last_seq);
    if min > head {
        return Err(ApiError::Unprocessable(format!(
            "min_position {min} va oltre il registro della scuola: non sarà mai raggiunta. \
             (min_position {min} is beyond the school's log and can never be reached.)"
        )));
    }
    let deadline = Instant::now() + state.projections.read_wait;
    let mut pause = FIRST_PAUSE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ApiError::CatchingUp(format!(
                "I dati non includono ancora la posizione {min}: sono in aggiornamento, \
                 riprova tra poco. (This view has not caught up with position {min} yet; \
                 retry shortly.)"
            )));
        }
        tokio::time::sleep(pause.min(left)).await;
        pause = (pause * 2).min(LONGEST_PAUSE);
        if store.projection_reached(name, school, min).await? {
            return Ok(());
        }
    }
}

/// Reads the projection `name` for `school` with `read`, once it includes `min`
/// ([`await_projection`]). A read that fails because the projection's tables are not there
/// yet (not prepared) is a 503 to retry, not a 500.
///
/// # Errors
/// Those of [`await_projection`]; [`ApiError::Unavailable`] when the projection is not
/// prepared; the read's.
pub(crate) async fn read_projection<T>(
    state: &AppState,
    name: &str,
    school: SchoolId,
    min: Option<u64>,
    read: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, ApiError> {
    await_projection(state, name, school, min).await?;
    match read.await {
        Ok(found) => Ok(found),
        Err(e @ StoreError::Internal(_)) => match state.store.projection_lag(name).await {
            Ok(lag) if !lag.prepared => {
                tracing::warn!(
                    projection = name,
                    error = %e,
                    "read of a projection that is not prepared yet"
                );
                Err(ApiError::Unavailable(
                    "Questi dati non sono ancora disponibili: riprova tra poco. (This view is \
                     not ready yet; retry shortly.)"
                        .into(),
                ))
            }
            _ => Err(e.into()),
        },
        Err(e) => Err(e.into()),
    }
}

/// What a projection is doing, as `/readyz` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ProjectionState {
    /// Applying events, less behind than the bound.
    Ok,
    /// Further behind than the bound (60 s by default).
    Behind,
    /// Stopped at an event it cannot apply (a poison event): it waits for a fix.
    Stopped,
    /// Its tables are not made yet: its projector has not started.
    Unprepared,
    /// Its state could not be read.
    Unknown,
}

/// One projection in `/readyz`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProjectionReport {
    /// Its name.
    #[schema(example = "audit")]
    pub name: String,
    /// What it is doing.
    pub state: ProjectionState,
    /// How many committed events it has not applied yet (null when unknown).
    #[schema(example = 0)]
    pub lag_events: Option<u64>,
    /// How long ago the next event it has to apply was recorded, in seconds; 0 when it has
    /// applied every event (null when unknown).
    #[schema(example = 0.0)]
    pub lag_seconds: Option<f64>,
    /// Since when it is stopped, when it is.
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime, example = json!(null))]
    pub stopped_since: Option<OffsetDateTime>,
}

impl ProjectionReport {
    /// The report of `name` from its lag as of `now` (`None`: it could not be read).
    fn new(
        name: &str,
        lag: Option<&ProjectionLag>,
        now: OffsetDateTime,
        config: &ProjectionConfig,
    ) -> Self {
        let Some(lag) = lag else {
            return Self {
                name: name.to_owned(),
                state: ProjectionState::Unknown,
                lag_events: None,
                lag_seconds: None,
                stopped_since: None,
            };
        };
        let seconds = lag.seconds_behind(now);
        let state = if !lag.prepared {
            ProjectionState::Unprepared
        } else if lag.stopped.is_some() {
            ProjectionState::Stopped
        } else if seconds > config.degraded_after.as_secs_f64() {
            ProjectionState::Behind
        } else {
            ProjectionState::Ok
        };
        Self {
            name: name.to_owned(),
            state,
            lag_events: Some(lag.events),
            lag_seconds: Some(seconds),
            stopped_since: lag.stopped.as_ref().map(|s| s.since),
        }
    }
}

/// Each known projection's lag and state, read from the database, in the configured order;
/// also sets the projection metrics (a projection whose state cannot be read has none until
/// it can).
pub(crate) async fn observe(state: &AppState) -> Vec<ProjectionReport> {
    let config = &state.projections;
    let mut reports = Vec::with_capacity(config.names.len());
    for name in &config.names {
        let lag = lag_of(state.store.as_ref(), name).await.ok();
        let now = OffsetDateTime::now_utc();
        state
            .metrics
            .set_projection(name, lag.as_ref().map(|l| (l, l.seconds_behind(now))));
        reports.push(ProjectionReport::new(name, lag.as_ref(), now, config));
    }
    reports
}

async fn lag_of(store: &dyn EventStore, name: &str) -> Result<ProjectionLag, StoreError> {
    store.projection_lag(name).await.inspect_err(|e| {
        tracing::warn!(projection = name, error = %e, "cannot read the projection's lag");
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use registro_store::MasterKey;
    use registro_store::sqlite::SqliteStore;
    use registro_testkit::TempDir;

    use super::*;
    use crate::auth::{KeySet, LocalIssuer, TokenVerifier};
    use crate::ratelimit::RateLimit;

    /// A read of a projection whose tables were never made (its projector has not started) is
    /// a 503 to retry, not a 500; a failing read of a prepared one stays a 500.
    #[tokio::test]
    async fn a_read_of_a_projection_not_prepared_is_a_503_to_retry() {
        let dir = TempDir::new();
        let store = SqliteStore::open(&dir.path().join("registro.db"), MasterKey::generate())
            .await
            .unwrap();
        store.migrate().await.unwrap();
        let issuer = LocalIssuer::generate();
        let verifier = TokenVerifier::new(
            LocalIssuer::verifier_config(),
            Arc::new(KeySet::new(Arc::new(issuer))),
        );
        let state = AppState::new(Arc::new(store), verifier, RateLimit::default(), &[]);
        let school = SchoolId::new();
        let filter = registro_projection_audit::Filter {
            limit: 10,
            ..Default::default()
        };
        let read = registro_projection_audit::entries(state.store.as_ref(), school, &filter);
        let err = read_projection(&state, "audit", school, None, read)
            .await
            .unwrap_err();
        assert!(matches!(err, ApiError::Unavailable(_)), "{err:?}");

        state
            .store
            .prepare_projection(&registro_store::ProjectionSchema {
                name: "audit",
                tables: &["unrelated"],
                postgres: &[],
                sqlite: &["CREATE TABLE unrelated (x INTEGER)"],
            })
            .await
            .unwrap();
        let read = registro_projection_audit::entries(state.store.as_ref(), school, &filter);
        let err = read_projection(&state, "audit", school, None, read)
            .await
            .unwrap_err();
        assert!(matches!(err, ApiError::Internal(_)), "{err:?}");
    }
}
