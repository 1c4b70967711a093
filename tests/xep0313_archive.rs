//! Node archives (XEP-0313 on pubsub nodes, as XEP-0442 specifies) against real
//! Prosody and ejabberd: paging forward and back in publish order, flipped pages,
//! ids across an overwrite, the form fields and their errors, metadata, disco, and the
//! rights of retrieving items. Each body covers several cases in sequence, to keep
//! the suite fast.

mod common;

use common::items::NS_ATOM;
use common::*;
use pubsubd_testkit::{both_servers, Client, Element};

const NS_MAM: &str = "urn:xmpp:mam:2";
const NS_FORWARD: &str = "urn:xmpp:forward:0";
const NS_DELAY: &str = "urn:xmpp:delay";

/// One archive item as a result message carried it.
#[derive(Debug, Clone)]
struct Archived {
    /// The archive id (`<result id=…>`).
    id: String,
    /// The pubsub item id.
    item: String,
    publisher: Option<String>,
    has_payload: bool,
    stamp: Option<String>,
}

/// The result messages of a query and its `<fin/>`.
#[derive(Debug)]
struct Page {
    items: Vec<Archived>,
    complete: bool,
    first: Option<String>,
    last: Option<String>,
}

impl Page {
    fn item_ids(&self) -> Vec<&str> {
        self.items.iter().map(|a| a.item.as_str()).collect()
    }
}

/// `<query node queryid>` with a form of `fields` (none: no form), the RSM set
/// `rsm` (inner XML; empty: no set) and `<flip-page/>` when `flip`.
fn query(node: Option<&str>, fields: &[(&str, &str)], rsm: &str, flip: bool) -> String {
    let node = node.map(|n| format!(" node='{n}'")).unwrap_or_default();
    let form = if fields.is_empty() {
        String::new()
    } else {
        form(NS_MAM, fields)
    };
    let set = if rsm.is_empty() {
        String::new()
    } else {
        format!("<set xmlns='{NS_RSM}'>{rsm}</set>")
    };
    let flip = if flip { "<flip-page/>" } else { "" };
    format!("<query xmlns='{NS_MAM}' queryid='q7'{node}>{form}{set}{flip}</query>")
}

/// Runs a query: the page, or the error answer.
async fn mam(c: &mut Client, ps: &Pubsubd, payload: &str) -> anyhow::Result<Result<Page, Element>> {
    c.drain();
    let reply = iq(c, ps, "set", payload).await?;
    if reply.attr("type") != Some("result") {
        assert!(c.drain().is_empty(), "no result messages before an error");
        return Ok(Err(reply));
    }
    let fin = reply.get_child("fin", NS_MAM).expect("<fin/>");
    let set = fin.get_child("set", NS_RSM).expect("RSM set in <fin/>");
    assert!(set.get_child("count", NS_RSM).is_none(), "no count");
    let text = |name: &str| set.get_child(name, NS_RSM).map(|e| e.text());
    let items = c
        .drain()
        .into_iter()
        .filter_map(|m| m.get_child("result", NS_MAM).cloned())
        .map(|r| {
            assert_eq!(r.attr("queryid"), Some("q7"));
            let fwd = r.get_child("forwarded", NS_FORWARD).expect("forwarded");
            let message = fwd
                .get_child("message", "jabber:client")
                .unwrap_or_else(|| panic!("forwarded message in {}", String::from(fwd)));
            let items = message
                .get_child("event", NS_EVENT)
                .and_then(|e| e.get_child("items", NS_EVENT))
                .expect("event items");
            assert_eq!(items.children().count(), 1, "one item per message");
            let item = items.children().next().expect("item");
            Archived {
                id: r.attr("id").expect("archive id").to_owned(),
                item: item.attr("id").expect("item id").to_owned(),
                publisher: item.attr("publisher").map(str::to_owned),
                has_payload: item.children().next().is_some(),
                stamp: fwd
                    .get_child("delay", NS_DELAY)
                    .and_then(|d| d.attr("stamp"))
                    .map(str::to_owned),
            }
        })
        .collect();
    Ok(Ok(Page {
        items,
        complete: fin.attr("complete") == Some("true"),
        first: text("first"),
        last: text("last"),
    }))
}

async fn page(c: &mut Client, ps: &Pubsubd, payload: &str) -> anyhow::Result<Page> {
    match mam(c, ps, payload).await? {
        Ok(p) => Ok(p),
        Err(e) => anyhow::bail!("archive query refused: {}", String::from(&e)),
    }
}

