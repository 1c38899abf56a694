//! How deep each shard's io_uring rings are.
//!
//! Depth decides more than how many requests wait for the kernel. The kernel files every armed
//! poll (one per idle socket) in a per-ring hash table of `clamp(ilog2(cq entries) - 5, 1, 8)`
//! bits, and glommio cancels a timeout on its main ring at every turn of its loop: the cancel
//! walks one bucket of that table. At depth 64 (128 completion entries, 4 buckets) a shard with
//! 2 000 sockets walks about 500 entries per turn (`io_poll_find`, 9 % of a cluster node's CPU at
//! 10 000 msg/s, perf); at depth 4096 (256 buckets) about 8. Rings are locked memory, though,
//! counted against `RLIMIT_MEMLOCK` unless the process has `CAP_IPC_LOCK`, so the default is the
//! deepest that fits the limit.

/// The deepest default: 8 192 completion entries, the kernel's largest poll table (256 buckets).
const DEEPEST: usize = 4096;
/// The shallowest default: 64 shards at this depth start under an 8 MiB memlock limit (measured).
const SHALLOWEST: usize = 64;
/// Locked memory glommio takes per shard before the rings of later shards exist: it registers its
/// io memory with each of its three rings, and each registration pins a whole 2 MiB huge page
/// (VmPin is 12 MiB for two shards). A shard whose registration does not fit skips it with a
/// warning (network I/O does not use it); one whose rings do not fit fails to start.
const REGISTERED_PER_SHARD: usize = 3 * (2 << 20);
/// `CAP_IPC_LOCK`'s bit in the capability sets (linux/capability.h).
const CAP_IPC_LOCK: u32 = 14;

/// The ring depth for `shards` shards: `configured` when set, else the deepest power of two up to
/// 4096 whose rings fit the memlock limit beside glommio's buffer registrations, and at least 64.
pub fn ring_depth(configured: Option<usize>, shards: usize) -> usize {
    if let Some(d) = configured {
        return d;
    }
    let budget = if has_cap_ipc_lock() {
        usize::MAX
    } else {
        raise_memlock()
    };
    depth_for(budget, shards)
}

/// The deepest power of two in `SHALLOWEST..=DEEPEST` whose rings for `shards` fit in `budget`
/// bytes of locked memory beside the shards' buffer registrations.
fn depth_for(budget: usize, shards: usize) -> usize {
    let shards = shards.max(1);
    let left = budget.saturating_sub(REGISTERED_PER_SHARD.saturating_mul(shards));
    let mut d = DEEPEST;
    while d > SHALLOWEST && locked_per_shard(d).saturating_mul(shards) > left {
        d /= 2;
    }
    d
}

/// Locked bytes of one shard's rings at depth `d`, an upper bound: three rings (glommio's main,
/// latency and poll), each with `d` 64-byte submission entries in their own pages, and `2 d`
/// 16-byte completion entries plus a 4-byte index per submission entry after a header, in pages.
/// (Measured on Linux 6.18: about 512 KiB per shard at 4096, against 1.2 MiB here.)
fn locked_per_shard(d: usize) -> usize {
    const PAGE: usize = 4096;
    let pages = |bytes: usize| bytes.div_ceil(PAGE) * PAGE;
    3 * (pages(64 * d) + pages(64 + 2 * 16 * d + 4 * d))
}

/// Raises the soft memlock limit to the hard one (as a unit file's `LimitMEMLOCK` would) and
/// returns it in bytes; `usize::MAX` when unlimited.
fn raise_memlock() -> usize {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into `lim`, a valid, exclusively borrowed struct.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) } != 0 {
        return 0;
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit only reads `raised`; raising the soft limit up to the hard one needs
        // no privilege.
        if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &raised) } == 0 {
            lim.rlim_cur = lim.rlim_max;
        }
    }
    if lim.rlim_cur == libc::RLIM_INFINITY {
        usize::MAX
    } else {
        usize::try_from(lim.rlim_cur).unwrap_or(usize::MAX)
    }
}

/// True when the process may lock memory without limit (its effective capabilities, from
/// `/proc/self/status`).
fn has_cap_ipc_lock() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| cap_eff_has(&s, CAP_IPC_LOCK))
}

/// True when the `CapEff:` line of a `/proc/PID/status` text has bit `cap`.
fn cap_eff_has(status: &str, cap: u32) -> bool {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|bits| bits & (1 << cap) != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_depth_fits_the_memlock_limit_beside_the_registrations() {
        const MIB: usize = 1 << 20;
        // Unlimited (CAP_IPC_LOCK, or LimitMEMLOCK=infinity): the deepest.
        assert_eq!(depth_for(usize::MAX, 64), 4096);
        // The common 8 MiB limit: one shard's registrations leave room for the deepest rings;
        // from two shards on they take it all and the rings stay as shallow as before.
        assert_eq!(depth_for(8 * MIB, 1), 4096);
        assert_eq!(depth_for(8 * MIB, 2), 64);
        // A raised limit: 56 MiB for 8 shards leaves 1 MiB per shard for rings.
        assert_eq!(depth_for(56 * MIB, 8), 2048);
        for (limit, shards) in [(64, 1), (64, 4), (64, 8), (256, 16), (1024, 64)] {
            let (budget, left) = (limit * MIB, (limit - 6 * shards) * MIB);
            let d = depth_for(budget, shards);
            assert!(d.is_power_of_two() && d >= 64);
            assert!(shards * locked_per_shard(d) <= left, "{shards} shards: {d}");
            assert!(shards * locked_per_shard(2 * d) > left || d == 4096);
        }
        // Below what even the shallowest needs: the shallowest, as before.
        assert_eq!(depth_for(0, 4), 64);
    }

    #[test]
    fn cap_ipc_lock_is_read_from_the_effective_set() {
        let with = "Name:\tpetrel\nCapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\n";
        let without = "CapEff:\t0000000000000000\n";
        let only_bit_14 = "CapEff:\t0000000000004000\n";
        assert!(cap_eff_has(with, CAP_IPC_LOCK));
        assert!(!cap_eff_has(without, CAP_IPC_LOCK));
        assert!(cap_eff_has(only_bit_14, CAP_IPC_LOCK));
        assert!(!cap_eff_has("no such line", CAP_IPC_LOCK));
    }
}
