//! Self-tests of `TestDb`: a fresh, usable database that disappears on drop.

use pubsubd_testkit::TestDb;
use sqlx::Connection as _;

#[tokio::test]
async fn fresh_database_is_usable_and_dropped_afterwards() -> anyhow::Result<()> {
    let db = TestDb::create().await?;
    let name = db.name().to_string();
    assert!(db.url().ends_with(&format!("/{name}")), "{}", db.url());

    let mut conn = db.connect().await?;
    sqlx::query("CREATE TABLE t (x int)")
        .execute(&mut conn)
        .await?;
    sqlx::query("INSERT INTO t VALUES (1)")
        .execute(&mut conn)
        .await?;
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM t")
        .fetch_one(&mut conn)
        .await?;
    assert_eq!(count, 1);

    // Dropped WITH (FORCE): an open connection does not block it.
    drop(db);
    let other = TestDb::create().await?;
    let mut conn2 = other.connect().await?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&name)
            .fetch_one(&mut conn2)
            .await?;
    assert!(!exists, "database {name} should be gone");
    conn2.close().await?;
    drop(conn);
    Ok(())
}

#[tokio::test]
async fn databases_are_distinct() -> anyhow::Result<()> {
    let a = TestDb::create().await?;
    let b = TestDb::create().await?;
    assert_ne!(a.name(), b.name());
    Ok(())
}
