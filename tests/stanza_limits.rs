//! Stanzas at and beyond every limit, sent by real users through real Prosody and
//! ejabberd: each request is answered with the XEP's error (or served), the next one is
//! served, and the component stream is never dropped (no disconnect counted, no
//! reconnect, nothing about a lost connection in the log).

mod common;

use common::watched::{start_watched, Watched};
use common::*;
use pubsubd_testkit::{both_servers, stanza, Client, Element};

/// Longer than every identifier limit (1,023 bytes) and than tokio-xmpp's old token
/// limit (8 KiB), which used to cut the stream.
const LONG: usize = 10_000;
/// An image the size of an ordinary photo thumbnail, inlined as a `data:` URI.
const DATA_URI_BYTES: usize = 100_000;
/// How long a request of megabytes may take to be answered.
const BIG_STANZA_WAIT: std::time::Duration = std::time::Duration::from_secs(60);
/// Replaced in a template by a long value (attribute values and text).
const MARK: &str = "MARK";

impl Watched {
    /// The number of stanzas the reader refused, over all limits.
    async fn refused(&self) -> anyhow::Result<f64> {
        Ok(metric_sum(
            &self.metrics().await?,
            "pubsubd_stanzas_refused_total",
        ))
    }
}

/// `xml` parsed, with every attribute value and text equal to [`MARK`] replaced by
/// `value`: how a test sends values longer than any parser of test code should take.
fn inflate(xml: &str, value: &str) -> Element {
    let mut el = stanza::parse(xml);
    replace_mark(&mut el, value);
    el
}

fn replace_mark(el: &mut Element, value: &str) {
    let marked: Vec<String> = el
        .attrs()
        .iter()
        .filter(|(_, v)| v.as_str() == MARK)
        .map(|((_, name), _)| name.to_string())
        .collect();
    for name in marked {
        stanza::set_attr(el, &name, value);
    }
    if el.children().next().is_none() && el.text() == MARK {
        el.take_nodes();
        el.append_text(value);
    }
    for child in el.children_mut() {
        replace_mark(child, value);
    }
}

/// Sends `payload` in an iq of `kind` to the service and returns the answer, after
/// checking that the next request (a ping) is answered too.
async fn ask(
    client: &mut Client,
    ps: &Pubsubd,
    kind: &str,
    payload: Element,
) -> anyhow::Result<Element> {
    // Generous: a debug-build server parsing a few megabytes on a busy machine.
    let started = std::time::Instant::now();
    let reply = client
        .iq_timeout(stanza::iq(kind, ps.jid(), payload), BIG_STANZA_WAIT)
        .await?;
    let took = started.elapsed();
    if took > std::time::Duration::from_secs(1) {
        eprintln!("a request answered in {took:?}");
    }
    ok(&client.iq(stanza::ping(ps.jid())).await?);
    Ok(reply)
}

/// An Atom entry whose XHTML content shows an image inlined as a `data:` URI.
fn atom_with_image(id: &str, image_bytes: usize) -> (String, String) {
    let uri = format!(
        "data:image/png;base64,{}",
        "iVBORw0K".repeat(image_bytes / 8)
    );
    let entry = format!(
        "<entry xmlns='http://www.w3.org/2005/Atom'><title>{id}</title>\
         <id>tag:example.org,2026:{id}</id><updated>2026-12-06T00:00:00Z</updated>\
         <content type='xhtml'><div xmlns='http://www.w3.org/1999/xhtml'>\
         <p><img alt='chart' src='{MARK}'/></p></div></content></entry>"
    );
    (entry, uri)
}

/// The `src` of the image in an Atom entry carried by `el` (an item or a notification).
fn image_src(el: &Element) -> Option<String> {
    fn find(el: &Element) -> Option<String> {
        if el.name() == "img" {
            return el.attr("src").map(str::to_owned);
        }
        el.children().find_map(find)
    }
    find(el)
}

