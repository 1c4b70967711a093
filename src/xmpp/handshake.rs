//! Opening a component stream: TCP connect, stream header, XEP-0114 handshake.
//!
//! The socket is duplicated after connecting: tokio-xmpp's XML stream parser owns one
//! handle and reads from it; the writer owns the other and writes finished stanza
//! text in batches (see [`super::render`]).

use std::borrow::Cow;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use minidom::Element;
use tokio::io::BufReader;
use tokio::net::TcpStream;
use tokio_xmpp::xmlstream::{initiate_stream, ReadError, StreamHeader, Timeouts, XmlStream};
use xmpp_parsers::component::Handshake;
use xmpp_parsers::jid::BareJid;
use xmpp_parsers::ns;

use crate::config::Secret;

/// How long the server may take to answer the stream header or the handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Read timeouts handed to the XML stream: a quiet stream is normal (the writer pings
/// the server every [`super::session::KEEPALIVE`]), so only a long silence is an error.
pub const STREAM_TIMEOUTS: Timeouts = Timeouts {
    read_timeout: Duration::from_secs(90),
    response_timeout: Duration::from_secs(60),
};

/// The reading side of a connected stream.
pub type Reader = XmlStream<BufReader<TcpStream>, Element>;

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
    #[error("the server at {server} refused the component secret for {jid} (check the secret and that the server declares this component)")]
    NotAuthorized { server: String, jid: BareJid },
    #[error("the server at {server} closed the stream: {reason}")]
    StreamError { server: String, reason: String },
    #[error("XML stream error with {server}: {source}")]
    Stream {
        server: String,
        source: std::io::Error,
    },
}

impl ConnectError {
    /// Whether retrying can help without an operator changing something.
    pub fn is_transient(&self) -> bool {
        !matches!(self, ConnectError::NotAuthorized { .. })
    }
}

/// A freshly authenticated component stream.
pub struct Connected {
    pub reader: Reader,
    pub writer: TcpStream,
}

/// Connects to `server` and authenticates as `jid` with `secret`.
pub async fn connect(
    server: &str,
    jid: &BareJid,
    secret: &Secret,
) -> Result<Connected, ConnectError> {
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, connect_inner(server, jid, secret)).await {
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
) -> Result<Connected, ConnectError> {
    let tcp_err = |source| ConnectError::Tcp {
        server: server.to_string(),
        source,
    };
    let stream_err = |source| ConnectError::Stream {
        server: server.to_string(),
        source,
    };
    let tcp = TcpStream::connect(server).await.map_err(tcp_err)?;
    tcp.set_nodelay(true).map_err(tcp_err)?;
    let std = tcp.into_std().map_err(tcp_err)?;
    let std_writer = std.try_clone().map_err(tcp_err)?;
    let read_half = TcpStream::from_std(std).map_err(tcp_err)?;
    let writer = TcpStream::from_std(std_writer).map_err(tcp_err)?;

    let header = StreamHeader {
        from: None,
        to: Some(Cow::Owned(jid.to_string())),
        id: None,
    };
    let mut pending = initiate_stream(
        BufReader::new(read_half),
        ns::COMPONENT,
        header,
        STREAM_TIMEOUTS,
    )
    .await
    .map_err(stream_err)?;
    let stream_id = pending
        .take_header()
        .id
        .ok_or_else(|| ConnectError::StreamError {
            server: server.to_string(),
            reason: "stream header without id (is this a component port?)".into(),
        })?;
    let mut reader: Reader = pending.skip_features();
    let handshake = Handshake::from_stream_id_and_password(stream_id.into_owned(), secret.expose());
    reader
        .send(&Element::from(handshake))
        .await
        .map_err(stream_err)?;

    loop {
        match reader.next().await {
            Some(Ok(el)) if el.name() == "handshake" => return Ok(Connected { reader, writer }),
            Some(Ok(el)) if el.name() == "error" && el.ns() == ns::STREAM => {
                let condition = el
                    .children()
                    .find(|c| c.ns() == ns::XMPP_STREAMS && c.name() != "text")
                    .map(|c| c.name().to_string())
                    .unwrap_or_else(|| "unknown".into());
                return Err(if condition == "not-authorized" {
                    ConnectError::NotAuthorized {
                        server: server.to_string(),
                        jid: jid.clone(),
                    }
                } else {
                    ConnectError::StreamError {
                        server: server.to_string(),
                        reason: condition,
                    }
                });
            }
            Some(Ok(el)) => {
                tracing::debug!(name = el.name(), "ignoring element before handshake reply");
            }
            Some(Err(ReadError::SoftTimeout)) => {}
            Some(Err(ReadError::HardError(e))) => return Err(stream_err(e)),
            Some(Err(ReadError::ParseError(e))) => {
                return Err(ConnectError::StreamError {
                    server: server.to_string(),
                    reason: e.to_string(),
                })
            }
            // Prosody closes the stream without a stream error on a bad secret.
            Some(Err(ReadError::StreamFooterReceived)) | None => {
                return Err(ConnectError::NotAuthorized {
                    server: server.to_string(),
                    jid: jid.clone(),
                })
            }
        }
    }
}
