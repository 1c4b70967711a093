//! [`NodeConfig`]: a node's configuration (leaf or, XEP-0248, collection) (the `pubsub#node_config` FORM_TYPE,
//! XEP-0060 §8.2 and §16.4.4), its defaults, and its data-form representations.
//!
//! Parsing submitted forms lives in `node_config_form`; the disco#info metadata form in
//! `node_metadata`.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use xmpp_parsers::data_forms::{DataForm, DataFormType, Field};

use super::access::{AccessModel, PublishModel};
use super::collection::NodeType;
use super::error::DomainError;
use super::form_values::{bool_field, list_single_field, multi_field, text_field};
use super::limits::ServiceLimits;
use super::node_config_form::{self, ConfigChange};

/// FORM_TYPE of node configuration forms.
pub const NODE_CONFIG_FORM_TYPE: &str = "http://jabber.org/protocol/pubsub#node_config";

/// FORM_TYPE of publish-options forms (XEP-0060 §7.1.5).
pub const PUBLISH_OPTIONS_FORM_TYPE: &str = "http://jabber.org/protocol/pubsub#publish-options";

/// Default `pubsub#max_items`: generous for feeds while keeping a node's history a cheap
/// query; owners who want more ask for it (up to the service ceiling).
pub const DEFAULT_MAX_ITEMS: u32 = 1000;

/// Default `pubsub#max_payload_size`, in bytes: room for Atom entries and small avatars;
/// owners may raise it up to the service ceiling.
pub const DEFAULT_MAX_PAYLOAD_SIZE: u32 = 64 * 1024;

/// How many items a node keeps (`pubsub#max_items`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MaxItems {
    /// At most this many items.
    Limited(u32),
    /// `max`: no limit other than the service ceiling (XEP-0060 1.17.0).
    Max,
}

impl MaxItems {
    /// The number of items actually kept under `limits`.
    pub fn effective(self, limits: &ServiceLimits) -> u32 {
        match self {
            MaxItems::Limited(n) => n.min(limits.max_items),
            MaxItems::Max => limits.max_items,
        }
    }
}

impl fmt::Display for MaxItems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MaxItems::Limited(n) => write!(f, "{n}"),
            MaxItems::Max => f.write_str("max"),
        }
    }
}

/// Stored as a JSON number, or the string `"max"`.
impl Serialize for MaxItems {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            MaxItems::Limited(n) => serializer.serialize_u32(*n),
            MaxItems::Max => serializer.serialize_str("max"),
        }
    }
}

impl<'de> Deserialize<'de> for MaxItems {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            Number(u32),
            Text(String),
        }
        match Repr::deserialize(deserializer)? {
            Repr::Number(n) => Ok(MaxItems::Limited(n)),
            Repr::Text(t) if t == "max" => Ok(MaxItems::Max),
            Repr::Text(t) => Err(serde::de::Error::custom(format!(
                "max_items must be a number or \"max\", got {t:?}"
            ))),
        }
    }
}

/// When to send the last published item (`pubsub#send_last_published_item`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SendLastPublished {
    /// Never.
    Never,
    /// When a new subscription is processed.
    OnSub,
    /// On subscription and whenever a subscriber comes online.
    OnSubAndPresence,
}

/// Message type of notifications (`pubsub#notification_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NotificationType {
    /// `type='normal'`: may be stored offline by the subscriber's server.
    Normal,
    /// `type='headline'`: normally not stored offline.
    Headline,
}

/// Where replies to items should go (`pubsub#itemreply`); in practice, whether items
/// carry a `publisher` attribute (XEP-0060 §12.13).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ItemReply {
    /// To the node owner(s).
    Owner,
    /// To the item's publisher; items carry a `publisher` attribute.
    Publisher,
    /// No reply address (added in XEP-0060 1.25.0).
    None,
}

macro_rules! form_values {
    ($ty:ident { $($variant:ident => $value:literal),+ $(,)? }) => {
        impl $ty {
            /// Every value, in form order.
            pub const ALL: &'static [$ty] = &[$($ty::$variant),+];

            /// The form value.
            pub fn as_str(self) -> &'static str {
                match self { $($ty::$variant => $value),+ }
            }

            /// Parses a form value.
            pub fn parse(value: &str) -> Result<Self, DomainError> {
                Self::ALL.iter().copied().find(|v| v.as_str() == value).ok_or_else(|| {
                    DomainError::NotAcceptable(format!(
                        concat!("unknown ", stringify!($ty), " value '{}'"),
                        value
                    ))
                })
            }
        }
    };
}

