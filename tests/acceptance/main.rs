//! The acceptance tests: pubsubd attached to a real Prosody and a real ejabberd, on a
//! real PostgreSQL and an SQLite file, spoken to by real clients over sockets. One test
//! binary, one module per topic: the servers start once for all of them, and the tests
//! of every topic share the test threads (`cargo test --test acceptance TOPIC` runs one
//! topic). The harness is `common`.

// Each example includes `examples/common` itself, as a program of its own must.
#![allow(clippy::duplicate_mod)]

mod common;
mod store_common;

mod admin_cli;
mod examples;
mod fanout;
mod fanout_connections;
mod faults;
mod feeds;
mod floods;
mod foundation;
mod gateway;
mod hostile_input;
mod operator_view;
mod retention;
mod shutdown;
mod soak;
mod stanza_limits;
mod store_backends;
mod store_fanout;
mod stranger;
mod takeover;
mod try_it;
mod xep0060_events;
mod xep0060_owner;
mod xep0060_publish;
mod xep0060_subscribe;
