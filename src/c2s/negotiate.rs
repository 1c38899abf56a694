//! Stream negotiation: the server's header and features, STARTTLS, SASL (RFC 6120 §4-6).

use super::error::CloseReason;
use super::features::{self, Offer, MECHANISMS};
use super::sasl::{self, SaslRequest};
use super::stream::{random_token, Auth, C2s, Wait, MAX_SASL_FAILURES};
use super::transport::Transport;
use super::{C2sEvent, TlsMode};
use crate::auth::{ChannelBinding, Mechanism, SaslFailure, SaslServer, SaslStep};
use crate::jid::BareJid;
use crate::xml::{Stanza, StreamHeader};
use crate::xmpp::StreamErrorCondition;

impl C2s {
    // ---- stream header and features ----

    pub(super) fn on_header(&mut self, h: StreamHeader) {
        self.awaiting_header = false;
        if matches!(self.auth, Auth::None(_)) {
            self.stream_from = h.from.as_deref().map(Box::from);
        }
        let host = h.to.as_deref().and_then(|to| self.served_host(to));
        // A `to` we do not serve, or none (RFC 6120 §4.7.2 requires it), is not answered with
        // the name of a domain we do: a prober would learn the first tenant's.
        let from = host
            .as_deref()
            .or(self.domain.as_deref())
            .map(str::to_owned);
        features::write_header(
            &mut self.out,
            &self.stream_id,
            from.as_deref(),
            h.from.as_deref(),
            crate::xmpp::version::answer(h.version.as_deref()),
        );
        self.header_sent = true;
        if !crate::xmpp::version::at_least_1(h.version.as_deref()) {
            self.stream_error(StreamErrorCondition::UnsupportedVersion, None);
            return;
        }
        let Some(host) = host else {
            self.stream_error(StreamErrorCondition::HostUnknown, None);
            return;
        };
        match &self.domain {
            Some(d) if !d.eq_ignore_ascii_case(&host) => {
                // A restarted stream must stay on the domain it negotiated for.
                self.stream_error(StreamErrorCondition::HostUnknown, None);
                return;
            }
            Some(_) => {}
            None => self.domain = Some(host.into()),
        }
        match &self.auth {
            Auth::None(_) => {
                let channel_binding = self.channel_binding();
                let (mechs, n) = self.offered_mechanisms(channel_binding.any());
                let offer = Offer::PreAuth {
                    starttls: self.starttls_offer(),
                    mechanisms: &mechs[..n],
                    channel_binding,
                    register: self.register_offered(),
                    sasl2: self.cfg.sasl2,
                    inline_sm: self.sm_offered(),
                    bind2_features: &self.cfg.bind2_features,
                };
                features::write_features(&mut self.out, &offer);
            }
            Auth::Authed(_) => features::write_features(
                &mut self.out,
                &Offer::Bind {
                    extra: &self.cfg.post_auth_features,
                },
            ),
            // No restart happens after binding; an empty feature set is the safe answer.
            Auth::Bound(_) => self.out.extend_from_slice(b"<stream:features/>"),
        }
    }

    /// The served domain a stream header's `to` names: a configured host, or one added at run
    /// time (the shard's [`crate::shard::DynamicHosts`], read without a lock).
    /// `to` is prepared as a JID's domain is (case, a trailing dot, Unicode normalization and
    /// A-labels, RFC 7622 §3.2), so a header names a host as a JID does.
    pub(super) fn served_host(&self, to: &str) -> Option<String> {
        let to = BareJid::domain_only(to).ok()?;
        let to = to.domain();
        if let Some(h) = self.cfg.hosts.iter().find(|h| *h == to) {
            return Some(h.clone());
        }
        let dynamic = self.dynamic_hosts.as_ref()?;
        dynamic.contains(to).then(|| to.to_owned())
    }

