//! Reads an XMPP stream one stanza at a time, with every limit checked per stanza.
//!
//! Whatever a server routes to a component or a client is read: a stanza over one of
//! the [`Limits`] is not an error of the stream. Once a stanza crosses a limit the
//! reader stops building it, reads on to its end without keeping anything, and reports
//! it as [`Item::Refused`] with the few attributes needed to answer it (`from`, `to`,
//! `id`, `type`). The stream then goes on with the next stanza. Memory per stanza is
//! bounded by [`Limits::max_stanza_bytes`] whatever the input.
//!
//! Only three things end a stream: the peer closing it, an I/O error, and XML that is
//! not well-formed (the parser cannot find the next stanza after it). The XML parser's
//! token limit is the stanza limit, so no single name, attribute value or text chunk of
//! a stanza within the limit can trip it.
//!
//! Both ends of pubsubd's tests use this reader: pubsubd's component stream and the test
//! harness's client, so the stanza that one writes is read by the other under the same
//! rules.

use std::collections::BTreeMap;
use std::fmt;

use minidom::tree_builder::TreeBuilder;
use minidom::Element;
use rxml::{AsyncRawReader, RawEvent, RawParser, WithOptions};
use std::io::Cursor;

use tokio::io::{AsyncBufRead, AsyncReadExt, Chain};

/// How much one stanza may carry. Each limit is checked as the stanza is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of one stanza, as received (entities not yet expanded).
    pub max_stanza_bytes: usize,
    /// Nesting depth, counting the stanza itself as 1.
    pub max_depth: usize,
    /// Attributes of one element, namespace declarations included.
    pub max_attributes: usize,
    /// Namespace declarations in one stanza, over all its elements.
    pub max_namespace_declarations: usize,
    /// Bytes of one element or attribute name.
    pub max_name_bytes: usize,
}

/// Default stanza size: four times the largest default of the servers pubsubd attaches
/// to (Prosody 0.12 and ejabberd 23.01 cap server-to-server stanzas at 512 KiB and
/// client stanzas at 256 KiB), so every stanza they route with their default
/// configuration is read whole.
pub const DEFAULT_MAX_STANZA_BYTES: usize = 2 * 1024 * 1024;
/// Default depth: Atom entries with XHTML content are a few dozen levels deep; nothing
/// real comes near this, and everything that walks an element recursively stays far
/// from the end of a task's stack.
pub const DEFAULT_MAX_DEPTH: usize = 128;
/// Default attributes per element: real elements have a handful; hundreds only make
/// every lookup slower.
pub const DEFAULT_MAX_ATTRIBUTES: usize = 64;
/// Default namespace declarations per stanza: an Atom entry with media, geo and Dublin
/// Core extensions declares about ten.
pub const DEFAULT_MAX_NAMESPACE_DECLARATIONS: usize = 128;
/// Default name length: XML names in XMPP are words; a name of a kilobyte is an attack.
pub const DEFAULT_MAX_NAME_BYTES: usize = 1024;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_stanza_bytes: DEFAULT_MAX_STANZA_BYTES,
            max_depth: DEFAULT_MAX_DEPTH,
            max_attributes: DEFAULT_MAX_ATTRIBUTES,
            max_namespace_declarations: DEFAULT_MAX_NAMESPACE_DECLARATIONS,
            max_name_bytes: DEFAULT_MAX_NAME_BYTES,
        }
    }
}

/// Which limit a refused stanza crossed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// More than [`Limits::max_stanza_bytes`].
    TooLarge { limit: usize },
    /// Nested deeper than [`Limits::max_depth`].
    TooDeep { limit: usize },
    /// An element with more than [`Limits::max_attributes`].
    TooManyAttributes { limit: usize },
    /// More than [`Limits::max_namespace_declarations`].
    TooManyNamespaces { limit: usize },
    /// A name longer than [`Limits::max_name_bytes`].
    NameTooLong { limit: usize },
    /// A prefix that no namespace declaration binds.
    UnboundPrefix,
}

