//! A connection's mailbox on its shard: where the route leaves stanzas for the connection's task.

use crate::xml::StanzaType;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::task::Waker;

use crate::shard::ConnMsg;

/// The mailbox refused a message: it is past its hard cap.
#[derive(Debug)]
pub struct MailboxFull(pub ConnMsg);

/// How many times its bound a mailbox holds before it refuses stanzas outright.
const HARD_CAP_FACTOR: usize = 4;

/// How many times its bound, in raw stanza bytes, a mailbox holds before its senders wait, whatever
/// the stanzas weigh: under the hard cap, so a flood of errors (which weigh a quarter) holds its
/// senders back before it is refused.
const FULL_FACTOR: usize = 2;

/// Single-threaded queue plus waker, bounded in stanza bytes.
///
/// Policy: the connection's task takes stanzas only as fast as its socket drains them, so a reader
/// that cannot keep up leaves them here. Past `limit` bytes the mailbox is marked overflowed: the
/// task unregisters the session, closes the stream with `policy-violation`, and sends everything
/// still queued back to the session manager — after the unregistration, so nothing comes back here.
/// Stanzas that arrive before the task runs are still queued (and re-routed the same way) up to
/// four times `limit`; past that hard cap they are refused and the shard re-routes them at once.
/// Error stanzas weigh a quarter of their size against `limit` (as on the mesh, where they get four
/// times the room): a sender whose flood is answered with errors — many at once when a recipient is
/// cut off and its queue bounces — is not taken for a slow reader while it reads. Its senders still
/// wait past twice `limit` in raw bytes ("full"), and a mailbox that stays full for the grace
/// period is a slow reader too: errors are never answered, so one refused at the hard cap would be
/// lost.
pub struct Mailbox {
    /// Messages with their weight against `limit` (computed once, at push: it reads the stanza's
    /// `type`).
    items: RefCell<VecDeque<(ConnMsg, usize)>>,
    bytes: Cell<usize>,
    /// Stanza bytes with errors at a quarter of their size (compared with `limit`).
    weighted: Cell<usize>,
    limit: usize,
    overflowed: Cell<bool>,
    waker: Cell<Option<Waker>>,
    /// What only a mailbox over its bound needs, boxed: every idle connection keeps a mailbox.
    pressure: RefCell<Option<Box<Pressure>>>,
    /// The connection is gone: nobody waits for this mailbox any more.
    closed: Cell<bool>,
}

/// The state of a mailbox that went over its bound.
#[derive(Default)]
struct Pressure {
    /// Senders (ring receivers, connections) waiting for this mailbox to get back under its bound.
    room_wakers: super::Waiters,
    /// Since when the mailbox is over its bound (see [`Mailbox::behind_for`]).
    over_since: Option<std::time::Instant>,
}

impl Mailbox {
    /// An empty mailbox for `limit` stanza bytes.
    pub fn new(limit: usize) -> Mailbox {
        Mailbox {
            items: RefCell::new(VecDeque::new()),
            bytes: Cell::new(0),
            weighted: Cell::new(0),
            limit,
            overflowed: Cell::new(false),
            waker: Cell::new(None),
            pressure: RefCell::new(None),
            closed: Cell::new(false),
        }
    }

    /// Queues a message and wakes the connection task. Control messages are always accepted.
    pub fn push(&self, msg: ConnMsg) -> Result<(), MailboxFull> {
        let mut w = 0;
        if let ConnMsg::Deliver(acc) = &msg {
            let len = acc.stanza.bytes().len();
            let bytes = self.bytes.get() + len;
            if bytes > self.limit.saturating_mul(HARD_CAP_FACTOR) {
                self.overflowed.set(true);
                self.wake();
                return Err(MailboxFull(msg));
            }
            w = weight(acc);
            let weighted = self.weighted.get() + w;
            if weighted > self.limit || bytes > self.limit.saturating_mul(FULL_FACTOR) {
                self.overflowed.set(true);
                let mut p = self.pressure.borrow_mut();
                let p = p.get_or_insert_with(Box::default);
                if p.over_since.is_none() {
                    // Rare (crossing the bound): the real clock, not the shard's cached one.
                    p.over_since = Some(std::time::Instant::now());
                }
            }
            self.bytes.set(bytes);
            self.weighted.set(weighted);
        }
        self.items.borrow_mut().push_back((msg, w));
        self.wake();
        Ok(())
    }

