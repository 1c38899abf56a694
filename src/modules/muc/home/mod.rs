//! The rooms homed on a shard: creation, the room state machines, their outputs and persistence.

use std::time::SystemTime;

use ahash::HashMap;

use super::room::occupant_id::OccupantIds;
use super::room::{Affiliation, Room, RoomLimits, RoomOut, SavedRoom};
use crate::hooks::{commit, Acc, HookCtx, HookResult, JobDone};
use crate::jid::{BareJid, FullJid, Jid};
use crate::shard::{home_shard, home_shard_of, Shard, ShardMsg};
use crate::xml::{StanzaKind, StanzaType};
use crate::xmpp::StanzaErrorCondition;

mod cluster;

use cluster::load_one;
pub use cluster::{evict, member_left, node_stopping};

/// Stanzas kept for a room while it is being created (the creator's quota is asked on its home
/// shard), or for every room while the shard's persistent rooms load; past it: `resource-constraint`.
const MAX_WAITING: usize = 4096;

/// What the store keeps per room: its state and who created it (their quota).
#[derive(serde::Serialize, serde::Deserialize)]
struct Stored {
    creator: String,
    room: SavedRoom,
}

enum Slot {
    /// A room in use.
    Live { room: Box<Room>, creator: BareJid },
    /// The creator's quota was asked; stanzas wait.
    Creating(Vec<Acc>),
    /// In a cluster: the room is read from the store (it may be a persistent room whose node
    /// died); stanzas wait.
    Loading(Vec<Acc>),
}

/// The rooms homed on this shard.
#[derive(Default)]
pub(super) struct Rooms {
    slots: HashMap<BareJid, Slot>,
    /// This shard's persistent rooms are loaded from the store.
    loaded: bool,
    /// Their loading is under way.
    loading: bool,
    /// Stanzas that arrived before they were.
    waiting: Vec<Acc>,
    limits: RoomLimits,
    /// The XEP-0421 secret every room computes its occupant ids under (none: no ids).
    ids: Option<OccupantIds>,
    max_rooms: u32,
    /// `[modules.muc] admins`: owners of every room.
    admins: std::rc::Rc<[BareJid]>,
    /// In a cluster (docs/CLUSTER.md): a room lives on one node; rooms are loaded one by one
    /// when first served here, never all at start (another node may hold them).
    clustered: bool,
}

/// Installs the registry and, on a single node, queues the loading of the persistent rooms homed
/// on this shard.
pub fn start(
    shard: &mut Shard,
    opts: &super::MucOptions,
    clustered: bool,
    ids: Option<OccupantIds>,
) {
    shard.ext.insert(Rooms {
        limits: opts.limits.clone(),
        ids,
        max_rooms: opts.max_rooms_per_user,
        admins: opts.admins.iter().cloned().collect(),
        clustered,
        loaded: clustered,
        ..Rooms::default()
    });
    if !clustered {
        load(shard);
    }
}

/// Queues the loading of this shard's persistent rooms. Until it succeeds no room is served here
/// (stanzas wait, bounded): serving an unloaded room would let anyone re-create it and overwrite
/// its stored configuration. A failed load answers what waited with `resource-constraint` and is
/// tried again with the next stanza.
fn load(shard: &mut Shard) {
    rooms(shard).loading = true;
    let (me, shards) = (shard.id, shard.shards);
    let mut ctx = HookCtx::new(shard.id, &mut shard.fx, &mut shard.ext);
    ctx.store(None, move |store| {
        let rows = store.muc_rooms(|room| home_shard_of(room, shards) == me);
        JobDone {
            then: Some(Box::new(move |shard: &mut Shard| match rows {
                Ok(rows) => loaded(shard, rows),
                Err(e) => {
                    tracing::error!(shard = me.0, error = %e, "MUC rooms could not be loaded; retried with the next stanza");
                    let r = rooms(shard);
                    r.loading = false;
                    for acc in std::mem::take(&mut r.waiting) {
                        shard.bounce(&acc, StanzaErrorCondition::ResourceConstraint);
                    }
                    shard.drain_to_route();
                }
            })),
            ..JobDone::default()
        }
    });
}

