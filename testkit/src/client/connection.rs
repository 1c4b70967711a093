//! The task that owns one client's socket after negotiation: it writes what
//! the client sends (batched, one flush per batch) and pushes every stanza it
//! reads into an unbounded channel, so nothing is lost while a test looks
//! elsewhere. One task per connection, no thread: thousands of clients fit in
//! one process.

use std::time::Duration;

use futures::{SinkExt, StreamExt as _};
use minidom::Element;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_xmpp::xmlstream::ReadError;

use super::negotiate::{describe_stream_error, ClientStream};
use super::stanza::{self, NS_STREAMS};

/// At most this many queued stanzas are written before one flush, so a
/// burst from a load generator costs few syscalls but a flood cannot starve
/// reading.
const MAX_BATCH: usize = 256;

/// After sending `</stream:stream>`, how long to wait for the server's own
/// closing tag before dropping the socket.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Ids of the keepalive pings the task sends on read silence start with
/// this; their answers are swallowed.
const KEEPALIVE_ID_PREFIX: &str = "testkit-keepalive-";

/// What the client asks the connection task to do.
#[derive(Debug)]
pub enum Outgoing {
    /// Write a stanza.
    Stanza(Element),
    /// Send `</stream:stream>`, wait briefly for the server's, and stop.
    Close,
}

/// What the connection task reports.
#[derive(Debug)]
pub enum Incoming {
    /// A stanza (or other top-level element) from the server.
    Stanza(Element),
    /// The connection is over; the last message the task sends.
    Closed(String),
}

/// Starts the connection task for a negotiated stream.
pub fn spawn(
    stream: ClientStream,
    domain: String,
) -> (
    mpsc::UnboundedSender<Outgoing>,
    mpsc::UnboundedReceiver<Incoming>,
    JoinHandle<()>,
) {
    let (out_tx, out_rx) = mpsc::unbounded_channel();
    let (in_tx, in_rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(run(stream, domain, out_rx, in_tx));
    (out_tx, in_rx, task)
}

async fn run(
    mut stream: ClientStream,
    domain: String,
    mut outgoing: mpsc::UnboundedReceiver<Outgoing>,
    incoming: mpsc::UnboundedSender<Incoming>,
) {
    let mut keepalives = 0u64;
    let reason = loop {
        tokio::select! {
            request = outgoing.recv() => match request {
                Some(Outgoing::Stanza(first)) => {
                    match write_batch(&mut stream, first, &mut outgoing).await {
                        Ok(false) => {}
                        Ok(true) => break close(&mut stream, &incoming).await,
                        Err(e) => break format!("write failed: {e}"),
                    }
                }
                Some(Outgoing::Close) | None => break close(&mut stream, &incoming).await,
            },
            read = stream.next() => match read {
                Some(Ok(element)) => {
                    if element.is("error", NS_STREAMS) {
                        break format!("stream error: {}", describe_stream_error(&element));
                    }
                    if is_keepalive_answer(&element) {
                        continue;
                    }
                    // The client may be gone while senders remain; keep
                    // serving writes until they go too.
                    let _ = incoming.send(Incoming::Stanza(element));
                }
                Some(Err(ReadError::SoftTimeout)) => {
                    keepalives += 1;
                    let mut ping = stanza::ping(&domain);
                    stanza::set_attr(&mut ping, "id", &format!("{KEEPALIVE_ID_PREFIX}{keepalives}"));
                    if let Err(e) = stream.send(&ping).await {
                        break format!("keepalive write failed: {e}");
                    }
                }
                Some(Err(ReadError::ParseError(e))) => {
                    tracing::warn!("dropping unparsable element from server: {e}");
                }
                Some(Err(ReadError::HardError(e))) => break format!("read failed: {e}"),
                Some(Err(ReadError::StreamFooterReceived)) | None => {
                    break "server closed the stream".to_string()
                }
            },
        }
    };
    let _ = incoming.send(Incoming::Closed(reason));
}

/// Writes `first` and whatever else is queued (up to [`MAX_BATCH`]), then
/// flushes once. Returns true if a close request was among them.
async fn write_batch(
    stream: &mut ClientStream,
    first: Element,
    outgoing: &mut mpsc::UnboundedReceiver<Outgoing>,
) -> std::io::Result<bool> {
    stream.feed(&first).await?;
    let mut close_requested = false;
    for _ in 1..MAX_BATCH {
        match outgoing.try_recv() {
            Ok(Outgoing::Stanza(next)) => stream.feed(&next).await?,
            Ok(Outgoing::Close) => {
                close_requested = true;
                break;
            }
            Err(_) => break,
        }
    }
    SinkExt::<&Element>::flush(stream).await?;
    Ok(close_requested)
}

/// Sends the closing tag and forwards what still arrives until the server
/// closes its side too (or [`CLOSE_GRACE`] passes).
async fn close(stream: &mut ClientStream, incoming: &mpsc::UnboundedSender<Incoming>) -> String {
    if let Err(e) = stream.shutdown().await {
        return format!("closed by client (closing tag not sent: {e})");
    }
    let drain = async {
        while let Some(read) = stream.next().await {
            match read {
                Ok(element) if !element.is("error", NS_STREAMS) => {
                    let _ = incoming.send(Incoming::Stanza(element));
                }
                Err(ReadError::SoftTimeout | ReadError::ParseError(_)) => {}
                _ => break,
            }
        }
    };
    let _ = tokio::time::timeout(CLOSE_GRACE, drain).await;
    "closed by client".to_string()
}

fn is_keepalive_answer(element: &Element) -> bool {
    element.name() == "iq"
        && element
            .attr("id")
            .is_some_and(|id| id.starts_with(KEEPALIVE_ID_PREFIX))
        && matches!(element.attr("type"), Some("result" | "error"))
}
