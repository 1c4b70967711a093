//! Configuration: one place that turns the TOML file, the `PUBSUBD_*` environment and
//! the command-line flags into a validated [`Config`].
//!
//! Precedence is flags > environment > file > defaults. The environment is read by clap
//! (each flag declares its variable), so by the time [`Config::load`] runs, a flag value
//! already means "flag or environment" and simply overrides the file.
//!
//! This module owns no I/O besides reading the config and secret files.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use xmpp_parsers::jid::BareJid;

use crate::fanout::Tuning as FanoutTuning;
use crate::feeds::config::{FeedFile, FeedsConfig, FeedsFile};
use crate::gateway::config::{HttpConfig, HttpFile};
use crate::protocol::rate_limit::Rates;
use crate::pubsub::Policy;
pub use crate::telemetry::LogFormat;
pub use crate::xmpp::Secret;
use crate::xmpp::{MulticastSettings, ServerAddr, Settings as XmppSettings};

/// Default number of fan-out workers: each drives one job at a time, and the XMPP
/// server (not pubsubd) is the bottleneck, so a handful keeps the link saturated.
const DEFAULT_FANOUT_WORKERS: usize = 4;
/// Default subscriptions per fan-out page: one page is one barrier round trip and one
/// cursor write, so bigger pages cost fewer of both; smaller pages mean less to send
/// again after a dropped connection. Memory per worker is about a page of rows.
const DEFAULT_FANOUT_PAGE_SIZE: usize = 500;
/// Default fan-out lease, seconds: the jobs of a process that is alive but cut off from
/// the database are taken over this long after its last renewal (renewals run three
/// times per lease); a dead process's are taken over at once, when its liveness session
/// ends. Long, because a lease that runs out under a live owner costs duplicates.
const DEFAULT_FANOUT_LEASE_SECS: usize = 30;
/// Default number of request handlers. Stanzas from one sender always go to the same
/// handler (so a client's requests are applied in the order it sent them); different
/// senders proceed in parallel.
const DEFAULT_REQUEST_HANDLERS: usize = 16;
/// Default capacity of the queue in front of the connection writer, in stanzas.
/// Big enough to batch many stanzas per socket write, small enough that a slow server
/// pushes back on the workers within milliseconds.
const DEFAULT_OUTGOING_QUEUE: usize = 4096;
/// Default PostgreSQL pool size for request handlers (and the gateway, feeds and
/// presence). An SQLite store caps its pool at `store::sqlite::MAX_CONNECTIONS`.
const DEFAULT_DB_POOL: u32 = 16;
/// Default most recipients per XEP-0033 multicast stanza. ejabberd advertises its own
/// limit only when it is configured (its default for a component is 20 and is then
/// assumed); 100 keeps a stanza of `bcc` addresses a few kilobytes long.
const DEFAULT_MULTICAST_LIMIT: usize = 100;
/// Default bound on a whole shutdown, from the signal to the exit: under systemd's and
/// Kubernetes' 30 s before they kill the process, with room to spare.
const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(25);
/// Default largest item payload accepted, in bytes (XEP-0060 `pubsub#max_payload_size`).
const DEFAULT_MAX_PAYLOAD: usize = 64 * 1024;

/// What went wrong while building the configuration. Each variant names the key and
/// the file, so an operator can fix it without reading the source.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("cannot read secret file {path}: {source}")]
    SecretFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("missing setting `{key}`: give --{flag}, {env} or `{key}` in the config file")]
    Missing {
        key: &'static str,
        flag: &'static str,
        env: &'static str,
    },
    /// A table checked as a whole (`[service]`, `[rate_limits]`): the message names
    /// the key, e.g. `service.create_nodes`.
    #[error("{file}: {message}")]
    Table { file: String, message: String },
    #[error("setting `{key}`{origin}: {message}")]
    Invalid {
        key: &'static str,
        origin: String,
        message: String,
    },
}

