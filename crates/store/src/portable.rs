//! The portable form of a school's log ([docs/export-format.md](../../../docs/export-format.md)):
//! NDJSON, one CloudEvents 1.0 JSON event per line. The first line is the manifest (school,
//! event count, head hash, format and software version); then every event in `school_seq`
//! order, exactly as stored (sealed fields as ciphertext, so the hashes verify without any key);
//! then the attachments the events name, each with its bytes. Read by [`Exporter`] a page at a
//! time (constant memory), parsed back line by line by [`parse_line`] for
//! [`crate::EventStore::import_school`], which verifies the chain while it loads.

use std::collections::BTreeSet;
use std::str::FromStr as _;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use registro_domain::{ContentHash, PersonId, Role, SchoolId};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sha2::{Digest as _, Sha256};
use time::OffsetDateTime;

use crate::canonical::{format_timestamp, parse_timestamp, to_canonical_json};
use crate::envelope::{EventType, Hash, IdempotencyKey, Position, RecordedEvent, StreamId};
use crate::error::StoreError;
use crate::{AttachmentMeta, EventStore, Sealed};

/// The version of this format; a reader refuses a file of another.
pub const FORMAT_VERSION: u32 = 1;
/// The CloudEvents `type` of the manifest line.
pub const MANIFEST_TYPE: &str = "it.registro.export.manifest";
/// The CloudEvents `type` of an attachment line.
pub const ATTACHMENT_TYPE: &str = "it.registro.export.attachment";
/// The prefix of an event's CloudEvents `type`: `it.registro.GradeRecorded`.
pub const EVENT_TYPE_PREFIX: &str = "it.registro.";
/// How many events an [`Exporter`] reads at a time.
pub const EXPORT_PAGE: usize = 1_000;

/// The first line's data: what the file holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The format's version ([`FORMAT_VERSION`]).
    pub format_version: u32,
    /// The school.
    pub school: SchoolId,
    /// How many events follow (`school_seq` 1 to `events`).
    pub events: u64,
    /// The hash of the last event, 64 lowercase hex digits (none without events).
    pub head: Option<String>,
    /// When the export began (UTC, microseconds).
    pub exported_at: String,
    /// The software that wrote it.
    pub software: String,
}

/// The CloudEvents `source` of a school's lines.
#[must_use]
pub fn source(school: SchoolId) -> String {
    format!("/schools/{school}")
}

fn envelope(id: &str, school: SchoolId, kind: &str) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("specversion".into(), json!("1.0"));
    m.insert("id".into(), json!(id));
    m.insert("source".into(), json!(source(school)));
    m.insert("type".into(), json!(kind));
    m.insert("datacontenttype".into(), json!("application/json"));
    m
}

fn line(m: Map<String, Value>) -> Result<String, StoreError> {
    let mut text = serde_json::to_string(&Value::Object(m)).map_err(StoreError::internal)?;
    text.push('\n');
    Ok(text)
}

/// The manifest line.
///
/// # Errors
/// Only if the manifest cannot be serialised (a bug).
pub fn manifest_line(manifest: &Manifest) -> Result<String, StoreError> {
    let mut m = envelope(
        &format!("manifest-{}-{}", manifest.school, manifest.exported_at),
        manifest.school,
        MANIFEST_TYPE,
    );
    m.insert("time".into(), json!(manifest.exported_at));
    m.insert(
        "data".into(),
        serde_json::to_value(manifest).map_err(StoreError::internal)?,
    );
    line(m)
}

