//! Finding the server's XEP-0033 multicast service, so that fan-out groups recipients
//! with no configuration.
//!
//! On every new stream (a restarted server may have gained or lost the service) the
//! component asks its parent domain (`example.org` for `pubsub.example.org`) for its
//! disco#info and disco#items, then each item for its disco#info. The first that lists
//! `http://jabber.org/protocol/address` is the service, the domain itself first (XEP-0033
//! lets a server offer it there), then the items in the order the server lists them.
//! What it is found to be is then asked as a configured one is
//! ([`super::multicast`]): a barrier ping to it turns grouping on once it answers.
//!
//! When nothing is found, notifications go one by one and the log says once, at the
//! first stream, how to add the service to the server in use.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use minidom::Element;
use tokio_util::sync::CancellationToken;
use xmpp_parsers::disco::{DiscoInfoQuery, DiscoInfoResult, DiscoItemsQuery, DiscoItemsResult};
use xmpp_parsers::jid::{BareJid, Jid};

use super::multicast::{limit_in, Multicast};
use super::outbound::Outbound;
use super::queries::{Queries, QueryError};

/// How long each disco query may take. The items are asked all at once, so a search
/// takes about twice this at worst.
const QUERY_TIMEOUT: Duration = Duration::from_secs(3);

/// Items asked at most: a server lists its services, and a few dozen is plenty.
const MAX_CANDIDATES: usize = 64;

/// What a search found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The multicast service's JID, if there is one.
    pub service: Option<String>,
    /// The server software, from the identity of its domain's disco#info.
    pub server: Server,
}

/// The server software, for the hint when no service is found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Server {
    Ejabberd,
    Prosody,
    Other,
}

/// Looks for the service on every stream start of `multicast`'s streams until `stop`.
pub async fn run(
    multicast: Arc<Multicast>,
    queries: Arc<Queries>,
    out: Outbound,
    own: BareJid,
    stop: CancellationToken,
) {
    let mut streams = multicast.streams();
    let hinted = AtomicBool::new(false);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            changed = streams.changed() => if changed.is_err() { return },
        }
        let stream = *streams.borrow_and_update();
        let found = tokio::select! {
            _ = stop.cancelled() => return,
            found = search(&queries, &out, &own) => found,
        };
        match &found.service {
            Some(service) => {
                if multicast.found(stream, service) {
                    tracing::info!(%service, "found the server's multicast service: asking whether it takes groups");
                    // A barrier ping now goes to the service; its answer turns grouping on.
                    let _ = tokio::time::timeout(QUERY_TIMEOUT, out.barrier()).await;
                }
            }
            None => {
                multicast.none_found(stream);
                if !hinted.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        domain = %parent(&own),
                        "no XEP-0033 multicast service on the server: notifications go one by one. {}",
                        hint(found.server, &parent(&own))
                    );
                }
            }
        }
    }
}

/// One search, as described in the module documentation.
pub async fn search(queries: &Queries, out: &Outbound, own: &BareJid) -> Found {
    let from = Jid::from(own.clone());
    let domain = parent(own);
    let Ok(domain_jid) = Jid::new(&domain) else {
        return Found {
            service: None,
            server: Server::Other,
        };
    };
    let from = &from;
    let info = |to: Jid| async move {
        let answer = queries
            .get(
                out,
                from,
                &to,
                Element::from(DiscoInfoQuery { node: None }),
                QUERY_TIMEOUT,
            )
            .await;
        (to, decode::<DiscoInfoResult>(answer))
    };
    let (_, domain_info) = info(domain_jid.clone()).await;
    let server = domain_info.as_ref().map_or(Server::Other, server_of);
    if domain_info.as_ref().and_then(limit_in).is_some() {
        return Found {
            service: Some(domain),
            server,
        };
    }
    let items = queries
        .get(
            out,
            from,
            &domain_jid,
            Element::from(DiscoItemsQuery {
                node: None,
                rsm: None,
            }),
            QUERY_TIMEOUT,
        )
        .await;
    let candidates: Vec<Jid> = decode::<DiscoItemsResult>(items)
        .map(|r| r.items)
        .unwrap_or_default()
        .into_iter()
        .filter(|item| item.node.is_none())
        .map(|item| item.jid)
        .filter(|jid| jid.node().is_none() && jid.resource().is_none())
        .filter(|jid| jid.domain() != own.domain())
        .take(MAX_CANDIDATES)
        .collect();
    let answers = futures::future::join_all(candidates.into_iter().map(info)).await;
    let service = answers
        .into_iter()
        .find(|(_, info)| info.as_ref().and_then(limit_in).is_some())
        .map(|(jid, _)| jid.to_string());
    Found { service, server }
}

