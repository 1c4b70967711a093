//! Lean connections: a c2s login (registration, SASL PLAIN, bind) and a
//! XEP-0114 component handshake over plain sockets, ending in a [`Reader`]
//! that yields raw top-level elements and a write half for raw XML.
//!
//! Owns negotiation and socket reading. Deciding what an element means is
//! the callers' job (see `receive.rs` and `iq.rs`).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use base64::Engine as _;
use sha1::{Digest as _, Sha1};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

use crate::scan::{self, Event, Splitter};
use crate::stanzas;

/// Longest wait for any one negotiation step. Local servers answer in
/// milliseconds when idle; thousands of simultaneous logins on a busy
/// two-core machine can take seconds.
const NEGOTIATION_TIMEOUT: Duration = Duration::from_secs(60);

/// The reading side of a connection, splitting the stream into elements.
pub struct Reader {
    half: OwnedReadHalf,
    splitter: Splitter,
}

/// A top-level element handed out by [`Reader::next`]: its bytes are at
/// `reader.bytes(&element)` until the next read.
#[derive(Debug, Clone)]
pub struct ElementRef(std::ops::Range<usize>);

impl Reader {
    fn new(half: OwnedReadHalf) -> Self {
        Self {
            half,
            splitter: Splitter::new(),
        }
    }

    /// The next top-level element. Stream opens are skipped; the server's
    /// closing tag or EOF is an error.
    pub async fn next(&mut self) -> anyhow::Result<ElementRef> {
        loop {
            match self.next_event().await? {
                Event::Element(range) => return Ok(ElementRef(range)),
                Event::StreamOpen(_) => {}
                Event::StreamClose => bail!("the server closed the stream"),
            }
        }
    }

    /// The bytes of an element returned by [`Self::next`].
    pub fn bytes(&self, element: &ElementRef) -> &[u8] {
        self.splitter.bytes(element.0.clone())
    }

    async fn next_event(&mut self) -> anyhow::Result<Event> {
        loop {
            if let Some(event) = self.splitter.next_event() {
                return Ok(event);
            }
            let read = self
                .half
                .read_buf(self.splitter.buffer_for_read())
                .await
                .context("read failed")?;
            if read == 0 {
                bail!("the server closed the connection");
            }
        }
    }

    /// The next event as owned bytes, within [`NEGOTIATION_TIMEOUT`].
    async fn negotiation_event(&mut self, what: &str) -> anyhow::Result<(bool, Vec<u8>)> {
        let event = tokio::time::timeout(NEGOTIATION_TIMEOUT, self.next_event())
            .await
            .map_err(|_| anyhow!("timed out waiting for {what}"))??;
        Ok(match event {
            Event::StreamOpen(r) => (true, self.splitter.bytes(r).to_vec()),
            Event::Element(r) => (false, self.splitter.bytes(r).to_vec()),
            Event::StreamClose => bail!("the server closed the stream while we waited for {what}"),
        })
    }

    /// The next element (not a stream open) as owned bytes.
    async fn negotiation_element(&mut self, what: &str) -> anyhow::Result<Vec<u8>> {
        loop {
            let (is_open, bytes) = self.negotiation_event(what).await?;
            if !is_open {
                check_stream_error(&bytes)?;
                return Ok(bytes);
            }
        }
    }

    /// The next stream header, then the features that follow it.
    async fn header_and_features(&mut self) -> anyhow::Result<(Vec<u8>, Vec<u8>)> {
        loop {
            let (is_open, header) = self.negotiation_event("the stream header").await?;
            if is_open {
                let features = self.negotiation_element("stream features").await?;
                return Ok((header, features));
            }
            check_stream_error(&header)?;
        }
    }
}

fn check_stream_error(element: &[u8]) -> anyhow::Result<()> {
    if scan::name(element) == b"stream:error" {
        bail!("stream error: {}", String::from_utf8_lossy(element));
    }
    Ok(())
}

/// A logged-in client session.
pub struct Session {
    /// Reading side.
    pub reader: Reader,
    /// Writing side: write raw XML; dropping it ends the session.
    pub writer: OwnedWriteHalf,
    /// The full JID the server bound.
    pub jid: String,
}

/// What [`login`] does.
#[derive(Debug, Clone)]
pub struct LoginSpec {
    /// The c2s address.
    pub addr: SocketAddr,
    /// The XMPP domain.
    pub domain: String,
    /// Local part.
    pub username: String,
    /// Password.
    pub password: String,
    /// Resource to bind.
    pub resource: String,
    /// Register the account first (an existing account is fine).
    pub register: bool,
    /// Send initial presence after binding.
    pub presence: bool,
}

