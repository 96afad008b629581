//! Per-school read models held in memory and kept current by the events: the school directory
//! (people, roles, links, classes, assignments, enrolments), from which authorisation decides,
//! and the access log.
//!
//! Each request brings its school's model up to date first by reading its stream from the
//! version it holds onwards (one indexed query, usually returning nothing), so a request always
//! sees every write that was acknowledged before it started, whichever instance of the API
//! made it. Only schools that have events are kept. Snapshots are shared (`Arc`); a model that
//! changes while a request still holds the previous snapshot is copied on write, so models
//! that grow long keep their state in shared chunks (see [`crate::AccessLog`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use registro_domain::SchoolId;
use registro_store::{EventStore, RecordedEvent, StoreError, StreamId};

/// A state folded from the events of a stream.
pub trait Fold: Default + Clone + Send + Sync + 'static {
    /// Applies one event of the stream.
    ///
    /// # Errors
    /// When the event cannot be read (a bug or a foreign event in the stream).
    fn apply(&mut self, event: &RecordedEvent) -> anyhow::Result<()>;
}

/// A read model folded from the stream of the same name in every school.
pub trait SchoolStream: Fold {
    /// The stream it is folded from.
    const STREAM: &'static str;
}

/// A model as of a stream version.
#[derive(Debug, Clone, Default)]
pub struct Snapshot<S> {
    /// The stream's version the model has applied (0: no events).
    pub version: u64,
    /// The model.
    pub state: Arc<S>,
}

/// The models of every school, for one [`SchoolStream`].
#[derive(Debug)]
pub struct SchoolCache<S> {
    stream: StreamId,
    schools: Mutex<HashMap<SchoolId, Snapshot<S>>>,
    /// One gate per school being folded from the start, so that the requests arriving at a
    /// cold cache (after a restart) fold its stream once, not once each.
    cold: Mutex<HashMap<SchoolId, Arc<tokio::sync::Mutex<()>>>>,
}

impl<S: SchoolStream> Default for SchoolCache<S> {
    fn default() -> Self {
        Self {
            #[allow(clippy::expect_used)] // a constant, checked by the tests
            stream: StreamId::parse(S::STREAM).expect("a valid stream name"),
            schools: Mutex::new(HashMap::new()),
            cold: Mutex::new(HashMap::new()),
        }
    }
}

impl<S: SchoolStream> SchoolCache<S> {
    /// The school's model, brought up to date with the store.
    ///
    /// No lock is held while the store is read, so a school's requests do not queue behind one
    /// another: each catches up from the snapshot it found, and the newest snapshot is kept.
    ///
    /// # Errors
    /// [`StoreError`] from the read, or [`StoreError::Internal`] for an unreadable event.
    pub async fn current(
        &self,
        store: &dyn EventStore,
        school: SchoolId,
    ) -> Result<Snapshot<S>, StoreError> {
        let found = self.lock().get(&school).cloned();
        match found {
            Some(found) => Ok(self.keep(school, self.catch_up(store, school, found).await?)),
            None => self.fold_cold(store, school).await,
        }
    }

    /// Keeps `fresh` unless a newer snapshot is kept already; returns the newer one. A school
    /// without events is not kept, so that requests naming random schools cost no memory.
    fn keep(&self, school: SchoolId, fresh: Snapshot<S>) -> Snapshot<S> {
        if fresh.version == 0 {
            return fresh;
        }
        let mut schools = self.lock();
        let kept = schools.entry(school).or_default();
        if fresh.version > kept.version {
            *kept = fresh.clone();
            fresh
        } else {
            kept.clone()
        }
    }

    /// Folds a school that is not cached, once for all the requests that ask meanwhile.
    async fn fold_cold(
        &self,
        store: &dyn EventStore,
        school: SchoolId,
    ) -> Result<Snapshot<S>, StoreError> {
        let gate = Arc::clone(
            self.cold
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(school)
                .or_default(),
        );
        let result = {
            let _folding = gate.lock().await;
            // Folded by the request this one waited for? Then only what came since is read.
            let found = self.lock().get(&school).cloned().unwrap_or_default();
            self.catch_up(store, school, found)
                .await
                .map(|fresh| self.keep(school, fresh))
        };
        let mut cold = self.cold.lock().unwrap_or_else(PoisonError::into_inner);
        // The last one out removes the gate (the map's reference and this one remain).
        if Arc::strong_count(&gate) <= 2 {
            cold.remove(&school);
        }
        result
    }

