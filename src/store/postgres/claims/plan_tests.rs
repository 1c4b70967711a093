//! The subscriber reads keep to `subscriptions_fanout` whatever the planner's statistics
//! say. The database is given the statistics a real run left behind (taken while the
//! table held two big nodes, then 2,000 small nodes added), and the plans of the real
//! statements are read back with `EXPLAIN`, both as the generic plan of a prepared
//! statement (what sqlx runs after a few executions) and as a custom plan. The same
//! reads written with `node_pk = …` are checked to go wrong under these statistics, so
//! the setup is known to mislead the planner.
//!
//! And the claim's liveness test (`live_lease!`) stays one read of `pg_locks` per claim,
//! however many leased rows it looks at.

use pubsubd_testkit::TestDb;
use serde_json::{Map, Value};
use sqlx::PgConnection;

use super::{SUBSCRIBER_PAGE_SQL, WHOLE_NODES_SQL};
use crate::store::postgres::PgStore;

/// Big nodes 1 and 2 (10,500 subscriptions each) when the statistics are taken, then
/// nodes 3..=2002 with 10 subscriptions each.
async fn stale_statistics() -> anyhow::Result<(TestDb, PgConnection)> {
    let db = TestDb::create().await?;
    PgStore::connect(db.url(), 1).await?.migrate().await?;
    let mut conn = db.connect().await?;
    sqlx::raw_sql(
        "INSERT INTO nodes (name, config, creator)
             SELECT 'big' || g, '{}', 'owner@a.example' FROM generate_series(1, 2) g;
         INSERT INTO subscriptions (node_pk, jid, bare_jid, subid, state)
             SELECT 1 + g % 2, 'u' || g || '@a.example', 'u' || g || '@a.example',
                    'b' || g, 'subscribed'
             FROM generate_series(1, 21000) g;
         ANALYZE subscriptions;
         ANALYZE nodes;
         INSERT INTO nodes (name, config, creator)
             SELECT 'small' || g, '{}', 'owner@a.example' FROM generate_series(1, 2000) g;
         INSERT INTO subscriptions (node_pk, jid, bare_jid, subid, state)
             SELECT 3 + g / 10, 'v' || g % 1000 || '@a.example', 'v' || g % 1000 || '@a.example',
                    's' || g, 'subscribed'
             FROM generate_series(0, 19999) g;",
    )
    .execute(&mut conn)
    .await?;
    Ok((db, conn))
}

/// Every `(node type, index)` of the plan that `explain` (an `EXPLAIN (FORMAT JSON) …`
/// statement) gives under `plan_cache_mode = mode`, for the statement `sql` prepared as
/// `name` with parameter types `types`.
async fn scans(
    conn: &mut PgConnection,
    mode: &str,
    name: &str,
    types: &str,
    sql: &str,
    args: &str,
) -> anyhow::Result<Vec<(String, String)>> {
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "SET plan_cache_mode = {mode}; PREPARE {name}({types}) AS {sql}"
    )))
    .execute(&mut *conn)
    .await?;
    let plan: Value = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "EXPLAIN (FORMAT JSON) EXECUTE {name}({args})"
    )))
    .fetch_one(&mut *conn)
    .await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DEALLOCATE {name}")))
        .execute(&mut *conn)
        .await?;
    let mut nodes = Vec::new();
    plan_nodes(&plan, &mut nodes);
    Ok(nodes
        .iter()
        .map(|n| {
            let on = n.get("Index Name").or_else(|| n.get("Relation Name"));
            (
                text(n, "Node Type"),
                on.and_then(Value::as_str).unwrap_or("").to_owned(),
            )
        })
        .collect())
}

/// Every node of `plan` (an `EXPLAIN (FORMAT JSON)` answer), depth first.
fn plan_nodes<'a>(plan: &'a Value, found: &mut Vec<&'a Map<String, Value>>) {
    match plan {
        Value::Array(items) => items.iter().for_each(|v| plan_nodes(v, found)),
        Value::Object(fields) => {
            if fields.contains_key("Node Type") {
                found.push(fields);
            }
            fields.values().for_each(|v| plan_nodes(v, found));
        }
        _ => {}
    }
}

/// The text field `name` of a plan node ("" if it has none).
fn text(node: &Map<String, Value>, name: &str) -> String {
    node.get(name)
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned()
}

/// Whether a plan reads subscriptions other than through `subscriptions_fanout`.
fn strays(found: &[(String, String)]) -> bool {
    found.iter().any(|(kind, on)| {
        on == "subscriptions_pkey" || (kind == "Seq Scan" && on == "subscriptions")
    })
}

/// Whether a plan reads subscriptions through `subscriptions_fanout` and nothing else.
fn keeps_to_its_index(found: &[(String, String)]) -> bool {
    !strays(found) && found.iter().any(|(_, on)| on == "subscriptions_fanout")
}

/// `sql` with `from` replaced by `to`, which must occur in it.
fn rewritten(sql: &str, from: &str, to: &str) -> String {
    assert!(sql.contains(from), "{from:?} is not in the statement");
    sql.replace(from, to)
}

const MODES: [&str; 2] = ["force_generic_plan", "force_custom_plan"];

