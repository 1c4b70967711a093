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
    #[error("setting `{key}`{origin}: {message}")]
    Invalid {
        key: &'static str,
        origin: String,
        message: String,
    },
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Human,
    /// One JSON object per line.
    Json,
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
    #[serde(default)]
    pub service: Option<toml::Table>,
    #[serde(default)]
    pub rate_limits: Option<toml::Table>,
    /// `[http]`: the HTTP gateway (off without `listen`).
    pub http: Option<crate::gateway::config::HttpFile>,
    /// `[feeds]`: how feeds are fetched and published.
    pub feeds: Option<crate::feeds::config::FeedsFile>,
    /// `[[feed]]`: feeds polled into nodes.
    #[serde(default)]
    pub feed: Vec<crate::feeds::config::FeedFile>,
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

/// The validated configuration pubsubd runs with.
#[derive(Clone)]
pub struct Config {
    /// The component JID the service answers as, e.g. `pubsub.example.org`.
    pub jid: BareJid,
    /// The XEP-0114 shared secret.
    pub secret: Secret,
    /// The XMPP server's component port, `host:port`.
    pub server: String,
    /// Where the data lives: PostgreSQL, or an SQLite file (the default).
    pub database: Database,
    pub log_format: LogFormat,
    pub fanout_workers: usize,
    /// Subscriptions per fan-out page.
    pub fanout_page_size: u32,
    /// How long a fan-out claim holds without renewal.
    pub fanout_lease: Duration,
    pub request_handlers: usize,
    pub outgoing_queue: usize,
    pub db_pool: u32,
    /// PostgreSQL connections of the fan-out workers, a pool of their own so that a
    /// flood of requests cannot starve delivery (SQLite: shared with requests).
    pub fanout_db_pool: u32,
    /// Component connections to open for the JID (ejabberd balances several; Prosody
    /// accepts one).
    pub connections: usize,
    /// The server's XEP-0033 multicast service, through which fan-out addresses one
    /// notification to many recipients once the service has shown it takes them.
    pub multicast: Option<Multicast>,
    pub max_payload_size: usize,
    /// Largest stanza read whole from the server, in bytes; a larger one is skipped and
    /// answered with an error, and the stream goes on.
    pub max_stanza_size: usize,
    /// Where to serve the status page (`/`), `/metrics`, `/healthz` and `/readyz`; off
    /// when `None`.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// The `[service]` table, handed to the pubsub policy as it is.
    pub service: toml::Table,
    /// The `[rate_limits]` table, handed to the rate limiter as it is.
    pub rate_limits: toml::Table,
    /// The HTTP gateway; off when `None`.
    pub http: Option<crate::gateway::config::HttpConfig>,
    /// Feed ingestion settings and the `[[feed]]` entries.
    pub feeds: crate::feeds::config::FeedsConfig,
    /// Where the file came from, for error messages.
    pub source: Option<PathBuf>,
}

/// What the admin commands (`pubsubd node …`, `stats`, …) run with. No `Debug`: the
/// database URL may hold a password.
#[derive(Clone)]
pub struct AdminConfig {
    pub database: Database,
    pub jid: Option<BareJid>,
    pub max_payload_size: usize,
    pub service: toml::Table,
    pub source: Option<PathBuf>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("jid", &self.jid)
            .field("secret", &self.secret)
            .field("server", &self.server)
            .field("database", &self.database)
            .field("fanout_workers", &self.fanout_workers)
            .finish_non_exhaustive()
    }
}

/// The `multicast` and `multicast_limit` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Multicast {
    /// The service's JID, e.g. `multicast.example.org` (ejabberd's `mod_multicast`).
    pub jid: String,
    /// The most recipients one stanza may address; the service's advertised limit
    /// applies when it is lower.
    pub limit: usize,
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

