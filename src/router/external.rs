//! `mongoose_router_external_localnode` and `mongoose_router_external`: external components (XEP-0114)
//! registered for the destination domain on this node / on any node of the cluster.
//!
//! petrel has no component listener yet, so no component is ever registered and both modules pass
//! every stanza on; they are in the chain so that its order and configuration are MongooseIM's.

use super::Routed;
use crate::hooks::Acc;
use crate::shard::Shard;

/// Components on this node: none registered yet.
pub fn route_localnode(_shard: &mut Shard, acc: Acc) -> Routed {
    Routed::Pass(acc)
}

/// Components anywhere in the cluster: none registered yet (single node).
pub fn route_global(_shard: &mut Shard, acc: Acc) -> Routed {
    Routed::Pass(acc)
}