/// An event's line: the envelope as CloudEvents attributes and extensions, the stored data as
/// `data`.
///
/// # Errors
/// When the stored data is not JSON (a bug).
pub fn event_line(e: &RecordedEvent) -> Result<String, StoreError> {
    /// The line's members in the order a JSON object with sorted keys has them (as
    /// [`line`] writes the other lines), so that serialising it needs no map and the event's
    /// data, canonical JSON already, is copied as stored instead of parsed and written again.
    #[derive(Serialize)]
    struct Line<'a> {
        #[serde(skip_serializing_if = "Option::is_none")]
        actorid: Option<String>,
        actorrole: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        causationid: Option<String>,
        correlationid: String,
        data: &'a serde_json::value::RawValue,
        datacontenttype: &'static str,
        hash: String,
        id: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        idempotencykey: Option<&'a str>,
        prevhash: String,
        recordedat: String,
        schemaversion: u32,
        schoolseq: u64,
        source: String,
        specversion: &'static str,
        streamid: &'a str,
        streamversion: u64,
        subject: &'a str,
        time: String,
        #[serde(rename = "type")]
        kind: String,
    }
    let data: &serde_json::value::RawValue =
        serde_json::from_str(&e.stored_data).map_err(StoreError::internal)?;
    let line = Line {
        actorid: e.actor_id.map(|a| a.to_string()),
        actorrole: e.actor_role.as_str(),
        causationid: e.causation_id.map(|c| c.to_string()),
        correlationid: e.correlation_id.to_string(),
        data,
        datacontenttype: "application/json",
        hash: e.hash.to_hex(),
        id: e.event_id.to_string(),
        idempotencykey: e.idempotency_key.as_ref().map(IdempotencyKey::as_str),
        prevhash: e.prev_hash.to_hex(),
        recordedat: format_timestamp(e.recorded_at),
        schemaversion: e.schema_version,
        schoolseq: e.school_seq,
        source: source(e.school_id),
        specversion: "1.0",
        streamid: e.stream_id.as_str(),
        streamversion: e.stream_version,
        subject: e.stream_id.as_str(),
        time: format_timestamp(e.occurred_at),
        kind: format!("{EVENT_TYPE_PREFIX}{}", e.event_type.as_str()),
    };
    let mut text = serde_json::to_string(&line).map_err(StoreError::internal)?;
    text.push('\n');
    Ok(text)
}

/// An attachment's line: its media type and bytes (base64), under its SHA-256.
///
/// # Errors
/// Only if the line cannot be serialised (a bug).
pub fn attachment_line(
    school: SchoolId,
    meta: &AttachmentMeta,
    content: &[u8],
) -> Result<String, StoreError> {
    let hash = meta.hash.to_string();
    let mut m = envelope(&format!("attachment-{hash}"), school, ATTACHMENT_TYPE);
    m.insert("time".into(), json!(format_timestamp(meta.stored_at)));
    m.insert(
        "data".into(),
        json!({"hash": hash, "media_type": meta.media_type, "size": meta.size,
            "content": B64.encode(content)}),
    );
    line(m)
}

/// One line of an export, read back.
#[derive(Debug, Clone)]
pub enum Line {
    /// The manifest.
    Manifest(Manifest),
    /// An event, as stored (its `data` the stored form).
    Event(Box<RecordedEvent>),
    /// An attachment.
    Attachment {
        /// Its media type.
        media_type: String,
        /// When it was first stored.
        stored_at: OffsetDateTime,
        /// Its bytes (their SHA-256 checked against the line's hash).
        content: Vec<u8>,
    },
}

fn text<'a>(m: &'a Map<String, Value>, name: &str) -> Result<&'a str, String> {
    m.get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("`{name}` is missing or not a string"))
}

fn opt_text<'a>(m: &'a Map<String, Value>, name: &str) -> Result<Option<&'a str>, String> {
    match m.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(format!("`{name}` is not a string")),
    }
}

fn number(m: &Map<String, Value>, name: &str) -> Result<u64, String> {
    m.get(name)
        .and_then(Value::as_u64)
        .ok_or_else(|| format!("`{name}` is missing or not a whole number"))
}

fn uuid(s: &str, name: &str) -> Result<uuid::Uuid, String> {
    uuid::Uuid::parse_str(s).map_err(|e| format!("`{name}`: {e}"))
}

fn hash(s: &str, name: &str) -> Result<Hash, String> {
    Hash::from_hex(s).map_err(|e| format!("`{name}`: {e}"))
}

fn time(s: &str, name: &str) -> Result<OffsetDateTime, String> {
    parse_timestamp(s).map_err(|e| format!("`{name}`: {e}"))
}

