//! An accepted s2s connection: we are the receiving server (the peer authenticates its domains by
//! dialback or SASL EXTERNAL, then sends stanzas) and the authoritative server for our domains
//! (answering `<db:verify/>`).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use rustls::pki_types::UnixTime;

use super::dialback::{self, Body, DbElement};
use super::error::CloseReason;
use super::features::{self, Offer};
use super::io::{self, Due, Io, Machine, Timers};
use super::{AuthMethod, CertUsage, S2sConfig, S2sInEvent, NS_SERVER};
use crate::c2s::random_token;
use crate::c2s::transport::{TlsFailure, Transport};
use crate::jid::{BareJid, Jid};
use crate::xml::{Event, Stanza, StanzaKind, StreamHeader, XmlError};
use crate::xmpp::{ns, StanzaErrorCondition, StreamErrorCondition};

/// Most (remote, local) pairs authenticated on one stream (piggybacking); further dialback
/// requests are answered with a `resource-constraint` error.
pub(super) const MAX_AUTHENTICATED: usize = 32;
/// SASL failures after which the stream is closed (RFC 6120 §6.4.5 allows 2 to 5).
const MAX_SASL_FAILURES: u8 = 3;
/// Dialback requests refused or answered invalid/error after which the stream is closed with
/// `policy-violation` (failed attempts cost the authoritative server a lookup each).
pub(super) const MAX_DIALBACK_FAILURES: u8 = 5;
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
    pub(super) sasl_failures: u8,
    /// Dialback requests refused or not verified (see [`MAX_DIALBACK_FAILURES`]).
    pub(super) dialback_failures: u8,
    /// (remote, local) pairs allowed to send stanzas.
    pub(super) authenticated: Vec<(String, String)>,
    /// (remote, local) pairs whose dialback key is being verified.
    pub(super) pending: Vec<(String, String)>,
    pub(super) timers: Timers,
    /// The time certificates are checked against (`set_wall_clock`).
    pub(super) wall_clock: UnixTime,
    pub(super) closed: bool,
    pub(super) dynamic_hosts: Option<crate::shard::DynamicHosts>,
}

