//! Owner use cases on nodes (XEP-0060 §8.1–8.5) and node metadata (§5.4).

use xmpp_parsers::data_forms::DataForm;
use xmpp_parsers::jid::BareJid;

use super::collections::refused;
use super::{context, internal, notify, Pubsub, Requester};
use crate::domain::collection::check_type_change;
use crate::domain::{
    check_configure, check_create, check_delete, check_node_metadata_visibility, check_purge,
    AccessModel, Affiliation, DomainError, LinkRequest, NodeConfig, NodeId, NodeType,
    UnsupportedAccessReason, NODE_CONFIG_FORM_TYPE,
};
use crate::store::{NodeLinks, NodeRecord, Refusal};

/// What disco#info on a node shows (§5.3, §5.4).
#[derive(Debug, Clone)]
pub struct NodeInfo {
    pub node: NodeRecord,
    pub owners: Vec<BareJid>,
    pub publishers: Vec<BareJid>,
    pub subscribers: u64,
    pub items: u64,
}

impl Pubsub {
    /// Creates a node (§8.1), named or instant (`name = None`), with the service
    /// defaults and then the creator's configuration form, if any.
    pub async fn create_node(
        &self,
        req: &Requester,
        name: Option<NodeId>,
        form: Option<&DataForm>,
    ) -> Result<NodeRecord, DomainError> {
        check_create(&req.bare, &self.policy.create, &self.policy.admins)?;
        if !req.admin && self.policy.limits.max_nodes_per_owner.is_some() {
            let owned = self.store.owned_nodes(&req.bare).await.map_err(internal)?;
            self.policy
                .limits
                .check_node_quota(u32::try_from(owned).unwrap_or(u32::MAX))?;
        }
        let mut config = self.policy.default_config.clone();
        let mut links = NodeLinks::default();
        if let Some(form) = form {
            config.apply_form(form, &self.policy.limits)?;
            self.check_roster_model(req, &config)?;
            let asked = LinkRequest::from_form(form, NODE_CONFIG_FORM_TYPE)?;
            links = self.plan_links(req, &config, &asked).await?;
        }
        // Created and linked in one transaction: a refused link (a parent full
        // meanwhile) leaves nothing behind.
        let node = self.insert_node(req, name, &config, &links).await?;
        // The creator's own links set the whole set of parents.
        if links.is_empty() {
            self.join_root(&node).await?;
        }
        Ok(node)
    }

    /// A `roster` node needs the owner's roster groups: refused while the server grants
    /// no roster privilege for the owner's domain, with the reason in the text and the
    /// log. (`presence` stays configurable, failing closed, as it always did.)
    pub(crate) fn check_roster_model(
        &self,
        req: &Requester,
        config: &NodeConfig,
    ) -> Result<(), DomainError> {
        if config.access_model != AccessModel::Roster || self.rosters.readable(req.bare.domain()) {
            return Ok(());
        }
        tracing::warn!(
            owner = %req.bare,
            "roster access model refused: the XMPP server granted no XEP-0356 roster privilege"
        );
        Err(DomainError::UnsupportedAccessModel {
            model: AccessModel::Roster,
            reason: UnsupportedAccessReason::NoRosterPrivilege,
        })
    }

    /// Stores a new node with its links; an instant node gets a fresh random name.
    pub(crate) async fn insert_node(
        &self,
        req: &Requester,
        name: Option<NodeId>,
        config: &NodeConfig,
        links: &NodeLinks,
    ) -> Result<NodeRecord, DomainError> {
        let name = name.unwrap_or_else(NodeId::generate);
        let node = self
            .store
            .create_node(&name, config, &req.bare, links)
            .await
            .map_err(internal)?
            .map_err(gone)?;
        tracing::info!(node = %node.name, owner = %req.bare, "node created");
        Ok(node)
    }

    /// The current configuration, for the owner's form (§8.2.1).
    pub async fn node_config(
        &self,
        req: &Requester,
        node: &NodeId,
    ) -> Result<NodeConfig, DomainError> {
        let access = self.access(req, node).await?;
        check_configure(&context(req, &access, None))?;
        Ok(access.node.config)
    }

