//! The soak's accounting: which messages the server acknowledged (recorded by
//! the sender's core) and how often each was delivered (recorded by the
//! recipient's core), merged at the end into the verdict: every acknowledged
//! message delivered exactly once. A message the client sent again (its first
//! copy was never acknowledged) may legitimately arrive twice: XEP-0198 is
//! at-least-once for the sender's unacknowledged stanzas, so such duplicates
//! are reported apart, not counted as failures. So is a message that a server
//! was killed in the middle of: delivered, then the server holding the
//! recipient's session died before the recipient's acknowledgement left it,
//! and the sender's server (in a cluster) stored its kept copy offline. At
//! least once across a crash is the cluster's documented contract; the rule
//! below allows a second delivery only when a kill fell between the first
//! delivery and the sender's acknowledgement.

use serde::Serialize;
use std::collections::{HashMap, HashSet};

/// A message's identity: (sender index, sender's sequence number).
pub type MsgId = (u32, u64);

/// When an acknowledged message went out and when its ack came (ns since the run's epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AckedAt {
    /// Recipient's user index.
    pub to: u32,
    /// First send.
    pub sent_ns: u64,
    /// The server's `h` covered it.
    pub acked_ns: u64,
}

/// A change in a user's connection, for placing losses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Link {
    /// Logged in (fresh or resumed): stanzas reach the client live.
    Up,
    /// The client cut its own connection: the server parks the session until the resumption.
    Cut,
    /// The server went away (killed) or broke the connection: the session is gone with it.
    Lost,
    /// Closed cleanly at the sweep.
    Closed,
}

/// An acknowledged message that never arrived, for the log.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LostMsg {
    /// Sender's user index.
    pub from: u32,
    /// Sender's sequence number.
    pub seq: u64,
    /// Recipient's user index.
    pub to: u32,
    /// First send, seconds since the start of the run.
    pub sent_s: f64,
    /// Acknowledged, seconds since the start of the run.
    pub acked_s: f64,
    /// The recipient's connection when the ack came (`None`: not logged in yet).
    pub recipient: Option<Link>,
}

/// How often a message was delivered, and when first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deliveries {
    /// Deliveries so far (live, after a resumption, or from offline storage).
    pub n: u32,
    /// The earliest (ns since the run's epoch).
    pub first_ns: u64,
}

/// A message delivered more than once although sent once, for the log.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DuplicatedMsg {
    /// Sender's user index.
    pub from: u32,
    /// Sender's sequence number.
    pub seq: u64,
    /// Recipient's user index.
    pub to: u32,
    /// Deliveries.
    pub times: u32,
    /// First delivery, seconds since the start of the run.
    pub first_delivered_s: f64,
    /// Acknowledged to the sender, seconds since the start of the run.
    pub acked_s: f64,
}

/// One core's records (and, merged, the run's).
#[derive(Debug, Default)]
pub struct Ledger {
    /// Unique messages created by this core's senders.
    pub created: u64,
    /// Messages the server acknowledged with XEP-0198 `h`.
    pub acked: HashMap<MsgId, AckedAt>,
    /// Messages that came back to their sender as an error.
    pub bounced: HashSet<MsgId>,
    /// Messages sent more than once (resent after a resumption or a fresh login).
    pub resent: HashSet<MsgId>,
    /// Deliveries per message (live, after a resumption, or from offline storage).
    pub delivered: HashMap<MsgId, Deliveries>,
    /// Deliveries that carried a XEP-0203 `<delay/>` (offline storage).
    pub from_offline: u64,
    /// Each user's connection changes, in time order: (ns since the epoch, change).
    pub links: HashMap<u32, Vec<(u64, Link)>>,
}

impl Ledger {
    /// Record one delivery of `id` at `ns`.
    pub fn delivered(&mut self, id: MsgId, ns: u64, delayed: bool) {
        self.count(id, Deliveries { n: 1, first_ns: ns });
        if delayed {
            self.from_offline += 1;
        }
    }

    /// Adds `d` to `id`'s deliveries: the counts summed, the earliest first delivery kept.
    fn count(&mut self, id: MsgId, d: Deliveries) {
        self.delivered
            .entry(id)
            .and_modify(|e| {
                e.n += d.n;
                e.first_ns = e.first_ns.min(d.first_ns);
            })
            .or_insert(d);
    }

