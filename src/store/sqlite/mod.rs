//! The SQLite store: the whole service in one file, for trying pubsubd out and for
//! small installations that run a single instance.
//!
//! Same traits, same semantics as [`super::postgres`]; the SQL differs where SQLite
//! has no equivalent (no sequences, arrays, `FOR UPDATE`, or DML inside `WITH`).
//! Two things make it safe:
//!
//! - **One service per file.** [`instance_lock`] takes an exclusive lock on
//!   `<file>.lock` before the database is opened, and holds it for the life of the
//!   store; a second pubsubd on the same file refuses to start. So the jobs in the file
//!   are queued by this process, and an in-process signal ([`jobs::JobSignal`]) replaces
//!   PostgreSQL's LISTEN/NOTIFY. The one exception, admin commands opened
//!   [beside the service](SqliteStore::open_beside_service), queue jobs that the
//!   fan-out finds when it polls.
//! - **Writers queue, they do not fail.** Every write transaction starts with
//!   `BEGIN IMMEDIATE`, taking SQLite's write lock up front: a transaction that read
//!   first and then wrote could otherwise fail when another connection wrote in between
//!   (WAL's stale snapshot), instead of waiting its turn under the busy timeout.
//!   Read-modify-write rules (the last owner, an existing subscription) are atomic
//!   because writes are serialised; so is a fan-out claim ([`claims`]), which is why
//!   it needs no advisory locks or `SKIP LOCKED`.

use std::path::{Path, PathBuf};
use std::str::FromStr as _;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Sqlite, Transaction};

pub mod claims;
pub mod instance_lock;
pub mod jobs;

use super::job_events::JobEvents;
use super::sql::Backend;
use super::StoreError;
use instance_lock::InstanceLock;
use jobs::JobSignal;

/// The SQLite migrations, embedded at compile time. A folder of their own: sqlx's
/// `migrate!("./migrations")` for PostgreSQL reads files only, not subfolders.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// Where the data goes when no `database` is configured: a file in the working
/// directory, so that `pubsubd run` needs nothing but an XMPP server.
pub const DEFAULT_FILE: &str = "pubsubd.sqlite3";

/// Most connections in the pool. SQLite runs one writer at a time whatever the pool
/// size; a few connections let reads (WAL: they never wait for the writer) go on beside
/// it. More would only queue on the write lock.
pub const MAX_CONNECTIONS: u32 = 4;

/// How long a writer waits for the write lock held by another connection of this
/// process before the request fails with `wait`. Write transactions are a few
/// statements long, so this is only reached when something is badly stuck.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a request waits for a free pool connection (as for PostgreSQL).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// The current time in the one format every time column uses (see
/// `migrations/sqlite/0001_initial.sql`): string order is time order. A macro so that
/// constant statements can include it.
macro_rules! now {
    () => {
        "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"
    };
}

/// SQLite-backed [`super::Store`].
#[derive(Clone, Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
    jobs: JobSignal,
    path: PathBuf,
    // Held for the store's lifetime: dropping the last clone releases the file for
    // another process. `None` for a store opened beside the service.
    lock: Option<std::sync::Arc<InstanceLock>>,
}

/// Whether `e` is SQLite's "database is locked" or "table is locked" (a writer waited
/// out its busy timeout), which the caller may retry.
pub fn is_busy(e: &sqlx::Error) -> bool {
    const SQLITE_BUSY: i32 = 5;
    const SQLITE_LOCKED: i32 = 6;
    let sqlx::Error::Database(db) = e else {
        return false;
    };
    if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_none() {
        return false;
    }
    // Extended result codes (e.g. SQLITE_BUSY_SNAPSHOT = 517) carry the primary code
    // in their low byte.
    db.code()
        .and_then(|c| c.parse::<i32>().ok())
        .is_some_and(|c| matches!(c & 0xff, SQLITE_BUSY | SQLITE_LOCKED))
}

