//! XEP-0199: answers pings addressed to the service.

use super::reply;
use super::stanza::{IqKind, IqRequest};
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};

/// Answers `<ping xmlns='urn:xmpp:ping'/>` with an empty result.
pub fn answer(req: &IqRequest) -> String {
    if req.kind != IqKind::Get || req.payload.name() != "ping" {
        return reply::error(
            req,
            reply::simple(ErrorType::Modify, DefinedCondition::BadRequest),
        );
    }
    reply::result(req, None)
}
