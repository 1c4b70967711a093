//! Reading a node's archive (XEP-0313 on pubsub nodes, XEP-0442): the same permission
//! rule and errors as retrieving items (§6.5, [`Pubsub::readable`]; a collection's too),
//! then one keyset page of the node's items in publish order. What the archive holds is in [`crate::domain::archive`].

use super::{internal, Pubsub, Requester};
use crate::domain::archive::{page, ArchiveRequest, Page, MAX_PAGE};
use crate::domain::{DomainError, NodeId};
use crate::store::{NodeRecord, SeqItem};

/// A page of a node's archive, with the node it was read from (its configuration
/// shapes the result messages as it shapes notifications).
#[derive(Debug, Clone)]
pub struct ArchivePage {
    pub node: NodeRecord,
    /// Oldest first.
    pub page: Page<SeqItem>,
}

/// The two ends of a node's archive (XEP-0313 §7 metadata).
#[derive(Debug, Clone)]
pub struct ArchiveEnds {
    pub node: NodeRecord,
    /// The oldest and the newest item; `None` when the archive is empty.
    pub ends: Option<(SeqItem, SeqItem)>,
}

impl Pubsub {
    /// One page of `node`'s archive. Every id the request names as a bound must be a
    /// position the service has handed out, and every id in `ids` must be in the
    /// archive: otherwise `item-not-found` (XEP-0313 §4.1.3, §5.1).
    pub async fn archive(
        &self,
        req: &Requester,
        node: &NodeId,
        request: &ArchiveRequest,
    ) -> Result<ArchivePage, DomainError> {
        let access = self.readable(req, node).await?;
        let pk = access.node.pk;
        let anchors = request.anchors();
        if !anchors.is_empty() {
            let horizon = self.store.archive_horizon().await.map_err(internal)?;
            if anchors.iter().any(|a| a.0 > horizon) {
                return Err(DomainError::ItemNotFound);
            }
        }
        if !request.ids.is_empty() {
            if request.ids.len() > MAX_PAGE as usize {
                return Err(DomainError::PolicyViolation(format!(
                    "at most {MAX_PAGE} ids in one query"
                )));
            }
            let present = self
                .store
                .archive_present(pk, &request.ids)
                .await
                .map_err(internal)?;
            if request.ids.iter().any(|id| !present.contains(id)) {
                return Err(DomainError::ItemNotFound);
            }
        }
        let query = request.query();
        let rows = self
            .store
            .archive_page(pk, &query)
            .await
            .map_err(internal)?;
        Ok(ArchivePage {
            node: access.node,
            page: page(rows, query.from, request.page_size()),
        })
    }

    /// The oldest and newest item of `node`'s archive, with the same rights as a query.
    pub async fn archive_ends(
        &self,
        req: &Requester,
        node: &NodeId,
    ) -> Result<ArchiveEnds, DomainError> {
        use crate::domain::archive::{ArchiveQuery, PageFrom};
        let access = self.readable(req, node).await?;
        let end = |from| ArchiveQuery {
            after: None,
            before: None,
            start: None,
            end: None,
            with: None,
            ids: vec![],
            from,
            limit: 1,
        };
        let pk = access.node.pk;
        let (oldest, newest) = (end(PageFrom::Oldest), end(PageFrom::Newest));
        let (first, last) = tokio::try_join!(
            self.store.archive_page(pk, &oldest),
            self.store.archive_page(pk, &newest)
        )
        .map_err(internal)?;
        Ok(ArchiveEnds {
            node: access.node,
            ends: first.into_iter().next().zip(last.into_iter().next()),
        })
    }
}
