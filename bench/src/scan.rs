//! The lean XML reader: splits an XMPP stream into top-level elements without
//! building a tree, and pulls the few attributes and markers a load generator
//! needs out of the raw bytes.
//!
//! Owns byte-level scanning only. It trusts the server to send well-formed
//! XML (it is a benchmark against local servers, not a parser for the wild):
//! it tracks element depth, honours quotes inside tags, and skips comments,
//! processing instructions and CDATA, but it checks nothing else. A full
//! parser per notification would cost the load generator more CPU than the
//! servers it measures.

use std::ops::Range;

use memchr::memmem;

/// How much the buffer grows by before a read: one read takes whatever the
/// kernel has, up to this.
const READ_CHUNK: usize = 64 * 1024;

/// The local name of the stream element (any prefix).
const STREAM_TAG: &[u8] = b"stream:stream";

/// What [`Splitter::next_event`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A `<stream:stream ...>` opening tag (the range covers the tag).
    StreamOpen(Range<usize>),
    /// A complete top-level element (stanza, features, SASL answer...).
    Element(Range<usize>),
    /// `</stream:stream>`.
    StreamClose,
}

/// An incremental splitter over a growing byte buffer.
#[derive(Debug, Default)]
pub struct Splitter {
    buf: Vec<u8>,
    /// Scan position: everything before it has been classified.
    pos: usize,
    /// Element depth at `pos`: 0 outside the stream, 1 inside it.
    depth: u32,
    /// Where the top-level element being scanned began.
    element_start: Option<usize>,
    /// Bytes before this were handed out in an event and may be dropped.
    consumed: usize,
}

impl Splitter {
    /// An empty splitter.
    pub fn new() -> Self {
        Self::default()
    }

    /// The buffer to read into: drops what has been handed out, then makes
    /// room for [`READ_CHUNK`] more bytes. Append with `read_buf`.
    pub fn buffer_for_read(&mut self) -> &mut Vec<u8> {
        let keep_from = self.element_start.unwrap_or(self.pos).min(self.consumed);
        if keep_from > 0 {
            self.buf.drain(..keep_from);
            self.pos -= keep_from;
            self.consumed -= keep_from;
            if let Some(start) = self.element_start.as_mut() {
                *start -= keep_from;
            }
        }
        self.buf.reserve(READ_CHUNK);
        &mut self.buf
    }

    /// Appends bytes (tests feed the splitter this way).
    #[cfg(test)]
    pub fn push(&mut self, bytes: &[u8]) {
        self.buffer_for_read().extend_from_slice(bytes);
    }

    /// The bytes of a range returned in an event, valid until the next
    /// [`Self::buffer_for_read`].
    pub fn bytes(&self, range: Range<usize>) -> &[u8] {
        &self.buf[range]
    }

    /// The next complete event, or `None` if more bytes are needed.
    pub fn next_event(&mut self) -> Option<Event> {
        loop {
            let rel = memchr::memchr(b'<', &self.buf[self.pos..])?;
            let lt = self.pos + rel;
            let next = *self.buf.get(lt + 1)?;
            match next {
                b'/' => {
                    let gt = lt + memchr::memchr(b'>', &self.buf[lt..])?;
                    self.pos = gt + 1;
                    if self.buf[lt + 2..gt].starts_with(STREAM_TAG) {
                        self.depth = 0;
                        self.element_start = None;
                        self.consumed = self.pos;
                        return Some(Event::StreamClose);
                    }
                    self.depth = self.depth.saturating_sub(1);
                    if let Some(event) = self.finish_if_top_level() {
                        return Some(event);
                    }
                }
                b'?' => {
                    let end = memmem::find(&self.buf[lt..], b"?>")?;
                    self.pos = lt + end + 2;
                }
                b'!' => {
                    let rest = &self.buf[lt..];
                    let (terminator, min_len): (&[u8], usize) = if rest.starts_with(b"<!--") {
                        (b"-->", 4)
                    } else if rest.starts_with(b"<![CDATA[") {
                        (b"]]>", 9)
                    } else if rest.len() < 9 {
                        return None;
                    } else {
                        (b">", 2)
                    };
                    let end = memmem::find(&rest[min_len..], terminator)?;
                    self.pos = lt + min_len + end + terminator.len();
                }
                _ => {
                    let gt = find_tag_end(&self.buf, lt)?;
                    self.pos = gt + 1;
                    if self.buf[lt + 1..gt].starts_with(STREAM_TAG) {
                        // A stream (re)start: whatever was open is forgotten.
                        self.depth = 1;
                        self.element_start = None;
                        self.consumed = self.pos;
                        return Some(Event::StreamOpen(lt..gt + 1));
                    }
                    if self.depth <= 1 {
                        self.element_start = Some(lt);
                    }
                    if self.buf[gt - 1] != b'/' {
                        self.depth += 1;
                    } else if let Some(event) = self.finish_if_top_level() {
                        return Some(event);
                    }
                }
            }
        }
    }

