//! petrel: a thread-per-core XMPP server following MongooseIM's route of a message.

pub mod auth;
pub mod c2s;
pub mod cli;
pub mod config;
pub mod hooks;
pub mod jid;
pub mod local;
pub mod logging;
pub mod modules;
pub mod router;
pub mod rt;
pub mod shard;
pub mod sm;
pub mod store;
pub mod tls;
pub mod xml;
pub mod xmpp;
