//! The operator's status page, served at `/` of `metrics_listen` by
//! [`http`]: who this service is, its component connections, the fan-out
//! backlog and rate, the largest nodes, feeds, and the instances sharing the store.
//!
//! It reads the store through [`crate::store::ServiceStore`] on the general pool (never
//! the fan-out workers' pool), at most once per [`PAGE_TTL`] whatever the number of
//! browsers: concurrent requests share one refresh and its rendered page. The node
//! ranking counts whole tables, so it is read once per [`RANKING_TTL`]. Counters come
//! from the metrics recorder it is handed, not from counters of its own.
//!
//! - [`snapshot`]: the page's data; [`render`]: that data as HTML, a pure function.
//! - [`exposition`]: reading our own Prometheus exposition, the notification rate.
//!
//! It must not change anything: no write, no lock beyond its own cache.

pub mod exposition;
pub mod http;
pub mod render;
pub mod snapshot;

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use metrics_exporter_prometheus::PrometheusHandle;
use tokio_util::sync::CancellationToken;

use crate::feeds::store::FeedStore;
use crate::metrics as m;
use crate::store::status::NodeRanking;
use crate::store::{Store, StoreError};
use crate::xmpp::multicast::Multicast;
use crate::xmpp::ConnectionState;
use exposition::RateWindow;
use snapshot::{Connection, FeedView, MulticastView, Reading, Snapshot};

/// How long one gathered page serves every request: a few browsers refreshing every
/// [`REFRESH`] cost one query set per two seconds, and the page is never older than that.
pub const PAGE_TTL: Duration = Duration::from_secs(2);
/// How often the browser reloads the page: often enough to watch a fan-out drain,
/// rarely enough that a forgotten tab costs nothing.
pub const REFRESH: Duration = Duration::from_secs(5);
/// How long the largest-nodes ranking is reused: it counts every subscription and item
/// by index, which takes tens of milliseconds per million rows, and moves slowly.
pub const RANKING_TTL: Duration = Duration::from_secs(30);
/// Rows in each list (nodes, feeds, instances): a page, not a report.
pub const LIST_LIMIT: u32 = 10;
/// Each store read gives up after this, so a stuck database shows as "unavailable"
/// instead of a page that never loads (the readiness probe waits as long).
const STORE_READ_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the notification counter is sampled for the rate, and the window the rate
/// is over ("notifications per second over the last minute").
const RATE_SAMPLE_EVERY: Duration = Duration::from_secs(5);
const RATE_WINDOW: Duration = Duration::from_secs(60);

/// What the page is built from, handed over at start-up.
pub struct Sources {
    pub jid: String,
    /// `PostgreSQL` or `SQLite`.
    pub store_name: &'static str,
    /// The store on its general pool.
    pub store: Arc<dyn Store>,
    pub connection: ConnectionState,
    pub multicast: Option<Arc<Multicast>>,
    /// What the server grants pubsubd (XEP-0356).
    pub privileges: Arc<crate::xmpp::privilege::Privileges>,
    /// The feed tables; `None` where feed ingestion is off.
    pub feeds: Option<FeedStore>,
    pub metrics: Option<PrometheusHandle>,
}

/// Renders the page from a cache shared by every request.
pub struct StatusPage {
    sources: Sources,
    rate: Arc<Mutex<RateWindow>>,
    cache: tokio::sync::Mutex<Cache>,
}

#[derive(Default)]
struct Cache {
    page: Option<(Instant, Arc<str>)>,
    ranking: Option<(Instant, chrono::DateTime<chrono::Utc>, Reading<NodeRanking>)>,
}

impl StatusPage {
    /// A page over `sources`; samples the notification counter until `shutdown`.
    pub fn start(sources: Sources, shutdown: CancellationToken) -> Arc<StatusPage> {
        let rate = Arc::new(Mutex::new(RateWindow::new(RATE_WINDOW)));
        if let Some(handle) = sources.metrics.clone() {
            tokio::spawn(sample_rate(handle, rate.clone(), shutdown));
        }
        Arc::new(StatusPage {
            sources,
            rate,
            cache: tokio::sync::Mutex::new(Cache::default()),
        })
    }

    /// The page, gathered afresh if the cached one is older than [`PAGE_TTL`]. Requests
    /// arriving during a refresh wait for it and share its result.
    pub async fn html(&self) -> Arc<str> {
        let mut cache = self.cache.lock().await;
        if let Some((at, page)) = &cache.page {
            if at.elapsed() < PAGE_TTL {
                return page.clone();
            }
        }
        let snapshot = self.gather(&mut cache).await;
        let page: Arc<str> = render::page(&snapshot).into();
        cache.page = Some((Instant::now(), page.clone()));
        page
    }

