//! The task that owns one client's socket after negotiation: it writes what
//! the client sends (batched, one flush per batch) and pushes every stanza it
//! reads into an unbounded channel, so nothing is lost while a test looks
//! elsewhere. One task per connection, no thread: thousands of clients fit in
//! one process.

use std::time::Duration;

use minidom::Element;
use stanza_reader::{Item, StanzaReader};
use std::io::Cursor;

use tokio::io::{AsyncWriteExt, BufReader, BufStream, Chain, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::negotiate::{describe_stream_error, ClientStream};
use super::stanza::{self, NS_CLIENT, NS_STREAMS};

/// The reading side after negotiation: pubsubd's own stanza reader, so that a test
/// client reads whatever pubsubd may send (tokio-xmpp's reader stops at 8 KiB per
/// attribute value).
type Reader = StanzaReader<Chain<Cursor<Vec<u8>>, BufReader<ReadHalf<BufStream<TcpStream>>>>>;
/// The writing side after negotiation.
type Writer = WriteHalf<BufStream<TcpStream>>;

/// Silence after which the task pings the server, so that an idle test client is not
/// torn down; a second such silence in a row ends the connection.
const READ_SILENCE: Duration = Duration::from_secs(60);

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
    // Negotiation read the stream header; whatever the buffered stream already holds
    // is read through the split half first, so nothing is lost in the hand-over.
    let (read_half, writer) = tokio::io::split(stream.into_inner());
    let reader = StanzaReader::resume(BufReader::new(read_half), stanza::BUILD_LIMITS, NS_CLIENT);
    let task = tokio::spawn(run(reader, writer, domain, out_rx, in_tx));
    (out_tx, in_rx, task)
}

async fn run(
    mut reader: Reader,
    mut writer: Writer,
    domain: String,
    mut outgoing: mpsc::UnboundedReceiver<Outgoing>,
    incoming: mpsc::UnboundedSender<Incoming>,
) {
    let mut keepalives = 0u64;
    let mut silent = false;
    let reason = loop {
        tokio::select! {
            request = outgoing.recv() => match request {
                Some(Outgoing::Stanza(first)) => {
                    match write_batch(&mut writer, first, &mut outgoing).await {
                        Ok(false) => {}
                        Ok(true) => break close(&mut reader, &mut writer, &incoming).await,
                        Err(e) => break format!("write failed: {e}"),
                    }
                }
                Some(Outgoing::Close) | None => break close(&mut reader, &mut writer, &incoming).await,
            },
            read = tokio::time::timeout(READ_SILENCE, reader.next()) => match read {
                Ok(Ok(Item::Stanza(element))) => {
                    silent = false;
                    if element.is("error", NS_STREAMS) {
                        break format!("stream error: {}", describe_stream_error(&element));
                    }
                    if is_keepalive_answer(&element) || is_empty_privilege_notice(&element, &domain) {
                        continue;
                    }
                    // The client may be gone while senders remain; keep
                    // serving writes until they go too.
                    let _ = incoming.send(Incoming::Stanza(element));
                }
                Ok(Ok(Item::Refused { head, refusal })) => {
                    tracing::warn!(name = head.name, %refusal, "dropping a stanza over the reader's limits");
                }
                Ok(Ok(Item::Header(_))) => {}
                Ok(Ok(Item::Footer)) => break "server closed the stream".to_string(),
                Ok(Err(e)) => break format!("read failed: {e}"),
                Err(_) if silent => break "read timed out".to_string(),
                Err(_) => {
                    silent = true;
                    keepalives += 1;
                    let mut ping = stanza::ping(&domain);
                    stanza::set_attr(&mut ping, "id", &format!("{KEEPALIVE_ID_PREFIX}{keepalives}"));
                    if let Err(e) = write_flush(&mut writer, &stanza::to_xml(&ping)).await {
                        break format!("keepalive write failed: {e}");
                    }
                }
            },
        }
    };
    let _ = incoming.send(Incoming::Closed(reason));
}

async fn write_flush(writer: &mut Writer, text: &str) -> std::io::Result<()> {
    writer.write_all(text.as_bytes()).await?;
    writer.flush().await
}

/// Writes `first` and whatever else is queued (up to [`MAX_BATCH`]), then
/// flushes once. Returns true if a close request was among them.
async fn write_batch(
    writer: &mut Writer,
    first: Element,
    outgoing: &mut mpsc::UnboundedReceiver<Outgoing>,
) -> std::io::Result<bool> {
    let mut text = stanza::to_xml(&first);
    let mut close_requested = false;
    for _ in 1..MAX_BATCH {
        match outgoing.try_recv() {
            Ok(Outgoing::Stanza(next)) => text.push_str(&stanza::to_xml(&next)),
            Ok(Outgoing::Close) => {
                close_requested = true;
                break;
            }
            Err(_) => break,
        }
    }
    write_flush(writer, &text).await?;
    Ok(close_requested)
}

/// Sends the closing tag and forwards what still arrives until the server
/// closes its side too (or [`CLOSE_GRACE`] passes).
async fn close(
    reader: &mut Reader,
    writer: &mut Writer,
    incoming: &mpsc::UnboundedSender<Incoming>,
) -> String {
    if let Err(e) = write_flush(writer, "</stream:stream>").await {
        return format!("closed by client (closing tag not sent: {e})");
    }
    let drain = async {
        loop {
            match reader.next().await {
                Ok(Item::Stanza(element)) if !element.is("error", NS_STREAMS) => {
                    let _ = incoming.send(Incoming::Stanza(element));
                }
                Ok(Item::Stanza(_)) | Ok(Item::Footer) | Err(_) => break,
                Ok(_) => {}
            }
        }
    };
    let _ = tokio::time::timeout(CLOSE_GRACE, drain).await;
    let _ = writer.shutdown().await;
    "closed by client".to_string()
}

/// Prosody's `mod_privilege` (on in the testkit for the privileged component slots)
/// tells every user at their initial presence that they hold no XEP-0356 privileges: an
/// empty `<privilege/>` message from the server. It is the server's noise, not what a
/// test is about, and a test that checks "nothing else arrived" would trip over it.
fn is_empty_privilege_notice(element: &Element, domain: &str) -> bool {
    element.name() == "message"
        && element.attr("from") == Some(domain)
        && element.children().any(|c| {
            c.name() == "privilege"
                && c.ns().starts_with("urn:xmpp:privilege:")
                && c.children().next().is_none()
        })
}

fn is_keepalive_answer(element: &Element) -> bool {
    element.name() == "iq"
        && element
            .attr("id")
            .is_some_and(|id| id.starts_with(KEEPALIVE_ID_PREFIX))
        && matches!(element.attr("type"), Some("result" | "error"))
}
