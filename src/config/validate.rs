//! Raw file -> validated [`Config`]: defaults, bounds, cross-field checks.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use super::error::{ConfigError, InvalidValue, Location};
use super::raw::{RawAuth, RawC2s, RawConfig, RawGeneral, RawListen, RawShards};
use super::types::{Domain, HttpHandler, LogLevel, RoutingModule, TlsMode};
use super::{
    AuthConfig, C2sListenerConfig, Config, General, HttpListenerConfig, Listen, ShardsConfig,
};

/// Inclusive bounds and default of one numeric setting.
pub(super) struct Bounds {
    pub field: &'static str,
    pub default: u64,
    pub min: u64,
    pub max: u64,
}

const SCRAM_ITERATIONS: Bounds = Bounds {
    field: "auth.scram_iterations",
    default: 10_000,
    min: 4096,
    max: 10_000_000,
};
const MAX_STANZA_SIZE: Bounds = Bounds {
    field: "listen.c2s.max_stanza_size",
    default: 65_536,
    min: 4096,
    max: 16 << 20,
};
const MAX_DEPTH: Bounds = Bounds {
    field: "listen.c2s.max_depth",
    default: 32,
    min: 1,
    max: 1024,
};
const MAX_ATTRS: Bounds = Bounds {
    field: "listen.c2s.max_attrs",
    default: 64,
    min: 1,
    max: 4096,
};
const OUTBOUND_QUEUE_BYTES: Bounds = Bounds {
    field: "listen.c2s.outbound_queue_bytes",
    default: 262_144,
    min: 4096,
    max: 1 << 30,
};
const AUTH_TIMEOUT: Bounds = Bounds {
    field: "listen.c2s.auth_timeout",
    default: 30,
    min: 1,
    max: 3600,
};
const IDLE_TIMEOUT: Bounds = Bounds {
    field: "listen.c2s.idle_timeout",
    default: 600,
    min: 1,
    max: 86_400,
};
const BOSH_MAX_WAIT: Bounds = Bounds {
    field: "listen.http.bosh_max_wait",
    default: 60,
    min: 1,
    max: 3600,
};
const BOSH_INACTIVITY: Bounds = Bounds {
    field: "listen.http.bosh_inactivity",
    default: 30,
    min: 1,
    max: 86_400,
};
const SHARD_COUNT: Bounds = Bounds {
    field: "shards.count",
    default: 1, // replaced by the CPU count at run time
    min: 1,
    max: 1024,
};
const RING_CAPACITY: Bounds = Bounds {
    field: "shards.ring_capacity",
    default: 1024,
    min: 1,
    max: 1 << 20,
};
const OUTBOX_CAPACITY: Bounds = Bounds {
    field: "shards.outbox_capacity",
    default: 8192,
    min: 1,
    max: 1 << 24,
};
/// io_uring's own bounds on a ring's submission entries.
const RING_DEPTH: Bounds = Bounds {
    field: "shards.ring_depth",
    default: 4096,
    min: 1,
    max: 32768,
};
/// Up to 100 ms: a nap delays what other shards send (see the README).
const NAP_US: Bounds = Bounds {
    field: "shards.nap_us",
    default: 200,
    min: 0,
    max: 100_000,
};
const IO_MEMORY_KIB: Bounds = Bounds {
    field: "shards.io_memory_kib",
    default: 64,
    min: 64,
    max: 1 << 20,
};

/// Carries the text and path so every check can build a located error.
pub(super) struct Ctx<'a> {
    text: &'a str,
    path: &'a Path,
}

