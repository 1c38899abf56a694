//! The glommio driver of one client connection: it only moves bytes between the socket and the sans-IO
//! `C2s`, carries out the c2s events (store look-ups off the shard, bind, the route) and feeds the
//! connection's mailbox into the c2s. One task per connection, one poll loop, no locks.

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use futures_lite::{AsyncRead, AsyncWrite};

use super::address_slots::{AddressSlot, AddressSlots};
use super::backlog::{room_or_mail, Backlog};
use super::pump::{earliest, has_room, too_slow, Alarm, Output, WriteFailed};
use super::ShardCtx;
use crate::auth::throttle::InFlight;
use crate::auth::ScramSecrets;
use crate::c2s::route::{self as c2s_route, HoldUntil, SendOutcome, Session};
use crate::c2s::{C2s, C2sConfig, C2sEvent, PeerInfo};
use crate::jid::FullJid;
use crate::shard::{ConnId, ConnMsg, Mailbox};
use crate::web::Link;
use crate::xmpp::StreamErrorCondition;

/// How long a mailbox may stay over its bound (holding its senders back) while its socket still
/// takes bytes, before the reader counts as too slow.
pub(super) const SLOW_GRACE: Duration = Duration::from_secs(2);

/// An answer from the store pool, on its way back to the connection.
pub(super) enum Pending {
    /// The account's secrets, and the attempt's place in the login throttle.
    Secrets(Option<ScramSecrets>, InFlight),
    /// Whether the PLAIN password was right, and the attempt's place in the login throttle.
    Plain(bool, InFlight),
    /// The store could not answer (queue full, failure): temporary-auth-failure.
    Unavailable,
    /// The login throttle banned this address for this much longer.
    Banned(Duration),
    /// The `<iq/>` answering a registration before authentication.
    PreAuth(Vec<u8>),
}

type PendingFut = Pin<Box<dyn Future<Output = Pending>>>;

/// What woke the connection's loop.
enum Wake {
    Progress,
    Eof,
    Pending(Pending),
    Timer,
}

/// A connection's byte stream: a TCP socket, TLS over one (HTTPS), or what an HTTP upgrade left.
pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin {}
impl<T: AsyncRead + AsyncWrite + Unpin> Io for T {}

/// Runs one connection to its end. A panic inside is caught here: it ends this connection only.
/// BOSH sessions run theirs over an in-memory pipe (`Link::Bosh`).
///
/// The connection opens when this is called; the future only drives it. Not an `async fn`: the
/// task of an idle connection is what stays allocated, and an async fn keeps its arguments and
/// every local (the `C2s` among them) beside the futures it awaits, so the driver and the stream
/// live boxed, once, and the task holds their pointers.
pub(crate) fn run<S: Io>(
    stream: S,
    peer: std::net::SocketAddr,
    link: Link,
    ctx: Rc<ShardCtx>,
    cfg: Arc<C2sConfig>,
) -> impl Future<Output = ()> {
    // The transport the admin API lists.
    let transport = match link {
        Link::Raw => "tcp",
        Link::Ws(_) => "websocket",
        Link::Bosh(_) => "bosh",
    };
    // BOSH sessions hold their own per-address slots (`rt::bosh`). 127.0.0.1 and ::1 are not
    // counted: a reverse proxy in front of the WebSocket endpoint, or the load generator, speaks
    // for many clients from there.
    let counted = !matches!(link, Link::Bosh(_)) && !is_local_host(peer.ip());
    let mut driver = Driver::open(peer, link, ctx, cfg, transport);
    if counted {
        match AddressSlots::take(&UNAUTHENTICATED, peer.ip(), UNAUTHENTICATED_PER_ADDRESS) {
            Some(slot) => driver.unauthenticated = Some(Box::new(slot)),
            None => {
                tracing::warn!(%peer, max = UNAUTHENTICATED_PER_ADDRESS, "too many unauthenticated connections from one address, refused");
                driver.c2s.close(
                    Some(StreamErrorCondition::PolicyViolation),
                    Some("too many unauthenticated connections from this address"),
                );
            }
        }
    }
    let stream = Box::new(stream);
    let (ctx, conn, session) = (driver.ctx.clone(), driver.conn, driver.session.clone());
    // What this block keeps (its captures, the driver's future) is what an idle connection's task
    // costs: the peer's address stays in the admin listing, not here.
    async move {
        let caught = super::pump::catch(driver.run(stream)).await;
        let shard_id = ctx.shard.borrow().id.0;
        super::pump::log_panic(caught, "connection", shard_id, conn.0);
        // Whatever happened, the session leaves the session manager and the shard forgets the
        // connection.
        if let Some(sess) = session.borrow_mut().take() {
            c2s_route::unbind(&mut ctx.shard.borrow_mut(), &sess);
        }
        let info = super::admin::conns::closed(&mut ctx.shard.borrow_mut(), conn);
        ctx.shard.borrow_mut().close_conn(conn);
        ctx.flush();
        if let Some(info) = info {
            tracing::info!(shard = shard_id, conn = conn.0, peer = %info.peer, "connection closed");
        }
    }
}

