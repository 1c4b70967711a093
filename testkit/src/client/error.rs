//! What can go wrong while speaking XMPP to a test server.

use std::io;
use std::time::Duration;

/// Errors of the raw-XML client, the registration helper and the component
/// probe.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// TCP or stream I/O failed.
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),

    /// The peer sent something the protocol does not allow here.
    #[error("protocol error: {0}")]
    Protocol(String),

    /// The server closed the stream with a stream error.
    #[error("stream error from server: {0}")]
    Stream(String),

    /// SASL authentication was refused (the SASL failure condition).
    #[error("authentication failed: {0}")]
    AuthFailed(String),

    /// In-band registration was refused (the stanza error condition, e.g.
    /// `conflict` if the user exists).
    #[error("registration failed: {0}")]
    RegistrationFailed(String),

    /// The component handshake was refused (wrong secret or unknown JID).
    #[error("component handshake refused: {0}")]
    HandshakeRefused(String),

    /// Nothing matching arrived in time.
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout {
        /// How long we waited.
        after: Duration,
        /// What we were waiting for.
        what: String,
    },

    /// The connection is closed; the reason says by whom and why.
    #[error("disconnected: {0}")]
    Disconnected(String),

    /// A JID given by the caller did not parse.
    #[error("invalid JID {jid:?}: {reason}")]
    InvalidJid {
        /// The offending text.
        jid: String,
        /// The parser's complaint.
        reason: String,
    },
}
