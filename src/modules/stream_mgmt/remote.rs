//! Resumption on another cluster node (docs/CLUSTER.md, "XEP-0198 resumption across nodes").
//!
//! A resumption id names the node that issued it (`NODE.TOKEN`, see `SmConfig::id_prefix`). When
//! the user's home shard on node B does not know an id of node A, it asks A (`cluster::rpc`, kind
//! `sm`, to A's home shard of the user). A runs its ordinary takeover (a parked session, or a live
//! one closed with `conflict` first); the old session's task answers B with the session's state
//! ([`Moved`]: full JID, availability, last presence, counters, every unacknowledged stanza's
//! bytes in order), forgets the session without an `unavailable`, and keeps its copies of the
//! routed stanzas until B confirms (`taken`). B binds the session afresh on the resuming
//! connection, with the carried presence, and answers `<resumed/>`. No answer within
//! [`ASK_WAIT`]: `<failed/>`. No confirmation within [`TAKE_WAIT`]: A routes its copies again (at
//! least once).

use std::rc::Rc;
use std::time::Duration;

use super::{Handover, Requester, SmConnMsg, Takeover};
use crate::c2s::{ResumeError, SmConfig, SmState, Unacked};
use crate::cluster::rpc::{self, Answer, Request};
use crate::hooks::Acc;
use crate::jid::{BareJid, FullJid, Jid};
use crate::shard::{home_shard, ConnMsg, SessionRef, Shard};

/// The `cluster::rpc` kind of these requests.
const KIND: &str = "sm";

/// How long the resuming node waits for the node holding the session (then `<failed/>`).
pub const ASK_WAIT: Duration = Duration::from_secs(5);

/// How long the old node keeps its copies of the handed-over stanzas for the other node's
/// confirmation (then routes them again). Longer than [`ASK_WAIT`]: the other node answers its
/// client first.
pub const TAKE_WAIT: Duration = Duration::from_secs(10);

/// A request from another node, on its way to the old session.
#[derive(Debug)]
pub struct NodeAsk {
    /// Where the answer goes.
    pub reply: String,
    /// The session's last available presence (from the home shard), empty when none.
    pub last: Vec<u8>,
}

/// What a session from another node brings besides its counters and stanzas.
#[derive(Debug)]
pub struct FromNode {
    /// Its last available presence.
    pub last: Option<crate::xml::Stanza>,
}

/// One unacknowledged stanza carried to the other node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// For a routed stanza, its route's `from` and `to` (routed again if the session ends there);
    /// `None` for one the stream wrote itself.
    pub route: Option<(Jid, Jid)>,
    /// Its bytes as written to the client.
    pub bytes: Vec<u8>,
}

/// A session's state on its way to another node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Moved {
    /// The session's full JID.
    pub jid: FullJid,
    /// `Some(priority)` when available.
    pub priority: Option<i8>,
    /// Its last available presence, empty when none.
    pub last: Vec<u8>,
    /// Inbound stanzas handled (the `h` of `<resumed/>`).
    pub h_in: u32,
    /// Outbound stanzas counted.
    pub h_out: u32,
    /// The unacknowledged stanzas, oldest first.
    pub items: Vec<Item>,
}

/// The messages of the protocol (bodies of `cluster::rpc` records).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Msg {
    /// B -> A: resume session `id` (of the user named by the request's key) with the client's `h`.
    Ask {
        /// The resumption id.
        id: String,
        /// The client's handled count.
        h: u32,
    },
    /// A -> B: no such session, or the client's `h` is impossible.
    Failed(ResumeError),
    /// A -> B: the session.
    Handover(Box<Moved>),
    /// B -> A: the state is taken (A drops its copies).
    Taken,
}

/// A body that is not one of [`Msg`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed resumption message")]
pub struct Malformed;

fn line(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(s.as_bytes());
    out.push(b'\n');
}

fn blob(out: &mut Vec<u8>, b: &[u8]) {
    line(out, &b.len().to_string());
    out.extend_from_slice(b);
}

