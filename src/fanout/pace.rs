//! Pacing a connection's fan-out by time, not by page count.
//!
//! The server routes a component's stanzas in the order they come. Whatever fan-out has
//! handed it and it has not yet routed is a queue that everything else on the stream
//! waits behind: answers to requests, other nodes' notifications, a five-subscriber
//! command bus next to a firehose. On Prosody, two full pages (8,192 notifications) are
//! seconds of that.
//!
//! So each connection keeps what fan-out has queued and the server has not yet confirmed
//! (by a barrier) to about its target (`fanout_latency_ms`, [`TARGET`] by default) of
//! the server's measured routing rate: the *window*. Every page, and every group of small nodes, is admitted into the window
//! before it is queued and leaves it when its barrier is answered; pages are sized to
//! half the window, so two are in flight and the server never waits for a round trip.
//! A small delivery (at most [`EXPRESS_MAX`] notifications: a node with a few
//! subscribers, a one-JID notification) does not compete with pages for the window: it
//! has a room of its own, [`EXPRESS_ROOM`] beyond the window, and travels in the
//! connection's express lane, written before the bulk lane ([`Lane`]). So a
//! five-subscriber node next to a firehose waits for no page of the firehose's in
//! pubsubd, only for what the server already holds (the window, about [`TARGET`]).
//!
//! The rate is measured from the barriers themselves, as a sustained rate: the
//! notifications confirmed over the last [`RATE_MEMORY`] of the lane's busy time (time
//! with something in flight), not the best of single pages. A server answers barriers
//! in bursts: Prosody reads a large part of the stream, routes it and then answers every
//! barrier in it at once, and leaves writing the copies to its clients' sockets for
//! later turns of its loop. A page confirmed in such a burst, or a page whose copies the
//! server has not yet written, reads as a rate several times what the server sustains
//! (on Prosody 0.12 the best page read 4 to 8 times the 3,100 a second it delivered, and
//! a window sized from it held half a second of work at the server). Over a busy span
//! of seconds the bursts even out and the deferred writing counts. The page's time
//! beyond what its size takes at that rate is a sample of the link's own delay (the
//! barrier's round trip); the smallest recent one counts. The window is the rate times
//! [`TARGET`] plus that delay, with a quarter more on top. It still finds a faster
//! server: a window that leaves the server idle for part of a round trip confirms more
//! than its rate times the round trip, so the next window is larger, by up to the
//! quarter each time, until the server is never idle. So the window settles where the
//! server holds about [`TARGET`] of work, never lower than what keeps it busy.
//!
//! Two limits follow from measuring over busy time. The delay samples are taken at the
//! averaged rate, so the smallest of them is mostly zero and the window rests on the
//! target alone: it keeps the server busy while the barrier's round trip is under about
//! half the target, as on loopback or a LAN (a component link across a slower network
//! needs a larger `fanout_latency_ms`). And a pause counts: a barrier answered after a
//! server's stall of seconds holds the window near its floor until two seconds of new
//! busy time are measured, which the floor itself keeps short.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::xmpp::Lane;

/// What a connection's unconfirmed fan-out may amount to, in the server's routing time,
/// unless `fanout_latency_ms` says otherwise.
pub const TARGET: Duration = Duration::from_millis(50);

/// The smallest window, in notifications: enough for a few small nodes at once, and two
/// pages that are not all round trip on a slow server.
const MIN_WINDOW: usize = 256;

/// The largest window: two pages of the engine's largest size, what the engine kept in
/// flight before it paced.
const MAX_WINDOW: usize = 8192;

/// The window before anything has been measured: about a second of a slow server
/// (Prosody routes 1,500 to 3,000 a second), and it grows within a few pages on a fast one.
const FIRST_WINDOW: usize = 1024;

/// How much of the lane's recent busy time the rate is measured over: several of a slow
/// server's bursts of answers.
const RATE_MEMORY: Duration = Duration::from_secs(2);

/// The most confirmations the rate remembers (pages of a few notifications each, on a
/// fast server, could otherwise fill two seconds with thousands).
const RATE_ENTRIES: usize = 1024;

