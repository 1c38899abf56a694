//! `petrel.toml`: typed, validated configuration. Every error points at `FILE:LINE:COL`.
//!
//! Relative paths (`data_dir`, `certfile`, `keyfile`) are taken relative to the working
//! directory, as written.

mod admin;
mod cluster;
mod component;
mod error;
mod raw;
mod s2s;
mod store;
mod throttle;
mod types;
mod validate;

pub use validate::addrs_overlap;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Serialize, Serializer};

pub use admin::AdminConfig;
pub use cluster::{ClusterConfig, NatsAuth, NatsUrl};
pub use component::{ComponentListenerConfig, ComponentSecret};
pub use error::{ConfigError, InvalidValue, Location};
pub use s2s::{S2sListenerConfig, S2sOptions, S2sTls, StaticAddress, S2S_PORT};
pub use store::{StoreBackend, StoreConfig};
pub use throttle::{IpNet, NetError, ThrottleConfig};
pub use types::{Domain, DomainError, HttpHandler, LogLevel, RoutingModule, TlsMode};

/// The embedded default configuration: the top-level `petrel.toml`.
pub const EMBEDDED_TOML: &str = include_str!("../../petrel.toml");
/// The path reported in errors and logs for the embedded default.
pub const EMBEDDED_PATH: &str = "<embedded petrel.toml>";

/// The whole validated configuration.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Config {
    /// `[general]`.
    pub general: General,
    /// `[auth]`.
    pub auth: AuthConfig,
    /// `[listen]`.
    pub listen: Listen,
    /// `[shards]`.
    pub shards: ShardsConfig,
    /// `[store]`.
    pub store: StoreConfig,
    /// `[s2s]`: federation with other servers.
    pub s2s: S2sOptions,
    /// `[admin]`: the admin API's token (absent: `/api` answers 403).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin: Option<AdminConfig>,
    /// `[cluster]`: this node in a petrel cluster over NATS (absent: a single node).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterConfig>,
    /// `[components."domain"]`: the shared secret of each external component (XEP-0114).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub components: BTreeMap<Domain, ComponentSecret>,
    /// `[modules.NAME]` tables, by name, for the module registry to validate.
    pub modules: BTreeMap<String, toml::Table>,
    /// The file this was read from (or [`EMBEDDED_PATH`]).
    #[serde(skip)]
    pub source: PathBuf,
    /// Where each `[modules.NAME]` key is, so the registry can report `FILE:LINE:COL`.
    #[serde(skip)]
    module_locations: BTreeMap<String, Location>,
}

/// `[general]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct General {
    /// Served domains, validated and lowercased, at least one.
    pub hosts: Vec<Domain>,
    /// Where the store, generated certificates and other state live.
    #[serde(serialize_with = "ser_path")]
    pub data_dir: PathBuf,
    /// Log verbosity (`RUST_LOG` overrides it).
    pub loglevel: LogLevel,
    /// The routing chain, in order, no duplicates.
    pub routing_modules: Vec<RoutingModule>,
}

/// `[auth]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuthConfig {
    /// PBKDF2 iterations for new SCRAM secrets (>= 4096).
    pub scram_iterations: u32,
    /// `[auth.throttle]`: login failure throttling.
    pub throttle: ThrottleConfig,
}

/// `[listen]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Listen {
    /// `[[listen.c2s]]` listeners, at least one.
    pub c2s: Vec<C2sListenerConfig>,
    /// `[[listen.http]]` listeners (WebSocket, BOSH, upload, metrics, admin API).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub http: Vec<HttpListenerConfig>,
    /// `[[listen.s2s]]` listeners (other servers connecting here).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub s2s: Vec<S2sListenerConfig>,
    /// `[[listen.component]]` listeners (XEP-0114 external components).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub component: Vec<ComponentListenerConfig>,
}

/// One `[[listen.http]]` listener: address, TLS and session settings as for c2s (`tls` is
/// "tls" for HTTPS or "none"), and the handlers it serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HttpListenerConfig {
    /// Address, TLS and the settings of the WebSocket and BOSH sessions it carries.
    #[serde(flatten)]
    pub session: C2sListenerConfig,
    /// What it serves.
    pub handlers: Vec<HttpHandler>,
    /// Longest BOSH `wait` granted (and the default): how long a request is held empty.
    #[serde(serialize_with = "ser_secs")]
    pub bosh_max_wait: Duration,
    /// A BOSH session with no request for this long ends (its client is gone).
    #[serde(serialize_with = "ser_secs")]
    pub bosh_inactivity: Duration,
}

