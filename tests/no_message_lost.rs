//! Issue "no message lost": what is queued for a connection that is cut off goes back through the
//! session manager, the stream error is written before the close, and every stanza ends up delivered,
//! stored offline or answered with an error — exactly once.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::{Client, Server};
use petrel::xml::{Event, Limits, Scanner};
use petrel::xmpp::ns;

const MODULES: &str =
    "[modules.offline]\n[modules.presence]\n[modules.roster]\n[modules.stream_management]\n";

/// A stream header to put the scanner inside a stream (the tests read after the login).
const HEADER: &[u8] = b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>";

/// Splits raw server output into stanzas and returns (message ids, whether the stream ended with a
/// stream error naming `cond`, whether `</stream:stream>` came).
fn parse_messages(raw: &[u8], cond: &str) -> (Vec<String>, bool, bool) {
    let mut sc = Scanner::new(
        Limits {
            max_stanza_bytes: 1 << 20,
            ..Limits::default()
        },
        ns::CLIENT,
    );
    sc.feed(HEADER);
    sc.feed(raw);
    let (mut ids, mut error, mut closed) = (Vec::new(), false, false);
    loop {
        match sc.next_event() {
            Ok(Some(Event::Stanza(s))) => {
                if s.name() == "message" && s.type_().as_deref() == Some("chat") {
                    ids.extend(s.id().map(|i| i.into_owned()));
                } else if s.name() == "stream:error" {
                    error = String::from_utf8_lossy(s.bytes()).contains(&format!("<{cond} "));
                }
            }
            Ok(Some(Event::StreamClose)) => closed = true,
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(e) => panic!("bad XML from the server: {e}"),
        }
    }
    (ids, error, closed)
}

/// `n` chat messages to bob@localhost/flood, ids `m0`, `m1`, ..., in one buffer.
fn burst_to_bob(n: usize) -> Vec<u8> {
    let mut burst = Vec::with_capacity(n * 100);
    for i in 0..n {
        write!(
            burst,
            "<message to='bob@localhost/flood' type='chat' id='m{i}'><body>m{i}</body></message>"
        )
        .unwrap();
    }
    burst
}

/// The reproduction from the issue: bob reads 4 KiB every 50 ms, alice writes 50 000 messages to
/// bob's full JID in one write. Bob must get `<policy-violation/>` and `</stream:stream>`; every
/// message must be delivered to bob, stored offline (and delivered on his next login) or bounced to
/// alice, exactly once.
/// How bob reads.
#[derive(Clone, Copy)]
enum Bob {
    /// From the start, 4 KiB then this pause (the issue's reproduction: 50 ms).
    Slow(Duration),
    /// Nothing until alice's burst is in, then 4 KiB then this pause: the cut-off is certain.
    SlowAfterBurst(Duration),
    /// Nothing for this long after alice's burst is in (the server gives up on him), then all.
    Never(Duration),
}

