//! Reading the parts of a pubsub request that xmpp-parsers does not expose or rejects
//! too coarsely: which verb it is, the attributes whose absence has its own XEP-0060
//! error (`nodeid-required`, `jid-required`), the fields xmpp-parsers keeps private
//! (unsubscribe, subscriptions, owner affiliations), and the XEP-0059 `<set/>` that
//! its `PubSub` type does not accept inside `<pubsub/>`.

use minidom::Element;
use xmpp_parsers::jid::Jid;
use xmpp_parsers::ns;
use xmpp_parsers::rsm::SetQuery;

use crate::domain::{DomainError, NodeId, SubId};

/// The first child of `<pubsub/>`: what the request is about.
pub fn verb(pubsub: &Element) -> Option<&Element> {
    pubsub.children().find(|c| c.ns() == pubsub.ns())
}

/// The `node` attribute, required.
pub fn node(el: &Element) -> Result<NodeId, DomainError> {
    match el.attr("node") {
        None | Some("") => Err(DomainError::NodeIdRequired),
        Some(n) => NodeId::parse(n),
    }
}

/// The `node` attribute, optional.
pub fn optional_node(el: &Element) -> Result<Option<NodeId>, DomainError> {
    match el.attr("node") {
        None | Some("") => Ok(None),
        Some(n) => NodeId::parse(n).map(Some),
    }
}

/// The `jid` attribute, required.
pub fn jid(el: &Element) -> Result<Jid, DomainError> {
    match el.attr("jid") {
        None | Some("") => Err(DomainError::JidRequired),
        Some(j) => j.parse().map_err(|_| DomainError::InvalidJid),
    }
}

/// The `subid` attribute, optional.
pub fn subid(el: &Element) -> Result<Option<SubId>, DomainError> {
    match el.attr("subid") {
        None | Some("") => Ok(None),
        Some(s) => SubId::parse(s).map(Some),
    }
}

/// Splits an XEP-0059 `<set/>` off a copy of `<pubsub/>`, so the rest parses with
/// xmpp-parsers' `PubSub`.
pub fn take_rsm(pubsub: &Element) -> Result<(Element, Option<SetQuery>), DomainError> {
    let mut rest = Element::builder(pubsub.name(), pubsub.ns());
    let mut set = None;
    for child in pubsub.children() {
        if child.is("set", ns::RSM) {
            if set.is_some() {
                return Err(DomainError::BadRequest("more than one <set/>".into()));
            }
            set = Some(
                SetQuery::try_from(child.clone())
                    .map_err(|e| DomainError::BadRequest(format!("invalid <set/>: {e}")))?,
            );
        } else {
            rest = rest.append(child.clone());
        }
    }
    Ok((rest.build(), set))
}

/// In subscribe-and-configure (XEP-0060 §6.3.7, Example 69) `<options/>` carries no
/// `jid`; xmpp-parsers requires one, so the subscriber's JID is copied onto it.
pub fn options_inherit_jid(mut pubsub: Element) -> Element {
    let jid = match pubsub
        .get_child("subscribe", ns::PUBSUB)
        .and_then(|s| s.attr("jid"))
    {
        Some(j) => j.to_owned(),
        None => return pubsub,
    };
    if let Some(options) = pubsub.get_child_mut("options", ns::PUBSUB) {
        if options.attr("jid").is_none() {
            options.set_attr(
                minidom::rxml::Namespace::NONE,
                minidom::rxml::NcName::try_from("jid").expect("literal XML name"),
                jid,
            );
        }
    }
    pubsub
}

/// Refuses a `<pubsub/>` with the same verb element twice, which xmpp-parsers would
/// otherwise resolve silently.
pub fn no_duplicate_children(pubsub: &Element) -> Result<(), DomainError> {
    let mut seen: Vec<&str> = Vec::new();
    for child in pubsub.children() {
        if seen.contains(&child.name()) {
            return Err(DomainError::BadRequest(format!(
                "<{}/> appears more than once",
                child.name()
            )));
        }
        seen.push(child.name());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn el(xml: &str) -> Element {
        xml.parse().unwrap()
    }

    #[test]
    fn missing_node_is_nodeid_required_and_bad_node_is_bad_request() {
        let e = el("<items xmlns='http://jabber.org/protocol/pubsub'/>");
        assert_eq!(node(&e), Err(DomainError::NodeIdRequired));
        let e = el("<items xmlns='http://jabber.org/protocol/pubsub' node='a&#x9;b'/>");
        assert!(matches!(node(&e), Err(DomainError::BadRequest(_))));
    }

    #[test]
    fn invalid_jid_is_invalid_jid() {
        let e = el("<subscribe xmlns='http://jabber.org/protocol/pubsub' node='n' jid='@@'/>");
        assert_eq!(jid(&e), Err(DomainError::InvalidJid));
        let e = el("<subscribe xmlns='http://jabber.org/protocol/pubsub' node='n'/>");
        assert_eq!(jid(&e), Err(DomainError::JidRequired));
    }

    #[test]
    fn rsm_set_is_split_off() {
        let p = el("<pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='n'/><set xmlns='http://jabber.org/protocol/rsm'><max>2</max><after>x</after></set></pubsub>");
        let (rest, set) = take_rsm(&p).unwrap();
        assert_eq!(rest.children().count(), 1);
        let set = set.unwrap();
        assert_eq!(set.max, Some(2));
        assert_eq!(set.after.as_deref(), Some("x"));
    }

    #[test]
    fn duplicate_verbs_are_refused() {
        let p = el("<pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='a'/><items node='b'/></pubsub>");
        assert!(no_duplicate_children(&p).is_err());
    }
}
