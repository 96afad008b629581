//! Canonical bytes and the hash chain. `docs/event-format.md` specifies the same rules for
//! outside auditors; a change here is a change of format and needs a new chain version.
//!
//! * Event data is stored as its RFC 8785 (JCS) canonical JSON text, restricted to I-JSON
//!   integers (no fractions, no exponents, magnitude at most 2^53 - 1): grades and amounts are
//!   stored as integers (hundredths), never as floating point.
//! * The canonical bytes of an event are the JCS text of one JSON object holding the envelope
//!   fields and the stored data (see [`canonical_bytes`]).
//! * `hash = SHA-256(prev_hash || canonical bytes)`, with `prev_hash` the previous event's hash
//!   in the same school (32 zero bytes for the first).

use serde_json::Value;
use sha2::{Digest, Sha256};
use time::{OffsetDateTime, UtcOffset};

use crate::envelope::{Hash, RecordedEvent};
use crate::error::StoreError;

/// The largest integer magnitude allowed in event data (I-JSON, RFC 7493).
pub const MAX_SAFE_INTEGER: i64 = (1 << 53) - 1;

/// Writes `value` as canonical JSON (RFC 8785 restricted to integers) into `out`.
///
/// # Errors
/// [`StoreError::InvalidEvent`] for a non-integer or too large number, or a string holding
/// U+0000 (which PostgreSQL text cannot store).
pub fn write_canonical_json(value: &Value, out: &mut String) -> Result<(), StoreError> {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => {
            let i = n
                .as_i64()
                .filter(|i| i.unsigned_abs() <= MAX_SAFE_INTEGER.unsigned_abs());
            match i {
                Some(i) => out.push_str(&i.to_string()),
                None => {
                    return Err(StoreError::InvalidEvent(format!(
                        "number {n} is not an integer of magnitude at most 2^53-1; \
                         store grades and amounts as integers (e.g. hundredths)"
                    )));
                }
            }
        }
        Value::String(s) => write_canonical_string(s, out)?,
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical_json(item, out)?;
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            // RFC 8785: members sorted by the UTF-16 code units of their names.
            entries.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
            out.push('{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical_string(k, out)?;
                out.push(':');
                write_canonical_json(v, out)?;
            }
            out.push('}');
        }
    }
    Ok(())
}

/// Canonical JSON text of `value`; see [`write_canonical_json`].
///
/// # Errors
/// As [`write_canonical_json`].
pub fn to_canonical_json(value: &Value) -> Result<String, StoreError> {
    let mut out = String::new();
    write_canonical_json(value, &mut out)?;
    Ok(out)
}

