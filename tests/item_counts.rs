//! A node's item count (RSM `<count>`, `pubsub#num_items`, the status ranking and the
//! service's total), kept by the schema's triggers (`migrations/0011_item_counts.sql`):
//! exact after every kind of change to items, on PostgreSQL and SQLite alike, before
//! and after PostgreSQL folds its pending changes into the nodes' rows.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::job;
use common::store::*;
use pubsubd::domain::{ItemId, NodeConfig, NodeId};
use pubsubd::store::postgres::PgStore;
use pubsubd::store::{BatchedPublish, ItemsQuery};
use pubsubd_testkit::TestDb;

#[tokio::test]
async fn a_nodes_item_count_follows_every_change_to_its_items() -> anyhow::Result<()> {
    // The count a retrieval's RSM <count> and disco#info's num_items read is kept by
    // the schema's triggers (the node's row plus changes not yet folded into it): it
    // must equal the items actually stored after every kind of change, before and
    // after a fold, on both backends.
    for b in backends().await? {
        let s = b.store.as_ref();
        let pk = node(s, "counted", NodeConfig::default()).await?;
        let other = node(s, "other", NodeConfig::default()).await?;
        let check = |pk: i64, want: usize, what: &'static str| {
            let name = b.name;
            async move {
                let stored = latest_ids(s, pk).await?.len();
                assert_eq!(stored, want, "{name}: items after {what}");
                assert_eq!(
                    s.item_count(pk).await?,
                    want as u64,
                    "{name}: count after {what}"
                );
                // Folding the changes (PostgreSQL) changes no count.
                s.fold_item_counts(1_000).await?;
                assert_eq!(
                    s.item_count(pk).await?,
                    want as u64,
                    "{name}: count after {what}, folded"
                );
                anyhow::Ok(())
            }
        };
        for id in ["a", "b", "c"] {
            s.publish(pk, Some(item(id)), 10, vec![]).await?.ok();
        }
        check(pk, 3, "publish").await?;
        s.publish(pk, Some(item("a")), 10, vec![]).await?.ok();
        check(pk, 3, "overwrite").await?;
        let batched = |node_pk: i64, id: &str, keep: u32| BatchedPublish {
            node_pk,
            item: item(id),
            keep,
            job: job(node_pk),
        };
        s.publish_batch(&[
            batched(pk, "d", 10),
            batched(pk, "b", 10),
            batched(other, "x", 10),
        ])
        .await?;
        check(pk, 4, "a batch with an overwrite").await?;
        check(other, 1, "a batch over two nodes").await?;
        s.publish(pk, Some(item("e")), 3, vec![]).await?.ok();
        check(pk, 3, "a publish trimmed to max_items").await?;
        s.publish_batch(&[batched(pk, "f", 2), batched(other, "y", 2)])
            .await?;
        check(pk, 2, "a batch trimmed to max_items").await?;
        check(other, 2, "a batch that filled no node").await?;
        let gone = s
            .retract(
                pk,
                &[ItemId::parse("f")?, ItemId::parse("nowhere")?],
                vec![],
            )
            .await?;
        assert_eq!(gone.len(), 1, "{}", b.name);
        check(pk, 1, "a retraction of one present and one missing id").await?;
        for id in ["g", "h", "i"] {
            s.publish(pk, Some(item(id)), 10, vec![]).await?.ok();
        }
        s.configure_node(pk, &NodeConfig::default(), 2, &Default::default(), vec![])
            .await?
            .ok();
        check(pk, 2, "a lowered max_items").await?;
        // A page's RSM count and index.
        let page = s
            .items(
                pk,
                &ItemsQuery::Page {
                    max: 1,
                    after: None,
                    before: Some(String::new()),
                    index: None,
                },
            )
            .await?;
        assert_eq!((page.count, page.first_index), (2, Some(1)), "{}", b.name);
        s.purge(pk, vec![]).await?;
        check(pk, 0, "purge").await?;
        check(other, 2, "a purge of another node").await?;
        // Expiry: items older than item_expire (0 s: every item published before now).
        let expiring = node(
            s,
            "expiring",
            NodeConfig {
                item_expire: Some(0),
                ..NodeConfig::default()
            },
        )
        .await?;
        for id in ["j", "k", "l"] {
            s.publish(expiring, Some(item(id)), 10, vec![]).await?.ok();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(s.expire_items(2).await?, 2, "{}", b.name);
        check(expiring, 1, "an expiry batch").await?;
        assert_eq!(s.expire_items(10).await?, 1, "{}", b.name);
        check(expiring, 0, "expiry").await?;
        let stats = s.stats().await?;
        assert_eq!(stats.items, 2, "{}: items of the service", b.name);
        // A deleted node takes its items and its count with it, and only its: the
        // service still counts the items of the nodes that remain, before the changes
        // are folded (on PostgreSQL the deletion leaves a change of -2 for a node that
        // is gone) and after.
        let kept = node(s, "kept", NodeConfig::default()).await?;
        for id in ["m", "n", "o"] {
            s.publish(kept, Some(item(id)), 10, vec![]).await?.ok();
        }
        assert_eq!(s.stats().await?.items, 5, "{}: before the deletion", b.name);
        s.delete_node(other, None).await?;
        assert!(
            s.node(&NodeId::parse("other")?).await?.is_none(),
            "{}",
            b.name
        );
        assert_eq!(s.item_count(kept).await?, 3, "{}", b.name);
        assert_eq!(
            s.stats().await?.items,
            3,
            "{}: items of the service after a deletion",
            b.name
        );
        s.fold_item_counts(1_000).await?;
        assert_eq!(
            s.stats().await?.items,
            3,
            "{}: items of the service after a deletion, folded",
            b.name
        );
        assert_eq!(s.item_count(kept).await?, 3, "{}: folded", b.name);
    }
    Ok(())
}

