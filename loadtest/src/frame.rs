//! Top-level element boundary finder for an XMPP stream.
//!
//! Sans-IO: bytes go in with [`Framer::read_space`]/[`Framer::commit`] (or
//! [`Framer::extend`]), frames come out of [`Framer::next_frame`] as byte ranges
//! into the framer's own buffer. It never builds a tree: it only tracks element
//! depth with `memchr`, skipping quoted attribute values, comments, CDATA and
//! processing instructions, so the load generator stays cheap per stanza.

use memchr::{memchr, memchr3, memmem};

/// What a frame is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    /// The `<stream:stream ...>` open tag (not closed until the stream ends).
    StreamOpen,
    /// One complete top-level element (a stanza or a nonza).
    Element,
    /// The `</stream:stream>` end tag.
    StreamClose,
}

/// A complete item found in the buffer; `start..end` indexes [`Framer`]'s buffer
/// and stays valid until the next call to [`Framer::read_space`] or [`Framer::reset`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    /// Kind of item.
    pub kind: FrameKind,
    /// First byte (the `<`).
    pub start: usize,
    /// One past the last byte (after the `>`).
    pub end: usize,
}

/// Errors the framer reports; all are fatal for the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// A single top-level element grew beyond the configured limit.
    #[error("top-level element exceeds {0} bytes")]
    TooLarge(usize),
}

/// Kind of markup construct starting at a `<`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tag {
    Open,
    Empty,
    Close,
    /// Comment, CDATA, processing instruction, doctype: no effect on depth.
    Other,
}

/// Incremental top-level element finder with its own read buffer.
#[derive(Debug)]
pub struct Framer {
    buf: Vec<u8>,
    /// First byte not yet handed out as part of a frame.
    head: usize,
    /// End of valid data.
    tail: usize,
    /// Scan resume position, always outside any tag.
    pos: usize,
    /// Depth inside the current top-level element (0 = between elements).
    depth: u32,
    /// Whether the stream header has been seen (elements are then top-level).
    in_stream: bool,
    max_frame: usize,
}

impl Framer {
    /// A framer expecting a stream header first, with `initial` bytes of buffer
    /// and refusing top-level elements larger than `max_frame`.
    pub fn new(initial: usize, max_frame: usize) -> Self {
        Framer {
            buf: vec![0; initial.max(64)],
            head: 0,
            tail: 0,
            pos: 0,
            depth: 0,
            in_stream: false,
            max_frame,
        }
    }

    /// A framer that treats every top-level element as a frame without a
    /// stream header (used by the relay protocol after its handshake line).
    pub fn new_in_stream(initial: usize, max_frame: usize) -> Self {
        let mut f = Framer::new(initial, max_frame);
        f.in_stream = true;
        f
    }

    /// Forget all buffered bytes and expect a new stream header (stream restart).
    pub fn reset(&mut self) {
        self.head = 0;
        self.tail = 0;
        self.pos = 0;
        self.depth = 0;
        self.in_stream = false;
    }

    /// Mark the framer as inside a stream (no header expected).
    pub fn set_in_stream(&mut self) {
        self.in_stream = true;
    }

    /// Writable space of at least `min` bytes after the buffered data; compacts
    /// or grows the buffer. Invalidates previously returned frames.
    pub fn read_space(&mut self, min: usize) -> &mut [u8] {
        if self.head == self.tail {
            self.head = 0;
            self.tail = 0;
            self.pos = 0;
        } else if self.buf.len() - self.tail < min && self.head > 0 {
            self.buf.copy_within(self.head..self.tail, 0);
            self.tail -= self.head;
            self.pos -= self.head;
            self.head = 0;
        }
        if self.buf.len() - self.tail < min {
            let want = (self.buf.len() * 2).max(self.tail + min);
            self.buf.resize(want, 0);
        }
        &mut self.buf[self.tail..]
    }

    /// Record that `n` bytes were written into the space from [`Self::read_space`].
    pub fn commit(&mut self, n: usize) {
        self.tail = (self.tail + n).min(self.buf.len());
    }

