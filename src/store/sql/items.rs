//! [`ItemStore`](crate::store::ItemStore) in shared SQL: publish (with trimming to
//! `max_items`), retract, purge and retrieval newest first, by the `items_by_seq
//! (node_pk, seq DESC)` index. Lists of ids travel as one JSON array. A node's number of
//! items is kept by the schema's triggers (`migrations/0011_item_counts.sql`) in the
//! transaction of every statement that adds or removes items, and read by
//! [`ITEM_COUNT`]: no statement here counts a node's items.
//!
//! A batch of publishes is the backend's: PostgreSQL does it in one statement (DML
//! inside `WITH`), and the common publish as a batch of one.

/// For `item_rows`: newest first, skipping the newest `$2`.
pub const NEWEST: &str = "ORDER BY seq DESC LIMIT $3 OFFSET $2";
/// For `item_rows`: older than the publish sequence number `$2`, newest first.
pub const OLDER: &str = "AND seq < $2 ORDER BY seq DESC LIMIT $3";
/// For `item_rows`: newer than the publish sequence number `$2`, oldest first.
pub const NEWER: &str = "AND seq > $2 ORDER BY seq LIMIT $3";

/// The number of items of node `n` (a row of `nodes`): its row's count plus the
/// changes not yet folded into it (migrations/0011_item_counts.sql; on SQLite there
/// are none). Exact: a change and the items it counts commit together, and a fold moves
/// changes into the row in one statement.
pub const ITEM_COUNT: &str = "CAST(n.item_count + COALESCE((
         SELECT sum(c.delta) FROM item_count_changes c WHERE c.node_pk = n.pk), 0) AS BIGINT)";

/// Most items counted for the RSM index of a page's first item (XEP-0059 §2.2),
/// [`MAX_RSM_INDEX`](crate::domain::MAX_RSM_INDEX): counting the items above a page deep
/// in a node of ten million took most of a second. The count is exact at any size.
pub const MAX_INDEX_SCAN: i64 = crate::domain::MAX_RSM_INDEX as i64;

