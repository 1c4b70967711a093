//! XEP-0060 publisher and retrieval use cases against real Prosody and ejabberd:
//! create, publish (with and without id, overwrite, auto-create, preconditions,
//! size limit, payload rules), retract, retrieve (all, max_items, ids, RSM paging).

mod common;

use common::*;
use pubsubd_testkit::{both_servers, stanza, Client, Element};

both_servers!(owner_creates_node_and_it_is_listed, |server| async move {
    let ps = start(server).await?;
    let mut owner_c = user(server, "owner").await?;
    create(
        &mut owner_c,
        &ps,
        "princely_musings",
        &[("pubsub#title", "Princely Musings")],
    )
    .await?;
    let reply = iq(
        &mut owner_c,
        &ps,
        "get",
        "<query xmlns='http://jabber.org/protocol/disco#items'/>",
    )
    .await?;
    ok(&reply);
    let q = reply
        .get_child("query", "http://jabber.org/protocol/disco#items")
        .expect("query");
    let listed: Vec<_> = q
        .children()
        .map(|i| (i.attr("node"), i.attr("name")))
        .collect();
    assert_eq!(
        listed,
        vec![(Some("princely_musings"), Some("Princely Musings"))]
    );
    Ok::<_, anyhow::Error>(())
});

both_servers!(creating_an_existing_node_conflicts, |server| async move {
    let ps = start(server).await?;
    let mut a = user(server, "a").await?;
    create(&mut a, &ps, "dup", &[]).await?;
    let mut b = user(server, "b").await?;
    let reply = iq(&mut b, &ps, "set", &pubsub("<create node='dup'/>")).await?;
    err(&reply, "cancel", "conflict", None);
    Ok::<_, anyhow::Error>(())
});

both_servers!(instant_node_gets_a_generated_name, |server| async move {
    let ps = start(server).await?;
    let mut a = user(server, "a").await?;
    let reply = iq(&mut a, &ps, "set", &pubsub("<create/>")).await?;
    ok(&reply);
    let name = reply
        .get_child("pubsub", NS_PUBSUB)
        .and_then(|p| p.get_child("create", NS_PUBSUB))
        .and_then(|c| c.attr("node"))
        .expect("generated node name")
        .to_owned();
    assert_eq!(name.len(), 32);
    let reply = publish(&mut a, &ps, &name, Some("1"), "<x xmlns='urn:example'/>").await?;
    ok(&reply);
    Ok::<_, anyhow::Error>(())
});

both_servers!(
    published_atom_entry_is_retrieved_exactly,
    |server| async move {
        let ps = start(server).await?;
        let mut a = user(server, "a").await?;
        create(&mut a, &ps, "blog", &[]).await?;
        let entry = atom_entry("1", "Soliloquy");
        let reply = publish(
            &mut a,
            &ps,
            "blog",
            Some("ae890ac52d0df67ed7cfdf51b644e901"),
            &entry,
        )
        .await?;
        ok(&reply);
        assert_eq!(
            published_id(&reply).as_deref(),
            Some("ae890ac52d0df67ed7cfdf51b644e901")
        );
        let reply = iq(&mut a, &ps, "get", &pubsub("<items node='blog'/>")).await?;
        ok(&reply);
        let items = items_of(&reply);
        assert_eq!(items.len(), 1);
        let got = items[0]
            .get_child("entry", "http://www.w3.org/2005/Atom")
            .expect("entry");
        let sent = stanza::parse(&entry);
        assert_eq!(
            stanza::to_xml(got),
            stanza::to_xml(&sent),
            "payload changed in storage"
        );
        Ok::<_, anyhow::Error>(())
    }
);

both_servers!(
    publish_without_id_gets_a_unique_generated_id,
    |server| async move {
        let ps = start(server).await?;
        let mut a = user(server, "a").await?;
        create(&mut a, &ps, "n", &[]).await?;
        let r1 = publish(&mut a, &ps, "n", None, "<x xmlns='urn:example'/>").await?;
        let r2 = publish(&mut a, &ps, "n", None, "<x xmlns='urn:example'/>").await?;
        let (id1, id2) = (
            published_id(&r1).expect("id"),
            published_id(&r2).expect("id"),
        );
        assert_ne!(id1, id2);
        let reply = iq(&mut a, &ps, "get", &pubsub("<items node='n'/>")).await?;
        assert_eq!(item_ids(&reply), vec![id2, id1], "newest first");
        Ok::<_, anyhow::Error>(())
    }
);

