//! A session without a socket, sans-IO: what a connection's task does after its TCP connection
//! dropped while the session is resumable (or while its own `<resume/>` is in flight).
//!
//! The task keeps its mailbox; the runtime feeds it messages ([`Park::on_msg`]) and calls
//! [`Park::on_timeout`] at [`Park::deadline`], until [`Park::is_done`].

use std::time::{Duration, Instant};

use super::{Handover, Requester, SmConnMsg, SmShardMsg, Takeover};
use crate::c2s::route::{self as c2s_route, Session};
use crate::c2s::{ResumeError, SmState, Unacked};
use crate::hooks::{Acc, HookCtx, UnackedMessage};
use crate::hooks::{SessionEnd, SessionEndKind};
use crate::jid::FullJid;
use crate::shard::{home_shard, ConnMsg, SessionRef, Shard};

/// How long a connection waits for the answer to its `<resume/>`, or an old session for the home
/// shard's `SwitchDone`, before giving up (both are one mesh round trip in practice).
const HANDOVER_WAIT: Duration = Duration::from_secs(30);

/// A detached, resumable session.
#[derive(Debug)]
pub struct Detached {
    /// The route's view of the session.
    pub sess: Session,
    /// Counters and unacknowledged stanzas; stanzas routed here meanwhile are added.
    pub sm: Box<SmState>,
    /// Stanzas the home shard routed here directly while the previous connection still forwards
    /// its late ones (`Some` until `HandoverDone`): they go after those.
    pub hold: Option<Vec<Acc>>,
    /// When the session ends without resumption.
    pub deadline: Instant,
    /// A takeover that came during `hold`, answered once the hold ends.
    pending: Option<Takeover>,
}

/// A mailbox message as a parked session sees it: stream management's own, or the core's.
enum In {
    Sm(SmConnMsg),
    Conn(ConnMsg),
}

impl From<ConnMsg> for In {
    fn from(msg: ConnMsg) -> In {
        match msg.downcast_ext::<SmConnMsg>() {
            Ok(m) => In::Sm(m),
            Err(m) => In::Conn(m),
        }
    }
}

/// The life of a connection after its socket is gone.
#[derive(Debug)]
pub enum Park {
    /// Our `<resume/>` is in flight: wait for the answer (the state must not be lost).
    Awaiting {
        /// Give up after this.
        until: Instant,
        /// Stanzas routed to us before the hand-over arrived (the home shard switched the session
        /// here while the old connection's `Handover` was still on its way): they come after
        /// everything the old connection hands over and forwards, so they wait like the held ones.
        early: Vec<Acc>,
    },
    /// Resumable session without a connection.
    Detached(Box<Detached>),
    /// Handed over to `to`: forward what still reaches us until the home shard's `SwitchDone`.
    Forwarding {
        /// The connection that resumed the session.
        to: SessionRef,
        /// Give up waiting after this.
        until: Instant,
    },
    /// Nothing left to do: the task ends.
    Done,
}

impl Park {
    /// The socket of a resumable session dropped.
    pub fn detach(sess: Session, sm: Box<SmState>, hold: Option<Vec<Acc>>, now: Instant) -> Park {
        let deadline = now + sm.config().resume_timeout;
        Park::Detached(Box::new(Detached {
            sess,
            sm,
            hold,
            deadline,
            pending: None,
        }))
    }

    /// The socket dropped while our own `<resume/>` was in flight.
    pub fn awaiting(now: Instant, early: Vec<Acc>) -> Park {
        Park::Awaiting {
            until: now + HANDOVER_WAIT,
            early,
        }
    }

    /// When [`Park::on_timeout`] is due.
    pub fn deadline(&self) -> Option<Instant> {
        match self {
            Park::Awaiting { until, .. } | Park::Forwarding { until, .. } => Some(*until),
            Park::Detached(d) => Some(d.deadline),
            Park::Done => None,
        }
    }

    /// True when the task may end.
    pub fn is_done(&self) -> bool {
        matches!(self, Park::Done)
    }