impl SqliteStore {
    /// Opens (creating it if missing) the SQLite database at `path` for the service,
    /// with a pool of at most `max_connections` (capped at [`MAX_CONNECTIONS`]).
    ///
    /// Fails with [`StoreError::InUse`] if another pubsubd service has the file open.
    pub async fn open(path: &Path, max_connections: u32) -> Result<SqliteStore, StoreError> {
        let lock = InstanceLock::acquire(path)?;
        Self::connect(path, max_connections, Some(lock)).await
    }

    /// Opens the database for a short-lived admin command (`pubsubd node …`), which
    /// may run while the service has the file: no instance lock. SQLite itself keeps
    /// the two processes' transactions apart (WAL, `BEGIN IMMEDIATE`, busy timeout).
    /// Jobs queued here wake nothing in the service; its fan-out workers find them when
    /// they next look. A missing file is an error, not a new empty database.
    pub async fn open_beside_service(
        path: &Path,
        max_connections: u32,
    ) -> Result<SqliteStore, StoreError> {
        if !path.exists() {
            return Err(StoreError::Unavailable(format!(
                "no SQLite database at {} (give --database, or start pubsubd there once)",
                path.display()
            )));
        }
        Self::connect(path, max_connections, None).await
    }

    async fn connect(
        path: &Path,
        max_connections: u32,
        lock: Option<InstanceLock>,
    ) -> Result<SqliteStore, StoreError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            // Readers never wait for the writer, and a commit appends to one file.
            .journal_mode(SqliteJournalMode::Wal)
            // A publish is acknowledged after its commit: FULL makes that commit
            // survive a power cut as well as a crash, like PostgreSQL's default.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(max_connections.clamp(1, MAX_CONNECTIONS))
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(|e| {
                StoreError::Unavailable(format!("cannot open SQLite file {}: {e}", path.display()))
            })?;
        Ok(SqliteStore {
            pool,
            jobs: JobSignal::new(),
            path: path.to_path_buf(),
            lock: lock.map(std::sync::Arc::new),
        })
    }

    /// The pool, for modules of this backend (and tests).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file whose lock keeps other pubsubd services out (`None` when opened
    /// [beside the service](Self::open_beside_service)).
    pub fn lock_path(&self) -> Option<&Path> {
        self.lock.as_deref().map(InstanceLock::path)
    }

    /// The wake-up for fan-out workers, poked after every commit that queued jobs.
    pub fn job_signal(&self) -> &JobSignal {
        &self.jobs
    }

    /// After a read of subscribers: nothing to do (PostgreSQL refreshes its planner's
    /// statistics after a slow one; SQLite's are only those `ANALYZE` left).
    pub(crate) fn after_subscriber_read(&self, _what: &str, _took: Duration, _rows: usize) {}

    /// [`job_signal`](Self::job_signal) for the gateway and the fan-out engine.
    pub fn job_events(&self) -> JobEvents {
        JobEvents::Sqlite(self.jobs.clone())
    }

    /// Starts a write transaction holding the write lock (see the module docs).
    pub(crate) async fn write_tx(&self) -> Result<Transaction<'static, Sqlite>, sqlx::Error> {
        self.pool.begin_with("BEGIN IMMEDIATE").await
    }

    /// A list parameter for [`Backend::in_list`]: a JSON array.
    pub(crate) fn list<T: serde::Serialize>(values: &[T]) -> sqlx::types::Json<&[T]> {
        sqlx::types::Json(values)
    }

    /// The parameter of [`Backend::now_plus`]: the SQLite date modifier that adds
    /// `secs` to now (millisecond precision, like the columns).
    pub(crate) fn seconds(secs: f64) -> String {
        format!("{secs:+.3} seconds")
    }

    /// Commits `tx`, then wakes the fan-out workers if it queued jobs (`queued` > 0):
    /// only after the commit can they see them.
    pub(crate) async fn commit(
        &self,
        tx: Transaction<'static, Sqlite>,
        queued: usize,
    ) -> Result<(), sqlx::Error> {
        tx.commit().await?;
        if queued > 0 {
            self.jobs.jobs_committed();
        }
        Ok(())
    }
}