    fn finish_if_top_level(&mut self) -> Option<Event> {
        if self.depth > 1 {
            return None;
        }
        let start = self.element_start.take()?;
        self.consumed = self.pos;
        Some(Event::Element(start..self.pos))
    }
}

/// The index of the `>` closing the tag that starts at `lt`, skipping `>`
/// inside quoted attribute values.
fn find_tag_end(buf: &[u8], lt: usize) -> Option<usize> {
    let mut quote: Option<u8> = None;
    for (i, &b) in buf.iter().enumerate().skip(lt + 1) {
        match quote {
            Some(q) if b == q => quote = None,
            Some(_) => {}
            None if b == b'\'' || b == b'"' => quote = Some(b),
            None if b == b'>' => return Some(i),
            None => {}
        }
    }
    None
}

/// The element name of the element starting at the beginning of `element`
/// (`iq`, `message`, `stream:features`...).
pub fn name(element: &[u8]) -> &[u8] {
    let rest = element.strip_prefix(b"<").unwrap_or(element);
    let end = rest
        .iter()
        .position(|&b| {
            b == b' ' || b == b'>' || b == b'/' || b == b'\t' || b == b'\n' || b == b'\r'
        })
        .unwrap_or(rest.len());
    &rest[..end]
}

/// The raw (still escaped) value of attribute `attr` on the first tag of
/// `element`.
pub fn attr<'a>(element: &'a [u8], attr: &str) -> Option<&'a [u8]> {
    let tag_end = find_tag_end(element, 0).unwrap_or(element.len());
    let tag = &element[..tag_end];
    let attr = attr.as_bytes();
    let mut from = 0;
    while let Some(rel) = memmem::find(&tag[from..], attr) {
        let at = from + rel;
        from = at + attr.len();
        let preceded_by_space = at > 0 && tag[at - 1].is_ascii_whitespace();
        let rest = &tag[at + attr.len()..];
        if !preceded_by_space || rest.first() != Some(&b'=') {
            continue;
        }
        let quote = *rest.get(1)?;
        if quote != b'\'' && quote != b'"' {
            return None;
        }
        let value = &rest[2..];
        let end = memchr::memchr(quote, value)?;
        return Some(&value[..end]);
    }
    None
}

/// Whether `needle` occurs anywhere in `element`.
pub fn contains(element: &[u8], needle: &[u8]) -> bool {
    memmem::find(element, needle).is_some()
}

/// The text of the first `<local ...>text</...>` child found by name (any
/// namespace, no prefix), e.g. the `<jid/>` of a bind result.
pub fn child_text<'a>(element: &'a [u8], local: &str) -> Option<&'a [u8]> {
    let open = format!("<{local}");
    let mut from = 0;
    while let Some(rel) = memmem::find(&element[from..], open.as_bytes()) {
        let at = from + rel;
        from = at + open.len();
        match element.get(from) {
            Some(b'>' | b' ' | b'/') => {}
            _ => continue,
        }
        let gt = at + find_tag_end(&element[at..], 0)?;
        if element[gt - 1] == b'/' {
            return Some(&[]);
        }
        let text = &element[gt + 1..];
        let end = memchr::memchr(b'<', text)?;
        return Some(&text[..end]);
    }
    None
}

