//! Taking back what the rosters no longer grant: subscriptions to `presence` and
//! `roster` nodes are re-judged against the owners' rosters as they are now, and those
//! that no longer pass are removed, the subscriber told with a subscription-state
//! notification (`subscription='none'`, XEP-0060 §8.8.4).
//!
//! Today's versions of ejabberd and Prosody push no roster changes to a privileged
//! component, so a sweep re-reads rosters. It walks by owner, in JID order with a
//! cursor kept between ticks: every [`SWEEP_EVERY`] it judges at most
//! `revocation_owners_per_tick` owners (a service limit), one roster read each (plus
//! co-owners' rosters, from the cache or counted against the same budget), and drops
//! each roster once that owner's nodes are judged. So a tick costs a bounded number of
//! reads and holds one owner's roster at a time, however many owners there are.
//!
//! The decision is the permission table's ([`check_keep_subscription`]): owners,
//! publishers and members keep their subscriptions; a roster that cannot be read
//! removes nothing. Removing cannot be undone, so it takes two reads that agree: a
//! subscription the rosters no longer grant is only marked, its owner re-read at the
//! next tick, and removed if that read says the same (a server whose storage failed
//! may answer with an empty roster once). The removal itself is conditional in the
//! store ([`revoke_subscription`](crate::store::SubscriptionStore::revoke_subscription)):
//! if the owner changed the access model or affiliated the subscriber since, nothing is
//! removed. An owner whose roster read fails is backed off; a read that times out or
//! finds no stream ends the tick (the server is away: the next tick tries again). A
//! node that does not decode is skipped and logged. The fan-out never waits on any of
//! this.
//!
//! Several processes on one PostgreSQL database each run a sweep (there is no lease
//! for it): the work and the reads are repeated per process, the removals are not
//! (the conditional delete removes a subscription once).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use xmpp_parsers::jid::BareJid;

use super::rosters::RosterReadError;
use super::{notify, Pubsub};
use crate::domain::access::check_keep_subscription;
use crate::domain::roster::{admitted, OwnerRoster};
use crate::domain::{AccessContext, AccessModel, Affiliation, SubscriptionState};
use crate::store::{NodeRecord, SubscriptionRecord};

/// How often subscriptions are re-judged: the same as a roster's freshness. A change
/// of roster takes effect within two ticks (two agreeing reads) once the walk reaches
/// the owner.
pub const SWEEP_EVERY: Duration = super::rosters::FRESH_FOR;

/// Nodes of one owner judged per visit. A person owns a handful of presence or roster
/// nodes; an owner with more is judged on the first this many.
const NODES_PER_OWNER: u32 = 200;

/// Subscriptions judged per node and visit. A presence or roster node is someone's
/// contacts: far fewer. A node with more is judged on its first this many.
const SUBSCRIPTIONS_PER_NODE: u32 = 10_000;

/// Pages of owners listed per tick at most. Owners who cost no read (no privilege for
/// their domain, backed off) do not spend the budget; this bounds the statements a
/// tick runs for them.
const PAGES_PER_TICK: u32 = 10;

/// The first back-off of an owner whose roster read failed; it doubles per failure up
/// to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(30);

/// The longest back-off: a roster that cannot be read removes nothing, so waiting long
/// costs only a late revocation.
const MAX_BACKOFF: Duration = Duration::from_secs(600);

/// The most owners kept backed off; past it a failing owner is simply tried again on
/// the next pass. Bounds the sweep's memory.
const MAX_BACKED_OFF: usize = 10_000;

/// Runs sweeps until `stop`.
pub async fn run(pubsub: Arc<Pubsub>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sweep = Sweep::default();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let removed = pubsub.revoke_lapsed(&mut sweep, &stop).await;
        if removed > 0 {
            tracing::info!(
                removed,
                "subscriptions the owners' rosters no longer grant were removed"
            );
        }
    }
}

/// What the sweep keeps between ticks: where the walk is, which owners are backed off,
/// and which subscriptions await a second read. All bounded.
#[derive(Debug, Default)]
pub struct Sweep {
    /// The stored JID of the last owner judged by the walk; empty starts a pass from
    /// the first.
    cursor: String,
    /// Owners whose reads failed: how many times, and when to try again.
    backoff: HashMap<BareJid, (u32, Instant)>,
    /// Owners one read said to take subscriptions from (by subscription pk), to read
    /// again at the next tick. At most one tick's owners.
    suspects: HashMap<BareJid, HashSet<i64>>,
}

impl Sweep {
    fn backed_off(&self, owner: &BareJid, now: Instant) -> bool {
        self.backoff
            .get(owner)
            .is_some_and(|(_, until)| *until > now)
    }

