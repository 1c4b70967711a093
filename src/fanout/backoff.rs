//! Waiting out a database that is down: exponential backoff with jitter, and a retry
//! loop that gives up only when the engine is told to stop.
//!
//! Nothing is lost while the database is away: jobs stay in their table, the cursor
//! stays where it was, and a worker simply tries again.

use std::future::Future;
use std::time::Duration;

use rand::Rng;
use tokio::sync::watch;

use crate::store::StoreError;

/// First retry delay: a connection blip is usually over this fast.
const BASE: Duration = Duration::from_millis(250);
/// Longest delay, so the engine notices soon after a long outage ends.
const MAX: Duration = Duration::from_secs(10);

/// The delay before retry number `attempt` (1 = the first retry): doubling from
/// [`BASE`] up to [`MAX`], half of it random so several workers and processes do not
/// retry in lockstep.
pub fn delay(attempt: u32) -> Duration {
    let exp = BASE.saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
    let capped = exp.min(MAX);
    let half = capped / 2;
    half + rand::thread_rng().gen_range(Duration::ZERO..=half)
}

/// Whether stopping has been requested (a dropped sender counts as a request).
pub fn stopping(stop: &watch::Receiver<bool>) -> bool {
    *stop.borrow() || stop.has_changed().is_err()
}

/// Sleeps for `d` unless told to stop first; `false` if stopping.
pub async fn sleep_unless_stopped(d: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    if stopping(stop) {
        return false;
    }
    let slept = tokio::select! {
        _ = tokio::time::sleep(d) => true,
        _ = stop.wait_for(|s| *s) => false,
    };
    slept && !stopping(stop)
}

/// Runs `op` until it succeeds, backing off after each store error; `None` if told to
/// stop while failing (a first attempt is always made).
pub async fn retry<T, F, Fut>(
    what: &'static str,
    stop: &mut watch::Receiver<bool>,
    mut op: F,
) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    let mut attempt = 0;
    loop {
        match op().await {
            Ok(v) => return Some(v),
            Err(e) => {
                attempt += 1;
                let d = delay(attempt);
                tracing::warn!(error = %e, attempt, retry_in_ms = d.as_millis() as u64, "fan-out cannot {what}");
                if !sleep_unless_stopped(d, stop).await {
                    return None;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_are_capped() {
        assert!(delay(1) <= BASE);
        assert!(delay(1) >= BASE / 2);
        for attempt in 1..50 {
            assert!(delay(attempt) <= MAX);
        }
        assert!(delay(20) >= MAX / 2);
    }

    #[tokio::test]
    async fn retry_gives_up_only_when_stopping() {
        let (tx, mut rx) = watch::channel(false);
        let mut calls = 0;
        let got = retry("test", &mut rx, || {
            calls += 1;
            let n = calls;
            async move {
                if n < 2 {
                    Err(StoreError::Unavailable("down".into()))
                } else {
                    Ok(n)
                }
            }
        })
        .await;
        assert_eq!(got, Some(2));
        tx.send(true).expect("receiver alive");
        let got: Option<()> = retry("test", &mut rx, || async {
            Err(StoreError::Unavailable("down".into()))
        })
        .await;
        assert_eq!(got, None);
    }
}
