//! The in-process route, end to end: scan the client's bytes -> `user_send_*` -> router chain -> local
//! delivery -> session manager -> `user_receive_*` / `xmpp_presend_element` -> bytes for the socket.
//!
//! `same_shard`: sender, recipient's home and recipient's connection on one shard.
//! `cross_shard`: sender on shard 0, recipient (home and connection) on shard 1; the mesh message goes
//! through a bounded lock-free ring (crossbeam's array channel standing in for glommio's SPSC ring,
//! which needs two executors) and is handled by shard 1, as the runtime does.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
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

fn stream_bytes(to: &BareJid, count: usize) -> Vec<u8> {
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

fn bench_route(c: &mut Criterion, name: &str, cross: bool) {
    let n = 2;
    let mut cluster = Cluster::new(n, &["localhost"]);
    let alice = user_on(0, n, "");
    let bob_home = if cross { 1 } else { 0 };
    let bob = user_on(bob_home, n, alice.as_str());
    let (mut alice_sess, _amb) =
        cluster.connect(0, &alice.with_resource("bench").unwrap(), Some(0));
    let (_bob_sess, bob_mb) = cluster.connect(
        bob_home as usize,
        &bob.with_resource("bench").unwrap(),
        Some(0),
    );
    let shards = &mut cluster.shards;
    const BATCH: usize = 1000;
    let input = stream_bytes(&bob, BATCH);
    let (ring_tx, ring_rx) = crossbeam_channel::bounded::<(ShardId, ShardMsg)>(1024);
    let mut out = Vec::with_capacity(1 << 20);
    let mut group = c.benchmark_group("route");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function(name, |b| {
        b.iter(|| {
            let mut scanner = Scanner::new(Limits::default(), ns::CLIENT);
            // As the c2s does once the stream is bound: room to stamp `from` in place.
            scanner.set_headroom(petrel::xml::attr_len("from", alice_sess.jid.as_str()));
            scanner.feed(&input);
            out.clear();
            let mut delivered = 0;
            while let Some(ev) = scanner.next_event().unwrap() {
                let Event::Stanza(mut st) = ev else { continue };
                st.set_from(alice_sess.jid.as_str());
                user_send(&mut shards[0], &mut alice_sess, st);
                for m in shards[0].take_outgoing() {
                    ring_tx.try_send(m).unwrap();
                }
                while let Ok((to, msg)) = ring_rx.try_recv() {
                    shards[to.index()].handle_msg(msg);
                }
                let home = bob_home as usize;
                while let Some(ConnMsg::Deliver(acc)) = bob_mb.pop() {
                    if let Some(acc) = user_receive(&mut shards[home], acc) {
                        out.extend_from_slice(acc.stanza.bytes());
                        delivered += 1;
                    }
                }
            }
            assert_eq!(delivered, BATCH);
        })
    });
    group.finish();
}

fn route(c: &mut Criterion) {
    bench_route(c, "same_shard", false);
    bench_route(c, "cross_shard", true);
}

criterion_group!(benches, route);
criterion_main!(benches);
