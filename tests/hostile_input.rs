//! Bad input, against real Prosody and ejabberd: every malformed or adversarial pubsub
//! request gets the right XMPP error, changes nothing, and the next request is served.

mod common;

use common::*;
use pubsubd_testkit::{both_servers, stanza};

/// Requests that must be refused: `(iq type, payload, error type, condition, pubsub
/// condition)`.
type Case = (
    &'static str,
    String,
    &'static str,
    &'static str,
    Option<&'static str>,
);

fn bad_requests(node: &str) -> Vec<Case> {
    // Past the 1,023-byte identifier limit (the test client's XML parser caps
    // attribute values at a few KB, so "huge" stops there).
    let long = "n".repeat(2_000);
    vec![
        ("get", pubsub(""), "modify", "bad-request", None),
        ("get", format!("<pubsub xmlns='{NS_PUBSUB}' evil='1'><items node='{node}'/></pubsub>"), "modify", "bad-request", None),
        ("set", pubsub(&format!("<create node='x'/><items node='{node}'/>")), "modify", "bad-request", None),
        ("get", pubsub(&format!("<items node='{node}'/><items node='{node}'/>")), "modify", "bad-request", None),
        ("get", pubsub(&format!("<items node='{node}' max_items='lots'/>")), "modify", "bad-request", None),
        ("set", pubsub(&format!("<unknown-verb node='{node}'/>")), "modify", "bad-request", None),
        ("set", pubsub(&format!("<subscribe node='{node}' jid='not@@valid'/>")), "modify", "bad-request", Some("invalid-jid")),
        ("set", pubsub(&format!("<subscribe node='{node}'/>")), "modify", "bad-request", Some("jid-required")),
        // DEL and C1 controls are legal XML characters but not legal identifiers.
        ("get", pubsub("<items node='del&#x7f;node'/>"), "modify", "bad-request", None),
        ("get", pubsub("<items node='nel&#x85;node'/>"), "modify", "bad-request", None),
        ("get", pubsub(&format!("<items node='{long}'/>")), "modify", "bad-request", None),
        ("set", pubsub(&format!("<publish node='{node}'><item id='{long}'><x xmlns='urn:x'/></item></publish>")), "modify", "bad-request", None),
        ("set", pubsub(&format!("<publish node='{node}'><item id='a'><x xmlns='urn:x'/></item><item id='b'><x xmlns='urn:x'/></item></publish>")), "modify", "bad-request", None),
        ("set", pubsub(&format!("<publish node='{node}'><item id='a'><x xmlns='urn:x'/></item></publish>")), "auth", "forbidden", None),
        ("set", pubsub(&format!("<retract node='{node}'><item/></retract>")), "modify", "bad-request", Some("item-required")),
        ("get", pubsub(&format!("<publish node='{node}'><item id='a'><x xmlns='urn:x'/></item></publish>")), "modify", "bad-request", None),
        ("set", owner(&format!("<configure node='{node}'>{}</configure>", config_form(&[("pubsub#max_items", "-3")]))), "modify", "not-acceptable", None),
        ("set", owner(&format!("<configure node='{node}'>{}</configure>", config_form(&[("pubsub#deliver_payloads", "maybe")]))), "modify", "not-acceptable", None),
        ("set", owner(&format!(
            "<configure node='{node}'><x xmlns='{NS_DATA}' type='submit'><field var='pubsub#title'><value>a</value></field><field var='pubsub#title'><value>b</value></field></x></configure>"
        )), "modify", "bad-request", None),
        ("set", owner(&format!("<affiliations node='{node}'><affiliation jid='x@y' affiliation='emperor'/></affiliations>")), "modify", "bad-request", None),
        ("set", owner(&format!("<affiliations node='{node}'><affiliation jid='@@' affiliation='member'/></affiliations>")), "modify", "bad-request", Some("invalid-jid")),
        ("get", owner(""), "modify", "bad-request", None),
    ]
}

