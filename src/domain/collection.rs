//! Collection nodes (XEP-0248): the node type, the subscription type and depth of a
//! collection subscription, the rules of linking nodes, and which of a collection's
//! subscribers may read a leaf's items.
//!
//! The links themselves are data in the store (`collection_links`); this module only
//! decides whether a link may exist. It must not touch I/O.

use serde::{Deserialize, Serialize};
use xmpp_parsers::data_forms::{DataForm, Field, FieldType};

use super::access::{check_retrieve_items, AccessContext, AccessModel, PublishModel};
use super::affiliation::Affiliation;
use super::error::DomainError;
use super::form_values::{submitted_fields, var};
use super::node_config::NodeConfig;
use super::node_id::NodeId;
use super::subscription::SubscriptionState;

/// `pubsub#node_type`: whether a node holds items or other nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeType {
    /// Holds published items (XEP-0248 §3: "no other nodes"). The default (§6.1).
    #[default]
    Leaf,
    /// Holds other nodes and no items.
    Collection,
}

impl NodeType {
    /// The form value.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeType::Leaf => "leaf",
            NodeType::Collection => "collection",
        }
    }

    /// Parses a form value; an empty value is the default, `leaf`.
    pub fn parse(value: &str) -> Result<Self, DomainError> {
        match value {
            "" | "leaf" => Ok(NodeType::Leaf),
            "collection" => Ok(NodeType::Collection),
            other => Err(DomainError::NotAcceptable(format!(
                "unknown node type '{other}'"
            ))),
        }
    }
}

/// `pubsub#subscription_type` of a subscription. Only `items` is offered: XEP-0248's
/// `nodes` (notifications of children added, removed or reconfigured) is refused, see
/// [`SubscriptionType::parse`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SubscriptionType {
    /// Items published, retracted and purged in the leaves below.
    #[default]
    Items,
}

impl SubscriptionType {
    /// The form value.
    pub fn as_str(self) -> &'static str {
        "items"
    }

    /// Parses a form value. XEP-0248 §5.1 lets a service refuse a combination of
    /// options with `not-allowed`; `nodes` and `all` are refused so: this service sends
    /// no notifications about nodes joining or leaving a collection.
    pub fn parse(value: &str) -> Result<Self, DomainError> {
        match value {
            "" | "items" => Ok(SubscriptionType::Items),
            "nodes" | "all" => Err(DomainError::NotAllowed(format!(
                "subscription type '{value}': only 'items' is offered"
            ))),
            other => Err(DomainError::InvalidOptions(format!(
                "unknown subscription type '{other}'"
            ))),
        }
    }
}

/// `pubsub#subscription_depth`: how far below the collection a leaf may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SubscriptionDepth {
    /// Direct children only (XEP-0248's default).
    #[default]
    #[serde(rename = "1")]
    One,
    /// Any node below.
    All,
}

impl SubscriptionDepth {
    /// The form value.
    pub fn as_str(self) -> &'static str {
        match self {
            SubscriptionDepth::One => "1",
            SubscriptionDepth::All => "all",
        }
    }

    /// Parses a form value. Depths other than 1 and `all` are refused with
    /// `not-allowed` (XEP-0248 §5.1's refusal of options the service does not offer).
    pub fn parse(value: &str) -> Result<Self, DomainError> {
        match value {
            "" | "1" => Ok(SubscriptionDepth::One),
            "all" => Ok(SubscriptionDepth::All),
            other if other.parse::<u32>().is_ok() => Err(DomainError::NotAllowed(format!(
                "subscription depth '{other}': only 1 and 'all' are offered"
            ))),
            other => Err(DomainError::InvalidOptions(format!(
                "subscription depth must be a number or 'all', got '{other}'"
            ))),
        }
    }
}

/// Most links a graph walk follows upwards from a leaf. Cycles cannot be stored (every
/// change checks), so this only bounds the work of a pathological deep chain.
pub const MAX_DEPTH: u32 = 32;

