//! Stanzas a connection hands back (to the session manager, or answered for its senders), a chunk
//! per scheduler turn and only while their recipients have room: a connection cut off with a full
//! queue must not land thousands of stanzas (or errors, which are never answered and so would be
//! lost past a mailbox's hard cap) on the same mailboxes in one turn.

use std::collections::VecDeque;
use std::rc::Rc;
use std::task::Poll;

use super::pump::has_room;
use super::ShardCtx;
use crate::hooks::Acc;
use crate::shard::Mailbox;

/// Stanza bytes handed back per scheduler turn.
const CHUNK: usize = 32 * 1024;

/// The queue, boxed: almost every connection never has any, and an empty queue inline would cost
/// each of them its four words.
#[derive(Default)]
#[allow(clippy::box_collection)] // the box is the point: one word inline instead of four
pub(super) struct Backlog(Option<Box<VecDeque<Acc>>>);

impl Backlog {
    /// True when nothing waits.
    pub(super) fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    /// Queues a stanza after the others.
    pub(super) fn push_back(&mut self, acc: Acc) {
        self.0.get_or_insert_with(Box::default).push_back(acc);
    }

    /// Puts `accs` (oldest first) before everything queued: they are older.
    pub(super) fn push_front_all(&mut self, accs: Vec<Acc>) {
        if accs.is_empty() {
            return;
        }
        let q = self.0.get_or_insert_with(Box::default);
        for acc in accs.into_iter().rev() {
            q.push_front(acc);
        }
    }

    /// The oldest stanza; the queue's storage goes with the last one.
    fn pop_front(&mut self) -> Option<Acc> {
        let q = self.0.as_mut()?;
        let acc = q.pop_front();
        if q.is_empty() {
            self.0 = None;
        }
        acc
    }

    /// Hands the oldest stanzas, up to [`CHUNK`] bytes, to `f`; none while a recipient on this
    /// shard (other than `own`) or the mesh has no room ([`has_room`] wakes the task then).
    pub(super) fn hand_back(&mut self, ctx: &ShardCtx, own: &Rc<Mailbox>, mut f: impl FnMut(Acc)) {
        if self.is_empty()
            || ctx.mesh.congested()
            || ctx.shard.borrow_mut().pressured(Some(own)).is_some()
        {
            return;
        }
        let mut bytes = 0;
        while bytes < CHUNK {
            let Some(acc) = self.pop_front() else {
                break;
            };
            bytes += acc.stanza.bytes().len();
            f(acc);
        }
    }
}

/// Waits until the mesh and this shard's recipients have room again ([`has_room`]), or a message
/// reaches `own` (stanzas routed to a closing connection still arrive), then yields a turn.
pub(super) async fn room_or_mail(ctx: &ShardCtx, own: &Rc<Mailbox>) {
    std::future::poll_fn(|cx| {
        own.set_waker(cx.waker());
        if !own.is_empty() || has_room(ctx, own, cx) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
    futures_lite::future::yield_now().await;
}
