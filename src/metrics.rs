//! Metric names and the Prometheus recorder. Code anywhere records through the
//! `metrics` macros with the names below; [`crate::status::http`] renders them.
//!
//! Names follow Prometheus conventions: `_total` for counters, base units (seconds).

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Stanzas read from the server, by `kind` (iq, message, presence, other).
pub const STANZAS_RECEIVED: &str = "pubsubd_stanzas_received_total";
/// Answered IQ requests, by `ns` (payload namespace) and `outcome` (`result` or the
/// error condition).
pub const REQUESTS: &str = "pubsubd_requests_total";
/// Time from reading a request to queuing its answer, by `ns`.
pub const REQUEST_SECONDS: &str = "pubsubd_request_duration_seconds";
/// Notifications handed to the server and confirmed by a barrier, by `connection`
/// (0, 1, … of `connections`).
pub const NOTIFICATIONS_SENT: &str = "pubsubd_notifications_sent_total";
/// Stanzas that carried one notification to a group of recipients through the XEP-0033
/// multicast service (`multicast`); their recipients count in `NOTIFICATIONS_SENT`.
pub const MULTICAST_GROUPS: &str = "pubsubd_multicast_groups_total";
/// Groups the multicast service refused (each then sent again one by one).
pub const MULTICAST_REFUSED: &str = "pubsubd_multicast_refused_total";
/// Items accepted by publish requests.
pub const PUBLISHES: &str = "pubsubd_publishes_total";
/// Requests refused by a rate limit, by `action`.
pub const RATE_LIMITED: &str = "pubsubd_rate_limited_total";
/// Component connections re-established after a drop.
pub const RECONNECTS: &str = "pubsubd_reconnects_total";
/// Component streams that ended other than by our own shutdown, by `reason` (one of
/// [`DISCONNECT_REASONS`]). Nothing a user sends may end the stream: a `malformed-xml`
/// here is a bug to report, with the sender logged beside it.
pub const COMPONENT_DISCONNECTS: &str = "pubsubd_component_disconnects_total";
/// The `reason` labels of [`COMPONENT_DISCONNECTS`], those of
/// [`crate::xmpp::session::LostReason::label`]: a closed set, so that a server's
/// free-text error cannot create a series per message.
pub const DISCONNECT_REASONS: [&str; 8] = [
    "write-failed",
    "read-failed",
    "malformed-xml",
    "stream-error",
    "server-closed",
    "connection-closed",
    "silent",
    "reader-stopped",
];
/// Stanzas read whole but refused for crossing a per-stanza limit of the reader, by
/// `limit` (`too-large`, `too-deep`, ...); each request among them got an error answer.
pub const STANZAS_REFUSED: &str = "pubsubd_stanzas_refused_total";
/// Barrier pings (or their answers) written by a process that does not share this
/// store, seen on the component JID: a stranger the server splits the JID's traffic with.
pub const STRANGER_PINGS: &str = "pubsubd_component_stranger_pings_total";
/// 1 while a stranger was seen on the component JID in the last two minutes.
pub const SHARED_WITH_STRANGER: &str = "pubsubd_component_shared_with_stranger";
/// 1 when `/readyz` would answer 200 (every component stream up, the database
/// answering, no stranger on the JID), set at each scrape.
pub const READY: &str = "pubsubd_ready";
/// Component streams up (1 with the default single connection).
pub const CONNECTED: &str = "pubsubd_xmpp_connected";
/// Stanzas waiting in front of the connection writer.
pub const OUTGOING_QUEUE: &str = "pubsubd_outgoing_queue_depth";
/// Fan-out jobs not yet completed (all instances).
pub const JOBS_PENDING: &str = "pubsubd_fanout_jobs_pending";
/// Age of the oldest fan-out job, seconds (the fan-out lag).
pub const OLDEST_JOB_AGE: &str = "pubsubd_fanout_oldest_job_age_seconds";
/// Time a fan-out worker's claim took, from sending it to holding the jobs, for claims
/// that found work: the claim's part of a notification's way through the database (not
/// the wait for a worker before it, nor the subscriber reads and writes after it).
pub const CLAIM_SECONDS: &str = "pubsubd_fanout_claim_duration_seconds";
/// What fan-out may have queued on a connection unconfirmed, in notifications (about
/// 50 ms of the server's measured routing rate), by `connection`.
pub const FANOUT_WINDOW: &str = "pubsubd_fanout_window";
/// The server's routing rate as fan-out measures it from its barriers, notifications per
/// second, by `connection`.
pub const FANOUT_ROUTE_RATE: &str = "pubsubd_fanout_route_rate";
/// Processes currently holding fan-out leases (instances doing fan-out work).
pub const INSTANCES_ACTIVE: &str = "pubsubd_fanout_instances_active";
/// Finished feed polls, by `outcome` (one of [`FEED_POLL_OUTCOMES`]).
pub const FEED_POLLS: &str = "pubsubd_feed_polls_total";
/// Feed entries published (new or changed).
pub const FEED_ENTRIES_PUBLISHED: &str = "pubsubd_feed_entries_published_total";
/// 1 when the last database check succeeded.
pub const STORE_UP: &str = "pubsubd_store_up";
/// Duration of the database health query, a proxy for store latency.
pub const STORE_PING_SECONDS: &str = "pubsubd_store_ping_seconds";

