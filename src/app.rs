//! Start-up and shutdown of the whole service: connects the store, runs migrations,
//! connects to the XMPP server, starts the router and the workers, and stops them in
//! order on SIGINT/SIGTERM.
//!
//! Shutdown is one [`CancellationToken`] and one [`TaskTracker`] under one deadline
//! (`shutdown_timeout`, 25 s by default). The token's child `draining` stops the intake
//! (the XMPP readers, the HTTP gateway, feed polling); then the requests in flight are
//! answered and fan-out gives its leases back while the streams are still up (its last
//! pages need their barriers); then the token itself closes the streams, after
//! everything queued is written, and stops the background tasks, which the tracker
//! waits for. Whatever is not done by the deadline is left: the process exits, and
//! what fan-out still held is taken over by the next start or another instance.

use std::sync::Arc;

use crate::config::{Config, Database};
use crate::feeds::store::FeedStore;
use crate::protocol::Service;
use crate::router::Router;
use crate::store::claims::FanoutStore;
use crate::store::job_events::JobEvents;
use crate::store::postgres::PgStore;
use crate::store::sqlite::SqliteStore;
use crate::store::Store;
use crate::xmpp::multicast::Multicast;
use crate::xmpp::privilege::Privileges;
use crate::xmpp::queries::Queries;
use crate::xmpp::{ConnectionState, Outbound, Supervisor};
use crate::{shutdown, store::StoreError, xmpp::ConnectError};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The part of `shutdown_timeout` kept for closing the streams after the intake has
/// drained and fan-out has stopped: writing what is queued and the closing footer takes
/// well under a second on a live connection.
const CLOSE_SHARE: u32 = 5;

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("{file}: {message}")]
    Config { file: String, message: String },
    #[error("connections = {of}: connection {n} was refused ({source}); the server may accept only one connection per component (Prosody does), set connections = 1")]
    ExtraConnection {
        n: usize,
        of: usize,
        source: ConnectError,
    },
    #[error("cannot listen on http.listen {addr}: {source}")]
    HttpListen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot listen on metrics_listen {addr}: {source}")]
    MetricsListen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
}

/// Applies migrations and exits.
pub async fn migrate(database: &Database) -> Result<(), StoreError> {
    open_store(database, 2, None, Opener::Service).await?;
    tracing::info!("migrations applied");
    Ok(())
}

/// Who opens the store, which matters for SQLite: a file serves one service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opener {
    /// `pubsubd run` or `migrate`: takes the SQLite file's instance lock.
    Service,
    /// A short-lived admin command, which may run beside the service.
    Admin,
}

/// The opened store, with what the edges (HTTP gateway, feeds) need of its backend.
pub struct OpenStore {
    pub store: Arc<dyn Store>,
    /// The store as the fan-out engine sees it (every backend has one); on PostgreSQL
    /// with its own pool when asked for.
    pub fanout: Arc<dyn FanoutStore>,
    /// The fan-out store on the requests' pool, for presence stanzas: they arrive with
    /// the requests and must not take the workers' connections.
    pub presence: Arc<dyn FanoutStore>,
    /// Commits that queued jobs (every publish), for the gateway's event streams.
    pub job_events: JobEvents,
    /// The feed tables, for feed ingestion and `pubsubd feed`.
    pub feeds: FeedStore,
    /// Whether the store serves one instance only (SQLite).
    pub single_instance: bool,
}

