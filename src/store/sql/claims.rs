//! The parts of [`FanoutStore`](crate::store::claims::FanoutStore) both backends share:
//! leasing the batches of the nodes a claim found free, moving and ending leases,
//! presence, the newest items for a resource coming online, and queuing jobs. Finding
//! and locking free nodes, the subscriber walk and waking workers differ and stay in
//! the backend folders.

use super::rows::Stored;
use super::Backend;
use crate::domain::NodeConfig;
use crate::store::claims::{
    batch_len, claim_has_room, ClaimLimits, ClaimedBatch, ClaimedJob, CollectionAbove, JobHead,
    SessionKey, Subscriber,
};
use crate::store::decode;
use crate::store::jobs::JobTarget;
use crate::store::StoreError;

/// Nodes with pending jobs, oldest head (lowest id) first, skipping nodes that have a
/// job under a live lease ([`Backend::LIVE_LEASE`], a probe of `fanout_jobs_leased`);
/// at most `$1`. The recursive part walks the distinct node_pks of
/// `fanout_jobs_by_node` with one index probe each (a loose index scan), and the head
/// is one more, so a node with 20,000 queued jobs costs as much as a node with one.
pub fn candidates_sql<B: Backend>() -> String {
    format!(
        "WITH RECURSIVE pending(node_pk) AS (
             SELECT min(node_pk) FROM fanout_jobs
           UNION ALL
             SELECT (SELECT min(f.node_pk) FROM fanout_jobs f WHERE f.node_pk > p.node_pk)
             FROM pending p WHERE p.node_pk IS NOT NULL
         )
         SELECT p.node_pk
         FROM pending p
         WHERE p.node_pk IS NOT NULL
           AND NOT EXISTS (
             SELECT 1 FROM fanout_jobs l WHERE l.node_pk = p.node_pk AND {}
           )
         ORDER BY (SELECT min(f.id) FROM fanout_jobs f WHERE f.node_pk = p.node_pk)
         LIMIT $1",
        B::LIVE_LEASE
    )
}

/// A subscriber from a row of `pk, jid, bare_jid, subid, options` (options as text);
/// `shares_bare_jid` is left to the caller.
pub fn subscriber<R: Stored>(r: &R) -> Result<Subscriber, StoreError> {
    let subid: String = r.field("subid")?;
    Ok(Subscriber {
        pk: r.field("pk")?,
        jid: r.field("jid")?,
        bare_jid: r.field("bare_jid")?,
        options: decode::options_or_default(&r.field::<String>("options")?, &subid),
        subid,
        shares_bare_jid: false,
        via: None,
    })
}

/// The (node pk, bare JID) pairs among nodes `$1` and bare JIDs `$2` with more than one
/// subscription: a page's subscribers whose copies must name their subscription (SubID,
/// XEP-0060 §12.5), on a leaf or a collection alike.
pub fn shared_bare_jids_sql(in_list: fn(&str) -> String) -> String {
    format!(
        "SELECT node_pk, bare_jid FROM subscriptions
         WHERE node_pk {} AND state = 'subscribed' AND bare_jid {}
         GROUP BY node_pk, bare_jid HAVING count(*) > 1",
        in_list("$1"),
        in_list("$2")
    )
}

/// The distinct bare JIDs of `page`, sorted.
pub fn bare_jids(page: &[Subscriber]) -> Vec<&str> {
    let mut bare: Vec<&str> = page.iter().map(|s| s.bare_jid.as_str()).collect();
    bare.sort_unstable();
    bare.dedup();
    bare
}

/// Sets `shares_bare_jid` on the subscribers whose (node pk, bare JID) is one of
/// `shared`, where `node_of` says which node a subscription is to (the leaf, or the
/// collection it comes through); `None` leaves a subscriber as it is.
pub fn mark_shared(
    page: &mut [Subscriber],
    shared: &[(i64, String)],
    node_of: impl Fn(&Subscriber) -> Option<i64>,
) {
    for sub in page {
        let Some(node) = node_of(sub) else {
            continue;
        };
        sub.shares_bare_jid = shared
            .iter()
            .any(|(pk, bare)| *pk == node && *bare == sub.bare_jid);
    }
}

