//! Stanza error conditions (RFC 6120 §8.3.3) with their default error types.

use std::fmt;

/// The `type` attribute of a stanza `<error/>`: what the sender should do about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorType {
    /// Retry after providing credentials.
    Auth,
    /// Do not retry (unrecoverable).
    Cancel,
    /// Proceed (the condition was only a warning).
    Continue,
    /// Retry after changing the data sent.
    Modify,
    /// Retry after waiting (temporary).
    Wait,
}

impl ErrorType {
    /// Wire form of the type.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorType::Auth => "auth",
            ErrorType::Cancel => "cancel",
            ErrorType::Continue => "continue",
            ErrorType::Modify => "modify",
            ErrorType::Wait => "wait",
        }
    }
}

/// A stanza-level error condition; the stream stays open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StanzaErrorCondition {
    /// The sender sent XML that is malformed or cannot be processed.
    BadRequest,
    /// Access cannot be granted because an existing resource exists with the same name.
    Conflict,
    /// The feature is not implemented by the recipient.
    FeatureNotImplemented,
    /// The requesting entity does not have the permissions.
    Forbidden,
    /// The server had an internal error.
    InternalServerError,
    /// The addressed JID or item cannot be found.
    ItemNotFound,
    /// The JID does not adhere to RFC 7622.
    JidMalformed,
    /// The recipient does not allow the action.
    NotAcceptable,
    /// The recipient does not allow any entity to perform the action.
    NotAllowed,
    /// The sender must authenticate first.
    NotAuthorized,
    /// The entity violated a local policy.
    PolicyViolation,
    /// The intended recipient is temporarily unavailable.
    RecipientUnavailable,
    /// A remote server is not reachable or does not exist.
    RemoteServerNotFound,
    /// A remote server could not be contacted in time.
    RemoteServerTimeout,
    /// The server lacks the resources (queue full, limit reached).
    ResourceConstraint,
    /// The recipient does not offer the requested service.
    ServiceUnavailable,
    /// The entity must subscribe first.
    SubscriptionRequired,
    /// Catch-all condition.
    UndefinedCondition,
    /// The request was understood but not expected at this time.
    UnexpectedRequest,
}

impl StanzaErrorCondition {
    /// The element name of the condition.
    pub fn as_str(self) -> &'static str {
        use StanzaErrorCondition::*;
        match self {
            BadRequest => "bad-request",
            Conflict => "conflict",
            FeatureNotImplemented => "feature-not-implemented",
            Forbidden => "forbidden",
            InternalServerError => "internal-server-error",
            ItemNotFound => "item-not-found",
            JidMalformed => "jid-malformed",
            NotAcceptable => "not-acceptable",
            NotAllowed => "not-allowed",
            NotAuthorized => "not-authorized",
            PolicyViolation => "policy-violation",
            RecipientUnavailable => "recipient-unavailable",
            RemoteServerNotFound => "remote-server-not-found",
            RemoteServerTimeout => "remote-server-timeout",
            ResourceConstraint => "resource-constraint",
            ServiceUnavailable => "service-unavailable",
            SubscriptionRequired => "subscription-required",
            UndefinedCondition => "undefined-condition",
            UnexpectedRequest => "unexpected-request",
        }
    }

    /// The condition whose element name is `name` (the inverse of [`Self::as_str`]).
    pub fn from_name(name: &str) -> Option<StanzaErrorCondition> {
        use StanzaErrorCondition::*;
        Some(match name {
            "bad-request" => BadRequest,
            "conflict" => Conflict,
            "feature-not-implemented" => FeatureNotImplemented,
            "forbidden" => Forbidden,
            "internal-server-error" => InternalServerError,
            "item-not-found" => ItemNotFound,
            "jid-malformed" => JidMalformed,
            "not-acceptable" => NotAcceptable,
            "not-allowed" => NotAllowed,
            "not-authorized" => NotAuthorized,
            "policy-violation" => PolicyViolation,
            "recipient-unavailable" => RecipientUnavailable,
            "remote-server-not-found" => RemoteServerNotFound,
            "remote-server-timeout" => RemoteServerTimeout,
            "resource-constraint" => ResourceConstraint,
            "service-unavailable" => ServiceUnavailable,
            "subscription-required" => SubscriptionRequired,
            "undefined-condition" => UndefinedCondition,
            "unexpected-request" => UnexpectedRequest,
            _ => return None,
        })
    }

    /// The error type RFC 6120 §8.3.3 recommends for this condition.
    pub fn default_type(self) -> ErrorType {
        use StanzaErrorCondition::*;
        match self {
            BadRequest | JidMalformed | NotAcceptable | PolicyViolation => ErrorType::Modify,
            NotAuthorized | Forbidden | SubscriptionRequired => ErrorType::Auth,
            RecipientUnavailable | RemoteServerTimeout | ResourceConstraint | UnexpectedRequest => {
                ErrorType::Wait
            }
            Conflict
            | FeatureNotImplemented
            | InternalServerError
            | ItemNotFound
            | NotAllowed
            | RemoteServerNotFound
            | ServiceUnavailable
            | UndefinedCondition => ErrorType::Cancel,
        }
    }

    /// Appends `<error type='..'><condition xmlns='..stanzas'/></error>`.
    pub fn write_error_element(self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"<error type='");
        out.extend_from_slice(self.default_type().as_str().as_bytes());
        out.extend_from_slice(b"'><");
        out.extend_from_slice(self.as_str().as_bytes());
        out.extend_from_slice(b" xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error>");
    }
}

impl fmt::Display for StanzaErrorCondition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
