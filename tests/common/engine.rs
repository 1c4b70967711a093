//! pubsubd with the test's own connection to its store, for the fan-out tests: nodes,
//! subscriptions (10,000 of them in one statement), items and jobs written with SQL
//! ([`Db`]) as the request side writes them (the item and its job in one transaction,
//! the job through the backend's `insert_job`), after pubsubd has migrated the store,
//! and what the engine left read back. On SQLite such jobs come from another process,
//! like an admin command's: nothing wakes pubsubd for them, and its slow poll (5 s)
//! finds them.
//!
//! Virtual subscribers are JIDs `v<n>@<sink>` where `<sink>` is a second component slot
//! held by the test: the server routes every notification for them to one connection,
//! which counts them ([`Inbox`]). Everything is counted by (recipient, message id); a
//! notification's id is stable per job (and per subscription when it carries a SubID),
//! whichever path it takes, so a resent notification is a duplicate.
//!
//! The engine runs with `multicast = "off"` unless `extra` mentions multicast, so that
//! these tests exercise the one-by-one path. Grouping has its own tests
//! (`fanout_connections.rs`), and the protocol suites run with the default, which finds
//! the server's service.

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use pubsubd::domain::{ItemId, NodeId};
use pubsubd::events::{self, EventItem};
use pubsubd::store::jobs::{JobKind, JobTarget, NewJob};
use pubsubd_testkit::{Account, Client, Element, StoreKind, TestStore, XmppServer};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};
use sqlx::PgPool;

use super::sink::Inbox;
use super::{start_logged, Pubsubd, NS_EVENT};

/// pubsubd on a fresh slot and store of the running test's kind, connected (and so
/// migrated), with a short fan-out lease unless `extra` sets one, notifications one by
/// one unless `extra` mentions multicast, and debug logs (batch completion is logged
/// there).
pub async fn start_engine(server: &XmppServer, extra: &str) -> anyhow::Result<Pubsubd> {
    start_engine_on(StoreKind::current()?, server, extra).await
}

/// As [`start_engine`], on a store of `kind` whatever the test runs on.
pub async fn start_engine_on(
    kind: StoreKind,
    server: &XmppServer,
    extra: &str,
) -> anyhow::Result<Pubsubd> {
    let mut config = if extra.contains("fanout_lease_secs") {
        extra.to_string()
    } else {
        format!("fanout_lease_secs = {TEST_LEASE_SECS}\n{extra}")
    };
    if !extra.contains("multicast") {
        config = format!("multicast = \"off\"\n{config}");
    }
    start_logged(server, &config, kind, "info,pubsubd=debug").await
}

/// Longest wait for a fan-out to finish in these tests (100,000 notifications through
/// Prosody at ~2,000/s on a busy machine is the slowest case).
pub const FANOUT_DONE: Duration = Duration::from_secs(180);
/// After the server has confirmed a job, how long a client may still take to see it.
pub const SETTLE: Duration = Duration::from_secs(2);
/// A short lease, so that taking over a killed process's jobs takes seconds.
pub const TEST_LEASE_SECS: u64 = 3;
/// Small pages for tests that interrupt a fan-out: many barrier round trips make a
/// 10,000-subscription job last long enough (ejabberd confirms 500 notifications in a
/// few milliseconds) for the test to catch it in the middle on a busy machine.
pub const SMALL_PAGES: &str = "fanout_page_size = 25";

pub const NS_SHIM: &str = "http://jabber.org/protocol/shim";
pub const NS_DELAY: &str = "urn:xmpp:delay";

// ---------------------------------------------------------------------------------
// Writing state as the request side does, reading what the engine left

