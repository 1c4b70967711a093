//! `reader`: the stanza reader pubsubd's component stream uses (`stanza-reader`) against
//! the one it replaced (tokio-xmpp's XML stream), on the same bytes in memory, in one
//! run. No server, no sockets: only the cost of turning bytes into elements, which is
//! what every stanza the server routes to pubsubd pays.

use std::time::{Duration, Instant};

use futures::StreamExt;
use pubsubd_testkit::Element;
use stanza_reader::{Item, Limits, StanzaReader};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_xmpp::xmlstream::{initiate_stream, ReadError, StreamHeader, Timeouts, XmlStream};

/// What a component reads, by share: publishes of Atom entries (~1.5 KB), answers to
/// barrier pings, and presence.
fn stream_body(stanzas: usize) -> String {
    let mut body = String::new();
    for n in 0..stanzas {
        match n % 4 {
            0 | 1 => body.push_str(&format!(
                "<iq type='set' id='p{n}' from='user{n}@localhost/r' to='pubsub.localhost'>\
                 <pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='feed'>\
                 <item id='i{n}'><entry xmlns='http://www.w3.org/2005/Atom'><title>Item {n}</title>\
                 <link rel='alternate' href='https://example.org/posts/{n}'/><id>tag:example.org,2026:{n}</id>\
                 <updated>2026-12-06T00:00:00Z</updated><content type='xhtml'>\
                 <div xmlns='http://www.w3.org/1999/xhtml'><p>{}</p></div></content></entry>\
                 </item></publish></pubsub></iq>",
                "Lorem ipsum dolor sit amet, consectetur adipiscing elit. ".repeat(18)
            )),
            2 => body.push_str(&format!(
                "<iq type='result' id='pubsubd-ping-ab-cd-{n}' from='pubsub.localhost' to='pubsub.localhost'/>"
            )),
            _ => body.push_str(&format!(
                "<presence from='user{n}@localhost/r' to='pubsub.localhost'><show>away</show></presence>"
            )),
        }
    }
    body
}

const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' \
     xmlns:stream='http://etherx.jabber.org/streams' id='bench' from='localhost'>";

/// Reads every stanza of `body` with pubsubd's reader; returns the count and time.
async fn ours(body: &str) -> anyhow::Result<(usize, Duration)> {
    let input = format!("{HEADER}{body}</stream:stream>");
    let started = Instant::now();
    let mut reader = StanzaReader::new(input.as_bytes(), Limits::default());
    let mut n = 0;
    loop {
        match reader.next().await? {
            Item::Stanza(el) => {
                std::hint::black_box(&el);
                n += 1;
            }
            Item::Footer => break,
            Item::Header(_) => {}
            Item::Refused { refusal, .. } => anyhow::bail!("refused: {refusal}"),
        }
    }
    Ok((n, started.elapsed()))
}

/// The same with tokio-xmpp's XML stream (over an in-memory pipe: it writes its own
/// header and needs a peer to read it).
async fn theirs(body: &str) -> anyhow::Result<(usize, Duration)> {
    let (client, mut server) = tokio::io::duplex(1 << 20);
    let input = format!("{HEADER}{body}</stream:stream>");
    let feeder = tokio::spawn(async move {
        let mut sink = [0u8; 4096];
        // Its header first, then ours, then drain whatever else it writes.
        let _ = server.read(&mut sink).await;
        server.write_all(input.as_bytes()).await?;
        while server.read(&mut sink).await.unwrap_or(0) > 0 {}
        anyhow::Ok(())
    });
    let header = StreamHeader {
        from: None,
        to: Some("pubsub.localhost".into()),
        id: None,
    };
    let timeouts = Timeouts {
        read_timeout: Duration::from_secs(60),
        response_timeout: Duration::from_secs(60),
    };
    let started = Instant::now();
    let mut pending = initiate_stream(
        tokio::io::BufStream::new(client),
        "jabber:component:accept",
        header,
        timeouts,
    )
    .await?;
    let _ = pending.take_header();
    let mut stream: XmlStream<_, Element> = pending.skip_features();
    let mut n = 0;
    while let Some(read) = stream.next().await {
        match read {
            Ok(el) => {
                std::hint::black_box(&el);
                n += 1;
            }
            Err(ReadError::StreamFooterReceived) => break,
            Err(ReadError::SoftTimeout) => {}
            Err(e) => anyhow::bail!("tokio-xmpp: {e}"),
        }
    }
    let took = started.elapsed();
    drop(stream);
    feeder.abort();
    Ok((n, took))
}

/// The figures of one run.
#[derive(Debug, serde::Serialize)]
pub struct ReaderReport {
    pub stanzas: usize,
    pub bytes: usize,
    pub rounds: usize,
    /// Median stanzas per second of pubsubd's reader.
    pub ours_per_s: f64,
    /// Median stanzas per second of tokio-xmpp's reader.
    pub tokio_xmpp_per_s: f64,
    /// `ours_per_s / tokio_xmpp_per_s`.
    pub ratio: f64,
}

/// Alternates the two readers `rounds` times over the same `stanzas`.
pub async fn run(stanzas: usize, rounds: usize) -> anyhow::Result<ReaderReport> {
    let body = stream_body(stanzas);
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..rounds.max(1) {
        let (n, t) = ours(&body).await?;
        anyhow::ensure!(n == stanzas, "pubsubd's reader read {n} of {stanzas}");
        a.push(n as f64 / t.as_secs_f64());
        let (n, t) = theirs(&body).await?;
        anyhow::ensure!(n == stanzas, "tokio-xmpp read {n} of {stanzas}");
        b.push(n as f64 / t.as_secs_f64());
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (ours_per_s, tokio_xmpp_per_s) = (median(&mut a), median(&mut b));
    Ok(ReaderReport {
        stanzas,
        bytes: body.len(),
        rounds: rounds.max(1),
        ours_per_s,
        tokio_xmpp_per_s,
        ratio: ours_per_s / tokio_xmpp_per_s,
    })
}
