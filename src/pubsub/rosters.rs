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

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use hashlink::LruCache;
use xmpp_parsers::jid::BareJid;

use crate::domain::roster::{admitted, OwnerRoster};
use crate::domain::AccessModel;

/// How many owners' rosters are kept. A roster is a few hundred bytes to a few tens of
/// KiB; 4,096 of them stay within tens of MiB, whatever the number of users, and cover
/// the owners of every node in active use on a typical service.
pub const CAPACITY: usize = 4096;

/// How long a roster read is trusted. Short, because the servers send no roster pushes
/// to a component: a contact removed from a group loses access within this time.
pub const FRESH_FOR: Duration = Duration::from_secs(5);

/// How long one request may spend reading owners' rosters, all of them together: a
/// request holds its sender's lane meanwhile.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(2);

/// What the owners' rosters say of a requester.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// An owner's roster admits.
    Yes,
    /// Every owner's roster was read and none admits.
    No,
    /// Not every roster could be asked (no privilege for the owner's domain, more
    /// owners than are consulted) and none that was admits.
    Unknown,
    /// As `Unknown`, and a read failed (no answer in time, an error, no stream).
    Unreadable,
}

impl Admission {
    /// The permission table's fact: known yes, known no, or unknown.
    pub fn known(self) -> Option<bool> {
        match self {
            Admission::Yes => Some(true),
            Admission::No => Some(false),
            Admission::Unknown | Admission::Unreadable => None,
        }
    }
}

/// Why a roster could not be read.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RosterReadError {
    /// The owner's server granted no roster privilege (XEP-0356) on the present stream.
    #[error("the XMPP server of {0} granted no XEP-0356 roster privilege")]
    NotGranted(String),
    /// The server did not answer in time.
    #[error("the roster read got no answer within {0:?}")]
    Timeout(Duration),
    /// The server answered with an error of this defined condition.
    #[error("the roster read was answered with an error ({condition})")]
    Refused {
        /// The stanza error's defined condition.
        condition: String,
    },
    /// No stream to the server (shutting down, or reconnecting).
    #[error("the roster read found no stream to the server")]
    NoStream,
    /// The answer held no roster (an empty result, or another payload).
    #[error("the server answered the roster read without a roster")]
    NoRoster,
    /// The roster holds more contacts than are kept ([`crate::domain::roster::MAX_CONTACTS`]).
    #[error("the roster holds {contacts} contacts, more than are kept")]
    TooLarge {
        /// How many it holds.
        contacts: usize,
    },
}

impl RosterReadError {
    /// Whether the read failed (as opposed to the privilege not being held): the
    /// requester is told to wait rather than that they are not authorized.
    pub fn is_failure(&self) -> bool {
        !matches!(self, RosterReadError::NotGranted(_))
    }
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

/// The outcome of a read in flight, shared by everyone waiting for it.
type Outcome = Option<Result<Arc<OwnerRoster>, RosterReadError>>;

/// One read of an owner's roster in flight: whoever else needs that roster meanwhile
/// waits for it rather than reading again.
struct Flight {
    done: tokio::sync::watch::Sender<Outcome>,
    /// Set when a roster push said the roster changed after this read was sent: its
    /// answer may predate the change, so it is not kept.
    stale: std::sync::atomic::AtomicBool,
}

/// Removes the flight from the map when its reader finishes or is dropped (a request's
/// deadline), so that waiters left behind read again instead of waiting for nothing.
struct Landing<'a> {
    flights: &'a Mutex<HashMap<BareJid, Arc<Flight>>>,
    owner: &'a BareJid,
    flight: Arc<Flight>,
}

impl Drop for Landing<'_> {
    fn drop(&mut self) {
        if let Ok(mut flights) = self.flights.lock() {
            if flights
                .get(self.owner)
                .is_some_and(|f| Arc::ptr_eq(f, &self.flight))
            {
                flights.remove(self.owner);
            }
        }
    }
}

/// The roster cache; without a source every roster is unknown.
pub struct Rosters {
    source: Option<Arc<dyn RosterSource>>,
    cache: Mutex<LruCache<BareJid, Entry>>,
    /// At most one read per owner at a time (a few entries: reads in flight).
    flights: Mutex<HashMap<BareJid, Arc<Flight>>>,
    fresh_for: Duration,
}