both_servers!(
    publishing_an_existing_id_overwrites_and_becomes_newest,
    |server| async move {
        let ps = start(server).await?;
        let mut a = user(server, "a").await?;
        create(&mut a, &ps, "n", &[]).await?;
        for id in ["a", "b", "c"] {
            ok(&publish(
                &mut a,
                &ps,
                "n",
                Some(id),
                &format!("<v xmlns='urn:example'>{id}</v>"),
            )
            .await?);
        }
        ok(&publish(&mut a, &ps, "n", Some("a"), "<v xmlns='urn:example'>a2</v>").await?);
        let reply = iq(&mut a, &ps, "get", &pubsub("<items node='n'/>")).await?;
        assert_eq!(item_ids(&reply), vec!["a", "c", "b"]);
        let first = &items_of(&reply)[0];
        assert_eq!(
            first.get_child("v", "urn:example").map(|v| v.text()),
            Some("a2".into())
        );
        Ok::<_, anyhow::Error>(())
    }
);

both_servers!(
    publish_to_missing_node_auto_creates_it,
    |server| async move {
        let ps = start(server).await?;
        let mut a = user(server, "a").await?;
        ok(&publish(&mut a, &ps, "fresh", Some("1"), "<x xmlns='urn:example'/>").await?);
        // The publisher owns it.
        let reply = iq(&mut a, &ps, "get", &pubsub("<affiliations node='fresh'/>")).await?;
        ok(&reply);
        let aff = reply
            .get_child("pubsub", NS_PUBSUB)
            .and_then(|p| p.get_child("affiliations", NS_PUBSUB))
            .and_then(|a| a.children().next())
            .and_then(|a| a.attr("affiliation"))
            .map(str::to_owned);
        assert_eq!(aff.as_deref(), Some("owner"));
        Ok::<_, anyhow::Error>(())
    }
);

both_servers!(
    publish_to_missing_node_without_auto_create_is_item_not_found,
    |server| async move {
        let ps = start_with(server, "[service]\nauto_create = false\n").await?;
        let mut a = user(server, "a").await?;
        let reply = publish(
            &mut a,
            &ps,
            "nothere",
            Some("1"),
            "<x xmlns='urn:example'/>",
        )
        .await?;
        err(&reply, "cancel", "item-not-found", None);
        Ok::<_, anyhow::Error>(())
    }
);

both_servers!(
    publish_options_that_do_not_match_are_refused,
    |server| async move {
        let ps = start(server).await?;
        let mut a = user(server, "a").await?;
        create(&mut a, &ps, "n", &[("pubsub#access_model", "open")]).await?;
        let options = form(
            "http://jabber.org/protocol/pubsub#publish-options",
            &[("pubsub#access_model", "whitelist")],
        );
        let reply = iq(
        &mut a,
        &ps,
        "set",
        &pubsub(&format!("<publish node='n'><item id='1'><x xmlns='urn:example'/></item></publish><publish-options>{options}</publish-options>")),
    )
    .await?;
        err(&reply, "cancel", "conflict", Some("precondition-not-met"));
        // Nothing was stored.
        let reply = iq(&mut a, &ps, "get", &pubsub("<items node='n'/>")).await?;
        assert!(item_ids(&reply).is_empty());
        // Matching options publish.
        let options = form(
            "http://jabber.org/protocol/pubsub#publish-options",
            &[("pubsub#access_model", "open")],
        );
        let reply = iq(
        &mut a,
        &ps,
        "set",
        &pubsub(&format!("<publish node='n'><item id='1'><x xmlns='urn:example'/></item></publish><publish-options>{options}</publish-options>")),
    )
    .await?;
        ok(&reply);
        Ok::<_, anyhow::Error>(())
    }
);