/// Parses an unsigned decimal number from the start of `bytes`, returning it
/// and the rest.
pub fn leading_u64(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let digits = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > 19 {
        return None;
    }
    let value = bytes[..digits]
        .iter()
        .fold(0u64, |acc, &b| acc * 10 + u64::from(b - b'0'));
    Some((value, &bytes[digits..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(splitter: &mut Splitter) -> Vec<(String, String)> {
        let mut out = Vec::new();
        while let Some(event) = splitter.next_event() {
            out.push(match event {
                Event::StreamOpen(r) => ("open".into(), text(splitter.bytes(r))),
                Event::Element(r) => ("element".into(), text(splitter.bytes(r))),
                Event::StreamClose => ("close".into(), String::new()),
            });
        }
        out
    }

    fn text(bytes: &[u8]) -> String {
        String::from_utf8_lossy(bytes).into_owned()
    }

    #[test]
    fn splits_header_features_and_stanzas() {
        let mut s = Splitter::new();
        s.push(b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' id='abc'>");
        s.push(b"<stream:features><bind xmlns='x'/></stream:features><iq id='1'/>");
        s.push(b"<message to='a' x='>'><body>a &gt; b</body></message></stream:stream>");
        let got = events(&mut s);
        assert_eq!(got.len(), 5);
        assert_eq!(got[0].0, "open");
        assert_eq!(
            got[1].1,
            "<stream:features><bind xmlns='x'/></stream:features>"
        );
        assert_eq!(got[2].1, "<iq id='1'/>");
        assert_eq!(
            got[3].1,
            "<message to='a' x='>'><body>a &gt; b</body></message>"
        );
        assert_eq!(got[4].0, "close");
    }

    #[test]
    fn waits_for_elements_split_across_reads() {
        let mut s = Splitter::new();
        s.push(b"<stream:stream id='x'><message><bo");
        assert_eq!(events(&mut s).len(), 1);
        s.push(b"dy>hi</body></mess");
        assert!(events(&mut s).is_empty());
        s.push(b"age><!-- c --><iq type='result'/>");
        let got = events(&mut s);
        assert_eq!(got[0].1, "<message><body>hi</body></message>");
        assert_eq!(got[1].1, "<iq type='result'/>");
    }

    #[test]
    fn a_stream_restart_resets_depth() {
        let mut s = Splitter::new();
        s.push(b"<stream:stream id='1'><success xmlns='sasl'/>");
        s.push(b"<stream:stream id='2'><stream:features/>");
        let got = events(&mut s);
        assert_eq!(got.len(), 4);
        assert_eq!(attr(got[2].1.as_bytes(), "id"), Some(&b"2"[..]));
        assert_eq!(got[3].1, "<stream:features/>");
    }

    #[test]
    fn reads_attributes_of_the_first_tag_only() {
        let el = b"<iq type=\"result\" xid='no' id='p7'><x id='inner'/></iq>";
        assert_eq!(attr(el, "id"), Some(&b"p7"[..]));
        assert_eq!(attr(el, "type"), Some(&b"result"[..]));
        assert_eq!(attr(el, "to"), None);
        assert_eq!(name(el), b"iq");
    }

    #[test]
    fn finds_child_text() {
        let el = b"<iq><bind xmlns='b'><jid>a@b/c</jid></bind></iq>";
        assert_eq!(child_text(el, "jid"), Some(&b"a@b/c"[..]));
        assert_eq!(child_text(el, "ji"), None);
    }

    #[test]
    fn parses_leading_numbers() {
        assert_eq!(leading_u64(b"123:rest"), Some((123, &b":rest"[..])));
        assert_eq!(leading_u64(b":1"), None);
    }
}
