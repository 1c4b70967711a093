//! Reading a user's roster as a privileged entity (XEP-0356 §4.2): an
//! `<iq type='get'/>` with a `jabber:iq:roster` query from the component to the user's
//! bare JID. The server answers for the user when it granted roster `get` (or `both`)
//! on the present stream; ejabberd (`mod_roster`'s remote-access hook) and Prosody's
//! `mod_privilege` answer the same way in both namespace versions.

use std::time::Duration;

use minidom::Element;
use xmpp_parsers::jid::{BareJid, Jid};
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
    /// The answer was not a roster.
    #[error("the answer is not a roster: {0}")]
    Malformed(String),
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
) -> Result<Vec<Item>, RosterError> {
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
        // An empty result: an empty roster (RFC 6121 allows it with versioning only,
        // but nothing else could be meant).
        None => Ok(vec![]),
        Some(el) => Roster::try_from(el)
            .map(|r| r.items)
            .map_err(|e| RosterError::Malformed(e.to_string())),
    }
}
