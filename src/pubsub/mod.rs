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
    AccessContext, AccessModel, Affiliation, DomainError, NodeId, NotAuthorizedReason,
    SubscriptionState,
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
    ) -> Result<RosterContext, DomainError> {
        let mut ctx = context(req, access, subscriber);
        let model = ctx.access_model;
        if !model.needs_rosters() || ctx.affiliation != Affiliation::None {
            return Ok(RosterContext {
                ctx,
                unreadable: false,
            });
        }
        let who = subscriber.map_or_else(|| req.bare.clone(), Jid::to_bare);
        // A requester of the service's own domain (the HTTP gateway's anonymous one) is
        // no user of the server and so in no roster: no roster is read for it.
        let admission = if who.domain() == self.jid.domain() {
            rosters::Admission::No
        } else {
            let owners = self.owners(access.node.pk).await?;
            self.rosters
                .admit(
                    &owners,
                    model,
                    &who,
                    &access.node.config.roster_groups_allowed,
                    self.policy.limits.max_roster_owners as usize,
                    rosters::REQUEST_DEADLINE,
                )
                .await
        };
        let known = admission.known();
        match model {
            AccessModel::Presence => ctx.presence_subscribed = known,
            _ => ctx.in_roster_group = known,
        }
        Ok(RosterContext {
            ctx,
            unreadable: admission == rosters::Admission::Unreadable,
        })
    }
}

/// A permission context with what the owners' rosters said, and whether a roster read
/// failed, so that a refusal for want of a roster is told as "try again later".
#[derive(Debug, Clone, Copy)]
pub(crate) struct RosterContext {
    pub ctx: AccessContext,
    /// A roster read failed (rather than: no privilege).
    pub unreadable: bool,
}

impl RosterContext {
    /// Asks `rule` of the permission table; a refusal because the rosters are unknown
    /// becomes [`DomainError::RosterUnreadable`] when that is because a read failed.
    pub fn check<T>(
        &self,
        rule: impl Fn(&AccessContext) -> Result<T, DomainError>,
    ) -> Result<T, DomainError> {
        rule(&self.ctx).map_err(|e| match e {
            DomainError::NotAuthorized {
                reason: NotAuthorizedReason::PresenceUnknown | NotAuthorizedReason::RosterUnknown,
            } if self.unreadable => DomainError::RosterUnreadable,
            other => other,
        })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{check_retrieve_items, check_subscribe, PublishModel};

    fn unknown(model: AccessModel, unreadable: bool) -> RosterContext {
        RosterContext {
            ctx: AccessContext {
                affiliation: Affiliation::None,
                subscription: SubscriptionState::None,
                presence_subscribed: None,
                in_roster_group: None,
                access_model: model,
                publish_model: PublishModel::Publishers,
            },
            unreadable,
        }
    }

    #[test]
    fn a_failed_roster_read_is_try_again_later_and_no_privilege_is_not_authorized() {
        for model in [AccessModel::Presence, AccessModel::Roster] {
            assert_eq!(
                unknown(model, true).check(check_subscribe),
                Err(DomainError::RosterUnreadable)
            );
            assert_eq!(
                unknown(model, true).check(check_retrieve_items),
                Err(DomainError::RosterUnreadable)
            );
            assert!(matches!(
                unknown(model, false).check(check_subscribe),
                Err(DomainError::NotAuthorized { .. })
            ));
        }
        let mut known_no = unknown(AccessModel::Presence, true);
        known_no.ctx.presence_subscribed = Some(false);
        assert!(matches!(
            known_no.check(check_subscribe),
            Err(DomainError::NotAuthorized {
                reason: NotAuthorizedReason::PresenceSubscriptionRequired
            })
        ));
    }

    mod with_a_store {
        use std::sync::atomic::{AtomicUsize, Ordering};

        use async_trait::async_trait;

        use super::*;
        use crate::domain::roster::OwnerRoster;
        use crate::domain::NodeConfig;
        use crate::pubsub::rosters::{RosterReadError, RosterSource, Rosters};
        use crate::store::sqlite::SqliteStore;
        use crate::store::NodeStore as _;

        /// Counts reads; every roster is empty.
        struct Counting(AtomicUsize);

        #[async_trait]
        impl RosterSource for Counting {
            fn readable(&self, _domain: &str) -> bool {
                true
            }
            async fn read(&self, _owner: &BareJid) -> Result<OwnerRoster, RosterReadError> {
                self.0.fetch_add(1, Ordering::SeqCst);
                Ok(OwnerRoster::default())
            }
        }

        #[tokio::test]
        async fn the_anonymous_requester_causes_no_roster_read() {
            let file = std::env::temp_dir().join(format!(
                "pubsubd-roster-context-{}.sqlite3",
                std::process::id()
            ));
            let store = SqliteStore::open(&file, 1).await.expect("a store");
            store.migrate().await.expect("migrations");
            let node = NodeId::parse("contacts").expect("node id");
            let config = NodeConfig {
                access_model: AccessModel::Presence,
                ..NodeConfig::default()
            };
            store
                .create_node(
                    &node,
                    &config,
                    &BareJid::new("owner@x").expect("jid"),
                    &Default::default(),
                )
                .await
                .expect("store")
                .expect("created");
            let source = Arc::new(Counting(AtomicUsize::new(0)));
            let pubsub = Pubsub {
                jid: BareJid::new("pubsub.x").expect("jid"),
                store: Arc::new(store),
                policy: Policy::default(),
                rosters: Arc::new(Rosters::new(source.clone(), 8, rosters::FRESH_FOR)),
            };
            let anonymous = pubsub.requester("anonymous@pubsub.x".parse().expect("jid"));
            let access = pubsub.access(&anonymous, &node).await.expect("node");
            let ctx = pubsub
                .roster_context(&anonymous, &access, None)
                .await
                .expect("context");
            assert_eq!(ctx.ctx.presence_subscribed, Some(false));
            assert_eq!(source.0.load(Ordering::SeqCst), 0, "no roster read");
            let user = pubsub.requester("someone@x".parse().expect("jid"));
            let access = pubsub.access(&user, &node).await.expect("node");
            pubsub
                .roster_context(&user, &access, None)
                .await
                .expect("context");
            assert_eq!(source.0.load(Ordering::SeqCst), 1, "a user's request reads");
            let _ = std::fs::remove_file(&file);
        }
    }
}
