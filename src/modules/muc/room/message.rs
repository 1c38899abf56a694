//! Messages: groupchat and subject changes (§7.4, §8.1), private messages (§7.5), mediated
//! invitations and declines (§7.8.2); voice requests are `voice.rs`'s.

use std::time::SystemTime;

use super::occupant_id;
use super::types::{Affiliation, Role, NS_DELAY, NS_MUC_USER};
use super::util::{error_reply, error_reply_short, send, send_jid, stamp};
use super::voice::voice_form;
use super::{AllowPm, Room, RoomOut, Subject};
use crate::jid::{FullJid, Jid};
use crate::xml::{Element, Node, Stanza, StanzaType};
use crate::xmpp::{form, ns, StanzaErrorCondition as E};

/// Private messages whose ids a room remembers (see `Room::recent_pms`).
const RECENT_PMS: usize = 64;

/// Invitations and declines one message may carry.
const MAX_INVITATIONS: usize = 20;

impl Room {
    /// Messages to the room itself: groupchat, invitations, declines.
    pub(super) fn on_room_message(
        &mut self,
        from: &FullJid,
        stanza: &Stanza,
        now: SystemTime,
        out: &mut Vec<RoomOut>,
    ) {
        let room = self.jid.as_str().to_owned();
        match stanza.ty() {
            StanzaType::Groupchat => self.groupchat(from, stanza, now, out),
            StanzaType::Error => self.on_error_from(from, stanza, out),
            _ => {
                let el = stanza.tree().ok();
                let child = |name: &str, ns: &str| el.as_ref()?.get_child(name, ns).cloned();
                if let Some(x) = child("x", NS_MUC_USER) {
                    self.invitations(from, stanza, &x, out);
                } else if let Some(f) = child("x", form::NS).as_ref().and_then(voice_form) {
                    self.on_voice_form(from, stanza, f, now, out);
                } else {
                    out.extend(error_reply(stanza, &room, from, E::ServiceUnavailable));
                }
            }
        }
    }

    fn groupchat(
        &mut self,
        from: &FullJid,
        stanza: &Stanza,
        now: SystemTime,
        out: &mut Vec<RoomOut>,
    ) {
        let Some(occ) = self.occupants.by_jid(from) else {
            out.extend(error_reply(
                stanza,
                self.jid.as_str(),
                from,
                E::NotAcceptable,
            ));
            return;
        };
        let (nick, role, oid) = (occ.nick.clone(), occ.role, occ.occupant_id.clone());
        if stanza.bytes().len() > self.limits.max_stanza_bytes {
            out.extend(error_reply_short(
                stanza,
                self.jid.as_str(),
                from,
                E::PolicyViolation,
            ));
            return;
        }
        if role < Role::Participant {
            out.extend(error_reply(stanza, self.jid.as_str(), from, E::Forbidden));
            return;
        }
        let Ok(mut el) = stanza.tree() else {
            out.extend(error_reply(stanza, self.jid.as_str(), from, E::BadRequest));
            return;
        };
        let body = el.get_child("body", ns::CLIENT).is_some();
        let subject = el.get_child("subject", ns::CLIENT).map(Element::text);
        let me = self.occupant_jid(&nick);
        // Occupant information is the room's to give: a client's own `<x muc#user>` and
        // `<occupant-id>` are removed (XEP-0045 spoofing, XEP-0421 §4; XEP-0313 §5.1.2 before
        // archiving), and the room's occupant id is added, to the history's copy too.
        let foreign = |n: &Node| {
            matches!(n, Node::Element(e) if e.name == "x" && e.ns == NS_MUC_USER)
                || occupant_id::is_occupant_id(n)
        };
        let spoofed = el.children.iter().any(foreign);
        el.children.retain(|c| !foreign(c));
        let own = oid.as_deref().map(occupant_id::element);
        if let Some(id) = &own {
            el.children.push(Node::Element(id.clone()));
        }
        let mut reflected = match own {
            _ if spoofed => Stanza::from_element(&el),
            Some(id) => {
                // The stanza as sent, with the id appended: no second serialization.
                let mut s = stanza.clone();
                let mut bytes = Vec::new();
                id.write_to(&mut bytes);
                s.append_child(&bytes);
                s
            }
            None => stanza.clone(),
        };
        reflected.remove_attr("to");
        reflected.set_from(&me);
        if let (Some(text), false) = (subject, body) {
            let may = role == Role::Moderator || self.config.change_subject;
            if !may {
                out.extend(error_reply(stanza, self.jid.as_str(), from, E::Forbidden));
                return;
            }
            self.subject = Some(Subject { text, nick });
            self.save(out);
        }
        let history = body && self.keep(el, &me, now);
        let real = Some(from.clone());
        out.push(RoomOut::Broadcast {
            stanza: reflected,
            to: self.occupants.recipients(),
            real,
            history,
        });
    }