/// One `[[listen.c2s]]` listener.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct C2sListenerConfig {
    /// TCP port.
    pub port: u16,
    /// Address to bind.
    pub ip_address: IpAddr,
    /// STARTTLS, direct TLS or none.
    pub tls: TlsMode,
    /// PEM certificate chain; with `keyfile`, or neither (then a self-signed one is generated).
    #[serde(
        serialize_with = "ser_opt_path",
        skip_serializing_if = "Option::is_none"
    )]
    pub certfile: Option<PathBuf>,
    /// PEM private key for `certfile`.
    #[serde(
        serialize_with = "ser_opt_path",
        skip_serializing_if = "Option::is_none"
    )]
    pub keyfile: Option<PathBuf>,
    /// Allow PLAIN without TLS when the peer is on a loopback address.
    pub allow_plaintext_on_loopback: bool,
    /// Offer SASL2 (XEP-0388) with Bind 2 (XEP-0386) beside RFC 6120 SASL.
    pub sasl2: bool,
    /// Largest stanza accepted, in bytes.
    pub max_stanza_size: usize,
    /// Deepest element nesting accepted inside a stanza.
    pub max_depth: usize,
    /// Most attributes accepted on one element.
    pub max_attrs: usize,
    /// Per-connection outbound buffer bound; a slower reader gets policy-violation.
    pub outbound_queue_bytes: usize,
    /// Time from connect until a session must be bound.
    #[serde(serialize_with = "ser_secs")]
    pub auth_timeout: Duration,
    /// Time without any byte from the client before closing.
    #[serde(serialize_with = "ser_secs")]
    pub idle_timeout: Duration,
}

/// `[shards]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ShardsConfig {
    /// Number of shards (default: CPUs this process may run on).
    pub count: usize,
    /// Capacity of the ring of each ordered shard pair.
    pub ring_capacity: usize,
    /// Capacity of the local overflow queue per destination shard.
    pub outbox_capacity: usize,
    /// glommio io memory per executor, in KiB.
    pub io_memory_kib: usize,
    /// io_uring ring depth per executor; None: the deepest that fits the memlock limit.
    pub ring_depth: Option<usize>,
    /// With more than one shard, how long (microseconds) a shard that runs out of work first
    /// sleeps without asking the others to wake it (0: never; see the README's `shards.nap_us`).
    pub nap_us: usize,
    /// Transparent huge pages for the process's memory (off: idle sessions are charged in 4 KiB
    /// pages, not 2 MiB ones).
    pub huge_pages: bool,
}

impl Config {
    /// Reads and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::parse(&text, path)
    }

    /// Parses and validates `text`; `path` is only used in error messages and `source`.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let raw: raw::RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            at: e
                .span()
                .map_or(Location::START, |span| Location::of_span(text, &span)),
            // The parser's message may span lines; errors are reported on one line.
            message: e
                .message()
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect::<Vec<_>>()
                .join(": "),
        })?;
        validate::validate(raw, text, path)
    }

    /// The embedded default (the top-level `petrel.toml` of the source tree).
    pub fn default_embedded() -> Config {
        // The embedded text is fixed at compile time and the test `embedded_default_is_valid`
        // parses it, so this cannot fail in a tested build.
        Config::parse(EMBEDDED_TOML, Path::new(EMBEDDED_PATH))
            .expect("embedded petrel.toml is valid (checked by tests)")
    }

    /// The effective configuration, with every default filled in, as TOML that parses back
    /// to the same configuration.
    pub fn to_toml(&self) -> String {
        let body = match toml::to_string(self) {
            Ok(body) => body,
            // Every field serializes to a TOML string, integer, boolean, array or table (paths
            // lossily as strings), so the serializer has nothing it could reject.
            Err(e) => unreachable!("effective config serializes: {e}"),
        };
        format!(
            "# effective configuration from {}\n\n{body}",
            self.source.display()
        )
    }

    /// Where `[modules.NAME]` was written, for errors from the module registry.
    pub fn module_location(&self, name: &str) -> Option<Location> {
        self.module_locations.get(name).copied()
    }
}

fn ser_path<S: Serializer>(path: &Path, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&path.to_string_lossy())
}

fn ser_opt_path<S: Serializer>(path: &Option<PathBuf>, s: S) -> Result<S::Ok, S::Error> {
    match path {
        Some(path) => ser_path(path, s),
        None => s.serialize_none(),
    }
}

fn ser_secs<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_secs())
}

#[cfg(test)]
mod tests;
