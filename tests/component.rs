//! External components (XEP-0114) on the wire: a raw component connects to `[[listen.component]]`,
//! users on both shards talk to it, and every way its stream can go wrong is answered with the
//! XEP's stream error.

mod common;

use common::component::{self, Component};
use common::{error_condition, free_port, Server};
use petrel::xmpp::ns;

const DOMAIN: &str = "echo.localhost";
const IDLE: &str = "idle.localhost";

fn start(shards: usize, users: &[&str]) -> (Server, u16) {
    let port = free_port();
    let server = Server::start_with(shards, users, "", &component::config(port, &[DOMAIN, IDLE]));
    (server, port)
}

/// Reads the rest of a stream the server closes; asserts it ended with `cond`.
fn closed_with(client: &mut common::Client, cond: &str) {
    let all = client.read_to_close();
    assert!(
        all.contains(&format!(
            "<{cond} xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"
        )),
        "expected stream error {cond}: {all}"
    );
    assert!(all.ends_with("</stream:stream>"), "{all}");
}

/// Logs `user` in with new resources until one session lives on each of the two shards (the kernel
/// spreads connections; the admin API tells where each landed).
fn one_session_per_shard(server: &Server, http: u16, user: &str) -> [common::Client; 2] {
    let mut by_shard: [Option<common::Client>; 2] = [None, None];
    for i in 0..64 {
        let c = server.login(user, &format!("r{i}"), None);
        let r = common::admin::api(http, "GET", "/api/sessions", None);
        let sessions = r.json()["sessions"].as_array().cloned().unwrap_or_default();
        let shard = sessions
            .iter()
            .find(|s| s["jid"] == c.jid.as_str())
            .and_then(|s| s["shard"].as_u64())
            .unwrap_or_else(|| panic!("{} not listed: {}", c.jid, r.body));
        let slot = &mut by_shard[usize::try_from(shard).unwrap()];
        if slot.is_none() {
            *slot = Some(c);
        }
        if let [Some(_), Some(_)] = &by_shard {
            return by_shard.map(|c| c.unwrap());
        }
    }
    panic!("64 connections all landed on one shard");
}

#[test]
fn users_on_both_shards_talk_to_a_component() {
    let port = free_port();
    let (server, http) = common::admin::start(
        2,
        &["alice"],
        true,
        &component::config(port, &[DOMAIN, IDLE]),
    );
    let mut comp = Component::connect(port, DOMAIN);
    let [mut alice, mut bob] = one_session_per_shard(&server, http, "alice");
    for (user, c) in [("shard0", &mut alice), ("shard1", &mut bob)] {
        c.chat(&format!("bot@{DOMAIN}"), &format!("hello from {user}"));
        let m = comp.next();
        assert_eq!(m.to().as_deref(), Some(&*format!("bot@{DOMAIN}")));
        assert_eq!(m.from().as_deref(), Some(&*c.jid));
        assert_eq!(
            component::body(&m).as_deref(),
            Some(&*format!("hello from {user}"))
        );
        comp.reply(&m, &format!("hi {user}"));
        let answer = c.expect("the component's answer", |s| s.name() == "message");
        assert_eq!(answer.from().as_deref(), Some(&*format!("bot@{DOMAIN}")));
        assert_eq!(
            common::body(&answer).as_deref(),
            Some(&*format!("hi {user}"))
        );
    }
    // A presence of a type RFC 6121 does not define is answered bad-request to the component and
    // never reaches alice: her next stanza is the message after it.
    comp.send(&format!(
        "<presence type='bogus' id='pb' from='bot@{DOMAIN}' to='{}'/>\
         <message from='bot@{DOMAIN}' to='{}' type='chat'><body>after</body></message>",
        alice.jid, alice.jid
    ));
    let e = comp.next();
    assert_eq!(e.id().as_deref(), Some("pb"));
    let text = String::from_utf8_lossy(e.bytes()).into_owned();
    assert!(
        text.contains("type='error'") && text.contains("<bad-request"),
        "{text}"
    );
    let next = alice.next_stanza();
    assert_eq!(common::body(&next).as_deref(), Some("after"));
    // The route is in alice's shard's table (her message reached the component): the server's
    // disco#items lists the component.
    alice.send("<iq type='get' to='localhost' id='d1'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>");
    let items = alice.expect("disco#items", |s| s.id().as_deref() == Some("d1"));
    let text = String::from_utf8_lossy(items.bytes()).into_owned();
    assert!(text.contains(&format!("jid='{DOMAIN}'")), "{text}");
    assert!(!text.contains(IDLE), "{text}");
}

