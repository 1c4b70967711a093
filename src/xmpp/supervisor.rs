//! Keeps the component connected: the first connection must succeed (a wrong secret or
//! an unreachable server at start-up is an operator error and ends the process), after
//! that every drop is followed by reconnect attempts with exponential backoff and
//! jitter, for ever, each one logged.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use xmpp_parsers::jid::BareJid;

use stanza_reader::Limits;

use super::handshake::{self, ConnectError};
use super::multicast::Multicast;
use super::outbound::OutboundQueue;
use super::privilege::Privileges;
use super::queries::Queries;
use super::session::{self, SessionEnd};
use super::settings::Secret;
use super::stranger::StoreIdentity;
use super::Inbound;

/// First reconnect delay: short, since most drops are server restarts that are over
/// within a second or two.
const BACKOFF_BASE: Duration = Duration::from_millis(250);
/// Longest delay between attempts, so a long outage is noticed soon after it ends.
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Whether the component is currently connected, for readiness checks and metrics: one
/// flag per connection (see `connections`).
#[derive(Clone, Debug)]
pub struct ConnectionState(Vec<watch::Receiver<bool>>);

impl ConnectionState {
    /// The state of several connections together: connected when all of them are.
    pub fn all(states: impl IntoIterator<Item = ConnectionState>) -> ConnectionState {
        ConnectionState(states.into_iter().flat_map(|s| s.0).collect())
    }

    /// True while every stream is up.
    pub fn is_connected(&self) -> bool {
        !self.0.is_empty() && self.0.iter().all(|up| *up.borrow())
    }

    /// How many streams are up.
    pub fn connected(&self) -> usize {
        self.0.iter().filter(|up| *up.borrow()).count()
    }

    /// Whether each stream is up, in connection order (0, 1, … of `connections`).
    pub fn each(&self) -> Vec<bool> {
        self.0.iter().map(|up| *up.borrow()).collect()
    }

    /// Whether any stream went down or came up since the last [`changed`](Self::changed)
    /// (or since this handle was cloned), without marking it seen.
    pub fn has_changed(&self) -> bool {
        self.0.iter().any(|up| up.has_changed().unwrap_or(false))
    }

    /// Whether any stream went down or came up since the last call (or since this
    /// handle was cloned); marks the present as seen.
    pub fn changed(&mut self) -> bool {
        let mut any = false;
        for up in &mut self.0 {
            any |= up.has_changed().unwrap_or(false);
            up.borrow_and_update();
        }
        any
    }
}

/// Owns the outgoing queue and the connection across reconnects.
pub struct Supervisor<I: Inbound> {
    pub server: String,
    pub jid: BareJid,
    pub secret: Secret,
    pub inbound: Arc<I>,
    pub queue: OutboundQueue,
    state: watch::Sender<bool>,
    draining: CancellationToken,
    multicast: Option<Arc<Multicast>>,
    queries: Arc<Queries>,
    privileges: Arc<Privileges>,
    limits: Limits,
    identity: StoreIdentity,
}

impl<I: Inbound> Supervisor<I> {
    /// Prepares a supervisor; nothing connects until [`Supervisor::connect_first`].
    /// Once `draining` is cancelled the connection stops reading new stanzas (shutdown
    /// has begun); it keeps writing until the token given to [`Supervisor::run`] is
    /// cancelled, which closes the stream.
    pub fn new(
        server: String,
        jid: BareJid,
        secret: Secret,
        inbound: Arc<I>,
        queue: OutboundQueue,
        draining: CancellationToken,
    ) -> Self {
        let (state, _) = watch::channel(false);
        Supervisor {
            server,
            jid,
            secret,
            inbound,
            queue,
            state,
            draining,
            multicast: None,
            queries: Arc::default(),
            privileges: Arc::default(),
            limits: Limits::default(),
            identity: StoreIdentity {
                tag: 0,
                single_instance: true,
            },
        }
    }

    /// Marks pings with the store's identity, so that processes of one store recognise
    /// each other and notice strangers ([`super::stranger`]).
    pub fn with_identity(mut self, identity: StoreIdentity) -> Self {
        self.identity = identity;
        self
    }

