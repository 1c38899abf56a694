//! Resumable scanner for one element (a stanza): depth, end-tag matching, namespace bindings,
//! text and CDATA checks, and the routing index. Shared by `Scanner`, `Stanza::parse` and `tree()`.

use std::num::NonZeroU32;

use smallvec::SmallVec;

use super::chars::check_ref_at;
use super::tag::{
    find_tag_end, parse_end_tag, parse_end_tag_open, parse_start_tag, parse_start_tag_open,
    AttrSpan, Span, StartTag,
};
use super::XmlError;
use crate::xmpp::ns;

/// Prefix bindings declared outside the element (on the stream header), `xml` excluded.
pub(crate) type Outer = [(Box<[u8]>, Box<str>)];

/// Where a resolved namespace name comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NsSrc {
    /// An `xmlns` attribute value inside the element's bytes (still escaped).
    Bytes(Span),
    /// Entry of the outer (stream header) bindings.
    Outer(u32),
    /// The `xml` prefix.
    Xml,
    /// The default namespace inherited from the stream.
    Default,
}

/// Receives the tokens of an element; `NoSink` compiles to nothing on the routing path.
pub(crate) trait Sink {
    /// Whether `start` needs each element's resolved namespace.
    const WANTS_NS: bool;
    /// A start tag (`empty` for `<x/>`, which gets no `end`); `attr_ns` holds the namespace of
    /// each prefixed attribute but `xml:` ones (index into `attrs`), resolved when `WANTS_NS`.
    #[allow(clippy::too_many_arguments)]
    fn start(
        &mut self,
        b: &[u8],
        name: Span,
        colon: Option<u32>,
        ns: NsSrc,
        attrs: &[AttrSpan],
        attr_ns: &[(u32, NsSrc)],
        empty: bool,
    );
    /// An end tag.
    fn end(&mut self);
    /// Character data (escaped text, or a raw CDATA section).
    fn text(&mut self, b: &[u8], span: Span, cdata: bool);
}

/// Ignores tokens.
pub(crate) struct NoSink;

impl Sink for NoSink {
    const WANTS_NS: bool = false;
    #[inline]
    fn start(
        &mut self,
        _: &[u8],
        _: Span,
        _: Option<u32>,
        _: NsSrc,
        _: &[AttrSpan],
        _: &[(u32, NsSrc)],
        _: bool,
    ) {
    }
    #[inline]
    fn end(&mut self) {}
    #[inline]
    fn text(&mut self, _: &[u8], _: Span, _: bool) {}
}

/// A cached attribute of the top element: its whole text runs from the whitespace before the
/// name through the closing quote, one byte past the value. Twelve bytes, and `Option<AttrRef>`
/// too (a value never starts at offset 0): the index is copied with every move of a stanza.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AttrRef {
    start: u32,
    value_start: NonZeroU32,
    value_end: u32,
}

impl AttrRef {
    /// The attribute whose text starts at `start` and whose raw value is `value`.
    pub fn new(start: u32, value: Span) -> AttrRef {
        AttrRef {
            start,
            // A value follows `<name attr='`, so it never starts at 0.
            value_start: NonZeroU32::new(value.start).unwrap_or(NonZeroU32::MIN),
            value_end: value.end,
        }
    }
    /// From the whitespace before the name through the closing quote.
    #[inline]
    pub fn full(&self) -> Span {
        Span {
            start: self.start,
            end: self.value_end + 1,
        }
    }
    /// Raw value between the quotes.
    #[inline]
    pub fn value(&self) -> Span {
        Span {
            start: self.value_start.get(),
            end: self.value_end,
        }
    }
}

/// What routing needs, as ranges into the stanza's bytes.
#[derive(Debug, Clone, Default)]
pub(crate) struct Index {
    /// Qualified name of the top element.
    pub name: Span,
    /// End of the top element's attribute list.
    pub head_end: u32,
    pub to: Option<AttrRef>,
    pub from: Option<AttrRef>,
    pub type_: Option<AttrRef>,
    pub id: Option<AttrRef>,
    pub xmlns: Option<AttrRef>,
    /// Local name of the first child element.
    pub child: Option<Span>,
    /// Namespace of the first child element.
    pub child_ns: Option<NsSrc>,
    /// True if the top element has a second child element.
    pub more_children: bool,
    /// True if the top element's name has a prefix.
    pub prefixed: bool,
    /// True if any prefix resolved to a stream-header binding.
    pub uses_outer: bool,
}

