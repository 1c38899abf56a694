//! The glommio driver of one incoming s2s connection: bytes to `S2sIn`, its stanzas into the route
//! on this shard (incoming stanzas run no `user_send` hooks: they come from another server), its
//! dialback verifications over the mesh to the remote domain's home shard, whose outgoing stream
//! asks the remote's authoritative server; the answer comes back through this connection's
//! mailbox.

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use super::address_slots::AddressSlots;
use super::s2s::{verify_on_home, S2sExt, Verify, MAX_INCOMING};
use super::ShardCtx;
use crate::hooks::Acc;
use crate::s2s::{S2sConfig, S2sIn, S2sInEvent};
use crate::shard::{home_shard_of, ConnMsg, ShardMsg};
use crate::xmpp::StanzaErrorCondition;

thread_local! {
    /// Incoming s2s connections open on this shard (one shard per thread).
    static OPEN: Cell<usize> = const { Cell::new(0) };
    /// Incoming connections not authenticated yet on this shard, per remote address.
    static UNAUTHENTICATED: AddressSlots = AddressSlots::default();
}

/// Connections one address may hold on a shard before any of them authenticated. A server opens
/// one stream per domain pair and short dialback verification streams; connections that never
/// authenticate (held until the auth timeout) must not take every slot from the other servers.
const UNAUTHENTICATED_PER_ADDRESS: usize = 16;

/// Counts one open incoming connection while alive.
struct Slot;

impl Slot {
    /// A slot, or `None` when [`MAX_INCOMING`] connections are open on this shard.
    fn take() -> Option<Slot> {
        OPEN.with(|n| {
            (n.get() < MAX_INCOMING).then(|| {
                n.set(n.get() + 1);
                Slot
            })
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        OPEN.with(|n| n.set(n.get().saturating_sub(1)));
    }
}

/// Runs one incoming connection to its end.
pub(crate) async fn run<S: super::conn::Io>(
    mut stream: S,
    peer: SocketAddr,
    ctx: Rc<ShardCtx>,
    cfg: Arc<S2sConfig>,
) {
    let Some(_slot) = Slot::take() else {
        // Dropping the stream closes the socket.
        tracing::warn!(%peer, max = MAX_INCOMING, "s2s: too many incoming connections, refused");
        return;
    };
    let Some(unauthenticated) =
        AddressSlots::take(&UNAUTHENTICATED, peer.ip(), UNAUTHENTICATED_PER_ADDRESS)
    else {
        tracing::warn!(%peer, max = UNAUTHENTICATED_PER_ADDRESS, "s2s: too many unauthenticated connections from one address, refused");
        return;
    };
    let mut unauthenticated = Some(unauthenticated);
    let (conn, mailbox) = ctx.shard.borrow_mut().open_conn();
    let (shard_id, answer_to) = {
        let shard = ctx.shard.borrow();
        (shard.id, shard.session_ref(conn))
    };
    tracing::info!(shard = shard_id.0, conn = conn.0, %peer, "s2s: incoming connection");
    let mut s2s = S2sIn::new(cfg, peer, Instant::now());
    s2s.set_dynamic_hosts(ctx.shard.borrow().dynamic_hosts.clone());
    let rt = ctx.shard.borrow().ext.get::<S2sExt>().cloned();
    let _ = super::s2s_io::pump(
        &mut s2s,
        &mut stream,
        // An incoming stream writes no stanzas: nothing to account for what its socket took.
        |s2s, _| {
            while let Some(ev) = s2s.poll_event() {
                match ev {
                    // The core checked both against the authenticated pair.
                    S2sInEvent::Stanza { stanza, from, to } => {
                        let mut shard = ctx.shard.borrow_mut();
                        let acc = Acc::new(stanza, from, to, shard_id);
                        if acc.stanza.is_malformed_iq_or_presence() {
                            // As from a client: bad-request back, never to the addressee.
                            shard.bounce(&acc, StanzaErrorCondition::BadRequest);
                        } else {
                            crate::router::route(&mut shard, acc);
                        }
                        shard.drain_to_route();
                    }
                    S2sInEvent::VerifyRequest {
                        remote,
                        local,
                        stream_id,
                        key,
                    } => {
                        let mut shard = ctx.shard.borrow_mut();
                        let home = home_shard_of(&remote, shard.shards);
                        let v = Verify {
                            local,
                            remote,
                            id: stream_id,
                            key,
                            answer_to,
                        };
                        shard.send_to_shard(
                            home,
                            ShardMsg::Run(Box::new(move |shard| verify_on_home(shard, v))),
                        );
                    }
                    S2sInEvent::Authenticated {
                        remote,
                        local,
                        method,
                    } => {
                        tracing::info!(%peer, remote, local, ?method, "s2s: incoming domain authenticated");
                        unauthenticated = None;
                        if let Some(S2sExt(rt)) = &rt {
                            rt.authenticated(true, method);
                        }
                    }
                    S2sInEvent::Unserved { stanza, from, to } => {
                        let mut shard = ctx.shard.borrow_mut();
                        let acc = Acc::new(stanza, from, to, shard_id);
                        shard.bounce(&acc, StanzaErrorCondition::RemoteServerNotFound);
                        shard.drain_to_route();
                    }
                    S2sInEvent::Closed { reason } => {
                        tracing::info!(%peer, ?reason, "s2s: incoming stream closed")
                    }
                }
            }
            while let Some(msg) = mailbox.pop() {
                match msg {
                    ConnMsg::DialbackVerified {
                        remote,
                        local,
                        valid,
                    } => match valid {
                        Some(valid) => s2s.dialback_verified(&remote, &local, valid),
                        None => s2s.dialback_failed(&remote, &local),
                    },
                    ConnMsg::Close(cond) | ConnMsg::CloseText(cond, _) => s2s.close(Some(cond)),
                    _ => {}
                }
            }
            ctx.flush();
        },
        |cx| {
            mailbox.set_waker(cx.waker());
            !mailbox.is_empty()
        },
        // Backpressure as for clients: while the mesh or a local recipient is full, the remote
        // server is not read.
        |cx| super::pump::has_room(&ctx, &mailbox, cx),
    )
    .await;
    ctx.shard.borrow_mut().close_conn(conn);
    ctx.flush();
    tracing::info!(shard = shard_id.0, conn = conn.0, %peer, "s2s: incoming connection closed");
}
