//! A spawned child process in its own process group, killed with its whole
//! group on drop.

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;

use super::log::{log_tail, LogFile};
use super::spawner::spawn_guarded;

/// How often exit is polled while waiting for a child: short enough that a
/// restart test does not feel it, long enough not to burn a core.
const EXIT_POLL_INTERVAL: Duration = Duration::from_millis(20);

/// How many log lines a failure message shows: enough for a stack trace or a
/// config error, short enough to read in a test report.
pub const LOG_TAIL_LINES: usize = 40;

/// A child process that is the leader of its own process group, with stdout
/// and stderr appended to a log file.
///
/// Dropping it SIGKILLs the whole group (for ejabberd that includes Erlang's
/// helper processes) and reaps the leader.
#[derive(Debug)]
pub struct ManagedChild {
    child: Child,
    log: PathBuf,
    status: Option<ExitStatus>,
}

impl ManagedChild {
    /// Spawns `command` with stdin closed and stdout/stderr appended to `log`.
    pub fn spawn(mut command: Command, log: &Path) -> anyhow::Result<Self> {
        let log_file = LogFile::open_append(log)?;
        command
            .stdin(Stdio::null())
            .stdout(log_file.stdio()?)
            .stderr(log_file.stdio()?);
        let program = format!("{:?}", command.get_program());
        let child = spawn_guarded(command).with_context(|| format!("cannot spawn {program}"))?;
        Ok(Self {
            child,
            log: log.to_path_buf(),
            status: None,
        })
    }

    /// The process id, which is also its process group id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The file that receives the child's stdout and stderr.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The last `lines` lines of the log.
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log, lines)
    }

    /// The exit status if the child has exited, without blocking.
    pub fn try_exit_status(&mut self) -> io::Result<Option<ExitStatus>> {
        if self.status.is_none() {
            self.status = self.child.try_wait()?;
        }
        Ok(self.status)
    }

    /// Sends `signal` to the leader only.
    pub fn signal(&mut self, signal: i32) -> io::Result<()> {
        if self.try_exit_status()?.is_some() {
            return Ok(());
        }
        signal_pid(self.pid() as i32, signal)
    }

    /// Sends `signal` to every process of the group.
    pub fn signal_group(&self, signal: i32) -> io::Result<()> {
        signal_pid(-(self.pid() as i32), signal)
    }

    /// Blocks until the leader exits or `timeout` passes; `None` on timeout.
    pub fn wait_blocking(&mut self, timeout: Duration) -> io::Result<Option<ExitStatus>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_exit_status()? {
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(EXIT_POLL_INTERVAL);
        }
    }

    /// Waits without blocking the async runtime until the leader exits or
    /// `timeout` passes; `None` on timeout.
    pub async fn wait_async(&mut self, timeout: Duration) -> io::Result<Option<ExitStatus>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_exit_status()? {
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            tokio::time::sleep(EXIT_POLL_INTERVAL).await;
        }
    }

    /// SIGKILLs the whole group and reaps the leader.
    pub fn kill_group(&mut self) -> io::Result<ExitStatus> {
        // The group may hold helpers even when the leader is gone.
        let _ = self.signal_group(libc::SIGKILL);
        if let Some(status) = self.status {
            return Ok(status);
        }
        let status = self.child.wait()?;
        self.status = Some(status);
        Ok(status)
    }
}

impl ManagedChild {
    /// SIGKILLs the group and reaps the leader through a shared reference
    /// (for exit hooks, where only `&self` is available).
    pub fn kill_group_and_reap(&self) {
        let _ = self.signal_group(libc::SIGKILL);
        let mut status = 0;
        // SAFETY: waitpid on our own child with a valid status pointer.
        unsafe {
            libc::waitpid(self.pid() as i32, &mut status, 0);
        }
    }
}

impl Drop for ManagedChild {
    fn drop(&mut self) {
        let _ = self.kill_group();
    }
}

fn signal_pid(pid: i32, signal: i32) -> io::Result<()> {
    // SAFETY: kill(2) has no memory-safety preconditions.
    let rc = unsafe { libc::kill(pid, signal) };
    if rc == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    // ESRCH: already gone, which is what the caller wanted.
    if err.raw_os_error() == Some(libc::ESRCH) {
        Ok(())
    } else {
        Err(err)
    }
}

/// True if a process with this id exists (it may belong to someone else).
pub fn pid_alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks for existence and permission.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}
