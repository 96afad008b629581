//! Copies of family overviews as last computed, each with the stamp it was computed at, so that
//! a read whose stamp has not moved is answered with one small query instead of ten
//! ([ADR 0035](../../../docs/decisions/0035-overview-copies.md)).
//!
//! An overview is a function of the family view's rows of its scopes (the student, the
//! student's class, the family's people, the school: the greatest of their stamps moves with
//! every event that changes one of those rows), of the directory (its version is in the key), of
//! who reads it (their person and role are in the key) and of the day (in the key). A copy is
//! used only when the stamp read now equals the one it was made at; otherwise the overview is
//! computed again and the copy replaced.
//!
//! Bounded by the bytes of the copies kept (the least recently used go first) and by age: a copy
//! older than [`OverviewCache::MAX_AGE`] is not used, whatever its stamp (a projection rebuilt by
//! a new version of its projector gives the same stamps to rows that may differ).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use registro_domain::{PersonId, Role, SchoolId};

/// What an overview depends on besides the family view's rows.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OverviewKey {
    /// The school.
    pub school: SchoolId,
    /// The student.
    pub student: PersonId,
    /// The school year's first calendar year.
    pub year: i32,
    /// Who reads it (the unread communications are theirs).
    pub reader: PersonId,
    /// In which role (the communications shown depend on it).
    pub role: Role,
    /// The day it is computed for (the coming homework and meetings start from it).
    pub today: time::Date,
    /// The version of the school's directory it was computed with.
    pub directory: u64,
}

/// A copy of an overview.
#[derive(Debug, Clone)]
pub struct OverviewCopy {
    /// The greatest stamp of its scopes when it was computed.
    pub stamp: u64,
    /// Its JSON.
    pub body: Arc<[u8]>,
    /// Its strong `ETag`, quoted.
    pub etag: Arc<str>,
}

/// The copies, bounded by their bytes and by age.
#[derive(Debug)]
pub struct OverviewCache {
    budget: usize,
    inner: Mutex<Copies>,
}

#[derive(Debug, Default)]
struct Copies {
    entries: HashMap<OverviewKey, Kept>,
    /// The keys by last use, oldest first (the tick is unique).
    by_use: BTreeMap<u64, OverviewKey>,
    /// The bytes of the copies kept, together.
    held: usize,
    tick: u64,
}

#[derive(Debug)]
struct Kept {
    copy: OverviewCopy,
    made: Instant,
    tick: u64,
}

impl Default for OverviewCache {
    fn default() -> Self {
        Self::new(Self::DEFAULT_BYTES)
    }
}

impl OverviewCache {
    /// The default budget: about 8,000 overviews of a student at the end of the year (2 KiB
    /// each), all the families of a large school.
    pub const DEFAULT_BYTES: usize = 16 << 20;
    /// How long a copy may be used, whatever its stamp.
    pub const MAX_AGE: Duration = Duration::from_secs(300);
    /// The bytes a copy costs besides its body (key, entry, index).
    const OVERHEAD: usize = 256;

    /// A cache keeping at most `budget` bytes of copies (0: keeps nothing).
    #[must_use]
    pub fn new(budget: usize) -> Self {
        Self {
            budget,
            inner: Mutex::new(Copies::default()),
        }
    }

    /// The copy kept for `key`, unless it is older than [`Self::MAX_AGE`] at `now`.
    pub fn get(&self, key: &OverviewKey, now: Instant) -> Option<OverviewCopy> {
        let mut guard = self.lock();
        let inner = &mut *guard;
        let tick = inner.next_tick();
        let kept = inner.entries.get_mut(key)?;
        if now.saturating_duration_since(kept.made) >= Self::MAX_AGE {
            inner.remove(key);
            return None;
        }
        let old = std::mem::replace(&mut kept.tick, tick);
        let copy = kept.copy.clone();
        inner.by_use.remove(&old);
        inner.by_use.insert(tick, key.clone());
        Some(copy)
    }

