//! Who receives a subscription's copy of a notification, and the `<message/>` that
//! carries it.
//!
//! Pure functions, no I/O. The payload arrives rendered (one string per job); each
//! recipient costs one `format!`-style concatenation, never an element tree.

use crate::domain::ShowValue;
use crate::store::claims::{Resource, Subscriber};
use crate::store::jobs::JobKind;
use crate::xmpp::multicast::NS_ADDRESS;
use crate::xmpp::render::escape;

/// XEP-0131 Stanza Headers and Internet Metadata.
const NS_SHIM: &str = "http://jabber.org/protocol/shim";

/// Whether a subscription that paused delivery (`pubsub#deliver` = false) still gets a
/// notification of this kind. Pausing silences new and retracted items; events about
/// the node itself (purge, deletion, configuration) still arrive, since they change what
/// the subscriber holds or whether the subscription exists at all.
fn reaches_paused(kind: JobKind) -> bool {
    !matches!(kind, JobKind::Items | JobKind::Retract)
}

/// The JIDs that receive `sub`'s copy of a `kind` notification.
///
/// `presence` is `None` when the node does not use presence-based delivery: the
/// subscribed JID gets it as is (the server decides which resource, or offline storage).
/// Otherwise it holds the available resources of the subscriber's bare JID: a bare-JID
/// subscription reaches each of them whose `<show/>` is among the subscription's
/// `show-values`; a full-JID subscription reaches that resource only, if it is available
/// with an accepted `<show/>`.
pub fn recipients<'a>(
    sub: &'a Subscriber,
    kind: JobKind,
    presence: Option<&'a [Resource]>,
) -> Vec<&'a str> {
    if !sub.options.deliver && !reaches_paused(kind) {
        return Vec::new();
    }
    let Some(resources) = presence else {
        return vec![sub.jid.as_str()];
    };
    let wanted = |show: ShowValue| sub.options.show_values.contains(&show);
    let bare = sub.jid == sub.bare_jid;
    resources
        .iter()
        .filter(|r| r.bare_jid == sub.bare_jid && wanted(r.show))
        .filter(|r| bare || r.jid == sub.jid)
        .map(|r| r.jid.as_str())
        .collect()
}

/// The id of a job's notification: the same for every copy and on every resend,
/// whichever path a copy takes (a multicast group or one by one; a resend after a
/// restart or a bounce may switch), so clients can drop duplicates by id.
///
/// A notification that carries a SubID names one subscription of a JID that holds
/// several, so its id names the subscription (`ps-<job>-<subscription>`); such copies
/// never go in a group. Every other copy has its group's id, [`group_id`].
pub fn notification_id(job_id: i64, subscription_pk: i64, headers: Headers<'_>) -> String {
    match headers.subid {
        Some(_) => format!("ps-{job_id}-{subscription_pk}"),
        None => group_id(job_id, headers.collection),
    }
}

/// The id of a job's notification to a multicast group, and to any subscriber without a
/// SubID ([`notification_id`]): `ps-<job>`. Through a collection it carries the
/// collection's name, `ps-<job>-via-<collection>`, so a subscriber of both the leaf and
/// the collection gets two distinct ids (they are two notifications, one per
/// subscription) and a client's duplicate check keeps both.
pub fn group_id(job_id: i64, via: Option<&str>) -> String {
    match via {
        None => format!("ps-{job_id}"),
        Some(collection) => format!("ps-{job_id}-via-{collection}"),
    }
}

/// The SHIM headers (XEP-0131) of one notification.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Headers<'a> {
    /// `SubID`: the subscriber holds several subscriptions to the node (XEP-0060 §12.5).
    pub subid: Option<&'a str>,
    /// `Collection`: the notification comes through this collection (XEP-0248 §4.3).
    pub collection: Option<&'a str>,
}