#[tokio::test]
async fn item_counts_stay_exact_under_concurrent_publishes_retractions_and_folds(
) -> anyhow::Result<()> {
    // Four writers publish (each with its notification job, as the service does: on
    // PostgreSQL the one-statement batch of one), overwrite and retract on two nodes at
    // once, one of which keeps 40 items (so trims run beside the others), while the
    // count changes are folded over and over: the count read afterwards (and after a
    // last fold) is the number of items stored.
    const TRIMMED_KEEP: u32 = 40;
    for b in backends().await? {
        let pk = node(b.store.as_ref(), "busy", NodeConfig::default()).await?;
        let trimmed = node(b.store.as_ref(), "trimmed", NodeConfig::default()).await?;
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let folder = {
            let (store, done) = (b.store.clone(), done.clone());
            tokio::spawn(async move {
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    store.fold_item_counts(7).await?;
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                anyhow::Ok(())
            })
        };
        let mut writers = Vec::new();
        for w in 0..4 {
            let store = b.store.clone();
            writers.push(tokio::spawn(async move {
                for i in 0..40 {
                    let id = format!("w{w}-{i}");
                    for (node_pk, keep) in [(pk, 1_000), (trimmed, TRIMMED_KEEP)] {
                        let publish =
                            || store.publish(node_pk, Some(item(&id)), keep, vec![job(node_pk)]);
                        publish().await?.ok();
                        if i % 5 == 0 {
                            // An overwrite adds nothing.
                            publish().await?.ok();
                        }
                        if i % 3 == 0 {
                            store
                                .retract(node_pk, &[ItemId::parse(&id)?], vec![])
                                .await?;
                        }
                    }
                }
                anyhow::Ok(())
            }));
        }
        for w in writers {
            w.await??;
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        folder.await??;
        let s = b.store.as_ref();
        let stored = latest_ids(s, pk).await?.len() as u64;
        assert_eq!(stored, 4 * (40 - 14), "{}", b.name);
        let kept = latest_ids(s, trimmed).await?.len() as u64;
        assert!(kept < stored, "{}: trims ran ({kept} items kept)", b.name);
        for (node_pk, want) in [(pk, stored), (trimmed, kept)] {
            assert_eq!(s.item_count(node_pk).await?, want, "{}", b.name);
        }
        while s.fold_item_counts(7).await? > 0 {}
        for (node_pk, want) in [(pk, stored), (trimmed, kept)] {
            assert_eq!(s.item_count(node_pk).await?, want, "{}: folded", b.name);
        }
    }
    Ok(())
}

#[tokio::test]
async fn a_fold_waits_for_no_node_that_another_transaction_holds() -> anyhow::Result<()> {
    // A node's deletion holds its row until it commits (and a configuration form holds
    // its collection links, then the row). The fold must not wait for that row, or it
    // could close a circle of waits: it folds the other nodes, leaves the held node's
    // changes pending, and drops them once the deletion has committed. Every count
    // stays exact throughout. PostgreSQL only: SQLite has nothing to fold.
    for b in backends().await? {
        let Some(db) = b._pg.as_ref() else { continue };
        let s = b.store.as_ref();
        let held = node(s, "held", NodeConfig::default()).await?;
        let free = node(s, "free", NodeConfig::default()).await?;
        for id in ["a", "b"] {
            s.publish(held, Some(item(id)), 10, vec![]).await?.ok();
            s.publish(free, Some(item(id)), 10, vec![]).await?.ok();
        }
        let mut deleter = db.connect().await?;
        sqlx::query("BEGIN").execute(&mut deleter).await?;
        sqlx::query("DELETE FROM nodes WHERE pk = $1")
            .bind(held)
            .execute(&mut deleter)
            .await?;
        let pending = |pk: i64| {
            let url = db.url().to_owned();
            async move {
                let mut c = <sqlx::PgConnection as sqlx::Connection>::connect(&url).await?;
                let n: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM item_count_changes WHERE node_pk = $1",
                )
                .bind(pk)
                .fetch_one(&mut c)
                .await?;
                anyhow::Ok(n)
            }
        };
        let folded = tokio::time::timeout(Duration::from_secs(5), s.fold_item_counts(1_000))
            .await
            .map_err(|_| anyhow::anyhow!("the fold waited for the held node"))??;
        assert_eq!(folded, 1, "only the free node is folded");
        assert_eq!(pending(free).await?, 0);
        assert!(pending(held).await? > 0, "the held node's changes wait");
        assert_eq!(s.item_count(held).await?, 2);
        assert_eq!(s.item_count(free).await?, 2);
        assert_eq!(s.stats().await?.items, 4);
        sqlx::query("COMMIT").execute(&mut deleter).await?;
        assert_eq!(s.item_count(free).await?, 2);
        assert_eq!(s.stats().await?.items, 2, "after the deletion");
        assert_eq!(
            s.fold_item_counts(1_000).await?,
            1,
            "the gone node's changes"
        );
        assert_eq!(pending(held).await?, 0, "dropped");
        assert_eq!(s.stats().await?.items, 2, "after the deletion, folded");
        assert_eq!(s.fold_item_counts(1_000).await?, 0, "nothing left");
    }
    Ok(())
}

#[tokio::test]
async fn the_change_queue_is_vacuumed_after_every_thousand_dead_rows() -> anyhow::Result<()> {
    // Each fold deletes what publishes added: PostgreSQL's default (a fifth of the
    // table dead) would let a burst put the next vacuum off in proportion.
    let db = TestDb::create().await?;
    PgStore::connect(db.url(), 1).await?.migrate().await?;
    let mut c = db.connect().await?;
    let options: Vec<String> = sqlx::query_scalar(
        "SELECT unnest(reloptions) FROM pg_class WHERE relname = 'item_count_changes'",
    )
    .fetch_all(&mut c)
    .await?;
    assert_eq!(
        options,
        [
            "autovacuum_vacuum_scale_factor=0",
            "autovacuum_vacuum_threshold=1000"
        ]
    );
    Ok(())
}
