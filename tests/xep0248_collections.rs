//! XEP-0248 collection nodes against real Prosody and ejabberd, on both stores: creating
//! and configuring collections, associating and dissociating children (by request and
//! by configuration form), disco#items of a collection, deleting a collection (its
//! children survive), and every refusal the XEP names.

mod common;

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

/// The values of field `var` in `node`'s configuration form.
async fn config_values(
    c: &mut Client,
    ps: &Pubsubd,
    node: &str,
    var: &str,
) -> anyhow::Result<Vec<String>> {
    let reply = iq(c, ps, "get", &owner(&format!("<configure node='{node}'/>"))).await?;
    ok(&reply);
    let x: Element = reply
        .get_child("pubsub", NS_OWNER)
        .and_then(|p| p.get_child("configure", NS_OWNER))
        .and_then(|c| c.get_child("x", NS_DATA))
        .cloned()
        .expect("config form");
    Ok(x.children()
        .find(|f| f.attr("var") == Some(var))
        .map(|f| {
            f.children()
                .filter(|v| v.name() == "value")
                .map(|v| v.text())
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
        err(
            &iq(&mut a, &ps, "get", &pubsub("<items node='top'/>")).await?,
            "cancel",
            "feature-not-implemented",
            Some("unsupported"),
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
        // Nothing above changed the graph.
        assert_eq!(disco_children(&mut a, &ps, "top").await?, ["mid"]);
        assert_eq!(disco_children(&mut a, &ps, "mid").await?, ["leaf"]);
        Ok::<_, anyhow::Error>(())
    }
);
