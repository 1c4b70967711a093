//! The `route` scenario: the server's component-to-client routing ceiling.
//! N client sessions, K component connections (same JID) writing M
//! headlines round-robin to them as fast as the server reads; the rate at
//! which the clients receive them is the most any component (pubsubd
//! included) can deliver through this server.
//!
//! Owns the sending side of the ceiling measurement.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context as _};
use serde::Serialize;
use tokio::io::AsyncWriteExt as _;

use crate::conn;
use crate::env::Env;
use crate::metrics::{now_us, CpuUse, Latency, PeakRss, RssPeaks, Watched};
use crate::population::{self, Assignment, ClientSpec};
use crate::report::round3;
use crate::stanzas;

/// Messages written per batch: big enough that syscalls are not the
/// bottleneck, small enough to interleave the connections.
const BATCH_MESSAGES: u64 = 64;

/// What to run.
#[derive(Debug, Clone)]
pub struct RouteConfig {
    /// Receiving sessions.
    pub clients: usize,
    /// Messages in total.
    pub messages: u64,
    /// Body size, bytes.
    pub size: usize,
    /// Component connections (ejabberd balances; Prosody allows one).
    pub connections: usize,
    /// What the messages look like.
    pub shape: Shape,
    /// Which JID of each session the messages are addressed to.
    pub to: Address,
    /// Send through an XEP-0033 multicast service: its JID and how many
    /// recipients one stanza addresses.
    pub multicast: Option<(String, usize)>,
    /// Account names are `<prefix><n>`.
    pub user_prefix: String,
    /// Logins in progress at once.
    pub login_concurrency: usize,
    /// Stop waiting when nothing arrived for this long.
    pub settle: Duration,
    /// Limit for each phase.
    pub timeout: Duration,
}

/// What the routed messages look like. A server's cost per message depends
/// on its structure as well as its size (each element is parsed and built
/// again), so the ceiling that bounds pubsubd is measured with the stanza
/// pubsubd sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Shape {
    /// A headline with a text body.
    Body,
    /// A pubsub event notification carrying an Atom entry.
    Event,
}

/// How the messages address the sessions. A pubsub service sends each
/// notification to the JID that subscribed, usually a bare JID, which the server
/// routes differently (to each available resource, after the account's own
/// checks) from a full JID; the ceiling is measured both ways.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Address {
    /// `user@domain/resource`: straight to the session.
    Full,
    /// `user@domain`: what pubsubd sends to a bare-JID subscription.
    Bare,
}

/// The result of a `route` run.
#[derive(Debug, Serialize)]
pub struct RouteReport {
    /// Always `route`.
    pub scenario: &'static str,
    /// `prosody` or `ejabberd`.
    pub server: String,
    /// Receiving sessions.
    pub clients: usize,
    /// Component connections.
    pub connections: usize,
    /// Body size.
    pub size: usize,
    /// What the messages looked like.
    pub shape: Shape,
    /// Which JID they were addressed to.
    pub to: Address,
    /// Messages written.
    pub sent: u64,
    /// Seconds the component side took to write everything.
    pub send_s: f64,
    /// Distinct messages received.
    pub delivered: u64,
    /// Duplicates.
    pub duplicates: u64,
    /// Sent but never received.
    pub lost: u64,
    /// Messages received per second, first write to last receipt: the
    /// routing ceiling.
    pub delivered_per_s: f64,
    /// Write-to-receipt latency (mostly queueing at full speed).
    pub latency: Latency,
    /// Seconds from the first write to the last receipt.
    pub measured_s: f64,
    /// CPU seconds during the measured phase.
    pub cpu: CpuUse,
    /// Peak memory.
    pub peak_rss: PeakRss,
    /// Error stanzas seen by the clients.
    pub errors: u64,
    /// The first of them.
    pub first_error: Option<String>,
}

