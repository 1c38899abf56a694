//! Wire tests of Client State Indication (XEP-0352) and Message Carbons (XEP-0280) against the real
//! binary, at 1 and 2 shards.

mod common;

use std::time::Duration;

use common::{body, error_condition, Client, Server};
use petrel::xml::Stanza;

const MODS: &str = "[modules.csi]\nbuffer_max = 3\n[modules.carbons]\n";
const CARBONS: &str = "urn:xmpp:carbons:2";
const FORWARD: &str = "urn:xmpp:forward:0";
const INACTIVE: &str = "<inactive xmlns='urn:xmpp:csi:0'/>";
const ACTIVE: &str = "<active xmlns='urn:xmpp:csi:0'/>";

fn text(s: &Stanza) -> String {
    String::from_utf8_lossy(s.bytes()).into_owned()
}

/// Nothing arrives for a while (the server holds it back).
fn quiet(c: &mut Client) {
    std::thread::sleep(Duration::from_millis(200));
    c.sock
        .set_read_timeout(Some(Duration::from_millis(400)))
        .unwrap();
    let got = c.try_next_stanza();
    c.sock
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    assert!(
        got.is_none(),
        "expected nothing, got {:?}",
        got.map(|s| text(&s))
    );
}

fn directed(c: &mut Client, to: &str, show: &str) {
    c.send(&format!(
        "<presence to='{to}'><show>{show}</show></presence>"
    ));
}

fn show(s: &Stanza) -> Option<String> {
    let t = s.tree().ok()?;
    t.get_child("show", "jabber:client").map(|e| e.text())
}

#[test]
fn csi_is_offered_after_auth_only_when_enabled() {
    for (extra, want) in [(MODS, true), ("", false)] {
        let server = Server::start_with(1, &["alice"], "", extra);
        let mut c = server.connect();
        c.open("localhost");
        let pre = c.next_stanza();
        // The stream feature comes after authentication only; before it, Bind 2 lists CSI among
        // what it can enable inline when the module is on.
        assert!(!text(&pre).contains("<csi "), "{}", text(&pre));
        assert_eq!(
            text(&pre).contains("<feature var='urn:xmpp:csi:0'/>"),
            want,
            "{}",
            text(&pre)
        );
        use base64::Engine;
        let token = base64::engine::general_purpose::STANDARD
            .encode(format!("\0alice\0{}", common::PASSWORD));
        c.send(&format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>"
        ));
        assert_eq!(c.next_stanza().name(), "success");
        c.restart();
        c.open("localhost");
        let post = c.next_stanza();
        assert_eq!(
            text(&post).contains("<csi xmlns='urn:xmpp:csi:0'/>"),
            want,
            "{}",
            text(&post)
        );
    }
}

fn csi_holds_presence_and_flushes_on_active(shards: usize) {
    let server = Server::start_with(shards, &["alice", "bob", "carol"], "", MODS);
    let mut bob = server.login("bob", "phone", None);
    let mut alice = server.login("alice", "pc", None);
    let mut carol = server.login("carol", "pc", None);
    bob.send(INACTIVE);
    bob.sync();
    // A sender's sync only proves its own shard took the stanza; one on another shard still crosses
    // the mesh to bob. A short pause after each keeps the three arriving in this order.
    let settle = || std::thread::sleep(std::time::Duration::from_millis(200));
    directed(&mut alice, "bob@localhost/phone", "away");
    alice.sync();
    settle();
    directed(&mut carol, "bob@localhost/phone", "dnd");
    carol.sync();
    settle();
    directed(&mut alice, "bob@localhost/phone", "xa");
    alice.sync();
    settle();
    quiet(&mut bob);
    bob.send(ACTIVE);
    let first = bob.next_stanza();
    let second = bob.next_stanza();
    assert_eq!(show(&first).as_deref(), Some("dnd"), "{}", text(&first));
    assert_eq!(first.from().as_deref(), Some(carol.jid.as_str()));
    assert_eq!(
        show(&second).as_deref(),
        Some("xa"),
        "newest wins: {}",
        text(&second)
    );
    assert_eq!(second.from().as_deref(), Some(alice.jid.as_str()));
    // Active: a presence comes at once; and the held `away` was dropped, not delayed.
    directed(&mut alice, "bob@localhost/phone", "chat");
    let s = bob.next_stanza();
    assert_eq!(show(&s).as_deref(), Some("chat"), "{}", text(&s));
}

