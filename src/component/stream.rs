//! The component stream: header, handshake, the route claim, then stanzas (XEP-0114 §3).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use sha1::{Digest, Sha1};
use subtle::ConstantTimeEq;

use super::{CloseReason, ComponentConfig, ComponentEvent, Overflow, RouteConflict};
use crate::jid::Jid;
use crate::xml::escape::escape_attr_into;
use crate::xml::{Event, Scanner, Stanza, StanzaKind};
use crate::xmpp::{ns, StreamErrorCondition};

/// Input held while the route claim is on its way (at least this, or one stanza).
const MIN_HELD_INPUT: usize = 16 * 1024;

/// Progress of the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for the component's stream header.
    Header,
    /// Header answered; waiting for `<handshake>`.
    Handshake,
    /// Handshake right; waiting for the driver's [`Component::route_result`].
    Claiming,
    /// Route held: stanzas flow both ways.
    Ready,
}

/// One external component stream, sans-IO (see the module docs for the contract).
pub struct Component {
    cfg: Arc<ComponentConfig>,
    scanner: Scanner,
    state: State,
    /// Bytes received while claiming the route, fed to the scanner once it is answered.
    held: Vec<u8>,
    /// Bytes for the socket not yet taken by the driver.
    out: Vec<u8>,
    events: VecDeque<ComponentEvent>,
    stream_id: String,
    /// The domain of the stream header (known, so a secret exists).
    domain: Option<String>,
    auth_deadline: Option<Instant>,
    last_input: Instant,
    header_sent: bool,
    closed: bool,
}

impl Component {
    /// A new stream for a freshly accepted connection.
    pub fn new(cfg: Arc<ComponentConfig>, now: Instant) -> Component {
        let scanner = Scanner::new(cfg.limits, ns::COMPONENT_ACCEPT);
        let auth_deadline = (!cfg.auth_timeout.is_zero()).then(|| now + cfg.auth_timeout);
        let mut c = Component {
            cfg,
            scanner,
            state: State::Header,
            held: Vec::new(),
            out: Vec::new(),
            events: VecDeque::new(),
            stream_id: String::new(),
            domain: None,
            auth_deadline,
            last_input: now,
            header_sent: false,
            closed: false,
        };
        match crate::c2s::random_token() {
            Ok(id) => c.stream_id = id,
            // No randomness: a predictable id would weaken the handshake; refuse the stream.
            Err(_) => c.stream_error(StreamErrorCondition::InternalServerError, None),
        }
        c
    }

    /// Raw bytes read from the socket.
    pub fn handle_input(&mut self, bytes: &[u8], now: Instant) {
        if self.closed || bytes.is_empty() {
            return;
        }
        self.last_input = now;
        if self.state == State::Claiming {
            self.held.extend_from_slice(bytes);
            if self.held.len() > self.cfg.limits.max_stanza_bytes.max(MIN_HELD_INPUT) {
                self.stream_error(
                    StreamErrorCondition::PolicyViolation,
                    Some("too much input during the handshake"),
                );
            }
            return;
        }
        self.scanner.feed(bytes);
        self.run();
    }

    /// Appends the bytes to write to the socket now.
    pub fn take_transmit(&mut self, out: &mut Vec<u8>) {
        if out.is_empty() {
            std::mem::swap(out, &mut self.out);
        } else {
            out.append(&mut self.out);
        }
        if self.out.capacity() > 0 {
            // Idle components keep no output capacity.
            self.out = Vec::new();
        }
    }

    /// Bytes queued and not yet taken by `take_transmit`.
    pub fn pending_transmit(&self) -> usize {
        self.out.len()
    }

    /// The next event for the driver.
    pub fn poll_event(&mut self) -> Option<ComponentEvent> {
        self.events.pop_front()
    }

