//! Service-wide policy: the `[service]` table of the configuration file.
//!
//! ```toml
//! [service]
//! admins = ["admin@example.org"]        # act as owners of every node
//! create_nodes = "anyone"               # "anyone" | "nobody" | "domains" | "jids"
//! create_domains = ["example.org"]      # with create_nodes = "domains"
//! create_jids = ["feeds@example.org"]   # with create_nodes = "jids"
//! auto_create = true                    # publishing to a missing node creates it
//! hide_private_nodes = true             # disco#items hides whitelist nodes from outsiders
//! max_items = 10000                     # ceiling on pubsub#max_items
//! max_nodes_per_owner = 1000
//! max_subscriptions_per_jid = 10000
//! root_collection = "firehose"         # every new open leaf joins this collection
//! max_roster_owners = 4                 # owners' rosters read per request
//! revocation_owners_per_tick = 100      # owners the revocation sweep judges per 5 s
//!
//! [service.default_config]              # node defaults, pubsub#<name> = value
//! access_model = "open"
//! max_items = 100
//! notification_type = "normal"
//! ```

use xmpp_parsers::data_forms::{DataForm, DataFormType, Field, FieldType};
use xmpp_parsers::jid::BareJid;

use crate::domain::{CreatePolicy, NodeConfig, NodeId, ServiceLimits, NODE_CONFIG_FORM_TYPE};

/// Service-wide settings.
#[derive(Debug, Clone)]
pub struct Policy {
    pub admins: Vec<BareJid>,
    pub create: CreatePolicy,
    pub limits: ServiceLimits,
    /// The configuration of new nodes before the creator's own form is applied.
    pub default_config: NodeConfig,
    /// Publishing to a node that does not exist creates it (XEP-0060 §7.1.4).
    pub auto_create: bool,
    /// disco#items on the service lists whitelist nodes only to their affiliates.
    pub hide_private_nodes: bool,
    /// A collection node (XEP-0248) every new leaf with the `open` access model joins
    /// when it is created (by request or auto-created), if that collection exists: an
    /// "everything" firehose the operator creates once. Default: none.
    pub root_collection: Option<NodeId>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            admins: Vec::new(),
            create: CreatePolicy::Anyone,
            limits: ServiceLimits::default(),
            default_config: NodeConfig::default(),
            auto_create: true,
            hide_private_nodes: true,
            root_collection: None,
        }
    }
}

const KEYS: &[&str] = &[
    "admins",
    "create_nodes",
    "create_domains",
    "create_jids",
    "auto_create",
    "hide_private_nodes",
    "max_items",
    "max_nodes_per_owner",
    "max_subscriptions_per_jid",
    "max_roster_owners",
    "revocation_owners_per_tick",
    "default_config",
    "root_collection",
];

impl Policy {
    /// Reads the `[service]` table; `max_payload_size` is the top-level setting of the
    /// same name (the ceiling on `pubsub#max_payload_size`). Errors name the key.
    pub fn from_table(table: &toml::Table, max_payload_size: usize) -> Result<Policy, String> {
        if let Some(unknown) = table.keys().find(|k| !KEYS.contains(&k.as_str())) {
            return Err(format!("unknown key `service.{unknown}`"));
        }
        let mut p = Policy::default();
        p.limits.max_payload_size = u32::try_from(max_payload_size)
            .map_err(|_| "`max_payload_size` is too large".to_string())?;
        p.admins = jids(table, "admins")?;
        p.create = match str_value(table, "create_nodes")?.unwrap_or("anyone") {
            "anyone" => CreatePolicy::Anyone,
            "nobody" => CreatePolicy::Nobody,
            "domains" => CreatePolicy::Domains(strings(table, "create_domains")?),
            "jids" => CreatePolicy::Jids(jids(table, "create_jids")?),
            other => {
                return Err(format!(
                "`service.create_nodes`: expected anyone, nobody, domains or jids, got `{other}`"
            ))
            }
        };
        if let Some(v) = bool_value(table, "auto_create")? {
            p.auto_create = v;
        }
        if let Some(v) = bool_value(table, "hide_private_nodes")? {
            p.hide_private_nodes = v;
        }
        if let Some(v) = int_value(table, "max_items")? {
            p.limits.max_items = v;
        }
        p.root_collection = str_value(table, "root_collection")?
            .map(|name| NodeId::parse(name).map_err(|e| format!("`service.root_collection`: {e}")))
            .transpose()?;
        p.limits.max_nodes_per_owner = int_value(table, "max_nodes_per_owner")?;
        p.limits.max_subscriptions_per_jid = int_value(table, "max_subscriptions_per_jid")?;
        if let Some(v) = int_value(table, "max_roster_owners")? {
            p.limits.max_roster_owners = v;
        }
        if let Some(v) = int_value(table, "revocation_owners_per_tick")? {
            p.limits.revocation_owners_per_tick = v.max(1);
        }
        // Node defaults never exceed the ceilings.
        p.default_config.max_payload_size = p
            .default_config
            .max_payload_size
            .min(p.limits.max_payload_size);
        if let Some(defaults) = table.get("default_config") {
            let defaults = defaults
                .as_table()
                .ok_or("`service.default_config` must be a table")?;
            let form = defaults_form(defaults)?;
            p.default_config
                .apply_form(&form, &p.limits)
                .map_err(|e| format!("`service.default_config`: {e}"))?;
        }
        Ok(p)
    }
}

