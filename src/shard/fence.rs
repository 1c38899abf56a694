//! Fences: a stanza that went the long way (through its recipient's home shard) waits on the
//! recipient's shard for what its sender's shard sent there straight before it (sans-IO).
//!
//! RFC 6120 §10.1 treats a recipient's bare and full JIDs as one order. From three shards up, a
//! full-JID stanza can go straight from the sender's shard S to the session's shard C (the
//! location cache), and a bare-JID stanza sent after it goes S -> home shard H -> C: two rings
//! against one, so the later one can arrive first. Rings are FIFO and each shard counts what it
//! pushed to every other ([`Fence::after`], stamped as the stanza leaves for H): C delivers the
//! bare-JID stanza once it has taken that many messages from S's ring. Those were pushed before the
//! stanza left S, so they are in the ring (or S's outbox, drained in order) when it reaches C: the
//! wait is for C's own ring to be read, never for anything S has yet to do. Stanzas from S that
//! arrive at C on other rings while one waits queue behind it.
//!
//! Bounded: at most [`MAX_PARKED`] stanzas wait on one shard (past that they are delivered at
//! once, order given up, counted), and none longer than [`PARKED_FOR`] seconds (a counting fault
//! must not hold a stanza for ever; logged).

use std::collections::VecDeque;

use crate::shard::{ConnMsg, ShardId, ShardMsg};

/// Stanzas that may wait on one shard, all senders' shards together.
pub const MAX_PARKED: usize = 16_384;

/// Ticks (seconds) after which a waiting stanza is delivered whatever it waits for.
pub const PARKED_FOR: u32 = 2;

/// What a stanza on the long way waits for on shard `on`: `after` messages from shard `from` (the
/// sender's shard) taken from the ring `from` -> `on`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fence {
    /// The sender's shard.
    pub from: ShardId,
    /// The shard where the recipient's session lives, whose ring from `from` it waits on.
    pub on: ShardId,
    /// How many messages `from` had pushed to `on` when the stanza left `from` (0 until then).
    pub after: u64,
}

/// Whether fences are made, counted and stamped with `shards` shards: from three up. Below, a
/// recipient's session shard is the sender's or the home shard, and one ring keeps the order.
pub fn used(shards: usize) -> bool {
    shards > 2
}

/// Stamps the fences of `msg`, leaving shard `here` for another shard, with what `here` pushed to
/// each fenced shard so far (`sent`, the mesh's counts). Only the sender's shard stamps: a stanza
/// re-routed later keeps its numbers.
pub fn stamp(msg: &mut ShardMsg, here: ShardId, sent: impl Fn(ShardId) -> u64) {
    if let ShardMsg::SmRoute(acc) = msg {
        if let Some(fences) = acc.fences.as_mut() {
            for f in fences.iter_mut().filter(|f| f.from == here) {
                f.after = sent(f.on);
            }
        }
    }
}

struct Parked {
    /// Messages from the sender's shard to take first (0: only behind the earlier waiting ones).
    after: u64,
    msg: ShardMsg,
    /// The tick it began waiting.
    since: u32,
}

/// One shard's receiving side: what it took from each other shard, and what waits (sans-IO).
#[derive(Default)]
pub struct Arrivals {
    /// Messages taken from the ring of each shard, by index.
    received: Vec<u64>,
    /// Waiting stanzas, by their sender's shard, in order.
    parked: Vec<VecDeque<Parked>>,
    parked_total: usize,
    /// Ticks counted by [`Arrivals::tick`].
    epoch: u32,
    /// Stanzas delivered at once because [`MAX_PARKED`] waited already (read by tests).
    pub overflowed: u64,
    /// Stanzas delivered because they waited [`PARKED_FOR`] (read by tests; the shard logs them).
    pub expired: u64,
}

