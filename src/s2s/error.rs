//! Outcome types of the s2s state machines.

use crate::xmpp::{StanzaErrorCondition, StreamErrorCondition};

/// Why an incoming stream ended (carried by `S2sInEvent::Closed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The peer sent `</stream:stream>` or a TLS close_notify.
    PeerClosed,
    /// The driver reported the socket gone (`peer_closed`).
    Disconnected,
    /// We sent this stream error (protocol violation, timeout, `close` with a condition).
    StreamError(StreamErrorCondition),
    /// We closed without an error (`close(None)`).
    LocalClose,
    /// STARTTLS was refused with `<failure xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>`.
    StarttlsFailure,
    /// The TLS layer failed (handshake, bad record, missing configuration).
    Tls,
}

/// Why an outgoing stream ended (carried by `S2sOutEvent::Closed`); the driver maps it to the
/// error its queued stanzas bounce with ([`S2sOutFailure::bounce_condition`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum S2sOutFailure {
    /// We closed the stream ourselves without error (`close(None)`, idle stream).
    #[error("closed locally")]
    LocalClose,
    /// The remote ended the stream cleanly (`</stream:stream>`, close_notify).
    #[error("closed by the remote server")]
    PeerClosed,
    /// The socket failed or reached EOF (`peer_closed`).
    #[error("connection lost")]
    Io,
    /// TLS is required but the remote offered no STARTTLS (or we have no TLS client configuration).
    #[error("TLS required but not offered")]
    TlsRequiredButNotOffered,
    /// The remote answered `<starttls/>` with `<failure/>`.
    #[error("STARTTLS refused")]
    StarttlsRefused,
    /// The TLS handshake or a record failed.
    #[error("TLS: {0}")]
    Tls(String),
    /// The remote's certificate does not validate for its domain and dialback is off.
    #[error("remote certificate not valid for the domain")]
    CertificateInvalid,
    /// No way to authenticate: SASL EXTERNAL not possible and dialback off.
    #[error("no usable authentication method")]
    NoAuthMethod,
    /// SASL EXTERNAL failed and dialback cannot be used instead.
    #[error("SASL EXTERNAL refused")]
    NotAuthorized,
    /// The remote answered our `<db:result/>` with `type='invalid'`.
    #[error("dialback refused")]
    DialbackRefused,
    /// The remote answered our `<db:result/>` with `type='error'` and this condition.
    #[error("dialback error: {0:?}")]
    DialbackError(Option<StanzaErrorCondition>),
    /// The remote sent this stream error.
    #[error("remote stream error: {0}")]
    RemoteStreamError(String),
    /// We sent this stream error (the remote violated the protocol).
    #[error("stream error: {0}")]
    StreamError(StreamErrorCondition),
    /// Authentication or the stream did not complete in time.
    #[error("timeout")]
    Timeout,
}

/// Stream errors a remote ends a working stream with that say nothing against the next stream:
/// an idle stream closed (RFC 6120 §4.9.3.4 `connection-timeout`), new features to offer
/// (§4.9.3.16 `reset`), the remote going down, to come back (§4.9.3.20 `system-shutdown`).
const CLEAN_REMOTE_ENDS: [&str; 3] = [
    StreamErrorCondition::ConnectionTimeout.as_str(),
    "reset",
    StreamErrorCondition::SystemShutdown.as_str(),
];

impl S2sOutFailure {
    /// True when the end of an authenticated stream leaves the remote as reachable as before: it
    /// closed, the connection went, or it gave one of [`CLEAN_REMOTE_ENDS`]. The next stanza then
    /// opens a new stream; a failure would bounce every stanza for a while and refuse the
    /// remote's dialback checks (a restarting server was shut out as it came back).
    pub fn leaves_remote_reachable(&self) -> bool {
        match self {
            S2sOutFailure::PeerClosed | S2sOutFailure::Io => true,
            S2sOutFailure::RemoteStreamError(cond) => CLEAN_REMOTE_ENDS.contains(&cond.as_str()),
            _ => false,
        }
    }

    /// The stanza error condition for the stanzas that could not be sent (RFC 6120 §10.4.3:
    /// remote-server-not-found when the remote could not be reached or authenticated,
    /// remote-server-timeout on timeouts).
    pub fn bounce_condition(&self) -> StanzaErrorCondition {
        match self {
            S2sOutFailure::Timeout => StanzaErrorCondition::RemoteServerTimeout,
            S2sOutFailure::StreamError(_) | S2sOutFailure::LocalClose => {
                StanzaErrorCondition::ServiceUnavailable
            }
            _ => StanzaErrorCondition::RemoteServerNotFound,
        }
    }
}

/// [`super::S2sOut::push_stanza`] or [`super::S2sOut::request_verify`] refused its input; the
/// caller keeps it (queue, bounce).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    /// The stream is not authenticated yet (stanzas) or is closed.
    #[error("stream not ready")]
    NotReady,
    /// The outbound bound (bytes not yet taken, or pending verifications) is reached.
    #[error("outbound queue full")]
    Full,
}
