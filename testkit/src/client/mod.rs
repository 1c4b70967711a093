//! A raw-XML XMPP client for tests and load generation: plaintext c2s, SASL
//! PLAIN, stanzas as `minidom::Element`.
//!
//! Owns everything said over a c2s connection. It must not use xmpp-parsers'
//! typed stanzas or `tokio_xmpp::Client` (see [`stanza`] for why).

mod connection;
mod error;
mod negotiate;
mod register;
mod session;
pub mod stanza;

pub use error::ClientError;
pub use register::register_account;
pub use session::{
    Client, ConnectOptions, StanzaSender, DEFAULT_CONNECT_TIMEOUT, DEFAULT_IQ_TIMEOUT,
};
pub use stanza::Availability;

pub(crate) use negotiate::{
    check_stream_error, next_element, read_error, timeouts, with_timeout, ClientStream,
};
