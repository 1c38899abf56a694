//! Character classes, name validation, reference checking and unescaping (XML 1.0 5th edition).

use std::borrow::Cow;

use super::XmlError;

/// XML whitespace (`S`).
#[inline]
pub(crate) fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// Checks that `b` is UTF-8 made only of XML `Char`s. One branch-free sweep over 64-byte chunks
/// finds control characters and which chunks hold non-ASCII bytes; only runs of such chunks get
/// UTF-8 validation and the memchr jump to 0xEF lead bytes (U+FFFE/U+FFFF).
pub(crate) fn check_chars(b: &[u8]) -> Result<(), XmlError> {
    let mut run_start = None;
    for (i, chunk) in b.chunks(64).enumerate() {
        // Accumulate without branching so the loop vectorizes.
        let mut bad = false;
        let mut high = 0u8;
        for &c in chunk {
            bad |= (c < 0x20) & (c != b'\t') & (c != b'\n') & (c != b'\r');
            high |= c;
        }
        if bad {
            return Err(XmlError::InvalidChar);
        }
        match (high >= 0x80, run_start) {
            (true, None) => run_start = Some(i * 64),
            // An all-ASCII chunk starts on a character boundary, so the run ends cleanly here.
            (false, Some(s)) => {
                check_non_ascii(&b[s..i * 64])?;
                run_start = None;
            }
            _ => {}
        }
    }
    match run_start {
        Some(s) => check_non_ascii(&b[s..]),
        None => Ok(()),
    }
}

/// UTF-8 validity and no U+FFFE/U+FFFF, for a slice that starts and ends on character boundaries.
fn check_non_ascii(b: &[u8]) -> Result<(), XmlError> {
    if std::str::from_utf8(b).is_err() {
        return Err(XmlError::InvalidUtf8);
    }
    for i in memchr::memchr_iter(0xEF, b) {
        // Valid UTF-8 guarantees two continuation bytes follow a 0xEF lead byte.
        if b.get(i + 1) == Some(&0xBF) && matches!(b.get(i + 2), Some(0xBE | 0xBF)) {
            return Err(XmlError::InvalidChar);
        }
    }
    Ok(())
}

/// True if `c` is an XML `Char`.
fn is_xml_char(c: u32) -> bool {
    matches!(c, 0x9 | 0xA | 0xD | 0x20..=0xD7FF | 0xE000..=0xFFFD | 0x10000..=0x10FFFF)
}

/// ASCII name-start bytes (`:` excluded: callers split qualified names on it).
const fn ascii_table(start: bool) -> [bool; 256] {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 128 {
        let c = i as u8;
        t[i] = c.is_ascii_alphabetic()
            || c == b'_'
            || (!start && (c.is_ascii_digit() || c == b'-' || c == b'.'));
        i += 1;
    }
    t
}
static NAME_START: [bool; 256] = ascii_table(true);
static NAME_CHAR: [bool; 256] = ascii_table(false);

/// A table of the bytes in `set`: a class test in one lookup.
pub(crate) const fn byte_table(set: &[u8]) -> [bool; 256] {
    let mut t = [false; 256];
    let mut i = 0;
    while i < set.len() {
        t[set[i] as usize] = true;
        i += 1;
    }
    t
}

/// Bytes that end a name in a tag: whitespace, `/`, `>` and `=`.
pub(crate) static NAME_STOP: [bool; 256] = byte_table(b" \t\n\r/>=");

/// The end of the name at `b[i..]` if it is an ASCII NCName that a [`NAME_STOP`] byte ends within
/// `b`: the usual name, whose end and validity one table sweep decides. `None` otherwise (a
/// prefix, other characters, an invalid name, or the end of `b`): the caller takes the long way.
#[inline]
pub(crate) fn ascii_ncname_end(b: &[u8], i: usize) -> Option<usize> {
    if !NAME_START[*b.get(i)? as usize] {
        return None;
    }
    let mut j = i + 1;
    while j < b.len() && NAME_CHAR[b[j] as usize] {
        j += 1;
    }
    b.get(j).filter(|&&c| NAME_STOP[c as usize]).map(|_| j)
}

