//! One fan-out worker: claims a batch, serves it, and claims the next; when there is
//! nothing to do it sleeps until woken (or the slow poll comes round); when the database
//! is down it backs off.

use std::sync::Arc;

use tokio::sync::watch;
use tokio::time::Instant;
use tracing::Instrument;

use super::{backoff, batch, Context};
use crate::store::claims::LeaseOwner;

/// Shortest time between two claims of idle workers, across all of the process's
/// workers. Every publish wakes the idle workers, and a busy node's jobs can only go to
/// the worker holding it, so without a gap a firehose would have every idle worker
/// answer each publish with a claim query that finds nothing.
///
/// The gap is what a small node's job queued beside a firehose may wait, while some
/// worker is idle, before the next idle claim starts. Each worker used to wait 50 ms
/// after its own empty claim (up to 50 ms, about 12 on average with three idle workers,
/// against pubsubd's whole publish→notification time of 18 ms at the median during a
/// firehose on ejabberd, read off the component link); turns 10 ms apart across the
/// workers bound the wait to 10 ms and the idle claims to 100 a second, whatever the
/// number of workers. The measured median did not move (17 ms): the claim's own round
/// trips on a busy machine are most of it.
const IDLE_CLAIM_GAP: std::time::Duration = std::time::Duration::from_millis(10);

/// Spaces the claims of idle workers by [`IDLE_CLAIM_GAP`], across the workers that
/// share it: each takes its turn, the first one at once.
#[derive(Debug)]
pub struct IdleClaims {
    next: tokio::sync::Mutex<Instant>,
}

impl Default for IdleClaims {
    fn default() -> IdleClaims {
        IdleClaims {
            next: tokio::sync::Mutex::new(Instant::now()),
        }
    }
}

impl IdleClaims {
    /// Waits for this worker's turn to claim. Turns are [`IDLE_CLAIM_GAP`] apart; a
    /// worker that comes when none was taken for longer goes at once.
    async fn turn(&self) {
        let mut next = self.next.lock().await;
        tokio::time::sleep_until(*next).await;
        *next = Instant::now() + IDLE_CLAIM_GAP;
    }
}

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
                metrics::histogram!(crate::metrics::CLAIM_SECONDS).record(asked.elapsed());
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
                let listener_gone = tokio::select! {
                    changed = wake.changed() => changed.is_err(),
                    _ = tokio::time::sleep(ctx.settings.poll) => false,
                    _ = stop.wait_for(|s| *s) => return,
                };
                if listener_gone {
                    // No wake-ups any more: only the poll is left.
                    backoff::sleep_unless_stopped(ctx.settings.poll, &mut stop).await;
                }
                ctx.idle_claims.turn().await;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn idle_workers_take_turns_a_gap_apart_and_the_first_at_once() {
        let claims = Arc::new(IdleClaims::default());
        let t0 = Instant::now();
        claims.turn().await;
        assert!(
            t0.elapsed() < IDLE_CLAIM_GAP,
            "a worker that finds no recent claim goes at once"
        );
        let turns: Vec<_> = (0..3)
            .map(|_| {
                let claims = claims.clone();
                tokio::spawn(async move {
                    claims.turn().await;
                    Instant::now()
                })
            })
            .collect();
        let mut at = Vec::new();
        for turn in turns {
            at.push(turn.await.expect("turn") - t0);
        }
        at.sort();
        for (n, at) in at.iter().enumerate() {
            assert!(
                *at >= IDLE_CLAIM_GAP * (n as u32 + 1),
                "turn {n} came {at:?} after the first: the gap is across all workers"
            );
        }
    }
}