/// The persistent rooms are read: restore them, count them in their creators' quotas, refill their
/// histories from their archives, then handle what waited.
fn loaded(shard: &mut Shard, rows: Vec<(String, String)>) {
    let limits = rooms(shard).limits.clone();
    let mut creators = Vec::new();
    for (jid, state) in rows {
        let parsed = BareJid::parse(&jid)
            .ok()
            .zip(serde_json::from_str::<Stored>(&state).ok())
            .and_then(|(j, s)| Some((j, BareJid::parse(&s.creator).ok()?, s.room)));
        let Some((jid, creator, saved)) = parsed else {
            tracing::warn!(room = jid, "stored MUC room unreadable; skipped");
            continue;
        };
        let room = equip(shard, Room::restore(jid.clone(), saved, limits.clone()));
        creators.push(creator.clone());
        rooms(shard).slots.insert(jid, Slot::Live { room, creator });
    }
    for creator in creators {
        let home = home_shard(&creator, shard.shards);
        shard.send_to_shard(
            home,
            ShardMsg::Run(Box::new(move |s| super::quota::restored(s, &creator))),
        );
    }
    let wanted: Vec<(BareJid, usize)> = rooms(shard)
        .slots
        .iter()
        .filter_map(|(jid, slot)| match slot {
            Slot::Live { room, .. } => Some((jid.clone(), room.history_length())),
            _ => None,
        })
        .filter(|(_, n)| *n > 0)
        .collect();
    if wanted.is_empty() || !crate::modules::mam::archive::running(shard) {
        return serve(shard);
    }
    let mut ctx = HookCtx::new(shard.id, &mut shard.fx, &mut shard.ext);
    ctx.store(None, move |store| {
        let mut found = Vec::new();
        for (room, n) in wanted {
            match crate::modules::mam::archive::room_history(store, room.as_str(), n) {
                Ok(h) => found.push((room, h)),
                // The room is served without its history rather than not at all.
                Err(e) => tracing::warn!(room = room.as_str(), error = %e, "MUC history not read from the archive"),
            }
        }
        JobDone {
            then: Some(Box::new(move |shard: &mut Shard| {
                for (room, history) in found {
                    refill(shard, &room, history);
                }
                serve(shard);
            })),
            ..JobDone::default()
        }
    });
}

/// Gives a restored room the history its archive kept.
fn refill(
    shard: &mut Shard,
    jid: &BareJid,
    history: Vec<crate::modules::mam::archive::RoomArchived>,
) {
    if let Some(Slot::Live { room, .. }) = rooms(shard).slots.get_mut(jid) {
        room.restore_history(history.into_iter().filter_map(|m| {
            let stanza = crate::xml::Stanza::parse(m.stanza).ok()?;
            Some((stanza, m.at, m.stanza_id))
        }));
    }
}

/// The rooms are ready: handle what waited.
fn serve(shard: &mut Shard) {
    let r = rooms(shard);
    r.loaded = true;
    r.loading = false;
    for acc in std::mem::take(&mut r.waiting) {
        deliver(shard, acc);
    }
}

/// A room as this shard's service runs it: with its occupant ids, its service administrators, and
/// advertising what other modules serve for the rooms of its domain (the archive).
pub(super) fn equip(shard: &mut Shard, room: Room) -> Box<Room> {
    let ids = rooms(shard).ids.clone();
    let admins = rooms(shard).admins.clone();
    let features: std::rc::Rc<[String]> =
        crate::modules::disco::account_features(shard, room.jid().domain())
            .into_iter()
            .filter(|f| f != crate::xmpp::ns::DISCO_INFO)
            .collect();
    Box::new(
        room.with_occupant_ids(ids)
            .with_features(features)
            .with_service_admins(admins),
    )
}

/// Whether this shard's rooms give XEP-0421 occupant ids (all shards read the same secret).
pub(super) fn gives_occupant_ids(shard: &mut Shard) -> bool {
    rooms(shard).ids.is_some()
}

