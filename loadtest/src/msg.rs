//! The load message: a chat message whose body carries the send time
//! (monotonic ns since the run's epoch; sender and receiver share the process
//! clock) and the sender's index, so the receiver measures time to delivery and
//! can credit the sender's window.
//!
//! Body format: `pl <send_ns> <sender_index>[ <padding>]`.

use memchr::memmem::Finder;
use std::io::Write;

/// How JIDs of load users are spelled.
#[derive(Debug, Clone)]
pub struct Naming {
    /// Localpart prefix (`user`).
    pub prefix: String,
    /// Number of user index 0.
    pub first: u32,
    /// Domain.
    pub domain: String,
}

impl Naming {
    /// Localpart of user `idx`.
    pub fn local(&self, idx: u32) -> String {
        format!("{}{}", self.prefix, u64::from(self.first) + u64::from(idx))
    }

    /// Bare JID of user `idx`.
    pub fn bare(&self, idx: u32) -> String {
        format!("{}@{}", self.local(idx), self.domain)
    }
}

/// Append one load message from `from` to `to` sent at `now_ns`.
pub fn write_message(
    out: &mut Vec<u8>,
    naming: &Naming,
    from: u32,
    to: u32,
    now_ns: u64,
    payload: usize,
) {
    // Writing into a Vec cannot fail.
    let _ = write!(
        out,
        "<message to='{}{}@{}' type='chat'><body>pl {} {}",
        naming.prefix,
        u64::from(naming.first) + u64::from(to),
        naming.domain,
        now_ns,
        from
    );
    if payload > 0 {
        out.push(b' ');
        out.resize(out.len() + payload, b'x');
    }
    out.extend_from_slice(b"</body></message>");
}

/// Finds and decodes load bodies.
pub struct BodyParser {
    finder: Finder<'static>,
}

impl Default for BodyParser {
    fn default() -> Self {
        BodyParser {
            finder: Finder::new(b"<body>pl "),
        }
    }
}

impl BodyParser {
    /// `(send_ns, sender)` of a load message, `None` for any other stanza.
    pub fn parse(&self, stanza: &[u8]) -> Option<(u64, u32)> {
        let i = self.finder.find(stanza)? + b"<body>pl ".len();
        let rest = &stanza[i..];
        let (ts, n) = digits(rest)?;
        let rest = rest.get(n + 1..)?;
        let (sender, _) = digits(rest)?;
        Some((ts, u32::try_from(sender).ok()?))
    }
}

/// Leading decimal number and its length.
fn digits(b: &[u8]) -> Option<(u64, usize)> {
    let mut v: u64 = 0;
    let mut n = 0;
    for &c in b {
        if !c.is_ascii_digit() {
            break;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
        n += 1;
    }
    (n > 0).then_some((v, n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_with_and_without_payload() {
        let naming = Naming {
            prefix: "user".into(),
            first: 1,
            domain: "d".into(),
        };
        let p = BodyParser::default();
        for payload in [0, 10] {
            let mut out = Vec::new();
            write_message(&mut out, &naming, 7, 8, 123456789, payload);
            let s = String::from_utf8(out.clone()).expect("utf8");
            assert!(s.starts_with("<message to='user9@d' type='chat'>"), "{s}");
            assert!(s.ends_with("</body></message>"));
            // A server may stamp `from` and reorder attributes: the body is what counts.
            let stamped = s.replace("<message ", "<message from='user8@d/load' ");
            assert_eq!(p.parse(stamped.as_bytes()), Some((123456789, 7)));
        }
        assert_eq!(p.parse(b"<message><body>hello</body></message>"), None);
        assert_eq!(naming.bare(0), "user1@d");
    }
}
