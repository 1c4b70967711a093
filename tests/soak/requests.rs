//! The soak's hostile requests: a valid XEP-0060 request of every kind ([`TEMPLATES`]),
//! changed by a few random [`Mutation`]s. Everything comes from the caller's seeded
//! generator, so a seed replays a run. Values longer than a parser of test code should
//! take are set on built elements, never parsed.

use minidom::Node;
use pubsubd_testkit::{stanza, Element};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::Rng;

use crate::common::{
    config_form, form, owner, pubsub, NS_DATA, NS_EVENT, NS_OWNER, NS_PUBSUB, NS_RSM,
};

/// The shortest long value: past every identifier limit (1,023 bytes) and tokio-xmpp's
/// old 8 KiB token limit, which used to cut the stream.
const LONG_VALUE: usize = 10_000;
/// The longest value: an inlined image, what real clients put in an attribute.
const LONGEST_VALUE: usize = 100_000;
/// Deepest nesting added: past the stanza reader's 128 levels (two such mutations of one
/// request stack up to 400).
const DEEPEST: usize = 200;
/// Most attributes added to one element: from a few to far past the stanza reader's 64.
const MOST_ATTRIBUTES: usize = 300;
/// Most copies of a repeated child: one copy already makes a request ambiguous; a few
/// more check that nothing counts them one by one into trouble.
const MOST_COPIES: usize = 5;
/// Most mutations of one request: few enough that the request is still recognisably
/// of its kind and gets past the first checks now and then.
const MOST_MUTATIONS: usize = 3;
/// Share of requests sent unmutated, so that nodes, items and subscriptions come and go
/// and the mutated requests meet real state.
const VALID_SHARE: f64 = 0.1;
/// Share of subscriber requests (subscribe, unsubscribe, options) naming someone else's
/// JID.
const SOMEONE_ELSE: f64 = 0.2;
/// Characters shown of a request that went unanswered.
const SHOWN: usize = 400;

/// Who and what the requests of one attacker name.
pub struct Targets {
    /// The attacker's bare JID: where a request must name the requester.
    pub me: String,
    /// Nodes the attacker owns.
    pub own: Vec<String>,
    /// Prefix of the nodes the attacker may create during the soak.
    pub fresh: String,
    /// Nodes of others (the victim's, the fan-out's): nothing the attacker sends may
    /// change them.
    pub others: Vec<String>,
    /// JIDs of others, for owner operations and hostile values.
    pub other_jids: Vec<String>,
}

/// Which `<pubsub/>` a template's request goes in.
#[derive(Clone, Copy)]
enum Ns {
    Pubsub,
    Owner,
}

/// A valid request of one kind. The payload's `{node}`, `{item}`, `{me}`, `{jid}`,
/// `{config}`, `{options}`, `{publish_options}` and `{entry}` are filled in by
/// [`Template::fill`].
struct Template {
    name: &'static str,
    iq: &'static str,
    ns: Ns,
    inner: &'static str,
}

const fn t(name: &'static str, iq: &'static str, ns: Ns, inner: &'static str) -> Template {
    Template {
        name,
        iq,
        ns,
        inner,
    }
}

