//! Publisher and subscriber use cases on items: publish (§7.1), retract (§7.2),
//! retrieve (§6.5), and the items of a node in disco (§5.5).

use minidom::Element;
use xmpp_parsers::data_forms::DataForm;
use xmpp_parsers::jid::BareJid;

use super::{context, internal, nodes::gone, notify, Pubsub, Requester};
use crate::domain::collection::check_holds_items;
use crate::domain::{
    check_create, check_publish, check_retract, check_retrieve_items, DomainError, ItemAuthor,
    ItemId, NodeConfig, NodeId, SubId, MAX_RSM_INDEX,
};
use crate::store::{BatchedPublish, ItemsPage, ItemsQuery, NewItem, NodeAccess, NodeRecord};

/// An item as a publisher sent it.
#[derive(Debug, Clone)]
pub struct Publication {
    /// `None` when the publisher leaves the id to the service.
    pub id: Option<ItemId>,
    /// The single payload element, if any.
    pub payload: Option<Element>,
}

/// What a publish did.
#[derive(Debug, Clone)]
pub struct Published {
    pub node: NodeId,
    /// The item id (generated if the publisher gave none); `None` for a publish to a
    /// notification-only transient node.
    pub id: Option<ItemId>,
    /// The node was created by this publish (§7.1.4).
    pub created: bool,
}

/// A publish checked and ready for the store.
struct Prepared {
    node_pk: i64,
    item: Option<NewItem>,
    keep: u32,
    jobs: Vec<crate::store::jobs::NewJob>,
    published: Published,
}

/// Items read from a node, with the node's configuration for the reply.
#[derive(Debug, Clone)]
pub struct Retrieved {
    pub node: NodeRecord,
    pub page: ItemsPage,
}

impl Pubsub {
    /// Publishes an item (§7.1), creating the node first when auto-create is on and it
    /// does not exist (§7.1.4), with publish-options preconditions (§7.1.5).
    pub async fn publish(
        &self,
        req: &Requester,
        node: &NodeId,
        item: Option<Publication>,
        options: Option<&DataForm>,
    ) -> Result<Published, DomainError> {
        let (record, created) = match self
            .store
            .node_access(node, &req.bare)
            .await
            .map_err(internal)?
        {
            Some(access) => {
                check_publish(&context(req, &access, None))?;
                check_holds_items(&access.node.config, "publish")?;
                if let Some(form) = options {
                    access
                        .node
                        .config
                        .check_publish_options(form, &self.policy.limits)?;
                }
                (access.node, false)
            }
            None if self.policy.auto_create => {
                check_create(&req.bare, &self.policy.create, &self.policy.admins)?;
                let config = match options {
                    Some(form) => self
                        .policy
                        .default_config
                        .clone()
                        .with_publish_options(form, &self.policy.limits)?,
                    None => self.policy.default_config.clone(),
                };
                self.check_roster_model(req, &config)?;
                match self
                    .insert_node(req, Some(node.clone()), &config, &Default::default())
                    .await
                {
                    Ok(n) => {
                        self.join_root(&n).await?;
                        (n, true)
                    }
                    // Someone else created it meanwhile: publish to theirs, with their rules.
                    Err(DomainError::NodeExists) => {
                        return Box::pin(self.publish(req, node, item, options)).await
                    }
                    Err(e) => return Err(e),
                }
            }
            None => return Err(DomainError::NodeNotFound),
        };
        let prepared = self.prepare(req, record, item, created)?;
        self.commit_one(prepared).await
    }

