//! One shard's link to the cluster: its own NATS connection's protocol state, the copies of the
//! stanzas it published and no one acknowledged yet, the member table; what arrives is dispatched
//! to `stanzas`, `sessions` and `membership`. No socket here: `rt::cluster` moves the bytes.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::task::Waker;
use std::time::Instant;

use ahash::HashMap;

use super::members::{Members, Table};
use super::membership::heard;
use super::nats::{Msg, NatsCore};
use super::peer::Peer;
use super::sessions::{local_change, session_record, snapshot, sync_answer};
use super::stanzas::{acked, deliver, gap, returned, send_remote};
use super::wire::Record;
use super::{sid, Node};
use crate::hooks::Acc;
use crate::shard::Shard;

/// The member slot of the acknowledgement tokens of stanzas from other nodes (no member has it:
/// slots stop below).
pub const INBOX_SLOT: u16 = 0x7fff;

/// Stanzas a shard keeps copies of until the receiving node acknowledges them; past it, a stanza
/// for another node is answered `resource-constraint` (type `wait`).
pub const MAX_UNACKED: usize = 16_384;

/// Bytes of output a shard's NATS connection may hold unwritten before stanzas are refused
/// (answered `resource-constraint`); session-map and acknowledgement records may use four times
/// as much, then are dropped, logged and counted (`sm_dropped`).
pub const OUTPUT_LIMIT: usize = 8 * 1024 * 1024;

/// Largest batch of session records in one sync answer (below NATS's default 1 MiB payload).
pub(super) const SYNC_BATCH: usize = 256 * 1024;

/// This shard's link (shared by its tasks and its handlers; single-threaded).
pub type LinkRc = Rc<RefCell<Link>>;

/// The link as module state in `Shard::ext` (for closures run on the shard and the admin API).
#[derive(Clone)]
pub struct ClusterExt(pub LinkRc);

/// Counters of one shard's cross-node traffic.
#[derive(Debug, Default, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct LinkStats {
    /// Stanzas published to other nodes.
    pub stanzas_out: u64,
    /// Stanzas received from other nodes.
    pub stanzas_in: u64,
    /// Stanzas refused (bounced `resource-constraint`): output or unacknowledged copies full.
    pub refused: u64,
    /// Stanzas NATS returned (no one listens: the node is gone), routed again here.
    pub returned: u64,
    /// Unacknowledged stanzas routed again because their node died or the connection dropped.
    pub rerouted: u64,
    /// Session-map records published.
    pub sm_out: u64,
    /// Session-map records applied from other nodes.
    pub sm_in: u64,
    /// Session-map records dropped (output over four times its bound).
    pub sm_dropped: u64,
    /// Gaps in a sender's sequence seen here (NATS dropped stanzas; the sender re-sends them).
    #[serde(default)]
    pub gaps: u64,
}

impl LinkStats {
    /// Adds another shard's counters.
    pub fn add(&mut self, o: &LinkStats) {
        self.stanzas_out += o.stanzas_out;
        self.stanzas_in += o.stanzas_in;
        self.refused += o.refused;
        self.returned += o.returned;
        self.rerouted += o.rerouted;
        self.sm_out += o.sm_out;
        self.sm_in += o.sm_in;
        self.sm_dropped += o.sm_dropped;
        self.gaps += o.gaps;
    }
}

/// One shard's part of `GET /api/cluster`: counters, (sessions, available with a non-negative
/// priority) per member slot, and the members (shard 0).
pub type ShardView = (
    LinkStats,
    HashMap<u16, (usize, usize)>,
    Vec<(u16, super::members::Member)>,
);

/// What one shard tells `GET /api/cluster`: its counters, its sessions per member slot, and on
/// shard 0 the members.
pub fn shard_view(shard: &Shard) -> Option<ShardView> {
    let link = link_of(shard)?;
    let l = link.borrow();
    let mut per_slot: HashMap<u16, (usize, usize)> = HashMap::default();
    for r in shard.sm.all_resources() {
        if let Some((slot, _)) = r.session.remote_parts() {
            let e = per_slot.entry(slot).or_default();
            e.0 += 1;
            e.1 += usize::from(r.priority.is_some_and(|p| p >= 0));
        }
    }
    let members = l
        .members
        .as_ref()
        .map(|m| m.live().map(|m| (m.slot, m.clone())).collect())
        .unwrap_or_default();
    Some((l.stats, per_slot, members))
}