fn rooms(shard: &mut Shard) -> &mut Rooms {
    shard.ext.get_or_default::<Rooms>()
}

/// A stanza to a room (or an occupant) homed on this shard.
pub fn deliver(shard: &mut Shard, mut acc: Acc) {
    let r = rooms(shard);
    if !r.loaded {
        if r.waiting.len() < MAX_WAITING {
            r.waiting.push(acc);
        } else {
            shard.bounce(&acc, StanzaErrorCondition::ResourceConstraint);
        }
        if !rooms(shard).loading {
            load(shard);
        }
        return;
    }
    let room_jid = acc.to.bare();
    let elsewhere = r.clustered && !r.slots.contains_key(&room_jid);
    if elsewhere {
        // Not here: the cluster says where it lives (or that it is this node's to serve).
        match crate::cluster::objects::place(shard, room_jid.as_str(), acc) {
            Some(here) => acc = here,
            None => return shard.drain_to_route(),
        }
    }
    let Ok(from) = acc.from.clone().try_into_full() else {
        // An account's server answering what the room asked of an occupant's account (its
        // vCard, its PEP nodes): back to the requester.
        let answer = acc.kind() == StanzaKind::Iq && acc.ty().is_response();
        if let (true, Some(Slot::Live { room, .. })) =
            (answer, rooms(shard).slots.get_mut(&room_jid))
        {
            let outs = room.account_answer(&acc.from.bare(), &acc.stanza);
            drop(acc);
            apply(shard, &room_jid, outs);
            return shard.drain_to_route();
        }
        // Only sessions (full JIDs) take part in rooms.
        shard.bounce(&acc, StanzaErrorCondition::NotAcceptable);
        return;
    };
    let extension = extension_iq(shard, &acc);
    let r = rooms(shard);
    let clustered = r.clustered;
    match r.slots.get_mut(&room_jid) {
        Some(Slot::Live { room, .. }) if extension.is_some() => {
            // Occupants and members (and anyone in an open room) may use the room's extensions.
            let open = !room.config().members_only && room.config().password.is_none();
            let allowed = room.has_session(&from)
                || room.affiliation(&from.bare()) >= Affiliation::Member
                || (open && room.affiliation(&from.bare()) != Affiliation::Outcast);
            if room.shows_real_jids_to(&from) {
                acc.put(crate::hooks::ROOM_REAL_JIDS_SHOWN, ());
            }
            if let (true, Some((handler, payload))) = (allowed, extension) {
                crate::local::answer_iq(shard, acc, &handler, &payload);
            } else {
                shard.bounce(&acc, StanzaErrorCondition::Forbidden);
            }
        }
        Some(Slot::Live { room, .. }) => {
            let outs = room.handle(&from, acc.origin_shard, &acc.stanza, SystemTime::now());
            // In a cluster the other nodes list the room (disco#items) from its announcement.
            let listed = clustered.then(|| listing(room, &room_jid));
            drop(acc);
            apply(shard, &room_jid, outs);
            if let Some(info) = listed {
                crate::cluster::objects::describe(shard, room_jid.as_str(), &info);
            }
        }
        Some(Slot::Creating(queue) | Slot::Loading(queue)) => {
            if queue.len() < MAX_WAITING {
                queue.push(acc);
            } else {
                shard.bounce(&acc, StanzaErrorCondition::ResourceConstraint);
            }
        }
        None if clustered => load_one(shard, acc, room_jid),
        None => unknown_room(shard, acc, room_jid, from),
    }
    shard.drain_to_route();
}

/// An IQ get/set to a room's bare JID whose payload namespace some other module serves for rooms
/// (an account IQ handler registered on the service's domain, e.g. the archive): that handler
/// answers it instead of the room.
fn extension_iq(
    shard: &Shard,
    acc: &Acc,
) -> Option<(crate::local::IqHandler, crate::xml::Element)> {
    if acc.kind() != StanzaKind::Iq || !acc.to.is_bare() {
        return None;
    }
    let ty = acc.ty();
    if !ty.is_request() {
        return None;
    }
    let ns = acc.stanza.child_ns()?;
    let handler = shard.iq.account(acc.to.domain(), &ns)?;
    let el = acc.stanza.tree().ok()?;
    let payload = el.child_elements().next()?.clone();
    Some((handler, payload))
}

