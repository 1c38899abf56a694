//! External components (XEP-0114): `[[listen.component]]` listeners and the shared secret of each
//! component domain, `[components."domain"] password = "..."`.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use serde::{Deserialize, Serialize, Serializer};
use toml::Spanned;

use super::error::{ConfigError, InvalidValue};
use super::types::Domain;
use super::validate::{Bounds, Ctx};
use super::Listen;

/// XEP-0114's customary port.
const DEFAULT_PORT: u16 = 5347;

const MAX_STANZA_SIZE: Bounds = Bounds {
    field: "listen.component.max_stanza_size",
    default: 65_536,
    min: 4096,
    max: 16 << 20,
};
const MAX_DEPTH: Bounds = Bounds {
    field: "listen.component.max_depth",
    default: 32,
    min: 1,
    max: 1024,
};
const MAX_ATTRS: Bounds = Bounds {
    field: "listen.component.max_attrs",
    default: 64,
    min: 1,
    max: 4096,
};
const OUTBOUND_QUEUE_BYTES: Bounds = Bounds {
    field: "listen.component.outbound_queue_bytes",
    // A component serves many users: more room than one client's stream.
    default: 1 << 20,
    min: 4096,
    max: 1 << 30,
};
const AUTH_TIMEOUT: Bounds = Bounds {
    field: "listen.component.auth_timeout",
    default: 30,
    min: 1,
    max: 3600,
};
const IDLE_TIMEOUT: Bounds = Bounds {
    field: "listen.component.idle_timeout",
    default: 3600,
    min: 1,
    max: 604_800,
};

const PING_INTERVAL: Bounds = Bounds {
    field: "listen.component.ping_interval",
    default: 60,
    min: 0,
    max: 86_400,
};
const PING_TIMEOUT: Bounds = Bounds {
    field: "listen.component.ping_timeout",
    default: 30,
    min: 1,
    max: 3600,
};

/// One `[[listen.component]]` listener.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ComponentListenerConfig {
    /// TCP port (default 5347).
    pub port: u16,
    /// Address to bind (default 127.0.0.1: components usually run beside the server).
    pub ip_address: IpAddr,
    /// Largest stanza accepted, in bytes.
    pub max_stanza_size: usize,
    /// Deepest element nesting accepted inside a stanza.
    pub max_depth: usize,
    /// Most attributes accepted on one element.
    pub max_attrs: usize,
    /// Outbound buffer bound per component; a component that reads slower gets policy-violation.
    pub outbound_queue_bytes: usize,
    /// Time from connect until the handshake must be accepted.
    #[serde(serialize_with = "super::ser_secs")]
    pub auth_timeout: Duration,
    /// Time without any byte from the component before closing.
    #[serde(serialize_with = "super::ser_secs")]
    pub idle_timeout: Duration,
    /// Time without input after which the server pings the component (XEP-0199; zero: never).
    #[serde(serialize_with = "super::ser_secs")]
    pub ping_interval: Duration,
    /// Time a pinged component has to send anything before it is cut off.
    #[serde(serialize_with = "super::ser_secs")]
    pub ping_timeout: Duration,
}

/// `[components."domain"]`: one component's shared secret.
#[derive(Clone, PartialEq, Eq)]
pub struct ComponentSecret {
    /// The handshake's shared secret.
    pub password: String,
}

/// Debug output (logs, panics) never shows the secret.
impl std::fmt::Debug for ComponentSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ComponentSecret")
            .field("password", &"********")
            .finish()
    }
}

/// `check-config` output never shows a secret (as for `[admin]`).
impl Serialize for ComponentSecret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("ComponentSecret", 1)?;
        st.serialize_field("password", "******** (hidden)")?;
        st.end()
    }
}

/// One `[[listen.component]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawComponentListener {
    pub port: Option<Spanned<u16>>,
    pub ip_address: Option<IpAddr>,
    pub max_stanza_size: Option<Spanned<usize>>,
    pub max_depth: Option<Spanned<usize>>,
    pub max_attrs: Option<Spanned<usize>>,
    pub outbound_queue_bytes: Option<Spanned<usize>>,
    pub auth_timeout: Option<Spanned<u64>>,
    pub idle_timeout: Option<Spanned<u64>>,
    pub ping_interval: Option<Spanned<u64>>,
    pub ping_timeout: Option<Spanned<u64>>,
}

