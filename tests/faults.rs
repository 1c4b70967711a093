//! Faults, each with a count of what arrived, against real Prosody and ejabberd and a
//! real PostgreSQL: pubsubd SIGKILLed twenty times during a burst of publishes and a
//! 10,000-subscriber fan-out; the component port refusing for a minute; PostgreSQL
//! unreachable for 30 s; disk-full errors from PostgreSQL. The promise each time: an
//! acknowledged publish is stored once and delivered to every subscriber; a refused one
//! got an error; pubsubd never panics and keeps serving.
//!
//! PostgreSQL only (they break and inspect the database directly).

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use common::{atom_entry, owner, pubsub, user, NS_EVENT};
use pubsubd_testkit::{
    both_servers, component_handshake, stanza, Client, ComponentSlot, Element, PubsubdProcess,
    TestDb, XmppServer,
};
use rand::Rng;
use sqlx::PgPool;

const BIN: &str = env!("CARGO_BIN_EXE_pubsubd");
const READY: Duration = Duration::from_secs(30);
/// Generous: 10,000 subscribers × dozens of items through Prosody takes a minute.
const DELIVERED: Duration = Duration::from_secs(240);
/// Short leases, so a killed process's jobs are taken over quickly.
const CONFIG: &str = "fanout_lease_secs = 2\nfanout_page_size = 200\n";
const VIRTUAL_SUBSCRIBERS: i64 = 10_000;
/// How long the publisher waits for an answer before it counts a publish as refused: a
/// request that reached a process just killed is never answered.
const PUBLISH_WAIT: Duration = Duration::from_secs(3);
/// Items acknowledged in the burst.
const BURST_ITEMS: usize = 12;

/// pubsubd on its own slot and database, restartable.
struct Service {
    slot: ComponentSlot,
    db: TestDb,
    pool: PgPool,
    config: std::path::PathBuf,
    process: Option<PubsubdProcess>,
}

impl Service {
    async fn start(server: &XmppServer) -> anyhow::Result<Service> {
        let db = TestDb::create().await?;
        let slot = server.lease_component();
        let config = std::env::temp_dir().join(format!("{}-faults.toml", db.name()));
        std::fs::write(&config, CONFIG)?;
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600))?;
        }
        let mut s = Service {
            pool: PgPool::connect_lazy(db.url())?,
            slot,
            db,
            config,
            process: None,
        };
        s.restart(server).await?;
        Ok(s)
    }

    /// Starts (again). Right after a kill, Prosody may still hold the old stream and
    /// refuse the JID with `conflict`, which ends a starting pubsubd; try again, as a
    /// service manager would.
    async fn restart(&mut self, server: &XmppServer) -> anyhow::Result<()> {
        for attempt in 1.. {
            let mut p = PubsubdProcess::spawn(
                BIN,
                &[
                    "run",
                    "--config",
                    &self.config.display().to_string(),
                    "--jid",
                    self.slot.jid(),
                    "--secret",
                    self.slot.secret(),
                    "--server",
                    &server.component_addr().to_string(),
                    "--database",
                    self.db.url(),
                ],
                &[("RUST_LOG", "info")],
            )?;
            match p.wait_for_log("component connected", READY).await {
                Ok(()) => {
                    self.process = Some(p);
                    return Ok(());
                }
                Err(e) if attempt < 40 && p.log_contents().contains("conflict") => {
                    drop(e);
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err(e) => return Err(e),
            }
        }
        unreachable!()
    }

    fn kill(&mut self) -> anyhow::Result<()> {
        if let Some(mut p) = self.process.take() {
            p.kill()?;
        }
        Ok(())
    }

    fn jid(&self) -> &str {
        self.slot.jid()
    }

    fn log_tail(&self) -> String {
        self.process
            .as_ref()
            .map(|p| p.log_tail(40))
            .unwrap_or_default()
    }

    async fn stored_item_ids(&self, node: &str) -> anyhow::Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT i.item_id FROM items i JOIN nodes n ON n.pk = i.node_pk WHERE n.name = $1 AND NOT n.deleted",
        )
        .bind(node)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn jobs_left(&self) -> anyhow::Result<i64> {
        Ok(sqlx::query_scalar("SELECT count(*) FROM fanout_jobs")
            .fetch_one(&self.pool)
            .await?)
    }

    /// `count` subscriptions of virtual users of the sink domain, by SQL (registering
    /// 10,000 real accounts would take minutes).
    async fn subscribe_virtual(&self, node: &str, sink: &str, count: i64) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO subscriptions (node_pk, jid, bare_jid, subid, state)
             SELECT n.pk, 'v' || g || '@' || $2, 'v' || g || '@' || $2, 'f-' || n.pk || '-' || g, 'subscribed'
             FROM nodes n, generate_series(0, $3::bigint - 1) g WHERE n.name = $1 AND NOT n.deleted",
        )
        .bind(node)
        .bind(sink)
        .bind(count)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.config);
    }
}

