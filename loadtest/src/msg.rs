//! The load message: a chat message whose body carries the send time
//! (monotonic ns since the run's epoch; sender and receiver share the process
//! clock) and the sender's index, so the receiver measures time to delivery and
//! can credit the sender's window. The sender's sequence number makes every
//! message unique, so the soak can count each one (acked, delivered, twice).
//!
//! Body format: `pl <send_ns> <sender_index> <seq>[ <padding>]`.

use crate::across;
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
    /// Two servers (`--domain-b`): odd user indices live here (see [`crate::across`]).
    pub domain_b: Option<String>,
    /// `muc`: the MUC service; a message's `to` is then a room number (`room{to}@{muc}`).
    pub muc: Option<String>,
    /// `--to-full-jid`: the recipients' resource; a chat message's `to` is then their full JID.
    pub resource: Option<String>,
    /// `--mixed-jids`: only messages with an odd sequence number go to the full JID, the others to
    /// the bare one.
    pub mixed: bool,
}

impl Naming {
    /// Whether message `m` is addressed to its recipient's full JID.
    pub fn to_full(&self, m: &Msg) -> bool {
        self.resource.is_some() && (!self.mixed || m.seq % 2 == 1)
    }
}

impl Naming {
    /// Localpart of user `idx`.
    pub fn local(&self, idx: u32) -> String {
        format!(
            "{}{}",
            self.prefix,
            u64::from(self.first) + u64::from(self.number(idx))
        )
    }

    /// Bare JID of user `idx`.
    pub fn bare(&self, idx: u32) -> String {
        format!("{}@{}", self.local(idx), across::domain_of(self, idx))
    }

    /// The number (from `first`) in user `idx`'s localpart: both users of a pair share one
    /// with two servers.
    fn number(&self, idx: u32) -> u32 {
        match self.domain_b {
            Some(_) => across::number(idx),
            None => idx,
        }
    }

    /// The user index of a localpart spelled by [`Naming::local`] (`None` for any other name).
    pub fn index_of(&self, local: &[u8]) -> Option<u32> {
        let digits = local.strip_prefix(self.prefix.as_bytes())?;
        if digits.first() == Some(&b'0') && digits.len() > 1 {
            return None; // not how local() spells a number
        }
        let n: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
        u32::try_from(n.checked_sub(u64::from(self.first))?).ok()
    }
}

/// One load message: who sent it to whom, its sender's sequence number and first send time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Msg {
    /// Sender's user index.
    pub from: u32,
    /// Recipient's user index.
    pub to: u32,
    /// Sender's sequence number (unique per sender).
    pub seq: u64,
    /// Monotonic ns since the run's epoch when first sent (a resend keeps it).
    pub ts: u64,
}

/// A delivered load message as its recipient reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Body {
    /// First send time.
    pub ts: u64,
    /// Sender's user index.
    pub from: u32,
    /// Sender's sequence number.
    pub seq: u64,
}

/// Append `m` as a chat message (groupchat to room `m.to` with a MUC service) with `payload`
/// extra body bytes.
pub fn write_message(out: &mut Vec<u8>, naming: &Naming, m: &Msg, payload: usize) {
    let full = naming.to_full(m);
    // Writing into a Vec cannot fail.
    let _ = match &naming.muc {
        Some(service) => write!(
            out,
            "<message to='room{}@{service}' type='groupchat'><body>pl {} {} {}",
            m.to, m.ts, m.from, m.seq
        ),
        None => write!(
            out,
            "<message to='{}{}@{}{}{}' type='chat'><body>pl {} {} {}",
            naming.prefix,
            u64::from(naming.first) + u64::from(naming.number(m.to)),
            across::domain_of(naming, m.to),
            if full { "/" } else { "" },
            naming.resource.as_deref().filter(|_| full).unwrap_or(""),
            m.ts,
            m.from,
            m.seq
        ),
    };
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
    /// The body of a load message, `None` for any other stanza.
    pub fn parse(&self, stanza: &[u8]) -> Option<Body> {
        let i = self.finder.find(stanza)? + b"<body>pl ".len();
        let rest = &stanza[i..];
        let (ts, n) = digits(rest)?;
        let rest = rest.get(n + 1..)?;
        let (from, n) = digits(rest)?;
        let rest = rest.get(n + 1..)?;
        let (seq, _) = digits(rest)?;
        Some(Body {
            ts,
            from: u32::try_from(from).ok()?,
            seq,
        })
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
            domain_b: None,
            muc: None,
            resource: None,
            mixed: false,
        };
        let p = BodyParser::default();
        let m = Msg {
            from: 7,
            to: 8,
            seq: 42,
            ts: 123456789,
        };
        for payload in [0, 10] {
            let mut out = Vec::new();
            write_message(&mut out, &naming, &m, payload);
            let s = String::from_utf8(out.clone()).expect("utf8");
            assert!(s.starts_with("<message to='user9@d' type='chat'>"), "{s}");
            assert!(s.ends_with("</body></message>"));
            // A server may stamp `from` and reorder attributes: the body is what counts.
            let stamped = s.replace("<message ", "<message from='user8@d/load' ");
            let b = Body {
                ts: 123456789,
                from: 7,
                seq: 42,
            };
            assert_eq!(p.parse(stamped.as_bytes()), Some(b));
        }
        assert_eq!(p.parse(b"<message><body>hello</body></message>"), None);
        let full = Naming {
            resource: Some("r".into()),
            ..naming.clone()
        };
        let mut out = Vec::new();
        write_message(&mut out, &full, &m, 0);
        assert!(out.starts_with(b"<message to='user9@d/r' type='chat'>"));
        // Mixed: odd sequence numbers to the full JID, even ones to the bare JID.
        let mixed = Naming {
            mixed: true,
            ..full.clone()
        };
        for (seq, to) in [(42, "user9@d'"), (43, "user9@d/r'")] {
            let mut out = Vec::new();
            write_message(&mut out, &mixed, &Msg { seq, ..m }, 0);
            let s = String::from_utf8(out).expect("utf8");
            assert!(s.starts_with(&format!("<message to='{to}")), "{s}");
        }
        assert_eq!(naming.bare(0), "user1@d");
        assert_eq!(naming.index_of(naming.local(41).as_bytes()), Some(41));
        assert_eq!(naming.index_of(b"user0"), None); // below --first
        assert_eq!(naming.index_of(b"user01"), None);
        assert_eq!(naming.index_of(b"bob3"), None);
        assert_eq!(naming.index_of(b"user"), None);
    }

    #[test]
    fn groupchat_to_a_room() {
        let naming = Naming {
            prefix: "user".into(),
            first: 1,
            domain: "d".into(),
            domain_b: None,
            muc: Some("conference.d".into()),
            resource: None,
            mixed: false,
        };
        let m = Msg {
            from: 3,
            to: 2,
            seq: 5,
            ts: 99,
        };
        let mut out = Vec::new();
        write_message(&mut out, &naming, &m, 0);
        let s = String::from_utf8(out).expect("utf8");
        assert_eq!(
            s,
            "<message to='room2@conference.d' type='groupchat'><body>pl 99 3 5</body></message>"
        );
        // The room reflects it from room/nick: the body still names the sender.
        let reflected = s.replace("to='room2@conference.d'", "from='room2@conference.d/user4'");
        let b = BodyParser::default().parse(reflected.as_bytes());
        assert_eq!(
            b,
            Some(Body {
                ts: 99,
                from: 3,
                seq: 5
            })
        );
    }
}
