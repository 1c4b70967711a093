//! The HTTP gateway as a test reaches it: its address from pubsubd's log, bearer tokens.

use std::net::SocketAddr;

use sha2::{Digest, Sha256};

/// The address in the "HTTP gateway listening" log line (ANSI colours or not).
pub fn listening_addr(log: &str) -> anyhow::Result<SocketAddr> {
    let line = log
        .lines()
        .find(|l| l.contains("HTTP gateway listening"))
        .ok_or_else(|| anyhow::anyhow!("no gateway line in the log"))?;
    let at = line
        .find("127.0.0.1:")
        .ok_or_else(|| anyhow::anyhow!("no address in: {line}"))?;
    let port: String = line[at + "127.0.0.1:".len()..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    Ok(format!("127.0.0.1:{port}").parse()?)
}

/// A random bearer token and the `[[http.token]]` entry for `jid`.
pub fn token(jid: &str) -> (String, String) {
    let token = format!("tok-{}", uuid_like());
    let digest = hex::encode(Sha256::digest(token.as_bytes()));
    (
        token,
        format!("[[http.token]]\njid = '{jid}'\nsha256 = '{digest}'\n"),
    )
}

fn uuid_like() -> String {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    (0..24)
        .map(|_| char::from(b'a' + rng.gen_range(0..26)))
        .collect()
}
