//! The per-shard caps state, without I/O: the cache of verified `ver`s (on every shard) and the
//! claims of the `ver`s being asked or that failed (on each `ver`'s home shard).

use std::collections::VecDeque;
use std::rc::Rc;
use std::time::{Duration, Instant};

use ahash::HashMap;

use super::ver::CapsInfo;

/// Verified `ver`s on one shard. Bounded by a number of entries and a byte weight; past either,
/// the entry learned the longest ago goes first (FIFO: a lookup costs no bookkeeping; a `ver`
/// evicted and seen again is simply asked again).
pub struct Cache {
    map: HashMap<String, Rc<CapsInfo>>,
    order: VecDeque<String>,
    bytes: usize,
    max_entries: usize,
    max_bytes: usize,
}

impl Cache {
    /// An empty cache holding at most `max_entries` entries and `max_bytes` bytes.
    pub fn new(max_entries: usize, max_bytes: usize) -> Cache {
        Cache {
            map: HashMap::default(),
            order: VecDeque::new(),
            bytes: 0,
            max_entries: max_entries.max(1),
            max_bytes,
        }
    }

    /// The info of `ver`.
    pub fn get(&self, ver: &str) -> Option<&Rc<CapsInfo>> {
        self.map.get(ver)
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Adds (or replaces) `ver`, evicting the oldest entries past the bounds.
    pub fn insert(&mut self, ver: String, info: Rc<CapsInfo>) {
        self.bytes += info.weight();
        match self.map.insert(ver.clone(), info) {
            Some(old) => self.bytes -= old.weight(),
            None => self.order.push_back(ver),
        }
        while self.map.len() > self.max_entries || self.bytes > self.max_bytes {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            if let Some(info) = self.map.remove(&old) {
                self.bytes -= info.weight();
            }
        }
    }
}

/// What a claim on a `ver`'s home shard says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Nobody asks about it: the claimant asks.
    Granted,
    /// Another query about it is under way.
    Busy,
    /// It failed recently (no answer, an error, a hash that does not verify): not asked again yet.
    Failed,
    /// Too many queries under way: not asked now.
    Full,
}

/// `ver`s being asked about and `ver`s that failed, on their home shard. Both bounded: past
/// `max` queries under way new claims are refused ([`Claim::Full`]); past `max` failures the
/// oldest is forgotten (it may be asked again).
pub struct Claims {
    asking: HashMap<String, Instant>,
    /// Per failed `ver`: until when, and the accounts whose clients failed it.
    failed: HashMap<String, Failed>,
    failed_order: VecDeque<(Instant, String)>,
    max: usize,
    /// How long a claim lasts without news (the query's timeout plus a margin).
    claim_ttl: Duration,
    /// How long a failed `ver` is not asked again.
    failed_ttl: Duration,
}

/// A `ver` that failed recently.
struct Failed {
    until: Instant,
    /// Accounts (bare JIDs) whose clients failed it: they are not asked again, others are, up to
    /// [`FAILING_ACCOUNTS`] of them.
    by: Vec<String>,
}

/// Distinct accounts whose clients may fail a `ver` before nobody is asked about it until the
/// failure expires: one client answering wrongly (or a client that went away before answering)
/// must not keep everyone else's notifications off for `retry_after`, and a `ver` that is wrong
/// everywhere is still asked only a few times.
pub const FAILING_ACCOUNTS: usize = 3;

impl Claims {
    /// Empty claims (see the type's doc for `max`).
    pub fn new(max: usize, claim_ttl: Duration, failed_ttl: Duration) -> Claims {
        Claims {
            asking: HashMap::default(),
            failed: HashMap::default(),
            failed_order: VecDeque::new(),
            max: max.max(1),
            claim_ttl,
            failed_ttl,
        }
    }

    /// A client of `account` (a bare JID) wants `ver` asked about at `now`.
    pub fn claim(&mut self, ver: &str, account: &str, now: Instant) -> Claim {
        if let Some(f) = self.failed.get(ver) {
            if f.until > now {
                if f.by.len() >= FAILING_ACCOUNTS || f.by.iter().any(|a| a == account) {
                    return Claim::Failed;
                }
            } else {
                self.failed.remove(ver);
            }
        }
        if let Some(&until) = self.asking.get(ver) {
            if until > now {
                return Claim::Busy;
            }
        }
        if self.asking.len() >= self.max {
            // Claims whose answer never came back hold their slot until they expire.
            self.asking.retain(|_, until| *until > now);
            if self.asking.len() >= self.max {
                return Claim::Full;
            }
        }
        self.asking.insert(ver.to_owned(), now + self.claim_ttl);
        Claim::Granted
    }

    /// The query about `ver` succeeded (or was given up without failing).
    pub fn done(&mut self, ver: &str) {
        self.asking.remove(ver);
    }

    /// The query about `ver` to a client of `account` failed at `now`.
    pub fn failed(&mut self, ver: &str, account: &str, now: Instant) {
        self.asking.remove(ver);
        let until = now + self.failed_ttl;
        let f = self.failed.entry(ver.to_owned()).or_insert(Failed {
            until,
            by: Vec::new(),
        });
        f.until = until;
        if f.by.len() < FAILING_ACCOUNTS && !f.by.iter().any(|a| a == account) {
            f.by.push(account.to_owned());
        }
        // A stale pair left by an earlier failure of `ver` is skipped when it reaches the front.
        self.failed_order.push_back((until, ver.to_owned()));
        // Forget expired failures, and the oldest past the bound.
        while let Some((until, v)) = self.failed_order.front() {
            if *until > now && self.failed.len() <= self.max {
                break;
            }
            if self.failed.get(v).map(|f| &f.until) == Some(until) {
                self.failed.remove(v);
            }
            self.failed_order.pop_front();
        }
    }

    /// Number of `ver`s that failed recently (for tests).
    pub fn failed_len(&self) -> usize {
        self.failed.len()
    }
}