/// Every XEP-0060 request and owner operation pubsubd serves.
const TEMPLATES: &[Template] = &[
    t("create", "set", Ns::Pubsub, "<create node='{node}'/>"),
    t("create+configure", "set", Ns::Pubsub, "<create node='{node}'/><configure>{config}</configure>"),
    t("create instant", "set", Ns::Pubsub, "<create/>"),
    t("configure get", "get", Ns::Owner, "<configure node='{node}'/>"),
    t("configure set", "set", Ns::Owner, "<configure node='{node}'>{config}</configure>"),
    t("configure cancel", "set", Ns::Owner, "<configure node='{node}'><x xmlns='jabber:x:data' type='cancel'/></configure>"),
    t("default config", "get", Ns::Owner, "<default/>"),
    t("delete", "set", Ns::Owner, "<delete node='{node}'/>"),
    t("delete+redirect", "set", Ns::Owner, "<delete node='{node}'><redirect uri='xmpp:pubsub.localhost?;node={node}'/></delete>"),
    t("purge", "set", Ns::Owner, "<purge node='{node}'/>"),
    t("publish", "set", Ns::Pubsub, "<publish node='{node}'><item id='{item}'>{entry}</item></publish>"),
    t("publish no id", "set", Ns::Pubsub, "<publish node='{node}'><item>{entry}</item></publish>"),
    t("publish+options", "set", Ns::Pubsub, "<publish node='{node}'><item id='{item}'>{entry}</item></publish><publish-options>{publish_options}</publish-options>"),
    t("retract", "set", Ns::Pubsub, "<retract node='{node}' notify='true'><item id='{item}'/></retract>"),
    t("items", "get", Ns::Pubsub, "<items node='{node}' max_items='2'/>"),
    t("items by id", "get", Ns::Pubsub, "<items node='{node}'><item id='{item}'/></items>"),
    t("items paged", "get", Ns::Pubsub, "<items node='{node}'/><set xmlns='http://jabber.org/protocol/rsm'><max>2</max><after>{item}</after></set>"),
    t("subscribe", "set", Ns::Pubsub, "<subscribe node='{node}' jid='{me}'/>"),
    t("subscribe+options", "set", Ns::Pubsub, "<subscribe node='{node}' jid='{me}'/><options>{options}</options>"),
    t("unsubscribe", "set", Ns::Pubsub, "<unsubscribe node='{node}' jid='{me}'/>"),
    t("options get", "get", Ns::Pubsub, "<options node='{node}' jid='{me}'/>"),
    t("options set", "set", Ns::Pubsub, "<options node='{node}' jid='{me}'>{options}</options>"),
    t("default options", "get", Ns::Pubsub, "<default node='{node}'/>"),
    t("subscriptions", "get", Ns::Pubsub, "<subscriptions/>"),
    t("subscriptions of node", "get", Ns::Pubsub, "<subscriptions node='{node}'/>"),
    t("affiliations", "get", Ns::Pubsub, "<affiliations/>"),
    t("owner subscriptions get", "get", Ns::Owner, "<subscriptions node='{node}'/>"),
    t("owner subscriptions set", "set", Ns::Owner, "<subscriptions node='{node}'><subscription jid='{jid}' subscription='subscribed'/></subscriptions>"),
    t("owner affiliations get", "get", Ns::Owner, "<affiliations node='{node}'/>"),
    t("owner affiliations set", "set", Ns::Owner, "<affiliations node='{node}'><affiliation jid='{jid}' affiliation='publisher'/></affiliations>"),
];

impl Template {
    /// The payload as text, with short, valid values for the marks.
    fn fill(&self, rng: &mut StdRng, targets: &Targets) -> String {
        let node = pick_node(rng, targets);
        let jid = match rng.gen_range(0..3) {
            0 => targets.me.clone(),
            1 => choose(rng, &targets.other_jids).to_owned(),
            _ => format!("someone{}@localhost", rng.gen_range(0..10)),
        };
        // Now and then a subscriber request names someone else: only the owner of that
        // JID may.
        let subscriber = if rng.gen_bool(SOMEONE_ELSE) {
            choose(rng, &targets.other_jids).clone()
        } else {
            targets.me.clone()
        };
        let inner = self
            .inner
            .replace("{node}", &node)
            .replace("{item}", &format!("i{}", rng.gen_range(0..10)))
            .replace("{me}", &subscriber)
            .replace("{jid}", &jid)
            .replace(
                "{config}",
                &config_form(&[
                    ("pubsub#title", "soak"),
                    ("pubsub#max_items", "5"),
                    ("pubsub#access_model", "open"),
                    ("pubsub#publish_model", "publishers"),
                    ("pubsub#deliver_payloads", "true"),
                    ("pubsub#notify_retract", "true"),
                ]),
            )
            .replace(
                "{options}",
                &form(
                    "http://jabber.org/protocol/pubsub#subscribe_options",
                    &[("pubsub#deliver", "true"), ("pubsub#digest", "false")],
                ),
            )
            .replace(
                "{publish_options}",
                &form(
                    "http://jabber.org/protocol/pubsub#publish-options",
                    &[("pubsub#access_model", "open")],
                ),
            )
            .replace(
                "{entry}",
                "<entry xmlns='http://www.w3.org/2005/Atom'><title>soak</title>\
                 <id>tag:example.org,2026:soak</id></entry>",
            );
        match self.ns {
            Ns::Pubsub => pubsub(&inner),
            Ns::Owner => owner(&inner),
        }
    }
}

