//! Deciding when a freshly started server is usable, or that it never will be.

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::process::{read_from, ManagedChild};

/// How often the log and ports are checked during start-up.
const POLL_INTERVAL: Duration = Duration::from_millis(25);

/// Timeout of each probing TCP connect; loopback answers in microseconds.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// What must be true for a start to count as successful.
pub struct Expectations<'a> {
    /// Lines the log must contain (after `log_offset`).
    pub ready_markers: &'a [String],
    /// Lines that mean start-up failed for good.
    pub failure_markers: &'a [&'a str],
    /// The line that means a port was taken, worth retrying elsewhere.
    pub port_in_use_marker: &'a str,
    /// Ports that must accept TCP connections on 127.0.0.1.
    pub ports: &'a [u16],
    /// Where in the log this start's output begins.
    pub log_offset: u64,
    /// How long to wait before giving up.
    pub timeout: Duration,
}

/// Why a start did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum NotReady {
    /// Another process holds one of the ports.
    #[error("a port was already in use")]
    PortInUse,
    /// The server failed; the message says how.
    #[error("{0}")]
    Failed(String),
}

/// Waits until the server's log shows every ready marker and every port
/// accepts connections, failing early on a failure marker or process exit.
pub fn wait_ready(
    child: &mut ManagedChild,
    log: &Path,
    expect: &Expectations<'_>,
) -> Result<(), NotReady> {
    let deadline = Instant::now() + expect.timeout;
    loop {
        let text = read_from(log, expect.log_offset);
        if text.contains(expect.port_in_use_marker) {
            return Err(NotReady::PortInUse);
        }
        if let Some(marker) = expect.failure_markers.iter().find(|m| text.contains(**m)) {
            return Err(NotReady::Failed(format!("log says {marker:?}")));
        }
        match child.try_exit_status() {
            Ok(Some(status)) => {
                return Err(NotReady::Failed(format!(
                    "server exited early with {status}"
                )))
            }
            Ok(None) => {}
            Err(e) => return Err(NotReady::Failed(format!("cannot poll server process: {e}"))),
        }
        let logged_ready = expect
            .ready_markers
            .iter()
            .all(|m| text.contains(m.as_str()));
        if logged_ready && expect.ports.iter().all(|p| accepts_tcp(*p)) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(NotReady::Failed(format!(
                "not ready after {:?} (waiting for {:?} and ports {:?})",
                expect.timeout, expect.ready_markers, expect.ports
            )));
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

fn accepts_tcp(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT).is_ok()
}
