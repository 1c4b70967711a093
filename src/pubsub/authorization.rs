//! The subscription approval form (XEP-0060 §8.6): sent to the owners of an
//! `authorize` node when someone asks to subscribe, and submitted back by one of them
//! in a `<message/>`.

use xmpp_parsers::data_forms::{DataForm, DataFormType, Field, FieldType};
use xmpp_parsers::jid::Jid;

use crate::domain::{DomainError, NodeId, SubId};

/// FORM_TYPE of the approval form.
pub const FORM_TYPE: &str = "http://jabber.org/protocol/pubsub#subscribe_authorization";

/// The form an owner receives for a pending subscription.
pub fn request_form(node: &NodeId, subscriber: &Jid, subid: &SubId) -> DataForm {
    let mut form = DataForm::new(
        DataFormType::Form,
        FORM_TYPE,
        vec![
            Field::new("pubsub#subid", FieldType::Hidden).with_value(subid.as_str()),
            labelled(
                "pubsub#node",
                FieldType::TextSingle,
                "Node ID",
                node.as_str(),
            ),
            labelled(
                "pubsub#subscriber_jid",
                FieldType::JidSingle,
                "Subscriber Address",
                &subscriber.to_string(),
            ),
            labelled(
                "pubsub#allow",
                FieldType::Boolean,
                "Allow this JID to subscribe to this pubsub node?",
                "false",
            ),
        ],
    );
    form.title = Some("PubSub subscriber request".into());
    form.instructions = Some(
        "To approve this entity's subscription request, click the OK button. To deny the request, click the cancel button."
            .into(),
    );
    form
}

fn labelled(var: &str, type_: FieldType, label: &str, value: &str) -> Field {
    let mut f = Field::new(var, type_).with_value(value);
    f.label = Some(label.to_owned());
    f
}

/// An owner's answer, read from a submitted approval form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub node: NodeId,
    pub subscriber: Jid,
    pub subid: Option<SubId>,
    pub allow: bool,
}

fn value<'f>(form: &'f DataForm, var: &str) -> Option<&'f str> {
    form.fields
        .iter()
        .find(|f| f.var.as_deref() == Some(var))
        .and_then(|f| f.values.first())
        .map(String::as_str)
}

/// Reads a submitted approval form; `None` if the form is not one.
pub fn decision(form: &DataForm) -> Option<Result<Decision, DomainError>> {
    if form.form_type() != Some(FORM_TYPE) {
        return None;
    }
    Some(read(form))
}

fn read(form: &DataForm) -> Result<Decision, DomainError> {
    let bad = |what: &str| DomainError::BadRequest(format!("approval form: {what}"));
    let node = NodeId::parse(value(form, "pubsub#node").ok_or_else(|| bad("no pubsub#node"))?)?;
    let subscriber: Jid = value(form, "pubsub#subscriber_jid")
        .ok_or_else(|| bad("no pubsub#subscriber_jid"))?
        .parse()
        .map_err(|_| bad("pubsub#subscriber_jid is not a JID"))?;
    let subid = value(form, "pubsub#subid").map(SubId::parse).transpose()?;
    let allow = match form.type_ {
        DataFormType::Cancel => false,
        DataFormType::Submit => matches!(value(form, "pubsub#allow"), Some("1" | "true")),
        _ => return Err(bad("expected a submitted or cancelled form")),
    };
    Ok(Decision {
        node,
        subscriber,
        subid,
        allow,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn submitted_request_form_reads_back_as_the_owners_decision() {
        let node = NodeId::parse("princely_musings").unwrap();
        let jid: Jid = "horatio@denmark.lit".parse().unwrap();
        let subid = SubId::parse("123-abc").unwrap();
        let mut form = request_form(&node, &jid, &subid);
        form.type_ = DataFormType::Submit;
        for f in &mut form.fields {
            if f.var.as_deref() == Some("pubsub#allow") {
                f.values = vec!["true".into()];
            }
        }
        let d = decision(&form).unwrap().unwrap();
        assert_eq!(d.node, node);
        assert_eq!(d.subscriber, jid);
        assert_eq!(d.subid, Some(subid));
        assert!(d.allow);
    }

    #[test]
    fn other_forms_are_not_decisions() {
        let form = DataForm::new(DataFormType::Submit, "urn:example", vec![]);
        assert!(decision(&form).is_none());
    }
}
