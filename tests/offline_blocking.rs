//! Offline messages (XEP-0160), blocking (XEP-0191), private storage (XEP-0049) and vcard-temp
//! (XEP-0054) over real sockets, at 1 and 2 shards: delivery with delay after reconnect, after a
//! graceful restart and after SIGKILL right after the store committed; limits and errors.

mod common;

use std::time::{Duration, Instant};

use common::{body, error_condition, subscribe_one_way, Client, Server};
use petrel::jid::BareJid;
use petrel::store::Store;
use petrel::xml::Stanza;

const SHARDS: [usize; 2] = [1, 2];
const DELAY: &str = "urn:xmpp:delay";

const MODULES: &str = "
[modules.offline]
max_per_user = 3
[modules.blocking]
[modules.private]
max_bytes = 2000
[modules.vcard]
max_bytes = 1000
";

fn start(shards: usize) -> Server {
    Server::start_with(shards, &["alice", "bob", "carol"], "", MODULES)
}

/// Waits until `n` messages for `user` are committed in the server's store.
fn wait_stored(server: &Server, user: &str, n: u64) {
    let store = Store::open(&server.data_dir()).unwrap();
    let jid = BareJid::parse(user).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = store.offline_count(&jid).unwrap();
        if got == n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{got} of {n} offline messages stored"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The next message stanzas with a body, up to `n`.
fn messages(c: &mut Client, n: usize) -> Vec<Stanza> {
    (0..n)
        .map(|_| c.expect("message", |s| s.name() == "message" && body(s).is_some()))
        .collect()
}

fn assert_delayed(m: &Stanza, from: &str) {
    assert_eq!(m.from().as_deref(), Some(from));
    let t = m.tree().unwrap();
    let d = t
        .get_child("delay", DELAY)
        .unwrap_or_else(|| panic!("no delay: {}", String::from_utf8_lossy(m.bytes())));
    assert_eq!(d.attr("from"), Some("localhost"));
    let stamp = d.attr("stamp").unwrap();
    assert!(
        stamp.len() >= 20 && stamp.ends_with('Z') && stamp.as_bytes()[10] == b'T',
        "{stamp}"
    );
}

/// Alice sends `bodies` to offline Bob; they are committed when this returns; Alice got no error.
fn send_offline(server: &Server, alice: &mut Client, bodies: &[&str]) {
    for b in bodies {
        alice.chat("bob@localhost", b);
    }
    wait_stored(server, "bob@localhost", bodies.len() as u64);
    alice.sync();
    assert!(
        !String::from_utf8_lossy(&alice.raw).contains("type='error'"),
        "{}",
        String::from_utf8_lossy(&alice.raw)
    );
}

fn bodies(ms: &[Stanza]) -> Vec<String> {
    ms.iter().map(|m| body(m).unwrap()).collect()
}

#[test]
fn offline_message_delivered_with_delay_after_reconnect() {
    for shards in SHARDS {
        let server = start(shards);
        let mut alice = server.login("alice", "a", Some(0));
        // Bob was here and left.
        let mut bob = server.login("bob", "b", Some(0));
        bob.sync();
        drop(bob);
        std::thread::sleep(Duration::from_millis(100));
        send_offline(&server, &mut alice, &["one", "two"]);
        let mut bob = server.login("bob", "b", Some(0));
        let got = messages(&mut bob, 2);
        assert_eq!(bodies(&got), ["one", "two"], "shards={shards}");
        for m in &got {
            assert_delayed(m, "alice@localhost/a");
        }
        // Exactly once: a second login gets nothing more.
        wait_stored(&server, "bob@localhost", 0);
        let mut bob2 = server.login("bob", "c", Some(0));
        bob2.sync();
        assert!(
            !String::from_utf8_lossy(&bob2.raw).contains("<body>"),
            "shards={shards}"
        );
    }
}

#[test]
fn offline_message_survives_graceful_restart() {
    for shards in SHARDS {
        let mut server = start(shards);
        let mut alice = server.login("alice", "a", Some(0));
        send_offline(&server, &mut alice, &["before restart"]);
        drop(alice);
        server.stop();
        server.spawn(shards);
        let mut bob = server.login("bob", "b", Some(0));
        let got = messages(&mut bob, 1);
        assert_eq!(bodies(&got), ["before restart"]);
        assert_delayed(&got[0], "alice@localhost/a");
    }
}

#[test]
fn offline_message_survives_sigkill_right_after_storing() {
    for shards in SHARDS {
        let mut server = start(shards);
        let mut alice = server.login("alice", "a", Some(0));
        alice.chat("bob@localhost", "kill me");
        // Committed by the store job: SIGKILL now.
        wait_stored(&server, "bob@localhost", 1);
        server.kill9();
        assert!(!String::from_utf8_lossy(&alice.raw).contains("type='error'"));
        drop(alice);
        server.spawn(shards);
        let mut bob = server.login("bob", "b", Some(0));
        let got = messages(&mut bob, 1);
        assert_eq!(bodies(&got), ["kill me"], "shards={shards}");
        assert_delayed(&got[0], "alice@localhost/a");
    }
}

#[test]
fn per_user_limit_answers_the_sender() {
    for shards in SHARDS {
        let server = start(shards);
        let mut alice = server.login("alice", "a", Some(0));
        send_offline(&server, &mut alice, &["1", "2", "3"]);
        alice.send("<message to='bob@localhost' type='chat' id='over'><body>4</body></message>");
        let e = alice.expect("error", |s| s.id().as_deref() == Some("over"));
        assert_eq!(e.type_().as_deref(), Some("error"));
        // XEP-0160 §2: a full queue is service-unavailable, with a text saying why.
        assert_eq!(
            error_condition(&e).as_deref(),
            Some("service-unavailable"),
            "shards={shards}"
        );
        assert!(
            String::from_utf8_lossy(e.bytes()).contains("offline storage is full"),
            "{}",
            String::from_utf8_lossy(e.bytes())
        );
        // A user that does not exist: service-unavailable.
        alice.send("<message to='ghost@localhost' type='chat' id='ghost'><body>?</body></message>");
        let e = alice.expect("error", |s| s.id().as_deref() == Some("ghost"));
        assert_eq!(error_condition(&e).as_deref(), Some("service-unavailable"));
        let mut bob = server.login("bob", "b", Some(0));
        assert_eq!(bodies(&messages(&mut bob, 3)), ["1", "2", "3"]);
    }
}

#[test]
fn body_less_messages_are_kept_for_later_and_chat_states_are_not() {
    // A direct invitation, a reaction and a read marker carry no body; they are kept like any
    // message (they were bounced, and the sender's client showed a failure). A bare chat state is
    // dropped without an answer, an empty message is refused.
    for shards in SHARDS {
        let server = start(shards);
        let mut alice = server.login("alice", "a", Some(0));
        let kept = [
            "<message to='bob@localhost' type='normal' id='inv'>\
             <x xmlns='jabber:x:conference' jid='room@conference.localhost'/></message>",
            "<message to='bob@localhost' type='chat' id='react'>\
             <reactions xmlns='urn:xmpp:reactions:0' id='m1'><reaction>\u{1f44d}</reaction></reactions></message>",
            "<message to='bob@localhost' type='chat' id='seen'>\
             <displayed xmlns='urn:xmpp:chat-markers:0' id='m1'/><thread>t</thread></message>",
        ];
        alice.send("<message to='bob@localhost' type='chat' id='typing'>\
                    <composing xmlns='http://jabber.org/protocol/chatstates'/><thread>t</thread></message>");
        for m in kept {
            alice.send(m);
        }
        wait_stored(&server, "bob@localhost", 3);
        alice.send("<message to='bob@localhost' type='chat' id='empty'/>");
        let e = alice.expect("error", |s| s.type_().as_deref() == Some("error"));
        assert_eq!(e.id().as_deref(), Some("empty"), "shards={shards}");
        assert_eq!(error_condition(&e).as_deref(), Some("service-unavailable"));
        let mut bob = server.login("bob", "b", Some(0));
        let got: Vec<Stanza> = (0..3)
            .map(|_| bob.expect("stored message", |s| s.name() == "message"))
            .collect();
        let ids: Vec<_> = got.iter().map(|m| m.id().unwrap_or_default()).collect();
        assert_eq!(ids, ["inv", "react", "seen"], "shards={shards}");
        for m in &got {
            assert_delayed(m, "alice@localhost/a");
        }
        let react = got[1].tree().unwrap();
        let r = react
            .get_child("reactions", "urn:xmpp:reactions:0")
            .unwrap();
        assert_eq!(
            r.get_child("reaction", "urn:xmpp:reactions:0")
                .unwrap()
                .text(),
            "\u{1f44d}"
        );
        // Nothing else was stored: the chat state is not delivered late.
        bob.sync();
        assert!(!String::from_utf8_lossy(&bob.raw).contains("composing"));
    }
}

#[test]
fn stored_messages_come_when_a_negative_priority_rises() {
    // XEP-0160 §3: a resource of negative priority gets no offline messages; they come once it
    // sends available presence of non-negative priority, not only at the next login.
    for shards in SHARDS {
        let server = start(shards);
        let mut bob = server.login("bob", "b", Some(-5));
        let mut alice = server.login("alice", "a", Some(0));
        send_offline(
            &server,
            &mut alice,
            &["while negative 1", "while negative 2"],
        );
        bob.sync();
        assert!(!String::from_utf8_lossy(&bob.raw).contains("while negative"));
        bob.send("<presence><priority>1</priority></presence>");
        let got = messages(&mut bob, 2);
        assert_eq!(
            bodies(&got),
            ["while negative 1", "while negative 2"],
            "shards={shards}"
        );
        for m in &got {
            assert_delayed(m, "alice@localhost/a");
        }
    }
}

#[test]
fn a_blocked_senders_messages_stay_out_of_the_archive() {
    // XEP-0191 §3.4: what a blocked JID sends is not delivered, and an archive that kept it would
    // deliver it later; the bounce does not carry the stanza id given for the archive either.
    for shards in SHARDS {
        let modules = format!("{MODULES}[modules.mam]\n");
        let server = Server::start_with(shards, &["alice", "bob", "carol"], "", &modules);
        let mut alice = server.login("alice", "a", Some(0));
        let mut bob = server.login("bob", "b", Some(0));
        let mut carol = server.login("carol", "c", Some(0));
        let r = iq(
            &mut alice,
            "blk",
            "<iq type='set' id='blk'><block xmlns='urn:xmpp:blocking'><item jid='bob@localhost'/></block></iq>",
        );
        assert_eq!(r.type_().as_deref(), Some("result"));
        bob.sync();
        for (id, to) in [("full", "alice@localhost/a"), ("bare", "alice@localhost")] {
            bob.send(&format!(
                "<message to='{to}' type='chat' id='{id}'><body>blocked {id}</body></message>"
            ));
            let e = bob.expect("error", |s| s.id().as_deref() == Some(id));
            assert_eq!(error_condition(&e).as_deref(), Some("service-unavailable"));
            let text = String::from_utf8_lossy(e.bytes()).into_owned();
            assert!(!text.contains("urn:xmpp:sid:0"), "shards={shards}: {text}");
        }
        carol.send("<message to='alice@localhost/a' type='chat' id='ok'><body>not blocked</body></message>");
        alice.expect("carol's message", |s| s.id().as_deref() == Some("ok"));
        alice.send("<iq type='set' id='mam'><query xmlns='urn:xmpp:mam:2' queryid='f'/></iq>");
        let mut results = Vec::new();
        loop {
            let s = alice.expect("archive", |s| {
                s.name() == "message" || s.id().as_deref() == Some("mam")
            });
            if s.name() == "iq" {
                assert_eq!(s.type_().as_deref(), Some("result"));
                break;
            }
            results.push(String::from_utf8_lossy(s.bytes()).into_owned());
        }
        assert_eq!(results.len(), 1, "shards={shards}: {results:?}");
        assert!(results[0].contains("not blocked"), "{results:?}");
    }
}

#[test]
fn a_message_stored_before_a_block_is_dropped_unanswered() {
    // XEP-0191 §3.3: the user appears offline to a JID she blocked. A message it sent while she
    // was away was accepted into storage; bounced when she comes online, the error would tell it
    // when she did (and came from her session's full JID). It is dropped, its row with it.
    for shards in SHARDS {
        let server = start(shards);
        let mut bob = server.login("bob", "b", Some(-1));
        let mut alice = server.login("alice", "a", Some(0));
        send_offline(&server, &mut alice, &["stored before the block"]);
        let r = iq(
            &mut bob,
            "blk",
            "<iq type='set' id='blk'><block xmlns='urn:xmpp:blocking'><item jid='alice@localhost'/></block></iq>",
        );
        assert_eq!(r.type_().as_deref(), Some("result"));
        bob.send("<presence><priority>1</priority></presence>");
        wait_stored(&server, "bob@localhost", 0);
        alice.sync();
        bob.sync();
        let seen = String::from_utf8_lossy(&alice.raw).into_owned();
        assert!(!seen.contains("type='error'"), "shards={shards}: {seen}");
        assert!(!String::from_utf8_lossy(&bob.raw).contains("stored before the block"));
    }
}

fn iq(c: &mut Client, id: &str, xml: &str) -> Stanza {
    c.send(xml);
    c.expect("iq answer", |s| {
        s.name() == "iq" && s.id().as_deref() == Some(id)
    })
}

fn blocked_app_error(s: &Stanza) -> bool {
    let t = s.tree().unwrap();
    t.get_child("error", petrel::xmpp::ns::CLIENT)
        .is_some_and(|e| e.get_child("blocked", "urn:xmpp:blocking:errors").is_some())
}

#[test]
fn a_blocked_contacts_iqs_to_the_bare_jid_get_service_unavailable() {
    // XEP-0191 §3.4: an IQ get/set from a blocked entity is answered `service-unavailable`. IQs to
    // the bare JID are answered by the server for the user (vCard, ping, PEP); they were answered
    // on the sender's shard, where the user's list is not kept, so a blocked contact read them all.
    let queries = [
        ("vc", "<vCard xmlns='vcard-temp'/>"),
        ("pi", "<ping xmlns='urn:xmpp:ping'/>"),
    ];
    for shards in SHARDS {
        let server = start(shards);
        let mut bob = server.login("bob", "b", Some(0));
        let r = iq(
            &mut bob,
            "blk",
            "<iq type='set' id='blk'><block xmlns='urn:xmpp:blocking'><item jid='alice@localhost'/></block></iq>",
        );
        assert_eq!(r.type_().as_deref(), Some("result"));
        let vcard = "<iq type='set' id='set'><vCard xmlns='vcard-temp'><FN>Bob</FN></vCard></iq>";
        assert_eq!(
            iq(&mut bob, "set", vcard).type_().as_deref(),
            Some("result")
        );
        // Several connections each: at two shards some sit on bob's home shard, some do not.
        for round in 0..4 {
            let mut alice = server.login("alice", &format!("a{round}"), None);
            let mut carol = server.login("carol", &format!("c{round}"), None);
            for (id, q) in queries {
                let ask =
                    |id: &str| format!("<iq type='get' to='bob@localhost' id='{id}'>{q}</iq>");
                let refused = iq(&mut alice, id, &ask(id));
                assert_eq!(
                    error_condition(&refused).as_deref(),
                    Some("service-unavailable"),
                    "shards={shards} round={round} {id}: {}",
                    String::from_utf8_lossy(refused.bytes())
                );
                let answered = iq(&mut carol, id, &ask(id));
                assert_eq!(
                    answered.type_().as_deref(),
                    Some("result"),
                    "shards={shards} round={round} {id}: {}",
                    String::from_utf8_lossy(answered.bytes())
                );
            }
        }
    }
}

#[test]
fn blocking_stops_messages_both_ways() {
    for shards in SHARDS {
        let server = start(shards);
        let mut alice = server.login("alice", "a", Some(0));
        let mut alice2 = server.login("alice", "a2", Some(0));
        let mut bob = server.login("bob", "b", Some(0));
        bob.sync();
        let r = iq(
            &mut alice,
            "blk",
            "<iq type='set' id='blk'><block xmlns='urn:xmpp:blocking'><item jid='bob@localhost'/></block></iq>",
        );
        assert_eq!(r.type_().as_deref(), Some("result"));
        // Both resources get the push.
        for c in [&mut alice, &mut alice2] {
            let push = c.expect("push", |s| {
                s.name() == "iq" && s.type_().as_deref() == Some("set")
            });
            assert!(String::from_utf8_lossy(push.bytes()).contains("bob@localhost"));
        }
        let list = iq(
            &mut alice2,
            "get",
            "<iq type='get' id='get'><blocklist xmlns='urn:xmpp:blocking'/></iq>",
        );
        assert!(String::from_utf8_lossy(list.bytes()).contains("<item jid='bob@localhost'/>"));

        // Bob -> Alice: service-unavailable, nothing delivered.
        bob.send("<message to='alice@localhost/a2' type='chat' id='in'><body>blocked in</body></message>");
        let e = bob.expect("error", |s| s.id().as_deref() == Some("in"));
        assert_eq!(
            error_condition(&e).as_deref(),
            Some("service-unavailable"),
            "shards={shards}"
        );
        // Alice -> Bob: not-acceptable + <blocked/>.
        alice.send(
            "<message to='bob@localhost' type='chat' id='out'><body>blocked out</body></message>",
        );
        let e = alice.expect("error", |s| s.id().as_deref() == Some("out"));
        assert_eq!(error_condition(&e).as_deref(), Some("not-acceptable"));
        assert!(
            blocked_app_error(&e),
            "{}",
            String::from_utf8_lossy(e.bytes())
        );
        for c in [&mut alice, &mut alice2, &mut bob] {
            c.sync();
        }
        assert!(!String::from_utf8_lossy(&alice2.raw).contains("<body>blocked in"));
        assert!(!String::from_utf8_lossy(&bob.raw).contains("<body>blocked out</body></message>"));

        // Malformed JID and empty block.
        let r = iq(&mut alice, "bad", "<iq type='set' id='bad'><block xmlns='urn:xmpp:blocking'><item jid='a@b@c'/></block></iq>");
        assert_eq!(error_condition(&r).as_deref(), Some("jid-malformed"));
        let r = iq(
            &mut alice,
            "empty",
            "<iq type='set' id='empty'><block xmlns='urn:xmpp:blocking'/></iq>",
        );
        assert_eq!(error_condition(&r).as_deref(), Some("bad-request"));

        // A new session of Alice after the change is filtered from its first stanza.
        let mut alice3 = server.login("alice", "a3", Some(0));
        bob.send("<message to='alice@localhost/a3' type='chat' id='in3'><body>blocked in 3</body></message>");
        let e = bob.expect("error", |s| s.id().as_deref() == Some("in3"));
        assert_eq!(error_condition(&e).as_deref(), Some("service-unavailable"));

        // Unblock: messages flow again.
        let r = iq(&mut alice, "unb", "<iq type='set' id='unb'><unblock xmlns='urn:xmpp:blocking'><item jid='bob@localhost'/></unblock></iq>");
        assert_eq!(r.type_().as_deref(), Some("result"));
        alice3.expect("unblock push", |s| {
            s.name() == "iq" && String::from_utf8_lossy(s.bytes()).contains("unblock")
        });
        bob.chat("alice@localhost/a3", "welcome back");
        let m = alice3.expect("message", |s| s.name() == "message");
        assert_eq!(body(&m).as_deref(), Some("welcome back"), "shards={shards}");
    }
}

#[test]
fn private_storage_round_trip_and_limit() {
    for shards in SHARDS {
        let server = start(shards);
        let mut alice = server.login("alice", "a", Some(0));
        let r = iq(&mut alice, "s1", "<iq type='set' id='s1'><query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'><conference jid='room@muc.localhost' name='R'/></storage></query></iq>");
        assert_eq!(r.type_().as_deref(), Some("result"));
        let r = iq(&mut alice, "g1", "<iq type='get' id='g1'><query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'/></query></iq>");
        let text = String::from_utf8_lossy(r.bytes()).into_owned();
        assert!(
            text.contains("<conference jid='room@muc.localhost' name='R'/>"),
            "{text}"
        );
        let big = format!("<iq type='set' id='big'><query xmlns='jabber:iq:private'><x xmlns='x:big'>{}</x></query></iq>", "b".repeat(2500));
        let r = iq(&mut alice, "big", &big);
        assert_eq!(
            error_condition(&r).as_deref(),
            Some("not-acceptable"),
            "shards={shards}"
        );
        let r = iq(&mut alice, "g2", "<iq type='get' id='g2'><query xmlns='jabber:iq:private'><x xmlns='x:big'/></query></iq>");
        assert!(!String::from_utf8_lossy(r.bytes()).contains("bbbb"));
        let r = iq(&mut alice, "ns", "<iq type='set' id='ns'><query xmlns='jabber:iq:private'><q xmlns='jabber:iq:private'/></query></iq>");
        assert_eq!(error_condition(&r).as_deref(), Some("not-acceptable"));
        // Another user's storage is not reachable.
        let mut bob = server.login("bob", "b", Some(0));
        let r = iq(&mut bob, "peek", "<iq type='get' id='peek' to='alice@localhost'><query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'/></query></iq>");
        assert_eq!(error_condition(&r).as_deref(), Some("forbidden"));
    }
}

#[test]
fn vcard_set_get_and_size_limit() {
    for shards in SHARDS {
        let server = start(shards);
        let mut alice = server.login("alice", "a", Some(0));
        let mut bob = server.login("bob", "b", Some(0));
        let r = iq(
            &mut bob,
            "e",
            "<iq type='get' id='e' to='alice@localhost'><vCard xmlns='vcard-temp'/></iq>",
        );
        // XEP-0054 §3.3: alice has none; to bob that looks like a missing account.
        assert_eq!(error_condition(&r).as_deref(), Some("service-unavailable"));
        let r = iq(
            &mut bob,
            "n",
            "<iq type='get' id='n' to='nobody@localhost'><vCard xmlns='vcard-temp'/></iq>",
        );
        assert_eq!(error_condition(&r).as_deref(), Some("service-unavailable"));
        // §3.1: her own missing vCard is an empty one.
        let r = iq(
            &mut alice,
            "o",
            "<iq type='get' id='o'><vCard xmlns='vcard-temp'/></iq>",
        );
        assert!(String::from_utf8_lossy(r.bytes()).contains("<vCard xmlns='vcard-temp'/>"));
        let r = iq(&mut alice, "s", "<iq type='set' id='s'><vCard xmlns='vcard-temp'><FN>Alice A.</FN><NICKNAME>al</NICKNAME></vCard></iq>");
        assert_eq!(r.type_().as_deref(), Some("result"));
        let r = iq(
            &mut bob,
            "g",
            "<iq type='get' id='g' to='alice@localhost'><vCard xmlns='vcard-temp'/></iq>",
        );
        assert!(
            String::from_utf8_lossy(r.bytes()).contains("<FN>Alice A.</FN><NICKNAME>al</NICKNAME>"),
            "shards={shards}"
        );
        // Oversized: refused, and the stored vCard is unchanged.
        let big = format!(
            "<iq type='set' id='big'><vCard xmlns='vcard-temp'><FN>{}</FN></vCard></iq>",
            "x".repeat(1200)
        );
        let r = iq(&mut alice, "big", &big);
        assert_eq!(error_condition(&r).as_deref(), Some("not-acceptable"));
        let r = iq(
            &mut alice,
            "own",
            "<iq type='get' id='own'><vCard xmlns='vcard-temp'/></iq>",
        );
        let text = String::from_utf8_lossy(r.bytes()).into_owned();
        assert!(
            text.contains("<FN>Alice A.</FN>") && !text.contains("xxxx"),
            "{text}"
        );
        // Bob cannot write Alice's vCard; a missing account answers service-unavailable.
        let r = iq(&mut bob, "w", "<iq type='set' id='w' to='alice@localhost'><vCard xmlns='vcard-temp'><FN>B</FN></vCard></iq>");
        assert_eq!(error_condition(&r).as_deref(), Some("forbidden"));
        let r = iq(
            &mut bob,
            "gh",
            "<iq type='get' id='gh' to='ghost@localhost'><vCard xmlns='vcard-temp'/></iq>",
        );
        assert_eq!(error_condition(&r).as_deref(), Some("service-unavailable"));
    }
}

#[test]
fn stored_xml_keeps_the_namespaces_of_prefixed_attributes() {
    // A prefixed attribute whose prefix is declared where it is used, or on an ancestor: what is
    // stored and given back must still bind it (it was dropped unread, or answered with an error).
    let server = start(2);
    let mut alice = server.login("alice", "a", Some(0));
    alice.send(
        "<message to='bob@localhost' type='chat' id='ns1'><body>ext</body>\
         <x xmlns='urn:ext' xmlns:y='urn:y' y:z='1'><c y:w='2'/></x></message>",
    );
    wait_stored(&server, "bob@localhost", 1);
    let mut bob = server.login("bob", "b", Some(0));
    let got = messages(&mut bob, 1);
    let t = got[0].tree().unwrap();
    let x = t.get_child("x", "urn:ext").unwrap();
    assert_eq!(x.attr("y:z"), Some("1"));
    assert_eq!(x.attr("xmlns:y"), Some("urn:y"));
    assert_eq!(
        x.get_child("c", "urn:ext").unwrap().attr("xmlns:y"),
        Some("urn:y")
    );
    // vCard and private storage give back what was stored.
    let set = "<iq type='set' id='v1'><vCard xmlns='vcard-temp' xmlns:y='urn:y'><FN y:z='1'>Bob</FN></vCard></iq>";
    assert_eq!(iq(&mut bob, "v1", set).type_().as_deref(), Some("result"));
    let r = iq(
        &mut bob,
        "v2",
        "<iq type='get' id='v2'><vCard xmlns='vcard-temp'/></iq>",
    );
    let fn_ = r.tree().unwrap();
    let fn_ = fn_
        .get_child("vCard", "vcard-temp")
        .and_then(|v| v.get_child("FN", "vcard-temp"));
    assert_eq!(
        fn_.and_then(|f| f.attr("xmlns:y")),
        Some("urn:y"),
        "{}",
        String::from_utf8_lossy(r.bytes())
    );
    let set = "<iq type='set' id='p1'><query xmlns='jabber:iq:private' xmlns:y='urn:y'>\
               <pp xmlns='urn:pp' y:z='1'/></query></iq>";
    assert_eq!(iq(&mut bob, "p1", set).type_().as_deref(), Some("result"));
    let get =
        "<iq type='get' id='p2'><query xmlns='jabber:iq:private'><pp xmlns='urn:pp'/></query></iq>";
    let r = iq(&mut bob, "p2", get);
    assert_eq!(
        r.type_().as_deref(),
        Some("result"),
        "{}",
        String::from_utf8_lossy(r.bytes())
    );
    assert!(String::from_utf8_lossy(r.bytes()).contains("xmlns:y='urn:y'"));
}

#[test]
fn a_blocked_contact_sees_no_presence_until_unblocked() {
    for shards in SHARDS {
        let modules = format!("{MODULES}\n[modules.roster]\n[modules.presence]\n");
        let server = Server::start_with(shards, &["alice", "bob"], "", &modules);
        let mut alice = server.login("alice", "a", Some(0));
        let mut bob = server.login("bob", "b", Some(0));
        subscribe_one_way(&mut alice, "alice", &mut bob, "bob");
        subscribe_one_way(&mut bob, "bob", &mut alice, "alice");
        alice.send("<presence><status>here</status></presence>");
        alice.home_sync();
        bob.expect("alice here", |s| {
            s.name() == "presence" && String::from_utf8_lossy(s.bytes()).contains("here")
        });
        let block = "<iq type='set' id='b1'><block xmlns='urn:xmpp:blocking'><item jid='bob@localhost'/></block></iq>";
        assert_eq!(
            iq(&mut alice, "b1", block).type_().as_deref(),
            Some("result")
        );
        // §3.3: bob is told alice went away...
        bob.expect("unavailable", |s| {
            s.name() == "presence" && s.type_().as_deref() == Some("unavailable")
        });
        // ...and then learns nothing: not her changes, not by probing, not by asking again.
        let (mark, amark) = (bob.raw.len(), alice.raw.len());
        alice.send("<presence><status>secret</status></presence>");
        alice.home_sync();
        bob.send("<presence to='alice@localhost' type='probe'/>");
        bob.send("<presence to='alice@localhost' type='subscribe'/>");
        bob.home_sync();
        alice.sync();
        bob.sync();
        let seen = String::from_utf8_lossy(&bob.raw[mark..]).into_owned();
        assert!(
            !seen.contains("from='alice@localhost"),
            "shards={shards}: {seen}"
        );
        assert!(
            !String::from_utf8_lossy(&alice.raw[amark..]).contains("type='subscribe'"),
            "shards={shards}"
        );
        // §3.4: unblocked, bob gets her current presence.
        let unblock = "<iq type='set' id='u1'><unblock xmlns='urn:xmpp:blocking'><item jid='bob@localhost'/></unblock></iq>";
        assert_eq!(
            iq(&mut alice, "u1", unblock).type_().as_deref(),
            Some("result")
        );
        bob.expect("alice again", |s| {
            s.name() == "presence" && String::from_utf8_lossy(s.bytes()).contains("secret")
        });
    }
}

/// XEP-0191 §3.3: only a contact that had the user's presence is told the user went; a stranger
/// blocked learns nothing (an unavailable presence told it the user is online, and blocked it).
#[test]
fn blocking_a_stranger_tells_it_nothing() {
    for shards in SHARDS {
        let modules = format!("{MODULES}\n[modules.roster]\n[modules.presence]\n");
        let server = Server::start_with(shards, &["alice", "bob"], "", &modules);
        let mut alice = server.login("alice", "a", Some(0));
        let mut bob = server.login("bob", "b", Some(0));
        let mark = bob.raw.len();
        let block = "<iq type='set' id='b1'><block xmlns='urn:xmpp:blocking'><item jid='bob@localhost'/></block></iq>";
        assert_eq!(
            iq(&mut alice, "b1", block).type_().as_deref(),
            Some("result")
        );
        let quiet = bob.read_until_quiet(std::time::Duration::from_millis(500));
        let seen = format!(
            "{}{}",
            String::from_utf8_lossy(&bob.raw[mark..]),
            String::from_utf8_lossy(&quiet)
        );
        assert!(!seen.contains("alice@localhost"), "shards={shards}: {seen}");
    }
}

/// A backlog far over a session's mailbox bound (1 000 messages of 1.5 KB, 4x `outbound_queue_bytes`
/// is 1 MiB) and over stream management's unacknowledged limit (`buffer_max`, 500) reaches the
/// user whole at login, a chunk at a time: past the bound it used to be bounced (and its rows
/// deleted), and a stream-managed login was closed with `policy-violation` on every attempt.
#[test]
fn a_long_backlog_is_delivered_whole_with_and_without_stream_management() {
    for (shards, sm) in [(1, false), (2, false), (2, true)] {
        let server = Server::start_with(
            shards,
            &["alice", "bob"],
            "",
            "[modules.offline]\nmax_per_user = 2000\n[modules.stream_management]\n",
        );
        let mut alice = server.login("alice", "a", Some(0));
        let n = if sm { 700 } else { 1000 };
        let pad = "x".repeat(1500);
        for i in 0..n {
            alice.send(&format!(
                "<message to='bob@localhost' type='chat' id='m{i}'><body>{i} {pad}</body></message>"
            ));
        }
        wait_stored(&server, "bob@localhost", n as u64);
        let mut bob = server.connect();
        bob.login_plain("bob", "localhost", common::PASSWORD, "b");
        if sm {
            bob.send("<enable xmlns='urn:xmpp:sm:3' resume='true'/>");
            bob.expect("enabled", |s| s.name() == "enabled");
        }
        bob.send("<presence/>");
        let (mut got, mut handled) = (Vec::new(), 0u32);
        let deadline = Instant::now() + Duration::from_secs(60);
        while got.len() < n && Instant::now() < deadline {
            let s = bob.next_stanza();
            match s.name() {
                "message" => {
                    handled += 1;
                    got.push(body(&s).unwrap_or_default());
                }
                "r" => bob.send(&format!("<a xmlns='urn:xmpp:sm:3' h='{handled}'/>")),
                "stream:error" => panic!("{}", String::from_utf8_lossy(s.bytes())),
                _ => handled += 1,
            }
        }
        let firsts: Vec<usize> = got
            .iter()
            .filter_map(|b| b.split(' ').next()?.parse().ok())
            .collect();
        assert_eq!(
            firsts,
            (0..n).collect::<Vec<_>>(),
            "shards {shards}, sm {sm}"
        );
        if sm {
            // Acknowledge the last ones: nothing is left stored.
            bob.send(&format!("<a xmlns='urn:xmpp:sm:3' h='{handled}'/>"));
        }
        wait_stored(&server, "bob@localhost", 0);
    }
}

#[test]
fn a_bind2_session_gets_archived_offline_messages_from_the_archive_only() {
    // XEP-0386 §3.2: at a Bind 2 login the server "MUST clear the offline messages for this user,
    // if any, without sending them (as they will be provided by MAM)". They were sent too, so a
    // client syncing from the archive got each twice. Without an archive they are delivered.
    for shards in SHARDS {
        for mam in [true, false] {
            let modules = format!("{MODULES}{}", if mam { "[modules.mam]\n" } else { "" });
            let server = Server::start_with(shards, &["alice", "bob"], "", &modules);
            let mut bob = server.login("bob", "b", Some(0));
            for i in 0..3 {
                bob.send(&format!(
                    "<message to='alice@localhost' type='chat' id='m{i}'><body>offline {i}</body></message>"
                ));
            }
            wait_stored(&server, "alice@localhost", 3);
            if mam {
                // Cleared only once the archive has them (until then they are delivered).
                let store = Store::open(&server.data_dir()).unwrap();
                let filter = petrel::store::MamFilter::default();
                let deadline = Instant::now() + Duration::from_secs(10);
                while store.mam_count("alice@localhost", &filter).unwrap() < 3 {
                    assert!(Instant::now() < deadline, "not archived");
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
            let mut alice = server.connect();
            let bind = "<bind xmlns='urn:xmpp:bind:0'><tag>t</tag></bind>";
            alice.authenticate_sasl2("alice", "localhost", common::PASSWORD, bind);
            alice.send("<presence/>");
            let got = alice.read_stanzas_until_quiet(Duration::from_millis(700));
            let delivered = got
                .iter()
                .filter(|s| s.name() == "message" && body(s).is_some())
                .count();
            assert_eq!(
                delivered,
                if mam { 0 } else { 3 },
                "shards={shards} mam={mam}"
            );
            wait_stored(&server, "alice@localhost", 0);
            if mam {
                alice.send("<iq type='set' id='q'><query xmlns='urn:xmpp:mam:2'/></iq>");
                let mut archived = 0;
                loop {
                    let s = alice.next_stanza();
                    if s.name() == "iq" && s.id().as_deref() == Some("q") {
                        break;
                    }
                    archived +=
                        usize::from(String::from_utf8_lossy(s.bytes()).contains("offline "));
                }
                assert_eq!(archived, 3, "shards={shards}: the archive has them");
            }
        }
    }
}

/// RFC 6120 §10.1 across a reconnection: what alice sent while bob was offline comes before what
/// she sends once he is back, though the backlog leaves the store a chunk at a time.
#[test]
fn stored_messages_come_before_newer_live_ones() {
    for shards in SHARDS {
        let server = Server::start_with(
            shards,
            &["alice", "bob"],
            "",
            "[modules.offline]\nmax_per_user = 2000\n",
        );
        let mut alice = server.login("alice", "a", Some(0));
        let n = 300;
        for i in 0..n {
            alice.send(&format!(
                "<message to='bob@localhost' type='chat' id='m{i}'><body>{i}</body></message>"
            ));
        }
        wait_stored(&server, "bob@localhost", n as u64);
        let mut bob = server.connect();
        bob.login_plain("bob", "localhost", common::PASSWORD, "b");
        bob.send("<presence/>");
        // Once the backlog flows, alice writes again, to the bare and to the full JID.
        let mut got: Vec<usize> = messages(&mut bob, 1)
            .iter()
            .map(|m| body(m).unwrap_or_default().parse().unwrap())
            .collect();
        let live = 10;
        for i in n..n + live {
            let to = if i % 2 == 0 {
                "bob@localhost"
            } else {
                "bob@localhost/b"
            };
            alice.send(&format!(
                "<message to='{to}' type='chat' id='m{i}'><body>{i}</body></message>"
            ));
        }
        got.extend(
            messages(&mut bob, n + live - 1)
                .iter()
                .map(|m| body(m).unwrap_or_default().parse::<usize>().unwrap()),
        );
        assert_eq!(got, (0..n + live).collect::<Vec<_>>(), "shards {shards}");
        wait_stored(&server, "bob@localhost", 0);
    }
}
