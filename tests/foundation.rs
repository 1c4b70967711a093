//! Foundation acceptance tests: pubsubd attached to a real Prosody and a real ejabberd,
//! on PostgreSQL and on an SQLite file, and real clients talking to it through the
//! server: the handshake, discovery, start-up failures, migrations, the default store.

mod common;

use std::time::Duration;

use pubsubd_testkit::{
    both_servers, shared_prosody, stanza, ComponentSlot, Element, PubsubdProcess, TestDb,
    TestSqlite, TestStore, XmppServer,
};

use common::{start, user, BIN, READY};

/// pubsubd on `slot` with `secret`, not waited for: for the tests of how a start fails
/// or of a second process on one store (the others start through [`start`]).
fn spawn(
    server: &XmppServer,
    slot: &ComponentSlot,
    secret: &str,
    db: &str,
) -> anyhow::Result<PubsubdProcess> {
    PubsubdProcess::spawn(
        BIN,
        &[
            "run",
            "--jid",
            slot.jid(),
            "--secret",
            secret,
            "--server",
            &server.component_addr().to_string(),
            "--database",
            db,
        ],
        &[],
    )
}

fn query(ns: &str) -> Element {
    Element::builder("query", ns).build()
}

fn child<'a>(el: &'a Element, name: &str, ns: &str) -> Option<&'a Element> {
    el.get_child(name, ns)
}

both_servers!(
    handshake_succeeds_and_ping_answers,
    |server: &'static XmppServer| async move {
        let ps = start(server).await?;
        let mut alice = user(server, "alice").await?;
        let reply = alice.iq(stanza::ping(ps.slot.jid())).await?;
        assert_eq!(
            reply.attr("type"),
            Some("result"),
            "{}",
            stanza::to_xml(&reply)
        );
        Ok::<_, anyhow::Error>(())
    }
);

both_servers!(
    disco_info_names_a_pubsub_service,
    |server: &'static XmppServer| async move {
        let ps = start(server).await?;
        let mut alice = user(server, "alice").await?;
        let reply = alice
            .iq(stanza::iq(
                "get",
                ps.slot.jid(),
                query("http://jabber.org/protocol/disco#info"),
            ))
            .await?;
        assert_eq!(
            reply.attr("type"),
            Some("result"),
            "{}",
            stanza::to_xml(&reply)
        );
        let q = child(&reply, "query", "http://jabber.org/protocol/disco#info").expect("query");
        let identity =
            child(q, "identity", "http://jabber.org/protocol/disco#info").expect("identity");
        assert_eq!(identity.attr("category"), Some("pubsub"));
        assert_eq!(identity.attr("type"), Some("service"));
        let features: Vec<&str> = q
            .children()
            .filter(|c| c.name() == "feature")
            .filter_map(|c| c.attr("var"))
            .collect();
        for f in [
            "http://jabber.org/protocol/disco#info",
            "http://jabber.org/protocol/disco#items",
            "urn:xmpp:ping",
            "jabber:iq:version",
        ] {
            assert!(features.contains(&f), "missing {f} in {features:?}");
        }
        Ok::<_, anyhow::Error>(())
    }
);

both_servers!(
    disco_items_answers,
    |server: &'static XmppServer| async move {
        let ps = start(server).await?;
        let mut alice = user(server, "alice").await?;
        let reply = alice
            .iq(stanza::iq(
                "get",
                ps.slot.jid(),
                query("http://jabber.org/protocol/disco#items"),
            ))
            .await?;
        assert_eq!(
            reply.attr("type"),
            Some("result"),
            "{}",
            stanza::to_xml(&reply)
        );
        assert!(child(&reply, "query", "http://jabber.org/protocol/disco#items").is_some());
        Ok::<_, anyhow::Error>(())
    }
);

