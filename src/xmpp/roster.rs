//! Reading a user's roster as a privileged entity (XEP-0356 §4.2): an
//! `<iq type='get'/>` with a `jabber:iq:roster` query from the component to the user's
//! bare JID. The server answers for the user when it granted roster `get` (or `both`)
//! on the present stream; ejabberd (`mod_roster`'s remote-access hook) and Prosody's
//! `mod_privilege` answer the same way in both namespace versions.

use std::time::Duration;

use minidom::Element;
use xmpp_parsers::jid::{BareJid, Jid};
use xmpp_parsers::ns;
use xmpp_parsers::roster::{Item, Roster};

use super::outbound::Outbound;
use super::privilege::Privileges;
use super::queries::{Queries, QueryError};

/// How long a roster read may take. A roster is read inside a request's handling, so
/// it must not hold the requester's lane long; a loaded server answers in milliseconds.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a roster was not read.
#[derive(Debug, thiserror::Error)]
pub enum RosterError {
    /// The owner's server granted no roster `get` on the present stream.
    #[error("the server of {0} granted no roster privilege")]
    NotGranted(String),
    /// The query failed.
    #[error(transparent)]
    Query(#[from] QueryError),
    /// The server answered with an empty result and no `<query/>`. Not read as an
    /// empty roster: a roster that is wrongly empty would take every contact's access
    /// away, and a server answers a roster get with its query.
    #[error("the server answered the roster get without a roster")]
    NoRoster,
    /// The answer's payload was not a `jabber:iq:roster` query.
    #[error("the answer is a <{name} xmlns='{ns}'/>, not a roster")]
    NotARoster {
        /// The payload's element name.
        name: String,
        /// Its namespace.
        ns: String,
    },
}

/// A roster as read: its items, and how many were skipped as unreadable (a JID the
/// parser rejects, say), so that one odd contact does not make the whole roster unknown.
#[derive(Debug, Default)]
pub struct ReadRoster {
    /// The items that parsed.
    pub items: Vec<Item>,
    /// How many `<item/>`s did not.
    pub skipped: usize,
}

/// Whether `domain`'s rosters may be read on the present stream.
pub fn readable(privileges: &Privileges, domain: &str) -> bool {
    privileges.of(domain).is_some_and(|g| g.roster.may_read())
}

/// Reads `owner`'s roster, as `own` (the component's JID).
pub async fn read(
    queries: &Queries,
    privileges: &Privileges,
    out: &Outbound,
    own: &BareJid,
    owner: &BareJid,
) -> Result<ReadRoster, RosterError> {
    if !readable(privileges, owner.domain().as_str()) {
        return Err(RosterError::NotGranted(owner.domain().to_string()));
    }
    let query = Element::from(Roster {
        ver: None,
        items: vec![],
    });
    let answer = queries
        .get(
            out,
            &Jid::from(own.clone()),
            &Jid::from(owner.clone()),
            query,
            READ_TIMEOUT,
        )
        .await?;
    match answer {
        None => Err(RosterError::NoRoster),
        Some(el) => parse(&el),
    }
}

/// The items of a `jabber:iq:roster` query, item by item: an item that does not parse
/// is skipped and counted, the others kept.
pub fn parse(el: &Element) -> Result<ReadRoster, RosterError> {
    if !el.is("query", ns::ROSTER) {
        return Err(RosterError::NotARoster {
            name: el.name().to_string(),
            ns: el.ns(),
        });
    }
    let mut read = ReadRoster::default();
    for child in el.children().filter(|c| c.is("item", ns::ROSTER)) {
        match Item::try_from(child.clone()) {
            Ok(item) => read.items.push(item),
            Err(_) => read.skipped += 1,
        }
    }
    Ok(read)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn el(xml: &str) -> Element {
        xml.parse().expect("well-formed")
    }

    /// Reads `owner@localhost`'s roster with the privilege granted, the server
    /// answering with `answer` (its `id` filled in).
    async fn read_answered(answer: &str) -> Result<ReadRoster, RosterError> {
        use std::sync::Arc;

        use super::super::outbound::Outgoing;

        let privileges = Privileges::default();
        assert!(privileges.take(&el(
            "<message xmlns='jabber:component:accept' from='localhost' to='ps.localhost'>\
             <privilege xmlns='urn:xmpp:privilege:2'><perm access='roster' type='get'/>\
             </privilege></message>"
        )));
        let queries = Arc::new(Queries::default());
        let (out, mut queue) = Outbound::channel(8);
        let server = {
            let queries = queries.clone();
            let answer = answer.to_string();
            tokio::spawn(async move {
                let Some(Outgoing::Stanza(sent)) = queue.recv().await else {
                    panic!("the roster get is queued as a stanza");
                };
                let sent: Element = sent.parse().expect("well-formed");
                let id = sent.attr("id").expect("an id");
                assert!(queries.take(&el(&answer.replace("ID", id))));
            })
        };
        let own = BareJid::new("ps.localhost").expect("jid");
        let owner = BareJid::new("owner@localhost").expect("jid");
        let read = read(&queries, &privileges, &out, &own, &owner).await;
        server.await.expect("answered");
        read
    }

    #[tokio::test]
    async fn an_empty_result_without_a_query_is_an_error_not_an_empty_roster() {
        let empty = read_answered(
            "<iq xmlns='jabber:component:accept' type='result' id='ID' from='owner@localhost'/>",
        )
        .await;
        assert!(matches!(empty, Err(RosterError::NoRoster)), "{empty:?}");
        let roster = read_answered(
            "<iq xmlns='jabber:component:accept' type='result' id='ID' from='owner@localhost'>\
             <query xmlns='jabber:iq:roster'><item jid='a@x' subscription='both'/></query></iq>",
        )
        .await
        .expect("a roster");
        assert_eq!(roster.items.len(), 1);
    }

    #[test]
    fn one_bad_item_is_skipped_and_the_rest_kept() {
        let read = parse(&el("<query xmlns='jabber:iq:roster'>\
             <item jid='a@x' subscription='both'/>\
             <item jid='@@bad@@/' subscription='both'/>\
             <item subscription='both'/>\
             <item jid='b@x' subscription='from'><group>g</group></item></query>"))
        .expect("a roster");
        assert_eq!(read.items.len(), 2);
        assert_eq!(read.skipped, 2);
    }

    #[test]
    fn an_empty_query_is_an_empty_roster_but_another_payload_is_not_a_roster() {
        let empty = parse(&el("<query xmlns='jabber:iq:roster'/>")).expect("a roster");
        assert!(empty.items.is_empty());
        assert!(matches!(
            parse(&el("<query xmlns='jabber:iq:version'/>")),
            Err(RosterError::NotARoster { .. })
        ));
    }
}
