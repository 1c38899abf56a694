//! The soak's accounting: which messages the server acknowledged (recorded by
//! the sender's core) and how often each was delivered (recorded by the
//! recipient's core), merged at the end into the verdict: every acknowledged
//! message delivered exactly once. A message the client sent again (its first
//! copy was never acknowledged) may legitimately arrive twice: XEP-0198 is
//! at-least-once for the sender's unacknowledged stanzas, so such duplicates
//! are reported apart, not counted as failures.

use serde::Serialize;
use std::collections::{HashMap, HashSet};

/// A message's identity: (sender index, sender's sequence number).
pub type MsgId = (u32, u64);

/// One core's records (and, merged, the run's).
#[derive(Debug, Default)]
pub struct Ledger {
    /// Unique messages created by this core's senders.
    pub created: u64,
    /// Messages the server acknowledged with XEP-0198 `h`.
    pub acked: HashSet<MsgId>,
    /// Messages that came back to their sender as an error.
    pub bounced: HashSet<MsgId>,
    /// Messages sent more than once (resent after a resumption or a fresh login).
    pub resent: HashSet<MsgId>,
    /// Deliveries per message (live, after a resumption, or from offline storage).
    pub delivered: HashMap<MsgId, u32>,
    /// Deliveries that carried a XEP-0203 `<delay/>` (offline storage).
    pub from_offline: u64,
}

impl Ledger {
    /// Record one delivery of `id`.
    pub fn delivered(&mut self, id: MsgId, delayed: bool) {
        *self.delivered.entry(id).or_default() += 1;
        if delayed {
            self.from_offline += 1;
        }
    }

    /// Fold another core's records in.
    pub fn merge(&mut self, other: Ledger) {
        self.created += other.created;
        self.acked.extend(other.acked);
        self.bounced.extend(other.bounced);
        self.resent.extend(other.resent);
        for (id, n) in other.delivered {
            *self.delivered.entry(id).or_default() += n;
        }
        self.from_offline += other.from_offline;
    }

    /// The figures.
    pub fn verdict(&self) -> Verdict {
        let mut v = Verdict {
            created: self.created,
            acked: self.acked.len() as u64,
            bounced: self.bounced.len() as u64,
            delivered_unique: self.delivered.len() as u64,
            deliveries: self.delivered.values().map(|&n| u64::from(n)).sum(),
            from_offline: self.from_offline,
            ..Verdict::default()
        };
        v.resent = self.resent.len() as u64;
        for id in &self.acked {
            if !self.delivered.contains_key(id) && !self.bounced.contains(id) {
                v.lost += 1;
                if v.lost_sample.len() < 10 {
                    v.lost_sample.push(*id);
                }
            }
        }
        for (id, &n) in &self.delivered {
            let acked = self.acked.contains(id);
            if !acked {
                v.delivered_unacked += 1;
            }
            if n > 1 {
                if self.resent.contains(id) {
                    v.duplicated_resent += 1;
                } else if acked {
                    v.duplicated += 1;
                    if v.duplicated_sample.len() < 10 {
                        v.duplicated_sample.push(*id);
                    }
                } else {
                    v.duplicated_unacked += 1;
                }
            }
        }
        v.unacked_undelivered = v
            .created
            .saturating_sub(v.acked)
            .saturating_sub(v.delivered_unacked);
        v
    }
}

/// The soak's result.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Verdict {
    /// Unique messages sent.
    pub created: u64,
    /// Acknowledged by the server.
    pub acked: u64,
    /// Returned to the sender as an error (not counted as lost).
    pub bounced: u64,
    /// Distinct messages delivered.
    pub delivered_unique: u64,
    /// Deliveries in all (duplicates included).
    pub deliveries: u64,
    /// Deliveries from offline storage (with `<delay/>`).
    pub from_offline: u64,
    /// Acknowledged, never delivered, not bounced: a failure.
    pub lost: u64,
    /// A few lost (sender, seq), for the log.
    pub lost_sample: Vec<MsgId>,
    /// Sent once, acknowledged, delivered more than once: a failure.
    pub duplicated: u64,
    /// A few duplicated (sender, seq), for the log.
    pub duplicated_sample: Vec<MsgId>,
    /// Messages sent more than once (the first copy's ack never came).
    pub resent: u64,
    /// Sent more than once and delivered more than once (reported, not a failure).
    pub duplicated_resent: u64,
    /// Never acknowledged but delivered (fine: the ack was lost with the connection).
    pub delivered_unacked: u64,
    /// Sent once, never acknowledged, delivered more than once (reported, not a failure).
    pub duplicated_unacked: u64,
    /// Never acknowledged and never delivered (the client gave up before an ack).
    pub unacked_undelivered: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdict_counts_each_kind_once() {
        let mut a = Ledger {
            created: 6,
            ..Ledger::default()
        };
        a.acked.extend([(1, 0), (1, 1), (1, 2), (1, 3), (2, 0)]);
        a.bounced.insert((1, 3));
        a.resent.insert((2, 0));
        let mut b = Ledger::default();
        b.delivered((1, 0), false);
        b.delivered((1, 1), true);
        b.delivered((1, 1), false);
        b.delivered((1, 4), false);
        b.delivered((1, 4), true);
        b.delivered((2, 0), false);
        b.delivered((2, 0), false);
        a.merge(b);
        let v = a.verdict();
        assert_eq!(v.acked, 5);
        assert_eq!(v.lost, 1, "(1,2): acked, never delivered");
        assert_eq!(v.lost_sample, [(1, 2)]);
        assert_eq!(v.duplicated, 1, "(1,1) sent once, twice");
        assert_eq!(v.duplicated_sample, [(1, 1)]);
        assert_eq!(v.duplicated_resent, 1, "(2,0) resent, twice: allowed");
        assert_eq!(v.delivered_unacked, 1);
        assert_eq!(v.duplicated_unacked, 1, "(1,4) twice but never acked");
        assert_eq!(v.bounced, 1);
        assert_eq!(v.from_offline, 2);
        assert_eq!(v.deliveries, 7);
        assert_eq!(v.delivered_unique, 4);
        assert_eq!(v.unacked_undelivered, 0);
    }
}
