//! The `fanout` scenario against any pubsub JID: create nodes, subscribe a
//! population, publish items and measure acknowledgements, deliveries,
//! latency, losses, duplicates and everyone's CPU.
//!
//! Owns the order of the phases and the arithmetic of the result.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use serde::Serialize;

use crate::conn::{self, LoginSpec};
use crate::env::Env;
use crate::iq::{self, Request};
use crate::metrics::{now_us, CpuUse, Latency, PeakRss, RssPeaks, Watched};
use crate::population::{self, Assignment, ClientSpec, PASSWORD};
use crate::publisher::{self, PublishPlan};
use crate::report::round3;
use crate::stanzas::{self, NodeOptions};

/// Node creations in flight at once.
const CREATE_WINDOW: usize = 64;

/// What to run.
#[derive(Debug, Clone)]
pub struct FanoutConfig {
    /// The pubsub service JID.
    pub service: String,
    /// Label for reports (`pubsubd`, `builtin`, or the JID).
    pub target: String,
    /// Number of nodes.
    pub nodes: usize,
    /// Number of subscribers (sessions, or virtual users of the sink).
    pub subscribers: usize,
    /// Subscribers per node.
    pub per_node: usize,
    /// Subscribers of one collection node every node belongs to (XEP-0248; none
    /// without a collection), beside `subscribers`.
    pub collection_subscribers: usize,
    /// Subscribers are virtual users of the sink component.
    pub virtual_subscribers: bool,
    /// Items to publish.
    pub items: u64,
    /// Payload size, bytes.
    pub size: usize,
    /// Publishes awaiting acknowledgement at most.
    pub window: usize,
    /// Publish rate limit, items/s.
    pub rate: Option<f64>,
    /// Stop publishing new items after this long.
    pub max_publish_time: Option<Duration>,
    /// `pubsub#max_items` of the nodes.
    pub max_items: u32,
    /// The publisher's account (created if missing). Prosody's built-in
    /// service lets only admins create nodes.
    pub publisher: String,
    /// Subscriber accounts are `<prefix><n>`.
    pub user_prefix: String,
    /// Logins in progress at once.
    pub login_concurrency: usize,
    /// After publishing, give up waiting when no delivery arrived for this
    /// long.
    pub settle: Duration,
    /// Limit for each phase (set-up, publishing, delivery).
    pub timeout: Duration,
}

/// The result of a `fanout` run.
#[derive(Debug, Serialize)]
pub struct FanoutReport {
    /// Always `fanout`.
    pub scenario: &'static str,
    /// `prosody` or `ejabberd`.
    pub server: String,
    /// What was measured (`pubsubd`, `builtin`, or a JID).
    pub target: String,
    /// The pubsub JID.
    pub service: String,
    /// Nodes.
    pub nodes: usize,
    /// Subscribers.
    pub subscribers: usize,
    /// Subscribers per node.
    pub per_node: usize,
    /// Subscribers of the collection above every node.
    pub collection_subscribers: usize,
    /// Whether subscribers were virtual (sink component).
    pub virtual_subscribers: bool,
    /// Payload size, bytes.
    pub size: usize,
    /// Publish window.
    pub window: usize,
    /// Seconds spent creating nodes.
    pub create_s: f64,
    /// Seconds spent logging in and subscribing.
    pub subscribe_s: f64,
    /// Publishes sent.
    pub published: u64,
    /// Publishes acknowledged.
    pub acked: u64,
    /// Publishes refused.
    pub publish_errors: u64,
    /// Acknowledgements per second over the publish phase.
    pub acks_per_s: f64,
    /// Publish-to-acknowledgement latency.
    pub ack_latency: Latency,
    /// Notifications that should have arrived (acked items × subscribers).
    pub expected: u64,
    /// Distinct notifications that arrived.
    pub delivered: u64,
    /// Notifications that arrived twice or more for one subscriber.
    pub duplicates: u64,
    /// Expected but never seen.
    pub lost: u64,
    /// Distinct notifications per second, from the first publish to the
    /// last notification.
    pub delivered_per_s: f64,
    /// Publish-to-notification latency.
    pub latency: Latency,
    /// Seconds from the first publish to the last notification.
    pub measured_s: f64,
    /// CPU seconds during the measured phase.
    pub cpu: CpuUse,
    /// The load generator's CPU as a share of the server's (and pubsubd's).
    pub load_cpu_per_server_cpu: Option<f64>,
    /// Peak memory during the measured phase.
    pub peak_rss: PeakRss,
    /// Error stanzas the subscribers got, and the first of them.
    pub subscriber_errors: u64,
    /// The first error stanza, if any.
    pub first_error: Option<String>,
    /// Why the run is incomplete, if it is.
    pub failure: Option<String>,
}