/// The domain the component hangs off: `example.org` for `pubsub.example.org`; the
/// JID's own domain when it has no dot.
pub fn parent(own: &BareJid) -> String {
    let domain = own.domain().as_str();
    match domain.split_once('.') {
        Some((_, rest)) if !rest.is_empty() => rest.to_string(),
        _ => domain.to_string(),
    }
}

fn decode<T: TryFrom<Element>>(answer: Result<Option<Element>, QueryError>) -> Option<T> {
    match answer {
        Ok(Some(payload)) => T::try_from(payload).ok(),
        Ok(None) => None,
        Err(e) => {
            tracing::debug!(error = %e, "a multicast discovery query failed");
            None
        }
    }
}

/// The server software its domain's `server` identity names.
fn server_of(info: &DiscoInfoResult) -> Server {
    let name = info
        .identities
        .iter()
        .find(|i| i.category == "server")
        .and_then(|i| i.name.as_deref())
        .unwrap_or_default()
        .to_ascii_lowercase();
    if name.contains("ejabberd") {
        Server::Ejabberd
    } else if name.contains("prosody") {
        Server::Prosody
    } else {
        Server::Other
    }
}

/// The one-line fix that gives `domain`'s server a multicast service.
pub fn hint(server: Server, domain: &str) -> String {
    match server {
        Server::Ejabberd => {
            "To group them, enable ejabberd's module: add `mod_multicast: {}` under `modules:` in ejabberd.yml and reload.".to_string()
        }
        Server::Prosody => format!(
            "To group them, install pubsubd's module (`pubsubd prosody-module > /usr/lib/prosody/modules/mod_pubsubd_multicast.lua`) and add `Component \"multicast.{domain}\" \"pubsubd_multicast\"` to prosody.cfg.lua."
        ),
        Server::Other => "To group them, enable the server's XEP-0033 service, or name one with `multicast = \"JID\"`; `multicast = \"off\"` silences this.".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(xml: &str) -> DiscoInfoResult {
        let el: Element =
            format!("<query xmlns='http://jabber.org/protocol/disco#info'>{xml}</query>")
                .parse()
                .expect("well-formed");
        DiscoInfoResult::try_from(el).expect("disco#info")
    }

    #[test]
    fn the_parent_is_the_domain_without_its_first_label() {
        let jid = |s: &str| BareJid::new(s).expect("jid");
        assert_eq!(parent(&jid("pubsub.example.org")), "example.org");
        assert_eq!(parent(&jid("pubsub.localhost")), "localhost");
        assert_eq!(parent(&jid("localhost")), "localhost");
    }

    #[test]
    fn the_server_is_named_by_its_identity() {
        let named = |name: &str| {
            server_of(&info(&format!(
                "<identity category='server' type='im' name='{name}'/>"
            )))
        };
        assert_eq!(named("ejabberd"), Server::Ejabberd);
        assert_eq!(named("Prosody"), Server::Prosody);
        assert_eq!(named("Openfire"), Server::Other);
        assert_eq!(server_of(&info("")), Server::Other);
    }

    #[test]
    fn each_hint_names_its_fix() {
        assert!(hint(Server::Ejabberd, "example.org").contains("mod_multicast: {}"));
        let prosody = hint(Server::Prosody, "example.org");
        assert!(prosody.contains("pubsubd prosody-module"), "{prosody}");
        assert!(prosody.contains("Component \"multicast.example.org\" \"pubsubd_multicast\""));
        assert!(hint(Server::Other, "example.org").contains("multicast = \"off\""));
    }
}
