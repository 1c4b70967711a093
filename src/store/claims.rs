//! What the fan-out engine needs from the store, behind [`FanoutStore`]: claiming jobs
//! under a lease, walking a node's subscribers in keyset pages, recording progress, and
//! the presence of subscribers' resources.
//!
//! Kept apart from [`super::Store`] (the request side's trait) so either can grow without
//! the other; a backend implements both. Everything here is backend-neutral: times are
//! [`Duration`]s, owners are UUIDs, positions are subscription keys. Nothing here builds
//! stanzas or decides who receives what (that is `crate::fanout`).

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::watch;

use super::jobs::{JobKind, JobTarget, NewJob};
use super::StoreError;
use crate::domain::{Affiliation, NodeConfig, ShowValue, SubscribeOptions};

/// Who holds a lease: one worker of one pubsubd process. A lease names its owner so that
/// only the owner can move the cursor or complete the job, and so that a job whose owner
/// died is recognisable (its lease runs out) and taken over, even by another worker of
/// the same process (after a database outage longer than the lease, say).
///
/// The workers of one process share all but the last 16 bits, so counting distinct
/// `left(lease_owner::text, 32)` counts processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LeaseOwner(pub uuid::Uuid);

impl LeaseOwner {
    /// The owner identity of worker `index` of the process `process`.
    pub fn for_worker(process: uuid::Uuid, index: usize) -> Self {
        let mut bytes = *process.as_bytes();
        let index = u16::try_from(index).unwrap_or(u16::MAX).to_be_bytes();
        bytes[14..].copy_from_slice(&index);
        LeaseOwner(uuid::Uuid::from_bytes(bytes))
    }
}

impl std::fmt::Display for LeaseOwner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// A liveness session of one process: while the backend holds it, the claims made
/// under it are alive; once it is gone (the process died, or lost its connection) they
/// are free for anyone to take over, without waiting for their lease to run out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionKey(pub i32);

/// Whether this process's claims are still its own, as far as its liveness session
/// tells: the fence the engine checks before it sends for a claim.
///
/// A backend that ties claims to the owner's life (PostgreSQL) publishes the current
/// session here, and `None` while it has none (it lost the old one and is opening
/// another). A claim made under a session may be served only while that very session
/// is current: a process that lost its session must stop sending for the claims of
/// that session, since others may already have taken them over. It also tells when
/// another process's session ended, whose claims are free from then on. A backend
/// without sessions (SQLite, where the next start clears every lease) or a store opened
/// without one leaves leases to their timer alone: [`Liveness::timer_only`].
#[derive(Debug, Clone)]
pub struct Liveness(Option<Sessions>);

#[derive(Debug, Clone)]
struct Sessions {
    current: watch::Receiver<Option<SessionKey>>,
    /// Bumped whenever another session of the store was seen to end.
    ended: watch::Receiver<u64>,
}

impl Liveness {
    /// Claims need no session: only their lease timer frees them.
    pub fn timer_only() -> Self {
        Liveness(None)
    }

    /// Claims are tied to the session `current` publishes; `ended` is bumped whenever
    /// another process's session ends.
    pub fn sessions(
        current: watch::Receiver<Option<SessionKey>>,
        ended: watch::Receiver<u64>,
    ) -> Self {
        Liveness(Some(Sessions { current, ended }))
    }

    /// The session to record in a claim made now: `None` for timer-only leases, an
    /// error while the process has no session (it must not claim then, or the claim
    /// would be tied to nothing).
    pub fn for_claim(&self) -> Result<Option<SessionKey>, StoreError> {
        match &self.0 {
            None => Ok(None),
            Some(s) => match *s.current.borrow() {
                Some(key) => Ok(Some(key)),
                None => Err(StoreError::Unavailable(
                    "no liveness session (re-establishing it)".into(),
                )),
            },
        }
    }

    /// Whether a claim made under `session` may still be served.
    pub fn holds(&self, session: Option<SessionKey>) -> bool {
        match &self.0 {
            None => true,
            Some(s) => session.is_some() && *s.current.borrow() == session,
        }
    }

    /// Resolves once a claim made under `session` may no longer be served (never for
    /// timer-only leases). The session's keeper going away counts as losing it.
    pub async fn lost(&self, session: Option<SessionKey>) {
        match &self.0 {
            None => std::future::pending().await,
            Some(s) => {
                let mut current = s.current.clone();
                let _ = current
                    .wait_for(|now| session.is_none() || *now != session)
                    .await;
            }
        }
    }

