//! Noticing a stranger on the component JID.
//!
//! ejabberd accepts several connections for one component JID and balances the JID's
//! stanzas between them. Several pubsubd processes on one store use that on purpose; a
//! leftover pubsubd on another store (an old SQLite instance in a terminal, say) would
//! silently get a share of the requests and notifications. Every barrier ping carries
//! the store's tag ([`crate::store::ServiceStore::store_tag`]), the same in every
//! process of one store: a ping with another tag, or with none, was written by a
//! stranger. Seeing one is logged as an error naming the JID (at most once a
//! [`LOG_EVERY`]), counted, and makes `/readyz` fail for [`WINDOW`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use xmpp_parsers::jid::BareJid;

/// How long after the last stranger's ping the service reports itself unready. A
/// stranger's keepalive pings come every 30 s, half of them to us at worst: this
/// spans a few of them, so readiness does not flap while the stranger stays.
pub const WINDOW: Duration = Duration::from_secs(120);
/// How often, at most, the error is logged while a stranger stays.
pub const LOG_EVERY: Duration = Duration::from_secs(60);

/// Who this process is among those on the component JID: the store's tag, which every
/// barrier ping carries, and whether the store serves one process only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreIdentity {
    /// [`crate::store::ServiceStore::store_tag`].
    pub tag: u64,
    /// SQLite: no other process may share the store.
    pub single_instance: bool,
}

/// Unix seconds of the last stranger's ping seen (0: never).
static LAST_SEEN: AtomicU64 = AtomicU64::new(0);
/// Unix seconds of the last error logged about one.
static LAST_LOGGED: AtomicU64 = AtomicU64::new(0);

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Records a ping (or its answer) written by a process not attached to this store.
/// `single_instance` says that this store serves one process only (SQLite), which the
/// log then says plainly.
pub fn seen(jid: &BareJid, single_instance: bool) {
    let now = now();
    LAST_SEEN.store(now, Ordering::Relaxed);
    metrics::counter!(crate::metrics::STRANGER_PINGS).increment(1);
    let last = LAST_LOGGED.load(Ordering::Relaxed);
    if now.saturating_sub(last) < LOG_EVERY.as_secs()
        || LAST_LOGGED
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
    {
        return;
    }
    if single_instance {
        tracing::error!(
            %jid,
            "another program is connected to the XMPP server as {jid}: this pubsubd keeps its \
             data in SQLite, which serves one instance only, and the server is splitting the \
             JID's requests and notifications between the two; stop the other one"
        );
    } else {
        tracing::error!(
            %jid,
            "a program that does not share this database is connected to the XMPP server as \
             {jid} (an old pubsubd on another database?): the server is splitting the JID's \
             requests and notifications between them; stop it, or point it at this database"
        );
    }
}

/// Whether a stranger's ping was seen within the last [`WINDOW`].
pub fn sharing_with_stranger() -> bool {
    let last = LAST_SEEN.load(Ordering::Relaxed);
    last != 0 && now().saturating_sub(last) < WINDOW.as_secs()
}
