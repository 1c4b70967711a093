//! Floods against real Prosody and ejabberd: rate limits per JID and per domain refuse
//! the excess with `resource-constraint`, change nothing for it, and leave everyone
//! else's requests unhurt.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

use common::*;
use pubsubd_testkit::{both_servers, stanza, Element};

/// Sends `n` requests without waiting, then collects the answers.
async fn burst(
    client: &mut pubsubd_testkit::Client,
    ps: &Pubsubd,
    n: usize,
    payload: impl Fn(usize) -> String,
) -> anyhow::Result<Vec<Element>> {
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        let mut el = stanza::iq("set", ps.jid(), stanza::parse(&payload(i)));
        let id = format!("flood-{i}");
        stanza::set_attr(&mut el, "id", &id);
        client.send(el)?;
        ids.push(id);
    }
    let mut answers = Vec::with_capacity(n);
    for id in ids {
        let answer = client
            .wait_for(
                move |s: &Element| stanza::is_iq_response(s, &id),
                Duration::from_secs(30),
            )
            .await?;
        answers.push(answer);
    }
    Ok(answers)
}

both_servers!(
    publish_flood_is_limited_per_jid_and_others_are_served,
    |server| async move {
        let ps = start_with(server, "[rate_limits]\npublish_per_jid = 5\n").await?;
        let mut flooder = user(server, "flooder").await?;
        create(&mut flooder, &ps, "n", &[("pubsub#max_items", "1000")]).await?;
        let answers = burst(&mut flooder, &ps, 60, |i| {
            pubsub(&format!(
                "<publish node='n'><item id='f{i}'><x xmlns='urn:example'/></item></publish>"
            ))
        })
        .await?;
        let accepted = answers
            .iter()
            .filter(|a| a.attr("type") == Some("result"))
            .count();
        let limited: Vec<&Element> = answers
            .iter()
            .filter(|a| a.attr("type") == Some("error"))
            .collect();
        assert!(
            (10..=20).contains(&accepted),
            "{accepted} of 60 accepted with a 5/s limit (10 burst)"
        );
        for a in &limited {
            err(a, "wait", "resource-constraint", None);
        }
        // Exactly the accepted ones are stored.
        let reply = iq(
            &mut flooder,
            &ps,
            "get",
            &pubsub("<items node='n' max_items='100'/>"),
        )
        .await?;
        assert_eq!(item_ids(&reply).len(), accepted);
        // Someone else publishes at once.
        let mut other = user(server, "other").await?;
        create(&mut other, &ps, "m", &[]).await?;
        let t = Instant::now();
        ok(&publish(&mut other, &ps, "m", Some("1"), "<x xmlns='urn:example'/>").await?);
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "another JID's publish took {:?}",
            t.elapsed()
        );
        Ok::<_, anyhow::Error>(())
    }
);

both_servers!(
    request_flood_is_refused_before_it_queues,
    |server| async move {
        let ps = start_with(server, "[rate_limits]\nrequests_per_jid = 20\n").await?;
        let mut flooder = user(server, "flooder").await?;
        let answers = burst(&mut flooder, &ps, 300, |_| {
            "<ping xmlns='urn:xmpp:ping'/>".to_owned()
        })
        .await?;
        let refused = answers
            .iter()
            .filter(|a| stanza::error_condition(a).as_deref() == Some("resource-constraint"))
            .count();
        assert!(
            refused >= 200,
            "only {refused} of 300 pings refused at 20/s"
        );
        let mut other = user(server, "other").await?;
        let t = Instant::now();
        ok(&other.iq(stanza::ping(ps.jid())).await?);
        assert!(t.elapsed() < Duration::from_secs(2));
        Ok::<_, anyhow::Error>(())
    }
);

both_servers!(node_creation_is_limited_per_domain, |server| async move {
    let ps = start_with(server, "[rate_limits]\ncreate_per_domain = 1\n").await?;
    let mut a = user(server, "a").await?;
    let mut b = user(server, "b").await?;
    ok(&iq(&mut a, &ps, "set", &pubsub("<create node='a1'/>")).await?);
    ok(&iq(&mut b, &ps, "set", &pubsub("<create node='b1'/>")).await?);
    // Every test user is on the same domain: the third creation within a second waits.
    err(
        &iq(&mut a, &ps, "set", &pubsub("<create node='a2'/>")).await?,
        "wait",
        "resource-constraint",
        None,
    );
    err(
        &iq(&mut a, &ps, "get", &pubsub("<items node='a2'/>")).await?,
        "cancel",
        "item-not-found",
        None,
    );
    Ok::<_, anyhow::Error>(())
});

