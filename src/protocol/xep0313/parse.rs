//! Reading an archive request (`urn:xmpp:mam:2`) into a [`MamRequest`]: the query with
//! its XEP-0313 form and XEP-0059 set (read with xmpp-parsers' `mam` and `rsm` types),
//! the form request, and the metadata request.

use minidom::Element;
use xmpp_parsers::data_forms::{DataForm, DataFormType};
use xmpp_parsers::jid::Jid;
use xmpp_parsers::mam::Query;
use xmpp_parsers::ns;

use crate::domain::archive::{ArchiveId, ArchiveRequest, PublisherFilter};
use crate::domain::{DomainError, NodeId};
use crate::protocol::stanza::{IqKind, IqRequest};

/// What an archive request asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MamRequest {
    /// `<query/>` get: the fields a query may use (XEP-0313 §4.1.5).
    Form,
    /// `<query node=…/>` set: a page of the node's archive.
    Query {
        node: NodeId,
        queryid: Option<String>,
        request: ArchiveRequest,
        /// `<flip-page/>`: send the page newest first.
        flip: bool,
    },
    /// `<metadata node=…/>` get: the archive's first and last item (§7).
    Metadata { node: NodeId },
}

/// The node an archive request names: XEP-0442 puts it in `node` on `<query/>`;
/// neither XEP names it for `<metadata/>`, so pubsubd reads the same attribute there.
/// pubsubd keeps no archive of the service itself, so the node is required.
fn node(name: Option<&str>) -> Result<NodeId, DomainError> {
    match name {
        Some(n) => NodeId::parse(n).map_err(|_| DomainError::NodeNotFound),
        None => Err(DomainError::NodeIdRequired),
    }
}

/// Reads a request in the `urn:xmpp:mam:2` namespace.
pub fn request(req: &IqRequest) -> Result<MamRequest, DomainError> {
    let el = &req.payload;
    match (el.name(), req.kind) {
        ("metadata", IqKind::Get) => {
            if el.children().next().is_some() {
                return Err(DomainError::BadRequest(
                    "<metadata/> has no children".into(),
                ));
            }
            Ok(MamRequest::Metadata {
                node: node(el.attr("node"))?,
            })
        }
        ("query", IqKind::Get) => Ok(MamRequest::Form),
        ("query", IqKind::Set) => query(el),
        ("metadata", IqKind::Set) => Err(DomainError::BadRequest(
            "a metadata request is an iq of type get".into(),
        )),
        (other, _) => Err(DomainError::NotImplemented(format!(
            "<{other}/> in {}",
            ns::MAM
        ))),
    }
}

fn query(el: &Element) -> Result<MamRequest, DomainError> {
    let q = Query::try_from(el.clone())
        .map_err(|e| DomainError::BadRequest(format!("malformed archive query: {e}")))?;
    let node = node(q.node.as_ref().map(|n| n.0.as_str()))?;
    let mut request = match &q.form {
        Some(form) => form_fields(form)?,
        None => ArchiveRequest::default(),
    };
    if let Some(set) = &q.set {
        if set.index.is_some() {
            return Err(DomainError::NotImplemented(
                "paging by <index/>: page by id".into(),
            ));
        }
        request.max = set.max.map(|m| u32::try_from(m).unwrap_or(u32::MAX));
        request.rsm_after = set.after.as_deref().map(ArchiveId::parse).transpose()?;
        request.rsm_before = match set.before.as_deref() {
            None => None,
            Some("") => Some(None),
            Some(id) => Some(Some(ArchiveId::parse(id)?)),
        };
    }
    Ok(MamRequest::Query {
        node,
        queryid: q.queryid.map(|id| id.0),
        request,
        flip: q.flip_page,
    })
}

/// The query's form fields: `FORM_TYPE` must be `urn:xmpp:mam:2` when present;
/// a field pubsubd does not know is `feature-not-implemented` (XEP-0313 §4.1.5);
/// a value that does not parse is `bad-request`. A field without a value is absent.
pub fn form_fields(form: &DataForm) -> Result<ArchiveRequest, DomainError> {
    if form.type_ != DataFormType::Submit {
        return Err(DomainError::BadRequest(
            "the query form must be of type submit".into(),
        ));
    }
    match form.form_type() {
        None | Some(ns::MAM) => {}
        Some(other) => {
            return Err(DomainError::BadRequest(format!(
                "FORM_TYPE {other} is not {}",
                ns::MAM
            )))
        }
    }
    let mut r = ArchiveRequest::default();
    for field in &form.fields {
        if field.is_form_type(&form.type_) {
            continue;
        }
        let var = field.var.as_deref().unwrap_or("");
        if var == "ids" {
            r.ids = field
                .values
                .iter()
                .map(|v| ArchiveId::parse(v))
                .collect::<Result<_, _>>()?;
            continue;
        }
        let value = match field.values.as_slice() {
            [] => None,
            [v] => Some(v.as_str()),
            _ => {
                return Err(DomainError::BadRequest(format!(
                    "field {var} takes one value"
                )))
            }
        };
        let Some(value) = value else {
            if matches!(var, "with" | "start" | "end" | "after-id" | "before-id") {
                continue;
            }
            return Err(DomainError::NotImplemented(format!("query field {var}")));
        };
        match var {
            "with" => r.with = Some(with(value)?),
            "start" => r.start = Some(stamp(var, value)?),
            "end" => r.end = Some(stamp(var, value)?),
            "after-id" => r.after_id = Some(ArchiveId::parse(value)?),
            "before-id" => r.before_id = Some(ArchiveId::parse(value)?),
            other => return Err(DomainError::NotImplemented(format!("query field {other}"))),
        }
    }
    Ok(r)
}

