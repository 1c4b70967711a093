//! Presence of subscribers, for presence-based delivery and for sending the last item
//! when a subscriber comes online.
//!
//! The router hands every `<presence/>` addressed to the service here. Available
//! resources and their `<show/>` go to the store (shared by every pubsubd process on the
//! database, since ejabberd may give a user's presence to any of them). Users get the
//! service's presence by subscribing to it, or simply send it directed presence; either
//! way their server tells the service when they go offline.
//!
//! Owns: the presence table's contents, answers to presence subscriptions and probes, and
//! the `on_sub_and_presence` last-item jobs. It must not send notifications itself: a
//! last item is queued as a job, behind the node's earlier notifications.

use std::sync::Arc;

use minidom::Element;
use xmpp_parsers::jid::{BareJid, Jid};

use crate::domain::{ItemId, ItemReply, NodeId, NotificationType, ShowValue};
use crate::events::{self, EventItem};
use crate::store::claims::{FanoutStore, LastItem};
use crate::store::jobs::{JobKind, JobTarget, NewJob};
use crate::xmpp::render::escape;
use crate::xmpp::Outbound;

/// Handles presence stanzas; cheap to clone.
#[derive(Clone)]
pub struct Presence {
    store: Arc<dyn FanoutStore>,
    out: Outbound,
    service: BareJid,
}

impl std::fmt::Debug for Presence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Presence")
            .field("service", &self.service)
            .finish_non_exhaustive()
    }
}

/// The `<show/>` of an available presence; none (or an unknown value) is plain online.
fn show_of(el: &Element) -> ShowValue {
    el.children()
        .find(|c| c.name() == "show")
        .and_then(|s| ShowValue::parse(s.text().trim()))
        .unwrap_or(ShowValue::Online)
}

/// A presence stanza from `from` to `to`, of `kind` (`None`: available).
fn presence(from: &str, to: &str, kind: Option<&str>) -> String {
    match kind {
        Some(kind) => format!(
            "<presence from='{}' to='{}' type='{kind}'/>",
            escape(from),
            escape(to)
        ),
        None => format!("<presence from='{}' to='{}'/>", escape(from), escape(to)),
    }
}

/// The job that sends `item` to `full_jid`, which just came online with `show`; `None`
/// if the subscription does not want it (delivery paused, or not in this `<show/>`) or
/// the node sends no notifications.
fn last_item_job(
    item: LastItem,
    full_jid: &str,
    show: ShowValue,
    service: &BareJid,
) -> Option<NewJob> {
    if !item.config.deliver_notifications
        || !item.options.deliver
        || !item.options.show_values.contains(&show)
    {
        return None;
    }
    let node = NodeId::parse(&item.node_name).ok()?;
    let id = ItemId::parse(&item.item_id).ok()?;
    let payload = match (item.config.deliver_payloads, item.payload) {
        (true, Some(xml)) => match crate::xml::parse(&xml) {
            Ok(el) => Some(el),
            Err(e) => {
                tracing::warn!(node = %node, item = %id, error = %e, "stored payload is not XML; sending the item without it");
                None
            }
        },
        _ => None,
    };
    let publisher = match item.config.itemreply {
        ItemReply::Publisher => item.publisher.parse::<Jid>().ok(),
        _ => None,
    };
    let event = EventItem {
        id,
        publisher,
        payload,
    };
    Some(NewJob {
        node_pk: item.node_pk,
        kind: JobKind::Items,
        payload_xml: events::last_published(
            &node,
            event,
            item.published_at,
            &Jid::from(service.clone()),
        ),
        headline: item.config.notification_type == NotificationType::Headline,
        target: JobTarget::Jid(full_jid.to_owned()),
    })
}

impl Presence {
    /// A handler answering as `service`.
    pub fn new(store: Arc<dyn FanoutStore>, out: Outbound, service: BareJid) -> Self {
        Presence {
            store,
            out,
            service,
        }
    }

    /// Handles one `<presence/>` routed to the service. Never fails: problems are
    /// logged, and a store error only means this presence change is not recorded.
    pub async fn handle(&self, el: &Element) {
        let Some(from) = el.attr("from").and_then(|f| f.parse::<Jid>().ok()) else {
            return;
        };
        // Answer from the address the sender used (the service or one of its nodes).
        let us = el
            .attr("to")
            .and_then(|t| t.parse::<Jid>().ok())
            .map_or_else(|| self.service.to_string(), |t| t.to_bare().to_string());
        let bare = from.to_bare().to_string();
        let full = from.to_string();
        let kind = el.attr("type");
        tracing::debug!(%from, kind = kind.unwrap_or("available"), "presence");
        let stored = match kind {
            None => self.available(&full, &bare, show_of(el)).await,
            Some("unavailable") | Some("error") => {
                if from.resource().is_some() {
                    self.store.resource_unavailable(&full).await
                } else {
                    self.store.forget_presence(&bare).await
                }
            }
            Some("subscribe") => {
                // Accept, ask for theirs in return, and show that the service is up.
                self.send(presence(&us, &bare, Some("subscribed"))).await;
                self.send(presence(&us, &bare, Some("subscribe"))).await;
                self.send(presence(&us, &bare, None)).await;
                Ok(())
            }
            Some("unsubscribe") => {
                self.send(presence(&us, &bare, Some("unsubscribed"))).await;
                self.send(presence(&us, &bare, Some("unsubscribe"))).await;
                self.store.forget_presence(&bare).await
            }
            // They no longer share their presence: what we know of it goes stale.
            Some("unsubscribed") => self.store.forget_presence(&bare).await,
            Some("probe") => {
                self.send(presence(&us, &full, None)).await;
                Ok(())
            }
            Some(_) => Ok(()),
        };
        if let Err(e) = stored {
            tracing::warn!(%from, error = %e, "presence not recorded");
        }
    }

