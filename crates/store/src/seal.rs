//! Sealed fields: special-category data (health reasons, disability notes) encrypted per data
//! subject, so that destroying one key erases that subject's sealed data everywhere while the
//! hash chain, which covers the ciphertext, still verifies. `docs/decisions/0004-sealing.md`
//! explains the scheme.
//!
//! * Each (school, subject) has a random 256-bit key, stored apart from the events, wrapped
//!   (XChaCha20-Poly1305) by the master key from configuration with associated data
//!   `registro/key/v1|<school>|<subject>`.
//! * A sealed field is replaced in the stored data by
//!   `{"$sealed":{"alg":"XChaCha20-Poly1305","ct":…,"nonce":…,"subject":…,"v":1}}`, where `ct`
//!   is the encryption of the field's canonical JSON with associated data
//!   `registro/seal/v1|<school>|<subject>|<event id>|<json pointer>`, binding the ciphertext to
//!   its place: it cannot be moved to another event, field or person.
//! * Reading opens sealed fields with the subject's key, or puts the erased marker
//!   `{"$erased":{"subject":…}}` in their place when the key was destroyed.

use std::collections::{BTreeSet, HashMap};
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use registro_domain::{EventId, PersonId, SchoolId};
use serde_json::{Map, Value, json};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::canonical::to_canonical_json;
use crate::envelope::SealedField;
use crate::error::StoreError;

/// The member name that marks a sealed value in stored data.
pub const SEALED_TAG: &str = "$sealed";
/// The member name that marks an erased value in opened data.
pub const ERASED_TAG: &str = "$erased";
const ALG: &str = "XChaCha20-Poly1305";
const NONCE_LEN: usize = 24;

/// A 256-bit key. Never printed; zeroed when dropped.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
struct Key([u8; 32]);

impl Key {
    fn random() -> Self {
        Self(XChaCha20Poly1305::generate_key(&mut OsRng).into())
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new((&self.0).into())
    }
}

/// The master key that wraps every subject key: 32 bytes from configuration
/// (`REGISTRO_MASTER_KEY`, base64 or hex). Never printed.
#[derive(Clone)]
pub struct MasterKey(Key);

