//! A node's archive (XEP-0313/XEP-0442) read from the items table: the node's stored
//! items in publish order, by the `items_by_seq (node_pk, seq DESC)` index, so a page
//! costs the same at any depth. See [`crate::domain::archive`] for what an archive id
//! is and what overwrites, retractions and retention do to the archive.
//!
//! Kept apart from [`super::ItemStore`]: its statements live in
//! [`super::sql::archive`], written once for both backends.

use async_trait::async_trait;

use super::{SeqItem, StoreError};
use crate::domain::archive::{ArchiveId, ArchiveQuery};

/// Reading a node's archive.
#[async_trait]
pub trait ArchiveStore: Send + Sync + 'static {
    /// The node's items matching `query`, at most `query.limit`: oldest first when the
    /// page is taken from the oldest end, newest first otherwise.
    async fn archive_page(
        &self,
        node_pk: i64,
        query: &ArchiveQuery,
    ) -> Result<Vec<SeqItem>, StoreError>;

    /// Which of `ids` are in the node's archive now.
    async fn archive_present(
        &self,
        node_pk: i64,
        ids: &[ArchiveId],
    ) -> Result<Vec<ArchiveId>, StoreError>;

    /// The last publish sequence number the service has handed out (in any node):
    /// every id up to it is a position in every archive.
    async fn archive_horizon(&self) -> Result<i64, StoreError>;
}
