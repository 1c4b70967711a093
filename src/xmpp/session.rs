//! One connected component stream: a reader that hands stanzas to the router and
//! resolves barrier pings, and a single writer that drains the outgoing queue in
//! batches (one `write` per batch, not per stanza).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use minidom::Element;
use stanza_reader::{Item, ReadError};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use xmpp_parsers::jid::BareJid;
use xmpp_parsers::ns;

use super::handshake::{Connected, Reader};
use super::multicast::{self, Multicast};
use super::outbound::{OutboundQueue, Outgoing};
use super::privilege::Privileges;
use super::queries::Queries;
use super::render::escape;
use super::stranger::StoreIdentity;
use super::Inbound;

/// How often the writer pings the server: keeps NATs and the server's idle timers from
/// closing a quiet stream, and detects a dead peer within about two periods.
pub const KEEPALIVE: Duration = Duration::from_secs(30);
/// How long the server may stay silent before the stream counts as dead: three
/// keepalive periods, each of which sends a ping the server routes straight back.
const READ_SILENCE: Duration = Duration::from_secs(3 * 30);
/// Largest batch written in one go, in bytes. Large enough to amortise the syscall,
/// small enough not to hold back the first stanza of a burst.
const MAX_BATCH_BYTES: usize = 256 * 1024;
/// How long a clean shutdown waits for the server to close its side.
const CLOSE_GRACE: Duration = Duration::from_secs(3);
/// Prefix of the ids of the writer's own pings, so the reader can tell them apart. The
/// full id is `pubsubd-ping-<store tag>-<session token>-<n>`: with several connections
/// for one component JID (several pubsubd processes on ejabberd), the server balances
/// every stanza for the domain across them, our pings included, so a connection may
/// read another one's; the token tells them apart, and the store tag tells a sibling
/// (same store) from a stranger ([`super::stranger`]).
///
/// The pings are addressed to the component's own JID: the server routes them back to
/// us after everything written before them, so a ping arriving (or its answer, should
/// anything answer it) is the receipt. The reader takes them itself; they never reach
/// the router, so barriers resolve even while shutdown has stopped request handling.
const PING_ID_PREFIX: &str = "pubsubd-ping-";
/// How long barriers wait before the writer pings again. A ping that the server routed to
/// another connection of the same JID never comes back; a later ping proves receipt
/// just as well (the server handles the stream in order). Short, because fan-out waits
/// on it; one extra ping per period costs nothing.
const BARRIER_REPING: Duration = Duration::from_millis(250);

/// Why a stream was lost.
#[derive(Debug, thiserror::Error)]
pub enum LostReason {
    #[error("write failed: {0}")]
    Write(std::io::Error),
    #[error("read failed: {0}")]
    Read(std::io::Error),
    /// The bytes the server sent are not well-formed XML, or a single name or value
    /// was longer than the reader takes at all (see [`stanza_reader::TOKEN_LIMIT_FACTOR`]).
    /// Nothing a user can send should get here: it is logged with the sender.
    #[error("unreadable XML from the server: {0}")]
    MalformedXml(std::io::Error),
    #[error("stream error from server: {0}")]
    StreamError(String),
    #[error("server closed the stream")]
    ServerClosed,
    #[error("the connection closed")]
    ConnectionClosed,
    #[error("nothing read from the server for {0:?}")]
    Silent(Duration),
    #[error("the reader stopped")]
    ReaderStopped,
}

impl LostReason {
    /// A short stable label, for the `reason` of the disconnect counter.
    pub fn label(&self) -> &'static str {
        match self {
            LostReason::Write(_) => "write-failed",
            LostReason::Read(_) => "read-failed",
            LostReason::MalformedXml(_) => "malformed-xml",
            LostReason::StreamError(_) => "stream-error",
            LostReason::ServerClosed => "server-closed",
            LostReason::ConnectionClosed => "connection-closed",
            LostReason::Silent(_) => "silent",
            LostReason::ReaderStopped => "reader-stopped",
        }
    }
}

/// How a session ended.
#[derive(Debug)]
pub enum SessionEnd {
    /// The stream broke; `unsent` holds stanzas that were being written and must be
    /// written again on the next stream.
    Lost {
        reason: LostReason,
        unsent: Vec<String>,
    },
    /// A clean shutdown: the stream was closed with `</stream:stream>`.
    Closed,
    /// Every [`super::Outbound`] handle is gone.
    QueueClosed,
}

