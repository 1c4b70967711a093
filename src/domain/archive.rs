//! A node's archive (XEP-0313 on pubsub nodes, as XEP-0442 specifies): what a query
//! asks for, and the paging rules that turn rows into a page. Pure; the protocol layer
//! reads the query from XML, the store runs it.
//!
//! The archive of a node is its stored items in publish order. An archive id is the
//! item's publish sequence number (`items.seq`, global across nodes and increasing),
//! written in decimal: an overwrite gives the item a new number (its old version leaves
//! the archive), a retraction, a purge or retention (`max_items`, `item_expire`)
//! removes it. Because the numbers are one service-wide order, any number the service
//! has handed out is a position in every node's archive: "after 41" is exact even when
//! item 41 has since been overwritten, retracted or trimmed.

use chrono::{DateTime, Utc};

use super::DomainError;

/// Items in one page when the client does not say: XEP-0313 lets the service limit
/// pages; 100 notifications of typical Atom entries are well under the stanza budget
/// of one answer and one round trip per 100 items keeps catching up quick.
pub const DEFAULT_PAGE: u32 = 100;

/// Most items in one page, whatever the client asks: each item is one `<message/>`
/// queued before the answer, and a page must not hold the answer lane for long.
pub const MAX_PAGE: u32 = 250;

/// An archive id: an item's publish sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ArchiveId(pub i64);

impl ArchiveId {
    /// Reads an id as a client sent it. Anything that is not a positive decimal number
    /// cannot be in any archive: `item-not-found`, as XEP-0313 requires for unknown ids.
    pub fn parse(s: &str) -> Result<Self, DomainError> {
        if s.is_empty() || s.len() > 19 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(DomainError::ItemNotFound);
        }
        match s.parse::<i64>() {
            Ok(n) if n > 0 => Ok(ArchiveId(n)),
            _ => Err(DomainError::ItemNotFound),
        }
    }
}

impl std::fmt::Display for ArchiveId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// The `with` filter on the publisher: a bare JID matches every resource of it
/// (XEP-0313 §4.1.1), a full JID only itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublisherFilter {
    Bare(String),
    Full(String),
}

/// Which end of the matching items a page is taken from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageFrom {
    /// The oldest matching items (no RSM `<before/>`): paging forward.
    Oldest,
    /// The newest matching items (RSM `<before/>`, empty or with an id): paging back.
    Newest,
}

/// What the store reads: the node's items matching every filter, from one end, at most
/// `limit`. Bounds are exclusive; `ids` empty means no id filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveQuery {
    pub after: Option<ArchiveId>,
    pub before: Option<ArchiveId>,
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
    pub with: Option<PublisherFilter>,
    pub ids: Vec<ArchiveId>,
    pub from: PageFrom,
    pub limit: u32,
}

/// A query as a client sent it: the XEP-0313 form fields and the XEP-0059 set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArchiveRequest {
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
    pub with: Option<PublisherFilter>,
    pub after_id: Option<ArchiveId>,
    pub before_id: Option<ArchiveId>,
    pub ids: Vec<ArchiveId>,
    /// RSM `<max/>`.
    pub max: Option<u32>,
    /// RSM `<after/>`.
    pub rsm_after: Option<ArchiveId>,
    /// RSM `<before/>`: `Some(None)` is the empty `<before/>` (the last page).
    pub rsm_before: Option<Option<ArchiveId>>,
}

