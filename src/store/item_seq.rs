//! Items by their global publish sequence number: the cursor of the HTTP gateway's
//! server-sent event streams (`Last-Event-ID`).
//!
//! Kept apart from [`super::ItemStore`] on purpose: only streaming readers need the
//! sequence number, and an overwrite takes a new one, so "items after N" is exactly
//! "what was published (or re-published) since N".

use async_trait::async_trait;

use super::{ItemRecord, StoreError};

/// A stored item with its place in the global publish order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeqItem {
    /// Increases with every publish and overwrite, across all nodes.
    pub seq: i64,
    pub item: ItemRecord,
}

/// Reading a node's items in publish order.
#[async_trait]
pub trait ItemSeqStore: Send + Sync + 'static {
    /// Items of the node with a sequence number above `after`, oldest first, at most
    /// `limit`.
    async fn items_after_seq(
        &self,
        node_pk: i64,
        after: i64,
        limit: u32,
    ) -> Result<Vec<SeqItem>, StoreError>;

    /// The sequence number of the node's newest item (`None` when it has none).
    async fn latest_seq(&self, node_pk: i64) -> Result<Option<i64>, StoreError>;
}