impl Index {
    /// Applies an edit that ended at `old_end`: every offset at or after it moves by `delta`.
    pub fn shift(&mut self, old_end: u32, delta: i64) {
        let mv = |x: u32| {
            if x >= old_end {
                (x as i64 + delta) as u32
            } else {
                x
            }
        };
        let mv_span = |s: Span| Span {
            start: mv(s.start),
            end: mv(s.end),
        };
        self.head_end = mv(self.head_end);
        for a in [
            &mut self.to,
            &mut self.from,
            &mut self.type_,
            &mut self.id,
            &mut self.xmlns,
        ]
        .into_iter()
        .flatten()
        {
            // The closing quote moves with the value's end: no edit ends between them.
            *a = AttrRef::new(mv(a.start), mv_span(a.value()));
        }
        if let Some(c) = &mut self.child {
            *c = mv_span(*c);
        }
        if let Some(NsSrc::Bytes(s)) = &mut self.child_ns {
            *s = mv_span(*s);
        }
    }
}

/// Limits and context for scanning one element.
pub(crate) struct Ctx<'a> {
    pub max_depth: usize,
    pub max_attrs: usize,
    pub outer: &'a Outer,
}

/// What handling a tag did.
enum TagStep {
    /// Handled; scanning goes on after it.
    Next,
    /// It ended the element, which is this long.
    ElementEnd(usize),
}

#[derive(Debug, Clone, Copy)]
enum Mode {
    /// Between tags; character data starts at `text_start`.
    Content { text_start: usize },
    /// Inside a tag that starts at `lt`.
    Tag { lt: usize, quote: u8 },
    /// Inside a CDATA section whose content starts at `start`.
    Cdata { start: usize },
}

#[derive(Debug, Clone, Copy)]
struct Open {
    name: Span,
    bindings_before: u32,
}

#[derive(Debug, Clone, Copy)]
struct Binding {
    /// Empty for the default namespace.
    prefix: Span,
    uri: Span,
}

/// Resumable scanner state for one element whose first byte is at offset 0 of the slices it is given.
#[derive(Debug)]
pub(crate) struct ElemScan {
    pos: usize,
    mode: Mode,
    open: Vec<Open>,
    bindings: Vec<Binding>,
    attrs: Vec<AttrSpan>,
    /// The index built so far.
    pub idx: Index,
}

impl Default for ElemScan {
    fn default() -> Self {
        ElemScan {
            pos: 0,
            mode: Mode::Content { text_start: 0 },
            open: Vec::new(),
            bindings: Vec::new(),
            attrs: Vec::new(),
            idx: Index::default(),
        }
    }
}

/// What markup starts with `<!`, judged from the first three bytes.
pub(crate) fn classify_bang(b: &[u8]) -> Result<(), XmlError> {
    match b.get(2) {
        Some(b'-') => Err(XmlError::Comment),
        Some(b'D') => Err(XmlError::Doctype),
        Some(b'[') => Ok(()),
        _ => Err(XmlError::BadMarkup),
    }
}

impl ElemScan {
    /// Prepares for a new element, keeping allocated capacity.
    pub fn reset(&mut self) {
        self.pos = 0;
        self.mode = Mode::Content { text_start: 0 };
        self.open.clear();
        self.bindings.clear();
        self.attrs.clear();
        self.idx = Index::default();
    }