/// A stanza to a room that does not exist: an available presence to `room/nick` from a local user
/// creates it (if the creator's quota allows); anything else is answered `item-not-found`.
fn unknown_room(shard: &mut Shard, acc: Acc, room: BareJid, from: FullJid) {
    let ty = acc.ty();
    let creates =
        acc.kind() == StanzaKind::Presence && ty == StanzaType::Absent && !acc.to.is_bare();
    if ty == StanzaType::Error
        || (acc.kind() == StanzaKind::Presence && ty == StanzaType::Unavailable)
    {
        return;
    }
    // §7.2.1: entering needs a nickname, one that shows (§17.1), whether or not the room exists.
    let presence = acc.kind() == StanzaKind::Presence && ty == StanzaType::Absent;
    if presence && !acc.to.resource().is_some_and(super::room::visible_nick) {
        shard.bounce(&acc, StanzaErrorCondition::JidMalformed);
        return;
    }
    if !creates {
        shard.bounce(&acc, StanzaErrorCondition::ItemNotFound);
        return;
    }
    if !shard.is_hosted(from.domain()) {
        // Users of other servers may join rooms but not create them.
        shard.bounce(&acc, StanzaErrorCondition::NotAllowed);
        return;
    }
    let r = rooms(shard);
    let max_rooms = r.max_rooms;
    r.slots.insert(room.clone(), Slot::Creating(vec![acc]));
    let owner = from.bare();
    let me = shard.id;
    shard.send_to_shard(
        home_shard(&owner, shard.shards),
        ShardMsg::Run(Box::new(move |s| {
            let ok = super::quota::reserve(s, &owner, max_rooms);
            s.send_to_shard(
                me,
                ShardMsg::Run(Box::new(move |s| created(s, room, owner, ok))),
            );
        })),
    );
}

/// The creator's quota answered: create the room and hand it what waited, or refuse.
fn created(shard: &mut Shard, jid: BareJid, owner: BareJid, ok: bool) {
    let r = rooms(shard);
    let Some(Slot::Creating(queue)) = r.slots.remove(&jid) else {
        return;
    };
    let limits = r.limits.clone();
    let mut queue = queue.into_iter();
    if ok && !crate::cluster::objects::announce(shard, jid.as_str()) {
        // An older copy elsewhere (announcements crossed): what waited, the creating presence
        // first, goes on to it.
        let home = home_shard(&owner, shard.shards);
        shard.send_to_shard(
            home,
            ShardMsg::Run(Box::new(move |s| super::quota::release(s, &owner))),
        );
    } else if ok {
        // A new room starts with an empty archive, whatever an earlier room of that name (a
        // destroyed one whose last rows were still on their way, a temporary one before a
        // restart or a crash) left there.
        crate::modules::mam::archive::forget_owner(shard, jid.as_str().to_owned());
        let room = equip(shard, Room::new(jid.clone(), owner.clone(), limits));
        rooms(shard).slots.insert(
            jid,
            Slot::Live {
                room,
                creator: owner,
            },
        );
    } else if let Some(first) = queue.next() {
        shard.bounce(&first, StanzaErrorCondition::NotAllowed);
    }
    for acc in queue {
        deliver(shard, acc);
    }
    shard.drain_to_route();
}

