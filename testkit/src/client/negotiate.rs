//! Stream negotiation on a fresh c2s connection, before any stanza traffic:
//! stream header, features, in-band registration, SASL PLAIN, stream restart,
//! resource binding and (when required) session establishment.
//!
//! Uses tokio-xmpp's low-level `xmlstream` with `minidom::Element` as the
//! item type; nothing here uses xmpp-parsers' typed stanzas.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine as _;
use futures::{SinkExt as _, StreamExt as _};
use minidom::Element;
use tokio::io::BufStream;
use tokio::net::TcpStream;
use tokio_xmpp::xmlstream::{
    initiate_stream, PendingFeaturesRecv, ReadError, StreamHeader, Timeouts, XmlStream,
};

use super::error::ClientError;
use super::stanza::{
    self, is_iq_response, NS_BIND, NS_CLIENT, NS_REGISTER, NS_SASL, NS_SESSION, NS_STREAMS,
    NS_STREAM_ERRORS,
};

/// The XML stream every client connection uses.
pub type ClientStream = XmlStream<BufStream<TcpStream>, Element>;

/// Longest wait for any single step of negotiation. A loopback server
/// answers in milliseconds when idle, but a load test that opens a thousand
/// connections at once queues them behind each other on a single-threaded
/// server like Prosody, so this only trips when a server is wedged.
pub const NEGOTIATION_TIMEOUT: Duration = Duration::from_secs(60);

/// Silence after which tokio-xmpp reports a soft timeout; the connection task
/// then pings the server so that an idle test client is not torn down.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// How long after a soft timeout the server may stay silent before the
/// stream counts as dead.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);

/// The timeouts given to tokio-xmpp's stream.
pub fn timeouts() -> Timeouts {
    Timeouts {
        read_timeout: READ_TIMEOUT,
        response_timeout: RESPONSE_TIMEOUT,
    }
}

/// Connects to `addr` and opens a `jabber:client` stream to `domain`,
/// returning the stream and its features.
pub async fn open(addr: SocketAddr, domain: &str) -> Result<(ClientStream, Element), ClientError> {
    let tcp = with_timeout("TCP connect", TcpStream::connect(addr)).await??;
    tcp.set_nodelay(true)?;
    let pending = with_timeout(
        "stream header",
        initiate_stream(BufStream::new(tcp), NS_CLIENT, header(domain), timeouts()),
    )
    .await??;
    receive_features(pending).await
}

/// In-band registration (XEP-0077) of `username` on an unauthenticated
/// stream. The stream stays usable for SASL afterwards.
pub async fn register(
    stream: &mut ClientStream,
    username: &str,
    password: &str,
) -> Result<(), ClientError> {
    let query = Element::builder("query", NS_REGISTER)
        .append(
            Element::builder("username", NS_REGISTER)
                .append(username)
                .build(),
        )
        .append(
            Element::builder("password", NS_REGISTER)
                .append(password)
                .build(),
        )
        .build();
    let mut iq = stanza::iq("set", "", query);
    stanza::set_attr(&mut iq, "id", "register");
    let reply = request(stream, iq, "register").await?;
    if stanza::is_error(&reply) {
        let condition = stanza::error_condition(&reply).unwrap_or_else(|| stanza::to_xml(&reply));
        return Err(ClientError::RegistrationFailed(condition));
    }
    Ok(())
}

/// SASL PLAIN, then the stream restart; returns the new stream and the
/// post-authentication features.
pub async fn authenticate(
    mut stream: ClientStream,
    features: &Element,
    domain: &str,
    username: &str,
    password: &str,
) -> Result<(ClientStream, Element), ClientError> {
    let offers_plain = features
        .get_child("mechanisms", NS_SASL)
        .is_some_and(|m| m.children().any(|c| c.text() == "PLAIN"));
    if !offers_plain {
        return Err(ClientError::Protocol(format!(
            "server does not offer SASL PLAIN: {}",
            stanza::to_xml(features)
        )));
    }
    let credentials = format!("\0{username}\0{password}");
    let encoded = base64::engine::general_purpose::STANDARD.encode(credentials);
    let mut auth = Element::builder("auth", NS_SASL).append(encoded).build();
    stanza::set_attr(&mut auth, "mechanism", "PLAIN");
    send(&mut stream, &auth).await?;
    let answer = next_element(&mut stream, "SASL answer").await?;
    match answer.name() {
        "success" if answer.ns() == NS_SASL => {}
        "failure" if answer.ns() == NS_SASL => {
            let condition = answer
                .children()
                .map(|c| c.name().to_string())
                .find(|n| n != "text")
                .unwrap_or_else(|| "unspecified".into());
            return Err(ClientError::AuthFailed(condition));
        }
        _ => {
            return Err(ClientError::Protocol(format!(
                "unexpected SASL answer: {}",
                stanza::to_xml(&answer)
            )))
        }
    }
    let pending = with_timeout(
        "stream restart",
        stream.initiate_reset().send_header(header(domain)),
    )
    .await??;
    receive_features(pending).await
}

