//! XEP-0030 service discovery of the service itself and of its nodes (XEP-0060 §5).

use minidom::Element;
use xmpp_parsers::disco::{
    DiscoInfoQuery, DiscoInfoResult, DiscoItemsQuery, DiscoItemsResult, Identity, Item,
};
use xmpp_parsers::jid::Jid;
use xmpp_parsers::ns;
use xmpp_parsers::rsm::{First, SetResult};

use super::stanza::{IqKind, IqRequest};
use super::xep0060::{finish, Answer};
use super::{features, Service};
use crate::domain::ItemsQuery;
use crate::domain::{DomainError, NodeFacts, NodeId, NodeType};

/// Most nodes listed in one disco#items page when the client does not ask for fewer:
/// a service with a million nodes must not answer with one huge stanza.
const MAX_ITEMS_PAGE: usize = 500;

/// Answers disco#info on the service, or on a node with `node` (§5.3, §5.4).
pub async fn info(svc: &Service, req: &IqRequest) -> String {
    finish(req, info_answer(svc, req).await)
}

async fn info_answer(svc: &Service, req: &IqRequest) -> Answer {
    let query = match (req.kind, DiscoInfoQuery::try_from(req.payload.clone())) {
        (IqKind::Get, Ok(q)) => q,
        _ => return Err(DomainError::BadRequest("malformed disco#info query".into())),
    };
    let Some(node) = query.node else {
        let result = DiscoInfoResult {
            node: None,
            identities: vec![Identity::new("pubsub", "service", "en", "pubsubd")],
            features: features::all(svc.pubsub.rosters.readable(req.from.domain().as_str()))
                .collect(),
            extensions: vec![],
        };
        return Ok(Some(result.into()));
    };
    let name = NodeId::parse(&node).map_err(|_| DomainError::NodeNotFound)?;
    let who = svc.pubsub.requester(req.from.clone());
    let info = svc.pubsub.node_info(&who, &name).await?;
    let facts = NodeFacts {
        creator: info.node.creator.as_ref(),
        created_at: info.node.created_at,
        owners: &info.owners,
        publishers: &info.publishers,
        num_subscribers: info.subscribers,
    };
    let mut form = info.node.config.meta_data_form(&facts);
    form.fields
        .push(xmpp_parsers::data_forms::Field::text_single(
            "pubsub#num_items",
            &info.items.to_string(),
        ));
    let result = DiscoInfoResult {
        node: Some(node),
        identities: vec![Identity::new_anonymous::<_, _, String, String>(
            "pubsub",
            info.node.config.node_type.as_str(),
        )],
        features: [ns::DISCO_INFO, ns::DISCO_ITEMS, ns::PUBSUB]
            .into_iter()
            .chain(
                info.node
                    .config
                    .persist_items
                    .then_some([features::ARCHIVE, features::ARCHIVE_EXTENDED])
                    .into_iter()
                    .flatten(),
            )
            .map(str::to_owned)
            .collect(),
        extensions: vec![form],
    };
    Ok(Some(result.into()))
}

/// Answers disco#items: the service's nodes (paged with XEP-0059 when large), or the
/// item ids of a node (§5.5).
pub async fn items(svc: &Service, req: &IqRequest) -> String {
    finish(req, items_answer(svc, req).await)
}

async fn items_answer(svc: &Service, req: &IqRequest) -> Answer {
    let query = match (req.kind, DiscoItemsQuery::try_from(req.payload.clone())) {
        (IqKind::Get, Ok(q)) => q,
        _ => {
            return Err(DomainError::BadRequest(
                "malformed disco#items query".into(),
            ))
        }
    };
    let max = query
        .rsm
        .as_ref()
        .and_then(|r| r.max)
        .unwrap_or(MAX_ITEMS_PAGE)
        .min(MAX_ITEMS_PAGE);
    let who = svc.pubsub.requester(req.from.clone());
    let service_jid = Jid::from(svc.jid.clone());
    if let Some(node) = &query.node {
        let name = NodeId::parse(node).map_err(|_| DomainError::NodeNotFound)?;
        let (found, links) = svc.pubsub.node_links(&who, &name).await?;
        if found.config.node_type == NodeType::Collection {
            // XEP-0248 §4.2: a collection's items are its children.
            let result = DiscoItemsResult {
                node: Some(node.clone()),
                items: links
                    .children
                    .into_iter()
                    .map(|child| Item {
                        jid: service_jid.clone(),
                        node: Some(child.as_str().to_owned()),
                        name: None,
                    })
                    .collect(),
                rsm: None,
            };
            return Ok(Some(Element::from(result)));
        }
        let q = ItemsQuery::Page {
            max: max as u32,
            after: query.rsm.as_ref().and_then(|r| r.after.clone()),
            before: query.rsm.as_ref().and_then(|r| r.before.clone()),
            index: None,
        };
        let got = svc.pubsub.items(&who, &name, q, None).await?;
        let rsm = query.rsm.as_ref().map(|_| SetResult {
            first: got.page.items.first().map(|i| First {
                index: got.page.first_index.map(|n| n as usize),
                item: i.id.as_str().to_owned(),
            }),
            last: got.page.items.last().map(|i| i.id.as_str().to_owned()),
            count: Some(got.page.count as usize),
        });
        let result = DiscoItemsResult {
            node: Some(node.clone()),
            items: got
                .page
                .items
                .into_iter()
                .map(|i| Item {
                    jid: service_jid.clone(),
                    node: None,
                    name: Some(i.id.to_string()),
                })
                .collect(),
            rsm,
        };
        return Ok(Some(Element::from(result)));
    }
    let after = query.rsm.as_ref().and_then(|r| r.after.clone());
    let viewer = (svc.pubsub.policy.hide_private_nodes && !who.admin).then_some(&who.bare);
    let (nodes, total) = svc
        .pubsub
        .store
        .list_nodes(after.as_deref(), max as u32, viewer)
        .await
        .map_err(crate::pubsub::internal)?;
    let rsm = query.rsm.as_ref().map(|_| SetResult {
        first: nodes.first().map(|n| First {
            index: None,
            item: n.name.clone(),
        }),
        last: nodes.last().map(|n| n.name.clone()),
        count: Some(total as usize),
    });
    let result = DiscoItemsResult {
        node: None,
        items: nodes
            .into_iter()
            .map(|n| Item {
                jid: service_jid.clone(),
                node: Some(n.name),
                name: n.title,
            })
            .collect(),
        rsm,
    };
    Ok(Some(Element::from(result)))
}
