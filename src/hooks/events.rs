//! Module events: a module announces what it did (`private_stored`, `vcard_stored`, a PEP
//! publication) and other modules listen, without either naming the other in the core. One
//! [`Events<E>`] per event type lives in `Shard::ext`; listeners get the shard, so they may route,
//! queue store jobs or run work on other shards.

use std::rc::Rc;

use crate::shard::Shard;

/// The node is stopping gracefully (SIGTERM): emitted on every shard before its sessions get
/// `<system-shutdown/>`, while streams to other servers and cluster nodes still carry what a
/// listener sends (e.g. the rooms' status 332 to occupants elsewhere).
#[derive(Debug, Clone, Copy)]
pub struct NodeStopping;

/// A message to a local user was refused after the archive kept it for that user (the user blocks
/// its sender, offline storage is full): its sender got an error, so the user's archive drops it
/// (XEP-0313 §7.1). Emitted by whoever refuses, with the id the message carries under
/// [`crate::hooks::ARCHIVED_FOR_RECIPIENT`].
#[derive(Debug, Clone)]
pub struct MessageRefused {
    /// The recipient, whose archive kept the message.
    pub owner: crate::jid::BareJid,
    /// The message's id in that archive.
    pub archived: i64,
}

impl MessageRefused {
    /// The event for `acc`, a refused message, if an archive kept it for its recipient.
    pub fn of(acc: &crate::hooks::Acc) -> Option<MessageRefused> {
        let &archived = acc.get(crate::hooks::ARCHIVED_FOR_RECIPIENT)?;
        Some(MessageRefused {
            owner: acc.to.bare(),
            archived,
        })
    }

    /// Tells the listeners on `shard` that `acc` was refused (nothing if no archive kept it).
    pub fn emit(shard: &mut Shard, acc: &crate::hooks::Acc) {
        if let Some(ev) = MessageRefused::of(acc) {
            Events::<MessageRefused>::emit(shard, &ev);
        }
    }

    /// [`MessageRefused::emit`] from a hook handler, on the handler's shard once it returns.
    pub fn emit_later(ctx: &mut crate::hooks::HookCtx<'_>, acc: &crate::hooks::Acc) {
        if let Some(ev) = MessageRefused::of(acc) {
            let on = ctx.shard;
            ctx.run_on(
                on,
                Box::new(move |shard: &mut Shard| Events::<MessageRefused>::emit(shard, &ev)),
            );
        }
    }
}

/// The answer to the request whose change an event announces, for listeners that mirror the
/// change elsewhere (another shard, a store job): one takes it ([`Answer::take`]) and routes it once
/// its mirror is in place, so that a client reading the answer finds the mirror too (a vCard's
/// avatar in PEP, private bookmarks in XEP-0402). Untaken, the emitter routes it after the
/// listeners ran ([`Answer::route_untaken`]).
#[derive(Debug, Default)]
pub struct Answer(std::cell::RefCell<Option<crate::hooks::Acc>>);

impl Answer {
    /// Holds `answer` for the listeners.
    pub fn new(answer: crate::hooks::Acc) -> Answer {
        Answer(std::cell::RefCell::new(Some(answer)))
    }

    /// The answer, if no listener took it yet: the taker must route it.
    pub fn take(&self) -> Option<crate::hooks::Acc> {
        self.0.borrow_mut().take()
    }

    /// Routes the answer if no listener took it (the emitter, after [`Events::emit`]).
    pub fn route_untaken(&self, shard: &mut Shard) {
        if let Some(a) = self.take() {
            crate::router::route(shard, a);
        }
    }
}

/// A listener of events of type `E`.
pub type Listener<E> = Rc<dyn Fn(&mut Shard, &E)>;

/// The listeners of one event type on a shard, by priority (lower first).
pub struct Events<E> {
    listeners: Rc<[(i32, &'static str, Listener<E>)]>,
}

impl<E> Default for Events<E> {
    fn default() -> Self {
        Events {
            listeners: Rc::from(Vec::new()),
        }
    }
}

impl<E: 'static> Events<E> {
    /// Adds `module`'s listener for `E` on `shard` (call from the module's `start`).
    pub fn listen(
        shard: &mut Shard,
        priority: i32,
        module: &'static str,
        f: impl Fn(&mut Shard, &E) + 'static,
    ) {
        let ev = shard.ext.get_or_default::<Events<E>>();
        let mut v = ev.listeners.to_vec();
        let at = v.partition_point(|(p, _, _)| *p <= priority);
        v.insert(at, (priority, module, Rc::new(f)));
        ev.listeners = v.into();
    }

    /// Whether any module listens (an emitter may skip building the event).
    pub fn heard(shard: &Shard) -> bool {
        shard
            .ext
            .get::<Events<E>>()
            .is_some_and(|e| !e.listeners.is_empty())
    }

    /// Runs every listener of `E` on `shard` with `event`. The list is taken out of `ext` first, so
    /// a listener may itself register listeners or emit other events.
    pub fn emit(shard: &mut Shard, event: &E) {
        let Some(listeners) = shard.ext.get::<Events<E>>().map(|e| e.listeners.clone()) else {
            return;
        };
        for (_, _, f) in listeners.iter() {
            f(shard, event);
        }
    }
}
