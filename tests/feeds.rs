//! Feed ingestion acceptance tests: a local HTTP server in the test serves changing
//! Atom and RSS feeds (and hostile ones); pubsubd polls them into nodes, which an XMPP
//! client reads with a pubsub `<items/>` request. On PostgreSQL and on SQLite (the
//! default store): feed ingestion runs the same statements on both.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use common::items::*;
use common::*;
use pubsubd_testkit::{both_servers, both_stores, stanza};

const WAIT: Duration = Duration::from_secs(30);
/// The body of the "huge" feeds: ten times the default 5 MB cap.
const HUGE: usize = 50 * 1024 * 1024;
const CHUNK: usize = 1024 * 1024;

/// What the test's feed server serves and what it saw.
#[derive(Default)]
struct Feeds {
    atom: Mutex<(String, String)>,
    atom_requests: AtomicUsize,
    atom_not_modified: AtomicUsize,
    rss_requests: AtomicUsize,
    rss_not_modified: AtomicUsize,
    error_requests: AtomicUsize,
    huge_bytes_sent: AtomicUsize,
}

const RSS_LAST_MODIFIED: &str = "Wed, 21 Oct 2015 07:28:00 GMT";

fn atom_feed(entries: &[(&str, &str, &str)]) -> String {
    let mut s = String::from(
        "<?xml version='1.0' encoding='utf-8'?>\n<feed xmlns='http://www.w3.org/2005/Atom'><title>Test feed</title><id>urn:test:feed</id><updated>2024-01-03T00:00:00Z</updated>",
    );
    for (id, title, updated) in entries {
        s.push_str(&format!(
            "<entry><id>{id}</id><title>{title}</title><updated>{updated}</updated><link href='https://example.org/{title}'/><summary>About {title}</summary></entry>"
        ));
    }
    s.push_str("</feed>");
    s
}

const RSS: &str = "<?xml version='1.0'?><rss version='2.0'><channel><title>RSS test</title><link>https://example.org/</link><description>d</description>
<item><guid>tag:rss:2</guid><title>RSS two</title><pubDate>Tue, 02 Jan 2024 00:00:00 GMT</pubDate><description>two</description></item>
<item><guid>tag:rss:1</guid><title>RSS one</title><pubDate>Mon, 01 Jan 2024 00:00:00 GMT</pubDate><description>one</description></item>
</channel></rss>";

async fn atom(State(f): State<Arc<Feeds>>, headers: HeaderMap) -> Response {
    f.atom_requests.fetch_add(1, Ordering::SeqCst);
    let (body, etag) = f.atom.lock().map(|g| g.clone()).unwrap_or_default();
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        == Some(etag.as_str())
    {
        f.atom_not_modified.fetch_add(1, Ordering::SeqCst);
        return StatusCode::NOT_MODIFIED.into_response();
    }
    (
        [
            (header::CONTENT_TYPE, "application/atom+xml".to_string()),
            (header::ETAG, etag),
        ],
        body,
    )
        .into_response()
}

async fn rss(State(f): State<Arc<Feeds>>, headers: HeaderMap) -> Response {
    f.rss_requests.fetch_add(1, Ordering::SeqCst);
    if headers
        .get(header::IF_MODIFIED_SINCE)
        .and_then(|v| v.to_str().ok())
        == Some(RSS_LAST_MODIFIED)
    {
        f.rss_not_modified.fetch_add(1, Ordering::SeqCst);
        return StatusCode::NOT_MODIFIED.into_response();
    }
    (
        [
            (header::CONTENT_TYPE, "application/rss+xml"),
            (header::LAST_MODIFIED, RSS_LAST_MODIFIED),
        ],
        RSS,
    )
        .into_response()
}

async fn huge_chunked(State(f): State<Arc<Feeds>>) -> Response {
    // The most bytes any one response got to stream before the client went away.
    let sent = AtomicUsize::new(0);
    let stream = futures::stream::iter(0..HUGE / CHUNK).map(move |_| {
        let so_far = sent.fetch_add(CHUNK, Ordering::SeqCst) + CHUNK;
        f.huge_bytes_sent.fetch_max(so_far, Ordering::SeqCst);
        Ok::<_, Infallible>(Bytes::from(vec![b' '; CHUNK]))
    });
    (
        [(header::CONTENT_TYPE, "application/atom+xml")],
        Body::from_stream(stream),
    )
        .into_response()
}

async fn huge_declared() -> Response {
    (
        [(header::CONTENT_TYPE, "application/atom+xml")],
        vec![b' '; HUGE],
    )
        .into_response()
}

