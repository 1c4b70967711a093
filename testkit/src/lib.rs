//! Test harness for pubsubd.
//!
//! - [`XmppServer`]: throwaway Prosody and ejabberd instances on loopback
//!   ports with pre-declared component slots ([`shared_prosody`],
//!   [`shared_ejabberd`] for one per test binary).
//! - [`TestDb`]: a fresh PostgreSQL database per test; [`TestStore`]: that or a
//!   fresh SQLite file ([`TestSqlite`]), as `PUBSUBD_TEST_STORE` says.
//! - [`Client`]: a raw-XML XMPP client (minidom elements, `jabber:client`).
//! - [`PubsubdProcess`]: the service under test as a child process.
//! - [`both_servers!`]: one test body run against both servers.
//!
//! Every process started here is in its own process group and dies with the
//! test process, even if that is killed.

mod account;
pub mod client;
mod component;
mod db;
mod macros;
mod ports;
mod process;
mod pubsubd;
mod servers;
mod store;

pub use account::Account;
pub use client::stanza;
pub use client::{Availability, Client, ClientError, ConnectOptions, StanzaSender};
pub use component::{component_handshake, handshake_digest, ComponentConnection, NS_COMPONENT};
pub use db::{TestDb, ADMIN_URL_ENV};
pub use macros::TestOutcome;
#[doc(hidden)]
pub use macros::{__with_dedicated, __with_shared};
pub use minidom::Element;
pub use ports::free_ports;
pub use pubsubd::{PubsubdProcess, TERMINATE_TIMEOUT};
pub use servers::{
    shared, shared_ejabberd, shared_prosody, ComponentSlot, ServerKind, XmppServer, ADMIN_USER,
    BUILTIN_PUBSUB_JID, DEBUG_ENV, DOMAIN, MULTICAST_JID, PRIVILEGED_SLOT_COUNT, SLOT_COUNT,
};
pub use store::{on_store, StoreKind, TestSqlite, TestStore, STORE_ENV};
