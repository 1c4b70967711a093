//! XEP-0060 event notifications end to end, against real Prosody and ejabberd: a
//! request to pubsubd, its job through the fan-out engine, the notification as the
//! subscriber's client receives it.

mod common;

use common::*;
use pubsubd_testkit::{both_servers, stanza, Element};

fn event_child<'a>(msg: &'a Element, name: &str) -> Option<&'a Element> {
    msg.get_child("event", NS_EVENT)?.get_child(name, NS_EVENT)
}

both_servers!(
    subscriber_receives_published_atom_entry_exactly,
    |server| async move {
        let ps = start(server).await?;
        let mut owner_c = user(server, "owner").await?;
        create(&mut owner_c, &ps, "blog", &[]).await?;
        let mut sub = user(server, "sub").await?;
        ok(&subscribe(&mut sub, &ps, "blog").await?);
        let entry = atom_entry("42", "To be");
        ok(&publish(&mut owner_c, &ps, "blog", Some("e42"), &entry).await?);
        let msg = next_event(&mut sub, &ps, NOTIFY)
            .await
            .expect("notification");
        assert_eq!(msg.attr("type"), Some("headline"));
        let items = event_child(&msg, "items").expect("items");
        assert_eq!(items.attr("node"), Some("blog"));
        let item = items.get_child("item", NS_EVENT).expect("item");
        assert_eq!(item.attr("id"), Some("e42"));
        assert_eq!(item.attr("publisher"), None, "itemreply is none by default");
        let got = item
            .get_child("entry", "http://www.w3.org/2005/Atom")
            .expect("entry");
        assert_eq!(stanza::to_xml(got), stanza::to_xml(&stanza::parse(&entry)));
        // Then retrieval gives the same.
        let reply = iq(&mut sub, &ps, "get", &pubsub("<items node='blog'/>")).await?;
        let stored = items_of(&reply)[0]
            .get_child("entry", "http://www.w3.org/2005/Atom")
            .cloned()
            .expect("entry");
        assert_eq!(stanza::to_xml(&stored), stanza::to_xml(got));
        Ok::<_, anyhow::Error>(())
    }
);

both_servers!(
    retract_purge_configure_and_delete_are_notified,
    |server| async move {
        let ps = start(server).await?;
        let mut o = user(server, "owner").await?;
        create(
            &mut o,
            &ps,
            "n",
            &[
                ("pubsub#notify_config", "1"),
                ("pubsub#notification_type", "normal"),
            ],
        )
        .await?;
        let mut s = user(server, "sub").await?;
        ok(&subscribe(&mut s, &ps, "n").await?);
        ok(&publish(&mut o, &ps, "n", Some("1"), "<x xmlns='urn:example'/>").await?);
        let m = next_event(&mut s, &ps, NOTIFY).await.expect("item");
        // `normal` is the default type: ejabberd leaves the attribute out.
        assert!(
            matches!(m.attr("type"), None | Some("normal")),
            "{}",
            stanza::to_xml(&m)
        );
        ok(&iq(
            &mut o,
            &ps,
            "set",
            &pubsub("<retract node='n' notify='true'><item id='1'/></retract>"),
        )
        .await?);
        let m = next_event(&mut s, &ps, NOTIFY).await.expect("retract");
        let r = event_child(&m, "items")
            .and_then(|i| i.get_child("retract", NS_EVENT))
            .expect("retract");
        assert_eq!(r.attr("id"), Some("1"));
        ok(&iq(&mut o, &ps, "set", &owner("<purge node='n'/>")).await?);
        let m = next_event(&mut s, &ps, NOTIFY).await.expect("purge");
        assert!(event_child(&m, "purge").is_some(), "{}", stanza::to_xml(&m));
        let form = config_form(&[("pubsub#title", "New title")]);
        ok(&iq(
            &mut o,
            &ps,
            "set",
            &owner(&format!("<configure node='n'>{form}</configure>")),
        )
        .await?);
        let m = next_event(&mut s, &ps, NOTIFY)
            .await
            .expect("configuration");
        let c = event_child(&m, "configuration").expect("configuration");
        assert!(
            stanza::to_xml(c).contains("New title"),
            "{}",
            stanza::to_xml(c)
        );
        ok(&iq(
            &mut o,
            &ps,
            "set",
            &owner("<delete node='n'><redirect uri='xmpp:ps?;node=m'/></delete>"),
        )
        .await?);
        let m = next_event(&mut s, &ps, NOTIFY).await.expect("delete");
        let d = event_child(&m, "delete").expect("delete");
        assert_eq!(
            d.get_child("redirect", NS_EVENT)
                .and_then(|r| r.attr("uri")),
            Some("xmpp:ps?;node=m")
        );
        Ok::<_, anyhow::Error>(())
    }
);

