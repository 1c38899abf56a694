//! Splits the bytes a `C2s` writes into the top-level pieces of its stream, for the transports
//! that carry one element per message (WebSocket, RFC 7395) or per `<body/>` (BOSH).
//!
//! The input is our own output: well-formed, restricted XML (no comments, DTDs or processing
//! instructions but the XML declaration), each element complete. Only CDATA sections and quoted
//! attribute values need care (both may hold `<` or `>`). Bytes of an unfinished element are kept
//! for the next call.

use memchr::{memchr, memchr3, memmem};

/// One top-level piece of a stream, borrowed from the bytes being split (no copy).
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum Piece<'a> {
    /// The start tag `<stream:stream ...>`.
    Header(&'a [u8]),
    /// A complete depth-1 element (stanza, features, SASL, stream error...).
    Element(&'a [u8]),
    /// `</stream:stream>`.
    Close,
}

/// Stateful splitter: keeps an unfinished element across calls.
#[derive(Debug, Default)]
pub struct Splitter {
    carry: Vec<u8>,
}

impl Splitter {
    /// Bytes kept from an unfinished element.
    pub fn pending(&self) -> usize {
        self.carry.len()
    }

    /// Calls `each` with every piece `bytes` completes, in order.
    pub fn push(&mut self, bytes: &[u8], mut each: impl FnMut(Piece<'_>)) {
        self.push_ends(bytes, |piece, _| each(piece));
    }

    /// [`Splitter::push`], also telling `each` where the piece ends: how many of `bytes` it
    /// took up to its last one.
    pub fn push_ends(&mut self, bytes: &[u8], mut each: impl FnMut(Piece<'_>, usize)) {
        if self.carry.is_empty() {
            let used = split(bytes, &mut each);
            self.carry.extend_from_slice(&bytes[used..]);
        } else {
            // A piece completed now ends in `bytes`, after what was carried.
            let carried = self.carry.len();
            self.carry.extend_from_slice(bytes);
            let used = split(&self.carry, &mut |piece, end| each(piece, end - carried));
            self.carry.drain(..used);
        }
    }
}

/// Splits complete pieces off `buf`, telling `each` where each ends; returns the bytes consumed.
fn split(buf: &[u8], each: &mut impl FnMut(Piece<'_>, usize)) -> usize {
    let mut pos = 0;
    loop {
        while pos < buf.len() && buf[pos].is_ascii_whitespace() {
            pos += 1;
        }
        let rest = &buf[pos..];
        if rest.is_empty() {
            return pos;
        }
        if rest[0] != b'<' {
            // Text between top-level elements is not part of an XML stream: skip it.
            pos += memchr(b'<', rest).unwrap_or(rest.len());
            continue;
        }
        let Some(n) = piece_len(rest) else {
            return pos;
        };
        let bytes = &rest[..n];
        let end = pos + n;
        if bytes.starts_with(b"<?") {
            // The XML declaration: not carried by message-framed transports.
        } else if bytes.starts_with(b"</") {
            each(Piece::Close, end);
        } else if is_stream_header(bytes) {
            each(Piece::Header(bytes), end);
        } else {
            each(Piece::Element(bytes), end);
        }
        pos = end;
    }
}

fn is_stream_header(b: &[u8]) -> bool {
    b.starts_with(b"<stream:stream")
        && b.get(14)
            .is_some_and(|c| c.is_ascii_whitespace() || *c == b'>')
}

/// Length of the piece at the start of `b` (which starts with `<`), `None` if incomplete.
fn piece_len(b: &[u8]) -> Option<usize> {
    if b.starts_with(b"<?") {
        return memmem::find(b, b"?>").map(|i| i + 2);
    }
    if b.starts_with(b"</") {
        return memchr(b'>', b).map(|i| i + 1);
    }
    let (end, self_closing) = tag_end(b, 0)?;
    if self_closing {
        return Some(end);
    }
    if is_stream_header(b) {
        // The stream's start tag stands alone: its element spans the whole stream.
        return Some(end);
    }
    let mut depth = 1usize;
    let mut pos = end;
    loop {
        let lt = pos + memchr(b'<', &b[pos..])?;
        let rest = &b[lt..];
        if rest.starts_with(b"<![CDATA[") {
            pos = lt + memmem::find(rest, b"]]>")? + 3;
        } else if rest.starts_with(b"</") {
            pos = lt + memchr(b'>', rest)? + 1;
            depth -= 1;
            if depth == 0 {
                return Some(pos);
            }
        } else {
            let (e, closed) = tag_end(b, lt)?;
            pos = e;
            if !closed {
                depth += 1;
            }
        }
    }
}

/// End (one past `>`) of the start tag at `at`, and whether it is self-closing; skips quoted
/// attribute values, which may hold `>`.
pub(crate) fn tag_end(b: &[u8], at: usize) -> Option<(usize, bool)> {
    let mut pos = at + 1;
    loop {
        let i = pos + memchr3(b'>', b'\'', b'"', &b[pos..])?;
        if b[i] == b'>' {
            return Some((i + 1, b[i - 1] == b'/'));
        }
        pos = i + 1 + memchr(b[i], &b[i + 1..])? + 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Owned copies of the pieces, for comparison.
    #[derive(Debug, PartialEq, Eq)]
    enum Owned {
        Header(Vec<u8>),
        Element(Vec<u8>),
        Close,
    }

    fn owned(p: Piece<'_>) -> Owned {
        match p {
            Piece::Header(h) => Owned::Header(h.to_vec()),
            Piece::Element(e) => Owned::Element(e.to_vec()),
            Piece::Close => Owned::Close,
        }
    }

    fn all(chunks: &[&[u8]]) -> Vec<Owned> {
        let mut s = Splitter::default();
        let mut out = Vec::new();
        for c in chunks {
            s.push(c, |p| out.push(owned(p)));
        }
        assert_eq!(s.pending(), 0, "everything complete");
        out
    }

    #[test]
    fn header_elements_and_close() {
        let stream = b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' id='a>b' version='1.0'><stream:features><bind/></stream:features>\n<message to='a' x=\"'>\"><body>a &lt; b<![CDATA[ </message> ]]></body></message><presence/></stream:stream>";
        let got = all(&[stream]);
        assert_eq!(got.len(), 5, "{got:?}");
        assert!(matches!(&got[0], Owned::Header(h) if h.ends_with(b"version='1.0'>")));
        assert_eq!(
            got[1],
            Owned::Element(b"<stream:features><bind/></stream:features>".to_vec())
        );
        assert!(matches!(&got[2], Owned::Element(m) if m.ends_with(b"]]></body></message>")));
        assert_eq!(got[3], Owned::Element(b"<presence/>".to_vec()));
        assert_eq!(got[4], Owned::Close);
    }

    #[test]
    fn any_split_point_gives_the_same_pieces() {
        let stream: &[u8] = b"<stream:stream id='x'><a k='v>'><b/>t</a><c/></stream:stream>";
        let whole = all(&[stream]);
        for cut in 1..stream.len() {
            assert_eq!(
                all(&[&stream[..cut], &stream[cut..]]),
                whole,
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn unfinished_element_waits() {
        let mut s = Splitter::default();
        let mut out = Vec::new();
        s.push(b"<message><body>hi</bo", |p| out.push(owned(p)));
        assert!(out.is_empty());
        assert!(s.pending() > 0);
        s.push(b"dy></message>", |p| out.push(owned(p)));
        assert_eq!(
            out,
            vec![Owned::Element(
                b"<message><body>hi</body></message>".to_vec()
            )]
        );
    }

    #[test]
    fn stray_text_between_elements_is_skipped() {
        assert_eq!(
            all(&[b"junk>x<presence/> more<a/>"]),
            vec![
                Owned::Element(b"<presence/>".to_vec()),
                Owned::Element(b"<a/>".to_vec())
            ]
        );
    }
}
