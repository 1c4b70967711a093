//! The store: everything pubsubd keeps, behind the [`Store`] trait.
//!
//! Handlers and the fan-out engine only see the trait. Two backends implement it with
//! the same semantics: [`postgres`] (production, and the only one several pubsubd
//! processes can share) and [`sqlite`] (an embedded file for trying pubsubd out and
//! for small single-instance installations). The store owns persistence and
//! transactions; it does not decide who may do what (that is `domain`), and it never
//! builds stanzas.

pub mod archive;
pub mod claims;
pub mod decode;
pub mod item_seq;
pub mod job_events;
pub mod jobs;
pub mod postgres;
pub mod records;
pub mod sql;
pub mod sqlite;
pub mod status;

use async_trait::async_trait;
use xmpp_parsers::jid::{BareJid, Jid};

use crate::domain::error::FailureKind;
use crate::domain::{
    AccessModel, Affiliation, ItemId, NodeConfig, NodeId, SubId, SubscribeOptions,
    SubscriptionState,
};
pub use archive::ArchiveStore;
pub use item_seq::{ItemSeqStore, SeqItem};
use jobs::NewJob;
pub use records::{
    AffiliationChange, BatchedPublish, ItemRecord, ItemsPage, ItemsQuery, NewItem, NodeAccess,
    NodeRecord, Refusal, SubscriptionRecord,
};

/// What can go wrong in the store, by kind ([`StoreError::kind`]): the front ends answer
/// a database that is down with "try again later" (XMPP `wait`, HTTP 503 with
/// `Retry-After`) and anything else as an internal error, never with a panic.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached, the connection broke, or no connection (or
    /// SQLite's write lock) came in time.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A unique key was taken by a concurrent change.
    #[error("conflicting change: {0}")]
    Conflict(String),
    /// Another rule of the schema refused the change.
    #[error("constraint violated: {0}")]
    Constraint(String),
    /// Stored data pubsubd cannot read.
    #[error("stored data unreadable: {0}")]
    Corrupt(String),
    /// Any other failure of a statement.
    #[error("database error: {0}")]
    Backend(String),
    /// A migration failed.
    #[error("migration failed: {0}")]
    Migrate(String),
    /// The SQLite file is used by another pubsubd process: an SQLite store serves one
    /// instance only. The message says which file and what to do.
    #[error("{0}")]
    InUse(String),
}

impl StoreError {
    /// The kind of failure, as the front ends answer it.
    pub fn kind(&self) -> FailureKind {
        match self {
            StoreError::Unavailable(_) => FailureKind::Unavailable,
            StoreError::Conflict(_) => FailureKind::Conflict,
            StoreError::Constraint(_) => FailureKind::Constraint,
            StoreError::Corrupt(_) => FailureKind::Corrupt,
            StoreError::Backend(_) | StoreError::Migrate(_) | StoreError::InUse(_) => {
                FailureKind::Other
            }
        }
    }
}

/// PostgreSQL's SQLSTATE classes and codes that mean the server cannot serve now: class
/// 08 (connection exception), 57P01-57P03 (terminated by an administrator, crashed,
/// starting up), 53300 (too many connections), and 55000, which is what a new
/// connection gets from a database that does not accept connections (`ALLOW_CONNECTIONS
/// false`, during maintenance; no statement of pubsubd's can cause it otherwise).
fn pg_unavailable(code: &str) -> bool {
    code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03" | "53300" | "55000")
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        use sqlx::error::ErrorKind;
        let text = e.to_string();
        match &e {
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::Tls(_) => StoreError::Unavailable(text),
            // SQLite's "database is locked": a writer waited longer than its busy
            // timeout. Like a pool timeout, it is worth trying again later.
            busy if sqlite::is_busy(busy) => StoreError::Unavailable(text),
            sqlx::Error::Database(db) => match db.kind() {
                _ if db.code().is_some_and(|c| pg_unavailable(&c)) => StoreError::Unavailable(text),
                ErrorKind::UniqueViolation => StoreError::Conflict(text),
                ErrorKind::ForeignKeyViolation
                | ErrorKind::NotNullViolation
                | ErrorKind::CheckViolation => StoreError::Constraint(text),
                _ => StoreError::Backend(text),
            },
            sqlx::Error::Decode(_)
            | sqlx::Error::ColumnDecode { .. }
            | sqlx::Error::ColumnNotFound(_)
            | sqlx::Error::ColumnIndexOutOfBounds { .. }
            | sqlx::Error::TypeNotFound { .. } => StoreError::Corrupt(text),
            _ => StoreError::Backend(text),
        }
    }
}