async fn refused(c: &mut Client, ps: &Pubsubd, payload: &str) -> anyhow::Result<Element> {
    match mam(c, ps, payload).await? {
        Ok(p) => anyhow::bail!("archive query answered: {p:?}"),
        Err(e) => Ok(e),
    }
}

fn atom(n: &str) -> String {
    format!("<entry xmlns='{NS_ATOM}'><title>{n}</title></entry>")
}

both_servers!(
    archive_pages_forward_and_back_in_publish_order,
    |server| async move {
        let ps = start(server).await?;
        let mut c = user(server, "owner").await?;
        create(&mut c, &ps, "news", &[("pubsub#itemreply", "publisher")]).await?;
        for id in ["a", "b", "c", "d", "e"] {
            ok(&publish(&mut c, &ps, "news", Some(id), &atom(id)).await?);
        }
        let before = page(&mut c, &ps, &query(Some("news"), &[], "", false)).await?;
        assert_eq!(before.item_ids(), ["a", "b", "c", "d", "e"]);
        let old_b = before.items[1].id.clone();
        // An overwrite moves b to the end of the archive, under a new id.
        ok(&publish(&mut c, &ps, "news", Some("b"), &atom("b2")).await?);
        let all = page(&mut c, &ps, &query(Some("news"), &[], "", false)).await?;
        assert_eq!(all.item_ids(), ["a", "c", "d", "e", "b"]);
        assert!(all.complete);
        let ids: Vec<i64> = all
            .items
            .iter()
            .map(|a| a.id.parse().expect("numeric id"))
            .collect();
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "publish order: {ids:?}"
        );
        assert!(!ids.contains(&old_b.parse()?), "the old b left the archive");
        let me = c.jid().to_owned();
        for a in &all.items {
            assert_eq!(a.publisher.as_deref(), Some(me.as_str()));
            assert!(a.has_payload && a.stamp.is_some(), "{a:?}");
        }
        assert_eq!(all.first.as_deref(), Some(all.items[0].id.as_str()));
        assert_eq!(all.last.as_deref(), Some(all.items[4].id.as_str()));

        // Forward: 2, 2, 1.
        let p1 = page(
            &mut c,
            &ps,
            &query(Some("news"), &[], "<max>2</max>", false),
        )
        .await?;
        assert_eq!((p1.item_ids(), p1.complete), (vec!["a", "c"], false));
        let after = format!(
            "<max>2</max><after>{}</after>",
            p1.last.clone().unwrap_or_default()
        );
        let p2 = page(&mut c, &ps, &query(Some("news"), &[], &after, false)).await?;
        assert_eq!((p2.item_ids(), p2.complete), (vec!["d", "e"], false));
        let after = format!(
            "<max>2</max><after>{}</after>",
            p2.last.clone().unwrap_or_default()
        );
        let p3 = page(&mut c, &ps, &query(Some("news"), &[], &after, false)).await?;
        assert_eq!((p3.item_ids(), p3.complete), (vec!["b"], true));

        // Back from the end: the last page, then the ones before it.
        let l1 = page(
            &mut c,
            &ps,
            &query(Some("news"), &[], "<max>2</max><before/>", false),
        )
        .await?;
        assert_eq!((l1.item_ids(), l1.complete), (vec!["e", "b"], false));
        let back = format!(
            "<max>2</max><before>{}</before>",
            l1.first.clone().unwrap_or_default()
        );
        let l2 = page(&mut c, &ps, &query(Some("news"), &[], &back, false)).await?;
        assert_eq!((l2.item_ids(), l2.complete), (vec!["c", "d"], false));
        let back = format!(
            "<max>2</max><before>{}</before>",
            l2.first.clone().unwrap_or_default()
        );
        let l3 = page(&mut c, &ps, &query(Some("news"), &[], &back, false)).await?;
        assert_eq!((l3.item_ids(), l3.complete), (vec!["a"], true));

        // A flipped page: the same items, newest first; first/last unchanged.
        let f = page(&mut c, &ps, &query(Some("news"), &[], "<max>3</max>", true)).await?;
        assert_eq!((f.item_ids(), f.complete), (vec!["d", "c", "a"], false));
        assert_eq!(f.first.as_deref(), Some(all.items[0].id.as_str()));

        // after-id from before the overwrite is still a position: b comes again.
        let since = page(
            &mut c,
            &ps,
            &query(Some("news"), &[("after-id", &old_b)], "", false),
        )
        .await?;
        assert_eq!(since.item_ids(), ["c", "d", "e", "b"]);
        // after-id and before-id together: the items between.
        let between = page(
            &mut c,
            &ps,
            &query(
                Some("news"),
                &[
                    ("after-id", &ids[0].to_string()),
                    ("before-id", &ids[3].to_string()),
                ],
                "",
                false,
            ),
        )
        .await?;
        assert_eq!(between.item_ids(), ["c", "d"]);
        // ids: exactly those items, in publish order; an id that left is not found.
        let picked = format!(
            "<x xmlns='{NS_DATA}' type='submit'><field var='FORM_TYPE' type='hidden'><value>{NS_MAM}</value></field>\
             <field var='ids'><value>{}</value><value>{}</value></field></x>",
            ids[4], ids[1]
        );
        let got = page(
            &mut c,
            &ps,
            &format!("<query xmlns='{NS_MAM}' queryid='q7' node='news'>{picked}</query>"),
        )
        .await?;
        assert_eq!(got.item_ids(), ["c", "b"]);
        err(
            &refused(
                &mut c,
                &ps,
                &query(Some("news"), &[("ids", &old_b)], "", false),
            )
            .await?,
            "cancel",
            "item-not-found",
            None,
        );

        // A retraction removes the item from the archive.
        ok(&iq(
            &mut c,
            &ps,
            "set",
            &pubsub("<retract node='news'><item id='d'/></retract>"),
        )
        .await?);
        let left = page(&mut c, &ps, &query(Some("news"), &[], "", false)).await?;
        assert_eq!(left.item_ids(), ["a", "c", "e", "b"]);
        Ok::<_, anyhow::Error>(())
    }
);

