//! One shard's link to the cluster: its own NATS connection's protocol state, the copies of the
//! stanzas it published and no one acknowledged yet, the member table, and what the shard does
//! with what arrives. No socket here: `rt::cluster` moves the bytes.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::task::Waker;
use std::time::Instant;

use ahash::HashMap;

use super::members::{Change, Members, Table};
use super::nats::{Msg, NatsCore};
use super::wire::{Incarnation, Record};
use super::{sid, Node};
use crate::hooks::Acc;
use crate::jid::FullJid;
use crate::shard::{home_shard_of, ConnMsg, SessionRef, Shard, ShardId};
use crate::xmpp::StanzaErrorCondition;

/// Stanzas a shard keeps copies of until the receiving node acknowledges them; past it, a stanza
/// for another node is answered `resource-constraint` (type `wait`).
pub const MAX_UNACKED: usize = 16_384;

/// Bytes of output a shard's NATS connection may hold unwritten before stanzas are refused
/// (answered `resource-constraint`); session-map and acknowledgement records may use four times
/// as much, then are dropped, logged and counted (`sm_dropped`).
pub const OUTPUT_LIMIT: usize = 8 * 1024 * 1024;

/// Largest batch of session records in one sync answer (below NATS's default 1 MiB payload).
const SYNC_BATCH: usize = 256 * 1024;

/// This shard's link (shared by its tasks and its handlers; single-threaded).
pub type LinkRc = Rc<RefCell<Link>>;

/// The link as module state in `Shard::ext` (for closures run on the shard and the admin API).
#[derive(Clone)]
pub struct ClusterExt(pub LinkRc);

/// Counters of one shard's cross-node traffic.
#[derive(Debug, Default, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct LinkStats {
    /// Stanzas published to other nodes.
    pub stanzas_out: u64,
    /// Stanzas received from other nodes.
    pub stanzas_in: u64,
    /// Stanzas refused (bounced `resource-constraint`): output or unacknowledged copies full.
    pub refused: u64,
    /// Stanzas NATS returned (no one listens: the node is gone), routed again here.
    pub returned: u64,
    /// Unacknowledged stanzas routed again because their node died or the connection dropped.
    pub rerouted: u64,
    /// Session-map records published.
    pub sm_out: u64,
    /// Session-map records applied from other nodes.
    pub sm_in: u64,
    /// Session-map records dropped (output over four times its bound).
    pub sm_dropped: u64,
}

impl LinkStats {
    /// Adds another shard's counters.
    pub fn add(&mut self, o: &LinkStats) {
        self.stanzas_out += o.stanzas_out;
        self.stanzas_in += o.stanzas_in;
        self.refused += o.refused;
        self.returned += o.returned;
        self.rerouted += o.rerouted;
        self.sm_out += o.sm_out;
        self.sm_in += o.sm_in;
        self.sm_dropped += o.sm_dropped;
    }
}

/// One shard's part of `GET /api/cluster`: counters, (sessions, available with a non-negative
/// priority) per member slot, and the members (shard 0).
pub type ShardView = (
    LinkStats,
    HashMap<u16, (usize, usize)>,
    Vec<(u16, super::members::Member)>,
);

/// What one shard tells `GET /api/cluster`: its counters, its sessions per member slot, and on
/// shard 0 the members.
pub fn shard_view(shard: &Shard) -> Option<ShardView> {
    let link = link_of(shard)?;
    let l = link.borrow();
    let mut per_slot: HashMap<u16, (usize, usize)> = HashMap::default();
    for r in shard.sm.all_resources() {
        if let Some((slot, _)) = r.session.remote_parts() {
            let e = per_slot.entry(slot).or_default();
            e.0 += 1;
            e.1 += usize::from(r.priority.is_some_and(|p| p >= 0));
        }
    }
    let members = l
        .members
        .as_ref()
        .map(|m| m.live().map(|m| (m.slot, m.clone())).collect())
        .unwrap_or_default();
    Some((l.stats, per_slot, members))
}

