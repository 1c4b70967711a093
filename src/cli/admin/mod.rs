//! The admin command line: `pubsubd node|subscriptions|affiliations|stats`, working on
//! the store directly, as a service administrator.
//!
//! Every change goes through the same [`Pubsub`] commands as an XMPP request (with an
//! administrator's rights), so subscribers are notified the same way: the jobs these
//! commands queue are delivered by the running service's fan-out. Output is a table
//! for people or JSON (`--json`) for scripts.

mod nodes;
mod output;
mod subscriptions;

use clap::{Args, Subcommand};
use xmpp_parsers::jid::{BareJid, Jid};

use super::{admin_config, CliError, IgnoredFlags, IgnoredFlagsAndJid, JidFlag, StoreFlags};
use crate::pubsub::{Pubsub, Requester};

/// Options every admin command that changes nodes takes.
#[derive(Debug, Args, Clone)]
pub struct AdminArgs {
    #[command(flatten)]
    pub store: StoreFlags,
    #[command(flatten)]
    pub jid: JidFlag,
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(flatten)]
    ignored: IgnoredFlags,
}

/// `pubsubd stats`: only reads counts, so no service JID.
#[derive(Debug, Args, Clone)]
pub struct StatsArgs {
    #[command(flatten)]
    pub store: StoreFlags,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    ignored: IgnoredFlagsAndJid,
}

/// `pubsubd node …`.
#[derive(Debug, Subcommand, Clone)]
pub enum NodeCommand {
    /// List nodes with their access model, subscriber and item counts.
    List,
    /// Show a node's configuration, owners and counts.
    Show {
        /// The node's name.
        node: String,
    },
    /// Create a node owned by OWNER, optionally configured with --set.
    Create {
        /// The new node's name.
        node: String,
        /// The owner's bare JID.
        #[arg(long)]
        owner: String,
        /// A configuration field, e.g. --set access_model=whitelist (repeatable).
        #[arg(long = "set", value_name = "FIELD=VALUE")]
        set: Vec<String>,
    },
    /// Delete a node; subscribers are notified.
    Delete {
        /// The node's name.
        node: String,
        /// Redirect URI given to subscribers.
        #[arg(long)]
        redirect: Option<String>,
    },
    /// Delete every item of a node; subscribers are notified.
    Purge {
        /// The node's name.
        node: String,
    },
    /// Show the configuration, or change it with --set.
    Config {
        /// The node's name.
        node: String,
        /// A configuration field to change, e.g. --set max_items=10 (repeatable).
        #[arg(long = "set", value_name = "FIELD=VALUE")]
        set: Vec<String>,
    },
}

/// `pubsubd subscriptions …`.
#[derive(Debug, Subcommand, Clone)]
pub enum SubscriptionsCommand {
    /// List a node's subscriptions (all of them, in subscription order).
    List {
        /// The node's name.
        node: String,
    },
    /// Remove a JID's subscription to a node.
    Remove {
        /// The node's name.
        node: String,
        /// The subscribed JID (bare or full, as subscribed).
        #[arg(value_name = "JID")]
        subscriber: String,
    },
    /// Subscribe every JID in FILE (one per line; `-` for stdin) to a node, with
    /// progress on stderr.
    Import {
        /// The node's name.
        node: String,
        /// The file of JIDs, or `-` for standard input.
        file: String,
    },
}

/// `pubsubd affiliations …`.
#[derive(Debug, Subcommand, Clone)]
pub enum AffiliationsCommand {
    /// Set a JID's affiliation (owner, publisher, publish-only, member, none, outcast).
    Set {
        /// The node's name.
        node: String,
        /// The bare JID whose affiliation changes.
        #[arg(value_name = "JID")]
        entity: String,
        /// owner, publisher, publish-only, member, none or outcast.
        affiliation: String,
    },
    /// List a node's affiliations.
    List {
        /// The node's name.
        node: String,
    },
}

/// One admin command, ready to run.
#[derive(Debug, Clone)]
pub enum AdminCommand {
    Node(NodeCommand),
    Subscriptions(SubscriptionsCommand),
    Affiliations(AffiliationsCommand),
}

/// What the commands share: the service and how to print.
pub(crate) struct Ctx {
    pub pubsub: Pubsub,
    pub out: output::Output,
}

impl Ctx {
    /// An administrator acting as `jid` (the node owner for `create`).
    pub fn admin_as(&self, jid: &BareJid) -> Requester {
        Requester {
            jid: Jid::from(jid.clone()),
            bare: jid.clone(),
            admin: true,
        }
    }

    /// The administrator identity used when no JID matters.
    pub fn admin(&self) -> Requester {
        let jid = self.pubsub.jid.clone();
        self.admin_as(&jid)
    }
}

/// Opens the store as an administrator, acting as the service `jid`.
async fn context(store: &StoreFlags, jid: Option<&JidFlag>, json: bool) -> Result<Ctx, CliError> {
    let cfg = admin_config(store, jid)?;
    let policy = cfg.policy;
    let store = crate::app::open_store(&cfg.database, 4, None, crate::app::Opener::Admin)
        .await?
        .store;
    // Read-only commands need no service JID; a change without one is notified as
    // coming from this placeholder, which no client trusts.
    let jid = match cfg.jid {
        Some(jid) => jid,
        None => PLACEHOLDER_JID
            .parse()
            .map_err(|e| CliError::Input(format!("{PLACEHOLDER_JID}: {e}")))?,
    };
    Ok(Ctx {
        pubsub: Pubsub {
            jid,
            store,
            policy,
            rosters: std::sync::Arc::default(),
        },
        out: output::Output { json },
    })
}

/// The service JID of an admin command given none.
const PLACEHOLDER_JID: &str = "pubsubd.invalid";

/// Runs an admin command.
pub async fn run(args: AdminArgs, cmd: AdminCommand) -> Result<(), CliError> {
    let ctx = context(&args.store, Some(&args.jid), args.json).await?;
    match cmd {
        AdminCommand::Node(c) => nodes::run(&ctx, c).await,
        AdminCommand::Subscriptions(c) => subscriptions::run(&ctx, c).await,
        AdminCommand::Affiliations(c) => subscriptions::affiliations(&ctx, c).await,
    }
}

/// `pubsubd stats`.
pub async fn stats(args: StatsArgs) -> Result<(), CliError> {
    let ctx = context(&args.store, None, args.json).await?;
    nodes::stats(&ctx).await
}

/// Parses a node name given on the command line.
pub(crate) fn node_id(s: &str) -> Result<crate::domain::NodeId, CliError> {
    crate::domain::NodeId::parse(s)
        .map_err(|e| CliError::Input(format!("`{s}` is not a valid node name: {e}")))
}
