//! Client-to-server streams (RFC 6120) as a sans-IO state machine, after MongooseIM's `mongoose_c2s`.
//!
//! [`C2s`] takes the bytes read from a socket and hands back the bytes to write plus [`C2sEvent`]s for the
//! driver (authentication look-ups, session binding, stanzas to route). It owns no socket and no clock:
//! the driver passes `now` in and asks [`C2s::next_timeout`] when to call [`C2s::handle_timeout`].

mod error;
mod features;
mod negotiate;
pub(crate) mod on_wire;
mod outq;
mod ping;
mod preauth;
mod reply;
pub mod route;
mod sasl;
mod sasl2;
mod session;
mod sm_xep198;
mod stream;
pub(crate) mod transport;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub use error::{BindError, CloseReason, Overflow};
pub use preauth::NS_REGISTER;
pub use sm_xep198::{ResumeError, SmConfig, SmError, SmState, Unacked, NS_SM};
pub(crate) use stream::random_token;
pub use stream::C2s;

use crate::jid::{BareJid, FullJid};
use crate::xml::Stanza;

/// How a listener uses TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// STARTTLS is offered; the client may authenticate without it.
    Starttls,
    /// STARTTLS is offered and must be negotiated before SASL.
    StarttlsRequired,
    /// TLS from the first byte (XEP-0368 direct TLS).
    DirectTls,
    /// No TLS at all.
    None,
}

/// Configuration shared by every c2s stream of a listener (read-only once built).
#[derive(Debug, Clone)]
pub struct C2sConfig {
    /// Domains served; a stream header's `to` must name one of them.
    pub hosts: Vec<String>,
    /// How TLS is used on this listener.
    pub tls_mode: TlsMode,
    /// The rustls server configuration (required by every mode but `None`).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// The certificate `tls` serves, whose `tls-server-end-point` hash is offered beside
    /// `tls-exporter` (it follows the certificate when SIGHUP replaces it).
    pub tls_cert: Option<Arc<crate::tls::ServedCert>>,
    /// Offer PLAIN on unencrypted streams from loopback peers (tests, local bridges).
    pub allow_plaintext_on_loopback: bool,
    /// Offer SASL2 (XEP-0388) with Bind 2 (XEP-0386) beside RFC 6120 SASL.
    pub sasl2: bool,
    /// The bytes reach this stream already decrypted by TLS below it (HTTPS carrying WebSocket or
    /// BOSH): PLAIN is allowed as over STARTTLS, but no channel binding is offered.
    pub transport_secure: bool,
    /// Scanner limits (stanza bytes, depth, attributes).
    pub limits: crate::xml::Limits,
    /// Bound in bytes of output not yet taken by the driver; `deliver` past it closes the stream.
    pub outbound_queue_bytes: usize,
    /// Time from connect until a resource is bound (zero disables it).
    pub auth_timeout: Duration,
    /// Time without any input byte before the stream is closed (zero disables it).
    pub idle_timeout: Duration,
    /// Time without input after which a bound client is pinged (XEP-0199; zero: never).
    pub ping_interval: Duration,
    /// Time to wait for any input after a ping before closing with connection-timeout.
    pub ping_timeout: Duration,
    /// In-band registration (XEP-0077) is on: `<register/>` is offered and registration IQs before
    /// authentication go to the driver as [`C2sEvent::PreAuthIq`].
    pub register: bool,
    /// XEP-0198 stream management (`[modules.stream_management]`); `None`: not offered.
    pub sm: Option<SmConfig>,
    /// Extra `<stream:features/>` children offered after authentication, pre-rendered by the modules
    /// that are on (roster versioning, pre-approval, stream management, CSI...).
    pub post_auth_features: Vec<u8>,
    /// `<feature var=''/>` elements the modules that are on can enable inside a Bind 2 request
    /// (carbons, CSI), pre-rendered; stream management's is added by the stream itself.
    pub bind2_features: Vec<u8>,
}

/// What the state machine knows about the peer.
#[derive(Debug, Clone, Copy)]
pub struct PeerInfo {
    /// The remote socket address.
    pub addr: SocketAddr,
}

/// Something the driver must act on.
#[derive(Debug)]
pub enum C2sEvent {
    /// Look up the SCRAM secrets of `username`, then call [`C2s::provide_secrets`].
    NeedSecrets {
        /// The SASL authentication identity (a localpart).
        username: String,
    },
    /// Check a PLAIN password (off the shard), then call [`C2s::plain_verified`].
    VerifyPlain {
        /// The SASL authentication identity (a localpart).
        username: String,
        /// The password as sent by the client.
        password: String,
    },
    /// SASL failed on wrong credentials for this account (counted by login throttling).
    AuthFailed {
        /// The account whose password or proof was wrong (it may not exist).
        jid: BareJid,
    },
    /// SASL succeeded for this bare JID.
    Authenticated {
        /// The authenticated account.
        jid: BareJid,
    },
    /// Register this session with the session manager, then call [`C2s::bind_result`].
    BindRequest {
        /// The full JID asked for (resource already chosen).
        jid: FullJid,
    },
    /// `<enable/>` accepted (XEP-0198); `id` is the resumption id when the session is resumable.
    SmEnabled {
        /// The resumption id, if any.
        id: Option<String>,
    },
    /// `<resume/>` before binding: find session `previd` of `jid`, then call [`C2s::resumed`] or
    /// [`C2s::resume_failed`].
    ResumeRequest {
        /// The authenticated account (only its own sessions may be resumed).
        jid: BareJid,
        /// The id from `<enabled/>` of the session to resume.
        previd: String,
        /// The client's count of stanzas it handled.
        h: u32,
    },
    /// A Bind 2 request bound the session, asking for these features besides stream management
    /// (maybe none): run `bind2_enable_features` (before any stanza of the session is handled).
    Bind2Enable {
        /// The requests, children of `<bind/>`.
        requests: Vec<crate::xml::Element>,
    },
    /// A top-level element from the bound client, `from` stamped for stanzas; with stream
    /// management on, the stanza's inbound number (give its route a `hooks::Handled` for it).
    Stanza(Stanza, Option<u32>),
    /// A registration IQ before authentication; answer with [`C2s::preauth_reply`].
    PreAuthIq(Stanza),
    /// The stream ended; emitted once. The driver unregisters the session.
    Closed {
        /// Why it ended.
        reason: CloseReason,
    },
}
