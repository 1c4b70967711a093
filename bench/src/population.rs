//! The receiving population of a scenario: many client sessions (logged in
//! a bounded number at a time, each subscribing to its nodes), or one sink
//! component standing in for any number of virtual subscribers, and then
//! their receive tasks.
//!
//! Owns connecting, subscribing and the life of the receivers. Counting is
//! `receive.rs`'s job.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::{watch, Semaphore};
use tokio::task::{JoinHandle, JoinSet};

use crate::conn::{self, LoginSpec, Reader};
use crate::env::Env;
use crate::iq::{self, Outcome, Request};
use crate::receive::{self, Addressing, InboxStats, Tally};
use crate::stanzas;

/// Subscribe requests one client keeps in flight during set-up.
const CLIENT_SUBSCRIBE_WINDOW: usize = 16;

/// Subscribe requests the sink component keeps in flight during set-up.
const SINK_SUBSCRIBE_WINDOW: usize = 256;

/// The password of every benchmark account.
pub const PASSWORD: &str = "pubsubd-load";

/// Who subscribes to what: `nodes_of[s]` are the node indexes subscriber
/// `s` subscribes to.
#[derive(Debug, Clone)]
pub struct Assignment {
    /// Per subscriber, its nodes.
    pub nodes_of: Vec<Vec<usize>>,
    /// Subscribers per node (the same for every node).
    pub per_node: usize,
}

impl Assignment {
    /// `per_node` subscribers for each of `nodes` nodes, spread round-robin
    /// over `subscribers` (so each subscriber has about the same number of
    /// nodes, and no node has a subscriber twice).
    pub fn round_robin(nodes: usize, subscribers: usize, per_node: usize) -> Self {
        let per_node = per_node.min(subscribers);
        let mut nodes_of = vec![Vec::new(); subscribers];
        for node in 0..nodes {
            for j in 0..per_node {
                nodes_of[(node * per_node + j) % subscribers].push(node);
            }
        }
        Self { nodes_of, per_node }
    }

    /// No subscriptions (the `route` scenario's receivers).
    pub fn none(subscribers: usize) -> Self {
        Self {
            nodes_of: vec![Vec::new(); subscribers],
            per_node: 0,
        }
    }
}

/// How client sessions are opened.
#[derive(Debug, Clone)]
pub struct ClientSpec {
    /// Account names are `<prefix><n>`.
    pub prefix: String,
    /// Logins in progress at once.
    pub concurrency: usize,
    /// Limit for the whole set-up.
    pub timeout: Duration,
}

/// Connected, subscribed receivers, not yet reading.
pub struct Population {
    members: Vec<(Reader, OwnedWriteHalf, Addressing)>,
    /// How the subscriptions went.
    pub subscribe: Outcome,
    /// Time spent logging in and subscribing.
    pub setup: Duration,
}

/// Logs in one session per subscriber of `assignment` and subscribes each to
/// its nodes on `service`.
pub async fn clients(
    env: &Env,
    spec: &ClientSpec,
    assignment: &Assignment,
    nodes: &Arc<Vec<String>>,
    service: &str,
) -> anyhow::Result<Population> {
    let began = Instant::now();
    let gate = Arc::new(Semaphore::new(spec.concurrency.max(1)));
    let mut tasks = JoinSet::new();
    for (index, my_nodes) in assignment.nodes_of.iter().enumerate() {
        let login = LoginSpec {
            addr: env.c2s,
            domain: env.domain.clone(),
            username: format!("{}{index}", spec.prefix),
            password: PASSWORD.to_string(),
            resource: "load".to_string(),
            register: true,
            presence: true,
        };
        let gate = Arc::clone(&gate);
        let nodes = Arc::clone(nodes);
        let my_nodes = my_nodes.clone();
        let service = service.to_string();
        let timeout = spec.timeout;
        tasks.spawn(async move {
            let _permit = gate.acquire_owned().await?;
            let mut session = conn::login(&login)
                .await
                .with_context(|| format!("login of {}", login.username))?;
            let bare = format!("{}@{}", login.username, login.domain);
            let requests = my_nodes
                .iter()
                .enumerate()
                .map(|(k, &node)| {
                    let id = format!("s{k}");
                    let xml = stanzas::subscribe(&id, None, &service, &nodes[node], &bare);
                    Request { id, xml }
                })
                .collect();
            let outcome = iq::pipelined(
                &mut session.reader,
                &mut session.writer,
                requests,
                CLIENT_SUBSCRIBE_WINDOW,
                timeout,
            )
            .await?;
            Ok::<_, anyhow::Error>((session.reader, session.writer, outcome))
        });
    }
    let deadline = tokio::time::Instant::now() + spec.timeout;
    let mut members = Vec::with_capacity(assignment.nodes_of.len());
    let mut subscribe = Outcome::default();
    let mut failures = 0usize;
    let mut first_failure = None;
    while let Some(joined) = tokio::time::timeout_at(deadline, tasks.join_next())
        .await
        .with_context(|| format!("set-up of the subscribers took over {:?}", spec.timeout))?
    {
        match joined.context("set-up task panicked")? {
            Ok((reader, writer, outcome)) => {
                merge_outcome(&mut subscribe, outcome);
                members.push((reader, writer, Addressing::Single));
            }
            Err(e) => {
                failures += 1;
                first_failure.get_or_insert(format!("{e:#}"));
            }
        }
    }
    if failures > 0 {
        bail!(
            "{failures} of {} sessions could not be set up ({} connected); first failure: {}",
            assignment.nodes_of.len(),
            members.len(),
            first_failure.unwrap_or_default()
        );
    }
    Ok(Population {
        members,
        subscribe,
        setup: began.elapsed(),
    })
}

