//! Where the sessions of other shards' users live, as one sender's shard has learnt it: the
//! session manager's location cache, sans-IO.
//!
//! A message to a full JID goes sender's shard -> recipient's home shard -> connection's shard:
//! with N shards that is almost two ring crossings per message, each a cache miss on everything
//! the stanza carries. Once a shard knows where a full JID's session lives, its messages go
//! straight there (one crossing, none on the same shard), skipping the home shard, which only
//! passes messages to a bound full JID through (RFC 6121 §8.5.3.1; home handlers act on presence,
//! roster pushes and bare-JID messages).
//!
//! Order is the hazard: a message sent straight could overtake one still on the home path. So a
//! shard learns a location only from the recipient's own shard, in answer to a message that asked
//! on its way (`Acc::locate_for`): the answer leaves after that message entered the connection's
//! mailbox, and the messages sent meanwhile wait here ([`Entry::Asking`]) until it arrives, then go
//! straight, behind it.
//!
//! Leaving is ordered the same way. When the session ends, or is about to move (XEP-0198
//! resumption), its home shard tells every shard that learnt its location ([`Locations::forget`]).
//! Each sends a drain behind what it sent straight; the session's shard passes it on to the home
//! shard behind whatever it re-routed, and the home shard answers it. Until the answer, stanzas to
//! that JID wait; then they go through the home shard, behind everything sent straight. A session
//! about to move waits for every drain before it is asked to hand over (`sm::after_drain`), so what
//! was sent straight is in its buffer when it does.
//!
//! Bounded: at most [`MAX_ENTRIES`] recipients per shard (past that, new ones go through their
//! home shard), at most [`MAX_HELD`] stanzas waiting per recipient and [`MAX_HELD_TOTAL`] per
//! shard (past either, a recipient's waiting stanzas and its later ones go through the home shard,
//! behind the one that asked). A full cache forgets nothing to make room: leaving the straight
//! path takes a drain (below), so entries for live sessions leave only when their session ends or
//! moves; those that say "no session to go straight to" go after [`HOME_FOR`] seconds.

use std::collections::VecDeque;

use ahash::HashMap;

use crate::hooks::Acc;
use crate::jid::FullJid;
use crate::shard::{Ask, SessionRef, ShardId};

/// Recipients one shard keeps a location for (about 100 bytes each with their map slot).
pub const MAX_ENTRIES: usize = 65_536;

/// Seconds after which an entry saying "no session to go straight to" is dropped (see
/// [`Locations::tick`]).
pub const HOME_FOR: u32 = 4;

/// Stanzas to one recipient that may wait for the answer to the asking one.
pub const MAX_HELD: usize = 256;

/// Stanzas that may wait on one shard, all recipients together.
pub const MAX_HELD_TOTAL: usize = 16_384;

/// Stanzas sent through the home shard before a recipient with no session to go straight to is
/// asked about again (it may have bound one since).
pub const ASK_AGAIN_AFTER: u16 = 64;

/// What one shard knows of one recipient.
#[derive(Debug)]
enum Entry {
    /// The session lives there: stanzas go straight to it.
    At(SessionRef),
    /// A stanza went through the home shard asking; the later ones wait here for the answer.
    /// `forgotten`: the home shard said meanwhile that a session of this JID ended, so the
    /// answer may name a session that is gone.
    Asking {
        id: u32,
        held: VecDeque<Acc>,
        forgotten: bool,
    },
    /// No session to go straight to (none bound, on another node, or waiting grew too long):
    /// through the home shard for `left` more stanzas, then ask again; forgotten a few seconds
    /// after epoch `since` ([`Locations::tick`]) whatever comes, so the JIDs of sessions long gone
    /// do not fill the cache.
    Home { left: u16, since: u32 },
}

/// What to do with one stanza to a full JID whose home shard is another one.
#[derive(Debug)]
pub enum Step {
    /// Straight to the session.
    Direct(SessionRef, Acc),
    /// Through the home shard (asking where the session lives, when `locate_for` is set).
    Home(Acc),
    /// Kept here until the answer to the asking stanza.
    Held,
    /// Waiting grew past [`MAX_HELD`]: these (the held ones, then this one) go through the home
    /// shard, in order, behind the asking one.
    Release(Vec<Acc>),
}

