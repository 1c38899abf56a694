//! The byte plumbing both s2s directions share: TLS records in, plaintext to the scanner one
//! element at a time during negotiation (so a restart finds the following bytes unparsed), whole
//! reads once streaming; plaintext out, encoded for the wire.

use std::time::{Duration, Instant};

use crate::c2s::on_wire::OnTheWire;
use crate::c2s::transport::{shrink, Placed, PlainRead, TlsFailure, Transport};
use crate::xml::{Event, Limits, Scanner, XmlError};

/// The byte and event API both stream types offer the driver alike (fields `io`, `timers`,
/// `events`, `closed`); `$event` is the type of their events.
macro_rules! io_api {
    ($event:ty) => {
        /// Raw bytes read from the socket (TLS records under TLS).
        pub fn handle_input(&mut self, bytes: &[u8], now: std::time::Instant) {
            self.timers.input(now);
            super::io::handle_input(self, bytes);
        }

        /// The wall-clock time certificates are checked against from now on: the core reads no
        /// clock. Until set it is the Unix epoch, at which no certificate is valid.
        pub fn set_wall_clock(&mut self, now: rustls::pki_types::UnixTime) {
            self.wall_clock = now;
        }

        /// Appends the bytes to write to the socket now.
        pub fn take_transmit(&mut self, out: &mut Vec<u8>) {
            self.io.take_transmit(out);
        }

        /// Bytes queued and not yet taken by `take_transmit`.
        pub fn pending_transmit(&self) -> usize {
            self.io.pending()
        }

        /// False while more than `outbound_queue_bytes` wait for `take_transmit`: the driver stops
        /// reading until they are taken. A peer sending requests (`<db:verify/>`) without reading
        /// the answers is held at its socket, not buffered without bound: past the bound, at most
        /// the answers to one read are added.
        pub fn may_read(&self) -> bool {
            self.io.pending() <= self.cfg.outbound_queue_bytes
        }

        /// The next event for the driver.
        pub fn poll_event(&mut self) -> Option<$event> {
            self.events.pop_front()
        }

        /// When `handle_timeout` must be called next (authentication, idle, verify timeouts).
        pub fn next_timeout(&self) -> Option<std::time::Instant> {
            (!self.closed).then(|| self.next_deadline()).flatten()
        }

        /// Nothing more will be read; flush `take_transmit` and close the socket.
        pub fn is_closed(&self) -> bool {
            self.closed
        }
    };
}
pub(super) use io_api;

/// Plaintext read from rustls in chunks of this size (on the stack).
const TLS_READ_CHUNK: usize = 4096;

/// Buffers and layers of one s2s connection.
pub(super) struct Io {
    pub(super) transport: Transport,
    pub(super) scanner: Scanner,
    /// Plaintext received but not yet fed to the scanner.
    pub(super) held: Vec<u8>,
    /// XMPP output not yet encoded for the wire.
    pub(super) out: Vec<u8>,
    /// Bytes ready for the socket.
    pub(super) wire: Vec<u8>,
    /// Where each stanza pushed to `out` ends in the bytes handed to the driver, until its socket
    /// took it (an outgoing stream's; an incoming one pushes none).
    pub(super) on_wire: OnTheWire<()>,
}

/// What a stream state machine gives the shared input loop.
pub(super) trait Machine {
    /// The stream's buffers.
    fn io(&mut self) -> &mut Io;
    /// Nothing more is read once closed.
    fn is_closed(&self) -> bool;
    /// No restart can come any more: whole reads may go to the scanner.
    fn streaming(&self) -> bool;
    /// One scanner event.
    fn on_event(&mut self, ev: Event);
    /// The scanner refused the input.
    fn on_xml_error(&mut self, e: XmlError);
    /// The TLS layer failed.
    fn on_tls_error(&mut self, e: TlsFailure);
    /// The peer sent close_notify.
    fn on_tls_closed(&mut self);
}

impl Io {
    /// Plaintext buffers for a stream in `default_ns`.
    pub(super) fn new(limits: Limits, default_ns: &'static str) -> Io {
        Io {
            transport: Transport::Plain,
            scanner: Scanner::new(limits, default_ns),
            held: Vec::new(),
            out: Vec::new(),
            wire: Vec::new(),
            on_wire: OnTheWire::default(),
        }
    }

    /// Appends the bytes to write to the socket.
    pub(super) fn take_transmit(&mut self, out: &mut Vec<u8>) {
        let base = out.len();
        let on_wire = &mut self.on_wire;
        let used = self
            .transport
            .transmit_placed(&mut self.out, &mut self.wire, out, &mut |p| {
                on_wire.place(Placed {
                    end: p.end - base,
                    ..p
                })
            });
        self.on_wire.handed(out.len() - base, used);
    }

    /// Bytes not yet taken by `take_transmit`.
    pub(super) fn pending(&self) -> usize {
        self.out.len() + self.wire.len()
    }