/// The TOML file as written by the operator. Every key is optional here; [`Config::load`]
/// decides what is required.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub jid: Option<String>,
    pub secret: Option<String>,
    pub secret_file: Option<PathBuf>,
    pub server: Option<String>,
    pub database: Option<String>,
    pub log_format: Option<LogFormat>,
    pub fanout_workers: Option<usize>,
    pub fanout_page_size: Option<usize>,
    pub fanout_lease_secs: Option<usize>,
    pub fanout_latency_ms: Option<usize>,
    pub request_handlers: Option<usize>,
    pub outgoing_queue: Option<usize>,
    pub db_pool: Option<u32>,
    pub fanout_db_pool: Option<u32>,
    pub connections: Option<usize>,
    pub multicast: Option<String>,
    pub multicast_limit: Option<usize>,
    pub max_payload_size: Option<usize>,
    pub max_stanza_size: Option<usize>,
    pub metrics_listen: Option<String>,
    /// Seconds (`25`) or a duration (`"25s"`, `"1m"`).
    pub shutdown_timeout: Option<DurationSetting>,
    #[serde(default)]
    pub service: Option<toml::Table>,
    #[serde(default)]
    pub rate_limits: Option<toml::Table>,
    /// `[http]`: the HTTP gateway (off without `listen`).
    pub http: Option<HttpFile>,
    /// `[feeds]`: how feeds are fetched and published.
    pub feeds: Option<FeedsFile>,
    /// `[[feed]]`: feeds polled into nodes.
    #[serde(default)]
    pub feed: Vec<FeedFile>,
}

/// A duration in the file: whole seconds, or a number with a unit (s, m, h, d).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum DurationSetting {
    Seconds(u64),
    Text(String),
}

impl DurationSetting {
    fn parse(&self, key: &'static str, origin: &str) -> Result<Duration, ConfigError> {
        let d = match self {
            DurationSetting::Seconds(n) => Duration::from_secs(*n),
            DurationSetting::Text(t) => {
                crate::feeds::config::parse_duration(t).map_err(|message| ConfigError::Invalid {
                    key,
                    origin: origin.to_string(),
                    message,
                })?
            }
        };
        if d.is_zero() {
            return Err(ConfigError::Invalid {
                key,
                origin: origin.to_string(),
                message: "must be at least 1s".into(),
            });
        }
        Ok(d)
    }
}

/// Values given on the command line (or through their `PUBSUBD_*` variables).
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub jid: Option<String>,
    pub secret: Option<String>,
    pub secret_file: Option<PathBuf>,
    pub server: Option<String>,
    pub database: Option<String>,
    pub log_format: Option<LogFormat>,
    pub fanout_workers: Option<usize>,
    pub metrics_listen: Option<String>,
}

/// The validated configuration pubsubd runs with: one small settings struct per layer,
/// each built here and handed to its layer, which never sees the rest.
#[derive(Clone)]
pub struct Config {
    /// The component connections (`jid`, `secret`, `server`, `connections`,
    /// `outgoing_queue`, `max_stanza_size`, `multicast`).
    pub xmpp: XmppSettings,
    /// The fan-out engine's tuning (`fanout_*`).
    pub fanout: FanoutTuning,
    /// Where the data lives: PostgreSQL, or an SQLite file (the default).
    pub database: Database,
    /// Connections of the request handlers (and the gateway, feeds and presence).
    pub db_pool: u32,
    pub log_format: LogFormat,
    pub request_handlers: usize,
    pub max_payload_size: usize,
    /// Where to serve the status page (`/`), `/metrics`, `/healthz` and `/readyz`; off
    /// when `None`.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// The `[service]` policy (who may create nodes, administrators, limits), checked.
    pub policy: Policy,
    /// The `[rate_limits]` rates, checked.
    pub rates: Rates,
    /// The HTTP gateway; off when `None`.
    pub http: Option<HttpConfig>,
    /// Feed ingestion settings and the `[[feed]]` entries.
    pub feeds: FeedsConfig,
    /// The bound on a whole shutdown, from SIGTERM to the exit.
    pub shutdown_timeout: Duration,
    /// Where the file came from, for error messages.
    pub source: Option<PathBuf>,
}

/// What the admin commands (`pubsubd node …`, `stats`, …) run with. No `Debug`: the
/// database URL may hold a password.
#[derive(Clone)]
pub struct AdminConfig {
    pub database: Database,
    pub jid: Option<BareJid>,
    /// The `[service]` policy (with `max_payload_size`), checked.
    pub policy: Policy,
    pub source: Option<PathBuf>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("xmpp", &self.xmpp)
            .field("database", &self.database)
            .field("fanout", &self.fanout)
            .finish_non_exhaustive()
    }
}

