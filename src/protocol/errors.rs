//! Domain errors to stanza errors: the single place where a [`DomainError`] becomes the
//! `<error/>` XEP-0060 prescribes for it.
//!
//! Each arm cites the XEP-0060 section whose example it follows. The error type is the one
//! in that example, or RFC 6120 §8.3.3's recommendation where the XEP gives none.

use std::collections::BTreeMap;

use minidom::rxml::NcName;
use minidom::Element;
use xmpp_parsers::jid::Jid;
use xmpp_parsers::ns;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};

use crate::domain::error::FailureKind;
use crate::domain::{DomainError, NotAuthorizedReason};

/// Language of the human-readable `<text/>` the service adds.
const TEXT_LANG: &str = "en";

/// The application-specific condition in the `pubsub#errors` namespace.
fn pubsub_condition(name: &str) -> Element {
    Element::builder(name, ns::PUBSUB_ERRORS).build()
}

/// `<unsupported feature='…'/>`, naming the missing feature.
fn unsupported(feature: &str) -> Element {
    let name = NcName::try_from("feature").expect("'feature' is a valid XML name");
    Element::builder("unsupported", ns::PUBSUB_ERRORS)
        .attr(name, feature)
        .build()
}

/// The error for a request the stream reader refused for crossing a per-stanza limit
/// ([`crate::xmpp::refused`]): a publish too large for the stanza limit is
/// `payload-too-big` (XEP-0060 §7.1.3.4), like one over the node's own limit; anything
/// else over a limit is `policy-violation` (RFC 6120 §8.3.3.12), with the limit in the
/// text.
pub fn refused_request(refused: &crate::xmpp::refused::RefusedRequest) -> StanzaError {
    let publish = refused.payload_ns.as_deref() == Some(ns::PUBSUB)
        && refused.payload_child.as_deref() == Some("publish");
    if refused.too_large() && publish {
        return stanza_error(&DomainError::PayloadTooBig, None);
    }
    super::reply::with_text(
        ErrorType::Modify,
        DefinedCondition::PolicyViolation,
        &refused.reason,
    )
}

