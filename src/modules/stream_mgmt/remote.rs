//! Resumption on another cluster node (docs/CLUSTER.md, "XEP-0198 resumption on another node").
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

pub use super::handover::{FromNode, Item, Malformed, Moved, Msg, NodeAsk};
use super::{Handover, Requester, SmConnMsg, Takeover};
use crate::c2s::{ResumeError, SmConfig, SmState, Unacked};
use crate::cluster::rpc::{self, Answer, Request};
use crate::hooks::Acc;
use crate::jid::{BareJid, FullJid};
use crate::shard::{home_shard, ConnMsg, SessionRef, Shard};

/// The `cluster::rpc` kind of these requests.
const KIND: &str = "sm";

/// How long the resuming node waits for the node holding the session (then `<failed/>`).
pub const ASK_WAIT: Duration = Duration::from_secs(5);

/// How long the old node keeps its copies of the handed-over stanzas for the other node's
/// confirmation (then routes them again). Longer than [`ASK_WAIT`]: the other node answers its
/// client first.
pub const TAKE_WAIT: Duration = Duration::from_secs(10);

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

/// Sessions of the users homed on this shard that moved to another node by resumption (id ->
/// user, node), so that a later `<resume/>` anywhere finds them; the oldest forgotten past
/// [`MAX_MOVES`].
#[derive(Default)]
struct Moves {
    by_id: ahash::HashMap<String, (BareJid, String)>,
    order: std::collections::VecDeque<String>,
}

/// Moves remembered per home shard.
const MAX_MOVES: usize = 4096;

/// Redirections ([`Msg::MovedTo`]) a resumption follows before it gives up.
const MAX_HOPS: u8 = 3;

impl Moves {
    fn insert(&mut self, id: String, bare: BareJid, node: String) {
        if self.by_id.insert(id.clone(), (bare, node)).is_none() {
            self.order.push_back(id);
        }
        while self.order.len() > MAX_MOVES {
            if let Some(old) = self.order.pop_front() {
                self.by_id.remove(&old);
            }
        }
    }

    /// Where session `id` of `bare` moved (another user's id is not found).
    fn get(&self, id: &str, bare: &BareJid) -> Option<String> {
        self.by_id
            .get(id)
            .filter(|(b, _)| b == bare)
            .map(|(_, n)| n.clone())
    }
}

/// A resumption being asked for on node B: who asks, and for what.
struct Asking {
    bare: BareJid,
    id: String,
    h: u32,
    new: SessionRef,
    cfg: SmConfig,
    hops: u8,
}

/// Home shard on node B: `id` is not here. If it moved from here to another node, or another
/// live node issued it, ask that node; else (single node, an id of this node, a node not in the
/// cluster) the resumption fails.
pub fn ask(shard: &mut Shard, bare: BareJid, id: String, h: u32, new: SessionRef, cfg: SmConfig) {
    let moved = shard.ext.get_or_default::<Moves>().get(&id, &bare);
    let target = moved.or_else(|| id_node(&id).map(str::to_owned));
    let a = Asking {
        bare,
        id,
        h,
        new,
        cfg,
        hops: 0,
    };
    ask_node(shard, target, a);
}

fn ask_node(shard: &mut Shard, node: Option<String>, a: Asking) {
    let me = rpc::node_name(shard);
    let node = node.filter(|n| Some(n) != me.as_ref() && rpc::is_member(shard, n));
    let (Some(me), Some(node)) = (me, node) else {
        return Requester::Local(a.new).failed(shard, ResumeError::ItemNotFound);
    };
    let body = Msg::Ask {
        id: a.id.clone(),
        h: a.h,
        node: me,
    }
    .encode();
    let key = a.bare.as_str().to_owned();
    let on_answer = Box::new(move |s: &mut Shard, ans: Option<Answer>| answered(s, a, ans));
    // On an error the callback already took `None` (the resumption failed).
    let _ = rpc::request(shard, &node, KIND, &key, body, ASK_WAIT, on_answer);
}

