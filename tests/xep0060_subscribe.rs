//! XEP-0060 subscriber use cases against real Prosody and ejabberd: subscribe (bare
//! and full JID, mismatched JIDs), unsubscribe, subscription options, own
//! subscriptions and affiliations, and the access models that decide who may.

mod common;

use common::*;
use pubsubd_testkit::{both_servers, Element};

fn subscription_of(reply: &Element) -> Option<Element> {
    reply
        .get_child("pubsub", NS_PUBSUB)?
        .get_child("subscription", NS_PUBSUB)
        .cloned()
}

both_servers!(
    subscriber_subscribes_with_bare_and_full_jid,
    |server| async move {
        let ps = start(server).await?;
        let mut owner_c = user(server, "owner").await?;
        create(&mut owner_c, &ps, "n", &[]).await?;
        let mut sub = user(server, "sub").await?;
        let reply = subscribe(&mut sub, &ps, "n").await?;
        ok(&reply);
        let s = subscription_of(&reply).expect("subscription");
        assert_eq!(s.attr("subscription"), Some("subscribed"));
        assert_eq!(s.attr("jid"), Some(sub.bare_jid()));
        assert_eq!(s.attr("node"), Some("n"));
        assert!(s.attr("subid").is_some());
        // Subscribing again returns the same subscription (no multi-subscribe).
        let again = subscription_of(&subscribe(&mut sub, &ps, "n").await?).expect("subscription");
        assert_eq!(again.attr("subid"), s.attr("subid"));
        // A full-JID subscription is a second one.
        let full = sub.jid().to_owned();
        let reply = iq(
            &mut sub,
            &ps,
            "set",
            &pubsub(&format!("<subscribe node='n' jid='{full}'/>")),
        )
        .await?;
        ok(&reply);
        let reply = iq(&mut sub, &ps, "get", &pubsub("<subscriptions/>")).await?;
        ok(&reply);
        let listed = reply
            .get_child("pubsub", NS_PUBSUB)
            .and_then(|p| p.get_child("subscriptions", NS_PUBSUB))
            .map(|s| s.children().count())
            .unwrap_or(0);
        assert_eq!(listed, 2);
        Ok::<_, anyhow::Error>(())
    }
);

both_servers!(
    subscribing_someone_else_is_invalid_jid,
    |server| async move {
        let ps = start(server).await?;
        let mut a = user(server, "a").await?;
        create(&mut a, &ps, "n", &[]).await?;
        let reply = iq(
            &mut a,
            &ps,
            "set",
            &pubsub("<subscribe node='n' jid='someone@else.example'/>"),
        )
        .await?;
        err(&reply, "modify", "bad-request", Some("invalid-jid"));
        let reply = iq(
            &mut a,
            &ps,
            "set",
            &pubsub("<subscribe node='ghost' jid='x@y'/>"),
        )
        .await?;
        err(&reply, "modify", "bad-request", Some("invalid-jid"));
        let jid = a.bare_jid().to_owned();
        let reply = iq(
            &mut a,
            &ps,
            "set",
            &pubsub(&format!("<subscribe node='ghost' jid='{jid}'/>")),
        )
        .await?;
        err(&reply, "cancel", "item-not-found", None);
        let reply = iq(
            &mut a,
            &ps,
            "set",
            &pubsub(&format!("<subscribe jid='{jid}'/>")),
        )
        .await?;
        err(&reply, "modify", "bad-request", Some("nodeid-required"));
        Ok::<_, anyhow::Error>(())
    }
);

both_servers!(unsubscribe_with_and_without_subid, |server| async move {
    let ps = start(server).await?;
    let mut a = user(server, "a").await?;
    create(&mut a, &ps, "n", &[]).await?;
    let jid = a.bare_jid().to_owned();
    let subid = subscription_of(&subscribe(&mut a, &ps, "n").await?)
        .and_then(|s| s.attr("subid").map(str::to_owned))
        .expect("subid");
    let reply = iq(
        &mut a,
        &ps,
        "set",
        &pubsub(&format!(
            "<unsubscribe node='n' jid='{jid}' subid='wrong'/>"
        )),
    )
    .await?;
    err(&reply, "modify", "not-acceptable", Some("invalid-subid"));
    ok(&iq(
        &mut a,
        &ps,
        "set",
        &pubsub(&format!(
            "<unsubscribe node='n' jid='{jid}' subid='{subid}'/>"
        )),
    )
    .await?);
    let reply = iq(
        &mut a,
        &ps,
        "set",
        &pubsub(&format!("<unsubscribe node='n' jid='{jid}'/>")),
    )
    .await?;
    err(
        &reply,
        "modify",
        "unexpected-request",
        Some("not-subscribed"),
    );
    ok(&subscribe(&mut a, &ps, "n").await?);
    ok(&iq(
        &mut a,
        &ps,
        "set",
        &pubsub(&format!("<unsubscribe node='n' jid='{jid}'/>")),
    )
    .await?);
    // Unsubscribing someone else is forbidden.
    let mut b = user(server, "b").await?;
    let reply = iq(
        &mut b,
        &ps,
        "set",
        &pubsub(&format!("<unsubscribe node='n' jid='{jid}'/>")),
    )
    .await?;
    err(&reply, "auth", "forbidden", None);
    Ok::<_, anyhow::Error>(())
});