/// Whether a subscription to a collection receives a `kind` notification of a leaf
/// below: items published or retracted and purges, XEP-0248 §5.1's `items` type. The
/// leaf's own configuration, deletion and subscription events stay with the leaf.
pub fn reaches_collections(kind: JobKind) -> bool {
    matches!(kind, JobKind::Items | JobKind::Retract | JobKind::Purge)
}

/// One notification as a finished stanza:
/// `<message from to type id>{payload}[SHIM headers]</message>`.
pub fn message(
    service: &str,
    to: &str,
    headline: bool,
    id: &str,
    payload: &str,
    headers: Headers<'_>,
) -> String {
    let kind = if headline { "headline" } else { "normal" };
    let mut m = String::with_capacity(payload.len() + 160);
    m.push_str("<message from='");
    m.push_str(&escape(service));
    m.push_str("' to='");
    m.push_str(&escape(to));
    m.push_str("' type='");
    m.push_str(kind);
    m.push_str("' id='");
    m.push_str(&escape(id));
    m.push_str("'>");
    m.push_str(payload);
    if headers.subid.is_some() || headers.collection.is_some() {
        m.push_str("<headers xmlns='");
        m.push_str(NS_SHIM);
        m.push_str("'>");
        for (name, value) in [("SubID", headers.subid), ("Collection", headers.collection)] {
            if let Some(value) = value {
                m.push_str("<header name='");
                m.push_str(name);
                m.push_str("'>");
                m.push_str(&escape(value));
                m.push_str("</header>");
            }
        }
        m.push_str("</headers>");
    }
    m.push_str("</message>");
    m
}

