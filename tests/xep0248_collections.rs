//! XEP-0248 collection nodes against real Prosody and ejabberd, on both stores: creating
//! and configuring collections, associating and dissociating children (by request and
//! by configuration form), disco#items of a collection, deleting a collection (its
//! children survive), and every refusal the XEP names.

mod common;

use anyhow::Context as _;

use common::engine::{duplicates, start_engine, subscribe_virtual, FANOUT_DONE, SETTLE};
use common::sink::{attach_sink, Inbox};
use common::*;
use pubsubd_testkit::{both_servers, Client, Element};

const NS_DISCO_ITEMS: &str = "http://jabber.org/protocol/disco#items";
const NS_DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";

/// `<collection node='c'><verb node='child'/></collection>` in the owner namespace.
fn link(verb: &str, collection: &str, child: &str) -> String {
    owner(&format!(
        "<collection node='{collection}'><{verb} node='{child}'/></collection>"
    ))
}

/// The node names disco#items lists for `node`, in order.
async fn disco_children(c: &mut Client, ps: &Pubsubd, node: &str) -> anyhow::Result<Vec<String>> {
    let reply = iq(
        c,
        ps,
        "get",
        &format!("<query xmlns='{NS_DISCO_ITEMS}' node='{node}'/>"),
    )
    .await?;
    ok(&reply);
    Ok(reply
        .get_child("query", NS_DISCO_ITEMS)
        .map(|q| {
            q.children()
                .filter_map(|i| i.attr("node").map(str::to_owned))
                .collect()
        })
        .unwrap_or_default())
}

const COLLECTION: &[(&str, &str)] = &[("pubsub#node_type", "collection")];