/// A JID made of a domain only, as a service's JID is.
fn domain_jid(key: &'static str, value: &str, origin: &str) -> Result<String, ConfigError> {
    let invalid = |message: String| ConfigError::Invalid {
        key,
        origin: origin.to_string(),
        message,
    };
    let jid = BareJid::new(value.trim()).map_err(|e| invalid(format!("`{value}`: {e}")))?;
    if jid.node().is_some() {
        return Err(invalid(format!(
            "expected a service's domain JID such as multicast.example.org, got `{value}`"
        )));
    }
    Ok(jid.to_string())
}

/// Where pubsubd keeps its data: the `database` setting, parsed once.
#[derive(Clone, PartialEq, Eq)]
pub enum Database {
    /// PostgreSQL at this `postgres://` or `postgresql://` URL: production, and the
    /// only backend several pubsubd instances can share.
    Postgres(String),
    /// An SQLite file, from an `sqlite:` URL, a plain path, or the default
    /// ([`crate::store::sqlite::DEFAULT_FILE`] in the working directory) when no
    /// `database` is configured. One pubsubd instance per file.
    Sqlite(PathBuf),
}

impl Database {
    /// Reads a `database` value: `postgres://…`/`postgresql://…` is PostgreSQL,
    /// `sqlite:PATH` or anything without a `scheme://` is an SQLite file.
    pub fn parse(value: &str) -> Result<Database, String> {
        if value.starts_with("postgres://") || value.starts_with("postgresql://") {
            return Ok(Database::Postgres(value.to_string()));
        }
        if value.starts_with("sqlite:") {
            return crate::store::sqlite::path_from_url(value).map(Database::Sqlite);
        }
        if value.trim().is_empty() {
            return Err(
                "is empty: give a postgres:// URL or an SQLite file, or leave it out for the SQLite default"
                    .into(),
            );
        }
        if let Some((scheme, _)) = value.split_once("://") {
            return Err(format!(
                "unsupported URL scheme `{scheme}://`: pubsubd stores in PostgreSQL (postgres://…) or SQLite (sqlite:PATH or a file path)"
            ));
        }
        Ok(Database::Sqlite(PathBuf::from(value)))
    }

    /// The SQLite file in the working directory, used when nothing is configured.
    pub fn default_sqlite() -> Database {
        Database::Sqlite(PathBuf::from(crate::store::sqlite::DEFAULT_FILE))
    }

    /// The flag (or environment) value, else the value from `file`, else the default.
    fn from_setting(
        flag: Option<String>,
        in_file: Option<String>,
        file: Option<&Path>,
    ) -> Result<Database, ConfigError> {
        let origin = match (&flag, file) {
            (None, Some(p)) => format!(" in {}", p.display()),
            _ => String::new(),
        };
        match flag.or(in_file) {
            None => Ok(Database::default_sqlite()),
            Some(v) => Database::parse(&v).map_err(|message| ConfigError::Invalid {
                key: "database",
                origin,
                message,
            }),
        }
    }
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Database::Postgres(url) => write!(f, "Postgres({})", redact_url(url)),
            Database::Sqlite(path) => write!(f, "Sqlite({})", path.display()),
        }
    }
}

/// Hides the password of a `postgres://user:password@host/db` URL.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme_end + 3],
                    &userinfo[..colon],
                    &url[at..]
                ),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

