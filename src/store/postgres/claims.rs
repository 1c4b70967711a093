//! What PostgreSQL's [`FanoutStore`](crate::store::claims::FanoutStore) adds to the
//! shared part ([`crate::store::sql::claims`]): finding a claim's free nodes, reading
//! small nodes whole, the statistics refresh after a slow read, and presence's upsert.
//!
//! Claiming is safe with several pubsubd processes on one database: candidate nodes are
//! found without locks, then each is serialised by a transaction-scoped advisory lock
//! (so two claimers never both decide a node is free) and its head jobs are row-locked
//! with `FOR UPDATE SKIP LOCKED` (so a claimer never waits behind another transaction).

use std::time::Duration;

use sqlx::PgConnection;

use super::liveness::live_lease;
use super::PgStore;
use crate::domain::ShowValue;
use crate::store::claims::{ClaimLimits, Liveness, Subscriber};
use crate::store::sql::claims::{candidates_sql, mark_shared, subscriber};
use crate::store::StoreError;

/// How many candidate nodes one claim looks at. Nodes are tried oldest head first; most
/// claims succeed on the first, the rest only matter when many claimers race.
const CLAIM_CANDIDATES: i64 = 16;

/// First key of the advisory locks that serialise claims per node (the second key is
/// the node). A fixed, arbitrary value ("psfd") that no other user of advisory locks in
/// this database is expected to pick.
pub(super) const CLAIM_LOCK_CLASS: i32 = 0x7073_6664;

/// How many of the oldest jobs [`OLDEST_CANDIDATES_SQL`] looks at.
const OLDEST_JOBS_SCANNED: i64 = 512;

/// Nodes with pending jobs among the oldest [`OLDEST_JOBS_SCANNED`] jobs, oldest head
/// first, skipping nodes that have a job under a live lease ([`live_lease!`], probed
/// through `fanout_jobs_leased`). A node's first job in id order is its head, so the order is
/// the same as [`candidates_sql`]'s; the cost does not grow with the number of nodes
/// that have jobs (10,000 nodes with a job each: one short index range instead of
/// 10,000 probes per claim). Finds nothing when the oldest jobs all belong to leased
/// nodes (one busy node with a long queue); the claim then falls back to
/// [`candidates_sql`].
///
/// The oldest jobs are grouped by node before the lease probe, so a node is probed once,
/// not once per job: a firehose of 190 queued jobs under lease was probed 190 times by
/// every claim, and a claim took up to 94 ms (91,000 buffers) while a small node's job
/// waited behind it (measured during the mixed benchmark on ejabberd).
///
/// Both queries run unprepared (`persistent(false)`), so PostgreSQL plans them for
/// the table as it is at each claim. A prepared statement switches to a generic plan
/// after five runs and keeps it for the life of the connection. When those runs met a
/// nearly empty queue, that plan answered `NOT EXISTS` by hashing a sequential scan of
/// the whole table. Jobs are inserted, leased (a new row version: the lease is indexed)
/// and deleted, so the table soon holds far more dead rows than live ones; a benchmark
/// of 20,000 publishes to 10,000 nodes (no autovacuum) grew it to 18,000 pages for 300
/// live rows, and every claim read all of them: PostgreSQL used twice pubsubd's CPU.
/// Planned afresh, the probe goes through `fanout_jobs_leased`, a few index pages.
const OLDEST_CANDIDATES_SQL: &str = concat!(
    "
SELECT o.node_pk
FROM (
    SELECT j.node_pk, min(j.id) AS head
    FROM (SELECT id, node_pk FROM fanout_jobs ORDER BY id LIMIT $2) j
    GROUP BY j.node_pk
) o
WHERE NOT EXISTS (
    SELECT 1 FROM fanout_jobs l
    WHERE l.node_pk = o.node_pk AND ",
    live_lease!(),
    "
)
ORDER BY o.head
LIMIT $1"
);

/// The second advisory-lock key of a node. Folding a 64-bit key into 32 bits may make two
/// nodes share a lock; that only makes a claimer skip a node it could have taken.
fn node_lock_key(node_pk: i64) -> i32 {
    node_pk.rem_euclid(i64::from(i32::MAX)) as i32
}

