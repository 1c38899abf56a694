//! IQs the stream lets through before authentication when in-band registration (XEP-0077) is on:
//! `<iq type='get'|'set'><query xmlns='jabber:iq:register'/></iq>`. They go to the driver as
//! [`C2sEvent::PreAuthIq`]; input waits until the driver answers with [`C2s::preauth_reply`].
//! Registration sends a password, so it is refused unless the stream is encrypted (or is a
//! plaintext loopback stream the listener allows PLAIN on).

use super::stream::{C2s, Wait};
use super::{reply, C2sEvent};
use crate::xml::{Stanza, StanzaKind};
use crate::xmpp::StanzaErrorCondition;

/// `jabber:iq:register`.
pub const NS_REGISTER: &str = "jabber:iq:register";

impl C2s {
    /// Whether `<register/>` is offered and registration IQs are accepted now.
    pub(super) fn register_offered(&self) -> bool {
        self.cfg.register && self.plain_allowed()
    }

    /// Handles `s` if it is a registration IQ before authentication; false (and `s` dropped) when not.
    pub(super) fn on_preauth_iq(&mut self, s: Stanza) -> bool {
        let is_register = self.cfg.register
            && s.kind() == StanzaKind::Iq
            && s.ty().is_request()
            && s.child_ns().as_deref() == Some(NS_REGISTER);
        if !is_register {
            return false;
        }
        if !self.register_offered() {
            let id = s.id();
            reply::write_iq_error(
                &mut self.out,
                id.as_deref(),
                StanzaErrorCondition::PolicyViolation,
            );
            return true;
        }
        self.wait = Wait::PreAuth;
        self.events.push_back(C2sEvent::PreAuthIq(s));
        true
    }

    /// The driver's answer to [`C2sEvent::PreAuthIq`]: a whole `<iq/>` to write; input resumes.
    pub fn preauth_reply(&mut self, iq: &[u8]) {
        if self.closed || !matches!(self.wait, Wait::PreAuth) {
            return;
        }
        self.wait = Wait::Nothing;
        self.out.extend_from_slice(iq);
        self.run();
    }
}
