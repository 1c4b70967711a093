//! Reading our own Prometheus exposition: the status page shows the counters the
//! recorder holds (notifications per connection, reconnects) without a second set of
//! counters beside the metrics, and measures the notification rate from them.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The samples of the series `name` (any labels): the label text between the braces
/// (empty without labels) and the value.
pub fn samples<'a>(text: &'a str, name: &'a str) -> impl Iterator<Item = (&'a str, f64)> + 'a {
    text.lines().filter_map(move |line| {
        let rest = line.strip_prefix(name)?;
        let (labels, value) = if let Some(labelled) = rest.strip_prefix('{') {
            let (labels, value) = labelled.split_once('}')?;
            (labels, value)
        } else if rest.starts_with(' ') {
            ("", rest)
        } else {
            // Another metric whose name starts with `name`.
            return None;
        };
        Some((labels, value.trim().parse::<f64>().ok()?))
    })
}

/// The value of `label` in a sample's label text (`a="1",b="2"`).
pub fn label<'a>(labels: &'a str, label: &str) -> Option<&'a str> {
    labels.split(',').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key.trim() == label).then(|| value.trim().trim_matches('"'))
    })
}

/// The sum of every sample of `name`, `None` when the series is not exported.
pub fn total(text: &str, name: &str) -> Option<f64> {
    samples(text, name).map(|(_, v)| v).reduce(|a, b| a + b)
}

/// Totals of a counter sampled over time, to tell its rate over the last `window`.
#[derive(Debug)]
pub struct RateWindow {
    window: Duration,
    samples: VecDeque<(Instant, f64)>,
}

impl RateWindow {
    /// An empty window over `window`.
    pub fn new(window: Duration) -> RateWindow {
        RateWindow {
            window,
            samples: VecDeque::new(),
        }
    }

    /// Records the counter's total at `at`. A total lower than the last (a counter
    /// reset, which a process restart would be) starts over.
    pub fn record(&mut self, at: Instant, total: f64) {
        if self.samples.back().is_some_and(|&(_, last)| total < last) {
            self.samples.clear();
        }
        self.samples.push_back((at, total));
        // Keeps the newest sample at least `window` old, so the rate spans the window.
        while self.samples.len() > 2
            && self
                .samples
                .get(1)
                .is_some_and(|&(t, _)| at.duration_since(t) >= self.window)
        {
            self.samples.pop_front();
        }
    }

    /// Increase per second between the oldest and newest sample; `None` before two
    /// samples exist.
    pub fn per_second(&self) -> Option<f64> {
        let (first_at, first) = *self.samples.front()?;
        let (last_at, last) = *self.samples.back()?;
        let span = last_at.duration_since(first_at).as_secs_f64();
        (span > 0.0).then(|| (last - first) / span)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# TYPE pubsubd_notifications_sent_total counter
pubsubd_notifications_sent_total{connection=\"0\"} 120
pubsubd_notifications_sent_total{connection=\"1\"} 30
pubsubd_notifications_sent_total_other 5
pubsubd_reconnects_total 2
";

    #[test]
    fn samples_of_a_labelled_counter_are_read_with_their_labels() {
        let got: Vec<_> = samples(TEXT, "pubsubd_notifications_sent_total")
            .map(|(labels, v)| (label(labels, "connection"), v))
            .collect();
        assert_eq!(got, vec![(Some("0"), 120.0), (Some("1"), 30.0)]);
        assert_eq!(total(TEXT, "pubsubd_notifications_sent_total"), Some(150.0));
        assert_eq!(total(TEXT, "pubsubd_reconnects_total"), Some(2.0));
        assert_eq!(total(TEXT, "pubsubd_absent_total"), None);
    }

    #[test]
    fn rate_spans_the_window_and_survives_a_reset() {
        let start = Instant::now();
        let mut w = RateWindow::new(Duration::from_secs(60));
        assert_eq!(w.per_second(), None);
        for s in 0..=24u64 {
            // 10 notifications a second, sampled every 5 s for two minutes.
            w.record(start + Duration::from_secs(s * 5), (s * 50) as f64);
        }
        assert_eq!(w.per_second(), Some(10.0));
        let (oldest, _) = w.samples[0];
        assert!(start + Duration::from_secs(120) - oldest <= Duration::from_secs(65));
        w.record(start + Duration::from_secs(125), 3.0);
        assert_eq!(w.per_second(), None, "a reset starts over");
    }
}
