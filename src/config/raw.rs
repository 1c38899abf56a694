//! The file as written: serde input structs. Optional fields stay `None` so defaults are applied
//! (and not validated with a misleading position) in `validate`; values that validation checks
//! keep their byte span so errors can point at them.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

use super::types::{HttpHandler, LogLevel, RoutingModule, TlsMode};

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub general: RawGeneral,
    #[serde(default)]
    pub auth: RawAuth,
    #[serde(default)]
    pub listen: RawListen,
    #[serde(default)]
    pub shards: RawShards,
    #[serde(default)]
    pub store: super::store::RawStore,
    #[serde(default)]
    pub modules: BTreeMap<Spanned<String>, toml::Table>,
    pub admin: Option<Spanned<super::admin::RawAdmin>>,
    /// `[cluster]`: absent on a single node.
    pub cluster: Option<Spanned<super::cluster::RawCluster>>,
    #[serde(default)]
    pub s2s: super::s2s::RawS2s,
    /// `[components."domain"]`: external components' secrets.
    #[serde(default)]
    pub components: BTreeMap<Spanned<String>, super::component::RawComponentSecret>,
}

/// `[general]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGeneral {
    pub hosts: Spanned<Vec<Spanned<String>>>,
    pub data_dir: Option<PathBuf>,
    pub loglevel: Option<LogLevel>,
    pub routing_modules: Option<Spanned<Vec<Spanned<RoutingModule>>>>,
}

/// `[auth]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAuth {
    pub scram_iterations: Option<Spanned<u32>>,
    #[serde(default)]
    pub throttle: RawThrottle,
}

/// `[auth.throttle]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawThrottle {
    pub enabled: Option<bool>,
    pub free_failures: Option<Spanned<u64>>,
    pub delay_ms: Option<Spanned<u64>>,
    pub max_delay_ms: Option<Spanned<u64>>,
    pub max_failures: Option<Spanned<u64>>,
    pub window: Option<Spanned<u64>>,
    pub ban_time: Option<Spanned<u64>>,
    pub account_free_failures: Option<Spanned<u64>>,
    pub account_max_delay_ms: Option<Spanned<u64>>,
    pub max_tracked: Option<Spanned<u64>>,
    pub ipv6_prefix: Option<Spanned<u64>>,
    pub exempt: Option<Vec<Spanned<String>>>,
}

/// `[listen]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawListen {
    #[serde(default)]
    pub c2s: Vec<Spanned<RawC2s>>,
    #[serde(default)]
    pub http: Vec<Spanned<RawHttp>>,
    #[serde(default)]
    pub s2s: Vec<Spanned<super::s2s::RawS2sListen>>,
    #[serde(default)]
    pub component: Vec<Spanned<super::component::RawComponentListener>>,
}

/// One `[[listen.http]]`: the session settings of `[[listen.c2s]]` (for WebSocket and BOSH
/// sessions) plus the handlers served.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHttp {
    pub port: Spanned<u16>,
    pub ip_address: Option<Spanned<IpAddr>>,
    pub tls: Option<Spanned<TlsMode>>,
    pub certfile: Option<Spanned<PathBuf>>,
    pub keyfile: Option<Spanned<PathBuf>>,
    pub allow_plaintext_on_loopback: Option<bool>,
    pub sasl2: Option<bool>,
    pub max_stanza_size: Option<Spanned<usize>>,
    pub max_depth: Option<Spanned<usize>>,
    pub max_attrs: Option<Spanned<usize>>,
    pub outbound_queue_bytes: Option<Spanned<usize>>,
    pub auth_timeout: Option<Spanned<u64>>,
    pub idle_timeout: Option<Spanned<u64>>,
    pub bosh_max_wait: Option<Spanned<u64>>,
    pub bosh_inactivity: Option<Spanned<u64>>,
    pub handlers: Option<Vec<HttpHandler>>,
}

impl RawHttp {
    /// The session settings, checked like a c2s listener's.
    pub(super) fn session(&self) -> RawC2s {
        RawC2s {
            port: self.port.clone(),
            ip_address: self.ip_address.clone(),
            tls: self.tls.as_ref().map(|t| *t.get_ref()),
            certfile: self.certfile.clone(),
            keyfile: self.keyfile.clone(),
            allow_plaintext_on_loopback: self.allow_plaintext_on_loopback,
            sasl2: self.sasl2,
            max_stanza_size: self.max_stanza_size.clone(),
            max_depth: self.max_depth.clone(),
            max_attrs: self.max_attrs.clone(),
            outbound_queue_bytes: self.outbound_queue_bytes.clone(),
            auth_timeout: self.auth_timeout.clone(),
            idle_timeout: self.idle_timeout.clone(),
        }
    }
}

/// One `[[listen.c2s]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawC2s {
    pub port: Spanned<u16>,
    pub ip_address: Option<Spanned<IpAddr>>,
    pub tls: Option<TlsMode>,
    pub certfile: Option<Spanned<PathBuf>>,
    pub keyfile: Option<Spanned<PathBuf>>,
    pub allow_plaintext_on_loopback: Option<bool>,
    pub sasl2: Option<bool>,
    pub max_stanza_size: Option<Spanned<usize>>,
    pub max_depth: Option<Spanned<usize>>,
    pub max_attrs: Option<Spanned<usize>>,
    pub outbound_queue_bytes: Option<Spanned<usize>>,
    pub auth_timeout: Option<Spanned<u64>>,
    pub idle_timeout: Option<Spanned<u64>>,
}

/// `[shards]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawShards {
    pub count: Option<Spanned<usize>>,
    pub ring_capacity: Option<Spanned<usize>>,
    pub outbox_capacity: Option<Spanned<usize>>,
    pub io_memory_kib: Option<Spanned<usize>>,
    pub ring_depth: Option<Spanned<usize>>,
    pub nap_us: Option<Spanned<usize>>,
    pub huge_pages: Option<bool>,
}