both_servers!(
    subscription_options_are_read_and_changed,
    |server| async move {
        let ps = start(server).await?;
        let mut a = user(server, "a").await?;
        create(&mut a, &ps, "n", &[]).await?;
        let jid = a.bare_jid().to_owned();
        ok(&subscribe(&mut a, &ps, "n").await?);
        let reply = iq(
            &mut a,
            &ps,
            "get",
            &pubsub(&format!("<options node='n' jid='{jid}'/>")),
        )
        .await?;
        ok(&reply);
        let x = reply
            .get_child("pubsub", NS_PUBSUB)
            .and_then(|p| p.get_child("options", NS_PUBSUB))
            .and_then(|o| o.get_child("x", NS_DATA))
            .expect("options form");
        assert!(x
            .children()
            .any(|f| f.attr("var") == Some("pubsub#deliver")));
        let options = form(
            "http://jabber.org/protocol/pubsub#subscribe_options",
            &[("pubsub#deliver", "false")],
        );
        ok(&iq(
            &mut a,
            &ps,
            "set",
            &pubsub(&format!(
                "<options node='n' jid='{jid}'>{options}</options>"
            )),
        )
        .await?);
        let reply = iq(
            &mut a,
            &ps,
            "get",
            &pubsub(&format!("<options node='n' jid='{jid}'/>")),
        )
        .await?;
        let deliver = reply
            .get_child("pubsub", NS_PUBSUB)
            .and_then(|p| p.get_child("options", NS_PUBSUB))
            .and_then(|o| o.get_child("x", NS_DATA))
            .and_then(|x| {
                x.children()
                    .find(|f| f.attr("var") == Some("pubsub#deliver"))
                    .cloned()
            })
            .and_then(|f| f.children().next().map(|v| v.text()));
        assert!(
            matches!(deliver.as_deref(), Some("false" | "0")),
            "{deliver:?}"
        );
        let bad = form(
            "http://jabber.org/protocol/pubsub#subscribe_options",
            &[("pubsub#deliver", "perhaps")],
        );
        let reply = iq(
            &mut a,
            &ps,
            "set",
            &pubsub(&format!("<options node='n' jid='{jid}'>{bad}</options>")),
        )
        .await?;
        err(&reply, "modify", "bad-request", Some("invalid-options"));
        // Options of a subscription that does not exist.
        let mut b = user(server, "b").await?;
        let bj = b.bare_jid().to_owned();
        let reply = iq(
            &mut b,
            &ps,
            "get",
            &pubsub(&format!("<options node='n' jid='{bj}'/>")),
        )
        .await?;
        err(
            &reply,
            "modify",
            "unexpected-request",
            Some("not-subscribed"),
        );
        let reply = iq(
            &mut b,
            &ps,
            "get",
            &pubsub(&format!("<options node='n' jid='{jid}'/>")),
        )
        .await?;
        err(&reply, "auth", "forbidden", None);
        Ok::<_, anyhow::Error>(())
    }
);

both_servers!(subscribe_with_options_applies_them, |server| async move {
    let ps = start(server).await?;
    let mut a = user(server, "a").await?;
    create(&mut a, &ps, "n", &[]).await?;
    let jid = a.bare_jid().to_owned();
    let options = form(
        "http://jabber.org/protocol/pubsub#subscribe_options",
        &[("pubsub#deliver", "0")],
    );
    // Exactly XEP-0060 Example 69: <options/> without a jid.
    let reply = iq(
        &mut a,
        &ps,
        "set",
        &pubsub(&format!(
            "<subscribe node='n' jid='{jid}'/><options>{options}</options>"
        )),
    )
    .await?;
    ok(&reply);
    let reply = iq(
        &mut a,
        &ps,
        "get",
        &pubsub(&format!("<options node='n' jid='{jid}'/>")),
    )
    .await?;
    let xml = pubsubd_testkit::stanza::to_xml(&reply);
    assert!(xml.contains("pubsub#deliver"), "{xml}");
    assert!(
        xml.contains("<value>false</value>") || xml.contains("<value>0</value>"),
        "{xml}"
    );
    Ok::<_, anyhow::Error>(())
});

