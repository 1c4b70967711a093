//! pubsubd with its metrics endpoint, for the tests that promise the component stream
//! is never dropped: they read the disconnect and reconnect counters at the end.

use pubsubd_testkit::{free_ports, XmppServer};

use super::{metric_sum, start_with, Pubsubd};

/// pubsubd with its metrics endpoint, to count disconnects and reconnects.
pub struct Watched {
    pub ps: Pubsubd,
    pub port: u16,
}

/// Starts pubsubd with `config` and a metrics endpoint on a free port.
pub async fn start_watched(server: &XmppServer, config: &str) -> anyhow::Result<Watched> {
    let port = free_ports(1)?[0];
    let ps = start_with(
        server,
        &format!("metrics_listen = \"127.0.0.1:{port}\"\n{config}"),
    )
    .await?;
    Ok(Watched { ps, port })
}

/// The Prometheus text exposition of the `/metrics` endpoint on loopback `port`.
pub async fn scrape(port: u16) -> anyhow::Result<String> {
    Ok(reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await?
        .text()
        .await?)
}

impl Watched {
    /// The Prometheus text exposition of `/metrics`.
    pub async fn metrics(&self) -> anyhow::Result<String> {
        scrape(self.port).await
    }

    /// Fails if the component stream was ever dropped or re-established.
    pub async fn assert_stream_never_dropped(&self) -> anyhow::Result<()> {
        let metrics = self.metrics().await?;
        assert_eq!(
            metric_sum(&metrics, "pubsubd_component_disconnects_total"),
            0.0,
            "disconnects:\n{metrics}"
        );
        assert_eq!(
            metric_sum(&metrics, "pubsubd_reconnects_total"),
            0.0,
            "reconnects"
        );
        let log = self.ps.process.log_contents();
        assert!(
            !log.contains("component connection lost"),
            "the stream was lost:\n{}",
            self.ps.process.log_tail(30)
        );
        Ok(())
    }
}
