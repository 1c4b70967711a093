//! Who may do what: the node access and publish models and THE permission table.
//!
//! Every permission decision of the service is one of the `check_*` functions below,
//! fed an [`AccessContext`] the caller assembled (affiliation after the service-admin
//! override, subscription state, presence knowledge, the node's models). They are pure:
//! anything that needs I/O (rosters, the store) is resolved by the caller beforehand.
//!
//! The rules follow XEP-0060 §4.1 (affiliation privileges), §4.5 (access models), and the
//! error cases of each use case. Where the XEP leaves a choice, the doc comment of the
//! function says which reading is implemented.

use std::fmt;

use serde::{Deserialize, Serialize};
use xmpp_parsers::jid::{BareJid, Jid};

use super::affiliation::Affiliation;
use super::error::{DomainError, NotAuthorizedReason};
use super::subscription::SubscriptionState;

/// Who may subscribe to a node and retrieve its items (`pubsub#access_model`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessModel {
    /// Anyone may subscribe and retrieve items.
    Open,
    /// Anyone with a presence subscription (`from`/`both`) to an owner.
    Presence,
    /// Anyone in an allowed roster group (`pubsub#roster_groups_allowed`) of an owner.
    Roster,
    /// Subscriptions need owner approval; only subscribers retrieve items.
    Authorize,
    /// Only entities the owner affiliated (members and above).
    Whitelist,
}

impl AccessModel {
    /// Every access model, in XEP-0060's order of openness.
    pub const ALL: [AccessModel; 5] = [
        AccessModel::Open,
        AccessModel::Presence,
        AccessModel::Roster,
        AccessModel::Authorize,
        AccessModel::Whitelist,
    ];

    /// The form value, e.g. `whitelist`.
    pub fn as_str(self) -> &'static str {
        match self {
            AccessModel::Open => "open",
            AccessModel::Presence => "presence",
            AccessModel::Roster => "roster",
            AccessModel::Authorize => "authorize",
            AccessModel::Whitelist => "whitelist",
        }
    }

    /// Parses a form value.
    pub fn parse(value: &str) -> Result<Self, DomainError> {
        AccessModel::ALL
            .into_iter()
            .find(|m| m.as_str() == value)
            .ok_or_else(|| DomainError::NotAcceptable(format!("unknown access model '{value}'")))
    }

    /// Whether the model is decided by the owners' rosters (`presence`, `roster`), which
    /// the service reads through the server's XEP-0356 roster privilege.
    pub fn needs_rosters(self) -> bool {
        matches!(self, AccessModel::Presence | AccessModel::Roster)
    }
}

impl fmt::Display for AccessModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who may publish to a node (`pubsub#publish_model`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PublishModel {
    /// Owners, publishers and publish-only entities.
    Publishers,
    /// Those, plus anyone with an active subscription.
    Subscribers,
    /// Anyone who is not an outcast.
    Open,
}

impl PublishModel {
    /// Every publish model.
    pub const ALL: [PublishModel; 3] = [
        PublishModel::Publishers,
        PublishModel::Subscribers,
        PublishModel::Open,
    ];

    /// The form value.
    pub fn as_str(self) -> &'static str {
        match self {
            PublishModel::Publishers => "publishers",
            PublishModel::Subscribers => "subscribers",
            PublishModel::Open => "open",
        }
    }

    /// Parses a form value.
    pub fn parse(value: &str) -> Result<Self, DomainError> {
        PublishModel::ALL
            .into_iter()
            .find(|m| m.as_str() == value)
            .ok_or_else(|| DomainError::NotAcceptable(format!("unknown publish model '{value}'")))
    }
}

