//! The adapter-independent part of an append: validation, sealing, the request fingerprint
//! for idempotency, and the rows with their chain hashes once the school's head is known.

use std::collections::{BTreeSet, HashMap};

use registro_domain::{PersonId, SchoolId};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::canonical::{
    CanonicalEnvelope, canonical_bytes, chain_hash, format_timestamp, to_canonical_json,
    truncate_to_micros,
};
use crate::envelope::{
    AppendRequest, CommandMetadata, Hash, MAX_DATA_BYTES, MAX_EVENTS_PER_APPEND, RecordedEvent,
    SchoolHead, StreamId,
};
use crate::error::StoreError;
use crate::seal::{ERASED_TAG, SEALED_TAG, SubjectKey, check_sealed_fields, seal_fields};

/// A validated append, before the school's head is known.
#[derive(Debug)]
pub(crate) struct AppendPlan {
    pub request: AppendRequest,
    /// SHA-256 over what makes two requests "the same" for an idempotency key.
    pub fingerprint: [u8; 32],
    /// The subjects whose keys sealing needs.
    pub subjects: BTreeSet<PersonId>,
}

impl AppendPlan {
    /// Validates the request and computes its fingerprint.
    pub fn new(request: AppendRequest) -> Result<Self, StoreError> {
        if request.events.is_empty() {
            return Err(StoreError::InvalidEvent(
                "an append needs at least one event".into(),
            ));
        }
        if request.events.len() > MAX_EVENTS_PER_APPEND {
            return Err(StoreError::InvalidEvent(format!(
                "an append may carry at most {MAX_EVENTS_PER_APPEND} events, not {}",
                request.events.len()
            )));
        }
        let mut fp = Sha256::new();
        fp.update(b"registro/idempotency/v1\0");
        fp.update(request.stream.as_str().as_bytes());
        fp.update(format!("\0{:?}\0", request.expected).as_bytes());
        // The same key from another person is another request, never their replay.
        let m = &request.metadata;
        fp.update(format!("{:?}\0{}\0", m.actor_id, m.actor_role).as_bytes());
        let mut subjects = BTreeSet::new();
        for e in &request.events {
            if !e.data.is_object() {
                return Err(StoreError::InvalidEvent(format!(
                    "the data of event {} ({}) must be a JSON object",
                    e.event_id, e.event_type
                )));
            }
            if e.schema_version == 0 || i32::try_from(e.schema_version).is_err() {
                return Err(StoreError::InvalidEvent(format!(
                    "schema_version {} of event {} is not between 1 and {}",
                    e.schema_version,
                    e.event_id,
                    i32::MAX
                )));
            }
            if let Some(tag) = reserved_member(&e.data) {
                return Err(StoreError::InvalidEvent(format!(
                    "the data of event {} holds a member named {tag:?}, which is reserved for \
                     sealed fields: name the field to seal in `sealed` instead",
                    e.event_id
                )));
            }
            check_sealed_fields(&e.data, &e.sealed)?;
            let canonical = to_canonical_json(&e.data)?;
            if canonical.len() > MAX_DATA_BYTES {
                return Err(StoreError::InvalidEvent(format!(
                    "the data of event {} is {} bytes, more than the {MAX_DATA_BYTES} allowed",
                    e.event_id,
                    canonical.len()
                )));
            }
            fp.update(e.event_type.as_str().as_bytes());
            fp.update(format!("\0{}\0", e.schema_version).as_bytes());
            fp.update(canonical.as_bytes());
            for f in &e.sealed {
                fp.update(format!("\0{}\0{}", f.pointer, f.subject).as_bytes());
                subjects.insert(f.subject);
            }
            fp.update(b"\0\0");
        }
        let fingerprint = match &request.command_digest {
            Some(digest) => command_fingerprint(&request.stream, &request.metadata, digest),
            None => fp.finalize().into(),
        };
        Ok(Self {
            request,
            fingerprint,
            subjects,
        })
    }

    /// Seals the sealed fields and returns each event's stored (canonical) data.
    pub fn seal(&self, keys: &HashMap<PersonId, SubjectKey>) -> Result<Vec<String>, StoreError> {
        self.request
            .events
            .iter()
            .map(|e| {
                if e.sealed.is_empty() {
                    return to_canonical_json(&e.data);
                }
                let mut data = e.data.clone();
                seal_fields(&mut data, &e.sealed, self.request.school, e.event_id, keys)?;
                to_canonical_json(&data)
            })
            .collect()
    }

