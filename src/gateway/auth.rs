//! Who an HTTP request acts as.
//!
//! `Authorization: Bearer <token>` maps, through the SHA-256 of the token, to the JID
//! configured for it in `[[http.token]]`; the request then runs as that JID
//! ([`Pubsub::requester`](crate::pubsub::Pubsub::requester)), with exactly the
//! permissions an XMPP request from that JID has.
//!
//! A request without the header is **anonymous**. It runs as the reserved JID
//! `anonymous@<service JID>`: an address in the service's own domain, which no XMPP
//! user can hold (the XMPP server only routes stanzas from that domain from pubsubd
//! itself), so the domain rules see it with affiliation `none`. On top of the domain
//! rules the gateway (a) refuses every write from it with 401 before any command runs
//! and (b) serves it items only of nodes whose access model is `open`, even if an owner
//! affiliated the reserved JID with a node. A token that is present but unknown is a
//! 401, never a silent fall-back to anonymous. Tokens are never logged.

use std::collections::HashMap;
use std::sync::Arc;

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::{header, request::Parts};
use sha2::{Digest, Sha256};
use xmpp_parsers::jid::{BareJid, Jid};

use super::config::TokenEntry;
use super::errors::ApiError;
use super::GatewayState;
use crate::domain::{AccessModel, DomainError, NodeConfig};
use crate::protocol::rate_limit::Action;
use crate::pubsub::{Pubsub, Requester};

/// The localpart of the anonymous requester's JID.
pub const ANONYMOUS_LOCALPART: &str = "anonymous";

/// Token digests → JIDs.
#[derive(Clone, Default)]
pub struct Tokens {
    by_digest: Arc<HashMap<[u8; 32], BareJid>>,
}

impl Tokens {
    /// The table of configured tokens.
    pub fn new(entries: &[TokenEntry]) -> Tokens {
        Tokens {
            by_digest: Arc::new(entries.iter().map(|e| (e.sha256, e.jid.clone())).collect()),
        }
    }

    /// The JID a token stands for. The lookup is by digest, so the time it takes says
    /// nothing about how much of a guessed token was right.
    pub fn lookup(&self, token: &str) -> Option<&BareJid> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        self.by_digest.get(&digest)
    }
}

/// The anonymous requester's reserved JID for a service.
pub fn anonymous_jid(service: &BareJid) -> Option<BareJid> {
    BareJid::new(&format!("{ANONYMOUS_LOCALPART}@{service}")).ok()
}

/// The domain of the JIDs anonymous requests are rate-limited under, one per client
/// address (`.invalid` never resolves: RFC 2606).
const ANONYMOUS_RATE_DOMAIN: &str = "anonymous.invalid";

/// The requester of one HTTP request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub requester: Requester,
    /// No token was given.
    pub anonymous: bool,
    /// Whose rate-limit buckets the request draws from: the token's JID, or one per
    /// client address for anonymous requests.
    pub rate_key: Jid,
}

/// The rate-limit key of an anonymous client.
fn anonymous_rate_key(peer: Option<SocketAddr>, fallback: &Jid) -> Jid {
    let Some(peer) = peer else {
        return fallback.clone();
    };
    let local: String = peer
        .ip()
        .to_string()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    Jid::new(&format!("{local}@{ANONYMOUS_RATE_DOMAIN}")).unwrap_or_else(|_| fallback.clone())
}

impl Caller {
    /// The requester for a command that changes something: anonymous requests are
    /// refused here, before any command runs.
    pub fn writer(&self) -> Result<&Requester, ApiError> {
        if self.anonymous {
            Err(ApiError::Unauthorized(
                "this request changes the service: send Authorization: Bearer <token>",
            ))
        } else {
            Ok(&self.requester)
        }
    }

    /// Takes a token for `action` from the caller's buckets; `resource-constraint`
    /// (429) when they are empty.
    pub fn rate(&self, state: &GatewayState, action: Action) -> Result<(), ApiError> {
        if state.limits.allow(action, &self.rate_key) {
            return Ok(());
        }
        let label = match action {
            Action::Request => "http_request",
            Action::Publish => "http_publish",
            Action::Subscribe => "http_subscribe",
            Action::Create => "http_create",
        };
        metrics::counter!(crate::metrics::RATE_LIMITED, "action" => label).increment(1);
        Err(self.fail(DomainError::ResourceConstraint))
    }

    /// A domain failure of this caller's request.
    pub fn fail(&self, error: DomainError) -> ApiError {
        ApiError::domain(error, self.anonymous)
    }

    /// Anonymous readers see only open nodes, whatever affiliation an owner may have
    /// given the reserved JID.
    pub fn may_read(&self, config: &NodeConfig) -> Result<(), ApiError> {
        if self.anonymous && config.access_model != AccessModel::Open {
            return Err(self.fail(DomainError::Forbidden));
        }
        Ok(())
    }

    fn anonymous(pubsub: &Pubsub, peer: Option<SocketAddr>) -> Result<Caller, ApiError> {
        let bare = anonymous_jid(&pubsub.jid)
            .ok_or(ApiError::Unauthorized("anonymous access is not available"))?;
        let mut requester = pubsub.requester(Jid::from(bare));
        // Even an operator listing it among the admins does not make it one.
        requester.admin = false;
        Ok(Caller {
            rate_key: anonymous_rate_key(peer, &requester.jid),
            requester,
            anonymous: true,
        })
    }
}

impl FromRequestParts<GatewayState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &GatewayState,
    ) -> Result<Caller, ApiError> {
        let caller = Caller::identify(parts, state)?;
        caller.rate(state, Action::Request)?;
        Ok(caller)
    }
}

impl Caller {
    fn identify(parts: &Parts, state: &GatewayState) -> Result<Caller, ApiError> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0);
        let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
            return Caller::anonymous(&state.pubsub, peer);
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .ok_or(ApiError::Unauthorized(
                "expected Authorization: Bearer <token>",
            ))?;
        let jid = state
            .tokens
            .lookup(token)
            .ok_or(ApiError::Unauthorized("unknown token"))?;
        let requester = state.pubsub.requester(Jid::from(jid.clone()));
        Ok(Caller {
            rate_key: requester.jid.clone(),
            requester,
            anonymous: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_found_by_their_digest_only() {
        let digest: [u8; 32] = Sha256::digest(b"s3cret").into();
        let tokens = Tokens::new(&[TokenEntry {
            jid: BareJid::new("bot@example.org").unwrap(),
            sha256: digest,
        }]);
        assert_eq!(
            tokens.lookup("s3cret").map(|j| j.to_string()),
            Some("bot@example.org".into())
        );
        assert!(tokens.lookup("s3cret ").is_none());
        assert!(tokens.lookup(&hex::encode(digest)).is_none());
    }

    #[test]
    fn the_anonymous_jid_is_in_the_service_domain() {
        let service = BareJid::new("pubsub.example.org").unwrap();
        assert_eq!(
            anonymous_jid(&service).unwrap().to_string(),
            "anonymous@pubsub.example.org"
        );
    }
}
