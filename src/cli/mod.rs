//! The command line: `pubsubd run|migrate|node|subscriptions|affiliations|stats|publish|feed`.
//! Names here are part of the product (scripts drive them), so they change only with a
//! deprecation.
//!
//! Each subcommand takes only the flags it uses: `run` every setting of the service,
//! `migrate` the database, the admin commands the database, the service JID where a
//! change notifies subscribers, and `--json` for their output. Every flag can also be
//! set through its `PUBSUBD_*` variable and the same key in the config file; flags win
//! over the environment, which wins over the file. This module is the top of the
//! crate: nothing else imports it.

pub mod admin;
mod feed;
mod messages;
mod publish;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::{Config, ConfigError, LogFormat, Overrides};
use admin::{AdminArgs, AffiliationsCommand, NodeCommand, StatsArgs, SubscriptionsCommand};
pub use feed::{FeedAction, FeedAddArgs, FeedArgs, FeedRemoveArgs};
pub use messages::CliError;
pub use publish::PublishArgs;

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
    Run(RunArgs),
    /// Apply the database migrations (PostgreSQL or SQLite) and exit (`run` also
    /// applies them).
    Migrate(MigrateArgs),
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
    Stats(StatsArgs),
    /// Publish an item from a file (or `-` for standard input) straight into the
    /// database, with the permissions of the `--as` JID; the running service delivers
    /// the notifications.
    Publish(PublishArgs),
    /// Manage the feeds polled into nodes (shared by every instance on the database).
    Feed(FeedArgs),
    /// Print Prosody's XEP-0033 multicast module, mod_pubsubd_multicast.lua, for the
    /// server's module directory (see docs/servers.md).
    ProsodyModule,
}

/// The XEP-0033 service pubsubd ships for Prosody, printed by `pubsubd prosody-module`.
pub const PROSODY_MODULE: &str = include_str!("../../deploy/prosody/mod_pubsubd_multicast.lua");

/// Where the settings come from and where the data lives: every subcommand takes these.
#[derive(Debug, Args, Clone, Default)]
pub struct StoreFlags {
    /// TOML configuration file.
    #[arg(long, global = true, env = "PUBSUBD_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
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
}

/// The service's JID, for the commands that notify subscribers as the service.
#[derive(Debug, Args, Clone, Default)]
pub struct JidFlag {
    /// The component JID the service answers as, e.g. pubsub.example.org (default: `jid`
    /// in the config file).
    #[arg(long, global = true, env = "PUBSUBD_JID", value_name = "JID")]
    pub jid: Option<String>,
}

/// Flags of `run` that the other subcommands accepted before each took only its own:
/// still accepted there, hidden and ignored, so that existing scripts keep working.
/// Deprecated; to be removed in a later release.
#[derive(Debug, Args, Clone, Default)]
pub struct IgnoredRunFlags {
    #[arg(long, global = true, hide = true)]
    secret: Option<String>,
    #[arg(long, global = true, hide = true)]
    secret_file: Option<PathBuf>,
    #[arg(long, global = true, hide = true)]
    server: Option<String>,
    #[arg(long, global = true, hide = true)]
    fanout_workers: Option<usize>,
    #[arg(long, global = true, hide = true)]
    metrics_listen: Option<String>,
}

/// [`IgnoredRunFlags`] and `--log-format`, for the commands that print nothing but
/// their results and errors.
#[derive(Debug, Args, Clone, Default)]
pub struct IgnoredFlags {
    #[command(flatten)]
    run: IgnoredRunFlags,
    #[arg(long, global = true, hide = true, value_enum)]
    log_format: Option<LogFormat>,
}

/// [`IgnoredFlags`] and `--jid`, for the commands that use no service JID.
#[derive(Debug, Args, Clone, Default)]
pub struct IgnoredFlagsAndJid {
    #[command(flatten)]
    flags: IgnoredFlags,
    #[command(flatten)]
    jid: IgnoredJid,
}

