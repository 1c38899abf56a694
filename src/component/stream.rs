//! The component stream: header, handshake, the route claim, then stanzas (XEP-0114 §3).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use sha1::{Digest, Sha1};
use subtle::ConstantTimeEq;

use super::{
    CloseReason, ComponentConfig, ComponentEvent, Overflow, RouteConflict, HANDSHAKE_FAIL_DELAY,
};
use crate::jid::{BareJid, Jid};
use crate::xml::escape::escape_attr_into;
use crate::xml::{Event, Scanner, Stanza, StanzaKind};
use crate::xmpp::{ns, StreamErrorCondition};

/// Input held while the route claim is on its way (at least this, or one stanza).
const MIN_HELD_INPUT: usize = 16 * 1024;

/// The answer to a handshake whose route claim succeeded.
const HANDSHAKE_OK: &[u8] = b"<handshake/>";

/// The id of the server's XEP-0199 pings; their answers end here (never routed).
const PING_ID: &str = "petrel-component-ping";

/// Progress of the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for the component's stream header.
    Header,
    /// Header answered; waiting for `<handshake>`.
    Handshake,
    /// Handshake right; waiting for the driver's [`Component::route_result`].
    Claiming,
    /// Handshake wrong; `not-authorized` goes at this time (input ignored until then).
    Refusing(Instant),
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
    /// Bytes handed to the driver by `take_transmit` so far (where `deliver` places a stanza).
    handed: u64,
    events: VecDeque<ComponentEvent>,
    stream_id: String,
    /// The domain of the stream header (known, so a secret exists).
    domain: Option<String>,
    auth_deadline: Option<Instant>,
    last_input: Instant,
    /// When the unanswered ping went (no input since).
    ping_sent: Option<Instant>,
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
            handed: 0,
            events: VecDeque::new(),
            stream_id: String::new(),
            domain: None,
            auth_deadline,
            last_input: now,
            ping_sent: None,
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
        if matches!(self.state, State::Refusing(_)) {
            // A refused guesser's input is not read (nor counted as activity).
            return;
        }
        self.last_input = now;
        self.ping_sent = None;
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
        self.handed += self.out.len() as u64;
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

    /// When `handle_timeout` must be called next (handshake timeout, idle timeout, ping).
    pub fn next_timeout(&self) -> Option<Instant> {
        if self.closed {
            return None;
        }
        let idle =
            (!self.cfg.idle_timeout.is_zero()).then(|| self.last_input + self.cfg.idle_timeout);
        let refusing = match self.state {
            State::Refusing(at) => Some(at),
            _ => None,
        };
        [self.auth_deadline, idle, self.ping_due(), refusing]
            .into_iter()
            .flatten()
            .min()
    }

    /// When the next ping goes (or, once sent, when its wait ends); only while the route is held.
    fn ping_due(&self) -> Option<Instant> {
        if self.state != State::Ready || self.cfg.ping_interval.is_zero() {
            return None;
        }
        Some(match self.ping_sent {
            Some(sent) => sent + self.cfg.ping_timeout,
            None => self.last_input + self.cfg.ping_interval,
        })
    }

    /// Fires the timeouts due at `now`: the handshake and idle timeouts and an unanswered ping close
    /// the stream with connection-timeout; `ping_interval` without input sends a ping.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.closed {
            return;
        }
        if let State::Refusing(at) = self.state {
            if now >= at {
                self.stream_error(StreamErrorCondition::NotAuthorized, None);
            }
            return;
        }
        if self.auth_deadline.is_some_and(|d| now >= d) {
            self.stream_error(
                StreamErrorCondition::ConnectionTimeout,
                Some("handshake timeout"),
            );
        } else if self.ping_due().is_some_and(|d| now >= d) {
            if self.ping_sent.is_some() {
                self.stream_error(
                    StreamErrorCondition::ConnectionTimeout,
                    Some("no answer to ping"),
                );
            } else {
                self.ping(now);
            }
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
                self.out.extend_from_slice(HANDSHAKE_OK);
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
    /// Returns where the stanza ends in the count of bytes `take_transmit` hands out: the stanza
    /// reached the component's socket once the driver wrote that many.
    pub fn deliver(&mut self, stanza: &[u8]) -> Result<u64, Overflow> {
        if self.closed || self.state != State::Ready {
            return Err(Overflow);
        }
        if !self.out.is_empty() && self.out.len() + stanza.len() > self.cfg.outbound_queue_bytes {
            self.stream_error(StreamErrorCondition::PolicyViolation, Some("slow reader"));
            return Err(Overflow);
        }
        self.out.extend_from_slice(stanza);
        Ok(self.handed + self.out.len() as u64)
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

    /// The login throttle banned the peer's address (after a wrong handshake): `policy-violation`
    /// with the time left, at once.
    pub fn banned(&mut self, left: std::time::Duration) {
        let text = format!(
            "Too many failed authentications from this IP address; retry in {} s",
            left.as_secs().max(1)
        );
        self.stream_error(StreamErrorCondition::PolicyViolation, Some(&text));
    }

    /// Bytes of stanzas the driver may hold while the route claim is answered: they are delivered
    /// right after `<handshake/>`, so together they stay within `output_bound` (no slow-reader cut
    /// for a component that has not had a chance to read yet).
    pub fn claim_room(&self) -> usize {
        self.cfg
            .outbound_queue_bytes
            .saturating_sub(HANDSHAKE_OK.len())
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
        // Claiming holds input until the claim is answered; a refused stream reads nothing more.
        while !self.closed && !matches!(self.state, State::Claiming | State::Refusing(_)) {
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
        // Prepared as a JID's domain, as the c2s header's `to` is (case, a trailing dot, Unicode
        // normalization, A-labels: RFC 7622 §3.2); configured domains are kept prepared.
        let domain = to.and_then(|d| BareJid::domain_only(&d).ok());
        let known = domain
            .as_ref()
            .map(BareJid::domain)
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
            // Answered later (HANDSHAKE_FAIL_DELAY, or at once when the address gets banned).
            self.state = State::Refusing(self.last_input + HANDSHAKE_FAIL_DELAY);
            self.auth_deadline = None;
            self.scanner.reset();
            self.events
                .push_back(ComponentEvent::HandshakeFailed { domain });
        }
    }

    fn on_stanza(&mut self, s: Stanza) {
        if s.kind() == StanzaKind::Other {
            self.stream_error(StreamErrorCondition::UnsupportedStanzaType, None);
            return;
        }
        let answer = s.ty().is_response();
        if s.kind() == StanzaKind::Iq && answer && s.id().as_deref() == Some(PING_ID) {
            // The answer to our ping (its input already counted): for no one else.
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

    /// XEP-0199: a ping from the server; any input before `ping_timeout` proves the peer alive.
    fn ping(&mut self, now: Instant) {
        let domain = self.domain.clone().unwrap_or_default();
        self.out.extend_from_slice(b"<iq type='get' id='");
        self.out.extend_from_slice(PING_ID.as_bytes());
        self.out.extend_from_slice(b"' from='");
        escape_attr_into(&self.cfg.server, &mut self.out);
        self.out.extend_from_slice(b"' to='");
        escape_attr_into(&domain, &mut self.out);
        self.out
            .extend_from_slice(b"'><ping xmlns='urn:xmpp:ping'/></iq>");
        self.ping_sent = Some(now);
    }

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
