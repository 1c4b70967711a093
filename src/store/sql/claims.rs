//! The parts of [`FanoutStore`](crate::store::claims::FanoutStore) both backends share:
//! moving and ending leases, presence, the newest items for a resource coming online,
//! and queuing jobs. Claims, the subscriber walk and waking workers differ and stay in
//! the backend folders.

use sqlx::{ColumnIndex, Row};

use super::rows::Column;
use crate::store::claims::Subscriber;
use crate::store::decode;
use crate::store::StoreError;

/// A subscriber from a row of `pk, jid, bare_jid, subid, options` (options as text);
/// `shares_bare_jid` is left to the caller.
pub fn subscriber<R: Row>(r: &R) -> Result<Subscriber, StoreError>
where
    for<'a> &'a str: ColumnIndex<R>,
    String: Column<R::Database>,
    i64: Column<R::Database>,
{
    let subid: String = r.try_get("subid")?;
    Ok(Subscriber {
        pk: r.try_get("pk")?,
        jid: r.try_get("jid")?,
        bare_jid: r.try_get("bare_jid")?,
        options: decode::options_or_default(&r.try_get::<String, _>("options")?, &subid),
        subid,
        shares_bare_jid: false,
    })
}

/// Implements `FanoutStore` for `$store`; `$extra` are the backend's own methods
/// (`claim_batches`, `subscribers`, `listen`, `resource_available`, …).
macro_rules! fanout_store {
    ($store:ty, { $($extra:tt)* }) => {
        const _: () = {
            use std::time::Duration;

            use sqlx::{AssertSqlSafe, Row};

            use $crate::store::decode;
            use $crate::store::claims::{FanoutStore, LastItem, LeaseOwner, Resource};
            use $crate::store::jobs::NewJob;
            use $crate::store::sql::Backend;
            use $crate::store::StoreError;

            /// The jobs `$3` still leased by `$1`.
            fn owned(ids: &str) -> String {
                format!(
                    "id {} AND lease_owner = $1{}",
                    <$store>::in_list(ids),
                    <$store>::UUID
                )
            }

            #[async_trait::async_trait]
            impl FanoutStore for $store {
                async fn renew(
                    &self,
                    owner: LeaseOwner,
                    jobs: &[i64],
                    lease: Duration,
                ) -> Result<bool, StoreError> {
                    let done = sqlx::query(AssertSqlSafe(format!(
                        "UPDATE fanout_jobs SET lease_until = {} WHERE {}",
                        <$store>::now_plus("$2"),
                        owned("$3")
                    )))
                    .bind(owner.to_string())
                    .bind(Self::seconds(lease.as_secs_f64()))
                    .bind(Self::list(jobs))
                    .execute(self.pool())
                    .await?;
                    Ok(done.rows_affected() == jobs.len() as u64)
                }

                async fn save_cursor(
                    &self,
                    owner: LeaseOwner,
                    jobs: &[i64],
                    cursor: i64,
                    lease: Duration,
                ) -> Result<bool, StoreError> {
                    let done = sqlx::query(AssertSqlSafe(format!(
                        "UPDATE fanout_jobs SET cursor = $4, lease_until = {} WHERE {}",
                        <$store>::now_plus("$2"),
                        owned("$3")
                    )))
                    .bind(owner.to_string())
                    .bind(Self::seconds(lease.as_secs_f64()))
                    .bind(Self::list(jobs))
                    .bind(cursor)
                    .execute(self.pool())
                    .await?;
                    Ok(done.rows_affected() == jobs.len() as u64)
                }

                async fn complete(
                    &self,
                    owner: LeaseOwner,
                    jobs: &[i64],
                    node_pk: i64,
                    delete_node: bool,
                ) -> Result<bool, StoreError> {
                    let delete_jobs = format!("DELETE FROM fanout_jobs WHERE {}", owned("$2"));
                    if !delete_node {
                        // One statement, one round trip. A batch's jobs are leased,
                        // renewed and lost together, so either all of them are still
                        // ours or none is.
                        let done = sqlx::query(AssertSqlSafe(delete_jobs))
                            .bind(owner.to_string())
                            .bind(Self::list(jobs))
                            .execute(self.pool())
                            .await?;
                        return Ok(done.rows_affected() == jobs.len() as u64);
                    }
                    let mut tx = self.write_tx().await?;
                    let done = sqlx::query(AssertSqlSafe(delete_jobs))
                        .bind(owner.to_string())
                        .bind(Self::list(jobs))
                        .execute(&mut *tx)
                        .await?;
                    if done.rows_affected() != jobs.len() as u64 {
                        tx.rollback().await?;
                        return Ok(false);
                    }
                    // Subscriptions, items and affiliations go with it (ON DELETE CASCADE).
                    sqlx::query("DELETE FROM nodes WHERE pk = $1")
                        .bind(node_pk)
                        .execute(&mut *tx)
                        .await?;
                    self.commit(tx, 0).await?;
                    Ok(true)
                }

                async fn release(
                    &self,
                    owner: LeaseOwner,
                    jobs: &[i64],
                ) -> Result<(), StoreError> {
                    sqlx::query(AssertSqlSafe(format!(
                        "UPDATE fanout_jobs
                         SET lease_owner = NULL, lease_until = NULL, lease_session = NULL
                         WHERE {}",
                        owned("$2")
                    )))
                    .bind(owner.to_string())
                    .bind(Self::list(jobs))
                    .execute(self.pool())
                    .await?;
                    Ok(())
                }

                async fn available_resources(
                    &self,
                    bare_jids: &[String],
                ) -> Result<Vec<Resource>, StoreError> {
                    if bare_jids.is_empty() {
                        return Ok(Vec::new());
                    }
                    let rows = sqlx::query(AssertSqlSafe(format!(
                        "SELECT jid, bare_jid, show FROM presence WHERE bare_jid {}",
                        <$store>::in_list("$1")
                    )))
                    .bind(Self::list(bare_jids))
                    .fetch_all(self.pool())
                    .await?;
                    rows.iter()
                        .map(|r| {
                            Ok(Resource {
                                jid: r.try_get("jid")?,
                                bare_jid: r.try_get("bare_jid")?,
                                show: decode::show(r.try_get("show")?),
                            })
                        })
                        .collect()
                }

                async fn resource_unavailable(&self, jid: &str) -> Result<(), StoreError> {
                    sqlx::query("DELETE FROM presence WHERE jid = $1")
                        .bind(jid)
                        .execute(self.pool())
                        .await?;
                    Ok(())
                }

                async fn forget_presence(&self, bare_jid: &str) -> Result<(), StoreError> {
                    sqlx::query("DELETE FROM presence WHERE bare_jid = $1")
                        .bind(bare_jid)
                        .execute(self.pool())
                        .await?;
                    Ok(())
                }

                async fn last_items_on_presence(
                    &self,
                    bare_jid: &str,
                    full_jid: &str,
                ) -> Result<Vec<LastItem>, StoreError> {
                    // Rows come node by node, the full-JID subscription first (its
                    // options are the more specific wish), and the first row of each
                    // node is kept (SQLite has no DISTINCT ON). The newest item is a
                    // probe of items_by_seq.
                    let rows = sqlx::query(
                        "SELECT n.pk, n.name, CAST(n.config AS TEXT) AS config, s.subid,
                                CAST(s.options AS TEXT) AS options,
                                i.item_id, i.publisher, i.payload, i.published_at
                         FROM subscriptions s
                         JOIN nodes n ON n.pk = s.node_pk AND NOT n.deleted
                         JOIN items i ON i.node_pk = n.pk
                                     AND i.seq = (SELECT max(seq) FROM items WHERE node_pk = n.pk)
                         WHERE s.bare_jid = $1 AND (s.jid = $1 OR s.jid = $2)
                           AND s.state = 'subscribed'
                           AND n.config ->> 'send_last_published_item' = 'on_sub_and_presence'
                         ORDER BY n.pk, (s.jid = $2) DESC",
                    )
                    .bind(bare_jid)
                    .bind(full_jid)
                    .fetch_all(self.pool())
                    .await?;
                    let mut items: Vec<LastItem> = Vec::with_capacity(rows.len());
                    for r in &rows {
                        let node_pk: i64 = r.try_get("pk")?;
                        if items.last().is_some_and(|i| i.node_pk == node_pk) {
                            continue;
                        }
                        let subid: String = r.try_get("subid")?;
                        items.push(LastItem {
                            node_pk,
                            node_name: r.try_get("name")?,
                            config: decode::config_or_default(r.try_get("config")?, node_pk),
                            options: decode::options_or_default(r.try_get("options")?, &subid),
                            item_id: r.try_get("item_id")?,
                            publisher: r.try_get("publisher")?,
                            payload: r.try_get("payload")?,
                            published_at: r.try_get("published_at")?,
                        });
                    }
                    Ok(items)
                }

                async fn queue_jobs(&self, jobs: &[NewJob]) -> Result<(), StoreError> {
                    if jobs.is_empty() {
                        return Ok(());
                    }
                    let mut tx = self.write_tx().await?;
                    let queued = Self::insert_jobs(&mut tx, jobs).await?;
                    self.commit(tx, queued).await?;
                    Ok(())
                }

                $($extra)*
            }
        };
    };
}
pub(crate) use fanout_store;
