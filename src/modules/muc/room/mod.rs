//! One MUC room (XEP-0045), sans-IO: stanzas from real JIDs in, stanzas for real JIDs out.
//!
//! The room knows nothing of shards' internals, sockets or the store: the service (`super`) feeds it
//! the stanzas addressed to the room or to an occupant (`room@service/nick`), together with the shard
//! the sender's session lives on, and carries out the [`RoomOut`]s it returns. Groupchat messages
//! leave as one [`RoomOut::Broadcast`] whose recipients are grouped by shard, so the service sends one
//! mesh message per destination shard carrying the stanza once.
//!
//! Choices where XEP-0045 leaves room: sessions of one bare JID may share a nickname (each gets
//! everything; one leaving alone is told only itself); IQs between occupants are forwarded under
//! ids of the room's own and their answers mapped back; a `cancel` error from an occupant's session
//! removes that session (status 333); admins and owners pass the password and `maxusers` checks;
//! invitations are refused in members-only rooms unless `allowinvites` or the inviter is an admin
//! or owner, whose invitee becomes a member.

mod admin;
mod broadcast;
pub mod config;
mod disco;
mod forward;
mod history;
mod message;
pub mod occupant_id;
mod occupants;
mod owner;
mod presence;
pub mod types;
mod util;
mod voice;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_admin;
#[cfg(test)]
mod tests_affiliations;
#[cfg(test)]
mod tests_history;
#[cfg(test)]
mod tests_join;
#[cfg(test)]
mod tests_message;
#[cfg(test)]
mod tests_owner;
#[cfg(test)]
mod tests_presence;
#[cfg(test)]
mod tests_voice;

use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::jid::{BareJid, FullJid, Jid};
use crate::shard::ShardId;
use crate::xml::{Stanza, StanzaKind};
use crate::xmpp::StanzaErrorCondition;

pub use config::{AllowPm, RoomConfig, Whois};
pub use types::{Affiliation, Role};

use history::History;
use occupant_id::OccupantIds;
use occupants::Occupants;
pub use util::visible_nick;

/// Limits from `[modules.muc]` every room enforces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomLimits {
    /// Most occupants a room may hold, whatever its own `max occupants` setting says.
    pub max_occupants: u32,
    /// Most history messages a room keeps in memory (caps its `history length` setting).
    pub max_history: u32,
    /// Largest groupchat or private message accepted, in bytes (`policy-violation` past it).
    pub max_stanza_bytes: usize,
    /// Most affiliations (members, admins, owners, outcasts) a room keeps: a change or an
    /// invitation that would add one more is refused with `policy-violation`.
    pub max_affiliations: usize,
}

impl Default for RoomLimits {
    fn default() -> Self {
        RoomLimits {
            max_occupants: 1000,
            max_history: 50,
            max_stanza_bytes: 64 * 1024,
            max_affiliations: 10_000,
        }
    }
}

/// What a room asks its service to do.
#[derive(Debug)]
pub enum RoomOut {
    /// One stanza to one real JID; `from` and `to` are already in its bytes.
    Send {
        /// The recipient (an occupant's or an invitee's real JID, or the sender of an error).
        to: Jid,
        /// The stanza.
        stanza: Stanza,
    },
    /// The same stanza to every listed occupant; its `from` is set (`room@service/nick`), its `to`
    /// is set per recipient by whoever delivers it. Recipients are grouped by the shard their
    /// session lives on (the lists are shared, rebuilt only when occupancy changes).
    Broadcast {
        /// The stanza.
        stanza: Stanza,
        /// Recipients per shard.
        to: Arc<[(ShardId, Arc<[FullJid]>)]>,
        /// The sender's real JID, for an occupant's message: the archive keeps it, and shows it to
        /// whoever may see it when querying (XEP-0313 §6.1.2, [`Room::shows_real_jids_to`]).
        real: Option<FullJid>,
        /// The message is the newest of the room's history (its copy there gets the stanza id
        /// the archive gives the broadcast: [`Room::stamp_newest_history`]).
        history: bool,
    },
    /// The room's persistent state ([`Room::saved`]) changed: store it (persistent rooms only).
    Save,
    /// The room was destroyed (or a temporary room lost its last occupant): forget it and delete
    /// it from the store.
    Destroyed,
}

/// The room's subject and the nickname that set it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subject {
    /// The subject text.
    pub text: String,
    /// Nickname of the occupant that set it.
    pub nick: String,
}