    /// Keeps `copy` for `key` (made at `now`) in place of an older one, dropping the least
    /// recently used copies beyond the budget. A copy of a stamp older than the one kept is not
    /// kept.
    pub fn put(&self, key: OverviewKey, copy: OverviewCopy, now: Instant) {
        let size = copy.body.len() + copy.etag.len() + Self::OVERHEAD;
        if size > self.budget {
            return;
        }
        let mut guard = self.lock();
        let inner = &mut *guard;
        if inner
            .entries
            .get(&key)
            .is_some_and(|kept| kept.copy.stamp > copy.stamp)
        {
            return;
        }
        inner.remove(&key);
        let tick = inner.next_tick();
        inner.held += size;
        inner.by_use.insert(tick, key.clone());
        inner.entries.insert(
            key,
            Kept {
                copy,
                made: now,
                tick,
            },
        );
        while inner.held > self.budget {
            let Some((_, oldest)) = inner.by_use.pop_first() else {
                break;
            };
            inner.remove(&oldest);
        }
    }

    /// How many copies are kept, and their bytes.
    #[must_use]
    pub fn held(&self) -> (usize, usize) {
        let inner = self.lock();
        (inner.entries.len(), inner.held)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Copies> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Copies {
    fn next_tick(&mut self) -> u64 {
        self.tick += 1;
        self.tick
    }

    fn remove(&mut self, key: &OverviewKey) {
        if let Some(gone) = self.entries.remove(key) {
            self.held -= gone.copy.body.len() + gone.copy.etag.len() + OverviewCache::OVERHEAD;
            self.by_use.remove(&gone.tick);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> OverviewKey {
        OverviewKey {
            school: SchoolId::from(uuid::Uuid::from_u128(1)),
            student: PersonId::from(uuid::Uuid::from_u128(u128::from(n))),
            year: 2025,
            reader: PersonId::from(uuid::Uuid::from_u128(99)),
            role: Role::Guardian,
            today: time::macros::date!(2026 - 01 - 10),
            directory: 7,
        }
    }

    fn copy(stamp: u64, bytes: usize) -> OverviewCopy {
        OverviewCopy {
            stamp,
            body: vec![b'x'; bytes].into(),
            etag: "\"e\"".into(),
        }
    }

    #[test]
    fn a_copy_is_found_by_its_whole_key_only() {
        let cache = OverviewCache::default();
        let now = Instant::now();
        cache.put(key(1), copy(5, 10), now);
        assert_eq!(cache.get(&key(1), now).map(|c| c.stamp), Some(5));
        assert!(cache.get(&key(2), now).is_none());
        let other_day = OverviewKey {
            today: time::macros::date!(2026 - 01 - 11),
            ..key(1)
        };
        assert!(cache.get(&other_day, now).is_none());
        let other_directory = OverviewKey {
            directory: 8,
            ..key(1)
        };
        assert!(cache.get(&other_directory, now).is_none());
    }

    #[test]
    fn a_newer_copy_replaces_an_older_one_and_never_the_reverse() {
        let cache = OverviewCache::default();
        let now = Instant::now();
        cache.put(key(1), copy(5, 10), now);
        cache.put(key(1), copy(9, 20), now);
        cache.put(key(1), copy(7, 30), now);
        let found = cache.get(&key(1), now).map(|c| (c.stamp, c.body.len()));
        assert_eq!(found, Some((9, 20)));
        assert_eq!(cache.held(), (1, 20 + 3 + OverviewCache::OVERHEAD));
    }

    #[test]
    fn the_least_recently_used_copies_go_first_beyond_the_budget() {
        let each = 100 + 3 + OverviewCache::OVERHEAD;
        let cache = OverviewCache::new(3 * each);
        let now = Instant::now();
        for n in 1..=3 {
            cache.put(key(n), copy(1, 100), now);
        }
        // 1 used: 2 is now the least recently used.
        assert!(cache.get(&key(1), now).is_some());
        cache.put(key(4), copy(1, 100), now);
        assert!(cache.get(&key(2), now).is_none());
        for n in [1, 3, 4] {
            assert!(cache.get(&key(n), now).is_some(), "{n}");
        }
        assert_eq!(cache.held(), (3, 3 * each));
        // Larger than the whole budget: not kept.
        cache.put(key(5), copy(1, 4 * each), now);
        assert!(cache.get(&key(5), now).is_none());
    }

    #[test]
    fn an_old_copy_is_not_used_and_is_dropped() {
        let cache = OverviewCache::default();
        let then = Instant::now();
        cache.put(key(1), copy(5, 10), then);
        let later = then + OverviewCache::MAX_AGE;
        assert!(cache.get(&key(1), later).is_none());
        assert_eq!(cache.held(), (0, 0));
    }
}
