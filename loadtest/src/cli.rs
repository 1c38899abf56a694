//! Command line.

use clap::{Parser, ValueEnum};
use std::path::PathBuf;

/// What to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// Login storm: all users log in at --rate logins/s (0 = as fast as possible).
    Connect,
    /// amoc's one-to-one chat: each user messages its 8 neighbours every --interval-ms.
    Chat,
    /// Closed loop: users paired, each keeps --window messages in flight.
    Max,
    /// Hold authenticated sessions open with whitespace keepalives.
    Idle,
    /// Chat traffic with stream management through server restarts: reconnect,
    /// resume or log in again, then count every acknowledged message delivered exactly once.
    Soak,
    /// XEP-0045 group chat: --rooms rooms of --occupants users each, every occupant
    /// sends --msg-rate groupchat messages/s (or one in flight with --closed).
    Muc,
    /// PEP fan-out (XEP-0163): user 1 publishes to its PEP node, users 2..=N+1 are its
    /// --contacts (mutual subscription, caps with +notify) and count the notifications.
    Pep,
    /// XEP-0077 in-band registration of all users.
    Register,
    /// Run the bare byte relay (baseline server) on --listen.
    RelayServer,
    /// Draw the JSON reports given after the options side by side into --chart FILE.svg.
    Chart,
}

