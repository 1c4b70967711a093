//! Retention against a real PostgreSQL and an SQLite file: expired items go, in bounded
//! batches; items of nodes without `item_expire`, and fresh items, stay. The task folds
//! item count changes while it works off an expiry backlog, and stops at shutdown.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pubsubd::store::postgres::PgStore;
use pubsubd::store::{ItemStore as _, ServiceStore};
use pubsubd_testkit::TestDb;
use tokio_util::sync::CancellationToken;

async fn node(db: &sqlx::PgPool, name: &str, config: &str) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar(
        "INSERT INTO nodes (name, config, creator) VALUES ($1, $2::jsonb, 'o@x') RETURNING pk",
    )
    .bind(name)
    .bind(config)
    .fetch_one(db)
    .await?)
}

async fn items(db: &sqlx::PgPool, node_pk: i64, n: i64, age_secs: i64) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO items (node_pk, item_id, publisher, payload, published_at)
         SELECT $1, 'i' || g || '-' || $3, 'p@x/r', '<x xmlns=\"y\"/>', now() - make_interval(secs => $3)
         FROM generate_series(1, $2) g",
    )
    .bind(node_pk)
    .bind(n)
    .bind(age_secs as f64)
    .execute(db)
    .await?;
    Ok(())
}

async fn count(db: &sqlx::PgPool, node_pk: i64) -> anyhow::Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT count(*) FROM items WHERE node_pk = $1")
            .bind(node_pk)
            .fetch_one(db)
            .await?,
    )
}

#[tokio::test]
async fn expired_items_are_deleted_in_batches_and_others_kept() -> anyhow::Result<()> {
    let db = TestDb::create().await?;
    let store = PgStore::connect(db.url(), 2).await?;
    store.migrate().await?;
    let pool = store.pool().clone();
    let expiring = node(&pool, "expiring", r#"{"item_expire": 60}"#).await?;
    let keeping = node(&pool, "keeping", r#"{}"#).await?;
    items(&pool, expiring, 250, 3600).await?; // expired
    items(&pool, expiring, 7, 1).await?; // fresh
    items(&pool, keeping, 30, 3600).await?; // old but the node never expires items

    assert_eq!(store.expire_items(100).await?, 100, "a batch is bounded");
    let mut total = 100;
    loop {
        let n = store.expire_items(100).await?;
        total += n;
        if n == 0 {
            break;
        }
    }
    assert_eq!(total, 250);
    assert_eq!(count(&pool, expiring).await?, 7);
    assert_eq!(count(&pool, keeping).await?, 30);
    Ok(())
}

/// Polls `what` every 20 ms until it holds, for at most `limit`.
async fn until<F, Fut>(limit: Duration, mut what: F) -> anyhow::Result<bool>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if what().await? {
            return Ok(true);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    what().await
}

#[tokio::test]
async fn counts_are_folded_during_an_expiry_backlog_and_both_stop_at_shutdown() -> anyhow::Result<()>
{
    let db = TestDb::create().await?;
    let store = Arc::new(PgStore::connect(db.url(), 4).await?);
    store.migrate().await?;
    let pool = store.pool().clone();
    let expiring = node(&pool, "expiring", r#"{"item_expire": 60}"#).await?;
    let busy = node(&pool, "busy", r#"{}"#).await?;
    // 100 batches of 1,000: at least 5 s of pauses between them alone.
    const BACKLOG: i64 = 100_000;
    items(&pool, expiring, BACKLOG, 3600).await?;
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(pubsubd::retention::run(store.clone(), shutdown.clone()));
    let started = until(Duration::from_secs(10), || async {
        Ok(count(&pool, expiring).await? < BACKLOG)
    })
    .await?;
    assert!(started, "the sweep started");

    // Changes made once the sweep is under way are folded within a fold or two.
    items(&pool, busy, 5, 0).await?;
    let pending = || async {
        let n: i64 =
            sqlx::query_scalar("SELECT count(*) FROM item_count_changes WHERE node_pk = $1")
                .bind(busy)
                .fetch_one(&pool)
                .await?;
        anyhow::Ok(n)
    };
    assert_eq!(pending().await?, 1);
    let folded = until(Duration::from_secs(4), || async {
        Ok(pending().await? == 0)
    })
    .await?;
    let left = count(&pool, expiring).await?;
    assert!(folded, "folded while {left} expired items were left");
    assert!(left > 0, "the sweep was still under way");
    assert_eq!(store.item_count(busy).await?, 5);

    // Shutdown stops the sweep between two batches, backlog or not.
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(2), run)
        .await
        .map_err(|_| anyhow::anyhow!("retention outlived shutdown"))??;
    let stopped = count(&pool, expiring).await?;
    assert!(stopped > 0, "stopped before the backlog was done");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        count(&pool, expiring).await?,
        stopped,
        "nothing deleted after"
    );
    Ok(())
}

/// The same rule on SQLite, whose cut-off is computed from text timestamps.
mod sqlite {
    use pubsubd::store::sqlite::SqliteStore;
    use pubsubd::store::ServiceStore;
    use pubsubd_testkit::TestSqlite;
    use sqlx::SqlitePool;

    async fn node(db: &SqlitePool, name: &str, config: &str) -> anyhow::Result<i64> {
        Ok(sqlx::query_scalar(
            "INSERT INTO nodes (name, config, creator) VALUES (?1, ?2, 'o@x') RETURNING pk",
        )
        .bind(name)
        .bind(config)
        .fetch_one(db)
        .await?)
    }

    async fn items(db: &SqlitePool, node_pk: i64, n: i64, age_secs: i64) -> anyhow::Result<()> {
        sqlx::query(
            "WITH RECURSIVE g(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM g WHERE i < ?2)
             INSERT INTO items (node_pk, item_id, seq, publisher, payload, published_at)
             SELECT ?1, 'i' || i || '-' || ?3, ?3 * 100000 + i, 'p@x/r', '<x xmlns=\"y\"/>',
                    strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-' || ?3 || ' seconds')
             FROM g",
        )
        .bind(node_pk)
        .bind(n)
        .bind(age_secs)
        .execute(db)
        .await?;
        Ok(())
    }

    async fn count(db: &SqlitePool, node_pk: i64) -> anyhow::Result<i64> {
        Ok(
            sqlx::query_scalar("SELECT count(*) FROM items WHERE node_pk = ?1")
                .bind(node_pk)
                .fetch_one(db)
                .await?,
        )
    }

    #[tokio::test]
    async fn expired_items_are_deleted_in_batches_and_others_kept() -> anyhow::Result<()> {
        let file = TestSqlite::create()?;
        let store = SqliteStore::open(file.path(), 2).await?;
        store.migrate().await?;
        let pool = store.pool().clone();
        let expiring = node(&pool, "expiring", r#"{"item_expire": 60}"#).await?;
        let keeping = node(&pool, "keeping", r#"{}"#).await?;
        items(&pool, expiring, 250, 3600).await?; // expired
        items(&pool, expiring, 7, 1).await?; // fresh
        items(&pool, keeping, 30, 3600).await?; // old but the node never expires items

        assert_eq!(store.expire_items(100).await?, 100, "a batch is bounded");
        let mut total = 100;
        loop {
            let n = store.expire_items(100).await?;
            total += n;
            if n == 0 {
                break;
            }
        }
        assert_eq!(total, 250);
        assert_eq!(count(&pool, expiring).await?, 7);
        assert_eq!(count(&pool, keeping).await?, 30);
        Ok(())
    }
}
