//! Crash takeover: a fan-out claim is freed by its owner's death, not by its lease
//! running out. Every test here leaves `fanout_lease_secs` at its default (30 s), so a
//! takeover within a couple of seconds can only come from the death of the owner (on
//! PostgreSQL, the end of its liveness session; on SQLite, the next start clearing the
//! leases under the instance lock).
//!
//! Acceptance tests run pubsubd against a real Prosody and a real ejabberd, , on PostgreSQL
//! and on SQLite; those about several instances or the liveness session are about
//! PostgreSQL and say so. Subscribers are virtual JIDs on
//! a sink component ([`common::sink`]); items are published over XMPP and acknowledged.

mod common;

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _};
use pubsubd::store::claims::{ClaimLimits, FanoutStore, LeaseOwner, SessionKey};
use pubsubd::store::postgres::liveness::APPLICATION_NAME;
use pubsubd::store::postgres::PgStore;
use pubsubd_testkit::{
    both_servers, shared_ejabberd, stanza, Client, ComponentSlot, StoreKind, TestDb, TestStore,
    XmppServer,
};
use sqlx::PgPool;

use common::job;
use common::sink::{attach_sink, Inbox};
use common::Pubsubd;

/// These tests send one by one, the path whose pages they count (grouping:
/// `fanout_connections.rs`).
const ONE_BY_ONE: &str = "multicast = \"off\"";

/// The target: the first resumed delivery within this of the restart (or of the kill,
/// for a second instance taking over).
const TAKEOVER_WITHIN: Duration = Duration::from_secs(2);
/// Longest wait for a whole fan-out of these tests (40,000 to 100,000 notifications through
/// Prosody on a busy 2-core machine, debug build).
const FANOUT_DONE: Duration = Duration::from_secs(180);
/// What a killed process had written may still be routed to the sink for a moment;
/// the restart waits until the sink has been quiet this long, so that whatever arrives
/// after it comes from the new process.
const QUIET_AFTER_KILL: Duration = Duration::from_millis(500);
/// After everything was delivered, how long stragglers (duplicates) may still come.
const SETTLE: Duration = Duration::from_secs(2);
/// Most notifications in one page of a walk: `fanout::PAGE_NOTIFICATIONS` (a page of a
/// batch of k jobs has 4,096 / k subscriptions; at most 500 × k < 4,096 for k < 9).
const PAGE_NOTIFICATIONS: usize = 4096;
/// Pages a walk may have sent past its saved cursor: page n + 1 waits for its barrier
/// while page n + 2 is queued, and page n's confirmed position is saved only once page
/// n + 2 is queued. A kill can leave all three delivered with the cursor before them,
/// and whoever takes the claim over sends them again.
const PAGES_IN_FLIGHT: usize = 3;
/// The session lock class of `store::postgres::liveness` ("pslv").
const SESSION_LOCK_CLASS: i64 = 0x7073_6c76;

/// Counts into `inbox` every event notification from the service `from` that reaches
/// `client`, as it arrives, until the test ends.
fn follow(mut client: Client, from: &str, inbox: Inbox) {
    let from = from.to_owned();
    tokio::spawn(async move {
        let jid = client.bare_jid().to_owned();
        loop {
            let Some(msg) = client.recv_timeout(Duration::from_secs(1)).await else {
                if client.closed_reason().is_some() {
                    return;
                }
                continue;
            };
            if msg.name() == "message"
                && msg.attr("from") == Some(from.as_str())
                && msg.get_child("event", common::NS_EVENT).is_some()
            {
                inbox.record(&jid, msg.attr("id").unwrap_or(""));
            }
        }
    });
}

/// A fan-out of acknowledged items to a node whose walk order interleaves real users
/// with chunks of virtual subscribers on a sink (`c<i>v<n>@<sink>`): a chunk, a user, a
/// chunk, ... The users' notifications (`watched`) show the walk's progress as it
/// happens; the sink (`inbox`), a single connection fed tens of thousands of notifications, lags the
/// server by tens of seconds.
struct WatchedFanout {
    _sink: ComponentSlot,
    inbox: Inbox,
    watched: Inbox,
    watchers: usize,
    virtual_subscribers: usize,
    items: usize,
}

