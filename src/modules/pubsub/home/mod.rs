//! The nodes homed on a shard (home = seeded hash of service and node name): loading the
//! persistent nodes at start, creation (with the owner's and the service's quota asked on the
//! service's home shard, [`super::quota`]), and running requests on a node.

use ahash::HashMap;
use serde::{Deserialize, Serialize};

use super::core::node::NodeMeta;
use super::core::{Extras, Item, Node, NodeConfig, PubsubAppError, PubsubError, Request};
use super::options::PubsubOptions;
use crate::hooks::{commit, Acc, HookCtx, JobDone};
use crate::shard::{home_shard_of, Shard, ShardId, ShardMsg};
use crate::store::StoredNode;
use crate::xmpp::StanzaErrorCondition as C;

mod cluster;

use cluster::{announce, evict, load_one, object_key};

/// Requests kept while this shard's nodes load, and per node while it is being created; past it:
/// `resource-constraint`.
const MAX_WAITING: usize = 4096;

/// Work on a node's home shard once its nodes are loaded, given the stanza it answers.
pub(super) type Job = Box<dyn FnOnce(&mut Shard, Acc) + Send>;

/// What the store keeps per node: who created it (their quota) and the node's metadata.
#[derive(Serialize, Deserialize)]
struct Stored {
    creator: String,
    #[serde(flatten)]
    meta: NodeMeta,
}

/// A node in use.
pub(super) struct Live {
    /// The node.
    pub node: Node,
    /// Who created it (counted in their quota).
    pub creator: String,
}

enum Slot {
    Live(Box<Live>),
    /// The quota was asked; requests to the node wait.
    Creating(Vec<(Acc, (Request, Extras))>),
    /// In a cluster: the node is read from the store; work on it waits.
    Loading(Vec<(Acc, Job)>),
    /// A write of the node failed: memory was ahead of the store, so the node is read from the
    /// store again before its next request (never taken for a node that does not exist).
    Stale,
}

/// The nodes homed on this shard, by (service, node).
#[derive(Default)]
pub(super) struct Nodes {
    slots: HashMap<(String, String), Slot>,
    loaded: bool,
    loading: bool,
    waiting: Vec<(Acc, Job)>,
    /// The module's options.
    pub opts: PubsubOptions,
    /// The service domains.
    pub services: Vec<String>,
    /// In a cluster (docs/CLUSTER.md, "Objects on one node"): a node lives on one cluster node;
    /// nodes are loaded one by one when first used there, never all at start.
    clustered: bool,
}

/// The home shard of `node` of `service`.
pub(super) fn home_of(service: &str, node: &str, shards: usize) -> ShardId {
    home_shard_of(&format!("{service}\u{0}{node}"), shards)
}

/// The store job key of a node (its writes stay in order).
fn store_key(service: &str, node: &str) -> Option<u64> {
    Some(ahash::RandomState::with_seeds(5, 6, 7, 8).hash_one((service, node)))
}

pub(super) fn nodes(shard: &mut Shard) -> &mut Nodes {
    shard.ext.get_or_default::<Nodes>()
}

/// Installs the registry and, on a single node, queues the loading of the nodes homed here.
pub(super) fn start(
    shard: &mut Shard,
    opts: PubsubOptions,
    services: Vec<String>,
    clustered: bool,
) {
    if clustered {
        for svc in &services {
            let callbacks = crate::cluster::objects::Callbacks {
                evict: std::rc::Rc::new(evict),
                // Every node is stored: its next request loads it on its new cluster node.
                lost: std::rc::Rc::new(|_, _| {}),
                left: std::rc::Rc::new(|_, _| {}),
            };
            crate::cluster::objects::register(shard, svc, callbacks);
        }
    }
    shard.ext.insert(Nodes {
        opts,
        services,
        clustered,
        loaded: clustered,
        ..Nodes::default()
    });
    if !clustered {
        load(shard);
    }
}