/// Pings sent and not yet answered, by number, with the barrier waiting on each.
type PendingPings = Arc<Mutex<BTreeMap<u64, Option<oneshot::Sender<bool>>>>>;

/// The pending pings of every live session of this process, by session token. With
/// several connections for the component JID (`connections` > 1 on ejabberd) the server
/// balances our pings across them, so a ping written on one connection may be read on
/// another; it is a receipt all the same (the server routed it after everything written
/// before it on its own connection), so whichever reader gets it resolves it here.
static SESSIONS: std::sync::LazyLock<Mutex<std::collections::HashMap<u64, PendingPings>>> =
    std::sync::LazyLock::new(Mutex::default);

/// The tokens of every session this process has had, live or ended (one per stream,
/// so a handful): a ping of this store with another token is another process's.
static OWN_TOKENS: std::sync::LazyLock<Mutex<std::collections::HashSet<u64>>> =
    std::sync::LazyLock::new(Mutex::default);

/// Whether `token` is one of this process's sessions, live or ended.
fn own_token(token: u64) -> bool {
    OWN_TOKENS
        .lock()
        .is_ok_and(|tokens| tokens.contains(&token))
}

/// A session's entry in [`SESSIONS`], removed when the session ends.
struct Registered(u64);

impl Registered {
    fn new(token: u64, pending: PendingPings) -> Registered {
        if let Ok(mut sessions) = SESSIONS.lock() {
            sessions.insert(token, pending);
        }
        if let Ok(mut tokens) = OWN_TOKENS.lock() {
            tokens.insert(token);
        }
        Registered(token)
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        if let Ok(mut sessions) = SESSIONS.lock() {
            sessions.remove(&self.0);
        }
    }
}

/// The pending pings of the live session `token` of this process, if there is one (not
/// for another process's ping, or a stream that has ended).
fn live_session(token: u64) -> Option<PendingPings> {
    SESSIONS
        .lock()
        .ok()
        .and_then(|sessions| sessions.get(&token).cloned())
}

/// What a stream reads into and consults, the same for every stream of a supervisor.
pub struct Peers<I> {
    /// Where incoming stanzas go.
    pub inbound: Arc<I>,
    /// The multicast service pings go to, if one is configured.
    pub multicast: Option<Arc<Multicast>>,
    /// pubsubd's own queries, whose answers go to their askers, not to `inbound`.
    pub queries: Arc<Queries>,
    /// What the server grants (XEP-0356), learned from its message on each stream.
    pub privileges: Arc<Privileges>,
    /// Cancelled once shutdown has begun: read nothing new.
    pub draining: CancellationToken,
    /// The store's tag, carried by every ping, and whether the store is single-instance.
    pub identity: StoreIdentity,
    /// The component JID, named when a stranger is seen on it.
    pub jid: BareJid,
}

/// Runs one connected stream until it breaks or shutdown is requested.
pub async fn run<I: Inbound>(
    conn: Connected,
    jid: &BareJid,
    queue: &mut OutboundQueue,
    carry_over: Vec<String>,
    peers: Peers<I>,
    shutdown: &CancellationToken,
) -> SessionEnd {
    let Peers {
        inbound,
        multicast,
        queries,
        privileges,
        draining,
        identity,
        jid: own_jid,
    } = peers;
    let pending: PendingPings = Arc::default();
    let token: u64 = rand::random();
    let _registered = Registered::new(token, pending.clone());
    if let Some(m) = &multicast {
        m.stream_started();
    }
    privileges.stream_started();
    let (reader_done_tx, mut reader_done) = oneshot::channel::<LostReason>();
    let reader_task = tokio::spawn(read_loop(
        conn.reader,
        inbound,
        Pings {
            pending: pending.clone(),
            token,
            identity,
            jid: own_jid,
            multicast: multicast.clone(),
            bounces_seen: multicast.as_ref().map_or(0, |m| m.bounces()),
            queries,
            privileges,
        },
        reader_done_tx,
        draining,
    ));
    let mut writer = Writer {
        socket: conn.writer,
        from: jid.to_string(),
        to: jid.domain().to_string(),
        multicast,
        pending,
        token,
        store_tag: identity.tag,
        next_ping: 0,
        reping: reping_timer(),
        buf: Vec::with_capacity(MAX_BATCH_BYTES),
        batch: Vec::new(),
    };
    let end = writer
        .run(queue, carry_over, &mut reader_done, shutdown)
        .await;
    if matches!(end, SessionEnd::Closed) {
        // Give the server a moment to answer with its own footer so the close is clean.
        let _ = tokio::time::timeout(CLOSE_GRACE, &mut reader_done).await;
    }
    reader_task.abort();
    end
}

