//! Validating submitted `pubsub#node_config` and `pubsub#publish-options` forms, field by
//! field, into a [`NodeConfig`].
//!
//! One function ([`apply_field`]) knows every field; configuring, checking publish-options
//! preconditions and auto-creating with preconditions differ only in how they treat its
//! outcome.

use xmpp_parsers::data_forms::{DataForm, Field, FieldType};

use super::access::{AccessModel, PublishModel};
use super::collection::NodeType;
use super::error::DomainError;
use super::form_values::{boolean, check_type, single, submitted_fields, var};
use super::limits::ServiceLimits;
use super::node_config::{
    ItemReply, MaxItems, NodeConfig, NotificationType, SendLastPublished, PUBLISH_OPTIONS_FORM_TYPE,
};

/// How many roster groups a node may allow: a roster of a person has a handful; the
/// bound keeps a stored configuration and each permission check small.
pub const MAX_ROSTER_GROUPS: usize = 64;

/// What a successful configuration changed, for the caller's follow-up work (a
/// `notify_config` notification, re-checking subscriptions after an access model change,
/// logging ignored fields).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigChange {
    /// `var`s of submitted fields whose value differs from the previous configuration.
    pub changed: Vec<String>,
    /// `var`s of submitted fields this service does not know and ignored.
    pub ignored: Vec<String>,
}

impl ConfigChange {
    /// Whether the configuration is unchanged.
    pub fn is_empty(&self) -> bool {
        self.changed.is_empty()
    }

    /// Whether the field `var` (e.g. `pubsub#access_model`) changed.
    pub fn is_changed(&self, var: &str) -> bool {
        self.changed.iter().any(|v| v == var)
    }
}

/// A field the service understood.
enum Outcome {
    /// Applied (possibly without changing anything).
    Known,
    /// Not a field this service knows.
    Unknown,
}

/// Why a field was refused.
enum Rejection {
    /// The value is malformed: `not-acceptable` wherever it appears.
    Invalid(String),
    /// The value is well-formed but asks for something this service does not do (or not
    /// beyond its limits). Configuring fails with this error; as a publish-options
    /// precondition it is simply not met.
    Unsupported(DomainError),
}

fn invalid(message: String) -> Rejection {
    Rejection::Invalid(message)
}

fn unsupported_value(field: &Field, what: &str) -> Rejection {
    Rejection::Unsupported(DomainError::NotAcceptable(format!(
        "'{}': {what}",
        var(field)
    )))
}

/// A text field's value; empty means unset.
fn text(field: &Field) -> Result<Option<String>, Rejection> {
    Ok(single(field)
        .map_err(invalid)?
        .filter(|v| !v.is_empty())
        .map(str::to_owned))
}

fn flag(field: &Field) -> Result<bool, Rejection> {
    boolean(field).map_err(invalid)
}

/// A list-single field's value parsed by `parse`.
fn choice<T>(field: &Field, parse: fn(&str) -> Result<T, DomainError>) -> Result<T, Rejection> {
    check_type(field, FieldType::ListSingle).map_err(invalid)?;
    let value = single(field).map_err(invalid)?.unwrap_or_default();
    parse(value).map_err(|_| invalid(format!("'{}' has no option '{value}'", var(field))))
}

/// A non-negative integer, or `max` (XEP-0060's integer-or-max datatype).
fn integer_or_max(field: &Field) -> Result<Option<u64>, Rejection> {
    match single(field).map_err(invalid)? {
        Some("max") => Ok(None),
        Some(n) => n.parse().map(Some).map_err(|_| {
            invalid(format!(
                "'{}' must be a number or 'max', got '{n}'",
                var(field)
            ))
        }),
        None => Err(invalid(format!("'{}' needs a value", var(field)))),
    }
}

