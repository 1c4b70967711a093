//! A stranger on the component JID is noticed. ejabberd balances a component JID's
//! traffic across every connection for it: processes of one store share the work on
//! purpose, but a leftover pubsubd on another store silently takes a share of requests
//! and notifications. Each process must notice the other's pings (they carry a
//! different store tag), log an error naming the JID, count it and fail `/readyz`;
//! processes of the same store must not. Prosody lets one connection hold a component
//! JID, so there the second process cannot attach at all.

mod common;

use std::time::Duration;

use common::*;
use pubsubd_testkit::{
    both_stores, free_ports, shared_ejabberd, shared_prosody, ComponentSlot, PubsubdProcess,
    StoreKind, TestStore, XmppServer,
};

/// Long enough for several barrier pings of each process to cross to the other.
const DETECT: Duration = Duration::from_secs(30);

/// A pubsubd process on `slot` and `db`, with its metrics endpoint.
struct Instance {
    process: PubsubdProcess,
    port: u16,
}

async fn attach(slot: &ComponentSlot, db: &TestStore) -> anyhow::Result<Instance> {
    let port = free_ports(1)?[0];
    let mut args = slot.pubsubd_args(db.url());
    args.extend(["--metrics-listen".into(), format!("127.0.0.1:{port}")]);
    let mut process = PubsubdProcess::spawn(BIN, &args, &[])?;
    process.wait_for_log("component connected", READY).await?;
    Ok(Instance { process, port })
}

impl Instance {
    /// `/readyz`'s status and body.
    async fn readyz(&self) -> anyhow::Result<(u16, String)> {
        let r = reqwest::get(format!("http://127.0.0.1:{}/readyz", self.port)).await?;
        Ok((r.status().as_u16(), r.text().await?))
    }

    async fn stranger_pings(&self) -> anyhow::Result<f64> {
        let text = reqwest::get(format!("http://127.0.0.1:{}/metrics", self.port))
            .await?
            .text()
            .await?;
        Ok(metric_sum(&text, "pubsubd_component_stranger_pings_total"))
    }

    fn logged_stranger(&self, jid: &str) -> bool {
        self.process.log_contents().lines().any(|l| {
            l.contains("ERROR") && l.contains(jid) && l.contains("splitting the JID's requests")
        })
    }
}

/// Sends `payload` to `jid` in an iq set and returns the answer.
async fn set(
    client: &mut pubsubd_testkit::Client,
    jid: &str,
    payload: &str,
) -> anyhow::Result<pubsubd_testkit::Element> {
    let iq = pubsubd_testkit::stanza::iq("set", jid, pubsubd_testkit::stanza::parse(payload));
    Ok(client.iq(iq).await?)
}

/// Creates and subscribes to a node until `stores` more stores have it (each process
/// answers only the requests the server balances to it; one that has the node answers
/// a create with `conflict`).
async fn on_every_store(
    client: &mut pubsubd_testkit::Client,
    jid: &str,
    create: &str,
    subscribe: &str,
    stores: usize,
) -> anyhow::Result<()> {
    let mut created = 0;
    for _ in 0..60 {
        let reply = set(client, jid, create).await?;
        if reply.attr("type") == Some("result") {
            created += 1;
        }
        // Subscribing again on a store that has it is a result too.
        set(client, jid, subscribe).await?;
        if created == stores {
            // Subscribing lands on one process at random too: enough times that every
            // store has it (each try misses a given one of three with p = 2/3).
            for _ in 0..25 {
                set(client, jid, subscribe).await?;
            }
            return Ok(());
        }
    }
    anyhow::bail!("the node was created on {created} stores in 60 tries, not {stores}")
}

/// Publishes `count` items to `node`; each lands on one of the processes, whose
/// fan-out then pings through the server.
async fn publish_some(
    client: &mut pubsubd_testkit::Client,
    jid: &str,
    node: &str,
    count: usize,
) -> anyhow::Result<()> {
    for i in 0..count {
        let payload = pubsub(&format!(
            "<publish node='{node}'><item id='i{i}'><x xmlns='urn:x'/></item></publish>"
        ));
        set(client, jid, &payload).await?;
    }
    Ok(())
}

