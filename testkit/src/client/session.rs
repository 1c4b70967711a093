//! `Client`: a logged-in c2s session that tests drive stanza by stanza.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use jid::Jid;
use minidom::Element;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::connection::{self, Incoming, Outgoing};
use super::error::ClientError;
use super::negotiate;
use super::stanza::{self, Availability};
use crate::account::Account;

/// How long [`Client::iq`] waits for the answer: generous, because a test on
/// a busy CI machine should fail on a wrong answer, not on a slow one.
pub const DEFAULT_IQ_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a whole login may take by default: room for a thousand clients
/// connecting at once to a single-threaded server on a busy two-core machine.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(60);

/// How long [`Client::close`] waits for the connection task to finish.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Numbers the ids the client assigns and the default resources, unique
/// in the process so that logs of concurrent clients can be told apart.
static SEQUENCE: AtomicU64 = AtomicU64::new(0);

fn next_sequence() -> u64 {
    SEQUENCE.fetch_add(1, Ordering::Relaxed)
}

/// How [`Client::connect_with`] sets up the session.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// The resource to bind; `None` picks a unique `testkit-N`.
    pub resource: Option<String>,
    /// Send `<presence/>` after binding. Needed to receive messages sent to
    /// the bare JID (pubsub notifications are); on by default.
    pub initial_presence: bool,
    /// Register the account (XEP-0077) on the same connection first.
    pub register: bool,
    /// Limit for the whole login, from TCP connect to presence processed.
    pub timeout: Duration,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self {
            resource: None,
            initial_presence: true,
            register: false,
            timeout: DEFAULT_CONNECT_TIMEOUT,
        }
    }
}

/// A raw-XML XMPP client session over plaintext c2s with SASL PLAIN.
///
/// A background task owns the socket; stanzas that arrive while the test
/// waits for something else are buffered in order, never dropped. Dropping
/// the client closes the stream.
#[derive(Debug)]
pub struct Client {
    jid: String,
    bare_jid: String,
    outgoing: mpsc::UnboundedSender<Outgoing>,
    incoming: mpsc::UnboundedReceiver<Incoming>,
    buffer: VecDeque<Element>,
    closed: Option<String>,
    task: Option<JoinHandle<()>>,
}

/// A cloneable handle that sends stanzas on a client's connection from other
/// tasks (e.g. a load generator's publisher loop).
#[derive(Debug, Clone)]
pub struct StanzaSender {
    outgoing: mpsc::UnboundedSender<Outgoing>,
}

impl StanzaSender {
    /// Queues `stanza` for sending.
    pub fn send(&self, stanza: Element) -> Result<(), ClientError> {
        self.outgoing
            .send(Outgoing::Stanza(stanza))
            .map_err(|_| ClientError::Disconnected("connection task has ended".into()))
    }
}

impl Client {
    /// Logs in as `jid` (a bare JID such as `alice@localhost`) and sends
    /// initial presence.
    pub async fn connect(addr: SocketAddr, jid: &str, password: &str) -> Result<Self, ClientError> {
        Self::connect_with(addr, jid, password, ConnectOptions::default()).await
    }

    /// Logs in as `account`, sending initial presence.
    pub async fn login(addr: SocketAddr, account: &Account) -> Result<Self, ClientError> {
        Self::connect(addr, &account.jid(), account.password()).await
    }

    /// Registers `jid` with `password` by XEP-0077 on the same connection,
    /// then logs in as it and sends initial presence.
    pub async fn register_and_connect(
        addr: SocketAddr,
        jid: &str,
        password: &str,
    ) -> Result<Self, ClientError> {
        let options = ConnectOptions {
            register: true,
            ..ConnectOptions::default()
        };
        Self::connect_with(addr, jid, password, options).await
    }

    /// Connects with explicit [`ConnectOptions`]: TCP, stream header,
    /// (registration), SASL PLAIN, stream restart, resource binding, session
    /// if the server requires it, (initial presence).
    pub async fn connect_with(
        addr: SocketAddr,
        jid: &str,
        password: &str,
        options: ConnectOptions,
    ) -> Result<Self, ClientError> {
        let limit = options.timeout;
        tokio::time::timeout(limit, Self::establish(addr, jid, password, options))
            .await
            .map_err(|_| ClientError::Timeout {
                after: limit,
                what: format!("login of {jid}"),
            })?
    }