/// Applies one submitted field to `config`.
fn apply_field(
    config: &mut NodeConfig,
    field: &Field,
    limits: &ServiceLimits,
) -> Result<Outcome, Rejection> {
    match var(field) {
        "pubsub#title" => config.title = text(field)?,
        "pubsub#description" => config.description = text(field)?,
        "pubsub#type" => config.payload_type = text(field)?,
        "pubsub#max_items" => {
            config.max_items = match integer_or_max(field)? {
                None => MaxItems::Max,
                Some(n) if n <= u64::from(limits.max_items) => {
                    MaxItems::Limited(u32::try_from(n).unwrap_or(limits.max_items))
                }
                Some(_) => {
                    let ceiling = limits.max_items;
                    return Err(unsupported_value(
                        field,
                        &format!("this service keeps at most {ceiling} items per node"),
                    ));
                }
            }
        }
        "pubsub#max_payload_size" => {
            let ceiling = limits.max_payload_size;
            config.max_payload_size = match integer_or_max(field)? {
                None => ceiling,
                Some(0) => {
                    return Err(invalid("'pubsub#max_payload_size' must be positive".into()))
                }
                Some(n) if n <= u64::from(ceiling) => u32::try_from(n).unwrap_or(ceiling),
                Some(_) => {
                    return Err(unsupported_value(
                        field,
                        &format!("this service accepts payloads of at most {ceiling} bytes"),
                    ))
                }
            }
        }
        "pubsub#item_expire" => {
            // An empty value is read as "no expiry", like `max`.
            config.item_expire = match single(field).map_err(invalid)? {
                None | Some("") => None,
                Some(_) => integer_or_max(field)?,
            }
        }
        "pubsub#persist_items" => config.persist_items = flag(field)?,
        "pubsub#deliver_payloads" => config.deliver_payloads = flag(field)?,
        "pubsub#deliver_notifications" => config.deliver_notifications = flag(field)?,
        "pubsub#notify_config" => config.notify_config = flag(field)?,
        "pubsub#notify_delete" => config.notify_delete = flag(field)?,
        "pubsub#notify_retract" => config.notify_retract = flag(field)?,
        "pubsub#notify_sub" => config.notify_sub = flag(field)?,
        // Purging when the publisher goes offline is not implemented: accepted only off.
        "pubsub#purge_offline" => {
            if flag(field)? {
                return Err(unsupported_value(
                    field,
                    "purging items when the publisher goes offline is not supported",
                ));
            }
            config.purge_offline = false;
        }
        "pubsub#presence_based_delivery" => config.presence_based_delivery = flag(field)?,
        "pubsub#send_last_published_item" => {
            config.send_last_published_item = choice(field, SendLastPublished::parse)?
        }
        "pubsub#notification_type" => {
            config.notification_type = choice(field, NotificationType::parse)?
        }
        "pubsub#itemreply" => config.itemreply = choice(field, ItemReply::parse)?,
        "pubsub#publish_model" => config.publish_model = choice(field, PublishModel::parse)?,
        "pubsub#access_model" => config.access_model = choice(field, AccessModel::parse)?,
        "pubsub#roster_groups_allowed" => {
            let mut groups: Vec<String> = field
                .values
                .iter()
                .map(|g| g.trim())
                .filter(|g| !g.is_empty())
                .map(str::to_owned)
                .collect();
            groups.sort();
            groups.dedup();
            if groups.len() > MAX_ROSTER_GROUPS {
                return Err(invalid(format!(
                    "at most {MAX_ROSTER_GROUPS} roster groups may be allowed"
                )));
            }
            config.roster_groups_allowed = groups;
        }
        // Registered fields for behaviour this service does not have: accepted only with
        // the value that describes what it does anyway, so nobody is silently misled.
        "pubsub#node_type" => {
            let value = single(field).map_err(invalid)?.unwrap_or_default();
            config.node_type = NodeType::parse(value)
                .map_err(|_| invalid(format!("unknown node type '{value}'")))?;
        }
        "pubsub#children_max" => {
            config.children_max = match integer_or_max(field)? {
                None => None,
                Some(n) => Some(
                    u32::try_from(n)
                        .map_err(|_| invalid(format!("'pubsub#children_max' is too large: {n}")))?,
                ),
            }
        }
        // The links are stored apart from the configuration and changed by the caller
        // (`LinkRequest`); here they are only known fields.
        "pubsub#children" | "pubsub#collection" => {}
        // Association policies other than owners-only are not offered.
        "pubsub#children_association_policy" => match single(field).map_err(invalid)? {
            None | Some("") | Some("owners") => {}
            Some(_) => {
                return Err(unsupported_value(
                    field,
                    "only owners may associate nodes with a collection",
                ))
            }
        },
        "pubsub#children_association_whitelist" => {
            if field.values.iter().any(|v| !v.is_empty()) {
                return Err(unsupported_value(
                    field,
                    "only owners may associate nodes with a collection",
                ));
            }
        }
        "pubsub#subscribe" => {
            if !(field.values.is_empty() || flag(field)?) {
                return Err(unsupported_value(field, "subscriptions cannot be disabled"));
            }
        }
        "pubsub#tempsub" => {
            if flag(field)? {
                return Err(unsupported_value(
                    field,
                    "temporary subscriptions are not supported",
                ));
            }
        }
        "pubsub#publish_node_full" => match single(field).map_err(invalid)? {
            None | Some("") | Some("retract-oldest") => {}
            Some(_) => {
                return Err(unsupported_value(
                    field,
                    "a full node always retracts its oldest item",
                ))
            }
        },
        // Everything else, including registered fields that only matter for features
        // this service lacks (body_xslt, dataform_xslt, language,
        // contact), is ignored as XEP-0004 §3.3 requires.
        _ => return Ok(Outcome::Unknown),
    }
    Ok(Outcome::Known)
}

