//! XEP-0060 owner use cases against real Prosody and ejabberd: configure (form,
//! submit, cancel, trimming), default configuration, delete, purge, affiliations
//! (last owner), and node metadata.

mod common;

use common::*;
use pubsubd_testkit::{both_servers, Element};

fn field_value(x: &Element, var: &str) -> Option<String> {
    x.children()
        .find(|f| f.attr("var") == Some(var))
        .and_then(|f| f.children().find(|c| c.name() == "value").map(|v| v.text()))
}

both_servers!(
    owner_reads_and_submits_the_configuration_form,
    |server| async move {
        let ps = start(server).await?;
        let mut a = user(server, "a").await?;
        create(&mut a, &ps, "n", &[]).await?;
        let reply = iq(&mut a, &ps, "get", &owner("<configure node='n'/>")).await?;
        ok(&reply);
        let x = reply
            .get_child("pubsub", NS_OWNER)
            .and_then(|p| p.get_child("configure", NS_OWNER))
            .and_then(|c| c.get_child("x", NS_DATA))
            .cloned()
            .expect("config form");
        assert_eq!(x.attr("type"), Some("form"));
        assert_eq!(
            field_value(&x, "pubsub#access_model").as_deref(),
            Some("open")
        );
        let submit = config_form(&[
            ("pubsub#title", "Renamed"),
            ("pubsub#access_model", "whitelist"),
        ]);
        ok(&iq(
            &mut a,
            &ps,
            "set",
            &owner(&format!("<configure node='n'>{submit}</configure>")),
        )
        .await?);
        let reply = iq(&mut a, &ps, "get", &owner("<configure node='n'/>")).await?;
        let x = reply
            .get_child("pubsub", NS_OWNER)
            .and_then(|p| p.get_child("configure", NS_OWNER))
            .and_then(|c| c.get_child("x", NS_DATA))
            .cloned()
            .expect("config form");
        assert_eq!(field_value(&x, "pubsub#title").as_deref(), Some("Renamed"));
        assert_eq!(
            field_value(&x, "pubsub#access_model").as_deref(),
            Some("whitelist")
        );
        // A cancelled form changes nothing.
        let cancel = format!("<x xmlns='{NS_DATA}' type='cancel'/>");
        ok(&iq(
            &mut a,
            &ps,
            "set",
            &owner(&format!("<configure node='n'>{cancel}</configure>")),
        )
        .await?);
        // Invalid values are refused and change nothing.
        let bad = config_form(&[("pubsub#max_items", "lots")]);
        err(
            &iq(
                &mut a,
                &ps,
                "set",
                &owner(&format!("<configure node='n'>{bad}</configure>")),
            )
            .await?,
            "modify",
            "not-acceptable",
            None,
        );
        // Only owners configure.
        let mut b = user(server, "b").await?;
        err(
            &iq(&mut b, &ps, "get", &owner("<configure node='n'/>")).await?,
            "auth",
            "forbidden",
            None,
        );
        err(
            &iq(&mut b, &ps, "get", &owner("<configure/>")).await?,
            "modify",
            "bad-request",
            Some("nodeid-required"),
        );
        Ok::<_, anyhow::Error>(())
    }
);

both_servers!(
    lowering_max_items_trims_the_oldest_items,
    |server| async move {
        let ps = start(server).await?;
        let mut a = user(server, "a").await?;
        create(&mut a, &ps, "n", &[]).await?;
        for i in 1..=5 {
            ok(&publish(
                &mut a,
                &ps,
                "n",
                Some(&format!("i{i}")),
                "<x xmlns='urn:example'/>",
            )
            .await?);
        }
        let submit = config_form(&[("pubsub#max_items", "2")]);
        ok(&iq(
            &mut a,
            &ps,
            "set",
            &owner(&format!("<configure node='n'>{submit}</configure>")),
        )
        .await?);
        assert_eq!(
            item_ids(&iq(&mut a, &ps, "get", &pubsub("<items node='n'/>")).await?),
            vec!["i5", "i4"]
        );
        ok(&publish(&mut a, &ps, "n", Some("i6"), "<x xmlns='urn:example'/>").await?);
        assert_eq!(
            item_ids(&iq(&mut a, &ps, "get", &pubsub("<items node='n'/>")).await?),
            vec!["i6", "i5"]
        );
        Ok::<_, anyhow::Error>(())
    }
);

both_servers!(
    default_node_configuration_follows_the_service_policy,
    |server| async move {
        let ps = start_with(
            server,
            "[service.default_config]\nmax_items = 7\nnotification_type = 'normal'\n",
        )
        .await?;
        let mut a = user(server, "a").await?;
        let reply = iq(&mut a, &ps, "get", &owner("<default/>")).await?;
        ok(&reply);
        let x = reply
            .get_child("pubsub", NS_OWNER)
            .and_then(|p| p.get_child("default", NS_OWNER))
            .and_then(|d| d.get_child("x", NS_DATA))
            .cloned()
            .expect("default form");
        assert_eq!(field_value(&x, "pubsub#max_items").as_deref(), Some("7"));
        assert_eq!(
            field_value(&x, "pubsub#notification_type").as_deref(),
            Some("normal")
        );
        Ok::<_, anyhow::Error>(())
    }
);

