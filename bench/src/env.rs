//! The environment under test: where the XMPP server listens, which JIDs the
//! services have, and the pids to watch. `serve-env` starts one with the
//! testkit and writes it as JSON; the scenarios read it back.
//!
//! Owns process start-up for benchmarks. Nothing here sends load.

use std::io::Read as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context as _};
use pubsubd_testkit::{PubsubdProcess, ServerKind, TestDb, XmppServer, BUILTIN_PUBSUB_JID};
use serde::{Deserialize, Serialize};

/// How long pubsubd may take to connect (migrations on a fresh database
/// included) on a machine that is busy compiling.
const PUBSUBD_READY_TIMEOUT: Duration = Duration::from_secs(60);

/// pubsubd's log level under load: per-stanza debug logging would measure
/// the logger.
const PUBSUBD_LOG_LEVEL: &str = "info";

/// A component identity: JID and secret.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Slot {
    /// Component JID.
    pub jid: String,
    /// XEP-0114 secret.
    pub secret: String,
}

/// Everything a scenario needs to know about the environment.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Env {
    /// `prosody` or `ejabberd`.
    pub server_kind: String,
    /// XMPP domain of the users.
    pub domain: String,
    /// Client port.
    pub c2s: SocketAddr,
    /// Component port.
    pub component: SocketAddr,
    /// The server's own pubsub service.
    pub builtin_pubsub: String,
    /// pubsubd's JID, if it runs.
    pub pubsubd_jid: Option<String>,
    /// The server's main process.
    pub server_pid: Option<u32>,
    /// pubsubd's process.
    pub pubsubd_pid: Option<u32>,
    /// pubsubd's database.
    pub database_url: Option<String>,
    /// The slot the `route` scenario sends from.
    pub route_slot: Slot,
    /// The slot virtual subscribers live on.
    pub sink_slot: Slot,
    /// pubsubd's log file.
    pub pubsubd_log: Option<PathBuf>,
    /// The server's scratch directory (config, log).
    pub server_dir: PathBuf,
    /// Further pubsubd builds attached side by side (`serve-env --extra-pubsubd`),
    /// each with its own JID and database: `--target <name>` measures one.
    #[serde(default)]
    pub extra_pubsubd: Vec<ExtraPubsubd>,
}

/// Another pubsubd binary running beside the main one (e.g. an older commit,
/// as a baseline measured in the same run).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExtraPubsubd {
    /// The name a scenario's `--target` uses.
    pub name: String,
    /// Its component JID.
    pub jid: String,
    /// Its process.
    pub pid: u32,
    /// Its log file.
    pub log: PathBuf,
}

impl Env {
    /// Reads an environment file written by `serve-env`.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("invalid {}", path.display()))
    }

    /// The pubsub JID for a `--target`: `pubsubd`, `builtin`, or a JID.
    pub fn service(&self, target: &str) -> anyhow::Result<String> {
        match target {
            "pubsubd" => self
                .pubsubd_jid
                .clone()
                .context("this environment runs no pubsubd"),
            "builtin" => Ok(self.builtin_pubsub.clone()),
            other => Ok(self
                .extra_pubsubd
                .iter()
                .find(|e| e.name == other)
                .map_or_else(|| other.to_string(), |e| e.jid.clone())),
        }
    }

    /// The pubsubd process behind a `--target`, if it is one this
    /// environment started.
    pub fn pubsubd_pid_of(&self, target: &str) -> Option<u32> {
        match target {
            "pubsubd" => self.pubsubd_pid,
            other => self
                .extra_pubsubd
                .iter()
                .find(|e| e.name == other)
                .map(|e| e.pid),
        }
    }
}

/// What `serve-env` starts.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Server kind.
    pub kind: ServerKind,
    /// The pubsubd binary; `None` starts none.
    pub pubsubd: Option<PathBuf>,
    /// Where to write the environment JSON (also printed on stdout).
    pub env_file: Option<PathBuf>,
    /// Extra arguments for `pubsubd run`.
    pub pubsubd_args: Vec<String>,
    /// Further pubsubd binaries by name, started the same way beside it.
    pub extra_pubsubd: Vec<(String, PathBuf)>,
}

