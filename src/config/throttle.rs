//! `[auth.throttle]`: login failure throttling settings (the policy is `auth::throttle`), and the
//! address ranges (`exempt`) written as `ADDR/PREFIX`.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use serde::{Serialize, Serializer};

use super::error::{ConfigError, InvalidValue};
use super::raw::RawThrottle;
use super::validate::{Bounds, Ctx};

/// Why an `exempt` entry is not an address range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetError {
    /// The part before `/` is not an IP address.
    #[error("not an IP address")]
    Address,
    /// The prefix length is not a number or longer than the address.
    #[error("bad prefix length (at most 32 for IPv4, 128 for IPv6)")]
    Prefix,
}

/// An address range: the addresses whose first `prefix` bits equal those of `addr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// Parses `ADDR` (one address) or `ADDR/PREFIX`.
    pub fn parse(s: &str) -> Result<IpNet, NetError> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr.trim().parse().map_err(|_| NetError::Address)?;
        let addr = addr.to_canonical();
        let bits = bits_of(addr);
        let prefix = match prefix {
            None => bits,
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= bits)
                .ok_or(NetError::Prefix)?,
        };
        Ok(IpNet {
            addr: mask(addr, prefix),
            prefix,
        })
    }

    /// The range of `prefix` bits (capped at the address length) around `ip`.
    pub fn containing(ip: IpAddr, prefix: u8) -> IpNet {
        let ip = ip.to_canonical();
        let prefix = prefix.min(bits_of(ip));
        IpNet {
            addr: mask(ip, prefix),
            prefix,
        }
    }

    /// True when `ip` (an IPv4-mapped IPv6 address counts as IPv4) is in the range.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        bits_of(ip) == bits_of(self.addr) && mask(ip, self.prefix) == self.addr
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl Serialize for IpNet {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

fn bits_of(ip: IpAddr) -> u8 {
    if ip.is_ipv4() {
        32
    } else {
        128
    }
}

/// `ip` with every bit past the first `prefix` cleared (`prefix` at most the address length).
fn mask(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let keep = u32::MAX
                .checked_shl(32 - u32::from(prefix.min(32)))
                .unwrap_or(0);
            IpAddr::V4((u32::from(v4) & keep).into())
        }
        IpAddr::V6(v6) => {
            let keep = u128::MAX
                .checked_shl(128 - u32::from(prefix.min(128)))
                .unwrap_or(0);
            IpAddr::V6((u128::from(v6) & keep).into())
        }
    }
}

/// `[auth.throttle]`, validated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ThrottleConfig {
    /// Throttling is on.
    pub enabled: bool,
    /// Failures from one address (within `window`) before its attempts are delayed.
    pub free_failures: u32,
    /// Delay after the first failure past `free_failures`; doubles with each further one.
    #[serde(rename = "delay_ms", serialize_with = "ser_ms")]
    pub delay: Duration,
    /// Cap of the per-address delay.
    #[serde(rename = "max_delay_ms", serialize_with = "ser_ms")]
    pub max_delay: Duration,
    /// Failures from one address within `window` that ban it for `ban_time`.
    pub max_failures: u32,
    /// Failures are counted in a window that opens with the first one and lasts this long.
    #[serde(serialize_with = "super::ser_secs")]
    pub window: Duration,
    /// How long a banned address is refused.
    #[serde(serialize_with = "super::ser_secs")]
    pub ban_time: Duration,
    /// Failures on one account (from any address, within `window`) before its attempts are delayed.
    pub account_free_failures: u32,
    /// Cap of the per-account delay (accounts are delayed, never banned).
    #[serde(rename = "account_max_delay_ms", serialize_with = "ser_ms")]
    pub account_max_delay: Duration,
    /// Addresses, and accounts, tracked at most (each); the least recently failing is dropped.
    pub max_tracked: usize,
    /// IPv6 addresses are counted per prefix of this length (one /64 is one subscriber).
    pub ipv6_prefix: u8,
    /// Address ranges never throttled.
    pub exempt: Vec<IpNet>,
}

