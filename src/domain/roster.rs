//! What an owner's roster says about a requester, for the `presence` and `roster` access
//! models (XEP-0060 §4.5).
//!
//! The roster itself is read by the caller (XEP-0356, through the server); this module
//! only keeps the two facts the rules need of each contact and answers from them. It
//! never sees how or when the roster was read.

use std::collections::HashMap;

use xmpp_parsers::jid::BareJid;
use xmpp_parsers::roster::{Item, Subscription};

use super::access::AccessModel;

/// The most contacts a roster may hold to be kept: a larger one is treated as unknown
/// (nothing admitted that the owner did not affiliate, nothing taken back), so one
/// roster cannot fill the cache. Far above any person's contacts.
pub const MAX_CONTACTS: usize = 10_000;

/// The most roster groups kept per contact; the rest are not looked at. A person files
/// a contact under a handful of groups.
pub const MAX_GROUPS_PER_CONTACT: usize = 32;

/// A roster over [`MAX_CONTACTS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a roster of {contacts} contacts is over the {MAX_CONTACTS} kept")]
pub struct RosterTooLarge {
    /// How many items it holds.
    pub contacts: usize,
}

/// One contact of an owner's roster, as the access rules see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contact {
    /// The contact has a subscription to the owner's presence: the owner's item for it
    /// says `from` or `both`.
    pub sees_owner: bool,
    /// The roster groups the owner put the contact in.
    pub groups: Vec<String>,
}

/// An owner's roster, reduced to what the rules ask.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OwnerRoster {
    contacts: HashMap<BareJid, Contact>,
}

impl OwnerRoster {
    /// From the items of a `jabber:iq:roster` result; refused over [`MAX_CONTACTS`].
    pub fn from_items(items: Vec<Item>) -> Result<Self, RosterTooLarge> {
        if items.len() > MAX_CONTACTS {
            return Err(RosterTooLarge {
                contacts: items.len(),
            });
        }
        let contacts = items
            .into_iter()
            .filter(|i| i.subscription != Subscription::Remove)
            .map(|i| {
                let contact = Contact {
                    sees_owner: matches!(i.subscription, Subscription::From | Subscription::Both),
                    groups: i
                        .groups
                        .into_iter()
                        .take(MAX_GROUPS_PER_CONTACT)
                        .map(|g| g.0)
                        .collect(),
                };
                (i.jid, contact)
            })
            .collect();
        Ok(OwnerRoster { contacts })
    }

    /// How many contacts it holds (what a cache of rosters counts).
    pub fn len(&self) -> usize {
        self.contacts.len()
    }

    /// Whether it holds no contact.
    pub fn is_empty(&self) -> bool {
        self.contacts.is_empty()
    }

    /// The `presence` model's question: is `who` subscribed to the owner's presence
    /// (`from` or `both` on the owner's side)?
    pub fn presence_subscribed(&self, who: &BareJid) -> bool {
        self.contacts.get(who).is_some_and(|c| c.sees_owner)
    }

    /// The `roster` model's question: is `who` in one of the `allowed` groups? The
    /// group alone decides (§4.5: "any entity in the specified roster group(s)"), not
    /// the presence subscription. No allowed group admits nobody.
    pub fn in_groups(&self, who: &BareJid, allowed: &[String]) -> bool {
        self.contacts
            .get(who)
            .is_some_and(|c| c.groups.iter().any(|g| allowed.contains(g)))
    }
}

