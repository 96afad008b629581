//! The store's error contract.
//!
//! A rejection that the caller can act on ([`StoreError::Conflict`],
//! [`StoreError::IdempotencyMismatch`], [`StoreError::InvalidEvent`],
//! [`StoreError::InvalidAttachment`], [`StoreError::SubjectErased`]) is never confused with an
//! infrastructure failure ([`StoreError::Unavailable`], [`StoreError::Internal`]).

use registro_domain::{PersonId, SchoolId};

use crate::envelope::{ExpectedVersion, StreamId};

/// Everything an [`crate::EventStore`] call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The stream was not at the expected version: somebody else appended first. Nothing was
    /// written. The caller reloads and decides again (HTTP 409).
    ///
    /// From [`crate::EventStore::commit_projection`]: the projection's checkpoint had moved
    /// (another instance committed first). `stream` is then `projection:<name>` and the versions
    /// are the event ids of the positions; the caller reads the checkpoint again.
    #[error("stream {stream} was expected at {expected} but is at version {actual}")]
    Conflict {
        /// The stream appended to.
        stream: StreamId,
        /// What the caller expected.
        expected: ExpectedVersion,
        /// The version the stream actually has.
        actual: u64,
    },
    /// The idempotency key was already used for a different request. Nothing was written
    /// (HTTP 422).
    #[error("idempotency key {key:?} was already used for a different request")]
    IdempotencyMismatch {
        /// The reused key.
        key: String,
    },
    /// The events cannot be stored as given (empty batch, malformed type name, data that is not
    /// canonicalisable JSON, a sealed-field pointer that points nowhere...). Nothing was written
    /// (HTTP 422).
    #[error("invalid event: {0}")]
    InvalidEvent(String),
    /// The attachment cannot be stored as given: its media type is empty or longer than
    /// [`crate::MAX_MEDIA_TYPE_CHARS`] characters. Nothing was written (HTTP 422). (Size limits
    /// and allowed types are the caller's to enforce, before storing.)
    #[error("invalid attachment: {0}")]
    InvalidAttachment(String),
    /// Sealed data was given for a data subject whose key was destroyed (erased at the end of
    /// retention). Nothing was written (HTTP 409).
    #[error("the sealed data of subject {subject} in school {school} was erased")]
    SubjectErased {
        /// The school.
        school: SchoolId,
        /// The data subject.
        subject: PersonId,
    },
    /// An imported log does not verify at `school_seq` (a changed byte, a missing or repeated
    /// event, a broken link): nothing of the school was written.
    #[error("the imported log does not verify at school_seq {school_seq}: {reason}")]
    ChainBroken {
        /// The first position that does not verify.
        school_seq: u64,
        /// What is wrong there.
        reason: String,
    },
    /// An import cannot be done as asked (the school has events here already, the file is not
    /// an export of it, or ends before its manifest says): nothing of the school was written.
    #[error("import refused: {0}")]
    ImportRefused(String),
    /// The database could not be reached or did not answer in time. Nothing was written, or, if
    /// the failure struck during commit, the caller cannot know: it retries with the same
    /// idempotency key (HTTP 503).
    #[error("the event store is unavailable: {0}")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The schema is not what this binary expects: an applied migration was edited, or the
    /// database was migrated by a newer version. The service must not start.
    #[error("migration check failed: {0}")]
    Migration(String),
    /// Anything else: a bug, or stored data this binary cannot read (HTTP 500, cause logged).
    #[error("internal event store error: {0}")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl StoreError {
    /// Wraps any error as [`StoreError::Internal`].
    pub fn internal(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Internal(e.into())
    }

    /// Wraps any error as [`StoreError::Unavailable`].
    pub fn unavailable(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Unavailable(e.into())
    }

    /// True for failures that a retry (with the same idempotency key) may cure.
    #[must_use]
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}
