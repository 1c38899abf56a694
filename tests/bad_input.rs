//! The bad-input catalogue over real sockets (docs/RELIABILITY.md, "Bad input catalogue"): for each
//! abusive input, the RFC 6120 answer, whether the connection is closed, that two other logged-in
//! users still talk, and that the server's RSS stays bounded. The restricted-XML cases (DTDs,
//! comments, PIs, undefined entities, unbound prefixes, invalid UTF-8, wrong namespaces, unknown host,
//! old version, 40-deep nesting, too many attributes, stanza before the header) and the slow-reader
//! flood are in tests/c2s_wire.rs; this file adds the large, deep, many and slow ones, addressing
//! and authorization.

mod common;

use common::{error_condition, rss_kib, Client, Server};
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Samples a process's RSS every 5 ms on a thread until stopped: the peak during a case.
struct Peak {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<u64>,
}

impl Peak {
    fn start(pid: u32) -> Peak {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut peak = rss_kib(pid);
            while !s.load(Ordering::Relaxed) {
                peak = peak.max(rss_kib(pid));
                std::thread::sleep(Duration::from_millis(5));
            }
            peak.max(rss_kib(pid))
        });
        Peak { stop, thread }
    }

    fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

/// The condition of the stream error in `text`, if any.
fn stream_error(text: &str) -> Option<String> {
    let rest = &text[text.find("<stream:error>")? + "<stream:error><".len()..];
    let end = rest.find([' ', '/', '>'])?;
    Some(rest[..end].to_owned())
}

/// The server, two users who keep talking through every case, and the RSS figures for the table.
struct Bench {
    server: Server,
    bob: Client,
    carol: Client,
    n: u32,
}

impl Bench {
    /// A server with the default config but `auth_timeout` (seconds), bob and carol logged in.
    fn new(auth_timeout: u32) -> Bench {
        let listener = format!("auth_timeout = {auth_timeout}");
        let server = Server::start_with(2, &["alice", "bob", "carol"], &listener, "");
        let mut bob = server.login("bob", "b", Some(0));
        let mut carol = server.login("carol", "c", Some(0));
        bob.home_sync();
        carol.home_sync();
        Bench {
            server,
            bob,
            carol,
            n: 0,
        }
    }

    fn rss(&self) -> u64 {
        rss_kib(self.server.pid())
    }

    /// Bob and carol, logged in before the case, still exchange a message.
    fn others_unaffected(&mut self, case: &str) {
        self.n += 1;
        let text = format!("after {case} {}", self.n);
        self.carol.chat("bob@localhost", &text);
        let m = self
            .bob
            .expect("carol's message", |s| s.name() == "message");
        assert_eq!(common::body(&m).as_deref(), Some(text.as_str()), "{case}");
    }

    /// Prints the catalogue row (the doc's table is filled from these lines).
    fn report(&self, case: &str, answer: &str, closed: bool, before: u64, after: u64) {
        eprintln!(
            "catalogue | {case} | {answer} | {} | {before} -> {after} KiB |",
            if closed { "closed" } else { "open" }
        );
    }
}

/// A bound client sends `input`; the stream must end with stream error `cond`. RSS growth bounded by
/// `max_growth_kib`.
fn closes_with(b: &mut Bench, case: &str, input: &[u8], cond: &str, max_growth_kib: u64) {
    let before = b.rss();
    let mut c = b.server.login("alice", case, None);
    let sampler = Peak::start(b.server.pid());
    // A writer thread: the server answers (and closes) long before a 10 MB input is all sent.
    let mut w = c.sock.try_clone().unwrap();
    let data = input.to_vec();
    let writer = std::thread::spawn(move || {
        for chunk in data.chunks(64 * 1024) {
            if w.write_all(chunk).is_err() {
                break;
            }
        }
    });
    let text = c.read_to_close();
    writer.join().unwrap();
    let peak = sampler.stop();
    b.report(case, &format!("stream error `{cond}`"), true, before, peak);
    assert_eq!(stream_error(&text).as_deref(), Some(cond), "{case}: {text}");
    assert!(
        peak.saturating_sub(before) < max_growth_kib,
        "{case}: RSS grew from {before} to {peak} KiB"
    );
    b.others_unaffected(case);
}

