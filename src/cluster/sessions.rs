//! The replicated session map, on one shard: publishing the changes of local sessions, applying
//! other nodes' records on the home shards, and snapshots (sync requests and answers).

use std::collections::HashSet;
use std::sync::Arc;

use ahash::HashMap;

use super::link::{link_of, LinkRc, SYNC_BATCH};
use super::membership::heard;
use super::wire::{Incarnation, Record};
use crate::jid::FullJid;
use crate::shard::{home_shard_of, ConnMsg, SessionRef, Shard, ShardId};

/// Shard 0: the snapshot frames open on this connection (`Record::Snapshot`), per announcing
/// incarnation: its shard count and, per home shard whose frame is open, the full JIDs it named.
/// Bounded by the members' sessions; emptied when this connection is replaced (a frame opened
/// on the old one may have lost records).
#[derive(Default)]
pub(super) struct Snapshots(HashMap<Incarnation, (u16, HashMap<u16, HashSet<FullJid>>)>);

impl Snapshots {
    /// Opens (or restarts) the frame of `from`'s home shard `home`.
    fn open(&mut self, from: Incarnation, home: u16, shards: u16) {
        let e = self.0.entry(from).or_default();
        e.0 = shards;
        e.1.insert(home, HashSet::new());
    }

    /// Closes a frame: the full JIDs it named, `None` when it was not open here.
    fn close(&mut self, from: &Incarnation, home: u16) -> Option<HashSet<FullJid>> {
        let e = self.0.get_mut(from)?;
        let named = e.1.remove(&home);
        if e.1.is_empty() {
            self.0.remove(from);
        }
        named
    }

    /// A live session record: an open frame of its home shard counts it in (or out).
    fn note(&mut self, rec: &Record) {
        let (from, jid, bound) = match rec {
            Record::Bound { from, jid, .. } => (from, jid, true),
            Record::Gone { from, jid, .. } => (from, jid, false),
            _ => return,
        };
        let Some((shards, homes)) = self.0.get_mut(from) else {
            return;
        };
        let home = home_shard_of(jid.bare().as_str(), usize::from(*shards)).0;
        if let Some(named) = homes.get_mut(&home) {
            if bound {
                named.insert(jid.clone());
            } else {
                named.remove(jid);
            }
        }
    }

    /// Forgets every open frame (this connection was replaced).
    pub(super) fn clear(&mut self) {
        self.0.clear();
    }
}

