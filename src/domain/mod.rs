//! The domain layer: the rules of XEP-0060 publish-subscribe, independent of transport and
//! storage.
//!
//! It owns:
//! - **who may do what**: the permission table over affiliations, subscription states and
//!   access/publish models (`access`), node-creation policy and service ceilings
//!   (`limits`);
//! - **node configuration**: typed configuration and subscription options, their defaults,
//!   and their XEP-0004 data-form representations (`node_config`, `node_config_form`,
//!   `node_metadata`, `subscription`);
//! - **validated identifiers** parsed once at the edge (`node_id`, `affiliation`);
//! - **the vocabulary of failure** ([`DomainError`]), which the protocol layer maps to
//!   stanza errors in one place.
//!
//! It must not touch I/O: no sockets, no database, no async, no clock except where a
//! caller passes a time in. Apart from XEP-0004 data forms (which are the configuration's
//! wire shape), it knows nothing of XML stanzas; building and parsing `<iq/>`,
//! `<pubsub/>` and `<error/>` is the protocol layer's job.

pub mod access;
pub mod affiliation;
pub mod archive;
pub mod collection;
pub mod error;
mod form_values;
pub mod limits;
pub mod node_config;
mod node_config_form;
pub mod node_id;
pub mod node_metadata;
pub mod requests;
pub mod roster;
pub mod subscription;

pub use access::{
    acts_for, check_configure, check_delete, check_manage_affiliations, check_manage_subscriptions,
    check_node_metadata_visibility, check_publish, check_purge, check_retract,
    check_retrieve_items, check_subscribe, AccessContext, AccessModel, ItemAuthor, PublishModel,
    SubscribeDecision,
};
pub use affiliation::Affiliation;
pub use collection::{LinkRequest, NodeType, SubscriptionDepth, SubscriptionType};
pub use error::{DomainError, NotAuthorizedReason, UnsupportedAccessReason};
pub use limits::{check_create, CreatePolicy, ServiceLimits};
pub use node_config::{
    ItemReply, MaxItems, NodeConfig, NotificationType, SendLastPublished, NODE_CONFIG_FORM_TYPE,
    PUBLISH_OPTIONS_FORM_TYPE,
};
pub use node_config_form::ConfigChange;
pub use node_id::{ItemId, NodeId, SubId, MAX_ID_BYTES};
pub use node_metadata::{NodeFacts, META_DATA_FORM_TYPE};
pub use requests::{AffiliationChange, ItemsQuery, MAX_RSM_INDEX};
pub use subscription::{
    ShowValue, SubscribeOptions, SubscriptionState, SUBSCRIBE_OPTIONS_FORM_TYPE,
};