    /// Append bytes (copying).
    #[cfg(test)]
    pub fn extend(&mut self, data: &[u8]) {
        let space = self.read_space(data.len());
        space[..data.len()].copy_from_slice(data);
        self.commit(data.len());
    }

    /// The bytes of a frame returned by [`Self::next_frame`].
    pub fn bytes(&self, f: &Frame) -> &[u8] {
        &self.buf[f.start..f.end]
    }

    /// Take one `\n`-terminated line from the front of the buffer (without the
    /// newline), for the relay's handshake. Only valid before any frame was taken.
    pub fn take_line(&mut self) -> Option<(usize, usize)> {
        let i = memchr(b'\n', &self.buf[self.head..self.tail])?;
        let line = (self.head, self.head + i);
        self.head += i + 1;
        self.pos = self.head;
        Some(line)
    }

    /// Bytes at `range` from [`Self::take_line`].
    pub fn slice(&self, range: (usize, usize)) -> &[u8] {
        &self.buf[range.0..range.1]
    }

    /// The next complete top-level item, or `None` if more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        loop {
            let data = &self.buf[..self.tail];
            let Some(off) = memchr(b'<', &data[self.pos..]) else {
                if self.depth == 0 {
                    // Whitespace keepalives (or stray text) between elements.
                    self.head = self.tail;
                }
                self.pos = self.tail;
                return self.need_more();
            };
            let lt = self.pos + off;
            if self.depth == 0 {
                self.head = lt;
            }
            let Some((tag, gt)) = scan_tag(data, lt) else {
                self.pos = lt;
                return self.need_more();
            };
            self.pos = gt + 1;
            let end = self.pos;
            match tag {
                Tag::Other => {
                    if self.depth == 0 {
                        self.head = end;
                    }
                }
                Tag::Open => {
                    if self.depth == 0 && !self.in_stream {
                        self.in_stream = true;
                        self.head = end;
                        return Ok(Some(Frame {
                            kind: FrameKind::StreamOpen,
                            start: lt,
                            end,
                        }));
                    }
                    self.depth += 1;
                }
                Tag::Empty => {
                    if self.depth == 0 {
                        return Ok(Some(self.emit(FrameKind::Element, lt, end)));
                    }
                }
                Tag::Close => {
                    if self.depth == 0 {
                        self.in_stream = false;
                        return Ok(Some(self.emit(FrameKind::StreamClose, lt, end)));
                    }
                    self.depth -= 1;
                    if self.depth == 0 {
                        let start = self.head;
                        return Ok(Some(self.emit(FrameKind::Element, start, end)));
                    }
                }
            }
        }
    }

    fn emit(&mut self, kind: FrameKind, start: usize, end: usize) -> Frame {
        self.head = end;
        Frame { kind, start, end }
    }

    fn need_more(&self) -> Result<Option<Frame>, FrameError> {
        if self.tail - self.head > self.max_frame {
            Err(FrameError::TooLarge(self.max_frame))
        } else {
            Ok(None)
        }
    }
}

/// Classify the markup at `data[lt] == b'<'` and find its closing `>`;
/// `None` if the construct is not complete yet.
fn scan_tag(data: &[u8], lt: usize) -> Option<(Tag, usize)> {
    let rest = &data[lt..];
    match *rest.get(1)? {
        b'/' => memchr(b'>', &rest[2..]).map(|i| (Tag::Close, lt + 2 + i)),
        b'?' => memmem::find(&rest[2..], b"?>").map(|i| (Tag::Other, lt + 2 + i + 1)),
        b'!' => {
            let (open, close): (&[u8], &[u8]) = if rest.starts_with(b"<!--") {
                (b"<!--", b"-->")
            } else if rest.starts_with(b"<![CDATA[") {
                (b"<![CDATA[", b"]]>")
            } else if b"<![CDATA[".starts_with(&rest[..rest.len().min(9)])
                || b"<!--".starts_with(&rest[..rest.len().min(4)])
            {
                return None; // prefix of a comment/CDATA opener: wait for more
            } else {
                (b"<!", b">")
            };
            memmem::find(&rest[open.len()..], close)
                .map(|i| (Tag::Other, lt + open.len() + i + close.len() - 1))
        }
        _ => {
            let gt = tag_end(rest)?;
            let kind = if rest[gt - 1] == b'/' {
                Tag::Empty
            } else {
                Tag::Open
            };
            Some((kind, lt + gt))
        }
    }
}

