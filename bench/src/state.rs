//! The `state` scenario (pubsubd only): a large state, then latency and
//! memory. Nodes are created through the protocol, then subscriptions and
//! items are multiplied with SQL (copying the columns of one subscription
//! and one item that pubsubd wrote itself, so their encoding is always
//! pubsubd's own). Then: subscribe, retrieve and archive-page latency one
//! request at a time (an archive page starts at a random depth of a node's
//! archive, so a node of ten million items shows the cost of keyset paging at
//! any depth), and a fan-out to the big node whose subscribers are virtual users
//! of the sink component, while pubsubd's memory is sampled.
//!
//! Owns the SQL that fabricates state. It writes only rows of nodes this run
//! created.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use serde::Serialize;
use sqlx::{Connection as _, PgConnection};

use crate::conn::{self, LoginSpec};
use crate::env::Env;
use crate::iq::{self, Request};
use crate::metrics::{now_us, CpuUse, Latency, PeakRss, RssPeaks, Watched};
use crate::population::PASSWORD;
use crate::publisher::{self, PublishPlan};
use crate::receive::{self, Addressing, Tally};
use crate::report::round3;
use crate::stanzas::{self, NodeOptions};

/// Node creations in flight at once.
const CREATE_WINDOW: usize = 64;

/// Items a probe retrieval asks for.
const RETRIEVE_MAX_ITEMS: u32 = 10;

/// Items of one archive probe page (XEP-0313 `max`): a bot catching up pages by 100.
const ARCHIVE_PAGE: u32 = 100;

/// Payload size of the template item (and so of every inserted item) unless told
/// otherwise: an Atom entry of about this size.
pub const ITEM_SIZE: usize = 1500;

/// What to run.
#[derive(Debug, Clone)]
pub struct StateConfig {
    /// Subscriptions in total.
    pub subscriptions: u64,
    /// Items in total.
    pub items: u64,
    /// Nodes the rows are spread over.
    pub nodes: usize,
    /// Subscriptions of the big node.
    pub fanout_subscriptions: u64,
    /// Items published to the big node.
    pub fanout_items: u64,
    /// Latency probes.
    pub probes: usize,
    /// Payload bytes of every item (the template's, copied).
    pub item_size: usize,
    /// Stop waiting after this long without a delivery.
    pub settle: Duration,
    /// Limit per phase.
    pub timeout: Duration,
}

/// The fan-out part of the result.
#[derive(Debug, Serialize)]
pub struct BigFanout {
    /// Subscribers of the big node.
    pub subscribers: u64,
    /// Items published to it.
    pub items: u64,
    /// Notifications expected.
    pub expected: u64,
    /// Distinct notifications received.
    pub delivered: u64,
    /// Never received.
    pub lost: u64,
    /// Duplicates.
    pub duplicates: u64,
    /// Notifications per second, first publish to last notification.
    pub delivered_per_s: f64,
    /// Publish-to-notification latency.
    pub latency: Latency,
    /// CPU seconds.
    pub cpu: CpuUse,
    /// Peak memory while it ran.
    pub peak_rss: PeakRss,
}

/// The result of a `state` run.
#[derive(Debug, Serialize)]
pub struct StateReport {
    /// Always `state`.
    pub scenario: &'static str,
    /// `prosody` or `ejabberd`.
    pub server: String,
    /// Subscriptions in the database after the inserts.
    pub subscriptions_total: i64,
    /// Items in the database after the inserts.
    pub items_total: i64,
    /// Nodes.
    pub nodes: usize,
    /// Seconds the SQL inserts took.
    pub insert_s: f64,
    /// One subscribe at a time to random nodes.
    pub subscribe_latency: Latency,
    /// One retrieval (newest 10 items) at a time from random nodes.
    pub retrieve_latency: Latency,
    /// One archive page (100 items after a random archive id, XEP-0313) at a time,
    /// until its `<fin/>`: the result messages come before it.
    pub archive_page_latency: Latency,
    /// pubsubd's memory before the fan-out (MiB).
    pub pubsubd_rss_before_mib: Option<f64>,
    /// The fan-out to the big node.
    pub fanout: BigFanout,
}

