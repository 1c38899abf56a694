//! Objects homed on one node of the cluster (MUC rooms; `key` is the room's bare JID): where each
//! lives, agreed by every node (docs/CLUSTER.md, "Objects on one node").
//!
//! - Placement: an object that lives somewhere is in the registry (`Owned` records, replicated
//!   like the session map, on the home shard of its key on every node); an unknown one is served by
//!   its rendezvous node (highest random weight of the key over the live members), which creates
//!   or loads it and announces it.
//! - Stanzas for an object on another node go as `ToObject` records to that node's shard 0, with
//!   a copy kept until acknowledged (the `Deliver` machinery); there the service's packet handler
//!   gets them, marked [`FROM_NODE`] (served there, not sent back).
//! - Two copies (announcements that crossed): the older stays (then the higher weight); the other
//!   node's module drops its copy ([`Evict`]). A member's death takes its objects out of the
//!   registry and tells the module ([`Lost`], [`Left`]).

use std::rc::Rc;

use ahash::HashMap;
use sha2::{Digest, Sha256};

use super::link::{link_of, LinkRc, INBOX_SLOT};
use super::membership::heard;
use super::stanzas::{arrived, publish_kept};
use super::wire::Record;
use crate::hooks::{Acc, Key};
use crate::shard::{home_shard_of, Shard, ShardId, REMOTE_SHARD};
use crate::xmpp::StanzaErrorCondition;

/// Set on a stanza that came from another node for an object homed here: the service serves it
/// (creating or loading the object when unknown) rather than sending it on.
pub const FROM_NODE: Key<()> = Key::new("cluster.from_node");

/// The `origin_shard` of a stanza from another node whose member slot is not known here: not a
/// local shard (work aimed at it is dropped; what a module sends to the sender goes through the
/// session manager). A known sender's stanzas carry [`origin_of`] its slot instead.
pub const REMOTE_ORIGIN: ShardId = ShardId(REMOTE_SHARD | INBOX_SLOT);

/// The `origin_shard` given to stanzas from member `slot` (what its death names to [`Left`]).
pub fn origin_of(slot: u16) -> ShardId {
    ShardId(REMOTE_SHARD | (slot & !REMOTE_SHARD))
}

/// The node's module drops its copy of object `key` (another node's copy won): without
/// announcing anything, on the key's home shard.
pub type Evict = Rc<dyn Fn(&mut Shard, &str)>;

/// The objects (keys) of a dead member, on their home shard here: they left the registry.
pub type Lost = Rc<dyn Fn(&mut Shard, Vec<String>)>;

/// A member died, on every shard: the module's objects here drop what came from it (stanzas from
/// it had `origin_shard` [`origin_of`] its slot).
pub type Left = Rc<dyn Fn(&mut Shard, ShardId)>;

/// What a module does when the cluster changes under its objects.
#[derive(Clone)]
pub struct Callbacks {
    /// Its copy of an object gave way to another node's.
    pub evict: Evict,
    /// Objects of a dead member.
    pub lost: Lost,
    /// A member died.
    pub left: Left,
}

/// Where one object lives, as this node knows, and since when (ms since the Unix epoch, as its
/// node's clock said): of two copies the older stays.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    /// Here, on this shard; `info` as last announced.
    Local { since: u64, info: String },
    /// On member `slot` (node `node`), its shard `shard`.
    Remote {
        slot: u16,
        node: String,
        shard: u16,
        since: u64,
        info: String,
    },
}

impl Entry {
    fn is_local(&self) -> bool {
        matches!(self, Entry::Local { .. })
    }
}

/// Milliseconds since the Unix epoch.
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// One shard's part of the registry (the keys homed on it) and the modules' callbacks.
#[derive(Default)]
pub struct Registry {
    entries: HashMap<String, Entry>,
    services: HashMap<String, Callbacks>,
}

fn registry(shard: &mut Shard) -> &mut Registry {
    shard.ext.get_or_default::<Registry>()
}

/// The service domain of a key (`room@service` -> `service`).
fn service_of(key: &str) -> &str {
    key.rsplit_once('@').map_or(key, |(_, d)| d)
}

