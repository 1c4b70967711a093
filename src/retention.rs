//! Retention: deletes items older than their node's `pubsub#item_expire`, in the
//! background, in small batches so that publishes and fan-out never queue behind it.

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

/// Runs until shutdown.
pub async fn run(store: Arc<dyn Store>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(SWEEP_INTERVAL);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
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