    /// Fold another core's records in.
    pub fn merge(&mut self, other: Ledger) {
        self.created += other.created;
        self.acked.extend(other.acked);
        self.bounced.extend(other.bounced);
        self.resent.extend(other.resent);
        for (id, d) in other.delivered {
            self.count(id, d);
        }
        self.from_offline += other.from_offline;
        // A user lives on one core, so its changes come from one ledger.
        self.links.extend(other.links);
    }

    /// Record a change of user `u`'s connection at `ns`.
    pub fn link(&mut self, u: u32, ns: u64, change: Link) {
        self.links.entry(u).or_default().push((ns, change));
    }

    /// User `u`'s connection at `ns`: its last change at or before then.
    fn link_at(&self, u: u32, ns: u64) -> Option<Link> {
        let changes = self.links.get(&u)?;
        let i = changes.partition_point(|&(t, _)| t <= ns);
        i.checked_sub(1).map(|i| changes[i].1)
    }

    /// When a server went away under some user (its connection `Lost`), sorted:
    /// a SIGKILL shows as a burst of these, one per user connected there.
    fn losses(&self) -> Vec<u64> {
        let mut at: Vec<u64> = (self.links.values().flatten())
            .filter(|&&(_, change)| change == Link::Lost)
            .map(|&(ns, _)| ns)
            .collect();
        at.sort_unstable();
        at
    }

    /// The figures.
    pub fn verdict(&self) -> Verdict {
        let mut v = Verdict {
            created: self.created,
            acked: self.acked.len() as u64,
            bounced: self.bounced.len() as u64,
            delivered_unique: self.delivered.len() as u64,
            deliveries: self.delivered.values().map(|d| u64::from(d.n)).sum(),
            from_offline: self.from_offline,
            ..Verdict::default()
        };
        v.resent = self.resent.len() as u64;
        let mut lost: Vec<LostMsg> = Vec::new();
        for (id, at) in &self.acked {
            if !self.delivered.contains_key(id) && !self.bounced.contains(id) {
                let recipient = self.link_at(at.to, at.acked_ns);
                match recipient {
                    Some(Link::Up) => v.lost_recipient_online += 1,
                    Some(Link::Cut) => v.lost_recipient_parked += 1,
                    _ => v.lost_recipient_offline += 1,
                }
                lost.push(LostMsg {
                    from: id.0,
                    seq: id.1,
                    to: at.to,
                    sent_s: at.sent_ns as f64 / 1e9,
                    acked_s: at.acked_ns as f64 / 1e9,
                    recipient,
                });
            }
        }
        v.lost = lost.len() as u64;
        lost.sort_by(|a, b| a.acked_s.total_cmp(&b.acked_s));
        lost.truncate(LOST_LISTED);
        v.lost_sample = lost;
        let losses = self.losses();
        // A server died after the first delivery and before the sender's ack.
        let killed_between = |first: u64, acked: u64| {
            let i = losses.partition_point(|&t| t <= first);
            losses.get(i).is_some_and(|&t| t <= acked)
        };
        let mut duplicated: Vec<DuplicatedMsg> = Vec::new();
        for (id, d) in &self.delivered {
            let acked = self.acked.get(id);
            if acked.is_none() {
                v.delivered_unacked += 1;
            }
            if d.n > 1 {
                match acked {
                    _ if self.resent.contains(id) => v.duplicated_resent += 1,
                    None => v.duplicated_unacked += 1,
                    Some(at) if killed_between(d.first_ns, at.acked_ns) => {
                        v.duplicated_at_kill += 1;
                    }
                    Some(at) => duplicated.push(DuplicatedMsg {
                        from: id.0,
                        seq: id.1,
                        to: at.to,
                        times: d.n,
                        first_delivered_s: d.first_ns as f64 / 1e9,
                        acked_s: at.acked_ns as f64 / 1e9,
                    }),
                }
            }
        }
        v.duplicated = duplicated.len() as u64;
        duplicated.sort_by(|a, b| a.acked_s.total_cmp(&b.acked_s));
        duplicated.truncate(LOST_LISTED);
        v.duplicated_sample = duplicated;
        v.unacked_undelivered = v
            .created
            .saturating_sub(v.acked)
            .saturating_sub(v.delivered_unacked);
        v
    }
}

/// How many lost (and duplicated) messages the verdict lists.
pub const LOST_LISTED: usize = 50;

