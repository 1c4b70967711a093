//! Entry points for the fuzz targets in `fuzz/` (and their regression tests):
//! [`parse_request`], a pure function over the request parsers, and [`StreamHarness`],
//! the whole read path from raw bytes through the stream reader, the router and the
//! handlers to a store, as on a live connection but with no server.

use xmpp_parsers::ns;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use stanza_reader::{Item, Limits, StanzaReader};
use xmpp_parsers::jid::BareJid;

use crate::protocol::rate_limit::{RateLimiter, Rates};
use crate::protocol::stanza::{classify, Incoming};
use crate::protocol::xep0060::{parse, Command};
use crate::protocol::Service;
use crate::pubsub::{Policy, Pubsub};
use crate::router::Router;
use crate::store::sqlite::SqliteStore;
use crate::xmpp::outbound::Outgoing;
use crate::xmpp::{Inbound, Outbound};

/// What became of one input.
#[derive(Debug)]
pub enum Parsed {
    /// Not well-formed XML: the connection layer would have skipped it.
    NotXml,
    /// Not a pubsub request (answered elsewhere, or dropped).
    Other,
    /// A pubsub request, read into a command or refused with an error.
    Pubsub(Box<Result<Command, crate::domain::DomainError>>),
}

/// Reads `xml` as one stanza from the component stream and parses it as far as a
/// handler would before touching the store.
pub fn parse_request(xml: &str) -> Parsed {
    let stanza = match stanza_reader::parse_stanza(xml, ns::COMPONENT, Limits::default()) {
        Ok(Item::Stanza(el)) => el,
        Ok(Item::Refused { head, refusal }) => {
            match crate::xmpp::refused::hand_on(&head, refusal) {
                Some(request) => request,
                None => return Parsed::Other,
            }
        }
        Ok(Item::Header(_) | Item::Footer) | Err(_) => return Parsed::NotXml,
    };
    match classify(stanza) {
        Incoming::Iq(req) => match req.payload.ns().as_str() {
            ns::PUBSUB => Parsed::Pubsub(Box::new(parse::pubsub(&req))),
            ns::PUBSUB_OWNER => Parsed::Pubsub(Box::new(parse::owner(&req))),
            _ => Parsed::Other,
        },
        _ => Parsed::Other,
    }
}

/// The read path of the component stream with no server: bytes → the stream reader
/// ([`stanza_reader`], with the connection's own limits and refusals) → the router →
/// the handlers → an SQLite store in a file of its own (under `/dev/shm` where there is
/// one, so in memory). Every answer must be well-formed XML; anything else panics, which
/// a fuzzer reports.
pub struct StreamHarness {
    runtime: tokio::runtime::Runtime,
    router: Arc<Router>,
    answers: Arc<AtomicU64>,
    file: PathBuf,
}

/// The stream header a fed input follows, as the server would have sent it.
const STREAM_HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' \
     xmlns:stream='http://etherx.jabber.org/streams' id='fuzz' from='pubsub.fuzz.example'>";

/// Distinguishes the store files of several harnesses in one process.
static HARNESSES: AtomicU64 = AtomicU64::new(0);

