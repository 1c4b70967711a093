//! `pubsubd-load`: load generator and benchmark for pubsubd and for the XMPP
//! servers' own pubsub services. See docs/benchmarks.md.
//!
//! The path of a run: `serve-env` starts the environment (testkit), the
//! scenarios (`route`, `fanout`, `state`) read it from a JSON file, open
//! lean connections (`conn.rs`, `scan.rs`), drive load (`publisher.rs`,
//! `route.rs`), count what arrives (`receive.rs`) and print a report.

#![forbid(unsafe_op_in_unsafe_fn)]

mod conn;
mod env;
mod fanout;
mod iq;
mod metrics;
mod mixed;
mod population;
mod publisher;
mod reader;
mod receive;
mod report;
mod route;
mod scan;
mod stanzas;
mod state;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use clap::{Args, Parser, Subcommand, ValueEnum};
use pubsubd_testkit::ServerKind;

/// Load generator and benchmark for pubsubd.
#[derive(Debug, Parser)]
#[command(name = "pubsubd-load", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start a throwaway XMPP server (and database and pubsubd) with the
    /// testkit, print the environment as JSON, run until stdin closes.
    ServeEnv(ServeArgs),
    /// Component-to-client routing ceiling of the server.
    Route(RouteArgs),
    /// Publish to subscribed nodes of a pubsub service and measure delivery.
    Fanout(FanoutArgs),
    /// A small node published at a low rate while a big fan-out runs on the
    /// same service: the small node's latencies and the firehose's rate.
    Mixed(MixedArgs),
    /// pubsubd with a large state (rows inserted with SQL): subscribe and
    /// retrieve latency, memory during a big fan-out.
    State(StateArgs),
    /// The stanza reader's throughput against tokio-xmpp's, in memory (no server).
    Reader(ReaderArgs),
}

#[derive(Debug, Args)]
struct ReaderArgs {
    /// Stanzas per round (half publishes of ~1.5 KB Atom entries, a quarter ping
    /// answers, a quarter presence).
    #[arg(long, default_value_t = 50_000)]
    stanzas: usize,
    /// Rounds of each reader, alternating; medians are reported.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Kind {
    Prosody,
    Ejabberd,
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Which server.
    #[arg(long, value_enum)]
    server: Kind,
    /// The pubsubd binary to attach (default: `pubsubd` next to this one).
    #[arg(long)]
    pubsubd: Option<PathBuf>,
    /// Start no pubsubd (server only, for `route` and built-in pubsub).
    #[arg(long)]
    no_pubsubd: bool,
    /// Also write the environment JSON to this file.
    #[arg(long)]
    env_file: Option<PathBuf>,
    /// Component connections pubsubd opens (its `connections` setting;
    /// ejabberd balances several, Prosody accepts one).
    #[arg(long, default_value_t = 1)]
    connections: usize,
    /// pubsubd's `fanout_workers` (default: its own default, or one per
    /// connection when that is more).
    #[arg(long)]
    fanout_workers: Option<usize>,
    /// pubsubd's `multicast` setting: the server's XEP-0033 service
    /// (`multicast.localhost` in the testkit: ejabberd's mod_multicast, on
    /// Prosody the module pubsubd ships).
    #[arg(long)]
    multicast: Option<String>,
    /// pubsubd's `[service] max_items` ceiling, for `state` runs with more items
    /// per node than its default (10,000), e.g. an archive of ten million items.
    #[arg(long)]
    max_items: Option<u64>,
    /// Another pubsubd binary to run beside the first, as `NAME=PATH` (its
    /// own JID and database, the same settings); scenarios measure it with
    /// `--target NAME`. Repeatable.
    #[arg(long, value_parser = parse_extra)]
    extra_pubsubd: Vec<(String, PathBuf)>,
}

/// `NAME=PATH` of `--extra-pubsubd`.
fn parse_extra(text: &str) -> Result<(String, PathBuf), String> {
    match text.split_once('=') {
        Some((name, path))
            if !name.is_empty() && !path.is_empty() && !["pubsubd", "builtin"].contains(&name) =>
        {
            Ok((name.to_string(), PathBuf::from(path)))
        }
        _ => Err(format!(
            "expected NAME=PATH (NAME not pubsubd or builtin), got `{text}`"
        )),
    }
}

