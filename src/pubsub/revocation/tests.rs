//! The sweep's decision (through the permission table) and its bookkeeping.

use super::*;
use crate::domain::{NodeConfig, NodeId, SubId, SubscribeOptions};

fn jid(s: &str) -> BareJid {
    BareJid::new(s).expect("jid")
}

fn node(model: AccessModel, groups: &[&str]) -> NodeRecord {
    let config = NodeConfig {
        access_model: model,
        roster_groups_allowed: groups.iter().map(|g| g.to_string()).collect(),
        ..NodeConfig::default()
    };
    NodeRecord {
        pk: 1,
        name: NodeId::parse("n").expect("node id"),
        config,
        creator: None,
        created_at: chrono::Utc::now(),
    }
}

fn sub(pk: i64, who: &str) -> SubscriptionRecord {
    SubscriptionRecord {
        pk,
        node: NodeId::parse("n").expect("node id"),
        jid: who.parse().expect("jid"),
        subid: SubId::generate(),
        state: SubscriptionState::Subscribed,
        options: SubscribeOptions::default(),
    }
}

fn roster(xml: &str) -> OwnerRoster {
    let el: minidom::Element = format!("<query xmlns='jabber:iq:roster'>{xml}</query>")
        .parse()
        .expect("well-formed");
    OwnerRoster::from_items(
        xmpp_parsers::roster::Roster::try_from(el)
            .expect("roster")
            .items,
    )
    .expect("small")
}

fn pks(v: Vec<&SubscriptionRecord>) -> Vec<i64> {
    v.into_iter().map(|s| s.pk).collect()
}

#[test]
fn only_unaffiliated_subscribers_the_rosters_no_longer_admit_lapse() {
    let subs = [
        sub(1, "friend@x/phone"),
        sub(2, "gone@x"),
        sub(3, "member@x"),
        sub(4, "owner@x"),
        sub(5, "publisher@x"),
    ];
    let affiliations = [
        (jid("owner@x"), Affiliation::Owner),
        (jid("member@x"), Affiliation::Member),
        (jid("publisher@x"), Affiliation::Publisher),
    ];
    let r = roster(
        "<item jid='friend@x' subscription='from'><group>g</group></item>\
         <item jid='gone@x' subscription='to'/>",
    );
    let presence = node(AccessModel::Presence, &[]);
    assert_eq!(
        pks(lapsed(&presence, &affiliations, &subs, &[Some(&r)])),
        [2]
    );
    let by_group = node(AccessModel::Roster, &["g"]);
    assert_eq!(
        pks(lapsed(&by_group, &affiliations, &subs, &[Some(&r)])),
        [2]
    );
}

#[test]
fn an_unread_roster_or_a_co_owner_who_admits_removes_nothing() {
    let subs = [sub(1, "friend@x"), sub(2, "stranger@x")];
    let none = roster("");
    let co = roster("<item jid='friend@x' subscription='both'/>");
    let presence = node(AccessModel::Presence, &[]);
    assert_eq!(
        pks(lapsed(&presence, &[], &subs, &[Some(&none), None])),
        Vec::<i64>::new(),
        "a co-owner's roster unknown: nothing removed"
    );
    assert_eq!(
        pks(lapsed(&presence, &[], &subs, &[Some(&none), Some(&co)])),
        [2]
    );
}

#[test]
fn nodes_of_other_models_are_not_judged() {
    let subs = [sub(1, "stranger@x")];
    for model in [
        AccessModel::Open,
        AccessModel::Authorize,
        AccessModel::Whitelist,
    ] {
        assert!(lapsed(&node(model, &[]), &[], &subs, &[Some(&roster(""))]).is_empty());
    }
}

#[test]
fn a_failing_owner_is_backed_off_longer_each_time_up_to_the_cap() {
    let mut sweep = Sweep::default();
    let owner = jid("owner@x");
    let now = Instant::now();
    assert!(!sweep.backed_off(&owner, now));
    sweep.failed(&owner, now);
    assert!(sweep.backed_off(&owner, now + FIRST_BACKOFF - Duration::from_secs(1)));
    assert!(!sweep.backed_off(&owner, now + FIRST_BACKOFF));
    for _ in 0..20 {
        sweep.failed(&owner, now);
    }
    assert!(!sweep.backed_off(&owner, now + MAX_BACKOFF));
    assert!(sweep.backed_off(&owner, now + MAX_BACKOFF - Duration::from_secs(1)));
}

#[test]
fn the_backed_off_owners_are_bounded() {
    let mut sweep = Sweep::default();
    let now = Instant::now();
    for n in 0..MAX_BACKED_OFF + 10 {
        sweep.failed(&jid(&format!("o{n}@x")), now);
    }
    assert_eq!(sweep.backoff.len(), MAX_BACKED_OFF);
}