/// Bucket bounds (seconds) of every histogram. Without them the exporter renders
/// summaries, whose quantiles cannot be aggregated across instances or fed to
/// `histogram_quantile`. From 0.5 ms (an indexed query on a local database) to 5 s
/// (the store checks time out at 2 s), roughly 2.5x apart.
const LATENCY_BUCKETS: [f64; 13] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// The `outcome` labels of [`FEED_POLLS`], registered at zero up front.
pub const FEED_POLL_OUTCOMES: [&str; 3] = ["ok", "not_modified", "failed"];

/// Installs the global recorder and returns the handle that renders the exposition
/// text. Without a call, the `metrics` macros are no-ops (as in unit tests).
pub fn install() -> Option<PrometheusHandle> {
    let installed = PrometheusBuilder::new()
        .set_buckets(&LATENCY_BUCKETS)
        .and_then(PrometheusBuilder::install_recorder);
    match installed {
        Ok(handle) => {
            describe();
            register_at_zero();
            Some(handle)
        }
        Err(e) => {
            tracing::warn!(error = %e, "metrics recorder not installed");
            None
        }
    }
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(STANZAS_RECEIVED, "Stanzas read from the XMPP server");
    describe_counter!(REQUESTS, "IQ requests answered, by namespace and outcome");
    describe_histogram!(REQUEST_SECONDS, Unit::Seconds, "Request handling time");
    describe_histogram!(
        CLAIM_SECONDS,
        Unit::Seconds,
        "Fan-out claims that found work: time from sending to holding the jobs"
    );
    describe_counter!(
        NOTIFICATIONS_SENT,
        "Notifications confirmed received by the server"
    );
    describe_counter!(
        MULTICAST_GROUPS,
        "Notification stanzas sent to a group of recipients through the multicast service"
    );
    describe_counter!(
        MULTICAST_REFUSED,
        "Groups of notifications the multicast service refused"
    );
    describe_counter!(PUBLISHES, "Items published");
    describe_counter!(RECONNECTS, "Component reconnections");
    describe_counter!(COMPONENT_DISCONNECTS, "Component streams lost, by reason");
    describe_counter!(
        STANZAS_REFUSED,
        "Stanzas refused for crossing a per-stanza limit, by limit"
    );
    describe_counter!(
        STRANGER_PINGS,
        "Pings on the component JID from a process that does not share this store"
    );
    describe_gauge!(
        SHARED_WITH_STRANGER,
        "1 while a stranger shares the component JID"
    );
    describe_gauge!(READY, "1 when /readyz answers 200");
    describe_counter!(RATE_LIMITED, "Requests refused by a rate limit");
    describe_gauge!(CONNECTED, "Component connections up (of `connections`)");
    describe_gauge!(OUTGOING_QUEUE, "Stanzas queued for the connection writer");
    describe_gauge!(JOBS_PENDING, "Fan-out jobs not yet completed");
    describe_gauge!(
        OLDEST_JOB_AGE,
        Unit::Seconds,
        "Age of the oldest fan-out job"
    );
    describe_gauge!(INSTANCES_ACTIVE, "Instances holding fan-out leases");
    describe_gauge!(
        FANOUT_WINDOW,
        "Notifications fan-out may have queued on a connection unconfirmed"
    );
    describe_gauge!(
        FANOUT_ROUTE_RATE,
        "The server's routing rate measured by fan-out, notifications per second"
    );
    describe_gauge!(STORE_UP, "1 when the database answers");
    describe_counter!(FEED_POLLS, "Feed polls, by outcome");
    describe_counter!(FEED_ENTRIES_PUBLISHED, "Feed entries published");
    describe_histogram!(
        STORE_PING_SECONDS,
        Unit::Seconds,
        "Database health query time"
    );
}

/// Counters that count rare events exist from the start, at zero: alert rules and
/// dashboards can then tell "none happened" from "not exported", and `increase()` sees
/// the first event instead of a series appearing at 1.
fn register_at_zero() {
    for counter in [
        PUBLISHES,
        RECONNECTS,
        MULTICAST_GROUPS,
        MULTICAST_REFUSED,
        FEED_ENTRIES_PUBLISHED,
    ] {
        metrics::counter!(counter).absolute(0);
    }
    for reason in DISCONNECT_REASONS {
        metrics::counter!(COMPONENT_DISCONNECTS, "reason" => reason).absolute(0);
    }
    for outcome in FEED_POLL_OUTCOMES {
        metrics::counter!(FEED_POLLS, "outcome" => outcome).absolute(0);
    }
}
