//! The programs in `examples/`, run against pubsubd on real Prosody and ejabberd.

// Each example includes `examples/common` itself, as a program of its own must.
#![allow(clippy::duplicate_mod)]

mod common;

#[allow(dead_code)]
#[path = "../examples/atom_publisher.rs"]
mod atom_publisher;
#[allow(dead_code)]
#[path = "../examples/command_bus.rs"]
mod command_bus;
#[allow(dead_code)]
#[path = "../examples/firehose_bot.rs"]
mod firehose_bot;

use std::time::Duration;

use common::*;
use pubsubd_testkit::{both_servers, Client};

const FEED: &str = "<feed xmlns='http://www.w3.org/2005/Atom'><title>News</title>\
    <entry><id>tag:example.org,2026:1</id><title>First</title><updated>2026-12-01T00:00:00Z</updated></entry>\
    <entry><id>tag:example.org,2026:2</id><title>Second ✓</title><updated>2026-12-01T00:00:01Z</updated></entry>\
    </feed>";

both_servers!(postgres atom_publisher_publishes_each_entry_once,
    |server| async move {
        let ps = start(server).await?;
        let account = server.create_user("feeds").await?;
        let ids = atom_publisher::run(
            server.c2s_addr(),
            &account.jid(),
            account.password(),
            ps.jid(),
            "news",
            FEED,
        )
        .await?;
        assert_eq!(ids.len(), 2);
        // Publishing the same feed again overwrites.
        let again = atom_publisher::run(
            server.c2s_addr(),
            &account.jid(),
            account.password(),
            ps.jid(),
            "news",
            FEED,
        )
        .await?;
        assert_eq!(ids, again);
        let mut reader = user(server, "reader").await?;
        let got = item_ids(&iq(&mut reader, &ps, "get", &pubsub("<items node='news'/>")).await?);
        assert_eq!(got.len(), 2);
        assert!(ids.iter().all(|id| got.contains(id)));
        Ok::<_, anyhow::Error>(())
    }
);
both_servers!(postgres firehose_bot_counts_every_item, |server| async move {
    let ps = start(server).await?;
    let mut publisher = user(server, "pub").await?;
    create(&mut publisher, &ps, "firehose", &[]).await?;
    let bot_account = server.create_user("bot").await?;
    let mut bot = Client::login(server.c2s_addr(), &bot_account).await?;
    ok(&subscribe(&mut bot, &ps, "firehose").await?);
    const N: u64 = 50;
    let counting = tokio::spawn({
        let service = ps.jid().to_owned();
        async move {
            firehose_bot::run_subscribed(
                &mut bot,
                &service,
                Some(N),
                false,
                Duration::from_secs(20),
            )
            .await
        }
    });
    for i in 0..N {
        ok(&publish(
            &mut publisher,
            &ps,
            "firehose",
            Some(&format!("e{i}")),
            &atom_entry(&i.to_string(), "tick"),
        )
        .await?);
    }
    let report = counting.await??;
    assert_eq!(report.items, N);
    Ok::<_, anyhow::Error>(())
});

both_servers!(postgres command_bus_collects_one_result_per_online_agent,
    |server| async move {
        let ps = start(server).await?;
        let ctl = server.create_user("ctl").await?;
        let mut agents = Vec::new();
        for name in ["agent-a", "agent-b", "agent-c"] {
            let a = server.create_user(name).await?;
            agents.push((a.jid(), a.password().to_owned()));
        }
        let round = command_bus::demo(
            server.c2s_addr(),
            ps.jid(),
            (&ctl.jid(), ctl.password()),
            &agents,
            "uptime",
        )
        .await?;
        let names: std::collections::BTreeSet<String> =
            agents.iter().map(|(j, _)| j.clone()).collect();
        assert_eq!(round.online, names);
        assert_eq!(round.results.len(), 3);
        for (agent, out) in &round.results {
            assert!(
                out.starts_with(agent.as_str()) && out.contains("uptime"),
                "{agent}: {out}"
            );
        }
        Ok::<_, anyhow::Error>(())
    }
);