    /// Applies the payload rules to a publish the requester may make, and builds what
    /// the store keeps and queues for it.
    fn prepare(
        &self,
        req: &Requester,
        record: NodeRecord,
        item: Option<Publication>,
        created: bool,
    ) -> Result<Prepared, DomainError> {
        let config = &record.config;
        let item = check_item(config, item)?;
        let id = item
            .as_ref()
            .map(|i| i.id.clone().unwrap_or_else(ItemId::generate));
        let payload_text = item
            .as_ref()
            .and_then(|i| i.payload.as_ref())
            .map(String::from);
        if let Some(text) = &payload_text {
            let limit = config
                .max_payload_size
                .min(self.policy.limits.max_payload_size);
            if text.len() > limit as usize {
                return Err(DomainError::PayloadTooBig);
            }
        }
        let jobs = match &id {
            Some(id) => notify::published(&record, id, &req.jid, item.and_then(|i| i.payload)),
            None => notify::published(&record, &ItemId::generate(), &req.jid, None),
        };
        let stored = match (&id, config.persist_items) {
            (Some(id), true) => Some(NewItem {
                id: id.clone(),
                publisher: req.jid.to_string(),
                payload: payload_text,
            }),
            _ => None,
        };
        Ok(Prepared {
            node_pk: record.pk,
            item: stored,
            keep: config.max_items.effective(&self.policy.limits),
            jobs,
            published: Published {
                node: record.name,
                id,
                created,
            },
        })
    }