    /// Resolves when another process's session has ended since the last call on this
    /// handle (never for timer-only leases, nor once the keeper is gone): its claims
    /// are free, and idle workers should look for them.
    pub async fn another_ended(&mut self) {
        let changed = match &mut self.0 {
            Some(s) => s.ended.changed().await.is_ok(),
            None => false,
        };
        if !changed {
            std::future::pending::<()>().await;
        }
    }
}

/// How much one claim may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClaimLimits {
    /// Most jobs in one batch.
    pub max_jobs: u32,
    /// Most payload bytes in one batch (the first job is taken whatever its size), so a
    /// run of large payloads cannot make a batch big in memory.
    pub max_bytes: u64,
    /// Most nodes in one claim ([`FanoutStore::claim_batches`]). The job and byte
    /// limits then bound the claim as a whole (the first node's batch is taken whole).
    pub max_nodes: u32,
}

/// One claimed job.
#[derive(Debug, Clone)]
pub struct ClaimedJob {
    pub id: i64,
    pub kind: JobKind,
    /// The message's children, ready to wrap.
    pub payload_xml: String,
    /// `type='headline'` (else `normal`).
    pub headline: bool,
    pub target: JobTarget,
}

/// Consecutive jobs of one node, claimed together under one lease.
///
/// Either every job targets the node's subscribers and all share one cursor (they are
/// walked together, page by page), or every job targets one JID. A `delete` job is
/// always the last of its batch.
#[derive(Debug, Clone)]
pub struct ClaimedBatch {
    pub node_pk: i64,
    /// The node's name, if its row still exists (for logs).
    pub node_name: Option<String>,
    /// The node's configuration (defaults if its row is gone or unreadable).
    pub config: NodeConfig,
    /// Subscriptions with `pk <= cursor` have been served and confirmed.
    pub cursor: i64,
    /// In id order (publish order).
    pub jobs: Vec<ClaimedJob>,
    /// The liveness session the claim was made under (see [`Liveness`]); `None` for a
    /// timer-only lease.
    pub session: Option<SessionKey>,
    /// The live collections above the node (XEP-0248), read with the claim: their
    /// subscribers are walked with the node's own.
    pub collections: Vec<CollectionAbove>,
}

/// A collection above a claimed node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectionAbove {
    pub pk: i64,
    /// Its NodeID, for the `Collection` header of what arrives through it.
    pub name: String,
    /// A direct parent (every subscription counts), else an ancestor further up (only
    /// subscriptions of depth `all` count).
    pub direct: bool,
}

impl ClaimedBatch {
    /// The ids of the batch's jobs, in order.
    pub fn job_ids(&self) -> Vec<i64> {
        self.jobs.iter().map(|j| j.id).collect()
    }

    /// Whether the batch walks the node's subscribers (else each job has one target).
    pub fn walks_subscribers(&self) -> bool {
        self.jobs
            .first()
            .is_some_and(|j| j.target == JobTarget::Subscribers)
    }

    /// Whether subscriptions to collections above the node are walked too.
    pub fn through_collections(&self) -> bool {
        !self.collections.is_empty()
    }

    /// Whether completing the batch removes the node (it carries a `delete` job).
    pub fn deletes_node(&self) -> bool {
        self.jobs.iter().any(|j| j.kind == JobKind::Delete)
    }
}

/// One subscription as the walk sees it.
#[derive(Debug, Clone)]
pub struct Subscriber {
    /// Position in the walk (the cursor's unit).
    pub pk: i64,
    /// The subscribed JID, bare or full.
    pub jid: String,
    pub bare_jid: String,
    pub subid: String,
    pub options: SubscribeOptions,
    /// The same bare JID has another active subscription to this node, so its
    /// notifications carry a SubID header.
    pub shares_bare_jid: bool,
    /// The collection this subscription is to, when it is not to the node itself: its
    /// notifications carry a `Collection` header (XEP-0248 §4.3).
    pub via: Option<String>,
}

/// A keyset page of subscriptions through collections, with the facts that say which
/// leaf each subscriber may read ([`FanoutStore::collection_subscribers`]).
#[derive(Debug, Clone, Default)]
pub struct CollectionPage {
    /// In `pk` order, each with `via` set.
    pub subscribers: Vec<Subscriber>,
    /// Every affiliation the page's bare JIDs hold with the leaves asked about; a bare
    /// JID and leaf not listed have none.
    pub affiliations: Vec<LeafAffiliation>,
}

