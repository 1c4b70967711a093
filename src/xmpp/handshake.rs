//! Opening a component stream: TCP connect, stream header, XEP-0114 handshake.
//!
//! The socket is duplicated after connecting: the stanza reader ([`stanza_reader`]) owns
//! one handle and reads from it; the writer owns the other and writes finished stanza
//! text in batches (see [`super::render`]). The stream header and the handshake are
//! written as text like everything else.

use std::time::Duration;

use minidom::Element;
use stanza_reader::{Item, Limits, StanzaReader};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use xmpp_parsers::component::Handshake;
use xmpp_parsers::jid::BareJid;
use xmpp_parsers::ns;

use super::render::escape;
use super::settings::Secret;

/// How long the server may take to answer the stream header or the handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The reading side of a connected stream: one stanza at a time, each limit checked per
/// stanza (see [`stanza_reader`]).
pub type Reader = StanzaReader<BufReader<TcpStream>>;

/// Why a connection attempt failed. Each is a one-line message for the operator.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot connect to {server}: {source}")]
    Tcp {
        server: String,
        source: std::io::Error,
    },
    #[error("timed out connecting to {server}")]
    Timeout { server: String },
    /// ejabberd answers an unknown component JID this way too: it has no secret for it.
    #[error("the server at {server} refused the component secret for {jid}: the secret is wrong, or the server has no component configured for {jid} (add it to the server's config)")]
    NotAuthorized { server: String, jid: BareJid },
    #[error("the server at {server} has no component configured for {jid}: add it to the server's config (Prosody: Component \"{jid}\"; ejabberd: a listener with ejabberd_service and hosts: {jid})")]
    HostUnknown { server: String, jid: BareJid },
    #[error("the server at {server} closed the stream: {reason}")]
    StreamError { server: String, reason: String },
    #[error("XML stream error with {server}: {source}")]
    Stream {
        server: String,
        source: std::io::Error,
    },
    #[error("cannot read the stream from {server}: {source}")]
    Read {
        server: String,
        source: stanza_reader::ReadError,
    },
}

impl ConnectError {
    /// Whether retrying can help without an operator changing something.
    pub fn is_transient(&self) -> bool {
        !matches!(
            self,
            ConnectError::NotAuthorized { .. } | ConnectError::HostUnknown { .. }
        )
    }
}

/// A freshly authenticated component stream.
pub struct Connected {
    pub reader: Reader,
    pub writer: TcpStream,
}

/// Connects to `server` and authenticates as `jid` with `secret`; stanzas are then read
/// under `limits`.
pub async fn connect(
    server: &str,
    jid: &BareJid,
    secret: &Secret,
    limits: Limits,
) -> Result<Connected, ConnectError> {
    match tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        connect_inner(server, jid, secret, limits),
    )
    .await
    {
        Ok(r) => r,
        Err(_) => Err(ConnectError::Timeout {
            server: server.to_string(),
        }),
    }
}

async fn connect_inner(
    server: &str,
    jid: &BareJid,
    secret: &Secret,
    limits: Limits,
) -> Result<Connected, ConnectError> {
    let tcp_err = |source| ConnectError::Tcp {
        server: server.to_string(),
        source,
    };
    let stream_err = |source| ConnectError::Stream {
        server: server.to_string(),
        source,
    };
    let read_err = |source| ConnectError::Read {
        server: server.to_string(),
        source,
    };
    let tcp = TcpStream::connect(server).await.map_err(tcp_err)?;
    tcp.set_nodelay(true).map_err(tcp_err)?;
    let std = tcp.into_std().map_err(tcp_err)?;
    let std_writer = std.try_clone().map_err(tcp_err)?;
    let read_half = TcpStream::from_std(std).map_err(tcp_err)?;
    let mut writer = TcpStream::from_std(std_writer).map_err(tcp_err)?;
    let mut reader = StanzaReader::new(BufReader::new(read_half), limits);

    let header = format!(
        "<?xml version='1.0'?><stream:stream xmlns='{}' xmlns:stream='{}' to='{}'>",
        ns::COMPONENT,
        ns::STREAM,
        escape(&jid.to_string())
    );
    writer
        .write_all(header.as_bytes())
        .await
        .map_err(stream_err)?;
    let mut header_without_id = false;
    let stream_id = loop {
        match reader.next().await.map_err(read_err)? {
            Item::Header(attrs) => match attrs.into_iter().find(|(name, _)| name == "id") {
                Some((_, id)) => break id,
                // A server refusing the `to` sends a header without id, then its error.
                None => header_without_id = true,
            },
            Item::Stanza(el) if el.name() == "error" && el.ns() == ns::STREAM => {
                return Err(stream_error(server, jid, &el));
            }
            Item::Footer if header_without_id => {
                return Err(ConnectError::StreamError {
                    server: server.to_string(),
                    reason: "stream header without id (is this a component port?)".into(),
                })
            }
            other => tracing::debug!(?other, "ignoring input before the stream header"),
        }
    };
    let handshake = Element::from(Handshake::from_stream_id_and_password(
        stream_id,
        secret.expose(),
    ));
    writer
        .write_all(String::from(&handshake).as_bytes())
        .await
        .map_err(stream_err)?;

    loop {
        match reader.next().await {
            Ok(Item::Stanza(el)) if el.name() == "handshake" => {
                return Ok(Connected { reader, writer })
            }
            Ok(Item::Stanza(el)) if el.name() == "error" && el.ns() == ns::STREAM => {
                return Err(stream_error(server, jid, &el));
            }
            Ok(Item::Stanza(el)) => {
                tracing::debug!(name = el.name(), "ignoring element before handshake reply");
            }
            Ok(Item::Refused { head, refusal }) => {
                tracing::debug!(name = head.name, %refusal, "ignoring refused element before handshake reply");
            }
            Ok(Item::Header(_)) => {}
            // Prosody closes the stream without a stream error on a bad secret.
            Ok(Item::Footer) | Err(stanza_reader::ReadError::Eof) => {
                return Err(ConnectError::NotAuthorized {
                    server: server.to_string(),
                    jid: jid.clone(),
                })
            }
            Err(e) => return Err(read_err(e)),
        }
    }
}

/// A `<stream:error/>` received while opening the stream, as the operator's problem.
fn stream_error(server: &str, jid: &BareJid, el: &Element) -> ConnectError {
    let condition = el
        .children()
        .find(|c| c.ns() == ns::XMPP_STREAMS && c.name() != "text")
        .map(|c| c.name().to_string())
        .unwrap_or_else(|| "unknown".into());
    match condition.as_str() {
        "not-authorized" => ConnectError::NotAuthorized {
            server: server.to_string(),
            jid: jid.clone(),
        },
        "host-unknown" => ConnectError::HostUnknown {
            server: server.to_string(),
            jid: jid.clone(),
        },
        _ => ConnectError::StreamError {
            server: server.to_string(),
            reason: condition,
        },
    }
}
