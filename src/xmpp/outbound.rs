//! The sending side seen by the rest of pubsubd: a cloneable [`Outbound`] handle in front
//! of one bounded queue, drained by the connection's writer.
//!
//! The queue outlives connections: what is queued when the stream drops is written on
//! the next stream. A full queue makes senders wait; that is the backpressure that
//! keeps fan-out from buffering when the server reads slowly.

use tokio::sync::{mpsc, oneshot};

/// One entry of the outgoing queue.
#[derive(Debug)]
pub enum Outgoing {
    /// A finished stanza.
    Stanza(String),
    /// A delivery barrier: resolved once the server has answered a ping sent after
    /// everything queued before it, with `false` if the answer does not confirm
    /// (the multicast service bounced something first).
    Barrier(oneshot::Sender<bool>),
}

/// Why a barrier did not resolve.
#[derive(Debug, thiserror::Error)]
pub enum BarrierError {
    /// The stream dropped before the server answered: what was written before the
    /// barrier may or may not have reached the server.
    #[error("connection lost before the server confirmed receipt")]
    ConnectionLost,
    /// The multicast service refused a group of notifications written before the
    /// barrier (see [`super::multicast`]): what was written may not have been delivered.
    #[error("the multicast service refused a group of notifications")]
    Refused,
    /// The service is shutting down.
    #[error("service is shutting down")]
    Closed,
}

/// Which of the two notification lanes a stanza or barrier travels in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// Fan-out pages: the bulk of the traffic.
    Bulk,
    /// Small deliveries (a node with a few subscribers, one-JID notifications), written
    /// before the bulk lane so that they do not wait behind a big node's pages.
    Express,
}

/// A handle for sending stanzas to the XMPP server.
///
/// Three lanes, written in this order: answers to requests ([`Outbound::reply`]), small
/// deliveries ([`Lane::Express`]) and the bulk of fan-out ([`Outbound::send`]), so a
/// publisher's acknowledgement and a five-subscriber node's notification never wait
/// behind thousands of queued notifications. Order holds within each lane, and a barrier
/// travels in the lane of the notifications it confirms, behind them. A barrier's ping
/// confirms everything written before it, whichever lane it came from.
#[derive(Clone, Debug)]
pub struct Outbound {
    tx: mpsc::Sender<Outgoing>,
    express: mpsc::Sender<Outgoing>,
    replies: mpsc::Sender<String>,
}

/// The receiving end of the lanes, owned by the connection supervisor.
#[derive(Debug)]
pub struct OutboundQueue {
    bulk: mpsc::Receiver<Outgoing>,
    express: mpsc::Receiver<Outgoing>,
    replies: mpsc::Receiver<String>,
}

impl OutboundQueue {
    /// The next entry, answers first, then small deliveries; `None` once every handle is
    /// gone.
    pub async fn recv(&mut self) -> Option<Outgoing> {
        tokio::select! {
            biased;
            Some(reply) = self.replies.recv() => Some(Outgoing::Stanza(reply)),
            Some(item) = self.express.recv() => Some(item),
            item = self.bulk.recv() => item,
        }
    }

    /// The next entry if one is waiting, in the same order.
    pub fn try_recv(&mut self) -> Result<Outgoing, mpsc::error::TryRecvError> {
        if let Ok(reply) = self.replies.try_recv() {
            return Ok(Outgoing::Stanza(reply));
        }
        match self.express.try_recv() {
            Ok(item) => Ok(item),
            Err(_) => self.bulk.try_recv(),
        }
    }
}

/// Room in the answer lane: request handlers are few, so answers never pile up.
const REPLY_QUEUE: usize = 256;

/// Room in the express lane: fan-out's pacing keeps small deliveries in flight to a few
/// hundred notifications (see `fanout::pace`), plus their barriers.
const EXPRESS_QUEUE: usize = 1024;

impl Outbound {
    /// Creates the handle and its queue with room for `capacity` bulk entries.
    pub fn channel(capacity: usize) -> (Outbound, OutboundQueue) {
        let (tx, bulk) = mpsc::channel(capacity);
        let (express_tx, express) = mpsc::channel(EXPRESS_QUEUE);
        let (reply_tx, replies) = mpsc::channel(REPLY_QUEUE);
        (
            Outbound {
                tx,
                express: express_tx,
                replies: reply_tx,
            },
            OutboundQueue {
                bulk,
                express,
                replies,
            },
        )
    }

    fn lane(&self, lane: Lane) -> &mpsc::Sender<Outgoing> {
        match lane {
            Lane::Bulk => &self.tx,
            Lane::Express => &self.express,
        }
    }

    /// Queues a finished stanza in the bulk lane, waiting while it is full. Returns
    /// `false` when the service is shutting down and the stanza was not queued.
    pub async fn send(&self, stanza: String) -> bool {
        self.send_on(Lane::Bulk, stanza).await
    }

    /// Queues a finished stanza in `lane`, waiting while it is full. Returns `false` when
    /// the service is shutting down and the stanza was not queued.
    pub async fn send_on(&self, lane: Lane, stanza: String) -> bool {
        self.lane(lane).send(Outgoing::Stanza(stanza)).await.is_ok()
    }

    /// Queues the answer to a request in the answer lane, written before bulk traffic.
    pub async fn reply(&self, stanza: String) -> bool {
        self.replies.send(stanza).await.is_ok()
    }

    /// Waits until the server has certainly received every stanza this handle queued
    /// before the call: the writer sends an XEP-0199 ping to the server after them, and
    /// the server processes a component stream in order, so its answer is a receipt.
    pub async fn barrier(&self) -> Result<(), BarrierError> {
        self.barrier_on(Lane::Bulk).await
    }

    /// [`barrier`](Self::barrier) for what this handle queued in `lane`.
    pub async fn barrier_on(&self, lane: Lane) -> Result<(), BarrierError> {
        let (done, wait) = oneshot::channel();
        self.lane(lane)
            .send(Outgoing::Barrier(done))
            .await
            .map_err(|_| BarrierError::Closed)?;
        match wait.await {
            Ok(true) => Ok(()),
            Ok(false) => Err(BarrierError::Refused),
            Err(_) => Err(BarrierError::ConnectionLost),
        }
    }

    /// How many entries are waiting in both lanes (for metrics).
    pub fn queued(&self) -> usize {
        (self.tx.max_capacity() - self.tx.capacity())
            + (self.express.max_capacity() - self.express.capacity())
            + (self.replies.max_capacity() - self.replies.capacity())
    }
}