#[test]
fn bad_input_catalogue() {
    // A short auth_timeout so the slowloris case ends quickly.
    let mut b = Bench::new(3);
    let huge = format!(
        "<message to='bob@localhost'><body>{}</body></message>",
        "x".repeat(10 << 20)
    );
    // 10 MB stanza against the default max_stanza_size of 64 KiB: refused before it is buffered.
    closes_with(
        &mut b,
        "10 MB stanza",
        huge.as_bytes(),
        "policy-violation",
        8 << 10,
    );
    // 100 000-deep nesting against max_depth 32.
    let deep = format!("<message>{}", "<a>".repeat(100_000));
    closes_with(
        &mut b,
        "100 000-deep nesting",
        deep.as_bytes(),
        "policy-violation",
        8 << 10,
    );
    // An unfinished 10 MB start tag (one attribute value that never ends).
    let tag = format!("<message to='{}", "y".repeat(10 << 20));
    closes_with(
        &mut b,
        "10 MB start tag",
        tag.as_bytes(),
        "policy-violation",
        8 << 10,
    );
    // Billion laughs inside the stream: DTDs are refused, nothing is expanded.
    let laughs = "<!DOCTYPE lolz [<!ENTITY lol 'lol'><!ENTITY lol2 '&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;'><!ENTITY lol3 '&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;'>]><message><body>&lol3;</body></message>";
    closes_with(
        &mut b,
        "billion laughs",
        laughs.as_bytes(),
        "restricted-xml",
        8 << 10,
    );
    // Invalid UTF-8 (an overlong '/') in an attribute value.
    closes_with(
        &mut b,
        "invalid UTF-8 in an attribute",
        b"<message to='bob\xc0\xaf@localhost'/>",
        "unsupported-encoding",
        8 << 10,
    );
    // A stanza in the server-to-server namespace on a client stream: {jabber:server}message is not a
    // first-level element a client stream supports (RFC 6120 §4.9.3.24).
    closes_with(
        &mut b,
        "stanza in jabber:server",
        b"<message xmlns='jabber:server' to='bob@localhost'><body>x</body></message>",
        "unsupported-stanza-type",
        8 << 10,
    );
    // A second stream header after bind (a restart nothing asked for): refused at its name. As an
    // element it swallowed every later stanza, unanswered, until it ended or grew too large.
    closes_with(
        &mut b,
        "stream header inside the stream",
        b"<stream:stream to='localhost' xmlns='jabber:client' \
          xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>\
          <iq type='get' id='p' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>",
        "unsupported-stanza-type",
        8 << 10,
    );
    // A stray quote in a start tag: not well-formed at once. The quote was taken as opening a
    // value, so every `>` up to the next quote of the stream was hidden and the stream stalled,
    // swallowing the stanzas after it, unanswered.
    closes_with(
        &mut b,
        "stray quote in a start tag",
        b"<message to='bob@localhost' a='b''/>\
          <iq type='get' id='p' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>",
        "not-well-formed",
        8 << 10,
    );
    // An attribute value never closed, and stanzas after it without that quote: refused at the
    // next `<` (no value holds one); it hid them all until the size limit.
    closes_with(
        &mut b,
        "attribute value never closed",
        b"<message to='bob@localhost' id='m1' a='x\"/>\
          <iq type=\"get\" id=\"p\" to=\"localhost\"><ping xmlns=\"urn:xmpp:ping\"/></iq>",
        "not-well-formed",
        8 << 10,
    );

    bad_jids(&mut b);
    spoofed_from(&mut b);
    prefixed_stanzas(&mut b);
    malformed_iqs(&mut b);
    before_auth(&mut b);
    versions(&mut b);
    slowloris(&mut b);
    iq_flood_without_reading(&mut b);
}

