//! On-demand element trees for modules (IQ payloads) and their serialization.

use super::chars::{check_chars, normalize_cdata, unescape_attr, unescape_text};
use super::elem::{ns_name, Ctx, ElemScan, NsSrc, Outer, Sink};
use super::escape::{escape_attr_into, escape_text_into};
use super::tag::{AttrSpan, Span};
use super::XmlError;
use crate::xmpp::ns;

/// An element with its resolved namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    /// Local name.
    pub name: String,
    /// Resolved namespace name.
    pub ns: String,
    /// Attributes as written (qualified names), unescaped; namespace declarations excluded, but
    /// for the `xmlns:p` its own prefixed attributes need (added when parsed, so that the element
    /// written out alone, stored or forwarded, still binds every prefix it uses).
    pub attrs: Vec<(String, String)>,
    /// Child nodes in document order.
    pub children: Vec<Node>,
}

/// A child of an element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// A child element.
    Element(Element),
    /// Character data (references expanded, CDATA merged, line ends normalized).
    Text(String),
}

impl Element {
    /// A childless element without attributes.
    pub fn new(name: impl Into<String>, ns: impl Into<String>) -> Self {
        Element {
            name: name.into(),
            ns: ns.into(),
            attrs: Vec::new(),
            children: Vec::new(),
        }
    }

    /// Adds (or replaces) an attribute.
    pub fn with_attr(mut self, k: impl Into<String>, v: impl Into<String>) -> Self {
        let (k, v) = (k.into(), v.into());
        match self.attrs.iter_mut().find(|(n, _)| *n == k) {
            Some(slot) => slot.1 = v,
            None => self.attrs.push((k, v)),
        }
        self
    }

    /// Appends a child element.
    pub fn with_child(mut self, child: Element) -> Self {
        self.children.push(Node::Element(child));
        self
    }

    /// Appends text.
    pub fn with_text(mut self, text: &str) -> Self {
        self.children.push(Node::Text(text.to_owned()));
        self
    }

    /// An attribute's value.
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first child element with this local name and namespace.
    pub fn get_child(&self, name: &str, ns: &str) -> Option<&Element> {
        self.child_elements().find(|e| e.name == name && e.ns == ns)
    }

    /// Child elements in order.
    pub fn child_elements(&self) -> impl Iterator<Item = &Element> {
        self.children.iter().filter_map(|n| match n {
            Node::Element(e) => Some(e),
            Node::Text(_) => None,
        })
    }

    /// Concatenated direct text children.
    pub fn text(&self) -> String {
        self.children
            .iter()
            .filter_map(|n| match n {
                Node::Text(t) => Some(t.as_str()),
                Node::Element(_) => None,
            })
            .collect()
    }

    /// Serializes; `xmlns` only where it differs from the parent's, and on the top element
    /// unless its namespace is `jabber:client`. Characters XML cannot carry are dropped.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        self.write_in(ns::CLIENT, out);
    }

    fn write_in(&self, parent_ns: &str, out: &mut Vec<u8>) {
        out.push(b'<');
        out.extend_from_slice(self.name.as_bytes());
        if self.ns != parent_ns {
            out.extend_from_slice(b" xmlns='");
            push_clean(&self.ns, out, escape_attr_into);
            out.push(b'\'');
        }
        for (k, v) in &self.attrs {
            out.push(b' ');
            out.extend_from_slice(k.as_bytes());
            out.extend_from_slice(b"='");
            push_clean(v, out, escape_attr_into);
            out.push(b'\'');
        }
        if self.children.is_empty() {
            out.extend_from_slice(b"/>");
            return;
        }
        out.push(b'>');
        for c in &self.children {
            match c {
                Node::Element(e) => e.write_in(&self.ns, out),
                Node::Text(t) => push_clean(t, out, escape_text_into),
            }
        }
        out.extend_from_slice(b"</");
        out.extend_from_slice(self.name.as_bytes());
        out.push(b'>');
    }
}