    /// Publishes several items, in order, as if one after the other, with as few
    /// database round trips as possible: the common publishes (an existing node, no
    /// publish-options, one notification job) of the run are checked one by one and
    /// committed together ([`crate::store::ItemStore::publish_batch`]); any other
    /// publish commits what came before it and then runs on its own. A request
    /// lane hands over the publishes that queued up while it was busy.
    pub async fn publish_many(
        &self,
        reqs: Vec<(Requester, NodeId, Option<Publication>)>,
    ) -> Vec<Result<Published, DomainError>> {
        let mut results: Vec<Option<Result<Published, DomainError>>> =
            (0..reqs.len()).map(|_| None).collect();
        let mut batch: Vec<(usize, Prepared)> = Vec::new();
        let mut accesses = self.accesses_of(&reqs).await;
        for (n, (req, node, item)) in reqs.into_iter().enumerate() {
            let cached = accesses
                .iter()
                .find(|(name, bare, _)| *name == node && *bare == req.bare)
                .map(|(_, _, a)| a.clone());
            let access = match cached {
                Some(a) => a,
                None => match self.store.node_access(&node, &req.bare).await {
                    Ok(a) => {
                        accesses.push((node.clone(), req.bare.clone(), a.clone()));
                        a
                    }
                    Err(e) => {
                        results[n] = Some(Err(internal(e)));
                        continue;
                    }
                },
            };
            let Some(access) = access else {
                // Auto-creation (or not-found): on its own, after what came before; what
                // was read before may have changed.
                self.commit_batch(&mut batch, &mut results).await;
                results[n] = Some(self.publish(&req, &node, item, None).await);
                accesses.clear();
                continue;
            };
            if let Err(e) = check_publish(&context(&req, &access, None))
                .and_then(|()| check_holds_items(&access.node.config, "publish"))
            {
                results[n] = Some(Err(e));
                continue;
            }
            let prepared = match self.prepare(&req, access.node, item, false) {
                Ok(p) => p,
                Err(e) => {
                    results[n] = Some(Err(e));
                    continue;
                }
            };
            let batchable =
                prepared.item.is_some() && prepared.jobs.len() == 1 && prepared.keep > 0;
            let repeats = batch.iter().any(|(_, b)| {
                b.node_pk == prepared.node_pk
                    && b.item.as_ref().map(|i| &i.id) == prepared.item.as_ref().map(|i| &i.id)
            });
            if !batchable || repeats {
                self.commit_batch(&mut batch, &mut results).await;
            }
            if batchable {
                batch.push((n, prepared));
            } else {
                results[n] = Some(self.commit_one(prepared).await);
            }
        }
        self.commit_batch(&mut batch, &mut results).await;
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(DomainError::internal("publish not run"))))
            .collect()
    }

    /// The node and standing of each requester with each node of `reqs`, one read per
    /// requester (a lane's run is usually one). A failed read leaves the run to read
    /// node by node.
    async fn accesses_of(
        &self,
        reqs: &[(Requester, NodeId, Option<Publication>)],
    ) -> Vec<(NodeId, BareJid, Option<NodeAccess>)> {
        let mut found = Vec::new();
        let mut requesters: Vec<&BareJid> = reqs.iter().map(|(r, _, _)| &r.bare).collect();
        requesters.sort_unstable_by(|a, b| a.as_str().cmp(b.as_str()));
        requesters.dedup();
        for bare in requesters {
            let mut names: Vec<NodeId> = Vec::new();
            for (_, node, _) in reqs.iter().filter(|(r, _, _)| r.bare == *bare) {
                if !names.contains(node) {
                    names.push(node.clone());
                }
            }
            match self.store.node_accesses(&names, bare).await {
                Ok(accesses) => found.extend(
                    names
                        .into_iter()
                        .zip(accesses)
                        .map(|(name, access)| (name, bare.clone(), access)),
                ),
                Err(e) => tracing::warn!(error = %e, "cannot read the nodes of a run of publishes"),
            }
        }
        found
    }

    /// Stores one checked publish with its fan-out jobs, in one transaction.
    async fn commit_one(&self, prepared: Prepared) -> Result<Published, DomainError> {
        self.store
            .publish(
                prepared.node_pk,
                prepared.item,
                prepared.keep,
                prepared.jobs,
            )
            .await
            .map_err(internal)?
            .map_err(gone)?;
        metrics::counter!(crate::metrics::PUBLISHES).increment(1);
        Ok(prepared.published)
    }

    /// Commits the collected publishes in one go and records their outcome.
    async fn commit_batch(
        &self,
        batch: &mut Vec<(usize, Prepared)>,
        results: &mut [Option<Result<Published, DomainError>>],
    ) {
        if batch.is_empty() {
            return;
        }
        let entries: Vec<BatchedPublish> = batch
            .iter()
            .filter_map(|(_, p)| {
                Some(BatchedPublish {
                    node_pk: p.node_pk,
                    item: p.item.clone()?,
                    keep: p.keep,
                    job: p.jobs.first()?.clone(),
                })
            })
            .collect();
        let outcome = self.store.publish_batch(&entries).await;
        for (n, p) in batch.drain(..) {
            results[n] = Some(match &outcome {
                Ok(()) => {
                    metrics::counter!(crate::metrics::PUBLISHES).increment(1);
                    Ok(p.published)
                }
                Err(e) => {
                    tracing::error!(error = %e, "batched publish failed");
                    Err(DomainError::Internal {
                        kind: e.kind(),
                        details: e.to_string(),
                    })
                }
            });
        }
    }

    /// Retracts items (§7.2); subscribers are told when the node notifies retractions
    /// or the publisher asked with `notify='true'`.
    pub async fn retract(
        &self,
        req: &Requester,
        node: &NodeId,
        ids: &[ItemId],
        notify_asked: bool,
    ) -> Result<(), DomainError> {
        if ids.is_empty() {
            return Err(DomainError::ItemRequired);
        }
        let access = self.access(req, node).await?;
        if !access.node.config.persist_items {
            return Err(DomainError::UnsupportedFeature("persistent-items"));
        }
        let ctx = context(req, &access, None);
        let mut any = false;
        for id in ids {
            let Some(publisher) = self
                .store
                .item_publisher(access.node.pk, id)
                .await
                .map_err(internal)?
            else {
                continue;
            };
            any = true;
            let author = match publisher.parse::<xmpp_parsers::jid::Jid>() {
                Ok(j) if j.to_bare() == req.bare => ItemAuthor::Requester,
                _ => ItemAuthor::Other,
            };
            check_retract(&ctx, author)?;
        }
        if !any {
            return Err(DomainError::ItemNotFound);
        }
        let jobs = notify::retracted(&access.node, ids, notify_asked);
        self.store
            .retract(access.node.pk, ids, jobs)
            .await
            .map_err(internal)?;
        Ok(())
    }

    /// The node, if `req` may read its items and it holds them: what every way of
    /// reading a node's items asks (retrieval, §6.5; the archive; following over HTTP).
    /// A requester who may not read gets the permission table's error. A collection
    /// holds no items: XEP-0248 §5.2 lets a service refuse retrieval through it, with
    /// `feature-not-implemented`, here with XEP-0060 §6.5.9.5's `unsupported`
    /// `retrieve-items`. A node that keeps none is `unsupported` `persistent-items`
    /// (§6.5.9.4).
    pub(crate) async fn readable(
        &self,
        req: &Requester,
        node: &NodeId,
    ) -> Result<NodeAccess, DomainError> {
        let access = self.access(req, node).await?;
        self.roster_context(req, &access, None)
            .await?
            .check(check_retrieve_items)?;
        check_holds_items(&access.node.config, "retrieve-items")?;
        if !access.node.config.persist_items {
            return Err(DomainError::UnsupportedFeature("persistent-items"));
        }
        Ok(access)
    }

    /// Retrieves items (§6.5), newest first.
    pub async fn items(
        &self,
        req: &Requester,
        node: &NodeId,
        query: ItemsQuery,
        subid: Option<&SubId>,
    ) -> Result<Retrieved, DomainError> {
        let access = self.readable(req, node).await?;
        // XEP-0059 §2.6: a jump this deep is not served (it would walk the node).
        if let ItemsQuery::Page {
            index: Some(index), ..
        } = &query
        {
            if *index > MAX_RSM_INDEX {
                return Err(DomainError::NotImplemented(format!(
                    "an RSM index deeper than {MAX_RSM_INDEX} items; page by item id instead"
                )));
            }
        }
        if let Some(subid) = subid {
            if !access.subscriptions.iter().any(|s| s.subid == *subid) {
                return Err(DomainError::InvalidSubId);
            }
        }
        let page = self
            .store
            .items(access.node.pk, &query)
            .await
            .map_err(internal)?;
        if page.anchor_missing {
            return Err(DomainError::ItemNotFound);
        }
        let page = fit_to_budget(page, &query, RESULT_PAYLOAD_BUDGET);
        Ok(Retrieved {
            node: access.node,
            page,
        })
    }
}

