//! Roster pushes (RFC 6121 §2.1.6) a server sends a privileged entity holding the roster
//! privilege (XEP-0356): the user's cached roster is dropped, so the next decision that
//! needs it reads it again. Neither ejabberd 23.01 nor Prosody's `mod_privilege` sends
//! them today (the revocation sweep re-reads rosters instead); a server that does is
//! simply heard sooner.

use xmpp_parsers::roster::Roster;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};

use super::reply;
use super::stanza::{IqKind, IqRequest};
use super::Service;
use crate::pubsub::rosters::Rosters;

/// Whether `req` is a roster push: a set of one roster from a user's bare JID (only the
/// server speaks as one: it stamps a user's own stanzas with the full JID) whose domain
/// granted roster reading on this stream.
fn is_push(rosters: &Rosters, req: &IqRequest) -> bool {
    req.kind == IqKind::Set
        && req.from.node().is_some()
        && req.from.resource().is_none()
        && rosters.readable(req.from.domain().as_str())
        && Roster::try_from(req.payload.clone()).is_ok()
}

/// Takes a roster push, or refuses anything else in `jabber:iq:roster` as before:
/// the service keeps no roster of its own.
pub fn answer(svc: &Service, req: &IqRequest) -> String {
    take(&svc.pubsub.rosters, req)
}

fn take(rosters: &Rosters, req: &IqRequest) -> String {
    if !is_push(rosters, req) {
        return reply::error(
            req,
            reply::simple(ErrorType::Cancel, DefinedCondition::ServiceUnavailable),
        );
    }
    let owner = req.from.to_bare();
    tracing::debug!(%owner, "roster push: the cached roster is read again when next needed");
    rosters.forget(&owner);
    reply::result(req, None)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use async_trait::async_trait;
    use xmpp_parsers::jid::{BareJid, Jid};

    use super::*;
    use crate::domain::roster::OwnerRoster;
    use crate::pubsub::rosters::{RosterReadError, RosterSource};

    /// Grants `localhost` only, counting reads.
    struct Source(AtomicUsize);

    #[async_trait]
    impl RosterSource for Source {
        fn readable(&self, domain: &str) -> bool {
            domain == "localhost"
        }
        async fn read(&self, _owner: &BareJid) -> Result<OwnerRoster, RosterReadError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(OwnerRoster::default())
        }
    }

    fn request(from: &str, kind: IqKind) -> IqRequest {
        IqRequest {
            from: Jid::new(from).expect("jid"),
            to: Jid::new("pubsub.localhost").expect("jid"),
            id: "push-1".into(),
            kind,
            payload: "<query xmlns='jabber:iq:roster'><item jid='friend@localhost' subscription='none'/></query>"
                .parse()
                .expect("well-formed"),
        }
    }

    #[tokio::test]
    async fn a_push_from_a_privileged_domain_makes_the_roster_read_again() {
        let source = Arc::new(Source(AtomicUsize::new(0)));
        let rosters = Rosters::new(source.clone(), 8, Duration::from_secs(60));
        let owner = BareJid::new("owner@localhost").expect("jid");
        rosters.of(&owner).await.expect("readable");
        rosters.of(&owner).await.expect("readable");
        assert_eq!(source.0.load(Ordering::SeqCst), 1, "cached");

        // Not pushes: a user's own full JID, another domain, a get.
        for (from, kind) in [
            ("owner@localhost/phone", IqKind::Set),
            ("owner@elsewhere", IqKind::Set),
            ("owner@localhost", IqKind::Get),
        ] {
            let answer = take(&rosters, &request(from, kind));
            assert!(answer.contains("service-unavailable"), "{from}: {answer}");
        }
        rosters.of(&owner).await.expect("readable");
        assert_eq!(source.0.load(Ordering::SeqCst), 1, "still cached");

        let answer = take(&rosters, &request("owner@localhost", IqKind::Set));
        assert!(
            answer.contains("type='result'") || answer.contains("type=\"result\""),
            "{answer}"
        );
        rosters.of(&owner).await.expect("readable");
        assert_eq!(
            source.0.load(Ordering::SeqCst),
            2,
            "read again after the push"
        );
    }
}