pub(super) struct Driver {
    pub(super) ctx: Rc<ShardCtx>,
    cfg: Arc<C2sConfig>,
    pub(super) c2s: C2s,
    /// Raw stream or WebSocket framing between the socket and the c2s.
    link: Link,
    pub(super) conn: ConnId,
    pub(super) mailbox: Rc<Mailbox>,
    pub(super) session: Rc<std::cell::RefCell<Option<Session>>>,
    /// The JID asked for while the bind is on its way (boxed: a word, not three, for the life of
    /// the connection).
    bind_pending: Option<Box<FullJid>>,
    /// When the last authentication attempt began (read the account): a bind after the account's
    /// deletion since is refused (see `sm::register`).
    auth_began: Instant,
    /// The login attempt under way, counted by the throttle until its outcome is known.
    pub(super) in_flight: Option<InFlight>,
    pub(super) pending: Option<PendingFut>,
    /// Bytes on their way to the socket.
    out: Output,
    alarm: Alarm,
    /// Stanzas handed back after the session left, re-routed a chunk per turn (`reroute_some`).
    backlog: Backlog,
    /// XEP-0198 resumption state of this connection (`conn_sm`).
    pub(super) sm: super::conn_sm::SmDriver,
    /// This connection's slot among its address's unauthenticated ones, until SASL succeeds
    /// (boxed: a word on an idle session).
    unauthenticated: Option<Box<AddressSlot>>,
    /// What the stream's input waits for (see [`SendOutcome::HoldInput`]): no event is handled,
    /// no byte read, until it happens.
    held_input: Option<Held>,
}

/// A stream's held input.
enum Held {
    /// The answer to the request with this id.
    Answer(Box<str>),
    /// [`ConnMsg::InputReleased`], or this moment, whichever comes first.
    Released(Instant),
}

/// Longest wait for [`ConnMsg::InputReleased`]: a broadcast is routed in milliseconds; a store
/// that stalls must not stop the client's stream for longer (the order is given up, logged).
const RELEASE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

thread_local! {
    /// Unauthenticated c2s connections (TCP and WebSocket) per remote address on this shard.
    static UNAUTHENTICATED: AddressSlots = AddressSlots::default();
}

/// 127.0.0.1 or ::1 (not the rest of 127.0.0.0/8: tests and load generators play other machines
/// from there).
fn is_local_host(ip: std::net::IpAddr) -> bool {
    match ip {
        std::net::IpAddr::V4(v4) => v4 == std::net::Ipv4Addr::LOCALHOST,
        std::net::IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped() == Some(std::net::Ipv4Addr::LOCALHOST)
        }
    }
}

/// Unauthenticated c2s connections one address may hold per shard: past it a connection gets a
/// `policy-violation` stream error at once (stalled streams from one address took every file
/// descriptor, and no one could log in until they timed out). Well above what a NAT opens at once.
const UNAUTHENTICATED_PER_ADDRESS: usize = 256;

