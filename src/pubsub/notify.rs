//! Which notification jobs a change queues, and for whom. The node's configuration
//! decides (`deliver_notifications`, `deliver_payloads`, `notify_*`,
//! `notification_type`, `itemreply`); the payload is rendered here, once per job.

use minidom::Element;
use xmpp_parsers::jid::{BareJid, Jid};

use crate::domain::{ItemId, ItemReply, NodeConfig, NotificationType, SubId, SubscriptionState};
use crate::events::{self, EventItem};
use crate::store::jobs::{JobKind, JobTarget, NewJob};
use crate::store::{ItemRecord, NodeRecord};

fn headline(config: &NodeConfig) -> bool {
    config.notification_type == NotificationType::Headline
}

fn to_subscribers(node: &NodeRecord, kind: JobKind, payload_xml: String) -> NewJob {
    NewJob {
        node_pk: node.pk,
        kind,
        payload_xml,
        headline: headline(&node.config),
        target: JobTarget::Subscribers,
    }
}

fn to_jid(
    node: &NodeRecord,
    kind: JobKind,
    payload_xml: String,
    jid: &Jid,
    headline: bool,
) -> NewJob {
    NewJob {
        node_pk: node.pk,
        kind,
        payload_xml,
        headline,
        target: JobTarget::Jid(jid.to_string()),
    }
}

/// The item as notifications show it: the payload only if the node delivers payloads,
/// the publisher only if `itemreply = publisher`.
fn event_item(
    config: &NodeConfig,
    id: &ItemId,
    publisher: &str,
    payload: Option<Element>,
) -> EventItem {
    EventItem {
        id: id.clone(),
        publisher: match config.itemreply {
            ItemReply::Publisher => publisher.parse().ok(),
            _ => None,
        },
        payload: payload.filter(|_| config.deliver_payloads),
    }
}

/// A published item, to every subscriber (§7.1.2).
pub fn published(
    node: &NodeRecord,
    id: &ItemId,
    publisher: &Jid,
    payload: Option<Element>,
) -> Vec<NewJob> {
    if !node.config.deliver_notifications {
        return vec![];
    }
    let item = event_item(&node.config, id, &publisher.to_string(), payload);
    vec![to_subscribers(
        node,
        JobKind::Items,
        events::items(&node.name, vec![item]),
    )]
}

/// An archived item as an archive query forwards it: the `<event/>` its notification
/// carries (XEP-0442 §3), with the same `deliver_payloads` and `itemreply` rules. A
/// stored payload that no longer parses is left out (and logged), not the item.
pub fn archived(node: &NodeRecord, item: &ItemRecord) -> Element {
    let payload = item
        .payload
        .as_deref()
        .and_then(|text| match crate::xml::parse(text) {
            Ok(el) => Some(el),
            Err(e) => {
                tracing::error!(node = %node.name, item = %item.id, error = %e, "stored payload does not parse; archived without it");
                None
            }
        });
    events::items_element(
        &node.name,
        vec![event_item(&node.config, &item.id, &item.publisher, payload)],
    )
}

/// The last published item to one new subscriber or newly available resource, with a
/// delay stamp (§6.1.7); nothing if the node keeps no item.
pub fn last_published(
    node: &NodeRecord,
    item: &ItemRecord,
    to: &Jid,
    service: &BareJid,
) -> Option<NewJob> {
    if !node.config.deliver_notifications {
        return None;
    }
    let payload = match &item.payload {
        Some(text) => match crate::xml::parse(text) {
            Ok(el) => Some(el),
            Err(e) => {
                tracing::error!(node = %node.name, item = %item.id, error = %e, "stored payload does not parse; not sent");
                return None;
            }
        },
        None => None,
    };
    let xml = events::last_published(
        &node.name,
        event_item(&node.config, &item.id, &item.publisher, payload),
        item.published_at,
        &Jid::from(service.clone()),
    );
    Some(to_jid(
        node,
        JobKind::Items,
        xml,
        to,
        headline(&node.config),
    ))
}

/// Retracted items (§7.2.2), if the node notifies retractions or the publisher asked.
pub fn retracted(node: &NodeRecord, ids: &[ItemId], asked: bool) -> Vec<NewJob> {
    if !node.config.deliver_notifications
        || !(asked || node.config.notify_retract)
        || ids.is_empty()
    {
        return vec![];
    }
    vec![to_subscribers(
        node,
        JobKind::Retract,
        events::retract(&node.name, ids),
    )]
}

/// The node was purged (§8.5.2).
pub fn purged(node: &NodeRecord) -> Vec<NewJob> {
    if !node.config.deliver_notifications || !node.config.notify_retract {
        return vec![];
    }
    vec![to_subscribers(
        node,
        JobKind::Purge,
        events::purge(&node.name),
    )]
}

/// The node was deleted (§8.4.2); `None` when subscribers are not to be told.
pub fn deleted(node: &NodeRecord, redirect: Option<&str>) -> Option<NewJob> {
    if !node.config.notify_delete {
        return None;
    }
    Some(to_subscribers(
        node,
        JobKind::Delete,
        events::delete(&node.name, redirect),
    ))
}

/// The configuration changed (§8.2.5.3); `config` is the new one.
pub fn configured(node: &NodeRecord, config: &NodeConfig) -> Vec<NewJob> {
    if !config.notify_config || !config.deliver_notifications {
        return vec![];
    }
    let form = config.deliver_payloads.then(|| config.to_result_form());
    let mut job = to_subscribers(
        node,
        JobKind::Config,
        events::configuration(&node.name, form),
    );
    job.headline = headline(config);
    vec![job]
}

/// A subscription's new state, told to the subscriber (§8.6 approval or denial, §8.8
/// owner changes). Sent as `normal` so an offline subscriber still learns it.
pub fn subscription_changed(
    node: &NodeRecord,
    jid: &Jid,
    subid: Option<&SubId>,
    state: SubscriptionState,
) -> NewJob {
    let xml = events::subscription(&node.name, jid, subid, state);
    to_jid(node, JobKind::Subscription, xml, jid, false)
}

/// Owners told of a new or ended subscription when `notify_sub` is on.
pub fn to_owners_on_subscription(
    node: &NodeRecord,
    owners: &[BareJid],
    jid: &Jid,
    subid: Option<&SubId>,
    state: SubscriptionState,
) -> Vec<NewJob> {
    if !node.config.notify_sub {
        return vec![];
    }
    let xml = events::subscription(&node.name, jid, subid, state);
    owners
        .iter()
        .map(|o| {
            to_jid(
                node,
                JobKind::Subscription,
                xml.clone(),
                &Jid::from(o.clone()),
                false,
            )
        })
        .collect()
}

/// Any finished message body to one JID (the approval form to owners).
pub fn direct(node: &NodeRecord, to: &BareJid, payload_xml: String) -> NewJob {
    to_jid(
        node,
        JobKind::Direct,
        payload_xml,
        &Jid::from(to.clone()),
        false,
    )
}
