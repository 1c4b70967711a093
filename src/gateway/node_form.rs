//! Node configuration as JSON: `PUT /nodes/{node}` takes an object of configuration
//! fields named as in XEP-0060's `pubsub#node_config` form without the `pubsub#`
//! prefix (`{"title": "News", "access_model": "whitelist", "max_items": 50}`), turns it
//! into a submitted form, and lets the domain validate it exactly as it validates an
//! XMPP owner's form. Replies show the configuration in the same shape.

use serde_json::{Map, Value};
use xmpp_parsers::data_forms::{DataForm, DataFormType, Field, FieldType};

use crate::domain::{NodeConfig, NODE_CONFIG_FORM_TYPE};

/// Fields whose values are numbers (or `"max"`).
const NUMERIC: &[&str] = &["max_items", "max_payload_size", "item_expire"];

/// The names a JSON configuration may use: every field of the configuration form.
pub fn known_fields() -> Vec<String> {
    NodeConfig::default()
        .to_form()
        .fields
        .iter()
        .filter_map(|f| f.var.as_deref())
        .filter_map(|v| v.strip_prefix("pubsub#"))
        .map(str::to_owned)
        .collect()
}

/// A JSON object of configuration fields as a submitted `pubsub#node_config` form.
/// Unknown names are refused (a typo must not be ignored silently).
pub fn form_from_json(body: &Value) -> Result<DataForm, String> {
    let object = match body {
        Value::Object(o) => o,
        Value::Null => &Map::new(),
        _ => return Err("the body must be a JSON object of configuration fields".into()),
    };
    let known = known_fields();
    let mut fields = Vec::with_capacity(object.len());
    for (key, value) in object {
        if !known.iter().any(|k| k == key) {
            return Err(format!(
                "unknown configuration field `{key}`; known fields: {}",
                known.join(", ")
            ));
        }
        let values = match value {
            Value::String(s) => vec![s.clone()],
            Value::Bool(b) => vec![b.to_string()],
            Value::Number(n) => vec![n.to_string()],
            Value::Null => vec![],
            Value::Array(a) => a
                .iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s.clone()),
                    other => Ok(other.to_string()),
                })
                .collect::<Result<Vec<_>, String>>()?,
            Value::Object(_) => return Err(format!("`{key}`: expected a value, not an object")),
        };
        let mut field = Field::new(&format!("pubsub#{key}"), FieldType::TextSingle);
        field.values = values;
        fields.push(field);
    }
    Ok(DataForm::new(
        DataFormType::Submit,
        NODE_CONFIG_FORM_TYPE,
        fields,
    ))
}

/// A configuration as a JSON object in the shape [`form_from_json`] reads.
pub fn config_to_json(config: &NodeConfig) -> Value {
    let mut out = Map::new();
    for field in config.to_result_form().fields {
        let Some(name) = field.var.as_deref().and_then(|v| v.strip_prefix("pubsub#")) else {
            continue;
        };
        let value = match (field.type_, field.values.as_slice()) {
            (FieldType::Boolean, [v, ..]) => Value::Bool(matches!(v.as_str(), "1" | "true")),
            (FieldType::ListMulti | FieldType::TextMulti | FieldType::JidMulti, vs) => {
                Value::Array(vs.iter().cloned().map(Value::String).collect())
            }
            (_, []) => Value::Null,
            (_, [v, ..]) if NUMERIC.contains(&name) => v
                .parse::<u64>()
                .map(Value::from)
                .unwrap_or_else(|_| Value::String(v.clone())),
            (_, [v, ..]) => Value::String(v.clone()),
        };
        out.insert(name.to_owned(), value);
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{AccessModel, ServiceLimits};

    #[test]
    fn json_configuration_goes_through_the_domain_form_rules() {
        let form = form_from_json(&serde_json::json!({
            "title": "News", "access_model": "whitelist", "max_items": 5, "notify_retract": false
        }))
        .unwrap();
        let mut config = NodeConfig::default();
        config.apply_form(&form, &ServiceLimits::default()).unwrap();
        assert_eq!(config.title.as_deref(), Some("News"));
        assert_eq!(config.access_model, AccessModel::Whitelist);
        assert!(!config.notify_retract);
        let back = config_to_json(&config);
        assert_eq!(back["title"], "News");
        assert_eq!(back["max_items"], 5);
        assert_eq!(back["notify_retract"], false);
    }

    #[test]
    fn unknown_fields_are_refused() {
        let e = form_from_json(&serde_json::json!({"acess_model": "open"})).unwrap_err();
        assert!(e.contains("acess_model"), "{e}");
    }
}