impl fmt::Display for PublishModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the permission rules know about a requester and a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccessContext {
    /// The requester's affiliation after the service-admin override
    /// ([`Affiliation::effective`]).
    pub affiliation: Affiliation,
    /// The state of the requester's subscription to the node (`None` if it has none).
    pub subscription: SubscriptionState,
    /// Whether the requester is known to have a presence subscription (`from`/`both`) to
    /// an owner of the node; `None` when the service cannot tell (no roster privilege).
    /// Unknown fails closed: only what the owner granted, or a subscription granted
    /// before, passes.
    pub presence_subscribed: Option<bool>,
    /// Whether the requester is known to be in one of the node's allowed roster groups
    /// of an owner's roster; `None` when the service cannot tell, read as above.
    pub in_roster_group: Option<bool>,
    /// The node's `pubsub#access_model`.
    pub access_model: AccessModel,
    /// The node's `pubsub#publish_model`.
    pub publish_model: PublishModel,
}

/// The outcome of an allowed subscription request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscribeDecision {
    /// The subscription takes effect now (or the existing one is reported unchanged).
    Subscribed,
    /// The subscription waits for an owner's approval (`authorize` access model).
    Pending,
}

/// Whose item a retract request targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemAuthor {
    /// The requester published the item (same bare JID).
    Requester,
    /// Someone else did, or the publisher is unknown.
    Other,
}

/// Affiliations the owner explicitly granted access to: the whitelist of §4.5 and the
/// "Yes" rows of the Subscribe and Retrieve Items columns of §4.1.
fn is_granted(affiliation: Affiliation) -> bool {
    matches!(
        affiliation,
        Affiliation::Owner | Affiliation::Publisher | Affiliation::Member
    )
}

fn not_authorized(reason: NotAuthorizedReason) -> DomainError {
    DomainError::NotAuthorized { reason }
}

/// The `presence` and `roster` models: what the owners' rosters say decides, for a new
/// request and for an existing subscription alike (a contact removed from the roster
/// loses the node). When the rosters cannot be read, only a subscription granted before
/// passes: the service fails closed for newcomers and does not drop what it cannot
/// judge. `Ok(())` is admitted.
fn roster_rule(ctx: &AccessContext) -> Result<(), DomainError> {
    let subscribed = ctx.subscription.is_active();
    let (known, refused, unknown) = match ctx.access_model {
        AccessModel::Presence => (
            ctx.presence_subscribed,
            NotAuthorizedReason::PresenceSubscriptionRequired,
            NotAuthorizedReason::PresenceUnknown,
        ),
        _ => (
            ctx.in_roster_group,
            NotAuthorizedReason::NotInRosterGroup,
            NotAuthorizedReason::RosterUnknown,
        ),
    };
    match known {
        Some(true) => Ok(()),
        Some(false) => Err(not_authorized(refused)),
        None if subscribed => Ok(()),
        None => Err(not_authorized(unknown)),
    }
}

/// May the requester subscribe (XEP-0060 §6.1)?
///
/// Outcasts and publish-only entities are `forbidden` (§4.1, §6.1.3.8). A pending request
/// is `pending-subscription` (§6.1.3.7). Owners, publishers and members are never held
/// back by the access model: §12.11 makes owners and publishers always allowed, and §4.1
/// grants members subscription, so on an `authorize` node they are auto-approved as
/// §6.1.4 permits. Everyone else is judged by the access model: open → subscribed;
/// presence → `presence-subscription-required` unless an owner's roster shows a
/// presence subscription (`from`/`both`); roster → `not-in-roster-group` unless an
/// owner's roster has the requester in an allowed group (both: see [`roster_rule`] for
/// rosters that cannot be read); authorize → `Pending`; whitelist → `closed-node`. An existing active subscription that still passes these rules is
/// reported as `Subscribed`, so the caller returns the current state (§6.1.6, no
/// multi-subscribe); one that no longer passes (say, the node became whitelist-only) is
/// refused like a new request.
pub fn check_subscribe(ctx: &AccessContext) -> Result<SubscribeDecision, DomainError> {
    match ctx.affiliation {
        Affiliation::Outcast | Affiliation::PublishOnly => return Err(DomainError::Forbidden),
        _ => {}
    }
    if ctx.subscription == SubscriptionState::Pending {
        return Err(DomainError::PendingSubscription);
    }
    if is_granted(ctx.affiliation) {
        return Ok(SubscribeDecision::Subscribed);
    }
    let subscribed = ctx.subscription.is_active();
    match ctx.access_model {
        AccessModel::Open => Ok(SubscribeDecision::Subscribed),
        AccessModel::Presence | AccessModel::Roster => {
            roster_rule(ctx).map(|()| SubscribeDecision::Subscribed)
        }
        AccessModel::Authorize if subscribed => Ok(SubscribeDecision::Subscribed),
        AccessModel::Authorize => Ok(SubscribeDecision::Pending),
        AccessModel::Whitelist => Err(DomainError::ClosedNode),
    }
}

