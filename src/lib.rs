//! pubsubd: an XEP-0060 publish-subscribe service attached to an XMPP server as an
//! XEP-0114 component, with PostgreSQL or an SQLite file as its store.
//!
//! The path of a stanza (see ARCHITECTURE.md): [`xmpp`] (socket, handshake, reconnect,
//! batching writer) → [`router`] (one ordered lane per sender) → [`protocol`] (stanza ↔
//! command, errors ↔ stanza errors) → `domain` (who may do what) → [`store`]
//! (PostgreSQL or SQLite). Fan-out is a separate consumer of stored jobs that ends at the
//! writer.

#![forbid(unsafe_code)]

pub mod app;
pub mod cli;
pub mod config;
pub mod domain;
pub mod events;
pub mod fanout;
pub mod feeds;
pub mod fuzzing;
pub mod gateway;
pub mod metrics;
pub mod protocol;
pub mod pubsub;
pub mod retention;
pub mod router;
pub mod shutdown;
pub mod status;
pub mod store;
pub mod telemetry;
pub mod xml;
pub mod xmpp;
