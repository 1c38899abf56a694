//! Identifiers of shards, connections and sessions, and the home-shard function.

use crate::jid::BareJid;

/// Index of a shard (one glommio executor pinned to one CPU).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShardId(pub u16);

impl ShardId {
    /// The shard index as a `usize`, for indexing per-shard tables.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// A connection, unique within its shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnId(pub u64);

/// Where a session lives: the shard that accepted its connection and the connection there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionRef {
    /// Shard of the connection.
    pub shard: ShardId,
    /// Connection on that shard.
    pub conn: ConnId,
}

/// One fixed seed for every shard: the home shard of a JID must be the same wherever it is computed.
fn home_hasher() -> ahash::RandomState {
    ahash::RandomState::with_seeds(
        0x7065_7472_656c_0001,
        0x7065_7472_656c_0002,
        0x7065_7472_656c_0003,
        0x7065_7472_656c_0004,
    )
}

/// The shard that owns `jid`'s sessions: seeded ahash of the bare JID modulo the shard count.
pub fn home_shard(jid: &BareJid, shards: usize) -> ShardId {
    home_shard_of(jid.as_str(), shards)
}

/// [`home_shard`] of a bare JID given as a string (e.g. [`crate::jid::Jid::bare_str`]).
pub fn home_shard_of(bare: &str, shards: usize) -> ShardId {
    if shards <= 1 {
        return ShardId(0);
    }
    let h = home_hasher().hash_one(bare);
    ShardId((h % shards as u64) as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn home_shard_is_stable_and_spreads() {
        let mut seen = [0usize; 4];
        for i in 0..1000 {
            let jid = BareJid::parse(&format!("user{i}@localhost")).unwrap();
            let a = home_shard(&jid, 4);
            // Same answer from another thread: one seed for all.
            let b = std::thread::spawn(move || home_shard(&jid, 4))
                .join()
                .unwrap();
            assert_eq!(a, b);
            seen[a.index()] += 1;
        }
        assert!(seen.iter().all(|&n| n > 150), "uneven spread: {seen:?}");
    }
}
