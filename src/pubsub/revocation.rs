//! Taking back what the rosters no longer grant: subscriptions to `presence` and
//! `roster` nodes are re-judged against the owners' rosters as they are now, and those
//! that no longer pass are removed, the subscriber told with a subscription-state
//! notification (`subscription='none'`, XEP-0060 §8.8.4).
//!
//! Neither ejabberd nor Prosody pushes roster changes to a privileged component, so a
//! sweep every [`SWEEP_EVERY`] reads the owners' rosters again (once per owner per
//! sweep, whatever the cache holds, which it refreshes) and re-judges. Only subscriptions of entities the owner
//! did not affiliate are judged (owners, publishers and members are always admitted),
//! and only where the rosters answer: a roster that cannot be read (the privilege
//! gone, no answer) removes nothing. The fan-out never waits on any of this.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use xmpp_parsers::jid::BareJid;

use super::{internal, notify, Pubsub};
use crate::domain::roster::OwnerRoster;
use crate::domain::{Affiliation, DomainError, SubscriptionState};
use crate::store::NodeRecord;

/// How often subscriptions are re-judged: the same as a roster's freshness. A change
/// of roster or subscription state takes effect within this and a roster read.
pub const SWEEP_EVERY: Duration = super::rosters::FRESH_FOR;

/// Nodes read per statement of a sweep.
const NODE_PAGE: u32 = 200;

/// Subscriptions judged per node and sweep. A presence or roster node is someone's
/// contacts: far fewer. A node with more is judged on its first this many.
const SUBSCRIPTIONS_PER_NODE: u32 = 10_000;

/// Runs sweeps until `stop`.
pub async fn run(pubsub: Arc<Pubsub>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        match pubsub.revoke_lapsed().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                removed = n,
                "subscriptions the owners' rosters no longer grant were removed"
            ),
            Err(e) => {
                tracing::warn!(error = %e, "the revocation sweep failed; next one in {SWEEP_EVERY:?}")
            }
        }
    }
}

impl Pubsub {
    /// One sweep over every `presence` and `roster` node with subscriptions; returns
    /// how many subscriptions were removed.
    pub async fn revoke_lapsed(&self) -> Result<u64, DomainError> {
        let mut removed = 0;
        let mut after = 0;
        // Each owner's roster is read once per sweep.
        let mut read = HashMap::new();
        loop {
            let nodes = self
                .store
                .roster_nodes(after, NODE_PAGE)
                .await
                .map_err(internal)?;
            let Some(last) = nodes.last() else {
                return Ok(removed);
            };
            after = last.pk;
            for node in &nodes {
                removed += self.revoke_on(node, &mut read).await?;
            }
        }
    }

    /// Re-judges the subscriptions to `node`, with the rosters `read` this sweep.
    async fn revoke_on(
        &self,
        node: &NodeRecord,
        read: &mut HashMap<BareJid, Option<Arc<OwnerRoster>>>,
    ) -> Result<u64, DomainError> {
        let model = node.config.access_model;
        if !model.needs_rosters() {
            return Ok(0);
        }
        let affiliations = self
            .store
            .node_affiliations(node.pk)
            .await
            .map_err(internal)?;
        let admitted = |jid: &BareJid| {
            affiliations.iter().any(|(j, a)| {
                j == jid
                    && matches!(
                        a,
                        Affiliation::Owner | Affiliation::Publisher | Affiliation::Member
                    )
            })
        };
        let owners: Vec<BareJid> = affiliations
            .iter()
            .filter(|(_, a)| *a == Affiliation::Owner)
            .map(|(j, _)| j.clone())
            .collect();
        let subscriptions = self
            .store
            .node_subscriptions(node.pk, SUBSCRIPTIONS_PER_NODE)
            .await
            .map_err(internal)?;
        if owners.is_empty() {
            return Ok(0);
        }
        let mut rosters = Vec::with_capacity(owners.len());
        for owner in &owners {
            if !read.contains_key(owner) {
                // Without the privilege nothing is read (nor logged every sweep), and
                // nothing is removed.
                let roster = if self.rosters.readable(owner.domain().as_str()) {
                    self.rosters.reread(owner).await
                } else {
                    None
                };
                read.insert(owner.clone(), roster);
            }
            rosters.push(read.get(owner).cloned().flatten());
        }
        let groups = &node.config.roster_groups_allowed;
        let mut removed = 0;
        for sub in subscriptions {
            let who = sub.jid.to_bare();
            if admitted(&who) {
                continue;
            }
            // Removed only when every owner's roster was read and none admits.
            let known = crate::domain::roster::admitted(
                rosters.iter().map(Option::as_deref),
                model,
                &who,
                groups,
            );
            if known != Some(false) {
                continue;
            }
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
            let gone = self
                .store
                .unsubscribe(node.pk, &sub.jid, Some(&sub.subid), jobs)
                .await
                .map_err(internal)?;
            if gone.is_some() {
                tracing::info!(node = %node.name, subscriber = %sub.jid, model = %model, "subscription removed: the owner's roster no longer grants it");
                removed += 1;
            }
        }
        Ok(removed)
    }
}
