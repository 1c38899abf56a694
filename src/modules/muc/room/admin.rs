//! `muc#admin`: role changes by moderators (§8), affiliation changes by admins and owners (§9,
//! §10), and the lists of both.

use super::broadcast::Notice;
use super::types::{Affiliation, Role, NS_MUC_ADMIN};
use super::util::{error_reply, iq_result, prepared_nick, Cond};
use super::{Room, RoomOut};
use crate::jid::{BareJid, FullJid, Jid};
use crate::xml::{Element, Stanza};
use crate::xmpp::StanzaErrorCondition as E;

/// One requested change.
#[derive(Debug, Clone)]
enum Change {
    /// A role change of the occupant `nick` (`none`: kick).
    Role {
        nick: String,
        role: Role,
        reason: Option<String>,
    },
    /// An affiliation change of `jid` (`outcast`: ban).
    Affiliation {
        jid: BareJid,
        affiliation: Affiliation,
        reason: Option<String>,
    },
}

impl Room {
    /// A `muc#admin` get or set from `from`; the result precedes the presences it causes.
    pub(super) fn on_admin(
        &mut self,
        from: &FullJid,
        stanza: &Stanza,
        query: &Element,
        set: bool,
        out: &mut Vec<RoomOut>,
    ) {
        let room = self.jid.as_str().to_owned();
        let result = if set {
            self.admin_set(from, query, out)
        } else {
            self.admin_get(from, query)
        };
        match result {
            Ok(payload) => out.insert(0, iq_result(stanza, &room, from, payload)),
            Err(c) => out.extend(error_reply(stanza, &room, from, c)),
        }
    }

    /// A role or affiliation list (§8.5, §9.5, §9.8, §10.5, §10.8).
    fn admin_get(&self, from: &FullJid, query: &Element) -> Result<Option<Element>, Cond> {
        let item = query.get_child("item", NS_MUC_ADMIN).ok_or(E::BadRequest)?;
        let me_role = self.occupants.by_jid(from).map_or(Role::None, |o| o.role);
        let me_aff = self.affiliation(&from.bare());
        let mut q = Element::new("query", NS_MUC_ADMIN);
        if let Some(role) = item.attr("role") {
            let role = Role::parse(role).ok_or(E::BadRequest)?;
            if me_role != Role::Moderator {
                return Err(E::Forbidden.into());
            }
            for o in self.occupants.iter().filter(|o| o.role == role) {
                q = q.with_child(
                    Element::new("item", NS_MUC_ADMIN)
                        .with_attr("nick", o.nick.as_str())
                        .with_attr("role", role.as_str())
                        .with_attr("affiliation", self.affiliation(&o.jid.bare()).as_str())
                        .with_attr("jid", o.jid.as_str()),
                );
            }
        } else if let Some(aff) = item.attr("affiliation") {
            let aff = Affiliation::parse(aff).ok_or(E::BadRequest)?;
            if !me_aff.is_admin() || aff == Affiliation::None {
                return Err(if aff == Affiliation::None {
                    E::BadRequest
                } else {
                    E::Forbidden
                }
                .into());
            }
            // §10.5, §10.8: in a semi-anonymous room the owner and admin lists (real JIDs) are
            // the owners' alone.
            let semi_anonymous = self.config.whois != super::Whois::Anyone;
            if aff.is_admin() && me_aff != Affiliation::Owner && semi_anonymous {
                return Err(E::Forbidden.into());
            }
            for (jid, a) in self
                .affiliations
                .iter()
                .filter(|(_, a)| a.affiliation == aff)
            {
                let mut it = Element::new("item", NS_MUC_ADMIN)
                    .with_attr("affiliation", aff.as_str())
                    .with_attr("jid", jid.as_str());
                if let Some(r) = &a.reason {
                    it = it.with_child(Element::new("reason", NS_MUC_ADMIN).with_text(r));
                }
                q = q.with_child(it);
            }
        } else {
            return Err(E::BadRequest.into());
        }
        Ok(Some(q))
    }

