//! [`NodeStore`](crate::store::NodeStore) in shared SQL: lookup with the requester's
//! standing, creation, configuration, deletion.

/// What node_access reads of node `n` for the requester `$2`: the node's columns, the
/// requester's affiliation and its subscriptions (as JSON), in one row.
macro_rules! access_columns {
    ($store:ty) => {
        format!(
            "n.pk, n.name, n.config, n.creator, n.created_at,
             (SELECT a.affiliation FROM affiliations a
               WHERE a.node_pk = n.pk AND a.jid = $2) AS affiliation,
             (SELECT {subs} FROM subscriptions s
               WHERE s.bare_jid = $2 AND s.node_pk = n.pk) AS subscriptions",
            subs = <$store as $crate::store::sql::Backend>::SUBSCRIPTIONS_JSON
        )
    };
}
pub(crate) use access_columns;

/// Implements `NodeStore` for `$store`; `$extra` are the backend's own methods (a
/// faster `node_accesses`).
macro_rules! node_store {
    ($store:ty, { $($extra:tt)* }) => {
        #[async_trait::async_trait]
        impl $crate::store::NodeStore for $store {
            async fn node(
                &self,
                name: &$crate::domain::NodeId,
            ) -> Result<Option<$crate::store::NodeRecord>, $crate::store::StoreError> {
                let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {} FROM nodes WHERE name = $1 AND NOT deleted",
                    $crate::store::sql::rows::NODE_COLUMNS
                )))
                .bind(name.as_str())
                .fetch_optional(self.pool())
                .await?;
                row.as_ref().map($crate::store::sql::rows::node).transpose()
            }

            async fn node_access(
                &self,
                name: &$crate::domain::NodeId,
                requester: &xmpp_parsers::jid::BareJid,
            ) -> Result<Option<$crate::store::NodeAccess>, $crate::store::StoreError> {
                // One round trip: every permission check starts here.
                let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {} FROM nodes n WHERE n.name = $1 AND NOT n.deleted",
                    $crate::store::sql::nodes::access_columns!($store)
                )))
                .bind(name.as_str())
                .bind(requester.as_str())
                .fetch_optional(self.pool())
                .await?;
                row.as_ref().map($crate::store::sql::nodes::node_access).transpose()
            }

            async fn create_node(
                &self,
                name: &$crate::domain::NodeId,
                config: &$crate::domain::NodeConfig,
                owner: &xmpp_parsers::jid::BareJid,
            ) -> Result<Result<$crate::store::NodeRecord, $crate::store::Refusal>, $crate::store::StoreError>
            {
                let mut tx = self.write_tx().await?;
                // The conflict target names the partial index: only a live node takes a name.
                let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "INSERT INTO nodes (name, config, creator) VALUES ($1, $2, $3)
                     ON CONFLICT (name) WHERE NOT deleted DO NOTHING
                     RETURNING {}",
                    $crate::store::sql::rows::NODE_COLUMNS
                )))
                .bind(name.as_str())
                .bind(sqlx::types::Json(config))
                .bind(owner.as_str())
                .fetch_optional(&mut *tx)
                .await?;
                let Some(row) = row else {
                    return Ok(Err($crate::store::Refusal::NodeExists));
                };
                let node = $crate::store::sql::rows::node(&row)?;
                sqlx::query(
                    "INSERT INTO affiliations (node_pk, jid, affiliation) VALUES ($1, $2, 'owner')",
                )
                .bind(node.pk)
                .bind(owner.as_str())
                .execute(&mut *tx)
                .await?;
                self.commit(tx, 0).await?;
                Ok(Ok(node))
            }

            async fn owned_nodes(
                &self,
                owner: &xmpp_parsers::jid::BareJid,
            ) -> Result<u64, $crate::store::StoreError> {
                let n: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM affiliations a JOIN nodes n ON n.pk = a.node_pk
                     WHERE a.jid = $1 AND a.affiliation = 'owner' AND NOT n.deleted",
                )
                .bind(owner.as_str())
                .fetch_one(self.pool())
                .await?;
                Ok(n.max(0) as u64)
            }

            async fn configure_node(
                &self,
                pk: i64,
                config: &$crate::domain::NodeConfig,
                keep_items: u32,
                jobs: Vec<$crate::store::jobs::NewJob>,
            ) -> Result<Result<(), $crate::store::Refusal>, $crate::store::StoreError> {
                let mut tx = self.write_tx().await?;
                let updated =
                    sqlx::query("UPDATE nodes SET config = $2 WHERE pk = $1 AND NOT deleted")
                        .bind(pk)
                        .bind(sqlx::types::Json(config))
                        .execute(&mut *tx)
                        .await?;
                if updated.rows_affected() == 0 {
                    return Ok(Err($crate::store::Refusal::NodeGone));
                }
                Self::trim(&mut tx, pk, keep_items).await?;
                let queued = Self::insert_jobs(&mut tx, &jobs).await?;
                self.commit(tx, queued).await?;
                Ok(Ok(()))
            }

            async fn delete_node(
                &self,
                pk: i64,
                job: Option<$crate::store::jobs::NewJob>,
            ) -> Result<(), $crate::store::StoreError> {
                let mut tx = self.write_tx().await?;
                let queued = match job {
                    // Subscribers are walked by the fan-out engine, which removes the row after.
                    Some(job) => {
                        sqlx::query("UPDATE nodes SET deleted = TRUE WHERE pk = $1")
                            .bind(pk)
                            .execute(&mut *tx)
                            .await?;
                        Self::insert_jobs(&mut tx, std::slice::from_ref(&job)).await?
                    }
                    None => {
                        sqlx::query("DELETE FROM nodes WHERE pk = $1")
                            .bind(pk)
                            .execute(&mut *tx)
                            .await?;
                        0
                    }
                };
                self.commit(tx, queued).await?;
                Ok(())
            }

            $($extra)*
        }
    };
}
pub(crate) use node_store;

use sqlx::types::Json;
use sqlx::{ColumnIndex, Row};

use super::rows::{self, Column, SubscriptionJson};
use crate::domain::{Affiliation, NodeConfig};
use crate::store::{decode, NodeAccess, StoreError};

/// A [`NodeAccess`] from a row of node_access's read.
pub fn node_access<R: Row>(row: &R) -> Result<NodeAccess, StoreError>
where
    for<'a> &'a str: ColumnIndex<R>,
    String: Column<R::Database>,
    Option<String>: Column<R::Database>,
    i64: Column<R::Database>,
    Json<NodeConfig>: Column<R::Database>,
    Json<Vec<SubscriptionJson>>: Column<R::Database>,
    chrono::DateTime<chrono::Utc>: Column<R::Database>,
{
    let node = rows::node(row)?;
    let affiliation = match row.try_get::<Option<String>, _>("affiliation")? {
        Some(a) => decode::affiliation(&a)?,
        None => Affiliation::None,
    };
    let Json(subs): Json<Vec<SubscriptionJson>> = row.try_get("subscriptions")?;
    let subscriptions = subs
        .into_iter()
        .map(|s| s.into_record(&node.name))
        .collect::<Result<_, _>>()?;
    Ok(NodeAccess {
        node,
        affiliation,
        subscriptions,
    })
}
