//! Why an admin request failed, and the status and JSON body each reason gets.

use serde::Serialize;

/// An admin request that could not be carried out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// No `[admin]` section: the API is off.
    #[error("the admin API is disabled: add an [admin] section with token = \"...\" (or token_file) to the configuration and restart")]
    Disabled,
    /// No or a wrong `Authorization: Bearer` token.
    #[error("missing or wrong bearer token (Authorization: Bearer TOKEN)")]
    Unauthorized,
    /// No such endpoint.
    #[error("no endpoint at {0}")]
    NotFound(String),
    /// The endpoint exists but not with this method.
    #[error("method not allowed here (allowed: {0})")]
    MethodNotAllowed(&'static str),
    /// The body is larger than [`super::MAX_BODY`].
    #[error("request body larger than {0} bytes")]
    TooLarge(usize),
    /// The body is not the JSON this endpoint takes.
    #[error("malformed JSON: {0}")]
    BadJson(String),
    /// A JID that does not parse or is not of the kind asked for.
    #[error("invalid {field} `{value}`: {reason}")]
    BadJid {
        /// Which field.
        field: &'static str,
        /// As given.
        value: String,
        /// Why.
        reason: String,
    },
    /// A domain name that does not parse.
    #[error("invalid domain `{value}`: {reason}")]
    BadDomain {
        /// As given.
        value: String,
        /// Why.
        reason: String,
    },
    /// An empty password.
    #[error("the password must not be empty")]
    EmptyPassword,
    /// A stanza that is not one XML stanza (message, presence or iq) with a valid `to`.
    #[error("invalid stanza: {0}")]
    BadStanza(String),
    /// A user JID on a domain not served here.
    #[error("domain `{0}` is not served here")]
    DomainNotServed(String),
    /// The account exists.
    #[error("user `{0}` exists")]
    UserExists(String),
    /// No such account.
    #[error("no user `{0}`")]
    NoSuchUser(String),
    /// No such session.
    #[error("no session `{0}`")]
    NoSuchSession(String),
    /// The domain is served already.
    #[error("domain `{0}` is served already")]
    DomainExists(String),
    /// An external component's domain (`[components]`): it is served by the component.
    #[error("domain `{0}` is an external component's domain")]
    ComponentDomain(String),
    /// No such run-time domain.
    #[error("no run-time domain `{0}`")]
    NoSuchDomain(String),
    /// A domain of `general.hosts`: only the configuration can remove it.
    #[error("domain `{0}` is in general.hosts: remove it from the configuration")]
    ConfiguredDomain(String),
    /// The store queue is full.
    #[error("the store is busy, retry")]
    Busy,
    /// The store failed.
    #[error("store: {0}")]
    Store(String),
}

/// The JSON body of an error: `{"error": CODE, "message": TEXT}`.
#[derive(Debug, Serialize, serde::Deserialize)]
pub struct ErrorBody {
    /// A stable, machine-readable code.
    pub error: String,
    /// What went wrong, for people.
    pub message: String,
}

impl ApiError {
    /// The HTTP status.
    pub fn status(&self) -> u16 {
        use ApiError::*;
        match self {
            Disabled => 403,
            Unauthorized => 401,
            NotFound(_) | NoSuchUser(_) | NoSuchSession(_) | NoSuchDomain(_) => 404,
            MethodNotAllowed(_) => 405,
            UserExists(_) | DomainExists(_) | ConfiguredDomain(_) | ComponentDomain(_) => 409,
            TooLarge(_) => 413,
            BadJson(_)
            | BadJid { .. }
            | BadDomain { .. }
            | EmptyPassword
            | BadStanza(_)
            | DomainNotServed(_) => 400,
            Busy => 503,
            Store(_) => 500,
        }
    }

    /// The stable code in the JSON body.
    pub fn code(&self) -> &'static str {
        use ApiError::*;
        match self {
            Disabled => "disabled",
            Unauthorized => "unauthorized",
            NotFound(_) => "not-found",
            MethodNotAllowed(_) => "method-not-allowed",
            TooLarge(_) => "too-large",
            BadJson(_) => "bad-json",
            BadJid { .. } => "bad-jid",
            BadDomain { .. } => "bad-domain",
            EmptyPassword => "empty-password",
            BadStanza(_) => "bad-stanza",
            DomainNotServed(_) => "domain-not-served",
            UserExists(_) => "user-exists",
            NoSuchUser(_) => "no-such-user",
            NoSuchSession(_) => "no-such-session",
            DomainExists(_) => "domain-exists",
            NoSuchDomain(_) => "no-such-domain",
            ComponentDomain(_) => "component-domain",
            ConfiguredDomain(_) => "configured-domain",
            Busy => "busy",
            Store(_) => "store",
        }
    }

    /// The JSON body.
    pub fn body(&self) -> Vec<u8> {
        let body = ErrorBody {
            error: self.code().to_owned(),
            message: self.to_string(),
        };
        // Two strings always serialize.
        serde_json::to_vec(&body).unwrap_or_default()
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> ApiError {
        match e {
            crate::store::StoreError::Busy => ApiError::Busy,
            other => ApiError::Store(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_json_bodies() {
        assert_eq!(ApiError::Disabled.status(), 403);
        assert_eq!(ApiError::Unauthorized.status(), 401);
        assert_eq!(ApiError::UserExists("a@b".into()).status(), 409);
        assert_eq!(ApiError::MethodNotAllowed("GET").status(), 405);
        let body: ErrorBody =
            serde_json::from_slice(&ApiError::Disabled.body()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(body.error, "disabled");
        assert!(body.message.contains("[admin]"));
    }
}
