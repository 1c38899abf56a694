//! Occupant presence: entering (§7.2), updates, nickname changes (§7.6), leaving (§7.14), and the
//! per-recipient presence every role or affiliation change broadcasts.

use std::time::SystemTime;

use super::broadcast::Notice;
use super::history::HistoryRequest;
use super::occupant_id::NS_OCCUPANT_ID;
use super::occupants::Occupant;
use super::types::{Affiliation, Role, NS_MUC, NS_MUC_USER};
use super::util::{error_reply, send, Cond};
use super::{Room, RoomOut, Whois};
use crate::jid::FullJid;
use crate::shard::ShardId;
use crate::xml::{Element, Stanza, StanzaType};
use crate::xmpp::{ns, StanzaErrorCondition as E};

impl Room {
    // The address comes both as written (`to`, for error replies) and as parsed (`nick`).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_presence(
        &mut self,
        from: &FullJid,
        shard: ShardId,
        stanza: &Stanza,
        to: &str,
        nick: Option<String>,
        now: SystemTime,
        out: &mut Vec<RoomOut>,
    ) {
        let ty = stanza.ty();
        match ty {
            StanzaType::Absent => {}
            StanzaType::Unavailable => {
                let payload = stanza.tree().map(|el| payload_of(&el)).unwrap_or_default();
                self.leave(from, payload, out);
                return;
            }
            // The client rejected a room presence.
            StanzaType::Error => {
                self.on_error_from(from, stanza, out);
                return;
            }
            // Subscriptions and probes mean nothing to a room.
            _ => return,
        }
        let Some(nick) = nick.filter(|n| super::visible_nick(n)) else {
            out.extend(error_reply(stanza, to, from, E::JidMalformed));
            return;
        };
        let Ok(el) = stanza.tree() else {
            out.extend(error_reply(stanza, to, from, E::BadRequest));
            return;
        };
        let payload = payload_of(&el);
        // A session may have moved (resumed on another shard): deliver where it is now.
        self.occupants.set_shard(from, shard);
        match self.occupants.nick_of(from).map(str::to_owned) {
            Some(cur) if cur == nick => {
                if el.get_child("x", NS_MUC).is_some() {
                    // A rejoin (the client lost track): send it the room state again, and the
                    // others its presence if that changed (§17.3).
                    let mut changed = None;
                    if let Some(o) = self.occupants.get_mut(&nick) {
                        if o.payload != payload {
                            o.payload = payload;
                            changed = Some(o.clone());
                        }
                    }
                    self.send_state(from, &nick, &el, false, false, now, out);
                    if let Some(o) = changed {
                        self.presence_to_others(&o, &Notice::default(), out);
                    }
                } else if let Some(o) = self.occupants.get_mut(&nick) {
                    o.payload = payload;
                    let o = o.clone();
                    self.broadcast_presence(&o, &Notice::default(), out);
                }
            }
            Some(cur) => self.change_nick(from, stanza, to, &cur, &nick, payload, out),
            None => self.join(from, shard, stanza, &el, to, &nick, payload, now, out),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn join(
        &mut self,
        from: &FullJid,
        shard: ShardId,
        stanza: &Stanza,
        el: &Element,
        to: &str,
        nick: &str,
        payload: Vec<Element>,
        now: SystemTime,
        out: &mut Vec<RoomOut>,
    ) {
        let bare = from.bare();
        let aff = self.affiliation(&bare);
        let x = el.get_child("x", NS_MUC);
        let creating = self.creator.as_ref() == Some(&bare);
        // Another session of the same user may share its nickname (phone and desktop).
        let shared = self
            .occupants
            .get(nick)
            .is_some_and(|o| o.jid.bare() == bare);
        if let Some(cond) = self.refuse_entry(aff, x, nick, creating, shared) {
            out.extend(error_reply(stanza, to, from, cond));
            return;
        }
        if shared {
            self.occupants.attach(nick, from, shard);
            self.send_state(from, nick, el, false, false, now, out);
            return;
        }
        if creating {
            self.creator = None;
            // A client that does not speak MUC cannot configure the room: make it instant.
            if x.is_none() {
                self.locked = false;
            }
        }
        self.occupants.insert(Occupant {
            nick: nick.to_owned(),
            jid: from.clone(),
            shard,
            extra: Vec::new(),
            role: self.default_role(aff),
            payload,
            occupant_id: self.occupant_id(&bare),
        });
        self.send_state(from, nick, el, creating, true, now, out);
        if creating && !self.locked {
            self.save(out);
        }
    }

    /// Why `aff` may not enter with `nick` now (§7.2.5-7.2.10), if it may not.
    fn refuse_entry(
        &self,
        aff: Affiliation,
        x: Option<&Element>,
        nick: &str,
        creating: bool,
        shared: bool,
    ) -> Option<Cond> {
        if creating {
            return None;
        }
        if self.locked && aff != Affiliation::Owner {
            return Some(E::ItemNotFound.into());
        }
        if aff == Affiliation::Outcast {
            return Some(E::Forbidden.into());
        }
        if self.config.members_only && aff < Affiliation::Member {
            return Some(Cond::RegistrationRequired);
        }
        if let Some(pw) = &self.config.password {
            let given = x
                .and_then(|x| x.get_child("password", NS_MUC))
                .map(Element::text);
            // §7.2.5: everyone gives it, admins and owners too (an owner who lost it may still
            // reconfigure the room without entering).
            if given.as_deref() != Some(pw.as_str()) {
                return Some(E::NotAuthorized.into());
            }
        }
        if shared {
            return None;
        }
        if self.occupants.get(nick).is_some() {
            return Some(E::Conflict.into());
        }
        let n = self.occupants.len();
        if n >= self.limits.max_occupants as usize
            || (n >= self.config.max_users as usize && !aff.is_admin())
        {
            return Some(Cond::Full);
        }
        None
    }

    /// Sends a session that just (re)entered the others' presence, its own presence (to the
    /// others too when `announce`), the history and the subject (§7.2.3, §7.2.15).
    #[allow(clippy::too_many_arguments)]
    fn send_state(
        &mut self,
        jid: &FullJid,
        nick: &str,
        join: &Element,
        creating: bool,
        announce: bool,
        now: SystemTime,
        out: &mut Vec<RoomOut>,
    ) {
        let Some(me) = self.occupants.get(nick).cloned() else {
            return;
        };
        for o in self.occupants.iter().filter(|o| o.nick != nick) {
            out.push(self.presence_to(o, jid, me.role, &Notice::default()));
        }
        let mut notice = Notice::default();
        if self.config.whois == Whois::Anyone {
            notice.self_codes.push(100);
        }
        if creating {
            notice.self_codes.push(201);
        }
        if nick != join_nick_asked(join).unwrap_or(nick) {
            notice.self_codes.push(210);
        }
        if announce {
            self.broadcast_presence(&me, &notice, out);
        } else {
            out.push(self.presence_to(&me, jid, me.role, &notice));
        }
        let req = HistoryRequest::from_x(join.get_child("x", NS_MUC));
        for h in self.history.select(&req, now) {
            let mut s = h.clone();
            s.set_to(jid.as_str());
            out.push(RoomOut::Send {
                to: jid.clone().into(),
                stanza: s,
            });
        }
        out.push(send(jid, &self.subject_message(Some(jid))));
    }

    /// The subject message (`to` set when given); empty `<subject/>` from the room when none.
    pub(super) fn subject_message(&self, to: Option<&FullJid>) -> Element {
        let (from, text) = match &self.subject {
            Some(s) => (self.occupant_jid(&s.nick), s.text.as_str()),
            None => (self.jid.as_str().to_owned(), ""),
        };
        let mut subject = Element::new("subject", ns::CLIENT);
        if !text.is_empty() {
            subject = subject.with_text(text);
        }
        let mut m = Element::new("message", ns::CLIENT)
            .with_attr("type", "groupchat")
            .with_attr("from", from);
        if let Some(to) = to {
            m = m.with_attr("to", to.as_str());
        }
        m.with_child(subject)
    }

    #[allow(clippy::too_many_arguments)]
    fn change_nick(
        &mut self,
        from: &FullJid,
        stanza: &Stanza,
        to: &str,
        old: &str,
        new: &str,
        payload: Vec<Element>,
        out: &mut Vec<RoomOut>,
    ) {
        if self.occupants.get(new).is_some() {
            out.extend(error_reply(stanza, to, from, E::Conflict));
            return;
        }
        // One session may not rename the nickname its other sessions share.
        if self.occupants.get(old).is_some_and(|o| !o.extra.is_empty()) {
            out.extend(error_reply(stanza, to, from, E::NotAcceptable));
            return;
        }
        let Some(mut o) = self.occupants.remove(old) else {
            return;
        };
        let gone = Notice {
            unavailable: true,
            codes: vec![303],
            new_nick: Some(new.to_owned()),
            ..Default::default()
        };
        // The unavailable half carries no show/status: the occupant did not leave.
        o.payload.clear();
        self.broadcast_presence(&o, &gone, out);
        o.nick = new.to_owned();
        o.payload = payload;
        self.occupants.insert(o.clone());
        self.broadcast_presence(&o, &Notice::default(), out);
    }

    /// `jid` leaves (unavailable presence with `payload`, or its session ended).
    pub(super) fn leave(&mut self, jid: &FullJid, payload: Vec<Element>, out: &mut Vec<RoomOut>) {
        let notice = Notice {
            unavailable: true,
            ..Default::default()
        };
        self.drop_session(jid, payload, &notice, out);
    }

    /// Session `jid` leaves: alone if its nickname has other sessions, else the occupant does.
    fn drop_session(
        &mut self,
        jid: &FullJid,
        payload: Vec<Element>,
        notice: &Notice,
        out: &mut Vec<RoomOut>,
    ) {
        let Some(nick) = self.occupants.nick_of(jid).map(str::to_owned) else {
            return;
        };
        if self.occupants.detach(jid) {
            self.fail_forwarded(jid, out);
            // The others stay: only the leaving session is told.
            if let Some(o) = self.occupants.get(&nick) {
                let gone = Occupant {
                    jid: jid.clone(),
                    extra: Vec::new(),
                    role: Role::None,
                    payload,
                    ..o.clone()
                };
                out.push(self.presence_to(&gone, jid, Role::None, notice));
            }
            return;
        }
        self.remove_occupant(&nick, Some(payload), notice, out);
        self.after_leave(out);
    }

    /// An occupant's client answered a room stanza with an error: a permanent one (`cancel`)
    /// means it is no longer there (as Prosody judges), so it is removed with status 333.
    pub(super) fn on_error_from(&mut self, jid: &FullJid, stanza: &Stanza, out: &mut Vec<RoomOut>) {
        if self.occupants.nick_of(jid).is_none() {
            return;
        }
        let permanent = stanza.tree().is_ok_and(|el| {
            el.get_child("error", ns::CLIENT)
                .is_some_and(|e| e.attr("type") == Some("cancel"))
        });
        if !permanent {
            return;
        }
        let notice = Notice {
            unavailable: true,
            codes: vec![333],
            ..Default::default()
        };
        self.drop_session(jid, Vec::new(), &notice, out);
    }
}

/// The client's presence payload without MUC elements and occupant ids (those are the room's to
/// write).
fn payload_of(el: &Element) -> Vec<Element> {
    el.child_elements()
        .filter(|c| !(c.name == "x" && (c.ns == NS_MUC || c.ns == NS_MUC_USER)))
        .filter(|c| !(c.name == "occupant-id" && c.ns == NS_OCCUPANT_ID))
        .cloned()
        .collect()
}

/// The nickname a join asked for, as written (`to`'s resource before preparation).
fn join_nick_asked(join: &Element) -> Option<&str> {
    join.attr("to")
        .and_then(|t| t.split_once('/'))
        .map(|(_, n)| n)
}
