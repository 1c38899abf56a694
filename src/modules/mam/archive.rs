//! Archiving on the route (stub: filled in by the next commit).

use super::MamOptions;
use crate::shard::Shard;

/// Registers the archive's hook handlers.
pub fn start(_shard: &mut Shard, _opts: &MamOptions) {}