/// Reads one line of an export of `school` (a manifest, an event or an attachment).
///
/// # Errors
/// A message saying what is wrong with the line (not JSON, not CloudEvents 1.0, another
/// school's, a missing or malformed attribute, an attachment whose bytes do not match its
/// hash).
pub fn parse_line(school: SchoolId, text_line: &str) -> Result<Line, String> {
    let value: Value =
        serde_json::from_str(text_line).map_err(|e| format!("not a JSON object: {e}"))?;
    let Value::Object(mut m) = value else {
        return Err("not a JSON object".into());
    };
    if text(&m, "specversion")? != "1.0" {
        return Err("not a CloudEvents 1.0 event (`specversion`)".into());
    }
    if text(&m, "source")? != source(school) {
        return Err(format!(
            "`source` is {}, not this school's {}",
            text(&m, "source")?,
            source(school)
        ));
    }
    let kind = text(&m, "type")?.to_owned();
    let data = m.remove("data").ok_or("`data` is missing")?;
    if kind == MANIFEST_TYPE {
        let manifest: Manifest =
            serde_json::from_value(data).map_err(|e| format!("the manifest: {e}"))?;
        return Ok(Line::Manifest(manifest));
    }
    if kind == ATTACHMENT_TYPE {
        let Value::Object(d) = data else {
            return Err("an attachment's `data` is not an object".into());
        };
        let content = B64
            .decode(text(&d, "content")?)
            .map_err(|e| format!("an attachment's `content`: {e}"))?;
        let expected = text(&d, "hash")?;
        let actual = hex::encode(Sha256::digest(&content));
        if actual != expected {
            return Err(format!("attachment {expected}: its bytes hash to {actual}"));
        }
        return Ok(Line::Attachment {
            media_type: text(&d, "media_type")?.to_owned(),
            stored_at: time(text(&m, "time")?, "time")?,
            content,
        });
    }
    let event_type = kind
        .strip_prefix(EVENT_TYPE_PREFIX)
        .ok_or_else(|| format!("`type` {kind} is not registro's"))?;
    if !data.is_object() {
        return Err("`data` is not a JSON object".into());
    }
    let stored_data = to_canonical_json(&data).map_err(|e| format!("`data`: {e}"))?;
    let stream = text(&m, "streamid")?;
    if opt_text(&m, "subject")?.is_some_and(|s| s != stream) {
        return Err("`subject` differs from `streamid`".into());
    }
    let schema_version = u32::try_from(number(&m, "schemaversion")?)
        .ok()
        .filter(|v| (1..=i32::MAX.unsigned_abs()).contains(v))
        .ok_or_else(|| "`schemaversion` is not from 1 to 2147483647".to_owned())?;
    Ok(Line::Event(Box::new(RecordedEvent {
        position: Position::START,
        event_id: uuid(text(&m, "id")?, "id")?.into(),
        school_id: school,
        school_seq: number(&m, "schoolseq")?,
        stream_id: StreamId::parse(stream).map_err(|e| format!("`streamid`: {e}"))?,
        stream_version: number(&m, "streamversion")?,
        event_type: EventType::parse(event_type).map_err(|e| format!("`type`: {e}"))?,
        schema_version,
        data,
        stored_data,
        actor_id: opt_text(&m, "actorid")?
            .map(|a| uuid(a, "actorid").map(PersonId::from_uuid))
            .transpose()?,
        actor_role: Role::from_str(text(&m, "actorrole")?)
            .map_err(|e| format!("`actorrole`: {e}"))?,
        correlation_id: uuid(text(&m, "correlationid")?, "correlationid")?.into(),
        causation_id: opt_text(&m, "causationid")?
            .map(|c| uuid(c, "causationid").map(Into::into))
            .transpose()?,
        occurred_at: time(text(&m, "time")?, "time")?,
        recorded_at: time(text(&m, "recordedat")?, "recordedat")?,
        idempotency_key: opt_text(&m, "idempotencykey")?
            .map(IdempotencyKey::parse)
            .transpose()
            .map_err(|e| format!("`idempotencykey`: {e}"))?,
        prev_hash: hash(text(&m, "prevhash")?, "prevhash")?,
        hash: hash(text(&m, "hash")?, "hash")?,
    })))
}

