//! The fan-out engine's store, on PostgreSQL and SQLite alike: claims under leases,
//! batches, cursors, completion, the subscriber walk, presence, last items on presence,
//! and the wake-up of listeners.

mod common;

use std::time::Duration;

use common::job;
use common::store::*;
use pubsubd::domain::node_config::SendLastPublished;
use pubsubd::domain::ShowValue;
use pubsubd::domain::{
    Affiliation, AffiliationChange, NodeConfig, SubId, SubscribeOptions, SubscriptionDepth,
    SubscriptionState,
};
use pubsubd::store::claims::{ClaimLimits, CollectionAbove};
use pubsubd::store::jobs::{JobKind, JobTarget, NewJob};

#[tokio::test]
async fn a_claim_leases_the_oldest_free_nodes_head_and_batches_jobs_of_one_shape(
) -> anyhow::Result<()> {
    for b in backends().await? {
        let (s, f) = (b.store.as_ref(), b.fanout.as_ref());
        let a = node(s, "a", NodeConfig::default()).await?;
        let c = node(s, "c", NodeConfig::default()).await?;
        // a: two walks, then a one-JID job (another shape); c: one walk, queued later.
        f.queue_jobs(&[job(a), job(a), direct(a, "x@example.org")])
            .await?;
        f.queue_jobs(&[job(c)]).await?;
        let first = f.claim(owner(1, 0), LEASE, LIMITS).await?.expect("a batch");
        assert_eq!(first.node_pk, a, "{}: oldest head first", b.name);
        assert_eq!(
            first.jobs.len(),
            2,
            "{}: the one-JID job is not walked with them",
            b.name
        );
        assert!(
            first.walks_subscribers() && !first.deletes_node(),
            "{}",
            b.name
        );
        assert!(
            first.jobs[0].id < first.jobs[1].id,
            "{}: in publish order",
            b.name
        );
        assert_eq!(first.cursor, 0, "{}", b.name);
        assert_eq!(first.node_name.as_deref(), Some("a"), "{}", b.name);
        // a is leased (its third job too, behind the batch): another worker of the same
        // process gets c, and a third nothing.
        let second = f.claim(owner(1, 1), LEASE, LIMITS).await?.expect("c");
        assert_eq!(second.node_pk, c, "{}", b.name);
        assert!(
            f.claim(owner(1, 2), LEASE, LIMITS).await?.is_none(),
            "{}: every node is leased",
            b.name
        );
        // Finishing a's batch frees a for its one-JID job.
        assert!(
            f.complete(owner(1, 0), &first.job_ids(), a, false).await?,
            "{}",
            b.name
        );
        let third = f.claim(owner(1, 2), LEASE, LIMITS).await?.expect("a again");
        assert_eq!(third.node_pk, a, "{}", b.name);
        assert_eq!(
            third.jobs[0].target,
            JobTarget::Jid("x@example.org".into()),
            "{}",
            b.name
        );
        assert!(!third.walks_subscribers(), "{}", b.name);
        // The job limit bounds a batch.
        let d = node(s, "d", NodeConfig::default()).await?;
        f.queue_jobs(&[job(d), job(d), job(d)]).await?;
        let limited = ClaimLimits {
            max_jobs: 2,
            ..LIMITS
        };
        let batch = f.claim(owner(2, 0), LEASE, limited).await?.expect("d");
        assert_eq!((batch.node_pk, batch.jobs.len()), (d, 2), "{}", b.name);
    }
    Ok(())
}

