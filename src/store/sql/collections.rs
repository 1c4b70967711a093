//! [`CollectionStore`](crate::store::CollectionStore) in shared SQL: the links between
//! collections and their children (`collection_links`), changed under one lock and
//! checked for cycles and `children_max` before commit (alone, or inside the
//! transaction that creates or configures a node, so a form's configuration and links
//! commit together); and, for the fan-out, the collections above a leaf and a keyset
//! page of their subscribers.

use crate::domain::collection::MAX_DEPTH;

/// The ancestors of node `$1` (its parents, their parents, …) as rows `up(pk, depth)`,
/// depth 1 for a parent; at most [`MAX_DEPTH`] links up, so that even a graph that
/// somehow held a cycle could not make the statement run forever.
pub fn ancestors_cte(start: &str) -> String {
    format!(
        "WITH RECURSIVE up(pk, depth) AS (
             SELECT parent_pk, 1 FROM collection_links WHERE child_pk = {start}
           UNION ALL
             SELECT c.parent_pk, u.depth + 1
             FROM collection_links c JOIN up u ON c.child_pk = u.pk
             WHERE u.depth < {MAX_DEPTH}
         )"
    )
}

/// The collections above each node of the list `$1` (`leaf, pk, name, depth`, the
/// shortest distance), live collections only: what a claim's walks need.
pub fn collections_above_sql(in_list: &str) -> String {
    format!(
        "WITH RECURSIVE up(leaf, pk, depth) AS (
             SELECT child_pk, parent_pk, 1 FROM collection_links WHERE child_pk {in_list}
           UNION ALL
             SELECT u.leaf, c.parent_pk, u.depth + 1
             FROM collection_links c JOIN up u ON c.child_pk = u.pk
             WHERE u.depth < {MAX_DEPTH}
         )
         SELECT u.leaf, u.pk, n.name, CAST(min(u.depth) AS BIGINT) AS depth
         FROM up u JOIN nodes n ON n.pk = u.pk AND NOT n.deleted
         GROUP BY u.leaf, u.pk, n.name
         ORDER BY u.leaf, u.pk"
    )
}

/// One keyset page of the subscriptions that may reach the leaves of the list `$6`
/// through the collections above them: subscriptions to a collection of the list `$1`
/// after `$2` in `pk` order, at most `$3`; a collection of the list `$4` (the direct
/// parents) takes every subscription, any other only those of depth `all`; and only
/// subscribers who may read some leaf by affiliation: any if `$5` (no affiliation
/// reads one), else those with an affiliation of the list `$7` with one of the leaves.
/// Which leaf each subscriber reads is decided by the caller, from
/// [`leaf_affiliations_sql`]. `via` names the collection.
pub fn collection_page_sql(in_list: fn(&str) -> String) -> String {
    format!(
        "SELECT s.pk, s.jid, s.bare_jid, s.subid, CAST(s.options AS TEXT) AS options,
                n.name AS via
         FROM subscriptions s JOIN nodes n ON n.pk = s.node_pk
         WHERE s.node_pk {} AND s.pk > $2 AND s.state = 'subscribed'
           AND (s.node_pk {} OR s.options ->> 'subscription_depth' = 'all')
           AND ($5 OR EXISTS (SELECT 1 FROM affiliations a
                              WHERE a.jid = s.bare_jid AND a.node_pk {}
                                AND a.affiliation {}))
         ORDER BY s.pk
         LIMIT $3",
        in_list("$1"),
        in_list("$4"),
        in_list("$6"),
        in_list("$7")
    )
}

/// The affiliations (`node_pk, jid, affiliation`) of the bare JIDs of the list `$2`
/// with the nodes of the list `$1`: one primary-key probe per pair.
pub fn leaf_affiliations_sql(in_list: fn(&str) -> String) -> String {
    format!(
        "SELECT node_pk, jid, affiliation FROM affiliations
         WHERE node_pk {} AND jid {}",
        in_list("$1"),
        in_list("$2")
    )
}

/// Whether collection `$1` holds more children than its configuration's
/// `children_max` (none: no limit). A number in the stored JSON on both backends.
pub const OVER_CHILDREN_MAX: &str = "SELECT EXISTS (
         SELECT 1 FROM nodes n WHERE n.pk = $1
           AND CAST(n.config ->> 'children_max' AS BIGINT)
               < (SELECT count(*) FROM collection_links c WHERE c.parent_pk = n.pk))";

