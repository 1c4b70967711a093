//! A firehose bot: logs in as a user, subscribes to a node, and counts (or prints) the
//! notifications it receives. The first thing most users of a pubsub service write.
//!
//! ```sh
//! cargo run --example firehose_bot -- --server 127.0.0.1:5222 --jid bot@localhost \
//!     --password secret --service pubsub.localhost --node firehose [--count 1000] [--print]
//! ```

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;

/// How long the bot waits for the next notification before it reports and stops.
const IDLE: Duration = Duration::from_secs(30);

/// What the bot saw.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub notifications: u64,
    pub items: u64,
    pub seconds: f64,
}

/// Subscribes `jid` to `node` on `service` and counts notifications until `count`
/// items arrived (or [`IDLE`] passes without one). With `print`, prints each item's
/// Atom title (or its XML) as it comes.
pub async fn run(
    server: SocketAddr,
    jid: &str,
    password: &str,
    service: &str,
    node: &str,
    count: Option<u64>,
    print: bool,
) -> anyhow::Result<Report> {
    let mut client = login(server, jid, password).await?;
    subscribe(&mut client, service, node).await?;
    eprintln!("subscribed {jid} to {node} on {service}");
    run_subscribed(&mut client, service, count, print, IDLE).await
}

/// The counting loop, for a client that is already subscribed.
pub async fn run_subscribed(
    client: &mut pubsubd_testkit::Client,
    service: &str,
    count: Option<u64>,
    print: bool,
    idle: Duration,
) -> anyhow::Result<Report> {
    let started = Instant::now();
    let (mut notifications, mut items) = (0u64, 0u64);
    while count.is_none_or(|c| items < c) {
        let Some((_node, payloads)) = next_event(client, service, idle).await else {
            break;
        };
        notifications += 1;
        items += payloads.len() as u64;
        if print {
            for p in &payloads {
                let title = p
                    .get_child("title", "http://www.w3.org/2005/Atom")
                    .map(|t| t.text())
                    .unwrap_or_else(|| pubsubd_testkit::stanza::to_xml(p));
                println!("{title}");
            }
        }
    }
    Ok(Report {
        notifications,
        items,
        seconds: started.elapsed().as_secs_f64(),
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let server: SocketAddr = required(&args, "--server", "XMPP_SERVER")?.parse()?;
    let jid = required(&args, "--jid", "XMPP_JID")?;
    let password = required(&args, "--password", "XMPP_PASSWORD")?;
    let service = required(&args, "--service", "PUBSUB_SERVICE")?;
    let node = required(&args, "--node", "PUBSUB_NODE")?;
    let count = arg(&args, "--count", "COUNT")
        .map(|c| c.parse())
        .transpose()?;
    let print = args.iter().any(|a| a == "--print");
    let r = run(server, &jid, &password, &service, &node, count, print).await?;
    println!(
        "{} items in {} notifications, {:.1} s ({:.0} items/s)",
        r.items,
        r.notifications,
        r.seconds,
        r.items as f64 / r.seconds.max(1e-9)
    );
    Ok(())
}