/// One shard's link state.
pub struct Link {
    /// This node.
    pub node: Rc<Node>,
    /// This shard.
    pub shard: u16,
    /// The connection's protocol state (replaced on each reconnection).
    pub nats: NatsCore,
    /// Connected to a NATS server now.
    pub connected: bool,
    /// This shard's inbox subject: acknowledgements, gaps and returns come to
    /// `INBOX.SLOT.SHARD.SEQ` (the reply subject of a stanza), sync answers to `INBOX.sync`.
    pub inbox: String,
    /// Per receiving (member slot, shard): subjects, last sequence number, unacknowledged copies.
    pub(super) peers: HashMap<(u16, u16), Peer>,
    /// Next sequence number expected per sender (the reply subject's prefix), to notice gaps;
    /// kept across reconnections (a gap is what a reconnection after a drop shows).
    pub(super) expected: HashMap<String, u64>,
    pub(super) next_serial: u64,
    /// Copies held, all peers (bounded by [`MAX_UNACKED`]).
    pub(super) unacked_len: usize,
    /// Senders' reply prefixes (`INBOX.SLOT.SHARD` of another node's shard), numbered: a stanza
    /// from one carries the token `Handled(SessionRef::remote(INBOX_SLOT, this shard, number),
    /// seq)`, whose drop at the end of the stanza's route acknowledges it to that sender.
    pub(super) senders: HashMap<u64, String>,
    /// The numbers of `senders`.
    pub(super) sender_ids: HashMap<String, u64>,
    /// Sender numbers in the order given (the oldest are forgotten first), and the next one.
    pub(super) sender_order: VecDeque<u64>,
    /// The next sender number (never reused: a token still travelling never names another).
    pub(super) next_sender: u64,
    /// Scratch buffer for record headers (no allocation per stanza).
    pub(super) scratch: Vec<u8>,
    /// Every shard's copy of the member slots.
    pub table: Table,
    /// Shard 0 only: the membership.
    pub members: Option<Members>,
    /// Shard 0 only: other nodes' snapshot frames open on this connection.
    pub(super) snapshots: super::sessions::Snapshots,
    /// Shard 0 only: stanzas NATS returned just after our reconnection, waiting for their
    /// member's shard to subscribe again (`stanzas::returned`; at most [`MAX_UNACKED`]).
    pub(super) held: Vec<super::stanzas::Held>,
    /// Shard 0 only: the (member slot, shard)s that announced themselves on this connection
    /// (subscribed again on this server).
    pub(super) back: ahash::HashSet<(u16, u16)>,
    /// Counters.
    pub stats: LinkStats,
    waker: Option<Waker>,
}

impl Link {
    /// The link of shard `shard` of `node`.
    pub fn new(node: Rc<Node>, shard: u16) -> Link {
        let inbox = format!(
            "{}.r.{}.{:x}.{shard}",
            node.prefix, node.me.node, node.me.id
        );
        let members = (shard == 0).then(|| Members::new(node.me.clone(), node.failure_timeout));
        Link {
            node,
            shard,
            nats: NatsCore::new(OUTPUT_LIMIT),
            connected: false,
            inbox,
            peers: HashMap::default(),
            expected: HashMap::default(),
            scratch: Vec::new(),
            next_serial: 0,
            unacked_len: 0,
            senders: HashMap::default(),
            sender_ids: HashMap::default(),
            sender_order: VecDeque::new(),
            next_sender: 0,
            table: Table::default(),
            members,
            snapshots: Default::default(),
            held: Vec::new(),
            back: Default::default(),
            stats: LinkStats::default(),
            waker: None,
        }
    }

    /// Starts a new connection's protocol: `CONNECT` and this shard's subscriptions. Returns the
    /// copies of stanzas the old connection may not have carried (to route again).
    pub fn reset(&mut self) -> Vec<Acc> {
        self.nats = NatsCore::new(OUTPUT_LIMIT);
        let name = format!("{}/{}", self.node.me.node, self.shard);
        self.nats.connect(&name, &self.node.auth);
        let p = &self.node.prefix;
        self.nats.subscribe(
            &format!("{p}.n.{}.{}", self.node.me.node, self.shard),
            sid::STANZAS,
        );
        self.nats
            .subscribe(&format!("{}.>", self.inbox), sid::INBOX);
        if self.shard == 0 {
            self.nats.subscribe(&format!("{p}.hb"), sid::HEARTBEAT);
            self.nats.subscribe(&format!("{p}.sm"), sid::SM);
            self.nats.subscribe(&format!("{p}.sync.all"), sid::SYNC);
            self.nats
                .subscribe(&format!("{p}.sync.{}", self.node.me.node), sid::SYNC_NODE);
        }
        self.unacked_len = 0;
        self.snapshots.clear();
        self.back.clear();
        if let Some(m) = self.members.as_mut() {
            m.refresh_all(Instant::now());
        }
        let lost: Vec<Acc> = self.peers.values_mut().flat_map(Peer::take_all).collect();
        self.stats.rerouted += lost.len() as u64;
        self.wake();
        lost
    }