#[test]
fn idle_unauthenticated_connections() {
    // Long enough to open them all (one at a time) before the first times out.
    let mut b = Bench::new(20);
    idle_unauthenticated(&mut b, 2000);
}

/// Malformed `to` addresses: a stanza error `jid-malformed` (RFC 6120 §8.3.3.8), the stream stays.
fn bad_jids(b: &mut Bench) {
    let before = b.rss();
    let mut a = b.server.login("alice", "jids", Some(0));
    let long = "l".repeat(1024);
    let bad = [
        "a@b@localhost".to_owned(),
        "@localhost".to_owned(),
        "alice@".to_owned(),
        "alice@localhost/".to_owned(),
        "al ice@localhost".to_owned(),
        format!("{long}@localhost"),
        "alice@local..host".to_owned(),
    ];
    for (i, to) in bad.iter().enumerate() {
        a.send(&format!(
            "<message to='{to}' id='j{i}' type='chat'><body>x</body></message>"
        ));
        let id = format!("j{i}");
        let e = a.expect("error reply", |s| s.id().as_deref() == Some(id.as_str()));
        assert_eq!(e.type_().as_deref(), Some("error"), "to={to}");
        assert_eq!(
            error_condition(&e).as_deref(),
            Some("jid-malformed"),
            "to={to}: {}",
            String::from_utf8_lossy(e.bytes())
        );
    }
    a.sync();
    b.report(
        "bad JIDs in `to` (7 kinds)",
        "stanza error `jid-malformed` (modify) for each",
        false,
        before,
        b.rss(),
    );
    b.others_unaffected("bad JIDs");
}

/// A `from` naming someone else: the server stamps the real sender (RFC 6120 §8.1.2.1), or refuses
/// the stream with `invalid-from`; either way bob never sees the spoofed address.
fn spoofed_from(b: &mut Bench) {
    let before = b.rss();
    let mut a = b.server.login("alice", "spoof", Some(0));
    a.send("<message from='carol@localhost/c' to='bob@localhost' type='chat'><body>spoof</body></message>");
    a.sync();
    let m = b
        .bob
        .expect("the spoofed message", |s| s.name() == "message");
    assert_eq!(common::body(&m).as_deref(), Some("spoof"));
    assert_eq!(m.from().as_deref(), Some("alice@localhost/spoof"));
    b.report(
        "spoofed `from` (another user's JID)",
        "`from` replaced by the sender's full JID, delivered",
        false,
        before,
        b.rss(),
    );
    b.others_unaffected("spoofed from");
}

/// Stanzas written with a prefix bound to `jabber:client` (valid XML namespaces, RFC 6120
/// §4.8.3): a message reaches bob with its body and the sender's `from`, an IQ is answered, and
/// the stream stays open. They closed it with `unsupported-stanza-type`.
fn prefixed_stanzas(b: &mut Bench) {
    let before = b.rss();
    let mut a = b.server.login("alice", "prefix", Some(0));
    a.send(
        "<c:message xmlns:c='jabber:client' to='bob@localhost' type='chat'>\
         <c:body>prefixed</c:body></c:message>\
         <c:iq xmlns:c='jabber:client' type='get' id='pp' to='localhost'>\
         <ping xmlns='urn:xmpp:ping'/></c:iq>",
    );
    let r = a.expect("the ping's answer", |s| s.id().as_deref() == Some("pp"));
    assert_eq!(r.attr("type").as_deref(), Some("result"));
    let m = b
        .bob
        .expect("the prefixed message", |s| s.name() == "message");
    assert_eq!(common::body(&m).as_deref(), Some("prefixed"));
    assert_eq!(m.from().as_deref(), Some("alice@localhost/prefix"));
    a.sync();
    b.report(
        "stanzas with a prefix bound to `jabber:client`",
        "routed as unprefixed ones",
        false,
        before,
        b.rss(),
    );
    b.others_unaffected("prefixed stanzas");
}