/// `petrel-load`: load generator for any XMPP server.
#[derive(Debug, Clone, Parser)]
#[command(version, about)]
pub struct Args {
    /// Scenario.
    #[arg(value_enum)]
    pub scenario: Scenario,
    /// Server address.
    #[arg(long, default_value = "127.0.0.1:5222")]
    pub server: String,
    /// XMPP domain of the load users.
    #[arg(long, default_value = "localhost")]
    pub domain: String,
    /// A second server (federation load, chat/max/connect/idle/register): odd user indices log
    /// in here, as the same localparts at --domain-b, and every message crosses the servers.
    #[arg(long, requires = "domain_b")]
    pub server_b: Option<String>,
    /// XMPP domain of the users on --server-b.
    #[arg(long, requires = "server_b")]
    pub domain_b: Option<String>,
    /// With --server-b: seconds for a warm-up message to cross each way before the run fails.
    #[arg(long, default_value_t = 60.0)]
    pub warmup_timeout: f64,
    /// The nodes of one cluster (comma-separated addresses, all serving --domain), instead of
    /// --server: user u logs in to node u mod N (`--placement user`: pair partners on different
    /// nodes, every pair's messages cross) or (u / 2) mod N (`--placement pair`: partners on one
    /// node). A user whose node refuses connections moves on to the next node.
    #[arg(long, value_delimiter = ',', conflicts_with = "server_b")]
    pub nodes: Vec<String>,
    /// With --nodes: which users share a node (see --nodes).
    #[arg(long, value_enum, default_value = "user")]
    pub placement: Placement,
    /// Number of users (user1..userN); default 100, muc: rooms × occupants, pep: contacts + 1.
    #[arg(long)]
    pub users: Option<u32>,
    /// Password of every user.
    #[arg(long, default_value = "password")]
    pub password: String,
    /// Localpart prefix.
    #[arg(long, default_value = "user")]
    pub prefix: String,
    /// Number of the first user.
    #[arg(long, default_value_t = 1)]
    pub first: u32,
    /// Resource to bind.
    #[arg(long, default_value = "load")]
    pub resource: String,
    /// Measured phase length in seconds (chat, max, idle).
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Seconds to wait for in-flight messages after the measured phase.
    #[arg(long, default_value_t = 2.0)]
    pub grace: f64,
    /// Write the report as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Logins per second across all cores (0 = as fast as possible).
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Logins in progress at once per core.
    #[arg(long, default_value_t = 256)]
    pub concurrency: u64,
    /// Seconds before a login is given up.
    #[arg(long, default_value_t = 30.0)]
    pub login_timeout: f64,
    /// Chat: milliseconds between two messages of one user (between two bursts with --burst).
    #[arg(long, default_value_t = 20000)]
    pub interval_ms: u64,
    /// Chat: messages a user sends back to back every --interval-ms, to its next neighbours in
    /// turn (written together, so the server reads them together, as `max` at that window does).
    #[arg(long, default_value_t = 1)]
    pub burst: u32,
    /// Max: messages in flight per sender; pep: items in flight.
    #[arg(long, default_value_t = 16)]
    pub window: u32,
    /// Max: user i sends to user i+1 (mod N, a ring) instead of pairs (2k, 2k+1); one core only.
    #[arg(long)]
    pub ring: bool,
    /// Extra body bytes per message.
    #[arg(long, default_value_t = 0)]
    pub payload: usize,
    /// Chat and max: address each message to the recipient's full JID (`user@domain/--resource`),
    /// as a client does once a conversation's first reply came, instead of its bare JID.
    #[arg(long)]
    pub to_full_jid: bool,
    /// Chat and max: address every other message of a sender to the recipient's full JID, the
    /// rest to its bare JID (RFC 6120 §10.1 keeps one order across both; see the report's
    /// "out of order" line).
    #[arg(long)]
    pub mixed_jids: bool,
    /// Executors (one per core, not pinned).
    #[arg(long, default_value_t = 1)]
    pub cores: usize,
    /// Pin one executor to each listed CPU (e.g. "1" or "2,3" or "4-7"); overrides --cores.
    #[arg(long)]
    pub cpus: Option<String>,
    /// Bind connections to N loopback sources 127.0.0.2.. (0 = let the kernel choose).
    #[arg(long, default_value_t = 0, conflicts_with = "source_addrs")]
    pub source_ips: u32,
    /// Bind connections round robin to the IPv4 addresses FIRST-LAST (e.g.
    /// 127.0.0.2-127.0.0.40) before connecting: about 64k connections per source address.
    #[arg(long, value_parser = parse_addr_range)]
    pub source_addrs: Option<AddrRange>,
    /// Negotiate STARTTLS (required when given).
    #[arg(long)]
    pub starttls: bool,
    /// Accept any server certificate.
    #[arg(long)]
    pub insecure: bool,
    /// PEM file of CA certificates to trust.
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// SASL mechanisms in order of preference.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "SCRAM-SHA-256,SCRAM-SHA-1,PLAIN"
    )]
    pub mech: Vec<String>,
    /// SCRAM keys (ClientKey/ServerKey per password, salt and iterations) to start from and to
    /// save at the end, as a client caches them: a run after the first does no PBKDF2.
    #[arg(long)]
    pub scram_cache: Option<PathBuf>,
    /// Do not send initial presence.
    #[arg(long)]
    pub no_presence: bool,
    /// Log in with SASL2 + Bind 2 (XEP-0388, XEP-0386) when offered: no stream restart, stream
    /// management enabled inside the authentication; the bound resource is `--resource`/ID
    /// (`connect` and `idle` only: the other scenarios address full JIDs they choose).
    #[arg(long)]
    pub sasl2: bool,
    /// XEP-0198 stream management: enable it after bind, answer `<r/>`, count acked messages.
    #[arg(long)]
    pub sm: bool,
    /// With --sm: send `<r/>` after this many stanzas (and every 100 ms when some went out since).
    #[arg(long, default_value_t = 16)]
    pub ack_every: u32,
    /// Soak: mean seconds between two cuts of a client's own connection (resumed); 0 = never.
    #[arg(long, default_value_t = 0.0)]
    pub cut_interval: f64,
    /// Soak with --nodes: after its own cut a client resumes on the next node (XEP-0198
    /// resumption on another node of a cluster) instead of the same one.
    #[arg(long)]
    pub resume_elsewhere: bool,
    /// Max: drive the bare relay (`relay-server`) with its one-line handshake.
    #[arg(long)]
    pub relay: bool,
    /// How clients reach the server: a TCP stream, or WebSocket (RFC 7395) on the server's HTTP
    /// port (give that port as the server address).
    #[arg(long, value_enum, default_value = "tcp")]
    pub transport: Transport,
    /// With --transport ws: the WebSocket path.
    #[arg(long, default_value = "/ws-xmpp")]
    pub ws_path: String,
    /// Muc: number of rooms.
    #[arg(long, default_value_t = 10)]
    pub rooms: u32,
    /// Muc: occupants per room (room r holds users r*K .. r*K+K-1).
    #[arg(long, default_value_t = 10)]
    pub occupants: u32,
    /// Muc: groupchat messages per second sent by each occupant (fixed rate).
    #[arg(long, default_value_t = 1.0)]
    pub msg_rate: f64,
    /// Muc: closed loop instead of --msg-rate: each occupant sends its next message when its
    /// own previous one comes back from the room.
    #[arg(long)]
    pub closed: bool,
    /// Muc: seconds after the logins for every occupant to see its full room.
    #[arg(long, default_value_t = 300.0)]
    pub join_timeout: f64,
    /// Muc: the MUC service (default conference.DOMAIN).
    #[arg(long)]
    pub muc_service: Option<String>,
    /// Pep: contacts of the publisher (the run has contacts + 1 users).
    #[arg(long, default_value_t = 1000)]
    pub contacts: u32,
    /// Pep: items published per second (0 = closed loop with --window items in flight).
    #[arg(long, default_value_t = 0.0)]
    pub pub_rate: f64,
    /// Pep: seconds after the logins for the subscriptions and the warm-up.
    #[arg(long, default_value_t = 300.0)]
    pub setup_timeout: f64,
    /// Relay server: address to listen on.
    #[arg(long, default_value = "127.0.0.1:25300")]
    pub listen: String,
    /// Idle: seconds between whitespace keepalives of one session.
    #[arg(long, default_value_t = 30.0)]
    pub keepalive: f64,
    /// Idle: the server's PID, to report its RSS per session and CPU use.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// With --server-b: its PID, to report its CPU use over the measured phase.
    #[arg(long)]
    pub server_b_pid: Option<u32>,
    /// No progress lines on stderr.
    #[arg(long)]
    pub quiet: bool,
    /// Write an SVG chart of deliveries/s and p50/p99 time to delivery per second of the run
    /// (the `chart` scenario: of the reports given, side by side).
    #[arg(long)]
    pub chart: Option<PathBuf>,
    /// The `chart` scenario: JSON reports written with --json.
    #[arg(requires = "chart")]
    pub reports: Vec<PathBuf>,
}

