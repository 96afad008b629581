//! The projector runtime ([ADR 0019](../../../docs/decisions/0019-projection-runtime.md)): a
//! [`Projection`] is a pure `apply` from one event to the row changes it makes; a [`Projector`]
//! reads the global log from the projection's checkpoint and commits each batch's row changes
//! together with the new checkpoint, in one transaction, so every event takes effect exactly
//! once through crashes. Only the instance holding the projection's lease applies events; the
//! others wait as standbys. An event `apply` refuses stops the projector at that event: it is
//! never skipped.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use registro_store::{EventStore, Position, ProjectionSchema, RecordedEvent, RowOp, StoreError};

/// The most events a projector applies in one transaction, unless told otherwise.
pub const DEFAULT_BATCH: usize = 1000;

/// How often a projector looks for new events (and a standby for the lease) when no wake-up
/// hint comes, unless told otherwise.
pub const DEFAULT_POLL: Duration = Duration::from_millis(500);

/// A read model built from the events.
pub trait Projection: Send + Sync + 'static {
    /// Its name and tables.
    fn schema(&self) -> ProjectionSchema;

    /// The row changes `event` makes. Pure: the same event always gives the same changes, and
    /// the projection's tables are never read here (ADR 0019).
    ///
    /// # Errors
    /// When the event cannot be applied (a bug, or data this projection does not understand):
    /// the projector stops there.
    fn apply(&self, event: &RecordedEvent) -> anyhow::Result<Vec<RowOp>>;
}

/// Why a projector stopped.
#[derive(Debug, thiserror::Error)]
pub enum ProjectorError {
    /// An event the projection cannot apply (a poison event): the projector stops before it,
    /// and its checkpoint stays there until the projection is fixed.
    #[error(
        "projection {name} stops at {position} (school {school}, school_seq {school_seq}, \
         {event_type}): {reason}"
    )]
    Poison {
        /// The projection.
        name: &'static str,
        /// The event's position in the global log.
        position: Position,
        /// Its school.
        school: String,
        /// Its place in the school's log.
        school_seq: u64,
        /// Its type.
        event_type: String,
        /// Why `apply` refused it.
        reason: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a projector is doing, for health checks and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Status {
    /// Whether this instance holds the lease (false: a standby).
    pub active: bool,
    /// The checkpoint: the last event applied.
    pub position: Position,
    /// Why it stopped, if it did.
    pub stopped: Option<String>,
}

/// Runs one projection.
#[derive(Clone)]
pub struct Projector {
    store: Arc<dyn EventStore>,
    projection: Arc<dyn Projection>,
    batch: usize,
    poll: Duration,
    status: Arc<Mutex<Status>>,
}

impl std::fmt::Debug for Projector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Projector")
            .field("projection", &self.projection.schema().name)
            .field("batch", &self.batch)
            .field("poll", &self.poll)
            .finish_non_exhaustive()
    }
}

impl Projector {
    /// A projector of `projection` on `store`: batches of up to [`DEFAULT_BATCH`] events,
    /// polling every [`DEFAULT_POLL`] when no wake-up hint comes.
    #[must_use]
    pub fn new(store: Arc<dyn EventStore>, projection: Arc<dyn Projection>) -> Self {
        Self {
            store,
            projection,
            batch: DEFAULT_BATCH,
            poll: DEFAULT_POLL,
            status: Arc::default(),
        }
    }

    /// The same projector with another batch size and poll interval.
    #[must_use]
    pub fn with_batches(mut self, batch: usize, poll: Duration) -> Self {
        self.batch = batch.max(1);
        self.poll = poll;
        self
    }

