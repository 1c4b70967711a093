//! What SQLite's [`FanoutStore`](crate::store::claims::FanoutStore) adds to the shared
//! part ([`crate::store::sql::claims`]), with the semantics of
//! [`crate::store::postgres`]'s: finding a claim's free nodes, taking leases over at
//! start-up, and presence's upsert.
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

use super::SqliteStore;
use crate::domain::ShowValue;
use crate::store::sql::claims::candidates_sql;
use crate::store::StoreError;

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
        let candidates = candidates_sql::<Self>();
        let seen: Option<i64> = sqlx::query_scalar(AssertSqlSafe(candidates.clone()))
            .bind(1_i64)
            .fetch_optional(self.pool())
            .await?;
        if seen.is_none() {
            return Ok(Vec::new());
        }
        // Then under the write lock from the first statement: every claim of the
        // process (and any admin command's write) is serialised, so the nodes found
        // here are still free when they are leased.
        let mut tx = self.write_tx().await?;
        let nodes: Vec<i64> = sqlx::query_scalar(AssertSqlSafe(candidates))
            .bind(i64::from(limits.max_nodes.max(1)))
            .fetch_all(&mut *tx)
            .await?;
        // No liveness session: the next start clears the leases of a dead process
        // ([`SqliteStore::take_over_leases`]).
        Self::lease_batches(tx, &nodes, owner, None, lease, limits).await
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
             ON CONFLICT (jid) DO UPDATE SET show = excluded.show, updated_at = {}",
            Self::NOW
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
