//! Runs the store jobs hook handlers queue (`HookCtx::store`) on the store pool and routes what they
//! return back on this shard.
//!
//! Policy when the pool's queues are full: jobs wait here, in order, and are resubmitted every
//! millisecond. From `GATE_HIGH` jobs waiting the shard stops taking new work (its connections stop
//! reading, its ring receivers stop receiving: `JobQueue::poll_room`) until they are back at
//! `GATE_LOW`, so a flood towards the store waits instead of growing this queue; other shards then
//! fill their outboxes towards this one and stop their readers in turn. Past `MAX_WAITING` jobs
//! (work that does not come from a reader, or a store that is gone) a new one is refused with an
//! error in the log: memory must stay bounded.
//!
//! Answers of jobs with the same key are handled in the order the jobs were queued (one lane per
//! key, awaited front to back): the store runs them in that order, but one task per answer would
//! let an answer whose task was not yet polled overtake an earlier one still waiting for its
//! cross-thread wake-up, and a user's roster pushes would leave in the wrong order (a stale
//! subscription state last, in the user's clients and in PEP's view of the roster).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::Context;
use std::time::Duration;

use ahash::HashMap;

use super::ShardCtx;
use crate::hooks::{JobDone, KeyedJob};
use crate::shard::Waiters;
use crate::store::StoreError;

/// A submitted job's answer, still to come.
type Answer = Pending<Result<JobDone, StoreError>>;
/// A value still to come.
type Pending<T> = Pin<Box<dyn Future<Output = T>>>;

/// Futures awaited front to back per key, each value handed on in that order: one task per key
/// while it has futures pending.
pub(crate) struct Lanes<T>(Rc<RefCell<HashMap<u64, VecDeque<Pending<T>>>>>);

impl<T> Default for Lanes<T> {
    fn default() -> Self {
        Lanes(Rc::default())
    }
}

impl<T: 'static> Lanes<T> {
    /// Queues `next` behind the futures pending for `key`; `on` gets its value after theirs. The
    /// lane's task is started when the lane was empty (then `on` is the one it keeps using).
    pub(crate) fn push(&self, key: u64, next: Pending<T>, on: impl Fn(T) + 'static) {
        let mut lanes = self.0.borrow_mut();
        if let Some(lane) = lanes.get_mut(&key) {
            lane.push_back(next);
            return;
        }
        lanes.insert(key, VecDeque::from([next]));
        drop(lanes);
        let lanes = self.0.clone();
        glommio::spawn_local(async move {
            loop {
                let next = {
                    let mut lanes = lanes.borrow_mut();
                    let Some(lane) = lanes.get_mut(&key) else {
                        return;
                    };
                    match lane.pop_front() {
                        Some(f) => f,
                        None => {
                            lanes.remove(&key);
                            return;
                        }
                    }
                };
                on(next.await);
            }
        })
        .detach();
    }
}

/// Jobs waiting for room in the pool, per shard.
const MAX_WAITING: usize = 65_536;
/// Jobs waiting for room in the pool from which the shard stops taking new work.
const GATE_HIGH: usize = 4096;
/// Jobs waiting for room in the pool at which it takes new work again.
const GATE_LOW: usize = 1024;

/// This shard's jobs not yet accepted by the pool.
#[derive(Default)]
pub(crate) struct JobQueue {
    waiting: RefCell<VecDeque<KeyedJob>>,
    retrying: Cell<bool>,
    /// Set at `GATE_HIGH` jobs waiting, cleared at `GATE_LOW`: the shard takes no new work.
    gated: Cell<bool>,
    /// Tasks to wake when the gate opens.
    room_wakers: Waiters,
    /// Per key, the answers submitted and not yet handled, oldest first (bounded by the jobs in
    /// the pool's bounded queues).
    lanes: Lanes<Result<JobDone, StoreError>>,
}

impl JobQueue {
    /// False while the store is far behind (see the module's policy); the caller, about to take
    /// new work (read a socket, receive from a ring), is woken once it is not.
    pub(crate) fn poll_room(&self, cx: &Context<'_>) -> bool {
        if !self.gated.get() {
            return true;
        }
        self.room_wakers.register(cx.waker());
        false
    }

    /// Opens the gate once the jobs waiting are back at `GATE_LOW`.
    fn open_gate_at_low(&self) {
        if self.gated.get() && self.waiting.borrow().len() <= GATE_LOW {
            self.gated.set(false);
            self.room_wakers.wake_all();
        }
    }
}

