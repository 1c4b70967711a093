//! HTTP gateway acceptance tests: pubsubd with `[http]` attached to a real Prosody and
//! ejabberd; HTTP clients and XMPP clients on the same nodes.

mod common;

use common::gateway::*;
use common::items::*;
use common::*;
use pubsubd_testkit::{both_servers, stanza, XmppServer};
use reqwest::StatusCode;
use serde_json::Value;
use std::time::Duration;

both_servers!(http_publish_is_retrievable_over_xmpp, |server| async move {
    let mut s = setup(server).await?;
    let (status, body) = s
        .publish_atom(
            "gw-news",
            Some(&s.alice_token),
            "urn:x:1",
            "Hello over HTTP",
        )
        .await?;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = json(&body)["id"].as_str().unwrap_or_default().to_owned();
    assert!(!id.is_empty(), "{body}");
    assert_eq!(json(&body)["node_created"], true);

    let jid = s.svc.jid().to_owned();
    let items = xmpp_items(&mut s.bob, &jid, "gw-news")
        .await?
        .expect("bob may read");
    assert_eq!(ids(&items), vec![id.clone()]);
    assert_eq!(atom_title(&items[0]).as_deref(), Some("Hello over HTTP"));

    // JSON is stored per XEP-0335 and read back as JSON.
    let (status, body, _) = s
        .send(
            reqwest::Method::PUT,
            "/nodes/gw-news/items/reading-1",
            Some(&s.alice_token),
            "application/json",
            r#"{"temperature": 21.5}"#,
        )
        .await?;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let items = xmpp_items(&mut s.bob, &jid, "gw-news")
        .await?
        .expect("bob may read");
    let reading = items
        .iter()
        .find(|i| i.attr("id") == Some("reading-1"))
        .expect("the JSON item");
    let wrapped = reading
        .get_child("json", "urn:xmpp:json:0")
        .expect("XEP-0335 payload");
    assert_eq!(json(&wrapped.text())["temperature"], 21.5);
    let (status, body, headers) = s
        .send(
            reqwest::Method::GET,
            "/nodes/gw-news/items/reading-1",
            None,
            "",
            "",
        )
        .await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[reqwest::header::CONTENT_TYPE], "application/json");
    assert_eq!(json(&body)["temperature"], 21.5);

    // And the other way: an XMPP publish is readable over HTTP.
    let reply = xmpp_publish(
        &mut s.alice,
        &jid,
        "gw-news",
        "from-xmpp",
        &entry("urn:x:2", "From XMPP"),
    )
    .await?;
    assert_eq!(
        reply.attr("type"),
        Some("result"),
        "{}",
        stanza::to_xml(&reply)
    );
    let (status, body, _) = s
        .send(
            reqwest::Method::GET,
            "/nodes/gw-news/items/from-xmpp",
            None,
            "",
            "",
        )
        .await?;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("From XMPP"), "{body}");
    Ok::<_, anyhow::Error>(())
});

both_servers!(
    http_retract_removes_the_item_for_xmpp_readers,
    |server| async move {
        let mut s = setup(server).await?;
        for (id, title) in [("a", "first"), ("b", "second")] {
            let (st, body, _) = s
                .send(
                    reqwest::Method::PUT,
                    &format!("/nodes/gw-retract/items/{id}"),
                    Some(&s.alice_token),
                    "application/xml",
                    &entry(&format!("urn:r:{id}"), title),
                )
                .await?;
            assert_eq!(st, StatusCode::CREATED, "{body}");
        }
        let (st, body, _) = s
            .send(
                reqwest::Method::DELETE,
                "/nodes/gw-retract/items/a",
                Some(&s.alice_token),
                "",
                "",
            )
            .await?;
        assert_eq!(st, StatusCode::NO_CONTENT, "{body}");
        let jid = s.svc.jid().to_owned();
        let items = xmpp_items(&mut s.bob, &jid, "gw-retract")
            .await?
            .expect("readable");
        assert_eq!(ids(&items), vec!["b".to_string()]);
        let (st, _, _) = s
            .send(
                reqwest::Method::GET,
                "/nodes/gw-retract/items/a",
                None,
                "",
                "",
            )
            .await?;
        assert_eq!(st, StatusCode::NOT_FOUND);
        let (st, _, _) = s
            .send(
                reqwest::Method::DELETE,
                "/nodes/gw-retract/items/a",
                Some(&s.alice_token),
                "",
                "",
            )
            .await?;
        assert_eq!(st, StatusCode::NOT_FOUND);
        Ok::<_, anyhow::Error>(())
    }
);