impl StreamHarness {
    /// A harness on a fresh store.
    ///
    /// # Panics
    /// If the store cannot be made: a harness is test tooling, with nothing to recover.
    pub fn new() -> StreamHarness {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let dir = Path::new("/dev/shm");
        let dir = if dir.is_dir() {
            dir.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        let file = dir.join(format!(
            "pubsubd-fuzz-{}-{}.sqlite3",
            std::process::id(),
            HARNESSES.fetch_add(1, Ordering::Relaxed)
        ));
        let answers = Arc::new(AtomicU64::new(0));
        let router = runtime.block_on(async {
            let store = SqliteStore::open(&file, 1).await.expect("a store");
            store.migrate().await.expect("migrations");
            let jid = BareJid::new("pubsub.fuzz.example").expect("a JID");
            let pubsub = Arc::new(Pubsub {
                jid: jid.clone(),
                store: Arc::new(store),
                policy: Policy::default(),
                rosters: Arc::default(),
            });
            let (out, mut queue) = Outbound::channel(1024);
            let counted = answers.clone();
            tokio::spawn(async move {
                while let Some(item) = queue.recv().await {
                    match item {
                        Outgoing::Stanza(text) => {
                            if let Err(e) = crate::xml::parse(&text) {
                                panic!("an answer is not well-formed XML ({e}): {text}");
                            }
                            counted.fetch_add(1, Ordering::Relaxed);
                        }
                        Outgoing::Barrier(done) => {
                            let _ = done.send(true);
                        }
                    }
                }
            });
            let service = Arc::new(Service {
                jid,
                pubsub,
                out,
                limits: RateLimiter::new(Rates::default()),
                presence: None,
            });
            Arc::new(Router::start(service, 4))
        });
        StreamHarness {
            runtime,
            router,
            answers,
            file,
        }
    }

    /// Reads `bytes` as what follows the stream header, handing every stanza to the
    /// router as the connection would, until the input ends or stops being XML; then
    /// waits until each is handled. Returns how many answers were written so far.
    pub fn feed(&self, bytes: &[u8]) -> u64 {
        let input = [STREAM_HEADER.as_bytes(), bytes].concat();
        self.runtime.block_on(async {
            let mut reader = StanzaReader::new(&input[..], Limits::default());
            loop {
                let stanza = match reader.next().await {
                    Ok(Item::Stanza(el)) => el,
                    Ok(Item::Refused { head, refusal }) => {
                        match crate::xmpp::refused::hand_on(&head, refusal) {
                            Some(request) => request,
                            None => continue,
                        }
                    }
                    Ok(Item::Header(_)) => continue,
                    Ok(Item::Footer) | Err(_) => break,
                };
                self.router.deliver(stanza).await;
            }
            self.router.idle().await;
            // Let the drain task take what the handlers queued.
            tokio::task::yield_now().await;
        });
        self.answers.load(Ordering::Relaxed)
    }
}

impl Default for StreamHarness {
    fn default() -> Self {
        StreamHarness::new()
    }
}

impl Drop for StreamHarness {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm", ".lock"] {
            let mut name = self.file.clone().into_os_string();
            name.push(suffix);
            let _ = std::fs::remove_file(name);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Every file of the fuzz corpus still parses without a panic.
    #[test]
    fn fuzz_corpus_replays_without_panics() {
        let inputs = corpus("request");
        for bytes in &inputs {
            if let Ok(text) = std::str::from_utf8(bytes) {
                let _ = parse_request(text);
            }
        }
        assert!(
            inputs.len() >= 20,
            "corpus has only {} inputs",
            inputs.len()
        );
    }

    /// A bounded fuzzing pass that runs in every `cargo test` (CI included): random
    /// mutations of the corpus (byte flips, insertions, deletions, splices of two
    /// inputs) for a few seconds. Coverage-guided fuzzing is `cargo fuzz run` (see
    /// docs/reliability.md); this keeps every CI run probing beyond the stored inputs.
    #[test]
    fn mutated_corpus_inputs_never_panic() {
        let runs = mutate_for(&corpus("request"), Duration::from_secs(5), |input| {
            if let Ok(text) = std::str::from_utf8(input) {
                let _ = parse_request(text);
            }
        });
        eprintln!("{runs}");
    }

    /// The inputs stored under `fuzz/corpus/<target>`.
    fn corpus(target: &str) -> Vec<Vec<u8>> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/corpus")
            .join(target);
        std::fs::read_dir(&dir)
            .expect("fuzz corpus")
            .filter_map(|e| std::fs::read(e.ok()?.path()).ok())
            .collect()
    }