    async fn gather(&self, cache: &mut Cache) -> Snapshot {
        let s = &self.sources;
        let exposition = s.metrics.as_ref().map(PrometheusHandle::render);
        let text = exposition.as_deref();
        let counter = |name: &str| {
            text.and_then(|t| exposition::total(t, name))
                .map(|v| v as u64)
        };
        let connections = s
            .connection
            .each()
            .into_iter()
            .enumerate()
            .map(|(index, up)| Connection {
                index,
                up,
                notifications: text.map(|t| sent_on(t, index)),
            })
            .collect();
        let backlog = read(s.store.status_backlog(LIST_LIMIT)).await;
        // A failed ranking (e.g. timed out on a huge table) is not tried again sooner
        // than a successful one: retrying at every refresh would keep the database busy.
        let fresh = cache
            .ranking
            .as_ref()
            .is_some_and(|(at, _, _)| at.elapsed() < RANKING_TTL);
        if !fresh {
            let ranking = read(s.store.largest_nodes(LIST_LIMIT)).await;
            cache.ranking = Some((Instant::now(), chrono::Utc::now(), ranking));
        }
        let (largest_at, largest) = match &cache.ranking {
            Some((_, at, ranking)) => (Some(*at), ranking.clone()),
            None => (None, Reading::Off("not counted yet")),
        };
        let feeds = match &s.feeds {
            None => Reading::Off("feed ingestion is off"),
            Some(feeds) => match read(feeds.most_failing(LIST_LIMIT)).await {
                Reading::Got(rows) => Reading::Got(
                    rows.into_iter()
                        .map(|f| FeedView {
                            url: snapshot::public_url(&f.url),
                            node: f.node,
                            last_status: f
                                .last_status
                                .map(|status| snapshot::public_status(&status, &f.url)),
                            failures: f.failures,
                            next_poll_at: f.next_poll_at,
                            last_polled_at: f.last_polled_at,
                        })
                        .collect(),
                ),
                Reading::Failed(why) => Reading::Failed(why),
                Reading::Off(why) => Reading::Off(why),
            },
        };
        Snapshot {
            jid: s.jid.clone(),
            version: env!("CARGO_PKG_VERSION"),
            store: s.store_name,
            taken_at: chrono::Utc::now(),
            refresh_secs: REFRESH.as_secs(),
            connections,
            reconnects: counter(m::RECONNECTS),
            disconnects: counter(m::COMPONENT_DISCONNECTS),
            stranger: crate::xmpp::stranger::sharing_with_stranger(),
            multicast: s.multicast.as_ref().map(|mc| MulticastView {
                jid: mc.jid().map(|j| j.to_string()),
                state: mc.state_name(),
                limit: mc.limit(),
                bounces: mc.bounces(),
            }),
            privileges: s
                .privileges
                .all()
                .into_iter()
                .map(|(domain, grants)| (domain, grants.describe()))
                .collect(),
            backlog,
            notifications_per_second: self.rate.lock().ok().and_then(|w| w.per_second()),
            largest,
            largest_at,
            feeds,
        }
    }
}

/// Notifications confirmed on connection `index` (0 before its first).
fn sent_on(text: &str, index: usize) -> u64 {
    let index = index.to_string();
    exposition::samples(text, m::NOTIFICATIONS_SENT)
        .filter(|(labels, _)| exposition::label(labels, "connection") == Some(index.as_str()))
        .map(|(_, v)| v as u64)
        .sum()
}

/// One store read, bounded by [`STORE_READ_TIMEOUT`].
async fn read<T>(query: impl Future<Output = Result<T, StoreError>>) -> Reading<T> {
    match tokio::time::timeout(STORE_READ_TIMEOUT, query).await {
        Ok(Ok(got)) => Reading::Got(got),
        Ok(Err(e)) => Reading::Failed(e.to_string()),
        Err(_) => Reading::Failed(format!(
            "no answer within {} s",
            STORE_READ_TIMEOUT.as_secs()
        )),
    }
}

/// Samples the notification counter every [`RATE_SAMPLE_EVERY`] until shutdown.
async fn sample_rate(
    handle: PrometheusHandle,
    rate: Arc<Mutex<RateWindow>>,
    shutdown: CancellationToken,
) {
    let mut every = tokio::time::interval(RATE_SAMPLE_EVERY);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = every.tick() => {}
        }
        // Before the first notification the series does not exist: that is a rate of 0.
        let total = exposition::total(&handle.render(), m::NOTIFICATIONS_SENT).unwrap_or(0.0);
        if let Ok(mut window) = rate.lock() {
            window.record(Instant::now(), total);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::SqliteStore;

    async fn page_on_a_fresh_sqlite_file() -> anyhow::Result<(Arc<StatusPage>, std::path::PathBuf)>
    {
        let path = std::env::temp_dir().join(format!(
            "pubsubd-status-test-{}.sqlite3",
            uuid::Uuid::new_v4().simple()
        ));
        let store = SqliteStore::open(&path, 2).await?;
        store.migrate().await?;
        let shutdown = CancellationToken::new();
        let page = StatusPage::start(
            Sources {
                jid: "pubsub.example.org".into(),
                store_name: "SQLite",
                store: Arc::new(store),
                connection: ConnectionState::all(std::iter::empty()),
                multicast: None,
                privileges: Arc::default(),
                feeds: None,
                metrics: None,
            },
            shutdown,
        );
        Ok((page, path))
    }

    fn remove(path: &std::path::Path) {
        for suffix in ["", "-wal", "-shm", ".lock"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    }

    #[tokio::test]
    async fn concurrent_requests_share_one_gathered_page_until_it_expires() -> anyhow::Result<()> {
        let (page, path) = page_on_a_fresh_sqlite_file().await?;
        let pages = futures::future::join_all((0..8).map(|_| page.html())).await;
        assert!(
            pages.iter().all(|p| Arc::ptr_eq(p, &pages[0])),
            "gathered more than once"
        );
        assert!(
            pages[0].contains("<td id=\"pending\" class=\"n\">0</td>"),
            "{}",
            pages[0]
        );
        assert!(pages[0].contains("feed ingestion is off"));
        tokio::time::sleep(PAGE_TTL + Duration::from_millis(100)).await;
        let later = page.html().await;
        assert!(
            !Arc::ptr_eq(&later, &pages[0]),
            "an expired page was served again"
        );
        remove(&path);
        Ok(())
    }
}
