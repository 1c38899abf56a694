//! The per-shard route core, sans-IO: hooks, router chain, local delivery and this shard's partition of
//! the session manager. The runtime (`rt`) feeds it stanzas and mesh messages and carries out what it
//! queues: messages for other shards and deliveries into connection mailboxes.
//!
//! Nothing here is shared between shards; a `Shard` lives in one thread and is reached only through
//! `&mut`. Cross-shard work leaves as [`ShardMsg`] values in [`Shard::take_outgoing`].

pub mod cluster;
mod ext;
pub mod fence;
mod hosts;
mod ids;
mod mailbox;
mod msg;
mod waiters;

pub use ext::Extensions;
pub use fence::Fence;
pub use hosts::{DynamicHosts, Served};
pub use ids::{
    home_hash, home_shard, home_shard_by_hash, home_shard_of, Ask, ConnId, SessionRef, ShardId,
    REMOTE_SHARD,
};
pub use mailbox::{Mailbox, MailboxFull};
pub use msg::{ConnExtMsg, ConnMsg, DrainCause, ShardMsg};
pub use waiters::Waiters;

use ahash::HashSet;
use std::rc::Rc;

use ahash::{HashMap, HashMapExt};

use crate::config::RoutingModule;
use crate::hooks::{Acc, Effects, HookCtx, Hooks, KeyedJob};
use crate::jid::FullJid;
use crate::local::IqHandlers;
use crate::sm::SessionManager;

/// Resumed sessions whose old connection forwards late acknowledgements, per shard (older ones are
/// forgotten: their acknowledgements are given up after `ACK_GIVE_UP` by the new connection).
const MAX_MOVED: usize = 16_384;

/// Takes stanzas for remote domains on their home shard (see [`Shard::set_remote_handler`]).
pub type RemoteHandler = Rc<dyn Fn(&mut Shard, Acc)>;

/// Takes what is sent to a session on another node of a cluster ([`SessionRef::remote`]; see
/// [`Shard::set_session_handler`]).
pub type RemoteSessionHandler = Rc<dyn Fn(&mut Shard, SessionRef, ConnMsg)>;

/// Told on the home shard when a local session is bound or updated (`Some(priority)`, `None` while
/// only connected) or gone (`None`): see [`Shard::set_session_listener`].
pub type SessionListener = Rc<dyn Fn(&mut Shard, &FullJid, SessionRef, Option<Option<i8>>)>;

/// Module work run once per scheduler turn (see [`Shard::add_flusher`]).
pub type Flusher = Rc<dyn Fn(&mut Shard)>;

/// Counters a shard keeps for metrics and tests (plain integers: no shared atomics on the hot path).
#[derive(Debug, Default, Clone)]
pub struct ShardStats {
    /// Stanzas that entered the route on this shard from clients.
    pub routed: u64,
    /// Stanzas written into a local connection mailbox.
    pub delivered: u64,
    /// Stanzas bounced with `resource-constraint` because an outbox to another shard was full.
    pub outbox_rejected: u64,
    /// Error stanzas dropped: their path was full (logged), or their recipient's sessions kept
    /// refusing them.
    pub errors_dropped: u64,
    /// Stanzas re-routed because their target session had gone.
    pub rerouted: u64,
    /// Messages sent straight to their recipient's shard from a known location (no home-shard
    /// hop, see `sm::locations`).
    pub direct: u64,
}

