//! A MUC room's fan-out in process: one occupant's groupchat message -> the room on its home shard
//! -> one mesh message per destination shard -> a copy per occupant through `user_receive_*` ->
//! bytes for the socket.
//!
//! `same_shard`: the room and all its occupants on shard 0. `cross_shard`: the room on shard 0,
//! half its occupants on shard 1: their copies travel in one `Multicast` per message through a
//! bounded lock-free ring (crossbeam's array channel standing in for glommio's SPSC ring, as in
//! `benches/route.rs`). Throughput is occupant deliveries.

use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use petrel::c2s::route::{user_receive, user_send, Session};
use petrel::config::Config;
use petrel::jid::FullJid;
use petrel::shard::cluster::Cluster;
use petrel::shard::{home_shard_of, ConnMsg, Mailbox, ShardId, ShardMsg};
use petrel::xml::Stanza;
use std::rc::Rc;

/// A bounded ring between shards: (sender, receiver) of mesh messages.
type Ring = (
    crossbeam_channel::Sender<(ShardId, ShardMsg)>,
    crossbeam_channel::Receiver<(ShardId, ShardMsg)>,
);

const OCCUPANTS: usize = 100;
const MESSAGES: usize = 20;

fn stanza(s: String) -> Stanza {
    Stanza::parse(s.into_bytes()).unwrap()
}

/// Moves mesh messages through a bounded ring until every shard is idle.
fn pump(cluster: &mut Cluster, ring: &Ring) {
    loop {
        let mut moved = false;
        for i in 0..cluster.shards.len() {
            for m in cluster.shards[i].take_outgoing() {
                ring.0.try_send(m).unwrap();
                moved = true;
            }
        }
        while let Ok((to, msg)) = ring.1.try_recv() {
            cluster.shards[to.index()].handle_msg(msg);
        }
        if !moved {
            return;
        }
    }
}

fn bench_room(c: &mut Criterion, name: &str, cross: bool) {
    let text = "[general]\nhosts = [\"localhost\"]\n[[listen.c2s]]\nport = 5222\n[modules.muc]\nmax_occupants = 1000\n";
    let config = Config::parse(text, Path::new("bench.toml")).unwrap();
    let mut cluster = Cluster::new(2, &["localhost"]);
    for shard in &mut cluster.shards {
        petrel::modules::start(&config, shard);
    }
    let dir = tempfile::tempdir().unwrap();
    cluster.store = Some(petrel::store::Store::open(dir.path()).unwrap());
    // Loads the (no) persistent rooms.
    cluster.pump();
    let ring = crossbeam_channel::bounded::<(ShardId, ShardMsg)>(4096);
    let room = (0..)
        .map(|i| format!("bench{i}@conference.localhost"))
        .find(|r| home_shard_of(r, 2) == ShardId(0))
        .unwrap();
    let mut users: Vec<(usize, Session, Rc<Mailbox>)> = Vec::new();
    for i in 0..OCCUPANTS {
        let on = if cross && i % 2 == 1 { 1 } else { 0 };
        let jid = FullJid::parse(&format!("u{i}@localhost/b")).unwrap();
        let (sess, mb) = cluster.connect(on, &jid, None);
        users.push((on, sess, mb));
    }
    // The first user creates an instant room, the others join.
    for (i, (on, sess, _)) in users.iter_mut().enumerate() {
        let join = format!("<presence to='{room}/n{i}'><x xmlns='http://jabber.org/protocol/muc'><history maxstanzas='0'/></x></presence>");
        user_send(&mut cluster.shards[*on], sess, stanza(join));
        cluster.pump();
        if i == 0 {
            let form = format!("<iq type='set' id='c' to='{room}'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'/></query></iq>");
            user_send(&mut cluster.shards[*on], sess, stanza(form));
            cluster.pump();
        }
    }
    for (_, _, mb) in &users {
        while mb.pop().is_some() {}
    }
    let msg = format!("<message to='{room}' type='groupchat' id='g'><body>Hello room, this is a message of the benchmark.</body></message>");
    let mut out = Vec::with_capacity(1 << 20);
    let mut group = c.benchmark_group("muc");
    group.throughput(Throughput::Elements((MESSAGES * OCCUPANTS) as u64));
    group.bench_function(name, |b| {
        b.iter(|| {
            out.clear();
            let mut delivered = 0;
            for _ in 0..MESSAGES {
                let (on, sess, _) = &mut users[0];
                let mut st = stanza(msg.clone());
                st.set_from(sess.jid.as_str());
                user_send(&mut cluster.shards[*on], sess, st);
                pump(&mut cluster, &ring);
                for (on, _, mb) in &users {
                    while let Some(ConnMsg::Deliver(acc)) = mb.pop() {
                        if let Some(acc) = user_receive(&mut cluster.shards[*on], acc) {
                            out.extend_from_slice(acc.stanza.bytes());
                            delivered += 1;
                        }
                    }
                }
            }
            assert_eq!(delivered, MESSAGES * OCCUPANTS);
        })
    });
    group.finish();
}

fn muc(c: &mut Criterion) {
    bench_room(c, "same_shard", false);
    bench_room(c, "cross_shard", true);
}

criterion_group!(benches, muc);
criterion_main!(benches);
