//! Where a throwaway server keeps its files and which ports it listens on:
//! everything the per-kind config writers need, decided once per server.

use std::path::{Path, PathBuf};

use super::slots::SlotSpec;

/// The XMPP domain every throwaway server hosts.
pub const DOMAIN: &str = "localhost";

/// The JID of the server's own pubsub service (Prosody's `pubsub` component,
/// ejabberd's `mod_pubsub`), kept for benchmark comparisons with pubsubd.
pub const BUILTIN_PUBSUB_JID: &str = "pubsub.localhost";

/// The XEP-0033 multicast service on both servers: ejabberd's `mod_multicast`, and on
/// Prosody the module pubsubd ships (`deploy/prosody/mod_pubsubd_multicast.lua`).
pub const MULTICAST_JID: &str = "multicast.localhost";

/// The local part of the server admin account (`admin@localhost`). Prosody
/// only lets admins create nodes on its built-in pubsub service; register this
/// user to benchmark it.
pub const ADMIN_USER: &str = "admin";

/// Set to anything to run the servers with debug logging (every stanza ends up
/// in the log; too slow for load tests).
pub const DEBUG_ENV: &str = "PUBSUBD_TESTKIT_DEBUG_SERVERS";

/// Lua statements added to the global section of Prosody's config, after the harness's
/// own settings (a later assignment wins): for measuring a server tuning, for example
/// `PUBSUBD_TESTKIT_PROSODY_GLOBAL='gc = { mode = "generational" }'`.
pub const PROSODY_GLOBAL_ENV: &str = "PUBSUBD_TESTKIT_PROSODY_GLOBAL";

/// Ports, paths and component slots of one server instance.
#[derive(Debug, Clone)]
pub struct ServerLayout {
    /// Root of the instance's scratch directory.
    pub root: PathBuf,
    /// Client-to-server port on 127.0.0.1.
    pub c2s_port: u16,
    /// XEP-0114 component port on 127.0.0.1.
    pub component_port: u16,
    /// The component JIDs and secrets the server accepts.
    pub slots: Vec<SlotSpec>,
    /// Whether the server runs its XEP-0033 service at [`MULTICAST_JID`].
    pub multicast: bool,
}

impl ServerLayout {
    /// The server's config file.
    pub fn config_path(&self, file_name: &str) -> PathBuf {
        self.root.join(file_name)
    }

    /// The directory holding the server's persistent data (accounts,
    /// offline messages), kept across restarts.
    pub fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }

    /// The file receiving the server's stdout and stderr.
    pub fn log_path(&self) -> PathBuf {
        self.root.join("server.log")
    }

    /// The root as a path.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether debug logging was asked for through [`DEBUG_ENV`].
    pub fn debug_logging() -> bool {
        std::env::var_os(DEBUG_ENV).is_some()
    }

    /// The statements [`PROSODY_GLOBAL_ENV`] adds to Prosody's global settings, if any.
    pub fn prosody_global_extra() -> Option<String> {
        std::env::var(PROSODY_GLOBAL_ENV)
            .ok()
            .filter(|extra| !extra.trim().is_empty())
    }
}
