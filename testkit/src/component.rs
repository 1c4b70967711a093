//! A minimal XEP-0114 component handshake, to check that a server accepts a
//! component slot (and refuses a wrong secret) without running pubsubd.

use std::borrow::Cow;
use std::net::SocketAddr;

use futures::{SinkExt as _, StreamExt as _};
use minidom::Element;
use sha1::{Digest as _, Sha1};
use tokio::io::BufStream;
use tokio::net::TcpStream;
use tokio_xmpp::xmlstream::{initiate_stream, ReadError, StreamHeader};

use crate::client::ClientError;
use crate::client::{
    check_stream_error, next_element, read_error, timeouts, with_timeout, ClientStream,
};

/// The component stream namespace (XEP-0114).
pub const NS_COMPONENT: &str = "jabber:component:accept";

/// An accepted component connection, kept open until dropped. It can stand in for a
/// whole domain of recipients: everything the server routes to any JID of the
/// component's domain arrives here ([`Self::recv`]).
pub struct ComponentConnection {
    stream: ClientStream,
    jid: String,
}

impl ComponentConnection {
    /// The component JID.
    pub fn jid(&self) -> &str {
        &self.jid
    }

    /// The next element the server routes to the component (a stanza to any JID of
    /// its domain). Waits as long as it takes; on read silence it pings the server so
    /// the stream stays up. Fails once the stream is over.
    pub async fn recv(&mut self) -> Result<Element, ClientError> {
        loop {
            match self.stream.next().await {
                Some(Ok(element)) => return check_stream_error(element),
                Some(Err(ReadError::SoftTimeout)) => self.keepalive().await?,
                Some(Err(e)) => return Err(read_error(e)),
                None => return Err(ClientError::Disconnected("connection closed".into())),
            }
        }
    }

    /// Sends a stanza (its `from` must be in the component's domain).
    pub async fn send(&mut self, stanza: &Element) -> Result<(), ClientError> {
        with_timeout("component send", self.stream.send(stanza)).await??;
        Ok(())
    }

    /// Pings the server (the parent domain of the component's JID); the answer
    /// arrives through [`Self::recv`] like any other stanza.
    async fn keepalive(&mut self) -> Result<(), ClientError> {
        let server = self
            .jid
            .split_once('.')
            .map_or(self.jid.as_str(), |(_, d)| d);
        let ping: Element = format!(
            "<iq xmlns='{NS_COMPONENT}' type='get' id='testkit-component-keepalive' from='{}' to='{server}'><ping xmlns='urn:xmpp:ping'/></iq>",
            self.jid
        )
        .parse()
        .map_err(|e| ClientError::Protocol(format!("keepalive ping: {e}")))?;
        self.send(&ping).await
    }

    /// Sends `</stream:stream>`.
    pub async fn close(mut self) -> Result<(), ClientError> {
        self.stream.shutdown().await?;
        Ok(())
    }
}

/// Connects to the component port at `addr` as `jid` and performs the
/// handshake with `secret`. Fails with [`ClientError::HandshakeRefused`] if
/// the server rejects it.
pub async fn component_handshake(
    addr: SocketAddr,
    jid: &str,
    secret: &str,
) -> Result<ComponentConnection, ClientError> {
    let tcp = with_timeout("TCP connect", TcpStream::connect(addr)).await??;
    let header = StreamHeader {
        to: Some(Cow::Borrowed(jid)),
        from: None,
        id: None,
    };
    let pending = with_timeout(
        "component stream header",
        initiate_stream(BufStream::new(tcp), NS_COMPONENT, header, timeouts()),
    )
    .await??;
    let stream_id = pending
        .header()
        .id
        .map(|id| id.into_owned())
        .ok_or_else(|| ClientError::Protocol("component stream header has no id".into()))?;
    let mut stream = pending.skip_features::<Element>();
    let handshake = Element::builder("handshake", NS_COMPONENT)
        .append(handshake_digest(&stream_id, secret))
        .build();
    with_timeout("handshake send", stream.send(&handshake)).await??;
    match next_element(&mut stream, "handshake answer").await {
        Ok(answer) if answer.name() == "handshake" => Ok(ComponentConnection {
            stream,
            jid: jid.to_string(),
        }),
        Ok(answer) => Err(ClientError::HandshakeRefused(String::from(&answer))),
        Err(ClientError::Stream(condition)) => Err(ClientError::HandshakeRefused(condition)),
        Err(ClientError::Disconnected(why)) => Err(ClientError::HandshakeRefused(why)),
        Err(e) => Err(e),
    }
}

/// Lowercase hex SHA-1 of stream id + secret, as XEP-0114 specifies.
pub fn handshake_digest(stream_id: &str, secret: &str) -> String {
    let digest = Sha1::digest(format!("{stream_id}{secret}").as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}
