//! One server of each kind per test process, started on first use and shared
//! by every test in the binary (`cargo test` runs tests as threads of one
//! process).
//!
//! Statics are never dropped, so an `atexit` hook kills the shared servers and
//! removes their directories when the test binary exits normally; if it is
//! killed instead, the parent-death signal kills the servers and the next
//! run's scratch-dir sweep removes the directories.

use std::sync::{Once, OnceLock};

use super::kind::ServerKind;
use super::server::XmppServer;

/// A shared server, or the reason it could not be started (kept so that every
/// test fails fast with the same message instead of retrying a slow start).
type SharedSlot = OnceLock<Result<XmppServer, String>>;

static PROSODY: SharedSlot = OnceLock::new();
static EJABBERD: SharedSlot = OnceLock::new();
static CLEANUP_HOOK: Once = Once::new();

/// The Prosody shared by all tests of this process, started on first call.
///
/// # Panics
/// If it cannot be started (with the server's log tail in the message).
pub fn shared_prosody() -> &'static XmppServer {
    shared(ServerKind::Prosody)
}

/// The ejabberd shared by all tests of this process, started on first call.
///
/// # Panics
/// If it cannot be started (with the server's log tail in the message).
pub fn shared_ejabberd() -> &'static XmppServer {
    shared(ServerKind::Ejabberd)
}

/// The shared server of `kind`.
///
/// # Panics
/// If it cannot be started.
pub fn shared(kind: ServerKind) -> &'static XmppServer {
    let slot = match kind {
        ServerKind::Prosody => &PROSODY,
        ServerKind::Ejabberd => &EJABBERD,
    };
    let started = slot.get_or_init(|| {
        CLEANUP_HOOK.call_once(|| {
            // SAFETY: registers a plain `extern "C" fn` without arguments.
            unsafe {
                libc::atexit(cleanup_shared_servers);
            }
        });
        XmppServer::start_new(kind).map_err(|e| format!("{e:#}"))
    });
    match started {
        Ok(server) => server,
        Err(why) => panic!("shared {kind} is unavailable: {why}"),
    }
}

extern "C" fn cleanup_shared_servers() {
    for slot in [&PROSODY, &EJABBERD] {
        if let Some(Ok(server)) = slot.get() {
            server.kill_for_exit();
        }
    }
}
