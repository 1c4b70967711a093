//! [`NodeStore`](crate::store::NodeStore) in shared SQL: lookup with the requester's
//! standing (for one node, or a run of them in one statement), creation,
//! configuration, deletion.

/// Implements `NodeStore` for `$store`.
macro_rules! node_store {
    ($store:ty) => {
        const _: () = {
            use sqlx::types::Json;
            use sqlx::{AssertSqlSafe, Row};
            use xmpp_parsers::jid::BareJid;

            use $crate::domain::{NodeConfig, NodeId, NodeType};
            use $crate::store::jobs::NewJob;
            use $crate::store::sql::nodes::node_access;
            use $crate::store::sql::rows::{self, NODE_COLUMNS};
            use $crate::store::sql::Backend;
            use $crate::store::{
                NodeAccess, NodeLinks, NodeRecord, NodeStore, Refusal, StoreError,
            };

            /// What node_access reads of node `n` for the requester `$2`: the node's
            /// columns, the requester's affiliation and its subscriptions (as JSON), in
            /// one row.
            fn access_columns() -> String {
                format!(
                    "n.pk, n.name, n.config, n.creator, n.created_at,
                     (SELECT a.affiliation FROM affiliations a
                       WHERE a.node_pk = n.pk AND a.jid = $2) AS affiliation,
                     (SELECT {} FROM subscriptions s
                       WHERE s.bare_jid = $2 AND s.node_pk = n.pk) AS subscriptions",
                    <$store>::SUBSCRIPTIONS_JSON
                )
            }

            #[async_trait::async_trait]
            impl NodeStore for $store {
                async fn node(&self, name: &NodeId) -> Result<Option<NodeRecord>, StoreError> {
                    let row = sqlx::query(AssertSqlSafe(format!(
                        "SELECT {NODE_COLUMNS} FROM nodes WHERE name = $1 AND NOT deleted"
                    )))
                    .bind(name.as_str())
                    .fetch_optional(self.pool())
                    .await?;
                    row.as_ref().map(rows::node).transpose()
                }

                async fn node_access(
                    &self,
                    name: &NodeId,
                    requester: &BareJid,
                ) -> Result<Option<NodeAccess>, StoreError> {
                    // One round trip: every permission check starts here.
                    let row = sqlx::query(AssertSqlSafe(format!(
                        "SELECT {} FROM nodes n WHERE n.name = $1 AND NOT n.deleted",
                        access_columns()
                    )))
                    .bind(name.as_str())
                    .bind(requester.as_str())
                    .fetch_optional(self.pool())
                    .await?;
                    row.as_ref().map(node_access).transpose()
                }

                async fn node_accesses(
                    &self,
                    names: &[NodeId],
                    requester: &BareJid,
                ) -> Result<Vec<Option<NodeAccess>>, StoreError> {
                    if names.is_empty() {
                        return Ok(Vec::new());
                    }
                    // node_access's read for every name at once; a name without a live
                    // node has a row with a NULL pk. Unprepared, so planned for the table
                    // as it is: the generic plan of a prepared statement made while
                    // `nodes` is nearly empty hashes a sequential scan of it, and would
                    // keep doing so for the life of the connection as the table grows.
                    let names: Vec<&str> = names.iter().map(NodeId::as_str).collect();
                    let rows = sqlx::query(AssertSqlSafe(format!(
                        "SELECT u.ord, {}
                         FROM {} LEFT JOIN nodes n ON n.name = u.name AND NOT n.deleted
                         ORDER BY u.ord",
                        access_columns(),
                        <$store>::ordered("$1", "text", "name")
                    )))
                    .bind(Self::list(&names))
                    .bind(requester.as_str())
                    .persistent(false)
                    .fetch_all(self.pool())
                    .await?;
                    let mut found: Vec<Option<NodeAccess>> = (0..names.len()).map(|_| None).collect();
                    for row in &rows {
                        if row.try_get::<Option<i64>, _>("pk")?.is_none() {
                            continue;
                        }
                        let ord: i64 = row.try_get("ord")?;
                        if let Some(slot) = usize::try_from(ord - 1).ok().and_then(|i| found.get_mut(i)) {
                            *slot = Some(node_access(row)?);
                        }
                    }
                    Ok(found)
                }

                async fn create_node(
                    &self,
                    name: &NodeId,
                    config: &NodeConfig,
                    owner: &BareJid,
                    links: &NodeLinks,
                ) -> Result<Result<NodeRecord, Refusal>, StoreError> {
                    let mut tx = self.write_tx().await?;
                    // The conflict target names the partial index: only a live node takes
                    // a name.
                    let row = sqlx::query(AssertSqlSafe(format!(
                        "INSERT INTO nodes (name, config, creator) VALUES ($1, $2, $3)
                         ON CONFLICT (name) WHERE NOT deleted DO NOTHING
                         RETURNING {NODE_COLUMNS}"
                    )))
                    .bind(name.as_str())
                    .bind(Json(config))
                    .bind(owner.as_str())
                    .fetch_optional(&mut *tx)
                    .await?;
                    let Some(row) = row else {
                        return Ok(Err(Refusal::NodeExists));
                    };
                    let node = rows::node(&row)?;
                    sqlx::query(
                        "INSERT INTO affiliations (node_pk, jid, affiliation) VALUES ($1, $2, 'owner')",
                    )
                    .bind(node.pk)
                    .bind(owner.as_str())
                    .execute(&mut *tx)
                    .await?;
                    if !links.is_empty() {
                        if let Err(refusal) =
                            Self::link_in_tx(&mut tx, &links.changes(node.pk), &[]).await?
                        {
                            tx.rollback().await?;
                            return Ok(Err(Refusal::Links(refusal)));
                        }
                    }
                    self.commit(tx, 0).await?;
                    Ok(Ok(node))
                }

                async fn owned_nodes(&self, owner: &BareJid) -> Result<u64, StoreError> {
                    let n: i64 = sqlx::query_scalar(
                        "SELECT count(*) FROM affiliations a JOIN nodes n ON n.pk = a.node_pk
                         WHERE a.jid = $1 AND a.affiliation = 'owner' AND NOT n.deleted",
                    )
                    .bind(owner.as_str())
                    .fetch_one(self.pool())
                    .await?;
                    Ok(n.max(0) as u64)
                }

                async fn roster_nodes(
                    &self,
                    after_pk: i64,
                    limit: u32,
                ) -> Result<Vec<NodeRecord>, StoreError> {
                    // `->>` reads a JSON member as text on both: PostgreSQL's jsonb and
                    // SQLite's JSON text (3.38 and later).
                    let rows = sqlx::query(AssertSqlSafe(format!(
                        "SELECT {NODE_COLUMNS} FROM nodes
                         WHERE NOT deleted AND pk > $1
                           AND config ->> 'access_model' IN ('presence', 'roster')
                           AND EXISTS (SELECT 1 FROM subscriptions s WHERE s.node_pk = nodes.pk)
                         ORDER BY pk LIMIT $2"
                    )))
                    .bind(after_pk)
                    .bind(i64::from(limit))
                    .fetch_all(self.pool())
                    .await?;
                    rows.iter().map(rows::node).collect()
                }

                async fn roster_node_owners(
                    &self,
                    after: &str,
                    limit: u32,
                ) -> Result<Vec<(String, Result<BareJid, StoreError>)>, StoreError> {
                    let rows = sqlx::query(
                        "SELECT DISTINCT a.jid FROM affiliations a
                         JOIN nodes n ON n.pk = a.node_pk
                         WHERE a.affiliation = 'owner' AND a.jid > $1 AND NOT n.deleted
                           AND n.config ->> 'access_model' IN ('presence', 'roster')
                           AND EXISTS (SELECT 1 FROM subscriptions s WHERE s.node_pk = n.pk)
                         ORDER BY a.jid LIMIT $2",
                    )
                    .bind(after)
                    .bind(i64::from(limit))
                    .fetch_all(self.pool())
                    .await?;
                    rows.iter()
                        .map(|r| {
                            let jid: String = r.try_get("jid")?;
                            let decoded = $crate::store::decode::bare_jid(&jid);
                            Ok((jid, decoded))
                        })
                        .collect()
                }

                async fn owned_roster_nodes(
                    &self,
                    owner: &BareJid,
                    limit: u32,
                ) -> Result<Vec<Result<NodeRecord, StoreError>>, StoreError> {
                    let rows = sqlx::query(AssertSqlSafe(format!(
                        "SELECT {NODE_COLUMNS} FROM nodes
                         WHERE NOT deleted
                           AND pk IN (SELECT node_pk FROM affiliations
                                      WHERE jid = $1 AND affiliation = 'owner')
                           AND config ->> 'access_model' IN ('presence', 'roster')
                           AND EXISTS (SELECT 1 FROM subscriptions s WHERE s.node_pk = nodes.pk)
                         ORDER BY pk LIMIT $2"
                    )))
                    .bind(owner.as_str())
                    .bind(i64::from(limit))
                    .fetch_all(self.pool())
                    .await?;
                    Ok(rows.iter().map(rows::node).collect())
                }

                async fn configure_node(
                    &self,
                    pk: i64,
                    config: &NodeConfig,
                    keep_items: u32,
                    links: &NodeLinks,
                    jobs: Vec<NewJob>,
                ) -> Result<Result<(), Refusal>, StoreError> {
                    let mut tx = self.write_tx().await?;
                    // A collection's own `children_max` is checked again under the
                    // links' lock, so lowering it below the children held is refused.
                    let collection = config.node_type == NodeType::Collection;
                    if collection || !links.is_empty() {
                        // Taken first: the lock that every link change takes first too.
                        if let Some(lock) = <$store>::LOCK_LINKS {
                            sqlx::query(lock).execute(&mut *tx).await?;
                        }
                    }
                    let updated =
                        sqlx::query("UPDATE nodes SET config = $2 WHERE pk = $1 AND NOT deleted")
                            .bind(pk)
                            .bind(Json(config))
                            .execute(&mut *tx)
                            .await?;
                    if updated.rows_affected() == 0 {
                        return Ok(Err(Refusal::NodeGone));
                    }
                    Self::trim(&mut tx, pk, keep_items).await?;
                    if collection || !links.is_empty() {
                        let own: &[i64] = if collection { &[pk] } else { &[] };
                        if let Err(refusal) =
                            Self::link_in_tx(&mut tx, &links.changes(pk), own).await?
                        {
                            tx.rollback().await?;
                            return Ok(Err(Refusal::Links(refusal)));
                        }
                    }
                    let queued = Self::insert_jobs(&mut tx, &jobs).await?;
                    self.commit(tx, queued).await?;
                    Ok(Ok(()))
                }

                async fn delete_node(&self, pk: i64, job: Option<NewJob>) -> Result<(), StoreError> {
                    let mut tx = self.write_tx().await?;
                    // A deleted collection lets go of its children at once (they
                    // survive it, XEP-0248 §6.3), and a deleted child leaves its
                    // collections: no later walk or listing sees either.
                    sqlx::query("DELETE FROM collection_links WHERE parent_pk = $1 OR child_pk = $1")
                        .bind(pk)
                        .execute(&mut *tx)
                        .await?;
                    let queued = match job {
                        // Subscribers are walked by the fan-out engine, which removes the
                        // row after.
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
            }
        };
    };
}
pub(crate) use node_store;

use sqlx::types::Json;

use super::rows::{self, Stored, SubscriptionJson};
use crate::domain::Affiliation;
use crate::store::{decode, NodeAccess, StoreError};

/// A [`NodeAccess`] from a row of node_access's read.
pub fn node_access<R: Stored>(row: &R) -> Result<NodeAccess, StoreError> {
    let node = rows::node(row)?;
    let affiliation = match row.field::<Option<String>>("affiliation")? {
        Some(a) => decode::affiliation(&a)?,
        None => Affiliation::None,
    };
    let Json(subs): Json<Vec<SubscriptionJson>> = row.field("subscriptions")?;
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
