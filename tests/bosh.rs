//! BOSH (XEP-0124/0206) at `/http-bind` over a real socket: session creation, SASL PLAIN,
//! restart, bind, a message out to a TCP client and one back through a held request, repeated
//! rid replay, wrong sid, rid out of the window.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{Server, PASSWORD};
use petrel::xml::Stanza;

const NS: &str = "xmlns='http://jabber.org/protocol/httpbind'";

/// A POST whose response is read later (a held request stays open meanwhile).
struct Pending(TcpStream);

fn post(port: u16, body: &str) -> Pending {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let req = format!(
        "POST /http-bind HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/xml; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).unwrap();
    Pending(s)
}

impl Pending {
    /// The status and body of the response.
    fn response(mut self) -> (u16, String) {
        let mut raw = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            if let Some(head_end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&raw[..head_end]).to_string();
                let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse().unwrap())
                    })
                    .expect("content-length");
                if raw.len() >= head_end + 4 + len {
                    let body = &raw[head_end + 4..head_end + 4 + len];
                    return (status, String::from_utf8(body.to_vec()).unwrap());
                }
            }
            let n = self.0.read(&mut buf).unwrap();
            assert!(n > 0, "connection closed before the response");
            raw.extend_from_slice(&buf[..n]);
        }
    }
}

fn roundtrip(port: u16, body: &str) -> (u16, String) {
    post(port, body).response()
}

fn attr(body: &str, name: &str) -> Option<String> {
    let s = Stanza::parse(body.as_bytes().to_vec()).unwrap();
    s.attr(name).map(|v| v.into_owned())
}

fn start() -> (Server, u16) {
    // Two shards: requests of one session land on either (forwarded over the mesh).
    Server::start_http(2, &["alice", "bob"], "handlers = [\"bosh\"]", "")
}

/// Creates a session and logs `user` in with resource `res` (SASL PLAIN, restart, bind);
/// returns the sid and the next rid.
fn bosh_login(port: u16, user: &str, res: &str) -> (String, u64) {
    let (status, b) = roundtrip(
        port,
        &format!(
            "<body {NS} xmlns:xmpp='urn:xmpp:xbosh' rid='1000' to='localhost' wait='20' hold='1' \
             ver='1.6' xml:lang='en' xmpp:version='1.0'/>"
        ),
    );
    assert_eq!(status, 200, "{b}");
    let sid = attr(&b, "sid").expect("sid");
    assert_eq!(attr(&b, "requests").as_deref(), Some("2"));
    assert!(b.contains("<mechanism>PLAIN</mechanism>"), "{b}");

    use base64::Engine;
    let token = base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{PASSWORD}"));
    let (_, b) = roundtrip(
        port,
        &format!(
            "<body {NS} rid='1001' sid='{sid}'><auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' \
             mechanism='PLAIN'>{token}</auth></body>"
        ),
    );
    assert!(b.contains("<success"), "{b}");
    let (_, b) = roundtrip(
        port,
        &format!(
            "<body {NS} xmlns:xmpp='urn:xmpp:xbosh' rid='1002' sid='{sid}' to='localhost' \
             xmpp:restart='true'/>"
        ),
    );
    assert!(b.contains("urn:ietf:params:xml:ns:xmpp-bind"), "{b}");
    let (_, b) = roundtrip(
        port,
        &format!(
            "<body {NS} rid='1003' sid='{sid}'><iq xmlns='jabber:client' type='set' id='b'>\
             <bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>{res}</resource></bind>\
             </iq></body>"
        ),
    );
    assert!(
        b.contains(&format!("<jid>{user}@localhost/{res}</jid>")),
        "{b}"
    );
    (sid, 1004)
}

