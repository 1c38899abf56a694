//! Where a remote domain's server is reached (RFC 6120 §3.2, XEP-0368): the pure ordering of what
//! DNS answered, unit-tested here; the lookups themselves run on the resolver thread
//! (`rt::s2s_dns`).

use std::net::SocketAddr;

use crate::config::{S2sTls, StaticAddress, S2S_PORT};

/// SRV service of STARTTLS s2s (RFC 6120 §3.2.1).
pub const SRV_STARTTLS: &str = "_xmpp-server._tcp";
/// SRV service of direct TLS s2s (XEP-0368).
pub const SRV_DIRECT_TLS: &str = "_xmpps-server._tcp";

/// One SRV record as DNS gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrvRecord {
    /// Lower is tried first.
    pub priority: u16,
    /// Among equal priorities, the share of attempts this one gets first.
    pub weight: u16,
    /// TCP port.
    pub port: u16,
    /// Host name of the server, without the trailing dot; `"."` (or empty) means no service.
    pub target: String,
    /// From `_xmpps-server`: TLS from the first byte.
    pub direct_tls: bool,
}

/// A host to resolve to addresses, and how to speak on its port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostTarget {
    /// Host name or IP literal.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// TLS from the first byte (XEP-0368) instead of STARTTLS.
    pub direct_tls: bool,
}

/// One address to connect to, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoint {
    /// Address and port.
    pub addr: SocketAddr,
    /// TLS from the first byte (XEP-0368) instead of STARTTLS.
    pub direct_tls: bool,
}

/// What the lookup of a remote domain's SRV records gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SrvPlan {
    /// The hosts to resolve, in the order to try them.
    Hosts(Vec<HostTarget>),
    /// A single `.` target: the domain says it offers no s2s service (RFC 2782).
    NoService,
}

/// The target of a static `[s2s.address."DOMAIN"]`.
pub fn static_target(a: &StaticAddress) -> HostTarget {
    HostTarget {
        host: a.host.clone(),
        port: a.port,
        direct_tls: a.tls == S2sTls::Tls,
    }
}

/// The fallback without SRV records: the domain itself on 5269 with STARTTLS (RFC 6120 §3.2.2).
pub fn fallback_target(domain: &str) -> HostTarget {
    HostTarget {
        host: domain.to_owned(),
        port: S2S_PORT,
        direct_tls: false,
    }
}

/// Orders the SRV records of both services (RFC 2782 via RFC 6120 §3.2.1, XEP-0368 §3): by
/// priority, lower first; among equal priorities by a weighted random draw (`rand` gives numbers
/// in `0..=n`), direct TLS before STARTTLS when the draw ties; no records gives `Hosts([])` (the
/// caller falls back to the domain itself).
pub fn order_srv(mut records: Vec<SrvRecord>, mut rand: impl FnMut(u32) -> u32) -> SrvPlan {
    let is_dot = |r: &SrvRecord| r.target.is_empty() || r.target == ".";
    if !records.is_empty() && records.iter().all(is_dot) {
        return SrvPlan::NoService;
    }
    records.retain(|r| !is_dot(r));
    // Stable: direct TLS first within a priority, then the weighted draw below.
    records.sort_by_key(|r| (r.priority, !r.direct_tls));
    let mut out = Vec::with_capacity(records.len());
    let mut rest = records.as_slice();
    while let Some(first) = rest.first() {
        let same = rest
            .iter()
            .take_while(|r| r.priority == first.priority)
            .count();
        let (group, tail) = rest.split_at(same);
        out.extend(weighted_order(group.to_vec(), &mut rand));
        rest = tail;
    }
    SrvPlan::Hosts(
        out.into_iter()
            .map(|r| HostTarget {
                host: r.target.trim_end_matches('.').to_owned(),
                port: r.port,
                direct_tls: r.direct_tls,
            })
            .collect(),
    )
}

/// RFC 2782's selection within one priority: zero weights first in the list, then repeatedly pick
/// the first record whose running weight sum reaches a random number in `0..=total`.
fn weighted_order(mut group: Vec<SrvRecord>, rand: &mut impl FnMut(u32) -> u32) -> Vec<SrvRecord> {
    group.sort_by_key(|r| r.weight != 0);
    let mut out = Vec::with_capacity(group.len());
    while !group.is_empty() {
        let total: u32 = group.iter().map(|r| u32::from(r.weight)).sum();
        let pick = rand(total).min(total);
        let mut sum = 0u32;
        let idx = group
            .iter()
            .position(|r| {
                sum += u32::from(r.weight);
                sum >= pick
            })
            // sum reaches total >= pick at the last record at the latest.
            .unwrap_or(group.len() - 1);
        out.push(group.remove(idx));
    }
    out
}

