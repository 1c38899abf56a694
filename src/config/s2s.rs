//! Server-to-server federation: `[[listen.s2s]]` listeners and the `[s2s]` table (authentication,
//! trust, the outgoing queues, DNS and static addresses per remote domain).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize, Serializer};
use toml::Spanned;

use super::error::{ConfigError, InvalidValue};
use super::types::Domain;
use super::validate::{Bounds, Ctx};
use super::{ser_opt_path, ser_secs};

/// The standard s2s port (RFC 6120 §14.7).
pub const S2S_PORT: u16 = 5269;

/// How an s2s stream uses TLS: there is no plaintext federation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum S2sTls {
    /// STARTTLS offered and required before authentication (the default).
    StarttlsRequired,
    /// STARTTLS offered; a peer may authenticate by dialback without it.
    Starttls,
    /// Direct TLS from the first byte (XEP-0368, `_xmpps-server`, ALPN `xmpp-server`).
    Tls,
}

/// One `[[listen.s2s]]` listener.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct S2sListenerConfig {
    /// TCP port.
    pub port: u16,
    /// Address to bind.
    pub ip_address: IpAddr,
    /// STARTTLS (required or not) or direct TLS.
    pub tls: S2sTls,
    /// Largest stanza accepted, in bytes.
    pub max_stanza_size: usize,
    /// Deepest element nesting accepted inside a stanza.
    pub max_depth: usize,
    /// Most attributes accepted on one element.
    pub max_attrs: usize,
    /// Time without any byte from the remote server before closing.
    #[serde(serialize_with = "ser_secs")]
    pub idle_timeout: Duration,
}

/// `[s2s.address."DOMAIN"]`: where a remote domain is reached, instead of DNS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StaticAddress {
    /// Host name or IP address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// STARTTLS or direct TLS on that port.
    pub tls: S2sTls,
}

/// `[s2s]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct S2sOptions {
    /// Server dialback (XEP-0220), for peers whose certificate does not validate.
    pub dialback: bool,
    /// SASL EXTERNAL with a validated certificate (RFC 6120 §6.4, XEP-0178).
    pub sasl_external: bool,
    /// Extra trust anchors (PEM), besides the web PKI roots.
    #[serde(
        serialize_with = "ser_opt_path",
        skip_serializing_if = "Option::is_none"
    )]
    pub cafile: Option<PathBuf>,
    /// Certificate chain shown to peers (default: the c2s certificate).
    #[serde(
        serialize_with = "ser_opt_path",
        skip_serializing_if = "Option::is_none"
    )]
    pub certfile: Option<PathBuf>,
    /// Private key of `certfile`.
    #[serde(
        serialize_with = "ser_opt_path",
        skip_serializing_if = "Option::is_none"
    )]
    pub keyfile: Option<PathBuf>,
    /// Dialback secret (default: random at start, the same on every shard). Never printed.
    #[serde(serialize_with = "ser_secret", skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// Stanzas waiting per remote domain while its stream is set up; past it a new one bounces.
    pub max_queue: usize,
    /// Bytes of stanzas waiting per remote domain; past it a new one bounces.
    pub max_queue_bytes: usize,
    /// Bytes of stanzas waiting over all remote domains of one shard; past it a new one bounces.
    pub max_queue_bytes_total: usize,
    /// Time to resolve, connect and authenticate before the waiting stanzas bounce.
    #[serde(serialize_with = "ser_secs")]
    pub connect_timeout: Duration,
    /// Time without traffic after which an outgoing stream is closed.
    #[serde(serialize_with = "ser_secs")]
    pub idle_timeout: Duration,
    /// Time an outgoing stream's remote may read nothing while stanzas wait for it before the
    /// stream is closed and a new one takes them (zero: never).
    #[serde(serialize_with = "ser_secs")]
    pub send_timeout: Duration,
    /// DNS servers to ask instead of the system's (`ip:port`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<SocketAddr>,
    /// Static addresses by remote domain (checked before DNS).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub address: BTreeMap<String, StaticAddress>,
}

