//! HTTP transports for XMPP: BOSH (XEP-0124/0206).

pub mod bosh;
