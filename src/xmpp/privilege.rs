//! XEP-0356 Privileged Entity: what the server lets pubsubd see of its users.
//!
//! A component sees no rosters and only the presence sent to it. A server configured to
//! trust pubsubd says so right after the handshake, on every stream: a `<message/>` from
//! its domain carrying `<privilege/>` with one `<perm/>` per kind of access (roster,
//! presence, message, and in version 2 iq). ejabberd 23.01 speaks
//! `urn:xmpp:privilege:1`, Prosody's `mod_privilege` `urn:xmpp:privilege:2`; the
//! permissions pubsubd uses mean the same in both.
//!
//! What was granted is recorded per server domain (a server with several hosts sends
//! one message per host), forgotten when a new stream starts (the server grants again,
//! or no longer), and logged, so an operator sees at start-up whether the server's
//! configuration took.

use std::collections::BTreeMap;
use std::sync::Mutex;

use minidom::Element;
use xmpp_parsers::jid::Jid;

/// The namespaces of XEP-0356, oldest first.
pub const NAMESPACES: [&str; 2] = ["urn:xmpp:privilege:1", "urn:xmpp:privilege:2"];

/// Access to users' rosters (`roster` permission).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RosterAccess {
    #[default]
    None,
    Get,
    Set,
    Both,
}

impl RosterAccess {
    /// Whether pubsubd may read rosters.
    pub fn may_read(self) -> bool {
        matches!(self, RosterAccess::Get | RosterAccess::Both)
    }
}

/// Access to users' presence (`presence` permission).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PresenceAccess {
    #[default]
    None,
    /// The presence of the server's own users.
    ManagedEntity,
    /// That, and the presence of their contacts.
    Roster,
}

/// What one server domain granted on the present stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    /// The XEP-0356 namespace the server spoke.
    pub namespace: &'static str,
    pub roster: RosterAccess,
    pub presence: PresenceAccess,
    /// Whether pubsubd may send messages on the server's behalf (`outgoing`).
    pub message: bool,
}

impl Grants {
    /// In words for the log and the status page: `roster=get presence=roster`.
    pub fn describe(&self) -> String {
        let roster = match self.roster {
            RosterAccess::None => "none",
            RosterAccess::Get => "get",
            RosterAccess::Set => "set",
            RosterAccess::Both => "both",
        };
        let presence = match self.presence {
            PresenceAccess::None => "none",
            PresenceAccess::ManagedEntity => "managed_entity",
            PresenceAccess::Roster => "roster",
        };
        let message = if self.message { "outgoing" } else { "none" };
        format!("roster={roster} presence={presence} message={message}")
    }
}

/// The privileges granted on the present streams, by server domain.
#[derive(Debug, Default)]
pub struct Privileges {
    granted: Mutex<BTreeMap<String, Grants>>,
}

impl Privileges {
    /// Takes `el` if it is a server's `<privilege/>` message, recording and logging what
    /// it grants; the reader routes it on otherwise.
    pub(crate) fn take(&self, el: &Element) -> bool {
        let Some((domain, grants)) = parse(el) else {
            return false;
        };
        tracing::info!(
            %domain,
            namespace = grants.namespace,
            "the server granted privileges (XEP-0356): {}",
            grants.describe()
        );
        if let Ok(mut granted) = self.granted.lock() {
            granted.insert(domain, grants);
        }
        true
    }

    /// A new stream: the server grants again if it still does.
    pub(crate) fn stream_started(&self) {
        if let Ok(mut granted) = self.granted.lock() {
            granted.clear();
        }
    }

    /// What `domain` granted, if anything.
    pub fn of(&self, domain: &str) -> Option<Grants> {
        self.granted.lock().ok()?.get(domain).cloned()
    }

    /// Every domain's grants, for the status page.
    pub fn all(&self) -> Vec<(String, Grants)> {
        self.granted
            .lock()
            .map(|g| g.iter().map(|(d, g)| (d.clone(), g.clone())).collect())
            .unwrap_or_default()
    }
}

