//! The protocol layer: a stanza in, a command to the domain and store, a reply or a
//! stanza error out.
//!
//! [`Service::handle`] classifies a stanza ([`stanza`]), picks the handler by payload
//! namespace, and sends exactly one answer for every request. Handlers translate between
//! XML and domain types; permission rules live in `domain`, persistence in `store`.
//! Domain errors become stanza errors in one function ([`errors`]).

pub mod disco;
pub mod errors;
pub mod features;
pub mod ping;
pub mod rate_limit;
pub mod reply;
pub mod roster_push;
pub mod stanza;
pub mod version;
pub mod xep0060;
pub mod xep0313;

use std::sync::Arc;

use minidom::Element;
use tracing::Instrument as _;
use xmpp_parsers::jid::BareJid;
use xmpp_parsers::ns;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};

use crate::pubsub::Pubsub;
use crate::xmpp::refused::RefusedRequest;
use crate::xmpp::Outbound;
use stanza::{Incoming, IqRequest};
use xep0060::Command;

/// A `resource-constraint` (type `wait`) error answering `el`, when `el` is a request
/// (an `iq` get or set with an id and addresses).
fn wait_error(el: &Element, text: &str) -> Option<String> {
    match (
        el.name(),
        el.attr("type"),
        el.attr("id"),
        el.attr("to"),
        el.attr("from"),
    ) {
        ("iq", Some("get" | "set"), Some(id), Some(to), Some(from)) => {
            let to: xmpp_parsers::jid::Jid = to.parse().ok()?;
            let from: xmpp_parsers::jid::Jid = from.parse().ok()?;
            Some(reply::error_to(
                &to,
                &from,
                id,
                reply::with_text(ErrorType::Wait, DefinedCondition::ResourceConstraint, text),
            ))
        }
        _ => None,
    }
}

/// Everything a handler needs, shared by all request handlers.
pub struct Service {
    /// The component JID, e.g. `pubsub.example.org`.
    pub jid: BareJid,
    pub pubsub: Arc<Pubsub>,
    pub out: Outbound,
    pub limits: rate_limit::RateLimiter,
    /// Fan-out hook: where presence stanzas go (presence-aware delivery); `None` ignores them.
    pub presence: Option<crate::fanout::presence::Presence>,
}

impl Service {
    /// Handles stanzas that queued up in one request lane, in order. Consecutive
    /// publishes among them are checked one by one and committed together
    /// ([`Pubsub::publish_many`]); everything else is handled one at a time.
    pub async fn handle_all(&self, els: Vec<Element>) {
        if els.len() == 1 {
            for el in els {
                self.handle(el).await;
            }
            return;
        }
        let mut run: Vec<(IqRequest, Command)> = Vec::new();
        for el in els {
            metrics::counter!(crate::metrics::STANZAS_RECEIVED, "kind" => stanza_kind(&el))
                .increment(1);
            match xep0060::plain_publish(stanza::classify(el)) {
                Ok(publish) => run.push(publish),
                Err(other) => {
                    self.publish_run(std::mem::take(&mut run)).await;
                    self.handle_incoming(*other).await;
                }
            }
        }
        self.publish_run(run).await;
    }

    /// Answers a run of plain publishes from one lane.
    async fn publish_run(&self, run: Vec<(IqRequest, Command)>) {
        if run.is_empty() {
            return;
        }
        let started = std::time::Instant::now();
        let answers = xep0060::publish_run(&self.pubsub, &self.limits, run)
            .instrument(tracing::debug_span!("publishes"))
            .await;
        let per_request = started.elapsed().as_secs_f64() / answers.len().max(1) as f64;
        for answer in answers {
            metrics::counter!(crate::metrics::REQUESTS, "ns" => ns::PUBSUB, "outcome" => outcome(&answer))
                .increment(1);
            metrics::histogram!(crate::metrics::REQUEST_SECONDS, "ns" => ns::PUBSUB)
                .record(per_request);
            self.out.reply(answer).await;
        }
    }

    /// Handles one stanza read from the server; every request is answered.
    pub async fn handle(&self, el: Element) {
        metrics::counter!(crate::metrics::STANZAS_RECEIVED, "kind" => stanza_kind(&el))
            .increment(1);
        self.handle_incoming(stanza::classify(el)).await;
    }

    async fn handle_incoming(&self, incoming: Incoming) {
        match incoming {
            Incoming::Iq(req) => {
                let started = std::time::Instant::now();
                let span = tracing::debug_span!("iq", from = %req.from, id = %req.id, ns = req.payload.ns(), name = req.payload.name());
                // Instrument, never enter across an await: a guard held over one leaves
                // the span entered on a thread that then runs other tasks (a fan-out
                // worker opening its batch span there panicked on the closed parent).
                let answer = self.answer_iq(&req).instrument(span).await;
                let ns = known_ns(&req.payload.ns());
                metrics::counter!(crate::metrics::REQUESTS, "ns" => ns, "outcome" => outcome(&answer))
                    .increment(1);
                metrics::histogram!(crate::metrics::REQUEST_SECONDS, "ns" => ns)
                    .record(started.elapsed().as_secs_f64());
                self.out.reply(answer).await;
            }
            Incoming::BadIq {
                from,
                to,
                id,
                reason,
            } => {
                tracing::info!(%from, %id, reason, "malformed iq refused");
                let err = reply::with_text(ErrorType::Modify, DefinedCondition::BadRequest, reason);
                self.out.reply(reply::error_to(&to, &from, &id, err)).await;
            }
            Incoming::IqResponse { from, id, .. } => {
                tracing::debug!(%from, %id, "iq response ignored");
            }
            // Fan-out hook: presence feeds presence-aware delivery (src/fanout/presence.rs).
            Incoming::Presence { from, element, .. } => match &self.presence {
                Some(presence) => presence.handle(&element).await,
                None => tracing::debug!(%from, "presence ignored"),
            },
            Incoming::Message { from, element, .. } => {
                self.handle_message(from, &element).await;
            }
            Incoming::Unanswerable { reason } => {
                tracing::debug!(%reason, "stanza dropped");
            }
        }
    }