impl Msg {
    /// The body's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            Msg::Ask { id, h } => {
                line(&mut out, "ask");
                line(&mut out, id);
                line(&mut out, &h.to_string());
            }
            Msg::Failed(ResumeError::ItemNotFound) => line(&mut out, "failed"),
            Msg::Failed(ResumeError::HandledCountTooHigh { h, sent }) => {
                line(&mut out, "too-high");
                line(&mut out, &h.to_string());
                line(&mut out, &sent.to_string());
            }
            Msg::Handover(m) => {
                line(&mut out, "handover");
                line(&mut out, m.jid.as_str());
                line(&mut out, &m.priority.map_or("-".into(), |p| p.to_string()));
                line(&mut out, &m.h_in.to_string());
                line(&mut out, &m.h_out.to_string());
                blob(&mut out, &m.last);
                line(&mut out, &m.items.len().to_string());
                for it in &m.items {
                    match &it.route {
                        Some((from, to)) => {
                            line(&mut out, "R");
                            line(&mut out, from.as_str());
                            line(&mut out, to.as_str());
                        }
                        None => line(&mut out, "L"),
                    }
                    blob(&mut out, &it.bytes);
                }
            }
            Msg::Taken => line(&mut out, "taken"),
        }
        out
    }

    /// Reads a body.
    pub fn decode(body: &[u8]) -> Result<Msg, Malformed> {
        let mut r = Reader(body);
        let msg = match r.line()? {
            "ask" => Msg::Ask {
                id: r.line()?.to_owned(),
                h: r.num()?,
            },
            "failed" => Msg::Failed(ResumeError::ItemNotFound),
            "too-high" => Msg::Failed(ResumeError::HandledCountTooHigh {
                h: r.num()?,
                sent: r.num()?,
            }),
            "handover" => {
                let jid = FullJid::parse(r.line()?).map_err(|_| Malformed)?;
                let priority = match r.line()? {
                    "-" => None,
                    p => Some(p.parse().map_err(|_| Malformed)?),
                };
                let h_in = r.num()?;
                let h_out = r.num()?;
                let last = r.blob()?.to_vec();
                let n: usize = r.num()?;
                // Bounded by the body's size: every item takes at least a few bytes.
                let mut items = Vec::with_capacity(n.min(body.len()));
                for _ in 0..n {
                    let route = match r.line()? {
                        "R" => {
                            let from = Jid::parse(r.line()?).map_err(|_| Malformed)?;
                            let to = Jid::parse(r.line()?).map_err(|_| Malformed)?;
                            Some((from, to))
                        }
                        "L" => None,
                        _ => return Err(Malformed),
                    };
                    let bytes = r.blob()?.to_vec();
                    items.push(Item { route, bytes });
                }
                Msg::Handover(Box::new(Moved {
                    jid,
                    priority,
                    last,
                    h_in,
                    h_out,
                    items,
                }))
            }
            "taken" => Msg::Taken,
            _ => return Err(Malformed),
        };
        Ok(msg)
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn line(&mut self) -> Result<&'a str, Malformed> {
        let at = memchr::memchr(b'\n', self.0).ok_or(Malformed)?;
        let s = std::str::from_utf8(&self.0[..at]).map_err(|_| Malformed)?;
        self.0 = &self.0[at + 1..];
        Ok(s)
    }

    fn num<T: std::str::FromStr>(&mut self) -> Result<T, Malformed> {
        self.line()?.parse().map_err(|_| Malformed)
    }

    fn blob(&mut self) -> Result<&'a [u8], Malformed> {
        let n: usize = self.num()?;
        if n > self.0.len() {
            return Err(Malformed);
        }
        let (b, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(b)
    }
}

/// The node that issued resumption id `id`, when it names one.
pub fn id_node(id: &str) -> Option<&str> {
    id.split_once('.')
        .map(|(node, _)| node)
        .filter(|n| !n.is_empty())
}

/// Registers the handler of other nodes' requests (every shard; used only in a cluster).
pub fn start(shard: &mut Shard) {
    rpc::set_handler(shard, KIND, Rc::new(on_request));
}

/// Home shard on node B: `id` is not here. If another live node issued it, ask that node; else
/// (single node, this node's own id, a node not in the cluster) the resumption fails.
pub fn ask(shard: &mut Shard, bare: BareJid, id: String, h: u32, new: SessionRef, cfg: SmConfig) {
    let fail = |shard: &mut Shard| Requester::Local(new).failed(shard, ResumeError::ItemNotFound);
    let Some(me) = rpc::node_name(shard) else {
        return fail(shard);
    };
    let node = match id_node(&id) {
        Some(n) if n != me && rpc::is_member(shard, n) => n.to_owned(),
        _ => return fail(shard),
    };
    let body = Msg::Ask { id: id.clone(), h }.encode();
    let on_answer = Box::new(move |s: &mut Shard, a: Option<Answer>| {
        answered(s, new, id, cfg, a);
    });
    // On an error the callback already took `None` (the resumption failed).
    let _ = rpc::request(shard, &node, KIND, bare.as_str(), body, ASK_WAIT, on_answer);
}

