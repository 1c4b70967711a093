//! XEP-0060 requests in the `http://jabber.org/protocol/pubsub` and `…#owner`
//! namespaces: stanza in ([`parse`]) → [`Command`] → [`execute`] on
//! [`crate::pubsub::Pubsub`] → reply ([`render`]) or stanza error
//! ([`super::errors`]).

pub mod command;
pub mod execute;
pub mod parse;
pub mod render;
pub mod request;

pub use command::Command;
pub use execute::{execute, Answer};

use super::errors::stanza_error;
use super::rate_limit::{Action, RateLimiter};
use super::reply;
use super::stanza::IqRequest;
use crate::domain::DomainError;
use crate::pubsub::Pubsub;

/// Turns a handler's outcome into the IQ answer, logging refusals.
pub fn finish(req: &IqRequest, answer: Answer) -> String {
    match answer {
        Ok(payload) => reply::result(req, payload),
        Err(e) => {
            match &e {
                DomainError::Internal { .. } => {
                    tracing::error!(from = %req.from, id = %req.id, error = %e, "request failed")
                }
                _ => tracing::info!(from = %req.from, id = %req.id, error = %e, "request refused"),
            }
            reply::error(req, stanza_error(&e, None))
        }
    }
}

/// Which namespace a request came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Namespace {
    Pubsub,
    Owner,
}

/// Answers a pubsub request: parse, check the sender's rate, execute, render.
pub async fn answer(
    pubsub: &Pubsub,
    limits: &RateLimiter,
    ns: Namespace,
    req: &IqRequest,
) -> String {
    let command = match ns {
        Namespace::Pubsub => parse::pubsub(req),
        Namespace::Owner => parse::owner(req),
    };
    let outcome = match command {
        Ok(cmd) => match rate_limited(limits, req, &cmd) {
            Some(e) => Err(e),
            None => execute(pubsub, &pubsub.requester(req.from.clone()), cmd).await,
        },
        Err(e) => Err(e),
    };
    finish(req, outcome)
}

/// `resource-constraint` when the sender is over its rate for this kind of request.
fn rate_limited(limits: &RateLimiter, req: &IqRequest, cmd: &Command) -> Option<DomainError> {
    let (action, label) = match cmd {
        Command::Publish { .. } => (Action::Publish, "publish"),
        Command::Subscribe { .. } => (Action::Subscribe, "subscribe"),
        Command::Create { .. } => (Action::Create, "create"),
        _ => return None,
    };
    if limits.allow(action, &req.from) {
        return None;
    }
    metrics::counter!(crate::metrics::RATE_LIMITED, "action" => label).increment(1);
    Some(DomainError::ResourceConstraint)
}

/// A request that can join a run of publishes committed together: an IQ `set` to the
/// service itself, in the pubsub namespace, that parses into a publish without
/// publish-options. Anything else is handed back untouched.
pub fn plain_publish(
    incoming: super::stanza::Incoming,
) -> Result<(IqRequest, Command), Box<super::stanza::Incoming>> {
    use super::stanza::{Incoming, IqKind};
    let req = match incoming {
        Incoming::Iq(req)
            if req.kind == IqKind::Set
                && req.payload.is("pubsub", xmpp_parsers::ns::PUBSUB)
                && req.to.node().is_none()
                && req.to.resource().is_none()
                && request::verb(&req.payload).is_some_and(|v| v.name() == "publish") =>
        {
            req
        }
        other => return Err(Box::new(other)),
    };
    match parse::pubsub(&req) {
        Ok(cmd @ Command::Publish { options: None, .. }) => Ok((req, cmd)),
        _ => Err(Box::new(Incoming::Iq(req))),
    }
}

/// Answers a run of plain publishes: rate limits per request, then
/// [`Pubsub::publish_many`], one answer per request in order.
pub async fn publish_run(
    pubsub: &Pubsub,
    limits: &RateLimiter,
    run: Vec<(IqRequest, Command)>,
) -> Vec<String> {
    let mut answers: Vec<Option<String>> = (0..run.len()).map(|_| None).collect();
    let mut reqs = Vec::new();
    let mut order = Vec::new();
    let mut iqs = Vec::with_capacity(run.len());
    for (n, (req, cmd)) in run.into_iter().enumerate() {
        if let Some(e) = rate_limited(limits, &req, &cmd) {
            answers[n] = Some(finish(&req, Err(e)));
        } else if let Command::Publish { node, item, .. } = cmd {
            reqs.push((pubsub.requester(req.from.clone()), node, item));
            order.push(n);
        }
        iqs.push(req);
    }
    let outcomes = pubsub.publish_many(reqs).await;
    for (n, outcome) in order.into_iter().zip(outcomes) {
        let answer = outcome.map(|done| Some(render::published(&done.node, done.id.as_ref())));
        answers[n] = Some(finish(&iqs[n], answer));
    }
    answers.into_iter().flatten().collect()
}