both_servers!(
    archive_filters_form_metadata_disco_and_errors,
    |server| async move {
        let ps = start(server).await?;
        let mut owner_c = user(server, "owner").await?;
        let mut publisher = user(server, "pub").await?;
        create(&mut owner_c, &ps, "feed", &[]).await?;
        create(&mut owner_c, &ps, "empty", &[]).await?;
        let change = format!(
            "<affiliations node='feed'><affiliation jid='{}' affiliation='publisher'/></affiliations>",
            publisher.bare_jid()
        );
        ok(&iq(&mut owner_c, &ps, "set", &owner(&change)).await?);
        ok(&publish(&mut owner_c, &ps, "feed", Some("o1"), &atom("o1")).await?);
        ok(&publish(&mut publisher, &ps, "feed", Some("p1"), &atom("p1")).await?);
        // A second between these two publishes (stamps are read in whole seconds).
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        let later = chrono::Utc::now()
            .format("%Y-%m-%dT%H:%M:%S%.3fZ")
            .to_string();
        ok(&publish(&mut publisher, &ps, "feed", Some("p2"), &atom("p2")).await?);
        ok(&publish(&mut owner_c, &ps, "feed", Some("o2"), &atom("o2")).await?);

        // with: a bare JID matches every resource; a full JID only itself.
        let bare = publisher.bare_jid().to_owned();
        let full = publisher.jid().to_owned();
        let mine = page(
            &mut owner_c,
            &ps,
            &query(Some("feed"), &[("with", &bare)], "", false),
        )
        .await?;
        assert_eq!(mine.item_ids(), ["p1", "p2"]);
        let exact = page(
            &mut owner_c,
            &ps,
            &query(Some("feed"), &[("with", &full)], "", false),
        )
        .await?;
        assert_eq!(exact.item_ids(), ["p1", "p2"]);
        let other = page(
            &mut owner_c,
            &ps,
            &query(
                Some("feed"),
                &[("with", &format!("{bare}/elsewhere"))],
                "",
                false,
            ),
        )
        .await?;
        assert!(other.items.is_empty() && other.complete);
        // start and end are inclusive bounds on the publish time.
        let since = page(
            &mut owner_c,
            &ps,
            &query(Some("feed"), &[("start", &later)], "", false),
        )
        .await?;
        assert_eq!(since.item_ids(), ["p2", "o2"]);
        let until = page(
            &mut owner_c,
            &ps,
            &query(Some("feed"), &[("end", &later)], "", false),
        )
        .await?;
        assert_eq!(until.item_ids(), ["o1", "p1"]);
        let both = page(
            &mut owner_c,
            &ps,
            &query(
                Some("feed"),
                &[("start", &later), ("with", &bare)],
                "<max>1</max>",
                false,
            ),
        )
        .await?;
        assert_eq!((both.item_ids(), both.complete), (vec!["p2"], true));
        let none = page(
            &mut owner_c,
            &ps,
            &query(
                Some("feed"),
                &[("start", "2999-01-01T00:00:00Z")],
                "",
                false,
            ),
        )
        .await?;
        assert!(none.items.is_empty() && none.complete && none.first.is_none());

        // The form: FORM_TYPE and the fields, ids as an open list.
        let form = iq(
            &mut owner_c,
            &ps,
            "get",
            &format!("<query xmlns='{NS_MAM}' node='feed'/>"),
        )
        .await?;
        ok(&form);
        let x = form
            .get_child("query", NS_MAM)
            .and_then(|q| q.get_child("x", NS_DATA))
            .expect("form");
        let vars: Vec<_> = x.children().filter_map(|f| f.attr("var")).collect();
        assert_eq!(
            vars,
            [
                "FORM_TYPE",
                "with",
                "start",
                "end",
                "before-id",
                "after-id",
                "ids"
            ]
        );

        // Metadata: the first and last item, or nothing for an empty archive.
        let all = page(&mut owner_c, &ps, &query(Some("feed"), &[], "", false)).await?;
        let meta = iq(
            &mut owner_c,
            &ps,
            "get",
            &format!("<metadata xmlns='{NS_MAM}' node='feed'/>"),
        )
        .await?;
        ok(&meta);
        let m = meta.get_child("metadata", NS_MAM).expect("metadata");
        let start = m.get_child("start", NS_MAM).expect("start");
        let end = m.get_child("end", NS_MAM).expect("end");
        assert_eq!(start.attr("id"), Some(all.items[0].id.as_str()));
        assert_eq!(end.attr("id"), Some(all.items[3].id.as_str()));
        assert_eq!(end.attr("timestamp"), all.items[3].stamp.as_deref());
        let meta = iq(
            &mut owner_c,
            &ps,
            "get",
            &format!("<metadata xmlns='{NS_MAM}' node='empty'/>"),
        )
        .await?;
        ok(&meta);
        assert_eq!(
            meta.get_child("metadata", NS_MAM)
                .map(|m| m.children().count()),
            Some(0)
        );

        // disco#info of the service and of a node name both features.
        for node in ["", " node='feed'"] {
            let info = iq(
                &mut owner_c,
                &ps,
                "get",
                &format!("<query xmlns='http://jabber.org/protocol/disco#info'{node}/>"),
            )
            .await?;
            ok(&info);
            let features: Vec<String> = info
                .get_child("query", "http://jabber.org/protocol/disco#info")
                .map(|q| {
                    q.children()
                        .filter_map(|f| f.attr("var").map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            for f in [NS_MAM, "urn:xmpp:mam:2#extended"] {
                assert!(features.iter().any(|v| v == f), "{f} in {features:?}");
            }
        }

        // Errors, none of them after any result message.
        let c = &mut owner_c;
        let unknown = query(Some("feed"), &[("{urn:example}search", "x")], "", false);
        err(
            &refused(c, &ps, &unknown).await?,
            "cancel",
            "feature-not-implemented",
            None,
        );
        let bad_time = query(Some("feed"), &[("start", "yesterday")], "", false);
        err(
            &refused(c, &ps, &bad_time).await?,
            "modify",
            "bad-request",
            None,
        );
        let never = query(Some("feed"), &[("after-id", "999999999999")], "", false);
        err(
            &refused(c, &ps, &never).await?,
            "cancel",
            "item-not-found",
            None,
        );
        let before = query(Some("feed"), &[("before-id", "nonsense")], "", false);
        err(
            &refused(c, &ps, &before).await?,
            "cancel",
            "item-not-found",
            None,
        );
        let rsm = query(Some("feed"), &[], "<after>x1</after>", false);
        err(
            &refused(c, &ps, &rsm).await?,
            "cancel",
            "item-not-found",
            None,
        );
        let no_node = query(None, &[], "", false);
        err(
            &refused(c, &ps, &no_node).await?,
            "modify",
            "bad-request",
            Some("nodeid-required"),
        );
        let missing = query(Some("nowhere"), &[], "", false);
        err(
            &refused(c, &ps, &missing).await?,
            "cancel",
            "item-not-found",
            None,
        );
        Ok::<_, anyhow::Error>(())
    }
);

both_servers!(
    archive_rights_are_those_of_retrieving_items,
    |server| async move {
        let ps = start(server).await?;
        let mut owner_c = user(server, "owner").await?;
        create(
            &mut owner_c,
            &ps,
            "club",
            &[("pubsub#access_model", "whitelist")],
        )
        .await?;
        ok(&publish(&mut owner_c, &ps, "club", Some("1"), &atom("secret")).await?);
        let mut outsider = user(server, "outsider").await?;
        let retrieval = iq(&mut outsider, &ps, "get", &pubsub("<items node='club'/>")).await?;
        err(&retrieval, "cancel", "not-allowed", Some("closed-node"));
        let archive = refused(&mut outsider, &ps, &query(Some("club"), &[], "", false)).await?;
        err(&archive, "cancel", "not-allowed", Some("closed-node"));
        let meta = iq(
            &mut outsider,
            &ps,
            "get",
            &format!("<metadata xmlns='{NS_MAM}' node='club'/>"),
        )
        .await?;
        err(&meta, "cancel", "not-allowed", Some("closed-node"));

        // A member reads what a retrieval would show them.
        let mut member = user(server, "member").await?;
        let change = format!(
            "<affiliations node='club'><affiliation jid='{}' affiliation='member'/></affiliations>",
            member.bare_jid()
        );
        ok(&iq(&mut owner_c, &ps, "set", &owner(&change)).await?);
        let got = page(&mut member, &ps, &query(Some("club"), &[], "", false)).await?;
        assert_eq!(got.item_ids(), ["1"]);
        // The default itemreply (none) keeps the publisher out of notifications, and so
        // out of the archive.
        assert_eq!(got.items[0].publisher, None);
        Ok::<_, anyhow::Error>(())
    }
);

/// The Python that has Debian's `python3-slixmpp` (`.ci/run` installs it), not whatever
/// `python3` comes first on the PATH.
const SYSTEM_PYTHON: &str = "/usr/bin/python3";

// An off-the-shelf client: slixmpp's own `xep_0313` plugin pages the archive forward and
// back with RSM, as it would a user's archive. Only the node is added, by a stanza
// filter, since the plugin cannot name one (tests/clients/slixmpp_archive.py).
both_servers!(
    slixmpp_pages_a_node_archive_with_its_own_plugin,
    |server| async move {
        let ps = start(server).await?;
        let account = server.create_user("slix").await?;
        let mut c = pubsubd_testkit::Client::login(server.c2s_addr(), &account).await?;
        create(&mut c, &ps, "feed", &[]).await?;
        let ids: Vec<String> = (1..=7).map(|n| format!("entry-{n}")).collect();
        for id in &ids {
            ok(&publish(&mut c, &ps, "feed", Some(id), &atom(id)).await?);
        }
        // An overwrite moves entry-2 to the end, as pubsubd documents.
        ok(&publish(&mut c, &ps, "feed", Some("entry-2"), &atom("again")).await?);
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/clients/slixmpp_archive.py"
        );
        let c2s = server.c2s_addr();
        let out = tokio::process::Command::new(SYSTEM_PYTHON)
            .arg(script)
            .arg(account.jid())
            .arg(account.password())
            .arg(c2s.ip().to_string())
            .arg(c2s.port().to_string())
            .arg(ps.jid())
            .arg("feed")
            .arg("3")
            .kill_on_drop(true)
            .output()
            .await?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "slixmpp: {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let got: serde_json::Value = serde_json::from_str(stdout.trim())?;
        let mut expected: Vec<&str> = ids.iter().map(String::as_str).collect();
        expected.retain(|id| *id != "entry-2");
        expected.push("entry-2");
        let list = |key: &str| -> Vec<String> {
            got[key]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default()
        };
        assert_eq!(list("forward"), expected, "{got}");
        expected.reverse();
        assert_eq!(list("backward"), expected, "{got}");
        // 7 items in pages of 3: three pages, and the plugin asks once more after a
        // short page (it reads no `complete`), which is answered empty.
        let pages = got["pages"].as_u64().unwrap_or(0);
        assert!((3..=4).contains(&pages), "{got}");
        Ok::<_, anyhow::Error>(())
    }
);
