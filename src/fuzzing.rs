//! Entry points for the fuzz targets in `fuzz/` (and their regression test): pure
//! functions over the request path, with no I/O.

use minidom::Element;
use xmpp_parsers::ns;

use crate::protocol::pubsub::{parse, Command};
use crate::protocol::stanza::{classify, Incoming};

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
    let wrapped = format!("<stream xmlns='{}'>{xml}</stream>", ns::COMPONENT);
    let Ok(stream) = wrapped.parse::<Element>() else {
        return Parsed::NotXml;
    };
    let Some(stanza) = stream.children().next().cloned() else {
        return Parsed::Other;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every file of the fuzz corpus still parses without a panic.
    #[test]
    fn fuzz_corpus_replays_without_panics() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/request");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).expect("fuzz corpus") {
            let bytes = std::fs::read(entry.expect("entry").path()).expect("corpus file");
            if let Ok(text) = std::str::from_utf8(&bytes) {
                let _ = parse_request(text);
            }
            n += 1;
        }
        assert!(n >= 20, "corpus has only {n} inputs");
    }

    /// A bounded fuzzing pass that runs in every `cargo test` (CI included): random
    /// mutations of the corpus (byte flips, insertions, deletions, splices of two
    /// inputs) for a few seconds. Coverage-guided fuzzing is `cargo fuzz run` (see
    /// docs/reliability.md); this keeps every CI run probing beyond the stored inputs.
    #[test]
    fn mutated_corpus_inputs_never_panic() {
        use rand::{Rng, SeedableRng};
        const BUDGET: std::time::Duration = std::time::Duration::from_secs(5);
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/request");
        let corpus: Vec<Vec<u8>> = std::fs::read_dir(&dir)
            .expect("fuzz corpus")
            .filter_map(|e| std::fs::read(e.ok()?.path()).ok())
            .collect();
        let seed: u64 = rand::thread_rng().gen();
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let started = std::time::Instant::now();
        let mut runs = 0u64;
        while started.elapsed() < BUDGET {
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
            if let Ok(text) = std::str::from_utf8(&input) {
                let _ = parse_request(text);
            }
            runs += 1;
        }
        eprintln!("{runs} mutated inputs parsed without a panic (seed {seed})");
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
