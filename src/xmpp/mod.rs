//! The XMPP connection: one XEP-0114 component stream to the server, kept alive and
//! re-established for ever once it has been up.
//!
//! Owns the socket and nothing else: it does not look inside stanzas beyond what it
//! needs to match its own barrier pings. Incoming stanzas go to an [`Inbound`] sink (the
//! router); outgoing stanzas come from [`Outbound`] handles through one bounded queue,
//! drained by a single writer that batches writes.
//!
//! - [`handshake`]: TCP connect, stream header, XEP-0114 handshake.
//! - [`refused`]: requests the stanza reader refused for a per-stanza limit, handed on
//!   to be answered.
//! - [`session`]: one connected stream: the reader and the batching writer.
//! - [`stranger`]: noticing another program on the component JID.
//! - [`supervisor`]: connect at start-up, reconnect with backoff and jitter after a drop.
//! - [`outbound`]: the handle the rest of pubsubd sends through, and delivery barriers.
//! - [`multicast`]: XEP-0033 grouping through the server's multicast service.
//! - [`discovery`]: finding that service on every new stream, unless one is named.
//! - [`queries`]: requests pubsubd itself sends, and the answers they wait for.
//! - [`privilege`]: what the server grants pubsubd of its users (XEP-0356).
//! - [`roster`]: reading a user's roster with that privilege.
//! - [`render`]: XML escaping and serialisation helpers for outgoing stanzas.

pub mod discovery;
pub mod handshake;
pub mod multicast;
pub mod outbound;
pub mod privilege;
pub mod queries;
pub mod refused;
pub mod render;
pub mod roster;
pub mod session;
pub mod settings;
pub mod stranger;
pub mod supervisor;

pub use handshake::ConnectError;
pub use outbound::{BarrierError, Lane, Outbound, OutboundQueue};
pub use settings::{MulticastSettings, Secret, ServerAddr, Settings};
pub use supervisor::{ConnectionState, Supervisor};

/// Where the connection hands every stanza it reads (except the answers to its own
/// barrier pings). Implemented by the router. Awaiting here is the read side's
/// backpressure: a slow handler pool slows down reading from the server.
pub trait Inbound: Send + Sync + 'static {
    /// Takes one stanza read from the server.
    fn deliver(&self, stanza: minidom::Element) -> impl std::future::Future<Output = ()> + Send;
}

/// Whether two strings are equal, at compile time.
const fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

// Stanzas built with xmpp-parsers are in its default namespace. On a component stream
// that must be `jabber:component:accept` (xmpp-parsers' `component` feature): Prosody
// routes nothing a component sends as `jabber:client`, so every answer would be lost.
// Cargo unifies features across a workspace, so a build of this package alone is the
// one that would go wrong; it fails here instead.
const _: () = assert!(
    same(
        xmpp_parsers::ns::DEFAULT_NS,
        xmpp_parsers::ns::COMPONENT_ACCEPT
    ),
    "xmpp-parsers must be built with its `component` feature"
);