/// Opens the configured backend with a pool of `pool` connections and applies its
/// pending migrations. On PostgreSQL, `fanout_pool` gives the fan-out engine a pool of
/// its own (`None`: it shares `pool`); SQLite always shares its one pool.
pub async fn open_store(
    database: &Database,
    pool: u32,
    fanout_pool: Option<u32>,
    opener: Opener,
) -> Result<OpenStore, StoreError> {
    match database {
        Database::Postgres(url) => {
            let store = PgStore::connect(url, pool).await?;
            store.migrate().await?;
            // The engine's claims are tied to this process's liveness session, so that
            // its death frees them at once.
            let fanout: Arc<dyn FanoutStore> = match fanout_pool {
                Some(n) => Arc::new(store.fanout_sibling(n).with_liveness().await?),
                None => Arc::new(store.clone()),
            };
            let store = Arc::new(store);
            Ok(OpenStore {
                fanout,
                presence: store.clone(),
                feeds: FeedStore::postgres(store.as_ref().clone()),
                job_events: store.job_events(),
                store,
                single_instance: false,
            })
        }
        Database::Sqlite(path) => {
            let store = match opener {
                Opener::Service => SqliteStore::open(path, pool).await?,
                Opener::Admin => SqliteStore::open_beside_service(path, pool).await?,
            };
            store.migrate().await?;
            if opener == Opener::Service {
                let freed = store.take_over_leases().await?;
                if freed > 0 {
                    tracing::info!(
                        jobs = freed,
                        "took over the fan-out jobs a previous process left leased"
                    );
                }
                tracing::info!(
                    file = %path.display(),
                    "storing data in SQLite: one pubsubd instance only; use PostgreSQL to run several"
                );
            }
            let job_events = store.job_events();
            let feeds = FeedStore::sqlite(store.clone());
            let store = Arc::new(store);
            Ok(OpenStore {
                fanout: store.clone(),
                presence: store.clone(),
                job_events,
                store,
                feeds,
                single_instance: true,
            })
        }
    }
}