    /// The writer's waker: output is waiting.
    pub fn set_waker(&mut self, w: &Waker) {
        if !self.waker.as_ref().is_some_and(|old| old.will_wake(w)) {
            self.waker = Some(w.clone());
        }
    }

    /// Wakes the writer (output is waiting).
    pub fn wake(&mut self) {
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    /// Publishes a control record (session map, acknowledgement, heartbeat): bounded at four times
    /// the stanza bound, then dropped and counted.
    pub(super) fn publish_control(
        &mut self,
        subject: &str,
        reply: Option<&str>,
        payload: &[u8],
    ) -> bool {
        if self.nats.output_len() > OUTPUT_LIMIT * 4 {
            self.stats.sm_dropped += 1;
            tracing::warn!(
                shard = self.shard,
                subject,
                "cluster output full: record dropped"
            );
            return false;
        }
        self.nats.publish_control(subject, reply, payload);
        self.wake();
        true
    }

    /// Takes the copies kept for member `slot` (it died); its peers go (numbering starts again
    /// for whoever gets the slot next).
    pub(super) fn take_copies(&mut self, slot: u16) -> Vec<Acc> {
        let mut out = Vec::new();
        self.peers.retain(|k, p| {
            if k.0 == slot {
                out.extend(p.take_all());
            }
            k.0 != slot
        });
        self.unacked_len -= out.len();
        out
    }

    /// Shard 0: true when NATS's return of a stanza (no one subscribed on its member's shard)
    /// does not show a death: our connection is down, or came back less than the failure
    /// timeout ago (the member's shards may not have subscribed again on that server yet).
    pub(super) fn resubscribing(&self, now: Instant) -> bool {
        !self.connected
            || self
                .members
                .as_ref()
                .is_some_and(|m| m.just_reconnected(now))
    }

    /// Shard 0: takes the held stanzas `which` selects, oldest first.
    pub(super) fn take_held(&mut self, which: impl Fn(&super::stanzas::Held) -> bool) -> Vec<Acc> {
        let (out, keep) = std::mem::take(&mut self.held)
            .into_iter()
            .partition::<Vec<_>, _>(|h| which(h));
        self.held = keep;
        out.into_iter().map(|h| h.acc).collect()
    }

    /// Takes the copies for (slot, shard) with sequence numbers in `seqs` (returned by NATS, or
    /// reported missing by the receiver).
    pub(super) fn take_range(&mut self, key: (u16, u16), seqs: std::ops::Range<u64>) -> Vec<Acc> {
        let out = self
            .peers
            .get_mut(&key)
            .map(|p| p.take(seqs))
            .unwrap_or_default();
        self.unacked_len -= out.len();
        out
    }
}

/// The (member slot, shard) and sequence number of a stanza's reply subject
/// `INBOX.SLOT.SHARD.SEQ`, as it comes back to the inbox.
pub(super) fn reply_parts(inbox: &str, subject: &str) -> Option<((u16, u16), u64)> {
    let rest = subject.strip_prefix(inbox)?.strip_prefix('.')?;
    let mut t = rest.split('.');
    let slot = t.next()?.parse().ok()?;
    let shard = t.next()?.parse().ok()?;
    let seq = t.next()?.parse().ok()?;
    t.next().is_none().then_some(((slot, shard), seq))
}

/// The link of the shard a closure runs on.
pub(super) fn link_of(shard: &Shard) -> Option<LinkRc> {
    shard.ext.get::<ClusterExt>().map(|c| c.0.clone())
}

/// Plugs the link into its shard: the remote session handler, the session listener, the state.
pub fn install(shard: &mut Shard, link: &LinkRc) {
    let l = link.clone();
    shard.set_session_handler(Rc::new(move |shard, session, msg| {
        send_remote(&l, shard, session, msg)
    }));
    let l = link.clone();
    shard.set_session_listener(Rc::new(move |shard, jid, session, now| {
        local_change(&l, shard, jid, session, now)
    }));
    shard.ext.insert(ClusterExt(link.clone()));
}

/// What arrived on this shard's connection, in order. Shard-side effects go through `shard`.
pub fn on_msg(link: &LinkRc, shard: &mut Shard, msg: Msg) {
    if msg.sid == sid::STANZAS {
        match msg.payload.first() {
            // A module's request to this node (`rpc`, on shard 0's subject).
            Some(b'M') => {
                if let Ok(rec) = Record::decode(&msg.payload) {
                    super::rpc::on_request(shard, rec, msg.reply);
                }
                return;
            }
            // A stanza for an object (MUC room, PubSub node) living here (shard 0).
            Some(b'R') => {
                return super::objects::deliver(link, shard, msg.payload, msg.reply.as_deref());
            }
            _ => {}
        }
        // One `Deliver` record per message, decoded in place.
        return deliver(link, shard, msg.payload, msg.reply.as_deref());
    }
    let records = match Record::decode_all(&msg.payload) {
        Ok(r) => r,
        Err(_) if msg.status.is_some() => Vec::new(),
        Err(e) => {
            tracing::warn!(shard = shard.id.0, subject = msg.subject, "cluster: {e}");
            return;
        }
    };
    match msg.sid {
        sid::INBOX => {
            let answer = super::rpc::answer_id(&link.borrow().inbox, &msg.subject);
            if let Some(id) = answer {
                let rec = records.into_iter().next().filter(|_| msg.status.is_none());
                return super::rpc::on_answer(shard, id, rec, msg.reply);
            }
            let parts = reply_parts(&link.borrow().inbox, &msg.subject);
            if let Some((key, seq)) = parts {
                if msg.status == Some(503) {
                    returned(link, shard, key, seq);
                    return;
                }
                for rec in records {
                    match rec {
                        Record::Gap { from_seq } => gap(link, shard, key, from_seq..seq),
                        Record::Ack { seqs, .. } => acked(link, key, &seqs),
                        _ => {}
                    }
                }
                return;
            }
            for rec in records {
                match rec {
                    rec @ Record::Bound { .. } => session_record(link, shard, rec),
                    rec @ Record::Snapshot { .. } => snapshot(link, shard, rec),
                    rec @ Record::Owned { .. } => super::objects::record(link, shard, rec),
                    _ => {}
                }
            }
        }
        sid::HEARTBEAT => {
            for rec in records {
                if let Record::Heartbeat { from, shards, c2s } = rec {
                    heard(link, shard, &from, Some((shards, &c2s)));
                }
            }
        }
        sid::SM => {
            for rec in records {
                match rec {
                    rec @ Record::Snapshot { .. } => snapshot(link, shard, rec),
                    rec @ (Record::Owned { .. } | Record::Disowned { .. }) => {
                        super::objects::record(link, shard, rec)
                    }
                    rec => session_record(link, shard, rec),
                }
            }
        }
        sid::SYNC | sid::SYNC_NODE => {
            if let Some(reply) = msg.reply {
                if msg.sid == sid::SYNC {
                    // A node whose shard 0 just (re)connected: it may have missed our
                    // announcements as we may have missed its, so we ask it back (a targeted
                    // request, which is not asked back).
                    super::sessions::ask_back(link, &reply);
                }
                sync_answer(shard, reply);
            }
        }
        _ => {}
    }
}

/// Node `name` of cluster `petrel.t` (unit tests).
#[cfg(test)]
pub(crate) fn test_node(name: &str) -> Node {
    use std::time::Duration;
    Node {
        prefix: "petrel.t".into(),
        me: super::wire::Incarnation {
            node: name.into(),
            id: 1,
        },
        c2s: String::new(),
        heartbeat: Duration::from_millis(500),
        failure_timeout: Duration::from_secs(3),
        auth: Default::default(),
        tls: None,
    }
}

/// A one-shard node `name` with its link installed and its first output taken (unit tests).
#[cfg(test)]
pub(super) fn test_shard(name: &str) -> (Shard, LinkRc) {
    let mut shard = Shard::new(
        crate::shard::ShardId(0),
        1,
        Rc::new(["localhost".to_owned()].into_iter().collect()),
        crate::shard::cluster::DEFAULT_ROUTING.to_vec().into(),
        usize::MAX / 2,
    );
    let link = Rc::new(RefCell::new(Link::new(Rc::new(test_node(name)), 0)));
    install(&mut shard, &link);
    link.borrow_mut().nats.take_output();
    (shard, link)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// NATS ignores a `SUB` whose sid the connection already uses: every subscription of a
    /// shard-0 connection needs its own (a shared one once left `sync.NODE` unanswered).
    #[test]
    fn every_subscription_has_its_own_sid() {
        let mut link = Link::new(Rc::new(test_node("n1")), 0);
        let _ = link.reset();
        let out = String::from_utf8(link.nats.take_output()).expect("ASCII protocol");
        let sids: Vec<&str> = out
            .lines()
            .filter_map(|l| l.strip_prefix("SUB "))
            .filter_map(|l| l.split_whitespace().last())
            .collect();
        assert!(sids.len() >= 6, "{out}");
        let unique: std::collections::HashSet<&&str> = sids.iter().collect();
        assert_eq!(unique.len(), sids.len(), "{out}");
    }
}
