//! Feeds in the store (`migrations/0006_feeds.sql`, and `migrations/sqlite/` for
//! SQLite): the feed list shared by every pubsubd attached to the database, the lease
//! that makes one process poll a feed at a time, and what each feed's entries looked
//! like when last published.
//!
//! One set of statements for both backends, with the dialect's words from
//! [`Backend`] (as in [`crate::store::sql`]). On SQLite one process holds the file, so
//! the lease only keeps its own poller from taking a feed twice.
//!
//! This module owns the `feeds` and `feed_entries` tables and nothing else; items are
//! published through `Pubsub`, never written here.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{AssertSqlSafe, Row};
use uuid::Uuid;

use super::config::{AuthHeader, FeedSpec};
use super::fetch::Validators;
use crate::domain::NodeId;
use crate::store::postgres::PgStore;
use crate::store::sql::rows::Column;
use crate::store::sql::Backend;
use crate::store::sqlite::SqliteStore;
use crate::store::StoreError;

/// Runs `$body` with `$s` the backend's store and `$B` its type (for [`Backend`]'s
/// words): one statement text, two backends.
macro_rules! on_store {
    ($self:expr, $s:ident, $B:ident => $body:expr) => {
        match &$self.backend {
            Db::Postgres($s) => {
                type $B = PgStore;
                $body
            }
            Db::Sqlite($s) => {
                type $B = SqliteStore;
                $body
            }
        }
    };
}

/// Entries not seen in a feed for this long (30 days) are forgotten: their rows would
/// otherwise grow without bound, and an entry gone for a month will not come back
/// unchanged.
const FORGET_ENTRIES_AFTER: Duration = Duration::from_secs(30 * 24 * 3600);

/// Where a feed came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A `[[feed]]` entry; re-synced from the configuration at start-up.
    Config,
    /// `pubsubd feed add`.
    Runtime,
}

impl Source {
    fn as_str(self) -> &'static str {
        match self {
            Source::Config => "config",
            Source::Runtime => "runtime",
        }
    }
}

/// A feed as `pubsubd feed list` shows it (never its auth header).
#[derive(Debug, Clone)]
pub struct FeedRow {
    pub pk: i64,
    pub url: String,
    pub node: String,
    pub interval_secs: i32,
    pub source: String,
    pub has_auth_header: bool,
    pub next_poll_at: DateTime<Utc>,
    pub failures: i32,
    pub last_status: Option<String>,
    pub last_polled_at: Option<DateTime<Utc>>,
}

/// A feed claimed for one poll.
#[derive(Debug, Clone)]
pub struct ClaimedFeed {
    pub pk: i64,
    pub url: reqwest::Url,
    pub node: NodeId,
    pub interval: Duration,
    pub auth_header: Option<AuthHeader>,
    pub validators: Validators,
    pub failures: u32,
}

/// How a poll ended, to store with the feed.
#[derive(Debug, Clone)]
pub struct PollRecord {
    pub validators: Validators,
    pub next_poll_in: Duration,
    pub failures: u32,
    /// A short status for `feed list`: `ok`, `not modified` or the error.
    pub status: String,
}

/// The feed tables.
#[derive(Clone)]
pub struct FeedStore {
    backend: Db,
}

#[derive(Clone)]
enum Db {
    Postgres(PgStore),
    Sqlite(SqliteStore),
}

fn secs(d: Duration) -> i32 {
    i32::try_from(d.as_secs()).unwrap_or(i32::MAX)
}

impl FeedStore {
    /// The feed tables of a PostgreSQL store.
    pub fn postgres(store: PgStore) -> FeedStore {
        FeedStore {
            backend: Db::Postgres(store),
        }
    }

    /// The feed tables of an SQLite store.
    pub fn sqlite(store: SqliteStore) -> FeedStore {
        FeedStore {
            backend: Db::Sqlite(store),
        }
    }

    /// Makes the `config` feeds exactly `specs`: adds or updates those listed (a
    /// runtime feed with the same URL and node becomes a config feed) and removes
    /// config feeds no longer listed. Runtime feeds are left alone.
    pub async fn sync_config(&self, specs: &[FeedSpec]) -> Result<(), StoreError> {
        on_store!(self, store, B => {
            let mut tx = store.write_tx().await?;
            let mut keep = Vec::with_capacity(specs.len());
            for s in specs {
                let pk: i64 = sqlx::query_scalar(
                    "INSERT INTO feeds (url, node, interval_secs, auth_header, source)
                     VALUES ($1, $2, $3, $4, 'config')
                     ON CONFLICT (url, node) DO UPDATE
                     SET interval_secs = excluded.interval_secs,
                         auth_header = excluded.auth_header, source = 'config'
                     RETURNING pk",
                )
                .bind(s.url.as_str())
                .bind(s.node.as_str())
                .bind(secs(s.interval))
                .bind(s.auth_header.as_ref().map(AuthHeader::to_line))
                .fetch_one(&mut *tx)
                .await?;
                keep.push(pk);
            }
            sqlx::query(AssertSqlSafe(format!(
                "DELETE FROM feeds WHERE source = 'config' AND NOT (pk {})",
                B::in_list("$1")
            )))
            .bind(B::list(&keep))
            .execute(&mut *tx)
            .await?;
            store.commit(tx, 0).await?;
            Ok(())
        })
    }