    /// Hands `check` random mutations of `corpus` inputs (byte flips, insertions of XML
    /// punctuation, deletions, splices of two inputs) for `budget`; says how many, with
    /// the seed that replays them.
    fn mutate_for(corpus: &[Vec<u8>], budget: Duration, mut check: impl FnMut(&[u8])) -> String {
        use rand::{Rng, SeedableRng};
        let seed: u64 = rand::thread_rng().gen();
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let started = std::time::Instant::now();
        let mut runs = 0u64;
        while started.elapsed() < budget {
            let mut input = corpus[rng.gen_range(0..corpus.len())].clone();
            for _ in 0..rng.gen_range(1..8) {
                match rng.gen_range(0..4) {
                    0 if !input.is_empty() => {
                        let i = rng.gen_range(0..input.len());
                        input[i] ^= 1 << rng.gen_range(0..8);
                    }
                    1 => {
                        let i = rng.gen_range(0..=input.len());
                        input.insert(
                            i,
                            *b"<>/='\"&;x ".get(rng.gen_range(0..12)).unwrap_or(&b'x'),
                        );
                    }
                    2 if !input.is_empty() => {
                        let i = rng.gen_range(0..input.len());
                        input.remove(i);
                    }
                    _ => {
                        let other = &corpus[rng.gen_range(0..corpus.len())];
                        let at = rng.gen_range(0..=input.len());
                        let from = rng.gen_range(0..=other.len());
                        input.truncate(at);
                        input.extend_from_slice(&other[from..]);
                    }
                }
            }
            check(&input);
            runs += 1;
        }
        format!("{runs} mutated inputs without a panic (seed {seed})")
    }

    /// The requests of a session, fed as raw bytes, are each answered.
    #[test]
    fn a_session_fed_as_bytes_is_answered_request_by_request() {
        let harness = StreamHarness::new();
        let from = "from='a@fuzz.example/r' to='pubsub.fuzz.example'";
        let session = format!(
            "<iq type='set' id='1' {from}><pubsub xmlns='http://jabber.org/protocol/pubsub'><create node='n'/></pubsub></iq> \
             <iq type='set' id='2' {from}><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='n'><item id='i'><x xmlns='urn:x' v='{}'/></item></publish></pubsub></iq>\
             <iq type='get' id='3' {from}><pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='n'/></pubsub></iq>\
             <iq type='get' id='4' {from}><ping xmlns='urn:xmpp:ping' a0='' a1='' {}/></iq>\
             <message {from}><body>ignored</body></message>",
            "v".repeat(20_000),
            (2..100).map(|i| format!("a{i}='' ")).collect::<String>()
        );
        assert_eq!(harness.feed(session.as_bytes()), 4);
        // Broken XML ends the input; what came before it was answered.
        let broken =
            format!("<iq type='get' id='5' {from}><ping xmlns='urn:xmpp:ping'/></iq><iq </");
        assert_eq!(harness.feed(broken.as_bytes()), 5);
    }

    /// Every stored stream input and random mutations of them, through the harness for
    /// a few seconds in every `cargo test`; coverage-guided runs are `cargo fuzz run
    /// stream` (docs/reliability.md).
    #[test]
    fn mutated_stream_inputs_never_panic() {
        let corpus = corpus("stream");
        assert!(
            corpus.len() >= 10,
            "stream corpus has {} inputs",
            corpus.len()
        );
        let harness = StreamHarness::new();
        for input in &corpus {
            harness.feed(input);
        }
        let runs = mutate_for(&corpus, Duration::from_secs(4), |input| {
            harness.feed(input);
        });
        eprintln!("streams: {runs}");
    }

    #[test]
    fn a_publish_parses_into_a_command() {
        let p = parse_request("<iq type='set' id='1' from='a@b/c' to='ps.b'><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='n'><item id='i'><x xmlns='urn:x'/></item></publish></pubsub></iq>");
        assert!(
            matches!(&p, Parsed::Pubsub(r) if matches!(**r, Ok(Command::Publish { .. }))),
            "{p:?}"
        );
    }
}
