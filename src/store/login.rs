//! Login throttling kept where credentials are looked up: one `auth::throttle::Throttle` behind a
//! mutex that only store pool threads lock. Shards hold a handle only to move it into pool jobs, so
//! no shard ever waits on the lock, and every shard sees the same counts, wherever `SO_REUSEPORT`
//! put an attacker's connections.

use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::auth::throttle::{Throttle, Verdict};
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
    },
    /// The address is banned for this much longer; the look-up did not run.
    Banned(Duration),
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
        let verdict = self.lock().check(ip, account.as_str(), now);
        let not_before = match verdict {
            Verdict::Banned(until) => {
                tracing::debug!(%ip, account = account.as_str(), "login refused: address banned");
                return Attempt::Banned(until.saturating_duration_since(now));
            }
            Verdict::Allow => None,
            Verdict::Delay(at) => Some(at),
        };
        Attempt::Answer {
            value: lookup(),
            not_before,
        }
    }

    /// On a pool thread: how much longer `ip` is banned, if it is (asked again after a delay, so an
    /// attempt delayed while parallel ones got the address banned is not answered).
    pub fn banned_for(&self, ip: IpAddr) -> Option<Duration> {
        let now = Instant::now();
        let until = self.lock().banned_until(ip, now)?;
        Some(until.saturating_duration_since(now))
    }

    /// On a pool thread: counts a failed login; a ban it starts is logged.
    pub fn failure(&self, ip: IpAddr, account: &BareJid) {
        let (ban, ban_time) = {
            let mut throttle = self.lock();
            let ban = throttle.failure(ip, account.as_str(), Instant::now());
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
        assert!(matches!(
            guard.attempt(ip, &jid, || 7),
            Attempt::Answer {
                value: 7,
                not_before: None
            }
        ));
        guard.failure(ip, &jid);
        assert!(matches!(
            guard.attempt(ip, &jid, || 8),
            Attempt::Answer {
                value: 8,
                not_before: Some(_)
            }
        ));
        guard.failure(ip, &jid);
        assert!(guard.banned_for(ip).is_some());
        let mut ran = false;
        let got = guard.attempt(ip, &jid, || ran = true);
        assert!(
            matches!(got, Attempt::Banned(d) if d > Duration::from_secs(800)),
            "{got:?}"
        );
        assert!(!ran);
    }
}