/// What the owners' rosters say of `who` on a node of `model` with the allowed `groups`
/// (the [`AccessContext`](super::AccessContext) fact of that model): yes if any owner's
/// roster admits, unknown if none does and one could not be read (`None` in
/// `rosters`), else no. Models that do not read rosters admit.
pub fn admitted<'r>(
    rosters: impl IntoIterator<Item = Option<&'r OwnerRoster>>,
    model: AccessModel,
    who: &BareJid,
    groups: &[String],
) -> Option<bool> {
    let mut unknown = false;
    for roster in rosters {
        let admits = match (roster, model) {
            (None, _) => {
                unknown = true;
                continue;
            }
            (Some(r), AccessModel::Presence) => r.presence_subscribed(who),
            (Some(r), AccessModel::Roster) => r.in_groups(who, groups),
            (Some(_), _) => true,
        };
        if admits {
            return Some(true);
        }
    }
    (!unknown).then_some(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use xmpp_parsers::roster::Roster;

    fn roster(xml: &str) -> OwnerRoster {
        let el: minidom::Element = format!("<query xmlns='jabber:iq:roster'>{xml}</query>")
            .parse()
            .expect("well-formed");
        OwnerRoster::from_items(Roster::try_from(el).expect("a roster").items).expect("small")
    }

    fn jid(s: &str) -> BareJid {
        BareJid::new(s).expect("jid")
    }

    #[test]
    fn a_roster_over_the_cap_is_refused_and_groups_are_capped() {
        let many = (0..=MAX_CONTACTS)
            .map(|n| format!("<item jid='c{n}@x' subscription='both'/>"))
            .collect::<String>();
        let el: minidom::Element = format!("<query xmlns='jabber:iq:roster'>{many}</query>")
            .parse()
            .expect("well-formed");
        let items = Roster::try_from(el).expect("a roster").items;
        assert_eq!(
            OwnerRoster::from_items(items),
            Err(RosterTooLarge {
                contacts: MAX_CONTACTS + 1
            })
        );
        let groups = (0..100)
            .map(|n| format!("<group>g{n}</group>"))
            .collect::<String>();
        let r = roster(&format!(
            "<item jid='a@x' subscription='both'>{groups}</item>"
        ));
        assert!(r.in_groups(&jid("a@x"), &["g0".to_string()]));
        assert!(
            !r.in_groups(&jid("a@x"), &["g99".to_string()]),
            "past the cap"
        );
    }

    #[test]
    fn only_from_and_both_are_presence_subscriptions() {
        let r = roster(
            "<item jid='a@x' subscription='from'/><item jid='b@x' subscription='both'/>\
             <item jid='c@x' subscription='to'/><item jid='d@x' subscription='none' ask='subscribe'/>\
             <item jid='e@x'/>",
        );
        assert!(r.presence_subscribed(&jid("a@x")));
        assert!(r.presence_subscribed(&jid("b@x")));
        for no in ["c@x", "d@x", "e@x", "stranger@x"] {
            assert!(!r.presence_subscribed(&jid(no)), "{no}");
        }
        assert_eq!(r.len(), 5);
    }

    #[test]
    fn any_owner_admitting_admits_and_an_unread_roster_makes_no_unknown() {
        let friend = jid("a@x");
        let yes = roster("<item jid='a@x' subscription='both'><group>friends</group></item>");
        let no = roster("<item jid='a@x' subscription='to'/>");
        let groups = vec!["friends".to_string()];
        for model in [AccessModel::Presence, AccessModel::Roster] {
            let got =
                |rs: &[Option<&OwnerRoster>]| admitted(rs.iter().copied(), model, &friend, &groups);
            assert_eq!(got(&[Some(&no), Some(&yes)]), Some(true), "{model}");
            assert_eq!(got(&[None, Some(&yes)]), Some(true), "{model}");
            assert_eq!(got(&[Some(&no), None]), None, "{model}");
            assert_eq!(got(&[Some(&no)]), Some(false), "{model}");
            assert_eq!(got(&[]), Some(false), "{model}: no owner, nobody admitted");
        }
        assert_eq!(
            admitted([Some(&no)], AccessModel::Open, &friend, &groups),
            Some(true)
        );
    }

    #[test]
    fn a_group_admits_whoever_is_in_it_whatever_the_subscription() {
        let r = roster(
            "<item jid='a@x' subscription='none'><group>friends</group></item>\
             <item jid='b@x' subscription='both'><group>work</group><group>family</group></item>\
             <item jid='c@x' subscription='both'/>",
        );
        let allowed = vec!["friends".to_string(), "family".to_string()];
        assert!(r.in_groups(&jid("a@x"), &allowed));
        assert!(r.in_groups(&jid("b@x"), &allowed));
        assert!(!r.in_groups(&jid("c@x"), &allowed), "in no group");
        assert!(
            !r.in_groups(&jid("b@x"), &["friends".to_string()]),
            "wrong group"
        );
        assert!(!r.in_groups(&jid("stranger@x"), &allowed));
        assert!(
            !r.in_groups(&jid("a@x"), &[]),
            "no group allowed admits nobody"
        );
    }
}