fn is_name_start_char(c: char) -> bool {
    let c = c as u32;
    if c < 128 {
        return NAME_START[c as usize];
    }
    matches!(c, 0xC0..=0xD6 | 0xD8..=0xF6 | 0xF8..=0x2FF | 0x370..=0x37D | 0x37F..=0x1FFF
        | 0x200C..=0x200D | 0x2070..=0x218F | 0x2C00..=0x2FEF | 0x3001..=0xD7FF
        | 0xF900..=0xFDCF | 0xFDF0..=0xFFFD | 0x10000..=0xEFFFF)
}

fn is_name_char(c: char) -> bool {
    let u = c as u32;
    if u < 128 {
        return NAME_CHAR[u as usize];
    }
    is_name_start_char(c) || u == 0xB7 || matches!(u, 0x300..=0x36F | 0x203F..=0x2040)
}

/// True if `b` is a non-empty NCName (a name without colons).
pub(crate) fn is_ncname(b: &[u8]) -> bool {
    let Some(&first) = b.first() else {
        return false;
    };
    // ASCII fast path: non-ASCII bytes are false in the tables, so `ok` also means "all ASCII".
    let ok = b[1..].iter().fold(NAME_START[first as usize], |ok, &c| {
        ok & NAME_CHAR[c as usize]
    });
    if ok {
        return true;
    }
    if b.is_ascii() {
        return false;
    }
    let Ok(s) = std::str::from_utf8(b) else {
        return false;
    };
    let mut chars = s.chars();
    chars.next().is_some_and(is_name_start_char) && chars.all(is_name_char)
}

/// Validates a qualified name; returns the offset of its colon, if it has one.
pub(crate) fn check_qname(b: &[u8]) -> Result<Option<usize>, XmlError> {
    // Most names have no prefix: one table sweep decides them (`:` is not an NCName character),
    // without a `memchr` call whose setup costs more than these few bytes.
    if is_ncname(b) {
        return Ok(None);
    }
    match memchr::memchr(b':', b) {
        Some(c) if is_ncname(&b[..c]) && is_ncname(&b[c + 1..]) => Ok(Some(c)),
        _ => Err(XmlError::InvalidName),
    }
}

/// What a reference at the start of a slice stands for.
enum Ref {
    /// One of the five predefined entities.
    Predefined(u8),
    /// A numeric character reference.
    Char(char),
}

/// Length (through `;`) of the reference starting at `b[0] == b'&'`; `None` if `b` ends first.
/// Fails as soon as a byte that cannot be part of a reference shows up.
pub(crate) fn ref_end(b: &[u8]) -> Result<Option<usize>, XmlError> {
    // Valid references are short; cap the search so garbage is refused quickly.
    for (i, &c) in b.iter().enumerate().skip(1).take(64) {
        match c {
            b';' => return Ok(Some(i + 1)),
            b'#' | b'.' | b'_' | b'-' | b':' | 0x80.. => {}
            _ if c.is_ascii_alphanumeric() => {}
            _ => return Err(XmlError::MalformedReference),
        }
    }
    if b.len() > 64 {
        Err(XmlError::MalformedReference)
    } else {
        Ok(None)
    }
}

/// Checks the reference at `b[0] == b'&'`; its length, or `None` if `b` ends before it does.
pub(crate) fn check_ref_at(b: &[u8]) -> Result<Option<usize>, XmlError> {
    match ref_end(b)? {
        Some(len) => parse_ref(&b[..len]).map(|(_, l)| Some(l)),
        None => Ok(None),
    }
}

/// Parses the reference starting at `b[0] == b'&'`; returns it and its length.
fn parse_ref(b: &[u8]) -> Result<(Ref, usize), XmlError> {
    let semi = ref_end(b)?.ok_or(XmlError::MalformedReference)? - 1;
    let body = &b[1..semi];
    let r = match body {
        b"lt" => Ref::Predefined(b'<'),
        b"gt" => Ref::Predefined(b'>'),
        b"amp" => Ref::Predefined(b'&'),
        b"apos" => Ref::Predefined(b'\''),
        b"quot" => Ref::Predefined(b'"'),
        [b'#', b'x', hex @ ..] => Ref::Char(char_ref(hex, 16)?),
        [b'#', dec @ ..] => Ref::Char(char_ref(dec, 10)?),
        _ if is_ncname(body) => return Err(XmlError::UndeclaredEntity),
        _ => return Err(XmlError::MalformedReference),
    };
    Ok((r, semi + 1))
}

