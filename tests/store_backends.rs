//! The store rules both backends must keep, checked on PostgreSQL and SQLite alike
//! through the `Store` traits: overwrite order, trimming, jobs committed with their
//! change, the last owner, outcasts, whitelist visibility, the store tag. Plus what only
//! SQLite needs: its in-process wake-up and writers that queue instead of failing. The
//! fan-out engine's store is checked in `tests/store_fanout.rs`, item counts in
//! `tests/item_counts.rs`.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::job;
use common::store::*;
use pubsubd::domain::{
    AccessModel, Affiliation, ItemId, NodeConfig, NodeId, SubId, SubscribeOptions,
    SubscriptionState,
};
use pubsubd::store::postgres::PgStore;
use pubsubd::store::{
    AffiliationChange, AffiliationStore as _, BatchedPublish, ItemStore as _, ItemsQuery, Refusal,
    SubscriptionStore as _,
};
use pubsubd_testkit::TestDb;
use xmpp_parsers::jid::Jid;

#[tokio::test]
async fn an_overwrite_becomes_newest_and_trimming_keeps_the_newest() -> anyhow::Result<()> {
    for b in backends().await? {
        let s = b.store.as_ref();
        let pk = node(s, "blog", NodeConfig::default()).await?;
        for id in ["a", "b", "c"] {
            s.publish(pk, Some(item(id)), 10, vec![]).await?.ok();
        }
        s.publish(pk, Some(item("a")), 10, vec![]).await?.ok();
        assert_eq!(latest_ids(s, pk).await?, ["a", "c", "b"], "{}", b.name);
        s.publish(pk, Some(item("d")), 2, vec![]).await?.ok();
        assert_eq!(latest_ids(s, pk).await?, ["d", "a"], "{}", b.name);
        assert_eq!(s.item_count(pk).await?, 2, "{}", b.name);
        // Reconfiguring to keep one trims at once.
        let ok = s
            .configure_node(pk, &NodeConfig::default(), 1, &Default::default(), vec![])
            .await?;
        assert_eq!(ok, Ok(()), "{}", b.name);
        assert_eq!(latest_ids(s, pk).await?, ["d"], "{}", b.name);
    }
    Ok(())
}

#[tokio::test]
async fn a_batch_of_publishes_trims_each_node_it_filled_and_only_those() -> anyhow::Result<()> {
    for b in backends().await? {
        let s = b.store.as_ref();
        let full = node(s, "full", NodeConfig::default()).await?;
        let roomy = node(s, "roomy", NodeConfig::default()).await?;
        let tiny = node(s, "tiny", NodeConfig::default()).await?;
        for id in ["old1", "old2"] {
            s.publish(full, Some(item(id)), 10, vec![]).await?.ok();
        }
        s.publish(roomy, Some(item("old1")), 10, vec![]).await?.ok();
        let entry = |node_pk: i64, id: &str, keep: u32| BatchedPublish {
            node_pk,
            item: item(id),
            keep,
            job: job(node_pk),
        };
        // full: 2 held + 2 new, keeps 3; roomy: 1 held + 2 new, keeps 5; tiny: 3 new,
        // keeps 1.
        s.publish_batch(&[
            entry(full, "new1", 3),
            entry(roomy, "new1", 5),
            entry(tiny, "a", 1),
            entry(full, "new2", 3),
            entry(tiny, "b", 1),
            entry(roomy, "new2", 5),
            entry(tiny, "c", 1),
        ])
        .await?;
        assert_eq!(
            latest_ids(s, full).await?,
            ["new2", "new1", "old2"],
            "{}",
            b.name
        );
        assert_eq!(
            latest_ids(s, roomy).await?,
            ["new2", "new1", "old1"],
            "{}",
            b.name
        );
        assert_eq!(latest_ids(s, tiny).await?, ["c"], "{}", b.name);
        assert_eq!(pending_jobs(s).await?, 7, "{}", b.name);
        // A node exactly at its limit is not trimmed below it.
        s.publish_batch(&[entry(roomy, "new3", 5), entry(roomy, "new4", 5)])
            .await?;
        assert_eq!(s.item_count(roomy).await?, 5, "{}", b.name);
        s.publish_batch(&[entry(roomy, "new5", 5)]).await?;
        assert_eq!(
            latest_ids(s, roomy).await?,
            ["new5", "new4", "new3", "new2", "new1"],
            "{}",
            b.name
        );
    }
    Ok(())
}