/// A local session changed on its home shard: the other nodes hear of it.
pub(super) fn local_change(
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
pub fn last_presence(home: &Shard, jid: &FullJid) -> Vec<u8> {
    home.sm
        .resources(&jid.bare())
        .iter()
        .find(|r| &r.jid == jid)
        .and_then(|r| r.last_presence.as_ref())
        .map(|p| p.bytes().to_vec())
        .unwrap_or_default()
}

/// A session record on shard 0 (live or a sync answer): to the home shard of its bare JID, after
/// any membership change it implies.
pub(super) fn session_record(link: &LinkRc, shard: &mut Shard, rec: Record) {
    let (from, jid) = match &rec {
        Record::Bound { from, jid, .. } | Record::Gone { from, jid, .. } => (from, jid),
        _ => return,
    };
    let Some(slot) = heard(link, shard, from, None) else {
        return;
    };
    link.borrow_mut().snapshots.note(&rec);
    let home = home_shard_of(jid.bare().as_str(), shard.shards);
    crate::sm::run_on(shard, home, Box::new(move |s| apply_record(s, slot, rec)));
}

/// A remote session's record, on its home shard.
pub(super) fn apply_record(shard: &mut Shard, slot: u16, rec: Record) {
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

/// A snapshot frame opens or closes (shard 0). When one closes, every shard drops the sessions
/// of that member's home shard it did not name: their `Gone` was lost with a connection.
pub(super) fn snapshot(link: &LinkRc, shard: &mut Shard, rec: Record) {
    let Record::Snapshot {
        from,
        home,
        shards,
        done,
    } = rec
    else {
        return;
    };
    let Some(slot) = heard(link, shard, &from, None) else {
        return;
    };
    // Published after that shard's subscriptions: it listens on this server.
    super::stanzas::resubscribed(link, shard, (slot, home));
    let mut l = link.borrow_mut();
    if !done {
        l.snapshots.open(from, home, shards);
        return;
    }
    let Some(named) = l.snapshots.close(&from, home) else {
        return;
    };
    drop(l);
    // After the frame's `Bound` records on every ring (FIFO), so none of them is swept.
    let named = Arc::new(named);
    for i in 0..shard.shards {
        let named = named.clone();
        crate::sm::run_on(
            shard,
            ShardId(i as u16),
            Box::new(move |s| sweep(s, slot, home, shards, &named)),
        );
    }
}

/// Drops member `slot`'s sessions whose home there is `home` (of `shards`) and that `named` does
/// not hold.
fn sweep(shard: &mut Shard, slot: u16, home: u16, shards: u16, named: &HashSet<FullJid>) {
    let stale = shard.sm.remove_where(|r| {
        r.session.remote_parts().is_some_and(|(s, _)| s == slot)
            && home_shard_of(r.jid.bare().as_str(), usize::from(shards)).0 == home
            && !named.contains(&r.jid)
    });
    if !stale.is_empty() {
        tracing::info!(
            shard = shard.id.0,
            slot,
            stale = stale.len(),
            "cluster: sessions a member no longer announces dropped"
        );
    }
}

/// This shard's announcement of every local session it is home for, framed, on the session
/// channel (after its own reconnection: records in the lost connection may not have reached the
/// others, `Gone` ones included, which the frame's end repairs).
pub fn announce_sessions(link: &LinkRc, shard: &Shard) {
    let subject = format!("{}.sm", link.borrow().node.prefix);
    announce_sessions_to(link, shard, &subject);
}

/// Publishes this shard's sessions to `subject`, framed (see [`Record::Snapshot`]).
fn announce_sessions_to(link: &LinkRc, shard: &Shard, subject: &str) {
    let from = link.borrow().node.me.clone();
    let frame = |done| Record::Snapshot {
        from: from.clone(),
        home: shard.id.0,
        shards: shard.shards as u16,
        done,
    };
    link.borrow_mut()
        .publish_control(subject, None, &frame(false).encode());
    publish_sessions(link, shard, subject);
    link.borrow_mut()
        .publish_control(subject, None, &frame(true).encode());
}

/// Another node asked for our sessions: every shard publishes those homed on it to `reply`
/// from its own connection (in order with its live session records).
pub(super) fn sync_answer(shard: &mut Shard, reply: String) {
    for i in 0..shard.shards {
        let reply = reply.clone();
        crate::sm::run_on(
            shard,
            ShardId(i as u16),
            Box::new(move |s| {
                if let Some(link) = link_of(s) {
                    // Framed: the asker also drops what it holds of ours that has ended (a
                    // `Gone` lost while either side's connection was down).
                    announce_sessions_to(&link, s, &reply);
                }
            }),
        );
    }
}

/// Publishes a `Bound` record to `subject` for every local session homed on this shard.
fn publish_sessions(link: &LinkRc, shard: &Shard, subject: &str) {
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
                .as_ref()
                .map(|p| p.bytes().to_vec())
                .unwrap_or_default(),
        }
        .encode_into(&mut batch);
        if batch.len() > SYNC_BATCH {
            l.publish_control(subject, None, &std::mem::take(&mut batch));
        }
    }
    super::objects::owned_records(shard, &me, &mut batch);
    if !batch.is_empty() {
        l.publish_control(subject, None, &batch);
    }
}

/// Shard 0, on another node's `sync.all` (its reply subject `PREFIX.r.NODE.…`): asks that node
/// for its sessions. After a NATS restart each node's shards reconnect in any order: a shard's
/// framed announcement may reach no one and a node's `sync.all` may reach a node whose shard 0
/// was not back yet; asking back when the later one's request comes covers both orders.
pub(super) fn ask_back(link: &LinkRc, reply: &str) {
    let mut l = link.borrow_mut();
    let Some(node) = reply
        .strip_prefix(&format!("{}.r.", l.node.prefix))
        .and_then(|rest| rest.split('.').next())
        .filter(|n| !n.is_empty() && *n != l.node.me.node)
    else {
        return;
    };
    let subject = format!("{}.sync.{node}", l.node.prefix);
    let reply = format!("{}.sync", l.inbox);
    l.publish_control(&subject, Some(&reply), &Record::SyncRequest.encode());
}

/// Shard 0, once connected: asks every node for its sessions.
pub fn request_sync(link: &LinkRc) {
    let mut l = link.borrow_mut();
    let subject = format!("{}.sync.all", l.node.prefix);
    let reply = format!("{}.sync", l.inbox);
    l.publish_control(&subject, Some(&reply), &Record::SyncRequest.encode());
}