fn ser_ms<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    // Bounded by the validation maximum (30 s), so it fits in u64.
    s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

const FREE_FAILURES: Bounds = Bounds {
    field: "auth.throttle.free_failures",
    default: 3,
    min: 0,
    max: 1_000_000,
};
const DELAY_MS: Bounds = Bounds {
    field: "auth.throttle.delay_ms",
    default: 250,
    min: 0,
    max: 30_000,
};
const MAX_DELAY_MS: Bounds = Bounds {
    field: "auth.throttle.max_delay_ms",
    default: 4_000,
    min: 0,
    max: 30_000,
};
const MAX_FAILURES: Bounds = Bounds {
    field: "auth.throttle.max_failures",
    default: 20,
    min: 1,
    max: 1_000_000,
};
const WINDOW: Bounds = Bounds {
    field: "auth.throttle.window",
    default: 600,
    min: 1,
    max: 7 * 86_400,
};
const BAN_TIME: Bounds = Bounds {
    field: "auth.throttle.ban_time",
    default: 900,
    min: 1,
    max: 30 * 86_400,
};
const ACCOUNT_FREE_FAILURES: Bounds = Bounds {
    field: "auth.throttle.account_free_failures",
    default: 10,
    min: 0,
    max: 1_000_000,
};
const ACCOUNT_MAX_DELAY_MS: Bounds = Bounds {
    field: "auth.throttle.account_max_delay_ms",
    default: 2_000,
    min: 0,
    max: 30_000,
};
const MAX_TRACKED: Bounds = Bounds {
    field: "auth.throttle.max_tracked",
    default: 65_536,
    min: 16,
    max: 1 << 24,
};
const IPV6_PREFIX: Bounds = Bounds {
    field: "auth.throttle.ipv6_prefix",
    default: 64,
    min: 16,
    max: 128,
};