    /// Applies a submitted configuration form (§8.2.4): trims items above a lowered
    /// `max_items` and tells subscribers when `notify_config` is on.
    pub async fn configure_node(
        &self,
        req: &Requester,
        node: &NodeId,
        form: &DataForm,
    ) -> Result<NodeConfig, DomainError> {
        let access = self.access(req, node).await?;
        check_configure(&context(req, &access, None))?;
        let mut config = access.node.config.clone();
        let change = config.apply_form(form, &self.policy.limits)?;
        if change.is_changed("pubsub#access_model") {
            self.check_roster_model(req, &config)?;
        }
        check_type_change(access.node.config.node_type, config.node_type)?;
        let asked = LinkRequest::from_form(form, NODE_CONFIG_FORM_TYPE)?;
        let links = self.plan_links(req, &config, &asked).await?;
        if config.node_type == NodeType::Leaf
            && !self.links_of(access.node.pk).await?.children.is_empty()
        {
            return Err(DomainError::InvalidLink(
                "a leaf node cannot have children".into(),
            ));
        }
        if !change.ignored.is_empty() {
            tracing::debug!(node = %node, ignored = ?change.ignored, "unknown configuration fields ignored");
        }
        let jobs = if change.is_empty() {
            vec![]
        } else {
            notify::configured(&access.node, &config)
        };
        // A leaf that becomes a collection loses its items (XEP-0248 §6.2.4).
        let keep = if config.persist_items && config.node_type == NodeType::Leaf {
            config.max_items.effective(&self.policy.limits)
        } else {
            0
        };
        // The configuration and the links commit together, or neither does.
        self.store
            .configure_node(access.node.pk, &config, keep, &links, jobs)
            .await
            .map_err(internal)?
            .map_err(gone)?;
        Ok(config)
    }

    /// The configuration a new node gets (§8.3).
    pub fn default_node_config(&self) -> &NodeConfig {
        &self.policy.default_config
    }

    /// Deletes a node (§8.4); subscribers are told, with the redirect URI if given.
    pub async fn delete_node(
        &self,
        req: &Requester,
        node: &NodeId,
        redirect: Option<&str>,
    ) -> Result<(), DomainError> {
        let access = self.access(req, node).await?;
        check_delete(&context(req, &access, None))?;
        let job = notify::deleted(&access.node, redirect);
        self.store
            .delete_node(access.node.pk, job)
            .await
            .map_err(internal)?;
        tracing::info!(%node, by = %req.bare, "node deleted");
        Ok(())
    }

    /// Deletes every item of a node (§8.5).
    pub async fn purge_node(&self, req: &Requester, node: &NodeId) -> Result<(), DomainError> {
        let access = self.access(req, node).await?;
        check_purge(&context(req, &access, None))?;
        if !access.node.config.persist_items {
            return Err(DomainError::UnsupportedFeature("persistent-items"));
        }
        let jobs = notify::purged(&access.node);
        self.store
            .purge(access.node.pk, jobs)
            .await
            .map_err(internal)?;
        Ok(())
    }

    /// What disco#info shows about a node; whitelist nodes are invisible to those the
    /// owner has not affiliated (§5.3 leaves it to the service; hiding leaks nothing).
    pub async fn node_info(&self, req: &Requester, node: &NodeId) -> Result<NodeInfo, DomainError> {
        let access = self.access(req, node).await?;
        check_node_metadata_visibility(&context(req, &access, None))?;
        let pk = access.node.pk;
        let affiliations = self.store.node_affiliations(pk).await.map_err(internal)?;
        let with = |wanted: Affiliation| -> Vec<BareJid> {
            affiliations
                .iter()
                .filter(|(_, a)| *a == wanted)
                .map(|(j, _)| j.clone())
                .collect()
        };
        Ok(NodeInfo {
            owners: with(Affiliation::Owner),
            publishers: with(Affiliation::Publisher),
            subscribers: self.store.count_subscribers(pk).await.map_err(internal)?,
            items: self.store.item_count(pk).await.map_err(internal)?,
            node: access.node,
        })
    }
}

/// Whether a store refusal means the node vanished meanwhile.
pub(crate) fn gone(r: Refusal) -> DomainError {
    match r {
        Refusal::NodeExists => DomainError::NodeExists,
        Refusal::LastOwner => DomainError::LastOwner,
        Refusal::NodeGone => DomainError::NodeNotFound,
        Refusal::Links(r) => refused(r),
    }
}
