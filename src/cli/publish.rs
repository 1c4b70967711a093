//! `pubsubd publish`: publishes an item straight into the database, without connecting
//! to the XMPP server.
//!
//! It runs the same [`Pubsub::publish`] command as an XMPP or HTTP publish, as the
//! `--as` JID with its permissions; the notification job it commits is delivered by the
//! running service's fan-out.

use std::io::Read;
use std::path::PathBuf;

use clap::Args;
use xmpp_parsers::jid::{BareJid, Jid};

use super::{admin_config, CliError, IgnoredFlags, JidFlag, StoreFlags};
use crate::app::{open_store, Opener};
use crate::domain::{ItemId, NodeId};
use crate::gateway::payload::{parse_payload, BodyKind};
use crate::pubsub::items::Publication;
use crate::pubsub::Pubsub;

/// A CLI command needs only a couple of connections.
pub(super) const CLI_POOL: u32 = 2;

/// `pubsubd publish`. Every setting is checked before anything is read, and all the
/// missing ones are named in one message; `--jid` and `--as` default to the config
/// file's `jid` and first `service.admins`.
#[derive(Debug, Args, Clone)]
#[command(
    override_usage = "pubsubd publish --node <NODE> [--as <JID>] [--id <ID>] [--payload-json] [--jid <JID>] [--config <FILE>] [--database <URL>] <FILE>"
)]
pub struct PublishArgs {
    #[command(flatten)]
    pub store: StoreFlags,
    #[command(flatten)]
    pub jid: JidFlag,
    /// The node to publish to (created if missing and auto-create is on). Required.
    #[arg(long, value_name = "NODE")]
    pub node: Option<String>,
    /// The item id (default: generated; an existing id is overwritten).
    #[arg(long)]
    pub id: Option<String>,
    /// Publish as this JID (default: the first of service.admins in the config file).
    #[arg(long = "as", value_name = "JID")]
    pub as_jid: Option<String>,
    /// The payload is JSON, to be wrapped per XEP-0335 (default: guessed from the
    /// first character; otherwise it must be one XML element). `--json` is a deprecated
    /// name for it.
    #[arg(long = "payload-json", alias = "json")]
    pub payload_json: bool,
    /// The payload file, or `-` for standard input. Required.
    #[arg(value_name = "FILE")]
    pub file: Option<PathBuf>,
    #[command(flatten)]
    ignored: IgnoredFlags,
}

/// `pubsubd publish`.
pub async fn publish(args: PublishArgs) -> Result<(), CliError> {
    let cfg = admin_config(&args.store, Some(&args.jid))?;
    let policy = cfg.policy;
    let publisher = match &args.as_jid {
        Some(j) => Some(
            j.parse::<BareJid>()
                .map_err(|e| CliError::Input(format!("--as {j}: not a bare JID: {e}")))?,
        ),
        None => policy.admins.first().cloned(),
    };
    let (jid, publisher, node, file) = match (cfg.jid.clone(), publisher, args.node, args.file) {
        (Some(j), Some(p), Some(n), Some(f)) => (j, p, n, f),
        (j, p, n, f) => {
            let missing = [
                (n.is_none(), "--node NODE"),
                (j.is_none(), "--jid JID (or `jid` in the config file)"),
                (
                    p.is_none(),
                    "--as JID (or `admins` in the config file's [service])",
                ),
                (f.is_none(), "a payload FILE (or `-` for standard input)"),
            ];
            return Err(CliError::Missing {
                command: "pubsubd publish",
                missing: missing.iter().filter(|m| m.0).map(|m| m.1).collect(),
            });
        }
    };
    let node = NodeId::parse(&node)
        .map_err(|e| CliError::Input(format!("--node {node}: not a valid node name: {e}")))?;
    let id = args
        .id
        .as_deref()
        .map(ItemId::parse)
        .transpose()
        .map_err(|e| CliError::Input(format!("--id: {e}")))?;
    let body = read_input(&file)?;
    let looks_json = matches!(
        body.iter().find(|b| !b.is_ascii_whitespace()),
        Some(b'{' | b'[')
    );
    let kind = if args.payload_json || looks_json {
        BodyKind::Json
    } else {
        BodyKind::Xml
    };
    let payload = parse_payload(kind, &body).map_err(CliError::Input)?;
    let store = open_store(&cfg.database, CLI_POOL, None, Opener::Admin)
        .await?
        .store;
    let pubsub = Pubsub {
        jid,
        store,
        policy,
        rosters: std::sync::Arc::default(),
    };
    let requester = pubsub.requester(Jid::from(publisher));
    let name = node.to_string();
    let published = pubsub
        .publish(
            &requester,
            &node,
            Some(Publication {
                id,
                payload: Some(payload),
            }),
            None,
        )
        .await
        .map_err(|e| {
            CliError::Refused(format!(
                "cannot publish as {}: {}",
                requester.bare,
                super::messages::refusal(&name, e)
            ))
        })?;
    let id = published.id.map(|i| i.to_string()).unwrap_or_default();
    println!("published item {id} to node {node}");
    Ok(())
}

fn read_input(path: &std::path::Path) -> Result<Vec<u8>, CliError> {
    let mut buf = Vec::new();
    if path.as_os_str() == "-" {
        std::io::stdin()
            .read_to_end(&mut buf)
            .map_err(|e| CliError::Input(format!("cannot read standard input: {e}")))?;
    } else {
        buf = std::fs::read(path)
            .map_err(|e| CliError::Input(format!("cannot read {}: {e}", path.display())))?;
    }
    Ok(buf)
}
