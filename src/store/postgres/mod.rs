//! The PostgreSQL store.
//!
//! Every query is written for the indexes in `migrations/`; a query that would scan a
//! table of millions of rows is a bug.

use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{Postgres, Transaction};

pub mod claims;
pub mod items;
pub mod liveness;

use super::claims::Liveness;
use super::job_events::JobEvents;
use super::sql::Backend;
use super::StoreError;

/// The migrations, embedded at compile time so the binary carries its schema.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The LISTEN/NOTIFY channel that wakes fan-out workers in every pubsubd process
/// attached to this database. PostgreSQL delivers the notification on commit, so a
/// worker never wakes for a job it cannot see yet.
pub const JOBS_CHANNEL: &str = "pubsubd_fanout_jobs";

/// How long a request waits for a free pool connection before it fails with an error
/// (instead of hanging while the database is down).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// PostgreSQL-backed [`Store`].
#[derive(Clone, Debug)]
pub struct PgStore {
    pool: PgPool,
    /// What this store's fan-out claims are tied to ([`liveness`]); timer-only unless
    /// started with [`with_liveness`](Self::with_liveness).
    liveness: Liveness,
}

impl PgStore {
    /// Connects a pool of at most `max_connections` to `url`, creating the database
    /// first if it does not exist (and the role may create databases), so a first start
    /// needs no manual `createdb`.
    pub async fn connect(url: &str, max_connections: u32) -> Result<PgStore, StoreError> {
        use sqlx::migrate::MigrateDatabase;
        if let Ok(false) = sqlx::Postgres::database_exists(url).await {
            match sqlx::Postgres::create_database(url).await {
                Ok(()) => tracing::info!("created the database"),
                Err(e) => tracing::warn!(error = %e, "database missing and could not be created"),
            }
        }
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect(url)
            .await
            .map_err(|e| StoreError::Unavailable(format!("cannot connect to PostgreSQL: {e}")))?;
        Ok(PgStore {
            pool,
            liveness: Liveness::timer_only(),
        })
    }

    /// A second pool of at most `max_connections` to the same database, for the fan-out
    /// engine, which must not wait behind requests. Connects lazily: the first pool has
    /// just shown the database is there.
    ///
    /// Its commits do not wait for the disk (`synchronous_commit = off`): everything the
    /// engine writes is progress over jobs that publishes committed durably (claims,
    /// cursors, completions, and a deleted node with the job that deleted it, in one
    /// transaction). A PostgreSQL crash can forget the last moments of that progress, at
    /// most three `wal_writer_delay`s (600 ms by default); those notifications are then
    /// sent again, with the same ids, and nothing is lost. A transaction forgotten is
    /// forgotten whole. Every commit that waits on a WAL flush delays the publishes
    /// flushing behind it: on ejabberd, during a firehose, two thirds of the samples of
    /// a small node's publish statement found it waiting for the WAL (docs/benchmarks.md).
    pub fn fanout_sibling(&self, max_connections: u32) -> PgStore {
        let options = (*self.pool.connect_options())
            .clone()
            .options([("synchronous_commit", "off")]);
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_lazy_with(options);
        PgStore {
            pool,
            liveness: Liveness::timer_only(),
        }
    }

    /// This store with a liveness session of its own ([`liveness`]): its fan-out claims
    /// are freed by the process's death, not only by their lease running out. For the
    /// store the fan-out engine claims with; one per process. Returns once the first
    /// session is held.
    pub async fn with_liveness(self) -> Result<PgStore, StoreError> {
        let liveness = liveness::start(&self.pool.connect_options()).await?;
        Ok(PgStore { liveness, ..self })
    }

    /// The pool, for modules of this backend.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Where the gateway and the fan-out engine hear of committed jobs.
    pub fn job_events(&self) -> JobEvents {
        JobEvents::Postgres(self.pool.clone())
    }