/// Where the answer sends the stanzas that waited for it.
#[derive(Debug, PartialEq, Eq)]
pub enum Then {
    /// Straight to this session (behind the asking stanza, which it has taken).
    Direct(SessionRef),
    /// Through the home shard (behind the asking stanza).
    Home,
}

/// One shard's location cache.
#[derive(Default)]
pub struct Locations {
    entries: HashMap<FullJid, Entry>,
    /// The last question's number.
    last_ask: u32,
    /// Stanzas waiting, all entries together.
    held: usize,
    /// Seconds counted by [`Locations::tick`].
    epoch: u32,
    /// Stanzas waiting, per recipient (the [`crate::shard::home_hash`] of its bare JID), for
    /// [`Locations::release_user`].
    held_by_user: HashMap<u64, usize>,
    /// Per recipient (the [`crate::shard::home_hash`] of its bare JID), the shards its sessions
    /// this shard sends to straight live on, with how many of its full JIDs each: what a stanza to
    /// that recipient on the home path waits for there (`shard::fence`).
    straight: HashMap<u64, Vec<(ShardId, u32)>>,
}

impl Locations {
    /// Counts `n` more (or, negative, fewer) stanzas waiting for the recipient `jid` (bare part).
    fn count_held(&mut self, bare: &str, n: isize) {
        if n == 0 {
            return;
        }
        let user = crate::shard::home_hash(bare);
        let c = self.held_by_user.entry(user).or_default();
        *c = c.saturating_add_signed(n);
        if *c == 0 {
            self.held_by_user.remove(&user);
        }
    }

    /// A stanza to the recipient with hash `user` is about to take the home path (see
    /// [`super::order`]): the stanzas waiting here for an answer about its full JIDs were sent
    /// earlier, so they go first, through the home shard behind their asking one, and those JIDs
    /// take the home path from now (asking again later). Entries waiting for a drain (the session
    /// ended) keep theirs: they must stay behind what was sent straight.
    pub fn release_user(&mut self, user: u64) -> Vec<Acc> {
        if !self.held_by_user.contains_key(&user) {
            return Vec::new();
        }
        let mut out = Vec::new();
        let epoch = self.epoch;
        for (jid, entry) in self.entries.iter_mut() {
            if let Entry::Asking {
                held,
                forgotten: false,
                ..
            } = entry
            {
                if !held.is_empty() && crate::shard::home_hash(jid.bare_str()) == user {
                    out.extend(held.drain(..));
                    *entry = Entry::Home {
                        left: ASK_AGAIN_AFTER,
                        since: epoch,
                    };
                }
            }
        }
        self.held -= out.len();
        if let Some(first) = out.first() {
            let bare = first.to.bare_str().to_owned();
            self.count_held(&bare, -(out.len() as isize));
        }
        out
    }