/// Index of the `>` closing the start tag at the front of `tag`, skipping
/// quoted attribute values (which may contain `>`).
fn tag_end(tag: &[u8]) -> Option<usize> {
    let mut i = 1;
    loop {
        let j = i + memchr3(b'>', b'"', b'\'', &tag[i..])?;
        let c = tag[j];
        if c == b'>' {
            return Some(j);
        }
        i = j + 1 + memchr(c, &tag[j + 1..])? + 1;
    }
}

/// The start tag of an element (from `<` to its `>`), or the whole input if malformed.
pub fn start_tag(elem: &[u8]) -> &[u8] {
    match tag_end(elem) {
        Some(gt) => &elem[..=gt],
        None => elem,
    }
}

/// Qualified name of an element (`message`, `stream:features`).
pub fn name(elem: &[u8]) -> &[u8] {
    let rest = elem.get(1..).unwrap_or_default();
    let end = rest
        .iter()
        .position(|&c| matches!(c, b' ' | b'\t' | b'\r' | b'\n' | b'/' | b'>'))
        .unwrap_or(rest.len());
    &rest[..end]
}

/// Raw (still escaped) value of attribute `attr` in the start tag of `elem`.
pub fn attr<'a>(elem: &'a [u8], attr: &[u8]) -> Option<&'a [u8]> {
    let tag = start_tag(elem);
    let mut i = 1 + name(elem).len();
    loop {
        while i < tag.len() && tag[i].is_ascii_whitespace() {
            i += 1;
        }
        let name_start = i;
        while i < tag.len() && !matches!(tag[i], b'=' | b' ' | b'\t' | b'\r' | b'\n' | b'/' | b'>')
        {
            i += 1;
        }
        if i == name_start {
            return None;
        }
        let key = &tag[name_start..i];
        while i < tag.len() && (tag[i].is_ascii_whitespace() || tag[i] == b'=') {
            i += 1;
        }
        let q = *tag.get(i)?;
        if q != b'\'' && q != b'"' {
            return None;
        }
        let vstart = i + 1;
        let vlen = memchr(q, &tag[vstart..])?;
        if key == attr {
            return Some(&tag[vstart..vstart + vlen]);
        }
        i = vstart + vlen + 1;
    }
}

