//! RFC 7395 framing: each WebSocket text message is one element. The client opens and closes the
//! stream with `<open/>` and `<close/>` in the framing namespace instead of `<stream:stream>`, and
//! every element declares its namespaces (there is no enclosing stream element to inherit them
//! from). This translates both ways between that and the byte stream the `C2s` speaks. The
//! translation is symmetric: a client (the load generator) uses the same two functions.

use crate::web::split::{tag_end, Piece};
use crate::xml::escape::escape_attr_into;
use crate::xml::Stanza;
use crate::xmpp::ns;

/// The framing namespace of `<open/>` and `<close/>` (RFC 7395 §3.3).
pub const NS_FRAMING: &str = "urn:ietf:params:xml:ns:xmpp-framing";

/// Header attributes carried between `<open/>` and `<stream:stream>`, both ways.
const HEADER_ATTRS: [&str; 5] = ["to", "from", "id", "version", "xml:lang"];

/// What a text message was, for the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framed {
    /// `<open/>`: a stream header.
    Open,
    /// `<close/>`: the stream's end.
    Close,
    /// Anything else: stream content.
    Content,
}

/// Appends the stream bytes one text message stands for (`<open/>` becomes the stream header,
/// `<close/>` its end tag, anything else is itself).
pub fn message_to_stream(msg: &[u8], out: &mut Vec<u8>) -> Framed {
    let start = msg
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(msg.len());
    let mut body = &msg[start..];
    // Some clients put an XML declaration before `<open/>` (each message being a document).
    if body.starts_with(b"<?xml") {
        if let Some(end) = memchr::memmem::find(body, b"?>") {
            let rest = &body[end + 2..];
            let at = rest
                .iter()
                .position(|b| !b.is_ascii_whitespace())
                .unwrap_or(rest.len());
            if rest[at..].starts_with(b"<open") {
                body = &rest[at..];
            }
        }
    }
    if body.starts_with(b"<open") || body.starts_with(b"<close") {
        if let Ok(el) = Stanza::parse(body.to_vec()) {
            if el.xmlns() == Some(NS_FRAMING) {
                match el.name() {
                    "open" => {
                        open_to_header(&el, out);
                        return Framed::Open;
                    }
                    "close" => {
                        out.extend_from_slice(b"</stream:stream>");
                        return Framed::Close;
                    }
                    _ => {}
                }
            } else if el.name() == "open" {
                // `<open/>` in another namespace (or none) opens a stream in the wrong namespace:
                // the c2s answers `invalid-namespace` (RFC 7395 §3.3.1, RFC 6120 §4.9.3.10), as
                // for a TCP stream header, not `not-well-formed`.
                let given = el.xmlns().filter(|n| !n.is_empty()).unwrap_or(NS_FRAMING);
                out.extend_from_slice(b"<stream:stream xmlns='");
                out.extend_from_slice(ns::CLIENT.as_bytes());
                out.extend_from_slice(b"' xmlns:stream='");
                escape_attr_into(given, out);
                out.extend_from_slice(b"'>");
                return Framed::Open;
            }
        }
    }
    // Anything else (a stanza, SASL, whitespace) is stream content as it is; a bad element is
    // the c2s scanner's to reject with the right stream error.
    out.extend_from_slice(msg);
    Framed::Content
}

fn open_to_header(el: &Stanza, out: &mut Vec<u8>) {
    out.extend_from_slice(b"<stream:stream xmlns='");
    out.extend_from_slice(ns::CLIENT.as_bytes());
    out.extend_from_slice(b"' xmlns:stream='");
    out.extend_from_slice(ns::STREAMS.as_bytes());
    out.push(b'\'');
    for name in HEADER_ATTRS {
        if let Some(v) = el.attr(name) {
            out.push(b' ');
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b"='");
            escape_attr_into(&v, out);
            out.push(b'\'');
        }
    }
    out.push(b'>');
}

/// Declares `jabber:client`, which a stanza inherits from the stream.
const DECL_CLIENT: &str = " xmlns='jabber:client'";
/// Declares the `stream` prefix, which `<stream:features/>` and `<stream:error/>` inherit.
const DECL_STREAM: &str = " xmlns:stream='http://etherx.jabber.org/streams'";

/// Appends the text message for one piece of a stream.
pub fn piece_to_message(piece: Piece<'_>, out: &mut Vec<u8>) {
    match piece {
        Piece::Header(h) => {
            out.extend_from_slice(b"<open xmlns='");
            out.extend_from_slice(NS_FRAMING.as_bytes());
            out.push(b'\'');
            for (name, quoted) in Attrs::of(h) {
                if HEADER_ATTRS.iter().any(|a| a.as_bytes() == name) {
                    out.push(b' ');
                    out.extend_from_slice(name);
                    out.push(b'=');
                    out.extend_from_slice(quoted);
                }
            }
            out.extend_from_slice(b"/>");
        }
        Piece::Element(e) => with_namespaces(e, out),
        Piece::Close => {
            out.extend_from_slice(b"<close xmlns='");
            out.extend_from_slice(NS_FRAMING.as_bytes());
            out.extend_from_slice(b"'/>");
        }
    }
}