/// Service-wide counts for `pubsubd stats`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stats {
    pub nodes: u64,
    pub items: u64,
    pub subscriptions: u64,
    pub pending_subscriptions: u64,
    pub affiliations: u64,
    pub jobs_pending: u64,
    pub oldest_job_age_seconds: f64,
}

/// One node as listed in disco#items.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeListing {
    pub name: String,
    pub title: Option<String>,
}

/// Every persistence operation pubsubd needs: one trait per kind of thing stored, so
/// each backend file implements one narrow interface.
pub trait Store:
    ServiceStore
    + NodeStore
    + ItemStore
    + SubscriptionStore
    + AffiliationStore
    + ItemSeqStore
    + ArchiveStore
    + CollectionStore
{
}

impl<
        T: ServiceStore
            + NodeStore
            + ItemStore
            + SubscriptionStore
            + AffiliationStore
            + ItemSeqStore
            + ArchiveStore
            + CollectionStore,
    > Store for T
{
}

/// Service-wide operations: health, metrics, retention, node listing.
/// Gives the store a tag unless it has one, and reads the tag back: written once for
/// both backends (`$1` binds positionally on SQLite too).
pub const STORE_TAG_SQL: &str = "INSERT INTO store_identity (singleton, tag) VALUES (TRUE, $1)
     ON CONFLICT (singleton) DO UPDATE SET tag = store_identity.tag
     RETURNING tag";

#[async_trait]
pub trait ServiceStore: Send + Sync + 'static {
    /// Checks that the store answers (readiness).
    async fn health(&self) -> Result<(), StoreError>;

    /// Fan-out backlog for metrics: pending jobs, the oldest job's age in seconds, and
    /// how many distinct processes hold leases right now.
    async fn fanout_backlog(&self) -> Result<(u64, f64, u64), StoreError>;

    /// The store's tag: a random number given to the store once and the same for every
    /// process attached to it (see `migrations/0008_store_identity.sql`).
    async fn store_tag(&self) -> Result<u64, StoreError> {
        let candidate: i64 = rand::random();
        let tag: i64 = self.store_tag_with(candidate).await?;
        Ok(tag as u64)
    }

    /// Gives the store `candidate` as its tag unless it has one, and returns the tag
    /// it has. One statement, the same on both backends ([`STORE_TAG_SQL`]).
    async fn store_tag_with(&self, candidate: i64) -> Result<i64, StoreError>;

    /// The backlog for the status page, with at most `limit` lease holders (the
    /// busiest first).
    async fn status_backlog(&self, limit: u32) -> Result<status::Backlog, StoreError>;

    /// The `limit` largest live nodes by subscribers and by items. Counts whole tables
    /// by index: for an operator's page refreshed every few tens of seconds, not for
    /// every request.
    async fn largest_nodes(&self, limit: u32) -> Result<status::NodeRanking, StoreError>;

    /// Service-wide counts (exact; meant for operators, not for hot paths).
    async fn stats(&self) -> Result<Stats, StoreError>;

    /// Deletes at most `batch` items older than their node's `item_expire`, oldest
    /// first, and returns how many went. Small batches keep each transaction short so
    /// fan-out and publishes never wait behind retention.
    async fn expire_items(&self, batch: u32) -> Result<u64, StoreError>;

    /// Adds the item count changes that publishes, retractions, purges and expiry left
    /// (`item_count_changes`) of at most `batch` nodes to their counts, in one
    /// statement, and returns of how many nodes (the changes of a deleted node are
    /// dropped, and count). It waits for no lock: a node whose row another transaction
    /// holds keeps its changes for a later fold. Readers see the same exact count
    /// before and after; folding only keeps what they add up short. A no-op where the
    /// triggers update the node's row at once (SQLite).
    async fn fold_item_counts(&self, batch: u32) -> Result<u64, StoreError>;

    /// Nodes in name order, starting after `after`, at most `limit`; with the total count.
    /// With a `viewer`, whitelist nodes appear only if the viewer is affiliated with
    /// them (and not an outcast).
    async fn list_nodes(
        &self,
        after: Option<&str>,
        limit: u32,
        viewer: Option<&BareJid>,
    ) -> Result<(Vec<NodeListing>, u64), StoreError>;
}

