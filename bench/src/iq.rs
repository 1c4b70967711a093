//! Request/response over one connection during set-up and latency probes:
//! many iqs in flight at once (a window), answers matched by id.
//!
//! Owns pipelining of requests whose answers we wait for in the same task.
//! The publish phase has its own, concurrent, version in `publisher.rs`.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{anyhow, bail};
use tokio::io::AsyncWriteExt as _;
use tokio::net::tcp::OwnedWriteHalf;

use crate::conn::Reader;
use crate::metrics::{elapsed_us, now_us};
use crate::scan;

/// Largest batch of requests written at once.
const MAX_BATCH_BYTES: usize = 64 * 1024;

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
        let mut pending: HashMap<String, u64> = HashMap::new();
        let mut queue = requests.into_iter().peekable();
        let mut answered = 0usize;
        let mut batch = Vec::with_capacity(MAX_BATCH_BYTES);
        while answered < total {
            batch.clear();
            while pending.len() < window.max(1) && batch.len() < MAX_BATCH_BYTES {
                let Some(request) = queue.next() else { break };
                batch.extend_from_slice(request.xml.as_bytes());
                pending.insert(request.id, now_us());
            }
            if !batch.is_empty() {
                writer.write_all(&batch).await?;
            }
            let element = reader.next().await?;
            let bytes = reader.bytes(&element);
            if scan::name(bytes) != b"iq" {
                continue;
            }
            let Some(id) = scan::attr(bytes, "id") else {
                continue;
            };
            let Some(sent) = std::str::from_utf8(id)
                .ok()
                .and_then(|id| pending.remove(id))
            else {
                continue;
            };
            answered += 1;
            outcome.latencies_us.push(elapsed_us(sent, now_us()));
            match scan::attr(bytes, "type") {
                Some(b"result") => outcome.ok += 1,
                _ => {
                    outcome.errors += 1;
                    if outcome.first_error.is_none() {
                        outcome.first_error = Some(String::from_utf8_lossy(bytes).into_owned());
                    }
                }
            }
        }
        Ok::<_, anyhow::Error>(outcome)
    };
    tokio::time::timeout(timeout, run)
        .await
        .map_err(|_| anyhow!("{total} requests were not all answered within {timeout:?}"))?
}