impl Default for Rosters {
    /// No source: the CLI and tests; the rules fail closed.
    fn default() -> Self {
        Rosters {
            source: None,
            cache: Mutex::new(LruCache::new(1)),
            flights: Mutex::new(HashMap::new()),
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
            flights: Mutex::new(HashMap::new()),
            fresh_for,
        }
    }

    /// Whether rosters of `domain`'s users can be read now.
    pub fn readable(&self, domain: &str) -> bool {
        self.source.as_ref().is_some_and(|s| s.readable(domain))
    }

    /// `owner`'s roster, from the cache while fresh; the reason when it cannot be read
    /// (no privilege, no answer), also logged.
    pub async fn of(&self, owner: &BareJid) -> Result<Arc<OwnerRoster>, RosterReadError> {
        if let Some(fresh) = self.cached(owner, self.fresh_for) {
            return Ok(fresh);
        }
        self.read_now(owner).await
    }

    /// Reads `owner`'s roster now, whatever the cache holds (the revocation sweep), and
    /// keeps it. The cached entry stays until the new read replaces it, so requests
    /// meanwhile still answer from it. One read per owner at a time: whoever needs the
    /// roster while it is read waits for that read (single flight).
    pub async fn read_now(&self, owner: &BareJid) -> Result<Arc<OwnerRoster>, RosterReadError> {
        let Some(source) = self.source.as_ref() else {
            return Err(RosterReadError::NotGranted(owner.domain().to_string()));
        };
        loop {
            // Join the read in flight, or become it.
            let joined = {
                let mut flights = self.flights.lock().map_err(|_| RosterReadError::NoStream)?;
                match flights.get(owner) {
                    Some(flight) => Err(flight.done.subscribe()),
                    None => {
                        let (done, _) = tokio::sync::watch::channel(None);
                        let flight = Arc::new(Flight {
                            done,
                            stale: std::sync::atomic::AtomicBool::new(false),
                        });
                        flights.insert(owner.clone(), flight.clone());
                        Ok(flight)
                    }
                }
            };
            let flight = match joined {
                Ok(flight) => flight,
                Err(mut waiting) => {
                    match waiting.wait_for(Option::is_some).await {
                        Ok(outcome) => {
                            if let Some(result) = outcome.clone() {
                                return result;
                            }
                        }
                        // The reader was dropped before answering: read again.
                        Err(_) => continue,
                    }
                    continue;
                }
            };
            let _landing = Landing {
                flights: &self.flights,
                owner,
                flight: flight.clone(),
            };
            let result = source.read(owner).await.map(Arc::new);
            match &result {
                Ok(roster) => {
                    let stale = flight.stale.load(std::sync::atomic::Ordering::SeqCst);
                    if let (false, Ok(mut cache)) = (stale, self.cache.lock()) {
                        cache.insert(
                            owner.clone(),
                            Entry {
                                roster: roster.clone(),
                                read_at: Instant::now(),
                            },
                        );
                    }
                }
                Err(e) => {
                    tracing::warn!(%owner, error = %e, "cannot read the owner's roster: the presence and roster access models refuse newcomers");
                }
            }
            flight.done.send_replace(Some(result.clone()));
            return result;
        }
    }

    /// What the rosters of `owners` say of `who` on a node of `model` with the allowed
    /// `groups`, for one request: yes as soon as one admits (the rest are not read), no
    /// when all were read and none admits, unknown otherwise (unreadable if a read
    /// failed or the deadline passed). At most `cap` owners are
    /// consulted and all within `deadline`; an owner whose server granted no roster
    /// privilege is not asked (and not logged: that is the configuration, not an event).
    pub async fn admit(
        &self,
        owners: &[BareJid],
        model: AccessModel,
        who: &BareJid,
        groups: &[String],
        cap: usize,
        deadline: Duration,
    ) -> Admission {
        let walk = async {
            let mut unknown = owners.len() > cap;
            let mut failed = false;
            for owner in owners.iter().take(cap) {
                if !self.readable(owner.domain().as_str()) {
                    tracing::debug!(%owner, "no roster privilege for the owner's domain");
                    unknown = true;
                    continue;
                }
                match self.of(owner).await {
                    Ok(r) => {
                        if admitted([Some(&*r)], model, who, groups) == Some(true) {
                            return Admission::Yes;
                        }
                    }
                    Err(e) => {
                        unknown = true;
                        failed |= e.is_failure();
                    }
                }
            }
            match (unknown, failed) {
                (false, _) => Admission::No,
                (true, false) => Admission::Unknown,
                (true, true) => Admission::Unreadable,
            }
        };
        tokio::time::timeout(deadline, walk)
            .await
            .unwrap_or_else(|_| {
                tracing::warn!(%who, "the owners' rosters were not read in time");
                Admission::Unreadable
            })
    }