struct Writer {
    socket: TcpStream,
    from: String,
    to: String,
    /// Where pings go instead of `to` when notifications may be grouped.
    multicast: Option<Arc<Multicast>>,
    pending: PendingPings,
    /// Distinguishes this session's pings from those of other connections.
    token: u64,
    /// Tells pings of this store's processes from a stranger's.
    store_tag: u64,
    next_ping: u64,
    /// Fires [`BARRIER_REPING`] after the last ping.
    reping: tokio::time::Interval,
    buf: Vec<u8>,
    /// The stanzas in `buf`, kept until the write succeeds so a broken write can be
    /// repeated on the next stream.
    batch: Vec<String>,
}

impl Writer {
    async fn run(
        &mut self,
        queue: &mut OutboundQueue,
        carry_over: Vec<String>,
        reader_done: &mut oneshot::Receiver<LostReason>,
        shutdown: &CancellationToken,
    ) -> SessionEnd {
        for stanza in carry_over {
            self.push_stanza(stanza);
        }
        if self.multicast.is_some() {
            // Asks the multicast service at once, so that the first fan-out already
            // knows whether it may group recipients.
            self.push_ping(None);
        }
        if let Err(e) = self.write_batch().await {
            return self.lost(e);
        }
        let mut keepalive = tokio::time::interval(KEEPALIVE);
        keepalive.tick().await;
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => {
                    // Everything already queued is sent before the stream is closed.
                    while let Ok(item) = queue.try_recv() {
                        self.push(item);
                    }
                    self.buf.extend_from_slice(b"</stream:stream>");
                    let _ = self.write_batch().await;
                    let _ = self.socket.shutdown().await;
                    return SessionEnd::Closed;
                }
                reason = &mut *reader_done => {
                    let reason = reason.unwrap_or(LostReason::ReaderStopped);
                    return SessionEnd::Lost { reason, unsent: Vec::new() };
                }
                item = queue.recv() => {
                    let Some(item) = item else { return SessionEnd::QueueClosed };
                    self.push(item);
                    while self.buf.len() < MAX_BATCH_BYTES {
                        match queue.try_recv() {
                            Ok(item) => self.push(item),
                            Err(_) => break,
                        }
                    }
                    if let Err(e) = self.write_batch().await {
                        return self.lost(e);
                    }
                }
                _ = keepalive.tick() => {
                    self.push_ping(None);
                    if let Err(e) = self.write_batch().await {
                        return self.lost(e);
                    }
                }
                _ = self.reping.tick(), if self.barriers_waiting() => {
                    self.push_ping(None);
                    if let Err(e) = self.write_batch().await {
                        return self.lost(e);
                    }
                }
            }
        }
    }

    fn lost(&mut self, e: std::io::Error) -> SessionEnd {
        SessionEnd::Lost {
            reason: LostReason::Write(e),
            unsent: std::mem::take(&mut self.batch),
        }
    }

    fn push(&mut self, item: Outgoing) {
        match item {
            Outgoing::Stanza(s) => self.push_stanza(s),
            Outgoing::Barrier(done) => self.push_ping(Some(done)),
        }
    }

    fn push_stanza(&mut self, s: String) {
        self.buf.extend_from_slice(s.as_bytes());
        self.batch.push(s);
    }

    fn push_ping(&mut self, done: Option<oneshot::Sender<bool>>) {
        let n = self.next_ping;
        self.next_ping += 1;
        if let Ok(mut pending) = self.pending.lock() {
            pending.insert(n, done);
        }
        self.reping.reset();
        let id = format!("{PING_ID_PREFIX}{:x}-{:x}-{n}", self.store_tag, self.token);
        let ping = match &self.multicast {
            // The service answers after routing every group written before: the
            // receipt covers those, and the one-by-one stanzas routed before it.
            Some(m) if m.pings_to_service() => match m.jid() {
                Some(service) => multicast::ping(&id, &self.from, &service),
                None => self.home_ping(&id),
            },
            _ => self.home_ping(&id),
        };
        self.buf.extend_from_slice(ping.as_bytes());
    }

    /// An XEP-0199 ping to the server itself.
    fn home_ping(&self, id: &str) -> String {
        format!(
            "<iq type='get' id='{id}' from='{}' to='{}'><ping xmlns='urn:xmpp:ping'/></iq>",
            escape(&self.from),
            escape(&self.to)
        )
    }

    /// Whether a barrier waits for an answer.
    fn barriers_waiting(&self) -> bool {
        self.pending
            .lock()
            .map(|p| p.values().any(Option::is_some))
            .unwrap_or(false)
    }

    async fn write_batch(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.socket.write_all(&self.buf).await?;
        self.buf.clear();
        self.batch.clear();
        Ok(())
    }
}

