//! The issuer's public keys (a JWKS), cached and refreshed on an unknown key id.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey};
use tokio::sync::{Mutex, RwLock};

/// The least time between two fetches of the JWKS, so that tokens naming random key ids
/// cannot make registro hammer the identity provider.
pub const MIN_REFRESH: Duration = Duration::from_secs(30);
/// How long fetched keys are trusted before they are fetched again.
pub const MAX_AGE: Duration = Duration::from_secs(600);
/// How long, while the provider cannot be reached, keys already fetched keep serving.
pub const MAX_STALE: Duration = Duration::from_secs(24 * 3600);

/// Where a JWKS comes from: the provider's `jwks_uri`, or the local issuer.
#[async_trait]
pub trait JwksSource: Send + Sync + fmt::Debug {
    /// Fetches the current key set.
    async fn fetch(&self) -> anyhow::Result<JwkSet>;
}

/// A fixed key set (keys configured from a file, or fetched once elsewhere).
#[async_trait]
impl JwksSource for JwkSet {
    async fn fetch(&self) -> anyhow::Result<JwkSet> {
        Ok(self.clone())
    }
}

/// A key usable for verification.
#[derive(Clone)]
pub(crate) struct VerifyingKey {
    pub key: DecodingKey,
    pub algorithm: Algorithm,
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VerifyingKey({:?})", self.algorithm)
    }
}

/// How a [`KeySet`] refreshes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyTiming {
    /// The least time between two fetches.
    pub min_refresh: Duration,
    /// How long fetched keys are trusted before they are fetched again.
    pub max_age: Duration,
    /// How long, while fetches fail, keys already fetched keep serving.
    pub max_stale: Duration,
}

impl Default for KeyTiming {
    fn default() -> Self {
        Self {
            min_refresh: MIN_REFRESH,
            max_age: MAX_AGE,
            max_stale: MAX_STALE,
        }
    }
}

/// The cached keys of one issuer.
///
/// * A key id the cache does not know makes it fetch the set again (a rotation), at most once
///   every `min_refresh`, so tokens naming random key ids cannot make registro hammer the
///   provider.
/// * Keys older than `max_age` are fetched again, so a key the provider withdraws (after a
///   compromise, say) stops being trusted within `max_age`. While one request fetches, the
///   others go on with the keys they have, instead of waiting.
/// * When fetches fail, keys already known keep serving for up to `max_stale` after the last
///   good fetch (the provider's outage is no reason to log everybody out, but nor can blocking
///   the provider keep a withdrawn key alive for ever); a key never seen answers
///   "unavailable" (503), not "unknown" (401).
pub struct KeySet {
    source: Arc<dyn JwksSource>,
    cache: RwLock<Cached>,
    /// Held while fetching, so that concurrent requests fetch once.
    fetching: Mutex<()>,
    timing: KeyTiming,
}

#[derive(Default)]
struct Cached {
    keys: HashMap<String, VerifyingKey>,
    /// When the keys were last fetched successfully.
    fetched: Option<Instant>,
    /// When a fetch was last tried, successful or not.
    tried: Option<Instant>,
    /// Whether the last fetch failed.
    failed: bool,
}

impl Cached {
    fn fetched_within(&self, d: Duration) -> bool {
        self.fetched.is_some_and(|t| t.elapsed() < d)
    }

    fn found(&self, kid: &str) -> Option<Lookup> {
        self.keys
            .get(kid)
            .map(|k| Lookup::Found(Box::new(k.clone())))
    }
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeySet")
            .field("source", &self.source)
            .field("timing", &self.timing)
            .finish_non_exhaustive()
    }
}

/// What looking a key up found.
#[derive(Debug)]
pub(crate) enum Lookup {
    Found(Box<VerifyingKey>),
    Unknown,
    Unavailable(anyhow::Error),
}

impl KeySet {
    /// An empty cache over `source`; the first look-up fetches.
    #[must_use]
    pub fn new(source: Arc<dyn JwksSource>) -> Self {
        Self::with_timing(source, KeyTiming::default())
    }

