//! The publish phase: one client publishes items round-robin over the
//! nodes, with at most `window` publishes awaiting their acknowledgement,
//! optionally paced to a rate. A reader task matches acknowledgements by id
//! and opens the window again.
//!
//! Owns publish pacing and acknowledgement accounting.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::io::AsyncWriteExt as _;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::Semaphore;

use crate::conn::Reader;
use crate::metrics::{elapsed_us, now_us};
use crate::scan;
use crate::stanzas;

/// How often the acknowledgement reader checks whether the writer stopped
/// early.
const ACK_POLL: Duration = Duration::from_millis(100);

/// Largest batch of publishes written at once.
const MAX_BATCH_BYTES: usize = 64 * 1024;

/// What to publish.
#[derive(Debug, Clone)]
pub struct PublishPlan {
    /// The pubsub service JID.
    pub service: String,
    /// Node names; item `seq` goes to `nodes[seq % len]`.
    pub nodes: Arc<Vec<String>>,
    /// How many items.
    pub items: u64,
    /// Payload size in bytes.
    pub size: usize,
    /// Most publishes awaiting acknowledgement.
    pub window: usize,
    /// Items per second, or as fast as the window allows.
    pub rate: Option<f64>,
    /// Stop publishing new items after this long (the outstanding ones
    /// are still awaited), so a slow service is measured on fewer items.
    pub max_publish_time: Option<Duration>,
    /// Stop publishing new items once this is set (the `mixed` scenario's
    /// small node stops with the firehose).
    pub stop: Option<Arc<AtomicBool>>,
    /// Give up after this long.
    pub timeout: Duration,
}

/// What the publish phase achieved.
#[derive(Debug, Default)]
pub struct PublishStats {
    /// Publishes written.
    pub sent: u64,
    /// Publishes acknowledged with `type='result'`.
    pub acked: u64,
    /// Publishes answered with an error.
    pub errors: u64,
    /// The first error answer.
    pub first_error: Option<String>,
    /// Per node index, how many of its publishes were acknowledged.
    pub acked_per_node: Vec<u64>,
    /// Publish-to-acknowledgement times, µs.
    pub ack_latencies_us: Vec<u32>,
    /// When the first publish was written (run clock, µs).
    pub start_us: u64,
    /// When the last answer arrived.
    pub last_answer_us: u64,
    /// Set if the phase did not finish.
    pub failure: Option<String>,
}

