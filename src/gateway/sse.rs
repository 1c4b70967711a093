//! `GET /nodes/{node}/events`: a node's new items as server-sent events.
//!
//! Each event is `event: item`, `id: <seq>` (the item's place in the global publish
//! order, see [`crate::store::item_seq`]) and one line of JSON data (the item as
//! listed by `GET /nodes/{node}/items`, plus `seq`). A client that reconnects with
//! `Last-Event-ID` first receives every stored item published after that event; one
//! without it receives items published from now on.
//!
//! Live delivery: one task per process listens for committed jobs
//! ([`JobEvents`]: PostgreSQL's NOTIFY from any pubsubd attached to the database, or
//! the SQLite store's in-process signal) and wakes every stream, which then reads the items after its cursor through
//! [`Pubsub::items_since`] — the same permission check as retrieving items, on every
//! read, so a reader who loses access is disconnected. A missed notification only
//! delays an event until the next fallback poll.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use tokio::sync::{broadcast, watch};

use super::auth::Caller;
use super::errors::ApiError;
use super::payload::item_json;
use super::GatewayState;
use crate::domain::{DomainError, NodeId};
use crate::pubsub::Requester;
use crate::store::claims::JobListener as _;
use crate::store::job_events::JobEvents;
use crate::store::SeqItem;

/// Items read per query: bounds one read's memory; a stream that is behind reads again
/// at once.
const BATCH: u32 = 100;
/// Streams read even without a notification this often, in case one was missed (the
/// listener reconnecting, say).
const FALLBACK_POLL: Duration = Duration::from_secs(30);
/// A comment line this often keeps proxies from closing an idle stream.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Wait between attempts to (re)connect the listener.
const LISTEN_RETRY: Duration = Duration::from_secs(2);
/// Wake-ups buffered per stream; a stream that falls behind just reads once more.
pub const WAKE_CAPACITY: usize = 16;
/// Least time between two reads of one stream. Every publish in the service wakes
/// every stream (the notification does not say which node), so this bounds the reads
/// a busy service costs: at most ten per second per stream, whatever the publish rate,
/// for at most this much added latency.
const MIN_READ_SPACING: Duration = Duration::from_millis(100);

/// Listens for committed publishes and wakes every stream; runs until `stop`.
pub fn spawn_listener(
    events: JobEvents,
    wake: broadcast::Sender<()>,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let mut listener = match events.listen().await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "event streams: cannot LISTEN, retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(LISTEN_RETRY) => continue,
                        _ = stop.changed() => return,
                    }
                }
            };
            loop {
                tokio::select! {
                    n = listener.wait() => match n {
                        Ok(_) => { let _ = wake.send(()); }
                        Err(e) => {
                            tracing::warn!(error = %e, "event streams: listener lost, reconnecting");
                            break;
                        }
                    },
                    _ = stop.changed() => return,
                }
            }
        }
    })
}

/// What a stream keeps between events.
struct Follow {
    state: GatewayState,
    caller: Caller,
    node: NodeId,
    cursor: i64,
    pending: VecDeque<SeqItem>,
    /// The last read was a full batch: read again without waiting.
    behind: bool,
    wake: broadcast::Receiver<()>,
    stop: watch::Receiver<bool>,
    done: bool,
    last_read: tokio::time::Instant,
}

/// The handler.
pub async fn events(
    State(state): State<GatewayState>,
    caller: Caller,
    Path(node): Path<String>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let node = NodeId::parse(&node).map_err(|e| caller.fail(e))?;
    let last = match headers.get("last-event-id") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<i64>().ok())
                .ok_or_else(|| {
                    ApiError::bad_request("Last-Event-ID must be an event id this service sent")
                })?,
        ),
    };
    // Subscribe before the first read, so nothing published in between is missed.
    let wake = state.wake.subscribe();
    let first = read(&state, &caller.requester, &node, last).await;
    let first = first.map_err(|e| caller.fail(e))?;
    caller.may_read(&first.node.config)?;
    let behind = first.items.len() as u32 == BATCH;
    let follow = Follow {
        stop: state.stop.clone(),
        state,
        caller,
        node,
        cursor: first.cursor,
        pending: first.items.into(),
        behind,
        wake,
        done: false,
        last_read: tokio::time::Instant::now(),
    };
    let stream = futures::stream::unfold(follow, |mut f| async move {
        loop {
            if let Some(item) = f.pending.pop_front() {
                return Some((Ok(item_event(&item)), f));
            }
            if f.done {
                return None;
            }
            if !f.behind {
                tokio::select! {
                    r = f.wake.recv() => {
                        if let Err(broadcast::error::RecvError::Closed) = r {
                            return None;
                        }
                    }
                    _ = tokio::time::sleep(FALLBACK_POLL) => {}
                    _ = f.stop.changed() => return None,
                }
                // Coalesce: wait out the spacing, then take every wake-up that came
                // meanwhile as one.
                tokio::select! {
                    _ = tokio::time::sleep_until(f.last_read + MIN_READ_SPACING) => {}
                    _ = f.stop.changed() => return None,
                }
                while let Ok(()) | Err(broadcast::error::TryRecvError::Lagged(_)) =
                    f.wake.try_recv()
                {}
            }
            f.last_read = tokio::time::Instant::now();
            match read(&f.state, &f.caller.requester, &f.node, Some(f.cursor)).await {
                Ok(got) if f.caller.may_read(&got.node.config).is_ok() => {
                    f.behind = got.items.len() as u32 == BATCH;
                    f.cursor = got.cursor;
                    f.pending.extend(got.items);
                }
                Ok(_) => {
                    f.done = true;
                    return Some((Ok(error_event(&DomainError::Forbidden)), f));
                }
                Err(DomainError::Internal { .. }) => {
                    // The database hiccuped: keep the stream, try again on the next wake.
                    f.behind = false;
                }
                Err(e) => {
                    f.done = true;
                    return Some((Ok(error_event(&e)), f));
                }
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)))
}

async fn read(
    state: &GatewayState,
    req: &Requester,
    node: &NodeId,
    after: Option<i64>,
) -> Result<crate::pubsub::item_stream::ItemsSince, DomainError> {
    state.pubsub.items_since(req, node, after, BATCH).await
}

fn item_event(item: &SeqItem) -> Event {
    let mut data = item_json(&item.item);
    data["seq"] = item.seq.into();
    Event::default()
        .event("item")
        .id(item.seq.to_string())
        .data(data.to_string())
}

/// The last event of a stream that ends because the node went away or the reader lost
/// access.
fn error_event(e: &DomainError) -> Event {
    Event::default()
        .event("error")
        .data(serde_json::json!({ "error": e.to_string() }).to_string())
}