impl WatchedFanout {
    /// Sets the node up on `ps` with `watchers` users, each after `chunk` virtual
    /// subscribers, and publishes `items` items to it at once.
    async fn publish(
        server: &XmppServer,
        ps: &Pubsubd,
        node: &str,
        (watchers, chunk): (usize, i64),
        items: usize,
    ) -> anyhow::Result<WatchedFanout> {
        let sink = server.lease_component();
        let inbox = Inbox::default();
        attach_sink(server, &sink, inbox.clone()).await?;
        let watched = Inbox::default();
        let mut publisher = common::user(server, "publisher").await?;
        common::create(&mut publisher, ps, node, &[]).await?;
        for i in 0..watchers {
            common::subscribe_crowd(&ps.db, node, &format!("c{i}v"), sink.jid(), chunk).await?;
            let mut watcher = common::user(server, "watcher").await?;
            common::ok(&common::subscribe(&mut watcher, ps, node).await?);
            follow(watcher, ps.jid(), watched.clone());
        }
        publish_acknowledged(&mut publisher, ps, node, items).await?;
        Ok(WatchedFanout {
            _sink: sink,
            inbox,
            watched,
            watchers,
            virtual_subscribers: watchers * chunk as usize,
            items,
        })
    }

    /// Notifications the users get in all.
    fn all_watched(&self) -> usize {
        self.watchers * self.items
    }

    /// Waits until every recipient got every item, then for stragglers; fails if any
    /// got less, or if there are more than `bound` duplicates.
    async fn assert_complete(&self, server: &XmppServer, bound: usize) -> anyhow::Result<()> {
        self.watched
            .wait_unique(self.all_watched(), FANOUT_DONE)
            .await?;
        self.inbox
            .wait_unique(self.virtual_subscribers * self.items, FANOUT_DONE)
            .await?;
        tokio::time::sleep(SETTLE).await;
        let found = duplicates(&self.inbox) + duplicates(&self.watched);
        eprintln!(
            "{}: all {} delivered, {found} duplicates (bound {bound})",
            server.kind(),
            (self.virtual_subscribers + self.watchers) * self.items,
        );
        assert_each_got_every_item(&self.inbox, self.virtual_subscribers, self.items);
        assert_each_got_every_item(&self.watched, self.watchers, self.items);
        ensure!(found <= bound, "{found} duplicates, more than {bound}");
        Ok(())
    }
}

/// Publishes `items` items to `node` at once (the requests all sent before the first
/// answer, so that the fan-out finds them queued together, as after a burst of
/// publishes), and checks that each was acknowledged.
async fn publish_acknowledged(
    publisher: &mut Client,
    ps: &Pubsubd,
    node: &str,
    items: usize,
) -> anyhow::Result<()> {
    for n in 0..items {
        let id = format!("i{n}");
        let mut iq = stanza::iq(
            "set",
            ps.jid(),
            stanza::parse(&common::pubsub(&format!(
                "<publish node='{node}'><item id='{id}'>{}</item></publish>",
                common::atom_entry(&id, "takeover")
            ))),
        );
        stanza::set_attr(&mut iq, "id", &format!("publish-{node}-{id}"));
        publisher.send(iq)?;
    }
    for n in 0..items {
        let id = format!("publish-{node}-i{n}");
        let reply = publisher
            .wait_for(|e| stanza::is_iq_response(e, &id), common::NOTIFY)
            .await?;
        common::ok(&reply);
    }
    Ok(())
}

/// Checks that each of `recipients` recipients in `inbox` got `items` distinct
/// notifications.
fn assert_each_got_every_item(inbox: &Inbox, recipients: usize, items: usize) {
    let got = inbox.snapshot();
    let short = got
        .values()
        .filter(|ids| {
            let mut ids = (*ids).clone();
            ids.sort();
            ids.dedup();
            ids.len() != items
        })
        .count();
    assert_eq!(
        short, 0,
        "recipients that did not get exactly {items} items"
    );
    assert_eq!(got.len(), recipients, "recipients");
}

fn duplicates(inbox: &Inbox) -> usize {
    inbox.total() - inbox.unique()
}

/// How many nodes have leased jobs (each is one claim's batch).
async fn leased_nodes(store: &TestStore) -> anyhow::Result<i64> {
    const SQL: &str =
        "SELECT count(DISTINCT node_pk) FROM fanout_jobs WHERE lease_owner IS NOT NULL";
    Ok(match store {
        TestStore::Postgres(db) => {
            sqlx::query_scalar(SQL)
                .fetch_one(&PgPool::connect(db.url()).await?)
                .await?
        }
        TestStore::Sqlite(file) => {
            let pool = sqlx::SqlitePool::connect(file.url()).await?;
            sqlx::query_scalar(SQL).fetch_one(&pool).await?
        }
    })
}