    /// Moves plaintext output onto the wire now (before a transport switch).
    pub(super) fn flush_plain(&mut self) {
        // `wire` is handed to the driver first at the next `take_transmit`: positions in it are
        // positions past what was handed so far.
        let on_wire = &mut self.on_wire;
        let used = self
            .transport
            .encode_placed(&mut self.out, &mut self.wire, &mut |p| on_wire.place(p));
        self.on_wire.handed(0, used);
    }

    /// The end of the connection: encodes what is left (then close_notify when `notify`), drops input.
    pub(super) fn finish(&mut self, notify: bool) {
        let on_wire = &mut self.on_wire;
        let used = self
            .transport
            .finish_placed(&mut self.out, &mut self.wire, notify, &mut |p| {
                on_wire.place(p)
            });
        self.on_wire.handed(0, used);
        self.held = Vec::new();
        self.scanner.reset();
    }

    /// Plaintext after `<starttls/>` or `<proceed/>` (CVE-2011-0411: it could have been injected).
    pub(super) fn pipelined(&self) -> bool {
        self.scanner.has_buffered() || self.held.iter().any(|b| !b.is_ascii_whitespace())
    }
}

/// Raw bytes read from the socket (TLS records under TLS).
pub(super) fn handle_input<M: Machine>(m: &mut M, bytes: &[u8]) {
    if m.is_closed() || bytes.is_empty() {
        return;
    }
    if !m.io().transport.is_tls() {
        pump(m, bytes);
        return;
    }
    let mut rest = bytes;
    let mut buf = [0u8; TLS_READ_CHUNK];
    while !m.is_closed() {
        let before = rest.len();
        let io = m.io();
        if let Err(e) = io.transport.read_tls(&mut rest, &mut io.wire) {
            m.on_tls_error(e);
            return;
        }
        loop {
            match m.io().transport.read_plain(&mut buf) {
                PlainRead::Data(n) => {
                    pump(m, &buf[..n]);
                    if m.is_closed() {
                        return;
                    }
                }
                PlainRead::Empty => break,
                PlainRead::Closed => {
                    m.on_tls_closed();
                    return;
                }
            }
        }
        if rest.is_empty() || rest.len() == before {
            if !rest.is_empty() {
                // rustls consumed nothing although input remains: it cannot make progress.
                m.on_tls_error(TlsFailure::Input(std::io::ErrorKind::InvalidData.into()));
            }
            return;
        }
    }
}

/// Takes decoded plaintext.
fn pump<M: Machine>(m: &mut M, bytes: &[u8]) {
    let streaming = m.streaming();
    let io = m.io();
    if streaming && io.held.is_empty() {
        io.scanner.feed(bytes);
    } else {
        io.held.extend_from_slice(bytes);
    }
    run(m);
}

/// Processes scanner events and held input until closed or out of input.
pub(super) fn run<M: Machine>(m: &mut M) {
    // Bytes at the front of `held` already fed to the scanner (see c2s `run`).
    let mut fed = 0;
    while !m.is_closed() {
        match m.io().scanner.next_event() {
            Err(e) => {
                m.on_xml_error(e);
                break;
            }
            Ok(Some(ev)) => {
                m.io().held.drain(..fed);
                fed = 0;
                m.on_event(ev);
                continue;
            }
            Ok(None) => {}
        }
        let streaming = m.streaming();
        let io = m.io();
        if fed == io.held.len() {
            break;
        }
        let end = if streaming {
            io.held.len()
        } else {
            let rest = &io.held[fed..];
            fed + memchr::memchr(b'>', rest).map_or(rest.len(), |p| p + 1)
        };
        io.scanner.feed(&io.held[fed..end]);
        fed = end;
    }
    let io = m.io();
    let fed = fed.min(io.held.len());
    io.held.drain(..fed);
    shrink(&mut io.held);
}

/// A timeout that fell due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Due {
    /// The stream is not authenticated in time.
    Auth,
    /// No input for the idle time.
    Idle,
}

/// The deadlines of a stream: authentication until it is done, idleness always.
pub(super) struct Timers {
    auth_deadline: Option<Instant>,
    last_input: Instant,
    idle: Duration,
}

impl Timers {
    /// Timers started `now` (a zero duration disables its timeout).
    pub(super) fn new(auth: Duration, idle: Duration, now: Instant) -> Timers {
        Timers {
            auth_deadline: (!auth.is_zero()).then(|| now + auth),
            last_input: now,
            idle,
        }
    }

    /// Input arrived at `now`.
    pub(super) fn input(&mut self, now: Instant) {
        self.last_input = now;
    }

    /// Authentication is done: its deadline no longer applies.
    pub(super) fn authenticated(&mut self) {
        self.auth_deadline = None;
    }

    /// The next deadline.
    pub(super) fn next(&self) -> Option<Instant> {
        let idle = (!self.idle.is_zero()).then(|| self.last_input + self.idle);
        [self.auth_deadline, idle].into_iter().flatten().min()
    }

    /// The timeout due at `now`, if any.
    pub(super) fn due(&self, now: Instant) -> Option<Due> {
        if self.auth_deadline.is_some_and(|d| now >= d) {
            Some(Due::Auth)
        } else if !self.idle.is_zero() && now >= self.last_input + self.idle {
            Some(Due::Idle)
        } else {
            None
        }
    }
}
