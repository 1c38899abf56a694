//! A petrel cluster over NATS (docs/CLUSTER.md): nodes share a replicated session map and carry
//! stanzas to each other's shards through a NATS server, each shard over its own connection.
//!
//! Sans-IO parts: the NATS protocol core (`nats`), the records nodes exchange (`wire`), the
//! membership (`members`), one shard's link state and reactions (`link`) and modules' requests
//! to other nodes (`rpc`). `rt::cluster` runs
//! the connections on the shards' executors.

pub mod link;
pub mod members;
mod membership;
pub mod nats;
pub mod objects;
mod peer;
pub mod rpc;
mod sessions;
mod stanzas;
pub mod wire;

pub use membership::tick;
pub use sessions::{announce_sessions, last_presence, request_sync};

use std::time::Duration;

use wire::Incarnation;

/// Subscription ids on a shard's connection.
pub mod sid {
    /// `petrel.C.n.NODE.SHARD`: stanzas for this shard's sessions.
    pub const STANZAS: u64 = 1;
    /// `INBOX.*`: acknowledgements, returned stanzas, sync answers.
    pub const INBOX: u64 = 2;
    /// `petrel.C.hb` (shard 0): heartbeats.
    pub const HEARTBEAT: u64 = 3;
    /// `petrel.C.sm` (shard 0): session records.
    pub const SM: u64 = 4;
    /// `petrel.C.sync.all` (shard 0): snapshot requests to every node.
    pub const SYNC: u64 = 5;
    /// `petrel.C.sync.NODE` (shard 0): snapshot requests to this node. A sid of its own: NATS
    /// ignores a second `SUB` with a sid already in use on the connection.
    pub const SYNC_NODE: u64 = 6;
}

/// This node, as every shard's link knows it.
#[derive(Debug, Clone)]
pub struct Node {
    /// `petrel.CLUSTER`: the prefix of every subject.
    pub prefix: String,
    /// This node's name and incarnation.
    pub me: Incarnation,
    /// The c2s address announced in heartbeats.
    pub c2s: String,
    /// How often shard 0 publishes a heartbeat.
    pub heartbeat: Duration,
    /// Silence after which a member is dead.
    pub failure_timeout: Duration,
    /// Credentials for NATS.
    pub auth: crate::config::NatsAuth,
    /// The TLS client configuration for `tls://` servers (built at start when one is listed).
    pub tls: Option<std::sync::Arc<rustls::ClientConfig>>,
}

impl Node {
    /// This start of node `cfg.node` (a fresh random incarnation id).
    pub fn new(cfg: &crate::config::ClusterConfig, c2s: String) -> Node {
        let mut id = [0u8; 8];
        // Without the OS's randomness, the time still tells two starts apart.
        if getrandom::getrandom(&mut id).is_err() {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            id = (t.as_nanos() as u64).to_le_bytes();
        }
        Node {
            prefix: format!("petrel.{}", cfg.name),
            me: Incarnation {
                node: cfg.node.clone(),
                id: u64::from_le_bytes(id),
            },
            c2s,
            heartbeat: cfg.heartbeat,
            failure_timeout: cfg.failure_timeout,
            auth: cfg.auth.clone(),
            tls: None,
        }
    }
}
