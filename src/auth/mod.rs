//! Authentication: SCRAM secrets and a sans-IO SASL server (PLAIN, SCRAM-SHA-1/256 and -PLUS).
//!
//! The SASL server never blocks: when it needs the user's secrets or a PBKDF2 check it returns
//! a step asking the caller (c2s), which does that work off the shard and answers back.

mod plain;
mod sasl;
mod scram;
mod scram_msg;
pub mod throttle;

pub use sasl::{set_unknown_user_iterations, verify_plain, SaslServer, SaslStep};
pub use scram::{HashAlg, ScramHashSecrets, ScramSecrets};

/// Errors reading stored secrets or getting randomness.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The stored text is not the `==MULTI_SCRAM==` form.
    #[error("unknown SCRAM storage format")]
    UnknownFormat,
    /// The iteration count is missing, not a number or zero.
    #[error("bad SCRAM iteration count")]
    BadIterations,
    /// A stored field is not base64.
    #[error("bad base64 in stored SCRAM secrets: {0}")]
    Base64(#[from] base64::DecodeError),
    /// A stored entry does not have `salt|stored|server`.
    #[error("malformed stored {0:?} entry")]
    MalformedEntry(HashAlg),
    /// A stored key has the wrong size for its hash.
    #[error("stored {0:?} key has the wrong length")]
    BadKeyLength(HashAlg),
    /// An entry petrel needs is absent.
    #[error("no stored {0:?} entry")]
    MissingHash(HashAlg),
    /// The OS random source failed.
    #[error("OS random source failed")]
    Random,
}

/// SASL mechanisms petrel offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mechanism {
    /// PLAIN (RFC 4616); only over TLS.
    Plain,
    /// SCRAM-SHA-1 (RFC 5802).
    ScramSha1,
    /// SCRAM-SHA-256 (RFC 7677).
    ScramSha256,
    /// SCRAM-SHA-1-PLUS with tls-exporter channel binding (RFC 9266).
    ScramSha1Plus,
    /// SCRAM-SHA-256-PLUS with tls-exporter channel binding (RFC 9266).
    ScramSha256Plus,
}

impl Mechanism {
    /// Every mechanism, strongest first (the order to advertise them in).
    pub const ALL: [Mechanism; 5] = [
        Mechanism::ScramSha256Plus,
        Mechanism::ScramSha1Plus,
        Mechanism::ScramSha256,
        Mechanism::ScramSha1,
        Mechanism::Plain,
    ];

    /// The IANA mechanism name.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::ScramSha1 => "SCRAM-SHA-1",
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::ScramSha1Plus => "SCRAM-SHA-1-PLUS",
            Mechanism::ScramSha256Plus => "SCRAM-SHA-256-PLUS",
        }
    }

    /// The mechanism with this name (exact, as SASL names are upper case).
    pub fn from_name(name: &str) -> Option<Mechanism> {
        Mechanism::ALL.into_iter().find(|m| m.name() == name)
    }

    /// True for the channel-binding (-PLUS) variants.
    pub fn is_plus(self) -> bool {
        matches!(self, Mechanism::ScramSha1Plus | Mechanism::ScramSha256Plus)
    }

    /// The SCRAM hash, or None for PLAIN.
    pub fn hash(self) -> Option<HashAlg> {
        match self {
            Mechanism::Plain => None,
            Mechanism::ScramSha1 | Mechanism::ScramSha1Plus => Some(HashAlg::Sha1),
            Mechanism::ScramSha256 | Mechanism::ScramSha256Plus => Some(HashAlg::Sha256),
        }
    }

    /// Mechanisms to advertise on a stream: -PLUS only with channel binding data.
    pub fn offered(cb: &ChannelBinding) -> impl Iterator<Item = Mechanism> + '_ {
        Mechanism::ALL
            .into_iter()
            .filter(move |m| !m.is_plus() || cb.any())
    }
}

/// Channel binding data of the stream the exchange runs on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChannelBinding {
    /// RFC 9266 `tls-exporter` value (label "EXPORTER-Channel-Binding", no context, 32 bytes);
    /// Some only on TLS 1.3 streams.
    pub tls_exporter: Option<[u8; 32]>,
    /// RFC 5929 `tls-server-end-point` value, the hash of the server's certificate, when its
    /// signature names a hash (XEP-0440 §4); c2s gives it on TLS 1.3 streams only (see
    /// `Transport::channel_binding`).
    pub tls_server_end_point: Option<EndPointHash>,
}