#[tokio::test]
async fn claims_find_free_nodes_behind_a_long_leased_queue_and_among_many_small_ones(
) -> anyhow::Result<()> {
    for b in backends().await? {
        let (s, f) = (b.store.as_ref(), b.fanout.as_ref());
        // One node with a queue longer than a claim looks at (the oldest 512 jobs), and
        // a node queued behind it.
        let busy = node(s, "busy", NodeConfig::default()).await?;
        let late = node(s, "late", NodeConfig::default()).await?;
        let queue: Vec<NewJob> = (0..600).map(|_| job(busy)).collect();
        f.queue_jobs(&queue).await?;
        f.queue_jobs(&[job(late)]).await?;
        let first = f.claim(owner(1, 0), LEASE, LIMITS).await?.expect("busy");
        assert_eq!(first.node_pk, busy, "{}", b.name);
        let second = f.claim(owner(1, 1), LEASE, LIMITS).await?.expect("late");
        assert_eq!(
            second.node_pk, late,
            "{}: found behind the leased node's queue",
            b.name
        );
        assert!(
            f.complete(owner(1, 1), &second.job_ids(), late, false)
                .await?
        );
        // busy's 600 jobs: 256 + 256 + 88, each batch in turn.
        let mut sizes = vec![first.jobs.len()];
        assert!(
            f.complete(owner(1, 0), &first.job_ids(), busy, false)
                .await?
        );
        while let Some(rest) = f.claim(owner(1, 0), LEASE, LIMITS).await? {
            assert_eq!(rest.node_pk, busy, "{}", b.name);
            sizes.push(rest.jobs.len());
            assert!(
                f.complete(owner(1, 0), &rest.job_ids(), busy, false)
                    .await?
            );
        }
        assert_eq!(sizes, [256, 256, 88], "{}", b.name);
        assert_eq!(pending_jobs(s).await?, 0, "{}", b.name);
        // Many nodes with one job each are claimed oldest first, each once.
        let mut many = Vec::new();
        for n in 0..40 {
            many.push(node(s, &format!("small{n}"), NodeConfig::default()).await?);
        }
        for pk in many.iter().rev() {
            f.queue_jobs(&[job(*pk)]).await?;
        }
        let mut claimed = Vec::new();
        for w in 0..many.len() {
            let batch = f.claim(owner(2, w), LEASE, LIMITS).await?.expect("a node");
            claimed.push(batch.node_pk);
        }
        let expected: Vec<i64> = many.iter().rev().copied().collect();
        assert_eq!(
            claimed, expected,
            "{}: oldest head first, each once",
            b.name
        );
        assert!(
            f.claim(owner(3, 0), LEASE, LIMITS).await?.is_none(),
            "{}",
            b.name
        );
    }
    Ok(())
}