impl Config {
    /// Reads only what `pubsubd migrate` needs: the database.
    pub fn database_only(file: Option<&Path>, over: Overrides) -> Result<Database, ConfigError> {
        let file_cfg = match file {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        Database::from_setting(over.database, file_cfg.database, file)
    }

    /// Reads what the admin commands need: the database, the service JID if known (for
    /// the `from` of delayed items) and the `[service]` policy.
    pub fn for_admin(file: Option<&Path>, over: Overrides) -> Result<AdminConfig, ConfigError> {
        let file_cfg = match file {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let jid_str = over.jid.clone().or(file_cfg.jid.clone());
        let jid = match jid_str {
            Some(j) => Some(j.parse::<BareJid>().map_err(|e| ConfigError::Invalid {
                key: "jid",
                origin: String::new(),
                message: format!("`{j}` is not a valid JID: {e}"),
            })?),
            None => None,
        };
        let database = Database::from_setting(over.database, file_cfg.database, file)?;
        Ok(AdminConfig {
            database,
            jid,
            policy: policy(
                file_cfg.service.as_ref(),
                file_cfg.max_payload_size.unwrap_or(DEFAULT_MAX_PAYLOAD),
                Origin(file),
            )?,
            source: file.map(Path::to_path_buf),
        })
    }

    /// Reads the optional file, applies the overrides and validates the result.
    pub fn load(file: Option<&Path>, over: Overrides) -> Result<Config, ConfigError> {
        let file_cfg = match file {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        Self::merge(file_cfg, over, file)
    }

    /// The file's values under the flags', section by section.
    fn merge(f: FileConfig, o: Overrides, path: Option<&Path>) -> Result<Config, ConfigError> {
        let origin = Origin(path);
        let max_payload_size = positive(
            "max_payload_size",
            f.max_payload_size,
            DEFAULT_MAX_PAYLOAD,
            &origin.file(),
        )?;
        let xmpp = xmpp_settings(&f, &o, origin, max_payload_size)?;
        let fanout = fanout_tuning(&f, &o, origin)?;
        let database = Database::from_setting(o.database.clone(), f.database.clone(), path)?;
        let db_pool = positive(
            "db_pool",
            f.db_pool.map(|v| v as usize),
            DEFAULT_DB_POOL as usize,
            &origin.file(),
        )? as u32;
        let request_handlers = positive(
            "request_handlers",
            f.request_handlers,
            DEFAULT_REQUEST_HANDLERS,
            &origin.file(),
        )?;
        let metrics_listen = metrics_listen(&f, &o, origin)?;
        let shutdown_timeout = match &f.shutdown_timeout {
            Some(d) => d.parse("shutdown_timeout", &origin.file())?,
            None => DEFAULT_SHUTDOWN_TIMEOUT,
        };
        let (http, feeds) = edges(f.http, f.feeds, f.feed, origin)?;
        Ok(Config {
            xmpp,
            fanout,
            database,
            db_pool,
            log_format: o.log_format.or(f.log_format).unwrap_or_default(),
            request_handlers,
            max_payload_size,
            metrics_listen,
            policy: policy(f.service.as_ref(), max_payload_size, origin)?,
            rates: Rates::from_table(&f.rate_limits.unwrap_or_default()).map_err(|message| {
                ConfigError::Table {
                    file: origin.name(),
                    message,
                }
            })?,
            http,
            feeds,
            shutdown_timeout,
            source: path.map(Path::to_path_buf),
        })
    }
}

/// Where a value came from, for error messages: the file, unless a flag gave it.
#[derive(Clone, Copy)]
struct Origin<'a>(Option<&'a Path>);

impl Origin<'_> {
    /// The file, or "the configuration" when there is none.
    fn name(self) -> String {
        self.0.map_or_else(
            || "the configuration".to_string(),
            |p| p.display().to_string(),
        )
    }

    /// " in FILE" for a value read from the file.
    fn file(self) -> String {
        self.of(false)
    }

    /// " in FILE" unless the value came from a flag (or its variable).
    fn of(self, from_flag: bool) -> String {
        match (from_flag, self.0) {
            (false, Some(p)) => format!(" in {}", p.display()),
            _ => String::new(),
        }
    }
}

/// The `[service]` table as the policy the commands apply.
fn policy(
    table: Option<&toml::Table>,
    max_payload_size: usize,
    origin: Origin,
) -> Result<Policy, ConfigError> {
    let empty = toml::Table::new();
    Policy::from_table(table.unwrap_or(&empty), max_payload_size).map_err(|message| {
        ConfigError::Table {
            file: origin.name(),
            message,
        }
    })
}

/// The component connections: who we are, how we authenticate, where the server is.
fn xmpp_settings(
    f: &FileConfig,
    o: &Overrides,
    origin: Origin,
    max_payload_size: usize,
) -> Result<XmppSettings, ConfigError> {
    let jid_from_flag = o.jid.is_some();
    let jid_str = o
        .jid
        .clone()
        .or(f.jid.clone())
        .ok_or(ConfigError::Missing {
            key: "jid",
            flag: "jid",
            env: "PUBSUBD_JID",
        })?;
    let jid: BareJid = jid_str.parse().map_err(|e| ConfigError::Invalid {
        key: "jid",
        origin: origin.of(jid_from_flag),
        message: format!("`{jid_str}` is not a valid JID: {e}"),
    })?;
    if jid.node().is_some() {
        return Err(ConfigError::Invalid {
            key: "jid",
            origin: origin.of(jid_from_flag),
            message: format!("a component JID is a bare domain, not `{jid}`"),
        });
    }
    // A secret given directly beats a secret file at the same level; flags beat the file.
    let secret = match (&o.secret, &o.secret_file, &f.secret, &f.secret_file) {
        (Some(s), _, _, _) => s.clone(),
        (None, Some(p), _, _) => read_secret(p)?,
        (None, None, Some(s), _) => s.clone(),
        (None, None, None, Some(p)) => read_secret(p)?,
        (None, None, None, None) => {
            return Err(ConfigError::Missing {
                key: "secret",
                flag: "secret",
                env: "PUBSUBD_SECRET",
            })
        }
    };
    let server_from_flag = o.server.is_some();
    let server_str = o
        .server
        .clone()
        .or(f.server.clone())
        .ok_or(ConfigError::Missing {
            key: "server",
            flag: "server",
            env: "PUBSUBD_SERVER",
        })?;
    let server: ServerAddr =
        server_str
            .parse()
            .map_err(
                |e: crate::xmpp::settings::ServerAddrError| ConfigError::Invalid {
                    key: "server",
                    origin: origin.of(server_from_flag),
                    message: e.to_string(),
                },
            )?;
    let connections = positive("connections", f.connections, 1, &origin.file())?;
    let outgoing_queue = positive(
        "outgoing_queue",
        f.outgoing_queue,
        DEFAULT_OUTGOING_QUEUE,
        &origin.file(),
    )?;
    let multicast_limit = positive(
        "multicast_limit",
        f.multicast_limit,
        DEFAULT_MULTICAST_LIMIT,
        &origin.file(),
    )?;
    let multicast = match f.multicast.as_deref() {
        Some("off") => None,
        None => Some(MulticastSettings {
            jid: None,
            limit: multicast_limit,
        }),
        Some(jid) => Some(MulticastSettings {
            jid: Some(domain_jid("multicast", jid, &origin.file())?),
            limit: multicast_limit,
        }),
    };
    let max_stanza_size = positive(
        "max_stanza_size",
        f.max_stanza_size,
        stanza_reader::DEFAULT_MAX_STANZA_BYTES,
        &origin.file(),
    )?;
    if max_stanza_size <= max_payload_size {
        return Err(ConfigError::Invalid {
            key: "max_stanza_size",
            origin: origin.file(),
            message: format!(
                "must be larger than max_payload_size ({max_payload_size}), or no payload of that size could arrive"
            ),
        });
    }
    Ok(XmppSettings {
        jid,
        secret: Secret::new(secret),
        server,
        connections,
        outgoing_queue,
        max_stanza_size,
        multicast,
    })
}

/// The fan-out engine's `fanout_*` settings.
fn fanout_tuning(
    f: &FileConfig,
    o: &Overrides,
    origin: Origin,
) -> Result<FanoutTuning, ConfigError> {
    let workers = positive(
        "fanout_workers",
        o.fanout_workers.or(f.fanout_workers),
        DEFAULT_FANOUT_WORKERS,
        &origin.of(o.fanout_workers.is_some()),
    )?;
    let page_size = positive(
        "fanout_page_size",
        f.fanout_page_size,
        DEFAULT_FANOUT_PAGE_SIZE,
        &origin.file(),
    )?
    .min(u32::MAX as usize) as u32;
    let lease = Duration::from_secs(positive(
        "fanout_lease_secs",
        f.fanout_lease_secs,
        DEFAULT_FANOUT_LEASE_SECS,
        &origin.file(),
    )? as u64);
    // Each worker uses at most two connections at once (its page or cursor write,
    // and a lease renewal); one more is held by the LISTEN connection.
    let db_pool = positive(
        "fanout_db_pool",
        f.fanout_db_pool.map(|v| v as usize),
        2 * workers + 1,
        &origin.file(),
    )? as u32;
    let latency = Duration::from_millis(positive(
        "fanout_latency_ms",
        f.fanout_latency_ms,
        crate::fanout::pace::TARGET.as_millis() as usize,
        &origin.file(),
    )? as u64);
    Ok(FanoutTuning {
        workers,
        page_size,
        lease,
        db_pool,
        latency,
    })
}

/// `metrics_listen`: an IP address and a port.
fn metrics_listen(
    f: &FileConfig,
    o: &Overrides,
    origin: Origin,
) -> Result<Option<std::net::SocketAddr>, ConfigError> {
    let from_flag = o.metrics_listen.is_some();
    match o.metrics_listen.clone().or(f.metrics_listen.clone()) {
        None => Ok(None),
        Some(s) => s.parse().map(Some).map_err(|e| ConfigError::Invalid {
            key: "metrics_listen",
            origin: origin.of(from_flag),
            message: format!("expected IP:PORT, got `{s}`: {e}"),
        }),
    }
}

/// The front ends beside XMPP: `[http]`, `[feeds]` and `[[feed]]`.
fn edges(
    http: Option<HttpFile>,
    feeds: Option<FeedsFile>,
    feed: Vec<FeedFile>,
    origin: Origin,
) -> Result<(Option<HttpConfig>, FeedsConfig), ConfigError> {
    let invalid = |(key, message): (&'static str, String)| ConfigError::Invalid {
        key,
        origin: origin.file(),
        message,
    };
    let http = match http {
        Some(h) => h.validate().map_err(invalid)?,
        None => None,
    };
    let feeds = FeedsConfig::from_file(feeds, feed).map_err(invalid)?;
    Ok((http, feeds))
}

fn positive(
    key: &'static str,
    value: Option<usize>,
    default: usize,
    origin: &str,
) -> Result<usize, ConfigError> {
    match value {
        Some(0) => Err(ConfigError::Invalid {
            key,
            origin: origin.to_string(),
            message: "must be at least 1".into(),
        }),
        Some(v) => Ok(v),
        None => Ok(default),
    }
}

/// Reads and parses the TOML file; warns when it is readable by everyone, since it
/// usually holds the component secret.
pub fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    warn_if_world_readable(path);
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

fn read_secret(path: &Path) -> Result<String, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::SecretFile {
        path: path.to_path_buf(),
        source,
    })?;
    warn_if_world_readable(path);
    Ok(text.trim_end_matches(['\n', '\r']).to_string())
}