/// Runs the scenario.
pub async fn run(env: &Env, config: &RouteConfig) -> anyhow::Result<RouteReport> {
    if config.multicast.is_some() && config.connections > 1 {
        anyhow::bail!("--multicast sends on one component connection");
    }
    let watched = Watched {
        server: env.server_pid,
        pubsubd: None,
    };
    let spec = ClientSpec {
        prefix: config.user_prefix.clone(),
        concurrency: config.login_concurrency,
        timeout: config.timeout,
    };
    let population = population::clients(
        env,
        &spec,
        &Assignment::none(config.clients),
        &Arc::new(Vec::new()),
        "",
    )
    .await?;
    let targets: Arc<Vec<String>> = Arc::new(
        (0..config.clients)
            .map(|i| {
                let bare = format!("{}{i}@{}", config.user_prefix, env.domain);
                match config.to {
                    Address::Full => bare + "/load",
                    Address::Bare => bare,
                }
            })
            .collect(),
    );
    let slot = &env.route_slot;
    let mut components = Vec::with_capacity(config.connections);
    for k in 0..config.connections.max(1) {
        let component = conn::component(env.component, &slot.jid, &slot.secret)
            .await
            .with_context(|| format!("component connection {} of {}", k + 1, config.connections))?;
        components.push(component);
    }
    let receiving = population.start();
    let tally = Arc::clone(&receiving.tally);
    let (rss, sampler) = RssPeaks::start(watched);
    let cpu_before = watched.cpu_now();
    let start_us = now_us();

    let connections = components.len() as u64;
    let mut senders = Vec::new();
    let mut drains = Vec::new();
    for (k, component) in components.into_iter().enumerate() {
        let targets = Arc::clone(&targets);
        let from = format!("load@{}", slot.jid);
        let (messages, size, shape) = (config.messages, config.size, config.shape);
        let multicast = config.multicast.clone();
        let mut writer = component.writer;
        senders.push(tokio::spawn(async move {
            let mut batch = String::new();
            let mut seq = k as u64;
            while seq < messages {
                batch.clear();
                for _ in 0..BATCH_MESSAGES {
                    if seq >= messages {
                        break;
                    }
                    let to = match &multicast {
                        Some((jid, _)) => jid.as_str(),
                        None => &targets[(seq as usize) % targets.len()],
                    };
                    let mut message = match shape {
                        Shape::Body => stanzas::routed_message(&from, to, seq, now_us(), size),
                        Shape::Event => stanzas::routed_event(&from, to, seq, now_us(), size),
                    };
                    let mut step = 1;
                    if let Some((_, group)) = &multicast {
                        // Each session at most once per message, and `messages`
                        // deliveries in all.
                        let group = (*group).min(targets.len()).min((messages - seq) as usize);
                        let mut addresses =
                            String::from("<addresses xmlns='http://jabber.org/protocol/address'>");
                        for i in 0..group {
                            let to = &targets[(seq as usize + i) % targets.len()];
                            addresses.push_str(&format!("<address type='bcc' jid='{to}'/>"));
                        }
                        addresses.push_str("</addresses></message>");
                        message.truncate(message.len() - "</message>".len());
                        message.push_str(&addresses);
                        step = group as u64;
                    }
                    batch.push_str(&message);
                    seq += connections * step;
                }
                writer.write_all(batch.as_bytes()).await?;
            }
            Ok::<_, anyhow::Error>(writer)
        }));
        // The server may answer (errors); read so it never blocks on us.
        let mut reader = component.reader;
        drains.push(tokio::spawn(
            async move { while reader.next().await.is_ok() {} },
        ));
    }
    let mut writers = Vec::new();
    for sender in senders {
        let writer = tokio::time::timeout(config.timeout, sender)
            .await
            .map_err(|_| anyhow!("sending took over {:?}", config.timeout))???;
        writers.push(writer);
    }
    let send_s = (now_us() - start_us) as f64 / 1e6;

    // Wait for the notifications: all of them, or until they stop coming.
    tally
        .wait_settled(config.messages, config.timeout, config.settle)
        .await;
    let cpu = watched.cpu_now().since(&cpu_before);
    sampler.abort();
    let peak_rss = rss.peaks(&watched);
    let mut inbox = receiving.finish().await;
    for writer in &mut writers {
        conn::close(writer).await;
    }
    for drain in drains {
        drain.abort();
    }
    let delivered = tally.unique.load(Ordering::Relaxed);
    let last_us = tally.last_us.load(Ordering::Relaxed);
    let measured_s = last_us.saturating_sub(start_us) as f64 / 1e6;
    Ok(RouteReport {
        scenario: "route",
        server: env.server_kind.clone(),
        clients: config.clients,
        connections: config.connections,
        size: config.size,
        shape: config.shape,
        to: config.to,
        sent: config.messages,
        send_s: round3(send_s),
        delivered,
        duplicates: inbox.duplicates,
        lost: config.messages.saturating_sub(delivered),
        delivered_per_s: if measured_s > 0.0 {
            round3(delivered as f64 / measured_s)
        } else {
            0.0
        },
        latency: Latency::from_us(&mut inbox.latencies_us),
        measured_s: round3(measured_s),
        cpu,
        peak_rss,
        errors: inbox.errors,
        first_error: inbox.first_error,
    })
}