fn slow_reader_loses_nothing(shards: usize, n: usize, rcvbuf: Option<usize>, how: Bob) {
    let server = Server::start_with(shards, &["alice", "bob"], "", MODULES);
    let bob = {
        let sock =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        if let Some(size) = rcvbuf {
            // A small receive window keeps the kernel from buffering megabytes for the slow reader.
            sock.set_recv_buffer_size(size).unwrap();
        }
        let addr: std::net::SocketAddr = ([127, 0, 0, 1], server.port).into();
        sock.connect(&addr.into()).unwrap();
        let mut bob = Client::from_stream(sock.into());
        bob.login_plain("bob", "localhost", common::PASSWORD, "flood");
        bob
    };
    let mut alice = server.login("alice", "w", None);

    // Alice's errors are read on a thread: she must not become a slow reader herself.
    let alice_reader = alice.read_until_quiet_on_a_thread(Duration::from_secs(8));

    // Bob reads on a thread until the server closes his stream.
    let mut bob_rd = bob.sock.try_clone().unwrap();
    let (burst_in, gate) = std::sync::mpsc::channel::<()>();
    let bob_reader = std::thread::spawn(move || {
        let pause = match how {
            Bob::Slow(p) => p,
            Bob::SlowAfterBurst(p) => {
                gate.recv().unwrap();
                p
            }
            Bob::Never(wait) => {
                gate.recv().unwrap();
                std::thread::sleep(wait);
                Duration::ZERO
            }
        };
        bob_rd
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut raw = Vec::new();
        let mut buf = vec![0u8; 4096];
        let started = Instant::now();
        loop {
            match bob_rd.read(&mut buf) {
                Ok(0) | Err(_) => return (raw, started.elapsed()),
                Ok(n) => raw.extend_from_slice(&buf[..n]),
            }
            std::thread::sleep(pause);
        }
    });

    alice.sock.write_all(&burst_to_bob(n)).unwrap();
    burst_in.send(()).unwrap();

    let (bob_raw, took) = bob_reader.join().unwrap();
    let (live, error, closed) = parse_messages(&bob_raw, "policy-violation");
    let tail = String::from_utf8_lossy(&bob_raw[bob_raw.len().saturating_sub(300)..]).into_owned();
    if !matches!(how, Bob::Never(_)) {
        // A reader that reads gets the stream error before the close.
        assert!(
            error,
            "no policy-violation after {took:?}; stream ended with: {tail}"
        );
        assert!(closed, "no </stream:stream>; stream ended with: {tail}");
    }

    let alice_raw = alice_reader.join().unwrap();
    let stats = each_exactly_once(&server, n, &live, &alice_raw);
    eprintln!("shards {shards}: {stats}; bob cut off after {took:?}");
}

/// Checks that every one of alice's `n` messages reached bob live (`live`), was bounced to alice
/// (in `alice_raw`) or is stored offline (bob logs in again to get them), exactly once, and that
/// bob was cut off; returns the counts.
fn each_exactly_once(server: &Server, n: usize, live: &[String], alice_raw: &[u8]) -> String {
    let mut bounced = Vec::new();
    let mut sc = Scanner::new(Limits::default(), ns::CLIENT);
    sc.feed(HEADER);
    sc.feed(alice_raw);
    while let Ok(Some(ev)) = sc.next_event() {
        if let Event::Stanza(s) = ev {
            if s.type_().as_deref() == Some("error") {
                bounced.extend(s.id().map(|i| i.into_owned()));
            }
        }
    }

    // Bob comes back: what was stored offline arrives now.
    let mut bob2 = server.login("bob", "again", None);
    bob2.send("<presence/>");
    let mut raw = bob2.read_until_quiet(Duration::from_secs(3));
    if live.len() + bounced.len() + parse_messages(&raw, "none").0.len() < n {
        // On a loaded machine the offline store can pause longer than 3 s: while some message is
        // unaccounted for, wait for a longer silence (a lost one still fails below, later).
        raw.extend(bob2.read_until_quiet(Duration::from_secs(20)));
    }
    let (offline, _, _) = parse_messages(&raw, "none");

    let mut seen: HashMap<String, usize> = HashMap::new();
    for id in live.iter().chain(&bounced).chain(&offline) {
        *seen.entry(id.clone()).or_default() += 1;
    }
    let missing: Vec<usize> = (0..n)
        .filter(|i| !seen.contains_key(&format!("m{i}")))
        .collect();
    let twice: Vec<&String> = seen
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(k, _)| k)
        .collect();
    let stats = format!(
        "live {}, offline {}, bounced {}, missing {}, duplicated {}",
        live.len(),
        offline.len(),
        bounced.len(),
        missing.len(),
        twice.len()
    );
    assert!(
        missing.is_empty(),
        "{} messages lost, first: {:?} ({stats})",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    assert!(
        twice.is_empty(),
        "duplicated: {:?} ({stats})",
        &twice[..twice.len().min(10)]
    );
    assert!(live.len() < n, "bob was never cut off");
    stats
}

