//! Inserting fan-out jobs inside the caller's transaction, with the wake-up
//! notification in the same statement.

use sqlx::PgConnection;

use super::PgStore;
use crate::store::jobs::{JobTarget, NewJob};

/// The LISTEN/NOTIFY channel that wakes fan-out workers in every pubsubd process
/// attached to this database. PostgreSQL delivers the notification on commit, so a
/// worker never wakes for a job it cannot see yet.
pub const JOBS_CHANNEL: &str = "pubsubd_fanout_jobs";

/// Queues `job` in the caller's transaction and returns its id. The insert and the
/// wake-up notification are one statement: one round trip on the publish path.
pub async fn insert_job(conn: &mut PgConnection, job: &NewJob) -> Result<i64, sqlx::Error> {
    let target = match &job.target {
        JobTarget::Subscribers => None,
        JobTarget::Jid(j) => Some(j.as_str()),
    };
    sqlx::query_scalar(
        "WITH j AS (
             INSERT INTO fanout_jobs (node_pk, payload_xml, message_type, target_jid, kind)
             VALUES ($1, $2, $3, $4, $5) RETURNING id
         )
         SELECT j.id FROM j, pg_notify($6, '') AS n",
    )
    .bind(job.node_pk)
    .bind(&job.payload_xml)
    .bind(if job.headline { "headline" } else { "normal" })
    .bind(target)
    .bind(job.kind.as_str())
    .bind(JOBS_CHANNEL)
    .fetch_one(&mut *conn)
    .await
}

impl PgStore {
    /// Queues every job of `jobs`, in order; returns how many.
    pub(crate) async fn insert_jobs(
        conn: &mut PgConnection,
        jobs: &[NewJob],
    ) -> Result<usize, sqlx::Error> {
        for job in jobs {
            insert_job(conn, job).await?;
        }
        Ok(jobs.len())
    }
}
