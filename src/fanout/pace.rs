//! Pacing a connection's fan-out by time, not by page count.
//!
//! The server routes a component's stanzas in the order they come. Whatever fan-out has
//! handed it and it has not yet routed is a queue that everything else on the stream
//! waits behind: answers to requests, other nodes' notifications, a five-subscriber
//! command bus next to a firehose. On Prosody, two full pages (8,192 notifications) are
//! seconds of that.
//!
//! So each connection keeps what fan-out has queued and the server has not yet confirmed
//! (by a barrier) to about [`TARGET`] of the server's measured routing rate: the
//! *window*. Every page, and every group of small nodes, is admitted into the window
//! before it is queued and leaves it when its barrier is answered; pages are sized to
//! half the window, so two are in flight and the server never waits for a round trip.
//! Admission takes whoever fits first, so a small node's few notifications get in
//! between a firehose's pages instead of after the whole walk.
//!
//! The rate is measured from the barriers themselves: a page of *n* notifications
//! confirmed *t* after the server could start on it (its queueing, or the previous
//! confirmation if that came later) is a sample of *n / t*. A window that is too small
//! for the server measures the round trip rather than the server, and the next window
//! grows by the ratio of [`TARGET`] to that round trip, so it reaches the server's pace
//! within a few pages.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// What a connection's unconfirmed fan-out may amount to, in the server's routing time.
pub const TARGET: Duration = Duration::from_millis(50);

/// The smallest window, in notifications: enough for a few small nodes at once.
const MIN_WINDOW: usize = 64;

/// The largest window: two pages of the engine's largest size, what the engine kept in
/// flight before it paced.
const MAX_WINDOW: usize = 8192;

/// The window before anything has been measured: small enough not to bury a slow server
/// (Prosody routes about 1,500 a second), and it grows within a few pages on a fast one.
const FIRST_WINDOW: usize = 512;

/// How much one full-window sample moves the measured rate.
const SMOOTHING: f64 = 0.5;

/// The pace of one connection, shared by the workers that send on it.
#[derive(Debug)]
pub struct Pace {
    state: Mutex<State>,
    room: Notify,
    /// The connection's number, the `connection` label of its gauges.
    connection: String,
}

#[derive(Debug)]
struct State {
    /// Notifications admitted and not yet confirmed or given back.
    in_flight: usize,
    window: usize,
    /// Measured notifications per second, once sampled.
    rate: Option<f64>,
    last_confirmed: Option<Instant>,
}

impl Default for Pace {
    fn default() -> Self {
        Pace::for_connection(0)
    }
}

impl Pace {
    /// The pace of connection number `index`.
    pub fn for_connection(index: usize) -> Self {
        Pace {
            connection: index.to_string(),
            state: Mutex::new(State {
                in_flight: 0,
                window: FIRST_WINDOW,
                rate: None,
                last_confirmed: None,
            }),
            room: Notify::new(),
        }
    }
}

/// Notifications admitted into a connection's window. Settled with
/// [`Admitted::confirmed`] when the barrier after them is answered; dropped otherwise,
/// which gives the room back without a sample.
#[derive(Debug)]
pub struct Admitted {
    pace: Arc<Pace>,
    n: usize,
    queued_at: Instant,
}

impl Pace {
    /// The current window, in notifications.
    pub fn window(&self) -> usize {
        self.state.lock().map_or(FIRST_WINDOW, |s| s.window)
    }

    /// The measured routing rate, in notifications per second.
    pub fn rate(&self) -> Option<f64> {
        self.state.lock().ok().and_then(|s| s.rate)
    }

    /// Subscriptions per page for a batch of `jobs` jobs: half the window's worth, at
    /// most `largest`.
    pub fn per_page(&self, largest: u32, jobs: usize) -> u32 {
        let half = u32::try_from(self.window() / 2).unwrap_or(u32::MAX);
        let jobs = u32::try_from(jobs.max(1)).unwrap_or(u32::MAX);
        (half / jobs).clamp(1, largest.max(1))
    }

    /// Waits until `n` more notifications fit in the window (or nothing is in flight,
    /// so that a page larger than the window still goes), and admits them.
    pub async fn admit(self: &Arc<Self>, n: usize) -> Admitted {
        loop {
            let room = self.room.notified();
            if let Ok(mut s) = self.state.lock() {
                if s.in_flight == 0 || s.in_flight + n <= s.window {
                    s.in_flight += n;
                    return Admitted {
                        pace: self.clone(),
                        n,
                        queued_at: Instant::now(),
                    };
                }
            } else {
                // A poisoned lock cannot pace: let everything through.
                return Admitted {
                    pace: self.clone(),
                    n: 0,
                    queued_at: Instant::now(),
                };
            }
            room.await;
        }
    }