form_values!(SendLastPublished {
    Never => "never",
    OnSub => "on_sub",
    OnSubAndPresence => "on_sub_and_presence",
});
form_values!(NotificationType { Normal => "normal", Headline => "headline" });
form_values!(ItemReply { Owner => "owner", Publisher => "publisher", None => "none" });

/// The configuration of a leaf node.
///
/// Stored as JSONB; `#[serde(default)]` lets rows written before a field existed load
/// with that field's default. Each default is documented on its field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NodeConfig {
    /// `pubsub#title`. Default: none.
    pub title: Option<String>,
    /// `pubsub#description`. Default: none.
    pub description: Option<String>,
    /// `pubsub#type`: the payload namespace (semantic type) of items. Default: none.
    pub payload_type: Option<String>,
    /// `pubsub#max_items`. Default: [`DEFAULT_MAX_ITEMS`].
    pub max_items: MaxItems,
    /// `pubsub#persist_items`. Default: true (a generic service stores items).
    pub persist_items: bool,
    /// `pubsub#deliver_payloads`. Default: true (notifications carry the item).
    pub deliver_payloads: bool,
    /// `pubsub#deliver_notifications`. Default: true.
    pub deliver_notifications: bool,
    /// `pubsub#notify_config`. Default: false, as in XEP-0060's example forms.
    pub notify_config: bool,
    /// `pubsub#notify_delete`. Default: true: §8.4.2 says subscribers MUST be told of a
    /// deletion, so the default should not contradict it.
    pub notify_delete: bool,
    /// `pubsub#notify_retract`. Default: true, so subscribers' caches drop retracted items.
    pub notify_retract: bool,
    /// `pubsub#notify_sub`. Default: false.
    pub notify_sub: bool,
    /// `pubsub#purge_offline`. Default: false.
    pub purge_offline: bool,
    /// `pubsub#send_last_published_item`. Default: never. The service advertises the
    /// `last-published` feature (it sends the last item on subscription and presence
    /// wherever a node asks for it); XEP-0060 suggests `on_sub_and_presence` as the
    /// default of such a service, which an operator sets in `[service.default_config]`.
    /// Keeping `never` here is a choice still to be reviewed (docs/xep0060.md).
    pub send_last_published_item: SendLastPublished,
    /// `pubsub#presence_based_delivery`. Default: false.
    pub presence_based_delivery: bool,
    /// `pubsub#notification_type`. Default: headline, which servers do not store
    /// offline (§12.6), as in XEP-0060's examples.
    pub notification_type: NotificationType,
    /// `pubsub#access_model`. Default: open, the SHOULD for generic services (§4.5).
    pub access_model: AccessModel,
    /// `pubsub#publish_model`. Default: publishers.
    pub publish_model: PublishModel,
    /// `pubsub#itemreply`. Default: none, so publishers' JIDs are not revealed to
    /// subscribers unless the owner opts in.
    pub itemreply: ItemReply,
    /// `pubsub#max_payload_size`, in bytes. Default: [`DEFAULT_MAX_PAYLOAD_SIZE`].
    pub max_payload_size: u32,
    /// `pubsub#item_expire`, in seconds; `None` (form value `max`) means items do not
    /// expire. Default: none.
    pub item_expire: Option<u64>,
    /// `pubsub#roster_groups_allowed`: the owners' roster groups the `roster` access
    /// model admits. Default: none (a `roster` node then admits affiliates only).
    pub roster_groups_allowed: Vec<String>,
    /// `pubsub#node_type` (XEP-0248). Default: leaf.
    pub node_type: NodeType,
    /// `pubsub#children_max` (XEP-0248), for collections; `None` means no limit.
    /// Default: none.
    pub children_max: Option<u32>,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            title: None,
            description: None,
            payload_type: None,
            max_items: MaxItems::Limited(DEFAULT_MAX_ITEMS),
            persist_items: true,
            deliver_payloads: true,
            deliver_notifications: true,
            notify_config: false,
            notify_delete: true,
            notify_retract: true,
            notify_sub: false,
            purge_offline: false,
            send_last_published_item: SendLastPublished::Never,
            presence_based_delivery: false,
            notification_type: NotificationType::Headline,
            access_model: AccessModel::Open,
            publish_model: PublishModel::Publishers,
            itemreply: ItemReply::None,
            max_payload_size: DEFAULT_MAX_PAYLOAD_SIZE,
            item_expire: None,
            roster_groups_allowed: Vec::new(),
            node_type: NodeType::Leaf,
            children_max: None,
        }
    }
}

