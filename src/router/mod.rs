//! Step 3 of the seed: `ejabberd_router:route/3`. The stanza passes through the chain of routing modules
//! configured in `routing_modules` (MongooseIM's `xmpp_router` behaviour): each module's `filter` may
//! drop it, then its `route` may handle it (ending the chain) or pass it on.
//!
//! The chain is a list of enum values dispatched by `match`: no dynamic dispatch on the hot path.

mod dynamic_domains;
mod external;
mod global;
mod localdomain;
mod s2s;

use crate::config::RoutingModule;
use crate::hooks::Acc;
use crate::shard::Shard;
use crate::xmpp::StanzaErrorCondition;

/// What a routing module's `route` did with the stanza.
pub enum Routed {
    /// Handled (delivered, queued or answered): the chain ends.
    Done,
    /// Not for this module: the next one gets it.
    Pass(Acc),
}

/// Routes `acc` through the configured chain.
pub fn route(shard: &mut Shard, acc: Acc) {
    let modules = shard.routing_modules.clone();
    let mut acc = acc;
    for &module in modules.iter() {
        acc = match filter(shard, module, acc) {
            Some(acc) => acc,
            None => return,
        };
        acc = match route_with(shard, module, acc) {
            Routed::Done => return,
            Routed::Pass(acc) => acc,
        };
    }
    // No module took it: the destination is not reachable from here.
    tracing::debug!(
        to = acc.to.as_str(),
        "no routing module accepted the stanza"
    );
    shard.bounce(&acc, StanzaErrorCondition::RemoteServerNotFound);
}

fn filter(shard: &mut Shard, module: RoutingModule, acc: Acc) -> Option<Acc> {
    match module {
        RoutingModule::Global => global::filter(shard, acc),
        // The other modules have nothing to filter (MongooseIM's are identity filters too).
        _ => Some(acc),
    }
}

fn route_with(shard: &mut Shard, module: RoutingModule, acc: Acc) -> Routed {
    match module {
        RoutingModule::Global => Routed::Pass(acc),
        RoutingModule::Localdomain => localdomain::route(shard, acc),
        RoutingModule::ExternalLocalnode => external::route_localnode(shard, acc),
        RoutingModule::External => external::route_global(shard, acc),
        RoutingModule::DynamicDomains => dynamic_domains::route(shard, acc),
        RoutingModule::S2s => s2s::route(shard, acc),
    }
}
