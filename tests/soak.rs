//! Soak: hostile clients send thousands of random mutations of valid pubsub requests
//! (every request type and owner operation; hostile attribute and text values, wrong
//! types, repeated and missing children and attributes, unknown elements, wrong
//! namespaces, deep nesting, many attributes) through real Prosody and ejabberd while a
//! 10,000-subscriber fan-out runs. Every request is answered, the fan-out loses nothing,
//! the component stream is never dropped, and the nodes of others are unchanged.
//!
//! The requests come from a seeded generator ([`requests`]): the seed is printed, and
//! `PUBSUBD_SOAK_SEED=<seed>` replays a run (`PUBSUBD_SOAK_REQUESTS=<n>` sends another
//! number of requests).

mod common;

#[path = "soak/requests.rs"]
mod requests;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use pubsubd_testkit::{both_servers, stanza, Client, Element, StoreKind, DOMAIN};
use rand::rngs::StdRng;
use rand::SeedableRng;

use common::sink::{attach_sink, Inbox};
use common::watched::start_watched;
use common::*;
use requests::{generate, Request, Targets};

/// Requests sent in all: a few thousand, which a debug build on a loaded two-core
/// machine answers in about half a minute through ejabberd and a minute through
/// Prosody (one thread, also routing the fan-out).
const DEFAULT_REQUESTS: usize = 3_000;
/// On SQLite: half as many. The run on PostgreSQL already sends the full count through
/// the same reader, router and handlers; this one is about the other store.
const DEFAULT_REQUESTS_SQLITE: usize = 1_500;
/// Attackers sending at once: two lanes of pubsubd's router at work, each attacker's
/// requests in order in its own.
const ATTACKERS: usize = 2;
/// Requests an attacker has in flight: pipelined like a busy client, well under a
/// router lane (256), so that every request is handled rather than told to wait.
const WINDOW: usize = 50;
/// How long an answer may take: generous, for requests of 100 KB values through a
/// busy single-threaded server on a loaded machine.
const ANSWER_WAIT: Duration = Duration::from_secs(60);
/// The crowd of virtual subscribers the fan-out walks meanwhile.
const SUBSCRIBERS: i64 = 10_000;
/// Items published to the crowd while the attack runs, spread over it.
const ITEMS: usize = 3;
/// Longest wait for the crowd's notifications once the attack is over (30,000 through
/// Prosody at ~2,000/s on a busy machine).
const FANOUT_DONE: Duration = Duration::from_secs(120);
/// Replays a run.
const SEED_ENV: &str = "PUBSUBD_SOAK_SEED";
/// Sends another number of requests.
const REQUESTS_ENV: &str = "PUBSUBD_SOAK_REQUESTS";

/// The victim's nodes: one anyone may read, one for a whitelist.
const VICTIM_OPEN: &str = "victim-open";
const VICTIM_PRIVATE: &str = "victim-private";
/// The node of the 10,000 virtual subscribers.
const CROWD: &str = "crowd";
/// Nodes each attacker owns before the soak.
const OWN_NODES: usize = 3;