/// The test's own connection to pubsubd's store. Where the two dialects agree, one SQL
/// text serves both (`$n` parameters work on SQLite too); the rest is written twice.
pub enum Db {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

/// Runs one query built by `$build` on whichever pool `$db` holds, with `$fetch`
/// (`fetch_one`, `fetch_optional`: what both backends decode to one type). `$build` is expanded once per backend, so it is typed
/// for each.
macro_rules! on_db {
    ($db:expr, $build:expr, $fetch:ident) => {
        match $db {
            Db::Postgres(pool) => $build.$fetch(pool).await?,
            Db::Sqlite(pool) => $build.$fetch(pool).await?,
        }
    };
}
#[allow(unused_imports)]
pub(crate) use on_db;

impl Db {
    /// A small pool on the store pubsubd migrated. On SQLite it waits for pubsubd's
    /// writes like pubsubd does (busy timeout) and, like an admin command, takes no
    /// instance lock.
    pub async fn connect(store: &TestStore) -> anyhow::Result<Db> {
        Ok(match store {
            TestStore::Postgres(db) => Db::Postgres(PgPool::connect(db.url()).await?),
            TestStore::Sqlite(file) => Db::Sqlite(
                SqlitePoolOptions::new()
                    .max_connections(2)
                    .connect_with(
                        SqliteConnectOptions::new()
                            .filename(file.path())
                            .busy_timeout(Duration::from_secs(10))
                            .foreign_keys(true),
                    )
                    .await?,
            ),
        })
    }

    /// The PostgreSQL pool, for the tests that are about PostgreSQL.
    pub fn pg(&self) -> anyhow::Result<&PgPool> {
        match self {
            Db::Postgres(pool) => Ok(pool),
            Db::Sqlite(_) => bail!("this test needs PostgreSQL"),
        }
    }

    pub async fn jobs_left(&self) -> anyhow::Result<i64> {
        Ok(on_db!(
            self,
            sqlx::query_scalar("SELECT count(*) FROM fanout_jobs"),
            fetch_one
        ))
    }

    /// The saved cursor of `job`; `None` once it is done.
    pub async fn cursor(&self, job: i64) -> anyhow::Result<Option<i64>> {
        Ok(on_db!(
            self,
            sqlx::query_scalar("SELECT cursor FROM fanout_jobs WHERE id = $1").bind(job),
            fetch_optional
        ))
    }

    /// The cursor and lease owner of a pending `job`.
    pub async fn cursor_and_owner(&self, job: i64) -> anyhow::Result<(i64, Option<String>)> {
        Ok(on_db!(
            self,
            sqlx::query_as(
                "SELECT cursor, CAST(lease_owner AS TEXT) FROM fanout_jobs WHERE id = $1"
            )
            .bind(job),
            fetch_one
        ))
    }

    /// Makes `child` a child of the collection `parent`, as an association does.
    pub async fn associate(&self, parent: i64, child: i64) -> anyhow::Result<()> {
        let linked: i64 = on_db!(
            self,
            sqlx::query_scalar(
                "INSERT INTO collection_links (parent_pk, child_pk) VALUES ($1, $2)
                 RETURNING child_pk"
            )
            .bind(parent)
            .bind(child),
            fetch_one
        );
        anyhow::ensure!(linked == child);
        Ok(())
    }

    /// The first subscription of the node of `job`.
    pub async fn first_subscription_of_job(&self, job: i64) -> anyhow::Result<i64> {
        Ok(on_db!(
            self,
            sqlx::query_scalar(
                "SELECT min(s.pk) FROM subscriptions s JOIN fanout_jobs j ON j.node_pk = s.node_pk
                 WHERE j.id = $1"
            )
            .bind(job),
            fetch_one
        ))
    }

    /// Whether the node row is still there (deleted or not).
    pub async fn node_rows(&self, node: i64) -> anyhow::Result<i64> {
        Ok(on_db!(
            self,
            sqlx::query_scalar("SELECT count(*) FROM nodes WHERE pk = $1").bind(node),
            fetch_one
        ))
    }

    pub async fn subscription_rows(&self, node: i64) -> anyhow::Result<i64> {
        Ok(on_db!(
            self,
            sqlx::query_scalar("SELECT count(*) FROM subscriptions WHERE node_pk = $1").bind(node),
            fetch_one
        ))
    }

