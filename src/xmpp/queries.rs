//! Requests pubsubd itself sends to the server and its services, and the answers they
//! wait for: the disco queries that find the server's multicast service
//! ([`super::multicast::discover`]).
//!
//! A query goes out in the answer lane of an [`Outbound`] (it is small and must not wait
//! behind a fan-out) with an id of this process's own prefix. Its answer may come back on
//! any of the process's connections (ejabberd balances them), so every reader hands the
//! answers of the one [`Queries`] table in before routing anything; answers nobody
//! waits for any longer are dropped there too, never seen by the router.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use minidom::Element;
use tokio::sync::oneshot;
use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::Jid;
use xmpp_parsers::ns;

use super::outbound::Outbound;
use super::render::to_xml;

/// Why a query got no result.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// No answer within the time allowed.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The answer was an error, with its defined condition.
    #[error("answered with an error ({0})")]
    Refused(String),
    /// The service is shutting down.
    #[error("the service is shutting down")]
    Closed,
}

/// The queries in flight, shared by every connection of the process.
#[derive(Debug)]
pub struct Queries {
    /// Ids start with this: `pubsubd-q-<random>-`, so an answer is told from a request
    /// addressed to the service with one glance.
    prefix: String,
    next: AtomicU64,
    waiting: Mutex<HashMap<String, oneshot::Sender<Element>>>,
}

impl Default for Queries {
    fn default() -> Self {
        Queries {
            prefix: format!("pubsubd-q-{:x}-", rand::random::<u32>()),
            next: AtomicU64::new(0),
            waiting: Mutex::default(),
        }
    }
}

impl Queries {
    /// Sends `payload` as an `<iq type='get'/>` from `from` to `to` and waits up to
    /// `timeout` for the result's payload (`None` when the result is empty).
    pub async fn get(
        &self,
        out: &Outbound,
        from: &Jid,
        to: &Jid,
        payload: Element,
        timeout: Duration,
    ) -> Result<Option<Element>, QueryError> {
        let id = format!(
            "{}{}",
            self.prefix,
            self.next.fetch_add(1, Ordering::Relaxed)
        );
        let (tx, rx) = oneshot::channel();
        if let Ok(mut waiting) = self.waiting.lock() {
            waiting.insert(id.clone(), tx);
        }
        let iq = Iq::Get {
            from: Some(from.clone()),
            to: Some(to.clone()),
            id: id.clone(),
            payload,
        };
        let sent = out.reply(to_xml(&Element::from(iq))).await;
        let answer = if sent {
            Some(tokio::time::timeout(timeout, rx).await)
        } else {
            None
        };
        if let Ok(mut waiting) = self.waiting.lock() {
            waiting.remove(&id);
        }
        match answer {
            None | Some(Ok(Err(_))) => Err(QueryError::Closed),
            Some(Err(_)) => Err(QueryError::Timeout(timeout)),
            Some(Ok(Ok(el))) if el.attr("type") == Some("result") => {
                Ok(el.children().next().cloned())
            }
            Some(Ok(Ok(el))) => Err(QueryError::Refused(condition(&el))),
        }
    }

    /// Takes `el` if it answers one of our queries (waited for or given up on); the
    /// reader routes it on otherwise.
    pub(crate) fn take(&self, el: &Element) -> bool {
        if el.name() != "iq" || !matches!(el.attr("type"), Some("result" | "error")) {
            return false;
        }
        let Some(id) = el.attr("id").filter(|id| id.starts_with(&self.prefix)) else {
            return false;
        };
        let waiter = self.waiting.lock().ok().and_then(|mut w| w.remove(id));
        if let Some(waiter) = waiter {
            let _ = waiter.send(el.clone());
        }
        true
    }
}

/// The defined condition of an error answer, for logs.
fn condition(el: &Element) -> String {
    el.get_child("error", ns::DEFAULT_NS)
        .and_then(|e| e.children().find(|c| c.ns() == ns::XMPP_STANZAS))
        .map_or_else(|| "no condition".into(), |c| c.name().to_string())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn answer(id: &str, kind: &str) -> Element {
        format!("<iq xmlns='jabber:component:accept' type='{kind}' id='{id}' from='localhost'/>")
            .parse()
            .expect("well-formed")
    }

    #[tokio::test]
    async fn an_answer_reaches_its_asker_and_nothing_else_is_taken() {
        let queries = Arc::new(Queries::default());
        let (out, mut queue) = Outbound::channel(8);
        let jid = |s: &str| Jid::new(s).expect("jid");
        let asking = {
            let queries = queries.clone();
            tokio::spawn(async move {
                queries
                    .get(
                        &out,
                        &jid("ps.localhost"),
                        &jid("localhost"),
                        Element::builder("query", ns::DISCO_INFO).build(),
                        Duration::from_secs(5),
                    )
                    .await
            })
        };
        let Some(super::super::outbound::Outgoing::Stanza(sent)) = queue.recv().await else {
            panic!("the query is queued as a stanza");
        };
        let sent: Element = sent.parse().expect("well-formed");
        let id = sent.attr("id").expect("an id").to_string();
        assert!(!queries.take(&answer("someone-elses-id", "result")));
        assert!(
            !queries.take(&answer(&id, "get")),
            "a request is not an answer"
        );
        assert!(queries.take(&answer(&id, "result")));
        assert!(matches!(asking.await.expect("joined"), Ok(None)));
        assert!(
            queries.take(&answer(&id, "result")),
            "late answers are ours too"
        );
    }

    #[tokio::test]
    async fn an_error_or_silence_is_an_error() {
        let queries = Queries::default();
        let (out, _queue) = Outbound::channel(8);
        let jid = |s: &str| Jid::new(s).expect("jid");
        let silent = queries
            .get(
                &out,
                &jid("ps.localhost"),
                &jid("localhost"),
                Element::builder("query", ns::DISCO_INFO).build(),
                Duration::from_millis(20),
            )
            .await;
        assert!(matches!(silent, Err(QueryError::Timeout(_))));
        let error: Element = "<iq xmlns='jabber:component:accept' type='error' id='x'>\
            <error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
            .parse()
            .expect("well-formed");
        assert_eq!(condition(&error), "item-not-found");
    }
}