/// Nodes: lookup, creation, configuration, deletion.
///
/// Every change that subscribers must hear about takes its [`NewJob`]s and commits them
/// in the same transaction as the change.
#[async_trait]
pub trait NodeStore: Send + Sync + 'static {
    /// The live node called `name`.
    async fn node(&self, name: &NodeId) -> Result<Option<NodeRecord>, StoreError>;

    /// The node and the requester's standing with it, in one read.
    async fn node_access(
        &self,
        name: &NodeId,
        requester: &BareJid,
    ) -> Result<Option<NodeAccess>, StoreError>;

    /// [`node_access`](Self::node_access) for several nodes, in the order of `names`:
    /// one read for a run of publishes to different nodes.
    async fn node_accesses(
        &self,
        names: &[NodeId],
        requester: &BareJid,
    ) -> Result<Vec<Option<NodeAccess>>, StoreError>;

    /// Creates a node owned by `owner` with the links of its configuration form, in one
    /// transaction; `Err(Refusal::NodeExists)` if the name is taken,
    /// `Err(Refusal::Links(_))` if the links are refused (as
    /// [`CollectionStore::change_links`] refuses them), and then nothing is created.
    async fn create_node(
        &self,
        name: &NodeId,
        config: &NodeConfig,
        owner: &BareJid,
        links: &NodeLinks,
    ) -> Result<Result<NodeRecord, Refusal>, StoreError>;

    /// How many nodes `owner` owns (for the per-owner quota).
    async fn owned_nodes(&self, owner: &BareJid) -> Result<u64, StoreError>;

    /// Live nodes whose access model is decided by rosters (`presence`, `roster`) and
    /// that have subscriptions, in `pk` order after `after_pk`, at most `limit`: what the
    /// revocation sweep re-judges.
    async fn roster_nodes(&self, after_pk: i64, limit: u32) -> Result<Vec<NodeRecord>, StoreError>;

    /// The owners of such nodes, in the order of their stored JIDs after `after` (`""`:
    /// from the start), at most `limit`: the revocation sweep's keyset walk. Each comes
    /// as its stored key (the next cursor) and its decoded JID, so a JID that no longer
    /// parses is skipped by the walk, not a wall it stops at.
    async fn roster_node_owners(
        &self,
        after: &str,
        limit: u32,
    ) -> Result<Vec<(String, Result<BareJid, StoreError>)>, StoreError>;

    /// Such nodes owned by `owner`, in `pk` order, at most `limit`, each row decoded on
    /// its own: a node that does not decode (a corrupt configuration) is its own error,
    /// not the others'.
    async fn owned_roster_nodes(
        &self,
        owner: &BareJid,
        limit: u32,
    ) -> Result<Vec<Result<NodeRecord, StoreError>>, StoreError>;

    /// Replaces the configuration, keeps only the newest `keep_items` items, makes the
    /// links of the configuration form and queues `jobs`, in one transaction: all of it
    /// or nothing. Links are refused (`Err(Refusal::Links(_))`) as
    /// [`CollectionStore::change_links`] refuses them, and also when a collection would
    /// hold more children than the `children_max` of `config`.
    async fn configure_node(
        &self,
        pk: i64,
        config: &NodeConfig,
        keep_items: u32,
        links: &NodeLinks,
        jobs: Vec<NewJob>,
    ) -> Result<Result<(), Refusal>, StoreError>;

    /// Deletes the node. With a job, the node is marked deleted and the fan-out engine
    /// removes it once subscribers are told; without, it goes at once.
    async fn delete_node(&self, pk: i64, job: Option<NewJob>) -> Result<(), StoreError>;
}

