//! Hooks and handlers (MongooseIM's `gen_hook`): per-shard registries of handlers ordered by priority.
//!
//! A run folds over the handlers in priority order (lowest first); any handler may stop it. Handlers are
//! synchronous and never do I/O inline: work that must store something is handed to the store pool, and
//! stanzas a handler wants to send are queued on the [`HookCtx`] and routed after the run.

mod acc;
pub mod clock;
pub mod commit;
pub mod events;
pub mod handled;
pub mod on_drop;

pub use acc::{
    Acc, AccData, CopyFor, Key, ACK_WANTED, ARCHIVED_FOR_RECIPIENT, ARCHIVE_STANZA_ID, COPY_FOR,
    HOLD_INPUT, RELEASE_INPUT, ROOM_REAL_JID, ROOM_REAL_JIDS_SHOWN, SENT_STANZA_ID,
};
pub use events::{Answer, Events, MessageRefused, NodeStopping};
pub use handled::Handled;
pub use on_drop::OnDrop;

use crate::jid::FullJid;
use crate::shard::{SessionRef, ShardId};

/// What a handler tells the run to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookResult {
    /// Go on with the next handler, and with the route after the last one.
    Continue,
    /// Stop here: later handlers do not run and the route drops the stanza.
    Stop,
}

/// A continuation a store job sends back to run on its shard.
pub type OnShard = Box<dyn FnOnce(&mut crate::shard::Shard) + Send>;

/// What a store job hands back to its shard: stanzas to route, and optionally a continuation run on
/// the shard with mutable access to it (to update module state kept in `Shard::ext`).
#[derive(Default)]
pub struct JobDone {
    /// Stanzas to route on the shard that queued the job.
    pub route: Vec<Acc>,
    /// Runs on that shard before the stanzas are routed.
    pub then: Option<OnShard>,
    /// Acknowledgements the job held until its write committed: released on the shard, after the
    /// stanzas are routed.
    pub hold: Vec<Handled>,
}

impl From<Vec<Acc>> for JobDone {
    fn from(route: Vec<Acc>) -> JobDone {
        JobDone {
            route,
            ..JobDone::default()
        }
    }
}

impl JobDone {
    /// Also releases `token` (if any) once the job's result is back on the shard.
    pub fn holding(mut self, token: Option<Handled>) -> JobDone {
        self.hold.extend(token);
        self
    }

    /// Also keeps `guard` (if any) until the job's result is back on the shard: it dies after the
    /// continuation, and its work runs at the shard's next flush, after the job's stanzas are
    /// routed. Carried in the continuation so that it never dies on a store thread, where its
    /// work would never run.
    pub fn keeping(mut self, guard: Option<OnDrop>) -> JobDone {
        let Some(guard) = guard else {
            return self;
        };
        let then = self.then.take();
        self.then = Some(Box::new(move |shard| {
            if let Some(then) = then {
                then(shard);
            }
            drop(guard);
        }));
        self
    }
}

/// Work run on the store pool, off the shard.
pub type StoreJob = Box<dyn FnOnce(&crate::store::Store) -> JobDone + Send>;

/// A store job and its ordering key: jobs with the same key run in queue order on one pool thread.
pub struct KeyedJob {
    /// Ordering key (e.g. a hash of the bare JID whose data the job touches); None = any thread.
    pub key: Option<u64>,
    /// The job.
    pub run: StoreJob,
}

/// What handlers leave for the route to carry out after the current step.
#[derive(Default)]
pub struct Effects {
    pub(crate) to_route: Vec<Acc>,
    pub(crate) jobs: Vec<KeyedJob>,
    pub(crate) tasks: Vec<(ShardId, OnShard)>,
}

impl Effects {
    /// Store jobs queued since the last call.
    pub fn take_jobs(&mut self) -> Vec<KeyedJob> {
        std::mem::take(&mut self.jobs)
    }
}

