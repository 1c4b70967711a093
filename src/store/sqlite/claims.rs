//! [`FanoutStore`](crate::store::claims::FanoutStore) for SQLite: job claims under leases, the subscriber walk, and the
//! presence table, with the semantics of [`crate::store::postgres`]'s.
//!
//! One process holds an SQLite file ([`super::instance_lock`]), and every write takes
//! the file's write lock up front (`BEGIN IMMEDIATE`), so a claim needs neither advisory
//! locks nor `SKIP LOCKED`: inside its transaction nothing else writes, and "the oldest
//! node whose jobs hold no live lease" cannot change under it. Leases still matter: they
//! keep a node's jobs with one worker of the process at a time. A killed process's
//! leases, left in the file, are cleared by the next start, all at once, as soon as it
//! holds the instance lock ([`SqliteStore::take_over_leases`]): no other process can be
//! working them then, so there is nothing to wait for.
//!
//! Wake-ups come from the store's own [`JobSignal`](super::jobs::JobSignal), poked after
//! each commit that queued jobs; jobs queued by an admin command (another process) are
//! found by the engine's slow poll.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::{AssertSqlSafe, Row, SqliteConnection};

use super::jobs::JobWaiter;
use super::{SqliteStore, NOW};
use crate::domain::{NodeConfig, ShowValue};
use crate::store::claims::{
    batch_len, claim_has_room, ClaimLimits, ClaimedBatch, ClaimedJob, JobHead, JobListener,
    LeaseOwner, Subscriber,
};
use crate::store::decode;
use crate::store::jobs::JobTarget;
use crate::store::sql::claims::subscriber;
use crate::store::sql::Backend;
use crate::store::StoreError;

/// The node whose head (lowest id) job is oldest among the nodes with no job under a
/// live lease. The recursive part walks the distinct node_pks of `fanout_jobs_by_node`
/// with one index probe each (a loose index scan, as on PostgreSQL), so a node with
/// 20,000 queued jobs costs as much as a node with one; the lease check is a probe of
/// `fanout_jobs_leased`.
fn candidate_sql() -> String {
    format!(
        "WITH RECURSIVE pending(node_pk) AS (
             SELECT min(node_pk) FROM fanout_jobs
           UNION ALL
             SELECT (SELECT min(f.node_pk) FROM fanout_jobs f WHERE f.node_pk > p.node_pk)
             FROM pending p WHERE p.node_pk IS NOT NULL
         )
         SELECT p.node_pk,
                (SELECT min(f.id) FROM fanout_jobs f WHERE f.node_pk = p.node_pk) AS head
         FROM pending p
         WHERE p.node_pk IS NOT NULL
           AND NOT EXISTS (
             SELECT 1 FROM fanout_jobs l
             WHERE l.node_pk = p.node_pk AND l.lease_owner IS NOT NULL AND l.lease_until > {NOW}
           )
         ORDER BY head
         LIMIT 1"
    )
}

/// What a claim already holds, before its next node.
struct ClaimRoom {
    nodes: usize,
    jobs: usize,
    bytes: u64,
}