    /// Takes the next message.
    pub fn pop(&self) -> Option<ConnMsg> {
        let (msg, w) = {
            let mut items = self.items.borrow_mut();
            let taken = items.pop_front()?;
            // The next stanza's accumulator was written when it was queued, often long ago under
            // load (thousands in flight): fetch it while this one is handled, not when it is next.
            if let Some((ConnMsg::Deliver(next), _)) = items.front() {
                prefetch(&**next);
            }
            taken
        };
        if let ConnMsg::Deliver(acc) = &msg {
            self.bytes.set(self.bytes.get() - acc.stanza.bytes().len());
            self.weighted.set(self.weighted.get() - w);
            if !self.over() {
                if let Some(p) = self.pressure.borrow_mut().as_mut() {
                    p.over_since = None;
                }
            }
            if !self.pressured() {
                self.wake_senders();
            }
        }
        Some(msg)
    }

    /// Gives the queue's memory back once it is empty (called by the connection between turns):
    /// an idle connection holds no slots, a busy one allocates them again once per turn at most.
    pub fn release_if_empty(&self) {
        let mut items = self.items.borrow_mut();
        if items.is_empty() && items.capacity() > 0 {
            *items = VecDeque::new();
        }
        let mut pressure = self.pressure.borrow_mut();
        if pressure
            .as_ref()
            .is_some_and(|p| p.room_wakers.is_empty() && p.over_since.is_none())
        {
            *pressure = None;
        }
    }

    /// Takes the next message unless it is a stanza of more bytes than `room`.
    pub fn pop_within(&self, room: usize) -> Option<ConnMsg> {
        if self.ready(room) {
            self.pop()
        } else {
            None
        }
    }

    /// True when [`Mailbox::pop_within`] with `room` would return a message.
    pub fn ready(&self, room: usize) -> bool {
        match self.items.borrow().front() {
            Some((ConnMsg::Deliver(acc), _)) => acc.stanza.bytes().len() <= room,
            Some(_) => true,
            None => false,
        }
    }

    /// Stanza bytes queued.
    pub fn bytes(&self) -> usize {
        self.bytes.get()
    }

    /// True when messages are waiting.
    pub fn is_empty(&self) -> bool {
        self.items.borrow().is_empty()
    }

    /// True once the stanzas queued went past the bound (or the hard cap): the task checks whether
    /// its reader is really behind ([`Mailbox::too_slow`]).
    #[cfg(test)]
    fn overflowed(&self) -> bool {
        self.overflowed.get()
    }

    /// Over its bound in weight, or full in raw bytes: its senders wait.
    fn over(&self) -> bool {
        self.weighted.get() > self.limit
            || self.bytes.get() > self.limit.saturating_mul(FULL_FACTOR)
    }

    /// After the task took what its stream has room for: true when its reader is too slow. Over
    /// its bound in weight, that is when the socket takes nothing (`blocked`) or the mailbox stayed
    /// over for longer than `grace`; full only of errors (which a reader that reads may well get
    /// faster than it reads them), only the latter. Otherwise the overflow was a burst and is
    /// forgotten.
    pub fn too_slow(&self, blocked: bool, grace: std::time::Duration) -> bool {
        if !self.overflowed.get() {
            return false;
        }
        if !self.over() {
            self.overflowed.set(false);
            return false;
        }
        (blocked && self.weighted.get() > self.limit)
            || self.behind_for(std::time::Instant::now()) > grace
    }