fn char_ref(digits: &[u8], radix: u32) -> Result<char, XmlError> {
    if digits.is_empty() {
        return Err(XmlError::MalformedReference);
    }
    let mut v: u32 = 0;
    for &d in digits {
        let d = (d as char)
            .to_digit(radix)
            .ok_or(XmlError::MalformedReference)?;
        // Saturate instead of overflowing: anything this large is not a Char anyway.
        v = v.saturating_mul(radix).saturating_add(d);
    }
    if !is_xml_char(v) {
        return Err(XmlError::InvalidCharRef);
    }
    char::from_u32(v).ok_or(XmlError::InvalidCharRef)
}

/// Checks every `&` reference in `b` (a complete text run or attribute value).
#[cfg(test)]
pub(crate) fn check_refs(b: &[u8]) -> Result<(), XmlError> {
    let mut i = 0;
    while let Some(k) = memchr::memchr(b'&', &b[i..]) {
        let (_, len) = parse_ref(&b[i + k..])?;
        i += k + len;
    }
    Ok(())
}

/// Interprets validated bytes as text; they were checked as UTF-8 when the element was accepted.
pub(crate) fn as_str(b: &[u8]) -> &str {
    // Every caller passes bytes of an accepted element (checked by `check_chars`); an empty
    // string is returned rather than panicking if that invariant were ever broken.
    std::str::from_utf8(b).unwrap_or_default()
}

/// Unescapes an attribute value, normalizing literal whitespace to spaces (XML 1.0 §3.3.3).
pub(crate) fn unescape_attr(b: &[u8]) -> Cow<'_, str> {
    unescape(b, true)
}

/// Unescapes character data, normalizing line ends to `\n` (XML 1.0 §2.11).
pub(crate) fn unescape_text(b: &[u8]) -> Cow<'_, str> {
    unescape(b, false)
}

/// Line-end normalization for CDATA sections (no references inside).
pub(crate) fn normalize_cdata(b: &[u8]) -> Cow<'_, str> {
    if memchr::memchr(b'\r', b).is_none() {
        return Cow::Borrowed(as_str(b));
    }
    Cow::Owned(as_str(b).replace("\r\n", "\n").replace('\r', "\n"))
}

/// True if `b` may hold `&` or a byte below 0x20 (no false negatives; rare false positives):
/// eight bytes per step, for the attribute values every routed stanza's `to` is read from.
pub(crate) fn may_need_unescape(b: &[u8]) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    // Some byte of `w` is below `n` (n <= 0x80): the classic SWAR test, exact in "any".
    let below = |w: u64, n: u64| w.wrapping_sub(ONES * n) & !w & HIGH != 0;
    let amp = ONES * u64::from(b'&');
    let mut chunks = b.chunks_exact(8);
    for c in &mut chunks {
        let mut a = [0u8; 8];
        a.copy_from_slice(c);
        let w = u64::from_ne_bytes(a);
        if below(w, 0x20) || below(w ^ amp, 1) {
            return true;
        }
    }
    chunks.remainder().iter().any(|&c| c < 0x20 || c == b'&')
}

