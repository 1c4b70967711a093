//! Building and inspecting stanzas as plain `minidom::Element`s in the
//! `jabber:client` namespace.
//!
//! xmpp-parsers' typed stanzas are off limits here: the workspace enables
//! tokio-xmpp's `component` feature, which makes them default to
//! `jabber:component:accept` for the whole build.

use minidom::rxml::NcName;
use minidom::Element;

/// The client stream namespace (RFC 6120).
pub const NS_CLIENT: &str = "jabber:client";
/// The stream namespace (`stream:` prefix).
pub const NS_STREAMS: &str = "http://etherx.jabber.org/streams";
/// SASL negotiation.
pub const NS_SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
/// Resource binding.
pub const NS_BIND: &str = "urn:ietf:params:xml:ns:xmpp-bind";
/// Legacy session establishment (RFC 3921).
pub const NS_SESSION: &str = "urn:ietf:params:xml:ns:xmpp-session";
/// Stanza error conditions.
pub const NS_STANZAS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";
/// Stream error conditions.
pub const NS_STREAM_ERRORS: &str = "urn:ietf:params:xml:ns:xmpp-streams";
/// XEP-0077 in-band registration.
pub const NS_REGISTER: &str = "jabber:iq:register";
/// XEP-0199 ping.
pub const NS_PING: &str = "urn:xmpp:ping";

/// Parses a stanza written as XML text. Elements without an `xmlns` get
/// `jabber:client`, so tests can write `<iq type='get' ...>` literally.
///
/// # Panics
/// If `xml` is not well-formed: the XML is test code, not network input.
pub fn parse(xml: &str) -> Element {
    match stanza_reader::parse_stanza(xml, NS_CLIENT, BUILD_LIMITS) {
        Ok(stanza_reader::Item::Stanza(el)) => el,
        Ok(other) => panic!("not a buildable stanza ({other:?}): {xml}"),
        Err(e) => panic!("invalid stanza XML ({e}): {xml}"),
    }
}

/// Limits for stanzas tests build and read: far past any server's, since tests build
/// hostile stanzas (deep, wide, huge) on purpose and must read whatever comes back.
pub(crate) const BUILD_LIMITS: stanza_reader::Limits = stanza_reader::Limits {
    max_stanza_bytes: 64 * 1024 * 1024,
    max_depth: 100_000,
    max_attributes: 1_000_000,
    max_namespace_declarations: 1_000_000,
    max_name_bytes: 1024 * 1024,
};

/// Sets (or replaces) an attribute without a namespace.
///
/// # Panics
/// If `name` is not a valid XML name; names are constants in test code.
pub fn set_attr(element: &mut Element, name: &str, value: &str) {
    let name =
        NcName::try_from(name).unwrap_or_else(|e| panic!("invalid attribute name {name:?}: {e}"));
    element.set_attr(minidom::rxml::Namespace::NONE, name, value);
}

/// `<iq type=kind to=to>` with `payload` inside; the client assigns the id.
pub fn iq(kind: &str, to: &str, payload: Element) -> Element {
    let mut iq = Element::builder("iq", NS_CLIENT).append(payload).build();
    set_attr(&mut iq, "type", kind);
    if !to.is_empty() {
        set_attr(&mut iq, "to", to);
    }
    iq
}

/// An XEP-0199 ping to `to`.
pub fn ping(to: &str) -> Element {
    iq("get", to, Element::builder("ping", NS_PING).build())
}

/// A `type='chat'` message with a body.
pub fn chat(to: &str, body: &str) -> Element {
    let mut message = Element::builder("message", NS_CLIENT)
        .append(Element::builder("body", NS_CLIENT).append(body).build())
        .build();
    set_attr(&mut message, "type", "chat");
    set_attr(&mut message, "to", to);
    message
}

/// Presence availability for [`presence`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Availability {
    /// Plain `<presence/>`.
    Available,
    /// `<presence type='unavailable'/>`.
    Unavailable,
}

/// A broadcast presence (no `to`).
pub fn presence(availability: Availability) -> Element {
    let mut presence = Element::builder("presence", NS_CLIENT).build();
    if availability == Availability::Unavailable {
        set_attr(&mut presence, "type", "unavailable");
    }
    presence
}

/// True for `<iq type='result'>`/`<iq type='error'>` answering `id`.
pub fn is_iq_response(element: &Element, id: &str) -> bool {
    element.name() == "iq"
        && element.attr("id") == Some(id)
        && matches!(element.attr("type"), Some("result" | "error"))
}

/// True for a stanza with `type='error'`.
pub fn is_error(element: &Element) -> bool {
    element.attr("type") == Some("error")
}

/// The defined condition of a stanza error (`item-not-found`, ...), if
/// `element` carries one.
pub fn error_condition(element: &Element) -> Option<String> {
    let error = element.children().find(|c| c.name() == "error")?;
    error
        .children()
        .find(|c| c.ns() == NS_STANZAS && c.name() != "text")
        .map(|c| c.name().to_string())
}

/// The text of the `<body/>` of a message, if any.
pub fn body(element: &Element) -> Option<String> {
    element
        .children()
        .find(|c| c.name() == "body")
        .map(Element::text)
}

/// Serialises an element to a string for assertions and error messages.
pub fn to_xml(element: &Element) -> String {
    String::from(element)
}
