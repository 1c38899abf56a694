//! XML escaping for text and attribute values written by the server.

/// Appends `s` escaped for use as element text.
pub fn escape_text_into(s: &str, out: &mut Vec<u8>) {
    escape_attr_into(s, out)
}

/// Appends `s` escaped for use inside a single- or double-quoted attribute value.
pub fn escape_attr_into(s: &str, out: &mut Vec<u8>) {
    let bytes = s.as_bytes();
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
