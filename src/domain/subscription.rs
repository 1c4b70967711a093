//! Subscription state (XEP-0060 §4.2) and per-subscription options (§6.3, the
//! `pubsub#subscribe_options` FORM_TYPE).

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};
use xmpp_parsers::data_forms::{DataForm, DataFormType, FieldType, Option_};

use super::collection::{SubscriptionDepth, SubscriptionType};
use super::error::DomainError;
use super::form_values::{self, bool_field, boolean, single, submitted_fields, var};

/// FORM_TYPE of subscription options forms.
pub const SUBSCRIBE_OPTIONS_FORM_TYPE: &str = "http://jabber.org/protocol/pubsub#subscribe_options";

/// The state of one subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SubscriptionState {
    /// No subscription.
    None,
    /// Requested, awaiting owner approval; receives nothing.
    Pending,
    /// Subscribed but options not yet configured; may receive notifications.
    Unconfigured,
    /// Subscribed; receives notifications.
    Subscribed,
}

impl SubscriptionState {
    /// Every state.
    pub const ALL: [SubscriptionState; 4] = [
        SubscriptionState::None,
        SubscriptionState::Pending,
        SubscriptionState::Unconfigured,
        SubscriptionState::Subscribed,
    ];

    /// The XEP-0060 attribute value.
    pub fn as_str(self) -> &'static str {
        match self {
            SubscriptionState::None => "none",
            SubscriptionState::Pending => "pending",
            SubscriptionState::Unconfigured => "unconfigured",
            SubscriptionState::Subscribed => "subscribed",
        }
    }

    /// Parses an XEP-0060 subscription value.
    pub fn parse(value: &str) -> Result<Self, DomainError> {
        SubscriptionState::ALL
            .into_iter()
            .find(|s| s.as_str() == value)
            .ok_or_else(|| DomainError::BadRequest(format!("unknown subscription '{value}'")))
    }

    /// Whether the subscription is in force (subscribed or unconfigured); a pending one
    /// is not (XEP-0060 §6.5.9: pending counts as not subscribed).
    pub fn is_active(self) -> bool {
        matches!(
            self,
            SubscriptionState::Subscribed | SubscriptionState::Unconfigured
        )
    }
}

impl fmt::Display for SubscriptionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A presence state a subscriber may choose to receive notifications in
/// (`pubsub#show-values`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ShowValue {
    /// `<show>away</show>`.
    Away,
    /// `<show>chat</show>`.
    Chat,
    /// `<show>dnd</show>`.
    Dnd,
    /// Available without a `<show/>`.
    Online,
    /// `<show>xa</show>`.
    Xa,
}

impl ShowValue {
    /// Every value, in the registry's order.
    pub const ALL: [ShowValue; 5] = [
        ShowValue::Away,
        ShowValue::Chat,
        ShowValue::Dnd,
        ShowValue::Online,
        ShowValue::Xa,
    ];

    /// The form value.
    pub fn as_str(self) -> &'static str {
        match self {
            ShowValue::Away => "away",
            ShowValue::Chat => "chat",
            ShowValue::Dnd => "dnd",
            ShowValue::Online => "online",
            ShowValue::Xa => "xa",
        }
    }

    fn label(self) -> &'static str {
        match self {
            ShowValue::Away => "Away",
            ShowValue::Chat => "Want to Chat",
            ShowValue::Dnd => "Do Not Disturb",
            ShowValue::Online => "Available",
            ShowValue::Xa => "Extended Away",
        }
    }

    /// Parses a form value.
    pub fn parse(value: &str) -> Option<Self> {
        ShowValue::ALL.into_iter().find(|s| s.as_str() == value)
    }
}

/// The options of one subscription, stored with it.
///
/// Only options the service honours are kept. `pubsub#digest`, `pubsub#include_body`
/// and `pubsub#expire` are understood on submission but only in their "off" form: the
/// service sends no digests, cannot turn payloads into message bodies (so XEP-0060 §12.8
/// forbids offering include_body), and has no leases.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SubscribeOptions {
    /// `pubsub#deliver`: whether notifications are sent at all. Default: true.
    pub deliver: bool,
    /// `pubsub#show-values`: the presence states in which notifications are wanted, when
    /// delivery depends on presence. Default: all of them, so that a subscriber who never
    /// configures anything is not silently starved.
    pub show_values: BTreeSet<ShowValue>,
    /// `pubsub#subscription_type` (XEP-0248), meaningful on collections. Default:
    /// `items` (XEP-0248 suggests `nodes`, which this service does not offer; a plain
    /// subscription to a collection then receives its leaves' items).
    pub subscription_type: SubscriptionType,
    /// `pubsub#subscription_depth` (XEP-0248), meaningful on collections. Default: 1.
    pub subscription_depth: SubscriptionDepth,
}