async fn slow() -> Response {
    let stream = futures::stream::once(async {
        Ok::<_, Infallible>(Bytes::from_static(b"<?xml version='1.0'?><feed"))
    })
    .chain(futures::stream::pending());
    (
        [(header::CONTENT_TYPE, "application/atom+xml")],
        Body::from_stream(stream),
    )
        .into_response()
}

use futures::StreamExt;

async fn server_error(State(f): State<Arc<Feeds>>) -> Response {
    f.error_requests.fetch_add(1, Ordering::SeqCst);
    (StatusCode::INTERNAL_SERVER_ERROR, "oops").into_response()
}

/// Starts the feed server on a free loopback port.
async fn feed_server(feeds: Arc<Feeds>) -> anyhow::Result<SocketAddr> {
    let app = axum::Router::new()
        .route("/atom", get(atom))
        .route("/rss", get(rss))
        .route(
            "/garbage",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "application/xml")],
                    "<<<this is not a feed &&&",
                )
            }),
        )
        .route("/huge", get(huge_chunked))
        .route("/huge-declared", get(huge_declared))
        .route("/slow", get(slow))
        .route(
            "/loop",
            get(|| async { (StatusCode::FOUND, [(header::LOCATION, "/loop")]) }),
        )
        .route("/error", get(server_error))
        .with_state(feeds);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(addr)
}

fn feed_entry(url: &str, node: &str) -> String {
    format!("[[feed]]\nurl = '{url}'\nnode = '{node}'\ninterval = 1\n")
}

