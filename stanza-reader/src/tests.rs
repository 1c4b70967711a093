use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, BufReader, ReadBuf};

use super::*;

const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' \
     xmlns:stream='http://etherx.jabber.org/streams' id='s1' from='ps.localhost'>";

/// Hands out its bytes a few at a time, so every token straddles reads.
struct Trickle {
    data: Vec<u8>,
    at: usize,
    step: usize,
}

impl AsyncRead for Trickle {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let end = (self.at + self.step)
            .min(self.data.len())
            .min(self.at + buf.remaining());
        let chunk = self.data[self.at..end].to_vec();
        buf.put_slice(&chunk);
        self.at = end;
        Poll::Ready(Ok(()))
    }
}

fn reader(body: &str, step: usize, limits: Limits) -> StanzaReader<BufReader<Trickle>> {
    let data = format!("{HEADER}{body}").into_bytes();
    StanzaReader::new(BufReader::new(Trickle { data, at: 0, step }), limits)
}

/// Everything after the header, until the footer, end of input or a fatal error.
async fn read_all(body: &str, step: usize, limits: Limits) -> (Vec<Item>, Option<ReadError>) {
    let mut r = reader(body, step, limits);
    match r.next().await {
        Ok(Item::Header(attrs)) => assert!(attrs.contains(&("id".into(), "s1".into()))),
        other => panic!("expected the header, got {other:?}"),
    }
    let mut items = Vec::new();
    loop {
        match r.next().await {
            Ok(Item::Footer) => return (items, None),
            Ok(item) => items.push(item),
            Err(e) => return (items, Some(e)),
        }
    }
}

fn iq(id: &str, inner: &str) -> String {
    format!("<iq type='set' id='{id}' from='a@localhost/r' to='ps.localhost'>{inner}</iq>")
}

fn ping(id: &str) -> String {
    iq(id, "<ping xmlns='urn:xmpp:ping'/>")
}

fn refusal(item: &Item) -> Option<(&Head, Refusal)> {
    match item {
        Item::Refused { head, refusal } => Some((head, *refusal)),
        _ => None,
    }
}

fn stanza_id(item: &Item) -> Option<&str> {
    match item {
        Item::Stanza(el) => el.attr("id"),
        _ => None,
    }
}

#[tokio::test]
async fn stanzas_inherit_the_stream_namespace_and_whitespace_between_them_is_skipped() {
    for step in [1, 7, 4096] {
        let body = format!("{} \n\t{}</stream:stream>", ping("1"), ping("2"));
        let (items, err) = read_all(&body, step, Limits::default()).await;
        assert!(err.is_none(), "{err:?}");
        assert_eq!(items.len(), 2);
        let Item::Stanza(first) = &items[0] else {
            panic!("{:?}", items[0])
        };
        assert!(first.is("iq", "jabber:component:accept"));
        assert!(first.has_child("ping", "urn:xmpp:ping"));
        assert_eq!(stanza_id(&items[1]), Some("2"));
    }
}

#[tokio::test]
async fn an_attribute_value_of_100_kb_is_read_whole() {
    let uri = format!("data:image/png;base64,{}", "A".repeat(100_000));
    let body = format!(
        "{}</stream:stream>",
        iq("big", &format!("<img xmlns='urn:x' src='{uri}'/>"))
    );
    let (items, err) = read_all(&body, 1500, Limits::default()).await;
    assert!(err.is_none(), "{err:?}");
    let Item::Stanza(el) = &items[0] else {
        panic!("{:?}", items[0])
    };
    let img = el.get_child("img", "urn:x").expect("img");
    assert_eq!(img.attr("src"), Some(uri.as_str()));
}