/// Node B: node A's answer (or none) to our ask for connection `new`.
fn answered(shard: &mut Shard, new: SessionRef, id: String, cfg: SmConfig, a: Option<Answer>) {
    let Some(a) = a else {
        return Requester::Local(new).failed(shard, ResumeError::ItemNotFound);
    };
    let moved = match Msg::decode(&a.body) {
        Ok(Msg::Handover(m)) => m,
        Ok(Msg::Failed(e)) => return Requester::Local(new).failed(shard, e),
        _ => return Requester::Local(new).failed(shard, ResumeError::ItemNotFound),
    };
    let m = *moved;
    let first = m.h_out.wrapping_sub(m.items.len() as u32);
    let mut sm = SmState::with_counters(cfg, Some(id), m.h_in, first);
    for it in m.items {
        let item = match it.route {
            Some((from, to)) => match crate::xml::Stanza::parse(it.bytes) {
                Ok(st) => Unacked::Routed(Acc::new(st, from, to, shard.id)),
                Err(_) => continue,
            },
            None => Unacked::Local(it.bytes),
        };
        // Over this node's `buffer_max`: routed again from here (the count stays as the client
        // saw it, so the rest is numbered as it was).
        if let Err((_, Unacked::Routed(acc))) = sm.outbound(item) {
            shard.reroute(acc);
        }
    }
    let last = (!m.last.is_empty())
        .then(|| crate::xml::Stanza::parse(m.last).ok())
        .flatten();
    let h = Handover {
        jid: m.jid,
        presence: m.priority,
        sm: Box::new(sm),
        old: new,
        from_node: Some(FromNode { last }),
    };
    // From here this node answers for the stanzas: the connection takes them, or (gone) routes
    // them again (`conn_gone`).
    shard.send_to_session(new, ConnMsg::ext(SmConnMsg::Handover(Box::new(h))));
    if let Some(to) = a.reply {
        let _ = rpc::answer(shard, &to, Msg::Taken.encode(), None);
    }
}

/// Node A, home shard: another node asks for session `id` of the request's user.
fn on_request(shard: &mut Shard, r: Request) {
    let Some(reply) = r.reply else {
        return;
    };
    let (Ok(Msg::Ask { id, h }), Ok(bare)) = (Msg::decode(&r.body), BareJid::parse(&r.key)) else {
        return failed(shard, &reply, ResumeError::ItemNotFound);
    };
    let found = shard
        .ext
        .get_or_default::<super::ResumeTable>()
        .find(&id, &bare);
    let Some((jid, at)) = found else {
        return failed(shard, &reply, ResumeError::ItemNotFound);
    };
    let last = crate::cluster::last_presence(shard, &jid);
    let to = Requester::Node(NodeAsk { reply, last });
    shard.send_to_session(
        at,
        ConnMsg::ext(SmConnMsg::Takeover(Takeover { id, h, to })),
    );
}

/// Node A: tells the asking node the resumption failed (if this is lost, it stops waiting after
/// [`ASK_WAIT`]).
pub fn failed(shard: &mut Shard, reply: &str, e: ResumeError) {
    let _ = rpc::answer(shard, reply, Msg::Failed(e).encode(), None);
}

/// Node A, the old session's task: sends the session's state to the asking node; keeps copies of
/// the routed stanzas until it confirms. False when nothing could be sent (the stanzas are then
/// routed again already).
pub fn hand_over(
    shard: &mut Shard,
    jid: &FullJid,
    presence: Option<i8>,
    sm: &mut SmState,
    ask: NodeAsk,
) -> bool {
    let (h_in, h_out) = (sm.h_handled(), sm.h_out());
    let mut items = Vec::with_capacity(sm.unacked_len());
    let mut copies = Vec::new();
    for u in sm.take_unacked() {
        match u {
            Unacked::Routed(acc) => {
                items.push(Item {
                    route: Some((acc.from.clone(), acc.to.clone())),
                    bytes: acc.stanza.bytes().to_vec(),
                });
                copies.push(acc);
            }
            Unacked::Local(bytes) => items.push(Item { route: None, bytes }),
        }
    }
    let body = Msg::Handover(Box::new(Moved {
        jid: jid.clone(),
        priority: presence,
        last: ask.last,
        h_in,
        h_out,
        items,
    }))
    .encode();
    // The copies go with their acknowledgement tokens: their senders count them as handled once
    // the other node has them.
    let on_taken = Box::new(move |s: &mut Shard, a: Option<Answer>| {
        let taken = a.is_some_and(|a| Msg::decode(&a.body) == Ok(Msg::Taken));
        if !taken {
            for acc in copies {
                s.reroute(acc);
            }
        }
    });
    match rpc::answer(shard, &ask.reply, body, Some((TAKE_WAIT, on_taken))) {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(jid = jid.as_str(), error = %e, "resumption on another node failed");
            if e == rpc::RpcError::TooLarge {
                failed(shard, &ask.reply, ResumeError::ItemNotFound);
            }
            false
        }
    }
}

