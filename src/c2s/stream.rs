//! The c2s stream state machine: stream headers, STARTTLS, SASL, resource binding, then stanzas.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use super::error::{BindError, CloseReason, Overflow};
use super::features::{self, Offer, MECHANISMS};
use super::sasl::{self, SaslRequest};
use super::transport::{PlainRead, Transport};
use super::{reply, C2sConfig, C2sEvent, PeerInfo, TlsMode};
use crate::auth::{Mechanism, SaslFailure, SaslServer, SaslStep, ScramSecrets};
use crate::jid::{BareJid, FullJid};
use crate::xml::{Event, Scanner, Stanza, StanzaKind, StreamHeader};
use crate::xmpp::{ns, StanzaErrorCondition, StreamErrorCondition};

/// RFC 6120 §6.4.5: close the stream after this many SASL failures (the RFC allows 2 to 5).
const MAX_SASL_FAILURES: u8 = 5;
/// Output buffers keep at most this much capacity once drained, so idle sessions stay small.
const KEEP_CAPACITY: usize = 1024;
/// Minimum input held while the stream waits for the driver (auth look-up, bind).
const MIN_HELD_INPUT: usize = 16 * 1024;
/// Plaintext read from rustls in chunks of this size (on the stack, not per session).
const TLS_READ_CHUNK: usize = 4096;
/// Characters of stream ids and generated resources (32 symbols: 5 random bits each, no bias).
const TOKEN_ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// Authentication progress of the stream.
enum Auth {
    /// Not authenticated; a SASL exchange may be running.
    None(Option<Box<SaslServer>>),
    /// SASL done; resource not bound yet.
    Authed(BareJid),
    /// Resource bound: stanzas flow.
    Bound(FullJid),
}

/// An answer the stream waits for from the driver; input is held meanwhile.
enum Wait {
    /// Nothing: input is processed as it comes.
    Nothing,
    /// `provide_secrets` for a SCRAM exchange.
    Secrets,
    /// `plain_verified` for a PLAIN exchange.
    Plain,
    /// `bind_result`, with the id of the bind request.
    Bind(Option<String>),
}

/// One client-to-server stream, sans-IO (see the module docs for the contract).
pub struct C2s {
    cfg: Arc<C2sConfig>,
    peer: PeerInfo,
    transport: Transport,
    scanner: Scanner,
    /// Plaintext received but not yet fed to the scanner (negotiation, or waiting for the driver).
    held: Vec<u8>,
    /// XMPP output not yet encoded for the wire.
    out: Vec<u8>,
    /// Bytes ready for the socket (TLS records, plaintext written before a STARTTLS switch).
    wire: Vec<u8>,
    events: VecDeque<C2sEvent>,
    stream_id: String,
    /// The domain the client asked for in its first header; later headers must repeat it.
    domain: Option<String>,
    /// The client's header for the current stream has not arrived yet.
    awaiting_header: bool,
    /// Our header for the current stream is on its way.
    header_sent: bool,
    auth: Auth,
    wait: Wait,
    sasl_failures: u8,
    auth_deadline: Option<Instant>,
    last_input: Instant,
    closed: bool,
}

impl C2s {
    /// A new stream for a freshly accepted connection (DirectTls mode: the TLS handshake comes first).
    pub fn new(cfg: Arc<C2sConfig>, peer: PeerInfo, now: Instant) -> C2s {
        let scanner = Scanner::new(cfg.limits, ns::CLIENT);
        let auth_deadline = (!cfg.auth_timeout.is_zero()).then(|| now + cfg.auth_timeout);
        let direct_tls = match cfg.tls_mode {
            TlsMode::DirectTls => Some(cfg.tls.clone()),
            _ => None,
        };
        let mut c2s = C2s {
            cfg,
            peer,
            transport: Transport::Plain,
            scanner,
            held: Vec::new(),
            out: Vec::new(),
            wire: Vec::new(),
            events: VecDeque::new(),
            stream_id: String::new(),
            domain: None,
            awaiting_header: true,
            header_sent: false,
            auth: Auth::None(None),
            wait: Wait::Nothing,
            sasl_failures: 0,
            auth_deadline,
            last_input: now,
            closed: false,
        };
        if let Some(tls) = direct_tls {
            match tls.map(Transport::tls) {
                Some(Ok(t)) => c2s.transport = t,
                // DirectTls without a usable rustls config: nothing can be served.
                _ => {
                    c2s.finish(CloseReason::Tls, false);
                    return c2s;
                }
            }
        }
        c2s.new_stream_id();
        c2s
    }