/// One shard's link state.
pub struct Link {
    /// This node.
    pub node: Rc<Node>,
    /// This shard.
    pub shard: u16,
    /// The connection's protocol state (replaced on each reconnection).
    pub nats: NatsCore,
    /// Connected to a NATS server now.
    pub connected: bool,
    /// This shard's inbox subject (acknowledgements, returns, sync answers come to `INBOX.*`).
    pub inbox: String,
    seq: u64,
    next_serial: u64,
    unacked: HashMap<(u16, u16), VecDeque<(u64, Acc)>>,
    unacked_len: usize,
    /// Reply subjects to acknowledge after this batch of input, one per sending shard.
    acks_due: HashMap<String, String>,
    /// Every shard's copy of the member slots.
    pub table: Table,
    /// Shard 0 only: the membership.
    pub members: Option<Members>,
    /// Counters.
    pub stats: LinkStats,
    waker: Option<Waker>,
}

impl Link {
    /// The link of shard `shard` of `node`.
    pub fn new(node: Rc<Node>, shard: u16) -> Link {
        let inbox = format!(
            "{}.r.{}.{:x}.{shard}",
            node.prefix, node.me.node, node.me.id
        );
        let members = (shard == 0).then(|| Members::new(node.me.clone(), node.failure_timeout));
        Link {
            node,
            shard,
            nats: NatsCore::new(OUTPUT_LIMIT),
            connected: false,
            inbox,
            seq: 0,
            next_serial: 0,
            unacked: HashMap::default(),
            unacked_len: 0,
            acks_due: HashMap::default(),
            table: Table::default(),
            members,
            stats: LinkStats::default(),
            waker: None,
        }
    }

    /// Starts a new connection's protocol: `CONNECT` and this shard's subscriptions. Returns the
    /// copies of stanzas the old connection may not have carried (to route again).
    pub fn reset(&mut self) -> Vec<Acc> {
        self.nats = NatsCore::new(OUTPUT_LIMIT);
        let name = format!("{}/{}", self.node.me.node, self.shard);
        self.nats.connect(&name);
        let p = &self.node.prefix;
        self.nats.subscribe(
            &format!("{p}.n.{}.{}", self.node.me.node, self.shard),
            sid::STANZAS,
        );
        self.nats
            .subscribe(&format!("{}.*", self.inbox), sid::INBOX);
        if self.shard == 0 {
            self.nats.subscribe(&format!("{p}.hb"), sid::HEARTBEAT);
            self.nats.subscribe(&format!("{p}.sm"), sid::SM);
            self.nats.subscribe(&format!("{p}.sync.all"), sid::SYNC);
            self.nats
                .subscribe(&format!("{p}.sync.{}", self.node.me.node), sid::SYNC);
        }
        self.acks_due.clear();
        self.unacked_len = 0;
        if let Some(m) = self.members.as_mut() {
            m.refresh_all(Instant::now());
        }
        let lost: Vec<Acc> = self
            .unacked
            .drain()
            .flat_map(|(_, q)| q.into_iter().map(|(_, acc)| acc))
            .collect();
        self.stats.rerouted += lost.len() as u64;
        self.wake();
        lost
    }

    /// The writer's waker: output is waiting.
    pub fn set_waker(&mut self, w: &Waker) {
        if !self.waker.as_ref().is_some_and(|old| old.will_wake(w)) {
            self.waker = Some(w.clone());
        }
    }