/// One shard's route state.
pub struct Shard {
    /// This shard.
    pub id: ShardId,
    /// Number of shards in the process.
    pub shards: usize,
    /// Domains served by this server (`general.hosts`).
    pub hosts: Rc<HashSet<String>>,
    /// Domains added at run time (see [`Shard::is_hosted`]).
    pub dynamic_hosts: DynamicHosts,
    /// Hook registries (filled by modules at start-up).
    pub hooks: Hooks,
    /// IQ handlers for the server and for accounts, keyed by (namespace, host).
    pub iq: IqHandlers,
    /// IQs sent by the server or a service, waiting for their answer (see `Shard::send_iq`).
    pub(crate) iq_pending: crate::local::PendingIqs,
    /// The router chain, in `routing_modules` order.
    pub routing_modules: Rc<[RoutingModule]>,
    /// Domains with a local route registered (filled lazily by `dynamic_domains`, like MongooseIM).
    pub(crate) local_routes: HashSet<String>,
    /// Packet handlers of services registered as local routes (`conference.example.org`), by domain.
    services: HashMap<String, crate::local::PacketHandler>,
    pub(crate) sm: SessionManager,
    /// Where other shards' users' sessions live, as far as this shard learnt it.
    pub(crate) locations: crate::sm::Locations,
    /// Recipients this shard recently sent stanzas to through their home shard (RFC 6120 §10.1,
    /// see `sm::order`).
    pub(crate) home_paths: crate::sm::HomePaths,
    /// What this shard took from each other shard's ring, and the stanzas waiting behind what
    /// their sender's shard sent straight (see [`fence`]).
    pub(crate) arrivals: fence::Arrivals,
    conns: HashMap<ConnId, Rc<Mailbox>>,
    /// Full JIDs bound on this shard's connections: a stanza to one of them is delivered here without
    /// the hop through the home shard.
    local_sessions: HashMap<FullJid, ConnId>,
    next_conn: u64,
    /// Bytes a connection mailbox may hold before its reader counts as too slow.
    pub mailbox_limit: usize,
    out: Vec<(ShardId, ShardMsg)>,
    /// Mailboxes that went over their bound on delivery (see [`Shard::pressured`]).
    pressured: Vec<Rc<Mailbox>>,
    /// Local connections whose session was resumed elsewhere, and where (see [`Shard::moved_to`]).
    moved: HashMap<ConnId, SessionRef>,
    /// `moved` in insertion order, to forget the oldest past `MAX_MOVED`.
    moved_order: std::collections::VecDeque<ConnId>,
    pub(crate) fx: Effects,
    /// Module state kept on this shard.
    pub ext: Extensions,
    /// Module work run each time the runtime collects store jobs (see [`Shard::add_flusher`]).
    flushers: Vec<Flusher>,
    /// Where stanzas for remote domains go (the federation runtime); none: they bounce.
    remote: Option<RemoteHandler>,
    /// Where messages to sessions on other nodes go (a cluster); none on a single node.
    remote_sessions: Option<RemoteSessionHandler>,
    /// Who hears of local session changes on their home shard (a cluster replicates them).
    pub(crate) session_listener: Option<SessionListener>,
    /// Counters.
    pub stats: ShardStats,
    /// Prometheus handles (atomics taken once; the runtime swaps in the server registry's).
    pub metrics: crate::metrics::ShardMetrics,
}

impl Shard {
    /// A shard with no modules: only the route's own handlers (the default `offline_message` answer).
    pub fn new(
        id: ShardId,
        shards: usize,
        hosts: Rc<HashSet<String>>,
        routing_modules: Rc<[RoutingModule]>,
        mailbox_limit: usize,
    ) -> Shard {
        let mut shard = Shard {
            id,
            shards,
            hosts,
            dynamic_hosts: DynamicHosts::default(),
            hooks: Hooks::default(),
            iq: IqHandlers::default(),
            iq_pending: crate::local::PendingIqs::default(),
            routing_modules,
            local_routes: HashSet::default(),
            services: HashMap::new(),
            sm: SessionManager::default(),
            locations: crate::sm::Locations::default(),
            home_paths: crate::sm::HomePaths::default(),
            arrivals: fence::Arrivals::default(),
            conns: HashMap::new(),
            local_sessions: HashMap::new(),
            next_conn: 1,
            mailbox_limit,
            out: Vec::new(),
            pressured: Vec::new(),
            moved: HashMap::new(),
            moved_order: std::collections::VecDeque::new(),
            fx: Effects::default(),
            ext: Extensions::default(),
            flushers: Vec::new(),
            remote: None,
            remote_sessions: None,
            session_listener: None,
            stats: ShardStats::default(),
            metrics: crate::metrics::ShardMetrics::detached(id),
        };
        crate::sm::register_default_handlers(&mut shard.hooks);
        shard
    }

