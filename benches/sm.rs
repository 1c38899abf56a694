//! The cost of XEP-0198 on the hot path: the route of benches/route.rs (scan -> user_send -> router
//! -> sm -> user_receive) ending in the recipient's real `C2s` (`deliver_routed` + `take_transmit`),
//! with stream management off, and on with the client acking every 10 stanzas (`<a h/>` parsed by
//! the recipient's stream).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use petrel::c2s::route::{user_receive, user_send};
use petrel::c2s::{C2s, C2sConfig, C2sEvent, PeerInfo, SmConfig, TlsMode};
use petrel::jid::BareJid;
use petrel::shard::cluster::Cluster;
use petrel::shard::{home_shard, ConnMsg, ShardId};
use petrel::xml::{Event, Limits, Scanner};
use petrel::xmpp::ns;

fn user_on(home: u16, n: usize, skip: &str) -> BareJid {
    (0..)
        .map(|i| BareJid::parse(&format!("user{i}@localhost")).unwrap())
        .find(|j| home_shard(j, n) == ShardId(home) && j.as_str() != skip)
        .unwrap()
}

const HEADER: &str = "<stream:stream xmlns='jabber:client' \
    xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>";

/// A recipient stream logged in (PLAIN from loopback), bound, with `<enable/>` when `sm`.
fn recipient(sm: bool, user: &str) -> C2s {
    let cfg = C2sConfig {
        hosts: vec!["localhost".into()],
        tls_mode: TlsMode::None,
        tls: None,
        tls_cert: None,
        allow_plaintext_on_loopback: true,
        sasl2: true,
        transport_secure: false,
        limits: Limits::default(),
        outbound_queue_bytes: 64 << 20,
        auth_timeout: Duration::ZERO,
        idle_timeout: Duration::ZERO,
        ping_interval: Duration::ZERO,
        ping_timeout: Duration::from_secs(30),
        register: false,
        post_auth_features: Vec::new(),
        bind2_features: Vec::new(),
        sm: sm.then(|| SmConfig {
            buffer_max: 100_000,
            ..SmConfig::default()
        }),
    };
    let addr: SocketAddr = "127.0.0.1:5000".parse().unwrap();
    let now = Instant::now();
    let mut c = C2s::new(Arc::new(cfg), PeerInfo { addr }, now);
    let token = base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0pw"));
    c.handle_input(HEADER.as_bytes(), now);
    c.handle_input(
        format!("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>")
            .as_bytes(),
        now,
    );
    while let Some(ev) = c.poll_event() {
        if let C2sEvent::VerifyPlain { .. } = ev {
            c.plain_verified(true);
        }
    }
    c.handle_input(HEADER.as_bytes(), now);
    c.handle_input(
        b"<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>bench</resource></bind></iq>",
        now,
    );
    while let Some(ev) = c.poll_event() {
        if let C2sEvent::BindRequest { jid } = ev {
            c.bind_result(Ok(jid));
        }
    }
    if sm {
        c.handle_input(b"<enable xmlns='urn:xmpp:sm:3'/>", now);
        while c.poll_event().is_some() {}
    }
    let mut sink = Vec::new();
    c.take_transmit(&mut sink);
    assert!(c.jid().is_some(), "{}", String::from_utf8_lossy(&sink));
    c
}

fn bench(c: &mut Criterion, name: &str, sm: bool) {
    let n = 2;
    let mut cluster = Cluster::new(n, &["localhost"]);
    let alice = user_on(0, n, "");
    let bob = user_on(1, n, alice.as_str());
    let (mut alice_sess, _amb) =
        cluster.connect(0, &alice.with_resource("bench").unwrap(), Some(0));
    let (_bob_sess, bob_mb) = cluster.connect(1, &bob.with_resource("bench").unwrap(), Some(0));
    let mut bob_c2s = recipient(sm, bob.node().unwrap_or("bob"));
    const BATCH: usize = 1000;
    let mut input = HEADER.as_bytes().to_vec();
    for i in 0..BATCH {
        input.extend_from_slice(
            format!("<message to='{bob}' type='chat' id='m{i}'><body>Hello Bob, this is message {i} of the benchmark.</body></message>")
                .as_bytes(),
        );
    }
    let mut wire = Vec::with_capacity(1 << 20);
    let mut handled: u32 = 0;
    let mut group = c.benchmark_group("sm");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function(name, |b| {
        b.iter(|| {
            let shards = &mut cluster.shards;
            let mut scanner = Scanner::new(Limits::default(), ns::CLIENT);
            scanner.feed(&input);
            let now = Instant::now();
            while let Some(ev) = scanner.next_event().unwrap() {
                let Event::Stanza(mut st) = ev else { continue };
                st.set_from(alice_sess.jid.as_str());
                user_send(&mut shards[0], &mut alice_sess, st);
                for (to, msg) in shards[0].take_outgoing() {
                    shards[to.index()].handle_msg(msg);
                }
                while let Some(ConnMsg::Deliver(acc)) = bob_mb.pop() {
                    if let Some(acc) = user_receive(&mut shards[1], acc) {
                        bob_c2s.deliver_routed(acc).unwrap();
                        handled = handled.wrapping_add(1);
                    }
                }
                if handled % 10 == 0 {
                    wire.clear();
                    bob_c2s.take_transmit(&mut wire);
                    if sm {
                        bob_c2s.handle_input(
                            format!("<a xmlns='urn:xmpp:sm:3' h='{handled}'/>").as_bytes(),
                            now,
                        );
                    }
                }
            }
            wire.clear();
            bob_c2s.take_transmit(&mut wire);
            assert!(!bob_c2s.is_closed());
        })
    });
    group.finish();
}

fn sm(c: &mut Criterion) {
    bench(c, "cross_shard_without_sm", false);
    bench(c, "cross_shard_with_sm_ack_every_10", true);
}

criterion_group!(benches, sm);
criterion_main!(benches);