both_servers!(owner_deletes_and_purges_nodes, |server| async move {
    let ps = start(server).await?;
    let mut a = user(server, "a").await?;
    create(&mut a, &ps, "p", &[]).await?;
    ok(&publish(&mut a, &ps, "p", Some("1"), "<x xmlns='urn:example'/>").await?);
    let mut b = user(server, "b").await?;
    err(
        &iq(&mut b, &ps, "set", &owner("<purge node='p'/>")).await?,
        "auth",
        "forbidden",
        None,
    );
    err(
        &iq(&mut b, &ps, "set", &owner("<delete node='p'/>")).await?,
        "auth",
        "forbidden",
        None,
    );
    ok(&iq(&mut a, &ps, "set", &owner("<purge node='p'/>")).await?);
    assert!(item_ids(&iq(&mut a, &ps, "get", &pubsub("<items node='p'/>")).await?).is_empty());
    ok(&iq(
        &mut a,
        &ps,
        "set",
        &owner("<delete node='p'><redirect uri='xmpp:other@example?;node=q'/></delete>"),
    )
    .await?);
    err(
        &iq(&mut a, &ps, "get", &pubsub("<items node='p'/>")).await?,
        "cancel",
        "item-not-found",
        None,
    );
    err(
        &iq(&mut a, &ps, "set", &owner("<delete node='p'/>")).await?,
        "cancel",
        "item-not-found",
        None,
    );
    // The name is free again.
    create(&mut a, &ps, "p", &[]).await?;
    Ok::<_, anyhow::Error>(())
});

