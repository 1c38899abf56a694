//! On each connection's shard: the rooms its session is in, learned from the room's self-presence
//! (status 110) on its way to the client, so a session that ends without leaving (connection lost,
//! crash of the client) leaves its rooms.

use crate::xml::{Element, Stanza, StanzaType};
use ahash::HashMap;

use super::room::types::Affiliation;
use super::Services;
use crate::hooks::{Acc, HookCtx, HookResult, SessionEnd, SessionEndKind};
use crate::jid::{BareJid, FullJid};
use crate::shard::{home_shard, Shard};

/// Rooms tracked per session; joins past it are not tracked (the session's own unavailable
/// presence, or the room's bounce of stanzas to a gone session, still make it leave them).
const MAX_JOINED: usize = 1000;

/// One room a session is in.
#[derive(Clone)]
struct Seat {
    /// Its occupant JID (`room/nick`).
    occupant: FullJid,
    /// Its affiliation there, as the room's latest self-presence said (the goodbye says it too).
    affiliation: Affiliation,
}

/// Rooms each session on this shard has joined.
#[derive(Default)]
struct Joined {
    rooms: HashMap<FullJid, Vec<Seat>>,
    /// Shards in the process (for the rooms' home shards).
    shards: usize,
    /// This server's rooms all live in this process (not a cluster): they stop with it.
    rooms_stop_here: bool,
    /// The process is stopping and this shard's sessions were told its rooms are gone.
    stopping: bool,
}

/// The nick `session` (on this shard) has in `room`, if it joined it (the tracked self-presence).
pub fn nick_in(ext: &crate::shard::Extensions, session: &FullJid, room: &str) -> Option<String> {
    let joined = ext.get::<Joined>()?;
    joined
        .rooms
        .get(session)?
        .iter()
        .find(|seat| seat.occupant.bare().as_str() == room)
        .map(|seat| seat.occupant.resource().to_owned())
}

/// Registers the hooks.
pub fn start(shard: &mut Shard, clustered: bool) {
    shard.ext.insert(Joined {
        rooms: HashMap::default(),
        shards: shard.shards,
        rooms_stop_here: !clustered,
        stopping: false,
    });
    shard
        .hooks
        .user_receive_presence
        .add(60, super::NAME, on_receive_presence);
    shard.hooks.session_end.add(60, super::NAME, on_session_end);
}

/// In a cluster, rooms whose node died: each session of this shard in one of them gets the
/// unavailable self-presence with status 332 (XEP-0045 §7.2.5: the room is gone), said by the
/// session's own node, once.
pub fn rooms_lost(shard: &mut Shard, lost: &[BareJid]) {
    let told = forget_rooms(shard, |occupant| lost.contains(&occupant.bare()));
    tell_gone(shard, told);
}

/// The process is stopping (not in a cluster, where rooms outlive a node): each session of this
/// shard in one of this server's rooms is told the room is gone (status 332) by its own shard,
/// before its stream closes. The room's own goodbye comes from the room's shard, which may be
/// after this shard closed its streams; the copy of it that still arrives is dropped.
pub fn node_stopping(shard: &mut Shard) {
    let services = match shard.ext.get::<Services>() {
        Some(s) => s.0.clone(),
        None => return,
    };
    let joined = shard.ext.get_or_default::<Joined>();
    if !joined.rooms_stop_here {
        return;
    }
    joined.stopping = true;
    let told = forget_rooms(shard, |occupant| services.contains(occupant.domain()));
    tell_gone(shard, told);
}

/// Forgets the rooms `gone` picks (by occupant JID) of every session here; returns them with
/// their sessions.
fn forget_rooms(shard: &mut Shard, gone: impl Fn(&FullJid) -> bool) -> Vec<(FullJid, Seat)> {
    let joined = shard.ext.get_or_default::<Joined>();
    let mut told = Vec::new();
    for (session, rooms) in joined.rooms.iter_mut() {
        rooms.retain(|seat| {
            let gone = gone(&seat.occupant);
            if gone {
                told.push((session.clone(), seat.clone()));
            }
            !gone
        });
    }
    joined.rooms.retain(|_, r| !r.is_empty());
    told
}

/// Each (session, seat) gets the unavailable self-presence with status 332.
fn tell_gone(shard: &mut Shard, told: Vec<(FullJid, Seat)>) {
    for (
        session,
        Seat {
            occupant,
            affiliation,
        },
    ) in told
    {
        let ns = super::room::types::NS_MUC_USER;
        let el = Element::new("presence", crate::xmpp::ns::CLIENT)
            .with_attr("type", "unavailable")
            .with_attr("from", occupant.as_str())
            .with_attr("to", session.as_str())
            .with_child(
                Element::new("x", ns)
                    .with_child(
                        Element::new("item", ns)
                            .with_attr("affiliation", affiliation.as_str())
                            .with_attr("role", "none"),
                    )
                    .with_child(Element::new("status", ns).with_attr("code", "110"))
                    .with_child(Element::new("status", ns).with_attr("code", "332")),
            );
        let mut acc = Acc::new(
            Stanza::from_element(&el),
            occupant.into(),
            session.into(),
            shard.id,
        );
        acc.put(TOLD_HERE, ());
        shard.fx.to_route.push(acc);
    }
    shard.drain_to_route();
}

