//! Faults, each with a count of what arrived, against real Prosody and ejabberd and a
//! real PostgreSQL: pubsubd SIGKILLed twenty times during a burst of publishes and a
//! 10,000-subscriber fan-out; the component port refusing for a minute; PostgreSQL
//! unreachable for 30 s; disk-full errors from PostgreSQL. The promise each time: an
//! acknowledged publish is stored once and delivered to every subscriber; a refused one
//! got an error; pubsubd never panics and keeps serving.
//!
//! PostgreSQL only (they break and inspect the database directly).

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::Context;
use common::engine::{database_outage, subscribe_virtual};
use common::sink::{event_item_ids, ItemSink};
use common::{atom_entry, owner, pubsub, start_logged, user, READY};
use pubsubd_testkit::{both_servers, stanza, Client, Element, StoreKind};
use rand::Rng;

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
        let mut svc = start_logged(server, CONFIG, StoreKind::Postgres, "info").await?;
        let sink_slot = server.lease_component();
        let sink = ItemSink::attach(server, &sink_slot).await?;
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
        let pk = svc.sql.node_pk("burst").await?;
        subscribe_virtual(&svc.sql, pk, sink_slot.jid(), 0, VIRTUAL_SUBSCRIBERS).await?;

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
            svc.process.kill()?;
            svc.process = svc.another().await?;
        }
        // Calm seconds: publishes land on a live service again (a publish that reached a
        // killed process waits PUBLISH_WAIT for its answer first).
        tokio::time::sleep(Duration::from_secs(8)).await;
        let _ = stop_tx.send(true);
        let (acked, refused) = publishing.await?;
        anyhow::ensure!(
            acked.len() >= 5,
            "only {} publishes acknowledged",
            acked.len()
        );

        // Every acknowledged item is stored (once: the id is the key)...
        let stored: HashSet<String> = svc.sql.stored_item_ids("burst").await?.into_iter().collect();
        let lost: Vec<&String> = acked.iter().filter(|id| !stored.contains(*id)).collect();
        assert!(lost.is_empty(), "acknowledged but not stored: {lost:?}");
        // ...and every stored item (acknowledged, or committed just before a kill took the
        // answer) reaches every subscriber.
        let subscribers = virtual_jids(sink_slot.jid(), VIRTUAL_SUBSCRIBERS);
        let started = Instant::now();
        sink.wait_all(&subscribers, &stored, DELIVERED)
            .await
            .with_context(|| svc.process.log_tail(40))?;
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
    let mut svc = start_logged(&server, CONFIG, StoreKind::Postgres, "info").await?;
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
        svc.process.is_running(),
        "pubsubd gave up during the outage"
    );
    server.start()?;
    svc.process
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
    assert!(before || after, "the item never reached the subscriber\n{}", svc.process.log_tail(40));
    // And the service works again.
    let mut owner_c = user(&server, "owner2").await?;
    let reply = iq(&mut owner_c, svc.jid(), "get", &pubsub("<items node='n'/>")).await?;
    assert_eq!(reply.attr("type"), Some("result"));
    Ok::<_, anyhow::Error>(())
});

both_servers!(postgres publishes_during_a_30_s_database_outage_are_refused_never_lost,
    |server| async move {
        let svc = start_logged(server, CONFIG, StoreKind::Postgres, "info").await?;
        let sink_slot = server.lease_component();
        let sink = ItemSink::attach(server, &sink_slot).await?;
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
        let pk = svc.sql.node_pk("n").await?;
        subscribe_virtual(&svc.sql, pk, sink_slot.jid(), 0, 100).await?;
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
        let stored: HashSet<String> = svc.sql.stored_item_ids("n").await?.into_iter().collect();
        let lost: Vec<&String> = acked.iter().filter(|id| !stored.contains(*id)).collect();
        assert!(lost.is_empty(), "acknowledged but lost: {lost:?}");
        sink.wait_all(&virtual_jids(sink_slot.jid(), 100), &stored, DELIVERED)
            .await
            .with_context(|| svc.process.log_tail(40))?;
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
        let svc = start_logged(server, CONFIG, StoreKind::Postgres, "info").await?;
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
    .execute(svc.sql.pg()?)
    .await?;
        sqlx::query("CREATE TRIGGER full_disk BEFORE INSERT OR UPDATE ON items FOR EACH ROW EXECUTE FUNCTION full_disk()")
        .execute(svc.sql.pg()?)
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
            svc.sql.jobs_left().await?,
            0,
            "a job without its item was committed"
        );
        sqlx::query("DROP TRIGGER full_disk ON items")
            .execute(svc.sql.pg()?)
            .await?;
        let reply = iq(
            &mut a,
            svc.jid(),
            "set",
            &pubsub("<publish node='n'><item id='ok'><x xmlns='urn:x'/></item></publish>"),
        )
        .await?;
        assert_eq!(reply.attr("type"), Some("result"));
        let log = svc.process.log_contents();
        assert!(!log.contains("panicked"), "pubsubd panicked");
        assert!(
            log.contains("No space left on device"),
            "the cause is logged"
        );
        Ok::<_, anyhow::Error>(())
    }
);
