//! What the examples share: logging in and the few pubsub stanzas they send. They use
//! the testkit's raw-XML client because this workspace builds xmpp-parsers for a
//! component (its client stanzas carry the wrong namespace here); in an application
//! of your own, any XMPP client library does the same.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context};
use pubsubd_testkit::{stanza, Client, Element};

pub const NS_PUBSUB: &str = "http://jabber.org/protocol/pubsub";
pub const NS_EVENT: &str = "http://jabber.org/protocol/pubsub#event";

/// Logs in as `jid` with `password` on the server's client port.
pub async fn login(server: SocketAddr, jid: &str, password: &str) -> anyhow::Result<Client> {
    Client::connect(server, jid, password)
        .await
        .with_context(|| format!("cannot log in as {jid}"))
}

/// Sends a pubsub IQ to `service` and returns the result, or fails with the error.
pub async fn pubsub_iq(
    client: &mut Client,
    service: &str,
    kind: &str,
    inner: &str,
) -> anyhow::Result<Element> {
    let payload = stanza::parse(&format!("<pubsub xmlns='{NS_PUBSUB}'>{inner}</pubsub>"));
    let reply = client.iq(stanza::iq(kind, service, payload)).await?;
    if reply.attr("type") != Some("result") {
        bail!("{service} refused: {}", stanza::to_xml(&reply));
    }
    Ok(reply)
}

/// Creates `node` unless it exists already.
pub async fn ensure_node(client: &mut Client, service: &str, node: &str) -> anyhow::Result<()> {
    let payload = stanza::parse(&format!(
        "<pubsub xmlns='{NS_PUBSUB}'><create node='{node}'/></pubsub>"
    ));
    let reply = client.iq(stanza::iq("set", service, payload)).await?;
    match (
        reply.attr("type"),
        stanza::error_condition(&reply).as_deref(),
    ) {
        (Some("result"), _) | (_, Some("conflict")) => Ok(()),
        _ => bail!("cannot create {node}: {}", stanza::to_xml(&reply)),
    }
}

/// Subscribes the client's bare JID to `node`.
pub async fn subscribe(client: &mut Client, service: &str, node: &str) -> anyhow::Result<()> {
    let jid = client.bare_jid().to_owned();
    pubsub_iq(
        client,
        service,
        "set",
        &format!("<subscribe node='{node}' jid='{jid}'/>"),
    )
    .await?;
    Ok(())
}

/// Publishes `payload_xml` to `node` as item `id`.
pub async fn publish(
    client: &mut Client,
    service: &str,
    node: &str,
    id: &str,
    payload_xml: &str,
) -> anyhow::Result<()> {
    pubsub_iq(
        client,
        service,
        "set",
        &format!("<publish node='{node}'><item id='{id}'>{payload_xml}</item></publish>"),
    )
    .await?;
    Ok(())
}

/// The next event notification from `service`: `(node, items)` with the items' payloads.
pub async fn next_event(
    client: &mut Client,
    service: &str,
    timeout: Duration,
) -> Option<(String, Vec<Element>)> {
    let from = service.to_owned();
    let msg = client
        .wait_for(
            move |s: &Element| {
                s.name() == "message"
                    && s.attr("from") == Some(from.as_str())
                    && s.get_child("event", NS_EVENT).is_some()
            },
            timeout,
        )
        .await
        .ok()?;
    let items = msg
        .get_child("event", NS_EVENT)?
        .get_child("items", NS_EVENT)?;
    let node = items.attr("node")?.to_owned();
    let payloads = items
        .children()
        .filter(|i| i.name() == "item")
        .filter_map(|i| i.children().next().cloned())
        .collect();
    Some((node, payloads))
}

/// The value of `--name VALUE` in `args`, or the environment variable `env`.
pub fn arg(args: &[String], name: &str, env: &str) -> Option<String> {
    args.windows(2)
        .find(|w| w[0] == name)
        .map(|w| w[1].clone())
        .or_else(|| std::env::var(env).ok())
}

/// Like [`arg`], but required.
pub fn required(args: &[String], name: &str, env: &str) -> anyhow::Result<String> {
    arg(args, name, env).with_context(|| format!("give {name} (or {env})"))
}