    async fn establish(
        addr: SocketAddr,
        jid: &str,
        password: &str,
        options: ConnectOptions,
    ) -> Result<Self, ClientError> {
        let (username, domain) = split_bare_jid(jid)?;
        let (mut stream, features) = negotiate::open(addr, &domain).await?;
        if options.register {
            negotiate::register(&mut stream, &username, password).await?;
        }
        let (mut stream, features) =
            negotiate::authenticate(stream, &features, &domain, &username, password).await?;
        let resource = options
            .resource
            .unwrap_or_else(|| format!("testkit-{}", next_sequence()));
        let full_jid = negotiate::bind(&mut stream, &features, Some(&resource)).await?;
        let bare_jid = full_jid.split('/').next().unwrap_or_default().to_string();
        let (outgoing, incoming, task) = connection::spawn(stream, domain);
        let mut client = Self {
            jid: full_jid,
            bare_jid,
            outgoing,
            incoming,
            buffer: VecDeque::new(),
            closed: None,
            task: Some(task),
        };
        if options.initial_presence {
            client.become_available().await?;
        }
        Ok(client)
    }

    /// Sends initial presence and waits until the server has processed it,
    /// so that messages sent to the bare JID right after login reach this
    /// session instead of offline storage. The server handles a session's
    /// stanzas in order, so a ping answered means the presence was handled.
    /// The server's echo of our own presence is swallowed.
    async fn become_available(&mut self) -> Result<(), ClientError> {
        self.send_presence(Availability::Available)?;
        let domain = self
            .bare_jid
            .split('@')
            .nth(1)
            .unwrap_or_default()
            .to_string();
        self.iq_timeout(stanza::ping(&domain), negotiate::NEGOTIATION_TIMEOUT)
            .await?;
        let own = self.jid.clone();
        self.buffer
            .retain(|e| !(e.name() == "presence" && e.attr("from") == Some(own.as_str())));
        Ok(())
    }

    /// The full JID the server bound (`user@domain/resource`).
    pub fn jid(&self) -> &str {
        &self.jid
    }

    /// The bare JID (`user@domain`).
    pub fn bare_jid(&self) -> &str {
        &self.bare_jid
    }

    /// Queues `stanza` for sending; it goes out in order with everything
    /// else this client sends.
    pub fn send(&self, stanza: Element) -> Result<(), ClientError> {
        self.sender().send(stanza)
    }

    /// A handle for sending from other tasks.
    pub fn sender(&self) -> StanzaSender {
        StanzaSender {
            outgoing: self.outgoing.clone(),
        }
    }

    /// Sends broadcast presence.
    pub fn send_presence(&self, availability: Availability) -> Result<(), ClientError> {
        self.send(stanza::presence(availability))
    }

    /// Sends an `<iq/>` (assigning an id unless it has one) and waits up to
    /// [`DEFAULT_IQ_TIMEOUT`] for the matching `result` or `error`, which is
    /// returned whole; check `type` (or use [`stanza::error_condition`]).
    /// Other stanzas that arrive meanwhile stay buffered.
    pub async fn iq(&mut self, iq: Element) -> Result<Element, ClientError> {
        self.iq_timeout(iq, DEFAULT_IQ_TIMEOUT).await
    }

    /// [`Self::iq`] with an explicit timeout.
    pub async fn iq_timeout(
        &mut self,
        mut iq: Element,
        timeout: Duration,
    ) -> Result<Element, ClientError> {
        let id = match iq.attr("id") {
            Some(id) => id.to_string(),
            None => {
                let id = format!("tk{}", next_sequence());
                stanza::set_attr(&mut iq, "id", &id);
                id
            }
        };
        self.send(iq)?;
        self.wait_for(|e| stanza::is_iq_response(e, &id), timeout)
            .await
            .map_err(|e| match e {
                ClientError::Timeout { after, .. } => ClientError::Timeout {
                    after,
                    what: format!("the answer to iq {id}"),
                },
                other => other,
            })
    }

    /// The next stanza (buffered first), or `None` if nothing arrives within
    /// `timeout` or the connection is closed.
    pub async fn recv_timeout(&mut self, timeout: Duration) -> Option<Element> {
        if let Some(element) = self.buffer.pop_front() {
            return Some(element);
        }
        let deadline = Instant::now() + timeout;
        self.receive_until(deadline).await.ok().flatten()
    }