impl Refusal {
    /// A short stable label, for metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            Refusal::TooLarge { .. } => "too-large",
            Refusal::TooDeep { .. } => "too-deep",
            Refusal::TooManyAttributes { .. } => "too-many-attributes",
            Refusal::TooManyNamespaces { .. } => "too-many-namespaces",
            Refusal::NameTooLong { .. } => "name-too-long",
            Refusal::UnboundPrefix => "unbound-prefix",
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::TooLarge { limit } => write!(f, "stanza larger than {limit} bytes"),
            Refusal::TooDeep { limit } => write!(f, "stanza nested deeper than {limit} levels"),
            Refusal::TooManyAttributes { limit } => {
                write!(f, "an element with more than {limit} attributes")
            }
            Refusal::TooManyNamespaces { limit } => {
                write!(f, "more than {limit} namespace declarations")
            }
            Refusal::NameTooLong { limit } => write!(f, "a name longer than {limit} bytes"),
            Refusal::UnboundPrefix => write!(f, "a prefix bound to no namespace"),
        }
    }
}

/// The parser's limit on one token (a name, an attribute value, a run of text), as a
/// multiple of [`Limits::max_stanza_bytes`]. A token is held whole before the reader
/// sees it, so a stanza can only be refused as too large once a token of it ends; with
/// this margin a stanza of up to eight times the limit made of one huge attribute is
/// still refused and skipped. Only a single token longer than that ends the stream, and
/// a server routes no such stanza unless its own limits were raised far past its
/// defaults. The peer is the XMPP server, whose own stanza limits bound what it routes.
pub const TOKEN_LIMIT_FACTOR: usize = 8;

/// The attributes of a refused stanza's top element that an answer needs.
const HEAD_ATTRIBUTES: [&str; 4] = ["from", "to", "id", "type"];
/// Longest value of those kept. A JID is at most 3,071 bytes; an id longer than this
/// is not kept, so a refused stanza with one goes unanswered rather than making its
/// answer as large as itself (a server drops a component that sends stanzas over its
/// own limit, 512 KiB by default on Prosody).
pub const MAX_HEAD_VALUE_BYTES: usize = 8 * 1024;

/// What the reader kept of a refused stanza: its name, the attributes an answer needs,
/// and the name and namespace of its first child (the request's payload).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Head {
    /// The stanza's element name (`iq`, `message`, `presence`, ...).
    pub name: String,
    /// Its `from`, `to`, `id` and `type` attributes, as far as they were read.
    pub attrs: Vec<(String, String)>,
    /// The first child element, if the stanza got that far.
    pub payload: Option<Payload>,
}

impl Head {
    /// The value of one of the kept attributes.
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The head as an element in namespace `ns`, with the kept attributes and no
    /// children.
    pub fn to_element(&self, ns: &str) -> Element {
        let mut el = Element::builder(self.name.as_str(), ns).build();
        for (name, value) in &self.attrs {
            if let Ok(name) = rxml::NcName::try_from(name.as_str()) {
                el.set_attr(rxml::Namespace::NONE, name, value.as_str());
            }
        }
        el
    }
}

/// The first child of a refused stanza, and that child's first child.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Payload {
    /// Its local name (`pubsub`, `query`, ...).
    pub name: String,
    /// The default namespace it declared itself, if it did.
    pub ns: Option<String>,
    /// The local name of its own first child (`publish`, `items`, ...).
    pub first_child: Option<String>,
}

/// One thing read from the stream.
#[derive(Debug)]
pub enum Item {
    /// The peer's stream header: its unprefixed attributes (`id`, `from`, ...).
    Header(Vec<(String, String)>),
    /// A stanza (or other top-level element) within every limit.
    Stanza(Element),
    /// A stanza that crossed a limit; it was read to its end and dropped.
    Refused { head: Head, refusal: Refusal },
    /// The peer closed the stream.
    Footer,
}

/// Why the stream cannot be read any further.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The socket failed, or the input is not well-formed XML (kind `InvalidData`).
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The input ended without the stream's closing tag.
    #[error("the connection closed without closing the stream")]
    Eof,
}

