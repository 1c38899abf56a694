//! Tag-level lexing: finding a tag's end across feeds and validating start/end tags in place.

use super::chars::{check_qname, check_ref_at, is_ws};
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
/// Returns the offset of `>`, or `None` after updating `pos`/`quote` to resume later.
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
            *quote = b[j];
            *pos = j + 1;
        } else {
            let Some(k) = memchr::memchr(*quote, &b[*pos..]) else {
                *pos = b.len();
                return None;
            };
            *quote = 0;
            *pos += k + 1;
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
    while i < limit && !matches!(b[i], b' ' | b'\t' | b'\n' | b'\r' | b'/' | b'>' | b'=') {
        i += 1;
    }
    i
}

#[inline]
fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while is_ws(b[i]) {
        i += 1;
    }
    i
}

/// Validates the start tag `b[lt..=gt]` (`b[lt] == '<'`, `b[gt] == '>'` found by `find_tag_end`),
/// filling `attrs` (cleared first). Checks name syntax, attribute syntax, references, `<` in
/// values, duplicate raw names and the attribute count limit.
pub(crate) fn parse_start_tag(
    b: &[u8],
    lt: usize,
    gt: usize,
    attrs: &mut Vec<AttrSpan>,
    max_attrs: usize,
) -> Result<StartTag, XmlError> {
    attrs.clear();
    let ne = name_end(b, lt + 1, gt);
    let colon = check_qname(&b[lt + 1..ne])?.map(|c| c as u32);
    let name = Span::new(lt + 1, ne);
    let mut i = ne;
    loop {
        let j = skip_ws(b, i);
        let had_ws = j > i;
        i = j;
        match b[i] {
            b'>' if i == gt => {
                return Ok(StartTag {
                    name,
                    colon,
                    head_end: i as u32,
                    empty: false,
                })
            }
            b'/' if i + 1 == gt => {
                return Ok(StartTag {
                    name,
                    colon,
                    head_end: i as u32,
                    empty: true,
                })
            }
            b'/' => return Err(XmlError::BadTagSyntax),
            _ if !had_ws => return Err(XmlError::BadTagSyntax),
            _ => {}
        }
        let an_end = name_end(b, i, gt);
        let acolon = check_qname(&b[i..an_end])?.map(|c| c as u32);
        let aname = Span::new(i, an_end);
        i = skip_ws(b, an_end);
        if b[i] != b'=' {
            return Err(XmlError::BadTagSyntax);
        }
        i = skip_ws(b, i + 1);
        let q = b[i];
        if q != b'\'' && q != b'"' {
            return Err(XmlError::BadTagSyntax);
        }
        // One pass over the value: closing quote, `<`, references. The closing quote precedes
        // `gt`: `find_tag_end` only stops at a `>` outside quotes.
        let mut j = i + 1;
        let close = loop {
            let at = j + memchr::memchr3(q, b'<', b'&', &b[j..gt]).ok_or(XmlError::BadTagSyntax)?;
            match b[at] {
                c if c == q => break at,
                b'<' => return Err(XmlError::LtInAttributeValue),
                _ => j = at + check_ref_at(&b[at..gt])?.ok_or(XmlError::MalformedReference)?,
            }
        };
        if attrs.len() == max_attrs {
            return Err(XmlError::TooManyAttributes(max_attrs));
        }
        let aname_b = aname.of(b);
        if attrs.iter().any(|a| a.name.of(b) == aname_b) {
            return Err(XmlError::DuplicateAttribute);
        }
        attrs.push(AttrSpan {
            name: aname,
            colon: acolon,
            value: Span::new(i + 1, close),
        });
        i = close + 1;
    }
}

/// Checks the syntax of the end tag `b[lt..=gt]` (`</name S?>`) and returns its name. The name
/// itself is not checked: every caller compares it with the name of the element it closes, which
/// its start tag validated, and refuses a mismatch (one name check per element, not two).
pub(crate) fn parse_end_tag(b: &[u8], lt: usize, gt: usize) -> Result<&[u8], XmlError> {
    let ne = name_end(b, lt + 2, gt);
    if skip_ws(b, ne) != gt {
        return Err(XmlError::BadTagSyntax);
    }
    Ok(&b[lt + 2..ne])
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
    fn attr_iteration() {
        let b = b"<m to='a' from = \"b\">";
        let got: Vec<_> = attrs_of(b, 2, b.len() - 1)
            .map(|(n, f)| (n, f.value.of(b)))
            .collect();
        assert_eq!(got, [(&b"to"[..], &b"a"[..]), (b"from", b"b")]);
    }
}
