//! The service's packet handler: runs on the shard where a stanza to `conference.example.org` (or a
//! room under it) is routed.

use super::room::occupant_id::NS_OCCUPANT_ID;
use crate::hooks::Acc;
use crate::local::result_reply;
use crate::shard::{home_shard_of, Shard, ShardMsg};
use crate::xml::{Element, StanzaType};
use crate::xmpp::{ns, StanzaErrorCondition};

/// Routes a stanza addressed to the service or to a room.
pub fn route(shard: &mut Shard, acc: Acc) {
    if acc.to.node().is_none() {
        to_service(shard, acc);
        return;
    }
    let home = home_shard_of(acc.to.bare_str(), shard.shards);
    if home == shard.id {
        super::home::deliver(shard, acc);
    } else {
        shard.send_to_shard(
            home,
            ShardMsg::Run(Box::new(move |s| super::home::deliver(s, acc))),
        );
    }
}

/// Stanzas to the service itself: disco#info, disco#items (the public rooms of every shard), ping
/// (XEP-0199 §4.2: a client checking the service is reachable, as Prosody's answers).
fn to_service(shard: &mut Shard, acc: Acc) {
    let Some(payload) = crate::local::service_iq(shard, &acc) else {
        return;
    };
    let ty = acc.ty();
    match (ty, payload.ns.as_str(), payload.attr("node")) {
        (StanzaType::Get, ns::DISCO_INFO, None) => {
            let mut q = Element::new("query", ns::DISCO_INFO).with_child(
                Element::new("identity", ns::DISCO_INFO)
                    .with_attr("category", "conference")
                    .with_attr("type", "text")
                    .with_attr("name", "Chatrooms"),
            );
            // XEP-0421 §4: every room gives occupant ids when the service has its secret.
            let ids = super::home::gives_occupant_ids(shard).then_some(NS_OCCUPANT_ID);
            let features = [
                ns::DISCO_INFO,
                ns::DISCO_ITEMS,
                super::room::types::NS_MUC,
                ns::PING,
            ];
            for f in features.into_iter().chain(ids) {
                q = q.with_child(Element::new("feature", ns::DISCO_INFO).with_attr("var", f));
            }
            let reply = result_reply(&acc, Some(q), shard.id);
            shard.fx.to_route.push(reply);
        }
        (StanzaType::Get, ns::DISCO_ITEMS, None) => super::directory::query(shard, acc),
        (StanzaType::Get, ns::PING, _) => {
            let reply = result_reply(&acc, None, shard.id);
            shard.fx.to_route.push(reply);
        }
        (StanzaType::Get, ns::DISCO_INFO | ns::DISCO_ITEMS, Some(_)) => {
            shard.bounce(&acc, StanzaErrorCondition::ItemNotFound)
        }
        _ => shard.bounce(&acc, StanzaErrorCondition::ServiceUnavailable),
    }
}
