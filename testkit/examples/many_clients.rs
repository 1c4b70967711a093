//! Load smoke test of the client and the servers: N users register, log in
//! at once, each sends one chat message to the next, and all receive theirs.
//!
//! `cargo run --release -p pubsubd-testkit --example many_clients [N] [prosody|ejabberd]`

use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::future::try_join_all;
use pubsubd_testkit::{stanza, Client, ServerKind, XmppServer};
use tokio::sync::Semaphore;

/// Default number of clients.
const DEFAULT_CLIENTS: usize = 1000;

/// Registrations and logins in flight at once, as a load generator ramps
/// up; all clients stay connected together afterwards.
const RAMP_CONCURRENCY: usize = 64;

/// How long one message may take to arrive under this load.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(60);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(DEFAULT_CLIENTS);
    let kinds = match std::env::args().nth(2).as_deref() {
        Some("prosody") => vec![ServerKind::Prosody],
        Some("ejabberd") => vec![ServerKind::Ejabberd],
        _ => ServerKind::ALL.to_vec(),
    };
    for kind in kinds {
        run(kind, n).await.with_context(|| format!("{kind}"))?;
    }
    Ok(())
}

async fn run(kind: ServerKind, n: usize) -> anyhow::Result<()> {
    let server = XmppServer::start_new(kind)?;
    let server = &server;
    let began = Instant::now();
    let gate = Semaphore::new(RAMP_CONCURRENCY);
    let accounts = try_join_all((0..n).map(|_| async {
        let _permit = gate.acquire().await?;
        anyhow::Ok(server.create_user("load").await?)
    }))
    .await?;
    let registered = began.elapsed();

    let began = Instant::now();
    let mut clients = try_join_all(accounts.iter().map(|account| async {
        let _permit = gate.acquire().await?;
        anyhow::Ok(Client::login(server.c2s_addr(), account).await?)
    }))
    .await?;
    let logged_in = began.elapsed();

    let began = Instant::now();
    for (i, client) in clients.iter().enumerate() {
        let next = &accounts[(i + 1) % n];
        client.send(stanza::chat(&next.jid(), &format!("from {i}")))?;
    }
    try_join_all(
        clients
            .iter_mut()
            .map(|client| client.wait_for(|e| stanza::body(e).is_some(), DELIVERY_TIMEOUT)),
    )
    .await?;
    let delivered = began.elapsed();

    println!(
        "{kind}: {n} registrations {registered:.2?}, {n} logins {logged_in:.2?}, \
         {n} messages delivered {delivered:.2?}, client process RSS {}",
        rss()
    );
    Ok(())
}

fn rss() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .map(str::to_string)
        })
        .map(|l| l.trim_start_matches("VmRSS:").trim().to_string())
        .unwrap_or_default()
}