// The CI variants: bob starts reading once alice's burst is in (100 000 messages, ~10 MB: more than
// the kernel's socket buffers and the server's queues hold, so the cut-off is certain however fast
// the machine), then 4 KiB every 5 ms so the megabytes the kernel took reach him in seconds.
#[test]
fn slow_reader_cut_off_loses_nothing_one_shard() {
    let bob = Bob::SlowAfterBurst(Duration::from_millis(5));
    slow_reader_loses_nothing(1, 100_000, Some(16 * 1024), bob);
}

#[test]
fn slow_reader_cut_off_loses_nothing_two_shards() {
    let bob = Bob::SlowAfterBurst(Duration::from_millis(5));
    slow_reader_loses_nothing(2, 100_000, Some(16 * 1024), bob);
}

/// A receiver that does not read at all: the server stops waiting for him after its stall timeout;
/// what its socket already took is still his (TCP delivers it after the close), the rest goes back
/// through the session manager.
#[test]
fn reader_that_never_reads_loses_nothing() {
    let bob = Bob::Never(Duration::from_secs(8));
    slow_reader_loses_nothing(2, 100_000, Some(16 * 1024), bob);
}

/// The same over WebSocket (RFC 7395): bob's client reads nothing for 8 s while alice floods him
/// over TCP. A stanza counts as sent once its whole frame is on the socket; what the socket never
/// took, and what was queued behind it, goes back exactly once.
#[test]
fn websocket_reader_that_never_reads_loses_nothing() {
    const N: usize = 100_000;
    let (server, http) = Server::start_http(2, &["alice", "bob"], "", MODULES);
    let mut bob = common::ws::login(http, "bob", "flood");
    let mut alice = server.login("alice", "w", None);
    let alice_reader = alice.read_until_quiet_on_a_thread(Duration::from_secs(8));
    let (burst_in, gate) = std::sync::mpsc::channel::<()>();
    let bob_reader = std::thread::spawn(move || {
        gate.recv().unwrap();
        std::thread::sleep(Duration::from_secs(8));
        // Each text message is one element; their concatenation reads as a stream.
        let mut raw = Vec::new();
        while let Ok(msg) = bob.read() {
            if let tungstenite::Message::Text(t) = msg {
                raw.extend_from_slice(t.as_bytes());
            }
        }
        raw
    });
    alice.sock.write_all(&burst_to_bob(N)).unwrap();
    burst_in.send(()).unwrap();
    let (live, _, _) = parse_messages(&bob_reader.join().unwrap(), "policy-violation");
    let alice_raw = alice_reader.join().unwrap();
    let stats = each_exactly_once(&server, N, &live, &alice_raw);
    eprintln!("websocket, shards 2: {stats}");
}

/// The issue's reproduction exactly (50 000 messages, bob reads 4 KiB every 50 ms from the start,
/// default socket buffers: he reads megabytes the kernel held before he sees the error, about a
/// minute): `cargo test --test no_message_lost -- --ignored`.
#[test]
#[ignore]
fn slow_reader_cut_off_loses_nothing_issue_reproduction() {
    for shards in [1, 2] {
        slow_reader_loses_nothing(shards, 50_000, None, Bob::Slow(Duration::from_millis(50)));
    }
}

