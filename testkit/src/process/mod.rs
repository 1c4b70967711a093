//! Child processes that cannot outlive the test process.
//!
//! Owns spawning (process group + parent-death signal), killing whole process
//! groups, log capture and log tails, and scratch directories. It knows
//! nothing about XMPP servers or pubsubd; `servers` and `pubsubd` build on it.

mod child;
mod limits;
mod log;
mod scratch;
mod spawner;

pub use child::{pid_alive, ManagedChild, LOG_TAIL_LINES};
pub use limits::raise_fd_limit;
pub use log::{log_len, log_tail, read_from};
pub use scratch::ScratchDir;