both_servers!(
    malformed_requests_get_errors_and_change_nothing,
    |server| async move {
        let ps = start(server).await?;
        let mut a = user(server, "a").await?;
        create(&mut a, &ps, "n", &[("pubsub#title", "kept")]).await?;
        ok(&publish(
            &mut a,
            &ps,
            "n",
            Some("1"),
            "<x xmlns='urn:example'>kept</x>",
        )
        .await?);
        let before_items =
            stanza::to_xml(&iq(&mut a, &ps, "get", &pubsub("<items node='n'/>")).await?);
        let before_config =
            stanza::to_xml(&iq(&mut a, &ps, "get", &owner("<configure node='n'/>")).await?);
        // The requests come from someone who is not the owner, except configure and
        // affiliations, which the owner must send to get past the permission check.
        let mut b = user(server, "b").await?;
        let cases = bad_requests("n");
        let total = cases.len();
        for (kind, payload, type_, condition, pubsub_condition) in cases {
            let sender = if payload.contains(NS_OWNER) {
                &mut a
            } else {
                &mut b
            };
            let reply = iq(sender, &ps, kind, &payload).await?;
            err(&reply, type_, condition, pubsub_condition);
            ok(&sender.iq(stanza::ping(ps.jid())).await?);
        }
        let after_items =
            stanza::to_xml(&iq(&mut a, &ps, "get", &pubsub("<items node='n'/>")).await?);
        let after_config =
            stanza::to_xml(&iq(&mut a, &ps, "get", &owner("<configure node='n'/>")).await?);
        assert_eq!(
            strip_ids(&before_items),
            strip_ids(&after_items),
            "items changed"
        );
        assert_eq!(
            strip_ids(&before_config),
            strip_ids(&after_config),
            "configuration changed"
        );
        assert!(
            ps.process.log_contents().contains("request refused"),
            "refusals are logged"
        );
        eprintln!("{total} malformed requests refused");
        Ok::<_, anyhow::Error>(())
    }
);

both_servers!(item_ids_are_per_node, |server| async move {
    let ps = start(server).await?;
    let mut a = user(server, "a").await?;
    create(&mut a, &ps, "one", &[]).await?;
    create(&mut a, &ps, "two", &[]).await?;
    ok(&publish(
        &mut a,
        &ps,
        "one",
        Some("same"),
        "<x xmlns='urn:example'>1</x>",
    )
    .await?);
    ok(&publish(
        &mut a,
        &ps,
        "two",
        Some("same"),
        "<x xmlns='urn:example'>2</x>",
    )
    .await?);
    ok(&iq(
        &mut a,
        &ps,
        "set",
        &pubsub("<retract node='one'><item id='same'/></retract>"),
    )
    .await?);
    assert!(item_ids(&iq(&mut a, &ps, "get", &pubsub("<items node='one'/>")).await?).is_empty());
    let reply = iq(&mut a, &ps, "get", &pubsub("<items node='two'/>")).await?;
    assert_eq!(item_ids(&reply), vec!["same"]);
    Ok::<_, anyhow::Error>(())
});

both_servers!(
    deeply_nested_payload_is_refused_without_crashing,
    |server| async move {
        let ps = start(server).await?;
        let mut a = user(server, "a").await?;
        create(&mut a, &ps, "n", &[]).await?;
        let nested = |depth: usize| {
            format!(
                "{}{}",
                "<d xmlns='urn:deep'>".repeat(depth),
                "</d>".repeat(depth)
            )
        };
        // 100 levels below <item/> is fine; 200 and 400 are past pubsubd's limit (the
        // test client's own recursive serialisation cannot send much deeper; the unit
        // tests of xmpp::depth take 100,000 levels apart).
        ok(&publish(&mut a, &ps, "n", Some("shallow"), &nested(100)).await?);
        for depth in [200usize, 400] {
            let reply =
                publish(&mut a, &ps, "n", Some(&format!("d{depth}")), &nested(depth)).await?;
            err(&reply, "modify", "policy-violation", None);
            ok(&a.iq(stanza::ping(ps.jid())).await?);
        }
        assert_eq!(
            item_ids(&iq(&mut a, &ps, "get", &pubsub("<items node='n'/>")).await?),
            vec!["shallow"]
        );
        Ok::<_, anyhow::Error>(())
    }
);

both_servers!(
    secret_never_appears_in_logs_and_open_config_is_warned_about,
    |server| async move {
        // The secret in a world-readable config file, debug logging on (the testkit's default).
        let slot = server.lease_component();
        let db = pubsubd_testkit::TestStore::create().await?;
        let path = std::env::temp_dir().join(format!("{}-open.toml", db.name()));
        std::fs::write(
            &path,
            format!(
                "jid = '{}'\nsecret = '{}'\nserver = '{}'\ndatabase = '{}'\n",
                slot.jid(),
                slot.secret(),
                server.component_addr(),
                db.url()
            ),
        )?;
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))?;
        }
        let mut process = pubsubd_testkit::PubsubdProcess::spawn(
            BIN,
            &["run", "--config", &path.display().to_string()],
            &[],
        )?;
        process.wait_for_log("component connected", READY).await?;
        let mut a = user(server, "a").await?;
        ok(&a.iq(stanza::ping(slot.jid())).await?);
        process.terminate().await?;
        let _ = std::fs::remove_file(&path);
        let log = process.log_contents();
        assert!(
            log.contains("world-readable"),
            "no warning about the open config file:\n{log}"
        );
        assert!(
            !log.contains(slot.secret()),
            "the component secret is in the log"
        );
        Ok::<_, anyhow::Error>(())
    }
);
