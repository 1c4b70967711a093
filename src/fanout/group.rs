//! What one walk serves, and who in a page gets which of its jobs: the batch of one
//! node, or the batches of several small leaves below the same collections, walked
//! together.
//!
//! A firehose spread over many leaves below one collection queues a job or two per
//! leaf; walked one by one, each leaf would cost a claim, a read of the collection's
//! subscribers, pages and barriers of its own for a few notifications each. Walked
//! together, the collection's subscribers are read once for all of them, and each page
//! carries every leaf's jobs: a subscription to leaf *L* gets *L*'s jobs; one to a
//! collection gets every job that reaches collections of every leaf it may read
//! (decided per leaf, from its affiliation with it, by
//! [`reads_through_collection`]).
//!
//! One cursor serves the whole group, since subscription pks are unique across nodes:
//! the walk merges the leaves' subscriptions with the collections' in `pk` order and
//! saves its position on every job of the group. That position stays right for each
//! job alone: a job of leaf *L* whose group was interrupted at cursor *c* has reached
//! every subscription to *L* and every collection subscription with `pk <= c` (both
//! were in the merged order), and nothing else is its to reach; so whoever claims it
//! next, alone or in another group at the same cursor, walks *L* and the collections
//! above it from *c* on, which is exactly what it still lacks. (A group holds leaves
//! with the same collections above and the same cursor only, and never a deletion.)
//!
//! A group's leaves are small (fewer subscriptions than a page): their subscriptions
//! are read whole with the claim, in one statement, and taken from memory page by page;
//! only the collections' are read page by page from the store. A bigger leaf is walked
//! on its own, as any node.

use std::collections::HashMap;

use super::deliver;
use crate::domain::collection::{collection_readers, reads_through_collection};
use crate::domain::Affiliation;
use crate::store::claims::{ClaimedBatch, ClaimedJob, CollectionAbove, CollectionPage, Subscriber};

/// The batches one walk serves, with their jobs in publish order.
pub(super) struct Group<'a> {
    members: Vec<Member<'a>>,
    jobs: Vec<GroupJob<'a>>,
}

/// One batch of a group.
pub(super) struct Member<'a> {
    pub batch: &'a ClaimedBatch,
    /// Every active subscription to the batch's node in `pk` order, when it was read
    /// whole (a small leaf); `None`: the walk reads its pages from the store.
    pub whole: Option<Vec<Subscriber>>,
}

/// A job of a group, and the member it belongs to.
#[derive(Clone, Copy)]
pub(super) struct GroupJob<'a> {
    pub job: &'a ClaimedJob,
    pub member: usize,
}

/// What the collections' subscribers are read with: the leaves whose jobs reach
/// collections, and the affiliations that read one of them.
pub(super) struct ThroughAsk {
    pub leaves: Vec<i64>,
    pub readers: Vec<&'static str>,
}

impl<'a> Group<'a> {
    /// A walk of one batch, its subscribers read page by page.
    pub fn single(batch: &'a ClaimedBatch) -> Self {
        Group::new(vec![Member { batch, whole: None }])
    }

    fn new(members: Vec<Member<'a>>) -> Self {
        let mut jobs: Vec<GroupJob<'a>> = members
            .iter()
            .enumerate()
            .flat_map(|(member, m)| m.batch.jobs.iter().map(move |job| GroupJob { job, member }))
            .collect();
        // Publish order across the leaves; each leaf's own order is kept either way.
        jobs.sort_by_key(|j| j.job.id);
        Group { members, jobs }
    }