#[tokio::test]
async fn items_after_a_sequence_number_follow_publish_order_across_overwrites() -> anyhow::Result<()>
{
    for b in backends().await? {
        let s = b.store.as_ref();
        let pk = node(s, "stream", NodeConfig::default()).await?;
        assert_eq!(s.latest_seq(pk).await?, None, "{}", b.name);
        for id in ["a", "b", "a"] {
            s.publish(pk, Some(item(id)), 10, vec![]).await?.ok();
        }
        let all = s.items_after_seq(pk, 0, 10).await?;
        let ids: Vec<&str> = all.iter().map(|i| i.item.id.as_str()).collect();
        assert_eq!(ids, ["b", "a"], "{}: the overwrite is the newest", b.name);
        assert!(all[0].seq < all[1].seq, "{}", b.name);
        assert_eq!(s.latest_seq(pk).await?, Some(all[1].seq), "{}", b.name);
        assert!(
            s.items_after_seq(pk, all[1].seq, 10).await?.is_empty(),
            "{}",
            b.name
        );
    }
    Ok(())
}

#[tokio::test]
async fn jobs_are_queued_only_with_a_change_that_happened() -> anyhow::Result<()> {
    for b in backends().await? {
        let s = b.store.as_ref();
        let pk = node(s, "news", NodeConfig::default()).await?;
        s.publish(pk, Some(item("one")), 10, vec![job(pk)])
            .await?
            .ok();
        assert_eq!(pending_jobs(s).await?, 1, "{}", b.name);
        // Retracting nothing queues nothing.
        let gone = s
            .retract(pk, &[ItemId::parse("missing")?], vec![job(pk)])
            .await?;
        assert!(gone.is_empty(), "{}", b.name);
        assert_eq!(pending_jobs(s).await?, 1, "{}", b.name);
        let gone = s
            .retract(
                pk,
                &[ItemId::parse("one")?, ItemId::parse("x")?],
                vec![job(pk)],
            )
            .await?;
        assert_eq!(gone, [ItemId::parse("one")?], "{}", b.name);
        assert_eq!(pending_jobs(s).await?, 2, "{}", b.name);
        // A second subscribe of the same JID returns the first, and queues nothing.
        let who: Jid = "reader@example.org".parse()?;
        let opts = SubscribeOptions::default();
        let first = SubId::generate();
        let (rec, created) = s
            .subscribe(
                pk,
                &who,
                &first,
                SubscriptionState::Subscribed,
                &opts,
                vec![job(pk)],
            )
            .await?;
        assert!(created, "{}", b.name);
        let (again, created) = s
            .subscribe(
                pk,
                &who,
                &SubId::generate(),
                SubscriptionState::Subscribed,
                &opts,
                vec![job(pk)],
            )
            .await?;
        assert!(!created, "{}", b.name);
        assert_eq!(again.subid, rec.subid, "{}", b.name);
        assert_eq!(pending_jobs(s).await?, 3, "{}", b.name);
        // Deleting with a job keeps the row for the fan-out engine but hides the node.
        s.delete_node(pk, Some(job(pk))).await?;
        assert!(
            s.node(&NodeId::parse("news")?).await?.is_none(),
            "{}",
            b.name
        );
        assert_eq!(pending_jobs(s).await?, 4, "{}", b.name);
        // ... and its name is free at once.
        node(s, "news", NodeConfig::default()).await?;
    }
    Ok(())
}

#[tokio::test]
async fn the_last_owner_cannot_leave_and_an_outcast_loses_its_subscriptions() -> anyhow::Result<()>
{
    for b in backends().await? {
        let s = b.store.as_ref();
        let pk = node(s, "team", NodeConfig::default()).await?;
        let owner = jid("owner@example.org");
        let bob = jid("bob@example.org");
        let leave = [AffiliationChange {
            jid: owner.clone(),
            affiliation: Affiliation::None,
        }];
        assert_eq!(
            s.set_affiliations(pk, &leave).await?,
            Err(Refusal::LastOwner),
            "{}",
            b.name
        );
        assert_eq!(
            s.node_affiliations(pk).await?,
            [(owner.clone(), Affiliation::Owner)],
            "{}: nothing changed",
            b.name
        );
        // Handing over in one change is fine.
        let hand_over = [
            AffiliationChange {
                jid: bob.clone(),
                affiliation: Affiliation::Owner,
            },
            AffiliationChange {
                jid: owner.clone(),
                affiliation: Affiliation::None,
            },
        ];
        assert_eq!(
            s.set_affiliations(pk, &hand_over).await?,
            Ok(()),
            "{}",
            b.name
        );
        assert_eq!(
            s.node_affiliations(pk).await?,
            [(bob.clone(), Affiliation::Owner)],
            "{}",
            b.name
        );

        let eve: Jid = "eve@example.org/phone".parse()?;
        let opts = SubscribeOptions::default();
        s.subscribe(
            pk,
            &eve,
            &SubId::generate(),
            SubscriptionState::Subscribed,
            &opts,
            vec![],
        )
        .await?;
        assert_eq!(s.count_subscribers(pk).await?, 1, "{}", b.name);
        let ban = [AffiliationChange {
            jid: jid("eve@example.org"),
            affiliation: Affiliation::Outcast,
        }];
        assert_eq!(s.set_affiliations(pk, &ban).await?, Ok(()), "{}", b.name);
        assert!(
            s.jid_subscriptions(&jid("eve@example.org"), Some(pk))
                .await?
                .is_empty(),
            "{}",
            b.name
        );
    }
    Ok(())
}

