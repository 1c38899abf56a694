//! A connection's mailbox on its shard: where the route leaves stanzas for the connection's task.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::task::Waker;

use crate::shard::ConnMsg;

/// The mailbox refused a message: it is over its byte bound (the reader is too slow).
#[derive(Debug)]
pub struct MailboxFull(pub ConnMsg);

/// Single-threaded queue plus waker. Bounded in stanza bytes: once over the bound the connection is
/// marked overflowed (its task closes it with `policy-violation`) and stanzas are refused, so the route
/// sends them elsewhere instead of growing memory.
pub struct Mailbox {
    items: RefCell<VecDeque<ConnMsg>>,
    bytes: Cell<usize>,
    limit: usize,
    overflowed: Cell<bool>,
    waker: Cell<Option<Waker>>,
}

impl Mailbox {
    /// An empty mailbox holding at most `limit` stanza bytes.
    pub fn new(limit: usize) -> Mailbox {
        Mailbox {
            items: RefCell::new(VecDeque::new()),
            bytes: Cell::new(0),
            limit,
            overflowed: Cell::new(false),
            waker: Cell::new(None),
        }
    }

    /// Queues a message and wakes the connection task. Control messages are always accepted.
    pub fn push(&self, msg: ConnMsg) -> Result<(), MailboxFull> {
        if let ConnMsg::Deliver(acc) = &msg {
            let len = acc.stanza.bytes().len();
            if self.overflowed.get() || self.bytes.get() + len > self.limit {
                self.overflowed.set(true);
                self.wake();
                return Err(MailboxFull(msg));
            }
            self.bytes.set(self.bytes.get() + len);
        }
        self.items.borrow_mut().push_back(msg);
        self.wake();
        Ok(())
    }

    /// Takes the next message.
    pub fn pop(&self) -> Option<ConnMsg> {
        let msg = self.items.borrow_mut().pop_front()?;
        if let ConnMsg::Deliver(acc) = &msg {
            self.bytes.set(self.bytes.get() - acc.stanza.bytes().len());
        }
        Some(msg)
    }

    /// True when messages are waiting.
    pub fn is_empty(&self) -> bool {
        self.items.borrow().is_empty()
    }

    /// True once a stanza was refused for lack of room.
    pub fn overflowed(&self) -> bool {
        self.overflowed.get()
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
