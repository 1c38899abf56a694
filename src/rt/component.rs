//! The glommio driver of one external component connection (XEP-0114): it moves bytes between the
//! socket and the sans-IO `component::Component`, claims and releases the component's route through
//! its domain's home shard (`component::routes`), routes the component's stanzas and feeds the
//! connection's mailbox into the stream. One task per connection, no locks.
//!
//! Bounded output: stanzas leave the mailbox only while the stream has room for them
//! (`listen.component.outbound_queue_bytes`); a component that reads slower than it is sent to
//! leaves them in its mailbox, which holds its senders back (the same backpressure as a client's).
//! When the mailbox stays over its bound while the socket takes nothing (or for longer than
//! `SLOW_GRACE`), the component is cut off with `policy-violation` ("slow reader") and what it did not
//! take is answered with `recipient-unavailable` (type `wait`: the component may come back).
//!
//! A wrong handshake counts as a failed login of the peer's address in a login throttle of its own
//! (`auth::throttle` with the c2s settings, in a store pool job; c2s guessers on the same address
//! do not ban a component): once the address is banned, the answer is `policy-violation` at once,
//! and every later connection from it is refused before its header.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use futures_lite::{AsyncRead, AsyncWrite};

use super::backlog::{room_or_mail, Backlog};
use super::conn::SLOW_GRACE;
use super::pump::{earliest, has_room, too_slow, Alarm, Output, WriteFailed};
use super::ShardCtx;
use crate::component::{routes, Component, ComponentConfig, ComponentEvent, RouteConflict};
use crate::hooks::Acc;
use crate::jid::Jid;
use crate::shard::{ConnId, ConnMsg, Mailbox};
use crate::xmpp::{ns, StanzaErrorCondition, StreamErrorCondition};

/// What woke the connection's loop.
enum Wake {
    Progress,
    Eof,
    Timer,
}

/// Runs one component connection to its end. A panic inside is caught here: it ends this
/// connection only, and its route is released all the same.
pub(crate) async fn run<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    peer: std::net::SocketAddr,
    ctx: Rc<ShardCtx>,
    cfg: Arc<ComponentConfig>,
) {
    // A banned address (too many failed logins or handshakes) is refused before anything else,
    // with the stream error a wrong handshake that banned it gets (not a silent close).
    let (login, ip) = (ctx.component_login.clone(), peer.ip());
    let banned = ctx
        .store
        .call(move |_| login.banned_for(ip))
        .await
        .ok()
        .flatten();
    let (conn, mailbox) = ctx.shard.borrow_mut().open_conn();
    let shard_id = ctx.shard.borrow().id.0;
    tracing::info!(shard = shard_id, conn = conn.0, %peer, "component connection opened");
    let claimed: Rc<RefCell<Option<String>>> = Rc::default();
    let server = cfg.server.clone();
    let mut comp = Component::new(cfg, Instant::now());
    if let Some(left) = banned {
        tracing::info!(%peer, secs = left.as_secs(), "component connection from a banned address refused");
        comp.banned(left);
    }
    let driver = Driver {
        ctx: ctx.clone(),
        comp,
        conn,
        mailbox,
        claimed: claimed.clone(),
        early: Vec::new(),
        out: Output::new(),
        on_wire: VecDeque::new(),
        unanswered: Backlog::default(),
        alarm: Alarm::default(),
        peer,
        ban_check: None,
        server,
    };
    let caught = super::pump::catch(driver.serve(stream)).await;
    super::pump::log_panic(caught, "component", shard_id, conn.0);
    {
        let mut shard = ctx.shard.borrow_mut();
        if let Some(domain) = claimed.borrow_mut().take() {
            let sref = shard.session_ref(conn);
            routes::release(&mut shard, domain, sref);
        }
        shard.close_conn(conn);
    }
    ctx.flush();
    tracing::info!(shard = shard_id, conn = conn.0, %peer, "component connection closed");
}

