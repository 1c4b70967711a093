//! Fuzzes the path of a received stanza up to the command a handler would execute:
//! the stanza reader with its limits, stanza classification, and the pubsub request
//! parsers. Any input must give an answer or a refusal, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pubsubd::fuzzing::parse_request;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = parse_request(text);
    }
});
