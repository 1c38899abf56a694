//! The connection driver's part of XEP-0198 resumption: what the task does with stream management
//! events and hand-over messages, and its life after the socket is gone (`park`). The protocol
//! decisions are in `modules::stream_mgmt` (sans-IO); this file only carries them out.

use std::pin::Pin;
use std::task::Poll;
use std::time::Instant;

use futures_lite::Future;
use glommio::timer::Timer;

use super::conn::Driver;
use crate::c2s::route::Session;
use crate::c2s::{CloseReason, Unacked};
use crate::hooks::Acc;
use crate::hooks::{SessionEnd, SessionEndKind};
use crate::jid::BareJid;
use crate::modules::stream_mgmt::{self, park::Park, SmConnMsg};
use crate::shard::{ConnExtMsg, ConnMsg};
use crate::xmpp::StreamErrorCondition;

/// Resumption state of one connection.
#[derive(Default)]
pub(super) struct SmDriver {
    /// A `<resume/>` of ours is in flight.
    pub(super) resume_asked: bool,
    /// After a hand-over: stanzas the home shard routed here directly, written once the old
    /// connection says it forwarded everything it had (`HandoverDone`).
    pub(super) hold: Option<Vec<Acc>>,
    /// While our `<resume/>` is in flight: stanzas routed here before the old connection's
    /// `Handover` arrived (the home shard switched the session here first, over another ring).
    /// They come after everything handed over and forwarded, so they join `hold`.
    pub(super) early: Vec<Acc>,
    /// The socket is gone and the session lives on.
    pub(super) parked: Option<Park>,
}

impl Driver {
    fn me(&self) -> crate::shard::SessionRef {
        self.ctx.shard.borrow().session_ref(self.conn)
    }

    /// `<enabled resume='true'/>` went out: the home shard records the id.
    pub(super) fn sm_enabled(&mut self, id: Option<String>) {
        let Some(id) = id else {
            return;
        };
        let Some(jid) = self.session.borrow().as_ref().map(|s| s.jid.clone()) else {
            return;
        };
        let me = self.me();
        stream_mgmt::enabled(&mut self.ctx.shard.borrow_mut(), &jid, me, id);
    }

    /// `<resume/>`: ask the user's home shard for the session.
    pub(super) fn sm_resume(&mut self, jid: BareJid, previd: String, h: u32) {
        // A `<resume/>` reaches the c2s only when stream management is offered.
        let Some(cfg) = self.c2s.sm_config() else {
            return;
        };
        self.sm.resume_asked = true;
        let me = self.me();
        let mut shard = self.ctx.shard.borrow_mut();
        stream_mgmt::resume_request(&mut shard, jid, previd, h, me, cfg);
    }

    /// The stream ended. A resumable session whose connection dropped (no `</stream>`, or silent
    /// until the ping/idle timeout) stays registered and parks; otherwise it leaves and the
    /// stanzas the client did not acknowledge are routed again.
    pub(super) fn closed(&mut self, reason: CloseReason) {
        let dropped = matches!(
            reason,
            CloseReason::Disconnected
                | CloseReason::StreamError(StreamErrorCondition::ConnectionTimeout)
        );
        let resumable = self.resumable_now();
        if self.sm.resume_asked {
            // The answer to our <resume/> must still be taken (it may carry the session).
            let early = std::mem::take(&mut self.sm.early);
            self.sm.parked = Some(Park::awaiting(Instant::now(), early));
            return;
        }
        if dropped && resumable && self.detach() {
            return;
        }
        self.leave();
        self.reroute_unacked();
    }

