//! The byte plumbing both s2s directions share: TLS records in, plaintext to the scanner one
//! element at a time during negotiation (so a restart finds the following bytes unparsed), whole
//! reads once streaming; plaintext out, encoded for the wire.

use crate::c2s::transport::{PlainRead, TlsFailure, Transport};
use crate::xml::{Event, Limits, Scanner, XmlError};

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
        }
    }

    /// Appends the bytes to write to the socket.
    pub(super) fn take_transmit(&mut self, out: &mut Vec<u8>) {
        if out.is_empty() {
            std::mem::swap(out, &mut self.wire);
        } else {
            out.append(&mut self.wire);
        }
        self.transport.encode(&mut self.out, out);
        shrink(&mut self.wire);
        shrink(&mut self.out);
    }

    /// Bytes not yet taken by `take_transmit`.
    pub(super) fn pending(&self) -> usize {
        self.out.len() + self.wire.len()
    }

    /// Moves plaintext output onto the wire now (before a transport switch).
    pub(super) fn flush_plain(&mut self) {
        self.transport.encode(&mut self.out, &mut self.wire);
    }

    /// The end of the connection: encodes what is left (then close_notify when `notify`), drops input.
    pub(super) fn finish(&mut self, notify: bool) {
        if self.transport.is_tls() {
            if self.transport.is_handshaking() {
                self.out.clear();
            }
            self.transport.encode(&mut self.out, &mut self.wire);
            if notify {
                self.transport.close_notify(&mut self.wire);
            }
        }
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

/// Frees a drained buffer: idle streams hold no capacity.
pub(super) fn shrink(buf: &mut Vec<u8>) {
    if buf.is_empty() && buf.capacity() > 0 {
        *buf = Vec::new();
    }
}
