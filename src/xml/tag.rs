//! Tag-level lexing: finding a tag's end across feeds and validating start/end tags in place.

use super::chars::{ascii_ncname_end, check_qname, check_ref_at, is_ws, NAME_STOP};
use super::XmlError;

/// A byte range inside a buffer (u32: stanzas are far smaller than 4 GiB).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Span {
    pub start: u32,
    pub end: u32,
}

impl Span {
    /// Builds a span from usize offsets.
    #[inline]
    pub fn new(start: usize, end: usize) -> Span {
        Span {
            start: start as u32,
            end: end as u32,
        }
    }
    /// The bytes of this span.
    #[inline]
    pub fn of<'a>(&self, b: &'a [u8]) -> &'a [u8] {
        &b[self.start as usize..self.end as usize]
    }
    /// Length in bytes.
    #[inline]
    pub fn len(&self) -> usize {
        (self.end - self.start) as usize
    }
}

/// One attribute of a start tag.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AttrSpan {
    /// Qualified name as written.
    pub name: Span,
    /// Length of the prefix if the name has a colon.
    pub colon: Option<u32>,
    /// Raw value between the quotes (still escaped).
    pub value: Span,
}

impl AttrSpan {
    /// True for `xmlns` and `xmlns:*` declarations.
    pub fn is_decl(&self, b: &[u8]) -> bool {
        let n = self.name.of(b);
        match self.colon {
            None => n == b"xmlns",
            Some(c) => &n[..c as usize] == b"xmlns",
        }
    }
}

/// Resumable search for the `>` closing a tag, skipping quoted attribute values.
/// Returns the offset of `>` (or of a `<` inside a value, which no valid tag has: the parse of the
/// tag up to it refuses it), or `None` after updating `pos`/`quote` to resume later.
///
/// Only a quote after `=` (and optional whitespace) opens a value, as in any valid tag: a stray
/// one (`a='b''`) would otherwise hide every `>` up to the next quote of the stream, and the
/// stream would stall, swallowing stanzas, until the size limit. The tag then ends at its first
/// `>`, and its parse refuses it as not well-formed.
#[inline]
pub(crate) fn find_tag_end(b: &[u8], pos: &mut usize, quote: &mut u8) -> Option<usize> {
    loop {
        if *quote == 0 {
            let k = memchr::memchr3(b'>', b'\'', b'"', &b[*pos..]);
            let Some(k) = k else {
                *pos = b.len();
                return None;
            };
            let j = *pos + k;
            if b[j] == b'>' {
                return Some(j);
            }
            *pos = j + 1;
            // The tag's `<` stops this walk back, so it never leaves the tag.
            let before = b[..j].iter().rev().find(|&&c| !is_ws(c));
            if before == Some(&b'=') {
                *quote = b[j];
            }
        } else {
            let Some(k) = memchr::memchr2(*quote, b'<', &b[*pos..]) else {
                *pos = b.len();
                return None;
            };
            let j = *pos + k;
            if b[j] == b'<' {
                // No value holds a `<`: the quote was never closed. The tag ends here for its
                // parse to refuse, instead of hiding every later tag up to the stream's next quote.
                return Some(j);
            }
            *quote = 0;
            *pos = j + 1;
        }
    }
}

/// A validated start tag.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StartTag {
    /// Qualified name.
    pub name: Span,
    /// Length of the prefix if the name has a colon.
    pub colon: Option<u32>,
    /// Offset where the attribute list ends (the `/` of `/>` or the `>`).
    pub head_end: u32,
    /// True for `<x/>`.
    pub empty: bool,
}

/// End offset of a name starting at `i` (stops at whitespace and tag punctuation).
#[inline]
fn name_end(b: &[u8], mut i: usize, limit: usize) -> usize {
    while i < limit && !NAME_STOP[b[i] as usize] {
        i += 1;
    }
    i
}

/// The qualified name starting at `b[i]`, validated: its end and the offset of its colon, or
/// `None` if `b` ends first.
#[inline(always)]
fn qname_at(b: &[u8], i: usize) -> Result<Option<(usize, Option<u32>)>, XmlError> {
    if let Some(end) = ascii_ncname_end(b, i) {
        return Ok(Some((end, None)));
    }
    let end = name_end(b, i, b.len());
    if end == b.len() {
        return Ok(None);
    }
    Ok(Some((end, check_qname(&b[i..end])?.map(|c| c as u32))))
}

