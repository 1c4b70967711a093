//! Guarding the rest of pubsubd against deeply nested stanzas.
//!
//! minidom clones, serialises and drops elements recursively, so a stanza nested a few
//! tens of thousands of levels deep (a few hundred KB of `<a>`) would overflow a task's
//! stack. Every stanza read is measured here without recursion; one nested deeper than
//! [`MAX_DEPTH`] is taken apart iteratively and replaced by its top element (name and
//! attributes) holding a single [`TOO_DEEP`] marker, which the protocol layer refuses.

use minidom::{Element, Node};

/// Deepest nesting accepted, counting the stanza itself as 1. Atom entries with XHTML
/// content are a few dozen levels deep; nothing real comes near this.
pub const MAX_DEPTH: usize = 128;

/// Namespace of the marker child that replaces a too-deep stanza's content.
pub const TOO_DEEP_NS: &str = "urn:pubsubd:internal";
/// Name of the marker child.
pub const TOO_DEEP: &str = "nested-too-deeply";

/// How deep `el` is nested, without recursion; stops counting past `limit`.
pub fn depth(el: &Element, limit: usize) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(el, 1usize)];
    while let Some((e, d)) = stack.pop() {
        deepest = deepest.max(d);
        if deepest > limit {
            return deepest;
        }
        stack.extend(e.children().map(|c| (c, d + 1)));
    }
    deepest
}

/// Takes `el` apart without recursion, so dropping it cannot overflow the stack.
fn dismantle(mut el: Element) {
    let mut stack = vec![];
    stack.extend(el.take_nodes());
    while let Some(node) = stack.pop() {
        if let Node::Element(mut e) = node {
            stack.extend(e.take_nodes());
        }
    }
}

/// `el` itself if it is shallow enough, else its top element with the marker.
pub fn guard(el: Element) -> Element {
    if depth(&el, MAX_DEPTH) <= MAX_DEPTH {
        return el;
    }
    let mut top = Element::builder(el.name(), el.ns()).build();
    *top.attrs_mut() = el.attrs().clone();
    top.append_child(Element::builder(TOO_DEEP, TOO_DEEP_NS).build());
    dismantle(el);
    top
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(levels: usize) -> Element {
        // Built bottom-up, without recursion.
        let mut el = Element::builder("leaf", "urn:deep").build();
        for _ in 1..levels {
            el = Element::builder("d", "urn:deep").append(el).build();
        }
        el
    }

    #[test]
    fn shallow_stanzas_pass_unchanged() {
        let el = nested(10);
        assert_eq!(depth(&el, MAX_DEPTH), 10);
        assert_eq!(guard(el.clone()), el);
    }

    #[test]
    fn a_hundred_thousand_levels_are_replaced_without_overflowing() {
        let mut iq = nested(100_000);
        iq.set_attr(
            minidom::rxml::Namespace::NONE,
            minidom::rxml::NcName::try_from("id").unwrap(),
            "x1",
        );
        let guarded = guard(iq);
        assert_eq!(guarded.attr("id"), Some("x1"));
        assert!(guarded.get_child(TOO_DEEP, TOO_DEEP_NS).is_some());
        assert_eq!(depth(&guarded, MAX_DEPTH), 2);
    }
}
