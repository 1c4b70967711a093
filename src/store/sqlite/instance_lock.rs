//! One pubsubd per SQLite file: an exclusive advisory lock on `<file>.lock`, held while
//! the store is open.
//!
//! Two processes on one SQLite file would each wake only their own fan-out workers (the
//! job signal is in-process), and would queue behind each other for SQLite's one writer;
//! the fan-out claims ([`super::claims`]) would keep them from working one job twice,
//! but several instances are what PostgreSQL is for. So the second process refuses to
//! start instead.
//!
//! The lock is on a file of its own, not on the database: SQLite's POSIX locks on the
//! database file are dropped when *any* descriptor of that file in the process is
//! closed, so pubsubd must never open the database file itself. The operating system
//! releases the lock when the process ends, however it ends; the file stays behind,
//! harmless, holding the pid of the last owner for whoever reads the error.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read as _, Seek as _, Write as _};
use std::path::{Path, PathBuf};

use crate::store::StoreError;

/// The held lock; released on drop.
#[derive(Debug)]
pub struct InstanceLock {
    _file: File,
    path: PathBuf,
}

impl InstanceLock {
    /// Locks `<database>.lock`, creating it if needed, or fails with
    /// [`StoreError::InUse`] naming the database and the process holding it.
    pub fn acquire(database: &Path) -> Result<InstanceLock, StoreError> {
        let path = lock_path(database);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| {
                StoreError::Unavailable(format!(
                    "cannot open the lock file {}: {e}",
                    path.display()
                ))
            })?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = match holder.trim().parse::<u32>() {
                    Ok(pid) => format!("pubsubd process {pid}"),
                    Err(_) => "another pubsubd process".to_string(),
                };
                return Err(StoreError::InUse(format!(
                    "SQLite database {} is in use by {holder} (lock {}); an SQLite store serves one pubsubd instance only: use PostgreSQL to run several",
                    database.display(),
                    path.display()
                )));
            }
            Err(TryLockError::Error(e)) => {
                return Err(StoreError::Unavailable(format!(
                    "cannot lock {}: {e}",
                    path.display()
                )))
            }
        }
        // Best effort: the pid only helps the message of a second process.
        let _ = file
            .set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| writeln!(file, "{}", std::process::id()))
            .and_then(|()| file.flush());
        Ok(InstanceLock { _file: file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// `<database>.lock`, beside the database (and its `-wal` and `-shm` files).
fn lock_path(database: &Path) -> PathBuf {
    let mut name = database.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_on_one_file_is_refused_until_the_first_is_dropped() {
        let dir = std::env::temp_dir().join(format!("pubsubd-lock-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let db = dir.join("p.sqlite3");
        let first = InstanceLock::acquire(&db).expect("first lock");
        assert_eq!(first.path(), dir.join("p.sqlite3.lock"));
        let second = InstanceLock::acquire(&db).expect_err("second lock");
        let msg = second.to_string();
        assert!(matches!(second, StoreError::InUse(_)), "{msg}");
        assert!(
            msg.contains(&format!("pubsubd process {}", std::process::id())),
            "{msg}"
        );
        drop(first);
        InstanceLock::acquire(&db).expect("free again");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