    /// True when `domain` is served here: configured, or added at run time.
    pub fn is_hosted(&self, domain: &str) -> bool {
        self.hosts.contains(domain) || self.dynamic_hosts.contains(domain)
    }

    /// A handle on the domains served here, for module state (it follows run-time changes).
    pub fn served(&self) -> Served {
        Served::new(self.hosts.clone(), self.dynamic_hosts.clone())
    }

    /// Stops serving the run-time domain `domain` on this shard: forgets its local route and
    /// closes this shard's sessions of it with `host-gone`.
    pub fn remove_dynamic_host(&mut self, domain: &str) {
        self.dynamic_hosts.remove(domain);
        // A service's route (MUC, upload) stays; only the run-time domain's own route goes.
        if self.service(domain).is_none() {
            self.local_routes.remove(domain);
        }
        for (jid, conn) in &self.local_sessions {
            if jid.domain() == domain {
                if let Some(mb) = self.conns.get(conn) {
                    // Close is a control message: always accepted.
                    let _ = mb.push(ConnMsg::Close(crate::xmpp::StreamErrorCondition::HostGone));
                }
            }
        }
    }

    /// The full JIDs bound on this shard's connections, with their connections.
    pub fn local_sessions(&self) -> impl Iterator<Item = (&FullJid, ConnId)> {
        self.local_sessions.iter().map(|(j, c)| (j, *c))
    }

    /// Registers `domain` as a local route whose stanzas go to `handler` after `filter_local_packet`
    /// (MongooseIM's `mongoose_router:register_route/2` with a packet handler), e.g. a MUC service.
    pub fn register_route(&mut self, domain: &str, handler: crate::local::PacketHandler) {
        self.local_routes.insert(domain.to_owned());
        self.services.insert(domain.to_owned(), handler);
    }

    /// The packet handler of the service at `domain`, if one registered.
    pub fn service(&self, domain: &str) -> Option<crate::local::PacketHandler> {
        self.services.get(domain).cloned()
    }

    /// Registers `f` to run each time the runtime collects store jobs (once per scheduler turn
    /// that did work): a module batching writes (the archive) queues its batch there.
    pub fn add_flusher(&mut self, f: Flusher) {
        self.flushers.push(f);
    }

    /// Sets what takes stanzas for remote domains arriving on this shard, their home shard (the
    /// federation runtime's outgoing streams).
    pub fn set_remote_handler(&mut self, handler: RemoteHandler) {
        self.remote = Some(handler);
    }

    /// Sets where messages to sessions on other nodes go (the cluster runtime).
    pub fn set_session_handler(&mut self, handler: RemoteSessionHandler) {
        self.remote_sessions = Some(handler);
    }

    /// Sets who hears of local session changes on their home shard (the cluster runtime).
    pub fn set_session_listener(&mut self, listener: SessionListener) {
        self.session_listener = Some(listener);
    }

    /// A message for a session on another node: to the remote session handler; without one (the
    /// node left the cluster) a stanza goes back to the session manager.
    fn send_remote_session(&mut self, session: SessionRef, msg: ConnMsg) {
        match self.remote_sessions.clone() {
            Some(h) => h(self, session, msg),
            None => match msg {
                ConnMsg::Deliver(acc) => self.reroute(acc),
                ConnMsg::Ext(m) => m.conn_gone(self),
                _ => {}
            },
        }
    }

    /// A stanza for a remote domain on that domain's home shard: to the remote handler, or
    /// `remote-server-not-found` when federation is not running.
    pub fn route_remote(&mut self, acc: Acc) {
        match self.remote.clone() {
            Some(handler) => handler(self, acc),
            None => self.bounce(
                &acc,
                crate::xmpp::StanzaErrorCondition::RemoteServerNotFound,
            ),
        }
    }

    /// Registers a new local connection and returns its id and mailbox.
    pub fn open_conn(&mut self) -> (ConnId, Rc<Mailbox>) {
        let id = ConnId(self.next_conn);
        self.next_conn += 1;
        let mb = Rc::new(Mailbox::new(self.mailbox_limit));
        self.conns.insert(id, mb.clone());
        self.metrics.connections.set(self.conns.len() as i64);
        (id, mb)
    }

