//! The service's disco#items: the public rooms of every shard, gathered over the mesh
//! ([`crate::modules::gather`]); in a cluster, with those of the other nodes (their rooms'
//! announcements, [`crate::cluster::objects::listed_elsewhere`]).

use std::sync::Arc;

use crate::hooks::Acc;
use crate::modules::gather::{gather, with_children};
use crate::shard::Shard;
use crate::xml::Element;
use crate::xmpp::ns;

/// Asks every shard for its public rooms under the queried service; answers once all replied.
pub fn query(shard: &mut Shard, acc: Acc) {
    let service = acc.to.domain().to_owned();
    let collect = Arc::new(move |s: &mut Shard| {
        let mut rooms = super::home::public_rooms(s, &service);
        // In a cluster, the public rooms of the other nodes too (their announcements).
        rooms.extend(crate::cluster::objects::listed_elsewhere(s, &service));
        rooms
            .into_iter()
            .map(|(jid, name)| {
                Element::new("item", ns::DISCO_ITEMS)
                    .with_attr("jid", jid)
                    .with_attr("name", name)
            })
            .collect()
    });
    let finish = Box::new(|mut items: Vec<Element>| {
        items.sort_by(|a, b| (a.attr("jid"), a.attr("name")).cmp(&(b.attr("jid"), b.attr("name"))));
        with_children(Element::new("query", ns::DISCO_ITEMS), items)
    });
    gather(shard, acc, collect, finish);
}