    /// Applies every item of a set, or none of them if one is refused.
    fn admin_set(
        &mut self,
        from: &FullJid,
        query: &Element,
        out: &mut Vec<RoomOut>,
    ) -> Result<Option<Element>, Cond> {
        let changes = self.parse_changes(query)?;
        let actor_aff = self.affiliation(&from.bare());
        let actor = self.occupants.by_jid(from).cloned();
        let actor_role = actor.as_ref().map_or(Role::None, |o| o.role);
        // Checks on a copy so that one refused item leaves everything unchanged.
        let mut affs = self.affiliations.clone();
        for c in &changes {
            match c {
                Change::Role { nick, role, .. } => self.check_role(
                    actor.as_ref().map(|a| a.nick.as_str()),
                    actor_aff,
                    actor_role,
                    nick,
                    *role,
                )?,
                Change::Affiliation {
                    jid, affiliation, ..
                } => {
                    // §9.1: an admin or owner may not ban himself.
                    if *affiliation == Affiliation::Outcast
                        && *jid == from.bare()
                        && actor_aff.is_admin()
                    {
                        return Err(E::Conflict.into());
                    }
                    let cur = self.affiliation_in(&affs, jid);
                    check_affiliation(actor_aff, cur, *affiliation)?;
                    // A service administrator's ownership is the service's: no room takes it
                    // away (§10.4: an owner status the service does not let an owner revoke).
                    if *affiliation != Affiliation::Owner && self.service_admins.contains(jid) {
                        return Err(E::NotAuthorized.into());
                    }
                    if *affiliation == Affiliation::None {
                        affs.remove(jid);
                    } else {
                        affs.insert(
                            jid.clone(),
                            super::AffEntry {
                                affiliation: *affiliation,
                                reason: None,
                            },
                        );
                    }
                }
            }
        }
        let touches_affs = changes
            .iter()
            .any(|c| matches!(c, Change::Affiliation { .. }));
        if touches_affs && !affs.values().any(|a| a.affiliation == Affiliation::Owner) {
            return Err(E::Conflict.into());
        }
        // Past the limit only a change that shrinks the list is taken (the limit may have been
        // lowered since the room was stored).
        if affs.len() > self.limits.max_affiliations && affs.len() > self.affiliations.len() {
            return Err(E::PolicyViolation.into());
        }
        let actor_nick = actor.map(|a| a.nick);
        let mut changed_affs = false;
        for c in changes {
            match c {
                Change::Role { nick, role, reason } => {
                    self.apply_role(&nick, role, actor_nick.clone(), reason, out)
                }
                Change::Affiliation {
                    jid,
                    affiliation,
                    reason,
                } => {
                    changed_affs = true;
                    self.apply_affiliation(&jid, affiliation, actor_nick.clone(), reason, out)
                }
            }
        }
        if changed_affs {
            self.save(out);
            // An owner outside a temporary room may have banned its last occupant.
            self.after_leave(out);
        }
        Ok(None)
    }

    fn parse_changes(&self, query: &Element) -> Result<Vec<Change>, Cond> {
        let mut changes = Vec::new();
        for item in query.child_elements().filter(|c| c.name == "item") {
            let reason = item
                .get_child("reason", NS_MUC_ADMIN)
                .map(Element::text)
                .filter(|r| !r.is_empty());
            // §17.4: one item changes a role or an affiliation, never both.
            if item.attr("affiliation").is_some() && item.attr("role").is_some() {
                return Err(E::BadRequest.into());
            }
            if let Some(aff) = item.attr("affiliation") {
                let affiliation = Affiliation::parse(aff).ok_or(E::BadRequest)?;
                let jid = match (item.attr("jid"), item.attr("nick")) {
                    (Some(j), _) => Jid::parse(j).map_err(|_| E::JidMalformed)?.bare(),
                    (None, Some(n)) => {
                        let nick = prepared_nick(&self.jid, n).ok_or(E::ItemNotFound)?;
                        self.occupants.get(&nick).ok_or(E::ItemNotFound)?.jid.bare()
                    }
                    (None, None) => return Err(E::BadRequest.into()),
                };
                changes.push(Change::Affiliation {
                    jid,
                    affiliation,
                    reason,
                });
            } else if let Some(role) = item.attr("role") {
                let role = Role::parse(role).ok_or(E::BadRequest)?;
                let nick = item.attr("nick").ok_or(E::BadRequest)?;
                // A nick no occupant can have (it fails preparation) names nobody.
                let nick = prepared_nick(&self.jid, nick).ok_or(E::ItemNotFound)?;
                changes.push(Change::Role { nick, role, reason });
            } else {
                return Err(E::BadRequest.into());
            }
        }
        if changes.is_empty() {
            return Err(E::BadRequest.into());
        }
        Ok(changes)
    }