/// May the requester retrieve items (XEP-0060 §6.5.1, errors §6.5.9)?
///
/// Outcasts and publish-only entities are `forbidden` (§4.1). Owners, publishers and
/// members may always retrieve (§6.5.1: "MUST always allow the node owner ... SHOULD
/// always allow a publisher"; §4.1 grants members). For the rest: open → allowed;
/// presence/roster → as for subscribing ([`roster_rule`]), else not-authorized;
/// authorize → only with an active subscription, else `not-subscribed`; whitelist →
/// `closed-node`.
pub fn check_retrieve_items(ctx: &AccessContext) -> Result<(), DomainError> {
    match ctx.affiliation {
        Affiliation::Outcast | Affiliation::PublishOnly => return Err(DomainError::Forbidden),
        a if is_granted(a) => return Ok(()),
        _ => {}
    }
    let subscribed = ctx.subscription.is_active();
    match ctx.access_model {
        AccessModel::Open => Ok(()),
        AccessModel::Presence | AccessModel::Roster => roster_rule(ctx),
        AccessModel::Authorize if subscribed => Ok(()),
        AccessModel::Authorize => Err(not_authorized(NotAuthorizedReason::NotSubscribed)),
        AccessModel::Whitelist => Err(DomainError::ClosedNode),
    }
}

/// May an existing subscription stay (the revocation sweep, re-judging a subscription
/// against the owners' rosters as they are now)?
///
/// Outcasts and publish-only entities are `forbidden` (they hold no subscription).
/// Owners, publishers and members always keep theirs (§4.1). On `presence` and `roster`
/// nodes everyone else keeps it only while the rosters still admit them, with
/// [`roster_rule`]'s rule for rosters that cannot be read: an active subscription is
/// kept, never dropped on what the service cannot judge. Other access models are not
/// the sweep's business: their subscriptions stay.
pub fn check_keep_subscription(ctx: &AccessContext) -> Result<(), DomainError> {
    match ctx.affiliation {
        Affiliation::Outcast | Affiliation::PublishOnly => return Err(DomainError::Forbidden),
        a if is_granted(a) => return Ok(()),
        _ => {}
    }
    match ctx.access_model {
        AccessModel::Presence | AccessModel::Roster => roster_rule(ctx),
        AccessModel::Open | AccessModel::Authorize | AccessModel::Whitelist => Ok(()),
    }
}

/// May the requester publish (XEP-0060 §7.1, error §7.1.3.1 `forbidden`)?
///
/// Owners, publishers and publish-only entities always may; outcasts never. Others
/// depend on the publish model: `publishers` → no; `subscribers` → with an active
/// subscription; `open` → yes.
pub fn check_publish(ctx: &AccessContext) -> Result<(), DomainError> {
    let allowed = match ctx.affiliation {
        Affiliation::Owner | Affiliation::Publisher | Affiliation::PublishOnly => true,
        Affiliation::Outcast => false,
        Affiliation::Member | Affiliation::None => match ctx.publish_model {
            PublishModel::Publishers => false,
            PublishModel::Subscribers => ctx.subscription.is_active(),
            PublishModel::Open => true,
        },
    };
    if allowed {
        Ok(())
    } else {
        Err(DomainError::Forbidden)
    }
}

