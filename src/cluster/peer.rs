//! What a shard keeps per receiving shard of another member: the subjects it publishes to (built
//! once, not formatted per stanza), the last sequence number used, and the copies of the stanzas
//! not acknowledged yet, indexed by sequence number (an acknowledgement costs O(1) whatever the
//! order in which the receiver's routes end).

use std::collections::VecDeque;
use std::ops::Range;

use crate::hooks::Acc;

/// One receiving (member slot, shard), on the sending shard.
pub(super) struct Peer {
    /// `PREFIX.n.NODE.SHARD`: where its stanzas are published.
    pub(super) subject: Box<[u8]>,
    /// `INBOX.SLOT.SHARD.`: the reply subject's prefix (the sequence number follows).
    pub(super) reply: Box<[u8]>,
    /// The last sequence number published (kept across our reconnections: the receiver sees
    /// what a lost connection dropped as a gap).
    pub(super) seq: u64,
    /// The sequence number of `copies[0]`.
    first: u64,
    /// Copies by sequence number from `first`; `None` once acknowledged or taken (the front is
    /// trimmed so the first entry is always a copy).
    copies: VecDeque<Option<Acc>>,
    /// Copies held (the `Some`s).
    held: usize,
}

impl Peer {
    /// A peer published to on `subject`, answering to `reply` + the sequence number.
    pub(super) fn new(subject: String, reply: String) -> Peer {
        Peer {
            subject: subject.into_bytes().into(),
            reply: reply.into_bytes().into(),
            seq: 0,
            first: 0,
            copies: VecDeque::new(),
            held: 0,
        }
    }

    /// Keeps the copy of stanza `seq` (the next number after the last kept: numbers only grow).
    pub(super) fn keep(&mut self, seq: u64, acc: Acc) {
        if self.copies.is_empty() {
            self.first = seq;
        }
        // Numbers are consecutive; a number skipped (none is, today) stays a hole.
        while self.first + (self.copies.len() as u64) < seq {
            self.copies.push_back(None);
        }
        self.copies.push_back(Some(acc));
        self.held += 1;
    }

    /// Drops the copies acknowledged (sequence numbers, low 32 bits); returns how many.
    pub(super) fn ack(&mut self, seqs: &[u32]) -> usize {
        let mut freed = 0;
        for &s in seqs {
            // The low 32 bits of a number within 2^32 after `first` give its index.
            let at = s.wrapping_sub(self.first as u32) as usize;
            if let Some(slot) = self.copies.get_mut(at) {
                if slot.take().is_some() {
                    freed += 1;
                }
            }
        }
        self.held -= freed;
        self.trim();
        freed
    }

    /// Takes the copies with sequence numbers in `seqs` (returned by NATS, or reported missing).
    pub(super) fn take(&mut self, seqs: Range<u64>) -> Vec<Acc> {
        let end = self.first + self.copies.len() as u64;
        let from = seqs.start.max(self.first);
        let to = seqs.end.min(end);
        let mut out = Vec::new();
        for s in from..to {
            if let Some(acc) = self.copies[(s - self.first) as usize].take() {
                out.push(acc);
            }
        }
        self.held -= out.len();
        self.trim();
        out
    }

    /// Takes every copy, oldest first.
    pub(super) fn take_all(&mut self) -> Vec<Acc> {
        self.held = 0;
        self.copies.drain(..).flatten().collect()
    }

    /// Copies held.
    #[cfg(test)]
    pub(super) fn held(&self) -> usize {
        self.held
    }

    /// The sequence numbers of the copies held, oldest first.
    #[cfg(test)]
    pub(super) fn seqs(&self) -> Vec<u64> {
        (self.first..)
            .zip(&self.copies)
            .filter(|(_, c)| c.is_some())
            .map(|(s, _)| s)
            .collect()
    }

    fn trim(&mut self) {
        while self.copies.front().is_some_and(Option::is_none) {
            self.copies.pop_front();
            self.first += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jid::Jid;
    use crate::shard::ShardId;

    fn acc(n: u64) -> Acc {
        let stanza = crate::xml::Stanza::parse(format!("<message id='{n}'/>").into_bytes())
            .expect("a stanza");
        let jid = Jid::parse("a@localhost").expect("a JID");
        Acc::new(stanza, jid.clone(), jid, ShardId(0))
    }

    #[test]
    fn acknowledged_in_any_order_taken_by_range() {
        let mut p = Peer::new("s".into(), "r.".into());
        for seq in 5..10 {
            p.keep(seq, acc(seq));
        }
        assert_eq!(p.ack(&[7, 5]), 2);
        assert_eq!(p.seqs(), [6, 8, 9]);
        // Already acknowledged, or never kept: nothing.
        assert_eq!(p.ack(&[5, 42, 4]), 0);
        let taken = p.take(8..100);
        assert_eq!(taken.len(), 2);
        assert_eq!(p.seqs(), [6]);
        assert_eq!(p.held(), 1);
        p.keep(10, acc(10));
        assert_eq!(p.seqs(), [6, 10]);
        assert_eq!(p.take_all().len(), 2);
        assert_eq!(p.held(), 0);
        // Empty again: numbering goes on from wherever it is.
        p.keep(11, acc(11));
        assert_eq!(p.ack(&[11]), 1);
        assert!(p.seqs().is_empty());
    }

    #[test]
    fn numbers_past_32_bits_are_acknowledged_by_their_low_bits() {
        let mut p = Peer::new("s".into(), "r.".into());
        let base = u64::from(u32::MAX) - 1;
        for seq in base..base + 4 {
            p.keep(seq, acc(seq));
        }
        // base + 2 and base + 3 wrapped to 0 and 1 in 32 bits.
        assert_eq!(p.ack(&[0, 1]), 2);
        assert_eq!(p.seqs(), [base, base + 1]);
    }
}
