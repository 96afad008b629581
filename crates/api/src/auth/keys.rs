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
pub struct KeySet {
    source: Arc<dyn JwksSource>,
    keys: RwLock<HashMap<String, VerifyingKey>>,
    last_fetch: Mutex<Option<Instant>>,
    min_refresh: Duration,
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
        Self::with_min_refresh(source, MIN_REFRESH)
    }

    /// As [`KeySet::new`], fetching at most once every `min_refresh`.
    #[must_use]
    pub fn with_min_refresh(source: Arc<dyn JwksSource>, min_refresh: Duration) -> Self {
        Self {
            source,
            keys: RwLock::new(HashMap::new()),
            last_fetch: Mutex::new(None),
            min_refresh,
        }
    }

    /// The key with id `kid`, fetching the set again when it is unknown (at most once every
    /// `min_refresh`, [`MIN_REFRESH`] by default).
    pub(crate) async fn get(&self, kid: &str) -> Lookup {
        if let Some(k) = self.keys.read().await.get(kid) {
            return Lookup::Found(Box::new(k.clone()));
        }
        let mut last = self.last_fetch.lock().await;
        // Another request may have refreshed while this one waited.
        if let Some(k) = self.keys.read().await.get(kid) {
            return Lookup::Found(Box::new(k.clone()));
        }
        if last.is_some_and(|t| t.elapsed() < self.min_refresh) {
            return Lookup::Unknown;
        }
        *last = Some(Instant::now());
        match self.source.fetch().await {
            Ok(set) => {
                let fresh = usable_keys(&set);
                let mut keys = self.keys.write().await;
                *keys = fresh;
                keys.get(kid)
                    .map_or(Lookup::Unknown, |k| Lookup::Found(Box::new(k.clone())))
            }
            Err(e) => Lookup::Unavailable(e),
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
