//! The store a test runs pubsubd on: a fresh PostgreSQL database ([`TestDb`]) or a
//! fresh SQLite file in a scratch directory ([`TestSqlite`]).
//!
//! [`both_servers!`](crate::both_servers) and [`both_stores!`](crate::both_stores)
//! run each test body once per backend, inside [`on_store`]; the harness asks
//! [`StoreKind::current`] which one. `PUBSUBD_TEST_STORE=postgres` or `=sqlite` narrows a
//! `cargo test` to one backend: the other's variants then pass without running.

use std::path::{Path, PathBuf};

use anyhow::bail;

use crate::process::ScratchDir;
use crate::TestDb;

/// Narrows a run to one backend: `postgres` or `sqlite` (unset: both).
pub const STORE_ENV: &str = "PUBSUBD_TEST_STORE";

tokio::task_local! {
    /// The backend of the test body being run by [`on_store`].
    static CURRENT: StoreKind;
}

/// Runs `body` with `kind` as the [`StoreKind::current`] backend, or, when
/// `PUBSUBD_TEST_STORE` names the other backend, does not run it and returns `None`.
pub async fn on_store<F: std::future::Future>(kind: StoreKind, body: F) -> Option<F::Output> {
    match StoreKind::selected() {
        Ok(Some(only)) if only != kind => {
            eprintln!("not run: {STORE_ENV} selects {only:?}");
            None
        }
        Ok(_) => Some(CURRENT.scope(kind, body).await),
        Err(e) => panic!("{e:#}"),
    }
}

/// A pubsubd backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    Postgres,
    Sqlite,
}

impl StoreKind {
    /// The backend of the running test: the one [`on_store`] set, else the one
    /// `PUBSUBD_TEST_STORE` names, else PostgreSQL (for tests about PostgreSQL alone).
    pub fn current() -> anyhow::Result<StoreKind> {
        if let Ok(kind) = CURRENT.try_with(|k| *k) {
            return Ok(kind);
        }
        Ok(Self::selected()?.unwrap_or(StoreKind::Postgres))
    }

    /// The backend `PUBSUBD_TEST_STORE` narrows the run to, if any; an unknown value is
    /// an error rather than a silent run on the wrong store.
    pub fn selected() -> anyhow::Result<Option<StoreKind>> {
        match std::env::var(STORE_ENV).as_deref() {
            Err(_) | Ok("") => Ok(None),
            Ok("postgres") | Ok("postgresql") => Ok(Some(StoreKind::Postgres)),
            Ok("sqlite") => Ok(Some(StoreKind::Sqlite)),
            Ok(other) => bail!("{STORE_ENV}={other}: expected `postgres` or `sqlite`"),
        }
    }
}

/// A fresh, empty store for one test, removed when dropped.
#[derive(Debug)]
pub enum TestStore {
    Postgres(TestDb),
    Sqlite(TestSqlite),
}

impl TestStore {
    /// A store of the running test's kind ([`StoreKind::current`]).
    pub async fn create() -> anyhow::Result<TestStore> {
        Self::create_kind(StoreKind::current()?).await
    }

    /// A store of `kind`, whatever the environment says.
    pub async fn create_kind(kind: StoreKind) -> anyhow::Result<TestStore> {
        Ok(match kind {
            StoreKind::Postgres => TestStore::Postgres(TestDb::create().await?),
            StoreKind::Sqlite => TestStore::Sqlite(TestSqlite::create()?),
        })
    }

    /// What to pass as pubsubd's `--database`.
    pub fn url(&self) -> &str {
        match self {
            TestStore::Postgres(db) => db.url(),
            TestStore::Sqlite(db) => db.url(),
        }
    }

    /// A name unique to this store in this machine (for related temporary files).
    pub fn name(&self) -> &str {
        match self {
            TestStore::Postgres(db) => db.name(),
            TestStore::Sqlite(db) => db.name(),
        }
    }

    /// Which backend it is.
    pub fn kind(&self) -> StoreKind {
        match self {
            TestStore::Postgres(_) => StoreKind::Postgres,
            TestStore::Sqlite(_) => StoreKind::Sqlite,
        }
    }
}

/// An SQLite file that does not exist yet (pubsubd creates it), in a scratch
/// directory of its own that goes, with the file, its WAL and its lock, on drop.
#[derive(Debug)]
pub struct TestSqlite {
    path: PathBuf,
    url: String,
    name: String,
    // Dropped last: removes the directory.
    dir: ScratchDir,
}

impl TestSqlite {
    /// A new scratch directory `pubsubd-testkit-<pid>-sqlite-<n>/` and the path
    /// `pubsubd.sqlite3` in it.
    pub fn create() -> anyhow::Result<TestSqlite> {
        let dir = ScratchDir::create("sqlite")?;
        let path = dir.path().join("pubsubd.sqlite3");
        let name = dir
            .path()
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "pubsubd-sqlite".to_string());
        Ok(TestSqlite {
            url: format!("sqlite:{}", path.display()),
            path,
            name,
            dir,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `sqlite:<path>`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The scratch directory's name, unique on this machine.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The scratch directory holding the file.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}