    /// The pk of the live node `name`.
    pub async fn node_pk(&self, name: &str) -> anyhow::Result<i64> {
        Ok(on_db!(
            self,
            sqlx::query_scalar("SELECT pk FROM nodes WHERE name = $1 AND NOT deleted").bind(name),
            fetch_one
        ))
    }

    /// The ids of the items stored on the live node `name`.
    pub async fn stored_item_ids(&self, name: &str) -> anyhow::Result<Vec<String>> {
        Ok(on_db!(
            self,
            sqlx::query_scalar(
                "SELECT i.item_id FROM items i JOIN nodes n ON n.pk = i.node_pk
                 WHERE n.name = $1 AND NOT n.deleted"
            )
            .bind(name),
            fetch_all
        ))
    }

    /// Whether the presence table lists `jid` as available.
    pub async fn available(&self, jid: &str) -> anyhow::Result<bool> {
        let n: i64 = on_db!(
            self,
            sqlx::query_scalar("SELECT count(*) FROM presence WHERE jid = $1").bind(jid),
            fetch_one
        );
        Ok(n > 0)
    }
}

/// Node configuration JSON (serde of `domain::NodeConfig`; unset fields default).
pub fn config(pairs: &[(&str, serde_json::Value)]) -> String {
    let map: serde_json::Map<String, serde_json::Value> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_string(), v.clone()))
        .collect();
    serde_json::Value::Object(map).to_string()
}

pub async fn create_node(db: &Db, name: &str, config: &str) -> anyhow::Result<i64> {
    const PG: &str = "INSERT INTO nodes (name, config, creator) VALUES ($1, $2::jsonb, 'owner@localhost') RETURNING pk";
    const SQLITE: &str =
        "INSERT INTO nodes (name, config, creator) VALUES ($1, $2, 'owner@localhost') RETURNING pk";
    Ok(match db {
        Db::Postgres(pool) => {
            sqlx::query_scalar(PG)
                .bind(name)
                .bind(config)
                .fetch_one(pool)
                .await?
        }
        Db::Sqlite(pool) => {
            sqlx::query_scalar(SQLITE)
                .bind(name)
                .bind(config)
                .fetch_one(pool)
                .await?
        }
    })
}

/// Subscribes `jid` (bare or full) with `options` JSON; returns the subscription's pk.
pub async fn subscribe(db: &Db, node: i64, jid: &str, options: &str) -> anyhow::Result<i64> {
    let bare = jid.split('/').next().unwrap_or(jid);
    let sql = match db {
        Db::Postgres(_) => {
            "INSERT INTO subscriptions (node_pk, jid, bare_jid, subid, state, options)
             VALUES ($1, $2, $3, md5(random()::text), 'subscribed', $4::jsonb) RETURNING pk"
        }
        Db::Sqlite(_) => {
            "INSERT INTO subscriptions (node_pk, jid, bare_jid, subid, state, options)
             VALUES ($1, $2, $3, lower(hex(randomblob(16))), 'subscribed', $4) RETURNING pk"
        }
    };
    Ok(on_db!(
        db,
        sqlx::query_scalar(sql)
            .bind(node)
            .bind(jid)
            .bind(bare)
            .bind(options),
        fetch_one
    ))
}

/// Nodes `<prefix>0` … `<prefix><count - 1>`, each with `per_node` virtual subscribers
/// of `sink` of its own (node n: `v<n × per_node>` onwards); their (pk, name).
pub async fn virtual_nodes(
    db: &Db,
    prefix: &str,
    count: i64,
    sink: &str,
    per_node: i64,
) -> anyhow::Result<Vec<(i64, String)>> {
    let mut nodes = Vec::new();
    for n in 0..count {
        let name = format!("{prefix}{n}");
        let pk = create_node(db, &name, "{}").await?;
        subscribe_virtual(db, pk, sink, n * per_node, per_node).await?;
        nodes.push((pk, name));
    }
    Ok(nodes)
}