    fn leave(&self, n: usize, sample: Option<(Instant, Instant)>) {
        if let Ok(mut s) = self.state.lock() {
            s.in_flight = s.in_flight.saturating_sub(n);
            if let Some((queued_at, now)) = sample {
                let start = s.last_confirmed.map_or(queued_at, |t| t.max(queued_at));
                let took = now.saturating_duration_since(start).as_secs_f64().max(1e-4);
                let measured = n as f64 / took;
                let weight = SMOOTHING * (n as f64 / s.window as f64).min(1.0);
                let rate = s.rate.map_or(measured, |r| r + weight * (measured - r));
                s.rate = Some(rate);
                s.window = window_for(rate);
                s.last_confirmed = Some(now);
                let connection = self.connection.clone();
                metrics::gauge!(crate::metrics::FANOUT_WINDOW, "connection" => connection.clone())
                    .set(s.window as f64);
                metrics::gauge!(crate::metrics::FANOUT_ROUTE_RATE, "connection" => connection)
                    .set(rate);
            }
        }
        self.room.notify_waiters();
    }
}

impl Admitted {
    /// How many notifications were admitted.
    pub fn len(&self) -> usize {
        self.n
    }

    /// Whether nothing was admitted.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Admits `actual` instead of the estimate made before the page was read.
    pub fn resize(&mut self, actual: usize) {
        if let Ok(mut s) = self.pace.state.lock() {
            s.in_flight = s.in_flight.saturating_sub(self.n) + actual;
        }
        self.n = actual;
        self.pace.room.notify_waiters();
    }

    /// The barrier after these notifications was answered: they leave the window, and
    /// their time is a sample of the server's rate.
    pub fn confirmed(mut self) {
        let n = std::mem::take(&mut self.n);
        self.pace.leave(n, Some((self.queued_at, Instant::now())));
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        if self.n > 0 {
            self.pace.leave(self.n, None);
        }
    }
}

/// The window for a measured rate: [`TARGET`] of it, within the bounds.
fn window_for(rate: f64) -> usize {
    let window = rate * TARGET.as_secs_f64();
    if window.is_finite() {
        (window as usize).clamp(MIN_WINDOW, MAX_WINDOW)
    } else {
        MAX_WINDOW
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_is_the_target_of_the_rate_within_bounds() {
        assert_eq!(window_for(1_500.0), MIN_WINDOW.max(75));
        assert_eq!(window_for(20_000.0), 1_000);
        assert_eq!(window_for(1e9), MAX_WINDOW);
        assert_eq!(window_for(0.0), MIN_WINDOW);
        assert_eq!(window_for(f64::NAN), MAX_WINDOW);
    }

    #[tokio::test]
    async fn a_page_waits_for_room_and_a_small_one_slips_in() {
        let pace = Arc::new(Pace::default());
        let first = pace.admit(FIRST_WINDOW / 2).await;
        let second = pace.admit(FIRST_WINDOW / 2).await;
        let third = {
            let pace = pace.clone();
            tokio::spawn(async move { pace.admit(FIRST_WINDOW / 2).await })
        };
        tokio::task::yield_now().await;
        assert!(!third.is_finished(), "the window is full");
        drop(first);
        let third = tokio::time::timeout(Duration::from_secs(1), third)
            .await
            .expect("room was given back")
            .expect("joined");
        assert_eq!(third.len(), FIRST_WINDOW / 2);
        drop((second, third));
        let alone = pace.admit(MAX_WINDOW * 4).await;
        assert_eq!(
            alone.len(),
            MAX_WINDOW * 4,
            "a page larger than the window goes alone"
        );
    }

    #[tokio::test]
    async fn confirmations_move_the_window_towards_the_rate() {
        let pace = Arc::new(Pace::default());
        // A slow server: 256 notifications confirmed after 200 ms, twice.
        for _ in 0..2 {
            let page = Admitted {
                pace: pace.clone(),
                n: 256,
                queued_at: Instant::now() - Duration::from_millis(200),
            };
            if let Ok(mut s) = pace.state.lock() {
                s.in_flight += 256;
                s.last_confirmed = None;
            }
            page.confirmed();
        }
        let rate = pace.rate().expect("sampled");
        assert!((1_000.0..1_400.0).contains(&rate), "{rate}");
        assert_eq!(pace.window(), MIN_WINDOW);
        assert_eq!(pace.per_page(500, 1), (MIN_WINDOW / 2) as u32);
        assert_eq!(pace.per_page(500, 100), 1);
        // Nothing stays admitted.
        assert_eq!(pace.state.lock().map(|s| s.in_flight).ok(), Some(0));
    }

    #[test]
    fn resizing_corrects_the_estimate() {
        let pace = Arc::new(Pace::default());
        let mut page = Admitted {
            pace: pace.clone(),
            n: 0,
            queued_at: Instant::now(),
        };
        if let Ok(mut s) = pace.state.lock() {
            s.in_flight = 0;
        }
        page.resize(10);
        assert_eq!(pace.state.lock().map(|s| s.in_flight).ok(), Some(10));
        drop(page);
        assert_eq!(pace.state.lock().map(|s| s.in_flight).ok(), Some(0));
    }
}