/// Implements `CollectionStore` for `$store` (with the inherent `link_in_tx`, which
/// node creation and configuration use too).
macro_rules! collection_store {
    ($store:ty) => {
        const _: () = {
            use sqlx::AssertSqlSafe;

            use $crate::domain::NodeId;
            use $crate::store::sql::collections::{ancestors_cte, OVER_CHILDREN_MAX};
            use $crate::store::sql::Backend;
            use $crate::store::{CollectionStore, LinkChange, LinkRefusal, StoreError};

            type Conn = <<$store as Backend>::Db as sqlx::Database>::Connection;

            async fn link(conn: &mut Conn, parent: i64, child: i64) -> Result<(), sqlx::Error> {
                sqlx::query(
                    "INSERT INTO collection_links (parent_pk, child_pk) VALUES ($1, $2)
                     ON CONFLICT DO NOTHING",
                )
                .bind(parent)
                .bind(child)
                .execute(conn)
                .await?;
                Ok(())
            }

            async fn names(store: &$store, sql: &str, pk: i64) -> Result<Vec<NodeId>, StoreError> {
                let rows: Vec<String> = sqlx::query_scalar(AssertSqlSafe(sql.to_owned()))
                    .bind(pk)
                    .fetch_all(store.pool())
                    .await?;
                rows.iter()
                    .map(|n| NodeId::parse(n).map_err(|_| StoreError::Corrupt(format!("node name {n:?}"))))
                    .collect()
            }

            impl $store {
                /// Makes `changes` inside the write transaction `conn`, serialised with
                /// every other link change, and checks the graph after them: no node its
                /// own ancestor, and each collection of `parents_to_check` or gaining
                /// children at most its `children_max` (read here, so a configuration
                /// changed earlier in the same transaction counts). On a refusal the
                /// caller rolls back: rows may have been written.
                pub(crate) async fn link_in_tx(
                    conn: &mut Conn,
                    changes: &[LinkChange],
                    parents_to_check: &[i64],
                ) -> Result<Result<(), LinkRefusal>, sqlx::Error> {
                    if changes.iter().any(LinkChange::links_itself) {
                        return Ok(Err(LinkRefusal::Cycle));
                    }
                    if let Some(lock) = <$store>::LOCK_LINKS {
                        sqlx::query(lock).execute(&mut *conn).await?;
                    }
                    for change in changes {
                        match change {
                            LinkChange::Associate { parent, child } => {
                                link(conn, *parent, *child).await?;
                            }
                            LinkChange::Dissociate { parent, child } => {
                                let gone = sqlx::query(
                                    "DELETE FROM collection_links WHERE parent_pk = $1 AND child_pk = $2",
                                )
                                .bind(parent)
                                .bind(child)
                                .execute(&mut *conn)
                                .await?;
                                if gone.rows_affected() == 0 {
                                    return Ok(Err(LinkRefusal::NotLinked));
                                }
                            }
                            LinkChange::SetParents { child, parents } => {
                                sqlx::query("DELETE FROM collection_links WHERE child_pk = $1")
                                    .bind(child)
                                    .execute(&mut *conn)
                                    .await?;
                                for parent in parents {
                                    link(conn, *parent, *child).await?;
                                }
                            }
                            LinkChange::SetChildren { parent, children } => {
                                sqlx::query("DELETE FROM collection_links WHERE parent_pk = $1")
                                    .bind(parent)
                                    .execute(&mut *conn)
                                    .await?;
                                for child in children {
                                    link(conn, *parent, *child).await?;
                                }
                            }
                        }
                    }
                    for pivot in changes.iter().filter_map(LinkChange::pivot) {
                        let cycle: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
                            "{} SELECT count(*) FROM up WHERE pk = $1",
                            ancestors_cte("$1")
                        )))
                        .bind(pivot)
                        .fetch_one(&mut *conn)
                        .await?;
                        if cycle > 0 {
                            return Ok(Err(LinkRefusal::Cycle));
                        }
                    }
                    let mut parents: Vec<i64> = parents_to_check.to_vec();
                    parents.extend(changes.iter().flat_map(LinkChange::growing_parents));
                    parents.sort_unstable();
                    parents.dedup();
                    for parent in parents {
                        let over: bool = sqlx::query_scalar(OVER_CHILDREN_MAX)
                            .bind(parent)
                            .fetch_one(&mut *conn)
                            .await?;
                        if over {
                            return Ok(Err(LinkRefusal::TooManyChildren));
                        }
                    }
                    Ok(Ok(()))
                }
            }

            #[async_trait::async_trait]
            impl CollectionStore for $store {
                async fn change_links(
                    &self,
                    change: &LinkChange,
                ) -> Result<Result<(), LinkRefusal>, StoreError> {
                    let mut tx = self.write_tx().await?;
                    match Self::link_in_tx(&mut tx, std::slice::from_ref(change), &[]).await? {
                        Ok(()) => {
                            self.commit(tx, 0).await?;
                            Ok(Ok(()))
                        }
                        Err(refusal) => {
                            tx.rollback().await?;
                            Ok(Err(refusal))
                        }
                    }
                }

                async fn children(&self, pk: i64) -> Result<Vec<NodeId>, StoreError> {
                    names(
                        self,
                        "SELECT n.name FROM collection_links c
                         JOIN nodes n ON n.pk = c.child_pk AND NOT n.deleted
                         WHERE c.parent_pk = $1 ORDER BY n.name",
                        pk,
                    )
                    .await
                }

                async fn parents(&self, pk: i64) -> Result<Vec<NodeId>, StoreError> {
                    names(
                        self,
                        "SELECT n.name FROM collection_links c
                         JOIN nodes n ON n.pk = c.parent_pk AND NOT n.deleted
                         WHERE c.child_pk = $1 ORDER BY n.name",
                        pk,
                    )
                    .await
                }
            }
        };
    };
}
pub(crate) use collection_store;
