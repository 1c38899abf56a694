//! An owned, indexed top-level stanza: routing reads ranges, forwarding writes the same bytes.

use std::borrow::Cow;
use std::sync::Arc;

use super::chars::{as_str, check_chars, may_need_unescape, unescape_attr};
use super::elem::{ns_name, AttrRef, Ctx, ElemScan, Index, NoSink, Outer};
use super::escape::{escape_attr_into, needs_escape};
use super::tag::{attrs_of, Span};
use super::tree::{self, Element};
use super::{Limits, StanzaType, XmlError};
use crate::xmpp::ns;

/// A complete depth-1 element: its exact bytes plus the ranges routing needs.
#[derive(Debug, Clone)]
pub struct Stanza {
    bytes: Vec<u8>,
    idx: Index,
    default_ns: &'static str,
    /// Stream-header prefix bindings, kept only when the stanza uses one.
    outer: Option<Arc<Outer>>,
    /// [`Stanza::kind`], computed whenever the index or the inherited namespace is set: the route
    /// asks for it many times per stanza (2-3 % of a shard's samples when it was computed each time).
    kind: StanzaKind,
    /// [`Stanza::ty`], computed with the index for the same reason: hooks, the router and the
    /// session manager each ask for it.
    ty: StanzaType,
}

/// The routing class of a stanza.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StanzaKind {
    /// `<message/>` in the stream's content namespace.
    Message,
    /// `<presence/>` in the stream's content namespace.
    Presence,
    /// `<iq/>` in the stream's content namespace.
    Iq,
    /// Anything else (stream features, SASL, STARTTLS, prefixed or foreign elements).
    Other,
}

impl Stanza {
    /// Assembles a stanza from a scanned element (the scanner), or from bytes indexed here: the one
    /// place a stanza is made, where its kind is computed from the parts.
    pub(crate) fn from_parts(
        bytes: Vec<u8>,
        idx: Index,
        default_ns: &'static str,
        outer: Option<Arc<Outer>>,
    ) -> Stanza {
        let kind = compute_kind(&bytes, &idx, default_ns);
        let ty = compute_ty(&bytes, &idx);
        Stanza {
            bytes,
            idx,
            default_ns,
            outer,
            kind,
            ty,
        }
    }

    /// Sets the index anew (after an edit that may move every range) and the kind with it.
    fn set_index(&mut self, idx: Index) {
        self.kind = compute_kind(&self.bytes, &idx, self.default_ns);
        self.ty = compute_ty(&self.bytes, &idx);
        self.idx = idx;
    }

    /// Parses one complete element (for internally built stanzas and tests), with the same checks
    /// as the scanner under default limits, in the `jabber:client` namespace.
    pub fn parse(bytes: Vec<u8>) -> Result<Stanza, XmlError> {
        let limits = Limits::default();
        if bytes.len() > limits.max_stanza_bytes {
            return Err(XmlError::StanzaTooLarge(limits.max_stanza_bytes));
        }
        Stanza::client(bytes, &limits)
    }

    /// Indexes `bytes` as a stanza of a `jabber:client` stream without header prefixes.
    fn client(bytes: Vec<u8>, limits: &Limits) -> Result<Stanza, XmlError> {
        let idx = index(&bytes, limits, &[])?;
        Ok(Stanza::from_parts(bytes, idx, ns::CLIENT, None))
    }

    /// True when the bytes alone index back to this stanza ([`Stanza::reindex`]): its inherited
    /// namespace is `jabber:client` and it uses no prefix bound in its stream's header.
    pub(crate) fn stands_alone(&self) -> bool {
        self.default_ns == ns::CLIENT && self.outer.is_none()
    }

    /// Indexes again the bytes of a stanza that [`Stanza::stands_alone`]: they passed the limits of
    /// their stream once (which may be wider than the defaults), so none are applied again.
    pub(crate) fn reindex(bytes: Vec<u8>) -> Result<Stanza, XmlError> {
        let limits = Limits {
            max_stanza_bytes: usize::MAX,
            max_depth: usize::MAX,
            max_attrs: usize::MAX,
        };
        Stanza::client(bytes, &limits)
    }

    /// The element's bytes, exactly as they will be written.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Takes the bytes.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    /// Qualified name as written.
    pub fn name(&self) -> &str {
        as_str(self.idx.name.of(&self.bytes))
    }

