//! Module work run on a chosen shard (`run_on`), ordered with the other mesh traffic from the shard
//! that sends it: a task sent by the home shard right after a session's bind answer is run on the
//! session's shard before any stanza the home shard routes to that session later.
//!
//! The task travels inside an internal accumulator over `ShardMsg::SmRoute` and is taken out at the
//! top of `sm::route` on the destination shard; it never reaches a client. Caveat: being carried as a
//! stanza, it is subject to the mesh outbox bound (a saturated outbox refuses it, and the refusal is
//! logged); a dedicated control message in `ShardMsg` would lift that.

use std::cell::RefCell;

use crate::hooks::Acc;
use crate::jid::{BareJid, Jid};
use crate::shard::{Shard, ShardId, ShardMsg};
use crate::xml::{Element, Stanza};

/// Scratch key of the task in its carrier accumulator.
const KEY: &str = "sm.task";
/// Namespace of the carrier element (never written to a socket).
const NS_TASK: &str = "urn:xmpp:petrel:internal:task";

/// A closure run with the destination shard.
pub type TaskFn = Box<dyn FnOnce(&mut Shard) + Send>;

/// A task and the shard it must run on.
pub struct ShardTask {
    shard: ShardId,
    run: RefCell<Option<TaskFn>>,
}

/// Runs `f` on shard `to`: now when `to` is this shard, otherwise over the mesh.
pub fn run_on(shard: &mut Shard, to: ShardId, user: &BareJid, f: TaskFn) {
    if to == shard.id {
        f(shard);
        return;
    }
    let acc = task_acc(to, user, shard.id, f);
    shard.send_to_shard(to, ShardMsg::SmRoute(acc));
}

/// A carrier for `f`, for hook handlers (which only have `HookCtx::route`): routed like a stanza to
/// `user`, it runs `f` on shard `to` when it reaches the session manager.
pub fn task_acc(to: ShardId, user: &BareJid, from: ShardId, f: TaskFn) -> Acc {
    let stanza = Stanza::from_element(&Element::new("task", NS_TASK));
    let server = Jid::from(BareJid::domain_only(user.domain()).unwrap_or_else(|_| user.clone()));
    let mut acc = Acc::new(stanza, server, Jid::from(user.clone()), from);
    acc.put(
        KEY,
        ShardTask {
            shard: to,
            run: RefCell::new(Some(f)),
        },
    );
    acc
}

/// Runs or forwards the task `acc` carries; gives `acc` back when it is an ordinary stanza.
pub(super) fn intercept(shard: &mut Shard, acc: Acc) -> Option<Acc> {
    let Some(task) = acc.get::<ShardTask>(KEY) else {
        return Some(acc);
    };
    if task.shard != shard.id {
        let to = task.shard;
        shard.send_to_shard(to, ShardMsg::SmRoute(acc));
        return None;
    }
    let f = task.run.borrow_mut().take();
    if let Some(f) = f {
        f(shard);
    }
    None
}
