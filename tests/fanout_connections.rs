//! Fan-out over several component connections, several instances, and the server's
//! XEP-0033 multicast service (see `fanout.rs` for the harness's terms).
//!
//! Two instances on one database are about PostgreSQL alone: an SQLite file serves one
//! instance.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use pubsubd_testkit::{
    both_stores, component_handshake, shared_ejabberd, shared_prosody, stanza, Element,
    PubsubdProcess, ServerKind, StoreKind, TestStore, XmppServer, DOMAIN, MULTICAST_JID,
};

use common::engine::*;
use common::sink::{attach_sink, Inbox};
use common::{NOTIFY, READY};

/// `connections = 3` on ejabberd: one process opens three streams for its JID, the
/// workers spread over them, each notification goes out exactly once (barrier pings the
/// server balanced onto a sibling stream still confirm their pages), and requests that
/// arrive on any stream are answered.
async fn several_connections_on_ejabberd_carry_the_fanout_exactly_once() -> anyhow::Result<()> {
    const NODES: i64 = 6;
    const PER_NODE: i64 = 2_000;
    let server = shared_ejabberd();
    let ps = start_engine(
        server,
        &format!("connections = 3\nfanout_workers = 3\n{SMALL_PAGES}"),
    )
    .await?;
    let sink = server.lease_component();
    let inbox = Inbox::default();
    attach_sink(server, &sink, inbox.clone()).await?;
    let nodes = virtual_nodes(&ps.sql, "multi", NODES, sink.jid(), PER_NODE).await?;
    for round in 0..2 {
        for (pk, name) in &nodes {
            publish(&ps.sql, *pk, name, &format!("round{round}"), true).await?;
        }
    }
    let expected = (2 * NODES * PER_NODE) as usize;
    inbox.wait_unique(expected, FANOUT_DONE).await?;
    ps.wait_idle(FANOUT_DONE).await?;
    tokio::time::sleep(SETTLE).await;
    let log = ps.process.log_contents();
    let streams = log.matches("component connected").count();
    eprintln!(
        "ejabberd: {streams} streams, {} notifications, {} duplicates",
        inbox.total(),
        duplicates(&inbox)
    );
    assert_eq!(streams, 3, "three streams opened");
    assert_eq!(inbox.total(), expected, "each notification exactly once");
    // Requests reach the process on whichever stream the server picks; every one of
    // them is answered.
    let (_, mut client) = user(server, "multi").await?;
    for _ in 0..20 {
        let reply = client
            .iq(stanza::iq(
                "get",
                ps.jid(),
                stanza::parse("<query xmlns='http://jabber.org/protocol/disco#info'/>"),
            ))
            .await?;
        assert_eq!(reply.attr("type"), Some("result"));
    }
    Ok(())
}
both_stores!(several_connections_on_ejabberd_carry_the_fanout_exactly_once);

// ---------------------------------------------------------------------------------
// XEP-0033: notifications in groups through the server's multicast service

/// With no `multicast` setting, pubsubd finds ejabberd's `mod_multicast` (on in the
/// testkit as `multicast.localhost`, taking 500 recipients a stanza from components)
/// through the server's disco#items, and the service copies one stanza to many: each
/// subscriber gets each notification exactly once and in order under the job's id
/// (`ps-<job>`, the id a copy has on either path; the groups are counted by
/// `pubsubd_multicast_groups_total`), and a subscriber with two subscriptions still gets
/// one copy per subscription with its SubID header (those differ per recipient, so they
/// go one by one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_ejabberds_multicast_service_each_notification_arrives_once_in_order(
) -> anyhow::Result<()> {
    each_notification_arrives_once_in_order_through_multicast(shared_ejabberd(), None).await
}

/// The same on Prosody, through the XEP-0033 module pubsubd ships for it
/// (`deploy/prosody/mod_pubsubd_multicast.lua`, loaded by the testkit as
/// `multicast.localhost` with its default limit of 100 recipients a stanza), named in
/// the configuration this time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_the_prosody_multicast_module_each_notification_arrives_once_in_order(
) -> anyhow::Result<()> {
    each_notification_arrives_once_in_order_through_multicast(shared_prosody(), Some(MULTICAST_JID))
        .await
}

