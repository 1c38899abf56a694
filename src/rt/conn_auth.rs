//! The connection driver's part of SASL: credential look-ups on the store pool behind the login
//! throttle (`store::LoginGuard`), the delay the throttle asks for (a glommio timer), a banned
//! address's stream error, and failures reported back. The policy itself is `auth::throttle`.

use std::time::{Duration, Instant};

use super::conn::{Driver, Pending};
use crate::auth::throttle::InFlight;
use crate::jid::BareJid;
use crate::store::{Attempt, Store, StoreError};
use crate::xmpp::StreamErrorCondition;

/// How long an attempt waits for a place among its address's attempts in flight.
const BUSY_WAIT: Duration = Duration::from_secs(10);
/// It asks again when a place comes free, and at least this often (a safety net: nothing is
/// known to miss a wake-up).
const BUSY_RECHECK: Duration = Duration::from_secs(1);

impl Driver {
    /// Runs `lookup` for `username` on the store pool through the login throttle. Its answer
    /// (`answer`) reaches the c2s no earlier than the throttle allows; `invalid` answers a name
    /// that is not a localpart at once (no such user). While the address has as many attempts in
    /// flight as the throttle allows, the attempt waits for a place (clients behind one address
    /// logging in together: a NAT, a proxy, a load test), for at most [`BUSY_WAIT`].
    pub(super) fn credential_lookup<T: Send + 'static>(
        &mut self,
        username: &str,
        lookup: impl Fn(&Store, &BareJid) -> Result<T, StoreError> + Clone + Send + 'static,
        answer: fn(T, InFlight) -> Pending,
        invalid: Pending,
    ) {
        let Ok(jid) = BareJid::new(Some(username), self.c2s.domain()) else {
            self.pending = Some(Box::pin(std::future::ready(invalid)));
            return;
        };
        let (login, ip) = (self.ctx.login.clone(), self.c2s.peer().addr.ip());
        let (store, guard) = (self.ctx.store.clone(), login.clone());
        self.pending = Some(Box::pin(async move {
            let given_up = Instant::now() + BUSY_WAIT;
            let attempt = loop {
                let (login, jid, lookup) = (login.clone(), jid.clone(), lookup.clone());
                let call = store.call(move |store| login.attempt(ip, &jid, || lookup(store, &jid)));
                match call.await {
                    Ok(Attempt::Busy(freed)) => {
                        let left = given_up.saturating_duration_since(Instant::now());
                        if left.is_zero() {
                            break Ok(Attempt::Busy(freed));
                        }
                        let recheck = glommio::timer::sleep(left.min(BUSY_RECHECK));
                        futures_lite::future::or(freed, recheck).await;
                    }
                    other => break other,
                }
            };
            match attempt {
                Ok(Attempt::Answer {
                    value: Ok(v),
                    not_before,
                    in_flight,
                }) => {
                    if let Some(at) = not_before {
                        glommio::timer::sleep(at.saturating_duration_since(Instant::now())).await;
                        // Parallel attempts may have got the address banned meanwhile.
                        if let Ok(Some(left)) = store.call(move |_| guard.banned_for(ip)).await {
                            return Pending::Banned(left);
                        }
                    }
                    answer(v, in_flight)
                }
                Ok(Attempt::Banned(left)) => Pending::Banned(left),
                // No place came free in time (`auth::throttle`): a temporary failure, nothing
                // counted.
                Ok(Attempt::Busy(_)) => Pending::Unavailable,
                // Busy, closed or failing store: a temporary failure, not "no such user".
                Ok(Attempt::Answer { value: Err(_), .. }) | Err(_) => Pending::Unavailable,
            }
        }));
    }

    /// Wrong credentials for `jid`: counted by the throttle in a pool job (the shard never takes
    /// its lock), which then releases the attempt's place in flight. Nothing waits for it; if the
    /// pool queue is full the count is lost, and that same full queue answers the next attempts
    /// with temporary-auth-failure.
    pub(super) fn auth_failed(&mut self, jid: BareJid) {
        let (login, ip) = (self.ctx.login.clone(), self.c2s.peer().addr.ip());
        // One line per failure, with the address: what fail2ban and an operator look for.
        tracing::info!(%ip, user = %jid, "authentication failed");
        let in_flight = self.in_flight.take().unwrap_or_default();
        drop(
            self.ctx
                .store
                .call(move |_| login.failure(ip, &jid, in_flight)),
        );
    }

    /// The address is banned: a `<policy-violation/>` stream error with the time left, as ejabberd's
    /// `mod_fail2ban` answers (Prosody's `mod_limit_auth` answers `<temporary-auth-failure/>`).
    pub(super) fn auth_banned(&mut self, left: Duration) {
        let text = format!(
            "Too many failed authentications from this IP address ({}); retry in {} s",
            self.c2s.peer().addr.ip(),
            left.as_secs().max(1)
        );
        self.c2s
            .close(Some(StreamErrorCondition::PolicyViolation), Some(&text));
    }
}
