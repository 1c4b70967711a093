//! What an operator looks at stays true: the status page at `/` of `metrics_listen`,
//! loaded in a real headless browser during a real fan-out; the Grafana dashboard and
//! the Prometheus alert rules in `deploy/`, whose every metric must be one a running
//! pubsubd exports, and whose rules and queries must pass `promtool`.
//!
//! The browser is Debian's `chromium` and `promtool` comes with Debian's `prometheus`
//! package (`.ci/run` installs both). Without promtool the promtool test says so
//! and passes; without chromium the page test fails, naming the package.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use common::{create, ok, publish, user, Pubsubd, NOTIFY};
use pubsubd_testkit::{
    both_servers, both_stores, component_handshake, shared_prosody, ComponentSlot, StoreKind,
    XmppServer,
};

const DASHBOARD: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/deploy/grafana/pubsubd-dashboard.json"
);
const RULES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/deploy/prometheus/pubsubd-rules.yml"
);
const RULES_TESTS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/deploy/prometheus/pubsubd-rules.test.yml"
);
/// Virtual subscribers of the fan-out the browser watches: with one worker and pages of
/// 25, [`ITEMS`] publishes to them keep Prosody (about 2,000 notifications/s on the
/// test machine) busy for a minute or more, far longer than a browser takes to start.
const CROWD: i64 = 10_000;
const ITEMS: usize = 12;
/// How long chromium may take to load and dump or photograph the page on a busy
/// 2-core machine.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(90);
/// A restarted Prosody is back within a few seconds; pubsubd's backoff adds at most a
/// few more (it doubles from 250 ms).
const READY_AGAIN: Duration = Duration::from_secs(60);
/// The page's rate needs two samples of the counter 5 s apart, after start-up.
const RATE_WAIT: Duration = Duration::from_secs(30);

/// pubsubd with `metrics_listen` on a free port, and `extra` settings.
async fn start_with_status(server: &XmppServer, extra: &str) -> anyhow::Result<(Pubsubd, u16)> {
    let port = pubsubd_testkit::free_ports(1)?[0];
    let ps = common::start_with(
        server,
        &format!("metrics_listen = \"127.0.0.1:{port}\"\n{extra}"),
    )
    .await?;
    Ok((ps, port))
}

async fn http_get(port: u16, path: &str) -> anyhow::Result<String> {
    let response = reqwest::get(format!("http://127.0.0.1:{port}{path}")).await?;
    let status = response.status();
    let body = response.text().await?;
    if !status.is_success() {
        bail!("GET {path}: {status}\n{body}");
    }
    Ok(body)
}

/// Every series name in a Prometheus text exposition (`_bucket`, `_sum`, `_count` as
/// they are, so a histogram exported as a summary has no `_bucket`).
fn exported_names(exposition: &str) -> BTreeSet<String> {
    exposition
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

/// The `pubsubd_…` identifiers in a PromQL expression.
fn metric_names(expr: &str) -> impl Iterator<Item = String> + '_ {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|word| word.starts_with("pubsubd_"))
        .map(str::to_owned)
}

/// The dashboard's queries and its datasource inputs.
fn dashboard_queries() -> anyhow::Result<(Vec<String>, Vec<String>)> {
    let dashboard: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(DASHBOARD)?)?;
    let mut exprs = Vec::new();
    let mut stack = vec![&dashboard];
    while let Some(v) = stack.pop() {
        match v {
            serde_json::Value::Object(map) => {
                if let Some(serde_json::Value::String(expr)) = map.get("expr") {
                    exprs.push(expr.clone());
                }
                stack.extend(map.values());
            }
            serde_json::Value::Array(items) => stack.extend(items),
            _ => {}
        }
    }
    let inputs = dashboard["__inputs"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|i| i["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    Ok((exprs, inputs))
}

/// The metrics the alert rules' `expr:` lines name.
fn rule_metrics() -> anyhow::Result<BTreeSet<String>> {
    Ok(std::fs::read_to_string(RULES)?
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("expr:"))
        .flat_map(|expr| metric_names(expr).collect::<Vec<_>>())
        .collect())
}

