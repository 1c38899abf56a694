//! The soak's users: each keeps a session up whatever happens to the server.
//! A dropped connection is reconnected (retrying until the server is back),
//! resumed with XEP-0198 when the server still knows the session, else logged
//! in afresh (same resource, SM enabled again, initial presence, which brings
//! the offline messages); either way what the server never acknowledged is sent
//! again. With `--cut-interval` each client also cuts its own connection now
//! and then (no `</stream>`), so resumption is exercised between server kills.
//! In the SWEEP phase every user closes its stream cleanly and logs in afresh,
//! so whatever offline storage still holds is fetched before the count.

use crate::client::Client;
use crate::core::{attach, open_session, phase, read_loop, Core, SessionError};
use crate::ledger::Link;
use crate::login::SmOutcome;
use crate::sm;
use futures_lite::future;
use glommio::timer::sleep;
use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

/// First wait before reconnecting after a failed attempt; doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(50);
/// Longest wait between two reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_millis(1000);
/// How long a clean close at the sweep may take before the connection is just dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Start every user's session loop and wait until all are online (or the login timeout passed).
pub async fn login_all(core: &Rc<Core>, users: &[u32]) {
    for &u in users {
        glommio::spawn_local(user_loop(core.clone(), core.client(u))).detach();
    }
    let deadline = Instant::now() + core.plan.login_timeout;
    while (core.stats().online.load(Relaxed) as usize) < users.len() && Instant::now() < deadline {
        sleep(Duration::from_millis(5)).await;
    }
}

/// Why a connection ended.
enum End {
    /// The server closed it or it broke.
    Lost,
    /// This client cut it on purpose (or a clean close did not finish).
    Cut,
    /// Closed cleanly at the sweep: log in afresh.
    Closed,
    /// The run is over.
    Done,
}

async fn user_loop(core: Rc<Core>, client: Rc<Client>) {
    let st = core.stats();
    let mut rng = Rng::new(client.u);
    let mut backoff = MIN_BACKOFF;
    let mut first = true;
    let mut swept = false;
    let sweeping = Cell::new(false);
    while core.shared.phase() != phase::DONE {
        let resume = client.sm.as_ref().and_then(|sm| {
            let sm = sm.borrow();
            sm.resume_id.clone().map(|id| (id, sm.h_in))
        });
        let t0 = Instant::now();
        let timeout = async {
            sleep(core.plan.login_timeout).await;
            Err(SessionError::Timeout)
        };
        let at = client.failover.get();
        let s = match future::or(open_session(&core, client.u, resume, at), timeout).await {
            Ok(s) => s,
            Err(e) => {
                st.retries.fetch_add(1, Relaxed);
                if core.plan.nodes.len() > 1 {
                    // A cluster: the next attempt goes to the next node (this one may be down).
                    client.failover.set(at.wrapping_add(1));
                }
                if first {
                    core.complain(format_args!(
                        "login of {} failed (retrying): {e}",
                        core.plan.naming.bare(client.u)
                    ));
                }
                sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        backoff = MIN_BACKOFF;
        if first {
            let us = u64::try_from(t0.elapsed().as_micros()).unwrap_or(u64::MAX);
            st.record_login(us, core.shared.now_ns());
            first = false;
        }
        if s.resume_failed {
            st.resume_failed.fetch_add(1, Relaxed);
        }
        if matches!(s.sm, SmOutcome::Resumed(_)) {
            st.resumed.fetch_add(1, Relaxed);
        }
        let (rd, framer) = attach(&core, &client, s);
        st.online.fetch_add(1, Relaxed);
        core.record_link(client.u, Link::Up);
        if sweeping.replace(false) {
            swept = true;
            st.swept.fetch_add(1, Relaxed);
        }
        let reading = async {
            read_loop(&core, &client, rd, framer).await;
            if sweeping.get() {
                End::Closed
            } else {
                End::Lost
            }
        };
        let end = future::or(
            reading,
            interrupt(&core, &client, &mut rng, swept, &sweeping),
        )
        .await;
        st.online.fetch_sub(1, Relaxed);
        client.detach();
        match end {
            End::Done => break,
            End::Closed => {
                core.record_link(client.u, Link::Closed);
                // Log in afresh: the old session is gone, its resumption id with it.
                if let Some(sm) = &client.sm {
                    sm.borrow_mut().resume_id = None;
                }
            }
            End::Lost | End::Cut => {
                let change = if matches!(end, End::Cut) {
                    Link::Cut
                } else {
                    Link::Lost
                };
                if matches!(end, End::Cut) && core.plan.resume_elsewhere {
                    // The session stays on this node; the client comes back on the next one.
                    client.failover.set(client.failover.get().wrapping_add(1));
                }
                core.record_link(client.u, change);
                st.drops.fetch_add(1, Relaxed);
                sweeping.set(false);
            }
        }
    }
}

/// Wait for a reason to end the connection from this side: the run's end, the
/// sweep (a clean close, then wait for the server to close), or a cut.
async fn interrupt(
    core: &Core,
    client: &Client,
    rng: &mut Rng,
    swept: bool,
    sweeping: &Cell<bool>,
) -> End {
    let cut_at = core
        .plan
        .cut
        .map(|d| Instant::now() + d.mul_f64(0.5 + rng.unit()));
    let mut close_by = None;
    loop {
        sleep(Duration::from_millis(20)).await;
        let p = core.shared.phase();
        if p == phase::DONE {
            return End::Done;
        }
        if p == phase::SWEEP && !swept && close_by.is_none() {
            let h = client.sm.as_ref().map(|sm| sm.borrow().h_in);
            client.push_raw(|b| {
                if let Some(h) = h {
                    sm::write_ack(b, h);
                }
                b.extend_from_slice(b"</stream:stream>");
            });
            sweeping.set(true);
            close_by = Some(Instant::now() + CLOSE_TIMEOUT);
        }
        if close_by.is_some_and(|t| Instant::now() > t) {
            return End::Cut;
        }
        if p == phase::RUN && cut_at.is_some_and(|t| Instant::now() > t) {
            return End::Cut;
        }
    }
}

/// xorshift64*: enough to spread the cuts, no need for a crate.
struct Rng(u64);

impl Rng {
    fn new(seed: u32) -> Self {
        Rng(0x9E37_79B9_7F4A_7C15 ^ (u64::from(seed) + 1).wrapping_mul(0xBF58_476D_1CE4_E5B9))
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let v = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D);
        (v >> 11) as f64 / (1u64 << 53) as f64
    }
}