#[tokio::test]
async fn each_limit_refuses_its_stanza_and_the_next_one_is_read() {
    let limits = Limits {
        max_stanza_bytes: 4096,
        max_depth: 8,
        max_attributes: 10,
        max_namespace_declarations: 5,
        max_name_bytes: 32,
    };
    let deep = format!("{}{}", "<d>".repeat(20), "</d>".repeat(20));
    let cases = [
        (
            iq("big", &format!("<x xmlns='urn:x'>{}</x>", "t".repeat(5000))),
            Refusal::TooLarge { limit: 4096 },
        ),
        (
            iq(
                "attr",
                &format!("<x xmlns='urn:x' v='{}'/>", "v".repeat(5000)),
            ),
            Refusal::TooLarge { limit: 4096 },
        ),
        (
            iq("deep", &format!("<x xmlns='urn:x'>{deep}</x>")),
            Refusal::TooDeep { limit: 8 },
        ),
        (
            iq(
                "attrs",
                &format!(
                    "<x xmlns='urn:x' {}/>",
                    (0..11).map(|i| format!("a{i}='1' ")).collect::<String>()
                ),
            ),
            Refusal::TooManyAttributes { limit: 10 },
        ),
        (
            iq(
                "ns",
                &(0..6)
                    .map(|i| format!("<x xmlns='urn:{i}'/>"))
                    .collect::<String>(),
            ),
            Refusal::TooManyNamespaces { limit: 5 },
        ),
        (
            iq("name", &format!("<{0} xmlns='urn:x'/>", "n".repeat(40))),
            Refusal::NameTooLong { limit: 32 },
        ),
        (
            iq(
                "attrname",
                &format!("<x xmlns='urn:x' {}='1'/>", "n".repeat(40)),
            ),
            Refusal::NameTooLong { limit: 32 },
        ),
        (iq("prefix", "<p:x/>"), Refusal::UnboundPrefix),
    ];
    for (stanza, expected) in cases {
        for step in [3, 4096] {
            let body = format!("{stanza}{}</stream:stream>", ping("next"));
            let (items, err) = read_all(&body, step, limits).await;
            assert!(err.is_none(), "{expected:?}: {err:?}");
            assert_eq!(items.len(), 2, "{expected:?}: {items:?}");
            let (head, got) = refusal(&items[0]).expect("refused");
            assert_eq!(got, expected);
            assert_eq!(head.name, "iq");
            assert_eq!(head.attr("from"), Some("a@localhost/r"));
            assert_eq!(head.attr("type"), Some("set"));
            assert!(head.attr("id").is_some());
            assert_eq!(stanza_id(&items[1]), Some("next"), "{expected:?}");
        }
    }
}

#[tokio::test]
async fn a_refused_request_keeps_its_payload_name_and_namespace() {
    let limits = Limits {
        max_stanza_bytes: 1000,
        ..Limits::default()
    };
    let body = format!(
        "{}</stream:stream>",
        iq(
            "p",
            &format!(
                "<pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='n'><item>{}</item></publish></pubsub>",
                "x".repeat(2000)
            )
        )
    );
    let (items, _) = read_all(&body, 64, limits).await;
    let (head, refusal) = refusal(&items[0]).expect("refused");
    assert_eq!(refusal, Refusal::TooLarge { limit: 1000 });
    let payload = head.payload.as_ref().expect("payload");
    assert_eq!(payload.name, "pubsub");
    assert_eq!(
        payload.ns.as_deref(),
        Some("http://jabber.org/protocol/pubsub")
    );
    assert_eq!(payload.first_child.as_deref(), Some("publish"));
    let el = head.to_element("jabber:component:accept");
    assert_eq!(el.attr("id"), Some("p"));
    assert!(el.children().next().is_none());
}