both_servers!(
    permission_failures_give_401_or_403_and_change_nothing,
    |server| async move {
        let mut s = setup(server).await?;
        let (st, body, _) = s
            .send(
                reqwest::Method::PUT,
                "/nodes/gw-perm",
                Some(&s.alice_token),
                "application/json",
                r#"{"title": "Alice's"}"#,
            )
            .await?;
        assert_eq!(st, StatusCode::CREATED, "{body}");
        let (st, _) = s
            .publish_atom("gw-perm", Some(&s.alice_token), "urn:p:1", "kept")
            .await?;
        assert_eq!(st, StatusCode::CREATED);

        // Anonymous writes: 401 with a Bearer challenge, before anything runs.
        let (st, _, headers) = s
            .send(
                reqwest::Method::POST,
                "/nodes/gw-perm/items",
                None,
                "application/xml",
                &entry("urn:p:2", "anon"),
            )
            .await?;
        assert_eq!(st, StatusCode::UNAUTHORIZED);
        assert!(headers[reqwest::header::WWW_AUTHENTICATE]
            .to_str()?
            .starts_with("Bearer"));
        let (st, _, _) = s
            .send(
                reqwest::Method::PUT,
                "/nodes/gw-anon-node",
                None,
                "application/json",
                "{}",
            )
            .await?;
        assert_eq!(st, StatusCode::UNAUTHORIZED);
        let (st, _, _) = s
            .send(reqwest::Method::DELETE, "/nodes/gw-perm", None, "", "")
            .await?;
        assert_eq!(st, StatusCode::UNAUTHORIZED);
        // A wrong token is refused, not treated as anonymous.
        let (st, _, _) = s
            .send(
                reqwest::Method::GET,
                "/nodes/gw-perm/items",
                Some("not-a-token"),
                "",
                "",
            )
            .await?;
        assert_eq!(st, StatusCode::UNAUTHORIZED);
        // Bob is authenticated but neither owner nor publisher.
        let (st, body) = s
            .publish_atom("gw-perm", Some(&s.bob_token), "urn:p:3", "bob")
            .await?;
        assert_eq!(st, StatusCode::FORBIDDEN, "{body}");
        let (st, _, _) = s
            .send(
                reqwest::Method::DELETE,
                "/nodes/gw-perm",
                Some(&s.bob_token),
                "",
                "",
            )
            .await?;
        assert_eq!(st, StatusCode::FORBIDDEN);
        let (st, _, _) = s
            .send(
                reqwest::Method::PUT,
                "/nodes/gw-perm",
                Some(&s.bob_token),
                "application/json",
                r#"{"title": "Bob's now"}"#,
            )
            .await?;
        assert_eq!(st, StatusCode::FORBIDDEN);
        let items = xmpp_items(&mut s.alice, s.svc.jid(), "gw-perm")
            .await?
            .expect("readable");
        let first = ids(&items)[0].clone();
        let (st, _, _) = s
            .send(
                reqwest::Method::DELETE,
                &format!("/nodes/gw-perm/items/{first}"),
                Some(&s.bob_token),
                "",
                "",
            )
            .await?;
        assert_eq!(st, StatusCode::FORBIDDEN);
        // Nothing changed.
        let items = xmpp_items(&mut s.alice, s.svc.jid(), "gw-perm")
            .await?
            .expect("readable");
        assert_eq!(items.len(), 1);
        assert_eq!(atom_title(&items[0]).as_deref(), Some("kept"));
        let (st, body, _) = s
            .send(reqwest::Method::GET, "/nodes/gw-perm", None, "", "")
            .await?;
        assert_eq!(st, StatusCode::OK);
        assert_eq!(json(&body)["config"]["title"], "Alice's");
        let (st, _, _) = s
            .send(reqwest::Method::GET, "/nodes/gw-anon-node", None, "", "")
            .await?;
        assert_eq!(st, StatusCode::NOT_FOUND);

        // A whitelist node: anonymous readers get 401, outsiders 403, the owner 200.
        let (st, body, _) = s
            .send(
                reqwest::Method::PUT,
                "/nodes/gw-private",
                Some(&s.alice_token),
                "application/json",
                r#"{"access_model": "whitelist"}"#,
            )
            .await?;
        assert_eq!(st, StatusCode::CREATED, "{body}");
        let (st, _) = s
            .publish_atom("gw-private", Some(&s.alice_token), "urn:w:1", "secret")
            .await?;
        assert_eq!(st, StatusCode::CREATED);
        for path in ["/nodes/gw-private/items", "/nodes/gw-private/feed.atom"] {
            let (st, _, _) = s.send(reqwest::Method::GET, path, None, "", "").await?;
            assert_eq!(st, StatusCode::UNAUTHORIZED, "{path}");
            let (st, _, _) = s
                .send(reqwest::Method::GET, path, Some(&s.bob_token), "", "")
                .await?;
            assert_eq!(st, StatusCode::FORBIDDEN, "{path}");
            let (st, _, _) = s
                .send(reqwest::Method::GET, path, Some(&s.alice_token), "", "")
                .await?;
            assert_eq!(st, StatusCode::OK, "{path}");
        }
        let (_, body, _) = s.send(reqwest::Method::GET, "/nodes", None, "", "").await?;
        let names: Vec<String> = json(&body)["nodes"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|n| n["node"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        assert!(
            names.contains(&"gw-perm".to_string()) && !names.contains(&"gw-private".to_string()),
            "{names:?}"
        );

        // Limits and malformed bodies.
        let big = format!("<blob xmlns='urn:example'>{}</blob>", "x".repeat(8000));
        let (st, _, _) = s
            .send(
                reqwest::Method::POST,
                "/nodes/gw-perm/items",
                Some(&s.alice_token),
                "application/xml",
                &big,
            )
            .await?;
        assert_eq!(st, StatusCode::PAYLOAD_TOO_LARGE);
        // Over the body cap (payload limit + overhead), small enough to be sent whole before
        // the server answers, so the client reads the 413 instead of a reset.
        let huge = "x".repeat(20_000);
        let (st, _, _) = s
            .send(
                reqwest::Method::POST,
                "/nodes/gw-perm/items",
                Some(&s.alice_token),
                "application/json",
                &huge,
            )
            .await?;
        assert_eq!(st, StatusCode::PAYLOAD_TOO_LARGE);
        let (st, _, _) = s
            .send(
                reqwest::Method::POST,
                "/nodes/gw-perm/items",
                Some(&s.alice_token),
                "text/plain",
                "hi",
            )
            .await?;
        assert_eq!(st, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        let (st, _, _) = s
            .send(
                reqwest::Method::POST,
                "/nodes/gw-perm/items",
                Some(&s.alice_token),
                "application/xml",
                "<unclosed",
            )
            .await?;
        assert_eq!(st, StatusCode::BAD_REQUEST);
        let (st, _, _) = s
            .send(
                reqwest::Method::PUT,
                "/nodes/gw-perm",
                Some(&s.alice_token),
                "application/json",
                r#"{"acess_model": "open"}"#,
            )
            .await?;
        assert_eq!(st, StatusCode::BAD_REQUEST);
        let items = xmpp_items(&mut s.alice, s.svc.jid(), "gw-perm")
            .await?
            .expect("readable");
        assert_eq!(items.len(), 1);
        Ok::<_, anyhow::Error>(())
    }
);

both_servers!(
    xmpp_publish_reaches_an_sse_client_which_resumes_after_last_event_id,
    |server| async move {
        let mut s = setup(server).await?;
        let jid = s.svc.jid().to_owned();
        let reply = xmpp_publish(
            &mut s.alice,
            &jid,
            "gw-live",
            "before",
            &entry("urn:l:0", "before"),
        )
        .await?;
        assert_eq!(
            reply.attr("type"),
            Some("result"),
            "{}",
            stanza::to_xml(&reply)
        );

        let mut events = s.http.get(s.url("/nodes/gw-live/events")).send().await?;
        assert_eq!(events.status(), StatusCode::OK);
        assert!(events.headers()[reqwest::header::CONTENT_TYPE]
            .to_str()?
            .starts_with("text/event-stream"));
        // Give the stream a moment to take its cursor, then publish over XMPP.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let reply = xmpp_publish(
            &mut s.alice,
            &jid,
            "gw-live",
            "live-1",
            &entry("urn:l:1", "live one"),
        )
        .await?;
        assert_eq!(
            reply.attr("type"),
            Some("result"),
            "{}",
            stanza::to_xml(&reply)
        );
        let mut buf = String::new();
        let first_id = sse_until(&mut events, &mut buf, "live one").await?;
        assert!(first_id.parse::<i64>().is_ok(), "{first_id:?}");
        assert!(
            !buf.contains("before"),
            "items from before the stream are not replayed without Last-Event-ID"
        );
        drop(events);

        // Published while disconnected: replayed on resume.
        let (st, _) = s
            .publish_atom("gw-live", Some(&s.alice_token), "urn:l:2", "while away")
            .await?;
        assert_eq!(st, StatusCode::CREATED);
        let mut events = s
            .http
            .get(s.url("/nodes/gw-live/events"))
            .header("Last-Event-ID", &first_id)
            .send()
            .await?;
        let mut buf = String::new();
        let second = sse_until(&mut events, &mut buf, "while away").await?;
        assert!(second.parse::<i64>()? > first_id.parse::<i64>()?);
        assert!(!buf.contains("live one"));
        // The same resume over plain HTTP (`?after_id=`) and over XMPP (XEP-0313
        // `after-id`): the same ids, the same items.
        let (st, body, _) = s
            .send(
                reqwest::Method::GET,
                &format!("/nodes/gw-live/items?after_id={first_id}"),
                None,
                "",
                "",
            )
            .await?;
        assert_eq!(st, StatusCode::OK, "{body}");
        let page = json(&body);
        assert_eq!(page["items"].as_array().map(Vec::len), Some(1), "{body}");
        assert_eq!(page["items"][0]["seq"].to_string(), second, "{body}");
        assert!(page["next_after_id"].is_null(), "{body}");
        let mam = format!(
            "<query xmlns='urn:xmpp:mam:2' node='gw-live'>{}</query>",
            form("urn:xmpp:mam:2", &[("after-id", &first_id)])
        );
        s.alice.drain();
        let fin = iq(&mut s.alice, &s.svc, "set", &mam).await?;
        assert_eq!(fin.attr("type"), Some("result"), "{}", stanza::to_xml(&fin));
        let results: Vec<String> = s
            .alice
            .drain()
            .iter()
            .filter_map(|m| m.get_child("result", "urn:xmpp:mam:2"))
            .filter_map(|r| r.attr("id").map(str::to_owned))
            .collect();
        assert_eq!(results, vec![second.clone()]);
        let (st, _, _) = s
            .send(
                reqwest::Method::GET,
                "/nodes/gw-live/items?after_id=soon",
                None,
                "",
                "",
            )
            .await?;
        assert_eq!(st, StatusCode::NOT_FOUND);
        // An open event stream does not hold up shutdown.
        let status = s.svc.process.terminate().await?;
        assert!(status.success(), "{status:?}");
        match tokio::time::timeout(WAIT, events.chunk()).await {
            Ok(Ok(Some(rest))) => assert!(
                !String::from_utf8_lossy(&rest).contains("event: item"),
                "no items after shutdown"
            ),
            Ok(_) => {}
            Err(_) => anyhow::bail!("the stream stayed open after pubsubd exited"),
        }
        Ok::<_, anyhow::Error>(())
    }
);

both_servers!(
    node_listing_paging_configuration_and_atom_feed,
    |server| async move {
        let s = setup(server).await?;
        let (st, body, _) = s
            .send(
                reqwest::Method::PUT,
                "/nodes/gw-feed",
                Some(&s.alice_token),
                "application/json",
                r#"{"title": "The Feed", "max_items": 50}"#,
            )
            .await?;
        assert_eq!(st, StatusCode::CREATED, "{body}");
        assert_eq!(json(&body)["config"]["max_items"], 50);
        let (st, body, _) = s
            .send(
                reqwest::Method::PUT,
                "/nodes/gw-feed",
                Some(&s.alice_token),
                "application/json",
                r#"{"description": "items, newest first"}"#,
            )
            .await?;
        assert_eq!(st, StatusCode::OK, "{body}");
        assert_eq!(json(&body)["config"]["title"], "The Feed");
        for n in 1..=3 {
            let (st, _, _) = s
                .send(
                    reqwest::Method::PUT,
                    &format!("/nodes/gw-feed/items/i{n}"),
                    Some(&s.alice_token),
                    "application/xml",
                    &entry(&format!("urn:f:{n}"), &format!("entry {n}")),
                )
                .await?;
            assert_eq!(st, StatusCode::CREATED);
        }
        let (_, body, _) = s
            .send(
                reqwest::Method::GET,
                "/nodes/gw-feed/items?max=2",
                None,
                "",
                "",
            )
            .await?;
        let page = json(&body);
        assert_eq!(page["count"], 3);
        let got: Vec<&str> = page["items"]
            .as_array()
            .map(|a| a.iter().filter_map(|i| i["id"].as_str()).collect())
            .unwrap_or_default();
        assert_eq!(got, vec!["i3", "i2"]);
        assert_eq!(page["next_after"], "i2");
        let (_, body, _) = s
            .send(
                reqwest::Method::GET,
                "/nodes/gw-feed/items?max=2&after=i2",
                None,
                "",
                "",
            )
            .await?;
        let page = json(&body);
        let got: Vec<&str> = page["items"]
            .as_array()
            .map(|a| a.iter().filter_map(|i| i["id"].as_str()).collect())
            .unwrap_or_default();
        assert_eq!(got, vec!["i1"]);
        assert_eq!(page["next_after"], Value::Null);

        let (st, body, headers) = s
            .send(
                reqwest::Method::GET,
                "/nodes/gw-feed/feed.atom",
                None,
                "",
                "",
            )
            .await?;
        assert_eq!(st, StatusCode::OK);
        assert!(headers[reqwest::header::CONTENT_TYPE]
            .to_str()?
            .starts_with("application/atom+xml"));
        let parsed = feed_rs::parser::parse(body.as_bytes())?;
        assert_eq!(parsed.title.map(|t| t.content).as_deref(), Some("The Feed"));
        let titles: Vec<String> = parsed
            .entries
            .iter()
            .filter_map(|e| e.title.as_ref().map(|t| t.content.clone()))
            .collect();
        assert_eq!(titles, vec!["entry 3", "entry 2", "entry 1"]);

        let (_, body, _) = s.send(reqwest::Method::GET, "/nodes", None, "", "").await?;
        assert!(
            json(&body)["nodes"].as_array().is_some_and(|a| a
                .iter()
                .any(|n| n["node"] == "gw-feed" && n["title"] == "The Feed")),
            "{body}"
        );
        let (st, _, _) = s
            .send(
                reqwest::Method::DELETE,
                "/nodes/gw-feed",
                Some(&s.alice_token),
                "",
                "",
            )
            .await?;
        assert_eq!(st, StatusCode::NO_CONTENT);
        let (st, _, _) = s
            .send(reqwest::Method::GET, "/nodes/gw-feed/items", None, "", "")
            .await?;
        assert_eq!(st, StatusCode::NOT_FOUND);
        Ok::<_, anyhow::Error>(())
    }
);

both_servers!(
    cli_publish_goes_through_the_same_rules,
    |server| async move {
        let mut s = setup(server).await?;
        // One file per test: the four variants run in one process at once.
        let file = std::env::temp_dir().join(format!(
            "pubsubd-cli-{}-{}.xml",
            std::process::id(),
            s.svc.jid()
        ));
        std::fs::write(&file, entry("urn:c:1", "from the command line"))?;
        let alice = s.alice.bare_jid().to_owned();
        let bob = s.bob.bare_jid().to_owned();
        let path = file.to_string_lossy().into_owned();
        let (ok, out, err) = s.svc.cli(&[
            "publish", "--node", "gw-cli", "--id", "c1", "--as", &alice, &path,
        ])?;
        assert!(ok, "{out}{err}");
        assert!(out.contains("c1"), "{out}");
        let (ok, _, err) = s
            .svc
            .cli(&["publish", "--node", "gw-cli", "--as", &bob, &path])?;
        assert!(!ok, "bob may not publish to alice's node");
        assert!(err.contains("not allowed on node gw-cli"), "{err}");
        let _ = std::fs::remove_file(&file);
        let jid = s.svc.jid().to_owned();
        let items = xmpp_items(&mut s.bob, &jid, "gw-cli")
            .await?
            .expect("readable");
        assert_eq!(ids(&items), vec!["c1".to_string()]);
        assert_eq!(
            atom_title(&items[0]).as_deref(),
            Some("from the command line")
        );
        Ok::<_, anyhow::Error>(())
    }
);

both_servers!(
    http_publishes_over_the_rate_limit_get_429_and_change_nothing,
    |server| async move {
        let mut s = setup_with(server, "[rate_limits]\npublish_per_jid = 1").await?;
        let mut created = 0;
        let mut limited = 0;
        for n in 0..6 {
            let (st, body, headers) = s
                .send(
                    reqwest::Method::PUT,
                    &format!("/nodes/gw-rate/items/r{n}"),
                    Some(&s.alice_token),
                    "application/xml",
                    &entry(&format!("urn:rate:{n}"), "burst"),
                )
                .await?;
            match st {
                StatusCode::CREATED => created += 1,
                StatusCode::TOO_MANY_REQUESTS => {
                    limited += 1;
                    assert_eq!(json(&body)["error"], "rate-limited");
                    assert!(headers.contains_key(reqwest::header::RETRY_AFTER));
                }
                other => anyhow::bail!("unexpected {other}: {body}"),
            }
        }
        assert!(
            limited > 0 && created > 0,
            "{created} created, {limited} limited"
        );
        let jid = s.svc.jid().to_owned();
        let items = xmpp_items(&mut s.bob, &jid, "gw-rate")
            .await?
            .expect("readable");
        assert_eq!(items.len(), created, "refused publishes stored nothing");
        Ok::<_, anyhow::Error>(())
    }
);

/// After the fan-out merge: an HTTP publish is notified to XMPP subscribers.
async fn http_publish_notifies_xmpp_subscriber(server: &'static XmppServer) -> anyhow::Result<()> {
    let mut s = setup(server).await?;
    let jid = s.svc.jid().to_owned();
    let (st, _) = s
        .publish_atom(
            "gw-notify",
            Some(&s.alice_token),
            "urn:n:0",
            "creates the node",
        )
        .await?;
    assert_eq!(st, StatusCode::CREATED);
    let bob_jid = s.bob.bare_jid().to_owned();
    let reply = s
        .bob
        .iq(stanza::iq(
            "set",
            &jid,
            stanza::parse(&format!("<pubsub xmlns='{NS_PUBSUB}'><subscribe node='gw-notify' jid='{bob_jid}'/></pubsub>")),
        ))
        .await?;
    assert_eq!(
        reply.attr("type"),
        Some("result"),
        "{}",
        stanza::to_xml(&reply)
    );
    let (st, _) = s
        .publish_atom("gw-notify", Some(&s.alice_token), "urn:n:1", "notify me")
        .await?;
    assert_eq!(st, StatusCode::CREATED);
    // XMPP-RECEIVING ASSERTION (needs the fan-out engine):
    let msg = s
        .bob
        .wait_for(
            |e| e.name() == "message" && stanza::to_xml(e).contains("notify me"),
            WAIT,
        )
        .await?;
    assert!(stanza::to_xml(&msg).contains("http://jabber.org/protocol/pubsub#event"));
    Ok(())
}

both_servers!(http_publish_notifies_xmpp_subscribers, |server| {
    http_publish_notifies_xmpp_subscriber(server)
});