/// One notification for many recipients through the server's XEP-0033 multicast
/// service `multicast`: every recipient a `bcc` address, which the service removes
/// before delivery, so each gets what [`message`] would send it with `to` its own JID
/// (the `id` is the group's, [`group_id`]). The headers are the same for all of them: a
/// `Collection` header, never a SubID (which names one subscription).
pub fn multicast_message(
    service: &str,
    multicast: &str,
    headline: bool,
    id: &str,
    payload: &str,
    headers: Headers<'_>,
    recipients: &[&str],
) -> String {
    debug_assert!(headers.subid.is_none(), "a SubID never goes to a group");
    let mut m = message(service, multicast, headline, id, payload, headers);
    m.truncate(m.len() - "</message>".len());
    m.reserve(recipients.iter().map(|r| r.len() + 32).sum::<usize>() + 80);
    m.push_str("<addresses xmlns='");
    m.push_str(NS_ADDRESS);
    m.push_str("'>");
    for to in recipients {
        m.push_str("<address type='bcc' jid='");
        m.push_str(&escape(to));
        m.push_str("'/>");
    }
    m.push_str("</addresses></message>");
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::SubscribeOptions;

    fn sub(jid: &str, options: SubscribeOptions) -> Subscriber {
        Subscriber {
            pk: 7,
            jid: jid.into(),
            bare_jid: jid.split('/').next().unwrap_or(jid).into(),
            subid: "sub-7".into(),
            options,
            shares_bare_jid: false,
            via: None,
        }
    }

    fn resource(jid: &str, show: ShowValue) -> Resource {
        Resource {
            jid: jid.into(),
            bare_jid: jid.split('/').next().unwrap_or(jid).into(),
            show,
        }
    }

    fn only(shows: &[ShowValue]) -> SubscribeOptions {
        SubscribeOptions {
            deliver: true,
            show_values: shows.iter().copied().collect(),
            ..SubscribeOptions::default()
        }
    }

    #[test]
    fn without_presence_the_subscribed_jid_gets_it_as_is() {
        let s = sub("juliet@capulet.lit", SubscribeOptions::default());
        assert_eq!(
            recipients(&s, JobKind::Items, None),
            vec!["juliet@capulet.lit"]
        );
        let full = sub("juliet@capulet.lit/balcony", SubscribeOptions::default());
        assert_eq!(
            recipients(&full, JobKind::Items, None),
            vec!["juliet@capulet.lit/balcony"]
        );
    }

    #[test]
    fn paused_subscription_misses_items_but_hears_of_node_events() {
        let paused = SubscribeOptions {
            deliver: false,
            ..SubscribeOptions::default()
        };
        let s = sub("juliet@capulet.lit", paused);
        assert!(recipients(&s, JobKind::Items, None).is_empty());
        assert!(recipients(&s, JobKind::Retract, None).is_empty());
        assert_eq!(recipients(&s, JobKind::Delete, None).len(), 1);
        assert_eq!(recipients(&s, JobKind::Purge, None).len(), 1);
    }

    #[test]
    fn offline_subscriber_of_a_presence_node_gets_nothing() {
        let s = sub("juliet@capulet.lit", SubscribeOptions::default());
        assert!(recipients(&s, JobKind::Items, Some(&[])).is_empty());
    }

    #[test]
    fn bare_subscription_reaches_each_resource_whose_show_is_wanted() {
        let s = sub(
            "juliet@capulet.lit",
            only(&[ShowValue::Online, ShowValue::Chat]),
        );
        let online = [
            resource("juliet@capulet.lit/balcony", ShowValue::Online),
            resource("juliet@capulet.lit/chamber", ShowValue::Dnd),
            resource("juliet@capulet.lit/garden", ShowValue::Chat),
            resource("romeo@montague.lit/orchard", ShowValue::Online),
        ];
        assert_eq!(
            recipients(&s, JobKind::Items, Some(&online)),
            vec!["juliet@capulet.lit/balcony", "juliet@capulet.lit/garden"]
        );
    }

    #[test]
    fn full_jid_subscription_reaches_only_that_resource() {
        let s = sub("juliet@capulet.lit/balcony", SubscribeOptions::default());
        let chamber = [resource("juliet@capulet.lit/chamber", ShowValue::Online)];
        assert!(recipients(&s, JobKind::Items, Some(&chamber)).is_empty());
        let both = [
            resource("juliet@capulet.lit/chamber", ShowValue::Online),
            resource("juliet@capulet.lit/balcony", ShowValue::Away),
        ];
        assert_eq!(
            recipients(&s, JobKind::Items, Some(&both)),
            vec!["juliet@capulet.lit/balcony"]
        );
    }

    #[test]
    fn message_wraps_the_payload_and_escapes_addresses() {
        let m = message(
            "pubsub.shakespeare.lit",
            "o'brien@denmark.lit",
            true,
            &notification_id(12, 34, Headers::default()),
            "<event xmlns='http://jabber.org/protocol/pubsub#event'/>",
            Headers::default(),
        );
        assert_eq!(
            m,
            "<message from='pubsub.shakespeare.lit' to='o&apos;brien@denmark.lit' type='headline' id='ps-12'>\
             <event xmlns='http://jabber.org/protocol/pubsub#event'/></message>"
        );
        let parsed: minidom::Element = format!(
            "<wrap xmlns='jabber:component:accept'>{}</wrap>",
            message(
                "ps",
                "a@b",
                false,
                "ps-1",
                "<x xmlns='y'/>",
                Headers {
                    subid: Some("s&1"),
                    collection: None
                }
            )
        )
        .parse()
        .expect("well-formed");
        let msg = parsed.children().next().expect("message");
        assert_eq!(msg.attr("type"), Some("normal"));
        let header = msg
            .get_child("headers", NS_SHIM)
            .and_then(|h| h.get_child("header", NS_SHIM))
            .expect("SubID header");
        assert_eq!(header.attr("name"), Some("SubID"));
        assert_eq!(header.text(), "s&1");
    }

    #[test]
    fn a_notification_through_a_collection_names_it_in_a_shim_header() {
        let parsed: minidom::Element = format!(
            "<wrap xmlns='jabber:component:accept'>{}</wrap>",
            message(
                "ps",
                "a@b",
                true,
                "ps-1-2",
                "<x xmlns='y'/>",
                Headers {
                    subid: None,
                    collection: Some("blogs")
                }
            )
        )
        .parse()
        .expect("well-formed");
        let msg = parsed.children().next().expect("message");
        let headers: Vec<(String, String)> = msg
            .get_child("headers", NS_SHIM)
            .expect("headers")
            .children()
            .map(|h| (h.attr("name").unwrap_or("").to_owned(), h.text()))
            .collect();
        assert_eq!(headers, [("Collection".to_owned(), "blogs".to_owned())]);
    }

    #[test]
    fn a_multicast_message_carries_the_payload_once_and_every_recipient_as_bcc() {
        let m = multicast_message(
            "pubsub.shakespeare.lit",
            "multicast.shakespeare.lit",
            true,
            &group_id(12, None),
            "<event xmlns='http://jabber.org/protocol/pubsub#event'/>",
            Headers::default(),
            &["juliet@shakespeare.lit", "o'brien@denmark.lit/r"],
        );
        let parsed: minidom::Element = format!("<wrap xmlns='jabber:component:accept'>{m}</wrap>")
            .parse()
            .expect("well-formed");
        let msg = parsed.children().next().expect("message");
        assert_eq!(msg.attr("to"), Some("multicast.shakespeare.lit"));
        assert_eq!(msg.attr("id"), Some("ps-12"));
        assert_eq!(msg.children().filter(|c| c.name() == "event").count(), 1);
        let addresses: Vec<(Option<&str>, Option<&str>)> = msg
            .get_child("addresses", NS_ADDRESS)
            .expect("addresses")
            .children()
            .map(|a| (a.attr("type"), a.attr("jid")))
            .collect();
        assert_eq!(
            addresses,
            vec![
                (Some("bcc"), Some("juliet@shakespeare.lit")),
                (Some("bcc"), Some("o'brien@denmark.lit/r")),
            ]
        );
        assert!(msg.get_child("headers", NS_SHIM).is_none());
    }

    #[test]
    fn a_group_through_a_collection_shares_its_header_under_an_id_of_its_own() {
        let id = group_id(12, Some("blogs"));
        assert_ne!(id, group_id(12, None));
        assert_ne!(id, group_id(12, Some("news")));
        let m = multicast_message(
            "ps",
            "multicast.example.org",
            true,
            &id,
            "<x xmlns='y'/>",
            Headers {
                subid: None,
                collection: Some("blogs"),
            },
            &["a@b", "c@d"],
        );
        let parsed: minidom::Element = format!("<wrap xmlns='jabber:component:accept'>{m}</wrap>")
            .parse()
            .expect("well-formed");
        let msg = parsed.children().next().expect("message");
        assert_eq!(msg.attr("id"), Some("ps-12-via-blogs"));
        let header = msg
            .get_child("headers", NS_SHIM)
            .and_then(|h| h.get_child("header", NS_SHIM))
            .expect("Collection header");
        assert_eq!(header.attr("name"), Some("Collection"));
        assert_eq!(header.text(), "blogs");
        assert_eq!(
            msg.get_child("addresses", NS_ADDRESS)
                .map(|a| a.children().count()),
            Some(2)
        );
    }

    #[test]
    fn a_copy_has_its_groups_id_on_either_path_unless_it_names_a_subscription() {
        let plain = Headers::default();
        let via = Headers {
            subid: None,
            collection: Some("blogs"),
        };
        assert_eq!(notification_id(7, 3, plain), group_id(7, None));
        assert_eq!(notification_id(7, 3, plain), notification_id(7, 4, plain));
        assert_eq!(notification_id(7, 3, via), group_id(7, Some("blogs")));
        let one = Headers {
            subid: Some("a"),
            collection: None,
        };
        let other = Headers {
            subid: Some("b"),
            collection: Some("blogs"),
        };
        assert_eq!(notification_id(7, 3, one), "ps-7-3");
        assert_ne!(notification_id(7, 3, one), notification_id(7, 4, one));
        assert_ne!(notification_id(7, 3, one), group_id(7, None));
        assert_ne!(notification_id(7, 4, other), group_id(7, Some("blogs")));
    }
}
