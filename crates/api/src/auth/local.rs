//! registro's own token issuer, for embedded mode and tests: an ES256 (P-256) key, its JWKS,
//! and tokens in the shape the identity gateway sends (the fiscal code as `TINIT-<code>` in the
//! SPID claim), so that the same verification path serves both.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use p256::SecretKey;
use p256::elliptic_curve::sec1::ToEncodedPoint as _;
use p256::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _, LineEnding};
use registro_domain::{FiscalCode, SchoolId};
use serde_json::json;
use sha2::{Digest as _, Sha256};

use super::keys::JwksSource;
use super::verify::{SCHOOL_CLAIM, SPID_FISCAL_NUMBER, VerifierConfig};

/// The `iss` of local tokens.
pub const LOCAL_ISSUER: &str = "urn:registro:local";
/// The `aud` of local tokens.
pub const LOCAL_AUDIENCE: &str = "registro";

/// A signing key of registro's own.
#[derive(Clone)]
pub struct LocalIssuer {
    secret: SecretKey,
    kid: String,
}

impl std::fmt::Debug for LocalIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalIssuer")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl LocalIssuer {
    /// A new random key.
    #[must_use]
    pub fn generate() -> Self {
        Self::from_secret(SecretKey::random(&mut rand_core::OsRng))
    }

    fn from_secret(secret: SecretKey) -> Self {
        let point = secret.public_key().to_encoded_point(false);
        let kid = hex_prefix(&Sha256::digest(point.as_bytes()));
        Self { secret, kid }
    }

    /// Reads the key from a PKCS#8 PEM file, or creates the file (mode 0600) with a new key.
    ///
    /// # Errors
    /// When the file cannot be read, parsed or written.
    pub fn load_or_create(path: &Path) -> anyhow::Result<Self> {
        if path.exists() {
            let pem = std::fs::read_to_string(path)?;
            return Ok(Self::from_secret(SecretKey::from_pkcs8_pem(&pem)?));
        }
        let issuer = Self::generate();
        let pem = issuer.secret.to_pkcs8_pem(LineEnding::LF)?;
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)?;
        file.write_all(pem.as_bytes())?;
        file.sync_all()?;
        Ok(issuer)
    }

    /// The key's id (`kid`).
    #[must_use]
    pub fn key_id(&self) -> &str {
        &self.kid
    }

    /// What a verifier of local tokens expects.
    #[must_use]
    pub fn verifier_config() -> VerifierConfig {
        VerifierConfig {
            issuer: LOCAL_ISSUER.to_owned(),
            audience: LOCAL_AUDIENCE.to_owned(),
            fiscal_code_claim: SPID_FISCAL_NUMBER.to_owned(),
            leeway: Duration::from_secs(60),
        }
    }

    /// The public key as a JWKS.
    #[must_use]
    pub fn jwks(&self) -> JwkSet {
        let point = self.secret.public_key().to_encoded_point(false);
        let coordinate =
            |c: Option<&p256::FieldBytes>| c.map(|b| B64URL.encode(b)).unwrap_or_default();
        serde_json::from_value(json!({"keys": [{
            "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": self.kid,
            "x": coordinate(point.x()), "y": coordinate(point.y()),
        }]}))
        .unwrap_or(JwkSet { keys: Vec::new() })
    }

    /// A token for the person with `fiscal_code` in `school`, valid for `ttl` from now.
    ///
    /// # Errors
    /// When signing fails.
    pub fn issue(
        &self,
        school: SchoolId,
        fiscal_code: &FiscalCode,
        ttl: Duration,
    ) -> anyhow::Result<String> {
        self.issue_with(Some(school), fiscal_code, ttl)
    }

    /// As [`LocalIssuer::issue`], optionally without the school claim: such a token is shaped
    /// like the identity gateway's, which names no school (the request's path does).
    ///
    /// # Errors
    /// When signing fails.
    pub fn issue_with(
        &self,
        school: Option<SchoolId>,
        fiscal_code: &FiscalCode,
        ttl: Duration,
    ) -> anyhow::Result<String> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
        let mut claims = json!({
            "iss": LOCAL_ISSUER,
            "aud": LOCAL_AUDIENCE,
            "sub": fiscal_code.as_str(),
            "iat": now,
            "nbf": now,
            "exp": now + ttl.as_secs(),
            SPID_FISCAL_NUMBER: format!("TINIT-{fiscal_code}"),
        });
        if let Some(school) = school {
            claims[SCHOOL_CLAIM] = json!(school.to_string());
        }
        self.sign(&claims)
    }

    /// Signs `claims` as they are (ES256, with this key's `kid`): for tests that need tokens
    /// of any shape, including wrong ones.
    ///
    /// # Errors
    /// When signing fails.
    pub fn sign(&self, claims: &serde_json::Value) -> anyhow::Result<String> {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        let der = self.secret.to_pkcs8_der()?;
        Ok(encode(
            &header,
            claims,
            &EncodingKey::from_ec_der(der.as_bytes()),
        )?)
    }
}

fn hex_prefix(digest: &[u8]) -> String {
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

#[async_trait]
impl JwksSource for LocalIssuer {
    async fn fetch(&self) -> anyhow::Result<JwkSet> {
        Ok(self.jwks())
    }
}