/// Runs the scenario.
pub async fn run(env: &Env, config: &StateConfig) -> anyhow::Result<StateReport> {
    let service = env.service("pubsubd")?;
    let database = env
        .database_url
        .clone()
        .context("this environment has no pubsubd database")?;
    let watched = Watched {
        server: env.server_pid,
        pubsubd: env.pubsubd_pid,
    };
    let nodes = config.nodes.max(1);
    let run_id = format!("{}-{}", std::process::id(), now_us());
    let prefix = format!("state-{run_id}-");
    let names: Vec<String> = (0..nodes).map(|i| format!("{prefix}{i}")).collect();
    let big = format!("{prefix}big");
    let items_per_node = config.items / nodes as u64;
    let subs_per_node = config
        .subscriptions
        .saturating_sub(config.fanout_subscriptions)
        / nodes as u64;

    // Nodes, one template subscription and one template item, by protocol.
    let mut owner = conn::login(&LoginSpec {
        addr: env.c2s,
        domain: env.domain.clone(),
        username: pubsubd_testkit::ADMIN_USER.to_string(),
        password: PASSWORD.to_string(),
        resource: format!("state-{run_id}"),
        register: true,
        presence: false,
    })
    .await
    .context("owner login")?;
    let options = NodeOptions {
        max_items: u32::try_from(items_per_node.max(1)).unwrap_or(u32::MAX),
        collection: None,
    };
    let mut requests: Vec<Request> = names
        .iter()
        .chain(std::iter::once(&big))
        .enumerate()
        .map(|(i, node)| {
            let id = format!("c{i}");
            let xml = stanzas::create_node(&id, None, &service, node, &options);
            Request { id, xml }
        })
        .collect();
    let owner_bare = format!("{}@{}", pubsubd_testkit::ADMIN_USER, env.domain);
    requests.push(Request {
        id: "tsub".into(),
        xml: stanzas::subscribe("tsub", None, &service, &names[0], &owner_bare),
    });
    requests.push(Request {
        id: "p0".into(),
        xml: stanzas::publish("p0", &service, &names[0], 0, now_us(), config.item_size),
    });
    iq::pipelined(
        &mut owner.reader,
        &mut owner.writer,
        requests,
        CREATE_WINDOW,
        config.timeout,
    )
    .await?
    .check("set-up")?;

    // Multiply them with SQL.
    let inserted = Instant::now();
    let mut db = PgConnection::connect(&database)
        .await
        .with_context(|| format!("cannot connect to {database}"))?;
    let like = format!("{prefix}%");
    sqlx::query(
        "INSERT INTO subscriptions (node_pk, jid, bare_jid, subid, state, options)
         SELECT n.pk, 'x' || g || '@' || $3, 'x' || g || '@' || $3,
                'pre-' || n.pk || '-' || g, 'subscribed', t.options
         FROM nodes n CROSS JOIN generate_series(1, $2::bigint) g
         CROSS JOIN (SELECT options FROM subscriptions s JOIN nodes tn ON tn.pk = s.node_pk
                     WHERE tn.name = $4 LIMIT 1) t
         WHERE n.name LIKE $1 AND n.name <> $5 AND NOT n.deleted",
    )
    .bind(&like)
    .bind(i64::try_from(subs_per_node)?)
    .bind(&env.domain)
    .bind(&names[0])
    .bind(&big)
    .execute(&mut db)
    .await
    .context("inserting subscriptions")?;
    sqlx::query(
        "INSERT INTO subscriptions (node_pk, jid, bare_jid, subid, state, options)
         SELECT n.pk, 'v' || g || '@' || $3, 'v' || g || '@' || $3,
                'big-' || n.pk || '-' || g, 'subscribed', t.options
         FROM nodes n CROSS JOIN generate_series(0, $2::bigint - 1) g
         CROSS JOIN (SELECT options FROM subscriptions s JOIN nodes tn ON tn.pk = s.node_pk
                     WHERE tn.name = $4 LIMIT 1) t
         WHERE n.name = $1 AND NOT n.deleted",
    )
    .bind(&big)
    .bind(i64::try_from(config.fanout_subscriptions)?)
    .bind(&env.sink_slot.jid)
    .bind(&names[0])
    .execute(&mut db)
    .await
    .context("inserting the big node's subscriptions")?;
    sqlx::query(
        "INSERT INTO items (node_pk, item_id, publisher, payload)
         SELECT n.pk, 'pre' || g, t.publisher, t.payload
         FROM nodes n CROSS JOIN generate_series(1, $2::bigint) g
         CROSS JOIN (SELECT i.publisher, i.payload FROM items i JOIN nodes tn ON tn.pk = i.node_pk
                     WHERE tn.name = $3 LIMIT 1) t
         WHERE n.name LIKE $1 AND n.name <> $4 AND NOT n.deleted",
    )
    .bind(&like)
    .bind(i64::try_from(items_per_node)?)
    .bind(&names[0])
    .bind(&big)
    .execute(&mut db)
    .await
    .context("inserting items")?;
    sqlx::query("ANALYZE").execute(&mut db).await?;
    // Each node's archive ids, for pages starting at random depths.
    let seq_ranges: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT n.name, min(i.seq), max(i.seq) FROM nodes n JOIN items i ON i.node_pk = n.pk
         WHERE n.name LIKE $1 AND n.name <> $2 AND NOT n.deleted GROUP BY n.name",
    )
    .bind(&like)
    .bind(&big)
    .fetch_all(&mut db)
    .await
    .context("reading the archive ranges")?;
    let insert_s = inserted.elapsed().as_secs_f64();
    let subscriptions_total: i64 = sqlx::query_scalar("SELECT count(*) FROM subscriptions")
        .fetch_one(&mut db)
        .await?;
    let items_total: i64 = sqlx::query_scalar("SELECT count(*) FROM items")
        .fetch_one(&mut db)
        .await?;
    let _ = db.close().await;

    // Latency probes, one request at a time, spread over the nodes.
    let mut probe = conn::login(&LoginSpec {
        addr: env.c2s,
        domain: env.domain.clone(),
        username: format!("probe-{}", std::process::id()),
        password: PASSWORD.to_string(),
        resource: "probe".into(),
        register: true,
        presence: false,
    })
    .await
    .context("probe login")?;
    let probe_bare = probe.jid.split('/').next().unwrap_or_default().to_string();
    let spread = |k: usize| &names[(k * 7919) % nodes];
    let subscribes = (0..config.probes)
        .map(|k| {
            let id = format!("ps{k}");
            let xml = stanzas::subscribe(&id, None, &service, spread(k), &probe_bare);
            Request { id, xml }
        })
        .collect();
    let mut subscribed = iq::pipelined(
        &mut probe.reader,
        &mut probe.writer,
        subscribes,
        1,
        config.timeout,
    )
    .await?;
    subscribed.check("probe subscribe")?;
    let retrievals = (0..config.probes)
        .map(|k| {
            let id = format!("pr{k}");
            let xml = stanzas::items(&id, &service, spread(k + 1), RETRIEVE_MAX_ITEMS);
            Request { id, xml }
        })
        .collect();
    let mut retrieved = iq::pipelined(
        &mut probe.reader,
        &mut probe.writer,
        retrievals,
        1,
        config.timeout,
    )
    .await?;
    retrieved.check("probe retrieve")?;
    let pages = (0..config.probes)
        .filter_map(|k| {
            let (node, first, last) = seq_ranges.get((k * 7919) % seq_ranges.len().max(1))?;
            // A depth spread over the whole archive (a multiplicative hash of k).
            let depth = (k as i64).wrapping_mul(2_654_435_761) % (last - first + 1).max(1);
            let id = format!("pa{k}");
            let xml = stanzas::archive_page(&id, &service, node, first + depth.abs(), ARCHIVE_PAGE);
            Some(Request { id, xml })
        })
        .collect();
    let mut paged = iq::pipelined(
        &mut probe.reader,
        &mut probe.writer,
        pages,
        1,
        config.timeout,
    )
    .await?;
    paged.check("probe archive page")?;
    conn::close(&mut probe.writer).await;

    // The big fan-out, received by the sink component.
    let sink = &env.sink_slot;
    let component = conn::component(env.component, &sink.jid, &sink.secret).await?;
    let tally = Tally::new();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let receiver = tokio::spawn(receive::receive(
        component.reader,
        Addressing::Virtual {
            count: usize::try_from(config.fanout_subscriptions)?,
        },
        Arc::clone(&tally),
        stopped,
    ));
    let mut sink_writer = component.writer;
    let rss_before = env
        .pubsubd_pid
        .and_then(crate::metrics::process_rss_kib)
        .map(|k| k as f64 / 1024.0);
    let (rss, sampler) = RssPeaks::start(watched);
    let cpu_before = watched.cpu_now();
    let plan = PublishPlan {
        service: service.clone(),
        nodes: Arc::new(vec![big.clone()]),
        items: config.fanout_items,
        size: config.item_size,
        window: 1,
        rate: None,
        max_publish_time: None,
        stop: None,
        timeout: config.timeout,
    };
    let (published, mut owner_writer) = publisher::publish(owner.reader, owner.writer, plan).await;
    if published.acked == 0 {
        bail!(
            "no publish to the big node was acknowledged: {}",
            published
                .first_error
                .or(published.failure)
                .unwrap_or_default()
        );
    }
    let expected = published.acked * config.fanout_subscriptions;
    // Wait for the notifications: all of them, or until they stop coming.
    tally
        .wait_settled(expected, config.timeout, config.settle)
        .await;
    let cpu = watched.cpu_now().since(&cpu_before);
    sampler.abort();
    let peak_rss = rss.peaks(&watched);
    let _ = stop.send(true);
    let mut inbox = receiver.await.context("receiver panicked")?;
    conn::close(&mut sink_writer).await;
    conn::close(&mut owner_writer).await;
    let delivered = tally.unique.load(Ordering::Relaxed);
    let measured_s = tally
        .last_us
        .load(Ordering::Relaxed)
        .saturating_sub(published.start_us) as f64
        / 1e6;
    Ok(StateReport {
        scenario: "state",
        server: env.server_kind.clone(),
        subscriptions_total,
        items_total,
        nodes,
        insert_s: round3(insert_s),
        subscribe_latency: Latency::from_us(&mut subscribed.latencies_us),
        retrieve_latency: Latency::from_us(&mut retrieved.latencies_us),
        archive_page_latency: Latency::from_us(&mut paged.latencies_us),
        pubsubd_rss_before_mib: rss_before,
        fanout: BigFanout {
            subscribers: config.fanout_subscriptions,
            items: published.acked,
            expected,
            delivered,
            lost: expected.saturating_sub(delivered),
            duplicates: inbox.duplicates,
            delivered_per_s: if measured_s > 0.0 {
                round3(delivered as f64 / measured_s)
            } else {
                0.0
            },
            latency: Latency::from_us(&mut inbox.latencies_us),
            cpu,
            peak_rss,
        },
    })
}