/// A subscriber's affiliation with a leaf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafAffiliation {
    pub leaf_pk: i64,
    pub bare_jid: String,
    pub affiliation: Affiliation,
}

/// An available resource of a subscriber.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    /// Full JID (or bare, if the sender had no resource).
    pub jid: String,
    pub bare_jid: String,
    pub show: ShowValue,
}

/// A node's last item, for a subscriber whose resource just came online, with what is
/// needed to render and filter it.
#[derive(Debug, Clone)]
pub struct LastItem {
    pub node_pk: i64,
    pub node_name: String,
    pub config: NodeConfig,
    /// The options of the subscription that asks for it.
    pub options: SubscribeOptions,
    pub item_id: String,
    /// Full JID of the publisher.
    pub publisher: String,
    /// Serialised payload, `None` for a notification-only item.
    pub payload: Option<String>,
    pub published_at: DateTime<Utc>,
}

/// Waits for "new jobs may be there" signals from other processes and requests.
#[async_trait]
pub trait JobListener: Send {
    /// Resolves when jobs may have been queued since the last call (spurious wake-ups
    /// are allowed). An error means the listener is broken: make a new one.
    async fn wait(&mut self) -> Result<(), StoreError>;
}

/// The fan-out engine's persistence operations.
///
/// Leases: a claim marks jobs with the owner, an expiry and the owner's liveness
/// session; only the owner's [`save_cursor`](Self::save_cursor), [`renew`](Self::renew)
/// and [`complete`](Self::complete) take effect, and each reports `false` when the lease
/// is no longer the caller's (its session died or it expired, and another process took
/// the jobs over).
#[async_trait]
pub trait FanoutStore: Send + Sync + 'static {
    /// This process's liveness session, which the engine checks before sending for a
    /// claim. Timer-only unless the backend ties claims to a session.
    fn liveness(&self) -> Liveness {
        Liveness::timer_only()
    }

    /// Claims batches of up to `limits.max_nodes` nodes in one transaction: for each,
    /// consecutive jobs from the head (lowest id) of a node that has no job under a
    /// live lease, oldest head first, within `limits` (per node, and for the claim as a
    /// whole; the first node's batch is taken whole). Jobs of one node are thereby never
    /// worked by two owners at once, and each node's jobs are served in id order. A
    /// lease that ran out, or whose owner's liveness session is gone, counts as free.
    /// The claim records [`liveness`](Self::liveness)'s current session. Empty:
    /// nothing to do.
    ///
    /// Many nodes with a few subscribers each (a node per user or per device) cost one
    /// claim per group of nodes instead of one per node.
    async fn claim_batches(
        &self,
        owner: LeaseOwner,
        lease: Duration,
        limits: ClaimLimits,
    ) -> Result<Vec<ClaimedBatch>, StoreError>;

    /// [`claim_batches`](Self::claim_batches) for one node.
    async fn claim(
        &self,
        owner: LeaseOwner,
        lease: Duration,
        limits: ClaimLimits,
    ) -> Result<Option<ClaimedBatch>, StoreError> {
        let limits = ClaimLimits {
            max_nodes: 1,
            ..limits
        };
        Ok(self
            .claim_batches(owner, lease, limits)
            .await?
            .into_iter()
            .next())
    }

    /// Extends the lease on `jobs`; `false` if they are no longer all the owner's.
    async fn renew(
        &self,
        owner: LeaseOwner,
        jobs: &[i64],
        lease: Duration,
    ) -> Result<bool, StoreError>;

    /// Records that every subscription up to `cursor` has been served and confirmed,
    /// and extends the lease; `false` if the lease is lost.
    async fn save_cursor(
        &self,
        owner: LeaseOwner,
        jobs: &[i64],
        cursor: i64,
        lease: Duration,
    ) -> Result<bool, StoreError>;

    /// Deletes the finished `jobs` (of any nodes), and with `delete_node` the node row
    /// `node_pk` as well (with its subscriptions, items and affiliations), in one
    /// transaction; `false` (and no change) if the lease is lost.
    async fn complete(
        &self,
        owner: LeaseOwner,
        jobs: &[i64],
        node_pk: i64,
        delete_node: bool,
    ) -> Result<bool, StoreError>;

    /// Gives the lease on `jobs` back (at shutdown), so another process may continue
    /// from the saved cursor at once.
    async fn release(&self, owner: LeaseOwner, jobs: &[i64]) -> Result<(), StoreError>;

    /// At most `limit` active subscriptions of the node with `pk > after`, in pk order.
    async fn subscribers(
        &self,
        node_pk: i64,
        after: i64,
        limit: u32,
    ) -> Result<Vec<Subscriber>, StoreError>;

    /// One keyset page of the subscriptions that may reach the leaves `leaves` through
    /// the collections `above` (the same collections above each leaf): subscriptions to
    /// a collection of `above` after `after` in `pk` order, at most `limit`; a direct
    /// parent takes every subscription, a collection further up only those of depth
    /// `all`; each with `via` set. Only subscribers who may read one of the leaves by
    /// affiliation are listed: with an affiliation among `readers` with one of them, or
    /// any subscriber if `readers` holds `none` (no affiliation). Which leaf each may
    /// read is the caller's question: the page comes with every affiliation its bare
    /// JIDs hold with the leaves.
    async fn collection_subscribers(
        &self,
        above: &[CollectionAbove],
        leaves: &[i64],
        readers: &[&str],
        after: i64,
        limit: u32,
    ) -> Result<CollectionPage, StoreError>;

    /// For each `(node, limit)`: every active subscription of the node, in pk order,
    /// if it has fewer than `limit`, with `shares_bare_jid` set; `None` if it has
    /// `limit` or more (walk it with [`subscribers`](Self::subscribers) instead).
    /// One call for a group of small nodes instead of one page read each.
    async fn whole_nodes(
        &self,
        nodes: &[(i64, u32)],
    ) -> Result<Vec<Option<Vec<Subscriber>>>, StoreError> {
        let mut found = Vec::with_capacity(nodes.len());
        for &(node_pk, limit) in nodes {
            let page = self.subscribers(node_pk, 0, limit).await?;
            found.push((page.len() < limit as usize).then_some(page));
        }
        Ok(found)
    }

    /// The available resources of these bare JIDs.
    async fn available_resources(&self, bare_jids: &[String]) -> Result<Vec<Resource>, StoreError>;

    /// A listener for newly queued jobs.
    async fn listen(&self) -> Result<Box<dyn JobListener>, StoreError>;

    /// Records `jid` as available with `show`; `true` if it was not available before
    /// (it just came online).
    async fn resource_available(
        &self,
        jid: &str,
        bare_jid: &str,
        show: ShowValue,
    ) -> Result<bool, StoreError>;

    /// Records that the resource `jid` went offline.
    async fn resource_unavailable(&self, jid: &str) -> Result<(), StoreError>;

    /// Forgets every resource of `bare_jid` (it went offline altogether, or stopped
    /// sharing its presence).
    async fn forget_presence(&self, bare_jid: &str) -> Result<(), StoreError>;

    /// For a resource that came online: the last item of every live node that sends its
    /// last item on presence (`send_last_published_item = on_sub_and_presence`) and has
    /// a subscription by `bare_jid` itself or by exactly `full_jid`; one per node.
    async fn last_items_on_presence(
        &self,
        bare_jid: &str,
        full_jid: &str,
    ) -> Result<Vec<LastItem>, StoreError>;

    /// Queues jobs (in one transaction) and wakes the workers.
    async fn queue_jobs(&self, jobs: &[NewJob]) -> Result<(), StoreError>;
}

