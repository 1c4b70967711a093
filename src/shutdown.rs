//! Shutdown signals: SIGINT or SIGTERM, caught from start-up on. What they start is in
//! `app::run`: one cancellation token, one task tracker, one deadline.

/// SIGINT and SIGTERM, caught from the moment [`listen`] returns. Until a process has
/// called it, either signal kills it outright, so it is called before pubsubd connects
/// (a supervisor that stops it once it says "component connected" must get a clean
/// shutdown).
pub struct Signals {
    #[cfg(unix)]
    caught: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

/// Starts catching SIGINT and SIGTERM.
pub fn listen() -> Signals {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(term), Ok(int)) => Signals {
                caught: Some((term, int)),
            },
            _ => Signals { caught: None },
        }
    }
    #[cfg(not(unix))]
    {
        Signals {}
    }
}

impl Signals {
    /// Waits for SIGINT or SIGTERM (any that arrived since [`listen`] counts).
    pub async fn recv(self) {
        #[cfg(unix)]
        {
            match self.caught {
                Some((mut term, mut int)) => {
                    tokio::select! {
                        _ = term.recv() => tracing::info!("SIGTERM received, shutting down"),
                        _ = int.recv() => tracing::info!("SIGINT received, shutting down"),
                    }
                }
                None => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
