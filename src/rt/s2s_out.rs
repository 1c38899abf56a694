//! The glommio driver of one outgoing s2s stream (local domain -> remote domain), on the remote
//! domain's home shard: resolve, connect to the addresses in order, run `S2sOut`; once ready it
//! pulls the stanzas waiting in the table (while the stream has room) and the dialback
//! verifications asked of the remote, and ends when the stream closes, fails or goes idle.

use std::rc::Rc;
use std::time::Instant;

use ahash::HashMap;
use glommio::net::TcpStream;

use super::s2s::{answer, OutTask, S2sRt, Verify};
use super::s2s_dns::Resolution;
use crate::federation::table::{Pair, State};
use crate::federation::targets::static_target;
use crate::s2s::{S2sOut, S2sOutEvent, S2sOutFailure};
use crate::xmpp::StanzaErrorCondition;

/// How one connection attempt ended.
enum End {
    /// Failed: what waits bounces with this.
    Failed(StanzaErrorCondition),
    /// Closed without failing (idle, or the remote closed cleanly).
    Closed,
    /// The pair failed meanwhile (timeout) or a newer task took over.
    Gone,
}

/// Runs the stream of `pair` until nothing is left for it.
pub(super) async fn run(rt: Rc<S2sRt>, pair: Pair, task: Rc<OutTask>) {
    // glommio polls a task it spawns right away, inside the spawner, which holds the shard (the
    // route started this stream): with a cached DNS answer the failure path would borrow the
    // shard again and panic. The body starts at the next scheduler turn.
    futures_lite::future::yield_now().await;
    loop {
        match attempt(&rt, &pair, &task).await {
            End::Failed(cond) => {
                if rt.owns(&pair, &task) {
                    rt.fail(&pair, cond);
                }
                break;
            }
            End::Closed => {
                // Stanzas that arrived meanwhile: a new stream.
                // Not at shutdown: what still waits then is lost with the process.
                if !rt.owns(&pair, &task) || rt.closing.get() || !rt.closed(&pair) {
                    break;
                }
            }
            End::Gone => break,
        }
    }
    rt.task_ended(&pair, &task);
}

async fn attempt(rt: &Rc<S2sRt>, pair: &Pair, task: &Rc<OutTask>) -> End {
    // A close asked of the previous stream (idle, stalled) is not this one's; shutdown's stays.
    if !rt.closing.get() {
        task.close.set(false);
    }
    rt.table.borrow_mut().set_state(pair, State::Resolving);
    let fixed = rt.shared.address.get(&pair.remote).map(static_target);
    let found = rt.shared.dns.resolve(&pair.remote, fixed).await;
    if !rt.owns(pair, task) {
        return End::Gone;
    }
    let endpoints = match found {
        Resolution::Found(e) => e,
        Resolution::NotFound => return End::Failed(StanzaErrorCondition::RemoteServerNotFound),
        Resolution::Busy => return End::Failed(StanzaErrorCondition::RemoteServerTimeout),
    };
    rt.table.borrow_mut().set_state(pair, State::Connecting);
    let timeout = rt.shared.limits.connect_timeout;
    let mut connected = None;
    for e in endpoints {
        match TcpStream::connect_timeout(e.addr, timeout).await {
            Ok(s) => {
                connected = Some((s, e));
                break;
            }
            Err(err) => {
                tracing::debug!(remote = pair.remote, addr = %e.addr, error = %err, "s2s: connect failed")
            }
        }
        if !rt.owns(pair, task) {
            return End::Gone;
        }
    }
    if !rt.owns(pair, task) {
        return End::Gone;
    }
    // Every address refused or unreachable.
    let Some((mut stream, e)) = connected else {
        return End::Failed(StanzaErrorCondition::RemoteServerNotFound);
    };
    let _ = stream.set_nodelay(true);
    rt.table.borrow_mut().set_state(pair, State::Negotiating);
    let now = Instant::now();
    let (local, remote) = (pair.local.clone(), pair.remote.clone());
    let mut out = if e.direct_tls {
        S2sOut::new_direct_tls(rt.shared.out_direct.clone(), local, remote, now)
    } else {
        S2sOut::new(rt.shared.out.clone(), local, remote, now)
    };
    tracing::debug!(local = pair.local, remote = pair.remote, addr = %e.addr, "s2s: connected");
    let mut asked: HashMap<String, Vec<Verify>> = HashMap::default();
    let mut end: Option<End> = None;
    let mut ready = false;
    let mut sent = Sent::default();
    let total = super::s2s_io::pump(
        &mut out,
        &mut stream,
        |out, total| {
            let progressed = sent.written(out, total);
            step(
                rt, pair, task, out, &mut asked, &mut end, &mut ready, &mut sent, progressed,
            )
        },
        |cx| task.signal.poll(cx),
        // The remote writes little here (verification answers, stream features): always read.
        |_| true,
    )
    .await;
    sent.written(&mut out, total);
    // What the socket never took goes first on the pair's next stream (or is answered with the
    // pair's failure): the remote never got it.
    if !sent.0.is_empty() {
        tracing::debug!(
            local = pair.local,
            remote = pair.remote,
            stanzas = sent.0.len(),
            "s2s: stanzas the socket never took wait for the next stream"
        );
        let back = std::mem::take(&mut sent.0)
            .into_iter()
            .map(|acc| {
                let len = acc.stanza.bytes().len();
                (acc, len)
            })
            .collect();
        if let Err(lost) = rt.table.borrow_mut().put_back(pair, back) {
            if let Some(ctx) = rt.ctx() {
                let mut shard = ctx.shard.borrow_mut();
                for acc in lost {
                    shard.bounce(&acc, StanzaErrorCondition::RemoteServerTimeout);
                }
                shard.drain_to_route();
            }
        }
    }
    // Verifications still unanswered: the remote cannot confirm them.
    if let Some(ctx) = rt.ctx() {
        let mut shard = ctx.shard.borrow_mut();
        for v in asked.into_values().flatten() {
            answer(&mut shard, v, None);
        }
        drop(shard);
        ctx.flush();
    }
    end.unwrap_or(End::Failed(StanzaErrorCondition::RemoteServerNotFound))
}