#[tokio::test]
async fn a_subscriber_page_reads_its_own_index_entries_under_stale_statistics() -> anyhow::Result<()>
{
    let (_db, mut conn) = stale_statistics().await?;
    let types = "bigint, bigint, bigint";
    for mode in MODES {
        // A small node's first page, and a page deep into a big node.
        for args in ["105, 0, 500", "1, 15000, 500"] {
            let found = scans(&mut conn, mode, "page", types, SUBSCRIBER_PAGE_SQL, args).await?;
            assert!(keeps_to_its_index(&found), "{mode}, ({args}): {found:?}");
        }
    }
    // The page as it was written before: equality on the node, ordered by `pk`.
    let by_equality = rewritten(
        &rewritten(
            SUBSCRIBER_PAGE_SQL,
            "(node_pk, pk) > ($1, $2) AND node_pk <= $1",
            "node_pk = $1 AND pk > $2",
        ),
        "ORDER BY node_pk, pk",
        "ORDER BY pk",
    );
    let misled = scans(
        &mut conn,
        "force_generic_plan",
        "page",
        types,
        &by_equality,
        "105, 0, 500",
    )
    .await?;
    assert!(
        strays(&misled),
        "these statistics no longer mislead the planner, so this test shows nothing: {misled:?}"
    );
    Ok(())
}

#[tokio::test]
async fn small_nodes_are_read_through_their_index_under_stale_statistics() -> anyhow::Result<()> {
    let (_db, mut conn) = stale_statistics().await?;
    let small: Vec<String> = (100..132).map(|n| n.to_string()).collect();
    let args = format!(
        "ARRAY[{}]::bigint[], ARRAY[{}]::bigint[]",
        small.join(","),
        vec!["500"; small.len()].join(",")
    );
    let types = "bigint[], bigint[]";
    for mode in MODES {
        let found = scans(&mut conn, mode, "whole", types, WHOLE_NODES_SQL, &args).await?;
        assert!(keeps_to_its_index(&found), "{mode}: {found:?}");
    }
    let by_equality = rewritten(
        WHOLE_NODES_SQL,
        "node_pk >= u.node_pk AND node_pk <= u.node_pk",
        "node_pk = u.node_pk",
    );
    let misled = scans(
        &mut conn,
        "force_custom_plan",
        "whole",
        types,
        &by_equality,
        &args,
    )
    .await?;
    assert!(
        strays(&misled),
        "these statistics no longer mislead the planner, so this test shows nothing: {misled:?}"
    );
    Ok(())
}

/// The claim's liveness test reads `pg_locks` once per statement, whatever the number
/// of leased rows it looks at (a hashed subplan, not a scan per leased row), and never
/// for unleased rows; and it tells live sessions from dead ones: a node leased under a
/// session whose lock is gone is a candidate again, one under a held lock is not.
#[tokio::test]
async fn the_liveness_test_reads_pg_locks_once_per_claim() -> anyhow::Result<()> {
    use super::{candidates_sql, OLDEST_CANDIDATES_SQL};
    let db = TestDb::create().await?;
    PgStore::connect(db.url(), 1).await?.migrate().await?;
    let mut conn = db.connect().await?;
    // 300 nodes with a job each: nodes 1..=100 leased under session 7 (held below),
    // 101..=200 under session 8 (no one holds it), 201..=300 free.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "INSERT INTO fanout_jobs (node_pk, payload_xml, message_type, kind, lease_owner,
                                  lease_until, lease_session)
             SELECT g, '<x/>', 'headline', 'items',
                    CASE WHEN g <= 200 THEN gen_random_uuid() END,
                    CASE WHEN g <= 200 THEN now() + interval '30 seconds' END,
                    CASE WHEN g <= 100 THEN 7 WHEN g <= 200 THEN 8 END
             FROM generate_series(1, 300) g;
         ANALYZE fanout_jobs;
         SELECT pg_advisory_lock({}, 7);",
        super::super::liveness::session_lock_class!()
    )))
    .execute(&mut conn)
    .await?;
    for (name, sql, args) in [
        ("oldest", OLDEST_CANDIDATES_SQL, "1000, 512"),
        ("every", &candidates_sql::<PgStore>(), "1000"),
    ] {
        let types = if name == "oldest" {
            "bigint, bigint"
        } else {
            "bigint"
        };
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "PREPARE {name}({types}) AS {sql}"
        )))
        .execute(&mut conn)
        .await?;
        let candidates: Vec<i64> =
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("EXECUTE {name}({args})")))
                .fetch_all(&mut conn)
                .await?;
        let mut sorted = candidates.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (101..=300).collect::<Vec<i64>>(), "{name}");
        let plan: Value = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE {name}({args})"
        )))
        .fetch_one(&mut conn)
        .await?;
        let mut nodes = Vec::new();
        plan_nodes(&plan, &mut nodes);
        let locks: Vec<u64> = nodes
            .iter()
            .filter(|n| text(n, "Node Type") == "Function Scan")
            .filter(|n| text(n, "Function Name") == "pg_lock_status")
            .map(|n| n.get("Actual Loops").and_then(Value::as_u64).unwrap_or(0))
            .collect();
        assert_eq!(locks, [1], "{name}: pg_locks read once: {nodes:?}");
    }
    Ok(())
}