/// `jid`'s session ended without leaving the room of `occupant` (`room/nick`, see `tracker`).
pub fn session_ended(shard: &mut Shard, occupant: &FullJid, jid: &FullJid) {
    let room = occupant.bare();
    let r = rooms(shard);
    let outs = match r.slots.get_mut(&room) {
        Some(Slot::Live { room, .. }) => room.session_ended(jid, SystemTime::now()),
        _ if r.clustered => {
            // The room may live on another node: it hears an unavailable presence on the
            // session's behalf, by the path the session's own stanzas took.
            let el = crate::xml::Element::new("presence", crate::xmpp::ns::CLIENT)
                .with_attr("type", "unavailable")
                .with_attr("from", jid.as_str())
                .with_attr("to", occupant.as_str());
            let stanza = crate::xml::Stanza::from_element(&el);
            let acc = Acc::new(
                stanza,
                jid.clone().into(),
                occupant.clone().into(),
                shard.id,
            );
            return deliver(shard, acc);
        }
        _ => return,
    };
    apply(shard, &room, outs);
    shard.drain_to_route();
}

/// `jid`'s account was deleted (on this shard): every shard's rooms drop its affiliation
/// ([`Room::forget_account`]) and its rooms count against nobody's quota, its own count going too
/// (the name may be registered again). Rooms on other cluster nodes keep it (the event is this
/// node's).
pub fn account_removed(shard: &mut Shard, jid: &BareJid) {
    let gone = jid.clone();
    crate::sm::run_on(
        shard,
        home_shard(jid, shard.shards),
        Box::new(move |s| super::quota::forget(s, &gone)),
    );
    for i in 0..shard.shards {
        let jid = jid.clone();
        crate::sm::run_on(
            shard,
            crate::shard::ShardId(i as u16),
            Box::new(move |s| forget_account_here(s, &jid)),
        );
    }
}

/// The rooms homed on this shard drop `jid`'s affiliation; those it created count against no one
/// (their own JID stands as the creator: it never creates rooms).
fn forget_account_here(shard: &mut Shard, jid: &BareJid) {
    let mut changed = Vec::new();
    for (room_jid, slot) in rooms(shard).slots.iter_mut() {
        if let Slot::Live { room, creator } = slot {
            let mut outs = room.forget_account(jid);
            if creator == jid {
                *creator = room_jid.clone();
                outs.push(RoomOut::Save);
            }
            if !outs.is_empty() {
                changed.push((room_jid.clone(), outs));
            }
        }
    }
    for (room_jid, outs) in changed {
        apply(shard, &room_jid, outs);
    }
    shard.drain_to_route();
}

/// The public rooms homed here under `service`, as (jid, name).
pub fn public_rooms(shard: &mut Shard, service: &str) -> Vec<(String, String)> {
    rooms(shard)
        .slots
        .iter()
        .filter_map(|(jid, slot)| match slot {
            Slot::Live { room, .. } if jid.domain() == service && room.is_public() => {
                Some((jid.as_str().to_owned(), listing(room, jid)))
            }
            _ => None,
        })
        .collect()
}

/// The room's entry in the room list: its name (or the room JID's node) when public, else empty.
fn listing(room: &Room, jid: &BareJid) -> String {
    if !room.is_public() {
        return String::new();
    }
    room.name()
        .unwrap_or(jid.node().unwrap_or_default())
        .to_owned()
}

/// Every room in use on this shard (public or not), for the admin API: (room JID, name, public,
/// occupants).
pub fn live_rooms(shard: &mut Shard) -> Vec<(String, String, bool, usize)> {
    rooms(shard)
        .slots
        .iter()
        .filter_map(|(jid, slot)| match slot {
            Slot::Live { room, .. } => Some((
                jid.as_str().to_owned(),
                room.name().unwrap_or_default().to_owned(),
                room.is_public(),
                room.occupants(),
            )),
            Slot::Creating(_) | Slot::Loading(_) => None,
        })
        .collect()
}