impl ChannelBinding {
    /// True when some binding type can be offered (so are the -PLUS mechanisms).
    pub fn any(&self) -> bool {
        self.tls_exporter.is_some() || self.tls_server_end_point.is_some()
    }

    /// The names of the binding types available, as XEP-0440 lists them.
    pub fn types(&self) -> impl Iterator<Item = &'static str> {
        let exporter = self.tls_exporter.map(|_| "tls-exporter");
        let end_point = self.tls_server_end_point.map(|_| "tls-server-end-point");
        exporter.into_iter().chain(end_point)
    }
}

/// A certificate hash for `tls-server-end-point` (SHA-256, -384 or -512: up to 64 bytes), kept
/// inline so [`ChannelBinding`] stays `Copy`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct EndPointHash {
    len: u8,
    bytes: [u8; 64],
}

impl EndPointHash {
    /// The hash `digest` (at most 64 bytes; None if longer).
    pub fn new(digest: &[u8]) -> Option<EndPointHash> {
        let mut bytes = [0; 64];
        bytes.get_mut(..digest.len())?.copy_from_slice(digest);
        Some(EndPointHash {
            len: digest.len() as u8,
            bytes,
        })
    }

    /// The hash bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

impl std::fmt::Debug for EndPointHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EndPointHash({} bytes)", self.len)
    }
}

/// SASL failure conditions (RFC 6120 §6.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SaslFailure {
    /// `<aborted/>`
    Aborted,
    /// `<account-disabled/>`
    AccountDisabled,
    /// `<credentials-expired/>`
    CredentialsExpired,
    /// `<encryption-required/>`
    EncryptionRequired,
    /// `<incorrect-encoding/>`
    IncorrectEncoding,
    /// `<invalid-authzid/>`
    InvalidAuthzid,
    /// `<invalid-mechanism/>`
    InvalidMechanism,
    /// `<malformed-request/>`
    MalformedRequest,
    /// `<mechanism-too-weak/>`
    MechanismTooWeak,
    /// `<not-authorized/>`
    NotAuthorized,
    /// `<temporary-auth-failure/>`
    TemporaryAuthFailure,
}

impl SaslFailure {
    /// The element name inside `<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>`.
    pub fn as_str(self) -> &'static str {
        match self {
            SaslFailure::Aborted => "aborted",
            SaslFailure::AccountDisabled => "account-disabled",
            SaslFailure::CredentialsExpired => "credentials-expired",
            SaslFailure::EncryptionRequired => "encryption-required",
            SaslFailure::IncorrectEncoding => "incorrect-encoding",
            SaslFailure::InvalidAuthzid => "invalid-authzid",
            SaslFailure::InvalidMechanism => "invalid-mechanism",
            SaslFailure::MalformedRequest => "malformed-request",
            SaslFailure::MechanismTooWeak => "mechanism-too-weak",
            SaslFailure::NotAuthorized => "not-authorized",
            SaslFailure::TemporaryAuthFailure => "temporary-auth-failure",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mechanism_names_round_trip() {
        for m in Mechanism::ALL {
            assert_eq!(Mechanism::from_name(m.name()), Some(m));
        }
        assert_eq!(Mechanism::from_name("scram-sha-1"), None);
        assert_eq!(Mechanism::from_name("DIGEST-MD5"), None);
    }

    #[test]
    fn plus_offered_only_with_binding() {
        let none: Vec<_> = Mechanism::offered(&ChannelBinding::default()).collect();
        assert!(none.iter().all(|m| !m.is_plus()));
        assert_eq!(none.len(), 3);
        let cb = ChannelBinding {
            tls_exporter: Some([7; 32]),
            tls_server_end_point: None,
        };
        let all: Vec<_> = Mechanism::offered(&cb).collect();
        assert_eq!(all, Mechanism::ALL);
    }

    #[test]
    fn failure_names() {
        assert_eq!(SaslFailure::NotAuthorized.as_str(), "not-authorized");
        assert_eq!(
            SaslFailure::TemporaryAuthFailure.as_str(),
            "temporary-auth-failure"
        );
        assert_eq!(SaslFailure::InvalidAuthzid.as_str(), "invalid-authzid");
    }
}