    /// `Some(required)` when STARTTLS may be negotiated now.
    pub(super) fn starttls_offer(&self) -> Option<bool> {
        let mode_offers = matches!(
            self.cfg.tls_mode,
            TlsMode::Starttls | TlsMode::StarttlsRequired
        );
        (mode_offers
            && self.cfg.tls.is_some()
            && !self.transport.is_tls()
            && matches!(self.auth, Auth::None(None)))
        .then_some(self.cfg.tls_mode == TlsMode::StarttlsRequired)
    }

    /// SASL is withheld until TLS when STARTTLS is mandatory.
    pub(super) fn sasl_offered(&self) -> bool {
        self.cfg.tls_mode != TlsMode::StarttlsRequired || self.transport.is_tls()
    }

    /// PLAIN sends the password: only over TLS, or from loopback when configured.
    pub(super) fn plain_allowed(&self) -> bool {
        self.transport.is_tls()
            || self.cfg.transport_secure
            || (self.cfg.allow_plaintext_on_loopback
                && self.peer.addr.ip().to_canonical().is_loopback())
    }

    pub(super) fn mechanism_offered(&self, m: Mechanism, plus: bool) -> bool {
        self.sasl_offered()
            && match m {
                Mechanism::ScramSha256Plus | Mechanism::ScramSha1Plus => plus,
                Mechanism::Plain => self.plain_allowed(),
                _ => true,
            }
    }

    /// What SCRAM-PLUS can bind to on this stream.
    pub(super) fn channel_binding(&self) -> ChannelBinding {
        self.transport
            .channel_binding(self.served_cert.as_ref().and_then(|c| c.end_point()))
    }

    /// The mechanisms to advertise, in preference order (array + length: no allocation); `plus`:
    /// channel binding data exists.
    pub(super) fn offered_mechanisms(&self, plus: bool) -> ([Mechanism; MECHANISMS.len()], usize) {
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

    pub(super) fn on_starttls(&mut self, s: &Stanza) {
        if s.name() != "starttls" || self.starttls_offer().is_none() {
            features::write_tls_failure_close(&mut self.out);
            self.finish(CloseReason::StarttlsFailure, false);
            return;
        }
        // Plaintext sent after <starttls/> but before the handshake could be injected by a
        // man-in-the-middle and would be processed as if it came over TLS (CVE-2011-0411): refuse it
        // with policy-violation (it breaks local security policy; the XML itself is fine).
        let pipelined =
            self.scanner.has_buffered() || self.held.iter().any(|b| !b.is_ascii_whitespace());
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
        self.served_cert = self.cfg.tls_cert.as_ref().map(|c| c.snapshot());
        let Some(Ok(tls)) = self.cfg.tls.clone().map(Transport::tls) else {
            self.finish(CloseReason::Tls, false);
            return;
        };
        self.transport = tls;
        self.restart();
    }

    /// A new stream on the same connection (after STARTTLS or SASL success).
    pub(super) fn restart(&mut self) {
        self.scanner.reset();
        self.awaiting_header = true;
        self.header_sent = false;
        self.new_stream_id();
    }

    pub(super) fn new_stream_id(&mut self) {
        match random_token() {
            Ok(id) => self.stream_id = id.into(),
            Err(_) => self.stream_error(
                StreamErrorCondition::InternalServerError,
                Some("no randomness"),
            ),
        }
    }

    // ---- SASL ----

    pub(super) fn on_sasl(&mut self, s: &Stanza) {
        // An exchange begun with <authenticate/> goes on in SASL2 framing only: an RFC 6120
        // <response/> to it would end with an RFC 6120 <success/> and a restart, the inline
        // requests dropped.
        let began_in_sasl2 = std::mem::replace(&mut self.sasl2_framing, false);
        self.sasl2 = None;
        let req = match sasl::parse(s) {
            Ok(req) => req,
            Err(f) => return self.sasl_failure(f),
        };
        match req {
            SaslRequest::Auth { mechanism, initial } => {
                self.on_auth(&mechanism, initial.as_deref())
            }
            SaslRequest::Response(data) => {
                let step = match &mut self.auth {
                    Auth::None(Some(server)) if !began_in_sasl2 => server.step(&data),
                    _ => return self.sasl_failure(SaslFailure::MalformedRequest),
                };
                self.on_sasl_step(step);
            }
            SaslRequest::Abort => self.sasl_failure(SaslFailure::Aborted),
        }
    }

    pub(super) fn on_auth(&mut self, mechanism: &str, initial: Option<&[u8]>) {
        if !self.sasl_offered() {
            return self.sasl_failure(SaslFailure::EncryptionRequired);
        }
        let Some(mech) = Mechanism::from_name(mechanism) else {
            return self.sasl_failure(SaslFailure::InvalidMechanism);
        };
        let cb = self.channel_binding();
        let plus = cb.any();
        if !self.mechanism_offered(mech, plus) {
            let f = match mech {
                Mechanism::Plain => SaslFailure::EncryptionRequired,
                _ => SaslFailure::InvalidMechanism,
            };
            return self.sasl_failure(f);
        }
        // A header always precedes SASL, so the domain is known.
        let domain = self.domain.as_deref().unwrap_or_default();
        let (server, step) = SaslServer::start(mech, domain, cb, plus, initial);
        self.auth = Auth::None(Some(Box::new(server)));
        self.on_sasl_step(step);
    }

    pub(super) fn on_sasl_step(&mut self, step: SaslStep) {
        match step {
            SaslStep::Challenge(data) if self.sasl2_framing => {
                super::sasl2::write_challenge(&mut self.out, &data)
            }
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
                // XEP-0388 §2.3: a non-empty authorization identity must match the stream's
                // `from`, if it has one (the authzid can only be the user's own JID).
                let authzid = matches!(&self.auth, Auth::None(Some(s)) if s.authzid_given());
                let from_differs = self.stream_from.as_deref().is_some_and(|f| {
                    crate::jid::Jid::parse(f).map_or(true, |from| from.bare() != jid)
                });
                if self.sasl2_framing && authzid && from_differs {
                    return self.sasl_failure(SaslFailure::InvalidAuthzid);
                }
                self.stream_from = None;
                self.served_cert = None;
                self.auth = Auth::Authed(jid.clone());
                self.events
                    .push_back(C2sEvent::Authenticated { jid: jid.clone() });
                if self.sasl2_framing {
                    // An exchange in SASL2 framing always started with an <authenticate/>.
                    let inline = self.sasl2.take().unwrap_or_default();
                    self.sasl2_success(jid, inline, additional_data)
                } else {
                    sasl::write_success(&mut self.out, additional_data.as_deref());
                    self.restart();
                }
            }
            SaslStep::Failure(f) => self.sasl_failure(f),
        }
    }

