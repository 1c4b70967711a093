//! The one SQL layer: every statement PostgreSQL and SQLite agree on, written once.
//!
//! sqlx binds `$1`, `$2`, … positionally on both backends (SQLite reads `$N` as the
//! N-th argument), so most statements are literally shared. Where the dialects differ
//! in a word (the current time, the rows of a list, a row lock, the next item number,
//! the live-lease test), or where their planners want a statement of their own (a
//! claim's job heads, a subscriber page), the statement comes from [`Backend`]. Each
//! `*_store!` macro here expands to the trait implementation for one backend type,
//! claims and leases included; the backend folders keep only what really differs:
//! finding a claim's free nodes (advisory locks versus `BEGIN IMMEDIATE`), liveness or
//! the instance lock, waking workers (`LISTEN/NOTIFY` versus the in-process signal),
//! PostgreSQL's one-statement batch of publishes (DML inside `WITH`) and its read of
//! small nodes whole, and retention.
//!
//! Rows are decoded once, in [`rows`], generic over the row type.
//!
//! Besides [`Backend`], each backend has inherent methods of the same names that the
//! macros call: `pool()`, `write_tx()` (`BEGIN`, or `BEGIN IMMEDIATE` on SQLite),
//! `commit(tx, queued)` (which wakes SQLite's workers), `list(values)` (an array, or a
//! JSON array), `seconds(s)` (for [`Backend::now_plus`]), `job_events()` and
//! `after_subscriber_read(…)` (PostgreSQL refreshes stale statistics).

pub mod rows;

pub mod affiliations;
pub mod archive;
pub mod claims;
pub mod collections;
pub mod item_seq;
pub mod items;
pub mod nodes;
pub mod service;
pub mod subscriptions;

pub(crate) use affiliations::affiliation_store;
pub(crate) use archive::archive_store;
pub(crate) use claims::fanout_store;
pub(crate) use collections::collection_store;
pub(crate) use item_seq::item_seq_store;
pub(crate) use items::item_store;
pub(crate) use nodes::node_store;
pub(crate) use service::service_store;
pub(crate) use subscriptions::subscription_store;

/// What a backend tells the shared statements about its dialect and transactions.
/// Implemented by [`super::postgres::PgStore`] and [`super::sqlite::SqliteStore`].
pub trait Backend {
    /// The sqlx database.
    type Db: sqlx::Database;
    /// An expression for the current time, in the format of the time columns.
    const NOW: &'static str;
    /// Compares a column with every element of the list parameter `param` (bound with
    /// the backend's `list`): `= ANY($n)` over an array on PostgreSQL, `IN` the
    /// elements of a JSON array on SQLite, which has no arrays.
    fn in_list(param: &str) -> String;
    /// The list parameter `param` (of SQL type `ty`) as rows `u(<name>, ord)`, `ord`
    /// counting from 1 in list order.
    fn ordered(param: &str, ty: &str, name: &str) -> String;
    /// What makes the text parameter that follows a lease owner (a UUID).
    const UUID: &'static str;
    /// An expression for now plus the seconds in parameter `param` (bound with the
    /// backend's `seconds`), in the format of the time columns.
    fn now_plus(param: &str) -> String;
    /// An expression for the seconds from the time `expr` (a time column's format) to
    /// now, as a floating-point number.
    fn seconds_since(expr: &str) -> String;
    /// The statement that limits each of the transaction's statements to `ms`
    /// milliseconds (`None`: SQLite has no such limit; a file small enough for SQLite
    /// counts fast).
    fn local_timeout(ms: u32) -> Option<String>;
    /// What makes a `SELECT` of one row lock it until the transaction ends (`""` where
    /// write transactions are serialised anyway).
    const LOCK_ROW: &'static str;
    /// [`LOCK_ROW`](Self::LOCK_ROW) for a claim that skips rows another transaction
    /// holds, instead of waiting for them (`""` on SQLite: one process per file).
    const LOCK_ROW_SKIP_LOCKED: &'static str;
    /// The SQL condition "the lease of the `fanout_jobs` row `l` is live": its timer
    /// runs, and on PostgreSQL its owner's liveness session is still held.
    const LIVE_LEASE: &'static str;
    /// A statement reading the first `$2` jobs (`node_pk, id, kind, to_subscribers,
    /// cursor, bytes`, the payload's size in bytes) of each node of the list `$1`, in
    /// list order, then id order, one index range per node.
    const JOB_HEADS: &'static str;
    /// The statement `insert` (an `INSERT INTO fanout_jobs … RETURNING id`), made to
    /// wake the fan-out workers too: PostgreSQL notifies every process in the same
    /// statement; SQLite returns it as it is (its `commit` wakes the workers).
    fn waking(insert: &str) -> String;
    /// A statement reading one keyset page of node `$1`'s subscribers to deliver to
    /// (`pk, jid, bare_jid, subid, options`, options as text): those after `$2` in `pk`
    /// order, at most `$3`, by `subscriptions_fanout (node_pk, pk)`.
    const SUBSCRIBER_PAGE: &'static str;
    /// A statement returning the next number of the global publish order.
    const NEXT_SEQ: &'static str;
    /// Whether the backend's [`ItemStore::publish_batch`](crate::store::ItemStore) is one
    /// statement (DML inside `WITH`, PostgreSQL), so that a publish of one item and one
    /// job is best done as a batch of one.
    const ONE_STATEMENT_BATCH: bool;
    /// A JSON array of a subscription row `s`'s columns, as [`rows::SubscriptionJson`]
    /// reads them, for the subscriptions matching the `WHERE` that follows.
    const SUBSCRIPTIONS_JSON: &'static str;
    /// A statement that serialises link changes between collections (PostgreSQL: a
    /// table lock that readers do not wait for), or `None` where write transactions
    /// are serialised anyway (SQLite's `BEGIN IMMEDIATE`).
    const LOCK_LINKS: Option<&'static str>;
}