/// One stored affiliation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedAffiliation {
    /// The bare JID.
    pub jid: String,
    /// Its affiliation (never `none`).
    pub affiliation: Affiliation,
    /// Why it was given, if said.
    pub reason: Option<String>,
}

/// A room's state that survives a restart (persistent rooms): configuration, affiliations, subject.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SavedRoom {
    /// The configuration.
    pub config: RoomConfig,
    /// Every affiliation other than `none`.
    pub affiliations: Vec<SavedAffiliation>,
    /// The subject, if set.
    pub subject: Option<Subject>,
}

/// An affiliation with the reason given for it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct AffEntry {
    affiliation: Affiliation,
    reason: Option<String>,
}

/// A private message the room passed on, remembered so that an error answering it can go back.
#[derive(Debug)]
struct RecentPm {
    /// The message's id.
    id: Box<str>,
    /// The sender's nick.
    from: Box<str>,
    /// The recipient's nick (only it may answer).
    to: Box<str>,
}

/// One room.
#[derive(Debug)]
pub struct Room {
    jid: BareJid,
    limits: RoomLimits,
    config: RoomConfig,
    /// Locked rooms (§10.1.1) admit only their owners until configured.
    locked: bool,
    /// The creator, until its first join (which gets status 201).
    creator: Option<BareJid>,
    affiliations: BTreeMap<BareJid, AffEntry>,
    occupants: Occupants,
    history: History,
    subject: Option<Subject>,
    /// IQs forwarded between occupants, awaiting their answers.
    forwarded: forward::Forwarded,
    /// The latest private messages passed on: an error that answers one (a server's bounce
    /// carries no payload to recognise it by) goes back to its sender.
    recent_pms: std::collections::VecDeque<RecentPm>,
    /// XEP-0421 occupant ids (none: the room neither adds nor advertises them).
    ids: Option<OccupantIds>,
    /// Features other modules give every room of the service (the archive's), for disco#info.
    features: Rc<[String]>,
    /// The service's administrators: owners here whatever the room's own list says.
    service_admins: Rc<[BareJid]>,
    /// When each account last asked for voice (§7.13), within the last `voice::REQUEST_INTERVAL`.
    voice_asked: ahash::HashMap<BareJid, SystemTime>,
}

impl Room {
    /// A new room created by `owner`'s first presence (locked until configured, §10.1).
    pub fn new(jid: BareJid, owner: BareJid, limits: RoomLimits) -> Room {
        let mut affiliations = BTreeMap::new();
        affiliations.insert(
            owner.clone(),
            AffEntry {
                affiliation: Affiliation::Owner,
                reason: None,
            },
        );
        Room {
            jid,
            config: RoomConfig::new(&limits),
            limits,
            locked: true,
            creator: Some(owner),
            affiliations,
            occupants: Occupants::default(),
            history: History::default(),
            subject: None,
            forwarded: forward::Forwarded::default(),
            recent_pms: Default::default(),
            ids: None,
            features: Rc::from(Vec::new()),
            service_admins: Rc::from(Vec::new()),
            voice_asked: Default::default(),
        }
    }

    /// The room with XEP-0421 occupant ids computed under `ids`.
    pub fn with_occupant_ids(mut self, ids: Option<OccupantIds>) -> Room {
        self.ids = ids;
        self
    }

    /// The room, advertising `features` besides its own (what other modules serve for rooms).
    pub fn with_features(mut self, features: Rc<[String]>) -> Room {
        self.features = features;
        self
    }

    /// The room, with `admins` (the service's administrators) as owners besides its own.
    pub fn with_service_admins(mut self, admins: Rc<[BareJid]>) -> Room {
        self.service_admins = admins;
        self
    }

    /// The XEP-0421 id of `user` here, when the room gives them.
    fn occupant_id(&self, user: &BareJid) -> Option<String> {
        self.ids.as_ref().map(|k| k.id(&self.jid, user))
    }

    /// A persistent room loaded from the store.
    pub fn restore(jid: BareJid, saved: SavedRoom, limits: RoomLimits) -> Room {
        let mut config = saved.config;
        // The service's limits may have shrunk since the room was stored.
        config.max_users = config.max_users.min(limits.max_occupants);
        config.history_length = config.history_length.min(limits.max_history);
        let affiliations = saved
            .affiliations
            .into_iter()
            .filter_map(|a| {
                let jid = BareJid::parse(&a.jid).ok()?;
                let entry = AffEntry {
                    affiliation: a.affiliation,
                    reason: a.reason,
                };
                Some((jid, entry))
            })
            .collect();
        Room {
            jid,
            limits,
            config,
            locked: false,
            creator: None,
            affiliations,
            occupants: Occupants::default(),
            history: History::default(),
            subject: saved.subject,
            forwarded: forward::Forwarded::default(),
            recent_pms: Default::default(),
            ids: None,
            features: Rc::from(Vec::new()),
            service_admins: Rc::from(Vec::new()),
            voice_asked: Default::default(),
        }
    }