both_servers!(
    hostile_requests_are_all_answered_while_a_fanout_completes_and_others_nodes_stay_unchanged,
    |server| async move {
        let seed = seed()?;
        let kind = StoreKind::current()?;
        let default = match kind {
            StoreKind::Postgres => DEFAULT_REQUESTS,
            StoreKind::Sqlite => DEFAULT_REQUESTS_SQLITE,
        };
        let total = env_number(REQUESTS_ENV, default)?;
        eprintln!(
            "{}, {kind:?}: soak seed {seed} ({SEED_ENV}={seed} replays it), {total} requests",
            server.kind()
        );
        let w = start_watched(server, "").await?;
        let ps = &w.ps;

        // The victim: two nodes with known configuration, affiliations, subscriptions
        // and items.
        let mut victim = user(server, "victim").await?;
        let friend = format!("friend@{DOMAIN}");
        create(
            &mut victim,
            ps,
            VICTIM_OPEN,
            &[
                ("pubsub#title", "Open diary"),
                ("pubsub#max_items", "10"),
                ("pubsub#publish_model", "publishers"),
            ],
        )
        .await?;
        create(
            &mut victim,
            ps,
            VICTIM_PRIVATE,
            &[
                ("pubsub#title", "Private diary"),
                ("pubsub#access_model", "whitelist"),
            ],
        )
        .await?;
        for node in [VICTIM_OPEN, VICTIM_PRIVATE] {
            for n in 0..3 {
                let id = format!("v{n}");
                ok(&publish(&mut victim, ps, node, Some(&id), &atom_entry(&id, "mine")).await?);
            }
            ok(&subscribe(&mut victim, ps, node).await?);
        }

        // The attackers, each with nodes of its own.
        let mut attackers = Vec::new();
        for a in 0..ATTACKERS {
            let mut client = user(server, "attacker").await?;
            let own: Vec<String> = (0..OWN_NODES).map(|n| format!("a{a}-own-{n}")).collect();
            for node in &own {
                create(&mut client, ps, node, &[]).await?;
            }
            attackers.push((client, own));
        }
        let attacker_jids: Vec<String> = attackers
            .iter()
            .map(|(c, _)| c.bare_jid().to_owned())
            .collect();
        for (node, jid, affiliation) in [
            (VICTIM_OPEN, &friend, "publisher"),
            (VICTIM_OPEN, &attacker_jids[0], "outcast"),
            (VICTIM_PRIVATE, &friend, "member"),
        ] {
            let set = owner(&format!(
                "<affiliations node='{node}'><affiliation jid='{jid}' affiliation='{affiliation}'/></affiliations>"
            ));
            ok(&iq(&mut victim, ps, "set", &set).await?);
        }

        // The crowd: 10,000 virtual subscribers behind a sink component.
        let mut publisher = user(server, "publisher").await?;
        create(&mut publisher, ps, CROWD, &[("pubsub#title", "Crowd")]).await?;
        let sink = server.lease_component();
        let inbox = Inbox::default();
        attach_sink(server, &sink, inbox.clone()).await?;
        subscribe_crowd(&ps.db, CROWD, "v", sink.jid(), SUBSCRIBERS).await?;

        let guarded = [
            // Anyone may subscribe to the open node: of its subscriptions, the
            // victim's own must stay as it is.
            (
                VICTIM_OPEN,
                &[
                    Aspect::Configuration,
                    Aspect::Affiliations,
                    Aspect::OwnSubscription,
                    Aspect::OwnOptions,
                    Aspect::Items,
                ][..],
            ),
            (
                VICTIM_PRIVATE,
                &[
                    Aspect::Configuration,
                    Aspect::Affiliations,
                    Aspect::Subscriptions,
                    Aspect::OwnOptions,
                    Aspect::Items,
                ][..],
            ),
        ];
        let mut before = Vec::new();
        for (node, aspects) in guarded {
            before.push(state(&mut victim, ps, node, aspects).await?);
        }
        let crowd_before = state(&mut publisher, ps, CROWD, CROWD_ASPECTS).await?;
        for answer in before.iter().flatten().chain(&crowd_before) {
            assert!(answer.contains(" type='result'"), "{answer}");
        }

        // The attack, with the crowd's items published as it goes.
        let others: Vec<String> = [VICTIM_OPEN, VICTIM_PRIVATE, CROWD]
            .map(str::to_owned)
            .to_vec();
        let (victim_jid, publisher_jid) = (
            victim.bare_jid().to_owned(),
            publisher.bare_jid().to_owned(),
        );
        let sent = AtomicUsize::new(0);
        let started = Instant::now();
        let attacks = attackers.into_iter().enumerate().map(|(a, (client, own))| {
            let mut other_jids = vec![victim_jid.clone(), friend.clone(), publisher_jid.clone()];
            other_jids.extend(
                attacker_jids
                    .iter()
                    .filter(|j| **j != client.bare_jid())
                    .cloned(),
            );
            let targets = Targets {
                me: client.bare_jid().to_owned(),
                own,
                fresh: format!("a{a}-fresh"),
                others: others.clone(),
                other_jids,
            };
            let rng = StdRng::seed_from_u64(seed.wrapping_add(a as u64));
            attack(client, ps, targets, rng, total / ATTACKERS, &sent)
        });
        let (tallies, published_in) = tokio::try_join!(
            futures::future::try_join_all(attacks),
            publish_along(&mut publisher, ps, &sent, total),
        )?;
        let attack_took = started.elapsed();
        let during = inbox.total();
        let mut tally = Tally::default();
        for t in &tallies {
            tally.add(t);
        }

        // The fan-out completes: every virtual subscriber got every item, once each
        // item, and nothing else.
        let expected = SUBSCRIBERS as usize * ITEMS;
        inbox
            .wait_unique(expected, FANOUT_DONE)
            .await
            .with_context(|| ps.process.log_tail(40))?;
        let fanout_took = started.elapsed();
        check_every_subscriber_got_every_item(&inbox, sink.jid())?;

        eprintln!(
            "{}, {kind:?}: {} requests ({:.1} MB) sent by {ATTACKERS} attackers {WINDOW} in flight each, {} answered in {attack_took:.1?} ({:.0}/s), slowest answer {:.1?}; outcomes: {}",
            server.kind(),
            tally.sent,
            tally.bytes as f64 / 1e6,
            tally.answered(),
            tally.answered() as f64 / attack_took.as_secs_f64(),
            tally.slowest,
            list(&tally.by_outcome)
        );
        eprintln!(
            "{}, {kind:?}: mutations: {}; results by request: {}",
            server.kind(),
            list(&tally.by_mutation),
            list(&tally.results_by_template)
        );
        eprintln!(
            "{}, {kind:?}: fan-out of {ITEMS} items (published at {published_in:.1?}) to {SUBSCRIBERS}: {during} notifications delivered while the attack ran, all {expected} by {fanout_took:.1?}, {} duplicates",
            server.kind(),
            inbox.total() - inbox.unique()
        );
        assert_eq!(tally.answered(), tally.sent, "every request is answered");
        assert!(
            tally.faults.is_empty(),
            "answers that are the service's fault (a bad request is the client's), first of each:\n{}",
            tally.faults.values().cloned().collect::<Vec<_>>().join("\n")
        );

        // The stream held, nothing panicked, and the nodes of others are as they were.
        w.assert_stream_never_dropped().await?;
        let log = ps.process.log_contents();
        assert!(
            !log.contains("panicked"),
            "a panic:\n{}",
            ps.process.log_tail(60)
        );
        let errors: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("ERROR"))
            .take(10)
            .collect();
        assert!(errors.is_empty(), "errors logged:\n{}", errors.join("\n"));
        for ((node, aspects), before) in guarded.into_iter().zip(before) {
            let after = state(&mut victim, ps, node, aspects).await?;
            for (aspect, (b, a)) in aspects.iter().zip(before.iter().zip(&after)) {
                assert_eq!(b, a, "the {aspect:?} of {node} changed");
            }
        }
        let crowd_after = state(&mut publisher, ps, CROWD, CROWD_ASPECTS).await?;
        assert_eq!(crowd_before, crowd_after, "the crowd node changed");
        Ok::<_, anyhow::Error>(())
    }
);

