//! The byte loop both s2s drivers share: it moves bytes between the socket and a sans-IO s2s
//! stream (`S2sIn`, `S2sOut`), fires its timer, and wakes when the driver's own input (mailbox,
//! outgoing queue) has something. One task per connection, no locks.

use std::cell::Cell;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use super::conn::Io;
use super::pump::{Alarm, Output, WriteFailed};

/// Socket bytes read per turn.
const READ_CHUNK: usize = 16 * 1024;

/// What the byte loop needs of a sans-IO s2s stream.
pub(super) trait Stream {
    /// Bytes read from the socket.
    fn input(&mut self, bytes: &[u8], now: Instant);
    /// Appends the bytes to write.
    fn output(&mut self, out: &mut Vec<u8>);
    /// When [`Stream::timeout`] is due.
    fn next_timeout(&self) -> Option<Instant>;
    /// Time passed.
    fn timeout(&mut self, now: Instant);
    /// The socket is gone.
    fn eof(&mut self);
    /// Nothing more will be read or produced beyond what is queued.
    fn closed(&self) -> bool;
    /// False while too much output waits: the socket is not read until it is written.
    fn may_read(&self) -> bool;
}

macro_rules! stream_impl {
    ($t:ty) => {
        impl Stream for $t {
            fn input(&mut self, bytes: &[u8], now: Instant) {
                // Certificates are checked while input is handled, against this time.
                self.set_wall_clock(rustls::pki_types::UnixTime::now());
                self.handle_input(bytes, now)
            }
            fn output(&mut self, out: &mut Vec<u8>) {
                self.take_transmit(out)
            }
            fn next_timeout(&self) -> Option<Instant> {
                <$t>::next_timeout(self)
            }
            fn timeout(&mut self, now: Instant) {
                self.handle_timeout(now)
            }
            fn eof(&mut self) {
                self.peer_closed()
            }
            fn closed(&self) -> bool {
                self.is_closed()
            }
            fn may_read(&self) -> bool {
                <$t>::may_read(self)
            }
        }
    };
}
stream_impl!(crate::s2s::S2sIn);
stream_impl!(crate::s2s::S2sOut);

/// A wake-up flag for a task on this shard (single-threaded).
#[derive(Default)]
pub(super) struct Signal {
    set: Cell<bool>,
    waker: Cell<Option<Waker>>,
}

impl Signal {
    /// Wakes the task waiting on it.
    pub(super) fn wake(&self) {
        self.set.set(true);
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    /// True (and cleared) when woken since the last poll; otherwise registers the waker.
    pub(super) fn poll(&self, cx: &Context<'_>) -> bool {
        if self.set.replace(false) {
            return true;
        }
        self.waker.set(Some(cx.waker().clone()));
        false
    }
}

enum Wake {
    Progress,
    Read(usize),
    Eof,
    Timer,
}

/// Runs `core` over `stream` until it is closed and its last bytes are written (or the peer is
/// gone). `step` handles its events and the driver's input each turn, told how many of the bytes
/// `core` handed out the socket took so far; `extra` says whether the driver's input woke
/// (registering the waker otherwise); `may_read` holds the socket unread while it says no
/// (backpressure; it registers the waker to be woken when it may). Returns how many bytes the
/// socket took in all.
pub(super) async fn pump<T: Stream, S: Io>(
    core: &mut T,
    stream: &mut S,
    mut step: impl FnMut(&mut T, u64),
    mut extra: impl FnMut(&Context<'_>) -> bool,
    mut may_read: impl FnMut(&Context<'_>) -> bool,
) -> u64 {
    let mut out = Output::new();
    let mut alarm = Alarm::default();
    let mut rbuf = vec![0u8; READ_CHUNK];
    loop {
        step(core, out.total);
        if out.buf.is_empty() {
            core.output(&mut out.buf);
        }
        if core.closed() && out.close_due() {
            let _ = futures_lite::AsyncWriteExt::close(stream).await;
            return out.total;
        }
        alarm.arm(core.next_timeout(), &out);
        // Also not while the peer leaves our answers unread (bounded output, see `may_read`): the
        // write below wakes the loop when it progresses.
        let reading = !core.closed() && core.may_read();
        let wake = std::future::poll_fn(|cx| {
            match out.poll_write(&mut *stream, cx) {
                Err(WriteFailed) => return Poll::Ready(Wake::Eof),
                Ok(true) => return Poll::Ready(Wake::Progress),
                Ok(false) => {}
            }
            if reading && may_read(cx) {
                match Pin::new(&mut *stream).poll_read(cx, &mut rbuf) {
                    Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Poll::Ready(Wake::Eof),
                    Poll::Ready(Ok(n)) => return Poll::Ready(Wake::Read(n)),
                    Poll::Pending => {}
                }
            }
            if extra(cx) {
                return Poll::Ready(Wake::Progress);
            }
            if alarm.poll_fired(cx) {
                return Poll::Ready(Wake::Timer);
            }
            Poll::Pending
        })
        .await;
        match wake {
            Wake::Progress => {}
            Wake::Read(n) => core.input(&rbuf[..n], Instant::now()),
            Wake::Eof => {
                core.eof();
                step(core, out.total);
                return out.total;
            }
            // While closing, the loop above decides whether the flush is over.
            Wake::Timer if core.closed() => {}
            Wake::Timer => core.timeout(Instant::now()),
        }
        glommio::yield_if_needed().await;
    }
}