/// Marks the goodbye a session's own shard says (it never crosses a ring: the session is here).
const TOLD_HERE: crate::hooks::Key<()> = crate::hooks::Key::new("muc.told_here");

/// A self-presence from a room (status 110): joined, or left when `unavailable`.
fn on_receive_presence(acc: &mut Acc, ctx: &mut HookCtx<'_>) -> HookResult {
    let from_service = ctx
        .ext
        .get::<Services>()
        .is_some_and(|s| s.0.contains(acc.from.domain()));
    if !from_service || acc.from.node().is_none() {
        return HookResult::Continue;
    }
    let Some(affiliation) = self_presence_affiliation(acc) else {
        return HookResult::Continue;
    };
    let (Ok(me), Ok(occupant)) = (
        acc.to.clone().try_into_full(),
        acc.from.clone().try_into_full(),
    ) else {
        return HookResult::Continue;
    };
    let room = acc.from.bare();
    let joined = ctx.ext.get_or_default::<Joined>();
    let known = || {
        joined
            .rooms
            .get(&me)
            .is_some_and(|r| r.iter().any(|s| s.occupant.bare() == room))
    };
    let ours = acc.get(TOLD_HERE).is_some();
    if joined.stopping && acc.ty() == StanzaType::Unavailable && !ours && !known() {
        // The room's goodbye at shutdown, after this shard told the session itself.
        return HookResult::Stop;
    }
    if acc.ty() == StanzaType::Unavailable {
        if let Some(rooms) = joined.rooms.get_mut(&me) {
            rooms.retain(|s| s.occupant.bare() != room);
            if rooms.is_empty() {
                joined.rooms.remove(&me);
            }
        }
    } else if acc.ty() == StanzaType::Absent {
        let rooms = joined.rooms.entry(me).or_default();
        // A nickname or affiliation change is a new self-presence: the room's entry is replaced.
        rooms.retain(|s| s.occupant.bare() != room);
        if rooms.len() < MAX_JOINED {
            rooms.push(Seat {
                occupant,
                affiliation,
            });
        }
    }
    HookResult::Continue
}

/// When the presence carries `<x xmlns='…muc#user'><status code='110'/></x>` (a self-presence),
/// the affiliation its `<item/>` gives.
fn self_presence_affiliation(acc: &Acc) -> Option<Affiliation> {
    // Cheap test first: most presences from a room are other occupants'.
    memchr::memmem::find(acc.stanza.bytes(), b"110")?;
    let el = acc.stanza.tree().ok()?;
    let x = el.get_child("x", super::room::types::NS_MUC_USER)?;
    let is_self = x
        .child_elements()
        .any(|c| c.name == "status" && c.attr("code") == Some("110"));
    let affiliation = x
        .get_child("item", super::room::types::NS_MUC_USER)
        .and_then(|i| i.attr("affiliation"))
        .and_then(Affiliation::parse)
        .unwrap_or(Affiliation::None);
    is_self.then_some(affiliation)
}

/// The session ended: it leaves its rooms; resumed on another shard: the list follows it.
fn on_session_end(end: &mut SessionEnd, ctx: &mut HookCtx<'_>) -> HookResult {
    if end.kind == SessionEndKind::Detached {
        return HookResult::Continue;
    }
    let joined = ctx.ext.get_or_default::<Joined>();
    let shards = joined.shards;
    let Some(rooms) = joined.rooms.remove(&end.jid) else {
        return HookResult::Continue;
    };
    match end.kind {
        SessionEndKind::MovedTo(to) => {
            let jid = end.jid.clone();
            ctx.run_on(
                to.shard,
                Box::new(move |s: &mut Shard| {
                    let mine = s
                        .ext
                        .get_or_default::<Joined>()
                        .rooms
                        .entry(jid)
                        .or_default();
                    for seat in rooms {
                        let known = mine.iter().any(|s| s.occupant == seat.occupant);
                        if !known && mine.len() < MAX_JOINED {
                            mine.push(seat);
                        }
                    }
                }),
            );
        }
        _ => {
            for Seat { occupant, .. } in rooms {
                let jid = end.jid.clone();
                let home = home_shard(&occupant.bare(), shards);
                ctx.run_on(
                    home,
                    Box::new(move |s: &mut Shard| super::home::session_ended(s, &occupant, &jid)),
                );
            }
        }
    }
    HookResult::Continue
}
