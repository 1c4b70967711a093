//! Shared by the XEP-0060 acceptance tests: pubsubd on a fresh store and component
//! slot of a real server, users logged in through that server, and the pubsub stanzas
//! of the use cases.
//!
//! The store is a fresh PostgreSQL database, or with `PUBSUBD_TEST_STORE=sqlite` a
//! fresh SQLite file, so every acceptance test runs against either backend.
#![allow(dead_code)]

pub mod engine;
pub mod gateway;
pub mod items;
pub mod roster;
pub mod sink;
pub mod store;
pub mod watched;

use std::time::Duration;

use pubsubd_testkit::{
    stanza, Client, ComponentSlot, Element, PubsubdProcess, StoreKind, TestStore, XmppServer,
};

pub const BIN: &str = env!("CARGO_BIN_EXE_pubsubd");
/// Generous: a cold CI machine can be slow to start a process and open a pool.
pub const READY: Duration = Duration::from_secs(30);
/// How long a test waits for a notification that must come.
pub const NOTIFY: Duration = Duration::from_secs(15);
/// How long a test waits to be sure something does NOT come.
pub const QUIET: Duration = Duration::from_millis(1500);

pub const NS_PUBSUB: &str = "http://jabber.org/protocol/pubsub";
pub const NS_OWNER: &str = "http://jabber.org/protocol/pubsub#owner";
pub const NS_EVENT: &str = "http://jabber.org/protocol/pubsub#event";
pub const NS_ERRORS: &str = "http://jabber.org/protocol/pubsub#errors";
pub const NS_DATA: &str = "jabber:x:data";
pub const NS_RSM: &str = "http://jabber.org/protocol/rsm";
pub const NS_STANZAS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";

/// pubsubd attached to a server, on its own slot and store.
pub struct Pubsubd {
    pub process: PubsubdProcess,
    pub slot: ComponentSlot,
    pub db: TestStore,
    /// The HTTP gateway's address, when the config has `[http]` (with
    /// `listen = "127.0.0.1:0"`: the port is read from the log).
    pub http: Option<std::net::SocketAddr>,
    /// The test's own connection to the store, for SQL.
    pub sql: engine::Db,
    /// The command line it was started with, and its environment.
    args: Vec<String>,
    env: Vec<(String, String)>,
    /// Its config file: the connection settings and the test's TOML.
    config: tempfile_path::TempPath,
}

impl Pubsubd {
    /// The service JID.
    pub fn jid(&self) -> &str {
        self.slot.jid()
    }

    /// `http://ADDR` of the gateway.
    pub fn base(&self) -> String {
        format!("http://{}", self.http.expect("the gateway is configured"))
    }

    /// The config file, which holds the JID, secret, server and database too.
    pub fn config_path(&self) -> &std::path::Path {
        &self.config.0
    }