    /// What it is doing now.
    #[must_use]
    pub fn status(&self) -> Status {
        self.status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set_status(&self, change: impl FnOnce(&mut Status)) {
        change(&mut self.status.lock().unwrap_or_else(PoisonError::into_inner));
    }

    /// Creates or updates the projection's tables.
    ///
    /// # Errors
    /// The store's.
    pub async fn prepare(&self) -> Result<(), ProjectorError> {
        Ok(self
            .store
            .prepare_projection(&self.projection.schema())
            .await?)
    }

    /// Applies every event committed so far, batch by batch, and returns the checkpoint
    /// reached. The caller should hold the lease (see [`Projector::run`]); without it, a batch
    /// that races another instance is refused by the checkpoint check and read again.
    ///
    /// # Errors
    /// [`ProjectorError::Poison`] at an event the projection cannot apply (the batches before
    /// it are committed); the store's errors.
    pub async fn catch_up(&self) -> Result<Position, ProjectorError> {
        let name = self.projection.schema().name;
        let mut from = self.store.projection_checkpoint(name).await?;
        loop {
            let events = self.store.read_all(from, self.batch).await?;
            let Some(last) = events.last() else {
                self.set_status(|s| s.position = from);
                return Ok(from);
            };
            let to = last.position;
            let mut ops = Vec::new();
            for event in &events {
                match self.projection.apply(event) {
                    Ok(more) => ops.extend(more),
                    Err(reason) => {
                        // Commit what came before the poison event, then stop at it.
                        let before = events
                            .iter()
                            .take_while(|e| e.position < event.position)
                            .last()
                            .map(|e| e.position);
                        if let Some(before) = before {
                            self.commit(name, from, before, &ops).await?;
                            from = before;
                        }
                        let error = ProjectorError::Poison {
                            name,
                            position: event.position,
                            school: event.school_id.to_string(),
                            school_seq: event.school_seq,
                            event_type: event.event_type.as_str().to_owned(),
                            reason: format!("{reason:#}"),
                        };
                        self.set_status(|s| {
                            s.position = from;
                            s.stopped = Some(error.to_string());
                        });
                        return Err(error);
                    }
                }
            }
            match self.commit(name, from, to, &ops).await {
                Ok(()) => from = to,
                // Another instance moved the checkpoint: read on from where it is now.
                Err(StoreError::Conflict { .. }) => {
                    tracing::warn!(projection = name, "checkpoint moved by another instance");
                    from = self.store.projection_checkpoint(name).await?;
                }
                Err(e) => return Err(e.into()),
            }
            self.set_status(|s| s.position = from);
        }
    }

    async fn commit(
        &self,
        name: &str,
        from: Position,
        to: Position,
        ops: &[RowOp],
    ) -> Result<(), StoreError> {
        self.store.commit_projection(name, from, to, ops).await
    }

    /// Runs until `shutdown` completes: waits for the projection's lease (a standby meanwhile),
    /// then applies new events as they are committed, woken by the store's hint or by polling.
    /// Transient store failures are retried after a poll interval.
    ///
    /// # Errors
    /// [`ProjectorError::Poison`]: the projector stops at that event (the others go on).
    pub async fn run(&self, shutdown: impl Future<Output = ()>) -> Result<(), ProjectorError> {
        let name = self.projection.schema().name;
        tokio::pin!(shutdown);
        let mut wake = self.store.wake_signal();
        // Said once at info level (operators and the fault tests look for it), then at debug at
        // each poll.
        let mut announced = false;
        let lease = loop {
            match self.store.try_lock_projection(name).await {
                Ok(Some(lease)) => break lease,
                Ok(None) if !announced => {
                    announced = true;
                    tracing::info!(
                        projection = name,
                        "standby: another instance holds the lease; waiting to take over"
                    );
                }
                Ok(None) => {
                    tracing::debug!(projection = name, "standby: another instance is active")
                }
                Err(e) => tracing::warn!(projection = name, error = %e, "cannot take the lease"),
            }
            tokio::select! {
                () = &mut shutdown => return Ok(()),
                () = tokio::time::sleep(self.poll) => {}
            }
        };
        self.set_status(|s| s.active = true);
        tracing::info!(
            projection = name,
            "active: this instance holds the lease and applies events"
        );
        let result = loop {
            wake.borrow_and_update();
            match self.catch_up().await {
                Ok(_) => {}
                Err(e @ ProjectorError::Poison { .. }) => {
                    tracing::error!(projection = name, error = %e, "stopped at an event it cannot apply");
                    break Err(e);
                }
                Err(ProjectorError::Store(e)) => {
                    tracing::warn!(projection = name, error = %e, "store failure; retrying");
                }
            }
            tokio::select! {
                () = &mut shutdown => break Ok(()),
                _ = tokio::time::timeout(self.poll, wake.changed()) => {}
            }
        };
        drop(lease);
        self.set_status(|s| s.active = false);
        result
    }
}
