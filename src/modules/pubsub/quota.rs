//! Node counts of a service, per owner and in total, kept on the home shard of the service's
//! domain (node creation is rare; the nodes themselves live on many shards).

use ahash::HashMap;

use crate::shard::Shard;

/// Counts of one service.
#[derive(Debug, Default)]
struct Counts {
    total: u32,
    per_owner: HashMap<String, u32>,
}

/// Node counts by service domain.
#[derive(Debug, Default)]
pub(super) struct Quota(HashMap<String, Counts>);

impl Quota {
    /// Counts one more node of `owner` unless they have `per_owner` or the service `total`.
    pub fn reserve(&mut self, service: &str, owner: &str, per_owner: u32, total: u32) -> bool {
        let c = self.0.entry(service.to_owned()).or_default();
        let mine = c.per_owner.get(owner).copied().unwrap_or(0);
        if mine >= per_owner || c.total >= total {
            return false;
        }
        c.total += 1;
        *c.per_owner.entry(owner.to_owned()).or_default() += 1;
        true
    }

    /// Counts a node read from the store, whatever the limits.
    pub fn restored(&mut self, service: &str, owner: &str) {
        let c = self.0.entry(service.to_owned()).or_default();
        c.total += 1;
        *c.per_owner.entry(owner.to_owned()).or_default() += 1;
    }

    /// One node of `owner` is gone.
    pub fn release(&mut self, service: &str, owner: &str) {
        let Some(c) = self.0.get_mut(service) else {
            return;
        };
        c.total = c.total.saturating_sub(1);
        if let Some(n) = c.per_owner.get_mut(owner) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                c.per_owner.remove(owner);
            }
        }
    }
}

/// The quota on this shard (the home shard of the services it is asked about).
pub(super) fn on(shard: &mut Shard) -> &mut Quota {
    shard.ext.get_or_default::<Quota>()
}

#[cfg(test)]
mod tests {
    use super::Quota;

    #[test]
    fn per_owner_and_total_limits() {
        let mut q = Quota::default();
        assert!(q.reserve("ps.x", "a@x", 2, 3));
        assert!(q.reserve("ps.x", "a@x", 2, 3));
        assert!(!q.reserve("ps.x", "a@x", 2, 3), "per owner");
        assert!(q.reserve("ps.x", "b@x", 2, 3));
        assert!(!q.reserve("ps.x", "c@x", 2, 3), "total");
        assert!(q.reserve("ps.y", "c@x", 2, 3), "another service");
        q.release("ps.x", "a@x");
        assert!(q.reserve("ps.x", "c@x", 2, 3));
        q.restored("ps.x", "d@x");
        assert!(!q.reserve("ps.x", "d@x", 1, 10));
    }
}