/// Claims a batch of `node_pk`'s head jobs inside the claim transaction (which holds the
/// write lock, so the node cannot gain a lease meanwhile); `None` if the node has no
/// jobs or its batch does not fit in what the claim has left.
async fn claim_node(
    conn: &mut SqliteConnection,
    node_pk: i64,
    owner: LeaseOwner,
    lease: Duration,
    limits: ClaimLimits,
    room: ClaimRoom,
) -> Result<Option<ClaimedBatch>, StoreError> {
    let rows = sqlx::query(
        "SELECT id, kind, target_jid IS NULL AS to_subscribers, cursor,
                length(CAST(payload_xml AS BLOB)) AS bytes
         FROM fanout_jobs WHERE node_pk = ?1 ORDER BY id LIMIT ?2",
    )
    .bind(node_pk)
    .bind(i64::from(limits.max_jobs))
    .fetch_all(&mut *conn)
    .await?;
    let mut ids = Vec::with_capacity(rows.len());
    let mut heads = Vec::with_capacity(rows.len());
    for r in &rows {
        ids.push(r.try_get::<i64, _>("id")?);
        heads.push(JobHead {
            kind: decode::job_kind(r.try_get("kind")?)?,
            to_subscribers: r.try_get("to_subscribers")?,
            cursor: r.try_get("cursor")?,
            payload_bytes: r.try_get::<i64, _>("bytes")?.max(0) as u64,
        });
    }
    let len = batch_len(&heads, limits);
    let size: u64 = heads.iter().take(len).map(|h| h.payload_bytes).sum();
    if !claim_has_room(room.nodes, room.jobs, room.bytes, len, size, limits) {
        return Ok(None);
    }
    let Some(&last) = len.checked_sub(1).and_then(|i| ids.get(i)) else {
        return Ok(None);
    };
    // The batch is a prefix of the node's queue: its jobs are exactly those up to `last`.
    let rows = sqlx::query(AssertSqlSafe(format!(
        "UPDATE fanout_jobs SET lease_owner = ?1, lease_until = {}
         WHERE node_pk = ?3 AND id <= ?4
         RETURNING id, kind, payload_xml, message_type, target_jid, cursor",
        SqliteStore::now_plus("?2")
    )))
    .bind(owner.to_string())
    .bind(SqliteStore::seconds(lease.as_secs_f64()))
    .bind(node_pk)
    .bind(last)
    .fetch_all(&mut *conn)
    .await?;
    let mut jobs = Vec::with_capacity(rows.len());
    let mut cursor = 0;
    for r in &rows {
        cursor = r.try_get("cursor")?;
        let target: Option<String> = r.try_get("target_jid")?;
        jobs.push(ClaimedJob {
            id: r.try_get("id")?,
            kind: decode::job_kind(r.try_get("kind")?)?,
            payload_xml: r.try_get("payload_xml")?,
            headline: r.try_get::<&str, _>("message_type")? == "headline",
            target: target.map_or(JobTarget::Subscribers, JobTarget::Jid),
        });
    }
    jobs.sort_by_key(|j| j.id);
    let node = sqlx::query("SELECT name, config FROM nodes WHERE pk = ?1")
        .bind(node_pk)
        .fetch_optional(&mut *conn)
        .await?;
    let (node_name, config) = match node {
        Some(r) => (
            Some(r.try_get::<String, _>("name")?),
            decode::config_or_default(r.try_get("config")?, node_pk),
        ),
        None => (None, NodeConfig::default()),
    };
    Ok(Some(ClaimedBatch {
        node_pk,
        node_name,
        config,
        cursor,
        jobs,
        // No liveness session: the next start clears the leases of a dead process
        // ([`SqliteStore::take_over_leases`]).
        session: None,
    }))
}

impl SqliteStore {
    /// Clears every fan-out lease in the file, at start-up: the process holds the
    /// instance lock, so any lease found was left by a process that is gone (killed, or
    /// stopped without giving it back), and its jobs are taken over at once instead of
    /// when their lease would run out. Returns how many jobs were freed. Refused for a
    /// store opened [beside the service](SqliteStore::open_beside_service), whose
    /// service may be working those jobs.
    pub async fn take_over_leases(&self) -> Result<u64, StoreError> {
        if self.lock_path().is_none() {
            return Err(StoreError::Backend(
                "fan-out leases are taken over only by the process holding the instance lock"
                    .into(),
            ));
        }
        let done = sqlx::query(
            "UPDATE fanout_jobs SET lease_owner = NULL, lease_until = NULL, lease_session = NULL
             WHERE lease_owner IS NOT NULL",
        )
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected())
    }
}

/// The store's in-process job signal as a [`JobListener`].
struct SqliteJobListener(JobWaiter);

#[async_trait]
impl JobListener for SqliteJobListener {
    async fn wait(&mut self) -> Result<(), StoreError> {
        self.0.wait().await
    }
}

