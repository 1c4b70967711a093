//! XEP-0356 Privileged Entity: what the server grants pubsubd, learned from its
//! `<privilege/>` message on each stream. The testkit's servers trust their `priv*`
//! component slots with roster `get` and presence `roster` (Prosody's `mod_privilege`
//! from Debian's prosody-modules, ejabberd's `mod_privilege`), and no other slot.

mod common;

use common::{start, start_privileged, QUIET, READY};
use pubsubd_testkit::{both_servers, ServerKind};

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
