//! One MUC room (XEP-0045), sans-IO: stanzas from real JIDs in, stanzas for real JIDs out.
//!
//! The room knows nothing of shards' internals, sockets or the store: the service (`super`) feeds it
//! the stanzas addressed to the room or to an occupant (`room@service/nick`), together with the shard
//! the sender's session lives on, and carries out the [`RoomOut`]s it returns. Groupchat messages
//! leave as one [`RoomOut::Broadcast`] whose recipients are grouped by shard, so the service sends one
//! mesh message per destination shard carrying the stanza once.

use std::sync::Arc;
use std::time::SystemTime;

use crate::jid::{BareJid, FullJid, Jid};
use crate::shard::ShardId;
use crate::xml::Stanza;

/// Limits from `[modules.muc]` every room enforces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomLimits {
    /// Most occupants a room may hold, whatever its own `max occupants` setting says.
    pub max_occupants: u32,
    /// Most history messages a room keeps in memory (caps its `history length` setting).
    pub max_history: u32,
    /// Largest groupchat or private message accepted, in bytes (`policy-violation` past it).
    pub max_stanza_bytes: usize,
}

impl Default for RoomLimits {
    fn default() -> Self {
        RoomLimits {
            max_occupants: 1000,
            max_history: 50,
            max_stanza_bytes: 64 * 1024,
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
    },
    /// The room's persistent state ([`Room::saved`]) changed: store it (persistent rooms only).
    Save,
    /// The room was destroyed (or a temporary room lost its last occupant): forget it and delete
    /// it from the store.
    Destroyed,
}

/// A room's state that survives a restart (persistent rooms): configuration, affiliations, subject.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SavedRoom {}

/// One room.
#[derive(Debug)]
pub struct Room {
    jid: BareJid,
}

impl Room {
    /// A new room created by `owner`'s first presence (locked until configured, §10.1).
    pub fn new(jid: BareJid, owner: BareJid, limits: RoomLimits) -> Room {
        let _ = (owner, limits);
        Room { jid }
    }

    /// A persistent room loaded from the store.
    pub fn restore(jid: BareJid, saved: SavedRoom, limits: RoomLimits) -> Room {
        let _ = (saved, limits);
        Room { jid }
    }

    /// The state to store.
    pub fn saved(&self) -> SavedRoom {
        SavedRoom {}
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
        let _ = (from, from_shard, stanza, now);
        Vec::new()
    }

    /// `jid`'s session ended without leaving: it leaves as if it had sent unavailable presence.
    pub fn session_ended(&mut self, jid: &FullJid, now: SystemTime) -> Vec<RoomOut> {
        let _ = (jid, now);
        Vec::new()
    }

    /// Number of occupants.
    pub fn occupants(&self) -> usize {
        0
    }

    /// True when the room is persistent (kept without occupants, stored).
    pub fn is_persistent(&self) -> bool {
        false
    }

    /// True when the room is listed in the service's disco#items.
    pub fn is_public(&self) -> bool {
        false
    }

    /// The room's natural-language name (`muc#roomconfig_roomname`), if set.
    pub fn name(&self) -> Option<&str> {
        None
    }
}