/// Errors in the CPU list.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CpuListError {
    /// A part is not a number or range.
    #[error("bad CPU list element {0:?}")]
    Bad(String),
    /// The list is empty.
    #[error("empty CPU list")]
    Empty,
}

/// An inclusive range of IPv4 source addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddrRange {
    /// First address.
    pub first: std::net::Ipv4Addr,
    /// Number of addresses (at least 1).
    pub count: u32,
}

/// Parse "127.0.0.2-127.0.0.40" (or one address) into an [`AddrRange`].
pub fn parse_addr_range(s: &str) -> Result<AddrRange, String> {
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    let ip = |x: &str| {
        x.trim()
            .parse::<std::net::Ipv4Addr>()
            .map_err(|e| format!("{x:?}: {e}"))
    };
    let (a, b) = (ip(a)?, ip(b)?);
    let count = u32::from(b)
        .checked_sub(u32::from(a))
        .ok_or_else(|| format!("{b} comes before {a}"))?;
    Ok(AddrRange {
        first: a,
        count: count + 1,
    })
}

/// Parse "0,2,4-6" into [0, 2, 4, 5, 6].
pub fn parse_cpus(s: &str) -> Result<Vec<usize>, CpuListError> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let bad = || CpuListError::Bad(part.to_owned());
        match part.split_once('-') {
            Some((a, b)) => {
                let a: usize = a.trim().parse().map_err(|_| bad())?;
                let b: usize = b.trim().parse().map_err(|_| bad())?;
                if b < a {
                    return Err(bad());
                }
                out.extend(a..=b);
            }
            None => out.push(part.parse().map_err(|_| bad())?),
        }
    }
    if out.is_empty() {
        return Err(CpuListError::Empty);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpus("1"), Ok(vec![1]));
        assert_eq!(parse_cpus("0,2-4"), Ok(vec![0, 2, 3, 4]));
        assert!(parse_cpus("3-1").is_err());
        assert_eq!(parse_cpus(""), Err(CpuListError::Empty));
        assert!(parse_cpus("x").is_err());
    }

    #[test]
    fn addr_ranges() {
        let r = parse_addr_range("127.0.0.2-127.0.0.40").unwrap();
        assert_eq!((r.first, r.count), ("127.0.0.2".parse().unwrap(), 39));
        assert_eq!(parse_addr_range("127.0.0.9").unwrap().count, 1);
        assert!(parse_addr_range("127.0.0.9-127.0.0.2").is_err());
        assert!(parse_addr_range("127.0.0-x").is_err());
    }
}

/// `--placement`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Placement {
    /// User u on node u mod N.
    User,
    /// User u on node (u / 2) mod N: pair partners together.
    Pair,
}

/// `--transport`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Transport {
    /// The XML stream on a TCP connection (STARTTLS with --starttls).
    Tcp,
    /// XMPP over WebSocket (RFC 7395), plaintext HTTP.
    Ws,
}