    /// Adds a feed; `Ok(None)` when the same URL already feeds the same node.
    pub async fn add(&self, spec: &FeedSpec, source: Source) -> Result<Option<i64>, StoreError> {
        on_store!(self, store, _B => Ok(sqlx::query_scalar(
            "INSERT INTO feeds (url, node, interval_secs, auth_header, source)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (url, node) DO NOTHING RETURNING pk",
        )
        .bind(spec.url.as_str())
        .bind(spec.node.as_str())
        .bind(secs(spec.interval))
        .bind(spec.auth_header.as_ref().map(AuthHeader::to_line))
        .bind(source.as_str())
        .fetch_optional(store.pool())
        .await?))
    }

    /// Every feed, in the order added.
    pub async fn list(&self) -> Result<Vec<FeedRow>, StoreError> {
        self.select("ORDER BY pk", None).await
    }

    /// At most `limit` feeds, those failing longest first, then the next due: what an
    /// operator's status page shows.
    pub async fn most_failing(&self, limit: u32) -> Result<Vec<FeedRow>, StoreError> {
        self.select(
            "ORDER BY failures DESC, next_poll_at, pk LIMIT $1",
            Some(i64::from(limit)),
        )
        .await
    }

    async fn select(
        &self,
        order: &'static str,
        limit: Option<i64>,
    ) -> Result<Vec<FeedRow>, StoreError> {
        on_store!(self, store, _B => {
            let mut query = sqlx::query(AssertSqlSafe(format!(
                "SELECT pk, url, node, interval_secs, source, auth_header IS NOT NULL AS has_auth,
                        next_poll_at, failures, last_status, last_polled_at
                 FROM feeds {order}"
            )));
            if let Some(limit) = limit {
                query = query.bind(limit);
            }
            let rows = query.fetch_all(store.pool()).await?;
            rows.iter()
                .map(|r| {
                    Ok(FeedRow {
                        pk: r.try_get("pk")?,
                        url: r.try_get("url")?,
                        node: r.try_get("node")?,
                        interval_secs: r.try_get("interval_secs")?,
                        source: r.try_get("source")?,
                        has_auth_header: r.try_get("has_auth")?,
                        next_poll_at: r.try_get("next_poll_at")?,
                        failures: r.try_get("failures")?,
                        last_status: r.try_get("last_status")?,
                        last_polled_at: r.try_get("last_polled_at")?,
                    })
                })
                .collect::<Result<_, sqlx::Error>>()
                .map_err(StoreError::from)
        })
    }

    /// Removes a feed (and what it remembered of its entries); `false` if none had `pk`.
    pub async fn remove(&self, pk: i64) -> Result<bool, StoreError> {
        on_store!(self, store, _B => {
            let done = sqlx::query("DELETE FROM feeds WHERE pk = $1")
                .bind(pk)
                .execute(store.pool())
                .await?;
            Ok(done.rows_affected() > 0)
        })
    }

    /// Claims the feed that is due first and not leased by anyone, for `lease`.
    /// On PostgreSQL `SKIP LOCKED` lets processes claim different feeds at the same
    /// moment without waiting on each other; the lease outlives a crash only until it
    /// expires. On SQLite the statement runs under the file's write lock.
    pub async fn claim(
        &self,
        owner: Uuid,
        lease: Duration,
    ) -> Result<Option<ClaimedFeed>, StoreError> {
        let row = on_store!(self, store, B => {
            let row = sqlx::query(AssertSqlSafe(format!(
                "UPDATE feeds SET lease_owner = $1{uuid}, lease_until = {until}
                 WHERE pk = (
                     SELECT pk FROM feeds
                     WHERE next_poll_at <= {now} AND (lease_until IS NULL OR lease_until < {now})
                     ORDER BY next_poll_at LIMIT 1{skip})
                 RETURNING pk, url, node, interval_secs, auth_header, etag, last_modified, failures",
                uuid = B::UUID,
                until = B::now_plus("$2"),
                now = B::NOW,
                skip = B::LOCK_ROW_SKIP_LOCKED,
            )))
            .bind(owner.to_string())
            .bind(B::seconds(lease.as_secs_f64()))
            .fetch_optional(store.pool())
            .await?;
            row.map(|r| claimed(&r)).transpose()
        })?;
        Ok(row)
    }

