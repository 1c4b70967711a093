//! What the store hands back and takes in: plain records of nodes, items, subscriptions
//! and affiliations, already parsed into domain types (a row that does not parse is a
//! [`super::StoreError::Corrupt`], never a panic).

use chrono::{DateTime, Utc};
use xmpp_parsers::jid::{BareJid, Jid};

use crate::domain::{
    Affiliation, ItemId, NodeConfig, NodeId, SubId, SubscribeOptions, SubscriptionState,
};

/// A live node.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeRecord {
    /// Internal key; stable for the node's lifetime, never shown to users.
    pub pk: i64,
    pub name: NodeId,
    pub config: NodeConfig,
    pub creator: Option<BareJid>,
    pub created_at: DateTime<Utc>,
}

/// A stored item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemRecord {
    pub id: ItemId,
    /// Full JID of the publisher, as it sent the publish.
    pub publisher: String,
    /// The payload exactly as published (serialised XML); `None` for items published
    /// without one.
    pub payload: Option<String>,
    pub published_at: DateTime<Utc>,
}

/// One subscription of one JID to one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionRecord {
    /// Internal key: also the subscription's place in the fan-out order.
    pub pk: i64,
    pub node: NodeId,
    /// The subscribed JID, bare or full, as the subscriber asked.
    pub jid: Jid,
    pub subid: SubId,
    pub state: SubscriptionState,
    pub options: SubscribeOptions,
}

/// A node and what one requester is to it: everything a permission check needs, read
/// in one go.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeAccess {
    pub node: NodeRecord,
    /// The requester's stored affiliation (`None` when there is no row).
    pub affiliation: Affiliation,
    /// Every subscription of the requester's bare JID (bare or any full JID) to the node.
    pub subscriptions: Vec<SubscriptionRecord>,
}

/// An item to store.
#[derive(Debug, Clone)]
pub struct NewItem {
    pub id: ItemId,
    pub publisher: String,
    pub payload: Option<String>,
}

/// One publish of a batch: an item and its notification job.
#[derive(Debug, Clone)]
pub struct BatchedPublish {
    pub node_pk: i64,
    pub item: NewItem,
    pub keep: u32,
    pub job: crate::store::jobs::NewJob,
}

pub use crate::domain::{AffiliationChange, ItemsQuery};

/// A page of items with what RSM needs to describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemsPage {
    pub items: Vec<ItemRecord>,
    /// How many items the node holds in all.
    pub count: u64,
    /// Position of the first item of the page in the whole list (0 = newest).
    pub first_index: Option<u64>,
    /// The `after`/`before` item of an RSM query does not exist (XEP-0059 §2.4:
    /// `item-not-found`).
    pub anchor_missing: bool,
}

impl ItemsPage {
    /// The answer to a page query whose anchor item does not exist.
    pub fn missing_anchor(count: u64) -> ItemsPage {
        ItemsPage {
            items: Vec::new(),
            count,
            first_index: None,
            anchor_missing: true,
        }
    }
}

/// What a store operation refused, when the refusal is a rule the store enforces
/// atomically (it alone can see concurrent changes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The node name is taken by a live node.
    NodeExists,
    /// The change would leave the node without an owner.
    LastOwner,
    /// The node disappeared in the meantime.
    NodeGone,
    /// The links the configuration asked for were refused; nothing changed.
    Links(super::LinkRefusal),
}