fn reping_timer() -> tokio::time::Interval {
    let mut t = tokio::time::interval(BARRIER_REPING);
    t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    t
}

/// Resolves every barrier on a ping up to `n`: the answer to ping `n` proves that the
/// server has read everything written before it, earlier pings included. With
/// `confirms` false they resolve as refused.
fn answered(pending: &PendingPings, n: u64, confirms: bool) {
    let resolved = match pending.lock() {
        Ok(mut p) => {
            let later = p.split_off(&(n + 1));
            std::mem::replace(&mut *p, later)
        }
        Err(_) => return,
    };
    for waiter in resolved.into_values().flatten() {
        let _ = waiter.send(confirms);
    }
}

/// What the reader needs to settle barriers.
struct Pings {
    pending: PendingPings,
    token: u64,
    identity: StoreIdentity,
    jid: BareJid,
    multicast: Option<Arc<Multicast>>,
    /// The multicast service's bounce count at the last answer this reader settled.
    bounces_seen: u64,
    queries: Arc<Queries>,
    privileges: Arc<Privileges>,
}

impl Pings {
    /// Whether an answer to a ping confirms what was written before the ping: not when
    /// the multicast service bounced a group since the last answer (its bounce arrives
    /// before its answer to any later ping). Also tells the service's state its answer.
    fn confirms(&mut self, answer: &Element) -> bool {
        let Some(m) = &self.multicast else {
            return true;
        };
        if m.is_from_service(answer) {
            m.answered(answer);
        }
        let bounces = m.bounces();
        let confirms = bounces == self.bounces_seen;
        self.bounces_seen = bounces;
        confirms
    }
}

async fn read_loop<I: Inbound>(
    mut reader: Reader,
    inbound: Arc<I>,
    mut pings: Pings,
    done: oneshot::Sender<LostReason>,
    draining: CancellationToken,
) {
    let mut accepting = true;
    let reason = loop {
        let next = tokio::select! {
            next = tokio::time::timeout(READ_SILENCE, reader.next()) => next,
            _ = draining.cancelled(), if accepting => {
                // Shutting down: hand nothing new to the router, but keep reading so
                // barrier answers and the server's closing footer still arrive.
                accepting = false;
                continue;
            }
        };
        let el = match next {
            Ok(Ok(Item::Stanza(el))) => el,
            Ok(Ok(Item::Refused { head, refusal })) => {
                if let Some(request) = super::refused::hand_on(&head, refusal) {
                    if accepting {
                        inbound.deliver(request).await;
                    }
                }
                continue;
            }
            Ok(Ok(Item::Header(_))) => continue,
            Ok(Ok(Item::Footer)) => break LostReason::ServerClosed,
            Ok(Err(ReadError::Eof)) => break LostReason::ConnectionClosed,
            Ok(Err(ReadError::Io(e))) if e.kind() == std::io::ErrorKind::InvalidData => {
                // A bug: report it with whoever sent the stanza it broke in.
                tracing::error!(
                    error = %e,
                    from = reader.partial_head().and_then(|h| h.attr("from")).unwrap_or("unknown (between stanzas)"),
                    "the component stream broke on what the server sent"
                );
                break LostReason::MalformedXml(e);
            }
            Ok(Err(ReadError::Io(e))) => break LostReason::Read(e),
            Err(_) => break LostReason::Silent(READ_SILENCE),
        };
        if let Some(m) = pings.multicast.as_ref().filter(|m| is_bounce(m, &el)) {
            m.bounced(&el);
            continue;
        }
        if pings.queries.take(&el) || pings.privileges.take(&el) {
            continue;
        }
        match own_ping(&el, pings.identity.tag, pings.token) {
            OwnPing::Ours(n) => {
                let confirms = pings.confirms(&el);
                answered(&pings.pending, n, confirms);
                continue;
            }
            OwnPing::Sibling(other, n) => {
                if let Some(sibling) = live_session(other) {
                    let confirms = pings.confirms(&el);
                    answered(&sibling, n, confirms);
                    tracing::trace!("a sibling connection's ping resolved");
                } else {
                    if !own_token(other) {
                        if let Some(m) = &pings.multicast {
                            m.another_process();
                        }
                    }
                    tracing::trace!("an earlier stream's or another process's ping dropped");
                }
                continue;
            }
            OwnPing::Stranger => {
                super::stranger::seen(&pings.jid, pings.identity.single_instance);
                continue;
            }
            OwnPing::No => {}
        }
        if el.name() == "error" && el.ns() == ns::STREAM {
            break LostReason::StreamError(describe_stream_error(&el));
        }
        if accepting {
            inbound.deliver(el).await;
        } else {
            tracing::debug!(
                name = el.name(),
                "stanza arrived during shutdown; not handled"
            );
        }
    };
    let _ = done.send(reason);
}

