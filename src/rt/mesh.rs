//! The cross-shard mesh: one bounded lock-free SPSC ring (glommio `shared_channel`) per ordered pair of
//! shards, plus a local outbox per destination.
//!
//! Overflow policy (docs/ARCHITECTURE.md, the mesh; the hazard of two shards full towards each other): a shard never awaits a full
//! ring from a task that drains rings. `send` tries the ring; when it is full (or older messages
//! already wait, to keep order) the message goes to the destination's local outbox, drained by a task
//! of its own.
//!
//! Backpressure first: once an outbox holds `outbox_capacity` stanzas the mesh is *congested* and
//! the shard's connections stop reading their sockets ([`Mesh::poll_room`]) until every outbox is
//! back under half of that; the input already read (one socket read, at most 16 KiB) still goes
//! through. So a client writing faster than the shards can route is slowed down, not answered with
//! errors. Bouncing is the last resort, past [`HARD_FACTOR`] times that: new stanzas (first hop, to
//! the recipient's home shard) by `HARD_FACTOR * outbox_capacity`, stanzas on
//! their second hop (home shard -> connection shard) by twice that. Past it `send` gives the stanza
//! back and the caller answers its sender with `resource-constraint` (type `wait`); a first-hop
//! sender is always on this shard, so that error is delivered without crossing a ring. Error stanzas
//! get four times the room (they have no error of their own to fall back on); one that finds even
//! that full is dropped, logged and counted (`errors_dropped`). Control messages (register, unregister, presence,
//! bind answers, close) are always queued: there are at most a few per connection, and dropping one
//! would corrupt session state. Wake-ups are batched by glommio: a push writes the peer's eventfd only
//! when the peer is asleep.

use crate::xml::StanzaType;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::Duration;

use glommio::channels::shared_channel::{
    ConnectedReceiver, ConnectedSender, SharedReceiver, SharedSender,
};
use glommio::{GlommioError, ResourceType};

use crate::metrics::{PeerMetrics, ShardMetrics};
use crate::shard::{ConnMsg, ShardId, ShardMsg, Waiters};

/// The unconnected ends of the mesh for one shard, built before the shards start.
pub struct MeshEnds {
    /// `senders[j]`: ring from this shard to shard j (None for j == self).
    pub senders: Vec<Option<SharedSender<ShardMsg>>>,
    /// `receivers[i]`: ring from shard i to this shard (None for i == self).
    pub receivers: Vec<Option<SharedReceiver<ShardMsg>>>,
}

/// Builds the full mesh for `n` shards with rings of `capacity` messages.
pub fn build(n: usize, capacity: usize) -> Vec<MeshEnds> {
    let mut ends: Vec<MeshEnds> = (0..n)
        .map(|_| MeshEnds {
            senders: (0..n).map(|_| None).collect(),
            receivers: (0..n).map(|_| None).collect(),
        })
        .collect();
    for from in 0..n {
        for to in 0..n {
            if from != to {
                let (tx, rx) = glommio::channels::shared_channel::new_bounded(capacity);
                ends[from].senders[to] = Some(tx);
                ends[to].receivers[from] = Some(rx);
            }
        }
    }
    ends
}

/// How many times `outbox_capacity` (the point where reading stops) an outbox holds before stanzas
/// are bounced: only traffic that no socket read causes (ring input fanning out, store results) can
/// get there.
pub const HARD_FACTOR: usize = 8;

/// How many times `outbox_capacity` a stanza may find queued before it: 1 for new stanzas, 2 on the
/// second hop, 4 for error stanzas (each stands for a refused stanza, and an error has no error to
/// fall back on, so it is dropped only past that ceiling).
fn stanza_weight(msg: &ShardMsg) -> usize {
    match msg {
        ShardMsg::SmRoute(acc)
        | ShardMsg::Remote(acc)
        | ShardMsg::Conn(_, ConnMsg::Deliver(acc))
            if acc.ty() == StanzaType::Error =>
        {
            4
        }
        ShardMsg::SmRoute(_) | ShardMsg::Remote(_) => 1,
        _ => 2,
    }
}

struct Peer {
    tx: ConnectedSender<ShardMsg>,
    outbox: RefCell<VecDeque<ShardMsg>>,
    queued_stanzas: Cell<usize>,
    waker: Cell<Option<Waker>>,
    /// Over `outbox_capacity` and not yet back under half of it.
    congested: Cell<bool>,
    /// Pushed to since the last [`Mesh::notify_sent`] (and listed in `Mesh::unnotified`).
    unnotified: Cell<bool>,
    /// Messages accepted for this peer (ring or outbox, which drains in order), for fences
    /// (`shard::fence`): the peer counts what it takes from the ring.
    sent: Cell<u64>,
    /// Prometheus handles (touched only off the fast path: ring full, outbox in use).
    metrics: PeerMetrics,
}