both_servers!(
    only_publishers_may_publish_by_default,
    |server| async move {
        let ps = start(server).await?;
        let mut owner_c = user(server, "owner").await?;
        create(&mut owner_c, &ps, "n", &[]).await?;
        let mut other = user(server, "other").await?;
        let reply = publish(&mut other, &ps, "n", Some("1"), "<x xmlns='urn:example'/>").await?;
        err(&reply, "auth", "forbidden", None);
        // Made a publisher, it may.
        let jid = other.bare_jid().to_owned();
        ok(&iq(&mut owner_c, &ps, "set", &owner(&format!("<affiliations node='n'><affiliation jid='{jid}' affiliation='publisher'/></affiliations>"))).await?);
        ok(&publish(&mut other, &ps, "n", Some("1"), "<x xmlns='urn:example'/>").await?);
        Ok::<_, anyhow::Error>(())
    }
);

both_servers!(
    oversized_payload_is_refused_with_payload_too_big,
    |server| async move {
        let ps = start_with(server, "max_payload_size = 2000\n").await?;
        let mut a = user(server, "a").await?;
        create(&mut a, &ps, "n", &[]).await?;
        let big = format!("<x xmlns='urn:example'>{}</x>", "a".repeat(3000));
        let reply = publish(&mut a, &ps, "n", Some("1"), &big).await?;
        err(&reply, "modify", "not-acceptable", Some("payload-too-big"));
        let reply = iq(&mut a, &ps, "get", &pubsub("<items node='n'/>")).await?;
        assert!(item_ids(&reply).is_empty(), "nothing stored");
        ok(&publish(
            &mut a,
            &ps,
            "n",
            Some("1"),
            "<x xmlns='urn:example'>small</x>",
        )
        .await?);
        Ok::<_, anyhow::Error>(())
    }
);

both_servers!(
    payload_rules_follow_the_node_configuration,
    |server| async move {
        let ps = start(server).await?;
        let mut a = user(server, "a").await?;
        create(&mut a, &ps, "n", &[]).await?;
        // Persistent node: an item is required; payload delivery on: a payload too.
        let reply = iq(&mut a, &ps, "set", &pubsub("<publish node='n'/>")).await?;
        err(&reply, "modify", "bad-request", Some("item-required"));
        let reply = iq(
            &mut a,
            &ps,
            "set",
            &pubsub("<publish node='n'><item id='1'/></publish>"),
        )
        .await?;
        err(&reply, "modify", "bad-request", Some("payload-required"));
        let reply = iq(&mut a, &ps, "set", &pubsub("<publish node='n'><item id='1'><a xmlns='urn:x'/><b xmlns='urn:x'/></item></publish>")).await?;
        err(&reply, "modify", "bad-request", Some("invalid-payload"));
        // Transient notification-only node: no item at all.
        create(
            &mut a,
            &ps,
            "t",
            &[
                ("pubsub#persist_items", "0"),
                ("pubsub#deliver_payloads", "0"),
            ],
        )
        .await?;
        let reply = iq(
            &mut a,
            &ps,
            "set",
            &pubsub("<publish node='t'><item id='1'><a xmlns='urn:x'/></item></publish>"),
        )
        .await?;
        err(&reply, "modify", "bad-request", Some("item-forbidden"));
        ok(&iq(&mut a, &ps, "set", &pubsub("<publish node='t'/>")).await?);
        Ok::<_, anyhow::Error>(())
    }
);