/// The XEP-0060 error for `err`, attributed to `by` (normally the service's JID) if given.
///
/// Every error carries an English `<text/>` describing it, except `Internal`, whose
/// details stay in the logs.
pub fn stanza_error(err: &DomainError, by: Option<Jid>) -> StanzaError {
    use DefinedCondition as C;
    use DomainError as E;
    use ErrorType as T;

    let (type_, condition, other) = match err {
        // §6.1.3.12, §6.5.9.11, §7.2.3.2, §8.4.3.2: node (or item) does not exist.
        E::NodeNotFound | E::ItemNotFound => (T::Cancel, C::ItemNotFound, None),
        // §8.1.1: the requested NodeID already exists.
        E::NodeExists => (T::Cancel, C::Conflict, None),
        // §6.1.3.8, §7.1.3.1, §8.4.3.1: insufficient privileges or outcast.
        E::Forbidden => (T::Auth, C::Forbidden, None),
        // §6.1.3.2, §6.1.3.3, §6.5.9.3.
        E::NotAuthorized { reason } => {
            let name = match reason {
                NotAuthorizedReason::PresenceSubscriptionRequired
                | NotAuthorizedReason::PresenceUnknown => "presence-subscription-required",
                NotAuthorizedReason::NotInRosterGroup | NotAuthorizedReason::RosterUnknown => {
                    "not-in-roster-group"
                }
                NotAuthorizedReason::NotSubscribed => "not-subscribed",
            };
            (T::Auth, C::NotAuthorized, Some(pubsub_condition(name)))
        }
        // §6.1.3.4, §6.5.9.8: whitelist node.
        E::ClosedNode => (
            T::Cancel,
            C::NotAllowed,
            Some(pubsub_condition("closed-node")),
        ),
        // §6.1.3.7.
        E::PendingSubscription => (
            T::Auth,
            C::NotAuthorized,
            Some(pubsub_condition("pending-subscription")),
        ),
        // §6.2.3.2 shows type cancel, §6.3.4.2 type modify; RFC 6120 recommends wait or
        // modify for unexpected-request, so modify.
        E::NotSubscribed => (
            T::Modify,
            C::UnexpectedRequest,
            Some(pubsub_condition("not-subscribed")),
        ),
        // §6.1.3.1.
        E::InvalidJid => (
            T::Modify,
            C::BadRequest,
            Some(pubsub_condition("invalid-jid")),
        ),
        // §6.3.4.3.
        E::JidRequired => (
            T::Modify,
            C::BadRequest,
            Some(pubsub_condition("jid-required")),
        ),
        // §6.2.3.5, §6.3.4.5, §6.5.9.2.
        E::InvalidSubId => (
            T::Modify,
            C::NotAcceptable,
            Some(pubsub_condition("invalid-subid")),
        ),
        // §6.2.3.1, §6.3.4.4, §6.5.9.1.
        E::SubIdRequired => (
            T::Modify,
            C::BadRequest,
            Some(pubsub_condition("subid-required")),
        ),
        // §7.2.3.3, §8.2.3.3.
        E::NodeIdRequired => (
            T::Modify,
            C::BadRequest,
            Some(pubsub_condition("nodeid-required")),
        ),
        // §8.1.1: create without NodeID and no instant nodes.
        E::InstantNodesUnsupported => (
            T::Modify,
            C::NotAcceptable,
            Some(pubsub_condition("nodeid-required")),
        ),
        // §7.1.3.6 (publish), §7.2.3.4 (retract without ItemID).
        E::ItemRequired => (
            T::Modify,
            C::BadRequest,
            Some(pubsub_condition("item-required")),
        ),
        // §7.1.3.4.
        E::PayloadTooBig => (
            T::Modify,
            C::NotAcceptable,
            Some(pubsub_condition("payload-too-big")),
        ),
        // §7.1.3.6.
        E::PayloadRequired => (
            T::Modify,
            C::BadRequest,
            Some(pubsub_condition("payload-required")),
        ),
        // §7.1.3.6.
        E::ItemForbidden => (
            T::Modify,
            C::BadRequest,
            Some(pubsub_condition("item-forbidden")),
        ),
        // §7.1.3.5.
        E::InvalidPayload => (
            T::Modify,
            C::BadRequest,
            Some(pubsub_condition("invalid-payload")),
        ),
        // §7.1.3.3 (node full, publish_node_full=reject).
        E::NodeFull => (T::Cancel, C::Conflict, Some(pubsub_condition("node-full"))),
        // §12.10 (batch publish beyond max_items).
        E::MaxItemsExceeded => (
            T::Cancel,
            C::NotAllowed,
            Some(pubsub_condition("max-items-exceeded")),
        ),
        // pubsub#errors schema; same shape as max-items-exceeded.
        E::MaxNodesExceeded => (
            T::Cancel,
            C::NotAllowed,
            Some(pubsub_condition("max-nodes-exceeded")),
        ),
        // §6.1.3.9.
        E::TooManySubscriptions => (
            T::Wait,
            C::PolicyViolation,
            Some(pubsub_condition("too-many-subscriptions")),
        ),
        // §7.1.5: conflict + precondition-not-met; conflict is a cancel condition.
        E::PreconditionNotMet { .. } => (
            T::Cancel,
            C::Conflict,
            Some(pubsub_condition("precondition-not-met")),
        ),
        // §6.3.5.
        E::InvalidOptions(_) => (
            T::Modify,
            C::BadRequest,
            Some(pubsub_condition("invalid-options")),
        ),
        // §8.1.2.
        E::UnsupportedAccessModel { .. } => (
            T::Modify,
            C::NotAcceptable,
            Some(pubsub_condition("unsupported-access-model")),
        ),
        // §6.1.3.10, §6.5.9.5, §8.2.3.1, ...: feature-not-implemented + unsupported.
        E::UnsupportedFeature(feature) => (
            T::Cancel,
            C::FeatureNotImplemented,
            Some(unsupported(feature)),
        ),
        E::BadRequest(_) => (T::Modify, C::BadRequest, None),
        // XEP-0313 §4.1.5: a query form field the archive does not know.
        E::NotImplemented(_) => (T::Cancel, C::FeatureNotImplemented, None),
        // §8.2.5.2 and XEP-0004 §3.4 (invalid submitted data).
        E::NotAcceptable(_) => (T::Modify, C::NotAcceptable, None),
        // §8.2.3.4 (configuration locked down).
        E::NotAllowed(_) => (T::Cancel, C::NotAllowed, None),
        // XEP-0248 §6.2.3.1, §6.2.3.4, §6.2.3.5, §6.4.3.3.
        E::InvalidLink(_) => (
            T::Cancel,
            C::NotAllowed,
            Some(pubsub_condition("invalid-options")),
        ),
        E::ResourceConstraint => (T::Wait, C::ResourceConstraint, None),
        // The roster read failed, not the requester: wait, as for a database away.
        E::RosterUnreadable => (T::Wait, C::InternalServerError, None),
        E::PolicyViolation(_) => (T::Modify, C::PolicyViolation, None),
        // §8.2.5.2 and §8.9.2.4: a change that would leave no owner is not-acceptable.
        E::LastOwner => (T::Modify, C::NotAcceptable, None),
        // RFC 6120 §8.3.3.6; a database that is down may be back soon: type wait, so
        // the client retries (docs/reliability.md). Any other internal failure: cancel.
        E::Internal {
            kind: FailureKind::Unavailable,
            ..
        } => (T::Wait, C::InternalServerError, None),
        E::Internal { .. } => (T::Cancel, C::InternalServerError, None),
    };

    let text = match err {
        E::Internal {
            kind: FailureKind::Unavailable,
            ..
        } => "the service's database is unavailable; try again later".to_owned(),
        E::Internal { .. } => "internal server error".to_owned(),
        other => other.to_string(),
    };
    StanzaError {
        type_,
        by,
        defined_condition: condition,
        texts: BTreeMap::from([(TEXT_LANG.to_owned(), text)]),
        other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STANZAS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";

    /// The error serialised, then read back as a tree for exact assertions.
    fn xml(err: DomainError) -> Element {
        let element = Element::from(stanza_error(&err, None));
        let text = String::from(&element);
        text.parse()
            .expect("the serialised error is well-formed XML")
    }

    /// Asserts the error's type, its defined condition, and its pubsub#errors child
    /// (name, and optional feature attribute), as in the XEP-0060 example cited.
    fn assert_error(
        err: DomainError,
        type_: &str,
        condition: &str,
        pubsub: Option<(&str, Option<&str>)>,
    ) {
        let e = xml(err.clone());
        assert_eq!(e.name(), "error");
        assert_eq!(e.attr("type"), Some(type_), "{err:?}");
        assert!(
            e.get_child(condition, STANZAS).is_some(),
            "{err:?}: no <{condition}/> in {}",
            String::from(&e)
        );
        let app: Vec<&Element> = e
            .children()
            .filter(|c| c.ns() == ns::PUBSUB_ERRORS)
            .collect();
        match pubsub {
            None => assert!(app.is_empty(), "{err:?}: unexpected {app:?}"),
            Some((name, feature)) => {
                assert_eq!(app.len(), 1, "{err:?}");
                assert_eq!(app[0].name(), name, "{err:?}");
                assert_eq!(app[0].attr("feature"), feature, "{err:?}");
            }
        }
    }

    #[test]
    fn subscribe_with_mismatched_jid_is_bad_request_invalid_jid() {
        // XEP-0060 Example 36.
        assert_error(
            DomainError::InvalidJid,
            "modify",
            "bad-request",
            Some(("invalid-jid", None)),
        );
    }

    #[test]
    fn presence_node_without_presence_subscription() {
        // Example 37.
        assert_error(
            DomainError::NotAuthorized {
                reason: NotAuthorizedReason::PresenceSubscriptionRequired,
            },
            "auth",
            "not-authorized",
            Some(("presence-subscription-required", None)),
        );
    }

    #[test]
    fn an_unreadable_roster_is_wait_internal_server_error_not_a_refusal() {
        assert_error(
            DomainError::RosterUnreadable,
            "wait",
            "internal-server-error",
            None,
        );
    }

    #[test]
    fn roster_node_without_roster_group() {
        // Example 38.
        assert_error(
            DomainError::NotAuthorized {
                reason: NotAuthorizedReason::NotInRosterGroup,
            },
            "auth",
            "not-authorized",
            Some(("not-in-roster-group", None)),
        );
    }

    #[test]
    fn whitelist_node_is_not_allowed_closed_node() {
        // Example 39.
        assert_error(
            DomainError::ClosedNode,
            "cancel",
            "not-allowed",
            Some(("closed-node", None)),
        );
    }

    #[test]
    fn pending_subscription() {
        // Example 42.
        assert_error(
            DomainError::PendingSubscription,
            "auth",
            "not-authorized",
            Some(("pending-subscription", None)),
        );
    }

    #[test]
    fn outcast_is_forbidden() {
        // Example 43.
        assert_error(DomainError::Forbidden, "auth", "forbidden", None);
    }

    #[test]
    fn too_many_subscriptions() {
        // Example 44.
        assert_error(
            DomainError::TooManySubscriptions,
            "wait",
            "policy-violation",
            Some(("too-many-subscriptions", None)),
        );
    }

    #[test]
    fn missing_node_is_item_not_found() {
        // Example 47.
        assert_error(DomainError::NodeNotFound, "cancel", "item-not-found", None);
        assert_error(DomainError::ItemNotFound, "cancel", "item-not-found", None);
    }

    #[test]
    fn subid_required_and_invalid_subid() {
        // Examples 52 and 55.
        assert_error(
            DomainError::SubIdRequired,
            "modify",
            "bad-request",
            Some(("subid-required", None)),
        );
        assert_error(
            DomainError::InvalidSubId,
            "modify",
            "not-acceptable",
            Some(("invalid-subid", None)),
        );
    }

    #[test]
    fn unsubscribing_a_non_subscriber_is_unexpected_request_not_subscribed() {
        // Example 53.
        assert_error(
            DomainError::NotSubscribed,
            "modify",
            "unexpected-request",
            Some(("not-subscribed", None)),
        );
    }

    #[test]
    fn retrieving_from_authorize_node_unsubscribed() {
        // Example 82.
        assert_error(
            DomainError::NotAuthorized {
                reason: NotAuthorizedReason::NotSubscribed,
            },
            "auth",
            "not-authorized",
            Some(("not-subscribed", None)),
        );
    }

    #[test]
    fn invalid_subscription_options() {
        // Example 68.
        assert_error(
            DomainError::InvalidOptions("x".into()),
            "modify",
            "bad-request",
            Some(("invalid-options", None)),
        );
    }

    #[test]
    fn unsupported_features_name_the_feature() {
        // Examples 29, 84, 103.
        assert_error(
            DomainError::UnsupportedFeature("retrieve-subscriptions"),
            "cancel",
            "feature-not-implemented",
            Some(("unsupported", Some("retrieve-subscriptions"))),
        );
        assert_error(
            DomainError::UnsupportedFeature("persistent-items"),
            "cancel",
            "feature-not-implemented",
            Some(("unsupported", Some("persistent-items"))),
        );
    }

    #[test]
    fn publish_errors() {
        // Examples 97, 98, 99, 100, 101, 102.
        assert_error(
            DomainError::NodeFull,
            "cancel",
            "conflict",
            Some(("node-full", None)),
        );
        assert_error(
            DomainError::PayloadTooBig,
            "modify",
            "not-acceptable",
            Some(("payload-too-big", None)),
        );
        assert_error(
            DomainError::InvalidPayload,
            "modify",
            "bad-request",
            Some(("invalid-payload", None)),
        );
        assert_error(
            DomainError::ItemRequired,
            "modify",
            "bad-request",
            Some(("item-required", None)),
        );
        assert_error(
            DomainError::PayloadRequired,
            "modify",
            "bad-request",
            Some(("payload-required", None)),
        );
        assert_error(
            DomainError::ItemForbidden,
            "modify",
            "bad-request",
            Some(("item-forbidden", None)),
        );
    }

    #[test]
    fn publish_options_precondition_not_met() {
        // §7.1.5.
        assert_error(
            DomainError::PreconditionNotMet {
                field: "pubsub#access_model".into(),
            },
            "cancel",
            "conflict",
            Some(("precondition-not-met", None)),
        );
    }

    #[test]
    fn retract_without_node_is_nodeid_required() {
        // Example 115; Example 121 for create without NodeID.
        assert_error(
            DomainError::NodeIdRequired,
            "modify",
            "bad-request",
            Some(("nodeid-required", None)),
        );
        assert_error(
            DomainError::InstantNodesUnsupported,
            "modify",
            "not-acceptable",
            Some(("nodeid-required", None)),
        );
    }

    #[test]
    fn node_exists_is_conflict() {
        // Example 120.
        assert_error(DomainError::NodeExists, "cancel", "conflict", None);
    }

    #[test]
    fn unsupported_access_model() {
        // Example 126.
        assert_error(
            DomainError::UnsupportedAccessModel {
                model: crate::domain::AccessModel::Roster,
                reason: crate::domain::UnsupportedAccessReason::NoRosterPrivilege,
            },
            "modify",
            "not-acceptable",
            Some(("unsupported-access-model", None)),
        );
    }

    #[test]
    fn removing_the_last_owner_is_not_acceptable() {
        // Examples 134 and 187.
        assert_error(DomainError::LastOwner, "modify", "not-acceptable", None);
    }

    #[test]
    fn remaining_conditions() {
        assert_error(
            DomainError::JidRequired,
            "modify",
            "bad-request",
            Some(("jid-required", None)),
        );
        assert_error(
            DomainError::MaxItemsExceeded,
            "cancel",
            "not-allowed",
            Some(("max-items-exceeded", None)),
        );
        assert_error(
            DomainError::MaxNodesExceeded,
            "cancel",
            "not-allowed",
            Some(("max-nodes-exceeded", None)),
        );
        assert_error(
            DomainError::BadRequest("x".into()),
            "modify",
            "bad-request",
            None,
        );
        assert_error(
            DomainError::NotAcceptable("x".into()),
            "modify",
            "not-acceptable",
            None,
        );
        assert_error(
            DomainError::NotAllowed("x".into()),
            "cancel",
            "not-allowed",
            None,
        );
        assert_error(
            DomainError::ResourceConstraint,
            "wait",
            "resource-constraint",
            None,
        );
        assert_error(
            DomainError::PolicyViolation("x".into()),
            "modify",
            "policy-violation",
            None,
        );
        assert_error(
            DomainError::internal("bug"),
            "cancel",
            "internal-server-error",
            None,
        );
        assert_error(
            DomainError::Internal {
                kind: FailureKind::Unavailable,
                details: "db down".into(),
            },
            "wait",
            "internal-server-error",
            None,
        );
    }

    #[test]
    fn errors_are_in_the_component_namespace_and_carry_by() {
        let by: Jid = "pubsub.shakespeare.lit".parse().unwrap();
        let element = Element::from(stanza_error(&DomainError::Forbidden, Some(by)));
        assert_eq!(element.ns(), ns::COMPONENT_ACCEPT);
        assert!(
            String::from(&element).contains("by='pubsub.shakespeare.lit'")
                || String::from(&element).contains("by=\"pubsub.shakespeare.lit\"")
        );
    }

    #[test]
    fn text_explains_the_error_but_internal_details_stay_private() {
        let error = stanza_error(
            &DomainError::NotAcceptable("max_items too large".into()),
            None,
        );
        assert!(error.texts["en"].contains("max_items too large"));
        let internal = stanza_error(&DomainError::internal("password=hunter2"), None);
        assert!(!internal.texts["en"].contains("hunter2"));
    }
}
