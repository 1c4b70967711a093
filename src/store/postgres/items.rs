//! Items in PostgreSQL: what differs from the shared SQL ([`crate::store::sql`]) is a
//! batch of publishes (and so the common publish, a batch of one) in one statement:
//! DML inside `WITH`, with the wake-up notification in the same statement.

use sqlx::PgPool;

use super::PgStore;

/// Deletes all but the newest `keeps[n]` items of each node `node_pks[n]`, in one
/// statement. Unprepared, so planned for the table as it is: the generic plan a
/// prepared statement settles on while `items` is small joins a sequential scan of the
/// whole table, which it would then keep as the table grows to millions of rows.
async fn trim_many(pool: &PgPool, node_pks: &[i64], keeps: &[i64]) -> Result<(), sqlx::Error> {
    sqlx::query(
        "DELETE FROM items i USING (
             SELECT k.node_pk, c.seq AS cutoff
             FROM unnest($1::bigint[], $2::bigint[]) AS k(node_pk, keep)
             CROSS JOIN LATERAL (
                 SELECT seq FROM items j WHERE j.node_pk = k.node_pk
                 ORDER BY j.seq DESC OFFSET k.keep LIMIT 1) c
         ) cut
         WHERE i.node_pk = cut.node_pk AND i.seq <= cut.cutoff",
    )
    .bind(node_pks)
    .bind(keeps)
    .persistent(false)
    .execute(pool)
    .await?;
    Ok(())
}

crate::store::sql::item_store!(PgStore, {
    async fn publish_batch(&self, batch: &[BatchedPublish]) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        // One statement for every item and job of the batch, in order (rows are
        // inserted in the order of the SELECT, so sequence numbers and job ids follow
        // the publishes). It also names the nodes that may now hold more than their
        // `keep` items, read from the snapshot before the statement (data-modifying
        // CTEs see the snapshot from before it); only those are trimmed, in one more
        // statement.
        let col = |f: &dyn Fn(&BatchedPublish) -> Option<String>| -> Vec<Option<String>> {
            batch.iter().map(f).collect()
        };
        let node_pks: Vec<i64> = batch.iter().map(|p| p.node_pk).collect();
        let keeps: Vec<i64> = batch.iter().map(|p| i64::from(p.keep)).collect();
        let item_ids = col(&|p| Some(p.item.id.as_str().to_owned()));
        let publishers = col(&|p| Some(p.item.publisher.clone()));
        let payloads = col(&|p| p.item.payload.clone());
        let job_payloads = col(&|p| Some(p.job.payload_xml.clone()));
        let types = col(&|p| Some(p.job.message_type().to_owned()));
        let targets = col(&|p| p.job.target_jid().map(str::to_owned));
        let kinds = col(&|p| Some(p.job.kind.as_str().to_owned()));
        let (full_nodes, full_keeps): (Vec<i64>, Vec<i64>) = sqlx::query_as(
            "WITH input AS (
                 SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[],
                                      $5::text[], $6::text[], $7::text[], $8::text[],
                                      $10::bigint[])
                     WITH ORDINALITY AS t(node_pk, item_id, publisher, payload,
                                          job_payload, message_type, target_jid, kind,
                                          keep, ord)
             ), stored AS (
                 INSERT INTO items (node_pk, item_id, publisher, payload)
                 SELECT node_pk, item_id, publisher, payload FROM input ORDER BY ord
                 ON CONFLICT (node_pk, item_id) DO UPDATE
                 SET seq = nextval('item_seq'), publisher = EXCLUDED.publisher,
                     payload = EXCLUDED.payload, published_at = now()
                 RETURNING 1
             ), queued AS (
                 INSERT INTO fanout_jobs (node_pk, payload_xml, message_type, target_jid, kind)
                 SELECT node_pk, job_payload, message_type, target_jid, kind FROM input ORDER BY ord
                 RETURNING 1
             ), per_node AS (
                 SELECT node_pk, count(*) AS added, min(keep) AS keep FROM input GROUP BY node_pk
             ), full_nodes AS (
                 -- Full after this statement: more were added than it keeps, or it
                 -- already held at least keep - added + 1 items.
                 SELECT node_pk, keep FROM per_node p
                 WHERE p.added > p.keep OR EXISTS (
                     SELECT 1 FROM items i WHERE i.node_pk = p.node_pk
                     ORDER BY i.seq DESC OFFSET p.keep - p.added LIMIT 1)
             )
             SELECT ARRAY(SELECT node_pk FROM full_nodes ORDER BY node_pk),
                    ARRAY(SELECT keep FROM full_nodes ORDER BY node_pk)
             FROM (SELECT (SELECT count(*) FROM stored), (SELECT count(*) FROM queued)) AS written,
                  pg_notify($9, '') AS n",
        )
        .bind(&node_pks)
        .bind(&item_ids)
        .bind(&publishers)
        .bind(&payloads)
        .bind(&job_payloads)
        .bind(&types)
        .bind(&targets)
        .bind(&kinds)
        .bind(super::JOBS_CHANNEL)
        .bind(&keeps)
        .fetch_one(self.pool())
        .await?;
        if !full_nodes.is_empty() {
            // Trimming is idempotent: a crash before it only delays it to the next publish.
            trim_many(self.pool(), &full_nodes, &full_keeps).await?;
        }
        Ok(())
    }
});
