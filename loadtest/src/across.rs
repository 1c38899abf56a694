//! Two servers (`--server-b`): federation load. User index `u` lives on server A when even and
//! on server B when odd; both halves of a pair (2k, 2k+1) are `{prefix}{first+k}`, one at each
//! domain, so `max` pairs user k of A with user k of B and every message crosses the servers'
//! s2s link, replies included. `chat` sends to 8 neighbours on the other server.
//!
//! Before the measured phase every core sends one warm-up message each way between its first
//! pair and waits for both (sending a bounced one again until the warm-up timeout): the s2s streams (DNS, TLS, dialback) are then up and not counted in
//! the times to delivery, and a federation that does not work fails the run instead of showing
//! as lost messages.

use crate::core::Core;
use crate::msg::Naming;
use glommio::timer::sleep;
use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// Body of a warm-up message (not a load message: no time stamp, never counted as one).
const WARM: &[u8] = b"petrel-load warm-up";

/// Which server a user index logs in to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// `--server` / `--domain` (even indices).
    A,
    /// `--server-b` / `--domain-b` (odd indices).
    B,
}

/// The server of user `u`.
pub fn side(u: u32) -> Side {
    if u.is_multiple_of(2) {
        Side::A
    } else {
        Side::B
    }
}

/// The user number offset (from `--first`) of user `u`: both halves of a pair share it.
pub fn number(u: u32) -> u32 {
    u / 2
}

/// Chat across: the `k`-th message of user `u` (of `users`, even) goes to the user of the other
/// server `k mod 8` pairs further on, so user k of A talks to users k..k+7 of B and back.
pub fn chat_target(u: u32, k: u32, users: u32) -> u32 {
    let pairs = (users / 2).max(1);
    let pair = (number(u) + k % 8) % pairs;
    2 * pair + (1 - u % 2)
}

/// Warm-up progress of the whole run (all cores).
#[derive(Default)]
pub struct WarmShared {
    /// Warm-up messages delivered.
    pub delivered: AtomicU64,
    /// Cores whose warm-up failed (bounced, or not delivered in time).
    pub failed: AtomicU64,
}

/// One core's warm-up: which directions of its first pair arrived, and bounces not yet retried.
#[derive(Default)]
pub struct WarmCore {
    /// Bit 0: A to B arrived; bit 1: B to A.
    seen: Cell<u8>,
    bounced: Cell<u32>,
    /// A bounce was reported (once: the retries would repeat it).
    told: Cell<bool>,
}

/// The direction tag after [`WARM`] in a warm-up body, and its bit in [`WarmCore::seen`].
const DIRECTIONS: [(&[u8], u8); 2] = [(b" a-b", 1), (b" b-a", 2)];
/// [`WarmCore::seen`] once both directions arrived.
const BOTH: u8 = DIRECTIONS[0].1 | DIRECTIONS[1].1;

/// Handle a stanza if it is a warm-up message (`true`), delivered or bounced.
pub fn on_message(core: &Core, w: &WarmCore, el: &[u8], error: bool) -> bool {
    let Some(at) = memchr::memmem::find(el, WARM) else {
        return false;
    };
    if error {
        w.bounced.set(w.bounced.get() + 1);
        if !w.told.replace(true) {
            core.complain(format_args!(
                "warm-up message bounced (sent again until the warm-up timeout): {}",
                String::from_utf8_lossy(el)
            ));
        }
    } else {
        let tag = &el[at + WARM.len()..];
        if let Some((_, bit)) = DIRECTIONS.iter().find(|(t, _)| tag.starts_with(t)) {
            w.seen.set(w.seen.get() | bit);
        }
        core.shared.warm.delivered.fetch_add(1, Relaxed);
    }
    true
}