/// Text between the start tag and the last end tag of an element (empty for `<x/>`).
pub fn inner(elem: &[u8]) -> &[u8] {
    let st = start_tag(elem);
    if st.len() >= 2 && st[st.len() - 2] == b'/' {
        return &[];
    }
    let body = &elem[st.len()..];
    match memchr::memrchr(b'<', body) {
        Some(i) => &body[..i],
        None => body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(input: &[&[u8]]) -> Vec<(FrameKind, Vec<u8>)> {
        let mut f = Framer::new(16, 1 << 20);
        let mut out = Vec::new();
        for chunk in input {
            f.extend(chunk);
            while let Some(fr) = f.next_frame().expect("frame") {
                out.push((fr.kind, f.bytes(&fr).to_vec()));
            }
        }
        out
    }

    const HDR: &[u8] = b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' id='a>b'>";

    #[test]
    fn header_elements_keepalives_and_close() {
        let input: &[u8] = b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' id='a>b'> \n<message to='x'><body>hi &amp; <![CDATA[</body>]]></body></message> <presence/>\t</stream:stream>";
        let got = frames(&[input]);
        let kinds: Vec<_> = got.iter().map(|g| g.0).collect();
        assert_eq!(
            kinds,
            vec![
                FrameKind::StreamOpen,
                FrameKind::Element,
                FrameKind::Element,
                FrameKind::StreamClose
            ]
        );
        assert_eq!(
            got[0].1,
            b"<stream:stream xmlns='jabber:client' id='a>b'>".to_vec()
        );
        assert_eq!(
            got[1].1,
            b"<message to='x'><body>hi &amp; <![CDATA[</body>]]></body></message>".to_vec()
        );
        assert_eq!(got[2].1, b"<presence/>".to_vec());
    }

    #[test]
    fn byte_by_byte_equals_whole() {
        let mut input = HDR.to_vec();
        input.extend_from_slice(
            b"<iq type=\"result\" id='1'><bind xmlns='b'><jid>a@b/c</jid></bind></iq><!-- c > d --><message a='/>'><x/></message>",
        );
        let whole = frames(&[&input]);
        let chunks: Vec<&[u8]> = input.chunks(1).collect();
        let split = frames(&chunks);
        assert_eq!(whole, split);
        assert_eq!(whole.len(), 3);
        assert_eq!(whole[2].1, b"<message a='/>'><x/></message>".to_vec());
    }

    #[test]
    fn incomplete_element_waits() {
        let mut f = Framer::new(64, 1 << 20);
        f.extend(HDR);
        assert_eq!(
            f.next_frame().expect("ok").map(|x| x.kind),
            Some(FrameKind::StreamOpen)
        );
        f.extend(b"<message><body>x</body>");
        assert_eq!(f.next_frame().expect("ok"), None);
        f.extend(b"</message>");
        let fr = f.next_frame().expect("ok").expect("frame");
        assert_eq!(f.bytes(&fr), b"<message><body>x</body></message>");
    }

    #[test]
    fn too_large_is_an_error() {
        let mut f = Framer::new_in_stream(64, 100);
        f.extend(b"<message>");
        f.extend(&[b'a'; 200]);
        assert_eq!(f.next_frame(), Err(FrameError::TooLarge(100)));
    }

    #[test]
    fn restart_discards_and_expects_header() {
        let mut f = Framer::new(64, 1 << 20);
        f.extend(HDR);
        assert!(f.next_frame().expect("ok").is_some());
        f.reset();
        f.extend(b"<stream:stream><features/>");
        assert_eq!(
            f.next_frame().expect("ok").map(|x| x.kind),
            Some(FrameKind::StreamOpen)
        );
        assert_eq!(
            f.next_frame().expect("ok").map(|x| x.kind),
            Some(FrameKind::Element)
        );
    }

    #[test]
    fn relay_line_then_frames() {
        let mut f = Framer::new_in_stream(64, 1 << 20);
        f.extend(b"LOGIN u1@d\n<message to='u2@d'/>");
        let line = f.take_line().expect("line");
        assert_eq!(f.slice(line), b"LOGIN u1@d");
        let fr = f.next_frame().expect("ok").expect("frame");
        assert_eq!(f.bytes(&fr), b"<message to='u2@d'/>");
    }

    #[test]
    fn buffer_compacts_across_many_frames() {
        let mut f = Framer::new_in_stream(64, 1 << 20);
        let msg = b"<message to='a'><body>0123456789</body></message>";
        let mut n = 0;
        for _ in 0..1000 {
            f.extend(msg);
            while let Some(fr) = f.next_frame().expect("ok") {
                assert_eq!(f.bytes(&fr), msg);
                n += 1;
            }
        }
        assert_eq!(n, 1000);
        assert!(f.buf.len() <= 256, "buffer grew to {}", f.buf.len());
    }

    #[test]
    fn attributes_and_inner() {
        let e: &[u8] =
            b"<iq xmlns:to='no' to = \"u@d/r\" type='result' id='b1'><jid>u@d/r</jid></iq>";
        assert_eq!(name(e), b"iq");
        assert_eq!(attr(e, b"to"), Some(&b"u@d/r"[..]));
        assert_eq!(attr(e, b"type"), Some(&b"result"[..]));
        assert_eq!(attr(e, b"from"), None);
        assert_eq!(inner(e), b"<jid>u@d/r</jid>");
        assert_eq!(inner(b"<success xmlns='x'/>"), b"");
        assert_eq!(inner(b"<challenge xmlns='x'>abc=</challenge>"), b"abc=");
        assert_eq!(name(b"<stream:features>"), b"stream:features");
    }
}