/// What [`batch_len`] needs to know about a job at the head of a node's queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobHead {
    pub kind: JobKind,
    /// `true` for a job to all subscribers, `false` for one to a single JID.
    pub to_subscribers: bool,
    pub cursor: i64,
    /// Size of the payload, bytes.
    pub payload_bytes: u64,
}

/// How many of a node's first jobs (`heads`, in id order) form one batch: the head
/// always; then, within `limits`, following jobs of the same shape (all to subscribers
/// at the same cursor, so they can be walked together, or all to single JIDs); a
/// `delete` ends the batch, since nothing of the node is left to walk after it.
///
/// Backend-neutral so that every implementation of [`FanoutStore::claim`] batches the
/// same way.
pub fn batch_len(heads: &[JobHead], limits: ClaimLimits) -> usize {
    let Some(first) = heads.first() else {
        return 0;
    };
    let mut len = 1;
    let mut bytes = first.payload_bytes;
    if first.kind == JobKind::Delete {
        return len;
    }
    for next in &heads[1..] {
        let same_shape = next.to_subscribers == first.to_subscribers
            && (!first.to_subscribers || next.cursor == first.cursor);
        bytes = bytes.saturating_add(next.payload_bytes);
        if !same_shape || len >= limits.max_jobs as usize || bytes > limits.max_bytes {
            break;
        }
        len += 1;
        if next.kind == JobKind::Delete {
            break;
        }
    }
    len
}

