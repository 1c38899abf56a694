//! IQs between occupants (XEP-0045 §7.5 "IQ requests", XEP-0410 self-ping): requests go to the
//! target's real JID from `room/nick` under an id of the room's own, and the answers come back
//! the same way to the requester under its original id.

use std::collections::VecDeque;

use super::util::{error_reply, iq_result};
use super::{Room, RoomOut};
use crate::jid::{BareJid, FullJid, Jid};
use crate::xml::{Element, Stanza};
use crate::xmpp::{ns, StanzaErrorCondition as E};

/// Requests awaiting an answer, oldest first; past this many the oldest is given up.
const MAX_PENDING: usize = 256;

/// A forwarded request awaiting its answer.
#[derive(Debug)]
struct Pending {
    /// The id the room gave the forwarded request.
    id: String,
    /// The requester's id.
    orig_id: String,
    /// The requester's real JID.
    requester: FullJid,
    /// Who the request went to (only it may answer): the occupant's session, or its account
    /// (bare JID) for what the account's server answers.
    responder: Jid,
    /// The occupant JID the request was addressed to (an answer comes from it).
    target: String,
}

impl Pending {
    /// The error (`cond`, of its default type) the requester gets for a request that will not be
    /// answered.
    fn fail(self, cond: E) -> RoomOut {
        let el = Element::new("iq", ns::CLIENT)
            .with_attr("type", "error")
            .with_attr("id", self.orig_id)
            .with_attr("from", self.target)
            .with_attr("to", self.requester.as_str())
            .with_child(
                Element::new("error", ns::CLIENT)
                    .with_attr("type", cond.default_type().as_str())
                    .with_child(Element::new(cond.as_str(), ns::STANZAS)),
            );
        super::util::send(&self.requester, &el)
    }
}

/// The room's forwarded requests.
#[derive(Debug, Default)]
pub(super) struct Forwarded {
    pending: VecDeque<Pending>,
    next: u64,
}

impl Room {
    /// The answer of an occupant's account (its server, for a request [`Room::on_occupant_iq`]
    /// sent to the bare JID) to `room/nick`.
    pub fn account_answer(&mut self, from: &BareJid, stanza: &Stanza) -> Vec<RoomOut> {
        let mut out = Vec::new();
        if stanza.kind() == crate::xml::StanzaKind::Iq && stanza.ty().is_response() {
            self.answer_back(from.as_str(), stanza, &mut out);
        }
        out
    }

    /// IQs to `room/nick`.
    pub(super) fn on_occupant_iq(
        &mut self,
        from: &FullJid,
        stanza: &Stanza,
        to: &str,
        nick: &str,
        out: &mut Vec<RoomOut>,
    ) {
        let ty = stanza.ty();
        if ty.is_response() {
            self.answer_back(from.as_str(), stanza, out);
            return;
        }
        let child_ns = stanza.child_ns();
        let Some(me) = self.occupants.nick_of(from).map(str::to_owned) else {
            // §6.6: a non-occupant's disco request to an occupant is `bad-request`; anything else
            // (a XEP-0410 self-ping from a session that is no longer joined) `not-acceptable`.
            let disco = matches!(child_ns.as_deref(), Some(ns::DISCO_INFO | ns::DISCO_ITEMS));
            let cond = if disco {
                E::BadRequest
            } else {
                E::NotAcceptable
            };
            out.extend(error_reply(stanza, to, from, cond));
            return;
        };
        let is_ping = child_ns.as_deref() == Some(ns::PING);
        if me == nick && is_ping {
            // XEP-0410: the room answers for the occupant, proving it is still joined.
            out.push(iq_result(stanza, to, from, None));
            return;
        }
        let Some(session) = self.occupants.get(nick).map(|o| o.jid.clone()) else {
            out.extend(error_reply(stanza, to, from, E::ItemNotFound));
            return;
        };
        // What the occupant's server keeps for the account (its vCard, its PEP nodes: avatars,
        // nicknames) goes to the bare JID, as Prosody and ejabberd send it: a client answers
        // vCard requests rarely, and occupants' avatars were missing.
        let account = matches!(
            child_ns.as_deref(),
            Some(ns::VCARD | ns::VCARD4 | ns::PUBSUB)
        ) && stanza.ty() == crate::xml::StanzaType::Get;
        let target = if account {
            Jid::from(session.bare())
        } else {
            Jid::from(session)
        };
        let (Some(orig_id), Ok(mut el)) = (stanza.id(), stanza.tree()) else {
            out.extend(error_reply(stanza, to, from, E::BadRequest));
            return;
        };
        let from_nick = self.occupant_jid(&me);
        let f = &mut self.forwarded;
        f.next += 1;
        let id = format!("muc{}", f.next);
        el.attrs
            .retain(|(k, _)| k != "from" && k != "to" && k != "id");
        el.attrs.push(("from".into(), from_nick));
        el.attrs.push(("to".into(), target.as_str().into()));
        el.attrs.push(("id".into(), id.clone()));
        // The oldest request is given up, not the new one refused: nothing expires pending
        // requests but an answer or the target leaving, so refusing would let occupants that
        // never answer (or one requester's flood) block every forwarded request of the room for
        // good. It is answered (RFC 6120 §8.2.3): the room ran out of room for it.
        if f.pending.len() >= MAX_PENDING {
            if let Some(old) = f.pending.pop_front() {
                out.push(old.fail(E::ResourceConstraint));
            }
        }
        f.pending.push_back(Pending {
            id,
            orig_id: orig_id.into_owned(),
            requester: from.clone(),
            responder: target.clone(),
            target: to.to_owned(),
        });
        out.push(super::util::send_jid(target, &el));
    }

    /// Session `gone` left the room: the requests it was asked and had not answered are answered
    /// for it, `service-unavailable` as for a session that is no more (RFC 6120 §8.2.3: every
    /// request gets an answer).
    pub(super) fn fail_forwarded(&mut self, gone: &FullJid, out: &mut Vec<RoomOut>) {
        let f = &mut self.forwarded;
        let gone = gone.as_str();
        if !f.pending.iter().any(|p| p.responder.as_str() == gone) {
            return;
        }
        let (unanswered, rest): (VecDeque<Pending>, VecDeque<Pending>) =
            std::mem::take(&mut f.pending)
                .into_iter()
                .partition(|p| p.responder.as_str() == gone);
        f.pending = rest;
        for p in unanswered {
            out.push(p.fail(E::ServiceUnavailable));
        }
    }

    /// An answer to a forwarded request goes back to the requester under its own id, from the
    /// occupant JID it was addressed to.
    fn answer_back(&mut self, from: &str, stanza: &Stanza, out: &mut Vec<RoomOut>) {
        let Some(id) = stanza.id() else { return };
        let f = &mut self.forwarded;
        let Some(at) = f
            .pending
            .iter()
            .position(|p| p.id == id && p.responder.as_str() == from)
        else {
            return;
        };
        let Some(p) = f.pending.remove(at) else {
            return;
        };
        let Ok(mut el) = stanza.tree() else {
            return;
        };
        el.attrs
            .retain(|(k, _)| k != "from" && k != "to" && k != "id");
        el.attrs.push(("from".into(), p.target));
        el.attrs.push(("to".into(), p.requester.as_str().into()));
        el.attrs.push(("id".into(), p.orig_id));
        out.push(super::util::send(&p.requester, &el));
    }
}