/// First offset at or after `i` that is not whitespace (`b.len()` if none).
#[inline]
fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && is_ws(b[i]) {
        i += 1;
    }
    i
}

/// Validates the start tag `b[lt..=gt]` (`b[lt] == '<'`, `b[gt] == '>'` found by `find_tag_end`),
/// filling `attrs` (cleared first). See [`parse_start_tag_open`].
pub(crate) fn parse_start_tag(
    b: &[u8],
    lt: usize,
    gt: usize,
    attrs: &mut Vec<AttrSpan>,
    max_attrs: usize,
) -> Result<StartTag, XmlError> {
    // `gt` is the first `>` outside quotes, so a valid tag ends there, and only there.
    match parse_start_tag_open(&b[..=gt], lt, attrs, max_attrs)? {
        Some(tag) if tag.head_end as usize + usize::from(tag.empty) == gt => Ok(tag),
        _ => Err(XmlError::BadTagSyntax),
    }
}

/// Validates the start tag at `b[lt] == '<'` in one pass that also finds its end, filling `attrs`
/// (cleared first): `Ok(None)` if `b` ends before the tag does. Checks name syntax, attribute
/// syntax, references, `<` in values, duplicate raw names and the attribute count limit; an error
/// in the bytes seen is reported at once, a name or reference cut by the end of `b` waits. A tag
/// read whole is so scanned once instead of twice (a search for its `>`, then the parse).
pub(crate) fn parse_start_tag_open(
    b: &[u8],
    lt: usize,
    attrs: &mut Vec<AttrSpan>,
    max_attrs: usize,
) -> Result<Option<StartTag>, XmlError> {
    attrs.clear();
    let Some((ne, colon)) = qname_at(b, lt + 1)? else {
        return Ok(None);
    };
    let name = Span::new(lt + 1, ne);
    let mut i = ne;
    loop {
        let j = skip_ws(b, i);
        let had_ws = j > i;
        i = j;
        let Some(&c) = b.get(i) else {
            return Ok(None);
        };
        let empty = match c {
            b'>' => false,
            b'/' => match b.get(i + 1) {
                None => return Ok(None),
                Some(b'>') => true,
                Some(_) => return Err(XmlError::BadTagSyntax),
            },
            _ if !had_ws => return Err(XmlError::BadTagSyntax),
            _ => {
                let Some(end) = attr(b, i, attrs, max_attrs)? else {
                    return Ok(None);
                };
                i = end;
                continue;
            }
        };
        return Ok(Some(StartTag {
            name,
            colon,
            head_end: i as u32,
            empty,
        }));
    }
}

/// Parses the attribute whose name starts at `b[i]` into `attrs`; the offset after its closing
/// quote, or `None` if `b` ends first.
#[inline]
fn attr(
    b: &[u8],
    i: usize,
    attrs: &mut Vec<AttrSpan>,
    max_attrs: usize,
) -> Result<Option<usize>, XmlError> {
    let Some((an_end, acolon)) = qname_at(b, i)? else {
        return Ok(None);
    };
    let aname = Span::new(i, an_end);
    let i = skip_ws(b, an_end);
    match b.get(i) {
        None => return Ok(None),
        Some(b'=') => {}
        Some(_) => return Err(XmlError::BadTagSyntax),
    }
    let i = skip_ws(b, i + 1);
    let q = match b.get(i) {
        None => return Ok(None),
        Some(&q @ (b'\'' | b'"')) => q,
        Some(_) => return Err(XmlError::BadTagSyntax),
    };
    // One pass over the value: closing quote, `<`, references.
    let mut j = i + 1;
    let close = loop {
        let Some(k) = memchr::memchr3(q, b'<', b'&', &b[j..]) else {
            return Ok(None);
        };
        let at = j + k;
        match b[at] {
            c if c == q => break at,
            b'<' => return Err(XmlError::LtInAttributeValue),
            _ => match check_ref_at(&b[at..])? {
                Some(n) => j = at + n,
                None => return Ok(None),
            },
        }
    };
    if attrs.len() == max_attrs {
        return Err(XmlError::TooManyAttributes(max_attrs));
    }
    let aname_b = aname.of(b);
    for a in attrs.iter() {
        // Lengths first: most names differ in length, and that needs no byte comparison.
        if a.name.len() == aname_b.len() && a.name.of(b) == aname_b {
            return Err(XmlError::DuplicateAttribute);
        }
    }
    attrs.push(AttrSpan {
        name: aname,
        colon: acolon,
        value: Span::new(i + 1, close),
    });
    Ok(Some(close + 1))
}