/// Carries out what room `jid` asked for. When the room's state is saved, the IQ results among
/// its answers (configuration, affiliations) wait for the write (`hooks::commit`): a `result`
/// means the change is stored.
fn apply(shard: &mut Shard, jid: &BareJid, outs: Vec<RoomOut>) {
    let saves = outs.iter().any(|o| matches!(o, RoomOut::Save));
    if saves {
        commit::begin(&mut shard.ext);
    }
    let mut held = Vec::new();
    let mut last_private: Option<FilteredPrivate> = None;
    for out in outs {
        match out {
            RoomOut::Send { to, stanza }
                if saves
                    && stanza.name() == "iq"
                    && stanza.type_().as_deref() == Some("result") =>
            {
                let from = sender_of(&stanza, jid);
                held.push(Acc::new(stanza, from, to, shard.id));
            }
            RoomOut::Send { to, stanza } => {
                let from = sender_of(&stanza, jid);
                // To one of the room's sessions: straight to its shard, the path its groupchat
                // messages take, so what the room sends it stays in order (self-presence, history,
                // subject, then messages). Anything else (invitations, errors to outsiders) is
                // routed.
                let at = to
                    .clone()
                    .try_into_full()
                    .ok()
                    .and_then(|full| Some((session_shard(shard, jid, &full)?, full)));
                let mut acc = Acc::new(stanza, from, to, shard.id);
                // A private message from an occupant is a message to the user like any other:
                // the local delivery filters run on it (the recipient's archive keeps and stamps
                // it, XEP-0313 §6.1.1).
                let ty = acc.ty();
                let private = acc.kind() == StanzaKind::Message
                    && acc.from.resource().is_some()
                    && !matches!(ty, StanzaType::Groupchat | StanzaType::Error);
                match at {
                    Some((at, full)) => {
                        // One private message goes to each session sharing the nick: they are
                        // copies of one message to one user, filtered and archived once (the
                        // archive kept one row per session, and gave each its own id).
                        let key = private.then(|| {
                            (
                                full.bare(),
                                acc.from.clone(),
                                acc.stanza.id().map(|i| i.into_owned()),
                            )
                        });
                        let sibling = match (&key, &last_private) {
                            (Some((to, from, id)), Some(p))
                                if *to == p.to && *from == p.from && *id == p.id =>
                            {
                                Some((p.stopped, p.sid.clone()))
                            }
                            _ => None,
                        };
                        let stopped = match sibling {
                            Some((stopped, sid)) => {
                                if let (false, Some(sid)) = (stopped, sid) {
                                    acc.stanza.append_child(&sid);
                                }
                                stopped
                            }
                            None => {
                                let stopped = private
                                    && shard.run_hook(|h| &h.filter_local_packet, &mut acc)
                                        == HookResult::Stop;
                                if let Some((to, from, id)) = key {
                                    let sid = acc.get(crate::hooks::ARCHIVE_STANZA_ID).cloned();
                                    last_private = Some(FilteredPrivate {
                                        to,
                                        from,
                                        id,
                                        stopped,
                                        sid,
                                    });
                                }
                                stopped
                            }
                        };
                        if !stopped {
                            shard.multicast(at, acc, std::sync::Arc::from([full]));
                        }
                    }
                    // Routed: local delivery runs the filters.
                    None => shard.fx.to_route.push(acc),
                }
            }
            RoomOut::Broadcast {
                stanza,
                to,
                real,
                history,
            } => {
                let from = sender_of(&stanza, jid);
                let mut acc = Acc::new(stanza, from, Jid::from(jid.clone()), shard.id);
                if let Some(real) = real {
                    acc.put(crate::hooks::ROOM_REAL_JID, real);
                }
                if shard.run_hook(|h| &h.filter_room_packet, &mut acc) == HookResult::Stop {
                    continue;
                }
                if let (true, Some(sid)) = (history, acc.get(crate::hooks::ARCHIVE_STANZA_ID)) {
                    let sid = sid.clone();
                    if let Some(Slot::Live { room, .. }) = rooms(shard).slots.get_mut(jid) {
                        room.stamp_newest_history(&sid);
                    }
                }
                for (at, jids) in to.iter() {
                    shard.multicast(*at, acc.fork(), jids.clone());
                }
            }
            RoomOut::Save => save(shard, jid),
            RoomOut::Destroyed => destroyed(shard, jid),
        }
    }
    if saves {
        let mut ctx = HookCtx::new(shard.id, &mut shard.fx, &mut shard.ext);
        commit::finish(&mut ctx, held);
    }
}

