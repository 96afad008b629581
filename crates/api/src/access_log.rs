//! The read-access log: recording who read which student's data, and reading it back.
//!
//! A read is recorded **before** the data is sent: when the record cannot be written the read
//! is refused (503), so no read of personal data ever goes unrecorded.

use registro_domain::access::{self, STUDENT_DATA_READ, StudentDataRead};
use registro_domain::{PersonId, Role, SchoolId};
use registro_store::{
    AppendRequest, CommandMetadata, EventStore, EventType, ExpectedVersion, NewEvent,
    RecordedEvent, StoreError, StreamId,
};
use time::OffsetDateTime;

use crate::cache::Fold;

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

/// A school's access log, oldest first.
#[derive(Debug, Clone, Default)]
pub struct AccessLog {
    /// The entries, in `school_seq` order.
    pub entries: Vec<AccessEntry>,
}

impl Fold for AccessLog {
    const STREAM: &'static str = access::STREAM;

    fn apply(&mut self, event: &RecordedEvent) -> anyhow::Result<()> {
        anyhow::ensure!(
            event.event_type.as_str() == STUDENT_DATA_READ,
            "unexpected event type {} in the access log",
            event.event_type
        );
        let read: StudentDataRead = serde_json::from_value(event.data.clone())?;
        self.entries.push(AccessEntry {
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
