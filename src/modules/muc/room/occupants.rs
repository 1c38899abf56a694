//! The occupants of a room, by nickname and by real JID, with the cached broadcast lists.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::types::Role;
use crate::jid::{BareJid, FullJid};
use crate::shard::ShardId;
use crate::xml::Element;

/// Recipients of a broadcast, grouped by shard.
pub type Recipients = Arc<[(ShardId, Arc<[FullJid]>)]>;

/// One occupant: one session under one nickname.
#[derive(Debug, Clone)]
pub struct Occupant {
    /// The room nickname.
    pub nick: String,
    /// The real full JID.
    pub jid: FullJid,
    /// The shard the session lives on.
    pub shard: ShardId,
    /// The current role.
    pub role: Role,
    /// The client's presence payload (show, status, caps...) without MUC elements.
    pub payload: Vec<Element>,
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

    /// Adds an occupant (its nick and JID must be free).
    pub fn insert(&mut self, o: Occupant) {
        self.by_jid.insert(o.jid.clone(), o.nick.clone());
        self.by_nick.insert(o.nick.clone(), o);
        self.cache = None;
    }

    /// Removes the occupant using `nick`.
    pub fn remove(&mut self, nick: &str) -> Option<Occupant> {
        let o = self.by_nick.remove(nick)?;
        self.by_jid.remove(&o.jid);
        self.cache = None;
        Some(o)
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
        for o in self.by_nick.values() {
            per.entry(o.shard).or_default().push(o.jid.clone());
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
