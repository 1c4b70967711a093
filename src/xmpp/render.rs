//! Turning outgoing stanzas into bytes. Outgoing stanzas travel as finished XML text so
//! that fan-out can render a notification body once and wrap it per subscriber without
//! building (or cloning) an element tree per recipient.

use minidom::Element;

/// Serialises an element into a string in the component stream's default namespace.
///
/// minidom writes the element's own namespace declaration on the root; for stanzas that
/// is `jabber:component:accept`, the stream's default, which the server accepts.
pub fn to_xml(el: &Element) -> String {
    String::from(el)
}

/// Escapes text for use inside an XML attribute value delimited by `'` or `"`, or in
/// character data.
pub fn escape(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.contains(['&', '<', '>', '\'', '"']) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\'' => out.push_str("&apos;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_leaves_plain_text_alone_and_escapes_markup() {
        assert!(matches!(
            escape("user@example.org/res"),
            std::borrow::Cow::Borrowed(_)
        ));
        assert_eq!(escape("a<'&\">"), "a&lt;&apos;&amp;&quot;&gt;");
    }
}
