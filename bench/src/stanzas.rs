//! The stanzas the load generator sends, written as XML text: stream headers,
//! login, XEP-0060 requests and the benchmark payloads with their markers.
//!
//! Owns the wire format of what we send and of the marker we find again in
//! what we receive. Everything is `jabber:client` (or the component stream);
//! xmpp-parsers is not used (see the crate's Cargo.toml).

use std::fmt::Write as _;

/// XEP-0060 namespaces.
pub const NS_PUBSUB: &str = "http://jabber.org/protocol/pubsub";

/// Starts every benchmark marker; followed by `seq:send_time_us:`.
pub const MARKER_PREFIX: &[u8] = b"pbench:";

/// Namespaces of the client stream.
const NS_CLIENT: &str = "jabber:client";

/// Escapes text for use in XML content or a quoted attribute value.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\'' => out.push_str("&apos;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

/// The client stream header.
pub fn client_header(domain: &str) -> String {
    format!(
        "<?xml version='1.0'?><stream:stream xmlns='{NS_CLIENT}' \
         xmlns:stream='http://etherx.jabber.org/streams' to='{}' version='1.0'>",
        escape(domain)
    )
}

/// The component stream header (XEP-0114).
pub fn component_header(jid: &str) -> String {
    format!(
        "<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' \
         xmlns:stream='http://etherx.jabber.org/streams' to='{}'>",
        escape(jid)
    )
}

/// XEP-0077 registration request.
pub fn register(username: &str, password: &str) -> String {
    format!(
        "<iq type='set' id='reg'><query xmlns='jabber:iq:register'><username>{}</username>\
         <password>{}</password></query></iq>",
        escape(username),
        escape(password)
    )
}

/// SASL PLAIN with the credentials already base64-encoded.
pub fn sasl_plain(encoded: &str) -> String {
    format!("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{encoded}</auth>")
}

/// Resource binding request.
pub fn bind(resource: &str) -> String {
    format!(
        "<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>\
         <resource>{}</resource></bind></iq>",
        escape(resource)
    )
}

/// Legacy session establishment.
pub const SESSION: &str =
    "<iq type='set' id='sess'><session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>";

/// Initial presence (needed to get messages addressed to the bare JID).
pub const PRESENCE: &str = "<presence/>";

/// The options of a node the benchmark creates.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// `pubsub#max_items`.
    pub max_items: u32,
    /// `pubsub#collection`: the collection the node joins at creation (XEP-0248).
    pub collection: Option<String>,
}

/// `from` attribute text, empty for client streams (the server stamps it).
fn from_attr(from: Option<&str>) -> String {
    from.map(|f| format!(" from='{}'", escape(f)))
        .unwrap_or_default()
}

/// Create `node` on `service` with an open access model and persistent
/// items.
pub fn create_node(
    id: &str,
    from: Option<&str>,
    service: &str,
    node: &str,
    options: &NodeOptions,
) -> String {
    let collection = options
        .collection
        .as_deref()
        .map(|c| {
            format!(
                "<field var='pubsub#collection'><value>{}</value></field>",
                escape(c)
            )
        })
        .unwrap_or_default();
    format!(
        "<iq type='set' id='{id}' to='{service}'{from}><pubsub xmlns='{NS_PUBSUB}'>\
         <create node='{node}'/><configure><x xmlns='jabber:x:data' type='submit'>\
         <field var='FORM_TYPE' type='hidden'><value>{NS_PUBSUB}#node_config</value></field>\
         <field var='pubsub#access_model'><value>open</value></field>\
         <field var='pubsub#persist_items'><value>1</value></field>\
         <field var='pubsub#deliver_payloads'><value>1</value></field>\
         <field var='pubsub#max_items'><value>{max}</value></field>{collection}\
         </x></configure></pubsub></iq>",
        service = escape(service),
        from = from_attr(from),
        node = escape(node),
        max = options.max_items,
    )
}

/// Create the collection node `node` (XEP-0248).
pub fn create_collection(id: &str, service: &str, node: &str) -> String {
    format!(
        "<iq type='set' id='{id}' to='{}'><pubsub xmlns='{NS_PUBSUB}'>\
         <create node='{}'/><configure><x xmlns='jabber:x:data' type='submit'>\
         <field var='FORM_TYPE' type='hidden'><value>{NS_PUBSUB}#node_config</value></field>\
         <field var='pubsub#node_type'><value>collection</value></field>\
         </x></configure></pubsub></iq>",
        escape(service),
        escape(node)
    )
}

/// Subscribe `jid` to `node`.
pub fn subscribe(id: &str, from: Option<&str>, service: &str, node: &str, jid: &str) -> String {
    format!(
        "<iq type='set' id='{id}' to='{}'{}><pubsub xmlns='{NS_PUBSUB}'>\
         <subscribe node='{}' jid='{}'/></pubsub></iq>",
        escape(service),
        from_attr(from),
        escape(node),
        escape(jid)
    )
}

/// Retrieve the newest `max` items of `node`.
pub fn items(id: &str, service: &str, node: &str, max: u32) -> String {
    format!(
        "<iq type='get' id='{id}' to='{}'><pubsub xmlns='{NS_PUBSUB}'>\
         <items node='{}' max_items='{max}'/></pubsub></iq>",
        escape(service),
        escape(node)
    )
}

