//! Login throttling kept where credentials are looked up: one `auth::throttle::Throttle` behind a
//! mutex that only store pool threads lock. Shards hold a handle only to move it into pool jobs, so
//! no shard ever waits on the lock, and every shard sees the same counts, wherever `SO_REUSEPORT`
//! put an attacker's connections.

use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::auth::throttle::{InFlight, PlaceFreed, Throttle, Verdict};
use crate::config::ThrottleConfig;
use crate::jid::BareJid;

/// The answer to a credential look-up made through [`LoginGuard::attempt`].
#[derive(Debug)]
pub enum Attempt<T> {
    /// The look-up ran; give its answer to the client no earlier than `not_before`.
    Answer {
        /// What the look-up returned.
        value: T,
        /// Set when the throttle delays the answer.
        not_before: Option<Instant>,
        /// Counts the attempt against its address until its outcome is known: drop it on
        /// success, or once [`LoginGuard::failure`] has counted the failure.
        in_flight: InFlight,
    },
    /// The address is banned for this much longer; the look-up did not run.
    Banned(Duration),
    /// The address has as many attempts in flight as failures left before a ban; the look-up did
    /// not run and nothing is counted (ask again once this resolves).
    Busy(PlaceFreed),
}

/// A handle to the server's login throttle; clones share it.
#[derive(Clone)]
pub struct LoginGuard(Arc<Mutex<Throttle>>);

impl LoginGuard {
    /// A fresh throttle with `cfg`.
    pub fn new(cfg: ThrottleConfig) -> LoginGuard {
        LoginGuard(Arc::new(Mutex::new(Throttle::new(cfg))))
    }

    /// On a pool thread: asks the throttle about an attempt from `ip` on `account` and, unless the
    /// address is banned, runs `lookup` (the lock is not held meanwhile: PBKDF2 may run there).
    pub fn attempt<T>(
        &self,
        ip: IpAddr,
        account: &BareJid,
        lookup: impl FnOnce() -> T,
    ) -> Attempt<T> {
        let now = Instant::now();
        let mut throttle = self.lock();
        let not_before = match throttle.check(ip, account.as_str(), now) {
            Verdict::Banned(until) => {
                drop(throttle);
                tracing::debug!(%ip, account = account.as_str(), "login refused: address banned");
                return Attempt::Banned(until.saturating_duration_since(now));
            }
            Verdict::Allow => None,
            Verdict::Delay(at) => Some(at),
        };
        let admitted = throttle.admit(ip, now);
        drop(throttle);
        let in_flight = match admitted {
            Ok(f) => f,
            Err(wait) => {
                tracing::debug!(%ip, account = account.as_str(), "login waits: too many in flight");
                return Attempt::Busy(wait);
            }
        };
        Attempt::Answer {
            value: lookup(),
            not_before,
            in_flight,
        }
    }

    /// On a pool thread: how much longer `ip` is banned, if it is (asked again after a delay, so an
    /// attempt delayed while parallel ones got the address banned is not answered).
    pub fn banned_for(&self, ip: IpAddr) -> Option<Duration> {
        let now = Instant::now();
        let until = self.lock().banned_until(ip, now)?;
        Some(until.saturating_duration_since(now))
    }

    /// On a pool thread: counts a failed login; a ban it starts is logged. `in_flight` (the
    /// attempt's) is released once the failure counts.
    pub fn failure(&self, ip: IpAddr, account: &BareJid, in_flight: InFlight) {
        let (ban, ban_time) = {
            let mut throttle = self.lock();
            let ban = throttle.failure(ip, account.as_str(), Instant::now());
            drop(in_flight);
            (ban, throttle.config().ban_time)
        };
        if let Some(ban) = ban {
            tracing::warn!(
                %ip,
                net = %ban.net,
                account = account.as_str(),
                failures = ban.failures,
                ban_secs = ban_time.as_secs(),
                "address banned: too many failed logins"
            );
        }
    }

    fn lock(&self) -> MutexGuard<'_, Throttle> {
        // The throttle's methods do not panic while it is locked; a poisoned lock still holds
        // consistent counts.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> ThrottleConfig {
        let c = crate::config::Config::default_embedded().auth.throttle;
        ThrottleConfig {
            max_failures: 2,
            free_failures: 0,
            ..c
        }
    }

    #[test]
    fn a_banned_address_skips_the_lookup() {
        let guard = LoginGuard::new(cfg());
        let ip: IpAddr = [192, 0, 2, 1].into();
        let jid = BareJid::parse("alice@localhost").unwrap_or_else(|e| panic!("{e}"));
        let Attempt::Answer {
            value: 7,
            not_before: None,
            in_flight,
        } = guard.attempt(ip, &jid, || 7)
        else {
            panic!("first attempt not answered at once");
        };
        guard.failure(ip, &jid, in_flight);
        let Attempt::Answer {
            value: 8,
            not_before: Some(_),
            in_flight,
        } = guard.attempt(ip, &jid, || 8)
        else {
            panic!("second attempt not delayed");
        };
        guard.failure(ip, &jid, in_flight);
        assert!(guard.banned_for(ip).is_some());
        let mut ran = false;
        let got = guard.attempt(ip, &jid, || ran = true);
        assert!(
            matches!(got, Attempt::Banned(d) if d > Duration::from_secs(800)),
            "{got:?}"
        );
        assert!(!ran);
    }

    use futures_lite::future::{block_on, poll_once};

    #[test]
    fn attempts_in_flight_are_bounded_by_the_failures_left() {
        // max_failures = 2: two attempts may wait for their outcome; a third is refused without a
        // look-up until one of them ends, and then only the failures left count.
        let guard = LoginGuard::new(cfg());
        let ip: IpAddr = [192, 0, 2, 9].into();
        let jid = BareJid::parse("alice@localhost").unwrap_or_else(|e| panic!("{e}"));
        let take = |v| match guard.attempt(ip, &jid, || v) {
            Attempt::Answer { in_flight, .. } => Some(in_flight),
            Attempt::Busy(_) => None,
            Attempt::Banned(_) => panic!("banned"),
        };
        let (first, second) = (take(1).unwrap(), take(2).unwrap());
        let mut ran = false;
        let Attempt::Busy(mut wait) = guard.attempt(ip, &jid, || ran = true) else {
            panic!("a third attempt was let through");
        };
        assert!(!ran);
        assert_eq!(block_on(poll_once(&mut wait)), None, "no place came free");
        // A success frees its place, and wakes the waiting attempt.
        drop(first);
        assert_eq!(block_on(poll_once(&mut wait)), Some(()));
        let third = take(3).expect("a place was freed");
        assert!(take(4).is_none());
        // A failure frees its place but leaves one failure before the ban: one in flight at most.
        guard.failure(ip, &jid, second);
        let Attempt::Busy(mut waiting) = guard.attempt(ip, &jid, || 5) else {
            panic!("third still holds the only place");
        };
        drop(third);
        let fourth = take(6).expect("the place is free again");
        assert_eq!(block_on(poll_once(&mut waiting)), Some(()));
        let Attempt::Busy(mut waiting) = guard.attempt(ip, &jid, || 7) else {
            panic!("fourth holds the only place");
        };
        // The ban wakes every waiting attempt, to be refused.
        guard.failure(ip, &jid, fourth);
        assert_eq!(block_on(poll_once(&mut waiting)), Some(()));
        assert!(matches!(guard.attempt(ip, &jid, || 8), Attempt::Banned(_)));
    }
}