#[test]
fn csi_holds_presence_and_flushes_on_active_1_shard() {
    csi_holds_presence_and_flushes_on_active(1);
}

#[test]
fn csi_holds_presence_and_flushes_on_active_2_shards() {
    csi_holds_presence_and_flushes_on_active(2);
}

fn csi_message_with_body_flushes_first(shards: usize) {
    let server = Server::start_with(shards, &["alice", "bob"], "", MODS);
    let mut bob = server.login("bob", "phone", None);
    let mut alice = server.login("alice", "pc", None);
    bob.send(INACTIVE);
    bob.sync();
    directed(&mut alice, "bob@localhost/phone", "away");
    alice.send(
        "<message to='bob@localhost/phone' type='chat'>\
         <composing xmlns='http://jabber.org/protocol/chatstates'/></message>",
    );
    alice.sync();
    quiet(&mut bob);
    alice.chat("bob@localhost/phone", "wake up");
    let s = bob.next_stanza();
    assert_eq!(show(&s).as_deref(), Some("away"), "{}", text(&s));
    let s = bob.next_stanza();
    assert!(text(&s).contains("composing"), "{}", text(&s));
    let s = bob.next_stanza();
    assert_eq!(body(&s).as_deref(), Some("wake up"));
    // Still inactive; an IQ result is important too and flushes what was held since.
    directed(&mut alice, "bob@localhost/phone", "dnd");
    alice.sync();
    quiet(&mut bob);
    let id = "ping-csi";
    bob.send(&format!(
        "<iq type='get' to='localhost' id='{id}'><ping xmlns='urn:xmpp:ping'/></iq>"
    ));
    let s = bob.next_stanza();
    assert_eq!(show(&s).as_deref(), Some("dnd"), "{}", text(&s));
    let s = bob.next_stanza();
    assert_eq!(s.id().as_deref(), Some(id));
}

#[test]
fn csi_message_with_body_flushes_first_1_shard() {
    csi_message_with_body_flushes_first(1);
}

#[test]
fn csi_message_with_body_flushes_first_2_shards() {
    csi_message_with_body_flushes_first(2);
}

fn csi_bound(shards: usize) {
    let users = ["bob", "u0", "u1", "u2", "u3"];
    let server = Server::start_with(shards, &users, "", MODS);
    let mut bob = server.login("bob", "phone", None);
    let mut us: Vec<Client> = (0..4)
        .map(|i| server.login(&format!("u{i}"), "r", None))
        .collect();
    bob.send(INACTIVE);
    bob.sync();
    for (i, u) in us.iter_mut().enumerate().take(3) {
        directed(u, "bob@localhost/phone", &format!("s{i}"));
        u.sync();
    }
    // Senders on other shards reach bob's queue through the mesh, after their own sync: give the
    // three held presences time to arrive (their order among themselves depends on the paths).
    std::thread::sleep(std::time::Duration::from_millis(300));
    quiet(&mut bob);
    // buffer_max = 3: the fourth sender flushes everything, the held ones first, the new one last.
    directed(&mut us[3], "bob@localhost/phone", "s3");
    let mut held: Vec<String> = (0..3)
        .map(|_| {
            let s = bob.next_stanza();
            show(&s).unwrap_or_else(|| panic!("not a held presence: {}", text(&s)))
        })
        .collect();
    held.sort();
    assert_eq!(held, ["s0", "s1", "s2"]);
    let s = bob.next_stanza();
    assert_eq!(show(&s).as_deref(), Some("s3"), "{}", text(&s));
    // Holding goes on with an empty queue.
    directed(&mut us[0], "bob@localhost/phone", "again");
    us[0].sync();
    quiet(&mut bob);
}