#[tokio::test]
async fn several_nodes_access_is_read_at_once_as_node_by_node() -> anyhow::Result<()> {
    for b in backends().await? {
        let s = b.store.as_ref();
        let a = node(s, "feed-a", NodeConfig::default()).await?;
        let c = node(s, "feed-c", NodeConfig::default()).await?;
        let bob = jid("bob@example.org");
        let member = [AffiliationChange {
            jid: bob.clone(),
            affiliation: Affiliation::Member,
        }];
        s.set_affiliations(c, &member).await?.ok();
        sub(s, c, "bob@example.org/phone", SubscribeOptions::default()).await?;
        sub(s, c, "bob@example.org", SubscribeOptions::default()).await?;
        sub(s, a, "alice@example.org", SubscribeOptions::default()).await?;
        let names: Vec<NodeId> = ["feed-a", "missing", "feed-c", "feed-a"]
            .iter()
            .map(|n| NodeId::parse(n))
            .collect::<Result<_, _>>()?;
        let many = s.node_accesses(&names, &bob).await?;
        assert_eq!(many.len(), 4, "{}", b.name);
        for (name, got) in names.iter().zip(&many) {
            let one = s.node_access(name, &bob).await?;
            let shape = |x: &Option<pubsubd::store::NodeAccess>| {
                x.as_ref().map(|x| {
                    let subs: Vec<String> =
                        x.subscriptions.iter().map(|s| s.jid.to_string()).collect();
                    (x.node.pk, x.affiliation, subs)
                })
            };
            assert_eq!(shape(got), shape(&one), "{}: {name}", b.name);
        }
        let pks: Vec<Option<i64>> = many.iter().map(|x| x.as_ref().map(|x| x.node.pk)).collect();
        assert_eq!(pks, [Some(a), None, Some(c), Some(a)], "{}", b.name);
        let c_access = many[2].as_ref().expect("feed-c");
        assert_eq!(c_access.affiliation, Affiliation::Member, "{}", b.name);
        assert_eq!(c_access.subscriptions.len(), 2, "{}", b.name);
        assert!(
            many[0].as_ref().is_some_and(|x| x.subscriptions.is_empty()),
            "{}",
            b.name
        );
        assert!(s.node_accesses(&[], &bob).await?.is_empty(), "{}", b.name);
    }
    Ok(())
}

#[tokio::test]
async fn whitelist_nodes_are_listed_only_to_their_affiliates() -> anyhow::Result<()> {
    for b in backends().await? {
        let s = b.store.as_ref();
        node(s, "a-open", NodeConfig::default()).await?;
        let private = NodeConfig {
            access_model: AccessModel::Whitelist,
            title: Some("Private".into()),
            ..NodeConfig::default()
        };
        let pk = node(s, "b-private", private).await?;
        let member = [AffiliationChange {
            jid: jid("member@example.org"),
            affiliation: Affiliation::Member,
        }];
        s.set_affiliations(pk, &member).await?.ok();

        let names = |list: Vec<pubsubd::store::NodeListing>| -> Vec<String> {
            list.into_iter().map(|n| n.name).collect()
        };
        let (outsider, total) = s
            .list_nodes(None, 10, Some(&jid("stranger@example.org")))
            .await?;
        assert_eq!(names(outsider), ["a-open"], "{}", b.name);
        assert_eq!(total, 1, "{}", b.name);
        let (insider, total) = s
            .list_nodes(None, 10, Some(&jid("member@example.org")))
            .await?;
        assert_eq!(total, 2, "{}", b.name);
        assert_eq!(insider[1].title.as_deref(), Some("Private"), "{}", b.name);
        let (after, _) = s.list_nodes(Some("a-open"), 10, None).await?;
        assert_eq!(names(after), ["b-private"], "{}", b.name);
    }
    Ok(())
}

