//! One fan-out worker: claims a batch, serves it, and claims the next; when there is
//! nothing to do it sleeps until woken (or the slow poll comes round); when the database
//! is down it backs off.

use std::sync::Arc;

use tokio::sync::watch;
use tokio::time::Instant;
use tracing::Instrument;

use super::{backoff, batch, Context};
use crate::store::claims::LeaseOwner;

/// Shortest time between two claims of an idle worker. A burst of publishes sends one
/// notification per job; without this gap every idle worker would answer each one with
/// a claim query, although a busy node's jobs can only go to the worker holding it.
const IDLE_CLAIM_GAP: std::time::Duration = std::time::Duration::from_millis(50);

/// Runs worker `index` until `stop` turns true.
pub async fn run(
    ctx: Arc<Context>,
    index: usize,
    mut wake: watch::Receiver<u64>,
    mut stop: watch::Receiver<bool>,
) {
    let owner = LeaseOwner::for_worker(ctx.process, index);
    let mut failures = 0;
    while !backoff::stopping(&stop) {
        wake.borrow_and_update();
        // Before the claim is sent: its lease runs a full period from then at least.
        let asked = Instant::now();
        let claimed = ctx
            .store
            .claim_batches(owner, ctx.settings.lease, ctx.settings.limits)
            .await;
        match claimed {
            Ok(batches) if !batches.is_empty() => {
                failures = 0;
                let b = &batches[0];
                let span = tracing::info_span!(
                    "fanout",
                    worker = index,
                    job = b.jobs.first().map_or(0, |j| j.id),
                    last_job = b.jobs.last().map_or(0, |j| j.id),
                    jobs = b.jobs.len(),
                    node = b.node_pk,
                    node_name = b.node_name.as_deref().unwrap_or(""),
                    nodes = batches.len(),
                );
                batch::serve_claim(&ctx, owner, &batches, asked, &stop)
                    .instrument(span)
                    .await;
            }
            Ok(_) => {
                failures = 0;
                let idle_since = Instant::now();
                let listener_gone = tokio::select! {
                    changed = wake.changed() => changed.is_err(),
                    _ = tokio::time::sleep(ctx.settings.poll) => false,
                    _ = stop.wait_for(|s| *s) => return,
                };
                if listener_gone {
                    // No wake-ups any more: only the poll is left.
                    backoff::sleep_unless_stopped(ctx.settings.poll, &mut stop).await;
                }
                tokio::time::sleep_until(idle_since + IDLE_CLAIM_GAP).await;
            }
            Err(e) => {
                failures += 1;
                let d = backoff::delay(failures);
                tracing::warn!(worker = index, error = %e, retry_in_ms = d.as_millis() as u64, "cannot claim fan-out jobs");
                backoff::sleep_unless_stopped(d, &mut stop).await;
            }
        }
    }
}
