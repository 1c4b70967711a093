//! When a feed is polled next: pure functions of what the last poll saw, unit-tested.
//!
//! - success: after the feed's interval, or later if the server's `Cache-Control:
//!   max-age` asks for it (capped, so a bogus year-long max-age does not stop a feed);
//! - failure: exponential backoff, doubling the interval per consecutive failure up to
//!   a day, and never sooner than a `Retry-After` the server sent (also capped).

use std::time::Duration;

/// The longest a failing feed waits between attempts: it keeps being tried daily, so
/// it recovers by itself once the server is fixed.
pub const MAX_BACKOFF: Duration = Duration::from_secs(24 * 3600);
/// The longest `max-age` or `Retry-After` honoured.
pub const MAX_SERVER_DELAY: Duration = Duration::from_secs(24 * 3600);
/// Doubling stops at this exponent (2^16 intervals is past any sensible backoff).
const MAX_DOUBLINGS: u32 = 16;

/// Delay after a successful poll (200 or 304).
pub fn after_success(interval: Duration, max_age: Option<Duration>) -> Duration {
    match max_age {
        Some(age) => interval.max(age.min(MAX_SERVER_DELAY)),
        None => interval,
    }
}

/// Delay after the `failures`-th consecutive failure (1 for the first).
pub fn after_failure(interval: Duration, failures: u32, retry_after: Option<Duration>) -> Duration {
    let doublings = failures.clamp(1, MAX_DOUBLINGS);
    let backoff = interval
        .checked_mul(1u32 << doublings)
        .unwrap_or(MAX_BACKOFF)
        .min(MAX_BACKOFF.max(interval));
    match retry_after {
        Some(r) => backoff.max(r.min(MAX_SERVER_DELAY)),
        None => backoff,
    }
}

/// Reads `max-age` from a Cache-Control header value (`no-cache`/`no-store` mean none).
pub fn max_age(cache_control: &str) -> Option<Duration> {
    cache_control.split(',').find_map(|d| {
        let (k, v) = d.trim().split_once('=')?;
        if k.trim().eq_ignore_ascii_case("max-age") {
            v.trim()
                .trim_matches('"')
                .parse()
                .ok()
                .map(Duration::from_secs)
        } else {
            None
        }
    })
}

/// Reads a Retry-After value: delay-seconds or an HTTP date (RFC 9110 §10.2.3).
pub fn retry_after(value: &str, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    (when.with_timezone(&chrono::Utc) - now).to_std().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    #[test]
    fn success_waits_the_interval_or_a_longer_max_age() {
        assert_eq!(after_success(MIN * 15, None), MIN * 15);
        assert_eq!(after_success(MIN * 15, Some(MIN)), MIN * 15);
        assert_eq!(after_success(MIN * 15, Some(MIN * 60)), MIN * 60);
        assert_eq!(
            after_success(MIN, Some(Duration::from_secs(365 * 86400))),
            MAX_SERVER_DELAY
        );
    }

    #[test]
    fn failures_back_off_exponentially_up_to_a_day() {
        assert_eq!(after_failure(MIN, 1, None), MIN * 2);
        assert_eq!(after_failure(MIN, 2, None), MIN * 4);
        assert_eq!(after_failure(MIN, 3, None), MIN * 8);
        assert_eq!(after_failure(MIN, 40, None), MAX_BACKOFF);
        assert_eq!(after_failure(MIN, 1, Some(MIN * 30)), MIN * 30);
    }

    #[test]
    fn cache_control_and_retry_after_are_read() {
        assert_eq!(
            max_age("public, max-age=600"),
            Some(Duration::from_secs(600))
        );
        assert_eq!(max_age("no-cache"), None);
        let now = chrono::DateTime::parse_from_rfc2822("Wed, 21 Oct 2015 07:28:00 GMT")
            .unwrap()
            .with_timezone(&chrono::Utc);
        assert_eq!(retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(
            retry_after("Wed, 21 Oct 2015 07:30:00 GMT", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(retry_after("soon", now), None);
    }
}
