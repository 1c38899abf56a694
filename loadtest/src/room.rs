//! The `muc` scenario's pure logic: which user sits in which room, the stanzas
//! an occupant writes, and the accounting that checks every groupchat message
//! reached all K occupants of its room exactly once.

use ahash::HashMap;
use serde::Serialize;
use std::io::Write;

/// XEP-0045 room layout: room r holds users r*K .. r*K+K-1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Number of rooms (R).
    pub rooms: u32,
    /// Occupants per room (K).
    pub occupants: u32,
    /// The MUC service host (`conference.localhost`).
    pub service: String,
}

impl Layout {
    /// Users needed: R × K (`None` on overflow).
    pub fn users(&self) -> Option<u32> {
        self.rooms.checked_mul(self.occupants)
    }

    /// The room of user `u`.
    pub fn room_of(&self, u: u32) -> u32 {
        u / self.occupants.max(1)
    }

    /// Whether `u` is its room's first user (the one expected to create it).
    pub fn is_owner(&self, u: u32) -> bool {
        u.is_multiple_of(self.occupants.max(1))
    }

    /// Append the join presence of `nick` into room `r`, asking for no history.
    pub fn write_join(&self, out: &mut Vec<u8>, r: u32, nick: &str) {
        // Writing into a Vec cannot fail.
        let _ = write!(
            out,
            "<presence to='room{r}@{}/{nick}'><x xmlns='http://jabber.org/protocol/muc'>\
             <history maxstanzas='0'/></x></presence>",
            self.service
        );
    }

    /// Append the owner's instant-room form (accept the default configuration, unlock the room).
    pub fn write_instant_form(&self, out: &mut Vec<u8>, r: u32) {
        let _ = write!(
            out,
            "<iq type='set' id='{CREATE_ID}{r}' to='room{r}@{}'>\
             <query xmlns='http://jabber.org/protocol/muc#owner'>\
             <x xmlns='jabber:x:data' type='submit'/></query></iq>",
            self.service
        );
    }

    /// The room JID and nick of a `from` attribute when it is an occupant of this service's rooms.
    pub fn occupant<'a>(&self, from: &'a [u8]) -> Option<(u32, &'a [u8])> {
        let at = memchr::memchr(b'@', from)?;
        let slash = at + memchr::memchr(b'/', &from[at..])?;
        if &from[at + 1..slash] != self.service.as_bytes() {
            return None;
        }
        let r = std::str::from_utf8(from[..at].strip_prefix(b"room")?)
            .ok()?
            .parse()
            .ok()?;
        Some((r, &from[slash + 1..]))
    }
}

/// `id` prefix of the instant-room form (followed by the room number).
pub const CREATE_ID: &str = "muc-create-";

/// The room number an iq reply to [`Layout::write_instant_form`] is about.
pub fn create_reply_room(id: &[u8]) -> Option<u32> {
    std::str::from_utf8(id.strip_prefix(CREATE_ID.as_bytes())?)
        .ok()?
        .parse()
        .ok()
}

/// Status codes in a MUC presence (`<status code='110'/>` and the like).
pub fn status_codes(el: &[u8]) -> impl Iterator<Item = u16> + '_ {
    memchr::memmem::find_iter(el, b"<status code=").filter_map(move |i| {
        let rest = el.get(i + 14..)?;
        let end = rest.iter().position(|c| !c.is_ascii_digit())?;
        std::str::from_utf8(&rest[..end]).ok()?.parse().ok()
    })
}

/// Deliveries seen on one core, per message (sender, sequence number).
#[derive(Debug, Default, Clone)]
pub struct Tally {
    counts: HashMap<(u32, u64), u32>,
    /// Messages each sender created (sequence numbers 0..n), filled at the end.
    pub sent: HashMap<u32, u64>,
    /// Deliveries from a sender in another room than the recipient's.
    pub misrouted: u64,
}

impl Tally {
    /// One occupant received message `seq` of `from`.
    pub fn delivered(&mut self, from: u32, seq: u64) {
        *self.counts.entry((from, seq)).or_default() += 1;
    }

    /// Add another core's tally.
    pub fn merge(&mut self, other: Tally) {
        for (k, n) in other.counts {
            *self.counts.entry(k).or_default() += n;
        }
        for (u, n) in other.sent {
            *self.sent.entry(u).or_default() += n;
        }
        self.misrouted += other.misrouted;
    }

    /// Compare the deliveries with what `occupants` recipients of every sent message make.
    pub fn verdict(&self, occupants: u32) -> MucVerdict {
        let k = u64::from(occupants);
        let mut v = MucVerdict {
            misrouted: self.misrouted,
            ..MucVerdict::default()
        };
        for (&u, &n) in &self.sent {
            v.messages += n;
            for seq in 0..n {
                let got = self.counts.get(&(u, seq)).copied().map_or(0, u64::from);
                v.deliveries += got;
                v.lost += k.saturating_sub(got);
                v.duplicated += got.saturating_sub(k);
                if got < k {
                    v.incomplete += 1;
                }
            }
        }
        v.expected = v.messages * k;
        // Deliveries of messages nobody sent (a sequence number beyond the sender's count).
        let total: u64 = self.counts.values().map(|&n| u64::from(n)).sum();
        v.unknown = total - v.deliveries;
        v.deliveries = total;
        v
    }
}