struct Driver {
    ctx: Rc<ShardCtx>,
    comp: Component,
    conn: ConnId,
    mailbox: Rc<Mailbox>,
    /// The domain whose route this connection claimed (released when it ends).
    claimed: Rc<RefCell<Option<String>>>,
    /// Stanzas that reached the mailbox while the claim was answered (the route is announced to
    /// every shard before the answer reaches us); at most `Component::claim_room` (the bound less
    /// the `<handshake/>` written before them), past it they are
    /// answered `recipient-unavailable`.
    early: Vec<Acc>,
    /// Bytes on their way to the socket.
    out: Output,
    /// Stanzas handed to the stream with where their last byte lies in the bytes it hands out,
    /// oldest first: kept until the socket took that byte, answered if it never does.
    on_wire: VecDeque<(u64, Acc)>,
    /// Stanzas the component will never get, answered a chunk at a time as their senders have room.
    unanswered: Backlog,
    alarm: Alarm,
    peer: std::net::SocketAddr,
    /// After a wrong handshake: the failure counted, whether the address is now banned.
    ban_check: Option<Pin<Box<dyn std::future::Future<Output = Option<Duration>>>>>,
    /// The server's own domain (the first hosted one): the `from` of errors the server finds.
    server: String,
}

impl Driver {
    async fn serve<S: AsyncRead + AsyncWrite + Unpin>(mut self, mut stream: S) {
        loop {
            self.process();
            if self.out.buf.is_empty() {
                self.comp.take_transmit(&mut self.out.buf);
            }
            if self.comp.is_closed() && self.out.close_due() {
                let _ = futures_lite::AsyncWriteExt::close(&mut stream).await;
                self.answer_unwritten();
                return self.answer_all().await;
            }
            // A mailbox that stays over its bound cuts its reader off even if nothing else wakes
            // the task (its senders wait meanwhile).
            let due = earliest(self.comp.next_timeout(), self.mailbox.slow_at(SLOW_GRACE));
            self.alarm.arm(due, &self.out);
            match self.wait(&mut stream).await {
                Wake::Progress => {}
                Wake::Eof => {
                    self.comp.peer_closed();
                    self.answer_unwritten();
                    return self.answer_all().await;
                }
                Wake::Timer => self.comp.handle_timeout(Instant::now()),
            }
            glommio::yield_if_needed().await;
        }
    }

    /// Handles stream events and mailbox messages until both are quiet, then carries out mesh sends.
    fn process(&mut self) {
        loop {
            let mut busy = false;
            while let Some(ev) = self.comp.poll_event() {
                busy = true;
                self.on_event(ev);
            }
            while let Some(msg) = self.mailbox.pop_within(self.room()) {
                busy = true;
                self.on_msg(msg);
            }
            if !self.comp.is_closed() && too_slow(&self.mailbox, &self.out, SLOW_GRACE) {
                self.release();
                self.comp.close(
                    Some(StreamErrorCondition::PolicyViolation),
                    Some("slow reader"),
                );
                busy = true;
            }
            if !busy {
                break;
            }
        }
        self.answer_some();
        self.ctx.flush();
    }

    /// Answers the next chunk of what the component will not get (see [`Backlog::hand_back`]).
    fn answer_some(&mut self) {
        if self.unanswered.is_empty() {
            return;
        }
        let ctx = &self.ctx;
        self.unanswered.hand_back(ctx, &self.mailbox, |acc| {
            ctx.shard
                .borrow_mut()
                .bounce(&acc, StanzaErrorCondition::RecipientUnavailable);
        });
        ctx.shard.borrow_mut().drain_to_route();
    }

    /// Answers every stanza the component will not get, and whatever still reaches the mailbox
    /// meanwhile, as fast as their senders take the errors, before the task ends.
    async fn answer_all(&mut self) {
        loop {
            self.process();
            if self.unanswered.is_empty() && self.mailbox.is_empty() {
                return;
            }
            room_or_mail(&self.ctx, &self.mailbox).await;
        }
    }

    /// Stanza bytes the stream can take now (unbounded when they will not be written here).
    fn room(&self) -> usize {
        if self.comp.is_ready() {
            self.comp.room()
        } else {
            usize::MAX
        }
    }