impl Ctx<'_> {
    fn at(&self, span: &std::ops::Range<usize>) -> Location {
        Location::of_span(self.text, span)
    }

    pub(super) fn err(&self, span: &std::ops::Range<usize>, kind: InvalidValue) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.to_owned(),
            at: self.at(span),
            kind,
        }
    }

    fn err_at(&self, at: Location, kind: InvalidValue) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.to_owned(),
            at,
            kind,
        }
    }

    /// The value or its default, checked against `b`.
    pub(super) fn num<T>(&self, b: &Bounds, value: Option<Spanned<T>>) -> Result<u64, ConfigError>
    where
        T: Copy + TryInto<u64>,
    {
        let Some(value) = value else {
            return Ok(b.default);
        };
        // usize/u32/u64 always fit in u64 on supported (<= 64-bit) targets; saturate otherwise.
        let n: u64 = (*value.get_ref()).try_into().unwrap_or(u64::MAX);
        if n < b.min {
            return Err(self.err(
                &value.span(),
                InvalidValue::TooSmall {
                    field: b.field,
                    value: n,
                    min: b.min,
                },
            ));
        }
        if n > b.max {
            return Err(self.err(
                &value.span(),
                InvalidValue::TooLarge {
                    field: b.field,
                    value: n,
                    max: b.max,
                },
            ));
        }
        Ok(n)
    }

    /// Like `num`, for settings held as `usize` (bounds are all below `u32::MAX`).
    pub(super) fn size(
        &self,
        b: &Bounds,
        value: Option<Spanned<usize>>,
    ) -> Result<usize, ConfigError> {
        // Bounded by b.max, which fits in usize on every supported target.
        self.num(b, value)
            .map(|n| usize::try_from(n).unwrap_or(usize::MAX))
    }
}

/// Builds the validated configuration from the raw file.
pub(super) fn validate(raw: RawConfig, text: &str, path: &Path) -> Result<Config, ConfigError> {
    let cx = Ctx { text, path };
    let general = general(&cx, raw.general)?;
    let auth = auth(&cx, raw.auth)?;
    let mut raw_listen = raw.listen;
    let raw_component = std::mem::take(&mut raw_listen.component);
    let mut listen = listeners(&cx, raw_listen)?;
    listen.component = super::component::listeners(&cx, raw_component, &listen)?;
    let components = super::component::secrets(&cx, raw.components, &general.hosts)?;
    let s2s = super::s2s::options(&cx, raw.s2s)?;
    let shards = shards(&cx, raw.shards)?;
    let store = super::store::store(&cx, raw.store)?;
    let admin = super::admin::admin(&cx, raw.admin)?;
    let secret_missing = !listen.s2s.is_empty() && s2s.secret.is_none();
    let cluster = super::cluster::cluster(&cx, raw.cluster, secret_missing)?;
    let mut modules = BTreeMap::new();
    let mut module_locations = BTreeMap::new();
    for (name, table) in raw.modules {
        module_locations.insert(name.get_ref().clone(), cx.at(&name.span()));
        modules.insert(name.into_inner(), table);
    }
    Ok(Config {
        general,
        auth,
        listen,
        shards,
        store,
        s2s,
        admin,
        cluster,
        components,
        modules,
        source: path.to_owned(),
        module_locations,
    })
}

fn general(cx: &Ctx<'_>, raw: RawGeneral) -> Result<General, ConfigError> {
    let hosts_span = raw.hosts.span();
    let raw_hosts = raw.hosts.into_inner();
    if raw_hosts.is_empty() {
        return Err(cx.err(&hosts_span, InvalidValue::NoHosts));
    }
    let mut hosts: Vec<Domain> = Vec::with_capacity(raw_hosts.len());
    for host in raw_hosts {
        let domain = Domain::parse(host.get_ref()).map_err(|reason| {
            cx.err(
                &host.span(),
                InvalidValue::InvalidDomain {
                    value: host.get_ref().clone(),
                    reason,
                },
            )
        })?;
        if hosts.contains(&domain) {
            return Err(cx.err(
                &host.span(),
                InvalidValue::DuplicateHost(domain.as_str().to_owned()),
            ));
        }
        hosts.push(domain);
    }

    let routing_modules = match raw.routing_modules {
        None => RoutingModule::DEFAULT_CHAIN.to_vec(),
        Some(list) => {
            let list_span = list.span();
            let list = list.into_inner();
            if list.is_empty() {
                return Err(cx.err(&list_span, InvalidValue::NoRoutingModules));
            }
            let mut chain = Vec::with_capacity(list.len());
            for m in list {
                if chain.contains(m.get_ref()) {
                    return Err(cx.err(
                        &m.span(),
                        InvalidValue::DuplicateRoutingModule(*m.get_ref()),
                    ));
                }
                chain.push(*m.get_ref());
            }
            chain
        }
    };

    Ok(General {
        hosts,
        data_dir: raw.data_dir.unwrap_or_else(|| PathBuf::from("./data")),
        loglevel: raw.loglevel.unwrap_or(LogLevel::Info),
        routing_modules,
    })
}

