//! XEP-0033 Extended Stanza Addressing through the server's multicast service: one
//! notification stanza addressed to many recipients, copied out by the server.
//!
//! The server parses a component's stream one stanza at a time; for a fan-out that is
//! the same Atom payload parsed again for every subscriber. ejabberd's `mod_multicast`
//! (`multicast.<host>`), and on Prosody the module pubsubd ships
//! (`deploy/prosody/mod_pubsubd_multicast.lua`), take one stanza with a list of `bcc`
//! addresses, strip the list and route a copy to each address, so the payload is parsed
//! once per group.
//!
//! Which service to use is found out ([`super::discovery`]) unless the operator names
//! one: on every new stream, the server's disco#items are asked for a service whose
//! disco#info lists XEP-0033. Whether the service takes our stanzas is learned from the
//! service itself: once one is known, every barrier ping is a disco#info request to it (it then answers after
//! routing everything we sent it before, so the answer is the receipt the barrier needs).
//! An answer that lists the `http://jabber.org/protocol/address` feature turns grouping
//! on, with the recipients-per-stanza limit its form advertises; an error, or no such
//! feature, leaves every notification addressed one by one.
//!
//! A group the service refuses comes back as a `<message type='error'/>` from it, before
//! the answer to any ping written after the group. Such a bounce turns grouping off
//! until the next stream and makes the next barrier answer fail instead of confirm, so
//! the fan-out sends those pages again, one by one. Nothing here is ever lost to a
//! multicast service that misbehaves: it costs a resend.

use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use minidom::Element;
use tokio::sync::watch;
use xmpp_parsers::disco::DiscoInfoResult;
use xmpp_parsers::ns;

/// The XEP-0033 namespace and disco#info feature.
pub const NS_ADDRESS: &str = "http://jabber.org/protocol/address";

/// Recipients per stanza when the service advertises no limit. XEP-0033 leaves the limit
/// to the service; ejabberd's default for senders outside its own hosts (a component
/// is one) is 20 and is not advertised.
pub const UNADVERTISED_LIMIT: usize = 20;

/// How long the service has to answer the first ping of a stream. A JID that no local
/// service owns sends the server looking for a remote one, which can take many seconds
/// to fail; barriers should not wait for that.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// What the service is known to be on the present streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum State {
    /// Looking for the server's service (see [`super::discovery`]): one by one, and
    /// pings go to our own JID.
    Looking = 4,
    /// No answer yet: notifications go one by one, pings go to the service.
    Probing = 0,
    /// It takes groups of up to `limit` recipients.
    On = 1,
    /// It bounced a group, or stopped answering as a multicast service after it took
    /// groups: one by one until the next stream; pings still go to it, behind the groups
    /// it may still be working through.
    Refused = 2,
    /// It did not answer as a multicast service: one by one, and pings go to our own
    /// JID as without a service, until the next stream.
    Absent = 3,
}

/// The multicast service pubsubd may address notifications through, and what it is
/// known to accept on the present streams.
#[derive(Debug)]
pub struct Multicast {
    /// The service, once named or found.
    jid: Mutex<Option<Arc<str>>>,
    /// Whether the service is looked for on every new stream (no JID configured).
    discovered: bool,
    /// Counts stream starts; the discovery task looks again on each.
    streams: watch::Sender<u64>,
    /// The operator's cap on recipients per stanza.
    max: usize,
    state: AtomicU8,
    /// Recipients per stanza while [`State::On`].
    limit: AtomicUsize,
    /// When the present probe began.
    probing_since: Mutex<Instant>,
    /// Bounces seen since start, so barrier answers can tell whether one came first.
    bounces: AtomicU64,
    /// Another pubsubd process answers on the JID: a found service is not used (see
    /// [`Multicast::another_process`]).
    shared: std::sync::atomic::AtomicBool,
}

impl Multicast {
    /// A service at `jid`, used for at most `max` recipients per stanza once it has
    /// shown that it takes them.
    pub fn new(jid: String, max: usize) -> Multicast {
        Multicast::with(Some(jid.into()), false, State::Probing, max)
    }

    /// The server's own service, looked for on every new stream (see
    /// [`super::discovery`]), used for at most `max` recipients per stanza once found
    /// and once it has shown that it takes them.
    pub fn discovered(max: usize) -> Multicast {
        Multicast::with(None, true, State::Looking, max)
    }

