//! What every connection driver's poll loop shares (c2s in `conn`, components in `component`, s2s in
//! `s2s_io`): the output written to the socket as it takes it, the end of a closing connection, the
//! timer, and the backpressure check on local recipients.

use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_lite::{AsyncWrite, FutureExt};
use glommio::timer::Timer;

use super::ShardCtx;
use crate::shard::Mailbox;

/// How long a closing connection waits for a peer that stopped reading before it drops the rest of
/// its last bytes (the stream error among them).
pub(super) const CLOSE_STALL: Duration = Duration::from_secs(5);
/// How long a closing connection may take to flush its last bytes to a peer that reads, however
/// slowly (a slow reader still gets its stream error; a trickling one cannot hold the socket forever).
pub(super) const CLOSE_FLUSH_MAX: Duration = Duration::from_secs(120);

/// Bytes on their way to the socket.
pub(super) struct Output {
    /// The bytes; refilled by the driver only once empty.
    pub(super) buf: Vec<u8>,
    written: usize,
    /// Bytes the socket took since the connection opened.
    pub(super) total: u64,
    /// When the socket last took bytes (a closing connection waits while the peer reads).
    last_write: Instant,
    /// The socket refused bytes at the last attempt (its send buffer is full).
    pub(super) blocked: bool,
    /// Since when the stream is closed and its last bytes are being flushed.
    closing_since: Option<Instant>,
}

/// The socket failed or was closed while writing.
pub(super) struct WriteFailed;

impl Output {
    /// Nothing to write.
    pub(super) fn new() -> Output {
        Output {
            buf: Vec::new(),
            written: 0,
            total: 0,
            last_write: Instant::now(),
            blocked: false,
            closing_since: None,
        }
    }

    /// Writes what the socket takes now; true when some bytes went out.
    pub(super) fn poll_write<S: AsyncWrite + Unpin>(
        &mut self,
        stream: &mut S,
        cx: &mut Context<'_>,
    ) -> Result<bool, WriteFailed> {
        let mut progressed = false;
        while self.written < self.buf.len() {
            match Pin::new(&mut *stream).poll_write(cx, &self.buf[self.written..]) {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Err(WriteFailed),
                Poll::Ready(Ok(n)) => {
                    self.written += n;
                    self.total += n as u64;
                    progressed = true;
                    self.last_write = Instant::now();
                    self.blocked = false;
                }
                Poll::Pending => {
                    self.blocked = true;
                    break;
                }
            }
        }
        if self.written == self.buf.len() && !self.buf.is_empty() {
            self.buf.clear();
            self.written = 0;
        }
        Ok(progressed)
    }

    /// The stream is closed: true when the socket should be closed now (everything written, the
    /// peer stopped reading for [`CLOSE_STALL`], or [`CLOSE_FLUSH_MAX`] passed).
    pub(super) fn close_due(&mut self) -> bool {
        let since = *self.closing_since.get_or_insert_with(Instant::now);
        self.buf.is_empty()
            || since.elapsed() > CLOSE_FLUSH_MAX
            || self.last_write.max(since).elapsed() > CLOSE_STALL
    }

    /// When a closing connection gives up flushing (none while open).
    fn flush_deadline(&self) -> Option<Instant> {
        self.closing_since
            .map(|t| (t + CLOSE_FLUSH_MAX).min(self.last_write.max(t) + CLOSE_STALL))
    }
}

/// The driver's one timer: the stream's next timeout or the close-flush deadline.
///
/// glommio's `Timer` moves itself in the reactor's timer tree (a removal and an insertion, and a
/// waker clone) at every poll, and the driver's wait polls the alarm at every wake-up (each read,
/// each routed stanza): 2-2.5 % of a shard at `max` and in login storms. So the timer is made and
/// registered at the first poll after it is set (the driver's task keeps its waker), and polled
/// again only once it is due.
#[derive(Default)]
pub(super) struct Alarm(Option<(Instant, Option<Timer>)>);

impl Alarm {
    /// Sets the timer to the earlier of `stream` (the protocol core's `next_timeout`) and the
    /// output's flush deadline. A timer already set no later than that is kept: the idle and ping
    /// deadlines move forward with every read, and a new timer per read costs its insertion and
    /// the old one's removal. The kept timer fires early; every protocol core's `handle_timeout`
    /// acts only on what is due at `now`, and the loop then sets the timer to the deadline of that
    /// moment.
    pub(super) fn arm(&mut self, stream: Option<Instant>, out: &Output) {
        let want = earliest(stream, out.flush_deadline());
        match (want, &self.0) {
            (Some(at), Some((cur, _))) if *cur <= at => {}
            (Some(at), _) => self.0 = Some((at, None)),
            (None, _) => self.0 = None,
        }
    }

    /// True (and the timer spent) once it fired.
    pub(super) fn poll_fired(&mut self, cx: &mut Context<'_>) -> bool {
        let Some((at, timer)) = self.0.as_mut() else {
            return false;
        };
        let fired = match timer {
            // Made at the first poll for `at`, it fires no earlier than `at`.
            Some(_) if Instant::now() < *at => false,
            Some(t) => Pin::new(t).poll(cx).is_ready(),
            None => {
                let t = timer.insert(Timer::new(at.saturating_duration_since(Instant::now())));
                Pin::new(t).poll(cx).is_ready()
            }
        };
        if fired {
            self.0 = None;
        }
        fired
    }
}

/// The earlier of two deadlines, either of which may be absent.
pub(super) fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// True when the connection's reader is too slow: its mailbox is still over its bound after the
/// stream took what it has room for, and the socket takes nothing (or took too little for longer
/// than `grace`: its senders wait meanwhile). See [`Mailbox::too_slow`].
pub(super) fn too_slow(mailbox: &Mailbox, out: &Output, grace: Duration) -> bool {
    mailbox.too_slow(out.blocked, grace)
}

/// True when the mesh, the store's queue and every recipient on this shard (other than `own`)
/// have room; otherwise false, and the task is woken once they do: what a connection checks before
/// it reads more input or hands stanzas back.
pub(super) fn has_room(ctx: &ShardCtx, own: &Rc<Mailbox>, cx: &Context<'_>) -> bool {
    ctx.mesh.poll_room(cx) && ctx.jobs.poll_room(cx) && recipients_have_room(ctx, own, cx)
}

/// False (and woken later) while a mailbox on this shard, other than `own`, is over its bound.
fn recipients_have_room(ctx: &ShardCtx, own: &Rc<Mailbox>, cx: &Context<'_>) -> bool {
    let pressured = ctx.shard.borrow_mut().pressured(Some(own));
    match pressured {
        Some(mb) => mb.poll_room(cx).is_ready(),
        None => true,
    }
}

/// A connection task's future that catches a panic inside it instead of unwinding further: one
/// connection's bug must not take its shard, and every other connection there, down with it.
/// Awaited where it is made (`log_panic(catch(fut).await, ..)`): a wrapping `async fn` would keep
/// the future twice in its task, once as its argument and once as the future it awaits.
pub(crate) fn catch<F: std::future::Future<Output = ()>>(
    fut: F,
) -> futures_lite::future::CatchUnwind<std::panic::AssertUnwindSafe<F>> {
    futures_lite::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(fut))
}

/// Logs the panic [`catch`] caught, if any.
pub(crate) fn log_panic(caught: std::thread::Result<()>, what: &str, shard: u16, conn: u64) {
    if caught.is_err() {
        tracing::error!(shard, conn, "{what} task panicked; connection dropped");
    }
}