/// Subscribes virtual subscribers `v<first>@sink` … `v<first + count - 1>@sink`.
pub async fn subscribe_virtual(
    db: &Db,
    node: i64,
    sink: &str,
    first: i64,
    count: i64,
) -> anyhow::Result<()> {
    let sql = match db {
        Db::Postgres(_) => {
            "INSERT INTO subscriptions (node_pk, jid, bare_jid, subid, state)
             SELECT $1, 'v' || g || '@' || $2, 'v' || g || '@' || $2, 'sub-' || $1 || '-' || g, 'subscribed'
             FROM generate_series($3::bigint, $3::bigint + $4::bigint - 1) g"
        }
        // In order, so that pks follow the numbers as with generate_series.
        Db::Sqlite(_) => {
            "WITH RECURSIVE series(g) AS (
                 SELECT $3 WHERE $4 > 0
               UNION ALL
                 SELECT g + 1 FROM series WHERE g + 1 < $3 + $4
             )
             INSERT INTO subscriptions (node_pk, jid, bare_jid, subid, state)
             SELECT $1, 'v' || g || '@' || $2, 'v' || g || '@' || $2, 'sub-' || $1 || '-' || g, 'subscribed'
             FROM series ORDER BY g"
        }
    };
    match db {
        Db::Postgres(pool) => {
            sqlx::query(sql)
                .bind(node)
                .bind(sink)
                .bind(first)
                .bind(count)
                .execute(pool)
                .await?;
            // As any bulk import should: fresh planner statistics for the new rows.
            sqlx::query("ANALYZE subscriptions").execute(pool).await?;
        }
        Db::Sqlite(pool) => {
            sqlx::query(sql)
                .bind(node)
                .bind(sink)
                .bind(first)
                .bind(count)
                .execute(pool)
                .await?;
        }
    }
    Ok(())
}

pub fn entry(title: &str) -> Element {
    format!("<entry xmlns='http://www.w3.org/2005/Atom'><title>{title}</title></entry>")
        .parse()
        .expect("entry")
}

/// Publishes item `item_id` on `node`: the item row and its job in one transaction.
/// Returns the job id.
pub async fn publish(
    db: &Db,
    node_pk: i64,
    node: &str,
    item_id: &str,
    headline: bool,
) -> anyhow::Result<i64> {
    let ids = publish_burst(db, &[(node_pk, node, item_id)], headline).await?;
    ids.first().copied().context("one job")
}

/// Publishes each `(node_pk, node, item_id)` of `items`, in order, all in one
/// transaction: the workers hear of them at once (on PostgreSQL one notification at the
/// commit), so a free worker claims them together. Returns the job ids.
pub async fn publish_burst(
    db: &Db,
    items: &[(i64, &str, &str)],
    headline: bool,
) -> anyhow::Result<Vec<i64>> {
    let mut rows = Vec::with_capacity(items.len());
    for (node_pk, node, item_id) in items {
        let payload = entry(item_id);
        let event = events::items(
            &NodeId::parse(node)?,
            vec![EventItem {
                id: ItemId::parse(item_id)?,
                publisher: None,
                payload: Some(payload.clone()),
            }],
        );
        let job = NewJob {
            node_pk: *node_pk,
            kind: JobKind::Items,
            payload_xml: event,
            headline,
            target: JobTarget::Subscribers,
        };
        rows.push((*node_pk, *item_id, String::from(&payload), job));
    }
    let mut ids = Vec::with_capacity(rows.len());
    match db {
        Db::Postgres(pool) => {
            let mut tx = pool.begin().await?;
            for (node_pk, item_id, payload, job) in &rows {
                sqlx::query("INSERT INTO items (node_pk, item_id, publisher, payload) VALUES ($1, $2, 'owner@localhost/pub', $3)")
                    .bind(node_pk)
                    .bind(item_id)
                    .bind(payload)
                    .execute(&mut *tx)
                    .await?;
                ids.push(pubsubd::store::postgres::PgStore::insert_job(&mut tx, job).await?);
            }
            tx.commit().await?;
        }
        Db::Sqlite(pool) => {
            // As the store does: the write lock first, the publish order from item_seq.
            let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
            for (node_pk, item_id, payload, job) in &rows {
                sqlx::query(
                    "INSERT INTO items (node_pk, item_id, seq, publisher, payload)
                     VALUES ($1, $2, (SELECT last_value + 1 FROM item_seq), 'owner@localhost/pub', $3)",
                )
                .bind(node_pk)
                .bind(item_id)
                .bind(payload)
                .execute(&mut *tx)
                .await?;
                sqlx::query("UPDATE item_seq SET last_value = last_value + 1")
                    .execute(&mut *tx)
                    .await?;
                ids.push(pubsubd::store::sqlite::SqliteStore::insert_job(&mut tx, job).await?);
            }
            tx.commit().await?;
        }
    }
    Ok(ids)
}

