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

/// Runs until shutdown.
pub async fn run(store: Arc<dyn Store>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(SWEEP_INTERVAL);
    let mut fold = tokio::time::interval(FOLD_INTERVAL);
    fold.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = fold.tick() => {
                fold_counts(store.as_ref()).await;
                continue;
            }
            _ = tick.tick() => {}
        }
        let mut total = 0u64;
        loop {
            match store.expire_items(BATCH).await {
                Ok(n) => {
                    total += n;
                    if n < u64::from(BATCH) {
                        break;
                    }
                    tokio::time::sleep(BATCH_PAUSE).await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "retention sweep failed; will retry");
                    break;
                }
            }
        }
        if total > 0 {
            tracing::info!(expired = total, "expired items deleted");
        }
    }
}

/// Folds item count changes until fewer than a batch are left.
async fn fold_counts(store: &dyn Store) {
    loop {
        match store.fold_item_counts(FOLD_BATCH).await {
            Ok(n) if n < u64::from(FOLD_BATCH) => return,
            Ok(_) => tokio::time::sleep(BATCH_PAUSE).await,
            Err(e) => {
                tracing::warn!(error = %e, "folding item counts failed; will retry");
                return;
            }
        }
    }
}