/// Connects the sink component and subscribes its virtual users
/// `v<n>@<sink>` (one per subscriber of `assignment`) to their nodes.
pub async fn virtual_subscribers(
    env: &Env,
    assignment: &Assignment,
    nodes: &[String],
    service: &str,
    timeout: Duration,
) -> anyhow::Result<Population> {
    let began = Instant::now();
    let sink = &env.sink_slot;
    let mut component = conn::component(env.component, &sink.jid, &sink.secret).await?;
    let mut requests = Vec::new();
    for (index, my_nodes) in assignment.nodes_of.iter().enumerate() {
        let jid = receive::virtual_jid(index, &sink.jid);
        for &node in my_nodes {
            let id = format!("v{index}-{node}");
            let xml = stanzas::subscribe(&id, Some(&jid), service, &nodes[node], &jid);
            requests.push(Request { id, xml });
        }
    }
    let subscribe = iq::pipelined(
        &mut component.reader,
        &mut component.writer,
        requests,
        SINK_SUBSCRIBE_WINDOW,
        timeout,
    )
    .await?;
    let addressing = Addressing::Virtual {
        count: assignment.nodes_of.len(),
    };
    Ok(Population {
        members: vec![(component.reader, component.writer, addressing)],
        subscribe,
        setup: began.elapsed(),
    })
}

/// Adds one client's subscribe outcome to the total (latencies dropped:
/// set-up latency under a login storm means little).
fn merge_outcome(total: &mut Outcome, one: Outcome) {
    total.ok += one.ok;
    total.errors += one.errors;
    if total.first_error.is_none() {
        total.first_error = one.first_error;
    }
}

/// Receivers at work.
pub struct Receiving {
    tasks: Vec<JoinHandle<InboxStats>>,
    writers: Vec<OwnedWriteHalf>,
    stop: watch::Sender<bool>,
    /// Their shared progress.
    pub tally: Arc<Tally>,
}

impl Population {
    /// Starts one receive task per connection.
    pub fn start(self) -> Receiving {
        let tally = Tally::new();
        let (stop, stopped) = watch::channel(false);
        let mut tasks = Vec::with_capacity(self.members.len());
        let mut writers = Vec::with_capacity(self.members.len());
        for (reader, writer, addressing) in self.members {
            tasks.push(tokio::spawn(receive::receive(
                reader,
                addressing,
                Arc::clone(&tally),
                stopped.clone(),
            )));
            writers.push(writer);
        }
        Receiving {
            tasks,
            writers,
            stop,
            tally,
        }
    }
}

impl Receiving {
    /// Stops every receiver, collects their counts and closes the streams.
    pub async fn finish(mut self) -> InboxStats {
        let _ = self.stop.send(true);
        let mut total = InboxStats::default();
        for task in self.tasks {
            if let Ok(stats) = task.await {
                total.merge(stats);
            }
        }
        for writer in &mut self.writers {
            conn::close(writer).await;
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_robin_gives_every_node_distinct_subscribers() {
        let a = Assignment::round_robin(100, 30, 10);
        let mut per_node = vec![Vec::new(); 100];
        for (s, nodes) in a.nodes_of.iter().enumerate() {
            for &n in nodes {
                per_node[n].push(s);
            }
        }
        for subs in &per_node {
            let mut unique = subs.clone();
            unique.sort_unstable();
            unique.dedup();
            assert_eq!(unique.len(), 10);
        }
        let loads: Vec<usize> = a.nodes_of.iter().map(Vec::len).collect();
        assert!(loads.iter().max().unwrap() - loads.iter().min().unwrap() <= 1);
    }

    #[test]
    fn one_node_is_subscribed_by_everyone() {
        let a = Assignment::round_robin(1, 5, 5);
        assert!(a.nodes_of.iter().all(|n| n == &vec![0]));
    }
}
