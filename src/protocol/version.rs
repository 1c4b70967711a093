//! XEP-0092: the software version of the service.

use minidom::Element;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};
use xmpp_parsers::version::VersionResult;

use super::reply;
use super::stanza::{IqKind, IqRequest};

/// Answers `jabber:iq:version` queries with pubsubd's name and version.
pub fn answer(req: &IqRequest) -> String {
    if req.kind != IqKind::Get || req.payload.name() != "query" {
        return reply::error(
            req,
            reply::simple(ErrorType::Modify, DefinedCondition::BadRequest),
        );
    }
    let payload = VersionResult {
        name: "pubsubd".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        // The operating system is not disclosed: it helps attackers more than users.
        os: None,
    };
    reply::result(req, Some(Element::from(payload)))
}
