//! Result payloads of pubsub requests, built with xmpp-parsers' types where their
//! fields are public and with minidom where they are not (subscriptions, owner
//! affiliations).

use minidom::Element;
use xmpp_parsers::data_forms::DataFormType;
use xmpp_parsers::jid::{BareJid, Jid};
use xmpp_parsers::ns;
use xmpp_parsers::pubsub::pubsub::{
    Affiliation as WireAffiliation, Affiliations, Create, Item, Items, PubSub, Publish,
};
use xmpp_parsers::pubsub::{AffiliationAttribute, ItemId as WireItemId, NodeName};
use xmpp_parsers::rsm::{First, SetResult};

use crate::domain::{Affiliation, ItemId, ItemReply, NodeId, SubscribeOptions};
use crate::pubsub::items::Retrieved;
use crate::store::SubscriptionRecord;

fn name(node: &NodeId) -> NodeName {
    NodeName(node.as_str().to_owned())
}

/// `<create node=…/>` (§8.1.2: required for instant nodes, harmless otherwise).
pub fn created(node: &NodeId) -> Element {
    PubSub::Create {
        create: Create {
            node: Some(name(node)),
        },
        configure: None,
    }
    .into()
}

/// `<publish node=…><item id=…/></publish>` (§7.1.2).
pub fn published(node: &NodeId, id: Option<&ItemId>) -> Element {
    PubSub::Publish {
        publish: Publish {
            node: name(node),
            items: id
                .map(|id| Item {
                    id: Some(WireItemId(id.as_str().to_owned())),
                    publisher: None,
                    payload: None,
                })
                .into_iter()
                .collect(),
        },
        publish_options: None,
    }
    .into()
}

/// Retrieved items (§6.5.2), with an XEP-0059 `<set/>` when paging was asked for or
/// the result is partial (§6.5.7).
pub fn items(got: &Retrieved, paged: bool) -> Element {
    let show_publisher = got.node.config.itemreply == ItemReply::Publisher;
    let items =
        got.page
            .items
            .iter()
            .map(|i| {
                Item {
            id: Some(WireItemId(i.id.as_str().to_owned())),
            publisher: if show_publisher {
                i.publisher.parse::<Jid>().ok()
            } else {
                None
            },
            payload: i.payload.as_deref().and_then(|p| match crate::xml::parse(p) {
                Ok(el) => Some(el),
                Err(e) => {
                    tracing::error!(item = %i.id, error = %e, "stored payload does not parse");
                    None
                }
            }),
        }
            })
            .collect();
    let mut el: Element = PubSub::Items(Items {
        max_items: None,
        node: name(&got.node.name),
        subid: None,
        items,
    })
    .into();
    let partial = (got.page.items.len() as u64) < got.page.count;
    if paged || partial {
        let set = SetResult {
            first: got.page.items.first().map(|i| First {
                index: got.page.first_index.map(|n| n as usize),
                item: i.id.as_str().to_owned(),
            }),
            last: got.page.items.last().map(|i| i.id.as_str().to_owned()),
            count: Some(got.page.count as usize),
        };
        el.append_child(set.into());
    }
    el
}

fn subscription_element(s: &SubscriptionRecord, with_node: bool) -> Element {
    let mut b = Element::builder("subscription", ns::PUBSUB)
        .attr(xml_name("jid"), s.jid.to_string())
        .attr(xml_name("subid"), s.subid.as_str())
        .attr(xml_name("subscription"), s.state.as_str());
    if with_node {
        b = b.attr(xml_name("node"), s.node.as_str());
    }
    b.build()
}

/// An attribute name; only ever called with literals, so the check cannot fail.
pub(crate) fn xml_name(n: &'static str) -> minidom::rxml::NcName {
    minidom::rxml::NcName::try_from(n).expect("attribute names here are literal XML names")
}

/// The reply to a subscribe (§6.1.2). Submitted options are applied as sent, so the
/// reply carries the subscription only, which §6.3.7 permits.
pub fn subscription(s: &SubscriptionRecord) -> Element {
    Element::builder("pubsub", ns::PUBSUB)
        .append(subscription_element(s, true))
        .build()
}

