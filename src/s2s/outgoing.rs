//! A connection we open to a remote server: we are the originating server (authenticating `local`
//! to `remote` by SASL EXTERNAL or dialback, then sending stanzas) and the receiving server asking
//! the remote's authoritative server to verify dialback keys (`<db:verify/>`).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use super::error::{PushError, S2sOutFailure};
use super::io::{self, Io, Machine};
use super::{AuthMethod, S2sConfig, S2sOutEvent, NS_SERVER};
use crate::c2s::transport::TlsFailure;
use crate::xml::{Event, XmlError};
use crate::xmpp::StreamErrorCondition;

/// Most `request_verify` calls waiting for their answer on one stream.
pub(super) const MAX_VERIFIES: usize = 32;

/// Where the negotiation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// Waiting for the remote's stream header.
    Header,
    /// Waiting for `<stream:features/>`.
    Features,
    /// `<starttls/>` sent, waiting for `<proceed/>`.
    Starttls,
    /// `<auth mechanism='EXTERNAL'/>` sent, waiting for success or failure.
    Sasl,
    /// `<db:result/>` sent, waiting for its answer.
    Dialback,
    /// Authenticated: stanzas flow.
    Ready,
}

/// One outgoing server-to-server stream, sans-IO (see the module docs for the contract).
pub struct S2sOut {
    pub(super) cfg: Arc<S2sConfig>,
    pub(super) local: String,
    pub(super) remote: String,
    pub(super) io: Io,
    pub(super) events: VecDeque<S2sOutEvent>,
    pub(super) phase: Phase,
    /// The remote's stream id (dialback keys are computed over it).
    pub(super) stream_id: String,
    /// Past TLS (or TLS not needed) and the features: `<db:verify/>` may be sent.
    pub(super) negotiated: bool,
    /// `<db:verify/>` elements waiting for `negotiated`.
    pub(super) verify_queue: Vec<u8>,
    /// Ids of the `<db:verify/>` sent or queued and not answered yet.
    pub(super) verifies: Vec<String>,
    pub(super) auth_deadline: Option<Instant>,
    pub(super) last_input: Instant,
    pub(super) now: Instant,
    pub(super) closed: bool,
}

impl S2sOut {
    /// A new stream from `local` to `remote` over a fresh plaintext connection; our header is
    /// queued at once.
    pub fn new(cfg: Arc<S2sConfig>, local: String, remote: String, now: Instant) -> S2sOut {
        S2sOut::open(cfg, local, remote, now, false)
    }

    /// Like [`S2sOut::new`] over a connection that starts with the TLS handshake (XEP-0368).
    pub fn new_direct_tls(
        cfg: Arc<S2sConfig>,
        local: String,
        remote: String,
        now: Instant,
    ) -> S2sOut {
        S2sOut::open(cfg, local, remote, now, true)
    }

    fn open(
        cfg: Arc<S2sConfig>,
        local: String,
        remote: String,
        now: Instant,
        direct_tls: bool,
    ) -> S2sOut {
        let auth_deadline = (!cfg.auth_timeout.is_zero()).then(|| now + cfg.auth_timeout);
        let io = Io::new(cfg.limits, NS_SERVER);
        let mut s = S2sOut {
            cfg,
            local,
            remote,
            io,
            events: VecDeque::new(),
            phase: Phase::Header,
            stream_id: String::new(),
            negotiated: false,
            verify_queue: Vec::new(),
            verifies: Vec::new(),
            auth_deadline,
            last_input: now,
            now,
            closed: false,
        };
        s.start(direct_tls);
        s
    }

    /// Raw bytes read from the socket (TLS records under TLS).
    pub fn handle_input(&mut self, bytes: &[u8], now: Instant) {
        if self.closed || bytes.is_empty() {
            return;
        }
        self.last_input = now;
        self.now = now;
        io::handle_input(self, bytes);
    }

    /// Appends the bytes to write to the socket now.
    pub fn take_transmit(&mut self, out: &mut Vec<u8>) {
        self.io.take_transmit(out);
    }

