//! An external identity provider's keys, fetched over HTTPS from its `jwks_uri` (found by
//! OpenID Connect discovery, or configured), with a timeout and a size limit.

use std::time::Duration;

use anyhow::{Context as _, bail};
use async_trait::async_trait;
use jsonwebtoken::jwk::JwkSet;

use super::keys::JwksSource;

/// How long one fetch may take.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest document accepted from the provider.
pub const MAX_DOCUMENT_BYTES: usize = 1 << 20;

/// The keys published at a `jwks_uri`.
#[derive(Debug, Clone)]
pub struct HttpJwks {
    client: reqwest::Client,
    url: reqwest::Url,
}

impl HttpJwks {
    /// The keys at `url`, which must be `https`, or `http` on a loopback address (tests, a
    /// gateway on the same host).
    ///
    /// # Errors
    /// When the URL is not acceptable or the HTTP client cannot be built.
    pub fn new(url: &str) -> anyhow::Result<Self> {
        let url = checked_url(url)?;
        let client = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .connect_timeout(FETCH_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("registro/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self { client, url })
    }

    /// Finds the provider's `jwks_uri` by OpenID Connect discovery
    /// (`<issuer>/.well-known/openid-configuration`), checking that the document names the same
    /// issuer.
    ///
    /// # Errors
    /// When the document cannot be fetched or does not fit.
    pub async fn discover(issuer: &str) -> anyhow::Result<Self> {
        let base = Self::new(&format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        ))?;
        let doc: serde_json::Value = base.get_json().await?;
        let named = doc
            .get("issuer")
            .and_then(|v| v.as_str())
            .unwrap_or_default();
        if named != issuer {
            bail!("the discovery document names the issuer {named:?}, not {issuer:?}");
        }
        let jwks_uri = doc
            .get("jwks_uri")
            .and_then(|v| v.as_str())
            .context("the discovery document has no jwks_uri")?;
        Self::new(jwks_uri)
    }

    /// The URL the keys are fetched from.
    #[must_use]
    pub fn url(&self) -> &str {
        self.url.as_str()
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self) -> anyhow::Result<T> {
        let mut response = self
            .client
            .get(self.url.clone())
            .send()
            .await
            .with_context(|| format!("fetching {}", self.url))?;
        if !response.status().is_success() {
            bail!("{} answered {}", self.url, response.status());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await? {
            if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
                bail!("{} sent more than {MAX_DOCUMENT_BYTES} bytes", self.url);
            }
            body.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&body).with_context(|| format!("reading {}", self.url))
    }
}

#[async_trait]
impl JwksSource for HttpJwks {
    async fn fetch(&self) -> anyhow::Result<JwkSet> {
        self.get_json().await
    }
}

fn checked_url(text: &str) -> anyhow::Result<reqwest::Url> {
    let url = reqwest::Url::parse(text).with_context(|| format!("{text:?} is not a URL"))?;
    let loopback = match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    match url.scheme() {
        "https" => Ok(url),
        "http" if loopback => Ok(url),
        _ => bail!("{text:?} must be an https URL (http only on a loopback address)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_https_or_loopback_http_is_accepted() {
        assert!(HttpJwks::new("https://gateway.example/jwks").is_ok());
        assert!(HttpJwks::new("http://127.0.0.1:9000/jwks").is_ok());
        assert!(HttpJwks::new("http://[::1]:9000/jwks").is_ok());
        assert!(HttpJwks::new("http://localhost/jwks").is_ok());
        assert!(HttpJwks::new("http://gateway.example/jwks").is_err());
        assert!(HttpJwks::new("ftp://gateway.example/jwks").is_err());
        assert!(HttpJwks::new("not a url").is_err());
    }
}