    fn failed(&mut self, owner: &BareJid, now: Instant) {
        let failures = self.backoff.get(owner).map_or(0, |(n, _)| *n);
        if failures == 0 && self.backoff.len() >= MAX_BACKED_OFF {
            return;
        }
        let wait = FIRST_BACKOFF
            .saturating_mul(1 << failures.min(10))
            .min(MAX_BACKOFF);
        self.backoff
            .insert(owner.clone(), (failures.saturating_add(1), now + wait));
    }
}

/// Why a visit ended the tick.
enum Visit {
    /// Go on to the next owner; `reads` roster reads were spent.
    Done { reads: u32, removed: u64 },
    /// The server does not answer: stop this tick.
    ServerAway,
}

impl Pubsub {
    /// One tick of the sweep: the owners marked last tick are read again, then the walk
    /// goes on from its cursor, until `revocation_owners_per_tick` roster reads are
    /// spent. Returns how many subscriptions were removed.
    pub async fn revoke_lapsed(&self, sweep: &mut Sweep, stop: &CancellationToken) -> u64 {
        let budget = self.policy.limits.revocation_owners_per_tick.max(1);
        let mut spent = 0u32;
        let mut removed = 0;
        let rechecks: Vec<(BareJid, HashSet<i64>)> = sweep.suspects.drain().collect();
        let mut next_suspects = HashMap::new();
        for (owner, marked) in rechecks {
            if stop.is_cancelled() {
                return removed;
            }
            match self
                .visit(
                    &owner,
                    Some(&marked),
                    sweep,
                    &mut next_suspects,
                    budget - spent.min(budget),
                )
                .await
            {
                Visit::Done { reads, removed: r } => {
                    spent += reads;
                    removed += r;
                }
                Visit::ServerAway => {
                    sweep.suspects = next_suspects;
                    return removed;
                }
            }
        }
        let mut pages = 0;
        while spent < budget && pages < PAGES_PER_TICK {
            pages += 1;
            let owners = match self
                .store
                .roster_node_owners(&sweep.cursor, budget - spent)
                .await
            {
                Ok(owners) => owners,
                Err(e) => {
                    tracing::warn!(error = %e, "the revocation sweep cannot list owners; next tick in {SWEEP_EVERY:?}");
                    break;
                }
            };
            let end_of_pass = owners.len() < (budget - spent) as usize;
            for (key, owner) in owners {
                if stop.is_cancelled() || spent >= budget {
                    sweep.suspects = next_suspects;
                    return removed;
                }
                sweep.cursor = key;
                let owner = match owner {
                    Ok(owner) => owner,
                    Err(e) => {
                        tracing::warn!(error = %e, "the revocation sweep skipped an owner whose stored JID does not parse");
                        continue;
                    }
                };
                if next_suspects.contains_key(&owner) {
                    continue;
                }
                match self
                    .visit(&owner, None, sweep, &mut next_suspects, budget - spent)
                    .await
                {
                    Visit::Done { reads, removed: r } => {
                        spent += reads;
                        removed += r;
                    }
                    Visit::ServerAway => {
                        sweep.suspects = next_suspects;
                        return removed;
                    }
                }
            }
            if end_of_pass {
                // Next tick starts a new pass from the first owner.
                sweep.cursor.clear();
                break;
            }
        }
        sweep.suspects = next_suspects;
        removed
    }

