//! XML escaping for text and attribute values written by the server.

/// Appends `s` escaped for use as element text.
pub fn escape_text_into(s: &str, out: &mut Vec<u8>) {
    escape_attr_into(s, out)
}

/// The bytes [`escape_attr_into`] replaces.
static NEEDS_ESCAPE: [bool; 256] = super::chars::byte_table(b"&<>'\"");

/// Whether [`escape_attr_into`] would change `s`.
pub fn needs_escape(s: &str) -> bool {
    s.bytes().any(|b| NEEDS_ESCAPE[usize::from(b)])
}

/// Appends `s` escaped for use inside a single- or double-quoted attribute value.
pub fn escape_attr_into(s: &str, out: &mut Vec<u8>) {
    let bytes = s.as_bytes();
    // Most values (every stamped `from` JID) need no escaping: one table pass, one copy.
    if !needs_escape(s) {
        out.extend_from_slice(bytes);
        return;
    }
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let rep: &[u8] = match b {
            b'&' => b"&amp;",
            b'<' => b"&lt;",
            b'>' => b"&gt;",
            b'\'' => b"&apos;",
            b'"' => b"&quot;",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(rep);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attribute_values_are_escaped_only_where_needed() {
        for (input, want) in [
            ("juliet@example.com/balcony", "juliet@example.com/balcony"),
            ("", ""),
            ("a&b", "a&amp;b"),
            ("<'\">", "&lt;&apos;&quot;&gt;"),
            ("r\u{e9}sum\u{e9} & co", "r\u{e9}sum\u{e9} &amp; co"),
        ] {
            let mut out = b"x=".to_vec();
            escape_attr_into(input, &mut out);
            assert_eq!(out, format!("x={want}").into_bytes(), "{input}");
        }
    }
}
