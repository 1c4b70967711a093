//! The store a test runs pubsubd on, chosen by `PUBSUBD_TEST_STORE`: a fresh
//! PostgreSQL database ([`TestDb`], the default) or a fresh SQLite file in a scratch
//! directory ([`TestSqlite`]). The same acceptance tests thereby run against both
//! backends.

use std::path::{Path, PathBuf};

use anyhow::bail;

use crate::process::ScratchDir;
use crate::TestDb;

/// Selects the backend of [`TestStore::create`]: `postgres` (default) or `sqlite`.
pub const STORE_ENV: &str = "PUBSUBD_TEST_STORE";

/// A pubsubd backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    Postgres,
    Sqlite,
}

impl StoreKind {
    /// The kind `PUBSUBD_TEST_STORE` asks for; an unknown value is an error rather than
    /// a silent PostgreSQL run.
    pub fn from_env() -> anyhow::Result<StoreKind> {
        match std::env::var(STORE_ENV).as_deref() {
            Err(_) | Ok("") | Ok("postgres") | Ok("postgresql") => Ok(StoreKind::Postgres),
            Ok("sqlite") => Ok(StoreKind::Sqlite),
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
    /// A store of the kind `PUBSUBD_TEST_STORE` names.
    pub async fn create() -> anyhow::Result<TestStore> {
        Self::create_kind(StoreKind::from_env()?).await
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
