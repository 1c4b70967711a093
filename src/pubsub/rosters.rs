//! The owners' rosters that the `presence` and `roster` access models read, kept in a
//! bounded cache.
//!
//! How a roster is read is not this module's business: a [`RosterSource`] does it (in
//! the service, a privileged roster get through the XMPP server, XEP-0356; see
//! `app`). A roster is read when a rule needs it (a subscribe or a retrieval on a
//! `presence` or `roster` node by someone the owner did not affiliate), kept for
//! [`FRESH_FOR`] and read again after that: neither ejabberd nor Prosody pushes roster
//! changes to a privileged component, so the age bound is what makes a change of roster
//! count. At most [`CAPACITY`] rosters are kept, the least recently used going first,
//! so memory stays flat however many users the server has. The fan-out never comes
//! here: permissions are decided at subscribe and retrieve time, and by the revocation
//! sweep ([`super::revocation`]).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use hashlink::LruCache;
use xmpp_parsers::jid::BareJid;

use crate::domain::roster::OwnerRoster;

/// How many owners' rosters are kept. A roster is a few hundred bytes to a few tens of
/// KiB; 4,096 of them stay within tens of MiB, whatever the number of users, and cover
/// the owners of every node in active use on a typical service.
pub const CAPACITY: usize = 4096;

/// How long a roster read is trusted. Short, because the servers send no roster pushes
/// to a component: a contact removed from a group loses access within this time.
pub const FRESH_FOR: Duration = Duration::from_secs(5);

/// Why a roster could not be read.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RosterReadError {
    /// The owner's server granted no roster privilege (XEP-0356) on the present stream.
    #[error("the XMPP server of {0} granted no XEP-0356 roster privilege")]
    NotGranted(String),
    /// The server did not answer, or answered with an error.
    #[error("the roster read failed: {0}")]
    Failed(String),
}

/// Reads users' rosters.
#[async_trait]
pub trait RosterSource: Send + Sync {
    /// Whether rosters of `domain`'s users can be read now (the privilege is held).
    fn readable(&self, domain: &str) -> bool;

    /// Reads `owner`'s roster.
    async fn read(&self, owner: &BareJid) -> Result<OwnerRoster, RosterReadError>;
}

struct Entry {
    roster: Arc<OwnerRoster>,
    read_at: Instant,
}

/// The roster cache; without a source every roster is unknown.
pub struct Rosters {
    source: Option<Arc<dyn RosterSource>>,
    cache: Mutex<LruCache<BareJid, Entry>>,
    fresh_for: Duration,
}

impl Default for Rosters {
    /// No source: the CLI and tests; the rules fail closed.
    fn default() -> Self {
        Rosters {
            source: None,
            cache: Mutex::new(LruCache::new(1)),
            fresh_for: FRESH_FOR,
        }
    }
}

impl Rosters {
    /// Reads through `source`, keeping at most `capacity` rosters for `fresh_for`.
    pub fn new(source: Arc<dyn RosterSource>, capacity: usize, fresh_for: Duration) -> Self {
        Rosters {
            source: Some(source),
            cache: Mutex::new(LruCache::new(capacity.max(1))),
            fresh_for,
        }
    }

    /// Whether rosters of `domain`'s users can be read now.
    pub fn readable(&self, domain: &str) -> bool {
        self.source.as_ref().is_some_and(|s| s.readable(domain))
    }

    /// `owner`'s roster, from the cache while fresh; `None` when it cannot be read (no
    /// privilege, no answer), logged with the reason.
    pub async fn of(&self, owner: &BareJid) -> Option<Arc<OwnerRoster>> {
        let source = self.source.as_ref()?;
        if let Some(fresh) = self.cached(owner, self.fresh_for) {
            return Some(fresh);
        }
        match source.read(owner).await {
            Ok(roster) => {
                let roster = Arc::new(roster);
                if let Ok(mut cache) = self.cache.lock() {
                    cache.insert(
                        owner.clone(),
                        Entry {
                            roster: roster.clone(),
                            read_at: Instant::now(),
                        },
                    );
                }
                Some(roster)
            }
            Err(e) => {
                tracing::warn!(%owner, error = %e, "cannot read the owner's roster: the presence and roster access models refuse newcomers");
                None
            }
        }
    }