impl Peer {
    /// Publishes the outbox length (after it changed).
    fn outbox_changed(&self) {
        self.metrics.outbox.set(self.outbox.borrow().len() as i64);
    }
}

/// This shard's sending side of the mesh.
pub struct Mesh {
    peers: Vec<Option<Peer>>,
    outbox_capacity: usize,
    /// Peers whose outbox is congested.
    congested: Cell<usize>,
    /// Peers pushed to without a wake-up yet (see [`Mesh::send_unnotified`]).
    unnotified: RefCell<Vec<usize>>,
    /// Connections waiting for the mesh to have room before they read again.
    room_wakers: Waiters,
    /// Times the mesh became congested (metrics, tests).
    pub congestion_events: Cell<u64>,
}

impl Mesh {
    /// Connects this shard's ends (must run on the shard's executor). Returns the mesh and the
    /// connected receivers, one per other shard.
    pub async fn connect(
        ends: MeshEnds,
        outbox_capacity: usize,
        metrics: &ShardMetrics,
    ) -> (Rc<Mesh>, Vec<(ShardId, ConnectedReceiver<ShardMsg>)>) {
        // Connecting waits for the peer to connect its end too: do them all at once.
        let senders: Vec<_> = ends
            .senders
            .into_iter()
            .map(|s| s.map(|s| glommio::spawn_local(s.connect())))
            .collect();
        let receivers: Vec<_> = ends
            .receivers
            .into_iter()
            .enumerate()
            .filter_map(|(i, r)| r.map(|r| (i, glommio::spawn_local(r.connect()))))
            .collect();
        let mut peers = Vec::new();
        for (to, s) in senders.into_iter().enumerate() {
            peers.push(match s {
                Some(task) => Some(Peer {
                    metrics: metrics.peer(ShardId(to as u16)),
                    tx: task.await,
                    outbox: RefCell::new(VecDeque::new()),
                    queued_stanzas: Cell::new(0),
                    waker: Cell::new(None),
                    congested: Cell::new(false),
                    unnotified: Cell::new(false),
                    sent: Cell::new(0),
                }),
                None => None,
            });
        }
        let mut rx = Vec::new();
        for (i, task) in receivers {
            rx.push((ShardId(i as u16), task.await));
        }
        (
            Rc::new(Mesh {
                peers,
                outbox_capacity,
                congested: Cell::new(0),
                unnotified: RefCell::new(Vec::new()),
                room_wakers: Waiters::default(),
                congestion_events: Cell::new(0),
            }),
            rx,
        )
    }

    /// Sends `msg` to shard `to` without ever waiting. `Err` gives back a stanza the outbox had no
    /// room for (see the module's overflow policy).
    pub fn send(&self, to: ShardId, msg: ShardMsg) -> Result<(), ShardMsg> {
        let sent = self.send_unnotified(to, msg);
        self.notify_sent();
        sent
    }

    /// [`Mesh::send`] without waking the peer: a batch of sends wakes each peer once, in
    /// [`Mesh::notify_sent`], which the caller must call before it can yield. (Each wake costs a
    /// fence and a look at the peer's sleep flag; a batch to a sleeping peer costs one eventfd
    /// write either way.)
    pub fn send_unnotified(&self, to: ShardId, msg: ShardMsg) -> Result<(), ShardMsg> {
        let Some(peer) = self.peers.get(to.index()).and_then(Option::as_ref) else {
            return Err(msg);
        };
        let msg = if peer.outbox.borrow().is_empty() {
            match peer.tx.try_send_unnotified(msg) {
                Ok(()) => {
                    peer.sent.set(peer.sent.get() + 1);
                    if !peer.unnotified.replace(true) {
                        self.unnotified.borrow_mut().push(to.index());
                    }
                    return Ok(());
                }
                Err(GlommioError::WouldBlock(ResourceType::Channel(m))) => {
                    peer.metrics.ring_full.inc();
                    m
                }
                Err(GlommioError::Closed(ResourceType::Channel(m))) => return Err(m),
                // glommio's shared-channel `try_send` fails only with the two errors above (both
                // carry the item back); no other variant can reach here.
                Err(_) => return Ok(()),
            }
        } else {
            msg
        };
        if msg.is_stanza() {
            // Stanzas on their second hop (home shard -> connection shard) already crossed one ring:
            // they get twice the room of new ones, so a saturated pair of shards refuses new work
            // (bounced to its local sender) before it refuses work in flight.
            let cap = self.outbox_capacity * HARD_FACTOR * stanza_weight(&msg);
            if peer.queued_stanzas.get() >= cap {
                return Err(msg);
            }
            peer.queued_stanzas.set(peer.queued_stanzas.get() + 1);
            if peer.queued_stanzas.get() >= self.outbox_capacity && !peer.congested.get() {
                peer.congested.set(true);
                self.congested.set(self.congested.get() + 1);
                self.congestion_events.set(self.congestion_events.get() + 1);
                peer.metrics.congested.inc();
            }
        }
        peer.outbox.borrow_mut().push_back(msg);
        peer.sent.set(peer.sent.get() + 1);
        peer.outbox_changed();
        if let Some(w) = peer.waker.take() {
            w.wake();
        }
        Ok(())
    }

