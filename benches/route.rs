//! The in-process route, end to end: scan the client's bytes -> `user_send_*` -> router chain -> local
//! delivery -> session manager -> `user_receive_*` / `xmpp_presend_element` -> bytes for the socket.
//!
//! `same_shard`: sender, recipient's home and recipient's connection on one shard.
//! `cross_shard`: sender on shard 0, recipient (home and connection) on shard 1; the mesh message goes
//! through a bounded lock-free ring (crossbeam's array channel standing in for glommio's SPSC ring,
//! which needs two executors) and is handled by shard 1, as the runtime does.
//! These three address the recipient's bare JID (the resource is chosen on its home shard); the
//! `_full` cases address its full JID, as a chat does once the first reply came:
//! `cross_shard_full` as `cross_shard`, and `three_shards_full`: sender on shard 0, recipient's
//! home on shard 1, its connection on shard 2, the case of most messages with many shards (through
//! the home shard: two crossings; once the sender's shard has learnt where the session lives, one).

use criterion::{criterion_group, Criterion, Throughput};
use crossbeam_channel::{Receiver, Sender};
use petrel::c2s::route::{user_receive, user_send};
use petrel::jid::BareJid;
use petrel::shard::cluster::Cluster;
use petrel::shard::{home_shard, ConnMsg, ShardId, ShardMsg};
use petrel::xml::{Event, Limits, Scanner};
use petrel::xmpp::ns;

/// A user whose home shard is `home` among `n`.
fn user_on(home: u16, n: usize, skip: &str) -> BareJid {
    (0..)
        .map(|i| BareJid::parse(&format!("user{i}@localhost")).unwrap())
        .find(|j| home_shard(j, n) == ShardId(home) && j.as_str() != skip)
        .unwrap()
}

fn stream_bytes(to: &str, count: usize) -> Vec<u8> {
    let mut v = format!(
        "<stream:stream xmlns='{}' xmlns:stream='{}' to='localhost' version='1.0'>",
        ns::CLIENT,
        ns::STREAMS
    )
    .into_bytes();
    for i in 0..count {
        v.extend_from_slice(
            format!(
                "<message to='{to}' type='chat' id='m{i}'><body>Hello Bob, this is message {i} of the benchmark.</body></message>"
            )
            .as_bytes(),
        );
    }
    v
}

/// Where the sender, the recipient's home and the recipient's connection are.
#[derive(Clone, Copy)]
enum Layout {
    SameShard,
    CrossShard,
    CrossShardFull,
    ThreeShardsFull,
}

/// One sender and one recipient in a cluster, and a client stream of [`BATCH`] messages.
struct Route {
    cluster: Cluster,
    alice_sess: petrel::c2s::route::Session,
    bob_mb: std::rc::Rc<petrel::shard::Mailbox>,
    /// Alice's mailbox and Bob's session, held as a connection would hold them.
    _held: (
        std::rc::Rc<petrel::shard::Mailbox>,
        petrel::c2s::route::Session,
    ),
    bob_on: usize,
    input: Vec<u8>,
    ring_tx: Sender<Mesh>,
    ring_rx: Receiver<Mesh>,
    /// Messages pushed per ordered pair of shards, as the mesh counts them for fences.
    sent: Vec<Vec<u64>>,
    out: Vec<u8>,
}

const BATCH: usize = 1000;

/// A message between shards, as the mesh carries it.
type Mesh = (ShardId, ShardId, ShardMsg);

impl Route {
    fn new(layout: Layout) -> Route {
        let (n, bob_home, bob_on, full) = match layout {
            Layout::SameShard => (2, 0, 0, false),
            Layout::CrossShard => (2, 1, 1, false),
            Layout::CrossShardFull => (2, 1, 1, true),
            Layout::ThreeShardsFull => (3, 1, 2, true),
        };
        let mut cluster = Cluster::new(n, &["localhost"]);
        let alice = user_on(0, n, "");
        let bob = user_on(bob_home, n, alice.as_str());
        let (alice_sess, alice_mb) =
            cluster.connect(0, &alice.with_resource("bench").unwrap(), Some(0));
        let (bob_sess, bob_mb) =
            cluster.connect(bob_on, &bob.with_resource("bench").unwrap(), Some(0));
        let (ring_tx, ring_rx) = crossbeam_channel::bounded(1024);
        Route {
            cluster,
            alice_sess,
            bob_mb,
            _held: (alice_mb, bob_sess),
            bob_on,
            input: if full {
                stream_bytes(bob.with_resource("bench").unwrap().as_str(), BATCH)
            } else {
                stream_bytes(bob.as_str(), BATCH)
            },
            ring_tx,
            ring_rx,
            sent: vec![vec![0; n]; n],
            out: Vec::with_capacity(1 << 20),
        }
    }