/// `pubsubd run`: every setting of the service.
#[derive(Debug, Args, Clone, Default)]
pub struct RunArgs {
    #[command(flatten)]
    pub store: StoreFlags,
    #[command(flatten)]
    pub jid: JidFlag,
    /// The XEP-0114 component secret (prefer --secret-file: command lines are visible to other users).
    #[arg(long, env = "PUBSUBD_SECRET", hide_env_values = true)]
    pub secret: Option<String>,
    /// A file holding the component secret.
    #[arg(
        long,
        env = "PUBSUBD_SECRET_FILE",
        value_name = "FILE",
        conflicts_with = "secret"
    )]
    pub secret_file: Option<PathBuf>,
    /// The XMPP server's component port, HOST:PORT.
    #[arg(long, env = "PUBSUBD_SERVER", value_name = "HOST:PORT")]
    pub server: Option<String>,
    /// Log format.
    #[arg(long, env = "PUBSUBD_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Number of fan-out workers.
    #[arg(long, env = "PUBSUBD_FANOUT_WORKERS", value_name = "N")]
    pub fanout_workers: Option<usize>,
    /// Serve the status page, /metrics, /healthz and /readyz on this address, e.g.
    /// 127.0.0.1:9477.
    #[arg(long, env = "PUBSUBD_METRICS_LISTEN", value_name = "IP:PORT")]
    pub metrics_listen: Option<String>,
}

impl RunArgs {
    /// The flag (or environment) values that override the config file.
    pub fn overrides(&self) -> Overrides {
        Overrides {
            jid: self.jid.jid.clone(),
            secret: self.secret.clone(),
            secret_file: self.secret_file.clone(),
            server: self.server.clone(),
            database: self.store.database.clone(),
            log_format: self.log_format,
            fanout_workers: self.fanout_workers,
            metrics_listen: self.metrics_listen.clone(),
        }
    }
}

/// `pubsubd migrate`.
#[derive(Debug, Args, Clone, Default)]
pub struct MigrateArgs {
    #[command(flatten)]
    pub store: StoreFlags,
    /// Log format.
    #[arg(long, env = "PUBSUBD_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    #[command(flatten)]
    ignored: IgnoredRunFlags,
    #[command(flatten)]
    ignored_jid: IgnoredJid,
}

/// `--jid` where no service JID is used: accepted, hidden, ignored.
#[derive(Debug, Args, Clone, Default)]
pub struct IgnoredJid {
    #[arg(long = "jid", global = true, hide = true)]
    jid: Option<String>,
}

impl StoreFlags {
    /// The overrides of a command that takes only these flags (and maybe a JID).
    pub fn overrides(&self, jid: Option<&JidFlag>) -> Overrides {
        Overrides {
            database: self.database.clone(),
            jid: jid.and_then(|j| j.jid.clone()),
            ..Overrides::default()
        }
    }
}

impl Command {
    /// The log format asked for; only `run` and `migrate` log more than warnings.
    fn log_format(&self) -> Option<LogFormat> {
        match self {
            Command::Run(r) => r.log_format,
            Command::Migrate(m) => m.log_format,
            _ => None,
        }
    }
}

/// Runs the parsed command line to its end; the error is one line for the operator.
pub async fn execute(cli: Cli) -> Result<(), CliError> {
    let quiet = !matches!(cli.command, Command::Run(_) | Command::Migrate(_));
    crate::telemetry::init(cli.command.log_format().unwrap_or_default(), quiet);
    match cli.command {
        Command::Run(args) => {
            let cfg = Config::load(args.store.config.as_deref(), args.overrides())?;
            crate::app::run(cfg).await?;
        }
        Command::Migrate(args) => {
            let db =
                Config::database_only(args.store.config.as_deref(), args.store.overrides(None))?;
            crate::app::migrate(&db).await?;
        }
        Command::Node { args, action } => {
            admin::run(args, admin::AdminCommand::Node(action)).await?
        }
        Command::Subscriptions { args, action } => {
            admin::run(args, admin::AdminCommand::Subscriptions(action)).await?
        }
        Command::Affiliations { args, action } => {
            admin::run(args, admin::AdminCommand::Affiliations(action)).await?
        }
        Command::Stats(args) => admin::stats(args).await?,
        Command::Publish(args) => publish::publish(args).await?,
        Command::Feed(args) => feed::feed(args.action).await?,
        Command::ProsodyModule => print!("{PROSODY_MODULE}"),
    }
    Ok(())
}

/// Reads the settings an admin command needs, naming the file in any error.
fn admin_config(
    store: &StoreFlags,
    jid: Option<&JidFlag>,
) -> Result<crate::config::AdminConfig, ConfigError> {
    Config::for_admin(store.config.as_deref(), store.overrides(jid))
}
