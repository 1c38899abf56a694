//! The DNS resolver of federation: one thread with a current-thread tokio runtime running hickory
//! (its lookups are async on tokio), fed by a bounded channel; answers go back to the asking shard
//! through a one-shot slot it awaits. A shard never blocks on DNS.
//!
//! Policy when full: at most [`MAX_WAITING`] lookups wait, and at most as many run (a semaphore
//! permit per running lookup); past either a lookup fails at once
//! ([`Resolution::Busy`]) and the stanzas waiting for that domain bounce `remote-server-timeout`.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::config::{NameServerConfig, ResolverConfig};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::TokioResolver;
use tokio::sync::Semaphore;

use crate::federation::targets::{
    endpoints, fallback_target, order_srv, Endpoint, HostTarget, SrvPlan, SrvRecord,
    SRV_DIRECT_TLS, SRV_STARTTLS,
};
use crate::store::oneshot;

/// Lookups waiting for the resolver thread.
const MAX_WAITING: usize = 1024;
/// Time per DNS query attempt.
const QUERY_TIMEOUT: Duration = Duration::from_secs(3);

/// What resolving a remote domain gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Resolution {
    /// Addresses to try, in order.
    Found(Vec<Endpoint>),
    /// No such domain, no s2s service (`.` SRV target) or no address.
    NotFound,
    /// The resolver is overloaded or gone.
    Busy,
}

struct Request {
    domain: String,
    fixed: Option<HostTarget>,
    reply: oneshot::Sender<Resolution>,
}

/// The handle every shard holds.
#[derive(Clone)]
pub(crate) struct Dns {
    tx: tokio::sync::mpsc::Sender<Request>,
}

/// Why the resolver thread could not start.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// `/etc/resolv.conf` unreadable and no `[s2s] nameservers`.
    #[error("DNS configuration: {0}")]
    Config(#[from] hickory_resolver::ResolveError),
    /// The thread or its runtime could not start.
    #[error("DNS thread: {0}")]
    Thread(#[from] std::io::Error),
}

impl Dns {
    /// Starts the resolver thread, asking `nameservers` (UDP, then TCP) or the system's.
    pub(crate) fn start(nameservers: &[SocketAddr]) -> Result<Dns, DnsError> {
        let mut builder = if nameservers.is_empty() {
            TokioResolver::builder_tokio()?
        } else {
            let mut config = ResolverConfig::new();
            for ns in nameservers {
                config.add_name_server(NameServerConfig::new(*ns, Protocol::Udp));
                config.add_name_server(NameServerConfig::new(*ns, Protocol::Tcp));
            }
            TokioResolver::builder_with_config(config, TokioConnectionProvider::default())
        };
        builder.options_mut().timeout = QUERY_TIMEOUT;
        builder.options_mut().attempts = 2;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Request>(MAX_WAITING);
        std::thread::Builder::new()
            .name("petrel-dns".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let resolver = builder.build();
                    // Lookups in flight: the channel bounds those waiting to start, this those
                    // started (each holds a permit until it answers).
                    let running = Arc::new(Semaphore::new(MAX_WAITING));
                    // Ends when every shard dropped its handle.
                    while let Some(req) = rx.recv().await {
                        let Ok(permit) = running.clone().try_acquire_owned() else {
                            req.reply.send(Resolution::Busy);
                            continue;
                        };
                        let resolver = resolver.clone();
                        tokio::spawn(async move {
                            let found = resolve(&resolver, &req.domain, req.fixed).await;
                            req.reply.send(found);
                            drop(permit);
                        });
                    }
                });
            })?;
        Ok(Dns { tx })
    }

    /// Where `domain`'s server is: `fixed` (a static address) or DNS. Resolves to
    /// [`Resolution::Busy`] when the resolver cannot take the lookup.
    pub(crate) async fn resolve(&self, domain: &str, fixed: Option<HostTarget>) -> Resolution {
        let (reply, rx) = oneshot::channel();
        let req = Request {
            domain: domain.to_owned(),
            fixed,
            reply,
        };
        if self.tx.try_send(req).is_err() {
            return Resolution::Busy;
        }
        rx.await.unwrap_or(Resolution::Busy)
    }
}

/// SRV records of both services (RFC 6120 §3.2.1, XEP-0368), or the domain itself on 5269, then
/// the addresses of each host in order.
async fn resolve(r: &TokioResolver, domain: &str, fixed: Option<HostTarget>) -> Resolution {
    let hosts = match fixed {
        Some(t) => vec![t],
        None => {
            let (direct, plain) = futures_lite::future::zip(
                srv(r, SRV_DIRECT_TLS, domain, true),
                srv(r, SRV_STARTTLS, domain, false),
            )
            .await;
            let mut records = direct;
            records.extend(plain);
            match order_srv(records, random_below) {
                SrvPlan::NoService => return Resolution::NotFound,
                SrvPlan::Hosts(h) if h.is_empty() => vec![fallback_target(domain)],
                SrvPlan::Hosts(h) => h,
            }
        }
    };
    let mut resolved = Vec::with_capacity(hosts.len());
    for t in hosts {
        let ips: Vec<IpAddr> = match t.host.parse::<IpAddr>() {
            Ok(ip) => vec![ip],
            Err(_) => match r.lookup_ip(fqdn(&t.host)).await {
                Ok(found) => found.iter().collect(),
                Err(e) => {
                    tracing::debug!(host = t.host, error = %e, "s2s: no address");
                    Vec::new()
                }
            },
        };
        resolved.push((t, ips));
    }
    let found = endpoints(&resolved);
    if found.is_empty() {
        Resolution::NotFound
    } else {
        Resolution::Found(found)
    }
}

/// The SRV records of `service` for `domain`; none on any error (the caller falls back to the
/// domain's own addresses, RFC 6120 §3.2.2).
async fn srv(r: &TokioResolver, service: &str, domain: &str, direct_tls: bool) -> Vec<SrvRecord> {
    match r.srv_lookup(fqdn(&format!("{service}.{domain}"))).await {
        Ok(found) => found
            .iter()
            .map(|s| SrvRecord {
                priority: s.priority(),
                weight: s.weight(),
                port: s.port(),
                target: s.target().to_ascii(),
                direct_tls,
            })
            .collect(),
        Err(e) => {
            tracing::debug!(service, domain, error = %e, "s2s: no SRV records");
            Vec::new()
        }
    }
}

/// An absolute name: no search domains are appended.
fn fqdn(name: &str) -> String {
    if name.ends_with('.') {
        name.to_owned()
    } else {
        format!("{name}.")
    }
}

/// A random number in `0..=n` for the SRV weight draw (uniformity does not matter much here).
fn random_below(n: u32) -> u32 {
    let mut b = [0u8; 4];
    // On failure the draw is 0: the first record of the group, still a valid order.
    let _ = getrandom::getrandom(&mut b);
    u32::from_le_bytes(b) % n.saturating_add(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_ip_targets_need_no_dns() {
        // A nameserver on a closed local port: never asked for an IP literal.
        let dns = Dns::start(&["127.0.0.1:9".parse().unwrap()]).unwrap();
        let fixed = HostTarget {
            host: "127.0.0.1".into(),
            port: 6269,
            direct_tls: true,
        };
        let got = futures_lite::future::block_on(dns.resolve("other.test", Some(fixed)));
        assert_eq!(
            got,
            Resolution::Found(vec![Endpoint {
                addr: "127.0.0.1:6269".parse().unwrap(),
                direct_tls: true
            }])
        );
    }
}
