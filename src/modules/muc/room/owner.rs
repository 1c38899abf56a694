//! `muc#owner`: the configuration form (§10.1-10.2) and destruction (§10.9).

use super::broadcast::Notice;
use super::config::{parse_submit, Submitted};
use super::types::{Affiliation, NS_DATA, NS_MUC_OWNER, NS_MUC_USER};
use super::util::{error_reply, iq_result, status, Cond};
use super::{Room, RoomOut, Whois};
use crate::jid::{BareJid, FullJid};
use crate::xml::{Element, Stanza};
use crate::xmpp::{ns, StanzaErrorCondition as E};

impl Room {
    /// A `muc#owner` get or set from `from` (owners only).
    pub(super) fn on_owner(
        &mut self,
        from: &FullJid,
        stanza: &Stanza,
        query: &Element,
        set: bool,
        out: &mut Vec<RoomOut>,
    ) {
        let room = self.jid.as_str().to_owned();
        if self.affiliation(&from.bare()) != Affiliation::Owner {
            out.extend(error_reply(stanza, &room, from, E::Forbidden));
            return;
        }
        if !set {
            let owners = self.with_affiliation(Affiliation::Owner);
            let admins = self.with_affiliation(Affiliation::Admin);
            let q =
                Element::new("query", NS_MUC_OWNER).with_child(self.config.form(&owners, &admins));
            out.push(iq_result(stanza, &room, from, Some(q)));
            return;
        }
        if let Some(x) = query.get_child("x", NS_DATA) {
            match x.attr("type") {
                Some("submit") => match self.configure(x) {
                    Ok(mut effects) => {
                        out.push(iq_result(stanza, &room, from, None));
                        out.append(&mut effects);
                    }
                    Err(c) => out.extend(error_reply(stanza, &room, from, c)),
                },
                Some("cancel") => {
                    out.push(iq_result(stanza, &room, from, None));
                    // §10.1.3: cancelling the initial configuration destroys the room.
                    if self.locked {
                        self.destroy(None, out);
                    }
                }
                _ => out.extend(error_reply(stanza, &room, from, E::BadRequest)),
            }
        } else if let Some(d) = query.get_child("destroy", NS_MUC_OWNER) {
            out.push(iq_result(stanza, &room, from, None));
            self.destroy(Some(d), out);
        } else {
            out.extend(error_reply(stanza, &room, from, E::BadRequest));
        }
    }

    /// Applies a submitted configuration; the effects follow the owner's result.
    fn configure(&mut self, x: &Element) -> Result<Vec<RoomOut>, Cond> {
        let Submitted {
            config,
            owners,
            admins,
        } = parse_submit(x, &self.config, &self.limits).map_err(|_| E::NotAcceptable)?;
        // An empty owner list (clients that leave jid-multi fields blank) changes nothing: a
        // room always keeps an owner.
        let owners = owners.filter(|o| !o.is_empty());
        let mut out = Vec::new();
        let old = std::mem::replace(&mut self.config, config);
        let was_locked = std::mem::replace(&mut self.locked, false);
        self.history.truncate(self.config.history_length as usize);
        if let Some(owners) = owners {
            self.replace_list(Affiliation::Owner, &owners, &mut out);
        }
        if let Some(admins) = admins {
            self.replace_list(Affiliation::Admin, &admins, &mut out);
        }
        let mut codes = Vec::new();
        // §10.2.1: a change of the room's privacy alone is told by its own code (172, 173); 104
        // is for any other change.
        let mut same_privacy = old.clone();
        same_privacy.whois = self.config.whois;
        if same_privacy != self.config && !was_locked {
            codes.push(104);
        }
        if old.whois != self.config.whois {
            codes.push(match self.config.whois {
                Whois::Anyone => 172,
                Whois::Moderators => 173,
            });
        }
        if !codes.is_empty() && !self.occupants.is_empty() {
            let mut ux = Element::new("x", NS_MUC_USER);
            for c in codes {
                ux = ux.with_child(status(c));
            }
            let m = Element::new("message", ns::CLIENT)
                .with_attr("type", "groupchat")
                .with_attr("from", self.jid.as_str())
                .with_child(ux);
            out.push(RoomOut::Broadcast {
                stanza: Stanza::from_element(&m),
                to: self.occupants.recipients(),
                real: None,
                history: false,
            });
        }
        if self.config.members_only && !old.members_only {
            let outsiders: Vec<String> = self
                .occupants
                .iter()
                .filter(|o| self.affiliation(&o.jid.bare()) < Affiliation::Member)
                .map(|o| o.nick.clone())
                .collect();
            let n = Notice {
                unavailable: true,
                codes: vec![322],
                ..Default::default()
            };
            for nick in outsiders {
                self.remove_occupant(&nick, None, &n, &mut out);
            }
        }
        if old.persistent || self.config.persistent {
            out.push(RoomOut::Save);
        }
        // An owner outside the room made an empty persistent room temporary.
        if self.occupants.is_empty() && !self.config.persistent {
            out.push(RoomOut::Destroyed);
        }
        Ok(out)
    }

    /// Makes `list` the set of JIDs with `aff`: those left out drop to `none` (owners listed as
    /// admins stay owners).
    fn replace_list(&mut self, aff: Affiliation, list: &[BareJid], out: &mut Vec<RoomOut>) {
        for jid in self.with_affiliation(aff) {
            if !list.contains(&jid) {
                self.apply_affiliation(&jid, Affiliation::None, None, None, out);
            }
        }
        for jid in list {
            let cur = self.affiliation(jid);
            if cur != aff && !(aff == Affiliation::Admin && cur == Affiliation::Owner) {
                self.apply_affiliation(jid, aff, None, None, out);
            }
        }
    }

    /// Destroys the room (§10.9): everyone gets unavailable presence with `<destroy/>`.
    fn destroy(&mut self, req: Option<&Element>, out: &mut Vec<RoomOut>) {
        let mut d = Element::new("destroy", NS_MUC_USER);
        if let Some(req) = req {
            if let Some(j) = req.attr("jid") {
                d = d.with_attr("jid", j);
            }
            for (name, child) in [("reason", "reason"), ("password", "password")] {
                if let Some(c) = req.get_child(child, NS_MUC_OWNER) {
                    d = d.with_child(Element::new(name, NS_MUC_USER).with_text(&c.text()));
                }
            }
        }
        let n = Notice {
            unavailable: true,
            destroy: Some(d),
            ..Default::default()
        };
        self.remove_all(&n, out);
        out.push(RoomOut::Destroyed);
    }
}