/// Options every scenario has.
#[derive(Debug, Args)]
struct Common {
    /// The environment file written by `serve-env --env-file`.
    #[arg(long)]
    env: PathBuf,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
    /// Subscriber/receiver accounts are `<prefix><n>` (registered if new).
    #[arg(long, default_value = "load")]
    user_prefix: String,
    /// Logins in progress at once.
    #[arg(long, default_value_t = 64)]
    login_concurrency: usize,
    /// Stop waiting for deliveries after this many seconds without one.
    #[arg(long, default_value_t = 10.0)]
    settle: f64,
    /// Limit for each phase, seconds.
    #[arg(long, default_value_t = 600.0)]
    timeout: f64,
}

#[derive(Debug, Args)]
struct RouteArgs {
    #[command(flatten)]
    common: Common,
    /// Receiving client sessions.
    #[arg(long, default_value_t = 100)]
    clients: usize,
    /// Messages in total.
    #[arg(long, default_value_t = 100_000)]
    messages: u64,
    /// Body size in bytes.
    #[arg(long, default_value_t = 200)]
    size: usize,
    /// Component connections for the same JID (ejabberd balances them;
    /// Prosody allows one).
    #[arg(long, default_value_t = 1)]
    connections: usize,
    /// What each message looks like: `body` (a headline with a text body of
    /// `--size` bytes) or `event` (the pubsub notification a subscriber gets:
    /// an event with one item holding an Atom entry of `--size` bytes).
    #[arg(long, value_enum, default_value_t = route::Shape::Body)]
    shape: route::Shape,
    /// Address each session by its full JID (`full`) or by its bare JID
    /// (`bare`), as pubsubd addresses a bare-JID subscriber.
    #[arg(long, value_enum, default_value_t = route::Address::Full)]
    to: route::Address,
    /// Send through this XEP-0033 multicast service (`multicast.<domain>` on
    /// ejabberd with mod_multicast) instead of to each session: each message
    /// addresses `--multicast-group` sessions as `bcc` (one connection only).
    #[arg(long)]
    multicast: Option<String>,
    /// Recipients per multicast stanza.
    #[arg(long, default_value_t = 100)]
    multicast_group: usize,
}

#[derive(Debug, Args)]
struct FanoutArgs {
    #[command(flatten)]
    common: Common,
    /// `pubsubd`, `builtin` (the server's pubsub.localhost) or any pubsub JID.
    #[arg(long, default_value = "pubsubd")]
    target: String,
    /// Nodes (items go round-robin).
    #[arg(long, default_value_t = 1)]
    nodes: usize,
    /// Subscribers.
    #[arg(long, default_value_t = 100)]
    subscribers: usize,
    /// Subscribers per node (default: all of them).
    #[arg(long)]
    per_node: Option<usize>,
    /// Also create one collection node (XEP-0248) every node joins, with this many
    /// subscribers of its own (pubsubd only; each item then reaches
    /// `per_node + collection_subscribers` subscribers).
    #[arg(long, default_value_t = 0)]
    collection_subscribers: usize,
    /// Subscribers are virtual users of one sink component instead of
    /// client sessions.
    #[arg(long = "virtual")]
    virtual_subscribers: bool,
    /// Items to publish.
    #[arg(long, default_value_t = 100)]
    items: u64,
    /// Item payload (Atom entry) size in bytes.
    #[arg(long, default_value_t = 1500)]
    size: usize,
    /// Publishes awaiting acknowledgement at most.
    #[arg(long, default_value_t = 16)]
    window: usize,
    /// Publishes per second (default: as fast as the window allows).
    #[arg(long)]
    rate: Option<f64>,
    /// Stop publishing new items after this many seconds and measure what
    /// was published (bounds runs against slow services).
    #[arg(long)]
    max_publish_seconds: Option<f64>,
    /// `pubsub#max_items` of the created nodes. Prosody caps it at 256.
    #[arg(long, default_value_t = 256)]
    max_items: u32,
    /// The publishing (and node-creating) account. Prosody's built-in
    /// service lets only its admin create nodes.
    #[arg(long, default_value = pubsubd_testkit::ADMIN_USER)]
    publisher: String,
}