/// `(value, label)` options for a list-single field of a form-values enum.
fn options<T: Copy>(
    all: &[T],
    value: fn(T) -> &'static str,
    label: fn(T) -> &'static str,
) -> Vec<(&'static str, &'static str)> {
    all.iter().map(|v| (value(*v), label(*v))).collect()
}

impl NodeConfig {
    /// The configuration form (`type='form'`) an owner fills in (§8.2.1) or receives as
    /// the default configuration (§8.3): current values, labels, and the choices offered.
    pub fn to_form(&self) -> DataForm {
        DataForm::new(DataFormType::Form, NODE_CONFIG_FORM_TYPE, self.fields())
    }

    /// The configuration as a `type='result'` form, e.g. for a `notify_config` event
    /// notification with payload (§8.2.5.3).
    pub fn to_result_form(&self) -> DataForm {
        let mut fields = self.fields();
        for field in &mut fields {
            field.options.clear();
        }
        DataForm::new(DataFormType::Result_, NODE_CONFIG_FORM_TYPE, fields)
    }

    fn fields(&self) -> Vec<Field> {
        let mut fields = vec![
            text_field("pubsub#title", "A friendly name for the node", self.title.as_deref()),
            text_field(
                "pubsub#description",
                "A description of the node",
                self.description.as_deref(),
            ),
            bool_field(
                "pubsub#deliver_notifications",
                "Whether to deliver event notifications",
                self.deliver_notifications,
            ),
            bool_field(
                "pubsub#deliver_payloads",
                "Whether to deliver payloads with event notifications",
                self.deliver_payloads,
            ),
            bool_field(
                "pubsub#notify_config",
                "Notify subscribers when the node configuration changes",
                self.notify_config,
            ),
            bool_field(
                "pubsub#notify_delete",
                "Notify subscribers when the node is deleted",
                self.notify_delete,
            ),
            bool_field(
                "pubsub#notify_retract",
                "Notify subscribers when items are removed from the node",
                self.notify_retract,
            ),
            bool_field(
                "pubsub#notify_sub",
                "Notify owners about new subscribers and unsubscribes",
                self.notify_sub,
            ),
            bool_field("pubsub#persist_items", "Persist items to storage", self.persist_items),
            text_field(
                "pubsub#max_items",
                "Max # of items to persist. `max` for no specific limit other than a server imposed maximum.",
                Some(&self.max_items.to_string()),
            ),
            text_field(
                "pubsub#item_expire",
                "Time after which to automatically purge items. `max` for no specific limit other than a server imposed maximum.",
                Some(&self.item_expire.map_or_else(|| "max".to_owned(), |s| s.to_string())),
            ),
            list_single_field(
                "pubsub#access_model",
                "Specify the subscriber model",
                &options(&AccessModel::ALL, AccessModel::as_str, access_model_label),
                self.access_model.as_str(),
            ),
            multi_field(
                "pubsub#roster_groups_allowed",
                xmpp_parsers::data_forms::FieldType::ListMulti,
                "Roster groups allowed to subscribe",
                self.roster_groups_allowed.clone(),
            ),
            list_single_field(
                "pubsub#publish_model",
                "Specify the publisher model",
                &options(&PublishModel::ALL, PublishModel::as_str, publish_model_label),
                self.publish_model.as_str(),
            ),
            bool_field(
                "pubsub#purge_offline",
                "Purge all items when the relevant publisher goes offline?",
                self.purge_offline,
            ),
            text_field(
                "pubsub#max_payload_size",
                "Max Payload size in bytes",
                Some(&self.max_payload_size.to_string()),
            ),
            list_single_field(
                "pubsub#send_last_published_item",
                "When to send the last published item",
                &options(SendLastPublished::ALL, SendLastPublished::as_str, send_last_label),
                self.send_last_published_item.as_str(),
            ),
            bool_field(
                "pubsub#presence_based_delivery",
                "Deliver event notifications only to available users",
                self.presence_based_delivery,
            ),
            list_single_field(
                "pubsub#notification_type",
                "Specify the delivery style for event notifications",
                &options(NotificationType::ALL, NotificationType::as_str, notification_type_label),
                self.notification_type.as_str(),
            ),
            list_single_field(
                "pubsub#itemreply",
                "Whether owners or publisher should receive replies to items",
                &options(ItemReply::ALL, ItemReply::as_str, itemreply_label),
                self.itemreply.as_str(),
            ),
            text_field(
                "pubsub#type",
                "Specify the semantic type of payload data to be provided at this node.",
                self.payload_type.as_deref(),
            ),
            list_single_field(
                "pubsub#node_type",
                "Whether the node is a leaf (default) or a collection",
                &[
                    ("leaf", "The node contains items"),
                    ("collection", "The node contains other nodes"),
                ],
                self.node_type.as_str(),
            ),
        ];
        // XEP-0248 §6.2: options specific to collections should not be offered on
        // the forms of leaves.
        if self.node_type == NodeType::Collection {
            fields.push(text_field(
                "pubsub#children_max",
                "The maximum number of children for this collection. `max` for no limit.",
                Some(
                    &self
                        .children_max
                        .map_or_else(|| "max".to_owned(), |n| n.to_string()),
                ),
            ));
        }
        fields
    }