impl Driver {
    /// Opens the connection on its shard (mailbox, admin listing) with a fresh `C2s`.
    fn open(
        peer: std::net::SocketAddr,
        link: Link,
        ctx: Rc<ShardCtx>,
        cfg: Arc<C2sConfig>,
        transport: &'static str,
    ) -> Box<Driver> {
        let (conn, mailbox) = ctx.shard.borrow_mut().open_conn();
        let shard_id = ctx.shard.borrow().id.0;
        tracing::info!(shard = shard_id, conn = conn.0, %peer, "connection opened");
        let session: Rc<std::cell::RefCell<Option<Session>>> = Rc::default();
        super::admin::conns::opened(
            &mut ctx.shard.borrow_mut(),
            conn,
            super::admin::conns::ConnInfo {
                peer,
                transport,
                since: crate::store::unix_now().max(0) as u64,
                session: session.clone(),
            },
        );
        let mut c2s = C2s::new(cfg.clone(), PeerInfo { addr: peer }, Instant::now());
        c2s.set_dynamic_hosts(ctx.shard.borrow().dynamic_hosts.clone());
        Box::new(Driver {
            ctx,
            c2s,
            link,
            cfg,
            conn,
            mailbox,
            session,
            bind_pending: None,
            auth_began: Instant::now(),
            in_flight: None,
            pending: None,
            out: Output::new(),
            alarm: Alarm::default(),
            backlog: Default::default(),
            sm: Default::default(),
            unauthenticated: None,
            held_input: None,
        })
    }

    async fn run<S: Io>(mut self: Box<Self>, stream: S) {
        self.serve(stream).await;
        // The last confirmation (a BOSH client's `terminate` comes with its input) counts first.
        self.link.written(&mut self.c2s, self.out.total);
        // What the socket never took (the peer stopped reading, or went away), or a BOSH client
        // never confirmed, is not delivered: what is worth it goes back through the session
        // manager ahead of the stanzas queued after it.
        let mut unwritten = self.c2s.take_unwritten();
        unwritten.retain(crate::sm::worth_rerouting);
        if !unwritten.is_empty() {
            tracing::debug!(
                conn = self.conn.0,
                stanzas = unwritten.len(),
                "stanzas the socket never took go back to the session manager"
            );
            self.leave();
            self.backlog.push_front_all(unwritten);
        }
        // The socket is gone; a resumable session (or our own resumption in flight) lives on.
        self.park().await;
        self.drain_backlog().await;
    }

    async fn serve<S: Io>(&mut self, mut stream: S) {
        loop {
            self.process();
            if self.unauthenticated.is_some() && self.c2s.is_authenticated() {
                self.unauthenticated = None;
            }
            if self.out.buf.is_empty() {
                self.link.output(&mut self.c2s, &mut self.out.buf);
                if crate::hooks::handled::pending() || crate::hooks::on_drop::pending() {
                    // Stanzas just written released their senders' acknowledgements.
                    self.ctx.flush();
                }
                if self.out.buf.capacity() > 64 * 1024 && self.out.buf.is_empty() {
                    // Give back a burst's buffer: idle connections must stay small.
                    self.out.buf = Vec::new();
                }
                self.mailbox.release_if_empty();
            }
            if self.c2s.is_closed() && self.out.close_due() {
                self.drain_held().await;
                let _ = futures_lite::AsyncWriteExt::close(&mut stream).await;
                return;
            }
            // A mailbox that stays over its bound cuts its reader off even if nothing else wakes
            // the task (its senders wait meanwhile).
            let due = earliest(self.c2s.next_timeout(), self.mailbox.slow_at(SLOW_GRACE));
            let due = earliest(due, self.release_at());
            self.alarm.arm(due, &self.out);
            // `wake` (a store answer may be large) ends with this statement: kept across the
            // yield below, it would stay in every idle connection's task.
            match self.wait(&mut stream).await {
                Wake::Progress => {}
                Wake::Eof => {
                    // The peer closed (or reset) without </stream:stream>: nothing more can be written.
                    self.c2s.peer_closed();
                    self.process();
                    self.drain_held().await;
                    return;
                }
                Wake::Pending(Pending::Secrets(s, in_flight)) => {
                    self.in_flight = Some(in_flight);
                    self.c2s.provide_secrets(s)
                }
                Wake::Pending(Pending::Plain(ok, in_flight)) => {
                    self.in_flight = Some(in_flight);
                    self.c2s.plain_verified(ok)
                }
                Wake::Pending(Pending::Unavailable) => self.c2s.auth_unavailable(),
                Wake::Pending(Pending::Banned(left)) => self.auth_banned(left),
                Wake::Pending(Pending::PreAuth(iq)) => self.c2s.preauth_reply(&iq),
                Wake::Timer => {
                    let now = Instant::now();
                    self.release_late(now);
                    self.c2s.handle_timeout(now)
                }
            }
            if self.backlog.is_empty() {
                glommio::yield_if_needed().await;
            } else {
                futures_lite::future::yield_now().await;
            }
        }
    }