/// The jobs at the head of one free node, as a claim reads them.
pub struct NodeHeads {
    pub node_pk: i64,
    ids: Vec<i64>,
    heads: Vec<JobHead>,
}

/// The nodes' heads from rows of [`Backend::JOB_HEADS`], node by node.
pub fn node_heads<R: Stored>(rows: &[R]) -> Result<Vec<NodeHeads>, StoreError> {
    let mut nodes: Vec<NodeHeads> = Vec::new();
    for r in rows {
        let node_pk: i64 = r.field("node_pk")?;
        let head = JobHead {
            kind: decode::job_kind(&r.field::<String>("kind")?)?,
            to_subscribers: r.field("to_subscribers")?,
            cursor: r.field("cursor")?,
            payload_bytes: r.field::<i64>("bytes")?.max(0) as u64,
        };
        match nodes.last_mut() {
            Some(node) if node.node_pk == node_pk => {
                node.ids.push(r.field("id")?);
                node.heads.push(head);
            }
            _ => nodes.push(NodeHeads {
                node_pk,
                ids: vec![r.field("id")?],
                heads: vec![head],
            }),
        }
    }
    Ok(nodes)
}

/// Cuts each node's heads to its batch ([`batch_len`]) and keeps, in order, the nodes
/// the claim has room for ([`claim_has_room`]); returns the ids of their batches.
pub fn choose(nodes: &mut Vec<NodeHeads>, limits: ClaimLimits) -> Vec<i64> {
    let (mut taken, mut jobs, mut bytes) = (0, 0, 0u64);
    let mut wanted = Vec::new();
    for node in nodes.iter_mut() {
        let len = batch_len(&node.heads, limits);
        let size: u64 = node.heads[..len].iter().map(|h| h.payload_bytes).sum();
        if !claim_has_room(taken, jobs, bytes, len, size, limits) {
            break;
        }
        node.ids.truncate(len);
        wanted.extend_from_slice(&node.ids);
        (taken, jobs, bytes) = (taken + 1, jobs + len, bytes.saturating_add(size));
    }
    nodes.truncate(taken);
    wanted
}

/// The jobs to lease: of each node's batch, the part before the first row the claim
/// could not lock (`row_locked`, sorted), since a batch must stay a prefix of its
/// node's queue.
pub fn locked_prefixes(nodes: &[NodeHeads], row_locked: &[i64]) -> Vec<i64> {
    let mut ids = Vec::new();
    for node in nodes {
        let prefix = node
            .ids
            .iter()
            .take_while(|id| row_locked.binary_search(id).is_ok())
            .count();
        ids.extend_from_slice(&node.ids[..prefix]);
    }
    ids
}

