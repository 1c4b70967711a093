//! The status page as HTML: a pure function of a [`Snapshot`]. Self-contained (inline
//! style, no script, no external asset); every text that came from users or the
//! network (JIDs, node names, feed URLs and statuses, error messages) is escaped.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};

use super::snapshot::{Connection, FeedView, MulticastView, Reading, Snapshot};
use crate::store::status::Backlog;
use crate::xmpp::render::escape;

/// Inline so the page needs nothing but itself (and a Content-Security-Policy can
/// forbid everything else).
const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.4em;margin:0 0 .2em}h2{font-size:1.1em;margin:1.4em 0 .4em}
table{border-collapse:collapse}td,th{padding:.2em .8em .2em 0;text-align:left;vertical-align:top}
th{font-weight:600;border-bottom:1px solid #bbb}td.n{text-align:right;font-variant-numeric:tabular-nums}
.up{color:#176b2c;font-weight:600}.down{color:#b3261e;font-weight:600}.muted{color:#666}
.grid{display:flex;gap:3em;flex-wrap:wrap}#instances td:first-child{font-family:monospace}";

/// The whole page.
pub fn page(s: &Snapshot) -> String {
    let mut h = String::with_capacity(8 * 1024);
    let jid = escape(&s.jid);
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"{refresh}\">\
         <title>pubsubd {jid}</title><style>{STYLE}</style></head><body>\
         <h1 id=\"jid\">{jid}</h1>\
         <p>pubsubd <span id=\"version\">{version}</span> · store <span id=\"store\">{store}</span> \
         · <span class=\"muted\">{taken} (reloads every {refresh} s)</span></p>",
        refresh = s.refresh_secs,
        version = escape(s.version),
        store = s.store,
        taken = timestamp(s.taken_at),
    );
    connections(&mut h, s);
    fanout(&mut h, s);
    largest(&mut h, s);
    feeds(&mut h, &s.feeds);
    h.push_str("</body></html>\n");
    h
}

fn connections(h: &mut String, s: &Snapshot) {
    h.push_str("<h2>Component connections</h2><table><tr><th>connection</th><th>state</th><th>notifications sent</th></tr>");
    for Connection {
        index,
        up,
        notifications,
    } in &s.connections
    {
        let (class, word) = if *up { ("up", "up") } else { ("down", "down") };
        let _ = write!(
            h,
            "<tr><td>{index}</td><td id=\"connection-{index}-state\" class=\"{class}\">{word}</td><td class=\"n\">{}</td></tr>",
            optional(*notifications)
        );
    }
    let _ = write!(
        h,
        "</table><p>reconnects <span id=\"reconnects\">{}</span> · disconnects <span id=\"disconnects\">{}</span> · ",
        optional(s.reconnects),
        optional(s.disconnects)
    );
    if s.stranger {
        h.push_str("<span id=\"stranger\" class=\"down\">another program that does not share this store is connected as this JID: the server splits its traffic (see the log)</span> · ");
    }
    match &s.multicast {
        None => h.push_str("multicast <span id=\"multicast\">off</span></p>"),
        Some(MulticastView {
            jid,
            state,
            limit,
            bounces,
        }) => {
            let limit = limit.map_or(String::new(), |l| {
                format!(", up to {l} recipients a stanza")
            });
            let through = jid.as_deref().map_or_else(
                || "no service found".to_string(),
                |jid| format!("through {}", escape(jid)),
            );
            let _ = write!(
                h,
                "multicast <span id=\"multicast\">{state}</span> {through}{limit}, {bounces} groups refused</p>"
            );
        }
    }
    h.push_str("<p>privileges (XEP-0356) <span id=\"privileges\">");
    if s.privileges.is_empty() {
        h.push_str("none granted");
    }
    for (n, (domain, grants)) in s.privileges.iter().enumerate() {
        let sep = if n > 0 { "; " } else { "" };
        let _ = write!(h, "{sep}{}: {}", escape(domain), escape(grants));
    }
    h.push_str("</span></p>");
}

fn fanout(h: &mut String, s: &Snapshot) {
    h.push_str("<h2>Fan-out</h2>");
    let rate = s
        .notifications_per_second
        .map_or("measuring".to_string(), |r| format!("{r:.1}"));
    match &s.backlog {
        Reading::Got(Backlog {
            jobs_pending,
            oldest_job_age_seconds,
            lease_holders,
        }) => {
            let _ = write!(
                h,
                "<table><tr><td>pending jobs</td><td id=\"pending\" class=\"n\">{jobs_pending}</td></tr>\
                 <tr><td>oldest job (the lag)</td><td id=\"lag\" class=\"n\">{}</td></tr>\
                 <tr><td>notifications per second, last minute</td><td id=\"rate\" class=\"n\">{rate}</td></tr></table>",
                duration(*oldest_job_age_seconds)
            );
            h.push_str("<h2>Instances</h2><p class=\"muted\">Processes holding fan-out leases now, by the start of the <code>process</code> id each logs at start-up (an idle instance holds none).</p>");
            counts(
                h,
                "instances",
                ["process", "jobs leased"],
                lease_holders.iter().map(|l| (l.process.as_str(), l.jobs)),
            );
        }
        other => {
            unavailable(h, other);
            let _ = write!(
                h,
                "<p>notifications per second, last minute: <span id=\"rate\">{rate}</span></p>"
            );
        }
    }
}

fn largest(h: &mut String, s: &Snapshot) {
    h.push_str("<h2>Largest nodes</h2>");
    let Reading::Got(ranking) = &s.largest else {
        unavailable(h, &s.largest);
        return;
    };
    if let Some(at) = s.largest_at {
        let _ = write!(h, "<p class=\"muted\">counted {}</p>", timestamp(at));
    }
    h.push_str("<div class=\"grid\">");
    for (id, title, nodes) in [
        ("by-subscribers", "by subscribers", &ranking.by_subscribers),
        ("by-items", "by items", &ranking.by_items),
    ] {
        counts(
            h,
            id,
            ["node", title],
            nodes.iter().map(|n| (n.name.as_str(), n.count)),
        );
    }
    h.push_str("</div>");
}

/// A table of names (escaped) and counts, with "none" when there are no rows.
fn counts<'a>(
    h: &mut String,
    id: &str,
    [name, count]: [&str; 2],
    rows: impl ExactSizeIterator<Item = (&'a str, u64)>,
) {
    let _ = write!(
        h,
        "<table id=\"{id}\"><tr><th>{name}</th><th>{count}</th></tr>"
    );
    if rows.len() == 0 {
        h.push_str("<tr><td class=\"muted\">none</td><td></td></tr>");
    }
    for (name, count) in rows {
        let _ = write!(
            h,
            "<tr><td>{}</td><td class=\"n\">{count}</td></tr>",
            escape(name)
        );
    }
    h.push_str("</table>");
}

fn feeds(h: &mut String, feeds: &Reading<Vec<FeedView>>) {
    h.push_str("<h2>Feeds</h2>");
    let Reading::Got(feeds) = feeds else {
        unavailable(h, feeds);
        return;
    };
    if feeds.is_empty() {
        h.push_str("<p>no feeds</p>");
        return;
    }
    h.push_str("<table id=\"feeds\"><tr><th>feed</th><th>node</th><th>last status</th><th>failures</th><th>last poll</th><th>next poll</th></tr>");
    for f in feeds {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td><td>{}</td><td>{}</td></tr>",
            escape(&f.url),
            escape(&f.node),
            escape(f.last_status.as_deref().unwrap_or("not polled yet")),
            f.failures,
            f.last_polled_at.map_or("never".into(), timestamp),
            timestamp(f.next_poll_at)
        );
    }
    h.push_str("</table>");
}