/// Of `candidates`, up to `limits.max_nodes` nodes (in order) that this claim alone
/// may take: each locked with a transaction-scoped advisory lock, and still without a
/// live lease under the lock.
async fn lock_free_nodes(
    conn: &mut PgConnection,
    candidates: &[i64],
    limits: ClaimLimits,
) -> Result<Vec<i64>, StoreError> {
    let want = i64::from(limits.max_nodes.max(1));
    let mut locked = Vec::new();
    let mut rest = candidates;
    // Usually one round: the lock fails only for a node another claimer is on.
    while locked.is_empty() && !rest.is_empty() {
        let keys: Vec<i32> = rest.iter().map(|&pk| node_lock_key(pk)).collect();
        // Rows come in array order and the limit stops the scan, so no more locks
        // are taken than nodes wanted.
        let rows: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT u.node_pk, u.ord
             FROM unnest($1::bigint[], $2::int[]) WITH ORDINALITY AS u(node_pk, key, ord)
             WHERE pg_try_advisory_xact_lock($3, u.key)
             LIMIT $4",
        )
        .bind(rest)
        .bind(&keys)
        .bind(CLAIM_LOCK_CLASS)
        .bind(want)
        .fetch_all(&mut *conn)
        .await?;
        let scanned = if rows.len() as i64 == want {
            rows.iter().map(|r| r.1).max().unwrap_or(0) as usize
        } else {
            rest.len()
        };
        rest = rest.get(scanned..).unwrap_or(&[]);
        if rows.is_empty() {
            continue;
        }
        let nodes: Vec<i64> = rows.iter().map(|r| r.0).collect();
        // Under the locks, with a fresh snapshot: a claim committed since the
        // candidate query is visible now.
        let busy: Vec<i64> = sqlx::query_scalar(concat!(
            "SELECT DISTINCT l.node_pk FROM fanout_jobs l WHERE l.node_pk = ANY($1) AND ",
            live_lease!()
        ))
        .bind(&nodes)
        .fetch_all(&mut *conn)
        .await?;
        locked = nodes.into_iter().filter(|n| !busy.contains(n)).collect();
    }
    Ok(locked)
}

/// Sets `shares_bare_jid` on the subscriptions of the whole node `node_pk` whose bare
/// JID has another subscription among them.
fn mark_shared_bare_jids(node_pk: i64, page: &mut [Subscriber]) {
    let mut bare: Vec<&str> = page.iter().map(|s| s.bare_jid.as_str()).collect();
    bare.sort_unstable();
    let shared: Vec<(i64, String)> = bare
        .windows(2)
        .filter(|w| w[0] == w[1])
        .map(|w| (node_pk, w[0].to_owned()))
        .collect();
    mark_shared(page, &shared, |_| Some(node_pk));
}

/// One keyset page of a node's subscribers to deliver to: those after `$2` in `pk`
/// order, at most `$3`.
///
/// Written so that no statistics can steer it off `subscriptions_fanout (node_pk, pk)`:
/// the row comparison and the upper bound are that index's range, and the order is its
/// order. The plain form (`node_pk = $1 AND pk > $2 ORDER BY pk`) runs as a prepared
/// statement, whose generic plan cannot see that `$1` is a small node; with statistics
/// taken while the table held two big nodes, PostgreSQL chose to walk the primary key
/// from `$2` and filter on the node, reading every later subscription of every node for
/// a page of ten (13 ms with 120,000 rows, and growing with the table). This form reads
/// the page's own index entries whatever the statistics say (`plan_tests`).
pub(super) const SUBSCRIBER_PAGE_SQL: &str = "
SELECT pk, jid, bare_jid, subid, options::text AS options
FROM subscriptions
WHERE (node_pk, pk) > ($1, $2) AND node_pk <= $1 AND state = 'subscribed'
ORDER BY node_pk, pk
LIMIT $3";