/// The file path of an `sqlite:` URL: `sqlite:data/pubsubd.sqlite3` and
/// `sqlite://data/pubsubd.sqlite3` are relative to the working directory,
/// `sqlite:///var/lib/pubsubd/pubsubd.sqlite3` is absolute. In-memory databases and
/// query parameters are refused: pubsubd needs a file (for the instance lock and so
/// that data survives a restart) and sets its own connection options.
pub fn path_from_url(url: &str) -> Result<PathBuf, String> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .ok_or_else(|| format!("`{url}` is not an sqlite: URL"))?;
    if rest.contains('?') {
        return Err(format!(
            "`{url}`: query parameters are not supported in an sqlite: URL (pubsubd sets WAL, busy timeout and foreign keys itself)"
        ));
    }
    if rest.is_empty() || rest == ":memory:" {
        return Err(format!(
            "`{url}`: pubsubd needs an SQLite file, not an in-memory database"
        ));
    }
    // Let sqlx check the rest the way it would parse it.
    SqliteConnectOptions::from_str(url).map_err(|e| format!("`{url}`: {e}"))?;
    Ok(PathBuf::from(rest))
}

impl Backend for SqliteStore {
    type Db = Sqlite;
    const NOW: &'static str = now!();
    fn in_list(param: &str) -> String {
        format!("IN (SELECT value FROM json_each({param}))")
    }
    fn ordered(param: &str, _ty: &str, name: &str) -> String {
        format!("(SELECT value AS {name}, key + 1 AS ord FROM json_each({param})) AS u")
    }
    const UUID: &'static str = "";
    // In the format of every time column (string order is time order); the parameter
    // is a date modifier such as `+30.000 seconds`.
    fn now_plus(param: &str) -> String {
        format!("strftime('%Y-%m-%dT%H:%M:%fZ', 'now', {param})")
    }
    fn seconds_since(expr: &str) -> String {
        format!("(julianday('now') - julianday({expr})) * 86400.0")
    }
    fn local_timeout(_ms: u32) -> Option<String> {
        None
    }
    // Write transactions hold the file's write lock from their first statement.
    const LOCK_ROW: &'static str = "";
    const LOCK_ROW_SKIP_LOCKED: &'static str = "";
    const LIVE_LEASE: &'static str =
        concat!("l.lease_owner IS NOT NULL AND l.lease_until > ", now!());
    // No LATERAL: the first `$2` ids of each node come from a subquery per node.
    const JOB_HEADS: &'static str = "
        SELECT h.node_pk, h.id, h.kind, h.target_jid IS NULL AS to_subscribers, h.cursor,
               length(CAST(h.payload_xml AS BLOB)) AS bytes
        FROM json_each($1) u
        JOIN fanout_jobs h ON h.id IN (
            SELECT f.id FROM fanout_jobs f WHERE f.node_pk = u.value ORDER BY f.id LIMIT $2)
        ORDER BY u.key, h.id";
    // The plain keyset form: SQLite plans `(node_pk, pk) > ($1, $2)` as a scan of the
    // whole node.
    const SUBSCRIBER_PAGE: &'static str =
        "SELECT pk, jid, bare_jid, subid, options FROM subscriptions
         WHERE node_pk = $1 AND state = 'subscribed' AND pk > $2 ORDER BY pk LIMIT $3";
    fn waking(insert: &str) -> String {
        insert.to_owned()
    }
    // PostgreSQL's `nextval('item_seq')`: a one-row counter, taken inside the write
    // transaction.
    const NEXT_SEQ: &'static str =
        "UPDATE item_seq SET last_value = last_value + 1 WHERE only_row = 1 RETURNING last_value";
    const ONE_STATEMENT_BATCH: bool = false;
    const SUBSCRIPTIONS_JSON: &'static str = "json_group_array(json_object(
        'pk', s.pk, 'jid', s.jid, 'subid', s.subid, 'state', s.state,
        'options', json(s.options)) ORDER BY s.pk)";
    const LOCK_LINKS: Option<&'static str> = None;
}