/// Runs the service until SIGINT/SIGTERM.
pub async fn run(cfg: Config) -> Result<(), StartError> {
    // Before anything can say "connected": a SIGTERM from then on is a clean shutdown.
    let signals = shutdown::listen();
    tracing::info!(jid = %cfg.xmpp.jid, server = %cfg.xmpp.server, "starting pubsubd");
    let (policy, rates) = (cfg.policy.clone(), cfg.rates.clone());
    let metrics_handle = cfg.metrics_listen.and_then(|_| crate::metrics::install());
    let OpenStore {
        store,
        fanout: fanout_store,
        presence: presence_store,
        job_events,
        feeds,
        single_instance,
    } = open_store(
        &cfg.database,
        cfg.db_pool,
        Some(cfg.fanout.db_pool),
        Opener::Service,
    )
    .await?;

    let identity = crate::xmpp::stranger::StoreIdentity {
        tag: store.store_tag().await?,
        single_instance,
    };
    let store_for_retention = store.clone();
    // One outgoing queue per component connection. Answers, presence and admin traffic
    // use the first; the fan-out workers are spread over all of them.
    let (outs, queues): (Vec<Outbound>, Vec<_>) = (0..cfg.xmpp.connections)
        .map(|_| Outbound::channel(cfg.xmpp.outgoing_queue))
        .unzip();
    let out = outs[0].clone();
    let out_for_admin = out.clone();
    let out_for_discovery = out.clone();
    let outs_for_fanout = outs;
    let presence =
        crate::fanout::presence::Presence::new(presence_store, out.clone(), cfg.xmpp.jid.clone());
    let queries = Arc::new(Queries::default());
    let privileges = Arc::new(Privileges::default());
    let rosters = Arc::new(crate::pubsub::rosters::Rosters::new(
        Arc::new(ServerRosters {
            queries: queries.clone(),
            privileges: privileges.clone(),
            out: out.clone(),
            own: cfg.xmpp.jid.clone(),
        }),
        crate::pubsub::rosters::CAPACITY,
        crate::pubsub::rosters::FRESH_FOR,
    ));
    let pubsub = Arc::new(crate::pubsub::Pubsub {
        jid: cfg.xmpp.jid.clone(),
        store,
        policy,
        rosters,
    });
    let pubsub_for_edges = pubsub.clone();
    let service = Arc::new(Service {
        jid: cfg.xmpp.jid.clone(),
        pubsub,
        out,
        limits: crate::protocol::rate_limit::RateLimiter::new(rates.clone()),
        presence: Some(presence),
    });
    let router = Arc::new(Router::start(service, cfg.request_handlers));
    // Cancelling `stop` closes the streams and stops everything; its child `draining`,
    // cancelled first, only stops the intake.
    let stop = CancellationToken::new();
    let draining = stop.child_token();
    let tracker = TaskTracker::new();
    let multicast = cfg.xmpp.multicast.as_ref().map(|m| {
        Arc::new(match &m.jid {
            Some(jid) => Multicast::new(jid.clone(), m.limit),
            None => Multicast::discovered(m.limit),
        })
    });
    // Subscriptions the owners' rosters no longer grant are taken back (presence and
    // roster access models).
    tracker.spawn(crate::pubsub::revocation::run(
        pubsub_for_edges.clone(),
        draining.clone(),
    ));
    if let Some(m) = multicast.as_ref().filter(|m| m.is_discovered()) {
        tracker.spawn(crate::xmpp::discovery::run(
            m.clone(),
            queries.clone(),
            out_for_discovery,
            cfg.xmpp.jid.clone(),
            stop.clone(),
        ));
    }
    let supervisors: Vec<_> = queues
        .into_iter()
        .map(|queue| {
            Supervisor::new(
                cfg.xmpp.server.to_string(),
                cfg.xmpp.jid.clone(),
                cfg.xmpp.secret.clone(),
                router.clone(),
                queue,
                draining.clone(),
            )
            .with_multicast(multicast.clone())
            .with_queries(queries.clone())
            .with_privileges(privileges.clone())
            .with_identity(identity)
            .with_limits(stanza_reader::Limits {
                max_stanza_bytes: cfg.xmpp.max_stanza_size,
                ..stanza_reader::Limits::default()
            })
        })
        .collect();
    let mut firsts = Vec::with_capacity(supervisors.len());
    for (k, supervisor) in supervisors.iter().enumerate() {
        match supervisor.connect_first().await {
            Ok(c) => firsts.push(c),
            // Prosody, for one, accepts a single connection per component.
            Err(e) if k > 0 => {
                return Err(StartError::ExtraConnection {
                    n: k + 1,
                    of: cfg.xmpp.connections,
                    source: e,
                })
            }
            Err(e) => return Err(e.into()),
        }
    }
    let connection_state = ConnectionState::all(supervisors.iter().map(|s| s.state()));
    let fanout_links: Vec<crate::fanout::Link> = outs_for_fanout
        .into_iter()
        .zip(supervisors.iter().map(|s| s.state()))
        .enumerate()
        .map(|(index, (out, up))| crate::fanout::Link::new(out, up, index, cfg.fanout.latency))
        .collect();

    if let Some(addr) = cfg.metrics_listen {
        let status = crate::status::StatusPage::start(
            crate::status::Sources {
                jid: cfg.xmpp.jid.to_string(),
                store_name: match cfg.database {
                    Database::Postgres(_) => "PostgreSQL",
                    Database::Sqlite(_) => "SQLite",
                },
                store: store_for_retention.clone(),
                connection: connection_state.clone(),
                multicast: multicast.clone(),
                privileges: privileges.clone(),
                feeds: Some(feeds.clone()),
                metrics: metrics_handle.clone(),
            },
            stop.clone(),
        );
        let state = crate::status::http::OpsState {
            store: store_for_retention.clone(),
            connection: connection_state,
            out: out_for_admin,
            metrics: metrics_handle,
            status,
        };
        crate::status::http::serve(addr, state, stop.clone())
            .await
            .map_err(|source| StartError::MetricsListen { addr, source })?;
    }
    let gateway = match &cfg.http {
        Some(http) => Some(
            crate::gateway::Gateway::start(http, pubsub_for_edges.clone(), job_events, rates)
                .await
                .map_err(|source| StartError::HttpListen {
                    addr: http.listen,
                    source,
                })?,
        ),
        None => None,
    };
    let feeds = crate::feeds::start(&cfg.feeds, pubsub_for_edges, feeds, draining.clone())
        .await
        .map_err(|message| StartError::Config {
            file: cfg.source.as_ref().map_or_else(
                || "the configuration".to_string(),
                |p| p.display().to_string(),
            ),
            message,
        })?;
    for (supervisor, first) in supervisors.into_iter().zip(firsts) {
        // A connection that ends by itself (its queue closed) shuts the service down.
        let (stop, ended) = (stop.clone(), draining.clone());
        tracker.spawn(async move {
            supervisor.run(first, stop).await;
            ended.cancel();
        });
    }
    let fanout = crate::fanout::Fanout::start(
        fanout_store,
        fanout_links,
        &cfg.xmpp.jid,
        crate::fanout::Settings::new(&cfg.fanout, multicast),
    );
    tracker.spawn(crate::retention::run(store_for_retention, stop.clone()));
    tokio::select! {
        _ = signals.recv() => {}
        _ = draining.cancelled() => tracing::warn!("a component connection ended; shutting down"),
    }
    let deadline = tokio::time::Instant::now() + cfg.shutdown_timeout;
    let close_by = deadline - cfg.shutdown_timeout / CLOSE_SHARE;
    draining.cancel();
    let drain = async {
        // The intake stops: HTTP, feeds (the XMPP readers stopped with `draining`).
        if let Some(g) = gateway {
            g.stop().await;
        }
        if let Some(f) = feeds {
            let _ = f.await;
        }
        // Requests in flight are answered; fan-out stops while the streams are up.
        router.idle().await;
        fanout.stop().await;
    };
    if tokio::time::timeout_at(close_by, drain).await.is_err() {
        tracing::warn!(
            timeout_secs = cfg.shutdown_timeout.as_secs(),
            "requests or fan-out still running at shutdown_timeout; closing anyway (leases left are taken over by the next start or another instance)"
        );
    }
    // The streams close after writing what is queued; background tasks stop.
    stop.cancel();
    tracker.close();
    if tokio::time::timeout_at(deadline, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("connections did not close within shutdown_timeout; exiting anyway");
    }
    tracing::info!("pubsubd stopped");
    Ok(())
}

