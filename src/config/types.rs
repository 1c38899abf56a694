//! Small typed values of the configuration: domains, log levels, TLS modes, routing modules.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Longest domain name in bytes (RFC 1035 §2.3.4, also RFC 7622's domainpart bound).
const MAX_DOMAIN_LEN: usize = 253;
/// Longest DNS label in bytes (RFC 1035 §2.3.4).
const MAX_LABEL_LEN: usize = 63;

/// Why a string is not an acceptable served domain name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    /// The name is empty.
    #[error("domain is empty")]
    Empty,
    /// The name is longer than 253 bytes.
    #[error("domain is {0} bytes long, at most {MAX_DOMAIN_LEN} allowed")]
    TooLong(usize),
    /// Two dots in a row, or a leading/trailing dot.
    #[error("domain has an empty label")]
    EmptyLabel,
    /// One label is longer than 63 bytes.
    #[error("domain label `{0}` is longer than {MAX_LABEL_LEN} bytes")]
    LabelTooLong(String),
    /// A character that may not appear in a host name.
    #[error("domain contains invalid character {0:?}")]
    InvalidChar(char),
    /// A label starts or ends with `-`.
    #[error("domain label `{0}` starts or ends with '-'")]
    HyphenAtEdge(String),
    /// An internationalized name that nameprep (RFC 3491) rejects.
    #[error("domain is not a valid internationalized name")]
    Nameprep,
}

/// A served domain name: ASCII letters, digits, `-` and `.`, or an internationalized name,
/// normalized to lower case (nameprep for non-ASCII names).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Domain(String);

impl Domain {
    /// Validates and normalizes `s`.
    pub fn parse(s: &str) -> Result<Domain, DomainError> {
        let lower = s.to_ascii_lowercase();
        let normalized = if s.is_ascii() && !lower.contains("xn--") {
            lower
        } else {
            // Prepared as a JID's domain (nameprep, A-labels as U-labels, RFC 7622 §3.2): one
            // domain, one spelling, whichever form the configuration or the admin API gave.
            crate::jid::BareJid::domain_only(s)
                .map_err(|_| DomainError::Nameprep)?
                .domain()
                .to_owned()
        };
        if normalized.is_empty() {
            return Err(DomainError::Empty);
        }
        if normalized.len() > MAX_DOMAIN_LEN {
            return Err(DomainError::TooLong(normalized.len()));
        }
        for label in normalized.split('.') {
            check_label(label)?;
        }
        Ok(Domain(normalized))
    }

    /// The normalized name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn check_label(label: &str) -> Result<(), DomainError> {
    if label.is_empty() {
        return Err(DomainError::EmptyLabel);
    }
    if label.len() > MAX_LABEL_LEN {
        return Err(DomainError::LabelTooLong(label.to_owned()));
    }
    if let Some(c) = label.chars().find(|&c| {
        !(c == '-' || c.is_ascii_alphanumeric() || (!c.is_ascii() && c.is_alphanumeric()))
    }) {
        return Err(DomainError::InvalidChar(c));
    }
    if label.starts_with('-') || label.ends_with('-') {
        return Err(DomainError::HyphenAtEdge(label.to_owned()));
    }
    Ok(())
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Domain {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Serialize for Domain {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

/// Log verbosity from `general.loglevel` (overridable with `RUST_LOG`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// Errors only.
    Error,
    /// Warnings and errors.
    Warn,
    /// Normal operation messages.
    Info,
    /// Debugging detail.
    Debug,
    /// Everything.
    Trace,
}

impl LogLevel {
    /// The name as written in the config and understood by `tracing_subscriber::EnvFilter`.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

/// How a c2s listener uses TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TlsMode {
    /// STARTTLS offered, plaintext allowed.
    Starttls,
    /// STARTTLS offered and required before authentication.
    StarttlsRequired,
    /// Direct TLS from the first byte (XEP-0368), ALPN `xmpp-client`.
    Tls,
    /// No TLS at all.
    None,
}

impl TlsMode {
    /// Whether this listener needs a rustls server configuration.
    pub fn uses_tls(self) -> bool {
        !matches!(self, TlsMode::None)
    }
}

/// What a `[[listen.http]]` listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HttpHandler {
    /// `/ws-xmpp`: XMPP over WebSocket (RFC 7395).
    Websocket,
    /// `/http-bind`: BOSH (XEP-0124, XEP-0206).
    Bosh,
    /// `/upload/`: HTTP file upload slots (XEP-0363).
    Upload,
    /// `/metrics`: Prometheus text format.
    Metrics,
    /// `/api`: the admin API (needs `[admin] token`).
    Api,
}

impl HttpHandler {
    /// Every handler: the default of a listener that names none.
    pub const ALL: [HttpHandler; 5] = [
        HttpHandler::Websocket,
        HttpHandler::Bosh,
        HttpHandler::Upload,
        HttpHandler::Metrics,
        HttpHandler::Api,
    ];
}

/// One step of the routing chain (`general.routing_modules`), in MongooseIM's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RoutingModule {
    /// Runs the global `filter_packet` hook.
    Global,
    /// Local route registered for the domain.
    Localdomain,
    /// Component on this node (XEP-0114).
    ExternalLocalnode,
    /// Component on any node of the cluster.
    External,
    /// Domain hosted here with no route yet: registered lazily.
    DynamicDomains,
    /// Remote server.
    S2s,
}