fn auth(cx: &Ctx<'_>, raw: RawAuth) -> Result<AuthConfig, ConfigError> {
    let n = cx.num(&SCRAM_ITERATIONS, raw.scram_iterations)?;
    Ok(AuthConfig {
        // SCRAM_ITERATIONS.max is below u32::MAX.
        scram_iterations: u32::try_from(n).unwrap_or(u32::MAX),
        throttle: super::throttle::throttle(cx, raw.throttle)?,
    })
}

fn listeners(cx: &Ctx<'_>, raw: RawListen) -> Result<Listen, ConfigError> {
    let RawListen {
        c2s: raw,
        http: raw_http,
        s2s: raw_s2s,
        // Checked by `component::listeners`, against these.
        component: _,
    } = raw;
    if raw.is_empty() {
        return Err(cx.err_at(Location::START, InvalidValue::NoListeners));
    }
    // (ip, port, location of the port) of listeners seen so far, of both kinds.
    let mut bound: Vec<(IpAddr, u16, Location)> = Vec::new();
    let mut claim_addr = |ip: IpAddr, port: u16, here: Location| {
        if let Some(&(_, _, other)) = bound
            .iter()
            .find(|(i, p, _)| *p == port && addrs_overlap(*i, ip))
        {
            return Err(cx.err_at(
                here,
                InvalidValue::DuplicateListener {
                    ip,
                    port,
                    other_line: other.line,
                },
            ));
        }
        bound.push((ip, port, here));
        Ok(())
    };
    let mut claim = |l: &C2sListenerConfig, here: Location| claim_addr(l.ip_address, l.port, here);
    let mut c2s = Vec::with_capacity(raw.len());
    for entry in raw {
        let entry = entry.into_inner();
        let listener = listener(cx, &entry)?;
        claim(&listener, cx.at(&entry.port.span()))?;
        c2s.push(listener);
    }
    let mut http = Vec::with_capacity(raw_http.len());
    for entry in raw_http {
        let entry = entry.into_inner();
        if let Some(tls) = &entry.tls {
            if !matches!(tls.get_ref(), TlsMode::Tls | TlsMode::None) {
                return Err(cx.err(&tls.span(), InvalidValue::HttpTlsMode));
            }
        }
        let mut session = listener(cx, &entry.session())?;
        if entry.tls.is_none() {
            session.tls = TlsMode::None;
        }
        let mut handlers = entry
            .handlers
            .clone()
            .unwrap_or_else(|| HttpHandler::ALL.to_vec());
        handlers.dedup();
        // An operations listener (metrics and the admin API only) listens on loopback unless told
        // otherwise: session counts and the API token are nobody else's business.
        let operations = handlers
            .iter()
            .all(|h| matches!(h, HttpHandler::Metrics | HttpHandler::Api));
        if operations && entry.ip_address.is_none() {
            session.ip_address = IpAddr::V4(Ipv4Addr::LOCALHOST);
        }
        claim(&session, cx.at(&entry.port.span()))?;
        let bosh_max_wait =
            Duration::from_secs(cx.num(&BOSH_MAX_WAIT, entry.bosh_max_wait.clone())?);
        let bosh_inactivity =
            Duration::from_secs(cx.num(&BOSH_INACTIVITY, entry.bosh_inactivity.clone())?);
        http.push(HttpListenerConfig {
            session,
            handlers,
            bosh_max_wait,
            bosh_inactivity,
        });
    }
    let mut s2s = Vec::with_capacity(raw_s2s.len());
    for entry in raw_s2s {
        let here = cx.at(&entry.span());
        let listener = super::s2s::listener(cx, entry.into_inner())?;
        claim_addr(listener.ip_address, listener.port, here)?;
        s2s.push(listener);
    }
    Ok(Listen {
        c2s,
        http,
        s2s,
        component: Vec::new(),
    })
}

