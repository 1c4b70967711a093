//! The node metadata form (`pubsub#meta-data`, XEP-0060 §5.4) that extends a node's
//! disco#info result per XEP-0128.
//!
//! It combines the stored configuration with facts the caller looks up (owners,
//! subscriber count, creation date), passed in as [`NodeFacts`].

use chrono::{DateTime, SecondsFormat, Utc};
use xmpp_parsers::data_forms::{DataForm, DataFormType, FieldType};
use xmpp_parsers::jid::BareJid;

use super::form_values::{multi_field, text_field};
use super::node_config::NodeConfig;

/// FORM_TYPE of the node metadata form.
pub const META_DATA_FORM_TYPE: &str = "http://jabber.org/protocol/pubsub#meta-data";

/// Facts about a node that are not part of its configuration.
#[derive(Debug, Clone, Copy)]
pub struct NodeFacts<'a> {
    /// Who created the node, if known.
    pub creator: Option<&'a BareJid>,
    /// When the node was created.
    pub created_at: DateTime<Utc>,
    /// Bare JIDs affiliated as owner.
    pub owners: &'a [BareJid],
    /// Bare JIDs affiliated as publisher.
    pub publishers: &'a [BareJid],
    /// Number of active subscriptions.
    pub num_subscribers: u64,
}

fn jids(list: &[BareJid]) -> Vec<String> {
    list.iter().map(ToString::to_string).collect()
}

impl NodeConfig {
    /// The `type='result'` metadata form for disco#info (fields of the §16.4.3 registry).
    pub fn meta_data_form(&self, facts: &NodeFacts<'_>) -> DataForm {
        let mut fields = vec![text_field(
            "pubsub#type",
            "Payload semantic type information",
            self.payload_type.as_deref(),
        )];
        if let Some(creator) = facts.creator {
            let mut field = text_field("pubsub#creator", "Node creator", Some(creator.as_str()));
            field.type_ = FieldType::JidSingle;
            fields.push(field);
        }
        fields.extend([
            text_field(
                "pubsub#creation_date",
                "Creation date",
                // XEP-0082 DateTime, UTC, whole seconds: 2003-07-29T22:56:10Z.
                Some(&facts.created_at.to_rfc3339_opts(SecondsFormat::Secs, true)),
            ),
            text_field("pubsub#title", "A short name for the node", self.title.as_deref()),
            text_field(
                "pubsub#description",
                "A description of the node",
                self.description.as_deref(),
            ),
            {
                let mut f = text_field(
                    "pubsub#access_model",
                    "Access model",
                    Some(self.access_model.as_str()),
                );
                f.type_ = FieldType::ListSingle;
                f
            },
            {
                let mut f = text_field(
                    "pubsub#publish_model",
                    "Publish model",
                    Some(self.publish_model.as_str()),
                );
                f.type_ = FieldType::ListSingle;
                f
            },
            text_field(
                "pubsub#max_items",
                "Max # of items to persist. `max` for no specific limit other than a server imposed maximum.",
                Some(&self.max_items.to_string()),
            ),
            multi_field("pubsub#owner", FieldType::JidMulti, "Node owners", jids(facts.owners)),
            multi_field(
                "pubsub#publisher",
                FieldType::JidMulti,
                "Publishers to this node",
                jids(facts.publishers),
            ),
            text_field(
                "pubsub#num_subscribers",
                "Number of subscribers to this node",
                Some(&facts.num_subscribers.to_string()),
            ),
        ]);
        DataForm::new(DataFormType::Result_, META_DATA_FORM_TYPE, fields)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn value<'f>(form: &'f DataForm, var: &str) -> Vec<&'f str> {
        form.fields
            .iter()
            .find(|f| f.var.as_deref() == Some(var))
            .map(|f| f.values.iter().map(String::as_str).collect())
            .unwrap_or_default()
    }

    #[test]
    fn metadata_form_matches_the_xep_example() {
        let hamlet = BareJid::new("hamlet@denmark.lit").unwrap();
        let config = NodeConfig {
            title: Some("Princely Musings (Atom)".into()),
            payload_type: Some("urn:example:e2ee:bundle".into()),
            ..NodeConfig::default()
        };
        let owners = [hamlet.clone()];
        let facts = NodeFacts {
            creator: Some(&hamlet),
            created_at: Utc.with_ymd_and_hms(2003, 7, 29, 22, 56, 10).unwrap(),
            owners: &owners,
            publishers: &owners,
            num_subscribers: 1066,
        };
        let form = config.meta_data_form(&facts);
        assert_eq!(form.type_, DataFormType::Result_);
        assert_eq!(form.form_type(), Some(META_DATA_FORM_TYPE));
        assert_eq!(
            value(&form, "pubsub#creation_date"),
            ["2003-07-29T22:56:10Z"]
        );
        assert_eq!(value(&form, "pubsub#creator"), ["hamlet@denmark.lit"]);
        assert_eq!(value(&form, "pubsub#owner"), ["hamlet@denmark.lit"]);
        assert_eq!(value(&form, "pubsub#num_subscribers"), ["1066"]);
        assert_eq!(value(&form, "pubsub#access_model"), ["open"]);
        assert_eq!(value(&form, "pubsub#max_items"), ["1000"]);
        assert_eq!(value(&form, "pubsub#type"), ["urn:example:e2ee:bundle"]);
    }

    #[test]
    fn unknown_creator_is_omitted() {
        let facts = NodeFacts {
            creator: None,
            created_at: Utc::now(),
            owners: &[],
            publishers: &[],
            num_subscribers: 0,
        };
        let form = NodeConfig::default().meta_data_form(&facts);
        assert!(form
            .fields
            .iter()
            .all(|f| f.var.as_deref() != Some("pubsub#creator")));
    }
}