/// What a sink component received: item ids per recipient.
#[derive(Clone, Default)]
struct Sink {
    got: Arc<Mutex<HashMap<String, HashSet<String>>>>,
}

impl Sink {
    async fn attach(server: &XmppServer, slot: &ComponentSlot) -> anyhow::Result<Sink> {
        let sink = Sink::default();
        let mut conn =
            component_handshake(server.component_addr(), slot.jid(), slot.secret()).await?;
        let s = sink.clone();
        tokio::spawn(async move {
            loop {
                let el = match conn.recv().await {
                    Ok(el) => el,
                    Err(e) => {
                        eprintln!("sink stopped after {} notifications: {e}", s.pairs());
                        return;
                    }
                };
                if el.name() != "message" {
                    continue;
                }
                let to = el.attr("to").unwrap_or("").to_owned();
                for id in event_item_ids(&el) {
                    if let Ok(mut m) = s.got.lock() {
                        m.entry(to.clone()).or_default().insert(id);
                    }
                }
            }
        });
        Ok(sink)
    }

    fn pairs(&self) -> usize {
        self.got
            .lock()
            .map(|m| m.values().map(HashSet::len).sum())
            .unwrap_or(0)
    }

    /// Waits until every one of `recipients` has every item of `ids`.
    async fn wait_all(
        &self,
        recipients: &[String],
        ids: &HashSet<String>,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let want = recipients.len() * ids.len();
        let deadline = Instant::now() + timeout;
        loop {
            let missing = {
                let m = self.got.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
                recipients
                    .iter()
                    .map(|r| {
                        ids.iter()
                            .filter(|i| !m.get(r).is_some_and(|s| s.contains(*i)))
                            .count()
                    })
                    .sum::<usize>()
            };
            if missing == 0 {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("{missing} of {want} (subscriber, item) notifications never arrived");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn event_item_ids(msg: &Element) -> Vec<String> {
    msg.get_child("event", NS_EVENT)
        .and_then(|e| e.get_child("items", NS_EVENT))
        .map(|items| {
            items
                .children()
                .filter(|c| c.name() == "item")
                .filter_map(|i| i.attr("id").map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// An IQ to the service at `jid`, answered.
async fn iq(
    client: &mut Client,
    jid: &str,
    kind: &str,
    payload_xml: &str,
) -> anyhow::Result<Element> {
    Ok(client
        .iq(stanza::iq(kind, jid, stanza::parse(payload_xml)))
        .await?)
}

fn virtual_jids(sink: &str, count: i64) -> Vec<String> {
    (0..count).map(|n| format!("v{n}@{sink}")).collect()
}

/// Publishes `id` and says whether pubsubd acknowledged it. Any other outcome (an
/// error from pubsubd or from the server because pubsubd is gone, or no answer) is a
/// refusal the publisher would retry.
async fn try_publish(client: &mut Client, service: &str, node: &str, id: &str) -> bool {
    let payload = stanza::parse(&pubsub(&format!(
        "<publish node='{node}'><item id='{id}'>{}</item></publish>",
        atom_entry(id, "burst")
    )));
    matches!(
        client.iq_timeout(stanza::iq("set", service, payload), PUBLISH_WAIT).await,
        Ok(reply) if reply.attr("type") == Some("result")
    )
}

both_servers!(postgres sigkill_twenty_times_during_publishes_loses_no_acknowledged_item,
    |server| async move {
        let mut svc = Service::start(server).await?;
        let sink_slot = server.lease_component();
        let sink = Sink::attach(server, &sink_slot).await?;
        let mut publisher = user(server, "burst").await?;
        let reply = iq(
            &mut publisher,
            svc.jid(),
            "set",
            &pubsub("<create node='burst'/>"),
        )
        .await?;
        anyhow::ensure!(
            reply.attr("type") == Some("result"),
            "{}",
            stanza::to_xml(&reply)
        );
        svc.subscribe_virtual("burst", sink_slot.jid(), VIRTUAL_SUBSCRIBERS)
            .await?;

        // Publish during the first kills, then keep killing while the 10,000-subscriber
        // fan-out of what was accepted is under way (about 12 items: 120,000 notifications,
        // enough for every kill to land mid fan-out, few enough for a debug build in CI).
        let service = svc.jid().to_owned();
        let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
        let publishing = tokio::spawn(async move {
            let (mut acked, mut refused) = (HashSet::new(), 0usize);
            let mut n = 0;
            while !*stop_rx.borrow_and_update() && acked.len() < BURST_ITEMS {
                let id = format!("b{n}");
                n += 1;
                if try_publish(&mut publisher, &service, "burst", &id).await {
                    acked.insert(id);
                } else {
                    refused += 1;
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            (acked, refused)
        });
        for _ in 0..20 {
            let wait = rand::thread_rng().gen_range(150..900);
            tokio::time::sleep(Duration::from_millis(wait)).await;
            svc.kill()?;
            svc.restart(server).await?;
        }
        // A few calm seconds: publishes land on a live service again.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let _ = stop_tx.send(true);
        let (acked, refused) = publishing.await?;
        anyhow::ensure!(
            acked.len() >= 5,
            "only {} publishes acknowledged",
            acked.len()
        );

        // Every acknowledged item is stored (once: the id is the key)...
        let stored: HashSet<String> = svc.stored_item_ids("burst").await?.into_iter().collect();
        let lost: Vec<&String> = acked.iter().filter(|id| !stored.contains(*id)).collect();
        assert!(lost.is_empty(), "acknowledged but not stored: {lost:?}");
        // ...and every stored item (acknowledged, or committed just before a kill took the
        // answer) reaches every subscriber.
        let subscribers = virtual_jids(sink_slot.jid(), VIRTUAL_SUBSCRIBERS);
        let started = Instant::now();
        sink.wait_all(&subscribers, &stored, DELIVERED)
            .await
            .with_context(|| svc.log_tail())?;
        eprintln!(
        "{}: 20 kills; {} publishes acknowledged, {} refused, {} stored; {} notifications delivered, the last {:.1?} after the kills",
        server.kind(),
        acked.len(),
        refused,
        stored.len(),
        sink.pairs(),
        started.elapsed()
    );
        Ok::<_, anyhow::Error>(())
    }
);

both_servers!(dedicated postgres component_port_refusing_for_a_minute_delays_but_loses_nothing, |server| async move {
    let mut server = server;
    let mut svc = Service::start(&server).await?;
    let mut owner_c = user(&server, "owner").await?;
    // `normal` notifications: the server stores them for a subscriber who is offline.
    let create = format!(
        "<create node='n'/><configure>{}</configure>",
        common::config_form(&[("pubsub#notification_type", "normal")])
    );
    let reply = iq(&mut owner_c, svc.jid(), "set", &pubsub(&create)).await?;
    anyhow::ensure!(reply.attr("type") == Some("result"), "{}", stanza::to_xml(&reply));
    let account = server.create_user("sub").await?;
    let mut sub = Client::login(server.c2s_addr(), &account).await?;
    let jid = sub.bare_jid().to_owned();
    let reply = iq(&mut sub, svc.jid(), "set", &pubsub(&format!("<subscribe node='n' jid='{jid}'/>"))).await?;
    anyhow::ensure!(reply.attr("type") == Some("result"), "{}", stanza::to_xml(&reply));
    // The item is committed; then the server goes away for a minute.
    anyhow::ensure!(try_publish(&mut owner_c, svc.jid(), "n", "before-outage").await);
    server.stop()?;
    tokio::time::sleep(Duration::from_secs(60)).await;
    anyhow::ensure!(
        svc.process.as_mut().is_some_and(|p| p.is_running()),
        "pubsubd gave up during the outage"
    );
    server.start()?;
    svc.process
        .as_mut()
        .context("pubsubd")?
        .wait_for_log("reconnect", READY)
        .await?;
    // Delivered before the server went down, or (stored offline) after it came back.
    let is_it = {
        let from = svc.jid().to_owned();
        move |m: &Element| {
            m.name() == "message"
                && m.attr("from") == Some(from.as_str())
                && event_item_ids(m).contains(&"before-outage".to_owned())
        }
    };
    let before = sub.drain().into_iter().any(|m| is_it(&m));
    let mut sub = Client::login(server.c2s_addr(), &account).await?;
    let after = sub.wait_for(is_it, if before { Duration::from_secs(3) } else { DELIVERED }).await.is_ok();
    assert!(before || after, "the item never reached the subscriber\n{}", svc.log_tail());
    // And the service works again.
    let mut owner_c = user(&server, "owner2").await?;
    let reply = iq(&mut owner_c, svc.jid(), "get", &pubsub("<items node='n'/>")).await?;
    assert_eq!(reply.attr("type"), Some("result"));
    Ok::<_, anyhow::Error>(())
});

/// Makes the database refuse connections for `outage` and drops pubsubd's.
async fn database_outage(db: &TestDb, outage: Duration) -> anyhow::Result<()> {
    use sqlx::Connection as _;
    let admin_url = std::env::var(pubsubd_testkit::ADMIN_URL_ENV)
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let mut admin = sqlx::PgConnection::connect(&admin_url).await?;
    let name = db.name();
    let set =
        |on: bool| sqlx::AssertSqlSafe(format!("ALTER DATABASE \"{name}\" ALLOW_CONNECTIONS {on}"));
    sqlx::query(set(false)).execute(&mut admin).await?;
    sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1")
        .bind(name)
        .execute(&mut admin)
        .await?;
    tokio::time::sleep(outage).await;
    sqlx::query(set(true)).execute(&mut admin).await?;
    Ok(())
}

both_servers!(postgres publishes_during_a_30_s_database_outage_are_refused_never_lost,
    |server| async move {
        let svc = Service::start(server).await?;
        let sink_slot = server.lease_component();
        let sink = Sink::attach(server, &sink_slot).await?;
        let mut publisher = user(server, "pub").await?;
        let reply = iq(
            &mut publisher,
            svc.jid(),
            "set",
            &pubsub("<create node='n'/>"),
        )
        .await?;
        anyhow::ensure!(
            reply.attr("type") == Some("result"),
            "{}",
            stanza::to_xml(&reply)
        );
        svc.subscribe_virtual("n", sink_slot.jid(), 100).await?;
        let db = &svc.db;
        let service = svc.jid().to_owned();
        let publishing = async {
            let (mut acked, mut errors) = (HashSet::new(), Vec::new());
            let started = Instant::now();
            let mut n = 0;
            while started.elapsed() < Duration::from_secs(40) {
                let id = format!("o{n}");
                n += 1;
                let payload = stanza::parse(&pubsub(&format!(
                    "<publish node='n'><item id='{id}'><x xmlns='urn:example'/></item></publish>"
                )));
                match publisher
                    .iq_timeout(
                        stanza::iq("set", &service, payload),
                        Duration::from_secs(20),
                    )
                    .await
                {
                    Ok(r) if r.attr("type") == Some("result") => {
                        acked.insert(id);
                    }
                    Ok(r) => {
                        // The error's type, then its condition: `wait/internal-server-error`.
                        let type_ = r
                            .children()
                            .find(|c| c.name() == "error")
                            .and_then(|e| e.attr("type"))
                            .unwrap_or_default()
                            .to_owned();
                        let condition = stanza::error_condition(&r).unwrap_or_default();
                        errors.push(format!("{type_}/{condition}"));
                    }
                    Err(e) => errors.push(format!("no answer: {e}")),
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            (acked, errors)
        };
        let ((acked, errors), outage) = tokio::join!(publishing, async {
            tokio::time::sleep(Duration::from_secs(3)).await;
            database_outage(db, Duration::from_secs(30)).await
        });
        outage?;
        assert!(
            !errors.is_empty(),
            "nothing was refused during a 30 s outage"
        );
        assert!(
            errors.iter().all(|e| e == "wait/internal-server-error"),
            "refusals other than wait/internal-server-error (try again later): {errors:?}"
        );
        let stored: HashSet<String> = svc.stored_item_ids("n").await?.into_iter().collect();
        let lost: Vec<&String> = acked.iter().filter(|id| !stored.contains(*id)).collect();
        assert!(lost.is_empty(), "acknowledged but lost: {lost:?}");
        sink.wait_all(&virtual_jids(sink_slot.jid(), 100), &stored, DELIVERED)
            .await
            .with_context(|| svc.log_tail())?;
        eprintln!(
        "{}: {} acknowledged, {} refused with wait/internal-server-error during the outage, all delivered",
        server.kind(),
        acked.len(),
        errors.len()
    );
        Ok::<_, anyhow::Error>(())
    }
);

both_servers!(postgres disk_full_errors_are_refusals_not_crashes,
    |server| async move {
        let svc = Service::start(server).await?;
        let mut a = user(server, "a").await?;
        let reply = iq(&mut a, svc.jid(), "set", &pubsub("<create node='n'/>")).await?;
        anyhow::ensure!(
            reply.attr("type") == Some("result"),
            "{}",
            stanza::to_xml(&reply)
        );
        // What PostgreSQL says when the disk is full (SQLSTATE 53100), on every item write.
        sqlx::query(
        "CREATE FUNCTION full_disk() RETURNS trigger LANGUAGE plpgsql AS
         $$ BEGIN RAISE EXCEPTION 'could not extend file: No space left on device' USING ERRCODE = 'disk_full'; END $$",
    )
    .execute(&svc.pool)
    .await?;
        sqlx::query("CREATE TRIGGER full_disk BEFORE INSERT OR UPDATE ON items FOR EACH ROW EXECUTE FUNCTION full_disk()")
        .execute(&svc.pool)
        .await?;
        for i in 0..5 {
            let reply = iq(
                &mut a,
                svc.jid(),
                "set",
                &pubsub(&format!(
                    "<publish node='n'><item id='{i}'><x xmlns='urn:x'/></item></publish>"
                )),
            )
            .await?;
            assert_eq!(
                stanza::error_condition(&reply).as_deref(),
                Some("internal-server-error"),
                "{}",
                stanza::to_xml(&reply)
            );
        }
        // Reads and other writes still work, and nothing half-done was left behind.
        let reply = iq(&mut a, svc.jid(), "get", &owner("<configure node='n'/>")).await?;
        assert_eq!(reply.attr("type"), Some("result"));
        assert_eq!(
            svc.jobs_left().await?,
            0,
            "a job without its item was committed"
        );
        sqlx::query("DROP TRIGGER full_disk ON items")
            .execute(&svc.pool)
            .await?;
        let reply = iq(
            &mut a,
            svc.jid(),
            "set",
            &pubsub("<publish node='n'><item id='ok'><x xmlns='urn:x'/></item></publish>"),
        )
        .await?;
        assert_eq!(reply.attr("type"), Some("result"));
        let log = svc
            .process
            .as_ref()
            .map(|p| p.log_contents())
            .unwrap_or_default();
        assert!(!log.contains("panicked"), "pubsubd panicked");
        assert!(
            log.contains("No space left on device"),
            "the cause is logged"
        );
        Ok::<_, anyhow::Error>(())
    }
);