/// A secret that never shows up in logs or `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// The secret itself; call only where it is sent to the server.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
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
            max_payload_size: file_cfg.max_payload_size.unwrap_or(DEFAULT_MAX_PAYLOAD),
            service: file_cfg.service.unwrap_or_default(),
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

    fn merge(f: FileConfig, o: Overrides, path: Option<&Path>) -> Result<Config, ConfigError> {
        let origin = |from_flag: bool| match (from_flag, path) {
            (false, Some(p)) => format!(" in {}", p.display()),
            _ => String::new(),
        };
        let jid_from_flag = o.jid.is_some();
        let jid_str = o.jid.or(f.jid).ok_or(ConfigError::Missing {
            key: "jid",
            flag: "jid",
            env: "PUBSUBD_JID",
        })?;
        let jid: BareJid = jid_str.parse().map_err(|e| ConfigError::Invalid {
            key: "jid",
            origin: origin(jid_from_flag),
            message: format!("`{jid_str}` is not a valid JID: {e}"),
        })?;
        if jid.node().is_some() {
            return Err(ConfigError::Invalid {
                key: "jid",
                origin: origin(jid_from_flag),
                message: format!("a component JID is a bare domain, not `{jid}`"),
            });
        }
        // A secret given directly beats a secret file at the same level; flags beat the file.
        let secret = match (o.secret, o.secret_file, f.secret, f.secret_file) {
            (Some(s), _, _, _) => s,
            (None, Some(p), _, _) => read_secret(&p)?,
            (None, None, Some(s), _) => s,
            (None, None, None, Some(p)) => read_secret(&p)?,
            (None, None, None, None) => {
                return Err(ConfigError::Missing {
                    key: "secret",
                    flag: "secret",
                    env: "PUBSUBD_SECRET",
                })
            }
        };
        let server_from_flag = o.server.is_some();
        let server = o.server.or(f.server).ok_or(ConfigError::Missing {
            key: "server",
            flag: "server",
            env: "PUBSUBD_SERVER",
        })?;
        if !server.contains(':') {
            return Err(ConfigError::Invalid {
                key: "server",
                origin: origin(server_from_flag),
                message: format!("expected HOST:PORT, got `{server}`"),
            });
        }
        let database = Database::from_setting(o.database, f.database, path)?;
        let fanout_workers = positive(
            "fanout_workers",
            o.fanout_workers.or(f.fanout_workers),
            DEFAULT_FANOUT_WORKERS,
            &origin(false),
        )?;
        let fanout_page_size = positive(
            "fanout_page_size",
            f.fanout_page_size,
            DEFAULT_FANOUT_PAGE_SIZE,
            &origin(false),
        )?
        .min(u32::MAX as usize) as u32;
        let fanout_lease = Duration::from_secs(positive(
            "fanout_lease_secs",
            f.fanout_lease_secs,
            DEFAULT_FANOUT_LEASE_SECS,
            &origin(false),
        )? as u64);
        let request_handlers = positive(
            "request_handlers",
            f.request_handlers,
            DEFAULT_REQUEST_HANDLERS,
            &origin(false),
        )?;
        let outgoing_queue = positive(
            "outgoing_queue",
            f.outgoing_queue,
            DEFAULT_OUTGOING_QUEUE,
            &origin(false),
        )?;
        let db_pool = positive(
            "db_pool",
            f.db_pool.map(|v| v as usize),
            DEFAULT_DB_POOL as usize,
            &origin(false),
        )? as u32;
        // Each worker uses at most two connections at once (its page or cursor write,
        // and a lease renewal); one more is held by the LISTEN connection.
        let fanout_db_pool = positive(
            "fanout_db_pool",
            f.fanout_db_pool.map(|v| v as usize),
            2 * fanout_workers + 1,
            &origin(false),
        )? as u32;
        let connections = positive("connections", f.connections, 1, &origin(false))?;
        let multicast_limit = positive(
            "multicast_limit",
            f.multicast_limit,
            DEFAULT_MULTICAST_LIMIT,
            &origin(false),
        )?;
        let multicast = match f.multicast {
            None => None,
            Some(jid) => Some(Multicast {
                jid: domain_jid("multicast", &jid, &origin(false))?,
                limit: multicast_limit,
            }),
        };
        let max_payload_size = positive(
            "max_payload_size",
            f.max_payload_size,
            DEFAULT_MAX_PAYLOAD,
            &origin(false),
        )?;
        let max_stanza_size = positive(
            "max_stanza_size",
            f.max_stanza_size,
            stanza_reader::DEFAULT_MAX_STANZA_BYTES,
            &origin(false),
        )?;
        if max_stanza_size <= max_payload_size {
            return Err(ConfigError::Invalid {
                key: "max_stanza_size",
                origin: origin(false),
                message: format!(
                    "must be larger than max_payload_size ({max_payload_size}), or no payload of that size could arrive"
                ),
            });
        }
        let metrics_from_flag = o.metrics_listen.is_some();
        let metrics_listen = match o.metrics_listen.or(f.metrics_listen) {
            None => None,
            Some(s) => Some(s.parse().map_err(|e| ConfigError::Invalid {
                key: "metrics_listen",
                origin: origin(metrics_from_flag),
                message: format!("expected IP:PORT, got `{s}`: {e}"),
            })?),
        };
        let invalid = |(key, message): (&'static str, String)| ConfigError::Invalid {
            key,
            origin: origin(false),
            message,
        };
        let http = match f.http {
            Some(h) => h.validate().map_err(invalid)?,
            None => None,
        };
        let feeds =
            crate::feeds::config::FeedsConfig::from_file(f.feeds, f.feed).map_err(invalid)?;
        Ok(Config {
            jid,
            secret: Secret(secret),
            server,
            database,
            log_format: o.log_format.or(f.log_format).unwrap_or_default(),
            fanout_workers,
            fanout_page_size,
            fanout_lease,
            request_handlers,
            outgoing_queue,
            db_pool,
            fanout_db_pool,
            connections,
            multicast,
            max_payload_size,
            max_stanza_size,
            metrics_listen,
            service: f.service.unwrap_or_default(),
            rate_limits: f.rate_limits.unwrap_or_default(),
            http,
            feeds,
            source: path.map(Path::to_path_buf),
        })
    }
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
        assert_eq!(c.jid.to_string(), "b.example");
        assert_eq!(c.secret.expose(), "s1");
    }

    #[test]
    fn multicast_is_a_service_jid_with_a_positive_limit() {
        let base = "jid = 'a.example'\nsecret = 's'\nserver = 'h:1'\ndatabase = 'x'\n";
        let merge = |extra: &str| {
            Config::merge(file(&format!("{base}{extra}")), Overrides::default(), None)
        };
        assert_eq!(merge("").expect("valid").multicast, None, "off by default");
        assert_eq!(
            merge("multicast = 'multicast.a.example'")
                .expect("valid")
                .multicast,
            Some(Multicast {
                jid: "multicast.a.example".into(),
                limit: DEFAULT_MULTICAST_LIMIT,
            })
        );
        assert_eq!(
            merge("multicast = 'multicast.a.example'\nmulticast_limit = 20")
                .expect("valid")
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
    fn example_config_file_is_valid() {
        let f = file(include_str!("../examples/pubsubd.toml"));
        assert_eq!(f.fanout_page_size, Some(500));
        assert_eq!(f.fanout_lease_secs, Some(30));
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
