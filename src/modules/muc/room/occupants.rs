//! The occupants of a room, by nickname and by real JID, with the cached broadcast lists.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::types::Role;
use crate::jid::{BareJid, FullJid};
use crate::shard::ShardId;
use crate::xml::Element;

/// Recipients of a broadcast, grouped by shard.
pub type Recipients = Arc<[(ShardId, Arc<[FullJid]>)]>;

/// One occupant: a nickname used by one or more sessions of the same bare JID.
#[derive(Debug, Clone)]
pub struct Occupant {
    /// The room nickname.
    pub nick: String,
    /// The real full JID of the first session (shown to those who may see it).
    pub jid: FullJid,
    /// The shard the first session lives on.
    pub shard: ShardId,
    /// Further sessions of the same bare JID sharing the nickname (phone and desktop).
    pub extra: Vec<(FullJid, ShardId)>,
    /// The current role.
    pub role: Role,
    /// The client's presence payload (show, status, caps...) without MUC elements.
    pub payload: Vec<Element>,
    /// Its XEP-0421 occupant id, when the room gives them (computed once, at entry).
    pub occupant_id: Option<String>,
}

impl Occupant {
    /// Every session: the first, then the others.
    pub fn sessions(&self) -> impl Iterator<Item = (&FullJid, ShardId)> {
        std::iter::once((&self.jid, self.shard)).chain(self.extra.iter().map(|(j, s)| (j, *s)))
    }

    /// True when `jid` is one of this occupant's sessions.
    pub fn has_session(&self, jid: &FullJid) -> bool {
        self.jid == *jid || self.extra.iter().any(|(j, _)| j == jid)
    }
}

/// Occupants indexed by nickname and by real JID.
#[derive(Debug, Default)]
pub struct Occupants {
    by_nick: BTreeMap<String, Occupant>,
    by_jid: HashMap<FullJid, String>,
    /// Broadcast lists; `None` after any change of occupancy.
    cache: Option<Recipients>,
}

impl Occupants {
    /// Number of occupants.
    pub fn len(&self) -> usize {
        self.by_nick.len()
    }

    /// True when nobody is in the room.
    pub fn is_empty(&self) -> bool {
        self.by_nick.is_empty()
    }

    /// The occupant using `nick`.
    pub fn get(&self, nick: &str) -> Option<&Occupant> {
        self.by_nick.get(nick)
    }

    /// The occupant using `nick`, mutably (its nick and JID must not change through it).
    pub fn get_mut(&mut self, nick: &str) -> Option<&mut Occupant> {
        self.by_nick.get_mut(nick)
    }

    /// The nickname of the session `jid`, if it is in the room.
    pub fn nick_of(&self, jid: &FullJid) -> Option<&str> {
        self.by_jid.get(jid).map(String::as_str)
    }

    /// The occupant that is the session `jid`.
    pub fn by_jid(&self, jid: &FullJid) -> Option<&Occupant> {
        self.nick_of(jid).and_then(|n| self.by_nick.get(n))
    }

    /// Nicknames of every session of `bare`.
    pub fn nicks_of_bare(&self, bare: &BareJid) -> Vec<String> {
        self.by_nick
            .values()
            .filter(|o| o.jid.bare() == *bare)
            .map(|o| o.nick.clone())
            .collect()
    }

    /// All occupants, by nickname.
    pub fn iter(&self) -> impl Iterator<Item = &Occupant> {
        self.by_nick.values()
    }

    /// Adds an occupant (its nick and JIDs must be free).
    pub fn insert(&mut self, o: Occupant) {
        for (j, _) in o.sessions() {
            self.by_jid.insert(j.clone(), o.nick.clone());
        }
        self.by_nick.insert(o.nick.clone(), o);
        self.cache = None;
    }

    /// Removes the occupant using `nick`, with all its sessions.
    pub fn remove(&mut self, nick: &str) -> Option<Occupant> {
        let o = self.by_nick.remove(nick)?;
        for (j, _) in o.sessions() {
            self.by_jid.remove(j);
        }
        self.cache = None;
        Some(o)
    }

    /// Adds session `jid` to the occupant using `nick`.
    pub fn attach(&mut self, nick: &str, jid: &FullJid, shard: ShardId) {
        if let Some(o) = self.by_nick.get_mut(nick) {
            o.extra.push((jid.clone(), shard));
            self.by_jid.insert(jid.clone(), nick.to_owned());
            self.cache = None;
        }
    }

    /// Records that session `jid` now lives on `shard`.
    pub fn set_shard(&mut self, jid: &FullJid, shard: ShardId) {
        let Some(o) = self.by_jid.get(jid).and_then(|n| self.by_nick.get_mut(n)) else {
            return;
        };
        let slot = if o.jid == *jid {
            Some(&mut o.shard)
        } else {
            o.extra.iter_mut().find(|(j, _)| j == jid).map(|(_, s)| s)
        };
        if let Some(s) = slot {
            if *s != shard {
                *s = shard;
                self.cache = None;
            }
        }
    }

    /// Removes session `jid` from its occupant if it has another one (the next becomes its
    /// first); false when `jid` is the occupant's only session (or not in the room).
    pub fn detach(&mut self, jid: &FullJid) -> bool {
        let Some(nick) = self.by_jid.get(jid) else {
            return false;
        };
        let Some(o) = self.by_nick.get_mut(nick) else {
            return false;
        };
        if o.extra.is_empty() {
            return false;
        }
        if o.jid == *jid {
            let (j, s) = o.extra.remove(0);
            o.jid = j;
            o.shard = s;
        } else {
            o.extra.retain(|(j, _)| j != jid);
        }
        self.by_jid.remove(jid);
        self.cache = None;
        true
    }

    /// Removes everyone.
    pub fn clear(&mut self) -> Vec<Occupant> {
        self.by_jid.clear();
        self.cache = None;
        std::mem::take(&mut self.by_nick).into_values().collect()
    }

    /// Every occupant's real JID grouped by shard; rebuilt only after occupancy changed.
    pub fn recipients(&mut self) -> Recipients {
        if let Some(c) = &self.cache {
            return c.clone();
        }
        let mut per: BTreeMap<ShardId, Vec<FullJid>> = BTreeMap::new();
        for (j, s) in self.by_nick.values().flat_map(Occupant::sessions) {
            per.entry(s).or_default().push(j.clone());
        }
        let r: Recipients = per
            .into_iter()
            .map(|(s, v)| (s, Arc::from(v)))
            .collect::<Vec<_>>()
            .into();
        self.cache = Some(r.clone());
        r
    }
}