    /// Forgets a local connection; what its mailbox still holds, and later deliveries to it, are
    /// re-routed by the session manager.
    pub fn close_conn(&mut self, conn: ConnId) {
        if let Some(mb) = self.conns.remove(&conn) {
            mb.close();
            while let Some(msg) = mb.pop() {
                self.conn_gone(conn, msg);
            }
            self.drain_to_route();
        }
        self.metrics.connections.set(self.conns.len() as i64);
    }

    /// A message for local connection `conn`, which is gone.
    fn conn_gone(&mut self, conn: ConnId, msg: ConnMsg) {
        match msg {
            ConnMsg::Deliver(acc) => self.reroute(acc),
            ConnMsg::Ext(m) => m.conn_gone(self),
            ConnMsg::Handled(seqs) => {
                // The session moved on (XEP-0198 resumption): its acknowledgements follow it.
                if let Some(&to) = self.moved.get(&conn) {
                    self.send_to_session(to, ConnMsg::Handled(seqs));
                }
            }
            _ => {}
        }
    }

    /// A local mailbox over its bound that the last deliveries filled, if any: the caller (a ring
    /// receiver, a connection about to read) waits for it before taking more input, so a recipient
    /// whose connection writes slower than its senders send slows them down (the ring fills, then the
    /// sender's outbox, then the sender's socket is no longer read).
    pub fn pressured(&mut self, except: Option<&Rc<Mailbox>>) -> Option<Rc<Mailbox>> {
        self.pressured.retain(|mb| mb.pressured());
        self.pressured
            .iter()
            .find(|mb| except.is_none_or(|e| !Rc::ptr_eq(mb, e)))
            .cloned()
    }

    /// The session of local connection `conn` now lives at `to` (XEP-0198 resumption): the
    /// acknowledgements of its client's stanzas still on their way follow it. Remembered for the
    /// last `MAX_MOVED` moves.
    pub fn moved_to(&mut self, conn: ConnId, to: SessionRef) {
        if self.moved.insert(conn, to).is_none() {
            self.moved_order.push_back(conn);
        }
        while self.moved_order.len() > MAX_MOVED {
            if let Some(old) = self.moved_order.pop_front() {
                self.moved.remove(&old);
            }
        }
    }

    /// Records that `jid` is bound on local connection `conn` (after the home shard accepted it).
    pub fn local_bind(&mut self, jid: FullJid, conn: ConnId) {
        self.local_sessions.insert(jid, conn);
        self.metrics.sessions.set(self.local_sessions.len() as i64);
    }

    /// Forgets the local binding of `jid`, if it is still `conn`'s.
    pub fn local_unbind(&mut self, jid: &FullJid, conn: ConnId) {
        if self.local_sessions.get(jid) == Some(&conn) {
            self.local_sessions.remove(jid);
            self.metrics.sessions.set(self.local_sessions.len() as i64);
        }
    }

    /// The local connection bound to the full JID `jid`, if any.
    pub fn local_session(&self, jid: &str) -> Option<ConnId> {
        self.local_sessions.get(jid).copied()
    }

    /// Asks every local connection to close with `cond` (server shutdown).
    pub fn close_all(&mut self, cond: crate::xmpp::StreamErrorCondition) {
        for mb in self.conns.values() {
            // Close is a control message: always accepted.
            let _ = mb.push(ConnMsg::Close(cond));
        }
    }

    /// Number of open local connections.
    pub fn conn_count(&self) -> usize {
        self.conns.len()
    }

    /// Session reference for a local connection.
    pub fn session_ref(&self, conn: ConnId) -> SessionRef {
        SessionRef {
            shard: self.id,
            conn,
        }
    }

    /// Mesh messages queued for other shards since the last call (with the acknowledgements
    /// released on this thread, see `hooks::handled`).
    pub fn take_outgoing(&mut self) -> Vec<(ShardId, ShardMsg)> {
        let mut out = Vec::new();
        self.take_outgoing_into(&mut out);
        out
    }

    /// [`Shard::take_outgoing`] into `into` (empty: its allocation becomes the next queue's, so a
    /// caller that hands the same buffer back allocates once).
    pub fn take_outgoing_into(&mut self, into: &mut Vec<(ShardId, ShardMsg)>) {
        self.send_handled();
        debug_assert!(into.is_empty(), "take_outgoing_into appends to nothing");
        std::mem::swap(&mut self.out, into);
    }

