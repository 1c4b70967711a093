//! Log files that children write to and tests read back.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::Context as _;

/// A log file opened for appending, so a restarted server keeps its history.
pub struct LogFile {
    file: File,
    path: PathBuf,
}

impl LogFile {
    /// Opens (creating if needed) `path` for appending.
    pub fn open_append(path: &Path) -> anyhow::Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("cannot open log file {}", path.display()))?;
        Ok(Self {
            file,
            path: path.to_path_buf(),
        })
    }

    /// A handle to give a child as stdout or stderr.
    pub fn stdio(&self) -> anyhow::Result<Stdio> {
        let clone = self
            .file
            .try_clone()
            .with_context(|| format!("cannot duplicate log file {}", self.path.display()))?;
        Ok(Stdio::from(clone))
    }
}

/// The size of the log now; text written later starts at this offset.
pub fn log_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// The log's text from byte `offset` on (lossy UTF-8; empty if unreadable).
pub fn read_from(path: &Path, offset: u64) -> String {
    let read = || -> io::Result<String> {
        let mut file = File::open(path)?;
        file.seek(SeekFrom::Start(offset))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    };
    read().unwrap_or_default()
}

/// The last `lines` lines of the file at `path`, or a note saying why there
/// are none.
pub fn log_tail(path: &Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            let start = all.len().saturating_sub(lines);
            all[start..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}