/// Several nodes' subscribers at once, for nodes with fewer than their limit. Per node
/// (`$1`, limits in `$2`): count its subscriptions up to its limit (an index range,
/// nothing sent back), and only for a node under its limit, read them (LEFT JOIN: an
/// empty node still answers, with one row of NULLs). A node with no row is one to walk.
///
/// The node is matched as the range `node_pk >= u.node_pk AND node_pk <= u.node_pk`,
/// not by equality, for the same reason as [`SUBSCRIBER_PAGE_SQL`]: the node is a
/// parameter of the lateral join, so the planner estimates its size from the number of
/// distinct nodes alone, and with statistics that counted 3 nodes (taken during an
/// earlier fan-out to a big node) it counted and read each small node by scanning the
/// whole table, once through the primary key and once sequentially: 0.7 s for 32 nodes
/// of 10 in a table of 120,000 rows, 2 s in a benchmark, until the refresh below caught
/// up. As a range it is a `subscriptions_fanout` range scan, 0.7 ms for the same read.
const WHOLE_NODES_SQL: &str = "
SELECT u.ord, s.pk, s.jid, s.bare_jid, s.subid, s.options
FROM unnest($1::bigint[], $2::bigint[]) WITH ORDINALITY AS u(node_pk, lim, ord)
CROSS JOIN LATERAL (
    SELECT count(*) AS n FROM (
        SELECT 1 FROM subscriptions
        WHERE node_pk >= u.node_pk AND node_pk <= u.node_pk AND state = 'subscribed'
        ORDER BY node_pk, pk
        LIMIT u.lim
    ) c
) c
LEFT JOIN LATERAL (
    SELECT pk, jid, bare_jid, subid, options::text AS options
    FROM subscriptions
    WHERE node_pk >= u.node_pk AND node_pk <= u.node_pk AND state = 'subscribed'
    ORDER BY node_pk, pk
) s ON true
WHERE c.n < u.lim
ORDER BY u.ord, s.pk";

/// A subscriber page slower than this means a bad plan (or statistics that no longer
/// describe the table), not a busy database: the page is an indexed keyset read of a
/// few hundred rows and one indexed probe (about 2 ms together). The same holds for
/// reading a claim's small nodes whole (a few hundred rows by the same index).
const SLOW_PAGE: Duration = Duration::from_millis(100);
/// Least time between two statistics refreshes started by slow reads. Short, because
/// the table may still be growing after the last one: one benchmark run analyzed it
/// while a 10,000-subscriber node was being read, then added 100,000 subscriptions to
/// 10,000 new nodes; with statistics that counted 3 nodes, every read of small nodes
/// scanned the whole table (2 s each), and a gap of 10 minutes kept it so for the whole
/// run. `ANALYZE subscriptions` reads a sample (about 30,000 rows) and takes a fraction
/// of a second.
const STATISTICS_REFRESH_GAP: Duration = Duration::from_secs(30);

/// Runs `ANALYZE subscriptions` in the background after a slow read of subscribers (a
/// page, or a claim's small nodes whole; at most once per [`STATISTICS_REFRESH_GAP`]
/// per process).
///
/// Why: right after a burst of new subscriptions (a bulk import, a node that went from
/// nothing to tens of thousands of subscribers within a minute), PostgreSQL's statistics
/// still describe the small table; every index of the node then looks equally cheap and
/// the planner has been seen probing the shares-a-bare-JID test with the wrong one,
/// reading the whole node once per row (2.2 s for one page of a 20,000-subscriber node,
/// when that test was a correlated subquery), or once per page (the probe of today:
/// linear in the node's size, so still worth fixing for a node of millions).
/// Autovacuum would fix the statistics within a minute or so; a fan-out should not wait
/// for it. ANALYZE also invalidates the cached plans, so the next page is planned again.
impl PgStore {
    pub(crate) fn after_subscriber_read(&self, what: &'static str, took: Duration, rows: usize) {
        use std::sync::Mutex;
        static LAST: Mutex<Option<std::time::Instant>> = Mutex::new(None);
        if took < SLOW_PAGE || rows == 0 {
            return;
        }
        {
            let Ok(mut last) = LAST.lock() else { return };
            if last.is_some_and(|t| t.elapsed() < STATISTICS_REFRESH_GAP) {
                return;
            }
            *last = Some(std::time::Instant::now());
        }
        tracing::info!(
            took_ms = took.as_millis() as u64,
            rows,
            "slow {what}: refreshing the planner's statistics (ANALYZE subscriptions)"
        );
        let pool = self.pool().clone();
        tokio::spawn(async move {
            match sqlx::query("ANALYZE subscriptions").execute(&pool).await {
                Ok(_) => tracing::info!("subscriptions analyzed"),
                Err(e) => tracing::warn!(error = %e, "ANALYZE subscriptions failed"),
            }
        });
    }
}