/// With no `multicast` setting, pubsubd finds the module on Prosody too (Prosody lists
/// its components in the host's disco#items).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prosodys_multicast_module_is_found_without_configuration() -> anyhow::Result<()> {
    each_notification_arrives_once_in_order_through_multicast(shared_prosody(), None).await
}

/// `named`: the service as configured; `None` to leave it to be found.
async fn each_notification_arrives_once_in_order_through_multicast(
    server: &XmppServer,
    named: Option<&str>,
) -> anyhow::Result<()> {
    // With Alice, 1,000 recipients without a SubID: ten full groups a job.
    const VIRTUAL: i64 = 999;
    const ITEMS: usize = 3;
    let port = pubsubd_testkit::free_ports(1)?[0];
    // The engine harness turns multicast off unless told about it: the limit (at its
    // default) leaves the service to be found.
    let multicast = named.map_or("multicast_limit = 100\n".to_string(), |jid| {
        format!("multicast = \"{jid}\"\n")
    });
    let mut ps = start_engine(
        server,
        &format!("{multicast}metrics_listen = \"127.0.0.1:{port}\""),
    )
    .await?;
    if named.is_none() {
        ps.process
            .wait_for_log("found the server's multicast service", READY)
            .await?;
        assert!(
            ps.process.log_contents().contains(MULTICAST_JID),
            "found {MULTICAST_JID}"
        );
    }
    ps.process
        .wait_for_log("multicast on: notifications go in groups", READY)
        .await?;
    let sink = server.lease_component();
    let inbox = Inbox::default();
    attach_sink(server, &sink, inbox.clone()).await?;
    let node = create_node(&ps.sql, "grouped", "{}").await?;
    // Alice first, so that she shares a group with the virtual subscribers.
    let (_, mut alice) = user(server, "mcalice").await?;
    subscribe(&ps.sql, node, alice.bare_jid(), "{}").await?;
    subscribe_virtual(&ps.sql, node, sink.jid(), 0, VIRTUAL).await?;
    let (_, mut bob) = user(server, "mcbob").await?;
    let bob_subs = [
        subscribe(&ps.sql, node, bob.bare_jid(), "{}").await?,
        subscribe(&ps.sql, node, bob.jid(), "{}").await?,
    ];
    let mut jobs = Vec::new();
    for n in 1..=ITEMS {
        jobs.push(publish(&ps.sql, node, "grouped", &format!("item-{n}"), true).await?);
    }
    let expected = ITEMS * VIRTUAL as usize;
    inbox.wait_unique(expected, FANOUT_DONE).await?;
    ps.wait_idle(FANOUT_DONE).await?;
    tokio::time::sleep(SETTLE).await;
    assert_eq!(inbox.total(), expected, "each notification exactly once");
    let in_groups: Vec<String> = jobs.iter().map(|job| format!("ps-{job}")).collect();
    let got = inbox.snapshot();
    let other: Vec<(String, Option<&Vec<String>>)> = (0..VIRTUAL)
        .map(|n| virtual_jid(n, sink.jid()))
        .filter(|jid| got.get(jid) != Some(&in_groups))
        .map(|jid| {
            let ids = got.get(&jid);
            (jid, ids)
        })
        .collect();
    assert!(
        other.is_empty(),
        "every virtual subscriber got {in_groups:?}, once each and in order; {} did not (first: {:?})",
        other.len(),
        other.first()
    );

    let alices = events_received(&mut alice, ITEMS).await?;
    let order: Vec<String> = alices.iter().flat_map(item_ids).collect();
    assert_eq!(order, ["item-1", "item-2", "item-3"], "in order, once each");
    for msg in &alices {
        assert_eq!(msg.attr("from"), Some(ps.jid()));
        assert_eq!(subid_header(msg), None);
        assert!(
            msg.get_child("addresses", "http://jabber.org/protocol/address")
                .is_none(),
            "the service strips the bcc list: {}",
            String::from(msg)
        );
    }
    let ids: Vec<&str> = alices.iter().filter_map(|m| m.attr("id")).collect();
    assert_eq!(ids, in_groups, "Alice's copies carry the jobs' ids");

    let bobs = events_received(&mut bob, 2 * ITEMS).await?;
    assert_eq!(bobs.len(), 2 * ITEMS, "two subscriptions, one copy each");
    for sub in bob_subs {
        let items: Vec<String> = bobs
            .iter()
            .filter(|m| {
                m.attr("id")
                    .is_some_and(|id| id.ends_with(&format!("-{sub}")))
            })
            .inspect(|m| assert!(subid_header(m).is_some(), "a SubID on each copy"))
            .flat_map(item_ids)
            .collect();
        assert_eq!(items, ["item-1", "item-2", "item-3"], "subscription {sub}");
    }

    let metrics = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await?
        .text()
        .await?;
    let sample = |name: &str| metric(&metrics, name);
    let groups = sample("pubsubd_multicast_groups_total").unwrap_or(0.0);
    eprintln!("{groups} groups for {} notifications", expected + 3 * ITEMS);
    // 1,000 recipients a job in groups of 100 (the default multicast_limit).
    assert_eq!(groups, (ITEMS * 10) as f64, "{metrics}");
    Ok(())
}