/// IQs that break RFC 6120 §8.2.3, all addressed to bob: no `id`, a `type` no RFC defines, no
/// `type`, a get without a payload, a set with two. Each is answered `bad-request` by the server and
/// bob gets none; a result or an error without `id` is dropped (nothing may answer an answer).
fn malformed_iqs(b: &mut Bench) {
    let before = b.rss();
    let mut a = b.server.login("alice", "iqs", None);
    let ping = "<ping xmlns='urn:xmpp:ping'/>";
    let to = "to='bob@localhost/b'";
    let sent = [
        format!("<iq type='foo' id='i0' {to}>{ping}</iq>"),
        format!("<iq id='i1' {to}>{ping}</iq>"),
        format!("<iq type='get' id='i2' {to}/>"),
        format!("<iq type='set' id='i3' {to}>{ping}{ping}</iq>"),
        format!("<iq type='get' {to}>{ping}</iq>"),
        format!("<iq type='result' {to}/>"),
        format!("<iq type='error' {to}><error type='cancel'/></iq>"),
    ];
    for iq in &sent {
        a.send(iq);
    }
    a.send(&format!(
        "<iq type='get' to='localhost' id='done'>{ping}</iq>"
    ));
    let mut errors = Vec::new();
    loop {
        let s = a.next_stanza();
        if s.id().as_deref() == Some("done") {
            break;
        }
        let text = String::from_utf8_lossy(s.bytes());
        assert_eq!(s.type_().as_deref(), Some("error"), "{text}");
        assert_eq!(
            error_condition(&s).as_deref(),
            Some("bad-request"),
            "{text}"
        );
        assert_eq!(s.from().as_deref(), Some("bob@localhost/b"), "{text}");
        errors.push(s.id().map(|id| id.into_owned()));
    }
    let want = ["i0", "i1", "i2", "i3"].map(|i| Some(i.to_owned()));
    assert_eq!(errors[..], [&want[..], &[None]].concat()[..]);
    // Bob's next stanza is carol's message: none of the IQs reached him.
    b.carol.chat("bob@localhost", "after the IQs");
    let m = b.bob.next_stanza();
    let text = String::from_utf8_lossy(m.bytes());
    assert_eq!(common::body(&m).as_deref(), Some("after the IQs"), "{text}");
    b.report(
        "malformed IQs (no id, bad type, no type, 0 or 2 payloads)",
        "stanza error `bad-request` for each request, answers without id dropped; never delivered",
        false,
        before,
        b.rss(),
    );
    b.others_unaffected("malformed IQs");
}

/// Stanzas before authentication: stream error `not-authorized` (RFC 6120 §6.4.x, §8.1.1).
fn before_auth(b: &mut Bench) {
    for (case, stanza) in [
        (
            "message before auth",
            "<message to='bob@localhost' type='chat'><body>early</body></message>",
        ),
        ("presence before auth", "<presence/>"),
        (
            "roster get before auth",
            "<iq type='get' id='r1'><query xmlns='jabber:iq:roster'/></iq>",
        ),
    ] {
        let before = b.rss();
        let mut c = b.server.connect();
        c.open("localhost");
        assert_eq!(c.next_stanza().name(), "stream:features");
        c.send(stanza);
        let text = c.read_to_close();
        b.report(case, "stream error `not-authorized`", true, before, b.rss());
        assert_eq!(
            stream_error(&text).as_deref(),
            Some("not-authorized"),
            "{case}: {text}"
        );
        b.others_unaffected(case);
    }
}