/// The rendezvous weight of `key` on node `node`: the first 8 bytes of SHA-256 (the same on every
/// platform and build, unlike the process-local hashers).
pub fn weight(node: &str, key: &str) -> u64 {
    let mut h = Sha256::new();
    h.update(node.as_bytes());
    h.update([0]);
    h.update(key.as_bytes());
    let d = h.finalize();
    let mut w = [0u8; 8];
    w.copy_from_slice(&d[..8]);
    u64::from_be_bytes(w)
}

/// True when node `a` is preferred to node `b` for `key` (higher weight, then higher name).
pub fn prefers(key: &str, a: &str, b: &str) -> bool {
    (weight(a, key), a) > (weight(b, key), b)
}

/// Of two copies of `key`, (live since, node), true when `a` stays: the older one (its
/// occupants are undisturbed; a copy made by a node that had not heard of it yet gives way), the
/// preferred node on a tie. Every node decides the same from the same two records.
pub fn stays(key: &str, a: (u64, &str), b: (u64, &str)) -> bool {
    a.0 < b.0 || (a.0 == b.0 && prefers(key, a.1, b.1))
}

/// The rendezvous node of `key` among `nodes`: the one every node picks from the same set.
pub fn rendezvous<'a>(key: &str, nodes: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    nodes.into_iter().max_by_key(|n| (weight(n, key), *n))
}

/// A module serves objects under `domain`: its callbacks for lost conflicts and dead members.
pub fn register(shard: &mut Shard, domain: &str, callbacks: Callbacks) {
    registry(shard)
        .services
        .insert(domain.to_owned(), callbacks);
}

/// A stanza for object `key`, on its home shard: `Some` to serve it here; `None` when it went to
/// the object's node. Without a cluster: always here.
pub fn place(shard: &mut Shard, key: &str, mut acc: Acc) -> Option<Acc> {
    let Some(link) = link_of(shard) else {
        return Some(acc);
    };
    let entry = registry(shard).entries.get(key).cloned();
    let slot = {
        let l = link.borrow();
        match entry {
            Some(Entry::Local { .. }) => return Some(acc),
            Some(Entry::Remote { slot, .. }) if l.table.get(slot).is_some() => slot,
            // The rendezvous node (or a node whose registry sent it here) serves what it does
            // not know.
            _ if acc.get(FROM_NODE).is_some() => return Some(acc),
            _ => {
                let me = l.node.me.node.as_str();
                let nodes = std::iter::once(me).chain(l.table.iter().map(|(_, w)| w.node.as_str()));
                // Picked among this node and the table's members: a member's slot, or here.
                match rendezvous(key, nodes).filter(|&best| best != me) {
                    Some(best) => match l.table.iter().find(|(_, w)| w.node == best) {
                        Some((slot, _)) => slot,
                        None => return Some(acc),
                    },
                    None => return Some(acc),
                }
            }
        }
    };
    if acc.get(FROM_NODE).is_some() {
        // Sent here, but the registry here names a third node: on, a bounded number of times.
        if acc.reroutes >= 2 {
            return Some(acc);
        }
        acc.reroutes += 1;
    }
    send(&link, shard, slot, key, acc);
    None
}

/// Publishes a stanza for object `key` to member `slot`'s shard 0, a copy kept until acknowledged.
fn send(link: &LinkRc, shard: &mut Shard, slot: u16, key: &str, acc: Acc) {
    let mut guard = link.borrow_mut();
    let l = &mut *guard;
    Record::object_header(
        &mut l.scratch,
        key,
        acc.from.as_str(),
        acc.to.as_str(),
        acc.reroutes,
    );
    let done = publish_kept(l, (slot, 0), acc);
    drop(guard);
    done.settle(shard);
}

