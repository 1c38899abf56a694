//! The `pep` scenario's pure logic: the entity capabilities (XEP-0115) every
//! contact advertises, the stanzas of the setup (roster, subscriptions,
//! presence) and of publishing (XEP-0163), and reading notifications and
//! roster results back.
//!
//! An item carries `<tick xmlns='urn:xmpp:petrel:bench'>K RUN SEQ TS</tick>`:
//! `K` is `b` for a measured item and `w` for a warm-up item, `RUN` tells this
//! run's items from those a server kept from an earlier run, `TS` is the
//! publish time (monotonic ns since the run's epoch, the same process clock
//! the contacts read).

use crate::frame::attr;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use memchr::memmem;
use sha1::{Digest, Sha1};
use std::io::Write;

/// The PEP node published to (also the payload's namespace).
pub const NODE: &str = "urn:xmpp:petrel:bench";
/// The caps `node` attribute (the "software" URI).
pub const CAPS_NODE: &str = "https://petrel.im/petrel-load";
/// The one disco identity of a contact: category, type, name.
const IDENTITY: (&str, &str, &str) = ("client", "pc", "petrel-load");
/// Features a contact advertises (any order; the hash sorts them).
const FEATURES: [&str; 5] = [
    "http://jabber.org/protocol/caps",
    "http://jabber.org/protocol/disco#info",
    "urn:xmpp:ping",
    NODE,
    "urn:xmpp:petrel:bench+notify",
];

/// XEP-0115 §5.1 verification string hash (sha-1, base64) of one identity
/// `(category, type, name)` without xml:lang and `features`, no extended forms.
pub fn caps_ver(identity: (&str, &str, &str), features: &[&str]) -> String {
    let mut f: Vec<&str> = features.to_vec();
    f.sort_unstable();
    f.dedup();
    let mut s = format!("{}/{}//{}<", identity.0, identity.1, identity.2);
    for x in f {
        s.push_str(x);
        s.push('<');
    }
    B64.encode(Sha1::digest(s.as_bytes()))
}

/// The `ver` every contact advertises.
pub fn our_ver() -> String {
    caps_ver(IDENTITY, &FEATURES)
}

/// Append a contact's available presence with its caps.
pub fn write_caps_presence(out: &mut Vec<u8>, ver: &str) {
    // Writing into a Vec cannot fail.
    let _ = write!(
        out,
        "<presence><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='{CAPS_NODE}' ver='{ver}'/></presence>"
    );
}

/// Append a roster request (`id` is [`ROSTER_ID`]).
pub fn write_roster_get(out: &mut Vec<u8>) {
    let _ = write!(
        out,
        "<iq type='get' id='{ROSTER_ID}'><query xmlns='jabber:iq:roster'/></iq>"
    );
}

/// `id` of the roster requests.
pub const ROSTER_ID: &str = "pep-roster";
/// `id` prefix of publish requests (followed by `w` or `b` and the sequence number).
pub const PUBLISH_ID: &str = "pep-pub-";

/// Append a subscription presence (`subscribe`, `subscribed`) to `to`.
pub fn write_subscription(out: &mut Vec<u8>, to: &str, kind: &str) {
    let _ = write!(out, "<presence to='{to}' type='{kind}'/>");
}

/// Append the publish of item `seq` of run `run` stamped `ts` (warm-up when `warm`).
pub fn write_publish(out: &mut Vec<u8>, run: u64, seq: u64, ts: u64, warm: bool, payload: usize) {
    let k = if warm { 'w' } else { 'b' };
    let _ = write!(
        out,
        "<iq type='set' id='{PUBLISH_ID}{k}{seq}'><pubsub xmlns='http://jabber.org/protocol/pubsub'>\
         <publish node='{NODE}'><item id='{run}-{k}{seq}'><tick xmlns='{NODE}'>{k} {run} {seq} {ts}"
    );
    if payload > 0 {
        out.push(b' ');
        out.resize(out.len() + payload, b'x');
    }
    out.extend_from_slice(b"</tick></item></publish></pubsub></iq>");
}

