//! One load user on a core: the outbox of its current connection and, with
//! `--sm`, its stream management state, which outlives a connection so the
//! soak can resume or resend. Every stanza the user writes goes through here,
//! so the XEP-0198 count matches what the server counts.

use crate::conn::Outbox;
use crate::msg::{write_message, Msg, Naming};
use crate::sm::{self, Sm, TooHigh, Unacked};
use crate::stats::CoreStats;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;

/// A load user (index `u`).
pub struct Client {
    /// User index.
    pub u: u32,
    /// The current connection's write queue (`None` while disconnected).
    outbox: RefCell<Option<Rc<Outbox>>>,
    /// Stream management, when `--sm`.
    pub sm: Option<RefCell<Sm>>,
    /// Next message sequence number.
    next_seq: Cell<u64>,
    /// In a cluster: how many nodes past its own the user now logs in to (its node was down).
    pub failover: Cell<u32>,
    /// The highest sequence number delivered to this user from each sender (see
    /// [`Client::delivered_in_order`]).
    last_seq: RefCell<ahash::HashMap<u32, u64>>,
}

impl Client {
    /// A disconnected user; `ack_every` > 0 turns stream management on.
    pub fn new(u: u32, ack_every: Option<u32>) -> Self {
        Client {
            u,
            outbox: RefCell::new(None),
            sm: ack_every.map(|n| RefCell::new(Sm::new(n))),
            next_seq: Cell::new(0),
            failover: Cell::new(0),
            last_seq: RefCell::default(),
        }
    }

    /// Records message `seq` of sender `from` delivered to this user: false when a later message
    /// of that sender came before it (a copy of one already delivered, sent again after a
    /// resumption, is not out of order).
    pub fn delivered_in_order(&self, from: u32, seq: u64) -> bool {
        let mut last = self.last_seq.borrow_mut();
        let l = last.entry(from).or_insert(seq);
        if *l > seq {
            return false;
        }
        *l = seq;
        true
    }

    /// Messages created so far (each has a unique sequence number below this).
    pub fn created(&self) -> u64 {
        self.next_seq.get()
    }

    /// The write queue of the live connection.
    pub fn outbox(&self) -> Option<Rc<Outbox>> {
        self.outbox
            .borrow()
            .as_ref()
            .filter(|o| !o.is_closed())
            .cloned()
    }

    /// Attach a new connection's outbox.
    pub fn attach(&self, ob: Rc<Outbox>) {
        *self.outbox.borrow_mut() = Some(ob);
    }

    /// The connection is gone: close its outbox and stop counting.
    pub fn detach(&self) {
        if let Some(ob) = self.outbox.borrow_mut().take() {
            ob.close();
        }
        if let Some(sm) = &self.sm {
            sm.borrow_mut().suspend();
        }
    }

    /// Send a new message to `to` stamped `ts`; `false` (nothing counted) while disconnected.
    pub fn send(&self, naming: &Naming, to: u32, ts: u64, payload: usize, st: &CoreStats) -> bool {
        let Some(ob) = self.outbox() else {
            return false;
        };
        let m = Msg {
            from: self.u,
            to,
            seq: self.next_seq.get(),
            ts,
        };
        self.next_seq.set(m.seq + 1);
        st.sent.fetch_add(1, Relaxed);
        self.write(&ob, naming, m, payload, st);
        true
    }

    /// Send `m` again (after a resumption or a fresh login).
    pub fn resend(&self, naming: &Naming, m: Msg, payload: usize, st: &CoreStats) {
        if let Some(ob) = self.outbox() {
            st.resent.fetch_add(1, Relaxed);
            self.write(&ob, naming, m, payload, st);
        }
    }

    fn write(&self, ob: &Outbox, naming: &Naming, m: Msg, payload: usize, st: &CoreStats) {
        let ask = self.count_out(Unacked::Message(m), st);
        ob.push_with(|b| {
            write_message(b, naming, &m, payload);
            if ask {
                b.extend_from_slice(sm::REQUEST);
            }
        });
    }

    /// Write a stanza that is not a load message (presence, iq reply); counted, never resent.
    pub fn push_stanza(&self, st: &CoreStats, f: impl FnOnce(&mut Vec<u8>)) {
        let Some(ob) = self.outbox() else {
            return;
        };
        let ask = self.count_out(Unacked::Other, st);
        ob.push_with(|b| {
            f(b);
            if ask {
                b.extend_from_slice(sm::REQUEST);
            }
        });
    }

    /// Write a nonza (`<a/>`, `<r/>`, stream close): not counted.
    pub fn push_raw(&self, f: impl FnOnce(&mut Vec<u8>)) {
        if let Some(ob) = self.outbox() {
            ob.push_with(f);
        }
    }

    fn count_out(&self, s: Unacked, st: &CoreStats) -> bool {
        let Some(sm) = &self.sm else {
            return false;
        };
        let mut sm = sm.borrow_mut();
        let ask = sm.on_sent(s);
        if sm.on {
            st.unacked.fetch_add(1, Relaxed);
        }
        ask
    }

    /// Apply the server's `<a h/>`; `acked` gets each message it covers.
    pub fn on_ack(&self, h: u32, st: &CoreStats, acked: impl FnMut(Msg)) -> Result<(), TooHigh> {
        let Some(sm) = &self.sm else {
            return Ok(());
        };
        self.tracking_unacked(sm, st, |sm| sm.on_ack(h, acked))
    }

    /// Run `f` on the SM state, keeping the core's unacked gauge in step with the queue.
    pub fn tracking_unacked<R>(
        &self,
        sm: &RefCell<Sm>,
        st: &CoreStats,
        f: impl FnOnce(&mut Sm) -> R,
    ) -> R {
        let mut sm = sm.borrow_mut();
        let before = sm.outstanding() as u64;
        let r = f(&mut sm);
        let after = sm.outstanding() as u64;
        if after < before {
            st.unacked.fetch_sub(before - after, Relaxed);
        } else {
            st.unacked.fetch_add(after - before, Relaxed);
        }
        r
    }

    /// Answer the server's `<r/>`.
    pub fn answer_request(&self) {
        if let Some(sm) = &self.sm {
            let h = sm.borrow().h_in;
            self.push_raw(|b| sm::write_ack(b, h));
        }
    }

    /// Ask for an ack if anything went out since the last `<r/>` (the idle ticker).
    pub fn request_if_due(&self) {
        let due = self
            .sm
            .as_ref()
            .is_some_and(|sm| sm.borrow_mut().take_request(1));
        if due {
            self.push_raw(|b| b.extend_from_slice(sm::REQUEST));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Client;

    #[test]
    fn order_is_per_sender_and_copies_are_not_out_of_order() {
        let c = Client::new(0, None);
        assert!(c.delivered_in_order(1, 0));
        assert!(c.delivered_in_order(2, 5));
        assert!(c.delivered_in_order(1, 2));
        assert!(c.delivered_in_order(1, 2), "a copy sent again");
        assert!(!c.delivered_in_order(1, 1), "overtaken by 2");
        assert!(c.delivered_in_order(2, 6));
        assert!(!c.delivered_in_order(2, 4));
    }
}
