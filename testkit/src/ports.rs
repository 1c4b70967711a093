//! Picking free loopback ports for throwaway servers.

use std::collections::HashSet;
use std::net::{Ipv4Addr, TcpListener};

use anyhow::bail;
use rand::Rng as _;

/// Ports are drawn from below Linux's default ephemeral range (32768–60999),
/// so the kernel will not hand one of them to an outgoing connection (our own
/// clients make thousands) between the check here and the server's bind.
const PORT_RANGE: std::ops::Range<u16> = 20_000..32_000;

/// How many random ports to try before declaring the machine full.
const MAX_ATTEMPTS: usize = 200;

/// Returns `count` distinct ports in [`PORT_RANGE`] that were free on
/// 127.0.0.1 a moment ago.
///
/// Another process may still take one before the server binds it; server
/// start-up detects that and retries with fresh ports.
pub fn free_ports(count: usize) -> anyhow::Result<Vec<u16>> {
    let mut rng = rand::thread_rng();
    let mut chosen = HashSet::new();
    let mut ports = Vec::with_capacity(count);
    for _ in 0..MAX_ATTEMPTS {
        if ports.len() == count {
            return Ok(ports);
        }
        let port = rng.gen_range(PORT_RANGE);
        if chosen.insert(port) && TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            ports.push(port);
        }
    }
    if ports.len() == count {
        return Ok(ports);
    }
    bail!(
        "found only {} free loopback ports of {count} in {PORT_RANGE:?}",
        ports.len()
    )
}