    /// The rows to insert, chained onto `head`, for a stream now at `stream_version`.
    pub fn rows(
        &self,
        stored: Vec<String>,
        head: Option<SchoolHead>,
        stream_version: u64,
        recorded_at: OffsetDateTime,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let r = &self.request;
        let recorded_at = truncate_to_micros(recorded_at);
        let (mut seq, mut prev) = head.map_or((0, Hash::GENESIS), |h| (h.last_seq, h.hash));
        let school = r.school.to_string();
        let actor = r.metadata.actor_id.map(|a| a.to_string());
        let correlation = r.metadata.correlation_id.to_string();
        let causation = r.metadata.causation_id.map(|c| c.to_string());
        let recorded_text = format_timestamp(recorded_at);
        let mut rows = Vec::with_capacity(r.events.len());
        for (i, (e, stored_data)) in r.events.iter().zip(stored).enumerate() {
            seq += 1;
            let version = stream_version + i as u64 + 1;
            let occurred_at = truncate_to_micros(e.occurred_at);
            let bytes = canonical_bytes(&CanonicalEnvelope {
                actor_id: actor.as_deref(),
                actor_role: r.metadata.actor_role.as_str(),
                causation_id: causation.as_deref(),
                correlation_id: &correlation,
                data: &stored_data,
                event_id: &e.event_id.to_string(),
                event_type: e.event_type.as_str(),
                idempotency_key: r.idempotency_key.as_ref().map(|k| k.as_str()),
                occurred_at: &format_timestamp(occurred_at),
                recorded_at: &recorded_text,
                schema_version: e.schema_version,
                school_id: &school,
                school_seq: seq,
                stream_id: r.stream.as_str(),
                stream_version: version,
            })?;
            let hash = chain_hash(&prev, &bytes);
            rows.push(RecordedEvent {
                position: crate::envelope::Position::START,
                event_id: e.event_id,
                school_id: r.school,
                school_seq: seq,
                stream_id: r.stream.clone(),
                stream_version: version,
                event_type: e.event_type.clone(),
                schema_version: e.schema_version,
                data: e.data.clone(),
                stored_data,
                actor_id: r.metadata.actor_id,
                actor_role: r.metadata.actor_role,
                correlation_id: r.metadata.correlation_id,
                causation_id: r.metadata.causation_id,
                occurred_at,
                recorded_at,
                idempotency_key: r.idempotency_key.clone(),
                prev_hash: prev,
                hash,
            });
            prev = hash;
        }
        Ok(rows)
    }

    /// The school of the request.
    pub fn school(&self) -> SchoolId {
        self.request.school
    }
}

/// The idempotency fingerprint of a request that names the digest of the command that decided
/// it: the stream, the actor (the person, not the role they acted in, which may change between
/// a command and its retry) and the digest; not the events nor the expected version.
#[must_use]
pub fn command_fingerprint(
    stream: &StreamId,
    metadata: &CommandMetadata,
    digest: &[u8; 32],
) -> [u8; 32] {
    let mut fp = Sha256::new();
    fp.update(b"registro/idempotency/command/v1\0");
    fp.update(stream.as_str().as_bytes());
    fp.update(format!("\0{:?}\0", metadata.actor_id).as_bytes());
    fp.update(digest);
    fp.finalize().into()
}

/// The first reserved member name (`$sealed`, `$erased`) found anywhere in `v`: only the store
/// writes them, so data given to it must not hold them.
fn reserved_member(v: &serde_json::Value) -> Option<&'static str> {
    match v {
        serde_json::Value::Object(map) => [SEALED_TAG, ERASED_TAG]
            .into_iter()
            .find(|tag| map.contains_key(*tag))
            .or_else(|| map.values().find_map(reserved_member)),
        serde_json::Value::Array(items) => items.iter().find_map(reserved_member),
        _ => None,
    }
}

/// The advisory-lock key of a school: both halves of its UUID folded together, so that
/// UUIDv7s created in the same millisecond still get different keys.
pub(crate) fn school_lock_key(school: SchoolId) -> i64 {
    let (hi, lo) = school.as_uuid().as_u64_pair();
    i64::from_ne_bytes((hi ^ lo).to_ne_bytes())
}