#[test]
fn wrong_secret_is_not_authorized() {
    let (_server, port) = start(1, &[]);
    let (mut client, header) = component::open(port, DOMAIN);
    let id = component::stream_id(&header);
    component::send_handshake(&mut client, &id, "not-the-secret");
    closed_with(&mut client, "not-authorized");
    // The domain was not taken: the right secret still connects.
    Component::connect(port, DOMAIN);
}

/// An address banned for wrong handshakes is told so on its next connection (the stream error its
/// banning handshake got), not closed without a word.
#[test]
fn a_banned_address_gets_a_stream_error_on_its_next_connection() {
    let port = free_port();
    let throttle = "[auth.throttle]\nfree_failures = 1\ndelay_ms = 10\nmax_delay_ms = 20\n\
                    max_failures = 3\nwindow = 60\nban_time = 30\n";
    let extra = format!("{throttle}{}", component::config(port, &[DOMAIN]));
    let _server = Server::start_with(1, &[], "", &extra);
    let mut banned = false;
    for _ in 0..6 {
        let (mut client, header) = component::open(port, DOMAIN);
        let id = component::stream_id(&header);
        component::send_handshake(&mut client, &id, "not-the-secret");
        let all = client.read_to_close();
        if all.contains("<policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>") {
            banned = true;
            break;
        }
    }
    assert!(banned, "wrong handshakes never banned the address");
    let (mut client, header) = component::open(port, DOMAIN);
    assert!(
        matches!(header, Some(petrel::xml::Event::StreamOpen(_))),
        "{header:?}"
    );
    let all = client.read_to_close();
    assert!(
        all.contains("<policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>")
            && all.contains("Too many failed authentications"),
        "{all}"
    );
}

#[test]
fn unknown_domain_is_host_unknown() {
    let (_server, port) = start(1, &[]);
    let (mut client, _) = component::open(port, "nobody.localhost");
    closed_with(&mut client, "host-unknown");
}

#[test]
fn spoofed_from_is_invalid_from() {
    let (server, port) = start(1, &["alice"]);
    let mut comp = Component::connect(port, DOMAIN);
    let mut alice = server.login("alice", "a", None);
    comp.send(
        "<message from='admin@localhost' to='alice@localhost/a'><body>spoof</body></message>",
    );
    closed_with(&mut comp.client, "invalid-from");
    // Nothing reached alice: her next stanza is the answer to her own ping.
    alice.sync();
}

#[test]
fn second_connection_for_a_domain_is_a_conflict() {
    let (server, port) = start(2, &["alice"]);
    let mut first = Component::connect(port, DOMAIN);
    // Several tries: the kernel spreads connections over both shards, and every one is refused.
    for _ in 0..4 {
        let (mut client, header) = component::open(port, DOMAIN);
        let id = component::stream_id(&header);
        component::send_handshake(&mut client, &id, component::SECRET);
        closed_with(&mut client, "conflict");
    }
    // The first one still holds the route.
    let mut alice = server.login("alice", "a", None);
    alice.chat(DOMAIN, "still there?");
    assert_eq!(
        component::body(&first.next()).as_deref(),
        Some("still there?")
    );
}

#[test]
fn disconnected_component_is_recipient_unavailable_wait() {
    let (server, port) = start(2, &["alice"]);
    let mut alice = server.login("alice", "a", None);
    alice.send(&format!(
        "<message to='x@{IDLE}' id='m1' type='chat'><body>anyone?</body></message>"
    ));
    let err = alice.expect("an error", |s| s.id().as_deref() == Some("m1"));
    assert_eq!(err.type_().as_deref(), Some("error"));
    assert_eq!(
        error_condition(&err).as_deref(),
        Some("recipient-unavailable")
    );
    // Temporary (RFC 6120 §8.3.3.13): the component may reconnect any moment.
    let error_type = err.tree().ok().and_then(|t| {
        t.get_child("error", ns::CLIENT)
            .and_then(|e| e.attr("type").map(str::to_owned))
    });
    assert_eq!(error_type.as_deref(), Some("wait"));

    // Once a component connected and left, its route is gone again on every shard.
    let comp = Component::connect(port, IDLE);
    drop(comp);
    let mut again = server.login("alice", "b", None);
    again.send(&format!(
        "<message to='{IDLE}' id='m2' type='chat'><body>gone?</body></message>"
    ));
    let err = again.expect("an error", |s| s.id().as_deref() == Some("m2"));
    assert_eq!(
        error_condition(&err).as_deref(),
        Some("recipient-unavailable")
    );
}

