//! The policy under a fake clock: `t(s)` is a fixed start plus `s` milliseconds.

use std::net::IpAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::*;

fn t(ms: u64) -> Instant {
    static START: OnceLock<Instant> = OnceLock::new();
    *START.get_or_init(Instant::now) + Duration::from_millis(ms)
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

/// 2 free failures, 100 ms doubling to 800 ms, ban at 6 within 10 s for 5 s; accounts: 3 free,
/// capped at 300 ms.
fn cfg() -> ThrottleConfig {
    ThrottleConfig {
        enabled: true,
        free_failures: 2,
        delay: Duration::from_millis(100),
        max_delay: Duration::from_millis(800),
        max_failures: 6,
        window: Duration::from_secs(10),
        ban_time: Duration::from_secs(5),
        account_free_failures: 3,
        account_max_delay: Duration::from_millis(300),
        max_tracked: 16,
        ipv6_prefix: 64,
        exempt: Vec::new(),
    }
}

const A: &str = "alice@localhost";

#[test]
fn delay_schedule_doubles_up_to_the_cap() {
    let (base, cap) = (Duration::from_millis(100), Duration::from_millis(800));
    let got: Vec<u128> = (0..8)
        .map(|n| delay_after(n, 2, base, cap).as_millis())
        .collect();
    assert_eq!(got, [0, 0, 0, 100, 200, 400, 800, 800]);
    assert_eq!(delay_after(u32::MAX, 0, base, cap), cap);
    assert_eq!(delay_after(9, 2, Duration::ZERO, cap), Duration::ZERO);
}

#[test]
fn an_address_is_delayed_then_banned_then_free_again() {
    let mut th = Throttle::new(cfg());
    let me = ip("192.0.2.7");
    let mut now = 0;
    for _ in 0..2 {
        assert_eq!(th.check(me, A, t(now)), Verdict::Allow);
        assert_eq!(th.failure(me, A, t(now)), None);
        now += 10;
    }
    // Third failure: the next attempt waits 100 ms after it, then 200, then 400 (the account's
    // own delay, 4th failure on, is smaller and capped at 300).
    for wait in [100, 200, 400] {
        assert_eq!(th.failure(me, A, t(now)), None);
        assert_eq!(th.check(me, A, t(now)), Verdict::Delay(t(now + wait)));
        now += wait;
    }
    let ban = th.failure(me, A, t(now)).expect("6th failure bans");
    assert_eq!((ban.failures, ban.until), (6, t(now + 5000)));
    assert_eq!(ban.net.to_string(), "192.0.2.7/32");
    assert_eq!(
        th.check(me, A, t(now + 4999)),
        Verdict::Banned(t(now + 5000))
    );
    // Even the right password is refused while banned: the caller never gets that far.
    assert_eq!(
        th.check(me, "bob@localhost", t(now + 1)),
        Verdict::Banned(t(now + 5000))
    );
    assert_eq!(th.banned_until(me, t(now + 4999)), Some(t(now + 5000)));
    assert_eq!(th.banned_until(ip("192.0.2.8"), t(now)), None);
    assert_eq!(th.banned_until(me, t(now + 5000)), None);
    // After the ban the address starts afresh (the account still remembers its failures).
    assert_eq!(th.check(me, "bob@localhost", t(now + 5000)), Verdict::Allow);
    assert_eq!(th.failure(me, "bob@localhost", t(now + 5000)), None);
    assert_eq!(th.tracked(), (1, 2));
}

#[test]
fn failures_outside_the_window_are_forgotten() {
    let mut th = Throttle::new(cfg());
    let me = ip("192.0.2.8");
    for i in 0..5 {
        th.failure(me, A, t(i));
    }
    assert!(matches!(th.check(me, A, t(5)), Verdict::Delay(_)));
    // 10 s after the first failure the window is over: no delay, and counting starts again.
    assert_eq!(th.check(me, A, t(10_000)), Verdict::Allow);
    for i in 0..5 {
        assert_eq!(th.failure(me, A, t(10_000 + i)), None, "failure {i}");
    }
    assert!(th.failure(me, A, t(10_005)).is_some());
}

#[test]
fn an_attack_on_an_account_delays_its_owner_at_most_the_account_cap_and_never_bans() {
    let mut th = Throttle::new(cfg());
    let owner = ip("198.51.100.1");
    // 40 attacker addresses, 1 failure each (under every address threshold), all on alice.
    for i in 0..40u64 {
        let attacker = ip(&format!("203.0.113.{i}"));
        assert_ne!(
            th.check(attacker, A, t(i)),
            Verdict::Banned(t(0)),
            "attackers are not banned by account failures"
        );
        assert_eq!(th.failure(attacker, A, t(i)), None);
    }
    // The owner, from elsewhere, waits at most 300 ms after the latest failure.
    assert_eq!(th.check(owner, A, t(39)), Verdict::Delay(t(39 + 300)));
    assert_eq!(th.check(owner, A, t(339)), Verdict::Allow);
    // Another account on the owner's address is not delayed at all.
    assert_eq!(th.check(owner, "bob@localhost", t(39)), Verdict::Allow);
}

#[test]
fn ipv6_counts_per_prefix_and_mapped_ipv4_is_ipv4() {
    let mut th = Throttle::new(cfg());
    for i in 0..6u32 {
        let addr = ip(&format!("2001:db8:0:1::{i:x}"));
        th.failure(addr, A, t(u64::from(i)));
    }
    assert!(matches!(
        th.check(ip("2001:db8:0:1:ffff::1"), "x@y", t(10)),
        Verdict::Banned(_)
    ));
    assert_eq!(
        th.check(ip("2001:db8:0:2::1"), "x@y", t(10)),
        Verdict::Allow
    );
    for i in 0..6 {
        th.failure(ip("192.0.2.1"), A, t(i));
    }
    assert!(matches!(
        th.check(ip("::ffff:192.0.2.1"), "x@y", t(10)),
        Verdict::Banned(_)
    ));
}

#[test]
fn exempt_and_disabled_are_never_throttled() {
    let mut c = cfg();
    c.exempt = vec![IpNet::parse("127.0.0.0/8").unwrap_or_else(|e| panic!("{e}"))];
    let mut th = Throttle::new(c.clone());
    for i in 0..50 {
        assert_eq!(th.failure(ip("127.0.0.2"), A, t(i)), None);
    }
    assert_eq!(th.check(ip("127.0.0.2"), A, t(50)), Verdict::Allow);
    assert_eq!(th.tracked(), (0, 0));
    c.exempt.clear();
    c.enabled = false;
    let mut th = Throttle::new(c);
    for i in 0..50 {
        assert_eq!(th.failure(ip("192.0.2.1"), A, t(i)), None);
    }
    assert_eq!(th.check(ip("192.0.2.1"), A, t(50)), Verdict::Allow);
}

#[test]
fn memory_is_bounded_and_the_least_recently_failing_goes_first() {
    let mut th = Throttle::new(cfg());
    let first = ip("10.0.0.1");
    for i in 0..5 {
        th.failure(first, A, t(i));
    }
    for i in 0..1000u32 {
        let addr = IpAddr::from((0x0b00_0000u32 + i).to_be_bytes());
        th.failure(addr, &format!("u{i}@localhost"), t(10));
        // Trying without failing does not keep an address (that is not banned) recent.
        assert!(matches!(
            th.check(first, A, t(10)),
            Verdict::Delay(_) | Verdict::Allow
        ));
    }
    assert_eq!(th.tracked(), (16, 16));
    // `first` was dropped: its failures are forgotten.
    assert!(th.failure(first, A, t(11)).is_none());
    assert_eq!(th.check(first, "z@localhost", t(11)), Verdict::Allow);
}

#[test]
fn a_banned_address_that_keeps_trying_stays_tracked() {
    let mut th = Throttle::new(cfg());
    let bad = ip("10.9.9.9");
    for i in 0..6 {
        th.failure(bad, A, t(i));
    }
    for i in 0..100u32 {
        // Other addresses fail (one each), while the banned one keeps knocking.
        let addr = IpAddr::from((0x0c00_0000u32 + i).to_be_bytes());
        th.failure(addr, "x@localhost", t(10));
        assert!(matches!(th.check(bad, A, t(10)), Verdict::Banned(_)), "{i}");
    }
}
