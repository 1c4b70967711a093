//! Items in SQLite: the shared SQL ([`crate::store::sql`]) as it is; a publish is one
//! write transaction (SQLite has no DML inside `WITH`).

use super::SqliteStore;

crate::store::sql::item_store!(SqliteStore, {
    async fn publish(
        &self,
        node_pk: i64,
        item: Option<NewItem>,
        keep_items: u32,
        jobs: Vec<NewJob>,
    ) -> Result<Result<(), Refusal>, StoreError> {
        self.publish_in_tx(node_pk, item, keep_items, jobs).await
    }
});