    /// Scans as far as `b` allows. Returns the element's length once its end tag has been seen.
    pub fn run<S: Sink>(
        &mut self,
        b: &[u8],
        ctx: &Ctx<'_>,
        sink: &mut S,
    ) -> Result<Option<usize>, XmlError> {
        loop {
            match self.mode {
                Mode::Content { text_start } => {
                    // One pass over character data: stop at `<`, check references and `]]>` on the way.
                    let lt = loop {
                        // Tags often follow one another with nothing between: no search for that.
                        if b.get(self.pos) == Some(&b'<') {
                            break self.pos;
                        }
                        let Some(k) = memchr::memchr3(b'<', b'&', b'>', &b[self.pos..]) else {
                            self.pos = b.len();
                            return Ok(None);
                        };
                        let at = self.pos + k;
                        match b[at] {
                            b'<' => break at,
                            b'>' => {
                                if at >= text_start + 2 && &b[at - 2..at] == b"]]" {
                                    return Err(XmlError::CdataEndInText);
                                }
                                self.pos = at + 1;
                            }
                            _ => {
                                if self.open.is_empty() {
                                    return Err(XmlError::TextBetweenStanzas);
                                }
                                let Some(len) = check_ref_at(&b[at..])? else {
                                    self.pos = at;
                                    return Ok(None);
                                };
                                self.pos = at + len;
                            }
                        }
                    };
                    if lt > text_start {
                        if self.open.is_empty() {
                            return Err(XmlError::TextBetweenStanzas);
                        }
                        sink.text(b, Span::new(text_start, lt), false);
                        self.mode = Mode::Content { text_start: lt };
                    }
                    self.pos = lt;
                    let Some(&next) = b.get(lt + 1) else {
                        return Ok(None);
                    };
                    match next {
                        b'?' => return Err(XmlError::ProcessingInstruction),
                        b'!' => {
                            if b.len() < lt + 9 {
                                // Decide as early as the bytes allow, then wait for the full `<![CDATA[`.
                                if b.len() >= lt + 3 {
                                    classify_bang(&b[lt..])?;
                                }
                                if !b"<![CDATA[".starts_with(&b[lt..]) {
                                    return Err(XmlError::BadMarkup);
                                }
                                return Ok(None);
                            }
                            classify_bang(&b[lt..])?;
                            if &b[lt..lt + 9] != b"<![CDATA[" {
                                return Err(XmlError::BadMarkup);
                            }
                            if self.open.is_empty() {
                                return Err(XmlError::TextBetweenStanzas);
                            }
                            self.mode = Mode::Cdata { start: lt + 9 };
                            self.pos = lt + 9;
                        }
                        _ => {
                            self.mode = Mode::Tag { lt, quote: 0 };
                            self.pos = lt + 1;
                        }
                    }
                }
                Mode::Cdata { start } => loop {
                    let Some(k) = memchr::memchr(b'>', &b[self.pos..]) else {
                        self.pos = b.len();
                        return Ok(None);
                    };
                    let gt = self.pos + k;
                    self.pos = gt + 1;
                    if gt >= start + 2 && &b[gt - 2..gt] == b"]]" {
                        sink.text(b, Span::new(start, gt - 2), true);
                        self.mode = Mode::Content { text_start: gt + 1 };
                        break;
                    }
                },
                Mode::Tag { lt, mut quote } => {
                    let mut attrs = std::mem::take(&mut self.attrs);
                    let r = self.tag(b, lt, &mut quote, ctx, sink, &mut attrs);
                    self.attrs = attrs;
                    match r? {
                        None => {
                            self.mode = Mode::Tag { lt, quote };
                            return Ok(None);
                        }
                        Some(TagStep::Next) => {}
                        Some(TagStep::ElementEnd(end)) => return Ok(Some(end)),
                    }
                }
            }
        }
    }

    /// Handles the tag at `b[lt] == '<'` once `b` holds all of it (`None` before).
    ///
    /// A tag read whole is parsed in the pass that finds its end, and taken if it is valid. Any
    /// other tag goes the resumable way: the search for the first `>` outside quotes (which
    /// remembers how far it got, so a tag that arrives slowly is not parsed again at every read),
    /// then the parse of the bytes up to it. Only a valid tag takes the first way, and a valid tag
    /// ends at the same `>` both ways, so what the scanner reports never depends on how the bytes
    /// were split into reads.
    fn tag<S: Sink>(
        &mut self,
        b: &[u8],
        lt: usize,
        quote: &mut u8,
        ctx: &Ctx<'_>,
        sink: &mut S,
        attrs: &mut Vec<AttrSpan>,
    ) -> Result<Option<TagStep>, XmlError> {
        let end_tag = b[lt + 1] == b'/';
        if *quote == 0 && self.pos == lt + 1 {
            let whole = if end_tag {
                parse_end_tag_open(b, lt)
                    .ok()
                    .flatten()
                    // The name must close the open element: a quote in it would end differently.
                    .filter(|(name, _)| {
                        self.open.last().is_some_and(|o| o.name.of(b) == name.of(b))
                    })
                    .map(|(_, gt)| self.end_tag(gt, sink))
            } else if self.open.len() < ctx.max_depth {
                parse_start_tag_open(b, lt, attrs, ctx.max_attrs)
                    .ok()
                    .flatten()
                    .map(|tag| self.start_tag(b, tag, ctx, sink, attrs))
                    .transpose()?
            } else {
                None
            };
            if let Some(step) = whole {
                return Ok(Some(step));
            }
        }
        let Some(gt) = find_tag_end(b, &mut self.pos, quote) else {
            return Ok(None);
        };
        let b = &b[..=gt];
        let step = if end_tag {
            let name = parse_end_tag(b, lt, gt)?;
            match self.open.last() {
                Some(o) if o.name.of(b) == name => self.end_tag(gt, sink),
                _ => return Err(XmlError::MismatchedEndTag),
            }
        } else {
            if self.open.len() >= ctx.max_depth {
                return Err(XmlError::TooDeep(ctx.max_depth));
            }
            let tag = parse_start_tag(b, lt, gt, attrs, ctx.max_attrs)?;
            self.start_tag(b, tag, ctx, sink, attrs)?
        };
        Ok(Some(step))
    }

