//! Reading a pubsub IQ (`…/pubsub` or `…/pubsub#owner`) into a [`Command`].
//!
//! xmpp-parsers models most requests; [`super::request`] covers what it keeps private
//! or rejects too coarsely, and the checks whose failure has its own XEP-0060 error
//! (`nodeid-required`, `jid-required`, `invalid-payload`) run on the raw element first.

use minidom::Element;
use xmpp_parsers::data_forms::DataFormType;
use xmpp_parsers::ns;
use xmpp_parsers::pubsub::owner::{Owner, Payload};
use xmpp_parsers::pubsub::pubsub::{PubSub, Publish};
use xmpp_parsers::rsm::SetQuery;

use super::command::Command;
use super::request;
use crate::domain::{Affiliation, DomainError, ItemId, NodeId, SubId, SubscriptionState};
use crate::domain::{AffiliationChange, ItemsQuery};
use crate::events::state_str;
use crate::protocol::stanza::{IqKind, IqRequest};
use crate::pubsub::items::Publication;
use crate::pubsub::owner::SubscriptionChange;

/// Most items in one retrieval without an explicit limit: a node keeping 10,000 Atom
/// entries must not produce a 20 MB stanza. Clients page with XEP-0059 beyond it.
pub const MAX_ITEMS_PER_RESULT: u32 = 200;

fn expect(req: &IqRequest, kind: IqKind, what: &str) -> Result<(), DomainError> {
    if req.kind == kind {
        return Ok(());
    }
    let want = match kind {
        IqKind::Get => "get",
        IqKind::Set => "set",
    };
    Err(DomainError::BadRequest(format!(
        "{what} must be an iq of type {want}"
    )))
}

fn node_name(n: &xmpp_parsers::pubsub::NodeName) -> Result<NodeId, DomainError> {
    NodeId::parse(&n.0)
}

fn subid(s: Option<xmpp_parsers::pubsub::SubscriptionId>) -> Result<Option<SubId>, DomainError> {
    s.map(|s| SubId::parse(&s.0)).transpose()
}

