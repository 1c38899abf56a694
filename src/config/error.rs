//! Configuration errors, each pointing at `FILE:LINE:COL`.

use std::fmt;
use std::net::IpAddr;
use std::ops::Range;
use std::path::PathBuf;

use super::throttle::NetError;
use super::types::{DomainError, RoutingModule};

/// A 1-based line and column (in characters) inside the config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Location {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, counted in characters.
    pub col: usize,
}

impl Location {
    /// Line 1, column 1: used when the parser gives no position.
    pub const START: Location = Location { line: 1, col: 1 };

    /// The location of byte `offset` in `text` (clamped to the text, snapped back to a char boundary).
    pub fn of_offset(text: &str, offset: usize) -> Location {
        let mut offset = offset.min(text.len());
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &text[..offset];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        Location {
            line: before.matches('\n').count() + 1,
            col: before[line_start..].chars().count() + 1,
        }
    }

    /// The location of the start of `span` in `text`.
    pub fn of_span(text: &str, span: &Range<usize>) -> Location {
        Location::of_offset(text, span.start)
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

/// A value that parsed but is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidValue {
    /// `general.hosts` is empty.
    #[error("general.hosts must list at least one domain")]
    NoHosts,
    /// A host is not a valid domain name.
    #[error("invalid host `{value}`: {reason}")]
    InvalidDomain {
        /// The host as written.
        value: String,
        /// What is wrong with it.
        reason: DomainError,
    },
    /// The same host is listed twice (after lowercasing).
    #[error("host `{0}` is listed more than once")]
    DuplicateHost(String),
    /// `general.routing_modules` is empty.
    #[error("general.routing_modules must list at least one module")]
    NoRoutingModules,
    /// The same routing module is listed twice.
    #[error("routing module `{0}` is listed more than once")]
    DuplicateRoutingModule(RoutingModule),
    /// A number below its minimum.
    #[error("{field} = {value} is too small, minimum is {min}")]
    TooSmall {
        /// Dotted key name.
        field: &'static str,
        /// The value as written.
        value: u64,
        /// The smallest accepted value.
        min: u64,
    },
    /// A number above its maximum.
    #[error("{field} = {value} is too large, maximum is {max}")]
    TooLarge {
        /// Dotted key name.
        field: &'static str,
        /// The value as written.
        value: u64,
        /// The largest accepted value.
        max: u64,
    },
    /// `certfile` without `keyfile` or the reverse.
    #[error("listen: certfile and keyfile must be given together (only {given} is set)")]
    CertKeyPair {
        /// The one that is set.
        given: &'static str,
    },
    /// Two listeners on the same address and port.
    #[error("listen: {ip}:{port} is already used by the listener at line {other_line}")]
    DuplicateListener {
        /// Address of this listener.
        ip: IpAddr,
        /// Port of both listeners.
        port: u16,
        /// Line of the earlier listener.
        other_line: usize,
    },
    /// An `auth.throttle.exempt` entry that is not `ADDR` or `ADDR/PREFIX`.
    #[error("auth.throttle.exempt: `{value}`: {reason}")]
    InvalidNetwork {
        /// The entry as written.
        value: String,
        /// What is wrong with it.
        reason: NetError,
    },
    /// `store.backend = "postgres"` without `store.url`.
    #[error("store.backend = \"postgres\" needs store.url (e.g. \"postgres://petrel@localhost/petrel\")")]
    StoreUrlMissing,
    /// `store.url` with the SQLite backend.
    #[error("store.url is only used with store.backend = \"postgres\"")]
    StoreUrlUnused,
    /// `store.url` that is not a PostgreSQL connection URL or `key=value` string.
    #[error("store.url: {0}")]
    StoreUrl(String),
    /// `[[listen.http]]` with a STARTTLS mode (HTTP has none).
    #[error("listen.http.tls: \"tls\" (HTTPS) or \"none\"; HTTP has no STARTTLS")]
    HttpTlsMode,
    /// No `[[listen.c2s]]` at all.
    #[error("at least one [[listen.c2s]] listener is required")]
    NoListeners,
    /// `[admin]` with neither `token` nor `token_file`.
    #[error("[admin] needs token = \"...\" or token_file = \"PATH\"")]
    AdminTokenMissing,
    /// `[admin]` with both `token` and `token_file`.
    #[error("[admin]: give token or token_file, not both")]
    AdminTokenTwice,
    /// A token that is too short or has whitespace.
    #[error(
        "admin.token: at least {0} characters without whitespace (e.g. `openssl rand -hex 32`)"
    )]
    AdminToken(usize),
    /// A `[[listen.component]]` on an address another listener uses.
    #[error("listen.component: {ip}:{port} is already used by another listener")]
    ComponentPortTaken {
        /// Address of this listener.
        ip: IpAddr,
        /// Its port.
        port: u16,
    },
    /// A `[components."domain"]` that is one of `general.hosts`.
    #[error("components.\"{0}\": a component domain must not be a hosted domain")]
    ComponentIsHosted(String),
    /// A component with an empty password.
    #[error("components.\"{0}\".password must not be empty")]
    ComponentPassword(String),
    /// `admin.token_file` could not be read.
    #[error("admin.token_file: {0}")]
    AdminTokenFile(String),
    /// A dialback secret that is too short or has whitespace.
    #[error(
        "s2s.secret: at least {0} characters without whitespace (e.g. `openssl rand -hex 32`)"
    )]
    S2sSecret(usize),
    /// `[s2s.address."DOMAIN"]` without exactly one of `host` and `ip_address`.
    #[error("s2s.address: give host = \"NAME\" or ip_address = \"IP\", exactly one")]
    S2sAddressHost,
    /// `[s2s.address."DOMAIN"] tls = "starttls"`: an outgoing stream always requires TLS.
    #[error("s2s.address: tls is \"starttls_required\" or \"tls\" (outgoing streams always require TLS)")]
    S2sAddressStarttls,
    /// A cluster or node name that is not one NATS subject token.
    #[error("cluster: names are 1 to 64 characters among A-Z a-z 0-9 - _")]
    ClusterName,
    /// A NATS server address that is not `nats://host:port`.
    #[error("cluster.nats: addresses are nats://host:port")]
    NatsUrl,
    /// A failure timeout shorter than two heartbeats.
    #[error("cluster.failure_timeout_ms must be at least twice heartbeat_ms")]
    ClusterTimeout,
    /// NATS credentials given other than as a token alone or a user with a password.
    #[error("cluster: give nats_token, or nats_user and nats_password (not empty)")]
    NatsAuth,
    /// A cluster node that federates without a dialback secret shared by every node.
    #[error("cluster: a node with [[listen.s2s]] needs s2s.secret, the same on every node (a remote server may verify one node's dialback key on another)")]
    ClusterDialbackSecret,
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{}: cannot read configuration: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// TOML syntax error, unknown key, missing key or wrongly typed value (reported by the parser).
    #[error("{}:{at}: {message}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// Where the parser stopped.
        at: Location,
        /// The parser's message.
        message: String,
    },
    /// A well-formed value that fails validation.
    #[error("{}:{at}: {kind}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Where the offending value is.
        at: Location,
        /// What is wrong.
        kind: InvalidValue,
    },
}

impl ConfigError {
    /// The location the error points at, if it has one.
    pub fn location(&self) -> Option<Location> {
        match self {
            ConfigError::Read { .. } => None,
            ConfigError::Parse { at, .. } | ConfigError::Invalid { at, .. } => Some(*at),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_map_to_lines_and_char_columns() {
        let text = "ab\ncdé f\n\nx";
        assert_eq!(Location::of_offset(text, 0), Location { line: 1, col: 1 });
        assert_eq!(Location::of_offset(text, 2), Location { line: 1, col: 3 });
        assert_eq!(Location::of_offset(text, 3), Location { line: 2, col: 1 });
        // 'é' is two bytes: the space after it is column 4, byte offset 3 + 4.
        assert_eq!(Location::of_offset(text, 7), Location { line: 2, col: 4 });
        // An offset inside 'é' snaps back to it.
        assert_eq!(Location::of_offset(text, 6), Location { line: 2, col: 3 });
        assert_eq!(Location::of_offset(text, 10), Location { line: 3, col: 1 });
        assert_eq!(Location::of_offset(text, 999), Location { line: 4, col: 2 });
    }
}
