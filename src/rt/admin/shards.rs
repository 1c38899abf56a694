//! Work the admin API runs on every shard: a closure sent over the mesh (a control message, never
//! refused by the outbox bound), its result back over a one-shot slot.

use std::rc::Rc;
use std::sync::Arc;

use crate::admin::shapes::ShardStats;
use crate::jid::{BareJid, FullJid};
use crate::rt::ShardCtx;
use crate::shard::{ConnMsg, Shard, ShardId, ShardMsg};
use crate::store::oneshot;
use crate::xmpp::StreamErrorCondition;

/// Runs `f` on every shard (this one first) and gathers the results; a shard that is gone
/// (shutting down) gives none.
pub(super) async fn on_every_shard<T: Send + 'static>(
    ctx: &Rc<ShardCtx>,
    f: impl Fn(&mut Shard) -> T + Send + Sync + 'static,
) -> Vec<T> {
    let f = Arc::new(f);
    let (me, n) = {
        let s = ctx.shard.borrow();
        (s.id, s.shards)
    };
    let mut waits = Vec::with_capacity(n);
    for i in 0..n {
        let to = ShardId(i as u16);
        if to == me {
            continue;
        }
        let (tx, rx) = oneshot::channel();
        let f = f.clone();
        let msg = ShardMsg::Run(Box::new(move |s: &mut Shard| tx.send(f(s))));
        if ctx.mesh.send(to, msg).is_ok() {
            waits.push(rx);
        }
    }
    let mine = {
        let mut s = ctx.shard.borrow_mut();
        let r = f(&mut s);
        s.drain_to_route();
        r
    };
    ctx.flush();
    let mut out = vec![mine];
    // A shard held up (its ring waiting behind a slow reader) must not hang the request: it is
    // left out of the answer after a while (and logged).
    let deadline = std::time::Instant::now() + SHARD_ANSWER;
    for rx in waits {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match crate::rt::http::within(left, rx).await {
            Some(answer) => out.extend(answer),
            None => tracing::warn!("admin: a shard did not answer in time; left out"),
        }
    }
    out
}

/// How long an admin request waits for the other shards.
const SHARD_ANSWER: std::time::Duration = std::time::Duration::from_secs(5);

/// On the home shard of `bare`: closes its sessions the session manager holds whose full JID
/// matches, wherever they live — including those parked by stream management (XEP-0198), which no
/// shard lists as local while their client is away. Returns how many. Elsewhere: 0.
pub(super) fn kick_home(
    s: &mut Shard,
    bare: &BareJid,
    which: impl Fn(&FullJid) -> bool,
    text: &'static str,
) -> usize {
    crate::sm::close_sessions(s, bare, which, || {
        ConnMsg::CloseText(StreamErrorCondition::PolicyViolation, text)
    })
}

/// This shard's counters.
pub(super) fn stats(s: &mut Shard) -> ShardStats {
    ShardStats {
        shard: s.id.0,
        connections: s.conn_count(),
        sessions: s.local_sessions().count(),
        routed: s.stats.routed,
        delivered: s.stats.delivered,
    }
}
