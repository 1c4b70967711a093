//! Service-wide ceilings ([`ServiceLimits`]) and who may create nodes ([`CreatePolicy`]).
//!
//! Both are set by the operator (the config module builds them); the functions here only
//! decide.

use serde::{Deserialize, Serialize};
use xmpp_parsers::jid::BareJid;

use super::error::DomainError;

/// Default ceiling on `pubsub#max_items`: large enough for feeds and archives-by-pubsub,
/// small enough that one node's item list stays a cheap query.
pub const DEFAULT_MAX_ITEMS_CEILING: u32 = 10_000;

/// Default ceiling on `pubsub#max_payload_size`, in bytes. Prosody's default client
/// stanza size limit is 256 KiB, so larger payloads would not reach the service anyway.
pub const DEFAULT_MAX_PAYLOAD_SIZE_CEILING: u32 = 256 * 1024;

/// Default number of a node's owners whose rosters one request consults: a personal
/// node has one owner; a few more cover shared ones, and each is a round trip through
/// the XMPP server.
pub const DEFAULT_MAX_ROSTER_OWNERS: u32 = 4;

/// Default number of owners whose nodes one revocation tick (every 5 s) re-judges: each
/// is one roster read through the server, so a tick costs at most this many reads.
pub const DEFAULT_REVOCATION_OWNERS_PER_TICK: u32 = 100;

/// Operator-set upper bounds that node owners cannot exceed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServiceLimits {
    /// Highest `pubsub#max_items` a node may have; also what `max` means.
    pub max_items: u32,
    /// Highest `pubsub#max_payload_size` a node may have, in bytes.
    pub max_payload_size: u32,
    /// How many nodes one bare JID may own; `None` for no limit.
    pub max_nodes_per_owner: Option<u32>,
    /// How many subscriptions one bare JID may hold across the service; `None` for no
    /// limit.
    pub max_subscriptions_per_jid: Option<u32>,
    /// How many of a `presence` or `roster` node's owners have their rosters read for
    /// one request; owners past it count as unknown (fail closed for newcomers).
    pub max_roster_owners: u32,
    /// How many owners the revocation sweep judges per tick.
    pub revocation_owners_per_tick: u32,
}

impl Default for ServiceLimits {
    fn default() -> Self {
        ServiceLimits {
            max_items: DEFAULT_MAX_ITEMS_CEILING,
            max_payload_size: DEFAULT_MAX_PAYLOAD_SIZE_CEILING,
            max_nodes_per_owner: None,
            max_subscriptions_per_jid: None,
            max_roster_owners: DEFAULT_MAX_ROSTER_OWNERS,
            revocation_owners_per_tick: DEFAULT_REVOCATION_OWNERS_PER_TICK,
        }
    }
}

impl ServiceLimits {
    /// May someone who already owns `owned` nodes create another?
    /// (`not-allowed` + `max-nodes-exceeded` otherwise.)
    pub fn check_node_quota(&self, owned: u32) -> Result<(), DomainError> {
        match self.max_nodes_per_owner {
            Some(max) if owned >= max => Err(DomainError::MaxNodesExceeded),
            _ => Ok(()),
        }
    }

    /// May someone who already holds `held` subscriptions add another?
    /// (`policy-violation` + `too-many-subscriptions` otherwise, XEP-0060 §6.1.3.9.)
    pub fn check_subscription_quota(&self, held: u32) -> Result<(), DomainError> {
        match self.max_subscriptions_per_jid {
            Some(max) if held >= max => Err(DomainError::TooManySubscriptions),
            _ => Ok(()),
        }
    }
}

/// Who, besides service administrators, may create nodes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum CreatePolicy {
    /// Any entity.
    #[default]
    Anyone,
    /// Entities whose JID's domain is one of these (e.g. the local server's users).
    Domains(Vec<String>),
    /// Exactly these bare JIDs.
    Jids(Vec<BareJid>),
    /// Administrators only.
    Nobody,
}

/// May `requester` create a node (XEP-0060 §8.1.1: `forbidden` otherwise)?
///
/// Administrators always may. Domain names are compared case-insensitively, since a
/// parsed JID's domain is already lowercased but the configured list may not be.
pub fn check_create(
    requester: &BareJid,
    policy: &CreatePolicy,
    admins: &[BareJid],
) -> Result<(), DomainError> {
    let allowed = admins.contains(requester)
        || match policy {
            CreatePolicy::Anyone => true,
            CreatePolicy::Domains(domains) => {
                let domain = requester.domain().as_str();
                domains.iter().any(|d| d.eq_ignore_ascii_case(domain))
            }
            CreatePolicy::Jids(jids) => jids.contains(requester),
            CreatePolicy::Nobody => false,
        };
    if allowed {
        Ok(())
    } else {
        Err(DomainError::Forbidden)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jid(s: &str) -> BareJid {
        BareJid::new(s).unwrap()
    }

    #[test]
    fn anyone_may_create_under_the_open_policy() {
        assert_eq!(
            check_create(&jid("a@x.example"), &CreatePolicy::Anyone, &[]),
            Ok(())
        );
    }

    #[test]
    fn local_user_may_create_but_remote_user_may_not() {
        let policy = CreatePolicy::Domains(vec!["Denmark.lit".into()]);
        assert_eq!(
            check_create(&jid("hamlet@denmark.lit"), &policy, &[]),
            Ok(())
        );
        assert_eq!(
            check_create(&jid("romeo@montague.lit"), &policy, &[]),
            Err(DomainError::Forbidden)
        );
    }

    #[test]
    fn only_listed_jids_may_create() {
        let policy = CreatePolicy::Jids(vec![jid("hamlet@denmark.lit")]);
        assert_eq!(
            check_create(&jid("hamlet@denmark.lit"), &policy, &[]),
            Ok(())
        );
        assert_eq!(
            check_create(&jid("ophelia@denmark.lit"), &policy, &[]),
            Err(DomainError::Forbidden)
        );
    }

    #[test]
    fn admin_may_create_even_when_nobody_may() {
        let admin = jid("admin@denmark.lit");
        assert_eq!(
            check_create(&admin, &CreatePolicy::Nobody, std::slice::from_ref(&admin)),
            Ok(())
        );
        assert_eq!(
            check_create(&jid("hamlet@denmark.lit"), &CreatePolicy::Nobody, &[admin]),
            Err(DomainError::Forbidden)
        );
    }

    #[test]
    fn quotas_refuse_at_the_limit_and_not_before() {
        let limits = ServiceLimits {
            max_nodes_per_owner: Some(2),
            max_subscriptions_per_jid: Some(1),
            ..ServiceLimits::default()
        };
        assert_eq!(limits.check_node_quota(1), Ok(()));
        assert_eq!(
            limits.check_node_quota(2),
            Err(DomainError::MaxNodesExceeded)
        );
        assert_eq!(limits.check_subscription_quota(0), Ok(()));
        assert_eq!(
            limits.check_subscription_quota(1),
            Err(DomainError::TooManySubscriptions)
        );
        assert_eq!(ServiceLimits::default().check_node_quota(u32::MAX), Ok(()));
    }
}
