//! The projector runtime ([ADR 0019](../../../docs/decisions/0019-projection-runtime.md)): a
//! [`Projection`] is a pure `apply` from one event to the row changes it makes; a [`Projector`]
//! reads the global log from the projection's checkpoint and commits each batch's row changes
//! together with the new checkpoint, in one transaction, so every event takes effect exactly
//! once through crashes. Only the instance holding the projection's lease applies events; the
//! others wait as standbys. An event `apply` refuses stops the projector at that event: it is
//! never skipped, and the stop is recorded in the database for every process to see
//! ([`EventStore::projection_lag`]) until a commit passes the event.
//!
//! [`Projector::rebuild`] builds the projection again from the first event into a build target
//! of its own and swaps it in, in one transaction: readers never see a half-built view
//! ([ADR 0021](../../../docs/decisions/0021-projection-rebuild.md)).

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

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
    /// Another rebuild of the same projection is running.
    #[error("another rebuild of projection {name} is running")]
    RebuildRunning {
        /// The projection.
        name: &'static str,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ProjectorError {
    /// The stop at `event`, which the projection refused for `reason`.
    fn poison(name: &'static str, event: &RecordedEvent, reason: &anyhow::Error) -> Self {
        Self::Poison {
            name,
            position: event.position,
            school: event.school_id.to_string(),
            school_seq: event.school_seq,
            event_type: event.event_type.as_str().to_owned(),
            reason: format!("{reason:#}"),
        }
    }
}

/// Where a rebuild is ([`Projector::rebuild`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Applying the events into the build target.
    Building,
    /// Swapping the build target's rows in.
    Swapping,
    /// Swapped in.
    Done,
}

/// How far a rebuild has come, reported after each batch and at each stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Where the rebuild is.
    pub stage: Stage,
    /// The events applied so far.
    pub done: u64,
    /// The events to apply in all: those in the log when the rebuild started, counted again
    /// when more came meanwhile. Never less than `done`.
    pub total: u64,
    /// The time since the rebuild started.
    pub elapsed: Duration,
    /// The position of the last event applied.
    pub position: Position,
}

impl Progress {
    /// Events applied per second so far (0 in the first millisecond).
    #[must_use]
    pub fn rate(&self) -> u64 {
        let ms = self.elapsed.as_millis();
        if ms == 0 {
            return 0;
        }
        u64::try_from(u128::from(self.done) * 1000 / ms).unwrap_or(u64::MAX)
    }

    /// The time left at the rate so far; `None` before the first event is applied.
    #[must_use]
    pub fn remaining(&self) -> Option<Duration> {
        if self.done == 0 {
            return None;
        }
        let left = u128::from(self.total.saturating_sub(self.done));
        let nanos = self.elapsed.as_nanos() * left / u128::from(self.done);
        Some(Duration::from_nanos(
            u64::try_from(nanos).unwrap_or(u64::MAX),
        ))
    }

    /// The part done, in thousandths (1000 when there is nothing to do).
    #[must_use]
    pub fn permille(&self) -> u64 {
        if self.total == 0 {
            return 1000;
        }
        u64::try_from(u128::from(self.done.min(self.total)) * 1000 / u128::from(self.total))
            .unwrap_or(1000)
    }
}

/// What a rebuild did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rebuilt {
    /// The events applied.
    pub events: u64,
    /// The checkpoint swapped in: the last event applied ([`Position::START`] for an empty log).
    pub position: Position,
    /// How long it took, the swap included.
    pub elapsed: Duration,
}