/// Validates `[auth.throttle]` (every key optional).
pub(super) fn throttle(cx: &Ctx<'_>, raw: RawThrottle) -> Result<ThrottleConfig, ConfigError> {
    type Raw = Option<toml::Spanned<u64>>;
    let count = |b: &Bounds, v: Raw| -> Result<u32, ConfigError> {
        // Every count bound is below u32::MAX.
        cx.num(b, v).map(|n| u32::try_from(n).unwrap_or(u32::MAX))
    };
    let millis = |b: &Bounds, v: Raw| cx.num(b, v).map(Duration::from_millis);
    let secs = |b: &Bounds, v: Raw| cx.num(b, v).map(Duration::from_secs);
    let mut exempt = Vec::new();
    for net in raw.exempt.unwrap_or_default() {
        let parsed = IpNet::parse(net.get_ref()).map_err(|reason| {
            cx.err(
                &net.span(),
                InvalidValue::InvalidNetwork {
                    value: net.get_ref().clone(),
                    reason,
                },
            )
        })?;
        exempt.push(parsed);
    }
    Ok(ThrottleConfig {
        enabled: raw.enabled.unwrap_or(true),
        free_failures: count(&FREE_FAILURES, raw.free_failures)?,
        delay: millis(&DELAY_MS, raw.delay_ms)?,
        max_delay: millis(&MAX_DELAY_MS, raw.max_delay_ms)?,
        max_failures: count(&MAX_FAILURES, raw.max_failures)?,
        window: secs(&WINDOW, raw.window)?,
        ban_time: secs(&BAN_TIME, raw.ban_time)?,
        account_free_failures: count(&ACCOUNT_FREE_FAILURES, raw.account_free_failures)?,
        account_max_delay: millis(&ACCOUNT_MAX_DELAY_MS, raw.account_max_delay_ms)?,
        // Bounded by 2^24, which fits in usize.
        max_tracked: usize::try_from(cx.num(&MAX_TRACKED, raw.max_tracked)?).unwrap_or(1 << 24),
        // At most 128 by the bound.
        ipv6_prefix: u8::try_from(cx.num(&IPV6_PREFIX, raw.ipv6_prefix)?).unwrap_or(128),
        exempt,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn ranges_parse_and_match() {
        let lo = IpNet::parse("127.0.0.1/8").unwrap();
        assert_eq!(lo.to_string(), "127.0.0.0/8");
        assert!(lo.contains(ip("127.9.9.9")));
        assert!(lo.contains(ip("::ffff:127.0.0.2")));
        assert!(!lo.contains(ip("128.0.0.1")));
        assert!(!lo.contains(ip("::1")));
        let one = IpNet::parse("::1").unwrap();
        assert_eq!(one.to_string(), "::1/128");
        assert!(one.contains(ip("::1")) && !one.contains(ip("::2")));
        let all = IpNet::parse("0.0.0.0/0").unwrap();
        assert!(all.contains(ip("1.2.3.4")));
        let v6 = IpNet::parse("2001:db8::/32").unwrap();
        assert!(v6.contains(ip("2001:db8:1::5")) && !v6.contains(ip("2001:db9::")));
    }

    #[test]
    fn bad_ranges_are_refused() {
        assert_eq!(IpNet::parse("localhost"), Err(NetError::Address));
        assert_eq!(IpNet::parse("10.0.0.0/33"), Err(NetError::Prefix));
        assert_eq!(IpNet::parse("10.0.0.0/x"), Err(NetError::Prefix));
        assert_eq!(IpNet::parse("::/129"), Err(NetError::Prefix));
    }

    #[test]
    fn table_is_read_and_checked() {
        use crate::config::{Config, Location};
        let parse = |body: &str| {
            let text = format!(
                "[general]\nhosts=[\"x\"]\n[[listen.c2s]]\nport=1\n[auth.throttle]\n{body}"
            );
            Config::parse(&text, std::path::Path::new("t.toml"))
        };
        let c = parse("delay_ms = 10\nban_time = 2\nexempt = [\"127.0.0.1/8\", \"::1\"]\n")
            .unwrap_or_else(|e| panic!("{e}"));
        let t = &c.auth.throttle;
        assert_eq!(
            (t.delay, t.ban_time),
            (Duration::from_millis(10), Duration::from_secs(2))
        );
        assert_eq!(
            (t.free_failures, t.max_failures, t.max_tracked),
            (3, 20, 65_536)
        );
        assert_eq!(t.exempt.len(), 2);
        let err = parse("bogus = 1\n").expect_err("unknown key");
        assert_eq!(err.location(), Some(Location { line: 6, col: 1 }), "{err}");
        let err = parse("exempt = [\"nope\"]\n").expect_err("bad range");
        assert_eq!(err.location(), Some(Location { line: 6, col: 11 }), "{err}");
        assert!(err.to_string().contains("not an IP address"), "{err}");
        let err = parse("max_failures = 0\n").expect_err("below the minimum");
        assert!(
            err.to_string().contains("auth.throttle.max_failures"),
            "{err}"
        );
    }

    #[test]
    fn mask_keeps_the_prefix() {
        assert_eq!(mask(ip("2001:db8:1:2:3:4:5:6"), 64), ip("2001:db8:1:2::"));
        assert_eq!(mask(ip("10.1.2.3"), 16), ip("10.1.0.0"));
        assert_eq!(mask(ip("10.1.2.3"), 0), ip("0.0.0.0"));
        assert_eq!(mask(ip("10.1.2.3"), 32), ip("10.1.2.3"));
        let net = IpNet::containing(ip("2001:db8::1"), 64);
        assert_eq!(net.to_string(), "2001:db8::/64");
        assert_eq!(
            IpNet::containing(ip("10.1.2.3"), 64).to_string(),
            "10.1.2.3/32"
        );
    }
}