/// A stanza for an object homed here, from another node (a `ToObject` payload): to the service's
/// packet handler.
pub(super) fn deliver(link: &LinkRc, shard: &mut Shard, payload: Vec<u8>, reply: Option<&str>) {
    let Some((mut acc, ())) = arrived(link, shard, payload, reply, b'R', |_, _| ()) else {
        return;
    };
    acc.put(FROM_NODE, ());
    acc.origin_shard = reply
        .and_then(|r| sender_slot(&link.borrow(), r))
        .map_or(REMOTE_ORIGIN, origin_of);
    match shard.service(acc.to.domain()) {
        Some(handler) => handler(shard, acc),
        None => shard.bounce(&acc, StanzaErrorCondition::ServiceUnavailable),
    }
}

/// The member slot of the node whose inbox is the prefix of reply subject `reply`
/// (`PREFIX.r.NODE.INC.SHARD.SLOT.SHARD.SEQ`).
fn sender_slot(l: &super::link::Link, reply: &str) -> Option<u16> {
    let rest = reply.strip_prefix(&l.node.prefix)?.strip_prefix(".r.")?;
    let mut t = rest.split('.');
    let node = t.next()?.to_owned();
    let id = u64::from_str_radix(t.next()?, 16).ok()?;
    l.table.slot_of(&super::wire::Incarnation { node, id })
}

/// Object `key` is to live here, on this shard (its home shard): the other nodes hear of it.
/// Returns false when the registry already places an older copy on a live member (announcements
/// crossed while this one was being made or loaded): this copy gives way and is not announced;
/// the caller drops it and sends what waited on (to that copy). Without a cluster: true.
pub fn announce(shard: &mut Shard, key: &str) -> bool {
    let Some(link) = link_of(shard) else {
        return true;
    };
    let since = now_ms();
    let me = link.borrow().node.me.node.clone();
    if let Some(Entry::Remote {
        slot,
        node,
        since: theirs,
        ..
    }) = registry(shard).entries.get(key)
    {
        if link.borrow().table.get(*slot).is_some() && stays(key, (*theirs, node), (since, &me)) {
            return false;
        }
    }
    let info = String::new();
    registry(shard).entries.insert(
        key.to_owned(),
        Entry::Local {
            since,
            info: info.clone(),
        },
    );
    publish_owned(&link, shard.id.0, key, since, info);
    true
}

/// Publishes an `Owned` record for object `key` of this node.
fn publish_owned(link: &LinkRc, shard: u16, key: &str, since: u64, info: String) {
    let mut l = link.borrow_mut();
    let rec = Record::Owned {
        from: l.node.me.clone(),
        key: key.to_owned(),
        shard,
        since,
        info,
    };
    let subject = format!("{}.sm", l.node.prefix);
    l.publish_control(&subject, None, &rec.encode());
}

/// What the service says of object `key` (living here) to every node changed (MUC: a room became
/// public, was renamed): announced again when it differs from what was (control characters
/// become spaces: the record's field is one line).
pub fn describe(shard: &mut Shard, key: &str, info: &str) {
    let Some(link) = link_of(shard) else { return };
    let info: String = info
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let since = match registry(shard).entries.get_mut(key) {
        Some(Entry::Local { since, info: old }) if *old != info => {
            old.clone_from(&info);
            *since
        }
        _ => return,
    };
    publish_owned(&link, shard.id.0, key, since, info);
}

/// The objects under `domain` living on other nodes with a non-empty `info` (MUC: the public
/// rooms of the other nodes, with their names), as this shard's part of the registry knows them.
pub fn listed_elsewhere(shard: &Shard, domain: &str) -> Vec<(String, String)> {
    let Some(r) = shard.ext.get::<Registry>() else {
        return Vec::new();
    };
    r.entries
        .iter()
        .filter_map(|(k, e)| match e {
            Entry::Remote { info, .. } if !info.is_empty() && service_of(k) == domain => {
                Some((k.clone(), info.clone()))
            }
            _ => None,
        })
        .collect()
}

/// Object `key` no longer lives here (destroyed): the other nodes forget it.
pub fn withdraw(shard: &mut Shard, key: &str) {
    let Some(link) = link_of(shard) else { return };
    if !registry(shard)
        .entries
        .get(key)
        .is_some_and(Entry::is_local)
    {
        return;
    }
    registry(shard).entries.remove(key);
    let mut l = link.borrow_mut();
    let rec = Record::Disowned {
        from: l.node.me.clone(),
        key: key.to_owned(),
    };
    let subject = format!("{}.sm", l.node.prefix);
    l.publish_control(&subject, None, &rec.encode());
}