crate::store::sql::fanout_store!(SqliteStore, {
    async fn claim_batches(
        &self,
        owner: LeaseOwner,
        lease: Duration,
        limits: ClaimLimits,
    ) -> Result<Vec<ClaimedBatch>, StoreError> {
        // A look without the write lock first: idle workers look at every wake-up and
        // poll, and finding nothing must not make requests' writes queue behind them.
        // A job committed after this look wakes the worker again.
        let seen: Option<i64> = sqlx::query_scalar(AssertSqlSafe(candidate_sql()))
            .fetch_optional(self.pool())
            .await?;
        if seen.is_none() {
            return Ok(Vec::new());
        }
        // Then under the write lock from the first statement: every claim of the
        // process (and any admin command's write) is serialised, so a candidate found
        // here is still free when it is leased. A leased node is no candidate any more,
        // so asking again finds the next one.
        let mut tx = self.write_tx().await?;
        let mut batches: Vec<ClaimedBatch> = Vec::new();
        let (mut jobs, mut bytes) = (0, 0u64);
        while batches.len() < limits.max_nodes.max(1) as usize {
            let candidate: Option<i64> = sqlx::query_scalar(AssertSqlSafe(candidate_sql()))
                .fetch_optional(&mut *tx)
                .await?;
            let Some(node_pk) = candidate else { break };
            let room = ClaimRoom {
                nodes: batches.len(),
                jobs,
                bytes,
            };
            let Some(batch) = claim_node(&mut tx, node_pk, owner, lease, limits, room).await?
            else {
                break;
            };
            jobs += batch.jobs.len();
            bytes =
                bytes.saturating_add(batch.jobs.iter().map(|j| j.payload_xml.len() as u64).sum());
            batches.push(batch);
        }
        if batches.is_empty() {
            tx.rollback().await?;
        } else {
            tx.commit().await?;
        }
        Ok(batches)
    }

    async fn subscribers(
        &self,
        node_pk: i64,
        after: i64,
        limit: u32,
    ) -> Result<Vec<Subscriber>, StoreError> {
        // Keyset page on subscriptions_fanout; the EXISTS probe uses
        // subscriptions_by_node_bare.
        let rows = sqlx::query(
            "SELECT s.pk, s.jid, s.bare_jid, s.subid, s.options,
                    EXISTS (SELECT 1 FROM subscriptions o
                            WHERE o.node_pk = s.node_pk AND o.bare_jid = s.bare_jid
                              AND o.state = 'subscribed' AND o.pk <> s.pk) AS shares_bare_jid
             FROM subscriptions s
             WHERE s.node_pk = ?1 AND s.state = 'subscribed' AND s.pk > ?2
             ORDER BY s.pk
             LIMIT ?3",
        )
        .bind(node_pk)
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Subscriber {
                    shares_bare_jid: r.try_get("shares_bare_jid")?,
                    ..subscriber(r)?
                })
            })
            .collect()
    }

    async fn listen(&self) -> Result<Box<dyn JobListener>, StoreError> {
        Ok(Box::new(SqliteJobListener(self.job_signal().listen())))
    }

    async fn resource_available(
        &self,
        jid: &str,
        bare_jid: &str,
        show: ShowValue,
    ) -> Result<bool, StoreError> {
        // Read, then write, under the write lock: "was it there?" cannot change between.
        let mut tx = self.write_tx().await?;
        let known: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM presence WHERE jid = ?1)")
                .bind(jid)
                .fetch_one(&mut *tx)
                .await?;
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO presence (jid, bare_jid, show) VALUES (?1, ?2, ?3)
             ON CONFLICT (jid) DO UPDATE SET show = excluded.show, updated_at = {NOW}"
        )))
        .bind(jid)
        .bind(bare_jid)
        .bind(show.as_str())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(!known)
    }
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_are_sqlite_date_modifiers() {
        assert_eq!(SqliteStore::seconds(30.0), "+30.000 seconds");
        assert_eq!(SqliteStore::seconds(1.5), "+1.500 seconds");
        assert_eq!(SqliteStore::seconds(-86400.0), "-86400.000 seconds");
    }
}
