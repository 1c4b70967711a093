//! The admin command line against the store of a running pubsubd attached to real
//! Prosody and ejabberd: what the CLI changes, XMPP clients see.

mod common;

use std::process::Command;

use common::*;
use pubsubd_testkit::both_servers;

/// Runs `pubsubd <args> --database <db>` and returns stdout; fails on a non-zero exit.
fn cli(ps: &Pubsubd, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(BIN)
        .args(args)
        .args(["--database", ps.db.url(), "--jid", ps.jid()])
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "pubsubd {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?)
}

both_servers!(
    operator_manages_nodes_from_the_command_line,
    |server| async move {
        let ps = start(server).await?;
        let mut alice = user(server, "alice").await?;
        let aj = alice.bare_jid().to_owned();
        cli(
            &ps,
            &[
                "node",
                "create",
                "ops",
                "--owner",
                &aj,
                "--set",
                "title=Operations",
                "--set",
                "max_items=3",
            ],
        )?;
        // Alice owns it, over XMPP.
        ok(&iq(&mut alice, &ps, "get", &owner("<configure node='ops'/>")).await?);
        let list = cli(&ps, &["node", "list"])?;
        assert!(
            list.lines()
                .any(|l| l.starts_with("ops ") && l.contains("Operations")),
            "{list}"
        );

        // Bulk import, then the list shows them.
        let file = std::env::temp_dir().join(format!("{}-subs.txt", ps.db.name()));
        std::fs::write(
            &file,
            "bot1@example.org\nbot2@example.org/agent\n# comment\n\nnot a jid@@\n",
        )?;
        let out = cli(
            &ps,
            &[
                "subscriptions",
                "import",
                "ops",
                &file.display().to_string(),
            ],
        )?;
        let _ = std::fs::remove_file(&file);
        assert!(
            out.contains("2 subscriptions imported") && out.contains("1 lines skipped"),
            "{out}"
        );
        let subs: serde_json::Value =
            serde_json::from_str(&cli(&ps, &["subscriptions", "list", "ops", "--json"])?)?;
        assert_eq!(subs.as_array().map(Vec::len), Some(2), "{subs}");
        cli(&ps, &["subscriptions", "remove", "ops", "bot1@example.org"])?;
        let subs: serde_json::Value =
            serde_json::from_str(&cli(&ps, &["subscriptions", "list", "ops", "--json"])?)?;
        assert_eq!(subs[0]["jid"], "bot2@example.org/agent");

        // A publisher set from the CLI may publish over XMPP.
        let mut bob = user(server, "bob").await?;
        let bj = bob.bare_jid().to_owned();
        err(
            &publish(&mut bob, &ps, "ops", Some("1"), "<x xmlns='urn:example'/>").await?,
            "auth",
            "forbidden",
            None,
        );
        cli(&ps, &["affiliations", "set", "ops", &bj, "publisher"])?;
        ok(&publish(&mut bob, &ps, "ops", Some("1"), "<x xmlns='urn:example'/>").await?);

        // The last owner cannot be removed; the CLI says so and exits non-zero.
        assert!(cli(&ps, &["affiliations", "set", "ops", &aj, "none"]).is_err());

        let stats: serde_json::Value = serde_json::from_str(&cli(&ps, &["stats", "--json"])?)?;
        assert_eq!(stats["nodes"], 1);
        assert_eq!(stats["items"], 1);
        assert_eq!(stats["subscriptions"], 1);

        let config = cli(
            &ps,
            &["node", "config", "ops", "--set", "max_items=1", "--json"],
        )?;
        let config: serde_json::Value = serde_json::from_str(&config)?;
        assert_eq!(config["max_items"], "1");
        assert!(cli(&ps, &["node", "config", "ops", "--set", "max_items=lots"]).is_err());

        cli(&ps, &["node", "purge", "ops"])?;
        assert!(
            item_ids(&iq(&mut alice, &ps, "get", &pubsub("<items node='ops'/>")).await?).is_empty()
        );
        cli(&ps, &["node", "delete", "ops"])?;
        err(
            &iq(&mut alice, &ps, "get", &pubsub("<items node='ops'/>")).await?,
            "cancel",
            "item-not-found",
            None,
        );
        Ok::<_, anyhow::Error>(())
    }
);

/// An admin command on SQLite works beside the service (it takes no instance lock), but
/// never creates a database: a mistyped path is an error, not a new empty store.
#[test]
fn admin_command_on_a_missing_sqlite_file_is_an_error_not_a_new_database() -> anyhow::Result<()> {
    let db = pubsubd_testkit::TestSqlite::create()?;
    let out = Command::new(BIN)
        .args(["stats", "--database", db.url()])
        .output()?;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no SQLite database at"), "{stderr}");
    assert!(!db.path().exists());
    Ok(())
}
