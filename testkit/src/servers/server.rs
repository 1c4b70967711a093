//! One throwaway XMPP server process: start, stop, restart on the same ports
//! and data, kill, and the addresses tests connect to.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::anyhow;

use super::kind::ServerKind;
use super::layout::{ServerLayout, DOMAIN};
use super::readiness::{wait_ready, Expectations, NotReady};
use super::slots::{make_slot_specs, ComponentSlot, SlotPool};
use crate::account::Account;
use crate::client::{register_account, ClientError};
use crate::ports::free_ports;
use crate::process::{log_len, log_tail, raise_fd_limit, ManagedChild, ScratchDir, LOG_TAIL_LINES};

/// How long a start may take. ejabberd needs about 2.5 s on an idle machine;
/// this leaves room for a machine busy compiling.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a graceful stop may take before the group is SIGKILLed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// How many times a first start is retried on fresh ports when another
/// process grabbed one between our check and the server's bind.
const PORT_RETRIES: usize = 3;

/// A throwaway Prosody or ejabberd listening on 127.0.0.1 only, with its
/// config and data in a scratch directory that is removed on drop.
///
/// The process is in its own process group and dies with the test process
/// (parent-death signal), even when the test binary is SIGKILLed.
#[derive(Debug)]
pub struct XmppServer {
    kind: ServerKind,
    layout: ServerLayout,
    slots: SlotPool,
    privileged: SlotPool,
    child: Option<ManagedChild>,
    last_startup: Duration,
    // Declared last: dropped after the child is killed.
    dir: ScratchDir,
}

impl XmppServer {
    /// Starts a new dedicated server of `kind` on free loopback ports.
    /// Blocks until it accepts connections (about 0.1 s for Prosody, 2.5 s
    /// for ejabberd).
    pub fn start_new(kind: ServerKind) -> anyhow::Result<Self> {
        Self::start_configured(kind, true)
    }

    /// Starts a new dedicated server of `kind` without its XEP-0033 multicast service;
    /// see [`Self::start_new`].
    pub fn start_without_multicast(kind: ServerKind) -> anyhow::Result<Self> {
        Self::start_configured(kind, false)
    }

    fn start_configured(kind: ServerKind, multicast: bool) -> anyhow::Result<Self> {
        raise_fd_limit();
        let dir = ScratchDir::create(kind.name())?;
        let slots = make_slot_specs(DOMAIN);
        let mut attempt = 1;
        loop {
            let ports = free_ports(2)?;
            let layout = ServerLayout {
                root: dir.path().to_path_buf(),
                c2s_port: ports[0],
                component_port: ports[1],
                slots: slots.clone(),
                multicast,
            };
            kind.write_config(&layout)?;
            match launch(kind, &layout) {
                Ok((child, took)) => {
                    return Ok(Self {
                        kind,
                        slots: SlotPool::of(&layout.slots, false),
                        privileged: SlotPool::of(&layout.slots, true),
                        layout,
                        child: Some(child),
                        last_startup: took,
                        dir,
                    })
                }
                Err(NotReady::PortInUse) if attempt < PORT_RETRIES => attempt += 1,
                Err(e) => return Err(startup_error(kind, &layout, &e.to_string())),
            }
        }
    }

    /// Starts a new dedicated Prosody; see [`Self::start_new`].
    pub fn prosody() -> anyhow::Result<Self> {
        Self::start_new(ServerKind::Prosody)
    }

    /// Starts a new dedicated ejabberd; see [`Self::start_new`].
    pub fn ejabberd() -> anyhow::Result<Self> {
        Self::start_new(ServerKind::Ejabberd)
    }

    /// Starts the server again after [`Self::stop`] or [`Self::kill`], on the
    /// same ports and with the same data (accounts, offline messages). Does
    /// nothing if it is running.
    pub fn start(&mut self) -> anyhow::Result<()> {
        if self.is_running() {
            return Ok(());
        }
        let (child, took) = launch(self.kind, &self.layout)
            .map_err(|e| startup_error(self.kind, &self.layout, &e.to_string()))?;
        self.child = Some(child);
        self.last_startup = took;
        Ok(())
    }