/// How fields the service does not know are treated.
#[derive(Clone, Copy, PartialEq, Eq)]
enum UnknownFields {
    /// Ignored and reported (configuration forms, XEP-0004 §3.3).
    Ignore,
    /// Refused with `bad-request` (publish-options, XEP-0060 §7.1.5).
    Reject,
}

fn unknown_option(field: &Field) -> DomainError {
    DomainError::BadRequest(format!("unknown publish option '{}'", var(field)))
}

fn apply_all(
    config: &mut NodeConfig,
    form: &DataForm,
    form_type: &str,
    limits: &ServiceLimits,
    unknown: UnknownFields,
) -> Result<ConfigChange, DomainError> {
    let mut next = config.clone();
    let mut change = ConfigChange::default();
    for field in submitted_fields(form, form_type)? {
        let before = next.clone();
        match apply_field(&mut next, field, limits) {
            Ok(Outcome::Known) if next != before => change.changed.push(var(field).to_owned()),
            Ok(Outcome::Known) => {}
            Ok(Outcome::Unknown) if unknown == UnknownFields::Reject => {
                return Err(unknown_option(field))
            }
            Ok(Outcome::Unknown) => change.ignored.push(var(field).to_owned()),
            Err(Rejection::Invalid(message)) => return Err(DomainError::NotAcceptable(message)),
            Err(Rejection::Unsupported(error)) => return Err(error),
        }
    }
    *config = next;
    Ok(change)
}

/// Applies a configuration form scoped to `form_type`; see [`NodeConfig::apply_form`].
pub(crate) fn apply(
    config: &mut NodeConfig,
    form: &DataForm,
    form_type: &str,
    limits: &ServiceLimits,
) -> Result<ConfigChange, DomainError> {
    apply_all(config, form, form_type, limits, UnknownFields::Ignore)
}

/// Applies publish-options preconditions to a node being auto-created.
pub(crate) fn apply_publish_options(
    config: &mut NodeConfig,
    form: &DataForm,
    limits: &ServiceLimits,
) -> Result<(), DomainError> {
    apply_all(
        config,
        form,
        PUBLISH_OPTIONS_FORM_TYPE,
        limits,
        UnknownFields::Reject,
    )
    .map(drop)
}

/// Checks publish-options preconditions against an existing node's configuration: a
/// precondition holds when applying it would change nothing.
pub(crate) fn check_preconditions(
    config: &NodeConfig,
    form: &DataForm,
    limits: &ServiceLimits,
) -> Result<(), DomainError> {
    for field in submitted_fields(form, PUBLISH_OPTIONS_FORM_TYPE)? {
        let mut candidate = config.clone();
        match apply_field(&mut candidate, field, limits) {
            Ok(Outcome::Known) if candidate == *config => {}
            Ok(Outcome::Unknown) => return Err(unknown_option(field)),
            Ok(Outcome::Known) | Err(Rejection::Unsupported(_)) => {
                return Err(DomainError::PreconditionNotMet {
                    field: var(field).to_owned(),
                })
            }
            Err(Rejection::Invalid(message)) => return Err(DomainError::NotAcceptable(message)),
        }
    }
    Ok(())
}