/// Items: publish, retract, purge, retrieval.
#[async_trait]
pub trait ItemStore: Send + Sync + 'static {
    /// Stores `item` (replacing one with the same id, which then counts as newest),
    /// keeps only the newest `keep_items`, and queues `jobs`, in one transaction. With
    /// `item = None` (a node that does not persist items) only the jobs are queued.
    async fn publish(
        &self,
        node_pk: i64,
        item: Option<NewItem>,
        keep_items: u32,
        jobs: Vec<NewJob>,
    ) -> Result<Result<(), Refusal>, StoreError>;

    /// Commits several common publishes (each an item and its one job) at once, in
    /// order, as [`ItemStore::publish`] would one after the other; the caller never
    /// puts the same item of a node twice in one batch. All of them or none.
    /// Backends without a faster way do them one by one.
    async fn publish_batch(&self, batch: &[BatchedPublish]) -> Result<(), StoreError> {
        for p in batch {
            self.publish(p.node_pk, Some(p.item.clone()), p.keep, vec![p.job.clone()])
                .await?
                .map_err(|r| StoreError::Backend(format!("publish refused: {r:?}")))?;
        }
        Ok(())
    }

    /// The publisher of an item, if the item exists.
    async fn item_publisher(&self, node_pk: i64, id: &ItemId)
        -> Result<Option<String>, StoreError>;

    /// Deletes the items; returns the ids that existed. `jobs` are queued only if at
    /// least one did.
    async fn retract(
        &self,
        node_pk: i64,
        ids: &[ItemId],
        jobs: Vec<NewJob>,
    ) -> Result<Vec<ItemId>, StoreError>;

    /// Deletes every item of the node and queues `jobs`.
    async fn purge(&self, node_pk: i64, jobs: Vec<NewJob>) -> Result<(), StoreError>;

    /// Items newest first, as `query` asks.
    async fn items(&self, node_pk: i64, query: &ItemsQuery) -> Result<ItemsPage, StoreError>;

    /// The newest item of the node.
    async fn last_item(&self, node_pk: i64) -> Result<Option<ItemRecord>, StoreError>;

    /// How many items the node holds.
    async fn item_count(&self, node_pk: i64) -> Result<u64, StoreError>;
}

/// Subscriptions.
#[async_trait]
pub trait SubscriptionStore: Send + Sync + 'static {
    /// Creates the subscription of `jid` with `subid`, or returns the existing one
    /// unchanged (`created = false`); queues `jobs` only when it was created.
    async fn subscribe(
        &self,
        node_pk: i64,
        jid: &Jid,
        subid: &SubId,
        state: SubscriptionState,
        options: &SubscribeOptions,
        jobs: Vec<NewJob>,
    ) -> Result<(SubscriptionRecord, bool), StoreError>;

    /// Removes one subscription; returns it if it existed.
    async fn unsubscribe(
        &self,
        node_pk: i64,
        jid: &Jid,
        subid: Option<&SubId>,
        jobs: Vec<NewJob>,
    ) -> Result<Option<SubscriptionRecord>, StoreError>;

    /// Removes the subscription `subscription_pk` as the revocation sweep judged it, in
    /// one statement that checks the judgement still holds: the node is live and still
    /// of `access_model`, and the subscriber has no owner, publisher or member
    /// affiliation with it. `jobs` commit with the removal. Returns whether it was
    /// removed.
    async fn revoke_subscription(
        &self,
        subscription_pk: i64,
        access_model: AccessModel,
        jobs: Vec<NewJob>,
    ) -> Result<bool, StoreError>;

    /// Changes a subscription's state and options; `jobs` commit with the change.
    async fn update_subscription(
        &self,
        pk: i64,
        state: SubscriptionState,
        options: &SubscribeOptions,
        jobs: Vec<NewJob>,
    ) -> Result<(), StoreError>;

    /// Every subscription to the node, in subscription order, at most `limit`.
    async fn node_subscriptions(
        &self,
        node_pk: i64,
        limit: u32,
    ) -> Result<Vec<SubscriptionRecord>, StoreError>;

    /// The subscriptions of a bare JID (and its full JIDs) across the service, or on one
    /// node.
    async fn jid_subscriptions(
        &self,
        jid: &BareJid,
        node_pk: Option<i64>,
    ) -> Result<Vec<SubscriptionRecord>, StoreError>;

    /// How many subscriptions a bare JID holds across the service.
    async fn count_jid_subscriptions(&self, jid: &BareJid) -> Result<u64, StoreError>;

    /// Active subscriptions of the node.
    async fn count_subscribers(&self, node_pk: i64) -> Result<u64, StoreError>;
}

/// Affiliations.
/// A change of the links between collections and their children (XEP-0248), by node pk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkChange {
    /// Adds `child` to `parent` (nothing if linked already).
    Associate { parent: i64, child: i64 },
    /// Removes `child` from `parent`.
    Dissociate { parent: i64, child: i64 },
    /// Makes `parents` the whole set of `child`'s parents.
    SetParents { child: i64, parents: Vec<i64> },
    /// Makes `children` the whole set of `parent`'s children.
    SetChildren { parent: i64, children: Vec<i64> },
}

impl LinkChange {
    /// The node every cycle the change could make passes through (`None`: removing a
    /// link makes none).
    pub fn pivot(&self) -> Option<i64> {
        match self {
            LinkChange::Associate { child, .. } | LinkChange::SetParents { child, .. } => {
                Some(*child)
            }
            LinkChange::SetChildren { parent, .. } => Some(*parent),
            LinkChange::Dissociate { .. } => None,
        }
    }

