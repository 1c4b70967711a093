//! Owner use cases on a node's entities: managing subscriptions (§8.7, §8.8),
//! approving pending ones (§8.6), and managing affiliations (§8.9).

use xmpp_parsers::jid::Jid;

use super::authorization::Decision;
use super::{context, internal, nodes::gone, notify, Pubsub, Requester};
use crate::domain::{
    check_manage_affiliations, check_manage_subscriptions, DomainError, NodeId, SubId,
    SubscriptionState,
};
use crate::store::{AffiliationChange, SubscriptionRecord};
use xmpp_parsers::jid::BareJid;

use crate::domain::Affiliation;

/// Most subscriptions listed in one owner request. XEP-0060 has no paging here, and a
/// node with a million subscribers must not produce a 100 MB stanza; the admin CLI
/// lists them all.
pub const MAX_LISTED_SUBSCRIPTIONS: u32 = 10_000;

/// One change an owner asks for in `<subscriptions/>` (§8.8.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionChange {
    pub jid: Jid,
    pub state: SubscriptionState,
    pub subid: Option<SubId>,
}

impl Pubsub {
    /// The node's subscriptions (§8.8.1).
    pub async fn node_subscriptions(
        &self,
        req: &Requester,
        node: &NodeId,
    ) -> Result<Vec<SubscriptionRecord>, DomainError> {
        let access = self.access(req, node).await?;
        check_manage_subscriptions(&context(req, &access, None))?;
        self.store
            .node_subscriptions(access.node.pk, MAX_LISTED_SUBSCRIPTIONS)
            .await
            .map_err(internal)
    }

    /// Changes subscriptions (§8.8.2): `none` removes one, `subscribed` creates or
    /// approves, `pending`/`unconfigured` set that state. Each affected subscriber is
    /// told its new state.
    pub async fn modify_subscriptions(
        &self,
        req: &Requester,
        node: &NodeId,
        changes: &[SubscriptionChange],
    ) -> Result<(), DomainError> {
        let access = self.access(req, node).await?;
        check_manage_subscriptions(&context(req, &access, None))?;
        let pk = access.node.pk;
        for change in changes {
            let existing = self
                .store
                .jid_subscriptions(&change.jid.to_bare(), Some(pk))
                .await
                .map_err(internal)?
                .into_iter()
                .find(|s| {
                    s.jid == change.jid && change.subid.as_ref().is_none_or(|id| s.subid == *id)
                });
            match (change.state, existing) {
                (SubscriptionState::None, Some(sub)) => {
                    let job = notify::subscription_changed(
                        &access.node,
                        &sub.jid,
                        Some(&sub.subid),
                        SubscriptionState::None,
                    );
                    self.store
                        .unsubscribe(pk, &sub.jid, Some(&sub.subid), vec![job])
                        .await
                        .map_err(internal)?;
                }
                (SubscriptionState::None, None) => {}
                (state, Some(sub)) => {
                    if sub.state != state {
                        let mut jobs = vec![notify::subscription_changed(
                            &access.node,
                            &sub.jid,
                            Some(&sub.subid),
                            state,
                        )];
                        if sub.state == SubscriptionState::Pending && state.is_active() {
                            jobs.extend(self.last_item_for(&access.node, &sub.jid).await?);
                        }
                        self.store
                            .update_subscription(sub.pk, state, &sub.options, jobs)
                            .await
                            .map_err(internal)?;
                    }
                }
                (state, None) => {
                    let subid = SubId::generate();
                    let job = notify::subscription_changed(
                        &access.node,
                        &change.jid,
                        Some(&subid),
                        state,
                    );
                    self.store
                        .subscribe(
                            pk,
                            &change.jid,
                            &subid,
                            state,
                            &Default::default(),
                            vec![job],
                        )
                        .await
                        .map_err(internal)?;
                }
            }
        }
        Ok(())
    }

    /// An owner's answer to an approval form (§8.6): approve or deny the pending
    /// subscription; the subscriber is told either way.
    pub async fn decide_subscription(
        &self,
        req: &Requester,
        decision: &Decision,
    ) -> Result<(), DomainError> {
        let state = if decision.allow {
            SubscriptionState::Subscribed
        } else {
            SubscriptionState::None
        };
        let access = self.access(req, &decision.node).await?;
        check_manage_subscriptions(&context(req, &access, None))?;
        let pending = self
            .store
            .jid_subscriptions(&decision.subscriber.to_bare(), Some(access.node.pk))
            .await
            .map_err(internal)?
            .into_iter()
            .find(|s| {
                s.jid == decision.subscriber
                    && s.state == SubscriptionState::Pending
                    && decision.subid.as_ref().is_none_or(|id| s.subid == *id)
            });
        let Some(sub) = pending else {
            // Already decided (another owner was faster) or withdrawn.
            return Err(DomainError::NotSubscribed);
        };
        self.modify_subscriptions(
            req,
            &decision.node,
            &[SubscriptionChange {
                jid: sub.jid,
                state,
                subid: Some(sub.subid),
            }],
        )
        .await
    }

    async fn last_item_for(
        &self,
        node: &crate::store::NodeRecord,
        to: &Jid,
    ) -> Result<Vec<crate::store::jobs::NewJob>, DomainError> {
        if node.config.send_last_published_item == crate::domain::SendLastPublished::Never {
            return Ok(vec![]);
        }
        Ok(self
            .store
            .last_item(node.pk)
            .await
            .map_err(internal)?
            .and_then(|item| notify::last_published(node, &item, to, &self.jid))
            .into_iter()
            .collect())
    }

    /// The node's affiliations (§8.9.1).
    pub async fn node_affiliations(
        &self,
        req: &Requester,
        node: &NodeId,
    ) -> Result<Vec<(BareJid, Affiliation)>, DomainError> {
        let access = self.access(req, node).await?;
        check_manage_affiliations(&context(req, &access, None))?;
        self.store
            .node_affiliations(access.node.pk)
            .await
            .map_err(internal)
    }

    /// Changes affiliations (§8.9.2) atomically; a change that would leave the node
    /// without an owner is refused and nothing changes.
    pub async fn modify_affiliations(
        &self,
        req: &Requester,
        node: &NodeId,
        changes: &[AffiliationChange],
    ) -> Result<(), DomainError> {
        let access = self.access(req, node).await?;
        check_manage_affiliations(&context(req, &access, None))?;
        self.store
            .set_affiliations(access.node.pk, changes)
            .await
            .map_err(internal)?
            .map_err(gone)
    }
}
