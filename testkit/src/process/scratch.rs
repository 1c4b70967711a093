//! Scratch directories under the system temp dir, removed on drop, with a
//! sweep of the ones left behind by test processes that were killed.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::Context as _;

use super::child::pid_alive;

/// Every scratch directory name starts with this, then the owner's pid.
const SCRATCH_PREFIX: &str = "pubsubd-testkit-";

/// Distinguishes scratch directories created by one process.
static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A directory named `pubsubd-testkit-<pid>-<label>-<n>` under the temp dir,
/// removed (recursively) on drop.
#[derive(Debug)]
pub struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    /// Creates a new scratch directory; `label` says what it is for.
    ///
    /// First removes scratch directories whose owning process is gone (a test
    /// binary killed by a timeout cannot clean up after itself).
    pub fn create(label: &str) -> anyhow::Result<Self> {
        sweep_stale();
        let pid = std::process::id();
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("{SCRATCH_PREFIX}{pid}-{label}-{n}"));
        std::fs::create_dir_all(&path)
            .with_context(|| format!("cannot create scratch dir {}", path.display()))?;
        Ok(Self { path })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the directory now (it is not recreated); for exit hooks.
    pub fn remove_now(&self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Removes scratch directories of processes that no longer exist.
fn sweep_stale() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(SCRATCH_PREFIX)) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<i32>().ok()) else {
            continue;
        };
        if !pid_alive(pid) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}
