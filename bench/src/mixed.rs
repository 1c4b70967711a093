//! The `mixed` scenario (#18): a big fan-out (the firehose: one node with many
//! subscribers, published as fast as acknowledgements allow) and, on the same
//! service at the same time, a small node (a handful of subscribers) published
//! at a steady low rate. What it answers: does everything else on the stream
//! wait behind the firehose? The small node's publish→notification and
//! publish→ack latencies are the measure; the firehose's own rate says what
//! keeping them low costs. `--alone` measures the small node without the
//! firehose, the baseline for the same run.
//!
//! Owns the timing of the two publishers against each other; each side is a
//! `fanout` run ([`crate::fanout`]) prepared first and measured together.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::env::Env;
use crate::fanout::{self, FanoutConfig, FanoutReport};

/// What to run.
#[derive(Debug, Clone)]
pub struct MixedConfig {
    /// The firehose; `None` measures the small node alone.
    pub firehose: Option<FanoutConfig>,
    /// The small node, published at its rate until the firehose is
    /// delivered (or, alone, for its `max_publish_time`).
    pub small: FanoutConfig,
}

/// The result of a `mixed` run.
#[derive(Debug, Serialize)]
pub struct MixedReport {
    /// Always `mixed`.
    pub scenario: &'static str,
    /// `prosody` or `ejabberd`.
    pub server: String,
    /// What was measured (`pubsubd`, `builtin`, or a name or JID).
    pub target: String,
    /// Whether the small node ran without the firehose.
    pub alone: bool,
    /// The small node's run.
    pub small: FanoutReport,
    /// The firehose's run, unless alone.
    pub firehose: Option<FanoutReport>,
}

/// How long the small node goes on publishing, alone, when no limit is set.
const ALONE_DEFAULT: Duration = Duration::from_secs(10);

/// Runs the scenario.
pub async fn run(env: &Env, config: &MixedConfig) -> anyhow::Result<MixedReport> {
    let Some(firehose) = &config.firehose else {
        let mut small = config.small.clone();
        small.max_publish_time = small.max_publish_time.or(Some(ALONE_DEFAULT));
        let small = fanout::run(env, &small).await?;
        return Ok(MixedReport {
            scenario: "mixed",
            server: env.server_kind.clone(),
            target: config.small.target.clone(),
            alone: true,
            small,
            firehose: None,
        });
    };
    // Set both up first (the firehose's logins take long and would measure
    // nothing), then publish to both at once; the small node stops when the
    // firehose has been delivered.
    let small = fanout::prepare(env, &config.small).await?;
    let big = fanout::prepare(env, firehose).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let small_run = small.measure(Some(Arc::clone(&stop)));
    let big_run = async {
        let report = big.measure(None).await;
        stop.store(true, Ordering::Relaxed);
        report
    };
    let (small, big) = tokio::join!(small_run, big_run);
    Ok(MixedReport {
        scenario: "mixed",
        server: env.server_kind.clone(),
        target: config.small.target.clone(),
        alone: false,
        small: small?,
        firehose: Some(big?),
    })
}