/// What a handler may touch besides its argument: the shard it runs on, stanzas to route afterwards
/// and store jobs.
pub struct HookCtx<'a> {
    /// Shard running the hook.
    pub shard: ShardId,
    /// Module state kept on this shard.
    pub ext: &'a mut crate::shard::Extensions,
    fx: &'a mut Effects,
}

impl<'a> HookCtx<'a> {
    /// A context on `shard` collecting into `fx`.
    pub fn new(
        shard: ShardId,
        fx: &'a mut Effects,
        ext: &'a mut crate::shard::Extensions,
    ) -> HookCtx<'a> {
        HookCtx { shard, ext, fx }
    }

    /// Routes `acc` (through the router chain) after the current step.
    pub fn route(&mut self, acc: Acc) {
        self.fx.to_route.push(acc);
    }

    /// Runs `f` on shard `to` (over the mesh, in order with this shard's other traffic to it).
    pub fn run_on(&mut self, to: ShardId, f: OnShard) {
        self.fx.tasks.push((to, f));
    }

    /// Runs `job` on the store pool; what it returns comes back to this shard (stanzas to route, a
    /// continuation). Jobs given the same `key` run in the order they were queued.
    pub fn store(
        &mut self,
        key: Option<u64>,
        job: impl FnOnce(&crate::store::Store) -> JobDone + Send + 'static,
    ) {
        self.fx.jobs.push(KeyedJob {
            key,
            run: Box::new(job),
        });
    }
}