/// Implements `ItemStore` for `$store` (with the inherent `trim` and `item_rows`);
/// `$extra` are the backend's own methods (`publish_batch`).
macro_rules! item_store {
    ($store:ty, { $($extra:tt)* }) => {
        const _: () = {
            use sqlx::{AssertSqlSafe, Database, Row};

            use $crate::domain::ItemId;
            use $crate::store::jobs::NewJob;
            use $crate::store::sql::items::{ITEM_COUNT, MAX_INDEX_SCAN, NEWER, NEWEST, OLDER};
            use $crate::store::sql::rows::{self, ITEM_COLUMNS};
            use $crate::store::sql::Backend;
            use $crate::store::{
                decode, BatchedPublish, ItemRecord, ItemStore, ItemsPage, ItemsQuery, NewItem,
                Refusal, StoreError,
            };

            type Conn = <<$store as Backend>::Db as Database>::Connection;

            fn records(
                rows: &[<<$store as Backend>::Db as Database>::Row],
            ) -> Result<Vec<ItemRecord>, StoreError> {
                rows.iter().map(rows::item).collect()
            }

            impl $store {
                /// At most `limit` (`$3`) items of the node as `order` picks them: one of
                /// [`NEWEST`], [`OLDER`], [`NEWER`], with `$2` the value it compares or
                /// skips by.
                pub(crate) async fn item_rows(
                    &self,
                    node_pk: i64,
                    order: &str,
                    value: i64,
                    limit: i64,
                ) -> Result<Vec<<<$store as Backend>::Db as Database>::Row>, sqlx::Error> {
                    sqlx::query(AssertSqlSafe(format!(
                        "SELECT {ITEM_COLUMNS} FROM items WHERE node_pk = $1 {order}"
                    )))
                    .bind(node_pk)
                    .bind(value)
                    .bind(limit)
                    .fetch_all(self.pool())
                    .await
                }

                /// How many items of the node are newer than the sequence number `seq`
                /// (the RSM index of the item of `seq`, XEP-0059 §2.2), if that takes
                /// at most [`MAX_INDEX_SCAN`] index entries; `None` (no index given)
                /// deeper.
                async fn newer_than(&self, node_pk: i64, seq: i64) -> Result<Option<u64>, sqlx::Error> {
                    let newer: i64 = sqlx::query_scalar(
                        "SELECT count(*) FROM (
                             SELECT 1 FROM items WHERE node_pk = $1 AND seq > $2
                             ORDER BY seq LIMIT $3) AS newer",
                    )
                    .bind(node_pk)
                    .bind(seq)
                    .bind(MAX_INDEX_SCAN + 1)
                    .fetch_one(self.pool())
                    .await?;
                    Ok((newer <= MAX_INDEX_SCAN).then_some(newer.max(0) as u64))
                }

                /// Deletes all but the newest `keep` items of the node.
                pub(crate) async fn trim(
                    conn: &mut Conn,
                    node_pk: i64,
                    keep: u32,
                ) -> Result<(), sqlx::Error> {
                    // No `keep`-th newest item (NULL): nothing to delete.
                    sqlx::query(
                        "DELETE FROM items WHERE node_pk = $1 AND seq <= (
                             SELECT seq FROM items WHERE node_pk = $1
                             ORDER BY seq DESC LIMIT 1 OFFSET $2)",
                    )
                    .bind(node_pk)
                    .bind(i64::from(keep))
                    .execute(conn)
                    .await?;
                    Ok(())
                }

            }

            #[async_trait::async_trait]
            impl ItemStore for $store {
                async fn publish(
                    &self,
                    node_pk: i64,
                    item: Option<NewItem>,
                    keep_items: u32,
                    jobs: Vec<NewJob>,
                ) -> Result<Result<(), Refusal>, StoreError> {
                    // Where a batch is one statement, the common publish (one item, one
                    // notification job) is a batch of one: one round trip (a statement is
                    // its own transaction, and the item and its job commit together).
                    if let (true, Some(item), [job], true) = (
                        <$store>::ONE_STATEMENT_BATCH,
                        &item,
                        jobs.as_slice(),
                        keep_items > 0,
                    ) {
                        let one = BatchedPublish {
                            node_pk,
                            item: item.clone(),
                            keep: keep_items,
                            job: job.clone(),
                        };
                        self.publish_batch(std::slice::from_ref(&one)).await?;
                        return Ok(Ok(()));
                    }
                    // Else one write transaction: store the item, trim the node, queue
                    // the jobs.
                    let mut tx = self.write_tx().await?;
                    if let Some(item) = item {
                        // An overwrite takes a new sequence number: it is the newest
                        // item now.
                        let seq: i64 = sqlx::query_scalar(<$store>::NEXT_SEQ)
                            .fetch_one(&mut *tx)
                            .await?;
                        sqlx::query(AssertSqlSafe(format!(
                            "INSERT INTO items (node_pk, item_id, seq, publisher, payload)
                             VALUES ($1, $2, $3, $4, $5)
                             ON CONFLICT (node_pk, item_id) DO UPDATE
                             SET seq = excluded.seq, publisher = excluded.publisher,
                                 payload = excluded.payload, published_at = {}",
                            <$store>::NOW
                        )))
                        .bind(node_pk)
                        .bind(item.id.as_str())
                        .bind(seq)
                        .bind(&item.publisher)
                        .bind(&item.payload)
                        .execute(&mut *tx)
                        .await?;
                        Self::trim(&mut tx, node_pk, keep_items).await?;
                    }
                    let queued = Self::insert_jobs(&mut tx, &jobs).await?;
                    self.commit(tx, queued).await?;
                    Ok(Ok(()))
                }

                async fn item_publisher(
                    &self,
                    node_pk: i64,
                    id: &ItemId,
                ) -> Result<Option<String>, StoreError> {
                    Ok(
                        sqlx::query_scalar("SELECT publisher FROM items WHERE node_pk = $1 AND item_id = $2")
                            .bind(node_pk)
                            .bind(id.as_str())
                            .fetch_optional(self.pool())
                            .await?,
                    )
                }

                async fn retract(
                    &self,
                    node_pk: i64,
                    ids: &[ItemId],
                    jobs: Vec<NewJob>,
                ) -> Result<Vec<ItemId>, StoreError> {
                    let mut tx = self.write_tx().await?;
                    let wanted: Vec<&str> = ids.iter().map(ItemId::as_str).collect();
                    let gone: Vec<String> = sqlx::query_scalar(
                        AssertSqlSafe(format!(
                            "DELETE FROM items WHERE node_pk = $1 AND item_id {} RETURNING item_id",
                            <$store>::in_list("$2")
                        )),
                    )
                    .bind(node_pk)
                    .bind(Self::list(&wanted))
                    .fetch_all(&mut *tx)
                    .await?;
                    let queued = if gone.is_empty() {
                        0
                    } else {
                        Self::insert_jobs(&mut tx, &jobs).await?
                    };
                    self.commit(tx, queued).await?;
                    gone.iter().map(|s| decode::item_id(s)).collect()
                }

                async fn purge(&self, node_pk: i64, jobs: Vec<NewJob>) -> Result<(), StoreError> {
                    let mut tx = self.write_tx().await?;
                    sqlx::query("DELETE FROM items WHERE node_pk = $1")
                        .bind(node_pk)
                        .execute(&mut *tx)
                        .await?;
                    let queued = Self::insert_jobs(&mut tx, &jobs).await?;
                    self.commit(tx, queued).await?;
                    Ok(())
                }

                async fn items(&self, node_pk: i64, query: &ItemsQuery) -> Result<ItemsPage, StoreError> {
                    let count = self.item_count(node_pk).await?;
                    let (items, first_index) = match query {
                        ItemsQuery::Latest { max } => {
                            let limit = max.map_or(i64::MAX, i64::from);
                            (records(&self.item_rows(node_pk, NEWEST, 0, limit).await?)?, Some(0))
                        }
                        ItemsQuery::Ids(ids) => {
                            let wanted: Vec<&str> = ids.iter().map(ItemId::as_str).collect();
                            let rows = sqlx::query(AssertSqlSafe(format!(
                                "SELECT {ITEM_COLUMNS} FROM items
                                 WHERE node_pk = $1 AND item_id {ids}",
                                ids = <$store>::in_list("$2")
                            )))
                            .bind(node_pk)
                            .bind(Self::list(&wanted))
                            .fetch_all(self.pool())
                            .await?;
                            // In the order asked for.
                            let mut items = records(&rows)?;
                            items.sort_by_key(|i| wanted.iter().position(|w| *w == i.id.as_str()));
                            (items, None)
                        }
                        ItemsQuery::Page {
                            max,
                            after,
                            before,
                            index,
                        } => {
                            let limit = i64::from(*max);
                            let anchor = |id: &str| {
                                sqlx::query_scalar::<_, i64>(
                                    "SELECT seq FROM items WHERE node_pk = $1 AND item_id = $2",
                                )
                                .bind(node_pk)
                                .bind(id.to_owned())
                                .fetch_optional(self.pool())
                            };
                            let rows = match (after, before) {
                                (Some(after), _) => {
                                    let Some(seq) = anchor(after).await? else {
                                        return Ok(ItemsPage::missing_anchor(count));
                                    };
                                    self.item_rows(node_pk, OLDER, seq, limit).await?
                                }
                                (None, Some(before)) => {
                                    // Newer than `before` (or the oldest page for an empty one):
                                    // read upwards, then turn the page newest first.
                                    let seq = if before.is_empty() {
                                        i64::MIN
                                    } else {
                                        match anchor(before).await? {
                                            Some(seq) => seq,
                                            None => return Ok(ItemsPage::missing_anchor(count)),
                                        }
                                    };
                                    let mut rows = self.item_rows(node_pk, NEWER, seq, limit).await?;
                                    rows.reverse();
                                    rows
                                }
                                (None, None) => {
                                    let skip = i64::from(index.unwrap_or(0));
                                    self.item_rows(node_pk, NEWEST, skip, limit).await?
                                }
                            };
                            let first_index = match (rows.first(), after, before, index) {
                                (None, ..) => None,
                                // The last page ends with the oldest item.
                                (Some(_), None, Some(before), _) if before.is_empty() => {
                                    Some(count.saturating_sub(rows.len() as u64))
                                }
                                (Some(_), None, None, skip) => Some(u64::from(skip.unwrap_or(0))),
                                (Some(first), ..) => {
                                    let seq: i64 = first.try_get("seq")?;
                                    self.newer_than(node_pk, seq).await?
                                }
                            };
                            (records(&rows)?, first_index)
                        }
                    };
                    Ok(ItemsPage {
                        items,
                        count,
                        first_index,
                        anchor_missing: false,
                    })
                }

                async fn last_item(&self, node_pk: i64) -> Result<Option<ItemRecord>, StoreError> {
                    let rows = self.item_rows(node_pk, NEWEST, 0, 1).await?;
                    rows.first().map(rows::item).transpose()
                }

                async fn item_count(&self, node_pk: i64) -> Result<u64, StoreError> {
                    let n: Option<i64> =
                        sqlx::query_scalar(AssertSqlSafe(format!(
                            "SELECT {ITEM_COUNT} FROM nodes n WHERE n.pk = $1"
                        )))
                            .bind(node_pk)
                            .fetch_optional(self.pool())
                            .await?;
                    Ok(n.unwrap_or(0).max(0) as u64)
                }

                        $($extra)*
            }
        };
    };
}
pub(crate) use item_store;
