//! Following the log: [`Subscription`] turns [`EventStore::read_all`] into a stream of batches
//! that waits for new events, woken by the store's hint (LISTEN/NOTIFY on PostgreSQL, an
//! in-process signal on SQLite) and polling as the fallback.
//!
//! Why the order is safe: see `docs/decisions/0003-subscription-fence.md`. On PostgreSQL an
//! identity column becomes visible at commit, not at insert, so "everything after the last id
//! I saw" can skip a transaction that committed late. Rows carry the appending transaction's
//! id (xid8) and readers see only rows of transactions older than every transaction still
//! running (`tx < pg_snapshot_xmin(pg_current_snapshot())`), in `(tx, id)` order.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::EventStore;
use crate::envelope::{Position, RecordedEvent};
use crate::error::StoreError;

/// A reader of the global log from a checkpoint.
#[derive(Debug)]
pub struct Subscription {
    store: Arc<dyn EventStore>,
    position: Position,
    batch: usize,
    poll: Duration,
    wake: watch::Receiver<u64>,
}

impl Subscription {
    /// Follows `store` from `after` (exclusive), `batch` events at a time, polling every `poll`
    /// when no wake-up hint comes.
    #[must_use]
    pub fn new(store: Arc<dyn EventStore>, after: Position, batch: usize, poll: Duration) -> Self {
        let wake = store.wake_signal();
        Self {
            store,
            position: after,
            batch,
            poll,
            wake,
        }
    }

    /// The position of the last event delivered.
    #[must_use]
    pub fn position(&self) -> Position {
        self.position
    }

    /// The next events, waiting for at least one. Never skips or repeats an event.
    ///
    /// # Errors
    /// Storage failures; the position does not move, so calling again resumes.
    pub async fn next_batch(&mut self) -> Result<Vec<RecordedEvent>, StoreError> {
        loop {
            // Mark the current hint as seen before reading, so that a commit between the read
            // and the wait still wakes us.
            self.wake.borrow_and_update();
            if let Some(batch) = self.try_next_batch().await? {
                return Ok(batch);
            }
            // A closed channel only means no more hints: keep polling.
            let _ = tokio::time::timeout(self.poll, self.wake.changed()).await;
        }
    }

    /// The next events if there are any now, without waiting.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn try_next_batch(&mut self) -> Result<Option<Vec<RecordedEvent>>, StoreError> {
        let batch = self.store.read_all(self.position, self.batch).await?;
        match batch.last() {
            Some(last) => {
                self.position = last.position;
                Ok(Some(batch))
            }
            None => Ok(None),
        }
    }
}