    /// Drops `owner`'s cached roster (a roster push said it changed), and keeps a read
    /// already in flight from caching what it answers, which may predate the change.
    pub fn forget(&self, owner: &BareJid) {
        if let Ok(flights) = self.flights.lock() {
            if let Some(flight) = flights.get(owner) {
                flight
                    .stale
                    .store(true, std::sync::atomic::Ordering::SeqCst);
            }
        }
        if let Ok(mut cache) = self.cache.lock() {
            cache.remove(owner);
        }
    }

    /// `owner`'s roster if the cache holds a fresh one; never reads.
    pub fn fresh(&self, owner: &BareJid) -> Option<Arc<OwnerRoster>> {
        self.cached(owner, self.fresh_for)
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
            )
            .expect("small"))
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
        rosters.read_now(&owner).await.expect("readable");
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
            let _ = rosters.of(&jid(&format!("owner{n}@x"))).await;
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
        assert!(denied.of(&jid("owner@x")).await.is_err());
        let none = Rosters::default();
        assert!(!none.readable("x"));
        assert!(none.of(&jid("owner@x")).await.is_err());
    }

    /// Answers after `delay`, with a roster of one `from` contact named `friend`.
    struct Slow {
        delay: Duration,
        reads: AtomicUsize,
        friend: &'static str,
    }

    #[async_trait]
    impl RosterSource for Slow {
        fn readable(&self, domain: &str) -> bool {
            domain == "x"
        }
        async fn read(&self, _owner: &BareJid) -> Result<OwnerRoster, RosterReadError> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(self.delay).await;
            let el: minidom::Element = format!(
                "<query xmlns='jabber:iq:roster'><item jid='{}' subscription='from'/></query>",
                self.friend
            )
            .parse()
            .expect("well-formed");
            Ok(OwnerRoster::from_items(
                xmpp_parsers::roster::Roster::try_from(el)
                    .expect("roster")
                    .items,
            )
            .expect("small"))
        }
    }

    fn owners(n: usize) -> Vec<BareJid> {
        (0..n).map(|i| jid(&format!("owner{i}@x"))).collect()
    }

    #[tokio::test]
    async fn a_request_stops_at_the_first_owner_who_admits_and_reads_at_most_the_cap() {
        let source = Arc::new(Slow {
            delay: Duration::ZERO,
            reads: AtomicUsize::new(0),
            friend: "friend@x",
        });
        let rosters = Rosters::new(source.clone(), 64, FRESH_FOR);
        let friend = jid("friend@x");
        let yes = rosters
            .admit(
                &owners(50),
                AccessModel::Presence,
                &friend,
                &[],
                4,
                REQUEST_DEADLINE,
            )
            .await;
        assert_eq!(yes, Admission::Yes);
        assert_eq!(
            source.reads.load(Ordering::SeqCst),
            1,
            "stopped at the first"
        );
        let stranger = jid("stranger@x");
        let unknown = rosters
            .admit(
                &owners(50),
                AccessModel::Presence,
                &stranger,
                &[],
                4,
                REQUEST_DEADLINE,
            )
            .await;
        assert_eq!(
            unknown,
            Admission::Unknown,
            "owners past the cap are unknown"
        );
        assert_eq!(
            source.reads.load(Ordering::SeqCst),
            4,
            "three more, the first cached"
        );
        let no = rosters
            .admit(
                &owners(3),
                AccessModel::Presence,
                &stranger,
                &[],
                4,
                REQUEST_DEADLINE,
            )
            .await;
        assert_eq!(no, Admission::No, "all read, none admits");
    }

    #[tokio::test]
    async fn a_request_reads_within_one_deadline_and_skips_unreadable_domains() {
        let source = Arc::new(Slow {
            delay: Duration::from_millis(300),
            reads: AtomicUsize::new(0),
            friend: "friend@x",
        });
        let rosters = Rosters::new(source.clone(), 64, FRESH_FOR);
        let started = Instant::now();
        let got = rosters
            .admit(
                &owners(4),
                AccessModel::Presence,
                &jid("stranger@x"),
                &[],
                4,
                Duration::from_millis(500),
            )
            .await;
        assert_eq!(got, Admission::Unreadable, "the deadline passed");
        assert!(
            started.elapsed() < Duration::from_millis(800),
            "one deadline for all"
        );
        let elsewhere = [jid("owner@elsewhere")];
        let before = source.reads.load(Ordering::SeqCst);
        let got = rosters
            .admit(
                &elsewhere,
                AccessModel::Presence,
                &jid("friend@x"),
                &[],
                4,
                REQUEST_DEADLINE,
            )
            .await;
        assert_eq!(got, Admission::Unknown);
        assert_eq!(source.reads.load(Ordering::SeqCst), before, "not asked");
    }

    #[tokio::test]
    async fn concurrent_requests_for_one_roster_share_one_read() {
        let source = Arc::new(Slow {
            delay: Duration::from_millis(200),
            reads: AtomicUsize::new(0),
            friend: "friend@x",
        });
        let rosters = Arc::new(Rosters::new(source.clone(), 8, FRESH_FOR));
        let owner = jid("owner@x");
        let waiting: Vec<_> = (0..10)
            .map(|_| {
                let rosters = rosters.clone();
                let owner = owner.clone();
                tokio::spawn(async move { rosters.of(&owner).await.is_ok() })
            })
            .collect();
        for w in waiting {
            assert!(w.await.expect("joined"));
        }
        assert_eq!(source.reads.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_reread_keeps_the_old_roster_for_others_until_replaced() {
        let source = Arc::new(Slow {
            delay: Duration::from_millis(300),
            reads: AtomicUsize::new(0),
            friend: "friend@x",
        });
        let rosters = Arc::new(Rosters::new(source.clone(), 8, Duration::from_secs(60)));
        let owner = jid("owner@x");
        rosters.of(&owner).await.expect("read");
        let sweep = {
            let rosters = rosters.clone();
            let owner = owner.clone();
            tokio::spawn(async move { rosters.read_now(&owner).await.is_ok() })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        let started = Instant::now();
        rosters.of(&owner).await.expect("cached");
        assert!(
            started.elapsed() < Duration::from_millis(100),
            "answered from the cache"
        );
        assert!(sweep.await.expect("joined"));
        assert_eq!(source.reads.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_push_during_a_read_keeps_that_read_out_of_the_cache() {
        let source = Arc::new(Slow {
            delay: Duration::from_millis(200),
            reads: AtomicUsize::new(0),
            friend: "friend@x",
        });
        let rosters = Arc::new(Rosters::new(source.clone(), 8, Duration::from_secs(60)));
        let owner = jid("owner@x");
        let reading = {
            let rosters = rosters.clone();
            let owner = owner.clone();
            tokio::spawn(async move { rosters.of(&owner).await.is_ok() })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        rosters.forget(&owner);
        assert!(
            reading.await.expect("joined"),
            "the reader still gets its answer"
        );
        assert!(rosters.fresh(&owner).is_none(), "but it is not kept");
        rosters.of(&owner).await.expect("read");
        assert_eq!(
            source.reads.load(Ordering::SeqCst),
            2,
            "read again after the push"
        );
    }

    #[tokio::test]
    async fn a_reader_dropped_mid_read_does_not_strand_the_waiters() {
        let source = Arc::new(Slow {
            delay: Duration::from_millis(200),
            reads: AtomicUsize::new(0),
            friend: "friend@x",
        });
        let rosters = Arc::new(Rosters::new(source.clone(), 8, FRESH_FOR));
        let owner = jid("owner@x");
        let leader = {
            let rosters = rosters.clone();
            let owner = owner.clone();
            tokio::spawn(async move { rosters.of(&owner).await.is_ok() })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        let follower = {
            let rosters = rosters.clone();
            let owner = owner.clone();
            tokio::spawn(async move { rosters.of(&owner).await.is_ok() })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        leader.abort();
        let ok = tokio::time::timeout(Duration::from_secs(2), follower)
            .await
            .expect("not stranded")
            .expect("joined");
        assert!(ok);
    }
}