both_servers!(node_settings_shape_notifications, |server| async move {
    let ps = start(server).await?;
    let mut o = user(server, "owner").await?;
    create(
        &mut o,
        &ps,
        "bare",
        &[
            ("pubsub#deliver_payloads", "0"),
            ("pubsub#itemreply", "publisher"),
        ],
    )
    .await?;
    create(
        &mut o,
        &ps,
        "silent",
        &[("pubsub#deliver_notifications", "0")],
    )
    .await?;
    create(
        &mut o,
        &ps,
        "quiet_retract",
        &[("pubsub#notify_retract", "0")],
    )
    .await?;
    let mut s = user(server, "sub").await?;
    for n in ["bare", "silent", "quiet_retract"] {
        ok(&subscribe(&mut s, &ps, n).await?);
    }
    ok(&publish(&mut o, &ps, "silent", Some("1"), "<x xmlns='urn:example'/>").await?);
    ok(&publish(
        &mut o,
        &ps,
        "quiet_retract",
        Some("1"),
        "<x xmlns='urn:example'/>",
    )
    .await?);
    ok(&iq(
        &mut o,
        &ps,
        "set",
        &pubsub("<retract node='quiet_retract'><item id='1'/></retract>"),
    )
    .await?);
    ok(&publish(
        &mut o,
        &ps,
        "bare",
        Some("1"),
        "<x xmlns='urn:example'>secret</x>",
    )
    .await?);
    // Two notifications: quiet_retract's item (and no retract event) and bare's item;
    // nothing from silent. Jobs of different nodes run in parallel, so only the order
    // within one node is promised, not the order between the two.
    let mut events = Vec::new();
    for which in ["first", "second"] {
        events.push(next_event(&mut s, &ps, NOTIFY).await.expect(which));
    }
    let node_of = |m: &Element| {
        event_child(m, "items")
            .and_then(|i| i.attr("node"))
            .map(str::to_owned)
    };
    events.sort_by_key(node_of);
    let nodes: Vec<_> = events.iter().map(node_of).collect();
    assert_eq!(
        nodes,
        [Some("bare".to_owned()), Some("quiet_retract".to_owned())],
        "{}",
        events
            .iter()
            .map(stanza::to_xml)
            .collect::<Vec<_>>()
            .join("\n")
    );
    let quiet_items = event_child(&events[1], "items").expect("items");
    assert!(
        quiet_items.get_child("item", NS_EVENT).is_some(),
        "quiet_retract's notification is its publish, not the retract"
    );
    let items = event_child(&events[0], "items").expect("items");
    let item = items.get_child("item", NS_EVENT).expect("item");
    assert_eq!(
        item.children().count(),
        0,
        "payload delivered on a deliver_payloads=0 node"
    );
    assert_eq!(
        item.attr("publisher")
            .map(|p| p.split('/').next().unwrap_or(p)),
        Some(o.bare_jid())
    );
    assert!(next_event(&mut s, &ps, QUIET).await.is_none());
    Ok::<_, anyhow::Error>(())
});