    /// The shards where sessions of the recipient with hash `user` live that this shard sends to
    /// straight.
    pub fn straight_to(&self, user: u64) -> impl Iterator<Item = ShardId> + '_ {
        self.straight
            .get(&user)
            .into_iter()
            .flat_map(|v| v.iter().map(|(s, _)| *s))
    }

    /// Counts one more (`up`) or one fewer full JID of `bare` sent straight to `shard`.
    fn count_straight(&mut self, bare: &str, shard: ShardId, up: bool) {
        let user = crate::shard::home_hash(bare);
        let v = self.straight.entry(user).or_default();
        match v.iter().position(|(s, _)| *s == shard) {
            Some(i) if up => v[i].1 += 1,
            Some(i) => {
                v[i].1 -= 1;
                if v[i].1 == 0 {
                    v.swap_remove(i);
                }
            }
            None if up => v.push((shard, 1)),
            None => {}
        }
        if v.is_empty() {
            self.straight.remove(&user);
        }
    }

    /// A number for a new question (never 0: a drain with no question open carries 0).
    fn next_ask(&mut self) -> u32 {
        self.last_ask = self.last_ask.wrapping_add(1).max(1);
        self.last_ask
    }

    /// Decides the way of `acc` (to a full JID, first time through the route) from shard `here`.
    pub fn route(&mut self, mut acc: Acc, here: ShardId) -> Step {
        let epoch = self.epoch;
        let Some(entry) = self.entries.get_mut(acc.to.as_str()) else {
            if self.entries.len() >= MAX_ENTRIES {
                return Step::Home(acc);
            }
            let Ok(jid) = acc.to.clone().try_into_full() else {
                return Step::Home(acc);
            };
            let id = self.next_ask();
            self.entries.insert(
                jid,
                Entry::Asking {
                    id,
                    held: VecDeque::new(),
                    forgotten: false,
                },
            );
            acc.locate_for = Some(Ask { by: here, id });
            return Step::Home(acc);
        };
        match entry {
            Entry::At(s) => Step::Direct(*s, acc),
            Entry::Asking { held, .. } if held.len() < MAX_HELD && self.held < MAX_HELD_TOTAL => {
                let bare = acc.to.bare_str().to_owned();
                held.push_back(acc);
                self.held += 1;
                self.count_held(&bare, 1);
                Step::Held
            }
            Entry::Asking { held, .. } => {
                let mut out: Vec<Acc> = held.drain(..).collect();
                *entry = Entry::Home {
                    left: ASK_AGAIN_AFTER,
                    since: epoch,
                };
                self.held -= out.len();
                let n = out.len() as isize;
                self.count_held(acc.to.bare_str(), -n);
                out.push(acc);
                Step::Release(out)
            }
            Entry::Home { left, .. } => {
                *left = left.saturating_sub(1);
                if *left == 0 {
                    self.entries.remove(acc.to.as_str());
                }
                Step::Home(acc)
            }
        }
    }

    /// The answer to question `id` about `jid`: its session is `at` (None: no session to go
    /// straight to). Gives what waited for it and where it goes; nothing when that question is
    /// no longer open (given up, or answered: a late answer must not release what waits for a
    /// newer question).
    pub fn located(&mut self, jid: &FullJid, id: u32, at: Option<SessionRef>) -> (Then, Vec<Acc>) {
        let Some(Entry::Asking {
            id: open,
            held,
            forgotten,
        }) = self.entries.get_mut(jid.as_str())
        else {
            return (Then::Home, Vec::new());
        };
        if *open != id {
            return (Then::Home, Vec::new());
        }
        let held: Vec<Acc> = held.drain(..).collect();
        let forgotten = *forgotten;
        self.held -= held.len();
        self.count_held(jid.bare_str(), -(held.len() as isize));
        match at {
            Some(s) if !forgotten && !s.is_remote() => {
                // Kept on this very shard too: a resumed session has no local binding for the
                // route's fast path (see `docs/ROUTE.md`, resumption).
                self.entries.insert(jid.clone(), Entry::At(s));
                self.count_straight(jid.bare_str(), s.shard, true);
                (Then::Direct(s), held)
            }
            _ => {
                self.entries.insert(
                    jid.clone(),
                    Entry::Home {
                        left: ASK_AGAIN_AFTER,
                        since: self.epoch,
                    },
                );
                (Then::Home, held)
            }
        }
    }

    /// The home shard says `session` is no longer where `jid` goes (it ended, or is about to
    /// move): the stanzas to `jid` wait here until the answer to the drain this shard sends
    /// behind what it sent straight (see [`crate::sm::drained`]), then go through the home shard.
    /// Gives the question the drain carries (0: none open, its answer releases nothing).
    pub fn forget(&mut self, jid: &FullJid, session: SessionRef) -> u32 {
        let fresh = self.next_ask();
        let Some(entry) = self.entries.get_mut(jid.as_str()) else {
            return 0;
        };
        match entry {
            Entry::At(s) if *s == session => {
                *entry = Entry::Asking {
                    id: fresh,
                    held: VecDeque::new(),
                    forgotten: true,
                };
                self.count_straight(jid.bare_str(), session.shard, false);
                fresh
            }
            Entry::Asking { id, forgotten, .. } => {
                *forgotten = true;
                *id
            }
            _ => 0,
        }
    }

    /// One second passed: every few, the entries that say "no session to go straight to" and are
    /// older than [`HOME_FOR`] seconds go (the next stanza to such a JID asks again, through the
    /// home shard as before: order holds). Sessions that ended, JIDs never bound, would otherwise
    /// stay until 64 more stanzas came, and fill the cache for good.
    pub fn tick(&mut self) {
        self.epoch = self.epoch.wrapping_add(1);
        if self.epoch % HOME_FOR != 0 {
            return;
        }
        let epoch = self.epoch;
        self.entries.retain(|_, e| match e {
            Entry::Home { since, .. } => epoch.wrapping_sub(*since) < HOME_FOR,
            _ => true,
        });
    }

    /// Recipients known or asked about.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no recipient is known or asked about.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}
