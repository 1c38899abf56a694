//! Accounts deleted a moment ago, on their home shard: a connection that authenticated before the
//! deletion may still ask to bind (its SASL exchange read the account, the deletion's kick found no
//! session to close). The session manager refuses that bind.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::jid::BareJid;

/// How long a deletion is remembered: longer than any connection may sit between authentication
/// and bind (the stream's authentication deadline).
const KEEP: Duration = Duration::from_secs(600);

/// At most this many deletions are remembered (the oldest go first): a mass deletion must not
/// grow the table without bound.
const MAX: usize = 65_536;

/// Deletion times of recently removed accounts.
#[derive(Default)]
pub struct Removed {
    at: HashMap<BareJid, Instant>,
    /// The same, oldest first (times only grow on one shard): what expires or overflows goes.
    order: VecDeque<(BareJid, Instant)>,
}

impl Removed {
    /// Records that `jid` was deleted `now`.
    pub fn note(&mut self, jid: BareJid, now: Instant) {
        while let Some((old, t)) = self.order.front() {
            if self.order.len() < MAX && now.duration_since(*t) < KEEP {
                break;
            }
            // A later deletion of the same name has its own, newer entry.
            if self.at.get(old) == Some(t) {
                self.at.remove(old);
            }
            self.order.pop_front();
        }
        self.at.insert(jid.clone(), now);
        self.order.push_back((jid, now));
    }

    /// Whether `jid` was deleted at or after `authenticated` (a login that began then read an
    /// account that is gone).
    pub fn since(&self, jid: &BareJid, authenticated: Instant) -> bool {
        self.at.get(jid).is_some_and(|t| *t >= authenticated)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_login_older_than_the_deletion_is_refused_a_newer_one_not() {
        let jid = BareJid::parse("a@x").unwrap_or_else(|e| panic!("{e}"));
        let mut r = Removed::default();
        let before = Instant::now();
        let at = before + Duration::from_millis(5);
        r.note(jid.clone(), at);
        assert!(r.since(&jid, before));
        assert!(!r.since(&jid, at + Duration::from_millis(1)));
        let other = BareJid::parse("b@x").unwrap_or_else(|e| panic!("{e}"));
        assert!(!r.since(&other, before));
    }

    #[test]
    fn bounded() {
        let mut r = Removed::default();
        let now = Instant::now();
        for i in 0..MAX + 10 {
            let jid = BareJid::parse(&format!("u{i}@x")).unwrap_or_else(|e| panic!("{e}"));
            r.note(jid, now + Duration::from_micros(i as u64));
        }
        assert_eq!((r.at.len(), r.order.len()), (MAX, MAX));
    }
}
