//! The read-access log: recording who read which student's data, and reading it back.
//!
//! A read is recorded **before** the data is sent: when the record cannot be written the read
//! is refused (503), so no read of personal data ever goes unrecorded.

use std::sync::Arc;

use registro_domain::access::{self, STUDENT_DATA_READ, StudentDataRead};
use registro_domain::{PersonId, Role, SchoolId};
use registro_store::{
    AppendRequest, CommandMetadata, EventStore, EventType, ExpectedVersion, NewEvent,
    RecordedEvent, StoreError, StreamId,
};
use time::OffsetDateTime;

use crate::cache::{Fold, SchoolStream};

/// One recorded read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessEntry {
    /// The record's place in the school's log.
    pub school_seq: u64,
    /// When the data was read.
    pub at: OffsetDateTime,
    /// Who read it.
    pub actor: Option<PersonId>,
    /// In which role.
    pub role: Role,
    /// Whose data.
    pub students: Vec<PersonId>,
    /// Which view.
    pub view: String,
    /// The request that read it.
    pub request_id: String,
}

/// Entries per shared chunk of an [`AccessLog`].
const CHUNK: usize = 1024;

/// A school's access log. Kept in shared chunks, so that a new entry copies at most one chunk
/// of the snapshot a request may still hold, not the whole log.
#[derive(Debug, Clone, Default)]
pub struct AccessLog {
    chunks: Vec<Arc<Vec<AccessEntry>>>,
}

impl AccessLog {
    fn push(&mut self, entry: AccessEntry) {
        match self.chunks.last_mut() {
            Some(chunk) if chunk.len() < CHUNK => Arc::make_mut(chunk).push(entry),
            _ => self.chunks.push(Arc::new(vec![entry])),
        }
    }

    /// The entries, newest first.
    pub fn newest_first(&self) -> impl Iterator<Item = &AccessEntry> {
        self.chunks.iter().rev().flat_map(|c| c.iter().rev())
    }

    /// How many entries there are.
    #[must_use]
    pub fn len(&self) -> usize {
        self.chunks.iter().map(|c| c.len()).sum()
    }

    /// Whether there is none.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }
}

impl SchoolStream for AccessLog {
    const STREAM: &'static str = access::STREAM;
}

impl Fold for AccessLog {
    fn apply(&mut self, event: &RecordedEvent) -> anyhow::Result<()> {
        anyhow::ensure!(
            event.event_type.as_str() == STUDENT_DATA_READ,
            "unexpected event type {} in the access log",
            event.event_type
        );
        let read: StudentDataRead = serde_json::from_value(event.data.clone())?;
        self.push(AccessEntry {
            school_seq: event.school_seq,
            at: event.occurred_at,
            actor: event.actor_id,
            role: event.actor_role,
            students: read.students,
            view: read.view,
            request_id: read.request_id,
        });
        Ok(())
    }
}

/// Records that `actor`, acting as `role`, read `view` of `students`.
///
/// # Errors
/// [`StoreError`] when the record cannot be written; the read must then be refused.
pub async fn record(
    store: &dyn EventStore,
    school: SchoolId,
    actor: PersonId,
    role: Role,
    students: Vec<PersonId>,
    view: &str,
    request_id: &str,
) -> Result<(), StoreError> {
    if students.is_empty() {
        return Ok(());
    }
    let data = serde_json::to_value(StudentDataRead {
        students,
        view: view.to_owned(),
        request_id: request_id.to_owned(),
    })
    .map_err(|e| StoreError::internal(e.to_string()))?;
    store
        .append(AppendRequest {
            guards: Vec::new(),
            school,
            stream: StreamId::parse(access::STREAM)?,
            expected: ExpectedVersion::Any,
            events: vec![NewEvent::new(
                EventType::parse(STUDENT_DATA_READ)?,
                data,
                OffsetDateTime::now_utc(),
            )],
            metadata: CommandMetadata::by(actor, role),
            idempotency_key: None,
            command_digest: None,
        })
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seq: u64) -> AccessEntry {
        AccessEntry {
            school_seq: seq,
            at: OffsetDateTime::UNIX_EPOCH,
            actor: None,
            role: Role::Teacher,
            students: vec![],
            view: "student.record".into(),
            request_id: String::new(),
        }
    }

    #[test]
    fn entries_come_newest_first_across_chunks_and_old_snapshots_stay_as_they_were() {
        let mut log = AccessLog::default();
        for seq in 1..=2500 {
            log.push(entry(seq));
        }
        let held = log.clone();
        log.push(entry(2501));
        assert_eq!((log.len(), held.len()), (2501, 2500));
        let seqs: Vec<u64> = log.newest_first().map(|e| e.school_seq).collect();
        assert_eq!(seqs.len(), 2501);
        assert!(seqs.windows(2).all(|p| p[0] == p[1] + 1));
        assert_eq!(held.newest_first().next().unwrap().school_seq, 2500);
        // Only the last chunk was copied; the full ones are still shared.
        assert!(Arc::ptr_eq(&log.chunks[0], &held.chunks[0]));
        assert!(!Arc::ptr_eq(&log.chunks[2], &held.chunks[2]));
    }
}
