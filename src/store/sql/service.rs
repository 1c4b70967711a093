//! The statements of [`ServiceStore`](crate::store::ServiceStore) both backends share:
//! health, the store tag, counts, the fan-out backlog, node listing. Retention reads
//! node configurations and time differently and stays with each backend.

/// The first 32 characters of a lease owner: its process ([`LeaseOwner`]'s prefix).
///
/// [`LeaseOwner`]: crate::store::claims::LeaseOwner
pub const OWNER_PROCESS: &str = "substr(CAST(lease_owner AS TEXT), 1, 32)";

/// Implements `ServiceStore` for `$store`, and its inherent `migrate` with the
/// `MIGRATOR` of the module that expands it; `$extra` are the backend's own methods
/// (`expire_items`).
macro_rules! service_store {
    ($store:ty, { $($extra:tt)* }) => {
        const _: () = {
            use sqlx::{AssertSqlSafe, Row};
            use xmpp_parsers::jid::BareJid;

            use $crate::store::sql::Backend;
            use $crate::store::{status, NodeListing, ServiceStore, Stats, StoreError};

            /// The `(name, count)` rows of `sql`, with its `LIMIT` as `$1`, as
            /// `make(name, count)`s (a negative count is 0).
            async fn counted<T>(
                conn: &mut <<$store as Backend>::Db as sqlx::Database>::Connection,
                sql: impl sqlx::SqlSafeStr,
                limit: u32,
                make: impl Fn(String, u64) -> T,
            ) -> Result<Vec<T>, StoreError> {
                let rows: Vec<(String, i64)> =
                    sqlx::query_as(sql).bind(i64::from(limit)).fetch_all(conn).await?;
                Ok(rows.into_iter().map(|(name, n)| make(name, n.max(0) as u64)).collect())
            }

            impl $store {
                /// Applies pending migrations; applying them twice is a no-op.
                pub async fn migrate(&self) -> Result<(), StoreError> {
                    MIGRATOR
                        .run(self.pool())
                        .await
                        .map_err(|e| StoreError::Migrate(e.to_string()))
                }
            }

            #[async_trait::async_trait]
            impl ServiceStore for $store {
                async fn fanout_backlog(&self) -> Result<(u64, f64, u64), StoreError> {
                    let row = sqlx::query(AssertSqlSafe(format!(
                        "SELECT count(*) AS pending, COALESCE({age}, 0.0) AS age,
                                count(DISTINCT CASE WHEN lease_until > {now}
                                                    THEN {process} END) AS instances
                         FROM fanout_jobs",
                        age = <$store>::seconds_since("min(created_at)"),
                        now = <$store>::NOW,
                        process = $crate::store::sql::service::OWNER_PROCESS,
                    )))
                    .fetch_one(self.pool())
                    .await?;
                    let pending: i64 = row.try_get("pending")?;
                    let age: f64 = row.try_get("age")?;
                    let instances: i64 = row.try_get("instances")?;
                    Ok((pending.max(0) as u64, age.max(0.0), instances.max(0) as u64))
                }

                async fn status_backlog(&self, limit: u32) -> Result<status::Backlog, StoreError> {
                    let (jobs_pending, oldest_job_age_seconds, _) = self.fanout_backlog().await?;
                    let lease_holders = counted(
                        &mut *self.pool().acquire().await?,
                        AssertSqlSafe(format!(
                            "SELECT {}, count(*) FROM fanout_jobs
                             WHERE lease_owner IS NOT NULL AND lease_until > {}
                             GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT $1",
                            $crate::store::sql::service::OWNER_PROCESS,
                            <$store>::NOW
                        )),
                        limit,
                        |process, jobs| status::LeaseHolder { process, jobs },
                    )
                    .await?;
                    Ok(status::Backlog {
                        jobs_pending,
                        oldest_job_age_seconds,
                        lease_holders,
                    })
                }

                async fn largest_nodes(&self, limit: u32) -> Result<status::NodeRanking, StoreError> {
                    // A transaction only to scope a timeout to these two statements.
                    let mut tx = self.pool().begin().await?;
                    if let Some(set) = <$store>::local_timeout(status::RANKING_STATEMENT_TIMEOUT_MS) {
                        sqlx::query(AssertSqlSafe(set)).execute(&mut *tx).await?;
                    }
                    let size = |name, count| status::NodeSize { name, count };
                    let by_subscribers =
                        counted(&mut tx, status::NODES_BY_SUBSCRIBERS, limit, size).await?;
                    let by_items = counted(&mut tx, AssertSqlSafe(status::nodes_by_items()), limit, size).await?;
                    tx.commit().await?;
                    Ok(status::NodeRanking {
                        by_subscribers,
                        by_items,
                    })
                }

                async fn health(&self) -> Result<(), StoreError> {
                    sqlx::query("SELECT 1").execute(self.pool()).await?;
                    Ok(())
                }

                async fn store_tag_with(
                    &self,
                    candidate: i64,
                ) -> Result<i64, StoreError> {
                    let row = sqlx::query($crate::store::STORE_TAG_SQL)
                        .bind(candidate)
                        .fetch_one(self.pool())
                        .await?;
                    Ok(row.try_get("tag")?)
                }

                async fn stats(&self) -> Result<Stats, StoreError> {
                    // The items are the nodes' counts plus their pending changes
                    // (store::sql::items::ITEM_COUNT), of nodes that exist only: a
                    // node's deletion leaves a change taking its items away (PostgreSQL)
                    // after its row, and its count with it, are gone.
                    let row = sqlx::query(
                        "SELECT (SELECT count(*) FROM nodes WHERE NOT deleted) AS nodes,
                                CAST((SELECT COALESCE(sum(item_count), 0) FROM nodes)
                                     + (SELECT COALESCE(sum(c.delta), 0)
                                        FROM item_count_changes c JOIN nodes n ON n.pk = c.node_pk)
                                     AS BIGINT) AS items,
                                (SELECT count(*) FROM subscriptions WHERE state <> 'pending') AS subscriptions,
                                (SELECT count(*) FROM subscriptions WHERE state = 'pending') AS pending,
                                (SELECT count(*) FROM affiliations) AS affiliations",
                    )
                    .fetch_one(self.pool())
                    .await?;
                    let n = |col: &str| -> Result<u64, StoreError> {
                        Ok(row.try_get::<i64, _>(col)?.max(0) as u64)
                    };
                    let (jobs_pending, oldest_job_age_seconds, _) =
                        self.fanout_backlog().await?;
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

                async fn list_nodes(
                    &self,
                    after: Option<&str>,
                    limit: u32,
                    viewer: Option<&BareJid>,
                ) -> Result<(Vec<NodeListing>, u64), StoreError> {
                    // The visibility rule, shared by the page and the count.
                    const VISIBLE: &str = "NOT n.deleted AND ($1 IS NULL
                         OR n.config ->> 'access_model' IS DISTINCT FROM 'whitelist'
                         OR EXISTS (SELECT 1 FROM affiliations a WHERE a.node_pk = n.pk
                                    AND a.jid = $1 AND a.affiliation <> 'outcast'))";
                    let viewer = viewer.map(|v| v.as_str());
                    let rows = sqlx::query(AssertSqlSafe(format!(
                        "SELECT n.name, n.config ->> 'title' AS title FROM nodes n
                         WHERE {VISIBLE} AND n.name > $2 ORDER BY n.name LIMIT $3"
                    )))
                    .bind(viewer)
                    .bind(after.unwrap_or(""))
                    .bind(i64::from(limit))
                    .fetch_all(self.pool())
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
                    .fetch_one(self.pool())
                    .await?;
                    Ok((nodes, total.max(0) as u64))
                }

                $($extra)*
            }
        };
    };
}
pub(crate) use service_store;