    /// Routes the batch from Alice's bytes to the bytes for Bob's socket.
    fn batch(&mut self) {
        let shards = &mut self.cluster.shards;
        let mut scanner = Scanner::new(Limits::default(), ns::CLIENT);
        // As the c2s does once the stream is bound: room to stamp `from` in place.
        scanner.set_headroom(petrel::xml::attr_len("from", self.alice_sess.jid.as_str()));
        scanner.feed(&self.input);
        self.out.clear();
        let mut delivered = 0;
        while let Some(ev) = scanner.next_event().unwrap() {
            let Event::Stanza(mut st) = ev else { continue };
            st.set_from(self.alice_sess.jid.as_str());
            user_send(&mut shards[0], &mut self.alice_sess, st);
            // Every shard's mesh messages, until none is left (a shard answers another's).
            loop {
                for shard in shards.iter_mut() {
                    let (from, fenced) = (shard.id, petrel::shard::fence::used(shard.shards));
                    for (to, mut msg) in shard.take_outgoing() {
                        // As the runtime's mesh does (one ring per pair here, in order).
                        let sent = &mut self.sent;
                        if fenced {
                            petrel::shard::fence::stamp(&mut msg, from, |on| {
                                sent[from.index()][on.index()]
                            });
                        }
                        sent[from.index()][to.index()] += 1;
                        self.ring_tx.try_send((from, to, msg)).unwrap();
                    }
                }
                if self.ring_rx.is_empty() {
                    break;
                }
                while let Ok((from, to, msg)) = self.ring_rx.try_recv() {
                    shards[to.index()].handle_from(from, msg);
                }
            }
            while let Some(ConnMsg::Deliver(acc)) = self.bob_mb.pop() {
                if let Some(acc) = user_receive(&mut shards[self.bob_on], acc) {
                    self.out.extend_from_slice(acc.stanza.bytes());
                    delivered += 1;
                }
            }
        }
        assert_eq!(delivered, BATCH);
    }
}

fn bench_route(c: &mut Criterion, name: &str, layout: Layout) {
    let mut route = Route::new(layout);
    let mut group = c.benchmark_group("route");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function(name, |b| b.iter(|| route.batch()));
    group.finish();
}

fn route(c: &mut Criterion) {
    bench_route(c, "same_shard", Layout::SameShard);
    bench_route(c, "cross_shard", Layout::CrossShard);
    bench_route(c, "cross_shard_full", Layout::CrossShardFull);
    bench_route(c, "three_shards_full", Layout::ThreeShardsFull);
}

criterion_group!(benches, route);

/// `ROUTE_BATCHES=N` runs N batches of each case (or of case `ROUTE_CASE`), without criterion: a fixed amount of work
/// whose instruction and cache-miss counts `valgrind --tool=cachegrind` reports exactly, where
/// this machine's timings are too noisy to see a few per cent.
fn main() {
    if let Some(n) = std::env::var("ROUTE_BATCHES")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    {
        // `ROUTE_CASE=3` runs only the fourth case (0: same_shard ... 3: three_shards_full).
        let only = std::env::var("ROUTE_CASE")
            .ok()
            .and_then(|v| v.parse::<usize>().ok());
        let layouts = [
            Layout::SameShard,
            Layout::CrossShard,
            Layout::CrossShardFull,
            Layout::ThreeShardsFull,
        ];
        for (i, &layout) in layouts.iter().enumerate() {
            if only.is_some_and(|o| o != i) {
                continue;
            }
            let mut route = Route::new(layout);
            for _ in 0..n {
                route.batch();
            }
        }
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
