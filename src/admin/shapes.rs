//! The JSON bodies of the admin API, shared by the server and `petrel ctl`.

use serde::{Deserialize, Serialize};

/// `POST /api/users`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    /// `user@domain`.
    pub jid: String,
    /// The password (kept only as SCRAM secrets).
    pub password: String,
}

/// `PUT /api/users/{jid}/password`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewPassword {
    /// The new password.
    pub password: String,
}

/// `POST /api/messages`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewMessage {
    /// Sender JID.
    pub from: String,
    /// Recipient JID.
    pub to: String,
    /// Text of `<body/>`.
    pub body: String,
    /// `chat` (default), `normal`, `headline` or `groupchat`.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

/// `POST /api/stanzas`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewStanza {
    /// Sender JID (the stanza's `from` is set to it).
    pub from: String,
    /// One `<message/>`, `<presence/>` or `<iq/>` with a `to`.
    pub stanza: String,
}

/// `POST /api/domains`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewDomain {
    /// The domain to serve.
    pub domain: String,
}

/// `GET /api/users`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Users {
    /// Bare JIDs, sorted.
    pub users: Vec<String>,
}

/// The answer naming the account a command acted on.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserDone {
    /// The account.
    pub jid: String,
    /// Sessions closed by the command (deleting an account closes its sessions).
    #[serde(default)]
    pub kicked: usize,
}

/// One session in `GET /api/sessions`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionInfo {
    /// Full JID.
    pub jid: String,
    /// The shard its connection lives on.
    pub shard: u16,
    /// The client's address (`ip:port`).
    pub peer: String,
    /// `tcp`, `websocket` or `bosh`.
    pub transport: String,
    /// Presence priority, `null` until the session sent available presence.
    pub priority: Option<i8>,
    /// When the connection was opened, seconds since the Unix epoch.
    pub since: u64,
    /// When its client went away, for a session stream management (XEP-0198) keeps for a
    /// resumption; `null` while connected.
    #[serde(default)]
    pub detached_since: Option<u64>,
}

/// `GET /api/sessions`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sessions {
    /// Sorted by JID.
    pub sessions: Vec<SessionInfo>,
}

/// `DELETE /api/sessions/...`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Kicked {
    /// Sessions closed.
    pub kicked: usize,
}

/// `POST /api/messages`, `POST /api/stanzas`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Routed {
    /// The stanza as routed.
    pub stanza: String,
}

/// One domain in `GET /api/domains`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DomainInfo {
    /// The domain.
    pub domain: String,
    /// Added at run time (else from `general.hosts`).
    pub dynamic: bool,
}

/// `GET /api/domains`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Domains {
    /// Configured ones first, then run-time ones, each sorted.
    pub domains: Vec<DomainInfo>,
}

/// One room in `GET /api/rooms`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoomInfo {
    /// Room JID.
    pub jid: String,
    /// Its name (empty if none).
    pub name: String,
    /// Listed in the service's disco#items.
    pub public: bool,
    /// Occupants now.
    pub occupants: usize,
    /// Its home shard.
    pub shard: u16,
}

/// `GET /api/rooms`: the rooms in use (persistent rooms nobody entered since the start are not
/// loaded, so not listed).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Rooms {
    /// MUC is configured.
    pub muc: bool,
    /// Sorted by JID.
    pub rooms: Vec<RoomInfo>,
}

/// One shard in `GET /api/stats`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShardStats {
    /// Shard number.
    pub shard: u16,
    /// Open connections (c2s, WebSocket).
    pub connections: usize,
    /// Bound sessions on its connections.
    pub sessions: usize,
    /// Stanzas that entered the route from its clients.
    pub routed: u64,
    /// Messages put into its connections' mailboxes: stanzas and the control messages that go the
    /// same way (bind results, kicks, acknowledgements).
    pub delivered: u64,
}

/// `GET /api/stats`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Stats {
    /// Seconds since the server started.
    pub uptime_secs: u64,
    /// Number of shards.
    pub shards: usize,
    /// Bound sessions, all shards.
    pub sessions: usize,
    /// Stanzas routed from clients, all shards.
    pub routed: u64,
    /// Store jobs waiting for a store thread.
    pub store_queue: usize,
    /// Per shard.
    pub per_shard: Vec<ShardStats>,
}

/// `GET /api/cluster`: this node's view of its cluster.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ClusterView {
    /// This node's name (none: not in a cluster).
    pub node: Option<String>,
    /// Sessions bound on this node.
    pub local_sessions: usize,
    /// The other live members.
    pub members: Vec<ClusterMember>,
    /// Cross-node traffic, all shards.
    pub traffic: crate::cluster::link::LinkStats,
}

/// One other member in `GET /api/cluster`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterMember {
    /// Its name.
    pub node: String,
    /// Its incarnation (random per start), hexadecimal.
    pub incarnation: String,
    /// Its shard count.
    pub shards: u16,
    /// Its c2s address.
    pub c2s: String,
    /// Its sessions in this node's replica of the session map.
    pub sessions: usize,
    /// Of those, the available ones with a non-negative priority (they take bare-JID messages).
    pub available: usize,
}