impl MasterKey {
    /// Parses 32 bytes written as standard base64 (44 characters) or hex (64 digits).
    ///
    /// # Errors
    /// A message that says what is wrong, without echoing the key.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let bytes = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            hex::decode(text).map_err(|_| "the master key is not valid hex".to_owned())?
        } else {
            B64.decode(text)
                .map_err(|_| "the master key is neither 64 hex digits nor base64".to_owned())?
        };
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|b: Vec<u8>| format!("the master key has {} bytes, not 32", b.len()))?;
        Ok(Self(Key(key)))
    }

    /// A new random master key.
    #[must_use]
    pub fn generate() -> Self {
        Self(Key::random())
    }

    /// The key as base64, for writing it to a key file the first time.
    #[must_use]
    pub fn to_base64(&self) -> String {
        B64.encode(self.0.0)
    }

    /// Creates a new subject key, returning it and its wrapped form for storage.
    pub(crate) fn new_subject_key(
        &self,
        school: SchoolId,
        subject: PersonId,
    ) -> Result<(SubjectKey, Vec<u8>), StoreError> {
        let key = SubjectKey(Key::random());
        let wrapped = self.wrap_subject_key(school, subject, &key)?;
        Ok((key, wrapped))
    }

    /// The stored form of a subject key: `nonce || XChaCha20-Poly1305(master, key)` with
    /// associated data `registro/key/v1|<school>|<subject>`.
    pub(crate) fn wrap_subject_key(
        &self,
        school: SchoolId,
        subject: PersonId,
        key: &SubjectKey,
    ) -> Result<Vec<u8>, StoreError> {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let aad = wrap_aad(school, subject);
        let ct = self
            .0
            .cipher()
            .encrypt(
                &nonce,
                Payload {
                    msg: &key.0.0,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| StoreError::internal("wrapping a subject key failed"))?;
        let mut wrapped = nonce.to_vec();
        wrapped.extend_from_slice(&ct);
        Ok(wrapped)
    }

    /// The state of a subject's key from its stored form: present (unwrapped) or destroyed
    /// (`None`).
    ///
    /// # Errors
    /// As [`MasterKey::unwrap_subject_key`].
    pub(crate) fn key_state(
        &self,
        school: SchoolId,
        subject: PersonId,
        wrapped: Option<&[u8]>,
    ) -> Result<KeyState, StoreError> {
        Ok(match wrapped {
            Some(w) => KeyState::Present(self.unwrap_subject_key(school, subject, w)?),
            None => KeyState::Erased,
        })
    }

    /// Unwraps a stored subject key.
    ///
    /// # Errors
    /// [`StoreError::Internal`] when the wrapped key does not authenticate: a wrong master key,
    /// or a key row moved or altered.
    pub(crate) fn unwrap_subject_key(
        &self,
        school: SchoolId,
        subject: PersonId,
        wrapped: &[u8],
    ) -> Result<SubjectKey, StoreError> {
        if wrapped.len() <= NONCE_LEN {
            return Err(StoreError::internal("a stored subject key is truncated"));
        }
        let (nonce, ct) = wrapped.split_at(NONCE_LEN);
        let aad = wrap_aad(school, subject);
        let mut plain = self
            .0
            .cipher()
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ct,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| {
                StoreError::internal(format!(
                    "the key of subject {subject} does not open with the configured master key \
                     (wrong REGISTRO_MASTER_KEY?)"
                ))
            })?;
        let key = <[u8; 32]>::try_from(plain.as_slice())
            .map_err(|_| StoreError::internal("an unwrapped subject key is not 32 bytes"));
        plain.zeroize();
        Ok(SubjectKey(Key(key?)))
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

/// One data subject's key, unwrapped. Never printed.
#[derive(Clone)]
pub struct SubjectKey(Key);

impl SubjectKey {
    /// The key from its 32 bytes (a key bundle's).
    pub(crate) const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(Key(bytes))
    }

    /// Its 32 bytes, for a key bundle (encrypted before it leaves the process).
    pub(crate) const fn bytes(&self) -> &[u8; 32] {
        &self.0.0
    }
}

impl fmt::Debug for SubjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SubjectKey(<redacted>)")
    }
}

/// Whether a subject's key can still open their sealed data.
#[derive(Debug, Clone)]
pub enum KeyState {
    /// The key exists.
    Present(SubjectKey),
    /// The key was destroyed: the subject's sealed data is erased.
    Erased,
}

fn wrap_aad(school: SchoolId, subject: PersonId) -> String {
    format!("registro/key/v1|{school}|{subject}")
}

fn seal_aad(school: SchoolId, subject: PersonId, event: EventId, pointer: &str) -> String {
    format!("registro/seal/v1|{school}|{subject}|{event}|{pointer}")
}

/// Checks the pointers of `fields` against `data` before anything is stored: each must point at
/// an existing value, not the whole document, and no two may overlap.
///
/// # Errors
/// [`StoreError::InvalidEvent`] naming the bad pointer.
pub fn check_sealed_fields(data: &Value, fields: &[SealedField]) -> Result<(), StoreError> {
    for (i, f) in fields.iter().enumerate() {
        if f.pointer.is_empty() || !f.pointer.starts_with('/') {
            return Err(StoreError::InvalidEvent(format!(
                "sealed field pointer {:?} must be a JSON pointer below the root, like /reason",
                f.pointer
            )));
        }
        if data.pointer(&f.pointer).is_none() {
            return Err(StoreError::InvalidEvent(format!(
                "sealed field pointer {:?} points at nothing in the event's data",
                f.pointer
            )));
        }
        for g in &fields[..i] {
            let (a, b) = (&f.pointer, &g.pointer);
            let nested = |outer: &str, inner: &str| {
                inner == outer || inner.starts_with(&format!("{outer}/"))
            };
            if nested(a, b) || nested(b, a) {
                return Err(StoreError::InvalidEvent(format!(
                    "sealed field pointers {b:?} and {a:?} overlap"
                )));
            }
        }
    }
    Ok(())
}

