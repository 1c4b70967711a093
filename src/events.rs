//! Event notifications (XEP-0060 §7.1.2, §7.2.2, §8.2.5, §8.4.2, §8.5.2, §8.8.4): the
//! children of the `<message/>` the fan-out engine sends, rendered once per job.
//!
//! Each function returns finished XML text: the `<event/>` element, and for a delayed
//! delivery (last published item) the XEP-0203 `<delay/>` beside it. The fan-out engine
//! wraps that text in one `<message/>` per recipient without parsing it again.
//!
//! A layer of its own, below both `pubsub` (which decides which events a change
//! queues) and `protocol` and `fanout`: it depends only on `domain` and the XML writer.

use chrono::{DateTime, Utc};
use minidom::Element;
use xmpp_parsers::data_forms::DataForm;
use xmpp_parsers::date::DateTime as XmppDateTime;
use xmpp_parsers::delay::Delay;
use xmpp_parsers::jid::Jid;
use xmpp_parsers::pubsub::event::{Event, Item, Payload};
use xmpp_parsers::pubsub::{ItemId as WireItemId, NodeName, Subscription};

use crate::domain::{ItemId, NodeId, SubId, SubscriptionState};
use crate::xmpp::render::to_xml;

/// One published item as it appears in a notification.
#[derive(Debug, Clone)]
pub struct EventItem {
    pub id: ItemId,
    /// Only set when the node's `pubsub#itemreply` says so.
    pub publisher: Option<Jid>,
    /// `None` on nodes that do not deliver payloads.
    pub payload: Option<Element>,
}

fn node_name(node: &NodeId) -> NodeName {
    NodeName(node.as_str().to_owned())
}

fn render(payload: Payload) -> String {
    to_xml(&Element::from(Event { payload }))
}

/// `<items>` with the published items (§7.1.2).
pub fn items(node: &NodeId, items: Vec<EventItem>) -> String {
    to_xml(&items_element(node, items))
}

/// [`items`] as an element, for a stanza built around it (an archive result).
pub fn items_element(node: &NodeId, items: Vec<EventItem>) -> Element {
    Element::from(Event {
        payload: items_payload(node, items),
    })
}

fn items_payload(node: &NodeId, items: Vec<EventItem>) -> Payload {
    Payload::Items {
        node: node_name(node),
        published: items
            .into_iter()
            .map(|i| Item {
                id: Some(WireItemId(i.id.as_str().to_owned())),
                publisher: i.publisher,
                payload: i.payload,
            })
            .collect(),
        retracted: vec![],
    }
}

/// The last published item, sent on subscription or when a subscriber comes online,
/// with the XEP-0203 delay that tells the client it is not new (§6.1.7, §12.3).
pub fn last_published(
    node: &NodeId,
    item: EventItem,
    published_at: DateTime<Utc>,
    service: &Jid,
) -> String {
    let mut xml = items(node, vec![item]);
    let delay = Delay {
        from: Some(service.clone()),
        stamp: XmppDateTime(published_at.fixed_offset()),
        data: None,
    };
    xml.push_str(&to_xml(&Element::from(delay)));
    xml
}

/// `<items><retract id=…/></items>` (§7.2.2).
pub fn retract(node: &NodeId, ids: &[ItemId]) -> String {
    render(Payload::Items {
        node: node_name(node),
        published: vec![],
        retracted: ids
            .iter()
            .map(|id| WireItemId(id.as_str().to_owned()))
            .collect(),
    })
}

/// `<purge/>` (§8.5.2).
pub fn purge(node: &NodeId) -> String {
    render(Payload::Purge {
        node: node_name(node),
    })
}

/// `<delete/>`, with the optional redirect URI (§8.4.2).
pub fn delete(node: &NodeId, redirect: Option<&str>) -> String {
    render(Payload::Delete {
        node: node_name(node),
        redirect: redirect.map(str::to_owned),
    })
}

/// `<configuration/>`, with the new configuration when the node delivers payloads
/// (§8.2.5.3).
pub fn configuration(node: &NodeId, form: Option<DataForm>) -> String {
    render(Payload::Configuration {
        node: node_name(node),
        form,
    })
}

/// `<subscription/>`: a subscriber's new state, sent to the subscriber after an owner
/// approved, denied or changed it (§8.6, §8.8.4).
pub fn subscription(
    node: &NodeId,
    jid: &Jid,
    subid: Option<&SubId>,
    state: SubscriptionState,
) -> String {
    // Built by hand: xmpp-parsers leaves out `subscription='none'` (its default), but a
    // denial is exactly that value (XEP-0060 §8.6, Example 161).
    let name = |n: &'static str| {
        minidom::rxml::NcName::try_from(n).expect("attribute names here are literal XML names")
    };
    let mut sub = Element::builder("subscription", xmpp_parsers::ns::PUBSUB_EVENT)
        .attr(name("node"), node.as_str())
        .attr(name("jid"), jid.to_string())
        .attr(name("subscription"), state.as_str());
    if let Some(subid) = subid {
        sub = sub.attr(name("subid"), subid.as_str());
    }
    to_xml(
        &Element::builder("event", xmpp_parsers::ns::PUBSUB_EVENT)
            .append(sub.build())
            .build(),
    )
}

