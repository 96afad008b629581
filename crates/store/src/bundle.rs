//! The subject-key bundle that travels beside an export
//! ([docs/export-format.md](../../../docs/export-format.md), section 6): every data subject's
//! key of one school (or the fact that it was destroyed), encrypted with a key derived from a
//! passphrase by Argon2id, with XChaCha20-Poly1305. Sealed fields in the export open only with
//! these keys; the export itself never holds a key, so the file alone discloses no special
//! category data.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use registro_domain::{PersonId, SchoolId};
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

use crate::error::StoreError;
use crate::seal::{KeyState, SubjectKey};

/// The bundle format's name and version.
pub const BUNDLE_FORMAT: &str = "registro-subject-keys/1";
/// The shortest passphrase accepted, in characters.
pub const MIN_PASSPHRASE_CHARS: usize = 12;
/// Argon2id's memory when writing a bundle, in KiB (64 MiB).
const MEMORY_KIB: u32 = 64 * 1024;
/// Argon2id's passes when writing a bundle.
const ITERATIONS: u32 = 3;
/// The most memory a bundle may ask of its reader, in KiB (1 GiB): a file cannot make the
/// reader exhaust memory.
const MAX_MEMORY_KIB: u32 = 1024 * 1024;
/// The most passes a bundle may ask of its reader.
const MAX_ITERATIONS: u32 = 16;

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Kdf {
    algorithm: String,
    memory_kib: u32,
    iterations: u32,
    parallelism: u32,
    salt: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Bundle {
    format: String,
    school: SchoolId,
    kdf: Kdf,
    cipher: String,
    nonce: String,
    ciphertext: String,
}

#[derive(Serialize, Deserialize)]
struct Entry {
    subject: PersonId,
    /// The key as base64; none when it was destroyed (the subject's sealed data is erased).
    key: Option<String>,
}

fn aad(school: SchoolId) -> String {
    format!("registro/bundle/v1|{school}")
}

fn refused(reason: impl Into<String>) -> StoreError {
    StoreError::InvalidEvent(format!("key bundle: {}", reason.into()))
}

fn derive(passphrase: &str, kdf: &Kdf) -> Result<Zeroizing<[u8; 32]>, StoreError> {
    if kdf.algorithm != "argon2id" {
        return Err(refused(format!("unknown key derivation {}", kdf.algorithm)));
    }
    if kdf.memory_kib > MAX_MEMORY_KIB
        || kdf.iterations > MAX_ITERATIONS
        || kdf.parallelism == 0
        || kdf.parallelism > 16
    {
        return Err(refused("key derivation parameters out of bounds"));
    }
    let salt = B64
        .decode(&kdf.salt)
        .map_err(|_| refused("the salt is not base64"))?;
    let params = argon2::Params::new(kdf.memory_kib, kdf.iterations, kdf.parallelism, Some(32))
        .map_err(|e| refused(format!("key derivation parameters: {e}")))?;
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut key = Zeroizing::new([0_u8; 32]);
    argon
        .hash_password_into(passphrase.as_bytes(), &salt, key.as_mut())
        .map_err(|e| refused(format!("key derivation: {e}")))?;
    Ok(key)
}

/// The bundle of `school`'s subject keys, encrypted with `passphrase`, as JSON text.
///
/// # Errors
/// [`StoreError::InvalidEvent`] for a passphrase shorter than [`MIN_PASSPHRASE_CHARS`].
pub fn seal_bundle(
    school: SchoolId,
    keys: &[(PersonId, KeyState)],
    passphrase: &str,
) -> Result<String, StoreError> {
    if passphrase.chars().count() < MIN_PASSPHRASE_CHARS {
        return Err(refused(format!(
            "the passphrase needs at least {MIN_PASSPHRASE_CHARS} characters"
        )));
    }
    let mut salt = [0_u8; 16];
    chacha20poly1305::aead::rand_core::RngCore::fill_bytes(&mut OsRng, &mut salt);
    let kdf = Kdf {
        algorithm: "argon2id".into(),
        memory_kib: MEMORY_KIB,
        iterations: ITERATIONS,
        parallelism: 1,
        salt: B64.encode(salt),
    };
    let key = derive(passphrase, &kdf)?;
    let entries: Vec<Entry> = keys
        .iter()
        .map(|(subject, state)| Entry {
            subject: *subject,
            key: match state {
                KeyState::Present(k) => Some(B64.encode(k.bytes())),
                KeyState::Erased => None,
            },
        })
        .collect();
    let plain = Zeroizing::new(serde_json::to_vec(&entries).map_err(StoreError::internal)?);
    for mut e in entries {
        if let Some(k) = e.key.as_mut() {
            k.zeroize();
        }
    }
    let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
    let aad = aad(school);
    let ciphertext = XChaCha20Poly1305::new(key.as_ref().into())
        .encrypt(
            &nonce,
            Payload {
                msg: &plain,
                aad: aad.as_bytes(),
            },
        )
        .map_err(|_| StoreError::internal("encrypting the key bundle failed"))?;
    let bundle = Bundle {
        format: BUNDLE_FORMAT.into(),
        school,
        kdf,
        cipher: "xchacha20poly1305".into(),
        nonce: B64.encode(nonce),
        ciphertext: B64.encode(ciphertext),
    };
    serde_json::to_string_pretty(&bundle).map_err(StoreError::internal)
}

/// Opens a bundle written by [`seal_bundle`]: its school and every subject's key state.
///
/// # Errors
/// [`StoreError::InvalidEvent`] for a file that is not a bundle, a wrong passphrase or an
/// altered bundle (they cannot be told apart).
pub fn open_bundle(
    text: &str,
    passphrase: &str,
) -> Result<(SchoolId, Vec<(PersonId, KeyState)>), StoreError> {
    let bundle: Bundle =
        serde_json::from_str(text).map_err(|e| refused(format!("not a key bundle: {e}")))?;
    if bundle.format != BUNDLE_FORMAT || bundle.cipher != "xchacha20poly1305" {
        return Err(refused(format!("unknown format {}", bundle.format)));
    }
    let key = derive(passphrase, &bundle.kdf)?;
    let nonce = B64
        .decode(&bundle.nonce)
        .ok()
        .filter(|n| n.len() == 24)
        .ok_or_else(|| refused("the nonce is not 24 bytes of base64"))?;
    let ciphertext = B64
        .decode(&bundle.ciphertext)
        .map_err(|_| refused("the ciphertext is not base64"))?;
    let aad = aad(bundle.school);
    let plain = Zeroizing::new(
        XChaCha20Poly1305::new(key.as_ref().into())
            .decrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &ciphertext,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| refused("wrong passphrase, or the bundle was altered"))?,
    );
    let entries: Vec<Entry> =
        serde_json::from_slice(&plain).map_err(|e| refused(format!("its contents: {e}")))?;
    let keys = entries
        .into_iter()
        .map(|mut e| {
            let state = match e.key.take() {
                None => KeyState::Erased,
                Some(text) => {
                    let bytes = Zeroizing::new(
                        B64.decode(Zeroizing::new(text).as_bytes())
                            .map_err(|_| refused("a key is not base64"))?,
                    );
                    let key: [u8; 32] = bytes
                        .as_slice()
                        .try_into()
                        .map_err(|_| refused("a key is not 32 bytes"))?;
                    KeyState::Present(SubjectKey::from_bytes(key))
                }
            };
            Ok((e.subject, state))
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok((bundle.school, keys))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_bundle_opens_with_its_passphrase_only() {
        let school = SchoolId::new();
        let (a, b) = (PersonId::new(), PersonId::new());
        let key = SubjectKey::from_bytes([7; 32]);
        let keys = vec![(a, KeyState::Present(key)), (b, KeyState::Erased)];
        let text = seal_bundle(school, &keys, "una frase lunga e segreta").unwrap();
        assert!(!text.contains(&B64.encode([7_u8; 32])), "no key in clear");
        let (back_school, back) = open_bundle(&text, "una frase lunga e segreta").unwrap();
        assert_eq!(back_school, school);
        assert_eq!(back.len(), 2);
        assert!(matches!(&back[0], (s, KeyState::Present(k)) if *s == a && k.bytes() == &[7; 32]));
        assert!(matches!(&back[1], (s, KeyState::Erased) if *s == b));
        let wrong = open_bundle(&text, "un'altra frase lunga").unwrap_err();
        assert!(wrong.to_string().contains("wrong passphrase"), "{wrong}");
        // Moved to another school: the associated data no longer matches.
        let moved = text.replace(&school.to_string(), &SchoolId::new().to_string());
        assert!(open_bundle(&moved, "una frase lunga e segreta").is_err());
        assert!(seal_bundle(school, &keys, "breve").is_err());
    }
}