    /// Applies a submitted configuration form (§8.2.4), validating every field against
    /// `limits`; on error nothing changes.
    ///
    /// A `type='cancel'` form is the caller's business (it means "keep the configuration").
    /// Per XEP-0004 §3.3, fields this service does not know are ignored and reported in
    /// [`ConfigChange::ignored`]. Malformed values and values above the service ceilings
    /// are `not-acceptable`; a field given twice or the wrong FORM_TYPE is `bad-request`;
    /// `roster` needs the roster privilege: whether the `presence` and `roster` models
    /// can be served is the caller's question. The link fields (`pubsub#collection`,
    /// `pubsub#children`) are the caller's ([`LinkRequest`](super::LinkRequest)).
    pub fn apply_form(
        &mut self,
        form: &DataForm,
        limits: &ServiceLimits,
    ) -> Result<ConfigChange, DomainError> {
        node_config_form::apply(self, form, NODE_CONFIG_FORM_TYPE, limits)
    }

    /// Checks the preconditions of a publish-options form (§7.1.5) against this existing
    /// node: every field must match the configuration of the same name, else `conflict`
    /// with `precondition-not-met`. A field this service does not know cannot be checked
    /// and rejects the publication with `bad-request`.
    pub fn check_publish_options(
        &self,
        form: &DataForm,
        limits: &ServiceLimits,
    ) -> Result<(), DomainError> {
        node_config_form::check_preconditions(self, form, limits)
    }

    /// The configuration of a node auto-created by a publish with options (§7.1.5 rule 3):
    /// the defaults, except what the preconditions specify.
    pub fn from_publish_options(
        form: &DataForm,
        limits: &ServiceLimits,
    ) -> Result<NodeConfig, DomainError> {
        NodeConfig::default().with_publish_options(form, limits)
    }

    /// This configuration (the service's defaults) with the preconditions of a
    /// publish-options form applied, for a node auto-created by that publish.
    pub fn with_publish_options(
        mut self,
        form: &DataForm,
        limits: &ServiceLimits,
    ) -> Result<NodeConfig, DomainError> {
        node_config_form::apply_publish_options(&mut self, form, limits)?;
        Ok(self)
    }
}

fn access_model_label(m: AccessModel) -> &'static str {
    match m {
        AccessModel::Open => "Anyone may subscribe and retrieve items",
        AccessModel::Presence => {
            "Anyone with a presence subscription of both or from may subscribe and retrieve items"
        }
        AccessModel::Roster => {
            "Anyone in the specified roster group(s) may subscribe and retrieve items"
        }
        AccessModel::Authorize => {
            "Subscription requests must be approved and only subscribers may retrieve items"
        }
        AccessModel::Whitelist => "Only those on a whitelist may subscribe and retrieve items",
    }
}

fn publish_model_label(m: PublishModel) -> &'static str {
    match m {
        PublishModel::Publishers => "Only publishers may publish",
        PublishModel::Subscribers => "Subscribers may publish",
        PublishModel::Open => "Anyone may publish",
    }
}

fn send_last_label(s: SendLastPublished) -> &'static str {
    match s {
        SendLastPublished::Never => "Never",
        SendLastPublished::OnSub => "When a new subscription is processed",
        SendLastPublished::OnSubAndPresence => {
            "When a new subscription is processed and whenever a subscriber comes online"
        }
    }
}

fn notification_type_label(t: NotificationType) -> &'static str {
    match t {
        NotificationType::Normal => "Messages of type normal",
        NotificationType::Headline => "Messages of type headline",
    }
}

fn itemreply_label(r: ItemReply) -> &'static str {
    match r {
        ItemReply::Owner => "Statically specify a replyto of the node owner(s)",
        ItemReply::Publisher => "Dynamically specify a replyto of the item publisher",
        ItemReply::None => "No replyto; items carry no publisher",
    }
}

#[cfg(test)]
mod tests;
