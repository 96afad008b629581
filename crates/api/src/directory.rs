//! The school directory on the write side: commands are decided against the current directory
//! and appended to its stream with the expected version, so that two concurrent commands can
//! never both pass a check that only one of them may (a fiscal code registered twice).

use std::sync::Arc;

use registro_domain::directory::{
    self, Directory, DirectoryCommand, DirectoryError, DirectoryEvent,
};
use registro_domain::{SchoolId, StoredEvent as _};
use registro_store::{
    AppendOutcome, CommandMetadata, EventStore, IdempotencyKey, RecordedEvent, StoreError, StreamId,
};

use crate::cache::{Fold, SchoolCache, SchoolStream, Snapshot};
use crate::command::{self, Decision, new_events};
use crate::error::ApiError;

impl SchoolStream for Directory {
    const STREAM: &'static str = directory::STREAM;
}

impl Fold for Directory {
    fn apply(&mut self, event: &RecordedEvent) -> anyhow::Result<()> {
        let e = DirectoryEvent::from_stored(event.event_type.as_str(), &event.data)?;
        directory::evolve(self, &e);
        Ok(())
    }
}

/// Why a directory command failed.
pub type CommandError = command::CommandError<DirectoryError>;

impl From<CommandError> for ApiError {
    fn from(e: CommandError) -> Self {
        match e {
            CommandError::Store(StoreError::Conflict { .. }) => ApiError::Conflict(
                "La scuola è stata modificata da altre richieste nello stesso momento: riprova."
                    .into(),
            ),
            CommandError::Store(e) => e.into(),
            CommandError::Refused(DirectoryError::BadRows(rows)) => ApiError::BadLines(
                rows.into_iter()
                    .map(|r| crate::error::LineError {
                        line: r.line,
                        reason: r.reason,
                    })
                    .collect(),
            ),
            CommandError::Refused(e) => {
                use DirectoryError as D;
                let detail = e.to_string();
                match e {
                    D::BadRows(_) => ApiError::Unprocessable(detail),
                    D::UnknownPerson(_) | D::UnknownClass(_) => ApiError::NotFoundDetail(detail),
                    D::UnknownClassName => ApiError::Unprocessable(detail),
                    D::FiscalCodeTaken { .. }
                    | D::AlreadyRegistered
                    | D::RoleHeld
                    | D::RoleNotHeld
                    | D::AlreadyLinked
                    | D::NotLinked
                    | D::ClassExists
                    | D::ClassNameTaken
                    | D::AlreadyAssigned
                    | D::AlreadyEnrolled
                    | D::AlreadyExempt
                    | D::NotExempt
                    | D::NotEnrolled
                    | D::SameClass
                    | D::SubjectExists => ApiError::Conflict(detail),
                    D::NotTheClassTeacher | D::Reason => ApiError::Unprocessable(detail),
                    D::BadName
                    | D::NotAPersonRole
                    | D::NotGuardianAndStudent
                    | D::NotATeacher
                    | D::NotAStudent
                    | D::Calendar(_)
                    | D::Timetable(_)
                    | D::BadDueDays
                    | D::BadMaxSubjects
                    | D::BadRetention
                    | D::UnknownSubject(_) => ApiError::Unprocessable(detail),
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
    let decide = move || async move {
        let Snapshot { version, state } = cache.current(store, school).await?;
        let events = directory::decide(&state, command).map_err(CommandError::Refused)?;
        Ok(Decision {
            version,
            guards: Vec::new(),
            events: new_events(events.iter().map(|e| (e.type_name(), e.data())))?,
        })
    };
    command::execute(store, school, &stream(), metadata, command, key, decide).await
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

/// The directory stream at `version`, for a decision on another stream that read it.
pub(crate) fn guard(version: u64) -> registro_store::StreamGuard {
    registro_store::StreamGuard {
        stream: stream(),
        version,
    }
}

fn stream() -> StreamId {
    #[allow(clippy::expect_used)] // a constant, checked by the tests
    StreamId::parse(directory::STREAM).expect("a valid stream name")
}
