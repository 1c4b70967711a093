//! The HTTP gateway: the XEP-0060 use cases over HTTP for programs that do not speak
//! XMPP (`[http] listen`, off by default).
//!
//! A request goes: axum router ([`routes`]) → who is asking ([`auth`]: a bearer token's
//! JID, or the anonymous requester) → the same [`Pubsub`] command an XMPP request runs
//! → JSON, XML ([`payload`]), an Atom feed ([`atom`]) or server-sent events ([`sse`]).
//! Domain errors become HTTP statuses in one function ([`errors::status`]); node
//! configuration travels as JSON ([`node_form`]).
//!
//! The gateway owns no state of its own and must not touch the store except through
//! `Pubsub` (node listing mirrors disco#items, which reads the store's listing too).
//! `docs/openapi.yaml` documents every route.
//!
//! The `[rate_limits]` of XMPP requests apply here too, with buckets of their own: every
//! request counts against its JID's `requests_per_jid` (anonymous requests against their
//! client address's), publishes and creations against `publish_*` and `create_*`; over
//! the limit is a 429.

pub mod atom;
pub mod auth;
pub mod config;
pub mod errors;
pub mod node_form;
pub mod payload;
pub mod routes;
pub mod sse;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::{broadcast, watch};

use crate::protocol::rate_limit::{RateLimiter, Rates};
use crate::pubsub::Pubsub;
use crate::store::job_events::JobEvents;
pub use config::HttpConfig;

/// What every handler sees.
#[derive(Clone)]
pub struct GatewayState {
    pub pubsub: Arc<Pubsub>,
    pub tokens: auth::Tokens,
    /// The gateway's own rate-limit buckets, at the `[rate_limits]` rates.
    pub limits: Arc<RateLimiter>,
    /// Fires when any publish commits (see [`sse`]).
    pub wake: broadcast::Sender<()>,
    /// Becomes `true` at shutdown: event streams end, so the server can stop.
    pub stop: watch::Receiver<bool>,
}

/// The running gateway: its address, and the handles that stop it.
pub struct Gateway {
    pub addr: SocketAddr,
    stop: watch::Sender<bool>,
    server: tokio::task::JoinHandle<()>,
    listener: tokio::task::JoinHandle<()>,
}

impl Gateway {
    /// Binds `cfg.listen` and serves; a bind failure is a start-up error.
    pub async fn start(
        cfg: &HttpConfig,
        pubsub: Arc<Pubsub>,
        events: JobEvents,
        rates: Rates,
    ) -> std::io::Result<Gateway> {
        let listener = tokio::net::TcpListener::bind(cfg.listen).await?;
        let addr = listener.local_addr()?;
        let (stop_tx, stop_rx) = watch::channel(false);
        let (wake, _) = broadcast::channel(sse::WAKE_CAPACITY);
        let notify = sse::spawn_listener(events, wake.clone(), stop_rx.clone());
        let state = GatewayState {
            pubsub,
            tokens: auth::Tokens::new(&cfg.tokens),
            limits: Arc::new(RateLimiter::new(rates)),
            wake,
            stop: stop_rx.clone(),
        };
        let app = routes::router(state);
        let mut stop_serving = stop_rx;
        let server = tokio::spawn(async move {
            let stop = async move {
                let _ = stop_serving.wait_for(|s| *s).await;
            };
            let app = app.into_make_service_with_connect_info::<SocketAddr>();
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(stop)
                .await
            {
                tracing::warn!(error = %e, "HTTP gateway stopped");
            }
        });
        tracing::info!(%addr, tokens = cfg.tokens.len(), "HTTP gateway listening");
        Ok(Gateway {
            addr,
            stop: stop_tx,
            server,
            listener: notify,
        })
    }

    /// Stops accepting, ends event streams, and waits for requests in flight.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.server.await;
        let _ = self.listener.await;
    }
}
