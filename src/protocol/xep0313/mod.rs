//! XEP-0313 Message Archive Management on pubsub nodes, as XEP-0442 specifies:
//! `<query node=…/>` to the service JID pages through a node's archive, `<metadata
//! node=…/>` gives its ends, a `get` of `<query/>` gives the form. Stanza in
//! ([`parse`]) → [`crate::pubsub::Pubsub::archive`] → one `<message/>` per item, then
//! the `<fin/>` ([`render`]), or a stanza error ([`super::errors`]).
//!
//! The result messages go to the answer lane of the one outgoing queue, the same lane
//! as the `<iq/>` answer that follows them, so they reach the client before it.

pub mod parse;
pub mod render;

use parse::MamRequest;

use super::stanza::IqRequest;
use super::xep0060::{finish, Answer};
use super::Service;

/// Answers a request in the `urn:xmpp:mam:2` namespace, sending the result messages
/// of a query first.
pub async fn answer(svc: &Service, req: &IqRequest) -> String {
    finish(req, outcome(svc, req).await)
}

async fn outcome(svc: &Service, req: &IqRequest) -> Answer {
    let who = svc.pubsub.requester(req.from.clone());
    match parse::request(req)? {
        MamRequest::Form => Ok(Some(render::form())),
        MamRequest::Metadata { node } => {
            let ends = svc.pubsub.archive_ends(&who, &node).await?;
            Ok(Some(render::metadata(&ends)))
        }
        MamRequest::Query {
            node,
            queryid,
            request,
            flip,
        } => {
            let got = svc.pubsub.archive(&who, &node, &request).await?;
            let service = xmpp_parsers::jid::Jid::from(svc.jid.clone());
            let mut items: Vec<_> = got.page.items.iter().collect();
            if flip {
                items.reverse();
            }
            for item in items {
                let message = render::result_message(
                    &service,
                    &req.from,
                    format!("{}-{}", req.id, item.seq),
                    queryid.as_deref(),
                    &got.node,
                    item,
                );
                svc.out.reply(message).await;
            }
            Ok(Some(render::fin(&got.page)))
        }
    }
}