impl ReadError {
    /// Whether the peer sent XML that is not well-formed (as opposed to a socket error).
    pub fn is_malformed_xml(&self) -> bool {
        matches!(self, ReadError::Io(e) if e.kind() == std::io::ErrorKind::InvalidData)
    }
}

/// Whether the parser failed because the input ended inside the stream.
fn is_eof(e: &std::io::Error) -> bool {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<rxml::Error>())
        .is_some_and(|inner| matches!(inner, rxml::Error::InvalidEof(_)))
}

impl<R: AsyncBufRead + Unpin> StanzaReader<Chain<Cursor<Vec<u8>>, R>> {
    /// A reader of a stream whose header was already read by someone else (a client
    /// library that negotiated the stream): stanzas come next, in the default namespace
    /// `default_ns`, with `stream:` bound to the streams namespace. The parser is put
    /// inside the stream by reading a header of those declarations first, which is not
    /// reported.
    pub fn resume(io: R, limits: Limits, default_ns: &str) -> Self {
        let header = stream_header(default_ns);
        let mut reader = StanzaReader::new(Cursor::new(header.into_bytes()).chain(io), limits);
        reader.assembler.report_header = false;
        reader
    }
}

/// Reads one stanza from `xml`, as if it had arrived on a stream whose default
/// namespace is `default_ns`: the same limits, refusals and errors as [`StanzaReader`].
pub fn parse_stanza(xml: &str, default_ns: &str, limits: Limits) -> Result<Item, ReadError> {
    use rxml::error::EndOrError;
    use rxml::Parse as _;
    let mut assembler = Assembler::new(limits);
    assembler.report_header = false;
    let mut parser = assembler.parser();
    let input = format!("{}{xml}", stream_header(default_ns));
    let mut rest = input.as_bytes();
    loop {
        match parser.parse(&mut rest, true) {
            Ok(Some(event)) => {
                if let Some(item) = assembler.take(event) {
                    return Ok(item);
                }
            }
            Ok(None) | Err(EndOrError::NeedMoreData) => return Err(ReadError::Eof),
            Err(EndOrError::Error(rxml::Error::InvalidEof(_))) => return Err(ReadError::Eof),
            Err(EndOrError::Error(e)) => {
                return Err(ReadError::Io(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    e,
                )))
            }
        }
    }
}

/// An opening stream tag declaring `default_ns` and the `stream:` prefix.
fn stream_header(default_ns: &str) -> String {
    format!(
        "<stream:stream xmlns='{}' xmlns:stream='{NS_STREAMS}'>",
        default_ns.replace('&', "&amp;").replace('\'', "&apos;")
    )
}

/// The namespace of the `stream:` prefix (RFC 6120).
const NS_STREAMS: &str = "http://etherx.jabber.org/streams";

/// Reads [`Item`]s from `R`.
pub struct StanzaReader<R> {
    events: AsyncRawReader<R>,
    assembler: Assembler,
}

/// Turns parser events into [`Item`]s: the stream header, then one stanza at a time.
struct Assembler {
    limits: Limits,
    /// Namespace declarations of the stream header, which every stanza inherits.
    stream_prefixes: BTreeMap<Option<String>, String>,
    /// The stream header's attributes while it is being read; `None` once read.
    header: Option<Vec<(String, String)>>,
    /// The stanza being read.
    stanza: Option<Stanza>,
    /// Whether the header is handed out as [`Item::Header`].
    report_header: bool,
}

impl Assembler {
    fn new(limits: Limits) -> Assembler {
        Assembler {
            limits,
            stream_prefixes: BTreeMap::new(),
            header: Some(Vec::new()),
            stanza: None,
            report_header: true,
        }
    }

    fn parser(&self) -> RawParser {
        RawParser::with_options(rxml::parser::Options {
            max_token_length: self
                .limits
                .max_stanza_bytes
                .saturating_mul(TOKEN_LIMIT_FACTOR),
            ..Default::default()
        })
    }

