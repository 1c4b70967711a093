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

/// The flags that only `run` uses.
const RUN_ONLY: [&str; 6] = [
    "--secret",
    "--secret-file",
    "--server",
    "--log-format",
    "--fanout-workers",
    "--metrics-listen",
];

/// `pubsubd <args> --help`, as printed.
fn help(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(BIN).args(args).arg("--help").output()?;
    anyhow::ensure!(out.status.success(), "{args:?} --help failed");
    Ok(String::from_utf8(out.stdout)?)
}

/// The long flags a help text lists in its options.
fn flags(help: &str) -> Vec<String> {
    help.lines()
        .filter_map(|l| {
            let l = l.trim_start();
            let l = l.strip_prefix("-h, ").unwrap_or(l);
            l.starts_with("--")
                .then(|| l.split([' ', ',']).next().unwrap_or_default().to_owned())
        })
        .collect()
}

#[test]
fn each_subcommand_help_lists_only_the_flags_it_uses() -> anyhow::Result<()> {
    let admin = ["--config", "--database", "--jid", "--json", "--help"];
    let cases: &[(&[&str], &[&str])] = &[
        (&["stats"], &["--config", "--database", "--json", "--help"]),
        (&["node", "list"], &admin),
        (&["node", "show"], &admin),
        (
            &["node", "create"],
            &[
                "--config",
                "--database",
                "--jid",
                "--json",
                "--owner",
                "--set",
                "--help",
            ],
        ),
        (&["subscriptions", "import"], &admin),
        (&["affiliations", "set"], &admin),
        (
            &["migrate"],
            &["--config", "--database", "--log-format", "--help"],
        ),
        (&["feed", "list"], &["--config", "--database", "--help"]),
        (
            &["publish"],
            &[
                "--config",
                "--database",
                "--jid",
                "--node",
                "--id",
                "--as",
                "--payload-json",
                "--help",
            ],
        ),
    ];
    for (args, expected) in cases {
        let text = help(args)?;
        let mut listed = flags(&text);
        let mut expected: Vec<String> = expected.iter().map(|s| (*s).to_owned()).collect();
        listed.sort();
        expected.sort();
        assert_eq!(listed, expected, "pubsubd {args:?} --help:\n{text}");
    }
    let run = flags(&help(&["run"])?);
    for flag in RUN_ONLY.iter().chain(&["--jid", "--config", "--database"]) {
        assert!(
            run.iter().any(|f| f == flag),
            "run --help lacks {flag}: {run:?}"
        );
    }
    Ok(())
}

#[test]
fn every_positional_argument_has_a_description() -> anyhow::Result<()> {
    for args in [
        &["node", "show"][..],
        &["node", "create"],
        &["node", "delete"],
        &["node", "purge"],
        &["node", "config"],
        &["subscriptions", "list"],
        &["subscriptions", "remove"],
        &["subscriptions", "import"],
        &["affiliations", "set"],
        &["affiliations", "list"],
        &["publish"],
        &["feed", "remove"],
    ] {
        let text = help(args)?;
        let Some((_, positionals)) = text.split_once("Arguments:\n") else {
            continue;
        };
        for line in positionals.lines().take_while(|l| !l.trim().is_empty()) {
            let words: Vec<&str> = line.split_whitespace().collect();
            assert!(
                words.len() > 1,
                "pubsubd {args:?}: `{line}` has no description"
            );
        }
    }
    Ok(())
}

#[test]
fn publish_names_every_missing_setting_at_once() -> anyhow::Result<()> {
    let db = pubsubd_testkit::TestSqlite::create()?;
    let out = Command::new(BIN)
        .args(["publish", "--database", db.url()])
        .env_remove("PUBSUBD_JID")
        .env_remove("PUBSUBD_CONFIG")
        .output()?;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    for flag in ["--node", "--jid", "--as", "FILE"] {
        assert!(stderr.contains(flag), "{flag} not named: {stderr}");
    }
    Ok(())
}

#[test]
fn admin_messages_read_as_plain_english() -> anyhow::Result<()> {
    let db = pubsubd_testkit::TestSqlite::create()?;
    let run = |args: &[&str]| -> anyhow::Result<(bool, String)> {
        let out = Command::new(BIN)
            .args(args)
            .args(["--database", db.url()])
            .output()?;
        Ok((
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    };
    let (ok, _) = run(&["migrate"])?;
    assert!(ok);
    let (ok, stderr) = run(&["node", "show", "nosuch"])?;
    assert!(!ok);
    assert_eq!(stderr.trim(), "pubsubd: no node named nosuch");
    let (ok, _) = run(&["node", "create", "ops", "--owner", "alice@example.org"])?;
    assert!(ok);
    let (_, stderr) = run(&["node", "create", "ops", "--owner", "alice@example.org"])?;
    assert_eq!(stderr.trim(), "pubsubd: a node named ops already exists");
    let (_, stderr) = run(&["affiliations", "set", "ops", "alice@example.org", "none"])?;
    assert!(stderr.contains("ops would have no owner left"), "{stderr}");
    let (_, stderr) = run(&["affiliations", "set", "ops", "bob@example.org", "boss"])?;
    assert!(stderr.contains("`boss` is not an affiliation"), "{stderr}");
    Ok(())
}

/// `pubsubd prosody-module` prints the module the testkit's Prosody loads as
/// `multicast.localhost` (from deploy/prosody/), byte for byte.
#[test]
fn prosody_module_prints_the_shipped_module() -> anyhow::Result<()> {
    let out = Command::new(BIN).arg("prosody-module").output()?;
    assert!(out.status.success());
    let shipped = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("deploy/prosody/mod_pubsubd_multicast.lua"),
    )?;
    assert_eq!(out.stdout, shipped);
    Ok(())
}
