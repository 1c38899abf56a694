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
use crate::explain::Outcome;
use crate::hooks::Acc;
use crate::shard::Shard;
use crate::xmpp::StanzaErrorCondition;

/// Stage name of the router chain's steps in a `route explain` trace.
pub const STAGE: &str = "router";

/// Records that routing module `module` took `acc` (for `route explain`; free when not traced).
#[inline]
fn took(shard: &Shard, acc: &mut Acc, module: RoutingModule) {
    acc.note_handler(shard.id, STAGE, module.as_str(), Outcome::Took);
}

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
        // A module that takes the stanza records it (`took`) before handing it on.
        acc = match route_with(shard, module, acc) {
            Routed::Done => return,
            Routed::Pass(mut acc) => {
                acc.note_handler(shard.id, STAGE, module.as_str(), Outcome::Pass);
                acc
            }
        };
    }
    // No module took it: the destination is not reachable from here.
    tracing::debug!(
        to = acc.to.as_str(),
        "no routing module accepted the stanza"
    );
    acc.note(shard.id, STAGE, Outcome::Dropped, |_| {
        Some("no routing module took it".to_owned())
    });
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
