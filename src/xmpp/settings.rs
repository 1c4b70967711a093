//! What the component stream needs to know, built by `config` from the file, the
//! environment and the flags. The stream never sees the configuration itself.

use xmpp_parsers::jid::BareJid;

/// The settings of the component connections.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The component JID the service answers as, e.g. `pubsub.example.org`.
    pub jid: BareJid,
    /// The XEP-0114 shared secret.
    pub secret: Secret,
    /// The XMPP server's component port.
    pub server: ServerAddr,
    /// Component connections to open for the JID (ejabberd balances several; Prosody
    /// accepts one).
    pub connections: usize,
    /// Capacity of the queue in front of each connection's writer, in stanzas.
    pub outgoing_queue: usize,
    /// Largest stanza read whole from the server, in bytes; a larger one is skipped and
    /// answered with an error, and the stream goes on.
    pub max_stanza_size: usize,
    /// The server's XEP-0033 multicast service, through which fan-out addresses one
    /// notification to many recipients once the service has shown it takes them;
    /// `None` with `multicast = "off"`.
    pub multicast: Option<MulticastSettings>,
}

/// The `multicast` and `multicast_limit` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MulticastSettings {
    /// The service's JID, e.g. `multicast.example.org` (ejabberd's `mod_multicast`);
    /// `None` to look for the server's own on every new stream (the default).
    pub jid: Option<String>,
    /// The most recipients one stanza may address; the service's advertised limit
    /// applies when it is lower.
    pub limit: usize,
}

/// The XMPP server's component port: a host name or IP address and a port, parsed once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerAddr {
    /// A host name, an IPv4 address or an IPv6 address (without brackets).
    pub host: String,
    /// The TCP port, 1-65535.
    pub port: u16,
}

/// Why a server address is not `HOST:PORT`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServerAddrError {
    #[error("expected HOST:PORT, got `{0}`")]
    NoPort(String),
    #[error("`{0}` has no host before the port")]
    NoHost(String),
    #[error("`{port}` in `{addr}` is not a port (1-65535)")]
    BadPort { addr: String, port: String },
    #[error("`{0}` is not a host name or IP address")]
    BadHost(String),
}

impl std::str::FromStr for ServerAddr {
    type Err = ServerAddrError;

    /// `host:port`, `1.2.3.4:port` or `[::1]:port`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (host, port) = s
            .rsplit_once(':')
            .ok_or_else(|| ServerAddrError::NoPort(s.to_string()))?;
        let host = match host.strip_prefix('[') {
            Some(v6) => {
                let inner = v6
                    .strip_suffix(']')
                    .ok_or_else(|| ServerAddrError::BadHost(host.to_string()))?;
                inner
                    .parse::<std::net::Ipv6Addr>()
                    .map_err(|_| ServerAddrError::BadHost(inner.to_string()))?;
                inner
            }
            // An IPv6 address without brackets has colons left in the host part.
            None if host.contains(':') => return Err(ServerAddrError::BadHost(host.to_string())),
            None => host,
        };
        if host.is_empty() {
            return Err(ServerAddrError::NoHost(s.to_string()));
        }
        let valid_name = host.split('.').all(|label| {
            !label.is_empty()
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        });
        if !valid_name && host.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(ServerAddrError::BadHost(host.to_string()));
        }
        let port = match port.parse::<u16>() {
            Ok(p) if p > 0 => p,
            _ => {
                return Err(ServerAddrError::BadPort {
                    addr: s.to_string(),
                    port: port.to_string(),
                })
            }
        };
        Ok(ServerAddr {
            host: host.to_string(),
            port,
        })
    }
}

impl std::fmt::Display for ServerAddr {
    /// As `TcpStream::connect` takes it: IPv6 addresses in brackets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_address_is_a_host_and_a_valid_port() {
        let ok = |s: &str| s.parse::<ServerAddr>().expect(s).to_string();
        assert_eq!(ok("localhost:5347"), "localhost:5347");
        assert_eq!(ok("127.0.0.1:5347"), "127.0.0.1:5347");
        assert_eq!(ok("[::1]:5347"), "[::1]:5347");
        assert_eq!(ok("xmpp.example.org:5275"), "xmpp.example.org:5275");
        for bad in [
            "localhost",
            ":5347",
            "localhost:",
            "localhost:0",
            "localhost:70000",
            "localhost:port",
            "::1:5347",
            "exa mple:5347",
            "a..b:1",
        ] {
            assert!(bad.parse::<ServerAddr>().is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn secret_is_redacted() {
        assert!(!format!("{:?}", Secret::new("hunter2")).contains("hunter2"));
    }
}