#[tokio::test]
async fn one_claim_takes_several_nodes_oldest_head_first_within_the_claims_limits(
) -> anyhow::Result<()> {
    for b in backends().await? {
        let (s, f) = (b.store.as_ref(), b.fanout.as_ref());
        let mut nodes = Vec::new();
        for n in 0..6 {
            nodes.push(node(s, &format!("g{n}"), NodeConfig::default()).await?);
        }
        // Queued newest node first, so head order is not pk order; g1 has two jobs,
        // g5 a one-JID job.
        for pk in nodes.iter().rev() {
            f.queue_jobs(&[job(*pk)]).await?;
        }
        f.queue_jobs(&[job(nodes[1]), direct(nodes[5], "x@example.org")])
            .await?;
        let three = ClaimLimits {
            max_nodes: 3,
            ..LIMITS
        };
        let first = f.claim_batches(owner(1, 0), LEASE, three).await?;
        let pks: Vec<i64> = first.iter().map(|b| b.node_pk).collect();
        assert_eq!(pks, [nodes[5], nodes[4], nodes[3]], "{}", b.name);
        assert!(
            first
                .iter()
                .all(|b| b.jobs.len() == 1 && b.walks_subscribers()),
            "{}: the one-JID job is not walked with g5's walk",
            b.name
        );
        // A second claimer gets the next nodes, not the leased ones; g1's two walks
        // are one batch.
        let second = f.claim_batches(owner(1, 1), LEASE, LIMITS).await?;
        let pks: Vec<i64> = second.iter().map(|b| b.node_pk).collect();
        assert_eq!(pks, [nodes[2], nodes[1], nodes[0]], "{}", b.name);
        assert_eq!(second[1].jobs.len(), 2, "{}", b.name);
        assert!(
            f.claim_batches(owner(1, 2), LEASE, LIMITS)
                .await?
                .is_empty(),
            "{}: g5's next job waits for its walk",
            b.name
        );
        // Completing a group's jobs at once frees every node.
        let ids: Vec<i64> = first.iter().flat_map(|b| b.job_ids()).collect();
        assert!(f.complete(owner(1, 0), &ids, 0, false).await?, "{}", b.name);
        let rest = f.claim_batches(owner(1, 2), LEASE, LIMITS).await?;
        assert_eq!(rest.len(), 1, "{}", b.name);
        assert!(!rest[0].walks_subscribers(), "{}", b.name);
        // The claim's job limit counts across nodes, but the first node is taken
        // whole.
        let (a, c) = (nodes[0], nodes[2]);
        let ids: Vec<i64> = second.iter().flat_map(|b| b.job_ids()).collect();
        assert!(f.complete(owner(1, 1), &ids, 0, false).await?, "{}", b.name);
        f.queue_jobs(&[job(a), job(a), job(a)]).await?;
        f.queue_jobs(&[job(c)]).await?;
        let two_jobs = ClaimLimits {
            max_jobs: 2,
            ..LIMITS
        };
        let limited = f.claim_batches(owner(2, 0), LEASE, two_jobs).await?;
        let shape: Vec<(i64, usize)> = limited.iter().map(|b| (b.node_pk, b.jobs.len())).collect();
        assert_eq!(shape, [(a, 2)], "{}: c would be a third job", b.name);
    }
    Ok(())
}

#[tokio::test]
async fn small_nodes_are_read_whole_in_one_call_and_big_ones_are_left_to_the_walk(
) -> anyhow::Result<()> {
    for b in backends().await? {
        let (s, f) = (b.store.as_ref(), b.fanout.as_ref());
        let small = node(s, "small", NodeConfig::default()).await?;
        let big = node(s, "big", NodeConfig::default()).await?;
        let empty = node(s, "empty", NodeConfig::default()).await?;
        let alice = sub(s, small, "alice@example.org", SubscribeOptions::default()).await?;
        let bob = sub(s, small, "bob@example.org", SubscribeOptions::default()).await?;
        let phone = sub(
            s,
            small,
            "bob@example.org/phone",
            SubscribeOptions::default(),
        )
        .await?;
        subscribe_users(s, big, 3).await?;
        // Alice elsewhere does not make her shared in `small`.
        sub(
            s,
            big,
            "alice@example.org/desk",
            SubscribeOptions::default(),
        )
        .await?;
        let found = f.whole_nodes(&[(small, 4), (big, 4), (empty, 4)]).await?;
        assert_eq!(found.len(), 3, "{}", b.name);
        let page = found[0].as_ref().expect("small is whole");
        let pks: Vec<i64> = page.iter().map(|p| p.pk).collect();
        assert_eq!(pks, [alice, bob, phone], "{}", b.name);
        let shared: Vec<bool> = page.iter().map(|p| p.shares_bare_jid).collect();
        assert_eq!(shared, [false, true, true], "{}", b.name);
        assert!(
            found[1].is_none(),
            "{}: four subscriptions, limit four",
            b.name
        );
        assert_eq!(found[2].as_deref().map(<[_]>::len), Some(0), "{}", b.name);
        assert!(f.whole_nodes(&[]).await?.is_empty(), "{}", b.name);
    }
    Ok(())
}

