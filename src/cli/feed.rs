//! `pubsubd feed add|list|remove`: the feeds polled into nodes, rows shared by every
//! instance on the database, so a feed added here is picked up by a running service
//! within a second.

use clap::{Args, Subcommand};

use super::publish::CLI_POOL;
use super::{admin_config, CliError, IgnoredFlagsAndJid, StoreFlags};
use crate::app::{open_store, Opener};
use crate::feeds::config::{parse_duration, FeedSpec};
use crate::feeds::store::Source;

/// `pubsubd feed`.
#[derive(Debug, Args, Clone)]
pub struct FeedArgs {
    #[command(subcommand)]
    pub action: FeedAction,
    #[command(flatten)]
    ignored: IgnoredFlagsAndJid,
}

/// What `pubsubd feed` does.
#[derive(Debug, Subcommand, Clone)]
pub enum FeedAction {
    /// Add a feed to poll into a node.
    Add(FeedAddArgs),
    /// List the feeds and how their last poll went.
    List(StoreFlags),
    /// Remove a feed by its id (see `feed list`).
    Remove(FeedRemoveArgs),
}

/// `pubsubd feed add`.
#[derive(Debug, Args, Clone)]
pub struct FeedAddArgs {
    #[command(flatten)]
    pub store: StoreFlags,
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
    pub store: StoreFlags,
    /// The feed id, as `feed list` shows it.
    pub id: i64,
}

/// `pubsubd feed add|list|remove`.
pub async fn feed(action: FeedAction) -> Result<(), CliError> {
    let flags = match &action {
        FeedAction::Add(a) => &a.store,
        FeedAction::List(s) => s,
        FeedAction::Remove(r) => &r.store,
    };
    let cfg = admin_config(flags, None)?;
    let store = open_store(&cfg.database, CLI_POOL, None, Opener::Admin)
        .await?
        .feeds;
    match action {
        FeedAction::Add(a) => {
            let interval = a
                .interval
                .as_deref()
                .map(parse_duration)
                .transpose()
                .map_err(CliError::Input)?;
            let spec = FeedSpec::new(&a.url, &a.node, interval, a.auth_header.as_deref())
                .map_err(CliError::Input)?;
            match store.add(&spec, Source::Runtime).await? {
                Some(pk) => println!("added feed {pk}: {} -> {}", spec.url, spec.node),
                None => {
                    return Err(CliError::Input(format!(
                        "{} already feeds node {}",
                        spec.url, spec.node
                    )))
                }
            }
        }
        FeedAction::List(_) => {
            let feeds = store.list().await?;
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
            if store.remove(r.id).await? {
                println!("removed feed {}", r.id);
            } else {
                return Err(CliError::Input(format!("no feed with id {}", r.id)));
            }
        }
    }
    Ok(())
}