/// Whether one more node's batch of `jobs` jobs and `bytes` payload bytes fits in a
/// claim that already holds `taken_jobs` and `taken_bytes` (of at least one node):
/// within `limits.max_nodes` nodes, `max_jobs` jobs and `max_bytes` bytes in all.
pub fn claim_has_room(
    nodes: usize,
    taken_jobs: usize,
    taken_bytes: u64,
    jobs: usize,
    bytes: u64,
    limits: ClaimLimits,
) -> bool {
    nodes == 0
        || (nodes < limits.max_nodes as usize
            && taken_jobs + jobs <= limits.max_jobs as usize
            && taken_bytes.saturating_add(bytes) <= limits.max_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: ClaimLimits = ClaimLimits {
        max_jobs: 3,
        max_bytes: 1000,
        max_nodes: 2,
    };

    fn head(kind: JobKind, to_subscribers: bool, cursor: i64, payload_bytes: u64) -> JobHead {
        JobHead {
            kind,
            to_subscribers,
            cursor,
            payload_bytes,
        }
    }

    fn items(cursor: i64) -> JobHead {
        head(JobKind::Items, true, cursor, 100)
    }

    #[test]
    fn workers_of_one_process_own_leases_apart_but_share_a_prefix() {
        let process = uuid::Uuid::new_v4();
        let a = LeaseOwner::for_worker(process, 0);
        let b = LeaseOwner::for_worker(process, 1);
        assert_ne!(a, b);
        assert_eq!(a.to_string()[..32], b.to_string()[..32]);
        assert_eq!(a.to_string().len(), 36);
    }

    #[test]
    fn consecutive_publishes_are_batched_up_to_the_job_limit() {
        assert_eq!(batch_len(&[items(0); 5], LIMITS), 3);
        assert_eq!(batch_len(&[items(0); 2], LIMITS), 2);
        assert_eq!(batch_len(&[], LIMITS), 0);
    }

    #[test]
    fn a_half_walked_job_is_not_batched_with_fresh_ones() {
        assert_eq!(batch_len(&[items(500), items(0), items(0)], LIMITS), 1);
        assert_eq!(batch_len(&[items(500), items(500), items(0)], LIMITS), 2);
    }

    #[test]
    fn single_target_jobs_are_not_mixed_with_walks() {
        let direct = head(JobKind::Direct, false, 0, 10);
        assert_eq!(batch_len(&[items(0), direct, items(0)], LIMITS), 1);
        assert_eq!(batch_len(&[direct, direct, items(0)], LIMITS), 2);
    }

    #[test]
    fn delete_ends_a_batch() {
        let delete = head(JobKind::Delete, true, 0, 10);
        assert_eq!(batch_len(&[items(0), delete, items(0)], LIMITS), 2);
        assert_eq!(batch_len(&[delete, items(0)], LIMITS), 1);
    }

    #[test]
    fn a_claim_of_several_nodes_stays_within_the_limits_but_always_takes_one() {
        assert!(
            claim_has_room(0, 0, 0, 50, 50_000, LIMITS),
            "the first, whatever its size"
        );
        assert!(claim_has_room(1, 1, 100, 2, 900, LIMITS));
        assert!(!claim_has_room(1, 2, 100, 2, 100, LIMITS), "jobs");
        assert!(!claim_has_room(1, 1, 500, 1, 501, LIMITS), "bytes");
        assert!(!claim_has_room(2, 1, 10, 1, 10, LIMITS), "nodes");
    }

    #[test]
    fn payload_bytes_bound_a_batch_but_never_starve_the_head() {
        let big = head(JobKind::Items, true, 0, 5000);
        assert_eq!(batch_len(&[big, items(0)], LIMITS), 1);
        let half = head(JobKind::Items, true, 0, 600);
        assert_eq!(batch_len(&[half, half], LIMITS), 1);
    }
}