#[test]
fn csi_bound_1_shard() {
    csi_bound(1);
}

#[test]
fn csi_bound_2_shards() {
    csi_bound(2);
}

// ---------------------------------------------------------------- carbons

fn enable(c: &mut Client) {
    c.send(&format!(
        "<iq type='set' id='carb'><enable xmlns='{CARBONS}'/></iq>"
    ));
    let r = c.expect("enable result", |s| s.id().as_deref() == Some("carb"));
    assert_eq!(r.type_().as_deref(), Some("result"), "{}", text(&r));
}

/// (direction, forwarded message) of a carbon.
fn carbon(s: &Stanza) -> Option<(String, petrel::xml::Element)> {
    let t = s.tree().ok()?;
    let dir = t.child_elements().find(|c| c.ns == CARBONS)?;
    let msg = dir
        .get_child("forwarded", FORWARD)?
        .child_elements()
        .next()?
        .clone();
    Some((dir.name.clone(), msg))
}

fn fwd_body(m: &petrel::xml::Element) -> String {
    m.get_child("body", "jabber:client")
        .map(|b| b.text())
        .unwrap_or_default()
}

/// Four resources of alice (spread over the shards by the kernel) and bob.
fn carbons_world(shards: usize) -> (Server, Vec<Client>, Client) {
    let server = Server::start_with(shards, &["alice", "bob"], "", MODS);
    let alice: Vec<Client> = (0..4)
        .map(|i| server.login("alice", &format!("a{i}"), None))
        .collect();
    let bob = server.login("bob", "b", None);
    (server, alice, bob)
}

fn carbons_sent_and_received(shards: usize) {
    let (_server, mut alice, mut bob) = carbons_world(shards);
    for a in alice.iter_mut().skip(1) {
        enable(a);
    }
    // Received: bob writes to a0 (carbons off); a1..a3 get <received/> copies wherever they are.
    bob.chat("alice@localhost/a0", "to a0");
    let s = alice[0].next_stanza();
    assert_eq!(body(&s).as_deref(), Some("to a0"));
    assert!(carbon(&s).is_none());
    for a in alice.iter_mut().skip(1) {
        let s = a.next_stanza();
        assert_eq!(s.from().as_deref(), Some("alice@localhost"), "{}", text(&s));
        assert_eq!(s.to().as_deref(), Some(a.jid.as_str()));
        let (dir, m) = carbon(&s).unwrap_or_else(|| panic!("{}", text(&s)));
        assert_eq!(dir, "received");
        assert_eq!(fwd_body(&m), "to a0");
        assert_eq!(m.attr("from"), Some(bob.jid.as_str()));
    }
    // Received on an enabled resource: the others get copies, not the receiver.
    bob.chat("alice@localhost/a2", "to a2");
    for (i, a) in alice.iter_mut().enumerate().skip(1) {
        let s = a.next_stanza();
        if i == 2 {
            assert!(carbon(&s).is_none(), "{}", text(&s));
        } else {
            let (dir, m) = carbon(&s).unwrap_or_else(|| panic!("{}", text(&s)));
            assert_eq!((dir.as_str(), fwd_body(&m).as_str()), ("received", "to a2"));
        }
    }
    // a0 (carbons off) saw no copy of that: its next stanza is the next message to it.
    bob.chat("alice@localhost/a0", "marker");
    assert_eq!(body(&alice[0].next_stanza()).as_deref(), Some("marker"));
}

