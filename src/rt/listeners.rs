//! Turns `[[listen.c2s]]` sections into the read-only c2s configuration every connection shares.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use crate::c2s::{C2sConfig, TlsMode};
use crate::config::{self, C2sListenerConfig, General};
use crate::xml::Limits;

/// A c2s listener ready to accept: where and how.
pub struct C2sListener {
    /// Address to bind (every shard binds it with SO_REUSEPORT).
    pub addr: std::net::SocketAddr,
    /// What each connection's c2s gets.
    pub c2s: Arc<C2sConfig>,
}

/// Builds the listener (and its rustls configuration, generating a self-signed certificate if needed).
pub fn c2s_listener(
    l: &C2sListenerConfig,
    general: &General,
    modules: &crate::modules::C2sModuleOptions,
) -> Result<C2sListener, crate::tls::TlsError> {
    let tls = if l.tls.uses_tls() {
        Some(crate::tls::server_config(l, general)?)
    } else {
        None
    };
    let tls_mode = match l.tls {
        config::TlsMode::Starttls => TlsMode::Starttls,
        config::TlsMode::StarttlsRequired => TlsMode::StarttlsRequired,
        config::TlsMode::Tls => TlsMode::DirectTls,
        config::TlsMode::None => TlsMode::None,
    };
    Ok(C2sListener {
        addr: std::net::SocketAddr::new(l.ip_address, l.port),
        c2s: Arc::new(C2sConfig {
            hosts: general.hosts.iter().map(|h| h.to_string()).collect(),
            tls_mode,
            tls_cert: tls.as_ref().map(|t| t.cert.clone()),
            tls: tls.map(|t| t.config),
            allow_plaintext_on_loopback: l.allow_plaintext_on_loopback,
            sasl2: l.sasl2,
            transport_secure: false,
            limits: Limits {
                max_stanza_bytes: l.max_stanza_size,
                max_depth: l.max_depth,
                max_attrs: l.max_attrs,
            },
            outbound_queue_bytes: l.outbound_queue_bytes,
            auth_timeout: l.auth_timeout,
            idle_timeout: l.idle_timeout,
            ping_interval: modules.ping_interval,
            ping_timeout: modules.ping_timeout,
            register: modules.register,
            sm: modules.sm,
            post_auth_features: modules.post_auth_features.clone(),
            bind2_features: modules.bind2_features.clone(),
        }),
    })
}

/// An HTTP listener ready to accept.
pub struct HttpListener {
    /// Address to bind (every shard binds it with SO_REUSEPORT).
    pub addr: std::net::SocketAddr,
    /// HTTPS when set (ALPN http/1.1).
    pub tls: Option<futures_rustls::TlsAcceptor>,
    /// What the WebSocket and BOSH sessions' c2s gets.
    pub session: Arc<C2sConfig>,
    /// What it serves.
    pub handlers: Vec<config::HttpHandler>,
    /// The BOSH sessions' settings (`/http-bind`).
    pub bosh: super::bosh::BoshEndpoint,
}

impl HttpListener {
    /// Whether `h` is served here.
    pub fn serves(&self, h: config::HttpHandler) -> bool {
        self.handlers.contains(&h)
    }
}

/// Builds an HTTP listener: its sessions are c2s sessions with TLS (if any) below HTTP.
pub fn http_listener(
    l: &config::HttpListenerConfig,
    general: &General,
    modules: &crate::modules::C2sModuleOptions,
) -> Result<HttpListener, crate::tls::TlsError> {
    let mut plain = l.session.clone();
    plain.tls = config::TlsMode::None;
    let base = c2s_listener(&plain, general, modules)?;
    let mut session = (*base.c2s).clone();
    let tls = if l.session.tls.uses_tls() {
        let server = crate::tls::server_config(&l.session, general)?;
        let mut server = (*server.config).clone();
        server.alpn_protocols = vec![b"http/1.1".to_vec()];
        session.transport_secure = true;
        Some(futures_rustls::TlsAcceptor::from(Arc::new(server)))
    } else {
        None
    };
    Ok(HttpListener {
        addr: base.addr,
        tls,
        bosh: super::bosh::BoshEndpoint::new(&session, l.bosh_max_wait, l.bosh_inactivity),
        session: Arc::new(session),
        handlers: l.handlers.clone(),
    })
}

