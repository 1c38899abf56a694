//! Membership, sans-IO. [`Members`] runs on shard 0: it hears heartbeats (and any record naming a
//! node), gives each incarnation a slot, and declares one dead when it has been silent for the
//! failure timeout or a newer incarnation of the same node appears. [`Table`] is every shard's
//! copy of the slots, updated in order by shard 0's [`Change`]s over the mesh.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use ahash::HashMap;

use super::wire::Incarnation;

/// Dead incarnations remembered, so that their late records are ignored.
const DEAD_KEPT: usize = 1024;

/// Slots are 15 bits ([`crate::shard::SessionRef::remote`]).
const SLOTS: u16 = 0x7fff;

/// A membership change, applied by every shard in the order shard 0 made them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A new incarnation joined, at `slot`.
    Joined {
        /// Its slot.
        slot: u16,
        /// Who.
        who: Incarnation,
    },
    /// The incarnation at `slot` died: its sessions leave the map.
    Died {
        /// Its slot.
        slot: u16,
        /// Who.
        who: Incarnation,
    },
}

/// One live member, as shard 0 sees it.
#[derive(Debug, Clone)]
pub struct Member {
    /// Who.
    pub who: Incarnation,
    /// Its slot.
    pub slot: u16,
    /// Its shard count (0 until a heartbeat told).
    pub shards: u16,
    /// Its c2s address (empty until a heartbeat told).
    pub c2s: String,
    /// When it was last heard from.
    pub last_seen: Instant,
}

/// Shard 0's membership state.
pub struct Members {
    me: Incarnation,
    failure_timeout: Duration,
    live: HashMap<String, Member>,
    dead: VecDeque<Incarnation>,
    next_slot: u16,
    /// When our own connection last came back (see [`Members::refresh_all`]).
    reconnected: Option<Instant>,
}

impl Members {
    /// The membership seen by `me`.
    pub fn new(me: Incarnation, failure_timeout: Duration) -> Members {
        Members {
            me,
            failure_timeout,
            live: HashMap::default(),
            dead: VecDeque::new(),
            next_slot: 0,
            reconnected: None,
        }
    }

    /// `who` was heard from (a heartbeat with its shard count and address, or any other record).
    /// Returns the changes to apply, in order; the slot of `who` when it is a live member.
    pub fn heard(
        &mut self,
        who: &Incarnation,
        info: Option<(u16, &str)>,
        now: Instant,
    ) -> (Vec<Change>, Option<u16>) {
        let mut changes = Vec::new();
        if who.node == self.me.node {
            return (changes, None);
        }
        if let Some(at) = self.dead.iter().position(|d| d == who) {
            // A late record of a dead incarnation is ignored; its heartbeat means it was cut off,
            // not dead: it joins again (and is asked for its sessions).
            if info.is_none() {
                return (changes, None);
            }
            self.dead.remove(at);
        }
        if let Some(m) = self.live.get_mut(&who.node) {
            if m.who.id == who.id {
                m.last_seen = now;
                if let Some((shards, c2s)) = info {
                    m.shards = shards;
                    if m.c2s != c2s {
                        m.c2s = c2s.to_owned();
                    }
                }
                return (changes, Some(m.slot));
            }
        }
        // A new incarnation: the previous one of the same node, if any, died (restart).
        if let Some(old) = self.live.remove(&who.node) {
            changes.push(self.bury(old));
        }
        let slot = self.next_slot;
        self.next_slot = (self.next_slot + 1) % SLOTS;
        let (shards, c2s) = info.unwrap_or((0, ""));
        self.live.insert(
            who.node.clone(),
            Member {
                who: who.clone(),
                slot,
                shards,
                c2s: c2s.to_owned(),
                last_seen: now,
            },
        );
        changes.push(Change::Joined {
            slot,
            who: who.clone(),
        });
        (changes, Some(slot))
    }

    /// The members silent for the failure timeout, declared dead now.
    pub fn tick(&mut self, now: Instant) -> Vec<Change> {
        let silent: Vec<String> = self
            .live
            .values()
            .filter(|m| now.saturating_duration_since(m.last_seen) >= self.failure_timeout)
            .map(|m| m.who.node.clone())
            .collect();
        let mut changes = Vec::new();
        for n in silent {
            if let Some(m) = self.live.remove(&n) {
                changes.push(self.bury(m));
            }
        }
        changes
    }

    /// Declares the member at `slot` dead now (NATS said nobody listens for it any more).
    pub fn suspect(&mut self, slot: u16) -> Option<Change> {
        let node = self
            .live
            .values()
            .find(|m| m.slot == slot)?
            .who
            .node
            .clone();
        let m = self.live.remove(&node)?;
        Some(self.bury(m))
    }

