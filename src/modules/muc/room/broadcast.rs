//! Presence about one occupant as each recipient sees it (real JID only where allowed, status
//! 110 for the occupant itself), and the removals that broadcast it.

use super::occupants::Occupant;
use super::types::{Role, NS_MUC_USER};
use super::util::{send, status};
use super::{Room, RoomOut, Whois};
use crate::jid::FullJid;
use crate::xml::Element;
use crate::xmpp::ns;

/// What a presence broadcast about one occupant says besides its item.
#[derive(Debug, Default, Clone)]
pub(super) struct Notice {
    /// `type='unavailable'`.
    pub unavailable: bool,
    /// Status codes for everyone.
    pub codes: Vec<u16>,
    /// Status codes for the occupant itself (110 is always added there).
    pub self_codes: Vec<u16>,
    /// `<item nick=…/>` (nickname changes, 303).
    pub new_nick: Option<String>,
    /// `<actor nick=…/>`.
    pub actor: Option<String>,
    /// `<reason/>`.
    pub reason: Option<String>,
    /// `<destroy/>` (room destruction).
    pub destroy: Option<Element>,
}

impl Room {
    /// Removes `nick`, telling everyone (itself included) with `notice`.
    pub(super) fn remove_occupant(
        &mut self,
        nick: &str,
        payload: Option<Vec<Element>>,
        notice: &Notice,
        out: &mut Vec<RoomOut>,
    ) {
        let Some(mut o) = self.occupants.remove(nick) else {
            return;
        };
        for (j, _) in o.sessions() {
            self.fail_forwarded(j, out);
        }
        o.role = Role::None;
        o.payload = payload.unwrap_or_default();
        self.broadcast_presence(&o, notice, out);
    }

    /// Removes everyone, each told with `notice` (shutdown, destruction).
    pub(super) fn remove_all(&mut self, notice: &Notice, out: &mut Vec<RoomOut>) {
        for mut o in self.occupants.clear() {
            o.role = Role::None;
            o.payload.clear();
            for (j, _) in o.sessions() {
                self.fail_forwarded(j, out);
                out.push(self.presence_to(&o, j, Role::None, notice));
            }
        }
    }

    /// Presence about `subj` to every session in the room, `subj`'s own last (whether or not
    /// `subj` is still in).
    pub(super) fn broadcast_presence(&self, subj: &Occupant, n: &Notice, out: &mut Vec<RoomOut>) {
        self.presence_to_others(subj, n, out);
        for (j, _) in subj.sessions() {
            out.push(self.presence_to(subj, j, subj.role, n));
        }
    }

    /// Presence about `subj` to every session in the room but `subj`'s own.
    pub(super) fn presence_to_others(&self, subj: &Occupant, n: &Notice, out: &mut Vec<RoomOut>) {
        for o in self.occupants.iter().filter(|o| o.nick != subj.nick) {
            for (j, _) in o.sessions() {
                out.push(self.presence_to(subj, j, o.role, n));
            }
        }
    }

    /// Presence about `subj` as `viewer` (with `viewer_role`) sees it.
    pub(super) fn presence_to(
        &self,
        subj: &Occupant,
        viewer: &FullJid,
        viewer_role: Role,
        n: &Notice,
    ) -> RoomOut {
        let is_self = subj.has_session(viewer);
        let aff = self.affiliation(&subj.jid.bare());
        let mut p = Element::new("presence", ns::CLIENT)
            .with_attr("from", self.occupant_jid(&subj.nick))
            .with_attr("to", viewer.as_str());
        if n.unavailable {
            p = p.with_attr("type", "unavailable");
        }
        for c in &subj.payload {
            p = p.with_child(c.clone());
        }
        if let Some(id) = &subj.occupant_id {
            p = p.with_child(super::occupant_id::element(id));
        }
        let mut item = Element::new("item", NS_MUC_USER)
            .with_attr("affiliation", aff.as_str())
            .with_attr("role", subj.role.as_str());
        if is_self {
            item = item.with_attr("jid", viewer.as_str());
        } else if self.config.whois == Whois::Anyone || viewer_role == Role::Moderator {
            item = item.with_attr("jid", subj.jid.as_str());
        }
        if let Some(nn) = &n.new_nick {
            item = item.with_attr("nick", nn.as_str());
        }
        if let Some(a) = &n.actor {
            item =
                item.with_child(Element::new("actor", NS_MUC_USER).with_attr("nick", a.as_str()));
        }
        if let Some(r) = &n.reason {
            item = item.with_child(Element::new("reason", NS_MUC_USER).with_text(r));
        }
        let mut x = Element::new("x", NS_MUC_USER).with_child(item);
        for &c in &n.codes {
            x = x.with_child(status(c));
        }
        if is_self {
            for &c in &n.self_codes {
                x = x.with_child(status(c));
            }
            x = x.with_child(status(110));
        }
        if let Some(d) = &n.destroy {
            x = x.with_child(d.clone());
        }
        send(viewer, &p.with_child(x))
    }
}
