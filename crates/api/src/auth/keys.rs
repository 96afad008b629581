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

/// The cached keys of one issuer.
///
/// * A key id the cache does not know makes it fetch the set again (a rotation), at most once
///   every `min_refresh`, so tokens naming random key ids cannot make registro hammer the
///   provider.
/// * Keys older than `max_age` are fetched again before use, so a key the provider withdraws
///   (after a compromise, say) stops being trusted within `max_age`.
/// * When a fetch fails, keys already known keep serving (the provider's outage is no reason to
///   log everybody out) and the failure is logged; a key never seen answers "unavailable".
pub struct KeySet {
    source: Arc<dyn JwksSource>,
    cache: RwLock<Cached>,
    /// Held while fetching, so that concurrent requests fetch once.
    fetching: Mutex<()>,
    min_refresh: Duration,
    max_age: Duration,
}

#[derive(Default)]
struct Cached {
    keys: HashMap<String, VerifyingKey>,
    /// When the keys were last fetched successfully.
    fetched: Option<Instant>,
    /// When a fetch was last tried, successful or not.
    tried: Option<Instant>,
}

impl Cached {
    fn fresh(&self, max_age: Duration) -> bool {
        self.fetched.is_some_and(|t| t.elapsed() < max_age)
    }
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeySet")
            .field("source", &self.source)
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
        Self::with_timing(source, MIN_REFRESH, MAX_AGE)
    }

    /// As [`KeySet::new`], fetching at most once every `min_refresh` for unknown key ids.
    #[must_use]
    pub fn with_min_refresh(source: Arc<dyn JwksSource>, min_refresh: Duration) -> Self {
        Self::with_timing(source, min_refresh, MAX_AGE)
    }

    /// As [`KeySet::new`], with both intervals chosen.
    #[must_use]
    pub fn with_timing(
        source: Arc<dyn JwksSource>,
        min_refresh: Duration,
        max_age: Duration,
    ) -> Self {
        Self {
            source,
            cache: RwLock::new(Cached::default()),
            fetching: Mutex::new(()),
            min_refresh,
            max_age,
        }
    }

    /// The key with id `kid`, fetching the set again when the key is unknown or the cached set
    /// is older than `max_age` (but at most once every `min_refresh`).
    pub(crate) async fn get(&self, kid: &str) -> Lookup {
        if let Some(found) = self.cached(kid, false).await {
            return found;
        }
        let _fetching = self.fetching.lock().await;
        // Another request may have fetched while this one waited.
        if let Some(found) = self.cached(kid, true).await {
            return found;
        }
        self.cache.write().await.tried = Some(Instant::now());
        match self.source.fetch().await {
            Ok(set) => {
                let mut cache = self.cache.write().await;
                cache.keys = usable_keys(&set);
                cache.fetched = Some(Instant::now());
                cache
                    .keys
                    .get(kid)
                    .map_or(Lookup::Unknown, |k| Lookup::Found(Box::new(k.clone())))
            }
            Err(e) => match self.cache.read().await.keys.get(kid) {
                Some(k) => {
                    tracing::warn!(error = %e, "cannot refresh the identity provider's keys; using the cached ones");
                    Lookup::Found(Box::new(k.clone()))
                }
                None => Lookup::Unavailable(e),
            },
        }
    }

    /// The answer the cache can give without fetching, if any. With `after_wait`, a fetch that
    /// was tried within `min_refresh` is not tried again.
    async fn cached(&self, kid: &str, after_wait: bool) -> Option<Lookup> {
        let cache = self.cache.read().await;
        let known = cache.keys.get(kid);
        if let Some(k) = known
            && cache.fresh(self.max_age)
        {
            return Some(Lookup::Found(Box::new(k.clone())));
        }
        let tried_recently = cache.tried.is_some_and(|t| t.elapsed() < self.min_refresh);
        if !after_wait || !tried_recently {
            return None;
        }
        Some(match known {
            // Stale, but the provider was asked a moment ago: keep serving it.
            Some(k) => Lookup::Found(Box::new(k.clone())),
            None if cache.fetched.is_some() => Lookup::Unknown,
            None => Lookup::Unavailable(anyhow::anyhow!(
                "the identity provider's keys could not be fetched a moment ago"
            )),
        })
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