    /// Handles one mailbox message of connection `me`.
    pub fn on_msg(&mut self, shard: &mut Shard, me: SessionRef, msg: ConnMsg, now: Instant) {
        let msg = In::from(msg);
        let state = std::mem::replace(self, Park::Done);
        *self = match state {
            Park::Awaiting { until, early } => awaiting(shard, me, msg, now, until, early),
            Park::Detached(d) => detached(shard, me, *d, msg, now),
            Park::Forwarding { to, until } => forwarding(shard, to, until, msg),
            Park::Done => {
                done(shard, msg);
                Park::Done
            }
        };
        shard.drain_to_route();
    }

    /// The deadline passed: a detached session ends (its stanzas re-routed); waits give up.
    pub fn on_timeout(&mut self, shard: &mut Shard, now: Instant) {
        if self.deadline().is_some_and(|d| now < d) {
            return;
        }
        match std::mem::replace(self, Park::Done) {
            Park::Detached(d) => {
                expire(shard, *d, None);
            }
            Park::Forwarding { to, .. } => {
                // The home shard never answered: release the new connection's held stanzas anyway.
                shard.send_to_session(to, ConnMsg::ext(SmConnMsg::HandoverDone));
            }
            Park::Awaiting { early, .. } => {
                for acc in early {
                    shard.reroute(acc);
                }
            }
            Park::Done => {}
        }
        shard.drain_to_route();
    }
}

fn awaiting(
    shard: &mut Shard,
    me: SessionRef,
    msg: In,
    now: Instant,
    until: Instant,
    mut early: Vec<Acc>,
) -> Park {
    match msg {
        In::Sm(SmConnMsg::Handover(h)) => {
            // The client is gone again already: the session stays resumable from here.
            let h = *h;
            // From another node: no forwarding follows, the session binds here (parked).
            let hold = match h.from_node {
                Some(from) => {
                    super::remote::bind_moved(shard, &h.jid, me, h.presence, from, &h.sm, false);
                    None
                }
                None => Some(Vec::new()),
            };
            let mut sess = Session::new(h.jid, me);
            sess.presence = h.presence;
            let mut park = Park::detach(sess, h.sm, hold, now);
            // What came before the hand-over, in order, as if it came now.
            for acc in early {
                park.on_msg(shard, me, ConnMsg::Deliver(acc), now);
            }
            park
        }
        In::Sm(SmConnMsg::Failed(_)) => {
            for acc in early {
                shard.reroute(acc);
            }
            Park::Done
        }
        In::Conn(ConnMsg::Deliver(acc)) => {
            early.push(acc);
            Park::Awaiting { until, early }
        }
        other => {
            done(shard, other);
            Park::Awaiting { until, early }
        }
    }
}

fn detached(shard: &mut Shard, me: SessionRef, mut d: Detached, msg: In, now: Instant) -> Park {
    match msg {
        In::Conn(ConnMsg::Deliver(acc)) => {
            let Some(acc) = c2s_route::user_receive(shard, acc) else {
                return Park::Detached(Box::new(d));
            };
            let acc = unacked(shard, &d.sess.jid, acc);
            match d.hold.as_mut() {
                Some(hold) => hold.push(acc),
                None => return keep(shard, d, acc),
            }
        }
        In::Sm(SmConnMsg::Forwarded(acc)) => {
            if let Some(acc) = c2s_route::user_receive(shard, acc) {
                return keep(shard, d, acc);
            }
        }
        In::Sm(SmConnMsg::HandoverDone) => {
            for acc in d.hold.take().unwrap_or_default() {
                if let Err(Some(acc)) = push(&mut d.sm, acc) {
                    return expire(shard, d, Some(acc));
                }
            }
            if let Some(t) = d.pending.take() {
                return takeover(shard, me, d, t, now);
            }
        }
        In::Sm(SmConnMsg::Takeover(t)) => {
            if d.hold.is_none() {
                return takeover(shard, me, d, t, now);
            }
            // Still receiving our own hand-over: answer once it is complete.
            if let Some(old) = d.pending.replace(t) {
                old.to.failed(shard, ResumeError::ItemNotFound);
            }
        }
        // Shutdown, or replaced by a new bind of the same full JID: the session ends now.
        In::Conn(ConnMsg::Close(_) | ConnMsg::CloseText(..)) => return expire(shard, d, None),
        In::Conn(ConnMsg::Handled(seqs)) => {
            for seq in seqs {
                d.sm.handle(seq);
            }
        }
        other => done(shard, other),
    }
    Park::Detached(Box::new(d))
}