    /// Sends the XEP-0198 acknowledgements released on this thread to their connections: one
    /// message per local connection, one per other shard.
    fn send_handled(&mut self) {
        let done = crate::hooks::handled::take_done();
        if done.is_empty() {
            return;
        }
        // Grouped per connection here, so the receiving shard only hands them out.
        let mut by_conn: HashMap<SessionRef, Vec<u32>> = HashMap::new();
        for (session, seq) in done {
            by_conn.entry(session).or_default().push(seq);
        }
        let mut remote: HashMap<ShardId, Vec<(ConnId, Vec<u32>)>> = HashMap::new();
        for (session, seqs) in by_conn {
            if session.shard == self.id {
                self.deliver_local(session.conn, ConnMsg::Handled(seqs));
            } else if session.is_remote() {
                // A stanza from another node reached its end here: that node hears of it.
                self.send_remote_session(session, ConnMsg::Handled(seqs));
            } else {
                remote
                    .entry(session.shard)
                    .or_default()
                    .push((session.conn, seqs));
            }
        }
        for (shard, acks) in remote {
            self.out.push((shard, ShardMsg::Handled(acks)));
        }
    }

    /// Store jobs queued by handlers since the last call (the runtime runs them on the store pool and
    /// routes what they return with [`Shard::route_all`]).
    pub fn take_jobs(&mut self) -> Vec<KeyedJob> {
        // Modules that batch writes over a scheduler turn hand them over now.
        // Taken out while they run (a flusher gets `&mut self`); no allocation on this hot path.
        let flushers = std::mem::take(&mut self.flushers);
        for f in &flushers {
            f(self);
        }
        self.flushers = flushers;
        // Work of guards that died on this thread (`hooks::on_drop`) may queue jobs of its own.
        for work in crate::hooks::on_drop::take_pending() {
            work(self);
        }
        self.fx.take_jobs()
    }

    /// Takes back what a store job produced: runs its continuation, then routes its stanzas.
    pub fn job_done(&mut self, done: crate::hooks::JobDone) {
        if let Some(then) = done.then {
            then(self);
        }
        self.route_all(done.route);
        // Released here, on the shard, now that the job's write committed.
        drop(done.hold);
    }

    /// Routes stanzas produced off the shard.
    pub fn route_all(&mut self, accs: Vec<Acc>) {
        for acc in accs {
            crate::router::route(self, acc);
        }
        self.drain_to_route();
    }

    /// True when mesh messages wait in [`Shard::take_outgoing`].
    pub fn has_outgoing(&self) -> bool {
        !self.out.is_empty()
    }

    /// Sends a message to another shard, or handles it here when `to` is this shard.
    pub(crate) fn send_to_shard(&mut self, to: ShardId, msg: ShardMsg) {
        if to == self.id {
            self.handle_msg(msg);
        } else if to.0 & REMOTE_SHARD != 0 {
            // A module aimed work at a session on another node (its `session.shard`): there is no
            // such local shard; the work is dropped, as for a session that has gone.
            tracing::debug!(
                shard = self.id.0,
                "work for a remote session's shard dropped"
            );
        } else {
            self.out.push((to, msg));
        }
    }

    /// Delivers `acc` to each of `to`, full JIDs whose sessions live on shard `at` (see
    /// [`ShardMsg::Multicast`]): one mesh message for the lot when `at` is another shard.
    pub fn multicast(&mut self, at: ShardId, acc: Acc, to: std::sync::Arc<[FullJid]>) {
        if to.is_empty() {
            return;
        }
        // Sessions on another node (a cluster) are not bound here: each copy goes through the
        // session manager, which knows where each lives there.
        if at == self.id || at.0 & REMOTE_SHARD != 0 {
            self.multicast_here(acc, &to);
        } else {
            self.out.push((at, ShardMsg::Multicast(acc, to)));
        }
    }

