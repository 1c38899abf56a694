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
//! - Two copies (announcements that crossed): the one whose node has the higher weight stays;
//!   the other node's module drops its copy ([`Evict`]). A member's death takes its objects out of
//!   the registry and tells the module ([`Lost`]).

use std::rc::Rc;

use ahash::HashMap;
use sha2::{Digest, Sha256};

use super::link::{link_of, LinkRc, INBOX_SLOT};
use super::membership::heard;
use super::stanzas::{arrived, publish_copy};
use super::wire::Record;
use crate::hooks::{Acc, Key};
use crate::shard::{home_shard_of, Shard, ShardId, REMOTE_SHARD};
use crate::xmpp::StanzaErrorCondition;

/// Set on a stanza that came from another node for an object homed here: the service serves it
/// (creating or loading the object when unknown) rather than sending it on.
pub const FROM_NODE: Key<()> = Key::new("cluster.from_node");

/// The `origin_shard` of a stanza from another node: not a local shard (work aimed at it is
/// dropped; what a module sends to the sender goes through the session manager).
pub const REMOTE_ORIGIN: ShardId = ShardId(REMOTE_SHARD | INBOX_SLOT);

/// The node's module drops its copy of object `key` (another node's copy won): without
/// announcing anything, on the key's home shard.
pub type Evict = Rc<dyn Fn(&mut Shard, &str)>;

/// The objects (keys) of a dead member, on their home shard here: they left the registry.
pub type Lost = Rc<dyn Fn(&mut Shard, Vec<String>)>;

/// Where one object lives, as this node knows.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    /// Here, on this shard.
    Local,
    /// On member `slot` (node `node`), its shard `shard`.
    Remote { slot: u16, node: String, shard: u16 },
}

/// One shard's part of the registry (the keys homed on it) and the modules' callbacks.
#[derive(Default)]
pub struct Registry {
    entries: HashMap<String, Entry>,
    services: HashMap<String, (Evict, Lost)>,
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

/// The rendezvous node of `key` among `nodes`: the one every node picks from the same set.
pub fn rendezvous<'a>(key: &str, nodes: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    nodes.into_iter().max_by_key(|n| (weight(n, key), *n))
}

/// A module serves objects under `domain`: its callbacks for lost conflicts and dead members.
pub fn register(shard: &mut Shard, domain: &str, evict: Evict, lost: Lost) {
    registry(shard)
        .services
        .insert(domain.to_owned(), (evict, lost));
}

