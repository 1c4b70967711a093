//! Throwaway XMPP servers (Prosody and ejabberd) on loopback ports, with
//! pre-declared component slots, open registration and no rate limits.
//!
//! Owns server config, process lifecycle and readiness. Speaking XMPP to the
//! servers is the `client` module's job.

mod ejabberd;
mod kind;
mod layout;
mod prosody;
mod readiness;
mod server;
mod shared;
mod slots;

pub use kind::ServerKind;
pub use layout::{ADMIN_USER, BUILTIN_PUBSUB_JID, DEBUG_ENV, DOMAIN, MULTICAST_JID};
pub use server::XmppServer;
pub use shared::{shared, shared_ejabberd, shared_prosody};
pub use slots::{ComponentSlot, PRIVILEGED_SLOT_COUNT, SLOT_COUNT};
