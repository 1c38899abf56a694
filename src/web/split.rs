//! Splits the bytes a `C2s` writes into the top-level pieces of its stream, for the transports
//! that carry one element per message (WebSocket, RFC 7395) or per `<body/>` (BOSH).
//!
//! The input is our own output: well-formed, restricted XML (no comments, DTDs or processing
//! instructions but the XML declaration), each element complete. Only CDATA sections and quoted
//! attribute values need care (both may hold `<` or `>`). Bytes of an unfinished element are kept
//! for the next call.

use memchr::{memchr, memchr3, memmem};

/// One top-level piece of the server's stream.
#[derive(Debug, PartialEq, Eq)]
pub enum Piece {
    /// The start tag `<stream:stream ...>`.
    Header(Vec<u8>),
    /// A complete depth-1 element (stanza, features, SASL, stream error...).
    Element(Vec<u8>),
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

    /// Appends the pieces completed by `bytes` to `out`.
    pub fn push(&mut self, bytes: &[u8], out: &mut Vec<Piece>) {
        if self.carry.is_empty() {
            let used = split(bytes, out);
            self.carry.extend_from_slice(&bytes[used..]);
        } else {
            self.carry.extend_from_slice(bytes);
            let used = split(&self.carry, out);
            self.carry.drain(..used);
        }
    }
}

/// Splits complete pieces off `buf`; returns the bytes consumed.
fn split(buf: &[u8], out: &mut Vec<Piece>) -> usize {
    let mut pos = 0;
    loop {
        while pos < buf.len() && buf[pos].is_ascii_whitespace() {
            pos += 1;
        }
        let rest = &buf[pos..];
        if rest.is_empty() {
            return pos;
        }
        let Some(n) = piece_len(rest) else {
            return pos;
        };
        let bytes = &rest[..n];
        if bytes.starts_with(b"<?") {
            // The XML declaration: not carried by message-framed transports.
        } else if bytes.starts_with(b"</") {
            out.push(Piece::Close);
        } else if is_stream_header(bytes) {
            out.push(Piece::Header(bytes.to_vec()));
        } else {
            out.push(Piece::Element(bytes.to_vec()));
        }
        pos += n;
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

    fn all(chunks: &[&[u8]]) -> Vec<Piece> {
        let mut s = Splitter::default();
        let mut out = Vec::new();
        for c in chunks {
            s.push(c, &mut out);
        }
        assert_eq!(s.pending(), 0, "everything complete");
        out
    }

    #[test]
    fn header_elements_and_close() {
        let stream = b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' id='a>b' version='1.0'><stream:features><bind/></stream:features>\n<message to='a' x=\"'>\"><body>a &lt; b<![CDATA[ </message> ]]></body></message><presence/></stream:stream>";
        let got = all(&[stream]);
        assert_eq!(got.len(), 5, "{got:?}");
        assert!(matches!(&got[0], Piece::Header(h) if h.ends_with(b"version='1.0'>")));
        assert_eq!(
            got[1],
            Piece::Element(b"<stream:features><bind/></stream:features>".to_vec())
        );
        assert!(matches!(&got[2], Piece::Element(m) if m.ends_with(b"]]></body></message>")));
        assert_eq!(got[3], Piece::Element(b"<presence/>".to_vec()));
        assert_eq!(got[4], Piece::Close);
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
        s.push(b"<message><body>hi</bo", &mut out);
        assert!(out.is_empty());
        assert!(s.pending() > 0);
        s.push(b"dy></message>", &mut out);
        assert_eq!(
            out,
            vec![Piece::Element(
                b"<message><body>hi</body></message>".to_vec()
            )]
        );
    }
}