/// Registers and logs in `n` users, `REGISTRATION_CONCURRENCY` at a time (Prosody is
/// single-threaded: a thousand logins at once would queue behind each other).
async fn many_users(
    server: &pubsubd_testkit::XmppServer,
    prefix: &str,
    n: usize,
) -> anyhow::Result<Vec<pubsubd_testkit::Client>> {
    use futures::stream::{StreamExt, TryStreamExt};
    const REGISTRATION_CONCURRENCY: usize = 64;
    futures::stream::iter(0..n)
        .map(|_| async move {
            let account = server.create_user(prefix).await?;
            Ok::<_, anyhow::Error>(
                pubsubd_testkit::Client::login(server.c2s_addr(), &account).await?,
            )
        })
        .buffer_unordered(REGISTRATION_CONCURRENCY)
        .try_collect()
        .await
}

/// Counts what a sink component receives, until dropped.
fn count_arrivals(mut conn: pubsubd_testkit::ComponentConnection) -> Arc<AtomicUsize> {
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    tokio::spawn(async move {
        while let Ok(el) = conn.recv().await {
            if el.name() == "message" {
                c.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    count
}

// A server of its own: 1,000 logins and a 20,000-notification fan-out would hold up
// the other tests of this binary on a shared (single-threaded, for Prosody) server.
both_servers!(
    dedicated thousand_subscribes_in_a_second_are_all_answered_while_fanout_runs,
    |server| async move {
        let server = &server;
        const USERS: usize = 1_000;
        const VIRTUAL: i64 = 20_000;
        let ps = start(server).await?;
        let mut owner_c = user(server, "owner").await?;
        create(&mut owner_c, &ps, "big", &[]).await?;
        create(&mut owner_c, &ps, "popular", &[]).await?;
        // A long fan-out to run meanwhile: 20,000 virtual subscribers of a sink component.
        let sink = server.lease_component();
        let conn = pubsubd_testkit::component_handshake(
            server.component_addr(),
            sink.jid(),
            sink.secret(),
        )
        .await?;
        let arrived = count_arrivals(conn);
        subscribe_crowd(&ps.db, "big", "v", sink.jid(), VIRTUAL).await?;
        let mut clients = many_users(server, "crowd", USERS).await?;
        ok(&publish(
            &mut owner_c,
            &ps,
            "big",
            Some("1"),
            &atom_entry("1", "busy"),
        )
        .await?);
        // Every user sends its subscribe request at once.
        let started = Instant::now();
        let before = arrived.load(Ordering::Relaxed);
        let mut waiting = tokio::task::JoinSet::new();
        for mut c in clients.drain(..) {
            let service = ps.jid().to_owned();
            waiting.spawn(async move {
                let jid = c.bare_jid().to_owned();
                let payload =
                    stanza::parse(&pubsub(&format!("<subscribe node='popular' jid='{jid}'/>")));
                let reply = c
                    .iq_timeout(
                        stanza::iq("set", &service, payload),
                        Duration::from_secs(60),
                    )
                    .await;
                reply.map(|r| r.attr("type") == Some("result"))
            });
        }
        let sent_in = started.elapsed();
        let mut answered = 0;
        while let Some(r) = waiting.join_next().await {
            if r?? {
                answered += 1;
            }
        }
        let all_answered_in = started.elapsed();
        let during = arrived.load(Ordering::Relaxed) - before;
        eprintln!(
        "{}: {USERS} subscribe requests sent in {sent_in:?}, {answered} answered with a result in {all_answered_in:?}; {during} fan-out notifications delivered meanwhile",
        server.kind()
    );
        assert!(
            sent_in < Duration::from_secs(1),
            "the requests took {sent_in:?} to send"
        );
        assert_eq!(answered, USERS);
        assert!(
            during > 0,
            "fan-out stalled while the subscriptions were handled"
        );
        assert_eq!(count_subscriptions(&ps.db, "popular").await?, USERS as i64);
        // And the fan-out that ran beside them finishes: every virtual subscriber gets
        // the item.
        let deadline = Instant::now() + Duration::from_secs(120);
        while arrived.load(Ordering::Relaxed) < VIRTUAL as usize && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(arrived.load(Ordering::Relaxed), VIRTUAL as usize);
        Ok::<_, anyhow::Error>(())
    }
);

// A server of its own, like the test above: 600 logins at once.
both_servers!(
    dedicated requests_finding_their_lane_full_are_told_to_wait_and_change_nothing,
    |server| async move {
        let server = &server;
        // One request lane: 600 subscribes at once cannot all queue behind it (a lane
        // holds 256). The reader does not wait for room (it also reads the fan-out's
        // delivery receipts): the overflow is answered at once with resource-constraint.
        const USERS: usize = 600;
        let ps = start_with(server, "request_handlers = 1").await?;
        let mut owner_c = user(server, "owner").await?;
        create(&mut owner_c, &ps, "n", &[]).await?;
        let mut clients = many_users(server, "lane", USERS).await?;
        let mut waiting = tokio::task::JoinSet::new();
        for mut c in clients.drain(..) {
            let service = ps.jid().to_owned();
            waiting.spawn(async move {
                let jid = c.bare_jid().to_owned();
                let payload = stanza::parse(&pubsub(&format!("<subscribe node='n' jid='{jid}'/>")));
                c.iq_timeout(
                    stanza::iq("set", &service, payload),
                    Duration::from_secs(60),
                )
                .await
            });
        }
        let (mut results, mut busy) = (0, 0);
        while let Some(r) = waiting.join_next().await {
            let reply = r??;
            if reply.attr("type") == Some("result") {
                results += 1;
            } else {
                err(&reply, "wait", "resource-constraint", None);
                busy += 1;
            }
        }
        eprintln!(
            "{}: {results} subscribed, {busy} told to wait",
            server.kind()
        );
        assert_eq!(results + busy, USERS, "every request is answered");
        assert!(busy > 0, "600 subscribes fitted one lane of 256");
        assert_eq!(
            count_subscriptions(&ps.db, "n").await?,
            results as i64,
            "a refused subscribe changed nothing"
        );
        // The service keeps serving.
        ok(&iq(
            &mut owner_c,
            &ps,
            "get",
            "<query xmlns='http://jabber.org/protocol/disco#info'/>",
        )
        .await?);
        Ok::<_, anyhow::Error>(())
    }
);

both_servers!(
    a_subscriber_that_never_reads_does_not_stall_the_others,
    |server| async move {
        let ps = start(server).await?;
        let mut owner_c = user(server, "owner").await?;
        create(&mut owner_c, &ps, "n", &[]).await?;
        // A whole domain of subscribers behind a component that never reads its socket:
        // the server's queue towards it fills up.
        let stuck = server.lease_component();
        let _never_read = pubsubd_testkit::component_handshake(
            server.component_addr(),
            stuck.jid(),
            stuck.secret(),
        )
        .await?;
        subscribe_crowd(&ps.db, "n", "stuck", stuck.jid(), 2_000).await?;
        let mut reader = user(server, "reader").await?;
        ok(&subscribe(&mut reader, &ps, "n").await?);
        // 20 items × 2,000 stuck recipients × 1.7 KB: 70 MB the stuck side never takes.
        // The answers come through the same flooded server: Prosody (one thread) has
        // taken over 10 s for one on a slow machine, so they get a minute here.
        for i in 0..20 {
            let item = format!(
                "<publish node='n'><item id='i{i}'>{}</item></publish>",
                atom_entry(&i.to_string(), "x")
            );
            let request = stanza::iq("set", ps.jid(), stanza::parse(&pubsub(&item)));
            ok(&owner_c.iq_timeout(request, Duration::from_secs(60)).await?);
        }
        let started = Instant::now();
        for _ in 0..20 {
            next_event(&mut reader, &ps, Duration::from_secs(60))
                .await
                .context("the reading subscriber starved")?;
        }
        eprintln!("{}: the reading subscriber got 20 items in {:?} beside 40,000 notifications nobody read", server.kind(), started.elapsed());
        Ok::<_, anyhow::Error>(())
    }
);
