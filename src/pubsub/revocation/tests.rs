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

// ---- Ticks, on an SQLite store, with rosters as scripted.

mod ticks {
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
    use std::sync::Mutex;

    use async_trait::async_trait;

    use super::*;
    use crate::pubsub::rosters::{RosterSource, Rosters};
    use crate::pubsub::Policy;
    use crate::store::sqlite::SqliteStore;
    use crate::store::{NodeStore as _, SubscriptionStore as _};

    static FILES: AtomicU64 = AtomicU64::new(0);

    /// Answers every owner with `roster` (XML items) or fails as told, counting reads.
    struct Scripted {
        roster: Mutex<Result<String, RosterReadError>>,
        reads: AtomicUsize,
    }

    #[async_trait]
    impl RosterSource for Scripted {
        fn readable(&self, _domain: &str) -> bool {
            true
        }
        async fn read(&self, _owner: &BareJid) -> Result<OwnerRoster, RosterReadError> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            let now = self.roster.lock().expect("lock").clone();
            now.map(|xml| roster(&xml))
        }
    }

    struct World {
        pubsub: Pubsub,
        source: Arc<Scripted>,
        file: std::path::PathBuf,
    }

    impl Drop for World {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.file);
        }
    }

    async fn world(owners: usize, budget: u32, contacts: &str) -> (World, Vec<i64>) {
        let file = std::env::temp_dir().join(format!(
            "pubsubd-revocation-{}-{}.sqlite3",
            std::process::id(),
            FILES.fetch_add(1, Ordering::Relaxed)
        ));
        let store = SqliteStore::open(&file, 1).await.expect("a store");
        store.migrate().await.expect("migrations");
        let config = NodeConfig {
            access_model: AccessModel::Presence,
            ..NodeConfig::default()
        };
        let mut nodes = Vec::new();
        for n in 0..owners {
            let created = store
                .create_node(
                    &NodeId::parse(&format!("n{n}")).expect("node id"),
                    &config,
                    &jid(&format!("owner{n}@x")),
                    &Default::default(),
                )
                .await
                .expect("store")
                .expect("created");
            store
                .subscribe(
                    created.pk,
                    &"stranger@x".parse().expect("jid"),
                    &SubId::generate(),
                    SubscriptionState::Subscribed,
                    &SubscribeOptions::default(),
                    vec![],
                )
                .await
                .expect("subscribed");
            nodes.push(created.pk);
        }
        let source = Arc::new(Scripted {
            roster: Mutex::new(Ok(contacts.to_string())),
            reads: AtomicUsize::new(0),
        });
        let mut policy = Policy::default();
        policy.limits.revocation_owners_per_tick = budget;
        let pubsub = Pubsub {
            jid: jid("pubsub.x"),
            store: Arc::new(store),
            policy,
            rosters: Arc::new(Rosters::new(source.clone(), 64, Duration::from_secs(60))),
        };
        (
            World {
                pubsub,
                source,
                file,
            },
            nodes,
        )
    }

    async fn subscribers(w: &World, node: i64) -> u64 {
        w.pubsub.store.count_subscribers(node).await.expect("store")
    }

    #[tokio::test]
    async fn a_subscription_is_removed_only_when_two_reads_a_tick_apart_agree() {
        let (w, nodes) = world(1, 100, "").await;
        let stop = CancellationToken::new();
        let mut sweep = Sweep::default();
        assert_eq!(
            w.pubsub.revoke_lapsed(&mut sweep, &stop).await,
            0,
            "marked only"
        );
        assert_eq!(subscribers(&w, nodes[0]).await, 1);
        // The next read admits again (the empty roster was a storage failure): kept.
        *w.source.roster.lock().expect("lock") =
            Ok("<item jid='stranger@x' subscription='from'/>".into());
        assert_eq!(w.pubsub.revoke_lapsed(&mut sweep, &stop).await, 0);
        assert_eq!(subscribers(&w, nodes[0]).await, 1);
        // Two reads that agree: removed.
        *w.source.roster.lock().expect("lock") = Ok(String::new());
        assert_eq!(w.pubsub.revoke_lapsed(&mut sweep, &stop).await, 0, "marked");
        assert_eq!(
            w.pubsub.revoke_lapsed(&mut sweep, &stop).await,
            1,
            "confirmed"
        );
        assert_eq!(subscribers(&w, nodes[0]).await, 0);
    }

    #[tokio::test]
    async fn a_tick_reads_at_most_its_budget_and_the_walk_goes_on_from_its_cursor() {
        let admitted = "<item jid='stranger@x' subscription='both'/>";
        let (w, _) = world(5, 2, admitted).await;
        let stop = CancellationToken::new();
        let mut sweep = Sweep::default();
        for tick in 1..=3 {
            w.pubsub.revoke_lapsed(&mut sweep, &stop).await;
            let reads = w.source.reads.load(Ordering::SeqCst);
            assert_eq!(reads, (2 * tick).min(5), "tick {tick}");
        }
        assert!(
            sweep.cursor.is_empty(),
            "the pass ended: the next starts over"
        );
        w.pubsub.revoke_lapsed(&mut sweep, &stop).await;
        assert_eq!(w.source.reads.load(Ordering::SeqCst), 7);
    }

    #[tokio::test]
    async fn a_server_that_does_not_answer_ends_the_tick_and_removes_nothing() {
        let (w, nodes) = world(5, 100, "").await;
        *w.source.roster.lock().expect("lock") =
            Err(RosterReadError::Timeout(Duration::from_secs(5)));
        let stop = CancellationToken::new();
        let mut sweep = Sweep::default();
        assert_eq!(w.pubsub.revoke_lapsed(&mut sweep, &stop).await, 0);
        assert_eq!(
            w.source.reads.load(Ordering::SeqCst),
            1,
            "one read, then stop"
        );
        // The failed owner is backed off; the walk goes on with the others.
        *w.source.roster.lock().expect("lock") = Err(RosterReadError::Refused {
            condition: "forbidden".into(),
        });
        w.pubsub.revoke_lapsed(&mut sweep, &stop).await;
        assert_eq!(
            w.source.reads.load(Ordering::SeqCst),
            5,
            "four others, not the first"
        );
        for node in nodes {
            assert_eq!(subscribers(&w, node).await, 1);
        }
    }

    #[tokio::test]
    async fn a_stopped_sweep_reads_nothing() {
        let (w, _) = world(3, 100, "").await;
        let stop = CancellationToken::new();
        stop.cancel();
        w.pubsub.revoke_lapsed(&mut Sweep::default(), &stop).await;
        assert_eq!(w.source.reads.load(Ordering::SeqCst), 0);
    }
}
