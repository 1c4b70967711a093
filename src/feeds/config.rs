//! The `[feeds]` table (how feeds are fetched, and as whom they are published) and the
//! `[[feed]]` entries (which feeds go to which node).

use std::time::Duration;

use reqwest::header::{HeaderName, HeaderValue};
use serde::Deserialize;
use xmpp_parsers::jid::BareJid;

use crate::domain::NodeId;

/// Default time between polls of a feed: frequent enough for news, polite to servers.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(15 * 60);
/// Default largest feed body read; bigger responses are abandoned mid-transfer. Real
/// feeds are well under a megabyte; 5 MB leaves room for full-content podcasts.
pub const DEFAULT_MAX_BODY: usize = 5 * 1024 * 1024;
/// Default limit on one whole request (connect, headers, body): a server that trickles
/// bytes cannot hold a poller for longer.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default number of feeds fetched at the same time by one process.
pub const DEFAULT_CONCURRENCY: usize = 4;
/// Default redirects followed before a fetch fails (browsers use about 20; feeds
/// rarely need more than one or two, and a loop should fail fast).
pub const DEFAULT_MAX_REDIRECTS: usize = 5;

/// A duration in the file: seconds as a number, or a string such as `"90s"`, `"15m"`,
/// `"2h"`, `"1d"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum DurationValue {
    Seconds(u64),
    Text(String),
}

impl std::fmt::Debug for FeedFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeedFile")
            .field("url", &self.url)
            .field("node", &self.node)
            .field("interval", &self.interval)
            .field("auth_header", &self.auth_header.as_ref().map(|_| "***"))
            .finish()
    }
}

impl DurationValue {
    /// The duration, or a message saying what is wrong.
    pub fn to_duration(&self) -> Result<Duration, String> {
        match self {
            DurationValue::Seconds(s) => Ok(Duration::from_secs(*s)),
            DurationValue::Text(t) => parse_duration(t),
        }
    }
}

/// Parses `90`, `90s`, `15m`, `2h` or `1d`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (digits, unit) = match t.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => t.split_at(i),
        None => (t, "s"),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("expected a duration such as 90s, 15m or 2h, got `{text}`"))?;
    let factor = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => {
            return Err(format!(
                "unknown duration unit in `{text}` (use s, m, h or d)"
            ))
        }
    };
    Ok(Duration::from_secs(n.saturating_mul(factor)))
}

/// `[feeds]` as written in the file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedsFile {
    /// The JID feed entries are published as (default: the first `service.admins`).
    pub publisher: Option<String>,
    pub max_body: Option<usize>,
    pub timeout: Option<DurationValue>,
    pub concurrency: Option<usize>,
    pub max_redirects: Option<usize>,
}

/// One `[[feed]]` as written in the file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedFile {
    pub url: String,
    pub node: String,
    pub interval: Option<DurationValue>,
    pub auth_header: Option<String>,
}

/// A request header sent with every fetch of one feed, e.g. `Authorization: Bearer …`.
/// Its value is a secret: `Debug` shows only the header name.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthHeader {
    pub name: HeaderName,
    pub value: HeaderValue,
}

impl AuthHeader {
    /// Parses a `Name: value` line.
    pub fn parse(line: &str) -> Result<AuthHeader, String> {
        let (name, value) = line
            .split_once(':')
            .ok_or("expected `Name: value`, e.g. `Authorization: Bearer …`")?;
        let name = HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| "the header name is not valid".to_string())?;
        let mut value = HeaderValue::from_str(value.trim())
            .map_err(|_| format!("the value of {name} is not a valid header value"))?;
        value.set_sensitive(true);
        Ok(AuthHeader { name, value })
    }

    /// The line as stored (`Name: value`).
    pub fn to_line(&self) -> String {
        format!(
            "{}: {}",
            self.name,
            String::from_utf8_lossy(self.value.as_bytes())
        )
    }
}

impl std::fmt::Debug for AuthHeader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AuthHeader({}: ***)", self.name)
    }
}

/// A feed to poll into a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedSpec {
    pub url: reqwest::Url,
    pub node: NodeId,
    pub interval: Duration,
    pub auth_header: Option<AuthHeader>,
}

