//! Authentication: bearer tokens (JWT) from an OpenID Connect provider, i.e. the identity
//! gateway in front of SPID, CIE and eIDAS, or, in embedded mode, from registro's own local
//! issuer ([`LocalIssuer`]).
//!
//! [`TokenVerifier`] accepts only RS256 and ES256, checks the signature against the issuer's
//! JWKS ([`KeySet`], refreshed when a token names an unknown `kid`), the issuer, the audience,
//! `exp` and `nbf` with a small leeway, and reads the person's fiscal code from a configurable
//! claim (SPID's `TINIT-` prefix removed). [`guard`] is the middleware that authenticates and
//! authorises every request (see [`crate::policy`]); [`HttpJwks`] fetches an external
//! provider's keys.

mod guard;
mod http;
mod keys;
mod local;
#[cfg(test)]
mod tests;
mod verify;

pub use guard::{Caller, Policies, guard};
pub use http::HttpJwks;
pub use jsonwebtoken::jwk::JwkSet;
pub use keys::{JwksSource, KeySet, KeyTiming};
pub use local::{LOCAL_AUDIENCE, LOCAL_ISSUER, LocalIssuer};
pub use verify::{AuthError, Identity, TokenVerifier, VerifierConfig};