/// Runs `unacknowledged_message` for each routed stanza a session that just lost its connection
/// holds unacknowledged (written to the dead connection, or never written): its client may never
/// have seen them.
pub fn announce_unacked(shard: &mut Shard, jid: &FullJid, sm: &mut SmState) {
    if shard.hooks.unacknowledged_message.is_empty() {
        return;
    }
    for item in sm.unacked_mut() {
        if !matches!(item, Unacked::Routed(_)) {
            continue;
        }
        // Taken out and put back in place: its position (sequence number) does not change.
        if let Unacked::Routed(acc) = std::mem::replace(item, Unacked::Local(Vec::new())) {
            *item = Unacked::Routed(unacked(shard, jid, acc));
        }
    }
    shard.drain_to_route();
}

/// Runs `unacknowledged_message` for a stanza the detached session `jid` is about to buffer (push
/// notifications wake the client up).
fn unacked(shard: &mut Shard, jid: &FullJid, acc: Acc) -> Acc {
    if shard.hooks.unacknowledged_message.is_empty() {
        return acc;
    }
    let mut ev = UnackedMessage {
        jid: jid.clone(),
        acc,
    };
    let mut ctx = HookCtx::new(shard.id, &mut shard.fx, &mut shard.ext);
    shard.hooks.unacknowledged_message.run(&mut ev, &mut ctx);
    ev.acc
}

/// Adds a routed stanza to the buffer; a full buffer ends the detached session at once.
fn keep(shard: &mut Shard, mut d: Detached, acc: Acc) -> Park {
    match push(&mut d.sm, acc) {
        Ok(()) => Park::Detached(Box::new(d)),
        Err(extra) => expire(shard, d, extra),
    }
}

fn push(sm: &mut SmState, acc: Acc) -> Result<(), Option<Acc>> {
    match sm.outbound(Unacked::Routed(acc)) {
        Ok(_) => Ok(()),
        Err((_, Unacked::Routed(acc))) => Err(Some(acc)),
        Err(_) => Err(None),
    }
}

/// Commits the hand-over to `t.to`, or refuses it when the client's `h` is impossible.
fn takeover(shard: &mut Shard, me: SessionRef, mut d: Detached, t: Takeover, now: Instant) -> Park {
    if let Err(crate::c2s::SmError::HandledCountTooHigh { h, sent }) = d.sm.ack(t.h) {
        t.to.failed(shard, ResumeError::HandledCountTooHigh { h, sent });
        return Park::Detached(Box::new(d));
    }
    let new = match t.to {
        Requester::Local(new) => new,
        Requester::Node(ask) => return to_node(shard, me, d, t.id, ask),
    };
    // Acknowledgements still on their way come here: they follow the session to `new` (in
    // `forwarding`, then through the shard once this task has ended).
    shard.moved_to(me.conn, new);
    let jid = d.sess.jid.clone();
    // No more stanzas from this shard's senders straight to us: they go through the home shard,
    // behind the Switch sent below on the same ring.
    shard.local_unbind(&jid, me.conn);
    if new.shard != me.shard {
        // Per-connection module state stays on this shard: a resumption on the same shard keeps
        // it, one elsewhere starts without it (see docs/ROUTE.md, known limits).
        let mut end = SessionEnd {
            jid: jid.clone(),
            session: me,
            kind: SessionEndKind::MovedTo(new),
            unavailable: None,
            held: Vec::new(),
        };
        shard.session_end(&mut end);
    }
    let handover = Handover {
        jid: jid.clone(),
        presence: d.sess.presence,
        sm: d.sm,
        old: me,
        from_node: None,
    };
    shard.send_to_session(new, ConnMsg::ext(SmConnMsg::Handover(Box::new(handover))));
    let home = home_shard(&jid.bare(), shard.shards);
    let switch = SmShardMsg::Switch {
        id: t.id,
        jid,
        old: me,
        new,
    };
    super::to_home(shard, home, switch);
    Park::Forwarding {
        to: new,
        until: now + HANDOVER_WAIT,
    }
}