/// A subscription's options form (§6.3.2).
pub fn options(s: &SubscriptionRecord) -> Element {
    let options = Element::builder("options", ns::PUBSUB)
        .attr(xml_name("node"), s.node.as_str())
        .attr(xml_name("jid"), s.jid.to_string())
        .attr(xml_name("subid"), s.subid.as_str())
        .append(Element::from(s.options.to_form(DataFormType::Form)))
        .build();
    Element::builder("pubsub", ns::PUBSUB)
        .append(options)
        .build()
}

/// Default subscription options (§6.4).
pub fn default_options(node: Option<&NodeId>, defaults: &SubscribeOptions) -> Element {
    let mut d = Element::builder("default", ns::PUBSUB);
    if let Some(node) = node {
        d = d.attr(xml_name("node"), node.as_str());
    }
    let d = d
        .append(Element::from(defaults.to_form(DataFormType::Form)))
        .build();
    Element::builder("pubsub", ns::PUBSUB).append(d).build()
}

/// The requester's subscriptions (§5.6).
pub fn own_subscriptions(node: Option<&NodeId>, subs: &[SubscriptionRecord]) -> Element {
    let mut list = Element::builder("subscriptions", ns::PUBSUB);
    if let Some(node) = node {
        list = list.attr(xml_name("node"), node.as_str());
    }
    let list = list
        .append_all(subs.iter().map(|s| subscription_element(s, true)))
        .build();
    Element::builder("pubsub", ns::PUBSUB).append(list).build()
}

fn wire_affiliation(a: Affiliation) -> AffiliationAttribute {
    match a {
        Affiliation::Owner => AffiliationAttribute::Owner,
        Affiliation::Publisher => AffiliationAttribute::Publisher,
        Affiliation::PublishOnly => AffiliationAttribute::PublishOnly,
        Affiliation::Member => AffiliationAttribute::Member,
        Affiliation::None => AffiliationAttribute::None,
        Affiliation::Outcast => AffiliationAttribute::Outcast,
    }
}

/// The requester's affiliations (§5.7).
pub fn own_affiliations(node: Option<&NodeId>, affs: &[(NodeId, Affiliation)]) -> Element {
    PubSub::Affiliations(Affiliations {
        node: node.map(name),
        affiliations: affs
            .iter()
            .map(|(n, a)| WireAffiliation {
                node: name(n),
                affiliation: wire_affiliation(*a),
            })
            .collect(),
    })
    .into()
}

/// A node's subscriptions for its owner (§8.8.1).
pub fn node_subscriptions(node: &NodeId, subs: &[SubscriptionRecord]) -> Element {
    let list = Element::builder("subscriptions", ns::PUBSUB_OWNER)
        .attr(xml_name("node"), node.as_str())
        .append_all(subs.iter().map(|s| {
            Element::builder("subscription", ns::PUBSUB_OWNER)
                .attr(xml_name("jid"), s.jid.to_string())
                .attr(xml_name("subscription"), s.state.as_str())
                .attr(xml_name("subid"), s.subid.as_str())
                .build()
        }))
        .build();
    Element::builder("pubsub", ns::PUBSUB_OWNER)
        .append(list)
        .build()
}

/// A node's affiliations for its owner (§8.9.1).
pub fn node_affiliations(node: &NodeId, affs: &[(BareJid, Affiliation)]) -> Element {
    let list = Element::builder("affiliations", ns::PUBSUB_OWNER)
        .attr(xml_name("node"), node.as_str())
        .append_all(affs.iter().map(|(j, a)| {
            Element::builder("affiliation", ns::PUBSUB_OWNER)
                .attr(xml_name("jid"), j.as_str())
                .attr(xml_name("affiliation"), a.as_str())
                .build()
        }))
        .build();
    Element::builder("pubsub", ns::PUBSUB_OWNER)
        .append(list)
        .build()
}
