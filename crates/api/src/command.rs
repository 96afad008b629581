//! The command executor every write of the API goes through: a retried command is answered
//! from its first outcome; otherwise the command is decided against the current state of its
//! stream and appended with the version it was decided at, deciding again when another write
//! moved the stream first ([ADR 0013](../../../docs/decisions/0013-command-idempotency.md)).

use registro_domain::SchoolId;
use registro_store::{
    AppendOutcome, AppendRequest, CommandMetadata, EventStore, EventType, ExpectedVersion,
    IdempotencyKey, NewEvent, StoreError, StreamGuard, StreamId, command_fingerprint,
};
use serde::Serialize;
use sha2::{Digest as _, Sha256};
use time::OffsetDateTime;

/// How many times a command is decided when other writes keep moving its stream first.
pub const ATTEMPTS: usize = 3;

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CommandError<E> {
    /// The domain refused it; nothing was written.
    #[error(transparent)]
    Refused(E),
    /// The store failed, or refused (a reused idempotency key, a conflict after every attempt).
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A decision: the stream's version it was made at, the other streams it read with their
/// versions, and the events to append.
#[derive(Debug)]
pub struct Decision {
    /// The stream's version the state was at (0: no events).
    pub version: u64,
    /// The other streams the decision read (the directory, a class's scrutini), at the versions
    /// read: the append is a conflict, decided again, when one has moved.
    pub guards: Vec<StreamGuard>,
    /// The events, possibly none (then nothing is appended).
    pub events: Vec<NewEvent>,
}

/// The events to append, from the domain's (type name, data) pairs, recorded now.
///
/// # Errors
/// [`StoreError::InvalidEvent`] for a type name the store refuses (a bug).
pub fn new_events(
    events: impl IntoIterator<Item = (&'static str, serde_json::Value)>,
) -> Result<Vec<NewEvent>, StoreError> {
    let now = OffsetDateTime::now_utc();
    events
        .into_iter()
        .map(|(name, data)| Ok(NewEvent::new(EventType::parse(name)?, data, now)))
        .collect()
}

/// Runs `command` on `stream`: answers a retry (same `key`, same command, same person) with
/// the first outcome; otherwise `decide`s against the current state and appends, up to
/// [`ATTEMPTS`] times when the stream moves meanwhile.
///
/// # Errors
/// [`CommandError::Refused`] from `decide`; [`CommandError::Store`] otherwise.
pub async fn execute<C, E, F, Fut>(
    store: &dyn EventStore,
    school: SchoolId,
    stream: &StreamId,
    metadata: CommandMetadata,
    command: &C,
    key: Option<IdempotencyKey>,
    mut decide: F,
) -> Result<AppendOutcome, CommandError<E>>
where
    C: Serialize,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Decision, CommandError<E>>>,
{
    let digest: [u8; 32] = Sha256::digest(
        serde_json::to_vec(command).map_err(|e| StoreError::internal(e.to_string()))?,
    )
    .into();
    let fingerprint = command_fingerprint(stream, &metadata, &digest);
    if let Some(outcome) = replay(store, school, key.as_ref(), &fingerprint).await? {
        return Ok(outcome);
    }
    let mut attempt = 0;
    let result = loop {
        attempt += 1;
        let decision = match decide().await {
            Ok(d) => d,
            Err(e) => break Err(e),
        };
        let request = AppendRequest {
            school,
            stream: stream.clone(),
            expected: if decision.version == 0 {
                ExpectedVersion::NoStream
            } else {
                ExpectedVersion::Exact(decision.version)
            },
            guards: decision.guards,
            events: decision.events,
            metadata: metadata.clone(),
            idempotency_key: key.clone(),
            command_digest: Some(digest),
        };
        match store.append(request).await {
            Err(StoreError::Conflict { .. }) if attempt < ATTEMPTS => {}
            result => break result.map_err(CommandError::Store),
        }
    };
    // A retry that raced its first attempt: the first may have committed while this one decided
    // against the state before it, and been refused or lost the race. Its outcome is the answer.
    if matches!(
        result,
        Err(CommandError::Refused(_) | CommandError::Store(StoreError::Conflict { .. }))
    ) && let Some(outcome) = replay(store, school, key.as_ref(), &fingerprint).await?
    {
        return Ok(outcome);
    }
    result
}

/// The stored outcome of an earlier attempt with `key`, if any.
async fn replay(
    store: &dyn EventStore,
    school: SchoolId,
    key: Option<&IdempotencyKey>,
    fingerprint: &[u8; 32],
) -> Result<Option<AppendOutcome>, StoreError> {
    match key {
        Some(key) => store.replay_of(school, key, fingerprint).await,
        None => Ok(None),
    }
}