/// Binds `resource` (or a server-chosen one) and, if the server says it is
/// mandatory, establishes a session. Returns the full JID.
pub async fn bind(
    stream: &mut ClientStream,
    features: &Element,
    resource: Option<&str>,
) -> Result<String, ClientError> {
    if features.get_child("bind", NS_BIND).is_none() {
        return Err(ClientError::Protocol(format!(
            "server offers no resource binding: {}",
            stanza::to_xml(features)
        )));
    }
    let mut bind = Element::builder("bind", NS_BIND);
    if let Some(resource) = resource {
        bind = bind.append(
            Element::builder("resource", NS_BIND)
                .append(resource)
                .build(),
        );
    }
    let mut iq = stanza::iq("set", "", bind.build());
    stanza::set_attr(&mut iq, "id", "bind");
    let reply = request(stream, iq, "bind").await?;
    let jid = reply
        .get_child("bind", NS_BIND)
        .and_then(|b| b.get_child("jid", NS_BIND))
        .map(Element::text)
        .ok_or_else(|| ClientError::Protocol(format!("bind failed: {}", stanza::to_xml(&reply))))?;
    if session_required(features) {
        let mut iq = stanza::iq("set", "", Element::builder("session", NS_SESSION).build());
        stanza::set_attr(&mut iq, "id", "session");
        let reply = request(stream, iq, "session").await?;
        if stanza::is_error(&reply) {
            return Err(ClientError::Protocol(format!(
                "session establishment failed: {}",
                stanza::to_xml(&reply)
            )));
        }
    }
    Ok(jid)
}

/// Reads the next top-level element, skipping soft timeouts and turning a
/// stream error or the stream's end into an error.
pub async fn next_element(stream: &mut ClientStream, what: &str) -> Result<Element, ClientError> {
    with_timeout(what, async {
        loop {
            match stream.next().await {
                Some(Ok(element)) => return check_stream_error(element),
                Some(Err(ReadError::SoftTimeout)) => continue,
                Some(Err(e)) => return Err(read_error(e)),
                None => return Err(ClientError::Disconnected("connection closed".into())),
            }
        }
    })
    .await?
}

/// Turns a tokio-xmpp read error into ours.
pub fn read_error(error: ReadError) -> ClientError {
    match error {
        ReadError::HardError(e) => ClientError::Io(e),
        ReadError::ParseError(e) => ClientError::Protocol(format!("unparsable XML: {e}")),
        ReadError::StreamFooterReceived => {
            ClientError::Disconnected("server closed the stream".into())
        }
        ReadError::SoftTimeout => ClientError::Protocol("soft timeout".into()),
    }
}

/// Passes `element` through unless it is a stream error.
pub fn check_stream_error(element: Element) -> Result<Element, ClientError> {
    if element.is("error", NS_STREAMS) {
        return Err(ClientError::Stream(describe_stream_error(&element)));
    }
    Ok(element)
}

/// `condition: text` of a `<stream:error>`.
pub fn describe_stream_error(error: &Element) -> String {
    let condition = error
        .children()
        .find(|c| c.ns() == NS_STREAM_ERRORS && c.name() != "text")
        .map(|c| c.name().to_string())
        .unwrap_or_else(|| "undefined-condition".into());
    match error.get_child("text", NS_STREAM_ERRORS) {
        Some(text) => format!("{condition}: {}", text.text()),
        None => condition,
    }
}

fn header(domain: &str) -> StreamHeader<'_> {
    StreamHeader {
        to: Some(Cow::Borrowed(domain)),
        from: None,
        id: None,
    }
}

async fn receive_features(
    pending: PendingFeaturesRecv<BufStream<TcpStream>>,
) -> Result<(ClientStream, Element), ClientError> {
    // `recv_features` would parse into xmpp-parsers' typed features; reading
    // them as a plain element keeps every child (registration, session).
    let mut stream = pending.skip_features::<Element>();
    let features = next_element(&mut stream, "stream features").await?;
    if !features.is("features", NS_STREAMS) {
        return Err(ClientError::Protocol(format!(
            "expected stream features, got {}",
            stanza::to_xml(&features)
        )));
    }
    Ok((stream, features))
}

/// Sends `iq` (which has an id) and waits for its response during
/// negotiation, when nothing else may arrive.
async fn request(
    stream: &mut ClientStream,
    iq: Element,
    what: &str,
) -> Result<Element, ClientError> {
    let id = iq.attr("id").unwrap_or_default().to_string();
    send(stream, &iq).await?;
    let reply = next_element(stream, what).await?;
    if !is_iq_response(&reply, &id) {
        return Err(ClientError::Protocol(format!(
            "expected the {what} response, got {}",
            stanza::to_xml(&reply)
        )));
    }
    Ok(reply)
}

async fn send(stream: &mut ClientStream, element: &Element) -> Result<(), ClientError> {
    with_timeout("send", stream.send(element)).await??;
    Ok(())
}

fn session_required(features: &Element) -> bool {
    features
        .get_child("session", NS_SESSION)
        .is_some_and(|s| !s.children().any(|c| c.name() == "optional"))
}

pub async fn with_timeout<F: std::future::Future>(
    what: &str,
    future: F,
) -> Result<F::Output, ClientError> {
    tokio::time::timeout(NEGOTIATION_TIMEOUT, future)
        .await
        .map_err(|_| ClientError::Timeout {
            after: NEGOTIATION_TIMEOUT,
            what: what.to_string(),
        })
}