#[tokio::test]
async fn only_the_lease_owner_moves_the_cursor_and_an_expired_lease_is_taken_over(
) -> anyhow::Result<()> {
    for b in backends().await? {
        let (s, f) = (b.store.as_ref(), b.fanout.as_ref());
        let n = node(s, "n", NodeConfig::default()).await?;
        f.queue_jobs(&[job(n)]).await?;
        let short = Duration::from_millis(300);
        let dead = owner(1, 0);
        let batch = f.claim(dead, short, LIMITS).await?.expect("a batch");
        let ids = batch.job_ids();
        assert!(f.save_cursor(dead, &ids, 17, short).await?, "{}", b.name);
        assert!(f.renew(dead, &ids, short).await?, "{}", b.name);
        let other = owner(2, 0);
        assert!(
            !f.save_cursor(other, &ids, 99, LEASE).await?,
            "{}: not the owner",
            b.name
        );
        assert!(!f.renew(other, &ids, LEASE).await?, "{}", b.name);
        assert!(
            f.claim(other, LEASE, LIMITS).await?.is_none(),
            "{}: the lease is live",
            b.name
        );
        // The owner dies; its lease runs out and the next claim continues at its cursor.
        tokio::time::sleep(short + Duration::from_millis(200)).await;
        let taken = f.claim(other, LEASE, LIMITS).await?.expect("taken over");
        assert_eq!(taken.job_ids(), ids, "{}", b.name);
        assert_eq!(taken.cursor, 17, "{}: progress kept", b.name);
        // The old owner, back, can change nothing.
        assert!(!f.save_cursor(dead, &ids, 1, LEASE).await?, "{}", b.name);
        assert!(!f.complete(dead, &ids, n, false).await?, "{}", b.name);
        assert_eq!(pending_jobs(s).await?, 1, "{}: nothing completed", b.name);
        // Released at shutdown: claimable at once, from the cursor.
        f.release(other, &ids).await?;
        let again = f
            .claim(owner(3, 0), LEASE, LIMITS)
            .await?
            .expect("released");
        assert_eq!(again.cursor, 17, "{}", b.name);
        assert!(
            f.complete(owner(3, 0), &again.job_ids(), n, false).await?,
            "{}",
            b.name
        );
        assert_eq!(pending_jobs(s).await?, 0, "{}", b.name);
    }
    Ok(())
}

#[tokio::test]
async fn completing_a_delete_job_removes_the_node_with_its_subscriptions() -> anyhow::Result<()> {
    for b in backends().await? {
        let (s, f) = (b.store.as_ref(), b.fanout.as_ref());
        let n = node(s, "doomed", NodeConfig::default()).await?;
        sub(s, n, "reader@example.org", SubscribeOptions::default()).await?;
        s.publish(n, Some(item("x")), 10, vec![job(n)]).await?.ok();
        let delete = NewJob {
            kind: JobKind::Delete,
            ..job(n)
        };
        s.delete_node(n, Some(delete)).await?;
        // A walk behind the publish; the delete is the last of the batch.
        let batch = f.claim(owner(1, 0), LEASE, LIMITS).await?.expect("a batch");
        assert_eq!(batch.jobs.len(), 2, "{}", b.name);
        assert!(batch.deletes_node(), "{}", b.name);
        assert_eq!(batch.node_name.as_deref(), Some("doomed"), "{}", b.name);
        // The subscribers are still there to be told.
        assert_eq!(f.subscribers(n, 0, 10).await?.len(), 1, "{}", b.name);
        assert!(
            f.complete(owner(1, 0), &batch.job_ids(), n, true).await?,
            "{}",
            b.name
        );
        assert!(f.subscribers(n, 0, 10).await?.is_empty(), "{}", b.name);
        assert_eq!(s.count_subscribers(n).await?, 0, "{}", b.name);
        assert_eq!(s.item_count(n).await?, 0, "{}", b.name);
        assert_eq!(pending_jobs(s).await?, 0, "{}", b.name);
        assert!(
            f.claim(owner(1, 0), LEASE, LIMITS).await?.is_none(),
            "{}",
            b.name
        );
    }
    Ok(())
}