both_servers!(
    retract_removes_the_item_and_missing_items_are_not_found,
    |server| async move {
        let ps = start(server).await?;
        let mut a = user(server, "a").await?;
        create(&mut a, &ps, "n", &[]).await?;
        ok(&publish(&mut a, &ps, "n", Some("1"), "<x xmlns='urn:example'/>").await?);
        ok(&publish(&mut a, &ps, "n", Some("2"), "<x xmlns='urn:example'/>").await?);
        ok(&iq(
            &mut a,
            &ps,
            "set",
            &pubsub("<retract node='n'><item id='1'/></retract>"),
        )
        .await?);
        let reply = iq(&mut a, &ps, "get", &pubsub("<items node='n'/>")).await?;
        assert_eq!(item_ids(&reply), vec!["2"]);
        let reply = iq(
            &mut a,
            &ps,
            "set",
            &pubsub("<retract node='n'><item id='1'/></retract>"),
        )
        .await?;
        err(&reply, "cancel", "item-not-found", None);
        let reply = iq(&mut a, &ps, "set", &pubsub("<retract node='n'/>")).await?;
        err(&reply, "modify", "bad-request", Some("item-required"));
        let reply = iq(
            &mut a,
            &ps,
            "set",
            &pubsub("<retract><item id='2'/></retract>"),
        )
        .await?;
        err(&reply, "modify", "bad-request", Some("nodeid-required"));
        // Someone without rights may not retract.
        let mut b = user(server, "b").await?;
        let reply = iq(
            &mut b,
            &ps,
            "set",
            &pubsub("<retract node='n'><item id='2'/></retract>"),
        )
        .await?;
        err(&reply, "auth", "forbidden", None);
        Ok::<_, anyhow::Error>(())
    }
);

both_servers!(
    retrieval_by_max_items_ids_and_rsm_pages,
    |server| async move {
        let ps = start(server).await?;
        let mut a = user(server, "a").await?;
        create(&mut a, &ps, "n", &[]).await?;
        for i in 1..=7 {
            ok(&publish(
                &mut a,
                &ps,
                "n",
                Some(&format!("i{i}")),
                "<x xmlns='urn:example'/>",
            )
            .await?);
        }
        let reply = iq(
            &mut a,
            &ps,
            "get",
            &pubsub("<items node='n' max_items='3'/>"),
        )
        .await?;
        assert_eq!(item_ids(&reply), vec!["i7", "i6", "i5"]);
        let reply = iq(
            &mut a,
            &ps,
            "get",
            &pubsub("<items node='n'><item id='i2'/><item id='i4'/><item id='nope'/></items>"),
        )
        .await?;
        assert_eq!(item_ids(&reply), vec!["i2", "i4"]);
        // RSM: pages of 3, newest first, walking with <after/>.
        let page = |after: &str| {
            pubsub(&format!(
                "<items node='n'/><set xmlns='{NS_RSM}'><max>3</max>{after}</set>"
            ))
        };
        let reply = iq(&mut a, &ps, "get", &page("")).await?;
        assert_eq!(item_ids(&reply), vec!["i7", "i6", "i5"]);
        let set = reply
            .get_child("pubsub", NS_PUBSUB)
            .and_then(|p| p.get_child("set", NS_RSM))
            .expect("rsm set");
        assert_eq!(
            set.get_child("count", NS_RSM).map(|c| c.text()),
            Some("7".into())
        );
        assert_eq!(
            set.get_child("last", NS_RSM).map(|c| c.text()),
            Some("i5".into())
        );
        let reply = iq(&mut a, &ps, "get", &page("<after>i5</after>")).await?;
        assert_eq!(item_ids(&reply), vec!["i4", "i3", "i2"]);
        let reply = iq(&mut a, &ps, "get", &page("<after>i2</after>")).await?;
        assert_eq!(item_ids(&reply), vec!["i1"]);
        // <before/>: the page just newer than i2; empty <before/>: the oldest page.
        let reply = iq(&mut a, &ps, "get", &page("<before>i2</before>")).await?;
        assert_eq!(item_ids(&reply), vec!["i5", "i4", "i3"]);
        let reply = iq(&mut a, &ps, "get", &page("<before/>")).await?;
        assert_eq!(item_ids(&reply), vec!["i3", "i2", "i1"]);
        let reply = iq(&mut a, &ps, "get", &page("<after>unknown</after>")).await?;
        err(&reply, "cancel", "item-not-found", None);
        // The index of a page's first item, and jumps by index (XEP-0059 §2.2, §2.6):
        // served up to 10,000 items deep, refused deeper.
        let first_index = |reply: &Element| {
            reply
                .get_child("pubsub", NS_PUBSUB)
                .and_then(|p| p.get_child("set", NS_RSM))
                .and_then(|s| s.get_child("first", NS_RSM))
                .and_then(|f| f.attr("index").map(str::to_owned))
        };
        for (rsm, ids, index) in [
            ("", vec!["i7", "i6", "i5"], "0"),
            ("<after>i5</after>", vec!["i4", "i3", "i2"], "3"),
            ("<before>i2</before>", vec!["i5", "i4", "i3"], "2"),
            ("<before/>", vec!["i3", "i2", "i1"], "4"),
            ("<index>2</index>", vec!["i5", "i4", "i3"], "2"),
        ] {
            let reply = iq(&mut a, &ps, "get", &page(rsm)).await?;
            assert_eq!(item_ids(&reply), ids, "{rsm}");
            assert_eq!(first_index(&reply).as_deref(), Some(index), "{rsm}");
        }
        let reply = iq(&mut a, &ps, "get", &page("<index>10001</index>")).await?;
        err(&reply, "cancel", "feature-not-implemented", None);
        let reply = iq(&mut a, &ps, "get", &pubsub("<items/>")).await?;
        err(&reply, "modify", "bad-request", Some("nodeid-required"));
        Ok::<_, anyhow::Error>(())
    }
);

