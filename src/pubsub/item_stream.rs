//! Following a node's items as they are published: the use case behind the HTTP
//! gateway's server-sent events. The same permission rule and errors as retrieving
//! items (§6.5, [`Pubsub::readable`]) are applied on every read, so a requester who
//! loses access stops receiving.

use super::{internal, Pubsub, Requester};
use crate::domain::{DomainError, NodeId};
use crate::store::{NodeRecord, SeqItem};

/// Items published after a cursor, with the node they were read from.
#[derive(Debug, Clone)]
pub struct ItemsSince {
    pub node: NodeRecord,
    /// Oldest first.
    pub items: Vec<SeqItem>,
    /// Where the next read starts: the last item's sequence number, or the cursor
    /// given (or the node's newest item when none was given) when nothing is new.
    pub cursor: i64,
}

impl Pubsub {
    /// Items of `node` published after sequence number `after`, oldest first, at most
    /// `max`. With `after = None` nothing is returned and the cursor is the node's
    /// newest item: following starts from now.
    pub async fn items_since(
        &self,
        req: &Requester,
        node: &NodeId,
        after: Option<i64>,
        max: u32,
    ) -> Result<ItemsSince, DomainError> {
        let access = self.readable(req, node).await?;
        let pk = access.node.pk;
        let (items, cursor) = match after {
            None => (
                Vec::new(),
                self.store
                    .latest_seq(pk)
                    .await
                    .map_err(internal)?
                    .unwrap_or(0),
            ),
            Some(after) => {
                let items = self
                    .store
                    .items_after_seq(pk, after, max)
                    .await
                    .map_err(internal)?;
                let cursor = items.last().map_or(after, |i| i.seq);
                (items, cursor)
            }
        };
        Ok(ItemsSince {
            node: access.node,
            items,
            cursor,
        })
    }
}
