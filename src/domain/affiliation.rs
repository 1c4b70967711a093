//! [`Affiliation`]: an entity's standing with a node (XEP-0060 §4.1).

use std::fmt;

use serde::{Deserialize, Serialize};

use super::error::DomainError;

/// The affiliation of a bare JID with a node.
///
/// What each affiliation may do is decided in `access`, not here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Affiliation {
    /// Manages the node; may do everything.
    Owner,
    /// May publish and retract, and is implicitly allowed to subscribe and retrieve.
    Publisher,
    /// May publish (and retract its own items) but not subscribe or retrieve.
    PublishOnly,
    /// On the node's whitelist: may subscribe and retrieve.
    Member,
    /// No affiliation; the node's access model decides.
    None,
    /// Banned: may do nothing.
    Outcast,
}

impl Affiliation {
    /// Every affiliation, most privileged first.
    pub const ALL: [Affiliation; 6] = [
        Affiliation::Owner,
        Affiliation::Publisher,
        Affiliation::PublishOnly,
        Affiliation::Member,
        Affiliation::None,
        Affiliation::Outcast,
    ];

    /// The XEP-0060 attribute value, e.g. `publish-only`.
    pub fn as_str(self) -> &'static str {
        match self {
            Affiliation::Owner => "owner",
            Affiliation::Publisher => "publisher",
            Affiliation::PublishOnly => "publish-only",
            Affiliation::Member => "member",
            Affiliation::None => "none",
            Affiliation::Outcast => "outcast",
        }
    }

    /// Parses an XEP-0060 affiliation value.
    pub fn parse(value: &str) -> Result<Self, DomainError> {
        Affiliation::ALL
            .into_iter()
            .find(|a| a.as_str() == value)
            .ok_or_else(|| DomainError::BadRequest(format!("unknown affiliation '{value}'")))
    }

    /// The affiliation the permission rules should see: service administrators act as
    /// owners of every node, whatever their stored affiliation.
    pub fn effective(self, is_service_admin: bool) -> Affiliation {
        if is_service_admin {
            Affiliation::Owner
        } else {
            self
        }
    }
}

impl fmt::Display for Affiliation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_affiliation_round_trips_through_its_xep_string() {
        for a in Affiliation::ALL {
            assert_eq!(Affiliation::parse(a.as_str()), Ok(a));
            assert_eq!(a.to_string(), a.as_str());
        }
    }

    #[test]
    fn publish_only_uses_the_hyphenated_form() {
        assert_eq!(Affiliation::PublishOnly.as_str(), "publish-only");
        assert!(Affiliation::parse("publish_only").is_err());
        assert!(Affiliation::parse("Owner").is_err());
    }

    #[test]
    fn service_admin_acts_as_owner_even_when_outcast() {
        assert_eq!(Affiliation::Outcast.effective(true), Affiliation::Owner);
        assert_eq!(Affiliation::Member.effective(false), Affiliation::Member);
    }

    #[test]
    fn serde_uses_the_xep_strings() {
        let json = serde_json::to_string(&Affiliation::PublishOnly).unwrap();
        assert_eq!(json, "\"publish-only\"");
    }
}