    /// [`Shard::multicast`] on the recipients' shard: a copy per recipient with `to` set, into its
    /// connection's mailbox; a recipient no longer bound here (gone, resumed elsewhere) is left to
    /// the session manager, like any stanza to a full JID.
    fn multicast_here(&mut self, acc: Acc, to: &[FullJid]) {
        let Some((last, rest)) = to.split_last() else {
            return;
        };
        for jid in rest {
            self.deliver_copy(acc.fork(), jid);
        }
        self.deliver_copy(acc, last);
    }

    /// One copy of a multicast stanza to `jid`. A recipient of another server (a room's occupant
    /// who joined over s2s, noted at the shard its stream came in on) is routed there; the
    /// session manager only knows this server's users.
    fn deliver_copy(&mut self, mut acc: Acc, jid: &FullJid) {
        acc.stanza.set_to(jid.as_str());
        acc.to = crate::jid::Jid::from(jid.clone());
        match self.local_sessions.get(jid) {
            Some(&conn) => self.deliver_local(conn, ConnMsg::Deliver(acc)),
            None if !self.is_hosted(jid.domain()) => crate::router::route(self, acc),
            None => crate::sm::route(self, acc),
        }
    }

    /// Hands a message to a connection wherever it lives.
    pub(crate) fn send_to_session(&mut self, session: SessionRef, msg: ConnMsg) {
        if session.shard == self.id {
            self.deliver_local(session.conn, msg);
        } else if session.is_remote() {
            self.send_remote_session(session, msg);
        } else {
            self.out
                .push((session.shard, ShardMsg::Conn(session.conn, msg)));
        }
    }

    /// Puts a message in a local connection's mailbox. A stanza for a connection that is gone, or whose
    /// mailbox is over its byte bound (slow reader, now being closed), goes back to the session manager,
    /// which picks another resource or the offline path: nothing is dropped silently.
    fn deliver_local(&mut self, conn: ConnId, mut msg: ConnMsg) {
        // A stanza that asked where its recipient's session lives is answered once it is in the
        // mailbox, so what its sender's shard then sends straight here queues behind it.
        // Read before the push takes the message: the kind and entry time of a stanza.
        let (stanza, asked) = match &mut msg {
            ConnMsg::Deliver(acc) => (
                Some((acc.kind(), acc.entered)),
                acc.locate_for.take().map(|ask| (ask, acc.to.clone())),
            ),
            _ => (None, None),
        };
        let Some(mb) = self.conns.get(&conn) else {
            self.conn_gone(conn, msg);
            if let Some((ask, to)) = asked {
                self.rerouted_asking(conn, ask, to);
            }
            return;
        };
        let taken = match mb.push(msg) {
            Ok(()) => {
                self.stats.delivered += 1;
                if let Some((kind, entered)) = stanza {
                    self.metrics.stanza_out(kind, entered);
                }
                if mb.pressured() && !self.pressured.iter().any(|p| Rc::ptr_eq(p, mb)) {
                    self.pressured.push(mb.clone());
                }
                true
            }
            Err(MailboxFull(ConnMsg::Deliver(acc))) => {
                self.reroute(acc);
                false
            }
            Err(MailboxFull(_)) => false,
        };
        if let Some((ask, to)) = asked {
            if taken {
                let at = Some(self.session_ref(conn));
                self.answer_locate(ask, to, at);
            } else {
                self.rerouted_asking(conn, ask, to);
            }
        }
    }

    /// An asking stanza found its session gone and went back to the session manager: the answer
    /// goes through the recipient's home shard, behind the stanza, so that what waits for it on
    /// the asking shard (then sent through the home shard) cannot overtake it.
    fn rerouted_asking(&mut self, conn: ConnId, ask: Ask, to: crate::jid::Jid) {
        let Ok(jid) = to.try_into_full() else {
            return;
        };
        let session = self.session_ref(conn);
        crate::sm::drained(self, jid, session, ask, DrainCause::Rerouted);
    }

    /// Answers `ask`, a question where the session of `to` lives (see `sm::locations`): at `at`,
    /// or nowhere to go straight to.
    pub(crate) fn answer_locate(&mut self, ask: Ask, to: crate::jid::Jid, at: Option<SessionRef>) {
        let Ok(jid) = to.try_into_full() else {
            // Only stanzas to full JIDs ask.
            return;
        };
        let id = ask.id;
        self.send_to_shard(ask.by, ShardMsg::Located { jid, id, at });
    }

