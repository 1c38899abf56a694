//! What sits between a connection's socket bytes and its `C2s`.

use std::cell::Cell;
use std::rc::Rc;
use std::task::{Context, Waker};
use std::time::Instant;

use crate::c2s::C2s;
use crate::web::ws::WsLink;

/// The byte link of a c2s connection.
pub enum Link {
    /// The socket carries the XML stream itself (TCP, with or without TLS inside the c2s).
    Raw,
    /// The socket carries WebSocket frames (RFC 7395).
    Ws(Box<WsLink>),
    /// A BOSH session carries the stream (XEP-0206): the bytes it takes reach the client only
    /// once the client shows it received their response, which it reports here.
    Bosh(Rc<Confirmed>),
}

/// How much of a stream's output its peer is known to have received, where taking the bytes is
/// not delivering them (BOSH). Set by the side that learns it, read by the connection's driver.
#[derive(Default)]
pub struct Confirmed {
    /// Output bytes received, counted as the driver counts what it wrote.
    upto: Cell<u64>,
    /// What the driver last applied (`Link::written`).
    applied: Cell<u64>,
    waker: Cell<Option<Waker>>,
    /// The stream bound a resource (set by the driver; the BOSH session then counts as
    /// authenticated).
    bound: Cell<bool>,
}

impl Confirmed {
    /// Whether the stream has bound a resource.
    pub fn is_bound(&self) -> bool {
        self.bound.get()
    }

    /// The peer received the first `upto` bytes: wakes the driver if that is news.
    pub fn set(&self, upto: u64) {
        if upto > self.upto.get() {
            self.upto.set(upto);
            if let Some(w) = self.waker.take() {
                w.wake();
            }
        }
    }
}

impl Link {
    /// Socket bytes in: the c2s reads what they carry.
    pub fn input(&mut self, bytes: &[u8], c2s: &mut C2s, now: Instant) {
        match self {
            Link::Raw | Link::Bosh(_) => c2s.handle_input(bytes, now),
            Link::Ws(ws) => ws.input(bytes, c2s, now),
        }
    }

    /// The socket took the first `total` bytes [`Link::output`] gave: the c2s learns which of its
    /// routed stanzas are on their way.
    pub fn written(&mut self, c2s: &mut C2s, total: u64) {
        match self {
            Link::Raw => c2s.wire_written(total),
            Link::Ws(ws) => ws.written(c2s, total),
            Link::Bosh(c) => {
                c.applied.set(c.upto.get());
                c2s.wire_written(total.min(c.upto.get()));
            }
        }
    }

    /// True when the peer confirmed output since the last [`Link::written`] (call it then);
    /// otherwise `cx` is woken when it does. Always false where writing is delivering.
    pub fn poll_confirmed(&self, cx: &Context<'_>) -> bool {
        let Link::Bosh(c) = self else {
            return false;
        };
        if c.upto.get() > c.applied.get() {
            return true;
        }
        c.waker.set(Some(cx.waker().clone()));
        false
    }

    /// Socket bytes the link itself holds for the peer, not yet given to the driver: control
    /// frames (pongs, a close reply) queued while reading. Counted as output waiting, so a peer
    /// that sends pings and never reads stops being read (RFC 6455 §5.5.3 lets pongs wait).
    pub fn pending_output(&self) -> usize {
        match self {
            Link::Raw | Link::Bosh(_) => 0,
            Link::Ws(ws) => ws.pending_output(),
        }
    }

    /// The stream bound a resource.
    pub fn bound(&self) {
        if let Link::Bosh(c) = self {
            c.bound.set(true);
        }
    }

    /// The c2s's output, as socket bytes, appended to `out`.
    pub fn output(&mut self, c2s: &mut C2s, out: &mut Vec<u8>) {
        match self {
            Link::Raw | Link::Bosh(_) => c2s.take_transmit(out),
            Link::Ws(ws) => ws.output(c2s, out),
        }
    }
}