/// A node of the attacker's (most often), of someone else's, or a new one.
fn pick_node(rng: &mut StdRng, targets: &Targets) -> String {
    match rng.gen_range(0..20) {
        0..=8 => choose(rng, &targets.own).to_owned(),
        9..=15 => choose(rng, &targets.others).to_owned(),
        _ => format!("{}-{}", targets.fresh, rng.gen_range(0..50)),
    }
}

fn choose<'a, T>(rng: &mut StdRng, from: &'a [T]) -> &'a T {
    from.choose(rng).expect("a list of choices is never empty")
}

/// One change to a valid request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Mutation {
    /// An attribute (existing or a known name) set to a hostile value.
    HostileAttribute,
    /// An element's text replaced (or joined) by a hostile value.
    HostileText,
    /// Letters where a number goes, an invalid JID, an unknown enumeration value.
    WrongType,
    /// A child repeated.
    RepeatedChild,
    /// A child left out.
    MissingChild,
    /// An attribute left out.
    MissingAttribute,
    /// An element nobody asked for.
    UnknownElement,
    /// An element moved to another namespace.
    WrongNamespace,
    /// A chain of up to [`DEEPEST`] nested elements.
    DeepNesting,
    /// Up to [`MOST_ATTRIBUTES`] attributes on one element.
    ManyAttributes,
    /// `get` for `set` and the other way round.
    WrongIqType,
    /// The whole payload twice in one iq.
    TwoPayloads,
}

const MUTATIONS: &[Mutation] = &[
    Mutation::HostileAttribute,
    Mutation::HostileText,
    Mutation::WrongType,
    Mutation::RepeatedChild,
    Mutation::MissingChild,
    Mutation::MissingAttribute,
    Mutation::UnknownElement,
    Mutation::WrongNamespace,
    Mutation::DeepNesting,
    Mutation::ManyAttributes,
    Mutation::WrongIqType,
    Mutation::TwoPayloads,
];

/// A request ready to send: the iq type and its payload elements.
pub struct Request {
    /// The template's name, e.g. `publish+options`.
    pub template: &'static str,
    pub iq_type: &'static str,
    pub payloads: Vec<Element>,
    pub mutations: Vec<Mutation>,
}

impl Request {
    /// The iq to send to `service`, with id `id`.
    pub fn iq(&self, service: &str, id: &str) -> Element {
        let mut payloads = self.payloads.iter().cloned();
        let first = payloads.next().expect("a request has a payload");
        let mut iq = stanza::iq(self.iq_type, service, first);
        for more in payloads {
            iq.append_child(more);
        }
        stanza::set_attr(&mut iq, "id", id);
        iq
    }

    /// What a failure report shows of it: template, mutations, size and the start.
    pub fn describe(&self) -> String {
        let xml: String = self.payloads.iter().map(stanza::to_xml).collect();
        let shown: String = xml.chars().take(SHOWN).collect();
        format!(
            "{} {} {:?} ({} bytes): {shown}",
            self.iq_type,
            self.template,
            self.mutations,
            xml.len()
        )
    }
}

