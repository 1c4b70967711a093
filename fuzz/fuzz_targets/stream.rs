//! Fuzzes the whole read path of the component stream: raw bytes after the server's
//! stream header go through the same stanza reader pubsubd's connection uses (limits,
//! refusals), then the router and the request handlers, against an SQLite store of the
//! fuzzer's own. Any input must end in answers or a closed input, never a panic, and
//! every answer must be well-formed XML.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use pubsubd::fuzzing::StreamHarness;

/// One harness for the whole run: nodes created by one input are there for the next,
/// which reaches deeper states than a fresh store each time.
static HARNESS: LazyLock<StreamHarness> = LazyLock::new(StreamHarness::new);

fuzz_target!(|data: &[u8]| {
    HARNESS.feed(data);
});
