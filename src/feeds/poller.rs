//! The poll loop: claim a due feed, fetch it, parse it, publish what is new or
//! changed, record the outcome and when to poll next.
//!
//! Each poll runs in its own task (at most `[feeds] concurrency` at once), so a slow,
//! huge or malformed feed — or a panic while parsing one — delays only that feed. Every
//! failure is logged and rescheduled with backoff; none stops the loop or the service.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;

use super::config::FeedsConfig;
use super::entry::{prepare, publish_order, PreparedEntry};
use super::fetch::{Fetched, Fetcher, Validators};
use super::schedule;
use super::store::{ClaimedFeed, FeedStore, PollRecord};
use crate::domain::DomainError;
use crate::pubsub::items::Publication;
use crate::pubsub::{Pubsub, Requester};

/// How often an idle poller looks for due feeds. Feed intervals are minutes; a second
/// of lateness is invisible and an indexed query per second is nothing.
const IDLE_TICK: Duration = Duration::from_secs(1);
/// A lease lasts the fetch timeout plus this, for parsing and publishing; a process
/// that dies mid-poll blocks its feed no longer than that.
const LEASE_MARGIN: Duration = Duration::from_secs(120);
/// After a database error while claiming, wait this long before trying again.
const STORE_RETRY: Duration = Duration::from_secs(5);

/// One process's feed poller.
pub struct Poller {
    store: FeedStore,
    fetcher: Fetcher,
    pubsub: Arc<Pubsub>,
    publisher: Requester,
    /// This process's lease identity.
    owner: Uuid,
    concurrency: usize,
    lease: Duration,
}

/// What one poll did, for the log and the feed's status.
#[derive(Debug)]
enum Outcome {
    NotModified {
        max_age: Option<Duration>,
    },
    Published {
        validators: Validators,
        max_age: Option<Duration>,
        new: usize,
        entries: usize,
    },
}

/// Why a poll failed.
#[derive(Debug)]
struct Failure {
    message: String,
    retry_after: Option<Duration>,
}

impl Failure {
    fn new(message: impl Into<String>) -> Failure {
        Failure {
            message: message.into(),
            retry_after: None,
        }
    }
}

impl Poller {
    /// A poller publishing as `publisher`.
    pub fn new(
        cfg: &FeedsConfig,
        store: FeedStore,
        pubsub: Arc<Pubsub>,
        publisher: Requester,
    ) -> Result<Poller, String> {
        Ok(Poller {
            store,
            fetcher: Fetcher::new(cfg)?,
            pubsub,
            publisher,
            owner: Uuid::new_v4(),
            concurrency: cfg.concurrency,
            lease: cfg.timeout + LEASE_MARGIN,
        })
    }