/// The attachments an event's data names (`attachments[].hash`, as a published communication
/// holds them).
fn named_attachments(data: &Value, into: &mut BTreeSet<ContentHash>) {
    if let Some(list) = data.get("attachments").and_then(Value::as_array) {
        for a in list {
            if let Some(h) = a
                .get("hash")
                .and_then(Value::as_str)
                .and_then(|h| h.parse().ok())
            {
                into.insert(h);
            }
        }
    }
}

/// Where an export stands.
#[derive(Debug)]
enum Phase {
    Manifest,
    Events,
    Attachments(Vec<ContentHash>),
    Done,
}

/// A page of events being read.
type PageRead = tokio::task::JoinHandle<Result<Vec<RecordedEvent>, StoreError>>;

/// Writes a school's export a chunk at a time: the manifest, then the events up to the head
/// the export began at (a page per chunk; events appended meanwhile are the next export's),
/// then the attachments the events name, one per chunk.
#[derive(Debug)]
pub struct Exporter {
    store: std::sync::Arc<dyn EventStore>,
    school: SchoolId,
    last_seq: u64,
    next_seq: u64,
    manifest: Manifest,
    attachments: BTreeSet<ContentHash>,
    phase: Phase,
    /// The next page, read while this one is written: its first `school_seq` and the read.
    ahead: Option<(u64, PageRead)>,
}

impl Drop for Exporter {
    fn drop(&mut self) {
        if let Some((_, read)) = self.ahead.take() {
            read.abort();
        }
    }
}

impl Exporter {
    /// The page of events from `from`: the one read ahead if it starts there, else read now.
    async fn page(&mut self, from: u64) -> Result<Vec<RecordedEvent>, StoreError> {
        match self.ahead.take() {
            Some((at, read)) if at == from => read
                .await
                .map_err(|e| StoreError::internal(format!("the export's read ahead: {e}")))?,
            other => {
                if let Some((_, read)) = other {
                    read.abort();
                }
                self.store
                    .read_school(self.school, from, EXPORT_PAGE, Sealed::Keep)
                    .await
            }
        }
    }

    /// Starts reading the page from `from`, if the export goes that far.
    fn read_ahead(&mut self, from: u64) {
        if from > self.last_seq {
            return;
        }
        let (store, school) = (std::sync::Arc::clone(&self.store), self.school);
        let read = tokio::spawn(async move {
            store
                .read_school(school, from, EXPORT_PAGE, Sealed::Keep)
                .await
        });
        self.ahead = Some((from, read));
    }

    /// An export of `school` as its log stands now.
    ///
    /// # Errors
    /// The store's.
    pub async fn new(
        store: std::sync::Arc<dyn EventStore>,
        school: SchoolId,
        software: &str,
    ) -> Result<Self, StoreError> {
        let head = store.school_head(school).await?;
        let last_seq = head.as_ref().map_or(0, |h| h.last_seq);
        Ok(Self {
            store,
            school,
            last_seq,
            next_seq: 1,
            manifest: Manifest {
                format_version: FORMAT_VERSION,
                school,
                events: last_seq,
                head: head.map(|h| h.hash.to_hex()),
                exported_at: format_timestamp(OffsetDateTime::now_utc()),
                software: software.to_owned(),
            },
            attachments: BTreeSet::new(),
            phase: Phase::Manifest,
            ahead: None,
        })
    }

    /// What the export holds.
    #[must_use]
    pub const fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The events written so far.
    #[must_use]
    pub const fn events_written(&self) -> u64 {
        self.next_seq - 1
    }

