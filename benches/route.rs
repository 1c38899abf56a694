//! The in-process route, end to end: scan the client's bytes -> `user_send_*` -> router chain -> local
//! delivery -> session manager -> `user_receive_*` / `xmpp_presend_element` -> bytes for the socket.
//!
//! `same_shard`: sender, recipient's home and recipient's connection on one shard.
//! `cross_shard`: sender on shard 0, recipient (home and connection) on shard 1; the mesh message goes
//! through a bounded lock-free ring (crossbeam's array channel standing in for glommio's SPSC ring,
//! which needs two executors) and is handled by shard 1, as the runtime does.

use std::collections::HashSet;
use std::rc::Rc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use petrel::c2s::route::{bind, user_receive, user_send, Session};
use petrel::config::RoutingModule;
use petrel::jid::{BareJid, FullJid};
use petrel::shard::{home_shard, ConnMsg, Mailbox, Shard, ShardId, ShardMsg};
use petrel::xml::{Event, Limits, Scanner, Stanza};
use petrel::xmpp::ns;

const ROUTING: [RoutingModule; 6] = [
    RoutingModule::Global,
    RoutingModule::Localdomain,
    RoutingModule::ExternalLocalnode,
    RoutingModule::External,
    RoutingModule::DynamicDomains,
    RoutingModule::S2s,
];

fn shard(id: u16, n: usize) -> Shard {
    let hosts: HashSet<String> = ["localhost".to_owned()].into();
    Shard::new(ShardId(id), n, Rc::new(hosts), ROUTING.to_vec().into(), 1 << 30)
}

/// A user whose home shard is `home` among `n`.
fn user_on(home: u16, n: usize, skip: &str) -> BareJid {
    (0..)
        .map(|i| BareJid::parse(&format!("user{i}@localhost")).unwrap())
        .find(|j| home_shard(j, n) == ShardId(home) && j.as_str() != skip)
        .unwrap()
}

/// Connects `jid/res` on `shard`, binds and makes it available; returns its session and mailbox.
fn connect(shards: &mut [Shard], on: usize, jid: &BareJid) -> (Session, Rc<Mailbox>) {
    let (conn, mb) = shards[on].open_conn();
    let full: FullJid = jid.with_resource("bench").unwrap();
    let sref = shards[on].session_ref(conn);
    bind(&mut shards[on], full.clone(), sref);
    pump(shards);
    match mb.pop() {
        Some(ConnMsg::Bound(Ok(()))) => {}
        other => panic!("bind failed: {other:?}"),
    }
    let mut sess = Session::new(full, sref);
    let presence = Stanza::parse(b"<presence/>".to_vec()).unwrap();
    user_send(&mut shards[on], &mut sess, presence);
    pump(shards);
    (sess, mb)
}

/// Moves mesh messages between shards until quiet (tests/bench only: synchronous delivery).
fn pump(shards: &mut [Shard]) {
    loop {
        let mut moved = false;
        for i in 0..shards.len() {
            for (to, msg) in shards[i].take_outgoing() {
                moved = true;
                shards[to.index()].handle_msg(msg);
            }
        }
        if !moved {
            return;
        }
    }
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
    let mut shards = vec![shard(0, n), shard(1, n)];
    let alice = user_on(0, n, "");
    let bob_home = if cross { 1 } else { 0 };
    let bob = user_on(bob_home, n, alice.as_str());
    let (mut alice_sess, _amb) = connect(&mut shards, 0, &alice);
    let (_bob_sess, bob_mb) = connect(&mut shards, bob_home as usize, &bob);
    const BATCH: usize = 1000;
    let input = stream_bytes(&bob, BATCH);
    let (ring_tx, ring_rx) = crossbeam_channel::bounded::<(ShardId, ShardMsg)>(1024);
    let mut out = Vec::with_capacity(1 << 20);
    let mut group = c.benchmark_group("route");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function(name, |b| {
        b.iter(|| {
            let mut scanner = Scanner::new(Limits::default(), ns::CLIENT);
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