impl RoutingModule {
    /// MongooseIM's default chain, in order.
    pub const DEFAULT_CHAIN: [RoutingModule; 6] = [
        RoutingModule::Global,
        RoutingModule::Localdomain,
        RoutingModule::ExternalLocalnode,
        RoutingModule::External,
        RoutingModule::DynamicDomains,
        RoutingModule::S2s,
    ];

    /// The name as written in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            RoutingModule::Global => "global",
            RoutingModule::Localdomain => "localdomain",
            RoutingModule::ExternalLocalnode => "external_localnode",
            RoutingModule::External => "external",
            RoutingModule::DynamicDomains => "dynamic_domains",
            RoutingModule::S2s => "s2s",
        }
    }
}

impl fmt::Display for RoutingModule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_lowercases_ascii() {
        assert_eq!(
            Domain::parse("Example.COM").unwrap().as_str(),
            "example.com"
        );
        assert_eq!(Domain::parse("localhost").unwrap().as_str(), "localhost");
        assert_eq!(Domain::parse("a-b.c1").unwrap().as_str(), "a-b.c1");
    }

    #[test]
    fn domain_accepts_idn_and_normalizes() {
        assert_eq!(Domain::parse("BÜCHER.de").unwrap().as_str(), "bücher.de");
        // The A-label form is the same domain.
        assert_eq!(
            Domain::parse("XN--BCHER-KVA.de").unwrap().as_str(),
            "bücher.de"
        );
        assert_eq!(Domain::parse("xn--a.de"), Err(DomainError::Nameprep));
    }

    #[test]
    fn domain_rejects_bad_names() {
        assert_eq!(Domain::parse(""), Err(DomainError::Empty));
        assert_eq!(Domain::parse("a..b"), Err(DomainError::EmptyLabel));
        assert_eq!(Domain::parse("a.b."), Err(DomainError::EmptyLabel));
        assert_eq!(Domain::parse("a b"), Err(DomainError::InvalidChar(' ')));
        assert_eq!(Domain::parse("a_b"), Err(DomainError::InvalidChar('_')));
        assert_eq!(Domain::parse("a@b"), Err(DomainError::InvalidChar('@')));
        assert!(matches!(
            Domain::parse("-a.b"),
            Err(DomainError::HyphenAtEdge(_))
        ));
        let long_label = "a".repeat(64);
        assert!(matches!(
            Domain::parse(&long_label),
            Err(DomainError::LabelTooLong(_))
        ));
        let long = ["abcdefghij"; 26].join(".");
        assert!(matches!(Domain::parse(&long), Err(DomainError::TooLong(_))));
    }

    #[test]
    fn routing_module_names_round_trip() {
        for m in RoutingModule::DEFAULT_CHAIN {
            let text = format!("m = \"{}\"", m.as_str());
            #[derive(Deserialize)]
            struct W {
                m: RoutingModule,
            }
            let w: W = toml::from_str(&text).unwrap();
            assert_eq!(w.m, m);
        }
    }
}