    /// Judges the nodes of `owner` with a fresh read of its roster. With `marked` (the
    /// subscriptions the previous read would have removed), removes those this read
    /// agrees on; every other subscription this read would remove is marked for the
    /// next tick in `suspects`.
    async fn visit(
        &self,
        owner: &BareJid,
        marked: Option<&HashSet<i64>>,
        sweep: &mut Sweep,
        suspects: &mut HashMap<BareJid, HashSet<i64>>,
        budget: u32,
    ) -> Visit {
        let now = Instant::now();
        // Without the privilege nothing is read (nor logged every tick), and nothing is
        // removed.
        if budget == 0
            || !self.rosters.readable(owner.domain().as_str())
            || sweep.backed_off(owner, now)
        {
            return Visit::Done {
                reads: 0,
                removed: 0,
            };
        }
        let mut reads = 1;
        let roster = match self.rosters.read_now(owner).await {
            Ok(roster) => {
                sweep.backoff.remove(owner);
                roster
            }
            Err(e) => {
                sweep.failed(owner, now);
                return match e {
                    RosterReadError::Timeout(_) | RosterReadError::NoStream => Visit::ServerAway,
                    _ => Visit::Done { reads, removed: 0 },
                };
            }
        };
        let nodes = match self.store.owned_roster_nodes(owner, NODES_PER_OWNER).await {
            Ok(nodes) => nodes,
            Err(e) => {
                tracing::warn!(%owner, error = %e, "the revocation sweep cannot read the owner's nodes");
                return Visit::Done { reads, removed: 0 };
            }
        };
        let mut removed = 0;
        let mut marks = HashSet::new();
        for node in nodes {
            let node = match node {
                Ok(node) => node,
                Err(e) => {
                    tracing::warn!(%owner, error = %e, "a node that does not decode was skipped by the revocation sweep");
                    continue;
                }
            };
            let affiliations = match self.store.node_affiliations(node.pk).await {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(node = %node.name, error = %e, "the revocation sweep skipped a node");
                    continue;
                }
            };
            // Co-owners' rosters: from the cache, else read while the budget lasts,
            // else unknown (which removes nothing).
            let mut others: Vec<Option<Arc<OwnerRoster>>> = Vec::new();
            for (jid, a) in &affiliations {
                if *a != Affiliation::Owner || jid == owner {
                    continue;
                }
                let cached = self.rosters.fresh(jid);
                let other = match cached {
                    Some(r) => Some(r),
                    None if reads < budget && self.rosters.readable(jid.domain().as_str()) => {
                        reads += 1;
                        self.rosters.read_now(jid).await.ok()
                    }
                    None => None,
                };
                others.push(other);
            }
            let subscriptions = match self
                .store
                .node_subscriptions(node.pk, SUBSCRIPTIONS_PER_NODE)
                .await
            {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(node = %node.name, error = %e, "the revocation sweep skipped a node");
                    continue;
                }
            };
            let rosters: Vec<Option<&OwnerRoster>> = std::iter::once(Some(&*roster))
                .chain(others.iter().map(Option::as_deref))
                .collect();
            for sub in lapsed(&node, &affiliations, &subscriptions, &rosters) {
                if !marked.is_some_and(|m| m.contains(&sub.pk)) {
                    marks.insert(sub.pk);
                    continue;
                }
                if self.revoke(&node, &affiliations, sub).await {
                    removed += 1;
                }
            }
        }
        if !marks.is_empty() {
            suspects.insert(owner.clone(), marks);
        }
        Visit::Done { reads, removed }
    }

    /// Removes `sub` from `node` if the store agrees it still may, telling the
    /// subscriber and the owners.
    async fn revoke(
        &self,
        node: &NodeRecord,
        affiliations: &[(BareJid, Affiliation)],
        sub: &SubscriptionRecord,
    ) -> bool {
        let owners: Vec<BareJid> = affiliations
            .iter()
            .filter(|(_, a)| *a == Affiliation::Owner)
            .map(|(j, _)| j.clone())
            .collect();
        let mut jobs = vec![notify::subscription_changed(
            node,
            &sub.jid,
            Some(&sub.subid),
            SubscriptionState::None,
        )];
        jobs.extend(notify::to_owners_on_subscription(
            node,
            &owners,
            &sub.jid,
            Some(&sub.subid),
            SubscriptionState::None,
        ));
        let model = node.config.access_model;
        match self.store.revoke_subscription(sub.pk, model, jobs).await {
            Ok(true) => {
                tracing::info!(node = %node.name, subscriber = %sub.jid, model = %model, "subscription removed: the owner's roster no longer grants it");
                true
            }
            Ok(false) => false,
            Err(e) => {
                tracing::warn!(node = %node.name, subscriber = %sub.jid, error = %e, "the revocation sweep could not remove a subscription");
                false
            }
        }
    }
}

/// The subscriptions to `node` that the permission table no longer lets keep, with the
/// owners' `rosters` (`None`: could not be read) and the node's `affiliations`.
fn lapsed<'s>(
    node: &NodeRecord,
    affiliations: &[(BareJid, Affiliation)],
    subscriptions: &'s [SubscriptionRecord],
    rosters: &[Option<&OwnerRoster>],
) -> Vec<&'s SubscriptionRecord> {
    let model = node.config.access_model;
    if !model.needs_rosters() {
        return Vec::new();
    }
    subscriptions
        .iter()
        .filter(|sub| {
            let who = sub.jid.to_bare();
            let affiliation = affiliations
                .iter()
                .find(|(j, _)| *j == who)
                .map_or(Affiliation::None, |(_, a)| *a);
            let known = admitted(
                rosters.iter().copied(),
                model,
                &who,
                &node.config.roster_groups_allowed,
            );
            let ctx = AccessContext {
                affiliation,
                subscription: sub.state,
                presence_subscribed: (model == AccessModel::Presence).then_some(known).flatten(),
                in_roster_group: (model == AccessModel::Roster).then_some(known).flatten(),
                access_model: model,
                publish_model: node.config.publish_model,
            };
            check_keep_subscription(&ctx).is_err()
        })
        .collect()
}

#[cfg(test)]
mod tests;
