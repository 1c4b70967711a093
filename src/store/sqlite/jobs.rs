//! The in-process wake-up that stands in for PostgreSQL's LISTEN/NOTIFY.
//!
//! An SQLite file serves one pubsubd service ([`super::instance_lock`]), so its jobs are
//! queued by this process, through this store: bumping a counter after each commit
//! that queued jobs reaches every worker that could claim them. (Admin commands run
//! beside the service queue jobs too; nothing wakes the workers for those, and they are
//! found by the fan-out's slow poll, which also covers a lost wake-up.) The counter is a
//! `watch` channel rather than a `Notify`: a listener that is busy when the counter
//! moves sees the change on its next wait, so no wake-up is lost, whatever the number
//! of listeners.

use std::sync::Arc;

use tokio::sync::watch;

use crate::store::StoreError;

/// "Jobs were committed": a counter that moves after every commit that queued jobs.
#[derive(Debug, Clone, Default)]
pub struct JobSignal {
    tx: Arc<watch::Sender<u64>>,
}

impl JobSignal {
    /// A signal nobody listens to yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Wakes every listener. Call only after the commit: before it, a woken worker
    /// would find nothing.
    pub fn jobs_committed(&self) {
        // send_modify updates the value even while no receiver exists.
        self.tx.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A new listener; its first [`JobWaiter::wait`] returns at the next commit.
    pub fn listen(&self) -> JobWaiter {
        JobWaiter {
            rx: self.tx.subscribe(),
        }
    }
}

/// One listener of a [`JobSignal`].
#[derive(Debug)]
pub struct JobWaiter {
    rx: watch::Receiver<u64>,
}

impl JobWaiter {
    /// Resolves once jobs have been committed since the previous call (or since the
    /// listener was made). Several commits in between make one wake-up. Fails only
    /// when the store is gone (nothing will ever be committed again).
    pub async fn wait(&mut self) -> Result<(), StoreError> {
        self.rx
            .changed()
            .await
            .map_err(|_| StoreError::Unavailable("the SQLite store was closed".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_commit_wakes_a_listener_that_was_busy_at_the_time() {
        let signal = JobSignal::new();
        let mut waiter = signal.listen();
        signal.jobs_committed();
        signal.jobs_committed();
        // Both commits happened before the wait: one wake-up, at once.
        tokio::time::timeout(Duration::from_secs(1), waiter.wait())
            .await
            .expect("woken")
            .expect("store open");
        assert!(
            tokio::time::timeout(Duration::from_millis(50), waiter.wait())
                .await
                .is_err(),
            "no commit since: no wake-up"
        );
    }

    #[tokio::test]
    async fn every_listener_is_woken() {
        let signal = JobSignal::new();
        let mut a = signal.listen();
        let mut b = signal.listen();
        signal.jobs_committed();
        for w in [&mut a, &mut b] {
            tokio::time::timeout(Duration::from_secs(1), w.wait())
                .await
                .expect("woken")
                .expect("store open");
        }
    }

    #[tokio::test]
    async fn a_listener_of_a_dropped_store_fails_instead_of_spinning() {
        let signal = JobSignal::new();
        let mut waiter = signal.listen();
        drop(signal);
        assert!(waiter.wait().await.is_err());
    }
}
