//! A connection we open to a remote server: we are the originating server (authenticating `local`
//! to `remote` by SASL EXTERNAL or dialback, then sending stanzas) and the receiving server asking
//! the remote's authoritative server to verify dialback keys (`<db:verify/>`).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use rustls::pki_types::{ServerName, UnixTime};

use super::dialback::{self, Body, DbElement};
use super::error::{PushError, S2sOutFailure};
use super::features;
use super::io::{self, Due, Io, Machine, Timers};
use super::{AuthMethod, CertUsage, S2sConfig, S2sOutEvent, NS_SERVER};
use crate::c2s::transport::{TlsFailure, Transport};
use crate::xml::{Element, Event, Stanza, StanzaKind, StreamHeader, XmlError};
use crate::xmpp::{ns, StreamErrorCondition};

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
    /// Ids of the `<db:verify/>` sent or queued and not answered yet, with the time by which
    /// the answer must come (`None`: no auth timeout configured).
    pub(super) verifies: Vec<(String, Option<Instant>)>,
    pub(super) timers: Timers,
    /// The time certificates are checked against (`set_wall_clock`).
    pub(super) wall_clock: UnixTime,
    pub(super) closed: bool,
    /// The remote's certificate is valid for `remote`.
    pub(super) cert_valid: bool,
    /// SASL EXTERNAL succeeded; the restarted stream's features make the stream ready.
    pub(super) sasl_done: bool,
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
        let timers = Timers::new(cfg.auth_timeout, cfg.idle_timeout, now);
        let io = Io::new(cfg.limits, NS_SERVER);
        let (local, remote) = (local.to_ascii_lowercase(), remote.to_ascii_lowercase());
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
            timers,
            wall_clock: UnixTime::since_unix_epoch(std::time::Duration::ZERO),
            closed: false,
            cert_valid: false,
            sasl_done: false,
        };
        s.start(direct_tls);
        s
    }

    io::io_api!(S2sOutEvent);

    /// Fires the timeouts due at `now`: authentication not done in time fails with `Timeout`; an
    /// idle ready stream is closed cleanly (`LocalClose`).
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.closed {
            return;
        }
        // Verifications unanswered in time: the remote cannot confirm them.
        let (late, waiting) = std::mem::take(&mut self.verifies)
            .into_iter()
            .partition(|(_, d)| d.is_some_and(|d| d <= now));
        self.verifies = waiting;
        for (id, _) in late {
            self.events.push_back(S2sOutEvent::VerifyFailed { id });
        }
        match self.timers.due(now) {
            Some(Due::Auth) => self.give_up(S2sOutFailure::Timeout),
            Some(Due::Idle) => self.close(None),
            None => {}
        }
    }

    /// True once authenticated: stanzas may be pushed.
    pub fn is_ready(&self) -> bool {
        !self.closed && self.phase == Phase::Ready
    }

    /// Queues one stanza (serialized, unprefixed `message`/`presence`/`iq` with `from` in `local`
    /// and `to` in `remote`). Refused before `Ready`, once closed, or past `outbound_queue_bytes`.
    pub fn push_stanza(&mut self, stanza: &[u8]) -> Result<(), PushError> {
        if !self.is_ready() {
            return Err(PushError::NotReady);
        }
        if !self.has_room(stanza.len()) {
            return Err(PushError::Full);
        }
        self.io.out.extend_from_slice(stanza);
        self.io.on_wire.mark(self.io.out.len(), ());
        Ok(())
    }

    /// The driver's socket took the first `total` bytes `take_transmit` handed out (counted the same
    /// way): returns how many more of the pushed stanzas, oldest first, are now wholly on their way
    /// (over TLS: their whole record).
    pub fn wire_written(&mut self, total: u64) -> usize {
        self.io.on_wire.written(total)
    }

    /// How many pushed stanzas the socket has not taken yet: once the driver gives up on the
    /// socket, these (the last ones pushed) never reached the remote.
    pub fn unwritten(&self) -> usize {
        self.io.on_wire.len()
    }

    /// Bytes that still fit in the outbound queue (none once closed).
    pub fn room(&self) -> usize {
        match self.closed {
            true => 0,
            false => self
                .cfg
                .outbound_queue_bytes
                .saturating_sub(self.io.pending()),
        }
    }

    /// True when `len` more bytes fit in the outbound queue.
    pub fn has_room(&self, len: usize) -> bool {
        !self.closed && self.io.pending() + len <= self.cfg.outbound_queue_bytes
    }

    /// Asks the remote (authoritative) server whether `key` is its dialback key for the stream
    /// `id` it opened to `local`: `<db:verify from=local to=remote id=id>key</db:verify>`, sent as
    /// soon as this stream is past TLS and features (even before it is authenticated itself). The
    /// answer comes as `S2sOutEvent::Verified { id, .. }`, or `VerifyFailed` when none came
    /// within `auth_timeout` of `now`.
    pub fn request_verify(&mut self, id: &str, key: &str, now: Instant) -> Result<(), PushError> {
        if self.closed {
            return Err(PushError::NotReady);
        }
        if self.verifies.len() >= MAX_VERIFIES {
            return Err(PushError::Full);
        }
        let t = self.cfg.auth_timeout;
        self.verifies
            .push((id.to_owned(), (!t.is_zero()).then(|| now + t)));
        let dst = if self.negotiated {
            &mut self.io.out
        } else {
            &mut self.verify_queue
        };
        dialback::write(
            dst,
            true,
            &self.local,
            &self.remote,
            Some(id),
            None,
            Body::Key(key),
        );
        Ok(())
    }

    /// Closes the stream: a stream error when `cond` is given, then `</stream:stream>`.
    pub fn close(&mut self, cond: Option<StreamErrorCondition>) {
        if self.closed {
            return;
        }
        match cond {
            Some(cond) => self.stream_error(cond),
            None => self.give_up(S2sOutFailure::LocalClose),
        }
    }

    /// The earliest timer or verification deadline (for `next_timeout`).
    fn next_deadline(&self) -> Option<Instant> {
        let verify = self.verifies.iter().filter_map(|(_, d)| *d).min();
        match (self.timers.next(), verify) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The socket reached EOF or failed (connect failure included).
    pub fn peer_closed(&mut self) {
        self.fail(S2sOutFailure::Io, false);
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

    fn start(&mut self, direct_tls: bool) {
        if direct_tls {
            if let Err(reason) = self.start_tls() {
                return self.fail(reason, false);
            }
        }
        self.write_header();
    }

    fn write_header(&mut self) {
        features::write_header(
            &mut self.io.out,
            None,
            Some(&self.local),
            Some(&self.remote),
            Some("1.0"),
        );
        self.phase = Phase::Header;
    }

    /// Switches to a TLS client session to `remote` (its ClientHello leaves with the next
    /// `take_transmit`).
    fn start_tls(&mut self) -> Result<(), S2sOutFailure> {
        let Some(cfg) = self.cfg.tls_client.clone() else {
            return Err(S2sOutFailure::TlsRequiredButNotOffered);
        };
        // SNI and the certificate name an internationalized domain by its A-labels.
        let name = ServerName::try_from(crate::jid::domain_to_ascii(&self.remote).into_owned())
            .map_err(|e| S2sOutFailure::Tls(e.to_string()))?;
        self.io.transport =
            Transport::tls_client(cfg, name).map_err(|e| S2sOutFailure::Tls(e.to_string()))?;
        Ok(())
    }

    fn on_header(&mut self, h: StreamHeader) {
        self.stream_id = h.id.unwrap_or_default();
        if crate::xmpp::version::at_least_1(h.version.as_deref()) {
            self.phase = Phase::Features;
            return;
        }
        // A pre-RFC 6120 server: no features, so no STARTTLS.
        if self.cfg.tls_required && !self.io.transport.is_tls() {
            return self.give_up(S2sOutFailure::TlsRequiredButNotOffered);
        }
        self.set_negotiated();
        self.start_dialback(false);
    }

    fn on_element(&mut self, s: Stanza) {
        if s.kind() != StanzaKind::Other {
            // A receiving server sends no stanzas on our stream (RFC 6120 §2.5.3): dropped.
            return;
        }
        if let Some(db) = dialback::parse(&s) {
            return self.on_db(db);
        }
        let el = match s.tree() {
            Ok(el) => el,
            Err(e) => return self.stream_error(e.condition()),
        };
        match (el.ns.as_str(), el.name.as_str(), self.phase) {
            (ns::STREAMS, "error", _) => {
                let cond = el
                    .child_elements()
                    .find(|c| c.ns == ns::STREAM_ERRORS && c.name != "text")
                    .map_or_else(String::new, |c| c.name.clone());
                self.give_up(S2sOutFailure::RemoteStreamError(cond));
            }
            (ns::STREAMS, "features", Phase::Features) => self.on_features(&el),
            (ns::TLS, "proceed", Phase::Starttls) => self.on_proceed(),
            (ns::TLS, "failure", Phase::Starttls) => {
                self.fail(S2sOutFailure::StarttlsRefused, false)
            }
            (ns::SASL, "success", Phase::Sasl) => {
                // RFC 6120 §6.4.6: a new stream; its features complete the authentication.
                self.io.scanner.reset();
                self.sasl_done = true;
                self.write_header();
            }
            (ns::SASL, "failure", Phase::Sasl) => self.start_dialback(self.cert_valid),
            _ => self.stream_error(StreamErrorCondition::UnsupportedStanzaType),
        }
    }

    fn on_features(&mut self, el: &Element) {
        let offer = features::parse_features(el);
        let tls = self.io.transport.is_tls();
        if !tls {
            if offer.starttls.is_some() && self.cfg.tls_client.is_some() {
                features::write_empty(&mut self.io.out, "starttls", ns::TLS);
                self.phase = Phase::Starttls;
                return;
            }
            if self.cfg.tls_required {
                return self.give_up(S2sOutFailure::TlsRequiredButNotOffered);
            }
        }
        self.set_negotiated();
        if self.sasl_done {
            return self.ready(AuthMethod::SaslExternal);
        }
        self.cert_valid = tls
            && self.cfg.trust.validates(
                self.io.transport.peer_certificates(),
                &self.remote,
                self.wall_clock,
                CertUsage::Server,
            );
        if self.cfg.sasl_external && self.cert_valid && offer.external {
            self.io.out.extend_from_slice(b"<auth xmlns='");
            self.io.out.extend_from_slice(ns::SASL.as_bytes());
            // XEP-0178 §3: no authorization identity ('='), the certificate names our domain.
            self.io
                .out
                .extend_from_slice(b"' mechanism='EXTERNAL'>=</auth>");
            self.phase = Phase::Sasl;
            return;
        }
        self.start_dialback(self.cert_valid);
    }

    fn on_proceed(&mut self) {
        if self.io.pipelined() {
            return self.stream_error(StreamErrorCondition::PolicyViolation);
        }
        self.io.held.clear();
        self.io.flush_plain();
        if let Err(reason) = self.start_tls() {
            return self.fail(reason, false);
        }
        self.io.scanner.reset();
        self.write_header();
    }

    /// Past TLS and features: queued `<db:verify/>` requests leave.
    fn set_negotiated(&mut self) {
        self.negotiated = true;
        let queued = std::mem::take(&mut self.verify_queue);
        self.io.out.extend_from_slice(&queued);
    }

    /// Sends `<db:result/>` with our key over the remote's stream id (XEP-0220 §2.1.1).
    fn start_dialback(&mut self, cert_valid: bool) {
        if !self.cfg.dialback {
            let reason = if self.io.transport.is_tls() && !cert_valid {
                S2sOutFailure::CertificateInvalid
            } else if self.phase == Phase::Sasl {
                S2sOutFailure::NotAuthorized
            } else {
                S2sOutFailure::NoAuthMethod
            };
            return self.give_up(reason);
        }
        if self.stream_id.is_empty() {
            // No id, no key to compute: the remote cannot be dialed back.
            return self.stream_error(StreamErrorCondition::BadFormat);
        }
        let key = dialback::dialback_key(
            &self.cfg.dialback_secret,
            &self.remote,
            &self.local,
            &self.stream_id,
        );
        dialback::write(
            &mut self.io.out,
            false,
            &self.local,
            &self.remote,
            None,
            None,
            Body::Key(&key),
        );
        self.phase = Phase::Dialback;
    }

    fn on_db(&mut self, db: DbElement) {
        match (db.verify, db.type_.as_deref()) {
            (true, Some(type_)) => {
                // Our `<db:verify/>` leaves only once negotiated (past TLS when required): an
                // answer before that was injected, e.g. in plaintext ahead of STARTTLS.
                if !self.negotiated {
                    return self.stream_error(StreamErrorCondition::NotAuthorized);
                }
                if !self.answers_us(&db) {
                    return self.stream_error(StreamErrorCondition::InvalidFrom);
                }
                let Some(id) = db.id else { return };
                let Some(pos) = self.verifies.iter().position(|(v, _)| *v == id) else {
                    return;
                };
                self.verifies.swap_remove(pos);
                self.events.push_back(match type_ {
                    "valid" | "invalid" => S2sOutEvent::Verified {
                        id,
                        valid: type_ == "valid",
                    },
                    _ => S2sOutEvent::VerifyFailed { id },
                });
            }
            (false, Some(type_)) if self.phase == Phase::Dialback && self.answers_us(&db) => {
                match type_ {
                    "valid" => self.ready(AuthMethod::Dialback),
                    "invalid" => self.give_up(S2sOutFailure::DialbackRefused),
                    _ => self.give_up(S2sOutFailure::DialbackError(db.error)),
                }
            }
            _ => self.stream_error(StreamErrorCondition::UnsupportedStanzaType),
        }
    }

    /// The `<db:result/>` or `<db:verify/>` answers ours: from `remote` to `local`.
    fn answers_us(&self, db: &DbElement) -> bool {
        let is =
            |a: &Option<String>, d: &str| a.as_deref().is_some_and(|a| a.eq_ignore_ascii_case(d));
        is(&db.from, &self.remote) && is(&db.to, &self.local)
    }

    fn ready(&mut self, method: AuthMethod) {
        self.phase = Phase::Ready;
        self.timers.authenticated();
        self.events.push_back(S2sOutEvent::Ready { method });
    }

    /// Ends our stream cleanly (`</stream:stream>`) and fails with `reason`.
    fn give_up(&mut self, reason: S2sOutFailure) {
        self.io.out.extend_from_slice(b"</stream:stream>");
        self.fail(reason, true);
    }

    /// Sends a stream error and fails with it.
    fn stream_error(&mut self, cond: StreamErrorCondition) {
        if self.closed {
            return;
        }
        if !self.io.transport.is_handshaking() {
            cond.write_close(None, &mut self.io.out);
        }
        self.fail(S2sOutFailure::StreamError(cond), true);
    }

    fn fail(&mut self, reason: S2sOutFailure, notify: bool) {
        if self.closed {
            return;
        }
        self.closed = true;
        self.io.finish(notify);
        for (id, _) in std::mem::take(&mut self.verifies) {
            self.events.push_back(S2sOutEvent::VerifyFailed { id });
        }
        self.events.push_back(S2sOutEvent::Closed { reason });
    }
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

    fn on_event(&mut self, ev: Event) {
        match ev {
            Event::StreamOpen(h) if self.phase == Phase::Header => self.on_header(h),
            Event::StreamOpen(_) => self.stream_error(StreamErrorCondition::BadFormat),
            Event::Stanza(_) if self.phase == Phase::Header => {
                self.stream_error(StreamErrorCondition::BadFormat)
            }
            Event::Stanza(s) => self.on_element(s),
            Event::StreamClose => self.give_up(S2sOutFailure::PeerClosed),
            Event::Whitespace => {}
        }
    }

    fn on_xml_error(&mut self, e: XmlError) {
        self.stream_error(e.condition());
    }

    fn on_tls_error(&mut self, e: TlsFailure) {
        self.fail(S2sOutFailure::Tls(e.to_string()), false);
    }

    fn on_tls_closed(&mut self) {
        self.fail(S2sOutFailure::PeerClosed, true);
    }
}