    /// Reads stanzas under `limits` instead of the defaults.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Pings through `multicast` (see [`super::multicast`]) so that fan-out may address
    /// notifications to many recipients at once.
    pub fn with_multicast(mut self, multicast: Option<Arc<Multicast>>) -> Self {
        self.multicast = multicast;
        self
    }

    /// Hands the answers to `queries` (shared by every connection of the process) to
    /// their askers instead of the router.
    pub fn with_queries(mut self, queries: Arc<Queries>) -> Self {
        self.queries = queries;
        self
    }

    /// Records in `privileges` what the server grants on each stream (XEP-0356).
    pub fn with_privileges(mut self, privileges: Arc<Privileges>) -> Self {
        self.privileges = privileges;
        self
    }

    /// A view of the connection state.
    pub fn state(&self) -> ConnectionState {
        ConnectionState(vec![self.state.subscribe()])
    }

    /// Makes the first connection; an error here is reported to the operator.
    pub async fn connect_first(&self) -> Result<handshake::Connected, ConnectError> {
        handshake::connect(&self.server, &self.jid, &self.secret, self.limits).await
    }

    /// Runs the connection until shutdown, reconnecting whenever it drops.
    pub async fn run(mut self, first: handshake::Connected, shutdown: CancellationToken) {
        let mut conn = first;
        let mut carry_over = Vec::new();
        loop {
            let _ = self.state.send(true);
            tracing::info!(server = %self.server, jid = %self.jid, "component connected");
            let end = session::run(
                conn,
                &self.jid,
                &mut self.queue,
                std::mem::take(&mut carry_over),
                session::Peers {
                    inbound: self.inbound.clone(),
                    multicast: self.multicast.clone(),
                    queries: self.queries.clone(),
                    privileges: self.privileges.clone(),
                    draining: self.draining.clone(),
                    identity: self.identity,
                    jid: self.jid.clone(),
                },
                &shutdown,
            )
            .await;
            let _ = self.state.send(false);
            match end {
                SessionEnd::Closed => {
                    tracing::info!("component stream closed");
                    return;
                }
                SessionEnd::QueueClosed => return,
                SessionEnd::Lost { reason, unsent } => {
                    metrics::counter!(crate::metrics::COMPONENT_DISCONNECTS, "reason" => reason.label())
                        .increment(1);
                    tracing::warn!(%reason, requeued = unsent.len(), "component connection lost");
                    carry_over = unsent;
                }
            }
            match self.reconnect(&shutdown).await {
                Some(c) => conn = c,
                None => return,
            }
        }
    }

    /// Tries until connected (`Some`) or shut down (`None`).
    async fn reconnect(&self, shutdown: &CancellationToken) -> Option<handshake::Connected> {
        let mut attempt: u32 = 0;
        loop {
            let delay = backoff(attempt);
            attempt = attempt.saturating_add(1);
            tracing::info!(
                attempt,
                delay_ms = delay.as_millis() as u64,
                "reconnecting to the XMPP server"
            );
            tokio::select! {
                _ = shutdown.cancelled() => return None,
                _ = tokio::time::sleep(delay) => {}
            }
            match handshake::connect(&self.server, &self.jid, &self.secret, self.limits).await {
                Ok(c) => {
                    metrics::counter!(crate::metrics::RECONNECTS).increment(1);
                    return Some(c);
                }
                Err(e) => tracing::warn!(attempt, error = %e, "reconnect failed"),
            }
        }
    }
}

/// Exponential backoff with "equal jitter": half the delay is fixed, half random, so a
/// fleet of instances does not reconnect in lockstep after a server restart.
fn backoff(attempt: u32) -> Duration {
    let exp = BACKOFF_BASE.saturating_mul(1u32 << attempt.min(16));
    let capped = exp.min(BACKOFF_MAX);
    let half = capped / 2;
    half + rand::thread_rng().gen_range(Duration::ZERO..=half)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        for attempt in 0..40 {
            let d = backoff(attempt);
            assert!(d <= BACKOFF_MAX, "{attempt}: {d:?}");
            assert!(d >= BACKOFF_BASE / 2);
        }
        assert!(backoff(10) >= BACKOFF_MAX / 2);
    }
}