/// The next hostile request.
pub fn generate(rng: &mut StdRng, targets: &Targets) -> Request {
    let template = choose(rng, TEMPLATES);
    let mut request = Request {
        template: template.name,
        iq_type: template.iq,
        payloads: vec![stanza::parse(&template.fill(rng, targets))],
        mutations: Vec::new(),
    };
    if !rng.gen_bool(VALID_SHARE) {
        for _ in 0..rng.gen_range(1..=MOST_MUTATIONS) {
            let mutation = *choose(rng, MUTATIONS);
            mutate(rng, targets, &mut request, mutation);
            request.mutations.push(mutation);
        }
    }
    request
}

/// Attribute names a hostile value may go in when the element has none to replace.
const ATTRIBUTE_NAMES: &[&str] = &[
    "node",
    "jid",
    "id",
    "subid",
    "max_items",
    "notify",
    "affiliation",
    "subscription",
    "var",
    "type",
    "uri",
];

/// Elements a mutation may add.
const ELEMENT_NAMES: &[&str] = &[
    "evil",
    "item",
    "items",
    "publish",
    "subscribe",
    "pubsub",
    "x",
    "field",
    "value",
    "set",
    "affiliation",
];

/// Namespaces an element may be moved to, or an added element given.
const NAMESPACES: &[&str] = &[
    NS_PUBSUB,
    NS_OWNER,
    NS_EVENT,
    NS_DATA,
    NS_RSM,
    "urn:example:soak",
    "jabber:client",
];

fn mutate(rng: &mut StdRng, targets: &Targets, request: &mut Request, mutation: Mutation) {
    let root = &mut request.payloads[0];
    match mutation {
        Mutation::HostileAttribute => {
            let value = hostile_value(rng, targets);
            let el = pick(rng, root, |_| true);
            let name = if !el.attrs().is_empty() && rng.gen_bool(0.7) {
                let names = attribute_names(el);
                choose(rng, &names).clone()
            } else {
                choose(rng, ATTRIBUTE_NAMES).to_string()
            };
            stanza::set_attr(el, &name, &value);
        }
        Mutation::HostileText => {
            let value = hostile_value(rng, targets);
            let el = pick(rng, root, |_| true);
            if el.children().next().is_none() {
                el.take_nodes();
            }
            el.append_text(value);
        }
        Mutation::WrongType => {
            let el = pick(rng, root, |_| true);
            if matches!(el.name(), "value" | "max" | "after" | "index") {
                el.take_nodes();
                el.append_text(*choose(rng, NOT_NUMBERS));
            } else {
                let typed: Vec<&str> = TYPED_ATTRIBUTES
                    .iter()
                    .copied()
                    .filter(|name| el.attr(*name).is_some())
                    .collect();
                let name = typed
                    .choose(rng)
                    .copied()
                    .unwrap_or_else(|| *choose(rng, TYPED_ATTRIBUTES));
                let value = wrong_value(rng, name);
                stanza::set_attr(el, name, &value);
            }
        }
        Mutation::RepeatedChild => {
            let parent = pick(rng, root, |e| e.children().next().is_some());
            let children: Vec<Element> = parent.children().cloned().collect();
            if let Some(child) = children.choose(rng) {
                for _ in 0..rng.gen_range(1..=MOST_COPIES) {
                    parent.append_child(child.clone());
                }
            }
        }
        Mutation::MissingChild => {
            let parent = pick(rng, root, |e| e.children().next().is_some());
            let mut nodes = parent.take_nodes();
            let elements: Vec<usize> = (0..nodes.len())
                .filter(|i| matches!(nodes[*i], Node::Element(_)))
                .collect();
            if let Some(i) = elements.choose(rng) {
                nodes.remove(*i);
            }
            for node in nodes {
                parent.append_node(node);
            }
        }
        Mutation::MissingAttribute => {
            let el = pick(rng, root, |e| !e.attrs().is_empty());
            let names = attribute_names(el);
            if let Some(gone) = names.choose(rng).cloned() {
                el.attrs_mut().retain(|_, name, _| name.as_str() != gone);
            }
        }
        Mutation::UnknownElement => {
            let mut added = Element::bare(*choose(rng, ELEMENT_NAMES), *choose(rng, NAMESPACES));
            if rng.gen_bool(0.5) {
                let node = choose(rng, &targets.others).clone();
                stanza::set_attr(&mut added, "node", &node);
            }
            let parent = pick(rng, root, |_| true);
            insert_child(rng, parent, added);
        }
        Mutation::WrongNamespace => {
            let el = pick(rng, root, |_| true);
            let current = el.ns();
            let others: Vec<&str> = NAMESPACES
                .iter()
                .copied()
                .filter(|n| *n != current)
                .collect();
            let mut moved = Element::bare(el.name(), *choose(rng, &others));
            *moved.attrs_mut() = el.attrs().clone();
            for node in el.take_nodes() {
                moved.append_node(node);
            }
            *el = moved;
        }
        Mutation::DeepNesting => {
            let ns = *choose(rng, NAMESPACES);
            let mut chain = Element::bare("d", ns);
            for _ in 1..rng.gen_range(1..=DEEPEST) {
                let mut outer = Element::bare("d", ns);
                outer.append_child(chain);
                chain = outer;
            }
            let parent = pick(rng, root, |_| true);
            insert_child(rng, parent, chain);
        }
        Mutation::ManyAttributes => {
            let el = pick(rng, root, |_| true);
            for i in 0..rng.gen_range(1..=MOST_ATTRIBUTES) {
                stanza::set_attr(el, &format!("a{i}"), &i.to_string());
            }
        }
        Mutation::WrongIqType => {
            request.iq_type = if request.iq_type == "get" {
                "set"
            } else {
                "get"
            };
        }
        Mutation::TwoPayloads => {
            let copy = root.clone();
            request.payloads.push(copy);
        }
    }
}

