//! Subscriber use cases: subscribe (§6.1), unsubscribe (§6.2), subscription options
//! (§6.3, §6.4), and an entity's own subscriptions and affiliations (§5.6, §5.7).

use xmpp_parsers::data_forms::DataForm;
use xmpp_parsers::jid::{BareJid, Jid};

use super::{authorization, internal, notify, Pubsub, Requester};
use crate::domain::{
    acts_for, check_subscribe, Affiliation, DomainError, NodeId, SendLastPublished, SubId,
    SubscribeDecision, SubscribeOptions, SubscriptionState,
};
use crate::store::jobs::NewJob;
use crate::store::{NodeAccess, NodeRecord, SubscriptionRecord};
use crate::xmpp::render::to_xml;

impl Pubsub {
    /// Subscribes `jid` (the requester's bare or full JID) to a node (§6.1), with
    /// options if given (§6.3.7). On an `authorize` node the subscription is pending
    /// and every owner is sent the approval form (§8.6).
    pub async fn subscribe(
        &self,
        req: &Requester,
        node: &NodeId,
        jid: &Jid,
        options: Option<&DataForm>,
    ) -> Result<SubscriptionRecord, DomainError> {
        if !acts_for(&req.bare, jid, req.admin) {
            return Err(DomainError::InvalidJid);
        }
        let access = self.access(req, node).await?;
        let decision = self
            .roster_context(req, &access, Some(jid))
            .await?
            .check(check_subscribe)?;
        if let Some(existing) = access.subscriptions.iter().find(|s| s.jid == *jid) {
            if existing.state.is_active() {
                return Ok(existing.clone());
            }
        }
        if !req.admin && self.policy.limits.max_subscriptions_per_jid.is_some() {
            let held = self
                .store
                .count_jid_subscriptions(&req.bare)
                .await
                .map_err(internal)?;
            self.policy
                .limits
                .check_subscription_quota(u32::try_from(held).unwrap_or(u32::MAX))?;
        }
        let options = match options {
            Some(form) => SubscribeOptions::from_form(form)?,
            None => SubscribeOptions::default(),
        };
        let state = match decision {
            SubscribeDecision::Subscribed => SubscriptionState::Subscribed,
            SubscribeDecision::Pending => SubscriptionState::Pending,
        };
        let subid = SubId::generate();
        let jobs = self
            .jobs_after_subscribe(&access, jid, &subid, state)
            .await?;
        let (record, created) = self
            .store
            .subscribe(access.node.pk, jid, &subid, state, &options, jobs)
            .await
            .map_err(internal)?;
        if created {
            tracing::info!(%node, %jid, state = %record.state, "subscribed");
        }
        Ok(record)
    }

    /// What a new subscription queues: the approval form to the owners (pending), or
    /// the last published item (§6.1.7), and owner notices with `notify_sub`.
    async fn jobs_after_subscribe(
        &self,
        access: &NodeAccess,
        jid: &Jid,
        subid: &SubId,
        state: SubscriptionState,
    ) -> Result<Vec<NewJob>, DomainError> {
        let node = &access.node;
        let mut jobs = Vec::new();
        let owners = self.owners(node.pk).await?;
        match state {
            SubscriptionState::Pending => {
                let form = authorization::request_form(&node.name, jid, subid);
                let xml = to_xml(&minidom::Element::from(form));
                jobs.extend(owners.iter().map(|o| notify::direct(node, o, xml.clone())));
            }
            _ => {
                if node.config.send_last_published_item != SendLastPublished::Never {
                    if let Some(item) = self.store.last_item(node.pk).await.map_err(internal)? {
                        jobs.extend(notify::last_published(node, &item, jid, &self.jid));
                    }
                }
            }
        }
        jobs.extend(notify::to_owners_on_subscription(
            node,
            &owners,
            jid,
            Some(subid),
            state,
        ));
        Ok(jobs)
    }

    pub(crate) async fn owners(&self, node_pk: i64) -> Result<Vec<BareJid>, DomainError> {
        Ok(self
            .store
            .node_affiliations(node_pk)
            .await
            .map_err(internal)?
            .into_iter()
            .filter(|(_, a)| *a == Affiliation::Owner)
            .map(|(j, _)| j)
            .collect())
    }