/// Node B: node A's answer (or none) to our ask.
fn answered(shard: &mut Shard, mut a: Asking, ans: Option<Answer>) {
    let new = a.new;
    let Some(ans) = ans else {
        return Requester::Local(new).failed(shard, ResumeError::ItemNotFound);
    };
    let moved = match Msg::decode(&ans.body) {
        Ok(Msg::Handover(m)) => m,
        Ok(Msg::Failed(e)) => return Requester::Local(new).failed(shard, e),
        Ok(Msg::MovedTo(node)) if a.hops < MAX_HOPS => {
            a.hops += 1;
            return ask_node(shard, Some(node), a);
        }
        _ => return Requester::Local(new).failed(shard, ResumeError::ItemNotFound),
    };
    let m = *moved;
    let first = m.h_out.wrapping_sub(m.items.len() as u32);
    let mut sm = SmState::with_counters(a.cfg, Some(a.id), m.h_in, first);
    for it in m.items {
        let item = match it.route {
            // Bytes another node parsed before: a failure is a bug there; the stanza is still
            // written (it keeps its number) but cannot be routed again.
            Some((from, to)) => match crate::xml::Stanza::parse(it.bytes.clone()) {
                Ok(st) => Unacked::Routed(Acc::new(st, from, to, shard.id)),
                Err(_) => Unacked::Local(it.bytes),
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
    if let Some(to) = ans.reply {
        let _ = rpc::answer(shard, &to, Msg::Taken.encode(), None);
    }
}

/// Node A, home shard: another node asks for session `id` of the request's user.
fn on_request(shard: &mut Shard, r: Request) {
    let Some(reply) = r.reply else {
        return;
    };
    let (Ok(Msg::Ask { id, h, node }), Ok(bare)) = (Msg::decode(&r.body), BareJid::parse(&r.key))
    else {
        return failed(shard, &reply, ResumeError::ItemNotFound);
    };
    let found = shard
        .ext
        .get_or_default::<super::ResumeTable>()
        .find(&id, &bare);
    let Some((jid, at)) = found else {
        let moved = shard.ext.get_or_default::<Moves>().get(&id, &bare);
        return match moved.filter(|m| *m != node) {
            Some(m) => {
                let _ = rpc::answer(shard, &reply, Msg::MovedTo(m).encode(), None);
            }
            None => failed(shard, &reply, ResumeError::ItemNotFound),
        };
    };
    let last = crate::cluster::last_presence(shard, &jid);
    let to = Requester::Node(NodeAsk { node, reply, last });
    super::take_over(shard, &jid, at, Takeover { id, h, to });
}

/// Node A: tells the asking node the resumption failed (if this is lost, it stops waiting after
/// [`ASK_WAIT`]).
pub fn failed(shard: &mut Shard, reply: &str, e: ResumeError) {
    let _ = rpc::answer(shard, reply, Msg::Failed(e).encode(), None);
}

/// Node A, the old session's task: sends the session's state to the asking node; keeps copies of
/// the routed stanzas until it confirms. False when it cannot be sent (too large for one NATS
/// message, or this node's connection is down or full): the state is left in `sm`, the asking node
/// is told `failed` when it can be.
pub fn hand_over(
    shard: &mut Shard,
    id: String,
    jid: &FullJid,
    presence: Option<i8>,
    sm: &mut SmState,
    ask: NodeAsk,
) -> bool {
    let items = sm
        .unacked()
        .map(|u| Item {
            route: match u {
                Unacked::Routed(acc) => Some((acc.from.clone(), acc.to.clone())),
                Unacked::Local(_) => None,
            },
            bytes: u.bytes().to_vec(),
        })
        .collect();
    let body = Msg::Handover(Box::new(Moved {
        jid: jid.clone(),
        priority: presence,
        last: ask.last,
        h_in: sm.h_handled(),
        h_out: sm.h_out(),
        items,
    }))
    .encode();
    if let Err(e) = rpc::can_answer(shard, body.len()) {
        tracing::warn!(jid = jid.as_str(), error = %e, "resumption on another node failed");
        failed(shard, &ask.reply, ResumeError::ItemNotFound);
        return false;
    }
    // The copies go with their acknowledgement tokens: their senders count them as handled once
    // the other node has them.
    let copies: Vec<Acc> = sm
        .take_unacked()
        .into_iter()
        .filter_map(|u| match u {
            Unacked::Routed(acc) => Some(acc),
            Unacked::Local(_) => None,
        })
        .collect();
    let on_taken = Box::new(move |s: &mut Shard, a: Option<Answer>| {
        let taken = a.is_some_and(|a| Msg::decode(&a.body) == Ok(Msg::Taken));
        if !taken {
            for acc in copies {
                s.reroute(acc);
            }
        }
    });
    // Checked just above, in this same turn: the publish is accepted (else the callback has
    // routed the copies again already).
    let _ = rpc::answer(shard, &ask.reply, body, Some((TAKE_WAIT, on_taken)));
    // A later `<resume/>` for it here, or on a node that asks us, is sent there.
    let (bare, node) = (jid.bare(), ask.node);
    let home = home_shard(&bare, shard.shards);
    crate::sm::run_on(
        shard,
        home,
        Box::new(move |s| s.ext.get_or_default::<Moves>().insert(id, bare, node)),
    );
    true
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
    // Resumed, not authenticated: a deletion since closed the session it resumes.
    crate::sm::register(shard, jid.clone(), me, std::time::Instant::now());
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
    use crate::jid::Jid;

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
                node: "n2".into(),
            },
            Msg::MovedTo("n3".into()),
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
        assert_eq!(Msg::decode(b"ask\nid\nnot-a-number\nn2\n"), Err(Malformed));
        assert_eq!(Msg::decode(b"ask\nid\n1\n"), Err(Malformed));
    }

    #[test]
    fn moves_are_per_user_and_bounded() {
        let alice = BareJid::parse("alice@localhost").unwrap();
        let mallory = BareJid::parse("mallory@localhost").unwrap();
        let mut m = Moves::default();
        m.insert("n1.a".into(), alice.clone(), "n2".into());
        assert_eq!(m.get("n1.a", &alice).as_deref(), Some("n2"));
        assert_eq!(m.get("n1.a", &mallory), None, "another user's id");
        // Moved on again: the newest node.
        m.insert("n1.a".into(), alice.clone(), "n3".into());
        assert_eq!(m.get("n1.a", &alice).as_deref(), Some("n3"));
        for i in 0..MAX_MOVES {
            m.insert(format!("n1.{i}"), alice.clone(), "n2".into());
        }
        assert_eq!(m.by_id.len(), MAX_MOVES);
        assert_eq!(m.get("n1.a", &alice), None, "the oldest is forgotten");
        assert!(m.get(&format!("n1.{}", MAX_MOVES - 1), &alice).is_some());
    }

    #[test]
    fn ids_name_their_node() {
        assert_eq!(id_node("n1.ABCDEF"), Some("n1"));
        assert_eq!(id_node("ABCDEF"), None);
        assert_eq!(id_node(".ABCDEF"), None);
    }
}