impl Default for SubscribeOptions {
    fn default() -> Self {
        SubscribeOptions {
            deliver: true,
            show_values: ShowValue::ALL.into_iter().collect(),
            subscription_type: SubscriptionType::default(),
            subscription_depth: SubscriptionDepth::default(),
        }
    }
}

impl SubscribeOptions {
    /// The options as a data form: `form` (with labels and choices) for an options
    /// request, `result` for the reply to subscribe-and-configure or `<default/>`.
    pub fn to_form(&self, type_: DataFormType) -> DataForm {
        let mut show = form_values::multi_field(
            "pubsub#show-values",
            FieldType::ListMulti,
            "Select the presence types which are allowed to receive event notifications",
            self.show_values
                .iter()
                .map(|s| s.as_str().to_owned())
                .collect(),
        );
        if type_ == DataFormType::Form {
            show.options = ShowValue::ALL
                .into_iter()
                .map(|s| Option_ {
                    label: Some(s.label().to_owned()),
                    value: s.as_str().to_owned(),
                })
                .collect();
        }
        DataForm::new(
            type_,
            SUBSCRIBE_OPTIONS_FORM_TYPE,
            vec![
                bool_field("pubsub#deliver", "Enable delivery?", self.deliver),
                form_values::text_field(
                    "pubsub#subscription_type",
                    "Receive notification of items (nodes are not offered)",
                    Some(self.subscription_type.as_str()),
                ),
                form_values::text_field(
                    "pubsub#subscription_depth",
                    "How far to traverse the node graph for notifications (1 or all)",
                    Some(self.subscription_depth.as_str()),
                ),
                bool_field(
                    "pubsub#digest",
                    "Receive digest notifications (approx. one per day)?",
                    false,
                ),
                show,
            ],
        )
    }

    /// Options from a submitted form, starting from the defaults (subscribe-and-configure).
    pub fn from_form(form: &DataForm) -> Result<Self, DomainError> {
        let mut options = SubscribeOptions::default();
        options.apply_form(form)?;
        Ok(options)
    }

    /// Applies a submitted options form; fields not submitted keep their value.
    ///
    /// Any invalid value leaves `self` unchanged and yields `InvalidOptions`
    /// (`bad-request` + `invalid-options`, XEP-0060 §6.3.5). Unknown fields are ignored,
    /// as XEP-0004 §3.3 requires of a form-processing entity.
    pub fn apply_form(&mut self, form: &DataForm) -> Result<(), DomainError> {
        let mut next = self.clone();
        for field in submitted_fields(form, SUBSCRIBE_OPTIONS_FORM_TYPE)? {
            let invalid = DomainError::InvalidOptions;
            match var(field) {
                "pubsub#deliver" => next.deliver = boolean(field).map_err(invalid)?,
                "pubsub#digest" | "pubsub#include_body" => {
                    refuse_if_on(var(field), boolean(field).map_err(invalid)?)?
                }
                "pubsub#expire" => {
                    let lease = single(field).map_err(invalid)?;
                    refuse_if_on(var(field), lease.is_some_and(|v| !v.is_empty()))?
                }
                "pubsub#subscription_type" => {
                    let value = single(field).map_err(invalid)?.unwrap_or_default();
                    next.subscription_type = SubscriptionType::parse(value)?;
                }
                "pubsub#subscription_depth" => {
                    let value = single(field).map_err(invalid)?.unwrap_or_default();
                    next.subscription_depth = SubscriptionDepth::parse(value)?;
                }
                "pubsub#show-values" => {
                    form_values::check_type(field, FieldType::ListMulti).map_err(invalid)?;
                    next.show_values = field
                        .values
                        .iter()
                        .map(|v| {
                            ShowValue::parse(v).ok_or_else(|| {
                                DomainError::InvalidOptions(format!("unknown show value '{v}'"))
                            })
                        })
                        .collect::<Result<_, _>>()?;
                }
                _ => {}
            }
        }
        *self = next;
        Ok(())
    }
}