/// A server without an XEP-0033 service: with no `multicast` setting pubsubd looks,
/// finds none, and says once how to add one to the server in use; notifications go one
/// by one. `multicast = "off"` does not look at all. (The store plays no part: SQLite.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_multicast_service_the_log_names_the_servers_fix() -> anyhow::Result<()> {
    for (kind, fix) in [
        (
            ServerKind::Prosody,
            "Component \"multicast.localhost\" \"pubsubd_multicast\"",
        ),
        (ServerKind::Ejabberd, "mod_multicast: {}"),
    ] {
        let server = XmppServer::start_without_multicast(kind)?;
        let mut ps = start_engine_on(StoreKind::Sqlite, &server, "multicast_limit = 100").await?;
        ps.process
            .wait_for_log("no XEP-0033 multicast service on the server", READY)
            .await
            .with_context(|| format!("{kind}: {}", ps.process.log_tail(30)))?;
        let log = ps.process.log_contents();
        assert!(log.contains(fix), "{kind}: the fix {fix:?} in {log}");
        assert!(!log.contains("multicast on"), "{kind}: {log}");
        let mut off = start_engine_on(StoreKind::Sqlite, &server, "multicast = \"off\"").await?;
        off.process
            .wait_for_log("component connected", READY)
            .await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let log = off.process.log_contents();
        assert!(!log.contains("multicast service"), "{kind}, off: {log}");
    }
    Ok(())
}

