//! Per-school read models held in memory and kept current by the events: the school directory
//! (people, roles, links, classes, assignments, enrolments), from which authorisation decides,
//! and the access log.
//!
//! Each request brings its school's model up to date first by reading its stream from the
//! version it holds onwards (one indexed query, usually returning nothing), so a request always
//! sees every write that was acknowledged before it started, whichever instance of the API
//! made it. Only schools that have events are kept.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use registro_domain::SchoolId;
use registro_store::{EventStore, MAX_PAGE, RecordedEvent, StoreError, StreamId};

/// A read model folded from one stream of each school.
pub trait Fold: Default + Clone + Send + Sync + 'static {
    /// The stream it is folded from.
    const STREAM: &'static str;

    /// Applies one event of the stream.
    ///
    /// # Errors
    /// When the event cannot be read (a bug or a foreign event in the stream).
    fn apply(&mut self, event: &RecordedEvent) -> anyhow::Result<()>;
}

/// A model as of a stream version.
#[derive(Debug, Clone, Default)]
pub struct Snapshot<S> {
    /// The stream's version the model has applied (0: no events).
    pub version: u64,
    /// The model.
    pub state: Arc<S>,
}

/// The models of every school, for one [`Fold`].
#[derive(Debug)]
pub struct SchoolCache<S> {
    stream: StreamId,
    schools: Mutex<HashMap<SchoolId, Arc<tokio::sync::Mutex<Snapshot<S>>>>>,
}

impl<S: Fold> Default for SchoolCache<S> {
    fn default() -> Self {
        Self {
            #[allow(clippy::expect_used)] // a constant, checked by the tests
            stream: StreamId::parse(S::STREAM).expect("a valid stream name"),
            schools: Mutex::new(HashMap::new()),
        }
    }
}

impl<S: Fold> SchoolCache<S> {
    /// The school's model, brought up to date with the store.
    ///
    /// # Errors
    /// [`StoreError`] from the read, or [`StoreError::Internal`] for an unreadable event.
    pub async fn current(
        &self,
        store: &dyn EventStore,
        school: SchoolId,
    ) -> Result<Snapshot<S>, StoreError> {
        let slot = self
            .schools
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&school)
            .cloned();
        let Some(slot) = slot else {
            // Not cached yet: fold it without holding any lock, and keep it only if the school
            // has events (so that requests naming random schools cost no memory).
            let fresh = self.catch_up(store, school, Snapshot::default()).await?;
            if fresh.version > 0 {
                self.schools
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .entry(school)
                    .or_insert_with(|| Arc::new(tokio::sync::Mutex::new(fresh.clone())));
            }
            return Ok(fresh);
        };
        let mut held = slot.lock().await;
        let current = self.catch_up(store, school, held.clone()).await?;
        *held = current.clone();
        Ok(current)
    }

    async fn catch_up(
        &self,
        store: &dyn EventStore,
        school: SchoolId,
        mut snapshot: Snapshot<S>,
    ) -> Result<Snapshot<S>, StoreError> {
        loop {
            let events = store
                .read_stream(school, &self.stream, snapshot.version + 1, MAX_PAGE)
                .await?;
            let Some(last) = events.last() else {
                return Ok(snapshot);
            };
            let last_version = last.stream_version;
            let state = Arc::make_mut(&mut snapshot.state);
            for event in &events {
                state.apply(event).map_err(|e| {
                    StoreError::internal(format!(
                        "event {} of stream {} of school {school}: {e:#}",
                        event.stream_version, self.stream
                    ))
                })?;
            }
            snapshot.version = last_version;
            if events.len() < MAX_PAGE {
                return Ok(snapshot);
            }
        }
    }
}
