//! Node configuration: defaults, forms, submissions and publish-options, as use cases.

use super::*;
use xmpp_parsers::data_forms::{Field, FieldType};

fn submit(form_type: &str, fields: &[(&str, &[&str])]) -> DataForm {
    DataForm::new(
        DataFormType::Submit,
        form_type,
        fields
            .iter()
            .map(|(var, values)| {
                let mut f = Field::new(var, FieldType::TextSingle);
                f.values = values.iter().map(|v| (*v).to_owned()).collect();
                f
            })
            .collect(),
    )
}

fn config_form(fields: &[(&str, &[&str])]) -> DataForm {
    submit(NODE_CONFIG_FORM_TYPE, fields)
}

fn publish_options(fields: &[(&str, &[&str])]) -> DataForm {
    submit(PUBLISH_OPTIONS_FORM_TYPE, fields)
}

fn limits() -> ServiceLimits {
    ServiceLimits::default()
}

fn field<'f>(form: &'f DataForm, var: &str) -> &'f Field {
    form.fields
        .iter()
        .find(|f| f.var.as_deref() == Some(var))
        .unwrap_or_else(|| panic!("no field {var}"))
}

/// The fields of XEP-0060 Example 125 (owner submits configuration), with the open
/// access model instead of roster (whether roster can be served is the caller's
/// question: the roster privilege).
const EXAMPLE_SUBMISSION: &[(&str, &[&str])] = &[
    ("pubsub#title", &["Princely Musings (Atom)"]),
    ("pubsub#deliver_notifications", &["1"]),
    ("pubsub#deliver_payloads", &["1"]),
    ("pubsub#persist_items", &["1"]),
    ("pubsub#max_items", &["10"]),
    ("pubsub#item_expire", &["604800"]),
    ("pubsub#access_model", &["open"]),
    (
        "pubsub#roster_groups_allowed",
        &["friends", "servants", "courtiers"],
    ),
    ("pubsub#publish_model", &["publishers"]),
    ("pubsub#purge_offline", &["0"]),
    ("pubsub#send_last_published_item", &["never"]),
    ("pubsub#presence_based_delivery", &["false"]),
    ("pubsub#notification_type", &["headline"]),
    ("pubsub#notify_config", &["0"]),
    ("pubsub#notify_delete", &["0"]),
    ("pubsub#notify_retract", &["0"]),
    ("pubsub#notify_sub", &["0"]),
    ("pubsub#max_payload_size", &["1028"]),
    ("pubsub#type", &["urn:example:e2ee:bundle"]),
    (
        "pubsub#body_xslt",
        &["http://jabxslt.jabberstudio.org/atom_body.xslt"],
    ),
];

#[test]
fn defaults_are_the_documented_ones() {
    let c = NodeConfig::default();
    assert_eq!(c.max_items, MaxItems::Limited(DEFAULT_MAX_ITEMS));
    assert!(c.persist_items && c.deliver_payloads && c.deliver_notifications);
    assert_eq!(c.access_model, AccessModel::Open);
    assert_eq!(c.publish_model, PublishModel::Publishers);
    assert_eq!(c.send_last_published_item, SendLastPublished::Never);
    assert_eq!(c.notification_type, NotificationType::Headline);
    assert_eq!(c.itemreply, ItemReply::None);
    assert_eq!(c.item_expire, None);
}

#[test]
fn owner_submits_the_xep_example_configuration() {
    let mut config = NodeConfig::default();
    let change = config
        .apply_form(&config_form(EXAMPLE_SUBMISSION), &limits())
        .unwrap();
    assert_eq!(config.title.as_deref(), Some("Princely Musings (Atom)"));
    assert_eq!(config.max_items, MaxItems::Limited(10));
    assert_eq!(config.item_expire, Some(604_800));
    assert_eq!(config.max_payload_size, 1028);
    assert_eq!(
        config.payload_type.as_deref(),
        Some("urn:example:e2ee:bundle")
    );
    assert!(!config.notify_delete && !config.notify_retract);
    assert!(change.is_changed("pubsub#max_items"));
    assert!(
        !change.is_changed("pubsub#access_model"),
        "open was already the value"
    );
    assert_eq!(change.ignored, ["pubsub#body_xslt"]);
    assert_eq!(
        config.roster_groups_allowed,
        ["courtiers", "friends", "servants"]
    );
}

