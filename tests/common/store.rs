//! What the store tests share (`tests/store_backends.rs`, `tests/store_fanout.rs`):
//! a fresh store of each backend, and small builders of nodes, items, subscriptions,
//! jobs and lease owners.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use super::job;
use pubsubd::domain::{ItemId, NodeConfig, NodeId, SubId, SubscribeOptions, SubscriptionState};
use pubsubd::store::claims::{ClaimLimits, FanoutStore, LeaseOwner};
use pubsubd::store::jobs::{JobKind, JobTarget, NewJob};
use pubsubd::store::postgres::PgStore;
use pubsubd::store::sqlite::SqliteStore;
use pubsubd::store::{ItemsQuery, NewItem, Store};
use pubsubd_testkit::{TestDb, TestSqlite};
use xmpp_parsers::jid::BareJid;

/// One backend under test, with what keeps its database alive.
pub struct Backend {
    pub name: &'static str,
    pub store: Arc<dyn Store>,
    /// The same store, as the fan-out engine sees it.
    pub fanout: Arc<dyn FanoutStore>,
    pub _pg: Option<TestDb>,
    pub _sqlite: Option<TestSqlite>,
}

pub async fn backends() -> anyhow::Result<Vec<Backend>> {
    let db = TestDb::create().await?;
    let pg = PgStore::connect(db.url(), 4).await?;
    pg.migrate().await?;
    let file = TestSqlite::create()?;
    let sqlite = SqliteStore::open(file.path(), 4).await?;
    sqlite.migrate().await?;
    let pg = Arc::new(pg);
    let sqlite = Arc::new(sqlite);
    Ok(vec![
        Backend {
            name: "postgres",
            fanout: pg.clone(),
            store: pg,
            _pg: Some(db),
            _sqlite: None,
        },
        Backend {
            name: "sqlite",
            fanout: sqlite.clone(),
            store: sqlite,
            _pg: None,
            _sqlite: Some(file),
        },
    ])
}

pub async fn fresh_sqlite() -> anyhow::Result<(SqliteStore, TestSqlite)> {
    let file = TestSqlite::create()?;
    let store = SqliteStore::open(file.path(), 4).await?;
    store.migrate().await?;
    Ok((store, file))
}

pub fn jid(s: &str) -> BareJid {
    s.parse().expect("valid JID")
}

pub fn item(id: &str) -> NewItem {
    NewItem {
        id: ItemId::parse(id).expect("valid id"),
        publisher: "owner@example.org/desk".into(),
        payload: Some(format!("<entry xmlns='urn:test'>{id}</entry>")),
    }
}

pub async fn node(store: &dyn Store, name: &str, config: NodeConfig) -> anyhow::Result<i64> {
    let created = store
        .create_node(
            &NodeId::parse(name).expect("valid name"),
            &config,
            &jid("owner@example.org"),
            &Default::default(),
        )
        .await?;
    Ok(created.map_err(|r| anyhow::anyhow!("{r:?}"))?.pk)
}

pub async fn latest_ids(store: &dyn Store, node_pk: i64) -> anyhow::Result<Vec<String>> {
    let page = store
        .items(node_pk, &ItemsQuery::Latest { max: None })
        .await?;
    Ok(page
        .items
        .iter()
        .map(|i| i.id.as_str().to_owned())
        .collect())
}

pub async fn pending_jobs(store: &dyn Store) -> anyhow::Result<u64> {
    Ok(store.stats().await?.jobs_pending)
}

// ---------------------------------------------------------------------------------
// The fan-out engine's store

pub const LEASE: Duration = Duration::from_secs(30);
pub const LIMITS: ClaimLimits = ClaimLimits {
    max_jobs: 256,
    max_bytes: 1024 * 1024,
    max_nodes: 16,
};

/// Worker `worker` of the process numbered `process` (kept in the high bits: the low
/// 16 are the worker's).
pub fn owner(process: u128, worker: usize) -> LeaseOwner {
    LeaseOwner::for_worker(uuid::Uuid::from_u128(process << 64), worker)
}

pub fn direct(node_pk: i64, to: &str) -> NewJob {
    NewJob {
        target: JobTarget::Jid(to.into()),
        kind: JobKind::Direct,
        ..job(node_pk)
    }
}

pub async fn sub(
    store: &dyn Store,
    node_pk: i64,
    who: &str,
    opts: SubscribeOptions,
) -> anyhow::Result<i64> {
    let (rec, _) = store
        .subscribe(
            node_pk,
            &who.parse()?,
            &SubId::generate(),
            SubscriptionState::Subscribed,
            &opts,
            vec![],
        )
        .await?;
    Ok(rec.pk)
}

/// Subscribes `u0@example.org` … `u<count - 1>@example.org` to the node.
pub async fn subscribe_users(store: &dyn Store, node_pk: i64, count: usize) -> anyhow::Result<()> {
    for n in 0..count {
        sub(
            store,
            node_pk,
            &format!("u{n}@example.org"),
            SubscribeOptions::default(),
        )
        .await?;
    }
    Ok(())
}