fn carbons_sent(shards: usize) {
    let (_server, mut alice, mut bob) = carbons_world(shards);
    for a in alice.iter_mut().skip(1) {
        enable(a);
    }
    // Sent from a1 (enabled): a2, a3 get <sent/>, a1 and a0 get nothing.
    alice[1].chat("bob@localhost/b", "from a1");
    assert_eq!(body(&bob.next_stanza()).as_deref(), Some("from a1"));
    for a in alice.iter_mut().skip(2) {
        let s = a.next_stanza();
        let (dir, m) = carbon(&s).unwrap_or_else(|| panic!("{}", text(&s)));
        assert_eq!(dir, "sent");
        assert_eq!(fwd_body(&m), "from a1");
        assert_eq!(m.attr("to"), Some("bob@localhost/b"));
        assert_eq!(m.attr("from"), Some("alice@localhost/a1"));
    }
    // Private and no-copy: no copies; the next copy each resource sees is the plain message's.
    alice[0].send(&format!(
        "<message to='bob@localhost/b' type='chat'><body>secret</body><private xmlns='{CARBONS}'/></message>"
    ));
    alice[0].send(
        "<message to='bob@localhost/b' type='chat'><body>nocopy</body>\
         <no-copy xmlns='urn:xmpp:hints'/></message>",
    );
    alice[0].chat("bob@localhost/b", "plain");
    for want in ["secret", "nocopy", "plain"] {
        assert_eq!(body(&bob.next_stanza()).as_deref(), Some(want));
    }
    for a in alice.iter_mut().skip(1) {
        let s = a.next_stanza();
        let (dir, m) = carbon(&s).unwrap_or_else(|| panic!("{}", text(&s)));
        assert_eq!((dir.as_str(), fwd_body(&m).as_str()), ("sent", "plain"));
    }
    // Received private: not copied either.
    bob.send(&format!(
        "<message to='alice@localhost/a1' type='chat'><body>p</body><private xmlns='{CARBONS}'/></message>"
    ));
    bob.chat("alice@localhost/a1", "after");
    for want in ["p", "after"] {
        assert_eq!(body(&alice[1].next_stanza()).as_deref(), Some(want));
    }
    for a in alice.iter_mut().skip(2) {
        let s = a.next_stanza();
        let (dir, m) = carbon(&s).unwrap_or_else(|| panic!("{}", text(&s)));
        assert_eq!((dir.as_str(), fwd_body(&m).as_str()), ("received", "after"));
    }
    // Bad requests.
    bob.send(&format!(
        "<iq type='set' id='x' to='alice@localhost'><enable xmlns='{CARBONS}'/></iq>"
    ));
    let r = bob.expect("error", |s| s.id().as_deref() == Some("x"));
    assert_eq!(error_condition(&r).as_deref(), Some("forbidden"));
}

#[test]
fn carbons_received_1_shard() {
    carbons_sent_and_received(1);
}

#[test]
fn carbons_received_2_shards() {
    carbons_sent_and_received(2);
}

#[test]
fn carbons_sent_and_hints_1_shard() {
    carbons_sent(1);
}

#[test]
fn carbons_sent_and_hints_2_shards() {
    carbons_sent(2);
}

