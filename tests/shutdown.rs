//! Shutdown under load: SIGTERM in the middle of a fan-out to 2,000 subscribers.
//! The process answers what it has, gives its fan-out leases back, closes its stream and
//! exits within `shutdown_timeout`; a restarted instance delivers the rest, and every
//! subscriber ends up with every item.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::ensure;
use common::sink::{attach_sink, Inbox};
use common::*;
use pubsubd_testkit::both_servers;

/// Virtual subscribers on the sink: a walk of several pages per item.
const SUBSCRIBERS: i64 = 2_000;
/// Items published before the signal: a fan-out of 40,000 notifications.
const ITEMS: usize = 20;
/// The bound given to pubsubd, shorter than the default so the test is quick.
const SHUTDOWN_TIMEOUT_SECS: u64 = 8;
/// What the exit may take beyond `shutdown_timeout`: the signal's delivery and the
/// process's own teardown.
const EXIT_SLACK: Duration = Duration::from_secs(3);
/// One fan-out at a time: four of them at once on a 2-core machine starve the servers,
/// and a request times out before the signal is even sent.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
/// Generous for a shared 2-core machine.
const DELIVERED_WITHIN: Duration = Duration::from_secs(180);

both_servers!(
    dedicated sigterm_mid_fanout_exits_within_the_deadline_and_a_restart_delivers_the_rest,
    |server| async move {
        // Its own server: a fan-out this size through a shared one would hold up the
        // requests of the tests beside it.
        let server = &server;
        let _turn = ONE_AT_A_TIME.lock().await;
        let ps = start_with(
            server,
            &format!("shutdown_timeout = {SHUTDOWN_TIMEOUT_SECS}\n"),
        )
        .await?;
        let sink = server.lease_component();
        let inbox = Inbox::default();
        attach_sink(server, &sink, inbox.clone()).await?;
        let mut owner = user(server, "owner").await?;
        create(&mut owner, &ps, "news", &[]).await?;
        subscribe_crowd(&ps.db, "news", "v", sink.jid(), SUBSCRIBERS).await?;
        let expected = SUBSCRIBERS as usize * ITEMS;
        for n in 0..ITEMS {
            let id = format!("i{n}");
            ok(&publish(
                &mut owner,
                &ps,
                "news",
                Some(&id),
                &atom_entry(&id, "shutdown"),
            )
            .await?);
        }
        // In the middle of the walk.
        let started = Instant::now();
        while inbox.unique() < expected / 20 {
            ensure!(
                started.elapsed() < DELIVERED_WITHIN,
                "the fan-out did not start"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let mut ps = ps;
        let signalled = Instant::now();
        let status = ps.process.terminate().await?;
        let took = signalled.elapsed();
        let at_exit = inbox.unique();
        eprintln!(
            "{} on {:?}: SIGTERM with {at_exit} of {expected} delivered; exited after {took:.2?} ({status})",
            server.kind(),
            ps.db.kind()
        );
        assert!(status.success(), "exit status {status}");
        assert!(
            took < Duration::from_secs(SHUTDOWN_TIMEOUT_SECS) + EXIT_SLACK,
            "exited {took:.2?} after SIGTERM; shutdown_timeout is {SHUTDOWN_TIMEOUT_SECS} s"
        );
        let log = ps.process.log_contents();
        assert!(log.contains("pubsubd stopped"), "no clean stop in the log");

        let _restarted = ps.another().await?;
        // Duplicates (pages resent after the restart) are allowed, gaps are not. A page
        // sent again may take the other path (one by one until the restarted process
        // has heard from the multicast service, in a group before the signal or
        // after): items are told apart by job, and a resend must carry the id its first
        // copy had, whichever path each took.
        let jobs_of = |ids: &Vec<String>| -> HashSet<String> {
            ids.iter()
                .filter_map(|id| id.strip_prefix("ps-")?.split('-').next().map(str::to_owned))
                .collect()
        };
        let all_there = || {
            let got = inbox.snapshot();
            got.len() == SUBSCRIBERS as usize
                && got.values().all(|ids| jobs_of(ids).len() == ITEMS)
        };
        let waiting = Instant::now();
        while !all_there() {
            ensure!(
                waiting.elapsed() < DELIVERED_WITHIN,
                "after the restart, {} of {expected} notifications arrived",
                inbox.unique()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let got = inbox.snapshot();
        assert_eq!(got.len(), SUBSCRIBERS as usize, "recipients");
        for (to, ids) in &got {
            let jobs = jobs_of(ids);
            assert_eq!(jobs.len(), ITEMS, "{to} got {} distinct items", jobs.len());
            let distinct: HashSet<&String> = ids.iter().collect();
            assert_eq!(
                distinct.len(),
                ITEMS,
                "{to}: one id per item on either path, so a client can drop resends: {distinct:?}"
            );
        }
        Ok::<_, anyhow::Error>(())
    }
);