both_servers!(
    software_version_is_pubsubd,
    |server: &'static XmppServer| async move {
        let ps = start(server).await?;
        let mut alice = user(server, "alice").await?;
        let reply = alice
            .iq(stanza::iq("get", ps.slot.jid(), query("jabber:iq:version")))
            .await?;
        let q = child(&reply, "query", "jabber:iq:version").expect("query");
        assert_eq!(
            q.get_child("name", "jabber:iq:version").map(|n| n.text()),
            Some("pubsubd".to_string())
        );
        Ok::<_, anyhow::Error>(())
    }
);

both_servers!(
    unknown_iq_gets_service_unavailable_and_service_keeps_serving,
    |server: &'static XmppServer| async move {
        let ps = start(server).await?;
        let mut alice = user(server, "alice").await?;
        let unknown = Element::builder("frobnicate", "urn:example:unknown").build();
        let reply = alice.iq(stanza::iq("get", ps.slot.jid(), unknown)).await?;
        assert_eq!(reply.attr("type"), Some("error"));
        assert_eq!(
            stanza::error_condition(&reply).as_deref(),
            Some("service-unavailable")
        );
        // Two payloads in one request: malformed, answered with bad-request.
        let mut two = stanza::iq("get", ps.slot.jid(), query("jabber:iq:version"));
        two.append_child(query("jabber:iq:version"));
        let reply = alice.iq(two).await?;
        assert_eq!(
            stanza::error_condition(&reply).as_deref(),
            Some("bad-request"),
            "{}",
            stanza::to_xml(&reply)
        );
        let reply = alice.iq(stanza::ping(ps.slot.jid())).await?;
        assert_eq!(reply.attr("type"), Some("result"));
        Ok::<_, anyhow::Error>(())
    }
);

/// Waits for a pubsubd that must fail at start-up to exit, and returns its one-line
/// error (`pubsubd: …`).
async fn failure_line(process: &mut PubsubdProcess) -> anyhow::Result<String> {
    let status = process
        .wait_exit(READY)
        .await?
        .ok_or_else(|| anyhow::anyhow!("pubsubd must exit at start-up"))?;
    anyhow::ensure!(!status.success(), "exit status {status}");
    let log = process.log_contents();
    log.lines()
        .find(|l| l.starts_with("pubsubd: "))
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("no one-line error in\n{log}"))
}

both_servers!(
    wrong_secret_fails_at_startup_with_one_line,
    |server: &'static XmppServer| async move {
        let db = TestStore::create().await?;
        let slot = server.lease_component();
        let mut process = spawn(server, &slot, "not-the-secret", db.url())?;
        let line = failure_line(&mut process).await?;
        assert!(line.contains("refused the component secret"), "{line}");
        Ok::<_, anyhow::Error>(())
    }
);

both_servers!(
    unknown_component_jid_fails_at_startup_naming_the_missing_slot,
    |server: &'static XmppServer| async move {
        let db = TestStore::create().await?;
        let slot = server.lease_component();
        let addr = server.component_addr().to_string();
        let stranger = "nowhere.invalid";
        let mut process = PubsubdProcess::spawn(
            BIN,
            &[
                "run",
                "--jid",
                stranger,
                "--secret",
                slot.secret(),
                "--server",
                &addr,
                "--database",
                db.url(),
            ],
            &[],
        )?;
        let line = failure_line(&mut process).await?;
        // Prosody says host-unknown; ejabberd, having no secret for the JID, says
        // not-authorized, which pubsubd cannot tell from a wrong secret.
        assert!(
            line.contains(&format!("the server at {addr} "))
                && line.contains(&format!("no component configured for {stranger}")),
            "{line}"
        );
        Ok::<_, anyhow::Error>(())
    }
);

both_servers!(
    refused_port_fails_at_startup,
    |server: &'static XmppServer| async move {
        let db = TestStore::create().await?;
        let slot = server.lease_component();
        let mut process = PubsubdProcess::spawn(
            BIN,
            &[
                "run",
                "--jid",
                slot.jid(),
                "--secret",
                slot.secret(),
                "--server",
                "127.0.0.1:1",
                "--database",
                db.url(),
            ],
            &[],
        )?;
        let status = process.wait_exit(READY).await?.expect("pubsubd must exit");
        assert!(!status.success());
        assert!(process
            .log_contents()
            .contains("pubsubd: cannot connect to 127.0.0.1:1"));
        Ok::<_, anyhow::Error>(())
    }
);