/// Two binds on one port collide when the addresses are equal or either is a wildcard.
pub fn addrs_overlap(a: IpAddr, b: IpAddr) -> bool {
    a == b || a.is_unspecified() || b.is_unspecified()
}

fn listener(cx: &Ctx<'_>, raw: &RawC2s) -> Result<C2sListenerConfig, ConfigError> {
    if *raw.port.get_ref() == 0 {
        return Err(cx.err(
            &raw.port.span(),
            InvalidValue::TooSmall {
                field: "listen.c2s.port",
                value: 0,
                min: 1,
            },
        ));
    }
    cert_key_pair(cx, &raw.certfile, &raw.keyfile)?;
    Ok(C2sListenerConfig {
        port: *raw.port.get_ref(),
        ip_address: raw
            .ip_address
            .as_ref()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |ip| *ip.get_ref()),
        tls: raw.tls.unwrap_or(TlsMode::Starttls),
        certfile: raw.certfile.as_ref().map(|p| p.get_ref().clone()),
        keyfile: raw.keyfile.as_ref().map(|p| p.get_ref().clone()),
        allow_plaintext_on_loopback: raw.allow_plaintext_on_loopback.unwrap_or(false),
        sasl2: raw.sasl2.unwrap_or(true),
        max_stanza_size: cx.size(&MAX_STANZA_SIZE, raw.max_stanza_size.clone())?,
        max_depth: cx.size(&MAX_DEPTH, raw.max_depth.clone())?,
        max_attrs: cx.size(&MAX_ATTRS, raw.max_attrs.clone())?,
        outbound_queue_bytes: cx.size(&OUTBOUND_QUEUE_BYTES, raw.outbound_queue_bytes.clone())?,
        auth_timeout: Duration::from_secs(cx.num(&AUTH_TIMEOUT, raw.auth_timeout.clone())?),
        idle_timeout: Duration::from_secs(cx.num(&IDLE_TIMEOUT, raw.idle_timeout.clone())?),
    })
}

/// `certfile` and `keyfile` come together or not at all.
pub(super) fn cert_key_pair(
    cx: &Ctx<'_>,
    certfile: &Option<Spanned<PathBuf>>,
    keyfile: &Option<Spanned<PathBuf>>,
) -> Result<(), ConfigError> {
    match (certfile, keyfile) {
        (Some(cert), None) => Err(cx.err(
            &cert.span(),
            InvalidValue::CertKeyPair { given: "certfile" },
        )),
        (None, Some(key)) => {
            Err(cx.err(&key.span(), InvalidValue::CertKeyPair { given: "keyfile" }))
        }
        _ => Ok(()),
    }
}

fn shards(cx: &Ctx<'_>, raw: RawShards) -> Result<ShardsConfig, ConfigError> {
    let count = match raw.count {
        None => available_cpus(),
        some => cx.size(&SHARD_COUNT, some)?,
    };
    Ok(ShardsConfig {
        count,
        ring_capacity: cx.size(&RING_CAPACITY, raw.ring_capacity)?,
        outbox_capacity: cx.size(&OUTBOX_CAPACITY, raw.outbox_capacity)?,
        io_memory_kib: cx.size(&IO_MEMORY_KIB, raw.io_memory_kib)?,
        ring_depth: match raw.ring_depth {
            None => None,
            some => Some(cx.size(&RING_DEPTH, some)?),
        },
        nap_us: cx.size(&NAP_US, raw.nap_us)?,
        huge_pages: raw.huge_pages.unwrap_or(false),
    })
}

/// CPUs this process may run on (its `sched_getaffinity` mask), at least 1.
pub(super) fn available_cpus() -> usize {
    // SAFETY: cpu_set_t is a plain bit array for which all-zero is valid; sched_getaffinity
    // writes at most size_of::<cpu_set_t>() bytes into it and CPU_COUNT only reads it.
    let n = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) == 0 {
            usize::try_from(libc::CPU_COUNT(&set)).unwrap_or(0)
        } else {
            0
        }
    };
    if n > 0 {
        n
    } else {
        // More than 1024 CPUs (mask too small) or no affinity support: ask std instead.
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }
}
