//! Item payloads over HTTP.
//!
//! A publish body is either XML (`application/xml`, `text/xml`, `application/atom+xml`
//! or any `+xml` type): exactly one namespaced element, which becomes the payload as
//! it is; or JSON (`application/json` or any `+json` type), which is checked to be
//! JSON and wrapped per XEP-0335 as `<json xmlns='urn:xmpp:json:0'>…</json>`, so XMPP
//! subscribers receive it in the standard form. Reading an item gives it back the same
//! way: a JSON-wrapped payload as JSON, anything else as XML.

use axum::http::{header, HeaderMap};
use minidom::Element;
use serde_json::{json, Value};

use super::errors::ApiError;
use crate::store::ItemRecord;

/// XEP-0335's namespace for JSON payloads.
pub const NS_JSON: &str = "urn:xmpp:json:0";

/// What kind of body a request carries, from its Content-Type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    Xml,
    Json,
}

/// Reads the Content-Type; other types are a 415.
pub fn body_kind(headers: &HeaderMap) -> Result<BodyKind, ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match mime.as_str() {
        "application/json" => Ok(BodyKind::Json),
        "application/xml" | "text/xml" => Ok(BodyKind::Xml),
        m if m.ends_with("+json") => Ok(BodyKind::Json),
        m if m.ends_with("+xml") => Ok(BodyKind::Xml),
        _ => Err(ApiError::UnsupportedMediaType(format!(
            "send the payload as application/json or as XML (application/xml, application/atom+xml), not `{ct}`"
        ))),
    }
}

/// The payload element for a publish body.
pub fn payload_from_body(kind: BodyKind, body: &[u8]) -> Result<Element, ApiError> {
    parse_payload(kind, body).map_err(ApiError::bad_request)
}

/// The payload element for a body of the given kind, or what is wrong with it (also
/// used by `pubsubd publish`).
pub fn parse_payload(kind: BodyKind, body: &[u8]) -> Result<Element, String> {
    let text = std::str::from_utf8(body).map_err(|_| "the body is not UTF-8".to_string())?;
    match kind {
        BodyKind::Json => {
            serde_json::from_str::<Value>(text)
                .map_err(|e| format!("the body is not JSON: {e}"))?;
            Ok(Element::builder("json", NS_JSON)
                .append(text.trim().to_owned())
                .build())
        }
        BodyKind::Xml => {
            let trimmed = strip_xml_declaration(text.trim());
            match crate::xml::parse(trimmed) {
                Ok(el) if !el.ns().is_empty() => Ok(el),
                Ok(_) => Err("the body must be exactly one XML element with a namespace".into()),
                Err(e) => Err(format!(
                    "the body must be exactly one XML element with a namespace: {e}"
                )),
            }
        }
    }
}

/// minidom takes an element, not a document: drop a leading `<?xml …?>`.
fn strip_xml_declaration(text: &str) -> &str {
    match text.strip_prefix("<?xml") {
        Some(rest) => rest
            .find("?>")
            .map_or(text, |end| rest[end + 2..].trim_start()),
        None => text,
    }
}

/// The JSON inside a XEP-0335 payload, if the stored payload is one.
pub fn json_payload(payload: &str) -> Option<Value> {
    let el: Element = crate::xml::parse(payload).ok()?;
    if !el.is("json", NS_JSON) {
        return None;
    }
    serde_json::from_str(&el.text()).ok()
}

/// An item as listed in JSON: id, publisher, time, and the payload as stored (plus the
/// JSON itself for XEP-0335 payloads).
pub fn item_json(item: &ItemRecord) -> Value {
    let mut v = json!({
        "id": item.id.as_str(),
        "publisher": item.publisher,
        "published": item.published_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "payload": item.payload,
    });
    if let Some(j) = item.payload.as_deref().and_then(json_payload) {
        v["json"] = j;
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_bodies_are_wrapped_per_xep_0335_and_read_back() {
        let el = payload_from_body(BodyKind::Json, br#"{"temp": 21.5, "tag": "<b>"}"#).unwrap();
        assert!(el.is("json", NS_JSON));
        let stored = String::from(&el);
        assert_eq!(json_payload(&stored).unwrap()["tag"], "<b>");
    }

    #[test]
    fn xml_bodies_must_be_one_namespaced_element() {
        let el = payload_from_body(
            BodyKind::Xml,
            b"<?xml version='1.0'?>\n<entry xmlns='http://www.w3.org/2005/Atom'><title>t</title></entry>",
        )
        .unwrap();
        assert!(el.is("entry", "http://www.w3.org/2005/Atom"));
        assert!(payload_from_body(BodyKind::Xml, b"not xml").is_err());
        assert!(payload_from_body(BodyKind::Json, b"{not json").is_err());
    }

    #[test]
    fn content_types_are_recognised() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            "application/atom+xml; charset=utf-8".parse().unwrap(),
        );
        assert_eq!(body_kind(&h).unwrap(), BodyKind::Xml);
        h.insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
        assert_eq!(body_kind(&h).unwrap(), BodyKind::Json);
        h.insert(header::CONTENT_TYPE, "text/plain".parse().unwrap());
        assert!(body_kind(&h).is_err());
    }
}