/// Commits the hand-over to a connection of another node: the session's state goes there in one
/// answer; this node forgets the session without an `unavailable` (it moved). If the answer cannot
/// be published the session ends here as if it had expired; if the other node does not confirm
/// it took the state, the stanzas are routed again (see `remote`).
fn to_node(
    shard: &mut Shard,
    me: SessionRef,
    mut d: Detached,
    id: String,
    ask: super::remote::NodeAsk,
) -> Park {
    let jid = d.sess.jid.clone();
    shard.local_unbind(&jid, me.conn);
    let sent = super::remote::hand_over(shard, id, &jid, d.sess.presence, &mut d.sm, ask);
    for acc in d.hold.take().unwrap_or_default() {
        shard.reroute(acc);
    }
    if !sent {
        return expire(shard, d, None);
    }
    tracing::debug!(jid = jid.as_str(), "session moved to another node");
    crate::sm::unregister(shard, jid, me);
    shard.drain_to_route();
    Park::Done
}

fn forwarding(shard: &mut Shard, to: SessionRef, until: Instant, msg: In) -> Park {
    match msg {
        In::Conn(ConnMsg::Deliver(acc)) | In::Sm(SmConnMsg::Forwarded(acc)) => {
            shard.send_to_session(to, ConnMsg::ext(SmConnMsg::Forwarded(acc)));
        }
        In::Sm(SmConnMsg::SwitchDone) => {
            shard.send_to_session(to, ConnMsg::ext(SmConnMsg::HandoverDone));
            return Park::Done;
        }
        In::Conn(ConnMsg::Handled(seqs)) => shard.send_to_session(to, ConnMsg::Handled(seqs)),
        other => done(shard, other),
    }
    Park::Forwarding { to, until }
}

/// A message nobody in this state expects: stanzas are re-routed, takeovers refused.
fn done(shard: &mut Shard, msg: In) {
    match msg {
        In::Conn(ConnMsg::Deliver(acc)) => shard.reroute(acc),
        In::Sm(m) => refuse(shard, m),
        _ => {}
    }
}

/// A hand-over message this connection cannot take (a live session asked to hand itself over is
/// in use: the request fails): handled as if the connection were gone.
pub fn refuse(shard: &mut Shard, m: SmConnMsg) {
    super::conn_gone(shard, m);
}

/// The session ends without resumption: it goes unavailable and leaves the session manager, then
/// every stanza it did not get acknowledged is routed again (another resource, else offline storage),
/// behind the unregistration on the same ring so the session manager no longer picks this session.
fn expire(shard: &mut Shard, mut d: Detached, extra: Option<Acc>) -> Park {
    c2s_route::unbind(shard, &d.sess);
    for item in d.sm.take_unacked() {
        if let Unacked::Routed(acc) = item {
            if crate::sm::worth_rerouting(&acc) {
                shard.reroute(acc);
            }
        }
    }
    let held = d.hold.take().unwrap_or_default().into_iter().chain(extra);
    for acc in held.filter(crate::sm::worth_rerouting) {
        shard.reroute(acc);
    }
    if let Some(t) = d.pending.take() {
        t.to.failed(shard, ResumeError::ItemNotFound);
    }
    shard.drain_to_route();
    Park::Done
}