/// Whether `el` is the multicast service bouncing a group of notifications.
fn is_bounce(m: &Multicast, el: &Element) -> bool {
    el.name() == "message" && el.attr("type") == Some("error") && m.is_from_service(el)
}

/// What an element is with respect to the writers' pings.
#[derive(Debug, PartialEq, Eq)]
enum OwnPing {
    /// This session's ping number `n`, routed back to us (or answered).
    Ours(u64),
    /// A ping of another session of this store (a sibling connection of this process,
    /// another process on the same store, or an earlier stream), or its answer: its
    /// token and number.
    Sibling(u64, u64),
    /// A pubsubd ping without this store's tag: a stranger's.
    Stranger,
    /// Not a pubsubd barrier ping.
    No,
}

fn own_ping(el: &Element, store_tag: u64, token: u64) -> OwnPing {
    if el.name() != "iq" || !matches!(el.attr("type"), Some("get" | "result" | "error")) {
        return OwnPing::No;
    }
    let Some(rest) = el.attr("id").and_then(|id| id.strip_prefix(PING_ID_PREFIX)) else {
        return OwnPing::No;
    };
    let mut parts = rest.splitn(3, '-');
    let hex = |p: Option<&str>| p.and_then(|p| u64::from_str_radix(p, 16).ok());
    let (tag, session, n) = (
        hex(parts.next()),
        hex(parts.next()),
        parts.next().and_then(|n| n.parse::<u64>().ok()),
    );
    match (tag, session, n) {
        (Some(tag), Some(t), Some(n)) if tag == store_tag && t == token => OwnPing::Ours(n),
        (Some(tag), Some(t), Some(n)) if tag == store_tag => OwnPing::Sibling(t, n),
        _ => OwnPing::Stranger,
    }
}