#[test]
fn owner_chooses_the_roster_access_model_and_its_groups() {
    let mut config = NodeConfig::default();
    config
        .apply_form(
            &config_form(&[
                ("pubsub#access_model", &["roster"]),
                (
                    "pubsub#roster_groups_allowed",
                    &["friends", " ", "family", "friends"],
                ),
            ]),
            &limits(),
        )
        .unwrap();
    assert_eq!(config.access_model, AccessModel::Roster);
    assert_eq!(config.roster_groups_allowed, ["family", "friends"]);
    let form = config.to_form();
    let field = form
        .fields
        .iter()
        .find(|f| f.var.as_deref() == Some("pubsub#roster_groups_allowed"))
        .expect("the groups are in the form");
    assert_eq!(field.values, ["family", "friends"]);
    let too_many: Vec<String> = (0..=super::node_config_form::MAX_ROSTER_GROUPS)
        .map(|n| format!("g{n}"))
        .collect();
    let too_many: Vec<&str> = too_many.iter().map(String::as_str).collect();
    assert!(config
        .apply_form(
            &config_form(&[("pubsub#roster_groups_allowed", &too_many)]),
            &limits(),
        )
        .is_err());
    assert_eq!(
        config.roster_groups_allowed,
        ["family", "friends"],
        "unchanged"
    );
}

#[test]
fn owner_may_choose_the_whitelist_access_model() {
    let mut config = NodeConfig::default();
    let change = config
        .apply_form(
            &config_form(&[("pubsub#access_model", &["whitelist"])]),
            &limits(),
        )
        .unwrap();
    assert_eq!(config.access_model, AccessModel::Whitelist);
    assert!(change.is_changed("pubsub#access_model"));
}

#[test]
fn node_type_and_children_max_are_configured() {
    let mut config = NodeConfig::default();
    config
        .apply_form(
            &config_form(&[
                ("pubsub#node_type", &["collection"]),
                ("pubsub#children_max", &["2"]),
            ]),
            &limits(),
        )
        .unwrap();
    assert_eq!(config.node_type, crate::domain::NodeType::Collection);
    assert_eq!(config.children_max, Some(2));
    let err = config
        .apply_form(&config_form(&[("pubsub#node_type", &["tree"])]), &limits())
        .unwrap_err();
    assert!(matches!(err, DomainError::NotAcceptable(_)));
    assert_eq!(
        config.node_type,
        crate::domain::NodeType::Collection,
        "unchanged"
    );
}

#[test]
fn malformed_values_are_not_acceptable_and_change_nothing() {
    for (var, value) in [
        ("pubsub#persist_items", "yes"),
        ("pubsub#max_items", "-1"),
        ("pubsub#max_items", "ten"),
        ("pubsub#item_expire", "soon"),
        ("pubsub#max_payload_size", "0"),
        ("pubsub#access_model", "private"),
        ("pubsub#publish_model", "everyone"),
        ("pubsub#send_last_published_item", "always"),
        ("pubsub#notification_type", "chat"),
        ("pubsub#itemreply", "room"),
    ] {
        let mut config = NodeConfig::default();
        let form = config_form(&[("pubsub#title", &["changed"]), (var, &[value])]);
        let err = config.apply_form(&form, &limits()).unwrap_err();
        assert!(
            matches!(err, DomainError::NotAcceptable(_)),
            "{var}={value}: {err:?}"
        );
        assert_eq!(
            config,
            NodeConfig::default(),
            "{var}={value} must not half-apply"
        );
    }
}

#[test]
fn two_values_for_a_single_valued_field_are_not_acceptable() {
    let mut config = NodeConfig::default();
    let err = config
        .apply_form(&config_form(&[("pubsub#title", &["a", "b"])]), &limits())
        .unwrap_err();
    assert!(matches!(err, DomainError::NotAcceptable(_)));
}

#[test]
fn a_boolean_field_declared_as_a_list_is_not_acceptable() {
    let mut form = config_form(&[("pubsub#persist_items", &["1"])]);
    form.fields[1].type_ = FieldType::ListMulti;
    let err = NodeConfig::default()
        .apply_form(&form, &limits())
        .unwrap_err();
    assert!(matches!(err, DomainError::NotAcceptable(_)));
}

#[test]
fn a_repeated_field_is_a_bad_request() {
    let form = config_form(&[("pubsub#title", &["a"]), ("pubsub#title", &["b"])]);
    let err = NodeConfig::default()
        .apply_form(&form, &limits())
        .unwrap_err();
    assert!(matches!(err, DomainError::BadRequest(_)));
}

#[test]
fn a_form_of_another_type_is_a_bad_request() {
    let form = submit(PUBLISH_OPTIONS_FORM_TYPE, &[("pubsub#title", &["a"])]);
    let err = NodeConfig::default()
        .apply_form(&form, &limits())
        .unwrap_err();
    assert!(matches!(err, DomainError::BadRequest(_)));
}