/// How long a round trip counts: the quickest of this long is the link's delay.
const DELAY_MEMORY: Duration = Duration::from_secs(10);

/// The window's margin over the measured need: what lets it find a faster server.
const GAIN: f64 = 1.25;

/// The largest whole delivery that counts as small and goes in the express lane. Pages
/// of a walk that goes on never do, however small `fanout_page_size` is.
pub const EXPRESS_MAX: usize = 64;

/// What small deliveries may have in flight beyond the window: a few dozen small nodes'
/// notifications at once. Bounded so that many small nodes together are still paced.
const EXPRESS_ROOM: usize = 256;

/// The pace of one connection, shared by the workers that send on it.
#[derive(Debug)]
pub struct Pace {
    /// The queue the window aims at, in the server's routing time ([`TARGET`]).
    target: Duration,
    state: Mutex<State>,
    room: Notify,
    /// The connection's number, the `connection` label of its gauges.
    connection: String,
}

#[derive(Debug)]
struct State {
    /// Notifications admitted to the window and not yet confirmed or given back.
    in_flight: usize,
    /// The same for small deliveries, in their own room.
    express_in_flight: usize,
    window: usize,
    /// Recent confirmations of bulk pages, newest last: enough to cover [`RATE_MEMORY`]
    /// of busy time when there have been that many, and at most [`RATE_ENTRIES`].
    confirmations: VecDeque<Confirmation>,
    /// The sums over `confirmations`.
    confirmed_sum: u64,
    busy_sum: Duration,
    /// Recent round trips (when, how long), newest last.
    delays: VecDeque<(Instant, Duration)>,
    last_confirmed: Option<Instant>,
    /// When the bulk lane last went from empty to busy.
    busy_since: Instant,
}

/// A page's confirmation, as the rate counts it.
#[derive(Debug, Clone, Copy)]
struct Confirmation {
    /// The page's notifications.
    n: u64,
    /// The lane's busy time since the confirmation before it (or since the lane went
    /// busy): a burst's first answer carries the time the whole burst took, the rest
    /// next to none.
    busy: Duration,
}

impl State {
    /// The sustained rate: notifications confirmed per second of busy time, over the
    /// remembered confirmations.
    fn rate(&self) -> Option<f64> {
        (self.confirmed_sum > 0)
            .then(|| self.confirmed_sum as f64 / self.busy_sum.as_secs_f64().max(1e-3))
    }

    /// The quickest round trip of the last [`DELAY_MEMORY`].
    fn delay(&self) -> Duration {
        self.delays
            .iter()
            .map(|(_, d)| *d)
            .min()
            .unwrap_or_default()
    }

    /// The in-flight count of `lane`.
    fn counter(&mut self, lane: Lane) -> &mut usize {
        match lane {
            Lane::Bulk => &mut self.in_flight,
            Lane::Express => &mut self.express_in_flight,
        }
    }

    /// Counts a confirmation towards the rate, forgetting the oldest ones that are not
    /// needed to cover [`RATE_MEMORY`] of busy time.
    fn count(&mut self, confirmation: Confirmation) {
        self.confirmations.push_back(confirmation);
        self.confirmed_sum += confirmation.n;
        self.busy_sum += confirmation.busy;
        while let Some(oldest) = self.confirmations.front().copied() {
            let covered = self.busy_sum.saturating_sub(oldest.busy) >= RATE_MEMORY;
            if !(covered || self.confirmations.len() > RATE_ENTRIES) {
                break;
            }
            self.confirmations.pop_front();
            self.confirmed_sum = self.confirmed_sum.saturating_sub(oldest.n);
            self.busy_sum = self.busy_sum.saturating_sub(oldest.busy);
        }
    }

    fn sample_delay(&mut self, now: Instant, delay: Duration) {
        self.delays.push_back((now, delay));
        while self
            .delays
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > DELAY_MEMORY)
            && self.delays.len() > 1
        {
            self.delays.pop_front();
        }
    }
}

impl Default for Pace {
    fn default() -> Self {
        Pace::for_connection(0, TARGET)
    }
}