/// Runs the publish phase to its end (every publish answered, or the
/// timeout, or a connection failure).
pub async fn publish(
    mut reader: Reader,
    mut writer: OwnedWriteHalf,
    plan: PublishPlan,
) -> (PublishStats, OwnedWriteHalf) {
    let items = plan.items;
    let window = Arc::new(Semaphore::new(plan.window.max(1)));
    let sent_at: Arc<Vec<AtomicU64>> = Arc::new((0..items).map(|_| AtomicU64::new(0)).collect());
    let start_us = now_us();
    let node_count = plan.nodes.len();
    // How many publishes the writer ended up sending; `u64::MAX` while it
    // is still at work.
    let final_sent = Arc::new(AtomicU64::new(u64::MAX));

    let acks = {
        let window = Arc::clone(&window);
        let sent_at = Arc::clone(&sent_at);
        let final_sent = Arc::clone(&final_sent);
        tokio::spawn(async move {
            let mut stats = PublishStats {
                acked_per_node: vec![0; node_count],
                ..PublishStats::default()
            };
            let mut answered = 0u64;
            while answered < items.min(final_sent.load(Ordering::Relaxed)) {
                // Wakes up now and then to notice that the writer stopped
                // early and every publish it sent is answered.
                let element = match tokio::time::timeout(ACK_POLL, reader.next()).await {
                    Err(_) => continue,
                    Ok(Ok(e)) => e,
                    Ok(Err(e)) => {
                        stats.failure = Some(format!("publisher connection: {e:#}"));
                        break;
                    }
                };
                let bytes = reader.bytes(&element);
                let Some(seq) = publish_seq(bytes).filter(|s| *s < items) else {
                    continue;
                };
                let now = now_us();
                answered += 1;
                stats.last_answer_us = now;
                let sent = sent_at[seq as usize].load(Ordering::Relaxed);
                stats.ack_latencies_us.push(elapsed_us(sent, now));
                if scan::attr(bytes, "type") == Some(b"result") {
                    stats.acked += 1;
                    stats.acked_per_node[(seq as usize) % node_count] += 1;
                } else {
                    stats.errors += 1;
                    if stats.first_error.is_none() {
                        stats.first_error = Some(String::from_utf8_lossy(bytes).into_owned());
                    }
                }
                window.add_permits(1);
            }
            stats
        })
    };

    let write_all = async {
        let mut batch = String::with_capacity(MAX_BATCH_BYTES);
        let mut seq = 0u64;
        while seq < items {
            if plan
                .max_publish_time
                .is_some_and(|limit| now_us() - start_us >= limit.as_micros() as u64)
            {
                break;
            }
            if plan
                .stop
                .as_ref()
                .is_some_and(|stop| stop.load(Ordering::Relaxed))
            {
                break;
            }
            if let Some(rate) = plan.rate {
                let due = start_us + (seq as f64 * 1e6 / rate) as u64;
                let now = now_us();
                if due > now {
                    tokio::time::sleep(Duration::from_micros(due - now)).await;
                }
            }
            window.acquire().await.context("window closed")?.forget();
            batch.clear();
            loop {
                let node = &plan.nodes[(seq as usize) % node_count];
                let now = now_us();
                sent_at[seq as usize].store(now, Ordering::Relaxed);
                batch.push_str(&stanzas::publish(
                    &format!("p{seq}"),
                    &plan.service,
                    node,
                    seq,
                    now,
                    plan.size,
                ));
                seq += 1;
                let paced_out = plan
                    .rate
                    .is_some_and(|rate| start_us + (seq as f64 * 1e6 / rate) as u64 > now_us());
                if seq >= items || batch.len() >= MAX_BATCH_BYTES || paced_out {
                    break;
                }
                match window.try_acquire() {
                    Ok(permit) => permit.forget(),
                    Err(_) => break,
                }
            }
            writer.write_all(batch.as_bytes()).await?;
        }
        final_sent.store(seq, Ordering::Relaxed);
        Ok::<_, anyhow::Error>(seq)
    };
    let written = tokio::time::timeout(plan.timeout, write_all).await;
    let remaining = plan
        .timeout
        .saturating_sub(Duration::from_micros(now_us() - start_us));
    let mut acks = acks;
    let mut stats = match tokio::time::timeout(remaining, &mut acks).await {
        Ok(Ok(done)) => done,
        Ok(Err(join)) => panic!("acknowledgement task panicked: {join}"),
        Err(_) => {
            acks.abort();
            let stats = PublishStats {
                failure: Some(format!(
                    "not every publish was answered within {:?}",
                    plan.timeout
                )),
                ..PublishStats::default()
            };
            return (stats, writer);
        }
    };
    stats.start_us = start_us;
    stats.sent = match written {
        Ok(Ok(n)) => n,
        Ok(Err(e)) => {
            stats.failure.get_or_insert(format!("publish write: {e:#}"));
            0
        }
        Err(_) => {
            stats.failure.get_or_insert("publishing timed out".into());
            0
        }
    };
    (stats, writer)
}

/// The sequence number of an answer to publish `p<seq>`.
fn publish_seq(element: &[u8]) -> Option<u64> {
    if scan::name(element) != b"iq" {
        return None;
    }
    let id = scan::attr(element, "id")?.strip_prefix(b"p")?;
    match scan::leading_u64(id)? {
        (seq, []) => Some(seq),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_publish_answers_by_id() {
        assert_eq!(publish_seq(b"<iq type='result' id='p12'/>"), Some(12));
        assert_eq!(publish_seq(b"<iq type='result' id='p12x'/>"), None);
        assert_eq!(publish_seq(b"<message id='p12'/>"), None);
    }
}
