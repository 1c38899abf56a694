//! Login failure throttling, after ejabberd's `mod_fail2ban`: a sans-IO policy counting failed SASL
//! attempts per source address and per account. Before each attempt the caller asks [`Throttle::check`]
//! whether it may be answered now, only later (a delay that doubles with the failures), or not at all
//! (the address is banned); afterwards it reports the outcome. Time is passed in, so tests drive it.
//!
//! - Per address: past `free_failures` failures within `window`, each attempt waits `delay` after
//!   the latest failure, doubling per failure, up to `max_delay`; `max_failures` failures within the
//!   window ban the address for `ban_time`. IPv6 addresses count per `ipv6_prefix` network.
//! - Per account: failures from all addresses delay the account's attempts the same way after
//!   `account_free_failures`, capped at `account_max_delay`, and never ban: an attack on an account
//!   costs its owner, logging in from elsewhere, at most that cap.
//! - A success changes nothing: it must not wipe an address's count (an attacker owning an account
//!   could log in to it between guesses) nor an account's (the owner logging in would lift the delay
//!   off an attack); counts end with their window.
//! - Attempts in flight: failures are counted once answered, so without a bound a burst of
//!   attempts over many connections would all be checked before the first failure is counted, far
//!   past `max_failures`. An address may have at most `max_failures` less its live failures
//!   attempts between check and outcome ([`Throttle::admit`] hands out an [`InFlight`] for each);
//!   past that an attempt waits for a place ([`PlaceFreed`], woken when one comes free or a ban
//!   begins, then asks again), counting nothing. So an address gets at most `max_failures`
//!   answers per ban, in a row or in parallel.
//! - Memory: at most `max_tracked` addresses and as many accounts (keyed by a 64-bit keyed hash of
//!   the name); when a table is full the entry that failed least recently is dropped.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use event_listener::{Event, EventListener};

use hashlink::LruCache;

use crate::config::{IpNet, ThrottleConfig};

/// What to do with an attempt, asked before it is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Answer it as soon as it is checked.
    Allow,
    /// Answer it, but not before this time.
    Delay(Instant),
    /// Refuse it: the address is banned until this time.
    Banned(Instant),
}

/// A ban that a failure has just started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ban {
    /// The banned network (one address for IPv4).
    pub net: IpNet,
    /// Failures counted in the window.
    pub failures: u32,
    /// When it ends.
    pub until: Instant,
}

/// An attempt between its check and its outcome, counted against its address's budget until
/// dropped (lock-free: the shard holding it never takes the throttle's lock).
#[derive(Debug, Default)]
pub struct InFlight(Option<Arc<Places>>);

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(p) = &self.0 {
            p.taken.fetch_sub(1, Ordering::AcqRel);
            // One more waiter, whether or not earlier ones took their turn yet.
            p.freed.notify_additional(1);
        }
    }
}

/// An address's attempts in flight, and the attempts waiting for one of them to end.
#[derive(Debug, Default)]
struct Places {
    /// Attempts between check and outcome.
    taken: AtomicU32,
    /// Told when one ends or the address is banned.
    freed: Event,
}

/// Resolves once a place among an address's attempts in flight may have come free, or the
/// address was banned: the attempt asks again (another may have taken the place first).
#[derive(Debug)]
pub struct PlaceFreed(EventListener);

impl Future for PlaceFreed {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.0).poll(cx)
    }
}

/// Failures of one address or account.
#[derive(Debug, Clone)]
struct Entry {
    /// Failures since `since`.
    failures: u32,
    /// Start of the counting window.
    since: Instant,
    /// The latest failure.
    last: Instant,
    /// Set once `max_failures` is reached (addresses only).
    banned_until: Option<Instant>,
    /// Attempts checked whose outcome is not known yet (addresses only).
    in_flight: Arc<Places>,
}

impl Entry {
    fn new(now: Instant) -> Entry {
        Entry {
            failures: 0,
            since: now,
            last: now,
            banned_until: None,
            in_flight: Arc::default(),
        }
    }

    /// Failures still counted at `now` (none once the window is over).
    fn live(&self, now: Instant, window: Duration) -> u32 {
        if now.saturating_duration_since(self.since) >= window {
            0
        } else {
            self.failures
        }
    }

    /// When the next attempt may be answered: `delay_after` the live failures, from the latest one.
    fn not_before(&self, now: Instant, cfg: &ThrottleConfig, free: u32, cap: Duration) -> Instant {
        self.last + delay_after(self.live(now, cfg.window), free, cfg.delay, cap)
    }

    fn fail(&mut self, now: Instant, window: Duration) {
        if self.live(now, window) == 0 {
            self.failures = 0;
            self.since = now;
        }
        self.failures = self.failures.saturating_add(1);
        self.last = now;
    }
}

/// The delay owed after `failures` failures: none for the first `free`, then `base` doubling per
/// failure, at most `cap`.
fn delay_after(failures: u32, free: u32, base: Duration, cap: Duration) -> Duration {
    if failures <= free {
        return Duration::ZERO;
    }
    // 2^31 times any delay is far past any cap; stop doubling there.
    let doublings = (failures - free - 1).min(31);
    base.saturating_mul(1u32 << doublings).min(cap)
}

/// The throttling state of one server (see the module docs).
pub struct Throttle {
    cfg: ThrottleConfig,
    ips: LruCache<IpNet, Entry, ahash::RandomState>,
    accounts: LruCache<u64, Entry, ahash::RandomState>,
    /// Keyed per process, so nobody can pick account names that collide.
    names: ahash::RandomState,
}

