//! petrel: a thread-per-core XMPP server following MongooseIM's route of a message.
//!
//! The seed's seven steps, one place each (see `docs/ROUTE.md`):
//! 1. the sender's c2s receives and parses the stanza: [`rt`] (driver), [`c2s`] (sans-IO stream),
//!    [`xml`] (zero-copy scanner);
//! 2. `user_send_packet` and `user_send_{message,presence,iq,xmlel}`: [`c2s::route::user_send`], [`hooks`];
//! 3. the router chain (`global`, `localdomain`, `external_localnode`, `external`, `dynamic_domains`,
//!    `s2s`): [`router`];
//! 4. `mongoose_local_delivery` (`filter_local_packet`): [`local::deliver`];
//! 5. `ejabberd_local`, server-addressed vs user-addressed: [`local::process_packet`];
//! 6. `ejabberd_sm` (RFC 6121 §8.5, `offline_message`): [`sm`], on the recipient's home shard;
//! 7. the recipient's c2s: `user_receive_*`, `xmpp_presend_element`: [`c2s::route::user_receive`].
//!
//! The path of one stanza through these steps, shown step by step (`route explain`): [`explain`].
//!
//! Shards and the lock-free mesh between them: [`shard`] (per-shard route state) and [`rt`] (glommio
//! executors, SPSC rings). Users and storage: [`auth`], [`store`]. Configuration and CLI: [`config`],
//! [`cli`].

pub mod admin;
pub mod auth;
pub mod c2s;
pub mod cli;
pub mod cluster;
pub mod component;
pub mod config;
pub mod explain;
pub mod federation;
pub mod heap;
pub mod hooks;
pub mod jid;
pub mod local;
pub mod logging;
pub mod metrics;
pub mod modules;
pub mod router;
pub mod rt;
pub mod s2s;
pub mod shard;
pub mod sm;
pub mod store;
#[cfg(test)]
pub(crate) mod testing;
pub mod tls;
pub mod web;
pub mod xml;
pub mod xmpp;