/// Resident set size of a process, KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Backpressure instead of bounces: three senders (on whatever shards the kernel picks, of four)
/// each write 20 000 messages in one burst to one fast reader. The shards cannot route that as fast
/// as it arrives; they stop reading the senders instead of bouncing. Nothing is bounced, everything
/// arrives in order per sender, and the server's memory stays within the mesh's bound (rings plus
/// outboxes of 1024 + 8192 stanzas per ordered pair of shards: about 40 MB at 4 shards in the worst
/// case; asserted: 64 MB).
#[test]
fn burst_to_a_fast_reader_is_slowed_down_not_bounced() {
    const SENDERS: usize = 3;
    const N: usize = 20_000;
    let server = Server::start_with(4, &["alice", "bob"], "", MODULES);
    let mut bob = server.login("bob", "fast", None);
    let senders: Vec<Client> = (0..SENDERS)
        .map(|i| server.login("alice", &format!("w{i}"), None))
        .collect();
    let rss_before = rss_kib(server.pid());

    let pid = server.pid();
    let reader = std::thread::spawn(move || {
        bob.sock
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut sc = Scanner::new(Limits::default(), ns::CLIENT);
        sc.feed(HEADER);
        let mut per_sender: Vec<Vec<usize>> = vec![Vec::new(); SENDERS];
        let mut rss_peak = 0;
        let mut buf = vec![0u8; 65536];
        let mut got = 0;
        while got < SENDERS * N {
            let n = match bob.sock.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            sc.feed(&buf[..n]);
            while let Ok(Some(ev)) = sc.next_event() {
                if let Event::Stanza(s) = ev {
                    let Some(id) = s.id() else {
                        panic!("bob got {}", String::from_utf8_lossy(s.bytes()));
                    };
                    let (w, i) = id[1..].split_once('-').unwrap();
                    per_sender[w.parse::<usize>().unwrap()].push(i.parse().unwrap());
                    got += 1;
                }
            }
            rss_peak = rss_peak.max(rss_kib(pid));
        }
        (per_sender, rss_peak)
    });

    let mut writers = Vec::new();
    let mut errors = Vec::new();
    for (w, c) in senders.into_iter().enumerate() {
        let mut wr = c.sock.try_clone().unwrap();
        writers.push(std::thread::spawn(move || {
            let mut burst = Vec::with_capacity(N * 100);
            for i in 0..N {
                write!(
                    burst,
                    "<message to='bob@localhost/fast' type='chat' id='w{w}-{i}'><body>{i}</body></message>"
                )
                .unwrap();
            }
            wr.write_all(&burst).unwrap();
        }));
        // Whatever comes back to a sender is an error.
        let mut rd = c;
        errors.push(std::thread::spawn(move || {
            let raw = rd.read_until_quiet(Duration::from_secs(5));
            let (ids, _, _) = parse_messages(&raw, "none");
            (raw.len(), ids)
        }));
    }
    for w in writers {
        w.join().unwrap();
    }
    let (per_sender, rss_peak) = reader.join().unwrap();
    for e in errors {
        let (bytes, _) = e.join().unwrap();
        assert_eq!(bytes, 0, "a sender got something back (a bounce?)");
    }
    for (w, ids) in per_sender.iter().enumerate() {
        assert_eq!(ids.len(), N, "sender {w}: {} of {N} delivered", ids.len());
        assert!(
            ids.windows(2).all(|p| p[0] < p[1]),
            "sender {w}: out of order"
        );
    }
    let growth = rss_peak.saturating_sub(rss_before);
    eprintln!("burst: RSS before {rss_before} KiB, peak {rss_peak} KiB (+{growth} KiB)");
    assert!(growth < 64 * 1024, "RSS grew by {growth} KiB");
}

/// Reads stanzas until one satisfies `pred`; returns the ones before it.
fn read_until(
    c: &mut Client,
    what: &str,
    pred: impl Fn(&petrel::xml::Stanza) -> bool,
) -> Vec<petrel::xml::Stanza> {
    let mut before = Vec::new();
    loop {
        let s = c.next_stanza();
        if pred(&s) {
            return before;
        }
        eprintln!("(before {what}: {})", String::from_utf8_lossy(s.bytes()));
        before.push(s);
    }
}

fn is_ack(h: u32) -> impl Fn(&petrel::xml::Stanza) -> bool {
    move |s| s.name() == "a" && s.attr("h").as_deref() == Some(h.to_string().as_str())
}

/// Sends `n` chat messages to `to` (ids and bodies `{prefix}0`, `{prefix}1`, ...) on a
/// stream-managed stream, then waits until the server acknowledged them all.
fn send_acknowledged(c: &mut Client, to: &str, prefix: &str, n: u32) {
    for i in 0..n {
        c.send(&format!(
            "<message to='{to}' type='chat' id='{prefix}{i}'><body>{prefix}{i}</body></message>"
        ));
    }
    c.send("<r xmlns='urn:xmpp:sm:3'/>");
    read_until(c, &format!("<a h='{n}'/>"), is_ack(n));
}

fn enable_sm(c: &mut Client) {
    c.send("<enable xmlns='urn:xmpp:sm:3'/>");
    read_until(c, "enabled", |s| s.name() == "enabled");
}