    /// Produces the answer to one IQ request.
    async fn answer_iq(&self, req: &IqRequest) -> String {
        if let Some(refused) = RefusedRequest::of(&req.payload) {
            return reply::error(req, errors::refused_request(&refused));
        }
        if req.to.node().is_some() || req.to.resource().is_some() {
            // Only the service JID itself offers anything.
            return reply::error(
                req,
                reply::simple(ErrorType::Cancel, DefinedCondition::ServiceUnavailable),
            );
        }
        match req.payload.ns().as_str() {
            ns::DISCO_INFO => disco::info(self, req).await,
            ns::DISCO_ITEMS => disco::items(self, req).await,
            ns::PING => ping::answer(req),
            ns::VERSION => version::answer(req),
            ns::PUBSUB => {
                xep0060::answer(&self.pubsub, &self.limits, xep0060::Namespace::Pubsub, req).await
            }
            ns::PUBSUB_OWNER => {
                xep0060::answer(&self.pubsub, &self.limits, xep0060::Namespace::Owner, req).await
            }
            ns::MAM => xep0313::answer(self, req).await,
            ns::ROSTER => roster_push::answer(self, req),
            other => {
                tracing::info!(ns = other, name = req.payload.name(), "unsupported request");
                reply::error(
                    req,
                    reply::simple(ErrorType::Cancel, DefinedCondition::ServiceUnavailable),
                )
            }
        }
    }
}

impl Service {
    /// The answer to an IQ request whose sender is over its request rate, if it is:
    /// checked before the request is queued, so a flood never fills the handler lanes
    /// that other senders share. Other stanzas over the limit are dropped (`Some("")`).
    pub fn refuse_if_flooding(&self, el: &Element) -> Option<String> {
        let from: xmpp_parsers::jid::Jid = el.attr("from")?.parse().ok()?;
        if self.limits.allow(rate_limit::Action::Request, &from) {
            return None;
        }
        metrics::counter!(crate::metrics::RATE_LIMITED, "action" => "request").increment(1);
        tracing::info!(%from, "request rate exceeded");
        Some(wait_error(el, "too many requests; slow down").unwrap_or_default())
    }

    /// The answer to a request refused because every handler is busy and its lane is
    /// full: `resource-constraint`, type `wait` (try again later). `None` for what is not
    /// a request (messages, presence, answers): those are never refused this way.
    pub fn refuse_busy(el: &Element) -> Option<String> {
        let answer = wait_error(el, "the service is busy; try again shortly")?;
        metrics::counter!(crate::metrics::RATE_LIMITED, "action" => "busy").increment(1);
        tracing::info!(
            from = el.attr("from").unwrap_or(""),
            "request refused: handlers busy"
        );
        Some(answer)
    }

    /// Messages pubsubd acts on: an owner's answer to a subscription approval form
    /// (XEP-0060 §8.6). Everything else is ignored.
    async fn handle_message(&self, from: xmpp_parsers::jid::Jid, el: &Element) {
        if el.attr("type") == Some("error") {
            tracing::debug!(%from, "message error ignored");
            return;
        }
        let decision = el
            .get_child("x", ns::DATA_FORMS)
            .and_then(|x| xmpp_parsers::data_forms::DataForm::try_from(x.clone()).ok())
            .and_then(|form| crate::pubsub::authorization::decision(&form));
        match decision {
            Some(Ok(d)) => {
                let who = self.pubsub.requester(from.clone());
                match self.pubsub.decide_subscription(&who, &d).await {
                    Ok(()) => {
                        tracing::info!(%from, node = %d.node, subscriber = %d.subscriber, allow = d.allow, "subscription decided")
                    }
                    Err(e) => tracing::info!(%from, error = %e, "subscription decision refused"),
                }
            }
            Some(Err(e)) => tracing::info!(%from, error = %e, "malformed approval form ignored"),
            None => tracing::debug!(%from, "message ignored"),
        }
    }
}

fn stanza_kind(el: &Element) -> &'static str {
    match el.name() {
        "iq" => "iq",
        "message" => "message",
        "presence" => "presence",
        _ => "other",
    }
}

/// The namespace label for metrics: known namespaces by name, everything else as
/// `other`, so hostile clients cannot grow the label set without bound.
fn known_ns(ns: &str) -> &'static str {
    [
        ns::DISCO_INFO,
        ns::DISCO_ITEMS,
        ns::PING,
        ns::VERSION,
        ns::PUBSUB,
        ns::PUBSUB_OWNER,
        ns::MAM,
    ]
    .into_iter()
    .find(|k| *k == ns)
    .unwrap_or("other")
}

/// `result`, or the defined condition of an error answer (read from the rendered XML,
/// which is already at hand: the answer is a finished string).
fn outcome(answer: &str) -> String {
    if !answer.contains("type=\"error\"") && !answer.contains("type='error'") {
        return "result".into();
    }
    const NS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";
    crate::xml::parse(answer)
        .ok()
        .and_then(|el| {
            el.get_child("error", el.ns().as_str())
                .and_then(|e| e.children().find(|c| c.ns() == NS && c.name() != "text"))
                .map(|c| c.name().to_string())
        })
        .unwrap_or_else(|| "error".into())
}