crate::store::sql::fanout_store!(PgStore, {
    fn liveness(&self) -> Liveness {
        self.liveness.clone()
    }

    async fn claim_batches(
        &self,
        owner: LeaseOwner,
        lease: Duration,
        limits: ClaimLimits,
    ) -> Result<Vec<ClaimedBatch>, StoreError> {
        // Before the transaction: a process between sessions claims nothing.
        let session = self.liveness.for_claim()?;
        let mut tx = self.pool().begin().await?;
        // More candidates than nodes wanted: claimers racing for the same oldest nodes
        // each find free ones further down.
        let how_many = CLAIM_CANDIDATES.max(4 * i64::from(limits.max_nodes));
        // Planned at every claim, never from a connection's cached plan: see
        // [`OLDEST_CANDIDATES_SQL`].
        let mut candidates: Vec<i64> = sqlx::query_scalar(OLDEST_CANDIDATES_SQL)
            .bind(how_many)
            .bind(OLDEST_JOBS_SCANNED)
            .persistent(false)
            .fetch_all(&mut *tx)
            .await?;
        if candidates.is_empty() {
            candidates = sqlx::query_scalar(AssertSqlSafe(candidates_sql::<PgStore>()))
                .bind(how_many)
                .persistent(false)
                .fetch_all(&mut *tx)
                .await?;
        }
        let nodes = lock_free_nodes(&mut tx, &candidates, limits).await?;
        Self::lease_batches(tx, &nodes, owner, session, lease, limits).await
    }

    async fn whole_nodes(
        &self,
        nodes: &[(i64, u32)],
    ) -> Result<Vec<Option<Vec<Subscriber>>>, StoreError> {
        if nodes.is_empty() {
            return Ok(Vec::new());
        }
        let started = std::time::Instant::now();
        let pks: Vec<i64> = nodes.iter().map(|n| n.0).collect();
        let limits: Vec<i64> = nodes.iter().map(|n| i64::from(n.1)).collect();
        // One statement for all nodes (see WHOLE_NODES_SQL). Whether a bare JID has
        // several subscriptions to a whole node is then read off its rows.
        let rows = sqlx::query(WHOLE_NODES_SQL)
            .bind(&pks)
            .bind(&limits)
            .fetch_all(self.pool())
            .await?;
        let mut pages: Vec<Option<Vec<Subscriber>>> = vec![None; nodes.len()];
        for r in &rows {
            let ord: i64 = r.try_get("ord")?;
            let Some(page) = usize::try_from(ord - 1).ok().and_then(|i| pages.get_mut(i)) else {
                continue;
            };
            let page = page.get_or_insert_with(Vec::new);
            if r.try_get::<Option<i64>, _>("pk")?.is_some() {
                page.push(subscriber(r)?);
            }
        }
        for (page, (node_pk, _)) in pages.iter_mut().zip(nodes) {
            if let Some(page) = page {
                mark_shared_bare_jids(*node_pk, page);
            }
        }
        self.after_subscriber_read("read of small nodes", started.elapsed(), nodes.len());
        Ok(pages)
    }

    async fn resource_available(
        &self,
        jid: &str,
        bare_jid: &str,
        show: ShowValue,
    ) -> Result<bool, StoreError> {
        // xmax = 0 on the returned row: it was inserted, not updated.
        let inserted: bool = sqlx::query_scalar(
            "INSERT INTO presence (jid, bare_jid, show) VALUES ($1, $2, $3)
             ON CONFLICT (jid) DO UPDATE SET show = EXCLUDED.show, updated_at = now()
             RETURNING (xmax = 0)",
        )
        .bind(jid)
        .bind(bare_jid)
        .bind(show.as_str())
        .fetch_one(self.pool())
        .await?;
        Ok(inserted)
    }
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_lock_keys_fit_in_an_int4_for_any_node() {
        for pk in [0, 1, i64::from(i32::MAX), i64::MAX, -5] {
            assert!(node_lock_key(pk) >= 0);
        }
        assert_eq!(node_lock_key(42), 42);
    }
}

#[cfg(test)]
mod plan_tests;