async fn a_stranger_on_the_jid_is_noticed_by_both_and_siblings_are_not_on_ejabberd(
) -> anyhow::Result<()> {
    let server: &XmppServer = shared_ejabberd();
    let slot = server.lease_component();
    let jid = slot.jid().to_owned();
    let ours = TestStore::create().await?;
    let a = attach(&slot, &ours).await?;
    let mut user = user(server, "u").await?;
    let bare = user.bare_jid().to_owned();
    let create = pubsub("<create node='n'/>");
    let subscribe = pubsub(&format!("<subscribe node='n' jid='{bare}'/>"));
    // Siblings first (PostgreSQL only: an SQLite file serves one process).
    let sibling = if ours.kind() == StoreKind::Postgres {
        let sibling = attach(&slot, &ours).await?;
        ok(&set(&mut user, &jid, &create).await?);
        ok(&set(&mut user, &jid, &subscribe).await?);
        publish_some(&mut user, &jid, "n", 20).await?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        for i in [&a, &sibling] {
            assert_eq!(i.readyz().await?.0, 200, "siblings are not strangers");
            assert_eq!(i.stranger_pings().await?, 0.0);
            assert!(!i.logged_stranger(&jid));
        }
        Some(sibling)
    } else {
        None
    };

    // A stranger: the same JID, another store.
    let theirs = TestStore::create().await?;
    let stranger = attach(&slot, &theirs).await?;
    let stores = if sibling.is_some() { 1 } else { 2 };
    if let Err(e) = on_every_store(&mut user, &jid, &create, &subscribe, stores).await {
        anyhow::bail!(
            "{e}\nthe stranger's log:\n{}\nours:\n{}",
            stranger.process.log_tail(15),
            a.process.log_tail(15)
        );
    }
    let deadline = tokio::time::Instant::now() + DETECT;
    let ours_all: Vec<&Instance> = std::iter::once(&a).chain(sibling.as_ref()).collect();
    loop {
        publish_some(&mut user, &jid, "n", 10).await?;
        let ours_noticed = ours_all.iter().any(|i| i.logged_stranger(&jid));
        if ours_noticed && stranger.logged_stranger(&jid) {
            break;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "not noticed within {DETECT:?}: ours {ours_noticed}, the stranger {}",
            stranger.logged_stranger(&jid)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (status, body) = stranger.readyz().await?;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("jid: shared"), "{body}");
    assert!(stranger.stranger_pings().await? > 0.0);
    let mut ours_unready = 0;
    for i in &ours_all {
        if i.logged_stranger(&jid) {
            assert_eq!(i.readyz().await?.0, 503);
            assert!(i.stranger_pings().await? > 0.0);
            ours_unready += 1;
        }
    }
    assert!(ours_unready > 0);
    if theirs.kind() == StoreKind::Sqlite {
        assert!(
            stranger
                .process
                .log_contents()
                .contains("SQLite, which serves one instance only"),
            "SQLite says so plainly"
        );
    }
    Ok(())
}
both_stores!(a_stranger_on_the_jid_is_noticed_by_both_and_siblings_are_not_on_ejabberd);

/// Prosody holds a component JID for one connection: a second process cannot attach,
/// and the first goes on serving.
async fn on_prosody_a_second_process_on_the_jid_cannot_attach() -> anyhow::Result<()> {
    let server: &XmppServer = shared_prosody();
    let slot = server.lease_component();
    let ours = TestStore::create().await?;
    let a = attach(&slot, &ours).await?;
    let theirs = TestStore::create().await?;
    let args = slot.pubsubd_args(theirs.url());
    let mut second = PubsubdProcess::spawn(BIN, &args, &[])?;
    let exited = second.wait_exit(READY).await?;
    assert!(
        exited.is_some_and(|s| !s.success()),
        "the second process should fail to start: {}",
        second.log_tail(10)
    );
    let mut user = user(server, "u").await?;
    ok(&user.iq(pubsubd_testkit::stanza::ping(slot.jid())).await?);
    assert_eq!(a.readyz().await?.0, 200);
    Ok(())
}
both_stores!(on_prosody_a_second_process_on_the_jid_cannot_attach);