/// Runs `job` on the home shard of `node` of `service`, once its nodes are loaded. In a cluster,
/// the registry's shard for the node first says whether it lives on this cluster node; if not,
/// the stanza goes there (and its request is parsed again there).
pub(super) fn on_home(shard: &mut Shard, service: &str, node: &str, acc: Acc, job: Job) {
    if nodes(shard).clustered {
        let key = object_key(service, node);
        let (svc, name) = (service.to_owned(), node.to_owned());
        let at = home_shard_of(&key, shard.shards);
        let place = move |s: &mut Shard| {
            if let Some(acc) = crate::cluster::objects::place(s, &key, acc) {
                to_home(s, &svc, &name, acc, job);
            }
            s.drain_to_route();
        };
        if at == shard.id {
            return place(shard);
        }
        return shard.send_to_shard(at, ShardMsg::Run(Box::new(place)));
    }
    to_home(shard, service, node, acc, job);
}

/// Runs `job` on the home shard of `node` of `service`, once loaded.
fn to_home(shard: &mut Shard, service: &str, node: &str, acc: Acc, job: Job) {
    let home = home_of(service, node, shard.shards);
    let key = (service.to_owned(), node.to_owned());
    if home == shard.id {
        when_loaded(shard, key, acc, job);
    } else {
        shard.send_to_shard(
            home,
            ShardMsg::Run(Box::new(move |s| when_loaded(s, key, acc, job))),
        );
    }
}

/// Runs `job` now if this shard's nodes are loaded, else after the load (bounded). Serving an
/// unloaded node would let anyone create it again over its stored state. In a cluster, the node
/// `key` alone is loaded when not live here.
fn when_loaded(shard: &mut Shard, key: (String, String), acc: Acc, job: Job) {
    let n = nodes(shard);
    let reload = matches!(n.slots.get(&key), Some(Slot::Stale));
    if reload
        || n.clustered && !matches!(n.slots.get(&key), Some(Slot::Live(_) | Slot::Creating(_)))
    {
        load_one(shard, key, acc, job);
    } else if n.loaded {
        job(shard, acc);
    } else {
        if n.waiting.len() < MAX_WAITING {
            n.waiting.push((acc, job));
        } else {
            shard.bounce(&acc, C::ResourceConstraint);
        }
        if !nodes(shard).loading {
            load(shard);
        }
    }
    shard.drain_to_route();
}

/// Loads every service's nodes homed on this shard. A failure answers what waited with
/// `resource-constraint`; the next request tries again.
fn load(shard: &mut Shard) {
    let n = nodes(shard);
    n.loading = true;
    let services = n.services.clone();
    let (me, shards) = (shard.id, shard.shards);
    let mut ctx = HookCtx::new(shard.id, &mut shard.fx, &mut shard.ext);
    ctx.store(None, move |store| {
        let mut got = Vec::new();
        let mut err = None;
        for svc in services {
            match store.pubsub_load_where(&svc, |node| home_of(&svc, node, shards) == me) {
                Ok(rows) => got.extend(rows.into_iter().map(|r| (svc.clone(), r))),
                Err(e) => err = Some(e),
            }
        }
        JobDone {
            then: Some(Box::new(move |shard: &mut Shard| match err {
                None => loaded(shard, got),
                Some(e) => {
                    tracing::error!(shard = me.0, error = %e, "pubsub nodes could not be loaded; retried with the next request");
                    let n = nodes(shard);
                    n.loading = false;
                    for (acc, _) in std::mem::take(&mut n.waiting) {
                        shard.bounce(&acc, C::ResourceConstraint);
                    }
                    shard.drain_to_route();
                }
            })),
            ..JobDone::default()
        }
    });
}

fn loaded(shard: &mut Shard, rows: Vec<(String, StoredNode)>) {
    let limits = nodes(shard).opts.limits.clone();
    for (svc, row) in rows {
        let stored: Stored = match serde_json::from_str(&row.meta) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(service = svc, node = row.node, error = %e, "stored pubsub node unreadable; skipped");
                continue;
            }
        };
        let items = row.items.into_iter().map(Item::from_stored).collect();
        let node = Node::restore(&row.node, stored.meta, items, &limits);
        let creator = stored.creator;
        let quota = home_shard_of(&svc, shard.shards);
        let (s2, c2) = (svc.clone(), creator.clone());
        shard.send_to_shard(
            quota,
            ShardMsg::Run(Box::new(move |s| super::quota::on(s).restored(&s2, &c2))),
        );
        nodes(shard).slots.insert(
            (svc, row.node),
            Slot::Live(Box::new(Live { node, creator })),
        );
    }
    let n = nodes(shard);
    n.loaded = true;
    n.loading = false;
    for (acc, job) in std::mem::take(&mut n.waiting) {
        job(shard, acc);
    }
    shard.drain_to_route();
}

