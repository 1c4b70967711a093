//! The `presence` and `roster` access models (XEP-0060 §4.5), decided from the owners'
//! rosters, which pubsubd reads through the server with the XEP-0356 roster privilege.
//! The rosters are real: the test users build them with roster sets and presence
//! subscriptions over XMPP. Without the privilege (a slot the server does not trust)
//! both models fail closed and say why.
//!
//! Each server trusts four component slots; the tests here lease at most four at once
//! (one test on both stores, the others on PostgreSQL).

mod common;

use std::time::Duration;

use common::roster::{cancel_presence, set_item, subscribe_to_presence};
use common::{
    create, err, iq, items_of, ok, publish, pubsub, start, start_privileged, subscribe, user,
    Pubsubd, NOTIFY, NS_EVENT, NS_STANZAS, QUIET, READY,
};
use pubsubd_testkit::{both_servers, Client, Element};

/// How long a roster read is trusted (pubsub::rosters::FRESH_FOR) plus a margin.
const ROSTER_FRESHNESS: Duration = Duration::from_secs(7);
/// A revoked subscriber is told within two sweeps (pubsub::revocation::SWEEP_EVERY)
/// and the delivery of the notification.
const REVOKED: Duration = Duration::from_secs(20);

const ENTRY: &str = "<entry xmlns='http://www.w3.org/2005/Atom'><title>hi</title></entry>";

async fn privileged(server: &pubsubd_testkit::XmppServer) -> anyhow::Result<Pubsubd> {
    let mut ps = start_privileged(server, "").await?;
    ps.process
        .wait_for_log("the server granted privileges", READY)
        .await?;
    Ok(ps)
}

async fn retrieve(client: &mut Client, ps: &Pubsubd, node: &str) -> anyhow::Result<Element> {
    iq(
        client,
        ps,
        "get",
        &pubsub(&format!("<items node='{node}'/>")),
    )
    .await
}

/// The `<text/>` of an error reply.
fn error_text(reply: &Element) -> String {
    reply
        .get_child("error", "jabber:client")
        .and_then(|e| e.get_child("text", NS_STANZAS))
        .map(|t| t.text())
        .unwrap_or_default()
}

/// Waits for the subscription-state notification (§8.8.4) telling `client` its
/// subscription to `node` is gone.
async fn told_subscription_ended(client: &mut Client, node: &str) -> anyhow::Result<()> {
    client
        .wait_for(
            |e| {
                e.name() == "message"
                    && e.get_child("event", NS_EVENT)
                        .and_then(|ev| ev.get_child("subscription", NS_EVENT))
                        .is_some_and(|s| {
                            s.attr("node") == Some(node) && s.attr("subscription") == Some("none")
                        })
            },
            REVOKED,
        )
        .await?;
    Ok(())
}

/// Whether the notification of item `id` of `node` arrives within `within`.
async fn notified(client: &mut Client, node: &str, id: &str, within: Duration) -> bool {
    client
        .wait_for(
            |e| {
                e.name() == "message"
                    && e.get_child("event", NS_EVENT)
                        .and_then(|ev| ev.get_child("items", NS_EVENT))
                        .is_some_and(|i| {
                            i.attr("node") == Some(node)
                                && i.children().any(|c| c.attr("id") == Some(id))
                        })
            },
            within,
        )
        .await
        .is_ok()
}

/// The service's advertised pubsub features, as `client` sees them.
async fn features(client: &mut Client, ps: &Pubsubd) -> anyhow::Result<Vec<String>> {
    let reply = iq(
        client,
        ps,
        "get",
        "<query xmlns='http://jabber.org/protocol/disco#info'/>",
    )
    .await?;
    ok(&reply);
    Ok(reply
        .get_child("query", "http://jabber.org/protocol/disco#info")
        .map(|q| {
            q.children()
                .filter(|c| c.name() == "feature")
                .filter_map(|c| c.attr("var").map(str::to_owned))
                .collect()
        })
        .unwrap_or_default())
}