/// The last private message of a room's output that went through the recipient's filters: its
/// recipient, sender (`room/nick`) and id, whether the filters stopped it, and the stanza id the
/// recipient's archive gave it (for its copies to the recipient's other sessions).
struct FilteredPrivate {
    to: BareJid,
    from: Jid,
    id: Option<String>,
    stopped: bool,
    sid: Option<Vec<u8>>,
}

/// The shard where session `full` of room `room` lives, if it is one of the room's sessions.
fn session_shard(
    shard: &mut Shard,
    room: &BareJid,
    full: &FullJid,
) -> Option<crate::shard::ShardId> {
    match rooms(shard).slots.get(room) {
        Some(Slot::Live { room, .. }) => room.session_shard(full),
        _ => None,
    }
}

/// The `from` of a stanza a room wrote (`room@service/nick` or the room), as a JID.
fn sender_of(stanza: &crate::xml::Stanza, room: &BareJid) -> Jid {
    stanza
        .from()
        .and_then(|f| Jid::parse(&f).ok())
        .unwrap_or_else(|| Jid::from(room.clone()))
}

fn store_key(room: &BareJid) -> Option<u64> {
    Some(ahash::RandomState::with_seeds(1, 2, 3, 4).hash_one(room.as_str()))
}

fn save(shard: &mut Shard, jid: &BareJid) {
    let Some(Slot::Live { room, creator }) = rooms(shard).slots.get(jid) else {
        return;
    };
    if !room.is_persistent() {
        // A room made temporary again is no longer kept.
        return delete_stored(shard, jid);
    }
    let stored = Stored {
        creator: creator.as_str().to_owned(),
        room: room.saved(),
    };
    let state = match serde_json::to_string(&stored) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(room = jid.as_str(), error = %e, "MUC room state not serializable");
            return;
        }
    };
    store_write(shard, jid, "MUC room not saved", move |store, name| {
        store.muc_room_save(name, &state)
    });
}

fn delete_stored(shard: &mut Shard, jid: &BareJid) {
    store_write(shard, jid, "MUC room not deleted", |store, name| {
        store.muc_room_delete(name)
    });
}

/// The room's message archive goes with the room (after its last rows are written): a room
/// created later under the same name must not show it.
fn delete_archive(shard: &mut Shard, jid: &BareJid) {
    crate::modules::mam::archive::forget_owner(shard, jid.as_str().to_owned());
}

/// Queues `write` for room `jid` on the store pool (in order with the room's other writes); a
/// failure is logged as `what`.
fn store_write(
    shard: &mut Shard,
    jid: &BareJid,
    what: &'static str,
    write: impl FnOnce(&crate::store::Store, &str) -> Result<(), crate::store::StoreError>
        + Send
        + 'static,
) {
    let name = jid.as_str().to_owned();
    let key = store_key(jid);
    let failed = commit::track(&mut shard.ext, key);
    let mut ctx = HookCtx::new(shard.id, &mut shard.fx, &mut shard.ext);
    ctx.store(key, move |store| {
        if let Err(e) = write(store, &name) {
            tracing::error!(room = name, error = %e, "{what}");
            if let Some(failed) = failed {
                failed.store(true, std::sync::atomic::Ordering::Release);
            }
        }
        JobDone::default()
    });
}

fn destroyed(shard: &mut Shard, jid: &BareJid) {
    let Some(Slot::Live { room, creator }) = rooms(shard).slots.remove(jid) else {
        return;
    };
    let was_persistent = room.is_persistent();
    drop(room);
    crate::cluster::objects::withdraw(shard, jid.as_str());
    if was_persistent {
        delete_stored(shard, jid);
    }
    delete_archive(shard, jid);
    let home = home_shard(&creator, shard.shards);
    shard.send_to_shard(
        home,
        ShardMsg::Run(Box::new(move |s| super::quota::release(s, &creator))),
    );
}