both_servers!(
    sigterm_closes_the_stream_cleanly,
    |server: &'static XmppServer| async move {
        let mut ps = start(server).await?;
        let status = ps.process.terminate().await?;
        assert!(status.success(), "{status:?}\n{}", ps.process.log_tail(20));
        assert!(ps
            .process
            .log_contents()
            .contains("component stream closed"));
        Ok::<_, anyhow::Error>(())
    }
);

both_servers!(dedicated reconnects_after_server_restart, |server: XmppServer| async move {
    let mut server = server;
    let ps = start(&server).await?;
    server.stop()?;
    server.start()?;
    // The service comes back by itself: wait for the second "connected".
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while ps.process.log_contents().matches("component connected").count() < 2 {
        assert!(tokio::time::Instant::now() < deadline, "no reconnect:\n{}", ps.process.log_tail(30));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(ps.process.log_contents().contains("reconnecting to the XMPP server"));
    let mut alice = user(&server, "alice").await?;
    let reply = alice.iq(stanza::ping(ps.slot.jid())).await?;
    assert_eq!(reply.attr("type"), Some("result"));
    drop(ps.db);
    Ok::<_, anyhow::Error>(())
});

/// `pubsubd migrate --database url`, twice: both runs succeed.
fn migrate_twice(url: &str) {
    for _ in 0..2 {
        let out = std::process::Command::new(BIN)
            .args(["migrate", "--database", url])
            .output()
            .expect("pubsubd runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// PostgreSQL only: this is about its migrations.
#[tokio::test]
async fn migrations_are_idempotent() -> anyhow::Result<()> {
    let db = TestDb::create().await?;
    migrate_twice(db.url());
    Ok(())
}

#[tokio::test]
async fn sqlite_migrations_are_idempotent() -> anyhow::Result<()> {
    let db = TestSqlite::create()?;
    migrate_twice(db.url());
    assert!(db.path().exists(), "migrate creates the file");
    Ok(())
}

#[tokio::test]
async fn without_a_database_pubsubd_uses_an_sqlite_file_in_the_working_directory(
) -> anyhow::Result<()> {
    let dir = TestSqlite::create()?;
    let out = std::process::Command::new(BIN)
        .arg("migrate")
        .env_remove("PUBSUBD_DATABASE")
        .current_dir(dir.dir())
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dir.dir().join("pubsubd.sqlite3").exists());
    Ok(())
}

/// SQLite only: one file serves one instance, and a
/// second one says so in one line instead of sharing it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_instance_on_one_sqlite_file_refuses_to_start() -> anyhow::Result<()> {
    let server = shared_prosody();
    let db = TestSqlite::create()?;
    let slot = server.lease_component();
    let mut first = spawn(server, &slot, slot.secret(), db.url())?;
    first.wait_for_log("component connected", READY).await?;

    let mut second = spawn(server, &slot, slot.secret(), db.url())?;
    let status = second
        .wait_exit(READY)
        .await?
        .expect("the second pubsubd must exit");
    assert!(!status.success());
    let log = second.log_contents();
    let line = log
        .lines()
        .find(|l| l.starts_with("pubsubd: "))
        .unwrap_or_else(|| panic!("a one-line error in:\n{log}"));
    assert!(
        line.contains("is in use by pubsubd process") && line.contains("one pubsubd instance only"),
        "{line}"
    );
    assert!(!log.contains("component connected"), "{log}");

    // The first one is unharmed and still answers.
    assert!(first.is_running());
    let mut alice = user(server, "alice").await?;
    let reply = alice.iq(stanza::ping(slot.jid())).await?;
    assert_eq!(reply.attr("type"), Some("result"));

    // Once it has stopped, the file is free again.
    first.terminate().await?;
    let mut third = spawn(server, &slot, slot.secret(), db.url())?;
    third.wait_for_log("component connected", READY).await?;
    Ok(())
}
