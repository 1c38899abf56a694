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

/// A question from shard `by` about where a recipient's session lives (`sm::locations`): `id`
/// tells its answer from a late answer to an earlier question about the same recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ask {
    /// The shard that asks.
    pub by: ShardId,
    /// Its number for this question (never 0).
    pub id: u32,
}

/// Where a session lives: the shard that accepted its connection and the connection there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionRef {
    /// Shard of the connection.
    pub shard: ShardId,
    /// Connection on that shard.
    pub conn: ConnId,
}

/// Shard indexes from here up name another node of a cluster, not a local shard (see
/// [`SessionRef::remote`]): local shard counts stay far below it.
pub const REMOTE_SHARD: u16 = 0x8000;

impl SessionRef {
    /// A session on another node of a cluster: `slot` is that node's (incarnation's) number in
    /// this process's member table, `shard` its shard there, `serial` a number the home shard gives
    /// each remote session so that two of them never share a ref. Only home shards hold such refs,
    /// in their session table; what is sent to one goes to the shard's remote session handler.
    pub fn remote(slot: u16, shard: u16, serial: u64) -> SessionRef {
        SessionRef {
            shard: ShardId(REMOTE_SHARD | (slot & !REMOTE_SHARD)),
            conn: ConnId(((shard as u64) << 48) | (serial & 0xffff_ffff_ffff)),
        }
    }

    /// True for a session on another node ([`SessionRef::remote`]).
    pub fn is_remote(&self) -> bool {
        self.shard.0 & REMOTE_SHARD != 0
    }

    /// The member slot and shard of a remote session.
    pub fn remote_parts(&self) -> Option<(u16, u16)> {
        self.is_remote()
            .then_some((self.shard.0 & !REMOTE_SHARD, (self.conn.0 >> 48) as u16))
    }
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
    home_shard_by_hash(home_hash(bare), shards)
}

/// The hash of a bare JID that chooses its home shard (also a key for per-user tables).
pub fn home_hash(bare: &str) -> u64 {
    home_hasher().hash_one(bare)
}

/// The home shard of the bare JID whose [`home_hash`] is `h`.
pub fn home_shard_by_hash(h: u64, shards: usize) -> ShardId {
    if shards <= 1 {
        return ShardId(0);
    }
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