#[tokio::test]
async fn subscribers_come_in_keyset_pages_and_a_shared_bare_jid_is_flagged() -> anyhow::Result<()> {
    for b in backends().await? {
        let (s, f) = (b.store.as_ref(), b.fanout.as_ref());
        let n = node(s, "walk", NodeConfig::default()).await?;
        let other = node(s, "other", NodeConfig::default()).await?;
        let alice = sub(s, n, "alice@example.org", SubscribeOptions::default()).await?;
        let bob_bare = sub(s, n, "bob@example.org", SubscribeOptions::default()).await?;
        let paused = SubscribeOptions {
            deliver: false,
            ..SubscribeOptions::default()
        };
        let bob_phone = sub(s, n, "bob@example.org/phone", paused).await?;
        // Alice's subscription elsewhere does not make her "shared" here.
        sub(
            s,
            other,
            "alice@example.org/desk",
            SubscribeOptions::default(),
        )
        .await?;
        // A pending subscription is not walked.
        s.subscribe(
            n,
            &"carol@example.org".parse()?,
            &SubId::generate(),
            SubscriptionState::Pending,
            &SubscribeOptions::default(),
            vec![],
        )
        .await?;

        let page = f.subscribers(n, 0, 2).await?;
        let pks: Vec<i64> = page.iter().map(|p| p.pk).collect();
        assert_eq!(pks, [alice, bob_bare], "{}", b.name);
        assert!(!page[0].shares_bare_jid, "{}", b.name);
        assert!(page[1].shares_bare_jid, "{}", b.name);
        let rest = f.subscribers(n, bob_bare, 2).await?;
        assert_eq!(rest.len(), 1, "{}", b.name);
        let phone = &rest[0];
        assert_eq!(phone.pk, bob_phone, "{}", b.name);
        assert_eq!(phone.jid, "bob@example.org/phone", "{}", b.name);
        assert_eq!(phone.bare_jid, "bob@example.org", "{}", b.name);
        assert!(phone.shares_bare_jid, "{}", b.name);
        assert!(!phone.options.deliver, "{}: options are read", b.name);
        assert!(!phone.subid.is_empty(), "{}", b.name);
        assert!(
            f.subscribers(n, bob_phone, 2).await?.is_empty(),
            "{}",
            b.name
        );
    }
    Ok(())
}

