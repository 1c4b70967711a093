//! The pubsub service: XEP-0060 use cases as commands, shared by every front end (the
//! XMPP protocol layer, the HTTP gateway, the command line).
//!
//! A command takes a [`Requester`] and typed arguments, asks the domain rules whether
//! the requester may, applies the change through the store (the change and its
//! notification jobs in one transaction) and returns typed results or a
//! [`DomainError`]. It never sees XML stanzas; the notification payloads it queues are
//! rendered by [`crate::events`].
//!
//! - [`nodes`]: create, configure, default configuration, delete, purge, metadata.
//! - [`items`]: publish, retract, retrieve.
//! - [`item_stream`]: items published after a cursor (HTTP server-sent events).
//! - [`subscriptions`]: subscribe, unsubscribe, options, own subscriptions/affiliations.
//! - [`owner`]: managing a node's subscriptions (approvals) and affiliations.
//! - [`notify`]: which jobs a change queues, and for whom.
//! - [`policy`]: service-wide settings from the `[service]` table.
//! - [`rosters`]: the owners' rosters the `presence` and `roster` access models read.
//! - [`revocation`]: removing subscriptions those rosters no longer grant.

pub mod archive;
pub mod authorization;
pub mod collections;
pub mod item_stream;
pub mod items;
pub mod nodes;
pub mod notify;
pub mod owner;
pub mod policy;
pub mod revocation;
pub mod rosters;
pub mod subscriptions;

use std::sync::Arc;

use xmpp_parsers::jid::{BareJid, Jid};

use crate::domain::{
    AccessContext, AccessModel, Affiliation, DomainError, NodeId, SubscriptionState,
};
use crate::store::{NodeAccess, Store, StoreError};
pub use policy::Policy;

/// Who is asking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requester {
    /// The full JID the request came from (or a bare JID for HTTP and CLI requests).
    pub jid: Jid,
    pub bare: BareJid,
    /// A service administrator acts as owner of every node.
    pub admin: bool,
}

/// The pubsub service.
pub struct Pubsub {
    /// The service's own JID, e.g. `pubsub.example.org`.
    pub jid: BareJid,
    pub store: Arc<dyn Store>,
    pub policy: Policy,
    /// The owners' rosters, for the `presence` and `roster` access models.
    pub rosters: Arc<rosters::Rosters>,
}

impl Pubsub {
    /// The requester as the rules see it.
    pub fn requester(&self, jid: Jid) -> Requester {
        let bare = jid.to_bare();
        let admin = self.policy.admins.contains(&bare);
        Requester { jid, bare, admin }
    }

    /// The node and the requester's standing with it, or `item-not-found`.
    pub(crate) async fn access(
        &self,
        req: &Requester,
        node: &NodeId,
    ) -> Result<NodeAccess, DomainError> {
        self.store
            .node_access(node, &req.bare)
            .await
            .map_err(internal)?
            .ok_or(DomainError::NodeNotFound)
    }

    /// [`context`] with what the owners' rosters say of the requester, for the rules that
    /// read them (subscribe, retrieve). Rosters are read only when they can change the
    /// answer: a `presence` or `roster` node and a requester the owner did not affiliate.
    pub(crate) async fn roster_context(
        &self,
        req: &Requester,
        access: &NodeAccess,
        subscriber: Option<&Jid>,
    ) -> Result<AccessContext, DomainError> {
        let mut ctx = context(req, access, subscriber);
        let model = ctx.access_model;
        if !model.needs_rosters() || ctx.affiliation != Affiliation::None {
            return Ok(ctx);
        }
        let owners = self.owners(access.node.pk).await?;
        let who = subscriber.map_or_else(|| req.bare.clone(), Jid::to_bare);
        let mut rosters = Vec::with_capacity(owners.len());
        for owner in &owners {
            rosters.push(self.rosters.of(owner).await);
        }
        let known = crate::domain::roster::admitted(
            rosters.iter().map(Option::as_deref),
            model,
            &who,
            &access.node.config.roster_groups_allowed,
        );
        match model {
            AccessModel::Presence => ctx.presence_subscribed = known,
            _ => ctx.in_roster_group = known,
        }
        Ok(ctx)
    }
}

/// The permission context for `req` on a node: the subscription looked at is the one
/// of exactly `subscriber` when given (subscribe, options), else the requester's most
/// active one.
pub(crate) fn context(
    req: &Requester,
    access: &NodeAccess,
    subscriber: Option<&Jid>,
) -> AccessContext {
    let states = access
        .subscriptions
        .iter()
        .filter(|s| subscriber.is_none_or(|j| s.jid == *j))
        .map(|s| s.state);
    let subscription = states
        .max_by_key(|s| match s {
            SubscriptionState::Subscribed => 3,
            SubscriptionState::Unconfigured => 2,
            SubscriptionState::Pending => 1,
            SubscriptionState::None => 0,
        })
        .unwrap_or(SubscriptionState::None);
    AccessContext {
        affiliation: access.affiliation.effective(req.admin),
        subscription,
        // What the owners' rosters say is filled in by `Pubsub::roster_context` where a
        // rule reads it; unknown here.
        presence_subscribed: None,
        in_roster_group: None,
        access_model: access.node.config.access_model,
        publish_model: access.node.config.publish_model,
    }
}

/// A store failure as the requester sees it: an internal error of the store error's
/// kind, logged with details.
pub(crate) fn internal(e: StoreError) -> DomainError {
    tracing::error!(error = %e, "store operation failed");
    DomainError::Internal {
        kind: e.kind(),
        details: e.to_string(),
    }
}
