//! What a request asks of the service, as values: which items a retrieval wants, and
//! an affiliation change. Built by the front ends (protocol, gateway), carried through
//! `pubsub` to the store, owned by neither.

use xmpp_parsers::jid::BareJid;

use super::{Affiliation, ItemId};

/// How deep in a node's items, counted from the newest, an XEP-0059 index reaches: the
/// `<index/>` a retrieval may jump to, and the `index` of a page's first item that an
/// answer counts. Reaching it walks this many index entries, a few milliseconds; a
/// node of ten million items is not walked. Deeper, a jump is refused
/// (`feature-not-implemented`, XEP-0059 §2.6) and an answer gives no index (§2.2 lets
/// a responder omit what is exceptionally costly): pages by item id reach everywhere.
pub const MAX_RSM_INDEX: u32 = 10_000;

/// Which items a retrieval wants, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemsQuery {
    /// The newest `max` items (all, up to the node's `max_items`, when `None`).
    Latest { max: Option<u32> },
    /// These items, in the order given; missing ones are left out.
    Ids(Vec<ItemId>),
    /// An XEP-0059 page: `max` items newest first, older than `after` or newer than
    /// `before` (an empty `before` is the last page, the oldest items).
    Page {
        max: u32,
        after: Option<String>,
        before: Option<String>,
        index: Option<u32>,
    },
}

/// A change of one entity's affiliation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AffiliationChange {
    pub jid: BareJid,
    pub affiliation: Affiliation,
}