impl ShardCtx {
    /// Submits the jobs the shard queued; the results are routed when they come back.
    pub(crate) fn run_jobs(self: &Rc<Self>) {
        let jobs = self.shard.borrow_mut().take_jobs();
        if jobs.is_empty() {
            return;
        }
        {
            let mut waiting = self.jobs.waiting.borrow_mut();
            for job in jobs {
                if waiting.len() >= MAX_WAITING {
                    tracing::error!("store far behind: {MAX_WAITING} jobs waiting; job refused");
                    continue;
                }
                waiting.push_back(job);
            }
            if waiting.len() >= GATE_HIGH && !self.jobs.gated.replace(true) {
                tracing::warn!(
                    shard = self.shard.borrow().id.0,
                    waiting = waiting.len(),
                    "store behind: new work waits until its jobs are taken"
                );
            }
        }
        self.submit_waiting();
    }

    fn submit_waiting(self: &Rc<Self>) {
        loop {
            self.jobs.open_gate_at_low();
            let Some(job) = self.jobs.waiting.borrow_mut().pop_front() else {
                return;
            };
            let KeyedJob { key, run } = job;
            match self.store.try_call(key, run) {
                Ok(fut) => match key {
                    Some(key) => {
                        let ctx = self.clone();
                        let answer: Answer = Box::pin(fut);
                        self.jobs.lanes.push(key, answer, move |a| ctx.answered(a));
                    }
                    None => {
                        let ctx = self.clone();
                        glommio::spawn_local(async move { ctx.answered(fut.await) }).detach();
                    }
                },
                Err((StoreError::Busy, run)) => {
                    // Keep order: put it back in front and retry later.
                    self.jobs
                        .waiting
                        .borrow_mut()
                        .push_front(KeyedJob { key, run });
                    if !self.jobs.retrying.replace(true) {
                        let ctx = self.clone();
                        glommio::spawn_local(async move {
                            glommio::timer::sleep(Duration::from_millis(1)).await;
                            ctx.jobs.retrying.set(false);
                            ctx.submit_waiting();
                        })
                        .detach();
                    }
                    return;
                }
                Err((e, _)) => {
                    tracing::error!(error = %e, "store unavailable; job dropped");
                }
            }
        }
    }

    /// Routes a job's answer on this shard.
    fn answered(self: &Rc<Self>, answer: Result<JobDone, StoreError>) {
        match answer {
            Ok(done) => {
                self.shard.borrow_mut().job_done(done);
                self.flush();
            }
            Err(e) => tracing::error!(error = %e, "store job failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::oneshot;

    #[test]
    fn one_keys_values_are_handled_in_order_even_when_later_ones_are_ready_first() {
        // The store's answers arrive from another thread. The first one's future is already
        // waiting (its wake-up must cross threads) when the later ones, ready before they are
        // first polled, are queued: one task per answer handled 2 and 3 before 1.
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .io_memory(64 * 1024)
            .ring_depth(8)
            .spawn(|| async {
                let lanes = Lanes::<u32>::default();
                let got = Rc::new(RefCell::new(Vec::new()));
                let push = |rx: oneshot::Receiver<u32>| {
                    let got = got.clone();
                    let next: Pending<u32> = Box::pin(async move { rx.await.unwrap_or(0) });
                    lanes.push(7, next, move |v| got.borrow_mut().push(v));
                };
                let (tx1, rx1) = oneshot::channel();
                push(rx1);
                glommio::executor().yield_now().await;
                let (tx2, rx2) = oneshot::channel();
                let (tx3, rx3) = oneshot::channel();
                std::thread::spawn(move || {
                    tx1.send(1);
                    tx2.send(2);
                    tx3.send(3);
                })
                .join()
                .expect("the sender thread runs");
                push(rx2);
                push(rx3);
                for _ in 0..1000 {
                    if got.borrow().len() == 3 {
                        break;
                    }
                    glommio::timer::sleep(Duration::from_millis(1)).await;
                }
                assert_eq!(*got.borrow(), vec![1, 2, 3]);
                assert!(lanes.0.borrow().is_empty(), "a finished lane is removed");
            })
            .expect("an executor starts")
            .join()
            .expect("the test ran");
    }
}
