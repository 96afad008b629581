//! The verifier against tokens made here, with keys generated here: nothing reaches a network.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use registro_domain::{FiscalCode, SchoolId};
use rsa::pkcs1::EncodeRsaPrivateKey as _;
use rsa::traits::PublicKeyParts as _;
use serde_json::{Value, json};

use super::verify::SPID_FISCAL_NUMBER;
use super::*;

/// Synthetic: surname XXX, name YYY, born in "country" Z999, which does not exist.
fn fiscal_code() -> FiscalCode {
    FiscalCode::with_check_character("XXXYYY85M52Z999").unwrap()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// An RSA key of the provider's, with its key id.
struct RsaKey {
    kid: String,
    private: rsa::RsaPrivateKey,
}

impl RsaKey {
    fn new(kid: &str) -> Self {
        Self {
            kid: kid.into(),
            private: rsa::RsaPrivateKey::new(&mut rand_core::OsRng, 2048).unwrap(),
        }
    }

    fn jwk(&self) -> Value {
        let public = self.private.to_public_key();
        json!({"kty": "RSA", "kid": self.kid, "use": "sig", "alg": "RS256",
               "n": B64URL.encode(public.n().to_bytes_be()), "e": B64URL.encode(public.e().to_bytes_be())})
    }

    /// Signs `claims` with this key but the header's `kid` set to `kid`.
    fn sign_as(&self, kid: &str, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(kid.into());
        let der = self.private.to_pkcs1_der().unwrap();
        encode(&header, claims, &EncodingKey::from_rsa_der(der.as_bytes())).unwrap()
    }

    fn sign(&self, claims: &Value) -> String {
        self.sign_as(&self.kid, claims)
    }
}

/// A provider whose published keys the test controls, counting fetches.
#[derive(Debug, Default)]
struct Provider {
    keys: Mutex<Vec<Value>>,
    fetches: AtomicUsize,
    down: std::sync::atomic::AtomicBool,
}

#[async_trait]
impl JwksSource for Provider {
    async fn fetch(&self) -> anyhow::Result<JwkSet> {
        self.fetches.fetch_add(1, Ordering::SeqCst);
        if self.down.load(Ordering::SeqCst) {
            anyhow::bail!("connection refused");
        }
        Ok(serde_json::from_value(
            json!({"keys": *self.keys.lock().unwrap()}),
        )?)
    }
}

const ISSUER: &str = "https://gateway.example.invalid/oidc";
const AUDIENCE: &str = "registro-test";

fn config() -> VerifierConfig {
    VerifierConfig {
        issuer: ISSUER.into(),
        audience: AUDIENCE.into(),
        fiscal_code_claim: SPID_FISCAL_NUMBER.into(),
        leeway: Duration::from_secs(60),
    }
}

fn claims() -> Value {
    json!({"iss": ISSUER, "aud": AUDIENCE, "sub": "spid-user-1", "iat": now(), "exp": now() + 600,
           SPID_FISCAL_NUMBER: format!("TINIT-{}", fiscal_code())})
}

fn verifier_for(provider: &Arc<Provider>, min_refresh: Duration) -> TokenVerifier {
    let source: Arc<dyn JwksSource> = provider.clone();
    TokenVerifier::new(
        config(),
        Arc::new(KeySet::with_min_refresh(source, min_refresh)),
    )
}

fn provider_with(keys: &[&RsaKey]) -> Arc<Provider> {
    let p = Provider::default();
    *p.keys.lock().unwrap() = keys.iter().map(|k| k.jwk()).collect();
    Arc::new(p)
}

#[tokio::test]
async fn a_local_token_verifies_to_its_person_and_school() {
    let issuer = LocalIssuer::generate();
    let school = SchoolId::new();
    let token = issuer
        .issue(school, &fiscal_code(), Duration::from_secs(3600))
        .unwrap();
    let verifier = TokenVerifier::new(
        LocalIssuer::verifier_config(),
        Arc::new(KeySet::new(Arc::new(issuer))),
    );
    let id = verifier.verify(&token).await.unwrap();
    assert_eq!(id.fiscal_code, fiscal_code(), "TINIT- is removed");
    assert_eq!(id.school, Some(school));
}

#[tokio::test]
async fn an_rs256_token_of_the_provider_verifies() {
    let key = RsaKey::new("k1");
    let verifier = verifier_for(&provider_with(&[&key]), Duration::ZERO);
    let id = verifier.verify(&key.sign(&claims())).await.unwrap();
    assert_eq!((id.subject.as_str(), id.school), ("spid-user-1", None));
}

#[tokio::test]
async fn every_bad_token_is_refused_with_its_reason() {
    let key = RsaKey::new("k1");
    let other = RsaKey::new("k2");
    let verifier = verifier_for(&provider_with(&[&key]), Duration::ZERO);
    let with = |patch: Value| {
        let mut c = claims();
        for (k, v) in patch.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    };
    let without = |name: &str| {
        let mut c = claims();
        c.as_object_mut().unwrap().remove(name);
        c
    };
    let unsigned = format!(
        "{}.{}.",
        B64URL.encode(br#"{"alg":"none","typ":"JWT"}"#),
        B64URL.encode(claims().to_string())
    );
    let hs256 = {
        // Algorithm confusion: the provider's public key used as an HMAC secret.
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("k1".into());
        encode(
            &header,
            &claims(),
            &EncodingKey::from_secret(key.jwk()["n"].as_str().unwrap().as_bytes()),
        )
        .unwrap()
    };
    let cases: Vec<(&str, String, AuthError)> = vec![
        (
            "wrong signature",
            other.sign_as("k1", &claims()),
            AuthError::BadSignature,
        ),
        (
            "wrong issuer",
            key.sign(&with(json!({"iss": "https://evil.example.invalid"}))),
            AuthError::WrongIssuer,
        ),
        (
            "wrong audience",
            key.sign(&with(json!({"aud": "another-service"}))),
            AuthError::WrongAudience,
        ),
        (
            "expired",
            key.sign(&with(json!({"exp": now() - 3600}))),
            AuthError::Expired,
        ),
        (
            "not yet valid",
            key.sign(&with(json!({"nbf": now() + 3600}))),
            AuthError::NotYetValid,
        ),
        ("unknown kid", other.sign(&claims()), AuthError::UnknownKey),
        ("alg none", unsigned, AuthError::Malformed),
        ("HS256", hs256, AuthError::UnsupportedAlgorithm),
        ("malformed", "not.a.token".into(), AuthError::Malformed),
        (
            "no exp",
            key.sign(&without("exp")),
            AuthError::MissingClaim("exp".into()),
        ),
        (
            "no fiscal code",
            key.sign(&without(SPID_FISCAL_NUMBER)),
            AuthError::MissingClaim(SPID_FISCAL_NUMBER.into()),
        ),
        (
            "bad fiscal code",
            key.sign(&with(json!({SPID_FISCAL_NUMBER: "TINIT-XXXYYY85M52Z999A"}))),
            AuthError::BadFiscalCode,
        ),
    ];
    for (case, token, expected) in cases {
        assert_eq!(verifier.verify(&token).await, Err(expected), "{case}");
    }
    // Within the leeway, a just-expired token still passes (clocks differ a little).
    assert!(
        verifier
            .verify(&key.sign(&with(json!({"exp": now() - 10}))))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn a_rotated_key_is_fetched_when_a_token_names_it() {
    let (old, new) = (RsaKey::new("2025"), RsaKey::new("2026"));
    let provider = provider_with(&[&old]);
    let verifier = verifier_for(&provider, Duration::ZERO);
    assert!(verifier.verify(&old.sign(&claims())).await.is_ok());
    assert!(verifier.verify(&old.sign(&claims())).await.is_ok());
    assert_eq!(
        provider.fetches.load(Ordering::SeqCst),
        1,
        "known keys are cached"
    );
    // The provider rotates: the new kid is unknown to the cache, so the set is fetched again.
    *provider.keys.lock().unwrap() = vec![new.jwk()];
    assert!(verifier.verify(&new.sign(&claims())).await.is_ok());
    assert_eq!(provider.fetches.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn unknown_key_ids_cannot_make_registro_hammer_the_provider() {
    let key = RsaKey::new("k1");
    let provider = provider_with(&[&key]);
    let verifier = verifier_for(&provider, Duration::from_secs(3600));
    for i in 0..20 {
        let token = key.sign_as(&format!("random-{i}"), &claims());
        assert_eq!(verifier.verify(&token).await, Err(AuthError::UnknownKey));
    }
    assert_eq!(
        provider.fetches.load(Ordering::SeqCst),
        1,
        "one fetch per refresh interval"
    );
}

/// A key the provider withdraws stops being trusted once the cached set is older than its
/// maximum age, even though every token names a key the cache knows.
#[tokio::test]
async fn a_withdrawn_key_stops_being_trusted_after_the_maximum_age() {
    let (compromised, fresh) = (RsaKey::new("2025"), RsaKey::new("2026"));
    let provider = provider_with(&[&compromised]);
    let source: Arc<dyn JwksSource> = provider.clone();
    let max_age = Duration::from_millis(200);
    let verifier = TokenVerifier::new(
        config(),
        Arc::new(KeySet::with_timing(
            source,
            KeyTiming {
                min_refresh: Duration::ZERO,
                max_age,
                max_stale: max_age,
            },
        )),
    );
    assert!(verifier.verify(&compromised.sign(&claims())).await.is_ok());
    *provider.keys.lock().unwrap() = vec![fresh.jwk()];
    // Within the maximum age the cached key still serves, without asking the provider.
    assert!(verifier.verify(&compromised.sign(&claims())).await.is_ok());
    assert_eq!(provider.fetches.load(Ordering::SeqCst), 1);
    tokio::time::sleep(max_age).await;
    assert_eq!(
        verifier.verify(&compromised.sign(&claims())).await,
        Err(AuthError::UnknownKey)
    );
    assert!(verifier.verify(&fresh.sign(&claims())).await.is_ok());
}

/// When the provider goes down, the keys already fetched keep serving (its outage logs nobody
/// out), and it is asked again at most once per refresh interval.
#[tokio::test]
async fn cached_keys_outlive_an_outage_of_the_provider() {
    let key = RsaKey::new("k1");
    let provider = provider_with(&[&key]);
    let source: Arc<dyn JwksSource> = provider.clone();
    let min_refresh = Duration::from_millis(300);
    let verifier = TokenVerifier::new(
        config(),
        Arc::new(KeySet::with_timing(
            source,
            KeyTiming {
                min_refresh,
                max_age: Duration::ZERO,
                max_stale: Duration::from_secs(3600),
            },
        )),
    );
    assert!(verifier.verify(&key.sign(&claims())).await.is_ok());
    provider.down.store(true, Ordering::SeqCst);
    tokio::time::sleep(min_refresh).await;
    // The set is stale: the provider is asked, fails, and the cached key serves.
    for _ in 0..5 {
        assert!(verifier.verify(&key.sign(&claims())).await.is_ok());
    }
    assert_eq!(
        provider.fetches.load(Ordering::SeqCst),
        2,
        "one failed refresh, not one per request: the refresh interval bounds the retries"
    );
}

/// A rotation during an outage: a token naming the new key is the provider's trouble (503),
/// on the request that tried to fetch and on those after it within the refresh interval, never
/// the caller's (401).
#[tokio::test]
async fn a_new_key_during_an_outage_is_unavailable_not_unknown() {
    let (old, new) = (RsaKey::new("2025"), RsaKey::new("2026"));
    let provider = provider_with(&[&old]);
    let min_refresh = Duration::from_millis(200);
    let verifier = verifier_for(&provider, min_refresh);
    assert!(verifier.verify(&old.sign(&claims())).await.is_ok());
    provider.down.store(true, Ordering::SeqCst);
    tokio::time::sleep(min_refresh).await;
    for _ in 0..3 {
        assert_eq!(
            verifier.verify(&new.sign(&claims())).await,
            Err(AuthError::KeysUnavailable)
        );
    }
    assert_eq!(provider.fetches.load(Ordering::SeqCst), 2);
}

/// Keys too stale to trust: when the provider stays unreachable past the staleness limit, even
/// a known key is refused (503), so blocking the provider cannot keep a withdrawn key alive.
#[tokio::test]
async fn keys_stale_past_the_limit_are_not_trusted() {
    let key = RsaKey::new("k1");
    let provider = provider_with(&[&key]);
    let source: Arc<dyn JwksSource> = provider.clone();
    let max_stale = Duration::from_millis(200);
    let verifier = TokenVerifier::new(
        config(),
        Arc::new(KeySet::with_timing(
            source,
            KeyTiming {
                min_refresh: Duration::ZERO,
                max_age: Duration::ZERO,
                max_stale,
            },
        )),
    );
    assert!(verifier.verify(&key.sign(&claims())).await.is_ok());
    provider.down.store(true, Ordering::SeqCst);
    assert!(verifier.verify(&key.sign(&claims())).await.is_ok());
    tokio::time::sleep(max_stale).await;
    assert_eq!(
        verifier.verify(&key.sign(&claims())).await,
        Err(AuthError::KeysUnavailable)
    );
    provider.down.store(false, Ordering::SeqCst);
    assert!(verifier.verify(&key.sign(&claims())).await.is_ok());
}

#[tokio::test]
async fn an_unreachable_provider_is_not_the_callers_fault() {
    let key = RsaKey::new("k1");
    let provider = provider_with(&[&key]);
    provider.down.store(true, Ordering::SeqCst);
    let verifier = verifier_for(&provider, Duration::ZERO);
    assert_eq!(
        verifier.verify(&key.sign(&claims())).await,
        Err(AuthError::KeysUnavailable)
    );
}

#[test]
fn the_local_key_survives_a_restart() {
    let dir =
        std::env::temp_dir().join(format!("registro-issuer-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("issuer.pem");
    let first = LocalIssuer::load_or_create(&path).unwrap();
    let again = LocalIssuer::load_or_create(&path).unwrap();
    assert_eq!(first.key_id(), again.key_id());
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