    /// The next lines, or `None` at the end.
    ///
    /// # Errors
    /// The store's; [`StoreError::Internal`] when an event named an attachment the school does
    /// not have.
    pub async fn next_chunk(&mut self) -> Result<Option<String>, StoreError> {
        loop {
            match &mut self.phase {
                Phase::Manifest => {
                    self.phase = Phase::Events;
                    return manifest_line(&self.manifest).map(Some);
                }
                Phase::Events if self.next_seq > self.last_seq => {
                    let names = std::mem::take(&mut self.attachments);
                    self.phase = Phase::Attachments(names.into_iter().rev().collect());
                }
                Phase::Events => {
                    let page = self.page(self.next_seq).await?;
                    // The database reads the next page while this one is written.
                    if page.len() == EXPORT_PAGE {
                        self.read_ahead(self.next_seq + EXPORT_PAGE as u64);
                    }
                    let mut out = String::new();
                    for e in page.iter().take_while(|e| e.school_seq <= self.last_seq) {
                        if e.school_seq != self.next_seq {
                            return Err(StoreError::internal(format!(
                                "school_seq {} follows {} in the school's log",
                                e.school_seq,
                                self.next_seq - 1
                            )));
                        }
                        named_attachments(&e.data, &mut self.attachments);
                        out.push_str(&event_line(e)?);
                        self.next_seq += 1;
                    }
                    if out.is_empty() {
                        return Err(StoreError::internal(format!(
                            "the school's log ends before its head {}",
                            self.last_seq
                        )));
                    }
                    return Ok(Some(out));
                }
                Phase::Attachments(left) => {
                    let Some(hash) = left.pop() else {
                        self.phase = Phase::Done;
                        continue;
                    };
                    let (meta, content) = self
                        .store
                        .attachment(self.school, &hash)
                        .await?
                        .ok_or_else(|| {
                            StoreError::internal(format!(
                                "an event names attachment {hash}, which the school does not have"
                            ))
                        })?;
                    return attachment_line(self.school, &meta, &content).map(Some);
                }
                Phase::Done => return Ok(None),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::canonical::recompute_hash;
    use registro_domain::{CorrelationId, EventId};

    fn event() -> RecordedEvent {
        let school = SchoolId::new();
        let stored = r#"{"a":"é\u001f","n":650,"sealed":{"$sealed":"x"}}"#.to_owned();
        let mut e = RecordedEvent {
            position: Position::START,
            event_id: EventId::new(),
            school_id: school,
            school_seq: 1,
            stream_id: StreamId::parse("student-x-2025").unwrap(),
            stream_version: 1,
            event_type: EventType::parse("GradeRecorded").unwrap(),
            schema_version: 1,
            data: serde_json::from_str(&stored).unwrap(),
            stored_data: stored,
            actor_id: Some(PersonId::new()),
            actor_role: Role::Teacher,
            correlation_id: CorrelationId::new(),
            causation_id: None,
            occurred_at: parse_timestamp("2025-10-06T06:30:00.000001Z").unwrap(),
            recorded_at: parse_timestamp("2025-10-06T06:31:00.000000Z").unwrap(),
            idempotency_key: Some(IdempotencyKey::parse("k-1").unwrap()),
            prev_hash: Hash::GENESIS,
            hash: Hash::GENESIS,
        };
        e.hash = recompute_hash(&e).unwrap();
        e
    }

    #[test]
    fn an_event_line_reads_back_with_the_same_hash() {
        let e = event();
        let line = event_line(&e).unwrap();
        assert!(line.ends_with('\n') && !line.trim_end().contains('\n'));
        let Line::Event(back) = parse_line(e.school_id, line.trim_end()).unwrap() else {
            panic!("not an event");
        };
        assert_eq!(back.stored_data, e.stored_data);
        assert_eq!(recompute_hash(&back).unwrap(), e.hash);
        assert_eq!(back.hash, e.hash);
        assert_eq!(
            (back.event_id, back.actor_id, back.idempotency_key.clone()),
            (e.event_id, e.actor_id, e.idempotency_key.clone())
        );
        let cloud: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(cloud["type"], "it.registro.GradeRecorded");
        assert_eq!(cloud["subject"], "student-x-2025");
        assert_eq!(cloud["time"], "2025-10-06T06:30:00.000001Z");
        assert_eq!(cloud["schoolseq"], 1);
        assert!(cloud.get("causationid").is_none(), "absent, not null");
    }

    #[test]
    fn a_line_of_another_school_or_format_is_refused() {
        let e = event();
        let line = event_line(&e).unwrap();
        let err = parse_line(SchoolId::new(), &line).unwrap_err();
        assert!(err.contains("not this school's"), "{err}");
        let v2 = line.replace("\"specversion\":\"1.0\"", "\"specversion\":\"0.3\"");
        assert!(parse_line(e.school_id, &v2).is_err());
        assert!(parse_line(e.school_id, "{").is_err());
        let foreign = line.replace("it.registro.GradeRecorded", "com.other.Graded");
        assert!(parse_line(e.school_id, &foreign).is_err());
    }

    #[test]
    fn an_attachment_whose_bytes_changed_is_refused() {
        let school = SchoolId::new();
        let content = b"%PDF-1.4".to_vec();
        let meta = AttachmentMeta {
            hash: crate::attachment::content_hash(&content),
            media_type: "application/pdf".into(),
            size: 8,
            stored_at: OffsetDateTime::UNIX_EPOCH,
        };
        let line = attachment_line(school, &meta, &content).unwrap();
        match parse_line(school, &line).unwrap() {
            Line::Attachment {
                media_type,
                content: c,
                ..
            } => {
                assert_eq!((media_type.as_str(), c), ("application/pdf", content));
            }
            other => panic!("{other:?}"),
        }
        let changed = line.replace(&B64.encode(b"%PDF-1.4"), &B64.encode(b"%PDF-1.5"));
        assert!(
            parse_line(school, &changed)
                .unwrap_err()
                .contains("hash to")
        );
    }
}

/// How many events an import sends to the store at a time.
pub const IMPORT_BATCH: usize = 1_000;

/// What an import did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    /// The school.
    pub school: SchoolId,
    /// How many events it loaded.
    pub events: u64,
    /// The chain's head (as the manifest announced it).
    pub head: Option<String>,
    /// How many attachments it loaded.
    pub attachments: u64,
}

/// Imports an export read from `reader` into `store` ([`crate::EventStore::import_school`]):
/// the first line must be the manifest; the lines are parsed on a thread of their own and sent
/// in batches of [`IMPORT_BATCH`] events while the store verifies and loads them in one
/// transaction. `keys` are the school's subject keys (from its bundle); an event sealed for a
/// subject without one is refused. `read` counts the events read, for a progress display.
///
/// # Errors
/// [`StoreError::ImportRefused`] for a file that is not an export (naming its line), a school
/// that exists here, sealed data without its key, or a file that ends before its manifest
/// says; [`StoreError::ChainBroken`] naming the first `school_seq` that does not verify; the
/// store's. Nothing of the school is written then.
pub async fn import<R>(
    store: &dyn EventStore,
    mut reader: R,
    keys: Vec<(PersonId, crate::KeyState)>,
    read: std::sync::Arc<std::sync::atomic::AtomicU64>,
) -> Result<Imported, StoreError>
where
    R: std::io::BufRead + Send + 'static,
{
    let mut first = String::new();
    reader
        .read_line(&mut first)
        .map_err(|e| StoreError::ImportRefused(format!("reading the file: {e}")))?;
    let manifest = read_manifest(&first)?;
    let school = manifest.school;
    if manifest.events == 0 {
        return Err(StoreError::ImportRefused(
            "the export holds no events: there is no school to import".into(),
        ));
    }
    let head = manifest
        .head
        .as_deref()
        .map(|h| {
            Hash::from_hex(h)
                .map_err(|e| StoreError::ImportRefused(format!("the manifest's head: {e}")))
        })
        .transpose()?;
    let known: BTreeSet<PersonId> = keys.iter().map(|(s, _)| *s).collect();
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let attachments = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counted = std::sync::Arc::clone(&attachments);
    let reading = tokio::task::spawn_blocking(move || {
        send_lines(reader, school, &known, &tx, &read, &counted);
    });
    let events = store
        .import_school(school, keys, (manifest.events, head), rx)
        .await;
    // The reader stops once the store stops taking batches.
    reading.await.map_err(StoreError::internal)?;
    Ok(Imported {
        school,
        events: events?,
        head: manifest.head,
        attachments: attachments.load(std::sync::atomic::Ordering::Relaxed),
    })
}

/// The manifest of an export's first line.
///
/// # Errors
/// [`StoreError::ImportRefused`] when the line is not the manifest of an export of this
/// format.
pub fn read_manifest(line: &str) -> Result<Manifest, StoreError> {
    let refused = |why: String| StoreError::ImportRefused(format!("line 1: {why}"));
    let value: Value = serde_json::from_str(line.trim_end())
        .map_err(|e| refused(format!("not a JSON object: {e}")))?;
    if value.get("type").and_then(Value::as_str) != Some(MANIFEST_TYPE) {
        return Err(refused("not an export's manifest".into()));
    }
    let manifest: Manifest = serde_json::from_value(value.get("data").cloned().unwrap_or_default())
        .map_err(|e| refused(format!("the manifest: {e}")))?;
    if manifest.format_version != FORMAT_VERSION {
        return Err(refused(format!(
            "format version {} (this registro reads {FORMAT_VERSION})",
            manifest.format_version
        )));
    }
    if value.get("source").and_then(Value::as_str) != Some(source(manifest.school).as_str()) {
        return Err(refused("the manifest's source is not its school".into()));
    }
    Ok(manifest)
}

/// Reads the lines after the manifest and sends them to the store, in order: the events in
/// batches, then the attachments; a line it cannot read ends the import with
/// [`crate::ImportItem::Failed`]. Blocking: runs on a thread of its own.
fn send_lines<R: std::io::BufRead>(
    reader: R,
    school: SchoolId,
    keys: &BTreeSet<PersonId>,
    tx: &tokio::sync::mpsc::Sender<crate::ImportItem>,
    read: &std::sync::atomic::AtomicU64,
    attachments: &std::sync::atomic::AtomicU64,
) {
    use crate::ImportItem;
    use std::sync::atomic::Ordering;
    let send = |item| tx.blocking_send(item).is_ok();
    let mut batch = Vec::with_capacity(IMPORT_BATCH);
    let mut seen_attachment = false;
    // The attachments the events name, and those the file holds: all of them must arrive.
    let mut named = BTreeSet::new();
    let mut arrived = BTreeSet::new();
    for (n, text_line) in reader.lines().enumerate() {
        let number = n + 2;
        let fail = |why: String| ImportItem::Failed(format!("line {number}: {why}"));
        let text_line = match text_line {
            Ok(t) => t,
            Err(e) => {
                send(fail(format!("reading the file: {e}")));
                return;
            }
        };
        if text_line.trim().is_empty() {
            continue;
        }
        match parse_line(school, &text_line) {
            Err(why) => {
                send(fail(why));
                return;
            }
            Ok(Line::Manifest(_)) => {
                send(fail("a second manifest".into()));
                return;
            }
            Ok(Line::Event(e)) => {
                if seen_attachment {
                    send(fail("an event after the attachments".into()));
                    return;
                }
                if let Some(subject) = crate::seal::sealed_subjects(&e.data)
                    .into_iter()
                    .find(|s| !keys.contains(s))
                {
                    send(fail(format!(
                        "event {} holds data sealed for subject {subject}, whose key is not in \
                         the key bundle (import with the export's key bundle)",
                        e.school_seq
                    )));
                    return;
                }
                named_attachments(&e.data, &mut named);
                batch.push(*e);
                read.fetch_add(1, Ordering::Relaxed);
                if batch.len() == IMPORT_BATCH
                    && !send(ImportItem::Events(std::mem::take(&mut batch)))
                {
                    return;
                }
            }
            Ok(Line::Attachment {
                media_type,
                stored_at,
                content,
            }) => {
                seen_attachment = true;
                if !batch.is_empty() && !send(ImportItem::Events(std::mem::take(&mut batch))) {
                    return;
                }
                attachments.fetch_add(1, Ordering::Relaxed);
                arrived.insert(crate::attachment::content_hash(&content));
                if !send(ImportItem::Attachment {
                    media_type,
                    stored_at,
                    content,
                }) {
                    return;
                }
            }
        }
    }
    if !batch.is_empty() && !send(ImportItem::Events(batch)) {
        return;
    }
    if let Some(missing) = named.difference(&arrived).next() {
        send(ImportItem::Failed(format!(
            "the file ends without attachment {missing}, which its events name: it is truncated"
        )));
    }
}
