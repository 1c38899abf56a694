//! The web transports of c2s sessions and their sans-IO framing: XMPP over WebSocket (RFC 7395),
//! BOSH (XEP-0124/0206) and the element splitter they share. The HTTP listener that carries them
//! is `rt::http`.

pub mod bosh;
mod link;
pub mod split;
pub mod ws;

pub use link::{Confirmed, Link};