    /// Reads `owner`'s roster again now, whatever the cache holds (the revocation sweep).
    pub async fn reread(&self, owner: &BareJid) -> Option<Arc<OwnerRoster>> {
        self.forget(owner);
        self.of(owner).await
    }

    /// Drops `owner`'s cached roster (a roster push said it changed).
    pub fn forget(&self, owner: &BareJid) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.remove(owner);
        }
    }

    /// How many rosters are cached.
    pub fn cached_count(&self) -> usize {
        self.cache.lock().map(|c| c.len()).unwrap_or(0)
    }

    fn cached(&self, owner: &BareJid, max_age: Duration) -> Option<Arc<OwnerRoster>> {
        let mut cache = self.cache.lock().ok()?;
        let entry = cache.get(owner)?;
        (entry.read_at.elapsed() < max_age).then(|| entry.roster.clone())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// Answers every owner with a roster of one `from` contact, counting reads.
    struct Counting {
        reads: AtomicUsize,
        granted: bool,
    }

    #[async_trait]
    impl RosterSource for Counting {
        fn readable(&self, _domain: &str) -> bool {
            self.granted
        }
        async fn read(&self, owner: &BareJid) -> Result<OwnerRoster, RosterReadError> {
            if !self.granted {
                return Err(RosterReadError::NotGranted(owner.domain().to_string()));
            }
            self.reads.fetch_add(1, Ordering::SeqCst);
            let el: minidom::Element = "<query xmlns='jabber:iq:roster'>\
                <item jid='friend@x' subscription='from'/></query>"
                .parse()
                .expect("well-formed");
            Ok(OwnerRoster::from_items(
                xmpp_parsers::roster::Roster::try_from(el)
                    .expect("roster")
                    .items,
            ))
        }
    }

    fn jid(s: &str) -> BareJid {
        BareJid::new(s).expect("jid")
    }

    #[tokio::test]
    async fn a_fresh_roster_is_read_once_and_a_stale_one_again() {
        let source = Arc::new(Counting {
            reads: AtomicUsize::new(0),
            granted: true,
        });
        let rosters = Rosters::new(source.clone(), 8, Duration::from_millis(200));
        let owner = jid("owner@x");
        for _ in 0..3 {
            let r = rosters.of(&owner).await.expect("readable");
            assert!(r.presence_subscribed(&jid("friend@x")));
        }
        assert_eq!(source.reads.load(Ordering::SeqCst), 1);
        tokio::time::sleep(Duration::from_millis(250)).await;
        rosters.of(&owner).await.expect("readable");
        assert_eq!(source.reads.load(Ordering::SeqCst), 2, "stale: read again");
        rosters.reread(&owner).await.expect("readable");
        assert_eq!(source.reads.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn the_cache_keeps_at_most_its_capacity() {
        let source = Arc::new(Counting {
            reads: AtomicUsize::new(0),
            granted: true,
        });
        let rosters = Rosters::new(source, 16, Duration::from_secs(60));
        for n in 0..1000 {
            rosters.of(&jid(&format!("owner{n}@x"))).await;
        }
        assert_eq!(rosters.cached_count(), 16);
    }

    #[tokio::test]
    async fn without_privilege_or_source_the_roster_is_unknown() {
        let denied = Rosters::new(
            Arc::new(Counting {
                reads: AtomicUsize::new(0),
                granted: false,
            }),
            8,
            FRESH_FOR,
        );
        assert!(!denied.readable("x"));
        assert!(denied.of(&jid("owner@x")).await.is_none());
        let none = Rosters::default();
        assert!(!none.readable("x"));
        assert!(none.of(&jid("owner@x")).await.is_none());
    }
}
