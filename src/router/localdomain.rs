//! `mongoose_router_localdomain`: a local route is registered for the destination domain -> deliver locally.

use super::Routed;
use crate::hooks::Acc;
use crate::shard::Shard;

/// Delivers locally when the domain has a registered local route.
pub fn route(shard: &mut Shard, mut acc: Acc) -> Routed {
    if shard.local_routes.contains(acc.to.domain()) {
        super::took(shard, &mut acc, crate::config::RoutingModule::Localdomain);
        crate::local::deliver(shard, acc);
        Routed::Done
    } else {
        Routed::Pass(acc)
    }
}
