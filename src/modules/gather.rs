//! IQ answers built from what every shard holds (the public rooms of MUC, the nodes of the pubsub
//! service, a user's subscriptions across nodes): rooms and nodes live on their home shards, such
//! lists are rare, so each shard is asked over the mesh instead of keeping a shared registry.

use std::sync::Arc;

use ahash::HashMap;

use crate::hooks::Acc;
use crate::local::result_reply;
use crate::shard::{Shard, ShardId, ShardMsg};
use crate::xml::Element;

/// What one shard contributes (run on every shard).
pub type Collect = Arc<dyn Fn(&mut Shard) -> Vec<Element> + Send + Sync>;
/// Builds the answer's payload from every shard's elements (run where the query came in).
pub type Finish = Box<dyn FnOnce(Vec<Element>) -> Element>;

/// Queries waiting for the other shards, by number: each is answered once every shard replied
/// (the mesh delivers every `Run`), and at most [`MAX_PENDING`] wait at once.
#[derive(Default)]
struct Pending {
    next: u64,
    queries: HashMap<u64, Query>,
}

struct Query {
    acc: Acc,
    remaining: usize,
    got: Vec<Element>,
    finish: Finish,
}

/// Queries a shard lets wait for the others at once; past it a new one is answered
/// `<resource-constraint/>` (type wait) at once, so a client asking in a loop cannot grow them.
pub const MAX_PENDING: usize = 64;

/// Asks every shard for `collect`'s elements and answers `acc` with `finish` of them all.
pub fn gather(shard: &mut Shard, acc: Acc, collect: Collect, finish: Finish) {
    if shard
        .ext
        .get::<Pending>()
        .is_some_and(|p| p.queries.len() >= MAX_PENDING)
    {
        shard.bounce(&acc, crate::xmpp::StanzaErrorCondition::ResourceConstraint);
        return;
    }
    let pending = shard.ext.get_or_default::<Pending>();
    let id = pending.next;
    pending.next += 1;
    pending.queries.insert(
        id,
        Query {
            acc,
            remaining: shard.shards,
            got: Vec::new(),
            finish,
        },
    );
    let me = shard.id;
    for to in 0..shard.shards {
        let collect = collect.clone();
        shard.send_to_shard(
            ShardId(to as u16),
            ShardMsg::Run(Box::new(move |s| {
                let got = collect(s);
                s.send_to_shard(me, ShardMsg::Run(Box::new(move |s| answer(s, id, got))));
            })),
        );
    }
}

/// One shard's elements for query `id`; the last one sends the result.
fn answer(shard: &mut Shard, id: u64, got: Vec<Element>) {
    let pending = shard.ext.get_or_default::<Pending>();
    let Some(q) = pending.queries.get_mut(&id) else {
        return;
    };
    q.got.extend(got);
    q.remaining -= 1;
    if q.remaining > 0 {
        return;
    }
    let Some(q) = pending.queries.remove(&id) else {
        return;
    };
    let body = (q.finish)(q.got);
    let reply = result_reply(&q.acc, Some(body), shard.id);
    shard.fx.to_route.push(reply);
    shard.drain_to_route();
}

/// `parent` with `children` appended (the usual [`Finish`]).
pub fn with_children(parent: Element, children: Vec<Element>) -> Element {
    children.into_iter().fold(parent, Element::with_child)
}