    /// Keeps a groupchat message (its tree as received) in the history: from `room/nick`, no
    /// `to`, with its `<delay/>`. False when the room keeps no history.
    fn keep(&mut self, mut el: Element, from: &str, now: SystemTime) -> bool {
        let cap = self.config.history_length as usize;
        if cap == 0 {
            return false;
        }
        el.attrs.retain(|(k, _)| k != "to" && k != "from");
        el.attrs.push(("from".into(), from.into()));
        // A client-supplied delay would lie about when the room got the message.
        el.children
            .retain(|c| !matches!(c, Node::Element(e) if e.name == "delay" && e.ns == NS_DELAY));
        el.children.push(Node::Element(
            Element::new("delay", NS_DELAY)
                .with_attr("from", self.jid.as_str())
                .with_attr("stamp", stamp(now)),
        ));
        self.history.push(Stanza::from_element(&el), now, cap);
        true
    }

    /// The most history messages the room keeps (its `history length` setting).
    pub fn history_length(&self) -> usize {
        self.config.history_length as usize
    }

    /// Refills the history of a room restored from the store with its archived groupchat
    /// messages (`stanza`, when the room got it, its serialized `<stanza-id/>`), oldest first: the
    /// history lives in memory, so a restart had emptied it. Only messages with a body count, as
    /// when they were sent; the sender's real JID the archive's copy may carry is not the history's.
    pub fn restore_history(
        &mut self,
        archived: impl IntoIterator<Item = (Stanza, SystemTime, Vec<u8>)>,
    ) {
        for (stanza, at, sid) in archived {
            let Ok(mut el) = stanza.tree() else { continue };
            let Some(from) = el.attr("from").map(str::to_owned) else {
                continue;
            };
            if el.get_child("body", ns::CLIENT).is_none() {
                continue;
            }
            el.children
                .retain(|n| !matches!(n, Node::Element(e) if e.name == "x" && e.ns == NS_MUC_USER));
            if self.keep(el, &from, at) {
                self.history.stamp_newest(&sid);
            }
        }
    }

    /// The newest history message gets `sid`, the `<stanza-id/>` the room's archive gave its
    /// broadcast (XEP-0359 §6: clients match the history they get on joining against the archive).
    pub fn stamp_newest_history(&mut self, sid: &[u8]) {
        self.history.stamp_newest(sid);
    }

