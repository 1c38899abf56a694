//! The restartable stream scanner: bytes in (any split), stream events out.

use std::cell::Cell;
use std::sync::Arc;

use super::chars::{check_chars, is_ws, unescape_attr};
use super::elem::{check_decl, classify_bang, Ctx, ElemScan, NoSink, Outer};
use super::stanza::Stanza;
use super::tag::{find_tag_end, parse_end_tag, parse_start_tag};
use super::XmlError;
use crate::xmpp::ns;

/// Longest XML declaration accepted, `<?xml` to `?>` inclusive.
const MAX_DECL_BYTES: usize = 256;

/// Resource limits enforced while scanning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest stanza (and stream header) in bytes.
    pub max_stanza_bytes: usize,
    /// Deepest element nesting inside a stanza (the stanza's top element is depth 1).
    pub max_depth: usize,
    /// Most attributes (namespace declarations included) on one element.
    pub max_attrs: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_stanza_bytes: 65_536,
            max_depth: 32,
            max_attrs: 64,
        }
    }
}

/// A validated `<stream:stream>` header.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamHeader {
    /// The `to` attribute.
    pub to: Option<String>,
    /// The `from` attribute.
    pub from: Option<String>,
    /// The `id` attribute.
    pub id: Option<String>,
    /// The `version` attribute.
    pub version: Option<String>,
    /// The `xml:lang` attribute.
    pub lang: Option<String>,
}

/// What the scanner found next.
#[derive(Debug, Clone)]
pub enum Event {
    /// `<stream:stream ...>`, validated.
    StreamOpen(StreamHeader),
    /// A complete depth-1 element.
    Stanza(Stanza),
    /// `</stream:stream>`.
    StreamClose,
    /// A run of whitespace between stanzas (one event per run, however it was split).
    Whitespace,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Nothing seen yet: an XML declaration may start here.
    Start,
    /// Inside the XML declaration.
    Decl,
    /// Before the stream header.
    Prolog,
    /// Inside the stream header's start tag.
    Header,
    /// Between stanzas.
    Stream,
    /// Inside `</stream:stream>`.
    CloseTag,
    /// Inside a stanza.
    Stanza,
    /// After `</stream:stream>`.
    Closed,
}

/// Zero-copy SAX scanner for one XMPP stream direction (see the module docs).
#[derive(Debug)]
pub struct Scanner {
    limits: Limits,
    default_ns: &'static str,
    buf: Vec<u8>,
    /// First unconsumed byte of `buf`; every other offset is relative to it.
    head: usize,
    /// Resume offset (relative to `head`) for the header, declaration and close tag searches.
    scan: usize,
    quote: u8,
    state: State,
    /// The scan of the stanza in progress, lent by this thread's spare slot ([`SPARE_SCAN`]) when
    /// the stanza starts and given back when it ends: a stream between stanzas holds none.
    elem: Option<Box<ElemScan>>,
    /// Prefix bindings of the stream header, shared with stanzas that use them.
    outer: Arc<Outer>,
    /// The stream element's qualified name, to match `</stream:stream>`.
    stream_name: &'static [u8],
    /// True while inside a run of whitespace already reported.
    ws_run: bool,
    /// After a restart: whitespace before the new declaration is still the old stream's (between
    /// its elements, RFC 6120 §11.7), not the new document's, and is skipped.
    restarted: bool,
    dead: Option<XmlError>,
    /// Spare capacity each stanza copied out of the read buffer gets, so that the edit it is about
    /// to get (c2s stamps every stanza's `from`) fits without a second buffer ([`Self::set_headroom`]).
    headroom: u16,
}

impl Scanner {
    /// A scanner for a stream whose content namespace is `default_ns` (`ns::CLIENT` for c2s).
    pub fn new(limits: Limits, default_ns: &'static str) -> Scanner {
        Scanner {
            limits,
            default_ns,
            buf: Vec::new(),
            head: 0,
            scan: 0,
            quote: 0,
            state: State::Start,
            elem: None,
            outer: shared_outer(Vec::new()),
            stream_name: b"",
            ws_run: false,
            restarted: false,
            dead: None,
            headroom: 0,
        }
    }