    /// The collections that may hold more children after the change.
    pub fn growing_parents(&self) -> Vec<i64> {
        match self {
            LinkChange::Associate { parent, .. } | LinkChange::SetChildren { parent, .. } => {
                vec![*parent]
            }
            LinkChange::SetParents { parents, .. } => parents.clone(),
            LinkChange::Dissociate { .. } => vec![],
        }
    }

    /// Whether the change links a node to itself.
    pub fn links_itself(&self) -> bool {
        match self {
            LinkChange::Associate { parent, child } => parent == child,
            LinkChange::Dissociate { .. } => false,
            LinkChange::SetParents { child, parents } => parents.contains(child),
            LinkChange::SetChildren { parent, children } => children.contains(parent),
        }
    }
}

/// The links a configuration form gives a node (XEP-0248 §6.2), by pk: each a whole
/// new set when present (`pubsub#collection`: its parents; `pubsub#children`: its
/// children), unchanged when `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeLinks {
    pub parents: Option<Vec<i64>>,
    pub children: Option<Vec<i64>>,
}

impl NodeLinks {
    /// The changes that make these the links of node `pk`.
    pub fn changes(&self, pk: i64) -> Vec<LinkChange> {
        let mut changes = Vec::new();
        if let Some(parents) = &self.parents {
            changes.push(LinkChange::SetParents {
                child: pk,
                parents: parents.clone(),
            });
        }
        if let Some(children) = &self.children {
            changes.push(LinkChange::SetChildren {
                parent: pk,
                children: children.clone(),
            });
        }
        changes
    }

    /// Whether the form changes no link.
    pub fn is_empty(&self) -> bool {
        self.parents.is_none() && self.children.is_none()
    }
}

/// Why a link change was not made (nothing changed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkRefusal {
    /// A node would become its own ancestor.
    Cycle,
    /// A parent would hold more children than its `children_max`.
    TooManyChildren,
    /// The nodes to dissociate are not linked.
    NotLinked,
}

/// The links between collection nodes and their children.
#[async_trait]
pub trait CollectionStore: Send + Sync + 'static {
    /// Makes `change` in one transaction, serialised with every other link change, and
    /// keeps it only if no node becomes its own ancestor and each collection that
    /// gained children holds at most its `children_max` afterwards (read in the same
    /// transaction).
    async fn change_links(
        &self,
        change: &LinkChange,
    ) -> Result<Result<(), LinkRefusal>, StoreError>;

    /// The names of the live children of node `pk`, in name order.
    async fn children(&self, pk: i64) -> Result<Vec<NodeId>, StoreError>;

    /// The names of the live collections node `pk` is a child of, in name order.
    async fn parents(&self, pk: i64) -> Result<Vec<NodeId>, StoreError>;
}

#[async_trait]
pub trait AffiliationStore: Send + Sync + 'static {
    /// Every stored affiliation of the node (never `none`).
    async fn node_affiliations(
        &self,
        node_pk: i64,
    ) -> Result<Vec<(BareJid, Affiliation)>, StoreError>;

    /// The affiliations of a bare JID across the service, or with one node.
    async fn jid_affiliations(
        &self,
        jid: &BareJid,
        node_pk: Option<i64>,
    ) -> Result<Vec<(NodeId, Affiliation)>, StoreError>;

    /// Applies the changes atomically; an outcast loses its subscriptions.
    /// `Err(Refusal::LastOwner)` if no owner would be left, and nothing changes.
    async fn set_affiliations(
        &self,
        node_pk: i64,
        changes: &[AffiliationChange],
    ) -> Result<Result<(), Refusal>, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlx_errors_are_classified_by_whether_trying_again_can_help() {
        let kind = |e: sqlx::Error| StoreError::from(e).kind();
        assert_eq!(kind(sqlx::Error::PoolTimedOut), FailureKind::Unavailable);
        assert_eq!(kind(sqlx::Error::PoolClosed), FailureKind::Unavailable);
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(kind(sqlx::Error::Io(refused)), FailureKind::Unavailable);
        assert_eq!(
            kind(sqlx::Error::Decode("bad".into())),
            FailureKind::Corrupt
        );
        assert_eq!(kind(sqlx::Error::RowNotFound), FailureKind::Other);
        assert!(pg_unavailable("08006") && pg_unavailable("57P01") && pg_unavailable("55000"));
        assert!(!pg_unavailable("23505") && !pg_unavailable("42P01"));
    }
}