both_servers!(
    long_values_in_every_field_are_answered_and_the_stream_stays_up,
    |server| async move {
        let w = start_watched(server, "").await?;
        let ps = &w.ps;
        let mut a = user(server, "a").await?;
        create(&mut a, ps, "n", &[]).await?;
        let long = "x".repeat(LONG);
        let cases: Vec<(&str, String, &str, &str, Option<&str>)> = vec![
            // Identifiers longer than 1,023 bytes are refused by pubsubd's own checks.
            ("get", pubsub(&format!("<items node='{MARK}'/>")), "modify", "bad-request", None),
            ("set", pubsub(&format!("<publish node='n'><item id='{MARK}'><x xmlns='urn:x'/></item></publish>")), "modify", "bad-request", None),
            ("get", pubsub(&format!("<items node='n'><item id='{MARK}'/></items>")), "modify", "bad-request", None),
            ("set", pubsub(&format!("<subscribe node='n' jid='{MARK}'/>")), "modify", "bad-request", Some("invalid-jid")),
            ("set", pubsub(&format!("<unsubscribe node='n' jid='{}' subid='{MARK}'/>", a.bare_jid())), "modify", "not-acceptable", Some("invalid-subid")),
            ("get", pubsub(&format!("<options node='n' jid='{}' subid='{MARK}'/>", a.bare_jid())), "modify", "not-acceptable", Some("invalid-subid")),
            ("set", owner(&format!("<configure node='n'>{}</configure>", config_form(&[("pubsub#max_items", MARK)]))), "modify", "not-acceptable", None),
            ("set", owner(&format!("<affiliations node='n'><affiliation jid='{MARK}' affiliation='member'/></affiliations>")), "modify", "bad-request", Some("invalid-jid")),
        ];
        for (kind, template, type_, condition, pubsub_condition) in cases {
            let reply = ask(&mut a, ps, kind, inflate(&template, &long)).await?;
            err(&reply, type_, condition, pubsub_condition);
        }
        // A long title is an ordinary value: stored and read back whole.
        let title = "t".repeat(LONG);
        let reply = ask(
            &mut a,
            ps,
            "set",
            inflate(
                &owner(&format!(
                    "<configure node='n'>{}</configure>",
                    config_form(&[("pubsub#title", MARK)])
                )),
                &title,
            ),
        )
        .await?;
        ok(&reply);
        let config = ask(
            &mut a,
            ps,
            "get",
            stanza::parse(&owner("<configure node='n'/>")),
        )
        .await?;
        assert!(stanza::to_xml(&config).contains(&title), "title kept whole");
        // A long id on the iq itself and a long text in the payload.
        let mut ping = stanza::ping(ps.jid());
        stanza::set_attr(&mut ping, "id", &long);
        let reply = a.iq(ping).await?;
        ok(&reply);
        assert_eq!(reply.attr("id"), Some(long.as_str()));
        let publish_note = |text: &str| {
            inflate(
                &pubsub(&format!(
                    "<publish node='n'><item id='text'><note xmlns='urn:x'>{MARK}</note></item></publish>"
                )),
                text,
            )
        };
        let reply = ask(&mut a, ps, "set", publish_note(&"é".repeat(100_000))).await?;
        err(&reply, "modify", "not-acceptable", Some("payload-too-big"));
        let short_text = "é".repeat(20_000);
        ok(&ask(&mut a, ps, "set", publish_note(&short_text)).await?);
        let items = ask(
            &mut a,
            ps,
            "get",
            stanza::parse(&pubsub("<items node='n'><item id='text'/></items>")),
        )
        .await?;
        let note = items_of(&items)
            .first()
            .and_then(|i| i.get_child("note", "urn:x"))
            .map(|n| n.text());
        assert_eq!(note.as_deref(), Some(short_text.as_str()));
        w.assert_stream_never_dropped().await?;
        Ok::<_, anyhow::Error>(())
    }
);