fn describe_stream_error(el: &Element) -> String {
    el.children()
        .find(|c| c.ns() == ns::XMPP_STREAMS && c.name() != "text")
        .map(|c| c.name().to_string())
        .unwrap_or_else(|| "unknown condition".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iq(ty: &str, id: &str) -> Element {
        format!("<iq xmlns='jabber:component:accept' type='{ty}' id='{id}' from='localhost' to='ps.localhost'/>")
            .parse()
            .expect("test xml")
    }

    #[test]
    fn every_lost_reason_is_a_declared_metric_label() {
        let io = || std::io::Error::other("x");
        for reason in [
            LostReason::Write(io()),
            LostReason::Read(io()),
            LostReason::MalformedXml(io()),
            LostReason::StreamError("conflict".into()),
            LostReason::ServerClosed,
            LostReason::ConnectionClosed,
            LostReason::Silent(READ_SILENCE),
            LostReason::ReaderStopped,
        ] {
            assert!(
                crate::metrics::DISCONNECT_REASONS.contains(&reason.label()),
                "{reason}"
            );
        }
    }

    #[test]
    fn pings_are_matched_to_their_session_their_store_or_a_stranger() {
        let ours = |ty, id| own_ping(&iq(ty, id), 0xab, 0xff);
        assert_eq!(ours("get", "pubsubd-ping-ab-ff-7"), OwnPing::Ours(7));
        assert_eq!(ours("result", "pubsubd-ping-ab-ff-7"), OwnPing::Ours(7));
        assert_eq!(ours("error", "pubsubd-ping-ab-ff-8"), OwnPing::Ours(8));
        assert_eq!(
            ours("get", "pubsubd-ping-ab-fe-7"),
            OwnPing::Sibling(0xfe, 7)
        );
        assert_eq!(ours("get", "pubsubd-ping-ac-ff-7"), OwnPing::Stranger);
        // The id of a pubsubd from before store tags.
        assert_eq!(ours("result", "pubsubd-ping-ff-7"), OwnPing::Stranger);
        assert_eq!(ours("result", "pubsubd-ping-7"), OwnPing::Stranger);
        assert_eq!(ours("set", "pubsubd-ping-ab-ff-7"), OwnPing::No);
        assert_eq!(ours("result", "abc"), OwnPing::No);
    }

    #[test]
    fn a_sibling_connection_resolves_a_live_session_ping_only() {
        let pending: PendingPings = Arc::default();
        let (tx, mut rx) = oneshot::channel();
        pending.lock().expect("lock").insert(3, Some(tx));
        let token = 0x5eed_0001;
        {
            let _live = Registered::new(token, pending.clone());
            assert!(live_session(token + 1).is_none());
            assert!(rx.try_recv().is_err());
            let sibling = live_session(token).expect("live");
            answered(&sibling, 3, true);
            assert_eq!(rx.try_recv(), Ok(true));
        }
        assert!(
            live_session(token).is_none(),
            "an ended session is forgotten"
        );
    }

    #[test]
    fn an_answer_resolves_every_earlier_barrier_and_no_later_one() {
        let pending: PendingPings = Arc::default();
        let mut waits = Vec::new();
        for n in 0..4 {
            let (tx, rx) = oneshot::channel();
            pending.lock().expect("lock").insert(n, Some(tx));
            waits.push(rx);
        }
        answered(&pending, 2, true);
        assert_eq!(waits[0].try_recv(), Ok(true));
        assert_eq!(waits[2].try_recv(), Ok(true));
        assert!(waits[3].try_recv().is_err());
        assert_eq!(pending.lock().expect("lock").len(), 1);
    }

    #[test]
    fn an_answer_after_a_multicast_bounce_refuses_instead_of_confirming() {
        let service = "multicast.localhost";
        let m = Arc::new(Multicast::new(service.into(), 100));
        let mut pings = Pings {
            pending: Arc::default(),
            token: 1,
            identity: StoreIdentity {
                tag: 1,
                single_instance: false,
            },
            jid: BareJid::new("ps.localhost").expect("jid"),
            multicast: Some(m.clone()),
            bounces_seen: 0,
            queries: Arc::default(),
            privileges: Arc::default(),
        };
        let answer: Element = format!(
            "<iq xmlns='jabber:component:accept' type='result' id='pubsubd-ping-1-0' from='{service}'>\
             <query xmlns='{}'><feature var='{}'/></query></iq>",
            ns::DISCO_INFO,
            multicast::NS_ADDRESS
        )
        .parse()
        .expect("answer");
        assert!(pings.confirms(&answer));
        assert!(m.limit().is_some(), "the answer turned grouping on");
        let bounce: Element = format!(
            "<message xmlns='jabber:component:accept' type='error' from='{service}' id='ps-9'>\
             <error type='modify'><not-acceptable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>"
        )
        .parse()
        .expect("bounce");
        assert!(is_bounce(&m, &bounce));
        assert!(!is_bounce(&m, &answer));
        m.bounced(&bounce);
        assert!(!pings.confirms(&answer), "the first answer after a bounce");
        assert!(pings.confirms(&answer), "later answers confirm again");
        assert_eq!(m.limit(), None, "grouping stays off on this stream");

        let (tx, mut rx) = oneshot::channel();
        pings.pending.lock().expect("lock").insert(0, Some(tx));
        answered(&pings.pending, 0, false);
        assert_eq!(rx.try_recv(), Ok(false));
    }
}