/// A multicast service that refuses groups costs a resend, never a notification. A
/// stand-in service on a component slot answers disco#info as a multicast service and
/// bounces every group with `not-acceptable`: pubsubd sends those notifications again
/// one by one, stops grouping for the stream, and every subscriber gets every one.
async fn groups_a_multicast_service_refuses_are_sent_again_one_by_one() -> anyhow::Result<()> {
    const VIRTUAL: i64 = 300;
    let server = shared_ejabberd();
    let service = server.lease_component();
    let bounced = Arc::new(AtomicUsize::new(0));
    let mut conn =
        component_handshake(server.component_addr(), service.jid(), service.secret()).await?;
    let jid = service.jid().to_string();
    let counter = bounced.clone();
    tokio::spawn(async move {
        while let Ok(el) = conn.recv().await {
            let (Some(from), id) = (el.attr("from"), el.attr("id").unwrap_or("")) else {
                continue;
            };
            let answer = if el.name() == "iq" && el.attr("type") == Some("get") {
                format!(
                    "<iq xmlns='jabber:component:accept' type='result' from='{jid}' to='{from}' id='{id}'>\
                     <query xmlns='http://jabber.org/protocol/disco#info'>\
                     <identity category='service' type='multicast' name='refuses everything'/>\
                     <feature var='http://jabber.org/protocol/address'/></query></iq>"
                )
            } else if el.name() == "message" && el.attr("type") != Some("error") {
                counter.fetch_add(1, Ordering::Relaxed);
                format!(
                    "<message xmlns='jabber:component:accept' type='error' from='{jid}' to='{from}' id='{id}'>\
                     <error type='modify'><not-acceptable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>"
                )
            } else {
                continue;
            };
            let Ok(answer) = answer.parse::<Element>() else {
                continue;
            };
            if conn.send(&answer).await.is_err() {
                return;
            }
        }
    });
    let mut ps = start_engine(
        server,
        &format!("multicast = \"{}\"\n{SMALL_PAGES}", service.jid()),
    )
    .await?;
    ps.process
        .wait_for_log("multicast on: notifications go in groups", READY)
        .await?;
    let sink = server.lease_component();
    let inbox = Inbox::default();
    attach_sink(server, &sink, inbox.clone()).await?;
    let node = create_node(&ps.sql, "refused", "{}").await?;
    subscribe_virtual(&ps.sql, node, sink.jid(), 0, VIRTUAL).await?;
    let mut jobs = Vec::new();
    for n in 0..2 {
        jobs.push(publish(&ps.sql, node, "refused", &format!("r{n}"), true).await?);
    }
    inbox.wait_unique(2 * VIRTUAL as usize, FANOUT_DONE).await?;
    ps.wait_idle(FANOUT_DONE).await?;
    let log = ps.process.log_contents();
    eprintln!(
        "{} groups bounced; {} notifications, {} duplicates",
        bounced.load(Ordering::Relaxed),
        inbox.total(),
        duplicates(&inbox)
    );
    assert!(
        bounced.load(Ordering::Relaxed) >= 1,
        "a group went to the service"
    );
    assert!(
        log.contains("the multicast service refused a group of notifications"),
        "{}",
        ps.process.log_tail(30)
    );
    for job in jobs {
        assert_every_virtual_subscriber_got_job(&inbox, sink.jid(), VIRTUAL, job);
    }
    Ok(())
}
both_stores!(groups_a_multicast_service_refuses_are_sent_again_one_by_one);

/// A `multicast` JID that is no multicast service (here the server's own domain, which
/// answers disco#info without the XEP-0033 feature): the first answer says so, barrier
/// pings go back to pubsubd's own JID, and notifications go one by one as without the
/// setting.
async fn a_multicast_jid_without_a_service_leaves_notifications_one_by_one_on_prosody(
) -> anyhow::Result<()> {
    const VIRTUAL: i64 = 200;
    let server = shared_prosody();
    let ps = start_engine(server, &format!("multicast = \"{DOMAIN}\"")).await?;
    let sink = server.lease_component();
    let inbox = Inbox::default();
    attach_sink(server, &sink, inbox.clone()).await?;
    let node = create_node(&ps.sql, "alone", "{}").await?;
    subscribe_virtual(&ps.sql, node, sink.jid(), 0, VIRTUAL).await?;
    let started = Instant::now();
    let job = publish(&ps.sql, node, "alone", "a1", true).await?;
    inbox.wait_unique(VIRTUAL as usize, FANOUT_DONE).await?;
    ps.wait_idle(FANOUT_DONE).await?;
    eprintln!("delivered in {:?}", started.elapsed());
    assert_every_virtual_subscriber_got_job(&inbox, sink.jid(), VIRTUAL, job);
    let log = ps.process.log_contents();
    assert!(
        log.contains("notifications go one by one until the next stream"),
        "{}",
        ps.process.log_tail(30)
    );
    assert!(!log.contains("multicast on"));
    Ok(())
}
both_stores!(a_multicast_jid_without_a_service_leaves_notifications_one_by_one_on_prosody);

