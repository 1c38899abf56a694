//! The c2s stream state machine: stream headers, STARTTLS, SASL, resource binding, then stanzas.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::error::{BindError, CloseReason, Overflow};
use super::features;
use super::transport::{PlainRead, Transport};
use super::{reply, C2sConfig, C2sEvent, PeerInfo, TlsMode};
use crate::auth::{SaslServer, ScramSecrets};
use crate::jid::{BareJid, FullJid};
use crate::xml::{Event, Scanner};
use crate::xmpp::{ns, StreamErrorCondition};

/// RFC 6120 §6.4.5: close the stream after this many SASL failures (the RFC allows 2 to 5).
pub(super) const MAX_SASL_FAILURES: u8 = 5;
/// Minimum input held while the stream waits for the driver (auth look-up, bind).
const MIN_HELD_INPUT: usize = 16 * 1024;
/// Plaintext read from rustls in chunks of this size (on the stack, not per session).
const TLS_READ_CHUNK: usize = 4096;
/// A TLS stream without input for this long gives back rustls' record read buffer (4 KiB): idle
/// sessions stay small, busy ones keep it between reads instead of refilling it at every read.
pub(crate) const TLS_IDLE_RELEASE: Duration = Duration::from_secs(1);
/// Characters of stream ids and generated resources (32 symbols: 5 random bits each, no bias).
const TOKEN_ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// Authentication progress of the stream.
pub(super) enum Auth {
    /// Not authenticated; a SASL exchange may be running.
    None(Option<Box<SaslServer>>),
    /// SASL done; resource not bound yet.
    Authed(BareJid),
    /// Resource bound: stanzas flow.
    Bound(FullJid),
}

/// An answer the stream waits for from the driver; input is held meanwhile.
pub(super) enum Wait {
    /// Nothing: input is processed as it comes.
    Nothing,
    /// `provide_secrets` for a SCRAM exchange.
    Secrets,
    /// `plain_verified` for a PLAIN exchange.
    Plain,
    /// `bind_result`, with the id of the bind request.
    Bind(Option<String>),
    /// `preauth_reply` to a registration IQ.
    PreAuth,
    /// `resumed` or `resume_failed`, with the id asked for (XEP-0198), and the SASL2 exchange
    /// whose `<success/>` waits for the answer when the `<resume/>` came inside `<authenticate/>`.
    Resume(String, Option<Box<super::sasl2::Sasl2Inline>>),
    /// `bind_result` for a Bind 2 request inside SASL2 (XEP-0386), `<success/>` not written yet.
    Bind2(Box<super::sasl2::Sasl2Inline>),
}

/// One client-to-server stream, sans-IO (see the module docs for the contract).
pub struct C2s {
    pub(super) cfg: Arc<C2sConfig>,
    pub(super) peer: PeerInfo,
    pub(super) transport: Transport,
    pub(super) scanner: Scanner,
    /// Plaintext received but not yet fed to the scanner (negotiation, or waiting for the driver).
    pub(super) held: Vec<u8>,
    /// XMPP output not yet encoded for the wire.
    pub(super) out: Vec<u8>,
    /// Bytes ready for the socket (TLS records, plaintext written before a STARTTLS switch).
    pub(super) wire: Vec<u8>,
    pub(super) events: VecDeque<C2sEvent>,
    pub(super) stream_id: Box<str>,
    /// The domain the client asked for in its first header; later headers must repeat it.
    pub(super) domain: Option<Box<str>>,
    /// The client's header for the current stream has not arrived yet.
    pub(super) awaiting_header: bool,
    /// Our header for the current stream is on its way.
    pub(super) header_sent: bool,
    pub(super) auth: Auth,
    pub(super) wait: Wait,
    pub(super) sasl_failures: u8,
    /// The running (or last) SASL exchange uses XEP-0388 framing: its answers are SASL2 elements.
    pub(super) sasl2_framing: bool,
    /// What the SASL2 `<authenticate/>` asked for besides authentication (bind, user agent).
    pub(super) sasl2: Option<Box<super::sasl2::Sasl2Inline>>,
    /// The `from` of the client's stream header, until authenticated (XEP-0388 §2.3).
    pub(super) stream_from: Option<Box<str>>,
    /// The certificate this connection's TLS handshake was given, until authenticated (SCRAM-PLUS
    /// binds to it, RFC 5929, whatever SIGHUP serves to later connections).
    pub(super) served_cert: Option<crate::tls::CertSnapshot>,
    pub(super) auth_deadline: Option<Instant>,
    pub(super) last_input: Instant,
    /// TLS records arrived since rustls' read buffer was last released (see [`TLS_IDLE_RELEASE`]).
    pub(super) tls_read_buffer: bool,
    pub(super) closed: bool,
    /// Server-to-client ping in flight.
    pub(super) ping: super::ping::PingState,
    /// XEP-0198 state once enabled (boxed: most streams never enable it).
    pub(super) sm: Option<Box<super::sm_xep198::SmState>>,
    /// Routed stanzas not yet handed to the driver (streams without XEP-0198).
    pub(super) routed: super::outq::OutQueue,
    /// Routed stanzas handed to the driver that its socket has not taken yet.
    pub(super) on_wire: super::on_wire::OnTheWire<crate::hooks::Acc>,
    /// The stream is closed and its TLS close_notify goes out after what `take_transmit` hands
    /// over next.
    pub(super) close_notify_due: bool,
    /// Domains served beside `cfg.hosts`, added at run time (see [`C2s::set_dynamic_hosts`]).
    pub(super) dynamic_hosts: Option<crate::shard::DynamicHosts>,
}