/// A hook handler on argument type `A`.
pub type Handler<A> = Box<dyn Fn(&mut A, &mut HookCtx<'_>) -> HookResult>;

/// One hook: handlers sorted by priority.
pub struct Hook<A> {
    name: &'static str,
    handlers: Vec<(i32, &'static str, Handler<A>)>,
}

impl<A> Hook<A> {
    /// An empty hook called `name` (the MongooseIM hook name).
    pub fn new(name: &'static str) -> Hook<A> {
        Hook {
            name,
            handlers: Vec::new(),
        }
    }

    /// The hook's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Adds a handler for `module` at `priority` (lower runs first; equal priorities keep insertion order).
    pub fn add(
        &mut self,
        priority: i32,
        module: &'static str,
        handler: impl Fn(&mut A, &mut HookCtx<'_>) -> HookResult + 'static,
    ) {
        let at = self.handlers.partition_point(|(p, _, _)| *p <= priority);
        self.handlers
            .insert(at, (priority, module, Box::new(handler)));
    }

    /// Number of handlers.
    pub fn len(&self) -> usize {
        self.handlers.len()
    }

    /// True when no handler is registered.
    pub fn is_empty(&self) -> bool {
        self.handlers.is_empty()
    }

    /// Runs the handlers in order until one stops.
    #[inline]
    pub fn run(&self, arg: &mut A, ctx: &mut HookCtx<'_>) -> HookResult {
        for (_, _, h) in &self.handlers {
            if h(arg, ctx) == HookResult::Stop {
                return HookResult::Stop;
            }
        }
        HookResult::Continue
    }
}

impl Hook<Acc> {
    /// [`Hook::run`] for a stanza being explained: each handler's verdict becomes a step of its
    /// trace, under the name it was registered with (a hook without handlers leaves one step).
    pub fn run_traced(&self, acc: &mut Acc, ctx: &mut HookCtx<'_>) -> HookResult {
        use crate::explain::Outcome;
        if self.handlers.is_empty() {
            acc.note(ctx.shard, self.name, Outcome::Ok, |_| {
                Some("no handlers".to_owned())
            });
        }
        for (_, module, h) in &self.handlers {
            let r = h(acc, ctx);
            let outcome = match r {
                HookResult::Continue => Outcome::Ok,
                HookResult::Stop => Outcome::Stop,
            };
            acc.note_handler(ctx.shard, self.name, module, outcome);
            if r == HookResult::Stop {
                return HookResult::Stop;
            }
        }
        HookResult::Continue
    }
}

/// A session-level event, argument of the session hooks.
#[derive(Debug, Clone)]
pub struct SessionEvent {
    /// The session's full JID.
    pub jid: FullJid,
    /// Where the session lives.
    pub session: SessionRef,
    /// Priority for `user_available` (None for the others).
    pub priority: Option<i8>,
    /// For `sm_remove_connection`: the session did not end, it moved to this connection (an
    /// XEP-0198 resumption); `sm_register_connection` runs for it next. Per-session state a module
    /// keeps by connection follows it.
    pub moved_to: Option<SessionRef>,
}

/// Why a connection lets go of its session (argument of [`Hooks::session_end`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEndKind {
    /// The session is over (stream closed, connection lost, replaced by a conflicting bind).
    Closed,
    /// The connection died but the session waits for an XEP-0198 resumption: only per-connection
    /// state goes (what the connection held back), the session's own state stays.
    Detached,
    /// The session was resumed on a connection of another shard: state kept on this shard for it
    /// is forgotten here (or sent after it).
    MovedTo(SessionRef),
}

/// A connection letting go of its session, on the connection's shard: every module forgets or
/// hands over what it kept for the session (the core names no module).
#[derive(Debug)]
pub struct SessionEnd {
    /// The session's full JID.
    pub jid: FullJid,
    /// Where the session lived.
    pub session: SessionRef,
    /// Why.
    pub kind: SessionEndKind,
    /// For a [`SessionEndKind::Closed`] session that was available: the `unavailable` presence the
    /// route broadcasts for it (handlers may add scratch values, e.g. directed-presence targets).
    pub unavailable: Option<Acc>,
    /// Stanzas a handler held back for the connection and now gives up: a detached session keeps
    /// them for its resumption, a closed one routes those worth it again (`sm::worth_rerouting`;
    /// a handler drops what must not be).
    pub held: Vec<Acc>,
}

/// A session bound by a Bind 2 request (XEP-0386) and the features it asked to enable (maybe
/// none), run on the connection's shard once the session is bound (argument of
/// [`Hooks::bind2_enable_features`]). Handlers act on the requests they know (Message Carbons'
/// `<enable/>`, CSI's `<inactive/>`) and ignore the rest, or on the bind itself (offline storage).
#[derive(Debug)]
pub struct Bind2Enable {
    /// The session's full JID.
    pub jid: FullJid,
    /// Where the session lives.
    pub session: SessionRef,
    /// The child elements of `<bind/>` other than `<tag/>` and XEP-0198 `<enable/>` (which the
    /// stream handles itself).
    pub requests: Vec<crate::xml::Element>,
}

/// A stanza routed to a session whose connection is gone while it waits for an XEP-0198 resumption:
/// the session buffers it unacknowledged (argument of [`Hooks::unacknowledged_message`]).
#[derive(Debug)]
pub struct UnackedMessage {
    /// The session's full JID.
    pub jid: FullJid,
    /// The stanza (after `user_receive_*`); handlers may add scratch values, e.g. to mark it
    /// handled when it comes back to `offline_message` at the session's end.
    pub acc: Acc,
}

/// Every hook of the route, by the seed's (MongooseIM's) names. One instance per shard.
pub struct Hooks {
    /// Step 2: every stanza a client sends.
    pub user_send_packet: Hook<Acc>,
    /// Step 2: messages a client sends.
    pub user_send_message: Hook<Acc>,
    /// Step 2: presences a client sends.
    pub user_send_presence: Hook<Acc>,
    /// Step 2: IQs a client sends.
    pub user_send_iq: Hook<Acc>,
    /// Step 2: other top-level elements a client sends.
    pub user_send_xmlel: Hook<Acc>,
    /// A room's groupchat message on its way to the occupants (MongooseIM's `filter_room_packet`;
    /// run by the MUC service on the room's home shard; the archive stamps and stores it).
    pub filter_room_packet: Hook<Acc>,
    /// Step 3: the global filter run by the `global` routing module.
    pub filter_packet: Hook<Acc>,
    /// Step 4: every locally delivered stanza.
    pub filter_local_packet: Hook<Acc>,
    /// Step 6: no resource can take the stanza (MongooseIM's `offline_message_hook`, now `offline_message`).
    pub offline_message: Hook<Acc>,
    /// Step 7: every stanza delivered to a client.
    pub user_receive_packet: Hook<Acc>,
    /// Step 7: messages delivered to a client.
    pub user_receive_message: Hook<Acc>,
    /// Step 7: presences delivered to a client.
    pub user_receive_presence: Hook<Acc>,
    /// Step 7: IQs delivered to a client.
    pub user_receive_iq: Hook<Acc>,
    /// Step 7: other elements delivered to a client.
    pub user_receive_xmlel: Hook<Acc>,
    /// Step 7: last hook before the socket (CSI, stream management).
    pub xmpp_presend_element: Hook<Acc>,
    /// A session registered with the session manager (run on the home shard).
    pub sm_register_connection: Hook<SessionEvent>,
    /// A session left the session manager (run on the home shard).
    pub sm_remove_connection: Hook<SessionEvent>,
    /// A session became available (initial presence), or its negative priority rose to zero or
    /// more (it takes the bare JID's messages from now on); home shard.
    pub user_available: Hook<SessionEvent>,
    /// A session became unavailable (home shard).
    pub unset_presence: Hook<SessionEvent>,
    /// A connection lets go of its session (the connection's shard; MongooseIM runs
    /// `sm_remove_connection` and `unset_presence` for this from the c2s process).
    pub session_end: Hook<SessionEnd>,
    /// A detached, resumable session buffered a stanza (the connection's shard; MongooseIM's
    /// `unacknowledged_message`, run by the stream management module).
    pub unacknowledged_message: Hook<UnackedMessage>,
    /// A Bind 2 request bound a session, with the features it asked for (the connection's shard,
    /// right after binding; MongooseIM's `bind2_enable_features`).
    pub bind2_enable_features: Hook<Bind2Enable>,
}

impl Default for Hooks {
    fn default() -> Self {
        Hooks {
            user_send_packet: Hook::new("user_send_packet"),
            user_send_message: Hook::new("user_send_message"),
            user_send_presence: Hook::new("user_send_presence"),
            user_send_iq: Hook::new("user_send_iq"),
            user_send_xmlel: Hook::new("user_send_xmlel"),
            filter_packet: Hook::new("filter_packet"),
            filter_room_packet: Hook::new("filter_room_packet"),
            filter_local_packet: Hook::new("filter_local_packet"),
            offline_message: Hook::new("offline_message"),
            user_receive_packet: Hook::new("user_receive_packet"),
            user_receive_message: Hook::new("user_receive_message"),
            user_receive_presence: Hook::new("user_receive_presence"),
            user_receive_iq: Hook::new("user_receive_iq"),
            user_receive_xmlel: Hook::new("user_receive_xmlel"),
            xmpp_presend_element: Hook::new("xmpp_presend_element"),
            sm_register_connection: Hook::new("sm_register_connection"),
            sm_remove_connection: Hook::new("sm_remove_connection"),
            user_available: Hook::new("user_available"),
            unset_presence: Hook::new("unset_presence"),
            session_end: Hook::new("session_end"),
            unacknowledged_message: Hook::new("unacknowledged_message"),
            bind2_enable_features: Hook::new("bind2_enable_features"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handlers_run_in_priority_order_and_stop() {
        let mut hook: Hook<Vec<i32>> = Hook::new("t");
        hook.add(50, "b", |v, _| {
            v.push(50);
            HookResult::Continue
        });
        hook.add(10, "a", |v, _| {
            v.push(10);
            HookResult::Continue
        });
        hook.add(50, "c", |v, _| {
            v.push(51);
            HookResult::Stop
        });
        hook.add(90, "d", |v, _| {
            v.push(90);
            HookResult::Continue
        });
        let mut fx = Effects::default();
        let mut ext = crate::shard::Extensions::default();
        let mut ctx = HookCtx::new(ShardId(0), &mut fx, &mut ext);
        let mut seen = Vec::new();
        assert_eq!(hook.run(&mut seen, &mut ctx), HookResult::Stop);
        assert_eq!(seen, vec![10, 50, 51]);
    }
}
