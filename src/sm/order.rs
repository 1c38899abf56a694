//! RFC 6120 §10.1: a client's stanzas to another user of the server are delivered in the order
//! sent, "treating stanzas addressed to the bare JID and the full JID of the intended recipient as
//! equivalent". A stanza to a bare JID goes through the recipient's home shard (which picks the
//! resources); one to a full JID may go straight to the session: through the local fast path when
//! the session lives on the sender's shard, or from the location cache. Straight is shorter, so a
//! full-JID stanza sent right after a bare-JID one could arrive first.
//!
//! So a shard remembers, per recipient, when it last sent a stanza its way through the home shard,
//! and while that is recent it sends full-JID stanzas to that recipient through the home shard too,
//! behind it (the same rings, in order). Time is counted in epochs of a second
//! ([`HomePaths::tick`], from the runtime's one-second timer), not read per stanza. The assumption:
//! a stanza crosses two rings in less than [`WINDOW`] - 1 epochs; the mesh's bounded outboxes and
//! backpressure keep that to milliseconds in a release build, seconds in an overloaded debug one.
//! The other way round (a full-JID stanza sent straight, then one through the home shard, from
//! three shards up) is kept by fences (`shard::fence`), without a time assumption.
//! Not done: this direction without a time assumption either (after a stanza goes home, forget the locations of
//! the recipient's sessions, so the next full-JID stanza asks through the home shard and the later
//! ones wait for the answer; that needs the local fast path to take the location cache's way too).
//!
//! Bounded: at most [`MAX_USERS`] recipients; when full, entries out of the window are dropped, and
//! if that frees nothing every full-JID stanza takes the home path for a window (the safe side).

use ahash::HashMap;

/// Epochs (seconds) during which a recipient's full-JID stanzas follow the home path after one went
/// that way: 29-30 seconds. Long on purpose: a debug build with four shards on two cores under a
/// burst of 10 000 messages kept stanzas in flight for over two seconds (3 s lost the order in two
/// runs of three; 30 s in none).
pub const WINDOW: u32 = 30;

/// Recipients one shard remembers.
pub const MAX_USERS: usize = 65_536;

/// Which recipients this shard recently sent stanzas to through their home shard (sans-IO).
#[derive(Default)]
pub struct HomePaths {
    /// Recipient (hash of the bare JID) -> the epoch of its last stanza through the home shard.
    /// A collision only sends some stanzas the longer way.
    last: HashMap<u64, u32>,
    /// The current epoch.
    epoch: u32,
    /// Until this epoch every recipient counts as recent (the map was full).
    all_until: u32,
}

impl HomePaths {
    /// A stanza to the recipient with hash `user` went through its home shard now.
    pub fn sent_home(&mut self, user: u64) {
        if self.last.len() >= MAX_USERS && !self.last.contains_key(&user) {
            self.forget_old();
            if self.last.len() >= MAX_USERS {
                self.all_until = self.epoch + WINDOW;
                return;
            }
        }
        self.last.insert(user, self.epoch);
    }

    /// Whether a stanza to the recipient with hash `user` must take the home path, behind one
    /// that went that way lately.
    pub fn recent(&self, user: u64) -> bool {
        if self.is_idle() {
            return false;
        }
        self.all_until > self.epoch
            || self
                .last
                .get(&user)
                .is_some_and(|&e| e + WINDOW > self.epoch)
    }

    /// One second passed.
    pub fn tick(&mut self) {
        self.epoch += 1;
        if self.all_until <= self.epoch {
            self.all_until = 0;
        }
        if self.epoch % WINDOW == 0 {
            self.forget_old();
        }
    }

    fn forget_old(&mut self) {
        let epoch = self.epoch;
        self.last.retain(|_, e| *e + WINDOW > epoch);
    }

    /// True when no recipient counts as recent (nothing went home lately): the route skips the
    /// check, and the hash it needs.
    pub fn is_idle(&self) -> bool {
        self.last.is_empty() && self.all_until == 0
    }

    /// Recipients remembered.
    pub fn len(&self) -> usize {
        self.last.len()
    }

    /// True when no recipient is remembered.
    pub fn is_empty(&self) -> bool {
        self.last.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_for_the_window_then_forgotten() {
        let mut p = HomePaths::default();
        assert!(!p.recent(1));
        p.sent_home(1);
        for _ in 0..WINDOW - 1 {
            assert!(p.recent(1));
            assert!(!p.recent(2));
            p.tick();
        }
        assert!(p.recent(1), "a full window after the last one");
        p.tick();
        assert!(!p.recent(1));
        for _ in 0..WINDOW {
            p.tick();
        }
        assert!(p.is_empty(), "old entries are dropped");
    }

    #[test]
    fn a_full_map_makes_everyone_recent_for_a_window() {
        let mut p = HomePaths::default();
        for u in 0..MAX_USERS as u64 {
            p.sent_home(u);
        }
        p.sent_home(u64::MAX);
        assert_eq!(p.len(), MAX_USERS);
        assert!(
            p.recent(u64::MAX - 1),
            "never sent home, but the map was full"
        );
        for _ in 0..WINDOW {
            p.tick();
        }
        assert!(!p.recent(u64::MAX - 1));
        // Old entries make room again.
        p.sent_home(u64::MAX);
        assert!(p.recent(u64::MAX));
        assert_eq!(p.len(), 1);
    }
}
