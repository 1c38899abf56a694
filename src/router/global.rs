//! `mongoose_router_global`: runs the global `filter_packet` hook; a handler that stops it drops the stanza.

use crate::hooks::{Acc, HookResult};
use crate::shard::Shard;

/// Runs `filter_packet`; `None` when a handler stopped the route.
pub fn filter(shard: &mut Shard, mut acc: Acc) -> Option<Acc> {
    match shard.run_hook(|h| &h.filter_packet, &mut acc) {
        HookResult::Continue => Some(acc),
        HookResult::Stop => None,
    }
}