    /// Bytes queued and not yet taken by `take_transmit`.
    pub fn pending_transmit(&self) -> usize {
        self.io.pending()
    }

    /// The next event for the driver.
    pub fn poll_event(&mut self) -> Option<S2sOutEvent> {
        self.events.pop_front()
    }

    /// When `handle_timeout` must be called next (authentication, then idle timeout).
    pub fn next_timeout(&self) -> Option<Instant> {
        if self.closed {
            return None;
        }
        let idle =
            (!self.cfg.idle_timeout.is_zero()).then(|| self.last_input + self.cfg.idle_timeout);
        [self.auth_deadline, idle].into_iter().flatten().min()
    }

    /// Fires the timeouts due at `now`: authentication not done in time fails with `Timeout`; an
    /// idle ready stream is closed cleanly (`LocalClose`).
    pub fn handle_timeout(&mut self, _now: Instant) {
        todo!()
    }

    /// True once authenticated: stanzas may be pushed.
    pub fn is_ready(&self) -> bool {
        !self.closed && self.phase == Phase::Ready
    }

    /// Queues one stanza (serialized, unprefixed `message`/`presence`/`iq` with `from` in `local`
    /// and `to` in `remote`). Refused before `Ready`, once closed, or past `outbound_queue_bytes`.
    pub fn push_stanza(&mut self, _stanza: &[u8]) -> Result<(), PushError> {
        todo!()
    }

    /// True when `len` more bytes fit in the outbound queue.
    pub fn has_room(&self, len: usize) -> bool {
        !self.closed && self.io.pending() + len <= self.cfg.outbound_queue_bytes
    }

    /// Asks the remote (authoritative) server whether `key` is its dialback key for the stream
    /// `id` it opened to `local`: `<db:verify from=local to=remote id=id>key</db:verify>`, sent as
    /// soon as this stream is past TLS and features (even before it is authenticated itself). The
    /// answer comes as `S2sOutEvent::Verified { id, .. }`.
    pub fn request_verify(&mut self, _id: &str, _key: &str) -> Result<(), PushError> {
        todo!()
    }

    /// Closes the stream: a stream error when `cond` is given, then `</stream:stream>`.
    pub fn close(&mut self, _cond: Option<StreamErrorCondition>) {
        todo!()
    }

    /// The socket reached EOF or failed (connect failure included).
    pub fn peer_closed(&mut self) {
        self.fail(S2sOutFailure::Io, false);
    }

    /// Nothing more will be read; flush `take_transmit` and close the socket.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Our domain.
    pub fn local(&self) -> &str {
        &self.local
    }

    /// The remote domain.
    pub fn remote(&self) -> &str {
        &self.remote
    }

    /// The remote's stream id (empty before its header).
    pub fn stream_id(&self) -> &str {
        &self.stream_id
    }

    // ---- internals ----

    fn start(&mut self, _direct_tls: bool) {
        todo!()
    }

    fn fail(&mut self, reason: S2sOutFailure, notify: bool) {
        if self.closed {
            return;
        }
        self.closed = true;
        self.io.finish(notify);
        self.verifies.clear();
        self.events.push_back(S2sOutEvent::Closed { reason });
    }

    fn _auth_method_used(_m: AuthMethod) {}
}

impl Machine for S2sOut {
    fn io(&mut self) -> &mut Io {
        &mut self.io
    }

    fn is_closed(&self) -> bool {
        self.closed
    }

    fn streaming(&self) -> bool {
        self.phase == Phase::Ready
    }

    fn on_event(&mut self, _ev: Event) {
        todo!()
    }

    fn on_xml_error(&mut self, _e: XmlError) {
        todo!()
    }

    fn on_tls_error(&mut self, e: TlsFailure) {
        self.fail(S2sOutFailure::Tls(e.to_string()), false);
    }

    fn on_tls_closed(&mut self) {
        self.fail(S2sOutFailure::PeerClosed, true);
    }
}