/// Replaces each sealed field of `data` by its ciphertext. `keys` holds the key of every
/// subject named in `fields`.
///
/// # Errors
/// [`StoreError::InvalidEvent`] for a bad pointer or non-canonical value;
/// [`StoreError::Internal`] when a key is missing.
pub fn seal_fields(
    data: &mut Value,
    fields: &[SealedField],
    school: SchoolId,
    event: EventId,
    keys: &HashMap<PersonId, SubjectKey>,
) -> Result<(), StoreError> {
    check_sealed_fields(data, fields)?;
    for f in fields {
        let key = keys
            .get(&f.subject)
            .ok_or_else(|| StoreError::internal(format!("no key for subject {}", f.subject)))?;
        let slot = data.pointer_mut(&f.pointer).ok_or_else(|| {
            StoreError::InvalidEvent(format!(
                "sealed field pointer {:?} points at nothing",
                f.pointer
            ))
        })?;
        let plain = to_canonical_json(slot)?;
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let aad = seal_aad(school, f.subject, event, &f.pointer);
        let ct = key
            .0
            .cipher()
            .encrypt(
                &nonce,
                Payload {
                    msg: plain.as_bytes(),
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| StoreError::internal("sealing a field failed"))?;
        *slot = json!({
            SEALED_TAG: {
                "alg": ALG,
                "ct": B64.encode(ct),
                "nonce": B64.encode(nonce),
                "subject": f.subject.to_string(),
                "v": 1,
            }
        });
    }
    Ok(())
}

/// The subjects whose keys are needed to open `data`.
#[must_use]
pub fn sealed_subjects(data: &Value) -> BTreeSet<PersonId> {
    fn walk(v: &Value, out: &mut BTreeSet<PersonId>) {
        match v {
            Value::Object(map) => {
                if let Some(subject) = sealed_body(map).and_then(|b| b.get("subject")) {
                    if let Some(id) = subject.as_str().and_then(|s| s.parse().ok()) {
                        out.insert(id);
                    }
                    return;
                }
                map.values().for_each(|v| walk(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = BTreeSet::new();
    walk(data, &mut out);
    out
}

/// Quick test on stored text: can it hold a sealed field at all?
#[must_use]
pub fn may_hold_sealed(stored: &str) -> bool {
    stored.contains(SEALED_TAG)
}

fn sealed_body(map: &Map<String, Value>) -> Option<&Map<String, Value>> {
    if map.len() == 1 {
        map.get(SEALED_TAG).and_then(Value::as_object)
    } else {
        None
    }
}

/// Opens every sealed field of `data` in place: decrypted where the key is present, the erased
/// marker where it was destroyed.
///
/// # Errors
/// [`StoreError::Internal`] when a sealed field is malformed, its subject's key is unknown, or
/// its ciphertext does not authenticate (the stored data was altered).
pub fn open_fields(
    data: &mut Value,
    school: SchoolId,
    event: EventId,
    keys: &HashMap<PersonId, KeyState>,
) -> Result<(), StoreError> {
    fn walk(
        v: &mut Value,
        pointer: &mut String,
        ctx: &(SchoolId, EventId, &HashMap<PersonId, KeyState>),
    ) -> Result<(), StoreError> {
        match v {
            Value::Object(map) => {
                if let Some(body) = sealed_body(map) {
                    *v = open_one(body, pointer, ctx)?;
                    return Ok(());
                }
                for (k, child) in map.iter_mut() {
                    let len = pointer.len();
                    pointer.push('/');
                    pointer.push_str(&k.replace('~', "~0").replace('/', "~1"));
                    walk(child, pointer, ctx)?;
                    pointer.truncate(len);
                }
            }
            Value::Array(items) => {
                for (i, child) in items.iter_mut().enumerate() {
                    let len = pointer.len();
                    pointer.push_str(&format!("/{i}"));
                    walk(child, pointer, ctx)?;
                    pointer.truncate(len);
                }
            }
            _ => {}
        }
        Ok(())
    }
    walk(data, &mut String::new(), &(school, event, keys))
}

fn open_one(
    body: &Map<String, Value>,
    pointer: &str,
    (school, event, keys): &(SchoolId, EventId, &HashMap<PersonId, KeyState>),
) -> Result<Value, StoreError> {
    let bad = |what: &str| {
        StoreError::internal(format!("sealed field {pointer} of event {event}: {what}"))
    };
    let text = |name: &str| {
        body.get(name)
            .and_then(Value::as_str)
            .ok_or_else(|| bad(name))
    };
    let subject: PersonId = text("subject")?.parse().map_err(|_| bad("subject"))?;
    match keys.get(&subject) {
        None => Err(bad("the subject's key is unknown")),
        Some(KeyState::Erased) => Ok(json!({ ERASED_TAG: { "subject": subject.to_string() } })),
        Some(KeyState::Present(key)) => {
            if text("alg")? != ALG {
                return Err(bad("unknown algorithm"));
            }
            let nonce = B64.decode(text("nonce")?).map_err(|_| bad("nonce"))?;
            if nonce.len() != NONCE_LEN {
                return Err(bad("nonce length"));
            }
            let ct = B64.decode(text("ct")?).map_err(|_| bad("ciphertext"))?;
            let aad = seal_aad(*school, subject, *event, pointer);
            let plain = key
                .0
                .cipher()
                .decrypt(
                    XNonce::from_slice(&nonce),
                    Payload {
                        msg: &ct,
                        aad: aad.as_bytes(),
                    },
                )
                .map_err(|_| bad("ciphertext does not authenticate (altered or moved)"))?;
            serde_json::from_slice(&plain).map_err(|_| bad("plaintext is not JSON"))
        }
    }
}

/// True when `value` is the erased marker.
#[must_use]
pub fn is_erased(value: &Value) -> bool {
    value
        .as_object()
        .is_some_and(|m| m.len() == 1 && m.contains_key(ERASED_TAG))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (MasterKey, SchoolId, PersonId, EventId, SubjectKey, Vec<u8>) {
        let master = MasterKey::generate();
        let school = SchoolId::new();
        let subject = PersonId::new();
        let (key, wrapped) = master.new_subject_key(school, subject).unwrap();
        (master, school, subject, EventId::new(), key, wrapped)
    }

    fn field(pointer: &str, subject: PersonId) -> SealedField {
        SealedField {
            pointer: pointer.into(),
            subject,
        }
    }

    #[test]
    fn a_sealed_field_opens_to_its_value_and_hides_it_when_stored() {
        let (_, school, subject, event, key, _) = setup();
        let original = json!({"category": "health", "note": {"text": "visita medica", "n": 2}});
        let mut data = original.clone();
        let keys = HashMap::from([(subject, key.clone())]);
        seal_fields(&mut data, &[field("/note", subject)], school, event, &keys).unwrap();
        let stored = to_canonical_json(&data).unwrap();
        assert!(
            !stored.contains("visita"),
            "plaintext leaked into stored data: {stored}"
        );
        assert!(may_hold_sealed(&stored));
        assert_eq!(sealed_subjects(&data), BTreeSet::from([subject]));

        let open_keys = HashMap::from([(subject, KeyState::Present(key))]);
        open_fields(&mut data, school, event, &open_keys).unwrap();
        assert_eq!(data, original);
    }

    #[test]
    fn an_erased_key_yields_the_erased_marker() {
        let (_, school, subject, event, key, _) = setup();
        let mut data = json!({"reasons": ["x", "malattia"]});
        seal_fields(
            &mut data,
            &[field("/reasons/1", subject)],
            school,
            event,
            &HashMap::from([(subject, key)]),
        )
        .unwrap();
        open_fields(
            &mut data,
            school,
            event,
            &HashMap::from([(subject, KeyState::Erased)]),
        )
        .unwrap();
        assert_eq!(data["reasons"][0], "x");
        assert!(is_erased(&data["reasons"][1]));
        assert_eq!(
            data["reasons"][1]["$erased"]["subject"],
            subject.to_string()
        );
    }

    #[test]
    fn ciphertext_moved_to_another_event_does_not_open() {
        let (_, school, subject, event, key, _) = setup();
        let mut data = json!({"r": "x"});
        seal_fields(
            &mut data,
            &[field("/r", subject)],
            school,
            event,
            &HashMap::from([(subject, key.clone())]),
        )
        .unwrap();
        let keys = HashMap::from([(subject, KeyState::Present(key))]);
        let err = open_fields(&mut data.clone(), school, EventId::new(), &keys).unwrap_err();
        assert!(err.to_string().contains("does not authenticate"), "{err}");
        // ... nor at another place in the same event.
        let mut moved = json!({"other": data["r"].clone()});
        assert!(open_fields(&mut moved, school, event, &keys).is_err());
    }

    #[test]
    fn wrapped_keys_open_only_with_their_master_key_school_and_subject() {
        let (master, school, subject, _, _, wrapped) = setup();
        assert!(master.unwrap_subject_key(school, subject, &wrapped).is_ok());
        assert!(
            MasterKey::generate()
                .unwrap_subject_key(school, subject, &wrapped)
                .is_err()
        );
        assert!(
            master
                .unwrap_subject_key(SchoolId::new(), subject, &wrapped)
                .is_err()
        );
        assert!(
            master
                .unwrap_subject_key(school, PersonId::new(), &wrapped)
                .is_err()
        );
    }

    /// The sealed field of `docs/event-format.md` §8, opened with the example key (bytes
    /// 0x20..=0x3f) at its place (school ...03, subject ...aa, event ...05, pointer /reason).
    #[test]
    fn known_answer_sealed_field_opens() {
        let key: [u8; 32] = std::array::from_fn(|i| 0x20 + i as u8);
        let school: SchoolId = "0190a3b4-0000-7000-8000-000000000003".parse().unwrap();
        let subject: PersonId = "0190a3b4-0000-7000-8000-0000000000aa".parse().unwrap();
        let event: EventId = "0190a3b4-0000-7000-8000-000000000005".parse().unwrap();
        let mut data: Value = serde_json::from_str(r#"{"hours":2,"reason":{"$sealed":{"alg":"XChaCha20-Poly1305","ct":"r5hA2edn1sVoeejeyu1EsTPBkj4UdpUEizjyclyOBqArBN1uycXD5NJhvncWE+dqTX0JZr+i6Us=","nonce":"oKGio6SlpqeoqaqrrK2ur7CxsrO0tba3","subject":"0190a3b4-0000-7000-8000-0000000000aa","v":1}}}"#).unwrap();
        let keys = HashMap::from([(subject, KeyState::Present(SubjectKey(Key(key))))]);
        open_fields(&mut data, school, event, &keys).unwrap();
        assert_eq!(
            data,
            json!({"hours": 2, "reason": {"code": "health", "text": "visita medica"}})
        );
    }

    #[test]
    fn bad_pointers_are_rejected_before_anything_is_sealed() {
        let s = PersonId::new();
        let data = json!({"a": {"b": 1}, "c": 2});
        assert!(check_sealed_fields(&data, &[field("", s)]).is_err());
        assert!(check_sealed_fields(&data, &[field("/missing", s)]).is_err());
        assert!(check_sealed_fields(&data, &[field("/a", s), field("/a/b", s)]).is_err());
        assert!(check_sealed_fields(&data, &[field("/a/b", s), field("/c", s)]).is_ok());
    }

    #[test]
    fn master_keys_parse_from_base64_or_hex_and_never_print() {
        let k = MasterKey::generate();
        assert!(MasterKey::parse(&k.to_base64()).is_ok());
        assert!(MasterKey::parse(&"ab".repeat(32)).is_ok());
        assert!(MasterKey::parse("c2hvcnQ=").unwrap_err().contains("not 32"));
        assert_eq!(format!("{k:?}"), "MasterKey(<redacted>)");
    }
}
