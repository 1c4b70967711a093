//! Self-tests of the throwaway XMPP servers and the raw client: everything
//! pubsubd's acceptance tests rely on, against both Prosody and ejabberd (once each: no
//! pubsubd store is involved, so only the `postgres` variants of `both_servers!`).

use std::time::{Duration, Instant};

use pubsubd_testkit::{
    both_servers, component_handshake, stanza, Client, ClientError, BUILTIN_PUBSUB_JID,
};

/// How long a stanza between two local clients may take in these tests.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(5);

both_servers!(
    postgres user_receives_chat_message_from_other_user,
    |server| async move {
        let alice = server.create_user("alice").await?;
        let bob = server.create_user("bob").await?;
        let a = Client::login(server.c2s_addr(), &alice).await?;
        let mut b = Client::login(server.c2s_addr(), &bob).await?;
        assert!(
            a.jid().starts_with(&format!("{}/", alice.jid())),
            "bound JID {}",
            a.jid()
        );

        a.send(stanza::chat(&bob.jid(), "hello bob"))?;
        let message = b
            .wait_for(
                |e| e.name() == "message" && stanza::body(e).is_some(),
                DELIVERY_TIMEOUT,
            )
            .await?;
        assert_eq!(stanza::body(&message).as_deref(), Some("hello bob"));
        assert_eq!(message.attr("from"), Some(a.jid()));

        a.close().await?;
        b.close().await?;
        Ok::<_, anyhow::Error>(())
    }
);

both_servers!(postgres server_answers_ping, |server| async move {
    let mut client = Client::login(server.c2s_addr(), &server.create_user("pinger").await?).await?;
    let reply = client.iq(stanza::ping(server.domain())).await?;
    assert_eq!(
        reply.attr("type"),
        Some("result"),
        "{}",
        stanza::to_xml(&reply)
    );
    Ok::<_, anyhow::Error>(())
});

both_servers!(
    postgres iq_waits_while_other_stanzas_are_buffered,
    |server| async move {
        let alice = server.create_user("alice").await?;
        let bob = server.create_user("bob").await?;
        let a = Client::login(server.c2s_addr(), &alice).await?;
        let mut b = Client::login(server.c2s_addr(), &bob).await?;
        for n in 0..5 {
            a.send(stanza::chat(&bob.jid(), &format!("m{n}")))?;
        }
        // Wait until the messages are surely in flight before the iq.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let reply = b.iq(stanza::ping(server.domain())).await?;
        assert_eq!(reply.attr("type"), Some("result"));
        let mut bodies = Vec::new();
        while let Some(e) = b.recv_timeout(Duration::from_millis(500)).await {
            bodies.extend(stanza::body(&e));
        }
        assert_eq!(bodies, ["m0", "m1", "m2", "m3", "m4"]);
        Ok::<_, anyhow::Error>(())
    }
);

both_servers!(postgres offline_message_is_delivered_at_login, |server| async move {
    let alice = server.create_user("alice").await?;
    let carol = server.create_user("carol").await?;
    let mut a = Client::login(server.c2s_addr(), &alice).await?;
    a.send(stanza::chat(&carol.jid(), "while you were away"))?;
    // A round trip makes sure the server has processed the message.
    a.iq(stanza::ping(server.domain())).await?;

    let mut c = Client::login(server.c2s_addr(), &carol).await?;
    let message = c
        .wait_for(|e| stanza::body(e).is_some(), DELIVERY_TIMEOUT)
        .await?;
    assert_eq!(
        stanza::body(&message).as_deref(),
        Some("while you were away")
    );
    Ok::<_, anyhow::Error>(())
});

both_servers!(postgres wrong_password_is_refused, |server| async move {
    let alice = server.create_user("alice").await?;
    let result = Client::connect(server.c2s_addr(), &alice.jid(), "wrong").await;
    assert!(
        matches!(result, Err(ClientError::AuthFailed(_))),
        "{result:?}"
    );
    Ok::<_, anyhow::Error>(())
});

both_servers!(
    postgres registering_an_existing_user_conflicts,
    |server| async move {
        let alice = server.create_user("alice").await?;
        let again = server.register_user(alice.username(), "other").await;
        assert!(
            matches!(&again, Err(ClientError::RegistrationFailed(c)) if c == "conflict"),
            "{again:?}"
        );
        Ok::<_, anyhow::Error>(())
    }
);