both_servers!(
    retrieving_items_of_a_missing_node_is_item_not_found,
    |server| async move {
        let ps = start(server).await?;
        let mut a = user(server, "a").await?;
        let reply = iq(&mut a, &ps, "get", &pubsub("<items node='ghost'/>")).await?;
        err(&reply, "cancel", "item-not-found", None);
        Ok::<_, anyhow::Error>(())
    }
);

/// Sends a publish of item `id` to `node` with the iq id `iq_id`, without waiting for
/// the answer (so that several are in flight).
fn send_publish(
    client: &mut Client,
    ps: &Pubsubd,
    iq_id: &str,
    node: &str,
    id: &str,
    payload: &str,
) -> anyhow::Result<()> {
    let mut el = pubsubd_testkit::stanza::iq(
        "set",
        ps.jid(),
        stanza::parse(&pubsub(&format!(
            "<publish node='{node}'><item id='{id}'>{payload}</item></publish>"
        ))),
    );
    stanza::set_attr(&mut el, "id", iq_id);
    client.send(el)?;
    Ok(())
}

/// The answer to the request with iq id `iq_id`.
async fn answer_to(client: &mut Client, iq_id: &str) -> anyhow::Result<Element> {
    let want = iq_id.to_owned();
    Ok(client
        .wait_for(
            move |r| stanza::is_iq_response(r, &want),
            std::time::Duration::from_secs(30),
        )
        .await?)
}

// A run of publishes to many nodes (one lane's group) reads every node's permissions
// at once; each publish is still judged against its own node.
both_servers!(
    pipelined_publishes_to_many_nodes_are_each_checked_against_their_own_node,
    |server| async move {
        let ps = start(server).await?;
        let mut a = user(server, "a").await?;
        let mut b = user(server, "b").await?;
        for n in 0..8 {
            create(&mut a, &ps, &format!("m{n}"), &[]).await?;
        }
        // Not a's node: a may not publish there.
        create(&mut b, &ps, "theirs", &[]).await?;
        let mut sent = Vec::new();
        for i in 0..64 {
            let node = if i % 9 == 4 {
                "theirs".to_owned()
            } else {
                format!("m{}", i % 8)
            };
            let iq_id = format!("many-{i}");
            let payload = format!("<x xmlns='urn:example'>{i}</x>");
            send_publish(&mut a, &ps, &iq_id, &node, &format!("i{i}"), &payload)?;
            sent.push((iq_id, node, format!("i{i}")));
        }
        let mut stored: std::collections::HashMap<String, Vec<String>> = Default::default();
        for (iq_id, node, id) in &sent {
            let reply = answer_to(&mut a, iq_id).await?;
            if node == "theirs" {
                err(&reply, "auth", "forbidden", None);
            } else {
                ok(&reply);
                stored
                    .entry(node.clone())
                    .or_default()
                    .insert(0, id.clone());
            }
        }
        assert!(stored.len() == 8, "every node of a got items");
        for (node, newest_first) in &stored {
            let reply = iq(
                &mut a,
                &ps,
                "get",
                &pubsub(&format!("<items node='{node}'/>")),
            )
            .await?;
            assert_eq!(&item_ids(&reply), newest_first, "{node}");
        }
        let reply = iq(&mut b, &ps, "get", &pubsub("<items node='theirs'/>")).await?;
        assert!(item_ids(&reply).is_empty(), "nothing reached b's node");
        Ok::<_, anyhow::Error>(())
    }
);