/// Whether an iq `id` answers a publish.
pub fn is_publish_reply(id: &[u8]) -> bool {
    id.starts_with(PUBLISH_ID.as_bytes())
}

/// A notification's item as a contact reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tick {
    /// A warm-up item (not measured).
    pub warm: bool,
    /// The run that published it.
    pub run: u64,
    /// Publisher's sequence number (measured and warm-up items count separately).
    pub seq: u64,
    /// Publish time.
    pub ts: u64,
}

/// The item of a PEP notification (`<event xmlns='...pubsub#event'>` with our tick), if it is one.
pub fn parse_notification(msg: &[u8]) -> Option<Tick> {
    memmem::find(msg, b"http://jabber.org/protocol/pubsub#event")?;
    let at = memmem::find(msg, b"<tick")?;
    let gt = at + memchr::memchr(b'>', &msg[at..])?;
    let text = &msg[gt + 1..];
    let warm = match text.get(..2)? {
        b"w " => true,
        b"b " => false,
        _ => return None,
    };
    let mut nums = text[2..].split(|&c| c == b' ' || c == b'<');
    let mut next = || -> Option<u64> { std::str::from_utf8(nums.next()?).ok()?.parse().ok() };
    Some(Tick {
        warm,
        run: next()?,
        seq: next()?,
        ts: next()?,
    })
}

/// Whether an iq get asks for disco#info.
pub fn is_disco_info_get(iq: &[u8]) -> bool {
    attr(iq, b"type") == Some(b"get")
        && memmem::find(iq, b"http://jabber.org/protocol/disco#info").is_some()
}

/// Append the answer to a disco#info query `iq`, echoing its `node` (a caps node#ver).
pub fn write_disco_reply(out: &mut Vec<u8>, iq: &[u8]) {
    let id = attr(iq, b"id").unwrap_or_default();
    out.extend_from_slice(b"<iq type='result' id='");
    out.extend_from_slice(id);
    if let Some(from) = attr(iq, b"from") {
        out.extend_from_slice(b"' to='");
        out.extend_from_slice(from);
    }
    out.extend_from_slice(b"'><query xmlns='http://jabber.org/protocol/disco#info'");
    let node = memmem::find(iq, b"<query").and_then(|i| attr(&iq[i..], b"node"));
    if let Some(n) = node {
        out.extend_from_slice(b" node='");
        out.extend_from_slice(n);
        out.push(b'\'');
    }
    let (cat, ty, name) = IDENTITY;
    let _ = write!(
        out,
        "><identity category='{cat}' type='{ty}' name='{name}'/>"
    );
    for f in FEATURES {
        let _ = write!(out, "<feature var='{f}'/>");
    }
    out.extend_from_slice(b"</query></iq>");
}

/// Append an empty result to a server's iq set (a roster push).
pub fn write_empty_result(out: &mut Vec<u8>, iq: &[u8]) {
    out.extend_from_slice(b"<iq type='result' id='");
    out.extend_from_slice(attr(iq, b"id").unwrap_or_default());
    if let Some(from) = attr(iq, b"from") {
        out.extend_from_slice(b"' to='");
        out.extend_from_slice(from);
    }
    out.extend_from_slice(b"'/>");
}

/// The (jid, subscription) of every `<item/>` of a roster result or push.
pub fn roster_items(iq: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
    memmem::find_iter(iq, b"<item").filter_map(move |i| {
        let el = &iq[i..];
        if !matches!(el.get(5), Some(b' ' | b'\t' | b'\r' | b'\n' | b'/' | b'>')) {
            return None; // <items ...>
        }
        let jid = attr(el, b"jid")?;
        Some((jid, attr(el, b"subscription").unwrap_or(b"none")))
    })
}