/// The claimed batches of `nodes`, from the rows the lease returned (`id, node_pk,
/// kind, payload_xml, message_type, target_jid, cursor`) and the nodes' rows (`pk,
/// name, config`; a node whose row is gone gets the default configuration).
pub fn batches<R: Stored>(
    nodes: &[NodeHeads],
    leased: &[R],
    node_rows: &[R],
    session: Option<SessionKey>,
) -> Result<Vec<ClaimedBatch>, StoreError> {
    let mut batches: Vec<ClaimedBatch> = Vec::with_capacity(nodes.len());
    for node in nodes {
        let (mut node_name, mut config) = (None, NodeConfig::default());
        for r in node_rows {
            if r.field::<i64>("pk")? == node.node_pk {
                node_name = Some(r.field("name")?);
                config = decode::config_or_default(&r.field::<String>("config")?, node.node_pk);
            }
        }
        batches.push(ClaimedBatch {
            node_pk: node.node_pk,
            node_name,
            config,
            cursor: 0,
            jobs: Vec::new(),
            session,
            collections: Vec::new(),
        });
    }
    for r in leased {
        let node_pk: i64 = r.field("node_pk")?;
        let Some(batch) = batches.iter_mut().find(|b| b.node_pk == node_pk) else {
            continue;
        };
        let target: Option<String> = r.field("target_jid")?;
        batch.cursor = r.field("cursor")?;
        batch.jobs.push(ClaimedJob {
            id: r.field("id")?,
            kind: decode::job_kind(&r.field::<String>("kind")?)?,
            payload_xml: r.field("payload_xml")?,
            headline: r.field::<String>("message_type")? == "headline",
            target: target.map_or(JobTarget::Subscribers, JobTarget::Jid),
        });
    }
    batches.retain(|b| !b.jobs.is_empty());
    for batch in &mut batches {
        batch.jobs.sort_by_key(|j| j.id);
    }
    Ok(batches)
}

/// Hands each batch the collections above its node, from rows of
/// [`collections_above_sql`](super::collections::collections_above_sql).
pub fn attach_collections<R: Stored>(
    batches: &mut [ClaimedBatch],
    rows: &[R],
) -> Result<(), StoreError> {
    for r in rows {
        let leaf: i64 = r.field("leaf")?;
        if let Some(batch) = batches.iter_mut().find(|b| b.node_pk == leaf) {
            batch.collections.push(CollectionAbove {
                pk: r.field("pk")?,
                name: r.field("name")?,
                direct: r.field::<i64>("depth")? == 1,
            });
        }
    }
    Ok(())
}