    /// message/presence/iq when unprefixed and in the content namespace (no `xmlns`, or
    /// `xmlns` equal to `jabber:client` or to the stream's default namespace).
    pub fn kind(&self) -> StanzaKind {
        debug_assert_eq!(
            self.kind,
            compute_kind(&self.bytes, &self.idx, self.default_ns)
        );
        self.kind
    }

    /// The element's own `xmlns` attribute as written (namespace names never need escaping in practice).
    pub fn xmlns(&self) -> Option<&str> {
        self.idx.xmlns.map(|x| as_str(x.value().of(&self.bytes)))
    }

    /// Unescaped value of an attribute of the top element.
    pub fn attr(&self, name: &str) -> Option<Cow<'_, str>> {
        let cached = match name {
            "to" => Some(self.idx.to),
            "from" => Some(self.idx.from),
            "type" => Some(self.idx.type_),
            "id" => Some(self.idx.id),
            "xmlns" => Some(self.idx.xmlns),
            _ => None,
        };
        if let Some(r) = cached {
            return r.map(|r| unescape_attr(r.value().of(&self.bytes)));
        }
        self.find(name)
            .map(|(_, v)| unescape_attr(v.of(&self.bytes)))
    }

    fn find(&self, name: &str) -> Option<(Span, Span)> {
        attrs_of(
            &self.bytes,
            self.idx.name.end as usize,
            self.idx.head_end as usize,
        )
        .find(|(n, _)| *n == name.as_bytes())
        .map(|(_, f)| (f.full, f.value))
    }

    /// The `to` attribute.
    pub fn to(&self) -> Option<Cow<'_, str>> {
        self.idx
            .to
            .map(|r| unescape_attr(r.value().of(&self.bytes)))
    }

    /// True if the `to` attribute is `s`, written without references or characters that attribute
    /// normalization changes: a comparison of the bytes, with nothing unescaped or validated again.
    pub fn to_is(&self, s: &str) -> bool {
        self.idx.to.is_some_and(|r| {
            let raw = r.value().of(&self.bytes);
            raw == s.as_bytes() && !may_need_unescape(raw)
        })
    }

    /// The `from` attribute.
    pub fn from(&self) -> Option<Cow<'_, str>> {
        self.idx
            .from
            .map(|r| unescape_attr(r.value().of(&self.bytes)))
    }

    /// The `type` attribute.
    pub fn type_(&self) -> Option<Cow<'_, str>> {
        self.idx
            .type_
            .map(|r| unescape_attr(r.value().of(&self.bytes)))
    }

    /// The `type` attribute as a [`StanzaType`](super::StanzaType).
    pub fn ty(&self) -> StanzaType {
        debug_assert_eq!(self.ty, compute_ty(&self.bytes, &self.idx));
        self.ty
    }

    /// An error of any kind or an IQ result: RFC 6120 §8.3.1 forbids answering it with an error.
    pub fn forbids_error_reply(&self) -> bool {
        let ty = self.ty();
        ty == StanzaType::Error || (self.kind() == StanzaKind::Iq && ty == StanzaType::Result)
    }

    /// The `id` attribute.
    pub fn id(&self) -> Option<Cow<'_, str>> {
        self.idx
            .id
            .map(|r| unescape_attr(r.value().of(&self.bytes)))
    }

    /// The bytes between the start and end tags as written (empty for `<x/>`): the children.
    pub fn content(&self) -> &[u8] {
        let open_end = self.idx.head_end as usize + 1;
        if self.bytes.get(self.idx.head_end as usize) != Some(&b'>') {
            return &[];
        }
        // The end tag is the last `<` (text never holds one).
        let close = memchr::memrchr(b'<', &self.bytes).unwrap_or(self.bytes.len());
        self.bytes.get(open_end..close).unwrap_or(&[])
    }

    /// Local name of the first child element.
    pub fn child_name(&self) -> Option<&str> {
        self.idx.child.map(|s| as_str(s.of(&self.bytes)))
    }

    /// True when the top element has exactly one child element (an IQ get or set: its payload,
    /// RFC 6120 §8.2.3).
    pub fn has_single_child(&self) -> bool {
        self.idx.child.is_some() && !self.idx.more_children
    }

    /// For an IQ, RFC 6120 §8.2.3: it has an `id` and a `type` of get, set, result or error, and a
    /// get or a set carries exactly one payload element. Whoever receives one that does not can
    /// neither answer it (no id to match) nor act on it.
    pub fn is_well_formed_iq(&self) -> bool {
        match self.ty() {
            StanzaType::Get | StanzaType::Set => self.idx.id.is_some() && self.has_single_child(),
            StanzaType::Result | StanzaType::Error => self.idx.id.is_some(),
            _ => false,
        }
    }

    /// For a presence, RFC 6121 §4.7.1: no `type`, or one RFC 6121 defines (`error` included).
    pub fn is_well_formed_presence(&self) -> bool {
        matches!(
            self.ty(),
            StanzaType::Absent
                | StanzaType::Unavailable
                | StanzaType::Subscribe
                | StanzaType::Subscribed
                | StanzaType::Unsubscribe
                | StanzaType::Unsubscribed
                | StanzaType::Probe
                | StanzaType::Error
        )
    }

    /// An IQ or a presence that breaks [`Stanza::is_well_formed_iq`] or
    /// [`Stanza::is_well_formed_presence`]: answered `bad-request` (RFC 6120 §8.3.3.1), never
    /// delivered. What a peer (a remote server, a component) sends is checked as a client's is.
    pub fn is_malformed_iq_or_presence(&self) -> bool {
        match self.kind() {
            StanzaKind::Iq => !self.is_well_formed_iq(),
            StanzaKind::Presence => !self.is_well_formed_presence(),
            _ => false,
        }
    }

    /// Namespace of the first child element (own `xmlns`, prefix binding, or inherited).
    pub fn child_ns(&self) -> Option<Cow<'_, str>> {
        let src = self.idx.child_ns?;
        Some(ns_name(&self.bytes, src, self.outer_ref(), self.default_ns))
    }

    fn outer_ref(&self) -> &Outer {
        self.outer.as_deref().unwrap_or(&[])
    }

    /// Replaces (or inserts after the name) the `from` attribute, in place.
    pub fn set_from(&mut self, from: &str) {
        let slot = self.idx.from;
        self.idx.from = Some(self.set_attr(slot, "from", from));
    }

    /// Replaces (or inserts after the name) the `to` attribute, in place.
    pub fn set_to(&mut self, to: &str) {
        let slot = self.idx.to;
        self.idx.to = Some(self.set_attr(slot, "to", to));
    }

    fn set_attr(&mut self, existing: Option<AttrRef>, name: &str, value: &str) -> AttrRef {
        if let Some(r) = self.set_attr_in_place(existing, name, value) {
            return r;
        }
        // The edited stanza is assembled in one buffer of its final size (every routed stanza gets
        // a `from`): one allocation and one copy, not a splice that grows and shifts the old one.
        let old = &self.bytes;
        match existing {
            Some(r) => {
                let Span { start: s, end: e } = r.value();
                let (s, e) = (s as usize, e as usize);
                let mut b = Vec::with_capacity(old.len() - (e - s) + value.len() + 8);
                b.extend_from_slice(&old[..s]);
                escape_attr_into(value, &mut b);
                let value_end = b.len();
                b.extend_from_slice(&old[e..]);
                self.bytes = b;
                self.value_replaced(r, value_end)
            }
            None => {
                let at = self.idx.name.end as usize;
                let mut b = Vec::with_capacity(old.len() + name.len() + value.len() + 12);
                b.extend_from_slice(&old[..at]);
                b.push(b' ');
                b.extend_from_slice(name.as_bytes());
                b.extend_from_slice(b"='");
                let vstart = b.len();
                escape_attr_into(value, &mut b);
                let vend = b.len();
                b.push(b'\'');
                let inserted = b.len() - at;
                b.extend_from_slice(&old[at..]);
                self.bytes = b;
                self.idx.shift(at as u32, inserted as i64);
                AttrRef::new(at as u32, Span::new(vstart, vend))
            }
        }
    }

    /// Moves the index after the value of attribute `r` was rewritten to end at `value_end`, and
    /// gives the attribute's new ranges.
    fn value_replaced(&mut self, r: AttrRef, value_end: usize) -> AttrRef {
        let old = r.value();
        self.idx
            .shift(old.end, value_end as i64 - i64::from(old.end));
        // An empty old value starts at the edit's end, so it was shifted too: pin it.
        AttrRef::new(r.full().start, Span::new(old.start as usize, value_end))
    }

    /// [`Self::set_attr`] within the buffer's spare capacity (the scanner leaves room for the
    /// stamped `from`, see `Scanner::set_headroom`): the tail moves, nothing is allocated. `None`,
    /// with nothing changed, when the edit does not fit or the value needs escaping.
    fn set_attr_in_place(
        &mut self,
        existing: Option<AttrRef>,
        name: &str,
        value: &str,
    ) -> Option<AttrRef> {
        let v = value.as_bytes();
        let n = self.bytes.len();
        let new_len = match existing {
            Some(r) => n - r.value().len() + v.len(),
            None => n + attr_len(name, value),
        };
        // Room first: a stanza without it (server-built ones) is not scanned twice for escapes.
        if new_len > self.bytes.capacity() || needs_escape(value) {
            return None;
        }
        match existing {
            Some(r) => {
                let Span { start: s, end: e } = r.value();
                let (s, e) = (s as usize, e as usize);
                if new_len > n {
                    self.bytes.resize(new_len, 0);
                }
                self.bytes.copy_within(e..n, s + v.len());
                self.bytes.truncate(new_len);
                self.bytes[s..s + v.len()].copy_from_slice(v);
                Some(self.value_replaced(r, s + v.len()))
            }
            None => {
                let at = self.idx.name.end as usize;
                let inserted = new_len - n;
                self.bytes.resize(new_len, 0);
                self.bytes.copy_within(at..n, at + inserted);
                let slot = &mut self.bytes[at..at + inserted];
                slot[0] = b' ';
                slot[1..=name.len()].copy_from_slice(name.as_bytes());
                slot[name.len() + 1..name.len() + 3].copy_from_slice(b"='");
                let vstart = at + name.len() + 3;
                slot[name.len() + 3..inserted - 1].copy_from_slice(v);
                slot[inserted - 1] = b'\'';
                self.idx.shift(at as u32, inserted as i64);
                Some(AttrRef::new(at as u32, Span::new(vstart, vstart + v.len())))
            }
        }
    }

    /// The stanza as it reads in a `jabber:client` stream (an external component's stanza on its way
    /// to clients): an explicit `xmlns` equal to its stream's default namespace is dropped and the
    /// inherited namespace becomes `jabber:client`.
    pub fn into_client_ns(mut self) -> Stanza {
        if self.default_ns != ns::CLIENT {
            if self.xmlns() == Some(self.default_ns) {
                self.remove_attr("xmlns");
            }
            self.default_ns = ns::CLIENT;
            self.kind = compute_kind(&self.bytes, &self.idx, self.default_ns);
        }
        self
    }

    /// Removes an attribute of the top element, in place.
    pub fn remove_attr(&mut self, name: &str) {
        let Some((full, _)) = self.find(name) else {
            return;
        };
        self.bytes.drain(full.start as usize..full.end as usize);
        if name == "xmlns" || name.starts_with("xmlns:") {
            // Namespace changes can move every resolution: rebuild the index (rare).
            if let Ok(idx) = index(&self.bytes, &Limits::default(), self.outer_ref()) {
                self.set_index(idx);
            }
            return;
        }
        match name {
            "to" => self.idx.to = None,
            "from" => self.idx.from = None,
            "type" => {
                self.idx.type_ = None;
                self.ty = StanzaType::Absent;
            }
            "id" => self.idx.id = None,
            _ => {}
        }
        self.idx.shift(full.end, -(full.len() as i64));
    }

    /// Appends `child` (one complete, well-formed element serialized by the server) as the last
    /// child of the top element, in place. The index stays valid: the splice point is after
    /// every indexed range, except for an element without children, which is indexed anew.
    pub fn append_child(&mut self, child: &[u8]) {
        let self_closing =
            self.bytes.ends_with(b"/>") && self.idx.head_end as usize + 2 == self.bytes.len();
        if self_closing {
            let name = self.name().to_owned();
            self.bytes.truncate(self.bytes.len() - 2);
            self.bytes.push(b'>');
            self.bytes.extend_from_slice(child);
            self.bytes.extend_from_slice(b"</");
            self.bytes.extend_from_slice(name.as_bytes());
            self.bytes.push(b'>');
        } else {
            // The end tag is the last `<` (text never holds one); it may be `</message >`.
            let at = memchr::memrchr(b'<', &self.bytes).unwrap_or(self.bytes.len());
            // Grown once, the end tag moved up, the child copied in (`splice` with a byte
            // iterator cost several times as much: every archived message gets a stanza-id).
            let end = self.bytes.len();
            self.bytes.resize(end + child.len(), 0);
            self.bytes.copy_within(at..end, at + child.len());
            self.bytes[at..at + child.len()].copy_from_slice(child);
        }
        if !self_closing && self.idx.child.is_some() {
            self.idx.more_children = true;
        } else if let Ok(idx) = index(
            &self.bytes,
            &Limits {
                max_stanza_bytes: usize::MAX,
                ..Limits::default()
            },
            self.outer_ref(),
        ) {
            self.set_index(idx);
        }
    }

    /// Builds the element tree (for modules that read IQ payloads).
    pub fn tree(&self) -> Result<Element, XmlError> {
        tree::build(&self.bytes, self.outer_ref(), self.default_ns)
    }

    /// Serializes an element and indexes it (for server-built stanzas).
    pub fn from_element(el: &Element) -> Stanza {
        let mut out = Vec::with_capacity(256);
        el.write_to(&mut out);
        // `write_to` escapes values and drops non-XML characters, so only an invalid element or
        // attribute name (a programming error) can fail here; such a stanza keeps an empty index.
        let idx = index(
            &out,
            &Limits {
                max_stanza_bytes: usize::MAX,
                ..Limits::default()
            },
            &[],
        )
        .unwrap_or_else(|e| {
            tracing::error!(error = %e, name = %el.name, "server-built element does not parse");
            Index::default()
        });
        Stanza::from_parts(out, idx, ns::CLIENT, None)
    }
}

