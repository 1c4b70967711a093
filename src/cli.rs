//! The command line. Names here are part of the product (scripts drive them), so they
//! change only with a deprecation.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::admin::{AdminArgs, AffiliationsCommand, NodeCommand, SubscriptionsCommand};
use crate::config::{LogFormat, Overrides};

/// pubsubd: XMPP publish-subscribe (XEP-0060) as an external component (XEP-0114).
#[derive(Debug, Parser)]
#[command(name = "pubsubd", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Connect to the XMPP server and serve until SIGINT/SIGTERM.
    Run(Common),
    /// Apply the database migrations (PostgreSQL or SQLite) and exit (`run` also
    /// applies them).
    Migrate(Common),
    /// Inspect and manage nodes: list, show, create, delete, purge, config.
    Node {
        #[command(flatten)]
        args: AdminArgs,
        #[command(subcommand)]
        action: NodeCommand,
    },
    /// Inspect and manage a node's subscriptions: list, remove, import.
    Subscriptions {
        #[command(flatten)]
        args: AdminArgs,
        #[command(subcommand)]
        action: SubscriptionsCommand,
    },
    /// Inspect and set a node's affiliations.
    Affiliations {
        #[command(flatten)]
        args: AdminArgs,
        #[command(subcommand)]
        action: AffiliationsCommand,
    },
    /// Service-wide counts: nodes, items, subscriptions, fan-out backlog.
    Stats(AdminArgs),
    /// Publish an item from a file (or `-` for standard input) straight into the
    /// database, with the permissions of the `--as` JID; the running service delivers
    /// the notifications.
    Publish(PublishArgs),
    /// Manage the feeds polled into nodes (shared by every instance on the database).
    Feed(FeedArgs),
}

impl Command {
    /// The settings shared by every subcommand.
    pub fn common(&self) -> &Common {
        match self {
            Command::Run(c) | Command::Migrate(c) => c,
            Command::Node { args, .. }
            | Command::Subscriptions { args, .. }
            | Command::Affiliations { args, .. }
            | Command::Stats(args) => &args.common,
            Command::Publish(p) => &p.common,
            Command::Feed(f) => match &f.action {
                FeedAction::Add(a) => &a.common,
                FeedAction::List(c) => c,
                FeedAction::Remove(r) => &r.common,
            },
        }
    }
}

/// `pubsubd publish`.
#[derive(Debug, Args, Clone)]
pub struct PublishArgs {
    #[command(flatten)]
    pub common: Common,
    /// The node to publish to (created if missing and auto-create is on).
    #[arg(long)]
    pub node: String,
    /// The item id (default: generated; an existing id is overwritten).
    #[arg(long)]
    pub id: Option<String>,
    /// Publish as this JID (default: the first of service.admins).
    #[arg(long = "as", value_name = "JID")]
    pub as_jid: Option<String>,
    /// The payload is JSON, to be wrapped per XEP-0335 (default: guessed from the
    /// first character; otherwise it must be one XML element).
    #[arg(long)]
    pub json: bool,
    /// The payload file, or `-` for standard input.
    pub file: PathBuf,
}

/// `pubsubd feed`.
#[derive(Debug, Args, Clone)]
pub struct FeedArgs {
    #[command(subcommand)]
    pub action: FeedAction,
}

/// What `pubsubd feed` does.
#[derive(Debug, Subcommand, Clone)]
pub enum FeedAction {
    /// Add a feed to poll into a node.
    Add(FeedAddArgs),
    /// List the feeds and how their last poll went.
    List(Common),
    /// Remove a feed by its id (see `feed list`).
    Remove(FeedRemoveArgs),
}

/// `pubsubd feed add`.
#[derive(Debug, Args, Clone)]
pub struct FeedAddArgs {
    #[command(flatten)]
    pub common: Common,
    /// The feed URL (http or https).
    #[arg(long)]
    pub url: String,
    /// The node its entries are published to.
    #[arg(long)]
    pub node: String,
    /// Time between polls, e.g. 900, 15m, 2h (default 15m).
    #[arg(long)]
    pub interval: Option<String>,
    /// A request header sent with every fetch, e.g. "Authorization: Bearer ..." (stored
    /// in the database; never listed).
    #[arg(long, value_name = "NAME: VALUE")]
    pub auth_header: Option<String>,
}

/// `pubsubd feed remove`.
#[derive(Debug, Args, Clone)]
pub struct FeedRemoveArgs {
    #[command(flatten)]
    pub common: Common,
    /// The feed id.
    pub id: i64,
}

/// Settings shared by every subcommand. Each flag can also be set through its
/// environment variable, and through the same key in the config file; flags win over
/// the environment, which wins over the file.
#[derive(Debug, Args, Clone)]
pub struct Common {
    /// TOML configuration file.
    #[arg(long, global = true, env = "PUBSUBD_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The component JID the service answers as, e.g. pubsub.example.org.
    #[arg(long, global = true, env = "PUBSUBD_JID")]
    pub jid: Option<String>,
    /// The XEP-0114 component secret (prefer --secret-file: command lines are visible to other users).
    #[arg(long, global = true, env = "PUBSUBD_SECRET", hide_env_values = true)]
    pub secret: Option<String>,
    /// A file holding the component secret.
    #[arg(
        long,
        global = true,
        env = "PUBSUBD_SECRET_FILE",
        value_name = "FILE",
        conflicts_with = "secret"
    )]
    pub secret_file: Option<PathBuf>,
    /// The XMPP server's component port, HOST:PORT.
    #[arg(long, global = true, env = "PUBSUBD_SERVER", value_name = "HOST:PORT")]
    pub server: Option<String>,
    /// Where the data lives: a PostgreSQL URL (postgres://pubsubd@localhost/pubsubd), or
    /// an SQLite file (sqlite:PATH or a plain path; one instance only). Default: the
    /// SQLite file pubsubd.sqlite3 in the working directory.
    #[arg(
        long,
        global = true,
        env = "PUBSUBD_DATABASE",
        value_name = "URL",
        hide_env_values = true
    )]
    pub database: Option<String>,
    /// Log format.
    #[arg(long, global = true, env = "PUBSUBD_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Number of fan-out workers.
    #[arg(long, global = true, env = "PUBSUBD_FANOUT_WORKERS")]
    pub fanout_workers: Option<usize>,
    /// Serve /metrics, /healthz and /readyz on this address, e.g. 127.0.0.1:9477.
    #[arg(
        long,
        global = true,
        env = "PUBSUBD_METRICS_LISTEN",
        value_name = "IP:PORT"
    )]
    pub metrics_listen: Option<String>,
}

impl Common {
    /// The flag (or environment) values that override the config file.
    pub fn overrides(&self) -> Overrides {
        Overrides {
            jid: self.jid.clone(),
            secret: self.secret.clone(),
            secret_file: self.secret_file.clone(),
            server: self.server.clone(),
            database: self.database.clone(),
            log_format: self.log_format,
            fanout_workers: self.fanout_workers,
            metrics_listen: self.metrics_listen.clone(),
        }
    }
}
