//! What sits between a connection's socket bytes and its `C2s`.

use std::time::Instant;

use crate::c2s::C2s;
use crate::web::ws::WsLink;

/// The byte link of a c2s connection.
pub enum Link {
    /// The socket carries the XML stream itself (TCP, with or without TLS inside the c2s).
    Raw,
    /// The socket carries WebSocket frames (RFC 7395).
    Ws(Box<WsLink>),
}

impl Link {
    /// Socket bytes in: the c2s reads what they carry.
    pub fn input(&mut self, bytes: &[u8], c2s: &mut C2s, now: Instant) {
        match self {
            Link::Raw => c2s.handle_input(bytes, now),
            Link::Ws(ws) => ws.input(bytes, c2s, now),
        }
    }

    /// The socket took the first `total` bytes [`Link::output`] gave: the c2s learns which of its
    /// routed stanzas are on their way.
    pub fn written(&mut self, c2s: &mut C2s, total: u64) {
        match self {
            Link::Raw => c2s.wire_written(total),
            Link::Ws(ws) => ws.written(c2s, total),
        }
    }

    /// The c2s's output, as socket bytes, appended to `out`.
    pub fn output(&mut self, c2s: &mut C2s, out: &mut Vec<u8>) {
        match self {
            Link::Raw => c2s.take_transmit(out),
            Link::Ws(ws) => ws.output(c2s, out),
        }
    }
}