/// The link changes a configuration form asks for: `pubsub#collection` (the node's
/// parents) and `pubsub#children` (a collection's children), each a whole new set when
/// present.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkRequest {
    /// The new parents, if the form has `pubsub#collection`.
    pub parents: Option<Vec<NodeId>>,
    /// The new children, if the form has `pubsub#children`.
    pub children: Option<Vec<NodeId>>,
}

impl LinkRequest {
    /// Reads the link fields of a submitted `pubsub#node_config` form. Empty values
    /// stand for the root node (XEP-0248 §6.2), which is no stored link here.
    pub fn from_form(form: &DataForm, form_type: &str) -> Result<Self, DomainError> {
        let mut request = LinkRequest::default();
        for field in submitted_fields(form, form_type)? {
            let slot = match var(field) {
                "pubsub#collection" => &mut request.parents,
                "pubsub#children" => &mut request.children,
                _ => continue,
            };
            let mut names = Vec::new();
            for value in field.values.iter().filter(|v| !v.is_empty()) {
                let name = NodeId::parse(value)
                    .map_err(|_| DomainError::NotAcceptable(format!("'{value}' is no node")))?;
                if !names.contains(&name) {
                    names.push(name);
                }
            }
            *slot = Some(names);
        }
        Ok(request)
    }

    /// Whether the form asks for no link change.
    pub fn is_empty(&self) -> bool {
        self.parents.is_none() && self.children.is_none()
    }
}

/// May `parent` hold children? Only collections may (XEP-0248 §6.2.3.1: `not-allowed`
/// with `invalid-options`).
pub fn check_parent(parent: &NodeConfig) -> Result<(), DomainError> {
    match parent.node_type {
        NodeType::Collection => Ok(()),
        NodeType::Leaf => Err(DomainError::InvalidLink(
            "a leaf node cannot have children".into(),
        )),
    }
}

/// May a node of this configuration take items? A collection holds none (XEP-0248
/// §3.1): publishing is `feature-not-implemented` with `unsupported` `publish`
/// (XEP-0060 §7.1.3.6), retrieving with `unsupported` `retrieve-items` (XEP-0248 §5.2
/// lets a service refuse it).
pub fn check_holds_items(config: &NodeConfig, feature: &'static str) -> Result<(), DomainError> {
    match config.node_type {
        NodeType::Leaf => Ok(()),
        NodeType::Collection => Err(DomainError::UnsupportedFeature(feature)),
    }
}

/// A node type change from `before` to `after` (XEP-0248 §6.2.3.4: a collection never
/// becomes a leaf).
pub fn check_type_change(before: NodeType, after: NodeType) -> Result<(), DomainError> {
    if before == NodeType::Collection && after == NodeType::Leaf {
        return Err(DomainError::InvalidLink(
            "a collection cannot become a leaf".into(),
        ));
    }
    Ok(())
}

/// Whether the holder of `affiliation` with a leaf under `model` may read the leaf's
/// items without a subscription to the leaf or knowledge of their presence: the
/// permission table asked for one affiliation (`none` for no affiliation). A
/// collection subscriber receives a leaf's items only if this holds, so the walk needs
/// no per-subscriber question beyond the affiliation. This fails closed: a collection
/// subscriber who could read an `authorize`, `presence` or `roster` leaf only through a
/// subscription to it or through an owner's roster gets that leaf's items through the
/// leaf subscription, not through the collection (the walk reads no rosters).
pub fn reads_through_collection(model: AccessModel, affiliation: Affiliation) -> bool {
    check_retrieve_items(&AccessContext {
        affiliation,
        subscription: SubscriptionState::None,
        presence_subscribed: None,
        in_roster_group: None,
        access_model: model,
        publish_model: PublishModel::Publishers,
    })
    .is_ok()
}

/// The affiliations (`none` included) whose holders read a leaf under `model` through
/// a collection ([`reads_through_collection`]), as stored values: what the store may
/// pre-select collection subscribers by.
pub fn collection_readers(model: AccessModel) -> Vec<&'static str> {
    Affiliation::ALL
        .into_iter()
        .filter(|affiliation| reads_through_collection(model, *affiliation))
        .map(Affiliation::as_str)
        .collect()
}