both_servers!(
    owner_manages_affiliations_and_the_last_owner_cannot_leave,
    |server| async move {
        let ps = start(server).await?;
        let mut a = user(server, "a").await?;
        create(&mut a, &ps, "n", &[]).await?;
        let aj = a.bare_jid().to_owned();
        let mut b = user(server, "b").await?;
        let bj = b.bare_jid().to_owned();
        err(
        &iq(&mut a, &ps, "set", &owner(&format!("<affiliations node='n'><affiliation jid='{aj}' affiliation='none'/></affiliations>"))).await?,
        "modify",
        "not-acceptable",
        None,
    );
        ok(&iq(&mut a, &ps, "set", &owner(&format!("<affiliations node='n'><affiliation jid='{bj}' affiliation='publish-only'/></affiliations>"))).await?);
        let reply = iq(&mut a, &ps, "get", &owner("<affiliations node='n'/>")).await?;
        ok(&reply);
        let mut listed: Vec<(String, String)> = reply
            .get_child("pubsub", NS_OWNER)
            .and_then(|p| p.get_child("affiliations", NS_OWNER))
            .map(|l| {
                l.children()
                    .map(|c| {
                        (
                            c.attr("jid").unwrap_or("").to_owned(),
                            c.attr("affiliation").unwrap_or("").to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        listed.sort();
        let mut expected = vec![
            (aj.clone(), "owner".to_owned()),
            (bj.clone(), "publish-only".to_owned()),
        ];
        expected.sort();
        assert_eq!(listed, expected);
        // publish-only may publish but not retrieve or subscribe.
        ok(&publish(&mut b, &ps, "n", Some("1"), "<x xmlns='urn:example'/>").await?);
        err(
            &iq(&mut b, &ps, "get", &pubsub("<items node='n'/>")).await?,
            "auth",
            "forbidden",
            None,
        );
        err(
            &subscribe(&mut b, &ps, "n").await?,
            "auth",
            "forbidden",
            None,
        );
        // Handing ownership over, then leaving, is fine.
        ok(&iq(&mut a, &ps, "set", &owner(&format!("<affiliations node='n'><affiliation jid='{bj}' affiliation='owner'/><affiliation jid='{aj}' affiliation='none'/></affiliations>"))).await?);
        err(
            &iq(&mut a, &ps, "get", &owner("<affiliations node='n'/>")).await?,
            "auth",
            "forbidden",
            None,
        );
        ok(&iq(&mut b, &ps, "get", &owner("<affiliations node='n'/>")).await?);
        Ok::<_, anyhow::Error>(())
    }
);

both_servers!(node_metadata_describes_the_node, |server| async move {
    let ps = start(server).await?;
    let mut a = user(server, "a").await?;
    create(
        &mut a,
        &ps,
        "n",
        &[
            ("pubsub#title", "Musings"),
            ("pubsub#description", "Hamlet's blog"),
        ],
    )
    .await?;
    ok(&publish(&mut a, &ps, "n", Some("1"), "<x xmlns='urn:example'/>").await?);
    let mut b = user(server, "b").await?;
    ok(&subscribe(&mut b, &ps, "n").await?);
    let reply = iq(
        &mut b,
        &ps,
        "get",
        "<query xmlns='http://jabber.org/protocol/disco#info' node='n'/>",
    )
    .await?;
    ok(&reply);
    let q = reply
        .get_child("query", "http://jabber.org/protocol/disco#info")
        .expect("query");
    let identity = q
        .get_child("identity", "http://jabber.org/protocol/disco#info")
        .expect("identity");
    assert_eq!(
        (identity.attr("category"), identity.attr("type")),
        (Some("pubsub"), Some("leaf"))
    );
    let x = q.get_child("x", NS_DATA).cloned().expect("meta-data form");
    assert_eq!(
        field_value(&x, "FORM_TYPE").as_deref(),
        Some("http://jabber.org/protocol/pubsub#meta-data")
    );
    assert_eq!(field_value(&x, "pubsub#title").as_deref(), Some("Musings"));
    assert_eq!(
        field_value(&x, "pubsub#description").as_deref(),
        Some("Hamlet's blog")
    );
    assert_eq!(
        field_value(&x, "pubsub#owner").as_deref(),
        Some(a.bare_jid())
    );
    assert_eq!(
        field_value(&x, "pubsub#num_subscribers").as_deref(),
        Some("1")
    );
    assert_eq!(field_value(&x, "pubsub#num_items").as_deref(), Some("1"));
    assert!(field_value(&x, "pubsub#creation_date").is_some());
    // Items of the node through disco#items.
    let reply = iq(
        &mut b,
        &ps,
        "get",
        "<query xmlns='http://jabber.org/protocol/disco#items' node='n'/>",
    )
    .await?;
    ok(&reply);
    let names: Vec<_> = reply
        .get_child("query", "http://jabber.org/protocol/disco#items")
        .map(|q| {
            q.children()
                .filter_map(|i| i.attr("name").map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(names, vec!["1"]);
    let reply = iq(
        &mut b,
        &ps,
        "get",
        "<query xmlns='http://jabber.org/protocol/disco#info' node='ghost'/>",
    )
    .await?;
    err(&reply, "cancel", "item-not-found", None);
    Ok::<_, anyhow::Error>(())
});

both_servers!(
    service_admin_acts_as_owner_of_every_node,
    |server| async move {
        let admin_account = server.create_user("root").await?;
        let config = format!("[service]\nadmins = ['{}']\n", admin_account.jid());
        let ps = start_with(server, &config).await?;
        let mut a = user(server, "a").await?;
        create(&mut a, &ps, "n", &[]).await?;
        let mut admin = pubsubd_testkit::Client::login(server.c2s_addr(), &admin_account).await?;
        ok(&iq(&mut admin, &ps, "get", &owner("<configure node='n'/>")).await?);
        ok(&iq(&mut admin, &ps, "set", &owner("<delete node='n'/>")).await?);
        Ok::<_, anyhow::Error>(())
    }
);

both_servers!(node_creation_can_be_restricted, |server| async move {
    let ps = start_with(server, "[service]\ncreate_nodes = 'nobody'\n").await?;
    let mut a = user(server, "a").await?;
    err(
        &iq(&mut a, &ps, "set", &pubsub("<create node='n'/>")).await?,
        "auth",
        "forbidden",
        None,
    );
    err(
        &publish(&mut a, &ps, "n", Some("1"), "<x xmlns='urn:example'/>").await?,
        "auth",
        "forbidden",
        None,
    );
    Ok::<_, anyhow::Error>(())
});

both_servers!(
    service_quotas_limit_nodes_per_owner_and_subscriptions_per_jid,
    |server| async move {
        let ps = start_with(
            server,
            "[service]\nmax_nodes_per_owner = 2\nmax_subscriptions_per_jid = 1\nmax_items = 5\n",
        )
        .await?;
        let mut a = user(server, "a").await?;
        create(&mut a, &ps, "one", &[]).await?;
        create(&mut a, &ps, "two", &[]).await?;
        err(
            &iq(&mut a, &ps, "set", &pubsub("<create node='three'/>")).await?,
            "cancel",
            "not-allowed",
            Some("max-nodes-exceeded"),
        );
        let mut b = user(server, "b").await?;
        ok(&subscribe(&mut b, &ps, "one").await?);
        err(
            &subscribe(&mut b, &ps, "two").await?,
            "wait",
            "policy-violation",
            Some("too-many-subscriptions"),
        );
        // The items ceiling caps what an owner may ask for.
        let form = config_form(&[("pubsub#max_items", "50")]);
        err(
            &iq(
                &mut a,
                &ps,
                "set",
                &owner(&format!("<configure node='one'>{form}</configure>")),
            )
            .await?,
            "modify",
            "not-acceptable",
            None,
        );
        Ok::<_, anyhow::Error>(())
    }
);