/// A JSON string as RFC 8785 writes it: `"` and `\` escaped, control characters as `\b \t \n
/// \f \r` or `\u00xx` (lowercase hex), everything else literal UTF-8.
fn write_canonical_string(s: &str, out: &mut String) -> Result<(), StoreError> {
    out.push('"');
    for c in s.chars() {
        match c {
            '\0' => {
                return Err(StoreError::InvalidEvent(
                    "strings may not contain U+0000".to_owned(),
                ));
            }
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\u{c}' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    Ok(())
}

/// A timestamp as stored and hashed: UTC, microsecond precision,
/// `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
#[must_use]
pub fn format_timestamp(t: OffsetDateTime) -> String {
    let t = t.to_offset(UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.microsecond()
    )
}

/// Parses a timestamp written by [`format_timestamp`] (any RFC 3339 text is accepted).
///
/// # Errors
/// [`StoreError::Internal`] when the text is not RFC 3339.
pub fn parse_timestamp(s: &str) -> Result<OffsetDateTime, StoreError> {
    OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map(truncate_to_micros)
        .map_err(|e| StoreError::internal(format!("stored timestamp {s:?}: {e}")))
}

/// Drops sub-microsecond precision (PostgreSQL keeps microseconds) and moves to UTC, so that a
/// timestamp hashes the same before and after a round trip through storage.
#[must_use]
pub fn truncate_to_micros(t: OffsetDateTime) -> OffsetDateTime {
    let t = t.to_offset(UtcOffset::UTC);
    let nanos = t.nanosecond();
    t.replace_nanosecond(nanos - nanos % 1_000).unwrap_or(t)
}

/// The envelope fields that the canonical bytes cover, borrowed from wherever they are.
#[derive(Debug, Clone, Copy)]
pub struct CanonicalEnvelope<'a> {
    /// `actor_id`, or `None` for the system.
    pub actor_id: Option<&'a str>,
    /// `actor_role`.
    pub actor_role: &'a str,
    /// `causation_id`.
    pub causation_id: Option<&'a str>,
    /// `correlation_id`.
    pub correlation_id: &'a str,
    /// The stored data: canonical JSON text, embedded verbatim.
    pub data: &'a str,
    /// `event_id`.
    pub event_id: &'a str,
    /// `event_type`.
    pub event_type: &'a str,
    /// `idempotency_key`.
    pub idempotency_key: Option<&'a str>,
    /// `occurred_at`, formatted by [`format_timestamp`].
    pub occurred_at: &'a str,
    /// `recorded_at`, formatted by [`format_timestamp`].
    pub recorded_at: &'a str,
    /// `schema_version`.
    pub schema_version: u32,
    /// `school_id`.
    pub school_id: &'a str,
    /// `school_seq`.
    pub school_seq: u64,
    /// `stream_id`.
    pub stream_id: &'a str,
    /// `stream_version`.
    pub stream_version: u64,
}

/// The canonical bytes of an event: the JCS text of the object
/// `{"actor_id", "actor_role", "causation_id", "correlation_id", "data", "event_id",
/// "event_type", "idempotency_key", "occurred_at", "recorded_at", "schema_version",
/// "school_id", "school_seq", "stream_id", "stream_version"}` (members in that, sorted, order;
/// absent optional values as `null`; ids lowercase hyphenated; `data` the stored canonical text).
///
/// # Errors
/// Never for values that passed the store's checks; [`StoreError::InvalidEvent`] for a string
/// holding U+0000.
pub fn canonical_bytes(e: &CanonicalEnvelope<'_>) -> Result<String, StoreError> {
    let mut out = String::with_capacity(e.data.len() + 512);
    let opt = |out: &mut String, v: Option<&str>| match v {
        Some(s) => write_canonical_string(s, out),
        None => {
            out.push_str("null");
            Ok(())
        }
    };
    out.push_str("{\"actor_id\":");
    opt(&mut out, e.actor_id)?;
    out.push_str(",\"actor_role\":");
    write_canonical_string(e.actor_role, &mut out)?;
    out.push_str(",\"causation_id\":");
    opt(&mut out, e.causation_id)?;
    out.push_str(",\"correlation_id\":");
    write_canonical_string(e.correlation_id, &mut out)?;
    out.push_str(",\"data\":");
    out.push_str(e.data);
    out.push_str(",\"event_id\":");
    write_canonical_string(e.event_id, &mut out)?;
    out.push_str(",\"event_type\":");
    write_canonical_string(e.event_type, &mut out)?;
    out.push_str(",\"idempotency_key\":");
    opt(&mut out, e.idempotency_key)?;
    out.push_str(",\"occurred_at\":");
    write_canonical_string(e.occurred_at, &mut out)?;
    out.push_str(",\"recorded_at\":");
    write_canonical_string(e.recorded_at, &mut out)?;
    out.push_str(&format!(",\"schema_version\":{}", e.schema_version));
    out.push_str(",\"school_id\":");
    write_canonical_string(e.school_id, &mut out)?;
    out.push_str(&format!(",\"school_seq\":{}", e.school_seq));
    out.push_str(",\"stream_id\":");
    write_canonical_string(e.stream_id, &mut out)?;
    out.push_str(&format!(",\"stream_version\":{}}}", e.stream_version));
    Ok(out)
}

/// `SHA-256(prev || canonical)`.
#[must_use]
pub fn chain_hash(prev: &Hash, canonical: &str) -> Hash {
    let mut h = Sha256::new();
    h.update(prev.0);
    h.update(canonical.as_bytes());
    Hash(h.finalize().into())
}

/// Recomputes the hash of a stored event from its fields and its `prev_hash`.
///
/// # Errors
/// As [`canonical_bytes`].
pub fn recompute_hash(e: &RecordedEvent) -> Result<Hash, StoreError> {
    let actor = e.actor_id.map(|a| a.to_string());
    let causation = e.causation_id.map(|c| c.to_string());
    let bytes = canonical_bytes(&CanonicalEnvelope {
        actor_id: actor.as_deref(),
        actor_role: e.actor_role.as_str(),
        causation_id: causation.as_deref(),
        correlation_id: &e.correlation_id.to_string(),
        data: &e.stored_data,
        event_id: &e.event_id.to_string(),
        event_type: e.event_type.as_str(),
        idempotency_key: e.idempotency_key.as_ref().map(|k| k.as_str()),
        occurred_at: &format_timestamp(e.occurred_at),
        recorded_at: &format_timestamp(e.recorded_at),
        schema_version: e.schema_version,
        school_id: &e.school_id.to_string(),
        school_seq: e.school_seq,
        stream_id: e.stream_id.as_str(),
        stream_version: e.stream_version,
    })?;
    Ok(chain_hash(&e.prev_hash, &bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn objects_are_sorted_and_compact() {
        let v = json!({"b": 1, "a": [true, null, "x"], "c": {"z": -3, "y": "é"}});
        assert_eq!(
            to_canonical_json(&v).unwrap(),
            r#"{"a":[true,null,"x"],"b":1,"c":{"y":"é","z":-3}}"#
        );
    }

    #[test]
    fn keys_sort_by_utf16_code_units_not_by_utf8_bytes() {
        // U+E000 (one UTF-16 unit, 0xE000) sorts after U+1F600 (surrogates 0xD83D 0xDE00) in
        // UTF-16 order, but before it in UTF-8 byte order.
        let v = json!({"\u{E000}": 1, "\u{1F600}": 2});
        assert_eq!(
            to_canonical_json(&v).unwrap(),
            "{\"\u{1F600}\":2,\"\u{E000}\":1}"
        );
    }

    #[test]
    fn strings_escape_as_rfc_8785_says() {
        let v = json!("q\"b\\s/\u{8}\t\n\u{c}\r\u{1}\u{7f}é");
        assert_eq!(
            to_canonical_json(&v).unwrap(),
            "\"q\\\"b\\\\s/\\b\\t\\n\\f\\r\\u0001\u{7f}é\""
        );
    }

    #[test]
    fn fractions_large_numbers_and_nul_are_rejected() {
        assert!(to_canonical_json(&json!(6.25)).is_err());
        assert!(to_canonical_json(&json!(1_u64 << 53)).is_err());
        assert!(to_canonical_json(&json!(-(1_i64 << 53))).is_err());
        assert!(to_canonical_json(&json!("a\u{0}b")).is_err());
        assert_eq!(
            to_canonical_json(&json!(MAX_SAFE_INTEGER)).unwrap(),
            "9007199254740991"
        );
        assert_eq!(
            to_canonical_json(&json!(-MAX_SAFE_INTEGER)).unwrap(),
            "-9007199254740991"
        );
    }

    #[test]
    fn timestamps_are_utc_with_microseconds() {
        let t = OffsetDateTime::parse(
            "2025-09-15T08:05:03.123456789+02:00",
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap();
        assert_eq!(format_timestamp(t), "2025-09-15T06:05:03.123456Z");
        let back = parse_timestamp(&format_timestamp(t)).unwrap();
        assert_eq!(back, truncate_to_micros(t));
    }

    fn sample<'a>(data: &'a str) -> CanonicalEnvelope<'a> {
        CanonicalEnvelope {
            actor_id: None,
            actor_role: "system",
            causation_id: None,
            correlation_id: "0190a3b4-0000-7000-8000-000000000001",
            data,
            event_id: "0190a3b4-0000-7000-8000-000000000002",
            event_type: "SchoolRegistered",
            idempotency_key: Some("k-1"),
            occurred_at: "2025-09-01T00:00:00.000000Z",
            recorded_at: "2025-09-01T07:00:00.000001Z",
            schema_version: 1,
            school_id: "0190a3b4-0000-7000-8000-000000000003",
            school_seq: 1,
            stream_id: "school",
            stream_version: 1,
        }
    }

    #[test]
    fn canonical_bytes_equal_the_jcs_of_the_envelope_object() {
        // The hand-written encoder must agree with the generic one on the same object.
        let data = r#"{"name":"Liceo"}"#;
        let e = sample(data);
        let as_value = json!({
            "actor_id": null, "actor_role": "system", "causation_id": null,
            "correlation_id": e.correlation_id, "data": {"name": "Liceo"},
            "event_id": e.event_id, "event_type": e.event_type, "idempotency_key": "k-1",
            "occurred_at": e.occurred_at, "recorded_at": e.recorded_at, "schema_version": 1,
            "school_id": e.school_id, "school_seq": 1, "stream_id": "school", "stream_version": 1
        });
        assert_eq!(
            canonical_bytes(&e).unwrap(),
            to_canonical_json(&as_value).unwrap()
        );
    }

    /// Known answers, computed outside this code (Python's `json.dumps(sort_keys=True,
    /// separators=(',', ':'), ensure_ascii=False)` and `hashlib.sha256`); the same example is
    /// worked in `docs/event-format.md`.
    #[test]
    fn known_answer_chain_of_two_events() {
        let first = canonical_bytes(&sample(r#"{"name":"Liceo"}"#)).unwrap();
        let h1 = chain_hash(&Hash::GENESIS, &first);
        assert_eq!(
            h1.to_hex(),
            "7fa62ffad9c3e98f78e3eb8cc99ff690bad684294d32b97b787702a485e77ef4"
        );
        let data = to_canonical_json(&json!({"note": "è \"ok\"\n"})).unwrap();
        let second = canonical_bytes(&CanonicalEnvelope {
            event_id: "0190a3b4-0000-7000-8000-000000000004",
            school_seq: 2,
            stream_version: 2,
            ..sample(&data)
        })
        .unwrap();
        let h2 = chain_hash(&h1, &second);
        assert_eq!(
            h2.to_hex(),
            "0badd24d01d678bdb4787aac3d160bb99e9cd9955dfe7b77646d69c1a7561457"
        );
    }

    /// The third event of `docs/event-format.md` §8: actor, causation, no idempotency key,
    /// schema version 2 and a sealed field, chained onto the second.
    #[test]
    fn known_answer_third_event_with_a_sealed_field() {
        let h2 = Hash::from_hex("0badd24d01d678bdb4787aac3d160bb99e9cd9955dfe7b77646d69c1a7561457")
            .unwrap();
        let data = r#"{"date":"2025-10-06","hours":2,"kind":"absence","reason":{"$sealed":{"alg":"XChaCha20-Poly1305","ct":"r5hA2edn1sVoeejeyu1EsTPBkj4UdpUEizjyclyOBqArBN1uycXD5NJhvncWE+dqTX0JZr+i6Us=","nonce":"oKGio6SlpqeoqaqrrK2ur7CxsrO0tba3","subject":"0190a3b4-0000-7000-8000-0000000000aa","v":1}}}"#;
        assert_eq!(
            to_canonical_json(&serde_json::from_str(data).unwrap()).unwrap(),
            data
        );
        let third = canonical_bytes(&CanonicalEnvelope {
            actor_id: Some("0190a3b4-0000-7000-8000-0000000000bb"),
            actor_role: "guardian",
            causation_id: Some("0190a3b4-0000-7000-8000-0000000000cc"),
            correlation_id: "0190a3b4-0000-7000-8000-0000000000dd",
            data,
            event_id: "0190a3b4-0000-7000-8000-000000000005",
            event_type: "AbsenceJustified",
            idempotency_key: None,
            occurred_at: "2025-10-06T06:30:00.000000Z",
            recorded_at: "2025-10-06T07:12:45.123456Z",
            schema_version: 2,
            school_id: "0190a3b4-0000-7000-8000-000000000003",
            school_seq: 3,
            stream_id: "student-0190a3b4-0000-7000-8000-0000000000aa-2025",
            stream_version: 1,
        })
        .unwrap();
        assert_eq!(third.len(), 834);
        assert_eq!(
            chain_hash(&h2, &third).to_hex(),
            "99d17314d7bc6e2cbf7a48dbbf6b190a6643e5b1cc575b8fac4258bd69bef2c5"
        );
    }

    #[test]
    fn the_chain_hash_is_sha256_of_prev_and_bytes() {
        // Known answer: SHA-256 of 32 zero bytes followed by "abc".
        let h = chain_hash(&Hash::GENESIS, "abc");
        let mut expect = Sha256::new();
        expect.update([0_u8; 32]);
        expect.update(b"abc");
        assert_eq!(h.0, <[u8; 32]>::from(expect.finalize()));
        assert_ne!(
            chain_hash(&h, "abc"),
            h,
            "the previous hash changes the result"
        );
    }
}