/// A pubsub request (with its extras) about `node` of `service`, on its home shard.
pub(super) fn request(shard: &mut Shard, service: String, acc: Acc, req: (Request, Extras)) {
    let Some(name) = req.0.node().map(str::to_owned) else {
        // The service handler keeps requests without a node (it answers them itself).
        reply(shard, &acc, Err(PubsubError::bad_request()));
        return shard.drain_to_route();
    };
    let key = (service, name);
    match nodes(shard).slots.remove(&key) {
        Some(Slot::Live(mut live)) => {
            commit::begin(&mut shard.ext);
            let out = super::handle::run(shard, &key.0, &mut live, &acc, req);
            if !out.deleted {
                nodes(shard).slots.insert(key, Slot::Live(live));
            }
            reply(shard, &acc, out.reply);
        }
        Some(Slot::Creating(mut q)) => {
            if q.len() < MAX_WAITING {
                q.push((acc, req));
            } else {
                shard.bounce(&acc, C::ResourceConstraint);
            }
            nodes(shard).slots.insert(key, Slot::Creating(q));
        }
        Some(Slot::Loading(mut q)) => {
            // Read from the store meanwhile: the request runs after it.
            if q.len() < MAX_WAITING {
                let svc = key.0.clone();
                q.push((acc, Box::new(move |s, acc| request(s, svc, acc, req))));
            } else {
                shard.bounce(&acc, C::ResourceConstraint);
            }
            nodes(shard).slots.insert(key, Slot::Loading(q));
        }
        // `when_loaded` reads a stale node again first; should one still get here, it waits for
        // that rather than being taken for a node that does not exist.
        Some(Slot::Stale) => {
            nodes(shard).slots.insert(key, Slot::Stale);
            shard.bounce(&acc, C::ResourceConstraint);
        }
        None => unknown(shard, key, acc, req),
    }
    shard.drain_to_route();
}

/// Routes the answer to `acc`, once the writes its request queued have committed
/// (`hooks::commit`, begun where the request was carried out).
pub(super) fn reply(
    shard: &mut Shard,
    acc: &Acc,
    out: Result<Option<crate::xml::Element>, PubsubError>,
) {
    let r = match out {
        Ok(body) => Some(crate::local::result_reply(acc, body, shard.id)),
        Err(e) => e.reply_to(acc, shard.id),
    };
    let mut ctx = HookCtx::new(shard.id, &mut shard.fx, &mut shard.ext);
    commit::finish(&mut ctx, r.into_iter().collect());
}

/// Runs `f` on `node` of `service` (homed here) if it exists; `None` otherwise.
pub(super) fn with_node<T>(
    shard: &mut Shard,
    service: &str,
    node: &str,
    f: impl FnOnce(&mut Shard, &mut Live) -> T,
) -> Option<T> {
    let key = (service.to_owned(), node.to_owned());
    let mut live = match nodes(shard).slots.remove(&key) {
        Some(Slot::Live(live)) => live,
        // A node being created keeps its slot (and the requests waiting in it).
        Some(other) => {
            nodes(shard).slots.insert(key, other);
            return None;
        }
        None => return None,
    };
    let out = f(shard, &mut live);
    nodes(shard).slots.insert(key, Slot::Live(live));
    Some(out)
}

/// Every live node of `service` homed here, for the lists of [`super::gather`].
pub(super) fn each_node<T>(
    shard: &mut Shard,
    service: &str,
    f: impl Fn(&Node) -> Vec<T>,
) -> Vec<T> {
    nodes(shard)
        .slots
        .iter()
        .filter(|((s, _), _)| s == service)
        .filter_map(|(_, slot)| match slot {
            Slot::Live(l) => Some(f(&l.node)),
            Slot::Creating(_) | Slot::Loading(_) | Slot::Stale => None,
        })
        .flatten()
        .collect()
}

