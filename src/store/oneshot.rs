//! A one-shot reply slot on std only: the pool thread fills it, the shard's future reads it.
//! Wakers are called from the pool thread; glommio accepts wakes from foreign threads.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

struct Slot<T> {
    value: Option<T>,
    waker: Option<Waker>,
    /// The sender is gone (after sending, or dropped without sending).
    closed: bool,
}

type Shared<T> = Arc<Mutex<Slot<T>>>;

fn lock<T>(s: &Shared<T>) -> MutexGuard<'_, Slot<T>> {
    // No code panics while holding this lock, so a poisoned lock still holds a sound slot.
    s.lock().unwrap_or_else(|p| p.into_inner())
}

/// The sending half; dropping it unsent makes the receiver resolve to None.
pub(crate) struct Sender<T>(Shared<T>);

/// The receiving half: resolves to Some(value), or None if the sender dropped unsent.
pub(crate) struct Receiver<T>(Shared<T>);

/// A connected pair.
pub(crate) fn channel<T>() -> (Sender<T>, Receiver<T>) {
    let s = Arc::new(Mutex::new(Slot {
        value: None,
        waker: None,
        closed: false,
    }));
    (Sender(s.clone()), Receiver(s))
}

impl<T> Sender<T> {
    /// Delivers the value and wakes the receiver.
    pub(crate) fn send(self, value: T) {
        lock(&self.0).value = Some(value);
        // Drop closes the slot and wakes the receiver.
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let waker = {
            let mut slot = lock(&self.0);
            slot.closed = true;
            slot.waker.take()
        };
        // Wake outside the lock: the waker may run the receiver's task inline.
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl<T> Future for Receiver<T> {
    type Output = Option<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let mut slot = lock(&self.0);
        if let Some(v) = slot.value.take() {
            return Poll::Ready(Some(v));
        }
        if slot.closed {
            return Poll::Ready(None);
        }
        match &slot.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => slot.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::future::block_on;

    #[test]
    fn value_crosses_threads() {
        let (tx, rx) = channel();
        let t = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(20));
            tx.send(42u32);
        });
        assert_eq!(block_on(rx), Some(42));
        t.join()
            .unwrap_or_else(|_| panic!("sender thread panicked"));
    }

    #[test]
    fn dropped_sender_resolves_none() {
        let (tx, rx) = channel::<u8>();
        let t = std::thread::spawn(move || drop(tx));
        assert_eq!(block_on(rx), None);
        t.join()
            .unwrap_or_else(|_| panic!("sender thread panicked"));
    }
}
