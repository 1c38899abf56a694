//! Tasks waiting for room somewhere (a full mailbox, a congested mesh, a store far behind).
//!
//! A waiting task is polled again whenever anything else wakes it (a delivery, a timer) and
//! registers again at each poll. Keeping every registration grew the list with the wake-ups of a
//! long wait; this keeps one waker per task, so the list is bounded by the tasks of the shard.

use ahash::HashSet;
use std::cell::RefCell;
use std::task::Waker;

/// Wakers of the tasks waiting for one condition, each task once.
#[derive(Default)]
pub struct Waiters(RefCell<Inner>);

#[derive(Default)]
struct Inner {
    /// In the order the tasks first waited.
    wakers: Vec<Waker>,
    /// The identity of each waker in `wakers` (what [`Waker::will_wake`] compares).
    seen: HashSet<(usize, usize)>,
}

/// What [`Waker::will_wake`] compares: the task's data pointer and the waker's vtable.
fn identity(w: &Waker) -> (usize, usize) {
    (w.data() as usize, std::ptr::from_ref(w.vtable()) as usize)
}

impl Waiters {
    /// Adds `waker`'s task, unless it already waits.
    pub fn register(&self, waker: &Waker) {
        let mut inner = self.0.borrow_mut();
        if inner.seen.insert(identity(waker)) {
            inner.wakers.push(waker.clone());
        }
    }

    /// Wakes every waiting task and forgets them (outside the borrow: a wake-up may run code that
    /// waits again).
    pub fn wake_all(&self) {
        let wakers = {
            let mut inner = self.0.borrow_mut();
            if inner.wakers.is_empty() {
                return;
            }
            inner.seen.clear();
            std::mem::take(&mut inner.wakers)
        };
        for w in wakers {
            w.wake();
        }
    }

    /// True when no task waits.
    pub fn is_empty(&self) -> bool {
        self.0.borrow().wakers.is_empty()
    }

    /// How many tasks wait.
    pub fn len(&self) -> usize {
        self.0.borrow().wakers.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Wake;

    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn task() -> (Arc<Count>, Waker) {
        let c = Arc::new(Count(AtomicUsize::new(0)));
        let w = Waker::from(c.clone());
        (c, w)
    }

    #[test]
    fn a_task_polled_many_times_waits_once_and_is_woken_once() {
        let waiters = Waiters::default();
        let (a, wa) = task();
        let (b, wb) = task();
        for _ in 0..1000 {
            waiters.register(&wa.clone());
        }
        waiters.register(&wb);
        assert_eq!(waiters.len(), 2);
        waiters.wake_all();
        assert!(waiters.is_empty());
        assert_eq!(a.0.load(Ordering::Relaxed), 1);
        assert_eq!(b.0.load(Ordering::Relaxed), 1);
        // Forgotten once woken: it can wait again.
        waiters.register(&wa);
        assert_eq!(waiters.len(), 1);
        waiters.wake_all();
        assert_eq!(a.0.load(Ordering::Relaxed), 2);
        waiters.wake_all();
        assert_eq!(a.0.load(Ordering::Relaxed), 2);
    }
}