/// Send one warm-up message each way between this core's first logged-in pair and wait (at
/// most `timeout`) for both. A bounced one is sent again after a short pause until the timeout
/// (a cluster's session map learns of a session a moment after its login; a federation may take
/// a moment to come up); still missing at the timeout marks the run's federation as failed.
pub async fn warm_up(core: &Rc<Core>, w: &WarmCore, users: &[u32], timeout: Duration) {
    let Some(&a) = users
        .iter()
        .find(|&&u| side(u) == Side::A && core.has_client(u) && core.has_client(u ^ 1))
    else {
        return; // no complete pair on this core: nothing to check from here
    };
    let naming = &core.plan.naming;
    let deadline = Instant::now() + timeout;
    let mut bounces = 0;
    loop {
        for ((from, to), (tag, bit)) in [(a, a ^ 1), (a ^ 1, a)].into_iter().zip(DIRECTIONS) {
            if w.seen.get() & bit != 0 {
                continue;
            }
            let to = naming.bare(to);
            core.client(from).push_stanza(core.stats(), |b| {
                b.extend_from_slice(b"<message to='");
                b.extend_from_slice(to.as_bytes());
                b.extend_from_slice(b"' type='chat'><body>");
                b.extend_from_slice(WARM);
                b.extend_from_slice(tag);
                b.extend_from_slice(b"</body></message>");
            });
        }
        w.bounced.set(0);
        while w.seen.get() != BOTH && w.bounced.get() == 0 && Instant::now() < deadline {
            sleep(Duration::from_millis(5)).await;
        }
        if w.seen.get() == BOTH || Instant::now() >= deadline {
            break;
        }
        bounces += w.bounced.get();
        sleep(Duration::from_millis(50)).await;
    }
    if w.seen.get() != BOTH {
        core.shared.warm.failed.fetch_add(1, Relaxed);
        core.complain(format_args!(
            "federation warm-up between {} and {} failed: directions arrived {:02b}, {} bounced",
            naming.bare(a),
            naming.bare(a ^ 1),
            w.seen.get(),
            bounces + w.bounced.get()
        ));
    }
}

/// The domain of user `u` under `naming` (B's when two servers are in use and `u` is odd).
pub fn domain_of(naming: &Naming, u: u32) -> &str {
    match (&naming.domain_b, side(u)) {
        (Some(b), Side::B) => b,
        _ => &naming.domain,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_are_the_same_user_on_both_servers() {
        assert_eq!((side(0), number(0)), (Side::A, 0));
        assert_eq!((side(1), number(1)), (Side::B, 0));
        assert_eq!((side(6), number(6)), (Side::A, 3));
        assert_eq!((side(7), number(7)), (Side::B, 3));
    }

    #[test]
    fn chat_always_crosses_to_eight_neighbours() {
        let users = 40;
        for u in 0..users {
            let targets: Vec<u32> = (0..8).map(|k| chat_target(u, k, users)).collect();
            for &t in &targets {
                assert!(t < users);
                assert_ne!(side(t), side(u), "{u} -> {t} stays on one server");
            }
            // The first is u's own partner, then the next 7 pairs, wrapping around.
            assert_eq!(targets[0], u ^ 1);
            let pairs: Vec<u32> = targets.iter().map(|&t| number(t)).collect();
            let want: Vec<u32> = (0..8).map(|k| (number(u) + k) % (users / 2)).collect();
            assert_eq!(pairs, want);
            // The 9th message starts over.
            assert_eq!(chat_target(u, 8, users), targets[0]);
        }
        // Fewer than 8 pairs: targets wrap within the other server.
        assert_eq!(chat_target(1, 3, 4), 2);
    }

    #[test]
    fn domains_follow_the_side() {
        let mut n = Naming {
            prefix: "user".into(),
            first: 1,
            domain: "a.example".into(),
            domain_b: None,
            muc: None,
            resource: None,
            mixed: false,
        };
        assert_eq!(domain_of(&n, 1), "a.example");
        n.domain_b = Some("b.example".into());
        assert_eq!(domain_of(&n, 0), "a.example");
        assert_eq!(domain_of(&n, 1), "b.example");
        assert_eq!(n.bare(0), "user1@a.example");
        assert_eq!(n.bare(1), "user1@b.example");
        assert_eq!(n.bare(5), "user3@b.example");
        assert_eq!(n.local(5), "user3");
        // A message to index 1 goes to user 1 at B.
        let m = crate::msg::Msg {
            from: 0,
            to: 1,
            seq: 0,
            ts: 7,
        };
        let mut out = Vec::new();
        crate::msg::write_message(&mut out, &n, &m, 0);
        assert_eq!(
            out,
            b"<message to='user1@b.example' type='chat'><body>pl 7 0 0</body></message>"
        );
    }
}