/// Checks the syntax of the end tag `b[lt..=gt]` (`</name S?>`) and returns its name. The name
/// itself is not checked: every caller compares it with the name of the element it closes, which
/// its start tag validated, and refuses a mismatch (one name check per element, not two).
pub(crate) fn parse_end_tag(b: &[u8], lt: usize, gt: usize) -> Result<&[u8], XmlError> {
    match parse_end_tag_open(&b[..=gt], lt)? {
        Some((name, end)) if end == gt => Ok(name.of(b)),
        _ => Err(XmlError::BadTagSyntax),
    }
}

/// The end tag at `b[lt..]` (`</name S?>`) in one pass: its name and the offset of its `>`, or
/// `None` if `b` ends first. The name is not checked (see [`parse_end_tag`]).
pub(crate) fn parse_end_tag_open(b: &[u8], lt: usize) -> Result<Option<(Span, usize)>, XmlError> {
    let ne = name_end(b, lt + 2, b.len());
    let gt = skip_ws(b, ne);
    match b.get(gt) {
        None => Ok(None),
        Some(b'>') => Ok(Some((Span::new(lt + 2, ne), gt))),
        Some(_) => Err(XmlError::BadTagSyntax),
    }
}

/// A located attribute in an accepted start tag.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FoundAttr {
    /// From the whitespace before the name to the closing quote, inclusive.
    pub full: Span,
    /// Raw value between the quotes.
    pub value: Span,
}