/// Bytes an attribute adds to a start tag, ` name='value'` (value unescaped): what the scanner
/// leaves room for so that c2s stamps `from` in place (`Scanner::set_headroom`).
pub fn attr_len(name: &str, value: &str) -> usize {
    name.len() + value.len() + " =''".len()
}

/// message/presence/iq when unprefixed and in the content namespace (see [`Stanza::kind`]).
fn compute_kind(bytes: &[u8], idx: &Index, default_ns: &str) -> StanzaKind {
    if idx.prefixed {
        return StanzaKind::Other;
    }
    if let Some(x) = idx.xmlns {
        let v = x.value().of(bytes);
        if v != ns::CLIENT.as_bytes() && v != default_ns.as_bytes() {
            return StanzaKind::Other;
        }
    }
    match idx.name.of(bytes) {
        b"message" => StanzaKind::Message,
        b"presence" => StanzaKind::Presence,
        b"iq" => StanzaKind::Iq,
        _ => StanzaKind::Other,
    }
}

/// The `type` attribute as a [`StanzaType`] (see [`Stanza::ty`]).
fn compute_ty(bytes: &[u8], idx: &Index) -> StanzaType {
    let Some(r) = idx.type_ else {
        return StanzaType::Absent;
    };
    let raw = r.value().of(bytes);
    // Every known type is written without escapes, so the value as written decides; only an
    // unknown one that may hold a reference is unescaped first (`ch&#97;t` is `chat`).
    match StanzaType::of_value(raw) {
        StanzaType::Unknown if may_need_unescape(raw) => {
            StanzaType::of_value(unescape_attr(raw).as_bytes())
        }
        ty => ty,
    }
}

/// Scans a complete element and checks its characters; the whole of `b` must be the element.
fn index(b: &[u8], limits: &Limits, outer: &Outer) -> Result<Index, XmlError> {
    if b.first() != Some(&b'<') {
        return Err(if b.is_empty() {
            XmlError::Incomplete
        } else {
            XmlError::TextBetweenStanzas
        });
    }
    let mut scan = ElemScan::default();
    let ctx = Ctx {
        max_depth: limits.max_depth,
        max_attrs: limits.max_attrs,
        outer,
    };
    match scan.run(b, &ctx, &mut NoSink)? {
        Some(end) if end == b.len() => {
            check_chars(b)?;
            Ok(scan.idx)
        }
        Some(_) => Err(XmlError::TrailingData),
        None => Err(XmlError::Incomplete),
    }
}