/// Starts server, database and pubsubd, prints the environment, and keeps
/// them running until stdin closes (or the process is signalled; the
/// testkit's children die with us).
///
/// Runs on the main thread: the testkit ties its children's lives to the
/// thread that spawned them (parent-death signal), so nothing here may run
/// on a pool thread that could exit.
pub fn serve(options: &ServeOptions) -> anyhow::Result<()> {
    let server = XmppServer::start_new(options.kind)?;
    let route = server.lease_component();
    let sink = server.lease_component();
    let service = server.lease_component();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut db = None;
    let mut pubsubd = None;
    if let Some(bin) = &options.pubsubd {
        let test_db = runtime.block_on(TestDb::create())?;
        let mut args = service.pubsubd_args(test_db.url());
        args.extend(options.pubsubd_args.iter().cloned());
        let mut process = PubsubdProcess::spawn(bin, &args, &[("RUST_LOG", PUBSUBD_LOG_LEVEL)])?;
        runtime.block_on(process.wait_for_log("component connected", PUBSUBD_READY_TIMEOUT))?;
        db = Some(test_db);
        pubsubd = Some(process);
    }
    // The extra builds: each its own slot and database, the same settings.
    let mut extras = Vec::new();
    for (name, bin) in &options.extra_pubsubd {
        let slot = server.lease_component();
        let test_db = runtime.block_on(TestDb::create())?;
        let mut args = slot.pubsubd_args(test_db.url());
        args.extend(options.pubsubd_args.iter().cloned());
        let mut process = PubsubdProcess::spawn(bin, &args, &[("RUST_LOG", PUBSUBD_LOG_LEVEL)])?;
        runtime
            .block_on(process.wait_for_log("component connected", PUBSUBD_READY_TIMEOUT))
            .with_context(|| format!("pubsubd `{name}` ({})", bin.display()))?;
        extras.push((name.clone(), slot, test_db, process));
    }
    let pubsubd_pid = pubsubd.as_ref().map(PubsubdProcess::pid);
    let server_pid = server_process(server.dir());
    let env = Env {
        server_kind: options.kind.name().to_string(),
        domain: server.domain().to_string(),
        c2s: server.c2s_addr(),
        component: server.component_addr(),
        builtin_pubsub: BUILTIN_PUBSUB_JID.to_string(),
        pubsubd_jid: pubsubd.as_ref().map(|_| service.jid().to_string()),
        server_pid,
        pubsubd_pid,
        database_url: db.as_ref().map(|d| d.url().to_string()),
        route_slot: Slot {
            jid: route.jid().to_string(),
            secret: route.secret().to_string(),
        },
        sink_slot: Slot {
            jid: sink.jid().to_string(),
            secret: sink.secret().to_string(),
        },
        pubsubd_log: pubsubd.as_ref().map(PubsubdProcess::log_path),
        server_dir: server.dir().to_path_buf(),
        extra_pubsubd: extras
            .iter()
            .map(|(name, slot, _, process)| ExtraPubsubd {
                name: name.clone(),
                jid: slot.jid().to_string(),
                pid: process.pid(),
                log: process.log_path(),
            })
            .collect(),
    };
    let json = serde_json::to_string(&env)?;
    if let Some(path) = &options.env_file {
        std::fs::write(path, &json).with_context(|| format!("cannot write {}", path.display()))?;
    }
    println!("{json}");
    eprintln!("serve-env: running; close stdin (or send SIGTERM) to stop");
    // Anything on stdin is ignored; its end is the signal to stop.
    let mut sink_buf = [0u8; 256];
    let mut stdin = std::io::stdin();
    while stdin.read(&mut sink_buf).unwrap_or(0) > 0 {}
    if let Some(process) = pubsubd.as_mut() {
        if !process.is_running() {
            bail!("pubsubd exited during the run:\n{}", process.log_tail(40));
        }
        let _ = runtime.block_on(process.terminate());
    }
    for (name, _, _, process) in &mut extras {
        if !process.is_running() {
            bail!(
                "pubsubd `{name}` exited during the run:\n{}",
                process.log_tail(40)
            );
        }
        let _ = runtime.block_on(process.terminate());
    }
    drop(extras);
    drop(pubsubd);
    drop(db);
    drop(server);
    Ok(())
}

/// The server's main process: the testkit does not expose its pid, but its
/// command line names the instance's scratch directory (Prosody's config
/// path, ejabberd's Mnesia directory), and no other process's does.
fn server_process(dir: &Path) -> Option<u32> {
    let needle = dir.to_string_lossy().into_owned();
    let mut pids: Vec<u32> = std::fs::read_dir("/proc")
        .ok()?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&needle))
        })
        .collect();
    pids.sort_unstable();
    pids.first().copied()
}