both_servers!(
    postgres presence_node_admits_contacts_subscribed_to_the_owner,
    |server| async move {
        let ps = privileged(server).await?;
        let mut owner_c = user(server, "owner").await?;
        let mut contact = user(server, "contact").await?;
        let mut fan = user(server, "fan").await?;
        let mut stranger = user(server, "stranger").await?;
        // The contact sees the owner's presence (owner's item: from). The fan is subscribed
        // the other way round only: the owner sees the fan's presence (owner's item: to),
        // which the presence model does not count.
        subscribe_to_presence(&mut contact, &mut owner_c).await?;
        subscribe_to_presence(&mut owner_c, &mut fan).await?;

        let advertised = features(&mut contact, &ps).await?;
        for f in ["access-presence", "access-roster"] {
            let var = format!("http://jabber.org/protocol/pubsub#{f}");
            assert!(advertised.contains(&var), "{var} in {advertised:?}");
        }

        create(
            &mut owner_c,
            &ps,
            "diary",
            &[("pubsub#access_model", "presence")],
        )
        .await?;
        ok(&publish(&mut owner_c, &ps, "diary", Some("1"), ENTRY).await?);

        // The first request reads the owner's roster through the server; the next one
        // finds it cached.
        let started = std::time::Instant::now();
        ok(&subscribe(&mut contact, &ps, "diary").await?);
        let reading = started.elapsed();
        let started = std::time::Instant::now();
        let items = retrieve(&mut contact, &ps, "diary").await?;
        let cached = started.elapsed();
        eprintln!("subscribe with a roster read: {reading:?}; retrieval from the cache: {cached:?}");
        ok(&items);
        assert_eq!(items_of(&items).len(), 1);

        for outsider in [&mut fan, &mut stranger] {
            let reply = subscribe(outsider, &ps, "diary").await?;
            err(
                &reply,
                "auth",
                "not-authorized",
                Some("presence-subscription-required"),
            );
            assert!(
                !error_text(&reply).contains("privilege"),
                "the roster was read: {}",
                error_text(&reply)
            );
            err(
                &retrieve(outsider, &ps, "diary").await?,
                "auth",
                "not-authorized",
                Some("presence-subscription-required"),
            );
        }
        Ok::<_, anyhow::Error>(())
    }
);

both_servers!(
    postgres roster_node_admits_contacts_in_allowed_groups_only,
    |server| async move {
        let ps = privileged(server).await?;
        let mut owner_c = user(server, "owner").await?;
        let mut friend = user(server, "friend").await?;
        let mut colleague = user(server, "colleague").await?;
        let mut stranger = user(server, "stranger").await?;
        // In the group is enough (§4.5), whatever the presence subscription.
        set_item(&mut owner_c, friend.bare_jid(), &["friends", "family"]).await?;
        // A contact with a presence subscription, but in the wrong group.
        subscribe_to_presence(&mut colleague, &mut owner_c).await?;
        set_item(&mut owner_c, colleague.bare_jid(), &["work"]).await?;

        create(
            &mut owner_c,
            &ps,
            "album",
            &[
                ("pubsub#access_model", "roster"),
                ("pubsub#roster_groups_allowed", "friends"),
            ],
        )
        .await?;
        ok(&publish(&mut owner_c, &ps, "album", Some("1"), ENTRY).await?);
        ok(&subscribe(&mut friend, &ps, "album").await?);
        ok(&retrieve(&mut friend, &ps, "album").await?);
        for outsider in [&mut colleague, &mut stranger] {
            err(
                &subscribe(outsider, &ps, "album").await?,
                "auth",
                "not-authorized",
                Some("not-in-roster-group"),
            );
            err(
                &retrieve(outsider, &ps, "album").await?,
                "auth",
                "not-authorized",
                Some("not-in-roster-group"),
            );
        }

        // The owner moves the friend to another group: within the roster's freshness
        // the friend loses its subscription and may no longer retrieve, and the
        // colleague, now a friend, may.
        set_item(&mut owner_c, friend.bare_jid(), &["work"]).await?;
        set_item(&mut owner_c, colleague.bare_jid(), &["friends"]).await?;
        tokio::time::sleep(ROSTER_FRESHNESS).await;
        // Its subscription is taken back, and it is told.
        told_subscription_ended(&mut friend, "album").await?;
        ok(&publish(&mut owner_c, &ps, "album", Some("2"), ENTRY).await?);
        assert!(!notified(&mut friend, "album", "2", QUIET).await, "no more notifications");
        err(
            &retrieve(&mut friend, &ps, "album").await?,
            "auth",
            "not-authorized",
            Some("not-in-roster-group"),
        );
        ok(&retrieve(&mut colleague, &ps, "album").await?);
        // And the owner's cancelling a presence subscription changes nothing here: the
        // group alone counts.
        cancel_presence(&mut owner_c, colleague.bare_jid()).await?;
        tokio::time::sleep(ROSTER_FRESHNESS).await;
        ok(&retrieve(&mut colleague, &ps, "album").await?);
        Ok::<_, anyhow::Error>(())
    }
);

