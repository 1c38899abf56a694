//! Runs the store jobs hook handlers queue (`HookCtx::store`) on the store pool and routes what they
//! return back on this shard.
//!
//! Policy when the pool's queues are full: jobs wait here, in order, and are resubmitted every
//! millisecond; past `MAX_WAITING` jobs a new one is refused with an error in the log (the store is
//! far behind and memory must stay bounded).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::Duration;

use super::ShardCtx;
use crate::hooks::KeyedJob;
use crate::store::StoreError;

/// Jobs waiting for room in the pool, per shard.
const MAX_WAITING: usize = 65_536;

/// This shard's jobs not yet accepted by the pool.
#[derive(Default)]
pub(crate) struct JobQueue {
    waiting: RefCell<VecDeque<KeyedJob>>,
    retrying: Cell<bool>,
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
                Ok(fut) => {
                    let ctx = self.clone();
                    glommio::spawn_local(async move {
                        match fut.await {
                            Ok(done) => {
                                ctx.shard.borrow_mut().job_done(done);
                                ctx.flush();
                            }
                            Err(e) => tracing::error!(error = %e, "store job failed"),
                        }
                    })
                    .detach();
                }
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
}