#[tokio::test]
async fn the_store_tag_is_given_once_and_read_back_the_same() -> anyhow::Result<()> {
    for b in backends().await? {
        let first = b.store.store_tag().await?;
        assert_eq!(b.store.store_tag().await?, first, "{}", b.name);
        assert_eq!(
            b.store.store_tag_with(12345).await? as u64,
            first,
            "{}: an existing tag is kept",
            b.name
        );
    }
    Ok(())
}

#[tokio::test]
async fn sqlite_wakes_its_fanout_listeners_after_a_commit_that_queued_jobs() -> anyhow::Result<()> {
    let (store, _file) = fresh_sqlite().await?;
    let mut waiter = store.job_signal().listen();
    let pk = node(&store, "n", NodeConfig::default()).await?;
    store
        .publish(pk, Some(item("quiet")), 10, vec![])
        .await?
        .ok();
    assert!(
        tokio::time::timeout(Duration::from_millis(100), waiter.wait())
            .await
            .is_err(),
        "no job, no wake-up"
    );
    store
        .publish(pk, Some(item("loud")), 10, vec![job(pk)])
        .await?
        .ok();
    tokio::time::timeout(Duration::from_secs(1), waiter.wait()).await??;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_writers_queue_for_the_write_lock_instead_of_failing() -> anyhow::Result<()> {
    let (store, _file) = fresh_sqlite().await?;
    let store = Arc::new(store);
    let pk = node(store.as_ref(), "busy", NodeConfig::default()).await?;
    // Many more writers than connections, each a read-then-write transaction.
    let mut tasks = Vec::new();
    for i in 0..64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let who: Jid = format!("u{i}@example.org").parse().expect("valid JID");
            store
                .subscribe(
                    pk,
                    &who,
                    &SubId::generate(),
                    SubscriptionState::Subscribed,
                    &SubscribeOptions::default(),
                    vec![job(pk)],
                )
                .await?;
            // Reads the node first, then writes: the case a deferred transaction
            // would lose to a concurrent writer.
            let member = [AffiliationChange {
                jid: who.to_bare(),
                affiliation: Affiliation::Member,
            }];
            store.set_affiliations(pk, &member).await?.ok();
            store
                .publish(pk, Some(item(&format!("i{i}"))), 1000, vec![job(pk)])
                .await
                .map(|_| ())
        }));
    }
    for t in tasks {
        t.await??;
    }
    assert_eq!(store.count_subscribers(pk).await?, 64);
    assert_eq!(store.item_count(pk).await?, 64);
    assert_eq!(pending_jobs(store.as_ref()).await?, 128);
    assert_eq!(store.node_affiliations(pk).await?.len(), 65);
    Ok(())
}

/// A database failure carries its kind on both backends: a unique key taken is a
/// conflict, another schema rule a constraint (the front ends answer by kind; see
/// docs/reliability.md).
#[tokio::test]
async fn schema_refusals_are_conflicts_and_constraints_on_both_backends() -> anyhow::Result<()> {
    use pubsubd::domain::error::FailureKind;
    use pubsubd::store::StoreError;

    const TAG: &str = "INSERT INTO store_identity (singleton, tag) VALUES (TRUE, 7)";
    const NO_NAME: &str = "INSERT INTO nodes (name, config, creator) VALUES (NULL, '{}', 'x')";
    // The kinds of: the tag given twice, a node without a name.
    macro_rules! kinds {
        ($pool:expr) => {{
            sqlx::query(TAG).execute($pool).await?;
            let twice = sqlx::query(TAG).execute($pool).await.expect_err("unique");
            let unnamed = sqlx::query(NO_NAME)
                .execute($pool)
                .await
                .expect_err("not null");
            [
                StoreError::from(twice).kind(),
                StoreError::from(unnamed).kind(),
            ]
        }};
    }
    let db = TestDb::create().await?;
    let pg = PgStore::connect(db.url(), 2).await?;
    pg.migrate().await?;
    let (sqlite, _file) = fresh_sqlite().await?;
    let expected = [FailureKind::Conflict, FailureKind::Constraint];
    assert_eq!(kinds!(pg.pool()), expected, "postgres");
    assert_eq!(kinds!(sqlite.pool()), expected, "sqlite");
    Ok(())
}

