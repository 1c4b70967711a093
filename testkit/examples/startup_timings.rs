//! Measures start, stop, restart and kill-then-start of each server kind:
//! `cargo run -p pubsubd-testkit --example startup_timings [rounds]`.

use std::time::Instant;

use pubsubd_testkit::{ServerKind, XmppServer};

fn main() -> anyhow::Result<()> {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|r| r.parse().ok())
        .unwrap_or(3);
    for kind in ServerKind::ALL {
        for round in 1..=rounds {
            let began = Instant::now();
            let mut server = XmppServer::start_new(kind)?;
            let started = began.elapsed();
            let began = Instant::now();
            server.stop()?;
            let stopped = began.elapsed();
            server.start()?;
            let restarted = server.last_startup();
            server.kill();
            server.start()?;
            let after_kill = server.last_startup();
            println!(
                "{kind} round {round}: start {started:.2?}, stop {stopped:.2?}, \
                 restart {restarted:.2?}, start after SIGKILL {after_kill:.2?}"
            );
        }
    }
    Ok(())
}
