//! A firehose bot: logs in as a user, subscribes to a node, and counts (or prints) the
//! notifications it receives. The first thing most users of a pubsub service write.
//! The node must exist (create it with `pubsubd node create`, or by publishing to it).
//!
//! With `--resume FILE` it never misses an item, across restarts: it reads the items
//! from the node's archive (XEP-0313 on the service) after the last archive id it saw,
//! which it keeps in FILE, and takes each notification as a sign to read on.
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

/// As [`run`], reading items from the archive after the archive id kept in `state`
/// (from the node's newest item when the file does not exist yet), and keeping there
/// the id of the last item read. A notification only says that there is more to read;
/// the items come from the archive, so what was published while the bot was away is
/// read first, and each item once, in publish order.
pub async fn run_resuming(
    client: &mut pubsubd_testkit::Client,
    service: &str,
    node: &str,
    state: &std::path::Path,
    count: Option<u64>,
    print: bool,
    idle: Duration,
) -> anyhow::Result<Report> {
    let started = Instant::now();
    let mut after = match std::fs::read_to_string(state) {
        Ok(id) => Some(id.trim().to_owned()).filter(|id| !id.is_empty()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            archive_end(client, service, node).await?
        }
        Err(e) => return Err(e.into()),
    };
    let (mut notifications, mut items) = (0u64, 0u64);
    'reading: loop {
        loop {
            let (page, complete) = archive_page(client, service, node, after.as_deref()).await?;
            for archived in page {
                items += 1;
                if print {
                    show(archived.payload.as_ref());
                }
                after = Some(archived.id);
                if count.is_some_and(|c| items >= c) {
                    break;
                }
            }
            if let Some(id) = &after {
                std::fs::write(state, id)?;
            }
            if count.is_some_and(|c| items >= c) {
                break 'reading;
            }
            if complete {
                break;
            }
        }
        if next_event(client, service, idle).await.is_none() {
            break;
        }
        notifications += 1;
        // Whatever else is waiting is read from the archive in one go.
        while next_event(client, service, Duration::ZERO).await.is_some() {
            notifications += 1;
        }
    }
    Ok(Report {
        notifications,
        items,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Prints an item's Atom title, or its XML.
fn show(payload: Option<&pubsubd_testkit::Element>) {
    let Some(p) = payload else {
        println!("(an item without payload)");
        return;
    };
    let title = p
        .get_child("title", "http://www.w3.org/2005/Atom")
        .map(|t| t.text())
        .unwrap_or_else(|| pubsubd_testkit::stanza::to_xml(p));
    println!("{title}");
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
                show(Some(p));
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
                    [--resume FILE] [--server HOST:PORT] [--service JID]

  --jid, --password   the user to log in as (XMPP_JID, XMPP_PASSWORD)
  --node              the node to subscribe to; it must exist (PUBSUB_NODE)
  --print             print each item's Atom title (or its XML) as it arrives
  --count N           stop after N items (default: after 30 s without one)
  --resume FILE       read items from the node's archive after the last one this bot
                      saw, kept in FILE, so a restart misses nothing (the first run
                      starts at the node's newest item)
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
    let r = match arg(args, "--resume", "PUBSUB_RESUME") {
        None => run(server, &jid, &password, &service, &node, count, print).await?,
        Some(state) => {
            let mut client = login(server, &jid, &password).await?;
            subscribe(&mut client, &service, &node).await?;
            eprintln!("subscribed {jid} to {node} on {service}, resuming from {state}");
            let state = std::path::Path::new(&state);
            run_resuming(&mut client, &service, &node, state, count, print, IDLE).await?
        }
    };
    println!(
        "{} items in {} notifications, {:.1} s ({:.0} items/s)",
        r.items,
        r.notifications,
        r.seconds,
        r.items as f64 / r.seconds.max(1e-9)
    );
    Ok(())
}