/// Iterates over the attributes of an accepted (already validated) start tag:
/// `b[from..head_end]` is the part after the element name. No allocation.
pub(crate) fn attrs_of(
    b: &[u8],
    from: usize,
    head_end: usize,
) -> impl Iterator<Item = (&[u8], FoundAttr)> + '_ {
    let mut i = from;
    std::iter::from_fn(move || {
        let ws = i;
        while i < head_end && is_ws(b[i]) {
            i += 1;
        }
        if i >= head_end {
            return None;
        }
        let ns = i;
        let eq = ns + memchr::memchr(b'=', &b[ns..head_end])?;
        let mut ne = eq;
        while ne > ns && is_ws(b[ne - 1]) {
            ne -= 1;
        }
        let qpos = eq
            + 1
            + b[eq + 1..head_end]
                .iter()
                .position(|&c| c == b'\'' || c == b'"')?;
        let close = qpos + 1 + memchr::memchr(b[qpos], &b[qpos + 1..head_end])?;
        i = close + 1;
        Some((
            &b[ns..ne],
            FoundAttr {
                full: Span::new(ws, close + 1),
                value: Span::new(qpos + 1, close),
            },
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start(s: &str) -> Result<(StartTag, Vec<(String, String)>), XmlError> {
        let b = s.as_bytes();
        let (mut pos, mut q) = (1, 0);
        let gt = find_tag_end(b, &mut pos, &mut q).ok_or(XmlError::Incomplete)?;
        let mut attrs = Vec::new();
        let t = parse_start_tag(b, 0, gt, &mut attrs, 8)?;
        let a = attrs
            .iter()
            .map(|a| {
                let n = String::from_utf8_lossy(a.name.of(b)).into_owned();
                (n, String::from_utf8_lossy(a.value.of(b)).into_owned())
            })
            .collect();
        Ok((t, a))
    }

    #[test]
    fn start_tags() {
        let (t, a) = start("<a:b x='1' y = \"2>'\" z='&amp;'/>").unwrap();
        assert!(t.empty);
        assert_eq!(t.colon, Some(1));
        assert_eq!(
            a,
            [("x", "1"), ("y", "2>'"), ("z", "&amp;")].map(|(k, v)| (k.into(), v.into()))
        );
        assert!(!start("<m>").unwrap().0.empty);
        assert_eq!(start("<m x='1'y='2'>").unwrap_err(), XmlError::BadTagSyntax);
        assert_eq!(start("<m x>").unwrap_err(), XmlError::BadTagSyntax);
        assert_eq!(start("<m x=1>").unwrap_err(), XmlError::BadTagSyntax);
        assert_eq!(
            start("<m x='<'>").unwrap_err(),
            XmlError::LtInAttributeValue
        );
        assert_eq!(
            start("<m x='1' x='2'>").unwrap_err(),
            XmlError::DuplicateAttribute
        );
        assert_eq!(
            start("<m x='&bad;'>").unwrap_err(),
            XmlError::UndeclaredEntity
        );
        assert_eq!(start("<1m>").unwrap_err(), XmlError::InvalidName);
        assert_eq!(start("<m / >").unwrap_err(), XmlError::BadTagSyntax);
        let many = "<m a='' b='' c='' d='' e='' f='' g='' h='' i=''>";
        assert_eq!(start(many).unwrap_err(), XmlError::TooManyAttributes(8));
    }

    /// The one-sweep name path decides exactly as the long way (the end, then the name check).
    #[test]
    fn a_name_is_decided_the_same_either_way() {
        let long = |b: &[u8]| -> Result<Option<(usize, Option<u32>)>, XmlError> {
            let end = name_end(b, 0, b.len());
            if end == b.len() {
                return Ok(None);
            }
            Ok(Some((end, check_qname(&b[..end])?.map(|c| c as u32))))
        };
        for name in [
            "m", "message", "a_b-c.d9", "x:y", "1m", "-m", "m:", ":m", "é", "mé", "m\u{B7}", "",
            "m'",
        ] {
            for stop in ["", " ", "\t", "/", ">", "=", "'", "<"] {
                let b = format!("{name}{stop}");
                let b = b.as_bytes();
                assert_eq!(qname_at(b, 0), long(b), "{name:?} then {stop:?}");
            }
        }
    }

    #[test]
    fn tag_end_resumes_inside_quotes() {
        let full = b"<m a='x>y' b=\"'>\">";
        let (mut pos, mut q) = (1, 0);
        for n in 2..full.len() {
            assert_eq!(find_tag_end(&full[..n], &mut pos, &mut q), None);
        }
        assert_eq!(find_tag_end(full, &mut pos, &mut q), Some(full.len() - 1));
    }

    #[test]
    fn only_a_quote_after_an_equals_sign_opens_a_value() {
        for (tag, end) in [
            ("<m a='b''/>x'>", 10),
            ("<m 'x='y'/>x'>", 10),
            ("</m'>x'>", 4),
            ("<m a = 'x>y' b=\n\"'>\">", 20),
        ] {
            let b = tag.as_bytes();
            let (mut pos, mut q) = (1, 0);
            assert_eq!(find_tag_end(b, &mut pos, &mut q), Some(end), "{tag}");
        }
        // Fed a byte at a time, it ends at the same place.
        let full = b"<m a='b''/>x'>";
        let (mut pos, mut q) = (1, 0);
        for n in 2..11 {
            assert_eq!(find_tag_end(&full[..n], &mut pos, &mut q), None);
        }
        assert_eq!(find_tag_end(full, &mut pos, &mut q), Some(10));
        assert!(start("<m a='b''/>").is_err());
        // A value never closed ends at the next `<`, whole or fed a byte at a time.
        let open = b"<m a='x\"/><iq type=\"get\"/>";
        let (mut pos, mut q) = (1, 0);
        for n in 2..11 {
            assert_eq!(find_tag_end(&open[..n], &mut pos, &mut q), None);
        }
        assert_eq!(find_tag_end(open, &mut pos, &mut q), Some(10));
        assert!(start("<m a='x\"/><").is_err());
    }

    #[test]
    fn attr_iteration() {
        let b = b"<m to='a' from = \"b\">";
        let got: Vec<_> = attrs_of(b, 2, b.len() - 1)
            .map(|(n, f)| (n, f.value.of(b)))
            .collect();
        assert_eq!(got, [(&b"to"[..], &b"a"[..]), (b"from", b"b")]);
    }
}
