//! The receiving side of every scenario: reads a connection until told to
//! stop, finds the benchmark marker in each message, and counts deliveries,
//! duplicates (per subscriber, by sequence number) and latencies.
//!
//! Owns counting. One task per connection; a shared [`Tally`] of atomics
//! lets the driver see progress without locking.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;

use crate::conn::Reader;
use crate::metrics::{elapsed_us, now_us};
use crate::scan;
use crate::stanzas::find_marker;

/// Progress of all receivers together, updated per delivery.
#[derive(Debug)]
pub struct Tally {
    /// Deliveries counted once per (subscriber, sequence number).
    pub unique: AtomicU64,
    /// When the latest delivery arrived (µs on the run clock).
    pub last_us: AtomicU64,
}

impl Tally {
    /// A zero tally.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            unique: AtomicU64::new(0),
            last_us: AtomicU64::new(0),
        })
    }

    /// Waits until `expected` deliveries were counted, `timeout` has passed, or none
    /// came for `settle`.
    pub async fn wait_settled(&self, expected: u64, timeout: Duration, settle: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut last_count = self.unique.load(Ordering::Relaxed);
        let mut last_change = tokio::time::Instant::now();
        loop {
            let count = self.unique.load(Ordering::Relaxed);
            let now = tokio::time::Instant::now();
            if count >= expected || now >= deadline || now - last_change >= settle {
                return;
            }
            if count != last_count {
                last_count = count;
                last_change = now;
            }
            tokio::time::sleep(PROGRESS_POLL).await;
        }
    }
}

/// How often [`Tally::wait_settled`] looks at the count.
const PROGRESS_POLL: Duration = Duration::from_millis(20);

/// How a connection's messages map to subscribers.
#[derive(Debug, Clone, Copy)]
pub enum Addressing {
    /// A client session: one subscriber.
    Single,
    /// A sink component: `to='v<N>@...'` is subscriber N (of `count`).
    Virtual {
        /// How many virtual subscribers the component serves.
        count: usize,
    },
}

/// What one receiver counted.
#[derive(Debug, Default, Serialize)]
pub struct InboxStats {
    /// Messages carrying a marker, duplicates included.
    pub received: u64,
    /// Markers a subscriber had already seen.
    pub duplicates: u64,
    /// Messages without a marker (events other than our items).
    pub unmarked: u64,
    /// Stanzas of `type='error'`.
    pub errors: u64,
    /// The first error stanza, to explain failures.
    pub first_error: Option<String>,
    /// Delivery latencies (send time to receipt), µs.
    #[serde(skip)]
    pub latencies_us: Vec<u32>,
    /// Set if the connection failed before it was told to stop.
    pub failure: Option<String>,
}

impl InboxStats {
    /// Adds another receiver's counts.
    pub fn merge(&mut self, other: InboxStats) {
        self.received += other.received;
        self.duplicates += other.duplicates;
        self.unmarked += other.unmarked;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        if self.failure.is_none() {
            self.failure = other.failure;
        }
        self.latencies_us.extend(other.latencies_us);
    }
}

/// Reads `reader` until `stop` turns true (or the connection fails),
/// counting marked messages.
pub async fn receive(
    mut reader: Reader,
    addressing: Addressing,
    tally: Arc<Tally>,
    mut stop: watch::Receiver<bool>,
) -> InboxStats {
    let slots = match addressing {
        Addressing::Single => 1,
        Addressing::Virtual { count } => count,
    };
    let mut seen: Vec<HashSet<u64>> = vec![HashSet::new(); slots];
    let mut stats = InboxStats::default();
    loop {
        if *stop.borrow() {
            break;
        }
        let element = tokio::select! {
            read = reader.next() => match read {
                Ok(element) => element,
                Err(e) => {
                    stats.failure = Some(format!("{e:#}"));
                    break;
                }
            },
            changed = stop.changed() => {
                if changed.is_err() {
                    break;
                }
                continue;
            }
        };
        let bytes = reader.bytes(&element);
        if scan::attr(bytes, "type") == Some(b"error") {
            stats.errors += 1;
            if stats.first_error.is_none() {
                stats.first_error = Some(String::from_utf8_lossy(bytes).into_owned());
            }
            continue;
        }
        if scan::name(bytes) != b"message" {
            continue;
        }
        let Some((seq, sent_us)) = find_marker(bytes) else {
            stats.unmarked += 1;
            continue;
        };
        let slot = match addressing {
            Addressing::Single => 0,
            Addressing::Virtual { .. } => match virtual_index(bytes) {
                Some(i) if i < slots => i,
                _ => {
                    stats.unmarked += 1;
                    continue;
                }
            },
        };
        stats.received += 1;
        let now = now_us();
        if seen[slot].insert(seq) {
            stats.latencies_us.push(elapsed_us(sent_us, now));
            tally.unique.fetch_add(1, Ordering::Relaxed);
            tally.last_us.fetch_max(now, Ordering::Relaxed);
        } else {
            stats.duplicates += 1;
        }
    }
    stats
}

/// The N of `to='v<N>@...'`.
fn virtual_index(element: &[u8]) -> Option<usize> {
    let to = scan::attr(element, "to")?;
    let (n, rest) = scan::leading_u64(to.strip_prefix(b"v")?)?;
    if !rest.starts_with(b"@") {
        return None;
    }
    usize::try_from(n).ok()
}

/// The JID of virtual subscriber `n` served by the sink component `sink`.
pub fn virtual_jid(n: usize, sink: &str) -> String {
    format!("v{n}@{sink}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtual_subscribers_are_numbered_by_local_part() {
        let m = b"<message to='v17@ps3.localhost' from='x'><body/></message>";
        assert_eq!(virtual_index(m), Some(17));
        assert_eq!(virtual_index(b"<message to='u1@x'/>"), None);
        assert_eq!(virtual_jid(17, "ps3.localhost"), "v17@ps3.localhost");
    }
}
