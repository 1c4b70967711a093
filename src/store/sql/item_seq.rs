//! [`ItemSeqStore`](crate::store::ItemSeqStore) in shared SQL, by the `items_by_seq
//! (node_pk, seq DESC)` index; `seq` is global and increasing on both backends (a
//! sequence on PostgreSQL, the `item_seq` counter on SQLite).

/// Implements `ItemSeqStore` for `$store`, and the archive read by the same index
/// ([`super::archive`]).
macro_rules! item_seq_store {
    ($store:ty) => {
        $crate::store::sql::archive_store!($store);
        const _: () = {
            use $crate::store::item_seq::{ItemSeqStore, SeqItem};
            use $crate::store::sql::items::NEWER;
            use $crate::store::sql::rows;
            use $crate::store::StoreError;

            #[async_trait::async_trait]
            impl ItemSeqStore for $store {
                async fn items_after_seq(
                    &self,
                    node_pk: i64,
                    after: i64,
                    limit: u32,
                ) -> Result<Vec<SeqItem>, StoreError> {
                    let rows = self
                        .item_rows(node_pk, NEWER, after, i64::from(limit))
                        .await?;
                    rows.iter().map(rows::seq_item).collect()
                }

                async fn latest_seq(&self, node_pk: i64) -> Result<Option<i64>, StoreError> {
                    Ok(
                        sqlx::query_scalar("SELECT max(seq) FROM items WHERE node_pk = $1")
                            .bind(node_pk)
                            .fetch_one(self.pool())
                            .await?,
                    )
                }
            }
        };
    };
}
pub(crate) use item_seq_store;
