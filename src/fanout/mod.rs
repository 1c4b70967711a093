//! The fan-out engine: turns queued jobs into one notification per subscription.
//!
//! A request commits its change and its job together; from then on the job is this
//! engine's. A pool of workers ([`worker`]) claims batches of consecutive jobs of one node
//! under a lease, walks the node's subscribers in keyset pages ([`batch`]; small leaves
//! below the same collections in one walk, [`group`]), decides the
//! recipients and wraps the once-rendered payload per recipient ([`deliver`]), queues
//! the stanzas on the connection and moves the cursor only after a barrier proved their
//! receipt. Idle workers wake on LISTEN/NOTIFY ([`wakeup`]) or a slow poll. Presence
//! stanzas feed presence-based delivery ([`presence`]).
//!
//! Owns: the job lifecycle after commit. Must not: decide what a notification says (the
//! request side renders it, with `protocol::events`), or touch the socket (everything
//! goes through [`Outbound`]).

mod backoff;
mod batch;
pub mod deliver;
mod group;
pub mod pace;
pub mod presence;
mod wakeup;
mod worker;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use xmpp_parsers::jid::BareJid;

use crate::store::claims::{ClaimLimits, FanoutStore, Liveness};
use crate::xmpp::multicast::Multicast;
use crate::xmpp::{ConnectionState, Outbound};

/// Most jobs in one batch. Many small jobs of one node (a publisher sending thousands of
/// items to a handful of subscribers) then cost one claim, one walk and one barrier
/// per batch instead of per item.
const MAX_BATCH_JOBS: u32 = 256;
/// Most payload bytes in one batch: bounds a batch's memory when items are large.
const MAX_BATCH_BYTES: u64 = 1024 * 1024;
/// Most nodes in one claim. Nodes with a few subscribers each are served by groups of
/// this many: one claim, one subscriber read, one barrier and one completion per group.
/// With 10,000 nodes of 10 subscribers on ejabberd, 32 cut the publish→notification
/// p50 from 240 ms (16) to 80 ms with 4 workers, as 8 workers of 16 did.
const MAX_CLAIM_NODES: u32 = 32;
/// Notifications per page when a batch holds several jobs: the page shrinks (down to one
/// subscription) so that a page, and what is resent after a drop, stays this size.
/// About the outgoing queue's default length, so a page keeps the writer busy.
const PAGE_NOTIFICATIONS: u32 = 4096;
/// How often idle workers look for jobs without being woken: only matters when a
/// notification was lost or a lease ran out, so it can be slow.
const POLL_INTERVAL: Duration = Duration::from_secs(5);
/// A worker stops sending for a claim whose lease has gone unrenewed for all but this
/// share (1/n) of a lease period: the lease runs out, and others may take the claim
/// over, a full period after its last renewal was sent, so the worker stops a sixth of
/// a period before (5 s of the default 30), leaving room for the page in flight and for
/// clocks that run at slightly different rates. Renewals come every third of a period,
/// so this is reached only after two have failed.
const UNRENEWED_MARGIN_PARTS: u32 = 6;

/// How the engine runs; see the README's configuration table.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Worker tasks, each serving one node's batch at a time.
    pub workers: usize,
    /// Subscriptions per page (for a batch of one job).
    pub page_size: u32,
    /// How long a claim holds without renewal: what frees the jobs of a process that is
    /// alive but cut off from the store (a dead one's are freed by the loss of its
    /// liveness session, see [`crate::store::claims::Liveness`]).
    pub lease: Duration,
    /// The slow poll.
    pub poll: Duration,
    /// How much one claim takes.
    pub limits: ClaimLimits,
    /// The server's multicast service, shared with the connections that learn whether
    /// it takes groups of recipients (see [`crate::xmpp::multicast`]).
    pub multicast: Option<Arc<Multicast>>,
}

impl Context {
    /// The connection for page number `page` of a walk: the streams that are up take
    /// turns (the worker's own first); with none up, the worker's own, where the page
    /// waits for the reconnect.
    fn link_for_page(&self, page: usize) -> &Link {
        let own = &self.links[0];
        if self.links.len() < 2 {
            return own;
        }
        let up = self.links.iter().filter(|l| l.up.is_connected());
        match up.clone().count() {
            0 => own,
            n => up.clone().nth(page % n).unwrap_or(own),
        }
    }