/// Users' rosters read through the server with the XEP-0356 roster privilege, for the
/// `presence` and `roster` access models.
struct ServerRosters {
    queries: Arc<Queries>,
    privileges: Arc<Privileges>,
    out: Outbound,
    own: xmpp_parsers::jid::BareJid,
}

#[async_trait::async_trait]
impl crate::pubsub::rosters::RosterSource for ServerRosters {
    fn readable(&self, domain: &str) -> bool {
        crate::xmpp::roster::readable(&self.privileges, domain)
    }

    async fn read(
        &self,
        owner: &xmpp_parsers::jid::BareJid,
    ) -> Result<crate::domain::roster::OwnerRoster, crate::pubsub::rosters::RosterReadError> {
        use crate::domain::roster::OwnerRoster;
        use crate::pubsub::rosters::RosterReadError;
        use crate::xmpp::queries::QueryError;
        use crate::xmpp::roster::RosterError;
        let read =
            crate::xmpp::roster::read(&self.queries, &self.privileges, &self.out, &self.own, owner)
                .await
                .map_err(|e| match e {
                    RosterError::NotGranted(domain) => RosterReadError::NotGranted(domain),
                    RosterError::Query(QueryError::Timeout(t)) => RosterReadError::Timeout(t),
                    RosterError::Query(QueryError::Refused(condition)) => {
                        RosterReadError::Refused { condition }
                    }
                    RosterError::Query(QueryError::Closed) => RosterReadError::NoStream,
                    RosterError::NoRoster | RosterError::NotARoster { .. } => {
                        RosterReadError::NoRoster
                    }
                })?;
        if read.skipped > 0 {
            tracing::warn!(%owner, skipped = read.skipped, "roster items that do not parse were skipped");
        }
        OwnerRoster::from_items(read.items).map_err(|too_large| RosterReadError::TooLarge {
            contacts: too_large.contacts,
        })
    }
}
