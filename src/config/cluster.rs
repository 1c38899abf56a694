//! `[cluster]`: this node's name in a petrel cluster and the NATS servers the nodes share
//! (docs/CLUSTER.md). Absent: a single node, no engine needed.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::error::{ConfigError, InvalidValue};
use super::validate::{Bounds, Ctx};

const HEARTBEAT: Bounds = Bounds {
    field: "cluster.heartbeat_ms",
    default: 500,
    min: 10,
    max: 60_000,
};

const FAILURE_TIMEOUT: Bounds = Bounds {
    field: "cluster.failure_timeout_ms",
    default: 3000,
    min: 50,
    max: 600_000,
};

/// `[cluster]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClusterConfig {
    /// The cluster's name: the second token of every subject (`petrel.NAME.…`), so several clusters
    /// can share one NATS server.
    pub name: String,
    /// This node's name, unique in the cluster (a NATS subject token).
    pub node: String,
    /// NATS servers, `nats://host:port`, tried in order.
    pub nats: Vec<NatsUrl>,
    /// How often shard 0 publishes this node's heartbeat.
    #[serde(serialize_with = "ser_ms", rename = "heartbeat_ms")]
    pub heartbeat: Duration,
    /// A member silent this long is dead.
    #[serde(serialize_with = "ser_ms", rename = "failure_timeout_ms")]
    pub failure_timeout: Duration,
    /// How the nodes authenticate to NATS (`nats_token`, or `nats_user` and `nats_password`).
    #[serde(rename = "nats_auth")]
    pub auth: NatsAuth,
    /// Extra trust anchors (PEM) for `tls://` servers' certificates, beside the web PKI roots.
    pub nats_cafile: Option<std::path::PathBuf>,
}

/// Credentials sent in NATS's `CONNECT`; never shown by `Debug` or `check-config`.
#[derive(Clone, PartialEq, Eq, Default)]
pub enum NatsAuth {
    /// The server needs none.
    #[default]
    None,
    /// `auth_token`.
    Token(String),
    /// `user` and `pass`.
    UserPassword {
        /// The user name.
        user: String,
        /// Its password.
        password: String,
    },
}

impl std::fmt::Debug for NatsAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NatsAuth::None => "None",
            NatsAuth::Token(_) => "Token(********)",
            NatsAuth::UserPassword { .. } => "UserPassword(********)",
        })
    }
}

impl Serialize for NatsAuth {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(match self {
            NatsAuth::None => "none",
            NatsAuth::Token(_) => "token (hidden)",
            NatsAuth::UserPassword { .. } => "user and password (hidden)",
        })
    }
}

/// A credential as written: `Debug` never shows it.
#[derive(Deserialize)]
#[serde(transparent)]
pub(super) struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("********")
    }
}

/// A NATS server address: `nats://host:port`, or `tls://host:port` for TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsUrl {
    /// Host name or IP address (also the name the server's certificate must show).
    pub host: String,
    /// TCP port (4222 when not given).
    pub port: u16,
    /// TLS after the server's `INFO` (`tls://`).
    pub tls: bool,
}

impl Serialize for NatsUrl {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let scheme = if self.tls { "tls" } else { "nats" };
        s.serialize_str(&format!("{scheme}://{}:{}", self.host, self.port))
    }
}

fn ser_ms<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

/// `[cluster]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCluster {
    pub name: Option<Spanned<String>>,
    pub node: Spanned<String>,
    pub nats: Option<Vec<Spanned<String>>>,
    pub heartbeat_ms: Option<Spanned<u64>>,
    pub failure_timeout_ms: Option<Spanned<u64>>,
    pub nats_token: Option<Spanned<Secret>>,
    pub nats_user: Option<Spanned<Secret>>,
    pub nats_password: Option<Spanned<Secret>>,
    pub nats_cafile: Option<std::path::PathBuf>,
}

/// A name usable as one NATS subject token.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn url(s: &str) -> Option<NatsUrl> {
    let (tls, rest) = match s.strip_prefix("tls://") {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix("nats://").unwrap_or(s)),
    };
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) => (h, p.parse().ok()?),
        None => (rest, 4222),
    };
    if host.is_empty() || host.contains(['/', '@', ' ']) {
        return None;
    }
    Some(NatsUrl {
        host: host.to_owned(),
        port,
        tls,
    })
}

/// Validates `[cluster]`; `None` when the section is absent. `shared_secret_missing`: the node
/// federates (`[[listen.s2s]]`) without `s2s.secret`.
pub(super) fn cluster(
    cx: &Ctx<'_>,
    raw: Option<Spanned<RawCluster>>,
    shared_secret_missing: bool,
) -> Result<Option<ClusterConfig>, ConfigError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let span = raw.span();
    if shared_secret_missing {
        // A remote server verifies one node's dialback key by connecting to whichever node the
        // domain's address gives: every node must derive the same keys.
        return Err(cx.err(&span, InvalidValue::ClusterDialbackSecret));
    }
    let raw = raw.into_inner();
    let token = |v: Spanned<String>| {
        if is_token(v.get_ref()) {
            Ok(v.into_inner())
        } else {
            Err(cx.err(&v.span(), InvalidValue::ClusterName))
        }
    };
    let name = match raw.name {
        Some(n) => token(n)?,
        None => "petrel".to_owned(),
    };
    let node = token(raw.node)?;
    let nats = match raw.nats {
        Some(list) => list
            .into_iter()
            .map(|u| url(u.get_ref()).ok_or_else(|| cx.err(&u.span(), InvalidValue::NatsUrl)))
            .collect::<Result<Vec<_>, _>>()?,
        None => vec![NatsUrl {
            host: "127.0.0.1".to_owned(),
            port: 4222,
            tls: false,
        }],
    };
    let hb_span = raw.heartbeat_ms.as_ref().map(|v| v.span());
    let heartbeat = Duration::from_millis(cx.num(&HEARTBEAT, raw.heartbeat_ms)?);
    let failure_timeout = Duration::from_millis(cx.num(&FAILURE_TIMEOUT, raw.failure_timeout_ms)?);
    if failure_timeout < heartbeat * 2 {
        return Err(cx.err(&hb_span.unwrap_or(0..0), InvalidValue::ClusterTimeout));
    }
    let auth = match (raw.nats_token, raw.nats_user, raw.nats_password) {
        (None, None, None) => NatsAuth::None,
        (Some(t), None, None) if !t.get_ref().0.is_empty() => NatsAuth::Token(t.into_inner().0),
        (None, Some(u), Some(p)) if !u.get_ref().0.is_empty() => NatsAuth::UserPassword {
            user: u.into_inner().0,
            password: p.into_inner().0,
        },
        (t, u, p) => {
            let at = [t, u, p].into_iter().flatten().map(|v| v.span()).next();
            return Err(cx.err(&at.unwrap_or(span), InvalidValue::NatsAuth));
        }
    };
    Ok(Some(ClusterConfig {
        name,
        node,
        nats,
        heartbeat,
        failure_timeout,
        auth,
        nats_cafile: raw.nats_cafile,
    }))
}