/// The domain and grants of a `<privilege/>` message: a `<message/>` from a bare domain
/// (only a server speaks as one) with a `<privilege/>` child of a known namespace.
fn parse(el: &Element) -> Option<(String, Grants)> {
    if el.name() != "message" {
        return None;
    }
    let (privilege, namespace) = NAMESPACES
        .iter()
        .find_map(|ns| Some((el.get_child("privilege", *ns)?, *ns)))?;
    let from: Jid = el.attr("from")?.parse().ok()?;
    if from.node().is_some() || from.resource().is_some() {
        return None;
    }
    let mut grants = Grants {
        namespace,
        ..Grants::default()
    };
    for perm in privilege.children().filter(|c| c.is("perm", namespace)) {
        match (perm.attr("access"), perm.attr("type")) {
            (Some("roster"), Some("get")) => grants.roster = RosterAccess::Get,
            (Some("roster"), Some("set")) => grants.roster = RosterAccess::Set,
            (Some("roster"), Some("both")) => grants.roster = RosterAccess::Both,
            (Some("presence"), Some("managed_entity")) => {
                grants.presence = PresenceAccess::ManagedEntity
            }
            (Some("presence"), Some("roster")) => grants.presence = PresenceAccess::Roster,
            (Some("message"), Some("outgoing")) => grants.message = true,
            _ => {}
        }
    }
    Some((from.domain().to_string(), grants))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(from: &str, body: &str) -> Element {
        format!("<message xmlns='jabber:component:accept' from='{from}' to='pubsub.localhost'>{body}</message>")
            .parse()
            .expect("well-formed")
    }

    #[test]
    fn both_namespaces_grant_the_same_permissions() {
        for ns in NAMESPACES {
            let el = message(
                "localhost",
                &format!(
                    "<privilege xmlns='{ns}'><perm access='roster' type='get'/>\
                     <perm access='presence' type='roster'/><perm access='message' type='outgoing'/>\
                     <perm access='iq'><namespace ns='http://jabber.org/protocol/pubsub' type='set'/></perm></privilege>"
                ),
            );
            let privileges = Privileges::default();
            assert!(privileges.take(&el), "{ns}");
            let grants = privileges.of("localhost").expect("recorded");
            assert_eq!(grants.namespace, ns);
            assert!(grants.roster.may_read());
            assert_eq!(grants.presence, PresenceAccess::Roster);
            assert!(grants.message);
            assert_eq!(
                grants.describe(),
                "roster=get presence=roster message=outgoing"
            );
        }
    }

    #[test]
    fn only_a_server_grants_and_a_new_stream_forgets() {
        let privileges = Privileges::default();
        let perm = "<privilege xmlns='urn:xmpp:privilege:2'><perm access='roster' type='both'/></privilege>";
        assert!(!privileges.take(&message("mallory@localhost", perm)));
        assert!(!privileges.take(&message("localhost/res", perm)));
        assert!(!privileges.take(&message("localhost", "<body>hi</body>")));
        assert!(!privileges.take(&message(
            "localhost",
            "<privilege xmlns='urn:xmpp:privilege:9'/>"
        )));
        assert_eq!(privileges.all(), vec![]);
        assert!(privileges.take(&message("localhost", perm)));
        assert_eq!(
            privileges.of("localhost").map(|g| g.roster),
            Some(RosterAccess::Both)
        );
        privileges.stream_started();
        assert_eq!(privileges.of("localhost"), None);
    }

    #[test]
    fn an_empty_grant_is_recorded_as_nothing_granted() {
        let privileges = Privileges::default();
        assert!(privileges.take(&message(
            "localhost",
            "<privilege xmlns='urn:xmpp:privilege:1'/>"
        )));
        let grants = privileges.of("localhost").expect("recorded");
        assert_eq!(grants.describe(), "roster=none presence=none message=none");
        assert!(!grants.roster.may_read());
    }
}