/// A component listener ready to accept (XEP-0114).
pub struct ComponentListener {
    /// Address to bind (every shard binds it with SO_REUSEPORT).
    pub addr: std::net::SocketAddr,
    /// What each component stream gets.
    pub cfg: Arc<crate::component::ComponentConfig>,
}

/// Builds a component listener with the secrets of every configured component.
pub fn component_listener(
    l: &config::ComponentListenerConfig,
    components: &std::collections::BTreeMap<config::Domain, config::ComponentSecret>,
    server: &str,
) -> ComponentListener {
    ComponentListener {
        addr: std::net::SocketAddr::new(l.ip_address, l.port),
        cfg: Arc::new(crate::component::ComponentConfig {
            secrets: components
                .iter()
                .map(|(d, s)| (d.to_string(), s.password.clone()))
                .collect(),
            limits: Limits {
                max_stanza_bytes: l.max_stanza_size,
                max_depth: l.max_depth,
                max_attrs: l.max_attrs,
            },
            outbound_queue_bytes: l.outbound_queue_bytes,
            auth_timeout: l.auth_timeout,
            idle_timeout: l.idle_timeout,
            ping_interval: l.ping_interval,
            ping_timeout: l.ping_timeout,
            server: server.to_owned(),
        }),
    }
}

/// Every address the configuration listens on (the config refuses port 0 for every listener).
fn configured_addrs(listen: &config::Listen) -> Vec<SocketAddr> {
    let at = |ip, port| SocketAddr::new(ip, port);
    listen
        .c2s
        .iter()
        .map(|l| at(l.ip_address, l.port))
        .chain(
            listen
                .http
                .iter()
                .map(|l| at(l.session.ip_address, l.session.port)),
        )
        .chain(listen.s2s.iter().map(|l| at(l.ip_address, l.port)))
        .chain(listen.component.iter().map(|l| at(l.ip_address, l.port)))
        .collect()
}

/// Fails with the first configured address some socket already listens on.
///
/// The shards bind every address with `SO_REUSEPORT`, and the kernel lets any process of the same
/// user join such a group: a second `petrel serve` on the same ports would start without an error
/// and take part of the new connections, its sessions invisible to the first server (messages
/// between the two halves would go to offline storage). A test bind without `SO_REUSEPORT` would
/// also trip over the connections a restarted server left in TIME_WAIT, so the kernel's own table
/// of listening sockets (`/proc/net/tcp`, `/proc/net/tcp6`) is read instead. Unreadable tables
/// (no procfs) check nothing.
///
/// A server killed a moment ago (`kill -9`, then a restart) leaves its listening sockets in the
/// table for some milliseconds while the kernel closes its files: a taken address is looked up
/// again for up to [`GONE_WITHIN`] before it counts.
pub fn ensure_free(listen: &config::Listen) -> Result<(), SocketAddr> {
    let started = std::time::Instant::now();
    loop {
        match taken_addr(listen) {
            Some(taken) if started.elapsed() >= GONE_WITHIN => return Err(taken),
            Some(_) => std::thread::sleep(std::time::Duration::from_millis(50)),
            None => return Ok(()),
        }
    }
}

/// How long a listening socket of a process that just died may stay in the kernel's table.
const GONE_WITHIN: std::time::Duration = std::time::Duration::from_secs(1);

/// The first configured address some socket listens on now.
fn taken_addr(listen: &config::Listen) -> Option<SocketAddr> {
    let addrs = configured_addrs(listen);
    if addrs.is_empty() {
        return None;
    }
    let listening: Vec<SocketAddr> = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .flat_map(|table| listening_sockets(&table))
        .collect();
    addrs
        .into_iter()
        .find(|a| listening.iter().any(|l| overlaps(*a, *l)))
}