/// Node B: binds a session that moved here as a fresh local binding (its `B` record goes out
/// with its priority and presence) and registers its resumption id here. `local`: the connection
/// is live (stanzas from this shard's senders go to it directly).
pub fn bind_moved(
    shard: &mut Shard,
    jid: &FullJid,
    me: SessionRef,
    priority: Option<i8>,
    from: FromNode,
    sm: &SmState,
    local: bool,
) {
    if local {
        shard.local_bind(jid.clone(), me.conn);
    }
    // The home shard's answer (`ConnMsg::Bound`) finds no bind pending and is ignored.
    crate::sm::register(shard, jid.clone(), me);
    let home = home_shard(&jid.bare(), shard.shards);
    let (j, last) = (jid.clone(), from.last);
    crate::sm::run_on(
        shard,
        home,
        Box::new(move |s| crate::sm::restore_presence(s, &j, me, priority, last)),
    );
    if let Some(id) = sm.id.clone() {
        super::enabled(shard, jid, me, id);
    }
    shard.drain_to_route();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip() {
        let items = vec![
            Item {
                route: Some((
                    Jid::parse("bob@localhost/b").unwrap(),
                    Jid::parse("alice@localhost").unwrap(),
                )),
                bytes: b"<message>\n12\n\x1e</message>".to_vec(),
            },
            Item {
                route: None,
                bytes: b"<iq type='result' id='1'/>".to_vec(),
            },
            Item {
                route: None,
                bytes: Vec::new(),
            },
        ];
        let msgs = [
            Msg::Ask {
                id: "n1.abc".into(),
                h: 4_294_967_295,
            },
            Msg::Failed(ResumeError::ItemNotFound),
            Msg::Failed(ResumeError::HandledCountTooHigh { h: 9, sent: 3 }),
            Msg::Taken,
            Msg::Handover(Box::new(Moved {
                jid: FullJid::parse("alice@localhost/phone").unwrap(),
                priority: Some(-3),
                last: b"<presence>\n</presence>".to_vec(),
                h_in: 7,
                h_out: 1,
                items,
            })),
            Msg::Handover(Box::new(Moved {
                jid: FullJid::parse("alice@localhost/phone").unwrap(),
                priority: None,
                last: Vec::new(),
                h_in: 0,
                h_out: 0,
                items: Vec::new(),
            })),
        ];
        for m in msgs {
            assert_eq!(Msg::decode(&m.encode()), Ok(m));
        }
    }

    #[test]
    fn truncated_or_unknown_bodies_are_refused() {
        let good = Msg::Handover(Box::new(Moved {
            jid: FullJid::parse("alice@localhost/phone").unwrap(),
            priority: Some(1),
            last: b"<presence/>".to_vec(),
            h_in: 1,
            h_out: 2,
            items: vec![Item {
                route: None,
                bytes: b"<r/>".to_vec(),
            }],
        }))
        .encode();
        for cut in 0..good.len() {
            assert_eq!(Msg::decode(&good[..cut]), Err(Malformed), "cut at {cut}");
        }
        assert_eq!(Msg::decode(b"hello\n"), Err(Malformed));
        assert_eq!(Msg::decode(b"ask\nid\nnot-a-number\n"), Err(Malformed));
    }

    #[test]
    fn ids_name_their_node() {
        assert_eq!(id_node("n1.ABCDEF"), Some("n1"));
        assert_eq!(id_node("ABCDEF"), None);
        assert_eq!(id_node(".ABCDEF"), None);
    }
}