    /// The state to store.
    pub fn saved(&self) -> SavedRoom {
        SavedRoom {
            config: self.config.clone(),
            affiliations: self
                .affiliations
                .iter()
                .map(|(j, a)| SavedAffiliation {
                    jid: j.as_str().to_owned(),
                    affiliation: a.affiliation,
                    reason: a.reason.clone(),
                })
                .collect(),
            subject: self.subject.clone(),
        }
    }

    /// The room's bare JID.
    pub fn jid(&self) -> &BareJid {
        &self.jid
    }

    /// Handles a stanza from `from` (whose session lives on `from_shard`) addressed to the room or
    /// to one of its occupants.
    pub fn handle(
        &mut self,
        from: &FullJid,
        from_shard: ShardId,
        stanza: &Stanza,
        now: SystemTime,
    ) -> Vec<RoomOut> {
        let mut out = Vec::new();
        let to = stanza
            .to()
            .map(|t| t.into_owned())
            .unwrap_or_else(|| self.jid.as_str().to_owned());
        let nick = match Jid::parse(&to) {
            Ok(j) => j.resource().map(str::to_owned),
            Err(_) => {
                out.extend(util::error_reply(
                    stanza,
                    &to,
                    from,
                    StanzaErrorCondition::JidMalformed,
                ));
                return out;
            }
        };
        match (stanza.kind(), nick) {
            (StanzaKind::Presence, nick) => {
                self.on_presence(from, from_shard, stanza, &to, nick, now, &mut out)
            }
            (StanzaKind::Message, Some(nick)) => {
                self.on_private_message(from, stanza, &to, &nick, &mut out)
            }
            (StanzaKind::Message, None) => self.on_room_message(from, stanza, now, &mut out),
            (StanzaKind::Iq, Some(nick)) => self.on_occupant_iq(from, stanza, &to, &nick, &mut out),
            (StanzaKind::Iq, None) => self.on_room_iq(from, stanza, &mut out),
            (StanzaKind::Other, _) => {}
        }
        // The presence that was to create the room was refused: there is no room.
        if self.creator.is_some() && self.occupants.is_empty() {
            out.push(RoomOut::Destroyed);
        }
        out
    }

    /// `jid`'s session ended without leaving: it leaves as if it had sent unavailable presence.
    pub fn session_ended(&mut self, jid: &FullJid, now: SystemTime) -> Vec<RoomOut> {
        let _ = now;
        let mut out = Vec::new();
        self.leave(jid, Vec::new(), &mut out);
        out
    }

    /// The service is shutting down: every occupant gets unavailable presence with status 332.
    /// The room stays (the service decides whether to drop it).
    pub fn shutdown(&mut self, now: SystemTime) -> Vec<RoomOut> {
        let _ = now;
        let mut out = Vec::new();
        let notice = broadcast::Notice {
            unavailable: true,
            codes: vec![332],
            ..Default::default()
        };
        self.remove_all(&notice, &mut out);
        out
    }

    /// Number of occupants.
    pub fn occupants(&self) -> usize {
        self.occupants.len()
    }

    /// The shard session `jid` of the room lives on, if it is in the room.
    pub fn session_shard(&self, jid: &FullJid) -> Option<ShardId> {
        self.occupants
            .by_jid(jid)
            .and_then(|o| o.sessions().find(|(j, _)| *j == jid).map(|(_, s)| s))
    }

    /// The sessions in the room that live on `shard` (in a cluster, a shard index naming another
    /// node: its sessions, when that node dies).
    pub fn sessions_on(&self, shard: ShardId) -> Vec<FullJid> {
        self.occupants
            .iter()
            .flat_map(|o| o.sessions())
            .filter(|(_, s)| *s == shard)
            .map(|(j, _)| j.clone())
            .collect()
    }

    /// True when session `jid` is in the room (under any nickname).
    pub fn has_session(&self, jid: &FullJid) -> bool {
        self.occupants.nick_of(jid).is_some()
    }

    /// True when the room is persistent (kept without occupants, stored).
    pub fn is_persistent(&self) -> bool {
        self.config.persistent
    }