    /// How many schools are cached.
    #[must_use]
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no school is cached.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SchoolId, Snapshot<S>>> {
        self.schools.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn catch_up(
        &self,
        store: &dyn EventStore,
        school: SchoolId,
        snapshot: Snapshot<S>,
    ) -> Result<Snapshot<S>, StoreError> {
        fold_stream(store, school, &self.stream, snapshot).await
    }
}

/// How many events a fold reads at a time: a command folds its whole stream, and a page is what
/// it holds in memory besides the state (a long stream folded whole at once made each command's
/// memory grow with the stream, times the commands running).
pub const FOLD_PAGE: usize = 500;

/// `snapshot` brought up to date with the events of `stream` that follow its version, a page of
/// [`FOLD_PAGE`] events at a time.
///
/// # Errors
/// [`StoreError`] from the read, or [`StoreError::Internal`] for an unreadable event.
pub async fn fold_stream<S: Fold>(
    store: &dyn EventStore,
    school: SchoolId,
    stream: &StreamId,
    mut snapshot: Snapshot<S>,
) -> Result<Snapshot<S>, StoreError> {
    loop {
        let events = store
            .read_stream(school, stream, snapshot.version + 1, FOLD_PAGE)
            .await?;
        let Some(last) = events.last() else {
            return Ok(snapshot);
        };
        let last_version = last.stream_version;
        let state = Arc::make_mut(&mut snapshot.state);
        for event in &events {
            state.apply(event).map_err(|e| {
                StoreError::internal(format!(
                    "event {} of stream {stream} of school {school}: {e:#}",
                    event.stream_version
                ))
            })?;
        }
        snapshot.version = last_version;
        if events.len() < FOLD_PAGE {
            return Ok(snapshot);
        }
    }
}

#[cfg(test)]
mod tests {
    use registro_domain::directory::{Directory, DirectoryCommand};
    use registro_domain::{FiscalCode, PersonId, Role};
    use registro_store::MasterKey;
    use registro_store::sqlite::SqliteStore;
    use registro_testkit::TempDir;

    use super::*;
    use crate::directory::execute_as_system;

    #[tokio::test]
    async fn schools_are_cached_only_once_they_have_events_and_stay_current() {
        let dir = TempDir::new();
        let store = SqliteStore::open(&dir.path().join("registro.db"), MasterKey::generate())
            .await
            .unwrap();
        store.migrate().await.unwrap();
        let cache = SchoolCache::<Directory>::default();
        for _ in 0..10 {
            let nobody = cache.current(&store, SchoolId::new()).await.unwrap();
            assert_eq!(nobody.version, 0);
        }
        assert!(cache.is_empty(), "unknown schools cost no memory");
        assert!(cache.cold.lock().unwrap().is_empty(), "nor do their gates");

        let school = SchoolId::new();
        let register = |n: u32| DirectoryCommand::Register {
            person: PersonId::new(),
            fiscal_code: FiscalCode::with_check_character(&format!("XXXYYY80A{n:02}Z999")).unwrap(),
            family_name: "Rossi".into(),
            given_name: "Anna".into(),
            role: Role::Teacher,
            birth_date: None,
        };
        execute_as_system(&store, school, &register(1))
            .await
            .unwrap();
        let first = cache.current(&store, school).await.unwrap();
        assert_eq!((first.version, cache.len()), (1, 1));
        // A write made elsewhere (another cache, another instance) is seen by the next request,
        // while the snapshot already handed out stays as it was.
        execute_as_system(&store, school, &register(2))
            .await
            .unwrap();
        let second = cache.current(&store, school).await.unwrap();
        assert_eq!(second.version, 2);
        let code = FiscalCode::with_check_character("XXXYYY80A02Z999").unwrap();
        assert!(second.state.by_fiscal_code(&code).is_some());
        assert!(first.state.by_fiscal_code(&code).is_none());
    }
}
