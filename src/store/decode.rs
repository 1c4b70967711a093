//! Turning stored column values into records, for every backend. A value that does not
//! parse (a JID or id that was valid when written but is not now) is a backend error,
//! never a panic. The backends only read their columns and hand them here.

use chrono::{DateTime, Utc};
use xmpp_parsers::jid::{BareJid, Jid};

use crate::domain::{
    Affiliation, ItemId, NodeConfig, NodeId, SubId, SubscribeOptions, SubscriptionState,
};
use crate::store::{ItemRecord, NodeRecord, StoreError, SubscriptionRecord};

fn bad(what: &str, value: &str) -> StoreError {
    StoreError::Backend(format!("stored {what} `{value}` does not parse"))
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

/// A node from its columns.
pub fn node(
    pk: i64,
    name: &str,
    config: NodeConfig,
    creator: &str,
    created_at: DateTime<Utc>,
) -> Result<NodeRecord, StoreError> {
    Ok(NodeRecord {
        pk,
        name: node_id(name)?,
        config,
        creator: creator.parse().ok(),
        created_at,
    })
}

/// An item from its columns.
pub fn item(
    id: &str,
    publisher: String,
    payload: Option<String>,
    published_at: DateTime<Utc>,
) -> Result<ItemRecord, StoreError> {
    Ok(ItemRecord {
        id: item_id(id)?,
        publisher,
        payload,
        published_at,
    })
}

/// A subscription from its columns.
pub fn subscription(
    pk: i64,
    node: &str,
    jid_text: &str,
    subid: &str,
    state: &str,
    options: SubscribeOptions,
) -> Result<SubscriptionRecord, StoreError> {
    Ok(SubscriptionRecord {
        pk,
        node: node_id(node)?,
        jid: jid(jid_text)?,
        subid: sub_id(subid)?,
        state: subscription_state(state)?,
        options,
    })
}