    /// Runs `pubsubd ARGS --config FILE` to completion: (success, stdout, stderr).
    pub fn cli(&self, args: &[&str]) -> anyhow::Result<(bool, String, String)> {
        let out = std::process::Command::new(BIN)
            .args(args)
            .arg("--config")
            .arg(self.config_path())
            .output()?;
        Ok((
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    }

    /// Another pubsubd with the same command line: the same one restarted, or a second
    /// instance on the same slot and store.
    pub async fn another(&self) -> anyhow::Result<PubsubdProcess> {
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        start_until_connected(|| PubsubdProcess::spawn(BIN, &self.args, &env)).await
    }

    /// Waits until no fan-out job is left (every notification confirmed by the server).
    pub async fn wait_idle(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = self.sql.jobs_left().await?;
            if left == 0 {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                anyhow::bail!(
                    "{left} fan-out jobs still pending after {timeout:?}\n{}",
                    self.process.log_tail(30)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

pub mod tempfile_path {
    /// A file removed when dropped.
    pub struct TempPath(pub std::path::PathBuf);
    impl Drop for TempPath {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

/// Starts pubsubd with the default policy.
pub async fn start(server: &XmppServer) -> anyhow::Result<Pubsubd> {
    start_with(server, "").await
}

/// Starts pubsubd with `config` as the TOML file (e.g. a `[service]` table).
pub async fn start_with(server: &XmppServer, config: &str) -> anyhow::Result<Pubsubd> {
    start_with_store(server, config, StoreKind::current()?).await
}

/// As [`start_with`], on a store of `kind` whatever the test runs on.
pub async fn start_with_store(
    server: &XmppServer,
    config: &str,
    kind: StoreKind,
) -> anyhow::Result<Pubsubd> {
    start_logged(server, config, kind, DEFAULT_LOG).await
}

/// pubsubd's own debug lines (each stanza's span, batch completion), without every
/// SQL statement of its dependencies: logging those costs more than the work.
pub const DEFAULT_LOG: &str = "info,pubsubd=debug";

/// As [`start_with_store`], with `RUST_LOG` set to `log`.
pub async fn start_logged(
    server: &XmppServer,
    config: &str,
    kind: StoreKind,
    log: &str,
) -> anyhow::Result<Pubsubd> {
    start_on(server, server.lease_component(), config, kind, log).await
}

/// As [`start_with`], on a component slot the server grants XEP-0356 privileges
/// (roster get, presence).
pub async fn start_privileged(server: &XmppServer, config: &str) -> anyhow::Result<Pubsubd> {
    let slot = server.lease_privileged_component();
    start_on(server, slot, config, StoreKind::current()?, DEFAULT_LOG).await
}

/// As [`start_logged`], on `slot`.
pub async fn start_on(
    server: &XmppServer,
    slot: ComponentSlot,
    config: &str,
    kind: StoreKind,
    log: &str,
) -> anyhow::Result<Pubsubd> {
    let db = TestStore::create_kind(kind).await?;
    let file = write_config(server, &slot, &db, config)?;
    let args = vec![
        "run".to_string(),
        "--config".to_string(),
        file.0.display().to_string(),
    ];
    let env = vec![("RUST_LOG".to_string(), log.to_string())];
    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut process = PubsubdProcess::spawn(BIN, &args, &env_refs)?;
    process.wait_for_log("component connected", READY).await?;
    let sql = engine::Db::connect(&db).await?;
    let http = if config_has_http(config) {
        process
            .wait_for_log("HTTP gateway listening", READY)
            .await?;
        Some(gateway::listening_addr(&process.log_contents())?)
    } else {
        None
    };
    Ok(Pubsubd {
        process,
        slot,
        db,
        http,
        sql,
        args,
        env,
        config: file,
    })
}

/// A config file for a pubsubd on `slot` and `store`: the connection settings, then
/// `extra` (TOML). Removed when dropped.
pub fn write_config(
    server: &XmppServer,
    slot: &ComponentSlot,
    store: &TestStore,
    extra: &str,
) -> anyhow::Result<tempfile_path::TempPath> {
    let path = std::env::temp_dir().join(format!("{}.toml", store.name()));
    std::fs::write(
        &path,
        format!(
            "jid = '{}'\nsecret = '{}'\nserver = '{}'\ndatabase = '{}'\n{extra}\n",
            slot.jid(),
            slot.secret(),
            server.component_addr(),
            store.url()
        ),
    )?;
    // pubsubd warns about world-readable config files.
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(tempfile_path::TempPath(path))
}

fn config_has_http(toml: &str) -> bool {
    toml.lines().any(|l| l.trim() == "[http]")
}

/// Starts a pubsubd with `spawn` and waits until it is connected. Right after a kill,
/// Prosody may not have noticed yet that the old stream is gone and refuses the JID
/// (`conflict`), which ends a starting pubsubd: it is started again, as a service manager
/// would.
pub async fn start_until_connected(
    spawn: impl Fn() -> anyhow::Result<PubsubdProcess>,
) -> anyhow::Result<PubsubdProcess> {
    const ATTEMPTS: usize = 40;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut process = spawn()?;
        match process.wait_for_log("component connected", READY).await {
            Ok(()) => return Ok(process),
            Err(_) if attempt < ATTEMPTS && process.log_contents().contains("conflict") => {
                eprintln!("pubsubd start {attempt} refused with `conflict`; trying again");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// The value of field `field` in the first line of a pubsubd log that contains
/// `message` (the log is coloured: ANSI sequences are skipped).
pub fn logged_field(log: &str, message: &str, field: &str) -> Option<String> {
    let line = log.lines().find(|l| l.contains(message))?;
    let mut plain = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // Skip an ANSI colour sequence, ESC [ ... m.
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    let at = plain.find(&format!("{field}="))? + field.len() + 1;
    Some(plain[at..].split_whitespace().next()?.to_owned())
}

/// A job to every subscriber of node `node_pk`, with an empty event: for tests of the
/// fan-out store, which never look inside.
pub fn job(node_pk: i64) -> pubsubd::store::jobs::NewJob {
    use pubsubd::store::jobs::{JobKind, JobTarget, NewJob};
    NewJob {
        node_pk,
        kind: JobKind::Items,
        payload_xml: "<event xmlns='http://jabber.org/protocol/pubsub#event'/>".into(),
        headline: true,
        target: JobTarget::Subscribers,
    }
}

/// A new user, logged in.
pub async fn user(server: &XmppServer, prefix: &str) -> anyhow::Result<Client> {
    let account = server.create_user(prefix).await?;
    Ok(Client::login(server.c2s_addr(), &account).await?)
}

/// Sends an IQ of `kind` with `payload_xml` to the service and returns the answer.
pub async fn iq(
    client: &mut Client,
    ps: &Pubsubd,
    kind: &str,
    payload_xml: &str,
) -> anyhow::Result<Element> {
    Ok(client
        .iq(stanza::iq(kind, ps.jid(), stanza::parse(payload_xml)))
        .await?)
}

/// `<pubsub xmlns='…pubsub'>inner</pubsub>`.
pub fn pubsub(inner: &str) -> String {
    format!("<pubsub xmlns='{NS_PUBSUB}'>{inner}</pubsub>")
}

/// `<pubsub xmlns='…pubsub#owner'>inner</pubsub>`.
pub fn owner(inner: &str) -> String {
    format!("<pubsub xmlns='{NS_OWNER}'>{inner}</pubsub>")
}

/// A submitted data form with FORM_TYPE and `fields` (var, value).
pub fn form(form_type: &str, fields: &[(&str, &str)]) -> String {
    let mut x = format!(
        "<x xmlns='{NS_DATA}' type='submit'><field var='FORM_TYPE' type='hidden'><value>{form_type}</value></field>"
    );
    for (var, value) in fields {
        x.push_str(&format!(
            "<field var='{var}'><value>{value}</value></field>"
        ));
    }
    x.push_str("</x>");
    x
}

/// A node configuration form.
pub fn config_form(fields: &[(&str, &str)]) -> String {
    form("http://jabber.org/protocol/pubsub#node_config", fields)
}

/// Panics unless `reply` is a result.
#[track_caller]
pub fn ok(reply: &Element) {
    assert_eq!(
        reply.attr("type"),
        Some("result"),
        "expected a result, got {}",
        stanza::to_xml(reply)
    );
}

/// Panics unless `reply` is an error of `type_` with `condition` and, if given, the
/// `pubsub#errors` child `pubsub_condition`.
#[track_caller]
pub fn err(reply: &Element, type_: &str, condition: &str, pubsub_condition: Option<&str>) {
    let xml = stanza::to_xml(reply);
    assert_eq!(
        reply.attr("type"),
        Some("error"),
        "expected an error, got {xml}"
    );
    let error = reply
        .children()
        .find(|c| c.name() == "error")
        .unwrap_or_else(|| panic!("no <error/> in {xml}"));
    assert_eq!(error.attr("type"), Some(type_), "error type in {xml}");
    assert!(
        error.get_child(condition, NS_STANZAS).is_some(),
        "no <{condition}/> in {xml}"
    );
    match pubsub_condition {
        Some(p) => assert!(
            error.get_child(p, NS_ERRORS).is_some(),
            "no pubsub#errors <{p}/> in {xml}"
        ),
        None => assert!(
            !error
                .children()
                .any(|c| c.ns() == NS_ERRORS && c.name() != "unsupported"),
            "unexpected pubsub#errors child in {xml}"
        ),
    }
}

/// The iq id differs between two otherwise equal answers.
pub fn strip_ids(xml: &str) -> String {
    let start = xml.find(" id='").map(|i| i + 5).unwrap_or(0);
    let end = xml[start..].find('\'').map(|i| start + i).unwrap_or(start);
    format!("{}{}", &xml[..start], &xml[end..])
}

/// The fields of `node`'s configuration form (§8.2.1), in order: each `var` with its
/// values.
pub async fn config_fields(
    c: &mut Client,
    ps: &Pubsubd,
    node: &str,
) -> anyhow::Result<Vec<(String, Vec<String>)>> {
    let reply = iq(c, ps, "get", &owner(&format!("<configure node='{node}'/>"))).await?;
    ok(&reply);
    let x = reply
        .get_child("pubsub", NS_OWNER)
        .and_then(|p| p.get_child("configure", NS_OWNER))
        .and_then(|c| c.get_child("x", NS_DATA))
        .ok_or_else(|| anyhow::anyhow!("no form in {}", stanza::to_xml(&reply)))?;
    Ok(x.children()
        .filter_map(|f| {
            let values = f
                .children()
                .filter(|v| v.name() == "value")
                .map(|v| v.text())
                .collect();
            Some((f.attr("var")?.to_owned(), values))
        })
        .collect())
}

/// The values of field `var` in `node`'s configuration form (none if it is absent).
pub async fn config_values(
    c: &mut Client,
    ps: &Pubsubd,
    node: &str,
    var: &str,
) -> anyhow::Result<Vec<String>> {
    Ok(config_fields(c, ps, node)
        .await?
        .into_iter()
        .find(|(v, _)| v == var)
        .map(|(_, values)| values)
        .unwrap_or_default())
}

/// Creates `node` (owned by `client`), optionally with configuration fields.
pub async fn create(
    client: &mut Client,
    ps: &Pubsubd,
    node: &str,
    config: &[(&str, &str)],
) -> anyhow::Result<()> {
    let configure = if config.is_empty() {
        String::new()
    } else {
        format!("<configure>{}</configure>", config_form(config))
    };
    let reply = iq(
        client,
        ps,
        "set",
        &pubsub(&format!("<create node='{node}'/>{configure}")),
    )
    .await?;
    ok(&reply);
    Ok(())
}

/// Publishes `payload_xml` as item `id` (or a service-chosen id) and returns the id.
pub async fn publish(
    client: &mut Client,
    ps: &Pubsubd,
    node: &str,
    id: Option<&str>,
    payload_xml: &str,
) -> anyhow::Result<Element> {
    let id_attr = id.map(|i| format!(" id='{i}'")).unwrap_or_default();
    iq(
        client,
        ps,
        "set",
        &pubsub(&format!(
            "<publish node='{node}'><item{id_attr}>{payload_xml}</item></publish>"
        )),
    )
    .await
}

/// The id of the item in a publish result.
pub fn published_id(reply: &Element) -> Option<String> {
    reply
        .get_child("pubsub", NS_PUBSUB)?
        .get_child("publish", NS_PUBSUB)?
        .get_child("item", NS_PUBSUB)?
        .attr("id")
        .map(str::to_owned)
}

/// Subscribes the client's bare JID; returns the reply.
pub async fn subscribe(client: &mut Client, ps: &Pubsubd, node: &str) -> anyhow::Result<Element> {
    let jid = client.bare_jid().to_owned();
    iq(
        client,
        ps,
        "set",
        &pubsub(&format!("<subscribe node='{node}' jid='{jid}'/>")),
    )
    .await
}

/// The `<item/>` elements of a retrieval result.
pub fn items_of(reply: &Element) -> Vec<Element> {
    reply
        .get_child("pubsub", NS_PUBSUB)
        .and_then(|p| p.get_child("items", NS_PUBSUB))
        .map(|i| {
            i.children()
                .filter(|c| c.name() == "item")
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

/// The ids of the `<item/>` elements of a retrieval result, in order.
pub fn item_ids(reply: &Element) -> Vec<String> {
    items_of(reply)
        .iter()
        .filter_map(|i| i.attr("id").map(str::to_owned))
        .collect()
}

/// A realistic Atom entry: XHTML content, links, categories, unicode.
pub fn atom_entry(id: &str, title: &str) -> String {
    format!(
        "<entry xmlns='http://www.w3.org/2005/Atom'>\
           <title type='text'>{title}</title>\
           <link rel='alternate' type='text/html' href='http://denmark.lit/2003/12/13/atom03'/>\
           <link rel='enclosure' type='audio/mpeg' length='1337' href='http://denmark.lit/a.mp3'/>\
           <id>tag:denmark.lit,2003:entry-{id}</id>\
           <published>2003-12-13T18:30:02Z</published>\
           <updated>2003-12-13T18:30:02Z</updated>\
           <author><name>Hamlet</name><uri>xmpp:hamlet@denmark.lit</uri></author>\
           <category term='soliloquy' scheme='urn:example:genre' label='Soliloquy ✓'/>\
           <content type='xhtml'><div xmlns='http://www.w3.org/1999/xhtml'>\
             <p>To be, or not to be: <em>that</em> is the question — «ñandú» 日本語 &amp; &lt;tags&gt;</p>\
           </div></content>\
         </entry>"
    )
}

/// Waits for a `<message/>` from the service carrying a pubsub event.
pub async fn next_event(client: &mut Client, ps: &Pubsubd, timeout: Duration) -> Option<Element> {
    let from = ps.jid().to_owned();
    client
        .wait_for(
            move |s: &Element| {
                s.name() == "message"
                    && s.attr("from") == Some(from.as_str())
                    && s.get_child("event", NS_EVENT).is_some()
            },
            timeout,
        )
        .await
        .ok()
}

/// Subscribes `<prefix><n>@<domain>`, n = 1 … `count`, to the live node `node` straight
/// in pubsubd's store (subids `<prefix>-<n>`), for crowds too large to subscribe over
/// XMPP; on either backend.
pub async fn subscribe_crowd(
    db: &TestStore,
    node: &str,
    prefix: &str,
    domain: &str,
    count: i64,
) -> anyhow::Result<()> {
    const COLUMNS: &str = "INSERT INTO subscriptions (node_pk, jid, bare_jid, subid, state)
         SELECT n.pk, $1 || g || '@' || $2, $1 || g || '@' || $2, $1 || '-' || g, 'subscribed'";
    match db {
        TestStore::Postgres(pg) => {
            let pool = sqlx::PgPool::connect(pg.url()).await?;
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "{COLUMNS} FROM nodes n, generate_series(1, $4::bigint) g
                 WHERE n.name = $3 AND NOT n.deleted"
            )))
            .bind(prefix)
            .bind(domain)
            .bind(node)
            .bind(count)
            .execute(&pool)
            .await?;
            // As any bulk import should: fresh planner statistics for the new rows.
            sqlx::query("ANALYZE subscriptions").execute(&pool).await?;
        }
        TestStore::Sqlite(file) => {
            let pool = sqlite_pool(file).await?;
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "WITH RECURSIVE series(g) AS (
                     SELECT 1 WHERE $4 > 0 UNION ALL SELECT g + 1 FROM series WHERE g < $4
                 )
                 {COLUMNS} FROM nodes n, series
                 WHERE n.name = $3 AND NOT n.deleted ORDER BY g"
            )))
            .bind(prefix)
            .bind(domain)
            .bind(node)
            .bind(count)
            .execute(&pool)
            .await?;
        }
    }
    Ok(())
}

/// How many subscriptions the live node `node` has in pubsubd's store.
pub async fn count_subscriptions(db: &TestStore, node: &str) -> anyhow::Result<i64> {
    const SQL: &str = "SELECT count(*) FROM subscriptions s JOIN nodes n ON n.pk = s.node_pk
         WHERE n.name = $1 AND NOT n.deleted";
    Ok(match db {
        TestStore::Postgres(pg) => {
            let pool = sqlx::PgPool::connect(pg.url()).await?;
            sqlx::query_scalar(SQL).bind(node).fetch_one(&pool).await?
        }
        TestStore::Sqlite(file) => {
            let pool = sqlite_pool(file).await?;
            sqlx::query_scalar(SQL).bind(node).fetch_one(&pool).await?
        }
    })
}

/// A small pool on pubsubd's SQLite file, beside the running service (no instance lock;
/// waits for the service's writes as pubsubd does).
async fn sqlite_pool(file: &pubsubd_testkit::TestSqlite) -> anyhow::Result<sqlx::SqlitePool> {
    Ok(sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(
            sqlx::sqlite::SqliteConnectOptions::new()
                .filename(file.path())
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true),
        )
        .await?)
}

/// The sum of every sample of `name`, whatever its labels (0 when there is none).
pub fn metric_sum(exposition: &str, name: &str) -> f64 {
    exposition
        .lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