impl Default for S2sOptions {
    fn default() -> S2sOptions {
        S2sOptions {
            dialback: true,
            sasl_external: true,
            cafile: None,
            certfile: None,
            keyfile: None,
            secret: None,
            max_queue: MAX_QUEUE.default as usize,
            max_queue_bytes: MAX_QUEUE_BYTES.default as usize,
            max_queue_bytes_total: MAX_QUEUE_BYTES_TOTAL.default as usize,
            connect_timeout: Duration::from_secs(CONNECT_TIMEOUT.default),
            idle_timeout: Duration::from_secs(OUT_IDLE_TIMEOUT.default),
            send_timeout: Duration::from_secs(SEND_TIMEOUT.default),
            nameservers: Vec::new(),
            address: BTreeMap::new(),
        }
    }
}

/// `check-config` shows that a secret is set, never the secret; the mask has whitespace, which a
/// secret may not, so output pasted back as configuration is refused instead of used.
fn ser_secret<S: Serializer>(_: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str("******** (hidden)")
}

/// Shortest dialback secret accepted: keys derived from a guessable one can be forged.
const MIN_SECRET_LEN: usize = 16;

const LISTEN_MAX_STANZA_SIZE: Bounds = Bounds {
    field: "listen.s2s.max_stanza_size",
    default: 262_144,
    min: 4096,
    max: 16 << 20,
};
const LISTEN_MAX_DEPTH: Bounds = Bounds {
    field: "listen.s2s.max_depth",
    default: 32,
    min: 1,
    max: 1024,
};
const LISTEN_MAX_ATTRS: Bounds = Bounds {
    field: "listen.s2s.max_attrs",
    default: 64,
    min: 1,
    max: 4096,
};
const LISTEN_IDLE_TIMEOUT: Bounds = Bounds {
    field: "listen.s2s.idle_timeout",
    default: 600,
    min: 1,
    max: 86_400,
};
const MAX_QUEUE: Bounds = Bounds {
    field: "s2s.max_queue",
    default: 10_000,
    min: 1,
    max: 1_000_000,
};
const MAX_QUEUE_BYTES: Bounds = Bounds {
    field: "s2s.max_queue_bytes",
    default: 16 << 20,
    min: 4096,
    max: 1 << 30,
};
const MAX_QUEUE_BYTES_TOTAL: Bounds = Bounds {
    field: "s2s.max_queue_bytes_total",
    default: 64 << 20,
    min: 4096,
    max: 16 << 30,
};
const CONNECT_TIMEOUT: Bounds = Bounds {
    field: "s2s.connect_timeout",
    default: 15,
    min: 1,
    max: 600,
};
const SEND_TIMEOUT: Bounds = Bounds {
    field: "s2s.send_timeout",
    default: 60,
    min: 0,
    max: 86_400,
};
const OUT_IDLE_TIMEOUT: Bounds = Bounds {
    field: "s2s.idle_timeout",
    default: 600,
    min: 1,
    max: 86_400,
};

/// One `[[listen.s2s]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawS2sListen {
    pub port: Option<Spanned<u16>>,
    pub ip_address: Option<IpAddr>,
    pub tls: Option<S2sTls>,
    pub max_stanza_size: Option<Spanned<usize>>,
    pub max_depth: Option<Spanned<usize>>,
    pub max_attrs: Option<Spanned<usize>>,
    pub idle_timeout: Option<Spanned<u64>>,
}

/// `[s2s]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawS2s {
    pub dialback: Option<bool>,
    pub sasl_external: Option<bool>,
    pub cafile: Option<PathBuf>,
    pub certfile: Option<Spanned<PathBuf>>,
    pub keyfile: Option<Spanned<PathBuf>>,
    pub secret: Option<Spanned<String>>,
    pub max_queue: Option<Spanned<usize>>,
    pub max_queue_bytes: Option<Spanned<usize>>,
    pub max_queue_bytes_total: Option<Spanned<usize>>,
    pub connect_timeout: Option<Spanned<u64>>,
    pub idle_timeout: Option<Spanned<u64>>,
    pub send_timeout: Option<Spanned<u64>>,
    pub nameservers: Option<Vec<SocketAddr>>,
    #[serde(default)]
    pub address: BTreeMap<Spanned<String>, Spanned<RawAddress>>,
}

/// `[s2s.address."DOMAIN"]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAddress {
    pub host: Option<String>,
    pub ip_address: Option<IpAddr>,
    pub port: Option<u16>,
    pub tls: Option<S2sTls>,
}

