//! Server-to-server streams (RFC 6120, XEP-0220 dialback, XEP-0185 keys, SASL EXTERNAL with
//! certificates) as sans-IO state machines, shaped like [`crate::c2s::C2s`].
//!
//! [`S2sIn`] is an accepted connection: we are the receiving server (a peer authenticates its
//! domains, then sends stanzas) and the authoritative server (answering `<db:verify/>` with our
//! [`S2sConfig::dialback_secret`]). [`S2sOut`] is a connection we open: we are the originating
//! server (authenticating one local domain to one remote domain, then sending stanzas) and the
//! receiving server asking the remote authoritative server to verify a key
//! ([`S2sOut::request_verify`]).
//!
//! Both take the bytes read from the socket (`handle_input`), hand back the bytes to write
//! (`take_transmit`), report events (`poll_event`) and own no clock: the driver passes `now` in,
//! asks `next_timeout` when to call `handle_timeout`, and sets the wall-clock time certificates are
//! checked against (`set_wall_clock`). Output is bounded: the driver reads nothing while
//! `may_read` says no (more than `outbound_queue_bytes` untaken).
//!
//! Domains are compared in their prepared form (RFC 7622), the one the router uses: a `from` or
//! dialback domain that preparation would change (`straße` to `strasse`) is refused.

mod cert;
mod config;
mod dialback;
mod error;
mod features;
mod incoming;
mod io;
mod outgoing;

#[cfg(test)]
mod tests;

pub use cert::{CertUsage, Trust, TrustError};
pub use config::{
    any_server_cert, client_tls_config, server_tls_config, S2sConfig, ALPN_XMPP_SERVER,
};
pub use dialback::{dialback_key, key_matches};
pub use error::{CloseReason, PushError, S2sOutFailure};
pub use incoming::S2sIn;
pub use outgoing::S2sOut;

use crate::jid::Jid;
use crate::xml::Stanza;

/// Default namespace of server-to-server streams.
pub const NS_SERVER: &str = crate::xmpp::ns::SERVER;
/// The `db:` prefix namespace (XEP-0220).
pub const NS_DIALBACK: &str = "jabber:server:dialback";
/// The dialback stream feature (XEP-0220 §2.5).
pub const NS_DIALBACK_FEATURE: &str = "urn:xmpp:features:dialback";

/// How a remote domain proved its identity on an incoming stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// Server dialback (XEP-0220), the key checked by the authoritative server.
    Dialback,
    /// SASL EXTERNAL with a client certificate valid for the domain (RFC 6120 §6, XEP-0178).
    SaslExternal,
}

/// Something the driver of an [`S2sIn`] must act on.
#[derive(Debug)]
pub enum S2sInEvent {
    /// A `<db:result/>`: ask the authoritative server of `remote` (over an [`S2sOut`] to it,
    /// [`S2sOut::request_verify`]) whether `key` is its key for (`local`, `remote`, `stream_id`),
    /// then call [`S2sIn::dialback_verified`].
    VerifyRequest {
        /// The domain claiming to originate the stream (`from` of `<db:result/>`).
        remote: String,
        /// Our domain it wants to talk to (`to`).
        local: String,
        /// This stream's id (the one the key was computed over).
        stream_id: String,
        /// The dialback key as sent.
        key: String,
    },
    /// `remote` may now send stanzas to `local` on this stream.
    Authenticated {
        /// The authenticated remote domain.
        remote: String,
        /// Our domain it is authenticated to.
        local: String,
        /// How it authenticated.
        method: AuthMethod,
    },
    /// A stanza from an authenticated domain to one of ours (`from`, `to` checked).
    Stanza {
        /// The stanza as received.
        stanza: Stanza,
        /// Its `from`, prepared: its domain is an authenticated remote domain.
        from: Jid,
        /// Its `to`, prepared: its domain is the local domain `from`'s domain authenticated to.
        to: Jid,
    },
    /// A stanza to a domain the stream authenticated for that is no longer served (removed at
    /// run time): it is refused alone, with a stanza error, not with the stream.
    Unserved {
        /// The stanza as received.
        stanza: Stanza,
        /// Its `from`, prepared (an authenticated remote domain).
        from: Jid,
        /// Its `to`, prepared.
        to: Jid,
    },
    /// The stream ended; emitted once.
    Closed {
        /// Why it ended.
        reason: CloseReason,
    },
}

/// Something the driver of an [`S2sOut`] must act on.
#[derive(Debug)]
pub enum S2sOutEvent {
    /// The stream is authenticated: [`S2sOut::push_stanza`] may be called.
    Ready {
        /// How we authenticated.
        method: AuthMethod,
    },
    /// The remote authoritative server answered a [`S2sOut::request_verify`]: call
    /// [`S2sIn::dialback_verified`] on the stream that asked.
    Verified {
        /// The stream id given to `request_verify`.
        id: String,
        /// The key is the remote's key (`type='valid'`), or not (`type='invalid'`).
        valid: bool,
    },
    /// A [`S2sOut::request_verify`] got no answer (`type='error'`, or this stream closed first):
    /// call [`S2sIn::dialback_failed`] on the stream that asked. Every request gets exactly one
    /// `Verified` or `VerifyFailed`.
    VerifyFailed {
        /// The stream id given to `request_verify`.
        id: String,
    },
    /// The stream ended; emitted once. Stanzas not yet taken by `take_transmit` are lost: the
    /// driver bounces what it still holds (see [`S2sOutFailure::bounce_condition`]).
    Closed {
        /// Why it ended.
        reason: S2sOutFailure,
    },
}