    /// Polls until `stop` is cancelled; polls in flight are abandoned at shutdown
    /// (their leases expire and another process, or the next start, redoes them).
    pub fn spawn(self, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
        let me = Arc::new(self);
        tokio::spawn(async move {
            let mut polls = JoinSet::new();
            loop {
                let mut pause = IDLE_TICK;
                while polls.len() < me.concurrency {
                    match me.store.claim(me.owner, me.lease).await {
                        Ok(Some(feed)) => {
                            let span = tracing::info_span!("feed", id = feed.pk, url = %feed.url, node = %feed.node);
                            polls.spawn(me.clone().poll_and_record(feed).instrument(span));
                        }
                        Ok(None) => break,
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot claim feeds");
                            pause = STORE_RETRY;
                            break;
                        }
                    }
                }
                tokio::select! {
                    Some(done) = polls.join_next(), if !polls.is_empty() => {
                        if let Err(e) = done {
                            tracing::error!(error = %e, "a feed poll panicked; it is retried when its lease expires");
                        }
                    }
                    _ = tokio::time::sleep(pause) => {}
                    _ = stop.cancelled() => break,
                }
            }
            polls.shutdown().await;
        })
    }

    async fn poll_and_record(self: Arc<Self>, feed: ClaimedFeed) {
        let outcome = self.poll(&feed).await;
        let record = match outcome {
            Ok(Outcome::NotModified { max_age }) => {
                metrics::counter!(crate::metrics::FEED_POLLS, "outcome" => "not_modified")
                    .increment(1);
                tracing::debug!("feed not modified");
                PollRecord {
                    validators: feed.validators.clone(),
                    next_poll_in: schedule::after_success(feed.interval, max_age),
                    failures: 0,
                    status: "not modified".into(),
                }
            }
            Ok(Outcome::Published {
                validators,
                max_age,
                new,
                entries,
            }) => {
                metrics::counter!(crate::metrics::FEED_POLLS, "outcome" => "ok").increment(1);
                metrics::counter!(crate::metrics::FEED_ENTRIES_PUBLISHED).increment(new as u64);
                if new > 0 {
                    tracing::info!(published = new, entries, "feed polled");
                } else {
                    tracing::debug!(entries, "feed polled, nothing new");
                }
                PollRecord {
                    validators,
                    next_poll_in: schedule::after_success(feed.interval, max_age),
                    failures: 0,
                    status: format!("ok: {entries} entries, {new} published"),
                }
            }
            Err(f) => {
                metrics::counter!(crate::metrics::FEED_POLLS, "outcome" => "failed").increment(1);
                let failures = feed.failures.saturating_add(1);
                let next = schedule::after_failure(feed.interval, failures, f.retry_after);
                tracing::warn!(error = %f.message, failures, retry_in_secs = next.as_secs(), "feed poll failed");
                PollRecord {
                    validators: feed.validators.clone(),
                    next_poll_in: next,
                    failures,
                    status: truncate(&f.message),
                }
            }
        };
        if let Err(e) = self.store.finish(feed.pk, self.owner, &record).await {
            tracing::warn!(error = %e, "cannot record the feed poll; it is retried when its lease expires");
        }
    }

    async fn poll(&self, feed: &ClaimedFeed) -> Result<Outcome, Failure> {
        let fetched = self
            .fetcher
            .fetch(&feed.url, &feed.validators, feed.auth_header.as_ref())
            .await
            .map_err(|e| Failure {
                retry_after: e.retry_after(),
                message: format!("fetch: {e}"),
            })?;
        let (bytes, validators, max_age) = match fetched {
            Fetched::NotModified { max_age } => return Ok(Outcome::NotModified { max_age }),
            Fetched::Body {
                bytes,
                validators,
                max_age,
            } => (bytes, validators, max_age),
        };
        let base = feed.url.to_string();
        // Parsing a few megabytes is CPU work: off the async threads.
        let parsed = tokio::task::spawn_blocking(move || {
            feed_rs::parser::Builder::new()
                .base_uri(Some(base.as_str()))
                .build()
                .parse(bytes.as_slice())
        })
        .await
        .map_err(|e| Failure::new(format!("parser crashed: {e}")))?
        .map_err(|e| Failure::new(format!("not a feed: {e}")))?;
        let now = chrono::Utc::now();
        let entries: Vec<PreparedEntry> = parsed.entries.iter().map(|e| prepare(e, now)).collect();
        let ids: Vec<String> = entries.iter().map(|e| e.item_id.to_string()).collect();
        let known = self
            .store
            .known_entries(feed.pk, &ids)
            .await
            .map_err(|e| Failure::new(format!("database: {e}")))?;
        let total = entries.len();
        let mut new = 0;
        for entry in publish_order(entries) {
            let id = entry.item_id.to_string();
            if known.get(&id) == Some(&entry.content_hash) {
                continue;
            }
            let published = self
                .pubsub
                .publish(
                    &self.publisher,
                    &feed.node,
                    Some(Publication {
                        id: Some(entry.item_id.clone()),
                        payload: Some(entry.payload),
                    }),
                    None,
                )
                .await;
            match published {
                Ok(_) => new += 1,
                // This entry alone cannot be published: remember it so it is not
                // retried (and logged) on every poll until the feed changes it.
                Err(e @ (DomainError::PayloadTooBig | DomainError::InvalidPayload)) => {
                    tracing::warn!(item = %id, error = %e, "feed entry skipped");
                }
                Err(e) => return Err(Failure::new(format!("publish to {}: {e}", feed.node))),
            }
            self.store
                .remember_entry(feed.pk, &id, &entry.content_hash)
                .await
                .map_err(|e| Failure::new(format!("database: {e}")))?;
        }
        self.store
            .seen(feed.pk, &ids)
            .await
            .map_err(|e| Failure::new(format!("database: {e}")))?;
        Ok(Outcome::Published {
            validators,
            max_age,
            new,
            entries: total,
        })
    }
}

/// Status strings are for a terminal table: keep them short.
fn truncate(s: &str) -> String {
    const MAX: usize = 200;
    match s.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}