/// The issue's reproduction: alice (XEP-0198) sends 100 messages to offline bob and `<r/>`; the
/// server is killed with SIGKILL the moment `<a h='100'/>` arrives. Every message it acknowledged
/// must be in offline storage after the restart.
fn acked_means_stored(shards: usize) {
    let mut server = Server::start_with(shards, &["alice", "bob"], "", MODULES);
    for round in 0..3 {
        let mut alice = server.login("alice", "w", None);
        enable_sm(&mut alice);
        let mut burst = String::new();
        for i in 0..100 {
            burst.push_str(&format!(
                "<message to='bob@localhost' type='chat' id='r{round}-{i}'><body>{i}</body></message>"
            ));
        }
        burst.push_str("<r xmlns='urn:xmpp:sm:3'/>");
        alice.send(&burst);
        read_until(&mut alice, "<a h='100'/>", is_ack(100));
        server.kill9();
        server.spawn(shards);
        let mut bob = server.login("bob", "r", None);
        bob.send("<presence/>");
        let raw = bob.read_until_quiet(Duration::from_secs(2));
        let (ids, _, _) = parse_messages(&raw, "none");
        let mine: std::collections::HashSet<&String> = ids
            .iter()
            .filter(|i| i.starts_with(&format!("r{round}-")))
            .collect();
        assert_eq!(
            mine.len(),
            100,
            "round {round}: acknowledged 100, stored {}",
            mine.len()
        );
        assert_eq!(
            ids.len(),
            100,
            "round {round}: duplicates or strangers: {ids:?}"
        );
    }
}

#[test]
fn acknowledged_means_stored_one_shard() {
    acked_means_stored(1);
}

#[test]
fn acknowledged_means_stored_two_shards() {
    acked_means_stored(2);
}

/// With the recipient online and stream-managed, the sender's ack waits for the recipient's: a
/// message acknowledged to alice has reached bob's client, not only bob's queue in server memory.
#[test]
fn ack_to_the_sender_follows_the_recipients_ack() {
    let server = Server::start_with(2, &["alice", "bob"], "", MODULES);
    let mut bob = server.login("bob", "r", None);
    enable_sm(&mut bob);
    let mut alice = server.login("alice", "w", None);
    enable_sm(&mut alice);
    for i in 0..3 {
        alice.chat("bob@localhost/r", &format!("m{i}"));
    }
    alice.send("<r xmlns='urn:xmpp:sm:3'/>");
    // Bob gets the three and the server's request for an ack, which he leaves unanswered for now.
    let mut got = 0;
    while got < 3 {
        let s = bob.next_stanza();
        if s.name() == "message" {
            got += 1;
        }
    }
    // Alice's answer does not come while bob has not acknowledged (read with a short timeout).
    alice
        .sock
        .set_read_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
    let early = alice.try_next_stanza();
    assert!(
        early.is_none(),
        "alice was acknowledged before bob: {:?}",
        early.map(|s| String::from_utf8_lossy(s.bytes()).into_owned())
    );
    bob.send("<a xmlns='urn:xmpp:sm:3' h='3'/>");
    alice
        .sock
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    read_until(&mut alice, "<a h='3'/>", is_ack(3));
}