/// The XEP-0033 module pubsubd ships for Prosody, on its own. A component's message with
/// `to`, `cc` and `bcc` addresses reaches each address once, with the bcc addresses
/// stripped and the others marked delivered; an address already marked delivered gets
/// nothing. Too many recipients, an address without a JID, no addresses at all and a
/// sender that is no component are refused with XEP-0033's conditions, and nothing of
/// theirs is delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_prosody_multicast_module_copies_to_each_address_and_refuses_what_it_must(
) -> anyhow::Result<()> {
    use pubsubd::xmpp::multicast::NS_ADDRESS;
    let server = shared_prosody();
    let slot = server.lease_component();
    let mut component =
        component_handshake(server.component_addr(), slot.jid(), slot.secret()).await?;
    let (_, mut to) = user(server, "mcto").await?;
    let (_, mut cc) = user(server, "mccc").await?;
    let (_, mut bcc) = user(server, "mcbcc").await?;
    let (_, mut done) = user(server, "mcdone").await?;
    let message = |id: &str, addresses: &str| {
        stanza::parse(&format!(
            "<message xmlns='jabber:component:accept' from='{}' to='{MULTICAST_JID}' id='{id}' \
             type='headline'>{addresses}<body>{id}</body></message>",
            slot.jid()
        ))
    };
    let address = |kind: &str, jid: &str| format!("<address type='{kind}' jid='{jid}'/>");
    let block = |inner: String| format!("<addresses xmlns='{NS_ADDRESS}'>{inner}</addresses>");

    let mut many = address("to", to.jid());
    for n in 0..100 {
        many.push_str(&address("bcc", &format!("v{n}@{}", slot.jid())));
    }
    let refused = [
        ("many", block(many), "not-acceptable"),
        (
            "uri",
            block(address("to", to.jid()) + "<address type='cc' uri='mailto:a@example.org'/>"),
            "jid-malformed",
        ),
        ("none", String::new(), "bad-request"),
    ];
    for (id, addresses, _) in &refused {
        component.send(&message(id, addresses)).await?;
    }
    for (id, _, condition) in &refused {
        let bounce = tokio::time::timeout(NOTIFY, async {
            loop {
                let el = component.recv().await?;
                if el.attr("id") == Some(*id) {
                    return Ok::<_, anyhow::Error>(el);
                }
            }
        })
        .await
        .with_context(|| format!("no answer to '{id}'"))??;
        assert_eq!(
            bounce.attr("type"),
            Some("error"),
            "{}",
            String::from(&bounce)
        );
        assert_eq!(bounce.attr("from"), Some(MULTICAST_JID));
        let error = bounce
            .get_child("error", "jabber:component:accept")
            .with_context(|| String::from(&bounce))?;
        assert!(
            error.has_child(condition, "urn:ietf:params:xml:ns:xmpp-stanzas"),
            "'{id}' refused with {condition}: {}",
            String::from(&bounce)
        );
    }
    // A user may not have stanzas copied out (only this server's components may).
    to.send(stanza::parse(&format!(
        "<message xmlns='jabber:client' to='{MULTICAST_JID}' id='user'>{}<body>user</body></message>",
        block(address("bcc", cc.jid()))
    )))?;
    let bounce = to
        .wait_for(|el| el.attr("id") == Some("user"), NOTIFY)
        .await?;
    assert!(
        bounce
            .get_child("error", "jabber:client")
            .is_some_and(|e| e.has_child("forbidden", "urn:ietf:params:xml:ns:xmpp-stanzas")),
        "{}",
        String::from(&bounce)
    );

    let ok = block(format!(
        "{}{}{}<address type='to' jid='{}' delivered='true'/>",
        address("to", to.jid()),
        address("cc", cc.jid()),
        address("bcc", bcc.jid()),
        done.jid()
    ));
    component.send(&message("ok", &ok)).await?;
    let is_ok = |el: &Element| el.name() == "message" && el.attr("id") == Some("ok");
    let (to_jid, cc_jid, done_jid) = (
        to.jid().to_string(),
        cc.jid().to_string(),
        done.jid().to_string(),
    );
    for client in [&mut to, &mut cc, &mut bcc] {
        let copy = client.wait_for(is_ok, NOTIFY).await?;
        assert_eq!(copy.attr("to"), Some(client.jid()));
        assert_eq!(copy.attr("from"), Some(slot.jid()));
        let listed: Vec<(String, String, Option<String>)> = copy
            .get_child("addresses", NS_ADDRESS)
            .with_context(|| String::from(&copy))?
            .children()
            .map(|a| {
                (
                    a.attr("type").unwrap_or("").to_string(),
                    a.attr("jid").unwrap_or("").to_string(),
                    a.attr("delivered").map(str::to_string),
                )
            })
            .collect();
        let delivered = |kind: &str, jid: &str| (kind.into(), jid.into(), Some("true".into()));
        assert_eq!(
            listed,
            [
                delivered("to", &to_jid),
                delivered("cc", &cc_jid),
                delivered("to", &done_jid)
            ],
            "no bcc, the rest marked delivered"
        );
    }
    tokio::time::sleep(SETTLE).await;
    for client in [&mut to, &mut cc, &mut bcc, &mut done] {
        let extra: Vec<String> = client
            .drain()
            .iter()
            .filter(|el| el.name() == "message")
            .map(String::from)
            .collect();
        assert!(extra.is_empty(), "{} got more: {extra:?}", client.jid());
    }
    Ok(())
}

