//! The PostgreSQL store.
//!
//! Every query is written for the indexes in `migrations/`; a query that would scan a
//! table of millions of rows is a bug.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, Row};
use xmpp_parsers::jid::BareJid;

pub mod affiliations;
pub mod fanout;
pub mod item_seq;
pub mod items;
pub mod jobs;
pub mod liveness;
pub mod nodes;
mod rows;
pub mod subscriptions;

use super::fanout::Liveness;
use super::{status, NodeListing, ServiceStore, Stats, StoreError};

/// The migrations, embedded at compile time so the binary carries its schema.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

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

    /// A second pool of at most `max_connections` to the same database, for a part of
    /// the service that must not wait behind the others (the fan-out engine). Connects
    /// lazily: the first pool has just shown the database is there.
    pub fn sibling(&self, max_connections: u32) -> PgStore {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_lazy_with((*self.pool.connect_options()).clone());
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

    /// Applies pending migrations; applying them twice is a no-op.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR
            .run(&self.pool)
            .await
            .map_err(|e| StoreError::Migrate(e.to_string()))
    }

    /// The pool, for modules of this backend.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

#[async_trait]
impl ServiceStore for PgStore {
    async fn health(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn store_tag_with(&self, candidate: i64) -> Result<i64, StoreError> {
        let row = sqlx::query(crate::store::STORE_TAG_SQL)
            .bind(candidate)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("tag")?)
    }

    async fn fanout_backlog(&self) -> Result<(u64, f64, u64), StoreError> {
        // Workers of one process share the first 32 hex digits of their lease owner.
        let row = sqlx::query(
            "SELECT count(*) AS pending,
                    COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)), 0)::double precision AS age,
                    count(DISTINCT left(lease_owner::text, 32)) FILTER (WHERE lease_until > now()) AS instances
             FROM fanout_jobs",
        )
        .fetch_one(&self.pool)
        .await?;
        let pending: i64 = row.try_get("pending")?;
        let age: f64 = row.try_get("age")?;
        let instances: i64 = row.try_get("instances")?;
        Ok((pending.max(0) as u64, age, instances.max(0) as u64))
    }

    async fn status_backlog(&self, limit: u32) -> Result<status::Backlog, StoreError> {
        let (pending, age, _) = self.fanout_backlog().await?;
        let holders = status::counted::<sqlx::Postgres>(
            &mut *self.pool.acquire().await?,
            "SELECT left(lease_owner::text, 32), count(*) FROM fanout_jobs
             WHERE lease_until > now() GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT $1",
            limit,
        )
        .await?;
        Ok(status::Backlog::new(pending, age, holders))
    }

    async fn largest_nodes(&self, limit: u32) -> Result<status::NodeRanking, StoreError> {
        // A transaction only to scope the timeout to these two statements.
        let mut tx = self.pool.begin().await?;
        sqlx::query(AssertSqlSafe(format!(
            "SET LOCAL statement_timeout = {}",
            status::RANKING_STATEMENT_TIMEOUT_MS
        )))
        .execute(&mut *tx)
        .await?;
        let by_subscribers =
            status::counted::<sqlx::Postgres>(&mut tx, status::NODES_BY_SUBSCRIBERS, limit).await?;
        let by_items =
            status::counted::<sqlx::Postgres>(&mut tx, status::NODES_BY_ITEMS, limit).await?;
        tx.commit().await?;
        Ok(status::NodeRanking::from_rows(by_subscribers, by_items))
    }

    async fn stats(&self) -> Result<Stats, StoreError> {
        let row = sqlx::query(
            "SELECT (SELECT count(*) FROM nodes WHERE NOT deleted) AS nodes,
                    (SELECT count(*) FROM items) AS items,
                    (SELECT count(*) FROM subscriptions WHERE state <> 'pending') AS subscriptions,
                    (SELECT count(*) FROM subscriptions WHERE state = 'pending') AS pending,
                    (SELECT count(*) FROM affiliations) AS affiliations",
        )
        .fetch_one(&self.pool)
        .await?;
        let n = |col: &str| -> Result<u64, StoreError> {
            Ok(row.try_get::<i64, _>(col)?.max(0) as u64)
        };
        let (jobs_pending, oldest_job_age_seconds, _) = self.fanout_backlog().await?;
        Ok(Stats {
            nodes: n("nodes")?,
            items: n("items")?,
            subscriptions: n("subscriptions")?,
            pending_subscriptions: n("pending")?,
            affiliations: n("affiliations")?,
            jobs_pending,
            oldest_job_age_seconds,
        })
    }

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

    async fn list_nodes(
        &self,
        after: Option<&str>,
        limit: u32,
        viewer: Option<&BareJid>,
    ) -> Result<(Vec<NodeListing>, u64), StoreError> {
        // The visibility rule, shared by the page and the count.
        const VISIBLE: &str = "NOT n.deleted AND ($1::text IS NULL
             OR n.config->>'access_model' IS DISTINCT FROM 'whitelist'
             OR EXISTS (SELECT 1 FROM affiliations a WHERE a.node_pk = n.pk AND a.jid = $1
                        AND a.affiliation <> 'outcast'))";
        let viewer = viewer.map(|v| v.as_str());
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT n.name, n.config->>'title' AS title FROM nodes n
             WHERE {VISIBLE} AND n.name > $2 ORDER BY n.name LIMIT $3"
        )))
        .bind(viewer)
        .bind(after.unwrap_or(""))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        let nodes = rows
            .into_iter()
            .map(|r| {
                Ok(NodeListing {
                    name: r.try_get("name")?,
                    title: r.try_get("title")?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        let total: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT count(*) FROM nodes n WHERE {VISIBLE}"
        )))
        .bind(viewer)
        .fetch_one(&self.pool)
        .await?;
        Ok((nodes, total.max(0) as u64))
    }
}