crate::store::sql::node_store!(SqliteStore);
crate::store::sql::item_store!(SqliteStore, {});
crate::store::sql::subscription_store!(SqliteStore);
crate::store::sql::affiliation_store!(SqliteStore);
crate::store::sql::item_seq_store!(SqliteStore);
crate::store::sql::collection_store!(SqliteStore);

crate::store::sql::service_store!(SqliteStore, {
    async fn expire_items(&self, batch: u32) -> Result<u64, StoreError> {
        // As for PostgreSQL: only nodes with a numeric item_expire are looked at, and
        // their expired items are found by the published_at index. The cut-off is
        // formatted like published_at, so the comparison is a string comparison.
        let done = sqlx::query(
            "DELETE FROM items WHERE rowid IN (
                 SELECT i.rowid
                 FROM nodes n
                 JOIN items i ON i.node_pk = n.pk
                 WHERE NOT n.deleted
                   AND json_type(n.config, '$.item_expire') IN ('integer', 'real')
                   AND i.published_at < strftime('%Y-%m-%dT%H:%M:%fZ', 'now',
                         '-' || json_extract(n.config, '$.item_expire') || ' seconds')
                 ORDER BY i.published_at
                 LIMIT ?1
             )",
        )
        .bind(i64::from(batch))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    async fn fold_item_counts(&self, _batch: u32) -> Result<u64, StoreError> {
        // The triggers of migrations/sqlite/0011_item_counts.sql update the node's
        // row at once (one writer at a time): there is nothing to fold.
        Ok(0)
    }
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_name_files() {
        assert_eq!(
            path_from_url("sqlite:data/p.sqlite3"),
            Ok(PathBuf::from("data/p.sqlite3"))
        );
        assert_eq!(
            path_from_url("sqlite://p.sqlite3"),
            Ok(PathBuf::from("p.sqlite3"))
        );
        assert_eq!(
            path_from_url("sqlite:///var/lib/pubsubd/p.sqlite3"),
            Ok(PathBuf::from("/var/lib/pubsubd/p.sqlite3"))
        );
    }

    #[test]
    fn memory_databases_and_options_are_refused() {
        assert!(path_from_url("sqlite::memory:").is_err());
        assert!(path_from_url("sqlite:").is_err());
        assert!(path_from_url("sqlite:p.sqlite3?mode=ro").is_err());
        assert!(path_from_url("postgres://x/y").is_err());
    }

    #[tokio::test]
    async fn a_writer_that_waited_out_the_busy_timeout_is_unavailable_not_broken() {
        use sqlx::{ConnectOptions as _, Connection as _};
        let dir = std::env::temp_dir().join(format!("pubsubd-busy-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let options = SqliteConnectOptions::new()
            .filename(dir.join("b.sqlite3"))
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(Duration::ZERO);
        let mut holder = options.connect().await.expect("first connection");
        sqlx::query("CREATE TABLE t (x INTEGER)")
            .execute(&mut holder)
            .await
            .expect("table");
        let mut tx = holder
            .begin_with("BEGIN IMMEDIATE")
            .await
            .expect("write lock");
        sqlx::query("INSERT INTO t VALUES (1)")
            .execute(&mut *tx)
            .await
            .expect("insert");
        let mut other = options.connect().await.expect("second connection");
        let err = sqlx::query("INSERT INTO t VALUES (2)")
            .execute(&mut other)
            .await
            .expect_err("locked");
        assert!(is_busy(&err), "{err}");
        assert!(matches!(StoreError::from(err), StoreError::Unavailable(_)));
        assert!(!is_busy(&sqlx::Error::RowNotFound));
        drop(tx);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn postgres_migrations_do_not_pick_up_the_sqlite_folder() {
        let pg: Vec<i64> = crate::store::postgres::MIGRATOR
            .iter()
            .map(|m| m.version)
            .collect();
        let top_level = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations"))
            .expect("migrations folder")
            .filter_map(Result::ok)
            .filter(|e| e.path().extension().is_some_and(|x| x == "sql"))
            .count();
        assert_eq!(pg.len(), top_level, "{pg:?}");
        assert!(MIGRATOR.iter().count() >= 2);
    }
}