#[tokio::test]
async fn collection_subscribers_come_in_keyset_pages_with_their_affiliations_with_the_leaves(
) -> anyhow::Result<()> {
    for b in backends().await? {
        let (s, f) = (b.store.as_ref(), b.fanout.as_ref());
        let [root, all, open, closed, other] = [
            node(s, "root", NodeConfig::default()).await?,
            node(s, "all", NodeConfig::default()).await?,
            node(s, "open", NodeConfig::default()).await?,
            node(s, "closed", NodeConfig::default()).await?,
            node(s, "other", NodeConfig::default()).await?,
        ];
        let deep = SubscribeOptions {
            subscription_depth: SubscriptionDepth::All,
            ..SubscribeOptions::default()
        };
        let alice = sub(s, all, "alice@example.org", SubscribeOptions::default()).await?;
        let bob = sub(s, all, "bob@example.org/phone", SubscribeOptions::default()).await?;
        // Depth 1 to a collection further up: it does not reach the leaves.
        sub(s, root, "dave@example.org", SubscribeOptions::default()).await?;
        let erin = sub(s, root, "erin@example.org", deep).await?;
        // A leaf's own subscription is not the collections'.
        sub(s, open, "frank@example.org", SubscribeOptions::default()).await?;
        s.subscribe(
            all,
            &"carol@example.org".parse()?,
            &SubId::generate(),
            SubscriptionState::Pending,
            &SubscribeOptions::default(),
            vec![],
        )
        .await?;
        let affiliate = |pk, who: &str, affiliation| {
            let change = [AffiliationChange {
                jid: jid(who),
                affiliation,
            }];
            async move { s.set_affiliations(pk, &change).await }
        };
        affiliate(open, "alice@example.org", Affiliation::Outcast)
            .await?
            .map_err(|r| anyhow::anyhow!("{r:?}"))?;
        affiliate(closed, "bob@example.org", Affiliation::Member)
            .await?
            .map_err(|r| anyhow::anyhow!("{r:?}"))?;
        // Not a leaf asked about: neither listed nor a reason to be read.
        affiliate(other, "erin@example.org", Affiliation::Publisher)
            .await?
            .map_err(|r| anyhow::anyhow!("{r:?}"))?;
        let above = [
            CollectionAbove {
                pk: all,
                name: "all".into(),
                direct: true,
            },
            CollectionAbove {
                pk: root,
                name: "root".into(),
                direct: false,
            },
        ];
        let leaves = [open, closed];
        let anyone = ["owner", "publisher", "member", "none"];
        let page = f
            .collection_subscribers(&above, &leaves, &anyone, 0, 10)
            .await?;
        let got: Vec<(i64, Option<&str>)> = page
            .subscribers
            .iter()
            .map(|p| (p.pk, p.via.as_deref()))
            .collect();
        assert_eq!(
            got,
            [
                (alice, Some("all")),
                (bob, Some("all")),
                (erin, Some("root"))
            ],
            "{}",
            b.name
        );
        assert_eq!(
            page.subscribers[1].bare_jid, "bob@example.org",
            "{}",
            b.name
        );
        let mut facts: Vec<(i64, &str, Affiliation)> = page
            .affiliations
            .iter()
            .map(|a| (a.leaf_pk, a.bare_jid.as_str(), a.affiliation))
            .collect();
        facts.sort_unstable_by_key(|(pk, jid, _)| (*pk, jid.to_string()));
        assert_eq!(
            facts,
            [
                (open, "alice@example.org", Affiliation::Outcast),
                (closed, "bob@example.org", Affiliation::Member),
            ],
            "{}",
            b.name
        );
        // Without `none` among the readers, only who holds a reader's affiliation
        // with one of the leaves.
        let members = ["owner", "publisher", "member"];
        let page = f
            .collection_subscribers(&above, &leaves, &members, 0, 10)
            .await?;
        let pks: Vec<i64> = page.subscribers.iter().map(|p| p.pk).collect();
        assert_eq!(pks, [bob], "{}", b.name);
        // Keyset pages, one cursor across the collections.
        let page = f
            .collection_subscribers(&above, &leaves, &anyone, alice, 1)
            .await?;
        let pks: Vec<i64> = page.subscribers.iter().map(|p| p.pk).collect();
        assert_eq!(pks, [bob], "{}", b.name);
        let page = f
            .collection_subscribers(&above, &leaves, &anyone, bob, 1)
            .await?;
        let pks: Vec<i64> = page.subscribers.iter().map(|p| p.pk).collect();
        assert_eq!(pks, [erin], "{}", b.name);
        assert!(
            f.collection_subscribers(&above, &leaves, &[], 0, 10)
                .await?
                .subscribers
                .is_empty(),
            "{}: no reader, nobody",
            b.name
        );
    }
    Ok(())
}

