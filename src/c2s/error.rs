//! Error and outcome types of the c2s state machine.

use crate::xmpp::{StanzaErrorCondition, StreamErrorCondition};

/// Why the session manager refused to bind a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BindError {
    /// The resource is in use and the policy keeps the old session.
    #[error("resource conflict")]
    Conflict,
    /// The account may not bind (disabled, policy).
    #[error("binding not allowed")]
    NotAllowed,
    /// Too many sessions for this account.
    #[error("too many resources")]
    ResourceConstraint,
    /// The session manager failed.
    #[error("internal error")]
    Internal,
    /// The account was deleted after the connection authenticated (the stream is closed with
    /// `not-authorized`).
    #[error("account deleted")]
    AccountRemoved,
}

impl BindError {
    /// The stanza error condition returned to the client.
    pub fn condition(self) -> StanzaErrorCondition {
        match self {
            BindError::Conflict => StanzaErrorCondition::Conflict,
            BindError::NotAllowed => StanzaErrorCondition::NotAllowed,
            BindError::ResourceConstraint => StanzaErrorCondition::ResourceConstraint,
            BindError::Internal => StanzaErrorCondition::InternalServerError,
            BindError::AccountRemoved => StanzaErrorCondition::NotAuthorized,
        }
    }
}

/// `deliver` refused the stanza: the outbound queue is over its bound (the stream is now closing) or the
/// stream is already closed. The caller still owns the stanza's fate (bounce, offline storage).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("c2s outbound queue overflow or stream closed")]
pub struct Overflow;

/// Why a stream ended (carried by `C2sEvent::Closed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The client sent `</stream:stream>` or a TLS close_notify.
    ClientClosed,
    /// The driver reported the socket gone (`peer_closed`).
    Disconnected,
    /// The server sent this stream error (protocol violation, timeout, slow reader, `close` with a condition).
    StreamError(StreamErrorCondition),
    /// The server closed without an error (`close(None, ..)`).
    ServerClosed,
    /// STARTTLS was refused with `<failure xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>`.
    StarttlsFailure,
    /// The TLS layer failed (handshake, bad record, missing configuration).
    Tls,
}