    /// Closes the open element whose end tag's `>` is at `gt` (its name already matched).
    fn end_tag<S: Sink>(&mut self, gt: usize, sink: &mut S) -> TagStep {
        if let Some(open) = self.open.pop() {
            self.bindings.truncate(open.bindings_before as usize);
        }
        sink.end();
        self.past(gt);
        if self.open.is_empty() {
            TagStep::ElementEnd(gt + 1)
        } else {
            TagStep::Next
        }
    }

    /// Moves past the tag whose `>` is at `gt`, into character data.
    fn past(&mut self, gt: usize) {
        self.pos = gt + 1;
        self.mode = Mode::Content { text_start: gt + 1 };
    }

    /// Handles the parsed start tag `tag` (its attributes in `attrs`), which is not too deep.
    fn start_tag<S: Sink>(
        &mut self,
        b: &[u8],
        tag: StartTag,
        ctx: &Ctx<'_>,
        sink: &mut S,
        attrs: &mut [AttrSpan],
    ) -> Result<TagStep, XmlError> {
        let gt = tag.head_end as usize + usize::from(tag.empty);
        let depth = self.open.len();
        let bindings_before = self.bindings.len() as u32;
        let mut prefixed_attrs = 0;
        for a in attrs.iter() {
            if a.is_decl(b) {
                let prefix = match a.colon {
                    None => Span::new(a.name.start as usize, a.name.start as usize),
                    Some(c) => Span {
                        start: a.name.start + c + 1,
                        end: a.name.end,
                    },
                };
                check_decl(prefix.of(b), a.value.of(b))?;
                self.bindings.push(Binding {
                    prefix,
                    uri: a.value,
                });
            } else if a.colon.is_some() {
                prefixed_attrs += 1;
            }
        }
        // Element namespace: prefixes must be bound; unprefixed names only need resolving for the index/tree.
        let name_b = tag.name.of(b);
        let ns = match tag.colon {
            Some(c) => {
                let p = &name_b[..c as usize];
                if p == b"xmlns" {
                    return Err(XmlError::ReservedNamespace);
                }
                self.resolve(b, p, ctx.outer)
                    .ok_or(XmlError::UnboundPrefix)?
            }
            None if S::WANTS_NS || depth <= 1 => {
                self.resolve(b, b"", ctx.outer).unwrap_or(NsSrc::Default)
            }
            None => NsSrc::Default,
        };
        // The namespaces of prefixed attributes, for a tree (rare: most stanzas have none).
        let mut attr_ns: SmallVec<[(u32, NsSrc); 4]> = SmallVec::new();
        if prefixed_attrs > 0 {
            let want = S::WANTS_NS.then_some(&mut attr_ns);
            self.check_attr_prefixes(b, attrs, prefixed_attrs, ctx.outer, want)?;
        }
        if depth == 0 {
            self.index_top(b, &tag, attrs);
        } else if depth == 1 && self.idx.child.is_none() {
            let local = match tag.colon {
                Some(c) => Span {
                    start: tag.name.start + c + 1,
                    end: tag.name.end,
                },
                None => tag.name,
            };
            self.idx.child = Some(local);
            self.idx.child_ns = Some(ns);
        } else if depth == 1 {
            self.idx.more_children = true;
        }
        sink.start(b, tag.name, tag.colon, ns, attrs, &attr_ns, tag.empty);
        if tag.empty {
            self.bindings.truncate(bindings_before as usize);
            self.past(gt);
            return Ok(if depth == 0 {
                TagStep::ElementEnd(gt + 1)
            } else {
                TagStep::Next
            });
        }
        self.open.push(Open {
            name: tag.name,
            bindings_before,
        });
        self.past(gt);
        Ok(TagStep::Next)
    }

