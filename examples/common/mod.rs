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
pub const NS_MAM: &str = "urn:xmpp:mam:2";
const NS_FORWARD: &str = "urn:xmpp:forward:0";
const NS_DATA: &str = "jabber:x:data";
const NS_RSM: &str = "http://jabber.org/protocol/rsm";

/// Logs in as `jid` with `password` on the server's client port.
pub async fn login(server: SocketAddr, jid: &str, password: &str) -> anyhow::Result<Client> {
    Client::connect(server, jid, password)
        .await
        .with_context(|| format!("cannot log in as {jid}"))
}

/// The server's default client port on this machine (`deploy/dev/prosody.sh`'s).
pub const DEFAULT_SERVER: &str = "127.0.0.1:5222";
/// The service `deploy/dev/prosody.sh` has a component slot for.
pub const DEFAULT_SERVICE: &str = "pubsub.localhost";

/// A refusal from the service, as one line: the error condition and the text the
/// service gave with it, never the raw stanza.
#[derive(Debug)]
pub struct Refused {
    pub service: String,
    pub condition: String,
    pub text: Option<String>,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} answered {}", self.service, self.condition)?;
        if let Some(text) = &self.text {
            write!(f, " ({text})")?;
        }
        Ok(())
    }
}

impl std::error::Error for Refused {}

impl Refused {
    /// The refusal carried by the error `reply` from `service`.
    pub fn from_reply(service: &str, reply: &Element) -> Refused {
        let text = reply
            .children()
            .find(|c| c.name() == "error")
            .and_then(|e| e.children().find(|c| c.name() == "text"))
            .map(Element::text);
        Refused {
            service: service.to_owned(),
            condition: stanza::error_condition(reply).unwrap_or_else(|| "an error".into()),
            text,
        }
    }
}

/// Sends a pubsub IQ to `service` and returns the result, or fails with [`Refused`].
pub async fn pubsub_iq(
    client: &mut Client,
    service: &str,
    kind: &str,
    inner: &str,
) -> anyhow::Result<Element> {
    let payload = stanza::parse(&format!("<pubsub xmlns='{NS_PUBSUB}'>{inner}</pubsub>"));
    let reply = client.iq(stanza::iq(kind, service, payload)).await?;
    if reply.attr("type") != Some("result") {
        return Err(Refused::from_reply(service, &reply).into());
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
        _ => bail!(
            "cannot create node {node}: {}",
            Refused::from_reply(service, &reply)
        ),
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

/// An item read from a node's archive (XEP-0313 on the pubsub service, XEP-0442).
#[derive(Debug, Clone)]
pub struct Archived {
    /// Its archive id: "after this one" is exact, across restarts.
    pub id: String,
    /// The item's own id.
    pub item: String,
    pub payload: Option<Element>,
}

/// One page of `node`'s archive on `service`: the items published after archive id
/// `after` (from the beginning when `None`), oldest first, and whether it was the last.
pub async fn archive_page(
    client: &mut Client,
    service: &str,
    node: &str,
    after: Option<&str>,
) -> anyhow::Result<(Vec<Archived>, bool)> {
    let queryid = "resume";
    let form = after.map_or(String::new(), |id| {
        format!(
            "<x xmlns='{NS_DATA}' type='submit'>\
             <field var='FORM_TYPE' type='hidden'><value>{NS_MAM}</value></field>\
             <field var='after-id'><value>{id}</value></field></x>"
        )
    });
    let query = stanza::parse(&format!(
        "<query xmlns='{NS_MAM}' queryid='{queryid}' node='{node}'>{form}\
         <set xmlns='{NS_RSM}'><max>100</max></set></query>"
    ));
    let reply = client.iq(stanza::iq("set", service, query)).await?;
    if reply.attr("type") != Some("result") {
        return Err(Refused::from_reply(service, &reply).into());
    }
    let complete = reply
        .get_child("fin", NS_MAM)
        .is_some_and(|fin| matches!(fin.attr("complete"), Some("true" | "1")));
    // The result messages came before the answer; notifications that came meanwhile
    // stay queued for the caller.
    let mut page = Vec::new();
    while let Ok(message) = client
        .wait_for(
            |m: &Element| {
                m.get_child("result", NS_MAM)
                    .is_some_and(|r| r.attr("queryid") == Some(queryid))
            },
            Duration::ZERO,
        )
        .await
    {
        let Some(result) = message.get_child("result", NS_MAM) else {
            continue;
        };
        let item = result
            .get_child("forwarded", NS_FORWARD)
            .and_then(|f| f.get_child("message", "jabber:client"))
            .and_then(|m| m.get_child("event", NS_EVENT))
            .and_then(|e| e.get_child("items", NS_EVENT))
            .and_then(|i| i.get_child("item", NS_EVENT));
        if let (Some(id), Some(item)) = (result.attr("id"), item) {
            page.push(Archived {
                id: id.to_owned(),
                item: item.attr("id").unwrap_or_default().to_owned(),
                payload: item.children().next().cloned(),
            });
        }
    }
    Ok((page, complete))
}

/// The archive id of `node`'s newest item, if it has any.
pub async fn archive_end(
    client: &mut Client,
    service: &str,
    node: &str,
) -> anyhow::Result<Option<String>> {
    let query = stanza::parse(&format!("<metadata xmlns='{NS_MAM}' node='{node}'/>"));
    let reply = client.iq(stanza::iq("get", service, query)).await?;
    if reply.attr("type") != Some("result") {
        return Err(Refused::from_reply(service, &reply).into());
    }
    Ok(reply
        .get_child("metadata", NS_MAM)
        .and_then(|m| m.get_child("end", NS_MAM))
        .and_then(|e| e.attr("id"))
        .map(str::to_owned))
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
    arg(args, name, env).with_context(|| format!("give {name} (or {env}); see --help"))
}

/// Where and as whom an example logs in, and the service it talks to: `--server`
/// (default [`DEFAULT_SERVER`]), `--jid`, `--password`, `--service` (default
/// [`DEFAULT_SERVICE`]), each also from its environment variable.
pub struct Login {
    pub server: SocketAddr,
    pub jid: String,
    pub password: String,
    pub service: String,
}

impl Login {
    pub fn from_args(args: &[String]) -> anyhow::Result<Login> {
        Ok(Login {
            server: arg(args, "--server", "XMPP_SERVER")
                .unwrap_or_else(|| DEFAULT_SERVER.into())
                .parse()
                .context("--server is HOST:PORT, e.g. 127.0.0.1:5222")?,
            jid: required(args, "--jid", "XMPP_JID")?,
            password: required(args, "--password", "XMPP_PASSWORD")?,
            service: arg(args, "--service", "PUBSUB_SERVICE")
                .unwrap_or_else(|| DEFAULT_SERVICE.into()),
        })
    }
}

/// Prints `usage` and exits when the arguments ask for help.
pub fn help(args: &[String], usage: &str) {
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{}", usage.trim());
        std::process::exit(0);
    }
}

/// Ends the program with `outcome`: on an error, one line on stderr (the error and its
/// causes, joined) and exit status 1.
pub fn finish(outcome: anyhow::Result<()>) {
    if let Err(e) = outcome {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