/// A printed seed is worth something only if it makes the same requests again.
#[test]
fn a_seed_replays_the_same_requests() {
    let targets = || Targets {
        me: "mallory@localhost".into(),
        own: vec!["mine".into()],
        fresh: "new".into(),
        others: vec![VICTIM_OPEN.into(), CROWD.into()],
        other_jids: vec!["victim@localhost".into()],
    };
    let run = |seed| {
        let (targets, mut rng) = (targets(), StdRng::seed_from_u64(seed));
        (0..200)
            .map(|n| generate(&mut rng, &targets).iq("ps.localhost", &n.to_string()))
            .map(|iq| stanza::to_xml(&iq))
            .collect::<Vec<_>>()
    };
    assert_eq!(run(7), run(7));
    assert_ne!(run(7), run(8));
}

/// What of the crowd node must not change (its items do: the publisher publishes).
const CROWD_ASPECTS: &[Aspect] = &[Aspect::Configuration, Aspect::Affiliations];

/// What the owner reads of a node to see that it is unchanged.
#[derive(Debug, Clone, Copy)]
enum Aspect {
    Configuration,
    Affiliations,
    /// All subscriptions to the node.
    Subscriptions,
    /// The owner's own subscription to the node.
    OwnSubscription,
    /// The options of the owner's own subscription.
    OwnOptions,
    Items,
}

/// The owner's answers (without iq ids) to reading each of `aspects` of `node`, results
/// or not: a node deleted shows as a changed answer.
async fn state(
    client: &mut Client,
    ps: &Pubsubd,
    node: &str,
    aspects: &[Aspect],
) -> anyhow::Result<Vec<String>> {
    let me = client.bare_jid().to_owned();
    let mut answers = Vec::new();
    for aspect in aspects {
        let payload = match aspect {
            Aspect::Configuration => owner(&format!("<configure node='{node}'/>")),
            Aspect::Affiliations => owner(&format!("<affiliations node='{node}'/>")),
            Aspect::Subscriptions => owner(&format!("<subscriptions node='{node}'/>")),
            Aspect::OwnSubscription => pubsub(&format!("<subscriptions node='{node}'/>")),
            Aspect::OwnOptions => pubsub(&format!("<options node='{node}' jid='{me}'/>")),
            Aspect::Items => pubsub(&format!("<items node='{node}'/>")),
        };
        let reply = iq(client, ps, "get", &payload).await?;
        answers.push(strip_ids(&stanza::to_xml(&reply)));
    }
    Ok(answers)
}