#[test]
fn bosh_session_login_messages_and_replay() {
    let (server, port) = start();
    let mut bob = server.login("bob", "tcp", None);
    let (sid, _) = bosh_login(port, "alice", "web");

    // An empty request is held; the next one (carrying a message) releases it and is held itself.
    let held = post(port, &format!("<body {NS} rid='1004' sid='{sid}'/>"));
    let carrying = post(
        port,
        &format!(
            "<body {NS} rid='1005' sid='{sid}'><message xmlns='jabber:client' to='bob@localhost/tcp' \
             type='chat'><body>from the web</body></message></body>"
        ),
    );
    let (status, b) = held.response();
    assert_eq!(status, 200);
    assert!(!b.contains("<message"), "{b}");
    let m = bob.expect("message from alice", |s| s.name() == "message");
    assert_eq!(common::body(&m).as_deref(), Some("from the web"));
    assert_eq!(m.from().as_deref(), Some("alice@localhost/web"));

    // Bob answers: it arrives on the held request.
    bob.chat("alice@localhost/web", "from tcp");
    let (status, first) = carrying.response();
    assert_eq!(status, 200);
    assert!(first.contains("<body>from tcp</body>"), "{first}");
    assert!(first.contains("xmlns='jabber:client'"), "{first}");

    // The response to 1005 was "lost": the same rid gets the same bytes again.
    let (_, replay) = roundtrip(port, &format!("<body {NS} rid='1005' sid='{sid}'/>"));
    assert_eq!(replay, first);

    // A rid beyond the window ends the session.
    let (status, b) = roundtrip(port, &format!("<body {NS} rid='1010' sid='{sid}'/>"));
    assert_eq!(status, 200);
    assert_eq!(attr(&b, "type").as_deref(), Some("terminate"));
    assert_eq!(attr(&b, "condition").as_deref(), Some("item-not-found"));
    let (_, b) = roundtrip(port, &format!("<body {NS} rid='1006' sid='{sid}'/>"));
    assert_eq!(attr(&b, "condition").as_deref(), Some("item-not-found"));
}

#[test]
fn bosh_unknown_sid_and_bad_xml() {
    let (_server, port) = start();
    let (status, b) = roundtrip(port, &format!("<body {NS} rid='5' sid='0.nosuchsession'/>"));
    assert_eq!(status, 200);
    assert_eq!(attr(&b, "type").as_deref(), Some("terminate"));
    assert_eq!(attr(&b, "condition").as_deref(), Some("item-not-found"));
    let (_, b) = roundtrip(port, &format!("<body {NS} rid='5' sid='9999.x'/>"));
    assert_eq!(attr(&b, "condition").as_deref(), Some("item-not-found"));
    let (_, b) = roundtrip(port, &format!("<body {NS} rid='5'><unclosed></body>"));
    assert_eq!(attr(&b, "condition").as_deref(), Some("bad-request"));
}

/// A malformed request naming a live session is a terminal error (XEP-0124 §17.2): the session
/// ends at once. Its resource goes offline (an IQ to it is answered `service-unavailable` now, not
/// after the inactivity timeout) and its sid is unknown from then on.
#[test]
fn a_malformed_request_ends_its_session() {
    let (server, port) = start();
    let mut bob = server.login("bob", "tcp", None);
    let (sid, rid) = bosh_login(port, "alice", "web");
    let (status, b) = roundtrip(
        port,
        &format!(
            "<body {NS} rid='{rid}' sid='{sid}'><message xmlns='jabber:client'><body></message>\
             </body>"
        ),
    );
    assert_eq!(status, 200);
    assert_eq!(attr(&b, "type").as_deref(), Some("terminate"), "{b}");
    assert_eq!(attr(&b, "condition").as_deref(), Some("bad-request"), "{b}");
    let t0 = std::time::Instant::now();
    let (_, b) = roundtrip(port, &format!("<body {NS} rid='{}' sid='{sid}'/>", rid + 1));
    assert_eq!(
        attr(&b, "condition").as_deref(),
        Some("item-not-found"),
        "{b}"
    );
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "held {:?}",
        t0.elapsed()
    );
    bob.send(
        "<iq type='get' id='gone' to='alice@localhost/web'><ping xmlns='urn:xmpp:ping'/></iq>",
    );
    let r = bob.expect("the ping's answer", |s| s.id().as_deref() == Some("gone"));
    assert_eq!(
        common::error_condition(&r).as_deref(),
        Some("service-unavailable")
    );
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "answered after {:?}",
        t0.elapsed()
    );
}