    /// Parks the session without its socket (see [`Park`]); false when there is no session with
    /// stream management to park.
    fn detach(&mut self) -> bool {
        let sess = self.session.borrow_mut().take();
        let Some(sess) = sess else {
            return false;
        };
        let Some(mut sm) = self.c2s.take_sm() else {
            *self.session.borrow_mut() = Some(sess);
            return false;
        };
        let mut shard = self.ctx.shard.borrow_mut();
        shard.local_unbind(&sess.jid, self.conn);
        super::admin::conns::parked(&mut shard, self.conn, &sess.jid, sess.presence);
        // Routed stanzas that never reached the wire go with the session, written on resumption
        // (also those that waited for the client's acks behind a full buffer).
        for acc in self.c2s.take_unsent() {
            sm.keep_unsent(Unacked::Routed(acc));
        }
        // What CSI held back for this connection goes with the session (the resumed stream starts
        // active).
        let mut end = SessionEnd {
            jid: sess.jid.clone(),
            session: sess.session,
            kind: SessionEndKind::Detached,
            unavailable: None,
            held: Vec::new(),
        };
        shard.session_end(&mut end);
        for acc in end.held {
            sm.keep_unsent(Unacked::Routed(acc));
        }
        // So do the stanzas still in the mailbox (what did not fit the stream's output queue while
        // the client's acks were awaited): taken by the parked session one by one, they would
        // meet its full buffer and end it. Other messages wait there for the parked session.
        let mut others = Vec::new();
        while let Some(msg) = self.mailbox.pop() {
            match msg {
                ConnMsg::Deliver(acc) => {
                    if let Some(acc) = crate::c2s::route::user_receive(&mut shard, acc) {
                        sm.keep_unsent(Unacked::Routed(acc));
                    }
                }
                other => others.push(other),
            }
        }
        for msg in others {
            // Control messages are always accepted (only stanzas count against the bound).
            let _ = self.mailbox.push(msg);
        }
        // The modules learn what the client may never have seen (push notifications).
        crate::modules::stream_mgmt::park::announce_unacked(&mut shard, &sess.jid, &mut sm);
        drop(shard);
        tracing::debug!(
            conn = self.conn.0,
            jid = sess.jid.as_str(),
            "session detached"
        );
        let hold = self.sm.hold.take();
        self.sm.parked = Some(Park::detach(sess, sm, hold, Instant::now()));
        true
    }

    /// Routes again what the client did not acknowledge, then what never reached the wire (call
    /// after `leave`, so the home shard no longer picks this session).
    pub(super) fn reroute_unacked(&mut self) {
        let mut back = Vec::new();
        if let Some(mut sm) = self.c2s.take_sm() {
            for item in sm.take_unacked() {
                if let Unacked::Routed(acc) = item {
                    back.push(acc);
                }
            }
        }
        back.extend(self.c2s.take_unsent());
        back.extend(self.sm.hold.take().unwrap_or_default());
        for acc in back.into_iter().filter(crate::sm::worth_rerouting) {
            self.reroute_later(acc);
        }
    }

    /// True when this connection's session has resumable stream management enabled.
    fn resumable_now(&self) -> bool {
        self.c2s
            .sm()
            .is_some_and(|sm| sm.id.is_some() && !sm.config().resume_timeout.is_zero())
    }

    /// A module's message while the connection is live: stream management's hand-over messages;
    /// any other module's is handled as if the connection could not take it.
    pub(super) fn ext_msg(&mut self, m: Box<dyn ConnExtMsg>) {
        match m.downcast::<SmConnMsg>() {
            Ok(m) => self.sm_msg(m),
            Err(other) => other.conn_gone(&mut self.ctx.shard.borrow_mut()),
        }
    }