    /// Messages accepted for shard `to` so far (0 for this shard).
    pub fn sent(&self, to: ShardId) -> u64 {
        self.peers
            .get(to.index())
            .and_then(Option::as_ref)
            .map_or(0, |p| p.sent.get())
    }

    /// Wakes the peers that [`Mesh::send_unnotified`] pushed to since the last call.
    pub fn notify_sent(&self) {
        for i in self.unnotified.borrow_mut().drain(..) {
            if let Some(peer) = self.peers.get(i).and_then(Option::as_ref) {
                peer.unnotified.set(false);
                peer.tx.notify_receiver();
            }
        }
    }

    /// Counts a stanza [`Mesh::send`] gave back for shard `to`.
    pub fn rejected(&self, to: ShardId) {
        if let Some(peer) = self.peers.get(to.index()).and_then(Option::as_ref) {
            peer.metrics.rejected.inc();
        }
    }

    /// True while some outbox is congested (see [`Mesh::poll_room`], which also registers a waker).
    pub fn congested(&self) -> bool {
        self.congested.get() != 0
    }

    /// False when some outbox is congested; the caller (a connection about to read) is woken once
    /// every outbox is back under half its capacity.
    pub fn poll_room(&self, cx: &std::task::Context<'_>) -> bool {
        if self.congested.get() == 0 {
            return true;
        }
        self.room_wakers.register(cx.waker());
        false
    }

    /// An outbox drained one stanza: ends its congestion at the low-water mark.
    fn drained_one(&self, peer: &Peer) {
        peer.queued_stanzas.set(peer.queued_stanzas.get() - 1);
        if peer.congested.get() && peer.queued_stanzas.get() <= self.outbox_capacity / 2 {
            peer.congested.set(false);
            self.congested.set(self.congested.get() - 1);
            if self.congested.get() == 0 {
                self.room_wakers.wake_all();
            }
        }
    }

    /// Drains the outbox towards `to` forever (one task per destination). It only pushes: it never
    /// handles incoming messages, so waiting here cannot deadlock two shards.
    pub async fn drain_outbox(self: Rc<Self>, to: ShardId) {
        let Some(peer) = self.peers.get(to.index()).and_then(Option::as_ref) else {
            return;
        };
        loop {
            // Wait for something to send.
            std::future::poll_fn(|cx| {
                if peer.outbox.borrow().is_empty() {
                    peer.waker.set(Some(cx.waker().clone()));
                    Poll::Pending
                } else {
                    Poll::Ready(())
                }
            })
            .await;
            loop {
                let Some(msg) = peer.outbox.borrow_mut().pop_front() else {
                    break;
                };
                let stanza = msg.is_stanza();
                match peer.tx.try_send(msg) {
                    Ok(()) => {
                        peer.outbox_changed();
                        if stanza {
                            self.drained_one(peer);
                        }
                    }
                    Err(GlommioError::WouldBlock(ResourceType::Channel(m))) => {
                        peer.outbox.borrow_mut().push_front(m);
                        // Polling instead of awaiting the ring's room notification sidesteps glommio
                        // issue #555; it only happens while the peer is saturated.
                        glommio::timer::sleep(Duration::from_micros(50)).await;
                    }
                    Err(_) => {
                        // The peer shard is gone (shutdown): nothing can be delivered there.
                        peer.outbox.borrow_mut().clear();
                        peer.outbox_changed();
                        peer.queued_stanzas.set(0);
                        if peer.congested.replace(false) {
                            self.congested.set(self.congested.get() - 1);
                            self.room_wakers.wake_all();
                        }
                        return;
                    }
                }
            }
        }
    }
}