/// What an operator sees on the metrics listener, and the proof that one node's fan-out
/// uses every connection: with a single worker and one node, both streams carry pages
/// (the `connection` label of the notification counter), and the counts add up to the
/// notifications delivered, each exactly once.
async fn one_nodes_pages_take_turns_over_the_connections_and_metrics_count_them(
) -> anyhow::Result<()> {
    const SUBSCRIBERS: i64 = 2_000;
    let server = shared_ejabberd();
    let port = pubsubd_testkit::free_ports(1)?[0];
    let ps = start_engine(
        server,
        &format!(
            "connections = 2\nfanout_workers = 1\nmetrics_listen = \"127.0.0.1:{port}\"\n{SMALL_PAGES}"
        ),
    )
    .await?;
    let http = reqwest::Client::new();
    let get = |path: &'static str| {
        let http = http.clone();
        async move {
            let r = http
                .get(format!("http://127.0.0.1:{port}{path}"))
                .send()
                .await?;
            Ok::<_, anyhow::Error>((r.status().as_u16(), r.text().await?))
        }
    };
    assert_eq!(get("/healthz").await?.0, 200);
    let (status, body) = get("/readyz").await?;
    assert_eq!(status, 200, "ready once connected: {body}");
    let sink = server.lease_component();
    let inbox = Inbox::default();
    attach_sink(server, &sink, inbox.clone()).await?;
    let pk = create_node(&ps.sql, "spread", "{}").await?;
    subscribe_virtual(&ps.sql, pk, sink.jid(), 0, SUBSCRIBERS).await?;
    publish(&ps.sql, pk, "spread", "one", true).await?;
    inbox.wait_unique(SUBSCRIBERS as usize, FANOUT_DONE).await?;
    ps.wait_idle(FANOUT_DONE).await?;
    tokio::time::sleep(SETTLE).await;
    assert_eq!(inbox.total(), SUBSCRIBERS as usize, "each exactly once");
    let (status, metrics) = get("/metrics").await?;
    assert_eq!(status, 200);
    let sample = |name: &str| metric(&metrics, name);
    let sent: Vec<f64> = ["0", "1"]
        .iter()
        .map(|c| {
            sample(&format!(
                "pubsubd_notifications_sent_total{{connection=\"{c}\"}}"
            ))
            .unwrap_or(0.0)
        })
        .collect();
    eprintln!("notifications per connection: {sent:?}");
    assert!(
        sent.iter().all(|n| *n > 0.0),
        "both streams carried pages: {sent:?}\n{metrics}"
    );
    assert_eq!(sent.iter().sum::<f64>(), SUBSCRIBERS as f64, "{metrics}");
    assert_eq!(sample("pubsubd_xmpp_connected"), Some(2.0), "{metrics}");
    Ok(())
}
both_stores!(one_nodes_pages_take_turns_over_the_connections_and_metrics_count_them);