impl Pace {
    /// The pace of connection number `index`, keeping about `target` of the server's
    /// routing time queued.
    pub fn for_connection(index: usize, target: Duration) -> Self {
        Pace {
            target,
            connection: index.to_string(),
            state: Mutex::new(State {
                in_flight: 0,
                express_in_flight: 0,
                window: FIRST_WINDOW,
                confirmations: VecDeque::new(),
                confirmed_sum: 0,
                busy_sum: Duration::ZERO,
                delays: VecDeque::new(),
                last_confirmed: None,
                busy_since: Instant::now(),
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
    /// Where the notifications go: small deliveries in the express lane, out of the
    /// window.
    lane: Lane,
}

impl Pace {
    /// The current window, in notifications.
    pub fn window(&self) -> usize {
        self.state.lock().map_or(FIRST_WINDOW, |s| s.window)
    }

    /// The sustained recent routing rate, in notifications per second.
    pub fn rate(&self) -> Option<f64> {
        self.state.lock().ok().and_then(|s| s.rate())
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
        self.admit_in(n, Lane::Bulk).await
    }

    /// Admits a whole delivery of `n` notifications (a small node, one-JID notifications,
    /// never a page of a walk that goes on): into the express room if it is small (at
    /// most [`EXPRESS_MAX`]), else into the window as [`admit`](Self::admit) does.
    pub async fn admit_whole(self: &Arc<Self>, n: usize) -> Admitted {
        let lane = if n <= EXPRESS_MAX {
            Lane::Express
        } else {
            Lane::Bulk
        };
        self.admit_in(n, lane).await
    }

    async fn admit_in(self: &Arc<Self>, n: usize, lane: Lane) -> Admitted {
        loop {
            let room = self.room.notified();
            if let Some(admitted) = self.try_admit(n, lane) {
                return admitted;
            }
            room.await;
        }
    }

    /// Admits `n` into `lane` if they fit now.
    fn try_admit(self: &Arc<Self>, n: usize, lane: Lane) -> Option<Admitted> {
        let now = Instant::now();
        let admitted = |n| Admitted {
            pace: self.clone(),
            n,
            queued_at: now,
            lane,
        };
        // A poisoned lock cannot pace: let everything through.
        let Ok(mut s) = self.state.lock() else {
            return Some(admitted(0));
        };
        let fits = match lane {
            Lane::Express => s.express_in_flight == 0 || s.express_in_flight + n <= EXPRESS_ROOM,
            Lane::Bulk => s.in_flight == 0 || s.in_flight + n <= s.window,
        };
        if !fits {
            return None;
        }
        if lane == Lane::Bulk && s.in_flight == 0 {
            // An idle lane: the time before now is not the server's.
            s.busy_since = now;
        }
        *s.counter(lane) += n;
        Some(admitted(n))
    }

    /// `n` notifications of `lane` leave, or are given back (`sample` is `None`). Only
    /// confirmed pages sample the rate: a small delivery's confirmation mostly measures
    /// the pages written before it.
    fn leave(&self, n: usize, lane: Lane, sample: Option<Sample>) {
        if let Ok(mut s) = self.state.lock() {
            let counter = s.counter(lane);
            *counter = counter.saturating_sub(n);
            // A page that held nothing (presence left no recipient) says nothing of
            // the rate.
            if let Some(sample) = sample.filter(|_| lane == Lane::Bulk && n > 0) {
                let now = sample.confirmed_at;
                // The busy time since the confirmation before this one (or since the
                // lane went busy, if it was idle in between).
                let busy_from = s
                    .last_confirmed
                    .map_or(s.busy_since, |t| t.max(s.busy_since));
                s.count(Confirmation {
                    n: n as u64,
                    busy: now.saturating_duration_since(busy_from),
                });
                // The link's own delay: the page's time less what serving it takes at the
                // rate, so that neither the page before it nor its own size counts.
                let start = s
                    .last_confirmed
                    .map_or(sample.queued_at, |t| t.max(sample.queued_at));
                let took = now.saturating_duration_since(start).as_secs_f64();
                if let Some(rate) = s.rate() {
                    let delay = Duration::from_secs_f64((took - n as f64 / rate).max(0.0));
                    s.sample_delay(now, delay);
                }
                // Receipts run on several threads: one timed earlier may take the lock
                // later, and must not move the last confirmation back.
                s.last_confirmed = Some(s.last_confirmed.map_or(now, |t| t.max(now)));
                if let Some(rate) = s.rate() {
                    s.window = window_for(rate, self.target + s.delay());
                    let connection = self.connection.clone();
                    metrics::gauge!(crate::metrics::FANOUT_WINDOW, "connection" => connection.clone())
                        .set(s.window as f64);
                    metrics::gauge!(crate::metrics::FANOUT_ROUTE_RATE, "connection" => connection)
                        .set(rate);
                }
            }
        }
        self.room.notify_waiters();
    }
}

/// A confirmed page's timing, for the rate and delay samples.
#[derive(Debug, Clone, Copy)]
struct Sample {
    queued_at: Instant,
    confirmed_at: Instant,
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

    /// The lane the admitted notifications go in.
    pub fn lane(&self) -> Lane {
        self.lane
    }

    /// Admits `actual` instead of the estimate (presence may add or drop recipients).
    pub fn resize(&mut self, actual: usize) {
        if let Ok(mut s) = self.pace.state.lock() {
            let counter = s.counter(self.lane);
            *counter = counter.saturating_sub(self.n) + actual;
        }
        self.n = actual;
        self.pace.room.notify_waiters();
    }

    /// The barrier after these notifications was answered: they leave the window, and
    /// their time is a sample of the server's rate.
    pub fn confirmed(mut self) {
        let n = std::mem::take(&mut self.n);
        let sample = Sample {
            queued_at: self.queued_at,
            confirmed_at: Instant::now(),
        };
        self.pace.leave(n, self.lane, Some(sample));
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        if self.n > 0 {
            self.pace.leave(self.n, self.lane, None);
        }
    }
}

/// The window for the recent `rate` and `span`, the target queue plus the link's
/// round trip: what is in transit plus the target of queue, with a margin, within the
/// bounds.
fn window_for(rate: f64, span: Duration) -> usize {
    let window = GAIN * rate * span.as_secs_f64();
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
    fn the_window_is_the_target_of_the_rate_plus_the_link_within_bounds() {
        let ms = Duration::from_millis;
        assert_eq!(window_for(1_500.0, TARGET), MIN_WINDOW);
        assert_eq!(window_for(20_000.0, TARGET), 1_250);
        assert_eq!(window_for(20_000.0, TARGET + ms(30)), 2_000);
        assert_eq!(window_for(20_000.0, ms(20)), 500, "a shorter target");
        assert_eq!(window_for(1e9, TARGET), MAX_WINDOW);
        assert_eq!(window_for(0.0, TARGET), MIN_WINDOW);
        assert_eq!(window_for(f64::NAN, TARGET), MAX_WINDOW);
    }

    #[tokio::test]
    async fn the_window_follows_the_connections_latency_target() {
        for target in [Duration::from_millis(20), TARGET] {
            let pace = Arc::new(Pace::for_connection(0, target));
            let page = pace.admit(500).await;
            tokio::time::sleep(Duration::from_millis(10)).await;
            page.confirmed();
            let rate = pace.rate().expect("a sample");
            // The first page's delay sample is its own serving time less itself: ~0.
            let want = window_for(rate, target) as f64;
            let got = pace.window() as f64;
            assert!(
                (got - want).abs() <= want * 0.05 + 1.0,
                "target {target:?}: window {got}, want {want} at {rate}/s"
            );
        }
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
        // A five-subscriber node does not wait for the full window: it has its own room
        // and lane.
        let small = tokio::time::timeout(Duration::from_secs(1), pace.admit_whole(5))
            .await
            .expect("a small delivery is admitted beside a full window");
        assert_eq!(small.lane(), Lane::Express);
        assert_eq!(first.lane(), Lane::Bulk);
        drop(small);
        // Small deliveries together are bounded by their room.
        let many: Vec<Admitted> = {
            let mut v = Vec::new();
            for _ in 0..(EXPRESS_ROOM / EXPRESS_MAX) {
                v.push(pace.admit_whole(EXPRESS_MAX).await);
            }
            v
        };
        let waiting = {
            let pace = pace.clone();
            tokio::spawn(async move { pace.admit_whole(EXPRESS_MAX).await })
        };
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "the express room is full");
        drop(many);
        let waited = tokio::time::timeout(Duration::from_secs(1), waiting)
            .await
            .expect("express room was given back")
            .expect("joined");
        assert_eq!(waited.lane(), Lane::Express);
        drop(waited);
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

    /// Confirms a page of `n` queued `ago` before now, the lane idle before it.
    fn confirm(pace: &Arc<Pace>, n: usize, ago: Duration) {
        let queued_at = Instant::now() - ago;
        if let Ok(mut s) = pace.state.lock() {
            s.in_flight += n;
            s.last_confirmed = None;
            s.busy_since = queued_at;
        }
        Admitted {
            pace: pace.clone(),
            n,
            queued_at,
            lane: Lane::Bulk,
        }
        .confirmed();
    }

    /// A pace whose bulk lane went busy at `t0` with `in_flight` notifications.
    fn busy_since(t0: Instant, in_flight: usize) -> Arc<Pace> {
        let pace = Arc::new(Pace::default());
        if let Ok(mut s) = pace.state.lock() {
            s.in_flight = in_flight;
            s.busy_since = t0;
        }
        pace
    }

    /// Confirms a bulk page of `n` queued at `queued_at`, its barrier answered at `at`.
    fn confirm_at(pace: &Pace, n: usize, queued_at: Instant, at: Instant) {
        let sample = Sample {
            queued_at,
            confirmed_at: at,
        };
        pace.leave(n, Lane::Bulk, Some(sample));
    }

    #[tokio::test]
    async fn the_window_follows_the_sustained_rate_and_the_quickest_round_trip() {
        let pace = Arc::new(Pace::default());
        // 256 notifications confirmed 200 ms after they were queued: 1,280 a second, all
        // of it service time (no delay beyond it), so 1.25 × 1,280 × 50 ms = 80, and the
        // smallest window.
        confirm(&pace, 256, Duration::from_millis(200));
        let rate = pace.rate().expect("sampled");
        assert!((1_200.0..1_400.0).contains(&rate), "{rate}");
        assert_eq!(pace.window(), MIN_WINDOW);
        assert_eq!(pace.per_page(500, 1), (MIN_WINDOW / 2) as u32);
        assert_eq!(pace.per_page(500, 1_000), 1);
        // A slow page (a pause on the server) counts for its share of the busy time:
        // 272 in 400 ms.
        confirm(&pace, 16, Duration::from_millis(200));
        let rate = pace.rate().expect("sampled");
        assert!((640.0..720.0).contains(&rate), "{rate}");
        // A faster server: two seconds of busy time at 40,000 a second forget the slow
        // start, and the window is 1.25 × 40,000 × 50 ms.
        for _ in 0..20 {
            confirm(&pace, 4_000, Duration::from_millis(100));
        }
        let rate = pace.rate().expect("sampled");
        assert!((38_000.0..42_000.0).contains(&rate), "{rate}");
        assert!(
            (2_400..=2_600).contains(&pace.window()),
            "{}",
            pace.window()
        );
        // A page that took longer than its size explains (1,000 in 75 ms at 40,000 a
        // second: 50 ms more) counts once no quicker page is recent, since the link's
        // delay is the smallest seen: about 1.25 × 40,000 × (50 + 50) ms.
        confirm(&pace, 1_000, Duration::from_millis(75));
        assert!(
            (2_300..=2_600).contains(&pace.window()),
            "{}",
            pace.window()
        );
        if let Ok(mut s) = pace.state.lock() {
            s.delays.clear();
        }
        confirm(&pace, 1_000, Duration::from_millis(75));
        assert!(
            (4_600..=5_100).contains(&pace.window()),
            "{}",
            pace.window()
        );
        assert_eq!(
            pace.state.lock().map(|s| s.in_flight).ok(),
            Some(0),
            "nothing stays admitted"
        );
    }

    #[test]
    fn a_server_that_answers_in_bursts_is_measured_at_what_it_sustains() {
        // Prosody as measured: it reads a large part of the stream, routes it, and answers
        // every barrier in it at once. Here fourteen pages of 132 are confirmed within a
        // millisecond every 400 ms: 4,620 a second. A page at the end of a burst, taken
        // alone from its admission a few ms before, read as 30,000 a second, and the
        // window sized from the best such page held half a second of the server's work.
        let t0 = Instant::now();
        let pace = busy_since(t0, 14 * 132 * 8);
        for burst in 1..=8u64 {
            for page in 0..14u64 {
                let at = t0 + Duration::from_millis(400 * burst) + Duration::from_micros(50 * page);
                confirm_at(&pace, 132, at - Duration::from_millis(8), at);
            }
        }
        let rate = pace.rate().expect("sampled");
        assert!((4_400.0..4_800.0).contains(&rate), "{rate}");
        let window = pace.window();
        assert!(
            window <= window_for(4_800.0, TARGET),
            "about 1.25 × 4,620 × 50 ms, not a window for 30,000 a second: {window}"
        );
    }

    #[test]
    fn a_window_that_leaves_the_server_idle_grows() {
        // The whole window goes at once and comes back after the link's 5 ms plus its
        // serving time at 40,000 a second: a window too small to keep the server busy
        // confirms more than its rate times the time, so it grows until the server holds
        // about the target.
        let pace = Arc::new(Pace::default());
        let rate = 40_000.0;
        let mut t = Instant::now();
        for _ in 0..40 {
            let n = pace.window();
            if let Ok(mut s) = pace.state.lock() {
                s.in_flight = n;
                s.busy_since = t;
            }
            let queued_at = t;
            t += Duration::from_millis(5) + Duration::from_secs_f64(n as f64 / rate);
            pace.leave(
                n,
                Lane::Bulk,
                Some(Sample {
                    queued_at,
                    confirmed_at: t,
                }),
            );
        }
        let window = pace.window();
        assert!(
            window as f64 >= rate * TARGET.as_secs_f64(),
            "the window holds at least the target's worth: {window}"
        );
    }

    #[test]
    fn answers_arriving_together_are_not_a_burst_of_speed() {
        // Two pages of 1,000 queued at once; the server answers the first barrier after
        // 100 ms and the second 1 ms later (it read both pages before answering). The
        // second page alone looks like 1,000 in 1 ms; over its whole flight it is 2,000
        // in 101 ms.
        let t0 = Instant::now();
        let pace = busy_since(t0, 2_000);
        for confirmed in [100, 101] {
            confirm_at(&pace, 1_000, t0, t0 + Duration::from_millis(confirmed));
        }
        let rate = pace.rate().expect("sampled");
        assert!((19_000.0..21_000.0).contains(&rate), "{rate}");
        assert!(
            (1_100..=1_400).contains(&pace.window()),
            "about 1.25 × 20,000 × 50 ms, not the largest window: {}",
            pace.window()
        );
    }

    #[test]
    fn a_receipt_timed_earlier_but_counted_later_does_not_move_time_back() {
        // Two receipts on two threads: the one timed at 101 ms takes the lock first. The
        // one timed at 100 ms then adds no busy time and leaves the last confirmation at
        // 101 ms, so the next page's busy time is not counted twice.
        let t0 = Instant::now();
        let pace = busy_since(t0, 3_000);
        for confirmed in [101, 100, 201] {
            confirm_at(&pace, 1_000, t0, t0 + Duration::from_millis(confirmed));
        }
        let busy = pace.state.lock().map(|s| s.busy_sum).ok();
        assert_eq!(busy, Some(Duration::from_millis(201)));
        let rate = pace.rate().expect("sampled");
        assert!(
            (14_000.0..15_500.0).contains(&rate),
            "3,000 in 201 ms: {rate}"
        );
    }

    #[test]
    fn resizing_corrects_the_estimate() {
        let pace = Arc::new(Pace::default());
        let mut page = Admitted {
            pace: pace.clone(),
            n: 0,
            queued_at: Instant::now(),
            lane: Lane::Bulk,
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
