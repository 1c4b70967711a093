//! Running the pubsubd binary under test as a child process with its output
//! captured, so a failing test can show what the service said.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::Duration;

use anyhow::bail;

use crate::process::{ManagedChild, ScratchDir, LOG_TAIL_LINES};

/// How long [`PubsubdProcess::terminate`] waits after SIGTERM: a clean
/// shutdown closes one XMPP stream and a connection pool, well under this.
pub const TERMINATE_TIMEOUT: Duration = Duration::from_secs(10);

/// A running pubsubd (or any binary) whose stdout and stderr go to a log
/// file. Dropping it SIGKILLs it; if the test is panicking, the log tail is
/// printed first so it shows up in the failure output.
pub struct PubsubdProcess {
    child: ManagedChild,
    // Dropped after the child, which may still be writing to it.
    _dir: ScratchDir,
}

impl PubsubdProcess {
    /// Starts `bin_path` (tests pass `env!("CARGO_BIN_EXE_pubsubd")`) with
    /// `args` and extra environment variables `env`. `RUST_LOG` defaults to
    /// `debug` unless given.
    pub fn spawn<S: AsRef<OsStr>>(
        bin_path: impl AsRef<Path>,
        args: &[S],
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let dir = ScratchDir::create("pubsubd")?;
        let log = dir.path().join("pubsubd.log");
        let mut command = Command::new(bin_path.as_ref());
        command.args(args).current_dir(dir.path());
        if !env.iter().any(|(k, _)| *k == "RUST_LOG") {
            command.env("RUST_LOG", "debug");
        }
        command.envs(env.iter().copied());
        let child = ManagedChild::spawn(command, &log)?;
        Ok(Self { child, _dir: dir })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// Whether it is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_exit_status(), Ok(None))
    }

    /// The file receiving stdout and stderr.
    pub fn log_path(&self) -> PathBuf {
        self.child.log_path().to_path_buf()
    }

    /// Everything logged so far.
    pub fn log_contents(&self) -> String {
        std::fs::read_to_string(self.child.log_path()).unwrap_or_default()
    }

    /// The last `lines` lines of the log.
    pub fn log_tail(&self, lines: usize) -> String {
        self.child.log_tail(lines)
    }

    /// SIGKILLs it (a crash, from the service's point of view) and reaps it.
    pub fn kill(&mut self) -> anyhow::Result<ExitStatus> {
        Ok(self.child.kill_group()?)
    }

    /// SIGTERMs it and waits up to [`TERMINATE_TIMEOUT`] for it to exit.
    /// Fails (after SIGKILLing it) if it does not, with the log tail.
    pub async fn terminate(&mut self) -> anyhow::Result<ExitStatus> {
        self.child.signal(libc::SIGTERM)?;
        match self.child.wait_async(TERMINATE_TIMEOUT).await? {
            Some(status) => Ok(status),
            None => {
                self.child.kill_group()?;
                bail!(
                    "pubsubd did not exit within {TERMINATE_TIMEOUT:?} of SIGTERM\n{}",
                    self.describe_log()
                )
            }
        }
    }

    /// Waits up to `timeout` for it to exit by itself; `None` if it is still
    /// running.
    pub async fn wait_exit(&mut self, timeout: Duration) -> anyhow::Result<Option<ExitStatus>> {
        Ok(self.child.wait_async(timeout).await?)
    }

    /// Waits until the log contains `needle` (e.g. a "connected" line), or
    /// fails with the log tail after `timeout` or if the process exits.
    pub async fn wait_for_log(&mut self, needle: &str, timeout: Duration) -> anyhow::Result<()> {
        /// Log polling interval; the log is a local file.
        const POLL: Duration = Duration::from_millis(20);
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.log_contents().contains(needle) {
                return Ok(());
            }
            if let Some(status) = self.child.try_exit_status()? {
                bail!(
                    "pubsubd exited with {status} before logging {needle:?}\n{}",
                    self.describe_log()
                );
            }
            if tokio::time::Instant::now() >= deadline {
                bail!(
                    "pubsubd did not log {needle:?} within {timeout:?}\n{}",
                    self.describe_log()
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    fn describe_log(&self) -> String {
        format!(
            "--- last {LOG_TAIL_LINES} lines of {} ---\n{}",
            self.child.log_path().display(),
            self.log_tail(LOG_TAIL_LINES)
        )
    }
}

impl Drop for PubsubdProcess {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- pubsubd {}",
                self.describe_log().trim_start_matches("--- ")
            );
        }
        // ManagedChild's own Drop kills and reaps it.
    }
}