/// `jid`'s account was deleted (on this shard): on every shard, the nodes it solely owned are
/// deleted (subscribers told, as for an owner's delete), and the others forget its affiliation
/// and subscriptions, so whoever registers the name next inherits none of them. Nodes not in
/// memory (another cluster node's, or stale after a failed write) keep them.
pub(super) fn account_removed(shard: &mut Shard, jid: &crate::jid::BareJid) {
    for i in 0..shard.shards {
        let bare = jid.as_str().to_owned();
        crate::sm::run_on(
            shard,
            ShardId(i as u16),
            Box::new(move |s| forget_account_here(s, &bare)),
        );
    }
}

fn forget_account_here(shard: &mut Shard, bare: &str) {
    let keys: Vec<(String, String)> = nodes(shard)
        .slots
        .iter()
        .filter(|(_, slot)| matches!(slot, Slot::Live(_)))
        .map(|(k, _)| k.clone())
        .collect();
    for (service, node) in keys {
        let gone = with_node(shard, &service, &node, |shard, live| {
            if live.node.sole_owner(bare) {
                if live.node.config().notify_delete {
                    let msg = super::core::event::delete(&service, &node, live.node.config(), None);
                    super::notify::fan_out(shard, &service, &live.node, &msg);
                }
                deleted(shard, &service, live);
                true
            } else {
                if live.node.forget_account(bare) {
                    save(shard, &service, live);
                }
                false
            }
        });
        if gone == Some(true) {
            nodes(shard).slots.remove(&(service, node));
        }
    }
    shard.drain_to_route();
}

/// A request to a node that does not exist: a create, or a publish (auto-create), by a user of
/// this server makes it if the quota allows; anything else is `item-not-found`.
fn unknown(shard: &mut Shard, key: (String, String), acc: Acc, req: (Request, Extras)) {
    let config = match new_config(shard, &acc, &req) {
        Ok(c) => c,
        Err(e) => return reply(shard, &acc, Err(e)),
    };
    let opts = nodes(shard).opts.clone();
    let owner = acc.from.bare().as_str().to_owned();
    nodes(shard)
        .slots
        .insert(key.clone(), Slot::Creating(Vec::new()));
    let me = shard.id;
    let quota = home_shard_of(&key.0, shard.shards);
    let per_owner = u32::try_from(opts.limits.max_nodes_per_owner).unwrap_or(u32::MAX);
    shard.send_to_shard(
        quota,
        ShardMsg::Run(Box::new(move |s| {
            let ok = super::quota::on(s).reserve(&key.0, &owner, per_owner, opts.max_nodes);
            s.send_to_shard(
                me,
                ShardMsg::Run(Box::new(move |s| {
                    created(s, key, owner, config, acc, req, ok)
                })),
            );
        })),
    );
}

/// The configuration of the node `req` would create, or why it may not.
fn new_config(
    shard: &mut Shard,
    acc: &Acc,
    (req, extras): &(Request, Extras),
) -> Result<NodeConfig, PubsubError> {
    let opts = &nodes(shard).opts;
    let limits = opts.limits.clone();
    let base = NodeConfig::default();
    let config = match req {
        Request::Create {
            config: Some(x), ..
        } => base.apply(x, &limits)?,
        Request::Create { config: None, .. } => base,
        Request::Publish {
            options: Some(x), ..
        } => NodeConfig::from_publish_options(&base, x, &limits)?,
        Request::Publish { options: None, .. } => base,
        _ => return Err(PubsubError::not_found()),
    };
    if !shard.is_hosted(acc.from.domain()) {
        // Users of other servers may subscribe and publish where allowed, not create nodes.
        return Err(PubsubError::forbidden());
    }
    super::handle::supported(&config)?;
    if extras.no_item {
        // No node made for a publish it would refuse.
        config.check_publish_without_item()?;
    }
    Ok(config)
}

