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

use std::any::{Any, TypeId};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

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
    snapshot: Snapshot<S>,
) -> Result<Snapshot<S>, StoreError> {
    fold_stream_with(store, school, stream, snapshot, |_| {}).await
}

/// As [`fold_stream`]; `changing` is called with the state before the first event is applied
/// to it (a caller sharing it may let go of its reference, so that it is changed in place
/// rather than copied).
async fn fold_stream_with<S: Fold>(
    store: &dyn EventStore,
    school: SchoolId,
    stream: &StreamId,
    mut snapshot: Snapshot<S>,
    mut changing: impl FnMut(&Arc<S>),
) -> Result<Snapshot<S>, StoreError> {
    let mut first = true;
    loop {
        let events = store
            .read_stream(school, stream, snapshot.version + 1, FOLD_PAGE)
            .await?;
        let Some(last) = events.last() else {
            return Ok(snapshot);
        };
        let last_version = last.stream_version;
        if std::mem::take(&mut first) {
            changing(&snapshot.state);
        }
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

/// The states of the streams commands were decided on lately, so that the next command on a
/// stream reads only the events that came since (usually none) instead of folding the stream
/// from its first event. [ADR 0033](../../../docs/decisions/0033-stream-state-cache.md).
///
/// Bounded twice: by the events its states were folded from (a state's size grows with its
/// stream; the least recently used states go first), and by time (a state unused for
/// [`StreamCache::IDLE`] is dropped, so that data erased from the store does not linger here).
/// A state is shared (`Arc`): a request that catches up copies it first, so the kept state
/// never changes under another request. Correct with several instances of the API on one
/// store: every use reads the stream from the kept version onwards.
#[derive(Debug)]
pub struct StreamCache {
    budget: u64,
    inner: Mutex<Streams>,
}

type StreamKey = (SchoolId, StreamId, TypeId);

#[derive(Debug, Default)]
struct Streams {
    entries: HashMap<StreamKey, Kept>,
    /// The keys by last use, oldest first (the tick is unique).
    by_use: BTreeMap<u64, StreamKey>,
    /// The events the kept states were folded from, together.
    held: u64,
    tick: u64,
}

#[derive(Debug)]
struct Kept {
    version: u64,
    state: Arc<dyn Any + Send + Sync>,
    tick: u64,
    used: Instant,
}

impl Default for StreamCache {
    fn default() -> Self {
        Self::new(Self::DEFAULT_EVENTS)
    }
}

impl StreamCache {
    /// The default budget: the events the kept states may have been folded from, together
    /// (a morning's class registers and the records being written, with room to spare).
    pub const DEFAULT_EVENTS: u64 = 200_000;
    /// How long a state unused is kept.
    pub const IDLE: Duration = Duration::from_secs(600);

    /// A cache keeping states folded from at most `budget` events (0: keeps nothing).
    #[must_use]
    pub fn new(budget: u64) -> Self {
        Self {
            budget,
            inner: Mutex::new(Streams::default()),
        }
    }

    /// `stream` of `school` folded into `S`, from the kept state onwards.
    ///
    /// # Errors
    /// [`StoreError`] from the read, or [`StoreError::Internal`] for an unreadable event.
    pub async fn current<S: Fold>(
        &self,
        store: &dyn EventStore,
        school: SchoolId,
        stream: &StreamId,
    ) -> Result<Snapshot<S>, StoreError> {
        let key = (school, stream.clone(), TypeId::of::<S>());
        let found = self.get::<S>(&key, Instant::now()).unwrap_or_default();
        // With events to apply, the kept state is let go of first: unless another request
        // still holds it, it is then brought up to date in place instead of copied (a copy of
        // a long stream's state on every write was most of a command's allocations).
        let release = |state: &Arc<S>| self.release(&key, state);
        let fresh = fold_stream_with(store, school, stream, found, release).await?;
        self.keep(key, &fresh, Instant::now());
        Ok(fresh)
    }

    /// Lets go of the state kept for `key` if it is `state`.
    fn release<S: Fold>(&self, key: &StreamKey, state: &Arc<S>) {
        let mut inner = self.lock();
        let same = inner
            .entries
            .get(key)
            .is_some_and(|kept| std::ptr::addr_eq(Arc::as_ptr(&kept.state), Arc::as_ptr(state)));
        if same {
            inner.remove(key);
        }
    }

    /// Drops the states unused for [`Self::IDLE`] every minute, for as long as `cache` is
    /// alive elsewhere: without it, an instance that gets no requests would keep them (and a
    /// record's details erased meanwhile) until its next request.
    pub fn sweep_idle(cache: &Arc<Self>) {
        let cache = Arc::downgrade(cache);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(60));
            loop {
                every.tick().await;
                let Some(cache) = cache.upgrade() else {
                    return;
                };
                cache.expire_idle(Instant::now());
            }
        });
    }

    /// Drops the states unused for [`Self::IDLE`] as of `now`.
    pub fn expire_idle(&self, now: Instant) {
        self.lock().expire(now);
    }

    /// How many states are kept, and the events they were folded from.
    #[must_use]
    pub fn held(&self) -> (usize, u64) {
        let inner = self.lock();
        (inner.entries.len(), inner.held)
    }

    fn get<S: Fold>(&self, key: &StreamKey, now: Instant) -> Option<Snapshot<S>> {
        let mut guard = self.lock();
        let inner = &mut *guard;
        inner.expire(now);
        let tick = inner.next_tick();
        let kept = inner.entries.get_mut(key)?;
        let state = Arc::clone(&kept.state).downcast::<S>().ok()?;
        let (old, version) = (kept.tick, kept.version);
        kept.tick = tick;
        kept.used = now;
        inner.by_use.remove(&old);
        inner.by_use.insert(tick, key.clone());
        Some(Snapshot { version, state })
    }

    fn keep<S: Fold>(&self, key: StreamKey, fresh: &Snapshot<S>, now: Instant) {
        if fresh.version == 0 || fresh.version > self.budget {
            return;
        }
        let mut guard = self.lock();
        let inner = &mut *guard;
        if inner
            .entries
            .get(&key)
            .is_some_and(|kept| kept.version >= fresh.version)
        {
            return;
        }
        inner.remove(&key);
        let tick = inner.next_tick();
        inner.held += fresh.version;
        inner.by_use.insert(tick, key.clone());
        let state: Arc<dyn Any + Send + Sync> = Arc::clone(&fresh.state) as _;
        inner.entries.insert(
            key,
            Kept {
                version: fresh.version,
                state,
                tick,
                used: now,
            },
        );
        while inner.held > self.budget && inner.drop_least_recent() {}
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Streams> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Streams {
    fn next_tick(&mut self) -> u64 {
        self.tick += 1;
        self.tick
    }

    fn remove(&mut self, key: &StreamKey) {
        if let Some(gone) = self.entries.remove(key) {
            self.held -= gone.version;
            self.by_use.remove(&gone.tick);
        }
    }

    /// Drops the least recently used state; false when none is kept.
    fn drop_least_recent(&mut self) -> bool {
        let Some((_, key)) = self.by_use.pop_first() else {
            return false;
        };
        self.remove(&key);
        true
    }

    /// Drops the states unused for [`StreamCache::IDLE`] (the least recently used come first).
    fn expire(&mut self, now: Instant) {
        while let Some((_, key)) = self.by_use.first_key_value() {
            let idle = self
                .entries
                .get(key)
                .is_none_or(|kept| now.duration_since(kept.used) >= StreamCache::IDLE);
            if !idle || !self.drop_least_recent() {
                break;
            }
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

    /// Counts the events of a stream (any stream).
    #[derive(Debug, Clone, Default)]
    struct Count(u64);

    impl Fold for Count {
        fn apply(&mut self, _: &RecordedEvent) -> anyhow::Result<()> {
            self.0 += 1;
            Ok(())
        }
    }

    async fn store() -> (TempDir, SqliteStore) {
        let dir = TempDir::new();
        let store = SqliteStore::open(&dir.path().join("registro.db"), MasterKey::generate())
            .await
            .unwrap();
        store.migrate().await.unwrap();
        (dir, store)
    }

    /// Appends `n` reads to the school's access stream.
    async fn read_n(store: &SqliteStore, school: SchoolId, n: usize) {
        for _ in 0..n {
            crate::access_log::record(
                store,
                school,
                PersonId::new(),
                Role::Teacher,
                vec![PersonId::new()],
                "student.record",
                "r",
            )
            .await
            .unwrap();
        }
    }

    fn access() -> StreamId {
        StreamId::parse(registro_domain::access::STREAM).unwrap()
    }

    #[tokio::test]
    async fn a_kept_state_catches_up_and_is_never_changed_under_its_holder() {
        let (_dir, store) = store().await;
        let (school, cache) = (SchoolId::new(), StreamCache::default());
        assert_eq!(
            cache
                .current::<Count>(&store, school, &access())
                .await
                .unwrap()
                .version,
            0
        );
        assert_eq!(cache.held(), (0, 0), "an empty stream is not kept");
        read_n(&store, school, 3).await;
        let first = cache
            .current::<Count>(&store, school, &access())
            .await
            .unwrap();
        assert_eq!((first.version, first.state.0), (3, 3));
        assert_eq!(cache.held(), (1, 3));
        // Written meanwhile by another instance: the next use reads it; the state handed out
        // before stays as it was.
        read_n(&store, school, 2).await;
        let second = cache
            .current::<Count>(&store, school, &access())
            .await
            .unwrap();
        assert_eq!((second.version, second.state.0), (5, 5));
        assert_eq!(first.state.0, 3);
        assert_eq!(cache.held(), (1, 5));
        // Nothing new: the kept state itself, not a copy.
        let third = cache
            .current::<Count>(&store, school, &access())
            .await
            .unwrap();
        assert!(Arc::ptr_eq(&second.state, &third.state));
        // Held by nobody else, the kept state is brought up to date in place.
        let kept = Arc::as_ptr(&third.state);
        drop((second, third));
        read_n(&store, school, 1).await;
        let fourth = cache
            .current::<Count>(&store, school, &access())
            .await
            .unwrap();
        assert_eq!(fourth.state.0, 6);
        assert!(std::ptr::eq(Arc::as_ptr(&fourth.state), kept));
        assert_eq!(cache.held(), (1, 6));
        // Another state folded from the same stream is kept apart.
        let log = cache
            .current::<crate::AccessLog>(&store, school, &access())
            .await
            .unwrap();
        assert_eq!(log.state.len(), 6);
        assert_eq!(cache.held(), (2, 12));
        // As is the same stream of another school.
        let other = SchoolId::new();
        read_n(&store, other, 1).await;
        let theirs = cache
            .current::<Count>(&store, other, &access())
            .await
            .unwrap();
        assert_eq!(theirs.state.0, 1);
        assert_eq!(
            cache
                .current::<Count>(&store, school, &access())
                .await
                .unwrap()
                .state
                .0,
            6
        );
    }

    #[tokio::test]
    async fn the_least_recently_used_states_go_past_the_budget_and_idle_ones_expire() {
        let (_dir, store) = store().await;
        let cache = StreamCache::new(10);
        let schools: Vec<SchoolId> = (0..4).map(|_| SchoolId::new()).collect();
        for school in &schools {
            read_n(&store, *school, 4).await;
        }
        for school in &schools[..2] {
            cache
                .current::<Count>(&store, *school, &access())
                .await
                .unwrap();
        }
        assert_eq!(cache.held(), (2, 8));
        // The first is used again, so the second is the least recently used.
        cache
            .current::<Count>(&store, schools[0], &access())
            .await
            .unwrap();
        cache
            .current::<Count>(&store, schools[2], &access())
            .await
            .unwrap();
        assert_eq!(cache.held(), (2, 8), "one went to keep 10 events at most");
        let key = |school: SchoolId| (school, access(), TypeId::of::<Count>());
        let now = Instant::now();
        assert!(cache.get::<Count>(&key(schools[0]), now).is_some());
        assert!(cache.get::<Count>(&key(schools[1]), now).is_none());
        assert!(cache.get::<Count>(&key(schools[2]), now).is_some());
        // A stream longer than the whole budget is folded but not kept.
        read_n(&store, schools[3], 7).await;
        let long = cache
            .current::<Count>(&store, schools[3], &access())
            .await
            .unwrap();
        assert_eq!(long.state.0, 11);
        assert_eq!(cache.held(), (2, 8));
        // Unused for the idle time: dropped at the next use of the cache, or by the sweep.
        let later = now + StreamCache::IDLE + Duration::from_secs(1);
        cache.expire_idle(now);
        assert_eq!(cache.held(), (2, 8), "not idle yet");
        cache.expire_idle(later);
        assert_eq!(cache.held(), (0, 0));
        cache
            .current::<Count>(&store, schools[0], &access())
            .await
            .unwrap();
        assert!(
            cache
                .get::<Count>(&key(schools[0]), later + StreamCache::IDLE)
                .is_none()
        );
        assert_eq!(cache.held(), (0, 0));
    }
}