    async fn send(&self, stanza: String) {
        if !self.out.send(stanza).await {
            tracing::debug!("shutting down; presence answer not sent");
        }
    }

    /// Records an available resource; if it just came online, queues the last item of
    /// every node that sends it on presence.
    async fn available(
        &self,
        full: &str,
        bare: &str,
        show: ShowValue,
    ) -> Result<(), crate::store::StoreError> {
        if !self.store.resource_available(full, bare, show).await? {
            return Ok(());
        }
        let items = self.store.last_items_on_presence(bare, full).await?;
        let jobs: Vec<NewJob> = items
            .into_iter()
            .filter_map(|item| last_item_job(item, full, show, &self.service))
            .collect();
        if !jobs.is_empty() {
            tracing::debug!(
                jid = full,
                jobs = jobs.len(),
                "queueing last items for a resource that came online"
            );
        }
        self.store.queue_jobs(&jobs).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{NodeConfig, SendLastPublished, SubscribeOptions};

    fn el(xml: &str) -> Element {
        xml.parse().expect("test xml")
    }

    fn item(config: NodeConfig, options: SubscribeOptions) -> LastItem {
        LastItem {
            node_pk: 3,
            node_name: "princely_musings".into(),
            config,
            options,
            item_id: "ae890ac52d0df67ed7cfdf51b644e901".into(),
            publisher: "hamlet@denmark.lit/elsinore".into(),
            payload: Some(
                "<entry xmlns='http://www.w3.org/2005/Atom'><title>Soliloquy</title></entry>"
                    .into(),
            ),
            published_at: chrono::DateTime::parse_from_rfc3339("2003-12-13T18:30:02Z")
                .expect("date")
                .with_timezone(&chrono::Utc),
        }
    }

    fn on_presence() -> NodeConfig {
        NodeConfig {
            send_last_published_item: SendLastPublished::OnSubAndPresence,
            ..NodeConfig::default()
        }
    }

    fn service() -> BareJid {
        "pubsub.shakespeare.lit".parse().expect("jid")
    }

    #[test]
    fn show_defaults_to_online() {
        let ns = "jabber:component:accept";
        assert_eq!(
            show_of(&el(&format!("<presence xmlns='{ns}'/>"))),
            ShowValue::Online
        );
        assert_eq!(
            show_of(&el(&format!(
                "<presence xmlns='{ns}'><show>dnd</show></presence>"
            ))),
            ShowValue::Dnd
        );
        assert_eq!(
            show_of(&el(&format!(
                "<presence xmlns='{ns}'><show>sleepy</show></presence>"
            ))),
            ShowValue::Online
        );
    }

    #[test]
    fn last_item_is_delayed_and_addressed_to_the_resource_that_came_online() {
        let job = last_item_job(
            item(on_presence(), SubscribeOptions::default()),
            "francisco@denmark.lit/barracks",
            ShowValue::Online,
            &service(),
        )
        .expect("a job");
        assert_eq!(
            job.target,
            JobTarget::Jid("francisco@denmark.lit/barracks".into())
        );
        assert!(job.headline);
        let wrapped = el(&format!(
            "<message xmlns='jabber:client'>{}</message>",
            job.payload_xml
        ));
        assert!(wrapped.get_child("delay", "urn:xmpp:delay").is_some());
        let event = wrapped
            .get_child("event", "http://jabber.org/protocol/pubsub#event")
            .expect("event");
        assert!(String::from(event).contains("Soliloquy"));
    }

    #[test]
    fn last_item_respects_paused_delivery_show_values_and_payload_settings() {
        let paused = SubscribeOptions {
            deliver: false,
            ..SubscribeOptions::default()
        };
        assert!(last_item_job(
            item(on_presence(), paused),
            "f@d/b",
            ShowValue::Online,
            &service()
        )
        .is_none());
        let only_chat = SubscribeOptions {
            deliver: true,
            show_values: [ShowValue::Chat].into_iter().collect(),
            ..SubscribeOptions::default()
        };
        assert!(last_item_job(
            item(on_presence(), only_chat),
            "f@d/b",
            ShowValue::Away,
            &service()
        )
        .is_none());
        let no_payloads = NodeConfig {
            deliver_payloads: false,
            ..on_presence()
        };
        let job = last_item_job(
            item(no_payloads, SubscribeOptions::default()),
            "f@d/b",
            ShowValue::Online,
            &service(),
        )
        .expect("a job");
        assert!(!job.payload_xml.contains("Soliloquy"));
    }

    #[test]
    fn presence_answers_are_escaped() {
        assert_eq!(
            presence("ps.x", "o'b@x", Some("subscribed")),
            "<presence from='ps.x' to='o&apos;b@x' type='subscribed'/>"
        );
        assert_eq!(
            presence("ps.x", "a@x", None),
            "<presence from='ps.x' to='a@x'/>"
        );
    }
}
