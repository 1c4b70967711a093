//! Validated identifiers: [`NodeId`], [`ItemId`] and [`SubId`].
//!
//! Each is parsed once where it enters the service (the protocol layer, or the store when
//! a row is loaded); code that receives one never re-checks it.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::error::DomainError;

/// Longest identifier accepted, in bytes of UTF-8.
///
/// XEP-0060 §4.6.1 lets a NodeID be addressed as the resourcepart of a JID, and RFC 7622
/// §3.4 caps a resourcepart at 1023 bytes; using the same bound for every identifier keeps
/// them addressable and bounds the size of store keys and of stanzas that echo them.
pub const MAX_ID_BYTES: usize = 1023;

/// Checks the rules shared by all identifiers; `what` names the identifier in errors.
fn validate(value: &str, what: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err(format!("{what} must not be empty"));
    }
    if value.len() > MAX_ID_BYTES {
        return Err(format!("{what} is longer than {MAX_ID_BYTES} bytes"));
    }
    // Control characters cannot be represented in XML 1.0 (most of C0) or are invisible
    // in logs and UIs (C1, DEL); refusing them avoids ids that cannot round-trip.
    if value.chars().any(char::is_control) {
        return Err(format!("{what} contains a control character"));
    }
    Ok(())
}

/// A fresh random identifier: 32 lowercase hex digits (a UUIDv4 without hyphens), the
/// shape XEP-0060's own examples use for generated ItemIDs.
fn fresh() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

macro_rules! validated_id {
    ($(#[$doc:meta])* $name:ident, $what:literal, $error:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Validates `value`: non-empty, at most [`MAX_ID_BYTES`] bytes, no control
            /// characters. Unicode normalisation is not required.
            pub fn parse(value: &str) -> Result<Self, DomainError> {
                validate(value, $what).map_err($error)?;
                Ok(Self(value.to_owned()))
            }

            /// A new random identifier, unique with overwhelming probability.
            pub fn generate() -> Self {
                Self(fresh())
            }

            /// The identifier as it appears on the wire and in the store.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl TryFrom<String> for $name {
            type Error = DomainError;

            fn try_from(value: String) -> Result<Self, Self::Error> {
                validate(&value, $what).map_err($error)?;
                Ok(Self(value))
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }
    };
}

validated_id!(
    /// The NodeID of a leaf node, unique within the service.
    NodeId,
    "node id",
    DomainError::BadRequest
);

validated_id!(
    /// An ItemID, unique within its node.
    ItemId,
    "item id",
    DomainError::BadRequest
);

validated_id!(
    /// A subscription identifier, unique per node and subscriber JID.
    ///
    /// A malformed SubID is by definition not a current one, hence `invalid-subid`.
    SubId,
    "subscription id",
    |_| DomainError::InvalidSubId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_node_id_is_accepted() {
        let id = NodeId::parse("princely_musings").unwrap();
        assert_eq!(id.as_str(), "princely_musings");
        assert_eq!(id.to_string(), "princely_musings");
    }

    #[test]
    fn namespace_and_unicode_node_ids_are_accepted() {
        assert!(NodeId::parse("urn:xmpp:microblog:0").is_ok());
        assert!(NodeId::parse("news announcements").is_ok());
        assert!(NodeId::parse("Café/ñandú").is_ok());
    }

    #[test]
    fn empty_ids_are_rejected() {
        assert!(matches!(NodeId::parse(""), Err(DomainError::BadRequest(_))));
        assert!(matches!(ItemId::parse(""), Err(DomainError::BadRequest(_))));
        assert_eq!(SubId::parse(""), Err(DomainError::InvalidSubId));
    }

    #[test]
    fn ids_up_to_the_limit_are_accepted_and_one_byte_more_is_not() {
        let at_limit = "a".repeat(MAX_ID_BYTES);
        assert!(NodeId::parse(&at_limit).is_ok());
        assert!(ItemId::parse(&at_limit).is_ok());
        let over = "a".repeat(MAX_ID_BYTES + 1);
        assert!(NodeId::parse(&over).is_err());
        assert!(ItemId::parse(&over).is_err());
        assert!(SubId::parse(&over).is_err());
    }

    #[test]
    fn limit_counts_bytes_not_characters() {
        // 512 two-byte characters are 1024 bytes.
        let wide = "é".repeat(512);
        assert!(NodeId::parse(&wide).is_err());
    }

    #[test]
    fn control_characters_are_rejected() {
        for bad in ["a\nb", "tab\there", "nul\0", "del\u{7f}", "c1\u{85}"] {
            assert!(NodeId::parse(bad).is_err(), "{bad:?}");
            assert!(ItemId::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn generated_ids_are_valid_and_distinct() {
        let a = ItemId::generate();
        let b = ItemId::generate();
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), 32);
        assert!(ItemId::parse(a.as_str()).is_ok());
        assert!(SubId::parse(SubId::generate().as_str()).is_ok());
        assert!(NodeId::parse(NodeId::generate().as_str()).is_ok());
    }

    #[test]
    fn serde_round_trips_and_validates_on_load() {
        let id = NodeId::parse("blog").unwrap();
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, "\"blog\"");
        assert_eq!(serde_json::from_str::<NodeId>(&json).unwrap(), id);
        assert!(serde_json::from_str::<NodeId>("\"\"").is_err());
    }
}