/// XEP-0059 pages of items, newest first, by position and after an item, the same on
/// both backends.
#[tokio::test]
async fn item_pages_walk_newest_first_by_position_and_after_an_item() -> anyhow::Result<()> {
    for b in backends().await? {
        let pk = node(b.store.as_ref(), "paged", NodeConfig::default()).await?;
        for n in 1..=7 {
            b.store
                .publish(pk, Some(item(&format!("i{n}"))), 100, vec![])
                .await?
                .map_err(|r| anyhow::anyhow!("{r:?}"))?;
        }
        let page = |after: Option<&str>, index: Option<u32>| ItemsQuery::Page {
            max: 3,
            after: after.map(str::to_owned),
            before: None,
            index,
        };
        let ids = |p: &pubsubd::store::ItemsPage| -> Vec<String> {
            p.items.iter().map(|i| i.id.as_str().to_owned()).collect()
        };
        let first = b.store.items(pk, &page(None, None)).await?;
        assert_eq!(ids(&first), ["i7", "i6", "i5"], "{}", b.name);
        assert_eq!((first.count, first.first_index), (7, Some(0)), "{}", b.name);
        let next = b.store.items(pk, &page(Some("i5"), None)).await?;
        assert_eq!(ids(&next), ["i4", "i3", "i2"], "{}", b.name);
        let third = b.store.items(pk, &page(None, Some(6))).await?;
        assert_eq!(ids(&third), ["i1"], "{}", b.name);
        assert_eq!(third.first_index, Some(6), "{}", b.name);
    }
    Ok(())
}

/// The revocation sweep's store side: owners walked in JID order with a cursor, an
/// owner's roster-governed nodes, and a removal that happens only while the judgement
/// still holds (the node still of that access model, the subscriber not affiliated).
#[tokio::test]
async fn a_revocation_removes_only_while_the_store_still_agrees() -> anyhow::Result<()> {
    for b in backends().await? {
        let s = b.store.as_ref();
        let presence = NodeConfig {
            access_model: AccessModel::Presence,
            ..NodeConfig::default()
        };
        let pk = node(s, "contacts", presence.clone()).await?;
        node(s, "open-one", NodeConfig::default()).await?;
        let opts = SubscribeOptions::default();
        let mut subs = Vec::new();
        for who in ["ann@example.org", "bob@example.org", "cat@example.org"] {
            let (record, _) = s
                .subscribe(
                    pk,
                    &who.parse()?,
                    &SubId::generate(),
                    SubscriptionState::Subscribed,
                    &opts,
                    vec![],
                )
                .await?;
            subs.push(record.pk);
        }
        let owner = jid("owner@example.org");
        let owners = s.roster_node_owners("", 10).await?;
        assert_eq!(owners.len(), 1, "{}", b.name);
        assert_eq!(owners[0].0, "owner@example.org", "{}", b.name);
        assert_eq!(owners[0].1.as_ref().ok(), Some(&owner), "{}", b.name);
        assert!(
            s.roster_node_owners("owner@example.org", 10)
                .await?
                .is_empty(),
            "{}",
            b.name
        );
        let owned = s.owned_roster_nodes(&owner, 10).await?;
        assert_eq!(
            owned.len(),
            1,
            "{}: the open node is not the sweep's",
            b.name
        );
        assert_eq!(owned[0].as_ref().map(|n| n.pk).ok(), Some(pk), "{}", b.name);

        // ann is made a member after the judgement: kept.
        let member = [AffiliationChange {
            jid: jid("ann@example.org"),
            affiliation: Affiliation::Member,
        }];
        assert_eq!(s.set_affiliations(pk, &member).await?, Ok(()), "{}", b.name);
        assert!(
            !s.revoke_subscription(subs[0], AccessModel::Presence, vec![])
                .await?,
            "{}",
            b.name
        );
        // bob: judged on a presence node, removed.
        assert!(
            s.revoke_subscription(subs[1], AccessModel::Presence, vec![])
                .await?,
            "{}",
            b.name
        );
        // The node is opened after the judgement: cat keeps it.
        assert_eq!(
            s.configure_node(pk, &NodeConfig::default(), 100, &Default::default(), vec![])
                .await?,
            Ok(()),
            "{}",
            b.name
        );
        assert!(
            !s.revoke_subscription(subs[2], AccessModel::Presence, vec![])
                .await?,
            "{}",
            b.name
        );
        assert_eq!(s.count_subscribers(pk).await?, 2, "{}", b.name);
    }
    Ok(())
}