/// Messages from offline storage are deleted only once the client has them: a stream-managed
/// client that did not acknowledge them gets them again after a crash; once acknowledged they are
/// gone (no second delivery).
#[test]
fn offline_messages_survive_a_crash_until_acknowledged() {
    let mut server = Server::start_with(2, &["alice", "bob"], "", MODULES);
    let mut alice = server.login("alice", "w", None);
    enable_sm(&mut alice);
    send_acknowledged(&mut alice, "bob@localhost", "o", 20);

    let fetch = |server: &Server, ack: bool| -> Vec<String> {
        let mut bob = server.login("bob", "r", None);
        enable_sm(&mut bob);
        bob.send("<presence/>");
        let mut ids = Vec::new();
        while ids.len() < 20 {
            let Some(s) = bob.try_next_stanza() else {
                break;
            };
            if s.name() == "message" {
                ids.extend(s.id().map(|i| i.into_owned()));
            }
        }
        if ack {
            // Every stanza bob got so far: his own presence and the 20 messages.
            bob.send("<r xmlns='urn:xmpp:sm:3'/>");
            let n = 21;
            bob.send(&format!("<a xmlns='urn:xmpp:sm:3' h='{n}'/>"));
            bob.sync();
        }
        ids
    };
    // Bob gets them but does not acknowledge; the server dies.
    let first = fetch(&server, false);
    assert_eq!(first.len(), 20, "{first:?}");
    server.kill9();
    server.spawn(2);
    // They are still stored: delivered again; this time bob acknowledges.
    let second = fetch(&server, true);
    assert_eq!(second, first);
    // Give the deletions a moment to commit, then crash again: nothing comes a third time.
    std::thread::sleep(Duration::from_millis(500));
    server.kill9();
    server.spawn(2);
    let mut bob = server.login("bob", "r", None);
    bob.send("<presence/>");
    let raw = bob.read_until_quiet(Duration::from_secs(2));
    let (ids, _, _) = parse_messages(&raw, "none");
    assert!(ids.is_empty(), "delivered again after the ack: {ids:?}");
}

/// Counts the `<result/>` messages of MAM query `qid` until its answer; returns (results, whether
/// the `<fin/>` said complete).
fn mam_results(c: &mut Client, qid: &str) -> (usize, bool) {
    c.send(&format!(
        "<iq type='set' id='{qid}'><query xmlns='urn:xmpp:mam:2' queryid='{qid}'><set xmlns='http://jabber.org/protocol/rsm'><max>250</max></set></query></iq>"
    ));
    let mut n = 0;
    loop {
        let s = c.next_stanza();
        let text = String::from_utf8_lossy(s.bytes()).into_owned();
        if s.name() == "message" && text.contains(&format!("queryid='{qid}'")) {
            n += 1;
        } else if s.name() == "iq" && s.id().as_deref() == Some(qid) {
            assert_eq!(s.type_().as_deref(), Some("result"), "{text}");
            return (n, text.contains("complete='true'"));
        }
    }
}

/// Archived messages wait (up to a second) for a larger commit: a graceful stop right after they
/// were delivered commits them all, on both sides, at two shards.
#[test]
fn archived_messages_survive_a_stop_right_after_delivery() {
    let modules = format!("{MODULES}[modules.mam]\n");
    let mut server = Server::start_with(2, &["alice", "bob"], "", &modules);
    let mut alice = server.login("alice", "a", Some(0));
    let mut bob = server.login("bob", "b", Some(0));
    // Below the default largest page (250), so one query returns them all.
    let n = 240;
    for i in 0..n {
        alice.send(&format!(
            "<message to='bob@localhost/b' type='chat' id='m{i}'><body>archived {i}</body></message>"
        ));
    }
    let last = format!("archived {}", n - 1);
    bob.expect("the last message", |s| {
        String::from_utf8_lossy(s.bytes()).contains(&last)
    });
    drop((alice, bob));
    assert!(server.stop().is_some_and(|st| st.success()));
    server.spawn(2);
    for (user, res) in [("alice", "a2"), ("bob", "b2")] {
        let mut c = server.login(user, res, None);
        let (got, complete) = mam_results(&mut c, "q1");
        assert_eq!(
            (got, complete),
            (n, true),
            "{user}'s archive after the restart"
        );
    }
}

/// `n` chat messages `m0`, `m1`, ... to `users` (at localhost) in turn, with an `<r/>` after every
/// `r_every` of them (0: none).
fn round_robin_burst(users: &[String], n: usize, r_every: usize) -> Vec<u8> {
    let mut burst = Vec::with_capacity(n * 100);
    for i in 0..n {
        let to = &users[i % users.len()];
        write!(
            burst,
            "<message to='{to}@localhost' type='chat' id='m{i}'><body>m{i}</body></message>"
        )
        .unwrap();
        if r_every > 0 && i % r_every == r_every - 1 {
            burst.extend_from_slice(b"<r xmlns='urn:xmpp:sm:3'/>");
        }
    }
    burst
}