    /// `acc` will not reach a session (the mesh refused it): answers the shard that asked with it
    /// where its recipient's session lives, if one did.
    pub fn unlocated(&mut self, acc: &mut Acc) {
        if let Some(ask) = acc.locate_for.take() {
            self.answer_locate(ask, acc.to.clone(), None);
        }
    }

    /// Sends a stanza whose session could not take it back to the session manager, or, when its
    /// destination is not a hosted domain (an external component's or a remote one's connection
    /// is gone or full), through the router again: the connection now holding that domain gets
    /// it, or the router answers for it; it never reaches a user's offline storage.
    pub fn reroute(&mut self, mut acc: Acc) {
        self.stats.rerouted += 1;
        self.metrics.stanzas_rerouted.inc();
        acc.reroutes = acc.reroutes.saturating_add(1);
        let hosted = self.is_hosted(acc.to.domain());
        acc.note(
            self.id,
            crate::sm::STAGE,
            crate::explain::Outcome::Pass,
            |_| {
                Some(if hosted {
                    "the session is gone: back to the session manager".to_owned()
                } else {
                    "the connection is gone: back to the router".to_owned()
                })
            },
        );
        if acc.reroutes > 2 {
            if acc.ty() == crate::xml::StanzaType::Error {
                // Never answered: counted, so that a loss shows in the metrics.
                self.errors_dropped(1);
                tracing::debug!(
                    shard = self.id.0,
                    to = acc.to.as_str(),
                    "error stanza dropped: its recipient's sessions keep refusing it"
                );
                return;
            }
            // The recipient's sessions keep vanishing under us: answer instead of looping.
            self.bounce(
                &acc,
                crate::xmpp::StanzaErrorCondition::RecipientUnavailable,
            );
            return;
        }
        if hosted {
            crate::sm::route(self, acc);
        } else {
            crate::router::route(self, acc);
        }
    }

    /// Counts `n` error stanzas dropped (in the stats and `petrel_errors_dropped_total`).
    pub fn errors_dropped(&mut self, n: u64) {
        self.stats.errors_dropped += n;
        self.metrics.errors_dropped.inc_by(n);
    }

    /// Handles a message taken from the ring of shard `from`: now, or once what its sender's shard
    /// sent here straight before it was taken (see [`fence`]).
    #[inline]
    pub fn handle_from(&mut self, from: ShardId, msg: ShardMsg) {
        if !fence::used(self.shards) {
            return self.handle_msg(msg);
        }
        if let Some((sender, after)) = self.arrivals.check(from, self.id, &msg) {
            match self.arrivals.park(sender, after, msg) {
                Some(msg) => self.handle_msg(msg),
                None => return,
            }
        } else {
            self.handle_msg(msg);
        }
        if self.arrivals.parked() != 0 {
            for msg in self.arrivals.release(from) {
                self.handle_msg(msg);
            }
        }
    }

    /// One second passed (the runtime's timer): the route's per-second tables count it, and
    /// stanzas that waited too long behind a fence go.
    pub fn tick(&mut self) {
        self.home_paths.tick();
        self.locations.tick();
        let expired = self.arrivals.tick();
        if !expired.is_empty() {
            tracing::warn!(
                shard = self.id.0,
                stanzas = expired.len(),
                "stanzas waited too long for their sender's earlier ones; delivered"
            );
        }
        for msg in expired {
            self.handle_msg(msg);
        }
    }