    /// Ends the SASL exchange with `<failure/>`; too many failures close the stream (RFC 6120 §6.4.5).
    pub(super) fn sasl_failure(&mut self, condition: SaslFailure) {
        let auth = std::mem::replace(&mut self.auth, Auth::None(None));
        if let (Auth::None(Some(server)), SaslFailure::NotAuthorized) = (&auth, condition) {
            // Wrong credentials (not a malformed or aborted exchange): the driver counts it.
            let checked = server
                .checked_user()
                .map(|u| BareJid::new(Some(u), self.domain()));
            if let Some(Ok(jid)) = checked {
                self.events.push_back(C2sEvent::AuthFailed { jid });
            }
        }
        self.write_sasl_failure(condition);
        self.sasl_failures += 1;
        if self.sasl_failures >= MAX_SASL_FAILURES {
            self.stream_error(
                StreamErrorCondition::PolicyViolation,
                Some("too many authentication failures"),
            );
        }
    }
}

impl C2s {
    /// `<failure/>` in the framing of the exchange (RFC 6120 or SASL2); the SASL2 requests end
    /// with it (XEP-0388 §2.6.2: the stream state stays as it was).
    pub(super) fn write_sasl_failure(&mut self, condition: SaslFailure) {
        self.sasl2 = None;
        if self.sasl2_framing {
            super::sasl2::write_failure(&mut self.out, condition.as_str());
        } else {
            sasl::write_failure(&mut self.out, condition.as_str());
        }
    }
}
