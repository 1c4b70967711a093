//! A firehose bot: logs in as a user, subscribes to a node, and counts (or prints) the
//! notifications it receives. The first thing most users of a pubsub service write.
//! The node must exist (create it with `pubsubd node create`, or by publishing to it).
//!
//! ```sh
//! cargo run --example firehose_bot -- --jid bob@localhost --password secret --node news --print
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
    if let Err(e) = subscribe(&mut client, service, node).await {
        if e.downcast_ref::<Refused>()
            .is_some_and(|r| r.condition == "item-not-found")
        {
            anyhow::bail!(
                "there is no node named {node} on {service}: create it first, e.g. \
                 `pubsubd node create {node} --owner {jid}`, or publish to it"
            );
        }
        return Err(e);
    }
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

const USAGE: &str = "
firehose_bot: subscribes a user to a node and counts (or prints) the items that arrive.

usage: firehose_bot --jid JID --password PASSWORD --node NODE [--print] [--count N]
                    [--server HOST:PORT] [--service JID]

  --jid, --password   the user to log in as (XMPP_JID, XMPP_PASSWORD)
  --node              the node to subscribe to; it must exist (PUBSUB_NODE)
  --print             print each item's Atom title (or its XML) as it arrives
  --count N           stop after N items (default: after 30 s without one)
  --server            the server's client port (XMPP_SERVER; default 127.0.0.1:5222)
  --service           the pubsub service (PUBSUB_SERVICE; default pubsub.localhost)
";

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    help(&args, USAGE);
    finish(bot(&args).await);
}

async fn bot(args: &[String]) -> anyhow::Result<()> {
    let Login {
        server,
        jid,
        password,
        service,
    } = Login::from_args(args)?;
    let node = required(args, "--node", "PUBSUB_NODE")?;
    let count = arg(args, "--count", "COUNT")
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
