//! Request/response over one connection during set-up and latency probes:
//! many iqs in flight at once (a window), answers matched by id.
//!
//! Owns pipelining of requests whose answers we wait for in the same task.
//! The publish phase has its own, concurrent, version in `publisher.rs`.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use anyhow::{anyhow, bail};
use tokio::io::AsyncWriteExt as _;
use tokio::net::tcp::OwnedWriteHalf;

use crate::conn::Reader;
use crate::metrics::{elapsed_us, now_us};
use crate::scan;

/// Largest batch of requests written at once.
const MAX_BATCH_BYTES: usize = 64 * 1024;
/// How long to hold back after an answer said "wait" (`<error type='wait'>`, such as
/// pubsubd's `resource-constraint` when a sender's request lane is full) before
/// sending more; the refused request is sent again, as a well-behaved client would.
const WAIT_BACKOFF: Duration = Duration::from_millis(20);

/// One request: its id and its XML (which must carry that id).
#[derive(Debug, Clone)]
pub struct Request {
    /// The iq's id.
    pub id: String,
    /// The whole iq.
    pub xml: String,
}

/// Answers to a batch of requests.
#[derive(Debug, Default)]
pub struct Outcome {
    /// `type='result'` answers.
    pub ok: u64,
    /// `type='error'` answers.
    pub errors: u64,
    /// `type='wait'` errors whose request was sent again.
    pub retried: u64,
    /// The first error answer.
    pub first_error: Option<String>,
    /// Request-to-answer times, µs.
    pub latencies_us: Vec<u32>,
}

impl Outcome {
    /// Fails with the first error if any request failed.
    pub fn check(&self, what: &str) -> anyhow::Result<()> {
        if self.errors > 0 {
            bail!(
                "{} of {} {what} requests failed; first: {}",
                self.errors,
                self.errors + self.ok,
                self.first_error.as_deref().unwrap_or("?")
            );
        }
        Ok(())
    }
}

/// Sends `requests` keeping at most `window` unanswered, and waits for every
/// answer, all within `timeout`. Elements that answer nothing are ignored.
pub async fn pipelined(
    reader: &mut Reader,
    writer: &mut OwnedWriteHalf,
    requests: Vec<Request>,
    window: usize,
    timeout: Duration,
) -> anyhow::Result<Outcome> {
    let total = requests.len();
    let run = async {
        let mut outcome = Outcome::default();
        let mut pending: HashMap<String, (u64, String)> = HashMap::new();
        let mut queue: VecDeque<Request> = requests.into();
        let mut answered = 0usize;
        let mut batch = Vec::with_capacity(MAX_BATCH_BYTES);
        let mut hold_until: Option<tokio::time::Instant> = None;
        while answered < total {
            if let Some(until) = hold_until {
                if pending.is_empty() {
                    tokio::time::sleep_until(until).await;
                }
                if tokio::time::Instant::now() >= until {
                    hold_until = None;
                }
            }
            batch.clear();
            while hold_until.is_none()
                && pending.len() < window.max(1)
                && batch.len() < MAX_BATCH_BYTES
            {
                let Some(request) = queue.pop_front() else {
                    break;
                };
                batch.extend_from_slice(request.xml.as_bytes());
                pending.insert(request.id, (now_us(), request.xml));
            }
            if !batch.is_empty() {
                writer.write_all(&batch).await?;
            }
            if pending.is_empty() {
                continue;
            }
            let element = reader.next().await?;
            let bytes = reader.bytes(&element);
            if scan::name(bytes) != b"iq" {
                continue;
            }
            let Some(id) = scan::attr(bytes, "id") else {
                continue;
            };
            let Some(id) = std::str::from_utf8(id).ok().map(str::to_owned) else {
                continue;
            };
            let Some((sent, xml)) = pending.remove(&id) else {
                continue;
            };
            match scan::attr(bytes, "type") {
                Some(b"result") => outcome.ok += 1,
                Some(b"error") if says_wait(bytes) => {
                    outcome.retried += 1;
                    queue.push_back(Request { id, xml });
                    hold_until = Some(tokio::time::Instant::now() + WAIT_BACKOFF);
                    continue;
                }
                _ => {
                    outcome.errors += 1;
                    if outcome.first_error.is_none() {
                        outcome.first_error = Some(String::from_utf8_lossy(bytes).into_owned());
                    }
                }
            }
            answered += 1;
            outcome.latencies_us.push(elapsed_us(sent, now_us()));
        }
        Ok::<_, anyhow::Error>(outcome)
    };
    tokio::time::timeout(timeout, run)
        .await
        .map_err(|_| anyhow!("{total} requests were not all answered within {timeout:?}"))?
}

/// Whether an error answer is of type `wait` (try again later).
fn says_wait(iq: &[u8]) -> bool {
    let text = String::from_utf8_lossy(iq);
    text.contains("type='wait'") || text.contains("type=\"wait\"")
}

#[cfg(test)]
mod tests {
    use super::says_wait;

    #[test]
    fn wait_errors_are_told_apart_from_other_errors() {
        assert!(says_wait(b"<iq type='error' id='1'><error type='wait'><resource-constraint xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"));
        assert!(says_wait(b"<iq type=\"error\"><error type=\"wait\"/></iq>"));
        assert!(!says_wait(b"<iq type='error' id='1'><error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"));
    }
}