fn attribute_names(el: &Element) -> Vec<String> {
    el.attrs()
        .iter()
        .map(|((_, name), _)| name.to_string())
        .collect()
}

/// Attributes with a type: a number, a boolean, a JID, an enumeration.
const TYPED_ATTRIBUTES: &[&str] = &[
    "max_items",
    "notify",
    "jid",
    "affiliation",
    "subscription",
    "type",
];

/// Letters (and other non-numbers) where a number goes.
const NOT_NUMBERS: &[&str] = &[
    "lots",
    "-1",
    "1.5",
    "0x10",
    "1e400",
    "NaN",
    "+3",
    " 3",
    "٣",
    "３",
    "99999999999999999999999",
    "",
];

/// JIDs no server should accept.
const INVALID_JIDS: &[&str] = &[
    "@",
    "@localhost",
    "user@",
    "not@@valid",
    "a@b@c",
    "user@localhost/",
    "x@[::1",
    "a b@localhost",
    "\u{85}@localhost",
    "user@-bad-.",
    "",
];

fn wrong_value(rng: &mut StdRng, attribute: &str) -> String {
    let choices: &[&str] = match attribute {
        "max_items" => NOT_NUMBERS,
        "notify" => &["perhaps", "2", "TRUE", "yes", ""],
        "jid" => INVALID_JIDS,
        "affiliation" => &["emperor", "OWNER", "owner ", "none\u{85}", ""],
        "subscription" => &["maybe", "SUBSCRIBED", "pending\u{7f}", ""],
        _ => &["sumbit", "result", "form", "cancel ", ""],
    };
    if attribute == "jid" && rng.gen_bool(0.2) {
        // A localpart past its 1,023 bytes.
        return format!("{}@localhost", "l".repeat(1_100));
    }
    choose(rng, choices).to_string()
}