/// The accounting of a `muc` run.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct MucVerdict {
    /// Groupchat messages sent.
    pub messages: u64,
    /// Occupant deliveries expected (messages × K).
    pub expected: u64,
    /// Occupant deliveries received.
    pub deliveries: u64,
    /// Expected deliveries that never came: **failure**.
    pub lost: u64,
    /// Messages that missed at least one occupant.
    pub incomplete: u64,
    /// Deliveries beyond K of one message: **failure**.
    pub duplicated: u64,
    /// Deliveries from a sender of another room: **failure**.
    pub misrouted: u64,
    /// Deliveries of messages never sent: **failure**.
    pub unknown: u64,
}

impl MucVerdict {
    /// `WHAT n of m expected (r/s), LOST l (i UNITS incomplete), DUPLICATED d, unknown u`.
    pub fn line(&self, what: &str, per_s: f64, units: &str) -> String {
        format!(
            "{what} {} of {} expected ({per_s:.0}/s), LOST {} ({} {units} incomplete), DUPLICATED {}, unknown {}",
            self.deliveries, self.expected, self.lost, self.incomplete, self.duplicated, self.unknown
        )
    }

    /// Whether every message reached each of its room's occupants exactly once.
    pub fn ok(&self) -> bool {
        self.lost == 0 && self.duplicated == 0 && self.misrouted == 0 && self.unknown == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> Layout {
        Layout {
            rooms: 3,
            occupants: 4,
            service: "conference.localhost".into(),
        }
    }

    #[test]
    fn users_are_partitioned_into_rooms() {
        let l = layout();
        assert_eq!(l.users(), Some(12));
        let rooms: Vec<u32> = (0..12).map(|u| l.room_of(u)).collect();
        assert_eq!(rooms, [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2]);
        let owners: Vec<u32> = (0..12).filter(|&u| l.is_owner(u)).collect();
        assert_eq!(owners, [0, 4, 8]);
        for r in 0..3 {
            assert!((r * 4..r * 4 + 4).all(|u| l.room_of(u) == r));
        }
        let big = Layout {
            rooms: u32::MAX,
            occupants: 2,
            service: String::new(),
        };
        assert_eq!(big.users(), None);
    }

    #[test]
    fn stanzas_and_occupant_jids() {
        let l = layout();
        let mut b = Vec::new();
        l.write_join(&mut b, 2, "user9");
        let s = String::from_utf8(b).expect("utf8");
        assert!(
            s.starts_with("<presence to='room2@conference.localhost/user9'>"),
            "{s}"
        );
        assert!(s.contains("<history maxstanzas='0'/>"), "{s}");
        let mut b = Vec::new();
        l.write_instant_form(&mut b, 1);
        let s = String::from_utf8(b).expect("utf8");
        assert!(s.contains("id='muc-create-1' to='room1@conference.localhost'"));
        assert!(s.contains("type='submit'"));
        assert_eq!(create_reply_room(b"muc-create-17"), Some(17));
        assert_eq!(create_reply_room(b"bind1"), None);
        assert_eq!(
            l.occupant(b"room5@conference.localhost/user3"),
            Some((5, &b"user3"[..]))
        );
        assert_eq!(l.occupant(b"room5@conference.localhost"), None);
        assert_eq!(l.occupant(b"room5@localhost/user3"), None);
        assert_eq!(l.occupant(b"user1@localhost/load"), None);
    }

    #[test]
    fn status_codes_are_read() {
        let el = b"<presence from='r@c/n'><x xmlns='http://jabber.org/protocol/muc#user'>\
            <item affiliation='owner' role='moderator'/><status code='110'/><status code=\"201\"/></x></presence>";
        assert_eq!(status_codes(el).collect::<Vec<_>>(), [110, 201]);
        assert_eq!(status_codes(b"<presence/>").count(), 0);
    }

    #[test]
    fn every_message_must_reach_every_occupant_once() {
        // Two cores' worth of deliveries for a room of 3: sender 0 sent 2, sender 1 sent 1.
        let mut a = Tally::default();
        let mut b = Tally::default();
        for _ in 0..2 {
            a.delivered(0, 0);
        }
        b.delivered(0, 0);
        a.delivered(0, 1); // message (0, 1) reached only 2 of 3
        b.delivered(0, 1);
        for _ in 0..4 {
            b.delivered(1, 0); // one too many
        }
        b.delivered(1, 9); // never sent
        a.sent.insert(0, 2);
        b.sent.insert(1, 1);
        b.misrouted = 1;
        a.merge(b);
        let v = a.verdict(3);
        assert_eq!(v.messages, 3);
        assert_eq!(v.expected, 9);
        assert_eq!(v.deliveries, 10);
        assert_eq!(v.lost, 1);
        assert_eq!(v.incomplete, 1);
        assert_eq!(v.duplicated, 1);
        assert_eq!(v.unknown, 1);
        assert_eq!(v.misrouted, 1);
        assert!(!v.ok());

        let mut good = Tally::default();
        good.sent.insert(4, 2);
        for seq in 0..2 {
            for _ in 0..3 {
                good.delivered(4, seq);
            }
        }
        let v = good.verdict(3);
        assert_eq!((v.expected, v.deliveries, v.lost), (6, 6, 0));
        assert!(v.ok());
    }
}
