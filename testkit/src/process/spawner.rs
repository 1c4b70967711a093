//! Spawning children from one long-lived thread.
//!
//! `PR_SET_PDEATHSIG` fires when the *thread* that forked the child exits,
//! not when the process exits. `cargo test` runs every test on its own
//! short-lived thread, so a server shared between tests but spawned from the
//! first test's thread would be killed as soon as that test finished. All
//! children are therefore forked from a single thread that lives as long as
//! the process; when the process dies (normally, by panic or by SIGKILL) the
//! kernel sends SIGKILL to every child.

use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};

/// A request to the spawner thread: the command and where to send the child.
type SpawnRequest = (Command, mpsc::Sender<io::Result<Child>>);

/// The sending end of the spawner thread's queue; never dropped, so the thread
/// never exits.
static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();

/// Spawns `command` in a new process group, with SIGKILL as its parent-death
/// signal, from the process-lifetime spawner thread.
pub fn spawn_guarded(mut command: Command) -> io::Result<Child> {
    command.process_group(0);
    // SAFETY: the closure runs between fork and exec in the child; it only
    // calls the async-signal-safe functions prctl, getppid and _exit, and
    // touches no memory shared with the parent.
    unsafe {
        let parent = libc::getpid();
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died before prctl took effect.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
    let (reply_tx, reply_rx) = mpsc::channel();
    let queue = SPAWNER.get_or_init(|| Mutex::new(start_spawner_thread()));
    queue
        .lock()
        .map_err(|_| io::Error::other("spawner queue poisoned"))?
        .send((command, reply_tx))
        .map_err(|_| io::Error::other("spawner thread is gone"))?;
    reply_rx
        .recv()
        .map_err(|_| io::Error::other("spawner thread dropped the request"))?
}

fn start_spawner_thread() -> mpsc::Sender<SpawnRequest> {
    let (tx, rx) = mpsc::channel::<SpawnRequest>();
    std::thread::Builder::new()
        .name("testkit-spawner".into())
        .spawn(move || {
            for (mut command, reply) in rx {
                // The requester may have given up; nothing to do then.
                let _ = reply.send(command.spawn());
            }
        })
        .expect("cannot start the testkit spawner thread");
    tx
}
