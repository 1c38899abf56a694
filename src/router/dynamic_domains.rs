//! `mongoose_router_dynamic_domains`: the destination domain is hosted here but has no local route yet:
//! register the route lazily (so `localdomain` takes the next stanza) and deliver locally.

use super::Routed;
use crate::hooks::Acc;
use crate::shard::Shard;

/// Registers the local route on first use of a hosted domain, then delivers.
pub fn route(shard: &mut Shard, mut acc: Acc) -> Routed {
    if shard.is_hosted(acc.to.domain()) {
        shard.local_routes.insert(acc.to.domain().to_owned());
        super::took(
            shard,
            &mut acc,
            crate::config::RoutingModule::DynamicDomains,
        );
        crate::local::deliver(shard, acc);
        Routed::Done
    } else {
        Routed::Pass(acc)
    }
}