impl Arrivals {
    /// `msg` was taken from the ring of shard `from` by shard `here`: counts it, and gives what it
    /// must wait behind (`Some((sender's shard, messages to take from its ring first))`), or None
    /// when it may be handled now. A stanza that must wait goes to [`Arrivals::park`]; the caller
    /// handles the others, then what [`Arrivals::release`] gives for `from`.
    #[inline]
    pub fn check(
        &mut self,
        from: ShardId,
        here: ShardId,
        msg: &ShardMsg,
    ) -> Option<(ShardId, u64)> {
        let i = from.index();
        match self.received.get_mut(i) {
            Some(n) => *n += 1,
            None => {
                self.received.resize(i + 1, 0);
                self.received[i] = 1;
            }
        }
        let ShardMsg::Conn(_, ConnMsg::Deliver(acc)) = msg else {
            return None;
        };
        if acc.fences.is_none() && self.parked_total == 0 {
            return None;
        }
        self.check_stanza(from, here, acc)
    }

    fn check_stanza(
        &self,
        from: ShardId,
        here: ShardId,
        acc: &crate::hooks::Acc,
    ) -> Option<(ShardId, u64)> {
        let fence = acc
            .fences
            .as_deref()
            .and_then(|fs| fs.iter().find(|f| f.on == here));
        let (sender, after) = match fence {
            Some(f) => (f.from, f.after),
            None => (acc.origin_shard, 0),
        };
        // What comes on the sender's own ring is what the others wait for.
        if sender == from || sender == here {
            return None;
        }
        let s = sender.index();
        let waiting = self.parked.get(s).is_some_and(|q| !q.is_empty());
        if !waiting && self.received.get(s).copied().unwrap_or(0) >= after {
            return None;
        }
        Some((sender, after))
    }

    /// Keeps `msg` until `after` messages from shard `sender` were taken (and those waiting before
    /// it went); gives it back when [`MAX_PARKED`] wait already (to be handled now, order given up).
    pub fn park(&mut self, sender: ShardId, after: u64, msg: ShardMsg) -> Option<ShardMsg> {
        if self.parked_total >= MAX_PARKED {
            self.overflowed += 1;
            return Some(msg);
        }
        let s = sender.index();
        if self.parked.len() <= s {
            self.parked.resize_with(s + 1, VecDeque::new);
        }
        self.parked[s].push_back(Parked {
            after,
            msg,
            since: self.epoch,
        });
        self.parked_total += 1;
        None
    }

    /// [`Arrivals::check`], then [`Arrivals::park`] when it must wait: gives `msg` back when it may
    /// be handled now (the shard does the two steps itself, to handle `msg` without moving it).
    #[cfg(test)]
    fn arrived(&mut self, from: ShardId, here: ShardId, msg: ShardMsg) -> Option<ShardMsg> {
        match self.check(from, here, &msg) {
            None => Some(msg),
            Some((sender, after)) => self.park(sender, after, msg),
        }
    }

    /// The waiting stanzas from shard `from`'s senders that may go now that more of its ring was
    /// taken, in order.
    pub fn release(&mut self, from: ShardId) -> Vec<ShardMsg> {
        let i = from.index();
        let mut out = Vec::new();
        if self.parked_total == 0 {
            return out;
        }
        let got = self.received.get(i).copied().unwrap_or(0);
        if let Some(q) = self.parked.get_mut(i) {
            while q.front().is_some_and(|p| p.after <= got) {
                if let Some(p) = q.pop_front() {
                    out.push(p.msg);
                }
            }
        }
        self.parked_total -= out.len();
        out
    }

    /// One second passed: gives the stanzas that waited [`PARKED_FOR`] ticks, with those queued
    /// behind them from the same sender's shard, in order.
    pub fn tick(&mut self) -> Vec<ShardMsg> {
        self.epoch = self.epoch.wrapping_add(1);
        let mut out = Vec::new();
        if self.parked_total == 0 {
            return out;
        }
        let epoch = self.epoch;
        for q in &mut self.parked {
            if q.front()
                .is_some_and(|p| epoch.wrapping_sub(p.since) >= PARKED_FOR)
            {
                self.expired += q.len() as u64;
                out.extend(q.drain(..).map(|p| p.msg));
            }
        }
        self.parked_total -= out.len();
        out
    }