    /// Starts a write transaction (the shared SQL's name for `BEGIN`).
    pub(crate) async fn write_tx(&self) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
        self.pool.begin().await
    }

    /// Commits `tx`. The jobs it queued notified the workers in their own statements,
    /// and PostgreSQL delivers those notifications on commit.
    pub(crate) async fn commit(
        &self,
        tx: Transaction<'static, Postgres>,
        _queued: usize,
    ) -> Result<(), sqlx::Error> {
        tx.commit().await
    }

    /// A list parameter for [`Backend::in_list`]: an array.
    pub(crate) fn list<T>(values: &[T]) -> &[T] {
        values
    }

    /// The parameter of [`Backend::now_plus`]: seconds.
    pub(crate) fn seconds(secs: f64) -> f64 {
        secs
    }
}

impl Backend for PgStore {
    type Db = Postgres;
    const NOW: &'static str = "now()";
    fn in_list(param: &str) -> String {
        format!("= ANY({param})")
    }
    fn ordered(param: &str, ty: &str, name: &str) -> String {
        format!("unnest({param}::{ty}[]) WITH ORDINALITY AS u({name}, ord)")
    }
    const UUID: &'static str = "::uuid";
    fn now_plus(param: &str) -> String {
        format!("now() + make_interval(secs => {param})")
    }
    fn seconds_since(expr: &str) -> String {
        format!("EXTRACT(EPOCH FROM now() - {expr})::double precision")
    }
    fn local_timeout(ms: u32) -> Option<String> {
        Some(format!("SET LOCAL statement_timeout = {ms}"))
    }
    const LOCK_ROW: &'static str = " FOR UPDATE";
    const LOCK_ROW_SKIP_LOCKED: &'static str = " FOR UPDATE SKIP LOCKED";
    const LIVE_LEASE: &'static str = liveness::live_lease!();
    const JOB_HEADS: &'static str = "
        SELECT u.node_pk, h.id, h.kind, h.to_subscribers, h.cursor, h.bytes
        FROM unnest($1::bigint[]) WITH ORDINALITY AS u(node_pk, ord)
        CROSS JOIN LATERAL (
            SELECT id, kind, target_jid IS NULL AS to_subscribers, cursor,
                   octet_length(payload_xml)::bigint AS bytes
            FROM fanout_jobs f WHERE f.node_pk = u.node_pk ORDER BY id LIMIT $2
        ) h
        ORDER BY u.ord, h.id";
    const SUBSCRIBER_PAGE: &'static str = claims::SUBSCRIBER_PAGE_SQL;
    fn waking(insert: &str) -> String {
        format!("WITH j AS ({insert}) SELECT j.id FROM j, pg_notify('{JOBS_CHANNEL}', '') AS n")
    }
    const NEXT_SEQ: &'static str = "SELECT nextval('item_seq')";
    const ONE_STATEMENT_BATCH: bool = true;
    const SUBSCRIPTIONS_JSON: &'static str = "COALESCE(json_agg(json_build_object(
        'pk', s.pk, 'jid', s.jid, 'subid', s.subid, 'state', s.state, 'options', s.options)
        ORDER BY s.pk), '[]')";
    const LOCK_LINKS: Option<&'static str> =
        Some("LOCK TABLE collection_links IN SHARE ROW EXCLUSIVE MODE");
}

crate::store::sql::node_store!(PgStore);
crate::store::sql::subscription_store!(PgStore);
crate::store::sql::affiliation_store!(PgStore);
crate::store::sql::item_seq_store!(PgStore);
crate::store::sql::collection_store!(PgStore);

/// First key of the advisory lock that lets one process of the store at a time fold
/// item count changes ("psic"): a second would only find the first's nodes locked.
const FOLD_LOCK_CLASS: i32 = 0x7073_6963;