/// Endpoints of the hosts in order, each host's addresses in the order DNS gave them, without
/// repeats.
pub fn endpoints(resolved: &[(HostTarget, Vec<std::net::IpAddr>)]) -> Vec<Endpoint> {
    let mut out: Vec<Endpoint> = Vec::new();
    for (t, ips) in resolved {
        for ip in ips {
            let e = Endpoint {
                addr: SocketAddr::new(*ip, t.port),
                direct_tls: t.direct_tls,
            };
            if !out.contains(&e) {
                out.push(e);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn srv(priority: u16, weight: u16, target: &str, direct_tls: bool) -> SrvRecord {
        SrvRecord {
            priority,
            weight,
            port: if direct_tls { 5270 } else { 5269 },
            target: target.to_owned(),
            direct_tls,
        }
    }

    fn hosts(plan: SrvPlan) -> Vec<(String, bool)> {
        match plan {
            SrvPlan::Hosts(h) => h.into_iter().map(|t| (t.host, t.direct_tls)).collect(),
            SrvPlan::NoService => panic!("no service"),
        }
    }

    #[test]
    fn priority_orders_first_and_trailing_dots_go() {
        let plan = order_srv(
            vec![
                srv(20, 0, "c.example.", false),
                srv(10, 0, "a.example.", false),
                srv(15, 0, "b.example", true),
            ],
            |_| 0,
        );
        assert_eq!(
            hosts(plan),
            vec![
                ("a.example".into(), false),
                ("b.example".into(), true),
                ("c.example".into(), false)
            ]
        );
    }

    #[test]
    fn direct_tls_first_on_equal_priority_and_tied_draw() {
        let plan = order_srv(
            vec![srv(5, 0, "plain", false), srv(5, 0, "tls", true)],
            |_| 0,
        );
        assert_eq!(
            hosts(plan),
            vec![("tls".into(), true), ("plain".into(), false)]
        );
    }

    #[test]
    fn weights_follow_the_draw() {
        let recs = vec![srv(1, 10, "light", false), srv(1, 90, "heavy", false)];
        // A draw of 50 of 100 falls in heavy's share (11..=100).
        assert_eq!(
            hosts(order_srv(recs.clone(), |_| 50)),
            vec![("heavy".into(), false), ("light".into(), false)]
        );
        // A draw of 5 falls in light's share (0..=10).
        assert_eq!(
            hosts(order_srv(recs.clone(), |_| 5)),
            vec![("light".into(), false), ("heavy".into(), false)]
        );
        // Zero weights go before weighted ones and are picked by a draw of 0.
        let recs = vec![srv(1, 10, "w", false), srv(1, 0, "zero", false)];
        assert_eq!(
            hosts(order_srv(recs, |_| 0)),
            vec![("zero".into(), false), ("w".into(), false)]
        );
    }

    #[test]
    fn a_lone_dot_means_no_service_and_none_means_fallback() {
        assert_eq!(
            order_srv(vec![srv(0, 0, ".", false)], |_| 0),
            SrvPlan::NoService
        );
        assert_eq!(order_srv(vec![], |_| 0), SrvPlan::Hosts(vec![]));
        let t = fallback_target("example.org");
        assert_eq!(
            (t.host.as_str(), t.port, t.direct_tls),
            ("example.org", 5269, false)
        );
    }

    #[test]
    fn endpoints_keep_order_without_repeats() {
        let a = HostTarget {
            host: "a".into(),
            port: 5269,
            direct_tls: false,
        };
        let b = HostTarget {
            host: "b".into(),
            port: 5270,
            direct_tls: true,
        };
        let ip1: std::net::IpAddr = "192.0.2.1".parse().unwrap();
        let ip2: std::net::IpAddr = "2001:db8::1".parse().unwrap();
        let e = endpoints(&[(a.clone(), vec![ip1, ip2, ip1]), (b, vec![ip1])]);
        let got: Vec<(String, bool)> = e
            .iter()
            .map(|e| (e.addr.to_string(), e.direct_tls))
            .collect();
        assert_eq!(
            got,
            vec![
                ("192.0.2.1:5269".into(), false),
                ("[2001:db8::1]:5269".into(), false),
                ("192.0.2.1:5270".into(), true)
            ]
        );
    }

    #[test]
    fn static_addresses_keep_their_tls() {
        let a = StaticAddress {
            host: "127.0.0.1".into(),
            port: 6000,
            tls: S2sTls::Tls,
        };
        let t = static_target(&a);
        assert_eq!(
            (t.host.as_str(), t.port, t.direct_tls),
            ("127.0.0.1", 6000, true)
        );
    }
}