async fn wait_until(what: &str, check: impl Fn() -> bool) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check() {
        if tokio::time::Instant::now() > deadline {
            anyhow::bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

both_servers!(
    feed_entries_appear_once_updates_overwrite_and_conditional_gets_are_used,
    |server| async move {
        let feeds = Arc::new(Feeds::default());
        *feeds.atom.lock().map_err(|_| anyhow::anyhow!("poisoned"))? = (
            atom_feed(&[
                ("urn:e2", "Second", "2024-01-02T00:00:00Z"),
                ("urn:e1", "First", "2024-01-01T00:00:00Z"),
            ]),
            "\"v1\"".into(),
        );
        let addr = feed_server(feeds.clone()).await?;
        let svc = start_with(
            server,
            &format!(
                "[feeds]\npublisher = 'feedbot@localhost'\ntimeout = 3\n{}{}",
                feed_entry(&format!("http://{addr}/atom"), "feed-atom"),
                feed_entry(&format!("http://{addr}/rss"), "feed-rss"),
            ),
        )
        .await?;
        let mut bob = user(server, "bob").await?;
        let jid = svc.jid().to_owned();

        let items = wait_items(&mut bob, &jid, "feed-atom", WAIT, |i| i.len() >= 2).await?;
        assert_eq!(
            ids(&items),
            vec![feed_item_id("urn:e2"), feed_item_id("urn:e1")],
            "newest first"
        );
        assert_eq!(atom_title(&items[0]).as_deref(), Some("Second"));
        let entry = items[0].get_child("entry", NS_ATOM).expect("an Atom entry");
        assert_eq!(
            entry.get_child("id", NS_ATOM).map(|e| e.text()).as_deref(),
            Some("urn:e2")
        );

        // Re-polls are conditional and publish nothing again.
        wait_until("two 304s for the Atom feed", || {
            feeds.atom_not_modified.load(Ordering::SeqCst) >= 2
        })
        .await?;
        let items = xmpp_items(&mut bob, &jid, "feed-atom")
            .await?
            .expect("readable");
        assert_eq!(items.len(), 2);

        // The feed changes: one entry edited, one added.
        *feeds.atom.lock().map_err(|_| anyhow::anyhow!("poisoned"))? = (
            atom_feed(&[
                ("urn:e3", "Third", "2024-01-03T00:00:00Z"),
                ("urn:e2", "Second (edited)", "2024-01-02T12:00:00Z"),
                ("urn:e1", "First", "2024-01-01T00:00:00Z"),
            ]),
            "\"v2\"".into(),
        );
        let e2 = feed_item_id("urn:e2");
        let items = wait_items(&mut bob, &jid, "feed-atom", WAIT, |items| {
            items.len() == 3
                && items.iter().any(|i| {
                    i.attr("id") == Some(e2.as_str())
                        && atom_title(i).as_deref() == Some("Second (edited)")
                })
        })
        .await?;
        let mut got = ids(&items);
        got.sort();
        let mut want = vec![
            feed_item_id("urn:e1"),
            feed_item_id("urn:e2"),
            feed_item_id("urn:e3"),
        ];
        want.sort();
        assert_eq!(got, want, "each entry exactly once");
        // Still exactly once after more polls of the new version.
        let seen = feeds.atom_not_modified.load(Ordering::SeqCst);
        wait_until("a 304 of the new version", || {
            feeds.atom_not_modified.load(Ordering::SeqCst) > seen
        })
        .await?;
        assert_eq!(
            xmpp_items(&mut bob, &jid, "feed-atom")
                .await?
                .expect("readable")
                .len(),
            3
        );

        // RSS, with Last-Modified.
        let items = wait_items(&mut bob, &jid, "feed-rss", WAIT, |i| i.len() >= 2).await?;
        assert_eq!(
            ids(&items),
            vec![feed_item_id("tag:rss:2"), feed_item_id("tag:rss:1")]
        );
        assert_eq!(atom_title(&items[0]).as_deref(), Some("RSS two"));
        wait_until("a 304 for the RSS feed", || {
            feeds.rss_not_modified.load(Ordering::SeqCst) >= 1
        })
        .await?;
        assert_eq!(
            xmpp_items(&mut bob, &jid, "feed-rss")
                .await?
                .expect("readable")
                .len(),
            2
        );

        // Feeds added at run time are picked up by the running service; removal stops them.
        let url = format!("http://{addr}/atom");
        let (ok, out, err) = svc.cli(&[
            "feed",
            "add",
            "--url",
            &url,
            "--node",
            "feed-runtime",
            "--interval",
            "1s",
        ])?;
        assert!(ok, "{out}{err}");
        let feed_id: String = out
            .trim_start_matches("added feed ")
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        let items = wait_items(&mut bob, &jid, "feed-runtime", WAIT, |i| i.len() == 3).await?;
        assert_eq!(items.len(), 3);
        let (ok, out, _) = svc.cli(&["feed", "list"])?;
        assert!(
            ok && out.contains("feed-runtime")
                && out.contains("feed-rss")
                && out.contains("config"),
            "{out}"
        );
        let (ok, out, err) = svc.cli(&["feed", "remove", &feed_id])?;
        assert!(ok, "{out}{err}");
        let (_, out, _) = svc.cli(&["feed", "list"])?;
        assert!(!out.contains("feed-runtime"), "{out}");
        Ok::<_, anyhow::Error>(())
    }
);

both_servers!(
    hostile_feeds_leave_the_service_and_other_feeds_healthy,
    |server| async move {
        let feeds = Arc::new(Feeds::default());
        *feeds.atom.lock().map_err(|_| anyhow::anyhow!("poisoned"))? = (
            atom_feed(&[("urn:ok:1", "Fine", "2024-01-01T00:00:00Z")]),
            "\"ok\"".into(),
        );
        let addr = feed_server(feeds.clone()).await?;
        let mut extra = String::from("[feeds]\npublisher = 'feedbot@localhost'\ntimeout = 2\n");
        for (path, node) in [
            ("garbage", "hostile-garbage"),
            ("huge", "hostile-huge"),
            ("huge-declared", "hostile-huge-declared"),
            ("slow", "hostile-slow"),
            ("loop", "hostile-loop"),
            ("error", "hostile-error"),
            ("atom", "healthy"),
        ] {
            extra.push_str(&feed_entry(&format!("http://{addr}/{path}"), node));
        }
        let started = tokio::time::Instant::now();
        let mut svc = start_with(server, &extra).await?;
        let mut bob = user(server, "bob").await?;
        let jid = svc.jid().to_owned();

        let items = wait_items(&mut bob, &jid, "healthy", WAIT, |i| i.len() == 1).await?;
        assert_eq!(atom_title(&items[0]).as_deref(), Some("Fine"));
        // Every hostile feed has failed at least once (the slow one after its timeout).
        let expected = [
            "not a feed",
            "body larger than",
            "timed out",
            "too many redirects",
            "HTTP status 500",
        ];
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let log = svc.process.log_contents();
            let missing: Vec<&str> = expected
                .iter()
                .copied()
                .filter(|e| !log.contains(e))
                .collect();
            if missing.is_empty() {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                anyhow::bail!("never logged {missing:?}:\n{}", svc.process.log_tail(80));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        // Keep polling a while: the healthy feed keeps being polled, the failing one backs off.
        // With a 1 s interval, the failing feed is fetched at about 0, 2, 6 and 14 s (the
        // delay doubling per failure) while the healthy one is fetched every second.
        tokio::time::sleep(Duration::from_secs(11).saturating_sub(started.elapsed())).await;
        let errors = feeds.error_requests.load(Ordering::SeqCst);
        let healthy = feeds.atom_requests.load(Ordering::SeqCst);
        assert!(healthy >= 5, "the healthy feed was polled {healthy} times");
        assert!(
            (1..=3).contains(&errors),
            "a failing feed backs off: {errors} polls in about 10 s ({healthy} of the healthy one)"
        );
        assert!(
            feeds.huge_bytes_sent.load(Ordering::SeqCst) < HUGE / 2,
            "the huge body was abandoned early (at most {} bytes streamed to one request)",
            feeds.huge_bytes_sent.load(Ordering::SeqCst)
        );
        for node in [
            "hostile-garbage",
            "hostile-huge",
            "hostile-slow",
            "hostile-loop",
            "hostile-error",
        ] {
            let got = xmpp_items(&mut bob, &jid, node).await?;
            assert!(got.is_err(), "{node} never got a node: {got:?}");
        }
        // The service still answers, and is still running.
        let reply = bob.iq(stanza::ping(&jid)).await?;
        assert_eq!(reply.attr("type"), Some("result"));
        assert!(svc.process.is_running());
        let (ok, out, _) = svc.cli(&["feed", "list"])?;
        assert!(ok, "{out}");
        let failing = out
            .lines()
            .filter(|l| l.contains("hostile-") && !l.contains("\t0\t"))
            .count();
        assert_eq!(failing, 6, "every hostile feed counts failures:\n{out}");
        Ok::<_, anyhow::Error>(())
    }
);

/// The lease: of many instances claiming at once, one gets a due feed; nobody gets it
/// again until its lease is released and it is due again. (On SQLite the claimers are
/// the pollers of one process.)
async fn a_feed_is_leased_to_one_instance_at_a_time() -> anyhow::Result<()> {
    use pubsubd::feeds::config::FeedSpec;
    use pubsubd::feeds::store::{FeedStore, PollRecord, Source};

    let db = pubsubd_testkit::TestStore::create().await?;
    let store = match &db {
        pubsubd_testkit::TestStore::Postgres(db) => {
            let pg = pubsubd::store::postgres::PgStore::connect(db.url(), 12).await?;
            pg.migrate().await?;
            FeedStore::postgres(pg)
        }
        pubsubd_testkit::TestStore::Sqlite(db) => {
            let lite = pubsubd::store::sqlite::SqliteStore::open(db.path(), 4).await?;
            lite.migrate().await?;
            FeedStore::sqlite(lite)
        }
    };
    let spec = FeedSpec::new(
        "http://127.0.0.1:9/feed",
        "leased",
        Some(Duration::from_secs(60)),
        None,
    )
    .map_err(anyhow::Error::msg)?;
    let pk = store.add(&spec, Source::Runtime).await?.expect("new feed");
    assert!(
        store.add(&spec, Source::Runtime).await?.is_none(),
        "same url and node twice"
    );

    let lease = Duration::from_secs(60);
    let claims = futures::future::join_all((0..10).map(|_| {
        let store = store.clone();
        async move { store.claim(uuid::Uuid::new_v4(), lease).await }
    }))
    .await;
    let mut winners = Vec::new();
    for c in claims {
        if let Some(feed) = c? {
            winners.push(feed);
        }
    }
    assert_eq!(winners.len(), 1, "exactly one instance polls the feed");
    assert_eq!(winners[0].pk, pk);
    assert!(store.claim(uuid::Uuid::new_v4(), lease).await?.is_none());

    // Released by someone who does not hold it: nothing changes.
    let record = PollRecord {
        validators: Default::default(),
        next_poll_in: Duration::ZERO,
        failures: 0,
        status: "ok".into(),
    };
    store.finish(pk, uuid::Uuid::new_v4(), &record).await?;
    assert!(store.claim(uuid::Uuid::new_v4(), lease).await?.is_none());
    Ok(())
}
both_stores!(a_feed_is_leased_to_one_instance_at_a_time);

/// The test's feed server with one entry in its Atom feed, and pubsubd (on the test's
/// store) polling that feed into `node`.
async fn polling_one_entry(
    server: &'static pubsubd_testkit::XmppServer,
    entry: (&str, &str, &str),
    node: &str,
) -> anyhow::Result<(Arc<Feeds>, SocketAddr, Pubsubd)> {
    let feeds = Arc::new(Feeds::default());
    *feeds.atom.lock().map_err(|_| anyhow::anyhow!("poisoned"))? =
        (atom_feed(&[entry]), "\"v1\"".into());
    let addr = feed_server(feeds.clone()).await?;
    let svc = start_with(
        server,
        &format!(
            "[feeds]\npublisher = 'feedbot@localhost'\n{}",
            feed_entry(&format!("http://{addr}/atom"), node)
        ),
    )
    .await?;
    Ok((feeds, addr, svc))
}

/// After the fan-out merge: an XMPP subscriber of a feed's node is notified of new and
/// updated entries.
async fn feed_entries_are_notified(
    server: &'static pubsubd_testkit::XmppServer,
) -> anyhow::Result<()> {
    let (feeds, _, svc) = polling_one_entry(
        server,
        ("urn:n:1", "Before subscribing", "2024-01-01T00:00:00Z"),
        "feed-notify",
    )
    .await?;
    let mut bob = user(server, "bob").await?;
    let jid = svc.jid().to_owned();
    wait_items(&mut bob, &jid, "feed-notify", WAIT, |i| i.len() == 1).await?;
    let bob_jid = bob.bare_jid().to_owned();
    let reply = bob
        .iq(stanza::iq(
            "set",
            &jid,
            stanza::parse(&format!(
                "<pubsub xmlns='{NS_PUBSUB}'><subscribe node='feed-notify' jid='{bob_jid}'/></pubsub>"
            )),
        ))
        .await?;
    assert_eq!(
        reply.attr("type"),
        Some("result"),
        "{}",
        stanza::to_xml(&reply)
    );
    *feeds.atom.lock().map_err(|_| anyhow::anyhow!("poisoned"))? = (
        atom_feed(&[
            ("urn:n:2", "After subscribing", "2024-01-02T00:00:00Z"),
            ("urn:n:1", "Before subscribing", "2024-01-01T00:00:00Z"),
        ]),
        "\"n2\"".into(),
    );
    // XMPP-RECEIVING ASSERTION (needs the fan-out engine):
    let msg = bob
        .wait_for(
            |e| e.name() == "message" && stanza::to_xml(e).contains("After subscribing"),
            WAIT,
        )
        .await?;
    assert!(stanza::to_xml(&msg).contains(&feed_item_id("urn:n:2")));
    Ok(())
}

both_servers!(
    feed_entries_are_notified_to_xmpp_subscribers,
    |server| async move { feed_entries_are_notified(server).await }
);

/// Feeds on the default store: configured and runtime feeds are polled into nodes on
/// SQLite, and `pubsubd feed list|add|remove` work beside the running service (they
/// open the file without its instance lock).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feeds_work_on_sqlite_configured_at_start_and_added_at_run_time() -> anyhow::Result<()> {
    let outcome = pubsubd_testkit::on_store(pubsubd_testkit::StoreKind::Sqlite, async {
        let server = pubsubd_testkit::shared_prosody();
        let (_, addr, svc) = polling_one_entry(
            server,
            ("urn:s:1", "On SQLite", "2024-01-01T00:00:00Z"),
            "feed-sqlite",
        )
        .await?;
        let mut bob = user(server, "bob").await?;
        let jid = svc.jid().to_owned();
        let items = wait_items(&mut bob, &jid, "feed-sqlite", WAIT, |i| i.len() == 1).await?;
        assert_eq!(atom_title(&items[0]).as_deref(), Some("On SQLite"));

        let url = format!("http://{addr}/rss");
        let (ok, out, err) = svc.cli(&[
            "feed",
            "add",
            "--url",
            &url,
            "--node",
            "feed-sqlite-rss",
            "--interval",
            "1s",
        ])?;
        assert!(ok, "feed add: {out}{err}");
        let items = wait_items(&mut bob, &jid, "feed-sqlite-rss", WAIT, |i| !i.is_empty()).await?;
        assert!(!items.is_empty());
        let (ok, out, err) = svc.cli(&["feed", "list"])?;
        assert!(ok, "feed list: {out}{err}");
        assert!(
            out.contains("feed-sqlite\t") && out.contains("feed-sqlite-rss\t"),
            "{out}"
        );
        let id = out
            .lines()
            .find(|l| l.contains("feed-sqlite-rss"))
            .and_then(|l| l.split('\t').next())
            .ok_or_else(|| anyhow::anyhow!("no id in {out}"))?
            .to_owned();
        let (ok, out, err) = svc.cli(&["feed", "remove", &id])?;
        assert!(ok, "feed remove: {out}{err}");
        Ok::<_, anyhow::Error>(())
    })
    .await;
    outcome.unwrap_or(Ok(()))
}
