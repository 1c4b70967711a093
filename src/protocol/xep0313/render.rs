//! Archive answers built with xmpp-parsers' types: the result `<message/>` per item
//! (`mam::Result_` around a `forwarded` notification with its `delay`), the `<fin/>`
//! with the XEP-0059 set, the query form and the metadata.

use minidom::Element;
use xmpp_parsers::data_forms::{DataForm, DataFormType, Field, FieldType};
use xmpp_parsers::data_forms_validate::{Datatype, Method, Validate};
use xmpp_parsers::date::DateTime;
use xmpp_parsers::delay::Delay;
use xmpp_parsers::jid::Jid;
use xmpp_parsers::mam::{End, Fin, MetadataResponse, Start};
use xmpp_parsers::message::{Message, MessageType};
use xmpp_parsers::ns;
use xmpp_parsers::rsm::{First, SetResult};

use crate::domain::archive::Page;
use crate::domain::NotificationType;
use crate::protocol::xep0060::render::xml_name;
use crate::pubsub::archive::ArchiveEnds;
use crate::pubsub::notify;
use crate::store::{NodeRecord, SeqItem};
use crate::xmpp::render::to_xml;

/// One result message of a query: the item's notification as subscribers get it,
/// forwarded with the time it was published (XEP-0313 §5, XEP-0442 §3).
///
/// The `<result/>` and `<forwarded/>` are built here rather than with xmpp-parsers'
/// `Result_` and `Forwarded`: built with its `component` feature, xmpp-parsers writes a
/// `Message` in `jabber:component:accept`, right for the outer stanza on the component
/// stream but not for the forwarded one, which XEP-0297 puts in `jabber:client`.
pub fn result_message(
    service: &Jid,
    to: &Jid,
    id: String,
    queryid: Option<&str>,
    node: &NodeRecord,
    item: &SeqItem,
) -> String {
    let kind = match node.config.notification_type {
        NotificationType::Headline => "headline",
        NotificationType::Normal => "normal",
    };
    let notification = Element::builder("message", JABBER_CLIENT)
        .attr(xml_name("type"), kind)
        .append(notify::archived(node, &item.item))
        .build();
    let delay = Delay {
        from: None,
        stamp: DateTime(item.item.published_at.fixed_offset()),
        data: None,
    };
    let forwarded = Element::builder("forwarded", ns::FORWARD)
        .append(Element::from(delay))
        .append(notification)
        .build();
    let mut result = Element::builder("result", ns::MAM).attr(xml_name("id"), item.seq.to_string());
    if let Some(q) = queryid {
        result = result.attr(xml_name("queryid"), q);
    }
    let mut message =
        Message::new(Some(to.clone())).with_payloads(vec![result.append(forwarded).build()]);
    message.type_ = MessageType::Normal;
    message.from = Some(service.clone());
    message.id = Some(xmpp_parsers::message::Id(id));
    write(message)
}

/// `message` as text, written straight from the `Message`: converting it to an
/// `Element` first copies the whole result (payload included) once more through xso's
/// events, which was a tenth of pubsubd's time on an archive page of 100.
fn write(message: Message) -> String {
    match xso::to_vec(&message).map(String::from_utf8) {
        Ok(Ok(text)) => text,
        _ => to_xml(&Element::from(message)),
    }
}

/// The namespace of a forwarded stanza (XEP-0297).
const JABBER_CLIENT: &str = "jabber:client";

/// The `<fin/>` that ends a query: `complete` when no more items match in the
/// direction of paging; `<first/>` and `<last/>` in archive order, without `index` or
/// `count` (counting a large archive costs a scan; XEP-0313 makes both optional).
pub fn fin(page: &Page<SeqItem>) -> Element {
    Element::from(Fin {
        complete: page.complete,
        set: SetResult {
            first: page.items.first().map(|i| First {
                index: None,
                item: i.seq.to_string(),
            }),
            last: page.items.last().map(|i| i.seq.to_string()),
            count: None,
        },
    })
}