/// An `Owned` or `Disowned` record on shard 0 (live or a sync answer): to the home shard of its
/// key, after any membership change it implies.
pub(super) fn record(link: &LinkRc, shard: &mut Shard, rec: Record) {
    let (from, key) = match &rec {
        Record::Owned { from, key, .. } | Record::Disowned { from, key } => (from, key),
        _ => return,
    };
    let Some(slot) = heard(link, shard, from, None) else {
        return;
    };
    let home = home_shard_of(key, shard.shards);
    crate::sm::run_on(shard, home, Box::new(move |s| apply(s, slot, rec)));
}

/// A registry record from member `slot`, on the key's home shard.
pub(super) fn apply(shard: &mut Shard, slot: u16, rec: Record) {
    let Some(link) = link_of(shard) else { return };
    match rec {
        Record::Owned {
            from,
            key,
            shard: at,
            since,
            info,
        } => {
            let me = link.borrow().node.me.node.clone();
            let live = |s: u16| link.borrow().table.get(s).is_some();
            let theirs = (since, from.node.as_str());
            let keep_ours = match registry(shard).entries.get(&key) {
                Some(Entry::Local { since: ours, .. }) => !stays(&key, theirs, (*ours, &me)),
                Some(Entry::Remote {
                    slot: other,
                    node,
                    since: ours,
                    ..
                }) => *other != slot && live(*other) && !stays(&key, theirs, (*ours, node)),
                None => false,
            };
            if keep_ours {
                return;
            }
            let was_local = registry(shard)
                .entries
                .get(&key)
                .is_some_and(Entry::is_local);
            registry(shard).entries.insert(
                key.clone(),
                Entry::Remote {
                    slot,
                    node: from.node,
                    shard: at,
                    since,
                    info,
                },
            );
            if was_local {
                tracing::info!(key, "cluster: two copies of an object; ours gives way");
                let evict = registry(shard)
                    .services
                    .get(service_of(&key))
                    .map(|s| s.evict.clone());
                if let Some(evict) = evict {
                    evict(shard, &key);
                }
            }
        }
        Record::Disowned { key, .. } => {
            let r = registry(shard);
            if matches!(r.entries.get(&key), Some(Entry::Remote { slot: s, .. }) if *s == slot) {
                r.entries.remove(&key);
            }
        }
        _ => {}
    }
}

/// Member `slot` died: its objects leave this shard's registry; their modules hear which.
pub(super) fn purge(shard: &mut Shard, slot: u16) {
    let r = registry(shard);
    let mut gone: HashMap<String, Vec<String>> = HashMap::default();
    r.entries.retain(|key, e| {
        let dead = matches!(e, Entry::Remote { slot: s, .. } if *s == slot);
        if dead {
            gone.entry(service_of(key).to_owned())
                .or_default()
                .push(key.clone());
        }
        !dead
    });
    for (service, keys) in gone {
        let lost = registry(shard)
            .services
            .get(&service)
            .map(|s| s.lost.clone());
        if let Some(lost) = lost {
            lost(shard, keys);
        }
    }
    let left: Vec<Left> = registry(shard)
        .services
        .values()
        .map(|s| s.left.clone())
        .collect();
    for left in left {
        left(shard, origin_of(slot));
    }
}

/// Appends an `Owned` record for every object living on this shard to `batch` (sync answers, and
/// after our own reconnection).
pub(super) fn owned_records(shard: &Shard, me: &super::wire::Incarnation, batch: &mut Vec<u8>) {
    let Some(r) = shard.ext.get::<Registry>() else {
        return;
    };
    let id = shard.id.0;
    for (key, e) in &r.entries {
        if let Entry::Local { since, info } = e {
            Record::Owned {
                from: me.clone(),
                key: key.clone(),
                shard: id,
                since: *since,
                info: info.clone(),
            }
            .encode_into(batch);
        }
    }
}

#[cfg(test)]
mod tests;