impl FeedSpec {
    /// Validates a feed given in the file or on the command line.
    pub fn new(
        url: &str,
        node: &str,
        interval: Option<Duration>,
        auth_header: Option<&str>,
    ) -> Result<FeedSpec, String> {
        let url = reqwest::Url::parse(url).map_err(|e| format!("url `{url}`: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!(
                "url `{url}`: only http and https feeds are fetched"
            ));
        }
        let node = NodeId::parse(node).map_err(|e| format!("node `{node}`: {e}"))?;
        let interval = interval.unwrap_or(DEFAULT_INTERVAL);
        if interval.is_zero() || interval.as_secs() > i32::MAX as u64 {
            return Err("interval must be between 1 second and 68 years".into());
        }
        let auth_header = auth_header
            .map(AuthHeader::parse)
            .transpose()
            .map_err(|e| format!("auth_header: {e}"))?;
        Ok(FeedSpec {
            url,
            node,
            interval,
            auth_header,
        })
    }
}

/// The validated feed settings.
#[derive(Debug, Clone)]
pub struct FeedsConfig {
    pub publisher: Option<BareJid>,
    pub max_body: usize,
    pub timeout: Duration,
    pub concurrency: usize,
    pub max_redirects: usize,
    /// The `[[feed]]` entries.
    pub feeds: Vec<FeedSpec>,
}

impl Default for FeedsConfig {
    fn default() -> Self {
        FeedsConfig {
            publisher: None,
            max_body: DEFAULT_MAX_BODY,
            timeout: DEFAULT_TIMEOUT,
            concurrency: DEFAULT_CONCURRENCY,
            max_redirects: DEFAULT_MAX_REDIRECTS,
            feeds: Vec::new(),
        }
    }
}

impl FeedsConfig {
    /// Validates `[feeds]` and `[[feed]]`; errors carry the key they are about.
    pub fn from_file(
        table: Option<FeedsFile>,
        feeds: Vec<FeedFile>,
    ) -> Result<FeedsConfig, (&'static str, String)> {
        let t = table.unwrap_or_default();
        let mut c = FeedsConfig::default();
        if let Some(p) = t.publisher {
            c.publisher = Some(
                p.parse()
                    .map_err(|e| ("feeds.publisher", format!("`{p}` is not a bare JID: {e}")))?,
            );
        }
        if let Some(n) = t.max_body {
            if n == 0 {
                return Err(("feeds.max_body", "must be at least 1".into()));
            }
            c.max_body = n;
        }
        if let Some(d) = t.timeout {
            c.timeout = d.to_duration().map_err(|m| ("feeds.timeout", m))?;
            if c.timeout.is_zero() {
                return Err(("feeds.timeout", "must be at least 1s".into()));
            }
        }
        if let Some(n) = t.concurrency {
            if n == 0 {
                return Err(("feeds.concurrency", "must be at least 1".into()));
            }
            c.concurrency = n;
        }
        if let Some(n) = t.max_redirects {
            c.max_redirects = n;
        }
        for (n, f) in feeds.into_iter().enumerate() {
            let interval = f
                .interval
                .as_ref()
                .map(DurationValue::to_duration)
                .transpose()
                .map_err(|m| ("feed", format!("entry {}: interval: {m}", n + 1)))?;
            let spec = FeedSpec::new(&f.url, &f.node, interval, f.auth_header.as_deref())
                .map_err(|m| ("feed", format!("entry {}: {m}", n + 1)))?;
            c.feeds.push(spec);
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_units() {
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5w").is_err());
    }

    #[test]
    fn auth_header_value_is_not_debug_printed() {
        let h = AuthHeader::parse("Authorization: Bearer s3cret").unwrap();
        assert!(!format!("{h:?}").contains("s3cret"));
        assert_eq!(h.to_line(), "authorization: Bearer s3cret");
    }

    #[test]
    fn feed_entries_are_validated_and_errors_name_the_entry() {
        let e = FeedsConfig::from_file(
            None,
            vec![FeedFile {
                url: "ftp://example.org/feed".into(),
                node: "news".into(),
                interval: None,
                auth_header: None,
            }],
        )
        .unwrap_err();
        assert_eq!(e.0, "feed");
        assert!(e.1.contains("entry 1"), "{}", e.1);
    }
}