    /// Records the top element's name and routing attributes.
    fn index_top(&mut self, b: &[u8], tag: &super::tag::StartTag, attrs: &[AttrSpan]) {
        let idx = &mut self.idx;
        idx.name = tag.name;
        idx.prefixed = tag.colon.is_some();
        idx.head_end = tag.head_end;
        let mut prev_end = tag.name.end;
        for a in attrs {
            let r = AttrRef::new(prev_end, a.value);
            prev_end = a.value.end + 1;
            let slot = match a.name.of(b) {
                b"to" => &mut idx.to,
                b"from" => &mut idx.from,
                b"type" => &mut idx.type_,
                b"id" => &mut idx.id,
                b"xmlns" => &mut idx.xmlns,
                _ => continue,
            };
            *slot = Some(r);
        }
    }

    /// Checks prefixed attributes: bound prefixes, and no two with the same expanded name. With
    /// `found`, also records the namespace of each (but `xml:` ones) by its index in `attrs`.
    fn check_attr_prefixes(
        &mut self,
        b: &[u8],
        attrs: &[AttrSpan],
        count: usize,
        outer: &Outer,
        mut found: Option<&mut SmallVec<[(u32, NsSrc); 4]>>,
    ) -> Result<(), XmlError> {
        let prefixed = |a: &&AttrSpan| a.colon.is_some() && !a.is_decl(b);
        let split = |a: &AttrSpan| {
            let n = a.name.of(b);
            let c = a.colon.unwrap_or(0) as usize;
            (&n[..c], &n[c + 1..])
        };
        let indexed = attrs.iter().enumerate().filter(|(_, a)| prefixed(a));
        for (n, (i, a)) in indexed.enumerate() {
            let (p, local) = split(a);
            let ns = self.resolve(b, p, outer).ok_or(XmlError::UnboundPrefix)?;
            if let Some(found) = found.as_deref_mut() {
                if ns != NsSrc::Xml {
                    found.push((i as u32, ns));
                }
            }
            if count < 2 {
                continue;
            }
            // Rare path (two or more prefixed attributes): compare expanded names pairwise.
            for o in attrs.iter().filter(prefixed).take(n) {
                let (op, olocal) = split(o);
                if olocal == local {
                    let other = self.resolve(b, op, outer).ok_or(XmlError::UnboundPrefix)?;
                    if ns_name(b, ns, outer, "") == ns_name(b, other, outer, "") {
                        return Err(XmlError::DuplicateAttribute);
                    }
                }
            }
        }
        Ok(())
    }

    /// Resolves a prefix (`b""` for the default namespace) against the bindings in scope.
    fn resolve(&mut self, b: &[u8], prefix: &[u8], outer: &Outer) -> Option<NsSrc> {
        if prefix == b"xml" {
            return Some(NsSrc::Xml);
        }
        if let Some(bd) = self
            .bindings
            .iter()
            .rev()
            .find(|bd| bd.prefix.of(b) == prefix)
        {
            return Some(NsSrc::Bytes(bd.uri));
        }
        if prefix.is_empty() {
            return None;
        }
        let i = outer.iter().position(|(p, _)| &**p == prefix)?;
        self.idx.uses_outer = true;
        Some(NsSrc::Outer(i as u32))
    }
}

/// Checks a namespace declaration against the reserved names (Namespaces in XML 1.0 §3).
pub(crate) fn check_decl(prefix: &[u8], value: &[u8]) -> Result<(), XmlError> {
    let is_xml_ns = value == ns::XML.as_bytes();
    let is_xmlns_ns = value == b"http://www.w3.org/2000/xmlns/";
    let ok = match prefix {
        b"xml" => is_xml_ns,
        b"xmlns" => false,
        b"" => !is_xml_ns && !is_xmlns_ns,
        _ => !value.is_empty() && !is_xml_ns && !is_xmlns_ns,
    };
    if ok {
        Ok(())
    } else {
        Err(XmlError::ReservedNamespace)
    }
}

/// The namespace name a source stands for (unescaped).
pub(crate) fn ns_name<'a>(
    b: &'a [u8],
    src: NsSrc,
    outer: &'a Outer,
    default_ns: &'static str,
) -> std::borrow::Cow<'a, str> {
    use std::borrow::Cow;
    match src {
        NsSrc::Bytes(s) => super::chars::unescape_attr(s.of(b)),
        NsSrc::Outer(i) => Cow::Borrowed(outer.get(i as usize).map(|(_, u)| &**u).unwrap_or("")),
        NsSrc::Xml => Cow::Borrowed(ns::XML),
        NsSrc::Default => Cow::Borrowed(default_ns),
    }
}
