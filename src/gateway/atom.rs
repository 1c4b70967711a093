//! A node's items as an Atom 1.0 feed (RFC 4287), for feed readers.
//!
//! Items whose payload is an Atom entry are included as they are. Any other payload is
//! wrapped in an entry of its own: id `xmpp:<service>?;node=<node>;item=<id>`, the item
//! id as title, the publish time as `updated`, the publisher as author, and the payload
//! as `<content type='application/xml'>` (or `application/json` for XEP-0335 JSON).

use chrono::{DateTime, SecondsFormat, Utc};
use minidom::rxml::NcName;
use minidom::Element;
use xmpp_parsers::jid::BareJid;

use super::payload::{json_payload, NS_JSON};
use crate::store::{ItemRecord, NodeRecord};

/// The Atom namespace.
pub const NS_ATOM: &str = "http://www.w3.org/2005/Atom";

/// An attribute name; only called with the literal names of this module.
fn attr(n: &'static str) -> NcName {
    NcName::try_from(n).expect("attribute names here are valid XML names")
}

fn text(tag: &str, value: &str) -> Element {
    Element::builder(tag, NS_ATOM)
        .append(value.to_owned())
        .build()
}

fn time(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// An XMPP URI component (RFC 5122): percent-encode everything but unreserved bytes.
fn uri_part(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The percent-encoded form of a node or item id for use in a URL path segment.
pub fn path_segment(s: &str) -> String {
    uri_part(s)
}

/// The feed document for `items` (newest first) of `node`.
pub fn feed(service: &BareJid, node: &NodeRecord, items: &[ItemRecord]) -> String {
    let name = node.name.as_str();
    let updated = items
        .iter()
        .map(|i| i.published_at)
        .max()
        .unwrap_or(node.created_at);
    let mut feed = Element::builder("feed", NS_ATOM)
        .append(text(
            "id",
            &format!("xmpp:{service}?;node={}", uri_part(name)),
        ))
        .append(text("title", node.config.title.as_deref().unwrap_or(name)))
        .append(text("updated", &time(&updated)))
        .append(
            Element::builder("link", NS_ATOM)
                .attr(attr("rel"), "self")
                .attr(
                    attr("href"),
                    format!("/nodes/{}/feed.atom", path_segment(name)),
                )
                .build(),
        )
        .append(
            Element::builder("link", NS_ATOM)
                .attr(attr("rel"), "alternate")
                .attr(
                    attr("href"),
                    format!("xmpp:{service}?;node={}", uri_part(name)),
                )
                .build(),
        )
        .build();
    if let Some(d) = &node.config.description {
        feed.append_child(text("subtitle", d));
    }
    for item in items {
        feed.append_child(entry(service, name, item));
    }
    format!(
        "<?xml version='1.0' encoding='utf-8'?>\n{}",
        String::from(&feed)
    )
}

fn entry(service: &BareJid, node: &str, item: &ItemRecord) -> Element {
    let parsed = item
        .payload
        .as_deref()
        .and_then(|p| crate::xml::parse(p).ok());
    if let Some(el) = &parsed {
        if el.is("entry", NS_ATOM) {
            return el.clone();
        }
    }
    let publisher = item
        .publisher
        .parse::<xmpp_parsers::jid::Jid>()
        .map(|j| j.to_bare().to_string())
        .unwrap_or_else(|_| item.publisher.clone());
    let mut entry = Element::builder("entry", NS_ATOM)
        .append(text(
            "id",
            &format!(
                "xmpp:{service}?;node={};item={}",
                uri_part(node),
                uri_part(item.id.as_str())
            ),
        ))
        .append(text("title", item.id.as_str()))
        .append(text("updated", &time(&item.published_at)))
        .append(
            Element::builder("author", NS_ATOM)
                .append(text("name", &publisher))
                .build(),
        )
        .build();
    let content = match parsed {
        Some(el) if el.is("json", NS_JSON) => {
            let body = item
                .payload
                .as_deref()
                .and_then(json_payload)
                .map(|v| v.to_string())
                .unwrap_or_default();
            Some(
                Element::builder("content", NS_ATOM)
                    .attr(attr("type"), "application/json")
                    .append(body)
                    .build(),
            )
        }
        Some(el) => Some(
            Element::builder("content", NS_ATOM)
                .attr(attr("type"), "application/xml")
                .append(el)
                .build(),
        ),
        None => None,
    };
    if let Some(c) = content {
        entry.append_child(c);
    }
    entry
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ItemId, NodeConfig, NodeId};

    fn item(id: &str, payload: &str) -> ItemRecord {
        ItemRecord {
            id: ItemId::parse(id).unwrap(),
            publisher: "alice@example.org/phone".into(),
            payload: Some(payload.into()),
            published_at: Utc::now(),
        }
    }

    #[test]
    fn atom_entries_pass_through_and_other_payloads_are_wrapped() {
        let node = NodeRecord {
            pk: 1,
            name: NodeId::parse("news & views").unwrap(),
            config: NodeConfig::default(),
            creator: None,
            created_at: Utc::now(),
        };
        let service = BareJid::new("pubsub.example.org").unwrap();
        let doc = feed(
            &service,
            &node,
            &[
                item(
                    "a",
                    "<entry xmlns='http://www.w3.org/2005/Atom'><id>urn:a</id></entry>",
                ),
                item("b", "<geoloc xmlns='http://jabber.org/protocol/geoloc'/>"),
                item("c", "<json xmlns='urn:xmpp:json:0'>{\"x\":1}</json>"),
            ],
        );
        let root: Element = doc
            .split_once('\n')
            .map(|(_, r)| r)
            .unwrap()
            .parse()
            .unwrap();
        assert!(root.is("feed", NS_ATOM));
        let entries: Vec<&Element> = root.children().filter(|c| c.is("entry", NS_ATOM)).collect();
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[0].get_child("id", NS_ATOM).unwrap().text(), "urn:a");
        assert!(entries[1]
            .get_child("id", NS_ATOM)
            .unwrap()
            .text()
            .ends_with(";node=news%20%26%20views;item=b"));
        let content = entries[2].get_child("content", NS_ATOM).unwrap();
        assert_eq!(content.attr("type"), Some("application/json"));
    }
}