/// Queues the deletion notice of `node` (the request side marks the node deleted in
/// the same transaction).
pub async fn delete_node(db: &Db, node_pk: i64, node: &str) -> anyhow::Result<i64> {
    let job = NewJob {
        node_pk,
        kind: JobKind::Delete,
        payload_xml: events::delete(&NodeId::parse(node)?, None),
        headline: true,
        target: JobTarget::Subscribers,
    };
    // `true` is 1 to SQLite.
    const MARK: &str = "UPDATE nodes SET deleted = true WHERE pk = $1";
    Ok(match db {
        Db::Postgres(pool) => {
            let mut tx = pool.begin().await?;
            sqlx::query(MARK).bind(node_pk).execute(&mut *tx).await?;
            let id = pubsubd::store::postgres::PgStore::insert_job(&mut tx, &job).await?;
            tx.commit().await?;
            id
        }
        Db::Sqlite(pool) => {
            let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
            sqlx::query(MARK).bind(node_pk).execute(&mut *tx).await?;
            let id = pubsubd::store::sqlite::SqliteStore::insert_job(&mut tx, &job).await?;
            tx.commit().await?;
            id
        }
    })
}

// ---------------------------------------------------------------------------------
// Receiving

pub fn virtual_jid(n: i64, sink: &str) -> String {
    format!("v{n}@{sink}")
}