    fn with(jid: Option<Arc<str>>, discovered: bool, state: State, max: usize) -> Multicast {
        Multicast {
            jid: Mutex::new(jid),
            discovered,
            streams: watch::Sender::new(0),
            max: max.max(1),
            state: AtomicU8::new(state as u8),
            limit: AtomicUsize::new(0),
            probing_since: Mutex::new(Instant::now()),
            bounces: AtomicU64::new(0),
            shared: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// The service's JID, once named or found.
    pub fn jid(&self) -> Option<Arc<str>> {
        self.jid.lock().ok().and_then(|jid| jid.clone())
    }

    /// Whether the service is looked for rather than configured.
    pub fn is_discovered(&self) -> bool {
        self.discovered
    }

    /// The service and the recipients per stanza while notifications may be grouped.
    pub fn route(&self) -> Option<(Arc<str>, usize)> {
        Some((self.jid()?, self.limit()?))
    }

    fn state(&self) -> State {
        match self.state.load(Ordering::Acquire) {
            0 => State::Probing,
            1 => State::On,
            2 => State::Refused,
            4 => State::Looking,
            _ => State::Absent,
        }
    }

    fn set(&self, state: State) {
        self.state.store(state as u8, Ordering::Release);
    }

    /// Recipients per stanza, or `None` while notifications must go one by one.
    pub fn limit(&self) -> Option<usize> {
        (self.state() == State::On && !self.shared.load(Ordering::Acquire))
            .then(|| self.limit.load(Ordering::Acquire))
    }

    /// Another pubsubd process of the same store answers on the component JID (its
    /// barrier ping reached this one). A service that refuses a group sends the refusal
    /// to the JID, and the server may hand it to the other process, which would not
    /// know to send that group again: so a service that was found, not named, is not
    /// used from now on. A named one stays in use: the operator chose it (docs/servers.md).
    pub(crate) fn another_process(&self) {
        if self.discovered && !self.shared.swap(true, Ordering::AcqRel) {
            tracing::warn!(
                "another pubsubd process answers on this JID: notifications go one by one from now on, since a multicast service's refusal could reach the other process; name the service in `multicast` to group them anyway"
            );
        }
    }

    /// What is known of the service on the present streams, in words for operators:
    /// `looking` (for the server's service), `asking`, `on`, `refused` (a bounce turned
    /// grouping off), `absent` (none found, or it did not answer as a multicast
    /// service) or `shared` (another process answers on the JID).
    pub fn state_name(&self) -> &'static str {
        if self.discovered && self.shared.load(Ordering::Acquire) {
            return "shared";
        }
        match self.state() {
            State::Looking => "looking",
            State::Probing => "asking",
            State::On => "on",
            State::Refused => "refused",
            State::Absent => "absent",
        }
    }

    /// How many groups the service has bounced since start.
    pub fn bounces(&self) -> u64 {
        self.bounces.load(Ordering::Acquire)
    }

    /// Whether barrier pings go to the service (else to our own JID, as without one).
    /// A probe that has gone unanswered too long gives up here.
    pub(crate) fn pings_to_service(&self) -> bool {
        match self.state() {
            State::Looking => false,
            State::Probing => {
                let waited = self
                    .probing_since
                    .lock()
                    .map(|since| since.elapsed())
                    .unwrap_or_default();
                if waited < PROBE_TIMEOUT {
                    return true;
                }
                self.set(State::Absent);
                tracing::warn!(service = self.jid().as_deref().unwrap_or_default(), ?waited, "the multicast service did not answer: notifications go one by one until the next stream");
                false
            }
            State::On | State::Refused => true,
            State::Absent => false,
        }
    }

    /// A new stream is up: what the old ones learned is forgotten, and the service is
    /// asked again.
    pub(crate) fn stream_started(&self) {
        if self.discovered {
            self.set(State::Looking);
        } else {
            self.probe();
        }
        self.streams.send_modify(|n| *n += 1);
    }

    fn probe(&self) {
        if let Ok(mut since) = self.probing_since.lock() {
            *since = Instant::now();
        }
        self.set(State::Probing);
    }

    /// Stream starts so far, to be watched by whoever looks for the service.
    pub(crate) fn streams(&self) -> watch::Receiver<u64> {
        self.streams.subscribe()
    }

    /// The search begun at stream start number `stream` found `jid`: it is asked
    /// next, unless a newer stream has begun meanwhile (which searches again).
    pub(crate) fn found(&self, stream: u64, jid: &str) -> bool {
        if !self.discovered || *self.streams.borrow() != stream {
            return false;
        }
        if let Ok(mut known) = self.jid.lock() {
            *known = Some(jid.into());
        }
        self.probe();
        true
    }

    /// The search begun at stream start number `stream` found no service.
    pub(crate) fn none_found(&self, stream: u64) {
        if self.discovered && *self.streams.borrow() == stream {
            self.set(State::Absent);
        }
    }

    /// Whether `el` comes from the service.
    pub(crate) fn is_from_service(&self, el: &Element) -> bool {
        match (el.attr("from"), self.jid()) {
            (Some(from), Some(jid)) => from == &*jid,
            _ => false,
        }
    }

    /// Takes the service's answer to a barrier ping: a disco#info result that lists the
    /// XEP-0033 feature turns grouping on; anything else turns it off.
    pub(crate) fn answered(&self, answer: &Element) {
        let state = self.state();
        match (state, advertised(answer)) {
            (State::Probing | State::On, Some(limit)) => {
                let limit = limit.min(self.max);
                let before = self.limit.swap(limit, Ordering::AcqRel);
                self.set(State::On);
                if state == State::Probing || before != limit {
                    tracing::info!(
                        service = self.jid().as_deref().unwrap_or_default(),
                        recipients = limit,
                        "multicast on: notifications go in groups"
                    );
                }
            }
            (State::Probing, None) => {
                self.set(State::Absent);
                tracing::warn!(service = self.jid().as_deref().unwrap_or_default(), "not a multicast service (no XEP-0033 in its disco#info answer): notifications go one by one until the next stream");
            }
            (State::On, None) => {
                self.set(State::Refused);
                tracing::warn!(service = self.jid().as_deref().unwrap_or_default(), "the multicast service no longer answers as one: notifications go one by one until the next stream");
            }
            (State::Refused | State::Absent | State::Looking, _) => {}
        }
    }

    /// The service bounced a group: grouping stays off until the next stream.
    pub(crate) fn bounced(&self, bounce: &Element) {
        self.set(State::Refused);
        self.bounces.fetch_add(1, Ordering::AcqRel);
        metrics::counter!(crate::metrics::MULTICAST_REFUSED).increment(1);
        let condition = bounce
            .get_child("error", ns::DEFAULT_NS)
            .and_then(|e| e.children().find(|c| c.ns() == ns::XMPP_STANZAS))
            .map(|c| c.name().to_string())
            .unwrap_or_else(|| "unknown condition".into());
        tracing::warn!(
            service = self.jid().as_deref().unwrap_or_default(),
            %condition,
            "the multicast service refused a group of notifications: sending them again one by one, and one by one until the next stream"
        );
    }
}

/// The recipients-per-stanza limit a disco#info result advertises, or `None` when it is
/// no result or does not list the XEP-0033 feature.
fn advertised(answer: &Element) -> Option<usize> {
    if answer.attr("type") != Some("result") {
        return None;
    }
    let query = answer.get_child("query", ns::DISCO_INFO)?;
    limit_in(&DiscoInfoResult::try_from(query.clone()).ok()?)
}

/// The recipients-per-stanza limit of a multicast service's disco#info, or `None` when
/// it does not list the XEP-0033 feature.
pub(crate) fn limit_in(info: &DiscoInfoResult) -> Option<usize> {
    if !info.features.contains(NS_ADDRESS) {
        return None;
    }
    let limit = info
        .extensions
        .iter()
        .filter(|form| form.form_type() == Some(NS_ADDRESS))
        .flat_map(|form| form.fields.iter())
        .find(|field| field.var.as_deref() == Some("message"))
        .and_then(|field| field.values.first())
        .map(|value| match value.trim() {
            "infinite" => usize::MAX,
            n => n.parse::<usize>().unwrap_or(UNADVERTISED_LIMIT),
        })
        .unwrap_or(UNADVERTISED_LIMIT);
    (limit > 0).then_some(limit)
}

/// The barrier ping addressed to the service: a disco#info request.
pub(crate) fn ping(id: &str, from: &str, service: &str) -> String {
    format!(
        "<iq type='get' id='{id}' from='{}' to='{}'><query xmlns='{}'/></iq>",
        super::render::escape(from),
        super::render::escape(service),
        ns::DISCO_INFO
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(xml: &str) -> Element {
        xml.parse().expect("well-formed")
    }

    fn info(features: &str, form: &str) -> Element {
        parse(&format!(
            "<iq xmlns='jabber:component:accept' type='result' id='p' from='multicast.localhost'>\
             <query xmlns='{}'><identity category='service' type='multicast' name='M'/>{features}{form}</query></iq>",
            ns::DISCO_INFO
        ))
    }

    fn feature(var: &str) -> String {
        format!("<feature var='{var}'/>")
    }

    fn limits(message: &str) -> String {
        format!(
            "<x xmlns='jabber:x:data' type='result'>\
             <field var='FORM_TYPE' type='hidden'><value>{NS_ADDRESS}</value></field>\
             <field var='message'><value>{message}</value></field></x>"
        )
    }

    #[test]
    fn an_answer_with_the_feature_turns_grouping_on_within_both_limits() {
        let m = Multicast::new("multicast.localhost".into(), 100);
        assert_eq!(m.limit(), None);
        m.answered(&info(&feature(NS_ADDRESS), ""));
        assert_eq!(m.limit(), Some(UNADVERTISED_LIMIT));
        m.answered(&info(&feature(NS_ADDRESS), &limits("500")));
        assert_eq!(m.limit(), Some(100), "capped by the operator's maximum");
        m.answered(&info(&feature(NS_ADDRESS), &limits("50")));
        assert_eq!(
            m.limit(),
            Some(50),
            "capped by the service's advertised limit"
        );
        m.answered(&info(&feature(NS_ADDRESS), &limits("infinite")));
        assert_eq!(m.limit(), Some(100));
    }

    #[test]
    fn a_first_answer_without_the_feature_sends_pings_home_until_the_next_stream() {
        let error = parse(
            "<iq xmlns='jabber:component:accept' type='error' id='p' from='multicast.localhost'>\
             <error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>",
        );
        for answer in [info(&feature(ns::DISCO_INFO), ""), error] {
            let m = Multicast::new("multicast.localhost".into(), 100);
            assert!(m.pings_to_service());
            m.answered(&answer);
            assert_eq!(m.limit(), None);
            assert!(!m.pings_to_service(), "no service there: pings go home");
            m.answered(&info(&feature(NS_ADDRESS), ""));
            assert_eq!(m.limit(), None, "decided for this stream");
            m.stream_started();
            m.answered(&info(&feature(NS_ADDRESS), ""));
            assert_eq!(m.limit(), Some(UNADVERTISED_LIMIT));
        }
    }

    #[test]
    fn a_service_that_stops_answering_as_one_is_still_pinged_behind_its_groups() {
        let m = Multicast::new("multicast.localhost".into(), 100);
        m.answered(&info(&feature(NS_ADDRESS), ""));
        m.answered(&info(&feature(ns::DISCO_INFO), ""));
        assert_eq!(m.limit(), None);
        assert!(m.pings_to_service());
    }

    #[test]
    fn an_unanswered_probe_gives_up() {
        let m = Multicast::new("multicast.localhost".into(), 100);
        if let Ok(mut since) = m.probing_since.lock() {
            *since = Instant::now() - PROBE_TIMEOUT;
        }
        assert!(!m.pings_to_service());
        assert_eq!(m.limit(), None);
    }

    #[test]
    fn a_found_service_is_asked_only_for_the_stream_that_found_it() {
        let m = Multicast::discovered(100);
        assert_eq!((m.jid(), m.state_name()), (None, "looking"));
        m.stream_started();
        assert!(!m.pings_to_service(), "nothing to ask yet");
        let first = *m.streams().borrow();
        m.stream_started();
        assert!(
            !m.found(first, "multicast.localhost"),
            "an older stream's search"
        );
        assert_eq!(m.jid(), None);
        let second = *m.streams().borrow();
        assert!(m.found(second, "multicast.localhost"));
        assert!(m.pings_to_service());
        m.answered(&info(&feature(NS_ADDRESS), ""));
        assert_eq!(
            m.route(),
            Some((Arc::from("multicast.localhost"), UNADVERTISED_LIMIT))
        );
        m.stream_started();
        assert_eq!(m.route(), None, "looked for again on each stream");
        m.none_found(*m.streams().borrow());
        assert_eq!(m.state_name(), "absent");
    }

    #[test]
    fn another_process_on_the_jid_stops_a_found_service_but_not_a_named_one() {
        let found = Multicast::discovered(100);
        found.stream_started();
        assert!(found.found(*found.streams().borrow(), "multicast.localhost"));
        found.answered(&info(&feature(NS_ADDRESS), ""));
        let named = Multicast::new("multicast.localhost".into(), 100);
        named.answered(&info(&feature(NS_ADDRESS), ""));
        for m in [&found, &named] {
            m.another_process();
        }
        assert_eq!((found.limit(), found.state_name()), (None, "shared"));
        assert_eq!(named.limit(), Some(UNADVERTISED_LIMIT));
    }

    #[test]
    fn a_bounce_keeps_it_off_until_the_next_stream() {
        let m = Multicast::new("multicast.localhost".into(), 100);
        m.answered(&info(&feature(NS_ADDRESS), ""));
        let bounce = parse(
            "<message xmlns='jabber:component:accept' type='error' from='multicast.localhost'>\
             <error type='modify'><not-acceptable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>",
        );
        assert!(m.is_from_service(&bounce));
        m.bounced(&bounce);
        assert_eq!((m.limit(), m.bounces()), (None, 1));
        m.answered(&info(&feature(NS_ADDRESS), ""));
        assert_eq!(m.limit(), None, "still refused on this stream");
        assert!(m.pings_to_service(), "behind the groups it may still hold");
        m.stream_started();
        m.answered(&info(&feature(NS_ADDRESS), ""));
        assert_eq!(m.limit(), Some(UNADVERTISED_LIMIT));
    }
}