#[cfg(unix)]
fn warn_if_world_readable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.permissions().mode() & 0o004 != 0 {
            tracing::warn!(path = %path.display(), "file is world-readable; it may hold the component secret (chmod 600 it)");
        }
    }
}

#[cfg(not(unix))]
fn warn_if_world_readable(_path: &Path) {}

/// How long to wait for the XMPP server before a start-up attempt counts as failed.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> FileConfig {
        toml::from_str(text).expect("valid toml")
    }

    #[test]
    fn flags_override_file() {
        let f = file("jid = 'a.example'\nsecret = 's1'\nserver = 'h:1'\ndatabase = 'postgres://x'");
        let o = Overrides {
            jid: Some("b.example".into()),
            ..Default::default()
        };
        let c = Config::merge(f, o, None).expect("valid");
        assert_eq!(c.xmpp.jid.to_string(), "b.example");
        assert_eq!(c.xmpp.secret.expose(), "s1");
    }

    #[test]
    fn multicast_is_discovered_named_or_off_with_a_positive_limit() {
        let base = "jid = 'a.example'\nsecret = 's'\nserver = 'h:1'\ndatabase = 'x'\n";
        let merge = |extra: &str| {
            Config::merge(file(&format!("{base}{extra}")), Overrides::default(), None)
        };
        assert_eq!(
            merge("").expect("valid").xmpp.multicast,
            Some(MulticastSettings {
                jid: None,
                limit: DEFAULT_MULTICAST_LIMIT,
            }),
            "looked for by default"
        );
        assert_eq!(
            merge("multicast = 'off'").expect("valid").xmpp.multicast,
            None
        );
        assert_eq!(
            merge("multicast = 'multicast.a.example'")
                .expect("valid")
                .xmpp
                .multicast,
            Some(MulticastSettings {
                jid: Some("multicast.a.example".into()),
                limit: DEFAULT_MULTICAST_LIMIT,
            })
        );
        assert_eq!(
            merge("multicast = 'multicast.a.example'\nmulticast_limit = 20")
                .expect("valid")
                .xmpp
                .multicast
                .map(|m| m.limit),
            Some(20)
        );
        for bad in [
            "multicast = 'someone@a.example'",
            "multicast = 'not a jid@@'",
            "multicast = 'multicast.a.example'\nmulticast_limit = 0",
        ] {
            let err = merge(bad).expect_err(bad).to_string();
            assert!(err.contains("multicast"), "{bad}: {err}");
        }
    }

    #[test]
    fn missing_key_names_flag_env_and_key() {
        let f = file("jid = 'a.example'\nserver = 'h:1'\ndatabase = 'postgres://x'");
        let err = Config::merge(f, Overrides::default(), None).expect_err("no secret");
        let msg = err.to_string();
        assert!(
            msg.contains("--secret") && msg.contains("PUBSUBD_SECRET"),
            "{msg}"
        );
    }

    #[test]
    fn gateway_and_feed_errors_name_the_key_and_the_file() {
        let base = "jid = 'a.example'\nsecret = 's'\nserver = 'h:1'\ndatabase = 'x'\n";
        let path = Path::new("/etc/pubsubd/pubsubd.toml");
        let f = file(&format!("{base}[http]\nlisten = 'nowhere'"));
        let msg = Config::merge(f, Overrides::default(), Some(path))
            .expect_err("bad listen")
            .to_string();
        assert!(
            msg.contains("http.listen") && msg.contains("pubsubd.toml"),
            "{msg}"
        );
        let f = file(&format!(
            "{base}[[feed]]\nurl = 'https://x.example/feed'\nnode = 'n'\ninterval = 'often'"
        ));
        let msg = Config::merge(f, Overrides::default(), Some(path))
            .expect_err("bad interval")
            .to_string();
        assert!(
            msg.contains("`feed`") && msg.contains("entry 1") && msg.contains("pubsubd.toml"),
            "{msg}"
        );
        let f = file(&format!("{base}[feeds]\npublisher = 'a@@b'"));
        assert!(Config::merge(f, Overrides::default(), None).is_err());
    }

    #[test]
    fn service_and_rate_limits_are_checked_at_load_naming_key_and_file() {
        let base = "jid = 'a.example'\nsecret = 's'\nserver = 'h:1'\n";
        let path = Path::new("/etc/pubsubd/pubsubd.toml");
        let merge = |extra: &str| {
            Config::merge(
                file(&format!("{base}{extra}")),
                Overrides::default(),
                Some(path),
            )
        };
        let c = merge("[service]\nadmins = ['root@a.example']\n[rate_limits]\npublish_per_jid = 5")
            .expect("valid");
        assert_eq!(c.policy.admins.len(), 1);
        for (bad, key) in [
            (
                "[service]\ncreate_nodes = 'sometimes'",
                "service.create_nodes",
            ),
            ("[service]\nadmin = []", "service.admin"),
            (
                "[rate_limits]\npublish_per_user = 1",
                "rate_limits.publish_per_user",
            ),
            (
                "[rate_limits]\npublish_per_jid = -1",
                "rate_limits.publish_per_jid",
            ),
        ] {
            let msg = merge(bad).expect_err(bad).to_string();
            assert!(
                msg.contains(key) && msg.contains("pubsubd.toml"),
                "{bad}: {msg}"
            );
        }
        let admin = Config::for_admin(None, Overrides::default()).expect("defaults");
        assert!(admin.policy.admins.is_empty());
    }

    #[test]
    fn server_must_be_host_and_port() {
        let base = "jid = 'a.example'\nsecret = 's'\n";
        for bad in [
            "server = 'h'",
            "server = 'h:0'",
            "server = 'h:99999'",
            "server = ':5347'",
        ] {
            let msg = Config::merge(
                file(&format!("{base}{bad}")),
                Overrides::default(),
                Some(Path::new("p.toml")),
            )
            .expect_err(bad)
            .to_string();
            assert!(msg.contains("`server` in p.toml"), "{bad}: {msg}");
        }
        let c = Config::merge(
            file(&format!("{base}server = 'xmpp.example.org:5347'")),
            Overrides::default(),
            None,
        )
        .expect("valid");
        assert_eq!(c.xmpp.server.port, 5347);
    }

    #[test]
    fn example_config_file_is_valid() {
        let f = file(include_str!("../examples/pubsubd.toml"));
        assert_eq!(f.fanout_page_size, Some(500));
        assert_eq!(f.fanout_lease_secs, Some(30));
    }

    #[test]
    fn fanout_latency_is_milliseconds_and_defaults_to_the_pace_target() {
        let base = "jid = 'a.example'\nsecret = 's'\nserver = 'h:1'\n";
        let merge = |extra: &str| {
            Config::merge(file(&format!("{base}{extra}")), Overrides::default(), None)
        };
        let latency = |extra: &str| merge(extra).expect(extra).fanout.latency;
        assert_eq!(latency(""), crate::fanout::pace::TARGET);
        assert_eq!(latency("fanout_latency_ms = 20"), Duration::from_millis(20));
        let msg = merge("fanout_latency_ms = 0")
            .expect_err("zero")
            .to_string();
        assert!(msg.contains("fanout_latency_ms"), "{msg}");
    }

    #[test]
    fn shutdown_timeout_is_seconds_or_a_duration_and_defaults_to_25s() {
        let base = "jid = 'a.example'\nsecret = 's'\nserver = 'h:1'\n";
        let merge = |extra: &str| {
            Config::merge(file(&format!("{base}{extra}")), Overrides::default(), None)
        };
        let secs = |extra: &str| merge(extra).expect(extra).shutdown_timeout.as_secs();
        assert_eq!(secs(""), 25);
        assert_eq!(secs("shutdown_timeout = 10"), 10);
        assert_eq!(secs("shutdown_timeout = '1m'"), 60);
        for bad in ["shutdown_timeout = 0", "shutdown_timeout = 'soon'"] {
            let msg = merge(bad).expect_err(bad).to_string();
            assert!(msg.contains("shutdown_timeout"), "{bad}: {msg}");
        }
    }

    #[test]
    fn unknown_key_is_refused() {
        let err = toml::from_str::<FileConfig>("jdi = 'x'").expect_err("typo");
        assert!(err.to_string().contains("jdi"));
    }

    #[test]
    fn user_jid_is_not_a_component_jid() {
        let f = file("jid = 'me@a.example'\nsecret='s'\nserver = 'h:1'\ndatabase = 'x'");
        assert!(Config::merge(f, Overrides::default(), None).is_err());
    }

    #[test]
    fn database_selects_the_backend() {
        let pg = Database::parse("postgresql://u@h/db").expect("postgres");
        assert_eq!(pg, Database::Postgres("postgresql://u@h/db".into()));
        assert_eq!(
            Database::parse("sqlite:///var/lib/pubsubd/p.sqlite3"),
            Ok(Database::Sqlite("/var/lib/pubsubd/p.sqlite3".into()))
        );
        assert_eq!(
            Database::parse("data/p.sqlite3"),
            Ok(Database::Sqlite("data/p.sqlite3".into()))
        );
        assert!(Database::parse("mysql://h/db")
            .expect_err("unsupported")
            .contains("mysql://"));
        assert!(Database::parse("").is_err());
    }

    #[test]
    fn no_database_means_the_sqlite_file_in_the_working_directory() {
        let f = file("jid = 'a.example'\nsecret = 's'\nserver = 'h:1'");
        let c = Config::merge(f, Overrides::default(), None).expect("valid");
        assert_eq!(c.database, Database::Sqlite("pubsubd.sqlite3".into()));
        assert_eq!(
            Config::database_only(None, Overrides::default()).expect("default"),
            Database::default_sqlite()
        );
    }

    #[test]
    fn bad_database_names_the_key_and_the_file() {
        let f = file("jid = 'a.example'\nsecret = 's'\nserver = 'h:1'\ndatabase = 'redis://x'");
        let err = Config::merge(f, Overrides::default(), Some(Path::new("p.toml")))
            .expect_err("unsupported");
        let msg = err.to_string();
        assert!(msg.contains("`database` in p.toml"), "{msg}");
    }

    #[test]
    fn secret_is_redacted() {
        let s = Secret::new("hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
        assert_eq!(
            redact_url("postgres://u:pw@h/db"),
            "postgres://u:***@h/db".to_string()
        );
        let db = Database::parse("postgres://u:pw@h/db").expect("postgres");
        assert!(!format!("{db:?}").contains("pw"));
    }
}