/// Checks that each of `count` virtual subscribers got notification `id(n)`.
pub fn assert_every_virtual_subscriber_got(
    inbox: &Inbox,
    sink: &str,
    count: i64,
    id: impl Fn(i64) -> String,
) {
    let got = inbox.snapshot();
    let missing: Vec<i64> = (0..count)
        .filter(|n| {
            !got.get(&virtual_jid(*n, sink))
                .is_some_and(|ids| ids.contains(&id(*n)))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {count} virtual subscribers missed their notification (first: {:?})",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
}

/// The value of the first sample of `name` (with its labels, if given) in a Prometheus
/// text exposition.
pub fn metric(exposition: &str, name: &str) -> Option<f64> {
    exposition
        .lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
}

/// Checks that each of `count` virtual subscribers got `job`'s notification, with the
/// id it has on either path (in a multicast group or on its own).
pub fn assert_every_virtual_subscriber_got_job(inbox: &Inbox, sink: &str, count: i64, job: i64) {
    assert_every_virtual_subscriber_got(inbox, sink, count, |_| format!("ps-{job}"));
}

pub fn duplicates(inbox: &Inbox) -> usize {
    inbox.total() - inbox.unique()
}

/// The ids of the items of a notification.
#[allow(unused_imports)]
pub use super::sink::event_item_ids as item_ids;

pub fn is_event(el: &Element) -> bool {
    el.name() == "message" && el.get_child("event", NS_EVENT).is_some()
}

pub fn subid_header(msg: &Element) -> Option<String> {
    msg.get_child("headers", NS_SHIM)
        .and_then(|h| h.get_child("header", NS_SHIM))
        .filter(|h| h.attr("name") == Some("SubID"))
        .map(Element::text)
}

/// Waits for `n` event notifications, then for stragglers; returns all of them.
pub async fn events_received(client: &mut Client, n: usize) -> anyhow::Result<Vec<Element>> {
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while got.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        let el = client
            .wait_for(is_event, left)
            .await
            .with_context(|| format!("{} got {} of {n} notifications", client.jid(), got.len()))?;
        got.push(el);
    }
    tokio::time::sleep(SETTLE).await;
    got.extend(client.drain().into_iter().filter(is_event));
    Ok(got)
}

pub async fn login(server: &XmppServer, account: &Account) -> anyhow::Result<Client> {
    Ok(Client::login(server.c2s_addr(), account).await?)
}

pub async fn user(server: &XmppServer, prefix: &str) -> anyhow::Result<(Account, Client)> {
    let account = server.create_user(prefix).await?;
    let client = login(server, &account).await?;
    Ok((account, client))
}

/// Waits until `job` has had at least `part` of its `of` subscriptions confirmed (as
/// its cursor shows) and returns the cursor; fails if the job finishes first, since
/// then nothing was interrupted.
pub async fn wait_in_progress(db: &Db, job: i64, part: i64, of: i64) -> anyhow::Result<i64> {
    let first = db.first_subscription_of_job(job).await?;
    let threshold = first + (part - 1).max(0);
    let started = Instant::now();
    let deadline = Instant::now() + FANOUT_DONE;
    loop {
        match db.cursor(job).await? {
            None => bail!("job {job} finished before the test could interrupt it"),
            Some(c) if c >= threshold => {
                eprintln!("{part} of {of} confirmed after {:.2?}", started.elapsed());
                return Ok(c);
            }
            Some(_) => {}
        }
        anyhow::ensure!(Instant::now() < deadline, "fan-out did not start");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// The fan-out process id a pubsubd logged at start (its workers' lease owners share
/// its first 32 hex digits).
pub fn process_id(log: &str) -> Option<String> {
    let value = super::logged_field(log, "fan-out engine started", "process")?;
    Some(value.chars().take(36).collect())
}

/// Whether `job` is still queued.
pub async fn pending(db: &Db, job: i64) -> anyhow::Result<bool> {
    Ok(db.cursor(job).await?.is_some())
}

/// Sends a signal to a process (SIGSTOP/SIGCONT; the testkit kills by itself).
pub fn signal(pid: u32, sig: &str) -> anyhow::Result<()> {
    let status = std::process::Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()?;
    anyhow::ensure!(status.success(), "kill -{sig} {pid} failed");
    Ok(())
}

/// Peak resident set size of a process, kB (VmHWM).
pub fn peak_rss_kb(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmHWM in /proc/PID/status")
}

// ---------------------------------------------------------------------------------

/// Makes the test database unreachable for `outage`: new connections refused, open
/// ones (pubsubd's pool and LISTEN connection) terminated.
pub async fn database_outage(store: &TestStore, outage: Duration) -> anyhow::Result<()> {
    let TestStore::Postgres(db) = store else {
        bail!("a database outage is a PostgreSQL test");
    };
    use sqlx::Connection as _;
    let admin_url = std::env::var(pubsubd_testkit::ADMIN_URL_ENV)
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let mut admin = sqlx::PgConnection::connect(&admin_url).await?;
    let name = db.name();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "ALTER DATABASE \"{name}\" ALLOW_CONNECTIONS false"
    )))
    .execute(&mut admin)
    .await?;
    sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1")
        .bind(name)
        .execute(&mut admin)
        .await?;
    tokio::time::sleep(outage).await;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "ALTER DATABASE \"{name}\" ALLOW_CONNECTIONS true"
    )))
    .execute(&mut admin)
    .await?;
    Ok(())
}
