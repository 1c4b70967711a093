//! [`AffiliationStore`](crate::store::AffiliationStore) in shared SQL. `none` is never
//! stored: no row means none.

/// Implements `AffiliationStore` for `$store`.
macro_rules! affiliation_store {
    ($store:ty) => {
        const _: () = {
            use sqlx::AssertSqlSafe;
            use xmpp_parsers::jid::BareJid;

            use $crate::domain::{Affiliation, NodeId};
            use $crate::store::sql::Backend;
            use $crate::store::{decode, AffiliationChange, AffiliationStore, Refusal, StoreError};

            /// `(who, affiliation)` rows, `who` decoded by `who`.
            fn pairs<T>(
                rows: Vec<(String, String)>,
                who: fn(&str) -> Result<T, StoreError>,
            ) -> Result<Vec<(T, Affiliation)>, StoreError> {
                rows.iter()
                    .map(|(w, a)| Ok((who(w)?, decode::affiliation(a)?)))
                    .collect()
            }

            #[async_trait::async_trait]
            impl AffiliationStore for $store {
                async fn node_affiliations(
                    &self,
                    node_pk: i64,
                ) -> Result<Vec<(BareJid, Affiliation)>, StoreError> {
                    let rows = sqlx::query_as(
                        "SELECT jid, affiliation FROM affiliations WHERE node_pk = $1 ORDER BY jid",
                    )
                    .bind(node_pk)
                    .fetch_all(self.pool())
                    .await?;
                    pairs(rows, decode::bare_jid)
                }

                async fn jid_affiliations(
                    &self,
                    jid: &BareJid,
                    node_pk: Option<i64>,
                ) -> Result<Vec<(NodeId, Affiliation)>, StoreError> {
                    let rows = sqlx::query_as(
                        "SELECT n.name, a.affiliation FROM affiliations a JOIN nodes n ON n.pk = a.node_pk
                         WHERE a.jid = $1 AND ($2 IS NULL OR a.node_pk = $2) AND NOT n.deleted
                         ORDER BY n.name",
                    )
                    .bind(jid.as_str())
                    .bind(node_pk)
                    .fetch_all(self.pool())
                    .await?;
                    pairs(rows, decode::node_id)
                }

                async fn set_affiliations(
                    &self,
                    node_pk: i64,
                    changes: &[AffiliationChange],
                ) -> Result<Result<(), Refusal>, StoreError> {
                    // Serialise concurrent changes of one node's affiliations, so two owners each
                    // removing the other cannot leave the node ownerless: the node row is locked
                    // (`FOR UPDATE`) on PostgreSQL; SQLite's write transaction holds the write lock
                    // from its first statement (BEGIN IMMEDIATE), which does the same.
                    let mut tx = self.write_tx().await?;
                    let live: Option<i64> = sqlx::query_scalar(AssertSqlSafe(format!(
                        "SELECT pk FROM nodes WHERE pk = $1 AND NOT deleted{}",
                        <$store>::LOCK_ROW
                    )))
                    .bind(node_pk)
                            .fetch_optional(&mut *tx)
                            .await?;
                    if live.is_none() {
                        return Ok(Err(Refusal::NodeGone));
                    }
                    for change in changes {
                        let jid = change.jid.as_str();
                        match change.affiliation {
                            Affiliation::None => {
                                sqlx::query("DELETE FROM affiliations WHERE node_pk = $1 AND jid = $2")
                                    .bind(node_pk)
                                    .bind(jid)
                                    .execute(&mut *tx)
                                    .await?;
                            }
                            a => {
                                sqlx::query(
                                    "INSERT INTO affiliations (node_pk, jid, affiliation) VALUES ($1, $2, $3)
                                     ON CONFLICT (node_pk, jid) DO UPDATE SET affiliation = excluded.affiliation",
                                )
                                .bind(node_pk)
                                .bind(jid)
                                .bind(a.as_str())
                                .execute(&mut *tx)
                                .await?;
                            }
                        }
                        if change.affiliation == Affiliation::Outcast {
                            // XEP-0060 §8.9.2.4: an outcast's subscriptions are cancelled.
                            sqlx::query("DELETE FROM subscriptions WHERE node_pk = $1 AND bare_jid = $2")
                                .bind(node_pk)
                                .bind(jid)
                                .execute(&mut *tx)
                                .await?;
                        }
                    }
                    let owners: i64 = sqlx::query_scalar(
                        "SELECT count(*) FROM affiliations WHERE node_pk = $1 AND affiliation = 'owner'",
                    )
                    .bind(node_pk)
                    .fetch_one(&mut *tx)
                    .await?;
                    if owners == 0 {
                        tx.rollback().await?;
                        return Ok(Err(Refusal::LastOwner));
                    }
                    self.commit(tx, 0).await?;
                    Ok(Ok(()))
                }
            }
        };
    };
}
pub(crate) use affiliation_store;
