//! "Jobs were committed" as a process hears it, whatever the backend: every publish
//! (and every other change subscribers must hear about) queues a job in its
//! transaction, so this is also "something was published".
//!
//! PostgreSQL notifies [`JOBS_CHANNEL`] on commit, to every process attached to the
//! database; SQLite's store pokes its in-process [`JobSignal`] after the commit. Either
//! may miss one (a listener reconnecting; a job queued by an admin command beside an
//! SQLite service), so listeners also poll now and then. Nothing here says *which*
//! node changed: listeners re-read what they follow.

use sqlx::postgres::{PgListener, PgPool};

use super::postgres::JOBS_CHANNEL;
use super::sqlite::jobs::{JobSignal, JobWaiter};
use super::StoreError;

/// Where to listen for committed jobs.
#[derive(Debug, Clone)]
pub enum JobEvents {
    /// LISTEN on [`JOBS_CHANNEL`] through a connection of this pool.
    Postgres(PgPool),
    /// The SQLite store's signal.
    Sqlite(JobSignal),
}

impl JobEvents {
    /// Starts listening; the first `wait` returns at the next commit.
    pub async fn listen(&self) -> Result<JobListener, StoreError> {
        Ok(match self {
            JobEvents::Postgres(pool) => {
                let mut l = PgListener::connect_with(pool).await?;
                l.listen(JOBS_CHANNEL).await?;
                JobListener::Postgres(Box::new(l))
            }
            JobEvents::Sqlite(signal) => JobListener::Sqlite(signal.listen()),
        })
    }
}

/// One listener, from [`JobEvents::listen`].
#[derive(Debug)]
pub enum JobListener {
    Postgres(Box<PgListener>),
    Sqlite(JobWaiter),
}

/// Resolves at the next commit that queued jobs, or when PostgreSQL's connection was
/// lost and is made again (notifications sent in between are gone, so that counts as
/// a wake-up). An error means the listener is broken (store closed): make a new one.
/// The same for the gateway's event streams and the fan-out engine
/// ([`FanoutStore::listen`](super::claims::FanoutStore::listen)).
#[async_trait::async_trait]
impl super::claims::JobListener for JobListener {
    async fn wait(&mut self) -> Result<(), StoreError> {
        match self {
            JobListener::Postgres(l) => {
                l.try_recv().await?;
                Ok(())
            }
            JobListener::Sqlite(w) => w.wait().await,
        }
    }
}
