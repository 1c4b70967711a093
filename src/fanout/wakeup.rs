//! Wakes idle workers when jobs are queued: one LISTEN connection per process turns
//! every notification into a bump of a shared counter that workers watch.
//!
//! A notification can be lost (the LISTEN connection breaks, or the job was queued by a
//! process whose NOTIFY never arrived); workers therefore also poll slowly on their own,
//! and every (re)connection of the listener counts as a wake-up.

use std::sync::Arc;

use tokio::sync::watch;

use super::backoff;
use crate::store::claims::{FanoutStore, Liveness};

/// Runs until `stop` turns true, bumping `wake` on every notification.
pub async fn run(
    store: Arc<dyn FanoutStore>,
    wake: Arc<watch::Sender<u64>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut failures = 0;
    while !backoff::stopping(&stop) {
        let mut listener = match store.listen().await {
            Ok(l) => l,
            Err(e) => {
                failures += 1;
                let d = backoff::delay(failures);
                tracing::warn!(error = %e, retry_in_ms = d.as_millis() as u64, "cannot listen for fan-out jobs");
                backoff::sleep_unless_stopped(d, &mut stop).await;
                continue;
            }
        };
        if failures > 0 {
            tracing::info!("listening for fan-out jobs again");
        }
        failures = 0;
        // Jobs may have been queued while nobody listened.
        wake.send_modify(|n| *n = n.wrapping_add(1));
        loop {
            let got = tokio::select! {
                got = listener.wait() => got,
                _ = stop.wait_for(|s| *s) => return,
            };
            match got {
                Ok(()) => wake.send_modify(|n| *n = n.wrapping_add(1)),
                Err(e) => {
                    tracing::warn!(error = %e, "fan-out job listener failed; reconnecting");
                    failures += 1;
                    backoff::sleep_unless_stopped(backoff::delay(failures), &mut stop).await;
                    break;
                }
            }
        }
    }
}

/// Runs until `stop` turns true, bumping `wake` whenever another process's liveness
/// session ends: its claims are free at once, and nothing else would tell idle workers
/// before their slow poll.
pub async fn on_sessions_ending(
    mut liveness: Liveness,
    wake: Arc<watch::Sender<u64>>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            () = liveness.another_ended() => {
                tracing::info!("another process's fan-out session ended: looking for its jobs");
                wake.send_modify(|n| *n = n.wrapping_add(1));
            }
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}
