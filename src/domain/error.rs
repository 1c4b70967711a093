//! The domain layer's error type: every XEP-0060 failure the service can report.
//!
//! Each variant carries exactly what `protocol::errors::stanza_error` needs to build the
//! stanza error the XEP prescribes for it (defined condition, error type, and the
//! `pubsub#errors` child), and nothing about XML itself.

use thiserror::Error;

/// Why a requester is `not-authorized` for a subscribe or retrieve-items request
/// (XEP-0060 §6.1.3.2–6.1.3.3 and §6.5.9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NotAuthorizedReason {
    /// The node uses the `presence` access model and no owner's roster shows the
    /// requester subscribed to the owner's presence.
    PresenceSubscriptionRequired,
    /// The node uses the `presence` access model and the service cannot read the owners'
    /// rosters (no XEP-0356 roster privilege): it fails closed. Same condition as
    /// [`Self::PresenceSubscriptionRequired`]; the text says why.
    PresenceUnknown,
    /// The node uses the `roster` access model and the requester is not in an allowed
    /// roster group.
    NotInRosterGroup,
    /// The node uses the `roster` access model and the service cannot read the owners'
    /// rosters: it fails closed. Same condition as [`Self::NotInRosterGroup`].
    RosterUnknown,
    /// The node only returns items to subscribers (`authorize` model) and the requester is
    /// not subscribed (a pending subscription counts as not subscribed).
    NotSubscribed,
}

impl std::fmt::Display for NotAuthorizedReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NotAuthorizedReason::PresenceSubscriptionRequired => {
                "the node admits only contacts subscribed to an owner's presence"
            }
            NotAuthorizedReason::PresenceUnknown => {
                "the node admits only contacts subscribed to an owner's presence, and the \
                 service cannot read the owner's roster (the XMPP server granted it no \
                 XEP-0356 roster privilege)"
            }
            NotAuthorizedReason::NotInRosterGroup => {
                "the node admits only an owner's contacts in its allowed roster groups"
            }
            NotAuthorizedReason::RosterUnknown => {
                "the node admits only an owner's contacts in its allowed roster groups, and \
                 the service cannot read the owner's roster (the XMPP server granted it no \
                 XEP-0356 roster privilege)"
            }
            NotAuthorizedReason::NotSubscribed => "the node returns items to subscribers only",
        })
    }
}

/// Why an access model is not offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Error)]
pub enum UnsupportedAccessReason {
    /// `roster` needs the owner's roster groups, and the server granted no roster
    /// privilege for the owner's domain.
    #[error("the XMPP server granted this service no XEP-0356 roster privilege, so it cannot read roster groups")]
    NoRosterPrivilege,
}

