//! What the status page shows, as plain data: gathered by [`super::StatusPage`],
//! rendered by [`super::render`]. Nothing here holds a secret, a token or an item
//! payload; feed URLs are kept without credentials or query.

use chrono::{DateTime, Utc};

use crate::store::status::{Backlog, NodeRanking};

/// One read of the store (or of something else that may be off or failing).
#[derive(Debug, Clone, PartialEq)]
pub enum Reading<T> {
    /// What was read.
    Got(T),
    /// The read failed or timed out; the message says why.
    Failed(String),
    /// Not applicable here; the text says why (e.g. feed ingestion is off).
    Off(&'static str),
}

/// One component connection.
#[derive(Debug, Clone, PartialEq)]
pub struct Connection {
    /// 0, 1, … of `connections`.
    pub index: usize,
    pub up: bool,
    /// Notifications confirmed on it since start (`None` without the metrics recorder).
    pub notifications: Option<u64>,
}

/// The multicast service, when one is configured.
#[derive(Debug, Clone, PartialEq)]
pub struct MulticastView {
    /// `None` while looking for the server's service, or when none was found.
    pub jid: Option<String>,
    /// `looking`, `asking`, `on`, `refused` or `absent` (see `xmpp::multicast`).
    pub state: &'static str,
    /// Recipients per stanza while on.
    pub limit: Option<usize>,
    /// Groups it bounced since start.
    pub bounces: u64,
}

/// One feed, as an operator may see it.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedView {
    /// The URL without user, password, query or fragment (they may hold credentials).
    pub url: String,
    pub node: String,
    pub last_status: Option<String>,
    pub failures: i32,
    pub next_poll_at: DateTime<Utc>,
    pub last_polled_at: Option<DateTime<Utc>>,
}

/// Everything on the page at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub jid: String,
    pub version: &'static str,
    /// `PostgreSQL` or `SQLite`.
    pub store: &'static str,
    pub taken_at: DateTime<Utc>,
    /// How often the page reloads itself.
    pub refresh_secs: u64,
    pub connections: Vec<Connection>,
    /// Streams re-established and streams lost since start (`None` without metrics).
    pub reconnects: Option<u64>,
    pub disconnects: Option<u64>,
    /// Whether a program that does not share this store was seen on the component JID
    /// lately ([`crate::xmpp::stranger`]).
    pub stranger: bool,
    pub multicast: Option<MulticastView>,
    /// What each server domain grants pubsubd (XEP-0356), in words; empty when none.
    pub privileges: Vec<(String, String)>,
    pub backlog: Reading<Backlog>,
    /// Over the last minute; `None` until two samples exist or without metrics.
    pub notifications_per_second: Option<f64>,
    pub largest: Reading<NodeRanking>,
    /// When `largest` was read (it is read less often than the rest).
    pub largest_at: Option<DateTime<Utc>>,
    pub feeds: Reading<Vec<FeedView>>,
}

/// `url` as the page may show it: no user, password, query or fragment, which is where
/// feed credentials and API keys live.
pub fn public_url(url: &str) -> String {
    let Ok(mut parsed) = reqwest::Url::parse(url) else {
        return "(unreadable URL)".into();
    };
    let had_query = parsed.query().is_some();
    // Both fail only for URLs that cannot have credentials (e.g. `data:`).
    let _ = parsed.set_username("");
    let _ = parsed.set_password(None);
    parsed.set_query(None);
    parsed.set_fragment(None);
    let mut shown = parsed.to_string();
    if had_query {
        shown.push_str("?…");
    }
    shown
}

/// A feed's last status with its URL (which fetch errors quote) replaced by
/// [`public_url`].
pub fn public_status(status: &str, url: &str) -> String {
    let public = public_url(url);
    let mut out = status.replace(url, &public);
    if let Ok(parsed) = reqwest::Url::parse(url) {
        out = out.replace(parsed.as_str(), &public);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feed_urls_lose_their_credentials_and_query() {
        assert_eq!(
            public_url("https://bot:hunter2@example.org/feed.xml?api_key=K1#top"),
            "https://example.org/feed.xml?…"
        );
        assert_eq!(
            public_url("http://example.org/atom"),
            "http://example.org/atom"
        );
        assert_eq!(public_url("not a url"), "(unreadable URL)");
    }

    #[test]
    fn a_fetch_error_quoting_the_url_quotes_the_public_one() {
        let url = "https://u:pw@example.org/f?token=T0K";
        let status = format!("error sending request for url ({url})");
        let shown = public_status(&status, url);
        assert!(!shown.contains("T0K") && !shown.contains("pw"), "{shown}");
        assert!(shown.contains("https://example.org/f?…"), "{shown}");
    }
}