both_servers!(
    stanzas_over_the_readers_limits_are_refused_and_the_stream_stays_up,
    |server| async move {
        let w = start_watched(server, "max_stanza_size = 1048576\n").await?;
        let ps = &w.ps;
        let mut a = user(server, "a").await?;
        create(&mut a, ps, "n", &[]).await?;
        let long_name = "n".repeat(2_000);
        let many_attributes: String = (0..300).map(|i| format!(" a{i}='{i}'")).collect();
        let many_namespaces: String = (0..200)
            .map(|i| format!("<x xmlns='urn:example:{i}'/>"))
            .collect();
        let deep = format!("{}{}", "<d>".repeat(200), "</d>".repeat(200));
        let payloads = [
            format!("<{long_name} xmlns='urn:x'/>"),
            format!("<x xmlns='urn:x' {long_name}='1'/>"),
            format!("<x xmlns='urn:x'{many_attributes}/>"),
            format!("<x xmlns='urn:x'>{many_namespaces}</x>"),
            format!("<x xmlns='urn:x'>{deep}</x>"),
        ];
        for payload in &payloads {
            let reply = ask(
                &mut a,
                ps,
                "set",
                stanza::parse(&pubsub(&format!(
                    "<publish node='n'><item>{payload}</item></publish>"
                ))),
            )
            .await?;
            err(&reply, "modify", "policy-violation", None);
        }
        // Over the stanza limit (1 MiB here, 2 MiB by default; the test servers route
        // 16 MiB): a publish is payload-too-big, anything else policy-violation.
        let huge = "h".repeat(1536 * 1024);
        let reply = ask(
            &mut a,
            ps,
            "set",
            inflate(
                &pubsub(&format!(
                    "<publish node='n'><item><x xmlns='urn:x' v='{MARK}'/></item></publish>"
                )),
                &huge,
            ),
        )
        .await?;
        err(&reply, "modify", "not-acceptable", Some("payload-too-big"));
        let reply = ask(
            &mut a,
            ps,
            "get",
            inflate(&format!("<ping xmlns='urn:xmpp:ping' v='{MARK}'/>"), &huge),
        )
        .await?;
        err(&reply, "modify", "policy-violation", None);
        // An id too long to echo cannot be answered; the stream still goes on.
        let mut ping = stanza::ping(ps.jid());
        stanza::set_attr(&mut ping, "id", &huge);
        a.send(ping)?;
        ok(&a.iq(stanza::ping(ps.jid())).await?);
        assert_eq!(w.refused().await?, (payloads.len() + 3) as f64);
        let items = ask(
            &mut a,
            ps,
            "get",
            stanza::parse(&pubsub("<items node='n'/>")),
        )
        .await?;
        assert!(items_of(&items).is_empty(), "nothing refused was stored");
        assert!(
            ps.process
                .log_contents()
                .contains("stanza over a limit refused"),
            "refusals are logged"
        );
        w.assert_stream_never_dropped().await?;
        Ok::<_, anyhow::Error>(())
    }
);