    /// Messages to `room/nick`: private messages (§7.5).
    pub(super) fn on_private_message(
        &mut self,
        from: &FullJid,
        stanza: &Stanza,
        to: &str,
        nick: &str,
        out: &mut Vec<RoomOut>,
    ) {
        let ty = stanza.ty();
        if ty == StanzaType::Error {
            // A bounce of what the room sent from `nick` (RFC 6120 §8.3.1 addresses it to that
            // `from`): a private message's goes back to its sender, and a permanent one removes
            // the occupant that bounced it, as one to the room's bare JID does (a ghost left
            // behind by its server's outage was never removed).
            self.relay_private_error(from, stanza, nick, out);
            self.on_error_from(from, stanza, out);
            return;
        }
        if ty == StanzaType::Groupchat {
            out.extend(error_reply(stanza, to, from, E::BadRequest));
            return;
        }
        let Some(sender) = self.occupants.by_jid(from) else {
            out.extend(error_reply(stanza, to, from, E::NotAcceptable));
            return;
        };
        if stanza.bytes().len() > self.limits.max_stanza_bytes {
            out.extend(error_reply_short(stanza, to, from, E::PolicyViolation));
            return;
        }
        let allowed = match self.config.allow_pm {
            AllowPm::Anyone => true,
            AllowPm::Participants => sender.role >= Role::Participant,
            AllowPm::Moderators => sender.role == Role::Moderator,
            AllowPm::None => false,
        };
        if !allowed {
            out.extend(error_reply(stanza, to, from, E::Forbidden));
            return;
        }
        let Some(target) = self.occupants.get(nick) else {
            out.extend(error_reply(stanza, to, from, E::ItemNotFound));
            return;
        };
        let Ok(mut el) = stanza.tree() else {
            out.extend(error_reply(stanza, to, from, E::BadRequest));
            return;
        };
        el.attrs.retain(|(k, _)| k != "from" && k != "to");
        el.attrs
            .push(("from".into(), self.occupant_jid(&sender.nick)));
        // XEP-0421 §4: every message from the room carries the room's id, never the client's.
        el.children.retain(|c| !occupant_id::is_occupant_id(c));
        if let Some(id) = &sender.occupant_id {
            el.children.push(Node::Element(occupant_id::element(id)));
        }
        // §7.5: marks the message as a MUC private message (carbons and archives treat it so).
        if el.get_child("x", NS_MUC_USER).is_none() {
            el.children
                .push(Node::Element(Element::new("x", NS_MUC_USER)));
        }
        for (j, _) in target.sessions() {
            let mut m = el.clone();
            m.attrs.push(("to".into(), j.as_str().into()));
            out.push(send(j, &m));
        }
        if let Some(id) = stanza.id() {
            if self.recent_pms.len() >= RECENT_PMS {
                self.recent_pms.pop_front();
            }
            self.recent_pms.push_back(super::RecentPm {
                id: id.as_ref().into(),
                from: sender.nick.as_str().into(),
                to: nick.into(),
            });
        }
    }

    /// The error an occupant's client (or server) returned for a private message from `nick`,
    /// relayed to `nick`'s sessions from the bouncing occupant's room JID. Only an error whose id
    /// is that of a private message `nick` recently sent the bouncer is relayed, once (RFC 6120
    /// §8.3: an error answers a stanza that was sent): anything else, a `<x muc#user/>` marker
    /// included, could carry a body past `allowpm` and a visitor's silence.
    fn relay_private_error(
        &mut self,
        from: &FullJid,
        stanza: &Stanza,
        nick: &str,
        out: &mut Vec<RoomOut>,
    ) {
        let Some(bouncer) = self.occupants.by_jid(from).map(|o| o.nick.clone()) else {
            return;
        };
        let Ok(mut el) = stanza.tree() else {
            return;
        };
        let Some(at) = el.attr("id").and_then(|id| {
            self.recent_pms
                .iter()
                .position(|p| &*p.id == id && &*p.from == nick && *p.to == *bouncer)
        }) else {
            return;
        };
        self.recent_pms.remove(at);
        let Some(target) = self.occupants.get(nick) else {
            return;
        };
        el.attrs.retain(|(k, _)| k != "from" && k != "to");
        el.attrs.push(("from".into(), self.occupant_jid(&bouncer)));
        for (j, _) in target.sessions() {
            let mut m = el.clone();
            m.attrs.push(("to".into(), j.as_str().into()));
            out.push(send(j, &m));
        }
    }