/// A graceful stop in the middle of a stream-managed burst: every message the server acknowledged
/// to alice is in offline storage after the restart, or was answered to her with an error, exactly
/// once. The recipients are homed on both shards, so the stop meets stanzas crossing the mesh.
#[test]
fn acknowledged_means_stored_across_a_graceful_stop() {
    const N: usize = 40_000;
    let bobs: Vec<String> = (0..6).map(|i| format!("bob{i}")).collect();
    let homes: std::collections::HashSet<u16> = bobs
        .iter()
        .map(|b| petrel::shard::home_shard_of(&format!("{b}@localhost"), 2).0)
        .collect();
    assert_eq!(homes.len(), 2, "the recipients are homed on both shards");
    let mut users: Vec<&str> = bobs.iter().map(String::as_str).collect();
    users.extend(["alice", "carol"]);
    // Room for the whole burst in offline storage: no message is refused for a full store.
    let modules = MODULES.replace(
        "[modules.offline]\n",
        "[modules.offline]\nmax_per_user = 100000\n",
    );
    let mut server = Server::start_with(2, &users, "", &modules);
    // carol's 5 messages are handled and acknowledged before the stop, and she asks nothing more:
    // only the last <a/> of the close can tell her h again.
    let mut carol = server.login("carol", "c", None);
    enable_sm(&mut carol);
    send_acknowledged(&mut carol, "bob0@localhost", "c", 5);
    let mut alice = server.login("alice", "w", None);
    enable_sm(&mut alice);
    let burst = round_robin_burst(&bobs, N, 100);
    let mut w = alice.sock.try_clone().unwrap();
    // The server stops reading at the stop: the write then fails, which is expected.
    let writer = std::thread::spawn(move || {
        let _ = w.write_all(&burst);
    });
    // Read alice's answers until the server has acknowledged a good part of the burst, then stop it.
    let mut raw = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let acked = |raw: &[u8]| -> usize {
        let text = String::from_utf8_lossy(raw);
        text.match_indices("<a xmlns='urn:xmpp:sm:3' h='")
            .filter_map(|(at, m)| {
                let rest = &text[at + m.len()..];
                rest[..rest.find('\'')?].parse::<usize>().ok()
            })
            .max()
            .unwrap_or(0)
    };
    alice
        .sock
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    while acked(&raw) < N / 8 {
        let n = alice.sock.read(&mut buf).expect("alice's acknowledgements");
        assert!(
            n > 0,
            "the stream ended early: {}",
            String::from_utf8_lossy(&raw[raw.len().saturating_sub(600)..])
        );
        raw.extend_from_slice(&buf[..n]);
    }
    assert!(server.stop().is_some_and(|st| st.success()));
    // What the server wrote before it closed the stream.
    loop {
        match alice.sock.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
        }
    }
    writer.join().unwrap();
    let carol_end =
        String::from_utf8_lossy(&carol.read_until_quiet(Duration::from_secs(2))).into_owned();
    assert!(
        carol_end.starts_with("<a xmlns='urn:xmpp:sm:3' h='5'/><stream:error><system-shutdown"),
        "carol's last ack: {carol_end}"
    );
    let h = acked(&raw);
    // XEP-0198: the last <a/> goes right before the stream error, counting what was handled.
    let text = String::from_utf8_lossy(&raw);
    let last = text
        .rfind("<a xmlns='urn:xmpp:sm:3' h='")
        .expect("an acknowledgement");
    assert!(
        text[last..].contains(&format!("h='{h}'/><stream:error><system-shutdown")),
        "the last ack is not right before the stream error: {}",
        &text[last..]
    );
    let answered: Vec<String> = String::from_utf8_lossy(&raw)
        .split("<message ")
        .filter(|m| m.contains("type='error'"))
        .filter_map(|m| {
            let at = m.find("id='")? + 4;
            Some(m[at..at + m[at..].find('\'')?].to_owned())
        })
        .collect();

    server.spawn(2);
    let mut stored = Vec::new();
    for b in &bobs {
        let mut c = server.login(b, "r", None);
        c.send("<presence/>");
        let (ids, _, _) = parse_messages(&c.read_until_quiet(Duration::from_secs(2)), "none");
        stored.extend(ids);
    }
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for id in stored.iter().chain(&answered) {
        *seen.entry(id.as_str()).or_default() += 1;
    }
    let missing: Vec<usize> = (0..h)
        .filter(|i| !seen.contains_key(format!("m{i}").as_str()))
        .collect();
    let twice: Vec<&&str> = seen
        .iter()
        .filter(|(_, &n)| n > 1)
        .map(|(k, _)| k)
        .collect();
    eprintln!(
        "graceful stop: acknowledged {h}, stored {}, answered {}, missing {}",
        stored.len(),
        answered.len(),
        missing.len()
    );
    assert!(
        missing.is_empty(),
        "acknowledged {h} but {} missing: {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    assert!(twice.is_empty(), "twice: {twice:?}");
}