/// An IQ answer in a response the client never confirmed belongs to the session that asked: when a
/// new session binds the same resource and replaces it, the answer is not handed to the new one
/// (RFC 6120 §8.2.3), which never sent that request.
#[test]
fn a_replaced_sessions_iq_answers_do_not_reach_its_successor() {
    let (server, port) = start();
    let mut bob = server.login("bob", "tcp", None);
    let (first, rid) = bosh_login(port, "alice", "same");
    let (_, b) = roundtrip(
        port,
        &format!(
            "<body {NS} rid='{rid}' sid='{first}'><iq xmlns='jabber:client' type='get' id='asked' \
             to='localhost'><ping xmlns='urn:xmpp:ping'/></iq></body>"
        ),
    );
    assert!(b.contains("id='asked'"), "{b}");
    // The first session never confirms that response: a second one binds the same resource.
    let (second, rid) = bosh_login(port, "alice", "same");
    let held = post(port, &format!("<body {NS} rid='{rid}' sid='{second}'/>"));
    bob.chat("alice@localhost/same", "to the second");
    let (_, b) = held.response();
    assert!(!b.contains("id='asked'"), "{b}");
    assert!(b.contains("to the second"), "{b}");
}

#[test]
fn bosh_terminate_delivers_its_stanzas_on_every_shard() {
    let (server, port) = start();
    let mut bob = server.login("bob", "tcp", None);
    // Sessions until one lives on each shard (the sid names it; connections land on either).
    let mut by_shard: [Option<String>; 2] = [None, None];
    for i in 0..40 {
        if by_shard.iter().all(Option::is_some) {
            break;
        }
        let (sid, _) = bosh_login(port, "alice", &format!("w{i}"));
        let shard: usize = sid.split('.').next().unwrap().parse().unwrap();
        by_shard[shard].get_or_insert(sid);
    }
    for (shard, sid) in by_shard.iter().enumerate() {
        let sid = sid.as_deref().expect("a session on every shard");
        let (status, b) = roundtrip(
            port,
            &format!(
                "<body {NS} rid='1004' sid='{sid}' type='terminate'><message xmlns='jabber:client' \
                 to='bob@localhost/tcp'><body>bye from {shard}</body></message></body>"
            ),
        );
        assert_eq!(status, 200);
        assert_eq!(attr(&b, "type").as_deref(), Some("terminate"), "{b}");
        assert_eq!(attr(&b, "condition"), None, "{b}");
        let m = bob.expect("the terminate's message", |s| s.name() == "message");
        assert_eq!(common::body(&m), Some(format!("bye from {shard}")));
        let (_, b) = roundtrip(port, &format!("<body {NS} rid='1005' sid='{sid}'/>"));
        assert_eq!(attr(&b, "condition").as_deref(), Some("item-not-found"));
    }
}

