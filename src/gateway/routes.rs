//! The routes of the HTTP gateway and their handlers. Each handler parses the request
//! into typed values, runs the same [`Pubsub`](crate::pubsub::Pubsub) command an XMPP
//! request would, as the caller (see [`super::auth`]), and renders the result.
//!
//! [`routes`] is the single list the router is built from; `docs/openapi.yaml` is
//! checked against it by a unit test below.

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put, MethodRouter};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::atom::{self, path_segment};
use super::auth::Caller;
use super::errors::ApiError;
use super::node_form::{config_to_json, form_from_json};
use super::payload::{body_kind, item_json, json_payload, payload_from_body};
use super::{sse, GatewayState};
use crate::domain::archive::{ArchiveId, ArchiveRequest};
use crate::domain::{DomainError, ItemId, NodeId};
use crate::protocol::rate_limit::Action;
use crate::pubsub::items::Publication;
use crate::store::ItemsQuery;

/// Items or nodes per page when the client does not say.
const DEFAULT_PAGE: u32 = 20;
/// Most items or nodes per page: bounds one response.
const MAX_PAGE: u32 = 100;
/// Room for the JSON or XML around a payload of the largest allowed size.
const BODY_OVERHEAD: usize = 4096;

/// Every route: path, method, handler. The router is built from this list only.
pub fn routes() -> Vec<(&'static str, &'static str, MethodRouter<GatewayState>)> {
    vec![
        ("/nodes", "get", get(list_nodes)),
        ("/nodes/{node}", "get", get(node_info)),
        ("/nodes/{node}", "put", put(put_node)),
        ("/nodes/{node}", "delete", delete(delete_node)),
        ("/nodes/{node}/items", "get", get(list_items)),
        ("/nodes/{node}/items", "post", post(publish)),
        ("/nodes/{node}/items/{id}", "get", get(get_item)),
        ("/nodes/{node}/items/{id}", "put", put(put_item)),
        ("/nodes/{node}/items/{id}", "delete", delete(retract)),
        ("/nodes/{node}/events", "get", get(sse::events)),
        ("/nodes/{node}/feed.atom", "get", get(feed)),
    ]
}

/// The gateway's router, with request bodies capped just above the largest payload
/// the service accepts (a bigger body is a 413 without being read).
pub fn router(state: GatewayState) -> Router {
    let limit = state.pubsub.policy.limits.max_payload_size as usize + BODY_OVERHEAD;
    let mut r = Router::new();
    for (path, _, handler) in routes() {
        r = r.route(path, handler);
    }
    r.layer(DefaultBodyLimit::max(limit)).with_state(state)
}

/// `?max=&after=`: a page, newest first (items) or in name order (nodes), after the
/// last id of the previous page. `?after_id=` (items only): the node's archive after
/// that archive id, in publish order (the ids of XEP-0313 queries and of the event
/// stream's `Last-Event-ID`).
#[derive(Debug, Deserialize)]
pub struct Page {
    pub max: Option<u32>,
    pub after: Option<String>,
    pub after_id: Option<String>,
}

impl Page {
    fn max(&self) -> u32 {
        self.max.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE)
    }
}

fn node_id(caller: &Caller, raw: &str) -> Result<NodeId, ApiError> {
    NodeId::parse(raw).map_err(|e| caller.fail(e))
}

fn item_id(caller: &Caller, raw: &str) -> Result<ItemId, ApiError> {
    ItemId::parse(raw).map_err(|e| caller.fail(e))
}

async fn list_nodes(
    State(st): State<GatewayState>,
    caller: Caller,
    Query(page): Query<Page>,
) -> Result<Json<Value>, ApiError> {
    // The same visibility rule as disco#items on the service.
    let req = &caller.requester;
    let viewer = (caller.anonymous || (st.pubsub.policy.hide_private_nodes && !req.admin))
        .then_some(&req.bare);
    let max = page.max();
    let (nodes, total) = st
        .pubsub
        .store
        .list_nodes(page.after.as_deref(), max, viewer)
        .await
        .map_err(|e| caller.fail(crate::pubsub::internal(e)))?;
    let next = (nodes.len() as u32 == max).then(|| nodes.last().map(|n| n.name.clone()));
    Ok(Json(json!({
        "nodes": nodes.iter().map(|n| json!({"node": n.name, "title": n.title})).collect::<Vec<_>>(),
        "count": total,
        "next_after": next.flatten(),
    })))
}

async fn node_info(
    State(st): State<GatewayState>,
    caller: Caller,
    Path(node): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let node = node_id(&caller, &node)?;
    let info = st
        .pubsub
        .node_info(&caller.requester, &node)
        .await
        .map_err(|e| caller.fail(e))?;
    caller.may_read(&info.node.config)?;
    let jids =
        |v: &[xmpp_parsers::jid::BareJid]| v.iter().map(|j| j.to_string()).collect::<Vec<_>>();
    Ok(Json(json!({
        "node": info.node.name.as_str(),
        "config": config_to_json(&info.node.config),
        "owners": jids(&info.owners),
        "publishers": jids(&info.publishers),
        "subscribers": info.subscribers,
        "items": info.items,
    })))
}