    /// `<invite/>`s and `<decline/>`s in a message to the room.
    fn invitations(
        &mut self,
        from: &FullJid,
        stanza: &Stanza,
        x: &Element,
        out: &mut Vec<RoomOut>,
    ) {
        let room = self.jid.as_str().to_owned();
        let invites: Vec<&Element> = x.child_elements().filter(|c| c.name == "invite").collect();
        let declines: Vec<&Element> = x.child_elements().filter(|c| c.name == "decline").collect();
        if invites.is_empty() && declines.is_empty() {
            out.extend(error_reply(stanza, &room, from, E::ServiceUnavailable));
            return;
        }
        // One message may invite several people, but never make the room a mass mailer (§14.6).
        if invites.len() + declines.len() > MAX_INVITATIONS {
            out.extend(error_reply(stanza, &room, from, E::PolicyViolation));
            return;
        }
        let targets: Option<Vec<Jid>> = invites
            .iter()
            .chain(&declines)
            .map(|i| i.attr("to").and_then(|t| Jid::parse(t).ok()))
            .collect();
        let Some(targets) = targets else {
            out.extend(error_reply(stanza, &room, from, E::JidMalformed));
            return;
        };
        let (invite_to, decline_to) = targets.split_at(invites.len());
        if !invites.is_empty() {
            if self.occupants.by_jid(from).is_none() {
                out.extend(error_reply(stanza, &room, from, E::NotAcceptable));
                return;
            }
            let aff = self.affiliation(&from.bare());
            if self.config.members_only && !(self.config.allow_invites || aff.is_admin()) {
                out.extend(error_reply(stanza, &room, from, E::Forbidden));
                return;
            }
            // An invitation into a members-only room, by an admin or (with `allowinvites`) by an
            // occupant, makes the invitee a member (§7.8.2 "MAY", as Prosody does): else the
            // invitee could not enter. Not past the limit.
            if self.config.members_only {
                let mut new_members: Vec<_> = invite_to.iter().map(Jid::bare).collect();
                new_members.sort_unstable();
                new_members.dedup();
                new_members.retain(|j| self.affiliation(j) == Affiliation::None);
                if self.affiliations.len() + new_members.len() > self.limits.max_affiliations {
                    out.extend(error_reply(stanza, &room, from, E::PolicyViolation));
                    return;
                }
            }
            for (inv, to) in invites.iter().zip(invite_to) {
                if self.config.members_only && self.affiliation(&to.bare()) == Affiliation::None {
                    self.store_affiliation(&to.bare(), Affiliation::Member, None);
                    self.save(out);
                }
                let mut item = Element::new("invite", NS_MUC_USER).with_attr("from", from.as_str());
                if let Some(r) = inv.get_child("reason", NS_MUC_USER) {
                    item = item.with_child(r.clone());
                }
                let mut ux = Element::new("x", NS_MUC_USER).with_child(item);
                if let Some(pw) = &self.config.password {
                    ux = ux.with_child(Element::new("password", NS_MUC_USER).with_text(pw));
                }
                let m = Element::new("message", ns::CLIENT)
                    .with_attr("from", room.as_str())
                    .with_attr("to", to.as_str())
                    .with_child(ux);
                out.push(send_jid(to.clone(), &m));
            }
        }
        for (dec, to) in declines.iter().zip(decline_to) {
            let mut item =
                Element::new("decline", NS_MUC_USER).with_attr("from", from.bare().as_str());
            if let Some(r) = dec.get_child("reason", NS_MUC_USER) {
                item = item.with_child(r.clone());
            }
            let m = Element::new("message", ns::CLIENT)
                .with_attr("from", room.as_str())
                .with_attr("to", to.as_str())
                .with_child(Element::new("x", NS_MUC_USER).with_child(item));
            out.push(send_jid(to.clone(), &m));
        }
    }
}