    /// The first member's batch (the only one, unless leaves are walked together).
    pub fn first(&self) -> &'a ClaimedBatch {
        self.members[0].batch
    }

    pub fn members(&self) -> &[Member<'a>] {
        &self.members
    }

    /// Every job, in id order.
    pub fn jobs(&self) -> &[GroupJob<'a>] {
        &self.jobs
    }

    pub fn job_ids(&self) -> Vec<i64> {
        self.jobs.iter().map(|j| j.job.id).collect()
    }

    /// Where the walk starts (every member's cursor: they are equal).
    pub fn cursor(&self) -> i64 {
        self.first().cursor
    }

    /// The collections above every member.
    pub fn collections(&self) -> &'a [CollectionAbove] {
        &self.first().collections
    }

    pub fn through_collections(&self) -> bool {
        self.first().through_collections()
    }

    /// Whether some member's subscribers get notifications only while available.
    pub fn presence_based(&self) -> bool {
        self.members
            .iter()
            .any(|m| m.batch.config.presence_based_delivery)
    }

    /// The node that completing the walk removes (a lone batch with a `delete` job).
    pub fn deleted_node(&self) -> Option<i64> {
        match self.members.as_slice() {
            [only] if only.batch.deletes_node() => Some(only.batch.node_pk),
            _ => None,
        }
    }

    /// What to read the collections' subscribers with; `None` if no job of the group
    /// reaches them.
    pub fn through_ask(&self) -> Option<ThroughAsk> {
        if !self.through_collections() {
            return None;
        }
        let mut ask = ThroughAsk {
            leaves: Vec::new(),
            readers: Vec::new(),
        };
        for (i, m) in self.members.iter().enumerate() {
            if !self.reaches_collections(i) {
                continue;
            }
            ask.leaves.push(m.batch.node_pk);
            for reader in collection_readers(m.batch.config.access_model) {
                if !ask.readers.contains(&reader) {
                    ask.readers.push(reader);
                }
            }
        }
        (!ask.leaves.is_empty()).then_some(ask)
    }

    /// Whether a job of member `i` reaches the collections' subscribers.
    fn reaches_collections(&self, i: usize) -> bool {
        self.jobs
            .iter()
            .any(|j| j.member == i && deliver::reaches_collections(j.job.kind))
    }

    /// The rows of a page of collection subscriptions: each reaches the members whose
    /// leaf its subscriber may read by affiliation (none without a listed one), and
    /// whose jobs reach collections; none else (fail closed).
    pub fn through_rows(&self, page: CollectionPage) -> Vec<Row> {
        let held: HashMap<(i64, &str), Affiliation> = page
            .affiliations
            .iter()
            .map(|a| ((a.leaf_pk, a.bare_jid.as_str()), a.affiliation))
            .collect();
        let reaching: Vec<bool> = (0..self.members.len())
            .map(|i| self.reaches_collections(i))
            .collect();
        page.subscribers
            .into_iter()
            .map(|sub| {
                let reads = self
                    .members
                    .iter()
                    .zip(&reaching)
                    .map(|(m, reaching)| {
                        let affiliation = held
                            .get(&(m.batch.node_pk, sub.bare_jid.as_str()))
                            .copied()
                            .unwrap_or(Affiliation::None);
                        *reaching
                            && reads_through_collection(m.batch.config.access_model, affiliation)
                    })
                    .collect();
                Row {
                    sub,
                    reach: Reach::Through(reads),
                }
            })
            .collect()
    }

    /// How many notifications `row` gets in all (before presence and paused
    /// deliveries).
    pub fn notifications(&self, row: &Row) -> usize {
        self.jobs.iter().filter(|j| row.gets(j)).count()
    }
}

/// One subscription of a page, and which of the group's jobs it gets.
pub(super) struct Row {
    pub sub: Subscriber,
    pub reach: Reach,
}

/// Which of a group's jobs a subscription gets.
pub(super) enum Reach {
    /// A subscription to member `n`'s node: that member's jobs.
    Own(usize),
    /// A subscription to a collection above: of the members marked, the jobs that
    /// reach collections.
    Through(Vec<bool>),
}

impl Row {
    /// A subscription to member `member`'s node.
    pub fn own(member: usize, sub: Subscriber) -> Self {
        Row {
            sub,
            reach: Reach::Own(member),
        }
    }

    /// Whether this subscription gets `job`.
    pub fn gets(&self, job: &GroupJob<'_>) -> bool {
        match &self.reach {
            Reach::Own(member) => *member == job.member,
            Reach::Through(reads) => {
                reads.get(job.member).copied().unwrap_or(false)
                    && deliver::reaches_collections(job.job.kind)
            }
        }
    }
}

/// The first subscriptions after a walk's position from one source, in `pk` order.
pub(super) struct Source {
    pub rows: Vec<Row>,
    /// Every subscription of the source after the position is here (a leaf read
    /// whole, or a store page shorter than its limit); else more may follow the last.
    pub complete: bool,
}

/// Where every one of `sources` is known up to: the last row of the incomplete source
/// that ends first (`None`: all are complete).
pub(super) fn known_up_to(sources: &[Source]) -> Option<i64> {
    sources
        .iter()
        .filter(|s| !s.complete)
        .filter_map(|s| s.rows.last().map(|r| r.sub.pk))
        .min()
}

/// The subscriptions `all` of member `member`, read whole, as a source of the page after
/// `after`: those up to `bound` (rows past it would wait for the next page anyway), at
/// most `most` (a page of at most `most` notifications holds no more rows of one leaf).
pub(super) fn from_whole(
    member: usize,
    all: &[Subscriber],
    after: i64,
    bound: Option<i64>,
    most: usize,
) -> Source {
    let rest = &all[all.partition_point(|sub| sub.pk <= after)..];
    let known = rest.partition_point(|sub| bound.is_none_or(|b| sub.pk <= b));
    let take = known.min(most.max(1));
    Source {
        rows: rest[..take]
            .iter()
            .map(|sub| Row::own(member, sub.clone()))
            .collect(),
        // Cut at the bound, it still holds every row up to it.
        complete: take == known,
    }
}

