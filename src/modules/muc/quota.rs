//! Rooms per user: each user's count of rooms they created that still exist, kept on the user's
//! home shard (room creation is rare; the rooms themselves live on many shards).

use ahash::HashMap;

use crate::jid::BareJid;
use crate::shard::Shard;

#[derive(Default)]
struct Quota(HashMap<BareJid, u32>);

/// Counts one more room for `owner` unless they already have `max` (on `owner`'s home shard).
pub fn reserve(shard: &mut Shard, owner: &BareJid, max: u32) -> bool {
    let n = shard
        .ext
        .get_or_default::<Quota>()
        .0
        .entry(owner.clone())
        .or_default();
    if *n >= max {
        return false;
    }
    *n += 1;
    true
}

/// Counts a room loaded from the store, whatever the limit (on `owner`'s home shard).
pub fn restored(shard: &mut Shard, owner: &BareJid) {
    *shard
        .ext
        .get_or_default::<Quota>()
        .0
        .entry(owner.clone())
        .or_default() += 1;
}

/// `owner`'s account was deleted: its count goes (on `owner`'s home shard), or whoever registers
/// the name next could create no room.
pub fn forget(shard: &mut Shard, owner: &BareJid) {
    shard.ext.get_or_default::<Quota>().0.remove(owner);
}

/// One of `owner`'s rooms is gone (on `owner`'s home shard).
pub fn release(shard: &mut Shard, owner: &BareJid) {
    let q = &mut shard.ext.get_or_default::<Quota>().0;
    if let Some(n) = q.get_mut(owner) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            q.remove(owner);
        }
    }
}
