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
    with_text(kind, condition, "")
}

/// A stanza error with human-readable text; none if `text` is empty (RFC 6120's schema
/// has no empty `<text/>`, and it tells a reader nothing).
pub fn with_text(kind: ErrorType, condition: DefinedCondition, text: &str) -> StanzaError {
    let mut error = StanzaError::new(kind, condition, "en", text);
    if text.is_empty() {
        error.texts.clear();
    }
    error
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xml(error: StanzaError) -> String {
        to_xml(&Element::from(error))
    }

    #[test]
    fn an_error_without_text_has_no_empty_text_element() {
        let error = xml(simple(
            ErrorType::Cancel,
            DefinedCondition::ServiceUnavailable,
        ));
        assert!(error.contains("<service-unavailable"), "{error}");
        assert!(!error.contains("<text"), "{error}");
        let error = xml(with_text(
            ErrorType::Modify,
            DefinedCondition::BadRequest,
            "",
        ));
        assert!(!error.contains("<text"), "{error}");
    }

    #[test]
    fn an_error_with_text_carries_it_in_english() {
        let error = xml(with_text(
            ErrorType::Modify,
            DefinedCondition::PolicyViolation,
            "too deep",
        ));
        assert!(error.contains("xml:lang='en'>too deep</text>"), "{error}");
    }
}