both_servers!(
    atom_entries_with_100_kb_data_uris_are_published_notified_and_retrieved_intact,
    |server| async move {
        let w = start_watched(server, "max_payload_size = 262144\n").await?;
        let ps = &w.ps;
        let mut publisher = user(server, "pub").await?;
        let mut reader = user(server, "sub").await?;
        create(
            &mut publisher,
            ps,
            "feed",
            &[("pubsub#max_payload_size", "200000")],
        )
        .await?;
        create(
            &mut publisher,
            ps,
            "small",
            &[("pubsub#max_payload_size", "65536")],
        )
        .await?;
        ok(&subscribe(&mut reader, ps, "feed").await?);
        let (entry, uri) = atom_with_image("chart-1", DATA_URI_BYTES);
        let publish = |node: &str| {
            inflate(
                &pubsub(&format!(
                    "<publish node='{node}'><item id='chart-1'>{entry}</item></publish>"
                )),
                &uri,
            )
        };
        ok(&ask(&mut publisher, ps, "set", publish("feed")).await?);
        let event = next_event(&mut reader, ps, NOTIFY)
            .await
            .ok_or_else(|| anyhow::anyhow!("no notification"))?;
        assert!(image_src(&event) == Some(uri.clone()), "notified intact");
        let items = ask(
            &mut reader,
            ps,
            "get",
            stanza::parse(&pubsub("<items node='feed'/>")),
        )
        .await?;
        let item = items_of(&items).into_iter().next().ok_or_else(|| {
            let xml = stanza::to_xml(&items);
            anyhow::anyhow!("no item in {}", &xml[..xml.len().min(500)])
        })?;
        assert!(
            image_src(&item) == Some(uri.clone()),
            "retrieved intact: {}",
            &stanza::to_xml(&item)[..300]
        );
        // Above the node's max_payload_size: refused cleanly, nothing stored.
        let reply = ask(&mut publisher, ps, "set", publish("small")).await?;
        err(&reply, "modify", "not-acceptable", Some("payload-too-big"));
        let items = ask(
            &mut publisher,
            ps,
            "get",
            stanza::parse(&pubsub("<items node='small'/>")),
        )
        .await?;
        assert!(items_of(&items).is_empty());
        w.assert_stream_never_dropped().await?;
        Ok::<_, anyhow::Error>(())
    }
);

both_servers!(
    a_retrieval_larger_than_a_server_takes_comes_in_pages,
    |server| async move {
        let w = start_watched(server, "max_payload_size = 262144\n").await?;
        let ps = &w.ps;
        let mut a = user(server, "a").await?;
        create(
            &mut a,
            ps,
            "big",
            &[
                ("pubsub#max_items", "20"),
                ("pubsub#max_payload_size", "100000"),
            ],
        )
        .await?;
        const ITEMS: usize = 10;
        let body = "b".repeat(60_000);
        for i in 0..ITEMS {
            ok(&ask(
                &mut a,
                ps,
                "set",
                inflate(
                    &pubsub(&format!(
                        "<publish node='big'><item id='i{i}'><blob xmlns='urn:x'>{MARK}</blob></item></publish>"
                    )),
                    &body,
                ),
            )
            .await?);
        }
        // 600 KB of payloads in all: more than Prosody takes from a component in one
        // stanza by default (512 KiB). The answer holds what fits and says there is more.
        let mut seen = Vec::new();
        let mut after: Option<String> = None;
        for _ in 0..ITEMS {
            let set = match &after {
                None => String::new(),
                Some(last) => {
                    format!("<set xmlns='{NS_RSM}'><max>{ITEMS}</max><after>{last}</after></set>")
                }
            };
            let reply = ask(
                &mut a,
                ps,
                "get",
                stanza::parse(&pubsub(&format!("<items node='big'/>{set}"))),
            )
            .await?;
            ok(&reply);
            assert!(
                stanza::to_xml(&reply).len() < 512 * 1024,
                "an answer within the server's limit"
            );
            let ids = item_ids(&reply);
            assert!(!ids.is_empty());
            seen.extend(ids);
            let rsm = reply
                .get_child("pubsub", NS_PUBSUB)
                .and_then(|p| p.get_child("set", NS_RSM));
            let Some(rsm) = rsm else { break };
            assert_eq!(
                rsm.get_child("count", NS_RSM).map(|c| c.text()).as_deref(),
                Some("10")
            );
            if seen.len() == ITEMS {
                break;
            }
            after = rsm.get_child("last", NS_RSM).map(|l| l.text());
        }
        let expected: Vec<String> = (0..ITEMS).rev().map(|i| format!("i{i}")).collect();
        assert_eq!(
            seen, expected,
            "every item, newest first, over several pages"
        );
        w.assert_stream_never_dropped().await?;
        Ok::<_, anyhow::Error>(())
    }
);