/// The suffix of the lease a rebuild holds, apart from the projector's own lease, so that two
/// rebuilds of one projection never share its build target while its projector keeps running.
pub const REBUILD_LEASE_SUFFIX: &str = "_rebuild";

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
    /// it are committed, and the stop is recorded in the store:
    /// [`EventStore::record_projection_stop`]); the store's errors.
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
                        let error = ProjectorError::poison(name, event, &reason);
                        // Recorded in the database, so that every process (the API's
                        // health checks) sees it; cleared by the commit that passes the event.
                        // Until it is recorded the stop is retried like a store failure.
                        self.store
                            .record_projection_stop(name, event.position, &error.to_string())
                            .await?;
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

    /// Rebuilds the projection from the first event: applies every event into a build target
    /// of its own ([`EventStore::begin_rebuild`]), batch by batch, until none is left, then swaps
    /// it in at the last event's position in one transaction ([`EventStore::swap_rebuild`]).
    /// Until then readers, and a projector of the same projection that keeps running meanwhile,
    /// see the live tables as they were; afterwards the projector finds its checkpoint moved
    /// and goes on from the rebuild's. `progress` is called at the start, after each batch, at
    /// the swap and at the end.
    ///
    /// It prepares the live tables first and needs the right to create them and the build
    /// target (on PostgreSQL, a schema): the role that owns the database.
    ///
    /// # Errors
    /// [`ProjectorError::Poison`] at an event the projection cannot apply, as
    /// [`Projector::catch_up`] stops there; [`ProjectorError::RebuildRunning`] when another
    /// rebuild of the projection is running; the store's errors. The live tables are then as
    /// they were, and the build target is discarded.
    pub async fn rebuild(
        &self,
        mut progress: impl FnMut(&Progress),
    ) -> Result<Rebuilt, ProjectorError> {
        let schema = self.projection.schema();
        let name = schema.name;
        let Some(lease) = self
            .store
            .try_lock_projection(&format!("{name}{REBUILD_LEASE_SUFFIX}"))
            .await?
        else {
            return Err(ProjectorError::RebuildRunning { name });
        };
        self.prepare().await?;
        let started = Instant::now();
        let mut report = Progress {
            stage: Stage::Building,
            done: 0,
            total: self.store.count_events_after(Position::START).await?,
            elapsed: Duration::ZERO,
            position: Position::START,
        };
        progress(&report);
        self.store.begin_rebuild(&schema).await?;
        let built = async {
            self.build(name, started, &mut report, &mut progress)
                .await?;
            report.stage = Stage::Swapping;
            report.elapsed = started.elapsed();
            progress(&report);
            self.store.swap_rebuild(&schema, report.position).await?;
            Ok(())
        }
        .await;
        if let Err(e) = built {
            if let Err(discard) = self.store.discard_rebuild(name).await {
                tracing::warn!(projection = name, error = %discard, "cannot discard a failed rebuild");
            }
            return Err(e);
        }
        drop(lease);
        report.stage = Stage::Done;
        report.elapsed = started.elapsed();
        progress(&report);
        tracing::debug!(projection = name, events = report.done, position = %report.position, "rebuilt");
        Ok(Rebuilt {
            events: report.done,
            position: report.position,
            elapsed: report.elapsed,
        })
    }

    /// Applies every event into the rebuild's target, reporting after each batch.
    async fn build(
        &self,
        name: &'static str,
        started: Instant,
        report: &mut Progress,
        progress: &mut impl FnMut(&Progress),
    ) -> Result<(), ProjectorError> {
        let mut events = self.store.read_all(report.position, self.batch).await?;
        loop {
            let Some(last) = events.last() else {
                return Ok(());
            };
            let mut ops = Vec::new();
            for event in &events {
                ops.extend(
                    self.projection
                        .apply(event)
                        .map_err(|reason| ProjectorError::poison(name, event, &reason))?,
                );
            }
            // The next page is read while this one commits: the commit writes the build target,
            // never the log, so the read cannot depend on it, and the database and the
            // projector no longer wait for each other in turn.
            let (committed, next) = tokio::join!(
                self.store.commit_rebuild(name, &ops),
                self.store.read_all(last.position, self.batch),
            );
            committed?;
            report.position = last.position;
            report.done += u64::try_from(events.len()).unwrap_or(u64::MAX);
            if report.done >= report.total {
                // More came meanwhile: count what is left.
                report.total = report.done + self.store.count_events_after(report.position).await?;
            }
            report.elapsed = started.elapsed();
            progress(report);
            events = next?;
            if events.is_empty() {
                // Read again now that the commit is done: on PostgreSQL its transaction held
                // the fence back while the page was read, hiding appends made meanwhile.
                events = self.store.read_all(report.position, self.batch).await?;
            }
        }
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
                // Not an error of catching up; stops all the same.
                Err(e @ ProjectorError::RebuildRunning { .. }) => break Err(e),
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