    /// When [`Mailbox::too_slow`] turns true unless the mailbox drains first (none while it is not
    /// over): the task wakes then even if nothing else happens, its senders being held meanwhile.
    pub fn slow_at(&self, grace: std::time::Duration) -> Option<std::time::Instant> {
        if !self.overflowed.get() {
            return None;
        }
        self.pressure
            .borrow()
            .as_ref()
            .and_then(|p| p.over_since)
            .map(|t| t + grace)
    }

    /// How long the mailbox has been over its bound without a break (zero when it is not): its
    /// senders wait meanwhile, so a reader that keeps it there is cut off even while its socket
    /// still takes a little.
    fn behind_for(&self, now: std::time::Instant) -> std::time::Duration {
        self.pressure
            .borrow()
            .as_ref()
            .and_then(|p| p.over_since)
            .map_or(std::time::Duration::ZERO, |t| {
                now.saturating_duration_since(t)
            })
    }

    /// True while the mailbox is over its bound and its connection lives: whoever delivers here
    /// should wait ([`Mailbox::poll_room`]) before taking more input.
    pub fn pressured(&self) -> bool {
        !self.closed.get() && self.over()
    }

    /// Ready once the mailbox is back under its bound (or its connection is gone).
    pub fn poll_room(&self, cx: &std::task::Context<'_>) -> std::task::Poll<()> {
        if !self.pressured() {
            return std::task::Poll::Ready(());
        }
        self.pressure
            .borrow_mut()
            .get_or_insert_with(Box::default)
            .room_wakers
            .register(cx.waker());
        std::task::Poll::Pending
    }

    /// The connection is gone: senders waiting for room go on.
    pub fn close(&self) {
        self.closed.set(true);
        self.wake_senders();
    }

    fn wake_senders(&self) {
        let waiters = match self.pressure.borrow_mut().as_mut() {
            Some(p) if !p.room_wakers.is_empty() => std::mem::take(&mut p.room_wakers),
            _ => return,
        };
        // Woken outside the borrow: a waker may run code that looks at this mailbox.
        waiters.wake_all();
    }

    /// Registers the waker of the connection task.
    pub fn set_waker(&self, waker: &Waker) {
        self.waker.set(Some(waker.clone()));
    }

    fn wake(&self) {
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }
}

/// What a stanza counts against the bound: its size, a quarter of it for an error.
fn weight(acc: &crate::hooks::Acc) -> usize {
    let len = acc.stanza.bytes().len();
    if acc.ty() == StanzaType::Error {
        len / 4
    } else {
        len
    }
}

