//! Fresh PostgreSQL databases, one per test, dropped afterwards.

use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::Context as _;
use sqlx::{AssertSqlSafe, Connection as _, PgConnection};
use url::Url;

use crate::process::pid_alive;

/// Overrides the admin connection URL (any database the user may connect to;
/// the user must be allowed to create databases).
pub const ADMIN_URL_ENV: &str = "PUBSUBD_TEST_PG";

/// The local server every machine of this project runs, with trust auth.
const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// Test database names start with this, then the owner's pid.
const NAME_PREFIX: &str = "pubsubd_test_";

/// Distinguishes databases created by one process.
static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A freshly created, empty database, dropped (`WITH (FORCE)`, so open
/// connections do not block it) when this value is dropped.
#[derive(Debug)]
pub struct TestDb {
    name: String,
    url: String,
    admin_url: String,
}

impl TestDb {
    /// Creates `pubsubd_test_<pid>_<n>` on the admin server (env
    /// `PUBSUBD_TEST_PG`, default `postgres://postgres@127.0.0.1:5432/postgres`).
    ///
    /// Also drops test databases left by processes that no longer exist, when
    /// the server is on this machine.
    pub async fn create() -> anyhow::Result<Self> {
        let admin_url =
            std::env::var(ADMIN_URL_ENV).unwrap_or_else(|_| DEFAULT_ADMIN_URL.to_string());
        let mut admin = PgConnection::connect(&admin_url)
            .await
            .with_context(|| format!("cannot connect to PostgreSQL at {admin_url}"))?;
        if is_local(&admin_url) {
            drop_stale(&mut admin).await;
        }
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("{NAME_PREFIX}{}_{n}", std::process::id());
        // A crashed earlier process with the same pid may have left it.
        drop_database(&mut admin, &name).await?;
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut admin)
            .await
            .with_context(|| format!("cannot create database {name}"))?;
        let _ = admin.close().await;
        let url = database_url(&admin_url, &name)?;
        Ok(Self {
            name,
            url,
            admin_url,
        })
    }

    /// The connection URL of the new database.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The database name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Opens a connection to the database (for assertions on stored state).
    pub async fn connect(&self) -> anyhow::Result<PgConnection> {
        PgConnection::connect(&self.url)
            .await
            .with_context(|| format!("cannot connect to {}", self.url))
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // Drop cannot await, and the test's runtime may be shutting down, so
        // a short-lived thread with its own runtime does the work.
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        let dropper = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let mut admin = PgConnection::connect(&admin_url).await.ok()?;
                drop_database(&mut admin, &name).await.ok()?;
                admin.close().await.ok()
            })
        });
        if dropper.join().ok().flatten().is_none() {
            eprintln!("warning: could not drop test database {}", self.name);
        }
    }
}

async fn drop_database(admin: &mut PgConnection, name: &str) -> anyhow::Result<()> {
    sqlx::query(AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
    )))
    .execute(admin)
    .await
    .with_context(|| format!("cannot drop database {name}"))?;
    Ok(())
}

/// Drops test databases whose owning process is gone (e.g. a test binary
/// killed by a timeout). Best effort.
async fn drop_stale(admin: &mut PgConnection) {
    let pattern = format!("{}%", NAME_PREFIX.replace('_', "\\_"));
    let Ok(names) =
        sqlx::query_scalar::<_, String>("SELECT datname FROM pg_database WHERE datname LIKE $1")
            .bind(pattern)
            .fetch_all(&mut *admin)
            .await
    else {
        return;
    };
    for name in names {
        let owner = name
            .strip_prefix(NAME_PREFIX)
            .and_then(|rest| rest.split('_').next())
            .and_then(|pid| pid.parse::<i32>().ok());
        if owner.is_some_and(|pid| !pid_alive(pid)) {
            let _ = drop_database(admin, &name).await;
        }
    }
}

fn database_url(admin_url: &str, name: &str) -> anyhow::Result<String> {
    let mut url = Url::parse(admin_url).with_context(|| format!("invalid URL {admin_url}"))?;
    url.set_path(&format!("/{name}"));
    Ok(url.to_string())
}

/// Whether pids in database names refer to processes on this machine.
fn is_local(admin_url: &str) -> bool {
    Url::parse(admin_url).is_ok_and(|url| {
        matches!(
            url.host_str(),
            Some("127.0.0.1" | "localhost" | "[::1]" | "::1") | None
        )
    })
}
