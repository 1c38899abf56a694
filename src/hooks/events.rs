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