/// Connects, (registers,) authenticates with SASL PLAIN, binds and
/// (sends presence). Waits for the bind answer only.
pub async fn login(spec: &LoginSpec) -> anyhow::Result<Session> {
    let tcp = tokio::time::timeout(NEGOTIATION_TIMEOUT, TcpStream::connect(spec.addr))
        .await
        .map_err(|_| anyhow!("TCP connect to {} timed out", spec.addr))?
        .with_context(|| format!("cannot connect to {}", spec.addr))?;
    tcp.set_nodelay(true)?;
    let (read, mut writer) = tcp.into_split();
    let mut reader = Reader::new(read);
    let header = stanzas::client_header(&spec.domain);
    writer.write_all(header.as_bytes()).await?;
    let (_, features) = reader.header_and_features().await?;
    if spec.register {
        writer
            .write_all(stanzas::register(&spec.username, &spec.password).as_bytes())
            .await?;
        let answer = reader
            .negotiation_element("the registration answer")
            .await?;
        if scan::attr(&answer, "type") == Some(b"error") && !scan::contains(&answer, b"<conflict") {
            bail!(
                "registration of {} refused: {}",
                spec.username,
                String::from_utf8_lossy(&answer)
            );
        }
    }
    if !scan::contains(&features, b">PLAIN<") {
        bail!(
            "server does not offer SASL PLAIN: {}",
            String::from_utf8_lossy(&features)
        );
    }
    let credentials = format!("\0{}\0{}", spec.username, spec.password);
    let encoded = base64::engine::general_purpose::STANDARD.encode(credentials);
    writer
        .write_all(stanzas::sasl_plain(&encoded).as_bytes())
        .await?;
    let answer = reader.negotiation_element("the SASL answer").await?;
    if scan::name(&answer) != b"success" {
        bail!(
            "authentication of {} failed: {}",
            spec.username,
            String::from_utf8_lossy(&answer)
        );
    }
    writer.write_all(header.as_bytes()).await?;
    let (_, features) = reader.header_and_features().await?;
    let mut request = stanzas::bind(&spec.resource);
    let session_required =
        scan::contains(&features, b"xmpp-session") && !scan::contains(&features, b"<optional");
    if session_required {
        request.push_str(stanzas::SESSION);
    }
    if spec.presence {
        request.push_str(stanzas::PRESENCE);
    }
    writer.write_all(request.as_bytes()).await?;
    let jid = loop {
        let answer = reader.negotiation_element("the bind answer").await?;
        if scan::attr(&answer, "id") != Some(b"bind") {
            continue;
        }
        let jid = scan::child_text(&answer, "jid")
            .filter(|_| scan::attr(&answer, "type") == Some(b"result"))
            .ok_or_else(|| anyhow!("bind failed: {}", String::from_utf8_lossy(&answer)))?;
        break String::from_utf8_lossy(jid).into_owned();
    };
    Ok(Session {
        reader,
        writer,
        jid,
    })
}

/// An accepted XEP-0114 component connection.
pub struct Component {
    /// Reading side.
    pub reader: Reader,
    /// Writing side.
    pub writer: OwnedWriteHalf,
}

/// Connects to the component port as `jid` and performs the handshake.
pub async fn component(addr: SocketAddr, jid: &str, secret: &str) -> anyhow::Result<Component> {
    let tcp = tokio::time::timeout(NEGOTIATION_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| anyhow!("TCP connect to {addr} timed out"))?
        .with_context(|| format!("cannot connect to {addr}"))?;
    tcp.set_nodelay(true)?;
    let (read, mut writer) = tcp.into_split();
    let mut reader = Reader::new(read);
    writer
        .write_all(stanzas::component_header(jid).as_bytes())
        .await?;
    let header = loop {
        let (is_open, bytes) = reader.negotiation_event("the component header").await?;
        if is_open {
            break bytes;
        }
        check_stream_error(&bytes)?;
    };
    let id =
        scan::attr(&header, "id").ok_or_else(|| anyhow!("component stream header has no id"))?;
    let digest = Sha1::digest([id, secret.as_bytes()].concat());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    writer
        .write_all(format!("<handshake>{hex}</handshake>").as_bytes())
        .await?;
    let answer = reader.negotiation_element("the handshake answer").await?;
    if scan::name(&answer) != b"handshake" {
        bail!(
            "component handshake for {jid} refused: {}",
            String::from_utf8_lossy(&answer)
        );
    }
    Ok(Component { reader, writer })
}

/// Sends the closing tag; errors are irrelevant at the end of a run.
pub async fn close(writer: &mut OwnedWriteHalf) {
    let _ = writer.write_all(b"</stream:stream>").await;
    let _ = writer.shutdown().await;
}
