//! Fetching a feed over HTTP, defensively: conditional GET (ETag / Last-Modified), a
//! cap on the body (checked against Content-Length and while streaming), a redirect
//! limit, a timeout on the whole request, and the server's caching and back-off hints.
//! Every failure is a [`FetchError`]; nothing here panics or retries (the poller
//! reschedules).

use std::time::Duration;

use reqwest::header::{self, HeaderMap};
use reqwest::StatusCode;

use super::config::{AuthHeader, FeedsConfig};
use super::schedule;

/// Connecting must not take a large part of the whole-request timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// What pubsubd tells feed servers it is.
const USER_AGENT: &str = concat!("pubsubd/", env!("CARGO_PKG_VERSION"), " (feed ingestion)");

/// The validators of the last good response.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Validators {
    pub etag: Option<String>,
    pub last_modified: Option<String>,
}

/// What a fetch brought.
#[derive(Debug)]
pub enum Fetched {
    /// 304: the feed did not change.
    NotModified { max_age: Option<Duration> },
    /// 200 with the body.
    Body {
        bytes: Vec<u8>,
        validators: Validators,
        max_age: Option<Duration>,
    },
}

/// Why a fetch failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("HTTP status {status}")]
    Status {
        status: u16,
        retry_after: Option<Duration>,
    },
    #[error("body larger than {limit} bytes")]
    TooBig { limit: usize },
    #[error("timed out")]
    Timeout,
    #[error("too many redirects (or a redirect loop)")]
    Redirects,
    #[error("{0}")]
    Transport(String),
}

impl FetchError {
    /// The server's `Retry-After`, if it sent one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            FetchError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

fn transport(e: reqwest::Error) -> FetchError {
    if e.is_timeout() {
        FetchError::Timeout
    } else if e.is_redirect() {
        FetchError::Redirects
    } else {
        // Without the URL: it may carry credentials in its query.
        FetchError::Transport(e.without_url().to_string())
    }
}

/// An HTTP client configured for feeds, shared by every poll of a process.
#[derive(Clone)]
pub struct Fetcher {
    client: reqwest::Client,
    max_body: usize,
}

impl Fetcher {
    /// Builds the client from `[feeds]`.
    pub fn new(cfg: &FeedsConfig) -> Result<Fetcher, String> {
        let client = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .redirect(reqwest::redirect::Policy::limited(cfg.max_redirects))
            .connect_timeout(CONNECT_TIMEOUT.min(cfg.timeout))
            .timeout(cfg.timeout)
            .build()
            .map_err(|e| format!("cannot build the feed HTTP client: {e}"))?;
        Ok(Fetcher {
            client,
            max_body: cfg.max_body,
        })
    }

    /// GETs `url`, conditionally when `known` has validators.
    pub async fn fetch(
        &self,
        url: &reqwest::Url,
        known: &Validators,
        auth: Option<&AuthHeader>,
    ) -> Result<Fetched, FetchError> {
        let mut req = self.client.get(url.clone()).header(
            header::ACCEPT,
            "application/atom+xml, application/rss+xml, application/feed+json, application/xml;q=0.9, */*;q=0.5",
        );
        if let Some(etag) = &known.etag {
            req = req.header(header::IF_NONE_MATCH, etag);
        }
        if let Some(lm) = &known.last_modified {
            req = req.header(header::IF_MODIFIED_SINCE, lm);
        }
        if let Some(a) = auth {
            req = req.header(a.name.clone(), a.value.clone());
        }
        let mut resp = req.send().await.map_err(transport)?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let max_age = text(&headers, header::CACHE_CONTROL).and_then(schedule::max_age);
        if status == StatusCode::NOT_MODIFIED {
            return Ok(Fetched::NotModified { max_age });
        }
        if !status.is_success() {
            let retry_after = text(&headers, header::RETRY_AFTER)
                .and_then(|v| schedule::retry_after(v, chrono::Utc::now()));
            return Err(FetchError::Status {
                status: status.as_u16(),
                retry_after,
            });
        }
        if resp
            .content_length()
            .is_some_and(|n| n > self.max_body as u64)
        {
            return Err(FetchError::TooBig {
                limit: self.max_body,
            });
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(transport)? {
            if bytes.len() + chunk.len() > self.max_body {
                return Err(FetchError::TooBig {
                    limit: self.max_body,
                });
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(Fetched::Body {
            bytes,
            validators: Validators {
                etag: text(&headers, header::ETAG).map(str::to_owned),
                last_modified: text(&headers, header::LAST_MODIFIED).map(str::to_owned),
            },
            max_age,
        })
    }
}

fn text(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}
