//! Shared by the gateway and feed acceptance tests: pubsubd started from a config file
//! (for `[http]`, `[feeds]` and `[[feed]]`), XMPP item retrieval, bearer tokens.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use pubsubd_testkit::{
    stanza, Client, ComponentSlot, Element, PubsubdProcess, StoreKind, TestStore, XmppServer,
};
use sha2::{Digest, Sha256};

pub const BIN: &str = env!("CARGO_BIN_EXE_pubsubd");
/// Generous: a cold CI machine can be slow to start a process and open a pool.
pub const READY: Duration = Duration::from_secs(30);
pub const NS_PUBSUB: &str = "http://jabber.org/protocol/pubsub";
pub const NS_ATOM: &str = "http://www.w3.org/2005/Atom";

static CONFIGS: AtomicUsize = AtomicUsize::new(0);

/// A running pubsubd with its config file.
pub struct Service {
    pub process: PubsubdProcess,
    pub slot: ComponentSlot,
    pub db: TestStore,
    pub config: PathBuf,
    /// The gateway's address, when `[http]` was configured.
    pub http: Option<SocketAddr>,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.config);
    }
}

impl Service {
    /// `http://ADDR` of the gateway.
    pub fn base(&self) -> String {
        format!("http://{}", self.http.expect("the gateway is configured"))
    }

    /// The component JID.
    pub fn jid(&self) -> &str {
        self.slot.jid()
    }

    /// Runs `pubsubd ARGS --config FILE` to completion: (success, stdout, stderr).
    pub fn cli(&self, args: &[&str]) -> anyhow::Result<(bool, String, String)> {
        let out = std::process::Command::new(BIN)
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .output()?;
        Ok((
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    }
}

/// Starts pubsubd on a fresh slot and store (PostgreSQL, or SQLite with
/// `PUBSUBD_TEST_STORE=sqlite`) with the connection settings plus `extra` TOML; with
/// `[http]` in `extra`, waits for the gateway and reads its port from the log
/// (configure `listen = "127.0.0.1:0"`).
pub async fn start(server: &XmppServer, extra: &str) -> anyhow::Result<Service> {
    start_on(server, extra, TestStore::create().await?).await
}

/// [`start`] on PostgreSQL whatever `PUBSUBD_TEST_STORE` says (feed ingestion needs it).
pub async fn start_postgres(server: &XmppServer, extra: &str) -> anyhow::Result<Service> {
    start_on(
        server,
        extra,
        TestStore::create_kind(StoreKind::Postgres).await?,
    )
    .await
}

async fn start_on(server: &XmppServer, extra: &str, db: TestStore) -> anyhow::Result<Service> {
    let slot = server.lease_component();
    let n = CONFIGS.fetch_add(1, Ordering::SeqCst);
    let config = std::env::temp_dir().join(format!("pubsubd-test-{}-{n}.toml", std::process::id()));
    let toml = format!(
        "jid = '{}'\nsecret = '{}'\nserver = '{}'\ndatabase = '{}'\n{extra}\n",
        slot.jid(),
        slot.secret(),
        server.component_addr(),
        db.url()
    );
    std::fs::write(&config, toml)?;
    let process = PubsubdProcess::spawn(
        BIN,
        &["run".as_ref(), "--config".as_ref(), config.as_os_str()],
        &[("RUST_LOG", "info,pubsubd=debug")],
    )?;
    let mut service = Service {
        process,
        slot,
        db,
        config,
        http: None,
    };
    service
        .process
        .wait_for_log("component connected", READY)
        .await?;
    if extra.contains("[http]") {
        service
            .process
            .wait_for_log("HTTP gateway listening", READY)
            .await?;
        service.http = Some(gateway_addr(&service.process.log_contents())?);
    }
    Ok(service)
}

/// The address in the "HTTP gateway listening" log line (ANSI colours or not).
fn gateway_addr(log: &str) -> anyhow::Result<SocketAddr> {
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

/// A new user, logged in.
pub async fn user(server: &XmppServer, prefix: &str) -> anyhow::Result<Client> {
    let account = server.create_user(prefix).await?;
    Ok(Client::login(server.c2s_addr(), &account).await?)
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

/// The item id pubsubd derives from a feed entry id.
pub fn feed_item_id(entry_id: &str) -> String {
    hex::encode(&Sha256::digest(entry_id.as_bytes())[..16])
}

/// The items of `node` as an XMPP `<items/>` request returns them (newest first), or
/// the error condition.
pub async fn xmpp_items(
    client: &mut Client,
    service: &str,
    node: &str,
) -> anyhow::Result<Result<Vec<Element>, String>> {
    let reply = client
        .iq(stanza::iq(
            "get",
            service,
            stanza::parse(&format!(
                "<pubsub xmlns='{NS_PUBSUB}'><items node='{}'/></pubsub>",
                xml_escape(node)
            )),
        ))
        .await?;
    if reply.attr("type") != Some("result") {
        return Ok(Err(stanza::error_condition(&reply).unwrap_or_default()));
    }
    let items = reply
        .get_child("pubsub", NS_PUBSUB)
        .and_then(|p| p.get_child("items", NS_PUBSUB))
        .map(|i| {
            i.children()
                .filter(|c| c.is("item", NS_PUBSUB))
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    Ok(Ok(items))
}

/// Polls [`xmpp_items`] until `done` holds for the items, or fails after `timeout`.
pub async fn wait_items<F>(
    client: &mut Client,
    service: &str,
    node: &str,
    timeout: Duration,
    done: F,
) -> anyhow::Result<Vec<Element>>
where
    F: Fn(&[Element]) -> bool,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let got = xmpp_items(client, service, node).await?;
        if let Ok(items) = &got {
            if done(items) {
                return Ok(items.clone());
            }
        }
        if tokio::time::Instant::now() > deadline {
            anyhow::bail!(
                "items of {node} never matched; last answer: {:?}",
                got.map(|v| v.iter().map(stanza::to_xml).collect::<Vec<_>>())
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The ids of XMPP `<item/>`s.
pub fn ids(items: &[Element]) -> Vec<String> {
    items
        .iter()
        .filter_map(|i| i.attr("id").map(str::to_owned))
        .collect()
}

/// The Atom `<title/>` inside an XMPP `<item/>`.
pub fn atom_title(item: &Element) -> Option<String> {
    item.get_child("entry", NS_ATOM)
        .and_then(|e| e.get_child("title", NS_ATOM))
        .map(Element::text)
}

/// Publishes `payload` (XML) to `node` over XMPP and returns the iq result.
pub async fn xmpp_publish(
    client: &mut Client,
    service: &str,
    node: &str,
    id: &str,
    payload: &str,
) -> anyhow::Result<Element> {
    Ok(client
        .iq(stanza::iq(
            "set",
            service,
            stanza::parse(&format!(
                "<pubsub xmlns='{NS_PUBSUB}'><publish node='{node}'><item id='{id}'>{payload}</item></publish></pubsub>"
            )),
        ))
        .await?)
}

pub fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('\'', "&apos;")
}