fn unescape(b: &[u8], attr: bool) -> Cow<'_, str> {
    let special = |c: u8| c == b'&' || c == b'\r' || (attr && (c == b'\t' || c == b'\n'));
    // Attribute values: a word-at-a-time pre-filter (every special byte is `&` or below 0x20),
    // then the exact test only where it may matter.
    if (attr && !may_need_unescape(b)) || !b.iter().any(|&c| special(c)) {
        return Cow::Borrowed(as_str(b));
    }
    let mut out = String::with_capacity(b.len());
    let mut i = 0;
    let mut run = 0;
    while i < b.len() {
        let c = b[i];
        if !special(c) {
            i += 1;
            continue;
        }
        out.push_str(as_str(&b[run..i]));
        match c {
            b'&' => match parse_ref(&b[i..]) {
                Ok((Ref::Predefined(p), len)) => {
                    out.push(p as char);
                    i += len;
                }
                Ok((Ref::Char(ch), len)) => {
                    out.push(ch);
                    i += len;
                }
                // Validated input has no bad references; keep the byte as written if one slips by.
                Err(_) => {
                    out.push('&');
                    i += 1;
                }
            },
            b'\r' => {
                out.push(if attr { ' ' } else { '\n' });
                i += if b.get(i + 1) == Some(&b'\n') { 2 } else { 1 };
            }
            _ => {
                out.push(' ');
                i += 1;
            }
        }
        run = i;
    }
    out.push_str(as_str(&b[run..]));
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescape_prefilter_misses_no_special_byte() {
        // Every byte value at every position of values up to 24 bytes long, in a field of `a`s
        // (and of high bytes, which must not hide a special byte next to them).
        for fill in [b'a', 0xC3] {
            for len in 1..=24 {
                for pos in 0..len {
                    for c in 0..=255u8 {
                        let mut v = vec![fill; len];
                        v[pos] = c;
                        let want = v.iter().any(|&c| c < 0x20 || c == b'&');
                        if want {
                            assert!(may_need_unescape(&v), "{v:?}");
                        }
                    }
                }
            }
        }
        assert!(!may_need_unescape(b"juliet@example.com/balcony"));
    }

    #[test]
    fn chars_rejects_controls_and_nonchars() {
        assert!(check_chars(b"hello\t\r\n world").is_ok());
        assert_eq!(check_chars(b"a\x01b"), Err(XmlError::InvalidChar));
        assert_eq!(check_chars(b"a\x7f").map(|_| ()), Ok(()));
        assert_eq!(
            check_chars("\u{FFFE}".as_bytes()),
            Err(XmlError::InvalidChar)
        );
        assert_eq!(
            check_chars("\u{FFFF}".as_bytes()),
            Err(XmlError::InvalidChar)
        );
        assert!(check_chars("\u{FFFD}é".as_bytes()).is_ok());
        assert_eq!(check_chars(b"\xff"), Err(XmlError::InvalidUtf8));
        assert_eq!(check_chars(b"\xed\xa0\x80"), Err(XmlError::InvalidUtf8));
        // Multi-byte characters straddling 64-byte chunk boundaries, runs ending in ASCII chunks.
        for pad in 60..66 {
            let mut s = "a".repeat(pad);
            s.push_str("\u{263A}\u{1F600}é");
            s.push_str(&"b".repeat(130));
            s.push('é');
            assert!(check_chars(s.as_bytes()).is_ok(), "{pad}");
            let mut bad = s.clone().into_bytes();
            bad.truncate(pad + 2);
            bad.extend_from_slice(&[b'c'; 140]);
            assert_eq!(check_chars(&bad), Err(XmlError::InvalidUtf8), "{pad}");
            let mut bad = s.into_bytes();
            bad.extend_from_slice("\u{FFFF}".as_bytes());
            assert_eq!(check_chars(&bad), Err(XmlError::InvalidChar), "{pad}");
        }
    }

    #[test]
    fn qnames() {
        assert_eq!(check_qname(b"message"), Ok(None));
        assert_eq!(check_qname(b"stream:stream"), Ok(Some(6)));
        assert_eq!(check_qname("é-1.x".as_bytes()), Ok(None));
        for bad in [&b""[..], b"1a", b"a:", b":a", b"a:b:c", b"-a", b"a b"] {
            assert_eq!(check_qname(bad), Err(XmlError::InvalidName), "{bad:?}");
        }
    }

    #[test]
    fn references() {
        assert!(check_refs(b"a &lt; &gt; &amp; &apos; &quot; &#65; &#x1F600;").is_ok());
        assert_eq!(check_refs(b"&nbsp;"), Err(XmlError::UndeclaredEntity));
        assert_eq!(check_refs(b"& x"), Err(XmlError::MalformedReference));
        assert_eq!(check_refs(b"&#;"), Err(XmlError::MalformedReference));
        assert_eq!(check_refs(b"&#x0;"), Err(XmlError::InvalidCharRef));
        assert_eq!(check_refs(b"&#xD800;"), Err(XmlError::InvalidCharRef));
        assert_eq!(check_refs(b"&#99999999999;"), Err(XmlError::InvalidCharRef));
        assert_eq!(check_ref_at(b"&am"), Ok(None));
        assert_eq!(check_ref_at(b"&amp;x"), Ok(Some(5)));
        assert_eq!(check_ref_at(b"&a m"), Err(XmlError::MalformedReference));
    }

    #[test]
    fn unescaping() {
        assert_eq!(unescape_attr(b"it&apos;s &#x41;&#66;"), "it's AB");
        assert_eq!(unescape_attr(b"a\tb\r\nc"), "a b c");
        assert_eq!(unescape_text(b"a\r\nb\rc &lt;"), "a\nb\nc <");
        assert!(matches!(unescape_text(b"plain"), Cow::Borrowed("plain")));
    }
}
