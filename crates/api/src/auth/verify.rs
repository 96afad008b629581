//! Token verification.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation, decode, decode_header};
use registro_domain::{FiscalCode, SchoolId};
use serde_json::{Map, Value};

use super::keys::{KeySet, Lookup};

/// The claim SPID and CIE put the fiscal code in (`TINIT-<code>`).
pub const SPID_FISCAL_NUMBER: &str = "https://attributes.eid.gov.it/fiscal_number";
/// The claim of registro's local tokens that names the school.
pub const SCHOOL_CLAIM: &str = "registro_school";

/// What a token must be.
#[derive(Debug, Clone)]
pub struct VerifierConfig {
    /// The expected `iss`.
    pub issuer: String,
    /// The expected `aud` (registro's client id at the provider).
    pub audience: String,
    /// The claim holding the fiscal code.
    pub fiscal_code_claim: String,
    /// Tolerance for clock differences on `exp` and `nbf`.
    pub leeway: Duration,
}

/// Who a valid token says the caller is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The token's subject at its issuer.
    pub subject: String,
    /// The person's fiscal code.
    pub fiscal_code: FiscalCode,
    /// The school, when the token names one (local tokens do; the gateway's do not, and the
    /// school then comes from the request).
    pub school: Option<SchoolId>,
}

/// Why a token was refused. Every variant but [`AuthError::KeysUnavailable`] is a 401.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization: Bearer` header.
    #[error("no bearer token")]
    Missing,
    /// Not a JWT, or not one this service can read.
    #[error("the token is malformed")]
    Malformed,
    /// An algorithm other than RS256 and ES256 (including `none`), or one that does not match
    /// its key.
    #[error("the token's algorithm is not accepted")]
    UnsupportedAlgorithm,
    /// The token names no key, or a key the issuer does not publish.
    #[error("the token's signing key is unknown")]
    UnknownKey,
    /// The signature does not verify.
    #[error("the token's signature is not valid")]
    BadSignature,
    /// Another issuer.
    #[error("the token comes from another issuer")]
    WrongIssuer,
    /// Meant for another service.
    #[error("the token is meant for another service")]
    WrongAudience,
    /// Expired.
    #[error("the token has expired")]
    Expired,
    /// Not valid yet.
    #[error("the token is not valid yet")]
    NotYetValid,
    /// A required claim is missing.
    #[error("the token lacks the claim {0}")]
    MissingClaim(String),
    /// The fiscal code claim is not a valid fiscal code.
    #[error("the token's fiscal code is not valid")]
    BadFiscalCode,
    /// The issuer's keys could not be fetched (HTTP 503, not the caller's fault).
    #[error("the identity provider's keys are unavailable")]
    KeysUnavailable,
}

/// How long a verified token is taken on trust without checking its signature again: a key the
/// identity provider withdraws stops being trusted within this time.
const TRUSTED_FOR: Duration = Duration::from_secs(60);
/// The most verified tokens kept; beyond it the cache starts again empty.
const MAX_TRUSTED: usize = 20_000;

/// Tokens verified lately, by their SHA-256: who each names, and until when it is trusted.
type Trusted = HashMap<[u8; 32], (Identity, Instant)>;

/// Verifies bearer tokens of one issuer.
#[derive(Debug, Clone)]
pub struct TokenVerifier {
    config: VerifierConfig,
    keys: Arc<KeySet>,
    /// Tokens verified lately (by their SHA-256), with who they name and until when they are
    /// trusted: an app sends the same token with every request, and checking an ECDSA or RSA
    /// signature costs more than the rest of a small read.
    verified: Arc<Mutex<Trusted>>,
}

impl TokenVerifier {
    /// A verifier for `config`, with the issuer's keys from `keys`.
    #[must_use]
    pub fn new(config: VerifierConfig, keys: Arc<KeySet>) -> Self {
        Self {
            config,
            keys,
            verified: Arc::default(),
        }
    }

