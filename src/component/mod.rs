//! External components (XEP-0114, `jabber:component:accept`) as a sans-IO state machine.
//!
//! [`Component`] takes the bytes read from a socket and hands back the bytes to write plus
//! [`ComponentEvent`]s for the driver: the handshake succeeded (register the route, then answer with
//! [`Component::route_result`]), a stanza to route, the stream ended. Like `c2s::C2s` it owns no socket
//! and no clock: the driver passes `now` in and asks [`Component::next_timeout`] when to call
//! [`Component::handle_timeout`].
//!
//! The routes of connected components (a per-shard table announced by the domain's home shard) are in
//! [`routes`].

pub mod routes;
mod stream;

#[cfg(test)]
mod tests;

use std::time::Duration;

use ahash::HashMap;

pub use routes::Routes;
pub use stream::{handshake_digest, Component};

use crate::xml::Stanza;
use crate::xmpp::StreamErrorCondition;

/// Configuration shared by every component stream of a listener (read-only once built).
#[derive(Debug, Clone)]
pub struct ComponentConfig {
    /// Shared secret per component domain (`[components."domain"] password`).
    pub secrets: HashMap<String, String>,
    /// Scanner limits (stanza bytes, depth, attributes).
    pub limits: crate::xml::Limits,
    /// Bound in bytes of output not yet taken by the driver; `deliver` past it closes the stream.
    pub outbound_queue_bytes: usize,
    /// Time from connect until the handshake is accepted (zero disables it).
    pub auth_timeout: Duration,
    /// Time without any input byte before the stream is closed (zero disables it).
    pub idle_timeout: Duration,
}

/// Something the driver must act on.
#[derive(Debug)]
pub enum ComponentEvent {
    /// The handshake proved the secret of `domain`: claim the route, then call
    /// [`Component::route_result`]. Input is held until then.
    Authenticated {
        /// The component's domain.
        domain: String,
    },
    /// A stanza from the component: `from` is at its domain, `to` is present, the content namespace
    /// is already `jabber:client` (see [`Stanza::into_client_ns`]).
    Stanza(Stanza),
    /// The stream ended; emitted once. The driver releases the route.
    Closed {
        /// Why it ended.
        reason: CloseReason,
    },
}

/// Why a component stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The component sent `</stream:stream>`.
    PeerClosed,
    /// The driver reported the socket gone (`peer_closed`).
    Disconnected,
    /// The server sent this stream error.
    StreamError(StreamErrorCondition),
    /// The server closed without an error (`close(None)`).
    ServerClosed,
}

/// The route for the domain could not be claimed: another connection holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("another connection holds this component domain")]
pub struct RouteConflict;

/// `deliver` refused the stanza: the outbound queue is over its bound (the stream is now closing) or
/// the stream is already closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("component outbound queue overflow or stream closed")]
pub struct Overflow;
