//! Feeds in PostgreSQL (`migrations/0006_feeds.sql`): the feed list shared by every
//! pubsubd attached to the database, the lease that makes one process poll a feed at a
//! time, and what each feed's entries looked like when last published.
//!
//! This module owns the `feeds` and `feed_entries` tables and nothing else; items are
//! published through `Pubsub`, never written here.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::postgres::PgPool;
use sqlx::Row;
use uuid::Uuid;

use super::config::{AuthHeader, FeedSpec};
use super::fetch::Validators;
use crate::domain::NodeId;
use crate::store::StoreError;

/// Entries not seen in a feed for this long are forgotten: their rows would otherwise
/// grow without bound, and an entry gone for a month will not come back unchanged.
const FORGET_ENTRIES_AFTER_DAYS: i32 = 30;

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
    pool: PgPool,
}

fn secs(d: Duration) -> i32 {
    i32::try_from(d.as_secs()).unwrap_or(i32::MAX)
}

impl FeedStore {
    pub fn new(pool: PgPool) -> FeedStore {
        FeedStore { pool }
    }

    /// Makes the `config` feeds exactly `specs`: adds or updates those listed (a
    /// runtime feed with the same URL and node becomes a config feed) and removes
    /// config feeds no longer listed. Runtime feeds are left alone.
    pub async fn sync_config(&self, specs: &[FeedSpec]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let mut keep = Vec::with_capacity(specs.len());
        for s in specs {
            let pk: i64 = sqlx::query_scalar(
                "INSERT INTO feeds (url, node, interval_secs, auth_header, source)
                 VALUES ($1, $2, $3, $4, 'config')
                 ON CONFLICT (url, node) DO UPDATE
                 SET interval_secs = EXCLUDED.interval_secs, auth_header = EXCLUDED.auth_header,
                     source = 'config'
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
        sqlx::query("DELETE FROM feeds WHERE source = 'config' AND NOT (pk = ANY($1))")
            .bind(&keep)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Adds a feed; `Ok(None)` when the same URL already feeds the same node.
    pub async fn add(&self, spec: &FeedSpec, source: Source) -> Result<Option<i64>, StoreError> {
        Ok(sqlx::query_scalar(
            "INSERT INTO feeds (url, node, interval_secs, auth_header, source)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (url, node) DO NOTHING RETURNING pk",
        )
        .bind(spec.url.as_str())
        .bind(spec.node.as_str())
        .bind(secs(spec.interval))
        .bind(spec.auth_header.as_ref().map(AuthHeader::to_line))
        .bind(source.as_str())
        .fetch_optional(&self.pool)
        .await?)
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
        let mut query = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT pk, url, node, interval_secs, source, auth_header IS NOT NULL AS has_auth,
                    next_poll_at, failures, last_status, last_polled_at
             FROM feeds {order}"
        )));
        if let Some(limit) = limit {
            query = query.bind(limit);
        }
        let rows = query.fetch_all(&self.pool).await?;
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
    }

    /// Removes a feed (and what it remembered of its entries); `false` if none had `pk`.
    pub async fn remove(&self, pk: i64) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM feeds WHERE pk = $1")
            .bind(pk)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Claims the feed that is due first and not leased by anyone, for `lease`.
    /// `SKIP LOCKED` lets processes claim different feeds at the same moment without
    /// waiting on each other; the lease outlives a crash only until it expires.
    pub async fn claim(
        &self,
        owner: Uuid,
        lease: Duration,
    ) -> Result<Option<ClaimedFeed>, StoreError> {
        let row = sqlx::query(
            "UPDATE feeds SET lease_owner = $1::uuid, lease_until = now() + make_interval(secs => $2)
             WHERE pk = (
                 SELECT pk FROM feeds
                 WHERE next_poll_at <= now() AND (lease_until IS NULL OR lease_until < now())
                 ORDER BY next_poll_at LIMIT 1 FOR UPDATE SKIP LOCKED)
             RETURNING pk, url, node, interval_secs, auth_header, etag, last_modified, failures",
        )
        .bind(owner.to_string())
        .bind(lease.as_secs_f64())
        .fetch_optional(&self.pool)
        .await?;
        let Some(r) = row else { return Ok(None) };
        let pk: i64 = r.try_get("pk")?;
        let bad = |what: &str, e: String| {
            StoreError::Backend(format!("feed {pk}: stored {what} is not valid: {e}"))
        };
        let url: String = r.try_get("url")?;
        let node: String = r.try_get("node")?;
        let interval: i32 = r.try_get("interval_secs")?;
        let auth: Option<String> = r.try_get("auth_header")?;
        let failures: i32 = r.try_get("failures")?;
        Ok(Some(ClaimedFeed {
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
        }))
    }

    /// Stores how a poll ended and releases the lease (only if this process still
    /// holds it).
    pub async fn finish(&self, pk: i64, owner: Uuid, rec: &PollRecord) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE feeds SET etag = $3, last_modified = $4,
                 next_poll_at = now() + make_interval(secs => $5), failures = $6,
                 last_status = $7, last_polled_at = now(), lease_owner = NULL, lease_until = NULL
             WHERE pk = $1 AND lease_owner = $2::uuid",
        )
        .bind(pk)
        .bind(owner.to_string())
        .bind(&rec.validators.etag)
        .bind(&rec.validators.last_modified)
        .bind(rec.next_poll_in.as_secs_f64())
        .bind(i32::try_from(rec.failures).unwrap_or(i32::MAX))
        .bind(&rec.status)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The content hashes remembered for these item ids of a feed.
    pub async fn known_entries(
        &self,
        feed_pk: i64,
        item_ids: &[String],
    ) -> Result<HashMap<String, String>, StoreError> {
        let rows = sqlx::query(
            "SELECT item_id, content_hash FROM feed_entries WHERE feed_pk = $1 AND item_id = ANY($2)",
        )
        .bind(feed_pk)
        .bind(item_ids)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("item_id")?, r.try_get("content_hash")?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    /// Remembers an entry as published with `content_hash`.
    pub async fn remember_entry(
        &self,
        feed_pk: i64,
        item_id: &str,
        content_hash: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO feed_entries (feed_pk, item_id, content_hash) VALUES ($1, $2, $3)
             ON CONFLICT (feed_pk, item_id) DO UPDATE
             SET content_hash = EXCLUDED.content_hash, last_seen = now()",
        )
        .bind(feed_pk)
        .bind(item_id)
        .bind(content_hash)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Marks entries as still in the feed and forgets those long gone.
    pub async fn seen(&self, feed_pk: i64, item_ids: &[String]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "UPDATE feed_entries SET last_seen = now() WHERE feed_pk = $1 AND item_id = ANY($2)",
        )
        .bind(feed_pk)
        .bind(item_ids)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "DELETE FROM feed_entries
             WHERE feed_pk = $1 AND last_seen < now() - make_interval(days => $2)",
        )
        .bind(feed_pk)
        .bind(FORGET_ENTRIES_AFTER_DAYS)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
