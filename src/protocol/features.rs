//! The features pubsubd advertises in disco#info. A feature is listed here only when it
//! works and has an acceptance test: clients decide what to try from this list.

use xmpp_parsers::ns;

/// Protocol namespaces the service answers.
pub const PROTOCOLS: &[&str] = &[
    ns::DISCO_INFO,
    ns::DISCO_ITEMS,
    ns::PING,
    ns::VERSION,
    ns::PUBSUB,
    ns::RSM,
    // Node archives (XEP-0313 on nodes, XEP-0442): xep0313_archive::*.
    ARCHIVE,
    ARCHIVE_EXTENDED,
];

/// XEP-0313 archives, here on every node that keeps items.
pub const ARCHIVE: &str = ns::MAM;
/// XEP-0313's `#extended`: `before-id`, `after-id`, `ids`, flipped pages, metadata.
pub const ARCHIVE_EXTENDED: &str = "urn:xmpp:mam:2#extended";

/// XEP-0060 features (`http://jabber.org/protocol/pubsub#<name>`) that are implemented,
/// each with the acceptance test (in `tests/`) that proves it.
pub const PUBSUB_FEATURES: &[&str] = &[
    "access-authorize", // authorize_node_makes_subscriptions_pending_until_the_owner_approves
    "access-open",      // subscriber_subscribes_with_bare_and_full_jid
    "access-whitelist", // whitelist_node_admits_members_only_and_hides_itself
    "auto-create",      // publish_to_missing_node_auto_creates_it
    "collections", // xep0248_collections::items_reach_collection_subscribers_by_depth_once_per_subscription
    "config-node", // owner_reads_and_submits_the_configuration_form
    "config-node-max", // lowering_max_items_trims_the_oldest_items
    "create-and-configure", // owner_creates_node_and_it_is_listed
    "create-nodes", // owner_creates_node_and_it_is_listed
    "delete-items", // retract_removes_the_item_and_missing_items_are_not_found
    "delete-nodes", // owner_deletes_and_purges_nodes
    "instant-nodes", // instant_node_gets_a_generated_name
    "item-ids",    // published_atom_entry_is_retrieved_exactly
    "last-published", // new_subscriber_gets_the_last_item_with_a_delay
    "manage-affiliations", // owner_manages_affiliations_and_the_last_owner_cannot_leave
    "manage-subscriptions", // authorize_node_makes_subscriptions_pending_until_the_owner_approves
    "member-affiliation", // whitelist_node_admits_members_only_and_hides_itself
    "meta-data",   // node_metadata_describes_the_node
    "modify-affiliations", // owner_manages_affiliations_and_the_last_owner_cannot_leave
    "multi-collections", // xep0248_collections::owner_builds_a_collection_and_its_children_survive_it
    "outcast-affiliation", // outcast_can_neither_subscribe_nor_retrieve
    "persistent-items",  // published_atom_entry_is_retrieved_exactly
    "publish",           // published_atom_entry_is_retrieved_exactly
    "publish-only-affiliation", // owner_manages_affiliations_and_the_last_owner_cannot_leave
    "publish-options",   // publish_options_that_do_not_match_are_refused
    "publisher-affiliation", // only_publishers_may_publish_by_default
    "purge-nodes",       // owner_deletes_and_purges_nodes
    "retract-items",     // retract_removes_the_item_and_missing_items_are_not_found
    "retrieve-affiliations", // own_subscriptions_and_affiliations_service_wide_and_per_node
    "retrieve-default",  // default_node_configuration_follows_the_service_policy
    "retrieve-default-sub", // default_subscription_options_are_offered
    "retrieve-items",    // retrieval_by_max_items_ids_and_rsm_pages
    "retrieve-subscriptions", // own_subscriptions_and_affiliations_service_wide_and_per_node
    "subscribe",         // subscriber_subscribes_with_bare_and_full_jid
    "subscription-options", // subscription_options_are_read_and_changed
];

/// XEP-0060 features that work only while the server lets the service read its users'
/// rosters (XEP-0356 roster privilege), so advertised only then.
pub const ROSTER_FEATURES: &[&str] = &[
    "access-presence", // presence_node_admits_contacts_subscribed_to_the_owner
    "access-roster",   // roster_node_admits_contacts_in_allowed_groups_only
];

/// Every feature `var` for the service's disco#info; `rosters` when the requester's
/// server lets the service read rosters.
pub fn all(rosters: bool) -> impl Iterator<Item = String> {
    let roster_features = if rosters { ROSTER_FEATURES } else { &[] };
    PROTOCOLS.iter().map(|s| s.to_string()).chain(
        PUBSUB_FEATURES
            .iter()
            .chain(roster_features)
            .map(|f| format!("{}#{f}", ns::PUBSUB)),
    )
}