    /// The first stanza (buffered or new) for which `predicate` is true.
    /// Stanzas that do not match stay buffered in order.
    ///
    /// Fails with [`ClientError::Timeout`] (listing what did arrive) or
    /// [`ClientError::Disconnected`].
    pub async fn wait_for<P>(
        &mut self,
        predicate: P,
        timeout: Duration,
    ) -> Result<Element, ClientError>
    where
        P: Fn(&Element) -> bool,
    {
        if let Some(index) = self.buffer.iter().position(&predicate) {
            if let Some(element) = self.buffer.remove(index) {
                return Ok(element);
            }
        }
        let deadline = Instant::now() + timeout;
        let mut stashed = Vec::new();
        let result = loop {
            match self.receive_until(deadline).await {
                Ok(Some(element)) if predicate(&element) => break Ok(element),
                Ok(Some(element)) => stashed.push(element),
                Ok(None) => {
                    break Err(ClientError::Timeout {
                        after: timeout,
                        what: format!(
                            "a matching stanza (got {} others: {})",
                            stashed.len(),
                            summarize(&stashed)
                        ),
                    })
                }
                Err(e) => break Err(e),
            }
        };
        self.buffer.extend(stashed);
        result
    }

    /// Everything received so far, without waiting.
    pub fn drain(&mut self) -> Vec<Element> {
        while let Ok(incoming) = self.incoming.try_recv() {
            self.accept(incoming);
        }
        self.buffer.drain(..).collect()
    }

    /// Why the connection ended, once it has.
    pub fn closed_reason(&mut self) -> Option<&str> {
        while let Ok(incoming) = self.incoming.try_recv() {
            self.accept(incoming);
        }
        self.closed.as_deref()
    }

    /// Sends `</stream:stream>` and waits (briefly) for the server to close.
    pub async fn close(mut self) -> Result<(), ClientError> {
        // Fails only if the task is already gone, which is closed enough.
        let _ = self.outgoing.send(Outgoing::Close);
        if let Some(task) = self.task.take() {
            tokio::time::timeout(CLOSE_TIMEOUT, task)
                .await
                .map_err(|_| ClientError::Timeout {
                    after: CLOSE_TIMEOUT,
                    what: "the stream to close".into(),
                })?
                .map_err(|e| ClientError::Disconnected(format!("connection task failed: {e}")))?;
        }
        Ok(())
    }

    /// Receives the next element from the connection task, `Ok(None)` at the
    /// deadline, or an error once the connection has closed.
    async fn receive_until(&mut self, deadline: Instant) -> Result<Option<Element>, ClientError> {
        if let Some(reason) = &self.closed {
            return Err(ClientError::Disconnected(reason.clone()));
        }
        match tokio::time::timeout_at(deadline, self.incoming.recv()).await {
            Err(_) => Ok(None),
            Ok(Some(Incoming::Stanza(element))) => Ok(Some(element)),
            Ok(Some(Incoming::Closed(reason))) => {
                self.closed = Some(reason.clone());
                Err(ClientError::Disconnected(reason))
            }
            Ok(None) => {
                let reason = "connection task ended".to_string();
                self.closed = Some(reason.clone());
                Err(ClientError::Disconnected(reason))
            }
        }
    }

    fn accept(&mut self, incoming: Incoming) {
        match incoming {
            Incoming::Stanza(element) => self.buffer.push_back(element),
            Incoming::Closed(reason) => self.closed = Some(reason),
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        // The task sees the channel close and sends the closing tag itself.
        let _ = self.outgoing.send(Outgoing::Close);
    }
}

/// Splits `user@domain` into its parts, rejecting anything else.
pub(super) fn split_bare_jid(jid: &str) -> Result<(String, String), ClientError> {
    let invalid = |reason: String| ClientError::InvalidJid {
        jid: jid.to_string(),
        reason,
    };
    let parsed = Jid::new(jid).map_err(|e| invalid(e.to_string()))?;
    let node = parsed
        .node()
        .ok_or_else(|| invalid("no local part".into()))?;
    Ok((
        node.as_str().to_string(),
        parsed.domain().as_str().to_string(),
    ))
}

/// A short, bounded description of stanzas for error messages.
fn summarize(elements: &[Element]) -> String {
    /// Enough to recognise what arrived without flooding the test output.
    const MAX_SHOWN: usize = 5;
    let mut shown: Vec<String> = elements
        .iter()
        .take(MAX_SHOWN)
        .map(stanza::to_xml)
        .collect();
    if elements.len() > MAX_SHOWN {
        shown.push(format!("... and {} more", elements.len() - MAX_SHOWN));
    }
    shown.join(", ")
}
