//! The cluster's side of the rooms homed on a shard (docs/CLUSTER.md, "Objects on one node"): a
//! room loaded alone when this node is to serve it, the copy that gives way to another node's, and
//! the sessions of a dead member leaving.

use std::time::SystemTime;

use super::{apply, deliver, rooms, store_key, unknown_room, Slot, Stored};
use crate::hooks::{Acc, HookCtx, JobDone};
use crate::jid::BareJid;
use crate::modules::mam::archive;
use crate::modules::muc::room::{Room, RoomOut};
use crate::shard::{home_shard, Shard, ShardMsg};
use crate::xmpp::StanzaErrorCondition;

/// In a cluster, a room this node is to serve and does not hold: read from the (shared) store
/// first — a persistent room whose node died, or that no node loaded yet.
pub(super) fn load_one(shard: &mut Shard, acc: Acc, room: BareJid) {
    rooms(shard)
        .slots
        .insert(room.clone(), Slot::Loading(vec![acc]));
    let name = room.as_str().to_owned();
    // Its history too, from its archive (the room's own length cuts it once restored).
    let wanted = if archive::running(shard) {
        rooms(shard).limits.max_history as usize
    } else {
        0
    };
    let mut ctx = HookCtx::new(shard.id, &mut shard.fx, &mut shard.ext);
    ctx.store(store_key(&room), move |store| {
        let row = store.muc_room(&name);
        let history = match row {
            Ok(Some(_)) => archive::room_history(store, &name, wanted).unwrap_or_else(|e| {
                // The room is served without its history rather than not at all.
                tracing::warn!(room = name, error = %e, "MUC history not read from the archive");
                Vec::new()
            }),
            _ => Vec::new(),
        };
        JobDone {
            then: Some(Box::new(move |shard: &mut Shard| {
                loaded_one(shard, room, row, history)
            })),
            ..JobDone::default()
        }
    });
}

/// The store answered for one room: restore it (and announce it), or handle what waited as for
/// an unknown room.
fn loaded_one(
    shard: &mut Shard,
    jid: BareJid,
    row: Result<Option<String>, crate::store::StoreError>,
    history: Vec<archive::RoomArchived>,
) {
    let Some(Slot::Loading(queue)) = rooms(shard).slots.remove(&jid) else {
        return;
    };
    let stored = match row {
        Ok(state) => state.and_then(|s| serde_json::from_str::<Stored>(&s).ok()),
        Err(e) => {
            tracing::error!(room = jid.as_str(), error = %e, "MUC room could not be loaded");
            for acc in queue {
                shard.bounce(&acc, StanzaErrorCondition::ResourceConstraint);
            }
            return shard.drain_to_route();
        }
    };
    let mut queue = queue.into_iter();
    match stored.and_then(|s| Some((BareJid::parse(&s.creator).ok()?, s.room))) {
        Some((creator, saved)) => {
            // An older copy elsewhere: what waited goes on to it.
            if !crate::cluster::objects::announce(shard, jid.as_str()) {
                for acc in queue {
                    deliver(shard, acc);
                }
                return shard.drain_to_route();
            }
            let limits = rooms(shard).limits.clone();
            let room = super::equip(shard, Room::restore(jid.clone(), saved, limits));
            rooms(shard).slots.insert(
                jid.clone(),
                Slot::Live {
                    room,
                    creator: creator.clone(),
                },
            );
            super::refill(shard, &jid, history);
            let home = home_shard(&creator, shard.shards);
            shard.send_to_shard(
                home,
                ShardMsg::Run(Box::new(move |s| {
                    crate::modules::muc::quota::restored(s, &creator)
                })),
            );
        }
        None => {
            // No such room: the first stanza may create it; the others follow it.
            if let Some(first) = queue.next() {
                match first.from.clone().try_into_full() {
                    Ok(from) => unknown_room(shard, first, jid, from),
                    Err(_) => shard.bounce(&first, StanzaErrorCondition::NotAcceptable),
                }
            }
        }
    }
    for acc in queue {
        deliver(shard, acc);
    }
    shard.drain_to_route();
}

/// A cluster member died (its stanzas came with `origin_shard` `origin`): its sessions leave
/// the rooms homed here, as if they had ended (the others see them go).
pub fn member_left(shard: &mut Shard, origin: crate::shard::ShardId) {
    let now = SystemTime::now();
    let mut all = Vec::new();
    for (jid, slot) in rooms(shard).slots.iter_mut() {
        if let Slot::Live { room, .. } = slot {
            for session in room.sessions_on(origin) {
                all.push((jid.clone(), room.session_ended(&session, now)));
            }
        }
    }
    for (jid, outs) in all {
        apply(shard, &jid, outs);
    }
    shard.drain_to_route();
}

/// What tells every occupant of `room` that it is gone: unavailable presence with status 332. The
/// store is not touched.
fn room_gone(room: &mut Room) -> Vec<RoomOut> {
    room.shutdown(SystemTime::now())
        .into_iter()
        .filter(|o| matches!(o, RoomOut::Send { .. } | RoomOut::Broadcast { .. }))
        .collect()
}

/// The node is stopping: the occupants of this shard's rooms are told the rooms are gone (XEP-0045
/// status 332, removed because of a system shutdown), so those on other servers or cluster nodes,
/// whose sessions outlive this node, do not stay on as ghosts and can join again when it is back.
/// The rooms and the store stay as they are (a persistent room's state is stored already).
pub fn node_stopping(shard: &mut Shard) {
    let mut told = Vec::new();
    for (jid, slot) in rooms(shard).slots.iter_mut() {
        if let Slot::Live { room, .. } = slot {
            told.push((jid.clone(), room_gone(room)));
        }
    }
    for (jid, outs) in told {
        apply(shard, &jid, outs);
    }
    shard.drain_to_route();
}

/// Another node's copy of room `key` won (announcements crossed): ours is dropped without
/// touching the store; its occupants are told the room is gone (status 332) and may join again.
pub fn evict(shard: &mut Shard, key: &str) {
    let Ok(jid) = BareJid::parse(key) else { return };
    let Some(Slot::Live { mut room, creator }) = rooms(shard).slots.remove(&jid) else {
        return;
    };
    let outs = room_gone(&mut room);
    apply(shard, &jid, outs);
    let home = home_shard(&creator, shard.shards);
    shard.send_to_shard(
        home,
        ShardMsg::Run(Box::new(move |s| {
            crate::modules::muc::quota::release(s, &creator)
        })),
    );
    shard.drain_to_route();
}