    /// When `handle_timeout` must be called next (handshake timeout, idle timeout).
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
        if self.auth_deadline.is_some_and(|d| now >= d) {
            self.stream_error(
                StreamErrorCondition::ConnectionTimeout,
                Some("handshake timeout"),
            );
        } else if !self.cfg.idle_timeout.is_zero() && now >= self.last_input + self.cfg.idle_timeout
        {
            self.stream_error(
                StreamErrorCondition::ConnectionTimeout,
                Some("idle timeout"),
            );
        }
    }

    /// The answer to [`ComponentEvent::Authenticated`]: the route is ours (`<handshake/>`, stanzas
    /// flow) or another connection holds the domain (stream error `conflict`).
    pub fn route_result(&mut self, r: Result<(), RouteConflict>) {
        if self.closed || self.state != State::Claiming {
            return;
        }
        match r {
            Ok(()) => {
                self.out.extend_from_slice(b"<handshake/>");
                self.state = State::Ready;
                self.auth_deadline = None;
                let held = std::mem::take(&mut self.held);
                self.scanner.feed(&held);
                self.run();
            }
            Err(RouteConflict) => self.stream_error(
                StreamErrorCondition::Conflict,
                Some("this component domain is already connected"),
            ),
        }
    }

    /// Queues a routed stanza for the component. Past `outbound_queue_bytes` the stream closes with
    /// policy-violation ("slow reader"); the error itself may exceed the bound by its own size.
    pub fn deliver(&mut self, stanza: &[u8]) -> Result<(), Overflow> {
        if self.closed || self.state != State::Ready {
            return Err(Overflow);
        }
        if !self.out.is_empty() && self.out.len() + stanza.len() > self.cfg.outbound_queue_bytes {
            self.stream_error(StreamErrorCondition::PolicyViolation, Some("slow reader"));
            return Err(Overflow);
        }
        self.out.extend_from_slice(stanza);
        Ok(())
    }

    /// Bytes of stanzas the stream can take now (unbounded while nothing is queued, so that one
    /// stanza larger than the bound does not wait forever).
    pub fn room(&self) -> usize {
        if self.out.is_empty() {
            usize::MAX
        } else {
            self.cfg.outbound_queue_bytes.saturating_sub(self.out.len())
        }
    }

    /// The bound of output not yet taken (`outbound_queue_bytes`): past it the driver stops reading.
    pub fn output_bound(&self) -> usize {
        self.cfg.outbound_queue_bytes
    }

    /// Server-side close: a stream error when `cond` is given, then `</stream:stream>`.
    pub fn close(&mut self, cond: Option<StreamErrorCondition>, text: Option<&str>) {
        match cond {
            Some(cond) => self.stream_error(cond, text),
            None if !self.closed => {
                if self.header_sent {
                    self.out.extend_from_slice(b"</stream:stream>");
                }
                self.finish(CloseReason::ServerClosed);
            }
            None => {}
        }
    }

    /// The socket reached EOF or failed: nothing more can be read or written.
    pub fn peer_closed(&mut self) {
        self.finish(CloseReason::Disconnected);
    }

    /// Nothing more will be read; flush `take_transmit` and close the socket.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// True once the route is held and stanzas flow.
    pub fn is_ready(&self) -> bool {
        self.state == State::Ready && !self.closed
    }

    /// The id of the stream (the handshake's salt).
    pub fn stream_id(&self) -> &str {
        &self.stream_id
    }

    /// The component's domain, once its header named a configured one.
    pub fn domain(&self) -> Option<&str> {
        self.domain.as_deref()
    }

    // ---- input ----

    fn run(&mut self) {
        while !self.closed && self.state != State::Claiming {
            match self.scanner.next_event() {
                Err(e) => self.stream_error(e.condition(), None),
                Ok(Some(ev)) => self.on_event(ev),
                Ok(None) => break,
            }
        }
    }

    fn on_event(&mut self, ev: Event) {
        match ev {
            Event::StreamOpen(h) if self.state == State::Header => self.on_header(h.to),
            Event::StreamOpen(_) => self.stream_error(StreamErrorCondition::BadFormat, None),
            Event::Stanza(_) if self.state == State::Header => {
                self.stream_error(StreamErrorCondition::BadFormat, None)
            }
            Event::Stanza(s) if self.state == State::Handshake => self.on_handshake(&s),
            Event::Stanza(s) => self.on_stanza(s),
            Event::StreamClose => {
                self.out.extend_from_slice(b"</stream:stream>");
                self.finish(CloseReason::PeerClosed);
            }
            Event::Whitespace => {}
        }
    }

    fn on_header(&mut self, to: Option<String>) {
        let domain = to.map(|d| d.to_ascii_lowercase());
        let known = domain
            .as_deref()
            .filter(|d| self.cfg.secrets.contains_key(*d));
        let Some(domain) = known.map(str::to_owned) else {
            self.stream_error(
                StreamErrorCondition::HostUnknown,
                Some("no component is configured for this domain"),
            );
            return;
        };
        self.write_header(Some(&domain));
        self.domain = Some(domain);
        self.state = State::Handshake;
    }

    fn on_handshake(&mut self, s: &Stanza) {
        let is_handshake =
            s.name() == "handshake" && s.xmlns().is_none_or(|x| x == ns::COMPONENT_ACCEPT);
        if !is_handshake {
            self.stream_error(StreamErrorCondition::NotAuthorized, Some("handshake first"));
            return;
        }
        let given = s.tree().map(|t| t.text()).unwrap_or_default();
        let domain = self.domain.clone().unwrap_or_default();
        let ok = self
            .cfg
            .secrets
            .get(&domain)
            .is_some_and(|secret| handshake_matches(&self.stream_id, secret, given.trim()));
        if ok {
            self.state = State::Claiming;
            self.events
                .push_back(ComponentEvent::Authenticated { domain });
        } else {
            self.stream_error(StreamErrorCondition::NotAuthorized, None);
        }
    }

    fn on_stanza(&mut self, s: Stanza) {
        if s.kind() == StanzaKind::Other {
            self.stream_error(StreamErrorCondition::UnsupportedStanzaType, None);
            return;
        }
        let domain = self.domain.as_deref().unwrap_or("");
        let from_ok = s
            .from()
            .and_then(|f| Jid::parse(&f).ok())
            .is_some_and(|f| f.domain() == domain);
        if !from_ok {
            self.stream_error(
                StreamErrorCondition::InvalidFrom,
                Some("from must be the component's domain or a JID at it"),
            );
            return;
        }
        if s.to().is_none() {
            self.stream_error(
                StreamErrorCondition::ImproperAddressing,
                Some("stanzas from a component need a to"),
            );
            return;
        }
        self.events
            .push_back(ComponentEvent::Stanza(s.into_client_ns()));
    }

    // ---- output and closing ----

    /// XEP-0114 §3: the answer carries `from` (the component's domain) and the handshake's `id`.
    fn write_header(&mut self, from: Option<&str>) {
        self.out
            .extend_from_slice(b"<?xml version='1.0'?><stream:stream xmlns='");
        self.out.extend_from_slice(ns::COMPONENT_ACCEPT.as_bytes());
        self.out.extend_from_slice(b"' xmlns:stream='");
        self.out.extend_from_slice(ns::STREAMS.as_bytes());
        self.out.extend_from_slice(b"' id='");
        escape_attr_into(&self.stream_id, &mut self.out);
        if let Some(from) = from {
            self.out.extend_from_slice(b"' from='");
            escape_attr_into(from, &mut self.out);
        }
        self.out.extend_from_slice(b"'>");
        self.header_sent = true;
    }

    fn stream_error(&mut self, cond: StreamErrorCondition, text: Option<&str>) {
        if self.closed {
            return;
        }
        if !self.header_sent {
            // RFC 6120 §4.9.1.2: an error before our header still opens the stream first.
            self.write_header(None);
        }
        cond.write_close(text, &mut self.out);
        self.finish(CloseReason::StreamError(cond));
    }

    fn finish(&mut self, reason: CloseReason) {
        if self.closed {
            return;
        }
        self.closed = true;
        self.held = Vec::new();
        self.scanner.reset();
        self.events.push_back(ComponentEvent::Closed { reason });
    }
}

/// XEP-0114 §3: the handshake is hex(SHA-1(stream id || secret)), compared in constant time (hex
/// digits in either case).
pub(super) fn handshake_matches(stream_id: &str, secret: &str, given: &str) -> bool {
    let expected = handshake_digest(stream_id, secret);
    let given = given.to_ascii_lowercase();
    bool::from(expected.as_bytes().ct_eq(given.as_bytes()))
}

/// The handshake value a component sends for `stream_id` and `secret` (lowercase hex).
pub fn handshake_digest(stream_id: &str, secret: &str) -> String {
    let mut h = Sha1::new();
    h.update(stream_id.as_bytes());
    h.update(secret.as_bytes());
    h.finalize()
        .iter()
        .fold(String::with_capacity(40), |mut s, b| {
            use std::fmt::Write;
            // Writing to a String cannot fail.
            let _ = write!(s, "{b:02x}");
            s
        })
}
