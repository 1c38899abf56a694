//! Work a module wants done on a shard when a value it put in an accumulator dies, whatever the
//! route did with the stanza (written, acknowledged, re-routed elsewhere, answered). Offline storage
//! uses it to delete a delivered message only once the client has it.
//!
//! Dropping records the work in a per-thread list; the shard runs it at its next flush
//! (`Shard::take_jobs`). Guards are dropped on shard threads only.

use std::cell::RefCell;

use super::OnShard;

thread_local! {
    static PENDING: RefCell<Vec<OnShard>> = const { RefCell::new(Vec::new()) };
}

/// Runs its work on the shard where it is dropped.
pub struct OnDrop(Option<OnShard>);

impl OnDrop {
    /// A guard that runs `work` when dropped.
    pub fn new(work: OnShard) -> OnDrop {
        OnDrop(Some(work))
    }

    /// Runs `work` instead of the work given at creation.
    pub fn replace(&mut self, work: OnShard) {
        self.0 = Some(work);
    }
}

impl std::fmt::Debug for OnDrop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OnDrop(..)")
    }
}

impl Drop for OnDrop {
    fn drop(&mut self) {
        if let Some(work) = self.0.take() {
            // try_with: a guard dropped while the thread shuts down has nowhere to run.
            let _ = PENDING.try_with(|p| p.borrow_mut().push(work));
        }
    }
}

/// Takes the work recorded on this thread since the last call.
pub fn take_pending() -> Vec<OnShard> {
    PENDING.with(|p| std::mem::take(&mut *p.borrow_mut()))
}

/// True when work waits on this thread.
pub fn pending() -> bool {
    PENDING.with(|p| !p.borrow().is_empty())
}
