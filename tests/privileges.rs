//! XEP-0356 Privileged Entity: what the server grants pubsubd, learned from its
//! `<privilege/>` message on each stream. The testkit's servers trust their `priv*`
//! component slots with roster `get` and presence `roster` (Prosody's `mod_privilege`
//! from Debian's prosody-modules, ejabberd's `mod_privilege`), and no other slot.

mod common;

use common::engine::{is_event, item_ids, NS_DELAY};
use common::{create, ok, publish, start, start_privileged, subscribe, user, NOTIFY, QUIET, READY};
use pubsubd_testkit::{both_servers, stanza, Client, ServerKind};

both_servers!(
    postgres the_servers_grants_are_recorded_and_logged_at_start_up,
    |server| async move {
        let mut ps = start_privileged(server, "").await?;
        ps.process
            .wait_for_log("the server granted privileges", READY)
            .await?;
        let log = ps.process.log_contents();
        // ejabberd 23.01 speaks the first version of the XEP, Prosody's module the second.
        let namespace = match server.kind() {
            ServerKind::Ejabberd => "urn:xmpp:privilege:1",
            ServerKind::Prosody => "urn:xmpp:privilege:2",
        };
        let line = log
            .lines()
            .find(|l| l.contains("the server granted privileges"))
            .unwrap_or_default();
        assert!(line.contains(namespace), "{line}");
        assert!(line.contains("roster=get presence=roster"), "{line}");
        assert!(line.contains("localhost"), "{line}");

        let plain = start(server).await?;
        tokio::time::sleep(QUIET).await;
        assert!(
            !plain.process.log_contents().contains("granted privileges"),
            "a slot the server does not trust is granted nothing"
        );
        Ok::<_, anyhow::Error>(())
    }
);

both_servers!(
    a_subscriber_coming_online_gets_the_last_item_without_telling_the_service,
    |server| async move {
        // With the presence privilege the server tells pubsubd of its users' presence:
        // the subscriber never sends the service a presence of its own.
        let mut ps = start_privileged(server, "").await?;
        ps.process
            .wait_for_log("the server granted privileges", READY)
            .await?;
        let mut owner_c = user(server, "owner").await?;
        create(
            &mut owner_c,
            &ps,
            "moods",
            &[
                ("pubsub#presence_based_delivery", "1"),
                ("pubsub#send_last_published_item", "on_sub_and_presence"),
            ],
        )
        .await?;
        let dave = server.create_user("dave").await?;
        let mut first = Client::login(server.c2s_addr(), &dave).await?;
        ok(&subscribe(&mut first, &ps, "moods").await?);
        first.send(stanza::presence(stanza::Availability::Unavailable))?;
        first.close().await?;
        tokio::time::sleep(QUIET).await;
        ok(&publish(&mut owner_c, &ps, "moods", Some("while-offline"), ENTRY).await?);
        tokio::time::sleep(QUIET).await;

        // Logging in (initial presence to its own server only) brings the last item.
        let mut client = Client::login(server.c2s_addr(), &dave).await?;
        let last = client.wait_for(is_event, NOTIFY).await?;
        assert_eq!(item_ids(&last), ["while-offline"]);
        assert!(last.get_child("delay", NS_DELAY).is_some());
        assert_eq!(last.attr("to"), Some(client.jid()));

        // Online: new items arrive at once.
        ok(&publish(&mut owner_c, &ps, "moods", Some("while-online"), ENTRY).await?);
        let live = client.wait_for(is_event, NOTIFY).await?;
        assert_eq!(item_ids(&live), ["while-online"]);

        // Unavailable (broadcast, not to the service): nothing any more.
        client.send(stanza::presence(stanza::Availability::Unavailable))?;
        tokio::time::sleep(QUIET).await;
        ok(&publish(&mut owner_c, &ps, "moods", Some("after-leaving"), ENTRY).await?);
        tokio::time::sleep(QUIET).await;
        assert!(
            client.drain().into_iter().all(|e| !is_event(&e)),
            "an unavailable subscriber of a presence-based node got a notification"
        );
        Ok::<_, anyhow::Error>(())
    }
);

const ENTRY: &str = "<entry xmlns='http://www.w3.org/2005/Atom'><title>mood</title></entry>";
