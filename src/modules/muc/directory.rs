//! The service's disco#items: the public rooms of every shard, gathered over the mesh (rooms live
//! on their home shards; a list query is rare, a shared registry would be touched at every change).

use ahash::HashMap;

use crate::hooks::Acc;
use crate::local::result_reply;
use crate::shard::{Shard, ShardId, ShardMsg};
use crate::xml::Element;
use crate::xmpp::ns;

/// Queries waiting for the other shards' answers, by number.
#[derive(Default)]
struct Pending {
    next: u64,
    queries: HashMap<u64, Query>,
}

struct Query {
    acc: Acc,
    remaining: usize,
    items: Vec<(String, String)>,
}

/// Asks every shard for its public rooms under the queried service; answers once all replied.
pub fn query(shard: &mut Shard, acc: Acc) {
    let service = acc.to.domain().to_owned();
    let pending = shard.ext.get_or_default::<Pending>();
    let id = pending.next;
    pending.next += 1;
    pending.queries.insert(
        id,
        Query {
            acc,
            remaining: shard.shards,
            items: Vec::new(),
        },
    );
    let me = shard.id;
    for to in 0..shard.shards {
        let service = service.clone();
        shard.send_to_shard(
            ShardId(to as u16),
            ShardMsg::Run(Box::new(move |s| {
                let items = super::home::public_rooms(s, &service);
                s.send_to_shard(me, ShardMsg::Run(Box::new(move |s| answer(s, id, items))));
            })),
        );
    }
}

/// One shard's rooms for query `id`; the last one sends the result.
fn answer(shard: &mut Shard, id: u64, items: Vec<(String, String)>) {
    let pending = shard.ext.get_or_default::<Pending>();
    let Some(q) = pending.queries.get_mut(&id) else {
        return;
    };
    q.items.extend(items);
    q.remaining -= 1;
    if q.remaining > 0 {
        return;
    }
    let Some(mut q) = pending.queries.remove(&id) else {
        return;
    };
    q.items.sort();
    let mut list = Element::new("query", ns::DISCO_ITEMS);
    for (jid, name) in q.items {
        list = list.with_child(
            Element::new("item", ns::DISCO_ITEMS)
                .with_attr("jid", jid)
                .with_attr("name", name),
        );
    }
    let reply = result_reply(&q.acc, Some(list), shard.id);
    shard.fx.to_route.push(reply);
    shard.drain_to_route();
}
