//! BOSH (XEP-0124) carrying XMPP (XEP-0206), as a sans-IO core.
//!
//! [`parse`] turns an HTTP request body into a [`Request`]; a [`BoshSession`] takes requests in
//! any order, processes them in `rid` order, turns them into the byte stream a `C2s` expects (a
//! synthetic stream header at creation and after each restart, then the children as written) and
//! puts the `C2s`'s output elements into response bodies. It owns no socket and no clock: the
//! driver carries out [`Action`]s, passes `now` in and asks [`BoshSession::next_timeout`].

mod body;
mod out;
mod session;
mod wire;

#[cfg(test)]
mod tests;

use std::time::Duration;

pub use body::{parse, sid_of, BodyError, BodyLimits, Request};
pub use session::{Action, BoshSession, RequestId};
pub use wire::{terminate, Condition};

/// The `<body/>` namespace.
pub const NS_HTTPBIND: &str = "http://jabber.org/protocol/httpbind";
/// The `xmpp:` attributes' namespace (XEP-0206).
pub const NS_XBOSH: &str = "urn:xmpp:xbosh";

/// Session parameters (the client's asks are clamped to them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoshConfig {
    /// Longest `wait` granted (and the default).
    pub max_wait: Duration,
    /// Most requests held at once (`requests` is one more).
    pub max_hold: u32,
    /// A session without any request for this long ends.
    pub inactivity: Duration,
    /// Shortest interval between polls that the client is told (`polling`).
    pub polling: Duration,
    /// Longest `pause` granted; `None`: pausing is not offered.
    pub max_pause: Option<Duration>,
    /// Bounds on request bodies.
    pub limits: BodyLimits,
    /// C2s output held for the next request before the driver leaves the rest in the C2s (whose
    /// own outbound bound then closes a client that does not come back for it).
    pub max_queued_bytes: usize,
    /// Most sessions on one shard; a creation request past it is refused (`policy-violation`).
    pub max_sessions: usize,
}

impl Default for BoshConfig {
    fn default() -> Self {
        BoshConfig {
            max_wait: Duration::from_secs(60),
            max_hold: 1,
            inactivity: Duration::from_secs(30),
            polling: Duration::from_secs(2),
            max_pause: Some(Duration::from_secs(120)),
            limits: BodyLimits::default(),
            max_queued_bytes: 256 * 1024,
            max_sessions: 65_536,
        }
    }
}

/// A new session id naming the shard that owns the session (`<shard>.<random>`).
pub fn new_sid(shard: usize) -> Result<String, getrandom::Error> {
    let a = crate::c2s::random_token()?;
    let b = crate::c2s::random_token()?;
    Ok(format!("{shard}.{a}{b}"))
}

/// The shard named by a session id, if it has the form [`new_sid`] writes.
pub fn sid_shard(sid: &str) -> Option<usize> {
    sid.split_once('.')?.0.parse().ok()
}
