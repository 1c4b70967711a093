//! Classifying a stanza read from the server, leniently: the connection hands over any
//! well-formed element, and anything that is not a request pubsubd can answer is sorted
//! out here, before a handler sees it.

use minidom::Element;
use xmpp_parsers::jid::Jid;

/// An IQ request (`get` or `set`) with exactly one payload element.
#[derive(Debug, Clone)]
pub struct IqRequest {
    pub from: Jid,
    pub to: Jid,
    pub id: String,
    pub kind: IqKind,
    pub payload: Element,
}

/// The request type of an IQ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IqKind {
    Get,
    Set,
}

/// What a stanza read from the server is.
#[derive(Debug)]
pub enum Incoming {
    /// A request to answer.
    Iq(IqRequest),
    /// A request that is malformed but answerable: reply with `bad-request`.
    BadIq {
        from: Jid,
        to: Jid,
        id: String,
        reason: &'static str,
    },
    /// An IQ result or error addressed to us (answers to our own requests).
    IqResponse {
        from: Jid,
        id: String,
        element: Element,
    },
    /// A presence stanza.
    Presence {
        from: Jid,
        to: Jid,
        element: Element,
    },
    /// A message stanza.
    Message {
        from: Jid,
        to: Jid,
        element: Element,
    },
    /// Something that cannot be answered (no sender, no id, unknown element): logged
    /// and dropped.
    Unanswerable { reason: String },
}

/// Sorts a stanza into [`Incoming`].
pub fn classify(el: Element) -> Incoming {
    let (from, to) = match (parse_jid(el.attr("from")), parse_jid(el.attr("to"))) {
        (Some(f), Some(t)) => (f, t),
        _ => {
            return Incoming::Unanswerable {
                reason: format!("<{}/> without valid from/to", el.name()),
            }
        }
    };
    match el.name() {
        "iq" => classify_iq(el, from, to),
        "presence" => Incoming::Presence {
            from,
            to,
            element: el,
        },
        "message" => Incoming::Message {
            from,
            to,
            element: el,
        },
        other => Incoming::Unanswerable {
            reason: format!("unknown top-level element <{other}/>"),
        },
    }
}

fn classify_iq(el: Element, from: Jid, to: Jid) -> Incoming {
    let Some(id) = el.attr("id").map(str::to_string) else {
        return Incoming::Unanswerable {
            reason: "iq without id".into(),
        };
    };
    let kind = match el.attr("type") {
        Some("get") => IqKind::Get,
        Some("set") => IqKind::Set,
        Some("result") | Some("error") => {
            return Incoming::IqResponse {
                from,
                id,
                element: el,
            }
        }
        _ => {
            return Incoming::BadIq {
                from,
                to,
                id,
                reason: "iq type must be get, set, result or error",
            }
        }
    };
    let mut children = el.children();
    let payload = match (children.next(), children.next()) {
        (Some(p), None) => p.clone(),
        (None, _) => {
            return Incoming::BadIq {
                from,
                to,
                id,
                reason: "iq request without payload",
            }
        }
        (Some(_), Some(_)) => {
            return Incoming::BadIq {
                from,
                to,
                id,
                reason: "iq request with more than one payload",
            }
        }
    };
    Incoming::Iq(IqRequest {
        from,
        to,
        id,
        kind,
        payload,
    })
}

fn parse_jid(s: Option<&str>) -> Option<Jid> {
    s.and_then(|s| s.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn el(xml: &str) -> Element {
        xml.parse().expect("test xml")
    }

    #[test]
    fn iq_with_two_payloads_is_a_bad_request() {
        let e = el("<iq xmlns='jabber:component:accept' type='get' id='1' from='a@b/c' to='ps.b'><x xmlns='y'/><z xmlns='y'/></iq>");
        assert!(matches!(classify(e), Incoming::BadIq { .. }));
    }

    #[test]
    fn iq_without_id_cannot_be_answered() {
        let e = el("<iq xmlns='jabber:component:accept' type='get' from='a@b/c' to='ps.b'><x xmlns='y'/></iq>");
        assert!(matches!(classify(e), Incoming::Unanswerable { .. }));
    }

    #[test]
    fn well_formed_get_is_a_request() {
        let e = el("<iq xmlns='jabber:component:accept' type='get' id='7' from='a@b/c' to='ps.b'><ping xmlns='urn:xmpp:ping'/></iq>");
        match classify(e) {
            Incoming::Iq(r) => {
                assert_eq!(r.id, "7");
                assert_eq!(r.payload.name(), "ping");
            }
            other => panic!("{other:?}"),
        }
    }
}