/// XEP-0386: a session bound by SASL2 + Bind 2 asking for carbons and to start inactive gets both
/// at once, without the carbons IQ or a CSI element after binding.
fn bind2_enables_carbons_and_starts_inactive(shards: usize) {
    let server = Server::start_with(shards, &["alice", "bob"], "", MODS);
    let mut desk = server.login("alice", "desk", None);
    let mut bob = server.login("bob", "b", None);
    let mut phone = server.connect();
    let success = phone.authenticate_sasl2(
        "alice",
        "localhost",
        common::PASSWORD,
        &format!("<bind xmlns='urn:xmpp:bind:0'><tag>phone</tag><enable xmlns='{CARBONS}'/>{INACTIVE}</bind>"),
    );
    assert!(
        text(&success).contains("<bound xmlns='urn:xmpp:bind:0'"),
        "{}",
        text(&success)
    );
    assert!(
        phone.jid.starts_with("alice@localhost/phone/"),
        "{}",
        phone.jid
    );
    phone.sync();
    // Inactive from the start: a chat state is held back.
    bob.send(&format!(
        "<message to='{}' type='chat'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>",
        phone.jid
    ));
    bob.sync();
    quiet(&mut phone);
    // Carbons on: bob's message to the desk is copied to the phone; being urgent, the copy
    // flushes the held chat state first.
    bob.chat(&desk.jid, "to desk");
    assert_eq!(body(&desk.next_stanza()).as_deref(), Some("to desk"));
    let held = phone.next_stanza();
    assert!(text(&held).contains("<composing"), "{}", text(&held));
    let copy = phone.next_stanza();
    let (dir, m) = carbon(&copy).unwrap_or_else(|| panic!("{}", text(&copy)));
    assert_eq!(
        (dir.as_str(), fwd_body(&m).as_str()),
        ("received", "to desk")
    );
    // Both are advertised inside Bind 2's inline features.
    let mut c = server.connect();
    c.open("localhost");
    let f = text(&c.next_stanza());
    assert!(
        f.contains(&format!(
            "<feature var='{CARBONS}'/><feature var='urn:xmpp:csi:0'/></inline></bind>"
        )),
        "{f}"
    );
}

#[test]
fn bind2_enables_carbons_and_starts_inactive_1_shard() {
    bind2_enables_carbons_and_starts_inactive(1);
}

#[test]
fn bind2_enables_carbons_and_starts_inactive_2_shards() {
    bind2_enables_carbons_and_starts_inactive(2);
}

/// Logs `user` in as `resource` with stream management (resumable) and carbons on; returns the
/// client and its resumption id.
fn login_resumable_with_carbons(server: &Server, user: &str, resource: &str) -> (Client, String) {
    let mut c = server.login(user, resource, Some(0));
    c.send("<enable xmlns='urn:xmpp:sm:3' resume='true'/>");
    let en = c.expect("enabled", |s| s.name() == "enabled");
    let id = en.attr("id").map(|s| s.into_owned()).unwrap_or_default();
    enable(&mut c);
    (c, id)
}

#[test]
fn a_detached_sessions_messages_are_copied_at_once_and_not_delivered_twice_when_it_expires() {
    // XEP-0280 §7: every other carbons-enabled resource gets a copy. A message buffered by a
    // phone waiting to resume got none (its copies were made only when a live connection wrote
    // it), and when the wait expired the messages went to the desktop again as originals.
    for shards in [1, 2] {
        let server = Server::start_with(
            shards,
            &["alice", "bob"],
            "",
            &format!("{MODS}[modules.stream_management]\nresume_timeout = 2\n"),
        );
        let mut desk = server.login("alice", "desk", Some(0));
        enable(&mut desk);
        let (phone, _id) = login_resumable_with_carbons(&server, "alice", "phone");
        let _ = phone.sock.shutdown(std::net::Shutdown::Both);
        drop(phone);
        std::thread::sleep(std::time::Duration::from_millis(300));
        let mut bob = server.login("bob", "b", Some(0));
        for i in 0..3 {
            bob.chat("alice@localhost/phone", &format!("while away {i}"));
        }
        let mut copies = Vec::new();
        while copies.len() < 3 {
            let s = desk.next_stanza();
            if let Some((dir, m)) = carbon(&s) {
                assert_eq!(dir, "received", "{}", text(&s));
                copies.push(fwd_body(&m));
            }
        }
        assert_eq!(copies, ["while away 0", "while away 1", "while away 2"]);
        // The phone never comes back: past the resumption time nothing reaches the desktop again.
        std::thread::sleep(std::time::Duration::from_millis(3500));
        let later = desk.read_stanzas_until_quiet(std::time::Duration::from_millis(500));
        let again: Vec<String> = later
            .iter()
            .filter(|s| common::body(s).is_some_and(|b| b.starts_with("while away")))
            .map(text)
            .collect();
        assert!(
            again.is_empty(),
            "shards={shards}: delivered twice: {again:?}"
        );
    }
}
