//! Parsing XML text that arrives whole rather than on the component stream: item
//! payloads read back from the store, answers checked for metrics, HTTP bodies. The
//! same reader and the same per-stanza limits as the stream ([`stanza_reader`]), so
//! whatever was accepted there parses here too (minidom's own parser stops at 8 KiB
//! per attribute value and text run).
//!
//! A leaf module: it imports nothing of pubsubd, and every layer may use it.

use minidom::Element;
use stanza_reader::{Item, Limits, ReadError, Refusal};

/// Limits for text pubsubd handles whole: as large as the largest stanza the stream
/// reads by default, since a payload was at most that when it was accepted.
const LIMITS: Limits = Limits {
    max_stanza_bytes: stanza_reader::DEFAULT_MAX_STANZA_BYTES,
    max_depth: stanza_reader::DEFAULT_MAX_DEPTH,
    max_attributes: stanza_reader::DEFAULT_MAX_ATTRIBUTES,
    max_namespace_declarations: stanza_reader::DEFAULT_MAX_NAMESPACE_DECLARATIONS,
    max_name_bytes: stanza_reader::DEFAULT_MAX_NAME_BYTES,
};

/// Why a text is not one element.
#[derive(Debug, thiserror::Error)]
pub enum XmlError {
    #[error("not well-formed XML: {0}")]
    Malformed(ReadError),
    #[error("over a limit: {0}")]
    Refused(Refusal),
}

/// The one element `text` holds. An element without a namespace declaration is in no
/// namespace.
pub fn parse(text: &str) -> Result<Element, XmlError> {
    match stanza_reader::parse_stanza(text, "", LIMITS) {
        Ok(Item::Stanza(el)) => Ok(el),
        Ok(Item::Refused { refusal, .. }) => Err(XmlError::Refused(refusal)),
        Ok(Item::Header(_) | Item::Footer) => Err(XmlError::Malformed(ReadError::Eof)),
        Err(e) => Err(XmlError::Malformed(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_with_a_100_kb_attribute_parses() {
        let uri = "A".repeat(100_000);
        let el = parse(&format!("<img xmlns='urn:x' src='{uri}'/>")).expect("parses");
        assert!(el.is("img", "urn:x"));
        assert_eq!(el.attr("src"), Some(uri.as_str()));
    }

    #[test]
    fn what_is_not_one_element_is_an_error() {
        assert!(parse("<a xmlns='urn:x'>").is_err());
        assert!(parse("").is_err());
        assert!(parse("<a xmlns='urn:x'></b>").is_err());
        let el = parse("<plain/>").expect("parses");
        assert_eq!(el.ns(), "");
    }
}