/// Stream headers without a version, or with a newer major version.
fn versions(b: &mut Bench) {
    let before = b.rss();
    let mut c = b.server.connect();
    c.send("<?xml version='1.0'?><stream:stream to='localhost' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>");
    let text = c.read_to_close();
    b.report(
        "stream header without `version` (pre-1.0)",
        "stream error `unsupported-version`",
        true,
        before,
        b.rss(),
    );
    assert_eq!(
        stream_error(&text).as_deref(),
        Some("unsupported-version"),
        "{text}"
    );
    b.others_unaffected("no version");

    // RFC 6120 §4.7.5: the answer carries the lower of the two versions; the client may go on.
    let before = b.rss();
    let mut c = b.server.connect();
    c.send("<?xml version='1.0'?><stream:stream to='localhost' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='2.0'>");
    assert_eq!(c.next_stanza().name(), "stream:features");
    let header = String::from_utf8_lossy(&c.raw).into_owned();
    assert!(header.contains("version='1.0'"), "{header}");
    c.send("</stream:stream>");
    let text = c.read_to_close();
    assert!(stream_error(&text).is_none(), "{text}");
    b.report(
        "stream header with `version='2.0'`",
        "answered with `version='1.0'` and features (RFC 6120 §4.7.5); the stream goes on",
        false,
        before,
        b.rss(),
    );
    b.others_unaffected("version 2.0");
}

