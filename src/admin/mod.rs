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

use crate::cli::Common;
use crate::config::Config;
use crate::pubsub::{Policy, Pubsub, Requester};

/// Options every admin command takes.
#[derive(Debug, Args, Clone)]
pub struct AdminArgs {
    #[command(flatten)]
    pub common: Common,
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

/// `pubsubd node …`.
#[derive(Debug, Subcommand, Clone)]
pub enum NodeCommand {
    /// List nodes with their access model, subscriber and item counts.
    List,
    /// Show a node's configuration, owners and counts.
    Show { node: String },
    /// Create a node owned by OWNER, optionally configured with --set.
    Create {
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
        node: String,
        /// Redirect URI given to subscribers.
        #[arg(long)]
        redirect: Option<String>,
    },
    /// Delete every item of a node; subscribers are notified.
    Purge { node: String },
    /// Show the configuration, or change it with --set.
    Config {
        node: String,
        #[arg(long = "set", value_name = "FIELD=VALUE")]
        set: Vec<String>,
    },
}

/// `pubsubd subscriptions …`.
#[derive(Debug, Subcommand, Clone)]
pub enum SubscriptionsCommand {
    /// List a node's subscriptions (all of them, in subscription order).
    List { node: String },
    /// Remove a JID's subscription to a node.
    Remove {
        node: String,
        /// The subscribed JID (bare or full, as subscribed).
        #[arg(value_name = "JID")]
        subscriber: String,
    },
    /// Subscribe every JID in FILE (one per line; `-` for stdin) to a node, with
    /// progress on stderr.
    Import { node: String, file: String },
}

/// `pubsubd affiliations …`.
#[derive(Debug, Subcommand, Clone)]
pub enum AffiliationsCommand {
    /// Set a JID's affiliation (owner, publisher, publish-only, member, none, outcast).
    Set {
        node: String,
        /// The bare JID whose affiliation changes.
        #[arg(value_name = "JID")]
        entity: String,
        affiliation: String,
    },
    /// List a node's affiliations.
    List { node: String },
}

/// One admin command, ready to run.
#[derive(Debug, Clone)]
pub enum AdminCommand {
    Node(NodeCommand),
    Subscriptions(SubscriptionsCommand),
    Affiliations(AffiliationsCommand),
    Stats,
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

/// Runs an admin command; errors are one line for the operator.
pub async fn run(args: AdminArgs, cmd: AdminCommand) -> Result<(), String> {
    let cfg = Config::for_admin(args.common.config.as_deref(), args.common.overrides())
        .map_err(|e| e.to_string())?;
    let policy =
        Policy::from_table(&cfg.service, cfg.max_payload_size).map_err(|e| match &cfg.source {
            Some(p) => format!("{}: {e}", p.display()),
            None => e,
        })?;
    let store = crate::app::open_store(&cfg.database, 4, None, crate::app::Opener::Admin)
        .await
        .map_err(|e| e.to_string())?
        .store;
    let jid = cfg
        .jid
        .or_else(|| "pubsubd.invalid".parse().ok())
        .ok_or("cannot make a service JID")?;
    let ctx = Ctx {
        pubsub: Pubsub { jid, store, policy },
        out: output::Output { json: args.json },
    };
    match cmd {
        AdminCommand::Node(c) => nodes::run(&ctx, c).await,
        AdminCommand::Subscriptions(c) => subscriptions::run(&ctx, c).await,
        AdminCommand::Affiliations(c) => subscriptions::affiliations(&ctx, c).await,
        AdminCommand::Stats => nodes::stats(&ctx).await,
    }
}

/// Parses a node name given on the command line.
pub(crate) fn node_id(s: &str) -> Result<crate::domain::NodeId, String> {
    crate::domain::NodeId::parse(s).map_err(|e| format!("invalid node name `{s}`: {e}"))
}

/// A domain refusal as one line.
pub(crate) fn refused(e: crate::domain::DomainError) -> String {
    format!("refused: {e}")
}