// SIGKILL in the middle of a fan-out of 20 acknowledged items to 2,000 subscribers,
// restart at once: the new process resumes within 2 s, although the dead process's
// lease (30 s) has most of its time left; every subscriber gets every item, with no
// more duplicates than the pages the dead process had in flight. "Resumed" is seen by
// 40 real users spread along the walk (one after every 50 virtual subscribers, so one
// in every page), which get their notifications as the server routes them.
both_servers!(
    sigkill_mid_fanout_then_restart_resumes_within_two_seconds,
    |server| async move {
        const WATCHERS: usize = 40;
        const CHUNK: i64 = 50;
        const ITEMS: usize = 20;
        let mut ps = common::start_with(server, ONE_BY_ONE).await?;
        let fanout =
            WatchedFanout::publish(server, &ps, "takeover", (WATCHERS, CHUNK), ITEMS).await?;
        let watched = &fanout.watched;

        // In the middle: a tenth of the walk done, most of it still to come.
        let all_watched = fanout.all_watched();
        let deadline = Instant::now() + FANOUT_DONE;
        while watched.total() < all_watched / 10 {
            ensure!(Instant::now() < deadline, "the fan-out did not start");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        ps.process.kill()?;
        let at_kill = watched.unique();
        ensure!(
            at_kill < all_watched / 2,
            "too late: {at_kill} of {all_watched} watched notifications delivered"
        );
        let claims = leased_nodes(&ps.db).await?;
        ensure!(claims > 0, "the killed process held no claim");
        // What the killed process had handed to the server reaches the users now.
        watched
            .wait_quiet(QUIET_AFTER_KILL, Duration::from_secs(30))
            .await?;
        let before = watched.total();

        let restarted_at = Instant::now();
        let _next = ps.another().await?;
        let connected = restarted_at.elapsed();
        let resumed = watched.wait_beyond(before, FANOUT_DONE).await? - restarted_at;
        eprintln!(
            "{} on {:?}: killed with {at_kill} of {all_watched} watched notifications \
             delivered ({claims} claim); restarted: connected after {connected:.2?}, \
             first resumed delivery after {resumed:.2?}",
            server.kind(),
            ps.db.kind(),
        );
        assert!(
            resumed < TAKEOVER_WITHIN,
            "first resumed delivery {resumed:.2?} after the restart"
        );
        let bound = claims as usize * PAGES_IN_FLIGHT * PAGE_NOTIFICATIONS;
        fanout.assert_complete(server, bound).await?;
        Ok::<_, anyhow::Error>(())
    }
);

/// The live liveness sessions of a database: key and backend pid.
async fn live_sessions(pool: &PgPool) -> anyhow::Result<Vec<(i32, i32)>> {
    Ok(sqlx::query_as(
        "SELECT objid::int, pid FROM pg_locks
         WHERE locktype = 'advisory' AND classid = $1::bigint::oid AND objsubid = 2 AND granted
           AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .bind(SESSION_LOCK_CLASS)
    .fetch_all(pool)
    .await?)
}

/// Ends the backend of liveness session `key` as an administrator (or a lost
/// connection) would.
async fn terminate_session(pool: &PgPool, key: i32) -> anyhow::Result<()> {
    let terminated: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(l.pid) FROM pg_locks l
         JOIN pg_stat_activity s ON s.pid = l.pid AND s.application_name = $3
         WHERE l.locktype = 'advisory' AND l.classid = $1::bigint::oid AND l.objid = $2::bigint::oid
           AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .bind(SESSION_LOCK_CLASS)
    .bind(i64::from(key))
    .bind(APPLICATION_NAME)
    .fetch_all(pool)
    .await?;
    ensure!(
        terminated == [true],
        "session {key}'s backend: {terminated:?}"
    );
    Ok(())
}

/// Half-walked jobs and the session of their lease.
async fn half_walked(pool: &PgPool) -> anyhow::Result<Vec<(i64, i32, i64)>> {
    Ok(sqlx::query_as(
        "SELECT id, lease_session, cursor FROM fanout_jobs
         WHERE cursor > 0 AND lease_session IS NOT NULL ORDER BY id",
    )
    .fetch_all(pool)
    .await?)
}

/// Waits until each of `orphans` (job, cursor at the kill), leased by the dead session
/// `dead`, is done, or leased by another session with `moved((cursor at the kill,
/// cursor now))`; returns the time since `killed_at`.
async fn wait_for_orphans(
    pool: &PgPool,
    orphans: &[(i64, i64)],
    dead: i32,
    killed_at: Instant,
    moved: impl Fn((i64, i64)) -> bool,
) -> anyhow::Result<Duration> {
    loop {
        let mut left = 0;
        for &(job, cursor) in orphans {
            let row: Option<(Option<i32>, i64)> =
                sqlx::query_as("SELECT lease_session, cursor FROM fanout_jobs WHERE id = $1")
                    .bind(job)
                    .fetch_optional(pool)
                    .await?;
            if let Some((session, now)) = row {
                if session == Some(dead) || session.is_none() || !moved((cursor, now)) {
                    left += 1;
                }
            }
        }
        if left == 0 {
            return Ok(killed_at.elapsed());
        }
        ensure!(
            killed_at.elapsed() < FANOUT_DONE,
            "{left} jobs of the killed instance never taken over"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Two pubsubd instances on one ejabberd JID and one PostgreSQL database (Prosody
/// takes one connection per component JID). One is SIGKILLed while it holds
/// half-walked jobs; the other, running, claims them within 2 s (its idle workers are
/// woken by the end of the dead one's session, not by the 5 s poll), and every
/// notification arrives. Its first page of them then queues on its connection behind
/// what its own walks have in flight, so that page's confirmation is reported, not
/// bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_instance_takes_over_a_killed_ones_claims_within_two_seconds(
) -> anyhow::Result<()> {
    const NODES: usize = 4;
    const SUBSCRIBERS: i64 = 2_500;
    const ITEMS: usize = 10;
    let server = shared_ejabberd();
    let mut ps = common::start_with_store(server, ONE_BY_ONE, StoreKind::Postgres).await?;
    let mut second = ps.another().await?;
    let pool = match &ps.db {
        TestStore::Postgres(db) => PgPool::connect(db.url()).await?,
        TestStore::Sqlite(_) => bail!("this test needs PostgreSQL"),
    };
    let sink = server.lease_component();
    let inbox = Inbox::default();
    attach_sink(server, &sink, inbox.clone()).await?;
    let mut publisher = common::user(server, "publisher").await?;
    for n in 0..NODES {
        let node = format!("shared{n}");
        common::create(&mut publisher, &ps, &node, &[]).await?;
        common::subscribe_crowd(&ps.db, &node, &format!("n{n}v"), sink.jid(), SUBSCRIBERS).await?;
    }
    for n in 0..NODES {
        publish_acknowledged(&mut publisher, &ps, &format!("shared{n}"), ITEMS).await?;
    }
    let total = NODES * SUBSCRIBERS as usize * ITEMS;

    // Kill whichever holds half-walked jobs (the other being alive to take them).
    let session_of = |log: String| -> anyhow::Result<i32> {
        common::logged_field(&log, "fan-out liveness session opened", "session")
            .context("no session in the log")?
            .parse()
            .context("session")
    };
    let first = session_of(ps.process.log_contents())?;
    let other = session_of(second.log_contents())?;
    let deadline = Instant::now() + FANOUT_DONE;
    let (held, dead) = loop {
        let held = half_walked(&pool).await?;
        if let Some(h) = held.first() {
            break (held.clone(), h.1);
        }
        ensure!(
            Instant::now() < deadline && inbox.total() < total,
            "no instance ever held a half-walked job"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    let (killed, survivor) = if dead == first {
        (&mut ps.process, &second)
    } else {
        ensure!(dead == other, "session {dead} is neither instance's");
        (&mut second, &ps.process)
    };
    killed.kill()?;
    let killed_at = Instant::now();
    let claims: i64 = sqlx::query_scalar(
        "SELECT count(DISTINCT node_pk) FROM fanout_jobs WHERE lease_session = $1",
    )
    .bind(dead)
    .fetch_one(&pool)
    .await?;
    while live_sessions(&pool).await?.iter().any(|s| s.0 == dead) {
        ensure!(
            killed_at.elapsed() < TAKEOVER_WITHIN,
            "the killed instance's session did not end"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let session_ended = killed_at.elapsed();
    // Each with its cursor at the kill: the last one the dead instance saved.
    let now_held = half_walked(&pool).await?;
    let orphans: Vec<(i64, i64)> = held
        .iter()
        .filter(|h| h.1 == dead)
        .map(|h| {
            let saved = now_held.iter().find(|n| n.0 == h.0 && n.1 == dead);
            (h.0, saved.map_or(h.2, |n| n.2))
        })
        .collect();
    ensure!(
        !orphans.is_empty(),
        "the killed instance held no half-walked job when killed"
    );
    // Taken over: every orphan is done or leased by a live session (the claim), and
    // then has its cursor moved on (a page confirmed by the survivor).
    let claimed = wait_for_orphans(&pool, &orphans, dead, killed_at, |_| true).await?;
    let confirmed = wait_for_orphans(&pool, &orphans, dead, killed_at, |(cursor, now)| {
        now > cursor
    })
    .await?;
    eprintln!(
        "ejabberd, two instances: killed one holding {} half-walked jobs; its session ended \
         after {session_ended:.2?}, the survivor claimed them after {claimed:.2?} and \
         confirmed a page of each after {confirmed:.2?}",
        orphans.len()
    );
    assert!(
        claimed < TAKEOVER_WITHIN,
        "taken over after {claimed:.2?}\n{}",
        survivor.log_tail(40)
    );
    // Usually the end of the session wakes the survivor; under load another wake (a
    // publish notification, the poll) can find the freed jobs first. The promise is the
    // time above, so the wake is reported, not asserted.
    let woken_by_session = survivor
        .log_contents()
        .contains("another process's fan-out session ended");
    eprintln!("survivor woken by the end of the session: {woken_by_session}");
    inbox.wait_unique(total, FANOUT_DONE).await?;
    tokio::time::sleep(SETTLE).await;
    let bound = claims as usize * PAGES_IN_FLIGHT * PAGE_NOTIFICATIONS;
    eprintln!(
        "ejabberd, two instances: all {total} delivered, {} duplicates (bound {bound}, \
         {claims} claims)",
        duplicates(&inbox)
    );
    assert_each_got_every_item(&inbox, NODES * SUBSCRIBERS as usize, ITEMS);
    assert!(duplicates(&inbox) <= bound, "more duplicates than {bound}");
    Ok(())
}

// PostgreSQL only: the liveness session is PostgreSQL's.
// In the middle of a fan-out an administrator terminates pubsubd's liveness backend
// (as a lost connection would end it): the worker walking the node stops sending for
// that session's claim and gives it back, the process opens a new session, claims the
// jobs again under it and finishes them from the saved cursor, well within the 30 s
// lease (its half-walked jobs leased under another session within 2 s); nothing is
// lost, and no more is sent twice than the pages in flight.
both_servers!(postgres a_process_that_loses_its_session_stops_and_resumes_under_a_new_one,
    |server| async move {
        const WATCHERS: usize = 10;
        const CHUNK: i64 = 200;
        const ITEMS: usize = 20;
        let ps = common::start_with_store(server, ONE_BY_ONE, StoreKind::Postgres).await?;
        let TestStore::Postgres(db) = &ps.db else {
            bail!("this test needs PostgreSQL");
        };
        let pool = PgPool::connect(db.url()).await?;
        let fanout =
            WatchedFanout::publish(server, &ps, "fenced", (WATCHERS, CHUNK), ITEMS).await?;
        let (watched, all_watched) = (&fanout.watched, fanout.all_watched());
        let deadline = Instant::now() + FANOUT_DONE;
        let (old, orphans) = loop {
            let held = half_walked(&pool).await?;
            if let Some(h) = held.first() {
                let orphans: Vec<(i64, i64)> = held
                    .iter()
                    .filter(|o| o.1 == h.1)
                    .map(|o| (o.0, o.2))
                    .collect();
                break (h.1, orphans);
            }
            ensure!(
                Instant::now() < deadline && watched.total() < all_watched,
                "no half-walked job to fence"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        terminate_session(&pool, old).await?;
        let cut = Instant::now();
        while !ps.process.log_contents().contains("fan-out claim fenced") {
            ensure!(
                cut.elapsed() < TAKEOVER_WITHIN,
                "no claim fenced\n{}",
                ps.process.log_tail(30)
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let fenced = cut.elapsed();
        // Done, or leased again under the new session.
        let resumed = wait_for_orphans(&pool, &orphans, old, cut, |_| true).await?;
        ensure!(
            resumed < TAKEOVER_WITHIN,
            "claimed again after {resumed:.2?}"
        );
        eprintln!(
            "{}: session {old} terminated; claim fenced after {fenced:.2?}, claimed again \
             under a new session after {resumed:.2?}",
            server.kind()
        );
        // One claim: one node.
        if let Err(e) = fanout
            .assert_complete(server, PAGES_IN_FLIGHT * PAGE_NOTIFICATIONS)
            .await
        {
            let left: Vec<(i64, i64, Option<i32>)> =
                sqlx::query_as("SELECT id, cursor, lease_session FROM fanout_jobs ORDER BY id")
                    .fetch_all(&pool)
                    .await?;
            bail!("{e:#}; jobs left (id, cursor, session): {left:?}");
        }
        Ok::<_, anyhow::Error>(())
    }
);

// ---------------------------------------------------------------------------------
// The liveness session at the store

const LEASE: Duration = Duration::from_secs(30);
/// A lost session is noticed within a heartbeat (250 ms), or a heartbeat's timeout
/// (1 s) when the database does not answer at all; with room for a busy machine.
const FENCED_WITHIN: Duration = Duration::from_millis(1500);
const LIMITS: ClaimLimits = ClaimLimits {
    max_jobs: 256,
    max_bytes: 1 << 20,
    max_nodes: 32,
};

/// A fan-out store on `db` with a liveness session of its own, as a process has.
async fn process_store(db: &TestDb) -> anyhow::Result<PgStore> {
    let store = PgStore::connect(db.url(), 2).await?;
    store.migrate().await?;
    Ok(store.with_liveness().await?)
}

/// Waits until `store` has a session other than `old`.
async fn new_session(store: &PgStore, old: SessionKey) -> anyhow::Result<SessionKey> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(Some(key)) = store.liveness().for_claim() {
            if key != old {
                return Ok(key);
            }
        }
        ensure!(Instant::now() < deadline, "no new session");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The fence: an administrator terminates a process's liveness backend (as a lost
/// connection would end it). The process sees its session lost within a heartbeat, so
/// it stops sending for the claims of that session; another claimer takes them over at
/// once (from the saved cursor), although their lease has 30 s left; the
/// old owner can neither renew, move the cursor nor complete them any more; and the
/// process opens a new session under a new key, under which it claims again.
#[tokio::test]
async fn a_process_that_lost_its_session_is_fenced_and_its_claims_taken_over() -> anyhow::Result<()>
{
    let db = TestDb::create().await?;
    let a = process_store(&db).await?;
    let b = process_store(&db).await?;
    let (owner_a, owner_b) = (
        LeaseOwner::for_worker(uuid::Uuid::new_v4(), 0),
        LeaseOwner::for_worker(uuid::Uuid::new_v4(), 0),
    );
    a.queue_jobs(&[job(1), job(2)]).await?;
    let claimed = a.claim(owner_a, LEASE, LIMITS).await?.context("a claim")?;
    let session = claimed.session.context("claimed under a session")?;
    assert!(a.liveness().holds(Some(session)));
    let ids = claimed.job_ids();
    assert!(a.save_cursor(owner_a, &ids, 42, LEASE).await?);
    // Node 1 is a's; b may take node 2 only.
    let other = b.claim(owner_b, LEASE, LIMITS).await?.context("node 2")?;
    assert_ne!(other.node_pk, claimed.node_pk);
    assert!(b.claim(owner_b, LEASE, LIMITS).await?.is_none());

    terminate_session(&PgPool::connect(db.url()).await?, session.0).await?;
    let cut = Instant::now();

    // Timed apart: the lock goes with the backend at once, the owner learns of it at
    // its next heartbeat.
    let liveness = a.liveness();
    let fence = tokio::spawn(async move {
        tokio::time::timeout(FENCED_WITHIN, liveness.lost(Some(session)))
            .await
            .map(|()| cut.elapsed())
    });
    let taken = loop {
        if let Some(taken) = b.claim(owner_b, LEASE, LIMITS).await? {
            break taken;
        }
        ensure!(
            cut.elapsed() < TAKEOVER_WITHIN,
            "b could not take a's claim over"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let took_over = cut.elapsed();
    let fenced = fence
        .await?
        .context("a did not notice that its session was lost")?;
    eprintln!("session terminated: a fenced after {fenced:.2?}, b took over after {took_over:.2?}");
    assert!(!a.liveness().holds(Some(session)));
    assert_eq!(taken.job_ids(), ids);
    assert_eq!(taken.cursor, 42, "continues from the saved cursor");
    assert!(!a.renew(owner_a, &ids, LEASE).await?);
    assert!(!a.save_cursor(owner_a, &ids, 99, LEASE).await?);
    assert!(!a.complete(owner_a, &ids, claimed.node_pk, false).await?);

    let renewed = new_session(&a, session).await?;
    assert!(renewed.0 > session.0, "a new key, never the old one again");
    assert!(
        !a.liveness().holds(Some(session)),
        "the old session stays lost"
    );
    a.queue_jobs(&[job(3)]).await?;
    let again = a.claim(owner_a, LEASE, LIMITS).await?.context("node 3")?;
    assert_eq!(again.session, Some(renewed));
    Ok(())
}

/// A process that dies without a word (its connections simply close) frees its claims
/// for the others at once, and the others' liveness tells them that a session ended, so
/// that idle workers look without waiting for their poll.
#[tokio::test]
async fn a_dead_processs_claims_are_free_at_once_and_the_others_are_told() -> anyhow::Result<()> {
    let db = TestDb::create().await?;
    let survivor = process_store(&db).await?;
    let mut told = survivor.liveness();
    let owner = LeaseOwner::for_worker(uuid::Uuid::new_v4(), 0);
    {
        let dying = process_store(&db).await?;
        dying.queue_jobs(&[job(1)]).await?;
        dying
            .claim(owner, LEASE, LIMITS)
            .await?
            .context("a claim")?;
        assert!(survivor.claim(owner, LEASE, LIMITS).await?.is_none());
        // Long enough for the survivor's heartbeats to have seen the session alive.
        tokio::time::sleep(Duration::from_millis(600)).await;
        // Dropping the store ends its session as a process's death does: the keeper
        // sees no handle left at its next heartbeat and closes the connection.
    }
    let gone = Instant::now();
    tokio::time::timeout(Duration::from_secs(2), told.another_ended())
        .await
        .context("the survivor was not told that a session ended")?;
    let taken = loop {
        if let Some(taken) = survivor.claim(owner, LEASE, LIMITS).await? {
            break taken;
        }
        ensure!(gone.elapsed() < TAKEOVER_WITHIN, "the claim stayed taken");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    eprintln!(
        "a dead process's claim taken over after {:.2?}",
        gone.elapsed()
    );
    assert_eq!(taken.node_pk, 1);
    Ok(())
}

/// SQLite (one process per file): the next start takes every lease over at once,
/// under the instance lock, whatever time the dead process's leases had left; a store
/// opened beside the service (an admin command) may not.
#[tokio::test]
async fn an_sqlite_start_takes_over_every_lease_a_dead_process_left() -> anyhow::Result<()> {
    use pubsubd::store::sqlite::SqliteStore;
    let file = pubsubd_testkit::TestSqlite::create()?;
    let owner = LeaseOwner::for_worker(uuid::Uuid::new_v4(), 0);
    {
        let dead = SqliteStore::open(file.path(), 2).await?;
        dead.migrate().await?;
        dead.queue_jobs(&[job(1), job(2)]).await?;
        let claimed = dead.claim_batches(owner, LEASE, LIMITS).await?;
        assert_eq!(claimed.len(), 2);
        assert!(dead.claim(owner, LEASE, LIMITS).await?.is_none());
    }
    let next = SqliteStore::open(file.path(), 2).await?;
    next.migrate().await?;
    let beside = SqliteStore::open_beside_service(file.path(), 1).await?;
    assert!(beside.take_over_leases().await.is_err());
    assert!(
        next.claim(owner, LEASE, LIMITS).await?.is_none(),
        "still leased"
    );
    assert_eq!(next.take_over_leases().await?, 2);
    let taken = next.claim_batches(owner, LEASE, LIMITS).await?;
    assert_eq!(taken.len(), 2, "both taken over at once");
    Ok(())
}