    fn take(&mut self, event: RawEvent) -> Option<Item> {
        if let Some(attrs) = self.header.as_mut() {
            match event {
                RawEvent::Attribute(_, (prefix, name), value) => {
                    match (prefix.as_ref().map(|p| p.as_str()), name.as_str()) {
                        (None, "xmlns") => {
                            self.stream_prefixes.insert(None, value);
                        }
                        (Some("xmlns"), prefix) => {
                            self.stream_prefixes.insert(Some(prefix.to_string()), value);
                        }
                        (None, name) => attrs.push((name.to_string(), value)),
                        _ => {}
                    }
                }
                RawEvent::ElementHeadClose(_) => {
                    let attrs = self.header.take();
                    return attrs.filter(|_| self.report_header).map(Item::Header);
                }
                // `<stream:stream/>`: opened and closed at once.
                RawEvent::ElementFoot(_) => return Some(Item::Footer),
                _ => {}
            }
            return None;
        }
        match self.stanza.as_mut() {
            Some(stanza) => {
                if stanza.take(event, &self.limits) {
                    return self.stanza.take().map(Stanza::finish);
                }
                None
            }
            None => match event {
                RawEvent::ElementHeadOpen(..) => {
                    let mut stanza = Stanza::new(&self.stream_prefixes);
                    stanza.take(event, &self.limits);
                    self.stanza = Some(stanza);
                    None
                }
                RawEvent::ElementFoot(_) => Some(Item::Footer),
                // Whitespace between stanzas (keepalives) and nothing else can be here.
                _ => None,
            },
        }
    }
}

impl<R: AsyncBufRead + Unpin> StanzaReader<R> {
    /// A reader of a stream that has not sent its header yet.
    pub fn new(io: R, limits: Limits) -> Self {
        let assembler = Assembler::new(limits);
        StanzaReader {
            events: AsyncRawReader::wrap(io, assembler.parser()),
            assembler,
        }
    }

    /// The limits this reader applies.
    pub fn limits(&self) -> &Limits {
        &self.assembler.limits
    }

    /// Reads the next item. Cancel-safe: what was read before the future was dropped
    /// stays in the parser and the stanza being built.
    pub async fn next(&mut self) -> Result<Item, ReadError> {
        loop {
            let event = match self.events.read().await {
                Ok(Some(event)) => event,
                Ok(None) => return Err(ReadError::Eof),
                Err(e) if is_eof(&e) => return Err(ReadError::Eof),
                Err(e) => return Err(ReadError::Io(e)),
            };
            if let Some(item) = self.assembler.take(event) {
                return Ok(item);
            }
        }
    }

    /// What was read so far of the stanza being read, if one is under way: who sent
    /// it, when the stream has to end inside it.
    pub fn partial_head(&self) -> Option<&Head> {
        self.assembler.stanza.as_ref().map(|s| &s.head)
    }

    /// Gives back the underlying reader.
    pub fn into_inner(self) -> R {
        self.events.into_inner().0
    }
}

/// A stanza being read.
struct Stanza {
    /// Builds the element; dropped once the stanza is refused.
    builder: Option<TreeBuilder>,
    refusal: Option<Refusal>,
    head: Head,
    /// Current depth: 1 inside the stanza's own element, 0 once it has ended.
    depth: usize,
    bytes: usize,
    namespaces: usize,
    /// Attributes of the element whose head is being read.
    attributes: usize,
    /// Whether the element whose head is being read is the payload (the stanza's first
    /// child), whose namespace declaration is kept.
    in_payload_head: bool,
}

impl Stanza {
    fn new(stream_prefixes: &BTreeMap<Option<String>, String>) -> Stanza {
        Stanza {
            // The stream's declarations resolve prefixes inside the stanza without
            // being declared on it: a lone entry would be attached to the stanza's
            // element (and written out again with it), two are only looked up.
            builder: Some(
                TreeBuilder::new().with_prefixes_stack(vec![
                    stream_prefixes.clone().into(),
                    BTreeMap::new().into(),
                ]),
            ),
            refusal: None,
            head: Head::default(),
            depth: 0,
            bytes: 0,
            namespaces: 0,
            attributes: 0,
            in_payload_head: false,
        }
    }