#[test]
fn max_items_may_be_max_but_not_above_the_service_ceiling() {
    let limits = ServiceLimits {
        max_items: 50,
        ..ServiceLimits::default()
    };
    let mut config = NodeConfig::default();
    config
        .apply_form(&config_form(&[("pubsub#max_items", &["max"])]), &limits)
        .unwrap();
    assert_eq!(config.max_items, MaxItems::Max);
    assert_eq!(config.max_items.effective(&limits), 50);
    config
        .apply_form(&config_form(&[("pubsub#max_items", &["50"])]), &limits)
        .unwrap();
    assert_eq!(config.max_items, MaxItems::Limited(50));
    let err = config
        .apply_form(&config_form(&[("pubsub#max_items", &["51"])]), &limits)
        .unwrap_err();
    assert!(matches!(err, DomainError::NotAcceptable(_)));
}

#[test]
fn max_payload_size_is_bounded_by_the_service_ceiling() {
    let limits = ServiceLimits {
        max_payload_size: 4096,
        ..ServiceLimits::default()
    };
    let mut config = NodeConfig::default();
    assert!(config
        .apply_form(
            &config_form(&[("pubsub#max_payload_size", &["4097"])]),
            &limits
        )
        .is_err());
    config
        .apply_form(
            &config_form(&[("pubsub#max_payload_size", &["max"])]),
            &limits,
        )
        .unwrap();
    assert_eq!(config.max_payload_size, 4096);
}

#[test]
fn item_expire_max_or_empty_means_no_expiry() {
    let mut config = NodeConfig {
        item_expire: Some(60),
        ..NodeConfig::default()
    };
    config
        .apply_form(&config_form(&[("pubsub#item_expire", &["max"])]), &limits())
        .unwrap();
    assert_eq!(config.item_expire, None);
    config.item_expire = Some(60);
    config
        .apply_form(&config_form(&[("pubsub#item_expire", &[])]), &limits())
        .unwrap();
    assert_eq!(config.item_expire, None);
}

#[test]
fn empty_text_clears_the_title() {
    let mut config = NodeConfig {
        title: Some("old".into()),
        ..NodeConfig::default()
    };
    config
        .apply_form(&config_form(&[("pubsub#title", &[""])]), &limits())
        .unwrap();
    assert_eq!(config.title, None);
}

#[test]
fn options_the_service_lacks_are_refused_unless_they_describe_its_behaviour() {
    let mut config = NodeConfig::default();
    for (var, value) in [
        ("pubsub#subscribe", "1"),
        ("pubsub#tempsub", "0"),
        ("pubsub#publish_node_full", "retract-oldest"),
        ("pubsub#children", ""),
    ] {
        assert!(
            config
                .apply_form(&config_form(&[(var, &[value])]), &limits())
                .is_ok(),
            "{var}={value}"
        );
    }
    for (var, value) in [
        ("pubsub#subscribe", "0"),
        ("pubsub#tempsub", "1"),
        ("pubsub#publish_node_full", "reject"),
    ] {
        let err = config
            .apply_form(&config_form(&[(var, &[value])]), &limits())
            .unwrap_err();
        assert!(
            matches!(err, DomainError::NotAcceptable(_)),
            "{var}={value}"
        );
    }
    assert!(
        config
            .apply_form(&config_form(&[("pubsub#children", &["other"])]), &limits())
            .is_ok(),
        "links are the caller's, known but not part of the configuration"
    );
}

#[test]
fn configuration_form_offers_current_values_and_supported_choices() {
    let config = NodeConfig {
        access_model: AccessModel::Whitelist,
        max_items: MaxItems::Max,
        ..NodeConfig::default()
    };
    let form = config.to_form();
    assert_eq!(form.type_, DataFormType::Form);
    assert_eq!(form.form_type(), Some(NODE_CONFIG_FORM_TYPE));
    let access = field(&form, "pubsub#access_model");
    assert_eq!(access.type_, FieldType::ListSingle);
    assert_eq!(access.values, ["whitelist"]);
    let offered: Vec<_> = access.options.iter().map(|o| o.value.as_str()).collect();
    assert_eq!(
        offered,
        ["open", "presence", "roster", "authorize", "whitelist"]
    );
    assert_eq!(field(&form, "pubsub#max_items").values, ["max"]);
    assert_eq!(field(&form, "pubsub#item_expire").values, ["max"]);
    assert_eq!(
        field(&form, "pubsub#persist_items").type_,
        FieldType::Boolean
    );
    assert_eq!(
        field(&form, "pubsub#send_last_published_item")
            .options
            .len(),
        3
    );
}

#[test]
fn submitting_the_form_back_unchanged_changes_nothing() {
    let config = NodeConfig {
        title: Some("t".into()),
        description: Some("d".into()),
        payload_type: Some("urn:xmpp:microblog:0".into()),
        item_expire: Some(3600),
        notification_type: NotificationType::Normal,
        itemreply: ItemReply::Publisher,
        ..NodeConfig::default()
    };
    let mut form = config.to_form();
    form.type_ = DataFormType::Submit;
    let mut copy = config.clone();
    let change = copy.apply_form(&form, &limits()).unwrap();
    assert_eq!(copy, config);
    assert!(change.is_empty() && change.ignored.is_empty(), "{change:?}");
}