    /// Handles c2s events and mailbox messages until both are quiet, then carries out mesh sends.
    /// Stanzas leave the mailbox only while the stream has room for them: a reader that cannot keep
    /// up leaves them there until the mailbox overflows (see `Mailbox` for the policy).
    pub(super) fn process(&mut self) {
        loop {
            let mut busy = false;
            while self.held_input.is_none() {
                let Some(ev) = self.c2s.poll_event() else {
                    break;
                };
                busy = true;
                self.on_event(ev);
            }
            while let Some(msg) = self.mailbox.pop_within(self.room()) {
                busy = true;
                self.on_msg(msg);
            }
            if !self.c2s.is_closed() && too_slow(&self.mailbox, &self.out, SLOW_GRACE) {
                // Slow reader: the socket takes nothing (or too little for too long: its senders
                // wait), the stream is full and the mailbox is still over its bound. Leave first,
                // so that what is queued here goes elsewhere.
                self.leave();
                self.c2s.close_now(
                    Some(StreamErrorCondition::PolicyViolation),
                    Some("slow reader"),
                );
                busy = true;
            }
            if !busy {
                break;
            }
        }
        self.reroute_some();
        self.ctx.flush();
    }

    /// Stanza bytes the stream can take now (unbounded when the stanza will not be written here).
    fn room(&self) -> usize {
        let writes_here = !self.c2s.is_closed()
            && self.sm.parked.is_none()
            && self.sm.hold.is_none()
            && self.session.borrow().is_some();
        let pending = self.c2s.pending_transmit();
        if writes_here && pending > 0 {
            self.cfg.outbound_queue_bytes.saturating_sub(pending)
        } else {
            // Not written here, or nothing queued: any stanza fits (one larger than the bound
            // must not wait forever).
            usize::MAX
        }
    }

    /// Queues a stanza this connection cannot write for the session manager (after `leave`).
    pub(super) fn reroute_later(&mut self, acc: crate::hooks::Acc) {
        self.backlog.push_back(acc);
    }

    /// Re-routes the next chunk of the backlog (see [`Backlog::hand_back`]): a connection cut off
    /// with a full queue hands it back over several turns, as fast as the recipients (and the
    /// senders its errors go to) take it.
    fn reroute_some(&mut self) {
        // Stanzas still on their way to the socket are older: while the socket may take them, the
        // newer ones wait, so that what goes elsewhere (offline storage) keeps its order.
        if self.backlog.is_empty() || self.c2s.has_unwritten() {
            return;
        }
        let ctx = &self.ctx;
        self.backlog.hand_back(ctx, &self.mailbox, |acc| {
            ctx.shard.borrow_mut().reroute(acc);
        });
        ctx.shard.borrow_mut().drain_to_route();
    }

    /// Re-routes the whole backlog, and whatever still reaches the mailbox meanwhile, before the
    /// task ends.
    async fn drain_backlog(&mut self) {
        loop {
            // Stanzas routed here before the session left still arrive: they join the backlog.
            self.process();
            if self.backlog.is_empty() && self.mailbox.is_empty() {
                return;
            }
            room_or_mail(&self.ctx, &self.mailbox).await;
        }
    }