/// Characters XML allows that identifiers must not contain.
const CONTROLS: &[&str] = &[
    "\u{85}",
    "\u{7f}",
    "a\u{85}b",
    "\u{7f}\u{7f}",
    "\u{9f}",
    "\t",
    "\r\n",
];
const UNICODE: &[&str] = &[
    "ñandú",
    "日本語",
    "🎉",
    "\u{202e}evil",
    "\u{200b}",
    "\u{feff}",
    "\u{fffd}",
    "e\u{301}",
    "\u{fdd0}",
    "\u{10ffff}",
];
/// What escaping must get right.
const MARKUP: &[&str] = &[
    "'",
    "\"",
    "&",
    "<",
    ">",
    "&amp;",
    "]]>",
    "<x/>",
    "'\"&<>",
    "%s%n",
    "../../etc/passwd",
    "' OR '1'='1",
];
const BLANKS: &[&str] = &["", " ", "  x  ", "\n"];

/// A hostile attribute or text value.
fn hostile_value(rng: &mut StdRng, targets: &Targets) -> String {
    // One value in ten is long: a hundred or so of 10–100 KB in a run, few enough for
    // Prosody (one thread, parsing them all beside the fan-out) to keep up.
    match rng.gen_range(0..10) {
        0 => long_value(rng),
        1 => choose(rng, CONTROLS).to_string(),
        2 => choose(rng, UNICODE).to_string(),
        3 => choose(rng, MARKUP).to_string(),
        4 => choose(rng, BLANKS).to_string(),
        5 => choose(rng, NOT_NUMBERS).to_string(),
        6 => choose(rng, INVALID_JIDS).to_string(),
        7 => match rng.gen_range(0..3) {
            0 => choose(rng, &targets.others).clone(),
            1 => choose(rng, &targets.other_jids).clone(),
            _ => targets.me.clone(),
        },
        _ => (0..rng.gen_range(2..5))
            .map(|_| {
                let kinds: [&[&str]; 4] = [CONTROLS, UNICODE, MARKUP, NOT_NUMBERS];
                let kind = choose(rng, &kinds);
                choose(rng, kind).to_string()
            })
            .collect(),
    }
}

/// Between [`LONG_VALUE`] and [`LONGEST_VALUE`] bytes of a random mix of plain,
/// unicode, control and markup characters.
fn long_value(rng: &mut StdRng) -> String {
    const PIECES: &[&str] = &[
        "x", "y", "é", "日本", "🎉", "\u{85}", "\u{7f}", "&", "'", "\"", "<", " ",
    ];
    let len = rng.gen_range(LONG_VALUE..=LONGEST_VALUE);
    let unit: String = (0..rng.gen_range(1..8))
        .map(|_| *choose(rng, PIECES))
        .collect();
    let mut value = unit.repeat(len / unit.len() + 1);
    let mut cut = len;
    while !value.is_char_boundary(cut) {
        cut -= 1;
    }
    value.truncate(cut);
    value
}

/// An element of `root` (itself included) for which `fits` is true, `root` if none is.
fn pick<'a>(
    rng: &mut StdRng,
    root: &'a mut Element,
    fits: impl Fn(&Element) -> bool,
) -> &'a mut Element {
    fn number(
        el: &Element,
        fits: &dyn Fn(&Element) -> bool,
        next: &mut usize,
        out: &mut Vec<usize>,
    ) {
        if fits(el) {
            out.push(*next);
        }
        *next += 1;
        for child in el.children() {
            number(child, fits, next, out);
        }
    }
    fn nth<'a>(el: &'a mut Element, n: &mut usize) -> Option<&'a mut Element> {
        if *n == 0 {
            return Some(el);
        }
        *n -= 1;
        for child in el.children_mut() {
            if let Some(found) = nth(child, n) {
                return Some(found);
            }
        }
        None
    }
    let mut candidates = Vec::new();
    number(root, &fits, &mut 0, &mut candidates);
    let mut n = candidates.choose(rng).copied().unwrap_or(0);
    nth(root, &mut n).expect("a number `number` gave is in the tree")
}

/// Inserts `child` among `parent`'s nodes at a random place.
fn insert_child(rng: &mut StdRng, parent: &mut Element, child: Element) {
    let mut nodes = parent.take_nodes();
    let at = rng.gen_range(0..=nodes.len());
    nodes.insert(at, Node::Element(child));
    for node in nodes {
        parent.append_node(node);
    }
}