#[test]
fn stanza_without_to_is_improper_addressing() {
    let (_server, port) = start(1, &[]);
    let mut comp = Component::connect(port, DOMAIN);
    comp.send(&format!(
        "<message from='{DOMAIN}'><body>to whom?</body></message>"
    ));
    closed_with(&mut comp.client, "improper-addressing");
}

/// A stanza whose `to` is no JID is answered `jid-malformed` by the server that found it (RFC 6120
/// §8.3): from the server's domain, never from the component's own address back to it.
#[test]
fn malformed_to_is_jid_malformed_from_the_server() {
    let (_server, port) = start(1, &[]);
    let mut comp = Component::connect(port, DOMAIN);
    comp.send(&format!(
        "<iq from='svc@{DOMAIN}/x' to='a b@localhost' type='get' id='i1'><ping xmlns='urn:xmpp:ping'/></iq>"
    ));
    let err = comp.next();
    assert_eq!(err.id().as_deref(), Some("i1"));
    assert_eq!(err.type_().as_deref(), Some("error"));
    let cond = err.tree().ok().and_then(|t| {
        let e = t.get_child("error", ns::COMPONENT_ACCEPT)?;
        e.child_elements().next().map(|c| c.name.clone())
    });
    assert_eq!(cond.as_deref(), Some("jid-malformed"));
    assert_eq!(err.from().as_deref(), Some("localhost"));
    assert_eq!(
        err.to().as_deref(),
        Some(format!("svc@{DOMAIN}/x").as_str())
    );
}

/// A component that does not read what it is sent: once its socket takes nothing and its mailbox
/// stays over its bound, it is cut off with `policy-violation` (the stated policy), and its route is
/// released (a new connection gets it).
#[test]
fn slow_component_is_cut_off() {
    use std::io::{Read, Write};
    let port = free_port();
    let server = Server::start_with(
        1,
        &["alice"],
        "",
        &component::config_with(port, &[DOMAIN], "outbound_queue_bytes = 4096"),
    );
    let mut comp = Component::connect(port, DOMAIN);
    let alice = server.login("alice", "a", None);
    // The sender writes from its own thread while the component reads nothing, and reads (and
    // drops) what she gets from another: the errors for what the component never took.
    let mut sock = alice.sock.try_clone().unwrap();
    let mut inbox = alice.sock.try_clone().unwrap();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 16];
        while inbox.read(&mut buf).is_ok_and(|n| n > 0) {}
    });
    let body = "x".repeat(60_000);
    let (done, sent) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for i in 0..400 {
            let m = format!("<message to='bot@{DOMAIN}' id='s{i}'><body>{body}</body></message>");
            if sock.write_all(m.as_bytes()).is_err() {
                break;
            }
        }
        let _ = done.send(());
    });
    // Until the component is cut off, its full mailbox holds alice back (her socket is not read).
    sent.recv_timeout(std::time::Duration::from_secs(60))
        .expect("the sender is not held back forever: the slow component was cut off");
    // Now read what the component was sent, to its end (only the tail is kept).
    let mut tail: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match comp.client.sock.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                tail.extend_from_slice(&buf[..n]);
                let cut = tail.len().saturating_sub(512);
                tail.drain(..cut);
            }
            Err(e) => panic!("component socket: {e}"),
        }
    }
    let tail = String::from_utf8_lossy(&tail).into_owned();
    assert!(
        tail.ends_with("<policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'/><text xmlns='urn:ietf:params:xml:ns:xmpp-streams' xml:lang='en'>slow reader</text></stream:error></stream:stream>"),
        "{tail}"
    );
    // The route was released: the domain can be claimed again.
    Component::connect(port, DOMAIN);
    drop(alice);
}