    fn on_event(&mut self, ev: C2sEvent) {
        match ev {
            C2sEvent::NeedSecrets { username } => {
                self.auth_began = Instant::now();
                self.credential_lookup(
                    &username,
                    |store, jid| store.get_secrets(jid),
                    Pending::Secrets,
                    Pending::Secrets(None, InFlight::default()),
                )
            }
            C2sEvent::VerifyPlain { username, password } => {
                self.auth_began = Instant::now();
                self.credential_lookup(
                    &username,
                    // PBKDF2 runs there, on the pool thread, never on the shard.
                    move |store, jid| {
                        let secrets = store.get_secrets(jid)?;
                        Ok(crate::auth::verify_plain(secrets.as_ref(), jid, &password))
                    },
                    Pending::Plain,
                    Pending::Plain(false, InFlight::default()),
                )
            }
            C2sEvent::AuthFailed { jid } => {
                self.ctx.shard.borrow().metrics.logins_failed.inc();
                self.auth_failed(jid)
            }
            C2sEvent::Authenticated { jid } => {
                // The attempt's outcome is known: it no longer counts against the address.
                self.in_flight = None;
                self.ctx.shard.borrow().metrics.logins_ok.inc();
                tracing::debug!(conn = self.conn.0, %jid, "authenticated");
            }
            C2sEvent::BindRequest { jid } => {
                let sref = self.ctx.shard.borrow().session_ref(self.conn);
                self.bind_pending = Some(Box::new(jid.clone()));
                c2s_route::bind(&mut self.ctx.shard.borrow_mut(), jid, sref, self.auth_began);
            }
            C2sEvent::Stanza(stanza, seq) => {
                let mut session = self.session.borrow_mut();
                let Some(sess) = session.as_mut() else {
                    return;
                };
                // XEP-0198: the client's h counts this stanza once its route ends.
                let token = seq.map(|seq| crate::hooks::Handled::new(sess.session, seq));
                let outcome = c2s_route::user_send_acked(
                    &mut self.ctx.shard.borrow_mut(),
                    sess,
                    stanza,
                    token,
                );
                drop(session);
                match outcome {
                    SendOutcome::Continue => {}
                    SendOutcome::Close(cond) => self.c2s.close(Some(cond), None),
                    SendOutcome::HoldInput(HoldUntil::Answer(id)) => {
                        self.held_input = Some(Held::Answer(id.into()))
                    }
                    SendOutcome::HoldInput(HoldUntil::Released) => {
                        self.held_input = Some(Held::Released(Instant::now() + RELEASE_WAIT))
                    }
                }
            }
            C2sEvent::PreAuthIq(stanza) => self.pre_auth(&stanza),
            C2sEvent::SmEnabled { id } => self.sm_enabled(id),
            C2sEvent::Bind2Enable { requests } => {
                let Some((jid, session)) = self
                    .session
                    .borrow()
                    .as_ref()
                    .map(|s| (s.jid.clone(), s.session))
                else {
                    return;
                };
                let mut ev = crate::hooks::Bind2Enable {
                    jid,
                    session,
                    requests,
                };
                self.ctx.shard.borrow_mut().bind2_enable_features(&mut ev);
            }
            C2sEvent::ResumeRequest { jid, previd, h } => self.sm_resume(jid, previd, h),
            C2sEvent::Closed { reason } => self.closed(reason),
        }
    }

    fn on_msg(&mut self, msg: ConnMsg) {
        if self.sm.parked.is_some() {
            return self.park_msg(msg);
        }
        match msg {
            ConnMsg::Deliver(acc) => {
                if !self.c2s.is_closed() && self.session.borrow().is_none() && self.sm.resume_asked
                {
                    // Routed here by the home shard before the old connection's hand-over.
                    self.sm.early.push(acc);
                    return;
                }
                self.deliver(acc);
            }
            ConnMsg::Ext(m) => self.ext_msg(m),
            ConnMsg::Handled(seqs) => self.c2s.sm_handled(&seqs, Instant::now()),
            ConnMsg::InputReleased => {
                if matches!(self.held_input, Some(Held::Released(_))) {
                    self.held_input = None;
                }
            }
            ConnMsg::Bound(result) => {
                let Some(jid) = self.bind_pending.take().map(|j| *j) else {
                    return;
                };
                match result {
                    Ok(()) => {
                        let sref = self.ctx.shard.borrow().session_ref(self.conn);
                        self.ctx
                            .shard
                            .borrow_mut()
                            .local_bind(jid.clone(), self.conn);
                        *self.session.borrow_mut() = Some(Session::new(jid.clone(), sref));
                        self.link.bound();
                        if !self.ctx.shard.borrow().is_hosted(jid.domain()) {
                            // Its run-time domain was removed while the bind was on its way
                            // (the removal found no session here to close yet).
                            self.leave();
                            self.c2s.close(
                                Some(StreamErrorCondition::HostGone),
                                Some("domain removed"),
                            );
                            return;
                        }
                        self.c2s.bind_result(Ok(jid));
                    }
                    Err(crate::c2s::BindError::AccountRemoved) => {
                        // Deleted after this connection authenticated: it has no account to bind.
                        self.c2s.close(
                            Some(StreamErrorCondition::NotAuthorized),
                            Some("account deleted"),
                        );
                    }
                    Err(e) => self.c2s.bind_result(Err(e)),
                }
            }
            // Only incoming s2s connections ask for verifications.
            ConnMsg::DialbackVerified { .. } => {}
            ConnMsg::Close(cond) => {
                if cond == StreamErrorCondition::Conflict {
                    // Replaced: the home shard already bound our JID to the new session.
                    if let Some(sess) = self.session.borrow_mut().take() {
                        self.ctx
                            .shard
                            .borrow_mut()
                            .local_unbind(&sess.jid, self.conn);
                    }
                } else {
                    self.leave();
                }
                if cond == StreamErrorCondition::SystemShutdown {
                    // The client reconnects after the restart: its last ack should count what it
                    // sent that is still on its way, so that it sends none of it twice.
                    self.c2s.close_when_handled(cond, Instant::now());
                } else {
                    self.c2s.close(Some(cond), None);
                }
            }
            ConnMsg::CloseText(cond, text) => {
                self.leave();
                self.c2s.close(Some(cond), Some(text));
            }
        }
    }

