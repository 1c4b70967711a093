//! Items as a client sees them over XMPP: retrieval, polling until they match,
//! publishing a raw payload; and the ids pubsubd gives feed entries.

use std::time::Duration;

use pubsubd_testkit::{stanza, Client, Element};
use sha2::{Digest, Sha256};

use super::NS_PUBSUB;

pub const NS_ATOM: &str = "http://www.w3.org/2005/Atom";

/// The item id pubsubd derives from a feed entry id.
pub fn feed_item_id(entry_id: &str) -> String {
    hex::encode(&Sha256::digest(entry_id.as_bytes())[..16])
}

/// The items of `node` as an XMPP `<items/>` request returns them (newest first), or
/// the error condition.
pub async fn xmpp_items(
    client: &mut Client,
    service: &str,
    node: &str,
) -> anyhow::Result<Result<Vec<Element>, String>> {
    let reply = client
        .iq(stanza::iq(
            "get",
            service,
            stanza::parse(&format!(
                "<pubsub xmlns='{NS_PUBSUB}'><items node='{}'/></pubsub>",
                xml_escape(node)
            )),
        ))
        .await?;
    if reply.attr("type") != Some("result") {
        return Ok(Err(stanza::error_condition(&reply).unwrap_or_default()));
    }
    let items = reply
        .get_child("pubsub", NS_PUBSUB)
        .and_then(|p| p.get_child("items", NS_PUBSUB))
        .map(|i| {
            i.children()
                .filter(|c| c.is("item", NS_PUBSUB))
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    Ok(Ok(items))
}

/// Polls [`xmpp_items`] until `done` holds for the items, or fails after `timeout`.
pub async fn wait_items<F>(
    client: &mut Client,
    service: &str,
    node: &str,
    timeout: Duration,
    done: F,
) -> anyhow::Result<Vec<Element>>
where
    F: Fn(&[Element]) -> bool,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let got = xmpp_items(client, service, node).await?;
        if let Ok(items) = &got {
            if done(items) {
                return Ok(items.clone());
            }
        }
        if tokio::time::Instant::now() > deadline {
            anyhow::bail!(
                "items of {node} never matched; last answer: {:?}",
                got.map(|v| v.iter().map(stanza::to_xml).collect::<Vec<_>>())
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The ids of XMPP `<item/>`s.
pub fn ids(items: &[Element]) -> Vec<String> {
    items
        .iter()
        .filter_map(|i| i.attr("id").map(str::to_owned))
        .collect()
}

/// The Atom `<title/>` inside an XMPP `<item/>`.
pub fn atom_title(item: &Element) -> Option<String> {
    item.get_child("entry", NS_ATOM)
        .and_then(|e| e.get_child("title", NS_ATOM))
        .map(Element::text)
}

/// Publishes `payload` (XML) to `node` over XMPP and returns the iq result.
pub async fn xmpp_publish(
    client: &mut Client,
    service: &str,
    node: &str,
    id: &str,
    payload: &str,
) -> anyhow::Result<Element> {
    Ok(client
        .iq(stanza::iq(
            "set",
            service,
            stanza::parse(&format!(
                "<pubsub xmlns='{NS_PUBSUB}'><publish node='{node}'><item id='{id}'>{payload}</item></publish></pubsub>"
            )),
        ))
        .await?)
}

pub fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('\'', "&apos;")
}
