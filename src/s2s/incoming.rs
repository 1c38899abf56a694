//! An accepted s2s connection: we are the receiving server (the peer authenticates its domains by
//! dialback or SASL EXTERNAL, then sends stanzas) and the authoritative server for our domains
//! (answering `<db:verify/>`).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use super::error::CloseReason;
use super::io::{self, Io, Machine};
use super::{AuthMethod, S2sConfig, S2sInEvent, NS_SERVER};
use crate::c2s::transport::TlsFailure;
use crate::xml::{Event, XmlError};
use crate::xmpp::StreamErrorCondition;

/// Most (remote, local) pairs authenticated on one stream (piggybacking); further dialback
/// requests are answered with a `resource-constraint` error.
pub(super) const MAX_AUTHENTICATED: usize = 32;
/// Most dialback requests waiting for `dialback_verified` at once; further ones get
/// `resource-constraint`.
pub(super) const MAX_PENDING: usize = 8;

/// One incoming server-to-server stream, sans-IO (see the module docs for the contract).
pub struct S2sIn {
    pub(super) cfg: Arc<S2sConfig>,
    pub(super) peer: SocketAddr,
    pub(super) io: Io,
    pub(super) events: VecDeque<S2sInEvent>,
    pub(super) stream_id: String,
    /// Our domain, from the first header's `to`.
    pub(super) local: Option<String>,
    /// The header's `from` (the domain SASL EXTERNAL authenticates).
    pub(super) remote: Option<String>,
    pub(super) awaiting_header: bool,
    pub(super) header_sent: bool,
    /// The peer's certificate is valid for `remote` (computed at the first header after TLS).
    pub(super) cert_valid: bool,
    /// SASL EXTERNAL succeeded: the restarted stream carries stanzas.
    pub(super) sasl_done: bool,
    /// (remote, local) pairs allowed to send stanzas.
    pub(super) authenticated: Vec<(String, String)>,
    /// (remote, local) pairs whose dialback key is being verified.
    pub(super) pending: Vec<(String, String)>,
    pub(super) auth_deadline: Option<Instant>,
    pub(super) last_input: Instant,
    pub(super) now: Instant,
    pub(super) closed: bool,
    pub(super) dynamic_hosts: Option<crate::shard::DynamicHosts>,
}

impl S2sIn {
    /// A new stream for a freshly accepted connection (direct TLS listener: the handshake first).
    pub fn new(cfg: Arc<S2sConfig>, peer: SocketAddr, now: Instant) -> S2sIn {
        let auth_deadline = (!cfg.auth_timeout.is_zero()).then(|| now + cfg.auth_timeout);
        let io = Io::new(cfg.limits, NS_SERVER);
        let mut s = S2sIn {
            cfg,
            peer,
            io,
            events: VecDeque::new(),
            stream_id: String::new(),
            local: None,
            remote: None,
            awaiting_header: true,
            header_sent: false,
            cert_valid: false,
            sasl_done: false,
            authenticated: Vec::new(),
            pending: Vec::new(),
            auth_deadline,
            last_input: now,
            now,
            closed: false,
            dynamic_hosts: None,
        };
        s.start(now);
        s
    }

    /// Also accepts the domains of `hosts` (the shard's run-time domains) as ours.
    pub fn set_dynamic_hosts(&mut self, hosts: crate::shard::DynamicHosts) {
        self.dynamic_hosts = Some(hosts);
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
    pub fn poll_event(&mut self) -> Option<S2sInEvent> {
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

    /// Fires the timeouts due at `now`: both close the stream with connection-timeout.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.closed {
            return;
        }
        self.now = now;
        if self.auth_deadline.is_some_and(|d| now >= d) {
            self.stream_error(
                StreamErrorCondition::ConnectionTimeout,
                Some("authentication timeout"),
            );
        } else if !self.cfg.idle_timeout.is_zero() && now >= self.last_input + self.cfg.idle_timeout
        {
            self.stream_error(
                StreamErrorCondition::ConnectionTimeout,
                Some("idle timeout"),
            );
        }
    }

    /// The answer to `S2sInEvent::VerifyRequest`: sends `<db:result type='valid'|'invalid'/>`; on
    /// valid, `remote` may send stanzas to `local` on this stream.
    pub fn dialback_verified(&mut self, remote: &str, local: &str, valid: bool) {
        self.answer_verify(remote, local, Some(valid));
    }

    /// The authoritative server of `remote` could not be asked (unreachable, timeout): sends
    /// `<db:result type='error'>` with remote-server-not-found (XEP-0220 §2.4).
    pub fn dialback_failed(&mut self, remote: &str, local: &str) {
        self.answer_verify(remote, local, None);
    }

    /// Closes the stream: a stream error when `cond` is given, then `</stream:stream>` and TLS
    /// close_notify.
    pub fn close(&mut self, cond: Option<StreamErrorCondition>) {
        if self.closed {
            return;
        }
        match cond {
            Some(cond) => self.stream_error(cond, None),
            None => {
                self.close_stream_tag();
                self.finish(CloseReason::LocalClose, true);
            }
        }
    }

    /// The socket reached EOF or failed: nothing more can be read or written.
    pub fn peer_closed(&mut self) {
        if !self.closed {
            self.finish(CloseReason::Disconnected, false);
        }
    }

    /// Nothing more will be read; flush `take_transmit` and close the socket.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// The id of the current stream (a new one after each restart).
    pub fn stream_id(&self) -> &str {
        &self.stream_id
    }

    /// The remote socket address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// The (remote, local) domain pairs authenticated on this stream.
    pub fn authenticated(&self) -> impl Iterator<Item = (&str, &str)> {
        self.authenticated
            .iter()
            .map(|(r, l)| (r.as_str(), l.as_str()))
    }

    // ---- internals (stream.rs-like) ----

    fn start(&mut self, _now: Instant) {
        todo!()
    }

    fn answer_verify(&mut self, _remote: &str, _local: &str, _valid: Option<bool>) {
        todo!()
    }

    fn stream_error(&mut self, _cond: StreamErrorCondition, _text: Option<&str>) {
        todo!()
    }

    fn close_stream_tag(&mut self) {
        todo!()
    }

    fn finish(&mut self, reason: CloseReason, notify: bool) {
        if self.closed {
            return;
        }
        self.closed = true;
        self.io.finish(notify);
        self.pending.clear();
        self.events.push_back(S2sInEvent::Closed { reason });
    }

    fn _auth_method_used(_m: AuthMethod) {}
}

impl Machine for S2sIn {
    fn io(&mut self) -> &mut Io {
        &mut self.io
    }

    fn is_closed(&self) -> bool {
        self.closed
    }

    fn streaming(&self) -> bool {
        !self.awaiting_header && !self.authenticated.is_empty()
    }

    fn on_event(&mut self, _ev: Event) {
        todo!()
    }

    fn on_xml_error(&mut self, e: XmlError) {
        self.stream_error(e.condition(), None);
    }

    fn on_tls_error(&mut self, _e: TlsFailure) {
        self.finish(CloseReason::Tls, false);
    }

    fn on_tls_closed(&mut self) {
        self.close_stream_tag();
        self.finish(CloseReason::PeerClosed, true);
    }
}