    /// In-band registration before authentication: answered now, or by a store job (PBKDF2 off the shard).
    fn pre_auth(&mut self, stanza: &crate::xml::Stanza) {
        use crate::modules::register::{self, PreAuth};
        let ip = self.c2s.peer().addr.ip();
        let action =
            register::pre_auth(&self.ctx.shard.borrow().ext, stanza, self.c2s.domain(), ip);
        match action {
            PreAuth::Reply(iq) => self.c2s.preauth_reply(&iq),
            PreAuth::Job(job) => {
                let id = stanza.id().map(|c| c.into_owned());
                let call = self.ctx.store.call(job);
                self.pending = Some(Box::pin(async move {
                    let iq = call.await.unwrap_or_else(|_| {
                        // Pool full or closed: the client may retry later.
                        register::form::iq_bytes(
                            id.as_deref(),
                            Err(crate::xmpp::StanzaErrorCondition::ResourceConstraint),
                        )
                    });
                    Pending::PreAuth(iq)
                }));
            }
        }
    }

    /// A stanza routed to this connection: through the receive hooks to the client (or held, see
    /// [`Driver::write_routed`]); without a session, back to the session manager.
    pub(super) fn deliver(&mut self, acc: crate::hooks::Acc) {
        if self.c2s.is_closed() || self.session.borrow().is_none() {
            // Raced with our own close: the stanza belongs to another resource or offline.
            self.reroute_later(acc);
            return;
        }
        let resumes = matches!(&self.held_input, Some(Held::Answer(id)) if {
            acc.kind() == crate::xml::StanzaKind::Iq
                && acc.ty().is_response()
                && acc.stanza.id().as_deref() == Some(&**id)
        });
        let out = match self.session.borrow().as_ref() {
            Some(sess) => c2s_route::user_receive_at(&mut self.ctx.shard.borrow_mut(), sess, acc),
            None => return,
        };
        // Stanzas a presend handler released (CSI) come first, in order.
        for acc in out {
            self.write_routed(acc);
        }
        if resumes {
            // The answer is on its way to the client: what it sent next is handled now.
            self.held_input = None;
        }
    }

    /// Writes a routed stanza (after the receive hooks) to the client, or holds it while a
    /// resumption hand-over completes (XEP-0198).
    pub(super) fn write_routed(&mut self, acc: crate::hooks::Acc) {
        if let Some(hold) = self.sm.hold.as_mut() {
            hold.push(acc);
            return;
        }
        if let Err(acc) = self.c2s.deliver_routed(acc) {
            // Over the outbound bound (or the XEP-0198 buffer): the c2s closes with policy-violation;
            // the stanza goes back to the session manager after our unregistration (same ring
            // order), behind the unacknowledged ones.
            self.leave();
            self.reroute_unacked();
            self.reroute_later(acc);
        }
    }

