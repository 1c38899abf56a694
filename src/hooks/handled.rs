//! XEP-0198 inbound acknowledgements that wait for the stanza's fate: a [`Handled`] token travels in
//! the accumulator of a stanza from a stream-managed client, and the client's `h` counts the stanza
//! only once the token is dropped. Whatever ends the stanza's route drops it: written to a recipient
//! without stream management, acknowledged by a recipient with it (the token waits in that
//! session's unacknowledged buffer), committed by a durable handler (offline storage keeps it in its
//! store job until the transaction commits), answered with an error, or consumed by a handler. A
//! crash before that point leaves the stanza unacknowledged, so the client sends it again.
//!
//! Dropping records `(session, seq)` in a per-thread list; the shard drains it at each flush
//! ([`take_done`]) and sends the acknowledgements home in one message per connection and shard.
//! Tokens are dropped on shard threads only: a store job hands its token back in
//! [`super::JobDone::hold`].

use std::cell::RefCell;

use crate::shard::SessionRef;

thread_local! {
    static DONE: RefCell<Vec<(SessionRef, u32)>> = const { RefCell::new(Vec::new()) };
}

/// Stanza number `seq` (XEP-0198 inbound count) of the client at `session` is handled when this is
/// dropped.
#[derive(Debug)]
pub struct Handled {
    session: SessionRef,
    seq: u32,
}

impl Handled {
    /// A token for stanza `seq` of the client at `session`.
    pub fn new(session: SessionRef, seq: u32) -> Handled {
        Handled { session, seq }
    }
}

impl Drop for Handled {
    fn drop(&mut self) {
        // try_with: a token dropped while the thread shuts down has nobody to tell.
        let _ = DONE.try_with(|d| d.borrow_mut().push((self.session, self.seq)));
    }
}

/// Takes the acknowledgements recorded on this thread since the last call.
pub fn take_done() -> Vec<(SessionRef, u32)> {
    DONE.with(|d| std::mem::take(&mut *d.borrow_mut()))
}

/// True when acknowledgements wait on this thread.
pub fn pending() -> bool {
    DONE.with(|d| !d.borrow().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shard::{ConnId, ShardId};

    #[test]
    fn dropping_records_once() {
        take_done();
        let s = SessionRef {
            shard: ShardId(1),
            conn: ConnId(7),
        };
        let t = Handled::new(s, 42);
        assert!(!pending());
        drop(t);
        assert_eq!(take_done(), vec![(s, 42)]);
        assert!(take_done().is_empty());
    }
}
