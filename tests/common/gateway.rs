//! The HTTP gateway as a test reaches it: its address from pubsubd's log, bearer tokens,
//! and pubsubd with the gateway on, with two users holding tokens.

use std::net::SocketAddr;
use std::time::Duration;

use pubsubd_testkit::XmppServer;
use reqwest::StatusCode;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::items::NS_ATOM;
use super::{start_with, user, Pubsubd};

/// The address in the "HTTP gateway listening" log line (ANSI colours or not).
pub fn listening_addr(log: &str) -> anyhow::Result<SocketAddr> {
    let line = log
        .lines()
        .find(|l| l.contains("HTTP gateway listening"))
        .ok_or_else(|| anyhow::anyhow!("no gateway line in the log"))?;
    let at = line
        .find("127.0.0.1:")
        .ok_or_else(|| anyhow::anyhow!("no address in: {line}"))?;
    let port: String = line[at + "127.0.0.1:".len()..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    Ok(format!("127.0.0.1:{port}").parse()?)
}

/// A random bearer token and the `[[http.token]]` entry for `jid`.
pub fn token(jid: &str) -> (String, String) {
    let token = format!("tok-{}", uuid_like());
    let digest = hex::encode(Sha256::digest(token.as_bytes()));
    (
        token,
        format!("[[http.token]]\njid = '{jid}'\nsha256 = '{digest}'\n"),
    )
}

fn uuid_like() -> String {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    (0..24)
        .map(|_| char::from(b'a' + rng.gen_range(0..26)))
        .collect()
}

pub const WAIT: Duration = Duration::from_secs(20);

/// pubsubd with the gateway, tokens for alice and bob, and their XMPP sessions.
pub struct Setup {
    pub svc: Pubsubd,
    pub alice: pubsubd_testkit::Client,
    pub bob: pubsubd_testkit::Client,
    pub alice_token: String,
    pub bob_token: String,
    pub http: reqwest::Client,
}

pub async fn setup(server: &XmppServer) -> anyhow::Result<Setup> {
    setup_with(server, "").await
}

pub async fn setup_with(server: &XmppServer, extra: &str) -> anyhow::Result<Setup> {
    let alice = user(server, "alice").await?;
    let bob = user(server, "bob").await?;
    let (alice_token, alice_entry) = token(alice.bare_jid());
    let (bob_token, bob_entry) = token(bob.bare_jid());
    let svc = start_with(
        server,
        &format!(
            "max_payload_size = 4096\n{extra}\n[http]\nlisten = '127.0.0.1:0'\n{alice_entry}{bob_entry}"
        ),
    )
    .await?;
    Ok(Setup {
        svc,
        alice,
        bob,
        alice_token,
        bob_token,
        http: reqwest::Client::new(),
    })
}

pub fn entry(id: &str, title: &str) -> String {
    format!(
        "<entry xmlns='{NS_ATOM}'><id>{id}</id><title>{title}</title><updated>2024-01-01T00:00:00Z</updated></entry>"
    )
}

impl Setup {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.svc.base())
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        content_type: &str,
        body: &str,
    ) -> anyhow::Result<(StatusCode, String, reqwest::header::HeaderMap)> {
        let mut req = self.http.request(method, self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if !body.is_empty() {
            req = req
                .header(reqwest::header::CONTENT_TYPE, content_type)
                .body(body.to_owned());
        }
        let resp = req.send().await?;
        let status = resp.status();
        let headers = resp.headers().clone();
        Ok((status, resp.text().await?, headers))
    }

    pub async fn publish_atom(
        &self,
        node: &str,
        token: Option<&str>,
        id: &str,
        title: &str,
    ) -> anyhow::Result<(StatusCode, String)> {
        let (s, body, _) = self
            .send(
                reqwest::Method::POST,
                &format!("/nodes/{node}/items"),
                token,
                "application/atom+xml",
                &entry(id, title),
            )
            .await?;
        Ok((s, body))
    }
}

pub fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::Null)
}

/// Reads server-sent events from `resp` until one carries `want` in its data; returns
/// that event's id.
pub async fn sse_until(
    resp: &mut reqwest::Response,
    buf: &mut String,
    want: &str,
) -> anyhow::Result<String> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        while let Some(end) = buf.find("\n\n") {
            let event: String = buf.drain(..end + 2).collect();
            if event.contains(want) {
                let id = event
                    .lines()
                    .find_map(|l| l.strip_prefix("id:"))
                    .map(|s| s.trim().to_owned())
                    .unwrap_or_default();
                return Ok(id);
            }
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(left, resp.chunk()).await {
            Ok(Ok(Some(chunk))) => buf.push_str(&String::from_utf8_lossy(&chunk)),
            Ok(Ok(None)) => anyhow::bail!("the event stream ended; got {buf:?}"),
            Ok(Err(e)) => return Err(e.into()),
            Err(_) => anyhow::bail!("no event with {want} within {WAIT:?}; got {buf:?}"),
        }
    }
}