#[derive(Debug, Args)]
struct MixedArgs {
    #[command(flatten)]
    common: Common,
    /// `pubsubd`, `builtin`, the name of an `--extra-pubsubd`, or any pubsub JID.
    #[arg(long, default_value = "pubsubd")]
    target: String,
    /// The firehose's subscribers (client sessions, `<prefix>f<n>`).
    #[arg(long, default_value_t = 2000)]
    firehose_subscribers: usize,
    /// Items published to the firehose, as fast as `--window` allows.
    #[arg(long, default_value_t = 200)]
    firehose_items: u64,
    /// The firehose publisher's window.
    #[arg(long, default_value_t = 16)]
    window: usize,
    /// Stop publishing to the firehose after this many seconds.
    #[arg(long)]
    max_publish_seconds: Option<f64>,
    /// The small node's subscribers (client sessions, `<prefix>s<n>`).
    #[arg(long, default_value_t = 5)]
    small_subscribers: usize,
    /// The small node's publishes per second.
    #[arg(long, default_value_t = 10.0)]
    small_rate: f64,
    /// Measure the small node without the firehose (the baseline).
    #[arg(long)]
    alone: bool,
    /// Alone, publish to the small node for this many seconds.
    #[arg(long, default_value_t = 10.0)]
    alone_seconds: f64,
    /// Item payload (Atom entry) size in bytes, both nodes.
    #[arg(long, default_value_t = 1500)]
    size: usize,
    /// The firehose's publishing (and node-creating) account.
    #[arg(long, default_value = pubsubd_testkit::ADMIN_USER)]
    publisher: String,
    /// The small node's publishing account: another sender than the
    /// firehose's, as a command bus beside a feed would be. Prosody's
    /// built-in service lets only its admin create nodes.
    #[arg(long, default_value = "mixed-publisher")]
    small_publisher: String,
}

#[derive(Debug, Args)]
struct StateArgs {
    #[command(flatten)]
    common: Common,
    /// Subscriptions inserted in total (spread over the nodes).
    #[arg(long, default_value_t = 1_000_000)]
    subscriptions: u64,
    /// Items inserted in total (spread over the nodes).
    #[arg(long, default_value_t = 1_000_000)]
    items: u64,
    /// Nodes the rows are spread over.
    #[arg(long, default_value_t = 1000)]
    nodes: usize,
    /// Subscriptions of the one big node the fan-out goes to (virtual
    /// subscribers of the sink component; part of `--subscriptions`).
    #[arg(long, default_value_t = 100_000)]
    fanout_subscriptions: u64,
    /// Items published to the big node.
    #[arg(long, default_value_t = 3)]
    fanout_items: u64,
    /// Subscribe, retrieve and archive-page requests measured (one at a time).
    #[arg(long, default_value_t = 200)]
    probes: usize,
    /// Payload bytes of every item. Smaller items let an archive of ten million fit
    /// a test machine's disk (10 M × 1,500 bytes is 15 GB before indexes).
    #[arg(long, default_value_t = state::ITEM_SIZE)]
    item_size: usize,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    metrics::raise_fd_limit();
    metrics::now_us();
    if let Command::ServeEnv(args) = &cli.command {
        return serve_env(args);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(cli.command))
}

fn serve_env(args: &ServeArgs) -> anyhow::Result<()> {
    let kind = match args.server {
        Kind::Prosody => ServerKind::Prosody,
        Kind::Ejabberd => ServerKind::Ejabberd,
    };
    let pubsubd = if args.no_pubsubd {
        None
    } else {
        let path = match &args.pubsubd {
            Some(p) => p.clone(),
            None => std::env::current_exe()?.with_file_name("pubsubd"),
        };
        if !path.exists() {
            bail!(
                "no pubsubd binary at {} (build it: cargo build --release -p pubsubd)",
                path.display()
            );
        }
        Some(path)
    };
    env::serve(&env::ServeOptions {
        kind,
        pubsubd,
        env_file: args.env_file.clone(),
        extra_pubsubd: args.extra_pubsubd.clone(),
        pubsubd_args: pubsubd_config(
            args.connections,
            args.fanout_workers,
            args.multicast.as_deref(),
            args.max_items,
        )?,
    })
}