/// The namespace declaration `e` lacks, if any: where in it to insert which text.
pub(crate) fn missing_declaration(e: &[u8]) -> Option<(usize, &'static str)> {
    let name_end = e
        .iter()
        .position(|b| b.is_ascii_whitespace() || *b == b'/' || *b == b'>')
        .unwrap_or(e.len());
    // Not an element (the splitter only hands out elements; this keeps a slip from panicking).
    let name = e.get(1..name_end).filter(|_| e.first() == Some(&b'<'))?;
    let (attr, decl) = if name.starts_with(b"stream:") {
        (&b"xmlns:stream"[..], DECL_STREAM)
    } else {
        (&b"xmlns"[..], DECL_CLIENT)
    };
    (!Attrs::of(e).any(|(n, _)| n == attr)).then_some((name_end, decl))
}

/// Copies `e`, declaring on its start tag the namespace it inherited from the stream: the
/// `stream` prefix for `<stream:features/>` and `<stream:error/>`, `jabber:client` for stanzas.
pub(crate) fn with_namespaces(e: &[u8], out: &mut Vec<u8>) {
    match missing_declaration(e) {
        None => out.extend_from_slice(e),
        Some((at, decl)) => {
            out.extend_from_slice(&e[..at]);
            out.extend_from_slice(decl.as_bytes());
            out.extend_from_slice(&e[at..]);
        }
    }
}

/// The attributes of the start tag at the beginning of a well-formed element: (name, quoted
/// value with its quotes).
struct Attrs<'a> {
    tag: &'a [u8],
    pos: usize,
}

impl<'a> Attrs<'a> {
    fn of(e: &'a [u8]) -> Attrs<'a> {
        let end = tag_end(e, 0).map_or(e.len(), |(end, _)| end);
        let tag = &e[..end];
        let pos = tag
            .iter()
            .position(|b| b.is_ascii_whitespace() || *b == b'/' || *b == b'>')
            .unwrap_or(tag.len());
        Attrs { tag, pos }
    }
}

impl<'a> Iterator for Attrs<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let t = self.tag;
        let skip_ws = |mut p: usize| {
            while p < t.len() && t[p].is_ascii_whitespace() {
                p += 1;
            }
            p
        };
        let start = skip_ws(self.pos);
        let eq = start + t[start..].iter().position(|b| *b == b'=')?;
        let name = t[start..eq].trim_ascii_end();
        let q = skip_ws(eq + 1);
        let quote = *t.get(q)?;
        if quote != b'\'' && quote != b'"' {
            return None;
        }
        let close = q + 1 + t[q + 1..].iter().position(|b| *b == quote)?;
        self.pos = close + 1;
        Some((name, &t[q..=close]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(msg: &str) -> String {
        let mut out = Vec::new();
        message_to_stream(msg.as_bytes(), &mut out);
        String::from_utf8(out).unwrap()
    }

    fn server(piece: Piece<'_>) -> String {
        let mut out = Vec::new();
        piece_to_message(piece, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn declarations_name_the_namespaces() {
        assert_eq!(DECL_CLIENT, format!(" xmlns='{}'", ns::CLIENT));
        assert_eq!(DECL_STREAM, format!(" xmlns:stream='{}'", ns::STREAMS));
    }

    #[test]
    fn open_and_close_become_the_stream_tags() {
        assert_eq!(
            client(
                r#"<open xmlns="urn:ietf:params:xml:ns:xmpp-framing" to="example.com" version="1.0" xml:lang="en"/>"#
            ),
            "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' \
             to='example.com' version='1.0' xml:lang='en'>"
        );
        assert_eq!(
            client(r#"<close xmlns="urn:ietf:params:xml:ns:xmpp-framing"/>"#),
            "</stream:stream>"
        );
        // An XML declaration before <open/> is tolerated.
        assert_eq!(
            client(
                r#"<?xml version='1.0'?> <open xmlns="urn:ietf:params:xml:ns:xmpp-framing" to="example.com" version="1.0"/>"#
            ),
            "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' \
             to='example.com' version='1.0'>"
        );
        // Outside the framing namespace it opens a stream in the wrong one (the c2s answers
        // `invalid-namespace`).
        assert_eq!(
            client("<open to='x'/>"),
            "<stream:stream xmlns='jabber:client' \
             xmlns:stream='urn:ietf:params:xml:ns:xmpp-framing'>"
        );
        assert_eq!(
            client("<message xmlns='jabber:client'/>"),
            "<message xmlns='jabber:client'/>"
        );
    }

    #[test]
    fn header_becomes_open() {
        let h = b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='s1' from='example.com' version='1.0' xml:lang='en'>";
        assert_eq!(
            server(Piece::Header(h)),
            "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' id='s1' from='example.com' version='1.0' xml:lang='en'/>"
        );
        assert_eq!(
            server(Piece::Close),
            "<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>"
        );
    }

    #[test]
    fn elements_declare_their_namespace() {
        let e = |s: &str| server(Piece::Element(s.as_bytes()));
        assert_eq!(
            e("<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></stream:features>"),
            "<stream:features xmlns:stream='http://etherx.jabber.org/streams'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></stream:features>"
        );
        assert_eq!(
            e("<message to='a@b' type = \"chat\"><body>x</body></message>"),
            "<message xmlns='jabber:client' to='a@b' type = \"chat\"><body>x</body></message>"
        );
        assert_eq!(e("<presence/>"), "<presence xmlns='jabber:client'/>");
        assert_eq!(
            e("<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>"),
            "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>"
        );
        // An attribute value that looks like a declaration is not one.
        assert_eq!(
            e("<message id=\"xmlns='q'\"/>"),
            "<message xmlns='jabber:client' id=\"xmlns='q'\"/>"
        );
    }
}
