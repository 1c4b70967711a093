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

/// A handle for sending stanzas to the XMPP server.
///
/// Two lanes: answers to requests ([`Outbound::reply`]) go before bulk traffic
/// (notifications, [`Outbound::send`]), so a publisher's acknowledgement never waits
/// behind thousands of queued notifications. Order holds within each lane, and barriers
/// travel in the bulk lane, behind the notifications they confirm.
#[derive(Clone, Debug)]
pub struct Outbound {
    tx: mpsc::Sender<Outgoing>,
    replies: mpsc::Sender<String>,
}

/// The receiving end of both lanes, owned by the connection supervisor.
#[derive(Debug)]
pub struct OutboundQueue {
    bulk: mpsc::Receiver<Outgoing>,
    replies: mpsc::Receiver<String>,
}

impl OutboundQueue {
    /// The next entry, answers first; `None` once every handle is gone.
    pub async fn recv(&mut self) -> Option<Outgoing> {
        tokio::select! {
            biased;
            Some(reply) = self.replies.recv() => Some(Outgoing::Stanza(reply)),
            item = self.bulk.recv() => item,
        }
    }

    /// The next entry if one is waiting, answers first.
    pub fn try_recv(&mut self) -> Result<Outgoing, mpsc::error::TryRecvError> {
        match self.replies.try_recv() {
            Ok(reply) => Ok(Outgoing::Stanza(reply)),
            Err(_) => self.bulk.try_recv(),
        }
    }
}

/// Room in the answer lane: request handlers are few, so answers never pile up.
const REPLY_QUEUE: usize = 256;

impl Outbound {
    /// Creates the handle and its queue with room for `capacity` bulk entries.
    pub fn channel(capacity: usize) -> (Outbound, OutboundQueue) {
        let (tx, bulk) = mpsc::channel(capacity);
        let (reply_tx, replies) = mpsc::channel(REPLY_QUEUE);
        (
            Outbound {
                tx,
                replies: reply_tx,
            },
            OutboundQueue { bulk, replies },
        )
    }

    /// Queues a finished stanza in the bulk lane, waiting while it is full. Returns
    /// `false` when the service is shutting down and the stanza was not queued.
    pub async fn send(&self, stanza: String) -> bool {
        self.tx.send(Outgoing::Stanza(stanza)).await.is_ok()
    }

    /// Queues the answer to a request in the answer lane, written before bulk traffic.
    pub async fn reply(&self, stanza: String) -> bool {
        self.replies.send(stanza).await.is_ok()
    }

    /// Waits until the server has certainly received every stanza this handle queued
    /// before the call: the writer sends an XEP-0199 ping to the server after them, and
    /// the server processes a component stream in order, so its answer is a receipt.
    pub async fn barrier(&self) -> Result<(), BarrierError> {
        let (done, wait) = oneshot::channel();
        self.tx
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
            + (self.replies.max_capacity() - self.replies.capacity())
    }
}
