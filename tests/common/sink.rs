//! A "sink" component standing in for thousands of subscribers: JIDs `v<n>@<sink>`, where
//! `<sink>` is a component slot held by the test, all routed by the server to one
//! connection that counts what arrives ([`Inbox`]). Everything is counted by
//! (recipient, message id); ids are stable per job (and per subscription with a SubID),
//! on either delivery path, so a resent notification is a duplicate.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::bail;
use pubsubd_testkit::{component_handshake, ComponentSlot, Element, XmppServer};

use super::NS_EVENT;

/// How often the waits below look at the count: fine enough to time a takeover to a
/// few milliseconds.
const LOOK_EVERY: Duration = Duration::from_millis(2);

/// Everything the sink received: ids per recipient, in arrival order.
#[derive(Clone, Default)]
pub struct Inbox {
    by_recipient: Arc<Mutex<HashMap<String, Vec<String>>>>,
    total: Arc<AtomicUsize>,
}

impl Inbox {
    /// Counts message `id` to `to`.
    pub fn record(&self, to: &str, id: &str) {
        if let Ok(mut m) = self.by_recipient.lock() {
            m.entry(to.to_string()).or_default().push(id.to_string());
        }
        self.total.fetch_add(1, Ordering::Relaxed);
    }

    /// Messages received, duplicates included.
    pub fn total(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }

    pub fn snapshot(&self) -> HashMap<String, Vec<String>> {
        self.by_recipient
            .lock()
            .map(|m| m.clone())
            .unwrap_or_default()
    }

    /// Distinct (recipient, id) pairs.
    pub fn unique(&self) -> usize {
        self.snapshot()
            .values()
            .map(|ids| {
                let mut ids = ids.clone();
                ids.sort();
                ids.dedup();
                ids.len()
            })
            .sum()
    }

    /// Waits until `unique() >= n`.
    pub async fn wait_unique(&self, n: usize, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        while self.unique() < n {
            if Instant::now() > deadline {
                bail!("only {} of {n} notifications arrived", self.unique());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }

    /// Waits until nothing has arrived for `quiet` (what a killed sender had written
    /// may still be routed for a while); fails after `timeout`.
    pub async fn wait_quiet(&self, quiet: Duration, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        let (mut seen, mut since) = (self.total(), Instant::now());
        while since.elapsed() < quiet {
            if Instant::now() > deadline {
                bail!("messages kept arriving for {timeout:?}");
            }
            tokio::time::sleep(LOOK_EVERY).await;
            if self.total() != seen {
                (seen, since) = (self.total(), Instant::now());
            }
        }
        Ok(())
    }

    /// Waits for a message beyond the first `count` and returns when it was seen.
    pub async fn wait_beyond(&self, count: usize, timeout: Duration) -> anyhow::Result<Instant> {
        let deadline = Instant::now() + timeout;
        while self.total() <= count {
            if Instant::now() > deadline {
                bail!("nothing arrived within {timeout:?}");
            }
            tokio::time::sleep(LOOK_EVERY).await;
        }
        Ok(Instant::now())
    }
}

/// Connects the sink component on `slot` and counts every message it is routed into
/// `inbox`, until the stream ends.
pub async fn attach_sink(
    server: &XmppServer,
    slot: &ComponentSlot,
    inbox: Inbox,
) -> anyhow::Result<()> {
    let mut conn = component_handshake(server.component_addr(), slot.jid(), slot.secret()).await?;
    tokio::spawn(async move {
        loop {
            match conn.recv().await {
                Ok(el) => {
                    if el.name() == "message" && el.attr("type") != Some("error") {
                        inbox.record(el.attr("to").unwrap_or(""), el.attr("id").unwrap_or(""));
                    }
                }
                Err(e) => {
                    eprintln!("sink stopped after {} notifications: {e}", inbox.total());
                    return;
                }
            }
        }
    });
    Ok(())
}

/// A sink that records item ids per recipient rather than message ids: for tests
/// where a restarted process may send an item under another job.
#[derive(Clone, Default)]
pub struct ItemSink {
    got: Arc<Mutex<HashMap<String, HashSet<String>>>>,
}

impl ItemSink {
    pub async fn attach(server: &XmppServer, slot: &ComponentSlot) -> anyhow::Result<ItemSink> {
        let sink = ItemSink::default();
        let mut conn =
            component_handshake(server.component_addr(), slot.jid(), slot.secret()).await?;
        let s = sink.clone();
        tokio::spawn(async move {
            loop {
                let el = match conn.recv().await {
                    Ok(el) => el,
                    Err(e) => {
                        eprintln!("sink stopped after {} notifications: {e}", s.pairs());
                        return;
                    }
                };
                if el.name() != "message" {
                    continue;
                }
                let to = el.attr("to").unwrap_or("").to_owned();
                for id in event_item_ids(&el) {
                    if let Ok(mut m) = s.got.lock() {
                        m.entry(to.clone()).or_default().insert(id);
                    }
                }
            }
        });
        Ok(sink)
    }

    pub fn pairs(&self) -> usize {
        self.got
            .lock()
            .map(|m| m.values().map(HashSet::len).sum())
            .unwrap_or(0)
    }

    /// Waits until every one of `recipients` has every item of `ids`.
    pub async fn wait_all(
        &self,
        recipients: &[String],
        ids: &HashSet<String>,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let want = recipients.len() * ids.len();
        let deadline = Instant::now() + timeout;
        loop {
            let missing = {
                let m = self.got.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
                recipients
                    .iter()
                    .map(|r| {
                        ids.iter()
                            .filter(|i| !m.get(r).is_some_and(|s| s.contains(*i)))
                            .count()
                    })
                    .sum::<usize>()
            };
            if missing == 0 {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("{missing} of {want} (subscriber, item) notifications never arrived");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// The ids of the items of an event notification.
pub fn event_item_ids(msg: &Element) -> Vec<String> {
    msg.get_child("event", NS_EVENT)
        .and_then(|e| e.get_child("items", NS_EVENT))
        .map(|items| {
            items
                .children()
                .filter(|c| c.name() == "item")
                .filter_map(|i| i.attr("id").map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}