#[tokio::test]
async fn presence_records_who_came_online_and_forgets_who_left() -> anyhow::Result<()> {
    for b in backends().await? {
        let f = b.fanout.as_ref();
        let (bare, phone, desk) = (
            "dave@example.org",
            "dave@example.org/phone",
            "dave@example.org/desk",
        );
        assert!(
            f.resource_available(phone, bare, ShowValue::Online).await?,
            "{}: came online",
            b.name
        );
        assert!(
            !f.resource_available(phone, bare, ShowValue::Away).await?,
            "{}: a change of <show/>",
            b.name
        );
        assert!(
            f.resource_available(desk, bare, ShowValue::Dnd).await?,
            "{}",
            b.name
        );
        f.resource_available("erin@example.org/x", "erin@example.org", ShowValue::Chat)
            .await?;
        let mut got = f.available_resources(&[bare.to_string()]).await?;
        got.sort_by(|x, y| x.jid.cmp(&y.jid));
        let got: Vec<(&str, ShowValue)> = got.iter().map(|r| (r.jid.as_str(), r.show)).collect();
        assert_eq!(
            got,
            [(desk, ShowValue::Dnd), (phone, ShowValue::Away)],
            "{}",
            b.name
        );
        assert!(f.available_resources(&[]).await?.is_empty(), "{}", b.name);

        f.resource_unavailable(phone).await?;
        let left = f.available_resources(&[bare.to_string()]).await?;
        assert_eq!(left.len(), 1, "{}", b.name);
        assert_eq!(left[0].bare_jid, bare, "{}", b.name);
        assert!(
            f.resource_available(phone, bare, ShowValue::Xa).await?,
            "{}: online again",
            b.name
        );
        f.forget_presence(bare).await?;
        assert!(
            f.available_resources(&[bare.to_string()]).await?.is_empty(),
            "{}",
            b.name
        );
        assert_eq!(
            f.available_resources(&["erin@example.org".to_string()])
                .await?
                .len(),
            1,
            "{}: others stay",
            b.name
        );
    }
    Ok(())
}

#[tokio::test]
async fn a_resource_coming_online_gets_the_newest_item_of_each_node_that_sends_it(
) -> anyhow::Result<()> {
    for b in backends().await? {
        let (s, f) = (b.store.as_ref(), b.fanout.as_ref());
        let on_presence = NodeConfig {
            send_last_published_item: SendLastPublished::OnSubAndPresence,
            ..NodeConfig::default()
        };
        let moods = node(s, "moods", on_presence.clone()).await?;
        let quiet = node(s, "quiet", NodeConfig::default()).await?;
        let empty = node(s, "empty", on_presence.clone()).await?;
        let gone = node(s, "gone", on_presence).await?;
        let (bare, full) = ("dave@example.org", "dave@example.org/phone");
        let paused = SubscribeOptions {
            deliver: false,
            ..SubscribeOptions::default()
        };
        // Bare and this resource on moods: one row, with the full JID's options.
        sub(s, moods, bare, SubscribeOptions::default()).await?;
        sub(s, moods, full, paused).await?;
        sub(s, quiet, bare, SubscribeOptions::default()).await?;
        sub(s, empty, bare, SubscribeOptions::default()).await?;
        sub(s, gone, bare, SubscribeOptions::default()).await?;
        // Another resource's subscription is not this one's.
        sub(
            s,
            quiet,
            "dave@example.org/desk",
            SubscribeOptions::default(),
        )
        .await?;
        for id in ["old", "new", "old"] {
            s.publish(moods, Some(item(id)), 10, vec![]).await?.ok();
        }
        s.publish(quiet, Some(item("q")), 10, vec![]).await?.ok();
        s.publish(gone, Some(item("g")), 10, vec![]).await?.ok();
        s.delete_node(gone, Some(job(gone))).await?;

        let items = f.last_items_on_presence(bare, full).await?;
        assert_eq!(items.len(), 1, "{}: {items:?}", b.name);
        let last = &items[0];
        assert_eq!(
            (last.node_pk, last.node_name.as_str()),
            (moods, "moods"),
            "{}",
            b.name
        );
        assert_eq!(
            last.item_id, "old",
            "{}: the overwrite is the newest",
            b.name
        );
        assert_eq!(last.publisher, "owner@example.org/desk", "{}", b.name);
        assert_eq!(
            last.payload.as_deref(),
            Some("<entry xmlns='urn:test'>old</entry>"),
            "{}",
            b.name
        );
        assert!(
            !last.options.deliver,
            "{}: the full JID's subscription wins",
            b.name
        );
        assert_eq!(
            last.config.send_last_published_item,
            SendLastPublished::OnSubAndPresence,
            "{}",
            b.name
        );
        // Another resource has only the bare subscription.
        let desk = f
            .last_items_on_presence(bare, "dave@example.org/desk")
            .await?;
        assert_eq!(desk.len(), 1, "{}", b.name);
        assert!(desk[0].options.deliver, "{}", b.name);
    }
    Ok(())
}