    /// Takes one event of this stanza; true once the stanza has ended.
    fn take(&mut self, event: RawEvent, limits: &Limits) -> bool {
        self.bytes = self.bytes.saturating_add(event.metrics().len());
        if self.bytes > limits.max_stanza_bytes {
            self.refuse(Refusal::TooLarge {
                limit: limits.max_stanza_bytes,
            });
        }
        match &event {
            RawEvent::ElementHeadOpen(_, (_, name)) => {
                self.depth += 1;
                self.attributes = 0;
                self.check_name(name.as_str(), limits);
                if self.depth > limits.max_depth {
                    self.refuse(Refusal::TooDeep {
                        limit: limits.max_depth,
                    });
                }
                self.in_payload_head = false;
                match self.depth {
                    1 => self.head.name = name.to_string(),
                    2 if self.head.payload.is_none() => {
                        self.in_payload_head = true;
                        self.head.payload = Some(Payload {
                            name: name.to_string(),
                            ..Payload::default()
                        });
                    }
                    3 => {
                        if let Some(p) = self.head.payload.as_mut() {
                            p.first_child.get_or_insert_with(|| name.to_string());
                        }
                    }
                    _ => {}
                }
            }
            RawEvent::Attribute(_, (prefix, name), value) => {
                self.attributes += 1;
                if self.attributes > limits.max_attributes {
                    self.refuse(Refusal::TooManyAttributes {
                        limit: limits.max_attributes,
                    });
                }
                self.check_name(name.as_str(), limits);
                let prefix = prefix.as_ref().map(|p| p.as_str());
                let declares = matches!(
                    (prefix, name.as_str()),
                    (None, "xmlns") | (Some("xmlns"), _)
                );
                if declares {
                    self.namespaces += 1;
                    if self.namespaces > limits.max_namespace_declarations {
                        self.refuse(Refusal::TooManyNamespaces {
                            limit: limits.max_namespace_declarations,
                        });
                    }
                }
                if self.depth == 1
                    && prefix.is_none()
                    && HEAD_ATTRIBUTES.contains(&name.as_str())
                    && value.len() <= MAX_HEAD_VALUE_BYTES
                {
                    self.head.attrs.push((name.to_string(), value.clone()));
                }
                if self.in_payload_head && prefix.is_none() && name.as_str() == "xmlns" {
                    if let Some(p) = self.head.payload.as_mut() {
                        p.ns = Some(value.clone());
                    }
                }
            }
            RawEvent::ElementHeadClose(_) => self.in_payload_head = false,
            RawEvent::ElementFoot(_) => self.depth = self.depth.saturating_sub(1),
            RawEvent::Text(..) | RawEvent::XmlDeclaration(..) => {}
        }
        if let Some(builder) = self.builder.as_mut() {
            if builder.process_event(event).is_err() {
                self.refuse(Refusal::UnboundPrefix);
            }
        }
        self.depth == 0
    }

    fn check_name(&mut self, name: &str, limits: &Limits) {
        if name.len() > limits.max_name_bytes {
            self.refuse(Refusal::NameTooLong {
                limit: limits.max_name_bytes,
            });
        }
    }

    /// Stops building: the first limit crossed is the one reported.
    fn refuse(&mut self, refusal: Refusal) {
        if self.refusal.is_none() {
            self.refusal = Some(refusal);
            // The partial tree is at most `max_depth` deep: dropping it is bounded.
            self.builder = None;
        }
    }

    fn finish(self) -> Item {
        let built = self.builder.and_then(|mut b| b.root.take());
        match (self.refusal, built) {
            (None, Some(el)) => Item::Stanza(el),
            (refusal, _) => Item::Refused {
                head: self.head,
                refusal: refusal.unwrap_or(Refusal::UnboundPrefix),
            },
        }
    }
}

#[cfg(test)]
mod tests;