/// The attribute value of a wire subscription state.
pub fn state_str(state: &Subscription) -> &'static str {
    match state {
        Subscription::None => "none",
        Subscription::Pending => "pending",
        Subscription::Unconfigured => "unconfigured",
        Subscription::Subscribed => "subscribed",
    }
}

/// The wire form of a subscription state.
pub fn wire_state(state: SubscriptionState) -> Subscription {
    match state {
        SubscriptionState::None => Subscription::None,
        SubscriptionState::Pending => Subscription::Pending,
        SubscriptionState::Unconfigured => Subscription::Unconfigured,
        SubscriptionState::Subscribed => Subscription::Subscribed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xmpp_parsers::ns;

    fn node() -> NodeId {
        NodeId::parse("princely_musings").unwrap()
    }

    fn parse(xml: &str) -> Element {
        xml.parse().expect("well-formed event")
    }

    #[test]
    fn items_event_keeps_the_payload_and_its_namespace() {
        let entry: Element =
            "<entry xmlns='http://www.w3.org/2005/Atom'><title>Soliloquy</title></entry>"
                .parse()
                .unwrap();
        let xml = items(
            &node(),
            vec![EventItem {
                id: ItemId::parse("ae890ac52d0df67ed7cfdf51b644e901").unwrap(),
                publisher: None,
                payload: Some(entry.clone()),
            }],
        );
        let ev = parse(&xml);
        assert_eq!(ev.ns(), ns::PUBSUB_EVENT);
        let items = ev.get_child("items", ns::PUBSUB_EVENT).unwrap();
        assert_eq!(items.attr("node"), Some("princely_musings"));
        let item = items.get_child("item", ns::PUBSUB_EVENT).unwrap();
        assert_eq!(item.attr("id"), Some("ae890ac52d0df67ed7cfdf51b644e901"));
        assert_eq!(item.attr("publisher"), None);
        assert_eq!(
            item.get_child("entry", "http://www.w3.org/2005/Atom"),
            Some(&entry)
        );
    }

    #[test]
    fn last_published_item_carries_a_delay() {
        let service: Jid = "pubsub.shakespeare.lit".parse().unwrap();
        let xml = last_published(
            &node(),
            EventItem {
                id: ItemId::parse("a").unwrap(),
                publisher: None,
                payload: None,
            },
            DateTime::parse_from_rfc3339("2003-12-13T23:58:37Z")
                .unwrap()
                .with_timezone(&Utc),
            &service,
        );
        let wrapped = parse(&format!("<message xmlns='jabber:client'>{xml}</message>"));
        let delay = wrapped.get_child("delay", ns::DELAY).expect("delay");
        assert!(delay
            .attr("stamp")
            .unwrap()
            .starts_with("2003-12-13T23:58:37"));
        assert_eq!(delay.attr("from"), Some("pubsub.shakespeare.lit"));
        assert!(wrapped.get_child("event", ns::PUBSUB_EVENT).is_some());
    }

    #[test]
    fn retract_purge_delete_and_subscription_events() {
        let r = parse(&retract(&node(), &[ItemId::parse("x1").unwrap()]));
        let retract_el = r
            .get_child("items", ns::PUBSUB_EVENT)
            .and_then(|i| i.get_child("retract", ns::PUBSUB_EVENT))
            .unwrap();
        assert_eq!(retract_el.attr("id"), Some("x1"));

        let p = parse(&purge(&node()));
        assert!(p.get_child("purge", ns::PUBSUB_EVENT).is_some());

        let d = parse(&delete(&node(), Some("xmpp:hamlet@denmark.lit?;node=blog")));
        let redirect = d
            .get_child("delete", ns::PUBSUB_EVENT)
            .and_then(|d| d.get_child("redirect", ns::PUBSUB_EVENT))
            .unwrap();
        assert_eq!(
            redirect.attr("uri"),
            Some("xmpp:hamlet@denmark.lit?;node=blog")
        );

        let jid: Jid = "horatio@denmark.lit".parse().unwrap();
        let s = parse(&subscription(
            &node(),
            &jid,
            None,
            SubscriptionState::Subscribed,
        ));
        let sub = s.get_child("subscription", ns::PUBSUB_EVENT).unwrap();
        assert_eq!(sub.attr("subscription"), Some("subscribed"));
        let denied = parse(&subscription(&node(), &jid, None, SubscriptionState::None));
        let sub = denied.get_child("subscription", ns::PUBSUB_EVENT).unwrap();
        assert_eq!(sub.attr("subscription"), Some("none"), "a denial says none");
        assert_eq!(sub.attr("jid"), Some("horatio@denmark.lit"));
    }
}