/// Error conditions that would be the service's fault, or its absence, not the request's.
const SERVICE_FAULTS: &[&str] = &[
    "internal-server-error",
    "undefined-condition",
    "remote-server-timeout",
    "remote-server-not-found",
];
/// The outcome of an error answer that is not a well-formed stanza error.
const MALFORMED: &str = "malformed error";

fn is_fault(outcome: &str) -> bool {
    SERVICE_FAULTS.contains(&outcome) || outcome.starts_with(MALFORMED)
}

/// What is wrong with the form of an error answer, if anything (RFC 6120 §8.3.2): an
/// `<error/>` with one of the five types, exactly one defined condition, and no empty
/// `<text/>` (the RFC's schema: a non-empty string).
fn malformed_error(answer: &Element) -> Option<String> {
    let Some(error) = answer.children().find(|c| c.name() == "error") else {
        return Some("no <error/>".into());
    };
    if !matches!(
        error.attr("type"),
        Some("auth" | "cancel" | "continue" | "modify" | "wait")
    ) {
        return Some(format!("type {:?}", error.attr("type")));
    }
    let in_stanzas_ns = |name: &str| {
        error
            .children()
            .filter(|c| c.ns() == NS_STANZAS && (c.name() == "text") == (name == "text"))
            .collect::<Vec<_>>()
    };
    let conditions = in_stanzas_ns("condition").len();
    if conditions != 1 {
        return Some(format!("{conditions} defined conditions"));
    }
    if in_stanzas_ns("text").iter().any(|t| t.text().is_empty()) {
        return Some("an empty <text/>".into());
    }
    None
}

/// What the requests of an attacker came to.
#[derive(Default)]
struct Tally {
    sent: usize,
    /// Bytes of XML sent.
    bytes: usize,
    /// Answers by outcome: `result` or the error condition.
    by_outcome: BTreeMap<String, usize>,
    by_mutation: BTreeMap<String, usize>,
    /// Results by request template: each kind of request also gets through.
    results_by_template: BTreeMap<String, usize>,
    /// The first request and answer of each outcome that is the service's fault.
    faults: BTreeMap<String, String>,
    slowest: Duration,
}

impl Tally {
    fn answered(&self) -> usize {
        self.by_outcome.values().sum()
    }

    fn add(&mut self, other: &Tally) {
        self.sent += other.sent;
        self.bytes += other.bytes;
        for (mine, theirs) in [
            (&mut self.by_outcome, &other.by_outcome),
            (&mut self.by_mutation, &other.by_mutation),
            (&mut self.results_by_template, &other.results_by_template),
        ] {
            for (k, n) in theirs {
                bump(mine, k, *n);
            }
        }
        for (outcome, example) in &other.faults {
            self.faults
                .entry(outcome.clone())
                .or_insert_with(|| example.clone());
        }
        self.slowest = self.slowest.max(other.slowest);
    }
}

fn bump(counts: &mut BTreeMap<String, usize>, key: &str, n: usize) {
    *counts.entry(key.to_owned()).or_default() += n;
}