impl S2sIn {
    /// A new stream for a freshly accepted connection (direct TLS listener: the handshake first).
    pub fn new(cfg: Arc<S2sConfig>, peer: SocketAddr, now: Instant) -> S2sIn {
        let timers = Timers::new(cfg.auth_timeout, cfg.idle_timeout, now);
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
            sasl_failures: 0,
            dialback_failures: 0,
            authenticated: Vec::new(),
            pending: Vec::new(),
            timers,
            wall_clock: UnixTime::since_unix_epoch(std::time::Duration::ZERO),
            closed: false,
            dynamic_hosts: None,
        };
        s.start();
        s
    }

    /// Also accepts the domains of `hosts` (the shard's run-time domains) as ours.
    pub fn set_dynamic_hosts(&mut self, hosts: crate::shard::DynamicHosts) {
        self.dynamic_hosts = Some(hosts);
    }

    io::io_api!(S2sInEvent);

    /// Fires the timeouts due at `now`: both close the stream with connection-timeout.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.closed {
            return;
        }
        let text = match self.timers.due(now) {
            Some(Due::Auth) => "authentication timeout",
            Some(Due::Idle) => "idle timeout",
            None => return,
        };
        self.stream_error(StreamErrorCondition::ConnectionTimeout, Some(text));
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

    // ---- internals ----

    /// The earliest timer (for `next_timeout`).
    fn next_deadline(&self) -> Option<Instant> {
        self.timers.next()
    }

    fn start(&mut self) {
        if self.cfg.direct_tls {
            match self.cfg.tls_server.clone().map(Transport::tls) {
                Some(Ok(t)) => self.io.transport = t,
                // A direct TLS listener without a usable rustls config: nothing can be served.
                _ => return self.finish(CloseReason::Tls, false),
            }
        }
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

    /// A new stream on the same connection (after STARTTLS or SASL success).
    fn restart(&mut self) {
        self.io.scanner.reset();
        self.awaiting_header = true;
        self.header_sent = false;
        self.new_stream_id();
    }

    /// Our domain `name` names: a configured host or a run-time one (prepared, see
    /// [`prepared_domain`]).
    fn served_host(&self, name: &str) -> Option<String> {
        let name = prepared_domain(name)?;
        if let Some(h) = self
            .cfg
            .hosts
            .iter()
            .find(|h| h.eq_ignore_ascii_case(&name))
        {
            return Some(h.to_ascii_lowercase());
        }
        let dynamic = self.dynamic_hosts.as_ref()?;
        dynamic.contains(&name).then_some(name)
    }

    fn on_header(&mut self, h: StreamHeader) {
        self.awaiting_header = false;
        let host = h.to.as_deref().and_then(|to| self.served_host(to));
        let from = host
            .as_ref()
            .or(self.local.as_ref())
            .or(self.cfg.hosts.first())
            .cloned();
        features::write_header(
            &mut self.io.out,
            Some(&self.stream_id),
            from.as_deref(),
            h.from.as_deref(),
            crate::xmpp::version::answer(h.version.as_deref()),
        );
        self.header_sent = true;
        let Some(host) = host else {
            return self.stream_error(StreamErrorCondition::HostUnknown, None);
        };
        match &self.local {
            // A restarted stream must stay on the domain it started with.
            Some(d) if *d != host => {
                return self.stream_error(StreamErrorCondition::HostUnknown, None)
            }
            Some(_) => {}
            None => self.local = Some(host),
        }
        let from = match h.from.as_deref().map(prepared_domain) {
            Some(None) => return self.stream_error(StreamErrorCondition::InvalidFrom, None),
            Some(Some(from)) => Some(from),
            None => None,
        };
        if from
            .as_deref()
            .is_some_and(|f| self.served_host(f).is_some())
        {
            // A remote claiming one of our own domains.
            return self.stream_error(StreamErrorCondition::InvalidFrom, None);
        }
        if self.sasl_done && from != self.remote {
            return self.stream_error(StreamErrorCondition::InvalidFrom, None);
        }
        self.remote = from;
        let tls = self.io.transport.is_tls();
        if !crate::xmpp::version::at_least_1(h.version.as_deref()) {
            // A pre-RFC 6120 peer: no features, so no STARTTLS; dialback only if TLS is optional.
            if self.cfg.tls_required {
                self.stream_error(StreamErrorCondition::UnsupportedVersion, None);
            }
            return;
        }
        if self.sasl_done {
            self.io.out.extend_from_slice(b"<stream:features/>");
            return;
        }
        if tls {
            self.cert_valid = self.remote.as_deref().is_some_and(|remote| {
                self.cfg.trust.validates(
                    self.io.transport.peer_certificates(),
                    remote,
                    self.wall_clock,
                    CertUsage::Client,
                )
            });
        }
        let offer = Offer {
            starttls: (!tls && self.cfg.tls_server.is_some()).then_some(self.cfg.tls_required),
            external: self.external_offered(),
            dialback: self.cfg.dialback && (tls || !self.cfg.tls_required),
        };
        features::write_features(&mut self.io.out, offer);
    }

    fn external_offered(&self) -> bool {
        // Not once a domain is authenticated: a restart would drop what is pipelined behind it.
        self.io.transport.is_tls()
            && self.cfg.sasl_external
            && self.cert_valid
            && !self.sasl_done
            && self.authenticated.is_empty()
    }

    fn on_element(&mut self, s: Stanza) {
        if s.kind() != StanzaKind::Other {
            // The scanner takes `jabber:client` stanzas anywhere (modules read them so); a server
            // sends `jabber:server` ones (RFC 6120 §4.8.3): a client stanza here is a first-level
            // child this stream does not support (§4.9.3.23).
            if s.xmlns() == Some(ns::CLIENT) {
                return self.stream_error(StreamErrorCondition::UnsupportedStanzaType, None);
            }
            return self.on_stanza(s);
        }
        match s.xmlns() {
            Some(ns::TLS) => return self.on_starttls(&s),
            Some(ns::SASL) => return self.on_sasl(&s),
            // The remote ends the stream with an error (RFC 6120 §4.9.1.1): we close ours, with
            // no error of our own in answer.
            _ if s.name() == "stream:error"
                || (s.name() == "error" && s.xmlns() == Some(ns::STREAMS)) =>
            {
                tracing::info!(
                    error = %String::from_utf8_lossy(s.bytes()),
                    "s2s: the remote server sent a stream error"
                );
                self.close_stream_tag();
                return self.finish(CloseReason::PeerClosed, true);
            }
            _ => {}
        }
        match dialback::parse(&s) {
            Some(db) if db.verify => self.on_db_verify(db),
            Some(db) => self.on_db_result(db),
            None => self.stream_error(StreamErrorCondition::UnsupportedStanzaType, None),
        }
    }

    fn on_starttls(&mut self, s: &Stanza) {
        let allowed = s.name() == "starttls"
            && !self.io.transport.is_tls()
            && self.cfg.tls_server.is_some()
            && self.authenticated.is_empty();
        if !allowed {
            features::write_empty(&mut self.io.out, "failure", ns::TLS);
            self.io.out.extend_from_slice(b"</stream:stream>");
            return self.finish(CloseReason::StarttlsFailure, false);
        }
        if self.io.pipelined() {
            return self.stream_error(
                StreamErrorCondition::PolicyViolation,
                Some("data pipelined after <starttls/>"),
            );
        }
        self.io.held.clear();
        // RFC 6120 §5.4.3.3: nothing learnt in plaintext carries over; a `<db:result/>` sent
        // before TLS must not authenticate the TLS stream when its answer comes.
        self.pending.clear();
        features::write_empty(&mut self.io.out, "proceed", ns::TLS);
        // <proceed/> leaves in plaintext, ahead of the handshake.
        self.io.flush_plain();
        let Some(Ok(tls)) = self.cfg.tls_server.clone().map(Transport::tls) else {
            return self.finish(CloseReason::Tls, false);
        };
        self.io.transport = tls;
        self.restart();
    }

    /// SASL EXTERNAL (RFC 6120 §6.4, XEP-0178): the authorization identity is absent (`=`) or
    /// the header's `from`, whose certificate was validated.
    fn on_sasl(&mut self, s: &Stanza) {
        let el = match s.tree() {
            Ok(el) if el.name == "auth" => el,
            Ok(el) if el.name == "abort" => return self.sasl_failure("aborted"),
            _ => return self.sasl_failure("malformed-request"),
        };
        if !self.external_offered() || el.attr("mechanism") != Some("EXTERNAL") {
            return self.sasl_failure("invalid-mechanism");
        }
        let (Some(remote), Some(local)) = (self.remote.clone(), self.local.clone()) else {
            return self.sasl_failure("not-authorized");
        };
        if self.served_host(&remote).is_some() {
            // A remote claiming one of our own domains (the header check makes this unreachable
            // today; kept so SASL never authenticates one of ours).
            return self.stream_error(StreamErrorCondition::InvalidFrom, None);
        }
        let text = el.text();
        let authzid = match text.trim() {
            "" | "=" => Some(remote.clone()),
            b64 => B64.decode(b64).ok().and_then(|v| String::from_utf8(v).ok()),
        };
        if !authzid.is_some_and(|a| a.eq_ignore_ascii_case(&remote)) {
            return self.sasl_failure("invalid-authzid");
        }
        features::write_empty(&mut self.io.out, "success", ns::SASL);
        self.sasl_done = true;
        self.add_authenticated(remote, local, AuthMethod::SaslExternal);
        self.restart();
    }

    /// Answers a SASL attempt with `<failure/>`; too many close the stream (RFC 6120 §6.4.5).
    fn sasl_failure(&mut self, cond: &str) {
        features::write_sasl_failure(&mut self.io.out, cond);
        self.sasl_failures += 1;
        if self.sasl_failures >= MAX_SASL_FAILURES {
            self.stream_error(
                StreamErrorCondition::PolicyViolation,
                Some("too many authentication failures"),
            );
        }
    }

    /// `<db:result from=remote to=local>key</db:result>`: a domain asks to be authenticated.
    fn on_db_result(&mut self, db: DbElement) {
        if db.type_.is_some() {
            // An answer: we never send requests on an incoming stream.
            return self.stream_error(StreamErrorCondition::UnsupportedStanzaType, None);
        }
        let (Some(remote), Some(to)) = (db.from.as_deref(), db.to.as_deref()) else {
            return self.stream_error(StreamErrorCondition::ImproperAddressing, None);
        };
        let Some(remote) = prepared_domain(remote) else {
            return self.stream_error(StreamErrorCondition::InvalidFrom, None);
        };
        if self.served_host(&remote).is_some() {
            // A remote claiming one of our own domains.
            return self.stream_error(StreamErrorCondition::InvalidFrom, None);
        }
        let refuse = |s: &mut S2sIn, cond| {
            dialback::write(
                &mut s.io.out,
                false,
                to,
                &remote,
                None,
                Some("error"),
                Body::Error(cond),
            );
            s.dialback_failure();
        };
        if !self.cfg.dialback {
            return refuse(self, StanzaErrorCondition::FeatureNotImplemented);
        }
        if self.cfg.tls_required && !self.io.transport.is_tls() {
            // XEP-0220 §2.4: dialback before TLS breaks local policy.
            return refuse(self, StanzaErrorCondition::PolicyViolation);
        }
        let Some(local) = self.served_host(to) else {
            return refuse(self, StanzaErrorCondition::ItemNotFound);
        };
        let pair = (remote.clone(), local);
        if self.authenticated.contains(&pair) {
            let (remote, local) = pair;
            return dialback::write(
                &mut self.io.out,
                false,
                &local,
                &remote,
                None,
                Some("valid"),
                Body::Empty,
            );
        }
        if self.pending.contains(&pair) {
            // Already being verified: its answer covers this request too.
            return;
        }
        if self.pending.len() >= MAX_PENDING
            || self.pending.len() + self.authenticated.len() >= MAX_AUTHENTICATED
        {
            return refuse(self, StanzaErrorCondition::ResourceConstraint);
        }
        self.pending.push(pair.clone());
        let (remote, local) = pair;
        self.events.push_back(S2sInEvent::VerifyRequest {
            remote,
            local,
            stream_id: self.stream_id.clone(),
            key: db.key,
        });
    }

    /// `<db:verify from=receiving to=ours id=..>key</db:verify>`: we are the authoritative server.
    fn on_db_verify(&mut self, db: DbElement) {
        if db.type_.is_some() {
            return self.stream_error(StreamErrorCondition::UnsupportedStanzaType, None);
        }
        let (Some(from), Some(to), Some(id)) =
            (db.from.as_deref(), db.to.as_deref(), db.id.as_deref())
        else {
            return self.stream_error(StreamErrorCondition::ImproperAddressing, None);
        };
        let Some(from) = prepared_domain(from) else {
            return self.stream_error(StreamErrorCondition::InvalidFrom, None);
        };
        let answer = |s: &mut S2sIn, type_, body| {
            dialback::write(&mut s.io.out, true, to, &from, Some(id), Some(type_), body)
        };
        if self.cfg.tls_required && !self.io.transport.is_tls() {
            return answer(
                self,
                "error",
                Body::Error(StanzaErrorCondition::PolicyViolation),
            );
        }
        let Some(local) = self.served_host(to) else {
            return answer(
                self,
                "error",
                Body::Error(StanzaErrorCondition::ItemNotFound),
            );
        };
        let valid = dialback::key_matches(&self.cfg.dialback_secret, &from, &local, id, &db.key);
        answer(self, dialback::verdict(valid), Body::Empty);
    }

    fn answer_verify(&mut self, remote: &str, local: &str, valid: Option<bool>) {
        if self.closed {
            return;
        }
        let Some(pos) = self
            .pending
            .iter()
            .position(|(r, l)| r.eq_ignore_ascii_case(remote) && l.eq_ignore_ascii_case(local))
        else {
            return;
        };
        let (remote, local) = self.pending.swap_remove(pos);
        let out = &mut self.io.out;
        match valid {
            Some(valid) => {
                dialback::write(
                    out,
                    false,
                    &local,
                    &remote,
                    None,
                    Some(dialback::verdict(valid)),
                    Body::Empty,
                );
                if valid {
                    return self.add_authenticated(remote, local, AuthMethod::Dialback);
                }
            }
            None => dialback::write(
                out,
                false,
                &local,
                &remote,
                None,
                Some("error"),
                Body::Error(StanzaErrorCondition::RemoteServerNotFound),
            ),
        }
        self.dialback_failure();
    }

    /// Counts a failed dialback request; too many close the stream (as SASL failures do).
    fn dialback_failure(&mut self) {
        self.dialback_failures = self.dialback_failures.saturating_add(1);
        if self.dialback_failures >= MAX_DIALBACK_FAILURES {
            self.stream_error(
                StreamErrorCondition::PolicyViolation,
                Some("too many dialback failures"),
            );
        }
    }

    fn add_authenticated(&mut self, remote: String, local: String, method: AuthMethod) {
        self.timers.authenticated();
        let pair = (remote, local);
        if !self.authenticated.contains(&pair) {
            self.authenticated.push(pair.clone());
        }
        let (remote, local) = pair;
        self.events.push_back(S2sInEvent::Authenticated {
            remote,
            local,
            method,
        });
    }

    /// A stanza: from an authenticated domain, to one of ours (RFC 6120 §4.9.3.7, §4.9.3.9, §4.9.3.11).
    fn on_stanza(&mut self, s: Stanza) {
        if self.authenticated.is_empty() {
            return self.stream_error(StreamErrorCondition::NotAuthorized, None);
        }
        let (Some(from), Some(to)) = (s.from(), s.to()) else {
            return self.stream_error(StreamErrorCondition::ImproperAddressing, None);
        };
        // Checked as the router will see them: prepared (a raw `ß` is routed as `ss`).
        // A `from` that is not an address at all is improper-addressing (RFC 6120 §4.9.3.10);
        // invalid-from is for an address the stream was not authenticated for.
        let Ok(from) = Jid::parse(&from) else {
            return self.stream_error(StreamErrorCondition::ImproperAddressing, None);
        };
        let Ok(to) = Jid::parse(&to) else {
            return self.stream_error(StreamErrorCondition::ImproperAddressing, None);
        };
        let Some(local) = self.served_host(to.domain()) else {
            let was_served = self
                .authenticated
                .iter()
                .any(|(r, l)| r == from.domain() && l == to.domain());
            if was_served {
                // The stream stays for the pairs still served; this stanza gets an error (a
                // stream error would drop it, and whatever followed it, unanswered).
                self.events.push_back(S2sInEvent::Unserved {
                    stanza: s.into_client_ns(),
                    from,
                    to,
                });
                return;
            }
            return self.stream_error(StreamErrorCondition::HostUnknown, None);
        };
        let ok = self
            .authenticated
            .iter()
            .any(|(r, l)| r == from.domain() && *l == local);
        if !ok {
            return self.stream_error(StreamErrorCondition::InvalidFrom, None);
        }
        // Modules read stanzas in `jabber:client` (a body is `{jabber:client}body`).
        self.events.push_back(S2sInEvent::Stanza {
            stanza: s.into_client_ns(),
            from,
            to,
        });
    }

    /// Sends a stream error (after a header of ours if none went out yet) and closes.
    fn stream_error(&mut self, cond: StreamErrorCondition, text: Option<&str>) {
        if self.closed {
            return;
        }
        if !self.io.transport.is_handshaking() {
            if !self.header_sent {
                // RFC 6120 §4.9.1.2: an error before our header still opens the stream first.
                let from = self.local.as_ref().or(self.cfg.hosts.first()).cloned();
                features::write_header(
                    &mut self.io.out,
                    Some(&self.stream_id),
                    from.as_deref(),
                    None,
                    Some("1.0"),
                );
                self.header_sent = true;
            }
            cond.write_close(text, &mut self.io.out);
        }
        self.finish(CloseReason::StreamError(cond), true);
    }

    fn close_stream_tag(&mut self) {
        if self.header_sent {
            self.io.out.extend_from_slice(b"</stream:stream>");
        }
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
}

/// `raw` lowercased when it is a domain already in its prepared form (RFC 7622 §3.2) up to ASCII
/// case, else `None`: a domain nameprep changes (`straße` to `strasse`, DNS keeps the `ß`) could be
/// authenticated under one name and routed under another.
pub(super) fn prepared_domain(raw: &str) -> Option<String> {
    let jid = BareJid::domain_only(raw).ok()?;
    let lower = raw.to_ascii_lowercase();
    (jid.domain() == lower).then_some(lower)
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
                self.finish(CloseReason::PeerClosed, true);
            }
            Event::Whitespace => {}
        }
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