/// The stanzas pushed to the stream that its socket has not taken yet, oldest first (the stream
/// keeps where each ends: `S2sOut::wire_written`), and how many bytes the socket took in all.
#[derive(Default)]
struct Sent(std::collections::VecDeque<crate::hooks::Acc>, u64);

impl Sent {
    /// The socket took `total` bytes: the stanzas wholly among them reached the remote. True when
    /// it took some since the last call.
    fn written(&mut self, out: &mut S2sOut, total: u64) -> bool {
        let n = out.wire_written(total);
        self.0.drain(..n);
        debug_assert_eq!(self.0.len(), out.unwritten());
        let progressed = total > self.1;
        self.1 = total;
        progressed
    }
}

/// One turn: the stream's events, then what waits in the table.
#[allow(clippy::too_many_arguments)] // the driver's state, borrowed apart for the byte loop
fn step(
    rt: &Rc<S2sRt>,
    pair: &Pair,
    task: &OutTask,
    out: &mut S2sOut,
    asked: &mut HashMap<String, Vec<Verify>>,
    end: &mut Option<End>,
    ready: &mut bool,
    sent: &mut Sent,
    progressed: bool,
) {
    let Some(ctx) = rt.ctx() else {
        out.close(None);
        return;
    };
    while let Some(ev) = out.poll_event() {
        match ev {
            S2sOutEvent::Ready { method } => {
                tracing::info!(
                    local = pair.local,
                    remote = pair.remote,
                    ?method,
                    "s2s: outgoing stream ready"
                );
                rt.authenticated(false, method);
                // A task that lost its pair (timed out, replaced) must not mark the new link ready.
                if rt.owns(pair, task) {
                    rt.table.borrow_mut().ready(pair, Instant::now());
                }
                *ready = true;
            }
            S2sOutEvent::Verified { id, valid } => {
                let mut shard = ctx.shard.borrow_mut();
                for v in asked.remove(&id).unwrap_or_default() {
                    answer(&mut shard, v, Some(valid));
                }
            }
            S2sOutEvent::VerifyFailed { id } => {
                let mut shard = ctx.shard.borrow_mut();
                for v in asked.remove(&id).unwrap_or_default() {
                    answer(&mut shard, v, None);
                }
            }
            S2sOutEvent::Closed { reason } => {
                tracing::info!(local = pair.local, remote = pair.remote, %reason, "s2s: outgoing stream closed");
                *end = Some(match reason {
                    S2sOutFailure::LocalClose => End::Closed,
                    r if *ready && r.leaves_remote_reachable() => End::Closed,
                    r => End::Failed(r.bounce_condition()),
                });
            }
        }
    }
    if out.is_closed() {
        ctx.flush();
        return;
    }
    if !rt.owns(pair, task) || task.close.take() {
        out.close(None);
        ctx.flush();
        return;
    }
    let verifies = rt.table.borrow_mut().take_verifies(pair);
    for v in verifies {
        match out.request_verify(&v.id, &v.key, Instant::now()) {
            Ok(()) => asked.entry(v.id.clone()).or_default().push(v),
            Err(_) => answer(&mut ctx.shard.borrow_mut(), v, None),
        }
    }
    if out.is_ready() {
        let now = Instant::now();
        let stanzas = rt.table.borrow_mut().take(pair, now, out.room());
        for acc in stanzas {
            let pushed = if acc.stanza.xmlns() == Some(crate::xmpp::ns::CLIENT) {
                // A client's explicit namespace would put the stanza outside `jabber:server`.
                let mut stanza = acc.stanza.clone();
                stanza.remove_attr("xmlns");
                out.push_stanza(stanza.bytes())
            } else {
                out.push_stanza(acc.stanza.bytes())
            };
            match pushed {
                Ok(()) => sent.0.push_back(acc),
                // The batch fits `room()`: only a stream closing meanwhile refuses.
                Err(_) => ctx
                    .shard
                    .borrow_mut()
                    .bounce(&acc, StanzaErrorCondition::RemoteServerTimeout),
            }
        }
        // What a stall is judged on (`OutTable::tick`): the socket's progress, and whether
        // stanzas pushed to the stream (those just pushed too) still wait for it. The byte loop
        // steps again whenever the socket takes bytes, so a report is never left stale by them.
        rt.table
            .borrow_mut()
            .wire(pair, now, progressed, !sent.0.is_empty());
        ctx.shard.borrow_mut().drain_to_route();
    }
    ctx.flush();
}
