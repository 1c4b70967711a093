//! [`SubscriptionStore`](crate::store::SubscriptionStore) in shared SQL.
//!
//! SQLite has no `INSERT`/`DELETE` inside `WITH`, so where a row is changed and read
//! joined with its node, this reads and changes it in two statements, inside one write
//! transaction (on SQLite nothing can come between them; on PostgreSQL the delete
//! says whether it still found the row).

/// Implements `SubscriptionStore` for `$store`.
macro_rules! subscription_store {
    ($store:ty) => {
        const _: () = {
            use sqlx::types::Json;
            use sqlx::AssertSqlSafe;
            use xmpp_parsers::jid::{BareJid, Jid};

            use $crate::domain::{AccessModel, SubId, SubscribeOptions, SubscriptionState};
            use $crate::store::jobs::NewJob;
            use $crate::store::sql::rows::{self, SUBSCRIPTIONS};
            use $crate::store::{StoreError, SubscriptionRecord, SubscriptionStore};

            #[async_trait::async_trait]
            impl SubscriptionStore for $store {
                async fn subscribe(
                    &self,
                    node_pk: i64,
                    jid: &Jid,
                    subid: &SubId,
                    state: SubscriptionState,
                    options: &SubscribeOptions,
                    jobs: Vec<NewJob>,
                ) -> Result<(SubscriptionRecord, bool), StoreError> {
                    let mut tx = self.write_tx().await?;
                    let created: Option<i64> = sqlx::query_scalar(
                        "INSERT INTO subscriptions (node_pk, jid, bare_jid, subid, state, options)
                         VALUES ($1, $2, $3, $4, $5, $6)
                         ON CONFLICT (node_pk, jid) DO NOTHING
                         RETURNING pk",
                    )
                    .bind(node_pk)
                    .bind(jid.to_string())
                    .bind(jid.to_bare().as_str())
                    .bind(subid.as_str())
                    .bind(state.as_str())
                    .bind(Json(options))
                    .fetch_optional(&mut *tx)
                    .await?;
                    // The new row, or the one that was there.
                    let row = sqlx::query(AssertSqlSafe(format!(
                        "{SUBSCRIPTIONS}
                         WHERE s.node_pk = $1 AND s.jid = $2"
                    )))
                    .bind(node_pk)
                    .bind(jid.to_string())
                    .fetch_one(&mut *tx)
                    .await?;
                    let record = rows::subscription(&row)?;
                    let queued = match created {
                        Some(_) => Self::insert_jobs(&mut tx, &jobs).await?,
                        None => 0,
                    };
                    self.commit(tx, queued).await?;
                    Ok((record, created.is_some()))
                }

                async fn unsubscribe(
                    &self,
                    node_pk: i64,
                    jid: &Jid,
                    subid: Option<&SubId>,
                    jobs: Vec<NewJob>,
                ) -> Result<Option<SubscriptionRecord>, StoreError> {
                    let mut tx = self.write_tx().await?;
                    let row = sqlx::query(AssertSqlSafe(format!(
                        "{SUBSCRIPTIONS}
                         WHERE s.node_pk = $1 AND s.jid = $2 AND ($3 IS NULL OR s.subid = $3)"
                    )))
                    .bind(node_pk)
                    .bind(jid.to_string())
                    .bind(subid.map(SubId::as_str))
                    .fetch_optional(&mut *tx)
                    .await?;
                    let mut record = row.as_ref().map(rows::subscription).transpose()?;
                    let queued = match &record {
                        Some(r) => {
                            let deleted = sqlx::query("DELETE FROM subscriptions WHERE pk = $1")
                                .bind(r.pk)
                                .execute(&mut *tx)
                                .await?;
                            if deleted.rows_affected() == 0 {
                                // Removed by a concurrent request (PostgreSQL) after the read.
                                record = None;
                                0
                            } else {
                                Self::insert_jobs(&mut tx, &jobs).await?
                            }
                        }
                        None => 0,
                    };
                    self.commit(tx, queued).await?;
                    Ok(record)
                }

                async fn revoke_subscription(
                    &self,
                    subscription_pk: i64,
                    access_model: AccessModel,
                    jobs: Vec<NewJob>,
                ) -> Result<bool, StoreError> {
                    let mut tx = self.write_tx().await?;
                    // The judgement and the removal in one statement: nothing an owner
                    // changed since (the access model, an affiliation) is undone.
                    let deleted = sqlx::query(
                        "DELETE FROM subscriptions WHERE pk = $1
                           AND EXISTS (SELECT 1 FROM nodes n
                                       WHERE n.pk = subscriptions.node_pk AND NOT n.deleted
                                         AND n.config ->> 'access_model' = $2)
                           AND NOT EXISTS (SELECT 1 FROM affiliations a
                                           WHERE a.node_pk = subscriptions.node_pk
                                             AND a.jid = subscriptions.bare_jid
                                             AND a.affiliation IN ('owner', 'publisher', 'member'))",
                    )
                    .bind(subscription_pk)
                    .bind(access_model.as_str())
                    .execute(&mut *tx)
                    .await?;
                    let removed = deleted.rows_affected() > 0;
                    let queued = if removed {
                        Self::insert_jobs(&mut tx, &jobs).await?
                    } else {
                        0
                    };
                    self.commit(tx, queued).await?;
                    Ok(removed)
                }

                async fn update_subscription(
                    &self,
                    pk: i64,
                    state: SubscriptionState,
                    options: &SubscribeOptions,
                    jobs: Vec<NewJob>,
                ) -> Result<(), StoreError> {
                    let mut tx = self.write_tx().await?;
                    sqlx::query("UPDATE subscriptions SET state = $2, options = $3 WHERE pk = $1")
                        .bind(pk)
                        .bind(state.as_str())
                        .bind(Json(options))
                        .execute(&mut *tx)
                        .await?;
                    let queued = Self::insert_jobs(&mut tx, &jobs).await?;
                    self.commit(tx, queued).await?;
                    Ok(())
                }

                async fn node_subscriptions(
                    &self,
                    node_pk: i64,
                    limit: u32,
                ) -> Result<Vec<SubscriptionRecord>, StoreError> {
                    let rows = sqlx::query(AssertSqlSafe(format!(
                        "{SUBSCRIPTIONS}
                         WHERE s.node_pk = $1 ORDER BY s.pk LIMIT $2"
                    )))
                    .bind(node_pk)
                    .bind(i64::from(limit))
                    .fetch_all(self.pool())
                    .await?;
                    rows.iter().map(rows::subscription).collect()
                }

                async fn jid_subscriptions(
                    &self,
                    jid: &BareJid,
                    node_pk: Option<i64>,
                ) -> Result<Vec<SubscriptionRecord>, StoreError> {
                    // By the `subscriptions_by_bare_jid (bare_jid, node_pk)` index.
                    let rows = sqlx::query(AssertSqlSafe(format!(
                        "{SUBSCRIPTIONS}
                         WHERE s.bare_jid = $1 AND ($2 IS NULL OR s.node_pk = $2) AND NOT n.deleted
                         ORDER BY s.pk"
                    )))
                    .bind(jid.as_str())
                    .bind(node_pk)
                    .fetch_all(self.pool())
                    .await?;
                    rows.iter().map(rows::subscription).collect()
                }

                async fn count_jid_subscriptions(&self, jid: &BareJid) -> Result<u64, StoreError> {
                    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM subscriptions WHERE bare_jid = $1")
                        .bind(jid.as_str())
                        .fetch_one(self.pool())
                        .await?;
                    Ok(n.max(0) as u64)
                }

                async fn count_subscribers(&self, node_pk: i64) -> Result<u64, StoreError> {
                    let n: i64 = sqlx::query_scalar(
                        "SELECT count(*) FROM subscriptions WHERE node_pk = $1 AND state = 'subscribed'",
                    )
                    .bind(node_pk)
                    .fetch_one(self.pool())
                    .await?;
                    Ok(n.max(0) as u64)
                }
            }
        };
    };
}
pub(crate) use subscription_store;
