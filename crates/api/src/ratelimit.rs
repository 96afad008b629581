//! Rate limits on reads, per token holder (the person a verified token names, at its issuer):
//! a generic cell rate algorithm (GCRA), which allows a burst and then a steady rate, and tells
//! a refused client exactly when to come back. Keying by the holder rather than by the token's
//! text means that fetching fresh tokens buys no extra reads, and that tokens which fail
//! verification never reach the table.
//!
//! Memory is bounded: when the table reaches [`MAX_KEYS`], the entries whose allowance has
//! fully recovered (they are the same as absent) are dropped, then, if still too many, the half
//! that is closest to recovery; the busiest holders keep their state.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The most tokens tracked at once.
pub const MAX_KEYS: usize = 100_000;

/// How fast a token may read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests per minute, sustained; 0 turns the limit off.
    pub per_minute: u32,
    /// Requests allowed at once above the sustained rate.
    pub burst: u32,
}

impl RateLimit {
    /// No limit (in-process callers: the generator, the benchmarks).
    pub const OFF: Self = Self {
        per_minute: 0,
        burst: 0,
    };
}

impl Default for RateLimit {
    /// 300 reads a minute (5 a second) with bursts of 60: far above what a person or a family
    /// app needs, low enough to stop scraping.
    fn default() -> Self {
        Self {
            per_minute: 300,
            burst: 60,
        }
    }
}

/// A rate limiter keyed by a token digest.
#[derive(Debug)]
pub struct RateLimiter {
    limit: RateLimit,
    /// Each key's theoretical arrival time: the request is allowed when it is at most
    /// `tolerance` in the future.
    keys: Mutex<HashMap<[u8; 32], Instant>>,
}

impl RateLimiter {
    /// A limiter enforcing `limit`.
    #[must_use]
    pub fn new(limit: RateLimit) -> Self {
        Self {
            limit,
            keys: Mutex::new(HashMap::new()),
        }
    }

    fn interval(&self) -> Duration {
        Duration::from_secs(60) / self.limit.per_minute.max(1)
    }

    /// Takes one request for `key` at `now`: `Ok` when allowed, or how long to wait.
    ///
    /// # Errors
    /// The time after which the request would be allowed.
    pub fn check(&self, key: [u8; 32], now: Instant) -> Result<(), Duration> {
        if self.limit.per_minute == 0 {
            return Ok(());
        }
        let interval = self.interval();
        let tolerance = interval * self.limit.burst;
        let mut keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        if keys.len() >= MAX_KEYS && !keys.contains_key(&key) {
            keys.retain(|_, tat| *tat > now);
            if keys.len() >= MAX_KEYS {
                let mut tats: Vec<Instant> = keys.values().copied().collect();
                let middle = tats.len() / 2;
                let (_, median, _) = tats.select_nth_unstable(middle);
                let median = *median;
                keys.retain(|_, tat| *tat > median);
            }
        }
        let tat = keys.get(&key).copied().unwrap_or(now).max(now);
        let allowed_at = tat.checked_sub(tolerance).unwrap_or(now);
        if allowed_at > now {
            return Err(allowed_at - now);
        }
        keys.insert(key, tat + interval);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_the_steady_rate_and_the_wait_is_exact() {
        let limiter = RateLimiter::new(RateLimit {
            per_minute: 60,
            burst: 3,
        });
        let start = Instant::now();
        let key = [1; 32];
        // A burst of 1 + 3 at the same instant.
        for _ in 0..4 {
            assert_eq!(limiter.check(key, start), Ok(()));
        }
        let wait = limiter.check(key, start).unwrap_err();
        assert_eq!(wait, Duration::from_secs(1));
        // Another token is not affected.
        assert_eq!(limiter.check([2; 32], start), Ok(()));
        // After the wait, exactly one more.
        let later = start + wait;
        assert_eq!(limiter.check(key, later), Ok(()));
        assert!(limiter.check(key, later).is_err());
        // After a long pause the whole burst is back.
        let much_later = later + Duration::from_secs(60);
        for _ in 0..4 {
            assert_eq!(limiter.check(key, much_later), Ok(()));
        }
        assert!(limiter.check(key, much_later).is_err());
    }

    #[test]
    fn zero_turns_the_limit_off() {
        let limiter = RateLimiter::new(RateLimit {
            per_minute: 0,
            burst: 0,
        });
        let now = Instant::now();
        for _ in 0..1000 {
            assert_eq!(limiter.check([0; 32], now), Ok(()));
        }
    }

    #[test]
    fn a_full_table_drops_the_holders_closest_to_recovery() {
        let limiter = RateLimiter::new(RateLimit {
            per_minute: 60,
            burst: 1000,
        });
        let now = Instant::now();
        let key = |i: usize| {
            let mut key = [0; 32];
            key[..8].copy_from_slice(&(i as u64).to_le_bytes());
            key
        };
        // Holder i has made (i % 4) + 1 requests: four levels of use, the same number of each.
        for i in 0..MAX_KEYS {
            for _ in 0..=(i % 4) {
                limiter.check(key(i), now).unwrap();
            }
        }
        // One more holder: the table is full, so those closest to recovery go.
        limiter.check(key(MAX_KEYS), now).unwrap();
        let keys = limiter.keys.lock().unwrap();
        assert!(keys.len() <= MAX_KEYS / 2 + 1, "{}", keys.len());
        let kept = |level: usize| {
            (0..MAX_KEYS)
                .filter(|i| i % 4 == level && keys.contains_key(&key(*i)))
                .count()
        };
        assert_eq!(kept(0), 0, "the lightest users are dropped");
        assert_eq!(kept(3), MAX_KEYS / 4, "the heaviest users keep their state");
        assert!(keys.contains_key(&key(MAX_KEYS)));
    }
}