/// Reads a request in the `pubsub` namespace.
pub fn pubsub(req: &IqRequest) -> Result<Command, DomainError> {
    let el = &req.payload;
    if !el.attrs().is_empty() {
        return Err(DomainError::BadRequest(
            "<pubsub/> takes no attributes".into(),
        ));
    }
    request::no_duplicate_children(el)?;
    let verb =
        request::verb(el).ok_or_else(|| DomainError::BadRequest("empty <pubsub/>".into()))?;
    // What xmpp-parsers keeps private, and the checks with their own errors.
    match verb.name() {
        "unsubscribe" => {
            expect(req, IqKind::Set, "unsubscribe")?;
            return Ok(Command::Unsubscribe {
                node: request::node(verb)?,
                jid: request::jid(verb)?,
                subid: request::subid(verb)?,
            });
        }
        "subscriptions" => {
            expect(req, IqKind::Get, "subscriptions")?;
            return Ok(Command::OwnSubscriptions {
                node: request::optional_node(verb)?,
            });
        }
        "affiliations" => {
            expect(req, IqKind::Get, "affiliations")?;
            return Ok(Command::OwnAffiliations {
                node: request::optional_node(verb)?,
            });
        }
        "retract" | "items" => {
            request::node(verb)?;
        }
        "subscribe" | "options" => {
            request::node(verb)?;
            request::jid(verb)?;
        }
        "publish" => {
            request::node(verb)?;
            check_publish_items(verb)?;
        }
        _ => {}
    }
    let (rest, rsm) = request::take_rsm(el)?;
    let rest = request::options_inherit_jid(rest);
    let parsed = PubSub::try_from(rest)
        .map_err(|e| DomainError::BadRequest(format!("malformed pubsub request: {e}")))?;
    match parsed {
        PubSub::Create { create, configure } => {
            expect(req, IqKind::Set, "create")?;
            Ok(Command::Create {
                node: create.node.as_ref().map(node_name).transpose()?,
                form: configure.and_then(|c| c.form),
            })
        }
        PubSub::Publish {
            publish,
            publish_options,
        } => {
            expect(req, IqKind::Set, "publish")?;
            let (node, item) = publication(publish)?;
            Ok(Command::Publish {
                node,
                item,
                options: publish_options.and_then(|p| p.form),
            })
        }
        PubSub::Retract(retract) => {
            expect(req, IqKind::Set, "retract")?;
            let ids = retract
                .items
                .into_iter()
                .map(|i| {
                    i.id.ok_or(DomainError::ItemRequired)
                        .and_then(|id| ItemId::parse(&id.0))
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Command::Retract {
                node: node_name(&retract.node)?,
                ids,
                notify: retract.notify,
            })
        }
        PubSub::Items(items) => {
            expect(req, IqKind::Get, "items")?;
            let ids = items
                .items
                .into_iter()
                .map(|i| {
                    i.id.ok_or_else(|| DomainError::BadRequest("<item/> without id".into()))
                        .and_then(|id| ItemId::parse(&id.0))
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Command::Items {
                node: node_name(&items.node)?,
                query: items_query(ids, items.max_items, rsm.as_ref()),
                subid: subid(items.subid)?,
                paged: rsm.is_some(),
            })
        }
        PubSub::Subscribe { subscribe, options } => match (subscribe, options) {
            (Some(sub), options) => {
                expect(req, IqKind::Set, "subscribe")?;
                if options.as_ref().is_some_and(|o| o.jid != sub.jid) {
                    return Err(DomainError::InvalidJid);
                }
                Ok(Command::Subscribe {
                    node: sub
                        .node
                        .as_ref()
                        .ok_or(DomainError::NodeIdRequired)
                        .and_then(node_name)?,
                    jid: sub.jid,
                    options: options.and_then(|o| o.form),
                })
            }
            (None, Some(options)) => {
                let node = options
                    .node
                    .as_ref()
                    .ok_or(DomainError::NodeIdRequired)
                    .and_then(node_name)?;
                let subid = subid(options.subid)?;
                match (req.kind, options.form) {
                    (IqKind::Get, _) => Ok(Command::GetOptions {
                        node,
                        jid: options.jid,
                        subid,
                    }),
                    (IqKind::Set, Some(form)) => Ok(Command::SetOptions {
                        node,
                        jid: options.jid,
                        subid,
                        form,
                    }),
                    (IqKind::Set, None) => Err(DomainError::InvalidOptions(
                        "no options form submitted".into(),
                    )),
                }
            }
            (None, None) => Err(DomainError::BadRequest("empty subscribe request".into())),
        },
        PubSub::Default(default) => {
            expect(req, IqKind::Get, "default")?;
            Ok(Command::DefaultOptions {
                node: default.node.as_ref().map(node_name).transpose()?,
            })
        }
        PubSub::Affiliations(_)
        | PubSub::Subscription(_)
        | PubSub::Subscriptions(_)
        | PubSub::Unsubscribe(_) => Err(DomainError::BadRequest(
            "not a request in the pubsub namespace".into(),
        )),
    }
}

/// Reads a request in the `pubsub#owner` namespace.
pub fn owner(req: &IqRequest) -> Result<Command, DomainError> {
    let el = &req.payload;
    request::no_duplicate_children(el)?;
    let verb =
        request::verb(el).ok_or_else(|| DomainError::BadRequest("empty <pubsub/>".into()))?;
    match verb.name() {
        // xmpp-parsers keeps the owner <affiliation/> fields private: read them here.
        "affiliations" => {
            let node = request::node(verb)?;
            return Ok(match req.kind {
                IqKind::Get => Command::NodeAffiliations { node },
                IqKind::Set => Command::ModifyAffiliations {
                    node,
                    changes: affiliation_changes(verb)?,
                },
            });
        }
        // XEP-0248 §6.4 and §6.5, which xmpp-parsers does not model.
        "collection" => {
            expect(req, IqKind::Set, "collection")?;
            let collection = request::node(verb)?;
            let mut children = verb.children();
            let (Some(link), None) = (children.next(), children.next()) else {
                return Err(DomainError::BadRequest(
                    "<collection/> needs one <associate/> or <dissociate/>".into(),
                ));
            };
            let child = request::node(link)?;
            return match (link.name(), link.ns() == ns::PUBSUB_OWNER) {
                ("associate", true) => Ok(Command::Associate { collection, child }),
                ("dissociate", true) => Ok(Command::Dissociate { collection, child }),
                _ => Err(DomainError::BadRequest(format!(
                    "unknown <collection/> request <{}/>",
                    link.name()
                ))),
            };
        }
        // §8.2.3.3 and friends: the request must name the node.
        "delete" | "purge" | "subscriptions" | "configure" => {
            request::node(verb)?;
        }
        _ => {}
    }
    let parsed = Owner::try_from(el.clone())
        .map_err(|e| DomainError::BadRequest(format!("malformed owner request: {e}")))?;
    match parsed.payload {
        Payload::Configure { node, form } => {
            let node = node
                .as_ref()
                .ok_or(DomainError::NodeIdRequired)
                .and_then(node_name)?;
            match (req.kind, form) {
                (IqKind::Get, _) => Ok(Command::GetConfig { node }),
                (IqKind::Set, Some(form)) if form.type_ == DataFormType::Cancel => {
                    Ok(Command::CancelConfigure { node })
                }
                (IqKind::Set, Some(form)) => Ok(Command::Configure { node, form }),
                (IqKind::Set, None) => Err(DomainError::BadRequest(
                    "configure without a data form".into(),
                )),
            }
        }
        Payload::Default { .. } => {
            expect(req, IqKind::Get, "default")?;
            Ok(Command::DefaultConfig)
        }
        Payload::Delete { node, redirect_uri } => {
            expect(req, IqKind::Set, "delete")?;
            Ok(Command::Delete {
                node: node_name(&node)?,
                redirect: redirect_uri,
            })
        }
        Payload::Purge { node } => {
            expect(req, IqKind::Set, "purge")?;
            Ok(Command::Purge {
                node: node_name(&node)?,
            })
        }
        Payload::Subscriptions {
            node,
            subscriptions,
        } => {
            let node = node_name(&node)?;
            match req.kind {
                IqKind::Get => Ok(Command::NodeSubscriptions { node }),
                IqKind::Set => {
                    let changes = subscriptions
                        .into_iter()
                        .map(|s| {
                            Ok(SubscriptionChange {
                                state: SubscriptionState::parse(state_str(&s.subscription))?,
                                subid: s.subid.map(|id| SubId::parse(&id)).transpose()?,
                                jid: s.jid,
                            })
                        })
                        .collect::<Result<Vec<_>, DomainError>>()?;
                    Ok(Command::ModifySubscriptions { node, changes })
                }
            }
        }
        Payload::Affiliations { .. } => {
            Err(DomainError::BadRequest("unexpected affiliations".into()))
        }
    }
}

/// Refuses a publish with several items or an item with several payloads (§7.1.3.5).
fn check_publish_items(publish: &Element) -> Result<(), DomainError> {
    let items: Vec<&Element> = publish.children().collect();
    if items.len() > 1 {
        return Err(DomainError::BadRequest(
            "publish one item per request".into(),
        ));
    }
    if items
        .first()
        .is_some_and(|item| item.children().count() > 1)
    {
        return Err(DomainError::InvalidPayload);
    }
    Ok(())
}

fn publication(publish: Publish) -> Result<(NodeId, Option<Publication>), DomainError> {
    let node = node_name(&publish.node)?;
    let item = match publish.items.into_iter().next() {
        None => None,
        Some(item) => Some(Publication {
            id: item.id.map(|id| ItemId::parse(&id.0)).transpose()?,
            payload: item.payload,
        }),
    };
    Ok((node, item))
}

fn items_query(ids: Vec<ItemId>, max_items: Option<u32>, rsm: Option<&SetQuery>) -> ItemsQuery {
    if !ids.is_empty() {
        return ItemsQuery::Ids(ids);
    }
    let cap = |n: usize| {
        u32::try_from(n)
            .unwrap_or(u32::MAX)
            .min(MAX_ITEMS_PER_RESULT)
    };
    match rsm {
        Some(set) => ItemsQuery::Page {
            max: set.max.map_or(MAX_ITEMS_PER_RESULT, cap),
            after: set.after.clone(),
            before: set.before.clone(),
            index: set.index.map(|i| u32::try_from(i).unwrap_or(u32::MAX)),
        },
        None => ItemsQuery::Latest {
            max: Some(
                max_items
                    .unwrap_or(MAX_ITEMS_PER_RESULT)
                    .min(MAX_ITEMS_PER_RESULT),
            ),
        },
    }
}

fn affiliation_changes(list: &Element) -> Result<Vec<AffiliationChange>, DomainError> {
    let mut changes: Vec<AffiliationChange> = Vec::new();
    for child in list.children() {
        if !child.is("affiliation", ns::PUBSUB_OWNER) {
            return Err(DomainError::BadRequest(format!(
                "unexpected <{}/> in <affiliations/>",
                child.name()
            )));
        }
        let jid = request::jid(child)?.to_bare();
        let affiliation = Affiliation::parse(
            child
                .attr("affiliation")
                .ok_or_else(|| DomainError::BadRequest("affiliation missing".into()))?,
        )?;
        if changes.iter().any(|c| c.jid == jid) {
            return Err(DomainError::BadRequest(format!("{jid} appears twice")));
        }
        changes.push(AffiliationChange { jid, affiliation });
    }
    Ok(changes)
}