#[test]
fn bosh_answers_cors_preflight_and_allows_any_origin() {
    let (_server, port) = start();
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(
        b"OPTIONS /http-bind HTTP/1.1\r\nHost: localhost\r\nOrigin: http://app.example\r\n\
          Access-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: content-type\r\n\
          Connection: close\r\n\r\n",
    )
    .unwrap();
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    let lower = resp.to_ascii_lowercase();
    assert!(resp.starts_with("HTTP/1.1 204"), "{resp}");
    assert!(lower.contains("access-control-allow-origin: *"), "{resp}");
    assert!(
        lower.contains("access-control-allow-methods: post, options"),
        "{resp}"
    );
    assert!(
        lower.contains("access-control-allow-headers: content-type"),
        "{resp}"
    );
    // The answers themselves carry the origin permission too.
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let body = format!("<body {NS} rid='5' sid='0.nosuchsession'/>");
    s.write_all(
        format!(
            "POST /http-bind HTTP/1.1\r\nHost: localhost\r\nOrigin: http://app.example\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
    .unwrap();
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    assert!(
        resp.to_ascii_lowercase()
            .contains("access-control-allow-origin: *"),
        "{resp}"
    );
}

/// Alice on BOSH gets `body` from bob on a held request (rid 1004), whose answer is read here.
fn message_on_a_held_request(port: u16, sid: &str, bob: &mut common::Client, body: &str) {
    let held = post(port, &format!("<body {NS} rid='1004' sid='{sid}'/>"));
    bob.chat("alice@localhost/web", body);
    let (status, b) = held.response();
    assert_eq!(status, 200);
    assert!(b.contains(&format!("<body>{body}</body>")), "{b}");
}

/// The next message alice's TCP session gets, by body.
fn next_message_body(alice: &mut common::Client) -> Option<String> {
    let m = alice.expect("a message", |s| s.name() == "message");
    common::body(&m)
}

/// A BOSH client's connection can die after the server wrote a response: the client then never
/// had it (XEP-0124 §9.2). Until a later request shows it did, its stanzas are not delivered; when
/// the session ends (here: the client comes back over TCP with the same resource, which replaces
/// the BOSH session), they go back to the session manager, with what was still queued.
#[test]
fn a_response_the_client_never_acknowledged_is_delivered_again() {
    let (server, port) = start();
    let mut bob = server.login("bob", "tcp", None);
    let (sid, _) = bosh_login(port, "alice", "web");
    message_on_a_held_request(port, &sid, &mut bob, "in a lost answer");
    // No request held: this one waits in the session's queue.
    bob.chat("alice@localhost/web", "still queued");
    // Give the second message time to reach the queue (if it did not, it still arrives below,
    // straight to the new session).
    std::thread::sleep(Duration::from_millis(300));
    let mut alice = server.login("alice", "web", None);
    assert_eq!(
        next_message_body(&mut alice).as_deref(),
        Some("in a lost answer")
    );
    assert_eq!(
        next_message_body(&mut alice).as_deref(),
        Some("still queued")
    );
}

/// The other side of the test above: once the client's rids move past a response (here two
/// requests later, out of the window of `requests='2'`), its stanzas are delivered and never sent
/// again.
#[test]
fn a_response_past_the_window_is_not_delivered_again() {
    let (server, port) = start();
    let mut bob = server.login("bob", "tcp", None);
    let (sid, _) = bosh_login(port, "alice", "web");
    message_on_a_held_request(port, &sid, &mut bob, "received");
    // Two more requests: the second shows the answer to 1004 arrived (the first is answered
    // when the second comes, hold='1').
    let first = post(port, &format!("<body {NS} rid='1005' sid='{sid}'/>"));
    let _second = post(port, &format!("<body {NS} rid='1006' sid='{sid}'/>"));
    let (status, _) = first.response();
    assert_eq!(status, 200);
    let mut alice = server.login("alice", "web", None);
    bob.chat("alice@localhost/web", "after");
    assert_eq!(next_message_body(&mut alice).as_deref(), Some("after"));
}

/// A client that vanishes does not come back for its session: `bosh_inactivity` ends it, and the
/// stanzas of the responses it never acknowledged go back to the session manager, here to the
/// account's other resource.
#[test]
fn a_vanished_clients_unacknowledged_stanzas_go_to_its_other_resource() {
    let (server, port) = Server::start_http(
        2,
        &["alice", "bob"],
        "handlers = [\"bosh\"]\nbosh_inactivity = 2",
        "",
    );
    let mut bob = server.login("bob", "tcp", None);
    let (sid, _) = bosh_login(port, "alice", "web");
    let mut phone = server.login("alice", "phone", Some(0));
    message_on_a_held_request(port, &sid, &mut bob, "in a lost answer");
    // The web resource is still bound (its session waits for the client): nothing for the phone
    // until the session ends, 2 s after its last request was answered.
    assert_eq!(
        next_message_body(&mut phone).as_deref(),
        Some("in a lost answer")
    );
    // The session is over.
    let (_, b) = roundtrip(port, &format!("<body {NS} rid='1005' sid='{sid}'/>"));
    assert_eq!(
        attr(&b, "condition").as_deref(),
        Some("item-not-found"),
        "{b}"
    );
}

/// A BOSH session costs its creator no socket: one address may hold 32 unauthenticated sessions
/// per shard, not every session the shard allows until the auth timeout; a session that logs in
/// gives its slot back.
#[test]
fn one_address_holds_a_bounded_number_of_unauthenticated_sessions() {
    let (_server, port) = Server::start_http(1, &["alice"], "handlers = [\"bosh\"]", "");
    let create = || {
        roundtrip(
            port,
            &format!(
                "<body {NS} xmlns:xmpp='urn:xmpp:xbosh' rid='1' to='localhost' wait='20' hold='1' \
                 ver='1.6' xmpp:version='1.0'/>"
            ),
        )
    };
    let made = |n| {
        (0..n)
            .map(|_| create())
            .filter(|(_, b)| attr(b, "sid").is_some())
            .count()
    };
    assert_eq!(made(31), 31);
    // The 32nd logs in: its slot comes back once it is bound.
    bosh_login(port, "alice", "r");
    assert_eq!(made(3), 1, "one slot was free again");
    let (status, b) = create();
    assert_eq!(status, 200);
    assert_eq!(attr(&b, "type").as_deref(), Some("terminate"), "{b}");
    assert_eq!(
        attr(&b, "condition").as_deref(),
        Some("policy-violation"),
        "{b}"
    );
}

/// A body announced larger than the limit is refused at once (not after the client sent it, or
/// after the read time-out when it never does).
#[test]
fn a_body_announced_too_large_is_refused_at_once() {
    let (_server, port) = start();
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(
        b"POST /http-bind HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/xml; charset=utf-8\r\n\
          Content-Length: 10000000000\r\nConnection: close\r\n\r\n<body rid='1'/>",
    )
    .unwrap();
    // Answered within the socket's read time-out (20 s), below the server's 30 s for a body:
    // the answer did not wait for the announced bytes.
    let (status, body) = Pending(s).response();
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        attr(&body, "condition").as_deref(),
        Some("policy-violation"),
        "{body}"
    );
}

/// A chunked body that cannot be read (a chunk size that is not hexadecimal) is a request of
/// unacceptable format: `bad-request` (XEP-0124 §17.1), not a broken session rule.
#[test]
fn a_malformed_chunked_body_is_a_bad_request() {
    let (_server, port) = start();
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(
        b"POST /http-bind HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/xml; charset=utf-8\r\n\
          Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\n<body\r\nzz\r\n rid='1'/>\r\n0\r\n\r\n",
    )
    .unwrap();
    let (status, body) = Pending(s).response();
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        attr(&body, "condition").as_deref(),
        Some("bad-request"),
        "{body}"
    );
}

/// The answer to a client's terminate is an empty body (XEP-0124 §13; StanzaJS threw on stanzas
/// in it), and what waited for the client then is not lost: it goes back to the session manager
/// (here: to the user's other resource).
#[test]
fn a_terminate_is_answered_empty_and_what_waited_is_routed_again() {
    let (server, port) = start();
    let mut tcp = server.login("alice", "tcp", Some(0));
    let mut bob = server.login("bob", "b", None);
    let (sid, rid) = bosh_login(port, "alice", "web");
    // No request is held: the message waits in the session's queue.
    bob.send("<message to='alice@localhost/web' type='chat' id='q1'><body>queued</body></message>");
    bob.sync();
    std::thread::sleep(Duration::from_millis(300));
    let (status, b) = roundtrip(
        port,
        &format!("<body {NS} rid='{rid}' sid='{sid}' type='terminate'/>"),
    );
    assert_eq!(status, 200);
    assert_eq!(attr(&b, "type").as_deref(), Some("terminate"), "{b}");
    assert!(!b.contains("<message"), "{b}");
    let m = tcp.expect("the queued message", |s| s.name() == "message");
    assert_eq!(common::body(&m).as_deref(), Some("queued"));
}