impl Throttle {
    /// Empty state for `cfg`.
    pub fn new(cfg: ThrottleConfig) -> Throttle {
        let cap = cfg.max_tracked.max(1);
        Throttle {
            ips: LruCache::with_hasher(cap, ahash::RandomState::new()),
            accounts: LruCache::with_hasher(cap, ahash::RandomState::new()),
            names: ahash::RandomState::new(),
            cfg,
        }
    }

    /// The settings in force.
    pub fn config(&self) -> &ThrottleConfig {
        &self.cfg
    }

    /// Addresses and accounts currently tracked.
    pub fn tracked(&self) -> (usize, usize) {
        (self.ips.len(), self.accounts.len())
    }

    /// Whether an attempt from `ip` on `account` (a bare JID) may be answered at `now`.
    pub fn check(&mut self, ip: IpAddr, account: &str, now: Instant) -> Verdict {
        if !self.applies(ip) {
            return Verdict::Allow;
        }
        let cfg = &self.cfg;
        let net = IpNet::containing(ip, cfg.ipv6_prefix);
        let mut until = now;
        match self.ips.peek(&net).map(|e| (e.banned_until, e)) {
            Some((Some(t), _)) if t > now => {
                // A banned address that keeps trying stays recent, so it stays tracked.
                self.ips.get_mut(&net);
                return Verdict::Banned(t);
            }
            Some((Some(_), _)) => {
                // The ban is over: the address starts afresh.
                self.ips.remove(&net);
            }
            Some((None, e)) => until = e.not_before(now, cfg, cfg.free_failures, cfg.max_delay),
            None => {}
        }
        let key = self.names.hash_one(account);
        if let Some(e) = self.accounts.peek(&key) {
            let t = e.not_before(now, cfg, cfg.account_free_failures, cfg.account_max_delay);
            until = until.max(t);
        }
        if until > now {
            Verdict::Delay(until)
        } else {
            Verdict::Allow
        }
    }

    /// Counts an attempt from `ip` that [`Throttle::check`] let through as in flight until the
    /// returned value is dropped (once its failure is counted, or on success); when the address
    /// already has as many in flight as it has failures left before a ban, what to wait for before
    /// asking again.
    pub fn admit(&mut self, ip: IpAddr, now: Instant) -> Result<InFlight, PlaceFreed> {
        if !self.applies(ip) {
            return Ok(InFlight::default());
        }
        let (window, max) = (self.cfg.window, self.cfg.max_failures);
        let net = IpNet::containing(ip, self.cfg.ipv6_prefix);
        // Trying keeps no address recent (failing does); a new one is tracked from its first
        // attempt, so that the attempts in parallel with it count it.
        if !self.ips.contains_key(&net) {
            self.ips.insert(net, Entry::new(now));
        }
        let Some(e) = self.ips.peek_mut(&net) else {
            // Just inserted: the table holds it (`max_tracked` is at least one).
            return Ok(InFlight::default());
        };
        let budget = max.saturating_sub(e.live(now, window)).max(1);
        let places = e.in_flight.clone();
        let take = || {
            places
                .taken
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                    (n < budget).then_some(n + 1)
                })
                .is_ok()
        };
        if take() {
            return Ok(InFlight(Some(places)));
        }
        // Listening before the second look: a place freed in between wakes this one.
        let wait = PlaceFreed(places.freed.listen());
        if take() {
            return Ok(InFlight(Some(places)));
        }
        Err(wait)
    }

    /// When the ban on `ip`'s address ends, if it is banned at `now`.
    pub fn banned_until(&self, ip: IpAddr, now: Instant) -> Option<Instant> {
        if !self.applies(ip) {
            return None;
        }
        let net = IpNet::containing(ip, self.cfg.ipv6_prefix);
        self.ips
            .peek(&net)
            .and_then(|e| e.banned_until)
            .filter(|t| *t > now)
    }

    /// Counts a failed attempt; `Some` when it bans the address.
    pub fn failure(&mut self, ip: IpAddr, account: &str, now: Instant) -> Option<Ban> {
        if !self.applies(ip) {
            return None;
        }
        let window = self.cfg.window;
        let key = self.names.hash_one(account);
        if let Some(e) = touch(&mut self.accounts, key, now) {
            e.fail(now, window);
        }
        let net = IpNet::containing(ip, self.cfg.ipv6_prefix);
        let e = touch(&mut self.ips, net, now)?;
        match e.banned_until {
            // Checked before the ban began, answered after: the ban already counts.
            Some(t) if t > now => return None,
            // Attempts in flight stay counted across the fresh start.
            Some(_) => {
                *e = Entry {
                    in_flight: e.in_flight.clone(),
                    ..Entry::new(now)
                }
            }
            None => {}
        }
        e.fail(now, window);
        if e.failures < self.cfg.max_failures {
            return None;
        }
        let until = now + self.cfg.ban_time;
        e.banned_until = Some(until);
        // Every attempt waiting for a place is refused now.
        e.in_flight.freed.notify(usize::MAX);
        Some(Ban {
            net,
            failures: e.failures,
            until,
        })
    }

    /// Throttling is on and `ip` is not exempt.
    fn applies(&self, ip: IpAddr) -> bool {
        self.cfg.enabled && !self.cfg.exempt.iter().any(|n| n.contains(ip))
    }
}

/// The entry for `key`, created if absent, marked most recently used (the least recently used one
/// is dropped when the table is full).
fn touch<K: std::hash::Hash + Eq + Copy>(
    cache: &mut LruCache<K, Entry, ahash::RandomState>,
    key: K,
    now: Instant,
) -> Option<&mut Entry> {
    if !cache.contains_key(&key) {
        cache.insert(key, Entry::new(now));
    }
    // Just inserted at the back, so present (capacity is at least 1).
    cache.get_mut(&key)
}

#[cfg(test)]
mod tests;