/// The quota answered: make the node and run the request that made it and what waited, or refuse.
fn created(
    shard: &mut Shard,
    key: (String, String),
    owner: String,
    config: NodeConfig,
    acc: Acc,
    req: (Request, Extras),
    ok: bool,
) {
    let Some(Slot::Creating(queue)) = nodes(shard).slots.remove(&key) else {
        return;
    };
    if ok {
        let node = Node::new(&key.1, config, &owner);
        let live = Live {
            node,
            creator: owner,
        };
        // The creation is answered (or its publish runs, and is answered) once it is stored.
        commit::begin(&mut shard.ext);
        save(shard, &key.0, &live);
        nodes(shard)
            .slots
            .insert(key.clone(), Slot::Live(Box::new(live)));
        announce(shard, &key);
        if matches!(req.0, Request::Create { .. }) {
            let body = super::core::event::create_result(&key.1);
            reply(shard, &acc, Ok(Some(body)));
        } else {
            request(shard, key.0.clone(), acc, req);
        }
    } else {
        let e = PubsubError::app(C::NotAllowed, PubsubAppError::MaxNodesExceeded);
        reply(shard, &acc, Err(e));
    }
    for (acc, req) in queue {
        request(shard, key.0.clone(), acc, req);
    }
    shard.drain_to_route();
}

/// Queues `write` for `node` of `service` on the store pool (in order with the node's other
/// writes); a failure is logged, and fails the request being answered (`hooks::commit`).
pub(super) fn persist(
    shard: &mut Shard,
    service: &str,
    node: &str,
    write: impl FnOnce(&crate::store::Store, &str, &str) -> Result<(), crate::store::StoreError>
        + Send
        + 'static,
) {
    let (svc, name) = (service.to_owned(), node.to_owned());
    let key = store_key(service, node);
    let failed = commit::track(&mut shard.ext, key);
    HookCtx::new(shard.id, &mut shard.fx, &mut shard.ext).store(key, move |store| {
        let Err(e) = write(store, &svc, &name) else {
            return JobDone::default();
        };
        tracing::error!(service = svc, node = name, error = %e, "pubsub: store write failed");
        if let Some(failed) = failed {
            failed.store(true, std::sync::atomic::Ordering::Release);
        }
        JobDone {
            then: Some(Box::new(move |shard: &mut Shard| stale(shard, (svc, name)))),
            ..JobDone::default()
        }
    });
}

/// A write of node `key` failed: its live copy goes (quota released as for an eviction) and the
/// node is read from the store again at its next request, so what was refused is not served from
/// memory, and a node whose row was never written does not take later items with it.
fn stale(shard: &mut Shard, key: (String, String)) {
    if !matches!(nodes(shard).slots.get(&key), Some(Slot::Live(_))) {
        return;
    }
    cluster::drop_copy(shard, key.clone());
    nodes(shard).slots.insert(key, Slot::Stale);
}

/// Writes the node's metadata (configuration, affiliations, subscriptions) and its creator.
pub(super) fn save(shard: &mut Shard, service: &str, live: &Live) {
    let stored = Stored {
        creator: live.creator.clone(),
        meta: live.node.meta.clone(),
    };
    // Plain data (strings, numbers, enums, maps with string keys): serializing cannot fail.
    let json = serde_json::to_string(&stored).unwrap_or_default();
    persist(shard, service, &live.node.name, move |s, svc, node| {
        s.pubsub_node_save(svc, node, &json)
    });
}

/// `node` of `service` was deleted: its rows go, and its creator's quota is released.
pub(super) fn deleted(shard: &mut Shard, service: &str, live: &Live) {
    if nodes(shard).clustered {
        let k = object_key(service, &live.node.name);
        crate::sm::run_on(
            shard,
            home_shard_of(&k, shard.shards),
            Box::new(move |s| crate::cluster::objects::withdraw(s, &k)),
        );
    }
    persist(shard, service, &live.node.name, |s, svc, node| {
        s.pubsub_node_delete(svc, node)
    });
    let (svc, creator) = (service.to_owned(), live.creator.clone());
    shard.send_to_shard(
        home_shard_of(service, shard.shards),
        ShardMsg::Run(Box::new(move |s| {
            super::quota::on(s).release(&svc, &creator)
        })),
    );
}
