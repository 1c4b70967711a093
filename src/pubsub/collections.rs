//! Collection nodes (XEP-0248): associating and dissociating children, the links of a
//! configuration form, and what disco#items and the configuration form show of them.
//!
//! Only a collection's owners link nodes to it (`pubsub#children_association_policy`
//! is `owners`); the child must merely be visible to them, since what its items reach
//! through a collection is decided per leaf in the fan-out
//! (`domain::collection::collection_readers`).

use super::{context, internal, Pubsub, Requester};
use crate::domain::collection::{check_parent, LinkRequest};
use crate::domain::{
    check_configure, check_node_metadata_visibility, AccessModel, DomainError, NodeConfig, NodeId,
    NodeType,
};
use crate::store::{LinkChange, LinkRefusal, NodeLinks, NodeRecord};

/// The links of one node, parents and children, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Links {
    pub parents: Vec<NodeId>,
    pub children: Vec<NodeId>,
}

pub(crate) fn refused(r: LinkRefusal) -> DomainError {
    match r {
        // XEP-0248 §6.2.3.5 and §6.4.3.3.
        LinkRefusal::Cycle => DomainError::InvalidLink("the link would make a cycle".into()),
        // XEP-0248 §6.2.3.3 and §6.4.3.2: not-allowed + max-nodes-exceeded.
        LinkRefusal::TooManyChildren => DomainError::MaxNodesExceeded,
        // XEP-0248 §6.5.3.1.
        LinkRefusal::NotLinked => DomainError::BadRequest("the nodes are not associated".into()),
    }
}

impl Pubsub {
    /// Associates `child` with the collection `collection` (XEP-0248 §6.4).
    pub async fn associate(
        &self,
        req: &Requester,
        collection: &NodeId,
        child: &NodeId,
    ) -> Result<(), DomainError> {
        let parent = self.owned_collection(req, collection).await?;
        let child = self.visible_node(req, child).await?;
        self.change_links(LinkChange::Associate {
            parent: parent.pk,
            child: child.pk,
        })
        .await
    }

    /// Dissociates `child` from the collection `collection` (XEP-0248 §6.5); nodes that
    /// are not associated are `bad-request`.
    pub async fn dissociate(
        &self,
        req: &Requester,
        collection: &NodeId,
        child: &NodeId,
    ) -> Result<(), DomainError> {
        let parent = self.access(req, collection).await?;
        check_configure(&context(req, &parent, None))?;
        let child = self.visible_node(req, child).await?;
        self.change_links(LinkChange::Dissociate {
            parent: parent.node.pk,
            child: child.pk,
        })
        .await
    }

    /// The parents and children of a node visible to the requester, with the node;
    /// linked nodes the requester may not see (a whitelist node it is not affiliated
    /// with) are left out, as disco#items of the service leaves them out.
    pub async fn node_links(
        &self,
        req: &Requester,
        node: &NodeId,
    ) -> Result<(NodeRecord, Links), DomainError> {
        let node = self.visible_node(req, node).await?;
        let links = self.links_of(node.pk).await?;
        let links = Links {
            parents: self.only_visible(req, links.parents).await?,
            children: self.only_visible(req, links.children).await?,
        };
        Ok((node, links))
    }

    /// The nodes of `names` the requester may know of, in one read.
    async fn only_visible(
        &self,
        req: &Requester,
        names: Vec<NodeId>,
    ) -> Result<Vec<NodeId>, DomainError> {
        if names.is_empty() {
            return Ok(names);
        }
        let accesses = self
            .store
            .node_accesses(&names, &req.bare)
            .await
            .map_err(internal)?;
        Ok(names
            .into_iter()
            .zip(accesses)
            .filter_map(|(name, access)| {
                let access = access?;
                check_node_metadata_visibility(&context(req, &access, None))
                    .ok()
                    .map(|()| name)
            })
            .collect())
    }

    pub(crate) async fn links_of(&self, pk: i64) -> Result<Links, DomainError> {
        Ok(Links {
            parents: self.store.parents(pk).await.map_err(internal)?,
            children: self.store.children(pk).await.map_err(internal)?,
        })
    }

    /// Checks the links a configuration form asks of a node configured as `config`,
    /// without changing anything: each parent a collection the requester owns, each
    /// child visible, children only on a collection. Returns them by pk, for the store
    /// to make in the transaction that stores the configuration (which checks cycles
    /// and `children_max`).
    pub(crate) async fn plan_links(
        &self,
        req: &Requester,
        config: &NodeConfig,
        links: &LinkRequest,
    ) -> Result<NodeLinks, DomainError> {
        let mut planned = NodeLinks::default();
        if let Some(parents) = &links.parents {
            let mut found = Vec::with_capacity(parents.len());
            for name in parents {
                found.push(self.owned_collection(req, name).await?.pk);
            }
            planned.parents = Some(found);
        }
        if let Some(children) = &links.children {
            if !children.is_empty() {
                check_parent(config)?;
            }
            let mut found = Vec::with_capacity(children.len());
            for name in children {
                found.push(self.visible_node(req, name).await?.pk);
            }
            planned.children = Some(found);
        }
        Ok(planned)
    }

    async fn change_links(&self, change: LinkChange) -> Result<(), DomainError> {
        self.store
            .change_links(&change)
            .await
            .map_err(internal)?
            .map_err(refused)?;
        tracing::info!(?change, "collection links changed");
        Ok(())
    }

    /// Lets a new node join the service's root collection (`[service] root_collection`)
    /// if it is an open leaf, the collection exists and it has room. A service
    /// convenience, not the creator's request: when it cannot join, the node stays as
    /// created and the reason is logged.
    pub(crate) async fn join_root(&self, node: &NodeRecord) -> Result<(), DomainError> {
        let Some(root) = &self.policy.root_collection else {
            return Ok(());
        };
        if node.name == *root
            || node.config.node_type != NodeType::Leaf
            || node.config.access_model != AccessModel::Open
        {
            return Ok(());
        }
        let Some(parent) = self.store.node(root).await.map_err(internal)? else {
            tracing::warn!(%root, node = %node.name, "root collection missing: the node joins none");
            return Ok(());
        };
        if check_parent(&parent.config).is_err() {
            tracing::warn!(%root, "root_collection names a leaf node: nothing joins it");
            return Ok(());
        }
        let change = LinkChange::Associate {
            parent: parent.pk,
            child: node.pk,
        };
        match self.store.change_links(&change).await.map_err(internal)? {
            Ok(()) => tracing::debug!(%root, node = %node.name, "joined the root collection"),
            Err(why) => {
                tracing::warn!(%root, node = %node.name, ?why, "cannot join the root collection")
            }
        }
        Ok(())
    }

    /// A collection the requester owns (`forbidden` otherwise; a leaf is
    /// `invalid-options`).
    async fn owned_collection(
        &self,
        req: &Requester,
        name: &NodeId,
    ) -> Result<NodeRecord, DomainError> {
        let access = self.access(req, name).await?;
        check_configure(&context(req, &access, None))?;
        check_parent(&access.node.config)?;
        Ok(access.node)
    }

    /// A node the requester may know of (`item-not-found` otherwise).
    async fn visible_node(
        &self,
        req: &Requester,
        name: &NodeId,
    ) -> Result<NodeRecord, DomainError> {
        let access = self.access(req, name).await?;
        check_node_metadata_visibility(&context(req, &access, None))?;
        Ok(access.node)
    }
}