/// The local addresses of the sockets in state LISTEN in a `/proc/net/tcp{,6}` table.
fn listening_sockets(table: &str) -> Vec<SocketAddr> {
    /// `st` of a listening socket (`TCP_LISTEN`).
    const LISTEN: &str = "0A";
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let local = fields.nth(1)?;
            let state = fields.nth(1)?;
            (state == LISTEN).then(|| parse_proc_addr(local)).flatten()
        })
        .collect()
}

/// `0100007F:1466` (IPv4) or 32 hex digits and a port (IPv6): the address words in host byte
/// order, the port in hex.
fn parse_proc_addr(s: &str) -> Option<SocketAddr> {
    let (ip, port) = s.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |h: &str| u32::from_str_radix(h, 16).ok().map(u32::to_le_bytes);
    let ip = match ip.len() {
        8 => IpAddr::from(word(ip)?),
        32 => {
            let mut b = [0u8; 16];
            for (i, chunk) in b.chunks_exact_mut(4).enumerate() {
                chunk.copy_from_slice(&word(ip.get(i * 8..i * 8 + 8)?)?);
            }
            IpAddr::from(b)
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// Whether a listener on `a` and one on `b` would share connections: the config's rule for two
/// listeners ([`config::addrs_overlap`]), with the kernel's IPv4-mapped IPv6 addresses compared as
/// IPv4 (a `::` listener takes IPv4 too unless the system says `bindv6only`, so it counts as a
/// wildcard for both).
fn overlaps(a: SocketAddr, b: SocketAddr) -> bool {
    let canon = |ip: IpAddr| match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    a.port() == b.port() && config::addrs_overlap(canon(a.ip()), canon(b.ip()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_listening_sockets_from_proc_tables() {
        let v4 = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1466 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0
   1: 0100007F:1466 0100007F:C350 06 00000000:00000000 03:00000C0A 00000000     0        0 0 3 0
   2: 00000000:14A0 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1 0 100 0 0 10 0
";
        let got = listening_sockets(v4);
        assert_eq!(
            got,
            vec![
                "127.0.0.1:5222".parse::<SocketAddr>().unwrap(),
                "0.0.0.0:5280".parse().unwrap()
            ]
        );
        let v6 =
            "  sl  local_address                         remote_address                        st
   0: 00000000000000000000000001000000:1467 00000000000000000000000000000000:0000 0A 0
   1: 0000000000000000FFFF00000100007F:1468 00000000000000000000000000000000:0000 0A 0
";
        assert_eq!(
            listening_sockets(v6),
            vec![
                "[::1]:5223".parse::<SocketAddr>().unwrap(),
                "[::ffff:127.0.0.1]:5224".parse().unwrap()
            ]
        );
    }

    #[test]
    fn wildcards_and_mapped_addresses_overlap() {
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert!(overlaps(a("127.0.0.1:5222"), a("127.0.0.1:5222")));
        assert!(overlaps(a("127.0.0.1:5222"), a("0.0.0.0:5222")));
        assert!(overlaps(a("0.0.0.0:5222"), a("10.0.0.1:5222")));
        assert!(overlaps(a("127.0.0.1:5222"), a("[::]:5222")));
        assert!(overlaps(a("127.0.0.1:5222"), a("[::ffff:127.0.0.1]:5222")));
        assert!(!overlaps(a("127.0.0.1:5222"), a("127.0.0.2:5222")));
        assert!(!overlaps(a("127.0.0.1:5222"), a("127.0.0.1:5223")));
    }

    #[test]
    fn a_listening_socket_is_found_and_a_closed_one_is_not() {
        let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = held.local_addr().unwrap();
        let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
        assert!(listening_sockets(&table).contains(&addr));
        drop(held);
        let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
        assert!(!listening_sockets(&table).contains(&addr));
    }
}