/// Runs the scenario.
pub async fn run(env: &Env, config: &FanoutConfig) -> anyhow::Result<FanoutReport> {
    prepare(env, config).await?.measure(None).await
}

/// A scenario set up and not yet measured: nodes created, subscribers
/// subscribed, the publisher logged in. `mixed` prepares two of them and
/// measures them side by side.
pub struct Prepared<'a> {
    env: &'a Env,
    config: &'a FanoutConfig,
    watched: Watched,
    nodes: Arc<Vec<String>>,
    publisher: conn::Session,
    assignment: Assignment,
    population: population::Population,
    create_s: f64,
}

/// Creates the nodes, subscribes the population and logs the publisher in.
pub async fn prepare<'a>(env: &'a Env, config: &'a FanoutConfig) -> anyhow::Result<Prepared<'a>> {
    let watched = Watched {
        server: env.server_pid,
        pubsubd: env.pubsubd_pid_of(&config.target),
    };
    let run_id = format!("{}-{}", std::process::id(), now_us());
    let nodes: Arc<Vec<String>> = Arc::new(
        (0..config.nodes)
            .map(|i| format!("load-{run_id}-{i}"))
            .collect(),
    );

    let publisher_login = LoginSpec {
        addr: env.c2s,
        domain: env.domain.clone(),
        username: config.publisher.clone(),
        password: PASSWORD.to_string(),
        resource: format!("publisher-{run_id}"),
        register: true,
        presence: false,
    };
    let mut publisher = conn::login(&publisher_login)
        .await
        .context("publisher login")?;

    let created = std::time::Instant::now();
    // The collection first, so that each node joins it as it is created.
    let collection = (config.collection_subscribers > 0).then(|| format!("load-{run_id}-all"));
    if let Some(name) = &collection {
        let xml = stanzas::create_collection("cc", &config.service, name);
        iq::pipelined(
            &mut publisher.reader,
            &mut publisher.writer,
            vec![Request {
                id: "cc".into(),
                xml,
            }],
            1,
            config.timeout,
        )
        .await?
        .check("create the collection")?;
    }
    let options = NodeOptions {
        max_items: config.max_items,
        collection: collection.clone(),
    };
    let requests = nodes
        .iter()
        .enumerate()
        .map(|(i, node)| {
            let id = format!("c{i}");
            let xml = stanzas::create_node(&id, None, &config.service, node, &options);
            Request { id, xml }
        })
        .collect();
    iq::pipelined(
        &mut publisher.reader,
        &mut publisher.writer,
        requests,
        CREATE_WINDOW,
        config.timeout,
    )
    .await?
    .check("create")?;
    let create_s = created.elapsed().as_secs_f64();

    let mut assignment = Assignment::round_robin(config.nodes, config.subscribers, config.per_node);
    // The collection's subscribers come after the nodes' (their own accounts), and
    // subscribe to the collection, listed after the nodes.
    let mut subscribed_nodes = nodes.as_ref().clone();
    if let Some(name) = collection {
        subscribed_nodes.push(name);
        for _ in 0..config.collection_subscribers {
            assignment.nodes_of.push(vec![config.nodes]);
        }
    }
    let subscribed_nodes = Arc::new(subscribed_nodes);
    let population = if config.virtual_subscribers {
        population::virtual_subscribers(
            env,
            &assignment,
            &subscribed_nodes,
            &config.service,
            config.timeout,
        )
        .await?
    } else {
        let spec = ClientSpec {
            prefix: config.user_prefix.clone(),
            concurrency: config.login_concurrency,
            timeout: config.timeout,
        };
        population::clients(env, &spec, &assignment, &subscribed_nodes, &config.service).await?
    };
    population.subscribe.check("subscribe")?;
    Ok(Prepared {
        env,
        config,
        watched,
        nodes,
        publisher,
        assignment,
        population,
        create_s,
    })
}