/// May the requester retract (delete) an item (XEP-0060 §7.2, error §7.2.3.1)?
///
/// Owners and publishers may retract any item (the §4.1 footnote's "MAY allow any
/// publisher to delete any item"). Publish-only entities may retract only their own
/// items, as the footnote recommends. Anyone else who may currently publish (open or
/// subscribers publish model) may retract the items they published themselves, so a
/// mistaken publication can be undone; everything else is `forbidden`.
pub fn check_retract(ctx: &AccessContext, author: ItemAuthor) -> Result<(), DomainError> {
    match ctx.affiliation {
        Affiliation::Owner | Affiliation::Publisher => Ok(()),
        Affiliation::Outcast => Err(DomainError::Forbidden),
        Affiliation::PublishOnly | Affiliation::Member | Affiliation::None => {
            if author == ItemAuthor::Requester && check_publish(ctx).is_ok() {
                Ok(())
            } else {
                Err(DomainError::Forbidden)
            }
        }
    }
}

/// Only owners may act; everyone else is `forbidden`.
fn owner_only(ctx: &AccessContext) -> Result<(), DomainError> {
    if ctx.affiliation == Affiliation::Owner {
        Ok(())
    } else {
        Err(DomainError::Forbidden)
    }
}

/// May the requester purge all items (XEP-0060 §8.5)?
///
/// Owners only. The §4.1 table marks publishers "Yes *", but purge is an Owner Use Case
/// and §14.2 says a service MUST NOT let non-owners complete any of those; the MUST wins.
pub fn check_purge(ctx: &AccessContext) -> Result<(), DomainError> {
    owner_only(ctx)
}

/// May the requester delete the node (XEP-0060 §8.4)? Owners only.
pub fn check_delete(ctx: &AccessContext) -> Result<(), DomainError> {
    owner_only(ctx)
}

/// May the requester read or change the node configuration (§8.2, §8.3)? Owners only.
pub fn check_configure(ctx: &AccessContext) -> Result<(), DomainError> {
    owner_only(ctx)
}

/// May the requester list or modify the node's subscriptions, including approving
/// pending ones (§8.6, §8.7, §8.8)? Owners only.
pub fn check_manage_subscriptions(ctx: &AccessContext) -> Result<(), DomainError> {
    owner_only(ctx)
}

/// May the requester list or modify the node's affiliations (§8.9)? Owners only.
pub fn check_manage_affiliations(ctx: &AccessContext) -> Result<(), DomainError> {
    owner_only(ctx)
}

/// May the requester learn that the node exists (disco#info/#items, metadata)?
///
/// Whitelist nodes are hidden from everyone the owner has not affiliated: the answer is
/// `NodeNotFound`, exactly what a missing node yields, so existence does not leak. All
/// other nodes are visible to all.
pub fn check_node_metadata_visibility(ctx: &AccessContext) -> Result<(), DomainError> {
    let visible = ctx.access_model != AccessModel::Whitelist
        || matches!(
            ctx.affiliation,
            Affiliation::Owner
                | Affiliation::Publisher
                | Affiliation::PublishOnly
                | Affiliation::Member
        );
    if visible {
        Ok(())
    } else {
        Err(DomainError::NodeNotFound)
    }
}

/// Whether `requester` may act on behalf of `target` (subscribe it, unsubscribe it, set
/// its options): same bare JID, or a service administrator (XEP-0060 §6.1.3.1, §6.2.3.3).
///
/// The caller picks the error: `InvalidJid` for subscribe, `Forbidden` for unsubscribe
/// and options, as the XEP does.
pub fn acts_for(requester: &BareJid, target: &Jid, is_service_admin: bool) -> bool {
    is_service_admin || target.to_bare() == *requester
}

#[cfg(test)]
mod tests;