    /// Wakes the writer (output is waiting).
    pub fn wake(&mut self) {
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    /// Publishes a control record (session map, acknowledgement, heartbeat): bounded at four times
    /// the stanza bound, then dropped and counted.
    fn publish_control(&mut self, subject: &str, reply: Option<&str>, payload: &[u8]) -> bool {
        if self.nats.output_len() > OUTPUT_LIMIT * 4 {
            self.stats.sm_dropped += 1;
            tracing::warn!(
                shard = self.shard,
                subject,
                "cluster output full: record dropped"
            );
            return false;
        }
        self.nats.publish_control(subject, reply, payload);
        self.wake();
        true
    }

    /// Takes the copies kept for member `slot` (it died).
    fn take_copies(&mut self, slot: u16) -> Vec<Acc> {
        let keys: Vec<(u16, u16)> = self
            .unacked
            .keys()
            .filter(|k| k.0 == slot)
            .copied()
            .collect();
        let mut out = Vec::new();
        for k in keys {
            if let Some(q) = self.unacked.remove(&k) {
                out.extend(q.into_iter().map(|(_, a)| a));
            }
        }
        self.unacked_len -= out.len();
        out
    }

    /// Takes the copy published with sequence number `seq` (NATS returned it).
    fn take_copy(&mut self, seq: u64) -> Option<(u16, Acc)> {
        let (key, at) = self
            .unacked
            .iter()
            .find_map(|(k, q)| q.iter().position(|(s, _)| *s == seq).map(|i| (*k, i)))?;
        let q = self.unacked.get_mut(&key)?;
        let (_, acc) = q.remove(at)?;
        self.unacked_len -= 1;
        Some((key.0, acc))
    }
}

/// The link of the shard a closure runs on.
fn link_of(shard: &Shard) -> Option<LinkRc> {
    shard.ext.get::<ClusterExt>().map(|c| c.0.clone())
}

/// Plugs the link into its shard: the remote session handler, the session listener, the state.
pub fn install(shard: &mut Shard, link: &LinkRc) {
    let l = link.clone();
    shard.set_session_handler(Rc::new(move |shard, session, msg| {
        send_remote(&l, shard, session, msg)
    }));
    let l = link.clone();
    shard.set_session_listener(Rc::new(move |shard, jid, session, now| {
        local_change(&l, shard, jid, session, now)
    }));
    shard.ext.insert(ClusterExt(link.clone()));
}

/// A message for a session on another node, on its home shard: a stanza is published to that
/// node's shard, a copy kept until acknowledged.
fn send_remote(link: &LinkRc, shard: &mut Shard, session: SessionRef, msg: ConnMsg) {
    let acc = match msg {
        ConnMsg::Deliver(acc) => acc,
        ConnMsg::Ext(m) => return m.conn_gone(shard),
        // A conflict on bind: the other node closes its own session when our binding reaches it
        // (see `apply_record`); nothing else is sent to a remote session.
        _ => return,
    };
    let Some((slot, to_shard)) = session.remote_parts() else {
        return;
    };
    let target = shard
        .sm
        .resources_of(acc.to.bare_str())
        .iter()
        .find(|r| r.session == session)
        .map(|r| r.jid.clone());
    let mut l = link.borrow_mut();
    let (Some(who), Some(target)) = (l.table.get(slot).cloned(), target) else {
        // The member died (or the session left) meanwhile: the session manager picks again.
        drop(l);
        return shard.reroute(acc);
    };
    if l.unacked_len >= MAX_UNACKED {
        l.stats.refused += 1;
        drop(l);
        return shard.bounce(&acc, StanzaErrorCondition::ResourceConstraint);
    }
    let payload = Record::Deliver {
        target,
        from: acc.from.clone(),
        to: acc.to.clone(),
        reroutes: acc.reroutes,
        stanza: acc.stanza.bytes().to_vec(),
    }
    .encode();
    l.seq += 1;
    let seq = l.seq;
    let subject = format!("{}.n.{}.{to_shard}", l.node.prefix, who.node);
    let reply = format!("{}.{seq}", l.inbox);
    if l.nats.publish(&subject, Some(&reply), &payload).is_err() {
        l.stats.refused += 1;
        drop(l);
        return shard.bounce(&acc, StanzaErrorCondition::ResourceConstraint);
    }
    l.stats.stanzas_out += 1;
    l.unacked
        .entry((slot, to_shard))
        .or_default()
        .push_back((seq, acc));
    l.unacked_len += 1;
    l.wake();
}

/// A local session changed on its home shard: the other nodes hear of it.
fn local_change(
    link: &LinkRc,
    home: &Shard,
    jid: &FullJid,
    session: SessionRef,
    now: Option<Option<i8>>,
) {
    if session.is_remote() {
        // Another node's session (its unavailable, said on its behalf): not ours to announce.
        return;
    }
    let mut l = link.borrow_mut();
    let from = l.node.me.clone();
    let shard = session.shard.0;
    let rec = match now {
        Some(priority) => Record::Bound {
            from,
            jid: jid.clone(),
            shard,
            priority,
            presence: last_presence(home, jid),
        },
        None => Record::Gone {
            from,
            jid: jid.clone(),
            shard,
        },
    };
    let subject = format!("{}.sm", l.node.prefix);
    if l.publish_control(&subject, None, &rec.encode()) {
        l.stats.sm_out += 1;
    }
}

/// The last available presence of `jid` on its home shard, as bytes (empty when none).
fn last_presence(home: &Shard, jid: &FullJid) -> Vec<u8> {
    home.sm
        .resources(&jid.bare())
        .iter()
        .find(|r| &r.jid == jid)
        .and_then(|r| r.last_presence.as_deref())
        .map(|p| p.bytes().to_vec())
        .unwrap_or_default()
}

/// What arrived on this shard's connection, in order. Shard-side effects go through `shard`.
pub fn on_msg(link: &LinkRc, shard: &mut Shard, msg: Msg) {
    let records = match Record::decode_all(&msg.payload) {
        Ok(r) => r,
        Err(_) if msg.status.is_some() => Vec::new(),
        Err(e) => {
            tracing::warn!(shard = shard.id.0, subject = msg.subject, "cluster: {e}");
            return;
        }
    };
    match msg.sid {
        sid::STANZAS => {
            for rec in records {
                if let Record::Deliver { .. } = rec {
                    deliver(link, shard, rec, msg.reply.as_deref());
                }
            }
        }
        sid::INBOX => {
            let seq = msg
                .subject
                .rsplit('.')
                .next()
                .and_then(|s| s.parse::<u64>().ok());
            if msg.status == Some(503) {
                if let Some(seq) = seq {
                    returned(link, shard, seq);
                }
                return;
            }
            for rec in records {
                match rec {
                    Record::Ack { from, shard: at } => {
                        if let Some(seq) = seq {
                            acked(link, &from, at, seq);
                        }
                    }
                    rec @ Record::Bound { .. } => session_record(link, shard, rec),
                    _ => {}
                }
            }
        }
        sid::HEARTBEAT => {
            for rec in records {
                if let Record::Heartbeat { from, shards, c2s } = rec {
                    heard(link, shard, &from, Some((shards, &c2s)));
                }
            }
        }
        sid::SM => {
            for rec in records {
                session_record(link, shard, rec);
            }
        }
        sid::SYNC => {
            if let Some(reply) = msg.reply {
                sync_answer(shard, reply);
            }
        }
        _ => {}
    }
}

/// A stanza for a session bound on this shard.
fn deliver(link: &LinkRc, shard: &mut Shard, rec: Record, reply: Option<&str>) {
    let Record::Deliver {
        target,
        from,
        to,
        reroutes,
        stanza,
    } = rec
    else {
        return;
    };
    {
        let mut l = link.borrow_mut();
        l.stats.stanzas_in += 1;
        if let Some(reply) = reply {
            if let Some((prefix, _)) = reply.rsplit_once('.') {
                l.acks_due.insert(prefix.to_owned(), reply.to_owned());
            }
        }
    }
    let Ok(stanza) = crate::xml::Stanza::parse(stanza) else {
        tracing::warn!(
            shard = shard.id.0,
            "cluster: unparsable stanza from another node"
        );
        return;
    };
    let mut acc = Acc::new(stanza, from, to, shard.id);
    acc.reroutes = reroutes;
    match shard.local_session(target.as_str()) {
        Some(conn) => {
            let at = shard.session_ref(conn);
            shard.send_to_session(at, ConnMsg::Deliver(acc));
        }
        // The session left this node: handled as for any vanished full JID.
        None => shard.reroute(acc),
    }
}

/// Publishes the acknowledgements due after a batch of input: one per sending shard.
pub fn flush_acks(link: &LinkRc) {
    let mut l = link.borrow_mut();
    if l.acks_due.is_empty() {
        return;
    }
    let ack = Record::Ack {
        from: l.node.me.clone(),
        shard: l.shard,
    }
    .encode();
    let due: Vec<String> = l.acks_due.drain().map(|(_, r)| r).collect();
    for reply in due {
        l.publish_control(&reply, None, &ack);
    }
}

/// Member `from`'s shard `at` got everything up to `seq` from this shard.
fn acked(link: &LinkRc, from: &Incarnation, at: u16, seq: u64) {
    let mut l = link.borrow_mut();
    let Some(slot) = l.table.slot_of(from) else {
        return;
    };
    let mut freed = 0;
    if let Some(q) = l.unacked.get_mut(&(slot, at)) {
        while q.front().is_some_and(|(s, _)| *s <= seq) {
            q.pop_front();
            freed += 1;
        }
    }
    l.unacked_len -= freed;
}

/// NATS returned stanza `seq`: nobody listens on its node's shard any more. Shard 0 declares the
/// member dead, then routes the stanza again (after the purge reached every shard).
fn returned(link: &LinkRc, shard: &mut Shard, seq: u64) {
    let Some((slot, acc)) = link.borrow_mut().take_copy(seq) else {
        return;
    };
    link.borrow_mut().stats.returned += 1;
    crate::sm::run_on(
        shard,
        ShardId(0),
        Box::new(move |s| {
            if let Some(link) = link_of(s) {
                let change = link
                    .borrow_mut()
                    .members
                    .as_mut()
                    .and_then(|m| m.suspect(slot));
                if let Some(c) = change {
                    broadcast(s, c);
                }
            }
            s.reroute(acc);
        }),
    );
}

/// Shard 0 heard from `who`: membership changes go to every shard first.
fn heard(
    link: &LinkRc,
    shard: &mut Shard,
    who: &Incarnation,
    info: Option<(u16, &str)>,
) -> Option<u16> {
    let (changes, slot) = link
        .borrow_mut()
        .members
        .as_mut()?
        .heard(who, info, Instant::now());
    for c in changes {
        broadcast(shard, c);
    }
    slot
}

/// A session record on shard 0 (live or a sync answer): to the home shard of its bare JID, after
/// any membership change it implies.
fn session_record(link: &LinkRc, shard: &mut Shard, rec: Record) {
    let (from, jid) = match &rec {
        Record::Bound { from, jid, .. } | Record::Gone { from, jid, .. } => (from, jid),
        _ => return,
    };
    let Some(slot) = heard(link, shard, from, None) else {
        return;
    };
    let home = home_shard_of(jid.bare().as_str(), shard.shards);
    crate::sm::run_on(shard, home, Box::new(move |s| apply_record(s, slot, rec)));
}

/// A remote session's record, on its home shard.
fn apply_record(shard: &mut Shard, slot: u16, rec: Record) {
    let Some(link) = link_of(shard) else { return };
    link.borrow_mut().stats.sm_in += 1;
    let same_node = |r: &crate::sm::Resource, at: u16| r.session.remote_parts() == Some((slot, at));
    match rec {
        Record::Bound {
            jid,
            shard: at,
            priority,
            presence,
            ..
        } => {
            let existing = shard
                .sm
                .resources(&jid.bare())
                .iter()
                .find(|r| r.jid == jid)
                .map(|r| (r.session, same_node(r, at)));
            let session = match existing {
                Some((s, true)) => s,
                other => {
                    let mut l = link.borrow_mut();
                    l.next_serial += 1;
                    let s = SessionRef::remote(slot, at, l.next_serial);
                    drop(l);
                    if let Some(old) = shard.sm.insert(jid.clone(), s) {
                        if !old.session.is_remote() && other.is_some() {
                            // The same full JID bound here too: the newer binding, elsewhere, wins.
                            shard.send_to_session(
                                old.session,
                                ConnMsg::Close(crate::xmpp::StreamErrorCondition::Conflict),
                            );
                        }
                    }
                    s
                }
            };
            shard.sm.set_priority(&jid, session, priority);
            // Probes from this node's users are answered from it.
            let last = match priority {
                Some(_) if !presence.is_empty() => crate::xml::Stanza::parse(presence).ok(),
                _ => None,
            };
            shard.sm.set_last_presence(&jid, session, last);
        }
        Record::Gone { jid, shard: at, .. } => {
            let found = shard
                .sm
                .resources(&jid.bare())
                .iter()
                .find(|r| r.jid == jid && same_node(r, at))
                .map(|r| r.session);
            if let Some(s) = found {
                shard.sm.remove(&jid, s);
            }
        }
        _ => {}
    }
}

/// Applies a membership change on every shard, shard 0 last: by the time shard 0 routes anything
/// again, every other shard has the change queued before it.
pub fn broadcast(shard: &mut Shard, change: Change) {
    if let Change::Joined { who, .. } = &change {
        // A member that joins (a start, a restart, or back after being cut off) tells us its
        // sessions.
        if let Some(link) = link_of(shard) {
            let mut l = link.borrow_mut();
            let subject = format!("{}.sync.{}", l.node.prefix, who.node);
            let reply = format!("{}.sync", l.inbox);
            l.publish_control(&subject, Some(&reply), &Record::SyncRequest.encode());
        }
    }
    // One node speaks for a dead member's users (their contacts get one `unavailable` each, not
    // one per surviving node): the live node with the smallest name, as this node sees them.
    let speak = matches!(change, Change::Died { .. })
        && link_of(shard).is_some_and(|link| {
            let l = link.borrow();
            let me = &l.node.me.node;
            l.members
                .as_ref()
                .is_some_and(|m| m.live().all(|x| x.who.node > *me))
        });
    for i in (0..shard.shards).rev() {
        let c = change.clone();
        crate::sm::run_on(
            shard,
            ShardId(i as u16),
            Box::new(move |s| apply_change(s, c, speak)),
        );
    }
}

/// A dead member's available sessions homed here go unavailable as if their clients had said so:
/// the presence modules tell their contacts and their other resources.
fn unavailable_on_behalf(shard: &mut Shard, slot: u16) {
    let available: Vec<(FullJid, SessionRef)> = shard
        .sm
        .all_resources()
        .filter(|r| r.priority.is_some())
        .filter(|r| r.session.remote_parts().is_some_and(|(s, _)| s == slot))
        .map(|r| (r.jid.clone(), r.session))
        .collect();
    for (jid, session) in available {
        let el = crate::xml::Element::new("presence", crate::xmpp::ns::CLIENT)
            .with_attr("type", "unavailable")
            .with_attr("from", jid.as_str());
        let mut acc = Acc::new(
            crate::xml::Stanza::from_element(&el),
            crate::jid::Jid::from(jid.clone()),
            crate::jid::Jid::from(jid.bare()),
            shard.id,
        );
        acc.put(
            crate::sm::PRESENCE_UPDATE,
            crate::sm::PresenceUpdate {
                session,
                priority: None,
                initial: false,
            },
        );
        crate::sm::route(shard, acc);
    }
}

/// A membership change on one shard: the table, and for a death the purge of its sessions and
/// the re-routing of the stanzas not acknowledged by it (through shard 0, after the purge).
fn apply_change(shard: &mut Shard, change: Change, speak: bool) {
    let Some(link) = link_of(shard) else { return };
    link.borrow_mut().table.apply(&change);
    let Change::Died { slot, who } = change else {
        if let Change::Joined { who, .. } = &change {
            tracing::info!(
                shard = shard.id.0,
                node = who.node,
                "cluster: member joined"
            );
        }
        return;
    };
    if speak {
        unavailable_on_behalf(shard, slot);
    }
    let gone = shard
        .sm
        .remove_where(|r| r.session.remote_parts().is_some_and(|(s, _)| s == slot));
    if !gone.is_empty() || shard.id.0 == 0 {
        tracing::info!(
            shard = shard.id.0,
            node = who.node,
            sessions = gone.len(),
            "cluster: member died, its sessions left the map"
        );
    }
    let copies = link.borrow_mut().take_copies(slot);
    if copies.is_empty() {
        return;
    }
    link.borrow_mut().stats.rerouted += copies.len() as u64;
    if shard.id.0 == 0 {
        for acc in copies {
            shard.reroute(acc);
        }
    } else {
        crate::sm::run_on(
            shard,
            ShardId(0),
            Box::new(move |s| {
                for acc in copies {
                    s.reroute(acc);
                }
            }),
        );
    }
}

/// Another node asked for our sessions: every shard publishes those homed on it to `reply`
/// from its own connection (in order with its live session records).
fn sync_answer(shard: &mut Shard, reply: String) {
    for i in 0..shard.shards {
        let reply = reply.clone();
        crate::sm::run_on(
            shard,
            ShardId(i as u16),
            Box::new(move |s| {
                if let Some(link) = link_of(s) {
                    publish_sessions(&link, s, &reply);
                }
            }),
        );
    }
}

/// Publishes a `Bound` record to `subject` for every local session homed on this shard (sync
/// answers; the session channel after our own reconnection, where records may have been lost).
pub fn publish_sessions(link: &LinkRc, shard: &Shard, subject: &str) {
    let me = link.borrow().node.me.clone();
    let mut batch = Vec::new();
    let mut l = link.borrow_mut();
    for r in shard.sm.all_resources().filter(|r| !r.session.is_remote()) {
        Record::Bound {
            from: me.clone(),
            jid: r.jid.clone(),
            shard: r.session.shard.0,
            priority: r.priority,
            presence: r
                .last_presence
                .as_deref()
                .map(|p| p.bytes().to_vec())
                .unwrap_or_default(),
        }
        .encode_into(&mut batch);
        if batch.len() > SYNC_BATCH {
            l.publish_control(subject, None, &std::mem::take(&mut batch));
        }
    }
    if !batch.is_empty() {
        l.publish_control(subject, None, &batch);
    }
}

/// Shard 0, every heartbeat: publishes ours, declares the silent members dead.
pub fn tick(link: &LinkRc, shard: &mut Shard) {
    let deaths = {
        let mut l = link.borrow_mut();
        let hb = Record::Heartbeat {
            from: l.node.me.clone(),
            shards: shard.shards as u16,
            c2s: l.node.c2s.clone(),
        }
        .encode();
        let subject = format!("{}.hb", l.node.prefix);
        l.publish_control(&subject, None, &hb);
        match l.members.as_mut() {
            Some(m) => m.tick(Instant::now()),
            None => Vec::new(),
        }
    };
    for c in deaths {
        broadcast(shard, c);
    }
}

/// Shard 0, once connected: asks every node for its sessions.
pub fn request_sync(link: &LinkRc) {
    let mut l = link.borrow_mut();
    let subject = format!("{}.sync.all", l.node.prefix);
    let reply = format!("{}.sync", l.inbox);
    l.publish_control(&subject, Some(&reply), &Record::SyncRequest.encode());
}