/// Most payload bytes one retrieval answers with; the rest of the items are left to the
/// next RSM page (§6.5.7: the service may return fewer items, with a `<set/>` saying
/// so). Half of the smallest component stanza limit among the servers pubsubd attaches
/// to (Prosody: 512 KiB), so an answer never exceeds what the server takes from pubsubd:
/// a server closes a component stream that sends a larger stanza.
pub const RESULT_PAYLOAD_BUDGET: usize = 256 * 1024;

/// `page` cut to the items whose payloads fit in `budget` bytes, and at least one. A
/// page asked for `before` an item keeps the items next to that item (its end, since
/// pages are newest first); any other keeps its beginning.
fn fit_to_budget(mut page: ItemsPage, query: &ItemsQuery, budget: usize) -> ItemsPage {
    let size = |i: &crate::store::ItemRecord| i.payload.as_ref().map_or(0, String::len);
    let backwards = matches!(
        query,
        ItemsQuery::Page {
            before: Some(_),
            ..
        }
    );
    let mut total = 0;
    let fits = |i: &crate::store::ItemRecord, total: &mut usize| {
        *total += size(i);
        *total <= budget
    };
    let keep = if backwards {
        page.items
            .iter()
            .rev()
            .take_while(|i| fits(i, &mut total))
            .count()
    } else {
        page.items
            .iter()
            .take_while(|i| fits(i, &mut total))
            .count()
    }
    .max(1)
    .min(page.items.len());
    let dropped = page.items.len() - keep;
    if dropped > 0 {
        if backwards {
            page.items.drain(..dropped);
            page.first_index = page.first_index.map(|f| f + dropped as u64);
        } else {
            page.items.truncate(keep);
        }
    }
    page
}

