//! Turning stored values into domain types, for every backend (the records are built in
//! [`super::sql::rows`]). A value that does not parse (a JID or id that was valid when
//! written but is not now) is a [`StoreError::Corrupt`], never a panic.

use xmpp_parsers::jid::{BareJid, Jid};

use crate::domain::{
    Affiliation, ItemId, NodeConfig, NodeId, ShowValue, SubId, SubscribeOptions, SubscriptionState,
};
use crate::store::jobs::JobKind;
use crate::store::StoreError;

fn bad(what: &str, value: &str) -> StoreError {
    StoreError::Corrupt(format!("stored {what} `{value}` does not parse"))
}

pub fn node_id(s: &str) -> Result<NodeId, StoreError> {
    NodeId::parse(s).map_err(|_| bad("node id", s))
}

pub fn item_id(s: &str) -> Result<ItemId, StoreError> {
    ItemId::parse(s).map_err(|_| bad("item id", s))
}

pub fn jid(s: &str) -> Result<Jid, StoreError> {
    s.parse().map_err(|_| bad("JID", s))
}

pub fn bare_jid(s: &str) -> Result<BareJid, StoreError> {
    s.parse().map_err(|_| bad("bare JID", s))
}

pub fn affiliation(s: &str) -> Result<Affiliation, StoreError> {
    Affiliation::parse(s).map_err(|_| bad("affiliation", s))
}

pub fn sub_id(s: &str) -> Result<SubId, StoreError> {
    SubId::parse(s).map_err(|_| bad("subid", s))
}

pub fn subscription_state(s: &str) -> Result<SubscriptionState, StoreError> {
    SubscriptionState::parse(s).map_err(|_| bad("subscription state", s))
}

pub fn job_kind(s: &str) -> Result<JobKind, StoreError> {
    JobKind::parse(s).ok_or_else(|| bad("job kind", s))
}

/// A stored `<show/>`; anything unknown counts as online.
pub fn show(s: &str) -> ShowValue {
    ShowValue::parse(s).unwrap_or(ShowValue::Online)
}

/// A node's configuration as the fan-out engine reads it: one unreadable row must not
/// stop the delivery of a node's queue, so it falls back to the defaults, logged.
/// (Requests read configurations with [`rows::node`](super::sql::rows::node), where it
/// is an error.)
pub fn config_or_default(raw: &str, node_pk: i64) -> NodeConfig {
    serde_json::from_str(raw).unwrap_or_else(|e| {
        tracing::warn!(node_pk, error = %e, "unreadable node configuration; using defaults");
        NodeConfig::default()
    })
}

/// A subscription's options as the fan-out engine reads them, like
/// [`config_or_default`].
pub fn options_or_default(raw: &str, subid: &str) -> SubscribeOptions {
    serde_json::from_str(raw).unwrap_or_else(|e| {
        tracing::warn!(subid, error = %e, "unreadable subscription options; using defaults");
        SubscribeOptions::default()
    })
}