fn unavailable<T>(h: &mut String, reading: &Reading<T>) {
    match reading {
        Reading::Got(_) => {}
        Reading::Failed(why) => {
            let _ = write!(h, "<p class=\"down\">unavailable: {}</p>", escape(why));
        }
        Reading::Off(why) => {
            let _ = write!(h, "<p class=\"muted\">{}</p>", escape(why));
        }
    }
}

fn optional(n: Option<u64>) -> String {
    n.map_or("–".into(), |n| n.to_string())
}

fn timestamp(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// Seconds as an operator reads a lag: `0.4 s`, `12 s`, `3 min 5 s`, `2 h 10 min`.
fn duration(secs: f64) -> String {
    let secs = secs.max(0.0);
    if secs < 10.0 {
        return format!("{secs:.1} s");
    }
    let whole = secs.round() as u64;
    match whole {
        0..=59 => format!("{whole} s"),
        60..=3599 => format!("{} min {} s", whole / 60, whole % 60),
        _ => format!("{} h {} min", whole / 3600, whole % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::status::{LeaseHolder, NodeRanking, NodeSize};

    fn snapshot() -> Snapshot {
        let at = DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default();
        Snapshot {
            jid: "pubsub.example.org".into(),
            version: "1.2.3",
            store: "PostgreSQL",
            taken_at: at,
            refresh_secs: 5,
            connections: vec![
                Connection {
                    index: 0,
                    up: true,
                    notifications: Some(1200),
                },
                Connection {
                    index: 1,
                    up: false,
                    notifications: None,
                },
            ],
            reconnects: Some(3),
            disconnects: Some(4),
            stranger: false,
            multicast: Some(MulticastView {
                jid: Some("multicast.example.org".into()),
                state: "on",
                limit: Some(100),
                bounces: 0,
            }),
            privileges: vec![(
                "example.org".into(),
                "roster=get presence=roster message=none".into(),
            )],
            backlog: Reading::Got(Backlog {
                jobs_pending: 42,
                oldest_job_age_seconds: 185.0,
                lease_holders: vec![LeaseHolder {
                    process: "0f1e2d3c-4b5a-6978-8796-a5b4c3d2".into(),
                    jobs: 7,
                }],
            }),
            notifications_per_second: Some(1234.56),
            largest: Reading::Got(NodeRanking {
                by_subscribers: vec![NodeSize {
                    name: "<script>alert(1)</script>".into(),
                    count: 10_000,
                }],
                by_items: vec![],
            }),
            largest_at: Some(at),
            feeds: Reading::Got(vec![FeedView {
                url: "https://example.org/feed?…".into(),
                node: "news&weather".into(),
                last_status: Some("HTTP 503 <b>".into()),
                failures: 5,
                next_poll_at: at,
                last_polled_at: None,
            }]),
        }
    }

    #[test]
    fn page_shows_identity_connections_and_backlog() {
        let html = page(&snapshot());
        for expected in [
            "<meta http-equiv=\"refresh\" content=\"5\">",
            "<h1 id=\"jid\">pubsub.example.org</h1>",
            "<span id=\"version\">1.2.3</span>",
            "<span id=\"store\">PostgreSQL</span>",
            "id=\"connection-0-state\" class=\"up\">up<",
            "id=\"connection-1-state\" class=\"down\">down<",
            "<span id=\"reconnects\">3</span>",
            "<span id=\"multicast\">on</span> through multicast.example.org, up to 100",
            "<td id=\"pending\" class=\"n\">42</td>",
            "<td id=\"lag\" class=\"n\">3 min 5 s</td>",
            "<td id=\"rate\" class=\"n\">1234.6</td>",
            "<td>0f1e2d3c-4b5a-6978-8796-a5b4c3d2</td><td class=\"n\">7</td>",
            "<td class=\"n\">10000</td>",
            "https://example.org/feed?…",
            "2027-01-15 08:00:00 UTC",
        ] {
            assert!(html.contains(expected), "missing {expected} in\n{html}");
        }
    }

    #[test]
    fn a_stranger_on_the_jid_is_shown_only_while_there_is_one() {
        let mut s = snapshot();
        assert!(!page(&s).contains("id=\"stranger\""));
        s.stranger = true;
        assert!(page(&s).contains("id=\"stranger\""));
    }

    #[test]
    fn text_from_users_is_escaped() {
        let html = page(&snapshot());
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("news&amp;weather"));
        assert!(html.contains("HTTP 503 &lt;b&gt;"));
    }

    #[test]
    fn page_is_self_contained() {
        let html = page(&snapshot());
        for external in ["<script", "src=", "href=", "@import", "url("] {
            assert!(!html.contains(external), "{external} in\n{html}");
        }
    }

    #[test]
    fn failures_and_switched_off_parts_say_so() {
        let mut s = snapshot();
        s.backlog = Reading::Failed("database unavailable: <timeout>".into());
        s.feeds = Reading::Off("feed ingestion is off");
        s.multicast = None;
        s.notifications_per_second = None;
        let html = page(&s);
        assert!(html.contains("unavailable: database unavailable: &lt;timeout&gt;"));
        assert!(html.contains("feed ingestion is off"));
        assert!(html.contains("multicast <span id=\"multicast\">off</span>"));
        assert!(html.contains("<span id=\"rate\">measuring</span>"));
        assert!(!html.contains("id=\"pending\""));
    }

    #[test]
    fn lags_read_as_people_say_them() {
        assert_eq!(duration(0.42), "0.4 s");
        assert_eq!(duration(42.0), "42 s");
        assert_eq!(duration(185.0), "3 min 5 s");
        assert_eq!(duration(7_800.0), "2 h 10 min");
        assert_eq!(duration(-1.0), "0.0 s");
    }
}