impl ArchiveRequest {
    /// Every id the request names as a bound: each must be a position the service has
    /// handed out, or the answer is `item-not-found`.
    pub fn anchors(&self) -> Vec<ArchiveId> {
        [
            self.after_id,
            self.before_id,
            self.rsm_after,
            self.rsm_before.flatten(),
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    /// Items in the page: the client's `max`, or [`DEFAULT_PAGE`], at most [`MAX_PAGE`].
    pub fn page_size(&self) -> u32 {
        self.max.unwrap_or(DEFAULT_PAGE).min(MAX_PAGE)
    }

    /// The store query for this request: one row more than the page, so that the page
    /// knows whether it is the last one. The form's ids and RSM's ids are both bounds
    /// (the tighter one wins); RSM `<before/>` takes the page from the newest end
    /// (XEP-0313 §6: `before` pages backwards, `before-id` does not).
    pub fn query(&self) -> ArchiveQuery {
        let after = self.after_id.max(self.rsm_after);
        let before = match (self.before_id, self.rsm_before.flatten()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        ArchiveQuery {
            after,
            before,
            start: self.start,
            end: self.end,
            with: self.with.clone(),
            ids: self.ids.clone(),
            from: if self.rsm_before.is_some() {
                PageFrom::Newest
            } else {
                PageFrom::Oldest
            },
            limit: self.page_size().saturating_add(1),
        }
    }
}

/// A page of an archive, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Nothing more matches in the direction of paging (XEP-0313 `complete='true'`).
    pub complete: bool,
}

/// Turns the rows read for `query` (in the store's order: oldest first when paging
/// forward, newest first when paging back) into a page of at most `size` items, oldest
/// first. The extra row the query asked for only tells that the page is not the last.
pub fn page<T>(mut rows: Vec<T>, from: PageFrom, size: u32) -> Page<T> {
    let size = size as usize;
    let complete = rows.len() <= size;
    rows.truncate(size);
    if from == PageFrom::Newest {
        rows.reverse();
    }
    Page {
        items: rows,
        complete,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_positive_decimal_numbers_and_anything_else_is_not_found() {
        assert_eq!(ArchiveId::parse("42"), Ok(ArchiveId(42)));
        for bad in ["", "0", "-3", "4x", " 4", "99999999999999999999", "١٢"] {
            assert_eq!(
                ArchiveId::parse(bad),
                Err(DomainError::ItemNotFound),
                "{bad}"
            );
        }
    }

    #[test]
    fn page_size_defaults_to_100_and_is_capped_at_250() {
        let mut r = ArchiveRequest::default();
        assert_eq!(r.page_size(), DEFAULT_PAGE);
        r.max = Some(7);
        assert_eq!(r.page_size(), 7);
        r.max = Some(10_000);
        assert_eq!(r.page_size(), MAX_PAGE);
        assert_eq!(r.query().limit, MAX_PAGE + 1);
    }

    #[test]
    fn form_and_rsm_bounds_combine_to_the_tighter_one() {
        let r = ArchiveRequest {
            after_id: Some(ArchiveId(5)),
            rsm_after: Some(ArchiveId(9)),
            before_id: Some(ArchiveId(30)),
            ..Default::default()
        };
        let q = r.query();
        assert_eq!(q.after, Some(ArchiveId(9)));
        assert_eq!(q.before, Some(ArchiveId(30)));
        assert_eq!(q.from, PageFrom::Oldest);
        assert_eq!(r.anchors(), vec![ArchiveId(5), ArchiveId(30), ArchiveId(9)]);
    }

    #[test]
    fn rsm_before_pages_back_from_the_newest_end_but_before_id_does_not() {
        let last_page = ArchiveRequest {
            rsm_before: Some(None),
            ..Default::default()
        };
        assert_eq!(last_page.query().from, PageFrom::Newest);
        assert_eq!(last_page.query().before, None);
        assert!(last_page.anchors().is_empty());
        let back = ArchiveRequest {
            rsm_before: Some(Some(ArchiveId(20))),
            before_id: Some(ArchiveId(12)),
            ..Default::default()
        };
        assert_eq!(back.query().before, Some(ArchiveId(12)));
        assert_eq!(back.query().from, PageFrom::Newest);
        let range = ArchiveRequest {
            before_id: Some(ArchiveId(12)),
            ..Default::default()
        };
        assert_eq!(range.query().from, PageFrom::Oldest);
    }

    #[test]
    fn a_page_is_oldest_first_and_complete_only_without_the_extra_row() {
        let forward = page(vec![1, 2, 3, 4], PageFrom::Oldest, 3);
        assert_eq!(forward.items, vec![1, 2, 3]);
        assert!(!forward.complete);
        let back = page(vec![9, 8, 7], PageFrom::Newest, 3);
        assert_eq!(back.items, vec![7, 8, 9]);
        assert!(back.complete);
        let back_partial = page(vec![9, 8, 7, 6], PageFrom::Newest, 3);
        assert_eq!(back_partial.items, vec![7, 8, 9]);
        assert!(!back_partial.complete);
        let empty: Page<i32> = page(vec![], PageFrom::Oldest, 0);
        assert!(empty.complete);
        let zero = page(vec![1], PageFrom::Oldest, 0);
        assert!(zero.items.is_empty() && !zero.complete);
    }
}