fn with(value: &str) -> Result<PublisherFilter, DomainError> {
    match value.parse::<Jid>() {
        Ok(jid) if jid.resource().is_some() => Ok(PublisherFilter::Full(jid.to_string())),
        Ok(jid) => Ok(PublisherFilter::Bare(jid.to_string())),
        Err(e) => Err(DomainError::BadRequest(format!("with: {e}"))),
    }
}

/// An XEP-0082 DateTime.
fn stamp(var: &str, value: &str) -> Result<chrono::DateTime<chrono::Utc>, DomainError> {
    value
        .parse::<xmpp_parsers::date::DateTime>()
        .map(|t| t.0.with_timezone(&chrono::Utc))
        .map_err(|e| DomainError::BadRequest(format!("{var}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iq(kind: IqKind, payload: &str) -> IqRequest {
        IqRequest {
            from: "juliet@capulet.lit/balcony".parse().expect("jid"),
            to: "pubsub.capulet.lit".parse().expect("jid"),
            id: "q1".into(),
            kind,
            payload: payload.parse().expect("test xml"),
        }
    }

    fn form(fields: &str) -> String {
        format!(
            "<query xmlns='urn:xmpp:mam:2' node='news' queryid='f27'>\
             <x xmlns='jabber:x:data' type='submit'>\
             <field var='FORM_TYPE' type='hidden'><value>urn:xmpp:mam:2</value></field>\
             {fields}</x></query>"
        )
    }

    fn parsed(xml: &str) -> Result<MamRequest, DomainError> {
        request(&iq(IqKind::Set, xml))
    }

    #[test]
    fn a_query_reads_every_field_and_the_rsm_set() {
        let xml = "<query xmlns='urn:xmpp:mam:2' node='news' queryid='f27'>\
             <x xmlns='jabber:x:data' type='submit'>\
             <field var='FORM_TYPE' type='hidden'><value>urn:xmpp:mam:2</value></field>\
             <field var='with'><value>romeo@montague.lit</value></field>\
             <field var='start'><value>2010-06-07T00:00:00Z</value></field>\
             <field var='end'><value>2010-07-07T13:23:54+02:00</value></field>\
             <field var='after-id'><value>3</value></field>\
             <field var='before-id'><value>30</value></field>\
             <field var='ids'><value>4</value><value>5</value></field></x>\
             <set xmlns='http://jabber.org/protocol/rsm'><max>10</max><before/></set>\
             <flip-page/></query>";
        let Ok(MamRequest::Query {
            node,
            queryid,
            request,
            flip,
        }) = parsed(xml)
        else {
            panic!("{:?}", parsed(xml));
        };
        assert_eq!(node.as_str(), "news");
        assert_eq!(queryid.as_deref(), Some("f27"));
        assert!(flip);
        assert_eq!(
            request.with,
            Some(PublisherFilter::Bare("romeo@montague.lit".into()))
        );
        assert_eq!(
            request.end.map(|t| t.to_rfc3339()),
            Some("2010-07-07T11:23:54+00:00".into())
        );
        assert_eq!(request.after_id, Some(ArchiveId(3)));
        assert_eq!(request.before_id, Some(ArchiveId(30)));
        assert_eq!(request.ids, vec![ArchiveId(4), ArchiveId(5)]);
        assert_eq!(request.max, Some(10));
        assert_eq!(request.rsm_before, Some(None));
    }

    #[test]
    fn unknown_fields_are_not_implemented_and_bad_values_bad_requests() {
        let unknown = form("<field var='{urn:example}search'><value>x</value></field>");
        assert!(matches!(
            parsed(&unknown),
            Err(DomainError::NotImplemented(_))
        ));
        let bad_time = form("<field var='start'><value>yesterday</value></field>");
        assert!(matches!(parsed(&bad_time), Err(DomainError::BadRequest(_))));
        let bad_jid = form("<field var='with'><value>@@</value></field>");
        assert!(matches!(parsed(&bad_jid), Err(DomainError::BadRequest(_))));
        let other_type = "<query xmlns='urn:xmpp:mam:2' node='n'><x xmlns='jabber:x:data' \
             type='submit'><field var='FORM_TYPE' type='hidden'><value>urn:other</value>\
             </field></x></query>";
        assert!(matches!(
            parsed(other_type),
            Err(DomainError::BadRequest(_))
        ));
    }

    #[test]
    fn ids_that_cannot_exist_are_not_found_and_a_node_is_required() {
        let bad_id = form("<field var='after-id'><value>abc</value></field>");
        assert_eq!(parsed(&bad_id), Err(DomainError::ItemNotFound));
        let bad_rsm = "<query xmlns='urn:xmpp:mam:2' node='n'>\
             <set xmlns='http://jabber.org/protocol/rsm'><after>x</after></set></query>";
        assert_eq!(parsed(bad_rsm), Err(DomainError::ItemNotFound));
        assert_eq!(
            parsed("<query xmlns='urn:xmpp:mam:2'/>"),
            Err(DomainError::NodeIdRequired)
        );
        assert_eq!(
            request(&iq(IqKind::Get, "<query xmlns='urn:xmpp:mam:2'/>")),
            Ok(MamRequest::Form)
        );
        assert_eq!(
            request(&iq(
                IqKind::Get,
                "<metadata xmlns='urn:xmpp:mam:2' node='n'/>"
            )),
            Ok(MamRequest::Metadata {
                node: NodeId::parse("n").expect("node")
            })
        );
    }
}
