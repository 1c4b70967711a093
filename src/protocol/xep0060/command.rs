//! A pubsub request, read: what the requester asks for, in domain types. Parsing
//! ([`super::parse`]) turns a stanza into one of these; execution ([`super::execute`])
//! hands it to [`crate::pubsub::Pubsub`] and renders the outcome. Nothing here touches
//! the store, so the parser can be fuzzed alone.

use xmpp_parsers::data_forms::DataForm;
use xmpp_parsers::jid::Jid;

use crate::domain::{AffiliationChange, ItemsQuery};
use crate::domain::{ItemId, NodeId, SubId};
use crate::pubsub::items::Publication;
use crate::pubsub::owner::SubscriptionChange;

/// One XEP-0060 request.
#[derive(Debug, Clone)]
pub enum Command {
    // Entity and subscriber use cases (§5, §6).
    OwnSubscriptions {
        node: Option<NodeId>,
    },
    OwnAffiliations {
        node: Option<NodeId>,
    },
    Subscribe {
        node: NodeId,
        jid: Jid,
        options: Option<DataForm>,
    },
    Unsubscribe {
        node: NodeId,
        jid: Jid,
        subid: Option<SubId>,
    },
    GetOptions {
        node: NodeId,
        jid: Jid,
        subid: Option<SubId>,
    },
    SetOptions {
        node: NodeId,
        jid: Jid,
        subid: Option<SubId>,
        form: DataForm,
    },
    DefaultOptions {
        node: Option<NodeId>,
    },
    /// `paged`: the client sent an XEP-0059 `<set/>`.
    Items {
        node: NodeId,
        query: ItemsQuery,
        subid: Option<SubId>,
        paged: bool,
    },
    // Publisher use cases (§7).
    Publish {
        node: NodeId,
        item: Option<Publication>,
        options: Option<DataForm>,
    },
    Retract {
        node: NodeId,
        ids: Vec<ItemId>,
        notify: bool,
    },
    // Owner use cases (§8).
    Create {
        node: Option<NodeId>,
        form: Option<DataForm>,
    },
    GetConfig {
        node: NodeId,
    },
    Configure {
        node: NodeId,
        form: DataForm,
    },
    /// A cancelled configuration form: nothing changes, but the requester must own the node.
    CancelConfigure {
        node: NodeId,
    },
    DefaultConfig,
    Delete {
        node: NodeId,
        redirect: Option<String>,
    },
    Purge {
        node: NodeId,
    },
    /// XEP-0248 §6.4: `<collection node><associate node/></collection>`.
    Associate {
        collection: NodeId,
        child: NodeId,
    },
    /// XEP-0248 §6.5: `<collection node><dissociate node/></collection>`.
    Dissociate {
        collection: NodeId,
        child: NodeId,
    },
    NodeSubscriptions {
        node: NodeId,
    },
    ModifySubscriptions {
        node: NodeId,
        changes: Vec<SubscriptionChange>,
    },
    NodeAffiliations {
        node: NodeId,
    },
    ModifyAffiliations {
        node: NodeId,
        changes: Vec<AffiliationChange>,
    },
}