/// Implements `FanoutStore` for `$store` (with the inherent `lease_batches`); `$extra`
/// are the backend's own methods (`claim_batches`, `resource_available`, …).
macro_rules! fanout_store {
    ($store:ty, { $($extra:tt)* }) => {
        const _: () = {
            use std::time::Duration;

            use sqlx::{AssertSqlSafe, Database, Row, Transaction};

            use $crate::store::decode;
            use $crate::store::claims::{
                ClaimLimits, ClaimedBatch, CollectionAbove, CollectionPage, FanoutStore, JobListener,
                LastItem, LeafAffiliation, LeaseOwner, Resource, SessionKey, Subscriber,
            };
            use $crate::domain::Affiliation;
            use $crate::store::jobs::NewJob;
            use $crate::store::sql::claims;
            use $crate::store::sql::collections::{
                collection_page_sql, collections_above_sql, leaf_affiliations_sql,
            };
            use $crate::store::sql::Backend;
            use $crate::store::StoreError;

            type Conn = <<$store as Backend>::Db as Database>::Connection;

            impl $store {
                /// The (node, bare JID) pairs among `nodes` and `bare` that hold
                /// several subscriptions ([`claims::shared_bare_jids_sql`]).
                async fn shared_bare_jids(
                    &self,
                    nodes: &[i64],
                    bare: &[&str],
                ) -> Result<Vec<(i64, String)>, StoreError> {
                    if nodes.is_empty() || bare.is_empty() {
                        return Ok(Vec::new());
                    }
                    Ok(sqlx::query_as(AssertSqlSafe(claims::shared_bare_jids_sql(<$store>::in_list)))
                        .bind(Self::list(nodes))
                        .bind(Self::list(bare))
                        .fetch_all(self.pool())
                        .await?)
                }

                /// Queues `job` in the caller's transaction and returns its id. On
                /// PostgreSQL the same statement notifies the workers of every process
                /// (delivered on commit); on SQLite `commit` wakes them.
                pub async fn insert_job(conn: &mut Conn, job: &NewJob) -> Result<i64, sqlx::Error> {
                    sqlx::query_scalar(AssertSqlSafe(<$store>::waking(
                        "INSERT INTO fanout_jobs (node_pk, payload_xml, message_type, target_jid, kind)
                         VALUES ($1, $2, $3, $4, $5) RETURNING id",
                    )))
                    .bind(job.node_pk)
                    .bind(&job.payload_xml)
                    .bind(job.message_type())
                    .bind(job.target_jid())
                    .bind(job.kind.as_str())
                    .fetch_one(conn)
                    .await
                }

                /// Queues every job of `jobs`, in order; returns how many (for
                /// `commit`).
                pub(crate) async fn insert_jobs(
                    conn: &mut Conn,
                    jobs: &[NewJob],
                ) -> Result<usize, sqlx::Error> {
                    for job in jobs {
                        Self::insert_job(conn, job).await?;
                    }
                    Ok(jobs.len())
                }

                /// Leases batches of `nodes` (free nodes, oldest head first, that no
                /// other claimer can take meanwhile) within `limits`, under `session`,
                /// in a few statements for the whole group: read the nodes' heads,
                /// row-lock the batches, lease them, read the nodes. Commits `tx` if
                /// anything was leased, else rolls it back.
                pub(crate) async fn lease_batches(
                    mut tx: Transaction<'static, <$store as Backend>::Db>,
                    nodes: &[i64],
                    owner: LeaseOwner,
                    session: Option<SessionKey>,
                    lease: Duration,
                    limits: ClaimLimits,
                ) -> Result<Vec<ClaimedBatch>, StoreError> {
                    if nodes.is_empty() {
                        tx.rollback().await?;
                        return Ok(Vec::new());
                    }
                    let rows = sqlx::query(<$store>::JOB_HEADS)
                        .bind(Self::list(nodes))
                        .bind(i64::from(limits.max_jobs))
                        .fetch_all(&mut *tx)
                        .await?;
                    let mut heads = claims::node_heads(&rows)?;
                    let wanted = claims::choose(&mut heads, limits);
                    // Rows another transaction holds (an owner finishing an expired
                    // batch) are skipped on PostgreSQL, and each batch stops before the
                    // first of them.
                    let row_locked: Vec<i64> = sqlx::query_scalar(AssertSqlSafe(format!(
                        "SELECT id FROM fanout_jobs WHERE id {} ORDER BY id{}",
                        <$store>::in_list("$1"),
                        <$store>::LOCK_ROW_SKIP_LOCKED
                    )))
                    .bind(Self::list(&wanted))
                    .fetch_all(&mut *tx)
                    .await?;
                    // Nothing if all are held: then the statements below find nothing.
                    let ids = claims::locked_prefixes(&heads, &row_locked);
                    let leased = sqlx::query(AssertSqlSafe(format!(
                        "UPDATE fanout_jobs
                         SET lease_owner = $1{}, lease_until = {}, lease_session = $4
                         WHERE id {}
                         RETURNING id, node_pk, kind, payload_xml, message_type, target_jid, cursor",
                        <$store>::UUID,
                        <$store>::now_plus("$2"),
                        <$store>::in_list("$3")
                    )))
                    .bind(owner.to_string())
                    .bind(Self::seconds(lease.as_secs_f64()))
                    .bind(Self::list(&ids))
                    .bind(session.map(|k| k.0))
                    .fetch_all(&mut *tx)
                    .await?;
                    let node_pks: Vec<i64> = heads.iter().map(|n| n.node_pk).collect();
                    let node_rows = sqlx::query(AssertSqlSafe(format!(
                        "SELECT pk, name, CAST(config AS TEXT) AS config FROM nodes WHERE pk {}",
                        <$store>::in_list("$1")
                    )))
                    .bind(Self::list(&node_pks))
                    .fetch_all(&mut *tx)
                    .await?;
                    let mut batches = claims::batches(&heads, &leased, &node_rows, session)?;
                    // The collections above the claimed nodes, for walks through them
                    // (one index probe per link).
                    let above = sqlx::query(AssertSqlSafe(collections_above_sql(
                        &<$store>::in_list("$1"),
                    )))
                    .bind(Self::list(&node_pks))
                    .fetch_all(&mut *tx)
                    .await?;
                    claims::attach_collections(&mut batches, &above)?;
                    if batches.is_empty() {
                        tx.rollback().await?;
                    } else {
                        tx.commit().await?;
                    }
                    Ok(batches)
                }

                /// Extends the lease on `jobs` (and saves `cursor`, if any); `false` if
                /// they are no longer all the owner's.
                async fn extend_lease(
                    &self,
                    owner: LeaseOwner,
                    jobs: &[i64],
                    cursor: Option<i64>,
                    lease: Duration,
                ) -> Result<bool, StoreError> {
                    let done = sqlx::query(AssertSqlSafe(format!(
                        "UPDATE fanout_jobs SET cursor = COALESCE($4, cursor), lease_until = {}
                         WHERE {}",
                        <$store>::now_plus("$2"),
                        owned("$3")
                    )))
                    .bind(owner.to_string())
                    .bind(Self::seconds(lease.as_secs_f64()))
                    .bind(Self::list(jobs))
                    .bind(cursor)
                    .execute(self.pool())
                    .await?;
                    Ok(done.rows_affected() == jobs.len() as u64)
                }
            }

            /// The jobs `$3` still leased by `$1`.
            fn owned(ids: &str) -> String {
                format!(
                    "id {} AND lease_owner = $1{}",
                    <$store>::in_list(ids),
                    <$store>::UUID
                )
            }

            #[async_trait::async_trait]
            impl FanoutStore for $store {
                async fn renew(
                    &self,
                    owner: LeaseOwner,
                    jobs: &[i64],
                    lease: Duration,
                ) -> Result<bool, StoreError> {
                    self.extend_lease(owner, jobs, None, lease).await
                }

                async fn save_cursor(
                    &self,
                    owner: LeaseOwner,
                    jobs: &[i64],
                    cursor: i64,
                    lease: Duration,
                ) -> Result<bool, StoreError> {
                    self.extend_lease(owner, jobs, Some(cursor), lease).await
                }

                async fn complete(
                    &self,
                    owner: LeaseOwner,
                    jobs: &[i64],
                    node_pk: i64,
                    delete_node: bool,
                ) -> Result<bool, StoreError> {
                    let delete_jobs = sqlx::query(AssertSqlSafe(format!(
                        "DELETE FROM fanout_jobs WHERE {}",
                        owned("$2")
                    )))
                    .bind(owner.to_string())
                    .bind(Self::list(jobs));
                    let all = jobs.len() as u64;
                    if !delete_node {
                        // One statement, one round trip. A batch's jobs are leased,
                        // renewed and lost together, so either all of them are still
                        // ours or none is.
                        return Ok(delete_jobs.execute(self.pool()).await?.rows_affected() == all);
                    }
                    let mut tx = self.write_tx().await?;
                    if delete_jobs.execute(&mut *tx).await?.rows_affected() != all {
                        tx.rollback().await?;
                        return Ok(false);
                    }
                    // Subscriptions, items and affiliations go with it (ON DELETE CASCADE).
                    sqlx::query("DELETE FROM nodes WHERE pk = $1")
                        .bind(node_pk)
                        .execute(&mut *tx)
                        .await?;
                    self.commit(tx, 0).await?;
                    Ok(true)
                }

                async fn release(
                    &self,
                    owner: LeaseOwner,
                    jobs: &[i64],
                ) -> Result<(), StoreError> {
                    sqlx::query(AssertSqlSafe(format!(
                        "UPDATE fanout_jobs
                         SET lease_owner = NULL, lease_until = NULL, lease_session = NULL
                         WHERE {}",
                        owned("$2")
                    )))
                    .bind(owner.to_string())
                    .bind(Self::list(jobs))
                    .execute(self.pool())
                    .await?;
                    Ok(())
                }

                async fn subscribers(
                    &self,
                    node_pk: i64,
                    after: i64,
                    limit: u32,
                ) -> Result<Vec<Subscriber>, StoreError> {
                    // Two statements whose worst plan is still linear: the keyset page on
                    // subscriptions_fanout, then one probe for the page's bare JIDs that
                    // have another subscription to the node. (On PostgreSQL a correlated
                    // EXISTS per row was quadratic whenever stale statistics made the
                    // planner probe it through subscriptions_fanout: 385 ms for a page of
                    // a 10,000-subscriber node, against 3 ms for this probe planned the
                    // same bad way, and 1 ms with fresh statistics.)
                    let started = std::time::Instant::now();
                    let rows = sqlx::query(<$store>::SUBSCRIBER_PAGE)
                        .bind(node_pk)
                        .bind(after)
                        .bind(i64::from(limit))
                        .fetch_all(self.pool())
                        .await?;
                    let mut page = rows.iter().map(claims::subscriber).collect::<Result<Vec<_>, _>>()?;
                    let shared = self.shared_bare_jids(&[node_pk], &claims::bare_jids(&page)).await?;
                    claims::mark_shared(&mut page, &shared, |_| Some(node_pk));
                    self.after_subscriber_read("subscriber page", started.elapsed(), page.len());
                    Ok(page)
                }

                async fn collection_subscribers(
                    &self,
                    above: &[CollectionAbove],
                    leaves: &[i64],
                    readers: &[&str],
                    after: i64,
                    limit: u32,
                ) -> Result<CollectionPage, StoreError> {
                    if above.is_empty() || leaves.is_empty() || readers.is_empty() {
                        return Ok(CollectionPage::default());
                    }
                    let started = std::time::Instant::now();
                    let all: Vec<i64> = above.iter().map(|c| c.pk).collect();
                    let direct: Vec<i64> = above.iter().filter(|c| c.direct).map(|c| c.pk).collect();
                    let anyone = readers.contains(&Affiliation::None.as_str());
                    let rows = sqlx::query(AssertSqlSafe(collection_page_sql(<$store>::in_list)))
                        .bind(Self::list(&all))
                        .bind(after)
                        .bind(i64::from(limit))
                        .bind(Self::list(&direct))
                        .bind(anyone)
                        .bind(Self::list(leaves))
                        .bind(Self::list(readers))
                        .fetch_all(self.pool())
                        .await?;
                    let mut page = CollectionPage::default();
                    for r in &rows {
                        let mut sub = claims::subscriber(r)?;
                        sub.via = Some(r.try_get("via")?);
                        page.subscribers.push(sub);
                    }
                    let bare = claims::bare_jids(&page.subscribers);
                    // A bare JID with several subscriptions to one collection: each copy
                    // names its subscription (SubID), as on a leaf.
                    let shared = self.shared_bare_jids(&all, &bare).await?;
                    if !bare.is_empty() {
                        let rows: Vec<(i64, String, String)> = sqlx::query_as(AssertSqlSafe(
                            leaf_affiliations_sql(<$store>::in_list),
                        ))
                        .bind(Self::list(leaves))
                        .bind(Self::list(&bare))
                        .fetch_all(self.pool())
                        .await?;
                        for (leaf_pk, bare_jid, affiliation) in rows {
                            page.affiliations.push(LeafAffiliation {
                                leaf_pk,
                                bare_jid,
                                affiliation: decode::affiliation(&affiliation)?,
                            });
                        }
                    }
                    claims::mark_shared(&mut page.subscribers, &shared, |sub| {
                        let via = sub.via.as_deref()?;
                        above.iter().find(|c| c.name == via).map(|c| c.pk)
                    });
                    self.after_subscriber_read("collection subscriber page", started.elapsed(), page.subscribers.len());
                    Ok(page)
                }

                async fn available_resources(
                    &self,
                    bare_jids: &[String],
                ) -> Result<Vec<Resource>, StoreError> {
                    if bare_jids.is_empty() {
                        return Ok(Vec::new());
                    }
                    let rows: Vec<(String, String, String)> = sqlx::query_as(AssertSqlSafe(format!(
                        "SELECT jid, bare_jid, show FROM presence WHERE bare_jid {}",
                        <$store>::in_list("$1")
                    )))
                    .bind(Self::list(bare_jids))
                    .fetch_all(self.pool())
                    .await?;
                    Ok(rows
                        .into_iter()
                        .map(|(jid, bare_jid, show)| Resource { jid, bare_jid, show: decode::show(&show) })
                        .collect())
                }

                async fn resource_unavailable(&self, jid: &str) -> Result<(), StoreError> {
                    sqlx::query("DELETE FROM presence WHERE jid = $1")
                        .bind(jid)
                        .execute(self.pool())
                        .await?;
                    Ok(())
                }

                async fn forget_presence(&self, bare_jid: &str) -> Result<(), StoreError> {
                    sqlx::query("DELETE FROM presence WHERE bare_jid = $1")
                        .bind(bare_jid)
                        .execute(self.pool())
                        .await?;
                    Ok(())
                }

                async fn last_items_on_presence(
                    &self,
                    bare_jid: &str,
                    full_jid: &str,
                ) -> Result<Vec<LastItem>, StoreError> {
                    // Rows come node by node, the full-JID subscription first (its
                    // options are the more specific wish), and the first row of each
                    // node is kept (SQLite has no DISTINCT ON). The newest item is a
                    // probe of items_by_seq.
                    let rows = sqlx::query(
                        "SELECT n.pk, n.name, CAST(n.config AS TEXT) AS config, s.subid,
                                CAST(s.options AS TEXT) AS options,
                                i.item_id, i.publisher, i.payload, i.published_at
                         FROM subscriptions s
                         JOIN nodes n ON n.pk = s.node_pk AND NOT n.deleted
                         JOIN items i ON i.node_pk = n.pk
                                     AND i.seq = (SELECT max(seq) FROM items WHERE node_pk = n.pk)
                         WHERE s.bare_jid = $1 AND (s.jid = $1 OR s.jid = $2)
                           AND s.state = 'subscribed'
                           AND n.config ->> 'send_last_published_item' = 'on_sub_and_presence'
                         ORDER BY n.pk, (s.jid = $2) DESC",
                    )
                    .bind(bare_jid)
                    .bind(full_jid)
                    .fetch_all(self.pool())
                    .await?;
                    let mut items: Vec<LastItem> = Vec::with_capacity(rows.len());
                    for r in &rows {
                        let node_pk: i64 = r.try_get("pk")?;
                        if items.last().is_some_and(|i| i.node_pk == node_pk) {
                            continue;
                        }
                        let subid: String = r.try_get("subid")?;
                        items.push(LastItem {
                            node_pk,
                            node_name: r.try_get("name")?,
                            config: decode::config_or_default(r.try_get("config")?, node_pk),
                            options: decode::options_or_default(r.try_get("options")?, &subid),
                            item_id: r.try_get("item_id")?,
                            publisher: r.try_get("publisher")?,
                            payload: r.try_get("payload")?,
                            published_at: r.try_get("published_at")?,
                        });
                    }
                    Ok(items)
                }

                async fn listen(&self) -> Result<Box<dyn JobListener>, StoreError> {
                    Ok(Box::new(self.job_events().listen().await?))
                }

                async fn queue_jobs(&self, jobs: &[NewJob]) -> Result<(), StoreError> {
                    if jobs.is_empty() {
                        return Ok(());
                    }
                    let mut tx = self.write_tx().await?;
                    let queued = Self::insert_jobs(&mut tx, jobs).await?;
                    self.commit(tx, queued).await?;
                    Ok(())
                }

                $($extra)*
            }
        };
    };
}
pub(crate) use fanout_store;