fn list(counts: &BTreeMap<String, usize>) -> String {
    counts
        .iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Sends `count` hostile requests, [`WINDOW`] of them in flight (another goes out as
/// each is answered), and fails unless each is answered within [`ANSWER_WAIT`].
async fn attack(
    mut client: Client,
    ps: &Pubsubd,
    targets: Targets,
    mut rng: StdRng,
    count: usize,
    sent: &AtomicUsize,
) -> anyhow::Result<Tally> {
    let mut tally = Tally::default();
    let mut waiting: HashMap<String, (Request, Instant)> = HashMap::new();
    loop {
        while waiting.len() < WINDOW && tally.sent < count {
            let request = generate(&mut rng, &targets);
            let id = format!("soak-{}-{}", targets.fresh, tally.sent);
            let iq = request.iq(ps.jid(), &id);
            tally.bytes += stanza::to_xml(&iq).len();
            client.send(iq)?;
            for m in &request.mutations {
                bump(&mut tally.by_mutation, &format!("{m:?}"), 1);
            }
            waiting.insert(id, (request, Instant::now()));
            tally.sent += 1;
            sent.fetch_add(1, Ordering::Relaxed);
        }
        let Some(oldest) = waiting.values().map(|(_, at)| *at).min() else {
            return Ok(tally);
        };
        let Some(answer) = client
            .recv_timeout(ANSWER_WAIT.saturating_sub(oldest.elapsed()))
            .await
        else {
            let closed = client.closed_reason().map(str::to_owned);
            let mut unanswered: Vec<_> = waiting.iter().collect();
            unanswered.sort_by_key(|(_, (_, at))| *at);
            let first: Vec<String> = unanswered
                .iter()
                .take(5)
                .map(|(id, (r, _))| format!("{id}: {}", r.describe()))
                .collect();
            bail!(
                "{} requests unanswered, the oldest for {ANSWER_WAIT:?} (stream closed: {closed:?}); first:\n{}\npubsubd's log:\n{}",
                waiting.len(),
                first.join("\n"),
                ps.process.log_tail(40)
            );
        };
        let is_answer =
            answer.name() == "iq" && matches!(answer.attr("type"), Some("result" | "error"));
        // Anything else is a notification of the attacker's own subscriptions, say.
        let Some((request, at)) = answer
            .attr("id")
            .filter(|_| is_answer)
            .and_then(|id| waiting.remove(id))
        else {
            continue;
        };
        tally.slowest = tally.slowest.max(at.elapsed());
        let outcome = match answer.attr("type") {
            Some("result") => {
                bump(&mut tally.results_by_template, request.template, 1);
                "result".to_owned()
            }
            _ => match malformed_error(&answer) {
                Some(wrong) => format!("{MALFORMED} ({wrong})"),
                None => stanza::error_condition(&answer).unwrap_or_default(),
            },
        };
        if is_fault(&outcome) {
            tally.faults.entry(outcome.clone()).or_insert_with(|| {
                format!("{} -> {}", request.describe(), stanza::to_xml(&answer))
            });
        }
        bump(&mut tally.by_outcome, &outcome, 1);
    }
}

/// Publishes the crowd's [`ITEMS`] as the attack goes: the first at once, the next
/// each time another share of `total` requests is out. Returns when each went out.
async fn publish_along(
    publisher: &mut Client,
    ps: &Pubsubd,
    sent: &AtomicUsize,
    total: usize,
) -> anyhow::Result<Vec<Duration>> {
    let started = Instant::now();
    let mut at = Vec::new();
    for n in 0..ITEMS {
        while sent.load(Ordering::Relaxed) < n * total / ITEMS {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let id = format!("crowd-{n}");
        let item = pubsub(&format!(
            "<publish node='{CROWD}'><item id='{id}'>{}</item></publish>",
            atom_entry(&id, "for everyone")
        ));
        let reply = publisher
            .iq_timeout(
                stanza::iq("set", ps.jid(), stanza::parse(&item)),
                ANSWER_WAIT,
            )
            .await?;
        ok(&reply);
        at.push(started.elapsed());
    }
    Ok(at)
}

/// Each virtual subscriber `v1` … `v10000` got a notification of each of the crowd's
/// [`ITEMS`] jobs (ids `ps-<job>`), and no one else got anything.
fn check_every_subscriber_got_every_item(inbox: &Inbox, sink: &str) -> anyhow::Result<()> {
    let got = inbox.snapshot();
    let jobs = |ids: &Vec<String>| -> BTreeSet<String> {
        ids.iter()
            .filter_map(|id| id.strip_prefix("ps-")?.split('-').next().map(str::to_owned))
            .collect()
    };
    let all: BTreeSet<String> = got.values().flat_map(jobs).collect();
    anyhow::ensure!(
        all.len() == ITEMS,
        "notifications of {} jobs: {all:?}",
        all.len()
    );
    let short: Vec<i64> = (1..=SUBSCRIBERS)
        .filter(|n| got.get(&format!("v{n}@{sink}")).map(jobs) != Some(all.clone()))
        .collect();
    anyhow::ensure!(
        short.is_empty(),
        "{} of {SUBSCRIBERS} virtual subscribers missed an item (first: {:?})",
        short.len(),
        &short[..short.len().min(10)]
    );
    anyhow::ensure!(
        got.len() == SUBSCRIBERS as usize,
        "{} recipients, not the {SUBSCRIBERS} subscribers",
        got.len()
    );
    Ok(())
}

/// The seed of this run: [`SEED_ENV`] if set, a random one otherwise.
fn seed() -> anyhow::Result<u64> {
    match std::env::var(SEED_ENV) {
        Ok(s) => s.parse().with_context(|| format!("{SEED_ENV}={s}")),
        Err(_) => Ok(rand::random()),
    }
}

fn env_number(name: &str, default: usize) -> anyhow::Result<usize> {
    match std::env::var(name) {
        Ok(s) => s.parse().with_context(|| format!("{name}={s}")),
        Err(_) => Ok(default),
    }
}
