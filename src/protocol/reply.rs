//! Building IQ answers. Every request gets exactly one: a result or a stanza error.

use minidom::Element;
use xmpp_parsers::iq::Iq;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};

use super::stanza::IqRequest;
use crate::xmpp::render::to_xml;

/// A successful answer with an optional payload, as XML text.
pub fn result(req: &IqRequest, payload: Option<Element>) -> String {
    to_xml(&Element::from(Iq::Result {
        from: Some(req.to.clone()),
        to: Some(req.from.clone()),
        id: req.id.clone(),
        payload,
    }))
}

/// An error answer, as XML text.
pub fn error(req: &IqRequest, err: StanzaError) -> String {
    error_to(&req.to, &req.from, &req.id, err)
}

/// An error answer built from the request's addressing parts.
pub fn error_to(
    us: &xmpp_parsers::jid::Jid,
    them: &xmpp_parsers::jid::Jid,
    id: &str,
    err: StanzaError,
) -> String {
    to_xml(&Element::from(Iq::Error {
        from: Some(us.clone()),
        to: Some(them.clone()),
        id: id.to_string(),
        payload: None,
        error: err,
    }))
}

/// A stanza error with just a type and a defined condition.
pub fn simple(kind: ErrorType, condition: DefinedCondition) -> StanzaError {
    StanzaError::new(kind, condition, "en", "")
}

/// A stanza error with human-readable text.
pub fn with_text(kind: ErrorType, condition: DefinedCondition, text: &str) -> StanzaError {
    StanzaError::new(kind, condition, "en", text)
}