both_servers!(
    owner_builds_a_collection_and_its_children_survive_it,
    |server| async move {
        let ps = start(server).await?;
        let mut a = user(server, "a").await?;
        create(&mut a, &ps, "blogs", COLLECTION).await?;
        // A leaf joins at creation (pubsub#collection) ...
        create(&mut a, &ps, "musings", &[("pubsub#collection", "blogs")]).await?;
        // ... or later, by an association request (§6.4).
        create(&mut a, &ps, "ravings", &[]).await?;
        ok(&iq(&mut a, &ps, "set", &link("associate", "blogs", "ravings")).await?);
        // Associating twice changes nothing.
        ok(&iq(&mut a, &ps, "set", &link("associate", "blogs", "ravings")).await?);
        assert_eq!(
            disco_children(&mut a, &ps, "blogs").await?,
            ["musings", "ravings"]
        );
        // disco#info names the node type.
        let info = iq(
            &mut a,
            &ps,
            "get",
            &format!("<query xmlns='{NS_DISCO_INFO}' node='blogs'/>"),
        )
        .await?;
        ok(&info);
        let identity = info
            .get_child("query", NS_DISCO_INFO)
            .and_then(|q| q.get_child("identity", NS_DISCO_INFO))
            .expect("identity");
        assert_eq!(identity.attr("type"), Some("collection"));
        // Both ends of a link show it in their configuration (XEP-0248 §7.3).
        assert_eq!(
            config_values(&mut a, &ps, "blogs", "pubsub#node_type").await?,
            ["collection"]
        );
        assert_eq!(
            config_values(&mut a, &ps, "blogs", "pubsub#children").await?,
            ["musings", "ravings"]
        );
        assert_eq!(
            config_values(&mut a, &ps, "musings", "pubsub#collection").await?,
            ["blogs"]
        );
        // A node may belong to several collections (`multi-collections`).
        create(&mut a, &ps, "news", COLLECTION).await?;
        ok(&iq(&mut a, &ps, "set", &link("associate", "news", "musings")).await?);
        assert_eq!(
            config_values(&mut a, &ps, "musings", "pubsub#collection").await?,
            ["blogs", "news"]
        );
        ok(&iq(&mut a, &ps, "set", &link("dissociate", "news", "musings")).await?);
        // The service says so (XEP-0248 §4.1), and that it sends the last item.
        let info = iq(
            &mut a,
            &ps,
            "get",
            &format!("<query xmlns='{NS_DISCO_INFO}'/>"),
        )
        .await?;
        let features: Vec<String> = info
            .get_child("query", NS_DISCO_INFO)
            .map(|q| {
                q.children()
                    .filter_map(|f| f.attr("var").map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        for f in ["collections", "multi-collections", "last-published"] {
            let var = format!("{NS_PUBSUB}#{f}");
            assert!(features.contains(&var), "missing {var} in {features:?}");
        }
        // Dissociation (§6.5); a second one finds nothing to undo: bad-request.
        ok(&iq(&mut a, &ps, "set", &link("dissociate", "blogs", "ravings")).await?);
        assert_eq!(disco_children(&mut a, &ps, "blogs").await?, ["musings"]);
        err(
            &iq(&mut a, &ps, "set", &link("dissociate", "blogs", "ravings")).await?,
            "modify",
            "bad-request",
            None,
        );
        // The children of a configuration form replace the set.
        let form = config_form(&[("pubsub#children", "ravings")]);
        ok(&iq(
            &mut a,
            &ps,
            "set",
            &owner(&format!("<configure node='blogs'>{form}</configure>")),
        )
        .await?);
        assert_eq!(disco_children(&mut a, &ps, "blogs").await?, ["ravings"]);
        assert!(config_values(&mut a, &ps, "musings", "pubsub#collection")
            .await?
            .is_empty());
        // Deleting the collection leaves its children (§7.2's first choice).
        ok(&iq(&mut a, &ps, "set", &owner("<delete node='blogs'/>")).await?);
        ok(&publish(
            &mut a,
            &ps,
            "ravings",
            Some("1"),
            "<x xmlns='urn:example'/>",
        )
        .await?);
        assert!(config_values(&mut a, &ps, "ravings", "pubsub#collection")
            .await?
            .is_empty());
        // A new collection of the same name starts empty.
        create(&mut a, &ps, "blogs", COLLECTION).await?;
        assert!(disco_children(&mut a, &ps, "blogs").await?.is_empty());
        Ok::<_, anyhow::Error>(())
    }
);

both_servers!(
    collections_refuse_what_xep_0248_forbids,
    |server| async move {
        let ps = start(server).await?;
        let mut a = user(server, "a").await?;
        create(&mut a, &ps, "top", COLLECTION).await?;
        create(
            &mut a,
            &ps,
            "mid",
            &[
                ("pubsub#node_type", "collection"),
                ("pubsub#collection", "top"),
            ],
        )
        .await?;
        create(&mut a, &ps, "leaf", &[("pubsub#collection", "mid")]).await?;
        create(&mut a, &ps, "other", &[]).await?;
        // A leaf takes no children (§6.2.3.1), by request or by either form field.
        err(
            &iq(&mut a, &ps, "set", &link("associate", "leaf", "other")).await?,
            "cancel",
            "not-allowed",
            Some("invalid-options"),
        );
        let reply = iq(
            &mut a,
            &ps,
            "set",
            &pubsub(&format!(
                "<create node='x'/><configure>{}</configure>",
                config_form(&[("pubsub#collection", "leaf")])
            )),
        )
        .await?;
        err(&reply, "cancel", "not-allowed", Some("invalid-options"));
        let form = config_form(&[("pubsub#children", "other")]);
        err(
            &iq(
                &mut a,
                &ps,
                "set",
                &owner(&format!("<configure node='leaf'>{form}</configure>")),
            )
            .await?,
            "cancel",
            "not-allowed",
            Some("invalid-options"),
        );
        // No cycles (§6.2.3.5, §6.4.3.3): top is above mid, so not below it, nor itself.
        for (parent, child) in [("mid", "top"), ("top", "top")] {
            err(
                &iq(&mut a, &ps, "set", &link("associate", parent, child)).await?,
                "cancel",
                "not-allowed",
                Some("invalid-options"),
            );
        }
        let form = config_form(&[("pubsub#collection", "mid")]);
        err(
            &iq(
                &mut a,
                &ps,
                "set",
                &owner(&format!("<configure node='top'>{form}</configure>")),
            )
            .await?,
            "cancel",
            "not-allowed",
            Some("invalid-options"),
        );
        // children_max (§6.2.3.3, §6.4.3.2): mid holds one child already.
        let form = config_form(&[("pubsub#children_max", "1")]);
        ok(&iq(
            &mut a,
            &ps,
            "set",
            &owner(&format!("<configure node='mid'>{form}</configure>")),
        )
        .await?);
        err(
            &iq(&mut a, &ps, "set", &link("associate", "mid", "other")).await?,
            "cancel",
            "not-allowed",
            Some("max-nodes-exceeded"),
        );
        // A create that cannot join its collection leaves no node behind.
        let reply = iq(
            &mut a,
            &ps,
            "set",
            &pubsub(&format!(
                "<create node='late'/><configure>{}</configure>",
                config_form(&[("pubsub#collection", "mid")])
            )),
        )
        .await?;
        err(&reply, "cancel", "not-allowed", Some("max-nodes-exceeded"));
        create(&mut a, &ps, "late", &[]).await?;
        // A collection never becomes a leaf again (§6.2.3.4).
        let form = config_form(&[("pubsub#node_type", "leaf")]);
        err(
            &iq(
                &mut a,
                &ps,
                "set",
                &owner(&format!("<configure node='mid'>{form}</configure>")),
            )
            .await?,
            "cancel",
            "not-allowed",
            Some("invalid-options"),
        );
        // A collection holds no items (XEP-0060 §7.1.3.6; XEP-0248 §5.2).
        err(
            &publish(&mut a, &ps, "top", Some("1"), "<x xmlns='urn:example'/>").await?,
            "cancel",
            "feature-not-implemented",
            Some("unsupported"),
        );
        // Retrieving items of a collection, however asked and by whoever may read it,
        // is refused as XEP-0248 §5.2.3 lets a service (feature-not-implemented), with
        // XEP-0060 §6.5.9.5's unsupported retrieve-items; so is its archive (XEP-0313).
        let mut reader = user(server, "reader").await?;
        for ask in [
            "<items node='top'/>",
            "<items node='top' max_items='2'/>",
            "<items node='top'><item id='1'/></items>",
            "<items node='top'/><set xmlns='http://jabber.org/protocol/rsm'><max>2</max></set>",
        ] {
            for c in [&mut a, &mut reader] {
                retrieval_refused(&iq(c, &ps, "get", &pubsub(ask)).await?);
            }
        }
        retrieval_refused(
            &iq(
                &mut reader,
                &ps,
                "set",
                "<query xmlns='urn:xmpp:mam:2' queryid='q1' node='top'/>",
            )
            .await?,
        );
        // Only a collection's owners link to it; unknown nodes are not found.
        let mut b = user(server, "b").await?;
        create(&mut b, &ps, "bs", &[]).await?;
        err(
            &iq(&mut b, &ps, "set", &link("associate", "top", "bs")).await?,
            "auth",
            "forbidden",
            None,
        );
        err(
            &iq(&mut b, &ps, "set", &link("dissociate", "mid", "leaf")).await?,
            "auth",
            "forbidden",
            None,
        );
        err(
            &iq(&mut a, &ps, "set", &link("associate", "top", "nowhere")).await?,
            "cancel",
            "item-not-found",
            None,
        );
        err(
            &iq(
                &mut a,
                &ps,
                "set",
                &owner("<collection node='top'><merge node='leaf'/></collection>"),
            )
            .await?,
            "modify",
            "bad-request",
            None,
        );
        // A whitelist child is listed to its owner only.
        create(
            &mut a,
            &ps,
            "secret",
            &[
                ("pubsub#collection", "top"),
                ("pubsub#access_model", "whitelist"),
            ],
        )
        .await?;
        assert_eq!(disco_children(&mut a, &ps, "top").await?, ["mid", "secret"]);
        assert_eq!(disco_children(&mut b, &ps, "top").await?, ["mid"]);
        ok(&iq(&mut a, &ps, "set", &link("dissociate", "top", "secret")).await?);
        // Nothing above changed the graph.
        assert_eq!(disco_children(&mut a, &ps, "top").await?, ["mid"]);
        assert_eq!(disco_children(&mut a, &ps, "mid").await?, ["leaf"]);
        Ok::<_, anyhow::Error>(())
    }
);

/// Panics unless `reply` refuses a retrieval of items as XEP-0060 §6.5.9.5 does:
/// `cancel`, `feature-not-implemented`, `unsupported` with `feature='retrieve-items'`.
#[track_caller]
fn retrieval_refused(reply: &Element) {
    err(
        reply,
        "cancel",
        "feature-not-implemented",
        Some("unsupported"),
    );
    let feature = reply
        .children()
        .find(|c| c.name() == "error")
        .and_then(|e| e.children().find(|c| c.name() == "unsupported"))
        .and_then(|u| u.attr("feature"));
    assert_eq!(feature, Some("retrieve-items"), "{reply:?}");
}

const SUBSCRIBE_OPTIONS: &str = "http://jabber.org/protocol/pubsub#subscribe_options";
const NS_SHIM: &str = "http://jabber.org/protocol/shim";

/// Subscribes the client's bare JID to `node` with subscription options `fields`.
async fn subscribe_with(
    c: &mut Client,
    ps: &Pubsubd,
    node: &str,
    fields: &[(&str, &str)],
) -> anyhow::Result<Element> {
    let jid = c.bare_jid().to_owned();
    iq(
        c,
        ps,
        "set",
        &pubsub(&format!(
            "<subscribe node='{node}' jid='{jid}'/><options>{}</options>",
            form(SUBSCRIBE_OPTIONS, fields)
        )),
    )
    .await
}

/// One received notification: the node its `<items/>` names, the item id, the
/// `Collection` header (if any) and the message id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Got {
    node: String,
    item: String,
    collection: Option<String>,
    id: String,
}

/// Every item notification that arrives within NOTIFY of the first, until QUIET
/// passes without another.
async fn notifications(c: &mut Client, ps: &Pubsubd) -> Vec<Got> {
    let mut got = Vec::new();
    let mut wait = NOTIFY;
    while let Some(m) = next_event(c, ps, wait).await {
        wait = QUIET;
        let Some(items) = m
            .get_child("event", NS_EVENT)
            .and_then(|e| e.get_child("items", NS_EVENT))
        else {
            continue;
        };
        let collection = collection_header(&m);
        for item in items.children().filter(|i| i.name() == "item") {
            got.push(Got {
                node: items.attr("node").unwrap_or_default().to_owned(),
                item: item.attr("id").unwrap_or_default().to_owned(),
                collection: collection.clone(),
                id: m.attr("id").unwrap_or_default().to_owned(),
            });
        }
    }
    got.sort();
    got
}

/// The `Collection` SHIM header of a notification, if any.
fn collection_header(m: &Element) -> Option<String> {
    m.get_child("headers", NS_SHIM).and_then(|h| {
        h.children()
            .find(|x| x.attr("name") == Some("Collection"))
            .map(|x| x.text())
    })
}

/// `(node, item, collection)` of each notification, in order.
fn seen(got: &[Got]) -> Vec<(&str, &str, Option<&str>)> {
    got.iter()
        .map(|g| (g.node.as_str(), g.item.as_str(), g.collection.as_deref()))
        .collect()
}

both_servers!(
    items_reach_collection_subscribers_by_depth_once_per_subscription,
    |server| async move {
        let ps = start(server).await?;
        let mut a = user(server, "a").await?;
        create(&mut a, &ps, "top", COLLECTION).await?;
        create(
            &mut a,
            &ps,
            "mid",
            &[
                ("pubsub#node_type", "collection"),
                ("pubsub#collection", "top"),
            ],
        )
        .await?;
        create(&mut a, &ps, "deep", &[("pubsub#collection", "mid")]).await?;
        create(&mut a, &ps, "near", &[("pubsub#collection", "top")]).await?;
        // s1: the collection at depth 1 (the default); s2: depth all; s3: the leaf
        // itself and its collection, two subscriptions.
        let mut s1 = user(server, "s1").await?;
        let mut s2 = user(server, "s2").await?;
        let mut s3 = user(server, "s3").await?;
        ok(&subscribe(&mut s1, &ps, "top").await?);
        ok(&subscribe_with(
            &mut s2,
            &ps,
            "top",
            &[
                ("pubsub#subscription_type", "items"),
                ("pubsub#subscription_depth", "all"),
            ],
        )
        .await?);
        ok(&subscribe(&mut s3, &ps, "deep").await?);
        ok(&subscribe(&mut s3, &ps, "mid").await?);
        ok(&publish(&mut a, &ps, "deep", Some("d1"), "<x xmlns='urn:example'/>").await?);
        ok(&publish(&mut a, &ps, "near", Some("n1"), "<x xmlns='urn:example'/>").await?);
        // The notification names the leaf; the header, the collection it came through.
        assert_eq!(
            seen(&notifications(&mut s1, &ps).await),
            [("near", "n1", Some("top"))]
        );
        assert_eq!(
            seen(&notifications(&mut s2, &ps).await),
            [("deep", "d1", Some("top")), ("near", "n1", Some("top"))]
        );
        let s3_got = notifications(&mut s3, &ps).await;
        assert_eq!(
            seen(&s3_got),
            [("deep", "d1", None), ("deep", "d1", Some("mid"))]
        );
        assert_ne!(
            s3_got[0].id, s3_got[1].id,
            "one message id per subscription"
        );
        // A depth-1 subscription to top after unsubscribing from mid: nothing from deep.
        let jid = s3.bare_jid().to_owned();
        ok(&iq(
            &mut s3,
            &ps,
            "set",
            &pubsub(&format!("<unsubscribe node='mid' jid='{jid}'/>")),
        )
        .await?);
        ok(&subscribe(&mut s3, &ps, "top").await?);
        ok(&publish(&mut a, &ps, "deep", Some("d2"), "<x xmlns='urn:example'/>").await?);
        assert_eq!(
            seen(&notifications(&mut s3, &ps).await),
            [("deep", "d2", None)]
        );
        // A dissociated leaf sends nothing through the collection any more.
        ok(&iq(&mut a, &ps, "set", &link("dissociate", "top", "near")).await?);
        ok(&publish(&mut a, &ps, "near", Some("n2"), "<x xmlns='urn:example'/>").await?);
        ok(&publish(&mut a, &ps, "deep", Some("d3"), "<x xmlns='urn:example'/>").await?);
        assert_eq!(
            seen(&notifications(&mut s2, &ps).await),
            [("deep", "d2", Some("top")), ("deep", "d3", Some("top"))]
        );
        assert!(notifications(&mut s1, &ps).await.is_empty());
        // Options XEP-0248 lets a service refuse: not-allowed.
        let mut s4 = user(server, "s4").await?;
        for (var, value) in [
            ("pubsub#subscription_type", "nodes"),
            ("pubsub#subscription_depth", "2"),
        ] {
            err(
                &subscribe_with(&mut s4, &ps, "top", &[(var, value)]).await?,
                "cancel",
                "not-allowed",
                None,
            );
        }
        err(
            &subscribe_with(
                &mut s4,
                &ps,
                "top",
                &[("pubsub#subscription_depth", "deep")],
            )
            .await?,
            "modify",
            "bad-request",
            Some("invalid-options"),
        );
        Ok::<_, anyhow::Error>(())
    }
);

both_servers!(
    collection_subscribers_never_receive_items_they_may_not_read,
    |server| async move {
        let ps = start(server).await?;
        let mut a = user(server, "a").await?;
        let mut s = user(server, "s").await?;
        let mut banned = user(server, "banned").await?;
        create(&mut a, &ps, "all", COLLECTION).await?;
        create(&mut a, &ps, "open", &[("pubsub#collection", "all")]).await?;
        create(
            &mut a,
            &ps,
            "closed",
            &[
                ("pubsub#collection", "all"),
                ("pubsub#access_model", "whitelist"),
            ],
        )
        .await?;
        create(
            &mut a,
            &ps,
            "asked",
            &[
                ("pubsub#collection", "all"),
                ("pubsub#access_model", "authorize"),
            ],
        )
        .await?;
        ok(&subscribe(&mut s, &ps, "all").await?);
        ok(&subscribe(&mut banned, &ps, "all").await?);
        let outcast = banned.bare_jid().to_owned();
        ok(&iq(&mut a, &ps, "set", &owner(&format!(
            "<affiliations node='open'><affiliation jid='{outcast}' affiliation='outcast'/></affiliations>"
        ))).await?);
        for node in ["open", "closed", "asked"] {
            ok(&publish(&mut a, &ps, node, Some("i1"), "<x xmlns='urn:example'/>").await?);
        }
        assert_eq!(
            seen(&notifications(&mut s, &ps).await),
            [("open", "i1", Some("all"))]
        );
        assert!(
            notifications(&mut banned, &ps).await.is_empty(),
            "an outcast of the leaf"
        );
        // A member of the whitelist leaf reads it, so gets it through the collection.
        let member = s.bare_jid().to_owned();
        ok(&iq(&mut a, &ps, "set", &owner(&format!(
            "<affiliations node='closed'><affiliation jid='{member}' affiliation='member'/></affiliations>"
        ))).await?);
        ok(&publish(
            &mut a,
            &ps,
            "closed",
            Some("i2"),
            "<x xmlns='urn:example'/>",
        )
        .await?);
        assert_eq!(
            seen(&notifications(&mut s, &ps).await),
            [("closed", "i2", Some("all"))]
        );
        // Retractions and purges of a leaf reach the collection's subscribers too
        // (XEP-0248 §5.1, subscription type items), with the header.
        ok(&iq(
            &mut a,
            &ps,
            "set",
            &pubsub("<retract node='open' notify='1'><item id='i1'/></retract>"),
        )
        .await?);
        let m = next_event(&mut s, &ps, NOTIFY)
            .await
            .expect("retract notification");
        let event = m.get_child("event", NS_EVENT).expect("event");
        let retract = event
            .get_child("items", NS_EVENT)
            .filter(|i| i.attr("node") == Some("open"))
            .and_then(|i| i.get_child("retract", NS_EVENT))
            .expect("retract of the open leaf");
        assert_eq!(retract.attr("id"), Some("i1"));
        assert_eq!(collection_header(&m).as_deref(), Some("all"));
        ok(&iq(&mut a, &ps, "set", &owner("<purge node='closed'/>")).await?);
        let m = next_event(&mut s, &ps, NOTIFY)
            .await
            .expect("purge notification");
        let purge = m
            .get_child("event", NS_EVENT)
            .and_then(|e| e.get_child("purge", NS_EVENT))
            .expect("purge");
        assert_eq!(purge.attr("node"), Some("closed"));
        assert_eq!(collection_header(&m).as_deref(), Some("all"));
        Ok::<_, anyhow::Error>(())
    }
);

both_servers!(
    leaves_walked_together_give_each_collection_subscriber_what_it_may_read,
    |server| async move {
        // Three leaves below one collection, published to in one transaction, so that
        // the one worker claims them together and walks them as one group: an open
        // leaf, a whitelist leaf and an open leaf with an outcast.
        let mut ps = start_engine(server, "fanout_workers = 1").await?;
        let mut a = user(server, "a").await?;
        create(&mut a, &ps, "all", COLLECTION).await?;
        create(&mut a, &ps, "open", &[("pubsub#collection", "all")]).await?;
        create(
            &mut a,
            &ps,
            "closed",
            &[
                ("pubsub#collection", "all"),
                ("pubsub#access_model", "whitelist"),
            ],
        )
        .await?;
        create(&mut a, &ps, "shunned", &[("pubsub#collection", "all")]).await?;
        // s: no affiliation; m: a member of the whitelist; x: an outcast of shunned;
        // l: subscribed to the open leaf itself too.
        let mut s = user(server, "s").await?;
        let mut m = user(server, "m").await?;
        let mut x = user(server, "x").await?;
        let mut l = user(server, "l").await?;
        for c in [&mut s, &mut m, &mut x, &mut l] {
            ok(&subscribe(c, &ps, "all").await?);
        }
        ok(&subscribe(&mut l, &ps, "open").await?);
        for (node, who, affiliation) in [("closed", &m, "member"), ("shunned", &x, "outcast")] {
            let jid = who.bare_jid().to_owned();
            ok(&iq(&mut a, &ps, "set", &owner(&format!(
                "<affiliations node='{node}'><affiliation jid='{jid}' affiliation='{affiliation}'/></affiliations>"
            ))).await?);
        }
        let (open, closed, shunned) = (
            ps.sql.node_pk("open").await?,
            ps.sql.node_pk("closed").await?,
            ps.sql.node_pk("shunned").await?,
        );
        common::engine::publish_burst(
            &ps.sql,
            &[
                (open, "open", "o1"),
                (closed, "closed", "c1"),
                (shunned, "shunned", "x1"),
                (open, "open", "o2"),
                (closed, "closed", "c2"),
                (shunned, "shunned", "x2"),
            ],
            true,
        )
        .await?;
        let all = Some("all");
        let open_items = [("open", "o1", all), ("open", "o2", all)];
        let shunned_items = [("shunned", "x1", all), ("shunned", "x2", all)];
        assert_eq!(
            seen(&notifications(&mut s, &ps).await),
            [open_items, shunned_items].concat()
        );
        assert_eq!(
            seen(&notifications(&mut m, &ps).await),
            [
                &[("closed", "c1", all), ("closed", "c2", all)][..],
                &open_items,
                &shunned_items
            ]
            .concat()
        );
        assert_eq!(seen(&notifications(&mut x, &ps).await), open_items);
        let l_got = notifications(&mut l, &ps).await;
        assert_eq!(
            seen(&l_got),
            [
                &[
                    ("open", "o1", None),
                    ("open", "o1", all),
                    ("open", "o2", None),
                    ("open", "o2", all)
                ][..],
                &shunned_items
            ]
            .concat()
        );
        assert_ne!(l_got[0].id, l_got[1].id, "one message id per subscription");
        ps.process
            .wait_for_log("walking leaves below the same collections together", SETTLE)
            .await
            .with_context(|| ps.process.log_tail(40))?;
        Ok::<_, anyhow::Error>(())
    }
);

both_servers!(
    a_walk_through_a_collection_reaches_every_subscription_once_across_pages,
    |server| async move {
        // 300 subscriptions to a leaf and 300 to its collection, interleaved in pk order
        // (virtual subscribers of a sink component, notifications one by one), and 10
        // JIDs holding one of each: the walk's pages merge both reads by one cursor.
        const ROUNDS: i64 = 20;
        const EACH: i64 = 15;
        const BOTH: i64 = 10;
        const ITEMS: usize = 3;
        let ps = start_engine(server, "").await?;
        let sink = server.lease_component();
        let inbox = Inbox::default();
        attach_sink(server, &sink, inbox.clone()).await?;
        let mut a = user(server, "a").await?;
        create(&mut a, &ps, "all", COLLECTION).await?;
        create(&mut a, &ps, "leaf", &[("pubsub#collection", "all")]).await?;
        let (leaf, all) = (ps.sql.node_pk("leaf").await?, ps.sql.node_pk("all").await?);
        for round in 0..ROUNDS {
            subscribe_virtual(&ps.sql, leaf, sink.jid(), round * 2 * EACH, EACH).await?;
            subscribe_virtual(&ps.sql, all, sink.jid(), round * 2 * EACH + EACH, EACH).await?;
        }
        subscribe_virtual(&ps.sql, all, sink.jid(), 0, BOTH).await?;
        for i in 0..ITEMS {
            ok(&publish(
                &mut a,
                &ps,
                "leaf",
                Some(&format!("i{i}")),
                "<x xmlns='urn:example'/>",
            )
            .await?);
        }
        let expected = (ROUNDS * 2 * EACH + BOTH) as usize * ITEMS;
        inbox
            .wait_unique(expected, FANOUT_DONE)
            .await
            .with_context(|| ps.process.log_tail(60))?;
        ps.wait_idle(FANOUT_DONE).await?;
        tokio::time::sleep(SETTLE).await;
        assert_eq!(
            inbox.unique(),
            expected,
            "exactly one per subscription and item"
        );
        assert_eq!(duplicates(&inbox), 0);
        let got = inbox.snapshot();
        for n in [0, BOTH - 1] {
            let ids = &got[&common::engine::virtual_jid(n, sink.jid())];
            assert_eq!(ids.len(), 2 * ITEMS, "v{n} holds two subscriptions");
        }
        let ids = &got[&common::engine::virtual_jid(BOTH, sink.jid())];
        assert_eq!(ids.len(), ITEMS, "v{BOTH} holds one");
        Ok::<_, anyhow::Error>(())
    }
);

both_servers!(
    through_a_multicast_service_collection_notifications_keep_their_header,
    |server| async move {
        // A multicast group shares one body and its headers, so the leaf's subscribers
        // and the collection's go in groups of their own: the collection's carry its
        // `Collection` header and an id that is not the leaf group's. 150 virtual
        // subscribers and `c` make the collection's groups 100 and 51, so `c` is in one.
        const EACH: i64 = 200;
        const VIA: i64 = 150;
        const ITEMS: usize = 2;
        let port = pubsubd_testkit::free_ports(1)?[0];
        let mut ps = start_engine(
            server,
            &format!("multicast_limit = 100\nmetrics_listen = \"127.0.0.1:{port}\""),
        )
        .await?;
        ps.process
            .wait_for_log("multicast on: notifications go in groups", READY)
            .await?;
        let sink = server.lease_component();
        let inbox = Inbox::default();
        attach_sink(server, &sink, inbox.clone()).await?;
        let mut a = user(server, "a").await?;
        create(&mut a, &ps, "all", COLLECTION).await?;
        create(&mut a, &ps, "leaf", &[("pubsub#collection", "all")]).await?;
        let (leaf, all) = (ps.sql.node_pk("leaf").await?, ps.sql.node_pk("all").await?);
        subscribe_virtual(&ps.sql, leaf, sink.jid(), 0, EACH).await?;
        subscribe_virtual(&ps.sql, all, sink.jid(), EACH, VIA).await?;
        let mut c = user(server, "c").await?;
        ok(&subscribe(&mut c, &ps, "all").await?);
        // Two subscriptions of one bare JID to the collection: each copy names its
        // subscription, so these go one by one (a group would fold them into one).
        let mut b = user(server, "b").await?;
        for jid in [b.bare_jid().to_owned(), b.jid().to_owned()] {
            common::engine::subscribe(&ps.sql, all, &jid, "{}").await?;
        }
        for i in 0..ITEMS {
            ok(&publish(
                &mut a,
                &ps,
                "leaf",
                Some(&format!("i{i}")),
                "<x xmlns='urn:example'/>",
            )
            .await?);
        }
        let expected = (EACH + VIA) as usize * ITEMS;
        inbox
            .wait_unique(expected, FANOUT_DONE)
            .await
            .with_context(|| ps.process.log_tail(60))?;
        ps.wait_idle(FANOUT_DONE).await?;
        tokio::time::sleep(SETTLE).await;
        assert_eq!(inbox.total(), expected, "each notification exactly once");
        let got = inbox.snapshot();
        // A copy without a SubID has its group's id on either path (`ps-<job>`, through
        // the collection `ps-<job>-via-all`); the groups themselves are counted below.
        let leaf_ids: std::collections::BTreeSet<String> = (0..EACH)
            .flat_map(|n| got[&common::engine::virtual_jid(n, sink.jid())].clone())
            .collect();
        let via_ids: std::collections::BTreeSet<String> = (EACH..EACH + VIA)
            .flat_map(|n| got[&common::engine::virtual_jid(n, sink.jid())].clone())
            .collect();
        assert_eq!(
            leaf_ids.len(),
            ITEMS,
            "the leaf's subscribers, one id per item: {leaf_ids:?}"
        );
        assert_eq!(
            via_ids.len(),
            ITEMS,
            "the collection's subscribers, one id per item: {via_ids:?}"
        );
        assert!(
            via_ids.iter().all(|id| id.ends_with("-via-all")),
            "under ids of their own: {via_ids:?}"
        );
        let mine = notifications(&mut c, &ps).await;
        assert_eq!(
            seen(&mine),
            [("leaf", "i0", Some("all")), ("leaf", "i1", Some("all"))]
        );
        assert!(
            mine.iter().all(|g| via_ids.contains(&g.id)),
            "c got the collection's group, header and all: {mine:?}"
        );
        let bs = common::engine::events_received(&mut b, 2 * ITEMS).await?;
        assert_eq!(bs.len(), 2 * ITEMS, "one copy per subscription");
        let mut subids: Vec<String> = bs.iter().filter_map(common::engine::subid_header).collect();
        subids.sort();
        subids.dedup();
        assert_eq!(subids.len(), 2, "each copy names its subscription");
        for m in &bs {
            assert_eq!(collection_header(m).as_deref(), Some("all"));
        }
        // Both sides went in groups: each needs at least two per item (the leaf's 200
        // recipients, the collection's 151 with `c`, at most 100 a group), however the
        // walk pages them; either side one by one would leave the other's two or three.
        let metrics = common::watched::scrape(port).await?;
        let groups =
            common::engine::metric(&metrics, "pubsubd_multicast_groups_total").unwrap_or(0.0);
        assert!(groups >= (4 * ITEMS) as f64, "{groups} groups\n{metrics}");
        Ok::<_, anyhow::Error>(())
    }
);

both_servers!(
    every_new_open_leaf_joins_the_root_collection_the_operator_names,
    |server| async move {
        // `[service] root_collection`: the operator's "everything" firehose.
        let ps = start_with(server, "[service]\nroot_collection = \"everything\"\n").await?;
        let mut op = user(server, "op").await?;
        let mut b = user(server, "b").await?;
        let mut s = user(server, "s").await?;
        create(&mut op, &ps, "everything", COLLECTION).await?;
        ok(&subscribe_with(
            &mut s,
            &ps,
            "everything",
            &[("pubsub#subscription_depth", "all")],
        )
        .await?);
        create(&mut b, &ps, "news", &[]).await?;
        create(
            &mut b,
            &ps,
            "private",
            &[("pubsub#access_model", "whitelist")],
        )
        .await?;
        create(&mut b, &ps, "sub", COLLECTION).await?;
        // A node auto-created by a publish joins too.
        ok(&publish(&mut b, &ps, "auto", Some("a1"), "<x xmlns='urn:example'/>").await?);
        assert_eq!(
            disco_children(&mut op, &ps, "everything").await?,
            ["auto", "news"]
        );
        ok(&publish(&mut b, &ps, "news", Some("n1"), "<x xmlns='urn:example'/>").await?);
        ok(&publish(
            &mut b,
            &ps,
            "private",
            Some("p1"),
            "<x xmlns='urn:example'/>",
        )
        .await?);
        assert_eq!(
            seen(&notifications(&mut s, &ps).await),
            [
                ("auto", "a1", Some("everything")),
                ("news", "n1", Some("everything"))
            ]
        );
        Ok::<_, anyhow::Error>(())
    }
);