/// The next page of a walk, from its sources: their rows in `pk` order up to where
/// every source is known ([`known_up_to`]), cut once the next row would take the page
/// past `budget` notifications (one row at least). Also whether more may follow.
pub(super) fn merge(group: &Group<'_>, sources: Vec<Source>, budget: usize) -> (Vec<Row>, bool) {
    let bound = known_up_to(&sources);
    let mut more = sources.iter().any(|s| !s.complete);
    let mut rows: Vec<Row> = sources
        .into_iter()
        .flat_map(|s| s.rows)
        .filter(|r| bound.is_none_or(|b| r.sub.pk <= b))
        .collect();
    rows.sort_by_key(|r| r.sub.pk);
    let mut total = 0;
    let mut keep = 0;
    for row in &rows {
        let n = group.notifications(row);
        if keep > 0 && total + n > budget {
            break;
        }
        total += n;
        keep += 1;
    }
    if keep < rows.len() {
        rows.truncate(keep);
        more = true;
    }
    (rows, more)
}

/// The walks of a claim, from its batches that walk subscribers (in claim order, each
/// with its subscriptions if they were read whole): the leaves read whole that have
/// collections above them form groups by cursor and collections (never a batch that
/// deletes its node); every other batch is walked alone. In the order of each walk's
/// first batch.
pub(super) fn walks<'a>(
    batches: Vec<(&'a ClaimedBatch, Option<Vec<Subscriber>>)>,
) -> Vec<Group<'a>> {
    let mut members: Vec<Vec<Member<'a>>> = Vec::new();
    for (batch, whole) in batches {
        let joins = whole.is_some() && batch.through_collections() && !batch.deletes_node();
        let member = Member { batch, whole };
        let found = joins
            .then(|| {
                members.iter_mut().find(|g| {
                    let b = g[0].batch;
                    g[0].whole.is_some()
                        && b.through_collections()
                        && !b.deletes_node()
                        && b.cursor == batch.cursor
                        && b.collections == batch.collections
                })
            })
            .flatten();
        match found {
            Some(group) => group.push(member),
            None => members.push(vec![member]),
        }
    }
    members.into_iter().map(Group::new).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{AccessModel, NodeConfig, SubscribeOptions};
    use crate::store::claims::LeafAffiliation;
    use crate::store::jobs::{JobKind, JobTarget};

    fn job(id: i64, kind: JobKind) -> ClaimedJob {
        ClaimedJob {
            id,
            kind,
            payload_xml: String::new(),
            headline: true,
            target: JobTarget::Subscribers,
        }
    }

    fn batch(node_pk: i64, jobs: &[i64], model: AccessModel, above: &[i64]) -> ClaimedBatch {
        ClaimedBatch {
            node_pk,
            node_name: None,
            config: NodeConfig {
                access_model: model,
                ..NodeConfig::default()
            },
            cursor: 0,
            jobs: jobs.iter().map(|id| job(*id, JobKind::Items)).collect(),
            session: None,
            collections: above
                .iter()
                .map(|pk| CollectionAbove {
                    pk: *pk,
                    name: format!("c{pk}"),
                    direct: true,
                })
                .collect(),
        }
    }

    fn sub(pk: i64, bare: &str) -> Subscriber {
        Subscriber {
            pk,
            jid: bare.into(),
            bare_jid: bare.into(),
            subid: format!("s{pk}"),
            options: SubscribeOptions::default(),
            shares_bare_jid: false,
            via: None,
        }
    }

    fn pks(rows: &[Row]) -> Vec<i64> {
        rows.iter().map(|r| r.sub.pk).collect()
    }

    #[test]
    fn small_leaves_below_the_same_collections_at_the_same_cursor_are_walked_together() {
        let a = batch(1, &[10, 13], AccessModel::Open, &[100]);
        let b = batch(2, &[11], AccessModel::Open, &[100]);
        let other = batch(3, &[12], AccessModel::Open, &[200]);
        let big = batch(4, &[14], AccessModel::Open, &[100]);
        let mut moved = batch(5, &[15], AccessModel::Open, &[100]);
        moved.cursor = 7;
        let plain = batch(6, &[16], AccessModel::Open, &[]);
        let groups = walks(vec![
            (&a, Some(vec![])),
            (&other, Some(vec![])),
            (&b, Some(vec![])),
            (&big, None),
            (&moved, Some(vec![])),
            (&plain, None),
        ]);
        let shape: Vec<Vec<i64>> = groups
            .iter()
            .map(|g| g.members().iter().map(|m| m.batch.node_pk).collect())
            .collect();
        assert_eq!(shape, [vec![1, 2], vec![3], vec![4], vec![5], vec![6]]);
        assert_eq!(
            groups[0].job_ids(),
            [10, 11, 13],
            "publish order across leaves"
        );
        assert_eq!(groups[0].deleted_node(), None);
    }

    #[test]
    fn a_collection_subscriber_gets_only_the_leaves_it_may_read() {
        let open = batch(1, &[10], AccessModel::Open, &[100]);
        let closed = batch(2, &[11], AccessModel::Whitelist, &[100]);
        let banned = batch(3, &[12], AccessModel::Open, &[100]);
        let group = &walks(vec![
            (&open, Some(vec![])),
            (&closed, Some(vec![])),
            (&banned, Some(vec![])),
        ])[0];
        let ask = group.through_ask().expect("items reach collections");
        assert_eq!(ask.leaves, [1, 2, 3]);
        assert!(ask.readers.contains(&"none") && !ask.readers.contains(&"outcast"));
        let fact = |leaf_pk, bare: &str, affiliation| LeafAffiliation {
            leaf_pk,
            bare_jid: bare.into(),
            affiliation,
        };
        let rows = group.through_rows(CollectionPage {
            subscribers: vec![sub(50, "s@x"), sub(51, "m@x")],
            affiliations: vec![
                fact(3, "s@x", Affiliation::Outcast),
                fact(2, "m@x", Affiliation::Member),
            ],
        });
        let got = |row: &Row| -> Vec<i64> {
            group
                .jobs()
                .iter()
                .filter(|j| row.gets(j))
                .map(|j| j.job.id)
                .collect()
        };
        assert_eq!(got(&rows[0]), [10], "s: not on the whitelist, outcast of 3");
        assert_eq!(got(&rows[1]), [10, 11, 12], "m: a member of the whitelist");
        let own = Row::own(1, sub(5, "l@x"));
        assert_eq!(got(&own), [11], "a leaf's subscriber: its leaf's jobs");
    }

    #[test]
    fn configuration_events_stay_with_the_leaf() {
        let mut leaf = batch(1, &[], AccessModel::Open, &[100]);
        leaf.jobs = vec![job(10, JobKind::Config)];
        let group = Group::single(&leaf);
        assert!(group.through_ask().is_none());
    }

    #[test]
    fn a_page_merges_its_sources_up_to_the_first_incomplete_ones_end_and_the_budget() {
        let a = batch(1, &[10, 11], AccessModel::Open, &[100]);
        let b = batch(2, &[12], AccessModel::Open, &[100]);
        let group = &walks(vec![(&a, Some(vec![])), (&b, Some(vec![]))])[0];
        let own = |member, pks: &[i64]| Source {
            rows: pks
                .iter()
                .map(|pk| Row::own(member, sub(*pk, "l@x")))
                .collect(),
            complete: true,
        };
        let through = |pks: &[i64], complete| Source {
            rows: pks
                .iter()
                .map(|pk| Row {
                    sub: sub(*pk, "c@x"),
                    reach: Reach::Through(vec![true, true]),
                })
                .collect(),
            complete,
        };
        // The collection's page is full at 40: leaf rows after it wait for the next.
        let (rows, more) = merge(
            group,
            vec![
                own(0, &[1, 35, 45]),
                own(1, &[2, 50]),
                through(&[30, 40], false),
            ],
            100,
        );
        assert_eq!(pks(&rows), [1, 2, 30, 35, 40]);
        assert!(more);
        // Everything known: the budget (2 + 1 + 3 + 3 notifications) cuts the page.
        let (rows, more) = merge(
            group,
            vec![own(0, &[1]), own(1, &[2]), through(&[30, 40, 41], true)],
            7,
        );
        assert_eq!(pks(&rows), [1, 2, 30]);
        assert!(more);
        let (rows, more) = merge(group, vec![own(0, &[1]), through(&[], true)], 7);
        assert_eq!(pks(&rows), [1]);
        assert!(!more, "the end of the walk");
        let (rows, _) = merge(group, vec![through(&[30], true)], 1);
        assert_eq!(pks(&rows), [30], "one row at least, whatever its size");
    }

    #[test]
    fn a_leaf_read_whole_gives_a_page_its_rows_after_the_position_up_to_the_bound() {
        let all: Vec<Subscriber> = [1, 5, 9, 12].iter().map(|pk| sub(*pk, "l@x")).collect();
        let source = from_whole(0, &all, 1, Some(9), 10);
        assert_eq!(pks(&source.rows), [5, 9]);
        assert!(source.complete, "everything up to the bound");
        let source = from_whole(0, &all, 0, None, 2);
        assert_eq!(pks(&source.rows), [1, 5]);
        assert!(!source.complete, "cut by the page's size: more after 5");
        assert!(from_whole(0, &all, 12, None, 10).rows.is_empty());
    }
}