#[tokio::test]
async fn a_hundred_thousand_levels_are_skipped_without_building_them() {
    let levels = 100_000;
    let body = format!(
        "{}{}{}{}</stream:stream>",
        "<iq type='get' id='deep'>",
        "<d>".repeat(levels),
        "</d>".repeat(levels),
        "</iq>"
    );
    let limits = Limits {
        max_stanza_bytes: 4 * 1024 * 1024,
        ..Limits::default()
    };
    let (items, err) = read_all(&body, 65536, limits).await;
    assert!(err.is_none(), "{err:?}");
    let (_, refusal) = refusal(&items[0]).expect("refused");
    assert_eq!(refusal, Refusal::TooDeep { limit: 128 });
}

#[tokio::test]
async fn only_a_single_token_eight_times_the_stanza_limit_ends_the_stream() {
    let limits = Limits {
        max_stanza_bytes: 1000,
        ..Limits::default()
    };
    let body = format!(
        "{}</stream:stream>",
        iq(
            "attr",
            &format!("<x xmlns='urn:x' v='{}'/>", "v".repeat(9000))
        )
    );
    let (items, err) = read_all(&body, 4096, limits).await;
    assert!(items.is_empty());
    assert!(err.expect("an error").is_malformed_xml());
}

#[tokio::test]
async fn malformed_xml_ends_the_stream_as_malformed() {
    let body = format!("{}<iq type='get' id='x'></message>", ping("1"));
    let (items, err) = read_all(&body, 4096, Limits::default()).await;
    assert_eq!(stanza_id(&items[0]), Some("1"));
    let err = err.expect("an error");
    assert!(err.is_malformed_xml(), "{err:?}");
}

#[tokio::test]
async fn the_end_of_input_without_a_footer_is_reported() {
    let (items, err) = read_all(&ping("1"), 4096, Limits::default()).await;
    assert_eq!(items.len(), 1);
    assert!(matches!(err, Some(ReadError::Eof)), "{err:?}");
}

#[tokio::test]
async fn a_resumed_reader_reads_stanzas_of_a_stream_opened_elsewhere() {
    let body = b"<message to='a@b'><body>hi</body></message><stream:error><x/></stream:error>";
    let mut r = StanzaReader::resume(&body[..], Limits::default(), "jabber:client");
    let Ok(Item::Stanza(m)) = r.next().await else {
        panic!("a message")
    };
    assert!(m.is("message", "jabber:client"));
    let Ok(Item::Stanza(e)) = r.next().await else {
        panic!("a stream error")
    };
    assert!(e.is("error", NS_STREAMS));
    assert!(matches!(r.next().await, Err(ReadError::Eof)));
}

#[test]
fn one_stanza_parses_from_a_string_under_the_same_limits() {
    let long = "v".repeat(50_000);
    let Ok(Item::Stanza(el)) = parse_stanza(
        &format!("<message><x xmlns='urn:x' v='{long}'/></message>"),
        "jabber:client",
        Limits::default(),
    ) else {
        panic!("a stanza")
    };
    assert!(el.is("message", "jabber:client"));
    assert_eq!(
        el.get_child("x", "urn:x").and_then(|x| x.attr("v")),
        Some(long.as_str())
    );
    let limits = Limits {
        max_depth: 2,
        ..Limits::default()
    };
    assert!(matches!(
        parse_stanza("<a><b><c/></b></a>", "urn:x", limits),
        Ok(Item::Refused {
            refusal: Refusal::TooDeep { limit: 2 },
            ..
        })
    ));
    assert!(matches!(
        parse_stanza("<a>", "urn:x", limits),
        Err(ReadError::Eof)
    ));
    assert!(parse_stanza("<a></b>", "urn:x", limits).is_err_and(|e| e.is_malformed_xml()));
}

#[test]
fn a_stanza_written_out_again_carries_no_declaration_of_the_stream() {
    let Ok(Item::Stanza(el)) = parse_stanza(
        "<message><body>hi</body></message>",
        "jabber:client",
        Limits::default(),
    ) else {
        panic!("a stanza")
    };
    assert_eq!(
        String::from(&el),
        "<message xmlns='jabber:client'><body>hi</body></message>"
    );
}