both_servers!(
    new_subscriber_gets_the_last_item_with_a_delay,
    |server| async move {
        let ps = start(server).await?;
        let mut o = user(server, "owner").await?;
        create(
            &mut o,
            &ps,
            "n",
            &[("pubsub#send_last_published_item", "on_sub")],
        )
        .await?;
        // A first subscriber's notifications show when fan-out of both items is done; a
        // subscriber arriving earlier would (rightly) get them live.
        let mut early = user(server, "early").await?;
        ok(&subscribe(&mut early, &ps, "n").await?);
        ok(&publish(
            &mut o,
            &ps,
            "n",
            Some("old"),
            "<x xmlns='urn:example'>old</x>",
        )
        .await?);
        ok(&publish(
            &mut o,
            &ps,
            "n",
            Some("last"),
            "<x xmlns='urn:example'>last</x>",
        )
        .await?);
        for _ in 0..2 {
            next_event(&mut early, &ps, NOTIFY)
                .await
                .expect("live notification");
        }
        let mut s = user(server, "sub").await?;
        ok(&subscribe(&mut s, &ps, "n").await?);
        let m = next_event(&mut s, &ps, NOTIFY).await.expect("last item");
        let item = event_child(&m, "items")
            .and_then(|i| i.get_child("item", NS_EVENT))
            .expect("item");
        assert_eq!(item.attr("id"), Some("last"));
        assert!(
            m.get_child("delay", "urn:xmpp:delay").is_some(),
            "no delay on {}",
            stanza::to_xml(&m)
        );
        assert!(
            next_event(&mut s, &ps, QUIET).await.is_none(),
            "only the last item"
        );
        Ok::<_, anyhow::Error>(())
    }
);

/// The approval form an owner received, as `(subid, subscriber jid)`.
fn approval_request(msg: &Element) -> Option<(String, String)> {
    let x = msg.get_child("x", NS_DATA)?;
    let value = |var: &str| {
        x.children()
            .find(|f| f.attr("var") == Some(var))
            .and_then(|f| f.children().next().map(|v| v.text()))
    };
    Some((value("pubsub#subid")?, value("pubsub#subscriber_jid")?))
}

both_servers!(
    owner_approves_and_denies_pending_subscriptions_by_message,
    |server| async move {
        let ps = start(server).await?;
        let mut o = user(server, "owner").await?;
        create(&mut o, &ps, "club", &[("pubsub#access_model", "authorize")]).await?;
        for allow in [true, false] {
            let mut s = user(server, if allow { "welcome" } else { "unwelcome" }).await?;
            ok(&subscribe(&mut s, &ps, "club").await?);
            let from = ps.jid().to_owned();
            let form_msg = o
                .wait_for(
                    move |m: &Element| {
                        m.name() == "message"
                            && m.attr("from") == Some(from.as_str())
                            && m.get_child("x", NS_DATA).is_some()
                    },
                    NOTIFY,
                )
                .await?;
            let (subid, jid) = approval_request(&form_msg).expect("approval form");
            assert_eq!(jid, s.bare_jid());
            let answer = format!(
            "<message to='{}'><x xmlns='{NS_DATA}' type='submit'>\
             <field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#subscribe_authorization</value></field>\
             <field var='pubsub#subid'><value>{subid}</value></field>\
             <field var='pubsub#node'><value>club</value></field>\
             <field var='pubsub#subscriber_jid'><value>{jid}</value></field>\
             <field var='pubsub#allow'><value>{allow}</value></field></x></message>",
            ps.jid()
        );
            o.send(stanza::parse(&answer))?;
            let m = next_event(&mut s, &ps, NOTIFY)
                .await
                .expect("subscription state");
            let state = event_child(&m, "subscription")
                .and_then(|e| e.attr("subscription").map(str::to_owned));
            assert_eq!(
                state.as_deref(),
                Some(if allow { "subscribed" } else { "none" })
            );
            let reply = iq(&mut s, &ps, "get", &pubsub("<items node='club'/>")).await?;
            assert_eq!(
                reply.attr("type"),
                Some(if allow { "result" } else { "error" })
            );
        }
        Ok::<_, anyhow::Error>(())
    }
);