async fn put_node(
    State(st): State<GatewayState>,
    caller: Caller,
    Path(node): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req = caller.writer()?;
    let node = node_id(&caller, &node)?;
    let fields: Value = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Null
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("the body is not JSON: {e}")))?
    };
    let form = form_from_json(&fields).map_err(ApiError::bad_request)?;
    let pubsub = &st.pubsub;
    // Create when missing; a node created meanwhile by someone else is configured
    // (which only its owners may do).
    let created = match pubsub.node_config(req, &node).await {
        Ok(_) => false,
        Err(DomainError::NodeNotFound) => {
            caller.rate(&st, Action::Create)?;
            match pubsub
                .create_node(req, Some(node.clone()), Some(&form))
                .await
            {
                Ok(_) => true,
                Err(DomainError::NodeExists) => false,
                Err(e) => return Err(caller.fail(e)),
            }
        }
        Err(e) => return Err(caller.fail(e)),
    };
    let config = if created {
        pubsub.node_config(req, &node).await
    } else {
        pubsub.configure_node(req, &node, &form).await
    }
    .map_err(|e| caller.fail(e))?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(json!({"node": node.as_str(), "created": created, "config": config_to_json(&config)})),
    )
        .into_response())
}

async fn delete_node(
    State(st): State<GatewayState>,
    caller: Caller,
    Path(node): Path<String>,
) -> Result<StatusCode, ApiError> {
    let req = caller.writer()?;
    let node = node_id(&caller, &node)?;
    st.pubsub
        .delete_node(req, &node, None)
        .await
        .map_err(|e| caller.fail(e))?;
    Ok(StatusCode::NO_CONTENT)
}

async fn list_items(
    State(st): State<GatewayState>,
    caller: Caller,
    Path(node): Path<String>,
    Query(page): Query<Page>,
) -> Result<Json<Value>, ApiError> {
    let node = node_id(&caller, &node)?;
    let max = page.max();
    if let Some(after_id) = &page.after_id {
        if page.after.is_some() {
            return Err(caller.fail(DomainError::BadRequest(
                "after and after_id page different orders; give one".into(),
            )));
        }
        return archive_items(&st, &caller, &node, after_id, max).await;
    }
    let query = ItemsQuery::Page {
        max,
        after: page.after.clone(),
        before: None,
        index: None,
    };
    let got = st
        .pubsub
        .items(&caller.requester, &node, query, None)
        .await
        .map_err(|e| caller.fail(e))?;
    caller.may_read(&got.node.config)?;
    let items = &got.page.items;
    // Deeper than the store counts positions (`MAX_RSM_INDEX`), a full page says
    // that more may follow.
    let more = match got.page.first_index {
        Some(first) => first + (items.len() as u64) < got.page.count,
        None => items.len() as u64 >= u64::from(max),
    };
    let next = more
        .then(|| items.last().map(|i| i.id.as_str().to_owned()))
        .flatten();
    Ok(Json(json!({
        "node": node.as_str(),
        "count": got.page.count,
        "items": items.iter().map(item_json).collect::<Vec<_>>(),
        "next_after": next,
    })))
}

/// `?after_id=`: items after an archive id, oldest first, each with its `seq`;
/// `next_after_id` while more follow.
async fn archive_items(
    st: &GatewayState,
    caller: &Caller,
    node: &NodeId,
    after_id: &str,
    max: u32,
) -> Result<Json<Value>, ApiError> {
    let request = ArchiveRequest {
        after_id: Some(ArchiveId::parse(after_id).map_err(|e| caller.fail(e))?),
        max: Some(max),
        ..ArchiveRequest::default()
    };
    let got = st
        .pubsub
        .archive(&caller.requester, node, &request)
        .await
        .map_err(|e| caller.fail(e))?;
    caller.may_read(&got.node.config)?;
    let items = &got.page.items;
    let next = (!got.page.complete)
        .then(|| items.last().map(|i| i.seq.to_string()))
        .flatten();
    Ok(Json(json!({
        "node": node.as_str(),
        "items": items.iter().map(|i| {
            let mut v = item_json(&i.item);
            v["seq"] = i.seq.into();
            v
        }).collect::<Vec<_>>(),
        "next_after_id": next,
    })))
}

