//! The authenticated stream: resource binding, then stanzas to route (RFC 6120 §7-8).

use std::borrow::Cow;

use super::stream::{random_token, Auth, C2s, Wait};
use super::{reply, C2sEvent};
use crate::jid::BareJid;
use crate::xml::{Stanza, StanzaKind, StanzaType};
use crate::xmpp::{ns, StanzaErrorCondition, StreamErrorCondition};

impl C2s {
    pub(super) fn on_element(&mut self, s: Stanza) {
        let s = unprefixed(s);
        let (is_tls, is_sasl, is_sasl2, is_client, is_sm) = {
            let e = element_ns(&s);
            (
                e == ns::TLS,
                e == ns::SASL,
                e == ns::SASL2,
                e == ns::CLIENT,
                e == super::NS_SM,
            )
        };
        if is_sm && self.sm_offered() && !matches!(self.auth, Auth::None(_)) {
            self.on_sm(&s);
            return;
        }
        if is_tls {
            self.on_starttls(&s);
            return;
        }
        match &self.auth {
            Auth::None(_) if is_sasl => self.on_sasl(&s),
            Auth::None(_) if is_sasl2 && self.cfg.sasl2 => self.on_sasl2(&s),
            // XEP-0077: registration before authentication, when enabled.
            Auth::None(None) if is_client && self.cfg.register => {
                if !self.on_preauth_iq(s) {
                    self.stream_error(StreamErrorCondition::NotAuthorized, None)
                }
            }
            // RFC 6120 §6.4: nothing but negotiation before authentication.
            Auth::None(_) => self.stream_error(StreamErrorCondition::NotAuthorized, None),
            // XEP-0388 §3.8: an <authenticate/> after success is a stream error too.
            Auth::Authed(_) | Auth::Bound(_) if is_sasl || is_sasl2 => self.stream_error(
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

    // ---- binding and stanzas ----

    /// Authenticated, not bound: only bind (and IQs to the server itself) are allowed (RFC 6120 §7.1).
    pub(super) fn on_prebind(&mut self, s: Stanza, bare: &BareJid) {
        let is_iq_request = s.kind() == StanzaKind::Iq && s.ty().is_request();
        if is_iq_request && !s.is_well_formed_iq() {
            // No id, or not one child (RFC 6120 §8.1.3, §8.2.3): refused before anything acts.
            let id = s.id();
            return reply::write_iq_error(
                &mut self.out,
                id.as_deref(),
                StanzaErrorCondition::BadRequest,
            );
        }
        if is_iq_request
            && s.child_name() == Some("bind")
            && s.child_ns().as_deref() == Some(ns::BIND)
        {
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
            reply::write_iq_error(
                &mut self.out,
                id.as_deref(),
                StanzaErrorCondition::ServiceUnavailable,
            );
        } else {
            self.stream_error(StreamErrorCondition::NotAuthorized, None);
        }
    }

    pub(super) fn on_bind(&mut self, s: &Stanza, bare: &BareJid) {
        if self.served_host(bare.domain()).is_none() {
            // Its domain was removed at run time after the stream opened: no session may start.
            return self.stream_error(StreamErrorCondition::HostGone, None);
        }
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
            Err(_) => reply::write_iq_error(
                &mut self.out,
                id.as_deref(),
                StanzaErrorCondition::BadRequest,
            ),
        }
    }

    pub(super) fn on_bound(&mut self, mut s: Stanza, client_ns: bool) {
        // XEP-0198: every stanza the client sends counts, the ones the stream answers itself too
        // (handled at once); the route's are handled when their token is dropped.
        let seq = if s.kind() != StanzaKind::Other {
            self.sm_inbound()
        } else {
            None
        };
        let handled_here = |c: &mut Self| {
            if let (Some(seq), Some(sm)) = (seq, c.sm.as_mut()) {
                sm.handle(seq);
            }
        };
        if self.is_ping_answer(&s) {
            handled_here(self);
            return;
        }
        match s.kind() {
            // Malformed requests (no id, say) go on to the route, which answers bad-request.
            StanzaKind::Iq
                if s.ty() == StanzaType::Set
                    && s.is_well_formed_iq()
                    && s.child_ns().as_deref() == Some(ns::SESSION) =>
            {
                let id = s.id();
                self.reply_empty_result(id.as_deref());
                handled_here(self);
            }
            StanzaKind::Iq
                if s.ty() == StanzaType::Set
                    && s.is_well_formed_iq()
                    && s.child_ns().as_deref() == Some(ns::BIND) =>
            {
                // One resource per stream (RFC 6120 §7.7.2.1 dropped multi-resource binding).
                let id = s.id();
                self.reply_iq_error(id.as_deref(), StanzaErrorCondition::NotAllowed);
                handled_here(self);
            }
            StanzaKind::Message | StanzaKind::Presence | StanzaKind::Iq => {
                if let Auth::Bound(jid) = &self.auth {
                    // RFC 6120 §8.1.2.1: the server stamps `from`, replacing whatever the client wrote.
                    s.set_from(jid.as_str());
                }
                self.events.push_back(C2sEvent::Stanza(s, seq));
            }
            StanzaKind::Other if client_ns => {
                self.stream_error(StreamErrorCondition::UnsupportedStanzaType, None)
            }
            // XEP-0198 <enable/>, <r/>, CSI...: the route hands them to user_send_xmlel.
            StanzaKind::Other => self.events.push_back(C2sEvent::Stanza(s, None)),
        }
    }

    pub(super) fn is_bound(&self) -> bool {
        matches!(self.auth, Auth::Bound(_))
    }
}

/// A stanza written with a prefix bound to the content namespace (`<c:message
/// xmlns:c='jabber:client'>`) is a stanza all the same (XML namespaces; RFC 6120 §4.8.3): it is
/// written again unprefixed, since the route reads stanzas by their unprefixed names. Rare, so the
/// tree's cost does not matter.
fn unprefixed(s: Stanza) -> Stanza {
    if !s.name().contains(':') {
        return s;
    }
    match s.tree() {
        Ok(el) if el.ns == ns::CLIENT && matches!(&*el.name, "message" | "presence" | "iq") => {
            Stanza::from_element(&el)
        }
        _ => s,
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

/// The requested resource of a bind IQ: `Ok(None)` when absent or empty, `Err` when the IQ is malformed.
fn bind_resource(s: &Stanza) -> Result<Option<String>, ()> {
    // A bind is a set (RFC 6120 §7.6.1); a get changes nothing.
    if s.type_().as_deref() != Some("set") {
        return Err(());
    }
    let iq = s.tree().map_err(|_| ())?;
    let bind = iq.get_child("bind", ns::BIND).ok_or(())?;
    let Some(res) = bind.get_child("resource", ns::BIND) else {
        return Ok(None);
    };
    let text = res.text();
    Ok((!text.is_empty()).then(|| text.to_string()))
}
