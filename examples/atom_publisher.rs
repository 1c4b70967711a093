//! An Atom publisher: reads an Atom entry, or a whole Atom feed, from a file or stdin
//! and publishes each entry to a node. The item id is derived from the entry's `<id>`,
//! so publishing the same feed again overwrites instead of duplicating.
//!
//! ```sh
//! cargo run --example atom_publisher -- --jid alice@localhost --password secret \
//!     --node news examples/hello.atom   # or - for stdin
//! ```

mod common;

use std::io::Read;
use std::net::SocketAddr;

use anyhow::{bail, Context};
use common::*;
use pubsubd_testkit::{stanza, Element};
use sha1::{Digest, Sha1};

const NS_ATOM: &str = "http://www.w3.org/2005/Atom";

/// The entries of an Atom document: the entry itself, or every entry of a feed.
pub fn entries(xml: &str) -> anyhow::Result<Vec<Element>> {
    let root: Element = xml.parse().context("not well-formed XML")?;
    match (root.name(), root.ns().as_str()) {
        ("entry", NS_ATOM) => Ok(vec![root]),
        ("feed", NS_ATOM) => Ok(root
            .children()
            .filter(|c| c.is("entry", NS_ATOM))
            .cloned()
            .collect()),
        (name, ns) => bail!("expected an Atom <entry/> or <feed/>, got <{name} xmlns='{ns}'>"),
    }
}

/// A stable item id for an entry: the SHA-1 of its Atom `<id>` (or of the whole entry
/// if it has none).
pub fn item_id(entry: &Element) -> String {
    let key = entry
        .get_child("id", NS_ATOM)
        .map(|i| i.text())
        .unwrap_or_else(|| stanza::to_xml(entry));
    Sha1::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Publishes every entry of `xml` to `node` (created if missing); returns the item ids.
pub async fn run(
    server: SocketAddr,
    jid: &str,
    password: &str,
    service: &str,
    node: &str,
    xml: &str,
) -> anyhow::Result<Vec<String>> {
    let entries = entries(xml)?;
    let mut client = login(server, jid, password).await?;
    ensure_node(&mut client, service, node).await?;
    let mut ids = Vec::with_capacity(entries.len());
    for entry in &entries {
        let id = item_id(entry);
        publish(&mut client, service, node, &id, &String::from(entry)).await?;
        ids.push(id);
    }
    Ok(ids)
}

const USAGE: &str = "
atom_publisher: publishes each entry of an Atom entry or feed to a node (created if
missing); the item id comes from the entry's <id>, so publishing again overwrites.

usage: atom_publisher --jid JID --password PASSWORD --node NODE [FILE | -]
                      [--server HOST:PORT] [--service JID]

  --jid, --password   the user to publish as (XMPP_JID, XMPP_PASSWORD)
  --node              the node to publish to (PUBSUB_NODE)
  FILE                the Atom document; - or nothing reads standard input
  --server            the server's client port (XMPP_SERVER; default 127.0.0.1:5222)
  --service           the pubsub service (PUBSUB_SERVICE; default pubsub.localhost)
";

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    help(&args, USAGE);
    finish(publisher(&args).await);
}

async fn publisher(args: &[String]) -> anyhow::Result<()> {
    let Login {
        server,
        jid,
        password,
        service,
    } = Login::from_args(args)?;
    let node = required(args, "--node", "PUBSUB_NODE")?;
    // The one argument that is neither a flag nor a flag's value.
    let mut rest = args.iter().skip(1);
    let mut file = "-".to_owned();
    while let Some(a) = rest.next() {
        if a.starts_with("--") {
            rest.next();
        } else {
            file = a.clone();
        }
    }
    let mut xml = String::new();
    if file == "-" {
        std::io::stdin().read_to_string(&mut xml)?;
    } else {
        xml = std::fs::read_to_string(&file).with_context(|| format!("cannot read {file}"))?;
    }
    for id in run(server, &jid, &password, &service, &node, &xml).await? {
        println!("published {id} to {node}");
    }
    Ok(())
}