    /// Stores how a poll ended and releases the lease (only if this process still
    /// holds it).
    pub async fn finish(&self, pk: i64, owner: Uuid, rec: &PollRecord) -> Result<(), StoreError> {
        on_store!(self, store, B => {
            sqlx::query(AssertSqlSafe(format!(
                "UPDATE feeds SET etag = $3, last_modified = $4, next_poll_at = {next},
                     failures = $6, last_status = $7, last_polled_at = {now},
                     lease_owner = NULL, lease_until = NULL
                 WHERE pk = $1 AND lease_owner = $2{uuid}",
                next = B::now_plus("$5"),
                now = B::NOW,
                uuid = B::UUID,
            )))
            .bind(pk)
            .bind(owner.to_string())
            .bind(&rec.validators.etag)
            .bind(&rec.validators.last_modified)
            .bind(B::seconds(rec.next_poll_in.as_secs_f64()))
            .bind(i32::try_from(rec.failures).unwrap_or(i32::MAX))
            .bind(&rec.status)
            .execute(store.pool())
            .await?;
            Ok(())
        })
    }

    /// The content hashes remembered for these item ids of a feed.
    pub async fn known_entries(
        &self,
        feed_pk: i64,
        item_ids: &[String],
    ) -> Result<HashMap<String, String>, StoreError> {
        on_store!(self, store, B => {
            let rows = sqlx::query(AssertSqlSafe(format!(
                "SELECT item_id, content_hash FROM feed_entries WHERE feed_pk = $1 AND item_id {}",
                B::in_list("$2")
            )))
            .bind(feed_pk)
            .bind(B::list(item_ids))
            .fetch_all(store.pool())
            .await?;
            rows.iter()
                .map(|r| Ok((r.try_get("item_id")?, r.try_get("content_hash")?)))
                .collect::<Result<_, sqlx::Error>>()
                .map_err(StoreError::from)
        })
    }

    /// Remembers an entry as published with `content_hash`.
    pub async fn remember_entry(
        &self,
        feed_pk: i64,
        item_id: &str,
        content_hash: &str,
    ) -> Result<(), StoreError> {
        on_store!(self, store, B => {
            sqlx::query(AssertSqlSafe(format!(
                "INSERT INTO feed_entries (feed_pk, item_id, content_hash) VALUES ($1, $2, $3)
                 ON CONFLICT (feed_pk, item_id) DO UPDATE
                 SET content_hash = excluded.content_hash, last_seen = {}",
                B::NOW
            )))
            .bind(feed_pk)
            .bind(item_id)
            .bind(content_hash)
            .execute(store.pool())
            .await?;
            Ok(())
        })
    }

    /// Marks entries as still in the feed and forgets those long gone.
    pub async fn seen(&self, feed_pk: i64, item_ids: &[String]) -> Result<(), StoreError> {
        on_store!(self, store, B => {
            let mut tx = store.write_tx().await?;
            sqlx::query(AssertSqlSafe(format!(
                "UPDATE feed_entries SET last_seen = {} WHERE feed_pk = $1 AND item_id {}",
                B::NOW,
                B::in_list("$2")
            )))
            .bind(feed_pk)
            .bind(B::list(item_ids))
            .execute(&mut *tx)
            .await?;
            sqlx::query(AssertSqlSafe(format!(
                "DELETE FROM feed_entries WHERE feed_pk = $1 AND last_seen < {}",
                B::now_plus("$2")
            )))
            .bind(feed_pk)
            .bind(B::seconds(-FORGET_ENTRIES_AFTER.as_secs_f64()))
            .execute(&mut *tx)
            .await?;
            store.commit(tx, 0).await?;
            Ok(())
        })
    }
}

/// A claimed feed from its row.
fn claimed<R: Row>(r: &R) -> Result<ClaimedFeed, StoreError>
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    i64: Column<R::Database>,
    i32: Column<R::Database>,
    String: Column<R::Database>,
    Option<String>: Column<R::Database>,
{
    let pk: i64 = r.try_get("pk")?;
    let bad = |what: &str, e: String| {
        StoreError::Corrupt(format!("feed {pk}: stored {what} is not valid: {e}"))
    };
    let url: String = r.try_get("url")?;
    let node: String = r.try_get("node")?;
    let interval: i32 = r.try_get("interval_secs")?;
    let auth: Option<String> = r.try_get("auth_header")?;
    let failures: i32 = r.try_get("failures")?;
    Ok(ClaimedFeed {
        pk,
        url: reqwest::Url::parse(&url).map_err(|e| bad("url", e.to_string()))?,
        node: NodeId::parse(&node).map_err(|e| bad("node", e.to_string()))?,
        interval: Duration::from_secs(u64::try_from(interval.max(1)).unwrap_or(1)),
        auth_header: auth
            .as_deref()
            .map(AuthHeader::parse)
            .transpose()
            .map_err(|e| bad("auth header", e))?,
        validators: Validators {
            etag: r.try_get("etag")?,
            last_modified: r.try_get("last_modified")?,
        },
        failures: u32::try_from(failures).unwrap_or(0),
    })
}