/// A flood to offline users faster than the store writes: the server stops reading the sender
/// while the store is far behind, instead of refusing store jobs (which dropped the messages they
/// carried, and acknowledged them). Every message is stored exactly once.
#[test]
fn a_flood_to_offline_users_waits_for_the_store() {
    // 100 recipients, each getting offline storage's default limit (1 000).
    const N: usize = 100_000;
    let bobs: Vec<String> = (0..100).map(|i| format!("bob{i}")).collect();
    let mut users: Vec<&str> = bobs.iter().map(String::as_str).collect();
    users.push("alice");
    let server = Server::start_with(1, &users, "", MODULES);
    let mut alice = server.login("alice", "w", None);
    enable_sm(&mut alice);
    let burst = round_robin_burst(&bobs, N, 0);
    let mut w = alice.sock.try_clone().unwrap();
    let writer = std::thread::spawn(move || w.write_all(&burst).unwrap());
    writer.join().unwrap();
    // Everything taken is handled (stored) in the end: ask until the ack covers the whole burst
    // (an <r/> waits up to 10 s for the stanzas before it, then is answered with what is handled).
    alice
        .sock
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    // The server reads the <r/> only after storing what came before it, which a loaded machine
    // may take longer than one read timeout for: a silent read is "not yet", up to the deadline.
    let since = Instant::now();
    let mut asked = false;
    loop {
        if !asked {
            alice.send("<r xmlns='urn:xmpp:sm:3'/>");
            asked = true;
        }
        let answer = alice.try_next_stanza();
        assert!(
            since.elapsed() < Duration::from_secs(240),
            "the burst was not handled in 240 s"
        );
        let Some(a) = answer.filter(|s| s.name() == "a") else {
            continue;
        };
        let h: usize = a.attr("h").and_then(|h| h.parse().ok()).expect("h");
        if h == N {
            break;
        }
        asked = false;
    }
    let mut seen = vec![0u8; N];
    for b in &bobs {
        let mut c = server.login(b, "r", None);
        c.send("<presence/>");
        // Until this user's share came, or nothing more for 2 s.
        let mut raw = Vec::new();
        let ids = loop {
            let more = c.read_until_quiet(Duration::from_millis(200));
            raw.extend_from_slice(&more);
            let (ids, _, _) = parse_messages(&raw, "none");
            if ids.len() >= N / bobs.len() {
                break ids;
            }
            if more.is_empty() {
                let more = c.read_until_quiet(Duration::from_secs(2));
                raw.extend_from_slice(&more);
                if more.is_empty() {
                    break parse_messages(&raw, "none").0;
                }
            }
        };
        for id in ids {
            seen[id[1..].parse::<usize>().unwrap()] += 1;
        }
    }
    let errors = String::from_utf8_lossy(&alice.raw)
        .matches("type='error'")
        .count();
    let missing = seen.iter().filter(|&&n| n == 0).count();
    let twice = seen.iter().filter(|&&n| n > 1).count();
    assert_eq!(
        (missing, twice, errors),
        (0, 0, 0),
        "missing, stored twice, answered with an error"
    );
}
