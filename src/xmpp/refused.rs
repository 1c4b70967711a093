//! Requests the stream reader refused for crossing a per-stanza limit.
//!
//! The reader ([`stanza_reader`]) skips such a stanza and keeps its head: name, `from`,
//! `to`, `id`, `type`, and the name and namespace of its payload. A refused `iq` request
//! still has to be answered, in order with its sender's other requests, so the head goes
//! to the router like any stanza, carrying one [`MARKER`] child in place of its payload.
//! The protocol layer reads it back with [`RefusedRequest::of`] and answers with the
//! error the limit calls for.

use minidom::Element;
use stanza_reader::{Head, Refusal};
use xmpp_parsers::ns;

/// Namespace of the marker; nothing outside pubsubd uses it.
pub const MARKER_NS: &str = "urn:pubsubd:internal";
/// Name of the marker child.
pub const MARKER: &str = "refused";

/// What becomes of a stanza the reader refused: counted and logged, and for an `iq`
/// request the stanza to hand to the router so that it is answered (see [`marker`]).
/// Anything else over a limit (messages, presence, answers) is dropped.
pub fn hand_on(head: &Head, refusal: Refusal) -> Option<Element> {
    metrics::counter!(crate::metrics::STANZAS_REFUSED, "limit" => refusal.label()).increment(1);
    tracing::info!(
        from = head.attr("from").unwrap_or("unknown"),
        id = head.attr("id").unwrap_or(""),
        name = head.name,
        %refusal,
        "stanza over a limit refused"
    );
    let request = head.name == "iq" && matches!(head.attr("type"), Some("get" | "set"));
    request.then(|| marker(head, refusal))
}

/// The stanza to hand on for a refused `iq` get or set: its head with the marker as its
/// only child.
pub fn marker(head: &Head, refusal: Refusal) -> Element {
    let mut el = head.to_element(ns::COMPONENT);
    let mut m = Element::builder(MARKER, MARKER_NS)
        .attr(rxml_name("limit"), refusal.label())
        .attr(rxml_name("reason"), refusal.to_string());
    if let Some(p) = &head.payload {
        m = m.attr(rxml_name("payload"), p.name.as_str());
        if let Some(pns) = &p.ns {
            m = m.attr(rxml_name("payload-ns"), pns.as_str());
        }
        if let Some(child) = &p.first_child {
            m = m.attr(rxml_name("payload-child"), child.as_str());
        }
    }
    el.append_child(m.build());
    el
}

fn rxml_name(name: &'static str) -> minidom::rxml::NcName {
    minidom::rxml::NcName::try_from(name).expect("attribute names here are literal XML names")
}

/// A refused request, as the protocol layer sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedRequest {
    /// [`Refusal::label`] of the limit crossed.
    pub limit: String,
    /// What was wrong, for the error's text.
    pub reason: String,
    /// The payload's namespace, if it declared one before the limit was crossed.
    pub payload_ns: Option<String>,
    /// The payload's first child (`publish`, ...), if it was read.
    pub payload_child: Option<String>,
}

impl RefusedRequest {
    /// The refusal a request's payload stands for, if it is a marker.
    pub fn of(payload: &Element) -> Option<RefusedRequest> {
        if !payload.is(MARKER, MARKER_NS) {
            return None;
        }
        let attr = |name| payload.attr(name).map(str::to_string);
        Some(RefusedRequest {
            limit: attr("limit").unwrap_or_default(),
            reason: attr("reason").unwrap_or_default(),
            payload_ns: attr("payload-ns"),
            payload_child: attr("payload-child"),
        })
    }

    /// Whether the stanza was refused for its size.
    pub fn too_large(&self) -> bool {
        self.limit == Refusal::TooLarge { limit: 0 }.label()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stanza_reader::Payload;

    #[test]
    fn a_marker_carries_the_refusal_and_the_payload_back() {
        let head = Head {
            name: "iq".into(),
            attrs: vec![("id".into(), "p1".into()), ("type".into(), "set".into())],
            payload: Some(Payload {
                name: "pubsub".into(),
                ns: Some(ns::PUBSUB.into()),
                first_child: Some("publish".into()),
            }),
        };
        let el = marker(&head, Refusal::TooLarge { limit: 10 });
        assert_eq!(el.attr("id"), Some("p1"));
        let payload = el.children().next().expect("marker");
        let refused = RefusedRequest::of(payload).expect("a marker");
        assert!(refused.too_large());
        assert_eq!(refused.payload_ns.as_deref(), Some(ns::PUBSUB));
        assert_eq!(refused.payload_child.as_deref(), Some("publish"));
        assert_eq!(refused.reason, "stanza larger than 10 bytes");
        let plain = Element::builder("ping", ns::PING).build();
        assert_eq!(RefusedRequest::of(&plain), None);
    }
}