    /// Ends a subscription (§6.2).
    pub async fn unsubscribe(
        &self,
        req: &Requester,
        node: &NodeId,
        jid: &Jid,
        subid: Option<&SubId>,
    ) -> Result<(), DomainError> {
        if !acts_for(&req.bare, jid, req.admin) {
            return Err(DomainError::Forbidden);
        }
        let access = self.access(req, node).await?;
        let sub = own_subscription(&access, jid, subid)?;
        let owners = if access.node.config.notify_sub {
            self.owners(access.node.pk).await?
        } else {
            vec![]
        };
        let jobs = notify::to_owners_on_subscription(
            &access.node,
            &owners,
            jid,
            Some(&sub.subid),
            SubscriptionState::None,
        );
        self.store
            .unsubscribe(access.node.pk, jid, Some(&sub.subid), jobs)
            .await
            .map_err(internal)?;
        tracing::info!(%node, %jid, "unsubscribed");
        Ok(())
    }

    /// A subscription's options (§6.3.2).
    pub async fn subscription_options(
        &self,
        req: &Requester,
        node: &NodeId,
        jid: &Jid,
        subid: Option<&SubId>,
    ) -> Result<SubscriptionRecord, DomainError> {
        if !acts_for(&req.bare, jid, req.admin) {
            return Err(DomainError::Forbidden);
        }
        let access = self.access(req, node).await?;
        own_subscription(&access, jid, subid).cloned()
    }

    /// Changes a subscription's options (§6.3.5).
    pub async fn set_subscription_options(
        &self,
        req: &Requester,
        node: &NodeId,
        jid: &Jid,
        subid: Option<&SubId>,
        form: &DataForm,
    ) -> Result<SubscriptionRecord, DomainError> {
        let mut sub = self.subscription_options(req, node, jid, subid).await?;
        sub.options.apply_form(form)?;
        // Configuring an unconfigured subscription completes it (§6.3.5).
        if sub.state == SubscriptionState::Unconfigured {
            sub.state = SubscriptionState::Subscribed;
        }
        self.store
            .update_subscription(sub.pk, sub.state, &sub.options, vec![])
            .await
            .map_err(internal)?;
        Ok(sub)
    }

    /// The requester's subscriptions, service-wide or on one node (§5.6).
    pub async fn own_subscriptions(
        &self,
        req: &Requester,
        node: Option<&NodeId>,
    ) -> Result<Vec<SubscriptionRecord>, DomainError> {
        let pk = match node {
            Some(n) => Some(self.existing(n).await?.pk),
            None => None,
        };
        self.store
            .jid_subscriptions(&req.bare, pk)
            .await
            .map_err(internal)
    }

    /// The requester's affiliations, service-wide or with one node (§5.7).
    pub async fn own_affiliations(
        &self,
        req: &Requester,
        node: Option<&NodeId>,
    ) -> Result<Vec<(NodeId, Affiliation)>, DomainError> {
        let pk = match node {
            Some(n) => Some(self.existing(n).await?.pk),
            None => None,
        };
        self.store
            .jid_affiliations(&req.bare, pk)
            .await
            .map_err(internal)
    }

    async fn existing(&self, node: &NodeId) -> Result<NodeRecord, DomainError> {
        self.store
            .node(node)
            .await
            .map_err(internal)?
            .ok_or(DomainError::NodeNotFound)
    }
}

/// The subscription of exactly `jid`, checked against `subid` (§6.2.3, §6.3.4).
fn own_subscription<'a>(
    access: &'a NodeAccess,
    jid: &Jid,
    subid: Option<&SubId>,
) -> Result<&'a SubscriptionRecord, DomainError> {
    let mine: Vec<&SubscriptionRecord> = access
        .subscriptions
        .iter()
        .filter(|s| s.jid == *jid)
        .collect();
    match (mine.as_slice(), subid) {
        ([], _) => Err(DomainError::NotSubscribed),
        (subs, Some(id)) => subs
            .iter()
            .copied()
            .find(|s| s.subid == *id)
            .ok_or(DomainError::InvalidSubId),
        ([one], None) => Ok(one),
        (_, None) => Err(DomainError::SubIdRequired),
    }
}