/// A component that reads nothing for 8 s is cut off (the stated policy); every message sent to
/// it is then read by it (what its socket took before the close) or answered to its sender, exactly
/// once: what the server had queued or taken for the socket, and the socket never took, is answered
/// too. Before the driver kept what it handed out until the socket took it, this lost 784 messages
/// in one run of two. Before errors held their senders back (the errors of a cut-off component
/// answered a chunk at a time, and a mailbox full of errors holding its senders before its hard
/// cap), it lost a block of alice's errors (239-1 000) in about one run of five with the other
/// tests of this file beside it.
#[test]
fn a_component_that_stops_reading_loses_nothing() {
    use std::io::Write;
    const N: usize = 20_000;
    let port = free_port();
    let config = component::config(port, &[DOMAIN]);
    let server = Server::start_with(2, &["alice"], "", &config);
    let mut comp = Component::connect(port, DOMAIN);
    let alice = server.login("alice", "a", None);
    // What the socket never took is answered when the server gives up on it, `CLOSE_STALL` (5 s)
    // after its last write: a quiet spell longer than that ends the errors.
    let alice_reader = alice.read_until_quiet_on_a_thread(std::time::Duration::from_secs(15));
    // About 20 MB: more than the kernel's socket buffers and the server's queues hold.
    let pad = "p".repeat(1000);
    let mut burst = Vec::new();
    for i in 0..N {
        write!(
            burst,
            "<message to='bot@{DOMAIN}' type='chat' id='m{i}'><body>m{i} {pad}</body></message>"
        )
        .unwrap();
    }
    let mut sock = alice.sock.try_clone().unwrap();
    sock.write_all(&burst).unwrap();
    std::thread::sleep(std::time::Duration::from_secs(8));
    let mut raw = std::mem::take(&mut comp.client.raw);
    raw.extend(
        comp.client
            .read_until_quiet(std::time::Duration::from_secs(10)),
    );
    let ids = |raw: &[u8], error: bool| -> Vec<usize> {
        String::from_utf8_lossy(raw)
            .split("<message ")
            .skip(1)
            // Only whole stanzas: one the close cut short never reached its reader.
            .filter(|m| m.contains("</message>") && m.contains("type='error'") == error)
            .filter_map(|m| {
                let at = m.find("id='m")? + 5;
                m[at..at + m[at..].find('\'')?].parse().ok()
            })
            .collect()
    };
    let got = ids(&raw, false);
    let answered = ids(&alice_reader.join().unwrap(), true);
    let mut seen = vec![0u8; N];
    for &i in got.iter().chain(&answered) {
        seen[i] += 1;
    }
    let lost: Vec<usize> = (0..N).filter(|&i| seen[i] == 0).collect();
    let twice: Vec<usize> = (0..N).filter(|&i| seen[i] > 1).collect();
    eprintln!(
        "component: got {}, answered {}, lost {}, twice {}",
        got.len(),
        answered.len(),
        lost.len(),
        twice.len()
    );
    assert!(got.len() < N, "the component was never cut off");
    assert!(
        lost.is_empty(),
        "{} lost, first {:?}",
        lost.len(),
        &lost[..lost.len().min(10)]
    );
    assert!(
        twice.is_empty(),
        "{} twice, first {:?}",
        twice.len(),
        &twice[..twice.len().min(10)]
    );
    drop(alice);
}

/// A component's message carrying a `<stanza-id by='recipient'>` of its own making: the archive
/// removes it and stamps its own (XEP-0359), and keeps the message (the forged id kept it out of
/// the archive and handed the client a catch-up id of the sender's choosing).
#[test]
fn a_forged_stanza_id_from_a_component_is_replaced_and_the_message_archived() {
    let port = free_port();
    let extra = format!("[modules.mam]\n{}", component::config(port, &[DOMAIN]));
    let server = Server::start_with(1, &["alice"], "", &extra);
    let mut comp = Component::connect(port, DOMAIN);
    let mut alice = server.login("alice", "a", Some(0));
    comp.send(&format!(
        "<message from='bot@{DOMAIN}/x' to='alice@localhost/a' type='chat' id='c2'>\
         <body>forged id</body><stanza-id xmlns='urn:xmpp:sid:0' by='alice@localhost' id='1'/></message>"
    ));
    let m = alice.expect("the message", |s| {
        common::body(s).as_deref() == Some("forged id")
    });
    let text = String::from_utf8_lossy(m.bytes()).into_owned();
    assert_eq!(text.matches("by='alice@localhost'").count(), 1, "{text}");
    assert!(!text.contains("id='1'"), "{text}");
    alice.send("<iq type='set' id='q'><query xmlns='urn:xmpp:mam:2' queryid='f'/></iq>");
    let r = alice.expect("archived", |s| {
        s.name() == "message" && String::from_utf8_lossy(s.bytes()).contains("forged id")
    });
    assert!(String::from_utf8_lossy(r.bytes()).contains("queryid='f'"));
}
