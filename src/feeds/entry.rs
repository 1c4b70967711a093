//! A parsed feed entry (Atom, RSS or JSON Feed, as `feed-rs` reads them) as the item
//! pubsubd publishes: an Atom 1.0 `<entry xmlns='http://www.w3.org/2005/Atom'>`.
//!
//! The item id is derived from the entry id alone (the first 128 bits of its SHA-256,
//! in hex), so the same entry always lands on the same item: a re-poll overwrites
//! instead of duplicating. The content hash covers everything rendered from the feed
//! (not the fallback date added for undated entries), so an entry is republished only
//! when the feed changed it.

use chrono::{DateTime, SecondsFormat, Utc};
use feed_rs::model::{Entry, Text};
use minidom::rxml::NcName;
use minidom::Element;
use sha2::{Digest, Sha256};

use crate::domain::ItemId;

/// The Atom namespace.
pub const NS_ATOM: &str = "http://www.w3.org/2005/Atom";

/// An entry ready to publish.
#[derive(Debug, Clone)]
pub struct PreparedEntry {
    pub item_id: ItemId,
    /// Hex SHA-256 of the rendered entry without fallback date.
    pub content_hash: String,
    pub payload: Element,
    /// When the feed says the entry was last updated (or published).
    pub date: Option<DateTime<Utc>>,
}

/// The item id for an entry id.
pub fn item_id(entry_id: &str) -> ItemId {
    let digest = Sha256::digest(entry_id.as_bytes());
    let hex = hex::encode(&digest[..16]);
    // 32 hex digits always make a valid id.
    ItemId::parse(&hex).unwrap_or_else(|_| ItemId::generate())
}

/// Renders an entry; `now` is the `updated` of entries that have no date.
pub fn prepare(entry: &Entry, now: DateTime<Utc>) -> PreparedEntry {
    let date = entry.updated.or(entry.published);
    let hashed = render(entry, date);
    let content_hash = hex::encode(Sha256::digest(String::from(&hashed).as_bytes()));
    let payload = match date {
        Some(_) => hashed,
        None => render(entry, Some(now)),
    };
    PreparedEntry {
        item_id: item_id(&entry.id),
        content_hash,
        payload,
        date,
    }
}

/// Entries in the order to publish them: oldest first, so the newest entry is the
/// node's newest item. Undated entries keep the feed's order (newest first in the
/// document, so they are reversed).
pub fn publish_order(mut entries: Vec<PreparedEntry>) -> Vec<PreparedEntry> {
    entries.reverse();
    entries.sort_by_key(|e| e.date);
    entries
}

fn attr(n: &'static str) -> NcName {
    NcName::try_from(n).expect("attribute names here are valid XML names")
}

fn el(name: &str, text: &str) -> Element {
    Element::builder(name, NS_ATOM)
        .append(text.to_owned())
        .build()
}

fn time(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Atom's text type for a media type.
fn text_type(mime: &str) -> &'static str {
    if mime.starts_with("text/html") || mime.contains("xhtml") {
        "html"
    } else {
        "text"
    }
}

fn text_construct(name: &str, t: &Text) -> Element {
    Element::builder(name, NS_ATOM)
        .attr(attr("type"), text_type(t.content_type.as_ref()))
        .append(t.content.clone())
        .build()
}