    /// Raw bytes read from the socket (TLS records under TLS).
    pub fn handle_input(&mut self, bytes: &[u8], now: Instant) {
        if self.closed || bytes.is_empty() {
            return;
        }
        self.last_input = now;
        if !self.transport.is_tls() {
            self.pump(bytes);
            return;
        }
        let mut rest = bytes;
        let mut buf = [0u8; TLS_READ_CHUNK];
        while !self.closed {
            let before = rest.len();
            if self.transport.read_tls(&mut rest, &mut self.wire).is_err() {
                self.finish(CloseReason::Tls, false);
                return;
            }
            loop {
                match self.transport.read_plain(&mut buf) {
                    PlainRead::Data(n) => {
                        self.pump(&buf[..n]);
                        if self.closed {
                            return;
                        }
                    }
                    PlainRead::Empty => break,
                    PlainRead::Closed => {
                        self.close_stream_tag();
                        self.finish(CloseReason::ClientClosed, true);
                        return;
                    }
                }
            }
            // rustls consumed nothing although input remains: it cannot make progress.
            if rest.is_empty() || rest.len() == before {
                if !rest.is_empty() {
                    self.finish(CloseReason::Tls, false);
                }
                return;
            }
        }
    }

    /// Appends every byte to write to the socket now (TLS records under TLS).
    pub fn take_transmit(&mut self, out: &mut Vec<u8>) {
        out.append(&mut self.wire);
        self.transport.encode(&mut self.out, out);
        shrink(&mut self.wire);
        shrink(&mut self.out);
    }

    /// Bytes queued and not yet taken by `take_transmit` (plaintext and TLS).
    pub fn pending_transmit(&self) -> usize {
        self.out.len() + self.wire.len()
    }

    /// The next event for the driver.
    pub fn poll_event(&mut self) -> Option<C2sEvent> {
        self.events.pop_front()
    }

    /// When `handle_timeout` must be called next (auth timeout until bound, idle timeout).
    pub fn next_timeout(&self) -> Option<Instant> {
        if self.closed {
            return None;
        }
        let idle = (!self.cfg.idle_timeout.is_zero()).then(|| self.last_input + self.cfg.idle_timeout);
        match (self.auth_deadline, idle) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Fires the timeouts due at `now`: both close the stream with connection-timeout.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.closed {
            return;
        }
        if self.auth_deadline.is_some_and(|d| now >= d) {
            self.stream_error(StreamErrorCondition::ConnectionTimeout, Some("authentication timeout"));
        } else if !self.cfg.idle_timeout.is_zero() && now >= self.last_input + self.cfg.idle_timeout {
            self.stream_error(StreamErrorCondition::ConnectionTimeout, Some("idle timeout"));
        }
    }

    /// The answer to `C2sEvent::NeedSecrets` (`None`: no such user).
    pub fn provide_secrets(&mut self, secrets: Option<ScramSecrets>) {
        if self.closed || !matches!(self.wait, Wait::Secrets) {
            return;
        }
        self.wait = Wait::Nothing;
        if let Auth::None(Some(server)) = &mut self.auth {
            let step = server.provide_secrets(secrets);
            self.on_sasl_step(step);
        }
        self.run();
    }

    /// The answer to `C2sEvent::VerifyPlain`.
    pub fn plain_verified(&mut self, ok: bool) {
        if self.closed || !matches!(self.wait, Wait::Plain) {
            return;
        }
        self.wait = Wait::Nothing;
        if let Auth::None(Some(server)) = &mut self.auth {
            let step = server.plain_verified(ok);
            self.on_sasl_step(step);
        }
        self.run();
    }

    /// The answer to `C2sEvent::BindRequest`: the session manager registered (or refused) the session.
    pub fn bind_result(&mut self, r: Result<FullJid, BindError>) {
        if self.closed {
            return;
        }
        let Wait::Bind(id) = std::mem::replace(&mut self.wait, Wait::Nothing) else {
            return;
        };
        match r {
            Ok(jid) => {
                reply::write_bind_result(&mut self.out, id.as_deref(), jid.as_str());
                self.auth = Auth::Bound(jid);
                self.auth_deadline = None;
            }
            Err(e) => reply::write_iq_error(&mut self.out, id.as_deref(), e.condition()),
        }
        self.run();
    }