both_servers!(
    dashboard_and_alert_rules_use_only_metrics_a_running_pubsubd_exports,
    |server| async move {
        let (ps, port) = start_with_status(server, "").await?;
        let mut alice = user(server, "opsalice").await?;
        create(&mut alice, &ps, "ops-metrics", &[]).await?;
        ok(&common::subscribe(&mut alice, &ps, "ops-metrics").await?);
        ok(&publish(
            &mut alice,
            &ps,
            "ops-metrics",
            Some("m1"),
            "<x xmlns='urn:ops'/>",
        )
        .await?);
        common::next_event(&mut alice, &ps, NOTIFY)
            .await
            .context("the notification never came")?;
        // The first scrape times the store check it makes before rendering.
        http_get(port, "/metrics").await?;
        // Notifications count as sent once the server has confirmed their page (a
        // barrier behind them), which may come a moment after alice has hers.
        let deadline = Instant::now() + Duration::from_secs(10);
        let exported = loop {
            let exported = exported_names(&http_get(port, "/metrics").await?);
            if exported.contains("pubsubd_notifications_sent_total") || Instant::now() > deadline {
                break exported;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };

        let (queries, inputs) = dashboard_queries()?;
        let dashboard: BTreeSet<String> = queries.iter().flat_map(|q| metric_names(q)).collect();
        let rules = rule_metrics()?;
        assert_eq!(
            inputs,
            ["DS_PROMETHEUS"],
            "the dashboard's datasource input"
        );
        // The panels and alerts the operator view promises, so that an emptied file fails.
        for promised in [
            "pubsubd_publishes_total",
            "pubsubd_notifications_sent_total",
            "pubsubd_fanout_oldest_job_age_seconds",
            "pubsubd_fanout_jobs_pending",
            "pubsubd_requests_total",
            "pubsubd_store_ping_seconds_bucket",
            "pubsubd_component_disconnects_total",
            "pubsubd_feed_polls_total",
        ] {
            assert!(dashboard.contains(promised), "dashboard lacks {promised}");
        }
        for promised in [
            "pubsubd_fanout_oldest_job_age_seconds",
            "pubsubd_xmpp_connected",
            "pubsubd_ready",
            "pubsubd_store_up",
            "pubsubd_feed_polls_total",
            "pubsubd_multicast_refused_total",
        ] {
            assert!(rules.contains(promised), "rules lack {promised}");
        }
        let missing: Vec<_> = dashboard
            .iter()
            .chain(&rules)
            .filter(|name| !exported.contains(*name))
            .collect();
        assert!(
            missing.is_empty(),
            "named by deploy/ but not exported: {missing:?}\nexported: {exported:?}"
        );
        Ok::<_, anyhow::Error>(())
    }
);

/// The dashboard's queries as recording rules, for `promtool check rules` to parse:
/// Grafana's variables replaced by what they stand for at run time.
fn dashboard_as_rules() -> anyhow::Result<String> {
    let (queries, _) = dashboard_queries()?;
    let mut rules = String::from("groups:\n  - name: pubsubd-dashboard\n    rules:\n");
    for (n, query) in queries.iter().enumerate() {
        let expr = query
            .replace("$__rate_interval", "1m")
            .replace("$instance", ".*");
        rules.push_str(&format!(
            "      - record: dashboard:query_{n}\n        expr: {}\n",
            serde_json::to_string(&expr)?
        ));
    }
    Ok(rules)
}

#[test]
fn alert_rules_and_dashboard_queries_pass_promtool() -> anyhow::Result<()> {
    let Ok(version) = std::process::Command::new("promtool")
        .arg("--version")
        .output()
    else {
        eprintln!(
            "SKIPPED: promtool is not installed (apt-get install -y --no-install-recommends prometheus); deploy/prometheus/ and deploy/grafana/ were not checked"
        );
        return Ok(());
    };
    assert!(version.status.success(), "promtool --version failed");
    let dashboard = std::env::temp_dir().join(format!(
        "pubsubd-dashboard-queries-{}.yml",
        std::process::id()
    ));
    std::fs::write(&dashboard, dashboard_as_rules()?)?;
    let dashboard = dashboard.display().to_string();
    for args in [
        ["check", "rules", RULES],
        ["test", "rules", RULES_TESTS],
        ["check", "rules", &dashboard],
    ] {
        let out = std::process::Command::new("promtool").args(args).output()?;
        assert!(
            out.status.success(),
            "promtool {}:\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let _ = std::fs::remove_file(&dashboard);
    Ok(())
}

/// A component on `slot` that reads (and drops) everything routed to its virtual
/// subscribers, so the server never holds them.
async fn attach_sink(server: &XmppServer, slot: &ComponentSlot) -> anyhow::Result<()> {
    let mut conn = component_handshake(server.component_addr(), slot.jid(), slot.secret()).await?;
    tokio::spawn(async move { while conn.recv().await.is_ok() {} });
    Ok(())
}

/// Where this test binary leaves what a person may want to look at.
fn output_dir() -> anyhow::Result<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-output/operator_view");
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Runs headless chromium on `url` with `mode` (`--dump-dom` or `--screenshot=…`) and
/// returns its standard output. Its process group is killed if it overstays.
async fn chromium(url: &str, mode: &str) -> anyhow::Result<String> {
    let profile = std::env::temp_dir().join(format!(
        "pubsubd-operator-view-chromium-{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4()
    ));
    std::fs::create_dir_all(&profile)?;
    let mut command = tokio::process::Command::new("chromium");
    command
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--window-size=1280,1600",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(mode)
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let child = command
        .spawn()
        .context("cannot run chromium: apt-get install -y --no-install-recommends chromium")?;
    let pid = child.id();
    let result = tokio::time::timeout(BROWSER_TIMEOUT, child.wait_with_output()).await;
    let _ = std::fs::remove_dir_all(&profile);
    let output = match result {
        Ok(output) => output?,
        Err(_) => {
            // Its renderer and zygote are in the group chromium leads.
            if let Some(pid) = pid {
                let _ = std::process::Command::new("kill")
                    .args(["-KILL", "--", &format!("-{pid}")])
                    .status();
            }
            bail!("chromium did not finish within {BROWSER_TIMEOUT:?}");
        }
    };
    if !output.status.success() {
        bail!(
            "chromium failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The text of the element with `id` in a dumped DOM (its first text, up to `<`).
fn element_text<'a>(dom: &'a str, id: &str) -> Option<&'a str> {
    let at = dom.find(&format!("id=\"{id}\""))?;
    let rest = &dom[at..];
    let start = rest.find('>')? + 1;
    let end = rest[start..].find('<')? + start;
    Some(rest[start..end].trim())
}

async fn status_page_in_a_browser_shows_a_running_fanout_and_no_payload_or_secret(
) -> anyhow::Result<()> {
    let server = shared_prosody();
    let store = StoreKind::current()?;
    let marker = format!("payload-marker-{}", uuid::Uuid::new_v4().simple());
    let feed_password = format!("feedpw{}", uuid::Uuid::new_v4().simple());
    let feed_token = format!("feedtoken{}", uuid::Uuid::new_v4().simple());
    // A node name with markup in it, which the page must show as text.
    let node = "ops<b>view</b>&crowd";
    let node_attr = "ops&lt;b&gt;view&lt;/b&gt;&amp;crowd";
    // A closed port makes the poll fail at once, with an error that quotes the URL,
    // credentials and all.
    let feed_port = pubsubd_testkit::free_ports(1)?[0];
    let feed = format!(
        "[feeds]\npublisher = 'opsfeeds@localhost'\n[[feed]]\nurl = 'http://opsbot:{feed_password}@127.0.0.1:{feed_port}/atom.xml?token={feed_token}'\nnode = 'ops-feed'\ninterval = 1\n"
    );
    let (ps, port) = start_with_status(
        server,
        &format!("fanout_workers = 1\nfanout_page_size = 25\n{feed}"),
    )
    .await?;
    let secret = ps.slot.secret().to_owned();
    assert!(
        secret.len() >= 8,
        "the component secret is too short to look for"
    );

    let sink = server.lease_component();
    attach_sink(server, &sink).await?;
    let mut alice = user(server, "opsviewer").await?;
    // The attribute form: `create` puts the name into the stanza as it is.
    create(&mut alice, &ps, node_attr, &[]).await?;
    common::subscribe_crowd(&ps.db, node, "v", sink.jid(), CROWD).await?;
    for n in 0..ITEMS {
        let payload = format!(
            "<entry xmlns='http://www.w3.org/2005/Atom'><title>{marker}</title><id>{n}</id></entry>"
        );
        ok(&publish(&mut alice, &ps, node_attr, Some(&format!("i{n}")), &payload).await?);
    }

    let url = format!("http://127.0.0.1:{port}/");
    let started = Instant::now();
    let dom = chromium(&url, "--dump-dom").await?;
    eprintln!(
        "chromium loaded and dumped the page in {:?}",
        started.elapsed()
    );
    std::fs::write(output_dir()?.join("status-page.html"), &dom)?;
    assert_eq!(element_text(&dom, "jid"), Some(ps.jid()), "{dom}");
    assert_eq!(
        element_text(&dom, "connection-0-state"),
        Some("up"),
        "{dom}"
    );
    let store_name = match store {
        StoreKind::Postgres => "PostgreSQL",
        StoreKind::Sqlite => "SQLite",
    };
    assert_eq!(element_text(&dom, "store"), Some(store_name), "{dom}");
    let pending: u64 = element_text(&dom, "pending")
        .context("no pending count on the page")?
        .parse()?;
    assert!(
        pending > 0,
        "the page showed no pending job during the fan-out\n{dom}"
    );
    // The node and its crowd, as text, not markup.
    assert!(dom.contains(&format!(">{node_attr}<")), "{dom}");
    assert!(
        !dom.contains("<b>view</b>"),
        "a node name became markup\n{dom}"
    );
    assert!(dom.contains(&format!(">{CROWD}<")), "{dom}");

    // The rate needs two samples of the counter, 5 s apart; then the picture shows all.
    let deadline = Instant::now() + RATE_WAIT;
    let raw = loop {
        let raw = http_get(port, "/").await?;
        let rate = element_text(&raw, "rate").and_then(|r| r.parse::<f64>().ok());
        match rate {
            Some(rate) => {
                assert!(
                    rate > 0.0,
                    "no notifications per second during a fan-out\n{raw}"
                );
                break raw;
            }
            None if Instant::now() < deadline => tokio::time::sleep(Duration::from_secs(1)).await,
            None => bail!("the notification rate never showed\n{raw}"),
        }
    };
    // One file per store: the two variants run at once.
    let screenshot = output_dir()?.join(format!("status-page-{}.png", store_name.to_lowercase()));
    let _ = std::fs::remove_file(&screenshot);
    chromium(&url, &format!("--screenshot={}", screenshot.display())).await?;
    let png = std::fs::read(&screenshot).context("chromium wrote no screenshot")?;
    assert!(png.starts_with(b"\x89PNG"), "the screenshot is not a PNG");
    eprintln!("screenshot: {} ({} bytes)", screenshot.display(), png.len());

    for (what, page) in [("browser DOM", &dom), ("served HTML", &raw)] {
        assert!(!page.contains(&marker), "{what} shows an item payload");
        assert!(!page.contains(&secret), "{what} shows the component secret");
        assert!(
            !page.contains(&feed_password),
            "{what} shows a feed password"
        );
        assert!(!page.contains(&feed_token), "{what} shows a feed token");
        assert!(
            !page.contains(&ps.db.url().to_string()),
            "{what} shows the database URL"
        );
    }
    assert!(
        dom.contains(&format!("http://127.0.0.1:{feed_port}/atom.xml?…")),
        "the feed is not listed by its public URL\n{dom}"
    );
    Ok(())
}
both_stores!(status_page_in_a_browser_shows_a_running_fanout_and_no_payload_or_secret);

/// The value of the sample `series` (name and labels, exactly as exported).
fn sample(exposition: &str, series: &str) -> Option<f64> {
    exposition.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

async fn a_server_restart_is_counted_as_a_disconnect_and_shown_on_the_page() -> anyhow::Result<()> {
    let mut server = XmppServer::start_new(pubsubd_testkit::ServerKind::Prosody)?;
    let (mut ps, port) = start_with_status(&server, "").await?;
    let before = http_get(port, "/metrics").await?;
    assert_eq!(
        sample(
            &before,
            "pubsubd_component_disconnects_total{reason=\"server-closed\"}"
        ),
        Some(0.0),
        "exported at zero before any disconnect\n{before}"
    );
    server.stop()?;
    server.start()?;
    ps.process
        .wait_for_log("reconnecting to the XMPP server", READY_AGAIN)
        .await?;
    let deadline = Instant::now() + READY_AGAIN;
    let after = loop {
        let metrics = http_get(port, "/metrics").await?;
        if sample(&metrics, "pubsubd_reconnects_total") >= Some(1.0) {
            break metrics;
        }
        if Instant::now() > deadline {
            bail!("pubsubd never reconnected\n{}", ps.process.log_tail(20));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let lost: f64 = pubsubd::metrics::DISCONNECT_REASONS
        .iter()
        .filter_map(|r| {
            sample(
                &after,
                &format!("pubsubd_component_disconnects_total{{reason=\"{r}\"}}"),
            )
        })
        .sum();
    assert_eq!(lost, 1.0, "one stream lost\n{after}");
    for line in after
        .lines()
        .filter(|l| l.starts_with("pubsubd_component_disconnects_total"))
    {
        eprintln!("{line}");
    }
    // The page is cached for 2 s: wait it out.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let page = http_get(port, "/").await?;
    assert_eq!(element_text(&page, "disconnects"), Some("1"), "{page}");
    assert_eq!(element_text(&page, "reconnects"), Some("1"), "{page}");
    assert_eq!(
        element_text(&page, "connection-0-state"),
        Some("up"),
        "{page}"
    );
    Ok(())
}
both_stores!(a_server_restart_is_counted_as_a_disconnect_and_shown_on_the_page);