impl Prepared<'_> {
    /// Publishes and counts what arrives. `stop`, once set, ends publishing
    /// early (what was published is still awaited and measured).
    pub async fn measure(self, stop: Option<Arc<AtomicBool>>) -> anyhow::Result<FanoutReport> {
        let Prepared {
            env,
            config,
            watched,
            nodes,
            publisher,
            assignment,
            population,
            create_s,
        } = self;
        let subscribe_s = population.setup.as_secs_f64();

        let receiving = population.start();
        let tally = Arc::clone(&receiving.tally);
        let (rss, sampler) = RssPeaks::start(watched);
        let cpu_before = watched.cpu_now();

        let plan = PublishPlan {
            service: config.service.clone(),
            nodes: Arc::clone(&nodes),
            items: config.items,
            size: config.size,
            window: config.window,
            rate: config.rate,
            max_publish_time: config.max_publish_time,
            stop,
            timeout: config.timeout,
        };
        let (published, mut publisher_writer) =
            publisher::publish(publisher.reader, publisher.writer, plan).await;
        // Each item reaches its node's subscribers and every collection subscriber.
        let expected =
            published.acked * (assignment.per_node + config.collection_subscribers) as u64;

        // Wait for the notifications: all of them, or until they stop coming.
        tally
            .wait_settled(expected, config.timeout, config.settle)
            .await;
        let cpu = watched.cpu_now().since(&cpu_before);
        sampler.abort();
        let peak_rss = rss.peaks(&watched);
        let mut inbox = receiving.finish().await;
        conn::close(&mut publisher_writer).await;

        let delivered = tally.unique.load(Ordering::Relaxed);
        let last_us = tally
            .last_us
            .load(Ordering::Relaxed)
            .max(published.last_answer_us);
        let measured_s = (last_us.saturating_sub(published.start_us)) as f64 / 1e6;
        let ack_span_s = (published.last_answer_us.saturating_sub(published.start_us)) as f64 / 1e6;
        let per_s = |n: u64, s: f64| if s > 0.0 { round3(n as f64 / s) } else { 0.0 };
        let mut ack_latencies = published.ack_latencies_us;
        let server_cpu = cpu.server_s.map(|s| s + cpu.pubsubd_s.unwrap_or(0.0));
        let failure = published.failure.or(inbox.failure.take());
        if delivered == 0 && expected > 0 && failure.is_none() {
            bail!(
                "no notification arrived (expected {expected}); first error seen: {}",
                inbox.first_error.as_deref().unwrap_or("none")
            );
        }
        Ok(FanoutReport {
            scenario: "fanout",
            server: env.server_kind.clone(),
            target: config.target.clone(),
            service: config.service.clone(),
            nodes: config.nodes,
            subscribers: config.subscribers,
            per_node: assignment.per_node,
            collection_subscribers: config.collection_subscribers,
            virtual_subscribers: config.virtual_subscribers,
            size: config.size,
            window: config.window,
            create_s: round3(create_s),
            subscribe_s: round3(subscribe_s),
            published: published.sent,
            acked: published.acked,
            publish_errors: published.errors,
            acks_per_s: per_s(published.acked + published.errors, ack_span_s),
            ack_latency: Latency::from_us(&mut ack_latencies),
            expected,
            delivered,
            duplicates: inbox.duplicates,
            lost: expected.saturating_sub(delivered),
            delivered_per_s: per_s(delivered, measured_s),
            latency: Latency::from_us(&mut inbox.latencies_us),
            measured_s: round3(measured_s),
            cpu: cpu.clone(),
            load_cpu_per_server_cpu: server_cpu
                .filter(|s| *s > 0.0)
                .map(|s| round3(cpu.load_s / s)),
            peak_rss,
            subscriber_errors: inbox.errors,
            first_error: published.first_error.or(inbox.first_error),
            failure,
        })
    }
}
