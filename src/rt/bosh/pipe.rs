//! The in-memory byte link between a BOSH session task and the c2s driver running its stream:
//! to the driver it is a socket (`AsyncRead`/`AsyncWrite`), so the c2s runs exactly as over TCP.

use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use futures_lite::{AsyncRead, AsyncWrite};

#[derive(Default)]
struct State {
    /// Bytes for the c2s (request children, synthetic headers).
    input: Vec<u8>,
    /// Bytes the c2s wrote, not yet taken by the session.
    output: Vec<u8>,
    /// Bound of `output`: past it the driver's writes wait (its slow-reader policy then applies).
    out_cap: usize,
    /// The session ended: the driver reads EOF.
    eof: bool,
    /// The driver closed or dropped its end: the stream is over.
    closed: bool,
    reader: Option<Waker>,
    writer: Option<Waker>,
    session: Option<Waker>,
}

/// The driver's end.
pub(super) struct C2sEnd(Rc<RefCell<State>>);

/// The session's end.
pub(super) struct SessionEnd(Rc<RefCell<State>>);

/// A connected pair; the c2s may have `out_cap` bytes written and not yet taken.
pub(super) fn pipe(out_cap: usize) -> (SessionEnd, C2sEnd) {
    let s = Rc::new(RefCell::new(State {
        out_cap,
        ..State::default()
    }));
    (SessionEnd(s.clone()), C2sEnd(s))
}

fn wake(w: &mut Option<Waker>) {
    if let Some(w) = w.take() {
        w.wake();
    }
}

impl SessionEnd {
    /// Queues input for the c2s.
    pub(super) fn feed(&self, bytes: &[u8]) {
        let mut s = self.0.borrow_mut();
        s.input.extend_from_slice(bytes);
        wake(&mut s.reader);
    }

    /// Moves what the c2s wrote into `out`.
    pub(super) fn take_output(&self, out: &mut Vec<u8>) {
        let mut s = self.0.borrow_mut();
        std::mem::swap(out, &mut s.output);
        wake(&mut s.writer);
    }

    /// True when the c2s wrote something not yet taken.
    pub(super) fn has_output(&self) -> bool {
        !self.0.borrow().output.is_empty()
    }

    /// The driver's end is closed (the c2s stream is over).
    pub(super) fn c2s_gone(&self) -> bool {
        self.0.borrow().closed
    }

    /// The session is over: the driver reads EOF.
    pub(super) fn end(&self) {
        let mut s = self.0.borrow_mut();
        s.eof = true;
        wake(&mut s.reader);
        wake(&mut s.writer);
    }

    /// Wakes `cx` on output or close.
    pub(super) fn set_waker(&self, cx: &Context<'_>) {
        self.0.borrow_mut().session = Some(cx.waker().clone());
    }
}

impl Drop for SessionEnd {
    fn drop(&mut self) {
        // However the session ended (even by a panic), its c2s reads EOF and ends too.
        self.end();
    }
}

impl Drop for C2sEnd {
    fn drop(&mut self) {
        let mut s = self.0.borrow_mut();
        s.closed = true;
        wake(&mut s.session);
    }
}

impl AsyncRead for C2sEnd {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let mut s = self.0.borrow_mut();
        if !s.input.is_empty() {
            let n = buf.len().min(s.input.len());
            buf[..n].copy_from_slice(&s.input[..n]);
            s.input.drain(..n);
            if s.input.is_empty() && s.input.capacity() > 64 * 1024 {
                s.input = Vec::new();
            }
            return Poll::Ready(Ok(n));
        }
        if s.eof {
            return Poll::Ready(Ok(0));
        }
        s.reader = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl AsyncWrite for C2sEnd {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut s = self.0.borrow_mut();
        if s.eof {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        let room = s.out_cap.saturating_sub(s.output.len());
        if room == 0 {
            s.writer = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let n = room.min(buf.len());
        s.output.extend_from_slice(&buf[..n]);
        wake(&mut s.session);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut s = self.0.borrow_mut();
        s.closed = true;
        wake(&mut s.session);
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::future::{block_on, poll_once};
    use futures_lite::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn carries_bytes_both_ways_and_ends() {
        let (s, mut c) = pipe(8);
        let mut buf = [0u8; 4];
        assert!(
            block_on(poll_once(c.read(&mut buf))).is_none(),
            "nothing to read yet"
        );
        s.feed(b"hello");
        assert_eq!(block_on(c.read(&mut buf)).unwrap(), 4);
        assert_eq!(block_on(c.read(&mut buf)).unwrap(), 1);
        assert_eq!(&buf[..1], b"o");
        // Writes stop at the bound until the session takes the output.
        assert_eq!(block_on(c.write(b"0123456789")).unwrap(), 8);
        assert!(block_on(poll_once(c.write(b"x"))).is_none());
        let mut out = Vec::new();
        s.take_output(&mut out);
        assert_eq!(out, b"01234567");
        assert_eq!(block_on(c.write(b"x")).unwrap(), 1);
        s.end();
        assert_eq!(block_on(c.read(&mut buf)).unwrap(), 0);
        assert!(block_on(c.write(b"y")).is_err());
        assert!(!s.c2s_gone());
        drop(c);
        assert!(s.c2s_gone());
    }
}