    fn on_event(&mut self, ev: ComponentEvent) {
        match ev {
            ComponentEvent::Authenticated { domain } => {
                tracing::info!(conn = self.conn.0, %domain, "component authenticated");
                let mut shard = self.ctx.shard.borrow_mut();
                let sref = shard.session_ref(self.conn);
                *self.claimed.borrow_mut() = Some(domain.clone());
                routes::claim(&mut shard, domain, sref);
            }
            ComponentEvent::HandshakeFailed { domain } => {
                tracing::info!(conn = self.conn.0, peer = %self.peer, %domain, "component handshake failed");
                let (login, ip) = (self.ctx.component_login.clone(), self.peer.ip());
                let call = self.ctx.store.call(move |_| {
                    // Counted as a failed login for the domain (never a hosted account).
                    if let Ok(jid) = crate::jid::BareJid::new(None, &domain) {
                        login.failure(ip, &jid, Default::default());
                    }
                    login.banned_for(ip)
                });
                self.ban_check = Some(Box::pin(async move { call.await.ok().flatten() }));
            }
            ComponentEvent::Stanza(stanza) => self.route(stanza),
            ComponentEvent::Closed { reason } => {
                tracing::debug!(conn = self.conn.0, ?reason, "component stream closed");
                self.release();
                for acc in std::mem::take(&mut self.early) {
                    self.unwritten(acc);
                }
            }
        }
    }

    /// A stanza from the component enters the route on this shard (no `user_send` hooks: a
    /// component is a service, not a user's session).
    fn route(&mut self, stanza: crate::xml::Stanza) {
        // The stream checked both: `from` is a JID at its domain, `to` is present.
        let Some(from) = stanza.from().and_then(|f| Jid::parse(&f).ok()) else {
            return;
        };
        let to = stanza.to().map(|t| Jid::parse(&t));
        let mut shard = self.ctx.shard.borrow_mut();
        shard.stats.routed += 1;
        shard.metrics.stanza_in(stanza.kind());
        match to {
            Some(Ok(to)) => {
                let acc = Acc::new(stanza, from, to, shard.id);
                if acc.stanza.is_malformed_iq_or_presence() {
                    // As from a client or a remote server: bad-request back, never delivered.
                    shard.bounce(&acc, StanzaErrorCondition::BadRequest);
                } else {
                    crate::router::route(&mut shard, acc);
                }
            }
            _ => {
                // A `to` that is no JID: the error goes back to the component, from the server that
                // found it (RFC 6120 §8.3), as a client's comes from its domain.
                let Ok(server) = Jid::parse(&self.server) else {
                    return;
                };
                let acc = Acc::new(stanza, from, server, shard.id);
                shard.bounce(&acc, StanzaErrorCondition::JidMalformed);
            }
        }
        shard.drain_to_route();
    }

    fn on_msg(&mut self, msg: ConnMsg) {
        match msg {
            ConnMsg::Deliver(acc) if self.comp.is_ready() => self.write(acc),
            ConnMsg::Deliver(acc) if self.comp.is_closed() => self.unwritten(acc),
            ConnMsg::Deliver(acc) => {
                let held: usize = self.early.iter().map(|a| a.stanza.bytes().len()).sum();
                if held + acc.stanza.bytes().len() > self.comp.claim_room() {
                    // More than the stream could hold: answered like a stanza it cannot take.
                    self.unwritten(acc);
                } else {
                    self.early.push(acc);
                }
            }
            ConnMsg::Bound(Ok(())) => {
                self.comp.route_result(Ok(()));
                for acc in std::mem::take(&mut self.early) {
                    self.write(acc);
                }
            }
            ConnMsg::Bound(Err(_)) => {
                // Refused: the route is someone else's, nothing to release.
                self.claimed.borrow_mut().take();
                self.comp.route_result(Err(RouteConflict));
            }
            ConnMsg::Close(cond) => {
                self.release();
                self.comp.close(Some(cond), None);
            }
            ConnMsg::CloseText(cond, text) => {
                self.release();
                self.comp.close(Some(cond), Some(text));
            }
            // Client-session messages (stream management, acknowledgements): not for a component.
            ConnMsg::Ext(_)
            | ConnMsg::Handled(_)
            | ConnMsg::InputReleased
            | ConnMsg::DialbackVerified { .. } => {}
        }
    }