/// Folds the changes of at most `$1` nodes into their rows, in one statement; returns
/// how many nodes it folded or dropped.
///
/// It waits for no lock, so it can take no part in a deadlock: of the nodes with
/// changes, it locks only the rows nobody holds (`SKIP LOCKED`; a configuration or a
/// deletion holding a node's row keeps that node's changes pending until a later
/// fold). `FOR NO KEY UPDATE` leaves the key-share locks of publishes' foreign keys
/// alone. The changes of a node that is gone (its deletion committed) are dropped:
/// no row counts them. A node deleted after the statement's snapshot is neither
/// locked nor gone here, and waits for the next fold.
///
/// The changes leave and their sum arrives in one statement: a reader's snapshot holds
/// either, so the count it adds up (`store::sql::items::ITEM_COUNT`) stays exact.
/// (A data-modifying CTE runs to completion whether or not the query reads it.)
const FOLD_ITEM_COUNTS: &str = "WITH pending AS (
         SELECT DISTINCT node_pk FROM item_count_changes LIMIT $1
     ), ready AS (
         SELECT pk FROM nodes WHERE pk IN (SELECT node_pk FROM pending)
         FOR NO KEY UPDATE SKIP LOCKED
     ), gone AS (
         SELECT p.node_pk FROM pending p
         WHERE NOT EXISTS (SELECT 1 FROM nodes n WHERE n.pk = p.node_pk)
     ), moved AS (
         DELETE FROM item_count_changes
         WHERE node_pk IN (SELECT pk FROM ready UNION ALL SELECT node_pk FROM gone)
         RETURNING node_pk, delta
     ), folded AS (
         UPDATE nodes n SET item_count = n.item_count + s.delta
         FROM (SELECT node_pk, sum(delta) AS delta FROM moved GROUP BY node_pk) s
         WHERE n.pk = s.node_pk
     )
     SELECT count(DISTINCT node_pk) FROM moved";

crate::store::sql::service_store!(PgStore, {
    async fn expire_items(&self, batch: u32) -> Result<u64, StoreError> {
        // Only nodes with an item_expire setting are looked at; for each, the items
        // index by published_at finds the expired ones without scanning live items.
        let done = sqlx::query(
            "DELETE FROM items WHERE (node_pk, item_id) IN (
                 SELECT i.node_pk, i.item_id
                 FROM nodes n
                 JOIN items i ON i.node_pk = n.pk
                 WHERE NOT n.deleted
                   AND jsonb_typeof(n.config->'item_expire') = 'number'
                   AND i.published_at < now() - make_interval(secs => (n.config->>'item_expire')::double precision)
                 ORDER BY i.published_at
                 LIMIT $1
             )",
        )
        .bind(i64::from(batch))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    async fn fold_item_counts(&self, batch: u32) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await?;
        let ours: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1, 0)")
            .bind(FOLD_LOCK_CLASS)
            .fetch_one(&mut *tx)
            .await?;
        if !ours {
            return Ok(0);
        }
        let folded: i64 = sqlx::query_scalar(FOLD_ITEM_COUNTS)
            .bind(i64::from(batch))
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(folded.max(0) as u64)
    }
});

#[cfg(test)]
mod tests {
    use pubsubd_testkit::TestDb;

    use super::PgStore;

    /// Only the fan-out engine's pool commits without waiting for the disk: requests
    /// (publishes above all) keep PostgreSQL's default.
    #[tokio::test]
    async fn only_the_fanout_pool_commits_without_waiting_for_the_disk() -> anyhow::Result<()> {
        let db = TestDb::create().await?;
        let store = PgStore::connect(db.url(), 2).await?;
        let setting = |store: &PgStore| {
            let pool = store.pool().clone();
            async move {
                sqlx::query_scalar::<_, String>("SHOW synchronous_commit")
                    .fetch_one(&pool)
                    .await
            }
        };
        assert_eq!(setting(&store).await?, "on");
        let fanout = store.fanout_sibling(2);
        assert_eq!(setting(&fanout).await?, "off");
        assert_eq!(
            setting(&store).await?,
            "on",
            "the requests' pool is untouched"
        );
        Ok(())
    }
}