both_servers!(
    own_subscriptions_and_affiliations_service_wide_and_per_node,
    |server| async move {
        let ps = start(server).await?;
        let mut a = user(server, "a").await?;
        create(&mut a, &ps, "mine", &[]).await?;
        let mut b = user(server, "b").await?;
        create(&mut b, &ps, "theirs", &[]).await?;
        ok(&subscribe(&mut a, &ps, "theirs").await?);
        let reply = iq(&mut a, &ps, "get", &pubsub("<affiliations/>")).await?;
        ok(&reply);
        let affs: Vec<(Option<String>, Option<String>)> = reply
            .get_child("pubsub", NS_PUBSUB)
            .and_then(|p| p.get_child("affiliations", NS_PUBSUB))
            .map(|a| {
                a.children()
                    .map(|c| {
                        (
                            c.attr("node").map(str::to_owned),
                            c.attr("affiliation").map(str::to_owned),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(affs, vec![(Some("mine".into()), Some("owner".into()))]);
        let reply = iq(
            &mut a,
            &ps,
            "get",
            &pubsub("<subscriptions node='theirs'/>"),
        )
        .await?;
        ok(&reply);
        let subs = reply
            .get_child("pubsub", NS_PUBSUB)
            .and_then(|p| p.get_child("subscriptions", NS_PUBSUB))
            .map(|s| s.children().count())
            .unwrap_or(0);
        assert_eq!(subs, 1);
        let reply = iq(&mut a, &ps, "get", &pubsub("<subscriptions node='mine'/>")).await?;
        ok(&reply);
        let reply = iq(&mut a, &ps, "get", &pubsub("<subscriptions node='ghost'/>")).await?;
        err(&reply, "cancel", "item-not-found", None);
        Ok::<_, anyhow::Error>(())
    }
);

both_servers!(
    whitelist_node_admits_members_only_and_hides_itself,
    |server| async move {
        let ps = start(server).await?;
        let mut owner_c = user(server, "owner").await?;
        create(
            &mut owner_c,
            &ps,
            "club",
            &[("pubsub#access_model", "whitelist")],
        )
        .await?;
        ok(&publish(
            &mut owner_c,
            &ps,
            "club",
            Some("1"),
            "<secret xmlns='urn:example'>x</secret>",
        )
        .await?);
        let mut outsider = user(server, "outsider").await?;
        err(
            &subscribe(&mut outsider, &ps, "club").await?,
            "cancel",
            "not-allowed",
            Some("closed-node"),
        );
        err(
            &iq(&mut outsider, &ps, "get", &pubsub("<items node='club'/>")).await?,
            "cancel",
            "not-allowed",
            Some("closed-node"),
        );
        // Neither listed nor described to outsiders.
        let reply = iq(
            &mut outsider,
            &ps,
            "get",
            "<query xmlns='http://jabber.org/protocol/disco#items'/>",
        )
        .await?;
        ok(&reply);
        assert_eq!(
            reply
                .get_child("query", "http://jabber.org/protocol/disco#items")
                .map(|q| q.children().count()),
            Some(0)
        );
        let reply = iq(
            &mut outsider,
            &ps,
            "get",
            "<query xmlns='http://jabber.org/protocol/disco#info' node='club'/>",
        )
        .await?;
        err(&reply, "cancel", "item-not-found", None);
        // A member may.
        let mut member = user(server, "member").await?;
        let mj = member.bare_jid().to_owned();
        ok(&iq(&mut owner_c, &ps, "set", &owner(&format!("<affiliations node='club'><affiliation jid='{mj}' affiliation='member'/></affiliations>"))).await?);
        ok(&subscribe(&mut member, &ps, "club").await?);
        assert_eq!(
            item_ids(&iq(&mut member, &ps, "get", &pubsub("<items node='club'/>")).await?),
            vec!["1"]
        );
        Ok::<_, anyhow::Error>(())
    }
);

both_servers!(
    outcast_can_neither_subscribe_nor_retrieve,
    |server| async move {
        let ps = start(server).await?;
        let mut owner_c = user(server, "owner").await?;
        create(&mut owner_c, &ps, "n", &[]).await?;
        let mut bad = user(server, "bad").await?;
        ok(&subscribe(&mut bad, &ps, "n").await?);
        let bj = bad.bare_jid().to_owned();
        ok(&iq(&mut owner_c, &ps, "set", &owner(&format!("<affiliations node='n'><affiliation jid='{bj}' affiliation='outcast'/></affiliations>"))).await?);
        // Banning removed the subscription.
        let reply = iq(&mut bad, &ps, "get", &pubsub("<subscriptions node='n'/>")).await?;
        let subs = reply
            .get_child("pubsub", NS_PUBSUB)
            .and_then(|p| p.get_child("subscriptions", NS_PUBSUB))
            .map(|s| s.children().count())
            .unwrap_or(0);
        assert_eq!(subs, 0);
        err(
            &subscribe(&mut bad, &ps, "n").await?,
            "auth",
            "forbidden",
            None,
        );
        err(
            &iq(&mut bad, &ps, "get", &pubsub("<items node='n'/>")).await?,
            "auth",
            "forbidden",
            None,
        );
        Ok::<_, anyhow::Error>(())
    }
);

both_servers!(
    authorize_node_makes_subscriptions_pending_until_the_owner_approves,
    |server| async move {
        let ps = start(server).await?;
        let mut owner_c = user(server, "owner").await?;
        create(
            &mut owner_c,
            &ps,
            "n",
            &[("pubsub#access_model", "authorize")],
        )
        .await?;
        ok(&publish(
            &mut owner_c,
            &ps,
            "n",
            Some("1"),
            "<x xmlns='urn:example'/>",
        )
        .await?);
        let mut sub = user(server, "sub").await?;
        let reply = subscribe(&mut sub, &ps, "n").await?;
        ok(&reply);
        assert_eq!(
            subscription_of(&reply)
                .and_then(|s| s.attr("subscription").map(str::to_owned))
                .as_deref(),
            Some("pending")
        );
        err(
            &subscribe(&mut sub, &ps, "n").await?,
            "auth",
            "not-authorized",
            Some("pending-subscription"),
        );
        err(
            &iq(&mut sub, &ps, "get", &pubsub("<items node='n'/>")).await?,
            "auth",
            "not-authorized",
            Some("not-subscribed"),
        );
        // The owner sees it pending and approves it.
        let reply = iq(
            &mut owner_c,
            &ps,
            "get",
            &owner("<subscriptions node='n'/>"),
        )
        .await?;
        ok(&reply);
        let sj = sub.bare_jid().to_owned();
        let pending: Vec<_> = reply
            .get_child("pubsub", NS_OWNER)
            .and_then(|p| p.get_child("subscriptions", NS_OWNER))
            .map(|s| {
                s.children()
                    .map(|c| {
                        (
                            c.attr("jid").map(str::to_owned),
                            c.attr("subscription").map(str::to_owned),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(
            pending,
            vec![(Some(sj.clone()), Some("pending".to_owned()))]
        );
        ok(&iq(&mut owner_c, &ps, "set", &owner(&format!("<subscriptions node='n'><subscription jid='{sj}' subscription='subscribed'/></subscriptions>"))).await?);
        assert_eq!(
            item_ids(&iq(&mut sub, &ps, "get", &pubsub("<items node='n'/>")).await?),
            vec!["1"]
        );
        Ok::<_, anyhow::Error>(())
    }
);

both_servers!(
    default_subscription_options_are_offered,
    |server| async move {
        let ps = start(server).await?;
        let mut a = user(server, "a").await?;
        let reply = iq(&mut a, &ps, "get", &pubsub("<default/>")).await?;
        ok(&reply);
        let form_type = reply
            .get_child("pubsub", NS_PUBSUB)
            .and_then(|p| p.get_child("default", NS_PUBSUB))
            .and_then(|d| d.get_child("x", NS_DATA))
            .and_then(|x| {
                x.children()
                    .find(|f| f.attr("var") == Some("FORM_TYPE"))
                    .cloned()
            })
            .and_then(|f| f.children().next().map(|v| v.text()));
        assert_eq!(
            form_type.as_deref(),
            Some("http://jabber.org/protocol/pubsub#subscribe_options")
        );
        Ok::<_, anyhow::Error>(())
    }
);
