//! Retention: deletes items older than their node's `pubsub#item_expire`, in the
//! background, in small batches so that publishes and fan-out never queue behind it;
//! and folds the item count changes that publishes and deletions leave
//! (`ServiceStore::fold_item_counts`), so that a node's count stays a short sum.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::store::Store;

/// How often retention looks for expired items. Expiry is a storage promise, not a
/// real-time one: a minute late is fine, and the query is cheap when nothing expired.
const SWEEP_INTERVAL: Duration = Duration::from_secs(60);
/// Items deleted per transaction: short transactions, short locks.
const BATCH: u32 = 1000;
/// Pause between batches while a backlog is being worked off, so retention yields the
/// database to live traffic.
const BATCH_PAUSE: Duration = Duration::from_millis(50);
/// How often item count changes are folded into the nodes' rows. A node's count adds
/// up the changes since: at a thousand publishing statements a second to one node,
/// about a thousand index entries, well under a millisecond.
const FOLD_INTERVAL: Duration = Duration::from_secs(1);
/// Nodes whose changes are folded per statement.
const FOLD_BATCH: u32 = 10_000;

/// Runs until shutdown: the expiry sweeps and the folds, each in a loop of its own, so
/// that an expiry backlog does not hold up the folds (nor a backlog of changes the
/// sweeps). Both stop at shutdown, between batches; a batch in flight gets
/// [`BATCH_GRACE`] to end ([`batch`]).
pub async fn run(store: Arc<dyn Store>, shutdown: CancellationToken) {
    tokio::join!(
        expire(store.as_ref(), &shutdown),
        fold_counts(store.as_ref(), &shutdown)
    );
}

/// Deletes expired items every [`SWEEP_INTERVAL`], in batches, until shutdown.
async fn expire(store: &dyn Store, shutdown: &CancellationToken) {
    let mut tick = tokio::time::interval(SWEEP_INTERVAL);
    while shutdown.run_until_cancelled(tick.tick()).await.is_some() {
        let mut total = 0u64;
        let stopped = loop {
            let (result, stopping) = batch(shutdown, store.expire_items(BATCH)).await;
            match result {
                None => break true,
                Some(Ok(n)) => {
                    total += n;
                    if stopping {
                        break true;
                    }
                    if n < u64::from(BATCH) {
                        break false;
                    }
                    if pause(shutdown).await.is_none() {
                        break true;
                    }
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "retention sweep failed; will retry");
                    break stopping;
                }
            }
        };
        if total > 0 {
            tracing::info!(expired = total, "expired items deleted");
        }
        if stopped {
            return;
        }
    }
}

/// Folds item count changes every [`FOLD_INTERVAL`], until fewer than a batch of
/// nodes are left, until shutdown.
async fn fold_counts(store: &dyn Store, shutdown: &CancellationToken) {
    let mut tick = tokio::time::interval(FOLD_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while shutdown.run_until_cancelled(tick.tick()).await.is_some() {
        loop {
            let (result, stopping) = batch(shutdown, store.fold_item_counts(FOLD_BATCH)).await;
            if stopping {
                if let Some(Err(e)) = result {
                    tracing::warn!(error = %e, "folding item counts failed at shutdown");
                }
                return;
            }
            match result {
                None => return,
                Some(Ok(n)) if n < u64::from(FOLD_BATCH) => break,
                Some(Ok(_)) => {
                    if pause(shutdown).await.is_none() {
                        return;
                    }
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "folding item counts failed; will retry");
                    break;
                }
            }
        }
    }
}

/// How long a batch in flight at shutdown may go on.
const BATCH_GRACE: Duration = Duration::from_secs(1);

/// Runs one batch, and says whether shutdown came meanwhile. A batch in flight at
/// shutdown gets [`BATCH_GRACE`] to end rather than being dropped at once: a statement
/// already sent runs to its commit on the server even when its future is dropped, so a
/// dropped batch could still delete after the sweep had returned (seen in
/// `retention::counts_are_folded_during_an_expiry_backlog_and_both_stop_at_shutdown`:
/// 1,000 items gone after). `None` if the grace ran out (the database is away).
async fn batch<T>(
    shutdown: &CancellationToken,
    work: impl std::future::Future<Output = T>,
) -> (Option<T>, bool) {
    tokio::pin!(work);
    tokio::select! {
        biased;
        done = &mut work => (Some(done), shutdown.is_cancelled()),
        _ = shutdown.cancelled() => (tokio::time::timeout(BATCH_GRACE, work).await.ok(), true),
    }
}

/// The pause between two batches of a backlog; `None` at shutdown.
async fn pause(shutdown: &CancellationToken) -> Option<()> {
    shutdown
        .run_until_cancelled(tokio::time::sleep(BATCH_PAUSE))
        .await
}