/// `[components."domain"]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawComponentSecret {
    pub password: Spanned<String>,
}

/// As for [`ComponentSecret`]: the secret never reaches a Debug output.
impl std::fmt::Debug for RawComponentSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawComponentSecret")
            .field("password", &"********")
            .finish()
    }
}

fn size(cx: &Ctx<'_>, b: &Bounds, v: Option<Spanned<usize>>) -> Result<usize, ConfigError> {
    // Bounded by b.max, which fits in usize on every supported target.
    cx.num(b, v)
        .map(|n| usize::try_from(n).unwrap_or(usize::MAX))
}

/// Validates the component listeners: bounds, and no address shared with another listener.
pub(super) fn listeners(
    cx: &Ctx<'_>,
    raw: Vec<Spanned<RawComponentListener>>,
    listen: &Listen,
) -> Result<Vec<ComponentListenerConfig>, ConfigError> {
    let mut taken: Vec<(IpAddr, u16)> = listen
        .c2s
        .iter()
        .chain(listen.http.iter().map(|h| &h.session))
        .map(|l| (l.ip_address, l.port))
        .collect();
    let mut out = Vec::with_capacity(raw.len());
    for entry in raw {
        let span = entry.span();
        let r = entry.into_inner();
        let port = match &r.port {
            Some(p) if *p.get_ref() == 0 => {
                return Err(cx.err(
                    &p.span(),
                    InvalidValue::TooSmall {
                        field: "listen.component.port",
                        value: 0,
                        min: 1,
                    },
                ))
            }
            Some(p) => *p.get_ref(),
            None => DEFAULT_PORT,
        };
        let ip_address = r.ip_address.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
        let clash = taken
            .iter()
            .any(|&(ip, p)| p == port && super::addrs_overlap(ip, ip_address));
        if clash {
            return Err(cx.err(
                &span,
                InvalidValue::ComponentPortTaken {
                    ip: ip_address,
                    port,
                },
            ));
        }
        taken.push((ip_address, port));
        out.push(ComponentListenerConfig {
            port,
            ip_address,
            max_stanza_size: size(cx, &MAX_STANZA_SIZE, r.max_stanza_size)?,
            max_depth: size(cx, &MAX_DEPTH, r.max_depth)?,
            max_attrs: size(cx, &MAX_ATTRS, r.max_attrs)?,
            outbound_queue_bytes: size(cx, &OUTBOUND_QUEUE_BYTES, r.outbound_queue_bytes)?,
            auth_timeout: Duration::from_secs(cx.num(&AUTH_TIMEOUT, r.auth_timeout)?),
            idle_timeout: Duration::from_secs(cx.num(&IDLE_TIMEOUT, r.idle_timeout)?),
            ping_interval: Duration::from_secs(cx.num(&PING_INTERVAL, r.ping_interval)?),
            ping_timeout: Duration::from_secs(cx.num(&PING_TIMEOUT, r.ping_timeout)?),
        });
    }
    Ok(out)
}

/// Validates `[components]`: valid domains that are not hosted here, non-empty passwords.
pub(super) fn secrets(
    cx: &Ctx<'_>,
    raw: BTreeMap<Spanned<String>, RawComponentSecret>,
    hosts: &[Domain],
) -> Result<BTreeMap<Domain, ComponentSecret>, ConfigError> {
    let mut out = BTreeMap::new();
    for (name, entry) in raw {
        let domain = Domain::parse(name.get_ref()).map_err(|reason| {
            cx.err(
                &name.span(),
                InvalidValue::InvalidDomain {
                    value: name.get_ref().clone(),
                    reason,
                },
            )
        })?;
        if hosts.contains(&domain) {
            return Err(cx.err(
                &name.span(),
                InvalidValue::ComponentIsHosted(domain.to_string()),
            ));
        }
        if entry.password.get_ref().is_empty() {
            return Err(cx.err(
                &entry.password.span(),
                InvalidValue::ComponentPassword(domain.to_string()),
            ));
        }
        out.insert(
            domain,
            ComponentSecret {
                password: entry.password.into_inner(),
            },
        );
    }
    Ok(out)
}