    /// As [`KeySet::new`], fetching at most once every `min_refresh`.
    #[must_use]
    pub fn with_min_refresh(source: Arc<dyn JwksSource>, min_refresh: Duration) -> Self {
        Self::with_timing(
            source,
            KeyTiming {
                min_refresh,
                ..KeyTiming::default()
            },
        )
    }

    /// As [`KeySet::new`], with every interval chosen.
    #[must_use]
    pub fn with_timing(source: Arc<dyn JwksSource>, timing: KeyTiming) -> Self {
        Self {
            source,
            cache: RwLock::new(Cached::default()),
            fetching: Mutex::new(()),
            timing,
        }
    }

    /// Until when the key set fetched last is trusted without fetching it again (its fetch plus
    /// the maximum age): a key the provider withdraws stops being trusted then. Now, when none
    /// was fetched.
    pub(crate) async fn fresh_until(&self) -> Instant {
        let cache = self.cache.read().await;
        let now = Instant::now();
        cache
            .fetched
            .and_then(|t| t.checked_add(self.timing.max_age))
            .unwrap_or(now)
    }

    /// The key with id `kid`, fetching the set again when the key is unknown or the set is
    /// older than `max_age` (at most once every `min_refresh`).
    pub(crate) async fn get(&self, kid: &str) -> Lookup {
        let KeyTiming {
            min_refresh,
            max_age,
            max_stale,
        } = self.timing;
        {
            let cache = self.cache.read().await;
            if cache.fetched_within(max_age)
                && let Some(found) = cache.found(kid)
            {
                return found;
            }
        }
        let _fetching = match self.fetching.try_lock() {
            Ok(guard) => guard,
            Err(_) => {
                // Another request is fetching: a known key serves meanwhile.
                let cache = self.cache.read().await;
                if cache.fetched_within(max_stale)
                    && let Some(found) = cache.found(kid)
                {
                    return found;
                }
                drop(cache);
                self.fetching.lock().await
            }
        };
        {
            // What the fetch this request may have waited for found, or, when one was tried a
            // moment ago, the answer without trying again.
            let cache = self.cache.read().await;
            if cache.fetched_within(max_age)
                && let Some(found) = cache.found(kid)
            {
                return found;
            }
            if cache.tried.is_some_and(|t| t.elapsed() < min_refresh) {
                return match cache.found(kid) {
                    Some(found) if cache.fetched_within(max_stale) => found,
                    Some(_) => Lookup::Unavailable(anyhow::anyhow!(
                        "the identity provider's keys are too old and cannot be fetched"
                    )),
                    None if !cache.failed => Lookup::Unknown,
                    None => Lookup::Unavailable(anyhow::anyhow!(
                        "the identity provider's keys could not be fetched a moment ago"
                    )),
                };
            }
        }
        self.cache.write().await.tried = Some(Instant::now());
        let fetched = self.source.fetch().await;
        let mut cache = self.cache.write().await;
        match fetched {
            Ok(set) => {
                cache.keys = usable_keys(&set);
                cache.fetched = Some(Instant::now());
                cache.failed = false;
                cache.found(kid).unwrap_or(Lookup::Unknown)
            }
            Err(e) => {
                cache.failed = true;
                match cache.found(kid) {
                    Some(found) if cache.fetched_within(max_stale) => {
                        tracing::warn!(error = %e, "cannot refresh the identity provider's keys; using the cached ones");
                        found
                    }
                    _ => Lookup::Unavailable(e),
                }
            }
        }
    }
}

/// The RSA and P-256 keys of a set that have a key id; others are ignored.
fn usable_keys(set: &JwkSet) -> HashMap<String, VerifyingKey> {
    set.keys
        .iter()
        .filter_map(|jwk| {
            let kid = jwk.common.key_id.clone()?;
            let algorithm = match &jwk.algorithm {
                AlgorithmParameters::RSA(_) => Algorithm::RS256,
                AlgorithmParameters::EllipticCurve(ec)
                    if ec.curve == jsonwebtoken::jwk::EllipticCurve::P256 =>
                {
                    Algorithm::ES256
                }
                _ => return None,
            };
            let key = DecodingKey::from_jwk(jwk).ok()?;
            Some((kid, VerifyingKey { key, algorithm }))
        })
        .collect()
}