both_servers!(
    pipelined_publishes_are_applied_in_order_each_with_its_own_answer,
    |server| async move {
        let ps = start(server).await?;
        let mut a = user(server, "a").await?;
        create(&mut a, &ps, "n", &[("pubsub#max_items", "500")]).await?;
        let mut s = user(server, "s").await?;
        ok(&subscribe(&mut s, &ps, "n").await?);
        // 120 publishes sent back to back: the lane gets them in groups. Among them an
        // overwrite of an earlier id, a publish to a missing node (auto-created on its
        // own, in order), and one with a forbidden payload.
        let mut ids = Vec::new();
        for i in 0..120 {
            let (node, id, payload) = match i {
                50 => (
                    "fresh".to_owned(),
                    "f".to_owned(),
                    "<x xmlns='urn:example'/>".to_owned(),
                ),
                70 => (
                    "n".to_owned(),
                    "p3".to_owned(),
                    "<x xmlns='urn:example'>again</x>".to_owned(),
                ),
                90 => (
                    "n".to_owned(),
                    "bad".to_owned(),
                    "<a xmlns='urn:x'/><b xmlns='urn:x'/>".to_owned(),
                ),
                _ => (
                    "n".to_owned(),
                    format!("p{i}"),
                    format!("<x xmlns='urn:example'>{i}</x>"),
                ),
            };
            let iq_id = format!("pipe-{i}");
            send_publish(&mut a, &ps, &iq_id, &node, &id, &payload)?;
            ids.push((iq_id, node, id));
        }
        for (iq_id, node, id) in &ids {
            let reply = answer_to(&mut a, iq_id).await?;
            if id == "bad" {
                err(&reply, "modify", "bad-request", Some("invalid-payload"));
            } else {
                ok(&reply);
                assert_eq!(published_id(&reply).as_deref(), Some(id.as_str()), "{node}");
            }
        }
        // Stored newest first in send order; the overwrite moved p3 to where it was re-sent.
        let mut expected: Vec<String> = (0..120)
            .filter(|i| ![3, 50, 90].contains(i))
            .map(|i| {
                if i == 70 {
                    "p3".to_owned()
                } else {
                    format!("p{i}")
                }
            })
            .collect();
        expected.retain(|id| id != "p70");
        expected.reverse();
        let reply = iq(
            &mut a,
            &ps,
            "get",
            &pubsub("<items node='n' max_items='200'/>"),
        )
        .await?;
        assert_eq!(item_ids(&reply), expected);
        assert_eq!(
            item_ids(&iq(&mut a, &ps, "get", &pubsub("<items node='fresh'/>")).await?),
            vec!["f"]
        );
        // The subscriber got them in the same order.
        let mut got = Vec::new();
        while got.len() < 118 {
            let m = next_event(&mut s, &ps, NOTIFY).await.expect("notification");
            for item in m
                .get_child("event", NS_EVENT)
                .and_then(|e| e.get_child("items", NS_EVENT))
                .into_iter()
                .flat_map(|i| i.children())
            {
                got.push(item.attr("id").unwrap_or("").to_owned());
            }
        }
        let mut sent_order: Vec<String> = (0..120)
            .filter(|i| ![50, 90].contains(i))
            .map(|i| {
                if i == 70 {
                    "p3".to_owned()
                } else {
                    format!("p{i}")
                }
            })
            .collect();
        sent_order.truncate(118);
        assert_eq!(got, sent_order);
        Ok::<_, anyhow::Error>(())
    }
);