/// A failure of a pubsub operation, in XEP-0060's vocabulary.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DomainError {
    /// The addressed node does not exist (or must not be revealed to the requester).
    #[error("node not found")]
    NodeNotFound,
    /// The addressed item does not exist.
    #[error("item not found")]
    ItemNotFound,
    /// A node with the requested NodeID already exists.
    #[error("node already exists")]
    NodeExists,
    /// The requester's affiliation does not allow the action (includes outcasts).
    #[error("insufficient privileges")]
    Forbidden,
    /// The access model refuses the requester; the reason selects the pubsub condition.
    #[error("not authorized: {reason}")]
    NotAuthorized {
        /// Which access-model rule refused the requester.
        reason: NotAuthorizedReason,
    },
    /// The node has the `whitelist` access model and the requester is not on it.
    #[error("node is closed to non-members")]
    ClosedNode,
    /// The requester already has a subscription awaiting owner approval.
    #[error("subscription is pending approval")]
    PendingSubscription,
    /// The addressed JID has no subscription to the node (unsubscribe, options).
    #[error("not subscribed")]
    NotSubscribed,
    /// The subscriber JID does not match the requester and the requester may not act for it.
    #[error("JID does not match the requester")]
    InvalidJid,
    /// The request needs a subscriber JID and has none.
    #[error("subscriber JID required")]
    JidRequired,
    /// The SubID given is not valid or not current for the subscriber.
    #[error("invalid subscription id")]
    InvalidSubId,
    /// The subscriber has several subscriptions and the request did not name one.
    #[error("subscription id required")]
    SubIdRequired,
    /// The request must name a node and does not.
    #[error("node id required")]
    NodeIdRequired,
    /// A create request without a NodeID, and instant nodes are not offered.
    #[error("instant nodes are not supported; a node id is required")]
    InstantNodesUnsupported,
    /// The request must carry an item (or an ItemID) and does not: publishing to a
    /// persistent node without `<item/>`, or retracting without an ItemID.
    #[error("item required")]
    ItemRequired,
    /// The payload is larger than the node's `pubsub#max_payload_size`.
    #[error("payload too big")]
    PayloadTooBig,
    /// The node delivers payloads and the item has none.
    #[error("payload required")]
    PayloadRequired,
    /// The node is transient and notification-only, and the publish carried an item.
    #[error("item forbidden on this node")]
    ItemForbidden,
    /// The item has more than one payload element, or one in the wrong namespace.
    #[error("invalid payload")]
    InvalidPayload,
    /// The node is full and configured to reject new items (`publish_node_full=reject`).
    #[error("node is full")]
    NodeFull,
    /// A (batch) publication would exceed the node's maximum number of items.
    #[error("maximum number of items exceeded")]
    MaxItemsExceeded,
    /// The requester may not create more nodes (service quota).
    #[error("maximum number of nodes exceeded")]
    MaxNodesExceeded,
    /// The requester may not hold more subscriptions (service quota).
    #[error("too many subscriptions")]
    TooManySubscriptions,
    /// A publish-options precondition does not match the node configuration.
    #[error("precondition not met: {field}")]
    PreconditionNotMet {
        /// The `var` of the first field that did not match.
        field: String,
    },
    /// A subscription options form has an unacceptable value or combination of values.
    #[error("invalid subscription options: {0}")]
    InvalidOptions(String),
    /// The requested access model is not offered by this service now.
    #[error("unsupported access model: {model} ({reason})")]
    UnsupportedAccessModel {
        /// The model asked for.
        model: super::access::AccessModel,
        /// Why it is not offered.
        reason: UnsupportedAccessReason,
    },
    /// The operation needs an optional XEP-0060 feature this service or node lacks; the
    /// value is the feature name without the `http://jabber.org/protocol/pubsub#` prefix.
    #[error("unsupported feature: {0}")]
    UnsupportedFeature(&'static str),
    /// The request is malformed in a way no more specific variant covers.
    #[error("bad request: {0}")]
    BadRequest(String),

    /// A request uses something pubsubd does not implement that has no pubsub#errors
    /// feature name (XEP-0313: a form field the archive does not know).
    #[error("not implemented: {0}")]
    NotImplemented(String),
    /// A submitted value is invalid (XEP-0004 §3.4: data validation fails).
    #[error("not acceptable: {0}")]
    NotAcceptable(String),
    /// A link between nodes that XEP-0248 forbids: a leaf as a parent, a cycle, a
    /// collection turned back into a leaf (`not-allowed` + `invalid-options`).
    #[error("invalid link: {0}")]
    InvalidLink(String),
    /// The action exists but is disabled for this node or service.
    #[error("not allowed: {0}")]
    NotAllowed(String),
    /// A `presence` or `roster` node's owner's roster could not be read just now (no
    /// answer in time, an error answer, no stream to the server): the requester may try
    /// again later. Not a refusal: the roster privilege is held.
    #[error("the node owner's roster could not be read; try again later")]
    RosterUnreadable,
    /// The service is temporarily out of capacity; the requester may retry later.
    #[error("resource constraint")]
    ResourceConstraint,
    /// A local service policy refuses the request.
    #[error("policy violation: {0}")]
    PolicyViolation(String),
    /// The change would leave the node without any owner.
    #[error("a node must keep at least one owner")]
    LastOwner,
    /// Something failed inside the service; `kind` says whether trying again later may
    /// help, the details are for logs, never for the wire.
    #[error("internal error ({kind:?}): {details}")]
    Internal { kind: FailureKind, details: String },
}

impl DomainError {
    /// An internal failure of no particular kind.
    pub fn internal(details: impl Into<String>) -> DomainError {
        DomainError::Internal {
            kind: FailureKind::Other,
            details: details.into(),
        }
    }
}

/// What kind of failure inside the service a [`DomainError::Internal`] is. The store
/// classifies its errors so (`store::StoreError::kind`); the front ends answer by it:
/// only [`Unavailable`](Self::Unavailable) tells the requester to try again later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureKind {
    /// The database cannot be reached or answer in time (down, restarting, its pool
    /// exhausted, SQLite's write lock held too long): the request changed nothing and
    /// may succeed later.
    Unavailable,
    /// A concurrent change took a unique key first.
    Conflict,
    /// Another rule of the schema refused the change (foreign key, check, not null).
    Constraint,
    /// Stored data pubsubd cannot read.
    Corrupt,
    /// Anything else.
    Other,
}