/// `--config FILE` with the settings a run asks for beyond the defaults; none
/// when it asks for none.
fn pubsubd_config(
    connections: usize,
    workers: Option<usize>,
    multicast: Option<&str>,
    max_items: Option<u64>,
) -> anyhow::Result<Vec<String>> {
    if connections <= 1 && workers.is_none() && multicast.is_none() && max_items.is_none() {
        return Ok(Vec::new());
    }
    let path = std::env::temp_dir().join(format!("pubsubd-load-{}.toml", std::process::id()));
    // At least one fan-out worker per connection, so that every stream carries work.
    let workers = workers.unwrap_or(4).max(connections);
    let mut config = format!("connections = {connections}\nfanout_workers = {workers}\n");
    if let Some(jid) = multicast {
        config.push_str(&format!("multicast = \"{jid}\"\n"));
    }
    if let Some(n) = max_items {
        config.push_str(&format!("[service]\nmax_items = {n}\n"));
    }
    std::fs::write(&path, config)?;
    Ok(vec!["--config".into(), path.display().to_string()])
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::ServeEnv(_) => unreachable!("handled before the runtime starts"),
        Command::Route(args) => {
            let env = env::Env::load(&args.common.env)?;
            let config = route::RouteConfig {
                clients: args.clients,
                messages: args.messages,
                size: args.size,
                connections: args.connections,
                shape: args.shape,
                to: args.to,
                multicast: args
                    .multicast
                    .clone()
                    .map(|jid| (jid, args.multicast_group.max(1))),
                user_prefix: args.common.user_prefix.clone(),
                login_concurrency: args.common.login_concurrency,
                settle: secs(args.common.settle),
                timeout: secs(args.common.timeout),
            };
            report::print(&route::run(&env, &config).await?, args.common.json)
        }
        Command::Fanout(args) => {
            let env = env::Env::load(&args.common.env)?;
            let config = fanout::FanoutConfig {
                service: env.service(&args.target)?,
                target: args.target.clone(),
                nodes: args.nodes,
                subscribers: args.subscribers,
                per_node: args.per_node.unwrap_or(args.subscribers),
                collection_subscribers: args.collection_subscribers,
                virtual_subscribers: args.virtual_subscribers,
                items: args.items,
                size: args.size,
                window: args.window,
                rate: args.rate,
                max_publish_time: args.max_publish_seconds.map(secs),
                max_items: args.max_items,
                publisher: args.publisher.clone(),
                user_prefix: args.common.user_prefix.clone(),
                login_concurrency: args.common.login_concurrency,
                settle: secs(args.common.settle),
                timeout: secs(args.common.timeout),
            };
            report::print(&fanout::run(&env, &config).await?, args.common.json)
        }
        Command::Mixed(args) => {
            let env = env::Env::load(&args.common.env)?;
            let side = |subscribers: usize, prefix: &str, publisher: &str| fanout::FanoutConfig {
                service: String::new(),
                target: args.target.clone(),
                nodes: 1,
                subscribers,
                per_node: subscribers,
                collection_subscribers: 0,
                virtual_subscribers: false,
                items: 0,
                size: args.size,
                window: args.window,
                rate: None,
                max_publish_time: None,
                max_items: 256,
                publisher: publisher.to_string(),
                user_prefix: format!("{}{prefix}", args.common.user_prefix),
                login_concurrency: args.common.login_concurrency,
                settle: secs(args.common.settle),
                timeout: secs(args.common.timeout),
            };
            let service = env.service(&args.target)?;
            let small = fanout::FanoutConfig {
                service: service.clone(),
                // Published until the firehose is delivered: this only bounds it.
                items: (args.small_rate * args.common.timeout).ceil().max(1.0) as u64,
                window: 64,
                rate: Some(args.small_rate),
                max_publish_time: args.alone.then(|| secs(args.alone_seconds)),
                ..side(args.small_subscribers, "s", &args.small_publisher)
            };
            let firehose = (!args.alone).then(|| fanout::FanoutConfig {
                service,
                items: args.firehose_items,
                max_publish_time: args.max_publish_seconds.map(secs),
                ..side(args.firehose_subscribers, "f", &args.publisher)
            });
            let config = mixed::MixedConfig { firehose, small };
            report::print(&mixed::run(&env, &config).await?, args.common.json)
        }
        Command::Reader(args) => {
            let r = reader::run(args.stanzas, args.rounds).await?;
            if args.json {
                println!("{}", serde_json::to_string(&r)?);
            } else {
                println!(
                    "{} stanzas ({} bytes) x {} rounds: stanza-reader {:.0}/s, tokio-xmpp {:.0}/s, ratio {:.2}",
                    r.stanzas, r.bytes, r.rounds, r.ours_per_s, r.tokio_xmpp_per_s, r.ratio
                );
            }
            Ok(())
        }
        Command::State(args) => {
            let env = env::Env::load(&args.common.env)?;
            let config = state::StateConfig {
                subscriptions: args.subscriptions,
                items: args.items,
                nodes: args.nodes,
                fanout_subscriptions: args.fanout_subscriptions,
                fanout_items: args.fanout_items,
                probes: args.probes,
                item_size: args.item_size,
                settle: secs(args.common.settle),
                timeout: secs(args.common.timeout),
            };
            report::print(&state::run(&env, &config).await?, args.common.json)
        }
    }
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.0))
}