/// Prosody accepts one stream per component: asking for more is a start-up error that
/// says so, not a half-working service.
async fn several_connections_on_prosody_are_refused_at_start_up() -> anyhow::Result<()> {
    let server = shared_prosody();
    let slot = server.lease_component();
    let store = TestStore::create().await?;
    let config = common::write_config(server, &slot, &store, "connections = 2")?;
    let path = config.0.display().to_string();
    let mut process = PubsubdProcess::spawn(common::BIN, &["run", "--config", &path], &[])?;
    let status = process
        .wait_exit(READY)
        .await?
        .context("pubsubd kept running with connections = 2 on Prosody")?;
    let log = process.log_contents();
    assert!(!status.success());
    assert!(
        log.contains("connections = 2: connection 2 was refused"),
        "the error names the setting: {log}"
    );
    Ok(())
}
both_stores!(several_connections_on_prosody_are_refused_at_start_up);

/// ejabberd balances one component JID across connections: two pubsubd processes on
/// one database share the work, each notification goes out once, and a killed
/// process's half-done job is finished by the other.
///
/// PostgreSQL only: an SQLite file serves one instance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_ejabberd_share_work_and_survive_a_kill() -> anyhow::Result<()> {
    const NODES: i64 = 4;
    const PER_NODE: i64 = 2_500;
    let server = shared_ejabberd();
    // One worker each, so that both processes must take part.
    let ps = start_engine_on(
        StoreKind::Postgres,
        server,
        &format!("fanout_workers = 1\n{SMALL_PAGES}"),
    )
    .await?;
    let mut second = ps.another().await?;
    let sink = server.lease_component();
    let inbox = Inbox::default();
    attach_sink(server, &sink, inbox.clone()).await?;
    let nodes = virtual_nodes(&ps.sql, "shared", NODES, sink.jid(), PER_NODE).await?;

    // Normal operation: exactly once.
    for (pk, name) in &nodes {
        publish(&ps.sql, *pk, name, "first", true).await?;
    }
    inbox
        .wait_unique((NODES * PER_NODE) as usize, FANOUT_DONE)
        .await?;
    ps.wait_idle(FANOUT_DONE).await?;
    tokio::time::sleep(SETTLE).await;
    assert_eq!(
        inbox.total(),
        (NODES * PER_NODE) as usize,
        "each notification once"
    );
    let worked = |log: &str| log.matches("fan-out batch done").count();
    let (a, b) = (
        worked(&ps.process.log_contents()),
        worked(&second.log_contents()),
    );
    eprintln!("ejabberd: batches done by the two instances: {a} and {b}");
    assert!(a > 0 && b > 0, "both instances take part ({a}, {b})");

    // Kill one in the middle of the second round.
    for (pk, name) in &nodes {
        publish(&ps.sql, *pk, name, "second", true).await?;
    }
    // Kill it while it holds a half-walked job.
    let process = process_id(&second.log_contents()).context("no process id in the log")?;
    let deadline = Instant::now() + FANOUT_DONE;
    loop {
        let holding: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM fanout_jobs
             WHERE left(lease_owner::text, 32) = left($1, 32) AND cursor > 0",
        )
        .bind(&process)
        .fetch_one(ps.sql.pg()?)
        .await?;
        if holding > 0 {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the second instance never held a half-walked job"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    second.kill()?;
    eprintln!(
        "ejabberd: killed one instance with {} of {} delivered",
        inbox.unique() - (NODES * PER_NODE) as usize,
        NODES * PER_NODE
    );
    inbox
        .wait_unique((2 * NODES * PER_NODE) as usize, FANOUT_DONE)
        .await?;
    ps.wait_idle(FANOUT_DONE).await?;
    eprintln!(
        "ejabberd: second round complete, {} duplicates",
        duplicates(&inbox)
    );
    Ok(())
}

// ---------------------------------------------------------------------------------
