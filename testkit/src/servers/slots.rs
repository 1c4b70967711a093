//! Component slots: the pre-declared external-component JIDs and secrets of
//! one server, leased to tests so that many tests can share a server.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use rand::distributions::{Alphanumeric, DistString as _};

/// How many component JIDs each server declares. One test binary shares one
/// server per kind and a released slot goes to the back of the queue, so a
/// slot is reused only after 31 other leases, long after its previous
/// pubsubd was killed. More slots cost Prosody start-up time: every component
/// is a host, and each one costs about 15 ms of CPU (128 slots: 2 s).
pub const SLOT_COUNT: usize = 32;

/// How many of them the server trusts with XEP-0356 privileges (roster get, presence):
/// `priv1.localhost` …, leased apart from the others.
pub const PRIVILEGED_SLOT_COUNT: usize = 4;

/// The prefix of the privileged slots' JIDs.
pub const PRIVILEGED_PREFIX: &str = "priv";

/// Length of the random part of each slot's secret.
const SECRET_LEN: usize = 24;

/// One pre-declared component: its JID and its XEP-0114 secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotSpec {
    /// The component's JID, e.g. `ps7.localhost`.
    pub jid: String,
    /// The shared secret the server expects in the handshake.
    pub secret: String,
}

/// Makes the slot table of a new server: `ps1.localhost` … and the privileged
/// `priv1.localhost` …, with fresh random secrets.
pub fn make_slot_specs(domain: &str) -> Vec<SlotSpec> {
    let mut rng = rand::thread_rng();
    let mut spec = |prefix: &str, n: usize| SlotSpec {
        jid: format!("{prefix}{n}.{domain}"),
        secret: format!("s{n}-{}", Alphanumeric.sample_string(&mut rng, SECRET_LEN)),
    };
    let mut specs: Vec<SlotSpec> = (1..=SLOT_COUNT).map(|n| spec("ps", n)).collect();
    specs.extend((1..=PRIVILEGED_SLOT_COUNT).map(|n| spec(PRIVILEGED_PREFIX, n)));
    specs
}

impl SlotSpec {
    /// Whether the server grants this slot XEP-0356 privileges.
    pub fn is_privileged(&self) -> bool {
        self.jid.starts_with(PRIVILEGED_PREFIX)
    }
}

/// The free slots of one server, in the order they should be handed out.
#[derive(Debug, Clone)]
pub struct SlotPool {
    free: Arc<Mutex<VecDeque<SlotSpec>>>,
}

impl SlotPool {
    /// A pool holding the privileged slots of `specs`, or the others.
    pub fn of(specs: &[SlotSpec], privileged: bool) -> Self {
        Self {
            free: Arc::new(Mutex::new(
                specs
                    .iter()
                    .filter(|s| s.is_privileged() == privileged)
                    .cloned()
                    .collect(),
            )),
        }
    }

    /// Takes the least recently used free slot.
    ///
    /// # Panics
    /// If all [`SLOT_COUNT`] slots are leased at once: the tests hold on to
    /// too many slots (or leak them) and need a dedicated server.
    pub fn lease(&self, server_addr: SocketAddr) -> ComponentSlot {
        let spec = self
            .free
            .lock()
            .expect("slot pool poisoned")
            .pop_front()
            .unwrap_or_else(|| {
                panic!("all {SLOT_COUNT} component slots are leased; use a dedicated server")
            });
        ComponentSlot {
            spec,
            server_addr,
            pool: self.clone(),
        }
    }

    fn release(&self, spec: SlotSpec) {
        if let Ok(mut free) = self.free.lock() {
            free.push_back(spec);
        }
    }
}

/// A leased component identity on one XMPP server: what pubsubd needs to
/// attach as an external component. Returned to the pool on drop.
#[derive(Debug)]
pub struct ComponentSlot {
    spec: SlotSpec,
    server_addr: SocketAddr,
    pool: SlotPool,
}

impl ComponentSlot {
    /// The component JID, e.g. `ps3.localhost`.
    pub fn jid(&self) -> &str {
        &self.spec.jid
    }

    /// The XEP-0114 shared secret for [`Self::jid`].
    pub fn secret(&self) -> &str {
        &self.spec.secret
    }

    /// The server's component port (always on 127.0.0.1).
    pub fn server_addr(&self) -> SocketAddr {
        self.server_addr
    }

    /// The arguments for `pubsubd run` that attach it to this slot and store
    /// its state in `database_url`.
    pub fn pubsubd_args(&self, database_url: &str) -> Vec<String> {
        vec![
            "run".into(),
            "--jid".into(),
            self.spec.jid.clone(),
            "--secret".into(),
            self.spec.secret.clone(),
            "--server".into(),
            self.server_addr.to_string(),
            "--database".into(),
            database_url.into(),
        ]
    }
}

impl Drop for ComponentSlot {
    fn drop(&mut self) {
        self.pool.release(self.spec.clone());
    }
}
