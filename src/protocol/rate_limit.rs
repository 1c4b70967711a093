//! Per-JID and per-domain rate limits (token buckets) for requests as a whole and for
//! the actions that cost the most: publish, subscribe, node creation.
//!
//! Configured in the `[rate_limits]` table, in events per second:
//!
//! ```toml
//! [rate_limits]
//! requests_per_jid = 200      # every IQ request, checked before it is queued
//! publish_per_jid = 50
//! publish_per_domain = 500
//! subscribe_per_jid = 20
//! subscribe_per_domain = 500
//! create_per_jid = 2
//! create_per_domain = 20
//! ```
//!
//! A missing key means no limit. A bucket holds two seconds' worth of tokens, so short
//! bursts pass. Over the limit the request gets `resource-constraint` (type `wait`) and
//! nothing is done; the check is in memory and costs a hash lookup.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use xmpp_parsers::jid::Jid;

/// Seconds of tokens a bucket holds: the burst allowance.
const BURST_SECONDS: f64 = 2.0;
/// Above this many buckets, full (idle) ones are forgotten; keeps memory bounded when
/// many JIDs pass by.
const MAX_BUCKETS: usize = 100_000;

/// What is being limited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Request,
    Publish,
    Subscribe,
    Create,
}

impl Action {
    const ALL: [Action; 4] = [
        Action::Request,
        Action::Publish,
        Action::Subscribe,
        Action::Create,
    ];

    fn key(self) -> &'static str {
        match self {
            Action::Request => "requests",
            Action::Publish => "publish",
            Action::Subscribe => "subscribe",
            Action::Create => "create",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Scope {
    Jid,
    Domain,
}

/// The configured rates, events per second.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rates {
    rates: HashMap<(Action, Scope), f64>,
}

impl Rates {
    /// Reads `[rate_limits]`; errors name the key.
    pub fn from_table(table: &toml::Table) -> Result<Rates, String> {
        let mut rates = HashMap::new();
        for (key, value) in table {
            let (action, scope) = Action::ALL
                .iter()
                .flat_map(|a| [(*a, Scope::Jid), (*a, Scope::Domain)])
                .find(|(a, s)| {
                    let suffix = match s {
                        Scope::Jid => "per_jid",
                        Scope::Domain => "per_domain",
                    };
                    *key == format!("{}_{suffix}", a.key())
                })
                .ok_or_else(|| format!("unknown key `rate_limits.{key}`"))?;
            let rate = match value {
                toml::Value::Integer(i) => *i as f64,
                toml::Value::Float(f) => *f,
                _ => return Err(format!("`rate_limits.{key}` must be a number")),
            };
            if !(rate > 0.0 && rate.is_finite()) {
                return Err(format!("`rate_limits.{key}` must be positive"));
            }
            rates.insert((action, scope), rate);
        }
        Ok(Rates { rates })
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The limiter shared by all request handlers.
#[derive(Debug, Default)]
pub struct RateLimiter {
    rates: Rates,
    buckets: Mutex<HashMap<(Action, Scope, String), Bucket>>,
}

impl RateLimiter {
    pub fn new(rates: Rates) -> RateLimiter {
        RateLimiter {
            rates,
            buckets: Mutex::default(),
        }
    }

    /// Takes one token for `action` by `from` from both its JID's and its domain's
    /// bucket; `false` (and nothing taken) if either is empty.
    pub fn allow(&self, action: Action, from: &Jid) -> bool {
        self.allow_at(action, from, Instant::now())
    }

    fn allow_at(&self, action: Action, from: &Jid, now: Instant) -> bool {
        let jid_rate = self.rates.rates.get(&(action, Scope::Jid)).copied();
        let domain_rate = self.rates.rates.get(&(action, Scope::Domain)).copied();
        if jid_rate.is_none() && domain_rate.is_none() {
            return true;
        }
        let Ok(mut buckets) = self.buckets.lock() else {
            return true;
        };
        if buckets.len() > MAX_BUCKETS {
            let rates = &self.rates.rates;
            buckets.retain(|(a, s, _), b| {
                let rate = rates.get(&(*a, *s)).copied().unwrap_or(1.0);
                refill(*b, rate, now).tokens < rate * BURST_SECONDS
            });
        }
        let keys = [
            jid_rate.map(|r| ((action, Scope::Jid, from.to_bare().to_string()), r)),
            domain_rate.map(|r| ((action, Scope::Domain, from.domain().to_string()), r)),
        ];
        let mut updated = Vec::with_capacity(2);
        for (key, rate) in keys.into_iter().flatten() {
            let bucket = buckets.get(&key).copied().unwrap_or(Bucket {
                tokens: rate * BURST_SECONDS,
                at: now,
            });
            let mut bucket = refill(bucket, rate, now);
            if bucket.tokens < 1.0 {
                return false;
            }
            bucket.tokens -= 1.0;
            updated.push((key, bucket));
        }
        buckets.extend(updated);
        true
    }
}

fn refill(b: Bucket, rate: f64, now: Instant) -> Bucket {
    let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
    Bucket {
        tokens: (b.tokens + elapsed * rate).min(rate * BURST_SECONDS),
        at: now,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn limiter(text: &str) -> RateLimiter {
        RateLimiter::new(Rates::from_table(&toml::from_str(text).unwrap()).unwrap())
    }

    fn jid(s: &str) -> Jid {
        s.parse().unwrap()
    }

    #[test]
    fn a_jid_gets_its_burst_then_waits_for_refill() {
        let l = limiter("publish_per_jid = 5");
        let t0 = Instant::now();
        let a = jid("a@x.example/r");
        let allowed = (0..20)
            .filter(|_| l.allow_at(Action::Publish, &a, t0))
            .count();
        assert_eq!(allowed, 10, "two seconds of burst");
        assert!(!l.allow_at(Action::Publish, &a, t0));
        assert!(l.allow_at(Action::Publish, &a, t0 + Duration::from_millis(250)));
        // Others are not affected, nor other actions.
        assert!(l.allow_at(Action::Publish, &jid("b@x.example"), t0));
        assert!(l.allow_at(Action::Subscribe, &a, t0));
    }

    #[test]
    fn a_domain_limit_covers_all_its_jids() {
        let l = limiter("create_per_domain = 1");
        let t0 = Instant::now();
        assert!(l.allow_at(Action::Create, &jid("a@evil.example"), t0));
        assert!(l.allow_at(Action::Create, &jid("b@evil.example"), t0));
        assert!(!l.allow_at(Action::Create, &jid("c@evil.example"), t0));
        assert!(l.allow_at(Action::Create, &jid("c@good.example"), t0));
    }

    #[test]
    fn no_configuration_means_no_limit() {
        let l = limiter("");
        let a = jid("a@x.example");
        assert!((0..10_000).all(|_| l.allow(Action::Publish, &a)));
    }

    #[test]
    fn bad_keys_and_values_are_named() {
        assert!(
            Rates::from_table(&toml::from_str("publish_per_user = 1").unwrap())
                .unwrap_err()
                .contains("rate_limits.publish_per_user")
        );
        assert!(Rates::from_table(&toml::from_str("publish_per_jid = -1").unwrap()).is_err());
    }
}