/// A stanza for object `key`, on its home shard: `Some` to serve it here; `None` when it went to
/// the object's node. Without a cluster: always here.
pub fn place(shard: &mut Shard, key: &str, mut acc: Acc) -> Option<Acc> {
    let link = link_of(shard)?;
    let entry = registry(shard).entries.get(key).cloned();
    let slot = {
        let l = link.borrow();
        match entry {
            Some(Entry::Local) => return Some(acc),
            Some(Entry::Remote { slot, .. }) if l.table.get(slot).is_some() => slot,
            // The rendezvous node (or a node whose registry sent it here) serves what it does
            // not know.
            _ if acc.get(FROM_NODE).is_some() => return Some(acc),
            _ => {
                let me = l.node.me.node.as_str();
                let nodes = std::iter::once(me).chain(l.table.iter().map(|(_, w)| w.node.as_str()));
                let best = rendezvous(key, nodes)?;
                if best == me {
                    return Some(acc);
                }
                l.table.iter().find(|(_, w)| w.node == best)?.0
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
    publish_copy(link, shard, (slot, 0), acc, |buf, acc| {
        Record::object_header(buf, key, acc.from.as_str(), acc.to.as_str(), acc.reroutes)
    });
}

/// A stanza for an object homed here, from another node: to the service's packet handler.
pub(super) fn deliver(link: &LinkRc, shard: &mut Shard, rec: Record, reply: Option<&str>) {
    let Some((mut acc, None)) = arrived(link, shard, reply, rec) else {
        return;
    };
    acc.put(FROM_NODE, ());
    acc.origin_shard = REMOTE_ORIGIN;
    match shard.service(acc.to.domain()) {
        Some(handler) => handler(shard, acc),
        None => shard.bounce(&acc, StanzaErrorCondition::ServiceUnavailable),
    }
}

/// Object `key` now lives here, on this shard (its home shard): the other nodes hear of it.
pub fn announce(shard: &mut Shard, key: &str) {
    let Some(link) = link_of(shard) else { return };
    registry(shard).entries.insert(key.to_owned(), Entry::Local);
    let mut l = link.borrow_mut();
    let rec = Record::Owned {
        from: l.node.me.clone(),
        key: key.to_owned(),
        shard: shard.id.0,
    };
    let subject = format!("{}.sm", l.node.prefix);
    l.publish_control(&subject, None, &rec.encode());
}

/// Object `key` no longer lives here (destroyed): the other nodes forget it.
pub fn withdraw(shard: &mut Shard, key: &str) {
    let Some(link) = link_of(shard) else { return };
    if registry(shard).entries.get(key) != Some(&Entry::Local) {
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
        } => {
            let me = link.borrow().node.me.node.clone();
            let live = |s: u16| link.borrow().table.get(s).is_some();
            let keep_ours = match registry(shard).entries.get(&key) {
                Some(Entry::Local) => !prefers(&key, &from.node, &me),
                Some(Entry::Remote {
                    slot: other, node, ..
                }) => *other != slot && live(*other) && !prefers(&key, &from.node, node),
                None => false,
            };
            if keep_ours {
                return;
            }
            let was_local = registry(shard).entries.get(&key) == Some(&Entry::Local);
            registry(shard).entries.insert(
                key.clone(),
                Entry::Remote {
                    slot,
                    node: from.node,
                    shard: at,
                },
            );
            if was_local {
                tracing::info!(key, "cluster: two copies of an object; ours gives way");
                let evict = registry(shard)
                    .services
                    .get(service_of(&key))
                    .map(|s| s.0.clone());
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
        let lost = registry(shard).services.get(&service).map(|s| s.1.clone());
        if let Some(lost) = lost {
            lost(shard, keys);
        }
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
        if *e == Entry::Local {
            Record::Owned {
                from: me.clone(),
                key: key.clone(),
                shard: id,
            }
            .encode_into(batch);
        }
    }
}

/// The objects under `domain` that live on other nodes, as this shard knows them (keys homed
/// here).
pub fn remote_keys(shard: &mut Shard, domain: &str) -> Vec<String> {
    registry(shard)
        .entries
        .iter()
        .filter(|(k, e)| matches!(e, Entry::Remote { .. }) && service_of(k) == domain)
        .map(|(k, _)| k.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendezvous_agrees_and_moves_only_what_it_must() {
        let nodes = ["n1", "n2", "n3"];
        let keys: Vec<String> = (0..300).map(|i| format!("r{i}@conference.x")).collect();
        let mut per = HashMap::<&str, usize>::default();
        for k in &keys {
            let a = rendezvous(k, nodes).unwrap();
            // Order of the candidates does not matter.
            assert_eq!(rendezvous(k, nodes.iter().rev().copied()), Some(a));
            *per.entry(a).or_default() += 1;
            // A node leaving moves only its own keys.
            let without_n3 = rendezvous(k, ["n1", "n2"]).unwrap();
            if a != "n3" {
                assert_eq!(without_n3, a, "{k}");
            }
            // `prefers` orders nodes as rendezvous picks.
            for n in nodes {
                if n != a {
                    assert!(prefers(k, a, n) && !prefers(k, n, a));
                }
            }
        }
        // Spread over every node (300 keys: each gets some).
        assert_eq!(per.len(), 3, "{per:?}");
        assert!(per.values().all(|&c| c > 50), "{per:?}");
        assert_eq!(rendezvous("k", std::iter::empty()), None);
    }

    #[test]
    fn weights_are_fixed_across_builds() {
        // SHA-256("n1\0room@conference.localhost")[..8]: the same on every node, whatever its
        // platform; a change here would split a mixed-version cluster.
        assert_eq!(
            weight("n1", "room@conference.localhost"),
            u64::from_be_bytes(
                Sha256::digest(b"n1\0room@conference.localhost")[..8]
                    .try_into()
                    .unwrap()
            )
        );
        assert_ne!(weight("n1", "a@x"), weight("n2", "a@x"));
    }
}
