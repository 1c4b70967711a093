//! The router: hands each incoming stanza to one of a fixed set of handler tasks.
//!
//! Stanzas from one sender (bare JID) always go to the same task, so a client's requests
//! are applied in the order it sent them (subscribe, then publish, is never reordered);
//! different senders are served in parallel. Each task has a bounded queue. The
//! connection's reader must not wait on a full queue: it also reads the answers to the
//! fan-out's delivery barriers, and a reader stuck behind a burst of requests would stall
//! delivery to everyone. So a request that finds its lane full is answered at once with
//! `resource-constraint` (type `wait`: retry shortly); only messages and presence, which
//! are never refused, make the reader wait for room.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use minidom::Element;
use tokio::sync::{mpsc, watch};

use crate::protocol::Service;
use crate::xmpp::Inbound;

/// Stanzas waiting per handler task: room for a burst (1,000 requests spread over the
/// default 16 lanes), small enough that a queue here does not hide overload.
const HANDLER_QUEUE: usize = 256;

/// Most stanzas a lane takes at once. A run of publishes commits in one transaction,
/// so a full group costs about as much as one publish; kept small so that the first
/// answer of a group does not wait long for the last.
const MAX_GROUP: usize = 32;

/// Routes stanzas to handler tasks.
pub struct Router {
    service: Arc<Service>,
    lanes: Vec<mpsc::Sender<Element>>,
    /// Stanzas handed to a lane and not yet fully handled.
    /// A count that can be waited on: [`Router::idle`] wakes when it reaches zero.
    in_flight: Arc<watch::Sender<usize>>,
}

impl Router {
    /// Starts `handlers` tasks serving `service`. They end when the router is dropped.
    pub fn start(service: Arc<Service>, handlers: usize) -> Router {
        let in_flight = Arc::new(watch::Sender::new(0usize));
        let lanes = (0..handlers.max(1))
            .map(|_| {
                let (tx, mut rx) = mpsc::channel::<Element>(HANDLER_QUEUE);
                let svc = service.clone();
                let in_flight = in_flight.clone();
                tokio::spawn(async move {
                    while let Some(el) = rx.recv().await {
                        // What queued up meanwhile is handled together (consecutive
                        // publishes commit in one transaction), still in order.
                        let mut group = vec![el];
                        while group.len() < MAX_GROUP {
                            match rx.try_recv() {
                                Ok(el) => group.push(el),
                                Err(_) => break,
                            }
                        }
                        let n = group.len();
                        svc.handle_all(group).await;
                        in_flight.send_modify(|c| *c = c.saturating_sub(n));
                    }
                });
                tx
            })
            .collect();
        Router {
            service,
            lanes,
            in_flight,
        }
    }

    /// Waits until every stanza handed over so far has been handled (its answer is in
    /// the outgoing queue). Used at shutdown, after reading has stopped.
    pub async fn idle(&self) {
        let mut count = self.in_flight.subscribe();
        let _ = count.wait_for(|n| *n == 0).await;
    }

    fn lane_for(&self, el: &Element) -> usize {
        let mut h = DefaultHasher::new();
        // The bare part of `from`: a user's resources share one lane.
        let from = el.attr("from").unwrap_or("");
        from.split('/').next().unwrap_or("").hash(&mut h);
        (h.finish() % self.lanes.len() as u64) as usize
    }
}

impl Inbound for Router {
    async fn deliver(&self, stanza: Element) {
        if let Some(answer) = self.service.refuse_if_flooding(&stanza) {
            if !answer.is_empty() {
                self.service.out.reply(answer).await;
            }
            return;
        }
        let lane = self.lane_for(&stanza);
        self.in_flight.send_modify(|c| *c += 1);
        let stanza = match self.lanes[lane].try_send(stanza) {
            Ok(()) => return,
            Err(mpsc::error::TrySendError::Full(stanza)) => stanza,
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.in_flight.send_modify(|c| *c = c.saturating_sub(1));
                tracing::error!(lane, "handler task is gone; stanza dropped");
                return;
            }
        };
        if let Some(answer) = Service::refuse_busy(&stanza) {
            self.in_flight.send_modify(|c| *c = c.saturating_sub(1));
            self.service.out.reply(answer).await;
            return;
        }
        if self.lanes[lane].send(stanza).await.is_err() {
            self.in_flight.send_modify(|c| *c = c.saturating_sub(1));
            tracing::error!(lane, "handler task is gone; stanza dropped");
        }
    }
}