both_servers!(postgres register_and_connect_on_one_stream, |server| async move {
    let jid = format!("dave-{}@{}", std::process::id(), server.domain());
    let mut client = Client::register_and_connect(server.c2s_addr(), &jid, "pw").await?;
    assert!(client.jid().starts_with(&jid));
    client.iq(stanza::ping(server.domain())).await?;
    Ok::<_, anyhow::Error>(())
});

both_servers!(
    postgres component_slot_accepts_its_secret_only,
    |server| async move {
        let slot = server.lease_component();
        let other = server.lease_component();
        assert_ne!(slot.jid(), other.jid());

        let refused = component_handshake(slot.server_addr(), slot.jid(), "not-the-secret").await;
        assert!(
            matches!(refused, Err(ClientError::HandshakeRefused(_))),
            "{:?}",
            refused.err()
        );

        let accepted = component_handshake(slot.server_addr(), slot.jid(), slot.secret()).await?;
        accepted.close().await?;
        Ok::<_, anyhow::Error>(())
    }
);

both_servers!(postgres builtin_pubsub_service_answers_disco, |server| async move {
    let mut client = Client::login(server.c2s_addr(), &server.create_user("disco").await?).await?;
    let query = stanza::parse("<query xmlns='http://jabber.org/protocol/disco#info'/>");
    let reply = client
        .iq(stanza::iq("get", BUILTIN_PUBSUB_JID, query))
        .await?;
    assert_eq!(
        reply.attr("type"),
        Some("result"),
        "{}",
        stanza::to_xml(&reply)
    );
    let is_pubsub_service = reply
        .children()
        .flat_map(|query| query.children())
        .any(|c| c.name() == "identity" && c.attr("category") == Some("pubsub"));
    assert!(is_pubsub_service, "{}", stanza::to_xml(&reply));
    Ok::<_, anyhow::Error>(())
});

/// Enough accounts to show that registration is neither throttled nor slow.
const MANY_USERS: usize = 300;

/// Concurrent registrations in flight.
const REGISTRATION_CONCURRENCY: usize = 32;

both_servers!(
    postgres many_users_register_and_log_in_concurrently,
    |server| async move {
        let began = Instant::now();
        let mut accounts = Vec::new();
        let mut pending = tokio::task::JoinSet::new();
        for _ in 0..MANY_USERS {
            if pending.len() >= REGISTRATION_CONCURRENCY {
                accounts.push(pending.join_next().await.expect("task")??);
            }
            pending.spawn(async move { server.create_user("load").await });
        }
        while let Some(done) = pending.join_next().await {
            accounts.push(done??);
        }
        let registered = began.elapsed();

        let began = Instant::now();
        let mut logins = tokio::task::JoinSet::new();
        for account in accounts {
            logins.spawn(async move { Client::login(server.c2s_addr(), &account).await });
        }
        let mut clients = Vec::new();
        while let Some(done) = logins.join_next().await {
            clients.push(done??);
        }
        let logged_in = began.elapsed();
        eprintln!(
        "{}: {MANY_USERS} registrations in {registered:?}, {MANY_USERS} concurrent logins in {logged_in:?}",
        server.kind()
    );
        assert_eq!(clients.len(), MANY_USERS);
        Ok::<_, anyhow::Error>(())
    }
);

both_servers!(dedicated postgres client_logs_in_again_after_restart_and_crash, |mut server| async move {
    eprintln!("{}: dedicated start took {:?}", server.kind(), server.last_startup());
    let c2s = server.c2s_addr();
    let alice = server.create_user("alice").await?;
    let mut client = Client::login(c2s, &alice).await?;

    server.stop()?;
    let err = client
        .wait_for(|_| false, Duration::from_secs(5))
        .await
        .expect_err("the stream must end when the server stops");
    assert!(matches!(err, ClientError::Disconnected(_)), "{err:?}");

    server.start()?;
    eprintln!("{}: restart took {:?}", server.kind(), server.last_startup());
    assert_eq!(server.c2s_addr(), c2s, "restart keeps the ports");
    let mut client = Client::login(c2s, &alice).await?;
    client.iq(stanza::ping(server.domain())).await?;

    server.kill();
    assert!(!server.is_running());
    server.start()?;
    let mut client = Client::login(c2s, &alice).await?;
    client.iq(stanza::ping(server.domain())).await?;
    Ok::<_, anyhow::Error>(())
});
