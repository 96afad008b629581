//! Test support, behind the `testing` feature: an append held open before its commit, for the
//! delayed-commit conformance case. Never compiled into the binary.

use async_trait::async_trait;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::envelope::{AppendOutcome, AppendRequest};
use crate::error::StoreError;

/// The adapter's side of a held append: signal when the rows are in, then wait for release.
#[derive(Debug)]
pub struct Gate {
    pub(crate) appended: oneshot::Sender<()>,
    pub(crate) release: oneshot::Receiver<()>,
}

/// An append whose transaction has inserted its rows but not committed.
#[derive(Debug)]
pub struct HeldAppend {
    appended: Option<oneshot::Receiver<()>>,
    release: oneshot::Sender<()>,
    task: JoinHandle<Result<AppendOutcome, StoreError>>,
}

impl HeldAppend {
    /// Starts `run` with a gate.
    pub(crate) fn start<F>(run: impl FnOnce(Gate) -> F) -> Self
    where
        F: Future<Output = Result<AppendOutcome, StoreError>> + Send + 'static,
    {
        let (appended_tx, appended_rx) = oneshot::channel();
        let (release_tx, release_rx) = oneshot::channel();
        let task = tokio::spawn(run(Gate {
            appended: appended_tx,
            release: release_rx,
        }));
        Self {
            appended: Some(appended_rx),
            release: release_tx,
            task,
        }
    }

    /// Waits until the rows are inserted (and the school's lock held), uncommitted.
    ///
    /// # Panics
    /// If the append failed before inserting.
    pub async fn wait_appended(&mut self) {
        if let Some(rx) = self.appended.take() {
            assert!(
                rx.await.is_ok(),
                "the held append failed before inserting its rows"
            );
        }
    }

    /// Cancels the append half-way, as a dropped request future or an aborted task does, and
    /// waits until it is gone.
    pub async fn abort(self) {
        self.task.abort();
        let _ = self.task.await;
    }

    /// Lets the transaction commit and returns the append's outcome.
    ///
    /// # Errors
    /// The append's error.
    ///
    /// # Panics
    /// If the append task panicked.
    pub async fn commit(self) -> Result<AppendOutcome, StoreError> {
        let _ = self.release.send(());
        self.task.await.expect("held append task panicked")
    }
}

/// Adapters that can hold an append open before its commit.
#[async_trait]
pub trait HoldAppends {
    /// Appends in a transaction that stays open until [`HeldAppend::commit`].
    async fn append_held(&self, request: AppendRequest) -> HeldAppend;
}

/// The PostgreSQL adapter's subscription query, for the case that checks its plan.
#[must_use]
pub fn subscription_sql() -> String {
    crate::postgres::subscription_sql()
}
