//! `mongoose_router_external_localnode` and `mongoose_router_external`: external components (XEP-0114)
//! registered for the destination domain on this node / on any node of the cluster.
//!
//! A component may connect on any shard; its route is announced to every shard's table (see
//! `component::routes`), so both steps read the same per-shard table: petrel runs as a single node,
//! where "this node" and "the cluster" are the same. A configured component that is not connected
//! answers `service-unavailable`: its domain never falls through to s2s.

use super::Routed;
use crate::component::routes::{Lookup, Routes};
use crate::config::RoutingModule;
use crate::hooks::Acc;
use crate::shard::{ConnMsg, Shard};
use crate::xmpp::StanzaErrorCondition;

/// Components on this node (every shard of the process).
pub fn route_localnode(shard: &mut Shard, acc: Acc) -> Routed {
    route_with(shard, acc, RoutingModule::ExternalLocalnode)
}

/// Components anywhere in the cluster: the same table (petrel is a single node).
pub fn route_global(shard: &mut Shard, acc: Acc) -> Routed {
    route_with(shard, acc, RoutingModule::External)
}

fn route_with(shard: &mut Shard, mut acc: Acc, module: RoutingModule) -> Routed {
    let lookup = shard
        .ext
        .get::<Routes>()
        .map_or(Lookup::Unknown, |r| r.lookup(acc.to.domain()));
    match lookup {
        Lookup::Unknown => Routed::Pass(acc),
        Lookup::Connected(sref) => {
            super::took(shard, &mut acc, module);
            shard.send_to_session(sref, ConnMsg::Deliver(acc));
            Routed::Done
        }
        Lookup::Disconnected => {
            super::took(shard, &mut acc, module);
            shard.bounce(&acc, StanzaErrorCondition::ServiceUnavailable);
            Routed::Done
        }
    }
}