/// The link fields of the configuration form of a node of type `node_type`, with the
/// current links: text-multi `pubsub#collection` (its parents: any node may have them)
/// and, for a collection only, `pubsub#children` (XEP-0248 §6.2). A leaf cannot have
/// children (§6.2.3.1), so its form does not offer them; a form that turns a leaf into
/// a collection may still name its first children.
pub fn link_fields(node_type: NodeType, parents: &[NodeId], children: &[NodeId]) -> Vec<Field> {
    let multi = |var: &str, label: &str, names: &[NodeId]| {
        let mut field = Field::new(var, FieldType::TextMulti);
        field.label = Some(label.to_owned());
        field.values = names.iter().map(|n| n.as_str().to_owned()).collect();
        field
    };
    let mut fields = vec![multi(
        "pubsub#collection",
        "The collections of which this node is a child",
        parents,
    )];
    if node_type == NodeType::Collection {
        fields.push(multi(
            "pubsub#children",
            "The nodes of which this node is a parent",
            children,
        ));
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_collections_take_children() {
        let mut config = NodeConfig::default();
        assert!(matches!(
            check_parent(&config),
            Err(DomainError::InvalidLink(_))
        ));
        config.node_type = NodeType::Collection;
        assert_eq!(check_parent(&config), Ok(()));
    }

    #[test]
    fn only_a_collections_form_offers_children() {
        let name = |n: &str| NodeId::parse(n).expect("node id");
        let vars = |node_type| -> Vec<String> {
            link_fields(node_type, &[name("p")], &[])
                .into_iter()
                .map(|f| f.var.unwrap_or_default())
                .collect()
        };
        assert_eq!(vars(NodeType::Leaf), ["pubsub#collection"]);
        assert_eq!(
            vars(NodeType::Collection),
            ["pubsub#collection", "pubsub#children"]
        );
    }

    #[test]
    fn a_collection_never_becomes_a_leaf() {
        use NodeType::*;
        assert!(check_type_change(Collection, Leaf).is_err());
        for (a, b) in [(Leaf, Leaf), (Leaf, Collection), (Collection, Collection)] {
            assert_eq!(check_type_change(a, b), Ok(()));
        }
    }

    #[test]
    fn collection_readers_follow_the_permission_table() {
        assert_eq!(
            collection_readers(AccessModel::Open),
            vec!["owner", "publisher", "member", "none"]
        );
        for model in [
            AccessModel::Whitelist,
            AccessModel::Authorize,
            AccessModel::Presence,
            AccessModel::Roster,
        ] {
            assert_eq!(
                collection_readers(model),
                vec!["owner", "publisher", "member"],
                "{model}"
            );
        }
        for affiliation in [Affiliation::Outcast, Affiliation::PublishOnly] {
            assert!(
                !reads_through_collection(AccessModel::Open, affiliation),
                "{affiliation:?}"
            );
        }
    }

    #[test]
    fn subscription_options_offer_items_at_depth_one_or_all() {
        assert_eq!(
            SubscriptionType::parse("items"),
            Ok(SubscriptionType::Items)
        );
        assert!(matches!(
            SubscriptionType::parse("nodes"),
            Err(DomainError::NotAllowed(_))
        ));
        assert!(matches!(
            SubscriptionType::parse("x"),
            Err(DomainError::InvalidOptions(_))
        ));
        assert_eq!(SubscriptionDepth::parse("1"), Ok(SubscriptionDepth::One));
        assert_eq!(SubscriptionDepth::parse("all"), Ok(SubscriptionDepth::All));
        assert!(matches!(
            SubscriptionDepth::parse("2"),
            Err(DomainError::NotAllowed(_))
        ));
        assert!(matches!(
            SubscriptionDepth::parse("deep"),
            Err(DomainError::InvalidOptions(_))
        ));
    }

    #[test]
    fn depth_is_stored_as_xep_values() {
        assert_eq!(
            serde_json::to_string(&SubscriptionDepth::One).unwrap(),
            "\"1\""
        );
        assert_eq!(
            serde_json::to_string(&SubscriptionDepth::All).unwrap(),
            "\"all\""
        );
    }
}
