//! What the operator's status page reads of the store: the fan-out backlog, the
//! processes holding fan-out leases, and the largest nodes. Types and the SQL both
//! backends run as it is; the backends run it on their general pool (never the fan-out
//! workers' one).
//!
//! Every read here is bounded by a `LIMIT`. The subscriber ranking counts the rows of a
//! whole table (an index-only scan of `subscriptions_fanout`), the item ranking reads
//! the nodes' counts, so the caller reads them far less often than the backlog.

use crate::store::sql::items::ITEM_COUNT;

/// A node and how many of something it has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSize {
    pub name: String,
    pub count: u64,
}

/// A process holding fan-out leases right now, known by the first 32 characters of
/// its workers' lease owner: the start of the `process` id its log prints at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseHolder {
    pub process: String,
    /// Jobs it holds under a live lease.
    pub jobs: u64,
}

/// The fan-out backlog as the status page shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Backlog {
    pub jobs_pending: u64,
    /// Age of the oldest job, seconds (the fan-out lag).
    pub oldest_job_age_seconds: f64,
    /// The busiest lease holders, at most the limit asked for.
    pub lease_holders: Vec<LeaseHolder>,
}

/// The largest live nodes, each list at most the limit asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeRanking {
    pub by_subscribers: Vec<NodeSize>,
    pub by_items: Vec<NodeSize>,
}

/// Nodes with the most active subscriptions, `$1` at most. Counting per `node_pk`
/// first keeps the scan on the `subscriptions_fanout` index; a node being deleted may
/// take a place in the count and is then left out, so the list can be one short.
pub const NODES_BY_SUBSCRIBERS: &str = "SELECT n.name, c.rows_counted FROM (
         SELECT node_pk, count(*) AS rows_counted FROM subscriptions
         WHERE state = 'subscribed' GROUP BY node_pk ORDER BY count(*) DESC LIMIT $1
     ) c JOIN nodes n ON n.pk = c.node_pk
     WHERE NOT n.deleted ORDER BY c.rows_counted DESC, n.name";

/// Live nodes with the most stored items, `$1` at most: a read of the nodes' rows and
/// their pending count changes ([`ITEM_COUNT`], `migrations/0011_item_counts.sql`),
/// not of the items.
pub fn nodes_by_items() -> String {
    format!(
        "SELECT n.name, {ITEM_COUNT} AS rows_counted FROM nodes n
         WHERE NOT n.deleted
           AND (n.item_count <> 0
                OR n.pk IN (SELECT c.node_pk FROM item_count_changes c))
         ORDER BY rows_counted DESC, n.name LIMIT $1"
    )
}

/// How long PostgreSQL may work on the ranking before it gives up: it counts whole
/// tables (about 0.2 s for 750,000 subscriptions on the 2-core test machine), and a
/// page must not keep a database busy for a ranking nobody waits for. The status page
/// stops waiting after 2 s too.
pub const RANKING_STATEMENT_TIMEOUT_MS: u32 = 2_000;