    /// A hand-over message while the connection is live.
    fn sm_msg(&mut self, m: SmConnMsg) {
        match m {
            SmConnMsg::Handover(h) if self.c2s.resume_pending() => {
                self.sm.resume_asked = false;
                let h = *h;
                let me = self.me();
                let mut sess = Session::new(h.jid.clone(), me);
                sess.presence = h.presence;
                *self.session.borrow_mut() = Some(sess);
                match h.from_node {
                    // From another node: bound here afresh; no forwarding follows.
                    Some(from) => stream_mgmt::remote::bind_moved(
                        &mut self.ctx.shard.borrow_mut(),
                        &h.jid,
                        me,
                        h.presence,
                        from,
                        &h.sm,
                        true,
                    ),
                    None => self.sm.hold = Some(Vec::new()),
                }
                tracing::debug!(conn = self.conn.0, jid = h.jid.as_str(), "session resumed");
                self.c2s.resumed(h.jid, h.sm);
                for acc in std::mem::take(&mut self.sm.early) {
                    self.deliver(acc);
                }
            }
            SmConnMsg::Failed(e) => {
                self.sm.resume_asked = false;
                self.c2s.resume_failed(e);
                for acc in std::mem::take(&mut self.sm.early) {
                    self.reroute_later(acc);
                }
            }
            SmConnMsg::Forwarded(acc) => {
                // Written at once, ahead of the held ones: the old connection got them first.
                let out = match self.session.borrow().as_ref() {
                    Some(sess) => crate::c2s::route::user_receive_at(
                        &mut self.ctx.shard.borrow_mut(),
                        sess,
                        acc,
                    ),
                    None => return self.ctx.shard.borrow_mut().reroute(acc),
                };
                let hold = self.sm.hold.take();
                for acc in out {
                    self.write_routed(acc);
                }
                if self.sm.hold.is_none() {
                    self.sm.hold = hold;
                }
            }
            SmConnMsg::HandoverDone => {
                // No local binding for a resumed session: stanzas from this shard's senders keep
                // going through the home shard. Switching them to the direct path now would let a
                // new stanza overtake an older one still on the home shard's ring.
                for acc in self.sm.hold.take().unwrap_or_default() {
                    self.write_routed(acc);
                }
            }
            // The client resumes from a new connection while this one still looks alive (a
            // half-open TCP connection after a network change, not noticed yet): the session goes
            // to the new connection, as if this socket had dropped, and this connection is closed
            // with `conflict`. The hand-over then runs exactly as for a parked session.
            SmConnMsg::Takeover(t) if self.resumable_now() && self.session.borrow().is_some() => {
                // An impossible `h` fails the resumption before anything changes here: this
                // connection keeps its session (XEP-0198 §5: the new stream gets `<failed/>`).
                if let Some(Err(crate::c2s::SmError::HandledCountTooHigh { h, sent })) =
                    self.c2s.sm().map(|sm| sm.check_ack(t.h))
                {
                    let e = crate::c2s::ResumeError::HandledCountTooHigh { h, sent };
                    return t.to.failed(&mut self.ctx.shard.borrow_mut(), e);
                }
                // Closed before detaching: the routed stanzas still queued in the stream (not yet
                // numbered, not yet on the wire) then stay for `take_unsent` and go with the
                // session. `close` would write them to this socket, uncounted: lost to the client.
                self.c2s.close_now(
                    Some(StreamErrorCondition::Conflict),
                    Some("session resumed from another connection"),
                );
                if !self.detach() {
                    // Cannot happen: the guard saw the session and its stream management.
                    return stream_mgmt::park::refuse(
                        &mut self.ctx.shard.borrow_mut(),
                        SmConnMsg::Takeover(t),
                    );
                }
                let me = self.me();
                if let Some(p) = self.sm.parked.as_mut() {
                    p.on_msg(
                        &mut self.ctx.shard.borrow_mut(),
                        me,
                        ConnMsg::ext(SmConnMsg::Takeover(t)),
                        Instant::now(),
                    );
                }
            }
            other => stream_mgmt::park::refuse(&mut self.ctx.shard.borrow_mut(), other),
        }
    }

    /// A mailbox message once parked.
    pub(super) fn park_msg(&mut self, msg: ConnMsg) {
        let me = self.me();
        if let Some(p) = self.sm.parked.as_mut() {
            p.on_msg(&mut self.ctx.shard.borrow_mut(), me, msg, Instant::now());
        }
    }

    /// Waits for a mailbox message or `deadline`; true when the deadline passed first.
    pub(super) async fn mailbox_or(&mut self, deadline: Instant) -> bool {
        let mut timer = Timer::new(deadline.saturating_duration_since(Instant::now()));
        std::future::poll_fn(|cx| {
            self.mailbox.set_waker(cx.waker());
            if !self.mailbox.is_empty() {
                return Poll::Ready(false);
            }
            if Pin::new(&mut timer).poll(cx).is_ready() {
                return Poll::Ready(true);
            }
            Poll::Pending
        })
        .await
    }

    /// After the socket closed: lives on while parked, on the mailbox and a timer only.
    pub(super) async fn park(&mut self) {
        loop {
            self.process();
            let Some(deadline) = self.sm.parked.as_ref().and_then(Park::deadline) else {
                return;
            };
            if self.mailbox_or(deadline).await {
                if let Some(p) = self.sm.parked.as_mut() {
                    p.on_timeout(&mut self.ctx.shard.borrow_mut(), Instant::now());
                }
            }
            if self.sm.parked.as_ref().is_some_and(Park::is_done) {
                self.ctx.flush();
                return;
            }
        }
    }
}