    fn bury(&mut self, m: Member) -> Change {
        if self.dead.len() >= DEAD_KEPT {
            self.dead.pop_front();
        }
        self.dead.push_back(m.who.clone());
        Change::Died {
            slot: m.slot,
            who: m.who,
        }
    }

    /// Counts every member as heard from now (after our own connection was down: their silence
    /// was ours).
    pub fn refresh_all(&mut self, now: Instant) {
        self.reconnected = Some(now);
        for m in self.live.values_mut() {
            m.last_seen = now;
        }
    }

    /// True within the failure timeout after our own connection came back: the members' shards
    /// may not have subscribed again on that server yet, so NATS's "no one listens" is no death.
    pub fn just_reconnected(&self, now: Instant) -> bool {
        self.reconnected
            .is_some_and(|t| now.saturating_duration_since(t) < self.failure_timeout)
    }

    /// The live members.
    pub fn live(&self) -> impl Iterator<Item = &Member> {
        self.live.values()
    }
}

/// Every shard's copy of the slots of live members.
#[derive(Default)]
pub struct Table {
    by_slot: HashMap<u16, Incarnation>,
}

impl Table {
    /// Applies a change from shard 0.
    pub fn apply(&mut self, change: &Change) {
        match change {
            Change::Joined { slot, who } => {
                self.by_slot.insert(*slot, who.clone());
            }
            Change::Died { slot, .. } => {
                self.by_slot.remove(slot);
            }
        }
    }

    /// The live member at `slot`.
    pub fn get(&self, slot: u16) -> Option<&Incarnation> {
        self.by_slot.get(&slot)
    }

    /// True when a live member is named `node`.
    pub fn has_node(&self, node: &str) -> bool {
        self.by_slot.values().any(|w| w.node == node)
    }

    /// The live members, with their slots.
    pub fn iter(&self) -> impl Iterator<Item = (u16, &Incarnation)> {
        self.by_slot.iter().map(|(s, w)| (*s, w))
    }

    /// The slot of a live incarnation.
    pub fn slot_of(&self, who: &Incarnation) -> Option<u16> {
        self.by_slot
            .iter()
            .find(|(_, w)| *w == who)
            .map(|(s, _)| *s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inc(node: &str, id: u64) -> Incarnation {
        Incarnation {
            node: node.into(),
            id,
        }
    }

    #[test]
    fn join_silence_and_restart() {
        let t0 = Instant::now();
        let mut m = Members::new(inc("me", 1), Duration::from_millis(300));
        // Ourselves: ignored.
        assert_eq!(m.heard(&inc("me", 1), None, t0), (vec![], None));
        let (ch, slot) = m.heard(&inc("b", 7), Some((2, "x:1")), t0);
        assert_eq!(
            ch,
            vec![Change::Joined {
                slot: 0,
                who: inc("b", 7)
            }]
        );
        assert_eq!(slot, Some(0));
        // Heard again: nothing changes; silence shorter than the timeout: alive.
        assert_eq!(
            m.heard(&inc("b", 7), None, t0 + Duration::from_millis(200))
                .0,
            vec![]
        );
        assert!(m.tick(t0 + Duration::from_millis(400)).is_empty());
        // Restart: a new incarnation buries the old one first.
        let (ch, _) = m.heard(&inc("b", 8), None, t0 + Duration::from_millis(450));
        assert_eq!(
            ch,
            vec![
                Change::Died {
                    slot: 0,
                    who: inc("b", 7)
                },
                Change::Joined {
                    slot: 1,
                    who: inc("b", 8)
                },
            ]
        );
        // The dead one's late records are ignored.
        assert_eq!(
            m.heard(&inc("b", 7), None, t0 + Duration::from_millis(460)),
            (vec![], None)
        );
        // Silence for the timeout: dead.
        assert_eq!(
            m.tick(t0 + Duration::from_millis(800)),
            vec![Change::Died {
                slot: 1,
                who: inc("b", 8)
            }]
        );
        assert_eq!(m.live().count(), 0);
        // Its heartbeat after all: it was cut off, it joins again.
        let (ch, _) = m.heard(
            &inc("b", 8),
            Some((2, "x:1")),
            t0 + Duration::from_millis(900),
        );
        assert_eq!(
            ch,
            vec![Change::Joined {
                slot: 2,
                who: inc("b", 8)
            }]
        );
    }

    #[test]
    fn suspect_and_table() {
        let t0 = Instant::now();
        let mut m = Members::new(inc("me", 1), Duration::from_secs(3));
        let mut t = Table::default();
        for c in m.heard(&inc("b", 7), None, t0).0 {
            t.apply(&c);
        }
        assert_eq!(t.slot_of(&inc("b", 7)), Some(0));
        assert_eq!(t.get(0), Some(&inc("b", 7)));
        let died = m.suspect(0).unwrap();
        t.apply(&died);
        assert_eq!(t.get(0), None);
        assert_eq!(m.suspect(0), None);
    }
}