#[test]
fn result_form_carries_values_without_choices() {
    let form = NodeConfig::default().to_result_form();
    assert_eq!(form.type_, DataFormType::Result_);
    assert!(form.fields.iter().all(|f| f.options.is_empty()));
}

#[test]
fn publish_options_that_match_the_node_let_the_publish_through() {
    let config = NodeConfig::default();
    let form = publish_options(&[
        ("pubsub#access_model", &["open"]),
        ("pubsub#persist_items", &["true"]),
        ("pubsub#max_items", &["1000"]),
    ]);
    assert_eq!(config.check_publish_options(&form, &limits()), Ok(()));
}

#[test]
fn publish_options_that_differ_fail_with_precondition_not_met() {
    let config = NodeConfig::default();
    let form = publish_options(&[("pubsub#access_model", &["whitelist"])]);
    assert_eq!(
        config.check_publish_options(&form, &limits()),
        Err(DomainError::PreconditionNotMet {
            field: "pubsub#access_model".into()
        })
    );
    let max = publish_options(&[("pubsub#max_items", &["max"])]);
    assert!(matches!(
        config.check_publish_options(&max, &limits()),
        Err(DomainError::PreconditionNotMet { .. })
    ));
    let roster = publish_options(&[("pubsub#access_model", &["roster"])]);
    assert!(matches!(
        config.check_publish_options(&roster, &limits()),
        Err(DomainError::PreconditionNotMet { .. })
    ));
}

#[test]
fn unknown_publish_options_are_rejected() {
    let form = publish_options(&[("pubsub#frobnicate", &["1"])]);
    assert!(matches!(
        NodeConfig::default().check_publish_options(&form, &limits()),
        Err(DomainError::BadRequest(_))
    ));
    assert!(matches!(
        NodeConfig::from_publish_options(&form, &limits()),
        Err(DomainError::BadRequest(_))
    ));
}

#[test]
fn malformed_publish_options_are_not_acceptable() {
    let form = publish_options(&[("pubsub#persist_items", &["perhaps"])]);
    assert!(matches!(
        NodeConfig::default().check_publish_options(&form, &limits()),
        Err(DomainError::NotAcceptable(_))
    ));
}

#[test]
fn auto_created_node_takes_its_preconditions_as_configuration() {
    let form = publish_options(&[
        ("pubsub#access_model", &["whitelist"]),
        ("pubsub#max_items", &["max"]),
    ]);
    let config = NodeConfig::from_publish_options(&form, &limits()).unwrap();
    assert_eq!(config.access_model, AccessModel::Whitelist);
    assert_eq!(config.max_items, MaxItems::Max);
    assert_eq!(config.check_publish_options(&form, &limits()), Ok(()));
}

#[test]
fn stored_configuration_round_trips_through_json() {
    let config = NodeConfig {
        max_items: MaxItems::Max,
        item_expire: Some(10),
        send_last_published_item: SendLastPublished::OnSubAndPresence,
        ..NodeConfig::default()
    };
    let json = serde_json::to_value(&config).unwrap();
    assert_eq!(json["max_items"], "max");
    assert_eq!(json["send_last_published_item"], "on_sub_and_presence");
    assert_eq!(json["access_model"], "open");
    assert_eq!(serde_json::from_value::<NodeConfig>(json).unwrap(), config);
}

#[test]
fn older_rows_with_missing_fields_still_load() {
    let config: NodeConfig = serde_json::from_str(r#"{"title":"old","max_items":20}"#).unwrap();
    assert_eq!(config.title.as_deref(), Some("old"));
    assert_eq!(config.max_items, MaxItems::Limited(20));
    assert_eq!(config.notification_type, NotificationType::Headline);
    assert!(serde_json::from_str::<NodeConfig>(r#"{"max_items":"lots"}"#).is_err());
}

#[test]
fn children_max_is_offered_on_collections_only() {
    let vars = |config: &NodeConfig| -> Vec<String> {
        config
            .to_form()
            .fields
            .into_iter()
            .filter_map(|f| f.var)
            .collect()
    };
    let leaf = NodeConfig::default();
    assert!(vars(&leaf).iter().any(|v| v == "pubsub#node_type"));
    assert!(!vars(&leaf).iter().any(|v| v == "pubsub#children_max"));
    let collection = NodeConfig {
        node_type: crate::domain::NodeType::Collection,
        children_max: Some(3),
        ..NodeConfig::default()
    };
    assert!(vars(&collection).iter().any(|v| v == "pubsub#children_max"));
}