/// Slowloris: a stream header dribbled one byte at a time, never finished. The auth timeout (3 s here,
/// 30 s by default) closes it with `connection-timeout` whatever the client trickles.
fn slowloris(b: &mut Bench) {
    let before = b.rss();
    let mut c = b.server.connect();
    let header = b"<?xml version='1.0'?><stream:stream to='localhost' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0' a='";
    let mut w = c.sock.try_clone().unwrap();
    let trickle = std::thread::spawn(move || {
        // Until the server hangs up (or a minute: far beyond the timeout), a byte every 200 ms.
        for byte in header.iter().chain(std::iter::repeat(&b'z')).take(300) {
            if w.write_all(std::slice::from_ref(byte)).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    c.sock
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let text = c.read_to_close();
    trickle.join().unwrap();
    b.report(
        "slowloris (header one byte per 200 ms, never finished)",
        "stream error `connection-timeout` at `auth_timeout`",
        true,
        before,
        b.rss(),
    );
    assert_eq!(
        stream_error(&text).as_deref(),
        Some("connection-timeout"),
        "{text}"
    );
    b.others_unaffected("slowloris");
}

/// A flood of pings from a client that never reads its answers: once `outbound_queue_bytes` (256 KiB
/// by default) of answers wait, the server stops reading that connection (backpressure) instead of
/// buffering: the flooder's writes block, memory stays flat, everyone else goes on, and every request
/// taken is answered once the client reads.
fn iq_flood_without_reading(b: &mut Bench) {
    let before = b.rss();
    let mut c = b.server.login("alice", "flood", None);
    let one = "<iq type='get' to='localhost' id='flood-ping-with-a-long-id-to-fill-the-queue'><ping xmlns='urn:xmpp:ping'/></iq>";
    // Up to 40 MB of requests; their answers would be 40 MB too, far over the bound.
    let flood = one.repeat(400_000);
    let mut w = c.sock.try_clone().unwrap();
    // A write that cannot go on for 3 s means the server stopped reading: that is the answer
    // looked for (the flood never ends otherwise), not a speed assertion.
    w.set_write_timeout(Some(Duration::from_secs(3))).unwrap();
    let sampler = Peak::start(b.server.pid());
    let writer = std::thread::spawn(move || {
        // From where the last write stopped: a write cut short by the timeout took part of its
        // chunk, and skipping the rest sent the server broken XML.
        let bytes = flood.as_bytes();
        let mut sent = 0;
        while sent < bytes.len() {
            let end = (sent + 64 * 1024).min(bytes.len());
            match w.write(&bytes[sent..end]) {
                Ok(0) | Err(_) => break,
                Ok(n) => sent += n,
            }
        }
        sent
    });
    let sent = writer.join().unwrap();
    let peak = sampler.stop();
    // Everyone else is served while the flooder is stuck.
    b.others_unaffected("iq flood");
    // The flooder's answers: one per request the sockets took. The server reads the rest of the
    // requests as the client reads answers; on a loaded machine it may pause for seconds between
    // batches, so only a long silence counts as the end (a lost answer fails the count below).
    let requests = sent / one.len();
    c.sock
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut answers = 0;
    while answers < requests && c.try_next_stanza().is_some() {
        answers += 1;
    }
    b.report(
        "iq flood, answers never read",
        &format!(
            "server stops reading once `outbound_queue_bytes` (256 KiB) of answers wait \
             (backpressure: {requests} requests taken by the sockets, all {answers} answered once \
             the client reads); connection held until `idle_timeout`"
        ),
        false,
        before,
        peak,
    );
    assert!(
        sent < flood_len(one),
        "the whole flood was taken: no backpressure"
    );
    // Backpressure, not loss: every request the sockets took is answered once the client reads.
    assert_eq!(answers, requests, "requests taken but never answered");
    assert!(
        peak.saturating_sub(before) < 16 << 10,
        "RSS grew from {before} to {peak} KiB"
    );
    let _ = c.sock.shutdown(std::net::Shutdown::Both);
}

/// Bytes in the flood of [`iq_flood_without_reading`].
fn flood_len(one: &str) -> usize {
    one.len() * 400_000
}

/// Many connections that open a stream and then say nothing: held until `auth_timeout`, memory per
/// connection small, other users unaffected meanwhile.
fn idle_unauthenticated(b: &mut Bench, n: usize) {
    let before = b.rss();
    // From many addresses, 200 each: one address holds at most 256 per shard (see
    // `one_address_holds_a_bounded_number_of_unauthenticated_connections`).
    let mut conns: Vec<Client> = (0..n)
        .map(|i| {
            let from = std::net::Ipv4Addr::new(127, 0, 1, (i / 200) as u8 + 1);
            let mut c = Client::connect_from(b.server.port, from);
            c.open("localhost");
            c
        })
        .collect();
    // Every one got its features: all are accepted and parked in the pre-auth state.
    for c in &mut conns {
        assert_eq!(c.next_stanza().name(), "stream:features");
    }
    let held = b.rss();
    b.others_unaffected("2000 idle unauthenticated connections");
    // The auth timeout closes every one of them.
    for c in &mut conns {
        c.sock
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        let text = c.read_to_close();
        assert_eq!(stream_error(&text).as_deref(), Some("connection-timeout"));
    }
    drop(conns);
    let growth = held.saturating_sub(before);
    b.report(
        &format!("{n} idle unauthenticated connections (header sent, then nothing)"),
        &format!(
            "held, then stream error `connection-timeout` at `auth_timeout` ({} KiB per connection)",
            growth / n as u64
        ),
        true,
        before,
        held,
    );
    // A generous bound: 64 KiB per connection (measured: see docs/RELIABILITY.md).
    assert!(
        growth < 64 * n as u64,
        "RSS grew by {growth} KiB for {n} idle connections"
    );
    b.others_unaffected("after the idle connections closed");
}

/// One address holds at most 256 unauthenticated c2s connections per shard: the next gets a
/// `policy-violation` stream error at once (stalled streams from one address took every file
/// descriptor before, locking everyone out until they timed out). Another address still logs in,
/// and a slot comes back when a held connection goes.
#[test]
fn one_address_holds_a_bounded_number_of_unauthenticated_connections() {
    let server = Server::start_with(1, &["alice"], "", "");
    let attacker = std::net::Ipv4Addr::new(127, 0, 0, 5);
    let mut held: Vec<Client> = (0..256)
        .map(|_| {
            let mut c = Client::connect_from(server.port, attacker);
            c.open("localhost");
            c.next_stanza(); // the features: accepted and counted
            c
        })
        .collect();
    let mut refused = Client::connect_from(server.port, attacker);
    refused.open("localhost");
    let all = refused.read_to_close();
    assert!(
        all.contains("<policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"),
        "{all}"
    );
    let mut other = Client::connect_from(server.port, std::net::Ipv4Addr::new(127, 0, 0, 6));
    other.login_plain("alice", "localhost", common::PASSWORD, "r");
    drop(held.pop());
    std::thread::sleep(Duration::from_millis(300));
    let mut again = Client::connect_from(server.port, attacker);
    again.login_plain("alice", "localhost", common::PASSWORD, "r2");
}
