//! The school directory on the write side: commands are decided against the current directory
//! and appended to its stream with the expected version, so that two concurrent commands can
//! never both pass a check that only one of them may (a fiscal code registered twice).

use std::sync::Arc;

use registro_domain::SchoolId;
use registro_domain::directory::{
    self, Directory, DirectoryCommand, DirectoryError, DirectoryEvent,
};
use registro_store::{
    AppendOutcome, AppendRequest, CommandMetadata, EventStore, EventType, ExpectedVersion,
    IdempotencyKey, NewEvent, RecordedEvent, StoreError, StreamId, command_fingerprint,
};
use sha2::{Digest as _, Sha256};
use time::OffsetDateTime;

use crate::cache::{Fold, SchoolCache, Snapshot};
use crate::error::ApiError;

impl Fold for Directory {
    const STREAM: &'static str = directory::STREAM;

    fn apply(&mut self, event: &RecordedEvent) -> anyhow::Result<()> {
        let e = DirectoryEvent::from_stored(event.event_type.as_str(), &event.data)?;
        directory::evolve(self, &e);
        Ok(())
    }
}

/// How many times a command is decided again when another write moved the stream first.
const ATTEMPTS: usize = 3;

/// Why a directory command failed.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The domain refused it.
    #[error(transparent)]
    Refused(#[from] DirectoryError),
    /// The store failed (or refused a reused idempotency key).
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<CommandError> for ApiError {
    fn from(e: CommandError) -> Self {
        match e {
            CommandError::Store(StoreError::Conflict { .. }) => ApiError::Conflict(
                "La scuola è stata modificata da altre richieste nello stesso momento: riprova."
                    .into(),
            ),
            CommandError::Store(e) => e.into(),
            CommandError::Refused(e) => {
                use DirectoryError as D;
                let detail = e.to_string();
                match e {
                    D::UnknownPerson(_) | D::UnknownClass(_) => ApiError::NotFoundDetail(detail),
                    D::FiscalCodeTaken { .. }
                    | D::AlreadyRegistered
                    | D::RoleHeld
                    | D::RoleNotHeld
                    | D::AlreadyLinked
                    | D::NotLinked
                    | D::ClassExists
                    | D::ClassNameTaken
                    | D::AlreadyAssigned
                    | D::AlreadyEnrolled => ApiError::Conflict(detail),
                    D::BadName
                    | D::NotAPersonRole
                    | D::NotGuardianAndStudent
                    | D::NotATeacher
                    | D::NotAStudent
                    | D::Calendar(_) => ApiError::Unprocessable(detail),
                }
            }
        }
    }
}

/// Decides `command` against the school's current directory and appends its events.
///
/// With an idempotency key, a retry of the same command by the same person returns the first
/// outcome (`replayed`), even though deciding again would now be refused (the person is
/// registered by then); the same key with another command is refused.
///
/// # Errors
/// [`CommandError::Refused`] when the domain refuses; [`CommandError::Store`] otherwise.
pub async fn execute(
    store: &dyn EventStore,
    cache: &SchoolCache<Directory>,
    school: SchoolId,
    metadata: CommandMetadata,
    command: &DirectoryCommand,
    key: Option<IdempotencyKey>,
) -> Result<AppendOutcome, CommandError> {
    let stream = stream();
    let digest: [u8; 32] = Sha256::digest(
        serde_json::to_vec(command).map_err(|e| StoreError::internal(e.to_string()))?,
    )
    .into();
    let fingerprint = command_fingerprint(&stream, &metadata, &digest);
    let replay = async || match &key {
        Some(key) => store.replay_of(school, key, &fingerprint).await,
        None => Ok(None),
    };
    if let Some(outcome) = replay().await? {
        return Ok(outcome);
    }
    let result = decide_and_append(
        store,
        cache,
        school,
        &metadata,
        command,
        key.as_ref(),
        digest,
    )
    .await;
    // A retry that raced its first attempt: the first may have committed while this one decided
    // against the state before it, and been refused or lost the race. Its outcome is the answer.
    if matches!(
        result,
        Err(CommandError::Refused(_) | CommandError::Store(StoreError::Conflict { .. }))
    ) && let Some(outcome) = replay().await?
    {
        return Ok(outcome);
    }
    result
}

/// Decides and appends, deciding again (up to [`ATTEMPTS`] times) when another write moved the
/// stream first.
async fn decide_and_append(
    store: &dyn EventStore,
    cache: &SchoolCache<Directory>,
    school: SchoolId,
    metadata: &CommandMetadata,
    command: &DirectoryCommand,
    key: Option<&IdempotencyKey>,
    digest: [u8; 32],
) -> Result<AppendOutcome, CommandError> {
    let stream = stream();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let Snapshot { version, state } = cache.current(store, school).await?;
        let events = directory::decide(&state, command)?;
        let now = OffsetDateTime::now_utc();
        let events = events
            .iter()
            .map(|e| {
                Ok(NewEvent::new(
                    EventType::parse(e.type_name())?,
                    e.data(),
                    now,
                ))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let request = AppendRequest {
            school,
            stream: stream.clone(),
            expected: if version == 0 {
                ExpectedVersion::NoStream
            } else {
                ExpectedVersion::Exact(version)
            },
            events,
            metadata: metadata.clone(),
            idempotency_key: key.cloned(),
            command_digest: Some(digest),
        };
        match store.append(request).await {
            Err(StoreError::Conflict { .. }) if attempt < ATTEMPTS => {}
            result => return Ok(result?),
        }
    }
}

/// Runs a command as the software itself (the `registro person add` command, the demo school,
/// tests), with a cache of its own.
///
/// # Errors
/// As [`execute`].
pub async fn execute_as_system(
    store: &dyn EventStore,
    school: SchoolId,
    command: &DirectoryCommand,
) -> Result<AppendOutcome, CommandError> {
    let cache = SchoolCache::default();
    execute(
        store,
        &cache,
        school,
        CommandMetadata::system(),
        command,
        None,
    )
    .await
}

/// The school's directory as it is now (for the command line and tests).
///
/// # Errors
/// As [`SchoolCache::current`].
pub async fn load(store: &dyn EventStore, school: SchoolId) -> Result<Arc<Directory>, StoreError> {
    Ok(SchoolCache::<Directory>::default()
        .current(store, school)
        .await?
        .state)
}

fn stream() -> StreamId {
    #[allow(clippy::expect_used)] // a constant, checked by the tests
    StreamId::parse(directory::STREAM).expect("a valid stream name")
}