    /// Stops the server gracefully (SIGTERM), SIGKILLing its process group if
    /// it takes longer than 10 s. Does nothing if it is not running.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        child.signal(libc::SIGTERM)?;
        let exited = child.wait_blocking(STOP_TIMEOUT)?;
        // Also takes Erlang helpers (erl_child_setup) that outlive beam.
        child.kill_group()?;
        if exited.is_none() {
            tracing::warn!("{} ignored SIGTERM for {STOP_TIMEOUT:?}", self.kind);
        }
        Ok(())
    }

    /// SIGKILLs the server's whole process group, like a crash.
    pub fn kill(&mut self) {
        self.kill_child();
    }

    /// Whether the server process is alive.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_exit_status(), Ok(None)),
            None => false,
        }
    }

    /// Prosody or ejabberd.
    pub fn kind(&self) -> ServerKind {
        self.kind
    }

    /// The XMPP domain (`localhost`).
    pub fn domain(&self) -> &'static str {
        DOMAIN
    }

    /// Where clients connect (127.0.0.1, plaintext, SASL PLAIN allowed).
    pub fn c2s_addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.layout.c2s_port))
    }

    /// Where external components (XEP-0114) connect.
    pub fn component_addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.layout.component_port))
    }

    /// Leases a component JID and secret no other live lease holds.
    ///
    /// # Panics
    /// If all [`SLOT_COUNT`](crate::SLOT_COUNT) slots are leased at once.
    pub fn lease_component(&self) -> ComponentSlot {
        self.slots.lease(self.component_addr())
    }

    /// Leases a component JID the server grants XEP-0356 privileges: roster `get` and
    /// presence `roster` (Prosody's `mod_privilege` from prosody-modules, ejabberd's
    /// `mod_privilege`).
    ///
    /// # Panics
    /// If all [`PRIVILEGED_SLOT_COUNT`](crate::PRIVILEGED_SLOT_COUNT) are leased at once.
    pub fn lease_privileged_component(&self) -> ComponentSlot {
        self.privileged.lease(self.component_addr())
    }

    /// Registers `name@localhost` with `password` by in-band registration
    /// (XEP-0077) over a fresh c2s connection.
    pub async fn register_user(&self, name: &str, password: &str) -> Result<Account, ClientError> {
        let account = Account::new(name, DOMAIN, password);
        register_account(self.c2s_addr(), &account).await?;
        Ok(account)
    }

    /// Registers a new account with a name unique in this process, starting
    /// with `prefix`; tests sharing a server never collide.
    pub async fn create_user(&self, prefix: &str) -> Result<Account, ClientError> {
        let account = Account::unique(prefix, DOMAIN);
        register_account(self.c2s_addr(), &account).await?;
        Ok(account)
    }

    /// The file receiving the server's console output (its log).
    pub fn log_path(&self) -> PathBuf {
        self.layout.log_path()
    }

    /// The last `lines` lines of the log.
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.layout.log_path(), lines)
    }

    /// The scratch directory holding config, data and log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// How long the most recent start took, until both ports were usable.
    pub fn last_startup(&self) -> Duration {
        self.last_startup
    }

    /// Kills the process group and removes the directory through a shared
    /// reference; for the exit hook of the shared servers, which are statics
    /// and never dropped.
    pub(super) fn kill_for_exit(&self) {
        if let Some(child) = self.child.as_ref() {
            child.kill_group_and_reap();
        }
        self.dir.remove_now();
    }

    fn kill_child(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill_group();
        }
    }
}

impl Drop for XmppServer {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- {} log tail ({}) ---\n{}",
                self.kind,
                self.layout.log_path().display(),
                self.log_tail(LOG_TAIL_LINES)
            );
        }
        self.kill_child();
    }
}

/// Spawns the server for `layout` and waits until it is usable; on failure
/// the child is killed (dropped) before returning.
fn launch(kind: ServerKind, layout: &ServerLayout) -> Result<(ManagedChild, Duration), NotReady> {
    let began = Instant::now();
    let log = layout.log_path();
    let log_offset = log_len(&log);
    let mut child = ManagedChild::spawn(kind.command(layout), &log)
        .map_err(|e| NotReady::Failed(format!("{e:#}")))?;
    let ready = kind.ready_markers(layout);
    let expect = Expectations {
        ready_markers: &ready,
        failure_markers: kind.failure_markers(),
        port_in_use_marker: kind.port_in_use_marker(),
        ports: &[layout.c2s_port, layout.component_port],
        log_offset,
        timeout: STARTUP_TIMEOUT,
    };
    wait_ready(&mut child, &log, &expect)?;
    let took = began.elapsed();
    tracing::info!(
        "{kind} up on c2s 127.0.0.1:{} / component 127.0.0.1:{} in {took:?}",
        layout.c2s_port,
        layout.component_port,
    );
    Ok((child, took))
}

fn startup_error(kind: ServerKind, layout: &ServerLayout, why: &str) -> anyhow::Error {
    let log = layout.log_path();
    anyhow!(
        "{kind} failed to start (c2s port {}, component port {}): {why}\n\
         --- last {LOG_TAIL_LINES} lines of {} ---\n{}",
        layout.c2s_port,
        layout.component_port,
        log.display(),
        log_tail(&log, LOG_TAIL_LINES)
    )
}
