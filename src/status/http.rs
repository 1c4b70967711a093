//! The operator's HTTP port: the status page on `/` ([`crate::status`]), Prometheus
//! metrics on `/metrics`, liveness on `/healthz`, readiness on `/readyz` (connected to
//! the XMPP server AND the database answers).
//!
//! Off unless `metrics_listen` is configured. Gauges that describe shared state (the
//! fan-out backlog) are read from the store at scrape time, not tracked in memory.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio_util::sync::CancellationToken;

use super::StatusPage;
use crate::metrics as m;
use crate::store::Store;
use crate::xmpp::{ConnectionState, Outbound};

/// A scrape or readiness probe must not hang on a stuck database.
const STORE_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// What the handlers look at.
#[derive(Clone)]
pub struct OpsState {
    pub store: Arc<dyn Store>,
    pub connection: ConnectionState,
    pub out: Outbound,
    pub metrics: Option<PrometheusHandle>,
    pub status: Arc<StatusPage>,
}

/// The page has no script and loads nothing: a policy that forbids both keeps it so
/// even if an escaping bug let markup through.
const STATUS_PAGE_POLICY: &str = "default-src 'none'; style-src 'unsafe-inline'";

/// Binds `addr` and serves until shutdown. A bind failure is reported to the caller
/// (it is a configuration error).
pub async fn serve(
    addr: SocketAddr,
    state: OpsState,
    shutdown: CancellationToken,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "metrics and health endpoints listening");
    let app = Router::new()
        .route("/", get(status_page))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(state);
    Ok(tokio::spawn(async move {
        let stop = async move { shutdown.cancelled().await };
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(stop)
            .await
        {
            tracing::warn!(error = %e, "metrics endpoint stopped");
        }
    }))
}

async fn status_page(State(s): State<OpsState>) -> impl IntoResponse {
    let page = s.status.html().await;
    (
        [
            (header::CACHE_CONTROL, "no-store"),
            (header::CONTENT_SECURITY_POLICY, STATUS_PAGE_POLICY),
        ],
        Html(page.to_string()),
    )
}

async fn store_up(store: &dyn Store) -> bool {
    let started = Instant::now();
    let up = matches!(
        tokio::time::timeout(STORE_CHECK_TIMEOUT, store.health()).await,
        Ok(Ok(()))
    );
    metrics::histogram!(m::STORE_PING_SECONDS).record(started.elapsed().as_secs_f64());
    metrics::gauge!(m::STORE_UP).set(if up { 1.0 } else { 0.0 });
    up
}

/// Whether a stranger shares the component JID now, kept in its gauge too.
fn stranger_seen() -> bool {
    let stranger = crate::xmpp::stranger::sharing_with_stranger();
    metrics::gauge!(m::SHARED_WITH_STRANGER).set(if stranger { 1.0 } else { 0.0 });
    stranger
}

async fn readyz(State(s): State<OpsState>) -> (StatusCode, String) {
    let xmpp = s.connection.is_connected();
    let db = store_up(s.store.as_ref()).await;
    let stranger = stranger_seen();
    let status = if xmpp && db && !stranger {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let jid = if stranger {
        "shared with a program that does not use this store (see the log)"
    } else {
        "not shared with strangers"
    };
    (
        status,
        format!("xmpp: {}\ndatabase: {}\njid: {jid}\n", up(xmpp), up(db)),
    )
}

fn up(b: bool) -> &'static str {
    if b {
        "up"
    } else {
        "down"
    }
}

async fn metrics(State(s): State<OpsState>) -> (StatusCode, String) {
    let stranger = stranger_seen();
    let Some(handle) = &s.metrics else {
        return (
            StatusCode::NOT_FOUND,
            "metrics recorder not installed\n".into(),
        );
    };
    metrics::gauge!(m::CONNECTED).set(s.connection.connected() as f64);
    metrics::gauge!(m::OUTGOING_QUEUE).set(s.out.queued() as f64);
    let db = store_up(s.store.as_ref()).await;
    let ready = s.connection.is_connected() && db && !stranger;
    metrics::gauge!(m::READY).set(if ready { 1.0 } else { 0.0 });
    if db {
        if let Ok(Ok((pending, age, instances))) =
            tokio::time::timeout(STORE_CHECK_TIMEOUT, s.store.fanout_backlog()).await
        {
            metrics::gauge!(m::JOBS_PENDING).set(pending as f64);
            metrics::gauge!(m::OLDEST_JOB_AGE).set(age);
            metrics::gauge!(m::INSTANCES_ACTIVE).set(instances as f64);
        }
    }
    (StatusCode::OK, handle.render())
}