    /// Writes a routed stanza to the component (in its stream's namespace).
    fn write(&mut self, acc: Acc) {
        if !self.comp.is_ready() {
            return self.unwritten(acc);
        }
        let written = if acc.stanza.xmlns() == Some(ns::CLIENT) {
            // An explicit client namespace would put the stanza outside `jabber:component:accept`.
            let mut stanza = acc.stanza.clone();
            stanza.remove_attr("xmlns");
            self.comp.deliver(stanza.bytes())
        } else {
            self.comp.deliver(acc.stanza.bytes())
        };
        match written {
            Ok(end) => self.on_wire.push_back((end, acc)),
            Err(_) => {
                // Over the outbound bound: the stream is closing with policy-violation.
                self.release();
                self.unwritten(acc);
            }
        }
    }

    /// The socket took the first `total` bytes: the stanzas that end there reached the component.
    fn written(&mut self, total: u64) {
        while self.on_wire.front().is_some_and(|(end, _)| *end <= total) {
            self.on_wire.pop_front();
        }
        if self.on_wire.is_empty() && self.on_wire.capacity() > 0 {
            // A quiet component keeps no slots.
            self.on_wire = VecDeque::new();
        }
    }

    /// The socket is done with: the stanzas it never took are answered like any the component
    /// will not get (the component stopped reading, or went away).
    fn answer_unwritten(&mut self) {
        for (_, acc) in std::mem::take(&mut self.on_wire) {
            self.unwritten(acc);
        }
    }

    /// A stanza the component will never get: its sender learns the component is unavailable for
    /// now (type `wait`: an outage of the component is temporary), in turn (see `process`).
    fn unwritten(&mut self, acc: Acc) {
        self.unanswered.push_back(acc);
    }

    /// Gives the route up (once): stanzas stop coming here.
    fn release(&mut self) {
        if let Some(domain) = self.claimed.borrow_mut().take() {
            let mut shard = self.ctx.shard.borrow_mut();
            let sref = shard.session_ref(self.conn);
            routes::release(&mut shard, domain, sref);
        }
    }

    /// Waits for room to write, bytes to read, a mailbox message or a timeout. Reading pauses while
    /// the component does not drain what we send, or while the mesh or a local recipient is full.
    async fn wait<S: AsyncRead + AsyncWrite + Unpin>(&mut self, stream: &mut S) -> Wake {
        std::future::poll_fn(|cx| {
            match self.out.poll_write(stream, cx) {
                Err(WriteFailed) => return Poll::Ready(Wake::Eof),
                Ok(true) => {
                    self.written(self.out.total);
                    return Poll::Ready(Wake::Progress);
                }
                Ok(false) => {}
            }
            if let Some(check) = self.ban_check.as_mut() {
                if let Poll::Ready(banned) = check.as_mut().poll(cx) {
                    self.ban_check = None;
                    if let Some(left) = banned {
                        self.comp.banned(left);
                    }
                    return Poll::Ready(Wake::Progress);
                }
            }
            if !self.unanswered.is_empty() && has_room(&self.ctx, &self.mailbox, cx) {
                return Poll::Ready(Wake::Progress);
            }
            self.mailbox.set_waker(cx.waker());
            if self.mailbox.ready(self.room())
                || (!self.comp.is_closed() && too_slow(&self.mailbox, &self.out, SLOW_GRACE))
            {
                return Poll::Ready(Wake::Progress);
            }
            if self.alarm.poll_fired(cx) {
                return Poll::Ready(Wake::Timer);
            }
            let backlog = self.out.buf.len() + self.comp.pending_transmit();
            if !self.comp.is_closed()
                && backlog <= self.comp.output_bound()
                && has_room(&self.ctx, &self.mailbox, cx)
            {
                let mut buf = self.ctx.read_buf.borrow_mut();
                match Pin::new(&mut *stream).poll_read(cx, &mut buf[..]) {
                    Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Poll::Ready(Wake::Eof),
                    Poll::Ready(Ok(n)) => {
                        let now = Instant::now();
                        crate::hooks::clock::set_now(now);
                        self.comp.handle_input(&buf[..n], now);
                        return Poll::Ready(Wake::Progress);
                    }
                    Poll::Pending => {}
                }
            }
            Poll::Pending
        })
        .await
    }
}