    /// Verifies `token` and returns who it names. A token verified in the last minute is
    /// answered from memory until its expiry.
    ///
    /// # Errors
    /// [`AuthError`] saying why the token is refused.
    pub async fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        use sha2::Digest as _;
        let digest: [u8; 32] = sha2::Sha256::digest(token.as_bytes()).into();
        let now = Instant::now();
        if let Ok(mut verified) = self.verified.lock() {
            match verified.get(&digest) {
                Some((identity, until)) if now < *until => return Ok(identity.clone()),
                Some(_) => {
                    verified.remove(&digest);
                }
                None => {}
            }
        }
        let (identity, expires_in) = self.verify_signed(token).await?;
        // Never trusted past its expiry, nor past the moment the key set that vouched for it
        // is due to be fetched again: a key the provider withdraws stops being trusted then,
        // as without this cache.
        let until = (now + expires_in.min(TRUSTED_FOR)).min(self.keys.fresh_until().await);
        if let Ok(mut verified) = self.verified.lock() {
            if verified.len() >= MAX_TRUSTED {
                verified.clear();
            }
            verified.insert(digest, (identity.clone(), until));
        }
        Ok(identity)
    }

    /// Verifies `token`'s signature and claims; who it names, and how long until it expires.
    async fn verify_signed(&self, token: &str) -> Result<(Identity, Duration), AuthError> {
        let header = decode_header(token).map_err(|_| AuthError::Malformed)?;
        if !matches!(header.alg, Algorithm::RS256 | Algorithm::ES256) {
            return Err(AuthError::UnsupportedAlgorithm);
        }
        let kid = header.kid.ok_or(AuthError::UnknownKey)?;
        let key = match self.keys.get(&kid).await {
            Lookup::Found(k) => k,
            Lookup::Unknown => return Err(AuthError::UnknownKey),
            Lookup::Unavailable(e) => {
                tracing::warn!(error = %e, "cannot fetch the identity provider's keys");
                return Err(AuthError::KeysUnavailable);
            }
        };
        if key.algorithm != header.alg {
            return Err(AuthError::UnsupportedAlgorithm);
        }
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.config.issuer]);
        validation.set_audience(&[&self.config.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = self.config.leeway.as_secs();
        let claims = decode::<Map<String, Value>>(token, &key.key, &validation)
            .map_err(|e| match e.kind() {
                ErrorKind::InvalidSignature => AuthError::BadSignature,
                ErrorKind::ExpiredSignature => AuthError::Expired,
                ErrorKind::ImmatureSignature => AuthError::NotYetValid,
                ErrorKind::InvalidIssuer => AuthError::WrongIssuer,
                ErrorKind::InvalidAudience => AuthError::WrongAudience,
                ErrorKind::MissingRequiredClaim(c) => AuthError::MissingClaim(c.clone()),
                ErrorKind::InvalidAlgorithm => AuthError::UnsupportedAlgorithm,
                _ => AuthError::Malformed,
            })?
            .claims;
        let text = |name: &str| claims.get(name).and_then(Value::as_str);
        let fiscal_code = text(&self.config.fiscal_code_claim)
            .ok_or_else(|| AuthError::MissingClaim(self.config.fiscal_code_claim.clone()))?;
        let fiscal_code =
            FiscalCode::parse_claim(fiscal_code).map_err(|_| AuthError::BadFiscalCode)?;
        let school = match text(SCHOOL_CLAIM) {
            Some(s) => Some(s.parse().map_err(|_| AuthError::Malformed)?),
            None => None,
        };
        // `exp` is required and was checked (with the leeway): the time left, never negative.
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let exp = claims.get("exp").and_then(Value::as_i64).unwrap_or(now);
        let expires_in = Duration::from_secs(u64::try_from(exp - now).unwrap_or(0));
        Ok((
            Identity {
                subject: text("sub").unwrap_or_default().to_owned(),
                fiscal_code,
                school,
            },
            expires_in,
        ))
    }
}