/// The fields a query may use (XEP-0313 §4.1.5): the mandatory three and the
/// `#extended` ones, `ids` as an open list (XEP-0122).
pub fn form() -> Element {
    let ids = Field {
        validate: Some(Validate {
            datatype: Some(Datatype::String),
            method: Some(Method::Open),
            list_range: None,
        }),
        ..Field::new("ids", FieldType::ListMulti)
    };
    let form = DataForm::new(
        DataFormType::Form,
        ns::MAM,
        vec![
            Field::new("with", FieldType::JidSingle),
            Field::new("start", FieldType::TextSingle),
            Field::new("end", FieldType::TextSingle),
            Field::new("before-id", FieldType::TextSingle),
            Field::new("after-id", FieldType::TextSingle),
            ids,
        ],
    );
    Element::builder("query", ns::MAM)
        .append(Element::from(form))
        .build()
}

/// The first and last item of a node's archive (XEP-0313 §7); empty when it has none.
pub fn metadata(ends: &ArchiveEnds) -> Element {
    let stamp = |i: &SeqItem| DateTime(i.item.published_at.fixed_offset());
    Element::from(MetadataResponse {
        start: ends.ends.as_ref().map(|(first, _)| Start {
            id: first.seq.to_string(),
            timestamp: stamp(first),
        }),
        end: ends.ends.as_ref().map(|(_, last)| End {
            id: last.seq.to_string(),
            timestamp: stamp(last),
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ItemId, NodeConfig, NodeId};
    use crate::store::ItemRecord;
    use chrono::Utc;

    #[test]
    fn a_result_message_written_straight_reads_back_as_the_element_it_was() {
        let node = NodeRecord {
            pk: 1,
            name: NodeId::parse("news & views").expect("node"),
            config: NodeConfig::default(),
            creator: None,
            created_at: Utc::now(),
        };
        let item = SeqItem {
            seq: 42,
            item: ItemRecord {
                id: ItemId::parse("a'1").expect("id"),
                publisher: "alice@example.org/phone".into(),
                payload: Some(
                    "<entry xmlns='http://www.w3.org/2005/Atom' xml:lang='en'><title>1 &lt; 2</title></entry>"
                        .into(),
                ),
                published_at: Utc::now(),
            },
        };
        let service: Jid = "pubsub.example.org".parse().expect("jid");
        let to: Jid = "juliet@example.org/balcony".parse().expect("jid");
        let text = result_message(&service, &to, "q-42".into(), Some("f27"), &node, &item);
        assert!(text.starts_with("<message "), "{text}");
        let read: Element = text.parse().expect("well-formed");
        assert!(read.is("message", ns::COMPONENT_ACCEPT));
        assert_eq!(read.attr("id"), Some("q-42"));
        let result = read.get_child("result", ns::MAM).expect("result");
        assert_eq!(result.attr("id"), Some("42"));
        assert_eq!(result.attr("queryid"), Some("f27"));
        let forwarded = result
            .get_child("forwarded", ns::FORWARD)
            .expect("forwarded");
        assert!(forwarded.get_child("delay", ns::DELAY).is_some());
        let inner = forwarded
            .get_child("message", JABBER_CLIENT)
            .expect("the notification in jabber:client");
        let entry = inner
            .get_child("event", ns::PUBSUB_EVENT)
            .and_then(|e| e.get_child("items", ns::PUBSUB_EVENT))
            .and_then(|i| i.get_child("item", ns::PUBSUB_EVENT))
            .and_then(|i| i.get_child("entry", "http://www.w3.org/2005/Atom"))
            .expect("the payload");
        assert_eq!(
            entry
                .get_child("title", "http://www.w3.org/2005/Atom")
                .map(Element::text),
            Some("1 < 2".to_owned())
        );
        // The same tree as the element path gives, payloads and all.
        let message = Message::try_from(read.clone()).expect("a message");
        let via_element: Element = to_xml(&Element::from(message.clone()))
            .parse()
            .expect("well-formed");
        let straight: Element = write(message).parse().expect("well-formed");
        assert_eq!(straight, via_element);
        assert_eq!(straight, read);
    }
}