impl C2s {
    /// Also accepts stream headers to the domains of `hosts` (the shard's run-time domains).
    pub fn set_dynamic_hosts(&mut self, hosts: crate::shard::DynamicHosts) {
        self.dynamic_hosts = Some(hosts);
    }

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
            stream_id: Box::default(),
            domain: None,
            awaiting_header: true,
            header_sent: false,
            auth: Auth::None(None),
            wait: Wait::Nothing,
            sasl_failures: 0,
            sasl2_framing: false,
            sasl2: None,
            stream_from: None,
            served_cert: None,
            auth_deadline,
            last_input: now,
            tls_read_buffer: false,
            closed: false,
            ping: Default::default(),
            sm: None,
            routed: Default::default(),
            on_wire: Default::default(),
            close_notify_due: false,
            dynamic_hosts: None,
        };
        if let Some(tls) = direct_tls {
            c2s.served_cert = c2s.cfg.tls_cert.as_ref().map(|c| c.snapshot());
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
        if self.closed || bytes.is_empty() || self.closing_when_handled() {
            return;
        }
        self.last_input = now;
        if !self.transport.is_tls() {
            self.pump(bytes);
            return;
        }
        self.tls_read_buffer = true;
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
                        // close_notify without `</stream:stream>`: the TLS connection ended, the
                        // XMPP stream did not (a resumable XEP-0198 session stays resumable).
                        self.finish(CloseReason::Disconnected, true);
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

    /// Appends the bytes to write to the socket now (TLS records under TLS): everything the stream
    /// wrote itself, and routed stanzas up to a chunk (the rest waits, still re-routable).
    pub fn take_transmit(&mut self, out: &mut Vec<u8>) {
        if !self.closed {
            self.write_queued(super::outq::TRANSMIT_CHUNK);
        }
        let base = out.len();
        let on_wire = &mut self.on_wire;
        let used = self
            .transport
            .transmit_placed(&mut self.out, &mut self.wire, out, &mut |p| {
                on_wire.place(super::transport::Placed {
                    end: p.end - base,
                    ..p
                })
            });
        if std::mem::take(&mut self.close_notify_due) {
            self.transport.close_notify(out);
        }
        self.on_wire.handed(out.len() - base, used);
    }

    /// Bytes queued and not yet taken by `take_transmit` (plaintext, TLS, routed stanzas; once
    /// closed, routed stanzas are no longer for this stream: see `take_unsent`).
    pub fn pending_transmit(&self) -> usize {
        let routed = if self.closed { 0 } else { self.routed.bytes() };
        self.out.len() + self.wire.len() + routed
    }

    /// The next event for the driver.
    pub fn poll_event(&mut self) -> Option<C2sEvent> {
        let ev = self.events.pop_front();
        if ev.is_none() && self.events.capacity() > 0 {
            // Drained: an idle session keeps no event slots (each is ~200 bytes).
            self.events = VecDeque::new();
        }
        ev
    }

    /// When `handle_timeout` must be called next (auth timeout until bound, idle timeout, pings).
    pub fn next_timeout(&self) -> Option<Instant> {
        if self.closed {
            return None;
        }
        let idle =
            (!self.cfg.idle_timeout.is_zero()).then(|| self.last_input + self.cfg.idle_timeout);
        let release = self
            .tls_read_buffer
            .then(|| self.last_input + TLS_IDLE_RELEASE);
        [
            self.auth_deadline,
            idle,
            release,
            self.ping_deadline(),
            self.sm_deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Fires the timeouts due at `now`: auth and idle close the stream with connection-timeout; the
    /// ping interval sends a ping, and a ping left unanswered closes it the same way; a TLS stream
    /// quiet for [`TLS_IDLE_RELEASE`] gives back rustls' read buffer.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.closed {
            return;
        }
        if self.tls_read_buffer && now >= self.last_input + TLS_IDLE_RELEASE {
            self.transport.release_idle();
            self.tls_read_buffer = false;
        }
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
        } else {
            self.ping_timeout(now);
            self.sm_answer(now);
            self.close_if_due(now);
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

    /// The answer to `NeedSecrets` or `VerifyPlain` when the store could not be asked (its queue is
    /// full or it failed): `<failure><temporary-auth-failure/>`, the client may retry.
    pub fn auth_unavailable(&mut self) {
        if self.closed || !matches!(self.wait, Wait::Secrets | Wait::Plain) {
            return;
        }
        self.wait = Wait::Nothing;
        // A store outage is not the client's failure: unlike `sasl_failure`, it is not counted.
        self.auth = Auth::None(None);
        self.write_sasl_failure(crate::auth::SaslFailure::TemporaryAuthFailure);
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
        let id = match std::mem::replace(&mut self.wait, Wait::Nothing) {
            Wait::Bind(id) => id,
            Wait::Bind2(inline) => {
                self.bind2_result(*inline, r);
                return self.run();
            }
            other => {
                self.wait = other;
                return;
            }
        };
        match r {
            Ok(jid) => {
                reply::write_bind_result(&mut self.out, id.as_deref(), jid.as_str());
                self.bound(jid);
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

    /// True when `len` more bytes fit in the outbound queue.
    pub fn has_room(&self, len: usize) -> bool {
        !self.closed && self.pending_transmit() + len <= self.cfg.outbound_queue_bytes
    }

    /// Server-side close: the routed stanzas still queued, then a stream error when `cond` is given,
    /// then `</stream:stream>` and TLS close_notify.
    pub fn close(&mut self, cond: Option<StreamErrorCondition>, text: Option<&str>) {
        if self.closed {
            return;
        }
        self.write_queued(usize::MAX);
        self.close_now(cond, text);
    }

    /// Like [`C2s::close`], leaving the routed stanzas not yet taken by the driver for
    /// [`C2s::take_unsent`] (a slow reader: the error must not wait behind them).
    pub fn close_now(&mut self, cond: Option<StreamErrorCondition>, text: Option<&str>) {
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

    /// True once SASL succeeded (bound or not).
    pub fn is_authenticated(&self) -> bool {
        !matches!(self.auth, Auth::None(_))
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

    /// The peer this stream talks to.
    pub fn peer(&self) -> PeerInfo {
        self.peer
    }

    /// The domain the client asked for in its stream header (`""` before the header).
    pub fn domain(&self) -> &str {
        self.domain.as_deref().unwrap_or("")
    }

    // ---- input ----

    /// Takes decoded plaintext.
    pub(super) fn pump(&mut self, bytes: &[u8]) {
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

    /// The stream is bound to `jid` (a bind or a resumption): every stanza it sends from now on is
    /// stamped with it, so the scanner leaves room for ` from='JID'` in each.
    pub(super) fn bound(&mut self, jid: FullJid) {
        self.scanner
            .set_headroom(crate::xml::attr_len("from", jid.as_str()));
        self.auth = Auth::Bound(jid);
    }

    /// Input that may wait for the driver before the stream errors out.
    pub(super) fn held_cap(&self) -> usize {
        self.cfg.limits.max_stanza_bytes.max(MIN_HELD_INPUT)
    }

    /// Processes scanner events and held input until blocked, closed or out of input.
    pub(super) fn run(&mut self) {
        // Bytes at the front of `held` already fed to the scanner; dropped before each event so
        // handlers see exactly the unparsed input, and never per '>' (that would be quadratic).
        let mut fed = 0;
        while !self.closed && matches!(self.wait, Wait::Nothing) {
            match self.scanner.next_event() {
                Err(e) => {
                    self.stream_error(e.condition(), None);
                    break;
                }
                Ok(Some(ev)) => {
                    self.held.drain(..fed);
                    fed = 0;
                    self.on_event(ev);
                    continue;
                }
                Ok(None) => {}
            }
            if fed == self.held.len() {
                break;
            }
            let end = if self.is_bound() {
                self.held.len()
            } else {
                // During negotiation feed up to one '>' at a time so that a restart (STARTTLS, SASL
                // success) or a wait for the driver finds the bytes after the element still unparsed.
                let rest = &self.held[fed..];
                fed + memchr::memchr(b'>', rest).map_or(rest.len(), |p| p + 1)
            };
            self.scanner.feed(&self.held[fed..end]);
            fed = end;
        }
        // `finish` may have replaced `held`.
        let fed = fed.min(self.held.len());
        self.held.drain(..fed);
        if self.held.is_empty() && self.held.capacity() > 0 {
            self.held = Vec::new();
        }
    }

    pub(super) fn on_event(&mut self, ev: Event) {
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

    // ---- closing ----

    /// Sends a stream error (after a header of our own if none went out yet) and closes.
    pub(super) fn stream_error(&mut self, cond: StreamErrorCondition, text: Option<&str>) {
        if self.closed {
            return;
        }
        if !self.transport.is_handshaking() {
            if !self.header_sent {
                // RFC 6120 §4.9.1.2: an error before our header still opens the stream first;
                // without a domain asked for, it names none of ours (a prober would learn one).
                let from = self.domain.as_deref().map(str::to_owned);
                features::write_header(
                    &mut self.out,
                    &self.stream_id,
                    from.as_deref(),
                    None,
                    Some("1.0"),
                );
                self.header_sent = true;
            }
            self.write_last_ack();
            cond.write_close(text, &mut self.out);
        }
        self.finish(CloseReason::StreamError(cond), true);
    }

    /// Writes `</stream:stream>` when our stream is open.
    pub(super) fn close_stream_tag(&mut self) {
        if self.header_sent {
            self.write_last_ack();
            self.out.extend_from_slice(b"</stream:stream>");
        }
    }

    /// Marks the stream closed, encodes what is left (then close_notify when `notify`), emits `Closed`.
    pub(super) fn finish(&mut self, reason: CloseReason, notify: bool) {
        if self.closed {
            return;
        }
        self.closed = true;
        if self.transport.is_handshaking() {
            // Nothing written during the handshake can be sent.
            self.out.clear();
        }
        // What `out` holds (routed stanzas among it) is encoded by the next `take_transmit`, which
        // places them on the wire like any other, then sends the close_notify.
        self.close_notify_due = notify && self.transport.is_tls();
        self.held = Vec::new();
        self.scanner.reset();
        if let Auth::None(Some(_)) = self.auth {
            self.auth = Auth::None(None);
        }
        self.sasl2 = None;
        self.wait = Wait::Nothing;
        self.events.push_back(C2sEvent::Closed { reason });
    }
}

/// 16 random characters from [`TOKEN_ALPHABET`] (80 bits): stream ids and generated resources.
pub(crate) fn random_token() -> Result<String, getrandom::Error> {
    let mut buf = [0u8; 16];
    getrandom::getrandom(&mut buf)?;
    Ok(token_from_bytes(&buf))
}

/// One character of [`TOKEN_ALPHABET`] per byte (its low 5 bits).
pub(crate) fn token_from_bytes(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| char::from(TOKEN_ALPHABET[usize::from(b & 31)]))
        .collect()
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn tokens_are_random_and_safe() {
        let a = random_token().unwrap();
        let b = random_token().unwrap();
        assert_eq!(a.len(), 16);
        assert_ne!(a, b);
        assert!(a.bytes().all(|c| TOKEN_ALPHABET.contains(&c)));
    }
}