async fn get_item(
    State(st): State<GatewayState>,
    caller: Caller,
    Path((node, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let node = node_id(&caller, &node)?;
    let id = item_id(&caller, &id)?;
    let got = st
        .pubsub
        .items(&caller.requester, &node, ItemsQuery::Ids(vec![id]), None)
        .await
        .map_err(|e| caller.fail(e))?;
    caller.may_read(&got.node.config)?;
    let item = got
        .page
        .items
        .into_iter()
        .next()
        .ok_or_else(|| caller.fail(DomainError::ItemNotFound))?;
    let payload = item.payload.unwrap_or_default();
    let (content_type, body) = match json_payload(&payload) {
        Some(v) => ("application/json", v.to_string()),
        None => ("application/xml", payload),
    };
    let mut response = body.into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(v) = HeaderValue::from_str(&item.publisher) {
        response.headers_mut().insert("x-item-publisher", v);
    }
    Ok(response)
}

async fn publish(
    State(st): State<GatewayState>,
    caller: Caller,
    Path(node): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    publish_as(&st, &caller, &node, None, &headers, &body).await
}

async fn put_item(
    State(st): State<GatewayState>,
    caller: Caller,
    Path((node, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let id = item_id(&caller, &id)?;
    publish_as(&st, &caller, &node, Some(id), &headers, &body).await
}

async fn publish_as(
    st: &GatewayState,
    caller: &Caller,
    node: &str,
    id: Option<ItemId>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ApiError> {
    let req = caller.writer()?;
    let node = node_id(caller, node)?;
    caller.rate(st, Action::Publish)?;
    let kind = body_kind(headers)?;
    let payload = payload_from_body(kind, body)?;
    let published = st
        .pubsub
        .publish(
            req,
            &node,
            Some(Publication {
                id,
                payload: Some(payload),
            }),
            None,
        )
        .await
        .map_err(|e| caller.fail(e))?;
    let id = published.id.map(|i| i.as_str().to_owned());
    let mut response = (
        StatusCode::CREATED,
        Json(json!({"node": node.as_str(), "id": id, "node_created": published.created})),
    )
        .into_response();
    if let Some(id) = &id {
        let location = format!(
            "/nodes/{}/items/{}",
            path_segment(node.as_str()),
            path_segment(id)
        );
        if let Ok(v) = HeaderValue::from_str(&location) {
            response.headers_mut().insert(header::LOCATION, v);
        }
    }
    Ok(response)
}

async fn retract(
    State(st): State<GatewayState>,
    caller: Caller,
    Path((node, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let req = caller.writer()?;
    let node = node_id(&caller, &node)?;
    let id = item_id(&caller, &id)?;
    st.pubsub
        .retract(req, &node, &[id], false)
        .await
        .map_err(|e| caller.fail(e))?;
    Ok(StatusCode::NO_CONTENT)
}

async fn feed(
    State(st): State<GatewayState>,
    caller: Caller,
    Path(node): Path<String>,
    Query(page): Query<Page>,
) -> Result<Response, ApiError> {
    let node = node_id(&caller, &node)?;
    let query = ItemsQuery::Latest {
        max: Some(page.max()),
    };
    let got = st
        .pubsub
        .items(&caller.requester, &node, query, None)
        .await
        .map_err(|e| caller.fail(e))?;
    caller.may_read(&got.node.config)?;
    let doc = atom::feed(&st.pubsub.jid, &got.node, &got.page.items);
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/atom+xml; charset=utf-8"),
        )],
        doc,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    /// The (path, method) pairs of `docs/openapi.yaml`, read from its `paths:` block:
    /// paths are indented two spaces, methods four.
    fn documented() -> BTreeSet<(String, String)> {
        let doc = include_str!("../../docs/openapi.yaml");
        let mut out = BTreeSet::new();
        let mut in_paths = false;
        let mut path: Option<String> = None;
        for line in doc.lines() {
            if !line.starts_with(' ') && !line.is_empty() {
                in_paths = line.trim_end() == "paths:";
                continue;
            }
            if !in_paths {
                continue;
            }
            if let Some(p) = line.strip_prefix("  /") {
                path = Some(format!(
                    "/{}",
                    p.trim_end()
                        .trim_end_matches(':')
                        .trim_matches('\'')
                        .trim_matches('"')
                ));
            } else if let Some(m) = line.strip_prefix("    ") {
                let m = m.trim_end();
                if !m.starts_with(' ') && m.ends_with(':') {
                    let m = m.trim_end_matches(':');
                    if ["get", "put", "post", "delete", "patch", "head", "options"].contains(&m) {
                        if let Some(p) = &path {
                            out.insert((p.clone(), m.to_string()));
                        }
                    }
                }
            }
        }
        out
    }

    #[test]
    fn openapi_document_lists_exactly_the_routes_of_the_router() {
        let routed: BTreeSet<(String, String)> = super::routes()
            .into_iter()
            .map(|(p, m, _)| (p.to_string(), m.to_string()))
            .collect();
        let documented = documented();
        let undocumented: Vec<_> = routed.difference(&documented).collect();
        let unrouted: Vec<_> = documented.difference(&routed).collect();
        assert!(
            undocumented.is_empty() && unrouted.is_empty(),
            "routes missing from docs/openapi.yaml: {undocumented:?}; documented but not routed: {unrouted:?}"
        );
    }
}