fn render(entry: &Entry, updated: Option<DateTime<Utc>>) -> Element {
    let mut e = Element::builder("entry", NS_ATOM)
        .append(el("id", &entry.id))
        .build();
    match &entry.title {
        Some(t) => e.append_child(text_construct("title", t)),
        None => e.append_child(el("title", "")),
    };
    if let Some(u) = updated {
        e.append_child(el("updated", &time(&u)));
    }
    if let Some(p) = entry.published {
        e.append_child(el("published", &time(&p)));
    }
    for person in &entry.authors {
        let mut a = Element::builder("author", NS_ATOM)
            .append(el("name", &person.name))
            .build();
        if let Some(uri) = &person.uri {
            a.append_child(el("uri", uri));
        }
        if let Some(email) = &person.email {
            a.append_child(el("email", email));
        }
        e.append_child(a);
    }
    for link in &entry.links {
        e.append_child(
            Element::builder("link", NS_ATOM)
                .attr(attr("href"), link.href.clone())
                .attr(attr("rel"), link.rel.clone())
                .attr(attr("type"), link.media_type.clone())
                .attr(attr("title"), link.title.clone())
                .attr(attr("length"), link.length.map(|n| n.to_string()))
                .build(),
        );
    }
    for c in &entry.categories {
        e.append_child(
            Element::builder("category", NS_ATOM)
                .attr(attr("term"), c.term.clone())
                .attr(attr("scheme"), c.scheme.clone())
                .attr(attr("label"), c.label.clone())
                .build(),
        );
    }
    if let Some(s) = &entry.summary {
        e.append_child(text_construct("summary", s));
    }
    if let Some(c) = &entry.content {
        let mime = c.content_type.to_string();
        match (&c.body, &c.src) {
            (Some(body), _) => {
                e.append_child(
                    Element::builder("content", NS_ATOM)
                        .attr(attr("type"), text_type(&mime))
                        .append(body.clone())
                        .build(),
                );
            }
            (None, Some(src)) => {
                e.append_child(
                    Element::builder("content", NS_ATOM)
                        .attr(attr("src"), src.href.clone())
                        .attr(attr("type"), mime)
                        .build(),
                );
            }
            (None, None) => {}
        }
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    const ATOM: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom">
  <title>Example</title><id>urn:feed</id><updated>2024-01-02T00:00:00Z</updated>
  <entry><id>urn:e2</id><title>Second &amp; last</title><updated>2024-01-02T00:00:00Z</updated>
    <link href="https://example.org/2"/><content type="html">&lt;p&gt;two&lt;/p&gt;</content></entry>
  <entry><id>urn:e1</id><title>First</title><updated>2024-01-01T00:00:00Z</updated></entry>
</feed>"#;

    const RSS: &str = r#"<?xml version="1.0"?>
<rss version="2.0"><channel><title>R</title><link>https://example.org/</link>
  <item><guid>tag:r1</guid><title>Undated</title><description>hello</description></item>
</channel></rss>"#;

    fn parse(text: &str) -> feed_rs::model::Feed {
        feed_rs::parser::parse(text.as_bytes()).unwrap()
    }

    #[test]
    fn atom_entries_become_atom_items_oldest_first_with_stable_ids() {
        let feed = parse(ATOM);
        let now = Utc::now();
        let entries: Vec<_> = feed.entries.iter().map(|e| prepare(e, now)).collect();
        let ordered = publish_order(entries);
        assert_eq!(ordered[0].item_id, item_id("urn:e1"));
        assert_eq!(ordered[1].item_id, item_id("urn:e2"));
        let second = &ordered[1].payload;
        assert!(second.is("entry", NS_ATOM));
        assert_eq!(
            second.get_child("title", NS_ATOM).unwrap().text(),
            "Second & last"
        );
        let content = second.get_child("content", NS_ATOM).unwrap();
        assert_eq!(content.attr("type"), Some("html"));
        assert_eq!(content.text(), "<p>two</p>");
    }

    #[test]
    fn undated_entries_hash_the_same_on_every_poll() {
        let feed = parse(RSS);
        let a = prepare(&feed.entries[0], Utc::now());
        let b = prepare(&feed.entries[0], Utc::now() + chrono::Duration::hours(1));
        assert_eq!(a.content_hash, b.content_hash);
        assert_eq!(a.item_id, item_id("tag:r1"));
        assert!(a.payload.get_child("updated", NS_ATOM).is_some());
    }

    #[test]
    fn a_changed_entry_changes_its_hash_but_not_its_id() {
        let changed = ATOM.replace("Second &amp; last", "Second, edited");
        let a = prepare(&parse(ATOM).entries[0], Utc::now());
        let b = prepare(&parse(&changed).entries[0], Utc::now());
        assert_eq!(a.item_id, b.item_id);
        assert_ne!(a.content_hash, b.content_hash);
    }
}
