//! Archive ids: time-ordered and unique across shards without coordination — microseconds since the
//! Unix epoch in the high bits, the shard in the low 10 bits, strictly increasing per shard.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::shard::ShardId;

/// Bits for the shard number (1 024 shards).
const SHARD_BITS: u32 = 10;

/// A shard's id generator.
#[derive(Debug, Default)]
pub struct IdGen {
    last: i64,
}

impl IdGen {
    /// The next id on `shard` at `now`, and the archive time (µs) it stands for.
    pub fn next(&mut self, shard: ShardId, now: SystemTime) -> (i64, i64) {
        let us = now
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX >> SHARD_BITS))
            .unwrap_or(0);
        let shard = i64::from(shard.0) & ((1 << SHARD_BITS) - 1);
        let mut id = (us << SHARD_BITS) | shard;
        if id <= self.last {
            // Same microsecond (or the clock went back): step past the last id, same shard bits.
            id = ((self.last >> SHARD_BITS) + 1) << SHARD_BITS | shard;
        }
        self.last = id;
        (id, id >> SHARD_BITS)
    }
}

impl IdGen {
    /// Makes every later id larger than `id` (the largest stored one, at start).
    pub fn at_least(&mut self, id: i64) {
        self.last = self.last.max(id);
    }
}

/// The time (µs since the epoch) an id stands for.
pub fn micros_of(id: i64) -> i64 {
    id >> SHARD_BITS
}

/// An id as clients see it (decimal).
pub fn encode(id: i64) -> String {
    id.to_string()
}

/// [`encode`] appended to `out`, for callers that serialize in place (the stanza-id of every
/// archived message).
pub fn encode_into(id: i64, out: &mut Vec<u8>) {
    use std::io::Write;
    // Writing to a Vec cannot fail.
    let _ = write!(out, "{id}");
}

/// A client's id back; `None` when it is not one of ours.
pub fn decode(s: &str) -> Option<i64> {
    s.parse::<i64>().ok().filter(|i| *i > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn ids_increase_and_keep_their_shard_and_time() {
        let mut g = IdGen::default();
        let t = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let (a, ta) = g.next(ShardId(3), t);
        let (b, tb) = g.next(ShardId(3), t);
        let (c, _) = g.next(ShardId(3), t - Duration::from_secs(5));
        assert!(a < b && b < c);
        assert_eq!(a & 0x3ff, 3);
        assert_eq!(c & 0x3ff, 3);
        assert_eq!(ta, 1_800_000_000_000_000);
        assert_eq!(tb, ta + 1);
        assert_eq!(micros_of(a), ta);
        assert_eq!(decode(&encode(b)), Some(b));
        assert_eq!(decode("x1"), None);
        let (d, _) = IdGen::default().next(ShardId(4), t);
        assert_ne!(a, d);
    }
}
