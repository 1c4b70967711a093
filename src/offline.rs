//! Subcommands that work on the database alone, without connecting to the XMPP
//! server: `pubsubd publish` and `pubsubd feed add|list|remove`.
//!
//! `publish` runs the same [`Pubsub::publish`] command as an XMPP or HTTP publish, as
//! the `--as` JID with its permissions; the notification job it commits is delivered
//! by the running service's fan-out. Feeds are rows shared by every instance, so a feed
//! added here is picked up by a running service within a second.

use std::io::Read;

use xmpp_parsers::jid::{BareJid, Jid};

use crate::app::{open_store, OpenStore, Opener};
use crate::cli::{FeedAction, PublishArgs};
use crate::config::AdminConfig;
use crate::domain::{ItemId, NodeId};
use crate::feeds::config::{parse_duration, FeedSpec};
use crate::feeds::store::Source;
use crate::gateway::payload::{parse_payload, BodyKind};
use crate::pubsub::items::Publication;
use crate::pubsub::{Policy, Pubsub};

/// A CLI command needs only a couple of connections.
const CLI_POOL: u32 = 2;

/// Opens the store beside a running service (see [`Opener::Admin`]).
async fn connect(cfg: &AdminConfig) -> Result<OpenStore, String> {
    open_store(&cfg.database, CLI_POOL, None, Opener::Admin)
        .await
        .map_err(|e| e.to_string())
}

/// `pubsubd publish`.
pub async fn publish(cfg: AdminConfig, args: PublishArgs) -> Result<(), String> {
    let jid = cfg
        .jid
        .clone()
        .ok_or("give --jid (or jid in the configuration): the service's JID")?;
    let policy = Policy::from_table(&cfg.service, cfg.max_payload_size)?;
    let publisher: BareJid = match &args.as_jid {
        Some(j) => j
            .parse()
            .map_err(|e| format!("--as {j}: not a bare JID: {e}"))?,
        None => policy
            .admins
            .first()
            .cloned()
            .ok_or("give --as JID (or list service.admins in the configuration)")?,
    };
    let node = NodeId::parse(&args.node).map_err(|e| format!("--node: {e}"))?;
    let id = args
        .id
        .as_deref()
        .map(ItemId::parse)
        .transpose()
        .map_err(|e| format!("--id: {e}"))?;
    let body = read_input(&args.file)?;
    let looks_json = matches!(
        body.iter().find(|b| !b.is_ascii_whitespace()),
        Some(b'{' | b'[')
    );
    let kind = if args.json || looks_json {
        BodyKind::Json
    } else {
        BodyKind::Xml
    };
    let payload = parse_payload(kind, &body)?;
    let store = connect(&cfg).await?.store;
    let pubsub = Pubsub { jid, store, policy };
    let requester = pubsub.requester(Jid::from(publisher));
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
        .map_err(|e| format!("cannot publish to {node} as {}: {e}", requester.bare))?;
    let id = published.id.map(|i| i.to_string()).unwrap_or_default();
    println!("published item {id} to node {node}");
    Ok(())
}

fn read_input(path: &std::path::Path) -> Result<Vec<u8>, String> {
    let mut buf = Vec::new();
    if path.as_os_str() == "-" {
        std::io::stdin()
            .read_to_end(&mut buf)
            .map_err(|e| format!("cannot read standard input: {e}"))?;
    } else {
        buf = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    }
    Ok(buf)
}

/// `pubsubd feed add|list|remove`.
pub async fn feed(cfg: AdminConfig, action: FeedAction) -> Result<(), String> {
    let store = connect(&cfg).await?.feeds;
    match action {
        FeedAction::Add(a) => {
            let interval = a.interval.as_deref().map(parse_duration).transpose()?;
            let spec = FeedSpec::new(&a.url, &a.node, interval, a.auth_header.as_deref())?;
            match store
                .add(&spec, Source::Runtime)
                .await
                .map_err(|e| e.to_string())?
            {
                Some(pk) => println!("added feed {pk}: {} -> {}", spec.url, spec.node),
                None => return Err(format!("{} already feeds node {}", spec.url, spec.node)),
            }
        }
        FeedAction::List(_) => {
            let feeds = store.list().await.map_err(|e| e.to_string())?;
            println!("id\tnode\tinterval\tsource\tnext poll\tfailures\tlast status\turl");
            for f in feeds {
                println!(
                    "{}\t{}\t{}s\t{}{}\t{}\t{}\t{}\t{}",
                    f.pk,
                    f.node,
                    f.interval_secs,
                    f.source,
                    if f.has_auth_header { " (auth)" } else { "" },
                    f.next_poll_at.format("%Y-%m-%d %H:%M:%S"),
                    f.failures,
                    f.last_status.as_deref().unwrap_or("never polled"),
                    f.url
                );
            }
        }
        FeedAction::Remove(r) => {
            if store.remove(r.id).await.map_err(|e| e.to_string())? {
                println!("removed feed {}", r.id);
            } else {
                return Err(format!("no feed with id {}", r.id));
            }
        }
    }
    Ok(())
}
