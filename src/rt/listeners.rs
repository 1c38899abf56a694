//! Turns `[[listen.c2s]]` sections into the read-only c2s configuration every connection shares.

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
            tls,
            allow_plaintext_on_loopback: l.allow_plaintext_on_loopback,
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
        let mut server = (*server).clone();
        server.alpn_protocols = vec![b"http/1.1".to_vec()];
        session.transport_secure = true;
        Some(futures_rustls::TlsAcceptor::from(Arc::new(server)))
    } else {
        None
    };
    Ok(HttpListener {
        addr: base.addr,
        tls,
        bosh: super::bosh::BoshEndpoint::new(&session),
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
        }),
    }
}
