//! Server-to-client pings (XEP-0199 §4.2): after `ping_interval` without input from a bound client
//! the stream sends `<iq type='get'><ping xmlns='urn:xmpp:ping'/></iq>`; if nothing at all arrives
//! within `ping_timeout` the peer is dead and the stream closes with `connection-timeout`. The
//! client's answer is consumed here, never routed.

use std::time::Instant;

use super::stream::{random_token, C2s};
use crate::xml::escape::escape_attr_into;
use crate::xml::{Stanza, StanzaKind};
use crate::xmpp::{ns, StreamErrorCondition};

/// The ping in flight, if any.
#[derive(Debug, Default)]
pub(super) struct PingState {
    /// Id of the last ping sent (its answer is swallowed even when it comes late).
    id: Option<String>,
    /// When the unanswered ping was sent.
    sent: Option<Instant>,
}

impl C2s {
    /// When the ping logic needs `handle_timeout`: the next ping, or the end of the wait for input.
    pub(super) fn ping_deadline(&self) -> Option<Instant> {
        if self.cfg.ping_interval.is_zero() || !self.is_bound() {
            return None;
        }
        match self.ping.sent {
            Some(sent) if self.last_input <= sent => Some(sent + self.cfg.ping_timeout),
            _ => Some(self.last_input + self.cfg.ping_interval),
        }
    }

    /// Sends a ping or closes a dead stream when due at `now`.
    pub(super) fn ping_timeout(&mut self, now: Instant) {
        let Some(due) = self.ping_deadline() else {
            return;
        };
        if now < due {
            return;
        }
        match self.ping.sent {
            Some(sent) if self.last_input <= sent => self.stream_error(
                StreamErrorCondition::ConnectionTimeout,
                Some("no answer to ping"),
            ),
            _ => self.send_ping(now),
        }
    }

    fn send_ping(&mut self, now: Instant) {
        let Ok(token) = random_token() else {
            return;
        };
        let id = format!("ping-{token}");
        let addr = self
            .jid()
            .map(|jid| (jid.domain().to_owned(), jid.as_str().to_owned()));
        // Written as the stream's own stanza: XEP-0198 counts it like any other.
        self.write_local_stanza(|out| {
            out.extend_from_slice(b"<iq type='get' id='");
            escape_attr_into(&id, out);
            if let Some((from, to)) = &addr {
                out.extend_from_slice(b"' from='");
                escape_attr_into(from, out);
                out.extend_from_slice(b"' to='");
                escape_attr_into(to, out);
            }
            out.extend_from_slice(b"'><ping xmlns='");
            out.extend_from_slice(ns::PING.as_bytes());
            out.extend_from_slice(b"'/></iq>");
        });
        self.ping = PingState {
            id: Some(id),
            sent: Some(now),
        };
    }

    /// True when `s` answers our ping (result or error with its id): the caller drops it.
    pub(super) fn is_ping_answer(&mut self, s: &Stanza) -> bool {
        let Some(id) = self.ping.id.as_deref() else {
            return false;
        };
        let answers =
            s.kind() == StanzaKind::Iq && s.ty().is_response() && s.id().as_deref() == Some(id);
        if answers {
            self.ping.id = None;
        }
        answers
    }
}
