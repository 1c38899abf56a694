//! IQs: dispatch of those to the room, disco#info/#items of the room (XEP-0045 §6.4-6.5), and
//! those to an occupant (XEP-0410 self-ping).

use super::occupant_id::NS_OCCUPANT_ID;
use super::types::{NS_DATA, NS_MUC, NS_MUC_ADMIN, NS_MUC_OWNER, NS_ROOMINFO};
use super::util::{error_reply, iq_result};
use super::{Affiliation, Room, RoomOut, Whois};
use crate::jid::FullJid;
use crate::xml::{Element, Stanza, StanzaType};
use crate::xmpp::{ns, StanzaErrorCondition as E};

/// XEP-0045 §7.12: the disco#info node asking for one's registered nickname.
const NODE_ROOMUSER: &str = "x-roomuser-item";

/// The `node` of a disco query, if any.
fn disco_node(stanza: &Stanza) -> Option<String> {
    let el = stanza.tree().ok()?;
    let q = el.child_elements().next()?;
    q.attr("node").map(str::to_owned)
}

/// XEP-0410: the service answers an occupant's ping to its own nickname itself.
pub const NS_SELF_PING: &str = "http://jabber.org/protocol/muc#self-ping-optimization";

impl Room {
    /// The room's disco#info `<query/>`: identity, features and the `muc#roominfo` form.
    pub fn disco_info(&self) -> Element {
        let c = &self.config;
        let pick = |on: bool, yes: &str, no: &str| if on { yes } else { no }.to_owned();
        let features = [
            ns::DISCO_INFO.to_owned(),
            NS_MUC.to_owned(),
            NS_SELF_PING.to_owned(),
            super::voice::NS_MUC_REQUEST.to_owned(),
            pick(c.public, "muc_public", "muc_hidden"),
            pick(c.persistent, "muc_persistent", "muc_temporary"),
            pick(c.members_only, "muc_membersonly", "muc_open"),
            pick(c.moderated, "muc_moderated", "muc_unmoderated"),
            pick(
                c.whois == Whois::Anyone,
                "muc_nonanonymous",
                "muc_semianonymous",
            ),
            pick(
                c.password.is_some(),
                "muc_passwordprotected",
                "muc_unsecured",
            ),
        ];
        let name = self.name().or(self.jid.node()).unwrap_or(self.jid.as_str());
        let mut q = Element::new("query", ns::DISCO_INFO).with_child(
            Element::new("identity", ns::DISCO_INFO)
                .with_attr("category", "conference")
                .with_attr("type", "text")
                .with_attr("name", name),
        );
        let ids = self.ids.is_some().then(|| NS_OCCUPANT_ID.to_owned());
        let others = self
            .features
            .iter()
            .filter(|f| !features.contains(f))
            .cloned();
        let others: Vec<String> = others.collect();
        for f in features.into_iter().chain(ids).chain(others) {
            q = q.with_child(Element::new("feature", ns::DISCO_INFO).with_attr("var", f));
        }
        let field = |var: &str, ty: &str, v: &str| {
            Element::new("field", NS_DATA)
                .with_attr("var", var)
                .with_attr("type", ty)
                .with_child(Element::new("value", NS_DATA).with_text(v))
        };
        let subject = self.subject.as_ref().map_or("", |s| s.text.as_str());
        let form = Element::new("x", NS_DATA)
            .with_attr("type", "result")
            .with_child(field("FORM_TYPE", "hidden", NS_ROOMINFO))
            .with_child(field("muc#roomconfig_roomname", "text-single", &c.name))
            .with_child(field(
                "muc#roominfo_description",
                "text-single",
                &c.description,
            ))
            .with_child(field("muc#roominfo_subject", "text-single", subject))
            .with_child(field(
                "muc#roominfo_occupants",
                "text-single",
                &self.occupants.len().to_string(),
            ));
        q.with_child(form)
    }

    /// The room's disco#items `<query/>`: its occupants in a non-anonymous room, else none
    /// (§6.5: listing nicknames of a semi-anonymous room would help strangers probe it).
    pub fn disco_items(&self) -> Element {
        let mut q = Element::new("query", ns::DISCO_ITEMS);
        if self.config.whois == Whois::Anyone {
            for o in self.occupants.iter() {
                q = q.with_child(
                    Element::new("item", ns::DISCO_ITEMS)
                        .with_attr("jid", self.occupant_jid(&o.nick))
                        .with_attr("name", o.nick.as_str()),
                );
            }
        }
        q
    }

    /// IQs to the room itself.
    pub(super) fn on_room_iq(&mut self, from: &FullJid, stanza: &Stanza, out: &mut Vec<RoomOut>) {
        let room = self.jid.as_str().to_owned();
        let ty = stanza.ty();
        if !ty.is_request() {
            return;
        }
        let child_ns = stanza
            .child_ns()
            .map(|n| n.into_owned())
            .unwrap_or_default();
        // A room waiting for its first configuration does not exist yet for anyone but its owners
        // (§10.1.1): joins are refused `item-not-found`, and so is disco, which described it.
        let unseen = self.locked && self.affiliation(&from.bare()) != Affiliation::Owner;
        match (child_ns.as_str(), ty) {
            (ns::DISCO_INFO | ns::DISCO_ITEMS, StanzaType::Get) if unseen => {
                out.extend(error_reply(stanza, &room, from, E::ItemNotFound))
            }
            (ns::DISCO_INFO, StanzaType::Get) => match disco_node(stanza).as_deref() {
                None => out.push(iq_result(stanza, &room, from, Some(self.disco_info()))),
                // §7.12: nobody has a registered nickname here: the empty answer.
                Some(NODE_ROOMUSER) => {
                    let q = Element::new("query", ns::DISCO_INFO).with_attr("node", NODE_ROOMUSER);
                    out.push(iq_result(stanza, &room, from, Some(q)))
                }
                Some(_) => out.extend(error_reply(stanza, &room, from, E::ItemNotFound)),
            },
            (ns::DISCO_ITEMS, StanzaType::Get) => match disco_node(stanza) {
                None => out.push(iq_result(stanza, &room, from, Some(self.disco_items()))),
                Some(_) => out.extend(error_reply(stanza, &room, from, E::ItemNotFound)),
            },
            (ns::PING, StanzaType::Get) => out.push(iq_result(stanza, &room, from, None)),
            (NS_MUC_ADMIN, _) | (NS_MUC_OWNER, _) => {
                let query = stanza.tree().ok().and_then(|el| {
                    el.child_elements()
                        .find(|c| c.name == "query" && c.ns == child_ns)
                        .cloned()
                });
                match query {
                    Some(q) if child_ns == NS_MUC_ADMIN => {
                        self.on_admin(from, stanza, &q, ty == StanzaType::Set, out)
                    }
                    Some(q) => self.on_owner(from, stanza, &q, ty == StanzaType::Set, out),
                    None => out.extend(error_reply(stanza, &room, from, E::BadRequest)),
                }
            }
            _ => out.extend(error_reply(stanza, &room, from, E::ServiceUnavailable)),
        }
    }
}