    /// Tells the idle workers to look for jobs again.
    fn wake_idle_workers(&self) {
        self.wake.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// The connection for the next group of small nodes: the workers of this
    /// connection take turns over the streams, as a walk's pages do.
    fn next_link(&self) -> &Link {
        let turn = self.turn.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.link_for_page(turn)
    }
}

/// What the operator tunes of the engine (`fanout_*` settings), built by `config`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tuning {
    /// Worker tasks (`fanout_workers`).
    pub workers: usize,
    /// Subscriptions per page (`fanout_page_size`).
    pub page_size: u32,
    /// How long a claim holds without renewal (`fanout_lease_secs`).
    pub lease: Duration,
    /// PostgreSQL connections of the workers, a pool of their own so that a flood of
    /// requests cannot starve delivery (`fanout_db_pool`; SQLite: shared with requests).
    pub db_pool: u32,
    /// How much of the server's routing time a connection's unconfirmed fan-out aims at
    /// (`fanout_latency_ms`, [`pace::TARGET`] by default): what anything else on the
    /// stream waits behind a firehose.
    pub latency: Duration,
}

impl Settings {
    /// The operator's tuning, with the engine's fixed limits.
    pub fn new(tuning: &Tuning, multicast: Option<Arc<Multicast>>) -> Self {
        Settings {
            workers: tuning.workers,
            page_size: tuning.page_size,
            lease: tuning.lease,
            poll: POLL_INTERVAL,
            limits: ClaimLimits {
                max_jobs: MAX_BATCH_JOBS,
                max_bytes: MAX_BATCH_BYTES,
                max_nodes: MAX_CLAIM_NODES,
            },
            multicast,
        }
    }

    /// Subscriptions per page for a batch of `jobs` jobs.
    fn subscriptions_per_page(&self, jobs: usize) -> u32 {
        let jobs = u32::try_from(jobs.max(1)).unwrap_or(u32::MAX);
        let budget = PAGE_NOTIFICATIONS.max(self.page_size);
        (budget / jobs).clamp(1, self.page_size.max(1))
    }

    /// Subscriptions per page for a walk through collections of a batch of `jobs` jobs:
    /// the same notifications per page, but not cut to `page_size` subscriptions. A
    /// firehose of many leaves spreads its publishes over the leaves, so their batches
    /// hold a job or two and a page of `page_size` would carry a few hundred
    /// notifications per read, barrier and claim where one busy node's carries
    /// thousands. The pace window still bounds what is in flight.
    fn collection_subscriptions_per_page(&self, jobs: usize) -> u32 {
        let jobs = u32::try_from(jobs.max(1)).unwrap_or(u32::MAX);
        let budget = PAGE_NOTIFICATIONS.max(self.page_size);
        (budget / jobs).clamp(1, budget)
    }

    /// Leases are renewed three times per lease period, so one slow renewal (or two)
    /// does not lose them.
    fn renew_every(&self) -> Duration {
        (self.lease / 3).max(Duration::from_millis(100))
    }

    /// How long a claim may go unrenewed before its worker stops sending for it.
    fn unrenewed_limit(&self) -> Duration {
        self.lease - self.lease / UNRENEWED_MARGIN_PARTS
    }
}

/// One component connection as the fan-out sees it: where to queue stanzas, and
/// whether its stream is up.
#[derive(Clone, Debug)]
pub struct Link {
    pub out: Outbound,
    pub up: ConnectionState,
    /// The connection's number (0 = the first), the `connection` label of
    /// `pubsubd_notifications_sent_total`.
    pub index: usize,
    /// How much fan-out may have queued on it unconfirmed ([`pace`]).
    pub pace: Arc<pace::Pace>,
}

impl Link {
    /// The connection `out` (number `index`, up while `up` says so), not yet paced,
    /// whose pace aims at `latency` of queue at the server.
    pub fn new(out: Outbound, up: ConnectionState, index: usize, latency: Duration) -> Link {
        Link {
            out,
            up,
            index,
            pace: Arc::new(pace::Pace::for_connection(index, latency)),
        }
    }
}

