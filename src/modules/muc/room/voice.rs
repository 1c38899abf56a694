//! Voice requests (XEP-0045 §7.13) and their approval by a moderator (§8.6): a visitor of a
//! moderated room submits a `muc#request` form to the room, the room forwards it as a form to
//! fill in to every moderator, and a moderator who submits it with `muc#request_allow` set grants
//! voice as a `muc#admin` role change would.

use std::time::{Duration, SystemTime};

use super::types::Role;
use super::util::{error_reply, prepared_nick, send, Cond};
use super::{Room, RoomOut};
use crate::jid::{FullJid, Jid};
use crate::xml::{Element, Stanza};
use crate::xmpp::form::{self, Form, FormKind};
use crate::xmpp::StanzaErrorCondition as E;

/// FORM_TYPE of voice requests and of their approval.
pub const NS_MUC_REQUEST: &str = "http://jabber.org/protocol/muc#request";

/// How often one occupant may ask: each request interrupts every moderator, so a visitor who
/// keeps asking is told to wait (`resource-constraint`, as ejabberd's `voice_request_min_interval`).
pub const REQUEST_INTERVAL: Duration = Duration::from_secs(60);

/// `x` read as a data form, when it is one of type `muc#request` (one without a FORM_TYPE is
/// someone else's: an invitation form, a command).
pub(super) fn voice_form(x: &Element) -> Option<Form> {
    Form::parse(x)
        .ok()
        .filter(|f| f.form_type.as_deref() == Some(NS_MUC_REQUEST))
}

impl Room {
    /// A message to the room carrying a `muc#request` form: a visitor's request for voice, or a
    /// moderator's answer to one.
    pub(super) fn on_voice_form(
        &mut self,
        from: &FullJid,
        stanza: &Stanza,
        form: Form,
        now: SystemTime,
        out: &mut Vec<RoomOut>,
    ) {
        let room = self.jid.as_str().to_owned();
        let refuse =
            |out: &mut Vec<RoomOut>, c: Cond| out.extend(error_reply(stanza, &room, from, c));
        let Some(occ) = self.occupants.by_jid(from) else {
            return refuse(out, E::NotAcceptable.into());
        };
        let (nick, role) = (occ.nick.clone(), occ.role);
        if form.kind != FormKind::Submit {
            return refuse(out, E::BadRequest.into());
        }
        match form.get("muc#request_allow") {
            // §8.6: a moderator's answer names the occupant by nickname.
            Some(allow) => {
                let Ok(allow) = allow.boolean() else {
                    return refuse(out, E::BadRequest.into());
                };
                if role != Role::Moderator {
                    return refuse(out, E::Forbidden.into());
                }
                let target = form
                    .get("muc#roomnick")
                    .and_then(|f| f.single().ok().flatten());
                let Some(target) = target else {
                    return refuse(out, E::BadRequest.into());
                };
                // Compared as the occupant's nick is, prepared (XEP-0045 §15); one that cannot
                // be prepared names nobody, as a nick that left.
                let Some(target) = prepared_nick(&self.jid, target) else {
                    return;
                };
                // The form names who asked: a nick someone else took since is not theirs.
                let asker = form.get("muc#jid").and_then(|f| f.single().ok().flatten());
                let asker = match asker.map(Jid::parse) {
                    Some(Ok(j)) => Some(j),
                    Some(Err(_)) => return refuse(out, E::JidMalformed.into()),
                    None => None,
                };
                self.answer_voice_request(&nick, &target, asker.as_ref(), allow, out);
            }
            None => {
                let wanted = form.get("muc#role").and_then(|f| f.single().ok().flatten());
                if wanted.is_some_and(|r| r != Role::Participant.as_str()) {
                    return refuse(out, E::BadRequest.into());
                }
                // Only a visitor lacks voice; asking for what one has is a no-op.
                if role != Role::Visitor {
                    return;
                }
                // Kept by account, not by occupant: leaving and joining again does not start
                // the wait over. Entries past the interval go (bounded by who asked lately).
                let recent =
                    |t: &SystemTime| now.duration_since(*t).unwrap_or_default() < REQUEST_INTERVAL;
                self.voice_asked.retain(|_, t| recent(t));
                let bare = from.bare();
                if self.voice_asked.contains_key(&bare) {
                    return refuse(out, E::ResourceConstraint.into());
                }
                self.voice_asked.insert(bare, now);
                self.forward_voice_request(from, &nick, out);
            }
        }
    }

    /// The §8.6 approval form about `nick` (real JID `jid`), sent to every moderator's sessions.
    fn forward_voice_request(&self, jid: &FullJid, nick: &str, out: &mut Vec<RoomOut>) {
        let title = Element::new("title", form::NS).with_text("Voice request");
        let instructions = Element::new("instructions", form::NS).with_text(
            "To grant this occupant voice, set \"Grant voice to this person?\" and submit the form.",
        );
        // Title and instructions before the fields (XEP-0004's schema, XEP-0045's example).
        let x = Element::new("x", form::NS)
            .with_attr("type", "form")
            .with_child(title)
            .with_child(instructions)
            .with_child(form::field("FORM_TYPE", "hidden", None, &[NS_MUC_REQUEST]))
            .with_child(form::options(
                form::field(
                    "muc#role",
                    "list-single",
                    Some("Requested role"),
                    &[Role::Participant.as_str()],
                ),
                &[Role::Participant.as_str()],
            ))
            .with_child(form::field(
                "muc#jid",
                "jid-single",
                Some("User ID"),
                &[jid.as_str()],
            ))
            .with_child(form::field(
                "muc#roomnick",
                "text-single",
                Some("Room Nickname"),
                &[nick],
            ))
            .with_child(form::field(
                "muc#request_allow",
                "boolean",
                Some("Grant voice to this person?"),
                &["false"],
            ));
        for m in self.occupants.iter().filter(|o| o.role == Role::Moderator) {
            for (to, _) in m.sessions() {
                let msg = Element::new("message", crate::xmpp::ns::CLIENT)
                    .with_attr("from", self.jid.as_str())
                    .with_attr("to", to.as_str())
                    .with_child(x.clone());
                out.push(send(to, &msg));
            }
        }
    }

    /// A moderator's answer: voice for `target` when `allow`, through the role change's own
    /// checks (the occupant may have left, or been given voice or kicked meanwhile), and only if
    /// `target` is still who asked (`asker`, the form's `muc#jid`, when it names one).
    fn answer_voice_request(
        &mut self,
        moderator: &str,
        target: &str,
        asker: Option<&Jid>,
        allow: bool,
        out: &mut Vec<RoomOut>,
    ) {
        let Some(o) = self.occupants.get(target) else {
            return;
        };
        let is_asker = |j: &Jid| match j.resource() {
            Some(_) => o.sessions().any(|(s, _)| s.as_str() == j.as_str()),
            None => o.jid.bare() == j.bare(),
        };
        if !allow || o.role != Role::Visitor || !asker.is_none_or(is_asker) {
            return;
        }
        self.grant_voice(moderator, target, out);
    }
}
