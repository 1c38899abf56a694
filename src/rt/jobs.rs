//! Runs the store jobs hook handlers queue (`HookCtx::store`) on the store pool and routes what they
//! return back on this shard.
//!
//! Policy when the pool's queues are full: jobs wait here, in order, and are resubmitted every
//! millisecond; past `MAX_WAITING` jobs a new one is refused with an error in the log (the store is
//! far behind and memory must stay bounded).
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
use std::time::Duration;

use ahash::HashMap;

use super::ShardCtx;
use crate::hooks::{JobDone, KeyedJob};
use crate::store::StoreError;

/// A submitted job's answer, still to come.
type Answer = Pin<Box<dyn Future<Output = Result<JobDone, StoreError>>>>;

/// Jobs waiting for room in the pool, per shard.
const MAX_WAITING: usize = 65_536;

/// This shard's jobs not yet accepted by the pool.
#[derive(Default)]
pub(crate) struct JobQueue {
    waiting: RefCell<VecDeque<KeyedJob>>,
    retrying: Cell<bool>,
    /// Per key, the answers submitted and not yet handled, oldest first; a key is here while its
    /// lane's task runs (bounded by the jobs in the pool's bounded queues).
    lanes: RefCell<HashMap<u64, VecDeque<Answer>>>,
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
        }
        self.submit_waiting();
    }

    fn submit_waiting(self: &Rc<Self>) {
        loop {
            let Some(job) = self.jobs.waiting.borrow_mut().pop_front() else {
                return;
            };
            let KeyedJob { key, run } = job;
            match self.store.try_call(key, run) {
                Ok(fut) => match key {
                    Some(key) => self.answer_in_order(key, Box::pin(fut)),
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

    /// Queues `answer` behind the earlier answers for `key`; the lane's task (started when the
    /// lane was empty) handles them front to back.
    fn answer_in_order(self: &Rc<Self>, key: u64, answer: Answer) {
        let mut lanes = self.jobs.lanes.borrow_mut();
        if let Some(lane) = lanes.get_mut(&key) {
            lane.push_back(answer);
            return;
        }
        lanes.insert(key, VecDeque::from([answer]));
        drop(lanes);
        let ctx = self.clone();
        glommio::spawn_local(async move {
            loop {
                let next = {
                    let mut lanes = ctx.jobs.lanes.borrow_mut();
                    let Some(lane) = lanes.get_mut(&key) else {
                        return;
                    };
                    match lane.pop_front() {
                        Some(a) => a,
                        None => {
                            lanes.remove(&key);
                            return;
                        }
                    }
                };
                ctx.answered(next.await);
            }
        })
        .detach();
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