    /// Stanzas waiting.
    pub fn parked(&self) -> usize {
        self.parked_total
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hooks::Acc;
    use crate::jid::Jid;
    use crate::shard::ConnId;
    use crate::xml::Stanza;

    const S: ShardId = ShardId(0);
    const H: ShardId = ShardId(1);
    const C: ShardId = ShardId(2);

    fn deliver(body: &str, origin: ShardId, fence: Option<u64>) -> ShardMsg {
        let st = Stanza::parse(
            format!("<message to='b@x/r' type='chat'><body>{body}</body></message>").into_bytes(),
        )
        .expect("a well-formed stanza");
        let j = |s: &str| Jid::parse(s).expect("a valid JID");
        let mut acc = Acc::new(st, j("a@x/r"), j("b@x/r"), origin);
        acc.fences = fence.map(|after| {
            vec![Fence {
                from: origin,
                on: C,
                after,
            }]
            .into_boxed_slice()
        });
        ShardMsg::Conn(ConnId(1), ConnMsg::Deliver(acc))
    }

    fn body(msg: &ShardMsg) -> String {
        let ShardMsg::Conn(_, ConnMsg::Deliver(acc)) = msg else {
            panic!("a stanza");
        };
        let b = String::from_utf8_lossy(acc.stanza.bytes()).into_owned();
        let start = b.find("<body>").map(|i| i + 6).unwrap_or(0);
        let end = b.find("</body>").unwrap_or(b.len());
        b[start..end].to_owned()
    }

    #[test]
    fn a_fenced_stanza_waits_for_the_straight_ones_and_the_later_ones_wait_behind_it() {
        let mut a = Arrivals::default();
        // S pushed two straight to C, then the fenced one left for H (after = 2); then a later
        // full-JID stanza took the home path behind it. Both reach C before the straight ones.
        assert!(a.arrived(H, C, deliver("bare", S, Some(2))).is_none());
        assert!(a.arrived(H, C, deliver("later", S, None)).is_none());
        // Another sender's stanza does not wait.
        assert!(a.arrived(H, C, deliver("other", H, None)).is_some());
        assert_eq!(a.parked(), 2);
        let first = a.arrived(S, C, deliver("straight 1", S, None));
        assert_eq!(
            body(&first.expect("its own ring never waits")),
            "straight 1"
        );
        assert!(a.release(S).is_empty());
        assert!(a.arrived(S, C, deliver("straight 2", S, None)).is_some());
        let out: Vec<String> = a.release(S).iter().map(body).collect();
        assert_eq!(out, ["bare", "later"]);
        assert_eq!(a.parked(), 0);
        // Once taken, the fence holds nothing back.
        assert!(a.arrived(H, C, deliver("bare 2", S, Some(2))).is_some());
    }

    #[test]
    fn what_waits_too_long_goes_with_those_behind_it() {
        let mut a = Arrivals::default();
        assert!(a.arrived(H, C, deliver("bare", S, Some(5))).is_none());
        assert!(a.arrived(H, C, deliver("later", S, None)).is_none());
        assert!(a.tick().is_empty());
        let out: Vec<String> = a.tick().iter().map(body).collect();
        assert_eq!(out, ["bare", "later"]);
        assert_eq!((a.parked(), a.expired), (0, 2));
    }

    #[test]
    fn waiting_is_bounded() {
        let mut a = Arrivals::default();
        for i in 0..MAX_PARKED {
            assert!(a
                .arrived(H, C, deliver(&i.to_string(), S, Some(1)))
                .is_none());
        }
        assert!(a.arrived(H, C, deliver("over", S, Some(1))).is_some());
        assert_eq!(a.overflowed, 1);
        assert!(a.arrived(S, C, deliver("straight", S, None)).is_some());
        assert_eq!(a.release(S).len(), MAX_PARKED);
    }

    #[test]
    fn stamping_counts_what_went_to_the_fenced_shard() {
        let st = Stanza::parse(b"<message to='b@x'/>".to_vec()).expect("a well-formed stanza");
        let j = |s: &str| Jid::parse(s).expect("a valid JID");
        let mut acc = Acc::new(st, j("a@x/r"), j("b@x"), S);
        acc.fences = Some(
            vec![Fence {
                from: S,
                on: C,
                after: 0,
            }]
            .into_boxed_slice(),
        );
        let mut msg = ShardMsg::SmRoute(acc);
        stamp(&mut msg, S, |to| if to == C { 7 } else { 1 });
        let ShardMsg::SmRoute(acc) = msg else {
            panic!("unchanged");
        };
        assert_eq!(acc.fences.as_deref().map(|f| f[0].after), Some(7));
    }
}