/// Asks the CPU to bring `*p` (every cache line of it) in ahead of its use; nothing else happens.
#[inline(always)]
fn prefetch<T>(p: &T) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let at: *const i8 = (p as *const T).cast();
        for offset in (0..std::mem::size_of::<T>()).step_by(64) {
            // SAFETY: SSE is part of every x86-64 CPU (the target's baseline), and a prefetch is a
            // hint that never faults or reads into the program, whatever the address.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(at.wrapping_add(offset)) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hooks::Acc;
    use crate::jid::Jid;
    use crate::shard::ShardId;
    use crate::xml::Stanza;

    fn deliver(len: usize) -> ConnMsg {
        let body = "x".repeat(len.saturating_sub(20));
        let s = Stanza::parse(format!("<message>{body}</message>").into_bytes()).unwrap();
        let j = Jid::parse("a@b").unwrap();
        ConnMsg::Deliver(Acc::new(s, j.clone(), j, ShardId(0)))
    }

    #[test]
    fn over_the_bound_is_overflowed_but_kept_up_to_the_hard_cap() {
        let mb = Mailbox::new(100);
        mb.push(deliver(60)).unwrap();
        assert!(!mb.overflowed());
        mb.push(deliver(60)).unwrap();
        assert!(mb.overflowed());
        for _ in 0..4 {
            mb.push(deliver(60)).unwrap();
        }
        // 360 bytes queued; one more is past 4 x 100.
        assert!(mb.push(deliver(60)).is_err());
        // Control messages always go in.
        assert!(mb
            .push(ConnMsg::Close(crate::xmpp::StreamErrorCondition::Conflict))
            .is_ok());
    }

    #[test]
    fn release_if_empty_frees_only_an_empty_queue() {
        let mb = Mailbox::new(1000);
        mb.push(deliver(60)).unwrap();
        let queued = mb.bytes();
        mb.release_if_empty();
        assert!(queued > 0 && mb.bytes() == queued, "a queued stanza stays");
        assert!(mb.pop().is_some());
        assert!(mb.items.borrow().capacity() > 0);
        mb.release_if_empty();
        assert_eq!(mb.items.borrow().capacity(), 0);
        mb.push(deliver(10)).unwrap();
        assert!(mb.pop().is_some(), "usable again after the release");
    }

    #[test]
    fn errors_weigh_a_quarter_from_push_to_pop() {
        let mb = Mailbox::new(100);
        let error = |len: usize| {
            let body = "x".repeat(len.saturating_sub(33));
            let s = Stanza::parse(format!("<message type='error'>{body}</message>").into_bytes())
                .unwrap();
            let j = Jid::parse("a@b").unwrap();
            ConnMsg::Deliver(Acc::new(s, j.clone(), j, ShardId(0)))
        };
        // Two errors of 100 bytes weigh 50: under the bound (and not yet full in raw bytes).
        for _ in 0..2 {
            mb.push(error(100)).unwrap();
        }
        assert!(!mb.pressured());
        mb.push(deliver(60)).unwrap();
        assert!(mb.pressured(), "50 + 60 weigh more than 100");
        // Popping takes off what the push added: the weight is back to zero.
        while mb.pop().is_some() {}
        assert!(!mb.pressured());
        mb.push(deliver(100)).unwrap();
        assert!(!mb.pressured());
    }

    #[test]
    fn a_flood_of_errors_holds_its_senders_before_the_hard_cap() {
        use std::time::Duration;
        let mb = Mailbox::new(100);
        let error = || {
            let body = "x".repeat(67);
            let s = Stanza::parse(format!("<message type='error'>{body}</message>").into_bytes())
                .unwrap();
            let j = Jid::parse("a@b").unwrap();
            ConnMsg::Deliver(Acc::new(s, j.clone(), j, ShardId(0)))
        };
        // Two errors of ~100 bytes: at twice the bound, not past it; and they weigh only ~50.
        mb.push(error()).unwrap();
        mb.push(error()).unwrap();
        assert!(!mb.pressured());
        mb.push(error()).unwrap();
        assert!(mb.pressured(), "senders wait at 300 bytes of errors");
        assert!(mb.bytes() <= 4 * 100, "before anything is refused");
        // Its reader is not cut off at once when its socket is blocked (it may be reading)...
        assert!(!mb.too_slow(true, Duration::from_secs(60)));
        assert!(mb.slow_at(Duration::from_secs(60)).is_some());
        // ...but when the mailbox stays full past the grace.
        assert!(mb.too_slow(false, Duration::ZERO));
        // Drained under the mark: the overflow is forgotten.
        mb.pop();
        mb.pop();
        assert!(!mb.pressured());
        assert!(!mb.too_slow(true, Duration::ZERO));
        assert!(mb.slow_at(Duration::ZERO).is_none());
    }

    #[test]
    fn pop_within_leaves_a_stanza_that_does_not_fit() {
        let mb = Mailbox::new(1000);
        mb.push(deliver(60)).unwrap();
        assert!(mb.pop_within(10).is_none());
        assert!(!mb.is_empty());
        assert!(mb.pop_within(60).is_some());
        assert!(mb.is_empty());
    }
}