    /// Gives every stanza copied out of the read buffer `bytes` of spare capacity (c2s: room to
    /// stamp the bound JID as `from` in place).
    pub fn set_headroom(&mut self, bytes: usize) {
        self.headroom = u16::try_from(bytes).unwrap_or(u16::MAX);
    }

    /// Appends bytes received from the peer.
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.head == self.buf.len() {
            self.buf.clear();
            self.head = 0;
        } else if self.head > 0 && self.head >= self.buf.len() / 2 {
            // Amortized compaction: the kept tail is at most the consumed prefix.
            self.buf.drain(..self.head);
            self.head = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// True if fed bytes remain unconsumed.
    pub fn has_buffered(&self) -> bool {
        self.head < self.buf.len()
    }

    /// Stream restart (after STARTTLS or SASL success): discards buffered bytes and expects a
    /// new optional XML declaration and stream header. A scanner that failed stays failed.
    pub fn reset(&mut self) {
        self.buf.clear();
        self.head = 0;
        self.scan = 0;
        self.quote = 0;
        self.state = State::Start;
        if let Some(elem) = self.elem.take() {
            lend(elem);
        }
        self.outer = shared_outer(Vec::new());
        self.stream_name = b"";
        self.ws_run = false;
        self.restarted = true;
    }

    /// The next event, `Ok(None)` when more bytes are needed. After an error every call returns it.
    pub fn next_event(&mut self) -> Result<Option<Event>, XmlError> {
        if let Some(e) = &self.dead {
            return Err(e.clone());
        }
        let r = self.step();
        if let Err(e) = &r {
            self.dead = Some(e.clone());
        }
        r
    }

    fn step(&mut self) -> Result<Option<Event>, XmlError> {
        loop {
            let avail = &self.buf[self.head..];
            match self.state {
                State::Start => {
                    const DECL: &[u8] = b"<?xml";
                    if self.restarted {
                        // A client that sent `</auth>\n`, then `<?xml …?><stream:stream …>`.
                        let n = avail.iter().take_while(|&&c| is_ws(c)).count();
                        if n > 0 {
                            self.head += n;
                            continue;
                        }
                        if avail.is_empty() {
                            return Ok(None);
                        }
                        self.restarted = false;
                    }
                    if avail.len() <= DECL.len() && DECL.starts_with(avail) {
                        return Ok(None);
                    }
                    let decl = avail.starts_with(DECL) && is_ws(avail[DECL.len()]);
                    self.state = if decl { State::Decl } else { State::Prolog };
                    self.scan = DECL.len();
                }
                State::Decl => {
                    // Search only within the bound, so the verdict does not depend on how the
                    // bytes were split into reads.
                    let window = &avail[..avail.len().min(MAX_DECL_BYTES)];
                    let Some(k) = memchr::memchr(b'>', &window[self.scan..]) else {
                        if avail.len() > MAX_DECL_BYTES {
                            return Err(XmlError::BadXmlDecl);
                        }
                        self.scan = avail.len();
                        return Ok(None);
                    };
                    let gt = self.scan + k;
                    if avail[gt - 1] != b'?' {
                        return Err(XmlError::BadXmlDecl);
                    }
                    parse_decl(&avail[5..gt - 1])?;
                    self.head += gt + 1;
                    self.state = State::Prolog;
                }
                State::Prolog => {
                    let n = avail.iter().take_while(|&&c| is_ws(c)).count();
                    self.head += n;
                    let avail = &avail[n..];
                    if avail.len() < 2 {
                        if avail.first().is_some_and(|&c| c != b'<') {
                            return Err(XmlError::NotStreamHeader);
                        }
                        return Ok(None);
                    }
                    match avail[..2] {
                        [b'<', b'?'] => return Err(XmlError::ProcessingInstruction),
                        [b'<', b'!'] => {
                            if avail.len() < 3 {
                                return Ok(None);
                            }
                            classify_bang(avail)?;
                            return Err(XmlError::NotStreamHeader);
                        }
                        [b'<', b'/'] => return Err(XmlError::NotStreamHeader),
                        [b'<', _] => {
                            self.state = State::Header;
                            self.scan = 1;
                            self.quote = 0;
                        }
                        _ => return Err(XmlError::NotStreamHeader),
                    }
                }
                State::Header => {
                    let Some(gt) = self.find_tag(avail.len())? else {
                        return Ok(None);
                    };
                    let header = self.parse_header(gt)?;
                    self.head += gt + 1;
                    self.state = State::Stream;
                    self.ws_run = false;
                    return Ok(Some(Event::StreamOpen(header)));
                }
                State::Stream => {
                    let Some(&first) = avail.first() else {
                        return Ok(None);
                    };
                    if is_ws(first) {
                        let n = avail.iter().take_while(|&&c| is_ws(c)).count();
                        self.head += n;
                        if !self.ws_run {
                            self.ws_run = true;
                            return Ok(Some(Event::Whitespace));
                        }
                        continue;
                    }
                    self.ws_run = false;
                    if first != b'<' {
                        return Err(XmlError::TextBetweenStanzas);
                    }
                    let Some(&second) = avail.get(1) else {
                        return Ok(None);
                    };
                    match second {
                        b'?' => return Err(XmlError::ProcessingInstruction),
                        b'!' => {
                            if avail.len() < 3 {
                                return Ok(None);
                            }
                            classify_bang(avail)?;
                            return Err(XmlError::TextBetweenStanzas);
                        }
                        b'/' => {
                            self.state = State::CloseTag;
                            self.scan = 2;
                            self.quote = 0;
                        }
                        _ => {
                            // A stream header inside the open stream (a restart nothing asked
                            // for) is refused at its name: as an element it would swallow every
                            // stanza after it until it ended or grew too large.
                            let name = self.stream_name;
                            let seen = &avail[1..avail.len().min(name.len() + 2)];
                            if seen.len() <= name.len() {
                                if name.starts_with(seen) {
                                    return Ok(None);
                                }
                            } else if seen.starts_with(name) && ends_name(seen[name.len()]) {
                                return Err(XmlError::StreamHeaderInStream);
                            }
                            self.state = State::Stanza;
                            if self.elem.is_none() {
                                self.elem = Some(SPARE_SCAN.with(Cell::take).unwrap_or_default());
                            }
                        }
                    }
                }
                State::CloseTag => {
                    let Some(gt) = self.find_tag(avail.len())? else {
                        return Ok(None);
                    };
                    let name = parse_end_tag(&self.buf[self.head..], 0, gt)?;
                    if *name != *self.stream_name {
                        return Err(XmlError::MismatchedEndTag);
                    }
                    self.head += gt + 1;
                    self.state = State::Closed;
                    return Ok(Some(Event::StreamClose));
                }
                State::Stanza => return self.stanza(),
                State::Closed => {
                    let n = avail.iter().take_while(|&&c| is_ws(c)).count();
                    self.head += n;
                    if n < avail.len() {
                        return Err(XmlError::DataAfterClose);
                    }
                    return Ok(None);
                }
            }
        }
    }

    /// Resumes the search for the end of the tag starting at `head`, within the size limit.
    fn find_tag(&mut self, avail: usize) -> Result<Option<usize>, XmlError> {
        let max = self.limits.max_stanza_bytes;
        let window = &self.buf[self.head..self.head + avail.min(max)];
        match find_tag_end(window, &mut self.scan, &mut self.quote) {
            Some(gt) => Ok(Some(gt)),
            None if avail > max => Err(XmlError::StanzaTooLarge(max)),
            None => Ok(None),
        }
    }

    /// Continues the stanza at `head`; emits it once its end tag is in.
    fn stanza(&mut self) -> Result<Option<Event>, XmlError> {
        let max = self.limits.max_stanza_bytes;
        let avail = self.buf.len() - self.head;
        // Scan at most `max` bytes: a stanza not finished within them is too large.
        let window = &self.buf[self.head..self.head + avail.min(max)];
        let ctx = Ctx {
            max_depth: self.limits.max_depth,
            max_attrs: self.limits.max_attrs,
            outer: &self.outer,
        };
        // Some from the stanza's start on; a fresh scan otherwise is the same as a lent one.
        let elem = self.elem.get_or_insert_with(Box::default);
        let Some(end) = elem.run(window, &ctx, &mut NoSink)? else {
            if avail > max {
                return Err(XmlError::StanzaTooLarge(max));
            }
            return Ok(None);
        };
        check_chars(&window[..end])?;
        let bytes = if self.head == 0 && end == self.buf.len() {
            // The buffer holds exactly this stanza (the common one-read-one-stanza case): hand it over.
            std::mem::take(&mut self.buf)
        } else {
            let mut v = Vec::with_capacity(end + usize::from(self.headroom));
            v.extend_from_slice(&window[..end]);
            v
        };
        self.head += end;
        if self.buf.is_empty() {
            self.head = 0;
        }
        let idx = std::mem::take(&mut elem.idx);
        if let Some(elem) = self.elem.take() {
            lend(elem);
        }
        let outer = if idx.uses_outer {
            Some(Arc::clone(&self.outer))
        } else {
            None
        };
        self.state = State::Stream;
        Ok(Some(Event::Stanza(Stanza::from_parts(
            bytes,
            idx,
            self.default_ns,
            outer,
        ))))
    }

    /// Validates the stream header `buf[head..=head + gt]` and records its bindings.
    fn parse_header(&mut self, gt: usize) -> Result<StreamHeader, XmlError> {
        let b = &self.buf[self.head..=self.head + gt];
        check_chars(b)?;
        // A local, not a field: headers come a few times per stream, and idle streams keep none.
        let mut attrs = Vec::new();
        let tag = parse_start_tag(b, 0, gt, &mut attrs, self.limits.max_attrs)?;
        let name = tag.name.of(b);
        let (prefix, local) = match tag.colon {
            Some(c) => (Some(&name[..c as usize]), &name[c as usize + 1..]),
            None => (None, name),
        };
        if local != b"stream" {
            return Err(XmlError::NotStreamHeader);
        }
        if tag.empty {
            return Err(XmlError::EmptyStreamHeader);
        }
        let mut default = None;
        let mut outer: Vec<(Box<[u8]>, Box<str>)> = Vec::new();
        for a in attrs.iter().filter(|a| a.is_decl(b)) {
            let p = match a.colon {
                Some(c) => &a.name.of(b)[c as usize + 1..],
                None => b"",
            };
            check_decl(p, a.value.of(b))?;
            let uri = unescape_attr(a.value.of(b));
            match p {
                b"" => default = Some(uri),
                b"xml" => {}
                _ => outer.push((p.into(), uri.into())),
            }
        }
        let lookup = |p: &[u8]| -> Option<&str> {
            if p == b"xml" {
                return Some(ns::XML);
            }
            outer.iter().find(|(q, _)| **q == *p).map(|(_, u)| &**u)
        };
        let stream_ns = match prefix {
            Some(p) => lookup(p).ok_or(XmlError::UnboundPrefix)?,
            None => default.as_deref().unwrap_or(""),
        };
        if stream_ns != ns::STREAMS {
            return Err(XmlError::InvalidStreamNamespace);
        }
        if prefix != Some(b"stream") {
            return Err(XmlError::BadStreamPrefix);
        }
        if default.as_deref() != Some(self.default_ns) {
            return Err(XmlError::InvalidDefaultNamespace);
        }
        let mut h = StreamHeader::default();
        for a in attrs.iter().filter(|a| !a.is_decl(b)) {
            let n = a.name.of(b);
            if let Some(c) = a.colon {
                lookup(&n[..c as usize]).ok_or(XmlError::UnboundPrefix)?;
            }
            let slot = match n {
                b"to" => &mut h.to,
                b"from" => &mut h.from,
                b"id" => &mut h.id,
                b"version" => &mut h.version,
                b"xml:lang" => &mut h.lang,
                _ => continue,
            };
            *slot = Some(unescape_attr(a.value.of(b)).into_owned());
        }
        // The prefix is `stream` (checked above), so the name is always the same.
        self.stream_name = b"stream:stream";
        self.outer = shared_outer(outer);
        Ok(h)
    }
}

thread_local! {
    /// The element scan (with its vectors' capacity) of the last stanza a stream scanner finished
    /// on this thread. One is enough: a thread scans one stream at a time, so the next stanza of
    /// any stream takes it back, busy streams allocate nothing per stanza and idle ones hold no
    /// scan state at all (248 bytes, and the vectors).
    static SPARE_SCAN: Cell<Option<Box<ElemScan>>> = const { Cell::new(None) };
}

/// Gives a finished scan, emptied, to this thread's spare slot (dropping what the slot held).
fn lend(mut elem: Box<ElemScan>) {
    elem.reset();
    SPARE_SCAN.with(|c| c.set(Some(elem)));
}

/// The header's prefix bindings; the usual ones (none, or only `stream`) shared by every stream of
/// the thread: each stream would otherwise keep its own copy for its whole life.
fn shared_outer(outer: Vec<(Box<[u8]>, Box<str>)>) -> Arc<Outer> {
    thread_local! {
        static NONE: Arc<Outer> = Arc::from(Vec::new());
        static STREAM_ONLY: Arc<Outer> = Arc::from(vec![(b"stream".as_slice().into(), ns::STREAMS.into())]);
    }
    match outer.as_slice() {
        [] => NONE.with(Arc::clone),
        [(p, uri)] if **p == *b"stream" && **uri == *ns::STREAMS => STREAM_ONLY.with(Arc::clone),
        _ => Arc::from(outer),
    }
}

/// Validates the pseudo-attributes of `<?xml ...?>` (between `<?xml` and `?>`).
fn parse_decl(d: &[u8]) -> Result<(), XmlError> {
    let mut i = 0;
    let mut seen = 0;
    const NAMES: [&[u8]; 3] = [b"version", b"encoding", b"standalone"];
    loop {
        let ws = d[i..].iter().take_while(|&&c| is_ws(c)).count();
        i += ws;
        if i == d.len() {
            return if seen == 0 {
                Err(XmlError::BadXmlDecl)
            } else {
                Ok(())
            };
        }
        if ws == 0 {
            return Err(XmlError::BadXmlDecl);
        }
        let name_len = d[i..]
            .iter()
            .take_while(|&&c| c.is_ascii_alphabetic())
            .count();
        let name = &d[i..i + name_len];
        let which = NAMES
            .iter()
            .position(|n| *n == name)
            .ok_or(XmlError::BadXmlDecl)?;
        // Order is fixed and version comes first.
        if which < seen || (seen == 0 && which != 0) {
            return Err(XmlError::BadXmlDecl);
        }
        seen = which + 1;
        i += name_len;
        i += d[i..].iter().take_while(|&&c| is_ws(c)).count();
        if d.get(i) != Some(&b'=') {
            return Err(XmlError::BadXmlDecl);
        }
        i += 1;
        i += d[i..].iter().take_while(|&&c| is_ws(c)).count();
        let q = *d.get(i).ok_or(XmlError::BadXmlDecl)?;
        if q != b'\'' && q != b'"' {
            return Err(XmlError::BadXmlDecl);
        }
        let len = memchr::memchr(q, &d[i + 1..]).ok_or(XmlError::BadXmlDecl)?;
        let v = &d[i + 1..i + 1 + len];
        i += len + 2;
        match which {
            0 if v == b"1.0" => {}
            0 if v.len() >= 3 && v.starts_with(b"1.") && v[2..].iter().all(u8::is_ascii_digit) => {
                return Err(XmlError::UnsupportedXmlVersion)
            }
            1 if v.eq_ignore_ascii_case(b"utf-8") => {}
            1 if !v.is_empty()
                && v.iter()
                    .all(|c| c.is_ascii_alphanumeric() || b"._-".contains(c)) =>
            {
                return Err(XmlError::UnsupportedEncoding)
            }
            2 if v == b"yes" || v == b"no" => {}
            _ => return Err(XmlError::BadXmlDecl),
        }
    }
}

/// True for a byte that can follow an element's name in its start tag.
fn ends_name(b: u8) -> bool {
    b == b'>' || b == b'/' || is_ws(b)
}
