//! The cluster's side of the nodes homed on a shard (docs/CLUSTER.md, "Objects on one node"): the
//! registry key of a node, a node loaded alone when this cluster node is to serve it, its
//! announcement, and the copy that gives way to another cluster node's.

use super::{home_of, loaded, nodes, store_key, Job, Slot, MAX_WAITING};
use crate::hooks::{Acc, HookCtx, JobDone};
use crate::shard::{home_shard_of, Shard, ShardMsg};
use crate::xmpp::StanzaErrorCondition as C;

/// The key of a pubsub node in the cluster's registry: `NODE@SERVICE` (the service after the
/// last `@`), the node name's `%`, line feeds and record separators escaped (a key is one field
/// of a record).
pub(super) fn object_key(service: &str, node: &str) -> String {
    let mut k = String::with_capacity(node.len() + service.len() + 1);
    for c in node.chars() {
        match c {
            '%' => k.push_str("%25"),
            '\n' => k.push_str("%0A"),
            '\u{1e}' => k.push_str("%1E"),
            c => k.push(c),
        }
    }
    k.push('@');
    k.push_str(service);
    k
}

/// The (service, node) of a registry key ([`object_key`]).
pub(super) fn from_object_key(key: &str) -> Option<(String, String)> {
    let (node, service) = key.rsplit_once('@')?;
    let node = node
        .replace("%0A", "\n")
        .replace("%1E", "\u{1e}")
        .replace("%25", "%");
    Some((service.to_owned(), node))
}

/// In a cluster, node `key` is to be served here and is not live: its work waits while it is
/// read from the store (found: live and announced; else requests handle it as unknown).
pub(super) fn load_one(shard: &mut Shard, key: (String, String), acc: Acc, job: Job) {
    match nodes(shard).slots.get_mut(&key) {
        Some(Slot::Loading(q)) => {
            if q.len() < MAX_WAITING {
                q.push((acc, job));
            } else {
                shard.bounce(&acc, C::ResourceConstraint);
            }
            return;
        }
        Some(Slot::Stale) | None => {}
        Some(_) => return job(shard, acc),
    }
    nodes(shard)
        .slots
        .insert(key.clone(), Slot::Loading(vec![(acc, job)]));
    let store_at = store_key(&key.0, &key.1);
    let mut ctx = HookCtx::new(shard.id, &mut shard.fx, &mut shard.ext);
    ctx.store(store_at, move |store| {
        let row = store.pubsub_load_node(&key.0, &key.1);
        JobDone {
            then: Some(Box::new(move |shard: &mut Shard| {
                let Some(Slot::Loading(q)) = nodes(shard).slots.remove(&key) else {
                    return;
                };
                match row {
                    Ok(row) => {
                        if let Some(row) = row {
                            let svc = key.0.clone();
                            loaded(shard, vec![(svc, row)]);
                            announce(shard, &key);
                        }
                        for (acc, job) in q {
                            job(shard, acc);
                        }
                    }
                    Err(e) => {
                        tracing::error!(service = key.0, node = key.1, error = %e, "pubsub node could not be loaded");
                        for (acc, _) in q {
                            shard.bounce(&acc, C::ResourceConstraint);
                        }
                        if !nodes(shard).clustered {
                            // It may well exist: read again at the next request, never taken
                            // for a node that does not (a create would overwrite it).
                            nodes(shard).slots.insert(key, Slot::Stale);
                        }
                    }
                }
                shard.drain_to_route();
            })),
            ..JobDone::default()
        }
    });
}

/// Another cluster node's copy of node `key` won (on the key's registry shard): ours goes, on
/// its home shard, without touching the store.
pub(super) fn evict(shard: &mut Shard, key: &str) {
    let Some(key) = from_object_key(key) else {
        return;
    };
    let home = home_of(&key.0, &key.1, shard.shards);
    crate::sm::run_on(shard, home, Box::new(move |s| drop_copy(s, key)));
}

/// Drops this shard's copy of node `key` and releases its creator's quota.
pub(super) fn drop_copy(shard: &mut Shard, key: (String, String)) {
    if let Some(Slot::Live(live)) = nodes(shard).slots.remove(&key) {
        let (svc, creator) = (key.0, live.creator);
        shard.send_to_shard(
            home_shard_of(&svc, shard.shards),
            ShardMsg::Run(Box::new(move |s| {
                crate::modules::pubsub::quota::on(s).release(&svc, &creator)
            })),
        );
    }
}

/// In a cluster, node `key` now lives here: the registry (on its own shard) hears of it.
pub(super) fn announce(shard: &mut Shard, key: &(String, String)) {
    if !nodes(shard).clustered {
        return;
    }
    let k = object_key(&key.0, &key.1);
    let home = home_of(&key.0, &key.1, shard.shards);
    let key = key.clone();
    crate::sm::run_on(
        shard,
        home_shard_of(&k, shard.shards),
        Box::new(move |s| {
            // An older copy elsewhere: ours goes (its requests were answered here already).
            if !crate::cluster::objects::announce(s, &k) {
                crate::sm::run_on(s, home, Box::new(move |s| drop_copy(s, key)));
            }
        }),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names_make_one_line_keys_and_come_back() {
        for node in [
            "news",
            "a@b",
            "50%",
            "%0A",
            "line\nfeed",
            "rs\u{1e}x",
            "%25%",
        ] {
            let key = object_key("pubsub.example.org", node);
            assert!(!key.contains(['\n', '\u{1e}']), "{key:?}");
            assert_eq!(
                from_object_key(&key),
                Some(("pubsub.example.org".to_owned(), node.to_owned())),
                "{key:?}"
            );
        }
    }
}
