//! Feed ingestion: Atom, RSS and JSON feeds polled over HTTP and published into nodes
//! as Atom entries, through the same `Pubsub::publish` as any publisher.
//!
//! - [`config`]: `[feeds]` and `[[feed]]`.
//! - [`store`]: the feed list, leases and per-entry state in the store (PostgreSQL or
//!   SQLite), shared by every pubsubd attached to the database.
//! - [`fetch`]: the defensive HTTP client (conditional GET, caps, timeouts).
//! - [`entry`]: feed entry → Atom item, with an item id derived from the entry id.
//! - [`schedule`]: when to poll next (interval, max-age, backoff, Retry-After).
//! - [`poller`]: the loop that ties them together.
//!
//! Feeds never write items themselves, and nothing outside this module touches the
//! feed tables.

pub mod config;
pub mod entry;
pub mod fetch;
pub mod poller;
pub mod schedule;
pub mod store;

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use xmpp_parsers::jid::{BareJid, Jid};

use crate::pubsub::Pubsub;
pub use config::FeedsConfig;

/// The JID feeds publish as: `[feeds] publisher`, else the first service admin.
pub fn publisher(cfg: &FeedsConfig, pubsub: &Pubsub) -> Option<BareJid> {
    cfg.publisher
        .clone()
        .or_else(|| pubsub.policy.admins.first().cloned())
}

/// Syncs the `[[feed]]` entries (if any) into the database and starts the poller. Without a
/// publisher JID, feeds are not polled (logged once) unless the configuration lists
/// feeds, which is then a start-up error.
pub async fn start(
    cfg: &FeedsConfig,
    pubsub: Arc<Pubsub>,
    store: store::FeedStore,
    stop: CancellationToken,
) -> Result<Option<tokio::task::JoinHandle<()>>, String> {
    let Some(jid) = publisher(cfg, &pubsub) else {
        if !cfg.feeds.is_empty() {
            return Err(
                "`feed` entries are configured but nobody to publish them as: set `feeds.publisher` or `service.admins`"
                    .into(),
            );
        }
        tracing::info!("feed ingestion off: no feeds.publisher and no service.admins");
        return Ok(None);
    };
    // An instance without `[[feed]]` entries leaves the configured feeds alone, so a
    // second instance started with a shorter configuration does not wipe them.
    if !cfg.feeds.is_empty() {
        store
            .sync_config(&cfg.feeds)
            .await
            .map_err(|e| format!("cannot store the configured feeds: {e}"))?;
    }
    let requester = pubsub.requester(Jid::from(jid.clone()));
    let poller = poller::Poller::new(cfg, store, pubsub, requester)?;
    tracing::info!(publisher = %jid, configured = cfg.feeds.len(), "feed ingestion started");
    Ok(Some(poller.spawn(stop)))
}