    /// Queues a routed stanza for the client. Past `outbound_queue_bytes` the stream closes with
    /// policy-violation ("slow reader"); the error itself may exceed the bound by its own size.
    pub fn deliver(&mut self, stanza: &[u8]) -> Result<(), Overflow> {
        if self.closed {
            return Err(Overflow);
        }
        if self.pending_transmit() + stanza.len() > self.cfg.outbound_queue_bytes {
            self.stream_error(StreamErrorCondition::PolicyViolation, Some("slow reader"));
            return Err(Overflow);
        }
        self.out.extend_from_slice(stanza);
        Ok(())
    }

    /// Server-side close: a stream error when `cond` is given, then `</stream:stream>` and TLS close_notify.
    pub fn close(&mut self, cond: Option<StreamErrorCondition>, text: Option<&str>) {
        if self.closed {
            return;
        }
        match cond {
            Some(cond) => self.stream_error(cond, text),
            None => {
                self.close_stream_tag();
                self.finish(CloseReason::ServerClosed, true);
            }
        }
    }

    /// The socket reached EOF or failed: nothing more can be read or written.
    pub fn peer_closed(&mut self) {
        if !self.closed {
            self.finish(CloseReason::Disconnected, false);
        }
    }

    /// The bound full JID.
    pub fn jid(&self) -> Option<&FullJid> {
        match &self.auth {
            Auth::Bound(jid) => Some(jid),
            _ => None,
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

    /// The domain the client asked for in its stream header (`""` before the header).
    pub fn domain(&self) -> &str {
        self.domain.as_deref().unwrap_or("")
    }

    // ---- input ----

    /// Takes decoded plaintext.
    fn pump(&mut self, bytes: &[u8]) {
        if self.held.is_empty() && matches!(self.wait, Wait::Nothing) && self.is_bound() {
            // Hot path: whole reads go straight to the scanner.
            self.scanner.feed(bytes);
        } else {
            self.held.extend_from_slice(bytes);
            if !matches!(self.wait, Wait::Nothing) && self.held.len() > self.held_cap() {
                self.stream_error(
                    StreamErrorCondition::PolicyViolation,
                    Some("too much input during authentication"),
                );
                return;
            }
        }
        self.run();
    }

    /// Input that may wait for the driver before the stream errors out.
    fn held_cap(&self) -> usize {
        self.cfg.limits.max_stanza_bytes.max(MIN_HELD_INPUT)
    }

    /// Processes scanner events and held input until blocked, closed or out of input.
    fn run(&mut self) {
        while !self.closed && matches!(self.wait, Wait::Nothing) {
            match self.scanner.next_event() {
                Err(e) => {
                    self.stream_error(e.condition(), None);
                    break;
                }
                Ok(Some(ev)) => {
                    self.on_event(ev);
                    continue;
                }
                Ok(None) => {}
            }
            if self.held.is_empty() {
                break;
            }
            if self.is_bound() {
                self.scanner.feed(&self.held);
                self.held.clear();
            } else {
                // During negotiation feed one '>' at a time so that a restart (STARTTLS, SASL success)
                // or a wait for the driver finds the bytes after the element still here, unparsed.
                let end = memchr::memchr(b'>', &self.held).map_or(self.held.len(), |p| p + 1);
                self.scanner.feed(&self.held[..end]);
                self.held.drain(..end);
            }
        }
        if self.held.is_empty() && self.held.capacity() > 0 {
            self.held = Vec::new();
        }
    }

    fn on_event(&mut self, ev: Event) {
        match ev {
            Event::StreamOpen(h) if self.awaiting_header => self.on_header(h),
            Event::StreamOpen(_) => self.stream_error(StreamErrorCondition::BadFormat, None),
            Event::Stanza(_) if self.awaiting_header => {
                self.stream_error(StreamErrorCondition::BadFormat, None)
            }
            Event::Stanza(s) => self.on_element(s),
            Event::StreamClose => {
                self.close_stream_tag();
                self.finish(CloseReason::ClientClosed, true);
            }
            Event::Whitespace => {}
        }
    }

    // ---- stream header and features ----

    fn on_header(&mut self, h: StreamHeader) {
        self.awaiting_header = false;
        let host = h.to.as_deref().and_then(|to| {
            self.cfg
                .hosts
                .iter()
                .position(|host| host.eq_ignore_ascii_case(to))
        });
        let from = host
            .and_then(|i| self.cfg.hosts.get(i))
            .or(self.domain.as_ref())
            .or(self.cfg.hosts.first())
            .cloned();
        features::write_header(&mut self.out, &self.stream_id, from.as_deref(), h.from.as_deref());
        self.header_sent = true;
        if !h.version.as_deref().is_some_and(version_at_least_1) {
            self.stream_error(StreamErrorCondition::UnsupportedVersion, None);
            return;
        }
        let Some(host) = host.and_then(|i| self.cfg.hosts.get(i)) else {
            self.stream_error(StreamErrorCondition::HostUnknown, None);
            return;
        };
        match &self.domain {
            Some(d) if !d.eq_ignore_ascii_case(host) => {
                // A restarted stream must stay on the domain it negotiated for.
                self.stream_error(StreamErrorCondition::HostUnknown, None);
                return;
            }
            Some(_) => {}
            None => self.domain = Some(host.clone()),
        }
        match &self.auth {
            Auth::None(_) => {
                let (mechs, n) = self.offered_mechanisms();
                let offer = Offer::PreAuth {
                    starttls: self.starttls_offer(),
                    mechanisms: &mechs[..n],
                };
                features::write_features(&mut self.out, &offer);
            }
            Auth::Authed(_) => features::write_features(&mut self.out, &Offer::Bind),
            // No restart happens after binding; an empty feature set is the safe answer.
            Auth::Bound(_) => self.out.extend_from_slice(b"<stream:features/>"),
        }
    }

    /// `Some(required)` when STARTTLS may be negotiated now.
    fn starttls_offer(&self) -> Option<bool> {
        let mode_offers = matches!(self.cfg.tls_mode, TlsMode::Starttls | TlsMode::StarttlsRequired);
        (mode_offers
            && self.cfg.tls.is_some()
            && !self.transport.is_tls()
            && matches!(self.auth, Auth::None(None)))
        .then_some(self.cfg.tls_mode == TlsMode::StarttlsRequired)
    }

    /// SASL is withheld until TLS when STARTTLS is mandatory.
    fn sasl_offered(&self) -> bool {
        !(self.cfg.tls_mode == TlsMode::StarttlsRequired && !self.transport.is_tls())
    }

    /// PLAIN sends the password: only over TLS, or from loopback when configured.
    fn plain_allowed(&self) -> bool {
        self.transport.is_tls()
            || (self.cfg.allow_plaintext_on_loopback && self.peer.addr.ip().is_loopback())
    }

    fn mechanism_offered(&self, m: Mechanism, plus: bool) -> bool {
        self.sasl_offered()
            && match m {
                Mechanism::ScramSha256Plus | Mechanism::ScramSha1Plus => plus,
                Mechanism::Plain => self.plain_allowed(),
                _ => true,
            }
    }

    /// The mechanisms to advertise, in preference order (array + length: no allocation).
    fn offered_mechanisms(&self) -> ([Mechanism; MECHANISMS.len()], usize) {
        let plus = self.transport.channel_binding().tls_exporter.is_some();
        let mut list = MECHANISMS;
        let mut n = 0;
        for m in MECHANISMS {
            if self.mechanism_offered(m, plus) {
                list[n] = m;
                n += 1;
            }
        }
        (list, n)
    }

    // ---- top-level elements ----

    fn on_element(&mut self, s: Stanza) {
        let (is_tls, is_sasl, is_client) = {
            let e = element_ns(&s);
            (e == ns::TLS, e == ns::SASL, e == ns::CLIENT)
        };
        if is_tls {
            self.on_starttls(&s);
            return;
        }
        match &self.auth {
            Auth::None(_) if is_sasl => self.on_sasl(&s),
            // RFC 6120 §6.4: nothing but negotiation before authentication.
            Auth::None(_) => self.stream_error(StreamErrorCondition::NotAuthorized, None),
            Auth::Authed(_) | Auth::Bound(_) if is_sasl => self.stream_error(
                StreamErrorCondition::PolicyViolation,
                Some("SASL is already negotiated"),
            ),
            Auth::Authed(bare) => {
                let bare = bare.clone();
                self.on_prebind(s, &bare)
            }
            Auth::Bound(_) => self.on_bound(s, is_client),
        }
    }

    fn on_starttls(&mut self, s: &Stanza) {
        if s.name() != "starttls" || self.starttls_offer().is_none() {
            features::write_tls_failure_close(&mut self.out);
            self.finish(CloseReason::StarttlsFailure, false);
            return;
        }
        // Plaintext sent after <starttls/> but before the handshake could be injected by a
        // man-in-the-middle and would be processed as if it came over TLS (CVE-2011-0411): refuse it
        // with policy-violation (it breaks local security policy; the XML itself is fine).
        let pipelined = self.scanner.has_buffered()
            || self.held.iter().any(|b| !b.is_ascii_whitespace());
        if pipelined {
            self.stream_error(
                StreamErrorCondition::PolicyViolation,
                Some("data pipelined after <starttls/>"),
            );
            return;
        }
        self.held.clear();
        features::write_proceed(&mut self.out);
        // <proceed/> leaves in plaintext, ahead of the handshake.
        self.transport.encode(&mut self.out, &mut self.wire);
        let Some(Ok(tls)) = self.cfg.tls.clone().map(Transport::tls) else {
            self.finish(CloseReason::Tls, false);
            return;
        };
        self.transport = tls;
        self.restart();
    }

    /// A new stream on the same connection (after STARTTLS or SASL success).
    fn restart(&mut self) {
        self.scanner.reset();
        self.awaiting_header = true;
        self.header_sent = false;
        self.new_stream_id();
    }

    fn new_stream_id(&mut self) {
        match random_token() {
            Ok(id) => self.stream_id = id,
            Err(_) => self.stream_error(
                StreamErrorCondition::InternalServerError,
                Some("no randomness"),
            ),
        }
    }

    // ---- SASL ----

    fn on_sasl(&mut self, s: &Stanza) {
        let req = match sasl::parse(s) {
            Ok(req) => req,
            Err(f) => return self.sasl_failure(f),
        };
        match req {
            SaslRequest::Auth { mechanism, initial } => self.on_auth(&mechanism, initial.as_deref()),
            SaslRequest::Response(data) => {
                let step = match &mut self.auth {
                    Auth::None(Some(server)) => server.step(&data),
                    _ => return self.sasl_failure(SaslFailure::MalformedRequest),
                };
                self.on_sasl_step(step);
            }
            SaslRequest::Abort => self.sasl_failure(SaslFailure::Aborted),
        }
    }

    fn on_auth(&mut self, mechanism: &str, initial: Option<&[u8]>) {
        if !self.sasl_offered() {
            return self.sasl_failure(SaslFailure::EncryptionRequired);
        }
        let Some(mech) = Mechanism::from_name(mechanism) else {
            return self.sasl_failure(SaslFailure::InvalidMechanism);
        };
        let cb = self.transport.channel_binding();
        let plus = cb.tls_exporter.is_some();
        if !self.mechanism_offered(mech, plus) {
            let f = match mech {
                Mechanism::Plain => SaslFailure::EncryptionRequired,
                _ => SaslFailure::InvalidMechanism,
            };
            return self.sasl_failure(f);
        }
        // A header always precedes SASL, so the domain is known.
        let domain = self.domain.clone().unwrap_or_default();
        let (server, step) = SaslServer::start(mech, &domain, cb, plus, initial);
        self.auth = Auth::None(Some(Box::new(server)));
        self.on_sasl_step(step);
    }

    fn on_sasl_step(&mut self, step: SaslStep) {
        match step {
            SaslStep::Challenge(data) => sasl::write_challenge(&mut self.out, &data),
            SaslStep::NeedSecrets { username } => {
                self.wait = Wait::Secrets;
                self.events.push_back(C2sEvent::NeedSecrets { username });
            }
            SaslStep::VerifyPlain { username, password } => {
                self.wait = Wait::Plain;
                self.events
                    .push_back(C2sEvent::VerifyPlain { username, password });
            }
            SaslStep::Success {
                username,
                additional_data,
            } => {
                let domain = self.domain.as_deref().unwrap_or_default();
                let Ok(jid) = BareJid::new(Some(&username), domain) else {
                    return self.sasl_failure(SaslFailure::NotAuthorized);
                };
                sasl::write_success(&mut self.out, additional_data.as_deref());
                self.auth = Auth::Authed(jid.clone());
                self.events.push_back(C2sEvent::Authenticated { jid });
                self.restart();
            }
            SaslStep::Failure(f) => self.sasl_failure(f),
        }
    }

    /// Ends the SASL exchange with `<failure/>`; too many failures close the stream (RFC 6120 §6.4.5).
    fn sasl_failure(&mut self, condition: SaslFailure) {
        self.auth = Auth::None(None);
        sasl::write_failure(&mut self.out, condition.as_str());
        self.sasl_failures += 1;
        if self.sasl_failures >= MAX_SASL_FAILURES {
            self.stream_error(
                StreamErrorCondition::PolicyViolation,
                Some("too many authentication failures"),
            );
        }
    }

    // ---- binding and stanzas ----

    /// Authenticated, not bound: only bind (and IQs to the server itself) are allowed (RFC 6120 §7.1).
    fn on_prebind(&mut self, s: Stanza, bare: &BareJid) {
        let is_iq_request = s.kind() == StanzaKind::Iq
            && matches!(s.type_().as_deref(), Some("get") | Some("set"));
        if is_iq_request && s.child_name() == Some("bind") && s.child_ns().as_deref() == Some(ns::BIND) {
            self.on_bind(&s, bare);
            return;
        }
        let to_self = match s.to() {
            None => true,
            Some(to) => {
                to.eq_ignore_ascii_case(bare.domain()) || to.eq_ignore_ascii_case(bare.as_str())
            }
        };
        if is_iq_request && to_self {
            // Addressed to the server or the account: refuse the request, keep the stream.
            let id = s.id();
            reply::write_iq_error(&mut self.out, id.as_deref(), StanzaErrorCondition::ServiceUnavailable);
        } else {
            self.stream_error(StreamErrorCondition::NotAuthorized, None);
        }
    }

    fn on_bind(&mut self, s: &Stanza, bare: &BareJid) {
        let id = s.id().map(|c| c.into_owned());
        let resource = match bind_resource(s) {
            Ok(Some(r)) => r,
            Ok(None) => match random_token() {
                Ok(r) => r,
                Err(_) => {
                    let cond = StanzaErrorCondition::InternalServerError;
                    return reply::write_iq_error(&mut self.out, id.as_deref(), cond);
                }
            },
            Err(()) => {
                let cond = StanzaErrorCondition::BadRequest;
                return reply::write_iq_error(&mut self.out, id.as_deref(), cond);
            }
        };
        match bare.with_resource(&resource) {
            Ok(jid) => {
                self.wait = Wait::Bind(id);
                self.events.push_back(C2sEvent::BindRequest { jid });
            }
            Err(_) => {
                reply::write_iq_error(&mut self.out, id.as_deref(), StanzaErrorCondition::BadRequest)
            }
        }
    }

    fn on_bound(&mut self, mut s: Stanza, client_ns: bool) {
        match s.kind() {
            StanzaKind::Iq if s.type_().as_deref() == Some("set") && s.child_ns().as_deref() == Some(ns::SESSION) => {
                let id = s.id();
                reply::write_empty_result(&mut self.out, id.as_deref());
            }
            StanzaKind::Iq if s.type_().as_deref() == Some("set") && s.child_ns().as_deref() == Some(ns::BIND) => {
                // One resource per stream (RFC 6120 §7.7.2.1 dropped multi-resource binding).
                let id = s.id();
                reply::write_iq_error(&mut self.out, id.as_deref(), StanzaErrorCondition::NotAllowed);
            }
            StanzaKind::Message | StanzaKind::Presence | StanzaKind::Iq => {
                if let Auth::Bound(jid) = &self.auth {
                    // RFC 6120 §8.1.2.1: the server stamps `from`, replacing whatever the client wrote.
                    s.set_from(jid.as_str());
                }
                self.events.push_back(C2sEvent::Stanza(s));
            }
            StanzaKind::Other if client_ns => {
                self.stream_error(StreamErrorCondition::UnsupportedStanzaType, None)
            }
            // XEP-0198 <enable/>, <r/>, CSI...: the route hands them to user_send_xmlel.
            StanzaKind::Other => self.events.push_back(C2sEvent::Stanza(s)),
        }
    }

    fn is_bound(&self) -> bool {
        matches!(self.auth, Auth::Bound(_))
    }

    // ---- closing ----

    /// Sends a stream error (after a header of our own if none went out yet) and closes.
    fn stream_error(&mut self, cond: StreamErrorCondition, text: Option<&str>) {
        if self.closed {
            return;
        }
        if !self.transport.is_handshaking() {
            if !self.header_sent {
                // RFC 6120 §4.9.1.2: an error before our header still opens the stream first.
                let from = self.domain.as_ref().or(self.cfg.hosts.first()).cloned();
                features::write_header(&mut self.out, &self.stream_id, from.as_deref(), None);
                self.header_sent = true;
            }
            cond.write_close(text, &mut self.out);
        }
        self.finish(CloseReason::StreamError(cond), true);
    }

    /// Writes `</stream:stream>` when our stream is open.
    fn close_stream_tag(&mut self) {
        if self.header_sent {
            self.out.extend_from_slice(b"</stream:stream>");
        }
    }

    /// Marks the stream closed, encodes what is left (then close_notify when `notify`), emits `Closed`.
    fn finish(&mut self, reason: CloseReason, notify: bool) {
        if self.closed {
            return;
        }
        self.closed = true;
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
        if let Auth::None(Some(_)) = self.auth {
            self.auth = Auth::None(None);
        }
        self.wait = Wait::Nothing;
        self.events.push_back(C2sEvent::Closed { reason });
    }
}

/// The namespace of a top-level element: its own `xmlns`, the stream's default when unprefixed,
/// or (rare: prefixed top-level elements) the namespace the tree resolves.
fn element_ns(s: &Stanza) -> Cow<'_, str> {
    if let Some(x) = s.xmlns() {
        return Cow::Borrowed(x);
    }
    if !s.name().contains(':') {
        return Cow::Borrowed(ns::CLIENT);
    }
    match s.tree() {
        Ok(el) => Cow::Owned(el.ns.to_string()),
        Err(_) => Cow::Borrowed(""),
    }
}

/// Keeps a drained buffer's capacity small.
fn shrink(buf: &mut Vec<u8>) {
    if buf.is_empty() && buf.capacity() > KEEP_CAPACITY {
        *buf = Vec::new();
    }
}

/// `version` is "major.minor" with major >= 1 (RFC 6120 §4.7.5).
fn version_at_least_1(v: &str) -> bool {
    let major = v.split_once('.').map_or(v, |(major, _)| major);
    major.parse::<u32>().is_ok_and(|m| m >= 1)
}

/// The requested resource of a bind IQ: `Ok(None)` when absent or empty, `Err` when the IQ is malformed.
fn bind_resource(s: &Stanza) -> Result<Option<String>, ()> {
    let iq = s.tree().map_err(|_| ())?;
    let bind = iq.get_child("bind", ns::BIND).ok_or(())?;
    let Some(res) = bind.get_child("resource", ns::BIND) else {
        return Ok(None);
    };
    let text = res.text();
    Ok((!text.is_empty()).then(|| text.to_string()))
}

/// 16 random characters from [`TOKEN_ALPHABET`] (80 bits): stream ids and generated resources.
pub(crate) fn random_token() -> Result<String, getrandom::Error> {
    let mut buf = [0u8; 16];
    getrandom::getrandom(&mut buf)?;
    Ok(buf
        .iter()
        .map(|b| char::from(TOKEN_ALPHABET[usize::from(b & 31)]))
        .collect())
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn versions() {
        assert!(version_at_least_1("1.0"));
        assert!(version_at_least_1("1.1"));
        assert!(version_at_least_1("2.0"));
        assert!(!version_at_least_1("0.9"));
        assert!(!version_at_least_1(""));
        assert!(!version_at_least_1("x.0"));
    }

    #[test]
    fn tokens_are_random_and_safe() {
        let a = random_token().unwrap();
        let b = random_token().unwrap();
        assert_eq!(a.len(), 16);
        assert_ne!(a, b);
        assert!(a.bytes().all(|c| TOKEN_ALPHABET.contains(&c)));
    }
}