    /// Handles a message that arrived over the mesh (or was addressed to this shard).
    pub fn handle_msg(&mut self, msg: ShardMsg) {
        match msg {
            ShardMsg::SmRoute(acc) => crate::sm::route(self, acc),
            ShardMsg::Remote(acc) => self.route_remote(acc),
            ShardMsg::Register {
                jid,
                session,
                authenticated,
            } => crate::sm::register(self, jid, session, authenticated),
            ShardMsg::Unregister { jid, session } => crate::sm::unregister(self, jid, session),
            ShardMsg::Conn(conn, msg) => self.deliver_local(conn, msg),
            ShardMsg::Run(f) => f(self),
            ShardMsg::Located { jid, id, at } => crate::sm::located(self, jid, id, at),
            ShardMsg::Forget { jid, session } => {
                let id = self.locations.forget(&jid, session);
                // Behind what this shard sent straight there (answered from the home shard).
                let ask = Ask { by: self.id, id };
                let drain = ShardMsg::Drain {
                    jid,
                    session,
                    ask,
                    cause: DrainCause::Forgot,
                };
                self.send_to_shard(session.shard, drain);
            }
            ShardMsg::Drain {
                jid,
                session,
                ask,
                cause,
            } => crate::sm::drained(self, jid, session, ask, cause),
            ShardMsg::Multicast(acc, to) => self.multicast_here(acc, &to),
            ShardMsg::Handled(acks) => {
                for (conn, seqs) in acks {
                    self.deliver_local(conn, ConnMsg::Handled(seqs));
                }
            }
        }
        self.drain_to_route();
    }

    /// Routes the stanzas handlers queued on the hook context.
    pub(crate) fn drain_to_route(&mut self) {
        // Tasks for other shards leave first, in the order handlers queued them.
        for (to, f) in std::mem::take(&mut self.fx.tasks) {
            self.send_to_shard(to, ShardMsg::Run(f));
        }
        // In the order handlers queued them (an IQ result before the pushes it causes), batch by
        // batch. Bounded: a handler reacting to its own output could loop forever; 65 536 generated
        // stanzas per step is far above any legitimate fan-out of one input (a presence broadcast to
        // a full roster plus its probes is a few thousand).
        let mut budget: usize = 65_536;
        while !self.fx.to_route.is_empty() {
            let batch = std::mem::take(&mut self.fx.to_route);
            let allowed = batch.len().min(budget);
            if allowed < batch.len() {
                tracing::warn!(
                    shard = self.id.0,
                    dropped = batch.len() - allowed,
                    "hook handlers generated too many stanzas; dropping the rest"
                );
            }
            budget -= allowed;
            for acc in batch.into_iter().take(allowed) {
                crate::router::route(self, acc);
            }
            if budget == 0 {
                self.fx.to_route.clear();
                break;
            }
        }
    }

    /// Sends `cond` back to the sender of `acc` (RFC 6120 §8.3), unless `acc` must not be answered.
    pub(crate) fn bounce(&mut self, acc: &Acc, cond: crate::xmpp::StanzaErrorCondition) {
        if let Some(reply) = acc.error_reply(cond, self.id) {
            self.fx.to_route.push(reply);
        }
    }

    /// Runs the `session_end` hook (every module forgets what it kept for the session), then
    /// routes what its handlers queued.
    pub fn session_end(&mut self, end: &mut crate::hooks::SessionEnd) {
        self.run_session_hook(|h| &h.session_end, end);
    }

    /// Runs `bind2_enable_features` for a session this shard's connection just bound.
    pub fn bind2_enable_features(&mut self, ev: &mut crate::hooks::Bind2Enable) {
        self.run_session_hook(|h| &h.bind2_enable_features, ev);
    }

    /// Runs a hook about one of this shard's connections, then routes what its handlers queued.
    fn run_session_hook<A>(
        &mut self,
        pick: impl Fn(&Hooks) -> &crate::hooks::Hook<A>,
        arg: &mut A,
    ) {
        let mut ctx = HookCtx::new(self.id, &mut self.fx, &mut self.ext);
        pick(&self.hooks).run(arg, &mut ctx);
        self.drain_to_route();
    }

    /// Runs a hook with a context bound to this shard.
    pub(crate) fn run_hook(
        &mut self,
        pick: impl Fn(&Hooks) -> &crate::hooks::Hook<Acc>,
        acc: &mut Acc,
    ) -> crate::hooks::HookResult {
        let mut ctx = HookCtx::new(self.id, &mut self.fx, &mut self.ext);
        let hook = pick(&self.hooks);
        if acc.traced() {
            hook.run_traced(acc, &mut ctx)
        } else {
            hook.run(acc, &mut ctx)
        }
    }
}
