//! Small builders shared by the room's handlers: error replies, IQ results, timestamps.

use std::time::SystemTime;

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::RoomOut;
use crate::jid::{BareJid, FullJid, Jid};
use crate::xml::{Element, Node, Stanza};
use crate::xmpp::{ns, ErrorType, StanzaErrorCondition};

/// An error condition a room answers with: the RFC 6120 ones plus `registration-required`
/// (XEP-0045 §7.2.6), which [`StanzaErrorCondition`] lacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cond {
    /// An RFC 6120 condition.
    Std(StanzaErrorCondition),
    /// The room is members-only and the user is not a member.
    RegistrationRequired,
    /// The room holds as many occupants as it may: `service-unavailable`, type `wait` (§7.2.9:
    /// someone may leave).
    Full,
}

impl Cond {
    fn name(self) -> &'static str {
        match self {
            Cond::Std(c) => c.as_str(),
            Cond::RegistrationRequired => "registration-required",
            Cond::Full => StanzaErrorCondition::ServiceUnavailable.as_str(),
        }
    }

    fn error_type(self) -> ErrorType {
        match self {
            Cond::Std(c) => c.default_type(),
            Cond::RegistrationRequired => ErrorType::Auth,
            Cond::Full => ErrorType::Wait,
        }
    }
}

impl From<StanzaErrorCondition> for Cond {
    fn from(c: StanzaErrorCondition) -> Cond {
        Cond::Std(c)
    }
}

/// The RFC 6120 §8.3 error reply to `stanza` (payload kept) from `from` (the address it was sent
/// to) back to its sender; `None` for errors and IQ results, which are never answered.
pub(super) fn error_reply(
    stanza: &Stanza,
    from: &str,
    to: &FullJid,
    cond: impl Into<Cond>,
) -> Option<RoomOut> {
    reply_error(stanza, from, to, cond.into(), true)
}

/// Like [`error_reply`] without the original payload (for stanzas refused for their size).
pub(super) fn error_reply_short(
    stanza: &Stanza,
    from: &str,
    to: &FullJid,
    cond: impl Into<Cond>,
) -> Option<RoomOut> {
    reply_error(stanza, from, to, cond.into(), false)
}

fn reply_error(
    stanza: &Stanza,
    from: &str,
    to: &FullJid,
    cond: Cond,
    keep_payload: bool,
) -> Option<RoomOut> {
    if stanza.forbids_error_reply() {
        return None;
    }
    let mut el = if keep_payload {
        stanza.tree().ok()?
    } else {
        let mut el = Element::new(stanza.name(), ns::CLIENT);
        if let Some(id) = stanza.id() {
            el = el.with_attr("id", id.as_ref());
        }
        el
    };
    el.attrs
        .retain(|(k, _)| k != "type" && k != "from" && k != "to");
    el.attrs.push(("type".into(), "error".into()));
    el.attrs.push(("from".into(), from.into()));
    el.attrs.push(("to".into(), to.as_str().into()));
    let error = Element::new("error", ns::CLIENT)
        .with_attr("type", cond.error_type().as_str())
        .with_child(Element::new(cond.name(), ns::STANZAS));
    el.children.push(Node::Element(error));
    Some(send(to, &el))
}

/// An IQ result to `stanza` from `from` to `to`, with an optional payload.
pub(super) fn iq_result(
    stanza: &Stanza,
    from: &str,
    to: &FullJid,
    payload: Option<Element>,
) -> RoomOut {
    let mut el = Element::new("iq", ns::CLIENT)
        .with_attr("type", "result")
        .with_attr("from", from)
        .with_attr("to", to.as_str());
    if let Some(id) = stanza.id() {
        el = el.with_attr("id", id.as_ref());
    }
    if let Some(p) = payload {
        el = el.with_child(p);
    }
    send(to, &el)
}

/// `nick` prepared as the resourcepart of an occupant JID of `room` (XEP-0045 §15, RFC 7622
/// §3.4), as the join and private-message paths see it in `to`; `None` when it cannot be one.
pub(super) fn prepared_nick(room: &BareJid, nick: &str) -> Option<String> {
    room.with_resource(nick)
        .ok()
        .map(|j| j.resource().to_owned())
}

/// A [`RoomOut::Send`] of `el` (whose `from`/`to` are already set) to `to`.
pub(super) fn send(to: &FullJid, el: &Element) -> RoomOut {
    send_jid(Jid::from(to.clone()), el)
}

/// A [`RoomOut::Send`] of `el` to any JID (invitations go to bare JIDs).
pub(super) fn send_jid(to: Jid, el: &Element) -> RoomOut {
    RoomOut::Send {
        to,
        stanza: Stanza::from_element(el),
    }
}

/// XEP-0082 date-time of `t` in UTC, to the second.
pub(super) fn stamp(t: SystemTime) -> String {
    let t = OffsetDateTime::from(t);
    t.replace_nanosecond(0)
        .unwrap_or(t)
        .format(&Rfc3339)
        .unwrap_or_default()
}

/// Parses a XEP-0082 date-time.
pub(super) fn parse_stamp(s: &str) -> Option<SystemTime> {
    OffsetDateTime::parse(s, &Rfc3339)
        .ok()
        .map(SystemTime::from)
}

/// `<status code='n'/>` in `muc#user`.
pub(super) fn status(code: u16) -> Element {
    Element::new("status", super::types::NS_MUC_USER).with_attr("code", code.to_string())
}

/// Whether a nickname shows anything (§17.1: no empty or invisible room nicknames): it needs a
/// character that is neither white space, a control, nor one that renders as nothing (the
/// format characters, variation selectors, fillers and tags of Unicode's default-ignorables).
pub fn visible_nick(nick: &str) -> bool {
    nick.chars().any(|c| {
        let invisible = matches!(
            c,
            '\u{00AD}'
                | '\u{034F}'
                | '\u{061C}'
                | '\u{115F}'
                | '\u{1160}'
                | '\u{17B4}'
                | '\u{17B5}'
                | '\u{180B}'..='\u{180F}'
                | '\u{200B}'..='\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2060}'..='\u{206F}'
                | '\u{3164}'
                | '\u{FE00}'..='\u{FE0F}'
                | '\u{FEFF}'
                | '\u{FFA0}'
                | '\u{1D173}'..='\u{1D17A}'
                | '\u{E0000}'..='\u{E0FFF}'
        );
        !(c.is_whitespace() || c.is_control() || invisible)
    })
}
