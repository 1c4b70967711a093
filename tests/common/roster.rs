//! Building real rosters between test users over XMPP: roster sets (RFC 6121 §2.3)
//! and presence subscriptions (§3), so the server holds what the `presence` and
//! `roster` access models read.

use std::time::Duration;

use pubsubd_testkit::{stanza, Client, Element};

/// How long the server may take to settle a subscription exchange.
const SETTLE: Duration = Duration::from_secs(15);

const NS_ROSTER: &str = "jabber:iq:roster";

/// `user` puts `contact` in its roster in `groups` (an empty list: in no group).
pub async fn set_item(user: &mut Client, contact: &str, groups: &[&str]) -> anyhow::Result<()> {
    let groups: String = groups
        .iter()
        .map(|g| format!("<group>{g}</group>"))
        .collect();
    let query = stanza::parse(&format!(
        "<query xmlns='{NS_ROSTER}'><item jid='{contact}'>{groups}</item></query>"
    ));
    let reply = user.iq(stanza::iq("set", "", query)).await?;
    anyhow::ensure!(
        reply.attr("type") == Some("result"),
        "roster set refused: {}",
        stanza::to_xml(&reply)
    );
    Ok(())
}

/// `user` removes `contact` from its roster (which also cancels the subscriptions).
pub async fn remove_item(user: &mut Client, contact: &str) -> anyhow::Result<()> {
    let query = stanza::parse(&format!(
        "<query xmlns='{NS_ROSTER}'><item jid='{contact}' subscription='remove'/></query>"
    ));
    let reply = user.iq(stanza::iq("set", "", query)).await?;
    anyhow::ensure!(
        reply.attr("type") == Some("result"),
        "roster remove refused"
    );
    Ok(())
}

/// `user`'s roster item for `contact`, read by `user` itself.
pub async fn item(user: &mut Client, contact: &str) -> anyhow::Result<Option<Element>> {
    let reply = user
        .iq(stanza::iq(
            "get",
            "",
            stanza::parse(&format!("<query xmlns='{NS_ROSTER}'/>")),
        ))
        .await?;
    Ok(reply
        .get_child("query", NS_ROSTER)
        .and_then(|q| q.children().find(|i| i.attr("jid") == Some(contact)))
        .cloned())
}

/// `contact` asks for `owner`'s presence and `owner` approves: the owner's roster then
/// has `contact` with subscription `from` (or `both`).
pub async fn subscribe_to_presence(contact: &mut Client, owner: &mut Client) -> anyhow::Result<()> {
    let (contact_jid, owner_jid) = (contact.bare_jid().to_owned(), owner.bare_jid().to_owned());
    contact.send(stanza::parse(&format!(
        "<presence xmlns='jabber:client' type='subscribe' to='{owner_jid}'/>"
    )))?;
    owner
        .wait_for(
            |e| {
                e.name() == "presence"
                    && e.attr("type") == Some("subscribe")
                    && e.attr("from").is_some_and(|f| f.starts_with(&contact_jid))
            },
            SETTLE,
        )
        .await?;
    owner.send(stanza::parse(&format!(
        "<presence xmlns='jabber:client' type='subscribed' to='{contact_jid}'/>"
    )))?;
    wait_subscription(owner, &contact_jid, &["from", "both"]).await
}

/// `owner` cancels `contact`'s subscription to its presence (RFC 6121 §3.2).
pub async fn cancel_presence(owner: &mut Client, contact: &str) -> anyhow::Result<()> {
    owner.send(stanza::parse(&format!(
        "<presence xmlns='jabber:client' type='unsubscribed' to='{contact}'/>"
    )))?;
    wait_subscription(owner, contact, &["none", "to"]).await
}

/// Waits until `user`'s roster item for `contact` has one of `states`.
async fn wait_subscription(
    user: &mut Client,
    contact: &str,
    states: &[&str],
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + SETTLE;
    loop {
        let state = item(user, contact)
            .await?
            .and_then(|i| i.attr("subscription").map(str::to_owned))
            .unwrap_or_else(|| "none".into());
        if states.contains(&state.as_str()) {
            return Ok(());
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "{contact} in {}'s roster stayed '{state}', not {states:?}",
            user.bare_jid()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