/// The bare part of a JID.
pub fn bare(jid: &[u8]) -> &[u8] {
    match memchr::memchr(b'/', jid) {
        Some(i) => &jid[..i],
        None => jid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_ver_matches_xep_0115_simple_example() {
        // XEP-0115 §5.2.
        let v = caps_ver(
            ("client", "pc", "Exodus 0.9.1"),
            &[
                "http://jabber.org/protocol/disco#info",
                "http://jabber.org/protocol/disco#items",
                "http://jabber.org/protocol/muc",
                "http://jabber.org/protocol/caps",
            ],
        );
        assert_eq!(v, "QgayPKawpkPSDYmwT/WM94uAlu0=");
        let mut b = Vec::new();
        write_caps_presence(&mut b, &our_ver());
        let s = String::from_utf8(b).expect("utf8");
        assert!(s.contains(&format!("ver='{}'", our_ver())), "{s}");
    }

    #[test]
    fn disco_reply_echoes_id_sender_and_node() {
        let q = format!(
            "<iq type='get' from='user1@localhost' to='user2@localhost/load' id='disco'>\
             <query xmlns='http://jabber.org/protocol/disco#info' node='{CAPS_NODE}#{}'/></iq>",
            our_ver()
        );
        assert!(is_disco_info_get(q.as_bytes()));
        let mut b = Vec::new();
        write_disco_reply(&mut b, q.as_bytes());
        let s = String::from_utf8(b).expect("utf8");
        assert!(
            s.starts_with("<iq type='result' id='disco' to='user1@localhost'>"),
            "{s}"
        );
        assert!(
            s.contains(&format!("node='{CAPS_NODE}#{}'", our_ver())),
            "{s}"
        );
        assert!(
            s.contains("<feature var='urn:xmpp:petrel:bench+notify'/>"),
            "{s}"
        );
        // The features answered are the ones hashed.
        let n = s.matches("<feature ").count();
        assert_eq!(n, FEATURES.len());
        assert!(!is_disco_info_get(
            b"<iq type='result'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>"
        ));
    }

    #[test]
    fn published_item_comes_back_as_a_tick() {
        let mut b = Vec::new();
        write_publish(&mut b, 77, 5, 123456, false, 3);
        let s = String::from_utf8(b).expect("utf8");
        assert!(s.starts_with("<iq type='set' id='pep-pub-b5'>"), "{s}");
        assert!(is_publish_reply(b"pep-pub-b5"));
        // What a server sends a contact (re-serialised with other quotes, extra attributes).
        let item = &s[s.find("<item ").expect("item")..s.find("</publish>").expect("end")];
        let note = format!(
            "<message from=\"user1@localhost\" type=\"headline\"><event xmlns=\"http://jabber.org/protocol/pubsub#event\">\
             <items node=\"{NODE}\">{item}</items></event></message>"
        );
        let t = parse_notification(note.as_bytes());
        assert_eq!(
            t,
            Some(Tick {
                warm: false,
                run: 77,
                seq: 5,
                ts: 123456
            })
        );
        let mut w = Vec::new();
        write_publish(&mut w, 77, 0, 9, true, 0);
        let ws = String::from_utf8(w).expect("utf8").replace(
            "<iq type='set' id='pep-pub-w0'><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish",
            "<message><event xmlns='http://jabber.org/protocol/pubsub#event'><items",
        );
        assert_eq!(
            parse_notification(ws.as_bytes()).map(|t| t.warm),
            Some(true)
        );
        assert_eq!(
            parse_notification(b"<message><body>b 1 2 3</body></message>"),
            None
        );
    }

    #[test]
    fn roster_items_are_read() {
        let r = b"<iq type='result' id='pep-roster'><query xmlns='jabber:iq:roster'>\
            <item jid='user2@localhost' subscription='both'/>\
            <item subscription=\"to\" jid=\"user3@localhost\" ask='subscribe'><group>x</group></item>\
            <item jid='user4@localhost'/></query></iq>";
        let v: Vec<(&[u8], &[u8])> = roster_items(r).collect();
        assert_eq!(
            v,
            [
                (&b"user2@localhost"[..], &b"both"[..]),
                (&b"user3@localhost"[..], &b"to"[..]),
                (&b"user4@localhost"[..], &b"none"[..]),
            ]
        );
        assert_eq!(bare(b"a@b/c"), b"a@b");
        let mut b = Vec::new();
        write_empty_result(&mut b, b"<iq type='set' id='push1'><query/></iq>");
        assert_eq!(b, b"<iq type='result' id='push1'/>");
    }
}