    /// May an actor with `actor_aff`/`actor_role` give `nick` the role `role` (§8, §9.6-9.7)?
    fn check_role(
        &self,
        actor_nick: Option<&str>,
        actor_aff: Affiliation,
        actor_role: Role,
        nick: &str,
        role: Role,
    ) -> Result<(), Cond> {
        if actor_role != Role::Moderator {
            return Err(E::Forbidden.into());
        }
        let target = self.occupants.get(nick).ok_or(E::ItemNotFound)?;
        let target_aff = self.affiliation(&target.jid.bare());
        if role == Role::None && actor_nick == Some(nick) {
            return Err(E::Conflict.into());
        }
        // Granting or revoking moderator status is for admins and owners.
        if role == Role::Moderator && !actor_aff.is_admin() {
            return Err(E::Forbidden.into());
        }
        if target.role == Role::Moderator && !actor_aff.is_admin() {
            return Err(E::NotAllowed.into());
        }
        // Nobody may lower an admin's or an owner's role (their affiliation gives it).
        if role < Role::Moderator && target_aff.is_admin() {
            return Err(E::NotAllowed.into());
        }
        // §8.2: a moderator may not kick someone of a higher affiliation (a moderator by role
        // only, say, a member); §8.4: nor silence someone of the same affiliation or higher.
        let barred = match role {
            Role::None => target_aff > actor_aff,
            Role::Visitor => target.role > Role::Visitor && target_aff >= actor_aff,
            _ => false,
        };
        if barred {
            return Err(E::NotAllowed.into());
        }
        Ok(())
    }

    /// A moderator's approval of `nick`'s voice request (§8.6): the role change `moderator` could
    /// have made with a `muc#admin` set, under the same checks.
    pub(super) fn grant_voice(&mut self, moderator: &str, nick: &str, out: &mut Vec<RoomOut>) {
        let Some(actor) = self.occupants.get(moderator) else {
            return;
        };
        let (actor_aff, actor_role) = (self.affiliation(&actor.jid.bare()), actor.role);
        let allowed = self.check_role(
            Some(moderator),
            actor_aff,
            actor_role,
            nick,
            Role::Participant,
        );
        if allowed.is_ok() {
            self.apply_role(
                nick,
                Role::Participant,
                Some(moderator.to_owned()),
                None,
                out,
            );
        }
    }

    /// Applies a checked role change.
    fn apply_role(
        &mut self,
        nick: &str,
        role: Role,
        actor: Option<String>,
        reason: Option<String>,
        out: &mut Vec<RoomOut>,
    ) {
        if role == Role::None {
            let n = Notice {
                unavailable: true,
                codes: vec![307],
                actor,
                reason,
                ..Default::default()
            };
            self.remove_occupant(nick, None, &n, out);
            return;
        }
        let Some(o) = self.occupants.get_mut(nick) else {
            return;
        };
        o.role = role;
        let o = o.clone();
        let n = Notice {
            actor,
            reason,
            ..Default::default()
        };
        self.broadcast_presence(&o, &n, out);
    }

    /// Applies a checked affiliation change and its effect on `jid`'s occupants (§9.1, §9.4).
    pub(super) fn apply_affiliation(
        &mut self,
        jid: &BareJid,
        aff: Affiliation,
        actor: Option<String>,
        reason: Option<String>,
        out: &mut Vec<RoomOut>,
    ) {
        let old = self.affiliation(jid);
        self.store_affiliation(jid, aff, reason.clone());
        // What the occupants now have (a service administrator stays an owner whatever the
        // room's lists say).
        let aff = self.affiliation(jid);
        for nick in self.occupants.nicks_of_bare(jid) {
            let code = match aff {
                Affiliation::Outcast => Some(301),
                Affiliation::None if self.config.members_only => Some(321),
                _ => None,
            };
            if let Some(code) = code {
                let n = Notice {
                    unavailable: true,
                    codes: vec![code],
                    actor: actor.clone(),
                    reason: reason.clone(),
                    ..Default::default()
                };
                self.remove_occupant(&nick, None, &n, out);
                continue;
            }
            let default = self.default_role(aff);
            let Some(o) = self.occupants.get_mut(&nick) else {
                continue;
            };
            o.role = if aff.is_admin() || old.is_admin() {
                default
            } else if aff == Affiliation::Member {
                o.role.max(Role::Participant)
            } else {
                o.role
            };
            let o = o.clone();
            let n = Notice {
                actor: actor.clone(),
                reason: reason.clone(),
                ..Default::default()
            };
            self.broadcast_presence(&o, &n, out);
        }
    }
}

/// May an actor with `actor` give `to` to someone who has `cur` (§9, §10.3-10.7)?
fn check_affiliation(actor: Affiliation, cur: Affiliation, to: Affiliation) -> Result<(), Cond> {
    if !actor.is_admin() {
        return Err(E::Forbidden.into());
    }
    // Only owners make or unmake admins and owners.
    if actor != Affiliation::Owner && to.is_admin() {
        return Err(E::Forbidden.into());
    }
    if actor != Affiliation::Owner && cur.is_admin() {
        return Err(E::NotAllowed.into());
    }
    Ok(())
}