#[tokio::test]
async fn queued_jobs_wake_the_fanout_listener() -> anyhow::Result<()> {
    for b in backends().await? {
        let (s, f) = (b.store.as_ref(), b.fanout.as_ref());
        let n = node(s, "n", NodeConfig::default()).await?;
        let mut listener = f.listen().await?;
        f.queue_jobs(&[]).await?;
        f.queue_jobs(&[job(n), direct(n, "x@example.org")]).await?;
        tokio::time::timeout(Duration::from_secs(5), listener.wait())
            .await
            .map_err(|_| anyhow::anyhow!("{}: no wake-up", b.name))??;
        assert_eq!(pending_jobs(s).await?, 2, "{}", b.name);
        // A request's commit wakes it as well.
        s.publish(n, Some(item("i")), 10, vec![job(n)]).await?.ok();
        tokio::time::timeout(Duration::from_secs(5), listener.wait())
            .await
            .map_err(|_| anyhow::anyhow!("{}: no wake-up after a publish", b.name))??;
    }
    Ok(())
}

#[tokio::test]
async fn the_status_page_sees_the_backlog_its_lease_holders_and_the_largest_nodes(
) -> anyhow::Result<()> {
    for b in backends().await? {
        let (s, f) = (b.store.as_ref(), b.fanout.as_ref());
        let mut pks = Vec::new();
        for name in ["big", "small", "idle"] {
            pks.push(node(s, name, NodeConfig::default()).await?);
        }
        let (big, small, idle) = (pks[0], pks[1], pks[2]);
        subscribe_users(s, big, 3).await?;
        sub(s, small, "u0@example.org", SubscribeOptions::default()).await?;
        for id in ["a", "b"] {
            s.publish(small, Some(item(id)), 10, vec![])
                .await?
                .map_err(|r| anyhow::anyhow!("{r:?}"))?;
        }
        s.publish(idle, Some(item("a")), 10, vec![])
            .await?
            .map_err(|r| anyhow::anyhow!("{r:?}"))?;

        let empty = s.status_backlog(10).await?;
        assert_eq!(empty.jobs_pending, 0, "{}", b.name);
        assert!(empty.lease_holders.is_empty(), "{}", b.name);

        f.queue_jobs(&[job(big), job(big), job(small)]).await?;
        f.claim(owner(7, 0), LEASE, LIMITS)
            .await?
            .expect("big's batch");
        let backlog = s.status_backlog(10).await?;
        assert_eq!(backlog.jobs_pending, 3, "{}", b.name);
        assert_eq!(backlog.lease_holders.len(), 1, "{}: one process", b.name);
        assert_eq!(backlog.lease_holders[0].jobs, 2, "{}", b.name);
        assert!(
            owner(7, 0)
                .to_string()
                .starts_with(&backlog.lease_holders[0].process),
            "{}: the holder is named by its process id",
            b.name
        );

        let ranking = s.largest_nodes(2).await?;
        let sizes = |list: &[pubsubd::store::status::NodeSize]| {
            list.iter()
                .map(|n| (n.name.clone(), n.count))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            sizes(&ranking.by_subscribers),
            [("big".to_string(), 3), ("small".to_string(), 1)],
            "{}",
            b.name
        );
        assert_eq!(
            sizes(&ranking.by_items),
            [("small".to_string(), 2), ("idle".to_string(), 1)],
            "{}: at most the limit",
            b.name
        );
    }
    Ok(())
}