    /// True when the room is listed in the service's disco#items: public, and configured (a locked
    /// room does not exist yet for anyone but its owner, §7.2.10, §10.1.1).
    pub fn is_public(&self) -> bool {
        self.config.public && !self.locked
    }

    /// True while the room awaits its initial configuration (§10.1.1).
    pub fn is_locked(&self) -> bool {
        self.locked
    }

    /// The room's natural-language name (`muc#roomconfig_roomname`), if set.
    pub fn name(&self) -> Option<&str> {
        Some(self.config.name.as_str()).filter(|n| !n.is_empty())
    }

    /// The room's configuration.
    pub fn config(&self) -> &RoomConfig {
        &self.config
    }

    /// `jid`'s account was deleted: its affiliation goes, as if an owner had set `none` (its
    /// occupants told as §9 says), so that whoever registers the name next inherits no ownership,
    /// membership or ban. Empty when it had none; else ends with a save.
    pub fn forget_account(&mut self, jid: &BareJid) -> Vec<RoomOut> {
        let mut out = Vec::new();
        // Its own entry: a service administrator's ownership is the service's, not the room's. A
        // ban stays: it is the room's decision about the address, which deleting the account and
        // registering the name again must not lift.
        let banned = self.affiliation(jid) == Affiliation::Outcast;
        if self.affiliations.contains_key(jid) && !banned {
            let reason = Some("account deleted".to_owned());
            self.apply_affiliation(jid, Affiliation::None, None, reason, &mut out);
            out.push(RoomOut::Save);
        }
        out
    }

    /// True when session `jid` may see the occupants' real JIDs now (XEP-0045 §4.1, §5.2): the
    /// room is non-anonymous, or `jid` is a moderator here (an occupant with that role, or an
    /// admin or owner, whom the room makes moderators on entering).
    pub fn shows_real_jids_to(&self, jid: &FullJid) -> bool {
        self.config.whois == Whois::Anyone
            || self
                .occupants
                .by_jid(jid)
                .is_some_and(|o| o.role == Role::Moderator)
            || self.affiliation(&jid.bare()).is_admin()
    }

    /// `jid`'s affiliation: a service administrator's is owner.
    pub fn affiliation(&self, jid: &BareJid) -> Affiliation {
        self.affiliation_in(&self.affiliations, jid)
    }

    /// `jid`'s affiliation were `affs` the room's list (a service administrator's is owner).
    fn affiliation_in(&self, affs: &BTreeMap<BareJid, AffEntry>, jid: &BareJid) -> Affiliation {
        if self.service_admins.contains(jid) {
            return Affiliation::Owner;
        }
        affs.get(jid).map_or(Affiliation::None, |a| a.affiliation)
    }

    /// The role an occupant with `aff` gets on entering (§5.1.2).
    fn default_role(&self, aff: Affiliation) -> Role {
        match aff {
            Affiliation::Owner | Affiliation::Admin => Role::Moderator,
            Affiliation::Member => Role::Participant,
            Affiliation::None if self.config.moderated => Role::Visitor,
            Affiliation::None => Role::Participant,
            Affiliation::Outcast => Role::None,
        }
    }

    /// `room@service/nick`.
    fn occupant_jid(&self, nick: &str) -> String {
        format!("{}/{}", self.jid, nick)
    }

    /// Asks the service to store the room if it is persistent.
    fn save(&self, out: &mut Vec<RoomOut>) {
        if self.config.persistent {
            out.push(RoomOut::Save);
        }
    }

    /// A temporary room that lost its last occupant is destroyed.
    fn after_leave(&mut self, out: &mut Vec<RoomOut>) {
        if self.occupants.is_empty() && !self.config.persistent {
            out.push(RoomOut::Destroyed);
        }
    }

    /// Sets (or with `none`, clears) `jid`'s affiliation without side effects.
    fn store_affiliation(&mut self, jid: &BareJid, aff: Affiliation, reason: Option<String>) {
        if aff == Affiliation::None {
            self.affiliations.remove(jid);
        } else {
            self.affiliations.insert(
                jid.clone(),
                AffEntry {
                    affiliation: aff,
                    reason,
                },
            );
        }
    }

    /// Bare JIDs with affiliation `aff`.
    fn with_affiliation(&self, aff: Affiliation) -> Vec<BareJid> {
        self.affiliations
            .iter()
            .filter(|(_, a)| a.affiliation == aff)
            .map(|(j, _)| j.clone())
            .collect()
    }
}