    /// The stream ended while its input waited for a presence broadcast's release: waits for it
    /// (at most until it is due), then handles what the client sent before the end (RFC 6120
    /// §4.4), which would otherwise go with the connection.
    async fn drain_held(&mut self) {
        while let Some(Held::Released(at)) = self.held_input {
            if self.mailbox_or(at).await {
                self.release_late(Instant::now());
            }
            self.process();
        }
    }

    /// When a held input stops waiting for [`ConnMsg::InputReleased`].
    fn release_at(&self) -> Option<Instant> {
        match self.held_input {
            Some(Held::Released(at)) => Some(at),
            _ => None,
        }
    }

    /// Reads the input again if its release is overdue.
    fn release_late(&mut self, now: Instant) {
        if self.release_at().is_some_and(|at| at <= now) {
            tracing::warn!(
                conn = self.conn.0,
                "a presence broadcast was not routed in time: the client's input is read again"
            );
            self.held_input = None;
        }
    }

    /// Unregisters the session (once).
    pub(super) fn leave(&mut self) {
        if let Some(sess) = self.session.borrow_mut().take() {
            c2s_route::unbind(&mut self.ctx.shard.borrow_mut(), &sess);
        }
    }

    /// Waits for the next thing to do: room to write, bytes to read, a mailbox message, a store
    /// answer, a timeout. Reading pauses while the client is not draining what we send.
    async fn wait<S: Io>(&mut self, stream: &mut S) -> Wake {
        let read_limit = self.c2s_bound();
        std::future::poll_fn(|cx| {
            match self.out.poll_write(stream, cx) {
                Err(WriteFailed) => return Poll::Ready(Wake::Eof),
                Ok(true) => {
                    self.link.written(&mut self.c2s, self.out.total);
                    return Poll::Ready(Wake::Progress);
                }
                Ok(false) => {}
            }
            if self.link.poll_confirmed(cx) {
                self.link.written(&mut self.c2s, self.out.total);
                return Poll::Ready(Wake::Progress);
            }
            if !self.backlog.is_empty()
                && !self.c2s.has_unwritten()
                && has_room(&self.ctx, &self.mailbox, cx)
            {
                return Poll::Ready(Wake::Progress);
            }
            self.mailbox.set_waker(cx.waker());
            let room = self.room();
            if !self.c2s.is_closed() && too_slow(&self.mailbox, &self.out, SLOW_GRACE) {
                return Poll::Ready(Wake::Progress);
            }
            if self.mailbox.ready(room) {
                return Poll::Ready(Wake::Progress);
            }
            if let Some(p) = self.pending.as_mut() {
                if let Poll::Ready(r) = p.as_mut().poll(cx) {
                    self.pending = None;
                    return Poll::Ready(Wake::Pending(r));
                }
            }
            if self.alarm.poll_fired(cx) {
                return Poll::Ready(Wake::Timer);
            }
            // Our own output waiting (including stanzas still in the mailbox): a client that does
            // not read what it causes (errors, echoes) is not read either. Stanzas waiting for its
            // XEP-0198 acks do not count: the acks are on its input (what they wait in is bounded
            // by `outbound_queue_bytes` all the same, see `C2s::deliver_routed`).
            let backlog = self.out.buf.len()
                + (self.c2s.pending_transmit() - self.c2s.awaiting_acks())
                + self.mailbox.bytes()
                + self.link.pending_output();
            // Backpressure: while the mesh cannot take more, or a local recipient is behind, the
            // socket is not read.
            if !self.c2s.is_closed()
                && self.held_input.is_none()
                && backlog <= read_limit
                && has_room(&self.ctx, &self.mailbox, cx)
            {
                let mut buf = self.ctx.read_buf.borrow_mut();
                match Pin::new(&mut *stream).poll_read(cx, &mut buf[..]) {
                    Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Poll::Ready(Wake::Eof),
                    Poll::Ready(Ok(n)) => {
                        let now = Instant::now();
                        crate::hooks::clock::set_now(now);
                        self.link.input(&buf[..n], &mut self.c2s, now);
                        return Poll::Ready(Wake::Progress);
                    }
                    Poll::Pending => {}
                }
            }
            Poll::Pending
        })
        .await
    }

    fn c2s_bound(&self) -> usize {
        self.cfg.outbound_queue_bytes
    }
}