/// Escapes `s` into `out`, dropping characters that are not XML `Char`s (rare: checked first).
fn push_clean(s: &str, out: &mut Vec<u8>, escape: fn(&str, &mut Vec<u8>)) {
    if check_chars(s.as_bytes()).is_ok() {
        return escape(s, out);
    }
    let clean: String = s
        .chars()
        .filter(|&c| {
            let u = c as u32;
            matches!(u, 0x9 | 0xA | 0xD | 0x20..=0xD7FF | 0xE000..=0xFFFD | 0x10000..=0x10FFFF)
        })
        .collect();
    escape(&clean, out)
}

/// Builds an element tree from the bytes of one accepted element.
pub(crate) fn build(
    b: &[u8],
    outer: &Outer,
    default_ns: &'static str,
) -> Result<Element, XmlError> {
    // The bytes already passed the scanner's limits, which may differ from the defaults.
    let ctx = Ctx {
        max_depth: usize::MAX,
        max_attrs: usize::MAX,
        outer,
    };
    let mut sink = TreeSink {
        outer,
        default_ns,
        stack: Vec::new(),
        done: None,
    };
    let mut scan = ElemScan::default();
    match scan.run(b, &ctx, &mut sink)? {
        Some(_) => sink.done.ok_or(XmlError::Incomplete),
        None => Err(XmlError::Incomplete),
    }
}

struct TreeSink<'a> {
    outer: &'a Outer,
    default_ns: &'static str,
    stack: Vec<Element>,
    done: Option<Element>,
}

impl TreeSink<'_> {
    fn attach(&mut self, el: Element) {
        match self.stack.last_mut() {
            Some(parent) => parent.children.push(Node::Element(el)),
            None => self.done = Some(el),
        }
    }
}

impl Sink for TreeSink<'_> {
    const WANTS_NS: bool = true;

    fn start(
        &mut self,
        b: &[u8],
        name: Span,
        colon: Option<u32>,
        ns: NsSrc,
        attrs: &[AttrSpan],
        attr_ns: &[(u32, NsSrc)],
        empty: bool,
    ) {
        let n = name.of(b);
        let local = match colon {
            Some(c) => &n[c as usize + 1..],
            None => n,
        };
        let mut kept: Vec<(String, String)> = attrs
            .iter()
            .filter(|a| !a.is_decl(b))
            .map(|a| {
                let k = String::from_utf8_lossy(a.name.of(b)).into_owned();
                (k, unescape_attr(a.value.of(b)).into_owned())
            })
            .collect();
        // A prefixed attribute takes its prefix's declaration along, resolved by the scanner
        // wherever it was made (this element, an ancestor, the stream header).
        for &(i, attr_ns) in attr_ns {
            let Some(a) = attrs.get(i as usize) else {
                continue;
            };
            let (name, colon) = (a.name.of(b), a.colon.unwrap_or(0) as usize);
            let decl = format!("xmlns:{}", String::from_utf8_lossy(&name[..colon]));
            if !kept.iter().any(|(n, _)| *n == decl) {
                let uri = ns_name(b, attr_ns, self.outer, self.default_ns).into_owned();
                kept.push((decl, uri));
            }
        }
        let el = Element {
            name: String::from_utf8_lossy(local).into_owned(),
            ns: ns_name(b, ns, self.outer, self.default_ns).into_owned(),
            attrs: kept,
            children: Vec::new(),
        };
        if empty {
            self.attach(el);
        } else {
            self.stack.push(el);
        }
    }

    fn end(&mut self) {
        if let Some(el) = self.stack.pop() {
            self.attach(el);
        }
    }

    fn text(&mut self, b: &[u8], span: Span, cdata: bool) {
        let raw = span.of(b);
        let t = if cdata {
            normalize_cdata(raw)
        } else {
            unescape_text(raw)
        };
        let Some(parent) = self.stack.last_mut() else {
            return;
        };
        match parent.children.last_mut() {
            Some(Node::Text(prev)) => prev.push_str(&t),
            _ => parent.children.push(Node::Text(t.into_owned())),
        }
    }
}