both_servers!(
    postgres without_the_roster_privilege_both_models_fail_closed_and_say_why,
    |server| async move {
        let mut ps = start(server).await?;
        let mut owner_c = user(server, "owner").await?;
        let mut contact = user(server, "contact").await?;
        subscribe_to_presence(&mut contact, &mut owner_c).await?;
        set_item(&mut owner_c, contact.bare_jid(), &["friends"]).await?;

        let advertised = features(&mut contact, &ps).await?;
        assert!(
            !advertised.iter().any(|f| f.ends_with("#access-presence")
                || f.ends_with("#access-roster")),
            "{advertised:?}"
        );
        // `roster` cannot be configured: the service cannot read groups.
        let reply = iq(
            &mut owner_c,
            &ps,
            "set",
            &pubsub(&format!(
                "<create node='album'/><configure>{}</configure>",
                common::config_form(&[
                    ("pubsub#access_model", "roster"),
                    ("pubsub#roster_groups_allowed", "friends"),
                ])
            )),
        )
        .await?;
        err(
            &reply,
            "modify",
            "not-acceptable",
            Some("unsupported-access-model"),
        );
        assert!(
            error_text(&reply).contains("roster privilege"),
            "{}",
            error_text(&reply)
        );
        // `presence` can, and admits nobody but affiliates, saying why.
        create(
            &mut owner_c,
            &ps,
            "diary",
            &[("pubsub#access_model", "presence")],
        )
        .await?;
        let reply = subscribe(&mut contact, &ps, "diary").await?;
        err(
            &reply,
            "auth",
            "not-authorized",
            Some("presence-subscription-required"),
        );
        assert!(
            error_text(&reply).contains("roster privilege"),
            "{}",
            error_text(&reply)
        );
        ps.process
            .wait_for_log("cannot read the owner's roster", READY)
            .await?;
        Ok::<_, anyhow::Error>(())
    }
);

both_servers!(
    cancelling_a_presence_subscription_ends_the_node_subscription,
    |server| async move {
        let ps = privileged(server).await?;
        let mut owner_c = user(server, "owner").await?;
        let mut contact = user(server, "contact").await?;
        let mut other = user(server, "other").await?;
        subscribe_to_presence(&mut contact, &mut owner_c).await?;
        subscribe_to_presence(&mut other, &mut owner_c).await?;
        create(
            &mut owner_c,
            &ps,
            "diary",
            &[("pubsub#access_model", "presence")],
        )
        .await?;
        ok(&subscribe(&mut contact, &ps, "diary").await?);
        ok(&subscribe(&mut other, &ps, "diary").await?);
        ok(&publish(&mut owner_c, &ps, "diary", Some("1"), ENTRY).await?);
        assert!(notified(&mut contact, "diary", "1", NOTIFY).await);
        assert!(notified(&mut other, "diary", "1", NOTIFY).await);

        // The owner cancels the contact's presence subscription (RFC 6121 §3.2).
        let started = std::time::Instant::now();
        cancel_presence(&mut owner_c, contact.bare_jid()).await?;
        told_subscription_ended(&mut contact, "diary").await?;
        let took = started.elapsed();
        ok(&publish(&mut owner_c, &ps, "diary", Some("2"), ENTRY).await?);
        assert!(
            notified(&mut other, "diary", "2", NOTIFY).await,
            "the other contact still hears"
        );
        assert!(
            !notified(&mut contact, "diary", "2", QUIET).await,
            "no more notifications"
        );
        err(
            &retrieve(&mut contact, &ps, "diary").await?,
            "auth",
            "not-authorized",
            Some("presence-subscription-required"),
        );
        err(
            &subscribe(&mut contact, &ps, "diary").await?,
            "auth",
            "not-authorized",
            Some("presence-subscription-required"),
        );
        let line = ps
            .process
            .log_contents()
            .lines()
            .find(|l| l.contains("the owner's roster no longer grants it"))
            .map(str::to_owned)
            .unwrap_or_default();
        assert!(line.contains(contact.bare_jid()), "{line}");
        eprintln!("revocation took {took:?}");
        Ok::<_, anyhow::Error>(())
    }
);