/// What a worker works with (shared by the workers of one connection).
struct Context {
    store: Arc<dyn FanoutStore>,
    /// The worker's own connection (`links[0]`): one-JID jobs, and pages when no
    /// stream is up.
    out: Outbound,
    /// Every connection, the worker's own first. A node's pages take turns over the
    /// streams that are up, so one node's fan-out can use all of them.
    links: Vec<Link>,
    /// The component JID notifications come from.
    service: String,
    /// This process's identity; each worker's lease owner is derived from it.
    process: uuid::Uuid,
    /// The store's liveness session, the fence of every claim.
    liveness: Liveness,
    settings: Settings,
    /// Counts groups of small nodes, for [`Context::next_link`].
    turn: std::sync::atomic::AtomicUsize,
    /// Wakes the process's idle workers (jobs were given back).
    wake: Arc<watch::Sender<u64>>,
    /// Spaces the claims of the process's idle workers.
    idle_claims: Arc<worker::IdleClaims>,
}

/// The running engine.
pub struct Fanout {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Fanout {
    /// Starts the job listener and `settings.workers` workers sending as `service`.
    /// Worker `i` has connection `links[i % links.len()]` as its own, and sends the
    /// pages of a node's subscribers over every stream that is up, in turn: each page
    /// and the barrier that confirms it travel on one stream (which the server reads in
    /// order), and a subscriber's notifications of one batch are all in one page.
    pub fn start(
        store: Arc<dyn FanoutStore>,
        links: Vec<Link>,
        service: &BareJid,
        settings: Settings,
    ) -> Fanout {
        let process = uuid::Uuid::new_v4();
        tracing::info!(workers = settings.workers, connections = links.len(), %process, "fan-out engine started");
        let (stop, stop_rx) = watch::channel(false);
        let (wake, wake_rx) = watch::channel(0u64);
        let wake = Arc::new(wake);
        let workers = settings.workers.max(1);
        let idle_claims = Arc::new(worker::IdleClaims::default());
        let contexts: Vec<Arc<Context>> = (0..links.len())
            .map(|own| {
                let mut links = links.clone();
                links.rotate_left(own);
                Arc::new(Context {
                    store: store.clone(),
                    out: links[0].out.clone(),
                    links,
                    service: service.to_string(),
                    process,
                    liveness: store.liveness(),
                    settings: settings.clone(),
                    turn: Default::default(),
                    wake: wake.clone(),
                    idle_claims: idle_claims.clone(),
                })
            })
            .collect();
        let mut tasks = vec![
            tokio::spawn(wakeup::on_sessions_ending(
                store.liveness(),
                wake.clone(),
                stop_rx.clone(),
            )),
            tokio::spawn(wakeup::run(store, wake, stop_rx.clone())),
        ];
        if contexts.is_empty() {
            tracing::error!("fan-out engine has no connection to send on");
            return Fanout { stop, tasks };
        }
        tasks.extend((0..workers).map(|i| {
            tokio::spawn(worker::run(
                contexts[i % contexts.len()].clone(),
                i,
                wake_rx.clone(),
                stop_rx.clone(),
            ))
        }));
        Fanout { stop, tasks }
    }

    /// Stops the engine: each worker finishes the page it is on (the connection must
    /// still be up, so call this before closing it), saves its cursor and gives its
    /// lease back. Waits for all of them.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            if let Err(e) = task.await {
                tracing::warn!(error = %e, "fan-out task failed");
            }
        }
        tracing::info!("fan-out engine stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(page_size: u32) -> Settings {
        Settings {
            workers: 1,
            page_size,
            lease: Duration::from_secs(30),
            poll: POLL_INTERVAL,
            limits: ClaimLimits {
                max_jobs: MAX_BATCH_JOBS,
                max_bytes: MAX_BATCH_BYTES,
                max_nodes: MAX_CLAIM_NODES,
            },
            multicast: None,
        }
    }

    #[test]
    fn pages_shrink_as_batches_grow_but_never_below_one_subscription() {
        let s = settings(500);
        assert_eq!(s.subscriptions_per_page(1), 500);
        assert_eq!(s.subscriptions_per_page(0), 500);
        assert_eq!(s.subscriptions_per_page(16), 256);
        assert_eq!(s.subscriptions_per_page(256), 16);
        assert_eq!(s.subscriptions_per_page(100_000), 1);
        assert_eq!(settings(10_000).subscriptions_per_page(1), 10_000);
    }

    #[test]
    fn a_claim_is_fenced_after_two_failed_renewals_and_before_its_lease_runs_out() {
        let s = settings(500);
        assert_eq!(s.unrenewed_limit(), Duration::from_secs(25));
        assert!(s.unrenewed_limit() > 2 * s.renew_every());
        assert!(s.unrenewed_limit() < s.lease);
    }
}
