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

// `firehose_bot --resume FILE`: a bot that was away reads what was published meanwhile,
// and nothing it had read before. Its first run starts at the node's newest item.
both_servers!(postgres firehose_bot_resumes_after_a_restart_without_missing_an_item,
    |server| async move {
        let ps = start(server).await?;
        let mut publisher = user(server, "pub").await?;
        create(&mut publisher, &ps, "resumable", &[]).await?;
        let publish_n = async |publisher: &mut Client, n: u32| -> anyhow::Result<()> {
            ok(&publish(publisher, &ps, "resumable", Some(&format!("e{n}")), &atom_entry(&n.to_string(), "tick")).await?);
            Ok(())
        };
        publish_n(&mut publisher, 0).await?;
        // One file per test run: the Prosody and ejabberd variants run at once and may
        // lease the same component JID on their servers.
        let state = std::env::temp_dir().join(format!(
            "pubsubd-bot-{}-{}-{}.state",
            std::process::id(),
            server.kind(),
            ps.jid()
        ));
        let _ = std::fs::remove_file(&state);
        let account = server.create_user("bot").await?;
        let service = ps.jid().to_owned();

        let mut bot = Client::login(server.c2s_addr(), &account).await?;
        ok(&subscribe(&mut bot, &ps, "resumable").await?);
        let first = tokio::spawn({
            let (service, state) = (service.clone(), state.clone());
            async move {
                firehose_bot::run_resuming(&mut bot, &service, "resumable", &state, Some(3), false, Duration::from_secs(20)).await
            }
        });
        // The first run has read the node's newest item id before these.
        tokio::time::sleep(Duration::from_millis(500)).await;
        for n in 1..=3 {
            publish_n(&mut publisher, n).await?;
        }
        assert_eq!(first.await??.items, 3, "e1 to e3, not e0");

        // Away: two more.
        for n in 4..=5 {
            publish_n(&mut publisher, n).await?;
        }
        let mut bot = Client::login(server.c2s_addr(), &account).await?;
        let again = firehose_bot::run_resuming(&mut bot, &service, "resumable", &state, None, false, Duration::from_secs(2)).await?;
        assert_eq!(again.items, 2, "e4 and e5, each once");
        let mut bot = Client::login(server.c2s_addr(), &account).await?;
        let nothing_new = firehose_bot::run_resuming(&mut bot, &service, "resumable", &state, None, false, Duration::from_secs(1)).await?;
        assert_eq!(nothing_new.items, 0, "the newest id read was kept");
        let _ = std::fs::remove_file(&state);
        Ok::<_, anyhow::Error>(())
    }
);

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