/// `[service.default_config]` as a submitted node configuration form, so the defaults
/// go through exactly the validation an owner's form does.
fn defaults_form(defaults: &toml::Table) -> Result<DataForm, String> {
    let mut fields = Vec::new();
    for (key, value) in defaults {
        let text = match value {
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            _ => {
                return Err(format!(
                    "`service.default_config.{key}`: expected a string, number or boolean"
                ))
            }
        };
        fields.push(Field::new(&format!("pubsub#{key}"), FieldType::TextSingle).with_value(&text));
    }
    Ok(DataForm::new(
        DataFormType::Submit,
        NODE_CONFIG_FORM_TYPE,
        fields,
    ))
}

fn str_value<'t>(t: &'t toml::Table, key: &str) -> Result<Option<&'t str>, String> {
    match t.get(key) {
        None => Ok(None),
        Some(toml::Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(format!("`service.{key}` must be a string")),
    }
}

fn bool_value(t: &toml::Table, key: &str) -> Result<Option<bool>, String> {
    match t.get(key) {
        None => Ok(None),
        Some(toml::Value::Boolean(b)) => Ok(Some(*b)),
        Some(_) => Err(format!("`service.{key}` must be true or false")),
    }
}

fn int_value(t: &toml::Table, key: &str) -> Result<Option<u32>, String> {
    match t.get(key) {
        None => Ok(None),
        Some(toml::Value::Integer(i)) => u32::try_from(*i)
            .map(Some)
            .map_err(|_| format!("`service.{key}` must be between 0 and {}", u32::MAX)),
        Some(_) => Err(format!("`service.{key}` must be a number")),
    }
}

fn strings(t: &toml::Table, key: &str) -> Result<Vec<String>, String> {
    match t.get(key) {
        None => Ok(Vec::new()),
        Some(toml::Value::Array(a)) => a
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| format!("`service.{key}` must be a list of strings"))
            })
            .collect(),
        Some(_) => Err(format!("`service.{key}` must be a list of strings")),
    }
}

fn jids(t: &toml::Table, key: &str) -> Result<Vec<BareJid>, String> {
    strings(t, key)?
        .into_iter()
        .map(|s| {
            s.parse::<BareJid>()
                .map_err(|e| format!("`service.{key}`: `{s}` is not a bare JID: {e}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::AccessModel;

    fn table(text: &str) -> toml::Table {
        toml::from_str(text).expect("valid toml")
    }

    #[test]
    fn empty_table_gives_the_defaults() {
        let p = Policy::from_table(&toml::Table::new(), 65536).unwrap();
        assert!(p.auto_create);
        assert_eq!(p.create, CreatePolicy::Anyone);
        assert_eq!(p.limits.max_payload_size, 65536);
    }

    #[test]
    fn the_roster_bounds_are_read_and_default_to_four_owners_and_a_hundred_per_tick() {
        let p = Policy::from_table(&toml::Table::new(), 65536).expect("defaults");
        assert_eq!(p.limits.max_roster_owners, 4);
        assert_eq!(p.limits.revocation_owners_per_tick, 100);
        let p = Policy::from_table(
            &table("max_roster_owners = 1\nrevocation_owners_per_tick = 0\n"),
            65536,
        )
        .expect("read");
        assert_eq!(p.limits.max_roster_owners, 1);
        assert_eq!(p.limits.revocation_owners_per_tick, 1, "at least one");
    }

    #[test]
    fn admins_creation_policy_and_default_config_are_read() {
        let p = Policy::from_table(
            &table(
                "admins = ['root@example.org']\ncreate_nodes = 'domains'\ncreate_domains = ['example.org']\n[default_config]\naccess_model = 'whitelist'\nmax_items = 5\n",
            ),
            65536,
        )
        .unwrap();
        assert_eq!(p.admins.len(), 1);
        assert_eq!(p.create, CreatePolicy::Domains(vec!["example.org".into()]));
        assert_eq!(p.default_config.access_model, AccessModel::Whitelist);
        assert_eq!(p.default_config.max_items.to_string(), "5");
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_key() {
        let e = Policy::from_table(&table("admin = []"), 1).unwrap_err();
        assert!(e.contains("service.admin"), "{e}");
        let e =
            Policy::from_table(&table("[default_config]\naccess_model = 'secret'"), 1).unwrap_err();
        assert!(e.contains("default_config"), "{e}");
        let e = Policy::from_table(&table("admins = ['not a jid@@']"), 1).unwrap_err();
        assert!(e.contains("service.admins"), "{e}");
    }
}
