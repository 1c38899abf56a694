//! `ejabberd_s2s`: a remote server. Server-to-server connections are not built yet, so every remote
//! domain is unreachable and the sender gets `remote-server-not-found` (RFC 6120 §8.3.3.16).

use super::Routed;
use crate::hooks::Acc;
use crate::shard::Shard;
use crate::xmpp::StanzaErrorCondition;

/// Answers `remote-server-not-found`.
pub fn route(shard: &mut Shard, mut acc: Acc) -> Routed {
    super::took(shard, &mut acc, crate::config::RoutingModule::S2s);
    shard.bounce(&acc, StanzaErrorCondition::RemoteServerNotFound);
    Routed::Done
}