/// The soak's result.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
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
    /// Lost while the recipient was online (the stanza was on its way to a live connection).
    pub lost_recipient_online: u64,
    /// Lost while the recipient had cut its connection (parked session, waiting for resumption).
    pub lost_recipient_parked: u64,
    /// Lost while the recipient had no session (its connection died with the server: offline storage).
    pub lost_recipient_offline: u64,
    /// The first lost messages by ack time (at most [`LOST_LISTED`]).
    pub lost_sample: Vec<LostMsg>,
    /// Sent once, acknowledged, delivered more than once: a failure.
    pub duplicated: u64,
    /// The first duplicated messages by ack time (at most [`LOST_LISTED`]).
    pub duplicated_sample: Vec<DuplicatedMsg>,
    /// Sent once, delivered more than once, acknowledged to the sender only after a
    /// server was killed that had delivered it (reported, not a failure: see the module doc).
    pub duplicated_at_kill: u64,
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
        let at = AckedAt {
            to: 9,
            sent_ns: 1_000_000_000,
            acked_ns: 2_500_000_000,
        };
        a.acked
            .extend([(1, 0), (1, 1), (1, 2), (1, 3), (2, 0)].map(|id| (id, at)));
        a.bounced.insert((1, 3));
        a.resent.insert((2, 0));
        a.link(9, 2_000_000_000, Link::Up);
        a.link(9, 3_000_000_000, Link::Cut);
        let mut b = Ledger::default();
        let t = 2_200_000_000;
        b.delivered((1, 0), t, false);
        b.delivered((1, 1), t, true);
        b.delivered((1, 1), t + 1, false);
        b.delivered((1, 4), t, false);
        b.delivered((1, 4), t, true);
        b.delivered((2, 0), t, false);
        b.delivered((2, 0), t, false);
        a.merge(b);
        let v = a.verdict();
        assert_eq!(v.acked, 5);
        assert_eq!(v.lost, 1, "(1,2): acked, never delivered");
        let l = LostMsg {
            from: 1,
            seq: 2,
            to: 9,
            sent_s: 1.0,
            acked_s: 2.5,
            recipient: Some(Link::Up),
        };
        assert_eq!(v.lost_sample, [l]);
        assert_eq!(v.lost_recipient_online, 1);
        assert_eq!(v.duplicated, 1, "(1,1) sent once, twice");
        let d = DuplicatedMsg {
            from: 1,
            seq: 1,
            to: 9,
            times: 2,
            first_delivered_s: 2.2,
            acked_s: 2.5,
        };
        assert_eq!(v.duplicated_sample, [d]);
        assert_eq!(v.duplicated_at_kill, 0);
        assert_eq!(v.duplicated_resent, 1, "(2,0) resent, twice: allowed");
        assert_eq!(v.delivered_unacked, 1);
        assert_eq!(v.duplicated_unacked, 1, "(1,4) twice but never acked");
        assert_eq!(v.bounced, 1);
        assert_eq!(v.from_offline, 2);
        assert_eq!(v.deliveries, 7);
        assert_eq!(v.delivered_unique, 4);
        assert_eq!(v.unacked_undelivered, 0);
    }

    /// A second delivery is allowed only when a server went away (some user's
    /// connection `Lost`) after the first delivery and by the sender's ack.
    #[test]
    fn a_duplicate_is_allowed_only_across_a_kill() {
        let mut l = Ledger::default();
        let acked = |acked_ns| AckedAt {
            to: 5,
            sent_ns: 0,
            acked_ns,
        };
        // (1, 0): delivered at 10, the server killed at 20, acked at 30: at least once.
        // (1, 1): delivered at 10, acked at 15, before the kill: a failure.
        // (1, 2): delivered at 25, after the kill, acked at 30: a failure.
        l.acked.insert((1, 0), acked(30));
        l.acked.insert((1, 1), acked(15));
        l.acked.insert((1, 2), acked(30));
        for (id, first) in [((1, 0), 10), ((1, 1), 10), ((1, 2), 25)] {
            l.delivered(id, first, false);
            l.delivered(id, 40, true);
        }
        // The kill shows under another user than the recipient.
        l.link(7, 5, Link::Up);
        l.link(7, 20, Link::Lost);
        let v = l.verdict();
        assert_eq!(v.duplicated_at_kill, 1);
        assert_eq!(v.duplicated, 2);
        let ids: Vec<_> = v
            .duplicated_sample
            .iter()
            .map(|d| (d.from, d.seq))
            .collect();
        assert_eq!(ids, [(1, 1), (1, 2)], "by ack time");
    }
}