/// Refuses an option the service only supports in its "off" form.
fn refuse_if_on(var: &str, on: bool) -> Result<(), DomainError> {
    if on {
        Err(DomainError::InvalidOptions(format!(
            "'{var}' is not supported"
        )))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xmpp_parsers::data_forms::Field;

    fn submit(fields: Vec<(&str, &[&str])>) -> DataForm {
        DataForm::new(
            DataFormType::Submit,
            SUBSCRIBE_OPTIONS_FORM_TYPE,
            fields
                .into_iter()
                .map(|(var, values)| {
                    let mut f = Field::new(var, FieldType::TextSingle);
                    f.values = values.iter().map(|v| (*v).to_owned()).collect();
                    f
                })
                .collect(),
        )
    }

    #[test]
    fn pending_is_not_an_active_subscription() {
        assert!(!SubscriptionState::Pending.is_active());
        assert!(!SubscriptionState::None.is_active());
        assert!(SubscriptionState::Unconfigured.is_active());
        assert!(SubscriptionState::Subscribed.is_active());
    }

    #[test]
    fn subscription_states_round_trip() {
        for s in SubscriptionState::ALL {
            assert_eq!(SubscriptionState::parse(s.as_str()), Ok(s));
        }
        assert!(SubscriptionState::parse("Subscribed").is_err());
    }

    #[test]
    fn subscriber_submits_the_xep_example_options_form() {
        // XEP-0060 Example 63.
        let form = submit(vec![
            ("pubsub#deliver", &["1"]),
            ("pubsub#digest", &["0"]),
            ("pubsub#include_body", &["false"]),
            ("pubsub#show-values", &["chat", "online", "away"]),
        ]);
        let options = SubscribeOptions::from_form(&form).unwrap();
        assert!(options.deliver);
        assert_eq!(
            options.show_values,
            [ShowValue::Chat, ShowValue::Online, ShowValue::Away]
                .into_iter()
                .collect()
        );
    }

    #[test]
    fn subscriber_may_pause_delivery() {
        let mut options = SubscribeOptions::default();
        options
            .apply_form(&submit(vec![("pubsub#deliver", &["false"])]))
            .unwrap();
        assert!(!options.deliver);
        assert_eq!(
            options.show_values.len(),
            5,
            "untouched fields keep their value"
        );
    }

    #[test]
    fn digest_delivery_is_refused_with_invalid_options() {
        let mut options = SubscribeOptions::default();
        let err = options
            .apply_form(&submit(vec![
                ("pubsub#deliver", &["0"]),
                ("pubsub#digest", &["1"]),
            ]))
            .unwrap_err();
        assert!(matches!(err, DomainError::InvalidOptions(_)));
        assert!(options.deliver, "a rejected form changes nothing");
    }

    #[test]
    fn include_body_and_leases_are_refused() {
        let body = submit(vec![("pubsub#include_body", &["true"])]);
        assert!(SubscribeOptions::from_form(&body).is_err());
        let lease = submit(vec![("pubsub#expire", &["presence"])]);
        assert!(SubscribeOptions::from_form(&lease).is_err());
    }

    #[test]
    fn unknown_show_values_and_bad_booleans_are_invalid_options() {
        let show = submit(vec![("pubsub#show-values", &["sleeping"])]);
        assert!(matches!(
            SubscribeOptions::from_form(&show),
            Err(DomainError::InvalidOptions(_))
        ));
        let deliver = submit(vec![("pubsub#deliver", &["maybe"])]);
        assert!(matches!(
            SubscribeOptions::from_form(&deliver),
            Err(DomainError::InvalidOptions(_))
        ));
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let form = submit(vec![("x-example#keyword", &["peasant"])]);
        assert_eq!(
            SubscribeOptions::from_form(&form),
            Ok(SubscribeOptions::default())
        );
    }

    #[test]
    fn options_form_round_trips_through_a_submission() {
        let options = SubscribeOptions {
            deliver: false,
            show_values: [ShowValue::Dnd].into_iter().collect(),
            subscription_depth: SubscriptionDepth::All,
            ..SubscribeOptions::default()
        };
        let mut form = options.to_form(DataFormType::Form);
        assert_eq!(form.form_type(), Some(SUBSCRIBE_OPTIONS_FORM_TYPE));
        form.type_ = DataFormType::Submit;
        assert_eq!(SubscribeOptions::from_form(&form), Ok(options));
    }

    #[test]
    fn stored_options_with_missing_fields_still_load() {
        let options: SubscribeOptions = serde_json::from_str(r#"{"deliver":false}"#).unwrap();
        assert!(!options.deliver);
        assert_eq!(options.show_values.len(), 5);
    }
}