both_servers!(
    owners_hear_of_subscriptions_with_notify_sub,
    |server| async move {
        let ps = start(server).await?;
        let mut o = user(server, "owner").await?;
        create(&mut o, &ps, "n", &[("pubsub#notify_sub", "1")]).await?;
        let mut s = user(server, "sub").await?;
        ok(&subscribe(&mut s, &ps, "n").await?);
        let m = next_event(&mut o, &ps, NOTIFY).await.expect("owner notice");
        let e = event_child(&m, "subscription").expect("subscription");
        assert_eq!(e.attr("jid"), Some(s.bare_jid()));
        assert_eq!(e.attr("subscription"), Some("subscribed"));
        Ok::<_, anyhow::Error>(())
    }
);

both_servers!(
    outcasts_and_paused_subscribers_receive_nothing,
    |server| async move {
        let ps = start(server).await?;
        let mut o = user(server, "owner").await?;
        create(&mut o, &ps, "n", &[]).await?;
        let mut banned = user(server, "banned").await?;
        let mut paused = user(server, "paused").await?;
        let mut normal = user(server, "normal").await?;
        for c in [&mut banned, &mut paused, &mut normal] {
            ok(&subscribe(c, &ps, "n").await?);
        }
        let bj = banned.bare_jid().to_owned();
        ok(&iq(&mut o, &ps, "set", &owner(&format!("<affiliations node='n'><affiliation jid='{bj}' affiliation='outcast'/></affiliations>"))).await?);
        let pj = paused.bare_jid().to_owned();
        let off = form(
            "http://jabber.org/protocol/pubsub#subscribe_options",
            &[("pubsub#deliver", "0")],
        );
        ok(&iq(
            &mut paused,
            &ps,
            "set",
            &pubsub(&format!("<options node='n' jid='{pj}'>{off}</options>")),
        )
        .await?);
        ok(&publish(&mut o, &ps, "n", Some("1"), "<x xmlns='urn:example'/>").await?);
        assert!(next_event(&mut normal, &ps, NOTIFY).await.is_some());
        assert!(
            next_event(&mut banned, &ps, QUIET).await.is_none(),
            "an outcast was notified"
        );
        assert!(
            next_event(&mut paused, &ps, QUIET).await.is_none(),
            "a paused subscriber was notified"
        );
        Ok::<_, anyhow::Error>(())
    }
);

both_servers!(
    a_jid_with_two_subscriptions_gets_subid_headers,
    |server| async move {
        let ps = start(server).await?;
        let mut o = user(server, "owner").await?;
        create(&mut o, &ps, "n", &[]).await?;
        let mut s = user(server, "sub").await?;
        ok(&subscribe(&mut s, &ps, "n").await?);
        let full = s.jid().to_owned();
        ok(&iq(
            &mut s,
            &ps,
            "set",
            &pubsub(&format!("<subscribe node='n' jid='{full}'/>")),
        )
        .await?);
        ok(&publish(&mut o, &ps, "n", Some("1"), "<x xmlns='urn:example'/>").await?);
        let m = next_event(&mut s, &ps, NOTIFY).await.expect("notification");
        let headers = m
            .get_child("headers", "http://jabber.org/protocol/shim")
            .expect("SHIM headers");
        let subid = headers
            .children()
            .find(|h| h.attr("name") == Some("SubID"))
            .map(|h| h.text());
        assert!(
            subid.is_some_and(|s| !s.is_empty()),
            "{}",
            stanza::to_xml(&m)
        );
        Ok::<_, anyhow::Error>(())
    }
);