/// One XEP-0313 page of `node`'s archive: `max` items after archive id `after`.
pub fn archive_page(id: &str, service: &str, node: &str, after: i64, max: u32) -> String {
    format!(
        "<iq type='set' id='{id}' to='{}'><query xmlns='urn:xmpp:mam:2' queryid='{id}' node='{}'>\
         <set xmlns='http://jabber.org/protocol/rsm'><max>{max}</max><after>{after}</after></set>\
         </query></iq>",
        escape(service),
        escape(node)
    )
}

/// The marker embedded in every benchmark payload: sequence number and send
/// time (µs since the run's clock started), found again by the receivers.
pub fn marker(seq: u64, sent_us: u64) -> String {
    format!("pbench:{seq}:{sent_us}:")
}

/// An Atom entry of about `size` bytes carrying the marker.
fn atom_entry(seq: u64, sent_us: u64, size: usize) -> String {
    let mut entry = format!(
        "<entry xmlns='http://www.w3.org/2005/Atom'><title>pubsubd-load item {seq}</title>\
         <id>{marker}</id><updated>2024-01-01T00:00:00Z</updated>\
         <author><name>pubsubd-load</name></author><content type='text'>",
        marker = marker(seq, sent_us)
    );
    pad(&mut entry, size.saturating_sub("</content></entry>".len()));
    entry.push_str("</content></entry>");
    entry
}

/// Publish item `i{seq}` to `node`: an Atom entry of about `size` bytes
/// carrying the marker.
pub fn publish(id: &str, service: &str, node: &str, seq: u64, sent_us: u64, size: usize) -> String {
    format!(
        "<iq type='set' id='{id}' to='{}'><pubsub xmlns='{NS_PUBSUB}'><publish node='{}'>\
         <item id='i{seq}'>{}</item></publish></pubsub></iq>",
        escape(service),
        escape(node),
        atom_entry(seq, sent_us, size)
    )
}

/// The notification a subscriber of node `n` gets for item `i{seq}` (the
/// item [`publish`] makes), written by a component: the same shape and size
/// as pubsubd's.
pub fn routed_event(from: &str, to: &str, seq: u64, sent_us: u64, size: usize) -> String {
    format!(
        "<message from='{from}' to='{to}' type='headline' id='ps-{seq}'>\
         <event xmlns='{NS_PUBSUB}#event'><items node='n'><item id='i{seq}'>{}</item>\
         </items></event></message>",
        atom_entry(seq, sent_us, size)
    )
}

/// A headline from a component to a client whose body (about `size` bytes)
/// carries the marker.
pub fn routed_message(from: &str, to: &str, seq: u64, sent_us: u64, size: usize) -> String {
    let mut body = marker(seq, sent_us);
    pad(&mut body, size);
    format!("<message from='{from}' to='{to}' type='headline'><body>{body}</body></message>")
}

/// Appends filler text until `text` is `len` bytes long.
fn pad(text: &mut String, len: usize) {
    const FILLER: &str = "lorem ipsum dolor sit amet consectetur adipiscing elit ";
    while text.len() < len {
        let missing = len - text.len();
        let _ = write!(text, "{}", &FILLER[..missing.min(FILLER.len())]);
    }
}

/// Finds the marker in a received element: `(seq, sent_us)`.
pub fn find_marker(element: &[u8]) -> Option<(u64, u64)> {
    // Built once: building a searcher per notification showed in profiles.
    static FINDER: std::sync::OnceLock<memchr::memmem::Finder<'static>> =
        std::sync::OnceLock::new();
    let at = FINDER
        .get_or_init(|| memchr::memmem::Finder::new(MARKER_PREFIX))
        .find(element)?;
    let rest = &element[at + MARKER_PREFIX.len()..];
    let (seq, rest) = crate::scan::leading_u64(rest)?;
    let (sent_us, _) = crate::scan::leading_u64(rest.strip_prefix(b":")?)?;
    Some((seq, sent_us))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_payload_has_the_requested_size_and_marker() {
        let iq = publish("p1", "pubsub.localhost", "n", 42, 123_456, 1500);
        let start = iq.find("<entry").unwrap();
        let end = iq.find("</entry>").unwrap() + "</entry>".len();
        assert!((1500..1510).contains(&(end - start)), "{}", end - start);
        assert_eq!(find_marker(iq.as_bytes()), Some((42, 123_456)));
    }

    #[test]
    fn routed_message_carries_the_marker() {
        let m = routed_message("c.localhost", "u@localhost/r", 7, 9, 200);
        assert_eq!(find_marker(m.as_bytes()), Some((7, 9)));
        assert!(m.len() > 200);
    }

    #[test]
    fn routed_event_is_a_notification_carrying_the_marker() {
        let m = routed_event("c.localhost", "u@localhost/r", 7, 9, 1500);
        assert_eq!(find_marker(m.as_bytes()), Some((7, 9)));
        assert!(m.contains(
            "<event xmlns='http://jabber.org/protocol/pubsub#event'><items node='n'><item id='i7'>\
             <entry xmlns='http://www.w3.org/2005/Atom'>"
        ));
        assert!(m.ends_with("</entry></item></items></event></message>"));
        assert!(m.len() > 1500 && m.len() < 1800);
    }

    #[test]
    fn escapes_markup() {
        assert_eq!(escape("a<b>&'\""), "a&lt;b&gt;&amp;&apos;&quot;");
    }
}