/// Validates one `[[listen.s2s]]`; the port is 5269 unless given (and not 0).
pub(super) fn listener(cx: &Ctx<'_>, raw: RawS2sListen) -> Result<S2sListenerConfig, ConfigError> {
    let port = match &raw.port {
        Some(p) if *p.get_ref() == 0 => {
            return Err(cx.err(
                &p.span(),
                InvalidValue::TooSmall {
                    field: "listen.s2s.port",
                    value: 0,
                    min: 1,
                },
            ))
        }
        Some(p) => *p.get_ref(),
        None => S2S_PORT,
    };
    Ok(S2sListenerConfig {
        port,
        ip_address: raw.ip_address.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        tls: raw.tls.unwrap_or(S2sTls::StarttlsRequired),
        max_stanza_size: cx.size(&LISTEN_MAX_STANZA_SIZE, raw.max_stanza_size)?,
        max_depth: cx.size(&LISTEN_MAX_DEPTH, raw.max_depth)?,
        max_attrs: cx.size(&LISTEN_MAX_ATTRS, raw.max_attrs)?,
        idle_timeout: Duration::from_secs(cx.num(&LISTEN_IDLE_TIMEOUT, raw.idle_timeout)?),
    })
}

/// Validates `[s2s]`.
pub(super) fn options(cx: &Ctx<'_>, raw: RawS2s) -> Result<S2sOptions, ConfigError> {
    super::validate::cert_key_pair(cx, &raw.certfile, &raw.keyfile)?;
    if let Some(secret) = &raw.secret {
        let s = secret.get_ref();
        if s.len() < MIN_SECRET_LEN || s.chars().any(char::is_whitespace) {
            return Err(cx.err(&secret.span(), InvalidValue::S2sSecret(MIN_SECRET_LEN)));
        }
    }
    let mut address = BTreeMap::new();
    for (domain, entry) in raw.address {
        let name = Domain::parse(domain.get_ref()).map_err(|reason| {
            cx.err(
                &domain.span(),
                InvalidValue::InvalidDomain {
                    value: domain.get_ref().clone(),
                    reason,
                },
            )
        })?;
        let span = entry.span();
        let entry = entry.into_inner();
        let host = match (entry.host, entry.ip_address) {
            (Some(host), None) => host,
            (None, Some(ip)) => ip.to_string(),
            _ => return Err(cx.err(&span, InvalidValue::S2sAddressHost)),
        };
        if entry.tls == Some(S2sTls::Starttls) {
            // Optional TLS has no meaning on an outgoing stream: it would silently be required.
            return Err(cx.err(&span, InvalidValue::S2sAddressStarttls));
        }
        address.insert(
            name.as_str().to_owned(),
            StaticAddress {
                host,
                port: entry.port.unwrap_or(S2S_PORT),
                tls: entry.tls.unwrap_or(S2sTls::StarttlsRequired),
            },
        );
    }
    let defaults = S2sOptions::default();
    Ok(S2sOptions {
        dialback: raw.dialback.unwrap_or(defaults.dialback),
        sasl_external: raw.sasl_external.unwrap_or(defaults.sasl_external),
        cafile: raw.cafile,
        certfile: raw.certfile.map(Spanned::into_inner),
        keyfile: raw.keyfile.map(Spanned::into_inner),
        secret: raw.secret.map(Spanned::into_inner),
        max_queue: cx.size(&MAX_QUEUE, raw.max_queue)?,
        max_queue_bytes: cx.size(&MAX_QUEUE_BYTES, raw.max_queue_bytes)?,
        max_queue_bytes_total: cx.size(&MAX_QUEUE_BYTES_TOTAL, raw.max_queue_bytes_total)?,
        connect_timeout: Duration::from_secs(cx.num(&CONNECT_TIMEOUT, raw.connect_timeout)?),
        idle_timeout: Duration::from_secs(cx.num(&OUT_IDLE_TIMEOUT, raw.idle_timeout)?),
        send_timeout: Duration::from_secs(cx.num(&SEND_TIMEOUT, raw.send_timeout)?),
        nameservers: raw.nameservers.unwrap_or_default(),
        address,
    })
}