/// Applies the payload rules of §7.1.3.6 to what the publisher sent; returns the item
/// to store and notify (`None` on a notification-only transient node).
fn check_item(
    config: &NodeConfig,
    item: Option<Publication>,
) -> Result<Option<Publication>, DomainError> {
    let notification_only = !config.persist_items && !config.deliver_payloads;
    match item {
        None if notification_only => Ok(None),
        None => Err(DomainError::ItemRequired),
        Some(i) if notification_only && i.payload.is_some() => Err(DomainError::ItemForbidden),
        Some(i) if config.deliver_payloads && i.payload.is_none() => {
            Err(DomainError::PayloadRequired)
        }
        Some(i) => Ok(Some(i)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publication(payload: bool) -> Publication {
        Publication {
            id: None,
            payload: payload.then(|| {
                "<entry xmlns='http://www.w3.org/2005/Atom'/>"
                    .parse()
                    .unwrap()
            }),
        }
    }

    fn page_of(sizes: &[usize]) -> ItemsPage {
        ItemsPage {
            items: sizes
                .iter()
                .enumerate()
                .map(|(n, size)| crate::store::ItemRecord {
                    id: ItemId::parse(&format!("i{n}")).expect("id"),
                    publisher: "a@b".into(),
                    payload: Some("x".repeat(*size)),
                    published_at: chrono::Utc::now(),
                })
                .collect(),
            count: 100,
            first_index: Some(10),
            anchor_missing: false,
        }
    }

    fn ids(page: &ItemsPage) -> Vec<&str> {
        page.items.iter().map(|i| i.id.as_str()).collect()
    }

    #[test]
    fn a_page_over_the_budget_keeps_what_fits_from_the_right_end() {
        let latest = ItemsQuery::Latest { max: None };
        let page = fit_to_budget(page_of(&[40, 40, 40, 40]), &latest, 100);
        assert_eq!(ids(&page), ["i0", "i1"]);
        assert_eq!(page.first_index, Some(10));
        let before = ItemsQuery::Page {
            max: 4,
            after: None,
            before: Some("i9".into()),
            index: None,
        };
        let page = fit_to_budget(page_of(&[40, 40, 40, 40]), &before, 100);
        assert_eq!(ids(&page), ["i2", "i3"], "the items next to the anchor");
        assert_eq!(page.first_index, Some(12));
        let page = fit_to_budget(page_of(&[500, 40]), &latest, 100);
        assert_eq!(ids(&page), ["i0"], "at least one item, however large");
        let page = fit_to_budget(page_of(&[10, 10]), &latest, 100);
        assert_eq!(
            ids(&page),
            ["i0", "i1"],
            "a page within the budget is whole"
        );
        let page = fit_to_budget(page_of(&[]), &latest, 100);
        assert!(page.items.is_empty());
    }

    #[test]
    fn persistent_node_requires_an_item_and_a_payload() {
        let config = NodeConfig::default();
        assert_eq!(
            check_item(&config, None).unwrap_err(),
            DomainError::ItemRequired
        );
        assert_eq!(
            check_item(&config, Some(publication(false))).unwrap_err(),
            DomainError::PayloadRequired
        );
        assert!(check_item(&config, Some(publication(true))).is_ok());
    }

    #[test]
    fn notification_only_transient_node_forbids_payloads() {
        let config = NodeConfig {
            persist_items: false,
            deliver_payloads: false,
            ..NodeConfig::default()
        };
        assert!(check_item(&config, None).unwrap().is_none());
        assert_eq!(
            check_item(&config, Some(publication(true))).unwrap_err(),
            DomainError::ItemForbidden
        );
    }
}
